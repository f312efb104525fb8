"""AWS access against moto's SageMaker server over HTTP: paging, filters, retries, pacing,
deadlines, credential errors and request counting."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from exporter.aws import (
    LIST_OPERATION,
    AttemptsExhaustedError,
    Backoff,
    CredentialError,
    PaginationError,
    RefreshDeadlineError,
    RefreshGuard,
    RequestCounter,
    RequestPacer,
    SageMakerClients,
    safe_aws_message,
)
from exporter.config import AwsSettings, CreatedAfter, ExporterConfig, JobFilters
from exporter.jobs import Target
from exporter.listing import list_full
from tests.sagemaker_server import FaultRule, SageMakerTestServer, at, epoch

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()
EU = Target(region="eu-west-1")
READER_ROLE = "arn:aws:iam::111111111111:role/reader"


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
    # One unfiltered page, whatever the filters: they are applied locally.
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 1
    (body,) = sagemaker.request_bodies(LIST_OPERATION)
    assert not {"StatusEquals", "NameContains", "CreationTimeAfter"} & set(json.loads(body))


class FakeTime:
    """A monotonic clock whose sleeps advance it and are recorded, so backoff takes no time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _guard(
    fake: FakeTime,
    target: Target = EU,
    *,
    max_attempts: int = 3,
    retry_budget: int = 10,
    timeout_seconds: float = 30.0,
    **settings: Any,
) -> RefreshGuard:
    return RefreshGuard(
        target,
        max_attempts=max_attempts,
        retry_budget=retry_budget,
        timeout_seconds=timeout_seconds,
        monotonic=fake.monotonic,
        sleep=fake.sleep,
        **settings,
    )


def test_should_retry_throttled_requests_and_count_every_attempt(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_job("eu-west-1", "a")
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="throttle", times=2))
    counter = RequestCounter()
    fake = FakeTime()

    jobs = list_full(_client(sagemaker, counter=counter), JobFilters(), NOW, _guard(fake)).jobs

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


@pytest.mark.parametrize(
    ("fault", "kind", "attempts", "raised"),
    [
        ("server_error", "server_error", 3, AttemptsExhaustedError),
        ("throttle", "throttled", 3, AttemptsExhaustedError),
        ("access_denied", "access_denied", 1, CredentialError),
        ("expired_token", "expired_credentials", 1, CredentialError),
        ("invalid_token", "expired_credentials", 1, CredentialError),
    ],
)
def test_should_count_failed_attempts_by_kind_of_error(
    sagemaker: SageMakerTestServer, fault: str, kind: str, attempts: int, raised: type[Exception]
) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind=fault))
    counter = RequestCounter()
    counter.declare("eu-west-1", LIST_OPERATION)

    with pytest.raises(raised):
        list_full(_client(sagemaker, counter=counter), JobFilters(), NOW, _guard(FakeTime()))

    errors = counter.error_counts()
    assert errors[("eu-west-1", LIST_OPERATION, kind)] == attempts
    assert sum(errors.values()) == attempts
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == attempts


def test_a_refresh_stops_retrying_once_its_retry_budget_is_spent(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="server_error"))
    counter = RequestCounter()

    with pytest.raises(AttemptsExhaustedError) as raised:
        list_full(
            _client(sagemaker, counter=counter),
            JobFilters(),
            NOW,
            _guard(FakeTime(), max_attempts=10, retry_budget=2),
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
    client = _client(sagemaker)
    pages_asked: list[object] = []

    def throttle_each_new_page(params: dict[str, Any], **_: object) -> None:
        # Each page's first attempt is throttled: each of the three pages needs one retry.
        if params.get("NextToken") not in pages_asked:
            pages_asked.append(params.get("NextToken"))
            sagemaker.add_fault(FaultRule(region="eu-west-1", kind="throttle", times=1))

    client.meta.events.register(
        "before-parameter-build.sagemaker.ListHyperParameterTuningJobs", throttle_each_new_page
    )
    guard = _guard(FakeTime(), retry_budget=2)

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
    guard = _guard(
        fake,
        max_attempts=10,
        timeout_seconds=1.0,
        backoff=Backoff(base_seconds=0.4, cap_seconds=10),
        uniform=lambda: 0.999,
    )

    with pytest.raises(RefreshDeadlineError, match=r"refresh exceeded its 1s deadline"):
        list_full(_client(sagemaker), JobFilters(), NOW, guard)

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
    guard = _guard(fake, pacer=RequestPacer(1.0, fake.monotonic), uniform=lambda: 0.0)

    jobs = list_full(_client(sagemaker), JobFilters(), NOW, guard).jobs

    assert len(jobs) == 250
    # Four requests (three pages, one retry) at one a second: three waits of a second.
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 4
    assert fake.sleeps == [1.0, 1.0, 1.0]


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

    jobs = list_full(client, JobFilters(), NOW, _guard(fake)).jobs

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
        list_full(client, JobFilters(), NOW, _guard(FakeTime(), target))

    assert str(raised.value).startswith(
        "access denied: missing permission sagemaker:ListHyperParameterTuningJobs for role "
        f"{READER_ROLE} "
        "(AccessDeniedException: User: arn:aws:sts::111111111111:assumed-role/reader/"
    )
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 1


def test_a_refused_assume_role_names_the_role_its_trust_policy_and_external_id(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="assume_role_denied"))
    target = Target(
        region="eu-west-1", role_arn=READER_ROLE, external_id="xid-1", account_id="111111111111"
    )
    client = SageMakerClients(AwsSettings(endpoint_url=sagemaker.url), RequestCounter()).get(target)

    with pytest.raises(CredentialError) as raised:
        list_full(client, JobFilters(), NOW, _guard(FakeTime(), target))

    assert str(raised.value) == (
        f"cannot assume role {READER_ROLE} (AccessDenied: User: "
        "arn:aws:iam::123456789012:user/exporter is not authorized to perform: sts:AssumeRole "
        f"on resource: {READER_ROLE}): the exporter's own identity needs sts:AssumeRole on "
        f"{READER_ROLE}, and the role's trust policy must trust that identity with the "
        "configured ExternalId (check its ExternalId condition)"
    )
    assert sagemaker.received("eu-west-1", "AssumeRole") == 1
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 0


