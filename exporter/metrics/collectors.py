"""Prometheus collectors: fresh metric families built from the cache's snapshots on every scrape.

The per-job families come from :mod:`exporter.metrics.families`; the others (job counts,
tags, the exporter's own health and reloads) are defined here.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.metrics.families import (
    JOB_FAMILIES,
    JOB_LABELS,
    STALENESS_NOTE,
    TAGS_FAMILY,
    TAGS_HELP,
    JobFamily,
    job_family_help,
    job_label_values,
    tag_label_values,
)
from exporter.model.jobs import RegionSnapshot, tag_label_name
from exporter.model.sharding import Shard
from exporter.model.statuses import TUNING_JOB_STATUSES, TUNING_JOB_STRATEGIES
from exporter.model.summaries import INVALID_FIELDS, SKIP_REASONS

TARGET_LABELS = ["account", "region"]


class PerJobCollector(Collector):
    """Per-job gauges for the published jobs of every account and region's latest snapshot.

    Sample output::

        # HELP sagemaker_tuning_job_training_jobs Training jobs of a tuning job by training job status ...
        # TYPE sagemaker_tuning_job_training_jobs gauge
        sagemaker_tuning_job_training_jobs{account="111111111111",job_name="xgb-churn-1",region="eu-west-1",status="InProgress",strategy="Bayesian",training_job_status="Completed"} 12.0

    With the description families (:func:`~exporter.metrics.families.job_families`), also::

        sagemaker_tuning_job_best_objective_value{account="111111111111",job_name="xgb-churn-1",objective_metric="validation:auc",objective_type="Maximize",region="eu-west-1",status="InProgress",strategy="Bayesian"} 0.93
    """

    def __init__(
        self,
        snapshots: Callable[[], Sequence[RegionSnapshot]],
        families: Sequence[JobFamily] = JOB_FAMILIES,
    ) -> None:
        self._snapshots = snapshots
        self._families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        snapshots = self._snapshots()
        for family in self._families:
            gauge = GaugeMetricFamily(
                family.name, job_family_help(family), labels=[*JOB_LABELS, *family.extra_labels]
            )
            for snapshot in snapshots:
                for job in snapshot.published:
                    labels = job_label_values(snapshot, job)
                    for extra_values, value in family.samples(snapshot, job):
                        gauge.add_metric([*labels, *extra_values], value)
                    if family.labelled is not None:
                        for pairs, value in family.labelled(snapshot, job):
                            named = {**dict(zip(JOB_LABELS, labels, strict=True)), **dict(pairs)}
                            gauge.add_sample(family.name, named, value)
            yield gauge


class JobTagsCollector(Collector):
    """One always-1 series per published job, its allowlisted tags as labels (kube-state-metrics' *_labels).

    Sample output::

        # HELP sagemaker_tuning_job_tags The tuning job's allowlisted tags as tag_<key> labels, ...
        # TYPE sagemaker_tuning_job_tags gauge
        sagemaker_tuning_job_tags{account="111111111111",job_name="xgb-1",region="eu-west-1",status="Completed",strategy="Bayesian",tag_project="churn",tag_team=""} 1.0
    """

    def __init__(
        self, snapshots: Callable[[], Sequence[RegionSnapshot]], tag_keys: Sequence[str]
    ) -> None:
        self._snapshots = snapshots
        self._tag_keys = tuple(tag_keys)
        self._labels = [*JOB_LABELS, *(tag_label_name(key) for key in self._tag_keys)]

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(TAGS_FAMILY, TAGS_HELP, labels=self._labels)
        for snapshot in self._snapshots():
            for job in snapshot.published:
                gauge.add_metric(
                    [
                        *job_label_values(snapshot, job),
                        *tag_label_values(snapshot, job, self._tag_keys),
                    ],
                    1,
                )
        yield gauge


class TagReadCollector(Collector):
    """When each account and region's tags were last read successfully.

    Sample output::

        # HELP sagemaker_tuning_exporter_tags_last_read_success_timestamp_seconds Time of the last successful read ...
        # TYPE sagemaker_tuning_exporter_tags_last_read_success_timestamp_seconds gauge
        sagemaker_tuning_exporter_tags_last_read_success_timestamp_seconds{account="111111111111",region="eu-west-1"} 1.7950009e+09
    """

    def __init__(self, snapshots: Callable[[], Sequence[RegionSnapshot]]) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        last_read = GaugeMetricFamily(
            "sagemaker_tuning_exporter_tags_last_read_success_timestamp_seconds",
            "Time of the last successful read of the account and region's tuning-job tags "
            "(GetResources), in seconds since the epoch; absent before the first.",
            labels=TARGET_LABELS,
        )
        for snapshot in self._snapshots():
            labels = [snapshot.account, snapshot.target.region]
            _add_optional(last_read, labels, snapshot.tags.read_time)
        yield last_read


class JobCountCollector(Collector):
    """Number of jobs by status and strategy per account and region, retention or not.

    Sample output::

        # HELP sagemaker_tuning_jobs Number of tuning jobs matching the filters, by status and strategy. ...
        # TYPE sagemaker_tuning_jobs gauge
        sagemaker_tuning_jobs{account="111111111111",region="eu-west-1",status="Completed",strategy="Bayesian"} 3.0
    """

    def __init__(
        self,
        snapshots: Callable[[], Sequence[RegionSnapshot]],
        statuses: Sequence[str] = TUNING_JOB_STATUSES,
    ) -> None:
        self._snapshots = snapshots
        self._statuses = tuple(statuses) or TUNING_JOB_STATUSES

    def collect(self) -> Iterator[Metric]:
        job_counts = GaugeMetricFamily(
            "sagemaker_tuning_jobs",
            f"Number of tuning jobs matching the filters, by status and strategy. {STALENESS_NOTE}",
            labels=["account", "region", "status", "strategy"],
        )
        for snapshot in self._snapshots():
            self._add_job_counts(job_counts, snapshot)
        yield job_counts

    def _add_job_counts(self, family: GaugeMetricFamily, snapshot: RegionSnapshot) -> None:
        """Every known status and strategy gets a sample, zero included, so alerts see 0, not absence."""
        counts = Counter((job.status, job.strategy) for job in snapshot.jobs)
        statuses = sorted({*self._statuses, *(status for status, _ in counts)})
        strategies = sorted({*TUNING_JOB_STRATEGIES, *(strategy for _, strategy in counts)})
        for status in statuses:
            for strategy in strategies:
                family.add_metric(
                    [snapshot.account, snapshot.target.region, status, strategy],
                    counts[(status, strategy)],
                )


class RequestCounts(Protocol):
    """The AWS request and failure counts the health collector publishes (a RequestCounter)."""

    def counts(self) -> dict[tuple[str, str], int]:
        """Requests sent, keyed by (region, operation)."""

    def error_counts(self) -> dict[tuple[str, str, str], int]:
        """Failed attempts, keyed by (region, operation, error kind)."""


class ExporterHealthCollector(Collector):
    """The exporter's own health: refreshes per account and region, AWS requests, build.

    Sample output::

        # HELP sagemaker_tuning_exporter_up Whether the last refresh of the account and region succeeded (1) or failed (0).
        # TYPE sagemaker_tuning_exporter_up gauge
        sagemaker_tuning_exporter_up{account="111111111111",region="eu-west-1"} 1.0
    """

    def __init__(
        self,
        snapshots: Callable[[], Sequence[RegionSnapshot]],
        requests: RequestCounts,
    ) -> None:
        self._snapshots = snapshots
        self._requests = requests

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "sagemaker_tuning_exporter_up",
            "Whether the last refresh of the account and region succeeded (1) or failed (0).",
            labels=TARGET_LABELS,
        )
        last_success = GaugeMetricFamily(
            "sagemaker_tuning_exporter_last_refresh_success_timestamp_seconds",
            "Time of the last successful refresh of the account and region, in seconds since "
            "the epoch.",
            labels=TARGET_LABELS,
        )
        duration = GaugeMetricFamily(
            "sagemaker_tuning_exporter_refresh_duration_seconds",
            "Wall time the last refresh of the account and region took, in seconds.",
            labels=TARGET_LABELS,
        )
        failures = CounterMetricFamily(
            "sagemaker_tuning_exporter_refresh_failures",
            "Refreshes of the account and region that failed since the exporter started.",
            labels=TARGET_LABELS,
        )
        listings = CounterMetricFamily(
            "sagemaker_tuning_exporter_listings",
            "Successful refreshes of the account and region since the exporter started, by kind: "
            "full (every job listed) or incremental (only what can have changed).",
            labels=[*TARGET_LABELS, "kind"],
        )
        unpublished = GaugeMetricFamily(
            "sagemaker_tuning_exporter_unpublished_jobs",
            "Jobs counted in sagemaker_tuning_jobs that have no per-job series, by reason: "
            "retention (ended before per_job_metrics.retention) or limit "
            "(over per_job_metrics.max_jobs).",
            labels=[*TARGET_LABELS, "reason"],
        )
        skipped = CounterMetricFamily(
            "sagemaker_tuning_exporter_skipped_job_summaries",
            "Job summaries the listings returned that were not published at all, since the "
            "exporter started, by reason: missing_name or invalid_name (not a string).",
            labels=[*TARGET_LABELS, "reason"],
        )
        invalid = CounterMetricFamily(
            "sagemaker_tuning_exporter_invalid_job_fields",
            "Fields of job summaries the listings returned that were missing or unusable and "
            "left out of the job's samples, since the exporter started, by API field name.",
            labels=[*TARGET_LABELS, "field"],
        )
        for snapshot in self._snapshots():
            labels = [snapshot.account, snapshot.target.region]
            up.add_metric(labels, 1 if snapshot.up else 0)
            _add_optional(last_success, labels, snapshot.last_success_time)
            duration.add_metric(labels, snapshot.refresh_duration_seconds)
            failures.add_metric(labels, snapshot.refresh_failures)
            listings.add_metric([*labels, "full"], snapshot.full_listings)
            listings.add_metric([*labels, "incremental"], snapshot.incremental_listings)
            unpublished.add_metric([*labels, "retention"], snapshot.hidden_by_retention)
            unpublished.add_metric([*labels, "limit"], snapshot.hidden_by_limit)
            # Every reason and field from 0, so rate() sees the first problem.
            for reason in SKIP_REASONS:
                skipped.add_metric([*labels, reason], snapshot.skipped_summaries.get(reason, 0))
            for field in INVALID_FIELDS:
                invalid.add_metric([*labels, field], snapshot.invalid_fields.get(field, 0))

        requests = CounterMetricFamily(
            "sagemaker_tuning_exporter_api_requests",
            "HTTP requests sent to AWS, retries included, by region and API operation.",
            labels=["region", "operation"],
        )
        for (region, operation), count in sorted(self._requests.counts().items()):
            requests.add_metric([region, operation], count)

        errors = CounterMetricFamily(
            "sagemaker_tuning_exporter_api_errors",
            "Failed HTTP requests to AWS, retries included, by region, API operation and kind of "
            "error: throttled, access_denied, expired_credentials, timeout, server_error, other.",
            labels=["region", "operation", "error"],
        )
        for (region, operation, kind), count in sorted(self._requests.error_counts().items()):
            errors.add_metric([region, operation, kind], count)

        build_info = GaugeMetricFamily(
            "sagemaker_tuning_exporter_build_info",
            "Version of the exporter and of Python it runs on; always 1.",
            labels=["version", "python_version"],
        )
        build_info.add_metric([__version__, platform.python_version()], 1)

        yield from (
            up,
            last_success,
            duration,
            failures,
            listings,
            unpublished,
            skipped,
            invalid,
            requests,
            errors,
            build_info,
        )


class ShardCollector(Collector):
    """Which shard this replica is, and how many account and region pairs it owns.

    Sample output::

        # HELP sagemaker_tuning_exporter_shard_info The shard this replica is (--shard) of how many (--total-shards); always 1.
        # TYPE sagemaker_tuning_exporter_shard_info gauge
        sagemaker_tuning_exporter_shard_info{shard="1",total_shards="3"} 1.0
        # HELP sagemaker_tuning_exporter_owned_targets Account and region pairs this replica refreshes and publishes: its shard's share of the configured ones.
        # TYPE sagemaker_tuning_exporter_owned_targets gauge
        sagemaker_tuning_exporter_owned_targets 4.0
    """

    def __init__(self, shard: Shard, owned_targets: Callable[[], int]) -> None:
        self._shard = shard
        self._owned_targets = owned_targets

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "sagemaker_tuning_exporter_shard_info",
            "The shard this replica is (--shard) of how many (--total-shards); always 1.",
            labels=["shard", "total_shards"],
        )
        info.add_metric([str(self._shard.index), str(self._shard.total)], 1)
        yield info
        yield GaugeMetricFamily(
            "sagemaker_tuning_exporter_owned_targets",
            "Account and region pairs this replica refreshes and publishes: its shard's share "
            "of the configured ones.",
            value=self._owned_targets(),
        )


@dataclass(frozen=True)
class ConfigReloadStatus:
    """The outcome of the last configuration reload.

    ``last_success_time`` is when the configuration in force was loaded (epoch seconds);
    ``attempts`` counts the reloads tried, so that anything cached can tell the status changed.
    """

    successful: bool
    last_success_time: float
    attempts: int = 0


class ConfigReloadCollector(Collector):
    """Whether the last configuration reload worked, and when the configuration in force was loaded.

    Sample output::

        # HELP sagemaker_tuning_exporter_config_last_reload_successful Whether the last configuration reload attempt succeeded (1) or failed (0).
        # TYPE sagemaker_tuning_exporter_config_last_reload_successful gauge
        sagemaker_tuning_exporter_config_last_reload_successful 1.0
    """

    def __init__(self, status: Callable[[], ConfigReloadStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        yield GaugeMetricFamily(
            "sagemaker_tuning_exporter_config_last_reload_successful",
            "Whether the last configuration reload attempt succeeded (1) or failed (0).",
            value=1 if status.successful else 0,
        )
        yield GaugeMetricFamily(
            "sagemaker_tuning_exporter_config_last_reload_success_timestamp_seconds",
            "Time the configuration in force was loaded, at start or by a reload, in seconds "
            "since the epoch.",
            value=status.last_success_time,
        )


class DiscoveredAccountsCollector(Collector):
    """How many ACTIVE accounts discovery found, after ``include_accounts`` and ``exclude_accounts``.

    Sample output::

        # HELP sagemaker_tuning_exporter_discovered_accounts ACTIVE accounts found in the organization ...
        # TYPE sagemaker_tuning_exporter_discovered_accounts gauge
        sagemaker_tuning_exporter_discovered_accounts 42.0
    """

    def __init__(self, count: int) -> None:
        self._count = count

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "sagemaker_tuning_exporter_discovered_accounts",
            "ACTIVE accounts found in the organization by the last successful ListAccounts, "
            "after include_accounts and exclude_accounts.",
            value=self._count,
        )


class CacheTtlCollector(Collector):
    """The configured ``cache.ttl``, so that rules can tell data too old from data merely cached.

    Sample output::

        # HELP sagemaker_tuning_exporter_cache_ttl_seconds How long a refresh's data is served ...
        # TYPE sagemaker_tuning_exporter_cache_ttl_seconds gauge
        sagemaker_tuning_exporter_cache_ttl_seconds 60.0
    """

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl_seconds = ttl_seconds

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "sagemaker_tuning_exporter_cache_ttl_seconds",
            "How long a refresh's data is served before a scrape starts the next refresh "
            "(cache.ttl), in seconds.",
            value=self._ttl_seconds,
        )


def _add_optional(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None:
        family.add_metric(labels, value)
