"""Describing published jobs: ended jobs once, running jobs once per describe.ttl, within a budget.

The exporter runs in this process against moto's SageMaker server over HTTP; a fake clock
stands in for the wall time, so the describe TTL is tested without sleeping.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.sagemaker.models import sagemaker_backends

from exporter.app import Exporter
from exporter.aws.errors import AttemptsExhaustedError
from exporter.aws.operations import DESCRIBE_OPERATION, LIST_OPERATION
from exporter.config.settings import DescribeSettings, ExporterConfig, PerJobMetricsSettings
from exporter.demo import DEMO_ACCOUNT, DEMO_REGIONS, DemoSageMaker
from exporter.model.jobs import JobDescription
from exporter.refresh.describe import JobDescriber, jobs_to_describe, parse_description
from exporter.web.server import ExporterServer
from tests.apps import create_app
from tests.conftest import ROOT, RunningExporter
from tests.expected import Samples, described_samples, samples, value
from tests.factories import tuning_job
from tests.sagemaker_server import FaultRule, SageMakerTestServer, at

REGION = "eu-west-1"
DESCRIBE_FAMILIES = (
    "sagemaker_tuning_job_best_objective_value",
    "sagemaker_tuning_job_consumed_runtime_seconds",
    "sagemaker_tuning_job_training_jobs_objective_not_improving",
    "sagemaker_tuning_job_convergence_detected_timestamp_seconds",
    "sagemaker_tuning_job_best_training_job_info",
)


class FakeClock:
    """Wall time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


StartExporter = Callable[[ExporterConfig, FakeClock], RunningExporter]


@pytest.fixture
def start_exporter() -> Iterator[StartExporter]:
    """Start an exporter on 127.0.0.1 whose wall clock a test moves."""
    started: list[RunningExporter] = []

    def start(config: ExporterConfig, clock: FakeClock) -> RunningExporter:
        exporter = Exporter(config, clock=clock)
        server = ExporterServer("127.0.0.1:0", create_app(exporter.cache, exporter.metrics_page))
        server.start()
        started.append(RunningExporter(exporter, server))
        return started[-1]

    yield start
    for running in started:
        running.server.stop()
        running.exporter.cache.wait_idle(timeout=60)


def described_names(sagemaker: SageMakerTestServer) -> list[str]:
    """The job names of the describe requests the server received, in order."""
    return [
        json.loads(body)["HyperParameterTuningJobName"]
        for body in sagemaker.request_bodies(DESCRIBE_OPERATION)
    ]


def description(
    best: float, metric: str = "validation:auc", kind: str = "Maximize"
) -> dict[str, Any]:
    """DescribeHyperParameterTuningJob fields of a job whose best objective value is ``best``."""
    return {
        "BestTrainingJob": {
            "TrainingJobName": f"best-{best}",
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/best",
            "CreationTime": datetime(2026, 11, 1),
            "TrainingJobStatus": "Completed",
            "TunedHyperParameters": {"eta": "0.1"},
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "Type": kind,
                "MetricName": metric,
                "Value": best,
            },
        },
        "ConsumedResources": {"RuntimeInSeconds": 3600},
        "TuningJobCompletionDetails": {
            "NumberOfTrainingJobsObjectiveNotImproving": 4,
            "ConvergenceDetectedTime": datetime(2026, 11, 2, 12, 0),
        },
    }


def describe_samples_of(text: str) -> Samples:
    """The samples of the describe families in an exposition."""
    return {key: number for key, number in samples(text).items() if key[0] in DESCRIBE_FAMILIES}


def describe_samples_from_api(endpoint_url: str, names: list[str]) -> Samples:
    """The describe-family samples the API's answers for ``names`` call for."""
    client: Any = boto3.client("sagemaker", region_name=REGION, endpoint_url=endpoint_url)
    expected: Samples = {}
    for name in names:
        answer = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        labels = {
            "account": answer["HyperParameterTuningJobArn"].split(":")[4],
            "region": REGION,
            "job_name": name,
            "status": answer["HyperParameterTuningJobStatus"],
            "strategy": answer["HyperParameterTuningJobConfig"]["Strategy"],
        }
        for family, number, extra in described_samples(answer):
            expected[(family, frozenset({**labels, **extra}.items()))] = float(number)
    return expected


