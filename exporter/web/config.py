"""Load ``--web.config.file``: TLS, mutual TLS, security headers and basic-auth users.

The format is that of Prometheus' exporter-toolkit (``web-configuration.md``)::

    tls_server_config:
      cert_file: server.crt              # relative paths start at this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt
      min_version: TLS12
    http_server_config:
      headers:
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      prometheus: $2b$10$...             # a bcrypt hash, never the password

Errors are :class:`~exporter.config.reading.ConfigError` with the file, line and key path, like
those of the main configuration::

    web.yml:4: tls_server_config.client_auth_type: expected one of NoClientCert,
    VerifyClientCertIfGiven, RequireAndVerifyClientCert, got 'RequireClientCert'

No message quotes a ``basic_auth_users`` value: a password pasted there by mistake must not
reach a log.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.config.reading import KeyPathValidator, describe_value, parse_yaml, read_text_file

# exporter-toolkit's client_auth_type values that Python's ssl module can honour.
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go requests (or requires) these certificates without verifying them; OpenSSL through
# Python's ssl module cannot, and an unverified certificate authenticates nobody.
_UNVERIFIED_CLIENT_AUTH_TYPES = ("RequestClientCert", "RequireAnyClientCert")
TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_OBSOLETE_TLS_VERSIONS = ("TLS10", "TLS11")
# The response headers exporter-toolkit lets http_server_config.headers set.
SECURITY_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
)
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
    "cipher_suites",
    "curve_preferences",
)
# Keys that would narrow what the server accepts; ignoring them would quietly accept more.
_UNSUPPORTED_TLS_KEYS = {
    "cipher_suites": "OpenSSL's default cipher suites",
    "curve_preferences": "OpenSSL's default curves",
}


@dataclass(frozen=True)
class TlsSettings:
    """The server certificate, and how clients must authenticate with theirs."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True


@dataclass(frozen=True)
class WebConfig:
    """The whole validated web configuration; empty parts mean plain HTTP, no auth."""

    tls: TlsSettings | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    basic_auth_users: Mapping[str, str] = field(default_factory=dict)


class TlsSetupError(Exception):
    """A TLS file cannot be used; ``key`` names the tls_server_config key at fault."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


def load_web_config(path: str | Path) -> WebConfig:
    """Read, parse and validate the web configuration at ``path``, TLS files included."""
    path = Path(path)
    text = read_text_file(path, "web config file")
    return parse_web_config(text, source=str(path), base_directory=path.parent)


def parse_web_config(text: str, source: str, base_directory: Path) -> WebConfig:
    """Parse YAML ``text``; relative file paths are taken from ``base_directory``."""
    data, lines = parse_yaml(
        text,
        source,
        "the file is empty; expected tls_server_config, basic_auth_users or both",
    )
    return _WebValidator(source, lines, base_directory).web_config(data)


def build_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """A server-side context for ``tls``; raises :class:`TlsSetupError` when a file is unusable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_refuse_encrypted_key)
    except ssl.SSLError as error:
        raise TlsSetupError(
            "cert_file",
            f"cannot load {tls.cert_file} with key_file {tls.key_file}: expected a PEM "
            f"certificate and its unencrypted private key ({ssl_error_reason(error)})",
        ) from None
    except OSError as error:  # removed or made unreadable since it was checked
        raise TlsSetupError(
            "cert_file", f"cannot read {tls.cert_file} or {tls.key_file}: {error.strerror}"
        ) from None
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except ssl.SSLError as error:
            raise TlsSetupError(
                "client_ca_file",
                f"cannot load {tls.client_ca_file}: expected PEM CA certificates "
                f"({ssl_error_reason(error)})",
            ) from None
        except OSError as error:
            raise TlsSetupError(
                "client_ca_file", f"cannot read {tls.client_ca_file}: {error.strerror}"
            ) from None
    return context


def _refuse_encrypted_key() -> bytes:
    # Without a callback, OpenSSL would prompt for the passphrase on the terminal.
    raise TlsSetupError("key_file", "the private key is encrypted; expected an unencrypted key")


def ssl_error_reason(error: ssl.SSLError) -> str:
    """The short reason OpenSSL gives, such as ``CERTIFICATE_VERIFY_FAILED``."""
    reason = error.reason or (error.strerror or str(error))
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", reason)


