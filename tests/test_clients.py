"""Clients per target on assumed roles: their account, renewed credentials, and a fresh start after rejected ones."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from exporter.aws.clients import SageMakerClients
from exporter.aws.counting import RequestCounter
from exporter.aws.errors import (
    CredentialError,
)
from exporter.aws.operations import LIST_OPERATION
from exporter.config.settings import AwsSettings, ExporterConfig, JobFilters
from exporter.model.jobs import Target
from exporter.refresh.listing import list_full
from tests.sagemaker_server import FaultRule, SageMakerTestServer

if TYPE_CHECKING:
    pass

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()

READER_ROLE = "arn:aws:iam::111111111111:role/reader"


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


def test_clients_kept_for_the_remaining_targets_only_assume_again_for_those_dropped(
    sagemaker: SageMakerTestServer,
) -> None:
    kept = Target(region="eu-west-1", role_arn=READER_ROLE, account_id="111111111111")
    dropped = Target(
        region="eu-west-1",
        role_arn="arn:aws:iam::222222222222:role/reader",
        account_id="222222222222",
    )
    clients = SageMakerClients(AwsSettings(endpoint_url=sagemaker.url), RequestCounter())
    for target in (kept, dropped):
        list_full(clients.get(target), JobFilters(), NOW, clients.guard(target, 30))
    assert sagemaker.received("eu-west-1", "AssumeRole") == 2

    clients.keep_only([kept])
    list_full(clients.get(kept), JobFilters(), NOW, clients.guard(kept, 30))
    assert sagemaker.received("eu-west-1", "AssumeRole") == 2  # the kept session goes on
    list_full(clients.get(dropped), JobFilters(), NOW, clients.guard(dropped, 30))
    assert sagemaker.received("eu-west-1", "AssumeRole") == 3  # the dropped one starts afresh


def test_a_roles_regions_share_one_assume_role_and_are_dropped_together(
    sagemaker: SageMakerTestServer,
) -> None:
    regions = ("eu-west-1", "us-east-1")
    targets = [Target(region=r, role_arn=READER_ROLE, account_id="111111111111") for r in regions]
    clients = SageMakerClients(AwsSettings(endpoint_url=sagemaker.url), RequestCounter())
    for target in targets:
        list_full(clients.get(target), JobFilters(), NOW, clients.guard(target, 30))
    assume_roles = sum(sagemaker.received(region, "AssumeRole") for region in regions)
    assert assume_roles == 1  # the credentials hold in every region

    clients.forget(targets[0])  # rejected credentials: no client keeps them
    for target in targets:
        list_full(clients.get(target), JobFilters(), NOW, clients.guard(target, 30))
    assert sum(sagemaker.received(region, "AssumeRole") for region in regions) == 2


def test_clients_know_only_the_operations_the_exporter_calls(
    sagemaker: SageMakerTestServer,
) -> None:
    target = Target(region="eu-west-1", role_arn=READER_ROLE, account_id="111111111111")
    clients = SageMakerClients(AwsSettings(endpoint_url=sagemaker.url), RequestCounter())

    sagemaker_client, tagging_client = clients.get(target), clients.tagging(target)

    assert set(sagemaker_client.meta.service_model.operation_names) == {
        "ListHyperParameterTuningJobs",
        "DescribeHyperParameterTuningJob",
        "ListTrainingJobsForHyperParameterTuningJob",
    }
    assert set(tagging_client.meta.service_model.operation_names) == {"GetResources"}
