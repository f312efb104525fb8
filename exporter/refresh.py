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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from exporter.jobs import RegionSnapshot, Target, TuningJob
from exporter.listing import Listing
from exporter.retention import PublishedJobs

log = logging.getLogger(__name__)

# List the target's jobs: in full when the previous listing is None, else the changes since it.
ListJobs = Callable[[Target, Listing | None], Listing]
# Choose the jobs that get per-job series from a target's jobs at a wall time.
SelectPublished = Callable[[Sequence[TuningJob], float], PublishedJobs]


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
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._targets = tuple(targets)
        self._list_jobs = list_jobs
        self._ttl_seconds = ttl_seconds
        self._full_resync_seconds = full_resync_seconds
        self._max_workers = max(1, max_concurrent_refreshes)
        self._select_published = select_published
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._snapshots: dict[Target, RegionSnapshot] = {}
        self._listings: dict[Target, Listing] = {}
        self._refreshed_at: dict[Target, float] = {}
        self._listed_fully_at: dict[Target, float] = {}
        self._in_flight: dict[Target, threading.Event] = {}
        # None asks the worker that takes it to end (see close).
        self._queue: queue.SimpleQueue[tuple[Target, threading.Event] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._closed = False

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

    def carry_over(self, previous: SnapshotCache, targets: Iterable[Target]) -> None:
        """Start from ``previous``'s state for those of ``targets`` this cache refreshes.

        Used when the configuration is reloaded: each carried target keeps its snapshot, its
        listing (so the next refresh stays incremental) and its age, so it costs no AWS
        request before its TTL runs out, as if no reload had happened. Its published jobs
        are chosen again with this cache's ``select_published``. Call it before the cache
        serves anything; ``previous`` must measure ages with the same ``monotonic``.

        A refresh of a carried target still in flight in ``previous`` is adopted: this cache
        starts no second one, and takes the result when it lands. Refreshes ``previous``
        runs for any other target, or starts later, are dropped with ``previous``.
        """
        carried = [target for target in dict.fromkeys(targets) if target in self._targets]
        with previous._lock:
            states = {target: previous._state_of(target) for target in carried}
            running = {
                target: previous._in_flight[target]
                for target in carried
                if target in previous._in_flight
            }
        for target, state in states.items():
            self._store_state(target, state)
        for target, previous_done in running.items():
            self._adopt_when_done(previous, target, previous_done)

    def close(self) -> None:
        """Let the worker threads end once the refreshes queued so far have run.

        For a cache another has replaced: its snapshots stay readable, but it starts no
        refresh after this; asked for one, it serves what it holds at once.
        """
        with self._lock:
            self._closed = True
            workers = len(self._workers)
        for _ in range(workers):
            self._queue.put(None)

    def _state_of(self, target: Target) -> _TargetState:
        """What a refresh of ``target`` left behind; the caller holds the lock."""
        return _TargetState(
            self._snapshots.get(target),
            self._listings.get(target),
            self._refreshed_at.get(target),
            self._listed_fully_at.get(target),
        )

    def _store_state(self, target: Target, state: _TargetState) -> None:
        snapshot = state.snapshot
        if snapshot is not None:
            snapshot = self._republished(snapshot)
        with self._lock:
            if snapshot is not None:
                self._snapshots[target] = snapshot
            if state.listing is not None:
                self._listings[target] = state.listing
            if state.refreshed_at is not None:
                self._refreshed_at[target] = state.refreshed_at
            if state.listed_fully_at is not None:
                self._listed_fully_at[target] = state.listed_fully_at

    def _republished(self, snapshot: RegionSnapshot) -> RegionSnapshot:
        """``snapshot`` with its published jobs chosen by this cache's rules (the same object if unchanged)."""
        published = self._select_published(snapshot.jobs, self._clock())
        if (
            published.jobs == snapshot.published
            and published.hidden_by_retention == snapshot.hidden_by_retention
            and published.hidden_by_limit == snapshot.hidden_by_limit
        ):
            return snapshot
        return replace(
            snapshot,
            published=published.jobs,
            hidden_by_retention=published.hidden_by_retention,
            hidden_by_limit=published.hidden_by_limit,
        )

    def _adopt_when_done(
        self, previous: SnapshotCache, target: Target, previous_done: threading.Event
    ) -> None:
        """Count ``previous``'s refresh of ``target`` as this cache's own, and take its result."""
        done = threading.Event()
        with self._lock:
            self._in_flight[target] = done

        def adopt() -> None:
            previous_done.wait()
            with previous._lock:
                state = previous._state_of(target)
            try:
                self._store_state(target, state)
            finally:
                with self._lock:
                    del self._in_flight[target]
                done.set()

        waiter = threading.Thread(target=adopt, name=f"adopt-{target.region}", daemon=True)
        try:
            waiter.start()
        except RuntimeError as error:  # no thread to be had: this cache refreshes it itself
            log.error("cannot wait for a refresh in flight: %s", error)
            with self._lock:
                del self._in_flight[target]
            done.set()

    def _start_refreshes(self, force: bool) -> list[threading.Event]:
        """Queue the refreshes that are due; return the completion events to wait for."""
        pending = []
        now = self._monotonic()
        with self._lock:
            if self._closed:
                return []
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
        while (job := self._queue.get()) is not None:
            target, done = job
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
        )


@dataclass(frozen=True)
class _TargetState:
    """What the refreshes of one target left behind, as :meth:`SnapshotCache.carry_over` moves it."""

    snapshot: RegionSnapshot | None
    listing: Listing | None
    refreshed_at: float | None
    listed_fully_at: float | None


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
