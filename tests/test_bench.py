"""The benchmark script, run small: it completes and its figures hold together (no timings checked)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_the_benchmark_runs_small_and_reports_both_variants(tmp_path: Path) -> None:
    result_path = tmp_path / "result.json"
    completed = subprocess.run(
        [
            sys.executable,
            "bench/benchmark.py",
            "--jobs",
            "250",
            "--regions",
            "2",
            "--ttl",
            "4",
            "--scrapes",
            "3",
            "--naive-scrapes",
            "2",
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
    results = {result["variant"]: result for result in report["results"]}
    exporter, naive = results["exporter"], results["naive"]
    assert exporter["full_refresh_requests_per_region"] == math.ceil(250 / 100)
    assert naive["full_refresh_requests_per_region"] == math.ceil(250 / 100)
    assert exporter["steady_refresh_requests_per_region"] <= report["steady_request_target"]
    assert naive["steady_refresh_requests_per_region"] == math.ceil(250 / 100)
    # The same samples; only the exporter's own figures (durations) differ in length.
    assert abs(exporter["body_bytes"] - naive["body_bytes"]) < 0.01 * naive["body_bytes"]
    assert exporter["peak_rss_mib"] > 0
    assert "| warm scrape p50, plain (s) |" in completed.stdout


def test_the_benchmark_with_tags_reports_one_get_resources_per_100_jobs_per_tags_ttl(
    tmp_path: Path,
) -> None:
    result_path = tmp_path / "result.json"
    completed = subprocess.run(
        [
            sys.executable,
            "bench/benchmark.py",
            *("--jobs", "150", "--regions", "1", "--ttl", "4", "--tags"),
            *("--scrapes", "2", "--naive-scrapes", "1", "--json", str(result_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(result_path.read_text())
    exporter = next(r for r in report["results"] if r["variant"] == "exporter")
    assert exporter["full_refresh_tag_requests_per_region"] == math.ceil(150 / 100)
    # The steady-state refresh comes within cache.tags_ttl (10 minutes): no tags are read.
    assert exporter["steady_refresh_tag_requests_per_region"] == 0
    assert "| GetResources requests per region, steady-state refresh |" in completed.stdout
