"""One refresh of one target: list -> select -> tags -> describe -> assemble, under one guard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from exporter.aws.clients import SageMakerClients
from exporter.aws.counting import RequestCounter
from exporter.aws.operations import DESCRIBE_OPERATION, LIST_OPERATION, TAGGING_OPERATION
from exporter.config.settings import CacheSettings, DescribeSettings, ExporterConfig
from exporter.model.jobs import RegionSnapshot, Target
from exporter.refresh.pipeline import RefreshPipeline
from exporter.refresh.tags import TagCache
from tests.sagemaker_server import FaultRule, SageMakerTestServer

REGION = "eu-west-1"
TARGET = Target(region=REGION)


def pipeline_for(config: ExporterConfig) -> RefreshPipeline:
    """The pipeline the exporter would build from ``config``, tags and describes included."""
    clients = SageMakerClients(config.aws, RequestCounter())
    tag_cache = TagCache(config.tags, clients.tagging, config.cache.tags_ttl_seconds)
    return RefreshPipeline(config, clients, tag_cache=tag_cache)


def pipeline_config(make_config: Callable[..., ExporterConfig], **aws: object) -> ExporterConfig:
    config = make_config(
        regions=(REGION,),
        tags=("team",),
        # One describe at a time: the shared budget is counted request by request.
        describe=DescribeSettings(
            enabled=True, ttl_seconds=60, max_requests_per_refresh=10, concurrency=1
        ),
    )
    return replace(config, aws=replace(config.aws, **aws))  # type: ignore[arg-type]


def add_running_jobs(sagemaker: SageMakerTestServer, count: int) -> None:
    for index in range(count):
        sagemaker.add_job(
            REGION,
            f"job-{index}",
            status="InProgress",
            tags={"team": "search"},
            described={"BestTrainingJob": None},
        )


def test_a_refresh_runs_every_step_and_assembles_one_snapshot(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> None:
    add_running_jobs(sagemaker, 3)

    refreshed = pipeline_for(pipeline_config(make_config)).refresh(TARGET, None, None)

    snapshot = refreshed.snapshot
    assert snapshot.up is True
    assert [job.name for job in snapshot.published] == ["job-0", "job-1", "job-2"]
    assert {snapshot.tags.of(job)["team"] for job in snapshot.published} == {"search"}
    assert sorted(snapshot.descriptions) == ["job-0", "job-1", "job-2"]
    assert refreshed.listing is not None and refreshed.listing.full
    assert refreshed.listing.jobs is snapshot.jobs


def test_the_listing_the_tag_read_and_the_describes_share_one_retry_budget(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> None:
    add_running_jobs(sagemaker, 3)
    for operation in (LIST_OPERATION, TAGGING_OPERATION):
        sagemaker.add_fault(FaultRule(region=REGION, kind="throttle", operation=operation, times=1))
    sagemaker.add_fault(FaultRule(region=REGION, kind="throttle", operation=DESCRIBE_OPERATION))
    # Five attempts per call, but three retries for the whole refresh.
    config = pipeline_config(make_config, max_attempts=5, max_retries_per_refresh=3)

    refreshed = pipeline_for(config).refresh(TARGET, None, None)

    assert refreshed.snapshot.up is True
    assert sagemaker.received(REGION, LIST_OPERATION) == 2  # one retry spent
    assert sagemaker.received(REGION, TAGGING_OPERATION) == 2  # a second
    # The last retry goes to the first describe; with the budget spent, describing ends.
    # Budgets of their own would have let it make all five attempts.
    assert sagemaker.received(REGION, DESCRIBE_OPERATION) == 2
    assert refreshed.snapshot.descriptions == {}


def test_the_listing_the_tag_read_and_the_describes_share_one_deadline(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> None:
    add_running_jobs(sagemaker, 3)
    # The listing answers, but only after the refresh's whole deadline has passed.
    sagemaker.add_fault(
        FaultRule(region=REGION, kind="hang", operation=LIST_OPERATION, hang_seconds=1.2, times=1)
    )
    config = pipeline_config(make_config)
    config = replace(config, cache=CacheSettings(ttl_seconds=60, refresh_timeout_seconds=1.0))

    refreshed = pipeline_for(config).refresh(TARGET, None, None)

    assert [job.name for job in refreshed.snapshot.jobs] == ["job-0", "job-1", "job-2"]
    # The tag read and the describes found the deadline passed and sent nothing.
    assert sagemaker.received(REGION, TAGGING_OPERATION) == 0
    assert sagemaker.received(REGION, DESCRIBE_OPERATION) == 0
    assert refreshed.snapshot.descriptions == {}


def test_a_failed_listing_gives_a_down_snapshot_with_the_last_good_jobs(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> None:
    add_running_jobs(sagemaker, 2)
    pipeline = pipeline_for(pipeline_config(make_config))
    first = pipeline.refresh(TARGET, None, None)
    sagemaker.add_fault(FaultRule(region=REGION, kind="access_denied", operation=LIST_OPERATION))

    failed = pipeline.refresh(TARGET, first.snapshot, first.listing)

    assert failed.listing is None
    assert failed.snapshot.up is False
    assert failed.snapshot.jobs == first.snapshot.jobs
    assert failed.snapshot.refresh_failures == 1
    assert (
        failed.snapshot.error is not None
        and "ListHyperParameterTuningJobs" in failed.snapshot.error
    )
    assert sagemaker.received(REGION, TAGGING_OPERATION) == 1  # only the first refresh's


def test_the_listings_news_is_published_before_the_tags_and_describes_are_read(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> None:
    add_running_jobs(sagemaker, 2)
    pipeline = pipeline_for(pipeline_config(make_config))
    first = pipeline.refresh(TARGET, None, None)
    sagemaker.add_job(REGION, "job-new", status="InProgress", tags={"team": "search"})
    requests_before = (
        sagemaker.received(REGION, TAGGING_OPERATION),
        sagemaker.received(REGION, DESCRIBE_OPERATION),
    )
    published: list[tuple[RegionSnapshot, tuple[int, int]]] = []

    def publish(snapshot: RegionSnapshot) -> None:
        requests = (
            sagemaker.received(REGION, TAGGING_OPERATION),
            sagemaker.received(REGION, DESCRIBE_OPERATION),
        )
        published.append((snapshot, requests))

    final = pipeline.refresh(TARGET, first.snapshot, first.listing, publish).snapshot

    ((early, requests_then),) = published
    assert requests_then == requests_before  # nothing read yet but the listing
    assert sorted(job.name for job in early.published) == ["job-0", "job-1", "job-new"]
    # The last tags and descriptions, until the new ones come.
    assert early.tags is first.snapshot.tags
    assert early.descriptions is first.snapshot.descriptions
    assert "job-new" in final.descriptions
    # The early snapshot's jobs stay the final one's: its rendered lines are reused.
    assert final.published is early.published


def test_nothing_is_published_early_when_the_listing_is_all_a_refresh_reads(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> None:
    add_running_jobs(sagemaker, 1)
    config = make_config(regions=(REGION,), describe=DescribeSettings(enabled=False))
    published: list[RegionSnapshot] = []

    pipeline = RefreshPipeline(config, SageMakerClients(config.aws, RequestCounter()))

    refreshed = pipeline.refresh(TARGET, None, None, published.append)

    assert published == []
    assert [job.name for job in refreshed.snapshot.jobs] == ["job-0"]
