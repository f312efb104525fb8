"""HTTP basic authentication against bcrypt hashes, as a WSGI middleware.

A request without valid credentials, to any path, gets::

    HTTP/1.0 401 Unauthorized
    WWW-Authenticate: Basic realm="sagemaker-tuning-exporter"

    Unauthorized
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import bcrypt

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REALM = "sagemaker-tuning-exporter"
# bcrypt reads at most 72 bytes; like Go's bcrypt, longer passwords never match.
MAX_PASSWORD_BYTES = 72
# Only right passwords are remembered, so this bounds nothing an honest setup reaches.
MAX_REMEMBERED_CREDENTIALS = 1024
_UNAUTHORIZED_BODY = b"Unauthorized\n"


class BasicAuthenticator:
    """Checks user names and passwords against bcrypt hashes, remembering the right ones.

    bcrypt is slow by design and Prometheus sends the same credentials with every scrape, so
    a verified pair is remembered as an HMAC under a key made at start, never as the
    password. A user name that does not exist is checked against a real hash all the same,
    so response times do not tell which user names exist.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        check_password: Callable[[bytes, bytes], bool] = bcrypt.checkpw,
    ) -> None:
        if not users:
            raise ValueError("basic authentication needs at least one user")
        self._hashes = {
            user: password_hash.encode("ascii") for user, password_hash in users.items()
        }
        # The costliest hash, so an unknown user takes as long as the slowest real one.
        self._decoy_hash = max(self._hashes.values(), key=_bcrypt_cost)
        self._check_password = check_password
        self._fingerprint_key = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def verify(self, user: str, password: bytes) -> bool:
        """Whether ``password`` is ``user``'s."""
        if len(password) > MAX_PASSWORD_BYTES:
            return False
        encoded_user = user.encode()
        fingerprint = hmac.digest(
            self._fingerprint_key,
            len(encoded_user).to_bytes(4, "big") + encoded_user + password,
            hashlib.sha256,
        )
        # The fingerprint is keyed, so how long this lookup takes tells a client nothing.
        with self._lock:
            if fingerprint in self._verified:
                return True
        password_hash = self._hashes.get(user)
        try:
            matches = self._check_password(password, password_hash or self._decoy_hash)
        except ValueError:
            return False
        if not matches or password_hash is None:
            return False
        with self._lock:
            if len(self._verified) >= MAX_REMEMBERED_CREDENTIALS:
                self._verified.clear()
            self._verified.add(fingerprint)
        return True


def _bcrypt_cost(password_hash: bytes) -> int:
    """The cost of a ``$2b$10$...`` hash (10); webconfig has checked the format."""
    return int(password_hash.split(b"$")[2])


def parse_basic_credentials(header: str) -> tuple[str, bytes] | None:
    """The user name and password of an ``Authorization: Basic`` header, else None.

    >>> parse_basic_credentials("Basic cHJvbWV0aGV1czpwbGFjZWhvbGRlcg==")
    ('prometheus', b'placeholder')
    """
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
        user, separator, password = decoded.partition(b":")
        if not separator:
            return None
        return user.decode("utf-8"), password
    except (binascii.Error, UnicodeDecodeError):
        return None


def require_basic_auth(app: WSGIApplication, authenticator: BasicAuthenticator) -> WSGIApplication:
    """``app`` behind basic authentication: every path answers 401 without valid credentials."""

    def protected(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        credentials = parse_basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if credentials is not None and authenticator.verify(*credentials):
            # Nothing behind this point needs the password.
            inner = {key: value for key, value in environ.items() if key != "HTTP_AUTHORIZATION"}
            inner["REMOTE_USER"] = credentials[0]
            return app(inner, start_response)
        start_response(
            "401 Unauthorized",
            [
                ("WWW-Authenticate", f'Basic realm="{REALM}"'),
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(_UNAUTHORIZED_BODY))),
            ],
        )
        return [_UNAUTHORIZED_BODY]

    return protected
