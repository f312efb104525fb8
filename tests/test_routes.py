"""The exporter over real HTTP against moto's SageMaker server: values, caching, faults, endpoints."""

from __future__ import annotations

import gc
import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from exporter.config.settings import AccountSettings, ExporterConfig, PerJobMetricsSettings
from exporter.web.routes import scrape_deadline
from tests.conftest import RunningExporter
from tests.expected import (
    STATUSES,
    STRATEGIES,
    expected_samples_from_api,
    samples,
    seed_varied_jobs,
    value,
    without_process_metrics,
)
from tests.sagemaker_server import FaultRule, SageMakerTestServer

StartExporter = Callable[[ExporterConfig], RunningExporter]


def test_every_published_job_sample_equals_what_the_api_returns(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    regions = ("us-east-1", "eu-west-1")
    seed_varied_jobs(sagemaker, 40, regions)
    exporter = run_exporter(make_config(regions=regions))

    published = {
        key: number
        for key, number in samples(exporter.scrape()).items()
        if key[0].startswith("sagemaker_tuning_job_")
    }

    expected = expected_samples_from_api(sagemaker.url, regions)
    assert len({dict(labels)["job_name"] for _, labels in expected}) == 40
    assert published == expected


def test_job_counts_add_up_to_the_jobs_per_status_and_strategy(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    seed_varied_jobs(sagemaker, 28, ("eu-west-1",))
    exporter = run_exporter(make_config(regions=("eu-west-1",)))

    text = exporter.scrape()

    for index, status in enumerate(STATUSES):
        for strategy in STRATEGIES:
            jobs = sum(
                1
                for i in range(28)
                if i % len(STATUSES) == index and STRATEGIES[i % len(STRATEGIES)] == strategy
            )
            assert value(text, "sagemaker_tuning_jobs", status=status, strategy=strategy) == jobs


def test_scrapes_within_the_ttl_send_no_request_and_the_counter_matches_the_server(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    seed_varied_jobs(sagemaker, 230, ("us-east-1", "eu-west-1"))
    exporter = run_exporter(make_config())

    exporter.scrape()
    after_first = sagemaker.received()
    for _ in range(5):
        text = exporter.scrape()

    # 115 jobs per region: two pages each; the describes (within budget) come on top.
    assert sagemaker.received(operation="ListHyperParameterTuningJobs") == 4
    assert sagemaker.received() == after_first
    for region in ("us-east-1", "eu-west-1"):
        published = value(
            text,
            "sagemaker_tuning_exporter_api_requests_total",
            region=region,
            operation="ListHyperParameterTuningJobs",
        )
        assert published == sagemaker.received(region, "ListHyperParameterTuningJobs") == 2


def test_a_region_answering_500s_is_down_while_the_other_is_still_published(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    sagemaker.add_job("us-east-1", "healthy-job")
    sagemaker.add_job("eu-west-1", "unreachable-job")
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="server_error"))
    exporter = run_exporter(make_config())

    text = exporter.scrape()

    assert value(text, "sagemaker_tuning_exporter_up", region="eu-west-1") == 0
    assert value(text, "sagemaker_tuning_exporter_up", region="us-east-1") == 1
    assert (
        value(text, "sagemaker_tuning_job_creation_timestamp_seconds", job_name="healthy-job")
        is not None
    )
    assert (
        value(text, "sagemaker_tuning_job_creation_timestamp_seconds", job_name="unreachable-job")
        is None
    )
    assert value(text, "sagemaker_tuning_exporter_refresh_failures_total", region="eu-west-1") == 1
    # max_attempts: 3, each attempt billed and counted.
    assert sagemaker.received("eu-west-1", "ListHyperParameterTuningJobs") == 3
    assert (
        value(
            text,
            "sagemaker_tuning_exporter_api_requests_total",
            region="eu-west-1",
            operation="ListHyperParameterTuningJobs",
        )
        == 3
    )


def test_a_region_that_fails_later_keeps_its_last_good_jobs(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    sagemaker.add_job("eu-west-1", "kept-job")
    exporter = run_exporter(make_config(regions=("eu-west-1",)))
    first = exporter.scrape()
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="access_denied"))

    exporter.exporter.cache.refresh_all(timeout=30)
    second = exporter.scrape()

    assert value(second, "sagemaker_tuning_exporter_up", region="eu-west-1") == 0
    assert (
        value(second, "sagemaker_tuning_job_creation_timestamp_seconds", job_name="kept-job")
        is not None
    )
    success = "sagemaker_tuning_exporter_last_refresh_success_timestamp_seconds"
    assert value(second, success) == value(first, success)


def test_throttling_then_success_is_retried_within_one_refresh(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    sagemaker.add_job("eu-west-1", "job")
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="throttle", times=2))
    exporter = run_exporter(make_config(regions=("eu-west-1",)))

    text = exporter.scrape()

    assert value(text, "sagemaker_tuning_exporter_up", region="eu-west-1") == 1
    assert (
        value(
            text,
            "sagemaker_tuning_job_training_jobs",
            job_name="job",
            training_job_status="Completed",
        )
        == 1
    )
    requests = value(
        text,
        "sagemaker_tuning_exporter_api_requests_total",
        region="eu-west-1",
        operation="ListHyperParameterTuningJobs",
    )
    assert requests == 3


