"""What the bench scripts share: moto's SageMaker on 127.0.0.1, seeded and counting requests.

The server runs in the calling process, so the scripts seed jobs by editing moto's
backends; every request it receives is counted per (region, operation) at the wire,
independently of what the exporter reports about itself, and each
DescribeHyperParameterTuningJob by the job it names. It answers the listing under one of
two semantics (``--listing-semantics``, see :func:`moto_server`), and can answer every request
late, as a distant endpoint would (``aws_latency_seconds``). The rest are small helpers
for the exporter processes the scripts start: a free port, readiness, the end of their
refreshes (:func:`wait_refreshes_ended`), and /proc figures.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"  # moto's account for keys it did not issue
PLACEHOLDER_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench-placeholder",
    "AWS_SECRET_ACCESS_KEY": "bench-placeholder",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
TAGGING_ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API"
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1")
STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
FINISHED = ("Completed", "Completed", "Completed", "Failed", "Stopped")
# The seeded jobs were created over this span, oldest first, the newest an hour ago.
SEED_SPAN_SECONDS = 6 * 86400
# Old running jobs are seeded among the oldest fifth: older than 80% of all jobs.
OLD_JOBS_FRACTION = 5
# How ListHyperParameterTuningJobs is answered (tests/sagemaker_server.py), in words.
LISTING_SEMANTICS = {"moto": "filter, then page", "aws": "page, then filter"}
_FORM = "application/x-www-form-urlencoded"
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")


class RequestCounts:
    """Requests moto received, per (region, operation), the describes per (region, job
    name), and the requests it is answering now; safe to read while it serves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._described: Counter[tuple[str, str]] = Counter()
        self._in_progress = 0

    def add(self, region: str, operation: str, described_job: str | None = None) -> None:
        """Count one request, which is in progress until :meth:`answered`; ``described_job``
        is the job a describe named."""
        with self._lock:
            self._counts[(region, operation)] += 1
            self._in_progress += 1
            if described_job is not None:
                self._described[(region, described_job)] += 1

    def answered(self) -> None:
        """One request counted by :meth:`add` has its answer."""
        with self._lock:
            self._in_progress -= 1

    def received(self) -> int:
        """The requests received so far, all regions and operations."""
        with self._lock:
            return sum(self._counts.values())

    def in_progress(self) -> int:
        """The requests received and not answered yet."""
        with self._lock:
            return self._in_progress

    def snapshot(self) -> dict[tuple[str, str], int]:
        """A copy of the counts so far."""
        with self._lock:
            return dict(self._counts)

    def described(self) -> dict[tuple[str, str], int]:
        """A copy of the describes so far, per (region, job name)."""
        with self._lock:
            return dict(self._described)


def _counting(
    app: Callable[..., Iterable[bytes]], counts: RequestCounts
) -> Callable[..., Iterable[bytes]]:
    """``app`` that first counts each request by its SigV4 region and X-Amz-Target operation,
    and each describe by the job it names, and holds it in progress until ``app`` answers."""
    from exporter.aws.operations import DESCRIBE_OPERATION

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        match = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        operation = str(environ.get("HTTP_X_AMZ_TARGET", "unknown")).rsplit(".", 1)[-1]
        if operation == "unknown" and environ.get("CONTENT_TYPE", "").startswith(_FORM):
            # STS speaks the query protocol: the operation is the form's Action.
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            operation = parse_qs(body.decode()).get("Action", ["unknown"])[0]
        described_job = None
        if operation == DESCRIBE_OPERATION:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            try:
                described_job = str(json.loads(body)["HyperParameterTuningJobName"])
            except (ValueError, KeyError, TypeError):
                described_job = "unknown"
        counts.add(match.group(1) if match else "unknown", operation, described_job)
        try:
            return app(environ, start_response)
        finally:
            counts.answered()

    return counted


def _delaying(
    app: Callable[..., Iterable[bytes]], seconds: float
) -> Callable[..., Iterable[bytes]]:
    """``app`` that answers each request ``seconds`` late, whatever its operation.

    The server runs a thread per connection, so the delay is per request, as a round trip
    to a distant endpoint is: concurrent requests wait side by side, not one after another.
    """

    def delayed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        time.sleep(seconds)
        return app(environ, start_response)

    return delayed