def config_for(make_config: Callable[..., ExporterConfig], **describe: Any) -> ExporterConfig:
    """One region, every listed job published, and these describe settings.

    One describe at a time unless ``concurrency`` is given, so that the order and number of
    requests are exact; describes in flight together have tests of their own.
    """
    describe.setdefault("concurrency", 1)
    return make_config(
        regions=(REGION,),
        per_job_metrics=PerJobMetricsSettings(retention_seconds=0),
        describe=replace(DescribeSettings(), **describe),
    )


def test_parse_description_reads_each_field_and_leaves_absent_ones_out() -> None:
    full = parse_description(
        {
            "HyperParameterTuningJobStatus": "Completed",
            "BestTrainingJob": {
                "TrainingJobName": "xgb-7",
                "FinalHyperParameterTuningJobObjectiveMetric": {
                    "Type": "Minimize",
                    "MetricName": "validation:rmse",
                    "Value": 0.25,
                },
            },
            "ConsumedResources": {"RuntimeInSeconds": 5400},
            "TuningJobCompletionDetails": {
                "NumberOfTrainingJobsObjectiveNotImproving": 7,
                "ConvergenceDetectedTime": datetime(2026, 11, 2, tzinfo=UTC),
            },
        },
        described_at=100.0,
    )
    bare = parse_description({"HyperParameterTuningJobStatus": "InProgress"}, described_at=5.0)

    assert full == JobDescription(
        status="Completed",
        described_at=100.0,
        best_training_job_name="xgb-7",
        objective_metric="validation:rmse",
        objective_type="Minimize",
        best_objective_value=0.25,
        consumed_runtime_seconds=5400.0,
        training_jobs_objective_not_improving=7,
        convergence_detected_time=datetime(2026, 11, 2, tzinfo=UTC).timestamp(),
    )
    assert bare == JobDescription(status="InProgress", described_at=5.0)


def test_running_jobs_come_first_then_ended_jobs_newest_first_within_the_budget() -> None:
    jobs = [
        tuning_job("ended-long-ago", end_time=1000.0),
        tuning_job("running-described-earlier", status="InProgress"),
        tuning_job("ended-recently", status="Failed", end_time=5000.0),
        tuning_job("being-deleted", status="Deleting", end_time=6000.0),
        tuning_job("running-never-described", status="Stopping"),
        tuning_job("ended-and-described", end_time=7000.0),
        tuning_job("running-described-just-now", status="InProgress"),
    ]
    descriptions = {
        "running-described-earlier": JobDescription("InProgress", described_at=9000.0),
        "ended-and-described": JobDescription("Completed", described_at=8000.0),
        "running-described-just-now": JobDescription("InProgress", described_at=9990.0),
    }

    def due(budget: int) -> list[str]:
        chosen = jobs_to_describe(jobs, descriptions, now=10_000.0, ttl_seconds=300, budget=budget)
        return [job.name for job in chosen]

    assert due(10) == [
        "running-never-described",
        "running-described-earlier",
        "ended-recently",
        "ended-long-ago",
    ]
    assert due(3) == ["running-never-described", "running-described-earlier", "ended-recently"]


