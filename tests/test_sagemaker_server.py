"""The test server itself, over real HTTP: ListHyperParameterTuningJobs and
ListTrainingJobsForHyperParameterTuningJob under both listing semantics, moto's (filter, then
page) and AWS's documented one (page, then filter)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters

from exporter.demo_training_jobs import InstanceChoice
from tests.sagemaker_server import (
    LISTING_OPERATION,
    LISTING_SEMANTICS,
    TRAINING_JOBS_OPERATION,
    FaultRule,
    SageMakerTestServer,
    at,
    epoch,
    for_job,
    for_training_job,
)

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

REGION = "eu-west-1"
START = at("2025-03-01T08:00:00")
TUNING_JOB = "tuning"


@contextmanager
def _server_in(server: SageMakerTestServer, mode: str) -> Iterator[SageMakerTestServer]:
    """``server`` emptied and answering under ``mode``; emptied and its mode restored after."""
    previous = server.listing_semantics
    server.reset()
    server.use_listing_semantics(mode)
    try:
        yield server
    finally:
        server.reset()
        server.use_listing_semantics(previous)


@pytest.fixture
def aws_semantics(sagemaker_server: SageMakerTestServer) -> Iterator[SageMakerTestServer]:
    """The test server answering as AWS documents: page, then filter."""
    with _server_in(sagemaker_server, "aws") as server:
        yield server


@pytest.fixture
def moto_semantics(sagemaker_server: SageMakerTestServer) -> Iterator[SageMakerTestServer]:
    """The test server answering as moto does: filter, then page."""
    with _server_in(sagemaker_server, "moto") as server:
        yield server


def _client(server: SageMakerTestServer, *, validate: bool = True) -> SageMakerClient:
    """A client of the test server that does not retry; ``validate=False`` lets it send what
    botocore would refuse to, as another SDK might."""
    return boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name=REGION,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"}, parameter_validation=validate
        ),
    )


def _walk(client: SageMakerClient, **request: Any) -> list[list[str]]:
    """The job names of every page of a listing, page by page, following its NextTokens."""
    pages = []
    while True:
        page = client.list_hyper_parameter_tuning_jobs(**request)
        pages.append(
            [job["HyperParameterTuningJobName"] for job in page["HyperParameterTuningJobSummaries"]]
        )
        if not page.get("NextToken"):
            return pages
        request["NextToken"] = page["NextToken"]


def _add_jobs(server: SageMakerTestServer, count: int, in_progress: tuple[int, ...] = ()) -> None:
    """``count`` jobs ``job-00000``..., created a minute apart in that order; those whose index
    is in ``in_progress`` InProgress, the rest Completed."""
    for index in range(count):
        server.add_job(
            REGION,
            f"job-{index:05d}",
            status="InProgress" if index in in_progress else "Completed",
            created=START + timedelta(minutes=index),
        )


def _raw_summaries(client: SageMakerClient, **request: Any) -> list[dict[str, Any]]:
    """The job summaries of one listing page as they crossed the wire, before botocore parsing."""
    bodies: list[bytes] = []

    def keep(http_response: Any, **_: Any) -> None:
        bodies.append(http_response.content)

    client.meta.events.register(f"after-call.sagemaker.{LISTING_OPERATION}", keep)
    client.list_hyper_parameter_tuning_jobs(**request)
    summaries: list[dict[str, Any]] = json.loads(bodies[0])["HyperParameterTuningJobSummaries"]
    return summaries


def test_a_status_listing_of_250_jobs_costs_3_pages_and_returns_its_3_matches_under_aws_semantics(
    aws_semantics: SageMakerTestServer,
) -> None:
    _add_jobs(aws_semantics, 250, in_progress=(7, 130, 249))

    pages = _walk(_client(aws_semantics), StatusEquals="InProgress", MaxResults=100)

    assert pages == [["job-00007"], ["job-00130"], ["job-00249"]]
    assert aws_semantics.received(REGION, LISTING_OPERATION) == 3


def test_the_same_status_listing_costs_1_page_under_moto_semantics(
    moto_semantics: SageMakerTestServer,
) -> None:
    _add_jobs(moto_semantics, 250, in_progress=(7, 130, 249))

    pages = _walk(_client(moto_semantics), StatusEquals="InProgress", MaxResults=100)

    assert pages == [["job-00007", "job-00130", "job-00249"]]
    assert moto_semantics.received(REGION, LISTING_OPERATION) == 1


def test_a_filtered_page_can_be_empty_yet_carry_a_next_token_under_aws_semantics(
    aws_semantics: SageMakerTestServer,
) -> None:
    _add_jobs(aws_semantics, 25, in_progress=(24,))
    client = _client(aws_semantics)

    first = client.list_hyper_parameter_tuning_jobs(StatusEquals="InProgress", MaxResults=10)

    assert first["HyperParameterTuningJobSummaries"] == []
    assert first["NextToken"]
    assert _walk(client, StatusEquals="InProgress", MaxResults=10) == [[], [], ["job-00024"]]


def test_the_default_order_is_by_name_ascending_in_pages_of_10_under_aws_semantics(
    aws_semantics: SageMakerTestServer,
) -> None:
    # Created in an order that is neither the names' nor its reverse.
    names = [f"job-{(index * 7) % 25:05d}" for index in range(25)]
    for minute, name in enumerate(names):
        aws_semantics.add_job(REGION, name, created=START + timedelta(minutes=minute))

    pages = _walk(_client(aws_semantics))

    assert [len(page) for page in pages] == [10, 10, 5]
    assert [name for page in pages for name in page] == sorted(names)


def test_sorting_by_creation_time_descending_lists_the_newest_first(
    sagemaker: SageMakerTestServer,
) -> None:
    names = [f"job-{(index * 7) % 25:05d}" for index in range(25)]
    for minute, name in enumerate(names):
        sagemaker.add_job(REGION, name, created=START + timedelta(minutes=minute))

    pages = _walk(_client(sagemaker), SortBy="CreationTime", SortOrder="Descending", MaxResults=10)

    assert [name for page in pages for name in page] == names[::-1]


def test_two_identical_calls_get_different_next_tokens_under_aws_semantics(
    aws_semantics: SageMakerTestServer,
) -> None:
    _add_jobs(aws_semantics, 3)
    client = _client(aws_semantics)

    first = client.list_hyper_parameter_tuning_jobs(MaxResults=1)
    second = client.list_hyper_parameter_tuning_jobs(MaxResults=1)

    assert first["NextToken"] != second["NextToken"]
    # Either token leads to the same next page.
    assert [
        client.list_hyper_parameter_tuning_jobs(MaxResults=1, NextToken=token)[
            "HyperParameterTuningJobSummaries"
        ][0]["HyperParameterTuningJobName"]
        for token in (first["NextToken"], second["NextToken"])
    ] == ["job-00001", "job-00001"]


def test_a_next_token_the_server_did_not_issue_is_rejected_under_aws_semantics(
    aws_semantics: SageMakerTestServer,
) -> None:
    _add_jobs(aws_semantics, 3)
    client = _client(aws_semantics)
    # An offset as the server would encode it, but never issued.
    forged = "eyJvZmZzZXQiOiAxLCAibm9uY2UiOiAxfQ=="

    for token in ("not-a-token", forged):
        with pytest.raises(ClientError) as raised:
            client.list_hyper_parameter_tuning_jobs(MaxResults=1, NextToken=token)

        assert raised.value.response["Error"]["Code"] == "ValidationException"
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_summaries_under_aws_semantics_are_exactly_what_moto_answers_for_the_same_jobs(
    sagemaker_server: SageMakerTestServer,
) -> None:
    answers = {}
    for mode in LISTING_SEMANTICS:
        with _server_in(sagemaker_server, mode) as server:
            server.add_job(
                REGION,
                "job-running",
                status="InProgress",
                training={"Completed": 3, "InProgress": 2},
                created=at("2025-03-01T08:00:00.123456"),
                modified=at("2025-03-01T09:30:00.5"),
            )
            server.add_job(
                REGION,
                "job-done",
                strategy="Random",
                objective={"Succeeded": 4, "Pending": 0, "Failed": 1},
                limits={"MaxNumberOfTrainingJobs": 5, "MaxParallelTrainingJobs": 1},
                created=at("2025-03-01T07:00:00"),
                ended=at("2025-03-01T10:00:00"),
                tags={"team": "vision"},
            )
            answers[mode] = _raw_summaries(_client(server), SortBy="Name")

    assert [summary["HyperParameterTuningJobName"] for summary in answers["aws"]] == [
        "job-done",
        "job-running",
    ]
    assert answers["aws"] == answers["moto"]


@pytest.mark.parametrize(
    ("bound", "kept"),
    [
        ("CreationTimeAfter", ["job-00002"]),
        ("CreationTimeBefore", ["job-00000"]),
        ("LastModifiedTimeAfter", ["job-00002"]),
        ("LastModifiedTimeBefore", ["job-00000"]),
    ],
)
def test_time_bounds_sent_as_epoch_seconds_are_strict(
    sagemaker: SageMakerTestServer, bound: str, kept: list[str]
) -> None:
    for index in range(3):
        moment = START + timedelta(minutes=index)
        sagemaker.add_job(REGION, f"job-{index:05d}", created=moment, modified=moment)

    pages = _walk(_client(sagemaker), **{bound: epoch("2025-03-01T08:01:00")})

    assert [name for page in pages for name in page] == kept


def test_a_rewrite_fault_rewrites_the_page_the_listing_semantics_give(
    sagemaker: SageMakerTestServer,
) -> None:
    _add_jobs(sagemaker, 3, in_progress=(1,))
    sagemaker.add_fault(
        FaultRule(
            region=REGION,
            kind="rewrite",
            operation=LISTING_OPERATION,
            rewrite_summary=for_job("job-00001", lambda summary: {**summary, "Strategy": None}),
        )
    )

    summaries = _raw_summaries(_client(sagemaker), StatusEquals="InProgress")

    assert [(s["HyperParameterTuningJobName"], s["Strategy"]) for s in summaries] == [
        ("job-00001", None)
    ]


def test_reset_keeps_the_listing_semantics_the_fixture_set(
    sagemaker: SageMakerTestServer, request: pytest.FixtureRequest
) -> None:
    assert sagemaker.listing_semantics == request.node.callspec.params["sagemaker"]

    sagemaker.reset()

    assert sagemaker.listing_semantics == request.node.callspec.params["sagemaker"]


def test_an_unknown_listing_semantics_is_refused(sagemaker: SageMakerTestServer) -> None:
    with pytest.raises(ValueError, match="listing semantics"):
        sagemaker.use_listing_semantics("strict")


# ListTrainingJobsForHyperParameterTuningJob, answered from the server's own store.

TRAINING_JOB_STATUSES = ("Completed", "InProgress", "Failed", "Stopped", "Stopping")


def _training_pages(client: SageMakerClient, **request: Any) -> list[list[str]]:
    """The training job names of every page boto3's paginator walks for TUNING_JOB."""
    paginator = client.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job")
    return [
        [summary["TrainingJobName"] for summary in page["TrainingJobSummaries"]]
        for page in paginator.paginate(HyperParameterTuningJobName=TUNING_JOB, **request)
    ]


