"""The HTTP server: a threading WSGI server with TLS, connection limits and request timeouts.

It serves the application of :mod:`exporter.web.routes` on a background thread; with a
web configuration, over TLS and behind basic authentication, as they stand at each
connection and request.
"""

from __future__ import annotations

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

from exporter.web.config import ssl_error_reason
from exporter.web.reload import ReloadingWebConfig
from exporter.web.routes import secure_app

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

# How long a client has to finish the TLS handshake it started.
TLS_HANDSHAKE_TIMEOUT_SECONDS = 10.0
# How long a client has to send its request line and headers, counted from the accepted
# connection (or the finished TLS handshake), however slowly the bytes trickle in.
DEFAULT_REQUEST_READ_TIMEOUT_SECONDS = 10.0
# Connections served at once (one thread each); more are refused until one ends.
DEFAULT_MAX_CONNECTIONS = 256
# Refusals are logged when they start, then summed up at most this often.
REFUSAL_LOG_INTERVAL_SECONDS = 60.0
_TOO_MANY_CONNECTIONS_BODY = b"Too many connections: try again later\n"
_TOO_MANY_CONNECTIONS = (
    b"HTTP/1.0 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_TOO_MANY_CONNECTIONS_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _TOO_MANY_CONNECTIONS_BODY
)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """Serves each request on its own thread, so a slow scrape never blocks a probe.

    With TLS in ``web_config``, each connection's TLS handshake also happens on its own
    thread, so a client that connects and sends nothing holds up no other. At most
    ``max_connections`` connections (threads) are served at once; the accepting thread
    answers the rest with a 503 (plain HTTP) or closes them (TLS) without starting a thread.
    """

    daemon_threads = True
    web_config: ReloadingWebConfig | None = None
    request_read_timeout_seconds = DEFAULT_REQUEST_READ_TIMEOUT_SECONDS
    # The kernel's queue of connections not yet accepted: Python's default of 5 overflows
    # when dozens of scrapers connect at once, and an overflow costs a client a SYN retry.
    request_queue_size = 128

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_connections(DEFAULT_MAX_CONNECTIONS)

    def limit_connections(self, max_connections: int) -> None:
        """Serve at most ``max_connections`` connections at once; call before serving."""
        self._connection_slots = threading.BoundedSemaphore(max_connections)
        self._max_connections = max_connections
        self._refused_unlogged = 0
        self._refusal_logged_at: float | None = None

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connection_slots.acquire(blocking=False):
            self._refuse(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started (none to be had): free its slot
            self._connection_slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connection_slots.release()

    def _refuse(self, request: Any, client_address: Any) -> None:
        """Turn a connection away on the accepting thread, without blocking it."""
        self._log_refusal(client_address[0])
        if not isinstance(request, ssl.SSLSocket):
            try:
                request.setblocking(False)
                # A few bytes fit the empty send buffer of a new connection. Reading what the
                # client sent already lets the close end with a FIN rather than a reset that
                # could destroy the 503 before the client reads it.
                request.send(_TOO_MANY_CONNECTIONS)
                request.recv(65536)
            except OSError:
                pass
        self.shutdown_request(request)

    def _log_refusal(self, client: str) -> None:
        """Log the first refusal, then a count at most every REFUSAL_LOG_INTERVAL_SECONDS.

        A flood of connections must not become a flood of log lines.
        """
        self._refused_unlogged += 1
        now = time.monotonic()
        logged_at = self._refusal_logged_at
        if logged_at is not None and now - logged_at < REFUSAL_LOG_INTERVAL_SECONDS:
            return
        log.warning(
            "refused %d connection(s)%s, the last from %s: %d are open, the most "
            "--web.max-connections allows",
            self._refused_unlogged,
            "" if logged_at is None else f" in the last {now - logged_at:.0f}s",
            client,
            self._max_connections,
        )
        self._refused_unlogged = 0
        self._refusal_logged_at = now

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, client_address = super().get_request()
        if self.web_config is None:
            return connection, client_address
        ssl_context = self.web_config.current().ssl_context
        if ssl_context is None:
            return connection, client_address
        secure = ssl_context.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        return secure, client_address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket) and not _handshake(request, client_address):
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exception()
        if isinstance(error, OSError):
            # A client that breaks the connection or its TLS is no fault of the exporter.
            log.debug("connection from %s ended: %s", client_address[0], _describe_error(error))
        else:
            log.error("error serving %s", client_address[0], exc_info=error)