def test_first_start_describes_each_ended_job_once_over_several_refreshes_then_only_running_ones(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,
) -> None:
    now = datetime.now(tz=UTC).replace(tzinfo=None, microsecond=0)
    for index in range(1000):
        ended = now - timedelta(hours=2, minutes=index)
        sagemaker.add_job(
            REGION,
            f"ended-{index:04d}",
            status=("Completed", "Failed", "Stopped")[index % 3],
            created=ended - timedelta(hours=1),
            ended=ended,
            described=description(index / 1000),
        )
    for index in range(20):
        sagemaker.add_job(
            REGION,
            f"running-{index:02d}",
            status="InProgress",
            created=now - timedelta(minutes=30),
            described=description(0.5 + index / 100, metric="validation:rmse", kind="Minimize"),
        )
    clock = FakeClock()
    running = start_exporter(
        config_for(make_config, ttl_seconds=600, max_requests_per_refresh=100), clock
    )

    per_refresh = []
    for _ in range(14):
        before = sagemaker.received(REGION, DESCRIBE_OPERATION)
        running.exporter.cache.refresh_all(timeout=120)
        per_refresh.append(sagemaker.received(REGION, DESCRIBE_OPERATION) - before)
    names = described_names(sagemaker)
    first_start = len(names)
    text = running.scrape()

    clock.advance(599)
    running.exporter.cache.refresh_all(timeout=120)
    before_ttl = len(described_names(sagemaker))
    clock.advance(1)
    running.exporter.cache.refresh_all(timeout=120)
    after_ttl = described_names(sagemaker)[before_ttl:]

    # 20 running and 80 ended, then 100 ended per refresh: 1000 ended jobs over 11 refreshes.
    assert per_refresh == [100] * 10 + [20, 0, 0, 0]
    assert sorted(names) == sorted(
        [f"ended-{index:04d}" for index in range(1000)] + [f"running-{i:02d}" for i in range(20)]
    )
    # Newest first: the first refresh takes the 80 most recently ended jobs.
    assert names[20:100] == [f"ended-{index:04d}" for index in range(80)]
    assert before_ttl == first_start
    assert sorted(after_ttl) == [f"running-{index:02d}" for index in range(20)]
    every_job = [f"ended-{i:04d}" for i in range(1000)] + [f"running-{i:02d}" for i in range(20)]
    assert describe_samples_of(text) == describe_samples_from_api(sagemaker.url, every_job)
    assert (
        value(
            text,
            "sagemaker_tuning_job_best_objective_value",
            job_name="running-03",
            objective_metric="validation:rmse",
            objective_type="Minimize",
        )
        == 0.53
    )
    assert value(text, "sagemaker_tuning_exporter_up", region=REGION) == 1
    assert value(
        text,
        "sagemaker_tuning_exporter_api_requests_total",
        region=REGION,
        operation=DESCRIBE_OPERATION,
    ) == len(names)


def test_running_jobs_deep_in_the_listing_are_described_once_a_refresh_for_both_steps(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,
) -> None:
    now = datetime.now(tz=UTC).replace(tzinfo=None, microsecond=0)
    for index in range(1000):  # ended a day ago: past the retention, so never described
        created = now - timedelta(hours=30, minutes=index)
        sagemaker.add_job(REGION, f"ended-{index:04d}", created=created, ended=created)
    deep = [
        sagemaker.add_job(
            REGION, f"deep-{index}", status="InProgress", created=now - timedelta(days=3 + index)
        )
        for index in range(2)
    ]
    for index in range(3):
        sagemaker.add_job(REGION, f"new-{index}", status="InProgress", created=now)
    clock = FakeClock()
    config = replace(
        config_for(make_config, ttl_seconds=300),
        per_job_metrics=PerJobMetricsSettings(retention_seconds=3600),
    )
    running = start_exporter(config, clock)
    running.exporter.cache.refresh_all(timeout=120)  # a full listing, and 5 first describes
    assert sorted(described_names(sagemaker)) == ["deep-0", "deep-1", "new-0", "new-1", "new-2"]

    for step in range(1, 4):
        clock.advance(60)  # within describe.ttl: only the listing has a reason to describe
        for job in deep:
            job.training_job_status_counters = {"Completed": step, "InProgress": 2}
        before = sagemaker.received(REGION, LIST_OPERATION), len(described_names(sagemaker))
        running.exporter.cache.refresh_all(timeout=120)
        after = sagemaker.received(REGION, LIST_OPERATION), len(described_names(sagemaker))
        text = running.scrape()

        assert (after[0] - before[0], after[1] - before[1]) == (1, 2)
        assert described_names(sagemaker)[-2:] == ["deep-0", "deep-1"]
        for name in ("deep-0", "deep-1"):
            assert (
                value(
                    text,
                    "sagemaker_tuning_job_training_jobs",
                    job_name=name,
                    training_job_status="Completed",
                )
                == step
            )


