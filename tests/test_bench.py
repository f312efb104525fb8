"""The benchmark scripts, run small: they complete and their figures hold together.

bench/benchmark.py's timings are not checked; bench/scrape_latency.py's are, with bounds far
above what a scrape costs. Each test runs under both listing semantics of the test server
(``--listing-semantics moto`` and ``aws``): the exporter's listing sends no filter, so the
figures are the same.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.sagemaker_server import LISTING_SEMANTICS


def run_benchmark(
    tmp_path: Path, listing_semantics: str, *flags: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], dict[str, dict[str, Any]]]:
    """Run bench/benchmark.py with ``flags``; its output, report and results by variant."""
    result_path = tmp_path / "result.json"
    completed = subprocess.run(
        [
            sys.executable,
            "bench/benchmark.py",
            *flags,
            *("--listing-semantics", listing_semantics, "--json", str(result_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(result_path.read_text())
    assert report["listing_semantics"] == listing_semantics
    assert f"listing semantics: {listing_semantics} (" in completed.stdout
    return completed, report, {result["variant"]: result for result in report["results"]}


@pytest.mark.parametrize("listing_semantics", LISTING_SEMANTICS)
def test_the_benchmark_runs_small_and_reports_both_variants(
    tmp_path: Path, listing_semantics: str
) -> None:
    completed, report, results = run_benchmark(
        tmp_path,
        listing_semantics,
        *("--jobs", "250", "--regions", "2", "--ttl", "4"),
        *("--scrapes", "3", "--naive-scrapes", "2"),
    )

    exporter, naive = results["exporter"], results["naive"]
    assert exporter["full_refresh_list_requests_per_region"] == math.ceil(250 / 100)
    assert naive["full_refresh_list_requests_per_region"] == math.ceil(250 / 100)
    # The 20 running jobs are the newest: one page, within the product's target of 5.
    assert report["steady_list_request_target"] == 5
    assert exporter["steady_refresh_list_requests_per_region"] == 1
    assert naive["steady_refresh_list_requests_per_region"] == math.ceil(250 / 100)
    # Both describe as much as their budget allows: 20 running and 80 ended jobs first, then
    # the 2 that finished and 98 more of the 150 ended jobs left; none by the listing.
    for variant in (exporter, naive):
        assert variant["full_refresh_describe_requests_per_region"] == 100
        assert variant["steady_refresh_describe_requests_per_region"] == 100
        assert variant["steady_refresh_old_running_describes_per_region"] == 0
    # The same samples; only the exporter's own figures (durations) differ in length.
    assert abs(exporter["body_bytes"] - naive["body_bytes"]) < 0.01 * naive["body_bytes"]
    assert exporter["peak_rss_mib"] > 0
    assert "| warm scrape p50, plain (s) |" in completed.stdout
    assert "| Describe requests per region, steady-state refresh |" in completed.stdout
    assert "Steady-state target: at most 5 List requests per region." in completed.stdout


@pytest.mark.parametrize("listing_semantics", LISTING_SEMANTICS)
def test_two_old_running_jobs_cost_a_steady_state_refresh_two_describes_and_no_page(
    tmp_path: Path, listing_semantics: str
) -> None:
    # 2 of the 20 running jobs are older than 800 others; the ended jobs are past the
    # retention, so only the listing and the jobs that finish are left to describe.
    completed, report, results = run_benchmark(
        tmp_path,
        listing_semantics,
        *("--jobs", "1000", "--running", "20", "--old-running", "2", "--regions", "1"),
        *("--ttl", "4", "--retention", "10m", "--scrapes", "2", "--naive-scrapes", "1"),
    )

    exporter, naive = results["exporter"], results["naive"]
    assert report["old_running_per_region"] == 2
    assert report["finishing_per_region"] == 2
    assert exporter["full_refresh_list_requests_per_region"] == 10
    assert exporter["full_refresh_describe_requests_per_region"] == 20  # the running jobs
    # One page for the 18 newest running jobs, one describe for each old one, rather than
    # the 9 pages above them; and the final description of each of the 2 that finished.
    assert exporter["steady_refresh_list_requests_per_region"] == 1
    assert (
        exporter["steady_refresh_list_requests_per_region"] <= report["steady_list_request_target"]
    )
    assert exporter["steady_refresh_old_running_describes_per_region"] == 2
    assert exporter["steady_refresh_describe_requests_per_region"] == 2 + 2
    # The baseline walks every page and describes only the 2 that finished.
    assert naive["steady_refresh_list_requests_per_region"] == 10
    assert naive["steady_refresh_old_running_describes_per_region"] == 0
    assert naive["steady_refresh_describe_requests_per_region"] == 2
    assert "| of them, for the 2 old running jobs (counted by moto) |" in completed.stdout


@pytest.mark.parametrize("listing_semantics", LISTING_SEMANTICS)
def test_the_benchmark_with_tags_reports_one_get_resources_per_100_jobs_per_tags_ttl(
    tmp_path: Path, listing_semantics: str
) -> None:
    completed, _, results = run_benchmark(
        tmp_path,
        listing_semantics,
        *("--jobs", "150", "--regions", "1", "--ttl", "4", "--tags"),
        *("--scrapes", "2", "--naive-scrapes", "1"),
    )

    exporter = results["exporter"]
    assert exporter["full_refresh_tag_requests_per_region"] == math.ceil(150 / 100)
    # The steady-state refresh comes within cache.tags_ttl (10 minutes): no tags are read.
    assert exporter["steady_refresh_tag_requests_per_region"] == 0
    assert "| GetResources requests per region, steady-state refresh |" in completed.stdout


# bench/scrape_latency.py, run small: a slow AWS, a TTL of 2 s, a scrape every half second.
LATENCY_TTL_SECONDS = 2.0
LATENCY_INTERVAL_SECONDS = 0.5
# Far above a scrape of 200 jobs served from the cache (milliseconds), far below a refresh
# that waits 50 ms on each of its requests: its listing, and 100 describes 4 at a time.
FAST_SCRAPE_SECONDS = 0.5
# The listing of the refresh that sees the change (one page, 50 ms late) and a busy machine.
FRESHNESS_SLACK_SECONDS = 1.0


@pytest.mark.parametrize("listing_semantics", LISTING_SEMANTICS)
def test_scrapes_never_wait_for_a_slow_aws_and_a_change_shows_within_a_ttl_and_two_scrapes(
    tmp_path: Path, listing_semantics: str
) -> None:
    result_path = tmp_path / "latency.json"
    completed = subprocess.run(
        [
            sys.executable,
            "bench/scrape_latency.py",
            *("--jobs", "200", "--regions", "1", "--aws-latency-ms", "50"),
            *("--ttl", f"{LATENCY_TTL_SECONDS:g}", "--interval", f"{LATENCY_INTERVAL_SECONDS:g}"),
            *("--duration", "10", "--listing-semantics", listing_semantics),
            *("--json", str(result_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(result_path.read_text())
    assert report["settings"]["listing_semantics"] == listing_semantics
    assert report["failed"] is False
    assert report["first_scrape"]["failure"] is None
    client = report["client"]
    # A scrape every half second for 10 s, a few skipped at most on a busy machine.
    assert client["count"] >= 10
    assert client["failed"] == 0
    # Every scrape answers from the cache, while refreshes started by earlier scrapes list and
    # describe 200 jobs, each request 50 ms late.
    assert all(seconds < FAST_SCRAPE_SECONDS for _, seconds, _ in client["scrapes"])
    requests = report["aws_requests_by_operation"]
    assert requests["ListHyperParameterTuningJobs"] >= 3  # a full listing, then refreshes
    assert requests["DescribeHyperParameterTuningJob"] >= 100
    # The change shows once a refresh that began after it has listed: that refresh starts
    # on the first scrape a TTL after the last one began, and the next scrape serves its
    # listing, ahead of its describes.
    seen_after = report["freshness"]["seen_after_seconds"]
    assert seen_after is not None, report["freshness"]
    assert (
        seen_after <= LATENCY_TTL_SECONDS + 2 * LATENCY_INTERVAL_SECONDS + FRESHNESS_SLACK_SECONDS
    )
    assert "| client failed scrapes | 0 (none) |" in completed.stdout


def test_the_idle_connection_bench_serves_every_scrape_past_the_connection_limit(
    tmp_path: Path,
) -> None:
    result_path = tmp_path / "idle.json"
    completed = subprocess.run(
        [
            sys.executable,
            "bench/idle_connections.py",
            *("--idle", "300", "--scrapes", "3", "--jobs", "50", "--within", "10"),
            *("--json", str(result_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result_path.read_text())

    assert completed.returncode == 0, completed.stdout + completed.stderr
    # 300 idle connections are past the default --web.max-connections of 256.
    assert report["statuses"] == {"200": 3}
    assert report["whole_bodies"] == 3
    assert report["idle_still_open_after"] == 300
    assert "every scrape served whole in time" in completed.stdout


@pytest.mark.parametrize("listing_semantics", LISTING_SEMANTICS)
def test_the_training_job_bench_reads_the_backlog_once_and_running_tuning_jobs_once_a_refresh(
    tmp_path: Path, listing_semantics: str
) -> None:
    ended, running, training_jobs, steady_refreshes = 200, 5, 120, 3
    result_path = tmp_path / "training_jobs.json"
    completed = subprocess.run(
        [
            sys.executable,
            "bench/training_jobs.py",
            *("--ended", str(ended), "--running", str(running)),
            *("--training-jobs", str(training_jobs), "--ttl", "3"),
            *("--steady-refreshes", str(steady_refreshes), "--scrapes", "1"),
            *("--listing-semantics", listing_semantics, "--json", str(result_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(result_path.read_text())
    assert report["listing_semantics"] == listing_semantics
    assert f"listing semantics: {listing_semantics} (" in completed.stdout
    assert all(report["checks"].values()), report["checks"]
    # The backlog: every page of every tuning job once, 2 pages of 100 for 120 training jobs,
    # all within one refresh (the default budget, 100, would take ceil(410 / 100) = 5).
    backlog = report["backlog"]
    pages = (ended + running) * math.ceil(training_jobs / 100)
    assert backlog["tuning_jobs_read_in_full"] == ended + running
    assert backlog["requests"] == backlog["requests_expected"] == pages
    assert backlog["exporter_counted_requests"] == pages
    assert backlog["refreshes_seen"] == 1
    assert backlog["refreshes_at_default_budget"] == math.ceil(pages / 100)
    # Steady state: new and ended training jobs in each running tuning job cost it at most
    # 2 requests a refresh (the newest page); an ended tuning job costs nothing.
    steady = report["steady"]
    assert steady["refreshes_measured"] >= steady_refreshes
    assert len(steady["refreshes"]) == steady_refreshes
    for entry in steady["refreshes"]:
        assert entry["requests_ended"] == 0
        assert running <= entry["requests"] <= 2 * running * entry["refreshes"]
    assert steady["requests_for_ended_tuning_jobs"] == 0
    # Every sampled tuning job's samples equal what the synthetic training jobs imply.
    verification = report["verification"]
    assert verification["mismatch_count"] == 0, verification["mismatches"]
    assert verification["running_tuning_jobs_checked"] == running
    assert len(verification["ended_tuning_jobs_sampled"]) >= 2
    assert report["series"]["sagemaker_tuning_job_top_training_job_info"] == 10 * (ended + running)
    assert report["memory"]["peak_rss_mib_end"] > 0
