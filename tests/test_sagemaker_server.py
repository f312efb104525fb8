"""The test server itself, over real HTTP: ListHyperParameterTuningJobs under both listing
semantics, moto's (filter, then page) and AWS's documented one (page, then filter)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.sagemaker_server import (
    LISTING_OPERATION,
    LISTING_SEMANTICS,
    FaultRule,
    SageMakerTestServer,
    at,
    epoch,
    for_job,
)

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

REGION = "eu-west-1"
START = at("2025-03-01T08:00:00")


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


def _client(server: SageMakerTestServer) -> SageMakerClient:
    return boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
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