def test_access_denied_in_one_account_leaves_the_other_account_published(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    sagemaker.add_job("eu-west-1", "team-a-job", account="111111111111")
    sagemaker.add_job("eu-west-1", "team-b-job", account="222222222222")
    config = make_config(
        regions=("eu-west-1",),
        accounts=(
            AccountSettings("arn:aws:iam::111111111111:role/reader"),
            AccountSettings("arn:aws:iam::222222222222:role/reader", external_id="team-b"),
        ),
    )
    denied = FaultRule(
        region="eu-west-1",
        kind="access_denied",
        operation="AssumeRole",
        body_contains="111111111111",
    )
    sagemaker.add_fault(denied)
    exporter = run_exporter(config)

    text = exporter.scrape()

    assert value(text, "sagemaker_tuning_exporter_up", account="111111111111") == 0
    assert value(text, "sagemaker_tuning_exporter_up", account="222222222222") == 1
    published = {
        (dict(labels)["job_name"], dict(labels)["account"])
        for (name, labels), _ in samples(text).items()
        if name == "sagemaker_tuning_job_creation_timestamp_seconds"
    }
    assert published == {("team-b-job", "222222222222")}


def test_a_hanging_region_does_not_hold_the_scrape_past_its_deadline(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    sagemaker.add_job("us-east-1", "fast-job")
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="hang", hang_seconds=8, times=1))
    exporter = run_exporter(make_config())

    # A deadline of 3.5 s: time enough, on a loaded machine, for the fast region's first
    # refresh (its clients built, its job listed); far short of the 8 s hang. Late in the
    # suite this process holds millions of objects: collect them now, so that a full
    # collection, which stops every thread for seconds, does not fall in the timed scrape.
    gc.collect()
    started = time.monotonic()
    status, _, body = exporter.get("/metrics", {"X-Prometheus-Scrape-Timeout-Seconds": "4"})
    elapsed = time.monotonic() - started
    ready_status, _, _ = exporter.get("/-/ready")

    assert status == 200
    assert elapsed < 6.5
    assert ready_status == 503
    text = body.decode()
    assert (
        value(text, "sagemaker_tuning_job_creation_timestamp_seconds", job_name="fast-job")
        is not None
    )
    assert value(text, "sagemaker_tuning_exporter_up", region="eu-west-1") is None
    # The refresh went on in the background; a patient scrape joins it rather than repeating it.
    _, _, later = exporter.get("/metrics", {"X-Prometheus-Scrape-Timeout-Seconds": "10"})
    assert value(later.decode(), "sagemaker_tuning_exporter_up", region="eu-west-1") == 1
    assert sagemaker.received("eu-west-1", "ListHyperParameterTuningJobs") == 1


