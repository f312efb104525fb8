"""Training-job insight: failures by reason, instance time and the leaderboard, held to the truth.

The exporter runs in this process against the test server over HTTP, which answers
ListTrainingJobsForHyperParameterTuningJob from its own store of training jobs under both
readings of paging (``[moto]``: filter, then page; ``[aws]``: page, then filter). Every
expected sample is computed here from the training jobs the test stored, by a reference
written apart from the exporter's code. A fake clock moves ``training_jobs.ttl``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.config.settings import (
    DescribeSettings,
    ExporterConfig,
    PerJobMetricsSettings,
    TrainingJobsSettings,
)
from exporter.model.training import (
    ReadProgress,
    Tally,
    TrainingJobSummary,
    advance,
    failure_reason_category,
)
from exporter.refresh.training_jobs import tuning_jobs_to_read
from tests.conftest import RunningExporter
from tests.expected import samples
from tests.factories import tuning_job
from tests.sagemaker_server import (
    TRAINING_JOBS_OPERATION,
    FaultRule,
    SageMakerTestServer,
    StoredTrainingJob,
)
from tests.test_describe import FakeClock, StartExporter, start_exporter  # noqa: F401 - a fixture

REGION = "eu-west-1"
ACCOUNT = "123456789012"
FAILED = "sagemaker_tuning_job_failed_training_jobs"
INSTANCE_SECONDS = "sagemaker_tuning_job_training_instance_seconds"
TOP_VALUE = "sagemaker_tuning_job_top_training_job_objective_value"
TOP_INFO = "sagemaker_tuning_job_top_training_job_info"
FAMILIES = (FAILED, INSTANCE_SECONDS, TOP_VALUE, TOP_INFO)
CATEGORIES = (
    "AlgorithmError",
    "ClientError",
    "CapacityError",
    "InternalServerError",
    "ResourceLimitExceeded",
)
BASE = datetime(2026, 11, 1, 8, 0, 0)
TTL = 300.0


# --- the reference: what the families must say, from the stored training jobs -----------


def reason_of(text: str | None) -> str:
    word = (text or "").split(":", 1)[0].strip()
    return word if word in CATEGORIES else "Other"


def hp_label(name: str) -> str:
    return "hp_" + "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name)


def expected(
    tuning_job_name: str,
    status: str,
    training_jobs: Iterable[StoredTrainingJob],
    instances: Mapping[str, tuple[str, int]],
    leaderboard: int,
    *,
    objective_type: str = "Maximize",
    strategy: str = "Bayesian",
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the four families for one tuning job."""
    job_labels = {
        "account": ACCOUNT,
        "region": REGION,
        "job_name": tuning_job_name,
        "status": status,
        "strategy": strategy,
    }
    jobs = list(training_jobs)
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for reason, count in Counter(
        reason_of(j.failure_reason) for j in jobs if j.status == "Failed"
    ).items():
        found[(FAILED, frozenset({**job_labels, "reason": reason}.items()))] = count
    seconds: dict[str, float] = defaultdict(float)
    for j in jobs:
        if j.started is not None and j.ended is not None:
            kind, count = instances.get(j.definition_name or "", ("unknown", 1))
            seconds[kind] += (j.ended - j.started).total_seconds() * count
    for kind, total in seconds.items():
        found[(INSTANCE_SECONDS, frozenset({**job_labels, "instance_type": kind}.items()))] = total
    scored = [j for j in jobs if j.objective_value is not None]
    sign = -1 if objective_type == "Maximize" else 1
    scored.sort(key=lambda j: (sign * (j.objective_value or 0.0), j.name))
    for j in scored[:leaderboard]:
        labels = {**job_labels, "training_job_name": j.name}
        found[(TOP_VALUE, frozenset(labels.items()))] = j.objective_value or 0.0
        info = dict(labels)
        for name in sorted(j.tuned_hyperparameters):
            info.setdefault(hp_label(name), j.tuned_hyperparameters[name])
        found[(TOP_INFO, frozenset(info.items()))] = 1.0
    return found


def family_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {key: v for key, v in samples(text).items() if key[0] in FAMILIES}


# --- seeding --------------------------------------------------------------------------------


def config_for(make_config: Callable[..., ExporterConfig], **training_jobs: Any) -> ExporterConfig:
    return make_config(
        regions=(REGION,),
        per_job_metrics=PerJobMetricsSettings(retention_seconds=0),
        describe=DescribeSettings(concurrency=1),
        training_jobs=replace(TrainingJobsSettings(enabled=True), **training_jobs),
    )


