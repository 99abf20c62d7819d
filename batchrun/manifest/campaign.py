"""The loaded campaign: what ``load_campaign`` returns and every other layer reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from batchrun.cost import PriceTable
from batchrun.domain import JobSpec
from batchrun.manifest.expand import Plan


@dataclass(frozen=True)
class Campaign:
    """A loaded, fully validated manifest."""

    name: str
    manifest_path: Path  #: absolute
    output_dir: Path  #: absolute
    budget: float | None  #: USD, from the manifest's ``budget:``
    prices: PriceTable  #: defaults + manifest ``prices:`` (+ ``--prices`` on top)
    job_count: int
    _plan: Plan = field(repr=False, compare=False)

    def jobs(self) -> Iterator[JobSpec]:
        """Every job, in manifest order (job, then matrix combination, then take); lazily."""
        return self._plan.walk()
