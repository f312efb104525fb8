"""Connections waiting for their request, all held by one thread.

A connection costs the exporter a worker thread only once its request line and headers
have arrived. Until then (its TLS handshake, a request trickling in, or nothing at all) it
waits in the :class:`FrontDoor`, beside every other, on one thread with a selector: a
thousand idle connections cost a thousand sockets and no worker, and a scrape that arrives
among them is handed to a worker at once. A connection that has not sent its request line
and headers within the read timeout (after a TLS handshake of its own timeout) is closed.
When the waiting connections reach their limit, or the process runs out of file
descriptors, the one that has waited longest is closed to make room for the new one.

Sample log lines::

    DEBUG closing the connection from 10.0.0.7: no complete request within 10s
    INFO TLS handshake with 10.0.0.8 failed: certificate required
    WARNING closed 12 connection(s) that sent no request, the last from 10.0.0.9, to make room: 5000 were waiting
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import resource
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.web.config import ssl_error_reason

log = logging.getLogger(__name__)

# How long a client has to finish the TLS handshake it started.
TLS_HANDSHAKE_TIMEOUT_SECONDS = 10.0
# A head this long without its end goes to a worker anyway, whose parser answers 414 or 431
# for a line or header block past its limits (reading the rest under the same deadline).
HEAD_HANDOFF_BYTES = 65536 + 1024
# Waiting connections kept at most, when the open-file limit does not say fewer.
MAXIMUM_WAITING_CONNECTIONS = 50_000
# Evictions are logged when they start, then summed up at most this often.
EVICTION_LOG_INTERVAL_SECONDS = 60.0
# How long accepting pauses when no file descriptor can be had and none can be freed.
_ACCEPT_PAUSE_SECONDS = 0.1
_ACCEPTS_PER_WAKEUP = 256
# The soft limit taken when the hard one is unlimited: Linux's default fs.nr_open.
_UNLIMITED_OPEN_FILES = 1 << 20
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


@dataclass(frozen=True, eq=False)
class ArrivedRequest:
    """A connection whose request line and headers have arrived, for a worker to serve.

    ``head`` is everything read from it so far: the request line and headers, and possibly
    more. ``deadline`` (time.monotonic) bounds reading the rest of an oversized head.
    ``connection`` is still non-blocking.
    """

    connection: socket.socket
    address: Any
    head: bytes
    deadline: float


def default_max_waiting() -> int:
    """Waiting connections to keep at most: half the open-file limit, within 64..50,000.

    The other half stays for the workers' connections, AWS clients and files.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAXIMUM_WAITING_CONNECTIONS
    return max(64, min(MAXIMUM_WAITING_CONNECTIONS, soft // 2))


def raise_open_file_limit() -> int:
    """Raise the soft limit of open files to the hard one, as Go programs do at start.

    Every waiting connection is a file descriptor; a soft limit of 1024, still common,
    would leave room for a few hundred. Returns the soft limit in force afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _UNLIMITED_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def describe_error(error: BaseException | None) -> str:
    """A short reason for a connection's error, without secrets."""
    if isinstance(error, ssl.SSLError):
        return ssl_error_reason(error)
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


class SummedOccurrences:
    """Counts something that may happen in floods, to log the first, then a sum per interval.

    >>> evictions = SummedOccurrences(60.0)
    >>> evictions.happened(now=0.0), evictions.happened(now=1.0), evictions.happened(now=61.0)
    ((1, ''), None, (2, ' in the last 61s'))
    """

    def __init__(self, interval_seconds: float) -> None:
        self._interval = interval_seconds
        self._unlogged = 0
        self._logged_at: float | None = None

    def happened(self, now: float | None = None) -> tuple[int, str] | None:
        """Count one; when it is time to log, the count since the last log and "in the last Ns"."""
        self._unlogged += 1
        now = time.monotonic() if now is None else now
        logged_at = self._logged_at
        if logged_at is not None and now - logged_at < self._interval:
            return None
        summed = (
            self._unlogged,
            "" if logged_at is None else f" in the last {now - logged_at:.0f}s",
        )
        self._unlogged = 0
        self._logged_at = now
        return summed


class _Waiting:
    """A connection in the front door: how far it has got, and until when it may wait."""

    __slots__ = ("address", "connection", "deadline", "handshaking", "received")

    def __init__(
        self, connection: socket.socket, address: Any, deadline: float, handshaking: bool
    ) -> None:
        self.connection = connection
        self.address = address
        self.deadline = deadline
        self.handshaking = handshaking
        self.received = bytearray()


def head_is_complete(received: bytes | bytearray, searched_from: int = 0) -> bool:
    """Whether ``received`` holds a request line and headers up to their empty line.

    Lines may end with CRLF or a bare LF, as Python's HTTP parser accepts.

    >>> head_is_complete(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n"), head_is_complete(b"GET / HTTP/1.1\\r\\n")
    (True, False)
    """
    start = max(0, searched_from - 2)
    return received.find(b"\n\r\n", start) >= 0 or received.find(b"\n\n", start) >= 0


class FrontDoor:
    """Accepts connections on ``listener`` and holds each until its request has arrived.

    ``tls_context()`` is asked at each connection: with a context, the connection's TLS
    handshake happens here too, without blocking. ``hand_off`` receives each arrived request
    on this thread, and must not block. :meth:`serve` runs until :meth:`stop`.
    """

    def __init__(
        self,
        listener: socket.socket,
        hand_off: Callable[[ArrivedRequest], None],
        *,
        tls_context: Callable[[], ssl.SSLContext | None] = lambda: None,
        request_read_timeout_seconds: float,
        handshake_timeout_seconds: float | None = None,
        max_waiting: int | None = None,
    ) -> None:
        self._listener = listener
        self._hand_off = hand_off
        self._tls_context = tls_context
        self._read_timeout = request_read_timeout_seconds
        self._handshake_timeout = (
            TLS_HANDSHAKE_TIMEOUT_SECONDS
            if handshake_timeout_seconds is None
            else handshake_timeout_seconds
        )
        self.max_waiting = default_max_waiting() if max_waiting is None else max_waiting
        self._selector = selectors.DefaultSelector()
        self._waiting: dict[int, _Waiting] = {}  # by file descriptor, oldest first
        self._deadlines: list[tuple[float, int, _Waiting]] = []
        self._sequence = itertools.count()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._stopping = threading.Event()
        self._accept_paused_until: float | None = None
        self._evictions = SummedOccurrences(EVICTION_LOG_INTERVAL_SECONDS)

    @property
    def waiting(self) -> int:
        """Connections waiting for their request now."""
        return len(self._waiting)

    def serve(self) -> None:
        """Accept and hold connections until :meth:`stop`; then close every waiting one."""
        self._listener.setblocking(False)
        self._wake_reader.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select(self._select_timeout()):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_reader:
                        self._drain_wakeups()
                    else:
                        self._progress_or_close(key.data)
                self._expire()
                self._resume_accepting()
        finally:
            self.close()

    def close(self) -> None:
        """Close every waiting connection and what the front door holds, not the listener."""
        for waiting in list(self._waiting.values()):
            self._close(waiting)
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def stop(self) -> None:
        """Make :meth:`serve` return soon; safe from any thread."""
        self._stopping.set()
        # OSError: already closed, or the buffer is full of earlier wakeups.
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _select_timeout(self) -> float | None:
        deadlines = self._deadlines
        while deadlines and not self._is_current(deadlines[0]):
            heapq.heappop(deadlines)
        next_times = [deadline[0] for deadline in deadlines[:1]]
        if self._accept_paused_until is not None:
            next_times.append(self._accept_paused_until)
        if not next_times:
            return None
        return max(0.0, min(next_times) - time.monotonic())

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                connection, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno not in _OUT_OF_DESCRIPTORS:
                    log.debug("accepting a connection failed: %s", describe_error(error))
                    return
                if self._waiting:
                    self._evict_oldest()
                    continue
                log.warning("no file descriptor for a new connection: %s", describe_error(error))
                self._pause_accepting()
                return
            if len(self._waiting) >= self.max_waiting:
                self._evict_oldest()
            try:
                self._admit(connection, address)
            except (OSError, ValueError) as error:  # reset before it could be taken in
                log.debug("connection from %s ended: %s", address[0], describe_error(error))
                connection.close()

    def _admit(self, connection: socket.socket, address: Any) -> None:
        connection.setblocking(False)
        now = time.monotonic()
        context = self._tls_context()
        if context is None:
            waiting = _Waiting(connection, address, now + self._read_timeout, handshaking=False)
        else:
            secure = context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
            waiting = _Waiting(secure, address, now + self._handshake_timeout, handshaking=True)
        self._waiting[waiting.connection.fileno()] = waiting
        self._push_deadline(waiting)
        self._selector.register(waiting.connection, selectors.EVENT_READ, waiting)

    def _progress_or_close(self, waiting: _Waiting) -> None:
        """Take the connection on; whatever goes wrong with it ends it, and only it."""
        try:
            self._progress(waiting)
        except Exception:
            log.exception("error with the connection from %s", waiting.address[0])
            self._close(waiting)

    def _progress(self, waiting: _Waiting) -> None:
        """Take the connection as far as it can go without blocking."""
        if waiting.handshaking and not self._handshake(waiting):
            return
        connection = waiting.connection
        while True:
            try:
                chunk = connection.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._wait_for(waiting, selectors.EVENT_READ)
                return
            except ssl.SSLWantWriteError:
                self._wait_for(waiting, selectors.EVENT_WRITE)
                return
            except (OSError, ValueError) as error:
                log.debug("connection from %s ended: %s", waiting.address[0], describe_error(error))
                self._close(waiting)
                return
            if not chunk:  # the client hung up before its request was complete
                self._close(waiting)
                return
            searched = len(waiting.received)
            waiting.received += chunk
            if (
                head_is_complete(waiting.received, searched)
                or len(waiting.received) >= HEAD_HANDOFF_BYTES
            ):
                self._forget(waiting)
                self._hand_off(
                    ArrivedRequest(
                        connection, waiting.address, bytes(waiting.received), waiting.deadline
                    )
                )
                return

    def _handshake(self, waiting: _Waiting) -> bool:
        """Advance the TLS handshake; whether it is done."""
        connection = waiting.connection
        if not isinstance(connection, ssl.SSLSocket):
            raise TypeError("a TLS handshake needs a TLS connection")
        try:
            connection.do_handshake()
        except ssl.SSLWantReadError:
            self._wait_for(waiting, selectors.EVENT_READ)
            return False
        except ssl.SSLWantWriteError:
            self._wait_for(waiting, selectors.EVENT_WRITE)
            return False
        except (OSError, ValueError) as error:
            self._log_failed_handshake(waiting, error)
            self._close(waiting)
            return False
        waiting.handshaking = False
        waiting.deadline = time.monotonic() + self._read_timeout
        self._push_deadline(waiting)
        return True

    @staticmethod
    def _log_failed_handshake(waiting: _Waiting, error: BaseException) -> None:
        # A client that hangs up before speaking TLS (a TCP health check, a port scan) is
        # routine; anything else (wrong certificate, protocol, plain HTTP) is worth seeing.
        routine = isinstance(error, ssl.SSLEOFError | ConnectionError)
        log.log(
            logging.DEBUG if routine else logging.INFO,
            "TLS handshake with %s failed: %s",
            waiting.address[0],
            describe_error(error),
        )

    def _wait_for(self, waiting: _Waiting, events: int) -> None:
        key = self._selector.get_key(waiting.connection)
        if key.events != events:
            self._selector.modify(waiting.connection, events, waiting)

    def _is_current(self, entry: tuple[float, int, _Waiting]) -> bool:
        """Whether a deadline still applies: not superseded, to a connection still waiting."""
        deadline, _, waiting = entry
        return waiting.deadline == deadline and self._is_waiting(waiting)

    def _is_waiting(self, waiting: _Waiting) -> bool:
        # By identity: a connection handed off may have left its descriptor to a new one.
        return self._waiting.get(waiting.connection.fileno()) is waiting

    def _push_deadline(self, waiting: _Waiting) -> None:
        heapq.heappush(self._deadlines, (waiting.deadline, next(self._sequence), waiting))

    def _expire(self) -> None:
        now = time.monotonic()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            entry = heapq.heappop(deadlines)
            if not self._is_current(entry):
                continue
            waiting = entry[2]
            if waiting.handshaking:
                self._log_failed_handshake(waiting, TimeoutError())
            else:
                log.debug(
                    "closing the connection from %s: no complete request within %gs",
                    waiting.address[0],
                    self._read_timeout,
                )
            self._close(waiting)

    def _evict_oldest(self) -> None:
        oldest = next(iter(self._waiting.values()))
        self._close(oldest)
        summed = self._evictions.happened()
        if summed is not None:
            count, since = summed
            log.warning(
                "closed %d connection(s) that sent no request%s, the last from %s, to make "
                "room: %d were waiting",
                count,
                since,
                oldest.address[0],
                len(self._waiting) + 1,
            )

    def _pause_accepting(self) -> None:
        self._selector.unregister(self._listener)
        self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE_SECONDS

    def _resume_accepting(self) -> None:
        paused_until = self._accept_paused_until
        if paused_until is not None and time.monotonic() >= paused_until:
            self._accept_paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ)

    def _forget(self, waiting: _Waiting) -> None:
        """Stop watching the connection, leaving it open."""
        if self._is_waiting(waiting):
            del self._waiting[waiting.connection.fileno()]
            self._selector.unregister(waiting.connection)

    def _close(self, waiting: _Waiting) -> None:
        self._forget(waiting)
        with contextlib.suppress(OSError):
            waiting.connection.close()
