"""The snapshot cache: one snapshot per (account, region), refreshed on demand once older than the TTL.

Refreshes run on a bounded thread pool. Concurrent scrapes share one refresh per target
(single flight); a scrape waits for refreshes at most until its deadline and then serves the
last snapshot. The lock guards only the bookkeeping, never an AWS call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace

from exporter.jobs import RegionSnapshot, Target, TuningJob

log = logging.getLogger(__name__)

ListJobs = Callable[[Target], Sequence[TuningJob]]
MAX_REFRESH_THREADS = 16


class SnapshotCache:
    """Holds the latest :class:`RegionSnapshot` of every target and refreshes stale ones."""

    def __init__(
        self,
        targets: Sequence[Target],
        list_jobs: ListJobs,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._targets = tuple(targets)
        self._list_jobs = list_jobs
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._snapshots: dict[Target, RegionSnapshot] = {}
        self._refreshed_at: dict[Target, float] = {}
        self._failures: dict[Target, int] = dict.fromkeys(self._targets, 0)
        self._in_flight: dict[Target, Future[None]] = {}
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, min(MAX_REFRESH_THREADS, len(self._targets))),
            thread_name_prefix="refresh",
        )

    @property
    def targets(self) -> tuple[Target, ...]:
        """The targets this cache refreshes, in configuration order."""
        return self._targets

    def refresh_stale(self, timeout: float | None) -> None:
        """Start a refresh of every target older than the TTL, and wait for them up to ``timeout``."""
        self._wait(self._start_refreshes(force=False), timeout)

    def refresh_all(self, timeout: float | None) -> None:
        """Refresh every target now, whatever its age, waiting up to ``timeout`` seconds."""
        self._wait(self._start_refreshes(force=True), timeout)

    def snapshots(self) -> list[RegionSnapshot]:
        """The latest snapshot of every target that has finished at least one refresh."""
        with self._lock:
            return [self._snapshots[t] for t in self._targets if t in self._snapshots]

    def failed_refreshes(self) -> dict[Target, int]:
        """How many refreshes of each target have failed since start."""
        with self._lock:
            return dict(self._failures)

    def is_ready(self) -> bool:
        """True once every target has finished its first refresh, successful or not."""
        with self._lock:
            return len(self._snapshots) == len(self._targets)

    def close(self) -> None:
        """Stop accepting refreshes; running ones finish in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start_refreshes(self, force: bool) -> list[Future[None]]:
        futures = []
        now = self._monotonic()
        with self._lock:
            for target in self._targets:
                running = self._in_flight.get(target)
                if running is not None:
                    futures.append(running)
                    continue
                refreshed_at = self._refreshed_at.get(target)
                if (
                    not force
                    and refreshed_at is not None
                    and now - refreshed_at < self._ttl_seconds
                ):
                    continue
                future = self._executor.submit(self._refresh, target)
                self._in_flight[target] = future
                futures.append(future)
        return futures

    @staticmethod
    def _wait(futures: list[Future[None]], timeout: float | None) -> None:
        if futures:
            wait(futures, timeout=timeout)

    def _refresh(self, target: Target) -> None:
        started = self._monotonic()
        jobs: Sequence[TuningJob] | None = None
        error: str | None = None
        try:
            jobs = tuple(self._list_jobs(target))
        except Exception as exc:  # a failing region must never take down the others
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "refresh failed for account=%s region=%s: %s",
                target.account_id or "(default credentials)",
                target.region,
                error,
            )
        finished = self._monotonic()
        with self._lock:
            previous = self._snapshots.get(target)
            if jobs is None:
                self._failures[target] += 1
                snapshot = _failed_snapshot(target, previous, finished - started, error)
            else:
                snapshot = RegionSnapshot(
                    target=target,
                    account=_account_label(target, jobs, previous),
                    jobs=tuple(jobs),
                    up=True,
                    last_success_time=self._clock(),
                    refresh_duration_seconds=finished - started,
                )
            self._snapshots[target] = snapshot
            self._refreshed_at[target] = finished
            del self._in_flight[target]
        log.debug(
            "refreshed account=%s region=%s up=%s jobs=%d in %.3fs",
            snapshot.account,
            target.region,
            snapshot.up,
            len(snapshot.jobs),
            snapshot.refresh_duration_seconds,
        )


def _failed_snapshot(
    target: Target, previous: RegionSnapshot | None, duration: float, error: str | None
) -> RegionSnapshot:
    if previous is None:
        return RegionSnapshot(
            target=target,
            account=target.account_id,
            jobs=(),
            up=False,
            last_success_time=None,
            refresh_duration_seconds=duration,
            error=error,
        )
    return replace(previous, up=False, refresh_duration_seconds=duration, error=error)


def _account_label(
    target: Target, jobs: Sequence[TuningJob], previous: RegionSnapshot | None
) -> str:
    """The account of a target: from its role ARN, else from its jobs' ARNs, else as before."""
    if target.account_id:
        return target.account_id
    for job in jobs:
        if job.account:
            return job.account
    return previous.account if previous is not None else ""
