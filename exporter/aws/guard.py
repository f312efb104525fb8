"""The guard every API call of one refresh goes through: pacing, retries, backoff, deadline.

botocore is told to make one attempt per call (see :mod:`exporter.aws.clients`);
:class:`RefreshGuard` runs the retries itself, because only there can they share one
refresh's deadline and retry budget, be paced by the target's :class:`RequestPacer`, and
sleep for an injectable, interruptible time. Every attempt still goes through botocore, so
:class:`~exporter.aws.counting.RequestCounter` counts each.

The guard's result says what the caller should do: an answer; :class:`CredentialError`
(denied or rejected, not retried); :class:`AttemptsExhaustedError` or
:class:`RefreshDeadlineError` (the endpoint is unwell or the time is up: nothing more
should be sent this refresh); or a :class:`~botocore.exceptions.ClientError` the guard
passes through, which concerns only the request that got it (validation, not found).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from exporter.aws.errors import (
    RETRIED_ERROR_KINDS,
    TRANSPORT_ERRORS,
    AttemptsExhaustedError,
    CredentialError,
    RefreshDeadlineError,
    classify_client_error,
    describe_credential_error,
    safe_aws_message,
)
from exporter.model.jobs import Target

_Result = TypeVar("_Result")


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

    Calls may run on several threads at once, sharing the budget, the pace and the deadline.
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
        self._retry_lock = threading.Lock()
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
                if not self._take_retry(retry):
                    code = error.response.get("Error", {}).get("Code", "")
                    message = safe_aws_message(error.response.get("Error", {}).get("Message", ""))
                    raise self._gave_up(error.operation_name, retry, f"{code}: {message}") from None
            except TRANSPORT_ERRORS as error:
                if not self._take_retry(retry):
                    name = getattr(operation, "__name__", "the call")
                    raise self._gave_up(name, retry, f"{type(error).__name__}") from error
            self._wait(self._backoff.delay(retry, self._uniform), "backing off", pacer_turn=False)
            retry += 1

    def _gave_up(self, operation_name: str, retry: int, last_error: str) -> AttemptsExhaustedError:
        attempts = f"{retry + 1} attempt{'s' if retry else ''}"
        why = "" if retry + 1 >= self._max_attempts else ", the refresh's retry budget spent"
        return AttemptsExhaustedError(
            f"{operation_name} failed after {attempts}{why} ({last_error})"
        )

    def _take_retry(self, retry: int) -> bool:
        """Spend one of the refresh's retries on retry ``retry`` of a call, if one may be made.

        Calls of one refresh may run at once (its describes): the budget is spent under a lock.
        """
        with self._retry_lock:
            if retry + 1 >= self._max_attempts or self._retries_left <= 0:
                return False
            self._retries_left -= 1
            return True

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
