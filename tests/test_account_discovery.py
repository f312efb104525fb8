"""Accounts discovered from AWS Organizations: moto's Organizations, STS and SageMaker over HTTP.

The exporter runs in this process and is driven over HTTP; its discovery reads
ListAccounts from moto's server with the ambient credentials, which make the default
account the organization's management account, and assumes the role in each account
through moto's STS. Only SageMaker and tagging endpoints are configured
(``aws.endpoints``): Organizations and STS are reached through botocore's own settings,
``AWS_ENDPOINT_URL_ORGANIZATIONS`` and ``AWS_ENDPOINT_URL_STS``, as the ``organization``
fixture sets them. A job created in an account is seen only with that account's
credentials, so a job in the exposition shows its account was reached through its own role.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.app import exporter_for_one_refresh
from exporter.aws.counting import RequestCounter
from exporter.aws.organizations import OrganizationAccounts
from exporter.config.loading import load_config
from exporter.config.settings import AwsSettings
from tests.conftest import ROOT, RunningLiveExporter
from tests.expected import samples, value
from tests.organization import TestOrganization
from tests.polling import wait_until
from tests.sagemaker_server import FaultRule, SageMakerTestServer

REGION = "eu-west-1"
# Organizations requests are signed for its endpoint's region, and counted under REGION.
SIGNED_FOR = "us-east-1"
ROLE_NAME = "sagemaker-tuning-reader"


def write_config(
    path: Path, server: SageMakerTestServer, discovery: str, *, extra: str = ""
) -> Path:
    """A configuration file for REGION on the test server, with ``discovery.organizations``."""
    path.write_text(
        f"regions: [{REGION}]\n"
        f"aws:\n  endpoints:\n    sagemaker: {server.url}\n    tagging: {server.url}\n"
        "  max_attempts: 2\n"
        "cache:\n  ttl: 5m\n"
        "discovery:\n  organizations:\n"
        + textwrap.indent(textwrap.dedent(discovery).strip() + "\n", "    ")
        + extra
    )
    return path


def jobs_by_account(running: RunningLiveExporter) -> dict[str, set[str]]:
    """The job names of each account in a scrape of the exporter over HTTP."""
    found: dict[str, set[str]] = {}
    for (name, labels), _ in samples(running.scrape()).items():
        if name == "sagemaker_tuning_job_max_training_jobs":
            label = dict(labels)
            found.setdefault(label["account"], set()).add(label["job_name"])
    return found


def up_accounts(text: str) -> set[str]:
    """The accounts with an ``up`` series in an exposition."""
    return {
        dict(labels)["account"]
        for (name, labels), _ in samples(text).items()
        if name == "sagemaker_tuning_exporter_up"
    }


def list_accounts_requests(text: str) -> float:
    return (
        value(
            text,
            "sagemaker_tuning_exporter_api_requests_total",
            region=REGION,
            operation="ListAccounts",
        )
        or 0.0
    )


def list_accounts_errors(text: str, kind: str) -> float:
    return (
        value(
            text,
            "sagemaker_tuning_exporter_api_errors_total",
            region=REGION,
            operation="ListAccounts",
            error=kind,
        )
        or 0.0
    )


def test_discovery_finds_the_jobs_of_every_active_account_and_no_other(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
) -> None:
    team_a = organization.add_account("team-a")
    team_b = organization.add_account("team-b")
    closed = organization.add_account("closed")
    organization.close_account(closed)
    management = organization.management_account
    for account in (team_a, team_b, closed, management):
        sagemaker_server.add_job(REGION, f"job-of-{account}", account=account)

    running = run_live_exporter(
        write_config(tmp_path / "config.yaml", sagemaker_server, f"role_name: {ROLE_NAME}")
    )

    assert jobs_by_account(running) == {
        account: {f"job-of-{account}"} for account in (team_a, team_b, management)
    }
    text = running.scrape()
    assert value(text, "sagemaker_tuning_exporter_discovered_accounts") == 3
    assert list_accounts_requests(text) == 1
    assert {target.role_arn for target in running.live.exporter.cache.targets} == {
        f"arn:aws:iam::{account}:role/{ROLE_NAME}" for account in (team_a, team_b, management)
    }
    assert sagemaker_server.received(SIGNED_FOR, "ListAccounts") == 1


def test_include_and_exclude_choose_among_the_discovered_accounts(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
) -> None:
    kept = organization.add_account("kept")
    excluded = organization.add_account("excluded")
    organization.add_account("not-included")
    discovery = f"""
        role_name: {ROLE_NAME}
        include_accounts: ["{kept}", "{excluded}", "999999999999"]
        exclude_accounts: ["{excluded}"]
    """

    running = run_live_exporter(write_config(tmp_path / "config.yaml", sagemaker_server, discovery))

    text = running.scrape()
    assert up_accounts(text) == {kept}
    assert value(text, "sagemaker_tuning_exporter_discovered_accounts") == 1


def test_an_account_configured_and_discovered_is_monitored_once_with_its_configured_role(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
) -> None:
    member = organization.add_account("member")
    sagemaker_server.add_job(REGION, "member-job", account=member)
    own_role = f"arn:aws:iam::{member}:role/its-own-role"
    config = write_config(
        tmp_path / "config.yaml",
        sagemaker_server,
        f"role_name: {ROLE_NAME}\nexternal_id: discovered-external-id",
        extra=f"accounts:\n  - role_arn: {own_role}\n    external_id: its-own-external-id\n",
    )

    running = run_live_exporter(config)

    assert jobs_by_account(running)[member] == {"member-job"}
    (target,) = [t for t in running.live.exporter.cache.targets if t.account_id == member]
    assert (target.role_arn, target.external_id) == (own_role, "its-own-external-id")
    assumed = sagemaker_server.request_bodies("AssumeRole")  # form-encoded: ":" is %3A
    assert any(f"{member}%3Arole%2Fits-own-role" in body for body in assumed)
    assert not any(f"{member}%3Arole%2F{ROLE_NAME}" in body for body in assumed)
    assert len(running.live.exporter.cache.targets) == 2  # the member and the management account


def test_discovery_follows_a_new_account_and_a_closed_and_a_removed_one_without_a_restart(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
) -> None:
    closing = organization.add_account("closing")
    leaving = organization.add_account("leaving")
    for account in (closing, leaving):
        sagemaker_server.add_job(REGION, f"job-of-{account}", account=account)
    running = run_live_exporter(
        write_config(
            tmp_path / "config.yaml", sagemaker_server, f"role_name: {ROLE_NAME}\nrefresh: 1s"
        )
    )
    assert {closing, leaving} <= set(jobs_by_account(running))

    joining = organization.add_account("joining")
    sagemaker_server.add_job(REGION, "job-of-joining", account=joining)
    organization.close_account(closing)
    organization.remove_account(leaving)

    wait_until(
        lambda: set(jobs_by_account(running)) == {joining},
        timeout=30,
        message="the new account's jobs in, the closed and removed accounts' out",
    )
    text = running.scrape()
    assert up_accounts(text) == {joining, organization.management_account}
    assert closing not in text
    assert leaving not in text
    assert value(text, "sagemaker_tuning_exporter_discovered_accounts") == 2
    assert {snapshot.account for snapshot in running.live.exporter.cache.snapshots()} == {
        joining,
        organization.management_account,
    }


def test_a_failing_list_accounts_keeps_the_last_list_counts_the_errors_and_logs_once(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    member = organization.add_account("member")
    sagemaker_server.add_job(REGION, "member-job", account=member)
    running = run_live_exporter(
        write_config(
            tmp_path / "config.yaml", sagemaker_server, f"role_name: {ROLE_NAME}\nrefresh: 1s"
        )
    )
    before = running.scrape()
    assert jobs_by_account(running)[member] == {"member-job"}
    sagemaker_server.add_fault(
        FaultRule(region=SIGNED_FOR, kind="server_error", operation="ListAccounts")
    )
    organization.close_account(member)  # unseen while ListAccounts fails
    caplog.set_level(logging.INFO, logger="exporter")

    # Three reads failed, each after its two attempts (aws.max_attempts).
    wait_until(
        lambda: list_accounts_errors(running.scrape(), "server_error") >= 6,
        timeout=30,
        message="three failed reads of ListAccounts",
    )
    text = running.scrape()
    assert jobs_by_account(running)[member] == {"member-job"}
    assert value(text, "sagemaker_tuning_exporter_discovered_accounts") == 2
    assert list_accounts_requests(text) >= list_accounts_requests(before) + 6
    failures = [r for r in caplog.records if "account discovery failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert failures[0].levelno == logging.ERROR
    assert "keeping the last list (2 accounts)" in failures[0].getMessage()

    sagemaker_server.clear_faults()
    wait_until(
        lambda: member not in jobs_by_account(running),
        timeout=30,
        message="the closed account gone once ListAccounts answers again",
    )
    assert any("account discovery works again" in r.getMessage() for r in caplog.records)


def test_the_exporter_is_not_ready_until_the_account_list_has_been_read_once(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
) -> None:
    member = organization.add_account("member")
    sagemaker_server.add_job(REGION, "member-job", account=member)
    sagemaker_server.add_fault(
        FaultRule(region=SIGNED_FOR, kind="server_error", operation="ListAccounts")
    )
    # No account is configured: until the list is read, there is no target at all.
    running = run_live_exporter(
        write_config(
            tmp_path / "config.yaml", sagemaker_server, f"role_name: {ROLE_NAME}\nrefresh: 1s"
        )
    )
    running.scrape()
    assert running.live.exporter.cache.targets == ()
    assert running.get("/-/ready")[0] == 503

    sagemaker_server.clear_faults()
    wait_until(
        lambda: running.get("/-/ready")[0] == 200,
        timeout=30,
        message="ready once the list is read and its targets refreshed",
    )
    assert jobs_by_account(running)[member] == {"member-job"}


def test_a_reload_with_the_same_discovery_keeps_the_list_without_reading_it_again(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
) -> None:
    member = organization.add_account("member")
    path = write_config(tmp_path / "config.yaml", sagemaker_server, f"role_name: {ROLE_NAME}")
    running = run_live_exporter(path)
    organization.add_account("unseen-until-the-next-read")
    path.write_text(path.read_text().replace("ttl: 5m", "ttl: 4m"))

    status, _, _ = running.post("/-/reload")

    assert status == 200
    assert running.live.exporter.config.cache.ttl_seconds == 240
    assert up_accounts(running.scrape()) == {member, organization.management_account}
    assert sagemaker_server.received(SIGNED_FOR, "ListAccounts") == 1


def test_a_reload_with_changed_discovery_reads_the_list_at_once(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
) -> None:
    member = organization.add_account("member")
    path = write_config(tmp_path / "config.yaml", sagemaker_server, f"role_name: {ROLE_NAME}")
    running = run_live_exporter(path)
    joined = organization.add_account("joined")
    path.write_text(
        path.read_text().replace(
            f"role_name: {ROLE_NAME}",
            f'role_name: {ROLE_NAME}\n    exclude_accounts: ["{member}"]',
        )
    )

    status, _, _ = running.post("/-/reload")

    assert status == 200
    assert up_accounts(running.scrape()) == {joined, organization.management_account}
    assert sagemaker_server.received(SIGNED_FOR, "ListAccounts") == 2


def test_a_reload_that_turns_discovery_off_keeps_only_the_configured_accounts(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
) -> None:
    organization.add_account("member")
    path = write_config(tmp_path / "config.yaml", sagemaker_server, f"role_name: {ROLE_NAME}")
    running = run_live_exporter(path)
    configured = "arn:aws:iam::111111111111:role/reader"
    path.write_text(
        f"regions: [{REGION}]\naws:\n  endpoint_url: {sagemaker_server.url}\n"
        f"accounts:\n  - role_arn: {configured}\n"
    )

    status, _, _ = running.post("/-/reload")

    assert status == 200
    text = running.scrape()
    assert up_accounts(text) == {"111111111111"}
    assert "sagemaker_tuning_exporter_discovered_accounts" not in text


def test_every_page_of_list_accounts_is_read(
    organization: TestOrganization, sagemaker_server: SageMakerTestServer
) -> None:
    members = {organization.add_account(f"member-{index}") for index in range(25)}
    reader = OrganizationAccounts(AwsSettings(), REGION, RequestCounter(), timeout_seconds=30)

    accounts = reader.read()

    assert set(accounts) == {*members, organization.management_account}
    assert sagemaker_server.received(SIGNED_FOR, "ListAccounts") == 2  # 20 accounts a page


def test_once_reads_the_accounts_first_and_reports_a_failed_discovery(
    organization: TestOrganization, sagemaker_server: SageMakerTestServer, tmp_path: Path
) -> None:
    member = organization.add_account("member")
    sagemaker_server.add_job(REGION, "member-job", account=member)
    config = load_config(
        write_config(tmp_path / "config.yaml", sagemaker_server, f"role_name: {ROLE_NAME}")
    )

    exporter, error = exporter_for_one_refresh(config)
    exporter.cache.refresh_all(timeout=30)

    assert error is None
    assert {s.account for s in exporter.cache.snapshots()} == {
        member,
        organization.management_account,
    }
    sagemaker_server.add_fault(
        FaultRule(region=SIGNED_FOR, kind="access_denied", operation="ListAccounts")
    )
    exporter, error = exporter_for_one_refresh(config)
    assert exporter.cache.targets == ()
    assert error is not None
    assert "ListAccounts refused (access_denied)" in error


def test_once_from_the_command_line_monitors_the_discovered_accounts(
    organization: TestOrganization, sagemaker_server: SageMakerTestServer, tmp_path: Path
) -> None:
    member = organization.add_account("member")
    sagemaker_server.add_job(REGION, "member-job", account=member)
    path = write_config(tmp_path / "config.yaml", sagemaker_server, f"role_name: {ROLE_NAME}")

    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--once", "--config.file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=os.environ.copy(),  # with AWS_ENDPOINT_URL_ORGANIZATIONS
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert value(result.stdout, "sagemaker_tuning_exporter_discovered_accounts") == 2
    assert f'account="{member}",job_name="member-job"' in result.stdout


def test_a_reload_that_turns_discovery_on_reads_the_list_at_once(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
) -> None:
    member = organization.add_account("member")
    sagemaker_server.add_job(REGION, "member-job", account=member)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"regions: [{REGION}]\naws:\n  endpoint_url: {sagemaker_server.url}\n"
        "accounts:\n  - role_arn: arn:aws:iam::111111111111:role/reader\n"
    )
    running = run_live_exporter(path)
    assert up_accounts(running.scrape()) == {"111111111111"}
    write_config(
        path,
        sagemaker_server,
        f"role_name: {ROLE_NAME}",
        extra="accounts:\n  - role_arn: arn:aws:iam::111111111111:role/reader\n",
    )

    status, _, _ = running.post("/-/reload")

    assert status == 200
    assert jobs_by_account(running)[member] == {"member-job"}
    assert up_accounts(running.scrape()) == {
        "111111111111",
        member,
        organization.management_account,
    }


def test_a_list_accounts_that_hangs_holds_up_no_scrape(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    run_live_exporter: Callable[..., RunningLiveExporter],
    tmp_path: Path,
) -> None:
    member = organization.add_account("member")
    sagemaker_server.add_job(REGION, "member-job", account=member)
    running = run_live_exporter(
        write_config(
            tmp_path / "config.yaml", sagemaker_server, f"role_name: {ROLE_NAME}\nrefresh: 1s"
        )
    )
    running.scrape()
    held = FaultRule(
        region=SIGNED_FOR, kind="hang", operation="ListAccounts", hang_seconds=10, times=1
    )
    sagemaker_server.add_fault(held)
    wait_until(lambda: held.times == 0, timeout=30, message="a read of ListAccounts sent, and held")

    started = time.monotonic()
    text = running.scrape()

    assert time.monotonic() - started < 5, "the scrape waited for the held ListAccounts"
    assert jobs_by_account(running)[member] == {"member-job"}
    assert value(text, "sagemaker_tuning_exporter_discovered_accounts") == 2
