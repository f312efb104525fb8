"""Tuning-job tags, read in bulk with the Resource Groups Tagging API and cached per target.

One GetResources listing of every ``sagemaker:hyper-parameter-tuning-job`` in a region reads
the tags of up to 100 jobs per request, where SageMaker's ListTags would take one request per
job. The listing carries no TagFilters: one filter per key ORs its values but filters AND
across keys, so a job tagged ``team`` but not ``project`` would be missed. Only the
allowlisted keys are kept. Tags change rarely, so a target's tags are read again only once
older than ``cache.tags_ttl``; a failed read keeps the last known tags.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from exporter.aws.guard import RefreshGuard
from exporter.aws.operations import TAGGING_OPERATION
from exporter.aws.paging import pages
from exporter.model.jobs import JobTags, Target

if TYPE_CHECKING:
    from mypy_boto3_resourcegroupstaggingapi import ResourceGroupsTaggingAPIClient

log = logging.getLogger(__name__)

TUNING_JOB_RESOURCE_TYPE = "sagemaker:hyper-parameter-tuning-job"
RESOURCES_PER_PAGE = 100  # the API's maximum for ResourcesPerPage
MAX_PAGES = 10_000

TaggingClientOf = Callable[[Target], "ResourceGroupsTaggingAPIClient"]


def read_job_tags(
    client: ResourceGroupsTaggingAPIClient,
    tag_keys: Sequence[str],
    guard: RefreshGuard | None = None,
) -> dict[str, Mapping[str, str]]:
    """The ``tag_keys`` tags of every tuning job in the client's region, by lower-case ARN.

    Jobs with none of the keys are left out. Every page goes through ``guard`` when one is
    given (retries, pacing, deadline). Raises :class:`~exporter.aws.errors.PaginationError` when a
    PaginationToken repeats or the listing runs past MAX_PAGES.
    """
    wanted = frozenset(tag_keys)
    tags: dict[str, Mapping[str, str]] = {}
    for resource in _iter_resources(client, guard):
        kept = {
            tag["Key"]: tag["Value"] for tag in resource.get("Tags", []) if tag["Key"] in wanted
        }
        if kept:
            tags[resource["ResourceARN"].lower()] = MappingProxyType(kept)
    return tags


def _iter_resources(
    client: ResourceGroupsTaggingAPIClient, guard: RefreshGuard | None
) -> Iterator[Mapping[str, Any]]:
    send = client.get_resources if guard is None else partial(guard.call, client.get_resources)
    request = {
        "ResourceTypeFilters": [TUNING_JOB_RESOURCE_TYPE],
        "ResourcesPerPage": RESOURCES_PER_PAGE,
    }
    for page in pages(
        send, request, operation=TAGGING_OPERATION, next_key="PaginationToken", max_pages=MAX_PAGES
    ):
        yield from page.get("ResourceTagMappingList", [])


class TagCache:
    """The last tags read for each target, read again once older than ``ttl_seconds``.

    A failed read is logged and leaves the last known tags in place (its HTTP failures are
    counted by the client's :class:`~exporter.aws.counting.RequestCounter`); the next refresh tries
    again. Reads run on the refresh's worker, one per target at a time; the lock guards only
    the bookkeeping. ``clock`` stamps successful reads; ``monotonic`` measures their age.
    """

    def __init__(
        self,
        tag_keys: Sequence[str],
        client_of: TaggingClientOf,
        ttl_seconds: float,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tag_keys = tuple(tag_keys)
        self._client_of = client_of
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._tags: dict[Target, JobTags] = {}
        self._read_at: dict[Target, float] = {}

    def tags_of(self, target: Target, guard: RefreshGuard | None = None) -> JobTags:
        """The tags of ``target``'s jobs, read now if the last read is older than the TTL.

        A read goes through ``guard`` when one is given: the refresh's, so that the read
        shares its retry budget, pacing and deadline.
        """
        now = self._monotonic()
        with self._lock:
            known = self._tags.get(target, JobTags())
            read_at = self._read_at.get(target)
        if read_at is not None and now - read_at < self._ttl_seconds:
            return known
        try:
            by_arn = read_job_tags(self._client_of(target), self._tag_keys, guard)
        except Exception as error:  # tags are optional: never let them fail the listing
            log.warning(
                "reading tags failed for account=%s region=%s, keeping the last known: %s: %s",
                target.account_id or "(default credentials)",
                target.region,
                type(error).__name__,
                error,
            )
            return known
        # Unchanged tags keep the previous mapping, so the exposition can tell nothing changed.
        tags = JobTags(
            known.by_arn if by_arn == known.by_arn else MappingProxyType(by_arn), self._clock()
        )
        with self._lock:
            self._tags[target] = tags
            self._read_at[target] = now
        return tags
