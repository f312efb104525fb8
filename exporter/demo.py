"""Demo mode: a local SageMaker API (moto's server) with tuning jobs that change over time.

Needs the ``demo`` extra. No AWS account is touched: the server listens on 127.0.0.1 only,
and the exporter signs its requests with placeholder keys that only this server accepts.

Each tuning job runs simulated training jobs (exporter/demo_training_jobs.py): they are
launched, start, complete with an objective value or fail for a reason of every kind, and
its TrainingJobStatusCounters, ObjectiveStatusCounters and BestTrainingJob are those of its
training jobs. The server answers ListTrainingJobsForHyperParameterTuningJob with them.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.config.settings import (
    AwsSettings,
    CacheSettings,
    DescribeSettings,
    DiscoverySettings,
    ExporterConfig,
    ServiceEndpoints,
    TrainingJobsSettings,
)
from exporter.demo_training_jobs import (
    InstanceChoice,
    InstanceResources,
    SimulatedTrainingJob,
    TrainingJobListing,
    objective_status_counters,
    training_job_definitions,
    training_job_status_counters,
)
from exporter.model.statuses import RUNNING_STATUSES, TUNING_JOB_STATUSES, TUNING_JOB_STRATEGIES

log = logging.getLogger(__name__)

DEMO_REGIONS = ("us-east-1", "eu-west-1")
DEMO_ACCOUNT = "123456789012"  # moto's default account
DEMO_TTL_SECONDS = 10.0
DEMO_LEADERBOARD = 3  # the demo's tuning jobs publish their 3 best training jobs
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
# What each model's training jobs run on where its tuning job has one plain definition.
_INSTANCES = {
    "xgboost-churn": ("ml.m5.xlarge", 1),
    "resnet-cifar": ("ml.p3.2xlarge", 1),
    "bert-intent": ("ml.g5.2xlarge", 1),
    "lightgbm-fraud": ("ml.c5.2xlarge", 2),
    "prophet-demand": ("ml.m5.large", 1),
}
# Every _DEFINITION_LAYOUTS jobs in turn: three with one definition (ResourceConfig), one with
# two named definitions, one letting SageMaker choose the instance type (InstanceConfigs).
_DEFINITION_LAYOUTS = 5
_TWO_DEFINITIONS: dict[str, InstanceResources] = {
    "cpu": ("ml.c5.2xlarge", 2),
    "gpu": ("ml.g4dn.xlarge", 1),
}
_CHOSEN_INSTANCES = InstanceChoice(("ml.m5.xlarge", 1), ("ml.m5.2xlarge", 1), ("ml.c5.2xlarge", 1))


@dataclass(frozen=True)
class _Range:
    """A numeric hyperparameter's range; its values are drawn uniformly from it."""

    low: float
    high: float
    integer: bool = False


