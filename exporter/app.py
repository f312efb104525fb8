"""The assembled exporter: targets from the config, their AWS clients, the cache and the registry."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from exporter.aws import LIST_OPERATION, RequestCounter, SageMakerClients
from exporter.collector import (
    ExporterHealthCollector,
    JobCountCollector,
    JobTagsCollector,
    PerJobCollector,
    TagReadCollector,
)
from exporter.config import ExporterConfig
from exporter.exposition import MetricsPage
from exporter.jobs import Target, TuningJob
from exporter.listing import Listing, list_changes, list_full
from exporter.refresh import SnapshotCache
from exporter.retention import PublishedJobs, select_published_jobs
from exporter.tags import TAGGING_OPERATION, TagCache


def targets_from_config(config: ExporterConfig) -> list[Target]:
    """One target per configured region and account; the ambient credentials when no account is set."""
    if not config.accounts:
        return [Target(region=region) for region in config.regions]
    return [
        Target(
            region=region,
            role_arn=account.role_arn,
            external_id=account.external_id,
            account_id=account.account_id,
        )
        for account in config.accounts
        for region in config.regions
    ]


class Exporter:
    """Everything one running exporter needs, built from an :class:`ExporterConfig`.

    ``registry`` holds every family and is what prometheus_client would render;
    ``metrics_page`` renders the same families for /metrics, reusing what has not changed.
    """

    def __init__(
        self,
        config: ExporterConfig,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.requests = RequestCounter()
        for region in config.regions:
            self.requests.declare(region, LIST_OPERATION)
        self._clock = clock
        self._clients = SageMakerClients(config.aws, self.requests, monotonic)
        tag_cache = None
        if config.tags:  # no allowlist, no tagging call at all
            for region in config.regions:
                self.requests.declare(region, TAGGING_OPERATION)
            tag_cache = TagCache(
                config.tags,
                self._clients.tagging,
                config.cache.tags_ttl_seconds,
                guard_of=lambda target: self._clients.guard(
                    target, config.cache.refresh_timeout_seconds
                ),
                clock=clock,
                monotonic=monotonic,
            )
        self.cache = SnapshotCache(
            targets_from_config(config),
            self._list_jobs,
            ttl_seconds=config.cache.ttl_seconds,
            full_resync_seconds=config.cache.full_resync_seconds,
            max_concurrent_refreshes=config.cache.max_concurrent_refreshes,
            refresh_timeout_seconds=config.cache.refresh_timeout_seconds,
            select_published=self._select_published,
            read_tags=tag_cache.tags_of if tag_cache is not None else None,
            clock=clock,
            monotonic=monotonic,
        )
        job_counts = JobCountCollector(self.cache.snapshots, config.filters.statuses)
        health = ExporterHealthCollector(self.cache.snapshots, self.requests)
        # The tags family follows the per-job ones, where MetricsPage renders it.
        tag_families: list[Collector] = []
        tag_health: list[Collector] = []
        if config.tags:
            tag_families.append(JobTagsCollector(self.cache.snapshots, config.tags))
            tag_health.append(TagReadCollector(self.cache.snapshots))
        self.registry = CollectorRegistry()
        summary_registry = CollectorRegistry()
        for collector in (
            PerJobCollector(self.cache.snapshots),
            *tag_families,
            job_counts,
            health,
            *tag_health,
        ):
            self.registry.register(collector)
        for collector in (job_counts, health, *tag_health):
            summary_registry.register(collector)
        self.metrics_page = MetricsPage(
            self.cache.snapshots, self.requests, summary_registry, self.registry, config.tags
        )

    def _list_jobs(self, target: Target, previous: Listing | None) -> Listing:
        guard = self._clients.guard(target, self.config.cache.refresh_timeout_seconds)
        client = self._clients.get(target)
        filters, now = self.config.filters, self._clock()
        if previous is None:
            return list_full(client, filters, now, guard)
        return list_changes(client, filters, now, previous, guard)

    def _select_published(self, jobs: Sequence[TuningJob], now: float) -> PublishedJobs:
        settings = self.config.per_job_metrics
        return select_published_jobs(jobs, now, settings.retention_seconds, settings.max_jobs)
