"""The collectors: the whole exposition against a golden file, and the rules behind single samples."""

from __future__ import annotations

import platform
from pathlib import Path
from types import MappingProxyType

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.aws.counting import RequestCounter
from exporter.aws.operations import LIST_OPERATION
from exporter.metrics.collectors import (
    ExporterHealthCollector,
    JobCountCollector,
    PerJobCollector,
    ShardCollector,
)
from exporter.model.jobs import RegionSnapshot, Target, TuningJob
from exporter.model.sharding import Shard

GOLDEN = Path(__file__).parent / "fixtures" / "golden_exposition.txt"

EU = Target(region="eu-west-1")
US = Target(
    region="us-east-1", role_arn="arn:aws:iam::222222222222:role/r", account_id="222222222222"
)
AP = Target(
    region="ap-south-1", role_arn="arn:aws:iam::444444444444:role/r", account_id="444444444444"
)

RUNNING = TuningJob(
    name="xgb-churn-7",
    arn="arn:aws:sagemaker:eu-west-1:111111111111:hyper-parameter-tuning-job/xgb-churn-7",
    account="111111111111",
    status="InProgress",
    strategy="Hyperband",
    creation_time=1_795_000_000.5,
    last_modified_time=1_795_000_600.0,
    end_time=None,
    training_job_counts=MappingProxyType(
        {
            "Completed": 12,
            "InProgress": 3,
            "RetryableError": 1,
            "NonRetryableError": 2,
            "Stopped": 0,
        }
    ),
    objective_counts=MappingProxyType({"Succeeded": 12, "Pending": 3, "Failed": 3}),
    max_training_jobs=40,
    max_parallel_training_jobs=None,
    max_runtime_seconds=None,
)
DONE = TuningJob(
    name="bert-intent-2",
    arn="arn:aws:sagemaker:eu-west-1:111111111111:hyper-parameter-tuning-job/bert-intent-2",
    account="111111111111",
    status="Completed",
    strategy="Bayesian",
    creation_time=1_790_000_000.0,
    last_modified_time=1_790_086_400.0,
    end_time=1_790_086_400.0,
    training_job_counts=MappingProxyType(
        {
            "Completed": 20,
            "InProgress": 0,
            "RetryableError": 0,
            "NonRetryableError": 0,
            "Stopped": 0,
        }
    ),
    objective_counts=MappingProxyType({"Succeeded": 20, "Pending": 0, "Failed": 0}),
    max_training_jobs=20,
    max_parallel_training_jobs=2,
    max_runtime_seconds=86400,
)
STALE = TuningJob(
    name="resnet-1",
    arn="arn:aws:sagemaker:us-east-1:222222222222:hyper-parameter-tuning-job/resnet-1",
    account="222222222222",
    status="Failed",
    strategy="Grid",
    creation_time=1_780_000_000.0,
    last_modified_time=1_780_000_900.0,
    end_time=1_780_000_900.0,
    training_job_counts=MappingProxyType(
        {"Completed": 1, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 9, "Stopped": 0}
    ),
    objective_counts=MappingProxyType({"Succeeded": 1, "Pending": 0, "Failed": 9}),
    max_training_jobs=10,
    max_parallel_training_jobs=1,
    max_runtime_seconds=None,
)

SNAPSHOTS = [
    RegionSnapshot(
        EU,
        "111111111111",
        (DONE, RUNNING),
        True,
        1_795_001_000.0,
        0.25,
        published=(DONE, RUNNING),
        full_listings=1,
        incremental_listings=4,
    ),
    RegionSnapshot(
        US,
        "222222222222",
        (STALE,),
        False,
        1_795_000_000.0,
        0.5,
        "ClientError: 500",
        2,
        published=(STALE,),
        full_listings=1,
    ),
    RegionSnapshot(AP, "444444444444", (), False, None, 0.125, "ClientError: AccessDenied", 1),
]


