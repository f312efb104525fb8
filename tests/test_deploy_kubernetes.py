"""deploy/kubernetes: valid manifests, consistent with the exporter's port, paths, config and image."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter.cli import DEFAULT_LISTEN_ADDRESS
from exporter.config.loading import load_config
from exporter.config.settings import ExporterConfig
from tests.conftest import ROOT, RunningExporter
from tests.kustomize import KUBERNETES_DIR, PROMETHEUS_RULE, RULE_FILE, prometheus_rule_text, render
from tests.prometheus import require_binary
from tests.test_deploy_container import CONFIG_PATH, arguments_of

KUBERNETES_VERSION = "1.30.0"
APP_LABEL = {"app.kubernetes.io/name": "sagemaker-tuning-exporter"}
DEFAULT_PORT = int(DEFAULT_LISTEN_ADDRESS.rsplit(":", 1)[1])
BUILT_IN_KINDS = {"ConfigMap", "Deployment", "Service", "ServiceAccount"}


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    """The rendered base, keyed by kind (the base holds one object of each)."""
    rendered = render()
    by_kind = {document["kind"]: document for document in rendered}
    assert len(by_kind) == len(rendered)
    return by_kind


def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's only container."""
    (only,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_base_renders_every_object_the_exporter_needs_in_one_namespace(
    objects: dict[str, dict[str, Any]],
) -> None:
    assert set(objects) == {*BUILT_IN_KINDS, "ServiceMonitor", "PrometheusRule"}
    assert {document["metadata"]["namespace"] for document in objects.values()} == {"monitoring"}


def test_built_in_objects_are_valid_when_checked_against_the_kubernetes_schemas(
    objects: dict[str, dict[str, Any]],
) -> None:
    for kind in sorted(BUILT_IN_KINDS):
        kubernetes_validate.validate(objects[kind], KUBERNETES_VERSION, strict=True)


def test_invalid_object_is_rejected_when_checked_against_the_kubernetes_schemas(
    objects: dict[str, dict[str, Any]],
) -> None:
    broken = yaml.safe_load(yaml.safe_dump(objects["Deployment"]))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_deployment_mounts_the_example_config_where_the_image_reads_it(
    objects: dict[str, dict[str, Any]],
) -> None:
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    mounts = {mount["name"]: mount for mount in container(objects)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    config_map = objects["ConfigMap"]
    (key,) = config_map["data"]
    (cmd,) = arguments_of("CMD")

    assert container(objects)["args"] == [f"--config.file={CONFIG_PATH}"]
    assert f"--config.file={CONFIG_PATH}" in cmd
    assert f"{mounts['config']['mountPath']}/{key}" == CONFIG_PATH
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert config_map["data"][key] == (ROOT / "config.example.yaml").read_text(), (
        "copy config.example.yaml to deploy/kubernetes/exporter-config.yaml"
    )


def test_configmap_holds_a_configuration_the_exporter_accepts(
    objects: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    (text,) = objects["ConfigMap"]["data"].values()
    path = tmp_path / "config.yaml"
    path.write_text(text)

    config = load_config(path)

    assert config.regions


def test_ports_and_probe_paths_match_the_exporter_when_it_serves(
    objects: dict[str, dict[str, Any]],
    make_config: Callable[..., ExporterConfig],
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    exporter = container(objects)
    (port,) = exporter["ports"]
    (service_port,) = objects["Service"]["spec"]["ports"]
    running = run_exporter(make_config())
    running.exporter.cache.refresh_all(timeout=30)
    probes = [exporter["livenessProbe"]["httpGet"], exporter["readinessProbe"]["httpGet"]]

    assert port["containerPort"] == DEFAULT_PORT == service_port["port"]
    assert service_port["targetPort"] == port["name"]
    assert [probe["path"] for probe in probes] == ["/-/healthy", "/-/ready"]
    for probe in probes:
        assert probe["port"] == port["name"]
        assert running.get(probe["path"])[0] == 200


def test_pod_runs_as_the_images_non_root_user_on_a_read_only_root_filesystem(
    objects: dict[str, dict[str, Any]],
) -> None:
    pod_security = objects["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    security = container(objects)["securityContext"]
    (user,) = arguments_of("USER")

    assert pod_security["runAsNonRoot"] is True
    assert f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}" == user
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_resources_are_requested_and_bounded(objects: dict[str, dict[str, Any]]) -> None:
    resources = container(objects)["resources"]

    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    assert resources["requests"]["memory"] == "128Mi"
    assert resources["limits"]["memory"] == "256Mi"


def test_labels_select_the_pod_from_deployment_service_and_servicemonitor(
    objects: dict[str, dict[str, Any]],
) -> None:
    deployment = objects["Deployment"]["spec"]
    pod_labels = deployment["template"]["metadata"]["labels"]
    service = objects["Service"]
    monitor = objects["ServiceMonitor"]["spec"]

    assert deployment["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert (
        deployment["template"]["spec"]["serviceAccountName"]
        == (objects["ServiceAccount"]["metadata"]["name"])
    )
    for document in objects.values():
        assert document["metadata"]["labels"] == APP_LABEL, document["kind"]


def test_servicemonitor_scrapes_the_service_port_on_metrics(
    objects: dict[str, dict[str, Any]],
) -> None:
    monitor = objects["ServiceMonitor"]
    (endpoint,) = monitor["spec"]["endpoints"]
    (service_port,) = objects["Service"]["spec"]["ports"]

    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    assert set(endpoint) == {"port", "path", "interval", "scrapeTimeout"}
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] == "/metrics"
    # The Service's name becomes the job label that SageMakerTuningExporterDown selects.
    assert f'up{{job="{objects["Service"]["metadata"]["name"]}"}}' in RULE_FILE.read_text()


def test_serviceaccount_shows_the_irsa_role_annotation(
    objects: dict[str, dict[str, Any]],
) -> None:
    annotations = objects["ServiceAccount"]["metadata"]["annotations"]

    assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def test_prometheusrule_carries_exactly_the_rule_files_groups(
    objects: dict[str, dict[str, Any]],
) -> None:
    rule = objects["PrometheusRule"]

    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    assert rule["spec"]["groups"] == yaml.safe_load(RULE_FILE.read_text())["groups"]
    assert PROMETHEUS_RULE.read_text() == prometheus_rule_text(), (
        "regenerate it: make deploy/kubernetes/prometheusrule.yaml"
    )


def test_promtool_accepts_the_prometheusrule_groups(
    objects: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    promtool = require_binary("promtool")
    rule_file = tmp_path / "prometheusrule.yml"
    rule_file.write_text(yaml.safe_dump(objects["PrometheusRule"]["spec"]))

    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_kustomization_lists_every_manifest_in_the_directory() -> None:
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"]) | {"kustomization.yaml", "exporter-config.yaml"}

    assert {path.name for path in KUBERNETES_DIR.iterdir()} == listed