@contextmanager
def moto_server(
    tagging: bool = False,
    listing_semantics: str = "moto",
    aws_latency_seconds: float = 0.0,
    middleware: Callable[[Callable[..., Iterable[bytes]]], Callable[..., Iterable[bytes]]]
    | None = None,
) -> Iterator[tuple[str, RequestCounts]]:
    """moto's server on 127.0.0.1; yields its URL and the counts of the requests it receives.

    With ``tagging``, requests go through the test suite's middleware, whose GetResources
    pages by ResourcesPerPage as AWS does (moto's own also ends a page at 100 tags), and the
    tagging API's endpoint is pointed at the server. With ``listing_semantics`` ``"aws"``,
    they go through it too, and ListHyperParameterTuningJobs pages, then filters, as AWS
    documents for ListTrainingJobs; ``"moto"`` leaves moto's answer, filtered, then paged.
    With ``aws_latency_seconds``, every request (List, Describe, GetResources, STS, ...) is
    answered that much later; it is counted when it arrives. ``middleware``, given the
    server's WSGI app, returns the app to serve in its place: it sees each request before
    the test suite's middleware and moto, within the counting and the latency (a script
    serving an operation moto lacks, as bench/training_jobs.py does).
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    if str(ROOT) not in sys.path:  # the package and the test suite's, for a script in bench/
        sys.path.insert(0, str(ROOT))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    counts = RequestCounts()
    moto_app: Callable[..., Iterable[bytes]] = DomainDispatcherApplication(create_backend_app)
    if tagging or listing_semantics != "moto":
        from tests.sagemaker_server import wire_middleware

        moto_app = wire_middleware(moto_app, listing_semantics=listing_semantics)
    if middleware is not None:
        moto_app = middleware(moto_app)
    if aws_latency_seconds > 0:
        moto_app = _delaying(moto_app, aws_latency_seconds)
    # Counted on arrival, and in progress while it waits out the latency.
    app = _counting(moto_app, counts)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    if tagging:
        os.environ[TAGGING_ENDPOINT_VARIABLE] = url
    try:
        yield url, counts
    finally:
        server.shutdown()
        thread.join()


def moto_backend(region: str, account: str = ACCOUNT) -> Any:
    """moto's in-process SageMaker backend of ``account`` in ``region``."""
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[account][region]


