"""Is the process behind a piece of work still alive? Answered for a training run and for leftovers.

``kill -9`` gives a process no chance to say it stopped: its run.json keeps ``"status": "running"`` and its
temporary files stay beside their targets. So ``segcore train`` records who trains a run in run.json::

    "trainer": {"host": "gpu-3", "pid": 4711, "started": "2026-01-01T10:00:00+00:00",
                "heartbeat": "2026-01-01T10:42:17+00:00"}

and refreshes the heartbeat while it trains (at each logged step at most every ``HEARTBEAT_S`` seconds, and
at each epoch's end). A reader on the same host asks the operating system whether that process still
exists (and, on Linux, whether it is the same process and not a later one given the same id); a reader on
another host (a shared file system) can only go by the heartbeat's age. Temporary files and folders carry
their writer's pid in their name, so that the next writer can remove those whose writer is gone.

No torch here: the dashboard and the file helpers use it.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Any

#: Seconds between heartbeats of a training run while it steps.
HEARTBEAT_S = 60.0
#: A run on another host whose heartbeat is older than this is taken for dead. Long enough for a
#: validation or a checkpoint save between two heartbeats; a run on the same host is judged by its pid.
SILENT_AFTER_S = 30 * 60.0
#: The clock of /proc/stat's boot time is in whole seconds, so a process's start time is known to about 1 s.
_START_TOLERANCE_S = 2.0


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def process_started(pid: int) -> float | None:
    """The start time (Unix seconds) of process ``pid`` on this host, where the system tells it (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            # the command name (field 2) may hold spaces and parentheses; the fields after it do not
            fields = file.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as file:
            boot = next(float(line.split()[1]) for line in file if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def process_alive(pid: int, *, started_by: float | None = None) -> bool:
    """Whether process ``pid`` exists on this host; with ``started_by`` (Unix seconds), a process of that
    id started later is another one that was given a freed id, and does not count."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: the existence and permission checks only
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process exists
        pass
    except (OSError, OverflowError):  # a pid no process can have (a hand-edited run.json, say)
        return False
    if started_by is not None:
        started = process_started(pid)
        if started is not None and started > started_by + _START_TOLERANCE_S:
            return False
    return True


#: The file in a run directory that the process training the run holds locked (see :func:`lock_run`).
LOCK_FILE = ".training.lock"


def lock_run(run_dir: str | os.PathLike):
    """Hold ``RUN_DIR/.training.lock`` for as long as the returned file stays open (the training process's
    life): a second ``segcore train`` into the same folder on this host is refused from the start, before
    either has written run.json. None where the system has no ``flock`` (the heartbeat still tells).

    Raises:
        SegcoreError: another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:
        return None
    os.makedirs(run_dir, exist_ok=True)
    handle = open(os.path.join(run_dir, LOCK_FILE), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder_pid = handle.read().strip() or "unknown"
        handle.close()
        from segcore.errors import SegcoreError

        raise SegcoreError(f"{run_dir} is being trained right now (process {holder_pid} on {socket.gethostname()}); "
                           f"wait for it to finish, or choose another --out.") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")  # for the message a second trainer gets
    handle.flush()
    return handle


def holder() -> dict[str, Any]:
    """The record of this process as the trainer of a run, for run.json's ``trainer``."""
    stamp = _now().isoformat()
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": stamp, "heartbeat": stamp}


def beat(trainer: dict[str, Any]) -> None:
    """Set the record's heartbeat to now."""
    trainer["heartbeat"] = _now().isoformat()


def _time(value: Any) -> datetime | None:
    """An ISO 8601 time from run.json; one written without a zone is taken as UTC, as segcore writes them."""
    try:
        time = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return time if time.tzinfo is not None else time.replace(tzinfo=timezone.utc)


def is_alive(trainer: dict[str, Any] | None, *, silent_after_s: float = SILENT_AFTER_S) -> bool:
    """Whether the process a ``trainer`` record names still works on the run.

    On the record's host: whether its pid is still that process (this process itself does not count: it
    is not training the run while it asks). Elsewhere: whether the heartbeat is younger than
    ``silent_after_s``. A missing or malformed record (a run from before records were kept) is not alive.
    """
    if not isinstance(trainer, dict) or not isinstance(trainer.get("pid"), int) or isinstance(trainer["pid"], bool):
        return False
    if trainer.get("host") == socket.gethostname():
        if trainer["pid"] == os.getpid():
            return False
        started = _time(trainer.get("started"))
        return process_alive(trainer["pid"], started_by=started.timestamp() if started else None)
    heartbeat = _time(trainer.get("heartbeat"))
    return heartbeat is not None and (_now() - heartbeat).total_seconds() < silent_after_s


def describe(trainer: dict[str, Any]) -> str:
    """"process 4711 on gpu-3, last heard from at 2026-01-01T10:42:17+00:00", for messages."""
    return (f"process {trainer.get('pid')} on {trainer.get('host')}, last heard from at "
            f"{trainer.get('heartbeat', 'an unknown time')}")


def training_status(manifest: dict[str, Any]) -> str:
    """A run's status as a reader should show it: run.json's own ("running", "finished", "failed",
    "interrupted"), except "killed" for a run that says "running" but whose trainer is gone."""
    status = str(manifest.get("status") or "unknown")
    if status == "running" and not is_alive(manifest.get("trainer")):
        return "killed"
    return status