# The hyperparameters each model tunes: a range, or the categorical values to choose from.
_HYPERPARAMETERS: dict[str, dict[str, _Range | tuple[str, ...]]] = {
    "xgboost-churn": {
        "eta": _Range(0.01, 0.3),
        "max_depth": _Range(3, 10, integer=True),
        "subsample": _Range(0.5, 1.0),
    },
    "resnet-cifar": {
        "learning_rate": _Range(0.0001, 0.1),
        "momentum": _Range(0.8, 0.99),
        "optimizer": ("sgd", "adam"),
    },
    "bert-intent": {
        "learning_rate": _Range(0.00001, 0.00005),
        "warmup_ratio": _Range(0.0, 0.2),
        "per_device_train_batch_size": ("16", "32"),
    },
    "lightgbm-fraud": {
        "learning_rate": _Range(0.01, 0.2),
        "num_leaves": _Range(16, 256, integer=True),
        "feature_fraction": _Range(0.5, 1.0),
    },
    "prophet-demand": {
        "changepoint_prior_scale": _Range(0.001, 0.5),
        "seasonality_mode": ("additive", "multiplicative"),
    },
}
# FailureReasons as SageMaker words them. Before a training job starts: no capacity of its
# instance type, or the account's quota of it used up ({instance_type} is filled in).
_FAILURES_BEFORE_START = (
    "CapacityError: Unable to provision requested ML compute capacity. Please retry using a "
    "different ML instance type.",
    "ResourceLimitExceeded: The account-level service limit '{instance_type} for training job "
    "usage' is 2 Instances, with current utilization of 2 Instances and a request delta of 1 "
    "Instances. Please use AWS Service Quotas to request an increase for this quota. If AWS "
    "Service Quotas is not available, contact AWS support to request an increase for this "
    "quota.",
)
# While it trains: the script's fault, the data's, a text of no known kind, or no reason at all.
_FAILURES_WHILE_TRAINING = (
    'AlgorithmError: ExecuteUserScriptError: ExitCode 1 ErrorMessage "ValueError: Input '
    "contains NaN, infinity or a value too large for dtype('float32').\" Command "
    '"/miniconda3/bin/python3 train.py", exit code: 1',
    'AlgorithmError: ExecuteUserScriptError: ExitCode 137 ErrorMessage "RuntimeError: CUDA out '
    'of memory. Tried to allocate 2.00 GiB" Command "/opt/conda/bin/python3.10 train.py", exit '
    "code: 137",
    "ClientError: Data download failed:Failed to download data. NoSuchKey (404): The specified "
    "key does not exist.",
    "ClientError: Please ensure that the S3 URI s3://demo-datasets/validation/ has objects: "
    "the channel validation has none.",
    "Training job ended unexpectedly: the training container exited without a status.",
    None,
)
# The one failure SageMaker documents as retryable: it counts as RetryableError.
_RETRYABLE_FAILURE = "InternalServerError: We encountered an internal error. Please try again."


class DemoUnavailableError(Exception):
    """The demo extra (moto's server) is not installed."""


@dataclass
class _JobPlan:
    """How a running demo job evolves: how many training jobs it runs, how often they fail,
    and on which of its training-job definitions.

    The rest is what DescribeHyperParameterTuningJob reports of it: the objective, the best
    training job so far and its value, and the training jobs since the last improvement.
    """

    max_training_jobs: int
    failure_rate: float
    model: str = _MODELS[0]
    definitions: Mapping[str, InstanceResources] = field(default_factory=dict)
    best_value: float | None = None
    best_training_job: str | None = None  # the name of the training job that has it
    not_improving: int = 0
    converged_at: datetime | None = None


