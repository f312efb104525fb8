"""A real SageMaker API for tests: moto's server on 127.0.0.1 behind a fault-injecting middleware.

The middleware counts every request it receives per (region, operation) and can answer
chosen requests with throttling, 500s, AccessDenied, rejected tokens or a refused
AssumeRole, or hold them, before moto sees them, or rewrite the job summaries of the
listing's answer as a malformed API might send them. It remembers the secrets it issues and
receives (AssumeRole's keys and tokens, request signatures) so tests can check that no log
line quotes one. Tests set job state by editing moto's in-process backends, and keep the
training jobs of tuning jobs in the server's own store. A tuning job's training-job
definitions, where DescribeHyperParameterTuningJob tells its training jobs' instance types,
are given with ``SageMakerTestServer.add_job``'s ``definitions``.

ListHyperParameterTuningJobs is answered under one of two listing semantics
(LISTING_SEMANTICS), chosen with ``SageMakerTestServer.use_listing_semantics``:

- ``"moto"``: moto's own answer. moto filters first, then sorts and pages, so a filtered
  listing costs ceil(matching jobs / MaxResults) pages and never sees an empty page.
- ``"aws"``: the reading AWS documents for the sibling ListTrainingJobs, answered here from
  moto's backend. The jobs are sorted by SortBy/SortOrder (default Name, Ascending; ties
  broken by name), the MaxResults slice (default 10) at the NextToken's offset is cut, and
  only then are StatusEquals, NameContains and the time bounds applied to it. A NextToken
  comes with every page that leaves jobs after it, so a filtered listing costs
  ceil(all jobs / MaxResults) pages and may see empty pages that carry one. Tokens are
  opaque, new on every call, and rejected with a ValidationException unless issued here.
  The summaries are serialized by moto's own serializer, so a job reads the same in both.

ListTrainingJobsForHyperParameterTuningJob, which moto does not implement (its tuning jobs
launch no training jobs), is answered here in both modes from the server's own store of
training jobs per tuning job (``SageMakerTestServer.add_training_job``, changed later with
``update_training_job``). A tuning job's TrainingJobStatusCounters in moto are recomputed
from its stored training jobs whenever one is added or changed (TRAINING_JOB_COUNTERS). The
training jobs are sorted by SortBy/SortOrder (default Name, Ascending; ties broken by name;
FinalObjectiveMetricValue leaves out those without an objective value); MaxResults is 1 to
100, default 10. ``"moto"`` applies StatusEquals, then cuts the page (ceil(matching /
MaxResults) pages); ``"aws"`` cuts the page from all of them, then applies StatusEquals
(ceil(all / MaxResults) pages, some perhaps empty yet carrying a NextToken). Tokens are
opaque and checked as above; a tuning job that does not exist is ResourceNotFound, as moto
answers DescribeHyperParameterTuningJob. The answer is serialized by moto's serializer.

Fault rules are matched first, in either mode and for every operation; ``empty_page`` and
``rewrite`` answer a listing in its own shape, ``rewrite`` the page the mode gives.

The Resource Groups Tagging API's GetResources is answered here, from the tags moto's
SageMaker backend stores for tuning jobs (CreateHyperParameterTuningJob, AddTags): moto
implements it too, but also ends a page at 100 tags when only ResourcesPerPage is given,
where AWS pages by ResourcesPerPage alone. As on AWS, jobs never tagged are not listed.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import io
import json
import operator
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from moto.core.parse import default_timestamp_parser
from moto.core.responses import ActionContext, ActionResult
from moto.core.serialize import get_serializer_class
from moto.core.utils import get_service_model
from moto.iam.models import get_account_id_from
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sagemaker.exceptions import ResourceNotFound, ValidationError
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from werkzeug.serving import make_server

from exporter.demo import create_moto_tuning_job
from exporter.demo_training_jobs import InstanceResources, definition_names
from exporter.model.statuses import OBJECTIVE_STATUSES, TRAINING_JOB_STATUSES

DEFAULT_ACCOUNT = "123456789012"  # moto's account for keys it did not issue
# DescribeHyperParameterTuningJob fields -> the attribute moto's job answers them from.
DESCRIBED_ATTRIBUTES = {
    "BestTrainingJob": "best_training_job",
    "ConsumedResources": "consumed_resources",
    "TuningJobCompletionDetails": "tuning_job_completion_details",
}
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")
_ACCESS_KEY = re.compile(r"Credential=([^/]+)/")
TUNING_JOB_RESOURCE_TYPE = "sagemaker:hyper-parameter-tuning-job"
LISTING_OPERATION = "ListHyperParameterTuningJobs"
# How ListHyperParameterTuningJobs pages and filters: moto's way, or AWS's documented one.
LISTING_SEMANTICS = ("moto", "aws")
# SortBy -> the order it gives; the name breaks ties so that pages never overlap.
_LISTING_ORDERS: dict[str, Callable[[Any], tuple[Any, ...]]] = {
    "Name": lambda job: (job.hyper_parameter_tuning_job_name,),
    "Status": lambda job: (
        job.hyper_parameter_tuning_job_status,
        job.hyper_parameter_tuning_job_name,
    ),
    "CreationTime": lambda job: (job.creation_time, job.hyper_parameter_tuning_job_name),
}
TRAINING_JOBS_OPERATION = "ListTrainingJobsForHyperParameterTuningJob"
# The key of each listing's summaries, for faults that answer or rewrite a page.
_SUMMARIES_KEYS = {
    LISTING_OPERATION: "HyperParameterTuningJobSummaries",
    TRAINING_JOBS_OPERATION: "TrainingJobSummaries",
}
# A training job's status -> the tuning job's TrainingJobStatusCounters key that counts it.
# A summary cannot tell a retryable failure from a client error, so every Failed job counts
# as NonRetryableError; a Stopping job has not stopped yet, so it still counts as InProgress.
# (botocore's enum also has Deleting, which no counter has a place for: it is not stored.)
TRAINING_JOB_COUNTERS = {
    "InProgress": "InProgress",
    "Stopping": "InProgress",
    "Completed": "Completed",
    "Failed": "NonRetryableError",
    "Stopped": "Stopped",
}
# Every key of TrainingJobStatusCounters, as moto stores them on its tuning job.
TRAINING_JOB_COUNTER_KEYS = TRAINING_JOB_STATUSES
# Time bounds -> the job attribute they bound and the test it must pass; strict, as moto's.
_LISTING_TIME_BOUNDS: dict[str, tuple[str, Callable[[datetime, datetime], bool]]] = {
    "CreationTimeAfter": ("creation_time", operator.gt),
    "CreationTimeBefore": ("creation_time", operator.lt),
    "LastModifiedTimeAfter": ("last_modified_time", operator.gt),
    "LastModifiedTimeBefore": ("last_modified_time", operator.lt),
}

# Error bodies in the awsJson1_1 shape that botocore parses into ClientError codes.
FAULT_RESPONSES: dict[str, tuple[str, dict[str, str]]] = {
    "throttle": ("400 Bad Request", {"__type": "ThrottlingException", "message": "Rate exceeded"}),
    "server_error": (
        "500 Internal Server Error",
        {"__type": "InternalFailure", "message": "We encountered an internal error."},
    ),
    "access_denied": (
        "400 Bad Request",
        {
            "__type": "AccessDeniedException",
            "message": "User is not authorized to perform this action",
        },
    ),
    # As AWS words it, naming the action (the request's operation, filled in for {action}),
    # so the exporter can name the missing permission.
    "access_denied_action": (
        "400 Bad Request",
        {
            "__type": "AccessDeniedException",
            "message": "User: arn:aws:sts::111111111111:assumed-role/reader/"
            "sagemaker-tuning-exporter is not authorized to perform: "
            "sagemaker:{action} on resource: "
            "arn:aws:sagemaker:eu-west-1:111111111111:hyper-parameter-tuning-job/* because no "
            "identity-based policy allows the sagemaker:{action} action",
        },
    ),
    "expired_token": (
        "400 Bad Request",
        {
            "__type": "ExpiredTokenException",
            "message": "The security token included in the request is expired",
        },
    ),
    "invalid_token": (
        "400 Bad Request",
        {
            "__type": "UnrecognizedClientException",
            "message": "The security token included in the request is invalid.",
        },
    ),
}
# Error bodies in the awsQuery (XML) shape of STS, for faults of AssumeRole.
XML_FAULT_RESPONSES: dict[str, tuple[str, str]] = {
    "assume_role_denied": (
        "403 Forbidden",
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        "<Type>Sender</Type><Code>AccessDenied</Code><Message>User: "
        "arn:aws:iam::123456789012:user/exporter is not authorized to perform: "
        "sts:AssumeRole on resource: arn:aws:iam::111111111111:role/reader</Message></Error>"
        "<RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>",
    ),
    "assume_role_expired": (
        "403 Forbidden",
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        "<Type>Sender</Type><Code>ExpiredToken</Code><Message>The security token included "
        "in the request is expired</Message></Error>"
        "<RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c8</RequestId></ErrorResponse>",
    ),
}
_ISSUED_SECRET = re.compile(r"<(?:SecretAccessKey|SessionToken)>([^<]+)</")


@dataclass
class FaultRule:
    """Answer matching requests with ``kind``, ``times`` times.

    ``kind`` is a FAULT_RESPONSES or XML_FAULT_RESPONSES key, ``hang`` (hold the request
    ``hang_seconds``, then answer it), ``empty_page`` (an empty page of the listing's summaries
    with a fresh NextToken), or ``rewrite`` (the listing's answer, each of its job or training
    job summaries replaced by what ``rewrite_summary`` returns for it: any JSON value, so a
    field can be dropped, nulled or given another type).
    """

    region: str
    kind: str
    times: int | None = None  # None: every matching request
    operation: str | None = None
    hang_seconds: float = 0.0
    body_contains: str | None = None  # e.g. a role ARN, to fault one account's AssumeRole
    rewrite_summary: Callable[[dict[str, Any]], Any] | None = None


@dataclass
class _PageTokens:
    """The NextTokens one listing issues: each encodes the next page's offset and a nonce, so
    no two are alike; they are remembered, as only a token issued here is accepted."""

    issued: set[str] = field(default_factory=set)
    nonce: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, offset: int) -> str:
        """A new token for the page at ``offset``."""
        with self.lock:
            self.nonce += 1
            payload = json.dumps({"offset": offset, "nonce": self.nonce})
            token = base64.urlsafe_b64encode(payload.encode()).decode()
            self.issued.add(token)
        return token

    def offset_of(self, token: str) -> int | None:
        """The offset ``token`` stands for; None unless it was issued here."""
        with self.lock:
            if token not in self.issued:
                return None
        try:
            return int(json.loads(base64.urlsafe_b64decode(token))["offset"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None

    def forget(self) -> None:
        """Accept none of the tokens issued so far."""
        with self.lock:
            self.issued.clear()


def _read_paging(
    request: Mapping[str, Any], tokens: _PageTokens, enums: Mapping[str, tuple[str, ...]]
) -> tuple[int, str | None]:
    """The offset a listing request starts at, and why AWS would reject it (or None)."""
    problem = _invalid_listing_request(request, enums)
    if problem is not None or not request.get("NextToken"):
        return 0, problem
    offset = tokens.offset_of(request["NextToken"])
    if offset is None:
        return 0, "The pagination token is invalid."
    return offset, None


@dataclass
class _PageThenFilterListing:
    """ListHyperParameterTuningJobs as AWS documents ListTrainingJobs: sort, page, then filter.

    A WSGI app that answers from moto's backend of the request's account and region, with
    opaque NextTokens (_PageTokens).
    """

    tokens: _PageTokens = field(default_factory=_PageTokens)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request: dict[str, Any] = json.loads(environ["wsgi.input"].read() or b"{}")
        offset, problem = _read_paging(
            request,
            self.tokens,
            {"SortBy": tuple(_LISTING_ORDERS), "SortOrder": ("Ascending", "Descending")},
        )
        if problem is not None:
            return _answer_json(
                start_response,
                "400 Bad Request",
                {"__type": "ValidationException", "message": problem},
            )
        backend = sagemaker_backends[_account_of(environ)][_region_of(environ)]
        jobs = sorted(
            backend.hyper_parameter_tuning_jobs.values(),
            key=_LISTING_ORDERS[request.get("SortBy", "Name")],
            reverse=request.get("SortOrder") == "Descending",
        )
        end = offset + request.get("MaxResults", 10)
        matching = [job for job in jobs[offset:end] if _listing_keeps(job, request)]
        next_token = self.tokens.issue(end) if end < len(jobs) else None
        return _answer_serialized(
            start_response, LISTING_OPERATION, _listing_page(matching, next_token)
        )


def _invalid_listing_request(
    request: Mapping[str, Any], enums: Mapping[str, tuple[str, ...]]
) -> str | None:
    """Why AWS would reject the listing request's paging, or a value of ``enums`` (request key
    -> the values it allows), as AWS's message says; or None."""
    size = request.get("MaxResults", 10)
    if not isinstance(size, int) or not 1 <= size <= 100:
        return (
            f"1 validation error detected: Value '{size}' at 'maxResults' failed to satisfy "
            "constraint: Member must have value between 1 and 100"
        )
    for key, allowed in enums.items():
        value = request.get(key, allowed[0])
        if value not in allowed:
            return (
                f"1 validation error detected: Value '{value}' at '{key[0].lower()}{key[1:]}' "
                f"failed to satisfy constraint: Member must satisfy enum value set: {list(allowed)}"
            )
    return None


