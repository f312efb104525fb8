"""Benchmark: DescribeHyperParameterTuningJob requests per refresh, from a first start to steady state.

    python bench/describe.py                         # 1,000 ended and 20 running jobs
    python bench/describe.py --jobs 300 --running 5  # a quick run
    python bench/describe.py --json result.json      # also write the figures as JSON
    python bench/describe.py --listing-semantics aws # the listing paged, then filtered

moto's SageMaker server runs in this process on 127.0.0.1, seeded with ``--jobs`` jobs in
one region (``--running`` of them InProgress, the rest ended within the last six days, so
the default per-job retention publishes them all), as bench/benchmark.py seeds them; the
running jobs are the newest. ``--listing-semantics`` chooses how the server answers
ListHyperParameterTuningJobs: ``moto`` (filtered, then paged) or ``aws`` (paged, then
filtered, as AWS documents ListTrainingJobs). The exporter runs as its own process
(``python -m exporter``) with ``cache.ttl`` of ``--ttl`` seconds, ``describe.ttl`` of
``--describe-ttl`` seconds and ``describe.max_requests_per_refresh`` of ``--budget``. A
scrape once the cache TTL has passed starts a refresh and answers from the cache it has;
the bench scrapes on until that refresh has ended (see harness.wait_refreshes_ended) and
reads its requests from the exporter's own ``sagemaker_tuning_exporter_api_requests_total``.
The first start lasts until every ended job is described; ``--steady-refreshes``
refreshes follow, in which only running jobs are described, once per describe TTL. The
running jobs being the newest, the listing itself describes none (it reads them on its
first page), and a steady-state refresh lists ceil(running/100) pages. Loopback only;
placeholder credentials only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The sibling modules, found through the path above.
from benchmark import fetch
from harness import (
    PLACEHOLDER_ENVIRONMENT,
    RequestCounts,
    add_listing_semantics_flag,
    exporter_command,
    free_port,
    listing_semantics_line,
    machine,
    moto_server,
    seed_jobs,
    start_process,
    wait_ready,
    wait_refreshes_ended,
)

from exporter.aws.operations import DESCRIBE_OPERATION, LIST_OPERATION

REGION = "us-east-1"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1020, help="tuning jobs, running included")
    parser.add_argument("--running", type=int, default=20, help="InProgress jobs among them")
    parser.add_argument("--budget", type=int, default=100, help="describe.max_requests_per_refresh")
    parser.add_argument("--ttl", type=float, default=5.0, help="cache.ttl in seconds")
    parser.add_argument("--describe-ttl", type=float, default=25.0, help="describe.ttl in seconds")
    parser.add_argument(
        "--steady-refreshes", type=int, default=20, help="refreshes measured in steady state"
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    add_listing_semantics_flag(parser)
    args = parser.parse_args(argv)

    os.environ.update(PLACEHOLDER_ENVIRONMENT)
    with moto_server(listing_semantics=args.listing_semantics) as (endpoint_url, moto_counts):
        seed_jobs((REGION,), args.jobs, args.running)
        refreshes = run_exporter(endpoint_url, args, moto_counts)
    first_start, steady = split_first_start(refreshes, args.budget)
    steady_refreshes = sum(r["refreshes"] for r in steady)
    steady_describes = sum(r["describes"] for r in steady)
    steady_seconds = steady[-1]["at_seconds"] - first_start[-1]["at_seconds"] if steady else 0.0
    report = {
        "machine": machine(),
        "command": " ".join(["python", "bench/describe.py", *(argv or sys.argv[1:])]),
        "listing_semantics": args.listing_semantics,
        "jobs": args.jobs,
        "running": args.running,
        "budget": args.budget,
        "ttl_seconds": args.ttl,
        "describe_ttl_seconds": args.describe_ttl,
        "refreshes": refreshes,
        "first_start_refreshes": sum(r["refreshes"] for r in first_start),
        "first_start_describes": sum(r["describes"] for r in first_start),
        "first_start_max_refresh_seconds": max(r["seconds"] for r in first_start),
        "steady_refreshes": steady_refreshes,
        "steady_seconds": steady_seconds,
        "steady_describes": steady_describes,
        "steady_describes_per_refresh": steady_describes / max(1, steady_refreshes),
        # 1.0 when every running job is described once per describe.ttl.
        "steady_describes_per_running_job_per_describe_ttl": (
            steady_describes / args.running / (steady_seconds / args.describe_ttl)
            if args.running and steady_seconds
            else 0.0
        ),
        "steady_listing_requests_per_refresh": (
            sum(r["listing_requests"] for r in steady) / max(1, steady_refreshes)
        ),
    }
    print(summary(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def run_exporter(
    endpoint_url: str, args: argparse.Namespace, moto_counts: RequestCounts
) -> list[dict[str, Any]]:
    """Start the exporter, refresh it until steady state, and return each refresh's requests.

    ``moto_counts`` are the requests moto receives, which tell when a refresh has ended.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "config.yaml"
        config.write_text(
            f"regions: [{REGION}]\n"
            f"aws:\n  endpoint_url: {endpoint_url}\n  max_attempts: 2\n"
            f"cache:\n  ttl: {args.ttl}\n"
            f"describe:\n  ttl: {args.describe_ttl}\n"
            f"  max_requests_per_refresh: {args.budget}\n"
        )
        process = start_process(exporter_command(config, port))
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, process)
            return measure_refreshes(url, args, moto_counts)
        finally:
            process.terminate()
            process.wait(timeout=30)


