"""Helpers for tests that run the exporter as a real process on 127.0.0.1."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Mapping

from tests.conftest import ROOT
from tests.polling import eventually


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_exporter(
    *args: str, port: int, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """``python -m exporter ARGS`` listening on 127.0.0.1:``port``; stderr is captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", *args, "--web.listen-address", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else dict(env),
    )


def stop_with_sigterm(process: subprocess.Popen[str]) -> str:
    """Send SIGTERM, wait for the exit, and return what the process wrote to stderr."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    return stderr


def wait_for(
    url: str,
    timeout: float,
    *,
    context: ssl.SSLContext | None = None,
    headers: Mapping[str, str] | None = None,
) -> bool:
    """Poll ``url`` until it answers 200; False if it has not within ``timeout`` seconds.

    ``context`` is the TLS client context for an https URL; ``headers`` go with each request.
    """
    request = urllib.request.Request(url, headers=dict(headers or {}))

    def answers_200() -> bool:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return bool(response.status == 200)

    return eventually(answers_200, timeout=timeout, interval=0.1, ignoring=(OSError,))


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed nor answered the connection."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
    return False
