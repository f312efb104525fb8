"""Benchmark: an organization of many accounts, its (account, region) targets sharded over replicas.

    python bench/organization.py                                # 200 accounts x 4 regions, 1/2/4 shards
    python bench/organization.py --accounts 20 --shards 1 2     # a quick run
    python bench/organization.py --json result.json             # also write the figures as JSON

moto's Organizations, STS and SageMaker run in this process on 127.0.0.1. The bench creates
an organization of ``--accounts`` accounts (the management account and its members) through
the Organizations API, then seeds ``--jobs`` tuning jobs in each of ``--regions`` regions of every account (``--running`` of
them InProgress, the rest finished within the last six days). Each replica discovers the
accounts with ``discovery.organizations`` (ListAccounts with the ambient credentials), assumes
``role_name`` in each account through moto's STS, and lists and describes the jobs of the
(account, region) targets its shard owns, with the exporter's default settings otherwise
(describing on, 8 refreshes at once, ``cache.ttl`` from ``--ttl``).

For each shard count in ``--shards``, every replica (``--shard i --total-shards M``) runs as its
own process, all at once, as a StatefulSet's pods would, but here on one machine and against
one moto server. Measured per shard count:

* the targets each replica owns (its own gauge) and that together they own each target once;
* the full refresh: the wall time from the replicas' start until every one has read the
  account list and refreshed every target it owns once, describes included, and its
  requests. A replica is ready once every target it owns has been refreshed once, describes
  included; the bench then scrapes until it sees no refresh running
  (harness.wait_refreshes_ended), and the wall time runs to the scrape that saw that;
* scrape p50 per replica over ``--scrapes`` warm scrapes, each as Prometheus sends it (gzip);
* the steady-state refresh: once the TTL has passed, one scrape of every replica at once
  starts a refresh of every target and answers at once from the cache; the bench scrapes
  on until those refreshes have ended, which ends their wall time (to within the bench's
  polling), and their requests are the difference of the counters. The TTL (150 s by
  default) must outlast a first start's refresh, which describes every job, so that the
  warm scrapes and this refresh are measured apart;
* peak RSS per replica (VmHWM), the largest reported.

Requests are the replicas' own ``sagemaker_tuning_exporter_api_requests_total`` per operation,
summed over the replicas; STS AssumeRole is also counted at the wire by the bench's
middleware, independently of the exporter. Loopback only; placeholder credentials only.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import (
    PLACEHOLDER_ENVIRONMENT,
    REGIONS,
    ROOT,
    RequestCounts,
    exporter_command,
    free_port,
    load_average,
    machine,
    moto_server,
    peak_rss_kib,
    percentile,
    seed_jobs,
    wait_ready,
    wait_refreshes_ended,
)
from prometheus_client.parser import text_string_to_metric_families

ROLE_NAME = "sagemaker-tuning-reader"
# As Prometheus asks: gzip, the text format, and the scrape timeout it allows.
PROMETHEUS_HEADERS = {
    "Accept": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "X-Prometheus-Scrape-Timeout-Seconds": "300",
}
OWNED_TARGETS = "sagemaker_tuning_exporter_owned_targets"
REQUESTS = "sagemaker_tuning_exporter_api_requests"
UP = "sagemaker_tuning_exporter_up"


@dataclass
class ShardedResult:
    """The figures of one shard count."""

    shards: int
    targets_per_replica: list[int]
    targets_owned_once: bool
    full_refresh_seconds: float
    full_refresh_requests: dict[str, float]
    steady_refresh_seconds: float
    steady_refresh_requests: dict[str, float]
    assume_role_requests: int
    scrape_gzip_p50_seconds_per_replica: list[float]
    gzip_body_bytes_per_replica: list[int]
    peak_rss_mib_per_replica: list[float]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200, help="member accounts")
    parser.add_argument("--regions", type=int, default=4, help="regions per account (max 4)")
    parser.add_argument("--jobs", type=int, default=24, help="tuning jobs per account and region")
    parser.add_argument("--running", type=int, default=2, help="InProgress jobs among them")
    parser.add_argument(
        "--shards", type=int, nargs="+", default=[1, 2, 4], help="shard counts to measure"
    )
    parser.add_argument(
        "--ttl",
        type=float,
        default=150.0,
        help="cache.ttl of every replica: longer than a first start's refresh, so the "
        "steady-state refresh is measured on its own (default 150)",
    )
    parser.add_argument("--scrapes", type=int, default=20, help="warm scrapes per replica")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.regions <= len(REGIONS):
        parser.error(f"--regions must be between 1 and {len(REGIONS)}")
    if args.accounts < 1 or any(shards < 1 for shards in args.shards):
        parser.error("--accounts and --shards must be 1 or more")

    regions = REGIONS[: args.regions]
    os.environ.update(PLACEHOLDER_ENVIRONMENT)
    with moto_server() as (endpoint_url, counts):
        # The exporter reaches STS and Organizations through botocore's per-service settings.
        os.environ["AWS_ENDPOINT_URL_STS"] = endpoint_url
        os.environ["AWS_ENDPOINT_URL_ORGANIZATIONS"] = endpoint_url
        started = time.monotonic()
        accounts = create_organization(endpoint_url, args.accounts)
        for account in accounts:
            seed_jobs(regions, args.jobs, args.running, account=account)
        print(
            f"created {len(accounts)} accounts and seeded {args.jobs} jobs in each of "
            f"{len(regions)} regions of each in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
        load_before = load_average()
        results = []
        with tempfile.TemporaryDirectory() as scratch:
            config = Path(scratch) / "config.yaml"
            write_organization_config(config, endpoint_url, regions, args.ttl)
            for shards in args.shards:
                results.append(
                    run_shards(config, shards, len(accounts) * len(regions), args, counts)
                )
                print(summary_line(results[-1]), file=sys.stderr)
    report = {
        "machine": machine(),
        "command": " ".join(["python", "bench/organization.py", *(argv or sys.argv[1:])]),
        "accounts": args.accounts,
        "regions": len(regions),
        "targets": args.accounts * len(regions),
        "jobs_per_target": args.jobs,
        "running_per_target": args.running,
        "ttl_seconds": args.ttl,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "results": [asdict(result) for result in results],
    }
    print(markdown_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def create_organization(endpoint_url: str, accounts: int) -> list[str]:
    """An organization of ``accounts`` accounts, the management account among them, created
    through moto's API; their IDs."""
    import boto3

    organizations = boto3.client(
        "organizations", region_name="us-east-1", endpoint_url=endpoint_url
    )
    organizations.create_organization(FeatureSet="ALL")
    for index in range(accounts - 1):
        organizations.create_account(
            AccountName=f"team-{index:03d}", Email=f"team-{index:03d}@example.com"
        )
    account_ids = []
    for page in organizations.get_paginator("list_accounts").paginate():
        account_ids += [account["Id"] for account in page["Accounts"]]
    return sorted(account_ids)