def _add_training_jobs(
    server: SageMakerTestServer, count: int, in_progress: tuple[int, ...] = ()
) -> None:
    """Tuning job TUNING_JOB with ``count`` training jobs ``train-000``..., created a minute
    apart in that order; those whose index is in ``in_progress`` InProgress, the rest Completed."""
    server.add_job(REGION, TUNING_JOB, status="InProgress")
    for index in range(count):
        server.add_training_job(
            REGION,
            TUNING_JOB,
            f"train-{index:03d}",
            status="InProgress" if index in in_progress else "Completed",
            created=START + timedelta(minutes=index),
        )


def _varied_training_jobs(count: int) -> list[dict[str, Any]]:
    """add_training_job keywords of ``count`` training jobs (not a multiple of 7: the names are
    taken in steps of 7, so each comes once, out of order): every status, each optional field
    both set and left out, times as text and as datetimes, some with milliseconds."""
    jobs: list[dict[str, Any]] = []
    for index in range(count):
        status = TRAINING_JOB_STATUSES[index % len(TRAINING_JOB_STATUSES)]
        created = START + timedelta(minutes=index, milliseconds=250 * (index % 4))
        job: dict[str, Any] = {
            "name": f"train-{(index * 7) % count:03d}",
            "status": status,
            "created": created.isoformat() if index % 2 else created,
            "tuned_hyperparameters": {"eta": f"0.{index}", "depth": str(index % 7)}
            if index % 4
            else {},
        }
        if index % 6:
            job["started"] = created + timedelta(seconds=30)
        if status in ("Completed", "Failed", "Stopped"):
            job["ended"] = (created + timedelta(minutes=20)).isoformat()
        if status == "Failed":
            job["failure_reason"] = "AlgorithmError: ExecuteUserScriptError: exit code 1"
            job["objective_status"] = "Failed"
        if status == "Completed":
            job["objective_value"] = 0.5 + index / 100
            job["objective_status"] = "Succeeded"
            if index % 2:
                job |= {"objective_metric": "validation:loss", "objective_type": "Minimize"}
        if index % 3 == 0:
            job["definition_name"] = f"definition-{index % 2}"
        jobs.append(job)
    return jobs