def _listing_keeps(job: Any, request: Mapping[str, Any]) -> bool:
    """Whether moto's ``job`` passes the listing request's filters, compared as moto does.

    The time bounds arrive as epoch seconds; moto's parser makes them naive UTC times, as
    moto keeps its own.
    """
    if (
        request.get("StatusEquals")
        and job.hyper_parameter_tuning_job_status != request["StatusEquals"]
    ):
        return False
    if (
        request.get("NameContains")
        and request["NameContains"] not in job.hyper_parameter_tuning_job_name
    ):
        return False
    return all(
        passes(getattr(job, attribute), default_timestamp_parser(request[key]))
        for key, (attribute, passes) in _LISTING_TIME_BOUNDS.items()
        if request.get(key) is not None
    )


def _listing_page(jobs: Iterable[Any], next_token: str | None) -> dict[str, Any]:
    """A ListHyperParameterTuningJobs answer of moto's ``jobs``."""
    return {
        "HyperParameterTuningJobSummaries": [job.summary() for job in jobs],
        "NextToken": next_token,
    }


def _serialized(operation: str, result: object) -> tuple[str, list[tuple[str, str]], bytes]:
    """``result`` of a SageMaker ``operation``, an answer or moto's exception, serialized as
    moto serializes its own: the WSGI status line, headers and body."""
    service = get_service_model("sagemaker")
    context = ActionContext(
        service,
        service.operation_model(operation),
        get_serializer_class(service.service_name, service.protocol),
        SageMakerResponse(),
    )
    status, headers, body = ActionResult(result).execute_result(context)
    data = body.encode() if isinstance(body, str) else body
    status_line = f"{int(status)} {HTTPStatus(int(status)).phrase}"
    return status_line, [*headers.items(), ("Content-Length", str(len(data)))], data


