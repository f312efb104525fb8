"""The exporter's configuration: YAML read with the line of every key, into frozen objects.

:mod:`~exporter.config.settings` holds the objects, :mod:`~exporter.config.loading` the
checks of the exporter's file, and :mod:`~exporter.config.reading` the YAML reading and
error reporting that the web configuration shares.
"""
