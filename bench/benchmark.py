"""Benchmark: the exporter against a naive baseline, both listing N tuning jobs per region from moto.

    python bench/benchmark.py                      # 10,000 jobs in each of 2 regions
    python bench/benchmark.py --jobs 300 --ttl 5   # a quick run
    python bench/benchmark.py --json result.json   # also write the figures as JSON
    python bench/benchmark.py --jobs 1020 --regions 1 --tags   # tags: the extra GetResources
    python bench/benchmark.py --old-running 2 --retention 10m  # 2 running jobs deep in the listing
    python bench/benchmark.py --listing-semantics aws          # the listing paged, then filtered

moto's SageMaker server runs in this process on 127.0.0.1, seeded with ``--jobs`` jobs per
region (``--running`` of them InProgress, the rest finished within the last six days, so the
default per-job retention publishes them all). The running jobs are the newest, except
``--old-running`` of them, which are older than 80% of all jobs (spread over the oldest
fifth: for 10,000 jobs, each has more than 8,000 newer ones). ``--listing-semantics``
chooses how the server answers ListHyperParameterTuningJobs: ``moto`` (moto's own answer,
filtered, then paged) or ``aws`` (paged, then filtered, as AWS documents ListTrainingJobs;
tests/sagemaker_server.py). The exporter's listing sends no filter, so both should cost
the same. Each variant runs as its own process:

* ``exporter``: ``python -m exporter`` with its default settings;
* ``naive``: the same listing code, but a full listing on every refresh, a scrape that
  waits for the refresh it starts, and prometheus_client's ``generate_latest`` on every
  scrape (its WSGI application), as an exporter without incremental listing or a cached
  exposition would do.

For each: the requests and wall time of the first (full) refresh, read once it has ended,
describes included; scrape latency p50/p99 over ``--scrapes`` plain and gzip scrapes
served from a warm cache; then ``--changes`` running jobs per region change, picked from
the jobs InProgress, oldest first (so the old running jobs are among them): each counts
progress, and the two newest of them finish. Once the TTL has passed, one scrape starts a
steady-state refresh; the exporter answers it from the cache it has, so the bench scrapes
on until that refresh has ended (see harness.wait_refreshes_ended) and reads its requests
and wall time from the exporter's own metrics; and the process's peak RSS. The
steady-state target is the product's: at most 5 List requests per region.

Requests are the exporter's own ``sagemaker_tuning_exporter_api_requests_total`` per
operation (retries included), summed over regions and divided by their number. The
DescribeHyperParameterTuningJob requests of a refresh come from two steps:

* the listing's: each running job deeper than the walk goes is read with one describe
  rather than with the pages above it (with ``--old-running N``, N per refresh);
* the describe step's: running jobs whose ``describe.ttl`` (5 minutes by default) has
  passed (none while ``--ttl`` stays well under it), then ended jobs without a final
  description, newest first: the jobs that just finished, and the backlog of a first
  start (every seeded ended job the retention publishes), at most
  ``describe.max_requests_per_refresh`` (100) a refresh.

With the default retention the backlog fills the describe step's budget on every
refresh this benchmark measures. ``--retention 10m`` (``per_job_metrics.retention``) leaves
the seeded ended jobs, which ended 30 minutes to 6 days ago, unpublished, as a running
exporter is once its first start has described them: a steady-state refresh then
describes the old running jobs (the listing) and the two jobs that finished (their final
description) and nothing else. With ``--old-running``, the describes of the old running
jobs are also counted by moto, by the job each request names, and reported apart.

With ``--tags`` every job carries ``team`` and ``project`` tags, both variants publish them
(``tags: [team, project]``, ``cache.tags_ttl`` from ``--tags-ttl``), and the GetResources
requests of the full and the steady-state refresh are reported too. GetResources is then
answered by the test suite's middleware (tests/sagemaker_server.py), which pages by
ResourcesPerPage as AWS does. Loopback only; placeholder credentials only.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    PLACEHOLDER_ENVIRONMENT,
    REGIONS,
    ROOT,
    RequestCounts,
    add_listing_semantics_flag,
    exporter_command,
    free_port,
    job_name,
    listing_semantics_line,
    machine,
    moto_backend,
    moto_server,
    peak_rss_kib,
    percentile,
    running_indices,
    seed_jobs,
    start_process,
    wait_ready,
    wait_refreshes_ended,
    write_config,
)
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(ROOT))

from exporter.aws.operations import DESCRIBE_OPERATION, LIST_OPERATION
from exporter.config.reading import parse_duration
from exporter.config.settings import DescribeSettings

SCRAPE_TIMEOUT_SECONDS = "120"
# The product's stated target for a steady-state refresh, whatever the number of jobs.
STEADY_LIST_REQUEST_TARGET = 5
# Jobs that finish among those changed between the full and the steady-state refresh.
FINISHING_JOBS = 2


@dataclass
class VariantResult:
    """What one variant measured."""

    variant: str
    full_refresh_list_requests_per_region: float
    full_refresh_describe_requests_per_region: float
    full_refresh_seconds: float
    steady_refresh_list_requests_per_region: float
    steady_refresh_describe_requests_per_region: float
    # Counted by moto, by the job each describe names.
    steady_refresh_old_running_describes_per_region: float
    steady_refresh_seconds: float
    first_scrape_after_refresh_seconds: float
    scrape_plain_p50_seconds: float
    scrape_plain_p99_seconds: float
    scrape_gzip_p50_seconds: float
    scrape_gzip_p99_seconds: float
    body_bytes: int
    gzip_body_bytes: int
    peak_rss_mib: float
    full_refresh_tag_requests_per_region: float = 0.0
    steady_refresh_tag_requests_per_region: float = 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="tuning jobs per region")
    parser.add_argument("--regions", type=int, default=2, help="number of regions (max 4)")
    parser.add_argument("--running", type=int, default=20, help="InProgress jobs per region")
    parser.add_argument(
        "--old-running",
        type=int,
        default=0,
        help="of the running jobs, how many are older than 80%% of all jobs (default 0)",
    )
    parser.add_argument("--changes", type=int, default=5, help="jobs that change per region")
    parser.add_argument("--scrapes", type=int, default=20, help="warm scrapes per format")
    parser.add_argument(
        "--naive-scrapes", type=int, default=5, help="warm scrapes per format for the baseline"
    )
    parser.add_argument("--ttl", type=float, default=60.0, help="cache.ttl of both variants")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument(
        "--tags", action="store_true", help="tag every job and publish tags team and project"
    )
    parser.add_argument(
        "--tags-ttl", type=float, default=600.0, help="cache.tags_ttl of both variants"
    )
    parser.add_argument(
        "--retention",
        help="per_job_metrics.retention of both variants, e.g. 10m: the seeded ended jobs "
        "are then not published, nor described (default: the exporter's, 7 days)",
    )
    add_listing_semantics_flag(parser)
    parser.add_argument(
        "--serve-naive", nargs=2, metavar=("CONFIG", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve_naive:
        return serve_naive(Path(args.serve_naive[0]), int(args.serve_naive[1]))
    if not 1 <= args.regions <= len(REGIONS):
        parser.error(f"--regions must be between 1 and {len(REGIONS)}")
    try:
        running_indices(args.jobs, args.running, args.old_running)
    except ValueError as error:
        parser.error(f"--old-running: {error}")
    if args.retention is not None and not parse_duration(args.retention):
        parser.error(f"--retention: expected a duration such as 10m, got {args.retention!r}")
    describe_ttl = DescribeSettings().ttl_seconds
    if args.ttl >= describe_ttl / 2:
        print(
            f"warning: with --ttl {args.ttl:g} the running jobs may be due for describing again "
            f"(describe.ttl {describe_ttl:g}s) in the steady-state refresh",
            file=sys.stderr,
        )

    regions = REGIONS[: args.regions]
    os.environ.update(PLACEHOLDER_ENVIRONMENT)
    with moto_server(tagging=args.tags, listing_semantics=args.listing_semantics) as (
        endpoint_url,
        counts,
    ):
        started = time.monotonic()
        seed_jobs(regions, args.jobs, args.running, args.tags, args.old_running)
        print(
            f"seeded {args.jobs} jobs in each of {len(regions)} regions "
            f"in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
        results = []
        for variant, scrapes in (("exporter", args.scrapes), ("naive", args.naive_scrapes)):
            results.append(
                run_variant(variant, endpoint_url, regions, args, scrapes, counts=counts)
            )
            restore_jobs(regions, args.jobs, args.running, args.tags, args.old_running)
    report = {
        "machine": machine(),
        "command": " ".join(["python", "bench/benchmark.py", *(argv or sys.argv[1:])]),
        "listing_semantics": args.listing_semantics,
        "jobs_per_region": args.jobs,
        "regions": len(regions),
        "running_per_region": args.running,
        "old_running_per_region": args.old_running,
        "changes_per_region": args.changes,
        "finishing_per_region": min(FINISHING_JOBS, args.changes, args.running),
        "ttl_seconds": args.ttl,
        "retention": args.retention,
        "describe_ttl_seconds": describe_ttl,
        "tags": args.tags,
        "tags_ttl_seconds": args.tags_ttl,
        "requests_counted_by": "the exporter's sagemaker_tuning_exporter_api_requests_total; "
        "old running jobs' describes by moto, by job name",
        "steady_list_request_target": STEADY_LIST_REQUEST_TARGET,
        "results": [asdict(result) for result in results],
    }
    print(markdown_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def change_jobs(regions: Sequence[str], changes: int) -> None:
    """``changes`` running jobs per region move on: each counts progress, two finish.

    They are the jobs InProgress, oldest first, so old running jobs are among them; the two
    newest of them finish, so an old running job finishes only when few jobs change.
    """
    now = datetime.now(tz=UTC).replace(tzinfo=None)
    for region in regions:
        running = sorted(
            (
                job
                for job in moto_backend(region).hyper_parameter_tuning_jobs.values()
                if job.hyper_parameter_tuning_job_status == "InProgress"
            ),
            key=lambda job: (job.creation_time, job.hyper_parameter_tuning_job_name),
        )
        changed = running[:changes]
        for position, job in enumerate(changed):
            counters = dict(job.training_job_status_counters)
            counters["Completed"] += 1
            job.training_job_status_counters = counters
            job.last_modified_time = now
            if position >= len(changed) - FINISHING_JOBS:
                job.hyper_parameter_tuning_job_status = "Completed"
                job.hyper_parameter_tuning_end_time = now


def restore_jobs(
    regions: Sequence[str], jobs: int, running: int, tagged: bool = False, old_running: int = 0
) -> None:
    """Undo :func:`change_jobs`, so the next variant starts from the same account."""
    for region in regions:
        backend = moto_backend(region)
        for name in list(backend.hyper_parameter_tuning_jobs):
            del backend.hyper_parameter_tuning_jobs[name]
    seed_jobs(regions, jobs, running, tagged, old_running)


def old_running_names(args: argparse.Namespace) -> set[str]:
    """The names of the old running jobs, the same in every region."""
    indices = running_indices(args.jobs, args.running, args.old_running)
    return {job_name(index) for index in indices[: args.old_running]}


def describes_of(described: dict[tuple[str, str], int], names: set[str]) -> int:
    """The describes moto counted, in any region, of the jobs ``names``."""
    return sum(count for (_, name), count in described.items() if name in names)


def run_variant(
    variant: str,
    endpoint_url: str,
    regions: Sequence[str],
    args: argparse.Namespace,
    scrapes: int,
    *,
    counts: RequestCounts,
) -> VariantResult:
    """Run one variant's process and measure it; ``counts`` are moto's request counts."""
    port = free_port()
    old_running = old_running_names(args)
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "config.yaml"
        write_config(
            config,
            endpoint_url,
            regions,
            args.ttl,
            args.tags_ttl if args.tags else None,
            retention=args.retention,
        )
        if variant == "exporter":
            command = exporter_command(config, port)
        else:
            command = [sys.executable, __file__, "--serve-naive", str(config), str(port)]
        process = start_process(command)
        try:
            url = f"http://127.0.0.1:{port}"

            def scrape() -> list[str]:
                return [fetch(url, gzip_encoded=False).decode()]

            wait_ready(url, process)
            # The full refresh started before it was ready: its TTL runs out no later than
            # a TTL from now.
            refreshed_at = time.monotonic()
            # Ready once every first refresh ended, describes included; the scrapes that
            # wait for the refreshes to be seen ended start no other (the TTL runs on).
            full_progress = wait_refreshes_ended(scrape, counts).progress
            text, first_scrape = timed_scrape(url, gzip_encoded=False)
            full_requests = api_requests(text, LIST_OPERATION)
            full_describes = api_requests(text, DESCRIBE_OPERATION)
            full_tag_requests = api_requests(text, "GetResources")
            full_seconds = max(metric(text, "sagemaker_tuning_exporter_refresh_duration_seconds"))
            plain = [timed_scrape(url, gzip_encoded=False)[1] for _ in range(scrapes)]
            gzipped = [timed_scrape(url, gzip_encoded=True)[1] for _ in range(scrapes)]
            body = fetch(url, gzip_encoded=False)
            gzip_body = fetch(url, gzip_encoded=True, decode=False)
            if time.monotonic() - refreshed_at >= args.ttl:
                print(
                    f"warning: {variant}'s warm scrapes outlasted the TTL; raise --ttl",
                    file=sys.stderr,
                )

            described_before = describes_of(counts.described(), old_running)
            change_jobs(regions, args.changes)
            time.sleep(max(0.0, refreshed_at + args.ttl + 0.5 - time.monotonic()))
            timed_scrape(url, gzip_encoded=False)  # starts the steady-state refresh
            steady = wait_refreshes_ended(scrape, counts, full_progress)
            after = steady.texts[0]
            if any(count > 1 for count in steady.progress.refreshes_since(full_progress).values()):
                print(
                    f"warning: {variant}'s steady-state figures cover more than one refresh; "
                    "raise --ttl",
                    file=sys.stderr,
                )
            steady_requests = api_requests(after, LIST_OPERATION) - full_requests
            steady_describes = api_requests(after, DESCRIBE_OPERATION) - full_describes
            old_running_describes = describes_of(counts.described(), old_running) - described_before
            steady_tag_requests = api_requests(after, "GetResources") - full_tag_requests
            steady_seconds = max(
                metric(after, "sagemaker_tuning_exporter_refresh_duration_seconds")
            )
            peak_rss_mib = peak_rss_kib(process.pid) / 1024
        finally:
            process.terminate()
            process.wait(timeout=30)
    return VariantResult(
        variant=variant,
        full_refresh_list_requests_per_region=full_requests / len(regions),
        full_refresh_describe_requests_per_region=full_describes / len(regions),
        full_refresh_seconds=full_seconds,
        steady_refresh_list_requests_per_region=steady_requests / len(regions),
        steady_refresh_describe_requests_per_region=steady_describes / len(regions),
        steady_refresh_old_running_describes_per_region=old_running_describes / len(regions),
        full_refresh_tag_requests_per_region=full_tag_requests / len(regions),
        steady_refresh_tag_requests_per_region=steady_tag_requests / len(regions),
        steady_refresh_seconds=steady_seconds,
        first_scrape_after_refresh_seconds=first_scrape,
        scrape_plain_p50_seconds=percentile(plain, 50),
        scrape_plain_p99_seconds=percentile(plain, 99),
        scrape_gzip_p50_seconds=percentile(gzipped, 50),
        scrape_gzip_p99_seconds=percentile(gzipped, 99),
        body_bytes=len(body),
        gzip_body_bytes=len(gzip_body),
        peak_rss_mib=peak_rss_mib,
    )


def serve_naive(config_path: Path, port: int) -> int:
    """The baseline: a full listing on every refresh and generate_latest on every scrape."""
    from dataclasses import replace

    from prometheus_client import make_wsgi_app

    from exporter.app import Exporter
    from exporter.config.loading import load_config
    from exporter.web.routes import scrape_deadline
    from exporter.web.server import ExporterServer

    config = load_config(config_path)
    exporter = Exporter(replace(config, cache=replace(config.cache, full_resync_seconds=0)))
    # It renders every scrape with generate_latest: no lines are rendered on the refresh.
    exporter.cache.prepare_with(lambda _snapshot: None)
    metrics_app = make_wsgi_app(exporter.registry)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/-/ready":
            ready = exporter.cache.is_ready()
            start_response("200 OK" if ready else "503 Service Unavailable", [])
            return [b""]
        # A refresh on the scrape's path, as an exporter without a cache does its AWS calls:
        # the scrape waits for the refresh it starts, until its deadline.
        started, deadline = time.monotonic(), scrape_deadline(environ)
        exporter.cache.refresh_stale(timeout=deadline)
        exporter.cache.wait_idle(timeout=max(0.0, started + deadline - time.monotonic()))
        return metrics_app(environ, start_response)

    exporter.cache.refresh_all(timeout=None)
    server = ExporterServer(f"127.0.0.1:{port}", app)
    server.start()
    # SIGTERM from the benchmark ends the process.
    threading.Event().wait()
    return 0


def fetch(url: str, gzip_encoded: bool, decode: bool = True) -> bytes:
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": SCRAPE_TIMEOUT_SECONDS}
    if gzip_encoded:
        headers["Accept-Encoding"] = "gzip"
    request = urllib.request.Request(url + "/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=300) as response:
        body: bytes = response.read()
    return gzip.decompress(body) if gzip_encoded and decode else body


def timed_scrape(url: str, gzip_encoded: bool) -> tuple[str, float]:
    started = time.perf_counter()
    body = fetch(url, gzip_encoded, decode=False)
    elapsed = time.perf_counter() - started
    text = (gzip.decompress(body) if gzip_encoded else body).decode()
    return text, elapsed


def metric(text: str, name: str) -> list[float]:
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def api_requests(text: str, operation: str) -> float:
    """The requests the exporter counted for ``operation``, in all regions, retries included."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "sagemaker_tuning_exporter_api_requests"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("operation") == operation
    )


