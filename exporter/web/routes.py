"""The exporter's HTTP endpoints as a WSGI application: /metrics, a landing page, probes, /-/reload.

The socket server that runs it is :mod:`exporter.web.server`; basic authentication and the
response headers of ``--web.config.file`` wrap it per request (:func:`secure_app`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from exporter import __version__
from exporter.config.reading import ConfigError
from exporter.metrics.exposition import MetricsPage
from exporter.refresh.cache import SnapshotCache
from exporter.web.basic_auth import require_basic_auth
from exporter.web.reload import ReloadingWebConfig

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# Prometheus' own default scrape timeout; used when a scraper does not say its timeout.
DEFAULT_SCRAPE_DEADLINE_SECONDS = 10.0
# Time kept back from the scraper's timeout for rendering and sending the response.
SCRAPE_DEADLINE_MARGIN_SECONDS = 0.5
MINIMUM_SCRAPE_DEADLINE_SECONDS = 0.1
MAXIMUM_SCRAPE_DEADLINE_SECONDS = 300.0

_LANDING_PAGE = """<!DOCTYPE html>
<html>
<head><title>SageMaker Tuning Exporter</title></head>
<body>
<h1>SageMaker Tuning Exporter</h1>
<p>Prometheus exporter for Amazon SageMaker hyperparameter tuning jobs, version {version}.</p>
<ul>
<li><a href="metrics">Metrics</a></li>
<li><a href="-/healthy">Health</a></li>
<li><a href="-/ready">Readiness</a></li>
</ul>
</body>
</html>
"""


def scrape_deadline(environ: WSGIEnvironment) -> float:
    """How long a scrape may wait for refreshes: the scraper's announced timeout less a margin.

    A missing or unusable header means Prometheus' default timeout; the result stays
    between 0.1 s and 300 s.

    >>> scrape_deadline({"HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": "5"})
    4.5
    >>> scrape_deadline({"HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": "inf"})
    9.5
    """
    announced = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS", "")
    try:
        timeout = float(announced)
    except ValueError:
        timeout = DEFAULT_SCRAPE_DEADLINE_SECONDS
    if not math.isfinite(timeout):
        timeout = DEFAULT_SCRAPE_DEADLINE_SECONDS
    return min(
        MAXIMUM_SCRAPE_DEADLINE_SECONDS,
        max(MINIMUM_SCRAPE_DEADLINE_SECONDS, timeout - SCRAPE_DEADLINE_MARGIN_SECONDS),
    )


class ServedExporter(Protocol):
    """What the endpoints serve: the exporter in force, and how to reload its configuration.

    :class:`exporter.app.LiveExporter` is one.
    """

    def serving(self) -> tuple[SnapshotCache, MetricsPage]:
        """The cache and /metrics page in force, taken together."""

    def is_ready(self) -> bool:
        """Whether /-/ready answers 200."""

    def reload(self) -> None:
        """Reload the configuration; raise ConfigError when it does not load."""


def create_live_app(exporter: ServedExporter, enable_lifecycle: bool) -> WSGIApplication:
    """The WSGI application serving the exporter's endpoints from whatever ``exporter`` holds.

    /metrics is served from the metrics page in force, which negotiates the text format or
    OpenMetrics and gzip from the request headers and reuses what it rendered before.
    ``POST /-/reload`` (or PUT) reloads the configuration when ``enable_lifecycle``, and
    answers 403 otherwise, as Prometheus does.
    """
    landing_page = _LANDING_PAGE.format(version=html.escape(__version__)).encode()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            # One lookup, so the page rendered is the one of the cache just refreshed.
            cache, metrics_page = exporter.serving()
            cache.refresh_stale(timeout=scrape_deadline(environ))
            return _serve_metrics(metrics_page, environ, start_response)
        if path == "/":
            return _respond(start_response, "200 OK", landing_page, "text/html; charset=utf-8")
        if path == "/-/healthy":
            return _respond(start_response, "200 OK", b"Healthy\n")
        if path == "/-/ready":
            if exporter.is_ready():
                return _respond(start_response, "200 OK", b"Ready\n")
            return _respond(
                start_response,
                "503 Service Unavailable",
                b"Not ready: the first refresh of every account and region has not finished\n",
            )
        if path == "/-/reload":
            return _reload(exporter, enable_lifecycle, environ, start_response)
        return _respond(start_response, "404 Not Found", b"Not found\n")

    return app


def _reload(
    exporter: ServedExporter,
    enable_lifecycle: bool,
    environ: WSGIEnvironment,
    start_response: StartResponse,
) -> list[bytes]:
    """/-/reload, answered as Prometheus answers it."""
    if environ.get("REQUEST_METHOD") not in ("POST", "PUT"):
        body = b"Only POST or PUT requests allowed"
        start_response(
            "405 Method Not Allowed",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Allow", "POST, PUT"),
            ],
        )
        return [body]
    if not enable_lifecycle:
        return _respond(start_response, "403 Forbidden", b"Lifecycle API is not enabled.")
    try:
        exporter.reload()
    except ConfigError as error:  # logged by the reload
        return _respond(start_response, "500 Internal Server Error", f"{error}\n".encode())
    return _respond(start_response, "200 OK", b"Configuration reloaded\n")


def _serve_metrics(
    metrics_page: MetricsPage, environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    accept_encoding = environ.get("HTTP_ACCEPT_ENCODING", "")
    accept_gzip = "gzip" in [part.split(";")[0].strip() for part in accept_encoding.split(",")]
    response = metrics_page.render(environ.get("HTTP_ACCEPT"), accept_gzip)
    headers = [("Content-Type", response.content_type), ("Content-Length", str(response.length))]
    if response.gzipped:
        headers.append(("Content-Encoding", "gzip"))
    start_response("200 OK", headers)
    if environ.get("REQUEST_METHOD") == "HEAD":
        return []
    return response.chunks


def _respond(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def add_response_headers(app: WSGIApplication, headers: Mapping[str, str]) -> WSGIApplication:
    """``app`` with ``headers`` (http_server_config.headers) added to every response."""
    extra = list(headers.items())

    def with_headers(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start_with_headers(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            return start_response(status, [*response_headers, *extra], exc_info)

        return app(environ, start_with_headers)

    return with_headers


def secure_app(app: WSGIApplication, web_config: ReloadingWebConfig) -> WSGIApplication:
    """``app`` behind the basic auth and response headers web_config holds at each request."""

    def secured(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        security = web_config.current()
        inner = app
        if security.authenticator is not None:
            inner = require_basic_auth(inner, security.authenticator)
        if security.config.headers:
            inner = add_response_headers(inner, security.config.headers)
        return inner(environ, start_response)

    return secured
