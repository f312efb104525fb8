"""Load and validate the exporter's YAML configuration into frozen, typed objects.

Every problem is reported as a :class:`ConfigError` whose message names the file, the line
and the dotted key path, for example::

    config.yaml:9: filters.statuses[1]: expected one of Completed, DeleteFailed, Deleting,
    Failed, InProgress, Stopped, Stopping, got 'Running'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter.config.reading import (
    DURATION_HINT,
    KeyPathValidator,
    describe_value,
    parse_duration,
    parse_yaml,
    read_text_file,
    type_name,
)
from exporter.config.settings import (
    AWS_SERVICES,
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
from exporter.model.jobs import tag_label_name
from exporter.model.statuses import TUNING_JOB_STATUSES

_REGION_PATTERN = re.compile(r"[a-z]{2,4}(-[a-z]+)+-\d+")
_ROLE_ARN_PATTERN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+")
_EXTERNAL_ID_PATTERN = re.compile(r"[\w+=,.@:/-]{2,1224}")
_MAX_ATTEMPTS = 20
_MAX_RETRIES_PER_REFRESH = 1000
_MIN_REFRESH_TIMEOUT_SECONDS = 1.0
_MAX_REFRESH_TIMEOUT_SECONDS = 3600.0
_MAX_REQUESTS_PER_SECOND = 10_000.0
_MAX_CONCURRENT_REFRESHES = 256
_MAX_PER_JOB_SERIES_JOBS = 10_000_000
# What AWS allows in a tag key: 1-128 Unicode letters, digits, spaces and _ . : / = + - @.
_TAG_KEY_PATTERN = re.compile(r"[\w .:/=+\-@]{1,128}")
_TAG_KEY_HINT = "1 to 128 letters, digits, spaces or _ . : / = + - @ characters (an AWS tag key)"
# Describes in flight at once per account and region: a few hide the latency; more only
# invite throttling.
_MAX_DESCRIBE_CONCURRENCY = 16
_MAX_DESCRIBE_REQUESTS_PER_REFRESH = 100_000
_MAX_TRAINING_JOB_REQUESTS_PER_REFRESH = 100_000
# Training jobs per tuning job on the leaderboard: series per job grow with it.
_MAX_LEADERBOARD = 100
# An IAM role name without a path: 1-64 letters, digits and + = , . @ _ - characters.
_ROLE_NAME_PATTERN = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_ACCOUNT_ID_PATTERN = re.compile(r"\d{12}", re.ASCII)
# Below a second, reads would follow each other as fast as ListAccounts answers.
_MIN_DISCOVERY_REFRESH_SECONDS = 1.0


def load_config(path: str | Path) -> ExporterConfig:
    """Read, parse and validate the YAML file at ``path``."""
    path = Path(path)
    return parse_config(read_text_file(path, "config file"), source=str(path))


def parse_config(text: str, source: str = "<config>") -> ExporterConfig:
    """Parse and validate YAML ``text``; ``source`` names it in error messages."""
    data, lines = parse_yaml(text, source, "the file is empty; expected a mapping with 'regions'")
    return _Validator(source, lines).config(data)


class _Validator(KeyPathValidator):
    """Turns the parsed YAML document into an :class:`ExporterConfig`, or raises."""

    def config(self, data: object) -> ExporterConfig:
        top = self.mapping(
            data,
            "",
            (
                "regions",
                "aws",
                "accounts",
                "cache",
                "filters",
                "per_job_metrics",
                "tags",
                "describe",
                "training_jobs",
                "discovery",
            ),
        )
        if "regions" not in top:
            raise self.fail("", "missing required key 'regions' (a list of AWS regions)")
        return ExporterConfig(
            regions=self.regions(top["regions"]),
            aws=self.aws(_or_default(top.get("aws"), {})),
            accounts=self.accounts(_or_default(top.get("accounts"), [])),
            cache=self.cache(_or_default(top.get("cache"), {})),
            filters=self.filters(_or_default(top.get("filters"), {})),
            per_job_metrics=self.per_job_metrics(_or_default(top.get("per_job_metrics"), {})),
            tags=self.tags(_or_default(top.get("tags"), [])),
            describe=self.describe(_or_default(top.get("describe"), {})),
            training_jobs=self.training_jobs(_or_default(top.get("training_jobs"), {})),
            discovery=self.discovery(_or_default(top.get("discovery"), {})),
        )

    def regions(self, value: object) -> tuple[str, ...]:
        regions = self.string_list(value, "regions")
        if not regions:
            raise self.fail("regions", "expected at least one region")
        for index, region in enumerate(regions):
            path = f"regions[{index}]"
            if not _REGION_PATTERN.fullmatch(region):
                raise self.fail(path, f"expected an AWS region such as us-east-1, got {region!r}")
            if region in regions[:index]:
                raise self.fail(path, f"region {region!r} is listed twice")
        return tuple(regions)

    def aws(self, value: object) -> AwsSettings:
        aws = self.mapping(
            value,
            "aws",
            (
                "endpoint_url",
                "profile",
                "max_attempts",
                "max_retries_per_refresh",
                "max_requests_per_second",
                "endpoints",
            ),
        )
        endpoint_url = self.endpoint_url(aws, "endpoint_url", "aws")
        max_attempts = self.whole_number(
            aws, "max_attempts", "aws", AwsSettings.max_attempts, minimum=1, maximum=_MAX_ATTEMPTS
        )
        max_retries = self.whole_number(
            aws,
            "max_retries_per_refresh",
            "aws",
            AwsSettings.max_retries_per_refresh,
            minimum=0,
            maximum=_MAX_RETRIES_PER_REFRESH,
        )
        return AwsSettings(
            endpoint_url=endpoint_url,
            profile=self.optional_string(aws, "profile", "aws"),
            max_attempts=max_attempts,
            max_retries_per_refresh=max_retries,
            max_requests_per_second=self.requests_per_second(aws),
            endpoints=self.service_endpoints(_or_default(aws.get("endpoints"), {})),
        )

    def endpoint_url(self, parent: Mapping[str, Any], key: str, path: str) -> str | None:
        """The http(s) URL at ``parent[key]``, None when absent."""
        url = self.optional_string(parent, key, path)
        if url is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
            raise self.fail(f"{path}.{key}", f"expected an http:// or https:// URL, got {url!r}")
        return url

    def service_endpoints(self, value: object) -> ServiceEndpoints:
        """``aws.endpoints``: an endpoint URL per AWS API, each overriding ``aws.endpoint_url``."""
        endpoints = self.mapping(value, "aws.endpoints", AWS_SERVICES)
        return ServiceEndpoints(
            **{
                service: self.endpoint_url(endpoints, service, "aws.endpoints")
                for service in AWS_SERVICES
            }
        )

    def requests_per_second(self, aws: Mapping[str, Any]) -> float | None:
        """``aws.max_requests_per_second``: a positive rate, or None (unlimited) when absent."""
        rate = aws.get("max_requests_per_second")
        if rate is None:
            return None
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or not 0 < rate <= _MAX_REQUESTS_PER_SECOND
        ):
            raise self.fail(
                "aws.max_requests_per_second",
                f"expected a number of requests per second above 0 and at most "
                f"{_MAX_REQUESTS_PER_SECOND:g}, got {describe_value(rate)}",
            )
        return float(rate)

    def accounts(self, value: object) -> tuple[AccountSettings, ...]:
        if not isinstance(value, list):
            raise self.fail("accounts", f"expected a list, got {type_name(value)}")
        accounts: list[AccountSettings] = []
        for index, item in enumerate(value):
            path = f"accounts[{index}]"
            entry = self.mapping(item, path, ("role_arn", "external_id"))
            if "role_arn" not in entry:
                raise self.fail(path, "missing required key 'role_arn'")
            role_arn = self.string(entry["role_arn"], f"{path}.role_arn")
            if not _ROLE_ARN_PATTERN.fullmatch(role_arn):
                raise self.fail(
                    f"{path}.role_arn",
                    f"expected an IAM role ARN such as arn:aws:iam::111111111111:role/name, "
                    f"got {role_arn!r}",
                )
            external_id = self.external_id(entry, path)
            account = AccountSettings(role_arn, external_id)
            if any(other.account_id == account.account_id for other in accounts):
                raise self.fail(f"{path}.role_arn", f"account {account.account_id} is listed twice")
            accounts.append(account)
        return tuple(accounts)

    def cache(self, value: object) -> CacheSettings:
        cache = self.mapping(
            value,
            "cache",
            ("ttl", "full_resync", "max_concurrent_refreshes", "refresh_timeout", "tags_ttl"),
        )
        refresh_timeout = self.duration(
            cache, "refresh_timeout", "cache", CacheSettings.refresh_timeout_seconds
        )
        if not _MIN_REFRESH_TIMEOUT_SECONDS <= refresh_timeout <= _MAX_REFRESH_TIMEOUT_SECONDS:
            raise self.fail(
                "cache.refresh_timeout",
                f"expected a duration from 1s to 1h, got {describe_value(cache['refresh_timeout'])}",
            )
        return CacheSettings(
            ttl_seconds=self.duration(cache, "ttl", "cache", CacheSettings.ttl_seconds),
            full_resync_seconds=self.duration(
                cache, "full_resync", "cache", CacheSettings.full_resync_seconds
            ),
            max_concurrent_refreshes=self.whole_number(
                cache,
                "max_concurrent_refreshes",
                "cache",
                CacheSettings.max_concurrent_refreshes,
                minimum=1,
                maximum=_MAX_CONCURRENT_REFRESHES,
            ),
            tags_ttl_seconds=self.duration(
                cache, "tags_ttl", "cache", CacheSettings.tags_ttl_seconds
            ),
            refresh_timeout_seconds=refresh_timeout,
        )

    def tags(self, value: object) -> tuple[str, ...]:
        keys = self.string_list(value, "tags")
        labels: dict[str, int] = {}
        for index, key in enumerate(keys):
            path = f"tags[{index}]"
            if not _TAG_KEY_PATTERN.fullmatch(key):
                raise self.fail(path, f"expected {_TAG_KEY_HINT}, got {describe_value(key)}")
            if key in keys[:index]:
                raise self.fail(path, f"tag key {key!r} is listed twice")
            label = tag_label_name(key)
            if label in labels:
                other = keys[labels[label]]
                raise self.fail(
                    path,
                    f"tag keys {other!r} (tags[{labels[label]}]) and {key!r} both become "
                    f"the label {label}; keep one of them",
                )
            labels[label] = index
        return tuple(keys)

    def per_job_metrics(self, value: object) -> PerJobMetricsSettings:
        settings = self.mapping(value, "per_job_metrics", ("retention", "max_jobs"))
        defaults = PerJobMetricsSettings()
        return PerJobMetricsSettings(
            retention_seconds=self.duration(
                settings, "retention", "per_job_metrics", defaults.retention_seconds
            ),
            max_jobs=self.whole_number(
                settings,
                "max_jobs",
                "per_job_metrics",
                defaults.max_jobs,
                minimum=0,
                maximum=_MAX_PER_JOB_SERIES_JOBS,
            ),
        )

    def describe(self, value: object) -> DescribeSettings:
        settings = self.mapping(
            value, "describe", ("enabled", "ttl", "max_requests_per_refresh", "concurrency")
        )
        defaults = DescribeSettings()
        return DescribeSettings(
            enabled=self.boolean(settings, "enabled", "describe", defaults.enabled),
            ttl_seconds=self.duration(settings, "ttl", "describe", defaults.ttl_seconds),
            max_requests_per_refresh=self.whole_number(
                settings,
                "max_requests_per_refresh",
                "describe",
                defaults.max_requests_per_refresh,
                minimum=1,
                maximum=_MAX_DESCRIBE_REQUESTS_PER_REFRESH,
            ),
            concurrency=self.whole_number(
                settings,
                "concurrency",
                "describe",
                defaults.concurrency,
                minimum=1,
                maximum=_MAX_DESCRIBE_CONCURRENCY,
            ),
        )

    def training_jobs(self, value: object) -> TrainingJobsSettings:
        settings = self.mapping(
            value, "training_jobs", ("enabled", "ttl", "max_requests_per_refresh", "leaderboard")
        )
        defaults = TrainingJobsSettings()
        return TrainingJobsSettings(
            enabled=self.boolean(settings, "enabled", "training_jobs", defaults.enabled),
            ttl_seconds=self.duration(settings, "ttl", "training_jobs", defaults.ttl_seconds),
            max_requests_per_refresh=self.whole_number(
                settings,
                "max_requests_per_refresh",
                "training_jobs",
                defaults.max_requests_per_refresh,
                minimum=1,
                maximum=_MAX_TRAINING_JOB_REQUESTS_PER_REFRESH,
            ),
            leaderboard=self.whole_number(
                settings,
                "leaderboard",
                "training_jobs",
                defaults.leaderboard,
                minimum=0,
                maximum=_MAX_LEADERBOARD,
            ),
        )

    def discovery(self, value: object) -> DiscoverySettings:
        settings = self.mapping(value, "discovery", ("organizations",))
        if settings.get("organizations") is None:
            return DiscoverySettings()
        return DiscoverySettings(organizations=self.organizations(settings["organizations"]))

    def organizations(self, value: object) -> OrganizationsDiscovery:
        path = "discovery.organizations"
        settings = self.mapping(
            value,
            path,
            ("role_name", "external_id", "refresh", "include_accounts", "exclude_accounts"),
        )
        if settings.get("role_name") is None:
            raise self.fail(
                path, "missing required key 'role_name' (the IAM role assumed in each account)"
            )
        role_name = self.string(settings["role_name"], f"{path}.role_name")
        if not _ROLE_NAME_PATTERN.fullmatch(role_name):
            raise self.fail(
                f"{path}.role_name",
                f"expected an IAM role name (1 to 64 letters, digits or +=,.@_- characters, "
                f"no path), got {describe_value(role_name)}",
            )
        external_id = self.external_id(settings, path)
        refresh = self.duration(settings, "refresh", path, OrganizationsDiscovery.refresh_seconds)
        if refresh < _MIN_DISCOVERY_REFRESH_SECONDS:
            raise self.fail(
                f"{path}.refresh",
                f"expected a duration of 1s or more, got {describe_value(settings['refresh'])}",
            )
        return OrganizationsDiscovery(
            role_name=role_name,
            external_id=external_id,
            refresh_seconds=refresh,
            include_accounts=self.account_ids(settings, "include_accounts", path),
            exclude_accounts=self.account_ids(settings, "exclude_accounts", path),
        )

    def external_id(self, parent: Mapping[str, Any], path: str) -> str | None:
        """``parent.external_id``, the ExternalId a role is assumed with, or None when absent."""
        external_id = self.optional_string(parent, "external_id", path)
        if external_id is not None and not _EXTERNAL_ID_PATTERN.fullmatch(external_id):
            raise self.fail(
                f"{path}.external_id",
                "expected 2 to 1224 letters, digits or +=,.@:/- characters (STS ExternalId)",
            )
        return external_id

    def account_ids(self, parent: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        """A list of twelve-digit account IDs at ``parent[key]``, written as strings."""
        path = f"{path}.{key}"
        value = _or_default(parent.get(key), [])
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {type_name(value)}")
        account_ids: list[str] = []
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            # YAML reads 111111111111 as a number, and an ID with a leading zero as another
            # number or an octal one: only a quoted ID is read as written.
            if not isinstance(item, str) or not _ACCOUNT_ID_PATTERN.fullmatch(item):
                raise self.fail(
                    item_path,
                    f"expected a 12-digit AWS account ID in quotes, such as '111111111111', "
                    f"got {describe_value(item)}",
                )
            if item in account_ids:
                raise self.fail(item_path, f"account {item} is listed twice")
            account_ids.append(item)
        return tuple(account_ids)

    def boolean(self, parent: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        """``parent[key]`` as true or false, ``default`` when absent."""
        value = parent.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{path}.{key}", f"expected true or false, got {describe_value(value)}")
        return value

    def duration(self, parent: Mapping[str, Any], key: str, path: str, default: float) -> float:
        """The duration at ``parent[key]`` in seconds, ``default`` when the key is absent."""
        if key not in parent:
            return default
        seconds = parse_duration(parent[key])
        if seconds is None:
            raise self.fail(
                f"{path}.{key}", f"expected {DURATION_HINT}, got {describe_value(parent[key])}"
            )
        return seconds

    def whole_number(
        self,
        parent: Mapping[str, Any],
        key: str,
        path: str,
        default: int,
        *,
        minimum: int,
        maximum: int,
    ) -> int:
        """The integer at ``parent[key]`` within [minimum, maximum], ``default`` when absent."""
        number = parent.get(key, default)
        if (
            isinstance(number, bool)
            or not isinstance(number, int)
            or not minimum <= number <= maximum
        ):
            raise self.fail(
                f"{path}.{key}",
                f"expected a whole number from {minimum} to {maximum}, got {describe_value(number)}",
            )
        return number

    def filters(self, value: object) -> JobFilters:
        filters = self.mapping(value, "filters", ("name_contains", "statuses", "created_after"))
        statuses: list[str] = []
        if filters.get("statuses") is not None:
            statuses = self.string_list(filters["statuses"], "filters.statuses")
            for index, status in enumerate(statuses):
                path = f"filters.statuses[{index}]"
                if status not in TUNING_JOB_STATUSES:
                    raise self.fail(
                        path,
                        f"expected one of {', '.join(sorted(TUNING_JOB_STATUSES))}, got {status!r}",
                    )
                if status in statuses[:index]:
                    raise self.fail(path, f"status {status!r} is listed twice")
        created_after = None
        if filters.get("created_after") is not None:
            created_after = self.created_after(filters["created_after"])
        return JobFilters(
            name_contains=self.optional_string(filters, "name_contains", "filters"),
            statuses=tuple(statuses),
            created_after=created_after,
        )

    def created_after(self, value: object) -> CreatedAfter:
        path = "filters.created_after"
        relative = parse_duration(value)
        if relative is not None:
            return CreatedAfter(relative_seconds=relative)
        if isinstance(value, str):
            try:
                return CreatedAfter(absolute=_as_utc(datetime.fromisoformat(value)))
            except (ValueError, OverflowError):
                pass
        raise self.fail(
            path,
            f"expected a duration such as 7d or an ISO-8601 time such as 2026-01-31T00:00:00Z, "
            f"got {describe_value(value)}",
        )


def _or_default(value: object, default: object) -> object:
    """A key written with no value (``aws:``) means its defaults; any other value is checked."""
    return default if value is None else value


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