def _as_boto3_reads(job: Mapping[str, Any]) -> dict[str, Any]:
    """The summary boto3 should give of a training job added with keywords ``job``: its times
    UTC, an objective without metric or type taking the tuning job's (accuracy, Maximize)."""

    def utc(moment: datetime | str) -> datetime:
        return (at(moment) if isinstance(moment, str) else moment).replace(tzinfo=UTC)

    summary: dict[str, Any] = {
        "TrainingJobName": job["name"],
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{job['name']}",
        "TuningJobName": TUNING_JOB,
        "CreationTime": utc(job["created"]),
        "TrainingJobStatus": job["status"],
        "TunedHyperParameters": job["tuned_hyperparameters"],
    }
    if "started" in job:
        summary["TrainingStartTime"] = utc(job["started"])
    if "ended" in job:
        summary["TrainingEndTime"] = utc(job["ended"])
    if "failure_reason" in job:
        summary["FailureReason"] = job["failure_reason"]
    if "objective_value" in job:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "Type": job.get("objective_type", "Maximize"),
            "MetricName": job.get("objective_metric", "accuracy"),
            "Value": job["objective_value"],
        }
    if "objective_status" in job:
        summary["ObjectiveStatus"] = job["objective_status"]
    if "definition_name" in job:
        summary["TrainingJobDefinitionName"] = job["definition_name"]
    return summary


