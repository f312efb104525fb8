"""Load test: many concurrent scrapers against one exporter process, for a bounded time.

    python bench/load.py --scrapers 50 --duration 60 --jobs 10000 --regions 2 --ttl 15 --json out.json
    python bench/load.py --scrapers 5 --duration 3 --jobs 200 --ttl 1     # a quick run
    python bench/load.py --scrapers 5 --duration 3 --jobs 200 --ttl 1 --listing-semantics aws

moto's SageMaker server runs in this process on 127.0.0.1 with ``--jobs`` jobs per region
(``--running`` of them InProgress, the newest) and counts every request it receives. It
answers ListHyperParameterTuningJobs under ``--listing-semantics``: ``moto`` (filtered,
then paged) or ``aws`` (paged, then filtered, as AWS documents ListTrainingJobs). The
exporter runs as its own process with ``cache.ttl: --ttl``. Once it is ready,
``--scrapers`` threads scrape /metrics for ``--duration`` seconds, each as Prometheus does:
its Accept header, gzip and X-Prometheus-Scrape-Timeout-Seconds; back to back
(``--interval 0``) or once per interval.

A scrape fails when it answers other than 200, takes longer than its timeout, or brings a
body shorter than its Content-Length, a gzip stream that does not decompress whole (CRC and
length checked), or a text that does not end as its format requires. Every
``--parse-every`` seconds one body is parsed in full by prometheus_client's parser in a
separate process, and must show every region up with all its jobs.

The script measures scrape latency, the AWS requests per region and operation, and the
exporter's resident memory and threads from /proc every second. The listing sends no
filter and walks newest first, 100 jobs a page, so under either semantics:

* a full listing (the first refresh, and one per ``cache.full_resync``, an hour) costs
  ceil(N/100) requests: the last page carries no NextToken under either semantics, so
  there is no trailing empty page;
* a steady-state (incremental) listing, the running jobs being the newest, costs the pages
  down to the oldest running job and past the newest job less NEW_JOB_OVERLAP_SECONDS
  (5 minutes): max(1, ceil(running/100)) for up to 170,000 seeded jobs, and it describes
  no job.

Two checks hold the requests to that. ``requests_within_schedule`` bounds them by the
clock: each target refreshes at most once per TTL, so over T seconds at most 1 +
floor(T/ttl) refreshes, of which at most 1 + floor(T/full_resync) full; each incremental one
is allowed one page more than it needs (a page boundary), and each refresh at most 100
describes (``describe.max_requests_per_refresh``'s default). ``listing_requests_exact``
reads the exporter's own count of full and incremental listings per region at the end of
the run, once the scrapers stopped and the refreshes they started have ended (scraping
until they have, see harness.wait_refreshes_ended), and requires the List requests moto
had received by then to be exactly full * ceil(N/100) + incremental * the steady-state
pages.

The run is bounded: ``--duration`` (an hour at most), ``--scrapers`` (1,000 at most) and
``--max-scrapes`` in all. It prints a table, writes ``--json``, and exits 1 when a scrape
failed, a request check failed, or memory grew by more than ``--max-rss-growth-mib``
between the first and the second half of the run. Loopback only; placeholder credentials.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    PLACEHOLDER_ENVIRONMENT,
    REGIONS,
    ROOT,
    SEED_SPAN_SECONDS,
    RequestCounts,
    add_listing_semantics_flag,
    exporter_command,
    free_port,
    listing_semantics_line,
    load_average,
    machine,
    moto_server,
    percentile,
    process_status,
    seed_jobs,
    start_process,
    status_kib,
    wait_ready,
    wait_refreshes_ended,
    write_config,
)

sys.path.insert(0, str(ROOT))

from exporter.aws.operations import DESCRIBE_OPERATION, LIST_OPERATION
from exporter.config.settings import CacheSettings
from exporter.refresh.listing import NEW_JOB_OVERLAP_SECONDS

# describe.max_requests_per_refresh's default: the most describe requests of one refresh.
DESCRIBE_REQUESTS_PER_REFRESH = 100
PAGE_SIZE = 100
# What Prometheus 2.x sends to a target that did not ask for a scrape protocol.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
TEXT_ACCEPT = "text/plain;version=0.0.4"
READ_CHUNK_BYTES = 1 << 20
# A full listing every cache.full_resync (the exporter's default; the config leaves it).
FULL_RESYNC_SECONDS = CacheSettings().full_resync_seconds
# The page more a steady-state listing is allowed by the schedule, for a page boundary.
PAGE_BOUNDARY_ALLOWANCE = 1
# The scrapes that read the exporter's listing counts once the scrapers stopped: the timeout of
# each, and of the wait for the refreshes to end.
FINAL_SCRAPE_TIMEOUT_SECONDS = 120.0
# Hard limits that keep a mistyped flag from turning a benchmark into a flood.
MAX_SCRAPERS = 1000
MAX_DURATION_SECONDS = 3600.0


@dataclass
class Scrape:
    """The outcome of one scrape."""

    seconds: float
    failure: str | None  # None, or why the scrape failed: status_503, timeout, truncated, ...
    wire_bytes: int = 0
    body_bytes: int = 0


@dataclass
class Tally:
    """Outcomes of every scrape, shared by the scraper threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    scrapes: list[Scrape] = field(default_factory=list)
    parses: list[concurrent.futures.Future[dict[str, Any]]] = field(default_factory=list)
    parsed: list[dict[str, Any]] = field(default_factory=list)
    next_parse_at: float = 0.0

    def add(self, scrape: Scrape) -> int:
        """Record ``scrape``; returns the number recorded so far."""
        with self.lock:
            self.scrapes.append(scrape)
            return len(self.scrapes)

    def claim_parse(self, now: float, every: float) -> bool:
        """Whether the caller should keep its body for a full parse (one per ``every`` seconds)."""
        with self.lock:
            if now < self.next_parse_at:
                return False
            self.next_parse_at = now + every
            return True


