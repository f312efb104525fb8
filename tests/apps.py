"""The exporter's WSGI application over one fixed cache and page, for tests that need no reload."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exporter.config.reading import ConfigError
from exporter.metrics.exposition import MetricsPage
from exporter.refresh.cache import SnapshotCache
from exporter.web.routes import create_live_app

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class FixedExporter:
    """One cache and page for good: nothing to reload."""

    def __init__(self, cache: SnapshotCache, metrics_page: MetricsPage) -> None:
        self._cache = cache
        self._metrics_page = metrics_page

    def serving(self) -> tuple[SnapshotCache, MetricsPage]:
        return self._cache, self._metrics_page

    def is_ready(self) -> bool:
        return self._cache.is_ready()

    def reload(self) -> None:
        raise ConfigError("this exporter has no configuration to reload")


def create_app(cache: SnapshotCache, metrics_page: MetricsPage) -> WSGIApplication:
    """The WSGI application serving the exporter's endpoints from one cache and page.

    /-/reload answers 403, as with the lifecycle API disabled.
    """
    return create_live_app(FixedExporter(cache, metrics_page), enable_lifecycle=False)
