"""The assembled exporter: targets from the config, their AWS clients, the cache and the registry."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

from exporter.aws import LIST_OPERATION, RequestCounter, SageMakerClients, list_tuning_jobs
from exporter.collector import ExporterHealthCollector, TuningJobCollector
from exporter.config import ExporterConfig
from exporter.jobs import Target, TuningJob
from exporter.refresh import SnapshotCache


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
    """Everything one running exporter needs, built from an :class:`ExporterConfig`."""

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
        self._clients = SageMakerClients(config.aws, self.requests)
        self.cache = SnapshotCache(
            targets_from_config(config),
            self._list_jobs,
            ttl_seconds=config.cache.ttl_seconds,
            clock=clock,
            monotonic=monotonic,
        )
        self.registry = CollectorRegistry()
        self.registry.register(TuningJobCollector(self.cache.snapshots, config.filters.statuses))
        self.registry.register(ExporterHealthCollector(self.cache.snapshots, self.requests))

    def _list_jobs(self, target: Target) -> Sequence[TuningJob]:
        return list_tuning_jobs(self._clients.get(target), self.config.filters, now=self._clock())
