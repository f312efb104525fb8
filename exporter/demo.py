"""Demo mode: a local SageMaker API (moto's server) with tuning jobs that change over time.

Needs the ``demo`` extra. No AWS account is touched: the server listens on 127.0.0.1 only,
and the exporter signs its requests with placeholder keys that only this server accepts.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.config.settings import (
    AwsSettings,
    CacheSettings,
    DescribeSettings,
    DiscoverySettings,
    ExporterConfig,
    ServiceEndpoints,
)
from exporter.model.statuses import RUNNING_STATUSES, TUNING_JOB_STATUSES, TUNING_JOB_STRATEGIES

log = logging.getLogger(__name__)

DEMO_REGIONS = ("us-east-1", "eu-west-1")
DEMO_ACCOUNT = "123456789012"  # moto's default account
DEMO_TTL_SECONDS = 10.0
# What the demo puts in place of a configuration file's own (--demo --config.file).
DEMO_OVERRIDDEN_KEYS = (
    "regions",
    "accounts",
    "discovery",
    "aws.endpoint_url",
    "aws.endpoints",
    "aws.profile",
)
DEMO_JOBS_PER_REGION = 15
STEP_SECONDS = 5.0
# Seeded in turn, so each region starts with every status, a running job first.
_SEED_STATUSES = (
    "InProgress",
    *(status for status in TUNING_JOB_STATUSES if status != "InProgress"),
)
_MODELS = ("xgboost-churn", "resnet-cifar", "bert-intent", "lightgbm-fraud", "prophet-demand")
# The demo's tags: a team per model, and a project named after what the model predicts.
DEMO_TAG_KEYS = ("team", "project")
_TEAMS = {
    "xgboost-churn": "growth",
    "resnet-cifar": "vision",
    "bert-intent": "nlp",
    "lightgbm-fraud": "risk",
    "prophet-demand": "forecasting",
}
# Every this many jobs one has a team but no project, so empty tag labels show too.
_UNTAGGED_PROJECT_EVERY = 4
# The objective each model tunes: (metric name, Maximize or Minimize, a typical first value).
_OBJECTIVES = {
    "xgboost-churn": ("validation:auc", "Maximize", 0.70),
    "resnet-cifar": ("validation:accuracy", "Maximize", 0.60),
    "bert-intent": ("validation:f1", "Maximize", 0.75),
    "lightgbm-fraud": ("validation:binary_logloss", "Minimize", 0.45),
    "prophet-demand": ("validation:rmse", "Minimize", 120.0),
}
# Training jobs in a row that did not improve the objective before "convergence" is reported.
_CONVERGENCE_AFTER = 5


class DemoUnavailableError(Exception):
    """The demo extra (moto's server) is not installed."""


@dataclass
class _JobPlan:
    """How a running demo job evolves: how many training jobs it runs and how often they fail.

    The rest is what DescribeHyperParameterTuningJob reports of it: the objective, the best
    training job so far and its value, and the training jobs since the last improvement.
    """

    max_training_jobs: int
    failure_rate: float
    model: str = _MODELS[0]
    best_value: float | None = None
    best_training_job: int = 0
    not_improving: int = 0
    converged_at: datetime | None = None


class DemoSageMaker:
    """A moto SageMaker server on loopback, seeded with tuning jobs that a thread moves along."""

    def __init__(self, seed: int = 7, clock: Callable[[], datetime] | None = None) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise DemoUnavailableError(
                "demo mode needs moto's server: pip install 'sagemaker-tuning-exporter[demo]'"
            ) from error
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._random = random.Random(seed)  # noqa: S311 - demo data, not security
        # moto keeps and compares its timestamps as naive UTC datetimes.
        self._clock = clock or (lambda: datetime.now(tz=UTC).replace(tzinfo=None))
        self._plans: dict[tuple[str, str], _JobPlan] = {}
        self._counter = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._advance_forever, name="demo", daemon=True)
        self.endpoint_url = ""

    def start(self) -> None:
        """Start the server, seed the jobs and start moving them along."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        for region in DEMO_REGIONS:
            for index in range(DEMO_JOBS_PER_REGION):
                self._create_job(region, status=_SEED_STATUSES[index % len(_SEED_STATUSES)])
        self._thread.start()
        log.info(
            "demo SageMaker API serving %d tuning jobs at %s", self.job_count(), self.endpoint_url
        )

    def stop(self) -> None:
        """Stop moving jobs and stop the server."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._server.stop()

    def config(self, file_config: ExporterConfig | None = None) -> ExporterConfig:
        """The exporter configuration that watches this demo server.

        Without ``file_config``, the demo's own: short TTLs and the demo's tags. With it
        (``--demo --config.file``), that configuration's filters, cache, per-job limits,
        describe settings, tags and AWS retry settings, watching the demo's regions of its
        one account through its endpoint: :data:`DEMO_OVERRIDDEN_KEYS` are replaced.
        """
        if file_config is None:
            return ExporterConfig(
                regions=DEMO_REGIONS,
                aws=AwsSettings(endpoint_url=self.endpoint_url, max_attempts=2),
                cache=CacheSettings(
                    ttl_seconds=DEMO_TTL_SECONDS, tags_ttl_seconds=DEMO_TTL_SECONDS
                ),
                tags=DEMO_TAG_KEYS,
                # Described as often as listed, so the best objective moves as the jobs do.
                describe=DescribeSettings(ttl_seconds=DEMO_TTL_SECONDS),
            )
        # The credentials are the demo's placeholders (use_placeholder_credentials), so a
        # profile would only name keys that this server must never see.
        aws = replace(
            file_config.aws,
            endpoint_url=self.endpoint_url,
            endpoints=ServiceEndpoints(),
            profile=None,
        )
        return replace(
            file_config,
            regions=DEMO_REGIONS,
            accounts=(),
            discovery=DiscoverySettings(),  # the demo is one account, not an organization
            aws=aws,
        )

    def job_count(self) -> int:
        """How many tuning jobs the demo server holds."""
        return sum(len(_backend(region).hyper_parameter_tuning_jobs) for region in DEMO_REGIONS)

    def advance(self) -> None:
        """One step of the simulation: training jobs finish or fail, jobs end, new jobs start."""
        now = self._clock()
        for region in DEMO_REGIONS:
            jobs = _backend(region).hyper_parameter_tuning_jobs
            for name, job in list(jobs.items()):
                status = job.hyper_parameter_tuning_job_status
                if status == "InProgress":
                    self._advance_running_job(region, job, now)
                elif status == "Stopping":
                    _set_status(job, "Stopped", now)
                elif status == "Deleting" and self._random.random() < 0.2:
                    del jobs[name]
            if self._random.random() < 0.3:
                self._create_job(region, status="InProgress")

    def _advance_forever(self) -> None:
        while not self._stop.wait(STEP_SECONDS):
            try:
                self.advance()
            except Exception:  # the demo must keep going whatever one step does
                log.exception("demo step failed")

    def _advance_running_job(self, region: str, job: Any, now: datetime) -> None:
        plan = self._plans.setdefault(
            (region, job.hyper_parameter_tuning_job_name), _JobPlan(20, 0.1)
        )
        training = dict(job.training_job_status_counters)
        objective = dict(job.objective_status_counters)
        # Running training jobs finish; some fail, a few with a retryable error.
        for _ in range(training["InProgress"]):
            roll = self._random.random()
            if roll < 0.5:
                continue
            training["InProgress"] -= 1
            objective["Pending"] -= 1
            if roll < 0.5 + plan.failure_rate:
                training["NonRetryableError"] += 1
                objective["Failed"] += 1
            elif roll < 0.55 + plan.failure_rate:
                training["RetryableError"] += 1
                objective["Failed"] += 1
            else:
                training["Completed"] += 1
                objective["Succeeded"] += 1
                self._evaluate_objective(plan, sum(training.values()), now)
        started = sum(training.values())
        parallel = job.hyper_parameter_tuning_job_config["ResourceLimits"][
            "MaxParallelTrainingJobs"
        ]
        while training["InProgress"] < parallel and started < plan.max_training_jobs:
            training["InProgress"] += 1
            objective["Pending"] += 1
            started += 1
        # Whole dicts are swapped in, so the server never serves a half-updated job.
        job.training_job_status_counters = training
        job.objective_status_counters = objective
        job.last_modified_time = now
        _set_description(job, plan, now)
        if training["InProgress"] == 0 and started >= plan.max_training_jobs:
            failed = training["NonRetryableError"] > plan.max_training_jobs // 2
            _set_status(job, "Failed" if failed else "Completed", now)

    def _create_job(self, region: str, status: str) -> None:
        self._counter += 1
        model = self._random.choice(_MODELS)
        name = f"{model}-{self._counter:04d}"
        strategy = TUNING_JOB_STRATEGIES[self._counter % len(TUNING_JOB_STRATEGIES)]
        max_jobs = self._random.choice((10, 20, 30, 50))
        parallel = self._random.choice((2, 3, 5))
        limits: dict[str, int] = {
            "MaxNumberOfTrainingJobs": max_jobs,
            "MaxParallelTrainingJobs": parallel,
        }
        if self._random.random() < 0.5:
            limits["MaxRuntimeInSeconds"] = self._random.choice((3600, 7200, 86400))
        tags = {"team": _TEAMS[model], "project": model.split("-", 1)[1]}
        if self._counter % _UNTAGGED_PROJECT_EVERY == 0:
            del tags["project"]
        job = create_moto_tuning_job(_backend(region), name, strategy, limits, tags=tags)
        now = self._clock()
        job.creation_time = now - timedelta(minutes=self._random.randint(0, 600))
        plan = self._plans[(region, name)] = _JobPlan(
            max_jobs, self._random.choice((0.05, 0.1, 0.3)), model
        )
        if status == "InProgress":
            job.training_job_status_counters = {
                "Completed": 0,
                "InProgress": 0,
                "RetryableError": 0,
                "NonRetryableError": 0,
                "Stopped": 0,
            }
            job.objective_status_counters = {"Succeeded": 0, "Pending": 0, "Failed": 0}
            job.hyper_parameter_tuning_job_status = "InProgress"
            job.hyper_parameter_tuning_end_time = None
            self._advance_running_job(region, job, now)
            return
        done = self._random.randint(1, max_jobs)
        failed = done // 2 if status == "Failed" else self._random.randint(0, done // 4)
        stopped = self._random.randint(1, 3) if status in ("Stopped", "Stopping") else 0
        job.training_job_status_counters = {
            "Completed": done - failed,
            "InProgress": 0,
            "RetryableError": 0,
            "NonRetryableError": failed,
            "Stopped": stopped,
        }
        job.objective_status_counters = {"Succeeded": done - failed, "Pending": 0, "Failed": failed}
        for number in range(1, done - failed + 1):
            self._evaluate_objective(plan, number, now)
        _set_description(job, plan, now)
        _set_status(job, status, now)

    def _evaluate_objective(self, plan: _JobPlan, training_job: int, now: datetime) -> None:
        """A training job completed: it improves the best objective, or it does not."""
        _, objective_type, first_value = _OBJECTIVES[plan.model]
        if plan.best_value is not None and self._random.random() < 0.6:
            plan.not_improving += 1
            if plan.not_improving >= _CONVERGENCE_AFTER and plan.converged_at is None:
                plan.converged_at = now
            return
        step = self._random.uniform(0.01, 0.05)
        if plan.best_value is None:
            plan.best_value = first_value
        elif objective_type == "Maximize":
            plan.best_value += (1 - plan.best_value) * step * 3
        else:
            plan.best_value *= 1 - step
        plan.best_training_job = training_job
        plan.not_improving = 0


