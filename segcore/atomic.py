"""Atomic writes: a file or folder is built beside its target, then renamed over it in one step.

A reader (the dashboard, a resumed run) sees either the old file or folder or the new one, never half of
one, and a kill (``kill -9``, a power cut after the rename reached the disk) at any moment leaves the old
one as it was. What a killed writer leaves behind is a hidden temporary beside the target, named after its
process id (``.run.json.4711-k3j2.tmp``, ``.shapes-val.tmp-4711-x8a1``, ``.shapes-val.old-4711-0c9e``):
the next write of the same target removes those whose process is gone and, if a folder was killed halfway
through being swapped, puts the old folder back first. (The pids are this host's: two hosts writing the same
target on a shared file system at the same moment are not told apart.)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator

from segcore.liveness import process_alive


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _writer_pid(name: str, prefix: str, end: str) -> int | None:
    """The pid in a temporary's name ``<prefix><pid><end>…``, or None for a name of another shape."""
    if not name.startswith(prefix):
        return None
    pid, found, _ = name[len(prefix):].partition(end)
    return int(pid) if found and pid.isdigit() else None


def _leftovers(folder: Path, prefix: str, end: str = "-") -> list[Path]:
    """The temporaries in ``folder`` named ``<prefix><pid>-…`` whose process is gone."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = []
    for entry in entries:
        pid = _writer_pid(entry.name, prefix, end)
        if pid is not None and pid != os.getpid() and not process_alive(pid):
            found.append(Path(entry.path))
    return found


def _fsync(path: str | os.PathLike) -> None:
    """Flush a file, or a folder's entries, to disk; not every system can, and a failure is no error."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a power cut after it keeps it)."""
    _fsync(folder)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` when the block ends without error.

    Args:
        path: the file to write; its folder is created if missing.
        mode: "w" (text) or "wb" (bytes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in _leftovers(path.parent, f".{path.name}."):  # of writers killed before their rename
        leftover.unlink(missing_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); a run must stay readable by a dashboard run as another user
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(handle, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` to disk, so that a power cut after a rename into place finds
    whole files there (a kill without one needs no flush: the kernel keeps what was written)."""
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync(os.path.join(root, name))
        _fsync(root)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically replace ``path`` with ``text``."""
    with atomic_open(path, "w") as file:
        file.write(text)


def recover_folder(out: str | os.PathLike) -> None:
    """Clean up after writers of ``out`` that were killed: put back the old folder that a
    :func:`replace_folder` killed between its two renames had set aside (only where the system cannot swap
    two folders in one step), and remove the staging and set-aside folders of processes that are gone."""
    out = Path(out)
    aside = _leftovers(out.parent, f".{out.name}.old-")
    if aside and not out.exists():
        newest = max(aside, key=lambda p: p.stat().st_ctime if p.exists() else 0.0)
        with contextlib.suppress(OSError):  # another process may have put it back first
            newest.rename(out)
    for leftover in [*aside, *_leftovers(out.parent, f".{out.name}.tmp-")]:
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)


def staging_folder(out: str | os.PathLike) -> Path:
    """A new empty folder beside ``out`` in which to build its replacement for :func:`replace_folder`,
    named after this process; killed writers' leftovers of ``out`` are cleaned up first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(out)
    return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-{os.getpid()}-"))


def _aside_name(out: Path) -> Path:
    return out.with_name(f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}")


@functools.cache
def _renameat2():
    """glibc's renameat2, or None where there is none (another system, an old or other C library)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths in one step (Linux's ``renameat2`` with ``RENAME_EXCHANGE``).

    Returns:
        False, having changed nothing, where the system or file system cannot.
    """
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    at_cwd, rename_exchange = -100, 2  # AT_FDCWD and RENAME_EXCHANGE from <fcntl.h> and <linux/fs.h>
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(b))


def replace_folder(built: str | os.PathLike, out: str | os.PathLike) -> None:
    """Put the complete folder ``built`` at ``out`` (same file system), so that a reader finds the old
    folder or the new one, never a mix, and a kill at any moment loses neither.

    Where the system can, the two are swapped in one step and the old one, now at ``built``, is removed.
    Elsewhere the old ``out`` is renamed aside, ``built`` renamed into place and the old one removed; a
    kill between the two renames leaves no ``out`` for a moment, and the next :func:`recover_folder` (any
    :func:`staging_folder` or :func:`replace_folder` of ``out``) puts the old one back.
    """
    built, out = Path(built), Path(out)
    recover_folder(out)
    _fsync_tree(built)
    if out.exists() and exchange(built, out):
        aside = _aside_name(out)
        built.rename(aside)  # under a name the next writer recognises, should the removal be killed
        _fsync_folder(out.parent)
        shutil.rmtree(aside, ignore_errors=True)
        return
    old = _aside_name(out) if out.exists() else None
    if old is not None:
        out.rename(old)
    built.rename(out)
    _fsync_folder(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
