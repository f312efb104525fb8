"""The assembled exporter: targets from the config, their AWS clients, the cache and the registry.

:class:`LiveExporter` owns the exporter in force and swaps in a new one when the
configuration is reloaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from exporter.aws.clients import SageMakerClients
from exporter.aws.counting import RequestCounter
from exporter.aws.operations import (
    DESCRIBE_OPERATION,
    LIST_ACCOUNTS_OPERATION,
    LIST_OPERATION,
    TAGGING_OPERATION,
    TRAINING_JOBS_OPERATION,
)
from exporter.aws.organizations import AccountListError, OrganizationAccounts
from exporter.config.reading import ConfigError
from exporter.config.settings import AccountSettings, ExporterConfig, aws_partition
from exporter.metrics.collectors import (
    CacheTtlCollector,
    ConfigReloadCollector,
    ConfigReloadStatus,
    DiscoveredAccountsCollector,
    ExporterHealthCollector,
    JobCountCollector,
    JobTagsCollector,
    PerJobCollector,
    ShardCollector,
    TagReadCollector,
)
from exporter.metrics.exposition import MetricsPage, Versioned
from exporter.metrics.families import job_families
from exporter.metrics.process import exporter_process_collectors
from exporter.model.jobs import Target
from exporter.model.sharding import UNSHARDED, Shard
from exporter.refresh.cache import SnapshotCache
from exporter.refresh.discovery import AccountDiscovery, AccountIds
from exporter.refresh.pipeline import RefreshPipeline
from exporter.refresh.tags import TagCache

log = logging.getLogger(__name__)


def discovered_and_selected(
    config: ExporterConfig, discovered: Sequence[str] | None
) -> tuple[str, ...]:
    """The discovered account IDs that ``include_accounts`` and ``exclude_accounts`` let through."""
    organizations = config.discovery.organizations
    if organizations is None or not discovered:
        return ()
    return tuple(account for account in discovered if organizations.selects(account))


def monitored_accounts(
    config: ExporterConfig, discovered: Sequence[str] | None = None
) -> list[AccountSettings]:
    """The configured accounts, then the discovered ones that are not configured.

    A discovered account is reached through ``discovery.organizations.role_name`` in the
    partition of the first configured region (the region the Organizations client is
    made for); a configured account keeps its own role and external ID.
    """
    accounts = list(config.accounts)
    organizations = config.discovery.organizations
    if organizations is None:
        return accounts
    configured = {account.account_id for account in accounts}
    partition = aws_partition(config.regions[0])
    accounts.extend(
        AccountSettings(organizations.role_arn(account_id, partition), organizations.external_id)
        for account_id in discovered_and_selected(config, discovered)
        if account_id not in configured
    )
    return accounts


def targets_from_config(
    config: ExporterConfig, discovered: Sequence[str] | None = None
) -> list[Target]:
    """One target per region and monitored account (see :func:`monitored_accounts`).

    Without accounts configured or discovery, one target per region on the ambient
    credentials; with discovery, the ambient credentials list no jobs themselves.
    """
    accounts = monitored_accounts(config, discovered)
    if not accounts and config.discovery.organizations is None:
        return [Target(region=region) for region in config.regions]
    return [
        Target(
            region=region,
            role_arn=account.role_arn,
            external_id=account.external_id,
            account_id=account.account_id,
        )
        for account in accounts
        for region in config.regions
    ]


def organization_reader(
    config: ExporterConfig,
    requests: RequestCounter,
    monotonic: Callable[[], float] = time.monotonic,
) -> OrganizationAccounts | None:
    """The reader of the organization's accounts, None without ``discovery.organizations``.

    It is made for the first configured region, under which its requests are counted.
    """
    if config.discovery.organizations is None:
        return None
    return OrganizationAccounts(
        config.aws,
        config.regions[0],
        requests,
        timeout_seconds=config.cache.refresh_timeout_seconds,
        monotonic=monotonic,
    )


def discovers_the_same_way(old: ExporterConfig, new: ExporterConfig) -> bool:
    """Whether ``new`` discovers the accounts as ``old`` does: then a reload keeps the list."""
    return (
        old.discovery == new.discovery
        and old.aws == new.aws
        and old.regions[0] == new.regions[0]
        and old.cache.refresh_timeout_seconds == new.cache.refresh_timeout_seconds
    )


def exporter_for_one_refresh(
    config: ExporterConfig, shard: Shard = UNSHARDED, *, exporter_metrics: bool = True
) -> tuple[Exporter, str | None]:
    """An :class:`Exporter` of ``shard`` for ``--once``, and why account discovery failed, if it did.

    The organization's accounts are read first, once, in this thread.
    """
    requests = RequestCounter()
    reader = organization_reader(config, requests)
    discovered: AccountIds | None = None
    error = None
    if reader is not None:
        try:
            discovered = reader.read()
        except AccountListError as failure:
            error = str(failure)
    exporter = Exporter(
        config,
        discovered_accounts=discovered,
        requests=requests,
        shard=shard,
        exporter_metrics=exporter_metrics,
    )
    return exporter, error


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

    ``discovered_accounts`` are the account IDs discovery found (None: not read yet, or no
    discovery); they are monitored beside the configured ones (see
    :func:`monitored_accounts`). ``requests`` is the counter to count into when there is no
    ``previous`` (one is made otherwise).

    ``shard`` chooses, of the configured and discovered targets, those this exporter
    refreshes and publishes (see :mod:`exporter.model.sharding`); the request counts are
    published for the regions of those targets only, since no request goes to another
    region, and for the region the organization's accounts are read in.
    """

    def __init__(
        self,
        config: ExporterConfig,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        previous: Exporter | None = None,
        reload_status: Callable[[], ConfigReloadStatus] | None = None,
        discovered_accounts: Sequence[str] | None = None,
        requests: RequestCounter | None = None,
        shard: Shard = UNSHARDED,
        exporter_metrics: bool = True,
    ) -> None:
        self.config = config
        self.shard = shard
        self.discovered_accounts = (
            None if discovered_accounts is None else tuple(discovered_accounts)
        )
        targets = shard.select(targets_from_config(config, self.discovered_accounts))
        owned_regions = [
            region for region in config.regions if any(t.region == region for t in targets)
        ]
        if previous is not None:
            requests = previous.requests
        self.requests: RequestCounter = requests if requests is not None else RequestCounter()
        published_regions = _declare_operations(self.requests, config, owned_regions)
        self._clients: SageMakerClients
        if previous is not None and previous.config.aws == config.aws:
            self._clients = previous._clients
            self._clients.keep_only(targets)
        else:
            self._clients = SageMakerClients(config.aws, self.requests, monotonic)
        self._tag_cache: TagCache | None = None
        if config.tags:  # no allowlist, no tagging call at all
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
            targets,
            self.pipeline,
            ttl_seconds=config.cache.ttl_seconds,
            full_resync_seconds=config.cache.full_resync_seconds,
            max_concurrent_refreshes=config.cache.max_concurrent_refreshes,
            refresh_timeout_seconds=config.cache.refresh_timeout_seconds,
            clock=clock,
            monotonic=monotonic,
        )
        job_counts = JobCountCollector(self.cache.snapshots, config.filters.statuses)
        # Counts of regions no longer configured stay in the shared counter, unpublished, so
        # they carry on from where they were if the region comes back.
        health = ExporterHealthCollector(
            self.cache.snapshots, _RegionRequestCounts(self.requests, published_regions)
        )
        # The tags family follows the per-job ones, where MetricsPage renders it.
        tag_families: list[Collector] = []
        tag_health: list[Collector] = []
        if config.tags:
            tag_families.append(JobTagsCollector(self.cache.snapshots, config.tags))
            tag_health.append(TagReadCollector(self.cache.snapshots))
        summary_registry = CollectorRegistry()
        summary_collectors: list[Collector] = [
            job_counts,
            health,
            *tag_health,
            ShardCollector(shard, lambda: len(self.cache.targets)),
            CacheTtlCollector(config.cache.ttl_seconds),
        ]
        if config.discovery.organizations is not None and self.discovered_accounts is not None:
            summary_collectors.append(
                DiscoveredAccountsCollector(
                    len(discovered_and_selected(config, self.discovered_accounts))
                )
            )
        if reload_status is not None:
            summary_collectors.append(ConfigReloadCollector(reload_status))
        families = job_families(config.describe.enabled, config.training_jobs)
        page_collectors = [
            PerJobCollector(self.cache.snapshots, families),
            *tag_families,
            *summary_collectors,
        ]
        process_collectors = exporter_process_collectors() if exporter_metrics else []
        self.registry = _registry_of([*page_collectors, *process_collectors])
        page_registry = _registry_of(page_collectors)  # all but what is rendered per scrape
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
            fresh_registry=_registry_of(process_collectors),
        )
        # Every snapshot's lines are rendered on the refresh that made it, not on a scrape.
        self.cache.prepare_with(self.metrics_page.prepare)
        if previous is not None:
            self._carry_over(previous)

    def _carry_over(self, previous: Exporter) -> None:
        """Start from what ``previous`` rendered and, when it lists the same jobs, what it holds."""
        self.metrics_page.inherit(previous.metrics_page, self.cache.targets)
        if lists_the_same_jobs(previous.config, self.config):
            self.cache.carry_over(previous.cache, previous.cache.targets)


