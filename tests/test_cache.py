"""The snapshot cache: TTL, single flight, scrape deadline, and failures that keep the last good jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from exporter.model.jobs import RegionSnapshot, Target, TuningJob
from exporter.model.listing import Listing
from exporter.refresh.cache import Publish, SnapshotCache
from exporter.refresh.retention import PublishedJobs
from exporter.refresh.snapshots import Refreshed
from tests.factories import tuning_job
from tests.polling import wait_until
from tests.refreshers import ListingRefresher, listing_cache

EU = Target(region="eu-west-1")
US = Target(region="us-east-1")
ROLE = Target(
    region="eu-west-1",
    role_arn="arn:aws:iam::222222222222:role/reader",
    account_id="222222222222",
)


def job(name: str, account: str = "111111111111", status: str = "Completed") -> TuningJob:
    return tuning_job(name, account=account, status=status)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class ScriptedListing:
    """Answers each target's listing from a script: a list of jobs, or an exception to raise."""

    def __init__(self) -> None:
        self.answers: dict[Target, list[TuningJob] | Exception] = {}
        self.calls: list[Target] = []
        self.previous: list[Listing | None] = []
        self.release = threading.Event()
        self.release.set()
        self.lock = threading.Lock()

    def __call__(self, target: Target, previous: Listing | None) -> Listing:
        with self.lock:
            self.calls.append(target)
            self.previous.append(previous)
        self.release.wait(timeout=10)
        answer = self.answers.get(target, [])
        if isinstance(answer, Exception):
            raise answer
        return Listing(tuple(answer), full=previous is None)


def make_cache(
    listing: ScriptedListing,
    clock: FakeClock,
    targets: Sequence[Target] = (EU, US),
    **settings: Any,
) -> SnapshotCache:
    return listing_cache(targets, listing, ttl_seconds=60, clock=clock, monotonic=clock, **settings)


def refresh_behind_a_scrape(cache: SnapshotCache, timeout: float = 5) -> None:
    """A scrape's refreshes, then the wait for them to end, which a scrape itself no longer does."""
    cache.refresh_stale(timeout=timeout)
    assert cache.wait_idle(timeout=timeout)


def test_should_not_refresh_again_within_the_ttl() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    cache = make_cache(listing, clock)

    refresh_behind_a_scrape(cache)
    clock.now += 59
    refresh_behind_a_scrape(cache)

    assert sorted(t.region for t in listing.calls) == ["eu-west-1", "us-east-1"]


def test_should_refresh_once_the_ttl_has_passed() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    cache = make_cache(listing, clock)

    refresh_behind_a_scrape(cache)
    clock.now += 60
    refresh_behind_a_scrape(cache)

    assert len(listing.calls) == 4


def test_concurrent_scrapes_share_one_refresh_per_target() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.release.clear()
    # The scrape threads that have read the cache's clock, which each does once on arrival.
    readers: set[str] = set()

    def monotonic() -> float:
        if threading.current_thread().name.startswith("scrape-"):
            readers.add(threading.current_thread().name)
        return clock()

    # A TTL of 0: any scrape that did not join the running refresh would start its own.
    cache = listing_cache((EU, US), listing, ttl_seconds=0, clock=clock, monotonic=monotonic)
    arrived = threading.Semaphore(0)

    def scrape() -> None:
        arrived.release()
        cache.refresh_stale(timeout=10)

    scrapes = [threading.Thread(target=scrape, name=f"scrape-{n}") for n in range(8)]
    for thread in scrapes:
        thread.start()
    for _ in scrapes:
        assert arrived.acquire(timeout=5)
    wait_until(lambda: len(readers) == len(scrapes), message="every scrape to reach the cache")
    # Refreshes end later than every scrape arrived: a scrape that reaches the cache's lock
    # only after they ended finds them fresh, as it would a refresh it had joined.
    clock.now += 1
    listing.release.set()
    for thread in scrapes:
        thread.join()

    assert sorted(t.region for t in listing.calls) == ["eu-west-1", "us-east-1"]
    assert len(cache.snapshots()) == 2


