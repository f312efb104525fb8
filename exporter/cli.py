"""Command line: parse flags, load the config, and run the server, one refresh, or the demo."""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from prometheus_client import generate_latest

from exporter import __version__
from exporter.app import LiveExporter, exporter_for_one_refresh
from exporter.config.loading import load_config
from exporter.config.reading import ConfigError
from exporter.config.settings import ExporterConfig
from exporter.demo import DEMO_OVERRIDDEN_KEYS
from exporter.logs import LOG_LEVELS, configure_logging
from exporter.model.sharding import Shard, ordinal_from_hostname
from exporter.web.front_door import raise_open_file_limit
from exporter.web.reload import ReloadingWebConfig
from exporter.web.routes import create_live_app
from exporter.web.server import (
    DEFAULT_MAX_CONNECTIONS,
    ExporterServer,
    listens_on_every_interface,
    parse_listen_address,
)

log = logging.getLogger("exporter")

DEFAULT_LISTEN_ADDRESS = ":10071"
DEFAULT_CONFIG_FILE = "config.yaml"
EXIT_FAILURE = 1
EXIT_CONFIG_ERROR = 2
SIGNAL_CHECK_SECONDS = 1.0


def build_parser() -> argparse.ArgumentParser:
    """The command's flags, named like those of Prometheus' own exporters."""
    parser = argparse.ArgumentParser(
        prog="sagemaker-tuning-exporter",
        description="Prometheus exporter for Amazon SageMaker hyperparameter tuning jobs.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        # None tells "not given" apart, since --demo reads a file only when one is named.
        default=None,
        help=f"path to the YAML configuration (default: {DEFAULT_CONFIG_FILE}; with --demo, none)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=DEFAULT_LISTEN_ADDRESS,
        help=f"HOST:PORT to serve metrics on (default: {DEFAULT_LISTEN_ADDRESS}, every interface)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help="path to a web configuration (exporter-toolkit format) enabling TLS, mutual TLS "
        "and basic auth (default: none, plain HTTP without authentication)",
    )
    parser.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="requests served at once, each on its own thread; more are answered 503. "
        "Connections still sending their request wait apart and do not count "
        f"(default: {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="accept POST /-/reload to reload the configuration file (SIGHUP always does); "
        "without it, /-/reload answers 403",
    )
    parser.add_argument(
        "--web.disable-exporter-metrics",
        dest="disable_exporter_metrics",
        action="store_true",
        help="leave the exporter's own process metrics (process_*, python_info, python_gc_*) "
        "out of /metrics and --once",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=sorted(LOG_LEVELS),
        help="only log messages of this severity or above (default: info)",
    )
    parser.add_argument(
        "--shard",
        type=_shard_index,
        default=0,
        help="the share of the account and region pairs this replica refreshes and publishes, "
        "0-based, of --total-shards; 'auto' takes it from the end of a StatefulSet pod's "
        "hostname (sagemaker-tuning-exporter-2 is shard 2) (default: 0)",
    )
    parser.add_argument(
        "--total-shards",
        dest="total_shards",
        type=_positive_int,
        default=1,
        help="replicas the account and region pairs are split over, each run with its own "
        "--shard (default: 1, every pair in this one)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="refresh once, print the exposition to stdout and exit; non-zero if a refresh "
        "or the account discovery failed",
    )
    parser.add_argument(
        "--check-config",
        dest="check_config",
        action="store_true",
        help="validate the configuration file and exit",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="serve a simulated account from a local SageMaker API; no AWS account needed. "
        "With --config.file, applies that file to it, except for the keys the demo sets: "
        f"{', '.join(DEMO_OVERRIDDEN_KEYS)}",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value


AUTO_SHARD = "auto"


def _shard_index(text: str) -> int | str:
    if text == AUTO_SHARD:
        return AUTO_SHARD
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of 0 or more, or {AUTO_SHARD}, got {text!r}"
        )
    return value


