"""Which endpoint each AWS API is sent to: aws.endpoints.<service>, else aws.endpoint_url, else botocore's.

Every test runs the exporter over HTTP on a watched account (a role to assume) with a tag
allowlist, so one refresh sends ListHyperParameterTuningJobs and
DescribeHyperParameterTuningJob (SageMaker), AssumeRole (STS) and GetResources (tagging);
the test servers count what reached each of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.config.loading import parse_config
from exporter.config.settings import AccountSettings, AwsSettings, ExporterConfig, ServiceEndpoints
from tests.conftest import RunningExporter
from tests.expected import samples, value
from tests.sagemaker_server import SageMakerTestServer

REGION = "eu-west-1"
ACCOUNT = "111111111111"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/sagemaker-tuning-exporter"
# Nothing listens on the discard port: a request sent there fails the refresh.
DEAD_ENDPOINT = "http://127.0.0.1:9"
SERVICE_OPERATIONS = {
    "sagemaker": {"ListHyperParameterTuningJobs", "DescribeHyperParameterTuningJob"},
    "sts": {"AssumeRole"},
    "tagging": {"GetResources"},
}
EVERY_OPERATION = set().union(*SERVICE_OPERATIONS.values())
# botocore's variables for the endpoint of one service, by the service's aws.endpoints key.
ENDPOINT_VARIABLES = {
    "sagemaker": "AWS_ENDPOINT_URL_SAGEMAKER",
    "sts": "AWS_ENDPOINT_URL_STS",
    "tagging": "AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API",
}


@pytest.fixture
def other_server(sagemaker: SageMakerTestServer) -> Iterator[SageMakerTestServer]:
    """A second test server on its own port, counting its own requests.

    It serves the same moto backends as ``sagemaker``, so either answers for the jobs.
    """
    server = SageMakerTestServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def endpoint_variables(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """botocore's endpoint variables pointed where no request can succeed, unless a test sets them."""
    for variable in ENDPOINT_VARIABLES.values():
        monkeypatch.setenv(variable, DEAD_ENDPOINT)
    yield


def refresh_watched_account(
    sagemaker: SageMakerTestServer,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
    aws: AwsSettings,
) -> str:
    """One refresh of a watched account's tagged job under ``aws``; the scrape that follows."""
    sagemaker.add_job(REGION, "watched-job", account=ACCOUNT, tags={"team": "vision"})
    config = ExporterConfig(
        regions=(REGION,),
        aws=aws,
        accounts=(AccountSettings(ROLE_ARN),),
        tags=("team",),
    )
    running = run_exporter(config)
    running.exporter.cache.refresh_all(timeout=60)
    return running.scrape()


def operations_received(server: SageMakerTestServer) -> set[str]:
    return {operation for (_, operation), count in server.received_by_key().items() if count}


def assert_the_watched_job_is_published_with_its_tag(text: str) -> None:
    assert value(text, "sagemaker_tuning_exporter_up", account=ACCOUNT, region=REGION) == 1
    tags = [
        dict(labels)
        for (name, labels), number in samples(text).items()
        if name == "sagemaker_tuning_job_tags" and number == 1
    ]
    assert [(t["job_name"], t["tag_team"]) for t in tags] == [("watched-job", "vision")]


