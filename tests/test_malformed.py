"""Malformed or unexpected ListHyperParameterTuningJobs answers, at the wire and generated.

The wire tests rewrite moto's answers in the test server's middleware and scrape the exporter
over HTTP. The generated tests feed hypothesis' summaries through parsing, snapshots,
collectors and the cached renderer, and have prometheus_client's parsers and promtool read
every exposition.
"""

from __future__ import annotations

import functools
import gzip
import json
import subprocess
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.model import Shape
from botocore.parsers import ResponseParser, ResponseParserFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import (
    generate_latest as openmetrics_generate_latest,
)
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.aws.clients import SageMakerClients
from exporter.aws.counting import RequestCounter
from exporter.aws.hooks import lenient_timestamp, repair_listing_shapes
from exporter.aws.operations import LIST_OPERATION
from exporter.config.settings import AwsSettings, ExporterConfig, JobFilters
from exporter.metrics.collectors import ExporterHealthCollector, JobCountCollector, PerJobCollector
from exporter.metrics.exposition import MetricsPage
from exporter.metrics.families import JOB_FAMILIES
from exporter.model.jobs import RegionSnapshot, Target
from exporter.model.statuses import OBJECTIVE_STATUSES, TRAINING_JOB_STATUSES
from exporter.model.summaries import SummaryProblems, parse_job_summary
from exporter.refresh.listing import list_changes, list_full
from exporter.refresh.retention import select_published_jobs
from tests.conftest import RunningExporter
from tests.expected import expected_samples_from_api, samples, value, without_process_metrics
from tests.prometheus import require_binary
from tests.sagemaker_server import FaultRule, SageMakerTestServer, for_job
from tests.test_summaries import DETERMINISTIC, ODD_TEXT

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

StartExporter = Callable[[ExporterConfig], RunningExporter]
REGION = "eu-west-1"
OTHER_REGION = "us-east-1"
HUGE_NAME = "x" * 10_000 + '"quote\\backslash\nnewline\x00nul\ud800surrogate名'
HUGE_NAME_AS_PUBLISHED = HUGE_NAME.replace("\ud800", "\ufffd")
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
JOB_ARN = "arn:aws:sagemaker:eu-west-1:111111111111:hyper-parameter-tuning-job/generated"
NOW = 1_795_000_000.0


def without(*keys: str) -> Callable[[dict[str, Any]], Any]:
    return lambda summary: {k: v for k, v in summary.items() if k not in keys}


