"""The memory script, run small: it reports the peaks after gzip and plain scrapes, held to a bound.

No figure is asserted, only that the report holds together and the bound decides the exit code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

JOBS = 150


def run_memory(
    tmp_path: Path, *flags: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run bench/memory.py on 2 regions of 150 jobs with 2 gzip scrapes, plus ``flags``."""
    result_path = tmp_path / "memory.json"
    completed = subprocess.run(
        [
            sys.executable,
            "bench/memory.py",
            *("--regions", "2", "--jobs", str(JOBS), "--scrapes", "2"),
            *("--json", str(result_path)),
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


@pytest.mark.parametrize("listing_semantics", ["moto", "aws"])
def test_the_memory_script_reports_the_peak_after_gzip_scrapes_of_every_job(
    tmp_path: Path, listing_semantics: str
) -> None:
    completed, report = run_memory(tmp_path, "--listing-semantics", listing_semantics)

    assert completed.returncode == 0, completed.stderr
    assert report["jobs"] == 2 * JOBS
    assert report["listing_semantics"] == listing_semantics
    assert report["gzip_scrapes"] == 2
    # The peak can only be at or above what was resident at each reading.
    assert report["peak_rss_mib_after_gzip_scrapes"] >= report["rss_mib_after_gzip_scrapes"] > 0
    assert report["peak_rss_mib_after_gzip_scrapes"] >= report["rss_mib_ready"] > 0
    assert report["plain_scrapes"] == 3
    assert report["peak_rss_mib_after_plain_scrapes"] >= report["peak_rss_mib_after_gzip_scrapes"]
    assert report["peak_rss_mib_after_plain_scrapes"] >= report["rss_mib_after_plain_scrapes"] > 0
    wire, decoded = report["body_mb_wire_decoded"]
    assert 0 < wire < decoded
    assert "peak RSS within bound" in completed.stdout


def test_the_memory_script_exits_1_when_the_peak_exceeds_its_bound(tmp_path: Path) -> None:
    completed, report = run_memory(tmp_path, "--max-peak-mib", "1")

    assert completed.returncode == 1, completed.stderr
    assert report["max_peak_mib"] == 1
    assert "peak RSS **above** bound" in completed.stdout
