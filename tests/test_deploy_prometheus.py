"""The Prometheus kit in deploy/prometheus: rule files, their promtool unit tests, the example config."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import DEFAULT_LISTEN_ADDRESS
from tests.conftest import ROOT
from tests.prometheus import require_binary

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
# The example to start from, and the one deploy/docker-compose.yml runs.
PROMETHEUS_CONFIGS = ["prometheus.yml", "prometheus-demo.yml"]
DEFAULT_PORT = int(DEFAULT_LISTEN_ADDRESS.rsplit(":", 1)[1])


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool from deploy/prometheus, as the rule files' comments say."""
    return subprocess.run(
        [require_binary("promtool"), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def load_yaml(path: Path) -> Any:
    """One YAML document, loaded safely."""
    return yaml.safe_load(path.read_text())


def alert_names(rule_files: list[Path]) -> list[str]:
    """Every alert defined in ``rule_files``."""
    return [
        rule["alert"]
        for path in rule_files
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_promtool_accepts_the_rule_files_when_checked() -> None:
    result = promtool("check", "rules", *RULE_FILES)

    assert RULE_FILES
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_unit_test_passes_when_run_by_promtool() -> None:
    result = promtool("test", "rules", *RULE_TEST_FILES)

    assert RULE_TEST_FILES
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    fires: set[str] = set()
    stays_silent: set[str] = set()
    tested_rule_files: set[Path] = set()
    for path in RULE_TEST_FILES:
        document = load_yaml(path)
        tested_rule_files.update((path.parent / name).resolve() for name in document["rule_files"])
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else stays_silent).add(check["alertname"])

    alerts = alert_names(RULE_FILES)

    assert len(alerts) == len(set(alerts)) >= 9
    assert tested_rule_files == {path.resolve() for path in RULE_FILES}
    assert set(alerts) - fires == set(), "alerts without a firing test"
    assert set(alerts) - stays_silent == set(), "alerts without a not-firing test"


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS)
def test_promtool_accepts_the_prometheus_config_and_its_rule_files(config: str) -> None:
    result = promtool("check", "config", PROMETHEUS_DIR / config)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS)
def test_scrape_job_is_the_one_the_exporter_down_alert_selects(config: str) -> None:
    scrape_config = load_yaml(PROMETHEUS_DIR / config)
    (job,) = scrape_config["scrape_configs"]
    rules = [
        rule
        for path in RULE_FILES
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]
    (down,) = [rule for rule in rules if rule.get("alert") == "SageMakerTuningExporterDown"]

    assert f'up{{job="{job["job_name"]}"}}' in down["expr"]
    assert job["static_configs"][0]["targets"] == [f"sagemaker-tuning-exporter:{DEFAULT_PORT}"]
