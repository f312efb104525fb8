"""The snapshot cache: one snapshot per (account, region), refreshed on demand once older than the TTL.

Refreshes run on a bounded pool of daemon worker threads, at most one per target at a time
(single flight), so a target that hangs holds only its own worker: it never delays another
target's refresh nor, being a daemon, the exporter's shutdown. A scrape waits for
refreshes at most until its deadline and then serves the last snapshots. The lock guards
only the bookkeeping, never an AWS call.

A target's first refresh, and one every ``full_resync_seconds``, lists every job; the others
pass the previous :class:`~exporter.listing.Listing` so that only changes are listed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from exporter.describe import JobDescription
from exporter.jobs import NO_DESCRIPTIONS, RegionSnapshot, Target, TuningJob
from exporter.listing import Listing
from exporter.retention import PublishedJobs

log = logging.getLogger(__name__)

# List the target's jobs: in full when the previous listing is None, else the changes since it.
ListJobs = Callable[[Target, Listing | None], Listing]
# Choose the jobs that get per-job series from a target's jobs at a wall time.
SelectPublished = Callable[[Sequence[TuningJob], float], PublishedJobs]
# The descriptions of a target's published jobs, given the previous ones (see exporter.describe).
DescribeJobs = Callable[
    [Target, Sequence[TuningJob], Mapping[str, JobDescription]], Mapping[str, JobDescription]
]


def publish_every_job(jobs: Sequence[TuningJob], _now: float) -> PublishedJobs:
    """Give every job per-job series."""
    return PublishedJobs(tuple(jobs))


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
        *,
        full_resync_seconds: float = 3600.0,
        max_concurrent_refreshes: int = 8,
        select_published: SelectPublished = publish_every_job,
        describe_jobs: DescribeJobs | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._targets = tuple(targets)
        self._list_jobs = list_jobs
        self._ttl_seconds = ttl_seconds
        self._full_resync_seconds = full_resync_seconds
        self._max_workers = max(1, max_concurrent_refreshes)
        self._select_published = select_published
        self._describe_jobs = describe_jobs
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._snapshots: dict[Target, RegionSnapshot] = {}
        self._listings: dict[Target, Listing] = {}
        self._refreshed_at: dict[Target, float] = {}
        self._listed_fully_at: dict[Target, float] = {}
        self._in_flight: dict[Target, threading.Event] = {}
        self._queue: queue.SimpleQueue[tuple[Target, threading.Event]] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0

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
        """Queue the refreshes that are due; return the completion events to wait for."""
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
                done = self._in_flight[target] = threading.Event()
                self._queue.put((target, done))
                self._add_worker_if_needed()
                pending.append(done)
        return pending

    def _add_worker_if_needed(self) -> None:
        """Start a worker for the refresh just queued, unless one is idle or the pool is full.

        An idle worker is claimed for the job; once the pool is full, queued jobs wait for
        the next worker to finish, so the idle count only matters while it can grow.
        """
        if self._idle_workers > 0:
            self._idle_workers -= 1  # that worker will take the job
            return
        if len(self._workers) >= self._max_workers:
            return
        worker = threading.Thread(
            target=self._work, name=f"refresh-{len(self._workers)}", daemon=True
        )
        try:
            worker.start()
        except RuntimeError as error:  # no thread to be had: the queued job waits for a worker
            log.error("cannot start a refresh worker: %s", error)
            return
        self._workers.append(worker)

    def _work(self) -> None:
        while True:
            target, done = self._queue.get()
            try:
                self._refresh(target)
            finally:
                with self._lock:
                    del self._in_flight[target]
                    self._idle_workers += 1
                done.set()

    def _refresh(self, target: Target) -> None:
        started = self._monotonic()
        with self._lock:
            previous_listing = self._listings.get(target)
            listed_fully_at = self._listed_fully_at.get(target)
        if (
            previous_listing is not None
            and listed_fully_at is not None
            and started - listed_fully_at >= self._full_resync_seconds
        ):
            previous_listing = None
        listing: Listing | None = None
        error = None
        try:
            listing = self._list_jobs(target, previous_listing)
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
            if listing is None:
                snapshot = _failed_snapshot(target, previous, finished - started, error)
            else:
                snapshot = self._successful_snapshot(target, previous, listing, finished - started)
                # The snapshot may hold the previous, equal tuple: keep only one of the two.
                self._listings[target] = replace(listing, jobs=snapshot.jobs)
                if listing.full:
                    self._listed_fully_at[target] = started
            describe_jobs = self._describe_jobs if listing is not None else None
            if describe_jobs is None:
                self._snapshots[target] = snapshot
            self._refreshed_at[target] = finished
        if describe_jobs is not None:
            snapshot = self._describe(describe_jobs, target, snapshot, started)
        log.debug(
            "refreshed account=%s region=%s up=%s jobs=%d in %.3fs",
            snapshot.account,
            target.region,
            snapshot.up,
            len(snapshot.jobs),
            snapshot.refresh_duration_seconds,
        )

    def _describe(
        self,
        describe_jobs: DescribeJobs,
        target: Target,
        snapshot: RegionSnapshot,
        started: float,
    ) -> RegionSnapshot:
        """Describe the snapshot's published jobs, then serve it; until then the previous one is served.

        The snapshot is served once described, so a refresh publishes one snapshot, and a
        scrape or readiness check that waited for the refresh sees its descriptions.
        """
        try:
            descriptions = describe_jobs(target, snapshot.published, snapshot.descriptions)
        except Exception:  # describing is an extra: it must never fail the listing
            log.exception("describing jobs failed for region=%s", target.region)
            descriptions = snapshot.descriptions
        finished = self._monotonic()
        described = replace(
            snapshot, descriptions=descriptions, refresh_duration_seconds=finished - started
        )
        with self._lock:
            self._snapshots[target] = described
            # The TTL runs from when the snapshot is served, not from the end of its listing.
            self._refreshed_at[target] = finished
        return described

    def _successful_snapshot(
        self,
        target: Target,
        previous: RegionSnapshot | None,
        listing: Listing,
        duration: float,
    ) -> RegionSnapshot:
        now = self._clock()
        jobs = listing.jobs
        published = self._select_published(jobs, now)
        published_jobs = published.jobs
        # Unchanged jobs keep the previous tuple, so the exposition can tell nothing changed.
        if previous is not None:
            if jobs == previous.jobs:
                jobs = previous.jobs
            if published_jobs == previous.published:
                published_jobs = previous.published
        return RegionSnapshot(
            target=target,
            account=_account_label(target, jobs, previous),
            jobs=jobs,
            up=True,
            last_success_time=now,
            refresh_duration_seconds=duration,
            refresh_failures=previous.refresh_failures if previous else 0,
            published=published_jobs,
            hidden_by_retention=published.hidden_by_retention,
            hidden_by_limit=published.hidden_by_limit,
            full_listings=(previous.full_listings if previous else 0) + listing.full,
            incremental_listings=(previous.incremental_listings if previous else 0)
            + (not listing.full),
            descriptions=previous.descriptions if previous else NO_DESCRIPTIONS,
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
