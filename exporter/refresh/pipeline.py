"""One refresh of one target, read top to bottom: list -> select -> publish -> tags -> describe -> training jobs -> assemble.

Every AWS call of a refresh goes through one :class:`~exporter.aws.guard.RefreshGuard`,
created when the refresh starts: the listing, the tag read and the describes share its
retry budget, its pace and its deadline (``cache.refresh_timeout``), and so do the reads of
training jobs.

* **list**: in full, or only the changes since the last listing (:mod:`exporter.refresh.listing`);
  a failure here fails the refresh, and the target reads up=0 with its last good jobs;
* **select**: the jobs that get per-job series (:mod:`exporter.refresh.retention`);
* **publish**: what the listing found is served at once, with the last tags, descriptions
  and training-job figures, when any of them is read next: they take requests per job,
  and the listing's news does not wait for them;
* **tags**: the allowlisted tags, when ``tags`` is set (:mod:`exporter.refresh.tags`);
* **describe**: the descriptions due, when ``describe.enabled`` (:mod:`exporter.refresh.describe`);
* **training jobs**: the training jobs due, when ``training_jobs.enabled``
  (:mod:`exporter.refresh.training_jobs`);
* **assemble**: the new :class:`~exporter.model.jobs.RegionSnapshot`, the published one
  with the new tags, descriptions and training-job records.

Tags, descriptions and training jobs are extras: their failures keep the last ones and
never fail the refresh.
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
from exporter.model.training import TrainingJobsRecord
from exporter.refresh.cache import Publish
from exporter.refresh.describe import DescribeJob, JobDescriber
from exporter.refresh.listing import list_changes, list_full
from exporter.refresh.retention import PublishedJobs, select_published_jobs
from exporter.refresh.snapshots import Refreshed, failed_snapshot, successful_snapshot
from exporter.refresh.tags import TagCache
from exporter.refresh.training_jobs import TrainingJobReader, page_request

log = logging.getLogger(__name__)

# The share of cache.refresh_timeout left unused by describes and training-job reads, for the
# refresh to finish in.
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
        self._training_jobs = (
            TrainingJobReader(config.training_jobs, clock) if config.training_jobs.enabled else None
        )
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
        extras = (self._tag_cache, self._describer, self._training_jobs)
        if publish is not None and any(extra is not None for extra in extras):
            publish(snapshot)
        tags = self._read_tags(target, guard)
        descriptions = self._describe(target, guard, snapshot.published, previous, listed)
        training_jobs = self._read_training_jobs(target, guard, snapshot)
        # The published snapshot's objects stay where nothing changed: its rendered lines
        # are reused.
        snapshot = replace(snapshot, refresh_duration_seconds=self._took(started))
        if tags is not None and tags != snapshot.tags:
            snapshot = replace(snapshot, tags=tags)
        if descriptions is not None:
            snapshot = replace(snapshot, descriptions=descriptions)
        if training_jobs is not None and training_jobs is not snapshot.training_jobs:
            snapshot = replace(snapshot, training_jobs=training_jobs)
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

    def _read_training_jobs(
        self, target: Target, guard: RefreshGuard, snapshot: RegionSnapshot
    ) -> Mapping[str, TrainingJobsRecord] | None:
        """The training-job records of the published jobs; None when reading is off. It never raises."""
        if self._training_jobs is None:
            return None
        client = self._clients.get(target)
        call = self._before_deadline(guard, "reading training jobs")

        def list_page(tuning_job_name: str, next_token: str | None) -> Mapping[str, Any]:
            return call(
                client.list_training_jobs_for_hyper_parameter_tuning_job,
                **page_request(tuning_job_name, next_token),
            )

        try:
            return self._training_jobs.refresh(
                snapshot.published,
                snapshot.training_jobs,
                list_page,
                context=f" (account={_account_of(target)} region={target.region})",
            )
        except Exception as error:  # an extra: it must never fail the listing
            log.warning(
                "reading training jobs failed for account=%s region=%s, keeping the last "
                "figures: %s: %s",
                _account_of(target),
                target.region,
                type(error).__name__,
                error,
            )
            return snapshot.training_jobs

    def _describe_call(self, target: Target, guard: RefreshGuard) -> DescribeJob:
        """DescribeHyperParameterTuningJob for ``target``, through the refresh's guard.

        The listing's describes and the describe step's alike.
        """
        client = self._clients.get(target)
        call = self._before_deadline(guard, "describing")

        def describe(name: str) -> Mapping[str, Any]:
            return call(
                client.describe_hyper_parameter_tuning_job, HyperParameterTuningJobName=name
            )

        return describe

    def _before_deadline(self, guard: RefreshGuard, doing: str) -> Callable[..., Mapping[str, Any]]:
        """``guard.call``, refused a margin before the refresh's deadline.

        For the extras (describes, training-job pages): a refresh that ends past its deadline
        is not served, so they stop short of it and leave time to finish.
        """
        margin = DESCRIBE_DEADLINE_MARGIN * self._config.cache.refresh_timeout_seconds

        def call(operation: Callable[..., Mapping[str, Any]], **request: Any) -> Mapping[str, Any]:
            if guard.seconds_left() < margin:
                raise RefreshDeadlineError(f"{doing} stopped near the refresh's deadline")
            return guard.call(operation, **request)

        return call

    def _took(self, started: float) -> float:
        return self._monotonic() - started


def _account_of(target: Target) -> str:
    return target.account_id or "(default credentials)"
