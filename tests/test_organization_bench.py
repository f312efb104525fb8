"""The organization benchmark, run small: shards own every target once and report their figures.

No figure is asserted, only that the report holds together: what the replicas own, what
they sent, and that the steady-state refresh lists each target once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

ACCOUNTS = 4
REGIONS = 2
JOBS = 3


def test_the_organization_bench_splits_every_target_once_over_the_shards(tmp_path: Path) -> None:
    result_path = tmp_path / "organization.json"
    completed = subprocess.run(
        [
            sys.executable,
            "bench/organization.py",
            *("--accounts", str(ACCOUNTS), "--regions", str(REGIONS), "--jobs", str(JOBS)),
            *("--running", "1", "--shards", "1", "2", "--ttl", "8", "--scrapes", "2"),
            *("--json", str(result_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(result_path.read_text())
    targets = ACCOUNTS * REGIONS
    assert report["targets"] == targets
    assert [result["shards"] for result in report["results"]] == [1, 2]
    for result in report["results"]:
        assert sum(result["targets_per_replica"]) == targets
        assert len(result["targets_per_replica"]) == result["shards"]
        assert result["targets_owned_once"] is True
        # Every account's role is assumed once by the replica that owns one of its regions.
        assert ACCOUNTS <= result["assume_role_requests"] <= ACCOUNTS * result["shards"]
        assert result["full_refresh_requests"]["ListHyperParameterTuningJobs"] == targets
        assert result["full_refresh_requests"]["DescribeHyperParameterTuningJob"] == targets * JOBS
        assert result["steady_refresh_requests"]["ListHyperParameterTuningJobs"] == targets
        assert result["steady_refresh_seconds"] >= 0
        assert len(result["peak_rss_mib_per_replica"]) == result["shards"]
    assert "| every target owned once | True | True |" in completed.stdout
