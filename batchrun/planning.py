"""From a loaded campaign to stored jobs and a plan report.

``summarize`` is pure (one pass over the campaign's jobs, memory independent of their number);
``plan_campaign`` is the only function here that writes, through the store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrun import catalog
from batchrun.cost import PriceTable, load_price_file
from batchrun.domain import JobSpec
from batchrun.errors import ConfigError
from batchrun.manifest import Campaign, load_campaign
from batchrun.manifest.expand import file_system_name
from batchrun.outputs import complete_rename, rename_output
from batchrun.store import CampaignRecord, Store
from batchrun.store.planning import Move
from batchrun.validation import effective_input


@dataclass
class ModelTotals:
    """What one model's jobs add up to."""

    model: str
    jobs: int = 0
    seconds: int = 0
    usd: float | None = 0.0

    def add(self, seconds: int, usd: float | None) -> None:
        self.jobs += 1
        self.seconds += seconds
        self.usd = None if usd is None or self.usd is None else self.usd + usd


@dataclass(frozen=True)
class Estimate:
    """The campaign's size and cost, per model and in total."""

    per_model: tuple[ModelTotals, ...]
    sample: tuple[JobSpec, ...]

    @property
    def jobs(self) -> int:
        return sum(m.jobs for m in self.per_model)

    @property
    def seconds(self) -> int:
        return sum(m.seconds for m in self.per_model)

    @property
    def usd(self) -> float | None:
        values = [m.usd for m in self.per_model]
        return None if any(v is None for v in values) else round(sum(v for v in values if v is not None), 6)


def video_seconds(spec: JobSpec) -> int:
    """Seconds of video a job asks for: its ``duration``, else the model's default."""
    duration = spec.input.get("duration")
    if isinstance(duration, int) and not isinstance(duration, bool):
        return duration
    info = catalog.lookup(spec.model)
    return info.default_duration if info else 0


class Tally:
    """Adds up jobs as they stream past, so estimating costs no extra pass over a big campaign."""

    def __init__(self, prices: PriceTable, *, sample: int = 10) -> None:
        self.prices = prices
        self.sample = sample
        self.totals: dict[str, ModelTotals] = {}
        self.first: list[JobSpec] = []

    def add(self, spec: JobSpec) -> float | None:
        """Count one job; returns its estimated cost."""
        usd = self.prices.estimate(spec.model, spec.input)
        self.totals.setdefault(spec.model, ModelTotals(spec.model)).add(video_seconds(spec), usd)
        if len(self.first) < self.sample:
            self.first.append(spec)
        return usd

    def watch(self, specs: Iterable[JobSpec]) -> Iterator[JobSpec]:
        """Pass ``specs`` through, counting each one."""
        for spec in specs:
            self.add(spec)
            yield spec

    def estimate(self) -> Estimate:
        return Estimate(tuple(self.totals[m] for m in sorted(self.totals)), tuple(self.first))


def summarize(specs: Iterable[JobSpec], prices: PriceTable, *, sample: int = 10) -> Estimate:
    """Totals per model and the first ``sample`` jobs, in one pass."""
    tally = Tally(prices, sample=sample)
    for spec in specs:
        tally.add(spec)
    return tally.estimate()


def shown_input(spec: JobSpec) -> dict[str, Any]:
    """The input as RunComfy will see it, schema defaults included (they are not sent)."""
    info = catalog.lookup(spec.model)
    return dict(effective_input(info, spec.input)) if info else dict(spec.input)


def defaulted_fields(spec: JobSpec) -> list[str]:
    """Fields whose value comes from the schema default rather than the manifest."""
    return [name for name in shown_input(spec) if name not in spec.input]


@dataclass(frozen=True)
class PlanReport:
    campaign: Campaign
    estimate: Estimate
    counts: Any  # store.PlanCounts
    db_url: str
    budget: float | None = None
    campaign_id: int = 0
    output_dir: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def over_budget(self) -> bool:
        usd = self.estimate.usd
        return self.budget is not None and usd is not None and usd > self.budget


def load(
    manifest: Path,
    *,
    model: str | None = None,
    allow_unknown_model: bool = False,
    max_jobs: int = 1_000_000,
    prices_file: Path | None = None,
) -> Campaign:
    """Load, expand and validate a manifest (raises ManifestError/ConfigError; writes nothing)."""
    prices = load_price_file(prices_file) if prices_file is not None else None
    if not manifest.exists():
        raise ConfigError(f"{manifest}: no such file")
    if manifest.is_dir():
        raise ConfigError(f"{manifest}: is a directory, not a manifest")
    return load_campaign(
        manifest, model=model, allow_unknown_model=allow_unknown_model, max_jobs=max_jobs, prices=prices
    )


def planned_elsewhere(recorded: str | None, here: str) -> bool:
    """Whether a campaign recorded as planned from ``recorded`` belongs to another manifest file
    than ``here``: one that still exists and is not the same file (a moved manifest, or another
    machine's path that does not exist here, is the same campaign)."""
    if not recorded or recorded == here or not os.path.isfile(recorded):
        return False
    try:
        return not os.path.samefile(recorded, here)
    except OSError:
        return False


def _check_same_manifest(campaign: Campaign, store: Store) -> None:
    """Refuse to plan a manifest into a campaign of the same name that another manifest file, still
    present, was planned from: the two would take the campaign from each other (cancelling each
    other's pending jobs as "removed" and moving its output folder). Two `campaign.yaml` of
    different folders in one shared database, or `demo.csv` exported beside `demo.yaml`, share a
    default name. A manifest that moved (its old path is gone), or the same file reached by another
    path, or another machine's copy (a path that does not exist here) is the same campaign."""
    existing = store.get_campaign(campaign.name)
    here = str(campaign.manifest_path)
    there = existing.manifest_path if existing is not None else None
    if not planned_elsewhere(there, here):
        return
    raise ConfigError(
        f"{here}: campaign `{campaign.name}` in {store.label} was planned from {there}, which is still there; "
        "give this manifest its own `name:` (a CSV: another file name) or another --db, "
        "or move the old manifest away if this one replaces it")


