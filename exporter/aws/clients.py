"""botocore sessions and clients: one per target, on assumed roles where configured.

Every session shares one service-model loader and the response hooks of
:mod:`exporter.aws.hooks`; every client makes one attempt per call, is counted by the
:class:`~exporter.aws.counting.RequestCounter`, and goes to the endpoint
:func:`~exporter.config.settings.endpoint_for` gives its service.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)

from exporter import __version__
from exporter.aws.counting import RequestCounter
from exporter.aws.guard import RefreshGuard, RequestPacer
from exporter.aws.hooks import install_response_hooks
from exporter.config.settings import AwsSettings, endpoint_for
from exporter.model.jobs import Target

if TYPE_CHECKING:
    from mypy_boto3_resourcegroupstaggingapi import ResourceGroupsTaggingAPIClient
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sts import STSClient

ROLE_SESSION_NAME = "sagemaker-tuning-exporter"
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 30
# The host of a regional STS endpoint: sts.REGION.amazonaws.com, its FIPS twin, or a VPC
# endpoint's vpce-ID.sts.REGION.vpce.amazonaws.com (.com.cn in China).
_REGIONAL_STS_HOST = re.compile(
    r"(?:.+\.)?sts(?:-fips)?\.(?P<region>[a-z]{2,4}(?:-[a-z]+)+-\d+)\.(?:vpce\.)?amazonaws\.com(?:\.cn)?"
)


class _FixedCredentialProvider(CredentialProvider):
    """Hands botocore one credentials object: the assumed role's, which refresh themselves."""

    METHOD = "sagemaker-tuning-exporter-assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


def client_config(aws: AwsSettings) -> Config:
    """botocore settings shared by every client: one attempt per call, and timeouts.

    :class:`RefreshGuard` retries; botocore retrying as well would multiply the attempts.
    """
    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        user_agent_extra=f"sagemaker-tuning-exporter/{__version__}",
    )