def add_tuning_job(
    sagemaker: SageMakerTestServer,
    name: str,
    *,
    status: str = "Completed",
    definition: Mapping[str, Any] | None = None,
    definitions: list[Mapping[str, Any]] | None = None,
    ended: datetime | None = None,
) -> None:
    job = sagemaker.add_job(
        REGION,
        name,
        account=ACCOUNT,
        status=status,
        created=BASE,
        ended=ended if ended is not None else (None if status == "InProgress" else BASE),
    )
    # moto keeps the definitions it was created with, and answers them in the description.
    job.training_job_definition = dict(definition) if definition is not None else None
    job.training_job_definitions = [dict(d) for d in definitions] if definitions else None


def resources(instance_type: str, count: int) -> dict[str, Any]:
    return {
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": count,
            "VolumeSizeInGB": 10,
        }
    }


def add_training(
    sagemaker: SageMakerTestServer,
    tuning_job_name: str,
    index: int,
    status: str,
    **fields: Any,
) -> StoredTrainingJob:
    created = fields.pop("created", BASE + timedelta(minutes=index))
    return sagemaker.add_training_job(
        REGION,
        tuning_job_name,
        f"{tuning_job_name}-{index:03d}",
        status=status,
        account=ACCOUNT,
        created=created,
        **fields,
    )


def ended_training(
    sagemaker: SageMakerTestServer,
    tuning_job_name: str,
    index: int,
    status: str = "Completed",
    minutes: int = 10,
    **fields: Any,
) -> StoredTrainingJob:
    start = BASE + timedelta(minutes=index, seconds=30)
    return add_training(
        sagemaker,
        tuning_job_name,
        index,
        status,
        started=start,
        ended=start + timedelta(minutes=minutes, seconds=index),
        **fields,
    )


