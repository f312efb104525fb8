"""Real HTTP clients, run as a person runs them, and what each shows of a response.

A gzip body may be several gzip members one after another. Prometheus (Go) reads them all;
``curl --compressed`` stops after the first and exits 23, Chromium shows the first only, and
Python's ``zlib.decompressobj`` stops at the first member's end. These helpers run the real
programs: curl (Debian package ``curl``) and Chromium's headless shell (Debian package
``chromium-headless-shell``), both installed by .ci/run.

A test that needs a missing program fails, with or without ``CI``, unlike those of
tests/prometheus.py, which skip outside CI: a skipped test here would leave a response
format proven with fewer readers than it claims, and nobody would notice.
"""

from __future__ import annotations

import html
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
import zlib
from dataclasses import dataclass

import pytest

CURL = "curl"
CHROMIUM = "chromium-headless-shell"
# zlib's window bits for a stream with a gzip header and trailer (and no other).
GZIP_WBITS = 16 + zlib.MAX_WBITS
CLIENT_TIMEOUT_SECONDS = 120

# What Chromium makes of a text/plain document: the text, HTML-escaped, in one <pre>.
_TEXT_DOCUMENT = re.compile(
    r"<html><head>(?:<[^>]*>)*</head><body><pre[^>]*>(?P<text>.*)</pre></body></html>\n?",
    re.DOTALL,
)


def require_client(binary: str, package: str) -> str:
    """The path of ``binary``; fails the test when it is missing, never skips it."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed (Debian package '{package}'; .ci/run installs it)")
    return path


@dataclass(frozen=True)
class CurlResult:
    """How curl ended, and what it printed: the body, and its error messages."""

    exit_code: int
    body: bytes
    stderr: str


def curl(url: str, *, compressed: bool = False) -> CurlResult:
    """``url`` as ``curl --silent --show-error URL`` prints it, with ``--compressed`` if asked.

    With ``--compressed`` curl asks for gzip (among others) and decompresses what it gets;
    without, it sends no Accept-Encoding and prints the body as it arrives.
    """
    command = [require_client(CURL, "curl"), "--silent", "--show-error"]
    if compressed:
        command.append("--compressed")
    finished = subprocess.run(
        [*command, url], capture_output=True, timeout=CLIENT_TIMEOUT_SECONDS, check=False
    )
    return CurlResult(
        finished.returncode, finished.stdout, finished.stderr.decode(errors="replace")
    )


def curl_compressed(url: str) -> CurlResult:
    """``url`` as ``curl --silent --show-error --compressed URL`` prints it."""
    return curl(url, compressed=True)


def curl_plain(url: str) -> CurlResult:
    """``url`` as ``curl --silent --show-error URL`` prints it: no Accept-Encoding sent."""
    return curl(url)


def chromium_text(url: str) -> str:
    """The text a person sees of the text/plain document at ``url`` in Chromium.

    Chromium asks for gzip by itself (``Accept-Encoding: gzip, deflate, br, zstd``). Its
    ``--dump-dom`` prints the document it built, which for plain text is the text,
    HTML-escaped, inside one ``<pre>``, and a newline after ``</html>`` of its own; the text
    inside ``<pre>`` is the body's to the character, its last newline included.
    ``--no-sandbox``: Chromium refuses to run as root with its sandbox, and a container has
    none to give it. ``--disable-dev-shm-usage``: a container's /dev/shm may be 64 MB.
    """
    binary = require_client(CHROMIUM, CHROMIUM)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        finished = subprocess.run(
            [
                binary,
                "--no-sandbox",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            timeout=CLIENT_TIMEOUT_SECONDS,
            check=False,
        )
    stderr = finished.stderr.decode(errors="replace")
    if finished.returncode != 0:
        pytest.fail(f"{CHROMIUM} exited {finished.returncode} on {url}: {stderr[-2000:]}")
    dump = finished.stdout.decode()
    document = _TEXT_DOCUMENT.fullmatch(dump)
    if document is None or dump.count("<pre") != 1:
        pytest.fail(f"{CHROMIUM} showed no text document for {url}: {dump[:500]!r}")
    return html.unescape(document["text"])


@dataclass(frozen=True)
class FirstGzipMember:
    """What a reader that stops after one gzip member gets of a body.

    ``ended`` is whether that member was whole (its trailer read); ``unused_data`` is what
    follows it, which such a reader never looks at: further members, when not empty.
    """

    text: bytes
    ended: bool
    unused_data: bytes

    def __repr__(self) -> str:
        return (
            f"FirstGzipMember(text=<{len(self.text)} bytes>, ended={self.ended}, "
            f"unused_data=<{len(self.unused_data)} bytes>)"
        )

    @property
    def is_whole_body(self) -> bool:
        """Whether the body is this one member and nothing else."""
        return self.ended and not self.unused_data


def read_first_gzip_member(body: bytes) -> FirstGzipMember:
    """``body`` read as ``zlib.decompressobj(16 + zlib.MAX_WBITS)`` reads it: one member."""
    decompressor = zlib.decompressobj(GZIP_WBITS)
    text = decompressor.decompress(body) + decompressor.flush()
    return FirstGzipMember(text, decompressor.eof, decompressor.unused_data)


def gzip_members(body: bytes) -> int:
    """How many gzip members ``body`` is made of; fails the test if one is cut short."""
    count = 0
    while body:
        member = read_first_gzip_member(body)
        if not member.ended:
            pytest.fail(f"gzip member {count + 1} is cut short")
        count += 1
        body = member.unused_data
    return count


def bytes_after_headers(url: str, method: str, headers: dict[str, str]) -> bytes:
    """What the server sends after the headers of its answer to ``method`` of ``url``.

    Sent over a bare socket with ``Connection: close`` and read until the server closes it:
    an HTTP client library knows a HEAD answer has no body and would not look. Fails the
    test unless the answer is a 200.
    """
    address = urllib.parse.urlsplit(url)
    host, port = address.hostname, address.port
    if host is None or port is None:
        pytest.fail(f"no host and port in {url}")
    request = [f"{method} {address.path or '/'} HTTP/1.1", f"Host: {address.netloc}"]
    request += ["Connection: close", *(f"{name}: {value}" for name, value in headers.items())]
    received = bytearray()
    with socket.create_connection((host, port), timeout=CLIENT_TIMEOUT_SECONDS) as connection:
        connection.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
        while chunk := connection.recv(65536):
            received += chunk
    head, separator, rest = bytes(received).partition(b"\r\n\r\n")
    if not separator or not head.startswith((b"HTTP/1.0 200 ", b"HTTP/1.1 200 ")):
        pytest.fail(f"no 200 answer to {method} {url}: {bytes(received[:500])!r}")
    return rest
