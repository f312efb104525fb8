"""The /metrics body, rendered only when something changed.

At 10,000 jobs the per-job families are about 140,000 samples, and prometheus_client's
``generate_latest`` takes seconds to render them. Nearly all of that is the same from one
refresh to the next: finished jobs never change. So:

* :class:`PerJobRenderer` keeps each account and region's rendered lines and renders them
  again only when that target's published jobs or their descriptions changed, and does so
  on the refresh, before the snapshot is served (:meth:`MetricsPage.prepare`): a scrape
  finds them rendered;
* the per-job lines are kept only compressed, one piece of raw deflate per batch of jobs
  and family (:class:`~exporter.metrics.deflate.DeflatedText`). The pieces join into one
  deflate stream, so the response Prometheus asks for (gzip) is those pieces as they are
  inside one gzip member, and a large body is never held as text;
* :class:`MetricsPage` keeps the response per content type, and serves it again until a
  refresh replaces a snapshot or an AWS request is counted. Only the exporter's process
  metrics are rendered on every scrape, and end the member.

The small families (job counts, the exporter's health) go through prometheus_client's own
encoders, which also choose between the text format and OpenMetrics from the Accept header.
The per-job lines are the same in both formats; a test holds the result byte for byte to
what prometheus_client renders from the same collectors. A scrape without gzip gets the
same pieces decompressed one at a time as they are written.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, exposition, openmetrics
from prometheus_client.utils import floatToGoString

from exporter.metrics.deflate import DeflatedText, JoinedText, gzip_member, texts_of
from exporter.metrics.families import (
    JOB_FAMILIES,
    JOB_LABELS,
    TAGS_FAMILY,
    TAGS_HELP,
    JobFamily,
    job_family_help,
    job_label_values,
    tag_label_values,
)
from exporter.model.jobs import RegionSnapshot, Target, tag_label_name

_OPENMETRICS_END = b"# EOF\n"
RENDER_BATCH_JOBS = 1000
_FAST_ENCODERS = (exposition.generate_latest, openmetrics.exposition.generate_latest)
# Name escapings under which the cached per-job lines read as prometheus_client writes them.
# From prometheus_client 0.23, escaping=dots and escaping=values rewrite every metric name
# (a scrape config's metric_name_escaping_scheme); those bodies are rendered whole.
_CACHED_ESCAPINGS = (None, "underscores", "allow-utf-8")


def _renders_cached_lines(encoder: Callable[[CollectorRegistry], bytes]) -> bool:
    """Whether ``encoder``'s output can be the cached per-job lines plus the rest."""
    escaping = getattr(encoder, "keywords", None) or {}
    return (
        getattr(encoder, "func", encoder) in _FAST_ENCODERS
        and escaping.get("escaping") in _CACHED_ESCAPINGS
    )


def _go_float(value: float) -> str:
    """The value as prometheus_client writes it (Go's float formatting)."""
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _family_header(family: JobFamily) -> bytes:
    return _gauge_header(family.name, job_family_help(family))


def _gauge_header(name: str, documentation: str) -> bytes:
    documentation = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {documentation}\n# TYPE {name} gauge\n".encode()


# What a target's lines were rendered from: objects compared by identity, since the cache
# keeps the previous objects when nothing changed.
_Source = tuple[object, ...]
_Entry = tuple[_Source, tuple[Any, ...]]


