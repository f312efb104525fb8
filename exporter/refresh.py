"""The snapshot cache: one snapshot per (account, region), refreshed on demand once older than the TTL.

Refreshes run on a bounded pool of daemon worker threads, at most one per target at a time
(single flight), so a target that hangs holds only its own worker: it never delays another
target's refresh nor, being a daemon, the exporter's shutdown. A scrape waits for
refreshes at most until its deadline and then serves the last snapshots. The lock guards
only the bookkeeping, never an AWS call.

A refresh in flight (queued or running) longer than ``refresh_timeout_seconds`` is
overdue: its target reads up=0 at once, with its last good jobs, though the worker may
still sit in a socket read, and scrapes wait for no refresh past its deadline. The refresh
itself stops at its next attempt or page (see :class:`exporter.aws.RefreshGuard`); until
then its worker is replaced, see :meth:`SnapshotCache._capacity`.

A target's first refresh, and one every ``full_resync_seconds``, lists every job; the others
pass the previous :class:`~exporter.listing.Listing` so that only changes are listed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from exporter.describe import JobDescription
from exporter.jobs import (
    NO_DESCRIPTIONS,
    JobTags,
    RegionSnapshot,
    SummaryProblems,
    Target,
    TuningJob,
)
from exporter.listing import Listing
from exporter.retention import PublishedJobs

log = logging.getLogger(__name__)

# How long past a refresh's deadline a scrape still waits for it: enough for the clock to
# tell it is overdue when the scrape looks.
_OVERDUE_MARGIN_SECONDS = 0.05

# List the target's jobs: in full when the previous listing is None, else the changes since it.
ListJobs = Callable[[Target, Listing | None], Listing]
# Choose the jobs that get per-job series from a target's jobs at a wall time.
SelectPublished = Callable[[Sequence[TuningJob], float], PublishedJobs]
# The tags of a target's jobs (see exporter.tags); it never raises.
ReadTags = Callable[[Target], JobTags]
# The descriptions of a target's published jobs, given the previous ones (see exporter.describe).
DescribeJobs = Callable[
    [Target, Sequence[TuningJob], Mapping[str, JobDescription]], Mapping[str, JobDescription]
]


def publish_every_job(jobs: Sequence[TuningJob], _now: float) -> PublishedJobs:
    """Give every job per-job series."""
    return PublishedJobs(tuple(jobs))


class SnapshotCache:
    """Holds the latest :class:`RegionSnapshot` of every target and refreshes stale ones.

    ``clock`` gives the wall time stamped on snapshots; ``monotonic`` measures ages,
    durations and refresh deadlines. Both are injectable so tests control time.
    ``refresh_timeout_seconds`` (None: no deadline) is how long a refresh may be in flight
    before its target is marked down.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        list_jobs: ListJobs,
        ttl_seconds: float,
        *,
        full_resync_seconds: float = 3600.0,
        max_concurrent_refreshes: int = 8,
        refresh_timeout_seconds: float | None = None,
        select_published: SelectPublished = publish_every_job,
        read_tags: ReadTags | None = None,
        describe_jobs: DescribeJobs | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._targets = tuple(targets)
        self._list_jobs = list_jobs
        self._ttl_seconds = ttl_seconds
        self._full_resync_seconds = full_resync_seconds
        self._max_workers = max(1, max_concurrent_refreshes)
        self._refresh_timeout_seconds = refresh_timeout_seconds
        self._select_published = select_published
        self._read_tags = read_tags
        self._describe_jobs = describe_jobs
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._snapshots: dict[Target, RegionSnapshot] = {}
        self._listings: dict[Target, Listing] = {}
        self._refreshed_at: dict[Target, float] = {}
        self._listed_fully_at: dict[Target, float] = {}
        self._in_flight: dict[Target, threading.Event] = {}
        self._requested_at: dict[Target, float] = {}
        self._overdue: set[Target] = set()
        # None asks the worker that takes it to end (see close).
        self._queue: queue.SimpleQueue[tuple[Target, threading.Event] | None] = queue.SimpleQueue()
        self._workers_started = 0
        self._live_workers = 0
        self._idle_workers = 0
        self._unclaimed_jobs = 0
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
        """The latest snapshot of every target that has finished at least one refresh.

        A target whose refresh is overdue reads up=0 here, and counts as finished.
        """
        with self._lock:
            self._mark_overdue(self._monotonic())
            return [self._snapshots[t] for t in self._targets if t in self._snapshots]

    def is_ready(self) -> bool:
        """True once every target has finished its first refresh, successful or not."""
        with self._lock:
            self._mark_overdue(self._monotonic())
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
            workers = self._live_workers
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
            current = self._snapshots.get(target)
            if (
                snapshot is not None
                and current is not None
                and current.refresh_failures > snapshot.refresh_failures
            ):
                # This cache counted a failure of its own (a deadline it marked): a counter
                # never goes back.
                snapshot = replace(snapshot, refresh_failures=current.refresh_failures)
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
        with previous._lock:
            requested_at = previous._requested_at.get(target, self._monotonic())
            overdue = target in previous._overdue
        with self._lock:
            self._in_flight[target] = done
            # Its deadline runs on from when ``previous`` asked for it; if ``previous``
            # already marked it down (and counted the failure), this cache does not again.
            self._requested_at[target] = requested_at
            if overdue:
                self._overdue.add(target)

        def adopt() -> None:
            previous_done.wait()
            with previous._lock:
                state = previous._state_of(target)
            try:
                self._store_state(target, state)
            finally:
                with self._lock:
                    self._forget_in_flight(target)
                done.set()

        waiter = threading.Thread(target=adopt, name=f"adopt-{target.region}", daemon=True)
        try:
            waiter.start()
        except RuntimeError as error:  # no thread to be had: this cache refreshes it itself
            log.error("cannot wait for a refresh in flight: %s", error)
            with self._lock:
                self._forget_in_flight(target)
            done.set()

    def _forget_in_flight(self, target: Target) -> None:
        """Record that ``target``'s refresh has ended; the caller holds the lock."""
        del self._in_flight[target]
        del self._requested_at[target]
        self._overdue.discard(target)

    def _start_refreshes(self, force: bool) -> list[tuple[threading.Event, float | None]]:
        """Queue the refreshes that are due; return the completion events to wait for.

        Each comes with the seconds left until its refresh is overdue (None: no deadline),
        beyond which waiting for it is pointless.
        """
        pending = []
        now = self._monotonic()
        with self._lock:
            if self._closed:
                return []
            self._mark_overdue(now)
            for target in self._targets:
                running = self._in_flight.get(target)
                if running is not None:
                    if target not in self._overdue:  # an overdue one is served as down
                        pending.append((running, self._time_left(target, now)))
                    continue
                refreshed_at = self._refreshed_at.get(target)
                if (
                    not force
                    and refreshed_at is not None
                    and now - refreshed_at < self._ttl_seconds
                ):
                    continue
                done = self._in_flight[target] = threading.Event()
                self._requested_at[target] = now
                self._queue.put((target, done))
                self._unclaimed_jobs += 1
                pending.append((done, self._refresh_timeout_seconds))
            self._dispatch()
        return pending

    def _capacity(self) -> int:
        """How many workers may live now: the pool, plus one per overdue refresh.

        A refresh past its deadline usually ends at its next attempt, but one stuck in a
        socket read holds its worker until the read times out. Rather than let hung targets
        starve healthy ones of workers, each overdue refresh lets one replacement worker
        start, up to ``max_concurrent_refreshes`` replacements: at most twice the pool in
        threads, however many targets hang. A worker that finds more workers alive than the
        capacity once its refresh ends, exits.
        """
        return self._max_workers + min(len(self._overdue), self._max_workers)

    def _dispatch(self) -> None:
        """Hand each queued, unclaimed refresh to an idle worker, or to a new one if capacity allows."""
        while self._unclaimed_jobs > 0:
            if self._idle_workers > 0:
                self._idle_workers -= 1  # that worker will take a job
            elif self._live_workers < self._capacity():
                worker = threading.Thread(
                    target=self._work, name=f"refresh-{self._workers_started}", daemon=True
                )
                try:
                    worker.start()
                except RuntimeError as error:  # no thread to be had: the job waits for a worker
                    log.error("cannot start a refresh worker: %s", error)
                    return
                self._workers_started += 1
                self._live_workers += 1
            else:
                return  # the next worker to finish takes it
            self._unclaimed_jobs -= 1

    def _time_left(self, target: Target, now: float) -> float | None:
        """Seconds until ``target``'s refresh in flight is overdue; None without a deadline."""
        if self._refresh_timeout_seconds is None:
            return None
        return max(0.0, self._requested_at[target] + self._refresh_timeout_seconds - now)

    def _mark_overdue(self, now: float) -> None:
        """Mark down every target whose refresh has been in flight past its deadline."""
        timeout = self._refresh_timeout_seconds
        if timeout is None:
            return
        newly_overdue = False
        for target, started in self._requested_at.items():
            if target in self._overdue or now - started < timeout:
                continue
            self._overdue.add(target)
            newly_overdue = True
            error = f"refresh exceeded its {timeout:g}s deadline"
            log.warning(
                "refresh of account=%s region=%s %s; serving its last good jobs as down",
                target.account_id or "(default credentials)",
                target.region,
                error.removeprefix("refresh "),
            )
            self._snapshots[target] = _failed_snapshot(
                target, self._snapshots.get(target), now - started, error
            )
        if newly_overdue:
            self._dispatch()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            target, done = job
            try:
                self._refresh(target)
            finally:
                with self._lock:
                    self._forget_in_flight(target)
                    # A closed cache's workers end too: a worker started after close() (for
                    # an overdue refresh) would find no stop marker left for it.
                    retire = self._unclaimed_jobs == 0 and (
                        self._closed or self._live_workers > self._capacity()
                    )
                    if retire:
                        self._live_workers -= 1
                    elif self._unclaimed_jobs > 0:
                        self._unclaimed_jobs -= 1  # this worker takes the next one
                    else:
                        self._idle_workers += 1
                done.set()
            if retire:
                return
        with self._lock:  # closed: this worker was idle, or would have been
            self._live_workers -= 1
            self._idle_workers = max(0, self._idle_workers - 1)

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
                "refresh failed for account=%s role=%s region=%s: %s",
                target.account_id or "(default credentials)",
                target.role_arn or "(none)",
                target.region,
                error,
            )
        # Outside the lock, like the listing: reading tags and describing jobs call AWS. The
        # published jobs are chosen once, for the describes and the snapshot alike.
        published = None if listing is None else self._select_published(listing.jobs, self._clock())
        tags = self._read_tags(target) if listing is not None and self._read_tags else None
        descriptions = (
            self._describe(target, published.jobs, listing.descriptions)
            if listing is not None and published is not None
            else None
        )
        finished = self._monotonic()
        with self._lock:
            self._mark_overdue(finished)
            previous = self._snapshots.get(target)
            timeout = self._refresh_timeout_seconds
            ran_too_long = timeout is not None and finished - started >= timeout
            if target in self._overdue and (listing is None or ran_too_long):
                # Marked down at its deadline, which counted the failure. An answer that
                # itself took longer than the deadline is not served; one that only waited
                # in the queue is, as it is as fresh as any.
                self._refreshed_at[target] = finished
                return
            if listing is None or published is None:
                snapshot = _failed_snapshot(target, previous, finished - started, error)
            else:
                snapshot = self._successful_snapshot(
                    target, previous, listing, published, finished - started
                )
                if tags is not None:
                    snapshot = replace(snapshot, tags=tags)
                if descriptions is not None:
                    snapshot = replace(snapshot, descriptions=descriptions)
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

    def _describe(
        self,
        target: Target,
        published: Sequence[TuningJob],
        listed: Mapping[str, JobDescription],
    ) -> Mapping[str, JobDescription] | None:
        """The descriptions of the ``published`` jobs; None when describing is off.

        ``listed`` are the descriptions the listing itself asked for (of active jobs deeper
        than its walk): fresh, so they are not asked for again. It runs before the snapshot
        is served, so a refresh publishes one snapshot, and a scrape or readiness check that
        waited for the refresh sees its descriptions.
        """
        if self._describe_jobs is None:
            return None
        with self._lock:
            previous = self._snapshots.get(target)
        known = previous.descriptions if previous is not None else NO_DESCRIPTIONS
        if listed:
            known = MappingProxyType({**known, **listed})
        try:
            return self._describe_jobs(target, published, known)
        except Exception as error:  # describing is an extra: it must never fail the listing
            log.warning(
                "describing jobs failed for account=%s region=%s, keeping the last descriptions: "
                "%s: %s",
                target.account_id or "(default credentials)",
                target.region,
                type(error).__name__,
                error,
            )
            return known

    def _successful_snapshot(
        self,
        target: Target,
        previous: RegionSnapshot | None,
        listing: Listing,
        published: PublishedJobs,
        duration: float,
    ) -> RegionSnapshot:
        now = self._clock()
        jobs = listing.jobs
        published_jobs = published.jobs
        # Unchanged jobs keep the previous tuple, so the exposition can tell nothing changed.
        if previous is not None:
            if jobs == previous.jobs:
                jobs = previous.jobs
            if published_jobs == previous.published:
                published_jobs = previous.published
        problems = _problems_since_start(previous, listing)
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
            skipped_summaries=problems.skipped,
            invalid_fields=problems.invalid_fields,
            descriptions=previous.descriptions if previous else NO_DESCRIPTIONS,
        )


@dataclass(frozen=True)
class _TargetState:
    """What the refreshes of one target left behind, as :meth:`SnapshotCache.carry_over` moves it."""

    snapshot: RegionSnapshot | None
    listing: Listing | None
    refreshed_at: float | None
    listed_fully_at: float | None


def _problems_since_start(previous: RegionSnapshot | None, listing: Listing) -> SummaryProblems:
    """The previous snapshot's counts of unusable summaries and fields, this listing's added."""
    if previous is None:
        return listing.problems
    return SummaryProblems(previous.skipped_summaries, previous.invalid_fields) + listing.problems


def _wait_all(
    pending: Sequence[tuple[threading.Event, float | None]], timeout: float | None
) -> None:
    """Wait until every event is set, each at most its own time limit, all within ``timeout``."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    for event, time_left in pending:
        # A little past the refresh's deadline, so that it reads as overdue once we stop.
        limits = [d for d in (deadline, _after(started, time_left)) if d is not None]
        remaining = max(0.0, min(limits) - time.monotonic()) if limits else None
        event.wait(remaining)


def _after(start: float, seconds: float | None) -> float | None:
    return None if seconds is None else start + seconds + _OVERDUE_MARGIN_SECONDS


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
