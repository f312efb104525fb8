"""A refresh that only lists, through a plain function: the cache's tests drive it without AWS.

It runs the pipeline's select and assemble steps (the same functions), with the listing
step replaced by ``list_jobs``, so the cache's bookkeeping is tested on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from exporter.model.jobs import RegionSnapshot, Target, TuningJob
from exporter.model.listing import Listing
from exporter.refresh.cache import Publish, SnapshotCache
from exporter.refresh.retention import PublishedJobs
from exporter.refresh.snapshots import Refreshed, failed_snapshot, successful_snapshot

# List the target's jobs: in full when the previous listing is None, else the changes since it.
ListJobs = Callable[[Target, Listing | None], Listing]
SelectPublished = Callable[[Sequence[TuningJob], float], PublishedJobs]


def publish_every_job(jobs: Sequence[TuningJob], _now: float) -> PublishedJobs:
    """Give every job per-job series."""
    return PublishedJobs(tuple(jobs))


class ListingRefresher:
    """A :class:`~exporter.refresh.cache.TargetRefresher` whose listing is ``list_jobs``."""

    def __init__(
        self,
        list_jobs: ListJobs,
        *,
        select_published: SelectPublished = publish_every_job,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list_jobs = list_jobs
        self._select_published = select_published
        self._clock = clock
        self._monotonic = monotonic

    def refresh(
        self,
        target: Target,
        previous: RegionSnapshot | None,
        listing: Listing | None,
        publish: Publish | None = None,
    ) -> Refreshed:
        """List with ``list_jobs``; there is no later step, so nothing is published early."""
        started = self._monotonic()
        try:
            listed = self._list_jobs(target, listing)
        except Exception as error:
            duration = self._monotonic() - started
            message = f"{type(error).__name__}: {error}"
            return Refreshed(failed_snapshot(target, previous, duration, message))
        published = self.select_published(listed.jobs, self._clock())
        snapshot = successful_snapshot(
            target,
            previous,
            listed,
            published,
            duration=self._monotonic() - started,
            now=self._clock(),
        )
        return Refreshed(snapshot, replace(listed, jobs=snapshot.jobs))

    def select_published(self, jobs: Sequence[TuningJob], now: float) -> PublishedJobs:
        return self._select_published(jobs, now)


def listing_cache(
    targets: Sequence[Target],
    list_jobs: ListJobs,
    *,
    select_published: SelectPublished = publish_every_job,
    **settings: Any,
) -> SnapshotCache:
    """A :class:`SnapshotCache` over ``targets`` whose refreshes list with ``list_jobs``."""
    refresher = ListingRefresher(
        list_jobs,
        select_published=select_published,
        clock=settings.get("clock", time.time),
        monotonic=settings.get("monotonic", time.monotonic),
    )
    return SnapshotCache(targets, refresher, **settings)