class SageMakerClients:
    """The SageMaker client of each target, built on its first use and kept.

    Every botocore session shares one loader, so the service models are read and held in
    memory once rather than once per account and region. Targets without a role share one
    session with the ambient credentials; each target with a role (a role in one region)
    gets a session, shared by its SageMaker and tagging clients, whose credentials come from
    STS AssumeRole on top of the ambient ones and are renewed by botocore before they expire. Clients are built under a lock, since botocore sessions are not thread-safe
    (clients are); an error while building one (no credentials, a missing profile) raises
    from :meth:`get`, so it fails that target's refresh and is tried again on the next.

    botocore keeps refreshable credentials until they expire, even once AWS has revoked or
    rejected them; so rejected credentials drop the target's clients and session (and, with
    them, the assumed role's credentials) and the ambient session, and the next refresh
    starts afresh. A denied permission drops nothing: AWS applies a fixed policy to the
    credentials in hand.
    """

    def __init__(
        self,
        aws: AwsSettings,
        counter: RequestCounter,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._aws = aws
        self._counter = counter
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._clients: dict[Target, SageMakerClient] = {}
        self._sessions: dict[Target, botocore.session.Session] = {}
        self._tagging_clients: dict[Target, ResourceGroupsTaggingAPIClient] = {}
        self._pacers: dict[Target, RequestPacer] = {}
        self._loader: botocore.loaders.Loader | None = None
        self._source: botocore.session.Session | None = None

    def guard(self, target: Target, timeout_seconds: float) -> RefreshGuard:
        """A :class:`RefreshGuard` for one refresh of ``target``, ending ``timeout_seconds`` from now.

        The target's pacer outlives the refresh, so the rate holds across refreshes.
        """
        pacer = None
        if self._aws.max_requests_per_second is not None:
            with self._lock:
                pacer = self._pacers.get(target)
                if pacer is None:
                    pacer = self._pacers[target] = RequestPacer(
                        self._aws.max_requests_per_second, self._monotonic
                    )
        return RefreshGuard(
            target,
            max_attempts=self._aws.max_attempts,
            retry_budget=self._aws.max_retries_per_refresh,
            timeout_seconds=timeout_seconds,
            pacer=pacer,
            on_credential_error=lambda: self.forget(target),
            monotonic=self._monotonic,
        )

    def forget(self, target: Target) -> None:
        """Drop ``target``'s clients and credentials, and the ambient ones: the next use starts afresh."""
        with self._lock:
            self._clients.pop(target, None)
            self._tagging_clients.pop(target, None)
            self._sessions.pop(target, None)  # with it, the assumed role's credentials
            self._source = None

    def keep_only(self, targets: Collection[Target]) -> None:
        """Drop the clients, sessions and pacers of every target not in ``targets``.

        An exporter that takes these clients over from the one it replaces calls this, so
        the accounts that left (a closed account, a region no longer configured) do not
        keep their clients and credentials for the life of the process.
        """
        kept = set(targets)
        with self._lock:
            for held in (self._clients, self._tagging_clients, self._sessions, self._pacers):
                for target in [t for t in held if t not in kept]:
                    del held[target]

    def get(self, target: Target) -> SageMakerClient:
        """The client for ``target``, whose requests the counter counts."""
        with self._lock:
            client = self._clients.get(target)
            if client is None:
                client = self._clients[target] = self._create(target)
            return client

    def tagging(self, target: Target) -> ResourceGroupsTaggingAPIClient:
        """The Resource Groups Tagging API client for ``target``, on the same session and credentials."""
        with self._lock:
            client = self._tagging_clients.get(target)
            if client is None:
                client = cast(
                    "ResourceGroupsTaggingAPIClient",
                    self._session(target).create_client(
                        "resourcegroupstaggingapi",
                        region_name=target.region,
                        endpoint_url=endpoint_for(self._aws, "tagging"),
                        config=client_config(self._aws),
                    ),
                )
                self._counter.attach(client)
                self._tagging_clients[target] = client
            return client

    def _source_session(self) -> botocore.session.Session:
        """The session with the ambient credentials, shared by targets without a role."""
        if self._source is None:
            self._source = self._new_session()
        return self._source

    def _session(self, target: Target) -> botocore.session.Session:
        """The session of ``target``'s clients: one per role, kept so its clients share credentials."""
        if target.role_arn is None:
            return self._source_session()
        session = self._sessions.get(target)
        if session is None:
            session = self._sessions[target] = self._new_session()
            credentials = DeferredRefreshableCredentials(
                refresh_using=self._assume_role_fetcher(target.role_arn, target),
                method=_FixedCredentialProvider.METHOD,
            )
            session.register_component(
                "credential_provider", CredentialResolver([_FixedCredentialProvider(credentials)])
            )
        return session

    def _create(self, target: Target) -> SageMakerClient:
        client = cast(
            "SageMakerClient",
            self._session(target).create_client(
                "sagemaker",
                region_name=target.region,
                endpoint_url=endpoint_for(self._aws, "sagemaker"),
                config=client_config(self._aws),
            ),
        )
        self._counter.attach(client)
        return client

    def _new_session(self) -> botocore.session.Session:
        """A session on the shared loader, which the first session creates."""
        session = botocore.session.Session(profile=self._aws.profile)
        if self._loader is None:
            self._loader = botocore.loaders.create_loader(session.get_config_variable("data_path"))
        session.register_component("data_loader", self._loader)
        install_response_hooks(session)
        return session

    def _assume_role_fetcher(self, role_arn: str, target: Target) -> Callable[[], dict[str, str]]:
        endpoint_url = endpoint_for(self._aws, "sts")
        sts = cast(
            "STSClient",
            self._source_session().create_client(
                "sts",
                region_name=sts_signing_region(endpoint_url, target.region),
                endpoint_url=endpoint_url,
                config=client_config(self._aws),
            ),
        )
        self._counter.attach(sts)

        def fetch_credentials() -> dict[str, str]:
            if target.external_id:
                response = sts.assume_role(
                    RoleArn=role_arn,
                    RoleSessionName=ROLE_SESSION_NAME,
                    ExternalId=target.external_id,
                )
            else:
                response = sts.assume_role(RoleArn=role_arn, RoleSessionName=ROLE_SESSION_NAME)
            credentials = response["Credentials"]
            return {
                "access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": credentials["Expiration"].isoformat(),
            }

        return fetch_credentials


def sts_signing_region(endpoint_url: str | None, watched_region: str) -> str:
    """The region AssumeRole is sent to and signed for: the watched region's own STS endpoint,
    unless the configured endpoint is a regional STS endpoint of another region.

    A regional STS endpoint accepts only requests signed for its region, and one endpoint
    (a VPC endpoint) may serve every watched region: its credentials hold in all of them.
    Any other URL (a local test server) is signed for the watched region.

    >>> sts_signing_region(None, "us-east-1")
    'us-east-1'
    >>> sts_signing_region("https://vpce-0a1b-2c3d.sts.eu-west-1.vpce.amazonaws.com", "us-east-1")
    'eu-west-1'
    >>> sts_signing_region("https://sts.eu-central-1.amazonaws.com", "us-east-1")
    'eu-central-1'
    >>> sts_signing_region("http://127.0.0.1:5000", "us-east-1")
    'us-east-1'
    """
    if endpoint_url is None:
        return watched_region
    match = _REGIONAL_STS_HOST.fullmatch(urlsplit(endpoint_url).hostname or "")
    return match.group("region") if match else watched_region
