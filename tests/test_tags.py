"""Tuning-job tags as labels: read in bulk with GetResources, cached per target, served over HTTP."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import cast

import boto3
import pytest
from botocore.stub import Stubber
from prometheus_client import CollectorRegistry, exposition

from exporter.app import Exporter
from exporter.aws.clients import SageMakerClients
from exporter.aws.counting import RequestCounter
from exporter.aws.errors import PaginationError
from exporter.config.loading import parse_config
from exporter.config.settings import AccountSettings, AwsSettings, CacheSettings, ExporterConfig
from exporter.metrics import exposition as exporter_exposition
from exporter.metrics.collectors import (
    ExporterHealthCollector,
    JobCountCollector,
    JobTagsCollector,
    PerJobCollector,
    TagReadCollector,
)
from exporter.metrics.deflate import DeflatedText
from exporter.metrics.exposition import MetricsPage
from exporter.model.jobs import JobTags, RegionSnapshot, Target, TuningJob, tag_label_name
from exporter.refresh.tags import TagCache, read_job_tags
from exporter.web.server import ExporterServer
from tests.apps import create_app
from tests.conftest import ROOT, RunningExporter
from tests.expected import samples, value
from tests.factories import tuning_job
from tests.processes import free_port, start_exporter, wait_for
from tests.prometheus import query, require_binary, running_prometheus, wait_for_series
from tests.sagemaker_server import DEFAULT_ACCOUNT, FaultRule, SageMakerTestServer
from tests.test_exposition import ACCEPT_HEADERS

REGION = "eu-west-1"
TAG_KEYS = ("team", "project")
TAGS_TTL_SECONDS = 600.0
CACHE_TTL_SECONDS = 60.0


class FakeMonotonic:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def tags_config(make_config: Callable[..., ExporterConfig]) -> ExporterConfig:
    """One region, tags team and project, a cache TTL of a minute and a tags TTL of ten."""
    config = make_config(regions=(REGION,), tags=TAG_KEYS)
    return replace(
        config,
        cache=CacheSettings(ttl_seconds=CACHE_TTL_SECONDS, tags_ttl_seconds=TAGS_TTL_SECONDS),
    )


class ClockedExporter(RunningExporter):
    """An exporter on 127.0.0.1 whose refresh ages follow a :class:`FakeMonotonic`."""

    def __init__(self, exporter: Exporter, server: ExporterServer, clock: FakeMonotonic) -> None:
        super().__init__(exporter, server)
        self.clock = clock

    def scrape(self) -> str:
        """Scrape, starting the refreshes due, and scrape again once they ended: what they found.

        A scrape never waits for a refresh of a target that has a snapshot; the clock stands
        still meanwhile, so the second scrape starts none.
        """
        return self.refreshed_scrape()


@contextmanager
def clocked_exporter(config: ExporterConfig) -> Iterator[ClockedExporter]:
    clock = FakeMonotonic()
    exporter = Exporter(config, monotonic=clock)
    server = ExporterServer("127.0.0.1:0", create_app(exporter.cache, exporter.metrics_page))
    server.start()
    try:
        yield ClockedExporter(exporter, server, clock)
    finally:
        server.stop()
        exporter.cache.wait_idle(timeout=30)


def tag_series(text: str) -> dict[str, dict[str, str]]:
    """The labels of each sagemaker_tuning_job_tags series, by job name."""
    found = {}
    for (name, labels), number in samples(text).items():
        if name == "sagemaker_tuning_job_tags":
            assert number == 1
            label_map = dict(labels)
            found[label_map["job_name"]] = label_map
    return found


def labels_of(series: dict[str, object]) -> dict[str, str]:
    """The labels of one series of a Prometheus query result."""
    return cast("dict[str, str]", series["metric"])


def test_tag_keys_become_sanitized_label_names() -> None:
    assert tag_label_name("team") == "tag_team"
    assert tag_label_name("cost-center") == "tag_cost_center"
    assert tag_label_name("aws:cloudformation:stack-name") == "tag_aws_cloudformation_stack_name"
    assert tag_label_name("owner@corp.example/x y=1+2") == "tag_owner_corp_example_x_y_1_2"
    assert tag_label_name("équipe") == "tag__quipe"


def test_allowlisted_tags_become_labels_and_other_tags_do_not(
    sagemaker: SageMakerTestServer,
    tags_config: ExporterConfig,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    sagemaker.add_job(
        REGION,
        "xgb-churn",
        status="InProgress",
        tags={"team": "search", "project": "churn", "owner": "alice", "cost-center": "42"},
    )
    sagemaker.add_job(REGION, "bert-intent", tags={"team": "nlp"})
    sagemaker.add_job(REGION, "untagged-job", strategy="Random")
    sagemaker.add_job(REGION, "other-tags-only", tags={"owner": "bob"})

    series = tag_series(run_exporter(tags_config).scrape())

    assert series["xgb-churn"] == {
        "account": DEFAULT_ACCOUNT,
        "region": REGION,
        "job_name": "xgb-churn",
        "status": "InProgress",
        "strategy": "Bayesian",
        "tag_team": "search",
        "tag_project": "churn",
    }
    assert (series["bert-intent"]["tag_team"], series["bert-intent"]["tag_project"]) == ("nlp", "")
    for job in ("untagged-job", "other-tags-only"):
        assert (series[job]["tag_team"], series[job]["tag_project"]) == ("", "")
    assert set(series) == {"xgb-churn", "bert-intent", "untagged-job", "other-tags-only"}
    assert all(not name.startswith("tag_o") for labels in series.values() for name in labels)


def test_tags_are_matched_to_jobs_whatever_the_case_of_their_arns(
    sagemaker: SageMakerTestServer,
    tags_config: ExporterConfig,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    sagemaker.add_job(REGION, "Mixed-Case-Job", tags={"team": "vision"})
    sagemaker.write_tagging_arns_in_upper_case()

    series = tag_series(run_exporter(tags_config).scrape())

    assert series["Mixed-Case-Job"]["tag_team"] == "vision"


def test_only_published_jobs_get_a_tags_series(
    sagemaker: SageMakerTestServer,
    tags_config: ExporterConfig,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    sagemaker.add_job(REGION, "running", status="InProgress", tags={"team": "a"})
    sagemaker.add_job(REGION, "done", tags={"team": "b"})
    config = replace(tags_config, per_job_metrics=replace(tags_config.per_job_metrics, max_jobs=1))

    series = tag_series(run_exporter(config).scrape())

    assert set(series) == {"running"}


def test_tags_are_read_in_pages_of_100_once_per_tags_ttl_not_per_job(
    sagemaker: SageMakerTestServer, tags_config: ExporterConfig
) -> None:
    jobs = 250
    for index in range(jobs):
        sagemaker.add_job(REGION, f"job-{index:03d}", tags={"team": f"t{index % 3}"})
    with clocked_exporter(tags_config) as running:
        first = running.scrape()
        after_first = sagemaker.received(REGION, "GetResources")
        for _ in range(3):  # refreshes within the tags TTL list jobs but read no tags
            running.clock.advance(CACHE_TTL_SECONDS + 1)
            within_ttl = running.scrape()
        after_refreshes_within_ttl = sagemaker.received(REGION, "GetResources")
        running.clock.advance(TAGS_TTL_SECONDS)
        running.scrape()
        after_ttl = sagemaker.received(REGION, "GetResources")

    assert after_first == math.ceil(jobs / 100) == 3
    assert after_refreshes_within_ttl == after_first
    assert after_ttl == 2 * after_first
    assert len(tag_series(first)) == jobs
    assert tag_series(within_ttl)["job-007"]["tag_team"] == "t1"
    assert (
        value(within_ttl, "sagemaker_tuning_exporter_api_requests_total", operation="GetResources")
        == 3
    )
    requests = [json.loads(body) for body in sagemaker.request_bodies("GetResources")]
    assert [request.get("PaginationToken") for request in requests[:3]] == [None, "100", "200"]
    for request in requests:
        assert request["ResourcesPerPage"] == 100
        assert request["ResourceTypeFilters"] == ["sagemaker:hyper-parameter-tuning-job"]
        assert "TagFilters" not in request


def test_changed_tags_show_after_the_tags_ttl(
    sagemaker: SageMakerTestServer, tags_config: ExporterConfig
) -> None:
    sagemaker.add_job(REGION, "job-a", tags={"team": "before"})
    sagemaker.add_job(REGION, "job-b", tags={"team": "b"})
    with clocked_exporter(tags_config) as running:
        before = running.scrape()
        sagemaker.tag_job(REGION, "job-a", {"team": "after", "project": "p"})
        running.clock.advance(CACHE_TTL_SECONDS + 1)
        within_ttl = running.scrape()
        running.clock.advance(TAGS_TTL_SECONDS)
        after = running.scrape()

    assert tag_series(before)["job-a"]["tag_team"] == "before"
    assert tag_series(within_ttl)["job-a"]["tag_team"] == "before"
    assert (tag_series(after)["job-a"]["tag_team"], tag_series(after)["job-a"]["tag_project"]) == (
        "after",
        "p",
    )
    assert tag_series(after)["job-b"]["tag_team"] == "b"


def test_a_failing_tag_read_leaves_the_target_up_with_its_last_tags(
    sagemaker: SageMakerTestServer, tags_config: ExporterConfig
) -> None:
    sagemaker.add_job(REGION, "job-a", tags={"team": "search"})
    with clocked_exporter(tags_config) as running:
        first = running.scrape()
        sagemaker.add_fault(FaultRule(REGION, "access_denied", operation="GetResources"))
        sagemaker.add_job(REGION, "job-new", status="InProgress", tags={"team": "new"})
        running.clock.advance(TAGS_TTL_SECONDS + 1)
        during_failure = running.scrape()
        sagemaker.clear_faults()
        running.clock.advance(CACHE_TTL_SECONDS + 1)
        recovered = running.scrape()

    assert value(during_failure, "sagemaker_tuning_exporter_up", region=REGION) == 1
    assert tag_series(during_failure)["job-a"]["tag_team"] == "search"
    assert tag_series(during_failure)["job-new"]["tag_team"] == ""  # listed, tags not yet read
    assert (
        value(
            during_failure,
            "sagemaker_tuning_exporter_api_errors_total",
            operation="GetResources",
            error="access_denied",
        )
        == 1
    )
    assert value(
        during_failure,
        "sagemaker_tuning_exporter_tags_last_read_success_timestamp_seconds",
        region=REGION,
    ) == value(
        first,
        "sagemaker_tuning_exporter_tags_last_read_success_timestamp_seconds",
        region=REGION,
    )
    # A failed read is tried again on the next refresh, not a whole tags TTL later.
    assert tag_series(recovered)["job-new"]["tag_team"] == "new"


def test_a_tag_read_that_fails_first_gives_empty_labels_and_the_target_stays_up(
    sagemaker: SageMakerTestServer,
    tags_config: ExporterConfig,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    sagemaker.add_job(REGION, "job-a", tags={"team": "search"})
    sagemaker.add_fault(FaultRule(REGION, "server_error", operation="GetResources"))

    text = run_exporter(tags_config).scrape()

    assert value(text, "sagemaker_tuning_exporter_up", region=REGION) == 1
    assert tag_series(text)["job-a"]["tag_team"] == ""
    assert value(text, "sagemaker_tuning_exporter_tags_last_read_success_timestamp_seconds") is None
    # Three attempts (aws.max_attempts of the test config), each counted.
    assert (
        value(
            text,
            "sagemaker_tuning_exporter_api_errors_total",
            operation="GetResources",
            error="server_error",
        )
        == 3
    )


def test_tagging_metrics_start_at_zero_and_no_allowlist_means_no_tagging_call(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    tags_config: ExporterConfig,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    sagemaker.add_job(REGION, "job-a", tags={"team": "search"})

    without_tags = run_exporter(make_config(regions=(REGION,))).scrape()
    assert sagemaker.received(operation="GetResources") == 0
    sagemaker.reset()

    with_tags = Exporter(tags_config)
    text = b"".join(with_tags.metrics_page.render(None, accept_gzip=False).chunks).decode()

    assert "sagemaker_tuning_job_tags" not in without_tags
    assert "GetResources" not in without_tags
    assert "tags_last_read" not in without_tags
    assert (
        value(text, "sagemaker_tuning_exporter_api_requests_total", operation="GetResources") == 0
    )
    for kind in ("throttled", "access_denied", "server_error", "timeout"):
        assert (
            value(
                text,
                "sagemaker_tuning_exporter_api_errors_total",
                operation="GetResources",
                error=kind,
            )
            == 0
        )
    assert "# TYPE sagemaker_tuning_job_tags gauge" in text


def test_tag_cache_reads_again_only_after_its_ttl_and_keeps_unchanged_tags_identical(
    sagemaker: SageMakerTestServer,
) -> None:
    sagemaker.add_job(REGION, "job-a", tags={"team": "search", "owner": "x"})
    counter = RequestCounter()
    clients = SageMakerClients(AwsSettings(endpoint_url=sagemaker.url, max_attempts=1), counter)
    clock = FakeMonotonic()
    cache = TagCache(
        TAG_KEYS, clients.tagging, ttl_seconds=300, clock=lambda: 1_800_000_000.0, monotonic=clock
    )
    target = Target(region=REGION)
    arn = f"arn:aws:sagemaker:{REGION}:{DEFAULT_ACCOUNT}:hyper-parameter-tuning-job/job-a"

    first = cache.tags_of(target)
    clock.advance(299)
    within = cache.tags_of(target)
    clock.advance(1)
    reread = cache.tags_of(target)

    assert dict(first.by_arn) == {arn: {"team": "search"}}
    assert first.read_time == 1_800_000_000.0
    assert within is first
    assert reread.by_arn is first.by_arn
    assert counter.counts() == {(REGION, "GetResources"): 2}


def test_read_job_tags_pages_on_and_keeps_only_allowlisted_keys() -> None:
    client = boto3.client("resourcegroupstaggingapi", region_name=REGION)
    arn = "arn:aws:sagemaker:eu-west-1:111111111111:hyper-parameter-tuning-job/"
    request = {
        "ResourceTypeFilters": ["sagemaker:hyper-parameter-tuning-job"],
        "ResourcesPerPage": 100,
    }
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_resources",
            {
                "ResourceTagMappingList": [
                    {"ResourceARN": arn + "Job-A", "Tags": [{"Key": "team", "Value": "a"}]},
                    {"ResourceARN": arn + "job-b", "Tags": [{"Key": "owner", "Value": "x"}]},
                ],
                "PaginationToken": "page-2",
            },
            request,
        )
        stubber.add_response(
            "get_resources",
            {
                "ResourceTagMappingList": [
                    {
                        "ResourceARN": arn + "job-c",
                        "Tags": [
                            {"Key": "project", "Value": "p"},
                            {"Key": "Team", "Value": "wrong case"},
                        ],
                    }
                ],
                "PaginationToken": "",
            },
            {**request, "PaginationToken": "page-2"},
        )

        tags = read_job_tags(client, TAG_KEYS)

    assert tags == {arn.lower() + "job-a": {"team": "a"}, arn.lower() + "job-c": {"project": "p"}}


def test_read_job_tags_stops_when_a_pagination_token_repeats() -> None:
    client = boto3.client("resourcegroupstaggingapi", region_name=REGION)
    with Stubber(client) as stubber:
        for _ in range(2):
            stubber.add_response(
                "get_resources", {"ResourceTagMappingList": [], "PaginationToken": "same"}
            )

        with pytest.raises(PaginationError, match="same PaginationToken twice"):
            read_job_tags(client, TAG_KEYS)


def test_prometheus_joins_tags_onto_a_per_job_family_with_group_left(
    sagemaker: SageMakerTestServer, tmp_path: Path
) -> None:
    sagemaker.add_job(REGION, "xgb-churn", status="InProgress", tags={"team": "search"})
    sagemaker.add_job(REGION, "bert-intent", tags={"team": "nlp", "project": "intent"})
    sagemaker.add_job(REGION, "untagged")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"regions: [{REGION}]\naws:\n  endpoint_url: {sagemaker.url}\n"
        "cache:\n  ttl: 10m\ntags: [team, project]\n"
    )
    port = free_port()
    process = start_exporter("--config.file", str(config), port=port)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/-/ready", timeout=30)
        prometheus_config = tmp_path / "prometheus.yml"
        prometheus_config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: sagemaker-tuning\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            exposition_text = response.read()
        lint = subprocess.run(
            [require_binary("promtool"), "check", "metrics"],
            input=exposition_text,
            capture_output=True,
            check=False,
        )
        with running_prometheus(prometheus_config, tmp_path / "data") as prometheus:
            wait_for_series(prometheus, "sagemaker_tuning_job_tags", 3)
            joined = query(
                prometheus,
                "sagemaker_tuning_job_max_training_jobs"
                " * on(account, region, job_name) group_left(tag_team, tag_project)"
                " sagemaker_tuning_job_tags",
            )
            by_team = query(
                prometheus,
                "count by (tag_team) (sagemaker_tuning_job_tags)",
            )
    finally:
        process.terminate()
        process.wait(timeout=15)

    assert b'tag_project="intent",tag_team="nlp"} 1.0' in exposition_text
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, b"")
    assert {
        labels_of(series)["job_name"]: (
            labels_of(series).get("tag_team", ""),
            labels_of(series).get("tag_project", ""),
            series["value"][1],  # type: ignore[index]
        )
        for series in joined
    } == {
        "xgb-churn": ("search", "", "20"),
        "bert-intent": ("nlp", "intent", "20"),
        "untagged": ("", "", "20"),
    }
    assert {
        labels_of(series).get("tag_team", ""): series["value"][1]  # type: ignore[index]
        for series in by_team
    } == {"search": "1", "nlp": "1", "": "1"}


class TaggedPage:
    """A MetricsPage with the tags family over snapshots a test swaps, as app.Exporter builds it."""

    def __init__(self, snapshots: list[RegionSnapshot]) -> None:
        self.snapshots = snapshots
        requests = RequestCounter()
        requests.declare(REGION, "GetResources")
        counts = JobCountCollector(lambda: self.snapshots)
        health = ExporterHealthCollector(lambda: self.snapshots, requests)
        tag_reads = TagReadCollector(lambda: self.snapshots)
        self.full = CollectorRegistry()
        summary = CollectorRegistry()
        for collector in (
            PerJobCollector(lambda: self.snapshots),
            JobTagsCollector(lambda: self.snapshots, TAG_KEYS_SORTING_BETWEEN_JOB_LABELS),
            counts,
            health,
            tag_reads,
        ):
            self.full.register(collector)
        for collector in (counts, health, tag_reads):
            summary.register(collector)
        self.page = MetricsPage(
            lambda: list(self.snapshots),
            requests,
            summary,
            self.full,
            tag_keys=TAG_KEYS_SORTING_BETWEEN_JOB_LABELS,
        )

    def body(self, accept: str | None = None, accept_gzip: bool = False) -> bytes:
        response = self.page.render(accept, accept_gzip)
        body = b"".join(response.chunks)
        return gzip.decompress(body) if response.gzipped else body


# Sorted among themselves by label name, not in allowlist order; "tag_" sorts after "strategy".
TAG_KEYS_SORTING_BETWEEN_JOB_LABELS = ("team", "cost-center", "Project", "a:b")
EU = Target(region=REGION)
US = Target(
    region="us-east-1", role_arn="arn:aws:iam::222222222222:role/r", account_id="222222222222"
)


def tagged_snapshot(
    target: Target, jobs: tuple[TuningJob, ...], tags: dict[str, dict[str, str]]
) -> RegionSnapshot:
    by_arn = MappingProxyType({arn.lower(): MappingProxyType(t) for arn, t in tags.items()})
    return RegionSnapshot(
        target,
        target.account_id or "111111111111",
        jobs,
        True,
        1.0,
        0.5,
        published=jobs,
        tags=JobTags(by_arn, 1_795_000_000.5),
    )


ODD_TAGGED_JOBS = (
    tuning_job("plain", status="InProgress", max_training_jobs=5),
    tuning_job('quote"and\\backslash', max_training_jobs=5),
    tuning_job("new\nline"),
    tuning_job("ünïcode-名前"),
)
ODD_TAGS = {
    ODD_TAGGED_JOBS[0].arn.upper(): {"team": "search", "Project": "churn", "a:b": "x"},
    ODD_TAGGED_JOBS[1].arn: {"team": 'quote " and \\ back', "cost-center": "ünï 名前"},
    ODD_TAGGED_JOBS[2].arn: {"cost-center": "line\nbreak"},
}


@pytest.mark.parametrize("accept", ACCEPT_HEADERS)
def test_tags_family_renders_byte_for_byte_as_prometheus_client_does(accept: str | None) -> None:
    page = TaggedPage(
        [
            tagged_snapshot(EU, ODD_TAGGED_JOBS, ODD_TAGS),
            tagged_snapshot(US, (tuning_job("other", account="222222222222"),), {}),
        ]
    )
    encoder, _ = exposition.choose_encoder(accept or "")

    body = page.body(accept)

    assert body == encoder(page.full)
    assert page.body(accept, accept_gzip=True) == encoder(page.full)
    assert (
        b'sagemaker_tuning_job_tags{account="111111111111",job_name="plain",region="eu-west-1",'
        b'status="InProgress",strategy="Bayesian",tag_Project="churn",tag_a_b="x",'
        b'tag_cost_center="",tag_team="search"} 1.0\n'
    ) in body


def test_new_tags_render_the_tags_lines_again_and_leave_the_per_job_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs = tuple(tuning_job(f"job-{n}") for n in range(30))
    page = TaggedPage([tagged_snapshot(EU, jobs, {jobs[0].arn: {"team": "before"}})])
    before = page.body()
    rendered: list[str] = []
    render_target = exporter_exposition.render_target

    def counting_render_target(
        changed: RegionSnapshot,
    ) -> tuple[tuple[DeflatedText, ...], ...]:
        rendered.append(changed.target.region)
        return render_target(changed)

    monkeypatch.setattr(exporter_exposition, "render_target", counting_render_target)
    unchanged = page.snapshots[0]
    page.snapshots = [
        replace(
            unchanged,
            tags=JobTags(MappingProxyType({jobs[0].arn.lower(): {"team": "after"}}), 2.0),
        )
    ]

    after = page.body()

    assert b'tag_team="before"' in before
    assert b'tag_team="after"' in after
    assert b'tag_team="before"' not in after
    assert rendered == []
    assert after == exposition.generate_latest(page.full)


def test_tags_are_read_with_the_assumed_roles_credentials_in_its_account(
    sagemaker: SageMakerTestServer,
    tags_config: ExporterConfig,
    run_exporter: Callable[[ExporterConfig], RunningExporter],
) -> None:
    role_arn = "arn:aws:iam::111111111111:role/sagemaker-tuning-exporter"
    sagemaker.add_job(REGION, "watched", account="111111111111", tags={"team": "watched"})
    sagemaker.add_job(REGION, "ambient", tags={"team": "ambient"})

    text = run_exporter(replace(tags_config, accounts=(AccountSettings(role_arn),))).scrape()

    assert tag_series(text) == {
        "watched": {
            "account": "111111111111",
            "region": REGION,
            "job_name": "watched",
            "status": "Completed",
            "strategy": "Bayesian",
            "tag_team": "watched",
            "tag_project": "",
        }
    }


def test_config_reads_the_tag_allowlist_and_its_ttl() -> None:
    config = parse_config(
        "regions: [eu-west-1]\ncache:\n  tags_ttl: 30m\n"
        "tags: [team, cost-center, 'aws:cloudformation:stack-name', Project Name]\n"
    )

    assert config.tags == ("team", "cost-center", "aws:cloudformation:stack-name", "Project Name")
    assert config.cache.tags_ttl_seconds == 1800
    assert parse_config("regions: [eu-west-1]").cache.tags_ttl_seconds == 600


@pytest.mark.parametrize("text", ["tags: []", "tags:", ""])
def test_an_empty_or_absent_allowlist_disables_tags(text: str) -> None:
    assert parse_config(f"regions: [eu-west-1]\n{text}\n").tags == ()


def test_the_commented_example_keys_are_valid_once_uncommented() -> None:
    text = (ROOT / "config.example.yaml").read_text()
    uncommented = text.replace("# tags_ttl: 10m", "tags_ttl: 10m").replace(
        "# tags: [team, project]", "tags: [team, project]"
    )

    config = parse_config(uncommented)

    assert uncommented != text
    assert config.tags == ("team", "project")
    assert config.cache.tags_ttl_seconds == 600


def test_tags_family_header_shows_without_jobs_and_batches_read_as_one_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = TaggedPage([])
    monkeypatch.setattr(exporter_exposition, "RENDER_BATCH_JOBS", 3)
    jobs = tuple(tuning_job(f"job-{n}") for n in range(10))
    batched = TaggedPage([tagged_snapshot(EU, jobs, {jobs[4].arn: {"team": "t"}})])

    assert b"# TYPE sagemaker_tuning_job_tags gauge\n" in empty.body()
    assert empty.body() == exposition.generate_latest(empty.full)
    assert batched.body() == exposition.generate_latest(batched.full)
    assert batched.body().count(b"sagemaker_tuning_job_tags{") == 10
