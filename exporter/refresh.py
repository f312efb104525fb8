"""The snapshot cache: one snapshot per (account, region), refreshed on demand once older than the TTL.

Each refresh runs on its own daemon thread, and a target has at most one refresh running
(single flight), so a target that hangs holds only its own thread: it never delays another
target's refresh nor, being a daemon, the exporter's shutdown. A scrape waits for
refreshes at most until its deadline and then serves the last snapshots. The lock guards
only the bookkeeping, never an AWS call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from exporter.jobs import RegionSnapshot, Target, TuningJob

log = logging.getLogger(__name__)

ListJobs = Callable[[Target], Sequence[TuningJob]]


class SnapshotCache:
    """Holds the latest :class:`RegionSnapshot` of every target and refreshes stale ones.

    ``clock`` gives the wall time stamped on snapshots; ``monotonic`` measures ages and
    durations. Both are injectable so tests control time.
    """

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
        self._in_flight: dict[Target, threading.Event] = {}

    @property
    def targets(self) -> tuple[Target, ...]:
        """The targets this cache refreshes, in configuration order."""
        return self._targets

    def refresh_stale(self, timeout: float | None) -> None:
        """Start a refresh of every target older than the TTL, and wait for them up to ``timeout``."""
        _wait_all(self._start_refreshes(force=False), timeout)

    def refresh_all(self, timeout: float | None) -> None:
        """Refresh every target now, whatever its age, waiting up to ``timeout`` seconds."""
        _wait_all(self._start_refreshes(force=True), timeout)

    def snapshots(self) -> list[RegionSnapshot]:
        """The latest snapshot of every target that has finished at least one refresh."""
        with self._lock:
            return [self._snapshots[t] for t in self._targets if t in self._snapshots]

    def is_ready(self) -> bool:
        """True once every target has finished its first refresh, successful or not."""
        with self._lock:
            return len(self._snapshots) == len(self._targets)

    def _start_refreshes(self, force: bool) -> list[threading.Event]:
        """Start the refreshes that are due; return the completion events to wait for."""
        pending = []
        now = self._monotonic()
        with self._lock:
            for target in self._targets:
                running = self._in_flight.get(target)
                if running is not None:
                    pending.append(running)
                    continue
                refreshed_at = self._refreshed_at.get(target)
                if (
                    not force
                    and refreshed_at is not None
                    and now - refreshed_at < self._ttl_seconds
                ):
                    continue
                done = threading.Event()
                thread = threading.Thread(
                    target=self._refresh,
                    args=(target, done),
                    name=f"refresh-{target.account_id or 'default'}-{target.region}",
                    daemon=True,
                )
                # Registered first: the thread's own cleanup needs the entry, and waits
                # for this lock before it can look.
                self._in_flight[target] = done
                try:
                    thread.start()
                except RuntimeError as error:  # no thread to be had: try on the next scrape
                    del self._in_flight[target]
                    log.error("cannot start a refresh of region=%s: %s", target.region, error)
                    continue
                pending.append(done)
        return pending

    def _refresh(self, target: Target, done: threading.Event) -> None:
        try:
            self._list_and_snapshot(target)
        finally:
            with self._lock:
                del self._in_flight[target]
            done.set()

    def _list_and_snapshot(self, target: Target) -> None:
        started = self._monotonic()
        jobs: tuple[TuningJob, ...] | None = None
        error = None
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
                snapshot = _failed_snapshot(target, previous, finished - started, error)
            else:
                snapshot = RegionSnapshot(
                    target=target,
                    account=_account_label(target, jobs, previous),
                    jobs=jobs,
                    up=True,
                    last_success_time=self._clock(),
                    refresh_duration_seconds=finished - started,
                    refresh_failures=previous.refresh_failures if previous else 0,
                )
            self._snapshots[target] = snapshot
            self._refreshed_at[target] = finished
        log.debug(
            "refreshed account=%s region=%s up=%s jobs=%d in %.3fs",
            snapshot.account,
            target.region,
            snapshot.up,
            len(snapshot.jobs),
            snapshot.refresh_duration_seconds,
        )


def _wait_all(events: Sequence[threading.Event], timeout: float | None) -> None:
    """Wait until every event is set, or until ``timeout`` seconds have passed in all."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for event in events:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not event.wait(remaining):
            return


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
            refresh_failures=1,
        )
    return replace(
        previous,
        up=False,
        refresh_duration_seconds=duration,
        error=error,
        refresh_failures=previous.refresh_failures + 1,
    )


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