def registry_for(
    snapshots: list[RegionSnapshot], statuses: tuple[str, ...] = ()
) -> CollectorRegistry:
    requests = RequestCounter()
    requests.declare("eu-west-1", LIST_OPERATION)
    requests.declare("us-east-1", LIST_OPERATION)
    requests.declare("ap-south-1", LIST_OPERATION)
    for _ in range(3):
        requests.record("eu-west-1", LIST_OPERATION)
    requests.record("us-east-1", "AssumeRole")
    requests.record_error("eu-west-1", LIST_OPERATION, "throttled")
    requests.record_error("eu-west-1", LIST_OPERATION, "throttled")
    registry = CollectorRegistry()
    registry.register(PerJobCollector(lambda: snapshots))
    registry.register(JobCountCollector(lambda: snapshots, statuses))
    registry.register(ExporterHealthCollector(lambda: snapshots, requests))
    return registry


def test_whole_exposition_matches_the_golden_file() -> None:
    exposition = generate_latest(registry_for(SNAPSHOTS)).decode()

    expected = (
        GOLDEN.read_text()
        .replace("@VERSION@", __version__)
        .replace("@PYTHON_VERSION@", platform.python_version())
    )
    assert exposition == expected


def test_a_running_job_has_no_end_timestamp_and_no_absent_limits() -> None:
    families = {
        f.name: f
        for f in text_string_to_metric_families(generate_latest(registry_for(SNAPSHOTS)).decode())
    }

    ended = {
        s.labels["job_name"] for s in families["sagemaker_tuning_job_end_timestamp_seconds"].samples
    }
    parallel = {
        s.labels["job_name"]
        for s in families["sagemaker_tuning_job_max_parallel_training_jobs"].samples
    }
    assert "xgb-churn-7" not in ended
    assert "xgb-churn-7" not in parallel
    assert {"bert-intent-2", "resnet-1"} <= ended


def test_job_counts_cover_every_status_and_strategy_with_zeros() -> None:
    families = {
        f.name: f
        for f in text_string_to_metric_families(generate_latest(registry_for(SNAPSHOTS)).decode())
    }

    eu = [s for s in families["sagemaker_tuning_jobs"].samples if s.labels["region"] == "eu-west-1"]
    assert len(eu) == 7 * 4
    counted = {(s.labels["status"], s.labels["strategy"]): s.value for s in eu if s.value}
    assert counted == {("Completed", "Bayesian"): 1, ("InProgress", "Hyperband"): 1}


def test_job_counts_follow_the_status_filter_and_keep_unknown_values() -> None:
    odd = RegionSnapshot(
        EU,
        "111111111111",
        (TuningJob(**{**DONE.__dict__, "status": "Archived", "strategy": "Evolutionary"}),),
        True,
        1.0,
        0.1,
    )
    text = generate_latest(registry_for([odd], statuses=("Completed",))).decode()
    samples = [
        s
        for f in text_string_to_metric_families(text)
        if f.name == "sagemaker_tuning_jobs"
        for s in f.samples
    ]

    assert {s.labels["status"] for s in samples} == {"Completed", "Archived"}
    assert {s.labels["strategy"] for s in samples} == {
        "Bayesian",
        "Random",
        "Hyperband",
        "Grid",
        "Evolutionary",
    }
    assert [
        s.value
        for s in samples
        if s.labels["status"] == "Archived" and s.labels["strategy"] == "Evolutionary"
    ] == [1]


def test_each_scrape_builds_fresh_families_from_the_current_snapshots() -> None:
    current = [SNAPSHOTS[0]]
    registry = CollectorRegistry()
    registry.register(PerJobCollector(lambda: current))

    first = generate_latest(registry).decode()
    current = [SNAPSHOTS[1]]
    second = generate_latest(registry).decode()

    assert 'job_name="xgb-churn-7"' in first
    assert 'job_name="xgb-churn-7"' not in second
    assert 'job_name="resnet-1"' in second


def test_shard_collector_names_the_shard_and_counts_the_targets_it_owns() -> None:
    owned = [EU, US]
    registry = CollectorRegistry()
    registry.register(ShardCollector(Shard(1, 3), lambda: len(owned)))

    first = generate_latest(registry).decode()
    owned.append(AP)
    second = generate_latest(registry).decode()

    assert 'sagemaker_tuning_exporter_shard_info{shard="1",total_shards="3"} 1.0\n' in first
    assert "sagemaker_tuning_exporter_owned_targets 2.0\n" in first
    assert "sagemaker_tuning_exporter_owned_targets 3.0\n" in second
