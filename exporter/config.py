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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

# The enums of ListHyperParameterTuningJobs (botocore's service model, HyperParameterTuningJobStatus).
TUNING_JOB_STATUSES = (
    "Completed",
    "InProgress",
    "Failed",
    "Stopped",
    "Stopping",
    "Deleting",
    "DeleteFailed",
)
TUNING_JOB_STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")

_REGION_PATTERN = re.compile(r"[a-z]{2,4}(-[a-z]+)+-\d+")
_ROLE_ARN_PATTERN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+")
_EXTERNAL_ID_PATTERN = re.compile(r"[\w+=,.@:/-]{2,1224}")
_DURATION_PATTERN = re.compile(
    r"(?:(?P<w>\d{1,9})w)?(?:(?P<d>\d{1,9})d)?(?:(?P<h>\d{1,9})h)?(?:(?P<m>\d{1,9})m)?(?:(?P<s>\d{1,9})s)?"
)
_DURATION_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_HINT = "a number of seconds or a duration such as 90s, 5m, 1h, 7d"
_MAX_DURATION_SECONDS = 10 * 365 * 86400
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
_MAX_DESCRIBE_REQUESTS_PER_REFRESH = 100_000


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


@dataclass(frozen=True)
class AwsSettings:
    """How to reach AWS: endpoint override, named profile, retries and pacing.

    ``max_attempts`` bounds the attempts of one API call, ``max_retries_per_refresh`` the
    retries of all the calls of one target's refresh; ``max_requests_per_second`` (None:
    unlimited) paces every request of one account and region, retries included.
    """

    endpoint_url: str | None = None
    profile: str | None = None
    max_attempts: int = 5
    max_retries_per_refresh: int = 10
    max_requests_per_second: float | None = None


@dataclass(frozen=True)
class AccountSettings:
    """An account reached by assuming a role in it."""

    role_arn: str
    external_id: str | None = None

    @property
    def account_id(self) -> str:
        """The twelve-digit account ID, read from the role ARN (arn:PARTITION:iam::ACCOUNT:role/NAME)."""
        return self.role_arn.split(":")[4]


@dataclass(frozen=True)
class CacheSettings:
    """How long a region's listing is served, how often it is listed in full, how many at once.

    Between full listings a refresh lists only what can have changed (new and running jobs,
    see :mod:`exporter.listing`); ``full_resync_seconds`` of 0 lists in full every time.
    ``refresh_timeout_seconds`` bounds one target's whole refresh: pages, retries and backoff.
    """

    ttl_seconds: float = 60.0
    full_resync_seconds: float = 3600.0
    max_concurrent_refreshes: int = 8
    tags_ttl_seconds: float = 600.0
    refresh_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class PerJobMetricsSettings:
    """Which jobs get per-job series: running ones, and ended ones within the retention.

    ``retention_seconds`` of 0 keeps every job; ``max_jobs`` caps the jobs published per
    account and region.
    """

    retention_seconds: float = 7 * 86400.0
    max_jobs: int = 10_000


@dataclass(frozen=True)
class DescribeSettings:
    """Whether and how often the published jobs are described (DescribeHyperParameterTuningJob).

    A job described after it ended is never described again; a running job is described
    again once its description is ``ttl_seconds`` old. ``max_requests_per_refresh`` caps the
    describes of one refresh of one account and region, so a first start over thousands of
    jobs spreads them over several refreshes.
    """

    enabled: bool = True
    ttl_seconds: float = 300.0
    max_requests_per_refresh: int = 100


@dataclass(frozen=True)
class CreatedAfter:
    """Either a fixed instant or a window reaching back from the time of each refresh."""

    absolute: datetime | None = None
    relative_seconds: float | None = None

    def resolve(self, now: float) -> datetime:
        """The cut-off time for a refresh that runs at ``now`` (epoch seconds)."""
        if self.absolute is not None:
            return self.absolute
        return datetime.fromtimestamp(now - (self.relative_seconds or 0.0), tz=UTC)


@dataclass(frozen=True)
class JobFilters:
    """Which tuning jobs are published."""

    name_contains: str | None = None
    statuses: tuple[str, ...] = ()
    created_after: CreatedAfter | None = None


