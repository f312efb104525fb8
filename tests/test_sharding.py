"""Rendezvous assignment of (account, region) targets to shards, and the shard's ordinal from a pod's hostname."""

from __future__ import annotations

import hashlib

import pytest

from exporter.model.jobs import Target
from exporter.model.sharding import Shard, ordinal_from_hostname, owner_of, shard_weight

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-south-1")
# 200 accounts x 4 regions, the organization of issue 12's benchmark.
TARGETS = [
    Target(
        region=region,
        role_arn=f"arn:aws:iam::{account:012d}:role/reader",
        account_id=f"{account:012d}",
    )
    for account in range(100000000000, 100000000000 + 200 * 7919, 7919)
    for region in REGIONS
]


def owners(total: int) -> dict[Target, int]:
    """The shard owning each of TARGETS, of ``total``, as each shard decides for itself."""
    found: dict[Target, int] = {}
    for index in range(total):
        for target in Shard(index, total).select(TARGETS):
            assert target not in found, f"{target} owned by shards {found[target]} and {index}"
            found[target] = index
    return found


def test_every_target_is_owned_by_exactly_one_of_three_shards() -> None:
    assert len(TARGETS) == 800

    found = owners(3)

    assert set(found) == set(TARGETS)
    assert found == {target: owner_of(target, 3) for target in TARGETS}


def test_three_shards_share_the_targets_about_evenly() -> None:
    per_shard = [list(owners(3).values()).count(index) for index in range(3)]

    # 800/3 = 267 each; a fair hash stays well within +-15% at this size.
    assert all(227 <= count <= 307 for count in per_shard), per_shard


def test_going_from_three_to_four_shards_moves_about_a_quarter_of_the_targets() -> None:
    before, after = owners(3), owners(4)

    moved = [target for target in TARGETS if before[target] != after[target]]

    assert 0.20 <= len(moved) / len(TARGETS) <= 0.30, len(moved)
    # Only the new shard takes targets; none moves between the shards that stay.
    assert {after[target] for target in moved} == {3}


def test_hash_modulo_shards_would_move_most_targets_where_rendezvous_moves_a_quarter() -> None:
    def modulo_owner(target: Target, total: int) -> int:
        key = f"{target.account_id}:{target.region}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % total

    moved = sum(modulo_owner(target, 3) != modulo_owner(target, 4) for target in TARGETS)

    # 3/4 expected: three times what rendezvous hashing moves.
    assert moved / len(TARGETS) >= 0.65, moved


def test_assignment_is_pinned_so_an_upgrade_moves_no_target() -> None:
    # The hash is part of the deployment's contract: replicas of two versions running side
    # by side during a rollout must agree on every owner, in every process (no salted hash()).
    target = Target(region="eu-west-1", account_id="111111111111")
    expected = hashlib.blake2b(b"2:111111111111:eu-west-1", digest_size=8).digest()

    assert shard_weight(2, target) == int.from_bytes(expected, "big")
    assert [owner_of(target, 5) for target in TARGETS[:10]] == [0, 2, 2, 2, 0, 2, 3, 1, 3, 3]


def test_one_shard_owns_every_target() -> None:
    assert Shard().select(TARGETS) == TARGETS


def test_ambient_credential_targets_are_assigned_by_region() -> None:
    regions = [Target(region=region) for region in REGIONS]

    owned = [Shard(index, 2).select(regions) for index in range(2)]

    assert sorted(target.region for share in owned for target in share) == sorted(REGIONS)


@pytest.mark.parametrize(
    ("index", "total", "message"),
    [
        (3, 3, "shard 3 is not one of 0 to 2 (of 3 shards)"),
        (-1, 3, "shard -1 is not one of 0 to 2 (of 3 shards)"),
        (0, 0, "expected 1 or more shards, got 0"),
    ],
)
def test_a_shard_outside_its_total_is_refused(index: int, total: int, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        Shard(index, total)

    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("hostname", "ordinal"),
    [
        ("sagemaker-tuning-exporter-0", 0),
        ("sagemaker-tuning-exporter-2", 2),
        ("exporter-12", 12),
        ("sagemaker-tuning-exporter-1.sagemaker-tuning-exporter.monitoring.svc", 1),
    ],
)
def test_the_ordinal_is_the_number_ending_a_statefulset_pods_hostname(
    hostname: str, ordinal: int
) -> None:
    assert ordinal_from_hostname(hostname) == ordinal


@pytest.mark.parametrize(
    "hostname",
    ["sagemaker-tuning-exporter", "exporter-abc12", "exporter2", "", "host-1x.example.com"],
)
def test_a_hostname_without_a_trailing_ordinal_is_refused(hostname: str) -> None:
    with pytest.raises(ValueError, match="does not end in -<ordinal>"):
        ordinal_from_hostname(hostname)