def _nesting(other_dir: str, output: Path) -> tuple[str, str] | None:
    """How two output folders hold the same files: the prefixes that make this campaign's and the
    other's file names relative to the outer folder (``("", "")`` for one folder), or None when
    neither folder is inside the other."""
    if _same_path(other_dir, str(output)):
        return "", ""
    other = Path(other_dir)
    if output.is_relative_to(other):
        return output.relative_to(other).as_posix() + "/", ""
    if other.is_relative_to(output):
        return "", other.relative_to(output).as_posix() + "/"
    return None


def _files_in_common(campaign: Campaign, store: Store, other: CampaignRecord, ours: str, theirs: str
                     ) -> tuple[str, int]:
    """The first of this campaign's files that ``other`` writes too (relative to the outer folder),
    and how many there are, as a file system that ignores case and normalization compares them."""
    taken = {file_system_name(theirs + name) for name in store.output_names(other.id)}
    first, count = "", 0
    if taken:
        for spec in campaign.jobs():  # a second pass, only when another campaign shares the folder
            if file_system_name(ours + spec.output_name) in taken:
                first, count = first or ours + spec.output_name, count + 1
    return first, count


def _check_shared_folder(campaign: Campaign, store: Store, output: Path) -> list[str]:
    """Refuse a campaign that writes some of the files another campaign writes (one output folder,
    or one inside the other's): each run would take the other's files (keeping them aside as
    ``.kept``) and download its own again. When the other campaign's manifest is not on this
    machine, it may be another machine's folder of the same path: a note rather than a refusal.
    The same manifest planned before under another ``name:`` is this campaign's past, not a rival."""
    here = str(campaign.manifest_path)
    notes: list[str] = []
    for other in store.list_campaigns():
        nesting = None if other.name == campaign.name else _nesting(other.output_dir, output)
        if nesting is None or _same_path(other.manifest_path, here):
            continue
        first, count = _files_in_common(campaign, store, other, *nesting)
        if not count:
            continue
        more = f" and {count - 1} more" if count > 1 else ""
        where = Path(other.output_dir) if nesting[1] == "" else output
        if os.path.isfile(other.manifest_path):
            raise ConfigError(
                f"{here}: campaign `{other.name}` (planned from {other.manifest_path}) writes the same files "
                f"in {where}: `{first}`{more}; each run would take the other's files: give each campaign "
                "its own `output.dir` (or --out), or file names that differ")
        notes.append(
            f"campaign `{other.name}` (planned from {other.manifest_path}, not on this machine) also writes "
            f"`{first}`{more} in {where}: if both run on one machine they will take each other's files")
    return notes


def _same_path(a: str, b: str) -> bool:
    """Whether two paths name one file or folder (both existing, or spelled alike)."""
    try:
        return a == b or os.path.samefile(a, b)
    except OSError:
        return False


def plan_campaign(
    campaign: Campaign,
    store: Store,
    *,
    output_dir: Path | None = None,
    budget: float | None = None,
    sample: int = 10,
) -> PlanReport:
    """Store the campaign's jobs idempotently and report what would run and what it costs."""
    _check_same_manifest(campaign, store)
    tally = Tally(campaign.prices, sample=sample)
    output = (output_dir or campaign.output_dir).resolve()
    shared = _check_shared_folder(campaign, store, output)
    record = store.ensure_campaign(
        campaign.name,
        manifest_path=str(campaign.manifest_path),
        output_dir=str(output),
        settings={"prices": campaign.prices.to_dict(), "budget": campaign.budget if budget is None else budget},
    )
    costs: dict[str, float | None] = {}  # estimated once per job: the tally's value is the row's

    def counted() -> Iterator[JobSpec]:
        for spec in campaign.jobs():
            costs[spec.key] = tally.add(spec)
            yield spec

    counts = store.apply_plan(record.id, counted(), cost=lambda spec: costs.pop(spec.key))
    notes = shared + move_renamed_files(store, output, counts.moves)
    return PlanReport(
        campaign=campaign,
        estimate=tally.estimate(),
        counts=counts,
        db_url=store.label,
        budget=campaign.budget if budget is None else budget,
        campaign_id=record.id,
        output_dir=output,
        notes=tuple(notes),
    )


def move_renamed_files(store: Store, output: Path, moves: Iterable[Move]) -> list[str]:
    """Give done jobs whose output name changed their file under the new name (sidecar too).

    A file is moved only when it is in this output folder, has the job's recorded size and the
    same extension as the new name (an image kept for an output without video stays), and was
    not itself put there by an earlier move of this plan. The record follows the video at once.
    Returns a line for each file that could not take its new name.
    """
    notes: list[str] = []
    inside = str(output) + os.sep
    targets: set[Path] = set()
    for move in moves:
        current, target = Path(move.output_path), output / move.new_name
        if not move.output_path.startswith(inside) or current in targets or current.suffix != target.suffix:
            continue
        try:
            if not current.exists():
                complete_rename(current, target)  # a crash may have cut an earlier move short
            if not current.is_file() or current.stat().st_size != move.size:
                continue
            moved = rename_output(current, target)
        except OSError as error:
            notes.append(f"{move.key}: could not rename {current.name} to {move.new_name}: {error.strerror or error}")
            continue
        if not moved:
            notes.append(f"{move.key}: {move.new_name} already exists; the file stays {current.name}")
            continue
        targets.add(target)
        store.update_output_path(move.job_id, str(target))
    return notes