class _LinesByTarget:
    """Each target's rendered lines, with what they were rendered from.

    Two per target: the lines the last page used, and the newest prepared ahead of any page
    by :meth:`prepare` (on a refresh's worker, before its snapshot is served). A page takes
    whichever is current for its snapshot, and renders the lines itself only when neither is.
    ``source`` says what of a snapshot the lines depend on, ``render`` renders them.
    """

    def __init__(
        self,
        source: Callable[[RegionSnapshot], _Source],
        render: Callable[[RegionSnapshot], tuple[Any, ...]],
    ) -> None:
        self._source = source
        self._render = render
        self._lock = threading.Lock()
        self._used: dict[Target, _Entry] = {}
        self._prepared: dict[Target, _Entry] = {}

    def prepare(self, snapshot: RegionSnapshot) -> None:
        """Render ``snapshot``'s lines, unless current ones are kept, for the page that serves it."""
        if self._current(snapshot) is not None:
            return
        entry = (self._source(snapshot), self._render(snapshot))
        with self._lock:
            self._prepared[snapshot.target] = entry

    def lines_of(self, snapshots: Sequence[RegionSnapshot]) -> dict[Target, tuple[Any, ...]]:
        """The lines of every snapshot, rendered here only where none were prepared."""
        used = {}
        for snapshot in snapshots:
            entry = self._current(snapshot)
            if entry is None:
                entry = (self._source(snapshot), self._render(snapshot))
            used[snapshot.target] = entry
        with self._lock:
            self._used = used
            for target, entry in used.items():
                if self._prepared.get(target) is entry:
                    del self._prepared[target]
        return {target: entry[1] for target, entry in used.items()}

    def inherit(self, previous: _LinesByTarget, targets: Iterable[Target]) -> None:
        """Start from ``previous``'s lines of ``targets``: rendered the same way, they still hold."""
        with previous._lock:
            used = {t: previous._used[t] for t in targets if t in previous._used}
            prepared = {t: previous._prepared[t] for t in targets if t in previous._prepared}
        with self._lock:
            self._used.update(used)
            self._prepared.update(prepared)

    def _current(self, snapshot: RegionSnapshot) -> _Entry | None:
        source = self._source(snapshot)
        with self._lock:
            candidates = (self._prepared.get(snapshot.target), self._used.get(snapshot.target))
        for entry in candidates:
            if entry is not None and all(
                new is old for new, old in zip(source, entry[0], strict=True)
            ):
                return entry
        return None


class PerJobRenderer:
    """Renders the per-job families, reusing each account and region's lines until they change.

    A target's lines are rendered again when its published jobs, their descriptions or
    their training-job records change, by :meth:`prepare` before its snapshot is served, or
    else by the page that serves it.
    The result is a sequence of deflate pieces: each family's header, then that family's
    lines of each target. Joined, they are the deflate stream of the per-job part.

    Sample output (one job, first family)::

        # HELP sagemaker_tuning_job_training_jobs Training jobs of a tuning job by training job status ...
        # TYPE sagemaker_tuning_job_training_jobs gauge
        sagemaker_tuning_job_training_jobs{account="111111111111",job_name="xgb-1",region="eu-west-1",status="InProgress",strategy="Bayesian",training_job_status="Completed"} 12.0
    """

    def __init__(
        self, families: Sequence[JobFamily] = JOB_FAMILIES, tag_keys: Sequence[str] = ()
    ) -> None:
        self._families = tuple(families)
        self._tag_keys = tuple(tag_keys)
        self._headers = tuple(DeflatedText.of(_family_header(family)) for family in self._families)
        self._tags = TagLinesRenderer(tag_keys) if tag_keys else None
        self._lines = _LinesByTarget(
            lambda snapshot: (
                snapshot.account,
                snapshot.published,
                snapshot.descriptions,
                snapshot.training_jobs,
            ),
            lambda snapshot: render_target(snapshot, self._families),
        )

    def renders_like(self, other: PerJobRenderer) -> bool:
        """Whether ``other`` renders the same families and tags, so its lines serve here."""
        return self._families == other._families and self._tag_keys == other._tag_keys

    def inherit(self, previous: PerJobRenderer, targets: Iterable[Target]) -> None:
        """Reuse ``previous``'s lines of ``targets``; it must render like this one."""
        targets = tuple(targets)
        self._lines.inherit(previous._lines, targets)
        if self._tags is not None and previous._tags is not None:
            self._tags.inherit(previous._tags, targets)

    def prepare(self, snapshot: RegionSnapshot) -> None:
        """Render ``snapshot``'s lines ahead of the page that serves it."""
        self._lines.prepare(snapshot)
        if self._tags is not None:
            self._tags.prepare(snapshot)

    def render(self, snapshots: Sequence[RegionSnapshot]) -> tuple[DeflatedText, ...]:
        """The per-job families in text exposition format, as deflate pieces in order."""
        rendered = self._lines.lines_of(snapshots)
        chunks: list[DeflatedText] = []
        for index, header in enumerate(self._headers):
            chunks.append(header)
            for snapshot in snapshots:
                chunks.extend(rendered[snapshot.target][index])
        if self._tags is not None:
            chunks.extend(self._tags.render(snapshots))
        return tuple(chunks)


