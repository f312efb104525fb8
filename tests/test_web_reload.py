"""Reloading the web configuration: changes take effect, broken edits leave the last good one."""

from __future__ import annotations

import logging
from pathlib import Path

import bcrypt
import pytest

from exporter.config.reading import ConfigError
from exporter.web.reload import ReloadingWebConfig
from tests.tls_material import TlsMaterial, make_tls_material, replace_file


def users_config(user: str, password: bytes) -> bytes:
    password_hash = bcrypt.hashpw(password, bcrypt.gensalt(rounds=4)).decode()
    return f"basic_auth_users:\n  {user}: '{password_hash}'\n".encode()


def test_changed_users_take_effect_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "web.yml"
    replace_file(path, users_config("prometheus", b"first-placeholder"))
    web_config = ReloadingWebConfig(path)
    before = web_config.current().authenticator

    replace_file(path, users_config("prometheus", b"second-placeholder"))
    after = web_config.current().authenticator

    assert before is not None and after is not None
    assert before.verify("prometheus", b"first-placeholder")
    assert after.verify("prometheus", b"second-placeholder")
    assert not after.verify("prometheus", b"first-placeholder")
    assert f"web configuration reloaded from {path}" in caplog.text


def test_unchanged_files_are_not_read_again(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    replace_file(path, users_config("prometheus", b"placeholder"))
    web_config = ReloadingWebConfig(path)

    first = web_config.current()

    assert web_config.current() is first


def test_a_broken_edit_keeps_the_last_good_configuration_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "web.yml"
    replace_file(path, users_config("prometheus", b"kept-placeholder"))
    web_config = ReloadingWebConfig(path)
    good = web_config.current()

    replace_file(path, b"basic_auth_users:\n  prometheus: [unterminated\n")
    during = [web_config.current() for _ in range(3)]
    replace_file(path, users_config("grafana", b"fixed-placeholder"))
    fixed = web_config.current()

    assert all(security is good for security in during)
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert [record.message for record in errors] == [
        "web configuration not reloaded, still serving the previous one: "
        f"{path}:3:1: invalid YAML: expected ',' or ']', but got '<stream end>'"
    ]
    assert fixed.authenticator is not None
    assert fixed.authenticator.verify("grafana", b"fixed-placeholder")


def test_a_certificate_renewed_in_two_steps_is_loaded_once_both_files_are_in_place(
    tmp_path: Path, tls_material: TlsMaterial
) -> None:
    cert_file, key_file = tmp_path / "server.crt", tmp_path / "server.key"
    replace_file(cert_file, tls_material.server.cert_file.read_bytes())
    replace_file(key_file, tls_material.server.key_file.read_bytes())
    path = tmp_path / "web.yml"
    replace_file(path, b"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    web_config = ReloadingWebConfig(path)
    original = web_config.current()
    (tmp_path / "renewed").mkdir()
    renewed = make_tls_material(tmp_path / "renewed")

    replace_file(cert_file, renewed.server.cert_file.read_bytes())
    half_way = web_config.current()  # the new certificate does not match the old key
    replace_file(key_file, renewed.server.key_file.read_bytes())
    complete = web_config.current()

    assert half_way is original
    assert complete is not original
    assert complete.ssl_context is not None


def test_a_web_config_that_does_not_load_at_start_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    replace_file(path, b"tls_server_config:\n  cert_file: server.crt\n")

    with pytest.raises(ConfigError) as raised:
        ReloadingWebConfig(path)

    assert str(raised.value) == f"{path}:1: tls_server_config: missing required key 'key_file'"
