"""Parsing job summaries: what is essential, what degrades, and what passes through raw."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from exporter.config.settings import JobFilters
from exporter.refresh.listing import list_full
from tests.aws_fakes import sagemaker_client
from tests.sagemaker_server import SageMakerTestServer, at, epoch

if TYPE_CHECKING:
    pass

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.model.jobs import TuningJob
from exporter.model.statuses import OBJECTIVE_STATUSES, TRAINING_JOB_STATUSES
from exporter.model.summaries import (
    INVALID_FIELDS,
    SKIP_REASONS,
    ParsedSummary,
    SummaryProblems,
    parse_job_summary,
)
from exporter.refresh.retention import select_published_jobs

ARN = "arn:aws:sagemaker:eu-west-1:111111111111:hyper-parameter-tuning-job/xgb-1"
CREATED = datetime(2026, 11, 1, 10, 0, 0, 250_000, tzinfo=UTC)

# Deterministic, so CI sees the same examples on every run; no deadline on a loaded machine.
DETERMINISTIC = settings(
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def summary(**fields: Any) -> dict[str, Any]:
    """A complete summary as boto3 returns it; ``fields`` override or (as ``None``) remove keys."""
    values: dict[str, Any] = {
        "HyperParameterTuningJobName": "xgb-1",
        "HyperParameterTuningJobArn": ARN,
        "HyperParameterTuningJobStatus": "InProgress",
        "Strategy": "Bayesian",
        "CreationTime": CREATED,
        "LastModifiedTime": CREATED,
        "TrainingJobStatusCounters": {"Completed": 3, "InProgress": 2, "NonRetryableError": 1},
        "ObjectiveStatusCounters": {"Succeeded": 3, "Pending": 2, "Failed": 0},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 20, "MaxParallelTrainingJobs": 4},
    }
    values.update(fields)
    return {key: value for key, value in values.items() if value is not None}


def parsed_job(parsed: ParsedSummary) -> TuningJob:
    assert parsed.job is not None, parsed
    return parsed.job


def test_a_complete_summary_is_published_whole_with_no_problems() -> None:
    parsed = parse_job_summary(summary())

    job = parsed_job(parsed)
    assert (parsed.skip_reason, parsed.invalid_fields) == (None, ())
    assert (job.name, job.arn, job.account) == ("xgb-1", ARN, "111111111111")
    assert job.creation_time == CREATED.timestamp()
    assert dict(job.training_job_counts) == {
        "Completed": 3,
        "InProgress": 2,
        "NonRetryableError": 1,
    }
    assert (job.max_training_jobs, job.max_parallel_training_jobs) == (20, 4)


@pytest.mark.parametrize("name", [None, ""], ids=["absent", "empty"])
def test_a_summary_without_a_name_is_skipped_as_missing_name(name: str | None) -> None:
    parsed = parse_job_summary(summary(HyperParameterTuningJobName=name))

    assert (parsed.job, parsed.skip_reason) == (None, "missing_name")


@pytest.mark.parametrize("not_an_object", ["xgb-1", 7, None, ["xgb-1"]])
def test_a_summary_that_is_not_an_object_is_skipped_as_missing_name(not_an_object: object) -> None:
    assert parse_job_summary(not_an_object).skip_reason == "missing_name"


@pytest.mark.parametrize("name", [7, 1.5, True, {"a": 1}, ["xgb-1"]])
def test_a_name_that_is_not_text_is_skipped_as_invalid_name(name: object) -> None:
    parsed = parse_job_summary(summary(HyperParameterTuningJobName=name))

    assert (parsed.job, parsed.skip_reason) == (None, "invalid_name")


def test_a_missing_arn_leaves_the_account_to_the_target_and_is_counted() -> None:
    parsed = parse_job_summary(summary(HyperParameterTuningJobArn=None))

    job = parsed_job(parsed)
    assert (job.arn, job.account) == ("", "")
    assert parsed.invalid_fields == ("HyperParameterTuningJobArn",)


@pytest.mark.parametrize(
    "arn",
    ["not-an-arn", "arn:aws:sagemaker:eu-west-1:12345:hyper-parameter-tuning-job/x", 12],
)
def test_an_arn_without_a_twelve_digit_account_gives_no_account(arn: object) -> None:
    parsed = parse_job_summary(summary(HyperParameterTuningJobArn=arn))

    assert parsed_job(parsed).account == ""
    assert parsed.invalid_fields == ("HyperParameterTuningJobArn",)


def test_unknown_status_and_strategy_pass_through_as_they_are() -> None:
    parsed = parse_job_summary(
        summary(HyperParameterTuningJobStatus="Pausing", Strategy="Evolutionary")
    )

    job = parsed_job(parsed)
    assert (job.status, job.strategy) == ("Pausing", "Evolutionary")
    assert parsed.invalid_fields == ()


@pytest.mark.parametrize("status", [None, "", 3, {"Value": "Completed"}])
def test_a_missing_or_non_text_status_is_published_empty_and_counted(status: object) -> None:
    parsed = parse_job_summary(summary(HyperParameterTuningJobStatus=status))

    assert parsed_job(parsed).status == ""
    assert parsed.invalid_fields == ("HyperParameterTuningJobStatus",)


def test_a_missing_creation_time_leaves_only_that_sample_out() -> None:
    parsed = parse_job_summary(summary(CreationTime=None))

    job = parsed_job(parsed)
    assert job.creation_time is None
    assert job.last_modified_time == CREATED.timestamp()
    assert parsed.invalid_fields == ("CreationTime",)


@pytest.mark.parametrize("raw", ["soon", {"seconds": 1}, 1e20, True, [1]])
def test_a_timestamp_botocore_passed_on_raw_is_left_out_and_counted(raw: object) -> None:
    parsed = parse_job_summary(summary(LastModifiedTime=raw, HyperParameterTuningEndTime=raw))

    job = parsed_job(parsed)
    assert (job.last_modified_time, job.end_time) == (None, None)
    assert parsed.invalid_fields == ("LastModifiedTime", "HyperParameterTuningEndTime")


def test_an_absent_end_time_limit_or_counter_is_no_problem() -> None:
    parsed = parse_job_summary(
        summary(
            HyperParameterTuningEndTime=None,
            ResourceLimits={"MaxNumberOfTrainingJobs": 8},
            TrainingJobStatusCounters={},
        )
    )

    assert parsed_job(parsed).max_parallel_training_jobs is None
    assert parsed.invalid_fields == ()


@pytest.mark.parametrize("bad", [None, "many", -1, 2.5, math.nan, math.inf, True, [3], {"n": 3}])
def test_an_unusable_counter_is_left_out_of_its_family_and_the_rest_kept(bad: object) -> None:
    parsed = parse_job_summary(
        summary(TrainingJobStatusCounters={"Completed": bad, "InProgress": 2})
    )

    assert dict(parsed_job(parsed).training_job_counts) == {"InProgress": 2}
    assert parsed.invalid_fields == ("TrainingJobStatusCounters",)


@pytest.mark.parametrize(
    ("given_value", "count"), [("12", 12), (" 7 ", 7), (4.0, 4), (10**15, 10**15)]
)
def test_a_count_sent_as_text_or_a_whole_float_is_read_as_its_number(
    given_value: object, count: int
) -> None:
    parsed = parse_job_summary(summary(ObjectiveStatusCounters={"Succeeded": given_value}))

    assert dict(parsed_job(parsed).objective_counts) == {"Succeeded": count}
    assert parsed.invalid_fields == ()


@pytest.mark.parametrize(
    "limits", ["twenty", ["MaxNumberOfTrainingJobs"], {"MaxParallelTrainingJobs": "four"}]
)
def test_unusable_limits_are_left_out_and_counted(limits: object) -> None:
    parsed = parse_job_summary(summary(ResourceLimits=limits))

    job = parsed_job(parsed)
    assert (job.max_training_jobs, job.max_parallel_training_jobs) == (None, None)
    assert parsed.invalid_fields == ("ResourceLimits",)


def test_counters_that_are_not_an_object_are_left_out_and_counted() -> None:
    parsed = parse_job_summary(summary(TrainingJobStatusCounters=None, ObjectiveStatusCounters=5))

    job = parsed_job(parsed)
    assert (dict(job.training_job_counts), dict(job.objective_counts)) == ({}, {})
    assert parsed.invalid_fields == ("TrainingJobStatusCounters", "ObjectiveStatusCounters")


def test_unpaired_surrogates_become_replacement_characters_so_the_text_encodes() -> None:
    parsed = parse_job_summary(
        summary(HyperParameterTuningJobName="a\ud800b", Strategy="\udfffEvolutionary")
    )

    job = parsed_job(parsed)
    assert (job.name, job.strategy) == ("a\ufffdb", "\ufffdEvolutionary")
    job.name.encode()


def test_problems_add_up_by_reason_and_field() -> None:
    parsed = [
        parse_job_summary({}),
        parse_job_summary(summary(HyperParameterTuningJobName=3)),
        parse_job_summary(summary(CreationTime=None)),
        parse_job_summary(summary(CreationTime="x", Strategy=None)),
    ]

    problems = SummaryProblems.of(parsed) + SummaryProblems.of(parsed[:1])

    assert dict(problems.skipped) == {"missing_name": 2, "invalid_name": 1}
    assert dict(problems.invalid_fields) == {"CreationTime": 2, "Strategy": 1}


ODD_CHARACTERS = st.sampled_from(
    [
        '"',
        "\\",
        "\n",
        "\r",
        "\t",
        "\x00",
        "\ud800",
        "\udfff",
        "\u2028",
        "名",
        "é",
        "{",
        "}",
        "=",
        ",",
    ]
)
ODD_TEXT = st.text(st.one_of(st.characters(), ODD_CHARACTERS), max_size=40)
ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    ODD_TEXT,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
TIMESTAMPS = st.one_of(
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),  # naive, as a stub or a careless caller could pass
    ANYTHING,
)


def counters(keys: tuple[str, ...]) -> st.SearchStrategy[object]:
    counts = st.one_of(st.integers(min_value=-3, max_value=10**13), ANYTHING)
    return st.one_of(st.dictionaries(st.sampled_from(keys), counts), ANYTHING)


SUMMARIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "HyperParameterTuningJobName": st.one_of(
                ODD_TEXT, st.just("n" * 10_000 + '"\\\n\x00\ud800'), ANYTHING
            ),
            "HyperParameterTuningJobArn": st.one_of(st.just(ARN), ODD_TEXT, ANYTHING),
            "HyperParameterTuningJobStatus": st.one_of(
                st.sampled_from(["Completed", "InProgress", "Stopping", "Pausing"]), ANYTHING
            ),
            "Strategy": st.one_of(st.sampled_from(["Bayesian", "Evolutionary"]), ANYTHING),
            "CreationTime": TIMESTAMPS,
            "LastModifiedTime": TIMESTAMPS,
            "HyperParameterTuningEndTime": TIMESTAMPS,
            "TrainingJobStatusCounters": counters(TRAINING_JOB_STATUSES),
            "ObjectiveStatusCounters": counters(OBJECTIVE_STATUSES),
            "ResourceLimits": counters(
                ("MaxNumberOfTrainingJobs", "MaxParallelTrainingJobs", "MaxRuntimeInSeconds")
            ),
        },
    ),
    ANYTHING,
)


@DETERMINISTIC
@given(SUMMARIES)
def test_any_summary_parses_into_a_job_of_usable_values_or_a_counted_skip(raw: object) -> None:
    parsed = parse_job_summary(raw)

    assert set(parsed.invalid_fields) <= set(INVALID_FIELDS)
    if parsed.job is None:
        assert parsed.skip_reason in SKIP_REASONS
        return
    job = parsed.job
    assert parsed.skip_reason is None
    for text in (job.name, job.arn, job.account, job.status, job.strategy):
        assert isinstance(text, str)
        text.encode()  # raises on anything no exposition can carry
    assert job.name
    for moment in (job.creation_time, job.last_modified_time, job.end_time):
        assert moment is None or (isinstance(moment, float) and math.isfinite(moment))
    for counts, keys in (
        (job.training_job_counts, TRAINING_JOB_STATUSES),
        (job.objective_counts, OBJECTIVE_STATUSES),
    ):
        assert set(counts) <= set(keys)
        assert all(type(count) is int and count >= 0 for count in counts.values())
    for limit in (job.max_training_jobs, job.max_parallel_training_jobs, job.max_runtime_seconds):
        assert limit is None or (type(limit) is int and limit >= 0)


@DETERMINISTIC
@given(st.lists(SUMMARIES, max_size=12), st.integers(min_value=0, max_value=4))
def test_retention_places_jobs_whatever_times_they_lack(raw: list[object], cap: int) -> None:
    jobs = [p.job for p in map(parse_job_summary, raw) if p.job is not None]

    published = select_published_jobs(
        jobs, now=CREATED.timestamp(), retention_seconds=7 * 86400, max_jobs=cap
    )

    assert len(published.jobs) == min(cap, len(jobs) - published.hidden_by_retention)
    assert len(published.jobs) + published.hidden_by_retention + published.hidden_by_limit == len(
        jobs
    )


NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


def test_should_parse_every_field_of_a_summary(sagemaker: SageMakerTestServer) -> None:
    sagemaker.add_job(
        "eu-west-1",
        "xgb-1",
        status="InProgress",
        strategy="Hyperband",
        training={
            "Completed": 3,
            "InProgress": 2,
            "RetryableError": 1,
            "NonRetryableError": 4,
            "Stopped": 0,
        },
        objective={"Succeeded": 3, "Pending": 2, "Failed": 5},
        limits={
            "MaxNumberOfTrainingJobs": 50,
            "MaxParallelTrainingJobs": 5,
            "MaxRuntimeInSeconds": 7200,
        },
        created=at("2026-11-01T10:00:00.250"),
        modified=at("2026-11-02T11:30:00"),
    )

    (job,) = list_full(sagemaker_client(sagemaker), JobFilters(), now=NOW).jobs

    assert job.name == "xgb-1"
    assert job.arn == "arn:aws:sagemaker:eu-west-1:123456789012:hyper-parameter-tuning-job/xgb-1"
    assert job.account == "123456789012"
    assert (job.status, job.strategy) == ("InProgress", "Hyperband")
    assert job.creation_time == epoch("2026-11-01T10:00:00.250")
    assert job.last_modified_time == epoch("2026-11-02T11:30:00")
    assert job.end_time is None
    assert dict(job.training_job_counts) == {
        "Completed": 3,
        "InProgress": 2,
        "RetryableError": 1,
        "NonRetryableError": 4,
        "Stopped": 0,
    }
    assert dict(job.objective_counts) == {"Succeeded": 3, "Pending": 2, "Failed": 5}
    assert (job.max_training_jobs, job.max_parallel_training_jobs, job.max_runtime_seconds) == (
        50,
        5,
        7200,
    )


def test_should_leave_absent_resource_limits_unset(sagemaker: SageMakerTestServer) -> None:
    sagemaker.add_job("eu-west-1", "sparse", limits={"MaxNumberOfTrainingJobs": 8})

    (job,) = list_full(sagemaker_client(sagemaker), JobFilters(), now=NOW).jobs

    assert (job.max_training_jobs, job.max_parallel_training_jobs, job.max_runtime_seconds) == (
        8,
        None,
        None,
    )
