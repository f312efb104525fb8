"""Helpers for tests that run a real Prometheus or promtool (Debian package ``prometheus``).

Outside CI a test that needs a missing binary skips; with ``CI`` set it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.polling import wait_until
from tests.processes import free_port


def require_binary(name: str) -> str:
    """The path of ``name``; skips the test when it is missing, or fails it under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package 'prometheus')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextmanager
def running_prometheus(config: Path, data_dir: Path) -> Iterator[str]:
    """A Prometheus process on 127.0.0.1 with ``config``; yields its base URL."""
    binary = require_binary("prometheus")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def scraping_every_second(
    directory: Path, targets: Sequence[str], rule_files: Sequence[Path]
) -> Iterator[str]:
    """A Prometheus with ``rule_files`` that scrapes ``targets`` (HOST:PORT) every second as
    the exporter's job, its configuration and data in ``directory``; yields its base URL."""
    config = directory / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "evaluation_interval": "1s",
                },
                "rule_files": [str(path) for path in rule_files],
                "scrape_configs": [
                    {
                        "job_name": "sagemaker-tuning-exporter",
                        "static_configs": [{"targets": list(targets)}],
                    }
                ],
            }
        )
    )
    with running_prometheus(config, directory / "data") as url:
        yield url


def query(prometheus_url: str, promql: str) -> list[dict[str, object]]:
    """The result of an instant query; asserts Prometheus accepted it."""
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def wait_for_series(prometheus_url: str, promql: str, expected: int, timeout: float = 60) -> None:
    """Wait until ``count(promql)`` is ``expected``; fails the test after ``timeout`` seconds."""

    def seen() -> bool:
        result = query(prometheus_url, f"count({promql})")
        return bool(result and float(result[0]["value"][1]) == expected)  # type: ignore[index]

    wait_until(
        seen,
        timeout=timeout,
        interval=0.5,
        ignoring=(OSError,),
        message=f"Prometheus to see {expected} series of {promql}",
    )