class DemoSageMaker:
    """A moto SageMaker server on loopback, seeded with tuning jobs that a thread moves along.

    Every ``step_seconds`` the thread takes one :meth:`advance` step. The server answers
    ListTrainingJobsForHyperParameterTuningJob itself (demo_training_jobs.TrainingJobListing,
    AWS's page-then-filter reading); every request is answered between two steps, never
    during one.
    """

    def __init__(
        self,
        seed: int = 7,
        clock: Callable[[], datetime] | None = None,
        step_seconds: float = STEP_SECONDS,
    ) -> None:
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise DemoUnavailableError(
                "demo mode needs moto's server: pip install 'sagemaker-tuning-exporter[demo]'"
            ) from error
        self._random = random.Random(seed)  # noqa: S311 - demo data, not security
        # moto keeps and compares its timestamps as naive UTC datetimes.
        self._clock = clock or (lambda: datetime.now(tz=UTC).replace(tzinfo=None))
        self._step_seconds = step_seconds
        self._plans: dict[tuple[str, str], _JobPlan] = {}
        # (region, tuning job name) -> its training jobs, replaced whole; guarded by _lock.
        self._training_jobs: dict[tuple[str, str], tuple[SimulatedTrainingJob, ...]] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._advance_forever, name="demo", daemon=True)
        app = TrainingJobListing(
            DomainDispatcherApplication(create_backend_app), self._training_jobs, self._lock
        )

        def make_demo_server() -> Any:
            # As moto's ThreadedMotoServer makes its own, with the listing in front of moto.
            return make_server(
                "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
            )

        self._make_server = make_demo_server
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self.endpoint_url = ""

    def start(self) -> None:
        """Start the server, seed the jobs and start moving them along."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = self._make_server()
        # Polled often, so that stop() returns promptly.
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="demo-api", daemon=True
        )
        self._server_thread.start()
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host}:{port}"
        with self._lock:
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
        if self._server is not None and self._server_thread is not None:
            self._server.shutdown()
            self._server_thread.join()
            self._server.server_close()

    def config(self, file_config: ExporterConfig | None = None) -> ExporterConfig:
        """The exporter configuration that watches this demo server.

        Without ``file_config``, the demo's own: short TTLs, the demo's tags, and training
        jobs read with a leaderboard of DEMO_LEADERBOARD. With it (``--demo --config.file``),
        that configuration's filters, cache, per-job limits, describe and training-job
        settings, tags and AWS retry settings, watching the demo's regions of its one account
        through its endpoint: :data:`DEMO_OVERRIDDEN_KEYS` are replaced.
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
                training_jobs=TrainingJobsSettings(
                    enabled=True, ttl_seconds=DEMO_TTL_SECONDS, leaderboard=DEMO_LEADERBOARD
                ),
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
        """One step of the simulation: training jobs start, finish or fail, jobs end, new jobs
        start."""
        with self._lock:
            now = self._clock()
            for region in DEMO_REGIONS:
                jobs = _backend(region).hyper_parameter_tuning_jobs
                for name, job in list(jobs.items()):
                    status = job.hyper_parameter_tuning_job_status
                    if status == "InProgress":
                        self._advance_running_job(region, job, now)
                    elif status == "Stopping":
                        self._stop_training_jobs(region, job, now)
                        _set_status(job, "Stopped", now)
                    elif status == "Deleting" and self._random.random() < 0.2:
                        del jobs[name]
                        self._training_jobs.pop((region, name), None)
                        self._plans.pop((region, name), None)
                if self._random.random() < 0.3:
                    self._create_job(region, status="InProgress")

    def _advance_forever(self) -> None:
        while not self._stop.wait(self._step_seconds):
            try:
                self.advance()
            except Exception:  # the demo must keep going whatever one step does
                log.exception("demo step failed")

    def _advance_running_job(self, region: str, job: Any, now: datetime) -> None:
        key = (region, job.hyper_parameter_tuning_job_name)
        plan = self._plans.setdefault(key, _JobPlan(20, 0.1))
        training_jobs = list(self._training_jobs.get(key, ()))
        for index, training_job in enumerate(training_jobs):
            if training_job.status == "InProgress":
                training_jobs[index] = self._advance_training_job(plan, training_job, now)
        running = sum(training_job.status == "InProgress" for training_job in training_jobs)
        parallel = job.hyper_parameter_tuning_job_config["ResourceLimits"][
            "MaxParallelTrainingJobs"
        ]
        while running < parallel and len(training_jobs) < plan.max_training_jobs:
            training_jobs.append(self._launch(job, plan, len(training_jobs) + 1, now))
            running += 1
        self._store(key, job, training_jobs)
        job.last_modified_time = now
        _set_description(job, plan, self._best_training_job(key, plan), now)
        if running == 0 and len(training_jobs) >= plan.max_training_jobs:
            failed = job.training_job_status_counters["NonRetryableError"] > (
                plan.max_training_jobs // 2
            )
            _set_status(job, "Failed" if failed else "Completed", now)

    def _advance_training_job(
        self, plan: _JobPlan, training_job: SimulatedTrainingJob, now: datetime
    ) -> SimulatedTrainingJob:
        """A running training job's step: it gets its instances (or fails to), then finishes
        or fails, a few with a retryable error."""
        roll = self._random.random()
        if training_job.started is None:
            if roll < plan.failure_rate / 3:
                return self._fail(training_job, now, before_start=True)
            return replace(training_job, started=now)
        if roll < 0.5:
            return training_job
        if roll < 0.5 + plan.failure_rate:
            return self._fail(training_job, now, before_start=False)
        if roll < 0.55 + plan.failure_rate:
            return self._fail(training_job, now, before_start=False, retryable=True)
        return self._complete(plan, training_job, now)

    def _launch(
        self, job: Any, plan: _JobPlan, number: int, created: datetime
    ) -> SimulatedTrainingJob:
        """The tuning job's ``number``-th training job, just created: it has no instances yet."""
        tuning_job_name = job.hyper_parameter_tuning_job_name
        # As SageMaker names them: the tuning job's name, a sequence number and a hash.
        name = f"{tuning_job_name}-{number:03d}-{self._random.getrandbits(32):08x}"
        definition_name, instance_type = self._resources_of(plan)
        return SimulatedTrainingJob(
            arn=job.arn.replace(
                f"hyper-parameter-tuning-job/{tuning_job_name}", f"training-job/{name}"
            ),
            name=name,
            tuning_job_name=tuning_job_name,
            status="InProgress",
            created=created,
            instance_type=instance_type,
            tuned_hyperparameters=self._tuned_hyperparameters(plan.model),
            objective_status="Pending",
            definition_name=definition_name,
        )

    def _resources_of(self, plan: _JobPlan) -> tuple[str | None, str]:
        """The definition a new training job runs (None where there is one) and its instance
        type: the definition's own, or the one SageMaker chose from its InstanceConfigs."""
        if not plan.definitions:  # a job the demo did not create
            return None, _INSTANCES[plan.model][0]
        if "" in plan.definitions:
            definition_name, resources = None, plan.definitions[""]
        else:
            definition_name = self._random.choice(sorted(plan.definitions))
            resources = plan.definitions[definition_name]
        if isinstance(resources, InstanceChoice):
            return definition_name, self._random.choice(resources.configs)[0]
        return definition_name, resources[0]

    def _tuned_hyperparameters(self, model: str) -> dict[str, str]:
        tuned = {}
        for name, space in _HYPERPARAMETERS[model].items():
            if isinstance(space, tuple):
                tuned[name] = self._random.choice(space)
            elif space.integer:
                tuned[name] = str(self._random.randint(int(space.low), int(space.high)))
            else:
                tuned[name] = f"{self._random.uniform(space.low, space.high):.6g}"
        return tuned

    def _fail(
        self,
        training_job: SimulatedTrainingJob,
        now: datetime,
        *,
        before_start: bool,
        retryable: bool = False,
    ) -> SimulatedTrainingJob:
        """``training_job`` failed at ``now``: before it started (no TrainingStartTime), for
        want of capacity or quota, or while training."""
        reason: str | None
        if retryable:
            reason = _RETRYABLE_FAILURE
        elif before_start:
            reason = self._random.choice(_FAILURES_BEFORE_START).format(
                instance_type=training_job.instance_type
            )
        else:
            reason = self._random.choice(_FAILURES_WHILE_TRAINING)
        return replace(
            training_job,
            status="Failed",
            started=None if before_start else training_job.started,
            ended=now,
            failure_reason=reason,
            objective_status="Failed",
        )

    def _complete(
        self, plan: _JobPlan, training_job: SimulatedTrainingJob, now: datetime
    ) -> SimulatedTrainingJob:
        """``training_job`` completed at ``now``, with its final objective value."""
        metric, objective_type, _ = _OBJECTIVES[plan.model]
        return replace(
            training_job,
            status="Completed",
            ended=now,
            objective_metric=metric,
            objective_type=objective_type,
            objective_value=self._evaluate_objective(plan, training_job.name, now),
            objective_status="Succeeded",
        )

    def _stop_training_jobs(self, region: str, job: Any, now: datetime) -> None:
        """The tuning job stopped: so do its training jobs still running or stopping."""
        key = (region, job.hyper_parameter_tuning_job_name)
        self._store(
            key,
            job,
            [
                replace(training_job, status="Stopped", ended=now, objective_status=None)
                if training_job.status in RUNNING_STATUSES
                else training_job
                for training_job in self._training_jobs.get(key, ())
            ],
        )

    def _store(
        self, key: tuple[str, str], job: Any, training_jobs: Sequence[SimulatedTrainingJob]
    ) -> None:
        """Keep ``training_jobs`` as the tuning job's, and its counters as theirs."""
        self._training_jobs[key] = tuple(training_jobs)
        # Whole dicts are swapped in, as moto answers both Describe and List from them.
        job.training_job_status_counters = training_job_status_counters(training_jobs)
        job.objective_status_counters = objective_status_counters(training_jobs)

    def _best_training_job(
        self, key: tuple[str, str], plan: _JobPlan
    ) -> SimulatedTrainingJob | None:
        return next(
            (
                training_job
                for training_job in self._training_jobs.get(key, ())
                if training_job.name == plan.best_training_job
            ),
            None,
        )

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
        metric, objective_type, _ = _OBJECTIVES[model]
        definitions = _definitions_of(model, self._counter)
        job = create_moto_tuning_job(
            _backend(region),
            name,
            strategy,
            limits,
            metric,
            objective_type=objective_type,
            tags=tags,
            definitions=definitions,
        )
        now = self._clock()
        job.creation_time = now - timedelta(minutes=self._random.randint(0, 600))
        plan = self._plans[(region, name)] = _JobPlan(
            max_jobs, self._random.choice((0.05, 0.1, 0.3)), model, definitions
        )
        self._training_jobs[(region, name)] = ()
        if status == "InProgress":
            job.hyper_parameter_tuning_job_status = "InProgress"
            job.hyper_parameter_tuning_end_time = None
            self._advance_running_job(region, job, now)
            return
        done = self._random.randint(1, max_jobs)
        failed = done // 2 if status == "Failed" else self._random.randint(0, done // 4)
        stopped = self._random.randint(1, 3) if status in ("Stopped", "Stopping") else 0
        statuses = ["Completed"] * (done - failed) + ["Failed"] * failed
        # A stopping tuning job's last training jobs are stopping with it.
        statuses += ["Stopping" if status == "Stopping" else "Stopped"] * stopped
        self._random.shuffle(statuses)
        self._store((region, name), job, self._past_training_jobs(job, plan, statuses, now))
        _set_description(job, plan, self._best_training_job((region, name), plan), now)
        _set_status(job, status, now)

    def _past_training_jobs(
        self, job: Any, plan: _JobPlan, statuses: Sequence[str], now: datetime
    ) -> list[SimulatedTrainingJob]:
        """Training jobs of the given statuses, one after another from the tuning job's
        creation until ``now``, each training for most of its share of that time."""
        share = (now - job.creation_time) / len(statuses)
        training_jobs = []
        for number, status in enumerate(statuses, 1):
            created = job.creation_time + share * (number - 1)
            started, ended = created + share * 0.1, created + share * 0.9
            training_job = replace(
                self._launch(job, plan, number, created), started=started, ended=ended
            )
            if status == "Completed":
                training_job = self._complete(plan, training_job, ended)
            elif status == "Failed":
                roll = self._random.random()
                training_job = self._fail(
                    training_job, ended, before_start=roll < 0.3, retryable=roll > 0.9
                )
            elif status == "Stopped":
                training_job = replace(training_job, status="Stopped", objective_status=None)
            else:
                training_job = replace(training_job, status=status, ended=None)
            training_jobs.append(training_job)
        return training_jobs

    def _evaluate_objective(self, plan: _JobPlan, training_job: str, now: datetime) -> float:
        """A training job completed: it improves the best objective, or it does not. Returns
        its final objective value: the new best, or one worse than the best."""
        _, objective_type, first_value = _OBJECTIVES[plan.model]
        if plan.best_value is not None and self._random.random() < 0.6:
            plan.not_improving += 1
            if plan.not_improving >= _CONVERGENCE_AFTER and plan.converged_at is None:
                plan.converged_at = now
            worse = self._random.uniform(0.02, 0.3)
            factor = 1 - worse if objective_type == "Maximize" else 1 + worse
            return round(plan.best_value * factor, 6)
        step = self._random.uniform(0.01, 0.05)
        if plan.best_value is None:
            plan.best_value = first_value
        elif objective_type == "Maximize":
            plan.best_value += (1 - plan.best_value) * step * 3
        else:
            plan.best_value *= 1 - step
        plan.best_training_job = training_job
        plan.not_improving = 0
        return round(plan.best_value, 6)