def test_an_assume_role_refused_for_expired_source_credentials_says_so(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_fault(
        FaultRule(region="eu-west-1", kind="assume_role_expired", operation="AssumeRole")
    )
    target = Target(region="eu-west-1", role_arn=READER_ROLE, account_id="111111111111")
    client = SageMakerClients(AwsSettings(endpoint_url=sagemaker.url), RequestCounter()).get(target)

    with pytest.raises(CredentialError) as raised:
        list_full(client, JobFilters(), NOW, _guard(FakeTime(), target))

    assert str(raised.value) == (
        f"cannot assume role {READER_ROLE}: STS rejected the exporter's own credentials "
        "(ExpiredToken: The security token included in the request is expired); they will be "
        "obtained afresh on the next refresh"
    )


def test_a_credential_error_makes_the_next_refresh_assume_the_role_again(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_job("eu-west-1", "theirs", account="111111111111")
    target = Target(region="eu-west-1", role_arn=READER_ROLE, account_id="111111111111")
    clients = SageMakerClients(AwsSettings(endpoint_url=sagemaker.url), RequestCounter())
    sagemaker.issue_credentials_expiring_in(3600)  # botocore would keep these for an hour
    list_full(clients.get(target), JobFilters(), NOW, clients.guard(target, 30))
    sagemaker.add_fault(
        FaultRule(region="eu-west-1", kind="expired_token", times=1, operation=LIST_OPERATION)
    )

    with pytest.raises(CredentialError, match="ExpiredTokenException"):
        list_full(clients.get(target), JobFilters(), NOW, clients.guard(target, 30))
    jobs = list_full(clients.get(target), JobFilters(), NOW, clients.guard(target, 30)).jobs

    assert [job.name for job in jobs] == ["theirs"]
    assert sagemaker.received("eu-west-1", "AssumeRole") == 2


def test_aws_messages_quoted_in_logs_carry_no_keys_or_canonical_requests() -> None:
    message = (
        "The request signature we calculated does not match the signature you provided. "
        "The Canonical String for this request should have been 'POST / x-amz-security-token:"
        "SECRET-TOKEN' The String-to-Sign should have been 'AWS4-HMAC-SHA256'"
    )

    assert safe_aws_message(message) == (
        "The request signature we calculated does not match the signature you provided."
    )
    assert safe_aws_message("key ASIAIOSFODNN7EXAMPLE is not valid") == (
        "key (access key id) is not valid"
    )
    assert len(safe_aws_message("x" * 1000)) == 300


def test_should_stop_when_a_next_token_repeats() -> None:
    clients = SageMakerClients(AwsSettings(endpoint_url="http://127.0.0.1:9"), RequestCounter())
    client = clients.get(Target(region="eu-west-1"))
    page = {"HyperParameterTuningJobSummaries": [], "NextToken": "same"}
    with Stubber(client) as stubber:
        newest_first = {"MaxResults": 100, "SortBy": "CreationTime", "SortOrder": "Descending"}
        stubber.add_response("list_hyper_parameter_tuning_jobs", page, newest_first)
        stubber.add_response(
            "list_hyper_parameter_tuning_jobs", page, {**newest_first, "NextToken": "same"}
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