def _answer_serialized(
    start_response: Callable[..., Any], operation: str, result: object
) -> list[bytes]:
    """Answer ``result`` of ``operation`` as moto would (see _serialized)."""
    status, headers, data = _serialized(operation, result)
    start_response(status, headers)
    return [data]


@dataclass(frozen=True)
class StoredTrainingJob:
    """A training job a tuning job launched, as the test server stores it (its times naive
    UTC, as moto keeps its own); ``summary()`` is its HyperParameterTrainingJobSummary."""

    account: str
    region: str
    tuning_job_name: str
    name: str
    status: str
    created: datetime
    started: datetime | None = None
    ended: datetime | None = None
    tuned_hyperparameters: Mapping[str, str] = field(default_factory=dict)
    objective_value: float | None = None
    objective_metric: str | None = None
    objective_type: str | None = None
    objective_status: str | None = None
    failure_reason: str | None = None
    definition_name: str | None = None

    @property
    def arn(self) -> str:
        """Its ARN, as SageMaker writes a training job's."""
        return f"arn:aws:sagemaker:{self.region}:{self.account}:training-job/{self.name}"

    def summary(self) -> dict[str, Any]:
        """Its HyperParameterTrainingJobSummary; None marks a field left out."""
        objective = None
        if self.objective_value is not None:
            objective = {
                "Type": self.objective_type,
                "MetricName": self.objective_metric,
                "Value": self.objective_value,
            }
        return {
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
            "FinalHyperParameterTuningJobObjectiveMetric": objective,
            "ObjectiveStatus": self.objective_status,
        }


