"""AWS access: SageMaker clients per account and region, request counting, retries and paging.

botocore is told to make one attempt per call; :class:`RefreshGuard` runs the retries
itself, because only there can they share one refresh's deadline and retry budget, be
paced by the target's :class:`RequestPacer`, and sleep for an injectable, interruptible
time. Every attempt still goes through botocore, so :class:`RequestCounter` counts each.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

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
ROLE_SESSION_NAME = "sagemaker-tuning-exporter"
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 30
HTTP_BAD_REQUEST = 400
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500


_Result = TypeVar("_Result")
# Kinds of failed attempts worth another attempt: they pass. Denied or rejected credentials
# do not pass by themselves, and other errors (validation) would fail the same way again.
RETRIED_ERROR_KINDS = frozenset({"throttled", "server_error", "timeout"})
# Exceptions botocore raises when no answer came back: retried like a timeout.
_TRANSPORT_ERRORS = (
    ConnectTimeoutError,
    ReadTimeoutError,
    EndpointConnectionError,
    ConnectionClosedError,
)
# The action in an AccessDenied message: "... is not authorized to perform: sagemaker:ListX ..."
_DENIED_ACTION = re.compile(r"not authorized to perform:? ([A-Za-z0-9-]+:[A-Za-z0-9*]+)")
# Access key IDs (AKIA..., ASIA...) that an AWS error message may quote.
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b")
# AWS error messages are quoted in logs up to this length; SignatureDoesNotMatch messages
# go on to quote the canonical request, which holds the session token.
_MAX_QUOTED_MESSAGE = 300


class PaginationError(Exception):
    """A listing's pages do not end: a token repeats, or pages keep coming past any need."""


class RefreshDeadlineError(Exception):
    """A refresh ran out of its time (``cache.refresh_timeout``) between two attempts."""


class AttemptsExhaustedError(Exception):
    """An API call kept failing (throttled, 5xx, timeouts) until its attempts or the refresh's
    retry budget ran out; the message names the operation, the attempts and the last error."""


