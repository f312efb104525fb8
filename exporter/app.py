"""The assembled exporter: targets from the config, their AWS clients, the cache and the registry."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from prometheus_client import CollectorRegistry

from exporter.aws import LIST_OPERATION, RequestCounter, SageMakerClients
from exporter.collector import (
    ExporterHealthCollector,
    JobCountCollector,
    PerJobCollector,
    job_families,
)
from exporter.config import ExporterConfig
from exporter.describe import DESCRIBE_OPERATION, JobDescriber, JobDescription
from exporter.exposition import MetricsPage
from exporter.jobs import Target, TuningJob
from exporter.listing import Listing, list_changes, list_full
from exporter.refresh import SnapshotCache
from exporter.retention import PublishedJobs, select_published_jobs


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
            if config.describe.enabled:
                self.requests.declare(region, DESCRIBE_OPERATION)
        self._clock = clock
        self._describer = JobDescriber(config.describe, clock)
        self._clients = SageMakerClients(config.aws, self.requests)
        self.cache = SnapshotCache(
            targets_from_config(config),
            self._list_jobs,
            ttl_seconds=config.cache.ttl_seconds,
            full_resync_seconds=config.cache.full_resync_seconds,
            max_concurrent_refreshes=config.cache.max_concurrent_refreshes,
            select_published=self._select_published,
            describe_jobs=self._describe_jobs if config.describe.enabled else None,
            clock=clock,
            monotonic=monotonic,
        )
        job_counts = JobCountCollector(self.cache.snapshots, config.filters.statuses)
        health = ExporterHealthCollector(self.cache.snapshots, self.requests)
        self.registry = CollectorRegistry()
        summary_registry = CollectorRegistry()
        families = job_families(config.describe.enabled)
        for collector in (PerJobCollector(self.cache.snapshots, families), job_counts, health):
            self.registry.register(collector)
        for collector in (job_counts, health):
            summary_registry.register(collector)
        self.metrics_page = MetricsPage(
            self.cache.snapshots, self.requests, summary_registry, self.registry, families
        )

    def _list_jobs(self, target: Target, previous: Listing | None) -> Listing:
        client = self._clients.get(target)
        if previous is None:
            return list_full(client, self.config.filters, now=self._clock())
        return list_changes(client, self.config.filters, now=self._clock(), previous=previous)

    def _select_published(self, jobs: Sequence[TuningJob], now: float) -> PublishedJobs:
        settings = self.config.per_job_metrics
        return select_published_jobs(jobs, now, settings.retention_seconds, settings.max_jobs)

    def _describe_jobs(
        self,
        target: Target,
        published: Sequence[TuningJob],
        previous: Mapping[str, JobDescription],
    ) -> Mapping[str, JobDescription]:
        client = self._clients.get(target)
        return self._describer.refresh(
            published,
            previous,
            lambda name: client.describe_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=name
            ),
            context=f" (account={target.account_id or '(default credentials)'} region={target.region})",
        )
