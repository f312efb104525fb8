"""Reloading the configuration file (POST /-/reload, SIGHUP) over real HTTP against moto's server."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.metrics.collectors import ConfigReloadCollector, ConfigReloadStatus
from exporter.web.reload import ReloadingWebConfig
from tests.conftest import RunningLiveExporter
from tests.expected import samples, value
from tests.polling import eventually, wait_until
from tests.processes import free_port, start_exporter, stop_with_sigterm, wait_for
from tests.sagemaker_server import FaultRule, SageMakerTestServer

StartLiveExporter = Callable[..., RunningLiveExporter]
LIST = "ListHyperParameterTuningJobs"
RELOAD_SUCCESSFUL = "sagemaker_tuning_exporter_config_last_reload_successful"
RELOAD_TIMESTAMP = "sagemaker_tuning_exporter_config_last_reload_success_timestamp_seconds"


def write_config(
    path: Path,
    sagemaker: SageMakerTestServer,
    regions: tuple[str, ...] = ("eu-west-1",),
    ttl: str = "5m",
    extra: str = "",
) -> Path:
    """A configuration aimed at the test server, with ``extra`` YAML appended.

    Describing is off: these tests count the listing's requests to tell what a reload kept.
    """
    path.write_text(
        f"regions: [{', '.join(regions)}]\n"
        f"aws:\n  endpoint_url: {sagemaker.url}\n  max_attempts: 2\n"
        f"cache:\n  ttl: {ttl}\n"
        "describe:\n  enabled: false\n"
        f"{extra}"
    )
    return path


def regions_on(text: str) -> set[str]:
    """The regions with an up series in an exposition."""
    return {
        dict(labels)["region"]
        for (name, labels), _ in samples(text).items()
        if name == "sagemaker_tuning_exporter_up"
    }


def scrape_process(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
        return text


def refresh_threads() -> int:
    return sum(thread.name.startswith("refresh-") for thread in threading.enumerate())


def test_a_posted_reload_adds_a_region_and_it_appears(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    sagemaker.add_job("eu-west-1", "kept-job")
    sagemaker.add_job("us-east-1", "added-job")
    config = write_config(tmp_path / "config.yaml", sagemaker)
    exporter = run_live_exporter(config)
    assert regions_on(exporter.scrape()) == {"eu-west-1"}

    write_config(config, sagemaker, regions=("eu-west-1", "us-east-1"))
    status, _, body = exporter.post("/-/reload")
    text = exporter.scrape()

    assert (status, body) == (200, b"Configuration reloaded\n")
    assert regions_on(text) == {"eu-west-1", "us-east-1"}
    assert value(text, "sagemaker_tuning_job_creation_timestamp_seconds", job_name="added-job")
    assert value(text, "sagemaker_tuning_job_creation_timestamp_seconds", job_name="kept-job")
    assert value(text, RELOAD_SUCCESSFUL) == 1
    assert value(text, "sagemaker_tuning_exporter_api_requests_total", region="us-east-1") == 1


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(
            (
                "regions: [eu-west-1]\nfilters:\n  statuses: [Completed, Running]\n",
                "{path}:3: filters.statuses[1]: expected one of Completed, DeleteFailed, "
                "Deleting, Failed, InProgress, Stopped, Stopping, got 'Running'",
            ),
            id="invalid-value",
        ),
        pytest.param(
            (
                "regions: [eu-west-1\n",
                "{path}:2:1: invalid YAML: expected ',' or ']', but got '<stream end>'",
            ),
            id="invalid-yaml",
        ),
        pytest.param(
            (None, "{path}: cannot read config file: No such file or directory"), id="missing"
        ),
    ],
)
def test_a_broken_config_keeps_the_old_one_serving_and_answers_500(
    sagemaker: SageMakerTestServer,
    tmp_path: Path,
    run_live_exporter: StartLiveExporter,
    caplog: pytest.LogCaptureFixture,
    broken: tuple[str | None, str],
) -> None:
    content, expected_error = broken
    sagemaker.add_job("eu-west-1", "served-job")
    config = write_config(tmp_path / "config.yaml", sagemaker)
    exporter = run_live_exporter(config)
    before = exporter.scrape()
    loaded_at = value(before, RELOAD_TIMESTAMP)

    if content is None:
        config.unlink()
    else:
        config.write_text(content)
    with caplog.at_level(logging.INFO, logger="exporter"):
        status, _, body = exporter.post("/-/reload")
    after = exporter.scrape()

    error = expected_error.format(path=config)
    assert (status, body.decode()) == (500, f"{error}\n")
    assert value(before, RELOAD_SUCCESSFUL) == 1
    assert value(after, RELOAD_SUCCESSFUL) == 0
    assert loaded_at is not None and value(after, RELOAD_TIMESTAMP) == loaded_at
    # The old configuration goes on serving the same data, costing no request.
    assert value(after, "sagemaker_tuning_job_creation_timestamp_seconds", job_name="served-job")
    assert value(after, "sagemaker_tuning_exporter_up", region="eu-west-1") == 1
    assert sagemaker.received("eu-west-1", LIST) == 1
    errors = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.getMessage() for record in errors] == [
        f"configuration not reloaded, still using the previous one: {error}"
    ]
    assert errors[0].exc_info is None


def test_a_good_reload_after_a_failed_one_sets_the_success_gauge_back_to_1(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    config = write_config(tmp_path / "config.yaml", sagemaker)
    exporter = run_live_exporter(config)
    first = exporter.scrape()
    config.write_text("regions: []\n")
    failed_status, _, _ = exporter.post("/-/reload")
    failed = exporter.scrape()

    loaded_at = value(first, RELOAD_TIMESTAMP) or 0
    # The good reload's timestamp can only be later once the wall clock has moved on.
    wait_until(lambda: time.time() > loaded_at, message="the wall clock to pass the first load")
    write_config(config, sagemaker)
    status, _, _ = exporter.post("/-/reload")
    text = exporter.scrape()

    assert failed_status == 500
    assert value(failed, RELOAD_SUCCESSFUL) == 0
    assert status == 200
    assert value(text, RELOAD_SUCCESSFUL) == 1
    assert (value(text, RELOAD_TIMESTAMP) or 0) > (value(first, RELOAD_TIMESTAMP) or 0)


def test_an_unchanged_region_keeps_its_snapshot_and_listing_with_no_request_for_it(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    sagemaker.add_job("eu-west-1", "kept-job", status="InProgress")
    now = [1000.0]
    config = write_config(tmp_path / "config.yaml", sagemaker, regions=("eu-west-1",))
    exporter = run_live_exporter(config, monotonic=lambda: now[0])
    before = exporter.scrape()
    received_before = sagemaker.received("eu-west-1")

    write_config(config, sagemaker, regions=("eu-west-1", "us-east-1"))
    status, _, _ = exporter.post("/-/reload")
    after = exporter.scrape()
    received_after = sagemaker.received("eu-west-1")
    now[0] += 301  # past the TTL: the next scrape refreshes eu-west-1
    later = exporter.refreshed_scrape()

    assert status == 200
    assert received_before == 1
    assert received_after == received_before
    labels = {"region": "eu-west-1"}
    for name in (
        "sagemaker_tuning_exporter_last_refresh_success_timestamp_seconds",
        "sagemaker_tuning_exporter_api_requests_total",
    ):
        assert value(after, name, **labels) == value(before, name, **labels)
    assert (
        value(
            after,
            "sagemaker_tuning_job_training_jobs",
            job_name="kept-job",
            training_job_status="Completed",
        )
        is not None
    )
    # The kept listing lets the refresh after the TTL list only the changes.
    assert value(later, "sagemaker_tuning_exporter_listings_total", kind="full", **labels) == 1
    assert (
        value(later, "sagemaker_tuning_exporter_listings_total", kind="incremental", **labels) == 1
    )


def test_the_series_of_an_unchanged_region_never_disappear_during_reloads(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    sagemaker.add_job("eu-west-1", "steady-job")
    sagemaker.add_job("us-east-1", "coming-and-going-job")
    config = write_config(tmp_path / "config.yaml", sagemaker)
    exporter = run_live_exporter(config)
    exporter.scrape()
    stop = threading.Event()
    scrapes: list[str] = []

    def scrape_until_stopped() -> None:
        while not stop.is_set():
            scrapes.append(exporter.scrape())

    scraper = threading.Thread(target=scrape_until_stopped)
    scraper.start()
    try:
        for round_ in range(20):
            regions = ("eu-west-1", "us-east-1") if round_ % 2 == 0 else ("eu-west-1",)
            write_config(config, sagemaker, regions=regions)
            status, _, _ = exporter.post("/-/reload")
            assert status == 200
    finally:
        stop.set()
        scraper.join()

    assert len(scrapes) >= 2
    for text in scrapes:
        assert value(text, "sagemaker_tuning_exporter_up", region="eu-west-1") == 1
        assert value(text, "sagemaker_tuning_job_creation_timestamp_seconds", job_name="steady-job")
        assert value(text, RELOAD_SUCCESSFUL) == 1
    # eu-west-1 was listed only once; us-east-1 afresh each of the 10 times it was added.
    assert sagemaker.received("eu-west-1", LIST) == 1
    assert sagemaker.received("us-east-1", LIST) == 10


def test_a_removed_region_disappears_from_metrics_and_its_counters_resume_if_it_returns(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    sagemaker.add_job("us-east-1", "removed-job")
    config = write_config(tmp_path / "config.yaml", sagemaker, regions=("eu-west-1", "us-east-1"))
    exporter = run_live_exporter(config)
    exporter.scrape()

    write_config(config, sagemaker, regions=("eu-west-1",))
    exporter.post("/-/reload")
    removed = exporter.scrape()
    write_config(config, sagemaker, regions=("eu-west-1", "us-east-1"))
    exporter.post("/-/reload")
    returned = exporter.scrape()

    assert 'region="us-east-1"' not in removed
    assert "removed-job" not in removed
    assert value(returned, "sagemaker_tuning_exporter_up", region="us-east-1") == 1
    # A returning region is listed afresh, and its request counter carries on from before.
    assert sagemaker.received("us-east-1", LIST) == 2
    assert value(returned, "sagemaker_tuning_exporter_api_requests_total", region="us-east-1") == 2


def test_changed_per_job_metrics_apply_to_a_kept_region_without_listing_it_again(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    # job-b ended an hour before job-a, so the cap of 1 keeps job-a: moto stamps jobs to the
    # millisecond, and two jobs added in different milliseconds would otherwise decide it.
    an_hour_ago = datetime.now(tz=UTC).replace(tzinfo=None) - timedelta(hours=1)
    sagemaker.add_job("eu-west-1", "job-a")
    sagemaker.add_job("eu-west-1", "job-b", created=an_hour_ago)
    config = write_config(tmp_path / "config.yaml", sagemaker)
    exporter = run_live_exporter(config)
    before = exporter.scrape()

    write_config(config, sagemaker, extra="per_job_metrics:\n  max_jobs: 1\n")
    exporter.post("/-/reload")
    limited = exporter.scrape()

    job_series = "sagemaker_tuning_job_creation_timestamp_seconds"
    assert value(before, job_series, job_name="job-b") is not None
    assert value(limited, job_series, job_name="job-a") is not None
    assert value(limited, job_series, job_name="job-b") is None
    assert value(limited, "sagemaker_tuning_exporter_unpublished_jobs", reason="limit") == 1
    assert value(limited, "sagemaker_tuning_jobs", status="Completed", strategy="Bayesian") == 2
    assert sagemaker.received("eu-west-1", LIST) == 1


def test_a_changed_ttl_applies_to_a_kept_region(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    now = [1000.0]
    config = write_config(tmp_path / "config.yaml", sagemaker)
    exporter = run_live_exporter(config, monotonic=lambda: now[0])
    exporter.scrape()

    write_config(config, sagemaker, ttl="10s")
    exporter.post("/-/reload")
    now[0] += 5
    exporter.scrape()
    within_new_ttl = sagemaker.received("eu-west-1", LIST)
    now[0] += 10  # 15 s: past the new TTL, well within the old one
    exporter.refreshed_scrape()

    assert within_new_ttl == 1
    assert sagemaker.received("eu-west-1", LIST) == 2


def test_changed_filters_make_every_region_list_its_jobs_again(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    sagemaker.add_job("eu-west-1", "team-a-job")
    sagemaker.add_job("eu-west-1", "team-b-job")
    config = write_config(tmp_path / "config.yaml", sagemaker)
    exporter = run_live_exporter(config)
    before = exporter.scrape()

    write_config(config, sagemaker, extra="filters:\n  name_contains: team-b\n")
    exporter.post("/-/reload")
    after = exporter.scrape()

    job_series = "sagemaker_tuning_job_creation_timestamp_seconds"
    assert value(before, job_series, job_name="team-a-job") is not None
    assert value(after, job_series, job_name="team-a-job") is None
    assert value(after, job_series, job_name="team-b-job") is not None
    # A new walk from the newest job: the filter is applied to what it lists.
    assert sagemaker.received("eu-west-1", LIST) == 2
    assert json.loads(sagemaker.request_bodies(LIST)[-1]) == {
        "MaxResults": 100,
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
    }


def test_reload_needs_the_lifecycle_flag_and_a_post(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    config = write_config(tmp_path / "config.yaml", sagemaker)
    disabled = run_live_exporter(config, enable_lifecycle=False)
    enabled = run_live_exporter(config)
    disabled.scrape()
    write_config(config, sagemaker, regions=("eu-west-1", "us-east-1"))

    forbidden = disabled.post("/-/reload")
    forbidden_put = disabled.request("PUT", "/-/reload")
    get_status, get_headers, get_body = enabled.get("/-/reload")
    get_disabled_status, _, _ = disabled.get("/-/reload")

    assert (forbidden[0], forbidden[2]) == (403, b"Lifecycle API is not enabled.")
    assert forbidden_put[0] == 403
    assert (get_status, get_body) == (405, b"Only POST or PUT requests allowed")
    assert get_headers["Allow"] == "POST, PUT"
    assert get_disabled_status == 405
    assert regions_on(disabled.scrape()) == {"eu-west-1"}
    put_status, _, _ = enabled.request("PUT", "/-/reload")
    assert put_status == 200


DEMO_PASSWORD = secrets.token_urlsafe(16)  # made per run: no password in the code
DEMO_HASH = bcrypt.hashpw(DEMO_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def test_reload_sits_behind_basic_auth(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  prometheus: '{DEMO_HASH}'\n")
    config = write_config(tmp_path / "config.yaml", sagemaker)
    exporter = run_live_exporter(config, web_config=ReloadingWebConfig(web_config))
    token = base64.b64encode(f"prometheus:{DEMO_PASSWORD}".encode()).decode()
    write_config(config, sagemaker, regions=("eu-west-1", "us-east-1"))

    anonymous, _, _ = exporter.post("/-/reload")
    anonymous_scrape, _, _ = exporter.get("/metrics", {"Authorization": f"Basic {token}"})
    authorized, _, _ = exporter.post("/-/reload", {"Authorization": f"Basic {token}"})

    assert anonymous == 401
    assert anonymous_scrape == 200
    assert authorized == 200
    assert [t.region for t in exporter.live.exporter.cache.targets] == ["eu-west-1", "us-east-1"]


def test_a_reload_while_refreshes_hang_adopts_the_kept_region_and_drops_the_removed_one(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    sagemaker.add_job("eu-west-1", "kept-job")
    sagemaker.add_job("us-east-1", "removed-job")
    for region in ("eu-west-1", "us-east-1"):
        sagemaker.add_fault(FaultRule(region=region, kind="hang", hang_seconds=8, times=1))
    config = write_config(tmp_path / "config.yaml", sagemaker, regions=("eu-west-1", "us-east-1"))
    exporter = run_live_exporter(config)
    _, _, early = exporter.get("/metrics", {"X-Prometheus-Scrape-Timeout-Seconds": "1"})

    retired = exporter.live.exporter
    write_config(config, sagemaker, regions=("eu-west-1", "ap-southeast-2"))
    status, _, _ = exporter.post("/-/reload")
    _, _, during = exporter.get("/metrics", {"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    # A scrape with time to wait joins the adopted refresh rather than starting another.
    _, _, settled = exporter.get("/metrics", {"X-Prometheus-Scrape-Timeout-Seconds": "30"})
    # The dropped refresh of us-east-1 ends, and lands in the retired cache only.
    dropped_landed = eventually(
        lambda: any(s.target.region == "us-east-1" for s in retired.cache.snapshots()),
        timeout=30,
        interval=0.1,
    )
    final = exporter.scrape()

    assert regions_on(early.decode()) == set()
    assert dropped_landed
    assert status == 200
    # The reload did not wait for the hanging listings.
    assert value(during.decode(), "sagemaker_tuning_exporter_up", region="eu-west-1") is None
    for text in (settled.decode(), final):
        assert regions_on(text) == {"eu-west-1", "ap-southeast-2"}
        assert value(text, "sagemaker_tuning_job_creation_timestamp_seconds", job_name="kept-job")
        assert "removed-job" not in text
    assert sagemaker.received("eu-west-1", LIST) == 1
    assert sagemaker.received("us-east-1", LIST) == 1
    assert exporter.get("/-/ready")[0] == 200


def test_concurrent_reloads_are_serialized_and_leave_one_consistent_exporter(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    config = write_config(tmp_path / "config.yaml", sagemaker, regions=("eu-west-1", "us-east-1"))
    exporter = run_live_exporter(config)
    exporter.scrape()
    statuses: list[int] = []

    def reload() -> None:
        statuses.append(exporter.post("/-/reload")[0])

    reloaders = [threading.Thread(target=reload) for _ in range(8)]
    for reloader in reloaders:
        reloader.start()
    for reloader in reloaders:
        reloader.join()
    text = exporter.scrape()

    assert statuses == [200] * 8
    assert exporter.live.reload_status().attempts == 8
    assert regions_on(text) == {"eu-west-1", "us-east-1"}
    assert sagemaker.received(operation=LIST) == 2


def test_sighup_reloads_a_running_process_and_a_broken_file_keeps_it_serving(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    sagemaker.add_job("eu-west-1", "kept-job")
    sagemaker.add_job("us-east-1", "added-job")
    config = write_config(tmp_path / "config.yaml", sagemaker)
    port = free_port()
    process: subprocess.Popen[str] = start_exporter("--config.file", str(config), port=port)
    added = failed = False
    after_failure = ""
    try:
        if wait_for(f"http://127.0.0.1:{port}/-/ready", timeout=30):
            write_config(config, sagemaker, regions=("eu-west-1", "us-east-1"))
            process.send_signal(signal.SIGHUP)
            added = eventually(
                lambda: regions_on(scrape_process(port)) == {"eu-west-1", "us-east-1"},
                timeout=30,
                interval=0.1,
            )
        if added:
            config.write_text("regions: [eu-west-1]\ncache:\n  ttl: -1\n")
            process.send_signal(signal.SIGHUP)
            failed = eventually(
                lambda: value(scrape_process(port), RELOAD_SUCCESSFUL) == 0,
                timeout=30,
                interval=0.1,
            )
            after_failure = scrape_process(port)
    finally:
        try:
            stderr = stop_with_sigterm(process)
        finally:
            if process.poll() is None:
                process.kill()

    assert added, stderr
    assert failed, stderr
    assert regions_on(after_failure) == {"eu-west-1", "us-east-1"}
    assert 'job_name="added-job"' in after_failure
    assert process.returncode == 0, stderr
    assert stderr.count("received SIGHUP, reloading the configuration") == 2, stderr
    assert "configuration reloaded from" in stderr
    assert (
        stderr.count(
            f"configuration not reloaded, still using the previous one: {config}:3: cache.ttl: "
            "expected a number of seconds or a duration such as 90s, 5m, 1h, 7d, got -1"
        )
        == 1
    )
    assert "Traceback" not in stderr
    assert sagemaker.received("eu-west-1", LIST) == 1


def test_demo_mode_reloads_its_built_in_configuration() -> None:
    port = free_port()
    process = start_exporter("--demo", "--web.enable-lifecycle", port=port)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/-/ready", timeout=60)
        started = value(scrape_process(port), RELOAD_TIMESTAMP) or 0
        request = urllib.request.Request(f"http://127.0.0.1:{port}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
        posted = value(scrape_process(port), RELOAD_TIMESTAMP) or 0
        process.send_signal(signal.SIGHUP)
        signalled = eventually(
            lambda: (value(scrape_process(port), RELOAD_TIMESTAMP) or 0) > posted,
            timeout=30,
            interval=0.1,
        )
        after = scrape_process(port)
        stderr = stop_with_sigterm(process)
    finally:
        if process.poll() is None:
            process.kill()

    assert status == 200
    assert posted > started
    assert signalled
    assert value(after, RELOAD_SUCCESSFUL) == 1
    assert regions_on(after) == {"us-east-1", "eu-west-1"}
    assert (
        stderr.count(
            "configuration reloaded from the demo configuration: 2 account/region pairs, "
            "0 added, 0 removed"
        )
        == 2
    )
    assert "Traceback" not in stderr


def test_an_added_account_assumes_its_role_while_the_kept_account_costs_no_request(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    sagemaker.add_job("eu-west-1", "team-a-job", account="111111111111")
    sagemaker.add_job("eu-west-1", "team-b-job", account="222222222222")
    team_a = "  - role_arn: arn:aws:iam::111111111111:role/reader\n"
    team_b = "  - role_arn: arn:aws:iam::222222222222:role/reader\n    external_id: team-b\n"
    config = write_config(tmp_path / "config.yaml", sagemaker, extra=f"accounts:\n{team_a}")
    exporter = run_live_exporter(config)
    exporter.scrape()
    before = sagemaker.received_by_key()

    write_config(config, sagemaker, extra=f"accounts:\n{team_a}{team_b}")
    status, _, _ = exporter.post("/-/reload")
    text = exporter.scrape()

    assert status == 200
    assert before == {("eu-west-1", "AssumeRole"): 1, ("eu-west-1", LIST): 1}
    assert sagemaker.received_by_key() == {("eu-west-1", "AssumeRole"): 2, ("eu-west-1", LIST): 2}
    assert "222222222222" in sagemaker.request_bodies("AssumeRole")[-1]
    for account, job in (("111111111111", "team-a-job"), ("222222222222", "team-b-job")):
        assert value(text, "sagemaker_tuning_exporter_up", account=account) == 1
        assert value(text, "sagemaker_tuning_job_creation_timestamp_seconds", job_name=job)


def test_changed_aws_settings_make_every_region_list_its_jobs_again(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    config = write_config(tmp_path / "config.yaml", sagemaker, regions=("eu-west-1", "us-east-1"))
    exporter = run_live_exporter(config)
    exporter.scrape()

    config.write_text(config.read_text().replace("max_attempts: 2", "max_attempts: 3"))
    status, _, _ = exporter.post("/-/reload")
    text = exporter.scrape()

    assert status == 200
    assert sagemaker.received("eu-west-1", LIST) == 2
    assert sagemaker.received("us-east-1", LIST) == 2
    # The request counters carry on across the new clients.
    assert value(text, "sagemaker_tuning_exporter_api_requests_total", region="eu-west-1") == 2


def test_a_refresh_hanging_through_two_reloads_is_adopted_once_and_ready_stays_200(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    sagemaker.add_job("us-east-1", "slow-job")
    config = write_config(tmp_path / "config.yaml", sagemaker)
    exporter = run_live_exporter(config)
    exporter.scrape()
    sagemaker.add_fault(FaultRule(region="us-east-1", kind="hang", hang_seconds=6, times=1))

    write_config(config, sagemaker, regions=("eu-west-1", "us-east-1"))
    first, _, _ = exporter.post("/-/reload")
    write_config(config, sagemaker, regions=("eu-west-1", "us-east-1"), ttl="10m")
    second, _, _ = exporter.post("/-/reload")
    ready_while_hanging, _, _ = exporter.get("/-/ready")
    _, _, settled = exporter.get("/metrics", {"X-Prometheus-Scrape-Timeout-Seconds": "30"})

    assert (first, second) == (200, 200)
    assert ready_while_hanging == 200
    assert value(settled.decode(), "sagemaker_tuning_exporter_up", region="us-east-1") == 1
    assert 'job_name="slow-job"' in settled.decode()
    assert sagemaker.received("us-east-1", LIST) == 1


def test_reloads_leave_no_refresh_threads_of_retired_configurations_behind(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    config = write_config(tmp_path / "config.yaml", sagemaker)
    exporter = run_live_exporter(config)
    exporter.scrape()
    before = refresh_threads()

    for round_ in range(20):
        # Each added region is refreshed at once, so each configuration starts a worker.
        regions = ("eu-west-1", "us-east-1") if round_ % 2 == 0 else ("eu-west-1",)
        write_config(config, sagemaker, regions=regions)
        assert exporter.post("/-/reload")[0] == 200
        exporter.scrape()

    assert sagemaker.received("us-east-1", LIST) == 10
    # The current configuration's worker may remain; those of the 20 retired ones end.
    assert eventually(lambda: refresh_threads() <= before + 1, timeout=30, interval=0.1), (
        refresh_threads()
    )


def test_a_scrape_that_reached_a_retired_configuration_starts_no_refresh_there(
    sagemaker: SageMakerTestServer, tmp_path: Path, run_live_exporter: StartLiveExporter
) -> None:
    now = [1000.0]
    config = write_config(tmp_path / "config.yaml", sagemaker)
    exporter = run_live_exporter(config, monotonic=lambda: now[0])
    exporter.scrape()
    retired = exporter.live.exporter
    exporter.post("/-/reload")
    now[0] += 301  # eu-west-1 is stale in both the retired and the current cache

    started = time.monotonic()
    retired.cache.refresh_stale(timeout=30)
    waited = time.monotonic() - started

    # It does not wait for a refresh that its ended workers would never run.
    assert waited < 10
    assert sagemaker.received("eu-west-1", LIST) == 1
    refreshed = exporter.refreshed_scrape()  # the current configuration's refresh, ended
    assert value(refreshed, "sagemaker_tuning_exporter_up", region="eu-west-1") == 1
    assert sagemaker.received("eu-west-1", LIST) == 2


def test_the_reload_gauges_render_exactly() -> None:
    registry = CollectorRegistry()
    status = ConfigReloadStatus(successful=False, last_success_time=1_700_000_000.5, attempts=3)
    registry.register(ConfigReloadCollector(lambda: status))

    assert generate_latest(registry).decode() == (
        "# HELP sagemaker_tuning_exporter_config_last_reload_successful Whether the last "
        "configuration reload attempt succeeded (1) or failed (0).\n"
        "# TYPE sagemaker_tuning_exporter_config_last_reload_successful gauge\n"
        "sagemaker_tuning_exporter_config_last_reload_successful 0.0\n"
        "# HELP sagemaker_tuning_exporter_config_last_reload_success_timestamp_seconds Time the "
        "configuration in force was loaded, at start or by a reload, in seconds since the epoch.\n"
        "# TYPE sagemaker_tuning_exporter_config_last_reload_success_timestamp_seconds gauge\n"
        "sagemaker_tuning_exporter_config_last_reload_success_timestamp_seconds 1.7000000005e+09\n"
    )