def _set_description(job: Any, plan: _JobPlan, now: datetime) -> None:
    """Make moto's DescribeHyperParameterTuningJob answer the plan's objective and runtime.

    moto answers BestTrainingJob, ConsumedResources and TuningJobCompletionDetails with fixed
    placeholders kept as attributes of its job; the demo replaces them. A job with no
    completed training job has no best one yet, as in SageMaker.
    """
    name = job.hyper_parameter_tuning_job_name
    metric, objective_type, _ = _OBJECTIVES[plan.model]
    end = job.hyper_parameter_tuning_end_time or now
    job.consumed_resources = {
        "RuntimeInSeconds": max(0, int((end - job.creation_time).total_seconds()))
    }
    completion: dict[str, Any] = {"NumberOfTrainingJobsObjectiveNotImproving": plan.not_improving}
    if plan.converged_at is not None:
        completion["ConvergenceDetectedTime"] = plan.converged_at
    job.tuning_job_completion_details = completion
    if plan.best_value is None:
        job.best_training_job = None
        return
    training_job_name = f"{name}-{plan.best_training_job:03d}"
    job.best_training_job = {
        "TrainingJobName": training_job_name,
        "TrainingJobArn": job.arn.replace(
            f"hyper-parameter-tuning-job/{name}", f"training-job/{training_job_name}"
        ),
        "TuningJobName": name,
        "CreationTime": job.creation_time,
        "TrainingJobStatus": "Completed",
        "TunedHyperParameters": {"eta": "0.1", "max_depth": "6"},
        "FinalHyperParameterTuningJobObjectiveMetric": {
            "Type": objective_type,
            "MetricName": metric,
            "Value": round(plan.best_value, 6),
        },
        "ObjectiveStatus": "Succeeded",
    }


