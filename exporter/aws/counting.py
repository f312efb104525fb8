"""Counts every request the exporter sends to AWS, and every failed attempt, by kind.

The counts are what ``sagemaker_tuning_exporter_api_requests_total`` and
``sagemaker_tuning_exporter_api_errors_total`` publish: one per HTTP request, retries
included, so they match what AWS bills and throttles.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from exporter.aws.errors import ERROR_KINDS, HTTP_BAD_REQUEST, classify_error


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

    def attach(self, client: Any, region: str | None = None) -> None:
        """Count the requests ``client`` sends, and their failures, from now on.

        They are counted under ``region``, by default the client's own; the client of a
        global service such as Organizations says ``aws-global`` there.
        """
        region = region or client.meta.region_name

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
