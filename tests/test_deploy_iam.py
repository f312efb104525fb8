"""deploy/iam-*.json and deploy/iam-organizations/ allow exactly the AWS operations the
exporter sends, found two ways.

Statically, every botocore client method the source calls on the services it creates
clients for; dynamically, every operation in ``sagemaker_tuning_exporter_api_requests_total``
after a run against the test server that assumes a role (and, for account discovery, that
reads the organization's accounts). A new call without a policy update fails here.
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

from exporter.config.settings import (
    AccountSettings,
    ExporterConfig,
    OrganizationsDiscovery,
    TrainingJobsSettings,
    aws_partition,
)
from tests.conftest import ROOT, RunningExporter, RunningLiveExporter
from tests.expected import samples
from tests.organization import TestOrganization
from tests.sagemaker_server import SageMakerTestServer

DEPLOY = ROOT / "deploy"
ROLE_ARN = "arn:aws:iam::111111111111:role/sagemaker-tuning-exporter"
# botocore service name -> IAM action prefix; a service the exporter starts using must be
# added here, with the prefix the IAM Service Authorization Reference gives it.
IAM_PREFIXES = {
    "sagemaker": "sagemaker",
    "sts": "sts",
    "resourcegroupstaggingapi": "tag",
    "organizations": "organizations",
}
# demo.py drives moto's in-process backend (create_hyper_parameter_tuning_job and such),
# never a botocore client, so nothing it calls reaches AWS.
SCAN_EXCLUDED = {"demo.py"}
# The model layer may import no AWS code (the import contracts of `make lint`), so none of
# its calls reaches AWS; a regex's ``.search()`` there is not SageMaker's Search.
MODEL_LAYER = ROOT / "exporter" / "model"
# Operations on the exporter's own identity; the others run in each watched account.
OWN_IDENTITY_ACTIONS = {"sts:AssumeRole"}
# Operations of account discovery only, on the exporter's own identity: granted by
# deploy/iam-organizations/exporter-policy.json, not by the policy of a fixed account list.
DISCOVERY_ACTIONS = {"organizations:ListAccounts"}
ORGANIZATIONS = DEPLOY / "iam-organizations"
# The resource each action is checked on: the listing supports no resource-level
# permissions, so only "*" grants it; describe, and the listing of a tuning job's training
# jobs, are granted on tuning jobs only.
JOB_ARN = "arn:aws:sagemaker:eu-west-1:111111111111:hyper-parameter-tuning-job/watched-job"
RESOURCES = {
    "sagemaker:DescribeHyperParameterTuningJob": JOB_ARN,
    "sagemaker:ListTrainingJobsForHyperParameterTuningJob": JOB_ARN,
}
# ListTrainingJobsForHyperParameterTuningJob is sent only with training_jobs.enabled.
TRAINING_JOBS_ENABLED: dict[str, object] = {"training_jobs": TrainingJobsSettings(enabled=True)}
TRAINING_JOBS_ENABLED_YAML = "training_jobs:\n  enabled: true\n"


def source_calls() -> tuple[set[str], set[str]]:
    """The services the exporter creates clients for, and the IAM actions of the methods it calls."""
    trees = [
        ast.parse(path.read_text())
        for path in sorted((ROOT / "exporter").rglob("*.py"))
        if path.name not in SCAN_EXCLUDED and MODEL_LAYER not in path.parents
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


def test_source_scan_finds_every_operation_the_policies_grant() -> None:
    services, actions = source_calls()

    assert {"sagemaker", "sts", "resourcegroupstaggingapi", "organizations"} <= services
    assert {
        "sagemaker:ListHyperParameterTuningJobs",
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
        "sts:AssumeRole",
        "tag:GetResources",
        "organizations:ListAccounts",
    } <= actions


def test_policies_allow_exactly_what_the_exporter_sends_when_it_assumes_a_role(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    sagemaker.add_job("eu-west-1", "watched-job", account="111111111111")
    running = run_exporter(
        make_config(accounts=(AccountSettings(ROLE_ARN),), tags=("team",), **TRAINING_JOBS_ENABLED)
    )
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
    needed = (from_source | from_run) - DISCOVERY_ACTIONS

    assert {
        "AssumeRole",
        "ListHyperParameterTuningJobs",
        "DescribeHyperParameterTuningJob",
        "ListTrainingJobsForHyperParameterTuningJob",
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
    assert not allows(policy, "sagemaker:ListTrainingJobsForHyperParameterTuningJob", "*")
    assert not allows(
        policy,
        "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
        "arn:aws:sagemaker:eu-west-1:111111111111:training-job/watched-job-001",
    )
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


def member_role() -> dict[str, Any]:
    """The AWS::IAM::Role of the member-account CloudFormation template."""
    template = json.loads((ORGANIZATIONS / "member-role.template.json").read_text())
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    (role,) = template["Resources"].values()
    assert role["Type"] == "AWS::IAM::Role"
    return dict(role["Properties"])


def sent_operations(text: str) -> set[str]:
    """The operations with requests in ``sagemaker_tuning_exporter_api_requests_total``."""
    return {
        dict(labels)["operation"]
        for (name, labels), count in samples(text).items()
        if name == "sagemaker_tuning_exporter_api_requests_total" and count > 0
    }


def test_discovery_policies_allow_exactly_what_discovery_sends_from_each_identity(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
) -> None:
    member = organization.add_account("member")
    sagemaker_server.add_job("eu-west-1", "watched-job", account=member, tags={"team": "a"})
    config = tmp_path / "config.yaml"
    config.write_text(
        f"regions: [eu-west-1]\naws:\n  endpoint_url: {sagemaker_server.url}\ntags: [team]\n"
        "discovery:\n  organizations:\n    role_name: sagemaker-tuning-reader\n"
        + TRAINING_JOBS_ENABLED_YAML
    )

    running = run_live_exporter(config)
    running.live.exporter.cache.refresh_all(timeout=30)
    sent = sent_operations(running.scrape())

    services, from_source = source_calls()
    session = botocore.session.get_session()
    from_run = {
        iam_action(service, operation)
        for operation in sent
        for service in services
        if operation in session.get_service_model(service).operation_names
    }
    own_identity = OWN_IDENTITY_ACTIONS | DISCOVERY_ACTIONS
    role_policy = member_role()["Policies"][0]["PolicyDocument"]
    role_actions = {a for st in role_policy["Statement"] for a in listed(st["Action"])}
    assert {
        "ListAccounts",
        "AssumeRole",
        "ListHyperParameterTuningJobs",
        "DescribeHyperParameterTuningJob",
        "ListTrainingJobsForHyperParameterTuningJob",
        "GetResources",
    } <= sent
    assert from_run <= from_source
    assert allowed_actions(ORGANIZATIONS / "exporter-policy.json") == own_identity
    assert from_run & own_identity == own_identity
    assert role_actions == from_source - own_identity == from_run - own_identity


def test_the_exporter_policy_may_assume_the_role_the_code_builds_in_every_partition() -> None:
    policy = ORGANIZATIONS / "exporter-policy.json"
    template = json.loads((ORGANIZATIONS / "member-role.template.json").read_text())
    discovery = OrganizationsDiscovery(role_name=template["Parameters"]["RoleName"]["Default"])

    for region in ("eu-west-1", "cn-north-1", "us-gov-west-1"):
        role_arn = discovery.role_arn("111111111111", aws_partition(region))
        assert allows(policy, "sts:AssumeRole", role_arn), role_arn
    assert allows(policy, "organizations:ListAccounts", "*")
    assert not allows(policy, "sts:AssumeRole", "arn:aws:iam::111111111111:role/admin")
    assert not allows(policy, "organizations:DescribeAccount", "*")


def test_the_member_role_template_names_the_role_trusts_the_exporter_and_grants_the_reads() -> None:
    template = json.loads((ORGANIZATIONS / "member-role.template.json").read_text())
    role = member_role()
    policy_resource = statements(ORGANIZATIONS / "exporter-policy.json")[1]["Resource"]

    assert role["RoleName"] == {"Ref": "RoleName"}
    default_name = template["Parameters"]["RoleName"]["Default"]
    assert policy_resource == f"arn:*:iam::*:role/{default_name}"
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Effect"] == "Allow"
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Principal"] == {"AWS": {"Ref": "ExporterPrincipalArn"}}
    condition, with_id, without_id = trust["Condition"]["Fn::If"]
    assert template["Conditions"][condition]
    assert with_id == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    assert without_id == {"Ref": "AWS::NoValue"}
    # The role grants what a watched role of a fixed account list grants, statement by statement.
    assert role["Policies"][0]["PolicyDocument"] == json.loads(
        (DEPLOY / "iam-watched-role-policy.json").read_text()
    )
