"""Thread pools that survive ``fork``.

A ``ThreadPoolExecutor`` used before a ``fork`` is broken in the child: its worker
threads do not exist there, yet the executor believes they do and queues work that no
thread will ever run (a PyTorch ``DataLoader`` worker that reads data would hang
forever). A ``LazyPool`` creates its executor on first use and forgets it in a forked
child (``os.register_at_fork``), so the child's first use creates a fresh one.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

T = TypeVar("T")

_LIVE: weakref.WeakSet[LazyPool] = weakref.WeakSet()


class LazyPool:
    """A ``ThreadPoolExecutor`` of ``workers`` threads, created when first used."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers = workers
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        _LIVE.add(self)

    def executor(self) -> ThreadPoolExecutor:
        ex = self._executor
        if ex is None:
            with self._lock:
                ex = self._executor
                if ex is None:
                    from concurrent.futures import ThreadPoolExecutor

                    ex = self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
        return ex

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self.executor().submit(fn, *args)

    def shutdown(self) -> None:
        with self._lock:
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True)

    def _after_fork(self) -> None:
        # The parent's threads are gone: drop the executor (never shut it down here,
        # that would wait for them) and its lock, which a parent thread may have held.
        self._lock = threading.Lock()
        self._executor = None


def _reset_after_fork() -> None:
    for pool in list(_LIVE):
        pool._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
