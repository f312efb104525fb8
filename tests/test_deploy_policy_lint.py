"""The IAM policies of deploy/ pass parliament, and the member-role template passes cfn-lint.

parliament (its default auditors, as its CLI runs them) may report nothing above LOW, and
at LOW only a resource pattern as wide as ``*``: the tuning-job ARN of any partition,
account and region is one; a misspelt action, also a LOW, fails. cfn-lint must report
nothing at all.

Neither linter judges what a policy should grant: a wildcard action such as
``sagemaker:*`` on ``*`` is only a LOW to parliament. tests/test_deploy_iam.py checks that
the policies allow exactly the operations the exporter sends.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cfnlint.api import lint  # type: ignore[import-untyped]
from parliament import analyze_policy_string, enhance_finding  # type: ignore[import-untyped]

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
MEMBER_ROLE_TEMPLATE = DEPLOY / "iam-organizations" / "member-role.template.json"
# The one kind of finding a deploy policy may have: a resource as wide as "*", where the
# action allows no narrower one (the listing) or the pattern spans every account and region.
WIDE_RESOURCE_FINDINGS = {"RESOURCE_STAR", "RESOURCE_EFFECTIVELY_STAR"}
SEVERITIES = ["MUTE", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
# The member-role template is deployed in every partition the policies' `arn:*` allows.
CFN_LINT_REGIONS = ["us-east-1", "cn-north-1", "us-gov-west-1"]
TUNING_JOB_ARN = "arn:*:sagemaker:*:*:hyper-parameter-tuning-job/*"


def is_trust_policy(document: dict[str, Any]) -> bool:
    """Whether ``document`` is a role's trust policy: statements with a Principal, no Resource.

    parliament checks identity policies only: it reports a trust policy's missing Resource
    as MALFORMED before anything else (its statement.py says so). The trust policies are
    checked by tests/test_deploy_iam.py, and the template's by cfn-lint.
    """
    return all("Principal" in statement for statement in document["Statement"])


def policy_documents() -> dict[str, dict[str, Any]]:
    """Every IAM policy document in deploy/, by where it is written.

    The JSON files that are policy documents, and the inline policies of the roles of the
    CloudFormation templates (whose trust policies cfn-lint checks); other JSON, such as the
    Grafana dashboard, is left out.
    """
    policies: dict[str, dict[str, Any]] = {}
    for path in sorted(DEPLOY.rglob("*.json")):
        document = json.loads(path.read_text())
        name = str(path.relative_to(ROOT))
        if "Statement" in document:
            policies[name] = document
        elif "AWSTemplateFormatVersion" in document:
            for resource_name, resource in document["Resources"].items():
                if resource["Type"] != "AWS::IAM::Role":
                    continue
                for policy in resource["Properties"].get("Policies", []):
                    key = f"{name}: {resource_name} {policy['PolicyName']}"
                    policies[key] = policy["PolicyDocument"]
    return policies


def identity_policies() -> dict[str, dict[str, Any]]:
    """The policies of deploy/ that parliament checks: all but the trust policies."""
    return {
        name: document
        for name, document in policy_documents().items()
        if not is_trust_policy(document)
    }


def parliament_problems(document: dict[str, Any]) -> list[str]:
    """parliament's findings on ``document`` that a deploy policy may not have.

    Findings below LOW are left out, as parliament's CLI leaves them out by default.
    """
    analyzed = analyze_policy_string(json.dumps(document, indent=2))
    problems = []
    for finding in map(enhance_finding, analyzed.findings):
        severity = SEVERITIES.index(finding.severity)
        low = SEVERITIES.index("LOW")
        if severity > low or (severity == low and finding.issue not in WIDE_RESOURCE_FINDINGS):
            problems.append(f"{finding.severity} {finding.issue}: {finding.detail}")
    return problems


def cfn_lint_problems(template: str) -> list[str]:
    """cfn-lint's matches on a template, in every partition the policies allow."""
    return [
        f"{match.rule.id} line {match.linenumber}: {match.message}"
        for match in lint(template, regions=CFN_LINT_REGIONS)
    ]


def test_the_lint_finds_the_policies_of_both_ways_to_deploy_and_leaves_out_trust_policies() -> None:
    trust_policies = set(policy_documents()) - set(identity_policies())

    assert trust_policies == {"deploy/iam-trust-policy.json"}
    assert set(identity_policies()) == {
        "deploy/iam-policy.json",
        "deploy/iam-watched-role-policy.json",
        "deploy/iam-organizations/exporter-policy.json",
        "deploy/iam-organizations/member-role.template.json: ReaderRole read-sagemaker-tuning-jobs",
    }


@pytest.mark.parametrize("name", sorted(identity_policies()))
def test_parliament_finds_nothing_above_low_in_a_deploy_policy(name: str) -> None:
    assert parliament_problems(identity_policies()[name]) == []


def test_cfn_lint_finds_nothing_in_the_member_role_template() -> None:
    assert cfn_lint_problems(MEMBER_ROLE_TEMPLATE.read_text()) == []


def one_statement_policy(statement: dict[str, Any]) -> dict[str, Any]:
    """A policy document of ``statement`` alone."""
    return {"Version": "2012-10-17", "Statement": [statement]}


def test_parliament_check_rejects_an_action_on_a_resource_of_another_type() -> None:
    document = one_statement_policy(
        {
            "Effect": "Allow",
            "Action": "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
            "Resource": "arn:*:sagemaker:*:*:training-job/*",
        },
    )

    (problem,) = parliament_problems(document)
    assert problem.startswith("MEDIUM RESOURCE_MISMATCH")


def test_parliament_check_rejects_a_statement_without_a_resource() -> None:
    document = one_statement_policy(
        {"Effect": "Allow", "Action": "sagemaker:DescribeHyperParameterTuningJob"}
    )

    (problem,) = parliament_problems(document)
    assert problem.startswith("HIGH MALFORMED")


def test_parliament_check_rejects_a_low_finding_other_than_a_wide_resource() -> None:
    document = one_statement_policy(
        {
            "Effect": "Allow",
            "Action": "sagemaker:ListTrainingJobsForHyperParameterTuningJobs",
            "Resource": TUNING_JOB_ARN,
        },
    )

    (problem,) = parliament_problems(document)
    assert problem.startswith("LOW UNKNOWN_ACTION")


def test_parliament_check_accepts_one_tuning_job_pattern_as_wide_as_any_resource() -> None:
    document = one_statement_policy(
        {
            "Effect": "Allow",
            "Action": "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
            "Resource": TUNING_JOB_ARN,
        },
    )
    analyzed = analyze_policy_string(json.dumps(document))

    assert [finding.issue for finding in analyzed.findings] == ["RESOURCE_EFFECTIVELY_STAR"]
    assert parliament_problems(document) == []


def test_cfn_lint_check_rejects_a_template_with_an_invalid_policy_and_attribute() -> None:
    template = json.loads(MEMBER_ROLE_TEMPLATE.read_text())
    role = template["Resources"]["ReaderRole"]
    role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Effect"] = "Alow"
    template["Outputs"]["RoleArn"]["Value"] = {"Fn::GetAtt": ["ReaderRole", "RoleArn"]}

    problems = cfn_lint_problems(json.dumps(template, indent=2))

    assert sorted(problem.split()[0] for problem in problems) == ["E3510", "E6101"], problems
