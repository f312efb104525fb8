"""Demo mode, run as a real process: about 30 jobs over 2 regions, every status and strategy, moving."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.expected import STATUSES, STRATEGIES, samples, value
from tests.polling import wait_until
from tests.processes import free_port, start_exporter, wait_for


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return str(response.read().decode())


def training_job_values(text: str) -> dict[object, float]:
    return {
        key: number
        for key, number in samples(text).items()
        if key[0] == "sagemaker_tuning_job_training_jobs"
    }


def test_demo_serves_moving_numbers_without_an_aws_account() -> None:
    port = free_port()
    # No AWS variable or config file reaches the demo: it must need none.
    process = start_exporter(
        "--demo", port=port, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(f"{url}/-/ready", timeout=60), "demo did not become ready"
        first = scrape(url)

        def moved() -> str | None:
            text = scrape(url)
            return text if training_job_values(text) != training_job_values(first) else None

        later = wait_until(moved, timeout=60, interval=1, message="the demo's numbers to move")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)

    jobs = {
        key: number for key, number in samples(first).items() if key[0] == "sagemaker_tuning_jobs"
    }
    assert 25 <= sum(jobs.values()) <= 35
    assert {dict(labels)["region"] for (_, labels), n in jobs.items() if n} == {
        "us-east-1",
        "eu-west-1",
    }
    assert {dict(labels)["status"] for (_, labels), n in jobs.items() if n} == set(STATUSES)
    assert {dict(labels)["strategy"] for (_, labels), n in jobs.items() if n} == set(STRATEGIES)
    assert value(first, "sagemaker_tuning_exporter_up", region="us-east-1") == 1
    assert training_job_values(later) != training_job_values(first), (
        "demo numbers did not move in 60s"
    )
    assert process.returncode == 0
    assert "Traceback" not in stderr


@pytest.mark.parametrize("disabled", [False, True], ids=["default", "disabled"])
def test_demo_once_prints_the_exporter_process_metrics_unless_disabled(disabled: bool) -> None:
    flags = ["--web.disable-exporter-metrics"] if disabled else []

    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--demo", "--once", *flags],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert value(result.stdout, "sagemaker_tuning_exporter_up", region="us-east-1") == 1
    assert ("\nprocess_resident_memory_bytes " in result.stdout) is not disabled
    assert ("\npython_info{" in result.stdout) is not disabled
