"""End to end: the exporter process, scraped by a real Prometheus, against moto's SageMaker server.

Needs ``prometheus`` and ``promtool`` (Debian package ``prometheus``). Outside CI these tests
skip when the binaries are missing; with ``CI`` set they fail instead.
"""

from __future__ import annotations

import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.expected import Samples, expected_samples_from_api, seed_varied_jobs
from tests.processes import free_port, start_exporter, wait_for
from tests.prometheus import query, require_binary, running_prometheus, wait_for_series
from tests.sagemaker_server import SageMakerTestServer

REGIONS = ("us-east-1", "eu-west-1")
JOB_COUNT = 40


@pytest.fixture
def exporter_url(sagemaker: SageMakerTestServer, tmp_path: Path) -> Iterator[str]:
    seed_varied_jobs(sagemaker, JOB_COUNT, REGIONS)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"regions: [{', '.join(REGIONS)}]\naws:\n  endpoint_url: {sagemaker.url}\ncache:\n  ttl: 10m\n"
    )
    port = free_port()
    process = start_exporter("--config.file", str(config), port=port)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(f"{url}/-/ready", timeout=30), "exporter did not become ready"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
def prometheus_url(exporter_url: str, tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: sagemaker-tuning\n"
        f"    static_configs:\n      - targets: ['{exporter_url.removeprefix('http://')}']\n"
    )
    with running_prometheus(config, tmp_path / "data") as url:
        yield url


def test_prometheus_stores_exactly_the_values_the_api_returns(
    sagemaker: SageMakerTestServer, prometheus_url: str
) -> None:
    # Before this test's own listing below; the exporter lists once per region, and is ready then.
    listed_by_exporter = sagemaker.received(operation="ListHyperParameterTuningJobs")
    expected = expected_samples_from_api(sagemaker.url, REGIONS)
    names = sorted({name for name, _ in expected})
    wait_for_series(
        prometheus_url,
        '{__name__=~"sagemaker_tuning_job_.+"}',
        len(expected),
    )

    stored: Samples = {}
    for name in names:
        for series in query(prometheus_url, name):
            labels = dict(series["metric"])  # type: ignore[call-overload]
            for scrape_label in ("__name__", "job", "instance"):
                labels.pop(scrape_label)
            stored[(name, frozenset(labels.items()))] = float(series["value"][1])  # type: ignore[index]

    assert len({dict(labels)["job_name"] for _, labels in expected}) == JOB_COUNT
    assert stored == expected
    up = query(prometheus_url, "sagemaker_tuning_exporter_up")
    assert sorted((s["metric"]["region"], s["value"][1]) for s in up) == [  # type: ignore[index]
        ("eu-west-1", "1"),
        ("us-east-1", "1"),
    ]
    requests = {
        series["metric"]["operation"]: float(series["value"][1])  # type: ignore[index]
        for series in query(
            prometheus_url, "sum by (operation) (sagemaker_tuning_exporter_api_requests_total)"
        )
    }
    # Every job is described once, but those being deleted.
    describable = {
        dict(labels)["job_name"] for _, labels in expected if dict(labels)["status"] != "Deleting"
    }
    assert listed_by_exporter == len(REGIONS)
    assert requests == {
        "ListHyperParameterTuningJobs": len(REGIONS),
        "DescribeHyperParameterTuningJob": len(describable),
    }


def test_promtool_accepts_the_exposition(exporter_url: str) -> None:
    promtool = require_binary("promtool")
    with urllib.request.urlopen(f"{exporter_url}/metrics", timeout=10) as response:
        exposition = response.read()

    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, check=False
    )

    assert b"sagemaker_tuning_job_training_jobs{" in exposition
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == b""


def documented_promql_queries() -> list[str]:
    """Each query in the ``promql`` blocks of docs/metrics.md; comment lines separate queries."""
    document = (ROOT / "docs" / "metrics.md").read_text()
    queries = []
    for block in re.findall(r"```promql\n(.*?)```", document, flags=re.DOTALL):
        current: list[str] = []
        for line in [*block.splitlines(), "#"]:
            if line.lstrip().startswith("#"):
                if current:
                    queries.append("\n".join(current))
                current = []
            elif line.strip():
                current.append(line)
    return queries


def test_documented_queries_are_valid_and_the_failure_alert_fires_for_failing_jobs(
    sagemaker: SageMakerTestServer, prometheus_url: str
) -> None:
    expected = expected_samples_from_api(sagemaker.url, REGIONS)
    wait_for_series(prometheus_url, "sagemaker_tuning_job_training_jobs", 5 * JOB_COUNT)
    failing = {
        dict(labels)["job_name"]
        for (name, labels), number in expected.items()
        if name == "sagemaker_tuning_job_training_jobs"
        and dict(labels)["training_job_status"] == "NonRetryableError"
        and number > 0
    }
    queries = documented_promql_queries()

    results = [query(prometheus_url, promql) for promql in queries]

    assert len(queries) == 9
    alert = results[0]
    assert failing
    assert {series["metric"]["job_name"] for series in alert} == failing  # type: ignore[index]
