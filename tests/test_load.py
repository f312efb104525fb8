"""The load script, run small: its report holds together and its checks pass or fail as they should.

No timings are asserted, only counts, the request schedule and the checks. Each test runs
under both listing semantics of the test server (``--listing-semantics moto`` and ``aws``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.sagemaker_server import LISTING_SEMANTICS

JOBS = 200
REGIONS = ("us-east-1", "eu-west-1")


def run_load(
    tmp_path: Path, listing_semantics: str, *flags: str
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
            "--listing-semantics",
            listing_semantics,
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


@pytest.mark.parametrize("listing_semantics", LISTING_SEMANTICS)
def test_a_small_gzip_load_has_no_failed_scrapes_and_keeps_to_the_request_schedule(
    tmp_path: Path, listing_semantics: str
) -> None:
    completed, report = run_load(tmp_path, listing_semantics)

    assert completed.returncode == 0, completed.stderr
    assert report["checks"] == {
        "no_failed_scrapes": True,
        "requests_within_schedule": True,
        "listing_requests_exact": True,
        "memory_flat": True,
    }
    assert report["settings"]["listing_semantics"] == listing_semantics
    assert f"listing semantics: {listing_semantics} (" in completed.stdout
    scrapes = report["scrapes"]
    assert scrapes["total"] > 0
    assert scrapes["failed"] == 0
    assert scrapes["failures"] == {}
    assert scrapes["parsed"] >= 1
    assert scrapes["parsed_bodies_correct"] is True
    assert 0 < scrapes["wire_bytes_max"] < scrapes["body_bytes_max"]  # gzip on the wire
    assert report["settings"]["gzip"] is True

    requests = report["aws_requests"]
    # Unfiltered, newest first: ceil(200/100) pages in full, no trailing empty page under
    # either semantics; a steady-state listing reads the 20 running jobs on its first page.
    full = math.ceil(JOBS / 100)
    assert requests["full_listing_requests"] == full
    assert requests["incremental_listing_requests"] == 1
    assert requests["incremental_listing_requests_allowed"] == 2  # +1 for a page boundary
    refreshes = requests["refreshes_allowed_per_target"]
    assert requests["full_listings_allowed_per_target"] == 1  # the run is under an hour
    assert requests["listing_allowed_per_region"] == full + 2 * (refreshes - 1)
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
        # Exactly what the listings the exporter counted cost: one full, the rest 1 page.
        counted = requests["listings_at_end"][region]
        assert counted["full"] == 1
        assert 1 + counted["incremental"] <= refreshes
        assert listed == full + counted["incremental"]
        assert requests["listing_requests_expected_per_region"][region] == listed
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


@pytest.mark.parametrize("listing_semantics", LISTING_SEMANTICS)
def test_a_small_uncompressed_text_load_at_an_interval_has_no_failed_scrapes(
    tmp_path: Path, listing_semantics: str
) -> None:
    completed, report = run_load(
        tmp_path, listing_semantics, "--plain", "--format", "text", "--interval", "0.5"
    )

    assert completed.returncode == 0, completed.stderr
    assert all(report["checks"].values())
    assert report["scrapes"]["failed"] == 0
    assert report["scrapes"]["parsed_bodies_correct"] is True
    # Uncompressed: what came over the wire is the body.
    assert report["scrapes"]["wire_bytes_max"] == report["scrapes"]["body_bytes_max"]
    # 5 scrapers, one scrape each per 0.5 s for 3 s: at most 6 scrapes each.
    assert 0 < report["scrapes"]["total"] <= 5 * 6


@pytest.mark.parametrize("listing_semantics", LISTING_SEMANTICS)
def test_the_load_script_exits_1_when_scrapes_fail_or_memory_exceeds_its_bound(
    tmp_path: Path, listing_semantics: str
) -> None:
    # No scrape completes in a microsecond, and RSS cannot fall by 100 GiB.
    completed, report = run_load(
        tmp_path,
        listing_semantics,
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
    # The requests still keep to the schedule, exactly.
    assert report["checks"]["requests_within_schedule"] is True
    assert report["checks"]["listing_requests_exact"] is True
    assert report["scrapes"]["failed"] == report["scrapes"]["total"] > 0
    assert "FAILED: no_failed_scrapes, memory_flat" in completed.stderr


def load_script() -> ModuleType:
    """bench/load.py as a module, its sibling bench/harness.py importable."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.mark.parametrize(
    ("list_requests", "within_schedule", "exact"),
    [(5, True, True), (6, True, False), (9, False, False)],
    ids=["exact", "one-page-more", "over-the-schedule"],
)
def test_the_request_checks_fail_on_one_list_request_more_than_the_listings_cost(
    list_requests: int, within_schedule: bool, exact: bool
) -> None:
    load = load_script()
    args = load.build_parser().parse_args(["--jobs", "300", "--running", "20", "--ttl", "10"])
    tally = load.Tally()
    tally.add(load.Scrape(seconds=0.01, failure=None))

    # 25 s allow 3 refreshes: 3 + 2 x (1 + 1) = 7 List requests; the exporter counted one
    # full listing (3 pages) and two incremental ones (1 page each): 5 exactly.
    report = load.build_report(
        args,
        ("us-east-1",),
        tally=tally,
        samples=[],
        counts={("us-east-1", "ListHyperParameterTuningJobs"): list_requests},
        listings={"us-east-1": {"full": 1.0, "incremental": 2.0}},
        elapsed=25.0,
        ready_seconds=1.0,
        scrape_seconds=20.0,
        exporter_stderr="",
    )

    assert report["aws_requests"]["listing_allowed_per_region"] == 7
    assert report["aws_requests"]["listing_requests_expected_per_region"] == {"us-east-1": 5}
    assert report["checks"]["requests_within_schedule"] is within_schedule
    assert report["checks"]["listing_requests_exact"] is exact
