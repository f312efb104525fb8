"""Scrape latency and freshness while the exporter refreshes against a slow AWS, for a bounded time.

    python bench/scrape_latency.py --jobs 1000 --regions 1 --ttl 10 --aws-latency-ms 100 --duration 120 --json out.json
    python bench/scrape_latency.py --jobs 200 --regions 1 --ttl 5 --duration 20     # a quick run
    python bench/scrape_latency.py --jobs 10000 --regions 4 --ttl 20 --full-resync 60 --prometheus --prometheus-interval 10 --prometheus-timeout 8 --duration 300 --json out.json
    python bench/scrape_latency.py --jobs 200 --regions 1 --ttl 5 --duration 30 --prometheus --prometheus-interval 2 --prometheus-timeout 2   # a quick run

moto's SageMaker server runs in this process on 127.0.0.1 with ``--jobs`` jobs in each of
``--regions`` regions (``--running`` of them InProgress, the newest), answering the listing
under ``--listing-semantics``, and it answers every request it receives (List, Describe,
GetResources, ...) ``--aws-latency-ms`` late, as a distant endpoint would. The exporter runs
as its own process with ``cache.ttl: --ttl`` (``--full-resync``, ``--refresh-timeout`` and
``--describe-concurrency`` set ``cache.full_resync``, ``cache.refresh_timeout`` and
``describe.concurrency``, left to the exporter's defaults otherwise), describing jobs, as it does by default. Once it is ready and has answered a
first scrape, for ``--duration`` seconds:

* ``client`` mode (the default): one scraper scrapes /metrics every ``--interval`` seconds
  as Prometheus does (its Accept header, gzip, X-Prometheus-Scrape-Timeout-Seconds
  ``--scrape-timeout``), reading the whole body, and records each scrape's latency;
* ``--prometheus``: a real Prometheus (the binary on PATH) on 127.0.0.1 scrapes the
  exporter every ``--prometheus-interval`` seconds with ``--prometheus-timeout``; afterwards
  its HTTP API gives max_over_time(scrape_duration_seconds), min_over_time(up),
  count_over_time(up) over the run, and its raw scrape_duration_seconds samples the scrapes
  slower than half the timeout. A side scraper of our own (every ``--side-interval``
  seconds, 2) records its latencies meanwhile.

Freshness: halfway through, one running job of the first region counts one more completed
training job (its TrainingJobStatusCounters, as bench/benchmark.py changes running jobs),
and the scraper (the side scraper with ``--prometheus``) decodes every body it gets from then
on until ``sagemaker_tuning_job_training_jobs`` shows the new count: the seconds from the
change to the end of that scrape, next to the TTL. A scrape starts a refresh once the last
one began a TTL ago and answers from the cache; the refresh serves its listing before its
describes, so the change shows within about the TTL and two intervals.

A scrape fails when it answers other than 200, takes longer than its timeout, or brings a
body shorter than its Content-Length; with ``--prometheus``, a Prometheus scrape fails when
``up`` is 0. The run is bounded by ``--duration`` (an hour at most) and the intervals (0.1 s
at least). It prints the machine, the load averages, the settings and a table, writes
``--json``, and exits 1 when any scrape failed. Loopback only; placeholder credentials.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from harness import (
    PLACEHOLDER_ENVIRONMENT,
    REGIONS,
    ROOT,
    add_listing_semantics_flag,
    exporter_command,
    free_port,
    job_name,
    listing_semantics_line,
    load_average,
    machine,
    moto_backend,
    moto_server,
    percentile,
    seed_jobs,
    wait_ready,
    write_config,
)

# What Prometheus sends to a target that did not ask for a scrape protocol.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
READ_CHUNK_BYTES = 1 << 20
# The family and label whose value the freshness check waits for.
FRESHNESS_FAMILY = b"sagemaker_tuning_job_training_jobs{"
FRESHNESS_STATUS = "Completed"
# Scrapes slower than these are counted apart (besides those slower than the timeout).
SLOW_SCRAPE_SECONDS = (0.5, 2.0)
JOB_NAME = "sagemaker-tuning-exporter"
# The first scrape, just after /-/ready, is timed apart, with this timeout: one that found a
# target without a snapshot yet would wait for its first refresh.
FIRST_SCRAPE_TIMEOUT_SECONDS = 300.0
PROMETHEUS_READY_TIMEOUT_SECONDS = 60.0
LOAD_SAMPLE_SECONDS = 5.0
# Hard limits that keep a mistyped flag from turning a benchmark into a flood.
MAX_DURATION_SECONDS = 3600.0
MIN_INTERVAL_SECONDS = 0.1
MAX_JOBS = 100_000
MAX_AWS_LATENCY_MS = 10_000.0


@dataclass
class Scrape:
    """The outcome of one scrape."""

    at: float  # when it started, seconds after the scraping began
    seconds: float
    failure: str | None  # None, or why it failed: status_503, timeout, truncated, ...
    wire_bytes: int = 0


@dataclass
class Change:
    """The change of one running job made halfway, and when a scrape first showed it."""

    region: str
    job: str
    before: int
    expected: int
    changed_at: float = math.nan  # time.monotonic() of the change
    seen_after: float | None = None  # seconds from the change to the end of the scrape
    checked_scrapes: int = 0
    last_value_seen: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def made(self) -> bool:
        """Whether the change was made."""
        return not math.isnan(self.changed_at)


class Scraper:
    """Scrapes /metrics every ``interval`` seconds in its own thread until stopped; a scrape
    that overruns its interval skips the ticks it missed, as Prometheus does."""

    def __init__(
        self, port: int, interval: float, timeout: float, change: Change | None, name: str
    ) -> None:
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.change = change
        self.scrapes: list[Scrape] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._headers = {
            "Accept": PROMETHEUS_ACCEPT,
            "Accept-Encoding": "gzip",
            "User-Agent": "Prometheus/2.42.0 (bench/scrape_latency.py)",
            "X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}",
        }
        self.started = math.nan

    def start(self) -> None:
        """Start scraping now."""
        self.started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stop after the scrape in flight."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        next_at = self.started
        while not self._stop.is_set():
            started = time.monotonic()
            scrape, body = scrape_once(self.port, self._headers, self.timeout)
            scrape.at = started - self.started
            self.scrapes.append(scrape)
            if body is not None:
                self._check_freshness(started, body)
            next_at += self.interval * max(
                1, math.ceil((time.monotonic() - next_at) / self.interval)
            )
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _check_freshness(self, started: float, body: _Body) -> None:
        """Once the change is made, look for it in each body of a scrape begun after it."""
        change = self.change
        if change is None:
            return
        with change.lock:
            if not change.made() or change.seen_after is not None or started < change.changed_at:
                return
        value = training_jobs_value(body, change.region, change.job, FRESHNESS_STATUS)
        with change.lock:
            change.checked_scrapes += 1
            change.last_value_seen = value
            if value == change.expected:
                change.seen_after = body.finished - change.changed_at


@dataclass
class _Body:
    """A body as it came over the wire, and when its last byte arrived."""

    content: bytes
    gzipped: bool
    finished: float


def scrape_once(port: int, headers: dict[str, str], timeout: float) -> tuple[Scrape, _Body | None]:
    """One scrape of /metrics, the whole body read; the body too when the scrape succeeded."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    chunks: list[bytes] = []
    try:
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            response.read()
            return Scrape(0.0, time.perf_counter() - started, f"status_{response.status}"), None
        length = int(response.getheader("Content-Length") or -1)
        gzipped = response.getheader("Content-Encoding") == "gzip"
        while chunk := response.read(READ_CHUNK_BYTES):
            chunks.append(chunk)
    except TimeoutError:
        return Scrape(0.0, time.perf_counter() - started, "timeout"), None
    except http.client.IncompleteRead:
        return Scrape(0.0, time.perf_counter() - started, "truncated"), None
    except (OSError, http.client.HTTPException) as error:
        return Scrape(0.0, time.perf_counter() - started, f"error_{type(error).__name__}"), None
    finally:
        connection.close()
    finished = time.monotonic()
    seconds = time.perf_counter() - started
    content = b"".join(chunks)
    if seconds > timeout:
        return Scrape(0.0, seconds, "timeout", len(content)), None
    if length >= 0 and len(content) != length:
        return Scrape(0.0, seconds, "truncated", len(content)), None
    return Scrape(0.0, seconds, None, len(content)), _Body(content, gzipped, finished)