class TagLinesRenderer:
    """Renders the sagemaker_tuning_job_tags family, reusing a target's lines until its jobs or tags change.

    Kept apart from the per-job families so that new tags render only these lines again.

    Sample output::

        # HELP sagemaker_tuning_job_tags The tuning job's allowlisted tags as tag_<key> labels, ...
        # TYPE sagemaker_tuning_job_tags gauge
        sagemaker_tuning_job_tags{account="111111111111",job_name="xgb-1",region="eu-west-1",status="Completed",strategy="Bayesian",tag_team="search"} 1.0
    """

    def __init__(self, tag_keys: Sequence[str]) -> None:
        self._tag_keys = tuple(tag_keys)
        self._header = DeflatedText.of(_gauge_header(TAGS_FAMILY, TAGS_HELP))
        names = [*JOB_LABELS, *(tag_label_name(key) for key in self._tag_keys)]
        # prometheus_client writes labels sorted by name: the index of each, in that order.
        self._label_order = sorted(range(len(names)), key=lambda index: names[index])
        self._label_names = [names[index] for index in self._label_order]
        self._lines = _LinesByTarget(
            lambda snapshot: (snapshot.account, snapshot.published, snapshot.tags.by_arn),
            self._render_target,
        )

    def prepare(self, snapshot: RegionSnapshot) -> None:
        """Render ``snapshot``'s tag lines ahead of the page that serves it."""
        self._lines.prepare(snapshot)

    def inherit(self, previous: TagLinesRenderer, targets: Iterable[Target]) -> None:
        """Reuse ``previous``'s lines of ``targets``."""
        self._lines.inherit(previous._lines, targets)

    def render(self, snapshots: Sequence[RegionSnapshot]) -> list[DeflatedText]:
        """The family's header and the lines of every target, as deflate pieces."""
        rendered = self._lines.lines_of(snapshots)
        chunks = [self._header]
        for snapshot in snapshots:
            chunks.extend(rendered[snapshot.target])
        return chunks

    def _render_target(self, snapshot: RegionSnapshot) -> tuple[DeflatedText, ...]:
        chunks = []
        jobs = snapshot.published
        for start in range(0, len(jobs), RENDER_BATCH_JOBS):
            lines = []
            for job in jobs[start : start + RENDER_BATCH_JOBS]:
                values = [
                    *job_label_values(snapshot, job),
                    *tag_label_values(snapshot, job, self._tag_keys),
                ]
                label_text = ",".join(
                    f'{name}="{_escape_label_value(values[index])}"'
                    for name, index in zip(self._label_names, self._label_order, strict=True)
                )
                lines.append(f"{TAGS_FAMILY}{{{label_text}}} 1.0\n")
            chunks.append(DeflatedText.of("".join(lines).encode()))
        return tuple(chunks)


_SORTED_JOB_LABELS = tuple(sorted(JOB_LABELS))
_JOB_LABEL_ORDER = tuple(JOB_LABELS.index(name) for name in _SORTED_JOB_LABELS)


def _label_layout(family: JobFamily) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """Where the family's extra labels go among the job labels, as prometheus_client sorts them.

    Returns the runs of job labels (indices among the sorted job labels) before, between and
    after the extra labels, and the extra labels (indices in ``family.extra_labels``) in the
    order they are written; there is one run more than extra labels, each possibly empty.
    """
    runs: list[tuple[int, ...]] = []
    run: list[int] = []
    extras: list[int] = []
    for name in sorted([*_SORTED_JOB_LABELS, *family.extra_labels]):
        if name in family.extra_labels:
            runs.append(tuple(run))
            run = []
            extras.append(family.extra_labels.index(name))
        else:
            run.append(_SORTED_JOB_LABELS.index(name))
    runs.append(tuple(run))
    return tuple(runs), tuple(extras)


