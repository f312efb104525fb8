"""Demo mode, run as a real process: about 30 jobs over 2 regions, every status and strategy, moving.

With ``--config.file``, the file's settings apply to the demo's account, and SIGHUP reads it again.
In process, driven step by step, the demo's server answers ListTrainingJobsForHyperParameterTuningJob
with training jobs that agree with their tuning jobs' counters, and fail for every kind of reason.
"""

from __future__ import annotations

import itertools
import math
import re
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.sagemaker.models import sagemaker_backends

from exporter.demo import DEMO_ACCOUNT, DEMO_REGIONS, DemoSageMaker
from tests.conftest import ROOT
from tests.expected import STATUSES, STRATEGIES, samples, value
from tests.polling import wait_until
from tests.processes import free_port, start_exporter, stop_with_sigterm, wait_for

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

# No AWS variable or file reaches the demo: it must need none.
BARE_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return str(response.read().decode())


def training_job_values(text: str) -> dict[object, float]:
    return {
        key: number
        for key, number in samples(text).items()
        if key[0] == "sagemaker_tuning_job_training_jobs"
    }


def test_demo_serves_moving_numbers_without_an_aws_account() -> None:
    port = free_port()
    process = start_exporter("--demo", port=port, env=BARE_ENVIRONMENT)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(f"{url}/-/ready", timeout=60), "demo did not become ready"
        first = scrape(url)

        def moved() -> str | None:
            text = scrape(url)
            return text if training_job_values(text) != training_job_values(first) else None

        later = wait_until(moved, timeout=60, interval=1, message="the demo's numbers to move")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)

    jobs = {
        key: number for key, number in samples(first).items() if key[0] == "sagemaker_tuning_jobs"
    }
    assert 25 <= sum(jobs.values()) <= 35
    assert {dict(labels)["region"] for (_, labels), n in jobs.items() if n} == {
        "us-east-1",
        "eu-west-1",
    }
    assert {dict(labels)["status"] for (_, labels), n in jobs.items() if n} == set(STATUSES)
    assert {dict(labels)["strategy"] for (_, labels), n in jobs.items() if n} == set(STRATEGIES)
    assert value(first, "sagemaker_tuning_exporter_up", region="us-east-1") == 1
    assert training_job_values(later) != training_job_values(first), (
        "demo numbers did not move in 60s"
    )
    assert process.returncode == 0
    assert "Traceback" not in stderr


def run_demo_once(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m exporter --demo --once ARGS`` in ``cwd``, without any AWS setting."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--demo", "--once", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=BARE_ENVIRONMENT,
        check=False,
    )


def job_statuses(text: str, family: str) -> set[str]:
    """The status labels of ``family``'s samples that are not 0."""
    return {
        dict(labels)["status"]
        for (name, labels), number in samples(text).items()
        if name == family and number
    }


def tag_labels(text: str) -> set[str]:
    return {
        label
        for (name, labels), _ in samples(text).items()
        if name == "sagemaker_tuning_job_tags"
        for label, _ in labels
        if label.startswith("tag_")
    }


def test_demo_applies_the_config_file_given_with_it(tmp_path: Path) -> None:
    config = tmp_path / "demo.yaml"
    # The regions, accounts and endpoint are the demo's whatever the file says.
    config.write_text(
        "regions: [ap-southeast-2]\n"
        "aws:\n  endpoint_url: http://127.0.0.1:9\n  profile: nobody\n"
        "accounts:\n  - role_arn: arn:aws:iam::111111111111:role/reader\n"
        "discovery:\n  organizations:\n    role_name: reader\n"
        "filters:\n  statuses: [Completed]\n"
        "tags: [team]\n"
    )

    result = run_demo_once("--config.file", str(config))

    assert result.returncode == 0, result.stderr
    assert job_statuses(result.stdout, "sagemaker_tuning_jobs") == {"Completed"}
    assert job_statuses(result.stdout, "sagemaker_tuning_job_tags") == {"Completed"}
    assert tag_labels(result.stdout) == {"tag_team"}
    for region in ("us-east-1", "eu-west-1"):
        assert value(result.stdout, "sagemaker_tuning_exporter_up", region=region) == 1