def decoded_chunks(body: _Body) -> Iterator[bytes]:
    """The body's text in pieces, gzip members decoded one after another."""
    if not body.gzipped:
        yield body.content
        return
    data = body.content
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    while data:
        yield decoder.decompress(data, READ_CHUNK_BYTES)
        if decoder.eof:  # the exporter's gzip stream is several members
            data = decoder.unused_data
            decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        else:
            data = decoder.unconsumed_tail
    yield decoder.flush()


def training_jobs_value(body: _Body, region: str, job: str, status: str) -> float | None:
    """The value of ``sagemaker_tuning_job_training_jobs`` for ``job`` in ``region`` with
    ``training_job_status=status``; None when the body has no such line. Stops at the line."""
    needle = f'job_name="{job}"'.encode()
    wanted = (f'region="{region}"'.encode(), f'training_job_status="{status}"'.encode())
    carry = b""
    try:
        for chunk in decoded_chunks(body):
            text = carry + chunk
            end = text.rfind(b"\n") + 1
            carry = text[end:]
            position = text.find(needle, 0, end)
            while position >= 0:
                start = text.rfind(b"\n", 0, position) + 1
                stop = text.find(b"\n", position)
                line = text[start:stop]
                if line.startswith(FRESHNESS_FAMILY) and all(label in line for label in wanted):
                    return float(line.rsplit(b"}", 1)[1].split()[0])
                position = text.find(needle, stop, end)
    except (zlib.error, ValueError, IndexError):
        return None
    return None