def render_target(
    snapshot: RegionSnapshot, families: Sequence[JobFamily] = JOB_FAMILIES
) -> tuple[tuple[DeflatedText, ...], ...]:
    """The sample lines of a target's published jobs: for each of ``families``, deflate pieces.

    Each piece holds the lines of up to RENDER_BATCH_JOBS jobs, so rendering never holds more
    than one batch as text on top of what is already compressed. A batch's text (tens to
    hundreds of kilobytes) is far larger than deflate's 32 KiB window, so compressing the
    batches apart costs next to nothing in size.
    """
    labelled = []
    for job in snapshot.published:
        values = job_label_values(snapshot, job)
        parts = [
            f'{name}="{_escape_label_value(values[index])}"'
            for name, index in zip(_SORTED_JOB_LABELS, _JOB_LABEL_ORDER, strict=True)
        ]
        labelled.append((job, parts, ",".join(parts)))
    rendered = []
    for family in families:
        runs, extras = _label_layout(family)
        extra_names = [family.extra_labels[index] for index in extras]
        chunks = []
        for start in range(0, len(labelled), RENDER_BATCH_JOBS):
            lines = []
            for job, parts, job_text in labelled[start : start + RENDER_BATCH_JOBS]:
                if family.labelled is not None:
                    samples = family.labelled(snapshot, job)
                    lines.extend(_labelled_lines(family.name, samples, parts))
                    continue
                run_texts: list[str] | None = None
                for extra_values, value in family.samples(snapshot, job):
                    if not extra_values:
                        label_text = job_text
                    else:
                        if run_texts is None:
                            run_texts = [",".join(parts[index] for index in run) for run in runs]
                        pieces = [run_texts[0]]
                        for position, (index, name) in enumerate(
                            zip(extras, extra_names, strict=True)
                        ):
                            pieces.append(f'{name}="{_escape_label_value(extra_values[index])}"')
                            pieces.append(run_texts[position + 1])
                        label_text = ",".join(piece for piece in pieces if piece)
                    lines.append(f"{family.name}{{{label_text}}} {_go_float(value)}\n")
            chunks.append(DeflatedText.of("".join(lines).encode()))
        rendered.append(tuple(chunks))
    return tuple(rendered)


def _labelled_lines(
    name: str,
    samples: Iterable[tuple[tuple[tuple[str, str], ...], float]],
    parts: Sequence[str],
) -> list[str]:
    """The lines of a family whose extra labels vary by sample, labels sorted by name.

    ``parts`` are the job's labels as text, in the order of their sorted names.
    """
    lines = []
    for pairs, value in samples:
        named = [*zip(_SORTED_JOB_LABELS, parts, strict=True)]
        named.extend((label, f'{label}="{_escape_label_value(text)}"') for label, text in pairs)
        label_text = ",".join(text for _, text in sorted(named))
        lines.append(f"{name}{{{label_text}}} {_go_float(value)}\n")
    return lines


@dataclass(frozen=True)
class Response:
    """A rendered /metrics response: the body is ``chunks`` written in order, ``length`` bytes.

    A gzip body is one gzip member, whatever the reader. A plain body's chunks are
    decompressed one at a time as they are written (``chunks`` is then an iterator, to
    read once), so a plain scrape holds no more of the text than a batch.
    """

    chunks: Iterable[bytes]
    length: int
    content_type: str
    gzipped: bool


class Versioned(Protocol):
    """Something whose ``version()`` changes whenever what it publishes does (a RequestCounter)."""

    def version(self) -> int:
        """A number that changes with every change."""


@dataclass(frozen=True)
class _Rendered:
    """What a content type's response keeps between scrapes: all but the fresh part.

    ``joined`` is the pieces' deflate streams joined: a few megabytes at most, sent with one
    write where hundreds of pieces would take a write each.
    """

    pieces: tuple[DeflatedText, ...]
    joined: JoinedText