@dataclass(frozen=True)
class ExporterConfig:
    """The whole validated configuration."""

    regions: tuple[str, ...]
    aws: AwsSettings = field(default_factory=AwsSettings)
    accounts: tuple[AccountSettings, ...] = ()
    cache: CacheSettings = field(default_factory=CacheSettings)
    filters: JobFilters = field(default_factory=JobFilters)
    per_job_metrics: PerJobMetricsSettings = field(default_factory=PerJobMetricsSettings)
    tags: tuple[str, ...] = ()
    describe: DescribeSettings = field(default_factory=DescribeSettings)


def tag_label_name(key: str) -> str:
    """The label a tag key becomes: ``tag_`` and the key, other than [a-zA-Z0-9_] made ``_``.

    >>> tag_label_name("cost-center:team")
    'tag_cost_center_team'
    """
    return "tag_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def load_config(path: str | Path) -> ExporterConfig:
    """Read, parse and validate the YAML file at ``path``."""
    path = Path(path)
    return parse_config(read_text_file(path, "config file"), source=str(path))


def read_text_file(path: Path, kind: str) -> str:
    """The UTF-8 text of ``path``; ``kind`` (``config file``) names it in the error."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {kind}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {kind} is not UTF-8 text") from None


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that leaves timestamps as strings, so their validation can name the key."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_config(text: str, source: str = "<config>") -> ExporterConfig:
    """Parse and validate YAML ``text``; ``source`` names it in error messages."""
    data, lines = parse_yaml(text, source, "the file is empty; expected a mapping with 'regions'")
    return _Validator(source, lines).config(data)


def parse_yaml(text: str, source: str, empty_message: str) -> tuple[object, dict[str, int]]:
    """The document in YAML ``text`` and the line of each of its key paths.

    Duplicate, complex and recursive keys are errors; ``empty_message`` is the error for an
    empty document.
    """
    try:
        root = yaml.compose(text, Loader=_ConfigLoader)
        if root is None:
            raise ConfigError(f"{source}: {empty_message}")
        lines: dict[str, int] = {}
        _index_node_lines(root, "", lines, source, ancestors=(), visited=set())
        data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(_describe_yaml_error(error, source)) from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None
    except ValueError as error:  # e.g. an integer literal longer than Python converts
        raise ConfigError(f"{source}: invalid YAML: {error}") from None
    return data, lines


def parse_duration(value: object) -> float | None:
    """Seconds in ``value`` (a number, or a string like ``90s``, ``5m``, ``1h30m``), else None.

    Negative, infinite and absurd values (over ten years) are None too.
    """
    if isinstance(value, bool):
        return None
    seconds: float | None = None
    if isinstance(value, int | float):
        seconds = _finite_float(value)
    elif isinstance(value, str):
        text = value.strip()
        match = _DURATION_PATTERN.fullmatch(text)
        if text and match is not None:
            seconds = float(
                sum(
                    int(count) * _DURATION_UNIT_SECONDS[unit]
                    for unit, count in match.groupdict().items()
                    if count
                )
            )
        else:
            seconds = _finite_float(text)
    if seconds is None or not 0 <= seconds <= _MAX_DURATION_SECONDS:
        return None
    return seconds


def _finite_float(value: int | float | str) -> float | None:
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _describe_yaml_error(error: yaml.YAMLError, source: str) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is None:
        return f"{source}: invalid YAML: {problem}"
    return f"{source}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {problem}"


def _index_node_lines(
    node: yaml.Node,
    path: str,
    lines: dict[str, int],
    source: str,
    *,
    ancestors: tuple[int, ...],
    visited: set[int],
) -> None:
    """Record the 1-based line of every key path; reject duplicate, complex and recursive keys.

    A node reached again through an alias is not walked again, so aliases of aliases cannot
    multiply the work; the paths below it take their line from the alias.
    """
    line = node.start_mark.line + 1
    if id(node) in ancestors:
        raise ConfigError(f"{source}:{line}: {path}: an alias refers to its own ancestor")
    lines[path] = line
    if id(node) in visited:
        return
    visited.add(id(node))
    ancestors = (*ancestors, id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(
                    f"{source}:{key_line}: {path or '(top level)'}: keys must be plain names"
                )
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key in seen:
                raise ConfigError(f"{source}:{key_line}: {child}: duplicate key")
            seen.add(key)
            _index_node_lines(
                value_node, child, lines, source, ancestors=ancestors, visited=visited
            )
            lines[child] = key_line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_node_lines(
                item, f"{path}[{index}]", lines, source, ancestors=ancestors, visited=visited
            )


class KeyPathValidator:
    """Checks parts of a parsed YAML document; each failure names its file, line and key path."""

    def __init__(self, source: str, lines: Mapping[str, int]) -> None:
        self._source = source
        self._lines = lines

    def fail(self, path: str, message: str) -> ConfigError:
        """The error to raise for the value at ``path``."""
        line = self._line_of(path)
        where = f"{self._source}:{line}" if line is not None else self._source
        return ConfigError(f"{where}: {path or '(top level)'}: {message}")

    def _line_of(self, path: str) -> int | None:
        """The line of ``path``, or of its nearest ancestor when only that was indexed."""
        while path not in self._lines and path:
            path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path)
        return self._lines.get(path)

    def mapping(self, value: object, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        """``value`` as a mapping whose keys are all in ``allowed``."""
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_type_name(value)}")
        for key in value:
            if key not in allowed:
                child = f"{path}.{key}" if path else str(key)
                raise self.fail(child, f"unknown key; expected one of {', '.join(allowed)}")
        return value

    def string(self, value: object, path: str) -> str:
        """``value`` as a non-empty string."""
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"expected a non-empty string, got {describe_value(value)}")
        return value

    def optional_string(self, parent: Mapping[str, Any], key: str, path: str) -> str | None:
        """``parent[key]`` as a non-empty string, or None when absent or empty."""
        if parent.get(key) is None:
            return None
        return self.string(parent[key], f"{path}.{key}" if path else key)

    def string_list(self, value: object, path: str) -> list[str]:
        """``value`` as a list of non-empty strings."""
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_type_name(value)}")
        return [self.string(item, f"{path}[{index}]") for index, item in enumerate(value)]


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
            ),
        )
        endpoint_url = self.optional_string(aws, "endpoint_url", "aws")
        if endpoint_url is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", endpoint_url):
            raise self.fail(
                "aws.endpoint_url", f"expected an http:// or https:// URL, got {endpoint_url!r}"
            )
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
            raise self.fail("accounts", f"expected a list, got {_type_name(value)}")
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
            external_id = self.optional_string(entry, "external_id", path)
            if external_id is not None and not _EXTERNAL_ID_PATTERN.fullmatch(external_id):
                raise self.fail(
                    f"{path}.external_id",
                    "expected 2 to 1224 letters, digits or +=,.@:/- characters (STS ExternalId)",
                )
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
        settings = self.mapping(value, "describe", ("enabled", "ttl", "max_requests_per_refresh"))
        defaults = DescribeSettings()
        enabled = settings.get("enabled", defaults.enabled)
        if not isinstance(enabled, bool):
            raise self.fail(
                "describe.enabled", f"expected true or false, got {describe_value(enabled)}"
            )
        return DescribeSettings(
            enabled=enabled,
            ttl_seconds=self.duration(settings, "ttl", "describe", defaults.ttl_seconds),
            max_requests_per_refresh=self.whole_number(
                settings,
                "max_requests_per_refresh",
                "describe",
                defaults.max_requests_per_refresh,
                minimum=1,
                maximum=_MAX_DESCRIBE_REQUESTS_PER_REFRESH,
            ),
        )

    def duration(self, parent: Mapping[str, Any], key: str, path: str, default: float) -> float:
        """The duration at ``parent[key]`` in seconds, ``default`` when the key is absent."""
        if key not in parent:
            return default
        seconds = parse_duration(parent[key])
        if seconds is None:
            raise self.fail(
                f"{path}.{key}", f"expected {_DURATION_HINT}, got {describe_value(parent[key])}"
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


def _type_name(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def describe_value(value: object) -> str:
    """A short, printable description of ``value`` for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**50:
        return "a number too large"
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = repr(value)
        return text if len(text) <= 60 else f"{text[:57]}..."
    return _type_name(value)
