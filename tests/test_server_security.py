"""The exporter over real TLS and basic auth on 127.0.0.1: right clients in, wrong ones out."""

from __future__ import annotations

import base64
import http.client
import logging
import secrets
import socket
import ssl
import struct
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from exporter.config.settings import ExporterConfig
from exporter.web import front_door
from exporter.web.reload import ReloadingWebConfig
from tests.conftest import RunningExporter
from tests.polling import wait_until
from tests.sagemaker_server import SageMakerTestServer
from tests.tls_material import KeyPair, TlsMaterial, make_tls_material, replace_file

Response = tuple[int, dict[str, str], bytes]
Serve = Callable[[str], RunningExporter]

# Made per run, so no password sits in the code and a leak could only come from the exporter.
PASSWORD = secrets.token_urlsafe(16)
WRONG_PASSWORD = secrets.token_urlsafe(16)
# Cost 4, bcrypt's lowest, keeps the tests fast.
PASSWORD_HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
REFUSED = (OSError, http.client.HTTPException)


def get(
    exporter: RunningExporter,
    path: str = "/metrics",
    *,
    context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """GET ``path`` over HTTPS when ``context`` is given, else plain HTTP."""
    port = exporter.server.port
    connection: http.client.HTTPConnection
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def wait_for_log(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 5) -> bool:
    """True once ``text`` shows up in the captured log (servers log on their threads); fails
    the test if it has not within ``timeout`` seconds."""
    return wait_until(lambda: text in caplog.text, timeout=timeout, message=f"{text!r} in the log")


@pytest.fixture
def serve(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: Callable[..., RunningExporter],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> Serve:
    """Start an exporter with the web config ``text``, written next to the test's files."""
    caplog.set_level(logging.DEBUG)

    def start(text: str) -> RunningExporter:
        path = tmp_path / "web.yml"
        path.write_text(text)
        return run_exporter(make_config(regions=("eu-west-1",)), ReloadingWebConfig(path))

    return start


def tls_config(material: TlsMaterial, extra: str = "") -> str:
    return (
        "tls_server_config:\n"
        f"  cert_file: {material.server.cert_file}\n"
        f"  key_file: {material.server.key_file}\n"
        f"{extra}"
    )


def mutual_tls_config(material: TlsMaterial, client_auth_type: str) -> str:
    return tls_config(
        material,
        f"  client_auth_type: {client_auth_type}\n  client_ca_file: {material.ca_file}\n",
    )


def test_tls_serves_metrics_to_a_client_that_trusts_the_ca(
    serve: Serve, tls_material: TlsMaterial
) -> None:
    exporter = serve(tls_config(tls_material))

    status, _, body = get(exporter, context=tls_material.client_context())

    assert exporter.url.startswith("https://")
    assert status == 200
    assert b"sagemaker_tuning_exporter_build_info" in body


def test_plain_http_to_the_tls_port_is_refused_and_the_server_keeps_serving(
    serve: Serve, tls_material: TlsMaterial, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = serve(tls_config(tls_material))

    with pytest.raises(REFUSED):
        get(exporter)

    assert wait_for_log(caplog, "TLS handshake with 127.0.0.1 failed: HTTP_REQUEST")
    assert get(exporter, context=tls_material.client_context())[0] == 200
    assert "Traceback" not in caplog.text


def pick_client(material: TlsMaterial, name: str) -> KeyPair | None:
    return {"none": None, "same CA": material.client, "other CA": material.other_ca_client}[name]


@pytest.mark.parametrize(
    "case",
    [
        # client_auth_type, client certificate, the server's reason to refuse it (None: accepted)
        ("RequireAndVerifyClientCert", "same CA", None),
        ("RequireAndVerifyClientCert", "none", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        ("RequireAndVerifyClientCert", "other CA", "CERTIFICATE_VERIFY_FAILED"),
        ("VerifyClientCertIfGiven", "same CA", None),
        ("VerifyClientCertIfGiven", "none", None),
        ("VerifyClientCertIfGiven", "other CA", "CERTIFICATE_VERIFY_FAILED"),
    ],
)
def test_mutual_tls_accepts_the_right_client_certificate_and_fails_the_handshake_for_others(
    serve: Serve,
    tls_material: TlsMaterial,
    caplog: pytest.LogCaptureFixture,
    case: tuple[str, str, str | None],
) -> None:
    client_auth_type, client, refusal = case
    exporter = serve(mutual_tls_config(tls_material, client_auth_type))
    context = tls_material.client_context(pick_client(tls_material, client))

    if refusal is None:
        assert get(exporter, context=context)[0] == 200
    else:
        with pytest.raises(REFUSED):
            get(exporter, context=context)
        assert wait_for_log(caplog, f"TLS handshake with 127.0.0.1 failed: {refusal}")


def test_min_version_tls13_refuses_a_tls12_only_client(
    serve: Serve, tls_material: TlsMaterial, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = serve(tls_config(tls_material, "  min_version: TLS13\n"))
    tls12_only = tls_material.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)

    with pytest.raises(ssl.SSLError):
        get(exporter, context=tls12_only)

    assert wait_for_log(caplog, "TLS handshake with 127.0.0.1 failed: UNSUPPORTED_PROTOCOL")
    assert get(exporter, context=tls_material.client_context())[0] == 200


def test_a_silent_client_does_not_block_a_concurrent_scrape_and_is_dropped_after_the_timeout(
    serve: Serve,
    tls_material: TlsMaterial,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(front_door, "TLS_HANDSHAKE_TIMEOUT_SECONDS", 3.0)
    exporter = serve(tls_config(tls_material))
    context = tls_material.client_context()
    assert get(exporter, context=context)[0] == 200  # the cache is warm: scrapes are quick now

    with socket.create_connection(("127.0.0.1", exporter.server.port), timeout=10) as silent:
        started = time.monotonic()
        status, _, _ = get(exporter, context=context)
        scrape_seconds = time.monotonic() - started
        dropped = silent.recv(1) == b""  # the server closes it once the handshake times out
        silent_seconds = time.monotonic() - started

    assert status == 200
    # Had the handshake blocked the accept loop, the scrape would have waited out the 3 s.
    assert scrape_seconds < 2.0
    assert dropped
    assert 2.0 < silent_seconds < 9.0
    assert wait_for_log(caplog, "TLS handshake with 127.0.0.1 failed: timed out")


def test_clients_that_hang_up_before_the_handshake_are_logged_at_debug_only(
    serve: Serve, tls_material: TlsMaterial, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = serve(tls_config(tls_material))

    for linger in (False, True) * 3:
        with socket.create_connection(("127.0.0.1", exporter.server.port), timeout=5) as client:
            if linger:  # close() then resets the connection instead of closing it
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    assert get(exporter, context=tls_material.client_context())[0] == 200
    # The closed connections reach the handshake; resets may end before it, at accept.
    assert wait_for_log(caplog, "failed: UNEXPECTED_EOF_WHILE_READING")
    handshake_records = [record for record in caplog.records if "handshake" in record.message]
    assert {record.levelno for record in handshake_records} == {logging.DEBUG}
    assert "Traceback" not in caplog.text


def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(
    serve: Serve, tls_material: TlsMaterial, tmp_path: Path
) -> None:
    served = KeyPair(tmp_path / "served.crt", tmp_path / "served.key")
    replace_file(served.cert_file, tls_material.server.cert_file.read_bytes())
    replace_file(served.key_file, tls_material.server.key_file.read_bytes())
    exporter = serve("tls_server_config:\n  cert_file: served.crt\n  key_file: served.key\n")
    assert get(exporter, context=tls_material.client_context())[0] == 200
    (tmp_path / "renewed").mkdir()
    renewed = make_tls_material(tmp_path / "renewed")  # from a new CA, to tell them apart

    replace_file(served.cert_file, renewed.server.cert_file.read_bytes())
    replace_file(served.key_file, renewed.server.key_file.read_bytes())

    assert get(exporter, context=renewed.client_context())[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        get(exporter, context=tls_material.client_context())


def test_basic_auth_lets_the_right_user_in_and_answers_401_to_everyone_else(serve: Serve) -> None:
    exporter = serve(f"basic_auth_users:\n  prometheus: '{PASSWORD_HASH}'\n")

    right = get(exporter, headers=basic("prometheus", PASSWORD))
    wrong_password = get(exporter, headers=basic("prometheus", WRONG_PASSWORD))
    unknown_user = get(exporter, headers=basic("grafana", PASSWORD))
    no_header = get(exporter)

    assert right[0] == 200 and b"sagemaker_tuning_exporter_build_info" in right[2]
    for refused in (wrong_password, unknown_user, no_header):
        assert refused[0] == 401
        assert refused[1]["WWW-Authenticate"] == 'Basic realm="sagemaker-tuning-exporter"'
        assert refused[2] == b"Unauthorized\n"


def test_basic_auth_protects_every_path_including_the_probes(serve: Serve) -> None:
    exporter = serve(f"basic_auth_users:\n  prometheus: '{PASSWORD_HASH}'\n")
    paths = ["/", "/-/healthy", "/-/ready", "/nope", "/metrics"]

    anonymous = [get(exporter, path)[0] for path in paths]
    authenticated = [
        get(exporter, path, headers=basic("prometheus", PASSWORD))[0] for path in paths
    ]

    assert anonymous == [401] * len(paths)
    assert authenticated == [200, 200, 503, 404, 200]


def test_no_password_or_authorization_header_reaches_the_logs(
    serve: Serve, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    exporter = serve(f"basic_auth_users:\n  prometheus: '{PASSWORD_HASH}'\n")

    statuses = [
        get(exporter, headers=basic("prometheus", PASSWORD))[0],
        get(exporter, headers=basic("prometheus", WRONG_PASSWORD))[0],
        get(exporter, "/nope", headers=basic("prometheus", PASSWORD))[0],
    ]
    stdout, stderr = capfd.readouterr()

    assert statuses == [200, 401, 404]
    assert "GET /metrics" in caplog.text  # the request log is there, at debug level
    for secret in (
        PASSWORD,
        WRONG_PASSWORD,
        basic("prometheus", PASSWORD)["Authorization"].split()[1],
        basic("prometheus", WRONG_PASSWORD)["Authorization"].split()[1],
        PASSWORD_HASH,
    ):
        assert secret not in caplog.text
        assert secret not in stderr
        assert secret not in stdout


def test_tls_basic_auth_and_headers_together(serve: Serve, tls_material: TlsMaterial) -> None:
    exporter = serve(
        tls_config(tls_material)
        + "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        + f"basic_auth_users:\n  prometheus: '{PASSWORD_HASH}'\n"
    )
    context = tls_material.client_context()

    refused = get(exporter, context=context)
    accepted = get(exporter, context=context, headers=basic("prometheus", PASSWORD))

    assert refused[0] == 401 and refused[1]["X-Content-Type-Options"] == "nosniff"
    assert accepted[0] == 200 and accepted[1]["X-Content-Type-Options"] == "nosniff"
