"""Peak memory of one exporter after a full refresh, gzip scrapes as Prometheus sends them, and plain ones.

    python bench/memory.py --regions 4 --jobs 10000 --json memory.json
    MALLOC_ARENA_MAX=2 python bench/memory.py --regions 4 --jobs 10000
    python bench/memory.py --regions 1 --jobs 200 --scrapes 2     # a quick run

moto's SageMaker server runs in this process on 127.0.0.1 with ``--jobs`` jobs per region
(``--running`` of them InProgress, the newest), seeded as ``bench/benchmark.py`` seeds them.
The exporter runs as its own process, with the default settings (describing on, no tags)
but a ``cache.ttl`` long enough that the run sees one refresh, the full one of a first
start, and a ``cache.refresh_timeout`` long enough that it completes on a busy machine.
The script waits until /-/ready (every target's first refresh ended, its describes
included) and until no refresh is seen running (harness.wait_refreshes_ended, which
scrapes as the measured scrapes do), then scrapes /metrics ``--scrapes`` times, one after
the other, as Prometheus does: its Accept header and ``Accept-Encoding: gzip``. Every body
must decode whole and hold every job.

It reads the exporter's resident memory from /proc: VmRSS once ready (the jobs and the
lines the refresh rendered for its listing, before any scrape), then VmRSS and the peak
(VmHWM) after the gzip scrapes. Last come ``--plain-scrapes`` scrapes without gzip (curl,
a browser), one after the other, and VmRSS and VmHWM after them: the memory target holds
for both. The environment passes to the exporter as it is, so ``MALLOC_ARENA_MAX`` set on
this command applies to it. It prints a table, writes ``--json``, and exits 1 when a body
was wrong or a peak exceeded ``--max-peak-mib``. Loopback only; placeholder credentials.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness import (
    REGIONS,
    add_listing_semantics_flag,
    exporter_command,
    free_port,
    listing_semantics_line,
    load_average,
    machine,
    moto_server,
    process_status,
    seed_jobs,
    start_process,
    status_kib,
    wait_ready,
    wait_refreshes_ended,
    write_config,
)

# What Prometheus 2.x sends to a target that did not ask for a scrape protocol.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
# Long enough that no second refresh starts during the run.
TTL_SECONDS = 3600.0
REFRESH_TIMEOUT = "15m"
SCRAPE_TIMEOUT_SECONDS = 300.0
JOBS_FAMILY = "sagemaker_tuning_job_creation_timestamp_seconds{"
UP_FAMILY = "sagemaker_tuning_exporter_up{"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="tuning jobs per region")
    parser.add_argument("--regions", type=int, default=4, help="number of regions (max 4)")
    parser.add_argument("--running", type=int, default=20, help="InProgress jobs per region")
    parser.add_argument("--scrapes", type=int, default=10, help="gzip scrapes, one at a time")
    parser.add_argument(
        "--plain-scrapes", type=int, default=3, help="scrapes without gzip, after the gzip ones"
    )
    parser.add_argument(
        "--max-peak-mib",
        type=float,
        default=150.0,
        help="exit 1 when the peak RSS after the gzip or plain scrapes exceeds this (default: 150)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    add_listing_semantics_flag(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.regions <= len(REGIONS):
        parser.error(f"--regions must be between 1 and {len(REGIONS)}")
    return args


def scrape(url: str, accept_gzip: bool) -> tuple[int, str]:
    """One scrape of ``url``/metrics; the body's size on the wire, and its text decoded."""
    headers = {"Accept": PROMETHEUS_ACCEPT}
    if accept_gzip:
        headers["Accept-Encoding"] = "gzip"
    request = urllib.request.Request(url + "/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=SCRAPE_TIMEOUT_SECONDS) as response:
        body = response.read()
        encoding = response.headers.get("Content-Encoding")
    if accept_gzip != (encoding == "gzip"):
        raise RuntimeError(f"asked for gzip: {accept_gzip}, got Content-Encoding {encoding!r}")
    return len(body), (gzip.decompress(body) if encoding == "gzip" else body).decode()


def check_body(text: str, jobs: int) -> None:
    """Raise unless ``text`` is a whole OpenMetrics body with a creation timestamp for every job."""
    if not text.endswith("# EOF\n"):
        raise RuntimeError("the body does not end with # EOF")
    published = text.count("\n" + JOBS_FAMILY)
    if published != jobs:
        down = [
            line
            for line in text.splitlines()
            if line.startswith(UP_FAMILY) and line.endswith(" 0.0")
        ]
        raise RuntimeError(f"the body publishes {published} jobs, expected {jobs}; down: {down}")


def mib(status: dict[str, str], field: str) -> float:
    return round(status_kib(status, field) / 1024, 1)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    regions = REGIONS[: args.regions]
    total_jobs = args.jobs * len(regions)
    with (
        moto_server(listing_semantics=args.listing_semantics) as (url, counts),
        tempfile.TemporaryDirectory() as directory,
    ):
        seed_jobs(regions, args.jobs, args.running)
        config = Path(directory) / "config.yaml"
        write_config(config, url, regions, TTL_SECONDS)
        # A full listing of 10,000 jobs is 100 pages; on a busy machine several targets
        # listing at once from one moto process outlast the default 30 s refresh timeout.
        config.write_text(
            config.read_text().replace(
                "cache:\n", f"cache:\n  refresh_timeout: {REFRESH_TIMEOUT}\n"
            )
        )
        port = free_port()
        exporter_url = f"http://127.0.0.1:{port}"
        process = start_process(exporter_command(config, port))
        try:
            started = time.monotonic()
            wait_ready(exporter_url, process)
            refreshed_seconds = time.monotonic() - started
            ready = process_status(process.pid)
            # Ready once the first refreshes ended, describes included; no other runs before
            # the scrapes measured.
            wait_refreshes_ended(lambda: [scrape(exporter_url, accept_gzip=True)[1]], counts)
            wire_sizes, decoded_sizes, latencies = [], [], []
            for _ in range(args.scrapes):
                began = time.monotonic()
                wire, text = scrape(exporter_url, accept_gzip=True)
                latencies.append(time.monotonic() - began)
                check_body(text, total_jobs)
                wire_sizes.append(wire)
                decoded_sizes.append(len(text.encode()))
                del text
            after_gzip = process_status(process.pid)
            plain_latencies = []
            for _ in range(args.plain_scrapes):
                began = time.monotonic()
                wire, text = scrape(exporter_url, accept_gzip=False)
                plain_latencies.append(time.monotonic() - began)
                check_body(text, total_jobs)
                del text
            after_plain = process_status(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {
        "machine": machine(),
        "listing_semantics": args.listing_semantics,
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX", "(glibc default)"),
        "regions": len(regions),
        "jobs_per_region": args.jobs,
        "jobs": total_jobs,
        "ready_after_seconds": round(refreshed_seconds, 1),
        "gzip_scrapes": args.scrapes,
        "gzip_scrape_seconds_first_last": [round(latencies[0], 3), round(latencies[-1], 3)],
        "body_mb_wire_decoded": [round(wire_sizes[-1] / 1e6, 2), round(decoded_sizes[-1] / 1e6, 1)],
        "rss_mib_ready": mib(ready, "VmRSS"),
        "rss_mib_after_gzip_scrapes": mib(after_gzip, "VmRSS"),
        "peak_rss_mib_after_gzip_scrapes": mib(after_gzip, "VmHWM"),
        "plain_scrapes": args.plain_scrapes,
        "plain_scrape_seconds_first_last": [
            round(plain_latencies[0], 3) if plain_latencies else None,
            round(plain_latencies[-1], 3) if plain_latencies else None,
        ],
        "rss_mib_after_plain_scrapes": mib(after_plain, "VmRSS"),
        "peak_rss_mib_after_plain_scrapes": mib(after_plain, "VmHWM"),
        "max_peak_mib": args.max_peak_mib,
        "load_average_end": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = measure(args)
    print(machine())
    print(listing_semantics_line(args.listing_semantics))
    width = max(len(key) for key in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    within = (
        max(report["peak_rss_mib_after_gzip_scrapes"], report["peak_rss_mib_after_plain_scrapes"])
        <= args.max_peak_mib
    )
    print("peak RSS within bound" if within else "peak RSS **above** bound")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