def _counters(client: SageMakerClient) -> tuple[dict[str, object], dict[str, object]]:
    """TUNING_JOB's TrainingJobStatusCounters as Describe and as the listing answer them."""
    described = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=TUNING_JOB)
    (listed,) = [
        summary
        for summary in client.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
        if summary["HyperParameterTuningJobName"] == TUNING_JOB
    ]
    return dict(described["TrainingJobStatusCounters"]), dict(listed["TrainingJobStatusCounters"])


@pytest.mark.parametrize("page_size", [1, None, 100], ids=["1", "default-10", "100"])
def test_every_training_job_comes_back_once_with_every_field_as_stored(
    sagemaker: SageMakerTestServer, page_size: int | None
) -> None:
    jobs = _varied_training_jobs(23)
    sagemaker.add_job(REGION, TUNING_JOB, status="InProgress")
    sagemaker.add_job(REGION, "other-tuning")
    for job in jobs:
        sagemaker.add_training_job(REGION, TUNING_JOB, **job)
    sagemaker.add_training_job(REGION, "other-tuning", "train-of-another", status="Completed")
    paginator = _client(sagemaker).get_paginator(
        "list_training_jobs_for_hyper_parameter_tuning_job"
    )

    pages = list(
        paginator.paginate(
            HyperParameterTuningJobName=TUNING_JOB,
            PaginationConfig={"PageSize": page_size} if page_size else {},
        )
    )

    summaries = [summary for page in pages for summary in page["TrainingJobSummaries"]]
    assert summaries == sorted(
        (_as_boto3_reads(job) for job in jobs), key=lambda summary: summary["TrainingJobName"]
    )
    assert len(pages) == math.ceil(23 / (page_size or 10))
    assert sagemaker.received(REGION, TRAINING_JOBS_OPERATION) == len(pages)


