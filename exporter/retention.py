"""Which jobs get per-job series: running ones and recently ended ones, up to a cap per target.

Accounts keep their tuning jobs forever, so publishing every job would grow Prometheus'
series without end. ``sagemaker_tuning_jobs`` still counts every job; only the per-job
families are limited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exporter.jobs import TuningJob

RUNNING_STATUSES = frozenset({"InProgress", "Stopping"})


@dataclass(frozen=True)
class PublishedJobs:
    """The jobs given per-job series, and how many were left out and why."""

    jobs: tuple[TuningJob, ...]
    hidden_by_retention: int = 0
    hidden_by_limit: int = 0


def ended_at(job: TuningJob) -> float:
    """When a job stopped changing: its end time, else its last modification, else its creation."""
    if job.end_time is not None:
        return job.end_time
    if job.last_modified_time is not None:
        return job.last_modified_time
    return job.creation_time


def select_published_jobs(
    jobs: Sequence[TuningJob], now: float, retention_seconds: float, max_jobs: int
) -> PublishedJobs:
    """The running jobs and those ended within ``retention_seconds`` (0: all), at most ``max_jobs``.

    Over the cap, running jobs go first, then the most recently ended; the result keeps the
    order of ``jobs``.

    >>> from exporter.jobs import TuningJob
    >>> def job(name, status, end):
    ...     return TuningJob(name, name, "", status, "Bayesian", 0.0, None, end, {}, {}, None, None, None)
    >>> jobs = [job("old", "Completed", 100.0), job("new", "Failed", 900.0), job("run", "InProgress", None)]
    >>> published = select_published_jobs(jobs, now=1000.0, retention_seconds=500, max_jobs=10)
    >>> [j.name for j in published.jobs], published.hidden_by_retention
    (['new', 'run'], 1)
    """
    if retention_seconds > 0:
        cutoff = now - retention_seconds
        kept = [job for job in jobs if job.status in RUNNING_STATUSES or ended_at(job) >= cutoff]
    else:
        kept = list(jobs)
    hidden_by_retention = len(jobs) - len(kept)
    if len(kept) <= max_jobs:
        return PublishedJobs(tuple(kept), hidden_by_retention)
    ranked = sorted(
        range(len(kept)),
        key=lambda index: (kept[index].status not in RUNNING_STATUSES, -ended_at(kept[index])),
    )
    chosen = sorted(ranked[:max_jobs])
    return PublishedJobs(
        tuple(kept[index] for index in chosen), hidden_by_retention, len(kept) - max_jobs
    )
