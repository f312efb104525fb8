"""Which replica refreshes and publishes which (account, region) target.

Targets are assigned by rendezvous (highest-random-weight) hashing: every shard scores a
target with a stable hash of the shard's index and the target's account and region, and
the highest score owns it. Every replica computes the same owner without talking to the
others, every target has exactly one owner, and going from M to M+1 shards moves only the
targets the new shard wins, about 1/(M+1) of them; ``hash % M`` would move about M/(M+1).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.model.jobs import Target

_TRAILING_ORDINAL = re.compile(r"-(\d+)$")


def target_key(target: Target) -> str:
    """What a target is hashed by: its account and region.

    The account is the configured one (its role's account ID), empty for the ambient
    credentials, whose account is only learnt from the jobs' ARNs.
    """
    return f"{target.account_id}:{target.region}"


def shard_weight(index: int, target: Target) -> int:
    """Shard ``index``'s score for ``target``: the same in every process and Python run.

    Python's ``hash()`` of a string is salted per process, so it cannot be used here.
    """
    digest = hashlib.blake2b(f"{index}:{target_key(target)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(target: Target, total: int) -> int:
    """The index of the shard, of ``total``, that owns ``target``."""
    return max(range(total), key=lambda index: shard_weight(index, target))


@dataclass(frozen=True)
class Shard:
    """One replica's share of the targets: shard ``index`` (0-based) of ``total``.

    >>> target = Target(region="eu-west-1", account_id="111111111111")
    >>> [Shard(index, 3).owns(target) for index in range(3)].count(True)
    1
    >>> Shard(0, 1).owns(target)
    True
    >>> Shard(3, 3)
    Traceback (most recent call last):
    ...
    ValueError: shard 3 is not one of 0 to 2 (of 3 shards)
    """

    index: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ValueError(f"expected 1 or more shards, got {self.total}")
        if not 0 <= self.index < self.total:
            raise ValueError(
                f"shard {self.index} is not one of 0 to {self.total - 1} (of {self.total} shards)"
            )

    @property
    def is_sharded(self) -> bool:
        """Whether the targets are split over more than one replica."""
        return self.total > 1

    def owns(self, target: Target) -> bool:
        """Whether this shard refreshes and publishes ``target``."""
        return self.total == 1 or owner_of(target, self.total) == self.index

    def select(self, targets: Iterable[Target]) -> list[Target]:
        """The targets of ``targets`` this shard owns, in their order."""
        return [target for target in targets if self.owns(target)]


UNSHARDED = Shard(0, 1)


def ordinal_from_hostname(hostname: str) -> int:
    """The pod ordinal a StatefulSet puts at the end of its pods' hostnames.

    >>> ordinal_from_hostname("sagemaker-tuning-exporter-2")
    2
    >>> ordinal_from_hostname("sagemaker-tuning-exporter-10.sagemaker-tuning-exporter")
    10

    Raises ValueError when the (first label of the) hostname does not end in ``-<n>``.
    """
    name = hostname.split(".", 1)[0]
    match = _TRAILING_ORDINAL.search(name)
    if match is None:
        raise ValueError(
            f"hostname {hostname!r} does not end in -<ordinal> as a StatefulSet pod's does "
            "(sagemaker-tuning-exporter-2); give the shard as a number"
        )
    return int(match.group(1))
