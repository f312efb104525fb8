"""The snapshot cache: one snapshot per (account, region), refreshed on demand once older than the TTL.

Refreshes run on an :class:`~exporter.refresh.workers.ElasticWorkerPool` of daemon
threads, at most one per target at a time (single flight), so a target that hangs holds
only its own worker: it never delays another target's refresh nor the exporter's
shutdown. A scrape starts the refreshes that are due and never waits for AWS: it serves
the snapshots there are at once, and waits, until its deadline, only for the first refresh
of a target that has no snapshot yet. A refresh may publish its news before it ends (the
listing's, ahead of its describes), and every snapshot is handed to ``prepare`` (the
rendering of its lines) before it is served, so no scrape renders it. The lock guards
only the bookkeeping, never an AWS call nor a rendering; what a refresh does is the
:class:`TargetRefresher`'s (in production :class:`~exporter.refresh.pipeline.RefreshPipeline`).

A refresh in flight (queued or running) longer than ``refresh_timeout_seconds`` is
overdue: its target reads up=0 at once, with its last good jobs, though the worker may
still sit in a socket read, and scrapes wait for no refresh past its deadline. The refresh
itself stops at its next attempt or page (see :class:`exporter.aws.guard.RefreshGuard`);
until then the pool may start a replacement worker for it.

A target's first refresh, and one every ``full_resync_seconds``, lists every job; the others
pass the previous :class:`~exporter.model.listing.Listing` so that only changes are listed.
This module imports no AWS code.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from exporter.model.jobs import RegionSnapshot, Target, TuningJob
from exporter.model.listing import Listing
from exporter.refresh.retention import PublishedJobs
from exporter.refresh.snapshots import Refreshed, failed_snapshot, republished
from exporter.refresh.workers import ElasticWorkerPool

log = logging.getLogger(__name__)

# How long past a refresh's deadline a scrape still waits for it: enough for the clock to
# tell it is overdue when the scrape looks.
_OVERDUE_MARGIN_SECONDS = 0.05


# Serve a snapshot of a refresh still running: its news so far.
Publish = Callable[[RegionSnapshot], None]


def _nothing_to_prepare(_snapshot: RegionSnapshot) -> None:
    """The default ``prepare``: a snapshot needs nothing done before it is served."""


class TargetRefresher(Protocol):
    """What the cache asks of a refresh: run one, and choose a target's published jobs."""

    def refresh(
        self,
        target: Target,
        previous: RegionSnapshot | None,
        listing: Listing | None,
        publish: Publish,
    ) -> Refreshed:
        """Refresh ``target``: in full when ``listing`` is None, else the changes since it.

        ``previous`` is the target's last snapshot. A failure is a down snapshot, not a raise.
        ``publish`` may be called with a snapshot to serve before the refresh ends (what the
        listing found, before slower steps); the one returned replaces it.
        """
        ...

    def select_published(self, jobs: Sequence[TuningJob], now: float) -> PublishedJobs:
        """The jobs of a target that get per-job series at wall time ``now``."""
        ...