@dataclass
class Sample:
    """The exporter process at one moment, from /proc/PID/status."""

    seconds: float
    rss_kib: float
    threads: int


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load test; returns 0 when every check passed, 1 otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.scrapers <= MAX_SCRAPERS:
        parser.error(f"--scrapers must be between 1 and {MAX_SCRAPERS}")
    if not 0 < args.duration <= MAX_DURATION_SECONDS:
        parser.error(f"--duration must be over 0 and at most {MAX_DURATION_SECONDS:g}")
    if not 1 <= args.regions <= len(REGIONS):
        parser.error(f"--regions must be between 1 and {len(REGIONS)}")
    regions = REGIONS[: args.regions]
    os.environ.update(PLACEHOLDER_ENVIRONMENT)
    load_before = load_average()
    with moto_server(listing_semantics=args.listing_semantics) as (endpoint_url, counts):
        started = time.monotonic()
        seed_jobs(regions, args.jobs, args.running)
        print(
            f"seeded {args.jobs} jobs in each of {len(regions)} regions "
            f"in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
        with tempfile.TemporaryDirectory() as scratch:
            config = Path(scratch) / "config.yaml"
            write_config(config, endpoint_url, regions, args.ttl, describe=args.describe)
            report = run_load(args, regions, config, counts)
    report["load_average_before"] = load_before
    report["load_average_after"] = load_average()
    report["command"] = " ".join(["python", "bench/load.py", *(argv or sys.argv[1:])])
    print(summary_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = [name for name, passed in report["checks"].items() if not passed]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The script's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapers", type=int, default=50, help="concurrent scrapers")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of scraping")
    parser.add_argument("--jobs", type=int, default=10_000, help="tuning jobs per region")
    parser.add_argument("--regions", type=int, default=2, help="number of regions (max 4)")
    parser.add_argument("--running", type=int, default=20, help="InProgress jobs per region")
    parser.add_argument("--ttl", type=float, default=15.0, help="the exporter's cache.ttl")
    parser.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds between one scraper's scrapes; 0 scrapes back to back (default)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="ask for an uncompressed body (default: gzip)"
    )
    parser.add_argument(
        "--describe",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="describe jobs, as the exporter does by default (--no-describe: listing only)",
    )
    parser.add_argument(
        "--format",
        choices=("openmetrics", "text"),
        default="openmetrics",
        help="openmetrics: Prometheus' own Accept header (default); text: text format 0.0.4 only",
    )
    parser.add_argument(
        "--scrape-timeout",
        type=float,
        default=10.0,
        help="each scrape's timeout, announced in X-Prometheus-Scrape-Timeout-Seconds",
    )
    parser.add_argument(
        "--parse-every", type=float, default=20.0, help="seconds between full parses of a body"
    )
    parser.add_argument(
        "--max-scrapes", type=int, default=100_000, help="stop after this many scrapes in all"
    )
    parser.add_argument(
        "--max-rss-growth-mib",
        type=float,
        default=32.0,
        help="fail when the peak RSS of the second half exceeds the first half's by more",
    )
    add_listing_semantics_flag(parser)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    return parser


def run_load(
    args: argparse.Namespace,
    regions: Sequence[str],
    config: Path,
    request_counts: RequestCounts,
) -> dict[str, Any]:
    """Start the exporter, scrape it for the duration, stop it, and return the report.

    ``request_counts`` are moto's.
    """
    port = free_port()
    started = time.monotonic()
    process = start_process(exporter_command(config, port))
    parser_pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        ready_seconds = time.monotonic() - started
        samples: list[Sample] = []
        stop_sampling = threading.Event()
        sampler = threading.Thread(
            target=sample_process, args=(process.pid, samples, stop_sampling), daemon=True
        )
        sampler.start()
        tally = Tally()
        scrape_started = time.monotonic()
        run_scrapers(args, port, tally, parser_pool)
        scrape_seconds = time.monotonic() - scrape_started
        stop_sampling.set()
        sampler.join()
        # Read after the scrapers stopped, once the refreshes they started have ended: the
        # listings the exporter counted and the requests moto had received then.
        listings, counts = final_listing_counts(port, request_counts)
        elapsed = time.monotonic() - started
        # Parsed in another process while the scrapers ran; the last may still be going.
        tally.parsed = [future.result() for future in tally.parses]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        parser_pool.shutdown(cancel_futures=True)
    return build_report(
        args,
        regions,
        tally=tally,
        samples=samples,
        counts=counts,
        listings=listings,
        elapsed=elapsed,
        ready_seconds=ready_seconds,
        scrape_seconds=scrape_seconds,
        exporter_stderr=stderr,
    )


class _ScrapeFailedError(Exception):
    """A scrape of :func:`final_listing_counts` answered other than 200."""


def final_listing_counts(
    port: int, request_counts: RequestCounts
) -> tuple[dict[str, dict[str, float]] | str, dict[tuple[str, str], int]]:
    """The exporter's successful listings per region and kind (full, incremental), and the
    requests moto had received, once the refreshes have ended; scraped in the text format.

    The listings are the failure, as text, when a scrape fails; the requests are then
    moto's counts at that moment.
    """
    from prometheus_client.parser import text_string_to_metric_families

    headers = {
        "Accept": TEXT_ACCEPT,
        "X-Prometheus-Scrape-Timeout-Seconds": f"{FINAL_SCRAPE_TIMEOUT_SECONDS:g}",
    }

    def scrape() -> list[str]:
        connection = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=FINAL_SCRAPE_TIMEOUT_SECONDS
        )
        try:
            connection.request("GET", "/metrics", headers=headers)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise _ScrapeFailedError(f"status_{response.status}")
        return [body.decode()]

    try:
        ended = wait_refreshes_ended(scrape, request_counts, timeout=FINAL_SCRAPE_TIMEOUT_SECONDS)
    except _ScrapeFailedError as failure:
        return str(failure), request_counts.snapshot()
    except (OSError, http.client.HTTPException) as error:
        return f"error_{type(error).__name__}", request_counts.snapshot()
    except RuntimeError:
        return "refreshes_not_ended", request_counts.snapshot()
    # Only the listing counter's lines: parsing all 44 MB here would take many seconds.
    wanted = "\n".join(
        line
        for line in ended.texts[0].splitlines()
        if line.startswith("sagemaker_tuning_exporter_listings_total{")
    )
    listings: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(wanted + "\n"):
        for sample in family.samples:
            region = listings.setdefault(sample.labels["region"], {})
            kind = sample.labels["kind"]
            region[kind] = region.get(kind, 0.0) + sample.value
    return listings, ended.moto_requests


