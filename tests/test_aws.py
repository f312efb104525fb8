"""The listing against moto's SageMaker server over HTTP: pagination, filters, retries, counting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from exporter.aws import (
    LIST_OPERATION,
    PaginationError,
    RequestCounter,
    SageMakerClients,
)
from exporter.config import AwsSettings, CreatedAfter, ExporterConfig, JobFilters
from exporter.jobs import Target
from exporter.listing import list_full
from tests.sagemaker_server import FaultRule, SageMakerTestServer, at, epoch

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


def _client(
    sagemaker: SageMakerTestServer,
    region: str = "eu-west-1",
    counter: RequestCounter | None = None,
) -> SageMakerClient:
    aws = AwsSettings(endpoint_url=sagemaker.url, max_attempts=3)
    return SageMakerClients(aws, counter or RequestCounter()).get(Target(region=region))


def test_should_follow_next_token_over_more_than_100_jobs(sagemaker: SageMakerTestServer) -> None:
    for index in range(250):
        sagemaker.add_job("eu-west-1", f"job-{index:03d}")
    counter = RequestCounter()

    jobs = list_full(_client(sagemaker, counter=counter), JobFilters(), now=NOW).jobs

    assert [job.name for job in jobs] == [f"job-{index:03d}" for index in range(250)]
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 3
    assert counter.counts() == {("eu-west-1", LIST_OPERATION): 3}


def test_should_parse_every_field_of_a_summary(sagemaker: SageMakerTestServer) -> None:
    sagemaker.add_job(
        "eu-west-1",
        "xgb-1",
        status="InProgress",
        strategy="Hyperband",
        training={
            "Completed": 3,
            "InProgress": 2,
            "RetryableError": 1,
            "NonRetryableError": 4,
            "Stopped": 0,
        },
        objective={"Succeeded": 3, "Pending": 2, "Failed": 5},
        limits={
            "MaxNumberOfTrainingJobs": 50,
            "MaxParallelTrainingJobs": 5,
            "MaxRuntimeInSeconds": 7200,
        },
        created=at("2026-11-01T10:00:00.250"),
        modified=at("2026-11-02T11:30:00"),
    )

    (job,) = list_full(_client(sagemaker), JobFilters(), now=NOW).jobs

    assert job.name == "xgb-1"
    assert job.arn == "arn:aws:sagemaker:eu-west-1:123456789012:hyper-parameter-tuning-job/xgb-1"
    assert job.account == "123456789012"
    assert (job.status, job.strategy) == ("InProgress", "Hyperband")
    assert job.creation_time == epoch("2026-11-01T10:00:00.250")
    assert job.last_modified_time == epoch("2026-11-02T11:30:00")
    assert job.end_time is None
    assert dict(job.training_job_counts) == {
        "Completed": 3,
        "InProgress": 2,
        "RetryableError": 1,
        "NonRetryableError": 4,
        "Stopped": 0,
    }
    assert dict(job.objective_counts) == {"Succeeded": 3, "Pending": 2, "Failed": 5}
    assert (job.max_training_jobs, job.max_parallel_training_jobs, job.max_runtime_seconds) == (
        50,
        5,
        7200,
    )


def test_should_leave_absent_resource_limits_unset(sagemaker: SageMakerTestServer) -> None:
    sagemaker.add_job("eu-west-1", "sparse", limits={"MaxNumberOfTrainingJobs": 8})

    (job,) = list_full(_client(sagemaker), JobFilters(), now=NOW).jobs

    assert (job.max_training_jobs, job.max_parallel_training_jobs, job.max_runtime_seconds) == (
        8,
        None,
        None,
    )


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
    # One listing per status, each a single page.
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 2


def test_should_retry_throttled_requests_and_count_every_attempt(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_job("eu-west-1", "a")
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="throttle", times=2))
    counter = RequestCounter()

    jobs = list_full(_client(sagemaker, counter=counter), JobFilters(), now=NOW).jobs

    assert [job.name for job in jobs] == ["a"]
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 3
    assert counter.counts()[("eu-west-1", LIST_OPERATION)] == 3
    assert counter.error_counts() == {("eu-west-1", LIST_OPERATION, "throttled"): 2}


@pytest.mark.parametrize(
    ("fault", "kind", "attempts"),
    [("server_error", "server_error", 3), ("access_denied", "access_denied", 1)],
)
def test_should_count_failed_attempts_by_kind_of_error(
    sagemaker: SageMakerTestServer, fault: str, kind: str, attempts: int
) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind=fault))
    counter = RequestCounter()
    counter.declare("eu-west-1", LIST_OPERATION)

    with pytest.raises(ClientError):
        list_full(_client(sagemaker, counter=counter), JobFilters(), now=NOW)

    errors = counter.error_counts()
    assert errors[("eu-west-1", LIST_OPERATION, kind)] == attempts
    assert sum(errors.values()) == attempts
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == attempts


def test_should_count_a_read_timeout_as_timeout(sagemaker: SageMakerTestServer) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="hang", hang_seconds=1.5, times=1))
    sagemaker.add_job("eu-west-1", "a")
    counter = RequestCounter()
    client: SageMakerClient = botocore.session.Session().create_client(  # type: ignore[assignment]
        "sagemaker",
        region_name="eu-west-1",
        endpoint_url=sagemaker.url,
        config=Config(read_timeout=0.5, retries={"total_max_attempts": 2, "mode": "standard"}),
    )
    counter.attach(client)

    jobs = list_full(client, JobFilters(), now=NOW).jobs

    assert [job.name for job in jobs] == ["a"]
    assert counter.error_counts() == {("eu-west-1", LIST_OPERATION, "timeout"): 1}


def test_should_raise_access_denied_without_retrying(sagemaker: SageMakerTestServer) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="access_denied"))

    with pytest.raises(ClientError, match="AccessDenied"):
        list_full(_client(sagemaker), JobFilters(), now=NOW)

    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 1


def test_should_stop_when_a_next_token_repeats() -> None:
    clients = SageMakerClients(AwsSettings(endpoint_url="http://127.0.0.1:9"), RequestCounter())
    client = clients.get(Target(region="eu-west-1"))
    page = {"HyperParameterTuningJobSummaries": [], "NextToken": "same"}
    with Stubber(client) as stubber:
        stubber.add_response("list_hyper_parameter_tuning_jobs", page, {"MaxResults": 100})
        stubber.add_response(
            "list_hyper_parameter_tuning_jobs", page, {"MaxResults": 100, "NextToken": "same"}
        )
        with pytest.raises(PaginationError, match="same NextToken twice"):
            list_full(client, JobFilters(), now=NOW)


def test_should_list_an_assumed_roles_account(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> None:
    sagemaker.add_job("eu-west-1", "theirs", account="111111111111")
    sagemaker.add_job("eu-west-1", "ours")
    target = Target(
        region="eu-west-1",
        role_arn="arn:aws:iam::111111111111:role/sagemaker-tuning-exporter",
        external_id="tuning-exporter-test",
        account_id="111111111111",
    )
    counter = RequestCounter()
    client = SageMakerClients(make_config().aws, counter).get(target)

    jobs = list_full(client, JobFilters(), now=NOW).jobs

    assert [(job.name, job.account) for job in jobs] == [("theirs", "111111111111")]
    assert sagemaker.received("eu-west-1", "AssumeRole") == 1
    assert counter.counts()[("eu-west-1", "AssumeRole")] == 1
    (assume_role,) = sagemaker.request_bodies("AssumeRole")
    assert "ExternalId=tuning-exporter-test" in assume_role
    assert "RoleSessionName=sagemaker-tuning-exporter" in assume_role


def test_assumed_role_credentials_are_renewed_before_they_expire(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> None:
    sagemaker.add_job("eu-west-1", "theirs", account="111111111111")
    target = Target(
        region="eu-west-1",
        role_arn="arn:aws:iam::111111111111:role/sagemaker-tuning-exporter",
        account_id="111111111111",
    )
    aws = make_config().aws

    # Credentials with an hour left are reused for the next call.
    sagemaker.issue_credentials_expiring_in(3600)
    long_lived = SageMakerClients(aws, RequestCounter()).get(target)
    list_full(long_lived, JobFilters(), now=NOW)
    list_full(long_lived, JobFilters(), now=NOW)
    after_long_lived = sagemaker.received("eu-west-1", "AssumeRole")
    # Credentials with five minutes left are renewed before the next call.
    sagemaker.issue_credentials_expiring_in(300)
    short_lived = SageMakerClients(aws, RequestCounter()).get(target)
    list_full(short_lived, JobFilters(), now=NOW)
    list_full(short_lived, JobFilters(), now=NOW)

    assert after_long_lived == 1
    assert sagemaker.received("eu-west-1", "AssumeRole") == 3
    assert "ExternalId" not in sagemaker.request_bodies("AssumeRole")[0]