def test_a_scrape_serves_the_last_snapshot_at_once_while_its_refresh_runs_behind() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("first")]
    cache = make_cache(listing, clock, targets=(EU,))
    cache.refresh_stale(timeout=5)
    listing.release.clear()
    listing.answers[EU] = [job("second")]
    clock.now += 61

    started = time.monotonic()
    cache.refresh_stale(timeout=5)  # a scrape with seconds to spare waits for none of them
    waited = time.monotonic() - started

    assert waited < 1
    wait_until(lambda: len(listing.calls) == 2, message="the refresh the scrape started")
    assert [j.name for j in cache.snapshots()[0].jobs] == ["first"]
    listing.release.set()
    assert cache.wait_idle(timeout=5)
    assert [j.name for j in cache.snapshots()[0].jobs] == ["second"]


def test_a_scrape_waits_for_a_first_refresh_until_its_own_deadline() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("first")]
    listing.release.clear()
    cache = make_cache(listing, clock, targets=(EU,))

    started = time.monotonic()
    cache.refresh_stale(timeout=0.2)
    waited = time.monotonic() - started

    assert 0.2 <= waited < 5
    assert cache.snapshots() == []
    listing.release.set()
    cache.refresh_stale(timeout=5)  # joins the first refresh still in flight
    assert [j.name for j in cache.snapshots()[0].jobs] == ["first"]


def test_a_failed_refresh_keeps_the_last_good_jobs_and_marks_the_target_down() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("kept")]
    cache = make_cache(listing, clock)
    refresh_behind_a_scrape(cache)
    first_success = cache.snapshots()[0].last_success_time
    listing.answers[EU] = RuntimeError("HTTP 500")
    clock.now += 61

    refresh_behind_a_scrape(cache)

    eu, us = cache.snapshots()
    assert (eu.up, [j.name for j in eu.jobs], eu.last_success_time) == (
        False,
        ["kept"],
        first_success,
    )
    assert eu.error == "RuntimeError: HTTP 500"
    assert us.up is True
    assert (eu.refresh_failures, us.refresh_failures) == (1, 0)


def test_a_target_that_never_succeeded_is_down_with_no_jobs() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[ROLE] = PermissionError("AccessDenied")
    cache = make_cache(listing, clock, targets=(ROLE,))

    cache.refresh_stale(timeout=5)

    (snapshot,) = cache.snapshots()
    assert (snapshot.up, snapshot.jobs, snapshot.last_success_time) == (False, (), None)
    assert snapshot.account == "222222222222"


def test_ambient_credentials_take_their_account_from_job_arns_and_keep_it() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("a", account="333333333333")]
    cache = make_cache(listing, clock, targets=(EU,))
    refresh_behind_a_scrape(cache)
    listing.answers[EU] = []
    clock.now += 61

    refresh_behind_a_scrape(cache)

    assert cache.snapshots()[0].account == "333333333333"


def test_is_ready_once_every_target_finished_its_first_refresh() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[US] = RuntimeError("down")
    listing.release.clear()
    cache = make_cache(listing, clock)

    cache.refresh_stale(timeout=0)
    assert cache.is_ready() is False
    listing.release.set()
    cache.refresh_stale(timeout=5)

    assert cache.is_ready() is True


def test_refresh_all_ignores_the_ttl() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    cache = make_cache(listing, clock, targets=(EU,))

    cache.refresh_all(timeout=5)
    cache.refresh_all(timeout=5)

    assert listing.calls == [EU, EU]


def test_hanging_targets_never_hold_up_a_healthy_one_while_the_pool_has_room() -> None:
    hung = threading.Event()
    healthy = Target(region="us-east-1")
    hanging = [Target(region=f"eu-west-{n}") for n in range(1, 8)]
    calls: list[Target] = []

    def list_jobs(target: Target, previous: Listing | None) -> Listing:
        calls.append(target)
        if target != healthy:
            hung.wait(timeout=30)
        return Listing((), full=previous is None)

    clock = FakeClock()
    cache = listing_cache(
        [*hanging, healthy],
        list_jobs,
        ttl_seconds=60,
        max_concurrent_refreshes=8,
        clock=clock,
        monotonic=clock,
    )
    try:
        for _ in range(3):
            cache.refresh_stale(timeout=0.5)
            clock.now += 61
    finally:
        hung.set()

    assert calls.count(healthy) == 3
    assert all(calls.count(target) == 1 for target in hanging)  # single flight while hung


