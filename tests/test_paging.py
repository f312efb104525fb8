"""Paging over moto's SageMaker server: every page followed, a repeating token stopped."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from botocore.stub import Stubber

from exporter.aws.clients import SageMakerClients
from exporter.aws.counting import RequestCounter
from exporter.aws.errors import (
    PaginationError,
)
from exporter.aws.operations import LIST_OPERATION
from exporter.aws.paging import pages
from exporter.config.settings import AwsSettings, JobFilters
from exporter.model.jobs import Target
from exporter.refresh.listing import list_full
from tests.aws_fakes import sagemaker_client
from tests.sagemaker_server import SageMakerTestServer

if TYPE_CHECKING:
    pass

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


def test_should_follow_next_token_over_more_than_100_jobs(sagemaker: SageMakerTestServer) -> None:
    for index in range(250):
        sagemaker.add_job("eu-west-1", f"job-{index:03d}")
    counter = RequestCounter()

    jobs = list_full(sagemaker_client(sagemaker, counter=counter), JobFilters(), now=NOW).jobs

    assert [job.name for job in jobs] == [f"job-{index:03d}" for index in range(250)]
    assert sagemaker.received("eu-west-1", LIST_OPERATION) == 3
    assert counter.counts() == {("eu-west-1", LIST_OPERATION): 3}


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


def test_a_repeated_token_fails_as_its_page_arrives_even_if_no_more_pages_are_wanted() -> None:
    answers: Iterator[dict[str, object]] = iter(
        [{"Items": [1], "NextToken": "a"}, {"Items": [2], "NextToken": "a"}]
    )
    sent: list[dict[str, object]] = []

    def send(**request: object) -> dict[str, object]:
        sent.append(request)
        return next(answers)

    walk = pages(send, {}, operation="ListX", next_key="NextToken", max_pages=10)
    assert next(walk)["Items"] == [1]

    with pytest.raises(PaginationError, match="ListX returned the same NextToken twice"):
        next(walk)
    assert sent == [{}, {"NextToken": "a"}]
