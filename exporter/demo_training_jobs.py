"""The demo's training jobs: their definitions, their summaries, and the listing moto lacks.

moto's tuning jobs launch no training jobs, and moto does not implement
ListTrainingJobsForHyperParameterTuningJob. The demo (exporter/demo.py) simulates the
training jobs of each tuning job as :class:`SimulatedTrainingJob` records, derives the
tuning job's TrainingJobStatusCounters and ObjectiveStatusCounters from them
(:func:`training_job_status_counters`, :func:`objective_status_counters`), and answers the
listing over its HTTP endpoint with :class:`TrainingJobListing`, a WSGI middleware in
front of moto. The counters count as the test server's do (tests/sagemaker_server.py: a
Stopping training job as InProgress, a Failed one as NonRetryableError), except that a
training job failed by an InternalServerError counts as RetryableError, as SageMaker
retries only those.

The listing reads its request as AWS documents ListTrainingJobs (a sibling API): the
training jobs are sorted by SortBy (default Name; FinalObjectiveMetricValue leaves out those
without a value; ties broken by name) and SortOrder (default Ascending), the page of
MaxResults (1 to 100, default 10) at the NextToken's offset is cut, and only then is
StatusEquals applied to it. A page may therefore hold fewer training jobs than MaxResults,
even none, and still carry a NextToken; a NextToken comes whenever training jobs remain
after the page. Tokens are opaque to clients and checked: one this listing could not have
issued (or issued for another tuning job) is a ValidationException, as is a MaxResults out
of range or a value outside an enum. A tuning job the demo does not hold is ResourceNotFound,
as moto answers DescribeHyperParameterTuningJob.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exporter.model.statuses import OBJECTIVE_STATUSES, TRAINING_JOB_STATUSES

OPERATION = "ListTrainingJobsForHyperParameterTuningJob"
DEFAULT_VOLUME_SIZE_GB = 10
# What a training job's status counts as in TrainingJobStatusCounters. A Stopping training
# job has not stopped yet, so it still counts as InProgress. A Failed one counts as
# NonRetryableError, unless it failed with an internal service error: the only failure
# SageMaker documents as retryable (see retryable_failure).
_STATUS_COUNTERS = {
    "InProgress": "InProgress",
    "Stopping": "InProgress",
    "Completed": "Completed",
    "Stopped": "Stopped",
    "Failed": "NonRetryableError",
}
_SORT_KEYS: dict[str, Callable[[SimulatedTrainingJob], tuple[Any, ...]]] = {
    "Name": lambda job: (job.name,),
    "CreationTime": lambda job: (job.created, job.name),
    "Status": lambda job: (job.status, job.name),
    "FinalObjectiveMetricValue": lambda job: (job.objective_value, job.name),
}
# Request key -> the values botocore's service model allows for it; the first is the default.
_ENUMS = {
    "SortBy": tuple(_SORT_KEYS),
    "SortOrder": ("Ascending", "Descending"),
    "StatusEquals": ("InProgress", "Completed", "Failed", "Stopping", "Stopped", "Deleting"),
}
_DEFAULT_PAGE_SIZE = 10
_MAX_PAGE_SIZE = 100


@dataclass(frozen=True, init=False)
class InstanceChoice:
    """Instance configurations SageMaker chooses among, in order of preference
    (HyperParameterTuningResourceConfig.InstanceConfigs with AllocationStrategy Prioritized).

    >>> InstanceChoice(("ml.m5.large", 1), ("ml.c5.xlarge", 1)).configs[1]
    ('ml.c5.xlarge', 1)
    """

    configs: tuple[tuple[str, int], ...]

    def __init__(self, *configs: tuple[str, int]) -> None:
        if not configs:
            raise ValueError("an instance choice needs at least one (instance type, count)")
        object.__setattr__(self, "configs", tuple(configs))


# How a training-job definition's training jobs get their instances: one (instance type,
# count), as ResourceConfig gives them, or a choice SageMaker makes.
InstanceResources = tuple[str, int] | InstanceChoice


def training_job_definitions(
    definitions: Mapping[str, InstanceResources],
    *,
    account: str,
    region: str,
    tuning_job_name: str,
    objective: Mapping[str, str],
) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
    """The TrainingJobDefinition and TrainingJobDefinitions of a tuning job, one of them None.

    ``definitions`` maps a definition name to its instances. The name ``""`` alone gives one
    TrainingJobDefinition without a DefinitionName; other names give TrainingJobDefinitions,
    one per name in order, each with its DefinitionName and the tuning job's ``objective``
    as its TuningObjective. Each is a botocore HyperParameterTrainingJobDefinition with
    its required members and a ResourceConfig (``(type, count)``, 10 GB volume) or a
    HyperParameterTuningResourceConfig (an :class:`InstanceChoice`).

    >>> single, several = training_job_definitions({"": ("ml.m5.xlarge", 2)}, account="1",
    ...     region="eu-west-1", tuning_job_name="t", objective={})
    >>> single["ResourceConfig"], several
    ({'InstanceType': 'ml.m5.xlarge', 'InstanceCount': 2, 'VolumeSizeInGB': 10}, None)
    """
    if not definitions:
        raise ValueError("give at least one training-job definition")
    if "" in definitions and len(definitions) > 1:
        raise ValueError("an unnamed definition is a tuning job's only one; name each of several")

    def definition(resources: InstanceResources) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "AlgorithmSpecification": {
                "TrainingImage": f"683313688378.dkr.ecr.{region}.amazonaws.com/"
                "sagemaker-xgboost:1.7-1",
                "TrainingInputMode": "File",
            },
            "RoleArn": f"arn:aws:iam::{account}:role/SageMakerExecutionRole",
            "OutputDataConfig": {
                "S3OutputPath": f"s3://sagemaker-{region}-{account}/{tuning_job_name}/output"
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        }
        if isinstance(resources, InstanceChoice):
            shape["HyperParameterTuningResourceConfig"] = {
                "AllocationStrategy": "Prioritized",
                "InstanceConfigs": [
                    {
                        "InstanceType": instance_type,
                        "InstanceCount": count,
                        "VolumeSizeInGB": DEFAULT_VOLUME_SIZE_GB,
                    }
                    for instance_type, count in resources.configs
                ],
            }
        else:
            instance_type, count = resources
            shape["ResourceConfig"] = {
                "InstanceType": instance_type,
                "InstanceCount": count,
                "VolumeSizeInGB": DEFAULT_VOLUME_SIZE_GB,
            }
        return shape

    if "" in definitions:
        return definition(definitions[""]), None
    return None, [
        {"DefinitionName": name, "TuningObjective": dict(objective), **definition(resources)}
        for name, resources in definitions.items()
    ]


def definition_names(
    single: Mapping[str, Any] | None, several: Iterable[Mapping[str, Any]] | None
) -> set[str]:
    """The DefinitionNames of a tuning job's TrainingJobDefinition and TrainingJobDefinitions."""
    return {
        definition["DefinitionName"]
        for definition in [*([single] if single else []), *(several or [])]
        if definition.get("DefinitionName")
    }