def write_organization_config(
    path: Path, endpoint_url: str, regions: Sequence[str], ttl: float
) -> None:
    """A configuration that discovers the organization's accounts and watches ``regions``."""
    path.write_text(
        f"regions: [{', '.join(regions)}]\n"
        f"aws:\n  endpoint_url: {endpoint_url}\n  max_attempts: 2\n"
        f"cache:\n  ttl: {ttl}\n"
        f"discovery:\n  organizations:\n    role_name: {ROLE_NAME}\n    refresh: 1h\n"
    )


def run_shards(
    config: Path, shards: int, targets: int, args: argparse.Namespace, counts: RequestCounts
) -> ShardedResult:
    """Run ``shards`` replicas at once and measure them."""
    ports = [free_port() for _ in range(shards)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    assume_before = _assume_role_requests(counts)
    started = time.monotonic()
    processes = [
        start_replica(
            [*exporter_command(config, port), "--shard", str(index), "--total-shards", str(shards)],
            config.parent / f"replica-{shards}-{index}.log",
        )
        for index, port in enumerate(ports)
    ]

    def scrape_every_replica() -> list[str]:
        return [scrape(url)[0] for url in urls]

    try:
        for url, process in zip(urls, processes, strict=True):
            wait_ready(url, process, timeout=1800)
        # The full refreshes started before the replicas were ready: their TTL runs out no
        # later than a TTL from now.
        ready_at = time.monotonic()
        full = wait_refreshes_ended(scrape_every_replica, counts, timeout=1800)
        full_seconds = full.ended_by - started
        full_texts = full.texts
        owned = [int(sum(values(text, OWNED_TARGETS))) for text in full_texts]
        owned_once = sum(owned) == targets and _targets_owned_once(full_texts, targets)
        full_requests = requests_by_operation(full_texts)
        assume_requests = _assume_role_requests(counts) - assume_before

        p50s, gzip_sizes = [], []
        for url in urls:
            timings = []
            for _ in range(args.scrapes):
                _, seconds, size = scrape(url)
                timings.append(seconds)
            p50s.append(round(percentile(timings, 50), 4))
            gzip_sizes.append(size)
        if time.monotonic() - ready_at >= args.ttl:
            print("warning: the warm scrapes outlasted the TTL; raise --ttl", file=sys.stderr)

        time.sleep(max(0.0, ready_at + args.ttl + 0.5 - time.monotonic()))
        steady_started = time.monotonic()
        scrape_all_at_once(urls)  # every target is stale: each replica refreshes all it owns
        steady = wait_refreshes_ended(
            scrape_every_replica, counts, full.progress, timeout=max(600.0, args.ttl)
        )
        if any(count > 1 for count in steady.progress.refreshes_since(full.progress).values()):
            print(
                "warning: the steady-state figures cover more than one refresh; raise --ttl",
                file=sys.stderr,
            )
        steady_seconds = steady.ended_by - steady_started
        steady_requests = requests_by_operation(steady.texts)
        steady_delta = {
            operation: steady_requests.get(operation, 0.0) - full_requests.get(operation, 0.0)
            for operation in sorted(set(steady_requests) | set(full_requests))
        }
        peaks = [round(peak_rss_kib(process.pid) / 1024, 1) for process in processes]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    return ShardedResult(
        shards=shards,
        targets_per_replica=owned,
        targets_owned_once=owned_once,
        full_refresh_seconds=round(full_seconds, 2),
        full_refresh_requests=full_requests,
        steady_refresh_seconds=round(steady_seconds, 2),
        steady_refresh_requests=steady_delta,
        assume_role_requests=assume_requests,
        scrape_gzip_p50_seconds_per_replica=p50s,
        gzip_body_bytes_per_replica=gzip_sizes,
        peak_rss_mib_per_replica=peaks,
    )


def start_replica(command: Sequence[str], log_path: Path) -> subprocess.Popen[str]:
    """``command`` run from the checkout with placeholder credentials, its log kept in a file.

    Not a pipe, as :func:`harness.start_process` uses: hundreds of targets log more than a
    pipe holds before the bench reads it, and a replica writing to a full pipe stops.
    """
    with log_path.open("w") as log:
        return subprocess.Popen(
            list(command),
            cwd=ROOT,
            env={**os.environ, **PLACEHOLDER_ENVIRONMENT},
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )


def scrape(url: str) -> tuple[str, float, int]:
    """One scrape as Prometheus sends it: the decoded text, the seconds it took, the gzip size."""
    request = urllib.request.Request(url + "/metrics", headers=PROMETHEUS_HEADERS)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        body: bytes = response.read()
        encoded = response.headers.get("Content-Encoding") == "gzip"
    elapsed = time.perf_counter() - started
    return (gzip.decompress(body) if encoded else body).decode(), elapsed, len(body)


def scrape_all_at_once(urls: Sequence[str]) -> list[tuple[str, float]]:
    """A scrape of every URL, all started together."""
    results: list[tuple[str, float]] = [("", 0.0)] * len(urls)

    def scrape_one(index: int) -> None:
        text, seconds, _ = scrape(urls[index])
        results[index] = (text, seconds)

    threads = [threading.Thread(target=scrape_one, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def families(text: str, *names: str) -> list[Any]:
    """The metric families ``names`` of ``text``, parsed from their own lines only.

    A replica's body holds hundreds of thousands of per-job samples; parsing all of them
    takes longer than the TTL the bench measures within.
    """
    prefixes = tuple(names) + tuple(
        f"# {kind} {name}" for name in names for kind in ("HELP", "TYPE")
    )
    lines = [line for line in text.splitlines() if line.startswith(prefixes)]
    return list(text_string_to_metric_families("\n".join(lines) + "\n"))


def values(text: str, name: str) -> list[float]:
    """The values of every sample named ``name`` in ``text``."""
    return [sample.value for family in families(text, name) for sample in family.samples]


def requests_by_operation(texts: Sequence[str]) -> dict[str, float]:
    """The API requests the replicas counted, per operation, summed over replicas and regions."""
    totals: Counter[str] = Counter()
    for text in texts:
        for family in families(text, REQUESTS):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    totals[sample.labels["operation"]] += sample.value
    return dict(sorted(totals.items()))


def _targets_owned_once(texts: Sequence[str], targets: int) -> bool:
    """Whether the replicas' ``up`` series name every target exactly once between them."""
    seen: Counter[tuple[str, str]] = Counter()
    for text in texts:
        for family in families(text, UP):
            for sample in family.samples:
                seen[(sample.labels.get("account", ""), sample.labels["region"])] += 1
    return len(seen) == targets and set(seen.values()) == {1}


def _assume_role_requests(counts: RequestCounts) -> int:
    return sum(n for (_, operation), n in counts.snapshot().items() if operation == "AssumeRole")


def summary_line(result: ShardedResult) -> str:
    return (
        f"{result.shards} shard(s): targets {result.targets_per_replica}, full refresh "
        f"{result.full_refresh_seconds}s, steady refresh {result.steady_refresh_seconds}s, "
        f"peak RSS {result.peak_rss_mib_per_replica} MiB"
    )


def markdown_table(report: dict[str, Any]) -> str:
    """The figures as a Markdown table, one column per shard count."""
    results = report["results"]

    def row(label: str, cells: list[str]) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    def spread(numbers: list[float]) -> str:
        if len(numbers) == 1:
            return f"{numbers[0]:g}"
        return f"{min(numbers):g} to {max(numbers):g}"

    lines = [
        f"{report['accounts']} accounts x {report['regions']} regions = {report['targets']} "
        f"targets, {report['jobs_per_target']} jobs each ({report['running_per_target']} "
        f"running); {report['machine']}; load {report['load_average_before']} -> "
        f"{report['load_average_after']}",
        "",
        row("measure", [f"{r['shards']} shard(s)" for r in results]),
        row("---", ["---"] * len(results)),
        row("targets per replica", [spread(r["targets_per_replica"]) for r in results]),
        row("every target owned once", [str(r["targets_owned_once"]) for r in results]),
        row("full refresh wall time (s)", [f"{r['full_refresh_seconds']:g}" for r in results]),
    ]
    operations = sorted({op for r in results for op in r["full_refresh_requests"]})
    for operation in operations:
        lines.append(
            row(
                f"{operation} requests, full / steady refresh",
                [
                    f"{r['full_refresh_requests'].get(operation, 0):g} / "
                    f"{r['steady_refresh_requests'].get(operation, 0):g}"
                    for r in results
                ],
            )
        )
    lines += [
        row("AssumeRole requests (at the wire)", [str(r["assume_role_requests"]) for r in results]),
        row("steady refresh wall time (s)", [f"{r['steady_refresh_seconds']:g}" for r in results]),
        row(
            "scrape p50, gzip (s), per replica",
            [spread(r["scrape_gzip_p50_seconds_per_replica"]) for r in results],
        ),
        row(
            "peak RSS per replica (MiB)",
            [spread(r["peak_rss_mib_per_replica"]) for r in results],
        ),
        row(
            "median peak RSS (MiB)",
            [f"{statistics.median(r['peak_rss_mib_per_replica']):g}" for r in results],
        ),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