def test_a_status_filter_costs_a_page_per_max_results_matches_under_moto_and_of_all_under_aws(
    sagemaker: SageMakerTestServer,
) -> None:
    _add_training_jobs(sagemaker, 25, in_progress=(3, 24))

    pages = _training_pages(
        _client(sagemaker), StatusEquals="InProgress", PaginationConfig={"PageSize": 10}
    )

    # Under aws the middle page is empty, yet carries the NextToken that leads to the last.
    assert (
        pages
        == {
            "moto": [["train-003", "train-024"]],
            "aws": [["train-003"], [], ["train-024"]],
        }[sagemaker.listing_semantics]
    )
    assert sagemaker.received(REGION, TRAINING_JOBS_OPERATION) == len(pages)


def test_sorting_training_jobs_by_creation_time_descending_lists_the_newest_first(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_job(REGION, TUNING_JOB)
    # Created in an order that is neither the names' nor its reverse; the last two at once.
    names = [f"train-{(index * 3) % 10:03d}" for index in range(10)]
    for minute, name in enumerate(names):
        created = START + timedelta(minutes=min(minute, 8))
        sagemaker.add_training_job(REGION, TUNING_JOB, name, status="Completed", created=created)

    pages = _training_pages(
        _client(sagemaker),
        SortBy="CreationTime",
        SortOrder="Descending",
        PaginationConfig={"PageSize": 4},
    )

    # The tie between the newest two is broken by name, descending with the rest.
    newest_first = sorted(names[-2:], reverse=True) + names[-3::-1]
    assert [name for page in pages for name in page] == newest_first
    assert [len(page) for page in pages] == [4, 4, 2]


def test_sorting_training_jobs_by_objective_value_leaves_out_those_without_one(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_job(REGION, TUNING_JOB, status="InProgress")
    for name, value in [
        ("train-a", 0.7),
        ("train-b", None),
        ("train-c", 0.2),
        ("train-d", 0.7),
        ("train-e", None),
        ("train-f", 0.9),
    ]:
        status = "InProgress" if value is None else "Completed"
        sagemaker.add_training_job(REGION, TUNING_JOB, name, status=status, objective_value=value)

    pages = _training_pages(
        _client(sagemaker), SortBy="FinalObjectiveMetricValue", PaginationConfig={"PageSize": 2}
    )

    assert pages == [["train-c", "train-a"], ["train-d", "train-f"]]


def test_a_forged_next_token_or_max_results_out_of_range_is_a_validation_exception(
    sagemaker: SageMakerTestServer,
) -> None:
    _add_training_jobs(sagemaker, 3)
    client = _client(sagemaker, validate=False)
    issued = client.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=TUNING_JOB, MaxResults=1
    )["NextToken"]
    # An offset as the server would encode it, but never issued.
    forged = "eyJvZmZzZXQiOiAxLCAibm9uY2UiOiAxfQ=="
    assert forged != issued

    for request in (
        {"NextToken": forged},
        {"NextToken": "not-a-token"},
        {"MaxResults": 0},
        {"MaxResults": 101},
    ):
        with pytest.raises(ClientError) as raised:
            client.list_training_jobs_for_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=TUNING_JOB, **request
            )

        assert raised.value.response["Error"]["Code"] == "ValidationException", request
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_the_training_jobs_of_an_unknown_tuning_job_are_not_found_as_describing_it_is(
    sagemaker: SageMakerTestServer,
) -> None:
    _add_training_jobs(sagemaker, 1)
    client = _client(sagemaker)

    with pytest.raises(ClientError) as listing:
        client.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="missing"
        )
    with pytest.raises(ClientError) as describing:
        client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="missing")

    assert listing.value.response["Error"] == describing.value.response["Error"]
    assert listing.value.response["Error"]["Code"] == "ResourceNotFound"
    assert listing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_the_tuning_jobs_counters_agree_with_its_training_jobs_also_after_one_finishes(
    sagemaker: SageMakerTestServer,
) -> None:
    # Counters set by hand give way to those of the training jobs once there are any.
    sagemaker.add_job(
        REGION, TUNING_JOB, status="InProgress", training={"Completed": 7, "InProgress": 3}
    )
    for index, status in enumerate(
        ["Completed", "Completed", "InProgress", "Stopping", "Failed", "Stopped"]
    ):
        sagemaker.add_training_job(REGION, TUNING_JOB, f"train-{index:03d}", status=status)
    client = _client(sagemaker)
    before = {"Completed": 2, "InProgress": 2, "RetryableError": 0, "NonRetryableError": 1}

    assert _counters(client) == ({**before, "Stopped": 1}, {**before, "Stopped": 1})

    sagemaker.update_training_job(
        REGION, "train-002", status="Completed", ended="2025-03-01T09:00:00", objective_value=0.8
    )

    after = {**before, "Completed": 3, "InProgress": 1, "Stopped": 1}
    assert _counters(client) == (after, after)
    summaries = client.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=TUNING_JOB
    )["TrainingJobSummaries"]
    (finished,) = [s for s in summaries if s["TrainingJobName"] == "train-002"]
    assert finished["TrainingJobStatus"] == "Completed"
    assert finished["TrainingEndTime"] == datetime(2025, 3, 1, 9, tzinfo=UTC)
    assert finished["FinalHyperParameterTuningJobObjectiveMetric"] == {
        "Type": "Maximize",
        "MetricName": "accuracy",
        "Value": 0.8,
    }


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("throttle", "ThrottlingException"),
        ("server_error", "InternalFailure"),
        ("access_denied_action", "AccessDeniedException"),
    ],
)
def test_a_fault_rule_on_the_training_job_listing_answers_it_and_every_request_is_counted(
    sagemaker: SageMakerTestServer, kind: str, code: str
) -> None:
    _add_training_jobs(sagemaker, 2)
    sagemaker.add_fault(
        FaultRule(region=REGION, kind=kind, operation=TRAINING_JOBS_OPERATION, times=1)
    )
    client = _client(sagemaker)

    with pytest.raises(ClientError) as raised:
        client.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=TUNING_JOB
        )
    second = client.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=TUNING_JOB
    )

    assert raised.value.response["Error"]["Code"] == code
    if kind == "access_denied_action":
        # It names the action, as AWS does, so that the missing permission can be named.
        assert (
            "not authorized to perform: sagemaker:ListTrainingJobsForHyperParameterTuningJob"
            in raised.value.response["Error"]["Message"]
        )
    assert len(second["TrainingJobSummaries"]) == 2
    assert sagemaker.received(REGION, TRAINING_JOBS_OPERATION) == 2


