"""Which jobs get per-job series: running ones and recently ended ones, up to a cap per target.

Accounts keep their tuning jobs forever, so publishing every job would grow Prometheus'
series without end. ``sagemaker_tuning_jobs`` still counts every job; only the per-job
families are limited.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.model.jobs import TuningJob, ended_at
from exporter.model.statuses import RUNNING_STATUSES


@dataclass(frozen=True)
class PublishedJobs:
    """The jobs given per-job series, and how many were left out and why."""

    jobs: tuple[TuningJob, ...]
    hidden_by_retention: int = 0
    hidden_by_limit: int = 0


def _is_recent(job: TuningJob, cutoff: float) -> bool:
    """Running, or ended at or after ``cutoff``; a job of unknown age is kept, not hidden."""
    if job.status in RUNNING_STATUSES:
        return True
    moment = ended_at(job)
    return moment is None or moment >= cutoff


def _rank(job: TuningJob) -> tuple[bool, float]:
    """Sort key under the cap: running first, then most recently ended, unknown age last."""
    moment = ended_at(job)
    return (job.status not in RUNNING_STATUSES, -moment if moment is not None else math.inf)


def select_published_jobs(
    jobs: Sequence[TuningJob], now: float, retention_seconds: float, max_jobs: int
) -> PublishedJobs:
    """The running jobs and those ended within ``retention_seconds`` (0: all), at most ``max_jobs``.

    Over the cap, running jobs go first, then the most recently ended; the result keeps the
    order of ``jobs``. A status this exporter does not know counts as ended. A job with no
    usable time cannot be placed: the retention keeps it and the cap ranks it last.

    >>> from exporter.model.jobs import TuningJob
    >>> def job(name, status, end):
    ...     return TuningJob(name, name, "", status, "Bayesian", 0.0, None, end, {}, {}, None, None, None)
    >>> jobs = [job("old", "Completed", 100.0), job("new", "Failed", 900.0), job("run", "InProgress", None)]
    >>> published = select_published_jobs(jobs, now=1000.0, retention_seconds=500, max_jobs=10)
    >>> [j.name for j in published.jobs], published.hidden_by_retention
    (['new', 'run'], 1)
    """
    if retention_seconds > 0:
        cutoff = now - retention_seconds
        kept = [job for job in jobs if _is_recent(job, cutoff)]
    else:
        kept = list(jobs)
    hidden_by_retention = len(jobs) - len(kept)
    if len(kept) <= max_jobs:
        return PublishedJobs(tuple(kept), hidden_by_retention)
    ranked = sorted(range(len(kept)), key=lambda index: _rank(kept[index]))
    chosen = sorted(ranked[:max_jobs])
    return PublishedJobs(
        tuple(kept[index] for index in chosen), hidden_by_retention, len(kept) - max_jobs
    )