# SortBy -> the order it gives the training jobs it keeps; ties broken by name, as above.
_TRAINING_JOB_ORDERS: dict[str, Callable[[StoredTrainingJob], tuple[Any, ...]]] = {
    "Name": lambda job: (job.name,),
    "CreationTime": lambda job: (job.created, job.name),
    "Status": lambda job: (job.status, job.name),
    "FinalObjectiveMetricValue": lambda job: (job.objective_value, job.name),
}
_TRAINING_JOB_ENUMS = {
    "SortBy": tuple(_TRAINING_JOB_ORDERS),
    "SortOrder": ("Ascending", "Descending"),
    "StatusEquals": ("InProgress", "Completed", "Failed", "Stopping", "Stopped", "Deleting"),
}


@dataclass
class _TrainingJobListing:
    """ListTrainingJobsForHyperParameterTuningJob, answered from the training jobs stored here.

    A WSGI app given the listing semantics with each request; the store is keyed by
    (account, region) and training job name, as a training job's name is unique there.
    """

    jobs: dict[tuple[str, str], dict[str, StoredTrainingJob]] = field(default_factory=dict)
    tokens: _PageTokens = field(default_factory=_PageTokens)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any], *, semantics: str
    ) -> Iterable[bytes]:
        request: dict[str, Any] = json.loads(environ["wsgi.input"].read() or b"{}")
        offset, problem = _read_paging(request, self.tokens, _TRAINING_JOB_ENUMS)
        if problem is not None:
            return _answer_serialized(
                start_response, TRAINING_JOBS_OPERATION, ValidationError(problem)
            )
        account, region = _account_of(environ), _region_of(environ)
        tuning_job_name = request.get("HyperParameterTuningJobName", "")
        if tuning_job_name not in sagemaker_backends[account][region].hyper_parameter_tuning_jobs:
            # As moto answers DescribeHyperParameterTuningJob, in this operation's error shape.
            missing = ResourceNotFound(
                f"Could not find hyper parameter tuning job '{tuning_job_name}'."
            )
            return _answer_serialized(start_response, TRAINING_JOBS_OPERATION, missing)
        sort_by = request.get("SortBy", "Name")
        jobs = sorted(
            (
                job
                for job in self.of_tuning_job(account, region, tuning_job_name)
                if sort_by != "FinalObjectiveMetricValue" or job.objective_value is not None
            ),
            key=_TRAINING_JOB_ORDERS[sort_by],
            reverse=request.get("SortOrder") == "Descending",
        )
        status = request.get("StatusEquals")
        end = offset + request.get("MaxResults", 10)
        if semantics == "aws":
            page = [job for job in jobs[offset:end] if status in (None, job.status)]
        else:
            jobs = [job for job in jobs if status in (None, job.status)]
            page = jobs[offset:end]
        answer = {
            "TrainingJobSummaries": [job.summary() for job in page],
            "NextToken": self.tokens.issue(end) if end < len(jobs) else None,
        }
        return _answer_serialized(start_response, TRAINING_JOBS_OPERATION, answer)

    def of_tuning_job(
        self, account: str, region: str, tuning_job_name: str
    ) -> list[StoredTrainingJob]:
        """The training jobs stored for a tuning job, in no particular order."""
        with self.lock:
            return [
                job
                for job in self.jobs.get((account, region), {}).values()
                if job.tuning_job_name == tuning_job_name
            ]

    def forget(self) -> None:
        """Forget every training job and every token issued."""
        with self.lock:
            self.jobs.clear()
        self.tokens.forget()


