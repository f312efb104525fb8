"""DescribeHyperParameterTuningJob for the published jobs, cached and spread out by a budget.

The listing says how far a tuning job got; only DescribeHyperParameterTuningJob says how good
it is (the best training job and its objective value) and what it consumed. One request per
job is costly at thousands of jobs, so:

* a job described in a terminal state is never described again: its description no longer
  changes (a job described while running is described once more after it ends);
* a running job is described at most once per ``describe.ttl``;
* a refresh sends at most ``describe.max_requests_per_refresh`` describes: running jobs
  first, then undescribed ended jobs, newest first, so a first start over thousands of jobs
  spreads its requests over several refreshes;
* up to ``describe.concurrency`` of them are in flight at once, each through the refresh's
  guard: paced by ``aws.max_requests_per_second``, under one retry budget and deadline.

A failed describe never fails the refresh: the job keeps its last description and the
failure is counted by the request counter (``sagemaker_tuning_exporter_api_errors_total``).
Throttling, server errors and requests without an answer, once the refresh's guard has
given up retrying them, and expired credentials end the refresh's describing; the jobs
left are described on the next refresh. Access denied fails
only its job, unless MAX_DENIALS_IN_A_ROW jobs in a row are denied: then the permission is
missing, and the refresh describes no more.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import Any

from botocore.exceptions import ClientError

from exporter.aws.errors import CredentialError
from exporter.config.settings import DescribeSettings
from exporter.model.jobs import JobDescription, TuningJob, ended_at
from exporter.model.statuses import RUNNING_STATUSES, UNDESCRIBED_STATUSES
from exporter.model.summaries import epoch_seconds
from exporter.model.training import UNKNOWN_INSTANCE_TYPE

log = logging.getLogger(__name__)

# Denied this many jobs in a row, the permission is missing rather than denied for a job:
# the refresh describes no more, rather than spend its whole budget on refusals.
MAX_DENIALS_IN_A_ROW = 3

# The summary fields a description holds at its top level, and inside its tuning job config.
_SUMMARY_FIELDS = (
    "HyperParameterTuningJobName",
    "HyperParameterTuningJobArn",
    "HyperParameterTuningJobStatus",
    "CreationTime",
    "HyperParameterTuningEndTime",
    "LastModifiedTime",
    "TrainingJobStatusCounters",
    "ObjectiveStatusCounters",
)
_CONFIG_SUMMARY_FIELDS = ("Strategy", "ResourceLimits")

# Describe one job of the target by name; returns the API's response as boto3 parses it.
# It goes through the refresh's RefreshGuard, which retries throttling, 5xx and timeouts and
# then raises its own errors: a ClientError that reaches the describer concerns one job.
DescribeJob = Callable[[str], Mapping[str, Any]]


def parse_description(response: Mapping[str, Any], described_at: float) -> JobDescription:
    """Turn a DescribeHyperParameterTuningJob response (as boto3 returns it) into a description.

    The objective type stays as the API spells it (``Maximize``, ``Minimize``), as in
    HyperParameterTuningJobObjective, so queries can use the values the AWS documentation shows.
    """
    best = response.get("BestTrainingJob") or {}
    objective = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    consumed = response.get("ConsumedResources") or {}
    completion = response.get("TuningJobCompletionDetails") or {}
    return JobDescription(
        status=str(response["HyperParameterTuningJobStatus"]),
        described_at=described_at,
        best_training_job_name=best.get("TrainingJobName"),
        objective_metric=objective.get("MetricName"),
        objective_type=objective.get("Type"),
        best_objective_value=_optional_float(objective.get("Value")),
        consumed_runtime_seconds=_optional_float(consumed.get("RuntimeInSeconds")),
        training_jobs_objective_not_improving=_optional_int(
            completion.get("NumberOfTrainingJobsObjectiveNotImproving")
        ),
        convergence_detected_time=epoch_seconds(completion.get("ConvergenceDetectedTime")),
        instances=MappingProxyType(definition_instances(response)),
        tuning_objective_type=_tuning_objective_type(response),
    )


def definition_instances(response: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """Instance type and count of each training-job definition of a description, by name.

    A single TrainingJobDefinition is under ``""``, each of TrainingJobDefinitions under its
    DefinitionName. Where SageMaker chooses the type among several
    (HyperParameterTuningResourceConfig.InstanceConfigs), the type is UNKNOWN_INSTANCE_TYPE
    and the count 1: which one a training job got only DescribeTrainingJob tells.

    >>> definition_instances({"TrainingJobDefinition": {"ResourceConfig":
    ...     {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2}}})
    {'': ('ml.m5.xlarge', 2)}
    """
    definitions: list[tuple[str, Any]] = []
    single = response.get("TrainingJobDefinition")
    if isinstance(single, Mapping):
        definitions.append(("", single))
    several = response.get("TrainingJobDefinitions")
    if isinstance(several, list):
        definitions.extend(
            (str(definition.get("DefinitionName", "")), definition)
            for definition in several
            if isinstance(definition, Mapping)
        )
    instances = {}
    for name, definition in definitions:
        resources = definition.get("ResourceConfig") or definition.get(
            "HyperParameterTuningResourceConfig"
        )
        if not isinstance(resources, Mapping):
            continue
        instance_type = resources.get("InstanceType")
        count = _optional_int(resources.get("InstanceCount"))
        if isinstance(instance_type, str) and instance_type:
            instances[name] = (instance_type, count if count is not None and count > 0 else 1)
        elif resources.get("InstanceConfigs"):
            instances[name] = (UNKNOWN_INSTANCE_TYPE, 1)
    return instances


def _tuning_objective_type(response: Mapping[str, Any]) -> str | None:
    config = response.get("HyperParameterTuningJobConfig")
    objective = (
        config.get("HyperParameterTuningJobObjective") if isinstance(config, Mapping) else None
    )
    kind = objective.get("Type") if isinstance(objective, Mapping) else None
    return kind if isinstance(kind, str) else None


def summary_from_description(response: Mapping[str, Any]) -> dict[str, Any]:
    """The HyperParameterTuningJobSummary a DescribeHyperParameterTuningJob response holds.

    A description carries every field of a summary, the strategy and resource limits inside
    HyperParameterTuningJobConfig; a field it leaves out is left out of the summary too.

    >>> summary_from_description({"HyperParameterTuningJobName": "a",
    ...     "HyperParameterTuningJobConfig": {"Strategy": "Random"}, "BestTrainingJob": {}})
    {'HyperParameterTuningJobName': 'a', 'Strategy': 'Random'}
    """
    config = response.get("HyperParameterTuningJobConfig")
    config = config if isinstance(config, Mapping) else {}
    summary = {key: response[key] for key in _SUMMARY_FIELDS if key in response}
    summary.update({key: config[key] for key in _CONFIG_SUMMARY_FIELDS if key in config})
    return summary


def is_final(description: JobDescription) -> bool:
    """True when the job was described after it ended, so describing it again would tell nothing new."""
    return description.status not in RUNNING_STATUSES


def jobs_to_describe(
    jobs: Sequence[TuningJob],
    descriptions: Mapping[str, JobDescription],
    now: float,
    ttl_seconds: float,
    budget: int,
) -> list[TuningJob]:
    """The jobs to describe now, at most ``budget``, in the order to describe them.

    Running jobs whose description is missing or older than ``ttl_seconds`` come first, the
    least recently described first; then ended jobs without a final description, the most
    recently ended first.

    >>> from exporter.model.jobs import TuningJob
    >>> def job(name, status, end):
    ...     return TuningJob(name, name, "", status, "Random", 0.0, None, end, {}, {}, None, None, None)
    >>> jobs = [job("old", "Completed", 100.0), job("new", "Failed", 900.0), job("run", "InProgress", None)]
    >>> [j.name for j in jobs_to_describe(jobs, {}, now=1000.0, ttl_seconds=300, budget=2)]
    ['run', 'new']
    """
    running: list[tuple[float, TuningJob]] = []
    ended: list[tuple[float, TuningJob]] = []
    for job in jobs:
        if job.status in UNDESCRIBED_STATUSES:
            continue
        description = descriptions.get(job.name)
        if job.status in RUNNING_STATUSES:
            if description is None or now - description.described_at >= ttl_seconds:
                running.append((description.described_at if description else -1.0, job))
        elif description is None or not is_final(description):
            # A job the API gave no usable time goes last (as under per_job_metrics.max_jobs).
            ended_time = ended_at(job)
            ended.append((-ended_time if ended_time is not None else float("inf"), job))
    running.sort(key=lambda entry: entry[0])
    ended.sort(key=lambda entry: entry[0])
    return [job for _, job in [*running, *ended][: max(0, budget)]]


class JobDescriber:
    """Keeps the published jobs' descriptions up to date within the per-refresh budget.

    Holds no state of its own: each refresh passes the previous snapshot's descriptions and
    gets the new ones, so what a target knows lives in its snapshot. ``clock`` gives the wall
    time the TTL is measured in; tests inject it.
    """

    def __init__(self, settings: DescribeSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock

    def refresh(
        self,
        published: Sequence[TuningJob],
        previous: Mapping[str, JobDescription],
        describe: DescribeJob,
        context: str = "",
    ) -> Mapping[str, JobDescription]:
        """The descriptions of ``published`` after describing those due, within the budget.

        Jobs no longer published lose their description. ``previous`` itself is returned
        when nothing changed, so callers can tell by identity. ``context`` (the account and
        region) goes into log messages.
        """
        now = self._clock()
        due = jobs_to_describe(
            published,
            previous,
            now,
            self._settings.ttl_seconds,
            self._settings.max_requests_per_refresh,
        )
        fresh: dict[str, JobDescription] = {}
        outcomes = _DescribeOutcomes(context)
        concurrency = min(self._settings.concurrency, len(due))
        if concurrency <= 1:
            for job in due:
                if not outcomes.take(job, partial(describe, job.name)):
                    break
        else:
            _describe_concurrently(due, describe, outcomes, concurrency)
        for job, answer in outcomes.answers:
            try:
                # Stamped with the refresh's time, not the answer's, so the running jobs of
                # one refresh stay due together rather than splitting over two refreshes.
                fresh[job.name] = parse_description(answer, now)
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                log.warning(
                    "cannot read the description of tuning job %s%s: %r", job.name, context, error
                )
        names = {job.name for job in published}
        if not fresh and names.issuperset(previous):
            return previous
        kept = {name: description for name, description in previous.items() if name in names}
        return MappingProxyType({**kept, **fresh})


def _describe_concurrently(
    due: Sequence[TuningJob], describe: DescribeJob, outcomes: _DescribeOutcomes, concurrency: int
) -> None:
    """Describe ``due`` on up to ``concurrency`` threads; the answers are taken here as they
    come, and a thread gets its next job only once ``outcomes`` has taken its last answer
    and says go on.

    The threads are daemons, as the refresh's own worker is: one stuck in a socket read
    never holds up the exporter's exit.
    """
    answers: queue.SimpleQueue[
        tuple[queue.SimpleQueue[TuningJob | None], TuningJob, Callable[[], Mapping[str, Any]]]
    ] = queue.SimpleQueue()

    def work(inbox: queue.SimpleQueue[TuningJob | None]) -> None:
        while (job := inbox.get()) is not None:
            try:
                answer = describe(job.name)
            except Exception as error:  # taken, and judged, by outcomes.take
                answers.put((inbox, job, partial(_raise, error)))
            else:
                answers.put((inbox, job, partial(_return, answer)))

    waiting = iter(due)
    in_flight = 0
    for job in itertools.islice(waiting, concurrency):
        inbox: queue.SimpleQueue[TuningJob | None] = queue.SimpleQueue()
        try:
            threading.Thread(target=work, args=(inbox,), name="describe", daemon=True).start()
        except RuntimeError as error:  # no thread to be had: this one is described here
            log.error("cannot start a describe thread: %s", error)
            if not outcomes.take(job, partial(describe, job.name)):
                break
            continue
        inbox.put(job)
        in_flight += 1
    if in_flight == 0:  # not one thread to be had: the rest are described here too
        for job in waiting:
            if not outcomes.go_on or not outcomes.take(job, partial(describe, job.name)):
                break
    while in_flight:
        inbox, job, answer = answers.get()
        in_flight -= 1
        outcomes.take(job, answer)
        following = next(waiting, None) if outcomes.go_on else None
        inbox.put(following)  # None ends the thread
        if following is not None:
            in_flight += 1


def _raise(error: Exception) -> Mapping[str, Any]:
    raise error


def _return(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    return answer


class _DescribeOutcomes:
    """The answers of one refresh's describes, and whether to send more, as they come in.

    Throttling, server errors and timeouts (once the guard gave up), the deadline, and
    expired credentials stop the describing: the next request would fail the same way.
    Access denied or a missing job fail only their job, unless MAX_DENIALS_IN_A_ROW answers
    in a row are denials. Describes already sent when one stops still count.
    """

    def __init__(self, context: str) -> None:
        self._context = context
        self._denials_in_a_row = 0
        self.go_on = True
        self.answers: list[tuple[TuningJob, Mapping[str, Any]]] = []

    def take(self, job: TuningJob, answer: Callable[[], Mapping[str, Any]]) -> bool:
        """Record ``job``'s describe, whose answer ``answer`` returns or raises; True to go on."""
        try:
            self.answers.append((job, answer()))
            self._denials_in_a_row = 0
        except CredentialError as error:  # through a RefreshGuard: not retried
            self._warn(job, error)
            self._denials_in_a_row += 1
            if error.kind != "access_denied" or self._denials_in_a_row >= MAX_DENIALS_IN_A_ROW:
                self.go_on = False
        except ClientError as error:
            # The guard passes on only what concerns this one job (validation, a job
            # deleted meanwhile): throttling, 5xx and timeouts it retries, then raises.
            self._warn(job, error)
        except Exception as error:  # attempts or deadline used up: the next would fail too
            self._warn(job, error)
            self.go_on = False
        return self.go_on

    def _warn(self, job: TuningJob, error: Exception) -> None:
        log.warning("cannot describe tuning job %s%s: %s", job.name, self._context, error)


def _optional_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _optional_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]