@dataclass(frozen=True)
class SimulatedTrainingJob:
    """A training job the demo simulates, its times naive UTC as moto keeps its own.

    ``instance_type`` is what it runs on (for a failure's text); the API's summary does not
    carry it. ``summary()`` is its HyperParameterTrainingJobSummary.
    """

    arn: str
    name: str
    tuning_job_name: str
    status: str
    created: datetime
    instance_type: str
    started: datetime | None = None
    ended: datetime | None = None
    tuned_hyperparameters: Mapping[str, str] = field(default_factory=dict)
    objective_metric: str | None = None
    objective_type: str | None = None
    objective_value: float | None = None
    objective_status: str | None = None
    failure_reason: str | None = None
    definition_name: str | None = None

    def summary(self) -> dict[str, Any]:
        """Its HyperParameterTrainingJobSummary: fields it has no value for are left out."""
        summary: dict[str, Any] = {
            "TrainingJobDefinitionName": self.definition_name,
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "TuningJobName": self.tuning_job_name,
            "CreationTime": self.created,
            "TrainingStartTime": self.started,
            "TrainingEndTime": self.ended,
            "TrainingJobStatus": self.status,
            "TunedHyperParameters": dict(self.tuned_hyperparameters),
            "FailureReason": self.failure_reason,
            "ObjectiveStatus": self.objective_status,
        }
        if self.objective_value is not None:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": self.objective_type,
                "MetricName": self.objective_metric,
                "Value": self.objective_value,
            }
        return {key: value for key, value in summary.items() if value is not None}


def retryable_failure(failure_reason: str | None) -> bool:
    """Whether a failure counts as RetryableError: an internal service error, as SageMaker
    documents the only failures a tuning job can retry.

    >>> retryable_failure("InternalServerError: We encountered an internal error."), retryable_failure(None)
    (True, False)
    """
    return (failure_reason or "").startswith("InternalServerError")


def training_job_status_counters(jobs: Iterable[SimulatedTrainingJob]) -> dict[str, int]:
    """A tuning job's TrainingJobStatusCounters, counted from its training jobs."""
    counted = Counter(
        "RetryableError"
        if job.status == "Failed" and retryable_failure(job.failure_reason)
        else _STATUS_COUNTERS[job.status]
        for job in jobs
    )
    return {key: counted[key] for key in TRAINING_JOB_STATUSES}


def objective_status_counters(jobs: Iterable[SimulatedTrainingJob]) -> dict[str, int]:
    """A tuning job's ObjectiveStatusCounters: its training jobs' ObjectiveStatus counted."""
    counted = Counter(job.objective_status for job in jobs)
    return {key: counted[key] for key in OBJECTIVE_STATUSES}