def change_running_job(regions: Sequence[str], jobs: int, running: int) -> Change:
    """The change the freshness check waits for, not made yet: the oldest running job of the
    first region (seeded by harness.seed_jobs) is to count one more completed training job."""
    region = regions[0]
    name = job_name(jobs - running)
    job = moto_backend(region).hyper_parameter_tuning_jobs[name]
    before = int(job.training_job_status_counters[FRESHNESS_STATUS])
    return Change(region=region, job=name, before=before, expected=before + 1)


def make_change(change: Change) -> None:
    """Make ``change`` in moto, as bench/benchmark.py's change_jobs moves a running job on."""
    job = moto_backend(change.region).hyper_parameter_tuning_jobs[change.job]
    counters = dict(job.training_job_status_counters)
    counters[FRESHNESS_STATUS] = change.expected
    with change.lock:
        job.training_job_status_counters = counters
        job.last_modified_time = datetime.now(tz=UTC).replace(tzinfo=None)
        change.changed_at = time.monotonic()


class LoadSampler:
    """The 1-minute load average every few seconds, in its own thread, until stopped."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(LOAD_SAMPLE_SECONDS):
                return


class ExporterProcess:
    """The exporter as its own process from the checkout, stderr drained as it comes (a full
    pipe would stall its logging, and with it the exporter)."""

    def __init__(self, config: Path, port: int) -> None:
        self.stderr_lines: list[str] = []
        self.process = subprocess.Popen(
            exporter_command(config, port),
            cwd=ROOT,
            env={**os.environ, **PLACEHOLDER_ENVIRONMENT},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._drain = threading.Thread(target=self._read_stderr, name="stderr", daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        if self.process.stderr is None:
            return
        for line in self.process.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._drain.join(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns 0 when no scrape failed, 1 otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    regions = REGIONS[: args.regions]
    os.environ.update(PLACEHOLDER_ENVIRONMENT)
    load_before = load_average()
    with (
        LoadSampler() as loads,
        moto_server(
            listing_semantics=args.listing_semantics,
            aws_latency_seconds=args.aws_latency_ms / 1000,
        ) as (endpoint_url, counts),
    ):
        started = time.monotonic()
        seed_jobs(regions, args.jobs, args.running)
        seed_seconds = time.monotonic() - started
        print(
            f"seeded {args.jobs} jobs in each of {len(regions)} regions in {seed_seconds:.1f}s",
            file=sys.stderr,
        )
        with tempfile.TemporaryDirectory() as scratch:
            config = Path(scratch) / "config.yaml"
            write_config(
                config,
                endpoint_url,
                regions,
                args.ttl,
                full_resync=args.full_resync,
                refresh_timeout=args.refresh_timeout,
                describe_concurrency=args.describe_concurrency,
            )
            report = run(args, regions, config, Path(scratch))
        requests = Counter[str]()
        for (_, operation), count in counts.snapshot().items():
            requests[operation] += count
    report["seed_seconds"] = seed_seconds
    report["aws_requests_by_operation"] = dict(sorted(requests.items()))
    report["load_average_before"] = load_before
    report["load_average_after"] = load_average()
    report["load_average_1m_max_during"] = max(loads.samples, default=math.nan)
    report["command"] = " ".join(["python", "bench/scrape_latency.py", *(argv or sys.argv[1:])])
    print(summary_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if report["failed"]:
        print("FAILED: some scrapes failed", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The script's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="tuning jobs per region")
    parser.add_argument("--regions", type=int, default=1, help="number of regions (max 4)")
    parser.add_argument("--running", type=int, default=20, help="InProgress jobs per region")
    parser.add_argument("--ttl", type=float, default=10.0, help="the exporter's cache.ttl")
    parser.add_argument(
        "--full-resync",
        type=float,
        help="the exporter's cache.full_resync in seconds (default: the exporter's)",
    )
    parser.add_argument(
        "--refresh-timeout",
        type=float,
        help="the exporter's cache.refresh_timeout in seconds (default: the exporter's)",
    )
    parser.add_argument(
        "--describe-concurrency",
        type=int,
        help="the exporter's describe.concurrency (default: the exporter's)",
    )
    parser.add_argument(
        "--aws-latency-ms",
        type=float,
        default=100.0,
        help="milliseconds moto waits before answering each request (default 100)",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of scraping")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between the client's scrapes"
    )
    parser.add_argument(
        "--scrape-timeout",
        type=float,
        default=10.0,
        help="our scrapes' timeout, announced in X-Prometheus-Scrape-Timeout-Seconds",
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="a real Prometheus scrapes the exporter (the binary on PATH), not the client",
    )
    parser.add_argument(
        "--prometheus-interval", type=float, default=10.0, help="Prometheus' scrape_interval (s)"
    )
    parser.add_argument(
        "--prometheus-timeout", type=float, default=8.0, help="Prometheus' scrape_timeout (s)"
    )
    parser.add_argument(
        "--side-interval",
        type=float,
        default=2.0,
        help="with --prometheus, seconds between our side scraper's scrapes",
    )
    add_listing_semantics_flag(parser)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse values that would make the run unbounded or meaningless."""
    if not 0 < args.duration <= MAX_DURATION_SECONDS:
        parser.error(f"--duration must be over 0 and at most {MAX_DURATION_SECONDS:g}")
    if not 1 <= args.regions <= len(REGIONS):
        parser.error(f"--regions must be between 1 and {len(REGIONS)}")
    if not 1 <= args.running <= args.jobs <= MAX_JOBS:
        parser.error(f"expected 1 <= --running <= --jobs <= {MAX_JOBS}")
    if not 0 <= args.aws_latency_ms <= MAX_AWS_LATENCY_MS:
        parser.error(f"--aws-latency-ms must be from 0 to {MAX_AWS_LATENCY_MS:g}")
    for flag in ("interval", "side_interval", "prometheus_interval"):
        if getattr(args, flag) < MIN_INTERVAL_SECONDS:
            parser.error(f"--{flag.replace('_', '-')} must be at least {MIN_INTERVAL_SECONDS:g}")
    if args.ttl <= 0 or args.scrape_timeout <= 0 or args.prometheus_timeout <= 0:
        parser.error("--ttl, --scrape-timeout and --prometheus-timeout must be over 0")
    if args.prometheus_timeout > args.prometheus_interval:
        parser.error("--prometheus-timeout must not exceed --prometheus-interval (Prometheus')")
    if args.prometheus and shutil.which("prometheus") is None:
        parser.error("--prometheus needs the prometheus binary on PATH (Debian: prometheus)")