def add_listing_semantics_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--listing-semantics`` flag the scripts share."""
    parser.add_argument(
        "--listing-semantics",
        choices=tuple(LISTING_SEMANTICS),
        default="moto",
        help="how the server answers ListHyperParameterTuningJobs: moto's way (filter, then "
        "page; default) or as AWS documents ListTrainingJobs (page, then filter)",
    )


def listing_semantics_line(mode: str) -> str:
    """A line that says how the listing was answered, e.g. ``listing semantics: aws (page, then filter)``."""
    return f"listing semantics: {mode} ({LISTING_SEMANTICS[mode]})"


def job_name(index: int) -> str:
    """The name of the ``index``-th seeded job, the oldest being 0."""
    return f"job-{index:05d}"


def running_indices(jobs: int, running: int, old_running: int = 0) -> list[int]:
    """The indices of the running jobs :func:`seed_jobs` seeds, ascending (oldest first).

    The newest ``running - old_running`` jobs, plus ``old_running`` jobs spread over the
    oldest fifth, each older than 80% of all jobs (for 10,000 jobs, than 8,000 others).
    """
    oldest_fifth = jobs // OLD_JOBS_FRACTION
    if not 0 <= old_running <= running <= jobs:
        raise ValueError(
            f"expected 0 <= old running <= running <= jobs, got {old_running}, {running}, {jobs}"
        )
    if old_running and (old_running >= oldest_fifth or running - old_running > jobs - oldest_fifth):
        raise ValueError(
            f"{old_running} old running jobs do not fit among the oldest fifth of {jobs}"
        )
    old = [(k + 1) * oldest_fifth // (old_running + 1) for k in range(old_running)]
    return [*old, *range(jobs - (running - old_running), jobs)]


def seed_jobs(
    regions: Sequence[str],
    jobs: int,
    running: int,
    tagged: bool = False,
    old_running: int = 0,
    *,
    account: str = ACCOUNT,
) -> None:
    """``jobs`` per region of ``account``, ``running`` of them InProgress, the rest finished in
    the last 6 days.

    The running jobs are the newest, except ``old_running`` of them, which are older than 80%
    of all jobs (see :func:`running_indices`). With ``tagged``, each job has a ``team`` (one
    of 5) and a ``project`` (one of 17) tag.
    """
    from exporter.demo import create_moto_tuning_job

    now = datetime.now(tz=UTC).replace(tzinfo=None)  # moto keeps naive UTC times
    running_set = set(running_indices(jobs, running, old_running))
    for region in regions:
        backend = moto_backend(region, account)
        # The default account keeps the seed of earlier runs, so their figures stay comparable.
        rng = random.Random(region if account == ACCOUNT else f"{account}/{region}")
        for index in range(jobs):
            name = job_name(index)
            job = create_moto_tuning_job(
                backend,
                name,
                STRATEGIES[index % len(STRATEGIES)],
                {"MaxNumberOfTrainingJobs": 50, "MaxParallelTrainingJobs": 5},
                metric="auc",
                tags={"team": f"team-{index % 5}", "project": f"project-{index % 17}"}
                if tagged
                else None,
            )
            # Spread over six days, oldest first, so modification times differ as in a real account.
            # The newest was modified an hour ago, so changes made now are newer than any of them.
            created = (
                now
                - timedelta(seconds=SEED_SPAN_SECONDS, hours=1)
                + timedelta(seconds=index * SEED_SPAN_SECONDS / jobs)
            )
            is_running = index in running_set
            job.creation_time = created
            job.last_modified_time = created + timedelta(minutes=30)
            job.hyper_parameter_tuning_job_status = (
                "InProgress" if is_running else rng.choice(FINISHED)
            )
            job.hyper_parameter_tuning_end_time = None if is_running else job.last_modified_time
            done = rng.randint(1, 50)
            job.training_job_status_counters = {
                "Completed": done,
                "InProgress": 5 if is_running else 0,
                "RetryableError": rng.randint(0, 3),
                "NonRetryableError": rng.randint(0, 3),
                "Stopped": 0,
            }
            job.objective_status_counters = {"Succeeded": done, "Pending": 0, "Failed": 0}


def write_config(
    path: Path,
    endpoint_url: str,
    regions: Sequence[str],
    ttl: float,
    tags_ttl: float | None = None,
    *,
    describe: bool = True,
    retention: str | None = None,
    full_resync: float | None = None,
    refresh_timeout: float | None = None,
    describe_concurrency: int | None = None,
) -> None:
    """An exporter configuration for ``regions`` of the moto server at ``endpoint_url``.

    With ``tags_ttl``, it publishes the tags ``team`` and ``project``, read that often;
    without ``describe``, it describes no job; ``retention`` (a duration such as ``10m``)
    sets ``per_job_metrics.retention``; ``full_resync`` and ``refresh_timeout`` (seconds)
    set ``cache.full_resync`` and ``cache.refresh_timeout``, and ``describe_concurrency``
    ``describe.concurrency``, left to the exporter when None.
    """
    text = (
        f"regions: [{', '.join(regions)}]\n"
        f"aws:\n  endpoint_url: {endpoint_url}\n  max_attempts: 2\n"
        f"cache:\n  ttl: {ttl}\n"
    )
    if full_resync is not None:
        text += f"  full_resync: {full_resync}\n"
    if refresh_timeout is not None:
        text += f"  refresh_timeout: {refresh_timeout}\n"
    if tags_ttl is not None:  # continues the cache section
        text += f"  tags_ttl: {tags_ttl}\ntags: [team, project]\n"
    if not describe:
        text += "describe:\n  enabled: false\n"
    elif describe_concurrency is not None:
        text += f"describe:\n  concurrency: {describe_concurrency}\n"
    if retention is not None:
        text += f"per_job_metrics:\n  retention: {retention}\n"
    path.write_text(text)


def exporter_command(config: Path, port: int) -> list[str]:
    """The command that runs the exporter with ``config`` on 127.0.0.1:``port``."""
    return [
        sys.executable,
        "-m",
        "exporter",
        "--config.file",
        str(config),
        "--web.listen-address",
        f"127.0.0.1:{port}",
    ]


def start_process(command: Sequence[str]) -> subprocess.Popen[str]:
    """``command`` run from the checkout with placeholder credentials, its stderr kept."""
    return subprocess.Popen(
        list(command),
        cwd=ROOT,
        env={**os.environ, **PLACEHOLDER_ENVIRONMENT},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 900.0) -> None:
    """Poll ``url``/-/ready until it answers 200; raise if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the server exited: {process.stderr.read() if process.stderr else ''}"
            )
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} was not ready within {timeout}s")


