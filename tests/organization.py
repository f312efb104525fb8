"""moto's AWS Organizations on the test server: an organization and its member accounts.

The default account of the test credentials (``DEFAULT_ACCOUNT``) creates the organization,
so it is its management account; members are created, closed and removed over HTTP, as the
Organizations API does it. Jobs created in a member account's backend are seen only with
credentials of that account, such as those of a role assumed in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from moto.organizations.models import organizations_backends

from tests.sagemaker_server import DEFAULT_ACCOUNT, SageMakerTestServer

if TYPE_CHECKING:
    from mypy_boto3_organizations import OrganizationsClient


class TestOrganization:
    """An organization whose management account is ``DEFAULT_ACCOUNT``, on the test server."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, server: SageMakerTestServer) -> None:
        self.client: OrganizationsClient = boto3.client(
            "organizations", region_name="us-east-1", endpoint_url=server.url
        )
        self.management_account = DEFAULT_ACCOUNT

    def create(self) -> None:
        self.client.create_organization(FeatureSet="ALL")

    def add_account(self, name: str) -> str:
        """Create a member account; returns its ID."""
        status = self.client.create_account(AccountName=name, Email=f"{name}@example.com")
        return status["CreateAccountStatus"]["AccountId"]

    def close_account(self, account_id: str) -> None:
        """Close a member account: ListAccounts then reports it SUSPENDED."""
        self.client.close_account(AccountId=account_id)

    def remove_account(self, account_id: str) -> None:
        """Take a member account out of the organization: ListAccounts no longer lists it."""
        self.client.remove_account_from_organization(AccountId=account_id)

    def delete(self) -> None:
        """Forget the organization and its members, for the next test."""
        organizations_backends[DEFAULT_ACCOUNT]["aws"].reset()
        organizations_backends.master_accounts.clear()
