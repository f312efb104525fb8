"""AWS access: errors, the per-refresh guard, request counting, clients, paging and hooks.

Everything that knows botocore lives here or in the refresh steps above it; the model, the
cache and the metrics below and beside them do not import it.
"""
