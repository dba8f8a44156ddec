"""Steps' open and close writes, off the step's thread: each is a round trip the step need not wait for.

A step of a run this process has already recorded opens and closes in the background, in the
order submitted (one thread), while Dagster goes on with the step's own events. What depends on a
write waits for it: a call waits for its step's open (the step's budgets and row come first), the
step's outputs wait for it too (a step whose open failed fails), and the resource's teardown waits
for every write, so a run's rows are all written before the run ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


class StepWriter:
    """One background thread per process's services, started on first use."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future[object]] = set()
        self._failed: list[BaseException] = []
        self._lock = threading.Lock()

    def submit(self, write: Callable[[], T]) -> Future[T]:
        def run() -> T:
            try:
                return write()
            except BaseException as err:  # kept for flush() before the future completes; its waiter sees it too
                with self._lock:
                    self._failed.append(err)
                raise

        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wflo-step-writes")
            future = self._executor.submit(run)
            self._pending.add(future)  # type: ignore[arg-type]
        future.add_done_callback(self._done)  # type: ignore[arg-type]
        return future

    def _done(self, future: Future[object]) -> None:
        with self._lock:
            self._pending.discard(future)

    def flush(self) -> list[BaseException]:
        """Wait for every write submitted so far; the errors of the writes that failed since the last
        flush, including those that failed long before it."""
        with self._lock:
            pending = list(self._pending)
        wait(pending)
        with self._lock:
            errors, self._failed = self._failed, []
        return errors

    def close(self) -> list[BaseException]:
        errors = self.flush()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown()
        return errors


def unwritten(err: BaseException) -> str:
    """The warning for a background step write that failed: the step's row is closed out later."""
    return (f"wflo could not write a step's ledger row ({type(err).__name__}: {err}); "
            "the run-status sensor closes the step out when the run ends")
