"""Planning helpers: how a manifest's specs compare with the active rows, and what to insert.

Pure (no SQL): the ``Store`` feeds it rows and writes what it decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

from batchrun.domain import JobSpec
from batchrun.states import JobState

#: rows per executemany page when planning
PAGE = 1000
#: how many superseded keys a PlanCounts carries as a sample
SAMPLE = 20


@dataclass(frozen=True)
class PlanCounts:
    """What planning a manifest did (or would do) to a campaign."""

    new: int = 0  #: keys not seen before: inserted as pending revision 1
    unchanged: int = 0  #: same fingerprint and output name: nothing written (includes ``done``)
    changed: int = 0  #: different fingerprint (what RunComfy is sent): a new revision was inserted
    renamed: int = 0  #: same fingerprint, new output name: the name is updated, nothing regenerated
    done: int = 0  #: unchanged and already done
    total: int = 0  #: specs in the manifest
    orphaned: int = 0  #: active keys the manifest no longer lists, in flight or finished (left alone)
    removed: int = 0  #: pending keys the manifest no longer lists: cancelled, never submitted
    superseded_keys: tuple[str, ...] = field(default=())  #: a sample (up to 20) of changed keys
    moves: tuple[Move, ...] = field(default=())  #: done jobs renamed: their files to move


@dataclass(frozen=True)
class Move:
    """A done job whose file is not under its output name (the name changed): the file should
    take it."""

    job_id: int
    key: str
    output_path: str
    new_name: str
    size: int | None


@dataclass(frozen=True)
class Active:
    """The active row of a key, as planning needs it."""

    id: int
    revision: int
    fingerprint: str
    output_name: str
    state: JobState
    output_path: str | None = None
    size: int | None = None


def new_row(spec: JobSpec, revision: int, cost: float | None) -> dict[str, Any]:
    # only the per-row columns: shared ones are bound on the statement, the rest default to NULL
    return {
        "key": spec.key,
        "revision": revision,
        "model": spec.model,
        "input": spec.input,
        "fingerprint": spec.fingerprint,
        "take": spec.take,
        "output_name": spec.output_name,
        "estimated_cost": cost,
    }


class Tally:
    """Counts for a plan, and the classification of each spec against the active row."""

    def __init__(self, existing: int) -> None:
        self.existing = existing
        self.seen: set[str] = set()
        self.new = self.unchanged = self.changed = self.renamed = self.done = self.matched = 0
        self.sample: list[str] = []
        self.moves: list[Move] = []

    def count(self, spec: JobSpec, old: Active | None) -> str:
        if spec.key in self.seen:
            raise ValueError(f"job key {spec.key!r} appears twice in one plan")
        self.seen.add(spec.key)
        if old is None:
            self.new += 1
            return "new"
        self.matched += 1
        if old.fingerprint == spec.fingerprint:
            if old.state is JobState.DONE and old.output_path and not _named(old.output_path, spec.output_name):
                # renamed now, or renamed by a plan that a crash stopped before its file moved
                self.moves.append(Move(old.id, spec.key, old.output_path, spec.output_name, old.size))
            if old.output_name != spec.output_name:  # the same video under another name: never paid again
                self.renamed += 1
                return "renamed"
            self.unchanged += 1
            if old.state is JobState.DONE:
                self.done += 1
            return "unchanged"
        self.changed += 1
        if len(self.sample) < SAMPLE:
            self.sample.append(spec.key)
        return "changed"

    def unlisted(self, active: Mapping[str, Active]) -> list[Active]:
        """The active rows whose key the manifest no longer lists (call after counting every spec)."""
        return [row for key, row in active.items() if key not in self.seen]

    def result(self, removed: int = 0) -> PlanCounts:
        return PlanCounts(
            new=self.new,
            unchanged=self.unchanged,
            changed=self.changed,
            renamed=self.renamed,
            done=self.done,
            total=len(self.seen),
            orphaned=self.existing - self.matched - removed,
            removed=removed,
            superseded_keys=tuple(self.sample),
            moves=tuple(self.moves),
        )


def _named(path: str, name: str) -> bool:
    """Whether a file path ends with the output name (its folders included)."""
    return path.endswith(("/" + name, "\\" + name.replace("/", "\\")))
