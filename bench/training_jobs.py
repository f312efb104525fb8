"""Benchmark: ListTrainingJobsForHyperParameterTuningJob, from a first start's backlog to steady state.

    python bench/training_jobs.py                     # 10,000 ended and 20 running tuning jobs, 500 training jobs each
    python bench/training_jobs.py --ended 200 --running 5 --training-jobs 120   # a quick run
    python bench/training_jobs.py --baseline --json training.json   # also the exporter without the feature
    python bench/training_jobs.py --listing-semantics aws           # pages cut, then filtered

moto's SageMaker server runs in this process on 127.0.0.1 with ``--ended`` + ``--running``
tuning jobs in one region, seeded as bench/benchmark.py seeds them (the running ones the
newest), each given a TrainingJobDefinition with a ResourceConfig (one of four instance
types, 1 or 2 instances) and an objective, maximized for even tuning jobs and minimized for
odd ones. moto does not implement ListTrainingJobsForHyperParameterTuningJob, and 5 million
stored training jobs would not fit this process: a WSGI middleware in front of moto
(:class:`SyntheticTrainingJobs`) computes training job ``j`` of tuning job ``i`` from
``(i, j)`` alone, whenever it is asked for:

* its name, CreationTime (a fixed instant per tuning job, plus ``j`` minutes), status,
  TrainingStartTime and TrainingEndTime, FailureReason, its
  FinalHyperParameterTuningJobObjectiveMetric (of the tuning job's Type) and 3
  TunedHyperParameters;
* an ended tuning job has ``--training-jobs`` training jobs, all Completed, Stopped or
  Failed; the Failed ones give reasons of every kind: AlgorithmError, ClientError,
  CapacityError and ResourceLimitExceeded (never started), InternalServerError, a text of
  no known kind, and none;
* a running tuning job has ``--training-jobs`` training jobs at step 0, the newest
  IN_PROGRESS of them InProgress. The bench bumps a step counter before each steady-state
  refresh: at each step NEW_PER_STEP training jobs are created (InProgress) and the
  NEW_PER_STEP oldest InProgress ones end, as they would have at step 0 for an ended one.

The middleware answers SortBy CreationTime (Ascending or Descending) with MaxResults
(1 to 100, default 10) and opaque NextTokens that name the last training job a page
covered, so a read resumed later is not thrown off by training jobs created meanwhile.
StatusEquals, which the exporter never sends, is honoured under ``--listing-semantics``:
``moto`` filters, then pages; ``aws`` cuts the page, then filters it. Other operations go to
moto (ListHyperParameterTuningJobs under the same listing semantics, see harness.py).

The exporter runs as its own process with every published job described in its first
refresh (``describe.max_requests_per_refresh`` 100,000, so instance types resolve) and
``training_jobs`` enabled: ``leaderboard`` ``--leaderboard``, ``ttl`` and ``cache.ttl``
``--ttl`` seconds, and ``max_requests_per_refresh`` ``--budget``, large by default so
that one refresh reads the whole backlog (``cache.refresh_timeout`` 1h,
``per_job_metrics.max_jobs`` at least every tuning job). Only the bench's scrapes start
refreshes; the end of each is read from the exporter's debug log line, written once its
snapshot is stored (see :func:`wait_refreshed`). It measures:

1. **the first-start backlog**: the requests of this call until every tuning job's
   training jobs were read in full (counted at the wire, when the last page of the last
   tuning job was answered; cross-checked against the exporter's own
   ``sagemaker_tuning_exporter_api_requests_total``), the time they took, and the
   refreshes the same backlog takes at the default ``max_requests_per_refresh`` of 100:
   ceil(requests / 100);
2. **steady state**: ``--steady-refreshes`` refreshes, each started by a scrape once
   ``--ttl`` has passed since the previous one ended and after the step counter moved;
   their requests of this call, split between running and ended tuning jobs (by the
   tuning job each request names);
3. **peak RSS** (VmHWM) once ready after the backlog, and after the steady state and
   ``--scrapes`` gzip scrapes and one plain one; with ``--baseline``, the same for the
   exporter with ``training_jobs`` disabled, against the same server.

It verifies the published samples of ``--sample`` ended tuning jobs (after the backlog)
and of every running one (after the steady state, at the last step) against what the
synthetic data implies: failed training jobs by reason, instance seconds by instance
type, and the leaderboard's objective values and hyperparameters. It prints a table,
writes ``--json``, and exits 1 when a check fails. Loopback only; placeholder
credentials only.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The sibling module, found through the path above.
from harness import (
    ACCOUNT,
    PLACEHOLDER_ENVIRONMENT,
    RequestCounts,
    add_listing_semantics_flag,
    exporter_command,
    free_port,
    listing_semantics_line,
    load_average,
    machine,
    moto_backend,
    moto_server,
    process_status,
    running_indices,
    seed_jobs,
    start_process,
    status_kib,
    wait_ready,
)

from exporter.aws.operations import (
    DESCRIBE_OPERATION,
    LIST_OPERATION,
    TRAINING_JOBS_OPERATION,
)
from exporter.demo_training_jobs import training_job_definitions

REGION = "us-east-1"
TARGET = f"SageMaker.{TRAINING_JOBS_OPERATION}"
# The exporter's page, and its default training_jobs.max_requests_per_refresh.
PAGE_SIZE = 100
DEFAULT_BUDGET = 100
DEFAULT_CACHE_TTL_SECONDS = 60.0
# Training jobs of tuning job i are created from this instant plus i hours, one a minute:
# fixed, so that every run serves the same figures.
BASE_EPOCH = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
TUNING_JOB_SPACING_SECONDS = 3600.0
TRAINING_JOB_SPACING_SECONDS = 60.0
# A running tuning job's newest training jobs still run; this many are created (and as many
# of those running end) at each step.
IN_PROGRESS = 5
NEW_PER_STEP = 3
# What tuning job i's training jobs run on: INSTANCES[i % 4].
INSTANCES = (
    ("ml.m5.xlarge", 1),
    ("ml.c5.2xlarge", 2),
    ("ml.g4dn.xlarge", 1),
    ("ml.p3.2xlarge", 1),
)
OBJECTIVES = {"Maximize": "validation:auc", "Minimize": "validation:rmse"}
# FailureReasons, each with the reason label the exporter should give it, and whether the
# training job started (capacity and quota failures come before the instances do).
FAILURES: tuple[tuple[str | None, str, bool], ...] = (
    (
        "AlgorithmError: ExecuteUserScriptError: ExitCode 1 ErrorMessage "
        '"ValueError: Input contains NaN"',
        "AlgorithmError",
        True,
    ),
    (
        "ClientError: Data download failed:Failed to download data. NoSuchKey (404)",
        "ClientError",
        True,
    ),
    (
        "CapacityError: Unable to provision requested ML compute capacity. Please retry using "
        "a different ML instance type.",
        "CapacityError",
        False,
    ),
    (
        "InternalServerError: We encountered an internal error. Please try again.",
        "InternalServerError",
        True,
    ),
    (
        "ResourceLimitExceeded: The account-level service limit 'ml.p3.2xlarge for training "
        "job usage' is 2 Instances, with current utilization of 2 Instances.",
        "ResourceLimitExceeded",
        False,
    ),
    ("Training job ended unexpectedly: the container exited without a status.", "Other", True),
    (None, "Other", True),
)
HYPERPARAMETERS = ("eta", "max_depth", "subsample")
# The per-job families of the training jobs, as the exporter names them.
FAILED_FAMILY = "sagemaker_tuning_job_failed_training_jobs"
SECONDS_FAMILY = "sagemaker_tuning_job_training_instance_seconds"
TOP_VALUE_FAMILY = "sagemaker_tuning_job_top_training_job_objective_value"
TOP_INFO_FAMILY = "sagemaker_tuning_job_top_training_job_info"
TRAINING_FAMILIES = (FAILED_FAMILY, SECONDS_FAMILY, TOP_VALUE_FAMILY, TOP_INFO_FAMILY)
_TRAINING_LINES = tuple(f"{name}{{" for name in TRAINING_FAMILIES)
_JOB_NAME_LABEL = re.compile(r'job_name="([^"]*)"')
_CURSOR_PREFIX = "bench-training-jobs:"
# Long enough for the backlog of a first start: 50,000 requests and 10,000 describes.
REFRESH_TIMEOUT = "1h"
# What the exporter logs (at debug level) once a refresh's snapshot is stored.
REFRESHED_LINE = "msg=refreshed account="
READY_TIMEOUT_SECONDS = 3 * 3600.0
SCRAPE_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class TuningJobPlan:
    """What the bench gives a seeded tuning job: its training jobs' instances and objective."""

    index: int
    name: str
    running: bool
    objective_type: str
    instance_type: str
    instance_count: int

    @property
    def base(self) -> float:
        """When its first training job was created (epoch seconds)."""
        return BASE_EPOCH + self.index * TUNING_JOB_SPACING_SECONDS


