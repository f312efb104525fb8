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
