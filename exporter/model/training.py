"""What a tuning job's training jobs add up to: failures by reason, instance time, the best trials.

ListTrainingJobsForHyperParameterTuningJob returns one summary per training job. The
exporter keeps no summary: it folds each into a :class:`Tally` once the training job has
ended (a training job that ended never changes), and remembers only what the next read
needs to tell the ended training jobs it counted from those it has not (see
:class:`TrainingJobsRecord`). Thousands of tuning jobs of hundreds of training jobs each
cost a tally apiece, not a record per training job.

>>> failed = TrainingJobSummary("t-1", "Failed", 1.0, failure_reason="CapacityError: none left")
>>> done = TrainingJobSummary("t-2", "Completed", 2.0, started=10.0, ended=70.0,
...     objective_value=0.9, hyperparameters=(("eta", "0.1"),))
>>> tally = Tally().add([failed, done], leaderboard=1)
>>> dict(tally.failed_by_reason), dict(tally.seconds_by_definition), tally.best_highest[0].name
({'CapacityError': 1}, {'': 60.0}, 't-2')
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

# The leading words of FailureReason the exporter tells apart; any other text is OTHER_REASON.
FAILURE_REASONS = (
    "AlgorithmError",
    "ClientError",
    "CapacityError",
    "InternalServerError",
    "ResourceLimitExceeded",
)
OTHER_REASON = "Other"
# The instance type of training jobs whose type the exporter cannot know: without a
# description of their tuning job, or where SageMaker chose among several types.
UNKNOWN_INSTANCE_TYPE = "unknown"
# Training jobs in these statuses never change again.
ENDED_TRAINING_JOB_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
MAXIMIZE = "Maximize"
MINIMIZE = "Minimize"
_LEADING_WORD = re.compile(r"\s*([A-Za-z]+)\s*(?::|$)")
_EMPTY_COUNTS: Mapping[str, int] = MappingProxyType({})
_EMPTY_SECONDS: Mapping[str, float] = MappingProxyType({})


def failure_reason_category(failure_reason: str | None) -> str:
    """The category of a FailureReason: its leading word when one of FAILURE_REASONS, else Other.

    >>> failure_reason_category("AlgorithmError: ExecuteUserScriptError: exit 1")
    'AlgorithmError'
    >>> [failure_reason_category(text) for text in ("ResourceLimitExceeded", "OutOfMemory: x", None)]
    ['ResourceLimitExceeded', 'Other', 'Other']
    """
    match = _LEADING_WORD.match(failure_reason or "")
    if match is not None and match.group(1) in FAILURE_REASONS:
        return match.group(1)
    return OTHER_REASON


def hyperparameter_label_name(name: str) -> str:
    """The label a tuned hyperparameter becomes: ``hp_`` and its name, other than [a-zA-Z0-9_] ``_``.

    >>> hyperparameter_label_name("learning-rate")
    'hp_learning_rate'
    """
    return "hp_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


@dataclass(frozen=True)
class TrainingJobSummary:
    """The fields of a HyperParameterTrainingJobSummary the exporter uses; times in epoch seconds.

    ``created`` is None when the API left CreationTime out or sent it unusable; the other
    fields are None (or empty) when it left them out.
    """

    name: str
    status: str
    created: float | None
    started: float | None = None
    ended: float | None = None
    failure_reason: str | None = None
    definition_name: str = ""
    objective_value: float | None = None
    objective_type: str | None = None
    hyperparameters: tuple[tuple[str, str], ...] = ()

    @property
    def has_ended(self) -> bool:
        """Whether the training job ended, so it never changes again."""
        return self.status in ENDED_TRAINING_JOB_STATUSES


@dataclass(frozen=True)
class Trial:
    """A training job with a final objective value, as the leaderboard shows it."""

    name: str
    objective_value: float
    hyperparameters: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Tally:
    """What ended training jobs add up to.

    ``failed_by_reason`` counts training jobs in status Failed by failure_reason_category;
    ``seconds_by_definition`` sums each ended training job's TrainingEndTime less its
    TrainingStartTime by its TrainingJobDefinitionName (``""`` for a tuning job's single
    definition). ``best_highest`` and ``best_lowest`` are the leaderboard's trials, best
    first, for an objective maximized or minimized; once the objective's type is known
    (``objective_type``, from a summary), only the one that applies is kept.
    """

    failed_by_reason: Mapping[str, int] = field(default_factory=lambda: _EMPTY_COUNTS)
    seconds_by_definition: Mapping[str, float] = field(default_factory=lambda: _EMPTY_SECONDS)
    best_highest: tuple[Trial, ...] = ()
    best_lowest: tuple[Trial, ...] = ()
    objective_type: str | None = None

    def add(self, summaries: Iterable[TrainingJobSummary], leaderboard: int) -> Tally:
        """This tally with ``summaries`` (ended training jobs) counted in; ``leaderboard`` trials kept."""
        failed = dict(self.failed_by_reason)
        seconds = dict(self.seconds_by_definition)
        trials = list(self.best_highest) + [
            trial for trial in self.best_lowest if trial not in self.best_highest
        ]
        objective_type = self.objective_type
        for summary in summaries:
            if summary.status == "Failed":
                reason = failure_reason_category(summary.failure_reason)
                failed[reason] = failed.get(reason, 0) + 1
            if summary.started is not None and summary.ended is not None:
                key = summary.definition_name
                seconds[key] = seconds.get(key, 0.0) + max(0.0, summary.ended - summary.started)
            value = summary.objective_value
            if leaderboard and value is not None and not math.isnan(value):
                trials.append(Trial(summary.name, value, summary.hyperparameters))
            if objective_type is None and summary.objective_type in (MAXIMIZE, MINIMIZE):
                objective_type = summary.objective_type
        highest: tuple[Trial, ...] = ()
        lowest: tuple[Trial, ...] = ()
        if leaderboard:
            if objective_type != MINIMIZE:
                highest = tuple(heapq.nlargest(leaderboard, trials, key=_ranked_high))
            if objective_type != MAXIMIZE:
                lowest = tuple(heapq.nsmallest(leaderboard, trials, key=_ranked_low))
        return Tally(
            MappingProxyType(failed),
            MappingProxyType(seconds),
            highest,
            lowest,
            objective_type,
        )

    def leaderboard(self, objective_type: str | None) -> tuple[Trial, ...]:
        """The best trials for the objective type the summaries gave, else ``objective_type``.

        Empty when neither says whether the objective is maximized or minimized.
        """
        known = self.objective_type or objective_type
        if known == MAXIMIZE:
            return self.best_highest
        if known == MINIMIZE:
            return self.best_lowest
        return ()


def _ranked_high(trial: Trial) -> tuple[float, str]:
    # Ties go to the name first in order, in both directions.
    return (trial.objective_value, _reversed_text(trial.name))


def _ranked_low(trial: Trial) -> tuple[float, str]:
    return (trial.objective_value, trial.name)


def _reversed_text(text: str) -> str:
    """A key that sorts texts in reverse order, for ``nlargest`` to prefer the first name."""
    return "".join(chr(0x10FFFF - ord(character)) for character in text)


@dataclass(frozen=True)
class ReadProgress:
    """Where a read of a tuning job's training jobs stands, newest first.

    ``newest`` is the latest CreationTime seen and ``names_at_newest`` the training jobs
    created then; ``unended`` maps the training jobs seen but not ended (so not counted yet)
    to their CreationTime. A training job created before ``newest`` (or at it, among
    ``names_at_newest``) and not in ``unended`` was counted already.
    """

    newest: float | None = None
    names_at_newest: frozenset[str] = frozenset()
    unended: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def was_counted(self, summary: TrainingJobSummary) -> bool:
        """Whether ``summary``'s training job was counted by an earlier read."""
        if self.newest is None or summary.name in self.unended:
            return False
        created = 0.0 if summary.created is None else summary.created
        return created < self.newest or (
            created == self.newest and summary.name in self.names_at_newest
        )

    def depth(self) -> float | None:
        """How far back a read must walk: the oldest training job not counted, or ``newest``.

        A page whose last training job was created before this holds only counted ones
        beyond it. None: there is no earlier read, so a read walks every page.
        """
        if self.newest is None:
            return None
        return min((self.newest, *self.unended.values()))


