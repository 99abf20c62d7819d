"""``batchrun validate`` and ``batchrun plan``: check and store a campaign without spending a cent."""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from batchrun import planning
from batchrun.cli.options import USD, db_option, json_option, loading_options, manifest_argument
from batchrun.cli.render import console, print_json, short, usd
from batchrun.errors import ManifestError, Problem
from batchrun.manifest import Campaign
from batchrun.store import Store, open_store, resolve_db_url


@contextmanager
def opened_store(db: str | None, manifest: Path) -> Iterator[Store]:
    """The campaign's store: --db / BATCHRUN_DB, else a SQLite file next to the manifest."""
    store = open_store(resolve_db_url(db, manifest.resolve()))
    try:
        yield store
    finally:
        store.close()


def _problem_json(problem: Problem) -> dict[str, object]:
    where = problem.location
    return {"file": where.path, "line": where.line, "column": where.column, "field": problem.field or None,
            "message": problem.message}


@click.command()
@manifest_argument
@loading_options
@json_option
def validate(
    manifest: Path, model: str | None, allow_unknown_model: bool, max_jobs: int, prices_file: Path | None, as_json: bool
) -> None:
    """Check every job of MANIFEST against its model's published input schema.

    Prints every problem at once as `file:line:col: field: message` and exits 2; writes nothing.
    """
    try:
        campaign = planning.load(
            manifest, model=model, allow_unknown_model=allow_unknown_model, max_jobs=max_jobs, prices_file=prices_file
        )
    except ManifestError as error:
        if as_json:  # a script reads the problems from stdout; people still see them on stderr
            print_json({"ok": False, "problems": [_problem_json(p) for p in error.problems]})
        raise
    if as_json:
        print_json({"ok": True, "campaign": campaign.name, "jobs": campaign.job_count})
    else:
        click.echo(f"{manifest}: ok: {campaign.job_count} jobs in campaign {campaign.name!r}")


@click.command()
@manifest_argument
@db_option
@loading_options
@click.option("--budget", type=USD, envvar="BATCHRUN_BUDGET", show_envvar=True,
              help="Spending cap in USD to compare the estimate with (default: the manifest's `budget`).")
@click.option("--show", "sample", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many jobs to list.")
@json_option
def plan(
    manifest: Path,
    db: str | None,
    model: str | None,
    allow_unknown_model: bool,
    max_jobs: int,
    prices_file: Path | None,
    budget: float | None,
    sample: int,
    as_json: bool,
) -> None:
    """Store MANIFEST's jobs (idempotently) and show what would run and what it would cost.

    Planning again inserts nothing; a job whose input changed gets a new revision and the old one
    is kept in the database (see README, "Editing a campaign").
    """
    campaign = planning.load(
        manifest, model=model, allow_unknown_model=allow_unknown_model, max_jobs=max_jobs, prices_file=prices_file
    )
    with opened_store(db, manifest) as store:
        report = planning.plan_campaign(campaign, store, budget=budget, sample=sample)
    if as_json:
        print_json(plan_json(report))
    else:
        show_plan(report)


def plan_json(report: planning.PlanReport) -> dict[str, Any]:
    counts = report.counts
    return {
        "campaign": report.campaign.name,
        "manifest": str(report.campaign.manifest_path),
        "database": report.db_url,
        "output_dir": str(report.output_dir),
        "jobs": report.estimate.jobs,
        "counts": {
            "new": counts.new,
            "unchanged": counts.unchanged,
            "changed": counts.changed,
            "renamed": counts.renamed,
            "done": counts.done,
            "removed": counts.removed,
            "unlisted_kept": counts.orphaned,
        },
        "notes": list(report.notes),
        "models": [
            {"model": m.model, "jobs": m.jobs, "seconds": m.seconds, "usd": _cents(m.usd)}
            for m in report.estimate.per_model
        ],
        "seconds": report.estimate.seconds,
        "usd": _cents(report.estimate.usd),
        "budget": report.budget,
        "over_budget": report.over_budget,
        "sample": [
            {
                "key": spec.key,
                "model": spec.model,
                "output": spec.output_name,
                "input": dict(spec.input),
                "effective_input": planning.shown_input(spec),
            }
            for spec in report.estimate.sample
        ],
    }


def _cents(value: float | None) -> float | None:
    """Money as printed: USD rounded to 1/10,000 (no 2.2399999999999998)."""
    return None if value is None else round(value, 4)


def show_plan(report: planning.PlanReport) -> None:
    out = console()
    counts = report.counts
    campaign: Campaign = report.campaign
    out.print(Text.assemble(("Campaign", "bold"), f"  {campaign.name}  ({campaign.manifest_path})"))
    out.print(f"Database  {report.db_url}")
    out.print(f"Output    {report.output_dir}")
    out.print(
        f"Jobs      {report.estimate.jobs}: {counts.new} new, {counts.unchanged} unchanged "
        f"({counts.done} already done), {counts.changed} changed"
        + (f", {counts.renamed} renamed (same input: not generated again)" if counts.renamed else "")
    )
    if counts.removed or counts.orphaned:
        out.print(f"Dropped   {counts.removed + counts.orphaned} job(s) no longer in the manifest: {counts.removed} pending "
                  f"cancelled (never submitted), {counts.orphaned} in flight or done kept")
    for note in report.notes:
        out.print(f"Note      {note}")
    models = Table(title=None, show_edge=False, pad_edge=False)
    for column, justify in (("model", "left"), ("jobs", "right"), ("video seconds", "right"), ("estimated USD", "right")):
        models.add_column(column, justify=justify)  # type: ignore[arg-type]
    for m in report.estimate.per_model:
        models.add_row(m.model, str(m.jobs), f"{m.seconds:,}", usd(m.usd))
    models.add_row(Text("total", style="bold"), str(report.estimate.jobs), f"{report.estimate.seconds:,}", usd(report.estimate.usd))
    out.print(models)
    if report.budget is not None:
        verdict = "OVER BUDGET" if report.over_budget else "within budget"
        out.print(f"Budget    {usd(report.budget)}: estimate {usd(report.estimate.usd)}, {verdict}")
    if report.estimate.sample:
        shown = len(report.estimate.sample)
        out.print(f"First {shown} of {report.estimate.jobs} jobs (schema defaults in parentheses):")
        for spec in report.estimate.sample:
            out.print(f"  {spec.key}  -> {spec.output_name}")
            out.print(f"      {_input_summary(spec)}")


def _input_summary(spec: Any) -> str:
    effective = planning.shown_input(spec)
    names = sorted(effective, key=lambda name: (name != "prompt", name not in spec.input, name))
    parts = []
    for name in names:
        text = f"{name}={short(effective[name], 50)}"
        parts.append(text if name in spec.input else f"({text})")
    return " ".join(parts)


COMMANDS = [validate, plan]
