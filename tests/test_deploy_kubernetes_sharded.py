"""deploy/kubernetes-sharded: a StatefulSet whose pods each serve their shard, checked offline like the base."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter.cli import build_parser, shard_from_args
from exporter.model.sharding import Shard
from tests.kustomize import KUBERNETES_DIR, RULE_FILE, SHARDED_DIR, render
from tests.test_deploy_container import CONFIG_PATH
from tests.test_deploy_kubernetes import APP_LABEL, KUBERNETES_VERSION

BUILT_IN_KINDS = {"ConfigMap", "StatefulSet", "Service", "ServiceAccount"}
SHARD_FLAGS = ["--shard=auto", "--total-shards=3"]


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    """The rendered variant, keyed by kind (it holds one object of each)."""
    rendered = render(SHARDED_DIR)
    by_kind = {document["kind"]: document for document in rendered}
    assert len(by_kind) == len(rendered)
    return by_kind


@pytest.fixture(scope="module")
def base() -> dict[str, dict[str, Any]]:
    """The rendered single-replica base, keyed by kind."""
    return {document["kind"]: document for document in render(KUBERNETES_DIR)}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(workload)["containers"]
    return dict(container)


def test_variant_replaces_the_deployment_with_a_statefulset_in_the_same_namespace(
    objects: dict[str, dict[str, Any]],
) -> None:
    assert set(objects) == {*BUILT_IN_KINDS, "ServiceMonitor", "PrometheusRule"}
    assert {document["metadata"]["namespace"] for document in objects.values()} == {"monitoring"}
    for document in objects.values():
        assert document["metadata"]["labels"] == APP_LABEL, document["kind"]


def test_built_in_objects_of_the_variant_are_valid_against_the_kubernetes_schemas(
    objects: dict[str, dict[str, Any]],
) -> None:
    for kind in sorted(BUILT_IN_KINDS):
        kubernetes_validate.validate(objects[kind], KUBERNETES_VERSION, strict=True)


def test_an_invalid_statefulset_is_rejected_by_the_kubernetes_schemas(
    objects: dict[str, dict[str, Any]],
) -> None:
    broken = yaml.safe_load(yaml.safe_dump(objects["StatefulSet"]))
    broken["spec"]["podManagementPolicy"] = ["Parallel"]

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_pods_run_the_base_pod_with_only_the_sharding_flags_added(
    objects: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]
) -> None:
    statefulset, deployment = objects["StatefulSet"], base["Deployment"]
    sharded_pod, base_pod = pod_spec(statefulset), pod_spec(deployment)
    sharded_container, base_container = only_container(statefulset), only_container(deployment)

    assert sharded_container.pop("args") == [*base_container.pop("args"), *SHARD_FLAGS]
    assert sharded_container == base_container
    assert {**sharded_pod, "containers": []} == {**base_pod, "containers": []}
    assert statefulset["spec"]["template"]["metadata"] == deployment["spec"]["template"]["metadata"]
    assert objects["ConfigMap"]["data"] == base["ConfigMap"]["data"]
    assert objects["PrometheusRule"] == base["PrometheusRule"]


def test_each_pods_hostname_gives_it_its_own_shard_of_as_many_as_there_are_replicas(
    objects: dict[str, dict[str, Any]],
) -> None:
    statefulset = objects["StatefulSet"]
    replicas = statefulset["spec"]["replicas"]
    # A StatefulSet's pod is <name>-<ordinal>, and that is its hostname.
    hostnames = [f"{statefulset['metadata']['name']}-{n}" for n in range(replicas)]
    args = build_parser().parse_args(only_container(statefulset)["args"])

    assert replicas == 3
    assert args.config_file == CONFIG_PATH
    assert [shard_from_args(args, hostname) for hostname in hostnames] == [
        Shard(n, replicas) for n in range(replicas)
    ]
    with pytest.raises(ValueError, match="set --total-shards to the StatefulSet's replicas"):
        shard_from_args(args, f"{statefulset['metadata']['name']}-{replicas}")


def test_replicas_start_in_parallel_behind_a_headless_governing_service(
    objects: dict[str, dict[str, Any]],
) -> None:
    statefulset = objects["StatefulSet"]["spec"]
    service = objects["Service"]
    pod_labels = statefulset["template"]["metadata"]["labels"]
    (port,) = only_container(objects["StatefulSet"])["ports"]
    (service_port,) = service["spec"]["ports"]

    assert statefulset["podManagementPolicy"] == "Parallel"
    assert statefulset["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service_port["targetPort"] == port["name"]
    assert service_port["port"] == port["containerPort"]
    assert (
        pod_spec(objects["StatefulSet"])["serviceAccountName"]
        == (objects["ServiceAccount"]["metadata"]["name"])
    )


def test_servicemonitor_scrapes_every_pod_of_the_service_under_the_alerts_job_name(
    objects: dict[str, dict[str, Any]],
) -> None:
    monitor = objects["ServiceMonitor"]["spec"]
    service = objects["Service"]
    (endpoint,) = monitor["endpoints"]
    (service_port,) = service["spec"]["ports"]

    # The Operator scrapes every endpoint (pod) of the Services it selects, each its own
    # `instance` and `pod`; the Service's name is the job label of every pod's series.
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] == "/metrics"
    assert f'up{{job="{service["metadata"]["name"]}"}}' in RULE_FILE.read_text()


def test_variant_runs_the_image_of_the_base(
    objects: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]
) -> None:
    image = only_container(objects["StatefulSet"])["image"]

    assert image == only_container(base["Deployment"])["image"]
    assert image.startswith("sagemaker-tuning-exporter:")


def test_sharded_kustomization_lists_every_manifest_in_its_directory() -> None:
    kustomization = yaml.safe_load((SHARDED_DIR / "kustomization.yaml").read_text())
    listed = {resource for resource in kustomization["resources"] if resource != "../kubernetes"}

    assert "../kubernetes" in kustomization["resources"]
    assert {path.name for path in SHARDED_DIR.iterdir()} == {*listed, "kustomization.yaml"}
