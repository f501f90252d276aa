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
from typing import Any


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this system
        return os.cpu_count() or 1


def _run(work: Callable[[], Any], answer) -> None:
    """In the forked process: ``work()``'s value, or the exception it raised, sent back pickled."""
    try:
        outcome = (True, work())
    except BaseException as error:  # raised again in the caller
        outcome = (False, error)
    try:
        answer.send(outcome)
    except Exception as error:  # an answer that cannot be pickled: say so rather than die silently
        answer.send((False, RuntimeError(f"the background work's answer could not be sent back: {error}")))
    finally:
        answer.close()


class Background:
    """``work()`` run in a forked process from now on; :meth:`result` waits for its answer. With ``fork``
    False, or where no fork can be had, the work runs in the caller when it asks for the answer.

    ``work`` must not write anything the caller reads (the fork has its own copy of memory), and must not
    read a file the caller reads at the same time through a shared file position. A caller that gives up on
    the answer (it failed meanwhile) calls :meth:`cancel`, which stops the process at once; the process is a
    daemon besides, so it never outlives the caller.
    """

    def __init__(self, work: Callable[[], Any], *, fork: bool = True) -> None:
        self._work, self._process, self._answer = work, None, None
        if not fork or _cores() < 2 or "fork" not in multiprocessing.get_all_start_methods() \
                or threading.active_count() > 1:
            return
        context = multiprocessing.get_context("fork")
        try:
            self._answer, sending = context.Pipe(duplex=False)
            self._process = context.Process(target=_run, args=(work, sending), daemon=True)
            self._process.start()  # forks now: the work and its data are copied with the process
            sending.close()
        except OSError:  # no process to be had (a limit on processes): the caller does the work
            self._process = self._answer = None

    def result(self) -> Any:
        """The answer of ``work()``; an exception it raised is raised here."""
        if self._process is None:
            return self._work()
        try:
            done, value = self._answer.recv()
        except EOFError:  # the process died without answering (out of memory, say): do the work here instead
            done, value = True, self._work()
        finally:
            self._answer.close()
            self._process.join()
            self._process = None
        if not done:
            raise value
        return value

    def cancel(self) -> None:
        """Stop the work without waiting for it (the caller no longer wants the answer)."""
        if self._process is not None:
            self._process.kill()
            self._process.join()
            self._answer.close()
            self._process = None
