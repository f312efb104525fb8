"""The command line, run as a real process: config checks, --once, serving and clean shutdown."""

from __future__ import annotations

import base64
import gzip
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from tests.conftest import ROOT
from tests.expected import samples, without_process_metrics
from tests.polling import wait_until
from tests.processes import free_port, start_exporter, stop_with_sigterm, wait_for
from tests.sagemaker_server import FaultRule, SageMakerTestServer
from tests.tls_material import TlsMaterial

FIXTURES = Path(__file__).parent / "fixtures" / "config"
# What Prometheus 2.x sends to a target that did not ask for a scrape protocol.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=os.environ.copy(),
        check=False,
    )


def write_config(
    tmp_path: Path, sagemaker: SageMakerTestServer, regions: str = "[us-east-1, eu-west-1]"
) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"regions: {regions}\naws:\n  endpoint_url: {sagemaker.url}\n  max_attempts: 2\ncache:\n  ttl: 5m\n"
    )
    return path


def test_check_config_accepts_the_example_config() -> None:
    result = run_cli("--check-config", "--config.file", "config.example.yaml")

    assert result.returncode == 0
    assert result.stdout == "config.example.yaml: configuration is valid\n"


def test_check_config_reports_an_error_with_exit_code_2_and_no_traceback() -> None:
    path = FIXTURES / "unknown_status.yaml"

    result = run_cli("--check-config", "--config.file", str(path))

    assert result.returncode == 2
    assert result.stderr == (
        f"sagemaker-tuning-exporter: configuration error: {path}:5: filters.statuses[1]: expected one "
        "of Completed, DeleteFailed, Deleting, Failed, InProgress, Stopped, Stopping, got 'Running'\n"
    )
    assert "Traceback" not in result.stderr


def test_a_broken_config_stops_the_server_before_it_starts() -> None:
    result = run_cli("--config.file", str(FIXTURES / "invalid_yaml.yaml"))

    assert result.returncode == 2
    assert "invalid YAML" in result.stderr
    assert "Traceback" not in result.stderr


def test_once_prints_the_exposition_and_exits_0(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    sagemaker.add_job("us-east-1", "printed-job", status="InProgress")
    sagemaker.add_job("eu-west-1", "another-job")

    result = run_cli("--once", "--config.file", str(write_config(tmp_path, sagemaker)))

    assert result.returncode == 0, result.stderr
    assert 'job_name="printed-job"' in result.stdout
    assert 'job_name="another-job"' in result.stdout
    assert (
        'sagemaker_tuning_exporter_up{account="123456789012",region="us-east-1"} 1.0'
        in result.stdout
    )
    assert sagemaker.received("us-east-1", "ListHyperParameterTuningJobs") == 1


def test_once_exits_1_and_names_the_failed_region(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    sagemaker.add_job("us-east-1", "printed-job")
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="server_error"))

    result = run_cli("--once", "--config.file", str(write_config(tmp_path, sagemaker)))

    assert result.returncode == 1
    assert 'job_name="printed-job"' in result.stdout
    assert (
        "refresh failed: account=(default credentials) region=eu-west-1: "
        "AttemptsExhaustedError: ListHyperParameterTuningJobs failed after" in result.stderr
    )
    assert "Traceback" not in result.stderr


PROCESS_SAMPLES = (
    "\nprocess_resident_memory_bytes ",
    "\npython_info{",
    "\npython_gc_objects_collected_total{",
)


@pytest.mark.parametrize("disabled", [False, True], ids=["default", "disabled"])
def test_once_prints_the_exporter_process_metrics_unless_disabled(
    sagemaker: SageMakerTestServer, tmp_path: Path, disabled: bool
) -> None:
    sagemaker.add_job("us-east-1", "printed-job")
    flags = ["--web.disable-exporter-metrics"] if disabled else []

    result = run_cli("--once", "--config.file", str(write_config(tmp_path, sagemaker)), *flags)

    assert result.returncode == 0, result.stderr
    assert 'job_name="printed-job"' in result.stdout
    for sample in (*PROCESS_SAMPLES, "\nprocess_open_fds ", "\nprocess_start_time_seconds "):
        assert (sample in result.stdout) is not disabled, sample


