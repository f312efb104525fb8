"""Prometheus collectors: fresh metric families built from the cache's snapshots on every scrape."""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.aws import RequestCounter
from exporter.config import TUNING_JOB_STATUSES, TUNING_JOB_STRATEGIES
from exporter.jobs import (
    OBJECTIVE_STATUSES,
    TRAINING_JOB_STATUSES,
    RegionSnapshot,
    TuningJob,
)

JOB_LABELS = ["account", "region", "job_name", "status", "strategy"]
TARGET_LABELS = ["account", "region"]
_STALENESS_NOTE = "Values may be up to cache.ttl old."


class TuningJobCollector(Collector):
    """Per-job gauges and job counts from the latest snapshot of every account and region.

    Sample output::

        # HELP sagemaker_tuning_job_training_jobs Training jobs of a tuning job by training job status ...
        # TYPE sagemaker_tuning_job_training_jobs gauge
        sagemaker_tuning_job_training_jobs{account="111111111111",job_name="xgb-churn-1",region="eu-west-1",status="InProgress",strategy="Bayesian",training_job_status="Completed"} 12.0
    """

    def __init__(
        self,
        snapshots: Callable[[], Sequence[RegionSnapshot]],
        statuses: Sequence[str] = TUNING_JOB_STATUSES,
    ) -> None:
        self._snapshots = snapshots
        self._statuses = tuple(statuses) or TUNING_JOB_STATUSES

    def collect(self) -> Iterator[Metric]:
        snapshots = self._snapshots()
        training_jobs = _job_gauge(
            "sagemaker_tuning_job_training_jobs",
            "Training jobs of a tuning job by training job status (TrainingJobStatusCounters).",
            ["training_job_status"],
        )
        objective_evaluations = _job_gauge(
            "sagemaker_tuning_job_objective_evaluations",
            "Objective metric evaluations of a tuning job's training jobs by objective status "
            "(ObjectiveStatusCounters).",
            ["objective_status"],
        )
        max_training_jobs = _job_gauge(
            "sagemaker_tuning_job_max_training_jobs",
            "Maximum number of training jobs the tuning job may launch (ResourceLimits).",
        )
        max_parallel = _job_gauge(
            "sagemaker_tuning_job_max_parallel_training_jobs",
            "Maximum number of training jobs the tuning job runs at once (ResourceLimits).",
        )
        max_runtime = _job_gauge(
            "sagemaker_tuning_job_max_runtime_seconds",
            "Maximum runtime of the tuning job in seconds (ResourceLimits).",
        )
        created = _job_gauge(
            "sagemaker_tuning_job_creation_timestamp_seconds",
            "Time the tuning job was created, in seconds since the epoch.",
        )
        ended = _job_gauge(
            "sagemaker_tuning_job_end_timestamp_seconds",
            "Time the tuning job ended, in seconds since the epoch; absent while it runs.",
        )
        modified = _job_gauge(
            "sagemaker_tuning_job_last_modified_timestamp_seconds",
            "Time the tuning job was last modified, in seconds since the epoch.",
        )
        job_counts = GaugeMetricFamily(
            "sagemaker_tuning_jobs",
            f"Number of tuning jobs matching the filters, by status and strategy. {_STALENESS_NOTE}",
            labels=["account", "region", "status", "strategy"],
        )

        for snapshot in snapshots:
            for job in snapshot.jobs:
                labels = _job_labels(snapshot, job)
                _add_counts(training_jobs, labels, job.training_job_counts, TRAINING_JOB_STATUSES)
                _add_counts(objective_evaluations, labels, job.objective_counts, OBJECTIVE_STATUSES)
                _add_optional(max_training_jobs, labels, job.max_training_jobs)
                _add_optional(max_parallel, labels, job.max_parallel_training_jobs)
                _add_optional(max_runtime, labels, job.max_runtime_seconds)
                created.add_metric(labels, job.creation_time)
                _add_optional(ended, labels, job.end_time)
                _add_optional(modified, labels, job.last_modified_time)
            self._add_job_counts(job_counts, snapshot)

        yield from (
            training_jobs,
            objective_evaluations,
            max_training_jobs,
            max_parallel,
            max_runtime,
            created,
            ended,
            modified,
            job_counts,
        )

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


class ExporterHealthCollector(Collector):
    """The exporter's own health: refresh outcome per account and region, AWS requests, build.

    Sample output::

        # HELP sagemaker_tuning_exporter_up Whether the last refresh of the account and region succeeded (1) or failed (0).
        # TYPE sagemaker_tuning_exporter_up gauge
        sagemaker_tuning_exporter_up{account="111111111111",region="eu-west-1"} 1.0
    """

    def __init__(
        self,
        snapshots: Callable[[], Sequence[RegionSnapshot]],
        requests: RequestCounter,
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
        for snapshot in self._snapshots():
            labels = [snapshot.account, snapshot.target.region]
            up.add_metric(labels, 1 if snapshot.up else 0)
            _add_optional(last_success, labels, snapshot.last_success_time)
            duration.add_metric(labels, snapshot.refresh_duration_seconds)
            failures.add_metric(labels, snapshot.refresh_failures)

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

        yield from (up, last_success, duration, failures, requests, errors, build_info)


def _job_gauge(
    name: str, documentation: str, extra_labels: Sequence[str] = ()
) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        name, f"{documentation} {_STALENESS_NOTE}", labels=[*JOB_LABELS, *extra_labels]
    )


def _job_labels(snapshot: RegionSnapshot, job: TuningJob) -> list[str]:
    return [
        job.account or snapshot.account,
        snapshot.target.region,
        job.name,
        job.status,
        job.strategy,
    ]


def _add_counts(
    family: GaugeMetricFamily,
    labels: list[str],
    counts: Mapping[str, int],
    keys: Sequence[str],
) -> None:
    for key in keys:
        if key in counts:
            family.add_metric([*labels, key], counts[key])


def _add_optional(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None:
        family.add_metric(labels, value)
