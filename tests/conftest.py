"""Shared fixtures: the SageMaker test server, placeholder credentials, and a running exporter.

Every test gets exactly one of the markers ``benchmark``, ``prometheus``, ``process`` and
``unit`` (``make test-fast`` runs ``-m unit``), from what it uses rather than from the file
it is in, so that files can be renamed or split. What a test uses is found by following the
global names of the test function and of every fixture it requests (transitively) into the
helper functions and classes of tests/; the first rule that matches decides:

``benchmark``
    it names a path under bench/ (runs or imports a benchmark script);
``prometheus``
    it calls a helper of tests/prometheus.py: a real Prometheus, or promtool;
``process``
    it starts a subprocess (the ``subprocess`` module, as tests/processes.py's
    ``start_exporter`` does); or it talks to the SageMaker test server (the ``sagemaker``
    fixture, tests/sagemaker_server.py), which runs in this process but, measured with
    ``pytest --durations=0``, is too slow for ``unit``: its ~300 tests take 0.3 s to 35 s
    each (median 0.7 s, spent creating boto3 clients and answering over HTTP), over 7 of
    the 12.5 minutes of the whole suite on 2 cores; or it is marked ``slow`` by hand, an
    in-process test that waits out real timeouts of seconds (the HTTP server's limits);
``unit``
    everything else, the doctests of exporter/ included: well under a second each, most.
"""

from __future__ import annotations

import dis
import functools
import inspect
import os
import sys
import time
import types
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.app import Exporter, LiveExporter
from exporter.config.loading import load_config
from exporter.config.settings import AwsSettings, CacheSettings, ExporterConfig
from exporter.model.sharding import UNSHARDED, Shard
from exporter.web.reload import ReloadingWebConfig
from exporter.web.routes import create_live_app
from exporter.web.server import ExporterServer
from tests.apps import create_app
from tests.organization import TestOrganization
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
# No endpoint of the developer's shell either: aws.endpoint_url alone sends every API to the
# test server (tests/test_endpoints.py sets these where botocore's own choice is the point).
for _name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
    os.environ.pop(_name)
os.environ.pop("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", None)
os.environ.update(TEST_ENVIRONMENT)
# No config file of the developer's machine may leak into a test.
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sagemaker_server() -> Iterator[SageMakerTestServer]:
    server = SageMakerTestServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def organization(
    sagemaker_server: SageMakerTestServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestOrganization]:
    """An organization on the test server (see tests/organization.py), its Organizations and STS
    endpoints set as botocore reads them: ``AWS_ENDPOINT_URL_ORGANIZATIONS``, ``..._STS``."""
    sagemaker_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", sagemaker_server.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sagemaker_server.url)
    organization = TestOrganization(sagemaker_server)
    organization.create()
    yield organization
    organization.delete()
    sagemaker_server.reset()


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

    def refreshed_scrape(self) -> str:
        """Scrape, starting the refreshes due, then scrape again once they ended: what they found.

        A scrape never waits for the refresh of a target that has a snapshot.
        """
        ExporterClient.scrape(self)
        assert self.exporter.cache.wait_idle(timeout=30)
        return ExporterClient.scrape(self)


