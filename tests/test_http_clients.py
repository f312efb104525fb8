"""/metrics read by the clients people use, over real HTTP: each gets the whole body.

Prometheus reads a gzip body of several members whole; curl, Chromium and Python's
``zlib.decompressobj`` stop after the first member. So the gzip body must be one member,
and each of these clients must show exactly what a scrape without gzip gets. The exporter
serves thousands of jobs in one region, so the per-job lines are several batches
(RENDER_BATCH_JOBS jobs each) per family: the body is built from many pieces.
"""

from __future__ import annotations

import gzip
import http.client
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from exporter.app import Exporter
from exporter.config.settings import AwsSettings, CacheSettings, DescribeSettings, ExporterConfig
from exporter.metrics.exposition import RENDER_BATCH_JOBS
from exporter.model.statuses import OBJECTIVE_STATUSES, TRAINING_JOB_STATUSES
from exporter.web.server import ExporterServer
from tests.apps import create_app
from tests.conftest import RunningExporter
from tests.expected import EXPORTER_PROCESS_PREFIXES
from tests.http_clients import (
    bytes_after_headers,
    chromium_text,
    curl_compressed,
    curl_plain,
    gzip_members,
    read_first_gzip_member,
)
from tests.sagemaker_server import SageMakerTestServer

REGION = "eu-west-1"
# Two whole batches of jobs and half of one more, in every per-job family.
JOB_COUNT = 2 * RENDER_BATCH_JOBS + RENDER_BATCH_JOBS // 2
TRAINING_COUNTS = {status: 1 for status in TRAINING_JOB_STATUSES}
OBJECTIVE_COUNTS = {status: 2 for status in OBJECTIVE_STATUSES}
LIMITS = {"MaxNumberOfTrainingJobs": 20, "MaxParallelTrainingJobs": 4, "MaxRuntimeInSeconds": 3600}
# Each job has every training and objective count, every limit, and three timestamps
# (created, ended, last modified); describing is off, so nothing else.
SAMPLES_PER_JOB = len(TRAINING_COUNTS) + len(OBJECTIVE_COUNTS) + len(LIMITS) + 3
JOB_SAMPLE_PREFIX = "sagemaker_tuning_job_"


@dataclass(frozen=True)
class ServedExporters:
    """The same jobs served by an exporter as it runs by default, with its process metrics
    rendered on every scrape, and by one without them, whose body is the same bytes on
    every scrape."""

    default: RunningExporter
    without_process_metrics: RunningExporter


@pytest.fixture(scope="module")
def served(sagemaker_server: SageMakerTestServer) -> Iterator[ServedExporters]:
    """JOB_COUNT jobs in REGION, listed once by each exporter and then served from its cache.

    Module-scoped: seeding and listing thousands of jobs takes seconds, and no test here
    changes a job; the cache's TTL outlasts the module, so no scrape refreshes again.
    """
    sagemaker_server.reset()
    sagemaker_server.use_listing_semantics("moto")
    ended = datetime.now(tz=UTC).replace(tzinfo=None, microsecond=0) - timedelta(days=1)
    for index in range(JOB_COUNT):
        created = ended - timedelta(hours=2, seconds=index)
        sagemaker_server.add_job(
            REGION,
            f"job-{index:05d}",
            training=TRAINING_COUNTS,
            objective=OBJECTIVE_COUNTS,
            limits=LIMITS,
            created=created,
            modified=ended,
            ended=ended,
        )
    config = ExporterConfig(
        regions=(REGION,),
        aws=AwsSettings(endpoint_url=sagemaker_server.url, max_attempts=3),
        cache=CacheSettings(ttl_seconds=3600),
        describe=DescribeSettings(enabled=False),
    )
    started = []
    for exporter_metrics in (True, False):
        exporter = Exporter(config, exporter_metrics=exporter_metrics)
        server = ExporterServer("127.0.0.1:0", create_app(exporter.cache, exporter.metrics_page))
        server.start()
        running = RunningExporter(exporter, server)
        started.append(running)
        running.refreshed_scrape()
    yield ServedExporters(*started)
    for running in started:
        running.server.stop()
        running.exporter.cache.wait_idle(timeout=30)
    sagemaker_server.reset()


@pytest.fixture(params=["default", "without_process_metrics"])
def running(served: ServedExporters, request: pytest.FixtureRequest) -> RunningExporter:
    """Each of the two exporters of ``served``."""
    exporter: RunningExporter = getattr(served, request.param)
    return exporter


def plain_body(running: RunningExporter) -> str:
    """/metrics as a scrape without Accept-Encoding gets it: the text every client must show."""
    status, headers, body = running.get("/metrics")
    assert status == 200
    assert "Content-Encoding" not in headers
    return body.decode()


