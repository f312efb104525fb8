"""The assembled exporter: targets from the config, their AWS clients, the cache and the registry.

:class:`LiveExporter` owns the exporter in force and swaps in a new one when the
configuration is reloaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from exporter.aws.clients import SageMakerClients
from exporter.aws.counting import RequestCounter
from exporter.aws.operations import DESCRIBE_OPERATION, LIST_OPERATION, TAGGING_OPERATION
from exporter.config.reading import ConfigError
from exporter.config.settings import ExporterConfig
from exporter.metrics.collectors import (
    ConfigReloadCollector,
    ConfigReloadStatus,
    ExporterHealthCollector,
    JobCountCollector,
    JobTagsCollector,
    PerJobCollector,
    TagReadCollector,
)
from exporter.metrics.exposition import MetricsPage, Versioned
from exporter.metrics.families import job_families
from exporter.metrics.process import exporter_process_collectors
from exporter.model.jobs import Target
from exporter.refresh.cache import SnapshotCache
from exporter.refresh.pipeline import RefreshPipeline
from exporter.refresh.tags import TagCache

log = logging.getLogger(__name__)


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


def lists_the_same_jobs(old: ExporterConfig, new: ExporterConfig) -> bool:
    """Whether a target in both configurations lists the same jobs in the same way under each.

    The filters choose the jobs; the AWS settings (endpoint, profile, attempts) how they are
    reached. Accounts and regions are compared target by target.
    """
    return old.filters == new.filters and old.aws == new.aws


def _reads_the_same_tags(old: ExporterConfig, new: ExporterConfig) -> bool:
    """Whether the tags read under ``old`` are those ``new`` asks for, read the same way.

    If so, a reload keeps the tags already read and when they were read, so it sends no
    GetResources request before ``cache.tags_ttl`` has passed.
    """
    return (
        old.tags == new.tags
        and old.cache.tags_ttl_seconds == new.cache.tags_ttl_seconds
        and old.cache.refresh_timeout_seconds == new.cache.refresh_timeout_seconds
        and old.aws == new.aws
    )


class Exporter:
    """Everything one running exporter needs, built from an :class:`ExporterConfig`.

    ``registry`` holds every family and is what prometheus_client would render;
    ``metrics_page`` renders the same families for /metrics, reusing what has not changed.

    Built with ``previous`` (the exporter of the configuration it replaces), it keeps that
    exporter's request counter, so counters never go backwards; its AWS clients when the AWS
    settings are the same, so no role is assumed again; and, when
    :func:`lists_the_same_jobs`, the cached state of every target both configurations have.
    ``reload_status`` adds the configuration reload gauges; ``exporter_metrics`` the
    exporter's own process metrics (``process_*``, ``python_info``, ``python_gc_*``).
    """

    def __init__(
        self,
        config: ExporterConfig,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        previous: Exporter | None = None,
        reload_status: Callable[[], ConfigReloadStatus] | None = None,
        exporter_metrics: bool = True,
    ) -> None:
        self.config = config
        self.requests: RequestCounter = (
            previous.requests if previous is not None else RequestCounter()
        )
        for region in config.regions:
            self.requests.declare(region, LIST_OPERATION)
            if config.describe.enabled:
                self.requests.declare(region, DESCRIBE_OPERATION)
        self._clients: SageMakerClients
        if previous is not None and previous.config.aws == config.aws:
            self._clients = previous._clients
        else:
            self._clients = SageMakerClients(config.aws, self.requests, monotonic)
        self._tag_cache: TagCache | None = None
        if config.tags:  # no allowlist, no tagging call at all
            for region in config.regions:
                self.requests.declare(region, TAGGING_OPERATION)
            if previous is not None and _reads_the_same_tags(previous.config, config):
                self._tag_cache = previous._tag_cache
            else:
                self._tag_cache = TagCache(
                    config.tags,
                    self._clients.tagging,
                    config.cache.tags_ttl_seconds,
                    clock=clock,
                    monotonic=monotonic,
                )
        self.pipeline = RefreshPipeline(
            config, self._clients, tag_cache=self._tag_cache, clock=clock, monotonic=monotonic
        )
        self.cache = SnapshotCache(
            targets_from_config(config),
            self.pipeline,
            ttl_seconds=config.cache.ttl_seconds,
            full_resync_seconds=config.cache.full_resync_seconds,
            max_concurrent_refreshes=config.cache.max_concurrent_refreshes,
            refresh_timeout_seconds=config.cache.refresh_timeout_seconds,
            clock=clock,
            monotonic=monotonic,
        )
        if previous is not None and lists_the_same_jobs(previous.config, config):
            self.cache.carry_over(previous.cache, previous.cache.targets)
        job_counts = JobCountCollector(self.cache.snapshots, config.filters.statuses)
        # Counts of regions no longer configured stay in the shared counter, unpublished, so
        # they carry on from where they were if the region comes back.
        health = ExporterHealthCollector(
            self.cache.snapshots, _RegionRequestCounts(self.requests, config.regions)
        )
        # The tags family follows the per-job ones, where MetricsPage renders it.
        tag_families: list[Collector] = []
        tag_health: list[Collector] = []
        if config.tags:
            tag_families.append(JobTagsCollector(self.cache.snapshots, config.tags))
            tag_health.append(TagReadCollector(self.cache.snapshots))
        self.registry = CollectorRegistry()
        page_registry = CollectorRegistry()  # all but the process metrics (rendered per scrape)
        process_registry = CollectorRegistry()
        summary_registry = CollectorRegistry()
        summary_collectors: list[Collector] = [job_counts, health, *tag_health]
        if reload_status is not None:
            summary_collectors.append(ConfigReloadCollector(reload_status))
        families = job_families(config.describe.enabled)
        page_collectors = [
            PerJobCollector(self.cache.snapshots, families),
            *tag_families,
            *summary_collectors,
        ]
        process_collectors = exporter_process_collectors() if exporter_metrics else []
        for collector in [*page_collectors, *process_collectors]:
            self.registry.register(collector)
        for collector in page_collectors:
            page_registry.register(collector)
        for collector in process_collectors:
            process_registry.register(collector)
        for collector in summary_collectors:
            summary_registry.register(collector)
        changes: Versioned = self.requests
        if reload_status is not None:
            changes = _Changes(self.requests, reload_status)
        self.metrics_page = MetricsPage(
            self.cache.snapshots,
            changes,
            summary_registry,
            page_registry,
            families=families,
            tag_keys=config.tags,
            fresh_registry=process_registry,
        )


class _RegionRequestCounts:
    """The request counts of the configured regions only."""

    def __init__(self, requests: RequestCounter, regions: Collection[str]) -> None:
        self._requests = requests
        self._regions = frozenset(regions)

    def counts(self) -> dict[tuple[str, str], int]:
        return {key: n for key, n in self._requests.counts().items() if key[0] in self._regions}

    def error_counts(self) -> dict[tuple[str, str, str], int]:
        return {
            key: n for key, n in self._requests.error_counts().items() if key[0] in self._regions
        }


class _Changes:
    """Changes with the request counts and with every reload attempt: when /metrics must be rendered again."""

    def __init__(
        self, requests: RequestCounter, reload_status: Callable[[], ConfigReloadStatus]
    ) -> None:
        self._requests = requests
        self._reload_status = reload_status

    def version(self) -> int:
        # Both only ever grow, so their sum changes whenever either does.
        return self._requests.version() + self._reload_status().attempts


class LiveExporter:
    """The exporter in force, replaced as a whole when the configuration is reloaded.

    :meth:`reload` loads the configuration again with ``load`` and builds an
    :class:`Exporter` from it that carries over the state of every unchanged target
    (see :class:`Exporter`), then swaps it in at once: a request sees either the old
    exporter or the new one, never a mix. Reloads run one at a time. A configuration that
    does not load leaves the exporter in force untouched, and says so in the reload gauges.

    A refresh in flight at a reload is adopted by the new exporter when its target is
    unchanged, and dropped otherwise (see :meth:`SnapshotCache.carry_over`): the retired
    exporter's refreshes can only ever write to the retired cache.
    """

    def __init__(
        self,
        config: ExporterConfig,
        load: Callable[[], ExporterConfig],
        source: str,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        exporter_metrics: bool = True,
    ) -> None:
        self._load = load
        self.source = source
        self._clock = clock
        self._monotonic = monotonic
        self._reload_lock = threading.Lock()
        self._status = ConfigReloadStatus(successful=True, last_success_time=clock())
        self._exporter_metrics = exporter_metrics
        self._exporter = Exporter(
            config,
            clock,
            monotonic,
            reload_status=self.reload_status,
            exporter_metrics=exporter_metrics,
        )
        self._was_ready = False

    @property
    def exporter(self) -> Exporter:
        """The exporter in force."""
        return self._exporter

    def serving(self) -> tuple[SnapshotCache, MetricsPage]:
        """The cache and /metrics page of the exporter in force, taken together."""
        exporter = self._exporter
        return exporter.cache, exporter.metrics_page

    def reload_status(self) -> ConfigReloadStatus:
        """The outcome of the last reload."""
        return self._status

    def is_ready(self) -> bool:
        """True once every target has finished its first refresh, and for good after that.

        Targets a reload adds do not make the exporter unready again: the targets it kept
        are still served, and a probe failing would take them out of service too.
        """
        if not self._was_ready:
            self._was_ready = self._exporter.cache.is_ready()
        return self._was_ready

    def reload(self) -> None:
        """Load the configuration again and put it in force.

        Raises :class:`ConfigError`, logged here once, when it does not load; the
        configuration in force then stays.
        """
        with self._reload_lock:
            attempts = self._status.attempts + 1
            try:
                config = self._load()
            except ConfigError as error:
                self._status = ConfigReloadStatus(False, self._status.last_success_time, attempts)
                log.error("configuration not reloaded, still using the previous one: %s", error)
                raise
            old = self._exporter
            if old.cache.is_ready():
                self._was_ready = True
            new = Exporter(
                config,
                self._clock,
                self._monotonic,
                previous=old,
                reload_status=self.reload_status,
                exporter_metrics=self._exporter_metrics,
            )
            self._exporter = new
            self._status = ConfigReloadStatus(True, self._clock(), attempts)
            old_targets, new_targets = set(old.cache.targets), set(new.cache.targets)
            log.info(
                "configuration reloaded from %s: %d account/region pairs, %d added, %d removed%s",
                self.source,
                len(new_targets),
                len(new_targets - old_targets),
                len(old_targets - new_targets),
                ""
                if lists_the_same_jobs(old.config, config)
                else "; filters or aws settings changed, so every pair lists its jobs again",
            )
            # New targets get their first refresh now rather than at the next scrape.
            new.cache.refresh_stale(timeout=0)
            old.cache.close()
