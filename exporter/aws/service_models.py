"""botocore's service models, cut down to the operations the exporter calls.

botocore builds a client class with one method per operation of the service, every time
it creates a client: for SageMaker's hundreds of operations, about 900 KiB per client.
The exporter holds one SageMaker client per (account, region), so 800 targets held about
900 MiB of methods they never call. Clients built on :class:`CalledOperationsLoader` know
only the operations of :data:`CALLED_OPERATIONS` (a few KiB each); every shape stays, so
requests and responses are what the full model makes of them.

>>> loader = CalledOperationsLoader()
>>> sorted(loader.load_service_model("sagemaker", "service-2")["operations"])
['DescribeHyperParameterTuningJob', 'ListHyperParameterTuningJobs', 'ListTrainingJobsForHyperParameterTuningJob']
"""

from __future__ import annotations

import os
from typing import Any

import botocore.loaders

from exporter.aws.operations import (
    ASSUME_ROLE_OPERATION,
    DESCRIBE_OPERATION,
    LIST_OPERATION,
    TAGGING_OPERATION,
    TRAINING_JOBS_OPERATION,
)

# The operations each service's clients are built with, by botocore's service name.
CALLED_OPERATIONS: dict[str, frozenset[str]] = {
    "sagemaker": frozenset({LIST_OPERATION, DESCRIBE_OPERATION, TRAINING_JOBS_OPERATION}),
    "resourcegroupstaggingapi": frozenset({TAGGING_OPERATION}),
    "sts": frozenset({ASSUME_ROLE_OPERATION}),
}


class CalledOperationsLoader(botocore.loaders.Loader):
    """A botocore loader whose service models hold only the operations the exporter calls.

    Models of other services, and every other kind of data (endpoints, paginators), load
    as botocore ships them. Each cut model is made once and shared by every session.
    """

    def __init__(self, extra_search_paths: list[str] | None = None) -> None:
        super().__init__(extra_search_paths=extra_search_paths)
        self._cut_models: dict[tuple[str, str | None], dict[str, Any]] = {}

    def load_service_model(
        self, service_name: str, type_name: str, api_version: str | None = None
    ) -> Any:
        model = super().load_service_model(service_name, type_name, api_version)
        called = CALLED_OPERATIONS.get(service_name)
        if type_name != "service-2" or called is None:
            return model
        key = (service_name, api_version)
        cut = self._cut_models.get(key)
        if cut is None:
            operations = {name: op for name, op in model["operations"].items() if name in called}
            cut = self._cut_models[key] = {**model, "operations": operations}
        return cut


def create_loader(search_path_string: str | None) -> CalledOperationsLoader:
    """:func:`botocore.loaders.create_loader`, making a :class:`CalledOperationsLoader`.

    ``search_path_string`` is the session's ``data_path`` (``AWS_DATA_PATH``).
    """
    if search_path_string is None:
        return CalledOperationsLoader()
    paths = [
        os.path.expanduser(os.path.expandvars(path))
        for path in search_path_string.split(os.pathsep)
    ]
    return CalledOperationsLoader(extra_search_paths=paths)