# The exporter's own figures that move when a refresh of a target publishes, sends a request
# or ends: every successful refresh adds a listing, every failed one a failure; a refresh
# serves its listing before its describes, then its end, each with its duration so far.
_LISTINGS = "sagemaker_tuning_exporter_listings_total"
_FAILURES = "sagemaker_tuning_exporter_refresh_failures_total"
_DURATION = "sagemaker_tuning_exporter_refresh_duration_seconds"
_REQUESTS = "sagemaker_tuning_exporter_api_requests_total"
_ERRORS = "sagemaker_tuning_exporter_api_errors_total"
_PROGRESS_LINES = tuple(
    f"{name}{{" for name in (_LISTINGS, _FAILURES, _DURATION, _REQUESTS, _ERRORS)
)
# How long the exporters and moto must stay quiet before their refreshes count as ended.
SETTLE_SECONDS = 0.25


@dataclass(frozen=True)
class RefreshProgress:
    """How far the refreshes of one or more exporters have come, read from their bodies.

    Keys start with the exporter's index among the bodies read. ``refreshes``: per
    (index, account, region), the refreshes that listed (listings, full or incremental) or
    failed; ``durations``: the target's refresh_duration_seconds; ``requests``: per
    (index, series labels), the AWS requests and failed attempts the exporter counted.
    """

    refreshes: dict[tuple[int, str, str], float]
    durations: dict[tuple[int, str, str], float]
    requests: dict[tuple[int, str, tuple[tuple[str, str], ...]], float]

    def refreshes_since(self, since: RefreshProgress | None) -> dict[tuple[int, str, str], float]:
        """Per target, the refreshes that listed or failed since ``since`` (all, without it)."""
        before = since.refreshes if since is not None else {}
        return {target: count - before.get(target, 0.0) for target, count in self.refreshes.items()}


def refresh_progress(texts: Sequence[str]) -> RefreshProgress:
    """The :class:`RefreshProgress` of the exporters whose /metrics bodies are ``texts``.

    Only the lines of the few families it reads are parsed: a body of 10,000 jobs per
    region holds hundreds of thousands of others.
    """
    from prometheus_client.parser import text_string_to_metric_families

    refreshes: dict[tuple[int, str, str], float] = {}
    durations: dict[tuple[int, str, str], float] = {}
    requests: dict[tuple[int, str, tuple[tuple[str, str], ...]], float] = {}
    for index, text in enumerate(texts):
        lines = [line for line in text.splitlines() if line.startswith(_PROGRESS_LINES)]
        for family in text_string_to_metric_families("\n".join(lines) + "\n"):
            for sample in family.samples:
                labels = sample.labels
                if sample.name in (_LISTINGS, _FAILURES, _DURATION):
                    target = (index, labels.get("account", ""), labels["region"])
                    if sample.name == _DURATION:
                        durations[target] = sample.value
                    else:
                        refreshes[target] = refreshes.get(target, 0.0) + sample.value
                else:
                    requests[(index, sample.name, tuple(sorted(labels.items())))] = sample.value
    return RefreshProgress(refreshes, durations, requests)


@dataclass(frozen=True)
class RefreshesEnded:
    """What :func:`wait_refreshes_ended` saw once the refreshes had ended.

    ``progress`` and ``texts`` are of its last scrape, and ``moto_requests`` are moto's
    counts (per region and operation) as that scrape began: the requests of the refreshes
    that had ended, and none of one that scrape may have started. ``ended_by`` is the
    time.monotonic() by which they had all ended: the end of the first of its two quiet
    scrapes.
    """

    progress: RefreshProgress
    texts: list[str]
    moto_requests: dict[tuple[str, str], int]
    ended_by: float


