"""Idle and slow connections cost no worker: a flood of them keeps no scrape out.

Raw sockets on 127.0.0.1 play the idle clients; the scrape is a real HTTP client against
the exporter's own process. Counts and times are bounded: a thousand connections, a scrape
answered within 2 s.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.web.server import ExporterServer
from tests.polling import wait_until
from tests.processes import free_port, start_exporter, still_open, stop_with_sigterm, wait_for
from tests.sagemaker_server import SageMakerTestServer
from tests.test_server_limits import connect, hello, read_until_closed

IDLE_CONNECTIONS = 1000
HALF_REQUEST_LINE = b"GET /metr"
SCRAPE_WITHIN_SECONDS = 2.0


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections to ``port``; every third has sent half a request line."""
    opened: list[socket.socket] = []
    try:
        for index in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            if index % 3 == 0:
                sock.sendall(HALF_REQUEST_LINE)
            opened.append(sock)
        yield opened
    finally:
        for sock in opened:
            sock.close()


def timed_scrape(port: int) -> tuple[float, int, bytes, int]:
    """Seconds, status, body and announced length of one GET /metrics on a new connection."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    return (
        time.monotonic() - started,
        response.status,
        body,
        int(response.getheader("Content-Length") or -1),
    )


def test_a_thousand_idle_connections_keep_no_scrape_out(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    sagemaker.add_job("eu-west-1", "flooded-job")
    config = tmp_path / "config.yaml"
    config.write_text(f"regions: [eu-west-1]\naws:\n  endpoint_url: {sagemaker.url}\n")
    port = free_port()
    # The default --web.max-connections (256) is far below the connections held open.
    process = start_exporter("--config.file", str(config), port=port)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/-/ready", timeout=60)
        with idle_connections(port, IDLE_CONNECTIONS) as idle:
            # The 1,001st connection: a scrape, answered whole.
            seconds, status, body, length = timed_scrape(port)
            again_seconds, again_status, _, _ = timed_scrape(port)
            open_after = sum(still_open(sock) for sock in idle)
    finally:
        stderr = stop_with_sigterm(process)

    assert (status, again_status) == (200, 200)
    assert len(body) == length and b'job_name="flooded-job"' in body
    assert seconds < SCRAPE_WITHIN_SECONDS and again_seconds < SCRAPE_WITHIN_SECONDS
    # None was closed to make room: the idle connections all wait, at no worker's cost.
    assert open_after == IDLE_CONNECTIONS
    assert "Traceback" not in stderr


def test_past_the_waiting_limit_the_longest_waiting_connection_makes_room(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    server = ExporterServer("127.0.0.1:0", hello, max_waiting_connections=10)
    server.start()
    try:
        waiting = [connect(server) for _ in range(10)]
        wait_until(
            lambda: server.front_door.waiting == 10,
            timeout=10,
            interval=0.01,
            message="ten connections waiting",
        )
        newest = connect(server)
        # The oldest is closed to take the new one in, and nothing else.
        assert read_until_closed(waiting[0]) == b""
        wait_until(
            lambda: server.front_door.waiting == 10,
            timeout=10,
            interval=0.01,
            message="the new connection waiting in the oldest one's place",
        )
        assert all(still_open(sock) for sock in waiting[1:])
        newest.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_until_closed(newest).endswith(b"hello\n")
        for sock in [*waiting, newest]:
            sock.close()
    finally:
        server.stop()

    assert "closed 1 connection(s) that sent no request, the last from 127.0.0.1" in caplog.text


def test_stopping_the_server_closes_the_waiting_connections() -> None:
    server = ExporterServer("127.0.0.1:0", hello)
    server.start()
    with connect(server) as waiting:
        wait_until(
            lambda: server.front_door.waiting == 1,
            timeout=10,
            interval=0.01,
            message="the connection waiting",
        )
        server.stop()

        assert read_until_closed(waiting) == b""