def run(
    args: argparse.Namespace, regions: Sequence[str], config: Path, scratch: Path
) -> dict[str, Any]:
    """Start the exporter, scrape it as the mode says for the duration, and report."""
    port = free_port()
    started = time.monotonic()
    exporter = ExporterProcess(config, port)
    prometheus_figures: dict[str, Any] | None = None
    try:
        wait_ready(f"http://127.0.0.1:{port}", exporter.process)
        ready_seconds = time.monotonic() - started
        exporter_cwd = os.readlink(f"/proc/{exporter.process.pid}/cwd")
        first, _ = scrape_once(
            port,
            {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
            FIRST_SCRAPE_TIMEOUT_SECONDS,
        )
        change = change_running_job(regions, args.jobs, args.running)
        if args.prometheus:
            prometheus_figures, scraper = scrape_with_prometheus(args, port, change, scratch)
        else:
            scraper = Scraper(port, args.interval, args.scrape_timeout, change, "client")
            scraper.start()
            scrape_for(args.duration, scraper, change)
    finally:
        exporter.stop()
    return build_report(
        args,
        regions,
        ready_seconds=ready_seconds,
        first=first,
        scraper=scraper,
        change=change,
        prometheus=prometheus_figures,
        exporter=exporter,
        exporter_cwd=exporter_cwd,
    )


def scrape_for(duration: float, scraper: Scraper, change: Change) -> None:
    """Let ``scraper`` (started) run ``duration`` seconds, making ``change`` halfway; stop it."""
    time.sleep(max(0.0, scraper.started + duration / 2 - time.monotonic()))
    make_change(change)
    time.sleep(max(0.0, scraper.started + duration - time.monotonic()))
    scraper.stop()


def scrape_with_prometheus(
    args: argparse.Namespace, port: int, change: Change, scratch: Path
) -> tuple[dict[str, Any], Scraper]:
    """A Prometheus scrapes the exporter for the duration beside our side scraper; its figures."""
    config = scratch / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "scrape_interval": f"{args.prometheus_interval:g}s",
                    "scrape_timeout": f"{args.prometheus_timeout:g}s",
                },
                "scrape_configs": [
                    {
                        "job_name": JOB_NAME,
                        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                    }
                ],
            }
        )
    )
    with running_prometheus(config, scratch / "prometheus-data") as url:
        scraper = Scraper(port, args.side_interval, args.scrape_timeout, change, "side")
        scraper.start()
        scrape_for(args.duration, scraper, change)
        window = math.ceil(time.monotonic() - scraper.started) + 1
        figures = prometheus_figures(url, window, args.prometheus_timeout)
    return figures, scraper