def test_an_empty_page_fault_answers_in_the_training_job_listings_shape(
    sagemaker: SageMakerTestServer,
) -> None:
    _add_training_jobs(sagemaker, 2)
    sagemaker.add_fault(
        FaultRule(region=REGION, kind="empty_page", operation=TRAINING_JOBS_OPERATION, times=1)
    )

    page = _client(sagemaker).list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=TUNING_JOB
    )

    assert page["TrainingJobSummaries"] == []
    assert page["NextToken"]


def test_a_rewrite_fault_rewrites_training_job_summaries_as_a_malformed_api_might_send_them(
    sagemaker: SageMakerTestServer,
) -> None:
    _add_training_jobs(sagemaker, 3, in_progress=(1,))
    sagemaker.add_training_job(
        REGION, TUNING_JOB, "train-untyped", status="InProgress", objective_value=0.5
    )
    # An objective without a Type, as AWS may answer.
    sagemaker.add_fault(
        FaultRule(
            region=REGION,
            kind="rewrite",
            operation=TRAINING_JOBS_OPERATION,
            rewrite_summary=for_training_job(
                "train-untyped",
                lambda summary: {
                    **summary,
                    "FinalHyperParameterTuningJobObjectiveMetric": {
                        "MetricName": "accuracy",
                        "Value": 0.5,
                    },
                },
            ),
        )
    )

    summaries = _client(sagemaker).list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=TUNING_JOB, StatusEquals="InProgress"
    )["TrainingJobSummaries"]

    assert [
        (s["TrainingJobName"], s.get("FinalHyperParameterTuningJobObjectiveMetric"))
        for s in summaries
    ] == [("train-001", None), ("train-untyped", {"MetricName": "accuracy", "Value": 0.5})]