class MetricsPage:
    """The /metrics response, rendered again only after a refresh or an AWS request.

    ``summary_registry`` holds the families other than the per-job ones (job counts, the
    exporter's health); ``families`` are the per-job ones, followed by the tags family (of
    ``tag_keys``, when any); ``full_registry`` holds all of them, in that order, and serves
    the rare request this class does not render itself (an encoder it does not know).
    ``fresh_registry`` holds what is rendered on every scrape and follows the rest in every
    format (the exporter's process metrics, see :mod:`exporter.metrics.process`); it is in
    neither of the other two.

    What is kept is deflate pieces (:class:`~exporter.metrics.deflate.DeflatedText`) and
    their join; a gzip response is one member of the join and the fresh part. A plain
    response decompresses the pieces one at a time as it is written, and keeps no text.
    """

    def __init__(
        self,
        snapshots: Callable[[], list[RegionSnapshot]],
        requests: Versioned,
        summary_registry: CollectorRegistry,
        full_registry: CollectorRegistry,
        *,
        families: Sequence[JobFamily] = JOB_FAMILIES,
        tag_keys: Sequence[str] = (),
        fresh_registry: CollectorRegistry | None = None,
    ) -> None:
        self._snapshots = snapshots
        self._requests = requests
        self._summary_registry = summary_registry
        self._full_registry = full_registry
        self._fresh_registry = CollectorRegistry() if fresh_registry is None else fresh_registry
        self._per_job = PerJobRenderer(families, tag_keys)
        self._lock = threading.Lock()
        self._prepare_lock = threading.Lock()
        self._rendered_from: tuple[list[RegionSnapshot], int] | None = None
        self._responses: dict[str, _Rendered] = {}

    def prepare(self, snapshot: RegionSnapshot) -> None:
        """Render ``snapshot``'s per-job lines before it is served; a refresh's worker calls this.

        One target at a time: rendering holds a target's labels as text while it compresses
        them, and the interpreter runs one thread at a time anyway, so targets refreshed
        together would only add up their text.
        """
        with self._prepare_lock:
            self._per_job.prepare(snapshot)

    def inherit(self, previous: MetricsPage, targets: Iterable[Target]) -> None:
        """Reuse the lines ``previous`` rendered of ``targets``, if it renders the same families.

        For a page that replaces another at a reload: its first scrape renders only what
        changed, as the replaced page would have.
        """
        if self._per_job.renders_like(previous._per_job):
            self._per_job.inherit(previous._per_job, targets)

    def render(self, accept: str | None, accept_gzip: bool) -> Response:
        """The response for a scrape with these Accept and (gzip or not) Accept-Encoding headers."""
        encoder, content_type = exposition.choose_encoder(accept or "")
        with self._lock:
            snapshots = self._snapshots()
            version = self._requests.version()
            if not self._is_rendered_from(snapshots, version):
                self._responses = {}
                self._rendered_from = (snapshots, version)
            rendered = self._responses.get(content_type)
            if rendered is None:
                rendered = self._render(encoder, content_type, snapshots)
                self._responses[content_type] = rendered
        # Outside the lock: the fresh part is small, and concurrent scrapes render their own.
        fresh = encoder(self._fresh_registry)
        if accept_gzip:
            member = gzip_member(rendered.joined, fresh)
            return Response(member, sum(map(len, member)), content_type, True)
        plain = itertools.chain(texts_of(rendered.pieces), (fresh,) if fresh else ())
        return Response(plain, rendered.joined.length + len(fresh), content_type, False)

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
        snapshots: list[RegionSnapshot],
    ) -> _Rendered:
        if _renders_cached_lines(encoder):
            per_job: Iterable[DeflatedText] = self._per_job.render(snapshots)
            rest = encoder(self._summary_registry)
        else:
            per_job = ()
            rest = encoder(self._full_registry)
        # OpenMetrics ends the body with "# EOF"; the fresh part, rendered by the same encoder,
        # brings it, so the kept part goes without. (The text format has no end marker.)
        openmetrics = content_type.startswith("application/openmetrics-text")
        if openmetrics:
            rest = rest.removesuffix(_OPENMETRICS_END)
        pieces = (*per_job, DeflatedText.of(rest))
        return _Rendered(pieces, JoinedText.of(pieces))
