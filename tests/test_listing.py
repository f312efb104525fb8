"""Listings against the test server under both readings of the API (moto's filter-then-page, and
AWS's page-then-filter): what each walk costs, what it finds, and where it stops."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from botocore.stub import Stubber

from exporter.aws.clients import SageMakerClients
from exporter.aws.counting import RequestCounter
from exporter.aws.errors import (
    PaginationError,
)
from exporter.aws.operations import LIST_OPERATION
from exporter.config.settings import AwsSettings, CreatedAfter, JobFilters
from exporter.model.jobs import Target
from exporter.refresh.listing import list_full
from tests.sagemaker_server import FaultRule, SageMakerTestServer, at

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

import math
import random
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from exporter.aws.operations import DESCRIBE_OPERATION
from exporter.model.jobs import TuningJob
from exporter.model.listing import Listing
from exporter.model.summaries import parse_job_summary
from exporter.refresh.describe import DescribeJob
from exporter.refresh.listing import (
    MAX_PAGES_WITHOUT_NEW_JOBS,
    RUNAWAY_SLACK_PAGES,
    list_changes,
)

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

REGION = "eu-west-1"
TERMINAL = ("Completed", "Failed", "Stopped")
ACTIVE = ("InProgress", "Stopping", "Deleting")


def _client(sagemaker: SageMakerTestServer) -> SageMakerClient:
    aws = AwsSettings(endpoint_url=sagemaker.url, max_attempts=1)
    return SageMakerClients(aws, RequestCounter()).get(Target(region=REGION))


def _describer(client: SageMakerClient) -> DescribeJob:
    def describe(name: str) -> Mapping[str, Any]:
        return client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)

    return describe


def _now() -> datetime:
    """Now in UTC, naive as moto keeps its times."""
    return datetime.now(tz=UTC).replace(tzinfo=None, microsecond=0)


def _names(listing: Listing) -> list[str]:
    return [job.name for job in listing.jobs]


class SimulatedAccount:
    """Tuning jobs in moto, one created a minute, whose state a test moves along as SageMaker would."""

    def __init__(self, sagemaker: SageMakerTestServer, start: datetime) -> None:
        self.sagemaker = sagemaker
        self.time = start
        self.jobs: dict[str, Any] = {}  # name -> moto's job object
        self._created = 0

    def tick(self, minutes: int = 1) -> None:
        self.time += timedelta(minutes=minutes)

    @property
    def now(self) -> float:
        return self.time.replace(tzinfo=UTC).timestamp()

    def create(self, status: str = "InProgress") -> str:
        name = f"job-{self._created:05d}"
        self._created += 1
        self.jobs[name] = self.sagemaker.add_job(
            REGION,
            name,
            status=status,
            training={"Completed": 0, "InProgress": 2},
            created=self.time,
            modified=self.time,
            ended=None if status in ACTIVE else self.time,
        )
        return name

    def populate(self, count: int, running_newest: int = 0) -> None:
        """``count`` jobs a minute apart, the newest ``running_newest`` of them InProgress."""
        for index in range(count):
            self.tick()
            self.create("InProgress" if index >= count - running_newest else "Completed")

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
        elif status != "Deleting":
            job.hyper_parameter_tuning_end_time = None

    def count_progress(self, name: str) -> None:
        """A running job's counters move; its LastModifiedTime does not."""
        job = self.jobs[name]
        counters = dict(job.training_job_status_counters)
        counters["Completed"] = counters.get("Completed", 0) + 1
        job.training_job_status_counters = counters

    def touch(self, name: str) -> None:
        """Something moves a job's LastModifiedTime and nothing else."""
        self.jobs[name].last_modified_time = self.time

    def delete(self, name: str) -> None:
        self.sagemaker.delete_job(REGION, name)
        del self.jobs[name]

    def truth(self, filters: JobFilters | None = None) -> list[TuningJob]:
        """Every job as the API describes it now, matching ``filters``, sorted by name.

        Read from moto's own job objects, not through any listing, so it is ground truth
        under either reading of the API.
        """
        filters = filters or JobFilters()
        jobs = []
        for name in sorted(self.jobs):
            summary = {
                key: value.replace(tzinfo=UTC) if isinstance(value, datetime) else value
                for key, value in self.jobs[name].summary().items()
            }
            job = parse_job_summary(summary).job
            assert job is not None
            if filters.name_contains and filters.name_contains not in name:
                continue
            if filters.statuses and job.status not in filters.statuses:
                continue
            jobs.append(job)
        return jobs


