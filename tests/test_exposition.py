"""The cached /metrics body: byte for byte what prometheus_client renders, reused until a change."""

from __future__ import annotations

import gc
import gzip
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from types import MappingProxyType

import pytest
from prometheus_client import CollectorRegistry, exposition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from exporter.aws.counting import RequestCounter
from exporter.aws.operations import LIST_OPERATION
from exporter.config.settings import TrainingJobsSettings
from exporter.metrics import exposition as exporter_exposition
from exporter.metrics.collectors import ExporterHealthCollector, JobCountCollector, PerJobCollector
from exporter.metrics.deflate import DeflatedText
from exporter.metrics.exposition import MetricsPage
from exporter.metrics.families import JOB_FAMILIES, JobFamily, job_families
from exporter.metrics.process import exporter_process_collectors
from exporter.model.jobs import JobDescription, RegionSnapshot, Target, TuningJob
from exporter.model.training import Tally, TrainingJobsRecord, Trial
from tests.factories import tuning_job

EU = Target(region="eu-west-1")
US = Target(
    region="us-east-1", role_arn="arn:aws:iam::222222222222:role/r", account_id="222222222222"
)
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
ACCEPT_HEADERS = [
    None,
    "text/plain;version=0.0.4",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    PROMETHEUS_ACCEPT,
    "application/openmetrics-text;version=1.0.0",
    "application/openmetrics-text",
    "text/plain;version=1.0.0;escaping=underscores",
]
# prometheus_client 0.23 and later rename every metric under these escapings, so the page
# renders them whole rather than from its cached per-job lines.
RENAMING_ACCEPT_HEADERS = [
    "text/plain;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
]


def job(name: str, completed: int = 3, status: str = "InProgress") -> TuningJob:
    return tuning_job(
        name,
        status=status,
        creation_time=1_795_000_000.125,
        last_modified_time=1_795_000_500.0,
        end_time=None if status == "InProgress" else 1_795_000_900.0,
        training_job_counts={"Completed": completed, "NonRetryableError": 1},
        objective_counts={"Succeeded": completed, "Failed": 0},
        max_training_jobs=50,
        max_runtime_seconds=86_400,
    )


def snapshot(target: Target, jobs: tuple[TuningJob, ...]) -> RegionSnapshot:
    return RegionSnapshot(
        target, target.account_id or "111111111111", jobs, True, 1.0, 0.5, published=jobs
    )


class ConstantCollector(Collector):
    """A fresh family whose value never changes, so bodies can be compared byte for byte.

    Sample output::

        # HELP fresh_constant A value rendered on every scrape.
        # TYPE fresh_constant gauge
        fresh_constant{kind="test"} 7.0
    """

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "fresh_constant", "A value rendered on every scrape.", labels=["kind"]
        )
        family.add_metric(["test"], 7)
        yield family


class CountingCollector(Collector):
    """A fresh counter that counts the times it was collected.

    Sample output::

        # HELP fresh_collections_total Times this collector was collected.
        # TYPE fresh_collections_total counter
        fresh_collections_total 3.0
    """

    def __init__(self) -> None:
        self.collections = 0

    def collect(self) -> Iterator[Metric]:
        self.collections += 1
        yield CounterMetricFamily(
            "fresh_collections", "Times this collector was collected.", value=self.collections
        )


class Page:
    """A MetricsPage over snapshots a test swaps, with the registry prometheus_client renders.

    ``fresh`` collectors go on the page's fresh registry; ``whole`` holds everything, in the
    order the exporter registers it, as ``--once`` renders it.
    """

    def __init__(
        self,
        snapshots: list[RegionSnapshot],
        families: Sequence[JobFamily] = JOB_FAMILIES,
        fresh: Sequence[Collector] = (),
    ) -> None:
        self.snapshots = snapshots
        self.requests = RequestCounter()
        self.requests.declare("eu-west-1", LIST_OPERATION)
        counts = JobCountCollector(lambda: self.snapshots)
        health = ExporterHealthCollector(lambda: self.snapshots, self.requests)
        self.full = CollectorRegistry()
        summary = CollectorRegistry()
        for collector in (PerJobCollector(lambda: self.snapshots, families), counts, health):
            self.full.register(collector)
        for collector in (counts, health):
            summary.register(collector)
        self.fresh = fresh_registry = CollectorRegistry()
        self.whole = CollectorRegistry()
        kept: list[Collector] = [PerJobCollector(lambda: self.snapshots, families), counts, health]
        for kept_collector in kept:
            self.whole.register(kept_collector)
        for fresh_collector in fresh:
            fresh_registry.register(fresh_collector)
            self.whole.register(fresh_collector)
        self.page = MetricsPage(
            lambda: list(self.snapshots),
            self.requests,
            summary,
            self.full,
            families=families,
            fresh_registry=fresh_registry,
        )

    def body(self, accept: str | None = None, accept_gzip: bool = False) -> bytes:
        response = self.page.render(accept, accept_gzip)
        body = b"".join(response.chunks)
        return gzip.decompress(body) if response.gzipped else body


ODD_JOBS = (
    job("plain"),
    job('quote"and\\backslash'),
    job("new\nline"),
    job("ünïcode-名前", status="Completed"),
    job("nul\x00carriage\rtab\tline\u2028separator"),
    job("replaced-surrogate-\ufffd-emoji-\U0001f600", status="Pausing"),
    job("h" * 10_000 + '\\"\n', status="Completed"),
    tuning_job(
        "what-a-malformed-summary-leaves",
        account="",
        arn="",
        status="",
        strategy="Evolutionary",
        creation_time=None,
        training_job_counts={"Stopped": 0},
    ),
)


@pytest.mark.parametrize("accept", [*ACCEPT_HEADERS, *RENAMING_ACCEPT_HEADERS])
def test_the_body_equals_what_prometheus_client_renders_for_each_format(accept: str | None) -> None:
    page = Page([snapshot(EU, ODD_JOBS), snapshot(US, (job("other", status="Failed"),))])
    encoder, _ = exposition.choose_encoder(accept or "")

    assert page.body(accept) == encoder(page.full)
    assert page.body(accept, accept_gzip=True) == encoder(page.full)


def test_an_unchanged_cache_serves_the_same_compressed_bytes_objects() -> None:
    page = Page([snapshot(EU, ODD_JOBS)])

    first = page.page.render(PROMETHEUS_ACCEPT, True)
    second = page.page.render(PROMETHEUS_ACCEPT, True)

    # The gzip header, the kept pieces joined, the fresh part that ends the stream (here
    # only the OpenMetrics end marker), and the trailer.
    first_chunks, second_chunks = list(first.chunks), list(second.chunks)
    assert len(second_chunks) == len(first_chunks) == 4
    assert second_chunks[1] is first_chunks[1]
    assert len(first_chunks[1]) > 1000


def test_a_plain_body_is_decompressed_as_it_is_written_and_keeps_no_text() -> None:
    page = Page([snapshot(EU, tuple(job(f"job-{n}") for n in range(3000)))])
    rendered_pieces = 0

    response = page.page.render(None, accept_gzip=False)
    chunks = iter(response.chunks)
    first = next(chunks)

    assert not isinstance(response.chunks, tuple | list)
    assert 0 < len(first) < response.length // 3
    assert len(first) + sum(len(chunk) for chunk in chunks) == response.length
    # Only the compressed pieces are kept: no text of the body stays behind.
    for kept in page.page._responses.values():
        rendered_pieces += len(kept.pieces)
        assert all(isinstance(piece, DeflatedText) for piece in kept.pieces)
    assert rendered_pieces > 3


def gzip_members(body: bytes) -> list[bytes]:
    """The decompressed text of each gzip member of ``body``, in order."""
    members = []
    while body:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        members.append(decompressor.decompress(body) + decompressor.flush())
        assert decompressor.eof, "a gzip member is cut short"
        body = decompressor.unused_data
    return members


@pytest.mark.parametrize("accept", [*ACCEPT_HEADERS, *RENAMING_ACCEPT_HEADERS])
def test_the_gzip_body_decompresses_to_the_plain_body_with_the_fresh_part_last(
    accept: str | None,
) -> None:
    page = Page(
        [snapshot(EU, ODD_JOBS), snapshot(US, (job("other", status="Failed"),))],
        fresh=[ConstantCollector()],
    )
    encoder, _ = exposition.choose_encoder(accept or "")

    compressed = b"".join(page.page.render(accept, accept_gzip=True).chunks)
    plain = b"".join(page.page.render(accept, accept_gzip=False).chunks)

    assert gzip.decompress(compressed) == plain == encoder(page.whole)
    assert gzip_members(compressed) == [plain]
    assert plain.removesuffix(b"# EOF\n").endswith(encoder(page.fresh).removesuffix(b"# EOF\n"))


