"""Request counting: every attempt, and every failed one by kind of error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import botocore.session
import pytest
from botocore.config import Config

from exporter.aws.counting import RequestCounter
from exporter.aws.errors import (
    AttemptsExhaustedError,
    CredentialError,
)
from exporter.aws.operations import LIST_OPERATION
from exporter.config.settings import JobFilters
from exporter.refresh.listing import list_full
from tests.aws_fakes import FakeTime, fake_time_guard, sagemaker_client
from tests.sagemaker_server import FaultRule, SageMakerTestServer

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


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
        list_full(
            sagemaker_client(sagemaker, counter=counter),
            JobFilters(),
            NOW,
            fake_time_guard(FakeTime()),
        )

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
