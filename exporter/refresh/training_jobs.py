"""ListTrainingJobsForHyperParameterTuningJob for the published jobs: read once ended, cheaply while running.

A tuning job's training jobs say why they fail, what instance time they took and which
are best (:mod:`exporter.model.training`). Reading them costs a request per 100 training
jobs, so:

* an ended tuning job's training jobs are read once after it ended, every page, and never
  again (unless a training job was still running then);
* a running tuning job's are read again once its last read is ``training_jobs.ttl`` old,
  newest first (``SortBy=CreationTime``, ``SortOrder=Descending``) and only as deep as a
  training job can still change: past the newest one seen last time and the oldest one
  then still running. Typically that is one request;
* no ``StatusEquals`` is sent, so the read is the same whether the API filters a page
  before or after cutting it;
* a refresh sends at most ``training_jobs.max_requests_per_refresh`` of these requests:
  reads left unfinished go on from their next page at the next refresh (running tuning
  jobs first, then ended ones, the most recently ended first), so a first start over
  thousands of ended jobs spreads over several refreshes.

Every request goes through the refresh's guard. A failure never fails the refresh: the
tuning jobs keep their last tallies and the error is counted
(``sagemaker_tuning_exporter_api_errors_total``). Access denied (an IAM policy without
``sagemaker:ListTrainingJobsForHyperParameterTuningJob``) stops the reading of the
refresh and is logged once, until a read succeeds again; throttling or server errors past
the guard's retries, expired credentials and the deadline stop it and are logged.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from botocore.exceptions import ClientError

from exporter.config.settings import TrainingJobsSettings
from exporter.model.jobs import TuningJob, ended_at
from exporter.model.statuses import RUNNING_STATUSES, UNDESCRIBED_STATUSES
from exporter.model.summaries import epoch_seconds
from exporter.model.training import (
    PendingRead,
    TrainingJobsRecord,
    TrainingJobSummary,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 100

# One page of a tuning job's training jobs, newest first: (tuning job name, NextToken or
# None) -> the API's response as boto3 parses it. It goes through the refresh's guard.
ListTrainingJobsPage = Callable[[str, str | None], Mapping[str, Any]]


def page_request(tuning_job_name: str, next_token: str | None) -> dict[str, Any]:
    """The ListTrainingJobsForHyperParameterTuningJob request of one page, newest first.

    >>> page_request("xgb-1", None)["SortOrder"]
    'Descending'
    """
    request: dict[str, Any] = {
        "HyperParameterTuningJobName": tuning_job_name,
        "MaxResults": PAGE_SIZE,
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
    }
    if next_token:
        request["NextToken"] = next_token
    return request


def parse_training_job_summary(summary: Mapping[str, Any]) -> TrainingJobSummary:
    """A HyperParameterTrainingJobSummary (as boto3 parses it) as the exporter keeps it.

    >>> parse_training_job_summary({"TrainingJobName": "t", "TrainingJobStatus": "Failed",
    ...     "FailureReason": "ClientError: no data"}).failure_reason
    'ClientError: no data'
    """
    objective = summary.get("FinalHyperParameterTuningJobObjectiveMetric")
    objective = objective if isinstance(objective, Mapping) else {}
    value = objective.get("Value")
    tuned = summary.get("TunedHyperParameters")
    tuned = tuned if isinstance(tuned, Mapping) else {}
    reason = summary.get("FailureReason")
    kind = objective.get("Type")
    return TrainingJobSummary(
        name=str(summary["TrainingJobName"]),
        status=str(summary.get("TrainingJobStatus", "")),
        created=epoch_seconds(summary.get("CreationTime")),
        started=epoch_seconds(summary.get("TrainingStartTime")),
        ended=epoch_seconds(summary.get("TrainingEndTime")),
        failure_reason=reason if isinstance(reason, str) else None,
        definition_name=str(summary.get("TrainingJobDefinitionName") or ""),
        objective_value=float(value) if isinstance(value, int | float) else None,
        objective_type=kind if isinstance(kind, str) else None,
        # A tuning job's training jobs share their hyperparameters' names: one copy each.
        hyperparameters=tuple(
            sorted((sys.intern(str(key)), str(text)) for key, text in tuned.items())
        ),
    )


def tuning_jobs_to_read(
    jobs: Sequence[TuningJob],
    records: Mapping[str, TrainingJobsRecord],
    now: float,
    ttl_seconds: float,
) -> list[TuningJob]:
    """The tuning jobs whose training jobs to read now, in the order to read them.

    Reads left unfinished come first; then running tuning jobs never read or read at least
    ``ttl_seconds`` ago, the least recently read first; then ended tuning jobs not read in
    full since they ended, the most recently ended first.

    >>> from exporter.model.jobs import TuningJob
    >>> def job(name, status, end):
    ...     return TuningJob(name, name, "", status, "Random", 0.0, None, end, {}, {}, None, None, None)
    >>> jobs = [job("old", "Completed", 100.0), job("new", "Failed", 900.0), job("run", "InProgress", None)]
    >>> [j.name for j in tuning_jobs_to_read(jobs, {}, now=1000.0, ttl_seconds=300)]
    ['run', 'new', 'old']
    """
    pending: list[TuningJob] = []
    running: list[tuple[float, TuningJob]] = []
    ended: list[tuple[float, TuningJob]] = []
    for job in jobs:
        if job.status in UNDESCRIBED_STATUSES:
            continue
        record = records.get(job.name)
        if record is not None and record.pending is not None:
            pending.append(job)
            continue
        read_at = record.read_at if record is not None else None
        if job.status in RUNNING_STATUSES:
            if read_at is None or now - read_at >= ttl_seconds:
                running.append((-1.0 if read_at is None else read_at, job))
            continue
        if record is not None and record.final:
            continue
        ended_time = ended_at(job)
        if (
            read_at is None
            or (ended_time is not None and read_at < ended_time)
            or now - read_at >= ttl_seconds
        ):
            # A job the API gave no usable time goes last.
            ended.append((-ended_time if ended_time is not None else float("inf"), job))
    running.sort(key=lambda entry: entry[0])
    ended.sort(key=lambda entry: entry[0])
    return [*pending, *(job for _, job in running), *(job for _, job in ended)]


class _Budget:
    """The requests a refresh may still send."""

    def __init__(self, requests: int) -> None:
        self.left = requests

    def spend(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class TrainingJobReader:
    """Keeps the published jobs' training-job tallies up to date within the per-refresh budget.

    Each refresh passes the previous snapshot's records and gets the new ones, so what a
    target knows lives in its snapshot; the reader itself remembers only which targets it
    logged a denial for. ``clock`` gives the wall time the TTL is measured in.
    """

    def __init__(
        self, settings: TrainingJobsSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._denied: set[str] = set()

    def refresh(
        self,
        published: Sequence[TuningJob],
        previous: Mapping[str, TrainingJobsRecord],
        list_page: ListTrainingJobsPage,
        context: str = "",
    ) -> Mapping[str, TrainingJobsRecord]:
        """The records of ``published`` after reading those due, within the budget.

        Jobs no longer published lose their record; ``previous`` itself is returned when
        nothing changed. ``context`` (the account and region) goes into log messages and
        tells targets apart for the once-only denial message.
        """
        now = self._clock()
        budget = _Budget(self._settings.max_requests_per_refresh)
        fresh: dict[str, TrainingJobsRecord] = {}
        for job in tuning_jobs_to_read(published, previous, now, self._settings.ttl_seconds):
            if budget.left <= 0:
                break
            record = previous.get(job.name) or TrainingJobsRecord()
            try:
                updated = self._read(job, record, list_page, budget, now)
            except ClientError as error:
                # One tuning job's: gone since the listing, or a page token no longer valid.
                # Its next read starts over.
                log.info(
                    "cannot read the training jobs of tuning job %s%s: %s",
                    job.name,
                    context,
                    error.response.get("Error", {}).get("Code", "ClientError"),
                )
                if record.pending is not None:
                    fresh[job.name] = replace(record, pending=None)
                continue
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                log.warning(
                    "cannot read the training jobs of tuning job %s%s: %r", job.name, context, error
                )
                continue
            except Exception as error:  # the guard gave up, denied, expired or out of time
                self._log_stop(error, context)
                break
            self._denied.discard(context)
            if updated is not record:
                fresh[job.name] = updated
        names = {job.name for job in published}
        if not fresh and names.issuperset(previous):
            return previous
        kept = {name: record for name, record in previous.items() if name in names}
        return MappingProxyType({**kept, **fresh})

    def _read(
        self,
        job: TuningJob,
        record: TrainingJobsRecord,
        list_page: ListTrainingJobsPage,
        budget: _Budget,
        now: float,
    ) -> TrainingJobsRecord:
        """``record`` after reading as far as needed, or as far as the budget allows."""
        pending = record.pending
        if pending is not None:
            token: str | None = pending.next_token
            seen = list(pending.seen)
            started_at, tuning_job_ended = pending.started_at, pending.tuning_job_ended
        else:
            token, seen = None, []
            started_at, tuning_job_ended = now, job.status not in RUNNING_STATUSES
        depth = record.progress.depth()
        while True:
            if not budget.spend():
                if token is None:  # nothing read yet: nothing to keep
                    return record
                return record.paused(PendingRead(token, tuple(seen), started_at, tuning_job_ended))
            response = list_page(job.name, token)
            page = [parse_training_job_summary(summary) for summary in _summaries(response)]
            seen.extend(page)
            token = response.get("NextToken") or None
            if token is None:
                break
            if depth is not None and page and _created(page[-1]) < depth:
                break  # the rest is older than any training job that can still change
        return record.completed(seen, started_at, tuning_job_ended, self._settings.leaderboard)

    def _log_stop(self, error: Exception, context: str) -> None:
        kind = getattr(error, "kind", None)
        if kind == "access_denied":
            if context in self._denied:
                return
            self._denied.add(context)
            log.warning(
                "reading training jobs is denied%s, keeping the last figures (is "
                "sagemaker:ListTrainingJobsForHyperParameterTuningJob allowed?): %s",
                context,
                error,
            )
            return
        log.warning(
            "reading training jobs stopped%s, keeping the last figures: %s: %s",
            context,
            type(error).__name__,
            error,
        )


def _summaries(response: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    summaries = response.get("TrainingJobSummaries") or []
    return [summary for summary in summaries if isinstance(summary, Mapping)]


def _created(summary: TrainingJobSummary) -> float:
    return 0.0 if summary.created is None else summary.created