class CredentialError(Exception):
    """AWS refused the target's credentials or permissions; retrying cannot help until fixed.

    The message says which permission is missing, or why the credentials were refused, and
    never quotes a credential. ``kind`` is ``access_denied`` or ``expired_credentials``.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


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


class RequestPacer:
    """A token bucket that paces one target's requests to ``requests_per_second``.

    It holds at most one second's worth of requests (and at least one), so an idle target
    may send that many at once; after that each request waits its turn. Time comes from
    ``monotonic``, so tests can drive it.
    """

    def __init__(
        self, requests_per_second: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = requests_per_second
        self._capacity = max(1.0, requests_per_second)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._tokens = self._capacity
        self._updated = monotonic()

    def reserve(self) -> float:
        """Take the next request's turn; return how many seconds to wait before sending it."""
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def cancel(self) -> None:
        """Give back a turn taken by :meth:`reserve` for a request that will not be sent."""
        with self._lock:
            self._tokens = min(self._capacity, self._tokens + 1.0)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: retry n waits uniformly in [0, min(cap, base * 2**n)]."""

    base_seconds: float = 0.2
    cap_seconds: float = 10.0

    def delay(self, retry: int, uniform: Callable[[], float]) -> float:
        """The wait before retry ``retry`` (0 for the first), ``uniform`` giving a number in [0, 1)."""
        return uniform() * min(self.cap_seconds, self.base_seconds * 2.0**retry)


class RefreshGuard:
    """Runs every API call of one target's refresh: pacing, retries, backoff and the deadline.

    Each call gets up to ``max_attempts`` attempts; throttling, 5xx answers and timeouts are
    retried after a :class:`Backoff` delay, as long as the refresh has retries left of
    ``retry_budget``. So a target that fails every request costs ``max_attempts`` requests
    per refresh (the first failing call ends it), and one that fails now and then costs at
    most its pages plus ``retry_budget``. Denied access and rejected credentials are not
    retried: they raise :class:`CredentialError`; rejected credentials also call
    ``on_credential_error``.

    Before each attempt the deadline (``timeout_seconds`` from construction) is checked, and
    a backoff or pacing wait that would end past it raises :class:`RefreshDeadlineError`
    at once instead of sleeping. ``monotonic``, ``sleep`` and ``uniform`` are injectable.
    """

    def __init__(
        self,
        target: Target,
        *,
        max_attempts: int,
        retry_budget: int,
        timeout_seconds: float,
        pacer: RequestPacer | None = None,
        backoff: Backoff = Backoff(),
        on_credential_error: Callable[[], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        self._target = target
        self._max_attempts = max(1, max_attempts)
        self._retries_left = retry_budget
        self._timeout_seconds = timeout_seconds
        self._pacer = pacer
        self._backoff = backoff
        self._on_credential_error = on_credential_error
        self._monotonic = monotonic
        self._sleep = sleep
        self._uniform = uniform
        self._deadline = monotonic() + timeout_seconds

    @property
    def retries_left(self) -> int:
        """Retries this refresh may still make."""
        return self._retries_left

    def seconds_left(self) -> float:
        """Seconds until the deadline; 0 or less once it has passed."""
        return self._deadline - self._monotonic()

    def call(self, operation: Callable[..., _Result], **request: Any) -> _Result:
        """``operation(**request)``, retried as the class describes."""
        retry = 0
        while True:
            self._wait(self._pacer.reserve() if self._pacer else 0.0, "waiting for its turn")
            try:
                return operation(**request)
            except ClientError as error:
                kind = classify_client_error(error)
                if kind in ("access_denied", "expired_credentials"):
                    # New credentials fix rejected ones; a missing permission is fixed in IAM,
                    # and AWS applies that to the credentials in hand.
                    if kind == "expired_credentials" and self._on_credential_error is not None:
                        self._on_credential_error()
                    raise CredentialError(
                        describe_credential_error(self._target, error), kind
                    ) from None
                if kind not in RETRIED_ERROR_KINDS:
                    raise
                if not self._may_retry(retry):
                    code = error.response.get("Error", {}).get("Code", "")
                    message = safe_aws_message(error.response.get("Error", {}).get("Message", ""))
                    raise self._gave_up(error.operation_name, retry, f"{code}: {message}") from None
            except _TRANSPORT_ERRORS as error:
                if not self._may_retry(retry):
                    name = getattr(operation, "__name__", "the call")
                    raise self._gave_up(name, retry, f"{type(error).__name__}") from error
            self._retries_left -= 1
            self._wait(self._backoff.delay(retry, self._uniform), "backing off", pacer_turn=False)
            retry += 1

    def _gave_up(self, operation_name: str, retry: int, last_error: str) -> AttemptsExhaustedError:
        attempts = f"{retry + 1} attempt{'s' if retry else ''}"
        why = "" if retry + 1 >= self._max_attempts else ", the refresh's retry budget spent"
        return AttemptsExhaustedError(
            f"{operation_name} failed after {attempts}{why} ({last_error})"
        )

    def _may_retry(self, retry: int) -> bool:
        return retry + 1 < self._max_attempts and self._retries_left > 0

    def _wait(self, seconds: float, doing: str, *, pacer_turn: bool = True) -> None:
        """Sleep ``seconds``, unless that would pass the deadline: then raise at once."""
        remaining = self._deadline - self._monotonic()
        if remaining <= 0 or seconds >= remaining:
            if pacer_turn and self._pacer is not None:
                self._pacer.cancel()
            raise RefreshDeadlineError(
                f"refresh exceeded its {self._timeout_seconds:g}s deadline"
                + (f" ({doing} {seconds:.1f}s)" if remaining > 0 else "")
            )
        if seconds > 0:
            self._sleep(seconds)


def classify_client_error(error: ClientError) -> str:
    """The ERROR_KINDS entry of an API error botocore raised."""
    status_code = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    error_code = str(error.response.get("Error", {}).get("Code", ""))
    return classify_error(status_code, error_code, None)


def describe_credential_error(target: Target, error: ClientError) -> str:
    """What went wrong with ``target``'s credentials or permissions, and what to fix.

    The role ARN, the operation and AWS's own message are named; the action comes from
    the message when AWS names it. Credentials are never quoted.
    """
    code = str(error.response.get("Error", {}).get("Code", "")) or "error"
    message = safe_aws_message(str(error.response.get("Error", {}).get("Message", "")))
    aws_said = f"{code}: {message}" if message else code
    identity = f"role {target.role_arn}" if target.role_arn else "the exporter's credentials"
    if error.operation_name == "AssumeRole" and classify_client_error(error) != "access_denied":
        return (
            f"cannot assume role {target.role_arn}: STS rejected the exporter's own credentials "
            f"({aws_said}); they will be obtained afresh on the next refresh"
        )
    if error.operation_name == "AssumeRole":
        external_id = " with the configured ExternalId" if target.external_id else ""
        return (
            f"cannot assume role {target.role_arn} ({aws_said}): the exporter's own identity "
            f"needs sts:AssumeRole on {target.role_arn}, and the role's trust policy must "
            f"trust that identity{external_id} (check its ExternalId condition)"
        )
    if classify_client_error(error) == "access_denied":
        # findall, not search: tests/test_deploy_iam.py reads method names as API calls.
        named = _DENIED_ACTION.findall(message)
        action = named[0] if named else f"sagemaker:{error.operation_name}"
        return f"access denied: missing permission {action} for {identity} ({aws_said})"
    return (
        f"credentials rejected by {error.operation_name} ({aws_said}): "
        f"{identity} will be obtained afresh on the next refresh"
    )


def safe_aws_message(message: str) -> str:
    """An AWS error message fit for a log line: access key IDs masked, quoted requests cut off."""
    message = message.split(" The Canonical String", 1)[0]
    message = _ACCESS_KEY_ID.sub("(access key id)", message)
    if len(message) > _MAX_QUOTED_MESSAGE:
        message = message[: _MAX_QUOTED_MESSAGE - 3] + "..."
    return message


# Where a secret can appear in a log line: signed request headers (as a repr or in a canonical
# request), query-string signatures, STS answers in XML or JSON, and access key IDs.
_SECRET_PATTERNS = (
    re.compile(
        r"((?:authorization|x-amz-security-token|x-amz-signature)['\"]?\s*[:=]\s*b?['\"]?)"
        r"[^'\"\n,}]+",
        re.IGNORECASE,
    ),
    re.compile(r"(<(?:SecretAccessKey|SessionToken|AccessKeyId)>)[^<]*"),
    re.compile(
        r"(['\"]?(?:SecretAccessKey|SessionToken|AccessKeyId|aws_secret_access_key|"
        r"aws_session_token|secret_key|token)['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,}]+",
        re.IGNORECASE,
    ),
    re.compile(r"((?:Signature|Credential)=)[^\s,'\"&]+"),
    re.compile(r"(Signature:\s*)[0-9a-f]+"),
    re.compile(r"()\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"),
)


def redact_secrets(text: str) -> str:
    """``text`` with every credential, token and signature it quotes replaced by ``(redacted)``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1(redacted)", text)
    return text