@pytest.mark.usefixtures("endpoint_variables")
def test_endpoint_url_alone_serves_sagemaker_sts_and_tagging_over_botocores_variables(
    sagemaker: SageMakerTestServer,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    text = refresh_watched_account(
        sagemaker, run_exporter, AwsSettings(endpoint_url=sagemaker.url, max_attempts=1)
    )

    assert_the_watched_job_is_published_with_its_tag(text)
    assert operations_received(sagemaker) == EVERY_OPERATION


@pytest.mark.usefixtures("endpoint_variables")
@pytest.mark.parametrize("service", sorted(SERVICE_OPERATIONS))
def test_a_service_endpoint_overrides_endpoint_url_for_that_service_only(
    service: str,
    sagemaker: SageMakerTestServer,
    other_server: SageMakerTestServer,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    aws = AwsSettings(
        endpoint_url=sagemaker.url,
        endpoints=ServiceEndpoints(**{service: other_server.url}),
        max_attempts=1,
    )

    text = refresh_watched_account(sagemaker, run_exporter, aws)

    assert_the_watched_job_is_published_with_its_tag(text)
    assert operations_received(other_server) == SERVICE_OPERATIONS[service]
    assert operations_received(sagemaker) == EVERY_OPERATION - SERVICE_OPERATIONS[service]


def test_a_service_endpoint_from_the_config_file_is_used(
    sagemaker: SageMakerTestServer,
    other_server: SageMakerTestServer,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    config = parse_config(
        f"regions: [{REGION}]\n"
        f"aws:\n  endpoint_url: {DEAD_ENDPOINT}\n  max_attempts: 1\n"
        f"  endpoints:\n    sagemaker: {other_server.url}\n"
    )
    sagemaker.add_job(REGION, "ours")

    running = run_exporter(config)
    running.exporter.cache.refresh_all(timeout=60)

    assert value(running.scrape(), "sagemaker_tuning_exporter_up", region=REGION) == 1
    assert operations_received(other_server) == SERVICE_OPERATIONS["sagemaker"]


@pytest.mark.usefixtures("endpoint_variables")
def test_with_neither_set_each_service_follows_its_botocore_variable(
    monkeypatch: pytest.MonkeyPatch,
    sagemaker: SageMakerTestServer,
    other_server: SageMakerTestServer,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    # Each service to a different server, so the variable of each one is seen to count.
    monkeypatch.setenv(ENDPOINT_VARIABLES["sagemaker"], sagemaker.url)
    monkeypatch.setenv(ENDPOINT_VARIABLES["sts"], other_server.url)
    monkeypatch.setenv(ENDPOINT_VARIABLES["tagging"], other_server.url)

    text = refresh_watched_account(sagemaker, run_exporter, AwsSettings(max_attempts=1))

    assert_the_watched_job_is_published_with_its_tag(text)
    assert operations_received(sagemaker) == SERVICE_OPERATIONS["sagemaker"]
    assert operations_received(other_server) == {"AssumeRole", "GetResources"}


@pytest.mark.usefixtures("endpoint_variables")
def test_with_neither_set_the_services_section_of_the_aws_config_file_is_followed(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sagemaker: SageMakerTestServer,
    other_server: SageMakerTestServer,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    for variable in ENDPOINT_VARIABLES.values():
        monkeypatch.delenv(variable)
    aws_config = tmp_path / "aws-config"
    aws_config.write_text(
        "[default]\nservices = test-servers\n\n[services test-servers]\n"
        f"sagemaker =\n  endpoint_url = {sagemaker.url}\n"
        f"sts =\n  endpoint_url = {other_server.url}\n"
        f"resource_groups_tagging_api =\n  endpoint_url = {other_server.url}\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))

    text = refresh_watched_account(sagemaker, run_exporter, AwsSettings(max_attempts=1))

    assert_the_watched_job_is_published_with_its_tag(text)
    assert operations_received(sagemaker) == SERVICE_OPERATIONS["sagemaker"]
    assert operations_received(other_server) == {"AssumeRole", "GetResources"}


@pytest.mark.usefixtures("endpoint_variables")
def test_assume_role_to_a_regional_sts_endpoint_is_signed_for_that_endpoints_region(
    monkeypatch: pytest.MonkeyPatch,
    sagemaker: SageMakerTestServer,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    # AWS's STS host for another region than the watched one, reached through the test
    # server acting as the HTTP proxy; the server reads the region from the signature.
    monkeypatch.setenv("HTTP_PROXY", sagemaker.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    aws = AwsSettings(
        endpoint_url=sagemaker.url,
        endpoints=ServiceEndpoints(sts="http://sts.eu-central-1.amazonaws.com"),
        max_attempts=1,
    )

    text = refresh_watched_account(sagemaker, run_exporter, aws)

    assert_the_watched_job_is_published_with_its_tag(text)
    assert sagemaker.received(operation="AssumeRole") == 1
    assert sagemaker.received("eu-central-1", "AssumeRole") == 1