def _declare_operations(
    requests: RequestCounter, config: ExporterConfig, owned_regions: Sequence[str]
) -> list[str]:
    """Declare the operations ``config`` calls, from 0; returns the regions they are sent to.

    Those are the regions of the exporter's own targets, and the first configured region,
    where every replica reads the organization's accounts with discovery.
    """
    regions = list(owned_regions)
    if config.discovery.organizations is not None:
        requests.declare(config.regions[0], LIST_ACCOUNTS_OPERATION)
        if config.regions[0] not in regions:
            regions.insert(0, config.regions[0])
    for region in owned_regions:
        requests.declare(region, LIST_OPERATION)
        if config.describe.enabled:
            requests.declare(region, DESCRIBE_OPERATION)
        if config.training_jobs.enabled:
            requests.declare(region, TRAINING_JOBS_OPERATION)
        if config.tags:  # no allowlist, no tagging call at all
            requests.declare(region, TAGGING_OPERATION)
    return regions


def _has_served_all(exporter: Exporter) -> bool:
    """Whether every target of ``exporter`` has been refreshed once, and, with discovery, its
    account list had been read: before that, the accounts the organization holds are unknown."""
    discovering = exporter.config.discovery.organizations is not None
    if discovering and exporter.discovered_accounts is None:
        return False
    return exporter.cache.is_ready()


