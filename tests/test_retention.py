"""Which jobs get per-job series: running jobs, jobs ended within the retention, up to a cap."""

from __future__ import annotations

from exporter.model.jobs import TuningJob, ended_at
from exporter.refresh.retention import select_published_jobs
from tests.factories import tuning_job

NOW = 1_800_000_000.0
DAY = 86_400.0


def job(
    name: str,
    status: str = "Completed",
    end: float | None = None,
    modified: float | None = None,
) -> TuningJob:
    return tuning_job(
        name,
        status=status,
        creation_time=NOW - 30 * DAY,
        last_modified_time=modified,
        end_time=end,
    )


def names(jobs: tuple[TuningJob, ...]) -> list[str]:
    return [j.name for j in jobs]


def test_running_jobs_stay_published_however_old() -> None:
    jobs = [job("running", "InProgress"), job("stopping", "Stopping")]

    published = select_published_jobs(jobs, NOW, retention_seconds=7 * DAY, max_jobs=10)

    assert names(published.jobs) == ["running", "stopping"]
    assert published.hidden_by_retention == 0


def test_ended_jobs_leave_after_the_retention() -> None:
    jobs = [
        job("ended-8d-ago", end=NOW - 8 * DAY),
        job("ended-6d-ago", "Failed", end=NOW - 6 * DAY),
        job("no-end-time-modified-9d-ago", "Deleting", modified=NOW - 9 * DAY),
        job("no-times-at-all", "DeleteFailed"),
    ]

    published = select_published_jobs(jobs, NOW, retention_seconds=7 * DAY, max_jobs=10)

    assert names(published.jobs) == ["ended-6d-ago"]
    assert published.hidden_by_retention == 3


def test_zero_retention_keeps_every_job() -> None:
    jobs = [job("ancient", end=NOW - 900 * DAY), job("recent", end=NOW - DAY)]

    published = select_published_jobs(jobs, NOW, retention_seconds=0, max_jobs=10)

    assert names(published.jobs) == ["ancient", "recent"]


def test_over_the_cap_running_then_most_recently_ended_jobs_win_in_listing_order() -> None:
    jobs = [
        job("a-old", end=NOW - 3 * DAY),
        job("b-running", "InProgress"),
        job("c-newest", end=NOW - 1),
        job("d-middle", end=NOW - DAY),
    ]

    published = select_published_jobs(jobs, NOW, retention_seconds=7 * DAY, max_jobs=3)

    assert names(published.jobs) == ["b-running", "c-newest", "d-middle"]
    assert (published.hidden_by_retention, published.hidden_by_limit) == (0, 1)


def test_a_cap_of_zero_publishes_no_per_job_series() -> None:
    published = select_published_jobs([job("a", end=NOW)], NOW, retention_seconds=0, max_jobs=0)

    assert (published.jobs, published.hidden_by_limit) == ((), 1)


def test_ended_at_prefers_the_end_time_then_the_last_modification_then_creation() -> None:
    assert ended_at(job("x", end=NOW - 5, modified=NOW - 1)) == NOW - 5
    assert ended_at(job("x", modified=NOW - 1)) == NOW - 1
    assert ended_at(job("x")) == NOW - 30 * DAY