def test_reset_forgets_the_training_jobs(sagemaker: SageMakerTestServer) -> None:
    _add_training_jobs(sagemaker, 3)

    sagemaker.reset()
    sagemaker.add_job(REGION, TUNING_JOB)

    assert _training_pages(_client(sagemaker)) == [[]]


def test_a_training_job_is_refused_without_its_tuning_job_twice_or_with_an_unknown_status(
    moto_semantics: SageMakerTestServer,
) -> None:
    _add_training_jobs(moto_semantics, 1)

    with pytest.raises(KeyError, match="no tuning job 'missing'"):
        moto_semantics.add_training_job(REGION, "missing", "train-x", status="Completed")
    with pytest.raises(ValueError, match="already exists"):
        moto_semantics.add_training_job(REGION, TUNING_JOB, "train-000", status="Completed")
    with pytest.raises(ValueError, match="'Deleting' is not one of"):
        moto_semantics.add_training_job(REGION, TUNING_JOB, "train-x", status="Deleting")
    with pytest.raises(ValueError, match="keeps its"):
        moto_semantics.update_training_job(REGION, "train-000", tuning_job_name="other")


# Training-job definitions: what DescribeHyperParameterTuningJob tells of instance types.

BOTOCORE_DEFINITION = (
    botocore.session.get_session()
    .get_service_model("sagemaker")
    .shape_for("HyperParameterTrainingJobDefinition")
)


def _described_definitions(
    client: SageMakerClient,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
    """TUNING_JOB's TrainingJobDefinition and TrainingJobDefinitions as boto3 reads them,
    each checked against botocore's HyperParameterTrainingJobDefinition shape."""
    described = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=TUNING_JOB)
    single = described.get("TrainingJobDefinition")
    several = described.get("TrainingJobDefinitions")
    for definition in [*([single] if single else []), *(several or [])]:
        # Its required members (AlgorithmSpecification, RoleArn, OutputDataConfig,
        # StoppingCondition) present, each member of its type, or ParamValidationError.
        validate_parameters(definition, BOTOCORE_DEFINITION)
    return (
        None if single is None else dict(single),
        None if several is None else [dict(definition) for definition in several],
    )


def test_a_tuning_job_without_definitions_is_described_without_either_field(
    moto_semantics: SageMakerTestServer,
) -> None:
    moto_semantics.add_job(REGION, TUNING_JOB)

    assert _described_definitions(_client(moto_semantics)) == (None, None)


def test_one_unnamed_definition_is_described_as_the_training_job_definition(
    moto_semantics: SageMakerTestServer,
) -> None:
    moto_semantics.add_job(REGION, TUNING_JOB, definitions={"": ("ml.m5.xlarge", 2)})

    single, several = _described_definitions(_client(moto_semantics))

    assert several is None
    assert single is not None
    assert single["ResourceConfig"] == {
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 10,
    }
    assert "DefinitionName" not in single
    assert "HyperParameterTuningResourceConfig" not in single