def _handshake(connection: ssl.SSLSocket, client_address: Any) -> bool:
    """Complete the TLS handshake within the timeout; log why not, without secrets."""
    connection.settimeout(TLS_HANDSHAKE_TIMEOUT_SECONDS)
    try:
        connection.do_handshake()
    except (OSError, ValueError) as error:
        # A client that hangs up before speaking TLS (a TCP health check, a port scan) is
        # routine; anything else (wrong certificate, protocol, plain HTTP) is worth seeing.
        level = (
            logging.DEBUG if isinstance(error, ssl.SSLEOFError | ConnectionError) else logging.INFO
        )
        log.log(
            level, "TLS handshake with %s failed: %s", client_address[0], _describe_error(error)
        )
        return False
    connection.settimeout(None)
    return True


def _describe_error(error: BaseException | None) -> str:
    if isinstance(error, ssl.SSLError):
        return ssl_error_reason(error)
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


class _IPv6ThreadingWSGIServer(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _RequestReader(socket.SocketIO):
    """A connection's reading end that fails once ``deadline`` (time.monotonic) has passed.

    A timeout per read would let a client that trickles a byte at a time hold its thread
    forever; the deadline bounds the whole request line and headers. Setting ``deadline``
    to None reads without a time limit.
    """

    def __init__(self, connection: socket.socket, deadline: float | None) -> None:
        super().__init__(connection, "rb")
        self._connection = connection
        self.deadline = deadline

    def readinto(self, buffer: Any) -> int | None:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the request did not arrive in time")
            self._connection.settimeout(remaining)
        return super().readinto(buffer)


class _LoggingHandler(WSGIRequestHandler):
    """Logs requests through ``logging`` at debug level instead of to stderr.

    The request line and headers must arrive within the server's request read timeout.
    The response has no time limit: a live scraper that reads a large body slowly gets all
    of it.
    """

    server: _ThreadingWSGIServer

    def setup(self) -> None:
        super().setup()
        timeout = self.server.request_read_timeout_seconds
        self._request_reader = _RequestReader(self.connection, time.monotonic() + timeout)
        self.rfile.close()  # the reader socketserver made; its socket stays open
        self.rfile = io.BufferedReader(self._request_reader)

    def handle(self) -> None:
        try:
            super().handle()
        except TimeoutError:
            if self._request_reader.deadline is None:
                raise
            log.debug(
                "closing the connection from %s: no complete request within %gs",
                self.client_address[0],
                self.server.request_read_timeout_seconds,
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
    """The HTTP server, running on a background thread until :meth:`stop`.

    ``web_config`` adds TLS, basic authentication (of every path) and response headers, as
    they stand at each connection and request. At most ``max_connections`` connections are
    served at once, each on its own thread; a client must send its request line and headers
    within ``request_read_timeout_seconds`` of connecting (or of its TLS handshake).
    """

    def __init__(
        self,
        address: str,
        app: WSGIApplication,
        web_config: ReloadingWebConfig | None = None,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        request_read_timeout_seconds: float = DEFAULT_REQUEST_READ_TIMEOUT_SECONDS,
    ) -> None:
        host, port = parse_listen_address(address)
        if web_config is not None:
            app = secure_app(app, web_config)
        server_class = _IPv6ThreadingWSGIServer if ":" in host else _ThreadingWSGIServer
        self._server = make_server(
            host, port, app, server_class=server_class, handler_class=_LoggingHandler
        )
        self._server.web_config = web_config
        self._server.limit_connections(max_connections)
        self._server.request_read_timeout_seconds = request_read_timeout_seconds
        tls_at_start = web_config is not None and web_config.current().ssl_context is not None
        self.scheme = "https" if tls_at_start else "http"
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
