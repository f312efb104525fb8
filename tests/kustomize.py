"""Offline rendering of deploy/kubernetes and its sharded variant, and the PrometheusRule generated from the rule files.

No kustomize binary is needed: :func:`render` applies the few kustomize features the base
and the variant use (resources, a base directory as a resource, namespace, images,
configMapGenerator with labels and a content-hash name suffix, inline strategic-merge
patches that delete an object or merge fields into it) and refuses any other. Regenerate
the PrometheusRule after editing the rules with ``make deploy/kubernetes/prometheusrule.yaml``
(``python -m tests.kustomize``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
SHARDED_DIR = ROOT / "deploy" / "kubernetes-sharded"
RULE_FILE = ROOT / "deploy" / "prometheus" / "rules" / "sagemaker-tuning.rules.yml"
PROMETHEUS_RULE = KUBERNETES_DIR / "prometheusrule.yaml"
SUPPORTED_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "configMapGenerator",
    "images",
    "patches",
}


def render(directory: Path = KUBERNETES_DIR) -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k directory`` creates, as kustomize builds them."""
    objects, _ = _build(directory)
    return objects


def _build(directory: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The objects of the kustomization in ``directory``, and its generated names by given name."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED_KEYS
    assert not unsupported, f"the offline renderer does not support {sorted(unsupported)}"
    objects: list[dict[str, Any]] = []
    renamed: dict[str, str] = {}
    for resource in kustomization["resources"]:
        path = directory / resource
        if path.is_dir():
            base_objects, base_renamed = _build(path)
            objects.extend(base_objects)
            renamed.update(base_renamed)
        else:
            objects.extend(
                document for document in yaml.safe_load_all(path.read_text()) if document
            )
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
    for entry in kustomization.get("patches", []):
        assert set(entry) == {"patch"}, (
            f"the offline renderer supports inline patches only: {entry}"
        )
        objects = _apply_patch(objects, yaml.safe_load(entry["patch"]))
    images = {image["name"]: image for image in kustomization.get("images", [])}
    for document in objects:
        if "namespace" in kustomization:
            document["metadata"]["namespace"] = kustomization["namespace"]
        pod = document.get("spec", {}).get("template", {}).get("spec")
        if pod is None:
            continue
        for container in pod["containers"]:
            # kustomize matches an image by its name, whatever tag it already has.
            image = images.get(container["image"].partition(":")[0])
            if image is not None:
                name = image.get("newName", container["image"].partition(":")[0])
                container["image"] = f"{name}:{image['newTag']}"
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                name = volume["configMap"]["name"]
                volume["configMap"]["name"] = renamed.get(name, name)
    return objects, renamed


def _apply_patch(objects: list[dict[str, Any]], patch: dict[str, Any]) -> list[dict[str, Any]]:
    """``objects`` with a strategic-merge patch applied to the one object of its kind and name.

    Only what the variant needs: ``$patch: delete``, or fields merged into mappings (no
    list merging, no other directive).
    """
    key = (patch["kind"], patch["metadata"]["name"])
    matches = [o for o in objects if (o["kind"], o["metadata"]["name"]) == key]
    assert len(matches) == 1, f"patch target {key} matches {len(matches)} objects"
    if patch.get("$patch") == "delete":
        return [o for o in objects if o is not matches[0]]
    _merge(matches[0], patch)
    return objects


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for field, value in patch.items():
        assert not field.startswith("$"), f"the offline renderer does not support {field}"
        if isinstance(value, dict) and isinstance(into.get(field), dict):
            _merge(into[field], value)
        else:
            assert not isinstance(value, list), "the offline renderer does not merge lists"
            into[field] = value


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
