"""The organization's ACTIVE accounts, read with AWS Organizations' ListAccounts.

The client is made here and only here, on the ambient credentials (the management account
or a delegated administrator), for the endpoint
:func:`~exporter.config.settings.endpoint_for` gives ``organizations``: botocore's own
settings (``AWS_ENDPOINT_URL_ORGANIZATIONS``) when none is configured. Organizations has
one endpoint per partition, so its requests are signed for that endpoint's region whatever
the endpoint; they are counted under the configured region the reader is made for, not
under the ``aws-global`` botocore names the client of a global service.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

from exporter.aws.clients import client_config
from exporter.aws.counting import RequestCounter
from exporter.aws.errors import (
    AttemptsExhaustedError,
    CredentialError,
    PaginationError,
    RefreshDeadlineError,
    safe_aws_message,
)
from exporter.aws.guard import RefreshGuard
from exporter.aws.operations import LIST_ACCOUNTS_OPERATION
from exporter.aws.paging import pages
from exporter.config.settings import AwsSettings, aws_partition, endpoint_for
from exporter.model.jobs import Target

if TYPE_CHECKING:
    from mypy_boto3_organizations import OrganizationsClient

# ListAccounts answers at most 20 accounts a page: 1,000 pages hold 20,000 accounts.
MAX_RESULTS = 20
MAX_PAGES = 1000
ACTIVE = "ACTIVE"
# The region of each partition's one Organizations endpoint, which requests are signed for.
_SIGNING_REGIONS = {"aws": "us-east-1", "aws-cn": "cn-northwest-1", "aws-us-gov": "us-gov-west-1"}


def organizations_signing_region(region: str) -> str:
    """The region Organizations requests are signed for, in the partition of ``region``.

    >>> organizations_signing_region("eu-west-1"), organizations_signing_region("cn-north-1")
    ('us-east-1', 'cn-northwest-1')
    """
    return _SIGNING_REGIONS[aws_partition(region)]


class AccountListError(Exception):
    """ListAccounts failed; the message says why and never quotes a credential."""


def is_active(account: Mapping[str, Any]) -> bool:
    """Whether an account of a ListAccounts page is ACTIVE.

    AWS is replacing ``Status`` (ACTIVE, SUSPENDED, PENDING_CLOSURE) with ``State``
    (PENDING_ACTIVATION, ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED); ``State`` decides
    when the answer has it.

    >>> is_active({"Status": "ACTIVE"}), is_active({"Status": "ACTIVE", "State": "CLOSED"})
    (True, False)
    """
    state = account.get("State") or account.get("Status")
    return state == ACTIVE


def active_account_ids(accounts: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The IDs of the ACTIVE accounts, sorted, each once.

    >>> active_account_ids([{"Id": "2", "Status": "ACTIVE"}, {"Id": "1", "State": "SUSPENDED"}])
    ('2',)
    """
    return tuple(
        sorted(
            {
                str(account["Id"])
                for account in accounts
                if isinstance(account.get("Id"), str) and is_active(account)
            }
        )
    )


class OrganizationAccounts:
    """Reads the IDs of the organization's ACTIVE accounts, every page of ListAccounts.

    Each read goes through a :class:`RefreshGuard`: throttling, 5xx answers and timeouts
    are retried within ``aws.max_attempts`` and ``timeout_seconds``. The client is made on
    the first read and kept; rejected credentials drop it, so the next read starts afresh.
    """

    def __init__(
        self,
        aws: AwsSettings,
        region: str,
        counter: RequestCounter,
        *,
        timeout_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._aws = aws
        self.region = region
        self._counter = counter
        self._timeout_seconds = timeout_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._client: OrganizationsClient | None = None

    def read(self) -> tuple[str, ...]:
        """The sorted IDs of the ACTIVE accounts; raises :class:`AccountListError`."""
        guard = RefreshGuard(
            Target(region=self.region),
            max_attempts=self._aws.max_attempts,
            retry_budget=self._aws.max_retries_per_refresh,
            timeout_seconds=self._timeout_seconds,
            on_credential_error=self._forget_client,
            monotonic=self._monotonic,
        )
        try:
            client = self.client()
            accounts = [
                account
                for page in pages(
                    lambda **request: guard.call(client.list_accounts, **request),
                    {"MaxResults": MAX_RESULTS},
                    operation=LIST_ACCOUNTS_OPERATION,
                    next_key="NextToken",
                    max_pages=MAX_PAGES,
                )
                for account in page.get("Accounts", [])
            ]
        except CredentialError as error:
            raise AccountListError(
                f"{LIST_ACCOUNTS_OPERATION} refused ({error.kind}): the exporter's own identity "
                "must be the organization's management account or a delegated administrator, "
                "with organizations:ListAccounts"
            ) from None
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = safe_aws_message(str(error.response.get("Error", {}).get("Message", "")))
            raise AccountListError(
                f"{LIST_ACCOUNTS_OPERATION} failed ({code}: {message})"
            ) from None
        except (AttemptsExhaustedError, PaginationError) as error:
            raise AccountListError(str(error)) from None  # the message names ListAccounts
        except (RefreshDeadlineError, BotoCoreError) as error:
            raise AccountListError(f"{LIST_ACCOUNTS_OPERATION}: {error}") from None
        return active_account_ids(accounts)

    def client(self) -> OrganizationsClient:
        """The Organizations client, made on first use and kept until credentials are rejected."""
        with self._lock:
            if self._client is None:
                session = botocore.session.Session(profile=self._aws.profile)
                client = cast(
                    "OrganizationsClient",
                    session.create_client(
                        "organizations",
                        region_name=organizations_signing_region(self.region),
                        # None leaves it to botocore's settings, AWS's own endpoint last.
                        endpoint_url=endpoint_for(self._aws, "organizations"),
                        config=client_config(self._aws),
                    ),
                )
                self._counter.attach(client, region=self.region)
                self._client = client
            return self._client

    def _forget_client(self) -> None:
        with self._lock:
            self._client = None