def test_no_more_refreshes_run_at_once_than_the_pool_allows() -> None:
    targets = [Target(region=f"eu-west-{n}") for n in range(1, 13)]
    running = 0
    most_running = 0
    lock = threading.Lock()
    release = threading.Event()

    def list_jobs(target: Target, previous: Listing | None) -> Listing:
        nonlocal running, most_running
        with lock:
            running += 1
            most_running = max(most_running, running)
        release.wait(timeout=10)
        with lock:
            running -= 1
        return Listing((job(target.region),), full=True)

    clock = FakeClock()
    cache = listing_cache(
        targets, list_jobs, ttl_seconds=60, max_concurrent_refreshes=3, clock=clock, monotonic=clock
    )
    cache.refresh_stale(timeout=0)  # queues all 12; the listings hold their workers
    wait_until(lambda: running == 3, message="the pool's three refreshes to run at once")
    release.set()
    cache.refresh_stale(timeout=10)  # waits for all 12, still in flight

    assert most_running == 3
    assert len(cache.snapshots()) == 12


def test_lists_in_full_first_then_changes_until_the_full_resync_is_due() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("a")]
    cache = make_cache(listing, clock, targets=(EU,), full_resync_seconds=150)

    for _ in range(4):
        refresh_behind_a_scrape(cache)
        clock.now += 61

    kinds = ["full" if previous is None else "changes" for previous in listing.previous]
    assert kinds == ["full", "changes", "changes", "full"]
    snapshot = cache.snapshots()[0]
    assert (snapshot.full_listings, snapshot.incremental_listings) == (2, 2)


def test_a_failed_refresh_lists_changes_from_the_last_good_listing() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("a")]
    cache = make_cache(listing, clock, targets=(EU,))
    refresh_behind_a_scrape(cache)
    listing.answers[EU] = RuntimeError("HTTP 500")
    clock.now += 61
    refresh_behind_a_scrape(cache)
    listing.answers[EU] = [job("a"), job("b")]
    clock.now += 61

    refresh_behind_a_scrape(cache)

    first, _, third = listing.previous
    assert first is None
    assert third is not None
    assert [j.name for j in third.jobs] == ["a"]
    assert [j.name for j in cache.snapshots()[0].jobs] == ["a", "b"]


def test_retention_decides_the_published_jobs_and_counts_the_rest() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("a"), job("b"), job("c")]

    def publish_two(jobs: Sequence[TuningJob], now: float) -> PublishedJobs:
        assert now == clock.now
        return PublishedJobs(tuple(jobs[:2]), hidden_by_retention=1)

    cache = make_cache(listing, clock, targets=(EU,), select_published=publish_two)
    cache.refresh_stale(timeout=5)

    snapshot = cache.snapshots()[0]
    assert [j.name for j in snapshot.published] == ["a", "b"]
    assert len(snapshot.jobs) == 3
    assert snapshot.hidden_by_retention == 1


def test_an_unchanged_listing_keeps_the_same_job_tuples() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("a")]
    cache = make_cache(listing, clock, targets=(EU,))
    refresh_behind_a_scrape(cache)
    before = cache.snapshots()[0]
    clock.now += 61

    refresh_behind_a_scrape(cache)

    after = cache.snapshots()[0]
    assert after is not before
    assert after.jobs is before.jobs
    assert after.published is before.published


def test_a_refresh_past_its_deadline_marks_the_target_down_with_its_last_good_jobs() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("kept")]
    cache = make_cache(listing, clock, refresh_timeout_seconds=30)
    cache.refresh_stale(timeout=5)
    first_success = cache.snapshots()[0].last_success_time
    listing.release.clear()  # the next refreshes hang, as in a socket read
    listing.answers[EU] = [job("late")]
    clock.now += 61
    cache.refresh_stale(timeout=0.1)
    wait_until(lambda: len(listing.calls) == 4, message="both refreshes to start")

    clock.now += 29.9
    still_waiting = cache.snapshots()[0]
    clock.now += 0.1
    eu, us = cache.snapshots()

    assert still_waiting.up is True
    assert (eu.up, [j.name for j in eu.jobs], eu.last_success_time) == (
        False,
        ["kept"],
        first_success,
    )
    assert eu.error == "refresh exceeded its 30s deadline"
    assert eu.refresh_failures == 1
    assert us.up is False  # hung too: same listing
    listing.release.set()


