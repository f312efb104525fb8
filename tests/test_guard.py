"""The refresh guard: retries, backoff, the retry budget, the deadline and pacing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import botocore.session
import pytest
from botocore.config import Config

from exporter.aws.clients import SageMakerClients
from exporter.aws.counting import RequestCounter
from exporter.aws.errors import (
    AttemptsExhaustedError,
    CredentialError,
    RefreshDeadlineError,
)
from exporter.aws.guard import Backoff, RequestPacer
from exporter.aws.operations import LIST_OPERATION
from exporter.config.settings import AwsSettings, JobFilters
from exporter.model.jobs import Target
from exporter.refresh.listing import list_full
from tests.aws_fakes import FakeTime, fake_time_guard, sagemaker_client
from tests.sagemaker_server import FaultRule, SageMakerTestServer

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


READER_ROLE = "arn:aws:iam::111111111111:role/reader"


def test_should_retry_throttled_requests_and_count_every_attempt(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_job("eu-west-1", "a")
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="throttle", times=2))
    counter = RequestCounter()
    fake = FakeTime()

    jobs = list_full(
        sagemaker_client(sagemaker, counter=counter), JobFilters(), NOW, fake_time_guard(fake)
    ).jobs

    assert [job.name for job in jobs] == ["a"]
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 3
    assert counter.counts()[("eu-west-1", LIST_OPERATION)] == 3
    assert counter.error_counts() == {("eu-west-1", LIST_OPERATION, "throttled"): 2}
    # Full jitter: each wait lies within [0, base * 2**retry].
    assert len(fake.sleeps) == 2
    assert 0 <= fake.sleeps[0] <= 0.2
    assert 0 <= fake.sleeps[1] <= 0.4


def test_backoff_doubles_up_to_its_cap_with_full_jitter() -> None:
    backoff = Backoff(base_seconds=0.5, cap_seconds=3.0)

    assert [backoff.delay(retry, lambda: 1.0) for retry in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.delay(3, lambda: 0.25) == 0.75
    assert backoff.delay(0, lambda: 0.0) == 0.0


def test_a_refresh_stops_retrying_once_its_retry_budget_is_spent(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="server_error"))
    counter = RequestCounter()

    with pytest.raises(AttemptsExhaustedError) as raised:
        list_full(
            sagemaker_client(sagemaker, counter=counter),
            JobFilters(),
            NOW,
            fake_time_guard(FakeTime(), max_attempts=10, retry_budget=2),
        )

    assert str(raised.value) == (
        "ListHyperParameterTuningJobs failed after 3 attempts, the refresh's retry budget spent "
        "(InternalFailure: We encountered an internal error.)"
    )
    # The first attempt and the two retries the budget allows, despite ten attempts per call.
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 3
    assert counter.counts()[("eu-west-1", LIST_OPERATION)] == 3


def test_the_retry_budget_is_shared_by_every_page_of_a_refresh(
    sagemaker: SageMakerTestServer,
) -> None:
    for index in range(250):
        sagemaker.add_job("eu-west-1", f"job-{index:03d}")
    client = sagemaker_client(sagemaker)
    pages_asked: list[object] = []

    def throttle_each_new_page(params: dict[str, Any], **_: object) -> None:
        # Each page's first attempt is throttled: each of the three pages needs one retry.
        if params.get("NextToken") not in pages_asked:
            pages_asked.append(params.get("NextToken"))
            sagemaker.add_fault(FaultRule(region="eu-west-1", kind="throttle", times=1))

    client.meta.events.register(
        "before-parameter-build.sagemaker.ListHyperParameterTuningJobs", throttle_each_new_page
    )
    guard = fake_time_guard(FakeTime(), retry_budget=2)

    with pytest.raises(AttemptsExhaustedError, match="ThrottlingException"):
        list_full(client, JobFilters(), NOW, guard)

    assert guard.retries_left == 0
    assert len(pages_asked) == 3
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 5


def test_a_refresh_gives_up_at_its_deadline_instead_of_backing_off_past_it(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="throttle"))
    fake = FakeTime()
    guard = fake_time_guard(
        fake,
        max_attempts=10,
        timeout_seconds=1.0,
        backoff=Backoff(base_seconds=0.4, cap_seconds=10),
        uniform=lambda: 0.999,
    )

    with pytest.raises(RefreshDeadlineError, match=r"refresh exceeded its 1s deadline"):
        list_full(sagemaker_client(sagemaker), JobFilters(), NOW, guard)

    # Waits of 0.4s then 0.8s: the second would end past the deadline, so it is not slept.
    assert fake.sleeps == [pytest.approx(0.3996)]
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 2


def test_a_pacer_spaces_requests_beyond_its_burst() -> None:
    fake = FakeTime()
    pacer = RequestPacer(2.0, fake.monotonic)

    assert [pacer.reserve() for _ in range(5)] == [0.0, 0.0, 0.5, 1.0, 1.5]
    fake.now += 10  # idle: the bucket refills to its burst, no further
    assert [pacer.reserve() for _ in range(3)] == [0.0, 0.0, 0.5]


def test_every_page_and_retry_of_a_target_is_paced(sagemaker: SageMakerTestServer) -> None:
    for index in range(250):
        sagemaker.add_job("eu-west-1", f"job-{index:03d}")
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="throttle", times=1))
    fake = FakeTime()
    guard = fake_time_guard(fake, pacer=RequestPacer(1.0, fake.monotonic), uniform=lambda: 0.0)

    jobs = list_full(sagemaker_client(sagemaker), JobFilters(), NOW, guard).jobs

    assert len(jobs) == 250
    # Four requests (three pages, one retry) at one a second: three waits of a second.
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 4
    assert fake.sleeps == [1.0, 1.0, 1.0]


def test_a_read_timeout_is_retried_by_the_refresh_guard(sagemaker: SageMakerTestServer) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="hang", hang_seconds=1.5, times=1))
    sagemaker.add_job("eu-west-1", "a")
    counter = RequestCounter()
    client: SageMakerClient = botocore.session.Session().create_client(  # type: ignore[assignment]
        "sagemaker",
        region_name="eu-west-1",
        endpoint_url=sagemaker.url,
        config=Config(read_timeout=0.5, retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    counter.attach(client)
    fake = FakeTime()

    jobs = list_full(client, JobFilters(), NOW, fake_time_guard(fake)).jobs

    assert [job.name for job in jobs] == ["a"]
    assert counter.error_counts() == {("eu-west-1", LIST_OPERATION, "timeout"): 1}
    assert counter.counts() == {("eu-west-1", LIST_OPERATION): 2}
    assert len(fake.sleeps) == 1


def test_access_denied_is_not_retried_and_names_the_missing_permission(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_fault(
        FaultRule(region="eu-west-1", kind="access_denied_action", operation=LIST_OPERATION)
    )
    target = Target(region="eu-west-1", role_arn=READER_ROLE, account_id="111111111111")
    client = SageMakerClients(AwsSettings(endpoint_url=sagemaker.url), RequestCounter()).get(target)

    with pytest.raises(CredentialError) as raised:
        list_full(client, JobFilters(), NOW, fake_time_guard(FakeTime(), target))

    assert str(raised.value).startswith(
        "access denied: missing permission sagemaker:ListHyperParameterTuningJobs for role "
        f"{READER_ROLE} "
        "(AccessDeniedException: User: arn:aws:sts::111111111111:assumed-role/reader/"
    )
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 1


def test_calls_on_several_threads_share_the_retry_budget_and_never_overspend_it(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="throttle"))
    client = sagemaker_client(sagemaker)
    guard = fake_time_guard(FakeTime(), max_attempts=10, retry_budget=3)
    start = threading.Barrier(6, timeout=10)
    failures: list[Exception] = []

    def call() -> None:
        start.wait()
        try:
            guard.call(client.list_hyper_parameter_tuning_jobs)
        except AttemptsExhaustedError as error:
            failures.append(error)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(failures) == 6
    # One attempt per call, and the three retries of the refresh between them.
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 6 + 3
    assert guard.retries_left == 0
