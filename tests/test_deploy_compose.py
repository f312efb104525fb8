"""deploy/docker-compose.yml: mounted files exist, ports stay on loopback, services find each other."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from exporter.cli import DEFAULT_LISTEN_ADDRESS
from tests.conftest import ROOT
from tests.test_deploy_container import arguments_of

DEPLOY = ROOT / "deploy"
DEFAULT_PORT = int(DEFAULT_LISTEN_ADDRESS.rsplit(":", 1)[1])
PROMETHEUS_PORT = 9090


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    """The compose file's services by name."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """A service's bind mounts: container path -> host path, resolved from deploy/."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts[target] = (DEPLOY / source).resolve()
    return mounts


def host_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """A service's published ports as (host address, host port, container port)."""
    published = []
    for port in service.get("ports", []):
        address, host, container = port.rsplit(":", 2)
        published.append((address, int(host), int(container)))
    return published


def test_compose_runs_the_three_services_with_pinned_images(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) == {"sagemaker-tuning-exporter", "prometheus", "grafana"}
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        assert ":" in image
        assert not image.endswith(":latest")


def test_every_published_port_binds_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    published = {name: host_ports(service) for name, service in services.items()}

    assert published == {
        "sagemaker-tuning-exporter": [("127.0.0.1", DEFAULT_PORT, DEFAULT_PORT)],
        "prometheus": [("127.0.0.1", PROMETHEUS_PORT, PROMETHEUS_PORT)],
        "grafana": [("127.0.0.1", 3000, 3000)],
    }


def test_every_mounted_file_exists_in_the_repository(services: dict[str, dict[str, Any]]) -> None:
    mounts = [mount for service in services.values() for mount in bind_mounts(service).values()]

    assert len(mounts) == 5
    for mount in mounts:
        assert mount.exists(), mount
        assert DEPLOY in mount.parents


def test_exporter_builds_the_image_with_the_demo_extra_and_runs_the_demo(
    services: dict[str, dict[str, Any]],
) -> None:
    exporter = services["sagemaker-tuning-exporter"]
    build = exporter["build"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]

    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
    assert build["args"]["EXTRAS"] in extras
    assert any(argument.startswith("EXTRAS=") for argument in arguments_of("ARG"))
    assert exporter["command"] == ["--demo", f"--web.listen-address=:{DEFAULT_PORT}"]


def test_prometheus_scrapes_the_exporter_service_with_the_rules_mounted(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    mounts = bind_mounts(prometheus)
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if "config.file" in a)
    config = yaml.safe_load(mounts[config_path].read_text())
    (job,) = config["scrape_configs"]
    (rule_glob,) = config["rule_files"]
    in_container = Path(config_path).parent / rule_glob
    host_rules = mounts[str(in_container.parent)]

    assert job["static_configs"][0]["targets"] == [f"sagemaker-tuning-exporter:{DEFAULT_PORT}"]
    assert sorted(host_rules.glob(in_container.name)) == sorted(
        (DEPLOY / "prometheus" / "rules").glob("*.yml")
    )


def test_grafana_provisions_the_compose_prometheus_and_the_dashboard(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    datasources = mounts["/etc/grafana/provisioning/datasources"]
    dashboards = mounts["/etc/grafana/provisioning/dashboards"]
    (datasource,) = [
        entry
        for path in sorted(datasources.glob("*.yml"))
        for entry in yaml.safe_load(path.read_text())["datasources"]
    ]
    (provider,) = [
        entry
        for path in sorted(dashboards.glob("*.yml"))
        for entry in yaml.safe_load(path.read_text())["providers"]
    ]
    url = urlsplit(datasource["url"])
    dashboard_files = {
        target: source for target, source in mounts.items() if target.endswith(".json")
    }
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]

    assert datasource["type"] == "prometheus"
    assert datasource["isDefault"] is True
    assert (url.hostname, url.port) == ("prometheus", PROMETHEUS_PORT)
    assert {str(Path(target).parent) for target in dashboard_files} == {provider["options"]["path"]}
    assert dashboard_files[home] == (DEPLOY / "grafana" / "sagemaker-tuning-jobs.json")
    assert json.loads(dashboard_files[home].read_text())["uid"] == "sagemaker-tuning-jobs"