class _WebValidator(KeyPathValidator):
    """Turns the parsed web configuration into a :class:`WebConfig`, or raises."""

    def __init__(self, source: str, lines: Mapping[str, int], base_directory: Path) -> None:
        super().__init__(source, lines)
        self._base_directory = base_directory

    def web_config(self, data: object) -> WebConfig:
        top = self.mapping(
            data, "", ("tls_server_config", "http_server_config", "basic_auth_users")
        )
        # A key written with no value is an error, not "off": a template that rendered
        # nothing must not leave the endpoint open.
        tls = None
        if "tls_server_config" in top:
            tls = self.tls(top["tls_server_config"])
        headers: Mapping[str, str] = {}
        if "http_server_config" in top:
            headers = self.http_server_config(top["http_server_config"])
        users: Mapping[str, str] = {}
        if "basic_auth_users" in top:
            users = self.basic_auth_users(top["basic_auth_users"])
        return WebConfig(tls=tls, headers=headers, basic_auth_users=users)

    def tls(self, value: object) -> TlsSettings:
        path = "tls_server_config"
        tls = self.mapping(value, path, _TLS_KEYS)
        for key, default in _UNSUPPORTED_TLS_KEYS.items():
            if key in tls:
                raise self.fail(
                    f"{path}.{key}",
                    f"not supported: this exporter uses {default}; remove the key",
                )
        for key in ("cert_file", "key_file"):
            if tls.get(key) is None:
                raise self.fail(path, f"missing required key '{key}'")
        client_auth_type = self.client_auth_type(tls.get("client_auth_type", "NoClientCert"))
        client_ca_file = None
        if tls.get("client_ca_file") is not None:
            client_ca_file = self.readable_file(tls, "client_ca_file")
            if client_auth_type == "NoClientCert":
                raise self.fail(
                    f"{path}.client_ca_file",
                    "set, but client_auth_type is NoClientCert; set client_auth_type to "
                    "VerifyClientCertIfGiven or RequireAndVerifyClientCert",
                )
        elif client_auth_type != "NoClientCert":
            raise self.fail(
                f"{path}.client_auth_type",
                f"{client_auth_type} needs client_ca_file, the CA that signs client certificates",
            )
        min_version = self.tls_version(tls, "min_version", "TLS12")
        max_version = self.tls_version(tls, "max_version", "TLS13")
        if TLS_VERSIONS[min_version] > TLS_VERSIONS[max_version]:
            raise self.fail(
                f"{path}.min_version", f"{min_version} is above max_version {max_version}"
            )
        prefer = tls.get("prefer_server_cipher_suites", True)
        if not isinstance(prefer, bool):
            raise self.fail(
                f"{path}.prefer_server_cipher_suites",
                f"expected true or false, got {describe_value(prefer)}",
            )
        settings = TlsSettings(
            cert_file=self.readable_file(tls, "cert_file"),
            key_file=self.readable_file(tls, "key_file"),
            client_auth_type=client_auth_type,
            client_ca_file=client_ca_file,
            min_version=min_version,
            max_version=max_version,
            prefer_server_cipher_suites=prefer,
        )
        try:
            build_ssl_context(settings)
        except TlsSetupError as error:
            raise self.fail(f"{path}.{error.key}", error.reason) from None
        return settings

    def readable_file(self, tls: Mapping[str, Any], key: str) -> Path:
        path = f"tls_server_config.{key}"
        file = self._base_directory / self.string(tls[key], path)
        try:
            with file.open("rb"):
                pass
        except OSError as error:
            raise self.fail(path, f"cannot read {file}: {error.strerror}") from None
        return file

    def client_auth_type(self, value: object) -> str:
        path = "tls_server_config.client_auth_type"
        if value in _UNVERIFIED_CLIENT_AUTH_TYPES:
            raise self.fail(
                path,
                f"{value} accepts client certificates without verifying them, which this "
                "exporter does not support; use VerifyClientCertIfGiven or "
                "RequireAndVerifyClientCert with client_ca_file",
            )
        if not isinstance(value, str) or value not in CLIENT_AUTH_TYPES:
            raise self.fail(
                path,
                f"expected one of {', '.join(CLIENT_AUTH_TYPES)}, got {describe_value(value)}",
            )
        return value

    def tls_version(self, tls: Mapping[str, Any], key: str, default: str) -> str:
        value = tls.get(key, default)
        if value in _OBSOLETE_TLS_VERSIONS:
            raise self.fail(
                f"tls_server_config.{key}",
                f"{value} is obsolete (RFC 8996) and not supported; use TLS12 or TLS13",
            )
        if not isinstance(value, str) or value not in TLS_VERSIONS:
            raise self.fail(
                f"tls_server_config.{key}", f"expected TLS12 or TLS13, got {describe_value(value)}"
            )
        return value

    def http_server_config(self, value: object) -> Mapping[str, str]:
        path = "http_server_config"
        config = self.mapping(value, path, ("headers", "http2"))
        http2 = config.get("http2", True)
        if not isinstance(http2, bool):
            raise self.fail(f"{path}.http2", f"expected true or false, got {describe_value(http2)}")
        if config.get("headers") is None:
            return {}
        headers = self.mapping(config["headers"], f"{path}.headers", SECURITY_HEADERS)
        for name, header_value in headers.items():
            header_path = f"{path}.headers.{name}"
            if not isinstance(header_value, str) or not _HEADER_VALUE.fullmatch(header_value):
                raise self.fail(
                    header_path,
                    f"expected printable ASCII text on one line, got {describe_value(header_value)}",
                )
        return dict(headers)

    def basic_auth_users(self, value: object) -> Mapping[str, str]:
        path = "basic_auth_users"
        if not isinstance(value, dict) or not value:
            raise self.fail(path, "expected a mapping of user names to bcrypt hashes")
        users: dict[str, str] = {}
        for user, password_hash in value.items():
            user_path = f"{path}.{user}"
            if not isinstance(user, str) or not user or ":" in user:
                raise self.fail(user_path, "expected a user name without ':'")
            # The value is never quoted: it may be a password pasted in by mistake.
            if not isinstance(password_hash, str) or not _BCRYPT_HASH.fullmatch(password_hash):
                raise self.fail(
                    user_path,
                    "expected a bcrypt hash ($2a$, $2b$ or $2y$, cost 4 to 31), not a password; "
                    "see docs/operations.md, 'Basic auth', to make one",
                )
            users[user] = password_hash
        return users
