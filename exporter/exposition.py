"""The /metrics body, rendered only when something changed.

At 10,000 jobs the per-job families are about 140,000 samples, and prometheus_client's
``generate_latest`` takes seconds to render them. Nearly all of that is the same from one
refresh to the next: finished jobs never change. So:

* :class:`PerJobRenderer` keeps each job's rendered lines and renders a job again only when
  its record changed, then joins the lines family by family;
* :class:`MetricsPage` keeps the whole body, and its gzip encoding, per content type, and
  serves them again until a refresh replaces a snapshot or an AWS request is counted.

The small families (job counts, the exporter's health) go through prometheus_client's own
encoders, which also choose between the text format and OpenMetrics from the Accept header.
The per-job lines are the same in both formats; a test holds the result byte for byte to
what prometheus_client renders from the same collectors.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, exposition, openmetrics
from prometheus_client.utils import floatToGoString

from exporter.aws import RequestCounter
from exporter.collector import (
    JOB_FAMILIES,
    JOB_LABELS,
    JobFamily,
    job_family_help,
    job_label_values,
)
from exporter.jobs import RegionSnapshot, TuningJob

GZIP_LEVEL = 6
_FAST_ENCODERS = (exposition.generate_latest, openmetrics.exposition.generate_latest)


def _go_float(value: float) -> str:
    """The value as prometheus_client writes it (Go's float formatting)."""
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _family_header(family: JobFamily) -> bytes:
    documentation = job_family_help(family).replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {family.name} {documentation}\n# TYPE {family.name} gauge\n".encode()


class PerJobRenderer:
    """Renders the per-job families of the published jobs, reusing the lines of unchanged jobs.

    Sample output (one job, first family)::

        # HELP sagemaker_tuning_job_training_jobs Training jobs of a tuning job by training job status ...
        # TYPE sagemaker_tuning_job_training_jobs gauge
        sagemaker_tuning_job_training_jobs{account="111111111111",job_name="xgb-1",region="eu-west-1",status="InProgress",strategy="Bayesian",training_job_status="Completed"} 12.0
    """

    def __init__(self) -> None:
        self._headers = tuple(_family_header(family) for family in JOB_FAMILIES)
        # (account label, region, job ARN) -> (the job as rendered, its lines per family)
        self._lines: dict[tuple[str, str, str], tuple[TuningJob, tuple[bytes, ...]]] = {}
        self._rendered_from: list[tuple[str, tuple[TuningJob, ...]]] | None = None
        self._body = b""

    def render(self, snapshots: Sequence[RegionSnapshot]) -> bytes:
        """The per-job families in text exposition format, every family's samples together."""
        published = [(snapshot.account, snapshot.published) for snapshot in snapshots]
        if (
            self._rendered_from is not None
            and len(published) == len(self._rendered_from)
            and all(
                account == old_account and jobs is old_jobs
                for (account, jobs), (old_account, old_jobs) in zip(
                    published, self._rendered_from, strict=True
                )
            )
        ):
            return self._body
        lines: dict[tuple[str, str, str], tuple[TuningJob, tuple[bytes, ...]]] = {}
        by_family: list[list[bytes]] = [[] for _ in JOB_FAMILIES]
        for snapshot in snapshots:
            for job in snapshot.published:
                labels = job_label_values(snapshot, job)
                key = (labels[0], labels[1], job.arn)
                cached = self._lines.get(key)
                if cached is not None and (cached[0] is job or cached[0] == job):
                    job_lines = cached[1]
                else:
                    job_lines = _render_job(labels, job)
                lines[key] = (job, job_lines)
                for family_lines, job_family_lines in zip(by_family, job_lines, strict=True):
                    family_lines.append(job_family_lines)
        self._lines = lines
        self._rendered_from = published
        self._body = b"".join(
            header + b"".join(family_lines)
            for header, family_lines in zip(self._headers, by_family, strict=True)
        )
        return self._body


def _render_job(labels: Sequence[str], job: TuningJob) -> tuple[bytes, ...]:
    """The sample lines of ``job`` in each of JOB_FAMILIES, label names sorted as the client does."""
    base = [
        (name, _escape_label_value(value)) for name, value in zip(JOB_LABELS, labels, strict=True)
    ]
    rendered = []
    for family in JOB_FAMILIES:
        family_lines = []
        for extra_value, value in family.samples(job):
            pairs = (
                base if extra_value is None else [*base, (family.extra_label or "", extra_value)]
            )
            label_text = ",".join(f'{name}="{text}"' for name, text in sorted(pairs))
            family_lines.append(f"{family.name}{{{label_text}}} {_go_float(value)}\n")
        rendered.append("".join(family_lines).encode())
    return tuple(rendered)


@dataclass(frozen=True)
class Response:
    """A rendered /metrics response: the body is the concatenation of ``chunks``."""

    chunks: tuple[bytes, ...]
    content_type: str
    gzipped: bool

    @property
    def length(self) -> int:
        """The body's length in bytes."""
        return sum(len(chunk) for chunk in self.chunks)


class MetricsPage:
    """The /metrics response, rendered again only after a refresh or an AWS request.

    ``summary_registry`` holds the families other than the per-job ones (job counts, the
    exporter's health); ``full_registry`` holds all of them and serves the rare request this
    class does not render itself (an encoder it does not know). A plain response is served
    as two chunks (the per-job part and the rest) so the large part is never copied.
    """

    def __init__(
        self,
        snapshots: Callable[[], list[RegionSnapshot]],
        requests: RequestCounter,
        summary_registry: CollectorRegistry,
        full_registry: CollectorRegistry,
    ) -> None:
        self._snapshots = snapshots
        self._requests = requests
        self._summary_registry = summary_registry
        self._full_registry = full_registry
        self._per_job = PerJobRenderer()
        self._lock = threading.Lock()
        self._rendered_from: tuple[list[RegionSnapshot], int] | None = None
        self._responses: dict[tuple[str, bool], Response] = {}

    def render(self, accept: str | None, accept_gzip: bool) -> Response:
        """The response for a scrape with these Accept and (gzip or not) Accept-Encoding headers."""
        encoder, content_type = exposition.choose_encoder(accept or "")
        with self._lock:
            snapshots = self._snapshots()
            version = self._requests.version()
            if not self._is_rendered_from(snapshots, version):
                self._responses = {}
                self._rendered_from = (snapshots, version)
            response = self._responses.get((content_type, accept_gzip))
            if response is None:
                response = self._responses[(content_type, accept_gzip)] = self._render(
                    encoder, content_type, accept_gzip, snapshots
                )
            return response

    def _is_rendered_from(self, snapshots: list[RegionSnapshot], version: int) -> bool:
        if self._rendered_from is None:
            return False
        old_snapshots, old_version = self._rendered_from
        return (
            version == old_version
            and len(snapshots) == len(old_snapshots)
            and all(new is old for new, old in zip(snapshots, old_snapshots, strict=True))
        )

    def _render(
        self,
        encoder: Callable[[CollectorRegistry], bytes],
        content_type: str,
        accept_gzip: bool,
        snapshots: list[RegionSnapshot],
    ) -> Response:
        if getattr(encoder, "func", encoder) in _FAST_ENCODERS:
            chunks: tuple[bytes, ...] = (
                self._per_job.render(snapshots),
                encoder(self._summary_registry),
            )
        else:
            chunks = (encoder(self._full_registry),)
        if not accept_gzip:
            return Response(chunks, content_type, False)
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        compressed = b"".join(
            [*(compressor.compress(chunk) for chunk in chunks), compressor.flush()]
        )
        return Response((compressed,), content_type, True)
