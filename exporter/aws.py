"""AWS access: SageMaker clients per account and region, request counting, and paging."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from exporter import __version__
from exporter.config import AwsSettings
from exporter.jobs import Target
from exporter.responses import BEFORE_PARSE_LISTING, lenient_timestamp, repair_listing_shapes

if TYPE_CHECKING:
    from mypy_boto3_resourcegroupstaggingapi import ResourceGroupsTaggingAPIClient
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sts import STSClient

log = logging.getLogger(__name__)

LIST_OPERATION = "ListHyperParameterTuningJobs"
PAGE_SIZE = 100  # the API's maximum for MaxResults
# 10,000 pages are a million tuning jobs: far beyond any real account, so more means a loop.
MAX_PAGES = 10_000
ROLE_SESSION_NAME = "sagemaker-tuning-exporter"
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 30
HTTP_BAD_REQUEST = 400
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500


class PaginationError(Exception):
    """The listing's NextToken chain does not end."""


ERROR_KINDS = (
    "throttled",
    "access_denied",
    "expired_credentials",
    "timeout",
    "server_error",
    "other",
)
# The error codes botocore's standard retry mode treats as throttling.
THROTTLING_ERROR_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
ACCESS_DENIED_ERROR_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
)
# Expired, unknown or badly signed credentials: fixed by new credentials, not by permissions.
CREDENTIAL_ERROR_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
    }
)


def classify_error(status_code: int | None, error_code: str, exception: Exception | None) -> str:
    """The ERROR_KINDS entry an attempt's failure belongs to.

    >>> classify_error(400, "ThrottlingException", None)
    'throttled'
    >>> classify_error(503, "ServiceUnavailable", None)
    'server_error'
    """
    if exception is not None:
        if isinstance(exception, (ConnectTimeoutError, ReadTimeoutError)):
            return "timeout"
        return "other"
    if error_code in THROTTLING_ERROR_CODES or status_code == HTTP_TOO_MANY_REQUESTS:
        return "throttled"
    if error_code in ACCESS_DENIED_ERROR_CODES:
        return "access_denied"
    if error_code in CREDENTIAL_ERROR_CODES:
        return "expired_credentials"
    if status_code is not None and status_code >= HTTP_SERVER_ERROR:
        return "server_error"
    return "other"


class RequestCounter:
    """Counts every HTTP request botocore sends, retries included, and every failed attempt.

    Requests are counted per region and operation from botocore's ``before-send`` event, which
    fires once per attempt, so the count matches what AWS bills and throttles. Failed attempts
    are counted per region, operation and :data:`ERROR_KINDS` entry from the ``needs-retry``
    event, which botocore emits after every attempt, retried or not.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._errors: dict[tuple[str, str, str], int] = {}
        self._version = 0

    def declare(self, region: str, operation: str) -> None:
        """Make (region, operation) and its error kinds appear with zero before the first request."""
        with self._lock:
            self._version += 1
            self._counts.setdefault((region, operation), 0)
            for kind in ERROR_KINDS:
                self._errors.setdefault((region, operation, kind), 0)

    def attach(self, client: Any) -> None:
        """Count the requests ``client`` sends, and their failures, from now on."""
        region = client.meta.region_name

        def count_request(event_name: str, **_: object) -> None:
            self.record(region, event_name.rsplit(".", 1)[-1])

        def count_failure(
            event_name: str,
            response: tuple[Any, Mapping[str, Any]] | None = None,
            caught_exception: Exception | None = None,
            **_: object,
        ) -> None:
            operation = event_name.rsplit(".", 1)[-1]
            if caught_exception is not None:
                self.record_error(region, operation, classify_error(None, "", caught_exception))
                return
            if response is None:
                return
            http_response, parsed = response
            status_code = getattr(http_response, "status_code", None)
            if status_code is not None and status_code < HTTP_BAD_REQUEST:
                return
            error_code = str(parsed.get("Error", {}).get("Code", ""))
            self.record_error(region, operation, classify_error(status_code, error_code, None))

        client.meta.events.register("before-send", count_request)
        client.meta.events.register("needs-retry", count_failure)

    def record(self, region: str, operation: str) -> None:
        """Count one request sent."""
        with self._lock:
            self._version += 1
            self._counts[(region, operation)] = self._counts.get((region, operation), 0) + 1

    def record_error(self, region: str, operation: str, kind: str) -> None:
        """Count one failed attempt of ``kind``."""
        key = (region, operation, kind)
        with self._lock:
            self._version += 1
            self._errors[key] = self._errors.get(key, 0) + 1

    def version(self) -> int:
        """A number that changes whenever a count does."""
        with self._lock:
            return self._version

    def counts(self) -> dict[tuple[str, str], int]:
        """A copy of the request counts, keyed by (region, operation)."""
        with self._lock:
            return dict(self._counts)

    def error_counts(self) -> dict[tuple[str, str, str], int]:
        """A copy of the failed-attempt counts, keyed by (region, operation, error kind)."""
        with self._lock:
            return dict(self._errors)


class _FixedCredentialProvider(CredentialProvider):
    """Hands botocore one credentials object: the assumed role's, which refresh themselves."""

    METHOD = "sagemaker-tuning-exporter-assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