def _requests(sagemaker: SageMakerTestServer, operation: str = LIST_OPERATION) -> int:
    return sagemaker.received(REGION, operation)


@pytest.mark.parametrize(
    "filters",
    [
        JobFilters(),
        JobFilters(statuses=("InProgress", "Completed", "Failed")),
        JobFilters(name_contains="job-09", statuses=("InProgress",)),
    ],
    ids=["no filters", "three statuses", "name and status"],
)
def test_a_first_listing_walks_the_population_once_with_filters_and_without(
    sagemaker: SageMakerTestServer, filters: JobFilters
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(days=8))
    account.populate(10_000, running_newest=20)
    for name in account.names("Completed")[::7]:
        account.set_status(name, "Failed")

    listing = list_full(_client(sagemaker), filters, now=account.now)

    assert _requests(sagemaker) <= math.ceil(10_000 / 100) + 1
    assert list(listing.jobs) == account.truth(filters)
    assert listing.full is True


def test_created_after_ends_a_full_walk_at_the_cut_off(sagemaker: SageMakerTestServer) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(days=8))
    account.populate(1_000)
    filters = JobFilters(created_after=CreatedAfter(relative_seconds=250 * 60))

    listing = list_full(_client(sagemaker), filters, now=account.now)

    # 250 jobs are younger than 250 minutes: the third page reaches one that is not.
    assert _requests(sagemaker) == 3
    assert _names(listing) == [job.name for job in account.truth()][-250:]


def test_a_steady_state_refresh_costs_one_page_after_the_usual_changes(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(days=8))
    account.populate(10_000, running_newest=20)
    client = _client(sagemaker)
    full = list_full(client, JobFilters(), now=account.now)
    account.tick()
    running = account.names("InProgress")
    for name in running[:5]:
        account.count_progress(name)
    account.set_status(running[5], "Completed")
    account.create("InProgress")
    old = account.names("Completed")[0]
    account.touch(old)

    before = _requests(sagemaker)
    changed = list_changes(client, JobFilters(), account.now, full, describe=_describer(client))

    assert _requests(sagemaker) - before == 1
    assert _requests(sagemaker, DESCRIBE_OPERATION) == 0
    truth = account.truth()
    # An old finished job whose LastModifiedTime moved keeps its last listed state until
    # the next full listing, which is the only walk that reaches it.
    assert [job for job in changed.jobs if job.name != old] == [
        job for job in truth if job.name != old
    ]
    (stale,) = [job for job in changed.jobs if job.name == old]
    assert stale == next(job for job in full.jobs if job.name == old)
    assert list(list_full(client, JobFilters(), account.now).jobs) == truth


def test_old_running_jobs_are_described_rather_than_walked_to(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(days=8))
    account.populate(10_000, running_newest=18)
    old_running = [f"job-{index:05d}" for index in (1_000, 1_500)]  # 8,500 jobs are newer
    for name in old_running:
        account.set_status(name, "InProgress")
    client = _client(sagemaker)
    listing = list_full(client, JobFilters(), now=account.now)

    for _ in range(3):
        account.tick()
        for name in account.names("InProgress"):
            account.count_progress(name)
        before = _requests(sagemaker), _requests(sagemaker, DESCRIBE_OPERATION)
        listing = list_changes(
            client, JobFilters(), account.now, listing, describe=_describer(client)
        )
        after = _requests(sagemaker), _requests(sagemaker, DESCRIBE_OPERATION)

        assert (after[0] - before[0], after[1] - before[1]) == (1, 2)
        assert list(listing.jobs) == account.truth()
        assert sorted(listing.descriptions) == old_running
    account.tick()
    account.set_status(old_running[0], "Completed")

    finished = list_changes(client, JobFilters(), account.now, listing, describe=_describer(client))

    assert list(finished.jobs) == account.truth()


def test_without_describing_a_refresh_walks_down_to_the_oldest_running_job(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(days=8))
    account.populate(10_000, running_newest=18)
    account.set_status("job-01500", "InProgress")  # 8,499 jobs are newer
    client = _client(sagemaker)
    listing = list_full(client, JobFilters(), now=account.now)
    account.tick()
    account.count_progress("job-01500")

    before = _requests(sagemaker)
    changed = list_changes(client, JobFilters(), account.now, listing)

    assert _requests(sagemaker) - before == math.ceil(8_500 / 100)
    assert _requests(sagemaker, DESCRIBE_OPERATION) == 0
    assert list(changed.jobs) == account.truth()


