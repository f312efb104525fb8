"""The exporter's configuration as frozen, typed objects, with the defaults of every setting."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args

# The AWS APIs the exporter calls, by their key under ``aws.endpoints``.
AwsService = Literal["sagemaker", "sts", "tagging", "organizations"]
AWS_SERVICES: tuple[AwsService, ...] = get_args(AwsService)


@dataclass(frozen=True)
class ServiceEndpoints:
    """``aws.endpoints``: the endpoint of one AWS API each (a VPC endpoint), None where unset."""

    sagemaker: str | None = None
    sts: str | None = None
    tagging: str | None = None
    organizations: str | None = None


@dataclass(frozen=True)
class AwsSettings:
    """How to reach AWS: endpoint overrides, named profile, retries and pacing.

    ``endpoint_url`` serves every AWS API the exporter calls, ``endpoints`` one API each
    (see :func:`endpoint_for`). ``max_attempts`` bounds the attempts of one API call,
    ``max_retries_per_refresh`` the retries of all the calls of one target's refresh;
    ``max_requests_per_second`` (None: unlimited) paces every request of one account and
    region, retries included.
    """

    endpoint_url: str | None = None
    profile: str | None = None
    max_attempts: int = 5
    max_retries_per_refresh: int = 10
    max_requests_per_second: float | None = None
    endpoints: ServiceEndpoints = field(default_factory=ServiceEndpoints)


def endpoint_for(aws: AwsSettings, service: AwsService) -> str | None:
    """The endpoint URL of ``service``'s client: ``aws.endpoints.<service>``, else ``aws.endpoint_url``.

    None (neither is set) leaves the endpoint to botocore: its ``AWS_ENDPOINT_URL_<SERVICE>``
    and ``AWS_ENDPOINT_URL`` variables, the ``services`` section of the AWS config file, and
    AWS's own endpoint for the region last.

    >>> aws = AwsSettings(endpoint_url="http://127.0.0.1:5000",
    ...                   endpoints=ServiceEndpoints(sts="https://sts.eu-west-1.amazonaws.com"))
    >>> endpoint_for(aws, "sts"), endpoint_for(aws, "tagging")
    ('https://sts.eu-west-1.amazonaws.com', 'http://127.0.0.1:5000')
    >>> endpoint_for(AwsSettings(), "sagemaker") is None
    True
    """
    own: str | None = getattr(aws.endpoints, service)
    return own if own is not None else aws.endpoint_url


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
    see :mod:`exporter.refresh.listing`); ``full_resync_seconds`` of 0 lists in full every time.
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
    jobs spreads them over several refreshes. ``concurrency`` describes are in flight at
    once, paced and retried by the refresh's guard like every request.
    """

    enabled: bool = True
    ttl_seconds: float = 300.0
    max_requests_per_refresh: int = 100
    concurrency: int = 4


@dataclass(frozen=True)
class TrainingJobsSettings:
    """Whether and how the published jobs' training jobs are read (ListTrainingJobsForHyperParameterTuningJob).

    A tuning job's training jobs give its failures by reason, its instance time and, with
    ``leaderboard`` N > 0, its N best training jobs. An ended tuning job's are read once
    after it ended; a running one's again once its last read is ``ttl_seconds`` old, newest
    first and only as deep as a training job can still change.
    ``max_requests_per_refresh`` caps the requests of one refresh of one account and region,
    so a first start over thousands of ended jobs spreads over several refreshes.
    """

    enabled: bool = False
    ttl_seconds: float = 300.0
    max_requests_per_refresh: int = 100
    leaderboard: int = 0


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


def aws_partition(region: str) -> str:
    """The AWS partition a region belongs to: ``aws-cn``, ``aws-us-gov`` or ``aws``.

    >>> aws_partition("cn-north-1"), aws_partition("us-gov-west-1"), aws_partition("eu-west-1")
    ('aws-cn', 'aws-us-gov', 'aws')
    """
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@dataclass(frozen=True)
class OrganizationsDiscovery:
    """Accounts found with AWS Organizations' ListAccounts, each reached through ``role_name``.

    The list is read again every ``refresh_seconds``. ``include_accounts`` (empty: all)
    and ``exclude_accounts`` choose among the ACTIVE accounts found.
    """

    role_name: str
    external_id: str | None = None
    refresh_seconds: float = 3600.0
    include_accounts: tuple[str, ...] = ()
    exclude_accounts: tuple[str, ...] = ()

    def selects(self, account_id: str) -> bool:
        """Whether a discovered account passes the allowlist and the denylist."""
        if self.include_accounts and account_id not in self.include_accounts:
            return False
        return account_id not in self.exclude_accounts

    def role_arn(self, account_id: str, partition: str) -> str:
        """The ARN of the role assumed in ``account_id``.

        >>> OrganizationsDiscovery("reader").role_arn("111111111111", "aws")
        'arn:aws:iam::111111111111:role/reader'
        """
        return f"arn:{partition}:iam::{account_id}:role/{self.role_name}"


@dataclass(frozen=True)
class DiscoverySettings:
    """Where accounts are discovered beyond those listed; None: nowhere."""

    organizations: OrganizationsDiscovery | None = None


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
    training_jobs: TrainingJobsSettings = field(default_factory=TrainingJobsSettings)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
