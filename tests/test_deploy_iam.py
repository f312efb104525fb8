"""deploy/iam-*.json allow exactly the AWS operations the exporter sends, found two ways.

Statically, every botocore client method the source calls on the services it creates
clients for; dynamically, every operation in ``sagemaker_tuning_exporter_api_requests_total``
after a run against the test server that assumes a role. A new call without a policy update
fails here.
"""

from __future__ import annotations

import ast
import fnmatch
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name

from exporter.config.settings import AccountSettings, ExporterConfig
from tests.conftest import ROOT, RunningExporter
from tests.expected import samples
from tests.sagemaker_server import SageMakerTestServer

DEPLOY = ROOT / "deploy"
ROLE_ARN = "arn:aws:iam::111111111111:role/sagemaker-tuning-exporter"
# botocore service name -> IAM action prefix; a service the exporter starts using must be
# added here, with the prefix the IAM Service Authorization Reference gives it.
IAM_PREFIXES = {"sagemaker": "sagemaker", "sts": "sts", "resourcegroupstaggingapi": "tag"}
# demo.py drives moto's in-process backend (create_hyper_parameter_tuning_job and such),
# never a botocore client, so nothing it calls reaches AWS.
SCAN_EXCLUDED = {"demo.py"}
# Operations on the exporter's own identity; the others run in each watched account.
OWN_IDENTITY_ACTIONS = {"sts:AssumeRole"}
# The resource each action is checked on: the listing supports no resource-level
# permissions, so only "*" grants it; describe is granted on tuning jobs only.
JOB_ARN = "arn:aws:sagemaker:eu-west-1:111111111111:hyper-parameter-tuning-job/watched-job"
RESOURCES = {"sagemaker:DescribeHyperParameterTuningJob": JOB_ARN}


def source_calls() -> tuple[set[str], set[str]]:
    """The services the exporter creates clients for, and the IAM actions of the methods it calls."""
    trees = [
        ast.parse(path.read_text())
        for path in sorted((ROOT / "exporter").rglob("*.py"))
        if path.name not in SCAN_EXCLUDED
    ]
    calls = [node for tree in trees for node in ast.walk(tree) if isinstance(node, ast.Call)]
    services = {name for call in calls if (name := string_argument(call, "create_client"))}
    methods = {call.func.attr for call in calls if isinstance(call.func, ast.Attribute)}
    # Methods handed to another call to make, as RefreshGuard.call(client.method, ...) does.
    methods |= {arg.attr for call in calls for arg in call.args if isinstance(arg, ast.Attribute)}
    methods |= {name for call in calls if (name := string_argument(call, "get_paginator"))}
    session = botocore.session.get_session()
    actions = set()
    for service in services:
        for operation in session.get_service_model(service).operation_names:
            if xform_name(operation) in methods:
                actions.add(iam_action(service, operation))
    return services, actions


def string_argument(call: ast.Call, method: str) -> str | None:
    """The literal first argument of a call of ``method`` (``x.method("name")``), else None."""
    if not (isinstance(call.func, ast.Attribute) and call.func.attr == method and call.args):
        return None
    argument = call.args[0]
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value
    return None


def iam_action(service: str, operation: str) -> str:
    """The IAM action of a botocore operation."""
    assert service in IAM_PREFIXES, f"add the IAM prefix of {service} to IAM_PREFIXES"
    return f"{IAM_PREFIXES[service]}:{operation}"


def statements(path: Path) -> list[dict[str, Any]]:
    """The statements of a policy document."""
    document = json.loads(path.read_text())
    assert document["Version"] == "2012-10-17"
    return list(document["Statement"])


def listed(value: str | list[str]) -> list[str]:
    """A policy field that is a string or a list of strings, as a list."""
    return [value] if isinstance(value, str) else list(value)


def allowed_actions(path: Path) -> set[str]:
    """Every action a policy's Allow statements name."""
    return {
        action
        for statement in statements(path)
        if statement["Effect"] == "Allow"
        for action in listed(statement["Action"])
    }


def allows(path: Path, action: str, resource: str) -> bool:
    """Whether the policy's statements allow ``action`` on ``resource`` (wildcards matched)."""
    return any(
        statement["Effect"] == "Allow"
        and any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in listed(statement["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in listed(statement["Resource"]))
        for statement in statements(path)
    )


def test_source_scan_finds_the_listing_and_assume_role() -> None:
    services, actions = source_calls()

    assert {"sagemaker", "sts", "resourcegroupstaggingapi"} <= services
    assert {
        "sagemaker:ListHyperParameterTuningJobs",
        "sts:AssumeRole",
        "tag:GetResources",
    } <= actions


def test_policies_allow_exactly_what_the_exporter_sends_when_it_assumes_a_role(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    sagemaker.add_job("eu-west-1", "watched-job", account="111111111111")
    running = run_exporter(make_config(accounts=(AccountSettings(ROLE_ARN),), tags=("team",)))
    running.exporter.cache.refresh_all(timeout=30)
    services, from_source = source_calls()
    session = botocore.session.get_session()
    sent = {
        dict(labels)["operation"]
        for (name, labels), count in samples(running.scrape()).items()
        if name == "sagemaker_tuning_exporter_api_requests_total" and count > 0
    }
    from_run = {
        iam_action(service, operation)
        for operation in sent
        for service in services
        if operation in session.get_service_model(service).operation_names
    }
    needed = from_source | from_run

    assert {
        "AssumeRole",
        "ListHyperParameterTuningJobs",
        "DescribeHyperParameterTuningJob",
        "GetResources",
    } <= sent
    assert len(from_run) == len(sent), "an operation sent that no client of the source has"
    assert from_run <= from_source, "an operation sent that the source scan did not find"
    assert allowed_actions(DEPLOY / "iam-policy.json") == needed
    assert allowed_actions(DEPLOY / "iam-watched-role-policy.json") == (
        needed - OWN_IDENTITY_ACTIONS
    )
    for action in needed - OWN_IDENTITY_ACTIONS:
        resource = RESOURCES.get(action, "*")
        assert allows(DEPLOY / "iam-policy.json", action, resource), action
        assert allows(DEPLOY / "iam-watched-role-policy.json", action, resource), action
    assert allows(DEPLOY / "iam-policy.json", "sts:AssumeRole", ROLE_ARN)


def test_policy_check_rejects_an_action_or_resource_the_policy_does_not_name() -> None:
    policy = DEPLOY / "iam-policy.json"

    assert not allows(policy, "sagemaker:StopHyperParameterTuningJob", "*")
    assert not allows(policy, "sagemaker:DescribeHyperParameterTuningJob", "*")
    assert not allows(policy, "sts:AssumeRole", "arn:aws:iam::111111111111:role/admin")


def test_trust_policy_lets_the_exporters_identity_assume_the_role_with_an_external_id() -> None:
    (statement,) = statements(DEPLOY / "iam-trust-policy.json")

    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRole"
    assert set(statement["Principal"]) == {"AWS"}
    assert "sts:ExternalId" in statement["Condition"]["StringEquals"]
    assert "Resource" not in statement


def test_readme_refers_to_every_policy_file() -> None:
    readme = (ROOT / "README.md").read_text()

    for path in sorted(DEPLOY.glob("iam-*.json")):
        assert f"deploy/{path.name}" in readme
