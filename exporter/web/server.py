"""The HTTP server: a WSGI server with TLS, request limits and timeouts, and a front door.

It serves the application of :mod:`exporter.web.routes` on background threads; with a
web configuration, over TLS and behind basic authentication, as they stand at each
connection and request. Connections wait for their request in the front door
(:mod:`exporter.web.front_door`), one thread for all of them; each request that arrives is
served on a thread of its own.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import ssl
import sys
import threading
import time
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from exporter.web.front_door import (
    ArrivedRequest,
    FrontDoor,
    SummedOccurrences,
    describe_error,
)
from exporter.web.reload import ReloadingWebConfig
from exporter.web.routes import secure_app

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

# How long a client has to send its request line and headers, counted from the accepted
# connection (or the finished TLS handshake), however slowly the bytes trickle in.
DEFAULT_REQUEST_READ_TIMEOUT_SECONDS = 10.0
# Requests served at once (one thread each); more are answered 503 until one ends.
DEFAULT_MAX_CONNECTIONS = 256
# Refusals are logged when they start, then summed up at most this often.
REFUSAL_LOG_INTERVAL_SECONDS = 60.0
_TOO_MANY_REQUESTS_BODY = b"Too many requests in progress: try again later\n"
_TOO_MANY_REQUESTS = (
    b"HTTP/1.0 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_TOO_MANY_REQUESTS_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _TOO_MANY_REQUESTS_BODY
)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """Serves each arrived request on its own thread, so a slow scrape never blocks a probe.

    Requests come from the front door (:meth:`process_request` with an ArrivedRequest), TLS
    handshake done and head read. At most ``max_connections`` requests are served at once;
    the front door's thread answers the rest with a 503 without starting a thread.
    """

    daemon_threads = True
    # The kernel's queue of connections not yet accepted: Python's default of 5 overflows
    # when many clients connect at once, and an overflow costs a client a SYN retry.
    request_queue_size = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_requests(DEFAULT_MAX_CONNECTIONS)

    def limit_requests(self, max_requests: int) -> None:
        """Serve at most ``max_requests`` requests at once; call before serving."""
        self._request_slots = threading.BoundedSemaphore(max_requests)
        self._max_requests = max_requests
        self._refusals = SummedOccurrences(REFUSAL_LOG_INTERVAL_SECONDS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._request_slots.acquire(blocking=False):
            self._refuse(request, client_address)
            return
        request.connection.setblocking(True)
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started (none to be had): free its slot
            self._request_slots.release()
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._request_slots.release()

    def shutdown_request(self, request: Any) -> None:
        if isinstance(request, ArrivedRequest):
            request = request.connection
        super().shutdown_request(request)

    def _refuse(self, request: ArrivedRequest, client_address: Any) -> None:
        """Answer a request 503 on the front door's thread, without blocking it."""
        self._log_refusal(client_address[0])
        # A few bytes fit the empty send buffer of a new connection (TLS or not).
        with contextlib.suppress(OSError, ValueError):
            request.connection.send(_TOO_MANY_REQUESTS)
        self.shutdown_request(request)

    def _log_refusal(self, client: str) -> None:
        """Log the first refusal, then a count at most every REFUSAL_LOG_INTERVAL_SECONDS.

        A flood of requests must not become a flood of log lines.
        """
        summed = self._refusals.happened()
        if summed is not None:
            count, since = summed
            log.warning(
                "refused %d request(s)%s, the last from %s: %d are being served, the most "
                "--web.max-connections allows",
                count,
                since,
                client,
                self._max_requests,
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exception()
        if isinstance(error, OSError):
            # A client that breaks the connection or its TLS is no fault of the exporter.
            log.debug("connection from %s ended: %s", client_address[0], describe_error(error))
        else:
            log.error("error serving %s", client_address[0], exc_info=error)


class _IPv6ThreadingWSGIServer(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _RequestReader(socket.SocketIO):
    """A connection's reading end: ``head`` first, then the socket, until ``deadline`` passes.

    ``head`` is what the front door read already. A timeout per read would let a client that
    trickles a byte at a time hold its thread forever; the deadline (time.monotonic) bounds
    the whole request line and headers. Setting ``deadline`` to None reads without a time
    limit.
    """

    def __init__(self, connection: socket.socket, head: bytes, deadline: float | None) -> None:
        super().__init__(connection, "rb")
        self._connection = connection
        self._head = memoryview(head)
        self.deadline = deadline

    def readinto(self, buffer: Any) -> int | None:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the request did not arrive in time")
            self._connection.settimeout(remaining)
        return super().readinto(buffer)


class _LoggingHandler(WSGIRequestHandler):
    """Logs requests through ``logging`` at debug level instead of to stderr.

    It serves an ArrivedRequest: the front door read its head already, and the rest of the
    request line and headers (if any) must arrive within the same deadline. The response
    has no time limit: a live scraper that reads a large body slowly gets all of it.
    """

    server: _ThreadingWSGIServer

    def setup(self) -> None:
        arrived: ArrivedRequest = self.request
        self.request = arrived.connection
        super().setup()
        self._request_reader = _RequestReader(self.connection, arrived.head, arrived.deadline)
        self.rfile.close()  # the reader socketserver made; its socket stays open
        self.rfile = io.BufferedReader(self._request_reader)

    def handle(self) -> None:
        try:
            super().handle()
        except TimeoutError:
            if self._request_reader.deadline is None:
                raise
            log.debug(
                "closing the connection from %s: no complete request in time",
                self.client_address[0],
            )

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        # The request is in: sending the response (and reading a body) has no time limit.
        self._request_reader.deadline = None
        self.connection.settimeout(None)
        return parsed

    def get_environ(self) -> WSGIEnvironment:
        environ = super().get_environ()
        if isinstance(self.connection, ssl.SSLSocket):
            environ["HTTPS"] = "on"  # wsgi.url_scheme becomes https
        return environ

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


def listens_on_every_interface(address: str) -> bool:
    """Whether the listen address ``HOST:PORT`` binds every interface rather than one.

    >>> [listens_on_every_interface(a) for a in (":10071", "[::]:1", "127.0.0.1:10071")]
    [True, True, False]
    """
    host, _ = parse_listen_address(address)
    return host in ("", "0.0.0.0", "::")  # noqa: S104 - recognising it, not binding it


class ExporterServer:
    """The HTTP server, running on background threads until :meth:`stop`.

    ``web_config`` adds TLS, basic authentication (of every path) and response headers, as
    they stand at each connection and request. A connection waits in the front door, which
    costs no thread, until its request line and headers have arrived, within
    ``request_read_timeout_seconds`` of connecting (or of its TLS handshake). At most
    ``max_connections`` requests are then served at once, each on its own thread.
    """

    def __init__(
        self,
        address: str,
        app: WSGIApplication,
        web_config: ReloadingWebConfig | None = None,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        request_read_timeout_seconds: float = DEFAULT_REQUEST_READ_TIMEOUT_SECONDS,
        max_waiting_connections: int | None = None,
    ) -> None:
        host, port = parse_listen_address(address)
        if web_config is not None:
            app = secure_app(app, web_config)
        server_class = _IPv6ThreadingWSGIServer if ":" in host else _ThreadingWSGIServer
        self._server = make_server(
            host, port, app, server_class=server_class, handler_class=_LoggingHandler
        )
        self._server.limit_requests(max_connections)

        def tls_context() -> ssl.SSLContext | None:
            return None if web_config is None else web_config.current().ssl_context

        self.front_door = FrontDoor(
            self._server.socket,
            lambda arrived: self._server.process_request(arrived, arrived.address),
            tls_context=tls_context,
            request_read_timeout_seconds=request_read_timeout_seconds,
            max_waiting=max_waiting_connections,
        )
        self.scheme = "https" if tls_context() is not None else "http"
        self._thread = threading.Thread(target=self.front_door.serve, name="http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving on the background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting connections, close the waiting ones and the socket.

        Requests already being served finish on their own threads.
        """
        self.front_door.stop()
        if self._thread.is_alive():
            self._thread.join()
        elif self._thread.ident is None:  # never started
            self.front_door.close()
        self._server.server_close()