def test_concurrent_scrapes_of_a_stale_cache_cause_one_listing_per_region(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    sagemaker.add_job("us-east-1", "a")
    sagemaker.add_fault(FaultRule(region="us-east-1", kind="hang", hang_seconds=0.5, times=1))
    exporter = run_exporter(make_config(regions=("us-east-1",)))
    bodies: list[str] = []
    scrapers = [threading.Thread(target=lambda: bodies.append(exporter.scrape())) for _ in range(6)]

    for scraper in scrapers:
        scraper.start()
    for scraper in scrapers:
        scraper.join()

    assert sagemaker.received("us-east-1", "ListHyperParameterTuningJobs") == 1
    assert all('job_name="a"' in body for body in bodies)


def test_metrics_negotiate_openmetrics_and_gzip(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    sagemaker.add_job("eu-west-1", "job")
    exporter = run_exporter(make_config(regions=("eu-west-1",)))

    _, plain_headers, plain = exporter.get("/metrics")
    _, om_headers, om = exporter.get(
        "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    _, gz_headers, compressed = exporter.get("/metrics", {"Accept-Encoding": "gzip"})

    assert plain_headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert om_headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.decode().endswith("# EOF\n")
    assert "sagemaker_tuning_exporter_api_requests_total" in om.decode()
    assert gz_headers["Content-Encoding"] == "gzip"
    assert without_process_metrics(gzip.decompress(compressed)) == without_process_metrics(plain)


def test_old_finished_jobs_are_counted_but_get_no_per_job_series(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    now = datetime.now(tz=UTC).replace(tzinfo=None)
    sagemaker.add_job(
        "eu-west-1", "old", created=now - timedelta(days=20), ended=now - timedelta(days=19)
    )
    sagemaker.add_job(
        "eu-west-1", "recent", created=now - timedelta(days=2), ended=now - timedelta(days=1)
    )
    sagemaker.add_job("eu-west-1", "running", status="InProgress", created=now - timedelta(days=30))
    sagemaker.add_job("eu-west-1", "newest", created=now - timedelta(hours=1), ended=now)
    config = make_config(
        regions=("eu-west-1",),
        per_job_metrics=PerJobMetricsSettings(retention_seconds=7 * 86400, max_jobs=2),
    )
    exporter = run_exporter(config)

    text = exporter.scrape()

    published = {
        labels["job_name"]
        for (name, frozen), _ in samples(text).items()
        if name == "sagemaker_tuning_job_creation_timestamp_seconds"
        for labels in [dict(frozen)]
    }
    assert published == {"running", "newest"}
    assert value(text, "sagemaker_tuning_jobs", status="Completed", strategy="Bayesian") == 3
    assert value(text, "sagemaker_tuning_exporter_unpublished_jobs", reason="retention") == 1
    assert value(text, "sagemaker_tuning_exporter_unpublished_jobs", reason="limit") == 1


def test_landing_page_probes_and_unknown_paths(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    exporter = run_exporter(make_config(regions=("eu-west-1",)))

    landing = exporter.get("/")
    healthy = exporter.get("/-/healthy")
    not_ready = exporter.get("/-/ready")
    exporter.scrape()
    ready = exporter.get("/-/ready")
    missing = exporter.get("/nope")

    assert landing[0] == 200 and b'href="metrics"' in landing[2]
    assert landing[1]["Content-Type"] == "text/html; charset=utf-8"
    assert healthy[:1] == (200,) and healthy[2] == b"Healthy\n"
    assert not_ready[0] == 503
    assert ready[0] == 200 and ready[2] == b"Ready\n"
    assert missing[0] == 404


@pytest.mark.parametrize(
    ("header", "deadline"),
    [
        ("5", 4.5),
        ("0.3", 0.1),
        ("0", 0.1),
        ("1e10", 300.0),
        ("inf", 9.5),
        ("nan", 9.5),
        ("ten", 9.5),
        (None, 9.5),
    ],
)
def test_scrape_deadline_follows_the_announced_timeout_within_bounds(
    header: str | None, deadline: float
) -> None:
    environ = {} if header is None else {"HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": header}

    assert scrape_deadline(environ) == pytest.approx(deadline)


def test_missing_credentials_mark_every_region_down_instead_of_crashing(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    config = make_config()
    exporter = run_exporter(replace(config, aws=replace(config.aws, profile="no-such-profile")))

    text = exporter.scrape()

    assert value(text, "sagemaker_tuning_exporter_up", region="us-east-1") == 0
    assert value(text, "sagemaker_tuning_exporter_up", region="eu-west-1") == 0
    (snapshot, _) = exporter.exporter.cache.snapshots()
    assert (
        snapshot.error == "ProfileNotFound: The config profile (no-such-profile) could not be found"
    )
    assert sagemaker.received() == 0


def test_an_exporter_built_without_a_config_file_refuses_reload(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    exporter = run_exporter(make_config(regions=("eu-west-1",)))

    post_status, _, post_body = exporter.post("/-/reload")
    get_status, _, _ = exporter.get("/-/reload")

    assert (post_status, post_body) == (403, b"Lifecycle API is not enabled.")
    assert get_status == 405
