"""What a listing of one target found, and what the next listing plans its walk from."""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.model.jobs import JobDescription, TuningJob
from exporter.model.summaries import SummaryProblems

# The most jobs a ListHyperParameterTuningJobs page holds: the API's maximum for MaxResults.
PAGE_SIZE = 100


@dataclass(frozen=True)
class Population:
    """What the walks learnt of a region's whole population, to plan the next walk.

    ``creation_times`` holds the creation time of every job the walks saw, matching the
    filters or not, in ascending order; ``sorted`` says whether the endpoint has honoured
    the newest-first order (when not, every walk goes to the end).
    """

    creation_times: array[float] = field(default_factory=lambda: array("d"))
    sorted: bool = True

    @property
    def pages(self) -> int:
        """Pages a walk of the whole population takes."""
        return max(1, math.ceil(len(self.creation_times) / PAGE_SIZE))

    @property
    def newest(self) -> float | None:
        """The creation time of the newest job seen, None when none was."""
        return self.creation_times[-1] if self.creation_times else None

    def jobs_created_since(self, moment: float) -> int:
        """How many known jobs were created at or after ``moment``."""
        return len(self.creation_times) - bisect.bisect_left(self.creation_times, moment)


@dataclass(frozen=True)
class Listing:
    """The jobs of one account and region after a refresh, and what the next refresh plans from.

    ``jobs`` match every filter, sorted by name; ``full`` says whether this was a full
    listing (the first, or a ``cache.full_resync``). ``active_outside_filter`` are the jobs in an active state that the status
    filter leaves out: they are read again like the published ones, since they may end in
    a status the filter lets in. ``descriptions`` holds what the describes this listing
    sent answered, for the describe step to use rather than ask again. ``problems`` counts
    the summaries this refresh's requests returned that were skipped or left fields out.
    ``describe_denied`` remembers that describing was refused, so walks go deep instead
    until the next full listing.
    """

    jobs: tuple[TuningJob, ...]
    full: bool
    problems: SummaryProblems = field(default_factory=SummaryProblems)
    population: Population = field(default_factory=Population)
    active_outside_filter: tuple[TuningJob, ...] = ()
    descriptions: Mapping[str, JobDescription] = field(default_factory=lambda: MappingProxyType({}))
    describe_denied: bool = False