def test_demo_without_the_flag_reads_no_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("regions: [Europe]\n")

    demo = run_demo_once(cwd=tmp_path)
    check = subprocess.run(
        [sys.executable, "-m", "exporter", "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )

    assert demo.returncode == 0, demo.stderr
    assert job_statuses(demo.stdout, "sagemaker_tuning_jobs") == set(STATUSES)
    assert tag_labels(demo.stdout) == {"tag_team", "tag_project"}
    assert check.returncode == 2
    assert "config.yaml:1: regions[0]: expected an AWS region" in check.stderr


def test_demo_refuses_a_broken_config_file_with_exit_code_2_and_no_traceback(
    tmp_path: Path,
) -> None:
    config = tmp_path / "demo.yaml"
    config.write_text("regions: [us-east-1]\nfilters:\n  statuses: [Running]\n")

    result = run_demo_once("--config.file", str(config))

    assert result.returncode == 2
    assert result.stderr == (
        f"sagemaker-tuning-exporter: configuration error: {config}:3: filters.statuses[0]: "
        "expected one of Completed, DeleteFailed, Deleting, Failed, InProgress, Stopped, "
        "Stopping, got 'Running'\n"
    )
    assert result.stdout == ""


def test_demo_reads_its_config_file_again_on_sighup(tmp_path: Path) -> None:
    config = tmp_path / "demo.yaml"
    config.write_text("regions: [us-east-1]\nfilters:\n  statuses: [Completed]\n")
    port = free_port()
    process = start_exporter(
        "--demo", "--config.file", str(config), port=port, env=BARE_ENVIRONMENT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(f"{url}/-/ready", timeout=60), "demo did not become ready"
        before = scrape(url)
        config.write_text("regions: [us-east-1]\nfilters:\n  statuses: [Failed, Stopped]\n")
        process.send_signal(signal.SIGHUP)

        def reloaded() -> str | None:
            text = scrape(url)
            return (
                text
                if job_statuses(text, "sagemaker_tuning_jobs") == {"Failed", "Stopped"}
                else None
            )

        after = wait_until(
            reloaded, timeout=60, interval=0.5, message="the reloaded filter to apply"
        )
        stderr = stop_with_sigterm(process)
    finally:
        if process.poll() is None:
            process.kill()

    assert job_statuses(before, "sagemaker_tuning_jobs") == {"Completed"}
    assert job_statuses(after, "sagemaker_tuning_job_creation_timestamp_seconds") == {
        "Failed",
        "Stopped",
    }
    assert f"reloading the configuration from {config}" in stderr
    assert process.returncode == 0


@pytest.mark.parametrize("disabled", [False, True], ids=["default", "disabled"])
def test_demo_once_prints_the_exporter_process_metrics_unless_disabled(disabled: bool) -> None:
    flags = ["--web.disable-exporter-metrics"] if disabled else []

    result = run_demo_once(*flags)

    assert result.returncode == 0, result.stderr
    assert value(result.stdout, "sagemaker_tuning_exporter_up", region="us-east-1") == 1
    assert ("\nprocess_resident_memory_bytes " in result.stdout) is not disabled
    assert ("\npython_info{" in result.stdout) is not disabled


# ListTrainingJobsForHyperParameterTuningJob, as the demo's server answers it.

TRAINING_COUNTER_KEYS = (
    "Completed",
    "InProgress",
    "RetryableError",
    "NonRetryableError",
    "Stopped",
)
OBJECTIVE_COUNTER_KEYS = ("Succeeded", "Pending", "Failed")
FAILURE_CATEGORIES = (
    "AlgorithmError",
    "ClientError",
    "CapacityError",
    "InternalServerError",
    "ResourceLimitExceeded",
)
# A training job's status -> the TrainingJobStatusCounters key it counts under, Failed apart.
COUNTED_AS = {"Completed": "Completed", "InProgress": "InProgress", "Stopping": "InProgress"}
COUNTED_AS["Stopped"] = "Stopped"


@pytest.fixture
def demo() -> Iterator[DemoSageMaker]:
    """The demo's server, seeded; it takes a step only when the test calls ``advance()``."""
    demo = DemoSageMaker(step_seconds=3600)
    demo.start()
    try:
        yield demo
    finally:
        demo.stop()
        # The demo shares moto's in-process backends with the test server: empty them.
        for region in DEMO_REGIONS:
            sagemaker_backends[DEMO_ACCOUNT][region].hyper_parameter_tuning_jobs.clear()


def demo_client(demo: DemoSageMaker, region: str, *, validate: bool = True) -> SageMakerClient:
    """A client of the demo's server that does not retry; ``validate=False`` lets it send what
    botocore would refuse to."""
    return boto3.client(
        "sagemaker",
        endpoint_url=demo.endpoint_url,
        region_name=region,
        aws_access_key_id="demo-placeholder",
        aws_secret_access_key="demo-placeholder",  # noqa: S106 - not a secret
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"}, parameter_validation=validate
        ),
    )


def training_job_pages(
    client: SageMakerClient, tuning_job_name: str, **request: Any
) -> list[list[dict[str, Any]]]:
    """Every page of a tuning job's training jobs, following NextToken to the end."""
    pages: list[list[dict[str, Any]]] = []
    request = {"HyperParameterTuningJobName": tuning_job_name, **request}
    while True:
        page = client.list_training_jobs_for_hyper_parameter_tuning_job(**request)
        pages.append([dict(summary) for summary in page["TrainingJobSummaries"]])
        if not page.get("NextToken"):
            return pages
        request["NextToken"] = page["NextToken"]


def tuning_jobs(client: SageMakerClient) -> dict[str, dict[str, Any]]:
    """Every tuning job of the client's region, described, by name."""
    summaries = client.list_hyper_parameter_tuning_jobs(MaxResults=100)[
        "HyperParameterTuningJobSummaries"
    ]
    return {
        summary["HyperParameterTuningJobName"]: dict(
            client.describe_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=summary["HyperParameterTuningJobName"]
            )
        )
        for summary in summaries
    }


def counted(summaries: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """The TrainingJobStatusCounters and ObjectiveStatusCounters the summaries add up to: a
    Failed training job is a RetryableError if an internal error failed it, as SageMaker
    retries only those, else a NonRetryableError; a Stopping one still counts as InProgress."""
    training: Counter[str] = Counter()
    for summary in summaries:
        status = summary["TrainingJobStatus"]
        if status == "Failed":
            reason = summary.get("FailureReason", "")
            retryable = reason.startswith("InternalServerError")
            training["RetryableError" if retryable else "NonRetryableError"] += 1
        else:
            training[COUNTED_AS[status]] += 1
    objective = Counter(summary.get("ObjectiveStatus") for summary in summaries)
    return (
        {key: training[key] for key in TRAINING_COUNTER_KEYS},
        {key: objective[key] for key in OBJECTIVE_COUNTER_KEYS},
    )


def failure_category(summary: dict[str, Any]) -> str | None:
    """A failed training job's FailureReason category; Other for any other text, None for none."""
    if "FailureReason" not in summary:
        return None
    word = summary["FailureReason"].split(":", 1)[0]
    return word if word in FAILURE_CATEGORIES else "Other"


def definition_names(described: dict[str, Any]) -> set[str]:
    return {
        definition["DefinitionName"] for definition in described.get("TrainingJobDefinitions", [])
    }


def check_training_jobs_agree_with(
    name: str, described: dict[str, Any], summaries: list[dict[str, Any]]
) -> None:
    """The summaries of tuning job ``name``'s training jobs agree with its description."""
    assert counted(summaries) == (
        described["TrainingJobStatusCounters"],
        described["ObjectiveStatusCounters"],
    ), name
    objective = described["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    names = definition_names(described)
    for summary in summaries:
        assert re.fullmatch(rf"{name}-\d{{3}}-[0-9a-f]{{8}}", summary["TrainingJobName"])
        assert summary["TuningJobName"] == name
        assert summary["TunedHyperParameters"]
        status = summary["TrainingJobStatus"]
        ended = status in ("Completed", "Failed", "Stopped")
        assert ("TrainingEndTime" in summary) is ended, summary
        if names:
            assert summary["TrainingJobDefinitionName"] in names
        else:
            assert "TrainingJobDefinitionName" not in summary
        if status == "Completed":
            assert (
                summary["FinalHyperParameterTuningJobObjectiveMetric"]["Type"]
                == (objective["Type"])
            )
            assert (
                summary["FinalHyperParameterTuningJobObjectiveMetric"]["MetricName"]
                == (objective["MetricName"])
            )
            assert summary["ObjectiveStatus"] == "Succeeded"
        else:
            assert "FinalHyperParameterTuningJobObjectiveMetric" not in summary
        if status != "Failed":
            assert "FailureReason" not in summary
        if failure_category(summary) in ("CapacityError", "ResourceLimitExceeded"):
            # No instances, no training: it never started.
            assert "TrainingStartTime" not in summary
    best = described.get("BestTrainingJob")
    values = [
        summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        for summary in summaries
        if summary["TrainingJobStatus"] == "Completed"
    ]
    if not values:
        assert best is None, name
        return
    assert best is not None
    (listed,) = [s for s in summaries if s["TrainingJobName"] == best["TrainingJobName"]]
    assert best == listed
    top = max(values) if objective["Type"] == "Maximize" else min(values)
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == top


def test_the_demo_lists_a_tuning_jobs_training_jobs_in_pages_as_its_counters_count_them(
    demo: DemoSageMaker,
) -> None:
    for _ in range(3):
        demo.advance()
    client = demo_client(demo, "eu-west-1")
    described = tuning_jobs(client)
    # The tuning job with the most training jobs: more than a page of 10.
    name = max(described, key=lambda job: sum(described[job]["TrainingJobStatusCounters"].values()))

    pages = training_job_pages(client, name)
    by_creation = training_job_pages(
        client, name, SortBy="CreationTime", SortOrder="Descending", MaxResults=100
    )

    summaries = [summary for page in pages for summary in page]
    total = sum(described[name]["TrainingJobStatusCounters"].values())
    assert total > 10
    assert [len(page) for page in pages] == [10] * (total // 10) + (
        [total % 10] if total % 10 else []
    )
    names = [summary["TrainingJobName"] for summary in summaries]
    assert names == sorted(set(names))
    check_training_jobs_agree_with(name, described[name], summaries)
    (newest_first,) = by_creation
    assert [summary["CreationTime"] for summary in newest_first] == sorted(
        (summary["CreationTime"] for summary in summaries), reverse=True
    )


def test_the_demos_status_filter_applies_to_the_page_after_it_is_cut_as_aws_reads_it(
    demo: DemoSageMaker,
) -> None:
    client = demo_client(demo, "us-east-1")
    described = tuning_jobs(client)
    name = max(described, key=lambda job: described[job]["TrainingJobStatusCounters"]["Completed"])
    total = sum(described[name]["TrainingJobStatusCounters"].values())

    filtered = training_job_pages(client, name, StatusEquals="Completed", MaxResults=3)

    assert len(filtered) == math.ceil(total / 3)
    assert all(len(page) <= 3 for page in filtered)
    completed = [summary for page in filtered for summary in page]
    assert {summary["TrainingJobStatus"] for summary in completed} == {"Completed"}
    assert len(completed) == described[name]["TrainingJobStatusCounters"]["Completed"]


def test_the_demo_refuses_a_forged_token_and_a_page_too_large_and_knows_no_other_job(
    demo: DemoSageMaker,
) -> None:
    client = demo_client(demo, "us-east-1", validate=False)
    name = next(iter(tuning_jobs(client)))

    for request, code in (
        ({"HyperParameterTuningJobName": name, "NextToken": "forged"}, "ValidationException"),
        ({"HyperParameterTuningJobName": name, "MaxResults": 101}, "ValidationException"),
        ({"HyperParameterTuningJobName": name, "SortBy": "Size"}, "ValidationException"),
        ({"HyperParameterTuningJobName": "missing"}, "ResourceNotFound"),
    ):
        with pytest.raises(ClientError) as raised:
            client.list_training_jobs_for_hyper_parameter_tuning_job(**request)

        assert raised.value.response["Error"]["Code"] == code, request
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_the_demos_training_jobs_fail_for_every_kind_of_reason_and_run_on_every_kind_of_definition(
    demo: DemoSageMaker,
) -> None:
    for _ in range(5):
        demo.advance()
    categories: Counter[str | None] = Counter()
    layouts = set()
    for region in DEMO_REGIONS:
        client = demo_client(demo, region)
        for name, described in tuning_jobs(client).items():
            for page in training_job_pages(client, name, MaxResults=100):
                categories.update(
                    failure_category(s) for s in page if s["TrainingJobStatus"] == "Failed"
                )
            if "TrainingJobDefinition" in described:
                layouts.update(described["TrainingJobDefinition"])
            for definition in described.get("TrainingJobDefinitions", []):
                layouts.add(f"{len(described['TrainingJobDefinitions'])} named")
                layouts.update(definition)

    assert set(categories) == {*FAILURE_CATEGORIES, "Other", None}
    assert {"ResourceConfig", "HyperParameterTuningResourceConfig", "2 named"} <= layouts


def test_the_demos_counters_and_training_jobs_agree_step_after_step(demo: DemoSageMaker) -> None:
    clients = {region: demo_client(demo, region) for region in DEMO_REGIONS}
    seen: list[dict[tuple[str, str], dict[str, int]]] = []

    for _ in range(6):
        demo.advance()
        counters = {}
        for region, client in clients.items():
            for name, described in tuning_jobs(client).items():
                summaries = [
                    summary
                    for page in training_job_pages(client, name, MaxResults=100)
                    for summary in page
                ]
                check_training_jobs_agree_with(name, described, summaries)
                counters[(region, name)] = described["TrainingJobStatusCounters"]
        seen.append(counters)

    assert all(earlier != later for earlier, later in itertools.pairwise(seen))
