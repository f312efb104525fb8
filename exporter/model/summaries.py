"""ListHyperParameterTuningJobs summaries parsed into :class:`TuningJob` records, leniently.

One malformed summary never costs its page: a summary without a usable name is skipped,
and an unusable field is left out of its job; both are counted by reason.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from exporter.model.jobs import TuningJob, account_from_arn
from exporter.model.statuses import OBJECTIVE_STATUSES, TRAINING_JOB_STATUSES

# Why a whole summary can be skipped: without a name a job has no identity to publish under.
SKIP_REASONS = ("missing_name", "invalid_name")
# The fields whose unusable values are left out of an otherwise published job, by API name.
INVALID_FIELDS = (
    "HyperParameterTuningJobArn",
    "HyperParameterTuningJobStatus",
    "Strategy",
    "CreationTime",
    "LastModifiedTime",
    "HyperParameterTuningEndTime",
    "TrainingJobStatusCounters",
    "ObjectiveStatusCounters",
    "ResourceLimits",
)
# Code points that cannot be encoded in UTF-8, so in no exposition: unpaired UTF-16 halves,
# which JSON's \ud800 escapes can carry into Python strings.
_LONE_SURROGATES = re.compile("[\ud800-\udfff]")
_ACCOUNT_ID = re.compile(r"\d{12}")


@dataclass(frozen=True)
class SummaryProblems:
    """What the listings could not use: summaries skipped by reason, fields left out by field."""

    skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    invalid_fields: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def __add__(self, other: SummaryProblems) -> SummaryProblems:
        return SummaryProblems(
            _sum_counts(self.skipped, other.skipped),
            _sum_counts(self.invalid_fields, other.invalid_fields),
        )

    @classmethod
    def of(cls, parsed: Iterable[ParsedSummary]) -> SummaryProblems:
        """The problems of a set of parsed summaries."""
        skipped: Counter[str] = Counter()
        invalid: Counter[str] = Counter()
        for summary in parsed:
            if summary.skip_reason is not None:
                skipped[summary.skip_reason] += 1
            invalid.update(summary.invalid_fields)
        return cls(MappingProxyType(dict(skipped)), MappingProxyType(dict(invalid)))


def _sum_counts(first: Mapping[str, int], second: Mapping[str, int]) -> Mapping[str, int]:
    total = Counter(first)
    total.update(second)
    return MappingProxyType(dict(total))


@dataclass(frozen=True)
class ParsedSummary:
    """One summary parsed as far as its data allows.

    ``job`` is None when the summary was skipped, ``skip_reason`` (a SKIP_REASONS entry)
    saying why; ``invalid_fields`` are the INVALID_FIELDS entries left out of the job.
    """

    job: TuningJob | None
    skip_reason: str | None = None
    invalid_fields: tuple[str, ...] = ()


def parse_job_summary(summary: object) -> ParsedSummary:
    """Turn one HyperParameterTuningJobSummary (as boto3 returns it) into a :class:`TuningJob`.

    A summary without a usable name is skipped. Anything else the API left out or sent in
    a shape botocore does not check (a string where a number belongs, a null, a negative
    count, a timestamp botocore could not parse and passed on raw) is left out of the job
    and named in ``invalid_fields``. Optional fields that are merely absent (a running job's
    end time, a limit not set, a counter not reported) are not problems. Statuses and
    strategies this exporter does not know pass through as they are.

    >>> parsed = parse_job_summary({"HyperParameterTuningJobName": "a", "Strategy": "Evolutionary"})
    >>> parsed.job.strategy, parsed.invalid_fields[:2]
    ('Evolutionary', ('HyperParameterTuningJobArn', 'HyperParameterTuningJobStatus'))
    """
    if not isinstance(summary, Mapping):
        return ParsedSummary(None, "missing_name")
    name = summary.get("HyperParameterTuningJobName")
    if name is None or name == "":
        return ParsedSummary(None, "missing_name")
    if not isinstance(name, str):
        return ParsedSummary(None, "invalid_name")
    invalid: list[str] = []

    def required_text(key: str) -> str:
        text = _text(summary.get(key))
        if text is None:
            invalid.append(key)
        return text or ""

    def timestamp(key: str, required: bool) -> float | None:
        moment = summary.get(key)
        if moment is None:
            if required:
                invalid.append(key)
            return None
        seconds = epoch_seconds(moment)
        if seconds is None:
            invalid.append(key)
        return seconds

    arn = required_text("HyperParameterTuningJobArn")
    account = account_from_arn(arn)
    if arn and not _ACCOUNT_ID.fullmatch(account):
        invalid.append("HyperParameterTuningJobArn")
        account = ""
    status = required_text("HyperParameterTuningJobStatus")
    strategy = required_text("Strategy")
    creation_time = timestamp("CreationTime", required=True)
    last_modified_time = timestamp("LastModifiedTime", required=False)
    end_time = timestamp("HyperParameterTuningEndTime", required=False)
    training_job_counts = _counts(
        summary, "TrainingJobStatusCounters", TRAINING_JOB_STATUSES, invalid
    )
    objective_counts = _counts(summary, "ObjectiveStatusCounters", OBJECTIVE_STATUSES, invalid)
    limits = _limits(summary, invalid)
    job = TuningJob(
        name=_sanitised(name),
        arn=arn,
        account=account,
        status=status,
        strategy=strategy,
        creation_time=creation_time,
        last_modified_time=last_modified_time,
        end_time=end_time,
        training_job_counts=training_job_counts,
        objective_counts=objective_counts,
        max_training_jobs=limits.get("MaxNumberOfTrainingJobs"),
        max_parallel_training_jobs=limits.get("MaxParallelTrainingJobs"),
        max_runtime_seconds=limits.get("MaxRuntimeInSeconds"),
    )
    return ParsedSummary(job, None, tuple(dict.fromkeys(invalid)))


def _sanitised(text: str) -> str:
    """``text`` with unpaired surrogates replaced by U+FFFD, so that it encodes as UTF-8."""
    return _LONE_SURROGATES.sub("\ufffd", text)


def _text(value: object) -> str | None:
    """A non-empty string field, made encodable; None when absent or not a string."""
    if not isinstance(value, str) or not value:
        return None
    return _sanitised(value)


def _count(value: object) -> int | None:
    """A non-negative whole number, also from its decimal text; None when it is none."""
    if isinstance(value, bool):  # JSON true is no number, though Python's bool is an int
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    if not isinstance(value, int) or value < 0:
        return None
    return value


def _counts(
    summary: Mapping[str, Any], key: str, known: tuple[str, ...], invalid: list[str]
) -> Mapping[str, int]:
    """A counters object's known keys, in the API's order; botocore drops any others.

    A key the API left out has no entry; one with an unusable value has none either, and
    makes ``key`` invalid.
    """
    counters = summary.get(key)
    if not isinstance(counters, Mapping):
        invalid.append(key)
        return MappingProxyType({})
    counts = {}
    for name in known:
        if name not in counters:
            continue
        count = _count(counters[name])
        if count is None:
            invalid.append(key)
        else:
            counts[name] = count
    return MappingProxyType(counts)


def _limits(summary: Mapping[str, Any], invalid: list[str]) -> dict[str, int]:
    """The usable ResourceLimits; absent ones are simply not there."""
    limits = summary.get("ResourceLimits")
    if limits is None:
        return {}
    if not isinstance(limits, Mapping):
        invalid.append("ResourceLimits")
        return {}
    usable = {}
    for key in ("MaxNumberOfTrainingJobs", "MaxParallelTrainingJobs", "MaxRuntimeInSeconds"):
        if limits.get(key) is None:
            continue
        limit = _count(limits[key])
        if limit is None:
            invalid.append("ResourceLimits")
        else:
            usable[key] = limit
    return usable


def epoch_seconds(moment: object) -> float | None:
    """Seconds since the epoch of a parsed timestamp; None for anything botocore passed on raw."""
    if not isinstance(moment, datetime):
        return None
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
