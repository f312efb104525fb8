"""Shared fixtures: the SageMaker test server, placeholder credentials, and a running exporter."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.app import Exporter, LiveExporter
from exporter.config.loading import load_config
from exporter.config.settings import AwsSettings, CacheSettings, ExporterConfig
from exporter.web.reload import ReloadingWebConfig
from exporter.web.routes import create_live_app
from exporter.web.server import ExporterServer
from tests.apps import create_app
from tests.sagemaker_server import LISTING_SEMANTICS, SageMakerTestServer
from tests.tls_material import TlsMaterial, make_tls_material

# Placeholder keys that only moto accepts; set before any botocore session exists.
TEST_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "test-placeholder",
    "AWS_SECRET_ACCESS_KEY": "test-placeholder",
    "AWS_DEFAULT_REGION": "us-east-1",
}
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_name, None)
os.environ.update(TEST_ENVIRONMENT)
# No config file of the developer's machine may leak into a test.
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sagemaker_server() -> Iterator[SageMakerTestServer]:
    server = SageMakerTestServer()
    server.start()
    os.environ["AWS_ENDPOINT_URL_STS"] = server.url
    os.environ["AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API"] = server.url
    yield server
    server.stop()


@pytest.fixture(params=LISTING_SEMANTICS, ids=LISTING_SEMANTICS)
def sagemaker(
    sagemaker_server: SageMakerTestServer, request: pytest.FixtureRequest
) -> Iterator[SageMakerTestServer]:
    """The test server, emptied of jobs, faults and counts before each test.

    Parametrized over LISTING_SEMANTICS, so every test that uses it runs twice: ``[moto]``,
    where ListHyperParameterTuningJobs filters and then pages as moto does, and ``[aws]``,
    where it pages and then filters as AWS documents for ListTrainingJobs (empty pages that
    carry a NextToken included). The mode is set before the test starts and kept by
    ``reset()``.
    """
    sagemaker_server.reset()
    sagemaker_server.use_listing_semantics(request.param)
    yield sagemaker_server
    sagemaker_server.reset()


@pytest.fixture
def make_config(sagemaker: SageMakerTestServer) -> Callable[..., ExporterConfig]:
    """Build an ExporterConfig aimed at the test server; keyword arguments override fields."""

    def build(
        regions: tuple[str, ...] = ("us-east-1", "eu-west-1"), **fields: object
    ) -> ExporterConfig:
        config = ExporterConfig(
            regions=regions,
            aws=AwsSettings(endpoint_url=sagemaker.url, max_attempts=3),
            cache=CacheSettings(ttl_seconds=300),
        )
        return replace(config, **fields)  # type: ignore[arg-type]

    return build


class ExporterClient:
    """Plain HTTP requests to an exporter at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path, headers)

    def post(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return self.request("POST", path, headers)

    def scrape(self) -> str:
        status, _, body = self.get("/metrics")
        assert status == 200
        return body.decode()


class RunningExporter(ExporterClient):
    """An exporter serving HTTP on 127.0.0.1 in this process."""

    def __init__(self, exporter: Exporter, server: ExporterServer) -> None:
        super().__init__(f"{server.scheme}://127.0.0.1:{server.port}")
        self.exporter = exporter
        self.server = server


class RunningLiveExporter(ExporterClient):
    """An exporter whose configuration file can be reloaded, serving HTTP on 127.0.0.1."""

    def __init__(self, live: LiveExporter, server: ExporterServer) -> None:
        super().__init__(f"{server.scheme}://127.0.0.1:{server.port}")
        self.live = live
        self.server = server


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A test CA, a server certificate for 127.0.0.1, and clients of that CA and another."""
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def run_exporter() -> Iterator[Callable[..., RunningExporter]]:
    started: list[RunningExporter] = []

    def start(
        config: ExporterConfig, web_config: ReloadingWebConfig | None = None
    ) -> RunningExporter:
        exporter = Exporter(config)
        server = ExporterServer(
            "127.0.0.1:0", create_app(exporter.cache, exporter.metrics_page), web_config
        )
        server.start()
        running = RunningExporter(exporter, server)
        started.append(running)
        return running

    yield start
    for running in started:
        running.server.stop()
        # Let refreshes still waiting on the server finish before the next test's jobs
        # exist; the TTL keeps this from starting new ones.
        running.exporter.cache.refresh_stale(timeout=30)


@pytest.fixture
def run_live_exporter() -> Iterator[Callable[..., RunningLiveExporter]]:
    """Start an exporter on 127.0.0.1 that loads, and reloads, the configuration file given."""
    started: list[RunningLiveExporter] = []

    def start(
        config_file: Path,
        *,
        enable_lifecycle: bool = True,
        web_config: ReloadingWebConfig | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> RunningLiveExporter:
        live = LiveExporter(
            load_config(config_file),
            lambda: load_config(config_file),
            str(config_file),
            monotonic=monotonic,
        )
        server = ExporterServer("127.0.0.1:0", create_live_app(live, enable_lifecycle), web_config)
        server.start()
        running = RunningLiveExporter(live, server)
        started.append(running)
        return running

    yield start
    for running in started:
        running.server.stop()
        running.live.exporter.cache.refresh_stale(timeout=30)
