"""What the AWS-access tests share: a SageMaker client on the test server, and a guard on fake time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exporter.aws.clients import SageMakerClients
from exporter.aws.counting import RequestCounter
from exporter.aws.guard import RefreshGuard
from exporter.config.settings import AwsSettings
from exporter.model.jobs import Target
from tests.sagemaker_server import SageMakerTestServer

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

EU = Target(region="eu-west-1")


def sagemaker_client(
    sagemaker: SageMakerTestServer,
    region: str = "eu-west-1",
    counter: RequestCounter | None = None,
) -> SageMakerClient:
    """The exporter's client for ``region`` on the test server, counted by ``counter``."""
    aws = AwsSettings(endpoint_url=sagemaker.url, max_attempts=3)
    return SageMakerClients(aws, counter or RequestCounter()).get(Target(region=region))


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


def fake_time_guard(
    fake: FakeTime,
    target: Target = EU,
    *,
    max_attempts: int = 3,
    retry_budget: int = 10,
    timeout_seconds: float = 30.0,
    **settings: Any,
) -> RefreshGuard:
    """A :class:`RefreshGuard` whose waits pass on ``fake`` rather than in real time."""
    return RefreshGuard(
        target,
        max_attempts=max_attempts,
        retry_budget=retry_budget,
        timeout_seconds=timeout_seconds,
        monotonic=fake.monotonic,
        sleep=fake.sleep,
        **settings,
    )
