"""The discovered account list: read at start, read again on a timer, the last one kept.

:class:`AccountDiscovery` knows nothing of AWS: it calls ``read`` (an
:class:`~exporter.aws.organizations.OrganizationAccounts` read in the exporter) and hands
every list its timer reads to ``on_read``, which puts it in force if it changed. A read
that fails keeps the last list; the failure is logged when reads start failing and when
they work again, not at every interval in between.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

AccountIds = tuple[str, ...]
# A read that failed is tried again this soon, rather than after a whole interval (1h by
# default): a start that could not read the list at all then recovers within a minute.
RETRY_FAILED_READ_SECONDS = 60.0


class AccountDiscovery:
    """The last account list read, and the daemon thread that reads it every ``interval_seconds``.

    ``known`` is the list to start from (a reload's previous list), None when there is none
    yet. :meth:`read_now` reads once, in the caller's thread; :meth:`start` reads every
    ``interval_seconds`` (every ``retry_seconds`` at most while reads fail)
    on a daemon thread until :meth:`stop`, and hands each list read
    there to ``on_read``: the same list again too, so a list ``on_read`` failed to put in
    force is tried again at the next interval. ``read`` raises an exception whose message
    is fit for the log when the list cannot be read.
    """

    def __init__(
        self,
        read: Callable[[], AccountIds],
        interval_seconds: float,
        on_read: Callable[[AccountIds], None],
        *,
        known: AccountIds | None = None,
        retry_seconds: float = RETRY_FAILED_READ_SECONDS,
    ) -> None:
        self._read = read
        self._interval_seconds = interval_seconds
        self._retry_seconds = min(interval_seconds, retry_seconds)
        self._on_read = on_read
        self._lock = threading.Lock()
        self._accounts = known
        self._failing = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def accounts(self) -> AccountIds | None:
        """The last list read, or None before the first successful read."""
        with self._lock:
            return self._accounts

    @property
    def running(self) -> bool:
        """Whether the timer's thread is still alive: from :meth:`start` until shortly after :meth:`stop`."""
        return self._thread is not None and self._thread.is_alive()

    def read_now(self) -> bool:
        """Read the list once; True when it was read, False when the last one stays."""
        try:
            accounts = self._read()
        except Exception as error:  # a failing read must never end the thread
            with self._lock:
                first_failure, self._failing = not self._failing, True
                kept = self._accounts
            if first_failure:
                log.error(
                    "account discovery failed, keeping the last list (%s); "
                    "retrying every %gs, and logging again once it works: %s",
                    "none yet" if kept is None else f"{len(kept)} accounts",
                    self._retry_seconds,
                    error,
                )
            else:
                log.debug("account discovery failed again: %s", error)
            return False
        with self._lock:
            recovered, self._failing = self._failing, False
            self._accounts = accounts
        if recovered:
            log.info("account discovery works again: %d accounts", len(accounts))
        return True

    def start(self) -> None:
        """Read again every ``interval_seconds`` on a daemon thread, until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="account-discovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading; a read in flight finishes, and its list is not handed on.

        Does not wait for the thread: its ``on_read`` may be waiting for the caller.
        """
        self._stopped.set()

    def _next_wait(self) -> float:
        """Seconds until the next read: ``interval_seconds``, or sooner while reads fail."""
        with self._lock:
            failing = self._failing
        if failing:
            return self._retry_seconds
        return self._interval_seconds

    def _run(self) -> None:
        while not self._stopped.wait(self._next_wait()):
            if not self.read_now() or self._stopped.is_set():
                continue
            try:
                self._on_read(self.accounts or ())
            except Exception:  # an on_read that fails must not end the thread
                log.exception("applying the discovered accounts failed; retrying next interval")
