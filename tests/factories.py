"""Tuning-job records for tests that need no API: defaults for every field, overrides by keyword."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from exporter.model.jobs import TuningJob


def tuning_job(name: str, account: str = "111111111111", **fields: Any) -> TuningJob:
    """A Completed Bayesian job in eu-west-1 with no counters or limits, unless ``fields`` say so.

    Mappings given for ``training_job_counts`` or ``objective_counts`` are made read-only.
    """
    values: dict[str, Any] = {
        "name": name,
        "arn": f"arn:aws:sagemaker:eu-west-1:{account}:hyper-parameter-tuning-job/{name}",
        "account": account,
        "status": "Completed",
        "strategy": "Bayesian",
        "creation_time": 1_700_000_000.0,
        "last_modified_time": None,
        "end_time": None,
        "training_job_counts": {},
        "objective_counts": {},
        "max_training_jobs": None,
        "max_parallel_training_jobs": None,
        "max_runtime_seconds": None,
        **fields,
    }
    for key in ("training_job_counts", "objective_counts"):
        values[key] = MappingProxyType(dict(values[key]))
    return TuningJob(**values)
