"""The exporter's own process metrics: prometheus_client's process, platform and GC collectors.

Every prometheus_client exporter publishes these on its default registry; ours renders a
private one, so they are registered here. ``--web.disable-exporter-metrics`` (node_exporter's
flag) leaves them out. Their values change all the time, so /metrics renders them on every
scrape (:class:`~exporter.metrics.exposition.MetricsPage`'s ``fresh_registry``).

Sample output::

    # HELP process_resident_memory_bytes Resident memory size in bytes.
    # TYPE process_resident_memory_bytes gauge
    process_resident_memory_bytes 6.1341696e+07
    # HELP python_info Python platform information
    # TYPE python_info gauge
    python_info{implementation="CPython",major="3",minor="11",patchlevel="7",version="3.11.7"} 1.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector


def exporter_process_collectors() -> list[Collector]:
    """New process (``process_*``), platform (``python_info``) and GC (``python_gc_*``) collectors.

    Not registered anywhere yet: the caller puts them on its registries.
    """
    # registry=None: prometheus_client would otherwise register them on its global REGISTRY.
    collectors: list[Collector] = [
        ProcessCollector(registry=None),
        PlatformCollector(registry=None),
    ]
    # GCCollector must be given a registry, and registers itself only where it works
    # (CPython); a registry of its own says whether it did.
    scratch = CollectorRegistry()
    gc_collector = GCCollector(registry=scratch)
    if any(True for _ in scratch.collect()):
        collectors.append(gc_collector)
    return collectors
