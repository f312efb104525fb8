"""Web config parsing: valid files become settings; each failure has a fixture and an exact message."""

from __future__ import annotations

import ssl
from pathlib import Path

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization

from exporter.config.reading import ConfigError
from exporter.web.config import (
    TlsSettings,
    TlsSetupError,
    WebConfig,
    build_ssl_context,
    load_web_config,
)
from tests.conftest import ROOT
from tests.tls_material import TlsMaterial, make_tls_material

FIXTURES = Path(__file__).parent / "fixtures" / "web_config"

EXPECTED_ERRORS = {
    "unknown_top_level_key": (
        "2: tls_config: unknown key; expected one of tls_server_config, http_server_config, "
        "basic_auth_users"
    ),
    "unknown_tls_key": (
        "4: tls_server_config.client_allowed_sans: unknown key; expected one of cert_file, "
        "key_file, client_auth_type, client_ca_file, min_version, max_version, "
        "prefer_server_cipher_suites, cipher_suites, curve_preferences"
    ),
    "missing_key_file": "1: tls_server_config: missing required key 'key_file'",
    "tls_server_config_without_value": "2: tls_server_config: expected a mapping, got nothing",
    "no_basic_auth_users": (
        "2: basic_auth_users: expected a mapping of user names to bcrypt hashes"
    ),
    "unreadable_cert_file": (
        f"2: tls_server_config.cert_file: cannot read {FIXTURES}/no-such-server.crt: "
        "No such file or directory"
    ),
    "cert_not_pem": (
        f"3: tls_server_config.cert_file: cannot load {FIXTURES}/cert_not_pem.yaml with key_file "
        f"{FIXTURES}/cert_not_pem.yaml: expected a PEM certificate and its unencrypted private "
        "key ([SSL] PEM lib)"
    ),
    "bad_client_auth_type": (
        "4: tls_server_config.client_auth_type: expected one of NoClientCert, "
        "VerifyClientCertIfGiven, RequireAndVerifyClientCert, got 'RequireClientCert'"
    ),
    "unverified_client_auth_type": (
        "4: tls_server_config.client_auth_type: RequireAnyClientCert accepts client certificates "
        "without verifying them, which this exporter does not support; use "
        "VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
    ),
    "client_auth_without_ca": (
        "4: tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file, "
        "the CA that signs client certificates"
    ),
    "ca_without_client_auth": (
        "4: tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert; set "
        "client_auth_type to VerifyClientCertIfGiven or RequireAndVerifyClientCert"
    ),
    "obsolete_min_version": (
        "4: tls_server_config.min_version: TLS11 is obsolete (RFC 8996) and not supported; "
        "use TLS12 or TLS13"
    ),
    "min_above_max": "4: tls_server_config.min_version: TLS13 is above max_version TLS12",
    "cipher_suites": (
        "4: tls_server_config.cipher_suites: not supported: this exporter uses OpenSSL's "
        "default cipher suites; remove the key"
    ),
    "hash_not_bcrypt": (
        "3: basic_auth_users.grafana: expected a bcrypt hash ($2a$, $2b$ or $2y$, cost 4 to 31), "
        "not a password; see docs/operations.md, 'Basic auth', to make one"
    ),
    "unknown_header": (
        "3: http_server_config.headers.Server: unknown key; expected one of "
        "Content-Security-Policy, X-Frame-Options, X-Content-Type-Options, X-XSS-Protection, "
        "Strict-Transport-Security"
    ),
    "header_with_newline": (
        "3: http_server_config.headers.X-Frame-Options: expected printable ASCII text on one "
        "line, got 'deny\\r\\nSet-Cookie: x=1'"
    ),
}


def test_every_web_config_failure_fixture_has_an_expected_message() -> None:
    assert sorted(path.stem for path in FIXTURES.glob("*.yaml")) == sorted(
        [*EXPECTED_ERRORS, "empty"]
    )


@pytest.mark.parametrize("fixture", sorted(EXPECTED_ERRORS))
def test_should_name_file_line_and_key_path_of_each_web_config_error(fixture: str) -> None:
    path = FIXTURES / f"{fixture}.yaml"

    with pytest.raises(ConfigError) as raised:
        load_web_config(path)

    assert str(raised.value) == f"{path}:{EXPECTED_ERRORS[fixture]}"


def test_should_not_quote_a_password_pasted_where_a_hash_belongs() -> None:
    with pytest.raises(ConfigError) as raised:
        load_web_config(FIXTURES / "hash_not_bcrypt.yaml")

    assert "plaintext-placeholder-password" not in str(raised.value)