class RedactSecretsFilter(logging.Filter):
    """A handler filter that redacts AWS secrets from every record it passes.

    botocore, at DEBUG, logs signed requests (Authorization, X-Amz-Security-Token), canonical
    requests and response bodies, AssumeRole's secret key and session token included; a
    record is rewritten once its message is formatted, so no secret reaches the output.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record``'s message without secrets; always keep the record."""
        message = record.getMessage()
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        # A traceback and stack are added to the line after the filters ran: format them here.
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        return True


class _FixedCredentialProvider(CredentialProvider):
    """Hands botocore one credentials object: the assumed role's, which refresh themselves."""

    METHOD = "sagemaker-tuning-exporter-assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


def client_config(aws: AwsSettings) -> Config:
    """botocore settings shared by every client: one attempt per call, and timeouts.

    :class:`RefreshGuard` retries; botocore retrying as well would multiply the attempts.
    """
    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        user_agent_extra=f"sagemaker-tuning-exporter/{__version__}",
    )


class SageMakerClients:
    """The SageMaker client of each target, built on its first use and kept.

    Every botocore session shares one loader, so the service models are read and held in
    memory once rather than once per account and region. Targets without a role share one
    session with the ambient credentials; each target with a role (a role in one region)
    gets a session, shared by its SageMaker and tagging clients, whose credentials come from
    STS AssumeRole on top of the ambient ones and are renewed by botocore before they expire. Clients are built under a lock, since botocore sessions are not thread-safe
    (clients are); an error while building one (no credentials, a missing profile) raises
    from :meth:`get`, so it fails that target's refresh and is tried again on the next.

    botocore keeps refreshable credentials until they expire, even once AWS has revoked or
    rejected them; so rejected credentials drop the target's clients and session (and, with
    them, the assumed role's credentials) and the ambient session, and the next refresh
    starts afresh. A denied permission drops nothing: AWS applies a fixed policy to the
    credentials in hand.
    """

    def __init__(
        self,
        aws: AwsSettings,
        counter: RequestCounter,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._aws = aws
        self._counter = counter
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._clients: dict[Target, SageMakerClient] = {}
        self._sessions: dict[Target, botocore.session.Session] = {}
        self._tagging_clients: dict[Target, ResourceGroupsTaggingAPIClient] = {}
        self._pacers: dict[Target, RequestPacer] = {}
        self._loader: botocore.loaders.Loader | None = None
        self._source: botocore.session.Session | None = None

    def guard(self, target: Target, timeout_seconds: float) -> RefreshGuard:
        """A :class:`RefreshGuard` for one refresh of ``target``, ending ``timeout_seconds`` from now.

        The target's pacer outlives the refresh, so the rate holds across refreshes.
        """
        pacer = None
        if self._aws.max_requests_per_second is not None:
            with self._lock:
                pacer = self._pacers.get(target)
                if pacer is None:
                    pacer = self._pacers[target] = RequestPacer(
                        self._aws.max_requests_per_second, self._monotonic
                    )
        return RefreshGuard(
            target,
            max_attempts=self._aws.max_attempts,
            retry_budget=self._aws.max_retries_per_refresh,
            timeout_seconds=timeout_seconds,
            pacer=pacer,
            on_credential_error=lambda: self.forget(target),
            monotonic=self._monotonic,
        )

    def forget(self, target: Target) -> None:
        """Drop ``target``'s clients and credentials, and the ambient ones: the next use starts afresh."""
        with self._lock:
            self._clients.pop(target, None)
            self._tagging_clients.pop(target, None)
            self._sessions.pop(target, None)  # with it, the assumed role's credentials
            self._source = None

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