def test_a_job_described_while_running_is_described_once_more_after_it_ends(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,
) -> None:
    job = sagemaker.add_job(REGION, "finishing", status="InProgress", described=description(0.7))
    clock = FakeClock()
    running = start_exporter(config_for(make_config, ttl_seconds=3600), clock)
    running.exporter.cache.refresh_all(timeout=60)

    job.hyper_parameter_tuning_job_status = "Completed"
    job.last_modified_time = job.hyper_parameter_tuning_end_time = datetime.now(tz=UTC).replace(
        tzinfo=None
    )
    sagemaker.describe_as(REGION, "finishing", description(0.9))
    for _ in range(3):
        running.exporter.cache.refresh_all(timeout=60)
        clock.advance(7200)
    text = running.scrape()

    assert described_names(sagemaker) == ["finishing", "finishing"]
    assert (
        value(
            text,
            "sagemaker_tuning_job_best_objective_value",
            job_name="finishing",
            status="Completed",
        )
        == 0.9
    )


@pytest.mark.parametrize(
    ("fault", "error_kind"), [("throttle", "throttled"), ("server_error", "server_error")]
)
def test_a_throttled_or_failing_describe_keeps_the_listing_up_and_the_last_description(
    fault: str,
    error_kind: str,
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,
) -> None:
    for index in range(3):
        sagemaker.add_job(
            REGION, f"running-{index}", status="InProgress", described=description(0.1)
        )
    clock = FakeClock()
    running = start_exporter(config_for(make_config, ttl_seconds=60), clock)
    running.exporter.cache.refresh_all(timeout=60)
    for index in range(3):
        sagemaker.describe_as(REGION, f"running-{index}", description(0.2))
    sagemaker.add_fault(FaultRule(region=REGION, kind=fault, operation=DESCRIBE_OPERATION))
    before = sagemaker.received(REGION, DESCRIBE_OPERATION)
    clock.advance(60)

    running.exporter.cache.refresh_all(timeout=60)
    text = running.scrape()

    assert value(text, "sagemaker_tuning_exporter_up", region=REGION) == 1
    # The first job's attempts (aws.max_attempts is 3) fail; the others wait for the next
    # refresh rather than fail the same way.
    assert sagemaker.received(REGION, DESCRIBE_OPERATION) - before == 3
    for index in range(3):
        assert (
            value(text, "sagemaker_tuning_job_best_objective_value", job_name=f"running-{index}")
            == 0.1
        )
    failed = value(
        text,
        "sagemaker_tuning_exporter_api_errors_total",
        region=REGION,
        operation=DESCRIBE_OPERATION,
        error=error_kind,
    )
    assert failed == 3


def test_a_describe_denied_for_one_job_leaves_the_others_described(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,
) -> None:
    # The denied job ended last, so it is described first: the others still follow it.
    sagemaker.add_job(
        REGION, "secret-job", ended=at("2026-11-02T00:00:00"), described=description(0.3)
    )
    sagemaker.add_job(
        REGION, "open-job", ended=at("2026-11-01T00:00:00"), described=description(0.4)
    )
    sagemaker.add_fault(
        FaultRule(
            region=REGION,
            kind="access_denied",
            operation=DESCRIBE_OPERATION,
            body_contains="secret-job",
        )
    )
    running = start_exporter(config_for(make_config), FakeClock())

    text = running.scrape()

    assert value(text, "sagemaker_tuning_exporter_up", region=REGION) == 1
    assert value(text, "sagemaker_tuning_job_best_objective_value", job_name="open-job") == 0.4
    assert value(text, "sagemaker_tuning_job_best_objective_value", job_name="secret-job") is None
    assert value(text, "sagemaker_tuning_job_creation_timestamp_seconds", job_name="secret-job")
    denied = value(
        text,
        "sagemaker_tuning_exporter_api_errors_total",
        region=REGION,
        operation=DESCRIBE_OPERATION,
        error="access_denied",
    )
    assert denied == 1


def test_three_denied_describes_in_a_row_end_the_refreshs_describing(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,
) -> None:
    for index in range(10):
        sagemaker.add_job(REGION, f"job-{index}", described=description(0.5))
    sagemaker.add_fault(
        FaultRule(region=REGION, kind="access_denied", operation=DESCRIBE_OPERATION)
    )
    running = start_exporter(config_for(make_config), FakeClock())

    text = running.scrape()

    assert value(text, "sagemaker_tuning_exporter_up", region=REGION) == 1
    # The permission is missing: three refusals, not the whole budget of ten.
    assert sagemaker.received(REGION, DESCRIBE_OPERATION) == 3
    assert not describe_samples_of(text)


