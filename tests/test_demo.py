"""Demo mode, run as a real process: about 30 jobs over 2 regions, every status and strategy, moving.

With ``--config.file``, the file's settings apply to the demo's account, and SIGHUP reads it again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.expected import STATUSES, STRATEGIES, samples, value
from tests.polling import wait_until
from tests.processes import free_port, start_exporter, stop_with_sigterm, wait_for

# No AWS variable or file reaches the demo: it must need none.
BARE_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}


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
    process = start_exporter("--demo", port=port, env=BARE_ENVIRONMENT)
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


def run_demo_once(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m exporter --demo --once ARGS`` in ``cwd``, without any AWS setting."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--demo", "--once", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=BARE_ENVIRONMENT,
        check=False,
    )


def job_statuses(text: str, family: str) -> set[str]:
    """The status labels of ``family``'s samples that are not 0."""
    return {
        dict(labels)["status"]
        for (name, labels), number in samples(text).items()
        if name == family and number
    }


def tag_labels(text: str) -> set[str]:
    return {
        label
        for (name, labels), _ in samples(text).items()
        if name == "sagemaker_tuning_job_tags"
        for label, _ in labels
        if label.startswith("tag_")
    }


def test_demo_applies_the_config_file_given_with_it(tmp_path: Path) -> None:
    config = tmp_path / "demo.yaml"
    # The regions, accounts and endpoint are the demo's whatever the file says.
    config.write_text(
        "regions: [ap-southeast-2]\n"
        "aws:\n  endpoint_url: http://127.0.0.1:9\n  profile: nobody\n"
        "accounts:\n  - role_arn: arn:aws:iam::111111111111:role/reader\n"
        "discovery:\n  organizations:\n    role_name: reader\n"
        "filters:\n  statuses: [Completed]\n"
        "tags: [team]\n"
    )

    result = run_demo_once("--config.file", str(config))

    assert result.returncode == 0, result.stderr
    assert job_statuses(result.stdout, "sagemaker_tuning_jobs") == {"Completed"}
    assert job_statuses(result.stdout, "sagemaker_tuning_job_tags") == {"Completed"}
    assert tag_labels(result.stdout) == {"tag_team"}
    for region in ("us-east-1", "eu-west-1"):
        assert value(result.stdout, "sagemaker_tuning_exporter_up", region=region) == 1


def test_demo_without_the_flag_reads_no_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("regions: [Europe]\n")

    demo = run_demo_once(cwd=tmp_path)
    check = subprocess.run(
        [sys.executable, "-m", "exporter", "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )

    assert demo.returncode == 0, demo.stderr
    assert job_statuses(demo.stdout, "sagemaker_tuning_jobs") == set(STATUSES)
    assert tag_labels(demo.stdout) == {"tag_team", "tag_project"}
    assert check.returncode == 2
    assert "config.yaml:1: regions[0]: expected an AWS region" in check.stderr


def test_demo_refuses_a_broken_config_file_with_exit_code_2_and_no_traceback(
    tmp_path: Path,
) -> None:
    config = tmp_path / "demo.yaml"
    config.write_text("regions: [us-east-1]\nfilters:\n  statuses: [Running]\n")

    result = run_demo_once("--config.file", str(config))

    assert result.returncode == 2
    assert result.stderr == (
        f"sagemaker-tuning-exporter: configuration error: {config}:3: filters.statuses[0]: "
        "expected one of Completed, DeleteFailed, Deleting, Failed, InProgress, Stopped, "
        "Stopping, got 'Running'\n"
    )
    assert result.stdout == ""


def test_demo_reads_its_config_file_again_on_sighup(tmp_path: Path) -> None:
    config = tmp_path / "demo.yaml"
    config.write_text("regions: [us-east-1]\nfilters:\n  statuses: [Completed]\n")
    port = free_port()
    process = start_exporter(
        "--demo", "--config.file", str(config), port=port, env=BARE_ENVIRONMENT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(f"{url}/-/ready", timeout=60), "demo did not become ready"
        before = scrape(url)
        config.write_text("regions: [us-east-1]\nfilters:\n  statuses: [Failed, Stopped]\n")
        process.send_signal(signal.SIGHUP)

        def reloaded() -> str | None:
            text = scrape(url)
            return (
                text
                if job_statuses(text, "sagemaker_tuning_jobs") == {"Failed", "Stopped"}
                else None
            )

        after = wait_until(
            reloaded, timeout=60, interval=0.5, message="the reloaded filter to apply"
        )
        stderr = stop_with_sigterm(process)
    finally:
        if process.poll() is None:
            process.kill()

    assert job_statuses(before, "sagemaker_tuning_jobs") == {"Completed"}
    assert job_statuses(after, "sagemaker_tuning_job_creation_timestamp_seconds") == {
        "Failed",
        "Stopped",
    }
    assert f"reloading the configuration from {config}" in stderr
    assert process.returncode == 0


@pytest.mark.parametrize("disabled", [False, True], ids=["default", "disabled"])
def test_demo_once_prints_the_exporter_process_metrics_unless_disabled(disabled: bool) -> None:
    flags = ["--web.disable-exporter-metrics"] if disabled else []

    result = run_demo_once(*flags)

    assert result.returncode == 0, result.stderr
    assert value(result.stdout, "sagemaker_tuning_exporter_up", region="us-east-1") == 1
    assert ("\nprocess_resident_memory_bytes " in result.stdout) is not disabled
    assert ("\npython_info{" in result.stdout) is not disabled
