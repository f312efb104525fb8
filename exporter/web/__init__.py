"""The web layer: routes, the socket server, and the ``--web.config.file`` settings (TLS, basic auth)."""
