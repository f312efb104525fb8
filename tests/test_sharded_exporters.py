"""Sharded exporters over real HTTP against moto: together they publish what one exporter does, each target once.

A real Prometheus scraping three shards answers the dashboard's queries as one scraping a single
exporter does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from exporter.app import Exporter, LiveExporter, targets_from_config
from exporter.config.loading import load_config
from exporter.config.settings import (
    AccountSettings,
    DiscoverySettings,
    ExporterConfig,
    OrganizationsDiscovery,
    TrainingJobsSettings,
)
from exporter.model.sharding import UNSHARDED, Shard
from tests.conftest import RunningExporter
from tests.expected import Samples, samples
from tests.organization import TestOrganization
from tests.polling import eventually
from tests.prometheus import query, scraping_every_second, wait_for_series
from tests.sagemaker_server import SageMakerTestServer
from tests.test_deploy_grafana import (
    ALL,
    BUILT_IN_VARIABLES,
    RULE_FILES,
    load_dashboard,
    panel_queries,
    substitute,
)

ACCOUNTS = tuple(digit * 12 for digit in "123456")
REGIONS = ("us-east-1", "eu-west-1", "us-west-2")
TARGET_LABELS = frozenset({"account", "region"})
# Families whose values are times of this run: their series must match, not their values.
TIMED_FAMILIES = frozenset(
    {
        "sagemaker_tuning_exporter_refresh_duration_seconds",
        "sagemaker_tuning_exporter_last_refresh_success_timestamp_seconds",
        "sagemaker_tuning_exporter_tags_last_read_success_timestamp_seconds",
    }
)
StartShard = Callable[[ExporterConfig, Shard], RunningExporter]
# The labels Prometheus gives each scraped pod.
POD_LABELS = frozenset({"instance", "pod"})
# Dashboard queries whose values are times of this run, which differ between exporters.
TIMED_QUERY_WORDS = ("time()", "refresh_duration_seconds", "elapsed")


@pytest.fixture
def run_shard(run_exporter: Callable[..., RunningExporter]) -> StartShard:
    """Start an exporter serving ``shard``'s targets on 127.0.0.1."""
    return lambda config, shard: run_exporter(config, shard=shard)


