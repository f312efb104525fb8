"""Basic authentication: bcrypt checks, remembered successes, and Authorization header parsing."""

from __future__ import annotations

import base64

import bcrypt
import pytest

from exporter.web.basic_auth import BasicAuthenticator, parse_basic_credentials

# Cost 4, bcrypt's lowest, keeps the tests fast; the checks are the same at any cost.
PROMETHEUS_HASH = bcrypt.hashpw(b"scrape-placeholder", bcrypt.gensalt(rounds=4)).decode()
GRAFANA_HASH = bcrypt.hashpw(b"grafana-placeholder", bcrypt.gensalt(rounds=4)).decode()


class CountingBcrypt:
    """bcrypt.checkpw, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.hashes: list[bytes] = []

    def __call__(self, password: bytes, password_hash: bytes) -> bool:
        self.calls += 1
        self.hashes.append(password_hash)
        return bcrypt.checkpw(password, password_hash)


def authenticator(check: CountingBcrypt) -> BasicAuthenticator:
    return BasicAuthenticator({"prometheus": PROMETHEUS_HASH, "grafana": GRAFANA_HASH}, check)


def test_should_accept_each_user_with_their_own_password_only() -> None:
    auth = authenticator(CountingBcrypt())

    assert auth.verify("prometheus", b"scrape-placeholder")
    assert auth.verify("grafana", b"grafana-placeholder")
    assert not auth.verify("prometheus", b"grafana-placeholder")
    assert not auth.verify("prometheus", b"scrape-placeholder ")
    assert not auth.verify("prometheus", b"")


def test_should_remember_a_verified_password_so_scrapes_cost_one_bcrypt_check() -> None:
    check = CountingBcrypt()
    auth = authenticator(check)

    results = [auth.verify("prometheus", b"scrape-placeholder") for _ in range(5)]

    assert results == [True] * 5
    assert check.calls == 1


def test_should_check_every_wrong_password_with_bcrypt() -> None:
    check = CountingBcrypt()
    auth = authenticator(check)

    results = [auth.verify("prometheus", b"wrong-placeholder") for _ in range(3)]

    assert results == [False] * 3
    assert check.calls == 3


def test_an_unknown_user_costs_a_bcrypt_check_and_is_refused_even_with_a_real_password() -> None:
    check = CountingBcrypt()
    auth = authenticator(check)

    # The decoy hash is one of the real users'; its password must not let a stranger in.
    refused = [auth.verify("mallory", password) for password in (b"x", b"scrape-placeholder")]
    refused += [auth.verify("mallory", b"grafana-placeholder")]

    assert refused == [False, False, False]
    assert check.calls == 3


def test_an_unknown_user_is_checked_against_the_costliest_hash() -> None:
    costly_hash = bcrypt.hashpw(b"costly-placeholder", bcrypt.gensalt(rounds=6)).decode()
    check = CountingBcrypt()
    auth = BasicAuthenticator({"a": PROMETHEUS_HASH, "b": costly_hash, "c": GRAFANA_HASH}, check)

    assert not auth.verify("mallory", b"costly-placeholder")
    assert check.hashes == [costly_hash.encode()]


def test_a_remembered_password_does_not_let_another_user_in() -> None:
    auth = authenticator(CountingBcrypt())
    assert auth.verify("prometheus", b"scrape-placeholder")

    assert not auth.verify("grafana", b"scrape-placeholder")
    assert not auth.verify("prometheusscrape", b"-placeholder")


def test_should_refuse_passwords_longer_than_bcrypt_reads_without_checking() -> None:
    long_hash = bcrypt.hashpw(b"p" * 72, bcrypt.gensalt(rounds=4)).decode()
    check = CountingBcrypt()
    auth = BasicAuthenticator({"prometheus": long_hash}, check)

    assert auth.verify("prometheus", b"p" * 72)
    assert not auth.verify("prometheus", b"p" * 73)
    assert check.calls == 1


def test_should_accept_htpasswd_style_2y_hashes() -> None:
    apache_hash = PROMETHEUS_HASH.replace("$2b$", "$2y$", 1)
    auth = BasicAuthenticator({"prometheus": apache_hash})

    assert auth.verify("prometheus", b"scrape-placeholder")


def test_should_need_at_least_one_user() -> None:
    with pytest.raises(ValueError, match="at least one user"):
        BasicAuthenticator({})


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("header", "credentials"),
    [
        (_basic(b"prometheus:scrape-placeholder"), ("prometheus", b"scrape-placeholder")),
        (_basic(b"prometheus:with:colons"), ("prometheus", b"with:colons")),
        (_basic(b"prometheus:"), ("prometheus", b"")),
        ("basic " + base64.b64encode(b"a:b").decode(), ("a", b"b")),
        (_basic(b"no-colon"), None),
        (_basic(b"\xff\xfe:password"), None),
        ("Basic not base64!", None),
        ("Bearer abc", None),
        ("", None),
    ],
)
def test_should_parse_only_well_formed_basic_credentials(
    header: str, credentials: tuple[str, bytes] | None
) -> None:
    assert parse_basic_credentials(header) == credentials