def test_named_definitions_are_described_in_order_with_their_names_and_the_objective(
    moto_semantics: SageMakerTestServer,
) -> None:
    moto_semantics.add_job(
        REGION,
        TUNING_JOB,
        definitions={"def-b": ("ml.p3.2xlarge", 1), "def-a": ("ml.m5.large", 3)},
    )

    single, several = _described_definitions(_client(moto_semantics))

    assert single is None
    assert several is not None
    assert [
        (definition["DefinitionName"], definition["ResourceConfig"]) for definition in several
    ] == [
        ("def-b", {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10}),
        ("def-a", {"InstanceType": "ml.m5.large", "InstanceCount": 3, "VolumeSizeInGB": 10}),
    ]
    assert [definition["TuningObjective"] for definition in several] == [
        {"Type": "Maximize", "MetricName": "accuracy"}
    ] * 2


def test_an_instance_choice_is_described_as_instance_configs_sagemaker_chooses_among(
    moto_semantics: SageMakerTestServer,
) -> None:
    moto_semantics.add_job(
        REGION,
        TUNING_JOB,
        definitions={
            "cpu": ("ml.c5.xlarge", 1),
            "any": InstanceChoice(("ml.m5.large", 1), ("ml.c5.xlarge", 2)),
        },
    )

    _, several = _described_definitions(_client(moto_semantics))

    assert several is not None
    cpu, chosen = several
    assert "HyperParameterTuningResourceConfig" not in cpu
    assert "ResourceConfig" not in chosen
    assert chosen["HyperParameterTuningResourceConfig"] == {
        "AllocationStrategy": "Prioritized",
        "InstanceConfigs": [
            {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            {"InstanceType": "ml.c5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 10},
        ],
    }


def test_training_jobs_name_the_definitions_their_tuning_job_has_and_no_other(
    moto_semantics: SageMakerTestServer,
) -> None:
    moto_semantics.add_job(
        REGION,
        TUNING_JOB,
        status="InProgress",
        definitions={"def-a": ("ml.p3.2xlarge", 1), "def-b": ("ml.m5.large", 3)},
    )
    moto_semantics.add_job(REGION, "single", definitions={"": ("ml.m5.xlarge", 1)})
    moto_semantics.add_training_job(
        REGION, TUNING_JOB, "train-a", status="Completed", definition_name="def-a"
    )
    moto_semantics.add_training_job(
        REGION, TUNING_JOB, "train-b", status="InProgress", definition_name="def-b"
    )
    moto_semantics.add_training_job(REGION, "single", "train-single", status="Completed")

    with pytest.raises(ValueError, match="'def-c' is not one of tuning job 'tuning'"):
        moto_semantics.add_training_job(
            REGION, TUNING_JOB, "train-c", status="Completed", definition_name="def-c"
        )
    with pytest.raises(ValueError, match="is not one of"):
        moto_semantics.update_training_job(REGION, "train-b", definition_name="def-c")
    # One unnamed definition has no name a training job could give.
    with pytest.raises(ValueError, match="is not one of tuning job 'single'"):
        moto_semantics.add_training_job(
            REGION, "single", "train-named", status="Completed", definition_name="def-a"
        )
    with pytest.raises(ValueError, match="name each of several"):
        moto_semantics.add_job(
            REGION, "mixed", definitions={"": ("ml.m5.large", 1), "def-a": ("ml.m5.large", 1)}
        )
    client = _client(moto_semantics)
    _, several = _described_definitions(client)
    summaries = client.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=TUNING_JOB
    )["TrainingJobSummaries"]

    assert several is not None
    assert [(s["TrainingJobName"], s["TrainingJobDefinitionName"]) for s in summaries] == [
        ("train-a", "def-a"),
        ("train-b", "def-b"),
    ]
    assert {s["TrainingJobDefinitionName"] for s in summaries} == {
        definition["DefinitionName"] for definition in several
    }
