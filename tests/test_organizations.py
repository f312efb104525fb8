"""OrganizationAccounts: its client, where its requests are counted, and what it reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from exporter.aws.counting import RequestCounter
from exporter.aws.organizations import AccountListError, OrganizationAccounts
from exporter.config.settings import AwsSettings


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
    """A reader for eu-west-1 on AWS's own endpoint, which botocore names aws-global."""
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

    assert reader.client().meta.region_name == "aws-global"
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