def measure_refreshes(
    url: str, args: argparse.Namespace, moto_counts: RequestCounts
) -> list[dict[str, Any]]:
    """One entry per refresh the bench started: its requests, wall time, and when it ended.

    Each entry runs from the end of one refresh to the end of the next, so it holds all of
    a refresh's describes; it covers one refresh, unless the machine was so slow that a
    scrape, as the bench waited, found the TTL passed again. ``refreshes`` says how many.
    """

    def scrape() -> list[str]:
        return [fetch(url, gzip_encoded=False).decode()]

    started = time.monotonic()
    # The start-up refresh began before the exporter was ready; its requests are the first
    # counts once it has ended.
    ended = wait_refreshes_ended(scrape, moto_counts)
    before = counts(ended.texts[0])
    entries = [refresh_entry(before, {"listings": 0.0, LIST_OPERATION: 0.0}, 0.0)]
    steady_left = args.steady_refreshes
    in_first_start = entries[0]["describes"] >= args.budget * entries[0]["refreshes"]
    # The TTL runs from the start of a refresh, which is no later than this.
    last_start = time.monotonic()
    while steady_left > 0:
        time.sleep(max(0.0, last_start + args.ttl + 0.05 - time.monotonic()))
        last_start = time.monotonic()
        # Its first scrape starts the refresh now due; it waits for its end.
        ended = wait_refreshes_ended(scrape, moto_counts, ended.progress)
        after = counts(ended.texts[0])
        entries.append(refresh_entry(after, before, ended.ended_by - started))
        before = after
        if in_first_start:
            in_first_start = entries[-1]["describes"] >= args.budget * entries[-1]["refreshes"]
        else:
            steady_left -= 1
    return entries


def refresh_entry(
    after: dict[str, float], before: dict[str, float], at_seconds: float
) -> dict[str, Any]:
    return {
        "refreshes": int(after["listings"] - before["listings"]),
        "describes": after[DESCRIBE_OPERATION] - before.get(DESCRIBE_OPERATION, 0.0),
        "listing_requests": after[LIST_OPERATION] - before[LIST_OPERATION],
        "seconds": after["duration"],
        "at_seconds": at_seconds,
    }


def counts(text: str) -> dict[str, float]:
    """Requests per operation, successful refreshes, and the last refresh's duration."""
    found = {LIST_OPERATION: 0.0, DESCRIBE_OPERATION: 0.0, "listings": 0.0, "duration": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sagemaker_tuning_exporter_api_requests_total":
                operation = sample.labels["operation"]
                found[operation] = found.get(operation, 0.0) + sample.value
            elif sample.name == "sagemaker_tuning_exporter_listings_total":
                found["listings"] += sample.value
            elif sample.name == "sagemaker_tuning_exporter_refresh_duration_seconds":
                found["duration"] = sample.value
    return found


def split_first_start(
    entries: list[dict[str, Any]], budget: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first start's refreshes and the steady state's.

    While ended jobs wait to be described, every refresh spends the whole budget; the first
    refresh that spends less has described the last of them, and ends the first start.
    """
    for index, entry in enumerate(entries):
        if entry["describes"] < budget * entry["refreshes"]:
            return entries[: index + 1], entries[index + 1 :]
    return entries, []


def summary(report: dict[str, Any]) -> str:
    # An entry that covers several refreshes (a slow machine) shows as describes/refreshes.
    per_refresh = ", ".join(
        f"{r['describes']:.0f}" + (f"/{r['refreshes']}" if r["refreshes"] != 1 else "")
        for r in report["refreshes"]
    )
    return "\n".join(
        [
            f"{report['jobs'] - report['running']:,} ended and {report['running']} running jobs, "
            f"describe budget {report['budget']} per refresh, cache.ttl {report['ttl_seconds']}s, "
            f"describe.ttl {report['describe_ttl_seconds']}s; {report['machine']}",
            "",
            listing_semantics_line(report["listing_semantics"]),
            "",
            f"describe requests per refresh: {per_refresh}",
            "",
            "| measure | value |",
            "|---|---|",
            f"| refreshes until every ended job is described | {report['first_start_refreshes']} |",
            f"| describe requests in those refreshes | {report['first_start_describes']:.0f} |",
            f"| longest refresh of the first start (s) | "
            f"{report['first_start_max_refresh_seconds']:.2f} |",
            f"| steady-state refreshes measured | {report['steady_refreshes']} |",
            f"| describe requests per steady-state refresh | "
            f"{report['steady_describes_per_refresh']:.2f} |",
            f"| describe requests per running job per describe.ttl, steady state | "
            f"{report['steady_describes_per_running_job_per_describe_ttl']:.2f} |",
            f"| listing requests per steady-state refresh | "
            f"{report['steady_listing_requests_per_refresh']:.2f} |",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
