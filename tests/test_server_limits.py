"""The HTTP server's limits, at the wire on 127.0.0.1: request read timeout and connection cap.

Raw sockets play the clients that send nothing, trickle their headers or read slowly.
Time bounds are generous: each only has to separate "closed by the timeout" from "held
forever" on a loaded machine.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from exporter.app import Exporter
from exporter.config.settings import ExporterConfig
from exporter.web.reload import ReloadingWebConfig
from exporter.web.server import ExporterServer
from tests.apps import create_app
from tests.polling import wait_until
from tests.processes import free_port, start_exporter, stop_with_sigterm, wait_for
from tests.sagemaker_server import SageMakerTestServer
from tests.test_server_security import PASSWORD, PASSWORD_HASH, basic, tls_config
from tests.tls_material import TlsMaterial

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# Far beyond any timeout under test: a connection still open this long is held forever.
HELD_FOREVER_SECONDS = 30.0
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
LARGE_BODY = b"0123456789abcdef" * (1 << 20)  # 16 MiB: more than the socket buffers hold


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI app answering every request with a short 200."""
    body = b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def large(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI app answering every request with LARGE_BODY."""
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(LARGE_BODY)))]
    )
    return [LARGE_BODY]


@pytest.fixture
def serve() -> Iterator[Callable[..., ExporterServer]]:
    """Start an ExporterServer on 127.0.0.1 with the given app and limits; stopped afterwards."""
    started: list[ExporterServer] = []

    def start(
        app: WSGIApplication = hello,
        web_config: ReloadingWebConfig | None = None,
        **limits: float,
    ) -> ExporterServer:
        server = ExporterServer("127.0.0.1:0", app, web_config, **limits)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def connect(server: ExporterServer, receive_buffer: int | None = None) -> socket.socket:
    """A raw TCP connection to ``server``, reads timing out only after HELD_FOREVER_SECONDS."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        # Set before connecting, so the advertised window stays this small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(HELD_FOREVER_SECONDS)
    sock.connect(("127.0.0.1", server.port))
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = []
    try:
        while chunk := sock.recv(65536):
            received.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(received)


def plain_get(server: ExporterServer, path: str = "/metrics") -> int:
    """The status of a GET over a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.slow  # waits out the server's timeouts
def test_a_connection_that_sends_nothing_is_closed_after_the_read_timeout(
    serve: Callable[..., ExporterServer],
) -> None:
    server = serve(request_read_timeout_seconds=1.0)

    with connect(server) as idle:
        started = time.monotonic()
        received = read_until_closed(idle)
        elapsed = time.monotonic() - started

    assert received == b""
    assert elapsed < HELD_FOREVER_SECONDS - 5
    assert plain_get(server) == 200


@pytest.mark.slow  # waits out the server's timeouts
def test_headers_trickled_past_the_read_timeout_lose_the_connection(
    serve: Callable[..., ExporterServer],
) -> None:
    # Each byte comes well within the timeout: only a deadline for the whole request ends it.
    server = serve(request_read_timeout_seconds=1.5)
    header = b"X-Padding: " + b"a" * 1000
    closed = False

    with connect(server) as slow:
        slow.sendall(b"GET /metrics HTTP/1.1\r\n")
        started = time.monotonic()
        for byte in header:
            try:
                slow.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            slow.settimeout(0.2)
            try:
                if slow.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed = True
                break
            if time.monotonic() - started > HELD_FOREVER_SECONDS:
                break

    assert closed, "the server still read the trickled headers after the timeout"


@pytest.mark.slow  # waits out the server's timeouts
def test_a_request_sent_in_pieces_within_the_timeout_is_served(
    serve: Callable[..., ExporterServer],
) -> None:
    server = serve(request_read_timeout_seconds=10.0)

    with connect(server) as client:
        for piece in (b"GET /metrics HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
            client.sendall(piece)
            time.sleep(0.3)
        response = read_until_closed(client)

    assert response.startswith(b"HTTP/1.0 200 OK\r\n")
    assert response.endswith(b"\r\n\r\nhello\n")


@pytest.mark.slow  # waits out the server's timeouts
def test_a_large_response_to_a_slow_reader_is_sent_whole_past_the_read_timeout(
    serve: Callable[..., ExporterServer],
) -> None:
    server = serve(large, request_read_timeout_seconds=0.5)

    with connect(server, receive_buffer=4096) as slow:
        slow.sendall(REQUEST)
        # The server fills the buffers and waits on this reader for far longer than the
        # read timeout; the timeout must not apply to sending.
        time.sleep(2.0)
        response = read_until_closed(slow)

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK")
    assert len(body) == len(LARGE_BODY)
    assert body == LARGE_BODY


class Gate:
    """A WSGI app whose requests wait until the gate opens, to hold requests in service."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self._entered = threading.Semaphore(0)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self._entered.release()
        self.opened.wait(HELD_FOREVER_SECONDS)
        return hello(environ, start_response)

    def wait_entered(self, count: int) -> None:
        """Wait until ``count`` more requests are in service."""
        for _ in range(count):
            assert self._entered.acquire(timeout=HELD_FOREVER_SECONDS), "no request came in"


def send_request(server: ExporterServer) -> socket.socket:
    """A connection that has sent a whole request; its answer is still to be read."""
    sock = connect(server)
    sock.sendall(REQUEST)
    return sock


def test_requests_past_the_limit_are_answered_503_until_one_ends(
    serve: Callable[..., ExporterServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    gate = Gate()
    server = serve(gate, max_connections=2, request_read_timeout_seconds=HELD_FOREVER_SECONDS)
    held = [send_request(server), send_request(server)]
    try:
        gate.wait_entered(2)
        with send_request(server) as excess:
            refused = read_until_closed(excess)

        assert refused.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
        assert refused.endswith(b"Too many requests in progress: try again later\n")
        assert "refused 1 request(s), the last from 127.0.0.1: 2 are being served" in caplog.text
        gate.opened.set()
        # The held requests are answered, and end, freeing their slots for the next.
        assert all(read_until_closed(sock).endswith(b"hello\n") for sock in held)
        wait_until(
            lambda: plain_get(server) == 200,
            timeout=15,
            interval=0.05,
            message="a scrape to be served once the held requests have ended",
        )
    finally:
        gate.opened.set()
        for sock in held:
            sock.close()


def test_idle_connections_hold_no_slot_of_the_limit(
    serve: Callable[..., ExporterServer],
) -> None:
    server = serve(max_connections=1, request_read_timeout_seconds=HELD_FOREVER_SECONDS)
    idle = [connect(server) for _ in range(5)]
    try:
        idle[0].sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half a head
        assert plain_get(server) == 200
        assert plain_get(server) == 200
        assert server.front_door.waiting == 5
    finally:
        for sock in idle:
            sock.close()


def test_refused_requests_start_no_threads_and_log_once(
    serve: Callable[..., ExporterServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    gate = Gate()
    server = serve(gate, max_connections=2, request_read_timeout_seconds=HELD_FOREVER_SECONDS)
    held = [send_request(server), send_request(server)]
    try:
        gate.wait_entered(2)
        threads_before = threading.active_count()
        excess = [send_request(server) for _ in range(30)]
        try:
            assert all(read_until_closed(sock).startswith(b"HTTP/1.0 503") for sock in excess)
            assert threading.active_count() <= threads_before
            # The first refusal is logged; the next 29 wait for the interval to be summed up.
            assert caplog.text.count("refused") == 1
        finally:
            for sock in excess:
                sock.close()
    finally:
        gate.opened.set()
        for sock in held:
            sock.close()


@pytest.mark.slow  # waits out the server's timeouts
def test_tls_and_basic_auth_work_within_the_limits_and_idle_tls_connections_are_closed(
    serve: Callable[..., ExporterServer], tls_material: TlsMaterial, tmp_path: Path
) -> None:
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        tls_config(tls_material) + f"basic_auth_users:\n  prometheus: {PASSWORD_HASH}\n"
    )
    gate = Gate()
    gate.opened.set()
    server = serve(
        gate, ReloadingWebConfig(web_config), max_connections=1, request_read_timeout_seconds=2.0
    )
    context = tls_material.client_context()
    authorized = basic("prometheus", PASSWORD)

    def get(headers: dict[str, str]) -> tuple[int, bytes]:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", server.port, timeout=10, context=context
        )
        try:
            connection.request("GET", "/metrics", headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    assert get({})[0] == 401
    assert get(authorized)[0] == 200
    # Connections idle after their handshake hold no slot, and lose the connection later.
    idle = [context.wrap_socket(connect(server), server_hostname="127.0.0.1") for _ in range(3)]
    try:
        started = time.monotonic()
        assert get(authorized)[0] == 200
        for sock in idle:
            # A reset or a TLS EOF without close_notify is as closed as a clean close.
            with contextlib.suppress(ConnectionResetError, ssl.SSLEOFError):
                assert sock.recv(65536) == b""
        assert time.monotonic() - started < HELD_FOREVER_SECONDS - 5
    finally:
        for sock in idle:
            sock.close()
    # Past the limit, a TLS client is answered 503 over TLS.
    gate.opened.clear()
    holder = threading.Thread(target=get, args=(authorized,), daemon=True)
    holder.start()
    try:
        gate.wait_entered(3)  # the two authorized GETs above, and the one held now
        status, body = get(authorized)
        assert (status, body) == (503, b"Too many requests in progress: try again later\n")
    finally:
        gate.opened.set()
        holder.join(HELD_FOREVER_SECONDS)
    assert get(authorized)[0] == 200


def test_the_exporter_serves_scrapes_with_limits_in_place(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> None:
    sagemaker.add_job("eu-west-1", "limited-job")
    exporter = Exporter(make_config(regions=("eu-west-1",)))
    server = ExporterServer(
        "127.0.0.1:0",
        create_app(exporter.cache, exporter.metrics_page),
        max_connections=4,
        request_read_timeout_seconds=1.0,
    )
    server.start()
    try:
        with connect(server), connect(server):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            connection.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
            response = connection.getresponse()
            body = response.read()
            connection.close()
    finally:
        server.stop()
        exporter.cache.wait_idle(timeout=30)

    assert response.status == 200
    assert response.getheader("Content-Encoding") == "gzip"
    assert len(body) == int(response.getheader("Content-Length") or 0)


def test_the_max_connections_flag_refuses_past_its_limit(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"regions: [eu-west-1]\naws:\n  endpoint_url: {sagemaker.url}\n")
    port = free_port()
    process = start_exporter("--config.file", str(config), "--web.max-connections", "1", port=port)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/-/ready", timeout=60)

        def answer_while_held() -> bytes | None:
            # A new held request each try: one whose head was still arriving when the excess
            # request took the slot was itself answered 503, and holds nothing.
            with (
                hold_a_request(port),
                socket.create_connection(("127.0.0.1", port), timeout=30) as excess,
            ):
                excess.sendall(REQUEST)
                answer = read_until_closed(excess)
            # Served: the held request had not reached its worker yet.
            return None if answer.startswith(b"HTTP/1.0 200") else answer

        refused = wait_until(
            answer_while_held,
            timeout=HELD_FOREVER_SECONDS,
            interval=0.05,
            message="an answer other than 200 while a request holds the only slot",
        )
        assert refused.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
        assert wait_for(f"http://127.0.0.1:{port}/metrics", timeout=30)
    finally:
        stderr = stop_with_sigterm(process)
    assert "refused 1 request(s), the last from 127.0.0.1: 1 are being served" in stderr
    assert "Traceback" not in stderr


@contextlib.contextmanager
def hold_a_request(port: int) -> Iterator[socket.socket]:
    """A request in service until the block ends: a head too long to wait for, left unfinished.

    Past 64 KiB without its end, a head goes to a worker, which reads the rest until the
    read timeout (10 s): a slot held, with no end of the head ever sent.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=30) as held:
        held.sendall(
            b"GET /metrics HTTP/1.1\r\nX-First: " + b"a" * 60_000 + b"\r\nX-Second: " + b"b" * 8000
        )
        yield held


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_max_connections_flag_below_one_exits_2_naming_the_flag(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--web.max-connections", value, "--check-config"])

    assert exited.value.code == 2
    assert "--web.max-connections: expected a whole number of 1 or more" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % n for n in range(101)) + b"\r\n",
            b"431",
        ),
        (b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"404"),
    ],
    ids=["request-line-too-long", "header-line-too-long", "too-many-headers", "unknown-path"],
)
def test_requests_past_the_parsers_limits_are_answered_as_before(
    serve: Callable[..., ExporterServer], request_bytes: bytes, status: bytes
) -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] != "/":
            start_response("404 Not Found", [("Content-Length", "0")])
            return []
        return hello(environ, start_response)

    server = serve(app, request_read_timeout_seconds=HELD_FOREVER_SECONDS)

    with connect(server) as client:
        started = time.monotonic()
        client.sendall(request_bytes)
        answer = read_until_closed(client)

    assert answer.split(b" ", 2)[1] == status
    # Answered at once: a head past the front door's buffer is not held until the timeout.
    assert time.monotonic() - started < HELD_FOREVER_SECONDS / 3