def _comparable(line: str) -> str:
    """``line`` without its value if it is a sample of the exporter's process metrics, whose
    values change from one scrape to the next; else the whole line."""
    if line.startswith(EXPORTER_PROCESS_PREFIXES):
        return line.rsplit(" ", 1)[0]
    return line


def first_difference(shown: str, expected: str) -> str | None:
    """None when ``shown`` is ``expected`` line for line, values of the exporter's process
    metrics aside; else where they part, in a few words rather than a diff of megabytes."""
    shown_lines = shown.splitlines(keepends=True)
    expected_lines = expected.splitlines(keepends=True)
    pairs = enumerate(zip(shown_lines, expected_lines, strict=False), 1)
    number = next(
        (number for number, (got, wanted) in pairs if _comparable(got) != _comparable(wanted)),
        None,
    )
    if number is None:
        if len(shown_lines) == len(expected_lines):
            return None
        number = min(len(shown_lines), len(expected_lines)) + 1
    return (
        f"{len(shown_lines)} lines shown of {len(expected_lines)} "
        f"({len(shown)} of {len(expected)} characters); line {number} shown is "
        f"{_line(shown_lines, number)!r}, expected {_line(expected_lines, number)!r}; "
        f"the last line shown is {_line(shown_lines, len(shown_lines))!r}"
    )


def _line(lines: list[str], number: int) -> str | None:
    return lines[number - 1] if 0 < number <= len(lines) else None


def job_samples(text: str) -> int:
    """The sample lines of the per-job families in ``text``."""
    return sum(1 for line in text.splitlines() if line.startswith(JOB_SAMPLE_PREFIX))


def test_curl_compressed_prints_the_whole_body_plain_curl_prints_and_exits_0(
    running: RunningExporter, served: ServedExporters
) -> None:
    url = f"{running.url}/metrics"

    plain = curl_plain(url)
    compressed = curl_compressed(url)

    assert plain.exit_code == 0, plain.stderr
    text = plain.body.decode()
    assert job_samples(text) == JOB_COUNT * SAMPLES_PER_JOB
    # The body ends with what the exporter renders last: its process metrics, or without
    # them its own health families.
    last_family = (
        EXPORTER_PROCESS_PREFIXES if running is served.default else ("sagemaker_tuning_exporter_",)
    )
    assert text.splitlines()[-1].startswith(last_family), text.splitlines()[-1]
    assert compressed.exit_code == 0, (
        f"curl --compressed exited {compressed.exit_code}: {compressed.stderr}"
    )
    mismatch = first_difference(compressed.body.decode(), text)
    assert mismatch is None, mismatch


def test_the_gzip_body_is_one_member_that_python_reads_whole(running: RunningExporter) -> None:
    status, headers, gzipped = running.get("/metrics", {"Accept-Encoding": "gzip"})
    plain = plain_body(running)

    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    first = read_first_gzip_member(gzipped)
    assert first.is_whole_body, (
        f"{gzip_members(gzipped)} gzip members; the first holds {len(first.text)} bytes of "
        f"{len(gzip.decompress(gzipped))}"
    )
    assert first.text == gzip.decompress(gzipped)
    mismatch = first_difference(first.text.decode(), plain)
    assert mismatch is None, mismatch


def test_chromium_shows_the_whole_body(running: RunningExporter) -> None:
    shown = chromium_text(f"{running.url}/metrics")
    plain = plain_body(running)

    mismatch = first_difference(shown, plain)
    assert mismatch is None, mismatch
    assert job_samples(shown) == JOB_COUNT * SAMPLES_PER_JOB


@pytest.mark.parametrize("accept_encoding", [None, "gzip"])
def test_head_answers_the_headers_of_get_and_no_body(
    served: ServedExporters, accept_encoding: str | None
) -> None:
    # The exporter without process metrics: its body has the same length on every scrape.
    running = served.without_process_metrics
    headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
    status, get_headers, body = running.get("/metrics", headers)
    assert status == 200
    address = urllib.parse.urlsplit(running.url)
    assert address.hostname is not None
    assert address.port is not None

    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("HEAD", "/metrics", headers=headers)
        response = connection.getresponse()
        head_status, head_headers = response.status, dict(response.getheaders())
    finally:
        connection.close()
    after_headers = bytes_after_headers(f"{running.url}/metrics", "HEAD", headers)

    assert head_status == 200
    assert head_headers["Content-Type"] == get_headers["Content-Type"]
    assert int(head_headers["Content-Length"]) == len(body)
    assert head_headers.get("Content-Encoding") == get_headers.get("Content-Encoding")
    assert after_headers == b""