class SnapshotCache:
    """Holds the latest :class:`RegionSnapshot` of every target and refreshes stale ones.

    ``clock`` gives the wall time stamped on snapshots; ``monotonic`` measures ages,
    durations and refresh deadlines. Both are injectable so tests control time.
    ``refresh_timeout_seconds`` (None: no deadline) is how long a refresh may run before
    its target is marked down. The deadline starts when a worker starts the refresh, not
    when it is queued: with hundreds of targets, most wait their turn behind the
    ``max_concurrent_refreshes`` running ones, and waiting is not failing. Their last
    snapshots are served meanwhile.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        refresher: TargetRefresher,
        ttl_seconds: float,
        *,
        full_resync_seconds: float = 3600.0,
        max_concurrent_refreshes: int = 8,
        refresh_timeout_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._targets = tuple(targets)
        self._refresher = refresher
        self._ttl_seconds = ttl_seconds
        self._full_resync_seconds = full_resync_seconds
        self._refresh_timeout_seconds = refresh_timeout_seconds
        self._workers = ElasticWorkerPool(max_concurrent_refreshes, name="refresh")
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._snapshots: dict[Target, RegionSnapshot] = {}
        self._listings: dict[Target, Listing] = {}
        self._refreshed_at: dict[Target, float] = {}
        self._listed_fully_at: dict[Target, float] = {}
        self._in_flight: dict[Target, threading.Event] = {}
        self._started_at: dict[Target, float] = {}
        self._overdue: set[Target] = set()
        self._closed = False
        self._prepare: Callable[[RegionSnapshot], None] = _nothing_to_prepare

    def prepare_with(self, prepare: Callable[[RegionSnapshot], None]) -> None:
        """Hand every snapshot to ``prepare`` before it is served; set before the cache serves.

        ``prepare`` runs on the thread that made the snapshot (a refresh's worker), outside
        the lock: it is where a snapshot's lines are rendered, so that no scrape renders them.
        """
        self._prepare = prepare

    @property
    def targets(self) -> tuple[Target, ...]:
        """The targets this cache refreshes, in configuration order."""
        return self._targets

    def refresh_stale(self, timeout: float | None) -> None:
        """Start a refresh of every target older than the TTL; wait only for first refreshes.

        A target that has a snapshot is served it at once, while its refresh runs behind;
        one that has none yet (its first refresh) is waited for up to ``timeout`` seconds,
        or until its refresh is overdue.
        """
        _wait_all(self._start_refreshes(force=False, wait_for_all=False), timeout)

    def refresh_all(self, timeout: float | None) -> None:
        """Refresh every target now, whatever its age, waiting for all up to ``timeout`` seconds."""
        _wait_all(self._start_refreshes(force=True, wait_for_all=True), timeout)

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds until no refresh is in flight; True if none is.

        For whoever must know that the refreshes a scrape started have ended (an orderly
        stop, a test): the scrape itself does not wait for a target that has a snapshot.
        """
        with self._lock:
            pending = [(done, None) for done in self._in_flight.values()]
        _wait_all(pending, timeout)
        return all(done.is_set() for done, _ in pending)

    def snapshots(self) -> list[RegionSnapshot]:
        """The latest snapshot of every target that has finished at least one refresh.

        A target whose refresh is overdue reads up=0 here, and counts as finished.
        """
        with self._lock:
            self._mark_overdue(self._monotonic())
            return [self._snapshots[t] for t in self._targets if t in self._snapshots]

    def is_ready(self) -> bool:
        """True once every target has finished its first refresh, successful or not.

        Finished means ended, or overdue; what a first refresh published before its end (its
        listing, ahead of its describes) does not count.
        """
        with self._lock:
            self._mark_overdue(self._monotonic())
            return all(t in self._refreshed_at or t in self._overdue for t in self._targets)

    def carry_over(self, previous: SnapshotCache, targets: Iterable[Target]) -> None:
        """Start from ``previous``'s state for those of ``targets`` this cache refreshes.

        Used when the configuration is reloaded: each carried target keeps its snapshot, its
        listing (so the next refresh stays incremental) and its age, so it costs no AWS
        request before its TTL runs out, as if no reload had happened. Its published jobs
        are chosen again by this cache's refresher. Call it before the cache
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
        self._workers.close()

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
            self._prepare_lines(snapshot)
        with self._lock:
            if snapshot is not None:
                self._snapshots[target] = self._keeping_failures(target, snapshot)
            if state.listing is not None:
                self._listings[target] = state.listing
            if state.refreshed_at is not None:
                self._refreshed_at[target] = state.refreshed_at
            if state.listed_fully_at is not None:
                self._listed_fully_at[target] = state.listed_fully_at

    def _republished(self, snapshot: RegionSnapshot) -> RegionSnapshot:
        """``snapshot`` with its published jobs chosen by this cache's rules (the same object if unchanged)."""
        return republished(snapshot, self._refresher.select_published(snapshot.jobs, self._clock()))

    def _adopt_when_done(
        self, previous: SnapshotCache, target: Target, previous_done: threading.Event
    ) -> None:
        """Count ``previous``'s refresh of ``target`` as this cache's own, and take its result."""
        done = threading.Event()
        with previous._lock:
            # One still queued in ``previous`` has its deadline run from now.
            started_at = previous._started_at.get(target, self._monotonic())
            overdue = target in previous._overdue
        with self._lock:
            self._in_flight[target] = done
            # Its deadline runs on from when ``previous`` started it; if ``previous``
            # already marked it down (and counted the failure), this cache does not again.
            self._started_at[target] = started_at
            if overdue:
                self._overdue.add(target)
                self._workers.set_stuck(len(self._overdue))

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

    def _keeping_failures(self, target: Target, snapshot: RegionSnapshot) -> RegionSnapshot:
        """``snapshot``, with the failures this cache counted for ``target`` if it has more.

        A deadline this cache marked while the refresh ran counted a failure the refresh
        does not know of: a counter never goes back. The caller holds the lock.
        """
        current = self._snapshots.get(target)
        if current is not None and current.refresh_failures > snapshot.refresh_failures:
            return replace(snapshot, refresh_failures=current.refresh_failures)
        return snapshot

    def _forget_in_flight(self, target: Target) -> None:
        """Record that ``target``'s refresh has ended; the caller holds the lock."""
        del self._in_flight[target]
        self._started_at.pop(target, None)  # absent if it never started
        if target in self._overdue:
            self._overdue.discard(target)
            self._workers.set_stuck(len(self._overdue))

    def _start_refreshes(
        self, force: bool, wait_for_all: bool
    ) -> list[tuple[threading.Event, float | None]]:
        """Queue the refreshes that are due; return the completion events to wait for.

        Those are of every target in flight when ``wait_for_all``, else only of the targets
        that have no snapshot yet. Each comes with the seconds left until its refresh is
        overdue (None: no deadline), beyond which waiting for it is pointless.
        """
        pending = []
        now = self._monotonic()
        with self._lock:
            if self._closed:
                return []
            self._mark_overdue(now)
            for target in self._targets:
                waits = wait_for_all or target not in self._snapshots
                running = self._in_flight.get(target)
                if running is not None:
                    if waits and target not in self._overdue:  # an overdue one is served as down
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
                if waits:
                    pending.append((done, self._refresh_timeout_seconds))
                self._workers.submit(self._refresh_task(target), on_done=done.set)
        return pending

    def _time_left(self, target: Target, now: float) -> float | None:
        """How long to wait for ``target``'s refresh in flight: until it is overdue, or, while
        it waits in the queue, one whole deadline; None without a deadline."""
        if self._refresh_timeout_seconds is None:
            return None
        started_at = self._started_at.get(target)
        if started_at is None:
            return self._refresh_timeout_seconds
        return max(0.0, started_at + self._refresh_timeout_seconds - now)

    def _mark_overdue(self, now: float) -> None:
        """Mark down every target whose refresh has been running past its deadline."""
        timeout = self._refresh_timeout_seconds
        if timeout is None:
            return
        newly_overdue = False
        for target, started in self._started_at.items():
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
            self._snapshots[target] = failed_snapshot(
                target, self._snapshots.get(target), now - started, error
            )
        if newly_overdue:
            self._workers.set_stuck(len(self._overdue))

    def _refresh_task(self, target: Target) -> Callable[[], None]:
        """The worker's task for one refresh of ``target``."""

        def task() -> None:
            try:
                self._refresh(target)
            finally:
                with self._lock:
                    self._forget_in_flight(target)

        return task

    def _refresh(self, target: Target) -> None:
        started = self._monotonic()
        with self._lock:
            self._started_at[target] = started
            previous = self._snapshots.get(target)
            previous_listing = self._listings.get(target)
            listed_fully_at = self._listed_fully_at.get(target)
        if (
            previous_listing is not None
            and listed_fully_at is not None
            and started - listed_fully_at >= self._full_resync_seconds
        ):
            previous_listing = None
        try:
            refreshed = self._refresher.refresh(
                target, previous, previous_listing, lambda news: self._publish(target, news)
            )
        except Exception as exc:  # a failing region must never take down the others
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "refresh failed for account=%s region=%s: %s",
                target.account_id or "(default credentials)",
                target.region,
                error,
            )
            duration = self._monotonic() - started
            refreshed = Refreshed(failed_snapshot(target, previous, duration, error))
        self._prepare_lines(refreshed.snapshot)
        finished = self._monotonic()
        with self._lock:
            self._mark_overdue(finished)
            timeout = self._refresh_timeout_seconds
            ran_too_long = timeout is not None and finished - started >= timeout
            if target in self._overdue and (refreshed.listing is None or ran_too_long):
                # Marked down at its deadline, which counted the failure. An answer that
                # itself took longer than the deadline is not served; one adopted from a
                # retired cache, whose deadline ran from its adoption, may not have.
                self._refreshed_at[target] = finished
                return
            snapshot = self._keeping_failures(target, refreshed.snapshot)
            if refreshed.listing is not None:
                self._listings[target] = refreshed.listing
                if refreshed.listing.full:
                    self._listed_fully_at[target] = started
            self._snapshots[target] = snapshot
            # The TTL counts from when the refresh started, as the age of what it read: with
            # scrapes every cache.ttl, each starts the next refresh, not every other one.
            self._refreshed_at[target] = started
        log.debug(
            "refreshed account=%s region=%s up=%s jobs=%d in %.3fs",
            snapshot.account,
            target.region,
            snapshot.up,
            len(snapshot.jobs),
            snapshot.refresh_duration_seconds,
        )

    def _prepare_lines(self, snapshot: RegionSnapshot) -> None:
        """Hand ``snapshot`` to ``prepare``; a failure there leaves the scrape to render it."""
        try:
            self._prepare(snapshot)
        except Exception as error:  # a refresh's result is never lost to its rendering
            log.error(
                "cannot prepare the lines of account=%s region=%s: %s: %s",
                snapshot.account or "(default credentials)",
                snapshot.target.region,
                type(error).__name__,
                error,
            )

    def _publish(self, target: Target, snapshot: RegionSnapshot) -> None:
        """Serve ``snapshot`` of a refresh of ``target`` still running, unless it is overdue.

        Its lines are prepared first, on the refresh's worker.
        """
        self._prepare_lines(snapshot)
        with self._lock:
            self._mark_overdue(self._monotonic())
            if target in self._overdue:  # served as down, as the deadline decided
                return
            self._snapshots[target] = self._keeping_failures(target, snapshot)


@dataclass(frozen=True)
class _TargetState:
    """What the refreshes of one target left behind, as :meth:`SnapshotCache.carry_over` moves it."""

    snapshot: RegionSnapshot | None
    listing: Listing | None
    refreshed_at: float | None
    listed_fully_at: float | None


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
