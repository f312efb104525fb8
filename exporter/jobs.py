"""Tuning-job records parsed from ListHyperParameterTuningJobs summaries, and region snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.describe import JobDescription

# Counter keys in the order the API documents them; the collector publishes them in this order.
TRAINING_JOB_STATUSES = (
    "Completed",
    "InProgress",
    "RetryableError",
    "NonRetryableError",
    "Stopped",
)
OBJECTIVE_STATUSES = ("Succeeded", "Pending", "Failed")


@dataclass(frozen=True)
class TuningJob:
    """One tuning job as the listing reports it; timestamps are epoch seconds."""

    name: str
    arn: str
    account: str
    status: str
    strategy: str
    creation_time: float
    last_modified_time: float | None
    end_time: float | None
    training_job_counts: Mapping[str, int]
    objective_counts: Mapping[str, int]
    max_training_jobs: int | None
    max_parallel_training_jobs: int | None
    max_runtime_seconds: int | None


@dataclass(frozen=True)
class Target:
    """One (account, region) pair the exporter lists jobs in.

    ``role_arn`` is None for the ambient credentials, whose account is learnt from job ARNs.
    """

    region: str
    role_arn: str | None = None
    external_id: str | None = None
    account_id: str = ""


# A snapshot's descriptions before its first describe: one shared, read-only mapping.
NO_DESCRIPTIONS: Mapping[str, JobDescription] = MappingProxyType({})


@dataclass(frozen=True)
class RegionSnapshot:
    """What the exporter knows about one target after its latest refresh.

    ``jobs`` are those of the last successful refresh; after a failure they stay, with
    ``up`` False and ``last_success_time`` telling their age. ``refresh_failures`` counts
    the target's failed refreshes since start. ``published`` are the jobs that get per-job
    series (see :mod:`exporter.retention`); the ``hidden_by_*`` counts say how many of
    ``jobs`` were left out and why. ``full_listings`` and ``incremental_listings`` count
    the successful refreshes of each kind since start. ``descriptions`` holds what
    DescribeHyperParameterTuningJob said of published jobs, by job name (see
    :mod:`exporter.describe`); a job not described yet has none.
    """

    target: Target
    account: str
    jobs: tuple[TuningJob, ...]
    up: bool
    last_success_time: float | None
    refresh_duration_seconds: float
    error: str | None = None
    refresh_failures: int = 0
    published: tuple[TuningJob, ...] = ()
    hidden_by_retention: int = 0
    hidden_by_limit: int = 0
    full_listings: int = 0
    incremental_listings: int = 0
    descriptions: Mapping[str, JobDescription] = field(default_factory=lambda: NO_DESCRIPTIONS)


def account_from_arn(arn: str) -> str:
    """The account ID field of an ARN, ``""`` when it has none.

    >>> account_from_arn("arn:aws:sagemaker:eu-west-1:111111111111:hyper-parameter-tuning-job/x")
    '111111111111'
    """
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 else ""


def parse_job_summary(summary: Mapping[str, Any]) -> TuningJob:
    """Turn one HyperParameterTuningJobSummary (as boto3 returns it) into a :class:`TuningJob`.

    Raises KeyError when a field the API marks as required is missing.
    """
    limits = summary.get("ResourceLimits") or {}
    return TuningJob(
        name=summary["HyperParameterTuningJobName"],
        arn=summary["HyperParameterTuningJobArn"],
        account=account_from_arn(summary["HyperParameterTuningJobArn"]),
        status=summary["HyperParameterTuningJobStatus"],
        strategy=summary["Strategy"],
        creation_time=_epoch_seconds(summary["CreationTime"]),
        last_modified_time=_optional_epoch_seconds(summary.get("LastModifiedTime")),
        end_time=_optional_epoch_seconds(summary.get("HyperParameterTuningEndTime")),
        training_job_counts=_counts(
            summary.get("TrainingJobStatusCounters"), TRAINING_JOB_STATUSES
        ),
        objective_counts=_counts(summary.get("ObjectiveStatusCounters"), OBJECTIVE_STATUSES),
        max_training_jobs=limits.get("MaxNumberOfTrainingJobs"),
        max_parallel_training_jobs=limits.get("MaxParallelTrainingJobs"),
        max_runtime_seconds=limits.get("MaxRuntimeInSeconds"),
    )


def _counts(counters: Mapping[str, Any] | None, keys: tuple[str, ...]) -> Mapping[str, int]:
    counters = counters or {}
    return MappingProxyType(
        {key: int(counters[key]) for key in keys if counters.get(key) is not None}
    )


def _epoch_seconds(moment: datetime) -> float:
    return moment.timestamp()


def _optional_epoch_seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()
