"""What a failed AWS call means: its kind, whether to retry, and a message fit for the log.

Every failed attempt is classified into one of ERROR_KINDS, from its HTTP status and
error code (botocore's own lists of throttling codes), so that the request counter and the
retry guard agree on what happened. Messages never quote a credential.
"""

from __future__ import annotations

import re

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from exporter.model.jobs import Target

HTTP_BAD_REQUEST = 400
HTTP_TOO_MANY_REQUESTS = 429
HTTP_SERVER_ERROR = 500
# Kinds of failed attempts worth another attempt: they pass. Denied or rejected credentials
# do not pass by themselves, and other errors (validation) would fail the same way again.
RETRIED_ERROR_KINDS = frozenset({"throttled", "server_error", "timeout"})
# Exceptions botocore raises when no answer came back: retried like a timeout.
TRANSPORT_ERRORS = (
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
