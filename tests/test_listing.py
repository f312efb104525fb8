"""Full and incremental listings against moto's SageMaker server: requests, merging, fallbacks."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from exporter.aws import LIST_OPERATION, RequestCounter, SageMakerClients
from exporter.config import AwsSettings, JobFilters
from exporter.jobs import Target
from exporter.listing import MAX_EMPTY_PAGES, Listing, list_changes, list_full
from tests.sagemaker_server import FaultRule, SageMakerTestServer

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

REGION = "eu-west-1"
TERMINAL = ("Completed", "Failed", "Stopped")


def _client(sagemaker: SageMakerTestServer) -> SageMakerClient:
    aws = AwsSettings(endpoint_url=sagemaker.url, max_attempts=1)
    return SageMakerClients(aws, RequestCounter()).get(Target(region=REGION))


def _now() -> datetime:
    """Now in UTC, naive as moto keeps its times."""
    return datetime.now(tz=UTC).replace(tzinfo=None, microsecond=0)


def _names(listing: Listing) -> list[str]:
    return [job.name for job in listing.jobs]


class SimulatedAccount:
    """Tuning jobs in moto whose state a test moves along as SageMaker would."""

    def __init__(self, sagemaker: SageMakerTestServer, start: datetime) -> None:
        self.sagemaker = sagemaker
        self.time = start
        self.jobs: dict[str, Any] = {}  # name -> moto's job object
        self._created = 0

    def tick(self) -> None:
        self.time += timedelta(minutes=1)

    def create(self, status: str = "InProgress") -> str:
        name = f"job-{self._created:04d}"
        self._created += 1
        self.jobs[name] = self.sagemaker.add_job(
            REGION,
            name,
            status=status,
            training={"Completed": 0, "InProgress": 2},
            created=self.time - timedelta(hours=1),
            modified=self.time,
            ended=None if status == "InProgress" else self.time,
        )
        return name

    def names(self, *statuses: str) -> list[str]:
        return sorted(
            name
            for name, job in self.jobs.items()
            if job.hyper_parameter_tuning_job_status in statuses
        )

    def set_status(self, name: str, status: str) -> None:
        job = self.jobs[name]
        job.hyper_parameter_tuning_job_status = status
        job.last_modified_time = self.time
        if status in TERMINAL:
            job.hyper_parameter_tuning_end_time = self.time

    def count_progress(self, name: str) -> None:
        """A running job's counters move; its LastModifiedTime may not."""
        job = self.jobs[name]
        counters = dict(job.training_job_status_counters)
        counters["Completed"] = counters.get("Completed", 0) + 1
        job.training_job_status_counters = counters

    def delete(self, name: str) -> None:
        self.sagemaker.delete_job(REGION, name)
        del self.jobs[name]


def test_a_steady_state_refresh_lists_only_running_and_modified_jobs(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(hours=6))
    for index in range(300):
        account.tick()
        account.create("InProgress" if index % 15 == 0 else "Completed")
    client = _client(sagemaker)
    full = list_full(client, JobFilters(), now=account.time.timestamp())
    assert sagemaker.received(REGION, LIST_OPERATION) == 3
    account.tick()
    running = account.names("InProgress")
    for name in running[:3]:
        account.count_progress(name)
    account.set_status(running[3], "Completed")
    account.set_status(running[4], "Failed")
    account.create("InProgress")

    before = sagemaker.received(REGION, LIST_OPERATION)
    changed = list_changes(client, JobFilters(), now=account.time.timestamp(), previous=full)
    requests = sagemaker.received(REGION, LIST_OPERATION) - before

    assert changed.full is False
    assert requests <= math.ceil(19 / 100) + 3
    assert changed.jobs == list_full(client, JobFilters(), now=account.time.timestamp()).jobs
    assert changed.watermark == account.time.replace(tzinfo=UTC).timestamp()


def test_a_job_that_leaves_an_active_state_unseen_forces_a_full_listing(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(hours=1))
    stuck = account.create("InProgress")
    for _ in range(10):  # past the watermark's overlap
        account.tick()
    account.create("Completed")
    client = _client(sagemaker)
    full = list_full(client, JobFilters(), now=account.time.timestamp())
    # The job finishes but its LastModifiedTime stays where it was.
    account.jobs[stuck].hyper_parameter_tuning_job_status = "Completed"

    changed = list_changes(client, JobFilters(), now=account.time.timestamp(), previous=full)

    assert changed.full is True
    assert [job.status for job in changed.jobs] == ["Completed", "Completed"]