def test_the_per_job_part_is_kept_as_deflate_pieces_of_batches_sent_as_one_member(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exporter_exposition, "RENDER_BATCH_JOBS", 3)
    page = Page([snapshot(EU, tuple(job(f"job-{n}") for n in range(10)))])

    body = b"".join(page.page.render(None, accept_gzip=True).chunks)
    (kept,) = page.page._responses.values()
    texts = [piece.text() for piece in kept.pieces]

    # Per family: its header, then 4 batches of 3, 3, 3 and 1 jobs; then the summary part.
    assert len(texts) == len(JOB_FAMILIES) * 5 + 1
    assert texts[0].startswith(b"# HELP sagemaker_tuning_job_training_jobs ")
    assert texts[1].count(b"sagemaker_tuning_job_training_jobs{") == 3 * 2
    assert b"".join(texts) == exposition.generate_latest(page.full)
    assert gzip_members(body) == [exposition.generate_latest(page.full)]


@pytest.mark.parametrize("accept_gzip", [True, False])
def test_the_fresh_part_is_rendered_on_every_scrape_while_the_rest_is_kept(
    accept_gzip: bool,
) -> None:
    counting = CountingCollector()
    page = Page([snapshot(EU, ODD_JOBS)], fresh=[counting])

    first = page.page.render(PROMETHEUS_ACCEPT, accept_gzip)
    second = page.page.render(PROMETHEUS_ACCEPT, accept_gzip)

    def body(response: exporter_exposition.Response) -> str:
        joined = b"".join(response.chunks)
        return (gzip.decompress(joined) if accept_gzip else joined).decode()

    if accept_gzip:  # the kept pieces, joined, are sent again as they are
        assert list(second.chunks)[1] is list(first.chunks)[1]
    assert "fresh_collections_total 1.0\n" in body(first)
    assert "fresh_collections_total 2.0\n" in body(second)
    assert counting.collections == 2


@pytest.mark.parametrize("accept", [None, PROMETHEUS_ACCEPT])
def test_a_body_with_fresh_families_ends_once_and_parses(accept: str | None) -> None:
    page = Page([snapshot(EU, ODD_JOBS)], fresh=[ConstantCollector(), CountingCollector()])

    text = gzip.decompress(b"".join(page.page.render(accept, accept_gzip=True).chunks)).decode()

    if accept is None:
        names = {family.name for family in text_string_to_metric_families(text)}
        assert "# EOF" not in text
    else:
        names = {family.name for family in openmetrics_families(text)}  # type: ignore[no-untyped-call]
        assert text.count("# EOF\n") == 1 and text.endswith("\n# EOF\n")
    assert {"sagemaker_tuning_job_training_jobs", "fresh_constant", "fresh_collections"} <= names


def test_the_process_collectors_report_fresh_values_on_each_scrape() -> None:
    page = Page([snapshot(EU, ODD_JOBS)], fresh=exporter_process_collectors())

    def collections(text: bytes) -> float:
        return next(
            sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples
            if sample.name == "python_gc_collections_total" and sample.labels["generation"] == "2"
        )

    before = page.body(accept_gzip=True)
    gc.collect()
    after = page.body(accept_gzip=True)

    # At least the one asked for; the interpreter may have run others meanwhile.
    assert collections(after) >= collections(before) + 1
    assert b"\nprocess_resident_memory_bytes " in after
    assert b'\npython_info{implementation="' in after


def test_a_new_snapshot_or_request_count_renders_again() -> None:
    page = Page([snapshot(EU, (job("a"),))])
    before = page.body()

    page.snapshots = [snapshot(EU, (job("a", completed=4),))]
    after_refresh = page.body()
    page.requests.record("eu-west-1", LIST_OPERATION)
    after_request = page.body()

    assert b'training_job_status="Completed"} 3.0' in before
    assert b'training_job_status="Completed"} 4.0' in after_refresh
    assert b'operation="ListHyperParameterTuningJobs",region="eu-west-1"} 1.0' in after_request
    assert after_request == exposition.generate_latest(page.full)