@dataclass(frozen=True)
class TrainingJob:
    """One synthetic training job, as the API would describe it; times in epoch seconds."""

    name: str
    status: str
    created: float
    started: float | None
    ended: float | None
    failure_reason: str | None
    reason_label: str | None
    objective_value: float | None
    hyperparameters: tuple[tuple[str, str], ...]


def training_job(plan: TuningJobPlan, j: int, running: bool, newest: bool) -> TrainingJob:
    """Training job ``j`` of ``plan``'s tuning job: a function of (tuning job, ``j``) alone,
    but while it is ``running`` (InProgress; the ``newest`` one has not started yet)."""
    h = zlib.crc32(f"{plan.index}:{j}".encode())
    created = plan.base + j * TRAINING_JOB_SPACING_SECONDS
    name = f"{plan.name}-{j + 1:03d}-{h:08x}"
    hyperparameters = (
        ("eta", f"{0.01 + (h >> 8) % 290 / 1000:.3f}"),
        ("max_depth", str(3 + (h >> 16) % 8)),
        ("subsample", f"{0.5 + (h >> 20) % 50 / 100:.2f}"),
    )
    start = created + 20 + (h >> 4) % 100
    started: float | None = start
    ended: float | None = start + 120 + (h >> 12) % 3480
    status = "Completed"
    reason: str | None = None
    label: str | None = None
    value: float | None = None
    roll = h % 1000
    if running:
        status, ended = "InProgress", None
        if newest:
            started = None
    elif roll < 80:
        status = "Failed"
        reason, label, did_start = FAILURES[(h >> 10) % len(FAILURES)]
        if not did_start:
            started = ended = None
    elif roll < 110:
        status = "Stopped"
    else:
        base_value = 0.5 if plan.objective_type == "Maximize" else 0.1
        value = round(base_value + (h >> 3) % 450_000 / 1e6, 6)
    return TrainingJob(name, status, created, started, ended, reason, label, value, hyperparameters)


@dataclass
class Truth:
    """What the exporter should publish of a tuning job's ended training jobs."""

    failed: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    top: list[tuple[str, float, dict[str, str]]] = field(default_factory=list)