def test_a_deleting_job_that_disappears_is_dropped_without_a_full_listing(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(hours=1))
    kept = account.create("Completed")
    leaving = account.create("Completed")
    client = _client(sagemaker)
    full = list_full(client, JobFilters(), now=account.time.timestamp())
    account.tick()
    account.set_status(leaving, "Deleting")
    deleting = list_changes(client, JobFilters(), now=account.time.timestamp(), previous=full)
    account.delete(leaving)

    gone = list_changes(client, JobFilters(), now=account.time.timestamp(), previous=deleting)

    assert [(job.name, job.status) for job in deleting.jobs] == [
        (kept, "Completed"),
        (leaving, "Deleting"),
    ]
    assert (gone.full, _names(gone)) == (False, [kept])


def test_empty_pages_with_a_next_token_fall_back_to_a_full_listing(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(hours=1))
    account.create("Completed")
    client = _client(sagemaker)
    full = list_full(client, JobFilters(), now=account.time.timestamp())
    account.tick()
    account.create("InProgress")
    sagemaker.add_fault(
        FaultRule(region=REGION, kind="empty_page", body_contains="LastModifiedTimeAfter")
    )

    changed = list_changes(client, JobFilters(), now=account.time.timestamp(), previous=full)

    assert changed.full is True
    assert _names(changed) == ["job-0000", "job-0001"]
    modified_requests = [
        body for body in sagemaker.request_bodies(LIST_OPERATION) if "LastModifiedTimeAfter" in body
    ]
    assert len(modified_requests) == MAX_EMPTY_PAGES + 1


def test_the_status_filter_drops_jobs_that_move_out_of_it(sagemaker: SageMakerTestServer) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(hours=1))
    running = account.create("InProgress")
    account.create("Completed")
    filters = JobFilters(statuses=("InProgress",))
    client = _client(sagemaker)
    full = list_full(client, filters, now=account.time.timestamp())
    account.tick()
    account.set_status(running, "Completed")

    changed = list_changes(client, filters, now=account.time.timestamp(), previous=full)

    assert (_names(full), _names(changed), changed.full) == ([running], [], False)


@pytest.mark.parametrize("seed", range(6))
def test_after_random_changes_each_refresh_equals_a_fresh_full_listing(
    sagemaker: SageMakerTestServer, seed: int
) -> None:
    """Creations, transitions, counter changes and deletions, in random order and number.

    A terminal job deleted outright leaves no trace an incremental listing can see, so it
    may linger until the next full listing; everything else must match at once.
    """
    rng = random.Random(seed)
    account = SimulatedAccount(sagemaker, _now() - timedelta(hours=2))
    for _ in range(40):
        account.tick()
        account.create(rng.choice(("InProgress", *TERMINAL)))
    client = _client(sagemaker)
    listing = list_full(client, JobFilters(), now=account.time.timestamp())
    lingering: set[str] = set()

    for _ in range(8):
        account.tick()
        _apply_random_changes(account, rng, lingering)
        running = len(account.names("InProgress", "Stopping", "Deleting"))
        before = sagemaker.received(REGION, LIST_OPERATION)

        listing = list_changes(client, JobFilters(), now=account.time.timestamp(), previous=listing)

        requests = sagemaker.received(REGION, LIST_OPERATION) - before
        fresh = list_full(client, JobFilters(), now=account.time.timestamp())
        assert listing.full is False
        # One page per active status and one of modified jobs while each fits in a page.
        assert requests <= math.ceil(max(running, 1) / 100) + 3
        assert [job for job in listing.jobs if job.name not in lingering] == list(fresh.jobs)
        assert set(_names(listing)) - set(_names(fresh)) <= lingering

    resynced = list_full(client, JobFilters(), now=account.time.timestamp())
    assert not set(_names(resynced)) & lingering


def _apply_random_changes(
    account: SimulatedAccount, rng: random.Random, lingering: set[str]
) -> None:
    # A job deleted outright was terminal when the last refresh saw it.
    settled = set(account.names(*TERMINAL))
    # Jobs move on from transient states seen by the last refresh: Stopping ends Stopped,
    # Deleting ends deleted.
    for name in account.names("Stopping"):
        if rng.random() < 0.5:
            account.set_status(name, "Stopped")
    for name in account.names("Deleting"):
        if rng.random() < 0.5:
            account.delete(name)
    for _ in range(rng.randint(0, 6)):
        action = rng.choice(("create", "progress", "finish", "stop", "delete", "vanish"))
        running = account.names("InProgress")
        finished = account.names(*TERMINAL)
        if action == "create":
            account.create()
        elif action == "progress" and running:
            account.count_progress(rng.choice(running))
        elif action == "finish" and running:
            account.set_status(rng.choice(running), rng.choice(("Completed", "Failed")))
        elif action == "stop" and running:
            account.set_status(rng.choice(running), "Stopping")
        elif action == "delete" and finished:
            account.set_status(rng.choice(finished), "Deleting")
        elif action == "vanish" and settled & set(finished):
            name = rng.choice(sorted(settled & set(finished)))
            account.delete(name)
            lingering.add(name)
