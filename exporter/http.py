"""The HTTP server: /metrics, a landing page, and /-/healthy and /-/ready probes."""

from __future__ import annotations

import html
import logging
import math
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from exporter import __version__
from exporter.exposition import MetricsPage
from exporter.refresh import SnapshotCache

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

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


def create_app(cache: SnapshotCache, metrics_page: MetricsPage) -> WSGIApplication:
    """The WSGI application serving the exporter's endpoints.

    /metrics is served from ``metrics_page``, which negotiates the text format or OpenMetrics
    and gzip from the request headers and reuses what it rendered before.
    """
    landing_page = _LANDING_PAGE.format(version=html.escape(__version__)).encode()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            cache.refresh_stale(timeout=scrape_deadline(environ))
            return _serve_metrics(metrics_page, environ, start_response)
        if path == "/":
            return _respond(start_response, "200 OK", landing_page, "text/html; charset=utf-8")
        if path == "/-/healthy":
            return _respond(start_response, "200 OK", b"Healthy\n")
        if path == "/-/ready":
            if cache.is_ready():
                return _respond(start_response, "200 OK", b"Ready\n")
            return _respond(
                start_response,
                "503 Service Unavailable",
                b"Not ready: the first refresh of every account and region has not finished\n",
            )
        return _respond(start_response, "404 Not Found", b"Not found\n")

    return app


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


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """Serves each request on its own thread, so a slow scrape never blocks a probe."""

    daemon_threads = True


class _IPv6ThreadingWSGIServer(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _LoggingHandler(WSGIRequestHandler):
    """Logs requests through ``logging`` at debug level instead of to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:PORT`` for IPv6, ``:PORT`` for every interface).

    >>> parse_listen_address(":10071")
    ('', 10071)
    """
    host, separator, port_text = address.rpartition(":")
    if not separator or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT such as :10071 or 127.0.0.1:10071, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


class ExporterServer:
    """The HTTP server, running on a background thread until :meth:`stop`."""

    def __init__(self, address: str, app: Callable[..., Iterable[bytes]]) -> None:
        host, port = parse_listen_address(address)
        server_class = _IPv6ThreadingWSGIServer if ":" in host else _ThreadingWSGIServer
        self._server = make_server(
            host, port, app, server_class=server_class, handler_class=_LoggingHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving on the background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