def gzip_scrape(url: str) -> str:
    """/metrics as Prometheus asks for it: OpenMetrics preferred, gzip."""
    request = urllib.request.Request(
        f"{url}/metrics",
        headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        return gzip.decompress(response.read()).decode()


def test_the_server_publishes_process_metrics_fresh_on_every_scrape(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    sagemaker.add_job("eu-west-1", "served-job")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, sagemaker, "[eu-west-1]")
    process = start_exporter("--config.file", str(config), port=port)
    try:
        assert wait_for(f"{url}/-/ready", timeout=30)
        first = gzip_scrape(url)
        requests = sagemaker.received()

        def process_values(text: str) -> dict[object, float]:
            return {
                key: number
                for key, number in samples(text).items()
                if str(key[0]).startswith(("process_cpu", "python_gc_"))
            }

        def changed() -> str | None:
            text = gzip_scrape(url)
            return text if process_values(text) != process_values(first) else None

        # Scraping allocates, so the GC's counts (or the CPU time) move within a few scrapes.
        later = wait_until(
            changed,
            timeout=30,
            interval=0.05,
            message="the process metrics to change between scrapes",
        )
    finally:
        stop_with_sigterm(process)

    assert sagemaker.received() == requests  # the per-job part came from the cache
    assert 'job_name="served-job"' in later and later.endswith("\n# EOF\n")
    for sample in PROCESS_SAMPLES:
        assert sample in first and sample in later


def test_the_server_publishes_no_process_metrics_when_disabled(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    sagemaker.add_job("eu-west-1", "served-job")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, sagemaker, "[eu-west-1]")
    process = start_exporter(
        "--config.file", str(config), "--web.disable-exporter-metrics", port=port
    )
    try:
        assert wait_for(f"{url}/-/ready", timeout=30)
        compressed = gzip_scrape(url)
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            plain = response.read().decode()
    finally:
        stop_with_sigterm(process)

    for body in (compressed, plain):
        assert 'job_name="served-job"' in body
        assert without_process_metrics(body.encode()) == body.encode()
    assert compressed.endswith("\n# EOF\n")


def test_a_malformed_listen_address_is_a_usage_error(
    tmp_path: Path, sagemaker: SageMakerTestServer
) -> None:
    result = run_cli(
        "--config.file", str(write_config(tmp_path, sagemaker)), "--web.listen-address", "10071"
    )

    assert result.returncode == 2
    assert "--web.listen-address: expected HOST:PORT" in result.stderr


def test_server_warms_up_serves_and_stops_cleanly_on_sigterm(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    sagemaker.add_job("eu-west-1", "served-job")
    port = free_port()
    config = write_config(tmp_path, sagemaker, "[eu-west-1]")
    process = start_exporter("--config.file", str(config), port=port)
    try:
        ready = wait_for(f"http://127.0.0.1:{port}/-/ready", timeout=30)
        requests_before_scrape = sagemaker.received()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read().decode()
        stderr = stop_with_sigterm(process)
    finally:
        if process.poll() is None:
            process.kill()

    assert ready
    # The start-up refresh (one listing, one describe) made the data ready; the scrape
    # within the TTL cost nothing.
    assert requests_before_scrape == 2
    assert sagemaker.received() == 2
    assert 'job_name="served-job"' in body
    assert process.returncode == 0
    assert "received SIGTERM, shutting down" in stderr
    assert "Traceback" not in stderr


def test_sigterm_stops_the_server_promptly_while_a_region_hangs(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    sagemaker.add_fault(FaultRule(region="eu-west-1", kind="hang", hang_seconds=25))
    port = free_port()
    process = start_exporter("--config.file", str(write_config(tmp_path, sagemaker)), port=port)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/-/healthy", timeout=30)
        # The start-up refresh of eu-west-1 is now waiting on the server.
        wait_until(
            lambda: sagemaker.received("eu-west-1", "ListHyperParameterTuningJobs") >= 1,
            timeout=30,
            message="the start-up listing of eu-west-1 to reach the server",
        )
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()

    assert sagemaker.received("eu-west-1", "ListHyperParameterTuningJobs") == 1
    assert process.returncode == 0
    assert elapsed < 5


def test_a_taken_port_is_reported_without_a_traceback(
    tmp_path: Path, sagemaker: SageMakerTestServer
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_cli(
            "--config.file",
            str(write_config(tmp_path, sagemaker)),
            "--web.listen-address",
            f"127.0.0.1:{port}",
        )

    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


CONSOLE_SCRIPT = str(Path(sys.executable).parent / "sagemaker-tuning-exporter")


@pytest.mark.parametrize("command", [[sys.executable, "-m", "exporter"], [CONSOLE_SCRIPT]])
def test_module_and_console_script_print_the_version(command: list[str]) -> None:
    result = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, cwd=ROOT, check=False
    )

    assert result.returncode == 0
    assert result.stdout.startswith("sagemaker-tuning-exporter ")


WEB_FIXTURES = Path(__file__).parent / "fixtures" / "web_config"
# Cost 4, bcrypt's lowest, keeps the tests fast.
DEMO_PASSWORD = secrets.token_urlsafe(16)  # made per run: no password in the code
DEMO_HASH = bcrypt.hashpw(DEMO_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def write_web_config(tmp_path: Path, tls: TlsMaterial) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(
        "tls_server_config:\n"
        f"  cert_file: {tls.server.cert_file}\n"
        f"  key_file: {tls.server.key_file}\n"
        f"basic_auth_users:\n  prometheus: '{DEMO_HASH}'\n"
    )
    return path


def test_a_broken_web_config_is_reported_with_exit_code_2_and_no_traceback(
    tmp_path: Path, sagemaker: SageMakerTestServer
) -> None:
    path = WEB_FIXTURES / "bad_client_auth_type.yaml"

    result = run_cli(
        "--config.file", str(write_config(tmp_path, sagemaker)), "--web.config.file", str(path)
    )

    assert result.returncode == 2
    assert result.stderr == (
        f"sagemaker-tuning-exporter: configuration error: {path}:4: "
        "tls_server_config.client_auth_type: expected one of NoClientCert, "
        "VerifyClientCertIfGiven, RequireAndVerifyClientCert, got 'RequireClientCert'\n"
    )


def test_check_config_validates_the_web_config_too(
    tmp_path: Path, sagemaker: SageMakerTestServer, tls_material: TlsMaterial
) -> None:
    config = write_config(tmp_path, sagemaker)
    web_config = write_web_config(tmp_path, tls_material)
    missing = tmp_path / "missing-web.yml"

    valid = run_cli(
        "--check-config", "--config.file", str(config), "--web.config.file", str(web_config)
    )
    invalid = run_cli(
        "--check-config", "--config.file", str(config), "--web.config.file", str(missing)
    )

    assert valid.returncode == 0, valid.stderr
    assert valid.stdout == (
        f"{config}: configuration is valid\n{web_config}: web configuration is valid\n"
    )
    assert invalid.returncode == 2
    assert invalid.stderr == (
        f"sagemaker-tuning-exporter: configuration error: {missing}: cannot read web config "
        "file: No such file or directory\n"
    )


def test_demo_serves_over_tls_with_basic_auth(tmp_path: Path, tls_material: TlsMaterial) -> None:
    port = free_port()
    web_config = write_web_config(tmp_path, tls_material)
    process = start_exporter("--demo", "--web.config.file", str(web_config), port=port)
    url = f"https://127.0.0.1:{port}"
    context = tls_material.client_context()
    token = base64.b64encode(f"prometheus:{DEMO_PASSWORD}".encode()).decode()
    authorization = {"Authorization": f"Basic {token}"}
    try:
        ready = wait_for(f"{url}/-/ready", timeout=60, context=context, headers=authorization)
        request = urllib.request.Request(f"{url}/metrics", headers=authorization)
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            body = response.read().decode()
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(f"{url}/metrics", timeout=10, context=context)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        stderr = stop_with_sigterm(process)
    finally:
        if process.poll() is None:
            process.kill()

    assert ready
    assert 'sagemaker_tuning_exporter_up{account="123456789012",region="us-east-1"} 1.0' in body
    assert anonymous.value.code == 401
    assert f"listening on 127.0.0.1:{port} (port {port}, https, basic auth)" in stderr
    assert DEMO_PASSWORD not in stderr
    assert process.returncode == 0