def shard_from_args(args: argparse.Namespace, hostname: str | None = None) -> Shard:
    """The shard ``--shard`` and ``--total-shards`` name; ValueError saying why if none.

    With ``--shard auto`` the index is the ordinal that ends ``hostname``, by default the
    ``HOSTNAME`` environment variable (which Kubernetes sets to the pod's name) or else the
    machine's host name.
    """
    if args.shard != AUTO_SHARD:
        return Shard(args.shard, args.total_shards)
    if hostname is None:
        hostname = os.environ.get("HOSTNAME") or socket.gethostname()
    index = ordinal_from_hostname(hostname)
    if index >= args.total_shards:
        raise ValueError(
            f"hostname {hostname!r} gives shard {index}, not one of 0 to "
            f"{args.total_shards - 1}: set --total-shards to the StatefulSet's replicas"
        )
    return Shard(index, args.total_shards)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        shard = shard_from_args(args)
    except ValueError as error:
        parser.error(f"--shard: {error}")
    configure_logging(args.log_level)
    try:
        web_config = None
        if args.web_config_file is not None:
            web_config = ReloadingWebConfig(args.web_config_file)
        if args.demo:
            return _run_demo(args, web_config, shard)
        config_file = args.config_file or DEFAULT_CONFIG_FILE
        config = load_config(config_file)
        if args.check_config:
            print(f"{config_file}: configuration is valid")
            if args.web_config_file is not None:
                print(f"{args.web_config_file}: web configuration is valid")
            return 0
        if args.once:
            return _run_once(config, shard, args)
        return _serve(
            config, lambda: load_config(config_file), config_file, args, web_config, shard=shard
        )
    except ConfigError as error:
        print(f"sagemaker-tuning-exporter: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


def _run_once(config: ExporterConfig, shard: Shard, args: argparse.Namespace) -> int:
    exporter, discovery_error = exporter_for_one_refresh(
        config, shard, exporter_metrics=not args.disable_exporter_metrics
    )
    exporter.cache.refresh_all(timeout=None)
    sys.stdout.write(generate_latest(exporter.registry).decode())
    if discovery_error is not None:
        print(f"account discovery failed: {discovery_error}", file=sys.stderr)
    failed = [s for s in exporter.cache.snapshots() if not s.up]
    for snapshot in failed:
        print(
            f"refresh failed: account={snapshot.account or '(default credentials)'} "
            f"region={snapshot.target.region}: {snapshot.error}",
            file=sys.stderr,
        )
    return EXIT_FAILURE if failed or discovery_error is not None else 0


def _serve(
    config: ExporterConfig,
    load: Callable[[], ExporterConfig],
    source: str,
    args: argparse.Namespace,
    web_config: ReloadingWebConfig | None,
    *,
    shard: Shard,
) -> int:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads the configuration with ``load``."""
    listen_address = args.listen_address
    try:
        parse_listen_address(listen_address)
    except ValueError as error:
        print(f"sagemaker-tuning-exporter: --web.listen-address: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    live = LiveExporter(
        config, load, source, shard=shard, exporter_metrics=not args.disable_exporter_metrics
    )
    raise_open_file_limit()
    try:
        server = ExporterServer(
            listen_address,
            create_live_app(live, args.enable_lifecycle),
            web_config,
            max_connections=args.max_connections,
        )
    except OSError as error:
        print(
            f"sagemaker-tuning-exporter: cannot listen on {listen_address}: {error.strerror}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    # The handlers only queue the signal (SimpleQueue.put is safe in a signal handler); this
    # thread acts on it, so a reload never runs inside a handler that interrupted a lock holder.
    received: queue.SimpleQueue[signal.Signals] = queue.SimpleQueue()

    def queue_signal(signum: int, _frame: FrameType | None) -> None:
        received.put(signal.Signals(signum))

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, queue_signal)
    server.start()
    security = web_config.current() if web_config else None
    log.info(
        "sagemaker-tuning-exporter %s listening on %s (port %d, %s%s) for %d account/region pairs%s",
        __version__,
        listen_address,
        server.port,
        server.scheme,
        ", basic auth" if security and security.authenticator else "",
        len(live.exporter.cache.targets),
        f", shard {shard.index} of {shard.total}" if shard.is_sharded else "",
    )
    protected = security is not None and bool(security.ssl_context or security.authenticator)
    if not protected and listens_on_every_interface(listen_address):
        log.info(
            "serving plain HTTP without authentication on every interface: anyone who reaches "
            "port %d can read the metrics; see docs/operations.md, 'Securing the endpoint'",
            server.port,
        )
    # Warm the cache so the first scrape and /-/ready need not wait for AWS.
    live.exporter.cache.refresh_stale(timeout=0)
    while (signum := _next_signal(received)) == signal.SIGHUP:
        log.info("received SIGHUP, reloading the configuration from %s", source)
        try:
            live.reload()
        except ConfigError:
            pass  # logged by the reload; the previous configuration stays in force
        except Exception:  # a fault in one reload must not end the exporter
            log.exception("configuration reload failed; the previous configuration stays")
    log.info("received %s, shutting down", signum.name)
    # A refresh still waiting on AWS runs on a daemon thread and ends with the process.
    server.stop()
    log.info("stopped")
    return 0


def _next_signal(received: queue.SimpleQueue[signal.Signals]) -> signal.Signals:
    """The next signal the handlers queued.

    Waits in short steps: Python runs a handler only when the main thread runs, and a
    signal the kernel delivers to another thread does not interrupt the main thread's wait.
    """
    while True:
        try:
            return received.get(timeout=SIGNAL_CHECK_SECONDS)
        except queue.Empty:
            continue


def _run_demo(args: argparse.Namespace, web_config: ReloadingWebConfig | None, shard: Shard) -> int:
    """Serve the demo; with ``--config.file``, the file applies to it, and SIGHUP reads it again."""
    from exporter.demo import DemoSageMaker, DemoUnavailableError, use_placeholder_credentials

    config_file: str | None = args.config_file
    # Read before the demo starts: a broken file stops here, as it stops the server.
    file_config = load_config(config_file) if config_file is not None else None
    use_placeholder_credentials()
    try:
        demo = DemoSageMaker()
    except DemoUnavailableError as error:
        print(f"sagemaker-tuning-exporter: {error}", file=sys.stderr)
        return EXIT_FAILURE
    demo.start()
    try:
        if args.once:
            return _run_once(demo.config(file_config), shard, args)
        log.info(
            "demo: open %s://127.0.0.1:%s/metrics",
            "https" if web_config and web_config.current().ssl_context else "http",
            args.listen_address.rsplit(":", 1)[-1],
        )
        if config_file is None:
            # There is no file to read again: a reload puts the same demo configuration in force.
            return _serve(
                demo.config(),
                demo.config,
                "the demo configuration",
                args,
                web_config,
                shard=shard,
            )
        return _serve(
            demo.config(file_config),
            lambda: demo.config(load_config(config_file)),
            config_file,
            args,
            web_config,
            shard=shard,
        )
    finally:
        demo.stop()
