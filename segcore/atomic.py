"""Atomic file writes: a temporary file beside the target, flushed to disk, then renamed over it.

A reader (the dashboard, a resumed run) sees either the old file or the new one, never half of one, and a
kill in the middle leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` when the block ends without error.

    Args:
        path: the file to write; its folder is created if missing.
        mode: "w" (text) or "wb" (bytes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically replace ``path`` with ``text``."""
    with atomic_open(path, "w") as file:
        file.write(text)


def replace_folder(built: str | os.PathLike, out: str | os.PathLike) -> None:
    """Put the complete folder ``built`` at ``out`` (same file system): an old ``out`` is renamed aside
    first and removed after, so a reader finds the old folder or the new one, never a mix."""
    import shutil

    built, out = Path(built), Path(out)
    old = out.with_name(f".{out.name}.old-{os.getpid()}") if out.exists() else None
    if old is not None:
        out.rename(old)
    built.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