def test_a_refused_describe_walks_to_the_job_instead_and_stops_describing(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(days=2))
    account.populate(1_000, running_newest=5)
    account.set_status("job-00100", "InProgress")
    aws = AwsSettings(endpoint_url=sagemaker.url, max_attempts=1)
    clients = SageMakerClients(aws, RequestCounter())
    target = Target(region=REGION)
    client = clients.get(target)
    listing = list_full(client, JobFilters(), now=account.now)
    sagemaker.add_fault(
        FaultRule(region=REGION, kind="access_denied", operation=DESCRIBE_OPERATION)
    )

    def describe(name: str) -> Mapping[str, Any]:
        return clients.guard(target, 30).call(
            client.describe_hyper_parameter_tuning_job, HyperParameterTuningJobName=name
        )

    for _ in range(2):  # the first refresh is refused once; the next does not ask again
        account.tick()
        account.count_progress("job-00100")
        listing = list_changes(client, JobFilters(), account.now, listing, describe=describe)
        assert list(listing.jobs) == account.truth()
        assert _requests(sagemaker, DESCRIBE_OPERATION) == 1
        assert listing.describe_denied is True

    assert list_full(client, JobFilters(), account.now).describe_denied is False


def test_deleted_jobs_disappear_where_the_walk_reaches_them(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(days=2))
    account.populate(1_000, running_newest=3)
    account.set_status("job-00010", "Deleting")
    client = _client(sagemaker)
    listing = list_full(client, JobFilters(), now=account.now)
    account.tick()
    account.delete("job-00999")  # among the newest: the walk covers it
    account.delete("job-00010")  # a deep job being deleted: described, and gone
    account.delete("job-00500")  # a deep finished job: only a full listing shows it gone

    changed = list_changes(client, JobFilters(), account.now, listing, describe=_describer(client))

    assert _requests(sagemaker, DESCRIBE_OPERATION) == 1
    assert set(_names(changed)) == {job.name for job in account.truth()} | {"job-00500"}
    resynced = list_full(client, JobFilters(), account.now)
    assert _names(resynced) == [job.name for job in account.truth()]


def test_a_running_job_outside_the_status_filter_enters_it_when_it_ends(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(days=2))
    account.populate(1_000, running_newest=2)
    account.set_status("job-00020", "InProgress")
    filters = JobFilters(statuses=("Completed",))
    client = _client(sagemaker)
    listing = list_full(client, filters, now=account.now)
    assert "job-00020" not in _names(listing)
    account.tick()
    account.set_status("job-00020", "Completed")
    account.set_status(account.names("InProgress")[-1], "Completed")

    changed = list_changes(client, filters, account.now, listing, describe=_describer(client))

    assert list(changed.jobs) == account.truth(filters)
    assert {"job-00020", "job-00999"} <= set(_names(changed))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("describing", [True, False], ids=["describe", "no describe"])
def test_after_random_changes_each_refresh_equals_a_fresh_full_listing(
    sagemaker: SageMakerTestServer, seed: int, describing: bool
) -> None:
    """Creations, transitions, counter changes, touches and deletions, in random order and number.

    A terminal job deleted outright, or touched, leaves no trace a walk above it can see, so
    it may linger as it was until the next full listing; everything else must match at once.
    """
    rng = random.Random(seed)
    account = SimulatedAccount(sagemaker, _now() - timedelta(days=1))
    for _ in range(300):
        account.tick(rng.randint(1, 3))
        account.create(rng.choice(("InProgress", *TERMINAL, *TERMINAL, *TERMINAL)))
    client = _client(sagemaker)
    describe = _describer(client) if describing else None
    listing = list_full(client, JobFilters(), now=account.now)
    lingering: set[str] = set()

    for _ in range(8):
        account.tick()
        _apply_random_changes(account, rng, lingering)
        before = _requests(sagemaker)

        listing = list_changes(client, JobFilters(), account.now, listing, describe=describe)

        requests = _requests(sagemaker) - before
        truth = account.truth()
        assert listing.full is False
        # At most every page of the (at most 400) jobs; the 10,000-job tests bound the cost.
        assert requests <= 4
        assert [job for job in listing.jobs if job.name not in lingering] == [
            job for job in truth if job.name not in lingering
        ]
        assert set(_names(listing)) - {job.name for job in truth} <= lingering

    resynced = list_full(client, JobFilters(), account.now)
    assert list(resynced.jobs) == account.truth()


