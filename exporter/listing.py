"""What a refresh lists: every matching job, or only the jobs that can have changed, merged in.

A full listing asks for every job matching the filters: ceil(N/100) requests per region. Jobs
in a terminal state change only by being deleted, so between full listings a refresh asks
only for what can have changed:

* the jobs in an active state (InProgress, Stopping, Deleting), whose counters move, one
  listing per state;
* the jobs modified since the last refresh: LastModifiedTimeAfter the watermark (the newest
  LastModifiedTime the API has reported, never the local clock) less a safety overlap.

With 20 running jobs that is 4 requests, whatever the number of finished jobs. A job held
in an active state that neither listing returns any more has changed in a way the listings
cannot show; a Deleting job is then gone, anything else means drift, and the refresh lists
in full instead. So does a misbehaving incremental listing (empty pages with a NextToken,
loops). Deleted terminal jobs disappear at the next full listing (``cache.full_resync``).

A status this exporter does not know (one SageMaker added later) is treated like a terminal
one: such a job is listed again when its LastModifiedTime moves, and at every full listing.
Jobs are keyed by name, unique per account and region, as the ARN may be missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from exporter.aws import PAGE_SIZE, PaginationError, RefreshGuard, iter_summaries
from exporter.config import JobFilters
from exporter.jobs import ParsedSummary, SummaryProblems, TuningJob, parse_job_summary

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

log = logging.getLogger(__name__)

# States in which a job changes without its LastModifiedTime having to move: listed every time.
ACTIVE_STATUSES = ("InProgress", "Stopping", "Deleting")
# How far before the watermark the modified-jobs listing starts, for jobs whose changes
# the API shows late (eventual consistency) or stamps out of order.
WATERMARK_OVERLAP_SECONDS = 300.0
# Empty pages with a NextToken in a row that an incremental listing tolerates before it
# gives up and lists in full.
MAX_EMPTY_PAGES = 3


@dataclass(frozen=True)
class Listing:
    """The jobs of one account and region after a refresh, and how to list changes next time.

    ``watermark`` is the newest LastModifiedTime (epoch seconds) the API reported, None
    when no job has one; ``full`` says whether this refresh listed every job. ``problems``
    counts the summaries this refresh's requests returned that were skipped or left fields
    out, once per time a request returned them.
    """

    jobs: tuple[TuningJob, ...]
    watermark: float | None
    full: bool
    problems: SummaryProblems = field(default_factory=SummaryProblems)


class _DriftError(Exception):
    """An incremental listing cannot account for a job: list in full instead."""


def list_full(
    client: SageMakerClient, filters: JobFilters, now: float, guard: RefreshGuard | None = None
) -> Listing:
    """A full listing: every job matching ``filters``, sorted by name.

    NameContains, StatusEquals (one listing per status) and CreationTimeAfter go to the API;
    the same filters are checked again locally, so an endpoint that ignores one cannot widen
    the result. Every page goes through ``guard`` when one is given (see :func:`iter_summaries`).
    """
    base = _base_request(filters, now)
    requests = [{**base, "StatusEquals": status} for status in filters.statuses] or [base]
    jobs: dict[str, TuningJob] = {}
    problems: list[ParsedSummary] = []
    for request in requests:
        jobs.update(_jobs_of(client, request, problems, guard=guard))
    return _listing(jobs.values(), filters, now, None, True, parsed_with_problems=problems)


def list_changes(
    client: SageMakerClient,
    filters: JobFilters,
    now: float,
    previous: Listing,
    guard: RefreshGuard | None = None,
) -> Listing:
    """``previous`` brought up to date by listing only what can have changed since it.

    Falls back to :func:`list_full` when the previous listing gives no watermark to start
    from, when the incremental listings misbehave, or when a job cannot be accounted for.
    """
    if previous.watermark is None:
        return list_full(client, filters, now, guard)
    try:
        return _list_changes(client, filters, now, previous, previous.watermark, guard=guard)
    except (_DriftError, PaginationError) as reason:
        log.info("listing every job instead of the changes: %s", reason)
        return list_full(client, filters, now, guard)


def _list_changes(
    client: SageMakerClient,
    filters: JobFilters,
    now: float,
    previous: Listing,
    watermark: float,
    *,
    guard: RefreshGuard | None,
) -> Listing:
    base = _base_request(filters, now)
    statuses = [s for s in ACTIVE_STATUSES if not filters.statuses or s in filters.statuses]
    active: dict[str, TuningJob] = {}
    problems: list[ParsedSummary] = []
    for status in statuses:
        request = {**base, "StatusEquals": status}
        active.update(
            _jobs_of(client, request, problems, max_empty_pages=MAX_EMPTY_PAGES, guard=guard)
        )
    since = datetime.fromtimestamp(watermark - WATERMARK_OVERLAP_SECONDS, tz=UTC)
    modified = dict(
        _jobs_of(
            client,
            {**base, "LastModifiedTimeAfter": since},
            problems,
            max_empty_pages=MAX_EMPTY_PAGES,
            guard=guard,
        )
    )

    jobs = {job.name: job for job in previous.jobs}
    for name, job in list(jobs.items()):
        # A status not in ACTIVE_STATUSES, known or not, is never listed by status: only a
        # modification or the next full listing can show its changes, so it is no drift.
        if job.status not in statuses or name in active or name in modified:
            continue
        if job.status == "Deleting":  # no longer Deleting and not modified: deleted
            del jobs[name]
            continue
        raise _DriftError(
            f"job {job.name!r} left status {job.status} without being listed as modified"
        )
    jobs.update(active)
    jobs.update(modified)
    return _listing(jobs.values(), filters, now, watermark, False, parsed_with_problems=problems)


def _base_request(filters: JobFilters, now: float) -> dict[str, Any]:
    request: dict[str, Any] = {"MaxResults": PAGE_SIZE}
    if filters.name_contains:
        request["NameContains"] = filters.name_contains
    if filters.created_after is not None:
        request["CreationTimeAfter"] = filters.created_after.resolve(now)
    return request


def _jobs_of(
    client: SageMakerClient,
    request: Mapping[str, Any],
    problems: list[ParsedSummary],
    max_empty_pages: int | None = None,
    guard: RefreshGuard | None = None,
) -> Iterable[tuple[str, TuningJob]]:
    """(name, job) for every summary the request lists that names its job.

    The summaries that were skipped or left fields out are appended to ``problems``.
    """
    for summary in iter_summaries(client, request, max_empty_pages, guard):
        parsed = parse_job_summary(summary)
        if parsed.skip_reason is not None or parsed.invalid_fields:
            problems.append(parsed)
        if parsed.job is not None:
            yield parsed.job.name, parsed.job


def _listing(
    jobs: Iterable[TuningJob],
    filters: JobFilters,
    now: float,
    previous_watermark: float | None,
    full: bool,
    *,
    parsed_with_problems: list[ParsedSummary],
) -> Listing:
    created_after = (
        filters.created_after.resolve(now).timestamp() if filters.created_after else None
    )
    kept = sorted(
        (job for job in jobs if _matches(job, filters, created_after)), key=lambda job: job.name
    )
    stamps = [job.last_modified_time for job in kept if job.last_modified_time is not None]
    if previous_watermark is not None:
        stamps.append(previous_watermark)
    problems = SummaryProblems.of(parsed_with_problems)
    _log_problems(problems, parsed_with_problems)
    return Listing(tuple(kept), max(stamps, default=None), full, problems)


def _log_problems(problems: SummaryProblems, parsed: list[ParsedSummary]) -> None:
    """One line per listing that met unusable summaries, naming a few of the jobs."""
    if not parsed:
        return
    named = [p.job.name[:100] for p in parsed if p.job is not None][:5]
    log.warning(
        "skipped %d tuning job summaries by reason %s; left out fields %s (jobs %s)",
        sum(problems.skipped.values()),
        dict(problems.skipped),
        dict(problems.invalid_fields),
        named,
    )


def _matches(job: TuningJob, filters: JobFilters, created_after: float | None) -> bool:
    if filters.name_contains and filters.name_contains not in job.name:
        return False
    if filters.statuses and job.status not in filters.statuses:
        return False
    # Without a usable CreationTime only the API's own CreationTimeAfter filter vouches for it.
    return created_after is None or job.creation_time is None or job.creation_time > created_after
