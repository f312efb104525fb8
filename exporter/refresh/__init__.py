"""Refreshing targets: the steps of one refresh, the pipeline that runs them, and the cache.

``pipeline`` runs ``listing`` -> ``retention`` -> ``tags`` -> ``describe`` -> ``snapshots``
for one target; ``cache`` holds each target's snapshot and runs refreshes on the
``workers`` pool when they are due. ``cache``, ``snapshots``, ``retention`` and ``workers``
import no AWS code.
"""
