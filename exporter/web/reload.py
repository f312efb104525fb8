"""The web configuration in force, reloaded when its file, or a file it names, changes.

exporter-toolkit reads its web configuration for every connection, so renewed certificates
(cert-manager, certbot) and changed users take effect without a restart. This does the
same more cheaply: each connection and request costs a ``stat`` of the web config file and
of the certificate, key and CA files, and the files are read again only when one of them
changed. A change that does not load (a half-written certificate, a YAML typo) is logged
once, and the last good configuration stays in force::

    level=ERROR logger=exporter.web.reload msg=web configuration not reloaded, still serving
    the previous one: web.yml:3: tls_server_config.key_file: ...
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from exporter.config.reading import ConfigError
from exporter.web.basic_auth import BasicAuthenticator
from exporter.web.config import TlsSetupError, WebConfig, build_ssl_context, load_web_config

log = logging.getLogger(__name__)

# What identifies a version of a file: (inode, size, modification time), or None if missing.
_FileStamp = tuple[int, int, int] | None


@dataclass(frozen=True)
class WebSecurity:
    """What a connection or request is served with right now."""

    config: WebConfig
    ssl_context: ssl.SSLContext | None
    authenticator: BasicAuthenticator | None


class ReloadingWebConfig:
    """The web configuration at ``path``; raises ConfigError if it does not load at start."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamps: dict[Path, _FileStamp] = {}
        security = self._load(previous=None)
        if isinstance(security, ConfigError):
            raise security
        self._security = security

    def current(self) -> WebSecurity:
        """The configuration to serve with, reloaded first if a file changed since."""
        with self._lock:
            if any(_stamp(file) != stamp for file, stamp in self._stamps.items()):
                loaded = self._load(previous=self._security)
                if isinstance(loaded, ConfigError):
                    log.error(
                        "web configuration not reloaded, still serving the previous one: %s",
                        loaded,
                    )
                else:
                    log.info("web configuration reloaded from %s", self.path)
                    self._security = loaded
            return self._security

    def _load(self, previous: WebSecurity | None) -> WebSecurity | ConfigError:
        # Files are stamped before they are read, so a change during a read (a certificate
        # half written) is seen at the next check, and loaded then.
        tracked = _tls_files(previous.config) if previous else ()
        stamps = {file: _stamp(file) for file in (self.path, *tracked)}
        self._stamps = stamps
        try:
            config = load_web_config(self.path)
            for file in _tls_files(config):
                stamps.setdefault(file, _stamp(file))
            ssl_context = build_ssl_context(config.tls) if config.tls else None
        except ConfigError as error:
            return error
        except TlsSetupError as error:  # a file changed between its check and its use
            return ConfigError(f"{self.path}: tls_server_config.{error.key}: {error.reason}")
        self._stamps = {file: stamps[file] for file in (self.path, *_tls_files(config))}
        return WebSecurity(config, ssl_context, self._authenticator(config, previous))

    @staticmethod
    def _authenticator(
        config: WebConfig, previous: WebSecurity | None
    ) -> BasicAuthenticator | None:
        if not config.basic_auth_users:
            return None
        if previous is not None and previous.config.basic_auth_users == config.basic_auth_users:
            return previous.authenticator  # keeps the passwords it has verified
        return BasicAuthenticator(config.basic_auth_users)


def _tls_files(config: WebConfig) -> tuple[Path, ...]:
    if config.tls is None:
        return ()
    files = (config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file)
    return tuple(file for file in files if file is not None)


def _stamp(file: Path) -> _FileStamp:
    try:
        status = os.stat(file)
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns
