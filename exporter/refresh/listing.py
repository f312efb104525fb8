"""What a refresh lists: one walk of the jobs newest first, as deep as what can still change.

SageMaker's List APIs may cut a page first and filter it after (ListTrainingJobs documents
that order; ListHyperParameterTuningJobs says nothing either way), so a filtered listing can
cost a request per 100 jobs of the whole population, whatever it matches. The listing
therefore sends no filter at all: it asks for the jobs newest first (SortBy=CreationTime,
SortOrder=Descending, 100 a page), applies the configured filters itself, and decides how
deep to go from the creation times, which it sees on every page. An unfiltered page is the
same under either reading, and so is what each walk costs:

* a **full listing** (the first refresh, and one every ``cache.full_resync``) walks to the
  end of the population, or to ``filters.created_after``: ceil(N/100) requests, with
  filters or without;
* a **refresh in between** walks only as deep as a job can still change. New jobs stand
  at the top; the jobs held in an active state (InProgress, Stopping, Deleting) are the
  only others whose summaries move. The walk goes past the newest job the last walk saw
  (less NEW_JOB_OVERLAP_SECONDS, for jobs the API shows late) and past the active jobs
  worth reaching; with describing on, each active job deeper than that is read with one
  DescribeHyperParameterTuningJob, which answers every field a summary has, rather than
  with the pages above it (:func:`plan_depth` weighs one against the other). With 20
  running jobs among the newest 100, that is 1 request, whatever the number of finished
  jobs.

Within the part of the order a walk covered it sees every job, so a job it no longer
finds there was deleted. Below it, a job in a terminal state is kept as last listed: its
deletion, or a change to an old finished job (its LastModifiedTime moving), shows at the
next full listing. A status this exporter does not know (one SageMaker added later) is
treated like a terminal one. Jobs are keyed by name, unique per account and region.

The walk stops a listing whose pages do not end: a NextToken that repeats, more than
MAX_PAGES_WITHOUT_NEW_JOBS pages in a row that bring no job not already seen (empty pages
with a NextToken, as some List APIs have been seen to answer), or, between full listings,
more pages than twice those the population needed plus RUNAWAY_SLACK_PAGES (a full listing,
which learns the population anew, is bounded by MAX_PAGES). It raises
:class:`exporter.aws.errors.PaginationError`, which fails the refresh: the target reads up=0
with its last jobs, its failed refreshes count one more, and the log names it. An
endpoint that does not honour the sort order is walked to the end instead, for as long
as it does not.

The module runs past 400 lines because the walk, the plan of its depth and the merge of its
result with the last listing rely on one invariant (what a walk covered, it saw whole);
split apart, each would have to restate it.
"""

from __future__ import annotations

import bisect
import logging
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from exporter.aws.errors import CredentialError, PaginationError
from exporter.aws.guard import RefreshGuard
from exporter.aws.operations import LIST_OPERATION
from exporter.aws.paging import pages
from exporter.config.settings import JobFilters
from exporter.model.jobs import JobDescription, TuningJob
from exporter.model.listing import PAGE_SIZE, Listing, Population
from exporter.model.statuses import ACTIVE_STATUSES
from exporter.model.summaries import ParsedSummary, SummaryProblems, parse_job_summary
from exporter.refresh.describe import DescribeJob, parse_description, summary_from_description

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

log = logging.getLogger(__name__)

# Newest first: the only order in which a walk can stop early under either reading.
WALK_ORDER = {"SortBy": "CreationTime", "SortOrder": "Descending"}
# How far below the newest job the last walk saw a refresh walks, for jobs whose creation
# the API shows late (eventual consistency).
NEW_JOB_OVERLAP_SECONDS = 300.0
# Pages in a row that bring no job not seen before in the walk (empty pages with a
# NextToken, or pages repeating earlier ones) that a walk tolerates.
MAX_PAGES_WITHOUT_NEW_JOBS = 3
# A walk between full listings may take twice the pages its population needed, plus this many.
RUNAWAY_SLACK_PAGES = 20
# 10,000 pages are a million tuning jobs: the bound of a full walk, which learns the population
# anew (so a population that outgrew the bound below is relearnt by the next full listing).
MAX_PAGES = 10_000
# The error DescribeHyperParameterTuningJob answers for a job that no longer exists.
NOT_FOUND_ERROR_CODE = "ResourceNotFound"