def steady_listing_pages(jobs: int, running: int) -> int:
    """The pages of a steady-state listing of :func:`harness.seed_jobs`'s jobs.

    The walk goes down to the oldest running job (the running jobs are the newest) and
    until a page holds a job created over NEW_JOB_OVERLAP_SECONDS before the newest. The
    jobs are created SEED_SPAN_SECONDS / jobs apart.
    """
    within_overlap = min(jobs, math.floor(NEW_JOB_OVERLAP_SECONDS * jobs / SEED_SPAN_SECONDS) + 1)
    past_overlap = min(jobs, within_overlap + 1)
    return max(1, math.ceil(running / PAGE_SIZE), math.ceil(past_overlap / PAGE_SIZE))


def sample_process(pid: int, samples: list[Sample], stop: threading.Event) -> None:
    """Append the process's RSS and thread count every second until ``stop``."""
    started = time.monotonic()
    while True:
        try:
            status = process_status(pid)
        except OSError:
            return
        samples.append(
            Sample(time.monotonic() - started, status_kib(status, "VmRSS"), int(status["Threads"]))
        )
        if stop.wait(1.0):
            return


def run_scrapers(
    args: argparse.Namespace,
    port: int,
    tally: Tally,
    parser_pool: concurrent.futures.Executor,
) -> None:
    """Run ``args.scrapers`` scraper threads until the duration or the scrape budget runs out."""
    headers = {
        "Accept": PROMETHEUS_ACCEPT if args.format == "openmetrics" else TEXT_ACCEPT,
        "User-Agent": "Prometheus/2.42.0 (bench/load.py)",
        "X-Prometheus-Scrape-Timeout-Seconds": f"{args.scrape_timeout:g}",
    }
    if not args.plain:
        headers["Accept-Encoding"] = "gzip"
    start = time.monotonic()
    deadline = start + args.duration
    parses = tally.parses
    verified = VerifiedBodies()

    def scraper(index: int) -> None:
        # Spread the scrapers over the interval, as Prometheus spreads its targets.
        next_at = start + (args.interval * index / args.scrapers if args.interval else 0.0)
        while True:
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            if time.monotonic() >= deadline:
                return
            keep = tally.claim_parse(time.monotonic(), args.parse_every)
            scrape, body = scrape_once(port, headers, args.scrape_timeout, keep, verified)
            if body is not None and scrape.failure is None:
                with tally.lock:
                    parses.append(
                        parser_pool.submit(parse_body, body, args.format == "openmetrics")
                    )
            if tally.add(scrape) >= args.max_scrapes:
                return
            if args.interval:
                # A scrape that overran its interval skips the ticks it missed, like Prometheus.
                next_at += args.interval * max(
                    1, math.ceil((time.monotonic() - next_at) / args.interval)
                )

    threads = [
        threading.Thread(target=scraper, args=(index,), name=f"scraper-{index}", daemon=True)
        for index in range(args.scrapers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def scrape_once(
    port: int,
    headers: dict[str, str],
    timeout: float,
    keep_body: bool,
    verified: VerifiedBodies,
) -> tuple[Scrape, bytes | None]:
    """One scrape of /metrics, checked; the decoded body too when ``keep_body``."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            response.read()
            return Scrape(time.perf_counter() - started, f"status_{response.status}"), None
        length = int(response.getheader("Content-Length") or -1)
        gzipped = response.getheader("Content-Encoding") == "gzip"
        content_type = response.getheader("Content-Type") or ""
        # A gzip body is kept as it came (1.5 MB for 44 MB) and decoded once the clock stops.
        wire = BodyCheck(gzipped=False, keep=gzipped or keep_body)
        while chunk := response.read(READ_CHUNK_BYTES):
            wire.feed(chunk)
    except TimeoutError:
        return Scrape(time.perf_counter() - started, "timeout"), None
    except http.client.IncompleteRead:
        return Scrape(time.perf_counter() - started, "truncated"), None
    except (OSError, http.client.HTTPException) as error:
        return Scrape(time.perf_counter() - started, f"error_{type(error).__name__}"), None
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    if seconds > timeout:
        return Scrape(seconds, "timeout", wire.length), None
    if wire.length != length:
        return Scrape(seconds, "truncated", wire.length), None
    openmetrics = "openmetrics" in content_type
    if not gzipped:
        failure = wire.finish(openmetrics)
        return Scrape(
            seconds, failure, wire.length, wire.length
        ), wire.content() if keep_body else None
    # Checked once the clock stopped: decompressing is the scraper's work, not the exporter's.
    compressed = wire.content()
    if keep_body:
        body = BodyCheck(gzipped=True, keep=True)
        body.feed(compressed)
        failure = body.finish(openmetrics)
        return Scrape(seconds, failure, wire.length, body.length), body.content()

    def decode() -> tuple[int, str | None]:
        body = BodyCheck(gzipped=True, keep=False)
        body.feed(compressed)
        return body.length, body.finish(openmetrics)

    body_length, failure = verified.outcome(compressed, decode)
    return Scrape(seconds, failure, wire.length, body_length), None


class VerifiedBodies:
    """The outcome (decoded length, failure) of decoding each of the last few gzip bodies.

    The exporter serves the same bytes until something changes, so a body identical to one
    decoded before needs no second decoding: comparing 1.5 MB costs far less than inflating
    44 MB, and leaves the cores to the exporter. A new body is decoded by the first scraper
    that brings it; the others wait for its outcome rather than decode it too.
    """

    def __init__(self, capacity: int = 8) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[bytes, _Outcome] = {}
        self._capacity = capacity

    def outcome(
        self, body: bytes, decode: Callable[[], tuple[int, str | None]]
    ) -> tuple[int, str | None]:
        """The outcome of ``decode()`` for ``body``, run once per distinct body."""
        with self._lock:
            known = self._outcomes.get(body)
            if known is None:
                known = self._outcomes[body] = _Outcome()
                while len(self._outcomes) > self._capacity:
                    del self._outcomes[next(iter(self._outcomes))]
                decoding = True
            else:
                decoding = False
        if decoding:
            try:
                known.value = decode()
            finally:
                known.ready.set()
        known.ready.wait()
        return known.value


@dataclass
class _Outcome:
    ready: threading.Event = field(default_factory=threading.Event)
    value: tuple[int, str | None] = (0, "invalid_gzip")


class BodyCheck:
    """Counts (and gzip-decodes) a body as it arrives, remembering its end; keeps it on request."""

    def __init__(self, gzipped: bool, keep: bool) -> None:
        self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self._kept: list[bytes] | None = [] if keep else None
        self._tail = b""
        self._invalid = False
        self.length = 0

    def feed(self, data: bytes) -> None:
        """Take the next part of the body as it came over the wire."""
        if self._decoder is None:
            self._take(data)
            return
        while data and not self._invalid:
            if self._decoder.eof:
                # A gzip stream may be several members, and the exporter's is: the part kept
                # between refreshes, then the part rendered on each scrape.
                self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                # Bounded output per step: a 1.5 MB gzip body inflates to about 44 MB.
                self._take(self._decoder.decompress(data, READ_CHUNK_BYTES))
            except zlib.error:
                self._invalid = True
                return
            # The input the cap left, or, past a member's end, the next member's bytes.
            data = self._decoder.unused_data if self._decoder.eof else self._decoder.unconsumed_tail

    def _take(self, data: bytes) -> None:
        self.length += len(data)
        self._tail = (self._tail + data[-16:])[-16:]
        if self._kept is not None:
            self._kept.append(data)

    def content(self) -> bytes:
        """The (decoded) body; only when kept."""
        return b"".join(self._kept or [])

    def finish(self, openmetrics: bool) -> str | None:
        """Why the body is invalid (gzip stream incomplete or corrupt, wrong end), or None."""
        if self._decoder is not None:
            if self._invalid:
                return "invalid_gzip"
            try:
                self._take(self._decoder.flush())
            except zlib.error:
                return "invalid_gzip"
            if not self._decoder.eof:
                return "invalid_gzip"
        if openmetrics and not self._tail.endswith(b"# EOF\n"):
            return "invalid_end"
        if not openmetrics and not self._tail.endswith(b"\n"):
            return "invalid_end"
        return None


def parse_body(body: bytes, openmetrics_format: bool) -> dict[str, Any]:
    """Parse a whole exposition; per region: up, jobs counted, jobs with per-job series, listings.

    Runs in a separate process so that parsing 44 MB holds no scraper's GIL.
    """
    from prometheus_client import parser
    from prometheus_client.metrics_core import Metric
    from prometheus_client.openmetrics import parser as openmetrics_parser

    # The openmetrics parser has no type hints; the text parser has.
    parse: Callable[[str], Iterable[Metric]] = (
        openmetrics_parser.text_string_to_metric_families
        if openmetrics_format
        else parser.text_string_to_metric_families
    )
    regions: dict[str, dict[str, Any]] = {}

    def region(name: str) -> dict[str, Any]:
        return regions.setdefault(
            name, {"up": None, "jobs": 0.0, "published": set(), "listings": {}}
        )

    for family in parse(body.decode()):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "sagemaker_tuning_exporter_up":
                region(labels["region"])["up"] = sample.value
            elif sample.name == "sagemaker_tuning_jobs":
                region(labels["region"])["jobs"] += sample.value
            elif sample.name == "sagemaker_tuning_job_creation_timestamp_seconds":
                region(labels["region"])["published"].add(labels["job_name"])
            elif sample.name == "sagemaker_tuning_exporter_listings_total":
                region(labels["region"])["listings"][labels["kind"]] = sample.value
    return {
        name: {**figures, "published": len(figures["published"])}
        for name, figures in regions.items()
    }


def build_report(
    args: argparse.Namespace,
    regions: Sequence[str],
    *,
    tally: Tally,
    samples: Sequence[Sample],
    counts: dict[tuple[str, str], int],
    listings: dict[str, dict[str, float]] | str,
    elapsed: float,
    ready_seconds: float,
    scrape_seconds: float,
    exporter_stderr: str,
) -> dict[str, Any]:
    """The figures and the pass/fail checks, as a JSON-ready dict."""
    scrapes = tally.scrapes
    failures = Counter(s.failure for s in scrapes if s.failure is not None)
    latencies = [s.seconds for s in scrapes if s.failure is None]

    # A target refreshes at start, then at most once per TTL: a refresh starts only once the
    # last one is a TTL old. The first lists every job, and so does one per full resync; the
    # rest walk only down to the running jobs, the newest.
    refreshes_allowed = 1 + math.floor(elapsed / args.ttl)
    full_allowed = min(refreshes_allowed, 1 + math.floor(elapsed / FULL_RESYNC_SECONDS))
    full_requests = max(1, math.ceil(args.jobs / PAGE_SIZE))
    incremental_requests = steady_listing_pages(args.jobs, args.running)
    incremental_allowed = incremental_requests + PAGE_BOUNDARY_ALLOWANCE
    listing_allowed = (
        full_allowed * full_requests + (refreshes_allowed - full_allowed) * incremental_allowed
    )
    # Each refresh also describes at most its budget of jobs (describe is on by default).
    describes_allowed = refreshes_allowed * DESCRIBE_REQUESTS_PER_REFRESH if args.describe else 0
    requests_allowed = listing_allowed + describes_allowed
    by_region: dict[str, dict[str, int]] = {}
    for (region, operation), count in sorted(counts.items()):
        by_region.setdefault(region, {})[operation] = count
    per_region = {region: sum(by_region.get(region, {}).values()) for region in regions}
    unexpected = sorted(set(by_region) - set(regions))
    # What the listings the exporter counted cost, exactly.
    listed = listings if isinstance(listings, dict) else {}
    listing_expected = {
        region: round(
            listed.get(region, {}).get("full", 0.0) * full_requests
            + listed.get(region, {}).get("incremental", 0.0) * incremental_requests
        )
        for region in regions
    }

    parsed_ok = all(
        parse.get(region, {}).get("up") == 1.0
        and parse[region]["jobs"] == args.jobs
        and parse[region]["published"] == args.jobs
        for parse in tally.parsed
        for region in regions
    )
    last_parse = tally.parsed[-1] if tally.parsed else {}

    rss = [s.rss_kib / 1024 for s in samples]
    half = len(rss) // 2
    first_half_max = max(rss[:half], default=math.nan)
    last_half_max = max(rss[half:], default=math.nan)
    growth = last_half_max - first_half_max if half else 0.0
    threads = [s.threads for s in samples]

    checks = {
        "no_failed_scrapes": bool(scrapes) and not failures and parsed_ok,
        "requests_within_schedule": all(
            set(operations) <= {LIST_OPERATION, DESCRIBE_OPERATION}
            and operations.get(LIST_OPERATION, 0) <= listing_allowed
            and operations.get(DESCRIBE_OPERATION, 0) <= describes_allowed
            for operations in by_region.values()
        )
        and not unexpected,
        "listing_requests_exact": isinstance(listings, dict)
        and all(
            listed.get(region, {}).get("full", 0.0) >= 1
            and by_region.get(region, {}).get(LIST_OPERATION, 0) == listing_expected[region]
            for region in regions
        ),
        "memory_flat": growth <= args.max_rss_growth_mib,
    }
    return {
        "machine": machine(),
        "settings": {
            "scrapers": args.scrapers,
            "duration_seconds": args.duration,
            "jobs_per_region": args.jobs,
            "regions": list(regions),
            "running_per_region": args.running,
            "listing_semantics": args.listing_semantics,
            "ttl_seconds": args.ttl,
            "interval_seconds": args.interval,
            "gzip": not args.plain,
            "format": args.format,
            "describe": args.describe,
            "scrape_timeout_seconds": args.scrape_timeout,
        },
        "exporter_ready_seconds": ready_seconds,
        "scraping_seconds": scrape_seconds,
        "scrapes": {
            "total": len(scrapes),
            "failed": sum(failures.values()),
            "failures": dict(failures),
            "per_second": len(scrapes) / scrape_seconds if scrape_seconds else 0.0,
            "parsed": len(tally.parsed),
            "parsed_bodies_correct": parsed_ok,
            "wire_bytes_max": max((s.wire_bytes for s in scrapes), default=0),
            "body_bytes_max": max((s.body_bytes for s in scrapes), default=0),
        },
        "latency_seconds": {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": max(latencies, default=math.nan),
        },
        "aws_requests": {
            "by_region_and_operation": by_region,
            "per_region": per_region,
            "allowed_per_region": requests_allowed,
            "listing_allowed_per_region": listing_allowed,
            "describes_allowed_per_region": describes_allowed,
            "refreshes_allowed_per_target": refreshes_allowed,
            "full_listings_allowed_per_target": full_allowed,
            "full_listing_requests": full_requests,
            "incremental_listing_requests": incremental_requests,
            "incremental_listing_requests_allowed": incremental_allowed,
            "seconds_counted": elapsed,
            # The exporter's own count, read once the scrapers stopped (or why it could not be).
            "listings_at_end": listings,
            "listing_requests_expected_per_region": listing_expected,
            "listings_in_last_parsed_body": {
                region: figures["listings"] for region, figures in last_parse.items()
            },
        },
        "rss_mib": {
            "start": rss[0] if rss else math.nan,
            "max": max(rss, default=math.nan),
            "end": rss[-1] if rss else math.nan,
            "first_half_max": first_half_max,
            "last_half_max": last_half_max,
            "growth": growth,
            "growth_bound": args.max_rss_growth_mib,
            # Over the second half: the first holds the first renders of the body.
            "last_half_slope_mib_per_minute": slope_per_minute(samples[half:]),
            "samples": len(rss),
        },
        "threads": {
            "start": threads[0] if threads else 0,
            "max": max(threads, default=0),
            "end": threads[-1] if threads else 0,
        },
        "samples": [
            {
                "seconds": round(s.seconds, 1),
                "rss_mib": round(s.rss_kib / 1024, 1),
                "threads": s.threads,
            }
            for s in samples
        ],
        "exporter_errors_logged": sum(
            "level=ERROR" in line or "level=WARNING" in line
            for line in exporter_stderr.splitlines()
        ),
        "checks": checks,
    }


def slope_per_minute(samples: Sequence[Sample]) -> float:
    """Least-squares slope of RSS over time, in MiB per minute."""
    if len(samples) < 2:
        return 0.0
    times = [s.seconds for s in samples]
    values = [s.rss_kib / 1024 for s in samples]
    mean_t = sum(times) / len(times)
    mean_v = sum(values) / len(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    if not spread:
        return 0.0
    return (
        60 * sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread
    )


def summary_table(report: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    settings, scrapes, latency = report["settings"], report["scrapes"], report["latency_seconds"]
    requests, rss, threads = report["aws_requests"], report["rss_mib"], report["threads"]
    per_region = ", ".join(f"{r} {n}" for r, n in requests["per_region"].items())
    full_allowed = requests["full_listings_allowed_per_target"]
    counted = requests["listings_at_end"]
    listings_line = (
        "; ".join(
            f"{region} {expected} ({counted.get(region, {}).get('full', 0):.0f} x "
            f"{requests['full_listing_requests']} + "
            f"{counted.get(region, {}).get('incremental', 0):.0f} x "
            f"{requests['incremental_listing_requests']})"
            for region, expected in requests["listing_requests_expected_per_region"].items()
        )
        if isinstance(counted, dict)
        else f"unknown: the last scrape failed ({counted})"
    )
    failures = ", ".join(f"{k} {v}" for k, v in sorted(scrapes["failures"].items())) or "none"
    describes = (
        f", at most {DESCRIBE_REQUESTS_PER_REFRESH} describes each"
        if report["settings"]["describe"]
        else ""
    )
    rows = [
        ("scrapes (per second)", f"{scrapes['total']} ({scrapes['per_second']:.1f}/s)"),
        ("failed scrapes", f"{scrapes['failed']} ({failures})"),
        (
            "bodies parsed in full, correct",
            f"{scrapes['parsed']}, {scrapes['parsed_bodies_correct']}",
        ),
        (
            "body on the wire, decoded (MB)",
            f"{scrapes['wire_bytes_max'] / 1e6:.2f}, {scrapes['body_bytes_max'] / 1e6:.1f}",
        ),
        (
            "latency p50 / p99 / max (s)",
            f"{latency['p50']:.3f} / {latency['p99']:.3f} / {latency['max']:.3f}",
        ),
        (f"AWS requests per region in {requests['seconds_counted']:.0f} s", per_region),
        (
            "AWS requests allowed per region",
            f"{requests['allowed_per_region']} ({requests['refreshes_allowed_per_target']} refreshes: {full_allowed} x {requests['full_listing_requests']} + {requests['refreshes_allowed_per_target'] - full_allowed} x {requests['incremental_listing_requests_allowed']} listing{describes})",
        ),
        ("List requests per region, exactly, for the listings counted", listings_line),
        (
            "RSS start / max / end (MiB)",
            f"{rss['start']:.0f} / {rss['max']:.0f} / {rss['end']:.0f}",
        ),
        (
            "RSS peak, first half / second half (MiB)",
            f"{rss['first_half_max']:.0f} / {rss['last_half_max']:.0f} (bound +{rss['growth_bound']:.0f})",
        ),
        ("RSS slope, second half (MiB/min)", f"{rss['last_half_slope_mib_per_minute']:+.1f}"),
        ("threads start / max / end", f"{threads['start']} / {threads['max']} / {threads['end']}"),
    ]
    lines = [
        f"{settings['scrapers']} scrapers for {settings['duration_seconds']:g} s, "
        f"{settings['jobs_per_region']:,} jobs in each of {len(settings['regions'])} regions, "
        f"TTL {settings['ttl_seconds']:g} s, {settings['format']}{'' if settings['gzip'] else ' uncompressed'}; "
        f"{report['machine']}; load average {report['load_average_before']} before, "
        f"{report['load_average_after']} after",
        "",
        listing_semantics_line(settings["listing_semantics"]),
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {label} | {value} |" for label, value in rows),
        "",
        "checks: "
        + ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in report["checks"].items()),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