class RunningLiveExporter(ExporterClient):
    """An exporter whose configuration file can be reloaded, serving HTTP on 127.0.0.1."""

    def __init__(self, live: LiveExporter, server: ExporterServer) -> None:
        super().__init__(f"{server.scheme}://127.0.0.1:{server.port}")
        self.live = live
        self.server = server

    def refreshed_scrape(self) -> str:
        """Scrape, starting the refreshes due, then scrape again once they ended: what they found."""
        self.scrape()
        assert self.live.exporter.cache.wait_idle(timeout=30)
        return self.scrape()


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A test CA, a server certificate for 127.0.0.1, and clients of that CA and another."""
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def run_exporter() -> Iterator[Callable[..., RunningExporter]]:
    started: list[RunningExporter] = []

    def start(
        config: ExporterConfig,
        web_config: ReloadingWebConfig | None = None,
        *,
        shard: Shard = UNSHARDED,
    ) -> RunningExporter:
        exporter = Exporter(config, shard=shard)
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
        # Let refreshes still waiting on the server finish before the next test's jobs exist.
        running.exporter.cache.wait_idle(timeout=30)


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
        running.live.close()  # no account discovery of this test reads on into the next
        running.live.exporter.cache.wait_idle(timeout=30)


# Module names whose objects, when a test reaches them, decide its marker.
_PROCESS_MODULES = frozenset({"subprocess"})
_PROMETHEUS_MODULES = frozenset({"tests.prometheus"})
# (module, qualified name) of the objects that do, wherever they are defined.
_PROCESS_OBJECTS = frozenset({("tests.sagemaker_server", "SageMakerTestServer")})


def _is_bench_path(constant: object) -> bool:
    return isinstance(constant, str) and (constant == "bench" or constant.startswith("bench/"))


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    """``code`` and the code of the functions, lambdas and comprehensions nested in it."""
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def _uses_object(target: object, seen: set[types.CodeType]) -> set[str]:
    """The markers ``target``, a global a test's code names, calls for."""
    if isinstance(target, types.ModuleType):
        module: object = target.__name__
    else:
        module = getattr(target, "__module__", None)
    if not isinstance(module, str):
        return set()
    if module in _PROCESS_MODULES or (module, getattr(target, "__qualname__", None)) in (
        _PROCESS_OBJECTS
    ):
        return {"process"}
    found = {"prometheus"} if module in _PROMETHEUS_MODULES else set()
    if not module.startswith("tests."):
        return found
    if isinstance(target, type):
        for attribute in vars(target).values():
            # Static and class methods wrap their function, properties their getter.
            function = getattr(attribute, "__func__", getattr(attribute, "fget", attribute))
            if isinstance(function, types.FunctionType):
                found |= _uses_function(function, seen)
    elif callable(target):
        found |= _uses_function(target, seen)
    return found


def _uses_function(function: Callable[..., object], seen: set[types.CodeType]) -> set[str]:
    """The markers the code of ``function`` calls for, following the helpers it names."""
    function = inspect.unwrap(function)
    code = getattr(function, "__code__", None)
    namespace = getattr(function, "__globals__", None)
    if not isinstance(code, types.CodeType) or namespace is None or code in seen:
        return set()
    seen.add(code)
    found: set[str] = set()
    for nested in _code_objects(code):
        if any(_is_bench_path(constant) for constant in nested.co_consts):
            found.add("benchmark")
        for instruction in dis.get_instructions(nested):
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                name = instruction.argval
                if isinstance(name, str) and name in namespace:
                    found |= _uses_object(namespace[name], seen)
    return found


@functools.cache
def _markers_of_function(function: Callable[..., object]) -> frozenset[str]:
    return frozenset(_uses_function(function, set()))


def _fixture_functions(item: pytest.Function) -> Iterator[Callable[..., object]]:
    """The functions of the fixtures ``item`` requests, directly or through other fixtures.

    A fixture is looked up by name in the test's module, then here, where they are defined.
    """
    for name in item.fixturenames:
        for namespace in (item.module, sys.modules[__name__]):
            fixture = getattr(namespace, name, None)
            if callable(fixture):
                yield fixture
                break


def _category(item: pytest.Item) -> str:
    """The one marker of ``item``: the first rule of the module docstring that matches."""
    if not isinstance(item, pytest.Function):
        return "unit"  # doctests
    found = set(_markers_of_function(item.function))
    for fixture in _fixture_functions(item):
        found |= _markers_of_function(fixture)
    if item.get_closest_marker("slow") is not None:
        found.add("process")
    return next(
        (marker for marker in ("benchmark", "prometheus", "process") if marker in found), "unit"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(_category(item))
