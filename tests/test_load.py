"""The load script, run small: its report holds together and its checks pass or fail as they should.

No timings are asserted, only counts, the request schedule and the checks.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

JOBS = 200
REGIONS = ("us-east-1", "eu-west-1")


def run_load(
    tmp_path: Path, *flags: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run bench/load.py with 5 scrapers for 3 s against 200 jobs per region, plus ``flags``."""
    result_path = tmp_path / "load.json"
    completed = subprocess.run(
        [
            sys.executable,
            "bench/load.py",
            "--scrapers",
            "5",
            "--duration",
            "3",
            "--jobs",
            str(JOBS),
            "--regions",
            str(len(REGIONS)),
            "--ttl",
            "1",
            "--parse-every",
            "1",
            "--json",
            str(result_path),
            *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result_path.read_text()) if result_path.exists() else {}
    return completed, report


def test_a_small_gzip_load_has_no_failed_scrapes_and_keeps_to_the_request_schedule(
    tmp_path: Path,
) -> None:
    completed, report = run_load(tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert report["checks"] == {
        "no_failed_scrapes": True,
        "requests_within_schedule": True,
        "memory_flat": True,
    }
    scrapes = report["scrapes"]
    assert scrapes["total"] > 0
    assert scrapes["failed"] == 0
    assert scrapes["failures"] == {}
    assert scrapes["parsed"] >= 1
    assert scrapes["parsed_bodies_correct"] is True
    assert 0 < scrapes["wire_bytes_max"] < scrapes["body_bytes_max"]  # gzip on the wire
    assert report["settings"]["gzip"] is True

    requests = report["aws_requests"]
    full = math.ceil(JOBS / 100)
    assert requests["full_listing_requests"] == full
    assert requests["incremental_listing_requests"] == 4
    refreshes = requests["refreshes_allowed_per_target"]
    assert requests["listing_allowed_per_region"] == full + 4 * (refreshes - 1)
    # Each refresh describes at most describe.max_requests_per_refresh (100) jobs.
    assert requests["describes_allowed_per_region"] == 100 * refreshes
    assert set(requests["by_region_and_operation"]) == set(REGIONS)
    for region in REGIONS:
        by_operation = requests["by_region_and_operation"][region]
        assert set(by_operation) == {
            "ListHyperParameterTuningJobs",
            "DescribeHyperParameterTuningJob",
        }
        assert sum(by_operation.values()) == requests["per_region"][region]
        # At least the first full listing, and never more than the TTL allows.
        listed = by_operation["ListHyperParameterTuningJobs"]
        assert full <= listed <= requests["listing_allowed_per_region"]
        assert (
            0
            < by_operation["DescribeHyperParameterTuningJob"]
            <= (requests["describes_allowed_per_region"])
        )
        assert requests["listings_in_last_parsed_body"][region]["full"] == 1

    latency, rss, threads = report["latency_seconds"], report["rss_mib"], report["threads"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert 0 < rss["start"] <= rss["max"]
    assert rss["end"] <= rss["max"]
    assert rss["samples"] >= 2
    assert rss["growth"] <= rss["growth_bound"]
    assert 0 < threads["start"] <= threads["max"]
    assert "| latency p50 / p99 / max (s) |" in completed.stdout


def test_a_small_uncompressed_text_load_at_an_interval_has_no_failed_scrapes(
    tmp_path: Path,
) -> None:
    completed, report = run_load(tmp_path, "--plain", "--format", "text", "--interval", "0.5")

    assert completed.returncode == 0, completed.stderr
    assert all(report["checks"].values())
    assert report["scrapes"]["failed"] == 0
    assert report["scrapes"]["parsed_bodies_correct"] is True
    # Uncompressed: what came over the wire is the body.
    assert report["scrapes"]["wire_bytes_max"] == report["scrapes"]["body_bytes_max"]
    # 5 scrapers, one scrape each per 0.5 s for 3 s: at most 6 scrapes each.
    assert 0 < report["scrapes"]["total"] <= 5 * 6


def test_the_load_script_exits_1_when_scrapes_fail_or_memory_exceeds_its_bound(
    tmp_path: Path,
) -> None:
    # No scrape completes in a microsecond, and RSS cannot fall by 100 GiB.
    completed, report = run_load(
        tmp_path,
        "--scrape-timeout",
        "0.000001",
        "--max-rss-growth-mib",
        "-102400",
        "--max-scrapes",
        "50",
    )

    assert completed.returncode == 1
    assert report["checks"]["no_failed_scrapes"] is False
    assert report["checks"]["memory_flat"] is False
    assert report["scrapes"]["failed"] == report["scrapes"]["total"] > 0
    assert "FAILED: no_failed_scrapes, memory_flat" in completed.stderr