def test_should_reject_an_empty_web_config_rather_than_serve_unprotected() -> None:
    path = FIXTURES / "empty.yaml"

    with pytest.raises(ConfigError) as raised:
        load_web_config(path)

    assert str(raised.value) == (
        f"{path}: the file is empty; expected tls_server_config, basic_auth_users or both"
    )


def test_should_report_a_missing_web_config_file() -> None:
    with pytest.raises(ConfigError) as raised:
        load_web_config("/nonexistent/web.yml")

    assert str(raised.value) == (
        "/nonexistent/web.yml: cannot read web config file: No such file or directory"
    )


def test_should_parse_every_key_with_paths_relative_to_the_web_config_file(
    tls_material: TlsMaterial,
) -> None:
    password_hash = bcrypt.hashpw(b"placeholder", bcrypt.gensalt(rounds=4)).decode()
    path = tls_material.directory / "full-web.yml"
    path.write_text(
        "tls_server_config:\n"
        "  cert_file: server.crt\n"
        f"  key_file: {tls_material.server.key_file}\n"
        "  client_auth_type: VerifyClientCertIfGiven\n"
        "  client_ca_file: ca.crt\n"
        "  min_version: TLS13\n"
        "  max_version: TLS13\n"
        "  prefer_server_cipher_suites: false\n"
        "http_server_config:\n"
        "  http2: false\n"
        "  headers:\n"
        "    X-Content-Type-Options: nosniff\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "basic_auth_users:\n"
        f"  prometheus: '{password_hash}'\n"
    )

    config = load_web_config(path)

    assert config == WebConfig(
        tls=TlsSettings(
            cert_file=tls_material.server.cert_file,
            key_file=tls_material.server.key_file,
            client_auth_type="VerifyClientCertIfGiven",
            client_ca_file=tls_material.ca_file,
            min_version="TLS13",
            max_version="TLS13",
            prefer_server_cipher_suites=False,
        ),
        headers={
            "X-Content-Type-Options": "nosniff",
            "Strict-Transport-Security": "max-age=31536000",
        },
        basic_auth_users={"prometheus": password_hash},
    )


def test_should_default_to_tls12_without_client_certificates(tls_material: TlsMaterial) -> None:
    path = tls_material.directory / "minimal-web.yml"
    path.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")

    tls = load_web_config(path).tls
    assert tls is not None
    context = build_ssl_context(tls)

    assert tls.client_auth_type == "NoClientCert"
    assert context.verify_mode == ssl.CERT_NONE
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3


def test_should_refuse_a_key_that_does_not_match_the_certificate(
    tls_material: TlsMaterial,
) -> None:
    path = tls_material.directory / "mismatched-web.yml"
    path.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n")

    with pytest.raises(ConfigError) as raised:
        load_web_config(path)

    assert str(raised.value) == (
        f"{path}:2: tls_server_config.cert_file: cannot load {tls_material.server.cert_file} "
        f"with key_file {tls_material.directory}/client.key: expected a PEM certificate and its "
        "unencrypted private key (KEY_VALUES_MISMATCH)"
    )


def test_should_refuse_an_encrypted_key_without_prompting_for_its_passphrase(
    tls_material: TlsMaterial, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(tls_material.server.key_file.read_bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase-placeholder"),
    )
    (tmp_path / "encrypted.key").write_bytes(encrypted)
    path = tmp_path / "web.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: {tls_material.server.cert_file}\n"
        "  key_file: encrypted.key\n"
    )

    with pytest.raises(ConfigError) as raised:
        load_web_config(path)

    assert str(raised.value) == (
        f"{path}:3: tls_server_config.key_file: the private key is encrypted; "
        "expected an unencrypted key"
    )


def test_a_tls_file_removed_after_its_check_is_a_setup_error_not_a_crash(tmp_path: Path) -> None:
    tls = TlsSettings(cert_file=tmp_path / "gone.crt", key_file=tmp_path / "gone.key")

    with pytest.raises(TlsSetupError) as raised:
        build_ssl_context(tls)

    assert raised.value.key == "cert_file"
    assert raised.value.reason == (
        f"cannot read {tmp_path}/gone.crt or {tmp_path}/gone.key: No such file or directory"
    )


def test_the_example_web_config_is_valid_once_its_files_exist(tmp_path: Path) -> None:
    (tmp_path / "web-config.yaml").write_text((ROOT / "web-config.example.yaml").read_text())
    tls = make_tls_material(tmp_path)  # writes server.crt and server.key
    (tmp_path / "client-ca.crt").write_bytes(tls.ca_file.read_bytes())

    config = load_web_config(tmp_path / "web-config.yaml")

    assert config.tls is not None
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert config.headers == {"X-Content-Type-Options": "nosniff"}
    assert set(config.basic_auth_users) == {"prometheus"}