def markdown_table(report: dict[str, Any]) -> str:
    """The figures as a Markdown table, with what the request rows count."""
    rows = {r["variant"]: r for r in report["results"]}
    exporter, naive = rows["exporter"], rows["naive"]

    def ratio(key: str) -> str:
        if not exporter[key]:
            return "-"
        times = naive[key] / exporter[key]
        return f"{times:.0f}x" if times >= 10 else f"{times:.1f}x"

    old_running = report["old_running_per_region"]
    retention = report["retention"]
    lines = [
        f"{report['jobs_per_region']:,} jobs per region, {report['regions']} "
        f"region{'s' if report['regions'] != 1 else ''}, "
        f"{report['running_per_region']} running"
        + (f" ({old_running} of them older than 80% of all jobs)" if old_running else "")
        + f" and {report['changes_per_region']} changed per region"
        + (f", per_job_metrics.retention {retention}" if retention else "")
        + f"; {report['machine']}",
        "",
        listing_semantics_line(report["listing_semantics"]),
        "",
        "| measure | exporter | naive baseline | naive / exporter |",
        "|---|---|---|---|",
    ]
    measures = [
        (
            "List requests per region, full refresh",
            "full_refresh_list_requests_per_region",
            "{:.0f}",
        ),
        (
            "List requests per region, steady-state refresh",
            "steady_refresh_list_requests_per_region",
            "{:.0f}",
        ),
        (
            "Describe requests per region, full refresh",
            "full_refresh_describe_requests_per_region",
            "{:.0f}",
        ),
        (
            "Describe requests per region, steady-state refresh",
            "steady_refresh_describe_requests_per_region",
            "{:.0f}",
        ),
        *(
            [
                (
                    f"of them, for the {old_running} old running jobs (counted by moto)",
                    "steady_refresh_old_running_describes_per_region",
                    "{:.0f}",
                )
            ]
            if old_running
            else []
        ),
        *(
            [
                (
                    "GetResources requests per region, full refresh",
                    "full_refresh_tag_requests_per_region",
                    "{:.0f}",
                ),
                (
                    "GetResources requests per region, steady-state refresh",
                    "steady_refresh_tag_requests_per_region",
                    "{:.0f}",
                ),
            ]
            if report["tags"]
            else []
        ),
        ("refresh wall time, full (s)", "full_refresh_seconds", "{:.2f}"),
        ("refresh wall time, steady state (s)", "steady_refresh_seconds", "{:.2f}"),
        ("first scrape after a refresh (s)", "first_scrape_after_refresh_seconds", "{:.3f}"),
        ("warm scrape p50, plain (s)", "scrape_plain_p50_seconds", "{:.4f}"),
        ("warm scrape p99, plain (s)", "scrape_plain_p99_seconds", "{:.4f}"),
        ("warm scrape p50, gzip (s)", "scrape_gzip_p50_seconds", "{:.4f}"),
        ("warm scrape p99, gzip (s)", "scrape_gzip_p99_seconds", "{:.4f}"),
        ("body, plain (MB)", "body_bytes", "{:.1f}"),
        ("body, gzip (MB)", "gzip_body_bytes", "{:.2f}"),
        ("peak RSS (MiB)", "peak_rss_mib", "{:.0f}"),
    ]
    for label, key, form in measures:
        scale = 1e6 if key.endswith("bytes") else 1
        lines.append(
            f"| {label} | {form.format(exporter[key] / scale)} | "
            f"{form.format(naive[key] / scale)} | {ratio(key)} |"
        )
    lines += [
        "",
        f"Steady-state target: at most {report['steady_list_request_target']} List requests "
        "per region.",
        "",
        "Requests: the exporter's own sagemaker_tuning_exporter_api_requests_total per region, "
        "retries included"
        + (
            "; the old running jobs' row is moto's count of the describes naming them"
            if old_running
            else ""
        )
        + ". A refresh's describes are the listing's (one per running job deeper "
        "than its walk, instead of the pages above it) and the describe step's (running jobs "
        f"whose describe.ttl of {report['describe_ttl_seconds']:g}s passed, then ended jobs "
        f"without a final description, such as the {report['finishing_per_region']} that "
        "finished, at most 100 a refresh).",
        "Seeded ended jobs: "
        + (
            f"not published (retention {retention}), so there is no first-start backlog to "
            "describe."
            if retention
            else "published (the default retention), so the describe step spends its budget "
            "on their first-start backlog; --retention 10m leaves it out."
        ),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
