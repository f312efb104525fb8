"""OrganizationAccounts: its client, where its requests are counted, and what it reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from exporter.aws.counting import RequestCounter
from exporter.aws.organizations import AccountListError, OrganizationAccounts
from exporter.config.settings import AwsSettings, ServiceEndpoints


class _RawBody:
    """The body botocore reads from an HTTP response."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


def answer_at_the_wire(reader: OrganizationAccounts, status: int, body: dict[str, Any]) -> None:
    """Answer every request the reader's client sends with ``status`` and ``body``, unsent."""
    data = json.dumps(body).encode()

    def respond(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {}, _RawBody(data))  # type: ignore[arg-type]

    reader.client().meta.events.register_last("before-send", respond)  # type: ignore[arg-type]


@pytest.fixture
def counter() -> RequestCounter:
    return RequestCounter()


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch, counter: RequestCounter) -> OrganizationAccounts:
    """A reader for eu-west-1 on AWS's own endpoint, in us-east-1."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_ORGANIZATIONS", raising=False)
    return OrganizationAccounts(
        AwsSettings(max_attempts=2), "eu-west-1", counter, timeout_seconds=10
    )


def test_requests_are_counted_under_the_region_the_reader_is_made_for(
    reader: OrganizationAccounts, counter: RequestCounter
) -> None:
    answer_at_the_wire(
        reader,
        200,
        {
            "Accounts": [
                {"Id": "111111111111", "Status": "ACTIVE"},
                {"Id": "222222222222", "Status": "ACTIVE", "State": "PENDING_CLOSURE"},
                {"Id": "333333333333", "Status": "SUSPENDED"},
            ]
        },
    )

    accounts = reader.read()

    assert reader.client().meta.endpoint_url == "https://organizations.us-east-1.amazonaws.com"
    assert accounts == ("111111111111",)
    assert counter.counts() == {("eu-west-1", "ListAccounts"): 1}


def test_a_denied_list_says_which_identity_and_permission_it_needs(
    reader: OrganizationAccounts, counter: RequestCounter
) -> None:
    answer_at_the_wire(
        reader,
        400,
        {"__type": "AccessDeniedException", "Message": "You don't have permissions"},
    )

    with pytest.raises(AccountListError) as raised:
        reader.read()

    assert str(raised.value) == (
        "ListAccounts refused (access_denied): the exporter's own identity must be the "
        "organization's management account or a delegated administrator, with "
        "organizations:ListAccounts"
    )
    assert counter.error_counts()[("eu-west-1", "ListAccounts", "access_denied")] == 1


@pytest.mark.parametrize(
    ("region", "endpoint"),
    [
        ("eu-west-1", "https://organizations.us-east-1.amazonaws.com"),
        ("cn-north-1", "https://organizations.cn-northwest-1.amazonaws.com.cn"),
        ("us-gov-east-1", "https://organizations.us-gov-west-1.amazonaws.com"),
    ],
)
def test_the_client_goes_to_the_one_endpoint_of_the_regions_partition(
    monkeypatch: pytest.MonkeyPatch, region: str, endpoint: str
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_ORGANIZATIONS", raising=False)
    reader = OrganizationAccounts(AwsSettings(), region, RequestCounter(), timeout_seconds=10)

    assert reader.client().meta.endpoint_url == endpoint


def test_a_configured_endpoint_is_signed_for_the_partitions_organizations_region() -> None:
    aws = AwsSettings(endpoints=ServiceEndpoints(organizations="https://organizations.example"))
    reader = OrganizationAccounts(aws, "eu-west-1", RequestCounter(), timeout_seconds=10)
    signed: list[str] = []
    reader.client().meta.events.register(
        "before-send",
        lambda request, **_: signed.append(request.headers["Authorization"].decode()),
    )
    answer_at_the_wire(reader, 200, {"Accounts": []})

    reader.read()

    assert reader.client().meta.endpoint_url == "https://organizations.example"
    assert "/us-east-1/organizations/aws4_request" in signed[0]
