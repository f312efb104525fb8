"""What the API holds and what the exporter must publish for it, shared by the HTTP and end-to-end tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from prometheus_client.parser import text_string_to_metric_families

from tests.sagemaker_server import SageMakerTestServer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

STATUSES = ("Completed", "InProgress", "Failed", "Stopped", "Stopping", "Deleting", "DeleteFailed")
STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
TRAINING_KEYS = ("Completed", "InProgress", "RetryableError", "NonRetryableError", "Stopped")
OBJECTIVE_KEYS = ("Succeeded", "Pending", "Failed")


# The families of prometheus_client's process, platform and GC collectors: their values
# change from one scrape to the next, so comparisons of two bodies leave them out.
EXPORTER_PROCESS_PREFIXES = ("process_", "python_info", "python_gc_")


def without_process_metrics(body: bytes) -> bytes:
    """``body`` without the lines of the exporter's own process metrics (``process_*``,
    ``python_info``, ``python_gc_*``), whose values differ on every scrape."""
    kept = []
    for line in body.splitlines(keepends=True):
        name = line.removeprefix(b"# HELP ").removeprefix(b"# TYPE ").removeprefix(b"# UNIT ")
        if not name.startswith(tuple(prefix.encode() for prefix in EXPORTER_PROCESS_PREFIXES)):
            kept.append(line)
    return b"".join(kept)


def samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [
        v
        for (n, label_set), v in samples(text).items()
        if n == name and set(labels.items()) <= label_set
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def seed_varied_jobs(sagemaker: SageMakerTestServer, count: int, regions: tuple[str, ...]) -> None:
    """``count`` jobs spread over ``regions``, covering every status and strategy, some fields absent.

    The jobs start two days ago, so all of them are within the default per-job retention.
    """
    rng = random.Random(2)
    described_rng = random.Random(3)
    two_days_ago = datetime.now(tz=UTC) - timedelta(days=2)
    base = two_days_ago.replace(tzinfo=None, second=0, microsecond=0)
    for index in range(count):
        status = STATUSES[index % len(STATUSES)]
        limits = {"MaxNumberOfTrainingJobs": rng.randint(5, 100)}
        if index % 3:
            limits["MaxParallelTrainingJobs"] = rng.randint(1, 10)
        if index % 4 == 0:
            limits["MaxRuntimeInSeconds"] = rng.choice((3600, 86400))
        created = base + timedelta(minutes=index * 17, milliseconds=index * 7)
        terminal = status in ("Completed", "Failed", "Stopped")
        sagemaker.add_job(
            regions[index % len(regions)],
            f"job-{index:03d}",
            status=status,
            strategy=STRATEGIES[index % len(STRATEGIES)],
            training={key: rng.randint(0, 30) for key in TRAINING_KEYS},
            objective={key: rng.randint(0, 30) for key in OBJECTIVE_KEYS},
            limits=limits,
            created=created,
            modified=created + timedelta(minutes=5),
            ended=created + timedelta(hours=2) if terminal else None,
            described=described_fields(f"job-{index:03d}", index, described_rng, created),
        )


def described_fields(
    name: str, index: int, rng: random.Random, created: datetime
) -> dict[str, Any]:
    """What DescribeHyperParameterTuningJob adds for a test job: varied, some fields absent."""
    best = {
        "TrainingJobName": f"{name}-{rng.randint(1, 30):03d}-best",
        "TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{name}-best",
        "CreationTime": created,
        "TrainingJobStatus": "Completed",
        "TunedHyperParameters": {"eta": "0.1"},
        "FinalHyperParameterTuningJobObjectiveMetric": {
            "Type": "Minimize" if index % 2 else "Maximize",
            "MetricName": "validation:rmse" if index % 2 else "validation:auc",
            "Value": round(rng.uniform(0, 1), 6),
        },
    }
    return {
        "BestTrainingJob": None if index % 5 == 4 else best,
        "ConsumedResources": None
        if index % 6 == 5
        else {"RuntimeInSeconds": rng.randint(1, 10**5)},
        "TuningJobCompletionDetails": (
            None
            if index % 3 == 2
            else {
                "NumberOfTrainingJobsObjectiveNotImproving": rng.randint(0, 20),
                **({"ConvergenceDetectedTime": created + timedelta(hours=1)} if index % 2 else {}),
            }
        ),
    }


def expected_samples_from_api(
    endpoint_url: str, regions: tuple[str, ...], describe: bool = True
) -> Samples:
    """The per-job samples the exporter must publish, computed straight from the API's answers.

    With ``describe``, every job but those being deleted is described too, as the exporter
    does when the jobs fit in one refresh's describe budget.
    """
    expected: Samples = {}
    for region in regions:
        client: Any = boto3.client("sagemaker", region_name=region, endpoint_url=endpoint_url)
        for page in client.get_paginator("list_hyper_parameter_tuning_jobs").paginate():
            for job in page["HyperParameterTuningJobSummaries"]:
                labels = {
                    "account": job["HyperParameterTuningJobArn"].split(":")[4],
                    "region": region,
                    "job_name": job["HyperParameterTuningJobName"],
                    "status": job["HyperParameterTuningJobStatus"],
                    "strategy": job["Strategy"],
                }

                def put(
                    name: str, number: float, labels: dict[str, str] = labels, **extra: str
                ) -> None:
                    expected[(name, frozenset({**labels, **extra}.items()))] = float(number)

                for key, count in job["TrainingJobStatusCounters"].items():
                    put("sagemaker_tuning_job_training_jobs", count, training_job_status=key)
                for key, count in job["ObjectiveStatusCounters"].items():
                    put("sagemaker_tuning_job_objective_evaluations", count, objective_status=key)
                limits = job["ResourceLimits"]
                for field, name in (
                    ("MaxNumberOfTrainingJobs", "sagemaker_tuning_job_max_training_jobs"),
                    ("MaxParallelTrainingJobs", "sagemaker_tuning_job_max_parallel_training_jobs"),
                    ("MaxRuntimeInSeconds", "sagemaker_tuning_job_max_runtime_seconds"),
                ):
                    if field in limits:
                        put(name, limits[field])
                put(
                    "sagemaker_tuning_job_creation_timestamp_seconds",
                    job["CreationTime"].timestamp(),
                )
                put(
                    "sagemaker_tuning_job_last_modified_timestamp_seconds",
                    job["LastModifiedTime"].timestamp(),
                )
                if "HyperParameterTuningEndTime" in job:
                    put(
                        "sagemaker_tuning_job_end_timestamp_seconds",
                        job["HyperParameterTuningEndTime"].timestamp(),
                    )
                if describe and job["HyperParameterTuningJobStatus"] != "Deleting":
                    description = client.describe_hyper_parameter_tuning_job(
                        HyperParameterTuningJobName=job["HyperParameterTuningJobName"]
                    )
                    for name, number, extra in described_samples(description):
                        expected[(name, frozenset({**labels, **extra}.items()))] = float(number)
    return expected


def described_samples(description: dict[str, Any]) -> list[tuple[str, float, dict[str, str]]]:
    """The samples of the describe families for one DescribeHyperParameterTuningJob answer."""
    found: list[tuple[str, float, dict[str, str]]] = []
    best = description.get("BestTrainingJob")
    if best is not None:
        found.append(
            (
                "sagemaker_tuning_job_best_training_job_info",
                1.0,
                {"best_training_job": best["TrainingJobName"]},
            )
        )
        objective = best.get("FinalHyperParameterTuningJobObjectiveMetric")
        if objective is not None:
            found.append(
                (
                    "sagemaker_tuning_job_best_objective_value",
                    objective["Value"],
                    {
                        "objective_metric": objective["MetricName"],
                        "objective_type": objective["Type"],
                    },
                )
            )
    consumed = description.get("ConsumedResources") or {}
    if "RuntimeInSeconds" in consumed:
        found.append(
            ("sagemaker_tuning_job_consumed_runtime_seconds", consumed["RuntimeInSeconds"], {})
        )
    completion = description.get("TuningJobCompletionDetails") or {}
    if "NumberOfTrainingJobsObjectiveNotImproving" in completion:
        found.append(
            (
                "sagemaker_tuning_job_training_jobs_objective_not_improving",
                completion["NumberOfTrainingJobsObjectiveNotImproving"],
                {},
            )
        )
    if "ConvergenceDetectedTime" in completion:
        found.append(
            (
                "sagemaker_tuning_job_convergence_detected_timestamp_seconds",
                completion["ConvergenceDetectedTime"].timestamp(),
                {},
            )
        )
    return found
