"""The Grafana dashboard in deploy/grafana: every variable and panel query, run on a real Prometheus.

A Prometheus with the rules of deploy/prometheus loaded scrapes the exporter in demo mode
every second; each query, its Grafana variables substituted, must be valid and return data.
The same Prometheus shows the rules evaluating without error and the demo's alerts firing.
"""

from __future__ import annotations

import functools
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.polling import eventually, wait_until
from tests.processes import free_port, start_exporter, wait_for
from tests.prometheus import query, scraping_every_second

DASHBOARD = ROOT / "deploy" / "grafana" / "sagemaker-tuning-jobs.json"
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
# What Grafana puts in place of its built-in variables, sized for a 1 s scrape interval.
BUILT_IN_VARIABLES = {"__rate_interval": "5s", "__interval": "1s", "__range": "1m"}
# All tuning jobs; accounts and regions are set to one of their values.
ALL = ".*"
DATA_TIMEOUT_SECONDS = 40


def load_dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panel_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every panel target's expression, keyed by panel title and refId."""
    return {
        f"{panel['title']} [{target['refId']}]": target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The dashboard's template variables by name."""
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def substitute(expr: str, values: dict[str, str]) -> str:
    """``expr`` with Grafana's ``$name``, ``${name}`` and ``[[name]]`` replaced from ``values``."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        assert name in values, f"unknown variable ${name} in {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\[\[(\w+)\]\]|\$(\w+)", replace, expr)


def label_values(prometheus_url: str, definition: str) -> list[str]:
    """Grafana's ``label_values(selector, label)``, answered by Prometheus' series API."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition.strip())
    assert match, definition
    selector, label = match.groups()
    url = f"{prometheus_url}/api/v1/series?{urllib.parse.urlencode({'match[]': selector})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return sorted({series[label] for series in answer["data"] if series.get(label)})


def queries_without_data(prometheus_url: str, queries: dict[str, str]) -> dict[str, str]:
    """The ``queries`` still without data after polling for up to DATA_TIMEOUT_SECONDS.

    Rates need two scrapes and recorded series a rule evaluation, so data comes in steps.
    """
    empty = dict(queries)

    def all_have_data() -> bool:
        for title, promql in list(empty.items()):
            if query(prometheus_url, promql):
                del empty[title]
        return not empty

    eventually(all_have_data, timeout=DATA_TIMEOUT_SECONDS, interval=1)
    return empty


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus with the deploy rules, scraping the demo exporter every second."""
    directory = tmp_path_factory.mktemp("grafana")
    port = free_port()
    exporter = start_exporter("--demo", port=port)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/-/ready", timeout=60), "demo did not start"
        with scraping_every_second(directory, [f"127.0.0.1:{port}"], RULE_FILES) as url:
            yield url
    finally:
        exporter.terminate()
        exporter.wait(timeout=15)


@pytest.fixture(scope="module")
def variable_values(prometheus_url: str) -> dict[str, str]:
    """One account and one region the demo exporter publishes, and every tuning job."""
    dashboard = load_dashboard()
    definitions = {
        name: variable["definition"]
        for name, variable in variables(dashboard).items()
        if variable["type"] == "query"
    }
    values = dict(BUILT_IN_VARIABLES)
    deadline = time.monotonic() + DATA_TIMEOUT_SECONDS
    for name in ("account", "region", "job"):
        found = wait_until(
            functools.partial(label_values, prometheus_url, substitute(definitions[name], values)),
            timeout=max(0.0, deadline - time.monotonic()),
            interval=0.5,
            ignoring=(OSError,),
            message=f"variable {name} to have values: {definitions[name]}",
        )
        assert found, f"variable {name} has no values: {definitions[name]}"
        values[name] = ALL if name == "job" else found[0]
    return values


def test_dashboard_has_datasource_account_region_and_job_variables_when_loaded() -> None:
    dashboard = load_dashboard()
    found = variables(dashboard)

    assert list(found) == ["datasource", "account", "region", "job"]
    assert found["datasource"]["type"] == "datasource"
    assert found["datasource"]["query"] == "prometheus"
    for name in ("account", "region", "job"):
        assert found[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert found[name]["allValue"] == ALL
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_shows_what_the_deployment_kit_promises_when_loaded() -> None:
    queries = "\n".join(panel_queries(load_dashboard()).values())

    for needed in (
        "sum by (status) (sagemaker_tuning_jobs",
        "sum by (strategy) (sagemaker_tuning_jobs",
        'training_job_status="NonRetryableError"',
        'training_job_status="RetryableError"',
        "sagemaker_tuning_job:training_jobs_completed:ratio",
        "sagemaker_tuning_job_max_training_jobs",
        "sagemaker_tuning_job_objective_evaluations",
        "sagemaker_tuning_job_best_objective_value",
        "sum by (reason) (sagemaker_tuning_job_failed_training_jobs",
        "sum by (instance_type) (sagemaker_tuning_job_training_instance_seconds",
        "sagemaker_tuning_job_top_training_job_info",
        "sagemaker_tuning_job_top_training_job_objective_value",
        "sagemaker_tuning_job:elapsed:seconds",
        "sagemaker_tuning_exporter_up",
        "sagemaker_tuning_exporter_api_requests_total",
        "sagemaker_tuning_exporter_refresh_duration_seconds",
    ):
        assert needed in queries


def test_dashboard_panels_have_unique_ids_and_tile_the_grid_without_overlapping() -> None:
    panels = load_dashboard()["panels"]
    cells: dict[tuple[int, int], str] = {}

    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        position = panel["gridPos"]
        assert position["x"] >= 0 and position["x"] + position["w"] <= 24, panel["title"]
        for y in range(position["y"], position["y"] + position["h"]):
            for x in range(position["x"], position["x"] + position["w"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[x, y]}"
                cells[x, y] = panel["title"]
    # Listed top to bottom, left to right, as Grafana saves them.
    assert ids == [
        panel["id"]
        for panel in sorted(panels, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    ]


def test_table_panels_ask_for_instant_values_in_table_format() -> None:
    tables = [panel for panel in load_dashboard()["panels"] if panel["type"] == "table"]

    assert {panel["title"] for panel in tables} >= {
        "Tuning jobs",
        "Leaderboard: best training jobs",
    }
    for panel in tables:
        for target in panel["targets"]:
            assert (target["instant"], target["range"], target["format"]) == (True, False, "table")


def test_every_recorded_series_the_dashboard_uses_is_defined_in_the_rules() -> None:
    recorded = {
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    used = set(re.findall(r"\b\w+:\w+:\w+\b", "\n".join(panel_queries(load_dashboard()).values())))

    assert used
    assert used <= recorded


def test_every_variable_query_finds_values_when_prometheus_scrapes_the_demo_exporter(
    variable_values: dict[str, str],
) -> None:
    assert re.fullmatch(r"\d{12}", variable_values["account"])
    assert variable_values["region"] in ("eu-west-1", "us-east-1")


def test_every_panel_query_returns_data_when_prometheus_scrapes_the_demo_exporter(
    prometheus_url: str, variable_values: dict[str, str]
) -> None:
    queries = {
        title: substitute(expr, variable_values)
        for title, expr in panel_queries(load_dashboard()).items()
    }

    empty = queries_without_data(prometheus_url, queries)

    assert len(queries) >= 18
    assert empty == {}, "queries without data"


def test_prometheus_evaluates_every_rule_without_error_when_scraping_the_demo_exporter(
    prometheus_url: str, variable_values: dict[str, str]
) -> None:
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/rules", timeout=10) as response:
        groups = json.load(response)["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    recorded = {rule["name"]: rule["name"] for rule in rules if rule["type"] == "recording"}

    assert len(rules) == sum(
        len(group["rules"])
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
    )
    assert [(rule["name"], rule["health"]) for rule in rules if rule["health"] != "ok"] == []
    assert queries_without_data(prometheus_url, recorded) == {}, "rules that record nothing"


def test_demo_fires_the_alerts_the_deploy_guide_promises_when_prometheus_evaluates_the_rules(
    prometheus_url: str, variable_values: dict[str, str]
) -> None:
    alerts = {
        name: f'ALERTS{{alertname="{name}", alertstate="firing"}}'
        for name in ("SageMakerTuningJobFailed", "SageMakerTuningTrainingJobsFailing")
    }

    assert queries_without_data(prometheus_url, alerts) == {}, "alerts that did not fire"