@contextmanager
def running_prometheus(config: Path, data_dir: Path) -> Iterator[str]:
    """A Prometheus process on 127.0.0.1 with ``config``, ready; yields its base URL.

    As tests/prometheus.py runs it, which a script in bench/ does not import.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not on PATH (Debian package 'prometheus')")
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
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PROMETHEUS_READY_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {process.returncode}")
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"prometheus was not ready within {PROMETHEUS_READY_TIMEOUT_SECONDS:g}s"
                )
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(prometheus_url: str, promql: str, at: float) -> list[dict[str, Any]]:
    """The result of an instant query at ``at`` (Unix seconds)."""
    parameters = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    with urllib.request.urlopen(
        f"{prometheus_url}/api/v1/query?{parameters}", timeout=60
    ) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {promql!r}: {body}")
    return list(body["data"]["result"])


def prometheus_figures(url: str, window: int, timeout: float) -> dict[str, Any]:
    """What Prometheus recorded of its scrapes of the exporter over the last ``window`` s."""
    at = time.time()
    selector = f'{{job="{JOB_NAME}"}}'
    span = f"[{window}s]"

    def scalar(promql: str) -> float | None:
        result = query(url, promql, at)
        return float(result[0]["value"][1]) if result else None

    # The raw samples: a subquery would count a sample once per step, not once per scrape.
    raw = query(url, f"scrape_duration_seconds{selector}{span}", at)
    durations = [float(value) for series in raw for _, value in series["values"]]
    up_raw = query(url, f"up{selector}{span}", at)
    ups = [float(value) for series in up_raw for _, value in series["values"]]
    slow_bound = timeout / 2
    return {
        "window_seconds": window,
        "max_scrape_duration_seconds": scalar(
            f"max_over_time(scrape_duration_seconds{selector}{span})"
        ),
        "min_up": scalar(f"min_over_time(up{selector}{span})"),
        "scrapes": scalar(f"count_over_time(up{selector}{span})"),
        "scrapes_down": sum(1 for value in ups if value != 1.0),
        "slow_bound_seconds": slow_bound,
        "scrapes_over_slow_bound": sum(1 for value in durations if value > slow_bound),
        "scrape_durations_seconds": durations,
        "samples_scraped_max": scalar(f"max_over_time(scrape_samples_scraped{selector}{span})"),
    }


def latency_figures(scrapes: Sequence[Scrape], timeout: float) -> dict[str, Any]:
    """Count, percentiles, slow scrapes and failures of ``scrapes``."""
    failures = Counter(s.failure for s in scrapes if s.failure is not None)
    seconds = [s.seconds for s in scrapes]
    ok = [s.seconds for s in scrapes if s.failure is None]
    return {
        "count": len(scrapes),
        "p50": percentile(ok, 50),
        "p99": percentile(ok, 99),
        "max": max(seconds, default=math.nan),
        "over_seconds": {
            f"{bound:g}": sum(1 for s in seconds if s > bound) for bound in SLOW_SCRAPE_SECONDS
        },
        "over_timeout": sum(1 for s in seconds if s > timeout),
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "wire_bytes_max": max((s.wire_bytes for s in scrapes), default=0),
        "slowest": [
            {"at": round(s.at, 1), "seconds": round(s.seconds, 3), "failure": s.failure}
            for s in sorted(scrapes, key=lambda s: s.seconds, reverse=True)[:10]
        ],
        "scrapes": [[round(s.at, 2), round(s.seconds, 4), s.failure] for s in scrapes],
    }


def exporter_package(cwd: str) -> str:
    """Where the exporter process imports ``exporter`` from: the same interpreter, directory
    and environment, asked to print the package's file."""
    return subprocess.run(
        [sys.executable, "-c", "import exporter; print(exporter.__file__)"],
        cwd=cwd,
        env={**os.environ, **PLACEHOLDER_ENVIRONMENT},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def checkout_state() -> str:
    """The checkout's commit, and how many tracked files are changed in it."""

    binary = shutil.which("git")
    if binary is None:
        return "unknown (no git)"

    def git(*arguments: str) -> str:
        return subprocess.run(
            [binary, "-C", str(ROOT), *arguments],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.rstrip()  # not the leading space of a porcelain line

    changed = [
        line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
    ]
    return f"{git('rev-parse', '--short', 'HEAD')}" + (
        f" with {len(changed)} changed files" if changed else ""
    )


def build_report(
    args: argparse.Namespace,
    regions: Sequence[str],
    *,
    ready_seconds: float,
    first: Scrape,
    scraper: Scraper,
    change: Change,
    prometheus: dict[str, Any] | None,
    exporter: ExporterProcess,
    exporter_cwd: str,
) -> dict[str, Any]:
    """The figures, as a JSON-ready dict."""
    client = latency_figures(scraper.scrapes, args.scrape_timeout)
    failed = client["failed"] > 0 or first.failure is not None
    if prometheus is not None:
        failed = failed or not prometheus["scrapes"] or prometheus["scrapes_down"] > 0
    stderr = exporter.stderr_lines
    return {
        "machine": machine(),
        "checkout": checkout_state(),
        "exporter_package": exporter_package(exporter_cwd),
        "exporter_cwd": exporter_cwd,
        "settings": {
            "mode": "prometheus" if args.prometheus else "client",
            "jobs_per_region": args.jobs,
            "regions": list(regions),
            "running_per_region": args.running,
            "listing_semantics": args.listing_semantics,
            "aws_latency_ms": args.aws_latency_ms,
            "ttl_seconds": args.ttl,
            "full_resync_seconds": args.full_resync,
            "refresh_timeout_seconds": args.refresh_timeout,
            "describe": True,
            "describe_concurrency": args.describe_concurrency,
            "duration_seconds": args.duration,
            "client_interval_seconds": args.side_interval if args.prometheus else args.interval,
            "scrape_timeout_seconds": args.scrape_timeout,
            "prometheus_interval_seconds": args.prometheus_interval if args.prometheus else None,
            "prometheus_timeout_seconds": args.prometheus_timeout if args.prometheus else None,
        },
        "exporter_ready_seconds": ready_seconds,
        "first_scrape": {
            "seconds": first.seconds,
            "failure": first.failure,
            "wire_bytes": first.wire_bytes,
        },
        "client": client,
        "freshness": {
            "region": change.region,
            "job": change.job,
            "training_jobs_completed_before": change.before,
            "expected": change.expected,
            "changed_at_seconds": change.changed_at - scraper.started if change.made() else None,
            "seen_after_seconds": change.seen_after,
            "scrapes_checked": change.checked_scrapes,
            "last_value_seen": change.last_value_seen,
        },
        "prometheus": prometheus,
        "exporter_log_lines": len(stderr),
        "exporter_warnings_and_errors": sum(
            "level=ERROR" in line or "level=WARNING" in line for line in stderr
        ),
        "exporter_log_tail": stderr[-20:],
        "failed": failed,
    }


def summary_table(report: dict[str, Any]) -> str:
    """The figures as a Markdown table, after the machine, the load and the settings."""
    settings, client, fresh = report["settings"], report["client"], report["freshness"]
    resync = settings["full_resync_seconds"]
    refresh_timeout = settings["refresh_timeout_seconds"]
    concurrency = settings.get("describe_concurrency")
    describe_concurrency = (
        "describe.concurrency default"
        if concurrency is None
        else f"describe.concurrency {concurrency}"
    )
    over = client["over_seconds"]
    failures = ", ".join(f"{k} {v}" for k, v in sorted(client["failures"].items())) or "none"
    who = "side scraper" if settings["mode"] == "prometheus" else "client"
    seen = fresh["seen_after_seconds"]
    freshness = (
        f"{seen:.1f} s (TTL {settings['ttl_seconds']:g} s; {fresh['scrapes_checked']} scrapes checked)"
        if seen is not None
        else f"not seen by the end (TTL {settings['ttl_seconds']:g} s; last value "
        f"{fresh['last_value_seen']}, {fresh['scrapes_checked']} scrapes checked)"
    )
    first = report["first_scrape"]
    rows = [
        ("exporter ready after (s)", f"{report['exporter_ready_seconds']:.1f}"),
        (
            "first scrape (s)",
            f"{first['seconds']:.3f}" + (f" ({first['failure']})" if first["failure"] else ""),
        ),
        (
            f"{who} scrapes, every {settings['client_interval_seconds']:g} s",
            f"{client['count']}",
        ),
        (
            f"{who} latency p50 / p99 / max (s)",
            f"{client['p50']:.3f} / {client['p99']:.3f} / {client['max']:.3f}",
        ),
        (
            f"{who} scrapes over 0.5 s / 2 s / the timeout ({settings['scrape_timeout_seconds']:g} s)",
            f"{over['0.5']} / {over['2']} / {client['over_timeout']}",
        ),
        (f"{who} failed scrapes", f"{client['failed']} ({failures})"),
        ("body on the wire, largest (MB)", f"{client['wire_bytes_max'] / 1e6:.2f}"),
        (
            f"freshness: change of {fresh['job']} ({fresh['region']}) at "
            + (
                f"{fresh['changed_at_seconds']:.0f} s"
                if fresh["changed_at_seconds"] is not None
                else "-"
            )
            + ", seen after",
            freshness,
        ),
    ]
    prometheus = report["prometheus"]
    if prometheus is not None:
        interval = settings["prometheus_interval_seconds"]
        timeout = settings["prometheus_timeout_seconds"]

        def number(value: float | None, form: str) -> str:
            return "none" if value is None else format(value, form)

        rows += [
            (
                f"Prometheus scrapes, every {interval:g} s, timeout {timeout:g} s "
                f"(count_over_time(up[{prometheus['window_seconds']}s]))",
                number(prometheus["scrapes"], ".0f"),
            ),
            ("Prometheus min_over_time(up)", number(prometheus["min_up"], "g")),
            ("Prometheus scrapes down (up 0)", f"{prometheus['scrapes_down']}"),
            (
                "Prometheus max_over_time(scrape_duration_seconds) (s)",
                number(prometheus["max_scrape_duration_seconds"], ".3f"),
            ),
            (
                f"Prometheus scrapes over 0.5 x timeout ({prometheus['slow_bound_seconds']:g} s)",
                f"{prometheus['scrapes_over_slow_bound']}",
            ),
            (
                "Prometheus samples per scrape, most",
                number(prometheus["samples_scraped_max"], ".0f"),
            ),
        ]
    rows += [
        (
            "AWS requests by operation",
            ", ".join(f"{op} {n}" for op, n in report["aws_requests_by_operation"].items()),
        ),
        (
            "exporter warnings and errors logged",
            f"{report['exporter_warnings_and_errors']} of {report['exporter_log_lines']} lines",
        ),
    ]
    lines = [
        f"machine: {report['machine']}",
        f"load average (1, 5, 15 min): {report['load_average_before']} before, "
        f"{report['load_average_after']} after, 1-min max during {report['load_average_1m_max_during']:.2f}",
        f"exporter: {report['exporter_package']} (checkout {report['checkout']})",
        f"settings: {settings['mode']} mode, {settings['jobs_per_region']:,} jobs in each of "
        f"{len(settings['regions'])} regions ({settings['running_per_region']} running), "
        f"AWS latency {settings['aws_latency_ms']:g} ms per request, cache.ttl {settings['ttl_seconds']:g} s, "
        f"cache.full_resync {'default' if resync is None else f'{resync:g} s'}, "
        f"cache.refresh_timeout {'default' if refresh_timeout is None else f'{refresh_timeout:g} s'}, "
        f"describing on ({describe_concurrency}), {settings['duration_seconds']:g} s of scraping; seeded in {report['seed_seconds']:.1f} s",
        listing_semantics_line(settings["listing_semantics"]),
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {label} | {value} |" for label, value in rows),
        "",
        "result: " + ("some scrapes FAILED" if report["failed"] else "no scrape failed"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