def organization_config(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> ExporterConfig:
    """Six accounts, reached by assuming a role in each, in three regions, with jobs in every one."""
    for number, account in enumerate(ACCOUNTS):
        for region in REGIONS:
            sagemaker.add_job(
                region,
                f"running-{account[0]}",
                account=account,
                status="InProgress",
                training={
                    "Completed": number,
                    "InProgress": 2,
                    "NonRetryableError": 1,
                    "RetryableError": 1,
                },
                tags={"team": f"team-{account[0]}"},
            )
            sagemaker.add_job(region, f"done-{account[0]}-{region}", account=account)
    return make_config(
        regions=REGIONS,
        accounts=tuple(
            AccountSettings(f"arn:aws:iam::{account}:role/reader") for account in ACCOUNTS
        ),
        tags=("team",),
    )


def scrape_refreshed(running: RunningExporter) -> Samples:
    running.exporter.cache.refresh_all(timeout=120)
    return samples(running.scrape())


def per_target(found: Samples) -> Samples:
    """The samples of the families labelled with a target's account and region."""
    return {
        (name, labels): number
        for (name, labels), number in found.items()
        if {label for label, _ in labels} >= TARGET_LABELS
    }


def targets_of(found: Samples) -> set[tuple[str, str]]:
    """The (account, region) pairs a scrape reports ``up`` for."""
    return {
        (dict(labels)["account"], dict(labels)["region"])
        for name, labels in found
        if name == "sagemaker_tuning_exporter_up"
    }


def test_three_shards_publish_each_target_once_and_together_what_one_exporter_publishes(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_shard: StartShard,
) -> None:
    config = organization_config(sagemaker, make_config)
    unsharded = scrape_refreshed(run_shard(config, UNSHARDED))
    shards = [scrape_refreshed(run_shard(config, Shard(index, 3))) for index in range(3)]

    owned = [targets_of(shard) for shard in shards]
    assert len(targets_of(unsharded)) == len(ACCOUNTS) * len(REGIONS)
    assert all(owned), "each of the 3 shards owns some of the 18 targets"
    assert sum(len(share) for share in owned) == len(targets_of(unsharded))
    assert set().union(*owned) == targets_of(unsharded)
    union: Samples = {}
    for shard in shards:
        series = per_target(shard)
        assert not set(series) & set(union), "a series published by two shards"
        union.update(series)
    expected = per_target(unsharded)
    assert set(union) == set(expected)
    assert {key: n for key, n in union.items() if key[0] not in TIMED_FAMILIES} == {
        key: n for key, n in expected.items() if key[0] not in TIMED_FAMILIES
    }
    for index, shard in enumerate(shards):
        info = {("shard", str(index)), ("total_shards", "3")}
        assert shard[("sagemaker_tuning_exporter_shard_info", frozenset(info))] == 1
        assert shard[("sagemaker_tuning_exporter_owned_targets", frozenset())] == len(owned[index])


def test_shards_count_requests_only_in_their_regions_and_together_as_many_as_one_exporter(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_shard: StartShard,
) -> None:
    config = organization_config(sagemaker, make_config)
    # Two accounts in three regions over four shards: some shard owns none of a region's targets.
    config = replace(config, accounts=config.accounts[:2])

    def requests(found: Samples) -> Counter[tuple[str, str]]:
        return Counter(
            {
                (dict(labels)["region"], dict(labels)["operation"]): int(number)
                for (name, labels), number in found.items()
                if name == "sagemaker_tuning_exporter_api_requests_total"
            }
        )

    unsharded = requests(scrape_refreshed(run_shard(config, UNSHARDED)))
    scrapes = [scrape_refreshed(run_shard(config, Shard(index, 4))) for index in range(4)]

    for found in scrapes:
        owned_regions = {region for _, region in targets_of(found)}
        assert {region for region, _ in requests(found)} == owned_regions
    assert any(len({r for _, r in targets_of(found)}) < len(REGIONS) for found in scrapes)
    # SageMaker's requests split over the shards; a role is assumed once per replica that
    # owns one of its account's regions, since a role's regions share one session.
    summed = sum((requests(found) for found in scrapes), Counter())
    assert without_assume_role(summed) == without_assume_role(unsharded)
    assert assume_roles(unsharded) == len(config.accounts)
    assert assume_roles(summed) == sum(
        len({account for account, _ in targets_of(found)}) for found in scrapes
    )


def without_assume_role(counts: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    return Counter({key: n for key, n in counts.items() if key[1] != "AssumeRole"})


def assume_roles(counts: Counter[tuple[str, str]]) -> int:
    return sum(n for (_, operation), n in counts.items() if operation == "AssumeRole")


def test_a_reload_keeps_the_shard_and_shards_the_new_targets(
    sagemaker: SageMakerTestServer, make_config: Callable[..., ExporterConfig]
) -> None:
    first = organization_config(sagemaker, make_config)
    second = replace(first, regions=(*REGIONS, "ap-south-1"))
    shard = Shard(1, 3)
    live = LiveExporter(first, lambda: second, "the test's configuration", shard=shard)

    live.reload()

    exporter = live.exporter
    assert exporter.shard == shard
    assert exporter.cache.targets == tuple(shard.select(targets_from_config(second)))
    assert any(target.region == "ap-south-1" for target in exporter.cache.targets)
    exporter.cache.refresh_all(timeout=120)
    assert targets_of(samples(generate_latest(exporter.registry).decode())) == {
        (target.account_id, target.region) for target in exporter.cache.targets
    }


@contextmanager
def prometheus_scraping(directory: Path, exporters: list[RunningExporter]) -> Iterator[str]:
    """A Prometheus with the deploy rules, scraping ``exporters`` every second as one job."""
    with scraping_every_second(
        directory, [running.url.removeprefix("http://") for running in exporters], RULE_FILES
    ) as url:
        yield url


def answer(prometheus_url: str, promql: str, *, with_values: bool) -> list[tuple[object, ...]]:
    """The series a query returns, without the labels that name the pod, sorted.

    AssumeRole's series are left out: each replica assumes the role of every account it owns
    a region of, once for all that account's regions, so shards assume more roles, in other
    regions, than one exporter does.
    """
    return sorted(
        (
            tuple(
                sorted(
                    (label, text)
                    for label, text in series["metric"].items()  # type: ignore[attr-defined]
                    if label not in POD_LABELS
                )
            ),
            series["value"][1] if with_values else None,  # type: ignore[index]
        )
        for series in query(prometheus_url, promql)
        if series["metric"].get("operation") != "AssumeRole"  # type: ignore[attr-defined]
    )


def test_dashboard_queries_answer_over_three_shards_what_they_answer_over_one_exporter(
    sagemaker: SageMakerTestServer,
    make_config: Callable[..., ExporterConfig],
    run_shard: StartShard,
    tmp_path: Path,
) -> None:
    config = organization_config(sagemaker, make_config)
    # The training-job panels need training jobs: two of each ended job, and a leaderboard.
    for account in ACCOUNTS:
        for region in REGIONS:
            tuning_job_name = f"done-{account[0]}-{region}"
            for index, status in enumerate(("Completed", "Failed")):
                sagemaker.add_training_job(
                    region,
                    tuning_job_name,
                    f"{tuning_job_name}-{index}",
                    status=status,
                    account=account,
                    started="2026-11-01T08:00:00",
                    ended="2026-11-01T08:30:00",
                    objective_value=0.5 + index / 10 if status == "Completed" else None,
                    tuned_hyperparameters={"eta": str(index)},
                    failure_reason="CapacityError: none" if status == "Failed" else None,
                )
    config = replace(config, training_jobs=TrainingJobsSettings(enabled=True, leaderboard=2))
    single = [run_shard(config, UNSHARDED)]
    shards = [run_shard(config, Shard(index, 3)) for index in range(3)]
    for running in (*single, *shards):
        running.exporter.cache.refresh_all(timeout=120)
    values = {**BUILT_IN_VARIABLES, "account": ALL, "region": ALL, "job": ALL}
    queries = {
        title: substitute(expr, values) for title, expr in panel_queries(load_dashboard()).items()
    }
    (tmp_path / "single").mkdir()
    (tmp_path / "sharded").mkdir()

    with (
        prometheus_scraping(tmp_path / "single", single) as one,
        prometheus_scraping(tmp_path / "sharded", shards) as three,
    ):
        targets = len(ACCOUNTS) * len(REGIONS)
        for url in (one, three):
            wait_for_series(url, "sagemaker_tuning_exporter_up", targets)
        differing: dict[str, str] = dict(queries)

        def answers_agree() -> bool:
            for title, promql in list(differing.items()):
                # Times of this run differ between the two; their series must not.
                with_values = not any(word in promql for word in TIMED_QUERY_WORDS)
                found = answer(three, promql, with_values=with_values)
                if found and found == answer(one, promql, with_values=with_values):
                    del differing[title]
            return not differing

        eventually(answers_agree, timeout=60, interval=1, ignoring=(OSError,))

    assert len(queries) >= 15
    assert differing == {}, "dashboard queries that answer differently over three shards"


def test_three_shards_split_the_discovered_accounts_and_each_reads_the_organization(
    organization: TestOrganization,
    sagemaker_server: SageMakerTestServer,
    tmp_path: Path,
) -> None:
    members = [organization.add_account(f"team-{n}") for n in range(5)]
    accounts = {*members, organization.management_account}
    for account in accounts:
        for region in REGIONS:
            sagemaker_server.add_job(region, f"job-of-{account}", account=account)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        f"regions: [{', '.join(REGIONS)}]\n"
        f"aws:\n  endpoints:\n    sagemaker: {sagemaker_server.url}\n  max_attempts: 2\n"
        "cache:\n  ttl: 5m\n"
        "discovery:\n  organizations:\n    role_name: sagemaker-tuning-reader\n"
    )
    replicas: list[LiveExporter] = []
    try:
        for index in range(3):
            replicas.append(
                LiveExporter(
                    load_config(config_file),
                    lambda: load_config(config_file),
                    str(config_file),
                    shard=Shard(index, 3),
                )
            )
        scrapes = []
        for live in replicas:
            live.exporter.cache.refresh_all(timeout=120)
            scrapes.append(samples(generate_latest(live.exporter.registry).decode()))
    finally:
        for live in replicas:
            live.close()

    owned = [targets_of(found) for found in scrapes]
    assert all(owned), "each of the 3 shards owns some of the 18 pairs"
    assert sum(len(share) for share in owned) == len(accounts) * len(REGIONS)
    assert set().union(*owned) == {(account, region) for account in accounts for region in REGIONS}
    for found in scrapes:
        assert found[("sagemaker_tuning_exporter_discovered_accounts", frozenset())] == len(
            accounts
        )
        list_accounts = frozenset({("region", REGIONS[0]), ("operation", "ListAccounts")})
        assert found[("sagemaker_tuning_exporter_api_requests_total", list_accounts)] == 1


def test_a_shard_without_a_pair_in_the_first_region_still_counts_list_accounts() -> None:
    config = ExporterConfig(
        regions=("us-east-1", "eu-west-1"),
        discovery=DiscoverySettings(OrganizationsDiscovery(role_name="sagemaker-tuning-reader")),
    )
    discovered = [f"{n:012d}" for n in (111111111111, 222222222222)]
    targets = targets_from_config(config, discovered)
    # A shard of four that owns none of the first region's two pairs.
    shard = next(
        Shard(index, 4)
        for index in range(4)
        if not any(Shard(index, 4).owns(t) for t in targets if t.region == "us-east-1")
    )

    exporter = Exporter(config, discovered_accounts=discovered, shard=shard)

    requests = {
        (dict(labels)["region"], dict(labels)["operation"])
        for name, labels in samples(generate_latest(exporter.registry).decode())
        if name == "sagemaker_tuning_exporter_api_requests_total"
    }
    owned_regions = {target.region for target in exporter.cache.targets}
    assert "us-east-1" not in owned_regions
    assert requests == {
        ("us-east-1", "ListAccounts"),
        *((region, "ListHyperParameterTuningJobs") for region in owned_regions),
        *((region, "DescribeHyperParameterTuningJob") for region in owned_regions),
    }
