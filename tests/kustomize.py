"""Offline rendering of deploy/kubernetes, and the PrometheusRule generated from the rule files.

No kustomize binary is needed: :func:`render` applies the few kustomize features the base
uses (resources, namespace, images, configMapGenerator with labels and a content-hash name
suffix) and refuses any other. Regenerate the PrometheusRule after editing the rules with
``make deploy/kubernetes/prometheusrule.yaml`` (``python -m tests.kustomize``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
RULE_FILE = ROOT / "deploy" / "prometheus" / "rules" / "sagemaker-tuning.rules.yml"
PROMETHEUS_RULE = KUBERNETES_DIR / "prometheusrule.yaml"
SUPPORTED_KEYS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "images"}


def render(directory: Path = KUBERNETES_DIR) -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k directory`` creates, as kustomize builds them."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED_KEYS
    assert not unsupported, f"the offline renderer does not support {sorted(unsupported)}"
    objects = [
        document
        for resource in kustomization["resources"]
        for document in yaml.safe_load_all((directory / resource).read_text())
        if document
    ]
    renamed: dict[str, str] = {}
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for entry in generator["files"]:
            key, _, source = entry.rpartition("=")
            data[key or Path(source).name] = (directory / source).read_text()
        config_map: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": generator["name"]},
            "data": data,
        }
        labels = generator.get("options", {}).get("labels")
        if labels:
            config_map["metadata"]["labels"] = dict(labels)
        digest = hashlib.sha256(json.dumps(config_map, sort_keys=True).encode()).hexdigest()
        renamed[generator["name"]] = f"{generator['name']}-{digest[:10]}"
        config_map["metadata"]["name"] = renamed[generator["name"]]
        objects.append(config_map)
    images = {image["name"]: image for image in kustomization.get("images", [])}
    for document in objects:
        if "namespace" in kustomization:
            document["metadata"]["namespace"] = kustomization["namespace"]
        pod = document.get("spec", {}).get("template", {}).get("spec")
        if pod is None:
            continue
        for container in pod["containers"]:
            image = images.get(container["image"])
            if image is not None:
                name = image.get("newName", container["image"])
                container["image"] = f"{name}:{image['newTag']}"
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                name = volume["configMap"]["name"]
                volume["configMap"]["name"] = renamed.get(name, name)
    return objects


class _LiteralBlocks(yaml.SafeDumper):
    """Writes multi-line strings (PromQL) as ``|`` blocks, as the rule files have them."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_LiteralBlocks.add_representer(str, _represent_text)


def prometheus_rule_text(rule_file: Path = RULE_FILE) -> str:
    """The PrometheusRule manifest carrying the groups of ``rule_file``."""
    groups = yaml.safe_load(rule_file.read_text())["groups"]
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "sagemaker-tuning-exporter",
            "labels": {"app.kubernetes.io/name": "sagemaker-tuning-exporter"},
        },
        "spec": {"groups": groups},
    }
    header = (
        f"# Generated from deploy/prometheus/rules/{rule_file.name} by\n"
        "# `make deploy/kubernetes/prometheusrule.yaml`; edit the rule file, not this one.\n"
        "# Your Prometheus selects PrometheusRules by label (kube-prometheus-stack:\n"
        "# `release: <its release name>`); add that label in an overlay if it needs one.\n"
    )
    body = yaml.dump(
        manifest, Dumper=_LiteralBlocks, sort_keys=False, width=1000, allow_unicode=True
    )
    return header + body


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(prometheus_rule_text())
