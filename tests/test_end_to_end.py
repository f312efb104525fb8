"""End to end: the exporter process, scraped by a real Prometheus, against moto's SageMaker server.

Needs ``prometheus`` and ``promtool`` (Debian package ``prometheus``). Outside CI these tests
skip when the binaries are missing; with ``CI`` set they fail instead.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.expected import Samples, expected_samples_from_api, seed_varied_jobs
from tests.polling import wait_until
from tests.processes import free_port, start_exporter, wait_for
from tests.prometheus import query, require_binary, running_prometheus, wait_for_series
from tests.sagemaker_server import FaultRule, SageMakerTestServer

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


# What Prometheus 2.x sends to a target that did not ask for a scrape protocol.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def gzip_member_count(body: bytes) -> int:
    """How many gzip members ``body`` is made of."""
    count = 0
    while body:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        decompressor.decompress(body)
        assert decompressor.eof, "a gzip member is cut short"
        body = decompressor.unused_data
        count += 1
    return count


def test_prometheus_scrapes_the_single_member_gzip_body_whole(
    exporter_url: str, prometheus_url: str
) -> None:
    request = urllib.request.Request(
        f"{exporter_url}/metrics",
        headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        compressed = response.read()
    text = gzip.decompress(compressed).decode()
    # Sample lines: neither comments nor the OpenMetrics end.
    sample_count = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    wait_for_series(prometheus_url, "python_info", 1)

    scraped = query(prometheus_url, 'scrape_samples_scraped{job="sagemaker-tuning"}')
    up = query(prometheus_url, 'up{job="sagemaker-tuning"}')
    resident = query(prometheus_url, "process_resident_memory_bytes")

    # The per-job pieces come first and the process metrics last, in one gzip member:
    # Prometheus read them all.
    assert gzip_member_count(compressed) == 1
    assert [series["value"][1] for series in up] == ["1"]  # type: ignore[index]
    assert [float(series["value"][1]) for series in scraped] == [sample_count]  # type: ignore[index]
    assert len(resident) == 1 and float(resident[0]["value"][1]) > 10 * 2**20  # type: ignore[index]
    assert query(prometheus_url, "sagemaker_tuning_job_training_jobs")


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

    assert len(queries) == 12
    alert = results[0]
    assert failing
    assert {series["metric"]["job_name"] for series in alert} == failing  # type: ignore[index]


def test_prometheus_never_waits_for_a_slow_listing(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    sagemaker.add_job("eu-west-1", "slow-region-job")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"regions: [eu-west-1]\naws:\n  endpoint_url: {sagemaker.url}\ncache:\n  ttl: 1s\n"
    )
    port = free_port()
    process = start_exporter("--config.file", str(config), port=port)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/-/ready", timeout=30), "exporter not ready"
        # From now on every listing takes 3 s to answer: a refresh is due on every scrape.
        sagemaker.add_fault(
            FaultRule(
                region="eu-west-1",
                kind="hang",
                operation="ListHyperParameterTuningJobs",
                hang_seconds=3.0,
            )
        )
        prometheus_config = tmp_path / "prometheus.yml"
        prometheus_config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: slow-aws\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        )
        with running_prometheus(prometheus_config, tmp_path / "data") as prometheus_url:
            wait_for_series(prometheus_url, 'up{job="slow-aws"}', 1)
            scrapes = 'count_over_time(up{job="slow-aws"}[1m])'
            wait_until(
                lambda: float(query(prometheus_url, scrapes)[0]["value"][1]) >= 8,  # type: ignore[index]
                timeout=60,
                interval=0.5,
                message="Prometheus to scrape 8 times while the listings hang",
            )
            slowest = query(
                prometheus_url, 'max_over_time(scrape_duration_seconds{job="slow-aws"}[1m])'
            )
            down = query(prometheus_url, 'min_over_time(up{job="slow-aws"}[1m])')
        listings = sagemaker.received("eu-west-1", "ListHyperParameterTuningJobs")
    finally:
        process.terminate()
        process.wait(timeout=15)

    # Before, each scrape that found the 1 s TTL passed waited for the hung listing until its
    # timeout less 0.5 s; now the scrapes are served from the cache while it hangs.
    assert float(down[0]["value"][1]) == 1  # type: ignore[index]
    assert float(slowest[0]["value"][1]) < 0.4  # type: ignore[index]
    assert listings >= 3  # refreshes kept starting, one at a time
