"""Assembling a target's :class:`RegionSnapshot` from a refresh, successful or failed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from exporter.model.jobs import NO_DESCRIPTIONS, JobTags, RegionSnapshot, Target, TuningJob
from exporter.model.listing import Listing
from exporter.model.summaries import SummaryProblems
from exporter.model.training import NO_TRAINING_JOBS
from exporter.refresh.retention import PublishedJobs


@dataclass(frozen=True)
class Refreshed:
    """What one refresh of a target produced.

    ``listing`` is what the next refresh lists the changes since, None when this one failed
    (the next then lists from the last good listing).
    """

    snapshot: RegionSnapshot
    listing: Listing | None = None


def successful_snapshot(
    target: Target,
    previous: RegionSnapshot | None,
    listing: Listing,
    published: PublishedJobs,
    *,
    duration: float,
    now: float,
) -> RegionSnapshot:
    """The snapshot of a refresh that listed ``listing``, ``published`` chosen from it.

    Its counters carry on from ``previous``, and so do its tags, descriptions and training-job
    records until the tag read, the describe step and the training-job read replace them. Unchanged jobs keep the previous tuple, so
    the exposition can tell nothing changed.
    """
    jobs = listing.jobs
    published_jobs = published.jobs
    if previous is not None:
        if jobs == previous.jobs:
            jobs = previous.jobs
        if published_jobs == previous.published:
            published_jobs = previous.published
    problems = _problems_since_start(previous, listing)
    return RegionSnapshot(
        target=target,
        account=_account_label(target, jobs, previous),
        jobs=jobs,
        up=True,
        last_success_time=now,
        refresh_duration_seconds=duration,
        refresh_failures=previous.refresh_failures if previous else 0,
        published=published_jobs,
        hidden_by_retention=published.hidden_by_retention,
        hidden_by_limit=published.hidden_by_limit,
        full_listings=(previous.full_listings if previous else 0) + listing.full,
        incremental_listings=(previous.incremental_listings if previous else 0)
        + (not listing.full),
        skipped_summaries=problems.skipped,
        invalid_fields=problems.invalid_fields,
        tags=previous.tags if previous else JobTags(),
        descriptions=previous.descriptions if previous else NO_DESCRIPTIONS,
        training_jobs=previous.training_jobs if previous else NO_TRAINING_JOBS,
    )


def failed_snapshot(
    target: Target, previous: RegionSnapshot | None, duration: float, error: str | None
) -> RegionSnapshot:
    """The snapshot of a failed refresh: down, with the last good jobs, one more failure counted."""
    if previous is None:
        return RegionSnapshot(
            target=target,
            account=target.account_id,
            jobs=(),
            up=False,
            last_success_time=None,
            refresh_duration_seconds=duration,
            error=error,
            refresh_failures=1,
        )
    return replace(
        previous,
        up=False,
        refresh_duration_seconds=duration,
        error=error,
        refresh_failures=previous.refresh_failures + 1,
    )


def republished(snapshot: RegionSnapshot, published: PublishedJobs) -> RegionSnapshot:
    """``snapshot`` with ``published`` as its per-job jobs; the same object if nothing changed."""
    if (
        published.jobs == snapshot.published
        and published.hidden_by_retention == snapshot.hidden_by_retention
        and published.hidden_by_limit == snapshot.hidden_by_limit
    ):
        return snapshot
    return replace(
        snapshot,
        published=published.jobs,
        hidden_by_retention=published.hidden_by_retention,
        hidden_by_limit=published.hidden_by_limit,
    )


def _problems_since_start(previous: RegionSnapshot | None, listing: Listing) -> SummaryProblems:
    """The previous snapshot's counts of unusable summaries and fields, this listing's added."""
    if previous is None:
        return listing.problems
    return SummaryProblems(previous.skipped_summaries, previous.invalid_fields) + listing.problems


def _account_label(
    target: Target, jobs: Sequence[TuningJob], previous: RegionSnapshot | None
) -> str:
    """The account of a target: from its role ARN, else from its jobs' ARNs, else as before."""
    if target.account_id:
        return target.account_id
    for job in jobs:
        if job.account:
            return job.account
    return previous.account if previous is not None else ""
