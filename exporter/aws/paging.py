"""One token loop for the paginated AWS calls: the listing's walk and the tag read.

Both APIs name their token the same in the request and the answer (``NextToken``,
``PaginationToken``). The loop stops a listing whose pages do not end: a token that repeats
or more than ``max_pages`` pages raise :class:`~exporter.aws.errors.PaginationError`, which
fails the refresh rather than let it run on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from exporter.aws.errors import PaginationError

# Sends one request (the guard's call, or the client's method itself) and returns its answer.
SendPage = Callable[..., Mapping[str, Any]]


def pages(
    send: SendPage,
    request: Mapping[str, Any],
    *,
    operation: str,
    next_key: str,
    max_pages: int,
    bound_reason: str = "",
) -> Iterator[Mapping[str, Any]]:
    """Each page of ``operation``: ``request`` sent first alone, then with the last token.

    The pages are fetched as they are asked for, so a caller that stops early sends no
    request more. ``bound_reason`` is added to the message when ``max_pages`` runs out.

    >>> answers = iter([{"Items": [1], "NextToken": "a"}, {"Items": [2]}])
    >>> [page["Items"] for page in pages(lambda **_: next(answers), {}, operation="ListX",
    ...     next_key="NextToken", max_pages=5)]
    [[1], [2]]
    >>> again = iter([{"NextToken": "a"}, {"NextToken": "a"}])
    >>> list(pages(lambda **_: next(again), {}, operation="ListX", next_key="NextToken", max_pages=5))
    Traceback (most recent call last):
    ...
    exporter.aws.errors.PaginationError: ListX returned the same NextToken twice
    """
    seen_tokens: set[str] = set()
    token = ""
    for _ in range(max_pages):
        page = send(**request, **({next_key: token} if token else {}))
        token = page.get(next_key) or ""
        # Checked as the page arrives, so a walk that would stop on this page still fails.
        if token in seen_tokens:
            raise PaginationError(f"{operation} returned the same {next_key} twice")
        yield page
        if not token:
            return
        seen_tokens.add(token)
    raise PaginationError(f"{operation} did not finish within {max_pages} pages{bound_reason}")