def list_full(
    client: SageMakerClient, filters: JobFilters, now: float, guard: RefreshGuard | None = None
) -> Listing:
    """A full listing: every job matching ``filters``, sorted by name, in one walk.

    The walk stops at ``filters.created_after``, as no job below it can match. It is bounded
    by MAX_PAGES only, since it is what learns the population anew (see the module
    docstring). Every page goes through ``guard`` when one is given.
    """
    created_after = _created_after(filters, now)
    walk = _Walk(client, guard, max_pages=MAX_PAGES)
    walk.walk_until(stop_below=created_after, inclusive=True)
    tracked = {
        name: job for name, job in walk.seen.items() if _matches_static(job, filters, created_after)
    }
    population = Population(_ascending(walk.creation_times), walk.sorted)
    return _listing(tracked.values(), filters, walk, population, full=True)


def list_changes(
    client: SageMakerClient,
    filters: JobFilters,
    now: float,
    previous: Listing,
    guard: RefreshGuard | None = None,
    *,
    describe: DescribeJob | None = None,
) -> Listing:
    """``previous`` brought up to date by walking only as deep as a job can still change.

    With ``describe`` (None: describing is off), the active jobs deeper than
    :func:`plan_depth` finds worth walking are described instead.
    """
    created_after = _created_after(filters, now)
    known = {job.name: job for job in (*previous.jobs, *previous.active_outside_filter)}
    active = [job for job in known.values() if job.status in ACTIVE_STATUSES]
    may_describe = describe is not None and not previous.describe_denied
    depth = plan_depth(previous.population, active, describe=may_describe)
    walk = _Walk(client, guard, max_pages=_page_bound(previous))
    if depth == -math.inf:
        walk.walk_until(stop_below=created_after, inclusive=True)
    else:
        floor = _new_job_floor(previous.population)
        walk.walk_until(stop_below=floor if created_after is None else max(floor, created_after))
        walk.reach(
            [job for job in active if job.creation_time is not None and job.creation_time >= depth]
        )

    descriptions: dict[str, JobDescription] = {}
    described: dict[str, TuningJob | None] = {}  # None: the job no longer exists
    describe_denied = previous.describe_denied
    for job in walk.unreached(active):
        if describe is None or describe_denied:
            break
        try:
            answer = describe(job.name)
        except CredentialError as error:
            if error.kind != "access_denied":
                raise
            log.warning("cannot describe tuning job %s, walking to it instead: %s", job.name, error)
            describe_denied = True
            break
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != NOT_FOUND_ERROR_CODE:
                raise
            described[job.name] = None
            continue
        parsed = parse_job_summary(summary_from_description(answer))
        walk.record_problem(parsed)
        described[job.name] = parsed.job
        descriptions[job.name] = parse_description(answer, now)
    # Those left (describing is off or refused): walk on until each is listed or passed.
    walk.reach([job for job in walk.unreached(active) if job.name not in described])

    tracked: dict[str, TuningJob] = {}
    for name, job in known.items():
        if not walk.covers(job):  # if it did, the job is listed there or it is gone
            tracked[name] = job
    for name, listed in (*walk.seen.items(), *described.items()):
        if listed is None:
            tracked.pop(name, None)
        elif _matches_static(listed, filters, created_after):
            tracked[name] = listed
    population = _merged_population(previous.population, walk)
    return _listing(
        tracked.values(),
        filters,
        walk,
        population,
        full=False,
        descriptions=descriptions,
        describe_denied=describe_denied,
    )


