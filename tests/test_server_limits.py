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


def test_connections_past_the_limit_are_refused_with_503_until_one_ends(
    serve: Callable[..., ExporterServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    server = serve(max_connections=2, request_read_timeout_seconds=HELD_FOREVER_SECONDS)
    first, second = connect(server), connect(server)
    try:
        with connect(server) as excess:
            excess.sendall(REQUEST)
            refused = read_until_closed(excess)

        assert refused.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
        assert refused.endswith(b"Too many connections: try again later\n")
        assert "refused 1 connection(s), the last from 127.0.0.1: 2 are open" in caplog.text
    finally:
        first.close()
    try:
        # The closed connection frees its slot; the next scrape is served.
        wait_until(
            lambda: plain_get(server) == 200,
            timeout=15,
            interval=0.05,
            message="a scrape to be served once a connection has closed",
        )
    finally:
        second.close()


def test_a_scrape_within_the_limit_is_served_while_other_connections_idle(
    serve: Callable[..., ExporterServer],
) -> None:
    server = serve(max_connections=3, request_read_timeout_seconds=HELD_FOREVER_SECONDS)

    with connect(server), connect(server):
        assert plain_get(server) == 200


def test_refused_connections_start_no_threads_and_log_once(
    serve: Callable[..., ExporterServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    server = serve(max_connections=2, request_read_timeout_seconds=HELD_FOREVER_SECONDS)
    held = [connect(server), connect(server)]
    try:
        # Both are accepted (in order, before any later one) once a slot is known to be gone.
        with connect(server) as probe:
            probe.sendall(REQUEST)
            assert read_until_closed(probe).startswith(b"HTTP/1.0 503")
        threads_before = threading.active_count()
        excess = [connect(server) for _ in range(30)]
        try:
            # Idle, they would each hold a thread until the 30 s read timeout.
            assert all(read_until_closed(sock).startswith(b"HTTP/1.0 503") for sock in excess)
            assert threading.active_count() <= threads_before + 2
            # The first refusal is logged; the next 30 wait for the interval to be summed up.
            assert caplog.text.count("refused") == 1
        finally:
            for sock in excess:
                sock.close()
    finally:
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
    server = serve(
        hello,
        ReloadingWebConfig(web_config),
        max_connections=2,
        request_read_timeout_seconds=5.0,
    )
    context = tls_material.client_context()

    def get(headers: dict[str, str]) -> int:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", server.port, timeout=10, context=context
        )
        try:
            connection.request("GET", "/metrics", headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def hold() -> ssl.SSLSocket:
        """A connection idle after its handshake; the handshake shows it holds a slot."""

        def handshake() -> ssl.SSLSocket | None:
            raw = connect(server)
            try:
                return context.wrap_socket(raw, server_hostname="127.0.0.1")
            except (ssl.SSLError, ConnectionError):
                # Refused: an earlier connection's thread has not freed its slot yet.
                raw.close()
                return None

        return wait_until(
            handshake,
            timeout=HELD_FOREVER_SECONDS,
            interval=0.05,
            message="a TLS connection to hold a slot",
        )

    assert get({}) == 401
    assert get(basic("prometheus", PASSWORD)) == 200
    held = [hold(), hold()]
    try:
        # Past the limit a TLS client is closed before its handshake: no 503 can reach it.
        with pytest.raises((ssl.SSLError, ConnectionError)), connect(server) as raw:
            context.wrap_socket(raw, server_hostname="127.0.0.1")
        # Clients that finish the handshake and then send nothing lose the connection.
        started = time.monotonic()
        for idle in held:
            # A reset or a TLS EOF without close_notify is as closed as a clean close.
            with contextlib.suppress(ConnectionResetError, ssl.SSLEOFError):
                assert idle.recv(65536) == b""
        assert time.monotonic() - started < HELD_FOREVER_SECONDS - 5
    finally:
        for idle in held:
            idle.close()
    wait_until(
        lambda: get(basic("prometheus", PASSWORD)) == 200,
        timeout=15,
        interval=0.05,
        message="a scrape to be served once the idle TLS connections are closed",
    )


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
        refused = answer_past_a_held_connection(port)
        assert refused.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
        assert wait_for(f"http://127.0.0.1:{port}/metrics", timeout=30)
    finally:
        stderr = stop_with_sigterm(process)
    assert "refused 1 connection(s), the last from 127.0.0.1: 1 are open" in stderr
    assert "Traceback" not in stderr


def answer_past_a_held_connection(port: int) -> bytes:
    """What a request gets while an idle connection holds the only slot.

    The idle connection is tried again until it holds the slot, which an earlier client's
    thread may not have freed yet: refused, it would have been answered at once.
    """

    def answer_while_held() -> bytes | None:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as held,
            socket.create_connection(("127.0.0.1", port), timeout=30) as excess,
        ):
            excess.sendall(REQUEST)
            answer = read_until_closed(excess)
            held.setblocking(False)
            try:
                held.recv(1)
            except BlockingIOError:  # nothing sent to it, not closed: it held the slot
                return answer
        return None

    return wait_until(
        answer_while_held,
        timeout=HELD_FOREVER_SECONDS,
        interval=0.05,
        message="an answer to a request while an idle connection holds the slot",
    )


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_max_connections_flag_below_one_exits_2_naming_the_flag(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--web.max-connections", value, "--check-config"])

    assert exited.value.code == 2
    assert "--web.max-connections: expected a whole number of 1 or more" in capsys.readouterr().err
