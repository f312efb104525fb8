"""Metrics: the per-job families, the collectors, and the cached /metrics exposition.

This layer reads snapshots only; it imports no AWS code and nothing of the refresh.
"""
