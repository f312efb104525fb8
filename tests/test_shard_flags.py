"""The --shard and --total-shards flags: --once prints only the shard's targets; auto; errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.app import targets_from_config
from exporter.cli import build_parser, main, shard_from_args
from exporter.config.loading import load_config
from exporter.model.sharding import UNSHARDED, Shard
from tests.conftest import ROOT
from tests.expected import samples
from tests.sagemaker_server import SageMakerTestServer

ACCOUNTS = tuple(digit * 12 for digit in "12345")
REGIONS = ("us-east-1", "eu-west-1")


def write_organization_config(tmp_path: Path, sagemaker: SageMakerTestServer) -> Path:
    """Five accounts in two regions, a job in each, on the test server."""
    for account in ACCOUNTS:
        for region in REGIONS:
            sagemaker.add_job(region, f"job-{account[0]}-{region}", account=account)
    roles = "".join(f"  - role_arn: arn:aws:iam::{account}:role/reader\n" for account in ACCOUNTS)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"regions: [{', '.join(REGIONS)}]\n"
        f"aws:\n  endpoint_url: {sagemaker.url}\n  max_attempts: 2\n"
        f"accounts:\n{roles}"
    )
    return path


def run_once(
    config: Path, *flags: str, hostname: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = os.environ.copy()
    if hostname is not None:
        env["HOSTNAME"] = hostname
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--once", "--config.file", str(config), *flags],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=False,
    )


def published_targets(exposition: str) -> set[tuple[str, str]]:
    """The (account, region) pairs of the ``up`` series and of the per-job series."""
    return {
        (dict(labels)["account"], dict(labels)["region"])
        for name, labels in samples(exposition)
        if name
        in ("sagemaker_tuning_exporter_up", "sagemaker_tuning_job_creation_timestamp_seconds")
    }


def test_once_with_a_shard_prints_only_that_shards_targets(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    config = write_organization_config(tmp_path, sagemaker)
    owned = {
        (target.account_id, target.region)
        for target in Shard(1, 3).select(targets_from_config(load_config(config)))
    }

    result = run_once(config, "--shard", "1", "--total-shards", "3")

    assert result.returncode == 0, result.stderr
    assert 0 < len(owned) < len(ACCOUNTS) * len(REGIONS)
    assert published_targets(result.stdout) == owned
    assert 'sagemaker_tuning_exporter_shard_info{shard="1",total_shards="3"} 1.0' in result.stdout
    assert f"sagemaker_tuning_exporter_owned_targets {float(len(owned))}" in result.stdout
    assert sagemaker.received(operation="ListHyperParameterTuningJobs") == len(owned)


def test_shard_auto_takes_the_ordinal_of_the_statefulset_pods_hostname(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    config = write_organization_config(tmp_path, sagemaker)
    owned = {
        (target.account_id, target.region)
        for target in Shard(2, 3).select(targets_from_config(load_config(config)))
    }

    result = run_once(
        config, "--shard", "auto", "--total-shards", "3", hostname="sagemaker-tuning-exporter-2"
    )

    assert result.returncode == 0, result.stderr
    assert 'sagemaker_tuning_exporter_shard_info{shard="2",total_shards="3"} 1.0' in result.stdout
    assert published_targets(result.stdout) == owned


def test_without_shard_flags_one_replica_owns_every_target() -> None:
    args = build_parser().parse_args([])

    assert shard_from_args(args) == UNSHARDED
    assert (args.shard, args.total_shards) == (0, 1)


def test_shard_auto_reads_the_hostname_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOSTNAME", "sagemaker-tuning-exporter-4")
    args = build_parser().parse_args(["--shard", "auto", "--total-shards", "5"])

    assert shard_from_args(args) == Shard(4, 5)


@pytest.mark.parametrize(
    ("flags", "hostname", "message"),
    [
        (
            ["--shard", "3", "--total-shards", "3"],
            None,
            "--shard: shard 3 is not one of 0 to 2 (of 3 shards)",
        ),
        (["--shard", "1"], None, "--shard: shard 1 is not one of 0 to 0 (of 1 shards)"),
        (
            ["--shard", "first"],
            None,
            "argument --shard: expected a whole number of 0 or more, or auto, got 'first'",
        ),
        (
            ["--shard", "-1", "--total-shards", "2"],
            None,
            "argument --shard: expected a whole number of 0 or more, or auto, got '-1'",
        ),
        (
            ["--total-shards", "0"],
            None,
            "argument --total-shards: expected a whole number of 1 or more, got '0'",
        ),
        (
            ["--shard", "auto", "--total-shards", "3"],
            "exporter-host",
            "--shard: hostname 'exporter-host' does not end in -<ordinal> as a StatefulSet "
            "pod's does (sagemaker-tuning-exporter-2); give the shard as a number",
        ),
        (
            ["--shard", "auto", "--total-shards", "3"],
            "sagemaker-tuning-exporter-3",
            "--shard: hostname 'sagemaker-tuning-exporter-3' gives shard 3, not one of 0 to 2: "
            "set --total-shards to the StatefulSet's replicas",
        ),
    ],
)
def test_a_bad_shard_flag_is_a_usage_error_with_exit_code_2(
    flags: list[str],
    hostname: str | None,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if hostname is not None:
        monkeypatch.setenv("HOSTNAME", hostname)

    with pytest.raises(SystemExit) as exited:
        main([*flags, "--check-config", "--config.file", "config.example.yaml"])

    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.endswith(f"sagemaker-tuning-exporter: error: {message}\n")
    assert "Traceback" not in error