def test_a_job_gone_before_its_describe_keeps_its_last_description(
    sagemaker: SageMakerTestServer,
) -> None:
    client: Any = boto3.client("sagemaker", region_name=REGION, endpoint_url=sagemaker.url)
    kept = JobDescription("InProgress", described_at=0.0, best_objective_value=0.5)
    describer = JobDescriber(DescribeSettings(ttl_seconds=60), clock=lambda: 1000.0)

    descriptions = describer.refresh(
        [tuning_job("vanished", status="InProgress")],
        {"vanished": kept},
        lambda name: client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
    )

    assert sagemaker.received(REGION, DESCRIBE_OPERATION) == 1
    assert dict(descriptions) == {"vanished": kept}


def test_descriptions_of_jobs_no_longer_listed_are_dropped(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,
) -> None:
    sagemaker.add_job(REGION, "deleted-job", described=description(0.3))
    sagemaker.add_job(REGION, "kept-job", described=description(0.4))
    config = config_for(make_config)
    config = replace(config, cache=replace(config.cache, full_resync_seconds=0))
    running = start_exporter(config, FakeClock())
    running.exporter.cache.refresh_all(timeout=60)

    sagemaker.delete_job(REGION, "deleted-job")
    running.exporter.cache.refresh_all(timeout=60)
    text = running.scrape()
    (snapshot,) = running.exporter.cache.snapshots()

    assert set(snapshot.descriptions) == {"kept-job"}
    assert value(text, "sagemaker_tuning_job_best_objective_value", job_name="deleted-job") is None
    assert sorted(described_names(sagemaker)) == ["deleted-job", "kept-job"]


def test_describe_disabled_sends_no_describe_and_publishes_no_description_families(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,
) -> None:
    sagemaker.add_job(REGION, "job", status="InProgress", described=description(0.3))
    running = start_exporter(config_for(make_config, enabled=False), FakeClock())

    text = running.scrape()

    assert sagemaker.received(REGION, DESCRIBE_OPERATION) == 0
    assert value(text, "sagemaker_tuning_job_training_jobs", training_job_status="Completed") == 1
    for family in DESCRIBE_FAMILIES:
        assert f"# TYPE {family} gauge" not in text
    assert DESCRIBE_OPERATION not in text


def test_describe_requests_and_their_errors_start_at_zero(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,
) -> None:
    running = start_exporter(config_for(make_config), FakeClock())

    text = running.scrape()

    assert (
        value(
            text,
            "sagemaker_tuning_exporter_api_requests_total",
            region=REGION,
            operation=DESCRIBE_OPERATION,
        )
        == 0
    )
    for kind in ("throttled", "access_denied", "other"):
        errors = value(
            text,
            "sagemaker_tuning_exporter_api_errors_total",
            region=REGION,
            operation=DESCRIBE_OPERATION,
            error=kind,
        )
        assert errors == 0
    for family in DESCRIBE_FAMILIES:
        assert f"# TYPE {family} gauge" in text


def test_the_demo_publishes_every_description_family(start_exporter: StartExporter) -> None:
    demo = DemoSageMaker()
    demo.start()
    try:
        for _ in range(3):
            demo.advance()
        running = start_exporter(demo.config(), FakeClock())
        text = running.scrape()
    finally:
        demo.stop()
        # The demo shares moto's in-process backends with the test server: empty them.
        for region in DEMO_REGIONS:
            sagemaker_backends[DEMO_ACCOUNT][region].hyper_parameter_tuning_jobs.clear()

    published = {name for name, _ in describe_samples_of(text)}
    assert published == set(DESCRIBE_FAMILIES)
    assert value(text, "sagemaker_tuning_exporter_up", region="us-east-1") == 1


