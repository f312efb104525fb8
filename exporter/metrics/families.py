"""The per-job metric families: names, help texts, labels, and each job's samples.

One table (:data:`JOB_FAMILIES`, :data:`DESCRIBE_FAMILIES`) that both the collectors and the
cached exposition render from, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from exporter.model.jobs import JobDescription, RegionSnapshot, TuningJob
from exporter.model.statuses import OBJECTIVE_STATUSES, TRAINING_JOB_STATUSES

JOB_LABELS = ("account", "region", "job_name", "status", "strategy")
STALENESS_NOTE = "Values may be up to cache.ttl plus a scrape interval and a refresh old."

# The samples of one job in one family: (values of the family's extra labels, value). The
# snapshot is passed too, for families drawn from what it holds beside the job (descriptions).
JobSamples = Callable[[RegionSnapshot, TuningJob], Iterable[tuple[tuple[str, ...], float]]]


@dataclass(frozen=True)
class JobFamily:
    """A per-job gauge family: its name, help text, samples per job, and extra labels in order."""

    name: str
    documentation: str
    samples: JobSamples
    extra_labels: tuple[str, ...] = ()


def _counts_of(field: Callable[[TuningJob], Mapping[str, int]], keys: Sequence[str]) -> JobSamples:
    return lambda _, job: [((key,), field(job)[key]) for key in keys if key in field(job)]


def _value_of(field: Callable[[TuningJob], float | None]) -> JobSamples:
    def samples(_: RegionSnapshot, job: TuningJob) -> list[tuple[tuple[str, ...], float]]:
        value = field(job)
        return [] if value is None else [((), value)]

    return samples


JOB_FAMILIES = (
    JobFamily(
        "sagemaker_tuning_job_training_jobs",
        "Training jobs of a tuning job by training job status (TrainingJobStatusCounters).",
        _counts_of(lambda job: job.training_job_counts, TRAINING_JOB_STATUSES),
        ("training_job_status",),
    ),
    JobFamily(
        "sagemaker_tuning_job_objective_evaluations",
        "Objective metric evaluations of a tuning job's training jobs by objective status "
        "(ObjectiveStatusCounters).",
        _counts_of(lambda job: job.objective_counts, OBJECTIVE_STATUSES),
        ("objective_status",),
    ),
    JobFamily(
        "sagemaker_tuning_job_max_training_jobs",
        "Maximum number of training jobs the tuning job may launch (ResourceLimits).",
        _value_of(lambda job: job.max_training_jobs),
    ),
    JobFamily(
        "sagemaker_tuning_job_max_parallel_training_jobs",
        "Maximum number of training jobs the tuning job runs at once (ResourceLimits).",
        _value_of(lambda job: job.max_parallel_training_jobs),
    ),
    JobFamily(
        "sagemaker_tuning_job_max_runtime_seconds",
        "Maximum runtime of the tuning job in seconds (ResourceLimits).",
        _value_of(lambda job: job.max_runtime_seconds),
    ),
    JobFamily(
        "sagemaker_tuning_job_creation_timestamp_seconds",
        "Time the tuning job was created, in seconds since the epoch.",
        _value_of(lambda job: job.creation_time),
    ),
    JobFamily(
        "sagemaker_tuning_job_end_timestamp_seconds",
        "Time the tuning job ended, in seconds since the epoch; absent while it runs.",
        _value_of(lambda job: job.end_time),
    ),
    JobFamily(
        "sagemaker_tuning_job_last_modified_timestamp_seconds",
        "Time the tuning job was last modified, in seconds since the epoch.",
        _value_of(lambda job: job.last_modified_time),
    ),
)


def _described(
    field: Callable[[JobDescription], float | None],
    labels: Callable[[JobDescription], tuple[str | None, ...]] = lambda _: (),
) -> JobSamples:
    """Samples from a job's description: none without a description, the value or a label."""

    def samples(snapshot: RegionSnapshot, job: TuningJob) -> list[tuple[tuple[str, ...], float]]:
        description = snapshot.descriptions.get(job.name)
        if description is None:
            return []
        value = field(description)
        values = labels(description)
        if value is None or any(label is None for label in values):
            return []
        return [(tuple(str(label) for label in values), value)]

    return samples


# Families from DescribeHyperParameterTuningJob; published only when describe.enabled.
DESCRIBE_FAMILIES = (
    JobFamily(
        "sagemaker_tuning_job_best_objective_value",
        "Objective metric value of the tuning job's best training job so far "
        "(BestTrainingJob.FinalHyperParameterTuningJobObjectiveMetric); objective_type is "
        "Maximize or Minimize.",
        _described(
            lambda description: description.best_objective_value,
            lambda description: (description.objective_metric, description.objective_type),
        ),
        ("objective_metric", "objective_type"),
    ),
    JobFamily(
        "sagemaker_tuning_job_consumed_runtime_seconds",
        "Runtime the tuning job has consumed, in seconds (ConsumedResources.RuntimeInSeconds).",
        _described(lambda description: description.consumed_runtime_seconds),
    ),
    JobFamily(
        "sagemaker_tuning_job_training_jobs_objective_not_improving",
        "Training jobs whose objective did not improve on the best so far "
        "(TuningJobCompletionDetails.NumberOfTrainingJobsObjectiveNotImproving).",
        _described(lambda description: description.training_jobs_objective_not_improving),
    ),
    JobFamily(
        "sagemaker_tuning_job_convergence_detected_timestamp_seconds",
        "Time SageMaker detected that the tuning job's objective converged, in seconds since "
        "the epoch (TuningJobCompletionDetails.ConvergenceDetectedTime).",
        _described(lambda description: description.convergence_detected_time),
    ),
    JobFamily(
        "sagemaker_tuning_job_best_training_job_info",
        "The tuning job's best training job so far (BestTrainingJob.TrainingJobName); always 1.",
        _described(
            lambda description: 1.0 if description.best_training_job_name else None,
            lambda description: (description.best_training_job_name,),
        ),
        ("best_training_job",),
    ),
)


def job_families(describe_enabled: bool) -> tuple[JobFamily, ...]:
    """The per-job families to publish: the listing's, and the description's when enabled."""
    return (*JOB_FAMILIES, *DESCRIBE_FAMILIES) if describe_enabled else JOB_FAMILIES


def job_family_help(family: JobFamily) -> str:
    """The HELP text of a per-job family."""
    return f"{family.documentation} {STALENESS_NOTE}"


def job_label_values(snapshot: RegionSnapshot, job: TuningJob) -> tuple[str, ...]:
    """The values of JOB_LABELS for ``job``."""
    return (
        job.account or snapshot.account,
        snapshot.target.region,
        job.name,
        job.status,
        job.strategy,
    )


TAGS_FAMILY = "sagemaker_tuning_job_tags"
TAGS_HELP = (
    "The tuning job's allowlisted tags as tag_<key> labels, empty where the job lacks the tag; "
    "always 1. Join it onto any per-job family with "
    "* on(account, region, job_name) group_left(tag_<key>). Values may be up to "
    "cache.tags_ttl old."
)


def tag_label_values(
    snapshot: RegionSnapshot, job: TuningJob, tag_keys: Sequence[str]
) -> list[str]:
    """The values of the tag labels of ``job``, in the order of ``tag_keys``; ``""`` when absent."""
    tags = snapshot.tags.of(job)
    return [tags.get(key, "") for key in tag_keys]