def _apply_random_changes(
    account: SimulatedAccount, rng: random.Random, lingering: set[str]
) -> None:
    # Jobs move on from transient states seen by the last refresh: Stopping ends Stopped,
    # Deleting ends deleted.
    for name in account.names("Stopping"):
        if rng.random() < 0.5:
            account.set_status(name, "Stopped")
    for name in account.names("Deleting"):
        if rng.random() < 0.5:
            account.delete(name)
    for _ in range(rng.randint(0, 6)):
        action = rng.choice(("create", "progress", "finish", "stop", "delete", "vanish", "touch"))
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
            # A finished job's deletion starts where a walk above it cannot see.
            name = rng.choice(finished)
            account.set_status(name, "Deleting")
            lingering.add(name)
        elif action == "vanish" and finished:
            name = rng.choice(finished)
            account.delete(name)
            lingering.add(name)
        elif action == "touch" and finished:
            name = rng.choice(finished)
            account.touch(name)
            lingering.add(name)


def test_empty_pages_with_fresh_tokens_end_the_walk_after_a_few(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(hours=1))
    account.create("Completed")
    sagemaker.add_fault(FaultRule(region=REGION, kind="empty_page", operation=LIST_OPERATION))

    with pytest.raises(PaginationError, match="pages in a row with a NextToken and no job"):
        list_full(_client(sagemaker), JobFilters(), now=account.now)

    assert _requests(sagemaker) == MAX_PAGES_WITHOUT_NEW_JOBS + 1


def test_an_incremental_walk_meeting_empty_pages_fails_rather_than_walking_in_full(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(hours=1))
    account.create("Completed")
    client = _client(sagemaker)
    full = list_full(client, JobFilters(), now=account.now)
    sagemaker.add_fault(FaultRule(region=REGION, kind="empty_page", operation=LIST_OPERATION))
    before = _requests(sagemaker)

    with pytest.raises(PaginationError):
        list_changes(client, JobFilters(), account.now, full)

    assert _requests(sagemaker) - before == MAX_PAGES_WITHOUT_NEW_JOBS + 1


def _summary(name: str, created: datetime) -> dict[str, Any]:
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:"
        f"hyper-parameter-tuning-job/{name}",
        "HyperParameterTuningJobStatus": "Completed",
        "Strategy": "Random",
        "CreationTime": created,
        "TrainingJobStatusCounters": {},
        "ObjectiveStatusCounters": {},
    }


def _stubbed_pages(
    stubber: Stubber, pages: Iterable[list[dict[str, Any]]], first_token: int = 0
) -> None:
    """Queue pages that each carry a NextToken never seen before."""
    for index, summaries in enumerate(pages, start=first_token):
        expected: dict[str, Any] = {
            "MaxResults": 100,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
        }
        if index:
            expected["NextToken"] = f"token-{index}"
        stubber.add_response(
            "list_hyper_parameter_tuning_jobs",
            {"HyperParameterTuningJobSummaries": summaries, "NextToken": f"token-{index + 1}"},
            expected,
        )


def test_pages_that_repeat_earlier_jobs_under_fresh_tokens_end_the_walk() -> None:
    clients = SageMakerClients(AwsSettings(endpoint_url="http://127.0.0.1:9"), RequestCounter())
    client = clients.get(Target(region=REGION))
    page = [_summary(f"job-{index}", datetime(2026, 11, 1, tzinfo=UTC)) for index in range(100)]
    with Stubber(client) as stubber:
        _stubbed_pages(stubber, [page] * (MAX_PAGES_WITHOUT_NEW_JOBS + 2))
        with pytest.raises(PaginationError, match="no job not listed before"):
            list_full(client, JobFilters(), now=datetime(2026, 11, 2, tzinfo=UTC).timestamp())
        stubber.assert_no_pending_responses()


