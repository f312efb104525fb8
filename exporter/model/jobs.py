"""The records of the exporter: targets, tuning jobs, their tags and descriptions, and snapshots."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.model.training import NO_TRAINING_JOBS, TrainingJobsRecord


@dataclass(frozen=True)
class TuningJob:
    """One tuning job as the listing reports it; timestamps are epoch seconds.

    Only ``name`` is sure to be usable: a field the API left out or sent unusable is ``""``
    (text) or None (numbers), and a counter it left out or sent unusable is not a key.
    """

    name: str
    arn: str
    account: str
    status: str
    strategy: str
    creation_time: float | None
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


_NO_TAGS: Mapping[str, str] = MappingProxyType({})
_NO_INSTANCES: Mapping[str, tuple[str, int]] = MappingProxyType({})


@dataclass(frozen=True)
class JobTags:
    """The allowlisted tags of a target's tuning jobs, as last read from the tagging API.

    ``by_arn`` maps each job's ARN, in lower case, to its allowlisted tags (key -> value);
    jobs with none of them are absent. ``read_time`` is the wall time of the last successful
    read, None before the first.
    """

    by_arn: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    read_time: float | None = None

    def of(self, job: TuningJob) -> Mapping[str, str]:
        """The allowlisted tags of ``job``; ARNs are compared in lower case, as their case varies."""
        return self.by_arn.get(job.arn.lower(), _NO_TAGS)


@dataclass(frozen=True)
class JobDescription:
    """What DescribeHyperParameterTuningJob says of a job beyond the listing.

    ``status`` is the job's status when it was described and ``described_at`` the wall time
    of that; the other fields are None when the API left them out.
    """

    status: str
    described_at: float
    best_training_job_name: str | None = None
    objective_metric: str | None = None
    objective_type: str | None = None
    best_objective_value: float | None = None
    consumed_runtime_seconds: float | None = None
    training_jobs_objective_not_improving: int | None = None
    convergence_detected_time: float | None = None
    # Instance type and count of each training-job definition, by DefinitionName ("" for a
    # single TrainingJobDefinition); UNKNOWN_INSTANCE_TYPE where SageMaker chooses the type.
    instances: Mapping[str, tuple[str, int]] = field(default_factory=lambda: _NO_INSTANCES)
    # The tuning job's own objective type (HyperParameterTuningJobObjective.Type).
    tuning_objective_type: str | None = None


# A snapshot's descriptions before its first describe: one shared, read-only mapping.
NO_DESCRIPTIONS: Mapping[str, JobDescription] = MappingProxyType({})


@dataclass(frozen=True)
class RegionSnapshot:
    """What the exporter knows about one target after its latest refresh.

    ``jobs`` are those of the last successful refresh; after a failure they stay, with
    ``up`` False and ``last_success_time`` telling their age. ``refresh_failures`` counts
    the target's failed refreshes since start. ``published`` are the jobs that get per-job
    series (see :mod:`exporter.refresh.retention`); the ``hidden_by_*`` counts say how many of
    ``jobs`` were left out and why. ``full_listings`` and ``incremental_listings`` count
    the successful refreshes of each kind since start. ``skipped_summaries`` (by
    SKIP_REASONS entry) and ``invalid_fields`` (by INVALID_FIELDS entry) count the summaries
    the listings returned since start that could not be used at all, and the fields left out.
    ``tags`` are the jobs' allowlisted tags as last read, kept when a read fails.
    ``descriptions`` holds what DescribeHyperParameterTuningJob said of published jobs, by
    job name (see :mod:`exporter.refresh.describe`); a job not described yet has none.
    ``training_jobs`` holds what the published jobs' training jobs add up to, by job name
    (see :mod:`exporter.refresh.training_jobs`); a job whose were not read yet has none.
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
    skipped_summaries: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    invalid_fields: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    tags: JobTags = field(default_factory=JobTags)
    descriptions: Mapping[str, JobDescription] = field(default_factory=lambda: NO_DESCRIPTIONS)
    training_jobs: Mapping[str, TrainingJobsRecord] = field(
        default_factory=lambda: NO_TRAINING_JOBS
    )


def account_from_arn(arn: str) -> str:
    """The account ID field of an ARN, ``""`` when it has none.

    >>> account_from_arn("arn:aws:sagemaker:eu-west-1:111111111111:hyper-parameter-tuning-job/x")
    '111111111111'
    """
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 else ""


def ended_at(job: TuningJob) -> float | None:
    """When a job stopped changing: its end time, else its last modification, else its creation.

    None when the API gave none of the three usable.
    """
    if job.end_time is not None:
        return job.end_time
    if job.last_modified_time is not None:
        return job.last_modified_time
    return job.creation_time


def tag_label_name(key: str) -> str:
    """The label a tag key becomes: ``tag_`` and the key, other than [a-zA-Z0-9_] made ``_``.

    >>> tag_label_name("cost-center:team")
    'tag_cost_center_team'
    """
    return "tag_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)
