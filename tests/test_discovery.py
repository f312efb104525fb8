"""AccountDiscovery: the last list kept when a read fails, failures logged once, the timer."""

from __future__ import annotations

import logging
import threading

import pytest

from exporter.refresh.discovery import AccountDiscovery, AccountIds
from tests.polling import wait_until


class ScriptedReads:
    """A ``read`` that answers the lists (or raises the errors) it is given, the last one for good."""

    def __init__(self, *answers: AccountIds | Exception) -> None:
        self._answers = list(answers)
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self) -> AccountIds:
        with self._lock:
            self.calls += 1
            answer = self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def then(self, *answers: AccountIds | Exception) -> None:
        with self._lock:
            self._answers = list(answers)


def ignore(_: AccountIds) -> None:
    pass


def test_no_list_is_known_before_the_first_successful_read() -> None:
    discovery = AccountDiscovery(ScriptedReads(RuntimeError("denied")), 60, ignore)

    assert discovery.read_now() is False
    assert discovery.accounts is None


def test_a_failed_read_keeps_the_last_list() -> None:
    reads = ScriptedReads(("111111111111",), RuntimeError("throttled"))
    discovery = AccountDiscovery(reads, 60, ignore)

    assert discovery.read_now() is True
    assert discovery.read_now() is False
    assert discovery.accounts == ("111111111111",)


def test_a_list_known_from_before_is_kept_until_a_read_succeeds() -> None:
    discovery = AccountDiscovery(
        ScriptedReads(RuntimeError("down")), 60, ignore, known=("222222222222",)
    )

    discovery.read_now()

    assert discovery.accounts == ("222222222222",)


def test_failures_are_logged_once_when_they_start_and_again_when_reads_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter")
    reads = ScriptedReads(
        ("1",), RuntimeError("throttled"), RuntimeError("throttled"), RuntimeError("down"), ("2",)
    )
    discovery = AccountDiscovery(reads, 60, ignore)

    for _ in range(5):
        discovery.read_now()

    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "account discovery failed, keeping the last list (1 accounts); retrying every 60s, "
        "and logging again once it works: throttled"
    ]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["account discovery works again: 1 accounts"]
    assert discovery.accounts == ("2",)


def test_the_timer_hands_every_list_read_to_on_read_until_stopped() -> None:
    reads = ScriptedReads(("1",), ("1", "2"))
    handed: list[AccountIds] = []
    discovery = AccountDiscovery(reads, 0.01, handed.append)

    discovery.start()
    wait_until(lambda: len(handed) >= 3, message="three lists handed on")
    discovery.stop()
    reads.then(("3",))  # what a read in flight at stop() may still get
    wait_until(lambda: not discovery.running, message="the timer's thread ended")

    assert handed[0] == ("1",)
    assert set(handed[1:]) == {("1", "2")}  # the same list again too
    assert ("3",) not in handed


def test_an_on_read_that_fails_is_called_again_at_the_next_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[AccountIds] = []

    def fail_first(accounts: AccountIds) -> None:
        calls.append(accounts)
        if len(calls) == 1:
            raise RuntimeError("exporter could not be built")

    discovery = AccountDiscovery(ScriptedReads(("1",)), 0.01, fail_first)
    discovery.start()
    try:
        wait_until(lambda: len(calls) >= 2, message="on_read called again after failing")
    finally:
        discovery.stop()

    assert calls[:2] == [("1",), ("1",)]
    assert any("applying the discovered accounts failed" in r.getMessage() for r in caplog.records)


def test_a_failed_read_is_tried_again_sooner_than_the_interval() -> None:
    reads = ScriptedReads(RuntimeError("throttled"), ("111111111111",))
    handed_on: list[AccountIds] = []
    discovery = AccountDiscovery(reads, 3600, handed_on.append, retry_seconds=0.05)
    assert discovery.read_now() is False
    discovery.start()
    try:
        wait_until(lambda: handed_on == [("111111111111",)], timeout=10, message="a retry")
    finally:
        discovery.stop()