class TrainingJobListing:
    """WSGI middleware: ListTrainingJobsForHyperParameterTuningJob answered from the demo's
    training jobs (see the module's docstring for how it pages and filters); every other
    request goes to ``app`` (moto).

    ``training_jobs`` maps (region, tuning job name) to its training jobs; a tuning job
    absent from it is not found. Every request, this one and moto's, is answered holding
    ``lock``, which the demo also holds across a step of its simulation: no answer sees
    half a step.
    """

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        training_jobs: Mapping[tuple[str, str], Sequence[SimulatedTrainingJob]],
        lock: threading.Lock,
    ) -> None:
        self._app = app
        self._training_jobs = training_jobs
        self._lock = lock

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Answer one request."""
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.rpartition(".")[2] != OPERATION:
            with self._lock:
                return list(self._app(environ, start_response))
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict):
            return _answer(start_response, 400, _error("SerializationException", "Bad request"))
        with self._lock:
            status, payload = self.page(_region_of(environ), request)
        return _answer(start_response, status, payload)

    def page(self, region: str, request: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """The HTTP status and awsJson1_1 body answering ``request`` in ``region``."""
        problem = _invalid_request(request)
        if problem is not None:
            return 400, _error("ValidationException", problem)
        name = request.get("HyperParameterTuningJobName", "")
        jobs = self._training_jobs.get((region, name))
        if jobs is None:
            return 400, _error(
                "ResourceNotFound", f"Could not find hyper parameter tuning job '{name}'."
            )
        offset = 0
        if request.get("NextToken"):
            offset_or_none = _offset_of(request["NextToken"], name)
            if offset_or_none is None:
                return 400, _error("ValidationException", "The pagination token is invalid.")
            offset = offset_or_none
        sort_by = request.get("SortBy", "Name")
        ordered = sorted(
            (
                job
                for job in jobs
                if sort_by != "FinalObjectiveMetricValue" or job.objective_value is not None
            ),
            key=_SORT_KEYS[sort_by],
            reverse=request.get("SortOrder") == "Descending",
        )
        end = offset + request.get("MaxResults", _DEFAULT_PAGE_SIZE)
        # AWS's reading: the page is cut first, then filtered.
        status = request.get("StatusEquals")
        page = [job for job in ordered[offset:end] if status in (None, job.status)]
        payload: dict[str, Any] = {"TrainingJobSummaries": [_wire(job.summary()) for job in page]}
        if end < len(ordered):
            payload["NextToken"] = _token(name, end)
        return 200, payload


def _invalid_request(request: Mapping[str, Any]) -> str | None:
    """Why AWS would reject the request's MaxResults or an enum's value, in AWS's words; or None."""
    size = request.get("MaxResults", _DEFAULT_PAGE_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _MAX_PAGE_SIZE:
        return (
            f"1 validation error detected: Value '{size}' at 'maxResults' failed to satisfy "
            f"constraint: Member must have value between 1 and {_MAX_PAGE_SIZE}"
        )
    for key, allowed in _ENUMS.items():
        value = request.get(key, allowed[0])
        if value not in allowed:
            return (
                f"1 validation error detected: Value '{value}' at '{key[0].lower()}{key[1:]}' "
                f"failed to satisfy constraint: Member must satisfy enum value set: {list(allowed)}"
            )
    return None


def _token(tuning_job_name: str, offset: int) -> str:
    """A NextToken for the page of ``tuning_job_name``'s training jobs at ``offset``."""
    payload = json.dumps({"job": tuning_job_name, "offset": offset}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode()


def _offset_of(token: str, tuning_job_name: str) -> int | None:
    """The offset a NextToken stands for; None unless this listing issued it for this job."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("job") != tuning_job_name:
        return None
    offset = payload.get("offset")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        return None
    return offset


def _wire(value: Any) -> Any:
    """``value`` as JSON holds it in the awsJson1_1 protocol: datetimes (naive UTC) as epoch
    seconds to the millisecond, as AWS writes them and moto serializes its own."""
    if isinstance(value, datetime):
        return calendar.timegm(value.timetuple()) + (value.microsecond // 1000) / 1000
    if isinstance(value, dict):
        return {key: _wire(item) for key, item in value.items()}
    return value


def _error(code: str, message: str) -> dict[str, Any]:
    return {"__type": code, "message": message}


def _answer(
    start_response: Callable[..., Any], status: int, payload: Mapping[str, Any]
) -> list[bytes]:
    data = json.dumps(payload).encode()
    headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("Content-Length", str(len(data))),
    ]
    if status != 200:
        headers.append(("x-amzn-ErrorType", str(payload["__type"])))
    start_response("200 OK" if status == 200 else f"{status} Bad Request", headers)
    return [data]


def _region_of(environ: Mapping[str, Any]) -> str:
    """The region of the request's SigV4 credential scope (key/date/region/service/...)."""
    scope = str(environ.get("HTTP_AUTHORIZATION", "")).partition("Credential=")[2].split("/")
    return scope[2] if len(scope) > 3 else "us-east-1"