def _definitions_of(model: str, counter: int) -> dict[str, InstanceResources]:
    """The training-job definitions of the demo's ``counter``-th tuning job (_DEFINITION_LAYOUTS)."""
    layout = counter % _DEFINITION_LAYOUTS
    if layout == _DEFINITION_LAYOUTS - 2:
        return dict(_TWO_DEFINITIONS)
    if layout == _DEFINITION_LAYOUTS - 1:
        return {"": _CHOSEN_INSTANCES}
    return {"": _INSTANCES[model]}


def _set_description(
    job: Any, plan: _JobPlan, best: SimulatedTrainingJob | None, now: datetime
) -> None:
    """Make moto's DescribeHyperParameterTuningJob answer the plan's objective and runtime.

    moto answers BestTrainingJob, ConsumedResources and TuningJobCompletionDetails with fixed
    placeholders kept as attributes of its job; the demo replaces them. BestTrainingJob is
    the summary of the best training job; a job with no completed training job has no best
    one yet, as in SageMaker.
    """
    end = job.hyper_parameter_tuning_end_time or now
    job.consumed_resources = {
        "RuntimeInSeconds": max(0, int((end - job.creation_time).total_seconds()))
    }
    completion: dict[str, Any] = {"NumberOfTrainingJobsObjectiveNotImproving": plan.not_improving}
    if plan.converged_at is not None:
        completion["ConvergenceDetectedTime"] = plan.converged_at
    job.tuning_job_completion_details = completion
    job.best_training_job = None if best is None else best.summary()


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
    objective_type: str = "Maximize",
    tags: dict[str, str] | None = None,
    definitions: Mapping[str, InstanceResources] | None = None,
) -> Any:
    """Create a tuning job in a moto SageMaker backend; returns moto's job object to adjust.

    Its objective is to ``objective_type`` (Maximize or Minimize) ``metric``. ``tags`` are
    stored as CreateHyperParameterTuningJob's Tags would be. ``definitions`` give its
    TrainingJobDefinition or TrainingJobDefinitions, as
    :func:`exporter.demo_training_jobs.training_job_definitions` reads them; without them it
    has neither.
    """
    objective = {"Type": objective_type, "MetricName": metric}
    single, several = (
        training_job_definitions(
            definitions,
            account=backend.account_id,
            region=backend.region_name,
            tuning_job_name=name,
            objective=objective,
        )
        if definitions is not None
        else (None, None)
    )
    backend.create_hyper_parameter_tuning_job(
        hyper_parameter_tuning_job_name=name,
        hyper_parameter_tuning_job_config={
            "Strategy": strategy,
            "ResourceLimits": limits,
            "HyperParameterTuningJobObjective": objective,
        },
        training_job_definition=single,
        training_job_definitions=several,
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