def seed_every_case(
    sagemaker: SageMakerTestServer,
) -> dict[str, tuple[list[StoredTrainingJob], dict[str, tuple[str, int]], str]]:
    """Tuning jobs covering every case; for each, its training jobs, instances and objective type."""
    cases: dict[str, tuple[list[StoredTrainingJob], dict[str, tuple[str, int]], str]] = {}
    # One definition, two instances each; every reason category, an unknown text and none;
    # a training job that never started; hyperparameters whose names need sanitising.
    add_tuning_job(sagemaker, "single", definition=resources("ml.m5.xlarge", 2))
    single = [
        ended_training(
            sagemaker,
            "single",
            0,
            objective_value=0.71,
            tuned_hyperparameters={"eta": "0.1", "max-depth": "6"},
        ),
        ended_training(
            sagemaker,
            "single",
            1,
            objective_value=0.93,
            tuned_hyperparameters={"eta": "0.3", "max-depth": "4"},
        ),
        ended_training(
            sagemaker,
            "single",
            2,
            objective_value=0.88,
            tuned_hyperparameters={"eta": "0.2", "max-depth": "8"},
        ),
        ended_training(
            sagemaker,
            "single",
            3,
            objective_value=0.93,
            tuned_hyperparameters={"eta": "0.4", "max-depth": "5"},
        ),
        add_training(
            sagemaker,
            "single",
            4,
            "Failed",
            failure_reason="ClientError: Data download failed: no such key",
        ),
    ]
    for offset, reason in enumerate(
        [
            "AlgorithmError: ExecuteUserScriptError: exit status 1",
            "CapacityError: Unable to provision requested ML compute capacity.",
            "InternalServerError: We encountered an internal error. Please try again.",
            "ResourceLimitExceeded: The account-level service limit 'ml.p3.2xlarge for training job usage' is 2 Instances",
            "OutOfMemoryError: the container ran out of memory",
            None,
            "CapacityError",
        ]
    ):
        single.append(
            ended_training(
                sagemaker, "single", 5 + offset, "Failed", minutes=1, failure_reason=reason
            )
        )
    single.append(ended_training(sagemaker, "single", 12, "Stopped", minutes=2))
    cases["single"] = (single, {"": ("ml.m5.xlarge", 2)}, "Maximize")
    # Two named definitions, minimized: instance time by each definition's type and count.
    add_tuning_job(
        sagemaker,
        "several",
        definitions=[
            {"DefinitionName": "gpu", **resources("ml.p3.2xlarge", 1)},
            {"DefinitionName": "cpu", **resources("ml.c5.xlarge", 3)},
        ],
    )
    sagemaker.describe_as(REGION, "several", {}, account=ACCOUNT)
    several = [
        ended_training(
            sagemaker,
            "several",
            i,
            definition_name=("gpu" if i % 2 else "cpu"),
            objective_value=10.0 - i,
            objective_type="Minimize",
            tuned_hyperparameters={"lr": str(i)},
        )
        for i in range(6)
    ]
    cases["several"] = (
        several,
        {"gpu": ("ml.p3.2xlarge", 1), "cpu": ("ml.c5.xlarge", 3)},
        "Minimize",
    )
    # SageMaker chooses the instance type: unknown.
    add_tuning_job(
        sagemaker,
        "chosen",
        definition={
            "HyperParameterTuningResourceConfig": {
                "InstanceConfigs": [
                    {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
                    {"InstanceType": "ml.c5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
                ],
                "AllocationStrategy": "Prioritized",
            }
        },
    )
    chosen = [ended_training(sagemaker, "chosen", i, objective_value=float(i)) for i in range(3)]
    cases["chosen"] = (chosen, {"": ("unknown", 1)}, "Maximize")
    return cases


# --- over HTTP ------------------------------------------------------------------------------


def refresh_and_scrape(running: RunningExporter) -> str:
    """Refresh every target now (whatever cache.ttl says), then scrape what it found."""
    running.exporter.cache.refresh_all(timeout=60)
    return running.scrape()


def test_every_sample_of_the_four_families_equals_the_truth(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,  # noqa: F811
) -> None:
    cases = seed_every_case(sagemaker)
    # Objective types as the tuning jobs say: moto's are Maximize unless changed.
    several = sagemaker_job(sagemaker, "several")
    several.hyper_parameter_tuning_job_config["HyperParameterTuningJobObjective"]["Type"] = (
        "Minimize"
    )
    running = start_exporter(config_for(make_config, leaderboard=3), FakeClock())

    text = running.refreshed_scrape()

    want: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for name, (jobs, instances, objective_type) in cases.items():
        want.update(expected(name, "Completed", jobs, instances, 3, objective_type=objective_type))
    assert family_samples(text) == want
    reasons = {dict(labels)["reason"] for name, labels in want if name == FAILED}
    assert reasons == {*CATEGORIES, "Other"}


def sagemaker_job(sagemaker: SageMakerTestServer, name: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[ACCOUNT][REGION].hyper_parameter_tuning_jobs[name]


def test_without_a_leaderboard_only_failures_and_instance_time_are_published(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,  # noqa: F811
) -> None:
    cases = seed_every_case(sagemaker)
    running = start_exporter(config_for(make_config), FakeClock())

    text = running.refreshed_scrape()

    jobs, instances, _ = cases["single"]
    want = expected("single", "Completed", jobs, instances, leaderboard=0)
    assert {
        k: v for k, v in family_samples(text).items() if dict(k[1])["job_name"] == "single"
    } == want
    assert f"# TYPE {TOP_VALUE} gauge" not in text and TOP_INFO not in text


def test_a_running_tuning_job_follows_new_and_finished_training_jobs_at_one_request_per_ttl(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,  # noqa: F811
) -> None:
    add_tuning_job(sagemaker, "live", status="InProgress", definition=resources("ml.g5.xlarge", 1))
    stored = {i: ended_training(sagemaker, "live", i, objective_value=i / 1000) for i in range(240)}
    stored[240] = add_training(
        sagemaker, "live", 240, "InProgress", started=BASE + timedelta(hours=5)
    )
    stored[241] = add_training(
        sagemaker, "live", 241, "InProgress", started=BASE + timedelta(hours=5)
    )
    clock = FakeClock()
    running = start_exporter(config_for(make_config, leaderboard=2), clock)

    running.refreshed_scrape()
    first_read = sagemaker.received(REGION, TRAINING_JOBS_OPERATION)
    assert first_read == 3  # 242 training jobs, 100 a page

    # One of the two running training jobs finishes and fails, two new ones start, one of
    # them already done; the other running one is still running.
    stored[240] = sagemaker.update_training_job(
        REGION,
        "live-240",
        account=ACCOUNT,
        status="Failed",
        ended=BASE + timedelta(hours=5, minutes=7),
        failure_reason="CapacityError: none left",
    )
    stored[242] = ended_training(sagemaker, "live", 242, objective_value=0.999)
    stored[243] = add_training(
        sagemaker, "live", 243, "InProgress", started=BASE + timedelta(hours=6)
    )
    running.exporter.cache.refresh_all(timeout=60)  # within the TTL: nothing read
    assert sagemaker.received(REGION, TRAINING_JOBS_OPERATION) == first_read
    clock.advance(TTL)
    text = refresh_and_scrape(running)

    want = expected("live", "InProgress", stored.values(), {"": ("ml.g5.xlarge", 1)}, 2)
    assert family_samples(text) == want
    # The walk went no deeper than the oldest training job still running: one page.
    assert sagemaker.received(REGION, TRAINING_JOBS_OPERATION) == first_read + 1
    for _ in range(3):
        clock.advance(TTL)
        running.exporter.cache.refresh_all(timeout=60)
    assert sagemaker.received(REGION, TRAINING_JOBS_OPERATION) == first_read + 4


def test_an_ended_tuning_job_is_read_once_and_never_again(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,  # noqa: F811
) -> None:
    add_tuning_job(sagemaker, "done", definition=resources("ml.m5.large", 1))
    stored = [ended_training(sagemaker, "done", i) for i in range(150)]
    clock = FakeClock()
    running = start_exporter(config_for(make_config), clock)

    running.refreshed_scrape()
    for _ in range(3):
        clock.advance(10 * TTL)
        text = refresh_and_scrape(running)

    assert sagemaker.received(REGION, TRAINING_JOBS_OPERATION) == 2  # ceil(150 / 100), once
    assert family_samples(text) == expected(
        "done", "Completed", stored, {"": ("ml.m5.large", 1)}, 0
    )


def test_a_first_start_spreads_over_refreshes_within_the_budget_and_counts_each_job_once(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,  # noqa: F811
) -> None:
    truth: dict[str, list[StoredTrainingJob]] = {}
    for number in range(3):
        name = f"backlog-{number}"
        add_tuning_job(
            sagemaker,
            name,
            definition=resources("ml.m5.large", 1),
            ended=BASE + timedelta(days=number),
        )
        truth[name] = [
            ended_training(
                sagemaker,
                name,
                i,
                "Failed" if i % 7 == 0 else "Completed",
                failure_reason="AlgorithmError: boom",
            )
            for i in range(250)
        ]
    running = start_exporter(config_for(make_config, max_requests_per_refresh=2), FakeClock())

    sent = []
    for _ in range(5):
        running.exporter.cache.refresh_all(timeout=60)
        sent.append(sagemaker.received(REGION, TRAINING_JOBS_OPERATION))
    text = running.scrape()

    # 3 pages each, 9 in all, 2 a refresh; cut reads go on from their next page.
    assert sent == [2, 4, 6, 8, 9]
    want: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for name, jobs in truth.items():
        want.update(expected(name, "Completed", jobs, {"": ("ml.m5.large", 1)}, 0))
    assert family_samples(text) == want


def test_a_denied_call_keeps_the_target_up_and_the_last_figures_and_is_logged_once(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    add_tuning_job(
        sagemaker, "watched", status="InProgress", definition=resources("ml.m5.large", 1)
    )
    stored = [
        ended_training(sagemaker, "watched", i, "Failed", failure_reason="CapacityError: x")
        for i in range(3)
    ]
    clock = FakeClock()
    running = start_exporter(config_for(make_config), clock)
    before = family_samples(running.refreshed_scrape())
    assert before == expected("watched", "InProgress", stored, {"": ("ml.m5.large", 1)}, 0)

    sagemaker.add_fault(
        FaultRule(region=REGION, kind="access_denied_action", operation=TRAINING_JOBS_OPERATION)
    )
    for _ in range(3):
        clock.advance(TTL)
        text = refresh_and_scrape(running)

    assert 'sagemaker_tuning_exporter_up{account="' in text
    assert re.search(r'sagemaker_tuning_exporter_up\{[^}]*region="eu-west-1"[^}]*\} 1\.0', text)
    assert "sagemaker_tuning_job_training_jobs{" in text
    assert family_samples(text) == before
    assert re.search(
        r'sagemaker_tuning_exporter_api_errors_total\{[^}]*operation="ListTrainingJobsForHyperParameterTuningJob"[^}]*\} 3\.0',
        text,
    ), [line for line in text.splitlines() if "errors_total" in line]
    assert caplog.text.count("reading training jobs is denied") == 1


# --- the model ------------------------------------------------------------------------------


def test_failure_reasons_fall_into_their_category_or_other() -> None:
    assert [
        failure_reason_category(text)
        for text in (
            "AlgorithmError: ExecuteUserScriptError:",
            "ClientError: Please use an instance type with more memory",
            "CapacityError: Unable to provision",
            "InternalServerError: We encountered",
            "ResourceLimitExceeded",
            "  CapacityError : spaced",
            "capacityerror: lower case",
            "Capacity: other",
            "",
            None,
            "ClientErrorX: y",
        )
    ] == [
        "AlgorithmError",
        "ClientError",
        "CapacityError",
        "InternalServerError",
        "ResourceLimitExceeded",
        "CapacityError",
        "Other",
        "Other",
        "Other",
        "Other",
        "Other",
    ]


SUMMARIES = st.lists(
    st.builds(
        TrainingJobSummary,
        name=st.text("abcdef", min_size=1, max_size=3),
        status=st.sampled_from(["InProgress", "Completed", "Failed", "Stopped", "Stopping"]),
        created=st.integers(0, 5).map(float),
        started=st.just(0.0),
        ended=st.just(1.0),
        failure_reason=st.just("ClientError: x"),
    ),
    max_size=12,
    unique_by=lambda summary: summary.name,
)


@given(
    SUMMARIES,
    st.lists(st.tuples(st.integers(0, 11), st.sampled_from(["Completed", "Failed"])), max_size=6),
    SUMMARIES,
)
def test_reading_again_counts_every_ended_training_job_exactly_once(
    first: list[TrainingJobSummary],
    endings: list[tuple[int, str]],
    new: list[TrainingJobSummary],
) -> None:
    """Whatever ends or appears between two reads, the two reads count each ended job once."""
    progress, counted = advance(ReadProgress(), first)
    tally = Tally().add(counted, leaderboard=0)
    now = {summary.name: summary for summary in first}
    for index, status in endings:
        if index < len(first) and not first[index].has_ended:
            now[first[index].name] = replace(first[index], status=status)
    for summary in new:
        if summary.name not in now:
            now[summary.name] = replace(
                summary, created=(summary.created or 0.0) + 6
            )  # created later
    progress, counted = advance(progress, list(now.values()))
    tally = tally.add(counted, leaderboard=0)

    ended = [summary for summary in now.values() if summary.has_ended]
    assert sum(tally.seconds_by_definition.values()) == len(ended)
    assert sum(tally.failed_by_reason.values()) == sum(s.status == "Failed" for s in ended)
    assert set(progress.unended) == {s.name for s in now.values() if not s.has_ended}


def test_running_tuning_jobs_are_read_first_then_ended_ones_newest_first() -> None:
    jobs = [
        tuning_job("old", status="Completed", end_time=100.0),
        tuning_job("new", status="Failed", end_time=900.0),
        tuning_job("run", status="InProgress"),
        tuning_job("gone", status="Deleting"),
    ]

    assert [job.name for job in tuning_jobs_to_read(jobs, {}, now=1000.0, ttl_seconds=TTL)] == [
        "run",
        "new",
        "old",
    ]


def test_throttling_past_its_retries_keeps_the_figures_and_the_next_refresh_reads_again(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    start_exporter: StartExporter,  # noqa: F811
) -> None:
    add_tuning_job(sagemaker, "busy", status="InProgress", definition=resources("ml.m5.large", 1))
    stored = {i: ended_training(sagemaker, "busy", i) for i in range(3)}
    clock = FakeClock()
    running = start_exporter(config_for(make_config), clock)
    before = family_samples(running.refreshed_scrape())

    stored[3] = ended_training(
        sagemaker, "busy", 3, "Failed", failure_reason="InternalServerError: x"
    )
    sagemaker.add_fault(
        FaultRule(region=REGION, kind="throttle", operation=TRAINING_JOBS_OPERATION)
    )
    clock.advance(TTL)
    throttled = refresh_and_scrape(running)
    sagemaker.clear_faults()
    clock.advance(TTL)
    after = refresh_and_scrape(running)

    assert re.search(
        r'sagemaker_tuning_exporter_up\{[^}]*region="eu-west-1"[^}]*\} 1\.0', throttled
    )
    assert family_samples(throttled) == before
    assert family_samples(after) == expected(
        "busy", "InProgress", stored.values(), {"": ("ml.m5.large", 1)}, 0
    )


def test_a_training_job_seen_twice_by_a_resumed_read_counts_once() -> None:
    # Page tokens that count offsets: training jobs created while a read was paused push the
    # older ones down, and the next page repeats the last ones of the page before.
    first_page = [
        TrainingJobSummary("t-3", "Failed", 3.0, started=0.0, ended=1.0),
        TrainingJobSummary("t-2", "Completed", 2.0, started=0.0, ended=1.0),
    ]
    second_page = [
        TrainingJobSummary("t-2", "Completed", 2.0, started=0.0, ended=1.0),
        TrainingJobSummary("t-1", "Completed", 1.0, started=0.0, ended=1.0),
    ]

    progress, counted = advance(ReadProgress(), [*first_page, *second_page])

    assert [summary.name for summary in counted] == ["t-3", "t-2", "t-1"]
    assert progress.newest == 3.0
