"""The records every layer shares, and the status sets, defined once.

This layer imports nothing from the rest of the package (``make lint`` checks it), so the
cache and the metrics can be read, imported and tested without any AWS code.
"""
