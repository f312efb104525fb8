"""AWS misbehaving at the wire, seen over real HTTP: hung, failing and throttling regions stay
isolated and bounded, and credential failures recover without a restart."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from exporter.aws.operations import LIST_OPERATION
from exporter.config.settings import (
    AccountSettings,
    CacheSettings,
    DescribeSettings,
    ExporterConfig,
)
from exporter.refresh.listing import MAX_PAGES_WITHOUT_NEW_JOBS
from tests.conftest import RunningExporter
from tests.expected import value
from tests.polling import eventually, wait_until
from tests.sagemaker_server import FaultRule, SageMakerTestServer

StartExporter = Callable[..., RunningExporter]

HEALTHY, FAILING, THROTTLED, HANGING = "us-east-1", "eu-west-1", "ap-southeast-1", "us-west-2"

REGIONS = (HEALTHY, FAILING, THROTTLED, HANGING)

READER_ROLE = "arn:aws:iam::111111111111:role/reader"

UP = "sagemaker_tuning_exporter_up"

LAST_SUCCESS = "sagemaker_tuning_exporter_last_refresh_success_timestamp_seconds"

CREATED = "sagemaker_tuning_job_creation_timestamp_seconds"

MAX_ATTEMPTS = 3

# Short, for the hang tests; generous enough for a refresh of a healthy region on a loaded
# machine, whose clients are built by then.
SHORT_REFRESH_TIMEOUT_SECONDS = 3.0

# Longer than the short refresh deadline, shorter than botocore's 30 s read timeout: the
# worker sits in a socket read while the deadline passes.
HANG_SECONDS = 12.0


def _config(
    make_config: Callable[..., ExporterConfig],
    regions: tuple[str, ...],
    max_requests_per_second: float | None = None,
    refresh_timeout_seconds: float = 30.0,
) -> ExporterConfig:
    """A config whose every refresh lists every job, and whose scrapes start none after the first.

    A scrape answers from the snapshot it has and never waits for the refresh it starts, so
    the tests start each refresh themselves and wait for it (:func:`_refresh_and_scrape`),
    then read what it left over HTTP; a TTL of an hour keeps their scrapes from starting
    refreshes of their own.
    """
    config = make_config(regions=regions)
    return replace(
        config,
        aws=replace(
            config.aws,
            max_attempts=MAX_ATTEMPTS,
            max_requests_per_second=max_requests_per_second,
        ),
        cache=CacheSettings(
            ttl_seconds=3600,
            full_resync_seconds=0,
            refresh_timeout_seconds=refresh_timeout_seconds,
        ),
    )


def _scrape(exporter: RunningExporter, timeout_seconds: float = 10) -> tuple[str, float]:
    """One scrape announcing ``timeout_seconds``, and how long it took."""
    started = time.monotonic()
    status, _, body = exporter.get(
        "/metrics", {"X-Prometheus-Scrape-Timeout-Seconds": str(timeout_seconds)}
    )
    assert status == 200
    return body.decode(), time.monotonic() - started


def _refresh_and_scrape(
    exporter: RunningExporter, timeout_seconds: float = 10
) -> tuple[str, float]:
    """Refresh every target, waiting for each until its deadline, then scrape what they left.

    Returns the body and how long both took.
    """
    started = time.monotonic()
    exporter.exporter.cache.refresh_all(timeout=timeout_seconds)
    text, _ = _scrape(exporter)
    return text, time.monotonic() - started


def _scrape_until_up(exporter: RunningExporter, regions: tuple[str, ...]) -> str:
    """Refresh and scrape until every region is up: a first refresh, which builds the
    clients, may miss a short deadline on a loaded machine."""
    texts: list[str] = []

    def all_up() -> bool:
        text, _ = _refresh_and_scrape(exporter)
        texts.append(text)
        return all(value(text, UP, region=region) == 1 for region in regions)

    assert eventually(all_up, timeout=60, interval=0.2), texts[-1]
    return texts[-1]


@pytest.fixture
def exporter_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.WARNING, logger="exporter")
    yield caplog


def _refresh_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith("refresh failed")
    ]


def test_hung_failing_and_throttled_regions_are_down_with_their_last_jobs_and_bounded_requests(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    for region in REGIONS:
        sagemaker.add_job(region, f"job-in-{region}")
    exporter = run_exporter(
        _config(make_config, REGIONS, refresh_timeout_seconds=SHORT_REFRESH_TIMEOUT_SECONDS)
    )
    first = _scrape_until_up(exporter, REGIONS)
    sagemaker.add_fault(FaultRule(region=FAILING, kind="server_error"))
    sagemaker.add_fault(FaultRule(region=THROTTLED, kind="throttle"))
    sagemaker.add_fault(FaultRule(region=HANGING, kind="hang", hang_seconds=HANG_SECONDS))
    sagemaker.add_job(HEALTHY, "new-job")
    before = sagemaker.received_by_key()

    second, elapsed = _refresh_and_scrape(exporter, timeout_seconds=10)

    # The refresh of the hung region is given up at its 3 s deadline.
    assert elapsed < 8
    assert value(second, UP, region=HEALTHY) == 1
    assert value(second, CREATED, job_name="new-job") is not None
    for region in (FAILING, THROTTLED, HANGING):
        assert value(second, UP, region=region) == 0, region
        assert value(second, CREATED, job_name=f"job-in-{region}") is not None, region
        assert value(second, LAST_SUCCESS, region=region) == value(
            first, LAST_SUCCESS, region=region
        )
    received = {
        region: sagemaker.received(region, LIST_OPERATION) - before.get((region, LIST_OPERATION), 0)
        for region in REGIONS
    }
    # A region failing every request costs max_attempts requests per refresh; a hung one, one.
    assert received == {HEALTHY: 1, FAILING: MAX_ATTEMPTS, THROTTLED: MAX_ATTEMPTS, HANGING: 1}
    errors = {
        region: value(
            second,
            "sagemaker_tuning_exporter_api_errors_total",
            region=region,
            operation=LIST_OPERATION,
            error=kind,
        )
        for region, kind in ((FAILING, "server_error"), (THROTTLED, "throttled"))
    }
    assert errors == {FAILING: MAX_ATTEMPTS, THROTTLED: MAX_ATTEMPTS}


def test_a_region_answering_empty_pages_with_fresh_tokens_is_stopped_by_page_count_and_down(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = FAILING
    for region in (HEALTHY, broken):
        sagemaker.add_job(region, f"job-in-{region}")
    # A deadline the page guard must come well before: the scrape may not wait for it.
    exporter = run_exporter(_config(make_config, (HEALTHY, broken), refresh_timeout_seconds=25))
    first = _scrape_until_up(exporter, (HEALTHY, broken))
    sagemaker.add_fault(FaultRule(region=broken, kind="empty_page", operation=LIST_OPERATION))
    caplog.set_level(logging.WARNING, logger="exporter")

    for _ in range(3):  # three refreshes, each bounded on its own
        before = sagemaker.received(broken, LIST_OPERATION)
        second, elapsed = _refresh_and_scrape(exporter, timeout_seconds=30)
        requests = sagemaker.received(broken, LIST_OPERATION) - before

        # At most 60 per refresh: the guard stops after its few pages without a new job.
        assert requests == MAX_PAGES_WITHOUT_NEW_JOBS + 1 <= 60
        assert elapsed < 10
        assert value(second, UP, region=HEALTHY) == 1
        assert value(second, UP, region=broken) == 0
        assert value(second, CREATED, job_name=f"job-in-{broken}") is not None
        assert value(second, LAST_SUCCESS, region=broken) == value(
            first, LAST_SUCCESS, region=broken
        )
    failures = [
        record.getMessage()
        for record in caplog.records
        if "refresh failed" in record.getMessage() and f"region={broken}" in record.getMessage()
    ]
    assert len(failures) == 3
    assert "PaginationError" in failures[0]


def _with_a_region_about_to_hang(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
    **cache: Any,
) -> RunningExporter:
    """An exporter of a healthy and a hanging region, both up; the next listing of the
    hanging one hangs past the short refresh deadline. ``cache`` overrides cache settings."""
    sagemaker.add_job(HEALTHY, "healthy-job")
    sagemaker.add_job(HANGING, "hung-job")
    config = _config(
        make_config, (HEALTHY, HANGING), refresh_timeout_seconds=SHORT_REFRESH_TIMEOUT_SECONDS
    )
    exporter = run_exporter(replace(config, cache=replace(config.cache, **cache)))
    _scrape_until_up(exporter, (HEALTHY, HANGING))
    sagemaker.add_fault(FaultRule(region=HANGING, kind="hang", hang_seconds=HANG_SECONDS, times=1))
    return exporter


def test_a_hung_region_is_down_while_its_worker_is_still_stuck_and_healthy_ones_keep_refreshing(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    # One worker: the hung refresh holds it past the deadline, a replacement serves the rest.
    exporter = _with_a_region_about_to_hang(
        sagemaker, make_config, run_exporter, max_concurrent_refreshes=1
    )
    before = sagemaker.received(HANGING, LIST_OPERATION)

    texts = []
    for index in range(3):
        sagemaker.add_job(HEALTHY, f"added-{index}")
        texts.append(_refresh_and_scrape(exporter, timeout_seconds=5)[0])

    for index, text in enumerate(texts):
        assert value(text, UP, region=HEALTHY) == 1
        assert value(text, CREATED, job_name=f"added-{index}") is not None
        assert value(text, UP, region=HANGING) == 0
        assert value(text, CREATED, job_name="hung-job") is not None
    # Single flight: the stuck refresh is not started again while it hangs.
    assert sagemaker.received(HANGING, LIST_OPERATION) - before == 1


def test_an_expired_token_marks_the_account_down_then_it_recovers_with_a_new_role_session(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
    exporter_logs: pytest.LogCaptureFixture,
) -> None:
    sagemaker.add_job(FAILING, "theirs", account="111111111111")
    config = replace(_config(make_config, (FAILING,)), accounts=(AccountSettings(READER_ROLE),))
    # Credentials botocore would otherwise keep using for an hour.
    sagemaker.issue_credentials_expiring_in(3600)
    exporter = run_exporter(config)
    assert value(_scrape(exporter)[0], UP, account="111111111111") == 1
    expired = FaultRule(region=FAILING, kind="expired_token", operation=LIST_OPERATION)
    sagemaker.add_fault(expired)

    down, _ = _refresh_and_scrape(exporter)
    down_again, _ = _refresh_and_scrape(exporter)
    sagemaker.clear_faults()  # AWS accepts the exporter again
    recovered, _ = _refresh_and_scrape(exporter)

    assert value(down, UP, account="111111111111") == 0
    assert value(down, CREATED, job_name="theirs") is not None
    assert value(down_again, UP, account="111111111111") == 0
    assert value(recovered, UP, account="111111111111") == 1
    # Not retried, and each failure drops the role session: the refresh after a failure
    # assumes the role again (the first and the two after a failure), though AWS said the
    # credentials were good for an hour.
    assert sagemaker.received(FAILING, LIST_OPERATION) == 4
    assert sagemaker.received(FAILING, "AssumeRole") == 3
    first_failure = _refresh_failures(exporter_logs)[0]
    assert first_failure == (
        f"refresh failed for account=111111111111 role={READER_ROLE} region={FAILING}: "
        "CredentialError: credentials rejected by ListHyperParameterTuningJobs "
        "(ExpiredTokenException: The security token included in the request is expired): "
        f"role {READER_ROLE} will be obtained afresh on the next refresh"
    )


def test_a_refused_assume_role_is_reported_once_per_refresh_and_recovers_when_allowed(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
    exporter_logs: pytest.LogCaptureFixture,
) -> None:
    sagemaker.add_job(FAILING, "theirs", account="111111111111")
    config = replace(
        _config(make_config, (FAILING,)),
        accounts=(AccountSettings(READER_ROLE, external_id="tuning-exporter"),),
    )
    sagemaker.add_fault(
        FaultRule(region=FAILING, kind="assume_role_denied", operation="AssumeRole")
    )
    exporter = run_exporter(config)

    denied, _ = _scrape(exporter)
    sagemaker.clear_faults()  # the trust policy is fixed
    allowed, _ = _refresh_and_scrape(exporter)

    assert value(denied, UP, account="111111111111") == 0
    assert value(allowed, UP, account="111111111111") == 1
    assert value(allowed, CREATED, job_name="theirs") is not None
    (failure,) = _refresh_failures(exporter_logs)
    assert failure.startswith(
        f"refresh failed for account=111111111111 role={READER_ROLE} region={FAILING}: "
        f"CredentialError: cannot assume role {READER_ROLE} (AccessDenied: "
    )
    assert f"needs sts:AssumeRole on {READER_ROLE}" in failure
    assert "trust policy" in failure
    assert "ExternalId" in failure
    assert sagemaker.received(FAILING, "AssumeRole") == 2  # not retried within a refresh


def test_a_missing_permission_is_named_and_the_target_recovers_once_granted(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
    exporter_logs: pytest.LogCaptureFixture,
) -> None:
    sagemaker.add_job(HEALTHY, "ours")
    sagemaker.add_fault(
        FaultRule(region=HEALTHY, kind="access_denied_action", operation=LIST_OPERATION)
    )
    exporter = run_exporter(_config(make_config, (HEALTHY,)))

    denied, _ = _scrape(exporter)
    sagemaker.clear_faults()
    granted, _ = _refresh_and_scrape(exporter)

    assert value(denied, UP, region=HEALTHY) == 0
    assert value(granted, UP, region=HEALTHY) == 1
    (failure,) = _refresh_failures(exporter_logs)
    assert failure.startswith(
        f"refresh failed for account=(default credentials) role=(none) region={HEALTHY}: "
        "CredentialError: access denied: missing permission "
        "sagemaker:ListHyperParameterTuningJobs for the exporter's credentials "
        "(AccessDeniedException: User: "
    )
    assert sagemaker.received(HEALTHY, LIST_OPERATION) == 2


def test_max_requests_per_second_paces_every_request_of_a_target(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    for index in range(250):
        sagemaker.add_job(HEALTHY, f"job-{index:03d}")
    sagemaker.add_fault(FaultRule(region=HEALTHY, kind="throttle", times=1))
    config = _config(make_config, (HEALTHY,), max_requests_per_second=2.0)
    config = replace(
        config,
        cache=replace(config.cache, refresh_timeout_seconds=30),
        # Only the listing, so the pace is the listing's: describing 250 jobs takes long at 2/s.
        describe=DescribeSettings(enabled=False),
    )
    exporter = run_exporter(config)

    text, elapsed = _scrape(exporter, timeout_seconds=30)

    assert value(text, UP, region=HEALTHY) == 1
    # Four requests (three pages and a retry) at 2/s after a burst of two: at least 1 s.
    assert sagemaker.received(HEALTHY, LIST_OPERATION) == 4
    assert elapsed >= 1.0


def test_scrapes_answer_at_once_while_a_refresh_hangs_and_show_it_down_at_its_deadline(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: StartExporter,
) -> None:
    # Every scrape starts a refresh of every target not refreshing already.
    exporter = _with_a_region_about_to_hang(sagemaker, make_config, run_exporter, ttl_seconds=0)
    sagemaker.add_job(HEALTHY, "added")
    gc.collect()  # no full collection, which stops every thread, among the timed scrapes

    during, first_took = _scrape(exporter, timeout_seconds=10)
    took = [first_took]

    def news_and_deadline_shown() -> str | None:
        text, seconds = _scrape(exporter, timeout_seconds=10)
        took.append(seconds)
        shown = value(text, CREATED, job_name="added") is not None
        return text if shown and value(text, UP, region=HANGING) == 0 else None

    after = wait_until(news_and_deadline_shown, timeout=HANG_SECONDS, interval=0.2)

    # Served from the last snapshots, never held for the hung refresh nor for its deadline.
    assert max(took) < 1.0, took
    assert value(during, UP, region=HANGING) == 1
    assert value(after, UP, region=HEALTHY) == 1
    assert value(after, CREATED, job_name="hung-job") is not None  # its last good jobs
