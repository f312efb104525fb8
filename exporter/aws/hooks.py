"""botocore response hooks: one malformed job summary must not cost its whole listing page.

botocore checks few types while it parses a JSON response: a string where an integer
belongs passes through as it is, and :func:`exporter.model.summaries.parse_job_summary` copes with
that. Two things make botocore raise for the whole page, though, and so fail the refresh
of every job on it: a timestamp it cannot parse ("soon", an object, a year out of range)
and a value that should be a JSON object but is not (a summary, its counters, its
limits). The hooks here turn both into values that parse_job_summary leaves out and counts.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import botocore.session
from botocore.utils import parse_timestamp

from exporter.aws.operations import LIST_OPERATION

# The event botocore emits with the raw response of every listing page, before parsing it.
BEFORE_PARSE_LISTING = f"before-parse.sagemaker.{LIST_OPERATION}"
# Summary members that botocore parses as objects.
_OBJECT_MEMBERS = {
    "TrainingJobStatusCounters": "Completed",
    "ObjectiveStatusCounters": "Succeeded",
    "ResourceLimits": "MaxNumberOfTrainingJobs",
}
# Not a number, so parse_job_summary leaves out (and counts) the object it marks.
_UNUSABLE = "not a JSON object"
_HTTP_OK_END = 300


def lenient_timestamp(value: Any) -> datetime | Any:
    """botocore's timestamp parsing, but a value it cannot parse is passed on as it is."""
    if isinstance(value, bool):  # botocore would read JSON true as 1 second after the epoch
        return value
    try:
        return parse_timestamp(value)
    except (ValueError, TypeError, OverflowError, RuntimeError):
        return value


def repair_listing_shapes(**event: Any) -> None:
    """Rewrite a listing page's body so that botocore can parse it whatever its summaries hold.

    A summary that is not an object becomes an empty one (skipped for its missing name); a
    counters or limits value that is not an object becomes one whose only value is unusable
    (left out and counted). A body that is not a page of summaries is left to botocore.
    """
    response_dict: dict[str, Any] = event["response_dict"]
    if response_dict.get("status_code", 0) >= _HTTP_OK_END:
        return
    try:
        page = json.loads(response_dict["body"])
    except (ValueError, TypeError):
        return
    summaries = page.get("HyperParameterTuningJobSummaries") if isinstance(page, dict) else None
    if not isinstance(summaries, list):
        return
    changed = False
    for index, summary in enumerate(summaries):
        if not isinstance(summary, dict):
            summaries[index] = {}
            changed = True
            continue
        for member, first_key in _OBJECT_MEMBERS.items():
            value = summary.get(member)
            if value is not None and not isinstance(value, dict):
                summary[member] = {first_key: _UNUSABLE}
                changed = True
    if changed:
        response_dict["body"] = json.dumps(page).encode()


def install_response_hooks(session: botocore.session.Session) -> None:
    """Keep one malformed job summary from failing its whole listing page."""
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=lenient_timestamp
    )
    session.register(BEFORE_PARSE_LISTING, repair_listing_shapes)