def _answer_json(
    start_response: Callable[..., Any], status: str, payload: Mapping[str, Any] | bytes
) -> list[bytes]:
    """Answer in the awsJson1_1 protocol: ``payload`` as JSON, or bytes already serialized."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    start_response(
        status,
        [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))],
    )
    return [data]


def _check_listing_semantics(mode: str) -> str:
    if mode not in LISTING_SEMANTICS:
        raise ValueError(f"listing semantics must be one of {LISTING_SEMANTICS}, not {mode!r}")
    return mode


@dataclass
class _FaultInjector:
    app: Callable[..., Iterable[bytes]]
    rules: list[FaultRule] = field(default_factory=list)
    # How both listings (tuning jobs, training jobs) are answered, one of LISTING_SEMANTICS.
    listing_semantics: str = "moto"
    aws_listing: _PageThenFilterListing = field(default_factory=_PageThenFilterListing)
    training_jobs: _TrainingJobListing = field(default_factory=_TrainingJobListing)
    received: Counter[tuple[str, str]] = field(default_factory=Counter)
    bodies: list[tuple[str, str, str]] = field(default_factory=list)
    credential_lifetime_seconds: float | None = None
    # How GetResources writes ARNs: as the listing does, or in upper case as a case test needs.
    tagging_arns_upper_case: bool = False
    secrets: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        region = _region_of(environ)
        operation = _operation_of(environ, body)
        text = body.decode(errors="replace")
        signature = environ.get("HTTP_AUTHORIZATION", "").rpartition("Signature=")[2]
        token = environ.get("HTTP_X_AMZ_SECURITY_TOKEN")
        with self.lock:
            self.secrets.update(secret for secret in (signature, token) if secret)
            self.received[(region, operation)] += 1
            self.bodies.append((region, operation, text))
            rule = self._take_rule(region, operation, text)
            lifetime = self.credential_lifetime_seconds
            answer = self._answerer(operation)
        if rule is not None and rule.kind == "hang":
            time.sleep(rule.hang_seconds)
        elif rule is not None and rule.kind == "rewrite":
            assert rule.rewrite_summary is not None
            return _with_rewritten_summaries(answer, environ, start_response, rule.rewrite_summary)
        elif rule is not None and rule.kind == "empty_page":
            # An empty page that still carries a new NextToken, as some List APIs answer.
            page = {
                _SUMMARIES_KEYS.get(operation, _SUMMARIES_KEYS[LISTING_OPERATION]): [],
                "NextToken": f"empty-{len(self.bodies)}",
            }
            return _answer_json(start_response, "200 OK", page)
        elif rule is not None and rule.kind in XML_FAULT_RESPONSES:
            status, xml = XML_FAULT_RESPONSES[rule.kind]
            start_response(
                status, [("Content-Type", "text/xml"), ("Content-Length", str(len(xml)))]
            )
            return [xml.encode()]
        elif rule is not None:
            status, payload = FAULT_RESPONSES[rule.kind]
            message = payload["message"].replace("{action}", operation)
            return _answer_json(start_response, status, {**payload, "message": message})
        if operation == "AssumeRole":
            return self._assume_role(environ, start_response, lifetime)
        if operation == "GetResources":
            resources = _tuning_job_resources(
                region,
                _account_of(environ),
                json.loads(body or b"{}"),
                upper_case=self.tagging_arns_upper_case,
            )
            return _answer_json(start_response, "200 OK", resources)
        return answer(environ, start_response)

    def _answerer(self, operation: str) -> Callable[..., Iterable[bytes]]:
        """The WSGI app that answers ``operation`` under the listing semantics now set."""
        if operation == LISTING_OPERATION and self.listing_semantics == "aws":
            return self.aws_listing
        if operation == TRAINING_JOBS_OPERATION:
            return functools.partial(self.training_jobs, semantics=self.listing_semantics)
        return self.app

    def _assume_role(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        lifetime_seconds: float | None,
    ) -> Iterable[bytes]:
        """moto's AssumeRole answer, its secrets remembered and, given a lifetime, its Expiration
        moved to ``lifetime_seconds`` from now."""
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            captured.extend((status, headers))

        answer = b"".join(self.app(environ, capture)).decode()
        with self.lock:
            self.secrets.update(_ISSUED_SECRET.findall(answer))
        if lifetime_seconds is not None:
            expires = datetime.now(tz=UTC) + timedelta(seconds=lifetime_seconds)
            answer = re.sub(
                r"<Expiration>[^<]*</Expiration>",
                f"<Expiration>{expires.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration>",
                answer,
            )
        data = answer.encode()
        status, headers = captured
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(data)))])
        return [data]

    def _take_rule(self, region: str, operation: str, body: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.region != region or rule.operation not in (None, operation):
                continue
            if rule.body_contains is not None and rule.body_contains not in body:
                continue
            if rule.times is not None:
                if rule.times == 0:
                    continue
                rule.times -= 1
            return rule
        return None


def _with_rewritten_summaries(
    app: Callable[..., Iterable[bytes]],
    environ: dict[str, Any],
    start_response: Callable[..., Any],
    rewrite_summary: Callable[[dict[str, Any]], Any],
) -> Iterable[bytes]:
    """``app``'s listing page, each job (or training job) summary replaced by
    ``rewrite_summary`` of it."""
    captured: list[Any] = []

    def capture(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
        captured.extend((status, headers))

    page = json.loads(b"".join(app(environ, capture)))
    status, headers = captured
    for key in _SUMMARIES_KEYS.values():
        if key in page:
            page[key] = [rewrite_summary(summary) for summary in page[key]]
    rewritten = json.dumps(page).encode()
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    start_response(status, [*headers, ("Content-Length", str(len(rewritten)))])
    return [rewritten]


def for_job(name: str, change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """A ``rewrite_summary`` that applies ``change`` to the summary of job ``name`` only."""
    return lambda summary: (
        change(summary) if summary.get("HyperParameterTuningJobName") == name else summary
    )


def for_training_job(
    name: str, change: Callable[[dict[str, Any]], Any]
) -> Callable[[dict[str, Any]], Any]:
    """A ``rewrite_summary`` that applies ``change`` to the summary of training job ``name``."""
    return lambda summary: change(summary) if summary.get("TrainingJobName") == name else summary


def _tuning_job_resources(
    region: str, account: str, request: Mapping[str, Any], *, upper_case: bool
) -> dict[str, Any]:
    """A GetResources page (botocore's GetResourcesOutput) of the tagged tuning jobs in moto.

    Pages hold ResourcesPerPage resources (AWS's default 50); the PaginationToken is the
    offset of the next page, empty on the last.
    """
    types = request.get("ResourceTypeFilters") or [TUNING_JOB_RESOURCE_TYPE]
    jobs = []
    if TUNING_JOB_RESOURCE_TYPE in types or "sagemaker" in types:
        backend = sagemaker_backends[account][region]
        jobs = sorted(
            (job for job in backend.hyper_parameter_tuning_jobs.values() if job.tags),
            key=lambda job: job.arn,
        )
    per_page = int(request.get("ResourcesPerPage", 50))
    start = int(request.get("PaginationToken") or 0)
    page = jobs[start : start + per_page]
    return {
        "ResourceTagMappingList": [
            {
                "ResourceARN": job.arn.upper() if upper_case else job.arn,
                "Tags": [{"Key": tag["Key"], "Value": tag["Value"]} for tag in job.tags or []],
            }
            for job in page
        ],
        "PaginationToken": str(start + per_page) if start + per_page < len(jobs) else "",
    }


def _account_of(environ: Mapping[str, Any]) -> str:
    """The account moto gives the request's access key: a role's for assumed credentials."""
    match = _ACCESS_KEY.search(environ.get("HTTP_AUTHORIZATION", ""))
    return get_account_id_from(match.group(1)) if match else DEFAULT_ACCOUNT


def _region_of(environ: Mapping[str, Any]) -> str:
    match = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else "unknown"


def _operation_of(environ: Mapping[str, Any], body: bytes) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return str(target).rsplit(".", 1)[-1]
    action = parse_qs(body.decode(errors="replace")).get("Action")
    return action[0] if action else "unknown"


def wire_middleware(
    app: Callable[..., Iterable[bytes]], listing_semantics: str = "moto"
) -> Callable[..., Iterable[bytes]]:
    """``app`` behind this module's middleware, without faults: GetResources pages as on AWS,
    and ListHyperParameterTuningJobs answers under ``listing_semantics``, as does
    ListTrainingJobsForHyperParameterTuningJob (no training jobs: nothing can store one)."""
    return _FaultInjector(app, listing_semantics=_check_listing_semantics(listing_semantics))


class SageMakerTestServer:
    """moto's SageMaker (and STS) API on 127.0.0.1, with fault rules and request counts."""

    def __init__(self) -> None:
        self._injector = _FaultInjector(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", 0, self._injector, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._touched: set[tuple[str, str]] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

    def reset(self) -> None:
        """Forget jobs, training jobs, faults, counts and issued tokens from earlier tests; keep
        the listing semantics, which the ``sagemaker`` fixture sets."""
        for account, region in self._touched:
            sagemaker_backends[account][region].hyper_parameter_tuning_jobs.clear()
        self._touched.clear()
        with self._injector.lock:
            self._injector.rules.clear()
            self._injector.received.clear()
            self._injector.bodies.clear()
            self._injector.credential_lifetime_seconds = None
            self._injector.tagging_arns_upper_case = False
            self._injector.secrets.clear()
        self._injector.aws_listing.tokens.forget()
        self._injector.training_jobs.forget()

    @property
    def listing_semantics(self) -> str:
        """How ListHyperParameterTuningJobs and ListTrainingJobsForHyperParameterTuningJob are
        answered now: one of LISTING_SEMANTICS."""
        with self._injector.lock:
            return self._injector.listing_semantics

    def use_listing_semantics(self, mode: str) -> None:
        """Answer ListHyperParameterTuningJobs and ListTrainingJobsForHyperParameterTuningJob as
        ``mode`` reads them, one of LISTING_SEMANTICS: ``"moto"`` filters, then pages; ``"aws"``
        pages, then filters."""
        _check_listing_semantics(mode)
        with self._injector.lock:
            self._injector.listing_semantics = mode

    def add_fault(self, rule: FaultRule) -> None:
        with self._injector.lock:
            self._injector.rules.append(rule)

    def issue_credentials_expiring_in(self, seconds: float | None) -> None:
        """Make AssumeRole answer with credentials that expire ``seconds`` from now."""
        with self._injector.lock:
            self._injector.credential_lifetime_seconds = seconds

    def write_tagging_arns_in_upper_case(self, upper: bool = True) -> None:
        """Make GetResources write ARNs in upper case, unlike the SageMaker listing."""
        with self._injector.lock:
            self._injector.tagging_arns_upper_case = upper

    def secrets_seen(self) -> set[str]:
        """Every secret that crossed the wire: issued keys and tokens, tokens and signatures sent."""
        with self._injector.lock:
            return set(self._injector.secrets)

    def request_bodies(self, operation: str) -> list[str]:
        """The bodies of the requests received for ``operation``, in order."""
        with self._injector.lock:
            return [body for _, o, body in self._injector.bodies if o == operation]

    def clear_faults(self) -> None:
        with self._injector.lock:
            self._injector.rules.clear()

    def received(self, region: str | None = None, operation: str | None = None) -> int:
        """Requests received, optionally only those of one region and operation."""
        with self._injector.lock:
            return sum(
                count
                for (r, o), count in self._injector.received.items()
                if region in (None, r) and operation in (None, o)
            )

    def received_by_key(self) -> dict[tuple[str, str], int]:
        with self._injector.lock:
            return dict(self._injector.received)

    def add_job(
        self,
        region: str,
        name: str,
        *,
        account: str = DEFAULT_ACCOUNT,
        status: str = "Completed",
        strategy: str = "Bayesian",
        training: Mapping[str, int] | None = None,
        objective: Mapping[str, int] | None = None,
        limits: Mapping[str, int] | None = None,
        created: datetime | None = None,
        modified: datetime | None = None,
        ended: datetime | None = None,
        tags: Mapping[str, str] | None = None,
        described: Mapping[str, Any] | None = None,
        definitions: Mapping[str, InstanceResources] | None = None,
    ) -> Any:
        """Create a tuning job in moto's backend and set its state; returns moto's job object.

        Its objective is to maximize ``accuracy``. ``described`` sets what
        DescribeHyperParameterTuningJob answers beyond the listing: its ``BestTrainingJob``,
        ``ConsumedResources`` and ``TuningJobCompletionDetails`` (see :meth:`describe_as`).

        ``definitions`` give the training-job definitions DescribeHyperParameterTuningJob
        answers (without them, neither field), each a botocore
        HyperParameterTrainingJobDefinition with a placeholder image, role, output path and
        stopping condition. Keys are definition names, values the instances its training
        jobs run on: an ``(instance type, count)`` is a ResourceConfig with a 10 GB volume;
        an ``InstanceChoice((type, count), ...)`` (exporter.demo_training_jobs) is a
        HyperParameterTuningResourceConfig whose InstanceConfigs SageMaker chooses among.

        - ``{"": ("ml.m5.xlarge", 2)}``: one TrainingJobDefinition, no DefinitionName;
        - ``{"def-a": ("ml.p3.2xlarge", 1), "def-b": ("ml.m5.large", 3)}``:
          TrainingJobDefinitions, one per name in this order, each with its DefinitionName
          (and the tuning job's objective as its TuningObjective);
        - ``{"": InstanceChoice(("ml.m5.large", 1), ("ml.c5.xlarge", 1))}``: one
          TrainingJobDefinition letting SageMaker choose the type (named ones may too).

        ``""`` names the only definition; beside other names it is a ValueError. Once a
        tuning job has definitions, a training job's ``definition_name`` must be one of
        their DefinitionNames (see :meth:`add_training_job`).
        """
        backend = sagemaker_backends[account][region]
        self._touched.add((account, region))
        job: Any = create_moto_tuning_job(
            backend,
            name,
            strategy,
            dict(
                limits
                if limits is not None
                else {"MaxNumberOfTrainingJobs": 20, "MaxParallelTrainingJobs": 4}
            ),
            definitions=definitions,
        )
        job.hyper_parameter_tuning_job_status = status
        if training is not None:
            job.training_job_status_counters = dict(training)
        if objective is not None:
            job.objective_status_counters = dict(objective)
        if created is not None:
            job.creation_time = created
        job.last_modified_time = modified or job.creation_time
        job.hyper_parameter_tuning_end_time = ended
        if tags:
            self.tag_job(region, name, tags, account=account)
        if described is not None:
            self.describe_as(region, name, described, account=account)
        return job

    def tag_job(
        self, region: str, name: str, tags: Mapping[str, str], account: str = DEFAULT_ACCOUNT
    ) -> None:
        """Add or overwrite tags of a tuning job, as SageMaker's AddTags does."""
        backend = sagemaker_backends[account][region]
        job = backend.hyper_parameter_tuning_jobs[name]
        # moto keeps None for a job created without tags, and appends AddTags' tags as given.
        job.tags = [tag for tag in job.tags or [] if tag["Key"] not in tags]
        backend.add_tags(job.arn, [{"Key": key, "Value": value} for key, value in tags.items()])

    def describe_as(
        self,
        region: str,
        name: str,
        described: Mapping[str, Any],
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        """Set the ``BestTrainingJob``, ``ConsumedResources`` or ``TuningJobCompletionDetails``
        DescribeHyperParameterTuningJob answers for a job; a key set to None leaves the field out.

        moto answers these fields with fixed placeholders; its job keeps them as attributes.
        """
        job = sagemaker_backends[account][region].hyper_parameter_tuning_jobs[name]
        for key, value in described.items():
            setattr(job, DESCRIBED_ATTRIBUTES[key], None if value is None else dict(value))

    def delete_job(self, region: str, name: str, account: str = DEFAULT_ACCOUNT) -> None:
        """Remove a tuning job from moto's backend, as a finished deletion does, and the training
        jobs stored for it."""
        del sagemaker_backends[account][region].hyper_parameter_tuning_jobs[name]
        listing = self._injector.training_jobs
        with listing.lock:
            stored = listing.jobs.get((account, region), {})
            for job in [job for job in stored.values() if job.tuning_job_name == name]:
                del stored[job.name]

    def add_training_job(
        self,
        region: str,
        tuning_job_name: str,
        name: str,
        *,
        status: str,
        account: str = DEFAULT_ACCOUNT,
        created: datetime | str | None = None,
        started: datetime | str | None = None,
        ended: datetime | str | None = None,
        tuned_hyperparameters: Mapping[str, str] | None = None,
        objective_value: float | None = None,
        objective_metric: str | None = None,
        objective_type: str | None = None,
        objective_status: str | None = None,
        failure_reason: str | None = None,
        definition_name: str | None = None,
    ) -> StoredTrainingJob:
        """Store a training job of tuning job ``tuning_job_name`` (made with add_job), for
        ListTrainingJobsForHyperParameterTuningJob; returns it as stored.

        ``status`` is a key of TRAINING_JOB_COUNTERS; the tuning job's
        TrainingJobStatusCounters are then recomputed from its stored training jobs, replacing
        whatever add_job set. Times are datetimes (naive ones UTC) or ISO-8601 text, as
        :func:`at` reads it; ``created`` defaults to now. ``objective_metric`` and
        ``objective_type`` default to the tuning job's objective and apply only with an
        ``objective_value``; a None leaves any other field out of the summary.
        ``definition_name`` (TrainingJobDefinitionName) must name one of the tuning job's
        definitions if add_job gave it any (a ValueError otherwise); without them, any name.
        """
        job = StoredTrainingJob(
            account=account,
            region=region,
            tuning_job_name=tuning_job_name,
            name=name,
            status=status,
            created=_utc(created) or datetime.now(tz=UTC).replace(tzinfo=None),
            started=_utc(started),
            ended=_utc(ended),
            tuned_hyperparameters=dict(tuned_hyperparameters or {}),
            objective_value=objective_value,
            objective_metric=objective_metric,
            objective_type=objective_type,
            objective_status=objective_status,
            failure_reason=failure_reason,
            definition_name=definition_name,
        )
        return self._store_training_job(job, new=True)

    def update_training_job(
        self, region: str, name: str, *, account: str = DEFAULT_ACCOUNT, **changes: Any
    ) -> StoredTrainingJob:
        """Change a stored training job, as its life goes on (it starts, finishes, fails);
        returns it as stored.

        ``changes`` are add_training_job's keywords, read the same way, except those naming
        the job (``tuning_job_name``, ``name``, ``account``, ``region``). The tuning job's
        TrainingJobStatusCounters are recomputed.
        """
        refused = {"tuning_job_name", "name", "account", "region"} & set(changes)
        if refused:
            raise ValueError(f"a training job keeps its {sorted(refused)}")
        for key in ("created", "started", "ended"):
            if key in changes:
                changes[key] = _utc(changes[key])
        if "tuned_hyperparameters" in changes:
            changes["tuned_hyperparameters"] = dict(changes["tuned_hyperparameters"] or {})
        with self._injector.training_jobs.lock:
            job = self._injector.training_jobs.jobs.get((account, region), {}).get(name)
        if job is None:
            raise KeyError(f"no training job {name!r} in {account}/{region}")
        return self._store_training_job(dataclasses.replace(job, **changes), new=False)

    def _store_training_job(self, job: StoredTrainingJob, *, new: bool) -> StoredTrainingJob:
        """Check ``job``, fill in its objective from its tuning job's, store it, and recount
        the tuning job's TrainingJobStatusCounters from its training jobs."""
        if job.status not in TRAINING_JOB_COUNTERS:
            raise ValueError(
                f"training job status {job.status!r} is not one of {list(TRAINING_JOB_COUNTERS)}"
            )
        if job.objective_status not in (None, *OBJECTIVE_STATUSES):
            raise ValueError(
                f"objective status {job.objective_status!r} is not one of {OBJECTIVE_STATUSES}"
            )
        tuning_jobs = sagemaker_backends[job.account][job.region].hyper_parameter_tuning_jobs
        if job.tuning_job_name not in tuning_jobs:
            raise KeyError(f"no tuning job {job.tuning_job_name!r} in {job.account}/{job.region}")
        tuning_job = tuning_jobs[job.tuning_job_name]
        has_definitions = (
            tuning_job.training_job_definition is not None
            or tuning_job.training_job_definitions is not None
        )
        names = definition_names(
            tuning_job.training_job_definition, tuning_job.training_job_definitions
        )
        if has_definitions and job.definition_name not in (None, *names):
            raise ValueError(
                f"training job definition {job.definition_name!r} is not one of tuning job "
                f"{job.tuning_job_name!r}'s: {sorted(names)}"
            )
        if job.objective_value is None:
            job = dataclasses.replace(job, objective_metric=None, objective_type=None)
        else:
            objective = tuning_job.hyper_parameter_tuning_job_config.get(
                "HyperParameterTuningJobObjective", {}
            )
            job = dataclasses.replace(
                job,
                objective_metric=job.objective_metric or objective.get("MetricName"),
                objective_type=job.objective_type or objective.get("Type"),
            )
        listing = self._injector.training_jobs
        with listing.lock:
            stored = listing.jobs.setdefault((job.account, job.region), {})
            if new and job.name in stored:
                raise ValueError(
                    f"training job {job.name!r} already exists in {job.account}/{job.region}"
                )
            stored[job.name] = job
            statuses = Counter(
                TRAINING_JOB_COUNTERS[other.status]
                for other in stored.values()
                if other.tuning_job_name == job.tuning_job_name
            )
            # moto answers both Describe and List from this dict; a new one, replaced whole.
            tuning_job.training_job_status_counters = {
                key: statuses[key] for key in TRAINING_JOB_COUNTER_KEYS
            }
        return job


def _utc(moment: datetime | str | None) -> datetime | None:
    """``moment`` as moto keeps times, naive UTC: naive datetimes and text are taken as UTC."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def at(text: str) -> datetime:
    """A UTC time from ISO-8601 text, naive as moto keeps its own times."""
    return datetime.fromisoformat(text)


def epoch(text: str) -> float:
    """Seconds since the epoch of the UTC time in ISO-8601 ``text``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