def test_scrapes_stop_waiting_for_an_overdue_refresh() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    cache = make_cache(listing, clock, targets=(EU,), refresh_timeout_seconds=30)
    listing.release.clear()
    cache.refresh_stale(timeout=0.1)
    clock.now += 31

    started = time.monotonic()
    cache.refresh_stale(timeout=20)
    waited = time.monotonic() - started

    assert waited < 10  # not the 20 s a scrape waits for a refresh still within its deadline
    (snapshot,) = cache.snapshots()
    assert (snapshot.up, snapshot.last_success_time) == (False, None)
    assert cache.is_ready() is True  # an overdue first refresh counts as finished
    assert listing.calls == [EU]  # single flight: no second refresh while one hangs
    listing.release.set()


def test_a_target_recovers_once_its_hung_refresh_ends() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("old")]
    cache = make_cache(listing, clock, targets=(EU,), refresh_timeout_seconds=30)
    cache.refresh_stale(timeout=5)
    listing.release.clear()
    listing.answers[EU] = [job("new")]
    clock.now += 61
    cache.refresh_stale(timeout=0.1)
    wait_until(lambda: len(listing.calls) == 2, message="the hung refresh to start")
    clock.now += 31
    assert cache.snapshots()[0].up is False

    listing.release.set()

    def refreshed() -> bool:
        clock.now += 61  # past the TTL of whichever refresh ended last
        refresh_behind_a_scrape(cache, timeout=1)
        return cache.snapshots()[0].up

    wait_until(refreshed, interval=0.01, message="the target to be up again")
    assert [j.name for j in cache.snapshots()[0].jobs] == ["new"]


def test_an_overdue_refresh_frees_a_worker_for_healthy_targets() -> None:
    hung = threading.Event()
    hanging = Target(region="ap-south-1")
    calls: list[Target] = []

    def list_jobs(target: Target, previous: Listing | None) -> Listing:
        calls.append(target)
        if target == hanging:
            hung.wait(timeout=30)
        return Listing((job(target.region),), full=previous is None)

    clock = FakeClock()
    cache = listing_cache(
        [hanging, EU],
        list_jobs,
        ttl_seconds=60,
        max_concurrent_refreshes=1,
        refresh_timeout_seconds=30,
        clock=clock,
        monotonic=clock,
    )
    try:
        cache.refresh_stale(timeout=0.3)
        starved = [s.target for s in cache.snapshots()]
        clock.now += 31  # both overdue, the second only ever queued: a replacement runs it
        cache.refresh_stale(timeout=0)
        wait_until(
            lambda: any(s.target == EU and s.up for s in cache.snapshots()),
            interval=0.01,
            message="the healthy target to be refreshed by a replacement worker",
        )
        snapshots = {s.target: s for s in cache.snapshots()}
    finally:
        hung.set()

    assert starved == []  # the only worker hangs on the first target
    assert snapshots[EU].up is True
    assert snapshots[hanging].up is False
    assert snapshots[hanging].error == "refresh exceeded its 30s deadline"


def test_a_refresh_that_waits_in_the_queue_past_the_deadline_is_not_marked_down() -> None:
    # One worker for three targets, each listed in 25 s of the fake clock, within the 30 s
    # deadline: the third starts 50 s after it was asked for, and is no failure for it.
    clock = FakeClock()
    targets = [Target(region=f"eu-west-{n}") for n in range(1, 4)]

    def list_jobs(target: Target, previous: Listing | None) -> Listing:
        clock.now += 25
        return Listing((job(target.region),), full=previous is None)

    cache = listing_cache(
        targets,
        list_jobs,
        ttl_seconds=600,
        max_concurrent_refreshes=1,
        refresh_timeout_seconds=30,
        clock=clock,
        monotonic=clock,
    )
    cache.refresh_all(timeout=None)
    snapshots = {s.target: s for s in cache.snapshots()}

    assert [(snapshots[t].up, snapshots[t].refresh_failures) for t in targets] == [(True, 0)] * 3


