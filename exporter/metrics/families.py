"""The per-job metric families: names, help texts, labels, and each job's samples.

One table (:data:`JOB_FAMILIES`, :data:`DESCRIBE_FAMILIES`) that both the collectors and the
cached exposition render from, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from exporter.config.settings import TrainingJobsSettings
from exporter.model.jobs import JobDescription, RegionSnapshot, TuningJob
from exporter.model.statuses import OBJECTIVE_STATUSES, TRAINING_JOB_STATUSES
from exporter.model.training import (
    FAILURE_REASONS,
    OTHER_REASON,
    UNKNOWN_INSTANCE_TYPE,
    Tally,
    Trial,
    hyperparameter_label_name,
)

JOB_LABELS = ("account", "region", "job_name", "status", "strategy")
STALENESS_NOTE = "Values may be up to cache.ttl plus a scrape interval and a refresh old."

# The samples of one job in one family: (values of the family's extra labels, value). The
# snapshot is passed too, for families drawn from what it holds beside the job (descriptions).
JobSamples = Callable[[RegionSnapshot, TuningJob], Iterable[tuple[tuple[str, ...], float]]]
# The samples of a family whose extra labels differ from sample to sample: ((name, value)
# pairs of the extra labels, value).
LabelledSamples = Callable[
    [RegionSnapshot, TuningJob], Iterable[tuple[tuple[tuple[str, str], ...], float]]
]


def _no_samples(_: RegionSnapshot, __: TuningJob) -> list[tuple[tuple[str, ...], float]]:
    return []


@dataclass(frozen=True)
class JobFamily:
    """A per-job gauge family: its name, help text, samples per job, and extra labels in order.

    A family whose extra labels vary by sample (a leaderboard's hyperparameters) gives
    ``labelled`` samples instead, and no ``extra_labels``.
    """

    name: str
    documentation: str
    samples: JobSamples = _no_samples
    extra_labels: tuple[str, ...] = ()
    labelled: LabelledSamples | None = None


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


def _tally(snapshot: RegionSnapshot, job: TuningJob) -> Tally | None:
    """The job's training-job tally, once a read of them has completed."""
    record = snapshot.training_jobs.get(job.name)
    return None if record is None or record.read_at is None else record.tally


def _failed_by_reason(
    snapshot: RegionSnapshot, job: TuningJob
) -> list[tuple[tuple[str, ...], float]]:
    tally = _tally(snapshot, job)
    if tally is None:
        return []
    counts = tally.failed_by_reason
    return [((reason,), counts[reason]) for reason in _REASONS if counts.get(reason)]


def instance_seconds_by_type(snapshot: RegionSnapshot, job: TuningJob) -> dict[str, float]:
    """The job's training instance time by instance type: each definition's seconds times its count.

    The types and counts come from the job's description (its training-job definitions);
    without one, or for a definition it does not name, the type is UNKNOWN_INSTANCE_TYPE
    and the count 1. A tuning job with one definition whose training jobs name it anyway
    gets that definition's type.
    """
    tally = _tally(snapshot, job)
    if tally is None:
        return {}
    description = snapshot.descriptions.get(job.name)
    instances = description.instances if description is not None else {}
    only = next(iter(instances.values())) if len(instances) == 1 else None
    by_type: dict[str, float] = {}
    for definition, seconds in tally.seconds_by_definition.items():
        instance_type, count = instances.get(definition) or only or (UNKNOWN_INSTANCE_TYPE, 1)
        by_type[instance_type] = by_type.get(instance_type, 0.0) + seconds * count
    return by_type


def _instance_seconds(
    snapshot: RegionSnapshot, job: TuningJob
) -> list[tuple[tuple[str, ...], float]]:
    return [
        ((kind,), seconds)
        for kind, seconds in sorted(instance_seconds_by_type(snapshot, job).items())
    ]


def leaderboard(snapshot: RegionSnapshot, job: TuningJob) -> tuple[Trial, ...]:
    """The job's best training jobs, best first, ranked as its objective says."""
    tally = _tally(snapshot, job)
    if tally is None:
        return ()
    description = snapshot.descriptions.get(job.name)
    objective_type = None
    if description is not None:
        objective_type = description.tuning_objective_type or description.objective_type
    return tally.leaderboard(objective_type)


def _top_values(snapshot: RegionSnapshot, job: TuningJob) -> list[tuple[tuple[str, ...], float]]:
    return [((trial.name,), trial.objective_value) for trial in leaderboard(snapshot, job)]


def _top_info(
    snapshot: RegionSnapshot, job: TuningJob
) -> list[tuple[tuple[tuple[str, str], ...], float]]:
    samples = []
    for trial in leaderboard(snapshot, job):
        labels = {"training_job_name": trial.name}
        for name, value in trial.hyperparameters:
            # Two names that sanitise alike: the first, in name order, keeps the label.
            labels.setdefault(hyperparameter_label_name(name), value)
        samples.append((tuple(labels.items()), 1.0))
    return samples


_REASONS = (*FAILURE_REASONS, OTHER_REASON)
_READ_NOTE = "Read from ListTrainingJobsForHyperParameterTuningJob once per training_jobs.ttl."

# Families from the training jobs; published only when training_jobs.enabled.
TRAINING_JOB_FAMILIES = (
    JobFamily(
        "sagemaker_tuning_job_failed_training_jobs",
        "Training jobs of the tuning job in status Failed, by the leading word of their "
        "FailureReason: AlgorithmError, ClientError, CapacityError, InternalServerError, "
        f"ResourceLimitExceeded, or Other. {_READ_NOTE}",
        _failed_by_reason,
        ("reason",),
    ),
    JobFamily(
        "sagemaker_tuning_job_training_instance_seconds",
        "Instance time of the tuning job's training jobs from their start to their end, times "
        "their instance count, by instance type (unknown where SageMaker chose the type or the "
        "job is not described). On-demand billing counts this time; managed spot training "
        f"bills less. {_READ_NOTE}",
        _instance_seconds,
        ("instance_type",),
    ),
)
# With training_jobs.leaderboard N > 0: the N best training jobs of each tuning job.
LEADERBOARD_FAMILIES = (
    JobFamily(
        "sagemaker_tuning_job_top_training_job_objective_value",
        "Final objective metric value of one of the tuning job's best training jobs "
        "(FinalHyperParameterTuningJobObjectiveMetric), ranked as the tuning job's objective "
        f"type says. {_READ_NOTE}",
        _top_values,
        ("training_job_name",),
    ),
    JobFamily(
        "sagemaker_tuning_job_top_training_job_info",
        "One of the tuning job's best training jobs, its TunedHyperParameters as hp_<name> "
        f"labels; always 1. {_READ_NOTE}",
        labelled=_top_info,
    ),
)


def job_families(
    describe_enabled: bool, training_jobs: TrainingJobsSettings | None = None
) -> tuple[JobFamily, ...]:
    """The per-job families to publish: the listing's, the description's and the training jobs'
    when enabled."""
    families = [*JOB_FAMILIES]
    if describe_enabled:
        families.extend(DESCRIBE_FAMILIES)
    if training_jobs is not None and training_jobs.enabled:
        families.extend(TRAINING_JOB_FAMILIES)
        if training_jobs.leaderboard > 0:
            families.extend(LEADERBOARD_FAMILIES)
    return tuple(families)


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