def test_a_walk_past_twice_the_pages_its_population_needed_is_a_runaway() -> None:
    clients = SageMakerClients(AwsSettings(endpoint_url="http://127.0.0.1:9"), RequestCounter())
    client = clients.get(Target(region=REGION))
    start = datetime(2026, 11, 1, tzinfo=UTC)
    known = [_summary("job-a", start), _summary("job-b", start - timedelta(minutes=1))]
    with Stubber(client) as stubber:
        stubber.add_response(
            "list_hyper_parameter_tuning_jobs",
            {"HyperParameterTuningJobSummaries": known},
            {"MaxResults": 100, "SortBy": "CreationTime", "SortOrder": "Descending"},
        )
        previous = list_full(client, JobFilters(), now=start.timestamp())
        # An endpoint that makes up new jobs forever, all newer than any it listed before.
        bound = 2 * 1 + RUNAWAY_SLACK_PAGES
        made_up = start + timedelta(days=1)
        pages = [
            [_summary(f"made-up-{page}-{index}", made_up) for index in range(100)]
            for page in range(bound)
        ]
        _stubbed_pages(stubber, pages)
        with pytest.raises(PaginationError, match=f"did not finish within {bound} pages"):
            list_changes(client, JobFilters(), start.timestamp(), previous)
        stubber.assert_no_pending_responses()


def test_an_endpoint_that_ignores_the_sort_order_is_walked_to_the_end(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(days=2))
    account.populate(500, running_newest=2)
    client = _client(sagemaker)
    # The first page's last job claims to be the newest of all: the order is not kept.
    newest = account.time + timedelta(hours=1)
    sagemaker.add_fault(
        FaultRule(
            region=REGION,
            kind="rewrite",
            times=1,
            rewrite_summary=lambda summary: (
                {**summary, "CreationTime": newest.replace(tzinfo=UTC).timestamp()}
                if summary["HyperParameterTuningJobName"] == "job-00400"
                else summary
            ),
        )
    )
    listing = list_full(client, JobFilters(), now=account.now)
    assert listing.population.sorted is False
    account.tick()
    account.count_progress(account.names("InProgress")[0])
    before = _requests(sagemaker)

    changed = list_changes(client, JobFilters(), account.now, listing, describe=_describer(client))

    assert _requests(sagemaker) - before == 5
    assert list(changed.jobs) == account.truth()
    assert changed.population.sorted is True  # a walk judges the order again


def test_a_listing_that_carries_nothing_new_keeps_its_jobs_and_costs_one_page(
    sagemaker: SageMakerTestServer,
) -> None:
    account = SimulatedAccount(sagemaker, _now() - timedelta(days=2))
    account.populate(2_000)
    client = _client(sagemaker)
    listing = list_full(client, JobFilters(), now=account.now)
    before = _requests(sagemaker)

    again = list_changes(client, JobFilters(), account.now + 60, listing)

    assert _requests(sagemaker) - before == 1
    assert again.jobs == listing.jobs
    assert again.population.pages == 20


NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


def test_should_filter_by_name_status_and_creation_time(sagemaker: SageMakerTestServer) -> None:
    sagemaker.add_job(
        "eu-west-1", "xgb-new-done", status="Completed", created=at("2026-11-26T00:00:00")
    )
    sagemaker.add_job(
        "eu-west-1", "xgb-new-failed", status="Failed", created=at("2026-11-26T00:00:00")
    )
    sagemaker.add_job(
        "eu-west-1", "xgb-new-running", status="InProgress", created=at("2026-11-26T00:00:00")
    )
    sagemaker.add_job(
        "eu-west-1", "xgb-old-done", status="Completed", created=at("2026-10-01T00:00:00")
    )
    sagemaker.add_job(
        "eu-west-1", "bert-new-done", status="Completed", created=at("2026-11-26T00:00:00")
    )
    filters = JobFilters(
        name_contains="xgb",
        statuses=("Completed", "InProgress"),
        created_after=CreatedAfter(relative_seconds=7 * 86400),
    )

    jobs = list_full(_client(sagemaker), filters, now=NOW).jobs

    assert [job.name for job in jobs] == ["xgb-new-done", "xgb-new-running"]
    # One unfiltered page, whatever the filters: they are applied locally.
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 1
    (body,) = sagemaker.request_bodies(LIST_OPERATION)
    assert not {"StatusEquals", "NameContains", "CreationTimeAfter"} & set(json.loads(body))