def counted_renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The regions whose lines render_target renders from now on, one entry a call."""
    rendered: list[str] = []
    render_target = exporter_exposition.render_target

    def counting_render_target(
        changed: RegionSnapshot, families: Sequence[JobFamily]
    ) -> tuple[tuple[DeflatedText, ...], ...]:
        rendered.append(changed.target.region)
        return render_target(changed, families)

    monkeypatch.setattr(exporter_exposition, "render_target", counting_render_target)
    return rendered


def test_only_targets_whose_jobs_changed_are_rendered_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eu_jobs = tuple(job(f"job-{n}") for n in range(50))
    us_jobs = (job("other"),)
    page = Page([snapshot(EU, eu_jobs), snapshot(US, us_jobs)])
    page.body()
    rendered = counted_renders(monkeypatch)
    changed = (*eu_jobs[:10], replace(eu_jobs[10], training_job_counts=MappingProxyType({})))
    unchanged_us = replace(page.snapshots[1], refresh_duration_seconds=0.75)
    page.snapshots = [snapshot(EU, changed), unchanged_us]

    body = page.body()

    assert rendered == ["eu-west-1"]
    assert body == exposition.generate_latest(page.full)


def test_lines_prepared_before_a_snapshot_is_served_are_not_rendered_by_the_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page = Page([snapshot(EU, (job("a"),)), snapshot(US, (job("other"),))])
    page.body()
    rendered = counted_renders(monkeypatch)
    new_eu = snapshot(EU, (job("a", completed=4), job("b")))

    page.page.prepare(new_eu)  # as the refresh does, before the cache serves it
    prepared = list(rendered)
    before_served = page.body()
    page.snapshots = [new_eu, page.snapshots[1]]
    served = page.body(accept_gzip=True)

    assert prepared == ["eu-west-1"]
    assert rendered == ["eu-west-1"]  # the scrapes rendered nothing themselves
    assert b'job_name="b"' not in before_served  # the page served the old snapshot meanwhile
    assert served == exposition.generate_latest(page.full)


def test_a_page_that_replaces_another_reuses_its_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    old = Page([snapshot(EU, (job("a"),)), snapshot(US, (job("other"),))])
    old.body()
    rendered = counted_renders(monkeypatch)
    new = Page(old.snapshots)

    new.page.inherit(old.page, [EU, US])
    body = new.body()

    assert rendered == []
    assert body == old.body()


def test_a_page_of_other_families_renders_its_own_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    old = Page([snapshot(EU, (job("a"),))])
    old.body()
    rendered = counted_renders(monkeypatch)
    new = Page(old.snapshots, families=job_families(describe_enabled=True))

    new.page.inherit(old.page, [EU])
    body = new.body()

    assert rendered == ["eu-west-1"]
    assert body == exposition.generate_latest(new.full)


def test_a_target_with_no_published_jobs_still_gets_family_headers() -> None:
    page = Page([])

    body = page.body()

    assert body.startswith(b"# HELP sagemaker_tuning_job_training_jobs ")
    assert body == exposition.generate_latest(page.full)


def test_jobs_rendered_in_several_batches_read_as_one_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exporter_exposition, "RENDER_BATCH_JOBS", 3)
    page = Page([snapshot(EU, tuple(job(f"job-{n}") for n in range(10)))])

    assert page.body() == exposition.generate_latest(page.full)


def described(snapshot: RegionSnapshot, **descriptions: JobDescription) -> RegionSnapshot:
    return replace(snapshot, descriptions=MappingProxyType(descriptions))


ODD_DESCRIPTIONS = {
    "plain": JobDescription(
        "InProgress",
        described_at=1.0,
        best_training_job_name='best"one\\with\nodd-名前',
        objective_metric="validation:auc",
        objective_type="Maximize",
        best_objective_value=0.987654321,
        consumed_runtime_seconds=5400.0,
        training_jobs_objective_not_improving=3,
        convergence_detected_time=1_795_001_000.5,
    ),
    # Only some fields: the others have no sample.
    "ünïcode-名前": JobDescription(
        "Completed", described_at=2.0, consumed_runtime_seconds=1e-7, best_objective_value=2.0
    ),
}


@pytest.mark.parametrize("accept", ACCEPT_HEADERS)
def test_described_jobs_render_as_prometheus_client_does_with_several_extra_labels(
    accept: str | None,
) -> None:
    page = Page(
        [described(snapshot(EU, ODD_JOBS), **ODD_DESCRIPTIONS), snapshot(US, (job("other"),))],
        job_families(describe_enabled=True),
    )
    encoder, _ = exposition.choose_encoder(accept or "")

    body = page.body(accept)

    assert body == encoder(page.full)
    assert (
        b'sagemaker_tuning_job_best_objective_value{account="111111111111",job_name="plain",'
        b'objective_metric="validation:auc",objective_type="Maximize",region="eu-west-1",'
        b'status="InProgress",strategy="Bayesian"} 0.987654321\n' in body
    )
    # An objective value without its metric name and type has no sample.
    assert body.count(b"sagemaker_tuning_job_best_objective_value{") == 1


def test_a_target_whose_descriptions_changed_is_rendered_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs = (job("a"), job("b"))
    page = Page(
        [described(snapshot(EU, jobs), **ODD_DESCRIPTIONS), snapshot(US, (job("other"),))],
        job_families(describe_enabled=True),
    )
    page.body()
    rendered: list[str] = []
    render_target = exporter_exposition.render_target

    def counting_render_target(
        changed: RegionSnapshot, families: Sequence[JobFamily]
    ) -> tuple[tuple[DeflatedText, ...], ...]:
        rendered.append(changed.target.region)
        return render_target(changed, families)

    monkeypatch.setattr(exporter_exposition, "render_target", counting_render_target)
    eu, us = page.snapshots
    page.snapshots = [
        described(eu, a=JobDescription("InProgress", 3.0, consumed_runtime_seconds=60.0)),
        replace(us, refresh_duration_seconds=0.25),
    ]

    body = page.body()

    assert rendered == ["eu-west-1"]
    assert (
        b'sagemaker_tuning_job_consumed_runtime_seconds{account="111111111111",job_name="a"' in body
    )
    assert body == exposition.generate_latest(page.full)


def with_training_jobs(snapshot: RegionSnapshot) -> RegionSnapshot:
    """``snapshot`` with a read tally for its first two jobs: odd reasons, types and names."""
    trials = (
        Trial(
            'top"one\\with\nodd-名前', 0.98765, (("learning-rate", "0.1"), ("learning_rate", "x"))
        ),
        Trial("second", 0.5, (("depth", 'quoted "6"'), ("ünï", "n\\l"))),
        Trial("third", -1e-9, ()),
    )
    tally = Tally(
        failed_by_reason=MappingProxyType({"CapacityError": 2, "Other": 1}),
        seconds_by_definition=MappingProxyType({"": 3600.0, "gpu": 12.5}),
        best_highest=trials,
        objective_type="Maximize",
    )
    first, second = snapshot.published[0].name, snapshot.published[1].name
    return replace(
        snapshot,
        descriptions=MappingProxyType(
            {
                first: JobDescription(
                    "Completed",
                    1.0,
                    instances=MappingProxyType(
                        {"": ("ml.m5.xlarge", 2), "gpu": ("ml.p3.2xlarge", 1)}
                    ),
                )
            }
        ),
        training_jobs=MappingProxyType(
            {
                first: TrainingJobsRecord(tally=tally, read_at=1.0),
                second: TrainingJobsRecord(tally=tally, read_at=None),  # not read whole yet
            }
        ),
    )


@pytest.mark.parametrize("accept", [*ACCEPT_HEADERS, *RENAMING_ACCEPT_HEADERS])
def test_the_training_job_families_equal_what_prometheus_client_renders(accept: str | None) -> None:
    families = job_families(True, TrainingJobsSettings(enabled=True, leaderboard=3))
    page = Page([with_training_jobs(snapshot(EU, ODD_JOBS))], families)
    encoder, _ = exposition.choose_encoder(accept or "")

    body = page.body(accept, accept_gzip=True)

    assert body == encoder(page.full)
    if accept in RENAMING_ACCEPT_HEADERS:
        return  # every name is rewritten; the equality above is the check
    text = body.decode()
    assert 'hp_learning_rate="0.1"' in text and 'hp_learning_rate="x"' not in text
    assert any(
        'instance_type="ml.m5.xlarge"' in line and line.endswith(" 7200.0")
        for line in text.splitlines()
    )
    assert text.count("sagemaker_tuning_job_top_training_job_info{") == 3