def _registry_of(collectors: Sequence[Collector]) -> CollectorRegistry:
    """A new registry holding ``collectors``, in that order."""
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return registry


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
    """The exporter in force, replaced as a whole when the configuration or the account list changes.

    :meth:`reload` loads the configuration again with ``load`` and builds an
    :class:`Exporter` from it that carries over the state of every unchanged target
    (see :class:`Exporter`), then swaps it in at once: a request sees either the old
    exporter or the new one, never a mix. Reloads run one at a time. A configuration that
    does not load leaves the exporter in force untouched, and says so in the reload gauges.

    With ``discovery.organizations``, the organization's accounts are read once here,
    before the first refresh, and then every ``refresh`` on a daemon thread; a list that
    differs from the one in force is put in force the same way as a reload, without
    counting as one. A reload that leaves the discovery settings (and the AWS settings and
    first region its reads use) as they were keeps the list and its timer; any other
    reload reads the list again at once, keeping the last one if that read fails.

    A refresh in flight at a swap is adopted by the new exporter when its target is
    unchanged, and dropped otherwise (see :meth:`SnapshotCache.carry_over`): the retired
    exporter's refreshes can only ever write to the retired cache.

    Every exporter it builds serves the same ``shard``: a reload changes the targets, not
    which replica owns which.
    """

    def __init__(
        self,
        config: ExporterConfig,
        load: Callable[[], ExporterConfig],
        source: str,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        shard: Shard = UNSHARDED,
        exporter_metrics: bool = True,
    ) -> None:
        self._load = load
        self.source = source
        self._shard = shard
        self._clock = clock
        self._monotonic = monotonic
        self._reload_lock = threading.Lock()
        self._status = ConfigReloadStatus(successful=True, last_success_time=clock())
        self._exporter_metrics = exporter_metrics
        requests = RequestCounter()
        self._discovery = self._discover(config, requests, known=None)
        self._exporter = Exporter(
            config,
            clock,
            monotonic,
            reload_status=self.reload_status,
            discovered_accounts=self._discovered(),
            requests=requests,
            shard=shard,
            exporter_metrics=exporter_metrics,
        )
        self._was_ready = False
        if self._discovery is not None:
            self._discovery.start()

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

        With discovery, not before the organization's account list has been read once.
        Targets a reload or discovery adds do not make the exporter unready again: the
        targets it kept are still served, and a probe failing would take them out of
        service too.
        """
        if not self._was_ready:
            self._was_ready = _has_served_all(self._exporter)
        return self._was_ready

    def close(self) -> None:
        """Stop reading the account list; the exporter in force keeps serving."""
        with self._reload_lock:
            if self._discovery is not None:
                self._discovery.stop()
                self._discovery = None

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
            if not discovers_the_same_way(old.config, config):
                previous_discovery = self._discovery
                if previous_discovery is not None:
                    previous_discovery.stop()
                self._discovery = self._discover(
                    config,
                    old.requests,
                    known=previous_discovery.accounts if previous_discovery else None,
                )
                if self._discovery is not None:
                    self._discovery.start()
            new = self._put_in_force(config, self._discovered())
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
            self._start_new_targets(old, new)

    def _discover(
        self, config: ExporterConfig, requests: RequestCounter, known: AccountIds | None
    ) -> AccountDiscovery | None:
        """Discovery for ``config``, its list read once now; None without discovery."""
        reader = organization_reader(config, requests, self._monotonic)
        if reader is None or config.discovery.organizations is None:
            return None
        discovery = AccountDiscovery(
            reader.read,
            config.discovery.organizations.refresh_seconds,
            lambda accounts: self._apply_discovered(discovery, accounts),
            known=known,
        )
        discovery.read_now()
        return discovery

    def _discovered(self) -> AccountIds | None:
        return self._discovery.accounts if self._discovery is not None else None

    def _apply_discovered(self, discovery: AccountDiscovery, accounts: AccountIds) -> None:
        """Put ``accounts``, read by ``discovery``, in force, unless they already are."""
        with self._reload_lock:
            old = self._exporter
            # A discovery a reload replaced may still finish a read: its list is stale.
            if discovery is not self._discovery or old.discovered_accounts == accounts:
                return
            new = self._put_in_force(old.config, accounts)
            before = set(old.discovered_accounts or ())
            log.info(
                "discovered accounts changed: %d accounts, added %s, removed %s; "
                "%d account/region pairs",
                len(accounts),
                ", ".join(sorted(set(accounts) - before)) or "none",
                ", ".join(sorted(before - set(accounts))) or "none",
                len(new.cache.targets),
            )
            self._start_new_targets(old, new)

    def _put_in_force(self, config: ExporterConfig, discovered: AccountIds | None) -> Exporter:
        """Build the exporter of ``config`` and ``discovered`` from the one in force, and swap it in.

        Called with the reload lock held.
        """
        old = self._exporter
        if _has_served_all(old):
            self._was_ready = True
        new = Exporter(
            config,
            self._clock,
            self._monotonic,
            previous=old,
            reload_status=self.reload_status,
            discovered_accounts=discovered,
            shard=self._shard,
            exporter_metrics=self._exporter_metrics,
        )
        self._exporter = new
        return new

    @staticmethod
    def _start_new_targets(old: Exporter, new: Exporter) -> None:
        """Refresh the targets ``new`` added now rather than at the next scrape; retire ``old``."""
        new.cache.refresh_stale(timeout=0)
        old.cache.close()
