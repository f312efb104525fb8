"""Scrapes while a crowd of idle connections is held open against the exporter.

    python bench/idle_connections.py --idle 1000 --scrapes 10 --json out.json
    python bench/idle_connections.py --idle 100 --scrapes 3 --jobs 100     # a quick run

moto's SageMaker server runs in this process on 127.0.0.1 with ``--jobs`` jobs in one region
(``--running`` of them InProgress). The exporter runs as its own process with its default
settings, ``--web.max-connections`` included. Once it is ready, this script opens ``--idle``
connections and leaves them idle: every third sends half a request line (``GET /metr``)
and nothing more, the rest send nothing. It holds them open while it scrapes /metrics
``--scrapes`` times, one after the other, each on a new connection, as Prometheus does
(gzip), and records each scrape's status and latency; then it counts how many idle
connections the exporter still holds (neither closed nor answered). The idle connections
are opened within the exporter's 10 s request read timeout, and the scrapes are done well
within it, so none should have timed out.

It prints the machine, a table, writes ``--json``, and exits 1 when a scrape failed (other
than 200, or a body shorter than its Content-Length) or took longer than ``--within``
seconds. Loopback only; placeholder credentials.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    REGIONS,
    ROOT,
    exporter_command,
    free_port,
    load_average,
    machine,
    moto_server,
    percentile,
    seed_jobs,
    start_process,
    wait_ready,
    write_config,
)

if str(ROOT) not in sys.path:  # the test suite's helpers, for a script in bench/
    sys.path.insert(0, str(ROOT))
from tests.processes import still_open

HALF_REQUEST_LINE = b"GET /metr"
TTL_SECONDS = 3600.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=1000, help="idle connections held open")
    parser.add_argument("--scrapes", type=int, default=10, help="scrapes, one at a time")
    parser.add_argument("--jobs", type=int, default=1000, help="tuning jobs in the region")
    parser.add_argument("--running", type=int, default=20, help="InProgress jobs among them")
    parser.add_argument(
        "--within", type=float, default=2.0, help="seconds a scrape may take (default: 2)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    return parser.parse_args(argv)


def scrape(port: int) -> tuple[int, float, bool]:
    """One gzip GET /metrics on a new connection: its status, seconds, and whether it was whole."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        response = connection.getresponse()
        body = response.read()
        whole = len(body) == int(response.getheader("Content-Length") or -1)
        return response.status, time.monotonic() - started, whole
    finally:
        connection.close()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    region = REGIONS[0]
    with moto_server() as (url, _), tempfile.TemporaryDirectory() as directory:
        seed_jobs([region], args.jobs, args.running)
        config = Path(directory) / "config.yaml"
        write_config(config, url, [region], TTL_SECONDS)
        port = free_port()
        process = start_process(exporter_command(config, port))
        idle: list[socket.socket] = []
        try:
            wait_ready(f"http://127.0.0.1:{port}", process)
            opened_at = time.monotonic()
            for index in range(args.idle):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                if index % 3 == 0:
                    sock.sendall(HALF_REQUEST_LINE)
                idle.append(sock)
            opening_seconds = time.monotonic() - opened_at
            scrapes = [scrape(port) for _ in range(args.scrapes)]
            held_open = sum(still_open(sock) for sock in idle)
        finally:
            for sock in idle:
                sock.close()
            process.terminate()
            process.wait(timeout=30)
    latencies = [seconds for _, seconds, _ in scrapes]
    statuses: dict[str, int] = {}
    for status, _, _ in scrapes:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "machine": machine(),
        "jobs": args.jobs,
        "idle_connections": args.idle,
        "idle_opened_in_seconds": round(opening_seconds, 2),
        "scrapes": args.scrapes,
        "statuses": statuses,
        "whole_bodies": sum(whole for _, _, whole in scrapes),
        "scrape_seconds_p50_max": [round(percentile(latencies, 50), 4), round(max(latencies), 4)],
        "idle_still_open_after": held_open,
        "within_seconds": args.within,
        "load_average_end": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = measure(args)
    width = max(len(key) for key in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    served = report["statuses"].get("200", 0) == report["whole_bodies"] == args.scrapes
    within = report["scrape_seconds_p50_max"][1] <= args.within
    print("every scrape served whole in time" if served and within else "scrapes **failed**")
    return 0 if served and within else 1


if __name__ == "__main__":
    sys.exit(main())
