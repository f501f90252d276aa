"""Work handed to another core: a forked process that inherits the data it needs, so nothing large is copied.

Scoring a COCO-scale results file has independent parts (the box evaluation beside the mask one, the
semantic maps beside the COCO matching); on a machine with two cores or more one of them runs here while
the caller goes on. Where fork is not offered (Windows, macOS's default), there is one core, or the caller
runs other threads (the dashboard's server: a fork copies a lock another thread holds, and may wait on it
forever), the work is done in the caller when it asks for the answer, with the same result. Only the answer
travels back, pickled.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

#: The work a forked worker runs: set just before the fork, which copies it into the worker.
_WORK: Callable[[], Any] | None = None


def _run_work() -> Any:
    return _WORK()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this system
        return os.cpu_count() or 1


class Background:
    """``work()`` run in a forked process from now on; :meth:`result` waits for its answer. With ``fork``
    False, or where no fork can be had, the work runs in the caller when it asks for the answer.

    ``work`` must not write anything the caller reads (the fork has its own copy of memory), and must not
    read a file the caller reads at the same time through a shared file position.
    """

    def __init__(self, work: Callable[[], Any], *, fork: bool = True) -> None:
        global _WORK
        self._work, self._future, self._pool = work, None, None
        if not fork or _cores() < 2 or "fork" not in multiprocessing.get_all_start_methods() \
                or threading.active_count() > 1:
            return
        _WORK = work
        try:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
            self._future = self._pool.submit(_run_work)  # forks now, with _WORK set
        except OSError:  # no process to be had (a limit on processes): the caller does the work
            self._future = None
        finally:
            _WORK = None

    def result(self) -> Any:
        """The answer of ``work()``; an exception it raised is raised here."""
        if self._future is None:
            return self._work()
        try:
            return self._future.result()
        except BrokenProcessPool:  # the worker was killed (out of memory, say): do the work here instead
            return self._work()
        finally:
            self._pool.shutdown()