def with_fields(**fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda summary: {**summary, **fields}


def with_counters(member: str, **counts: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda summary: {**summary, member: {**summary[member], **counts}}


MALFORMED = {
    "no-name": without("HyperParameterTuningJobName"),
    "not-an-object": lambda _summary: "not-an-object",
    "no-arn-or-creation-time": without("HyperParameterTuningJobArn", "CreationTime"),
    "null-and-text-counters": with_counters(
        "ObjectiveStatusCounters", Succeeded="many", Pending=None
    ),
    "garbage-times": with_fields(LastModifiedTime="soon", HyperParameterTuningEndTime={"a": 1}),
    "bad-shapes": with_fields(TrainingJobStatusCounters="lots", ResourceLimits=[1]),
    "new-status": with_fields(HyperParameterTuningJobStatus="Pausing", Strategy="Evolutionary"),
    "huge": with_fields(HyperParameterTuningJobName=HUGE_NAME),
}


def rewrite_malformed(summary: dict[str, Any]) -> Any:
    for name, change in MALFORMED.items():
        summary = for_job(name, change)(summary)
        if not isinstance(summary, dict):
            break
    return summary


def seed(sagemaker: SageMakerTestServer) -> None:
    ended = datetime.now(tz=UTC).replace(tzinfo=None) - timedelta(hours=1)
    for region in (REGION, OTHER_REGION):
        for name in ("healthy-1", "healthy-2"):
            sagemaker.add_job(
                region,
                name,
                status="Completed",
                training={"Completed": 5, "Stopped": 1},
                objective={"Succeeded": 5, "Failed": 1},
                ended=ended,
            )
    for name in MALFORMED:
        sagemaker.add_job(
            REGION,
            name,
            status="InProgress",
            training={"Completed": 2, "InProgress": 1},
            objective={"Succeeded": 2, "Pending": 1, "Failed": 0},
            limits={"MaxNumberOfTrainingJobs": 9},
        )


def test_malformed_summaries_leave_other_jobs_intact_and_are_counted(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    seed(sagemaker)
    regions = (REGION, OTHER_REGION)
    healthy = {
        key: number
        for key, number in expected_samples_from_api(sagemaker.url, regions).items()
        if dict(key[1])["job_name"].startswith("healthy-")
    }
    sagemaker.add_fault(
        FaultRule(REGION, "rewrite", operation=LIST_OPERATION, rewrite_summary=rewrite_malformed)
    )
    exporter = run_exporter(make_config(regions=regions))

    text = exporter.scrape()
    scraped = samples(text)

    assert value(text, "sagemaker_tuning_exporter_up", region=REGION) == 1
    # 2 + 2 counters, 2 limits, 3 timestamps, and 5 samples of the job's description
    assert len(healthy) == 4 * 14
    assert {key: scraped.get(key) for key in healthy} == healthy
    published = {
        dict(labels)["job_name"]
        for name, labels in scraped
        if name.startswith("sagemaker_tuning_job_")
    }
    assert published == {
        "healthy-1",
        "healthy-2",
        "no-arn-or-creation-time",
        "null-and-text-counters",
        "garbage-times",
        "bad-shapes",
        "new-status",
        HUGE_NAME_AS_PUBLISHED,
    }

    def job_value(name: str, job_name: str, **labels: str) -> float | None:
        return value(text, name, region=REGION, job_name=job_name, **labels)

    # The job without an ARN keeps the account learnt from the others, and no creation time.
    assert job_value("sagemaker_tuning_job_max_training_jobs", "no-arn-or-creation-time") == 9
    assert (
        job_value("sagemaker_tuning_job_max_training_jobs", "no-arn-or-creation-time", account="")
        is None
    )
    assert (
        job_value("sagemaker_tuning_job_creation_timestamp_seconds", "no-arn-or-creation-time")
        is None
    )
    # Unusable counters are left out; their siblings stay.
    objective = "sagemaker_tuning_job_objective_evaluations"
    assert job_value(objective, "null-and-text-counters", objective_status="Succeeded") is None
    assert job_value(objective, "null-and-text-counters", objective_status="Pending") is None
    assert job_value(objective, "null-and-text-counters", objective_status="Failed") == 0
    assert (
        job_value("sagemaker_tuning_job_last_modified_timestamp_seconds", "garbage-times") is None
    )
    assert job_value("sagemaker_tuning_job_creation_timestamp_seconds", "garbage-times")
    assert job_value("sagemaker_tuning_job_max_training_jobs", "bad-shapes") is None
    assert job_value(objective, "bad-shapes", objective_status="Succeeded") == 2
    # A status and strategy nobody declared go through raw, per job and in the counts.
    assert (
        job_value(
            "sagemaker_tuning_job_training_jobs",
            "new-status",
            status="Pausing",
            strategy="Evolutionary",
            training_job_status="Completed",
        )
        == 2
    )
    assert (
        value(
            text, "sagemaker_tuning_jobs", region=REGION, status="Pausing", strategy="Evolutionary"
        )
        == 1
    )
    assert job_value("sagemaker_tuning_job_max_training_jobs", HUGE_NAME_AS_PUBLISHED) == 9

    skipped = "sagemaker_tuning_exporter_skipped_job_summaries_total"
    assert value(text, skipped, region=REGION, reason="missing_name") == 2
    assert value(text, skipped, region=REGION, reason="invalid_name") == 0
    assert value(text, skipped, region=OTHER_REGION, reason="missing_name") == 0
    invalid = "sagemaker_tuning_exporter_invalid_job_fields_total"
    # A null counter reaches nobody: botocore drops nulls, so it reads as a counter not sent.
    assert {
        field: value(text, invalid, region=REGION, field=field)
        for field in (
            "HyperParameterTuningJobArn",
            "CreationTime",
            "LastModifiedTime",
            "HyperParameterTuningEndTime",
            "TrainingJobStatusCounters",
            "ObjectiveStatusCounters",
            "ResourceLimits",
            "Strategy",
        )
    } == {
        "HyperParameterTuningJobArn": 1,
        "CreationTime": 1,
        "LastModifiedTime": 1,
        "HyperParameterTuningEndTime": 1,
        "TrainingJobStatusCounters": 1,
        "ObjectiveStatusCounters": 1,
        "ResourceLimits": 1,
        "Strategy": 0,
    }


def test_problem_counters_rise_with_each_listing_and_survive_a_failed_refresh(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    seed(sagemaker)
    sagemaker.add_fault(
        FaultRule(REGION, "rewrite", operation=LIST_OPERATION, rewrite_summary=rewrite_malformed)
    )
    # One attempt, so that the failed refresh fails without retries' backoff.
    aws = AwsSettings(endpoint_url=sagemaker.url, max_attempts=1)
    exporter = run_exporter(make_config(regions=(REGION,), aws=aws))
    skipped = "sagemaker_tuning_exporter_skipped_job_summaries_total"
    invalid = "sagemaker_tuning_exporter_invalid_job_fields_total"

    def counts() -> tuple[float | None, float | None]:
        text = exporter.scrape()
        return (
            value(text, skipped, reason="missing_name"),
            value(text, invalid, field="CreationTime"),
        )

    first = counts()
    exporter.exporter.cache.refresh_all(timeout=30)
    second = counts()
    sagemaker.clear_faults()
    sagemaker.add_fault(FaultRule(REGION, "server_error"))
    exporter.exporter.cache.refresh_all(timeout=30)
    after_failure = counts()
    up = value(exporter.scrape(), "sagemaker_tuning_exporter_up")

    assert first == (2, 1)
    # The malformed jobs are running, so the incremental listing returns them again.
    assert second[0] is not None and second[0] > 2
    assert second[1] is not None and second[1] > 1
    assert (up, after_failure) == (0, second)


def test_malformed_summaries_give_valid_exposition_in_every_format(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    seed(sagemaker)
    sagemaker.add_fault(
        FaultRule(REGION, "rewrite", operation=LIST_OPERATION, rewrite_summary=rewrite_malformed)
    )
    exporter = run_exporter(make_config(regions=(REGION,)))

    _, _, plain = exporter.get("/metrics")
    _, _, plain_gzip = exporter.get("/metrics", {"Accept-Encoding": "gzip"})
    _, _, openmetrics = exporter.get("/metrics", {"Accept": OPENMETRICS})
    _, _, openmetrics_gzip = exporter.get(
        "/metrics", {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"}
    )

    assert without_process_metrics(gzip.decompress(plain_gzip)) == without_process_metrics(plain)
    assert without_process_metrics(gzip.decompress(openmetrics_gzip)) == without_process_metrics(
        openmetrics
    )
    text_names = {
        sample.labels.get("job_name")
        for family in text_string_to_metric_families(plain.decode())
        for sample in family.samples
    }
    openmetrics_names = {
        sample.labels.get("job_name")
        for family in openmetrics_families(openmetrics.decode())  # type: ignore[no-untyped-call]
        for sample in family.samples
    }
    assert HUGE_NAME_AS_PUBLISHED in text_names
    assert text_names == openmetrics_names
    checked = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=plain,
        capture_output=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr.decode()


def _client(sagemaker: SageMakerTestServer) -> SageMakerClient:
    aws = AwsSettings(endpoint_url=sagemaker.url, max_attempts=1)
    return SageMakerClients(aws, RequestCounter()).get(Target(region=REGION))


def test_a_job_in_an_unknown_status_is_kept_as_listed_until_a_full_listing(
    sagemaker: SageMakerTestServer,
) -> None:
    start = datetime.now(tz=UTC).replace(tzinfo=None, microsecond=0)
    # Older than the 100 jobs above it: only a walk meant to reach it lists it.
    job = sagemaker.add_job(
        REGION, "moving", status="InProgress", created=start - timedelta(days=1)
    )
    for index in range(100):
        created = start - timedelta(minutes=index)
        sagemaker.add_job(REGION, f"newer-{index:03d}", created=created)
    client = _client(sagemaker)
    now = start.replace(tzinfo=UTC).timestamp()
    first = list_full(client, JobFilters(), now)

    # It was running, so the next walk goes down to it and finds it Pausing.
    job.hyper_parameter_tuning_job_status = "Pausing"
    relisted = list_changes(client, JobFilters(), now + 60, first)
    # Pausing is no active state this exporter knows: treated as terminal, it is not reached.
    before = sagemaker.received(REGION, LIST_OPERATION)
    steady = list_changes(client, JobFilters(), now + 120, relisted)
    steady_requests = sagemaker.received(REGION, LIST_OPERATION) - before
    # Its next change shows at the next full listing.
    job.hyper_parameter_tuning_job_status = "Completed"
    job.last_modified_time = start + timedelta(minutes=3)
    finished = list_changes(client, JobFilters(), now + 180, steady)
    resynced = list_full(client, JobFilters(), now + 240)

    assert [
        (j.name, j.status, listing.full)
        for listing in (relisted, steady, finished, resynced)
        for j in listing.jobs
        if j.name == "moving"
    ] == [
        ("moving", "Pausing", False),
        ("moving", "Pausing", False),
        ("moving", "Pausing", False),
        ("moving", "Completed", True),
    ]
    assert steady_requests == 1


# Values as JSON carries them, for summaries that go through botocore as the wire's would.
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(),  # NaN and Infinity included: Python's json reads and writes them
    ODD_TEXT,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
JSON_TIMESTAMPS = st.one_of(
    st.floats(min_value=NOW - 30 * 86400, max_value=NOW),
    st.floats(min_value=0, max_value=4_000_000_000),
    st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
    JSON_VALUES,
)


def json_counters(keys: tuple[str, ...]) -> st.SearchStrategy[object]:
    """Mostly objects of counts, so that most jobs have samples to render."""
    counts = st.one_of(st.integers(min_value=-3, max_value=10**13), JSON_VALUES)
    return st.one_of(st.dictionaries(st.sampled_from(keys), counts, min_size=1), JSON_VALUES)


WIRE_SUMMARIES = st.one_of(
    st.fixed_dictionaries(
        {"HyperParameterTuningJobName": st.one_of(ODD_TEXT.filter(bool), st.just(HUGE_NAME))},
        optional={
            "HyperParameterTuningJobArn": st.one_of(st.just(JOB_ARN), JSON_VALUES),
            "HyperParameterTuningJobStatus": st.one_of(
                st.sampled_from(["Completed", "InProgress", "Pausing"]), JSON_VALUES
            ),
            "Strategy": st.one_of(st.sampled_from(["Bayesian", "Evolutionary"]), JSON_VALUES),
            "CreationTime": JSON_TIMESTAMPS,
            "LastModifiedTime": JSON_TIMESTAMPS,
            "HyperParameterTuningEndTime": JSON_TIMESTAMPS,
            "TrainingJobStatusCounters": json_counters(TRAINING_JOB_STATUSES),
            "ObjectiveStatusCounters": json_counters(OBJECTIVE_STATUSES),
            "ResourceLimits": json_counters(
                ("MaxNumberOfTrainingJobs", "MaxParallelTrainingJobs", "MaxRuntimeInSeconds")
            ),
        },
    ),
    JSON_VALUES,
)


@functools.cache
def listing_parser() -> tuple[ResponseParser, Shape]:
    """botocore's parser of SageMaker's answers as the exporter sets it up, and a page's shape."""
    service = botocore.session.get_session().get_service_model("sagemaker")
    factory = ResponseParserFactory()
    factory.set_parser_defaults(timestamp_parser=lenient_timestamp)
    shape = service.operation_model(LIST_OPERATION).output_shape
    assert shape is not None
    return factory.create_parser(service.protocol), shape


def parse_page_as_botocore_would(summaries: list[object]) -> list[object]:
    """The summaries of a listing page sent as JSON, parsed by botocore with the exporter's hooks."""
    parser, shape = listing_parser()
    response = {
        "body": json.dumps({"HyperParameterTuningJobSummaries": summaries}).encode(),
        "headers": {},
        "status_code": 200,
    }
    repair_listing_shapes(response_dict=response)
    parsed = parser.parse(response, shape)
    return list(parsed["HyperParameterTuningJobSummaries"])


def snapshot_of(target: Target, summaries: list[object]) -> RegionSnapshot:
    """What a refresh of ``target`` makes of a listing that returned ``summaries``."""
    parsed = [parse_job_summary(summary) for summary in summaries]
    jobs = {p.job.name: p.job for p in parsed if p.job is not None}  # the listing keys by name
    listed = tuple(sorted(jobs.values(), key=lambda job: job.name))
    published = select_published_jobs(listed, NOW, retention_seconds=0, max_jobs=6)
    problems = SummaryProblems.of(p for p in parsed if p.skip_reason or p.invalid_fields)
    return RegionSnapshot(
        target,
        next((job.account for job in listed if job.account), ""),
        listed,
        True,
        NOW,
        0.25,
        published=published.jobs,
        hidden_by_retention=published.hidden_by_retention,
        hidden_by_limit=published.hidden_by_limit,
        skipped_summaries=problems.skipped,
        invalid_fields=problems.invalid_fields,
    )


class Exposition:
    """The /metrics page of some snapshots, and the registry prometheus_client renders it from."""

    def __init__(self, snapshots: list[RegionSnapshot]) -> None:
        requests = RequestCounter()
        counts = JobCountCollector(lambda: snapshots)
        health = ExporterHealthCollector(lambda: snapshots, requests)
        self.full = CollectorRegistry()
        summary = CollectorRegistry()
        for collector in (PerJobCollector(lambda: snapshots), counts, health):
            self.full.register(collector)
        for collector in (counts, health):
            summary.register(collector)
        self.page = MetricsPage(lambda: list(snapshots), requests, summary, self.full)

    def body(self, accept: str | None = None, accept_gzip: bool = False) -> bytes:
        response = self.page.render(accept, accept_gzip)
        body = b"".join(response.chunks)
        return gzip.decompress(body) if response.gzipped else body


def job_names_in(families: Iterable[Any]) -> set[str]:
    return {
        sample.labels["job_name"]
        for family in families
        for sample in family.samples
        if "job_name" in sample.labels
    }


GENERATED_LISTINGS = 150
PROMTOOL_BATCH = 50


def test_generated_listings_render_exposition_that_parsers_and_promtool_accept() -> None:
    promtool = require_binary("promtool")
    generated: list[RegionSnapshot] = []

    @settings(DETERMINISTIC, max_examples=GENERATED_LISTINGS)
    @given(st.lists(WIRE_SUMMARIES, max_size=8))
    def render_and_parse(summaries: list[object]) -> None:
        target = Target(region=f"generated-{len(generated)}")
        snapshot = snapshot_of(target, parse_page_as_botocore_would(summaries))
        exposition = Exposition([snapshot])

        text = exposition.body()
        openmetrics = exposition.body(OPENMETRICS)
        assert exposition.body(accept_gzip=True) == text
        assert exposition.body(OPENMETRICS, accept_gzip=True) == openmetrics
        # The cached renderer stays byte for byte what prometheus_client renders.
        assert text == generate_latest(exposition.full)
        assert openmetrics == openmetrics_generate_latest(exposition.full)  # type: ignore[no-untyped-call]
        expected_names = {
            job.name
            for job in snapshot.published
            if any(list(family.samples(snapshot, job)) for family in JOB_FAMILIES)
        }
        assert job_names_in(text_string_to_metric_families(text.decode())) == expected_names
        assert (
            job_names_in(openmetrics_families(openmetrics.decode()))  # type: ignore[no-untyped-call]
            == expected_names
        )
        generated.append(snapshot)

    render_and_parse()

    # promtool reads one exposition per run: many generated listings, as targets, in each.
    batches = [
        generated[start : start + PROMTOOL_BATCH]
        for start in range(0, len(generated), PROMTOOL_BATCH)
    ]
    assert len(batches) >= 3
    for batch in batches:
        body = Exposition(batch).body()
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=body, capture_output=True, check=False
        )
        assert checked.returncode == 0, checked.stderr.decode()[:2000]