def plan_depth(population: Population, active: Sequence[TuningJob], *, describe: bool) -> float:
    """The creation time a refresh walks below: the cheapest mix of pages and describes.

    The walk goes at least past the newest job the last walk saw, less the overlap. Each
    active job deeper than the walk goes costs one describe, each page one List request;
    without ``describe``, the walk reaches every active job. ``-inf`` walks everything,
    which is the answer whenever the population cannot be placed (no job seen, the sort
    not honoured, an active job without a creation time and no describing).

    >>> population = Population(array("d", range(1000)))  # one job a second, 10 pages
    >>> def job(name, created):
    ...     return TuningJob(name, name, "", "InProgress", "Random", created, None, None, {}, {}, None, None, None)
    >>> plan_depth(population, [job("new", 990.0), job("old", 5.0)], describe=True)
    699.0
    >>> plan_depth(population, [job("new", 990.0), job("old", 5.0)], describe=False)
    5.0
    """
    if population.newest is None or not population.sorted:
        return -math.inf
    floor = _new_job_floor(population)
    unplaced = [job for job in active if job.creation_time is None]
    if unplaced and not describe:
        return -math.inf
    deeper = sorted(
        (
            job.creation_time
            for job in active
            if job.creation_time is not None and job.creation_time < floor
        ),
        reverse=True,
    )
    if not describe:
        return min(floor, deeper[-1]) if deeper else floor
    best, best_cost = floor, _pages_below(population, floor) + len(deeper)
    for reached, moment in enumerate(deeper, start=1):
        cost = _pages_below(population, moment) + len(deeper) - reached
        if cost <= best_cost:  # on a tie, walk: a walk also shows deletions
            best, best_cost = moment, cost
    return best


def _new_job_floor(population: Population) -> float:
    """The creation time a refresh walks below at least, to list every job created since the
    last walk: its newest job's, less the overlap (``-inf`` when it saw none)."""
    newest = population.newest
    return -math.inf if newest is None else newest - NEW_JOB_OVERLAP_SECONDS


def _pages_below(population: Population, moment: float) -> int:
    """Pages a newest-first walk takes to reach a job older than ``moment``."""
    return population.jobs_created_since(moment) // PAGE_SIZE + 1


class _Walk:
    """One newest-first walk of a region's jobs, unfiltered, that can be taken further.

    ``seen`` holds every job listed (by name), ``creation_times`` the creation times of
    every summary listed, ``lowest_covered`` the creation time above which the walk has
    seen every job (``-inf`` once it reached the end), and ``problems`` the summaries that
    were skipped or left fields out.
    """

    def __init__(
        self, client: SageMakerClient, guard: RefreshGuard | None, *, max_pages: int
    ) -> None:
        send = (
            client.list_hyper_parameter_tuning_jobs
            if guard is None
            else partial(guard.call, client.list_hyper_parameter_tuning_jobs)
        )
        self._pages = pages(
            send,
            {"MaxResults": PAGE_SIZE, **WALK_ORDER},
            operation=LIST_OPERATION,
            next_key="NextToken",
            max_pages=max_pages,
            bound_reason=", more than the population can need",
        )
        self._pages_without_new_jobs = 0
        self.reached_end = False
        self.sorted = True
        self.seen: dict[str, TuningJob] = {}
        self.creation_times: list[float] = []
        self.lowest_covered = math.inf
        self.problems: list[ParsedSummary] = []

    def walk_until(self, stop_below: float | None, *, inclusive: bool = False) -> None:
        """Take pages until one holds a job created before ``stop_below`` (at it too, with
        ``inclusive``) or the jobs end; an unsorted endpoint is walked to the end."""
        while not self.reached_end:
            if stop_below is not None and self.sorted and self._covered(stop_below, inclusive):
                return
            self._next_page()

    def _covered(self, moment: float, inclusive: bool) -> bool:
        """Whether the walk has listed a job created before ``moment`` (or at it)."""
        return self.lowest_covered < moment or (inclusive and self.lowest_covered <= moment)

    def reach(self, jobs: Sequence[TuningJob]) -> None:
        """Take pages until each of ``jobs`` is listed or passed (or the jobs end)."""
        while not self.reached_end and (not self.sorted or self.unreached(jobs)):
            self._next_page()

    def covers(self, job: TuningJob) -> bool:
        """Whether the walk went past where ``job`` stands, so that it lists it if it exists."""
        if self.reached_end:
            return True
        return job.creation_time is not None and job.creation_time > self.lowest_covered

    def unreached(self, jobs: Iterable[TuningJob]) -> list[TuningJob]:
        """Those of ``jobs`` neither listed nor passed by the walk."""
        return [job for job in jobs if job.name not in self.seen and not self.covers(job)]

    def record_problem(self, parsed: ParsedSummary) -> None:
        """Count ``parsed`` among the listing's problems if it has any."""
        if parsed.skip_reason is not None or parsed.invalid_fields:
            self.problems.append(parsed)

    def _next_page(self) -> None:
        page = next(self._pages)
        new_jobs = self._take(page.get("HyperParameterTuningJobSummaries", []))
        if not page.get("NextToken"):
            self.reached_end = True
            self.lowest_covered = -math.inf
            return
        self._pages_without_new_jobs = 0 if new_jobs else self._pages_without_new_jobs + 1
        if self._pages_without_new_jobs > MAX_PAGES_WITHOUT_NEW_JOBS:
            raise PaginationError(
                f"{LIST_OPERATION} returned {self._pages_without_new_jobs} pages in a row with "
                "a NextToken and no job not listed before"
            )

    def _take(self, summaries: Iterable[Any]) -> int:
        """Record a page's summaries; return how many jobs were new to this walk."""
        new_jobs = 0
        for summary in summaries:
            parsed = parse_job_summary(summary)
            self.record_problem(parsed)
            job = parsed.job
            if job is None:
                continue
            if job.name not in self.seen:
                new_jobs += 1
            self.seen[job.name] = job
            created = job.creation_time
            if created is None:
                continue
            self.creation_times.append(created)
            if created > self.lowest_covered and self.sorted:
                self.sorted = False
                log.warning(
                    "%s does not list jobs newest first as asked: every refresh lists every job",
                    LIST_OPERATION,
                )
            self.lowest_covered = min(self.lowest_covered, created)
        return new_jobs