def test_replacement_workers_for_overdue_refreshes_are_bounded_by_the_pool_size() -> None:
    hung = threading.Event()
    hanging = [Target(region=f"eu-west-{n}") for n in range(1, 4)]
    calls: list[Target] = []

    def list_jobs(target: Target, previous: Listing | None) -> Listing:
        calls.append(target)
        hung.wait(timeout=30)
        return Listing((), full=previous is None)

    clock = FakeClock()
    cache = listing_cache(
        hanging,
        list_jobs,
        ttl_seconds=60,
        max_concurrent_refreshes=1,
        refresh_timeout_seconds=30,
        clock=clock,
        monotonic=clock,
    )
    try:
        cache.refresh_stale(timeout=0.1)
        clock.now += 31  # the first is overdue: one replacement starts the second
        cache.refresh_stale(timeout=0)
        wait_until(lambda: len(calls) == 2, interval=0.01, message="the second listing to start")
        clock.now += 31  # the second is overdue too, but the pool of 1 allows 1 replacement
        cache.refresh_stale(timeout=0.3)
        started = list(calls)
    finally:
        hung.set()

    assert started == hanging[:2]


def test_a_closed_cache_leaves_no_worker_behind_even_one_started_for_an_overdue_refresh() -> None:
    hung = threading.Event()
    hanging = [Target(region="eu-west-1"), Target(region="eu-west-2")]
    queued = Target(region="eu-west-3")

    def list_jobs(target: Target, previous: Listing | None) -> Listing:
        if target in hanging:
            hung.wait(timeout=30)
        return Listing((), full=previous is None)

    threads_before = threading.active_count()
    clock = FakeClock()
    cache = listing_cache(
        [*hanging, queued],
        list_jobs,
        ttl_seconds=60,
        max_concurrent_refreshes=2,
        refresh_timeout_seconds=30,
        clock=clock,
        monotonic=clock,
    )
    cache.refresh_stale(timeout=0.1)  # both workers hang; the third target waits in the queue
    cache.close()  # one stop marker per worker alive now: two
    clock.now += 31  # the first refresh to end marks both overdue: a third worker may start
    hung.set()

    wait_until(
        lambda: threading.active_count() <= threads_before,
        interval=0.01,
        message="the closed cache's workers to end",
    )


def test_a_carried_over_refresh_already_marked_overdue_is_counted_once() -> None:
    hung = threading.Event()

    def list_jobs(target: Target, previous: Listing | None) -> Listing:
        hung.wait(timeout=30)
        return Listing((), full=previous is None)

    clock = FakeClock()
    settings: dict[str, Any] = {"refresh_timeout_seconds": 30, "clock": clock, "monotonic": clock}
    old = listing_cache([EU], list_jobs, ttl_seconds=60, **settings)
    old.refresh_stale(timeout=0.1)
    clock.now += 31
    (marked_down,) = old.snapshots()  # the old cache marks it down and counts the failure

    new = listing_cache([EU], list_jobs, ttl_seconds=60, **settings)
    new.carry_over(old, [EU])  # as a reload does: the refresh in flight is adopted
    (carried,) = new.snapshots()
    hung.set()
    assert new.wait_idle(timeout=5)  # the adopted refresh ends
    (adopted,) = new.snapshots()
    old.close()

    assert marked_down.refresh_failures == 1
    assert carried.refresh_failures == 1  # not marked and counted again
    assert adopted.refresh_failures == 1  # and never lower


def test_an_answer_that_itself_outlasted_the_deadline_is_not_served() -> None:
    clock = FakeClock()
    answers = [[job("kept")], [job("late")]]

    def slow_second_listing(target: Target, previous: Listing | None) -> Listing:
        jobs = answers.pop(0)
        if previous is not None:
            clock.now += 31  # this listing alone takes longer than the 30 s deadline
        return Listing(tuple(jobs), full=previous is None)

    cache = listing_cache(
        (EU,),
        slow_second_listing,
        ttl_seconds=60,
        refresh_timeout_seconds=30,
        clock=clock,
        monotonic=clock,
    )
    refresh_behind_a_scrape(cache)
    clock.now += 61

    refresh_behind_a_scrape(cache)

    (snapshot,) = cache.snapshots()
    assert (snapshot.up, [j.name for j in snapshot.jobs], snapshot.refresh_failures) == (
        False,
        ["kept"],
        1,
    )
    assert snapshot.error == "refresh exceeded its 30s deadline"