def _set_status(job: Any, status: str, now: datetime) -> None:
    job.hyper_parameter_tuning_job_status = status
    job.last_modified_time = now
    job.hyper_parameter_tuning_end_time = None if status in RUNNING_STATUSES else now


def create_moto_tuning_job(
    backend: Any,
    name: str,
    strategy: str,
    limits: dict[str, int],
    metric: str = "accuracy",
    *,
    tags: dict[str, str] | None = None,
) -> Any:
    """Create a tuning job in a moto SageMaker backend; returns moto's job object to adjust.

    ``tags`` are stored as CreateHyperParameterTuningJob's Tags would be.
    """
    backend.create_hyper_parameter_tuning_job(
        hyper_parameter_tuning_job_name=name,
        hyper_parameter_tuning_job_config={
            "Strategy": strategy,
            "ResourceLimits": limits,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": metric},
        },
        training_job_definition=None,
        training_job_definitions=None,
        warm_start_config=None,
        tags=[{"Key": key, "Value": value} for key, value in (tags or {}).items()],
        autotune=None,
    )
    return backend.hyper_parameter_tuning_jobs[name]


def _backend(region: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[DEMO_ACCOUNT][region]


def use_placeholder_credentials() -> None:
    """Sign demo requests with placeholder keys, so no real credential is ever sent to the demo server."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)
    os.environ["AWS_ACCESS_KEY_ID"] = "demo-placeholder"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "demo-placeholder"  # noqa: S105 - not a secret
