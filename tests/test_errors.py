"""What a failed AWS call says in the log: the role, the permission, and no credential."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from exporter.aws.clients import SageMakerClients
from exporter.aws.counting import RequestCounter
from exporter.aws.errors import (
    CredentialError,
    safe_aws_message,
)
from exporter.aws.operations import LIST_OPERATION
from exporter.config.settings import AwsSettings, JobFilters
from exporter.model.jobs import Target
from exporter.refresh.listing import list_full
from tests.aws_fakes import FakeTime, fake_time_guard
from tests.sagemaker_server import FaultRule, SageMakerTestServer

if TYPE_CHECKING:
    pass

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


READER_ROLE = "arn:aws:iam::111111111111:role/reader"


def test_a_refused_assume_role_names_the_role_its_trust_policy_and_external_id(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="assume_role_denied"))
    target = Target(
        region="eu-west-1", role_arn=READER_ROLE, external_id="xid-1", account_id="111111111111"
    )
    client = SageMakerClients(AwsSettings(endpoint_url=sagemaker.url), RequestCounter()).get(target)

    with pytest.raises(CredentialError) as raised:
        list_full(client, JobFilters(), NOW, fake_time_guard(FakeTime(), target))

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
        list_full(client, JobFilters(), NOW, fake_time_guard(FakeTime(), target))

    assert str(raised.value) == (
        f"cannot assume role {READER_ROLE}: STS rejected the exporter's own credentials "
        "(ExpiredToken: The security token included in the request is expired); they will be "
        "obtained afresh on the next refresh"
    )


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