def _page_bound(previous: Listing) -> int:
    """The most pages a walk between full listings may take: twice what the population
    needed, plus slack."""
    return 2 * previous.population.pages + RUNAWAY_SLACK_PAGES


def _merged_population(previous: Population, walk: _Walk) -> Population:
    """The population after a walk: what it saw above where it stopped, the rest as before."""
    if walk.reached_end:
        return Population(_ascending(walk.creation_times), walk.sorted)
    below = previous.creation_times[
        : bisect.bisect_right(previous.creation_times, walk.lowest_covered)
    ]
    above = [moment for moment in walk.creation_times if moment > walk.lowest_covered]
    return Population(below + _ascending(above), walk.sorted and previous.sorted)


def _ascending(times: Iterable[float]) -> array[float]:
    return array("d", sorted(times))


def _created_after(filters: JobFilters, now: float) -> float | None:
    return filters.created_after.resolve(now).timestamp() if filters.created_after else None


def _matches_static(job: TuningJob, filters: JobFilters, created_after: float | None) -> bool:
    """Whether ``job`` passes the filters a job never moves out of: its name and creation time."""
    if filters.name_contains and filters.name_contains not in job.name:
        return False
    # Without a usable CreationTime a job cannot be placed: it is kept rather than hidden.
    return created_after is None or job.creation_time is None or job.creation_time > created_after


def _listing(
    tracked: Iterable[TuningJob],
    filters: JobFilters,
    walk: _Walk,
    population: Population,
    *,
    full: bool,
    descriptions: Mapping[str, JobDescription] | None = None,
    describe_denied: bool = False,
) -> Listing:
    jobs: list[TuningJob] = []
    outside: list[TuningJob] = []
    for job in sorted(tracked, key=lambda job: job.name):
        if not filters.statuses or job.status in filters.statuses:
            jobs.append(job)
        elif job.status in ACTIVE_STATUSES:
            outside.append(job)
    problems = SummaryProblems.of(walk.problems)
    _log_problems(problems, walk.problems)
    return Listing(
        jobs=tuple(jobs),
        full=full,
        problems=problems,
        population=population,
        active_outside_filter=tuple(outside),
        descriptions=MappingProxyType(dict(descriptions or {})),
        describe_denied=describe_denied,
    )


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
