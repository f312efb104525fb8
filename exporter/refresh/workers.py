"""A pool of daemon worker threads that grows to replace workers stuck in a task.

The refreshes of the snapshot cache run here. A task past its deadline usually ends at its
next step, but one stuck in a socket read holds its worker until the read times out; rather
than let such tasks starve the others, the owner says how many of the running tasks are
stuck (:meth:`ElasticWorkerPool.set_stuck`), and each lets one replacement worker start, up
to ``size`` replacements: at most twice the pool in threads, however many tasks hang. A
worker that finds more workers alive than the capacity once its task ends, exits. Being
daemons, workers never delay the process' exit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Task = Callable[[], None]


class ElasticWorkerPool:
    """Runs submitted tasks on at most ``size`` workers, plus one per stuck task (at most ``size``).

    Workers start when a task finds none idle, and stay for the next task. ``name`` prefixes
    the threads' names (``refresh-0``, ``refresh-1``, ...).
    """

    def __init__(self, size: int, *, name: str = "worker") -> None:
        self._size = max(1, size)
        self._name = name
        self._lock = threading.Lock()
        # A task and what to call once it and its worker's bookkeeping are done; None asks
        # the worker that takes it to end (see close).
        self._queue: queue.SimpleQueue[tuple[Task, Task | None] | None] = queue.SimpleQueue()
        self._started = 0
        self._live = 0
        self._idle = 0
        self._unclaimed = 0
        self._stuck = 0
        self._closed = False

    @property
    def live_workers(self) -> int:
        """Workers alive now, busy or idle."""
        with self._lock:
            return self._live

    @property
    def idle_workers(self) -> int:
        """Workers alive and waiting for a task."""
        with self._lock:
            return self._idle

    def capacity(self) -> int:
        """How many workers may live now: the pool, plus one per stuck task, up to twice the pool."""
        with self._lock:
            return self._capacity()

    def submit(self, task: Task, on_done: Task | None = None) -> None:
        """Run ``task`` on an idle worker, a new one if capacity allows, or the next one free.

        ``on_done`` is called once the task has ended and its worker is free for the next,
        so a caller it wakes that submits again finds that worker idle. ``task`` must not
        raise: a task's failure is its own to report. Raises RuntimeError once closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self._name} pool is closed")
            self._queue.put((task, on_done))
            self._unclaimed += 1
            self._dispatch()

    def set_stuck(self, count: int) -> None:
        """Say how many running tasks are stuck past their deadline; each may be replaced."""
        with self._lock:
            self._stuck = count
            self._dispatch()

    def close(self) -> None:
        """Let the workers end once the tasks submitted so far have run; take no task after this."""
        with self._lock:
            self._closed = True
            workers = self._live
        for _ in range(workers):
            self._queue.put(None)

    def _capacity(self) -> int:
        return self._size + min(self._stuck, self._size)

    def _dispatch(self) -> None:
        """Hand each unclaimed task to an idle worker, or to a new one if capacity allows.

        The caller holds the lock.
        """
        while self._unclaimed > 0:
            if self._idle > 0:
                self._idle -= 1  # that worker will take a task
            elif self._live < self._capacity():
                worker = threading.Thread(
                    target=self._work, name=f"{self._name}-{self._started}", daemon=True
                )
                try:
                    worker.start()
                except RuntimeError as error:  # no thread to be had: the task waits for a worker
                    log.error("cannot start a %s worker: %s", self._name, error)
                    return
                self._started += 1
                self._live += 1
            else:
                return  # the next worker to finish takes it
            self._unclaimed -= 1

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            task, on_done = job
            try:
                task()
            finally:
                with self._lock:
                    # A closed pool's workers end too: a worker started after close() (for
                    # a stuck task) would find no stop marker left for it.
                    retire = self._unclaimed == 0 and (
                        self._closed or self._live > self._capacity()
                    )
                    if retire:
                        self._live -= 1
                    elif self._unclaimed > 0:
                        self._unclaimed -= 1  # this worker takes the next one
                    else:
                        self._idle += 1
                if on_done is not None:
                    on_done()
            if retire:
                return
        with self._lock:  # closed: this worker was idle, or would have been
            self._live -= 1
            self._idle = max(0, self._idle - 1)