class PublishingRefresher(ListingRefresher):
    """Publishes what the listing found, then holds the rest of the refresh until released."""

    def __init__(
        self, listing: ScriptedListing, clock: FakeClock, *, first_too: bool = False
    ) -> None:
        super().__init__(listing, clock=clock, monotonic=clock)
        self.rest = threading.Event()
        self.first_too = first_too

    def refresh(
        self,
        target: Target,
        previous: RegionSnapshot | None,
        listing: Listing | None,
        publish: Publish | None = None,
    ) -> Refreshed:
        refreshed = super().refresh(target, previous, listing)
        if publish is not None and (previous is not None or self.first_too):
            publish(refreshed.snapshot)
            self.rest.wait(timeout=10)
        return refreshed


def test_a_refresh_serves_what_it_published_before_it_ends() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("first")]
    refresher = PublishingRefresher(listing, clock)
    cache = SnapshotCache((EU,), refresher, 60, clock=clock, monotonic=clock)
    cache.refresh_stale(timeout=5)
    listing.answers[EU] = [job("first"), job("second")]
    clock.now += 61

    cache.refresh_stale(timeout=5)
    wait_until(
        lambda: len(cache.snapshots()[0].jobs) == 2, message="the published listing to be served"
    )
    in_flight = not cache.wait_idle(timeout=0)
    refresher.rest.set()

    assert in_flight  # served while the refresh still ran
    assert cache.wait_idle(timeout=5)
    assert [j.name for j in cache.snapshots()[0].jobs] == ["first", "second"]


def test_what_an_overdue_refresh_publishes_is_not_served() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("first")]
    refresher = PublishingRefresher(listing, clock)
    cache = SnapshotCache(
        (EU,), refresher, 60, refresh_timeout_seconds=30, clock=clock, monotonic=clock
    )
    cache.refresh_stale(timeout=5)
    listing.release.clear()
    listing.answers[EU] = [job("late")]
    clock.now += 61
    cache.refresh_stale(timeout=5)
    wait_until(lambda: len(listing.calls) == 2, message="the hung refresh to start")
    clock.now += 31
    assert cache.snapshots()[0].up is False  # marked down at its deadline

    listing.release.set()
    refresher.rest.set()
    assert cache.wait_idle(timeout=5)

    (snapshot,) = cache.snapshots()
    assert (snapshot.up, [j.name for j in snapshot.jobs]) == (False, ["first"])


def test_every_snapshot_is_prepared_before_it_is_served() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("first")]
    cache = make_cache(listing, clock, targets=(EU,))
    served_when_prepared: list[list[RegionSnapshot]] = []
    prepared: list[RegionSnapshot] = []

    def prepare(snapshot: RegionSnapshot) -> None:
        served_when_prepared.append(cache.snapshots())
        prepared.append(snapshot)

    cache.prepare_with(prepare)
    refresh_behind_a_scrape(cache)
    clock.now += 61
    listing.answers[EU] = [job("second")]
    refresh_behind_a_scrape(cache)

    assert [[j.name for j in s.jobs] for s in prepared] == [["first"], ["second"]]
    assert prepared[-1] is cache.snapshots()[0]
    # Each was prepared while the one before it was still the one served.
    assert served_when_prepared == [[], [prepared[0]]]


def test_a_failure_to_prepare_a_snapshot_still_serves_it(caplog: pytest.LogCaptureFixture) -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("first")]
    cache = make_cache(listing, clock, targets=(EU,))

    def prepare(_snapshot: RegionSnapshot) -> None:
        raise ValueError("a rendering fault")

    cache.prepare_with(prepare)
    refresh_behind_a_scrape(cache)

    assert [j.name for j in cache.snapshots()[0].jobs] == ["first"]
    assert "cannot prepare the lines of account=111111111111 region=eu-west-1" in caplog.text


def test_a_first_refresh_that_published_only_its_listing_is_not_ready_yet() -> None:
    listing, clock = ScriptedListing(), FakeClock()
    listing.answers[EU] = [job("first")]
    refresher = PublishingRefresher(listing, clock, first_too=True)
    cache = SnapshotCache((EU,), refresher, 60, clock=clock, monotonic=clock)

    cache.refresh_stale(timeout=0)
    wait_until(lambda: cache.snapshots() != [], message="the listing to be published")
    ready_with_the_listing = cache.is_ready()
    refresher.rest.set()
    assert cache.wait_idle(timeout=5)

    assert ready_with_the_listing is False
    assert cache.is_ready() is True
