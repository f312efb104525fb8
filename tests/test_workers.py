"""The elastic worker pool: bounded workers, replacements for stuck tasks, and a clean close."""

from __future__ import annotations

import threading

import pytest

from exporter.refresh.workers import ElasticWorkerPool
from tests.polling import wait_until


def pool_threads(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(f"{name}-")]


class Gate:
    """Tasks that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most_running = 0
        self.finished = 0

    def task(self) -> None:
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.release.wait(timeout=10)
        with self.lock:
            self.running -= 1
            self.finished += 1


def test_no_more_tasks_run_at_once_than_the_pool_size() -> None:
    pool = ElasticWorkerPool(3, name="bounded")
    gate = Gate()
    for _ in range(10):
        pool.submit(gate.task)

    wait_until(lambda: gate.running == 3, message="three tasks running")
    assert pool.live_workers == 3
    gate.release.set()
    wait_until(lambda: gate.finished == 10, message="every task finished")
    pool.close()

    assert gate.most_running == 3


def test_idle_workers_are_reused_rather_than_new_ones_started() -> None:
    pool = ElasticWorkerPool(4, name="reused")
    done = threading.Semaphore(0)
    for _ in range(5):
        pool.submit(done.release)
        assert done.acquire(timeout=10)
        wait_until(lambda: pool.idle_workers == 1, message="the worker idle again")
    assert pool.live_workers == 1
    assert len(pool_threads("reused")) == 1
    pool.close()


def test_each_stuck_task_lets_one_replacement_worker_start_up_to_the_pool_size() -> None:
    pool = ElasticWorkerPool(2, name="elastic")
    stuck = Gate()
    for _ in range(2):
        pool.submit(stuck.task)
    wait_until(lambda: stuck.running == 2, message="both workers busy")
    healthy = Gate()
    healthy.release.set()
    for _ in range(3):
        pool.submit(healthy.task)
    assert healthy.finished == 0  # no worker free, and none stuck yet

    pool.set_stuck(5)  # more stuck than the pool: replacements stop at its size

    wait_until(lambda: healthy.finished == 3, message="the queued tasks ran on replacements")
    assert pool.capacity() == 4
    assert pool.live_workers == 4
    stuck.release.set()
    pool.set_stuck(0)
    wait_until(lambda: stuck.finished == 2, message="the stuck tasks ended")
    # Over capacity once their tasks end, the extra workers leave.
    wait_until(lambda: pool.live_workers == 2, message="back to the pool's size")
    pool.close()


def test_a_closed_pool_leaves_no_worker_behind_even_a_replacement() -> None:
    pool = ElasticWorkerPool(1, name="closing")
    stuck = Gate()
    pool.submit(stuck.task)
    wait_until(lambda: stuck.running == 1, message="the worker busy")
    pool.set_stuck(1)
    quick = Gate()
    quick.release.set()
    pool.submit(quick.task)
    wait_until(lambda: quick.finished == 1, message="the replacement ran the task")

    pool.close()
    stuck.release.set()

    wait_until(lambda: not pool_threads("closing"), message="every worker thread ended")
    assert pool.live_workers == 0


def test_a_closed_pool_takes_no_more_tasks() -> None:
    pool = ElasticWorkerPool(2, name="after-close")
    pool.close()

    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(lambda: None)


def test_a_task_is_reported_done_once_its_worker_is_free_again() -> None:
    pool = ElasticWorkerPool(4, name="done")
    for _ in range(20):
        done = threading.Event()
        pool.submit(lambda: None, on_done=done.set)
        assert done.wait(timeout=10)
        assert pool.idle_workers == 1
    assert len(pool_threads("done")) == 1
    pool.close()
