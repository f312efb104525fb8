"""Polling until a condition holds, for tests that wait on other threads or processes.

A test that waits for something another thread or process does polls an observable
condition with :func:`wait_until` rather than sleeping for a fixed time: the wait ends as
soon as the condition holds, and a loaded machine only makes it longer, never wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar, overload

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """A condition did not hold within its time limit."""


@overload
def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float = ...,
    interval: float = ...,
    message: str = ...,
    ignoring: tuple[type[Exception], ...] = ...,
) -> bool: ...


@overload
def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float = ...,
    interval: float = ...,
    message: str = ...,
    ignoring: tuple[type[Exception], ...] = ...,
) -> T: ...


def wait_until(
    condition: Callable[[], T | bool | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "",
    ignoring: tuple[type[Exception], ...] = (),
) -> T | bool:
    """Call ``condition`` every ``interval`` seconds until it returns a truthy value; return it.

    ``condition`` is called at least once, and once more at the deadline. Exceptions of the
    ``ignoring`` types count as "not yet" (a server still starting refuses connections).
    After ``timeout`` seconds it fails the test with :class:`WaitTimeoutError`, an AssertionError
    naming ``message`` (what was waited for) and the last exception ignored, if any.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
        except ignoring as error:
            last_error = error
        else:
            if value:
                return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    what = message or getattr(condition, "__qualname__", repr(condition))
    detail = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
    raise WaitTimeoutError(
        f"timed out after {timeout:g}s waiting for {what}{detail}"
    ) from last_error


def eventually(
    condition: Callable[[], object],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    ignoring: tuple[type[Exception], ...] = (),
) -> bool:
    """Whether ``condition`` holds within ``timeout`` seconds, polled as by :func:`wait_until`.

    For a test that must clean up before it fails, say stop a process and read its stderr
    to show with the failure: it asserts the result afterwards.
    """
    try:
        wait_until(condition, timeout=timeout, interval=interval, ignoring=ignoring)
    except WaitTimeoutError:
        return False
    return True