def advance(
    progress: ReadProgress, seen: Sequence[TrainingJobSummary]
) -> tuple[ReadProgress, list[TrainingJobSummary]]:
    """The progress after a read that saw ``seen``, and those of them to count now.

    Training jobs of ``seen`` that ended and were not counted before are counted now; those
    not ended are remembered as unended, in place of the earlier read's. A training job seen
    twice (a read resumed by a page token that counts an offset, while newer training jobs
    pushed the older ones down) counts once: the first time, the newest answer.
    """
    to_count = []
    unended = {}
    newest, names = progress.newest, set(progress.names_at_newest)
    taken: set[str] = set()
    for summary in seen:
        if summary.name in taken:
            continue
        taken.add(summary.name)
        if progress.was_counted(summary):
            continue
        created = 0.0 if summary.created is None else summary.created
        if summary.has_ended:
            to_count.append(summary)
        else:
            unended[summary.name] = created
        if newest is None or created > newest:
            newest, names = created, {summary.name}
        elif created == newest:
            names.add(summary.name)
    return ReadProgress(newest, frozenset(names), MappingProxyType(unended)), to_count


@dataclass(frozen=True)
class PendingRead:
    """A read cut short by the refresh's budget: the page to ask for next, and what came so far."""

    next_token: str
    seen: tuple[TrainingJobSummary, ...]
    started_at: float
    tuning_job_ended: bool


@dataclass(frozen=True)
class TrainingJobsRecord:
    """What the exporter keeps of one tuning job's training jobs between refreshes.

    ``tally`` is published: as of the last whole read, which started at ``read_at``.
    ``final`` is True once a whole read that started after the tuning job ended found every
    training job ended: nothing is read again. ``pending`` is a read still under way.
    """

    tally: Tally = field(default_factory=Tally)
    progress: ReadProgress = field(default_factory=ReadProgress)
    read_at: float | None = None
    final: bool = False
    pending: PendingRead | None = None

    def completed(
        self,
        seen: Sequence[TrainingJobSummary],
        started_at: float,
        tuning_job_ended: bool,
        leaderboard: int,
    ) -> TrainingJobsRecord:
        """This record after a whole read that saw ``seen`` (every page, or as deep as needed)."""
        progress, to_count = advance(self.progress, seen)
        return TrainingJobsRecord(
            tally=self.tally.add(to_count, leaderboard),
            progress=progress,
            read_at=started_at,
            final=tuning_job_ended and not progress.unended,
        )

    def paused(self, pending: PendingRead) -> TrainingJobsRecord:
        """This record with a read left to continue at the next refresh."""
        return replace(self, pending=pending)


NO_TRAINING_JOBS: Mapping[str, TrainingJobsRecord] = MappingProxyType({})
