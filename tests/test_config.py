"""Config parsing: valid files become typed objects; each failure mode has a fixture and an exact message."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from exporter.config.loading import load_config, parse_config
from exporter.config.reading import ConfigError, parse_duration
from exporter.config.settings import (
    AccountSettings,
    AwsSettings,
    CacheSettings,
    CreatedAfter,
    DescribeSettings,
    DiscoverySettings,
    ExporterConfig,
    JobFilters,
    OrganizationsDiscovery,
    PerJobMetricsSettings,
    ServiceEndpoints,
    TrainingJobsSettings,
)
from tests.conftest import ROOT

FIXTURES = Path(__file__).parent / "fixtures" / "config"

EXPECTED_ERRORS = {
    "aws_not_a_mapping": "2: aws: expected a mapping, got a list",
    "complex_key": "2: (top level): keys must be plain names",
    "huge_ttl": (
        "3: cache.ttl: expected a number of seconds or a duration such as 90s, 5m, 1h, 7d, "
        "got a number too large"
    ),
    "created_after_out_of_range": (
        "3: filters.created_after: expected a duration such as 7d or an ISO-8601 time such as "
        "2026-01-31T00:00:00Z, got '0001-01-01T00:00:00+01:00'"
    ),
    "huge_weeks": (
        "3: cache.ttl: expected a number of seconds or a duration such as 90s, 5m, 1h, 7d, "
        "got '9999999999999999999999w'"
    ),
    "max_attempts_huge": "3: aws.max_attempts: expected a whole number from 1 to 20, got 1000",
    "impossible_date": (
        "3: filters.created_after: expected a duration such as 7d or an ISO-8601 time such as "
        "2026-01-31T00:00:00Z, got '2026-13-45'"
    ),
    "infinite_ttl": (
        "3: cache.ttl: expected a number of seconds or a duration such as 90s, 5m, 1h, 7d, got inf"
    ),
    "recursive_alias": "1: regions[1]: an alias refers to its own ancestor",
    "region_with_newline": (
        "1: regions[0]: expected an AWS region such as us-east-1, got 'us-east-1\\n'"
    ),
    "unknown_tag": "3:8: invalid YAML: could not determine a constructor for the tag '!seconds'",
    "account_missing_role_arn": "3: accounts[0]: missing required key 'role_arn'",
    "bad_created_after": (
        "3: filters.created_after: expected a duration such as 7d or an ISO-8601 time such as "
        "2026-01-31T00:00:00Z, got 'last tuesday'"
    ),
    "bad_endpoint_url": "3: aws.endpoint_url: expected an http:// or https:// URL, got '127.0.0.1:5000'",
    "unknown_endpoint_service": (
        "5: aws.endpoints.s3: unknown key; expected one of sagemaker, sts, tagging, organizations"
    ),
    "bad_service_endpoint": (
        "5: aws.endpoints.sts: expected an http:// or https:// URL, got 'sts.eu-west-1.amazonaws.com'"
    ),
    "endpoints_not_a_mapping": "3: aws.endpoints: expected a mapping, got a string",
    "service_endpoint_not_a_string": "4: aws.endpoints.tagging: expected a non-empty string, got 42",
    "bad_region": "3: regions[1]: expected an AWS region such as us-east-1, got 'Europe'",
    "bad_role_arn": (
        "4: accounts[1].role_arn: expected an IAM role ARN such as "
        "arn:aws:iam::111111111111:role/name, got 'sagemaker-tuning-exporter'"
    ),
    "bad_ttl": "3: cache.ttl: expected a number of seconds or a duration such as 90s, 5m, 1h, 7d, got 'soon'",
    "duplicate_account": "4: accounts[1].role_arn: account 111111111111 is listed twice",
    "duplicate_key": "4: cache: duplicate key",
    "duplicate_region": "1: regions[1]: region 'us-east-1' is listed twice",
    "empty_regions": "1: regions: expected at least one region",
    "filters_not_a_mapping": "2: filters: expected a mapping, got a list",
    "invalid_yaml": "2:6: invalid YAML: expected ',' or ']', but got ':'",
    "max_attempts_not_integer": "3: aws.max_attempts: expected a whole number from 1 to 20, got 'five'",
    "bad_full_resync": (
        "4: cache.full_resync: expected a number of seconds or a duration such as 90s, 5m, 1h, "
        "7d, got 'hourly'"
    ),
    "zero_concurrent_refreshes": (
        "3: cache.max_concurrent_refreshes: expected a whole number from 1 to 256, got 0"
    ),
    "bad_retention": (
        "3: per_job_metrics.retention: expected a number of seconds or a duration such as 90s, "
        "5m, 1h, 7d, got 'forever'"
    ),
    "negative_max_jobs": (
        "4: per_job_metrics.max_jobs: expected a whole number from 0 to 10000000, got -1"
    ),
    "max_attempts_zero": "3: aws.max_attempts: expected a whole number from 1 to 20, got 0",
    "missing_regions": "1: (top level): missing required key 'regions' (a list of AWS regions)",
    "name_contains_not_a_string": "3: filters.name_contains: expected a non-empty string, got 42",
    "negative_ttl": "3: cache.ttl: expected a number of seconds or a duration such as 90s, 5m, 1h, 7d, got -5",
    "regions_not_a_list": "1: regions: expected a list, got a string",
    "short_external_id": (
        "4: accounts[0].external_id: expected 2 to 1224 letters, digits or +=,.@:/- characters "
        "(STS ExternalId)"
    ),
    "top_level_list": "1: (top level): expected a mapping, got a list",
    "unknown_account_key": "4: accounts[0].externalId: unknown key; expected one of role_arn, external_id",
    "unknown_cache_key": (
        "4: cache.size: unknown key; expected one of ttl, full_resync, max_concurrent_refreshes, "
        "refresh_timeout, tags_ttl"
    ),
    "refresh_timeout_zero": "3: cache.refresh_timeout: expected a duration from 1s to 1h, got '0s'",
    "bad_refresh_timeout": (
        "3: cache.refresh_timeout: expected a number of seconds or a duration such as 90s, 5m, "
        "1h, 7d, got 'whenever'"
    ),
    "zero_requests_per_second": (
        "3: aws.max_requests_per_second: expected a number of requests per second above 0 and "
        "at most 10000, got 0"
    ),
    "bad_requests_per_second": (
        "3: aws.max_requests_per_second: expected a number of requests per second above 0 and "
        "at most 10000, got 'fast'"
    ),
    "negative_retries_per_refresh": (
        "3: aws.max_retries_per_refresh: expected a whole number from 0 to 1000, got -1"
    ),
    "unknown_status": (
        "5: filters.statuses[1]: expected one of Completed, DeleteFailed, Deleting, Failed, "
        "InProgress, Stopped, Stopping, got 'Running'"
    ),
    "unknown_top_level_key": (
        "2: region: unknown key; expected one of regions, aws, accounts, cache, filters, "
        "per_job_metrics, tags, describe, training_jobs, discovery"
    ),
    "tag_key_not_allowed": (
        "4: tags[1]: expected 1 to 128 letters, digits, spaces or _ . : / = + - @ characters "
        "(an AWS tag key), got 'cost center!'"
    ),
    "tag_key_twice": "5: tags[2]: tag key 'team' is listed twice",
    "tag_labels_collide": (
        "4: tags[1]: tag keys 'cost-center' (tags[0]) and 'cost_center' both become the label "
        "tag_cost_center; keep one of them"
    ),
    "tags_not_a_list": "2: tags: expected a list, got a string",
    "bad_tags_ttl": (
        "4: cache.tags_ttl: expected a number of seconds or a duration such as 90s, 5m, 1h, 7d, "
        "got 'rarely'"
    ),
    "describe_enabled_not_boolean": "3: describe.enabled: expected true or false, got 'no'",
    "bad_describe_ttl": (
        "3: describe.ttl: expected a number of seconds or a duration such as 90s, 5m, 1h, 7d, "
        "got 'often'"
    ),
    "zero_describe_requests_per_refresh": (
        "4: describe.max_requests_per_refresh: expected a whole number from 1 to 100000, got 0"
    ),
    "unknown_describe_key": (
        "4: describe.budget: unknown key; expected one of enabled, ttl, max_requests_per_refresh, "
        "concurrency"
    ),
    "describe_not_a_mapping": "2: describe: expected a mapping, got a list",
    "too_many_describes_in_flight": (
        "4: describe.concurrency: expected a whole number from 1 to 16, got 17"
    ),
    "training_jobs_enabled_not_boolean": (
        "3: training_jobs.enabled: expected true or false, got 'yes'"
    ),
    "leaderboard_too_long": (
        "4: training_jobs.leaderboard: expected a whole number from 0 to 100, got 101"
    ),
    "zero_training_job_requests_per_refresh": (
        "4: training_jobs.max_requests_per_refresh: expected a whole number from 1 to 100000, got 0"
    ),
    "bad_training_jobs_ttl": (
        "4: training_jobs.ttl: expected a number of seconds or a duration such as 90s, 5m, 1h, "
        "7d, got 'sometimes'"
    ),
    "unknown_training_jobs_key": (
        "4: training_jobs.top: unknown key; expected one of enabled, ttl, "
        "max_requests_per_refresh, leaderboard"
    ),
    "discovery_missing_role_name": (
        "3: discovery.organizations: missing required key 'role_name' "
        "(the IAM role assumed in each account)"
    ),
    "discovery_role_arn_as_role_name": (
        "4: discovery.organizations.role_name: expected an IAM role name (1 to 64 letters, "
        "digits or +=,.@_- characters, no path), got 'arn:aws:iam::111111111111:role/reader'"
    ),
    "discovery_bad_refresh": (
        "5: discovery.organizations.refresh: expected a number of seconds or a duration such "
        "as 90s, 5m, 1h, 7d, got 'hourly'"
    ),
    "discovery_refresh_too_short": (
        "5: discovery.organizations.refresh: expected a duration of 1s or more, got 0"
    ),
    "discovery_unquoted_account_id": (
        "5: discovery.organizations.include_accounts[0]: expected a 12-digit AWS account ID "
        "in quotes, such as '111111111111', got 111111111111"
    ),
    "discovery_short_account_id": (
        "7: discovery.organizations.exclude_accounts[1]: expected a 12-digit AWS account ID "
        "in quotes, such as '111111111111', got '12345'"
    ),
    "discovery_account_twice": (
        "5: discovery.organizations.exclude_accounts[1]: account 111111111111 is listed twice"
    ),
    "discovery_unknown_key": (
        "5: discovery.organizations.role_arn: unknown key; expected one of role_name, "
        "external_id, refresh, include_accounts, exclude_accounts"
    ),
    "discovery_not_a_mapping": "2: discovery: expected a mapping, got a list",
    "discovery_short_external_id": (
        "5: discovery.organizations.external_id: expected 2 to 1224 letters, digits or "
        "+=,.@:/- characters (STS ExternalId)"
    ),
    "discovery_accounts_not_a_list": (
        "5: discovery.organizations.include_accounts: expected a list, got a string"
    ),
}


def test_every_failure_fixture_has_an_expected_message() -> None:
    assert sorted(path.stem for path in FIXTURES.glob("*.yaml")) == sorted(
        [*EXPECTED_ERRORS, "empty"]
    )


@pytest.mark.parametrize("fixture", sorted(EXPECTED_ERRORS))
def test_should_name_file_line_and_key_path_of_each_config_error(fixture: str) -> None:
    path = FIXTURES / f"{fixture}.yaml"

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert str(raised.value) == f"{path}:{EXPECTED_ERRORS[fixture]}"


def test_should_reject_an_empty_file() -> None:
    path = FIXTURES / "empty.yaml"

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert str(raised.value) == f"{path}: the file is empty; expected a mapping with 'regions'"


def test_should_report_a_missing_file() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config("/nonexistent/config.yaml")

    assert (
        str(raised.value)
        == "/nonexistent/config.yaml: cannot read config file: No such file or directory"
    )


def test_should_parse_every_key_of_a_full_config() -> None:
    config = parse_config(
        """
        regions: [us-east-1, eu-west-1]
        aws:
          endpoint_url: http://127.0.0.1:5000
          profile: monitoring
          max_attempts: 7
          max_retries_per_refresh: 4
          max_requests_per_second: 2.5
          endpoints:
            sts: https://vpce-0a1b2c3d.sts.eu-west-1.vpce.amazonaws.com
            tagging: https://tagging.eu-west-1.amazonaws.com
        accounts:
          - role_arn: arn:aws:iam::111111111111:role/sagemaker-tuning-exporter
            external_id: abc
          - role_arn: arn:aws-cn:iam::222222222222:role/path/reader
        cache:
          ttl: 5m
          full_resync: 2h
          max_concurrent_refreshes: 3
          refresh_timeout: 45s
        filters:
          name_contains: xgb
          statuses: [InProgress, Completed]
          created_after: 7d
        per_job_metrics:
          retention: 0
          max_jobs: 500
        describe:
          enabled: false
          ttl: 10m
          max_requests_per_refresh: 25
          concurrency: 2
        training_jobs:
          enabled: true
          ttl: 15m
          max_requests_per_refresh: 40
          leaderboard: 5
        """
    )

    assert config == ExporterConfig(
        regions=("us-east-1", "eu-west-1"),
        aws=AwsSettings(
            endpoint_url="http://127.0.0.1:5000",
            profile="monitoring",
            max_attempts=7,
            max_retries_per_refresh=4,
            max_requests_per_second=2.5,
            endpoints=ServiceEndpoints(
                sts="https://vpce-0a1b2c3d.sts.eu-west-1.vpce.amazonaws.com",
                tagging="https://tagging.eu-west-1.amazonaws.com",
            ),
        ),
        accounts=(
            AccountSettings("arn:aws:iam::111111111111:role/sagemaker-tuning-exporter", "abc"),
            AccountSettings("arn:aws-cn:iam::222222222222:role/path/reader"),
        ),
        cache=CacheSettings(
            ttl_seconds=300,
            full_resync_seconds=7200,
            max_concurrent_refreshes=3,
            refresh_timeout_seconds=45,
        ),
        filters=JobFilters(
            name_contains="xgb",
            statuses=("InProgress", "Completed"),
            created_after=CreatedAfter(relative_seconds=7 * 86400),
        ),
        per_job_metrics=PerJobMetricsSettings(retention_seconds=0, max_jobs=500),
        describe=DescribeSettings(
            enabled=False, ttl_seconds=600, max_requests_per_refresh=25, concurrency=2
        ),
        training_jobs=TrainingJobsSettings(
            enabled=True, ttl_seconds=900, max_requests_per_refresh=40, leaderboard=5
        ),
    )
    assert [account.account_id for account in config.accounts] == ["111111111111", "222222222222"]


def test_should_default_everything_but_regions() -> None:
    config = parse_config("regions: [ap-southeast-2]")

    assert config == ExporterConfig(regions=("ap-southeast-2",))
    assert config.cache.ttl_seconds == 60
    assert config.aws.max_attempts == 5
    assert config.cache.full_resync_seconds == 3600
    assert config.per_job_metrics.retention_seconds == 7 * 86400
    assert config.cache.refresh_timeout_seconds == 30
    assert config.aws.max_retries_per_refresh == 10
    assert config.aws.max_requests_per_second is None
    assert config.describe == DescribeSettings(
        enabled=True, ttl_seconds=300, max_requests_per_refresh=100, concurrency=4
    )
    assert config.training_jobs == TrainingJobsSettings(
        enabled=False, ttl_seconds=300, max_requests_per_refresh=100, leaderboard=0
    )


def test_should_parse_every_key_of_organizations_discovery() -> None:
    config = parse_config(
        """
        regions: [eu-west-1]
        discovery:
          organizations:
            role_name: sagemaker-tuning-reader
            external_id: the-external-id
            refresh: 30m
            include_accounts: ["111111111111", "011111111111"]
            exclude_accounts: ["222222222222"]
        """
    )

    assert config.discovery == DiscoverySettings(
        organizations=OrganizationsDiscovery(
            role_name="sagemaker-tuning-reader",
            external_id="the-external-id",
            refresh_seconds=1800,
            include_accounts=("111111111111", "011111111111"),
            exclude_accounts=("222222222222",),
        )
    )


def test_organizations_discovery_needs_only_a_role_name_and_reads_hourly() -> None:
    config = parse_config("regions: [eu-west-1]\ndiscovery: {organizations: {role_name: r}}")

    assert config.discovery.organizations == OrganizationsDiscovery(role_name="r")
    assert config.discovery.organizations.refresh_seconds == 3600


@pytest.mark.parametrize("text", ["discovery:", "discovery: {}", "discovery: {organizations: }"])
def test_an_empty_discovery_section_discovers_nothing(text: str) -> None:
    config = parse_config(f"regions: [eu-west-1]\n{text}")

    assert config.discovery == DiscoverySettings(organizations=None)


def test_the_example_config_is_valid() -> None:
    config = load_config(ROOT / "config.example.yaml")

    assert config.regions == ("us-east-1", "eu-west-1")
    assert config.filters.created_after == CreatedAfter(relative_seconds=30 * 86400)


def test_the_example_discovery_section_is_valid_once_uncommented() -> None:
    text = (ROOT / "config.example.yaml").read_text()
    start = text.index("# discovery:")
    block = text[start : text.index("\n\n", start)]
    # One "# " off each line: the block's own comments (and external_id) stay comments.
    uncommented = "\n".join(line.replace("# ", "", 1) for line in block.splitlines())

    config = parse_config(f"regions: [eu-west-1]\n{uncommented}")

    assert config.discovery.organizations == OrganizationsDiscovery(
        role_name="sagemaker-tuning-reader",
        refresh_seconds=3600,
        exclude_accounts=("111111111111",),
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (60, 60.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
    ],
)
def test_should_parse_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "soon", "5 m", "1m1h", "-1", -1, True, None, [60], "inf", float("nan"), 10**400, "11000d"],
)
def test_should_reject_malformed_durations(text: object) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-31T00:00:00Z",
        "'2026-01-31T00:00:00+00:00'",
        "2026-01-31",
        "2026-01-31T01:00:00+01:00",
    ],
)
def test_should_accept_iso_8601_times_for_created_after(value: str) -> None:
    config = parse_config(f"regions: [us-east-1]\nfilters:\n  created_after: {value}\n")

    assert config.filters.created_after == CreatedAfter(absolute=datetime(2026, 1, 31, tzinfo=UTC))


def test_relative_created_after_reaches_back_from_the_refresh_time() -> None:
    created_after = CreatedAfter(relative_seconds=86400)

    assert created_after.resolve(now=1_800_000_000) == datetime.fromtimestamp(1_799_913_600, tz=UTC)


def test_should_reject_an_integer_too_long_to_read() -> None:
    with pytest.raises(ConfigError, match=r"^<config>: invalid YAML: Exceeds the limit"):
        parse_config(f"regions: [us-east-1]\ncache:\n  ttl: {'1' * 5000}\n")


def test_should_reject_nesting_too_deep_to_read() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config("regions: " + "[" * 3000 + "]" * 3000 + "\n")

    assert str(raised.value) == "<config>: invalid YAML: nested too deeply"


def test_aliases_of_aliases_are_indexed_once() -> None:
    levels = ["a0: &a0 [us-east-1]"]
    levels += [f"a{n}: &a{n} [*a{n - 1}, *a{n - 1}]" for n in range(1, 40)]
    # 2**39 paths if every alias were walked again; an error names the nearest indexed line.
    text = "regions: [us-east-1]\nfilters:\n" + "".join(f"  {level}\n" for level in levels)

    with pytest.raises(ConfigError) as raised:
        parse_config(text)

    assert str(raised.value) == (
        "<config>:3: filters.a0: unknown key; expected one of name_contains, statuses, created_after"
    )


def test_a_reused_anchor_is_not_mistaken_for_a_loop() -> None:
    config = parse_config(
        "regions: &regions [us-east-1]\n"
        "accounts:\n"
        "  - &reader {role_arn: 'arn:aws:iam::111111111111:role/r'}\n"
        "  - {<<: *reader, role_arn: 'arn:aws:iam::222222222222:role/r'}\n"
    )

    assert [a.account_id for a in config.accounts] == ["111111111111", "222222222222"]