def client_config(aws: AwsSettings) -> Config:
    """botocore settings shared by every client: standard retries (throttling, 5xx) and timeouts."""
    return Config(
        retries={"total_max_attempts": aws.max_attempts, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        user_agent_extra=f"sagemaker-tuning-exporter/{__version__}",
    )


class SageMakerClients:
    """The SageMaker client of each target, built on its first use and kept.

    Every botocore session shares one loader, so the service models are read and held in
    memory once rather than once per account and region. Targets without a role share one
    session with the ambient credentials; each role gets a session whose credentials come
    from STS AssumeRole on top of the ambient ones and are renewed by botocore before they
    expire. Clients are built under a lock, since botocore sessions are not thread-safe
    (clients are); an error while building one (no credentials, a missing profile) raises
    from :meth:`get`, so it fails that target's refresh and is tried again on the next.
    """

    def __init__(self, aws: AwsSettings, counter: RequestCounter) -> None:
        self._aws = aws
        self._counter = counter
        self._lock = threading.Lock()
        self._clients: dict[Target, SageMakerClient] = {}
        self._sessions: dict[Target, botocore.session.Session] = {}
        self._tagging_clients: dict[Target, ResourceGroupsTaggingAPIClient] = {}
        self._loader: botocore.loaders.Loader | None = None
        self._source: botocore.session.Session | None = None

    def get(self, target: Target) -> SageMakerClient:
        """The client for ``target``, whose requests the counter counts."""
        with self._lock:
            client = self._clients.get(target)
            if client is None:
                client = self._clients[target] = self._create(target)
            return client

    def tagging(self, target: Target) -> ResourceGroupsTaggingAPIClient:
        """The Resource Groups Tagging API client for ``target``, on the same session and credentials.

        ``aws.endpoint_url`` is SageMaker's endpoint, so it does not apply here; botocore's
        ``AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API`` sets this service's endpoint.
        """
        with self._lock:
            client = self._tagging_clients.get(target)
            if client is None:
                client = cast(
                    "ResourceGroupsTaggingAPIClient",
                    self._session(target).create_client(
                        "resourcegroupstaggingapi",
                        region_name=target.region,
                        config=client_config(self._aws),
                    ),
                )
                self._counter.attach(client)
                self._tagging_clients[target] = client
            return client

    def _source_session(self) -> botocore.session.Session:
        """The session with the ambient credentials, shared by targets without a role."""
        if self._source is None:
            self._source = self._new_session()
        return self._source

    def _session(self, target: Target) -> botocore.session.Session:
        """The session of ``target``'s clients: one per role, kept so its clients share credentials."""
        if target.role_arn is None:
            return self._source_session()
        session = self._sessions.get(target)
        if session is None:
            session = self._sessions[target] = self._new_session()
            credentials = DeferredRefreshableCredentials(
                refresh_using=self._assume_role_fetcher(target.role_arn, target),
                method=_FixedCredentialProvider.METHOD,
            )
            session.register_component(
                "credential_provider", CredentialResolver([_FixedCredentialProvider(credentials)])
            )
        return session

    def _create(self, target: Target) -> SageMakerClient:
        client = cast(
            "SageMakerClient",
            self._session(target).create_client(
                "sagemaker",
                region_name=target.region,
                endpoint_url=self._aws.endpoint_url,
                config=client_config(self._aws),
            ),
        )
        self._counter.attach(client)
        return client

    def _new_session(self) -> botocore.session.Session:
        """A session on the shared loader, which the first session creates."""
        session = botocore.session.Session(profile=self._aws.profile)
        if self._loader is None:
            self._loader = botocore.loaders.create_loader(session.get_config_variable("data_path"))
        session.register_component("data_loader", self._loader)
        _tolerate_malformed_listings(session)
        return session

    def _assume_role_fetcher(self, role_arn: str, target: Target) -> Callable[[], dict[str, str]]:
        sts = cast(
            "STSClient",
            self._source_session().create_client(
                "sts", region_name=target.region, config=client_config(self._aws)
            ),
        )
        self._counter.attach(sts)

        def fetch_credentials() -> dict[str, str]:
            if target.external_id:
                response = sts.assume_role(
                    RoleArn=role_arn,
                    RoleSessionName=ROLE_SESSION_NAME,
                    ExternalId=target.external_id,
                )
            else:
                response = sts.assume_role(RoleArn=role_arn, RoleSessionName=ROLE_SESSION_NAME)
            credentials = response["Credentials"]
            return {
                "access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": credentials["Expiration"].isoformat(),
            }

        return fetch_credentials


def _tolerate_malformed_listings(session: botocore.session.Session) -> None:
    """Keep one malformed job summary from failing its whole listing page (see responses)."""
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=lenient_timestamp
    )
    session.register(BEFORE_PARSE_LISTING, repair_listing_shapes)


def iter_summaries(
    client: SageMakerClient, request: Mapping[str, Any], max_empty_pages: int | None = None
) -> Iterator[Mapping[str, Any]]:
    """The job summaries of one listing request, following NextToken to the end.

    Raises :class:`PaginationError` when a NextToken repeats, when the listing runs past
    MAX_PAGES, or when more than ``max_empty_pages`` pages in a row are empty yet carry a
    NextToken (reported of SageMaker's List APIs filtered by LastModifiedTimeAfter).
    """
    seen_tokens: set[str] = set()
    token: str | None = None
    empty_pages = 0
    for _ in range(MAX_PAGES):
        page_request: dict[str, Any] = {**request, "NextToken": token} if token else dict(request)
        page = client.list_hyper_parameter_tuning_jobs(**page_request)
        summaries = page.get("HyperParameterTuningJobSummaries", [])
        yield from summaries
        token = page.get("NextToken")
        if not token:
            return
        if token in seen_tokens:
            raise PaginationError(f"{LIST_OPERATION} returned the same NextToken twice")
        seen_tokens.add(token)
        empty_pages = 0 if summaries else empty_pages + 1
        if max_empty_pages is not None and empty_pages > max_empty_pages:
            raise PaginationError(
                f"{LIST_OPERATION} returned {empty_pages} empty pages in a row with a NextToken"
            )
    raise PaginationError(f"{LIST_OPERATION} did not finish within {MAX_PAGES} pages")
