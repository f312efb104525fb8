"""One refresh of one target, read top to bottom: list -> select -> publish -> tags -> describe -> assemble.

Every AWS call of a refresh goes through one :class:`~exporter.aws.guard.RefreshGuard`,
created when the refresh starts: the listing, the tag read and the describes share its
retry budget, its pace and its deadline (``cache.refresh_timeout``).

* **list**: in full, or only the changes since the last listing (:mod:`exporter.refresh.listing`);
  a failure here fails the refresh, and the target reads up=0 with its last good jobs;
* **select**: the jobs that get per-job series (:mod:`exporter.refresh.retention`);
* **publish**: what the listing found is served at once, with the last tags and
  descriptions, when tags or descriptions are read next: they take a request per job
  described, and the listing's news does not wait for them;
* **tags**: the allowlisted tags, when ``tags`` is set (:mod:`exporter.refresh.tags`);
* **describe**: the descriptions due, when ``describe.enabled`` (:mod:`exporter.refresh.describe`);
* **assemble**: the new :class:`~exporter.model.jobs.RegionSnapshot`, the published one
  with the new tags and descriptions.

Tags and descriptions are extras: their failures keep the last ones and never fail the refresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from exporter.aws.clients import SageMakerClients
from exporter.aws.errors import RefreshDeadlineError
from exporter.aws.guard import RefreshGuard
from exporter.config.settings import ExporterConfig
from exporter.model.jobs import (
    NO_DESCRIPTIONS,
    JobDescription,
    JobTags,
    RegionSnapshot,
    Target,
    TuningJob,
)
from exporter.model.listing import Listing
from exporter.refresh.cache import Publish
from exporter.refresh.describe import DescribeJob, JobDescriber
from exporter.refresh.listing import list_changes, list_full
from exporter.refresh.retention import PublishedJobs, select_published_jobs
from exporter.refresh.snapshots import Refreshed, failed_snapshot, successful_snapshot
from exporter.refresh.tags import TagCache

log = logging.getLogger(__name__)

# The share of cache.refresh_timeout left unused by describes, for the refresh to finish in.
DESCRIBE_DEADLINE_MARGIN = 0.1


class RefreshPipeline:
    """Refreshes targets as ``config`` says, with ``clients``' guards and clients.

    ``tag_cache`` is None when no tags are asked for; it outlives the pipeline across
    reloads that read the same tags. ``clock`` stamps snapshots and descriptions;
    ``monotonic`` measures the refresh's duration.
    """

    def __init__(
        self,
        config: ExporterConfig,
        clients: SageMakerClients,
        *,
        tag_cache: TagCache | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._clients = clients
        self._tag_cache = tag_cache
        self._describer = JobDescriber(config.describe, clock) if config.describe.enabled else None
        self._clock = clock
        self._monotonic = monotonic

    def refresh(
        self,
        target: Target,
        previous: RegionSnapshot | None,
        listing: Listing | None,
        publish: Publish | None = None,
    ) -> Refreshed:
        """Refresh ``target``: list in full when ``listing`` is None, else the changes since it.

        With tags or describing on, the listing's snapshot goes to ``publish`` before they
        are read; the snapshot returned is that one with them.
        """
        started = self._monotonic()
        try:
            # The client first: building one is local work (a second or more on a busy
            # machine, the first time), which the refresh's deadline is not for.
            self._clients.get(target)
            guard = self._clients.guard(target, self._config.cache.refresh_timeout_seconds)
            listed = self._list(target, listing, guard)
        except Exception as exc:  # a failing region must never take down the others
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "refresh failed for account=%s role=%s region=%s: %s",
                _account_of(target),
                target.role_arn or "(none)",
                target.region,
                error,
            )
            return Refreshed(failed_snapshot(target, previous, self._took(started), error))
        published = self.select_published(listed.jobs, self._clock())
        snapshot = successful_snapshot(
            target, previous, listed, published, duration=self._took(started), now=self._clock()
        )
        if publish is not None and (self._tag_cache is not None or self._describer is not None):
            publish(snapshot)
        tags = self._read_tags(target, guard)
        descriptions = self._describe(target, guard, snapshot.published, previous, listed)
        # The published snapshot's objects stay where nothing changed: its rendered lines
        # are reused.
        snapshot = replace(snapshot, refresh_duration_seconds=self._took(started))
        if tags is not None and tags != snapshot.tags:
            snapshot = replace(snapshot, tags=tags)
        if descriptions is not None:
            snapshot = replace(snapshot, descriptions=descriptions)
        # The snapshot may hold the previous, equal tuple: keep only one of the two.
        return Refreshed(snapshot, replace(listed, jobs=snapshot.jobs))

    def select_published(self, jobs: Sequence[TuningJob], now: float) -> PublishedJobs:
        """The running jobs and the recently ended ones, up to ``per_job_metrics.max_jobs``."""
        settings = self._config.per_job_metrics
        return select_published_jobs(jobs, now, settings.retention_seconds, settings.max_jobs)

    def _list(self, target: Target, previous: Listing | None, guard: RefreshGuard) -> Listing:
        client = self._clients.get(target)
        filters, now = self._config.filters, self._clock()
        if previous is None:
            return list_full(client, filters, now, guard)
        # Active jobs deep in the listing are described rather than walked to, when allowed.
        describe = self._describe_call(target, guard) if self._describer is not None else None
        return list_changes(client, filters, now, previous, guard, describe=describe)

    def _read_tags(self, target: Target, guard: RefreshGuard) -> JobTags | None:
        """The tags of ``target``'s jobs; None when no tags are asked for. It never raises."""
        if self._tag_cache is None:
            return None
        return self._tag_cache.tags_of(target, guard)

    def _describe(
        self,
        target: Target,
        guard: RefreshGuard,
        published: Sequence[TuningJob],
        previous: RegionSnapshot | None,
        listing: Listing,
    ) -> Mapping[str, JobDescription] | None:
        """The descriptions of the ``published`` jobs; None when describing is off.

        The listing's own descriptions (of active jobs deeper than its walk) are fresh, so
        they are not asked for again.
        """
        if self._describer is None:
            return None
        known = previous.descriptions if previous is not None else NO_DESCRIPTIONS
        if listing.descriptions:
            known = MappingProxyType({**known, **listing.descriptions})
        try:
            # A call that still fails leaves the job's last description.
            return self._describer.refresh(
                published,
                known,
                self._describe_call(target, guard),
                context=f" (account={_account_of(target)} region={target.region})",
            )
        except Exception as error:  # describing is an extra: it must never fail the listing
            log.warning(
                "describing jobs failed for account=%s region=%s, keeping the last descriptions: "
                "%s: %s",
                _account_of(target),
                target.region,
                type(error).__name__,
                error,
            )
            return known

    def _describe_call(self, target: Target, guard: RefreshGuard) -> DescribeJob:
        """DescribeHyperParameterTuningJob for ``target``, through the refresh's guard.

        The listing's describes and the describe step's alike: describing stops a margin
        before the refresh's deadline, since a refresh that ends past it is not served.
        """
        client = self._clients.get(target)
        margin = DESCRIBE_DEADLINE_MARGIN * self._config.cache.refresh_timeout_seconds

        def describe(name: str) -> Mapping[str, Any]:
            if guard.seconds_left() < margin:
                raise RefreshDeadlineError("describing stopped near the refresh's deadline")
            return guard.call(
                client.describe_hyper_parameter_tuning_job, HyperParameterTuningJobName=name
            )

        return describe

    def _took(self, started: float) -> float:
        return self._monotonic() - started


def _account_of(target: Target) -> str:
    return target.account_id or "(default credentials)"