@dataclass(frozen=True)
class _Scraped:
    """One scrape of :func:`wait_refreshes_ended`, with what moto did around it."""

    progress: RefreshProgress
    texts: list[str]
    moto_requests: dict[tuple[str, str], int]
    # No request in progress at moto as it began and as it ended, and none received meanwhile.
    quiet: bool
    ended_at: float


def _scrape_watching_moto(scrape: Callable[[], Sequence[str]], counts: RequestCounts) -> _Scraped:
    idle_before, requests = counts.in_progress() == 0, counts.snapshot()
    texts = list(scrape())
    # Read at once: a refresh this scrape started sends its first request soon after.
    quiet = (
        idle_before and counts.in_progress() == 0 and counts.received() == sum(requests.values())
    )
    ended_at = time.monotonic()
    return _Scraped(refresh_progress(texts), texts, requests, quiet, ended_at)


def wait_refreshes_ended(
    scrape: Callable[[], Sequence[str]],
    counts: RequestCounts,
    since: RefreshProgress | None = None,
    *,
    timeout: float = 900.0,
    settle: float = SETTLE_SECONDS,
) -> RefreshesEnded:
    """Scrape until the refreshes of the exporters ``scrape`` reads have ended.

    ``scrape`` returns the /metrics body of each exporter (all of them share moto, whose
    ``counts`` they are). With ``since``, every target must also have refreshed once more
    than it shows; the scrapes start the refreshes that are due, as any scrape does.

    No figure says that a refresh has ended: the exporter serves a refresh's listing
    (listings_total, last_refresh_success_timestamp_seconds) before its describes, and
    refresh_duration_seconds moves both then and at the end. So the end is read as quiet:
    two scrapes at least ``settle`` seconds apart show the same figures for every target
    (refreshes, durations, the exporter's own request and error counters), and moto
    received no request from the start of the first to the end of the second and had none
    in progress at their starts and ends. A refresh still running then would have sent a
    request (counted at once by the exporter and by moto), be waiting for one (moto holds
    it in progress), or have ended (its duration changes). What goes unseen is work between
    two requests that lasts ``settle`` seconds (choosing the jobs to describe, rendering
    lines), far longer than that takes at these sizes. Raises RuntimeError after
    ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    previous: _Scraped | None = None
    while True:
        current = _scrape_watching_moto(scrape, counts)
        if (
            current.quiet
            and previous is not None
            and previous.progress == current.progress
            and previous.moto_requests == current.moto_requests
            and current.ended_at - previous.ended_at >= settle
            and all(count >= 1 for count in current.progress.refreshes_since(since).values())
            and (since is None or since.refreshes.keys() <= current.progress.refreshes.keys())
        ):
            return RefreshesEnded(
                current.progress, current.texts, current.moto_requests, previous.ended_at
            )
        # A quiet scrape may be the first of a pair; one that saw moto busy is not.
        previous = current if current.quiet else None
        if current.ended_at > deadline:
            raise RuntimeError(
                f"the exporters' refreshes did not end within {timeout:g}s: refreshes since "
                f"the wait began {current.progress.refreshes_since(since)}, moto answering "
                f"{counts.in_progress()} requests"
            )
        time.sleep(settle)


def process_status(pid: int) -> dict[str, str]:
    """The fields of /proc/PID/status (VmRSS, VmHWM, Threads, ...), values as written."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def status_kib(status: dict[str, str], field: str) -> float:
    """A ``kB`` field of :func:`process_status` (VmRSS, VmHWM) in KiB; NaN when absent."""
    value = status.get(field)
    return float(value.split()[0]) if value else math.nan


def peak_rss_kib(pid: int) -> float:
    """The process's peak resident set size (VmHWM) in KiB."""
    return status_kib(process_status(pid), "VmHWM")


def percentile(values: Sequence[float], percent: float) -> float:
    """The ``percent``-th percentile (inclusive method); NaN without values."""
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(percent) - 1]


def machine() -> str:
    """Cores, CPU model and Python version of this machine."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"