@pytest.mark.parametrize("listing_semantics", ("moto", "aws"))
def test_the_describe_benchmark_runs_small_and_reports_first_start_and_steady_state(
    tmp_path: Path, listing_semantics: str
) -> None:
    result_path = tmp_path / "result.json"
    completed = subprocess.run(
        [
            sys.executable,
            "bench/describe.py",
            "--jobs",
            "130",
            "--running",
            "5",
            "--budget",
            "40",
            "--ttl",
            "1",
            "--describe-ttl",
            "3",
            "--steady-refreshes",
            "4",
            "--listing-semantics",
            listing_semantics,
            "--json",
            str(result_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(result_path.read_text())
    entries = report["refreshes"]
    first_start = entries[: report["first_start_refreshes"]]
    steady = entries[len(first_start) :]
    # 125 ended jobs and 5 running ones at 40 a refresh: at least four refreshes, each full
    # but the last.
    assert all(entry["describes"] <= 40 * entry["refreshes"] for entry in entries)
    assert report["first_start_refreshes"] >= 4
    assert report["first_start_describes"] >= 130
    assert [entry["describes"] for entry in first_start[:3]] == [
        40 * entry["refreshes"] for entry in first_start[:3]
    ]
    # Later refreshes describe only the 5 running jobs, when their describe TTL has passed.
    assert all(entry["describes"] % 5 == 0 for entry in steady)
    assert all(entry["describes"] <= 5 * entry["refreshes"] for entry in steady)
    assert report["steady_refreshes"] >= 4
    # Unfiltered, newest first: the 5 running jobs are on the first page, under either semantics.
    assert report["listing_semantics"] == listing_semantics
    assert report["steady_listing_requests_per_refresh"] == 1
    assert "| describe requests per steady-state refresh |" in completed.stdout
    assert f"listing semantics: {listing_semantics} (" in completed.stdout


def minimal_answer(name: str) -> dict[str, Any]:
    """A DescribeHyperParameterTuningJob answer with only what a description needs."""
    return {"HyperParameterTuningJobName": name, "HyperParameterTuningJobStatus": "Completed"}


def test_up_to_concurrency_describes_are_in_flight_at_once_and_all_are_read() -> None:
    # Each describe waits for three others to be in flight: the refresh only ends if four
    # run at once, and a fifth never does.
    together = threading.Barrier(4, timeout=10)
    lock = threading.Lock()
    in_flight = most_in_flight = 0

    daemons: set[bool] = set()

    def describe(name: str) -> dict[str, Any]:
        nonlocal in_flight, most_in_flight
        with lock:
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            daemons.add(threading.current_thread().daemon)
        together.wait()
        with lock:
            in_flight -= 1
        return minimal_answer(name)

    jobs = [tuning_job(f"ended-{n}", status="Completed") for n in range(8)]
    describer = JobDescriber(DescribeSettings(concurrency=4), clock=lambda: 1000.0)

    descriptions = describer.refresh(jobs, {}, describe)

    assert most_in_flight == 4
    assert sorted(descriptions) == sorted(job.name for job in jobs)
    # Daemons, as the refresh's worker: a describe stuck in a read never holds up the exit.
    assert daemons == {True}


def test_describes_in_flight_when_one_gives_up_still_count_and_no_more_are_sent() -> None:
    first_sent = threading.Event()
    sent: list[str] = []
    lock = threading.Lock()

    def describe(name: str) -> dict[str, Any]:
        with lock:
            sent.append(name)
        if name == "ended-0":
            first_sent.set()
            raise AttemptsExhaustedError("DescribeHyperParameterTuningJob failed after 5 attempts")
        first_sent.wait(timeout=10)
        return minimal_answer(name)

    jobs = [tuning_job(f"ended-{n}", status="Completed") for n in range(20)]
    describer = JobDescriber(DescribeSettings(concurrency=4), clock=lambda: 1000.0)

    descriptions = describer.refresh(jobs, {}, describe)

    # The first three sent with it are read; none is sent after it gave up but those that
    # took the free places before its answer was seen.
    assert len(sent) < 8
    assert "ended-0" not in descriptions
    assert set(descriptions) == set(sent) - {"ended-0"}


def test_concurrent_describes_over_the_wire_describe_every_due_job_once(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,
) -> None:
    names = [f"ended-{index}" for index in range(12)]
    for index, name in enumerate(names):
        sagemaker.add_job(REGION, name, status="Completed", described=description(index / 100))
    running = start_exporter(config_for(make_config, concurrency=4), FakeClock())

    text = running.scrape()

    assert sagemaker.received(REGION, DESCRIBE_OPERATION) == len(names)
    assert sorted(described_names(sagemaker)) == sorted(names)
    assert {
        dict(labels)["job_name"]
        for name, labels in describe_samples_of(text)
        if name == "sagemaker_tuning_job_best_objective_value"
    } == set(names)