class SyntheticTrainingJobs:
    """ListTrainingJobsForHyperParameterTuningJob, computed, in front of moto (see the module).

    Counts the requests it answers per tuning job and per step, and when each tuning job's
    training jobs were first read to their last page.
    """

    def __init__(self, plans: Sequence[TuningJobPlan], training_jobs: int, semantics: str):
        self._plans = {plan.name: plan for plan in plans}
        self._training_jobs = training_jobs
        self._semantics = semantics
        self._lock = threading.Lock()
        self._step = 0
        self.requests: Counter[str] = Counter()
        self.requests_by_step: Counter[tuple[int, bool]] = Counter()  # (step, running)
        self.total = 0
        self.first_request_at: float | None = None
        self._read_in_full: set[str] = set()
        self.backlog_done_at: float | None = None
        self.backlog_requests: int | None = None
        # When the server last received a request, of any operation (time.monotonic()).
        self.last_request_at = 0.0

    # The step counter ---------------------------------------------------------------------

    @property
    def step(self) -> int:
        with self._lock:
            return self._step

    def advance(self) -> None:
        """Create NEW_PER_STEP training jobs in each running tuning job, and end as many."""
        with self._lock:
            self._step += 1

    def count(self, plan: TuningJobPlan, step: int | None = None) -> int:
        """How many training jobs ``plan``'s tuning job has at ``step`` (now, without it)."""
        if not plan.running:
            return self._training_jobs
        return self._training_jobs + NEW_PER_STEP * (self.step if step is None else step)

    def job(self, plan: TuningJobPlan, j: int, count: int) -> TrainingJob:
        """Training job ``j`` of ``plan``'s tuning job when it has ``count``."""
        running = plan.running and j >= count - IN_PROGRESS
        return training_job(plan, j, running=running, newest=j == count - 1)

    def truth(self, name: str, leaderboard: int, step: int | None = None) -> Truth:
        """What the exporter should publish of tuning job ``name`` at ``step``."""
        plan = self._plans[name]
        count = self.count(plan, step)
        truth = Truth()
        trials = []
        for j in range(count):
            job = self.job(plan, j, count)
            if job.status == "InProgress":
                continue
            if job.status == "Failed" and job.reason_label is not None:
                truth.failed[job.reason_label] = truth.failed.get(job.reason_label, 0.0) + 1
            if job.started is not None and job.ended is not None:
                seconds = (job.ended - job.started) * plan.instance_count
                truth.seconds[plan.instance_type] = (
                    truth.seconds.get(plan.instance_type, 0.0) + seconds
                )
            if job.objective_value is not None:
                trials.append(job)
        sign = -1.0 if plan.objective_type == "Maximize" else 1.0
        trials.sort(key=lambda job: (sign * (job.objective_value or 0.0), job.name))
        truth.top = [
            (
                job.name,
                job.objective_value or 0.0,
                {f"hp_{key}": value for key, value in job.hyperparameters},
            )
            for job in trials[:leaderboard]
        ]
        return truth

    # The WSGI middleware ------------------------------------------------------------------

    def wrap(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        """``app`` with this call answered here."""

        def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            self.last_request_at = time.monotonic()
            if environ.get("HTTP_X_AMZ_TARGET") != TARGET:
                return app(environ, start_response)
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            status, payload = self.answer(json.loads(body or b"{}"))
            data = json.dumps(payload, separators=(",", ":")).encode()
            start_response(
                status,
                [
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("Content-Length", str(len(data))),
                ],
            )
            return [data]

        return serve

    def answer(self, request: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The status line and JSON body for one request."""
        name = request.get("HyperParameterTuningJobName")
        plan = self._plans.get(name) if isinstance(name, str) else None
        if plan is None:
            return _error(
                "ResourceNotFound", f"Could not find hyper parameter tuning job '{name}'."
            )
        problem = _check_enums(request)
        if problem is not None:
            return _error("ValidationException", problem)
        max_results = request.get("MaxResults", 10)
        if not isinstance(max_results, int) or not 1 <= max_results <= PAGE_SIZE:
            return _error(
                "ValidationException", f"MaxResults must be from 1 to 100, not {max_results!r}"
            )
        descending = request.get("SortOrder") == "Descending"
        after: int | None = None
        if request.get("NextToken"):
            after = _read_token(str(request["NextToken"]), plan.name, descending)
            if after is None:
                return _error("ValidationException", "The NextToken is not valid.")
        with self._lock:
            step = self._step
        count = self.count(plan, step)
        if descending:
            positions = range(count - 1 if after is None else after - 1, -1, -1)
        else:
            positions = range(0 if after is None else after + 1, count)
        status = request.get("StatusEquals")
        page: list[TrainingJob] = []
        last: int | None = None
        more = False
        if status is None or self._semantics == "aws":
            # The page is cut first, then filtered (without a filter, both readings agree).
            cut = positions[:max_results]
            for j in cut:
                job = self.job(plan, j, count)
                if status is None or job.status == status:
                    page.append(job)
            last = cut[-1] if cut else None
            more = len(positions) > max_results
        else:
            for j in positions:
                job = self.job(plan, j, count)
                if job.status != status:
                    continue
                if len(page) == max_results:
                    more = True
                    break
                page.append(job)
                last = j
        payload: dict[str, Any] = {"TrainingJobSummaries": [_summary(plan, job) for job in page]}
        if more and last is not None:
            payload["NextToken"] = _token(plan.name, last, descending)
        with self._lock:
            self.requests[plan.name] += 1
            self.requests_by_step[(step, plan.running)] += 1
            self.total += 1
            if self.first_request_at is None:
                self.first_request_at = time.monotonic()
            if not more and status is None and plan.name not in self._read_in_full:
                self._read_in_full.add(plan.name)
                if len(self._read_in_full) == len(self._plans):
                    self.backlog_done_at = time.monotonic()
                    self.backlog_requests = self.total
        return "200 OK", payload

    def read_in_full(self) -> int:
        """The tuning jobs whose training jobs were read to their last page at least once."""
        with self._lock:
            return len(self._read_in_full)

    def snapshot(self) -> tuple[int, Counter[str], Counter[tuple[int, bool]]]:
        """The requests so far: in all, per tuning job, per (step, running)."""
        with self._lock:
            return self.total, Counter(self.requests), Counter(self.requests_by_step)


def _summary(plan: TuningJobPlan, job: TrainingJob) -> dict[str, Any]:
    """A HyperParameterTrainingJobSummary in awsJson1_1 (times as epoch seconds)."""
    summary: dict[str, Any] = {
        "TrainingJobName": job.name,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{job.name}",
        "TuningJobName": plan.name,
        "CreationTime": job.created,
        "TrainingJobStatus": job.status,
        "TunedHyperParameters": dict(job.hyperparameters),
    }
    if job.started is not None:
        summary["TrainingStartTime"] = job.started
    if job.ended is not None:
        summary["TrainingEndTime"] = job.ended
    if job.failure_reason is not None:
        summary["FailureReason"] = job.failure_reason
    if job.objective_value is not None:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "Type": plan.objective_type,
            "MetricName": OBJECTIVES[plan.objective_type],
            "Value": job.objective_value,
        }
        summary["ObjectiveStatus"] = "Succeeded"
    else:
        summary["ObjectiveStatus"] = "Pending" if job.status == "InProgress" else "Failed"
    return summary


def _check_enums(request: Mapping[str, Any]) -> str | None:
    if request.get("SortBy", "Name") != "CreationTime":
        return "this bench serves SortBy=CreationTime only"
    if request.get("SortOrder", "Ascending") not in ("Ascending", "Descending"):
        return f"SortOrder {request.get('SortOrder')!r} is not Ascending or Descending"
    status = request.get("StatusEquals")
    if status not in (None, "InProgress", "Completed", "Failed", "Stopping", "Stopped"):
        return f"StatusEquals {status!r} is not a training job status"
    return None


def _error(kind: str, message: str) -> tuple[str, dict[str, Any]]:
    return "400 Bad Request", {"__type": kind, "message": message}


def _token(tuning_job: str, last: int, descending: bool) -> str:
    text = json.dumps([tuning_job, last, descending])
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(text.encode()).decode()


def _read_token(token: str, tuning_job: str, descending: bool) -> int | None:
    """The position after which the page of ``token`` starts; None unless issued here for
    this tuning job and order."""
    if not token.startswith(_CURSOR_PREFIX):
        return None
    try:
        name, last, order = json.loads(base64.urlsafe_b64decode(token[len(_CURSOR_PREFIX) :]))
    except (ValueError, TypeError, binascii.Error):
        return None
    if name != tuning_job or order != descending or not isinstance(last, int):
        return None
    return last


# Seeding -----------------------------------------------------------------------------------


def seed(ended: int, running: int) -> list[TuningJobPlan]:
    """Seed moto with ``ended`` + ``running`` tuning jobs, each with a definition and an objective."""
    total = ended + running
    seed_jobs((REGION,), total, running)
    running_set = set(running_indices(total, running))
    backend = moto_backend(REGION)
    plans = []
    for index, job in enumerate(backend.hyper_parameter_tuning_jobs.values()):
        objective_type = "Minimize" if index % 2 else "Maximize"
        instance_type, instance_count = INSTANCES[index % len(INSTANCES)]
        plan = TuningJobPlan(
            index=index,
            name=job.hyper_parameter_tuning_job_name,
            running=index in running_set,
            objective_type=objective_type,
            instance_type=instance_type,
            instance_count=instance_count,
        )
        objective = {"Type": objective_type, "MetricName": OBJECTIVES[objective_type]}
        job.hyper_parameter_tuning_job_config["HyperParameterTuningJobObjective"] = objective
        job.training_job_definition, _ = training_job_definitions(
            {"": (instance_type, instance_count)},
            account=ACCOUNT,
            region=REGION,
            tuning_job_name=plan.name,
            objective=objective,
        )
        plans.append(plan)
    if [plan.name for plan in plans] != sorted(plan.name for plan in plans):
        raise RuntimeError("moto's tuning jobs are not in the order they were seeded")
    return plans


def write_config(
    path: Path, endpoint_url: str, args: argparse.Namespace, total: int, training_jobs: bool
) -> None:
    text = (
        f"regions: [{REGION}]\n"
        f"aws:\n  endpoint_url: {endpoint_url}\n  max_attempts: 2\n"
        f"cache:\n  ttl: {args.ttl}\n  refresh_timeout: {REFRESH_TIMEOUT}\n"
        "describe:\n  max_requests_per_refresh: 100000\n"
        f"per_job_metrics:\n  max_jobs: {max(total, 10_000)}\n"
    )
    if training_jobs:
        text += (
            "training_jobs:\n  enabled: true\n"
            f"  ttl: {args.ttl}\n"
            f"  max_requests_per_refresh: {args.budget}\n"
            f"  leaderboard: {args.leaderboard}\n"
        )
    path.write_text(text)


# Scraping ----------------------------------------------------------------------------------


def scrape(url: str, accept_gzip: bool = True, decode: bool = True) -> tuple[int, str]:
    """One scrape of /metrics in the text format: its size on the wire and its text (empty
    without ``decode``)."""
    headers = {"Accept-Encoding": "gzip"} if accept_gzip else {}
    request = urllib.request.Request(url + "/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=SCRAPE_TIMEOUT_SECONDS) as response:
        body: bytes = response.read()
        encoding = response.headers.get("Content-Encoding")
    if not decode:
        return len(body), ""
    return len(body), (gzip.decompress(body) if encoding == "gzip" else body).decode()


def exporter_requests(text: str, operation: str) -> float:
    """The exporter's own count of ``operation`` requests, from a /metrics body."""
    prefix = "sagemaker_tuning_exporter_api_requests_total{"
    label = f'operation="{operation}"'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and label in line
    )


@dataclass
class Published:
    """The training-job samples of one tuning job, as scraped."""

    failed: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    top: dict[str, float] = field(default_factory=dict)
    info: dict[str, dict[str, str]] = field(default_factory=dict)


def published_training_samples(text: str, names: Iterable[str] | None) -> dict[str, Published]:
    """The four families' samples, per tuning job, of ``names`` (every job, without them)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = set(names) if names is not None else None
    lines = []
    for line in text.splitlines():
        if not line.startswith(_TRAINING_LINES):
            continue
        match = _JOB_NAME_LABEL.search(line)
        if match is not None and (wanted is None or match.group(1) in wanted):
            lines.append(line)
    found: dict[str, Published] = {}
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        for sample in family.samples:
            labels = sample.labels
            entry = found.setdefault(labels["job_name"], Published())
            if sample.name == FAILED_FAMILY:
                entry.failed[labels["reason"]] = sample.value
            elif sample.name == SECONDS_FAMILY:
                entry.seconds[labels["instance_type"]] = sample.value
            elif sample.name == TOP_VALUE_FAMILY:
                entry.top[labels["training_job_name"]] = sample.value
            elif sample.name == TOP_INFO_FAMILY:
                entry.info[labels["training_job_name"]] = {
                    key: value for key, value in labels.items() if key.startswith("hp_")
                }
    return found


def jobs_with_samples(text: str, family: str) -> int:
    """How many tuning jobs have at least one sample of ``family``."""
    prefix = family + "{"
    names = set()
    for line in text.splitlines():
        if line.startswith(prefix):
            match = _JOB_NAME_LABEL.search(line)
            if match is not None:
                names.add(match.group(1))
    return len(names)


def series_counts(text: str) -> dict[str, int]:
    """How many series each of the four families publishes."""
    counts = dict.fromkeys(TRAINING_FAMILIES, 0)
    for line in text.splitlines():
        if line.startswith(_TRAINING_LINES):
            counts[line.split("{", 1)[0]] += 1
    return counts


def differences(name: str, truth: Truth, published: Published | None) -> list[str]:
    """How what was published of tuning job ``name`` differs from ``truth``; empty when equal."""
    got = published or Published()
    problems = []
    if got.failed != truth.failed:
        problems.append(f"{name}: failed by reason {got.failed} != {truth.failed}")
    if got.seconds.keys() != truth.seconds.keys() or any(
        not math.isclose(got.seconds[kind], seconds, rel_tol=1e-12)
        for kind, seconds in truth.seconds.items()
    ):
        problems.append(f"{name}: instance seconds {got.seconds} != {truth.seconds}")
    expected_top = {trial: value for trial, value, _ in truth.top}
    if got.top != expected_top:
        problems.append(f"{name}: leaderboard {got.top} != {expected_top}")
    expected_info = {trial: labels for trial, _, labels in truth.top}
    if got.info != expected_info:
        problems.append(f"{name}: leaderboard info {got.info} != {expected_info}")
    return problems


def sample_names(plans: Sequence[TuningJobPlan], size: int) -> list[str]:
    """``size`` ended tuning jobs spread over all of them, oldest and newest included."""
    ended = [plan.name for plan in plans if not plan.running]
    if size <= 0 or not ended:
        return []
    if size >= len(ended):
        return ended
    return sorted({ended[k * (len(ended) - 1) // max(1, size - 1)] for k in range(size)})


# The run -------------------------------------------------------------------------------------


class ExporterProcess:
    """The exporter as its own process, logging at debug level, its stderr drained.

    Its cache logs ``refreshed account=...`` (debug) once a refresh's snapshot is stored,
    its lines rendered: the exact end of a refresh, which the figures of its /metrics
    cannot tell (see :func:`wait_refreshed`). The last lines are kept for error messages.
    """

    def __init__(self, config: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.monotonic()
        command = [*exporter_command(config, self.port), "--log.level", "debug"]
        self.process: subprocess.Popen[str] = start_process(command)
        self.log: deque[str] = deque(maxlen=40)
        self._lock = threading.Lock()
        self._refreshes = 0
        self._refreshed_at = 0.0
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        if self.process.stderr is None:
            return
        for line in self.process.stderr:
            if REFRESHED_LINE in line:
                with self._lock:
                    self._refreshes += 1
                    self._refreshed_at = time.monotonic()
            elif " level=DEBUG " not in line:
                self.log.append(line.rstrip())

    def refreshed(self) -> tuple[int, float]:
        """The refreshes ended so far, and when the last one ended (time.monotonic())."""
        with self._lock:
            return self._refreshes, self._refreshed_at

    def status(self) -> dict[str, str]:
        return process_status(self.process.pid)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError("the exporter exited:\n" + "\n".join(self.log))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


@dataclass(frozen=True)
class Boundary:
    """The state of things between two refreshes: ``refreshes`` had ended (and no later one
    had sent a request), with moto's counts and the call's requests per (step, running)."""

    refreshes: int
    at: float
    moto_requests: dict[tuple[str, str], int]
    by_step: Counter[tuple[int, bool]]
    # When the scrape that started the last refresh was sent, if the bench sent one.
    triggered_at: float | None = None

    def requests(self, operation: str) -> int:
        return self.moto_requests.get((REGION, operation), 0)


def wait_refreshed(
    exporter: ExporterProcess,
    counts: RequestCounts,
    synthetic: SyntheticTrainingJobs,
    at_least: int,
    timeout: float = READY_TIMEOUT_SECONDS,
) -> Boundary:
    """Wait until ``at_least`` refreshes have ended and no later one has sent a request.

    harness.wait_refreshes_ended reads the end of a refresh from quiet /metrics figures; at
    10,000 tuning jobs with the training-job families, rendering a refresh's lines after
    its last request outlasts its quiet period, and it returned while the previous lines
    were still served. This reads the exporter's own log line instead, written once the
    snapshot is stored. A refresh's requests all come before its line, and refreshes of one
    target run one at a time, so once no request arrived after the last line, every request
    counted belongs to a refresh that has ended.
    """
    deadline = time.monotonic() + timeout
    while True:
        exporter.check_alive()
        refreshes, refreshed_at = exporter.refreshed()
        if (
            refreshes >= at_least
            and counts.in_progress() == 0
            and synthetic.last_request_at < refreshed_at
        ):
            moto_requests = counts.snapshot()
            _, _, by_step = synthetic.snapshot()
            if (
                exporter.refreshed()[0] == refreshes
                and synthetic.last_request_at < refreshed_at
                and counts.received() == sum(moto_requests.values())
            ):
                return Boundary(refreshes, time.monotonic(), moto_requests, by_step)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{at_least} refreshes had not ended within {timeout:g}s")
        time.sleep(0.05)


def refresh_after_ttl(
    exporter: ExporterProcess,
    counts: RequestCounts,
    synthetic: SyntheticTrainingJobs,
    previous: Boundary,
    ttl: float,
    *,
    trigger: Callable[[], object] | None = None,
) -> Boundary:
    """Start one refresh with a scrape once ``ttl`` has passed since ``previous``, and wait
    for its end.

    The previous refresh started before ``previous``, so both cache.ttl and
    training_jobs.ttl have passed: the scrape starts a refresh, and it reads the running
    tuning jobs again. ``trigger`` is that scrape, when its body is wanted: it serves the
    snapshot of ``previous`` at once, the refresh runs behind it. Only these scrapes start
    refreshes, so the one that ends next is the one it started.
    """
    time.sleep(max(0.0, previous.at + ttl + 0.5 - time.monotonic()))
    triggered_at = time.monotonic()
    if trigger is None:
        scrape(exporter.url, decode=False)
    else:
        trigger()
    ended = wait_refreshed(exporter, counts, synthetic, previous.refreshes + 1)
    return replace(ended, triggered_at=triggered_at)


def mib(status: dict[str, str], name: str) -> float:
    return round(status_kib(status, name) / 1024, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    total = args.ended + args.running
    report: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(tz=UTC).strftime("%Y-%m-%d"),
        "command": " ".join(["python", "bench/training_jobs.py", *args.argv]),
        "listing_semantics": args.listing_semantics,
        "ended": args.ended,
        "running": args.running,
        "training_jobs_per_tuning_job": args.training_jobs,
        "leaderboard": args.leaderboard,
        "budget": args.budget,
        "ttl_seconds": args.ttl,
        "load_average_start": load_average(),
    }
    checks: dict[str, bool] = {}
    # moto's backends live in this process: seeded before its server starts.
    seeding = time.monotonic()
    plans = seed(args.ended, args.running)
    synthetic = SyntheticTrainingJobs(plans, args.training_jobs, args.listing_semantics)
    report["seed_seconds"] = round(time.monotonic() - seeding, 1)
    with (
        moto_server(listing_semantics=args.listing_semantics, middleware=synthetic.wrap) as (
            endpoint_url,
            counts,
        ),
        tempfile.TemporaryDirectory() as scratch,
    ):
        config = Path(scratch) / "config.yaml"
        write_config(config, endpoint_url, args, total, training_jobs=True)
        exporter = ExporterProcess(config)
        try:
            measure_exporter(
                args,
                exporter,
                synthetic=synthetic,
                counts=counts,
                plans=plans,
                report=report,
                checks=checks,
            )
        finally:
            exporter.stop()
        if args.baseline:
            write_config(config, endpoint_url, args, total, training_jobs=False)
            baseline = ExporterProcess(config)
            try:
                report["baseline"] = measure_baseline(args, baseline, counts, synthetic)
            finally:
                baseline.stop()
    report["load_average_end"] = load_average()
    report["checks"] = checks
    return report


def measure_exporter(
    args: argparse.Namespace,
    exporter: ExporterProcess,
    *,
    synthetic: SyntheticTrainingJobs,
    counts: RequestCounts,
    plans: Sequence[TuningJobPlan],
    report: dict[str, Any],
    checks: dict[str, bool],
) -> None:
    total = len(plans)
    running = [plan.name for plan in plans if plan.running]

    # 1. The backlog: the first refresh reads it all within a large budget; with a smaller
    # one, scrapes start the refreshes that read the rest.
    wait_ready(exporter.url, exporter.process, timeout=READY_TIMEOUT_SECONDS)
    ready_seconds = time.monotonic() - exporter.started
    ready_status = exporter.status()
    # No scrape came before: the first refresh, which ready waited for, is the only one.
    boundary = wait_refreshed(exporter, counts, synthetic, 1)
    while synthetic.backlog_done_at is None:
        boundary = refresh_after_ttl(exporter, counts, synthetic, boundary, args.ttl)
    backlog_requests = synthetic.backlog_requests or 0
    expected = total * max(1, math.ceil(args.training_jobs / PAGE_SIZE))
    first = synthetic.first_request_at or exporter.started
    backlog_seconds = (synthetic.backlog_done_at or first) - first
    backlog: dict[str, Any] = {
        "tuning_jobs_read_in_full": synthetic.read_in_full(),
        "requests": backlog_requests,
        "requests_expected": expected,
        "refreshes_seen": boundary.refreshes,
        "refreshes_at_default_budget": math.ceil(backlog_requests / DEFAULT_BUDGET),
        "hours_at_default_budget_and_cache_ttl": round(
            math.ceil(backlog_requests / DEFAULT_BUDGET) * DEFAULT_CACHE_TTL_SECONDS / 3600, 1
        ),
        "seconds_start_to_ready": round(ready_seconds, 1),
        "seconds_reading": round(backlog_seconds, 1),
        "requests_per_second": round(backlog_requests / backlog_seconds, 1)
        if backlog_seconds > 0
        else None,
        "describes": boundary.requests(DESCRIBE_OPERATION),
        "list_requests": boundary.requests(LIST_OPERATION),
        "peak_rss_mib_ready": mib(ready_status, "VmHWM"),
        "rss_mib_ready": mib(ready_status, "VmRSS"),
    }
    report["backlog"] = backlog
    checks["every tuning job read in full"] = synthetic.read_in_full() == total
    if args.budget >= expected:
        checks["backlog requests equal the pages"] = backlog_requests == expected
    else:  # running tuning jobs may be read again while the backlog lasts
        checks["backlog requests at least the pages"] = backlog_requests >= expected
    sampled = sample_names(plans, args.sample)
    problems: list[str] = []

    def verify_backlog() -> None:
        """The backlog as the exporter shows it: its own count of the call, and the samples
        of a few ended tuning jobs. This scrape starts the first steady-state refresh."""
        text, exporter_count, counted_ok = scrape_counted(exporter, counts)
        backlog["exporter_counted_requests"] = exporter_count
        checks["exporter's count equals the wire's"] = counted_ok
        published = published_training_samples(text, sampled)
        problems.extend(
            problem
            for name in sampled
            for problem in differences(
                name, synthetic.truth(name, args.leaderboard), published.get(name)
            )
        )
        backlog["tuning_jobs_with_instance_seconds"] = jobs_with_samples(text, SECONDS_FAMILY)

    # 2. Steady state: the running tuning jobs change, then a refresh once --ttl has passed.
    steady: list[dict[str, Any]] = []
    previous = boundary
    for index in range(args.steady_refreshes):
        synthetic.advance()
        step = synthetic.step
        current = refresh_after_ttl(
            exporter,
            counts,
            synthetic,
            previous,
            args.ttl,
            trigger=verify_backlog if index == 0 else None,
        )
        steady.append(
            {
                "step": step,
                "refreshes": current.refreshes - previous.refreshes,
                "requests": current.requests(TRAINING_JOBS_OPERATION)
                - previous.requests(TRAINING_JOBS_OPERATION),
                "requests_running": current.by_step[(step, True)],
                "requests_ended": current.by_step[(step, False)],
                "list_requests": current.requests(LIST_OPERATION)
                - previous.requests(LIST_OPERATION),
                "describe_requests": current.requests(DESCRIBE_OPERATION)
                - previous.requests(DESCRIBE_OPERATION),
                # From the scrape that started it to its end (its lines rendered).
                "seconds": round(current.at - (current.triggered_at or previous.at), 2),
            }
        )
        previous = current
    steady_refreshes = sum(entry["refreshes"] for entry in steady)
    steady_requests = sum(entry["requests"] for entry in steady)
    report["steady"] = {
        "refreshes": steady,
        "refreshes_measured": steady_refreshes,
        "requests": steady_requests,
        "requests_per_refresh": round(steady_requests / steady_refreshes, 2)
        if steady_refreshes
        else None,
        "requests_per_running_tuning_job_per_refresh": round(
            steady_requests / steady_refreshes / max(1, args.running), 2
        )
        if steady_refreshes
        else None,
        "requests_for_ended_tuning_jobs": sum(entry["requests_ended"] for entry in steady),
        "new_and_ended_training_jobs_per_running_tuning_job_per_step": NEW_PER_STEP,
    }
    if steady:
        checks["steady state: no request for an ended tuning job"] = (
            report["steady"]["requests_for_ended_tuning_jobs"] == 0
        )
        checks["steady state: at most 2 requests per running tuning job per refresh"] = all(
            entry["requests"] <= 2 * args.running * entry["refreshes"] for entry in steady
        )
        checks["steady state: every running tuning job read each refresh"] = all(
            entry["refreshes"] >= 1 and entry["requests_running"] >= args.running
            for entry in steady
        )
    # The running tuning jobs as of the last step, which the last refresh read. The scrape
    # may start a refresh (no TTL is waited for): it would read the same.
    text, exporter_count, counted_ok = scrape_counted(exporter, counts)
    checks["exporter's count equals the wire's"] &= counted_ok
    report["steady"]["exporter_counted_requests_total"] = exporter_count
    published = published_training_samples(text, running)
    problems += [
        problem
        for name in running
        for problem in differences(
            name, synthetic.truth(name, args.leaderboard), published.get(name)
        )
    ]
    report["verification"] = {
        "ended_tuning_jobs_sampled": sampled,
        "running_tuning_jobs_checked": len(running),
        "at_step": synthetic.step,
        "mismatches": problems[:20],
        "mismatch_count": len(problems),
    }
    checks["published samples equal the synthetic data"] = not problems
    report["series"] = series_counts(text)
    del text, published

    # 3. Memory after scrapes: gzip ones as Prometheus sends them, and one plain.
    report["memory"] = scrape_memory(exporter, args.scrapes)
    report["memory"]["peak_rss_mib_ready"] = backlog["peak_rss_mib_ready"]


def scrape_counted(exporter: ExporterProcess, counts: RequestCounts) -> tuple[str, float, bool]:
    """A scrape's text, the exporter's count of the call in it, and whether that count is
    the wire's (moto's counts before and after the scrape bound it: a refresh the scrape
    starts may send requests meanwhile)."""
    key = (REGION, TRAINING_JOBS_OPERATION)
    before = counts.snapshot().get(key, 0)
    _, text = scrape(exporter.url)
    after = counts.snapshot().get(key, 0)
    counted = exporter_requests(text, TRAINING_JOBS_OPERATION)
    return text, counted, before <= counted <= after


def scrape_memory(exporter: ExporterProcess, scrapes: int) -> dict[str, Any]:
    wire = decoded = 0
    latencies = []
    for _ in range(scrapes):
        began = time.monotonic()
        wire, text = scrape(exporter.url)
        latencies.append(time.monotonic() - began)
        decoded = len(text.encode())
        del text
    began = time.monotonic()
    _, text = scrape(exporter.url, accept_gzip=False)
    plain_seconds = time.monotonic() - began
    del text
    exporter.check_alive()
    status = exporter.status()
    return {
        "gzip_scrapes": scrapes,
        "gzip_scrape_seconds_last": round(latencies[-1], 3) if latencies else None,
        "plain_scrape_seconds": round(plain_seconds, 3),
        "body_mb_gzip_decoded": [round(wire / 1e6, 2), round(decoded / 1e6, 1)],
        "rss_mib_end": mib(status, "VmRSS"),
        "peak_rss_mib_end": mib(status, "VmHWM"),
    }


def measure_baseline(
    args: argparse.Namespace,
    exporter: ExporterProcess,
    counts: RequestCounts,
    synthetic: SyntheticTrainingJobs,
) -> dict[str, Any]:
    """The exporter with training_jobs disabled: same jobs, describes and scrapes."""
    requests_before = synthetic.total
    refreshes_before = exporter.refreshed()[0]
    wait_ready(exporter.url, exporter.process, timeout=READY_TIMEOUT_SECONDS)
    ready = exporter.status()
    wait_refreshed(exporter, counts, synthetic, refreshes_before + 1)
    memory = scrape_memory(exporter, args.scrapes)
    memory["peak_rss_mib_ready"] = mib(ready, "VmHWM")
    memory["training_job_requests"] = synthetic.total - requests_before
    return memory


# Output -----------------------------------------------------------------------------------


def summary(report: dict[str, Any]) -> str:
    backlog, steady, memory = report["backlog"], report["steady"], report["memory"]
    per_refresh = ", ".join(
        f"{entry['requests']}" + (f"/{entry['refreshes']}" if entry["refreshes"] != 1 else "")
        for entry in steady["refreshes"]
    )
    rows = [
        ("tuning jobs read in full", f"{backlog['tuning_jobs_read_in_full']:,}"),
        (
            "backlog: requests (expected pages)",
            f"{backlog['requests']:,} ({backlog['requests_expected']:,})",
        ),
        ("backlog: requests the exporter counted", f"{backlog['exporter_counted_requests']:,.0f}"),
        ("backlog: refreshes it took here", f"{backlog['refreshes_seen']}"),
        (
            f"backlog: refreshes at the default max_requests_per_refresh ({DEFAULT_BUDGET})",
            f"{backlog['refreshes_at_default_budget']:,} "
            f"({backlog['hours_at_default_budget_and_cache_ttl']} h at cache.ttl 60s)",
        ),
        ("backlog: exporter start to ready (s)", f"{backlog['seconds_start_to_ready']}"),
        (
            "backlog: reading the training jobs (s), requests/s",
            f"{backlog['seconds_reading']}, {backlog['requests_per_second']}",
        ),
        ("backlog: describes in the same refreshes", f"{backlog['describes']:,}"),
        ("steady: refreshes measured", f"{steady['refreshes_measured']}"),
        ("steady: requests per refresh", f"{steady['requests_per_refresh']}"),
        (
            "steady: requests per running tuning job per refresh",
            f"{steady['requests_per_running_tuning_job_per_refresh']}",
        ),
        ("steady: requests for ended tuning jobs", f"{steady['requests_for_ended_tuning_jobs']}"),
        (
            "steady: scrape to the refresh's end (s), longest",
            f"{max(entry['seconds'] for entry in steady['refreshes'])}",
        ),
        ("peak RSS once ready (MiB)", f"{memory['peak_rss_mib_ready']}"),
        ("peak RSS after the steady state and scrapes (MiB)", f"{memory['peak_rss_mib_end']}"),
        ("body, gzip / decoded (MB)", " / ".join(str(v) for v in memory["body_mb_gzip_decoded"])),
        ("series: " + ", ".join(report["series"]), ", ".join(map(str, report["series"].values()))),
        (
            "verified tuning jobs (mismatches)",
            f"{len(report['verification']['ended_tuning_jobs_sampled'])} ended + "
            f"{report['verification']['running_tuning_jobs_checked']} running "
            f"({report['verification']['mismatch_count']})",
        ),
    ]
    if "baseline" in report:
        baseline = report["baseline"]
        rows.append(
            (
                "baseline, training_jobs disabled: peak RSS ready / end (MiB)",
                f"{baseline['peak_rss_mib_ready']} / {baseline['peak_rss_mib_end']}",
            )
        )
    lines = [
        f"{report['ended']:,} ended and {report['running']} running tuning jobs, "
        f"{report['training_jobs_per_tuning_job']} training jobs each, leaderboard "
        f"{report['leaderboard']}, training_jobs.max_requests_per_refresh {report['budget']}, "
        f"ttl {report['ttl_seconds']}s",
        f"{report['machine']}, {report['date']}, load {report['load_average_start']} -> "
        f"{report['load_average_end']}",
        listing_semantics_line(report["listing_semantics"]),
        "",
        f"steady-state requests per refresh: {per_refresh}",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        *(f"{'ok  ' if passed else 'FAIL'} {name}" for name, passed in report["checks"].items()),
    ]
    if report["verification"]["mismatches"]:
        lines += ["", *report["verification"]["mismatches"]]
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ended", type=int, default=10_000, help="ended tuning jobs")
    parser.add_argument("--running", type=int, default=20, help="running tuning jobs")
    parser.add_argument(
        "--training-jobs", type=int, default=500, help="training jobs per tuning job (at start)"
    )
    parser.add_argument("--leaderboard", type=int, default=10, help="training_jobs.leaderboard")
    parser.add_argument(
        "--budget",
        type=int,
        default=100_000,
        help="training_jobs.max_requests_per_refresh (default 100000: one refresh reads the backlog)",
    )
    parser.add_argument(
        "--ttl", type=float, default=10.0, help="cache.ttl and training_jobs.ttl, in seconds"
    )
    parser.add_argument(
        "--steady-refreshes", type=int, default=5, help="steady-state refreshes measured"
    )
    parser.add_argument("--scrapes", type=int, default=3, help="gzip scrapes before peak RSS")
    parser.add_argument(
        "--sample", type=int, default=6, help="ended tuning jobs whose samples are verified"
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also run the exporter with training_jobs disabled, for its peak RSS",
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    add_listing_semantics_flag(parser)
    args = parser.parse_args(argv)
    if args.ended < 0 or args.running < 0 or args.ended + args.running < 1:
        parser.error("give at least one tuning job")
    if args.steady_refreshes < 1:
        parser.error("--steady-refreshes must be at least 1")
    if args.training_jobs < IN_PROGRESS:
        parser.error(f"--training-jobs must be at least {IN_PROGRESS}")
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    os.environ.update(PLACEHOLDER_ENVIRONMENT)
    report = run(args)
    print(summary(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
