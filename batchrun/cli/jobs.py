"""``batchrun cancel``, ``batchrun retry`` and ``batchrun export``: acting on a campaign's jobs.

``cancel`` and ``retry`` only ever make moves the state machine allows, through the store's
compare-and-set transitions, so a ``batchrun run`` working on the same database at the same time
sees them as "changed behind our back" and stops following those jobs.
"""

from __future__ import annotations

import csv
import itertools
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import anyio
import click
from rich.text import Text

from batchrun import export as exporting
from batchrun import protocol
from batchrun.api import RunComfyClient
from batchrun.cli.files import output_file
from batchrun.cli.options import checked_api_access, db_option, json_option
from batchrun.cli.render import console, print_json, short, table
from batchrun.cli.target import opened_target, opened_target_and_keys, select_jobs
from batchrun.domain import Job
from batchrun.errors import ApiError, AuthError, ConfigError
from batchrun.states import AT_RUNCOMFY, JobState
from batchrun.store import StaleJobError, Store

RETRYABLE = frozenset({JobState.FAILED, JobState.CANCELLED, JobState.DONE})
CANCEL_REASON = "cancelled by `batchrun cancel`"
REMOTE_REASON = "cancelled at RunComfy by `batchrun cancel`"
RETRY_REASON = "put back to pending by `batchrun retry`"
#: jobs listed one per line by a command (all of them with --json)
SHOWN_ROWS = 100
#: jobs cancelled per store transaction
PAGE = 500
#: simultaneous cancel requests to RunComfy
CANCEL_CONCURRENCY = 8


@dataclass(frozen=True)
class Outcome:
    """What a command did to one job."""

    key: str
    state: JobState  #: the state it was found in
    action: str  #: ``cancelled``, ``cancelled_at_runcomfy``, ``not_cancellable``, ``reset``, ``skipped``, ``error``
    message: str
    ok: bool = True  #: False when the job is not where the user asked it to be

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "state": self.state.value, "action": self.action, "message": self.message,
                "ok": self.ok}


def show_outcomes(title: str, outcomes: list[Outcome], as_json: bool, extra: dict[str, Any]) -> None:
    if as_json:
        counts: dict[str, int] = {}
        for o in outcomes:
            counts[o.action] = counts.get(o.action, 0) + 1
        print_json({**extra, "counts": counts, "jobs": [o.as_json() for o in outcomes]})
        return
    out = console()
    out.print(Text(title))
    if outcomes:
        first = sorted(outcomes, key=lambda o: o.ok)  # what still needs attention comes first
        rows = [[o.key, o.state.value, o.message] for o in first[:SHOWN_ROWS]]
        table(out, ("key", "was", "result"), rows)
    if len(outcomes) > SHOWN_ROWS:
        out.print(Text(f"… and {len(outcomes) - SHOWN_ROWS} more (--json lists every job)"))


# --- cancel ----------------------------------------------------------------------------------


@click.command()
@click.argument("args", nargs=-1, metavar="[CAMPAIGN|MANIFEST] [KEY]...")
@click.option("--all", "all_jobs", is_flag=True, help="Cancel every job not finished yet.")
@db_option
@click.option("--base-url", envvar=protocol.BASE_URL_ENV, show_envvar=True, default=protocol.DEFAULT_BASE_URL,
              show_default=True, help="RunComfy API base URL. The token is read from RUNCOMFY_API_TOKEN.")
@json_option
def cancel(args: tuple[str, ...], all_jobs: bool, db: str | None, base_url: str, as_json: bool) -> None:
    """Cancel jobs: pending ones here, queued ones at RunComfy.

    \b
    pending            cancelled locally (nothing was sent; no token needed)
    queued / running   RunComfy is asked to cancel (needs RUNCOMFY_API_TOKEN); only queued jobs
                       can be: a job already generating runs to completion and is billed
    submitting         cannot be cancelled: its request id is unknown
    A `batchrun run` on the same database stops waiting for the jobs cancelled. Exit code 1 when
    some jobs could not be cancelled.
    """
    with opened_target_and_keys(db, args) as (target, keys):
        if all_jobs == bool(keys):
            raise ConfigError("give the keys of the jobs to cancel, or --all (not both)")
        store, campaign = target.store, target.campaign
        assert campaign is not None
        if all_jobs:  # pending jobs are streamed: a campaign may hold 100,000 of them
            in_flight = store.jobs_in_states(campaign.id, [JobState.SUBMITTING, *AT_RUNCOMFY])
            pending = store.iter_jobs(campaign.id, include_superseded=True, states=[JobState.PENDING])
            chosen: Iterable[Job] = itertools.chain(in_flight, pending)
            remote = [job for job in in_flight if job.state in AT_RUNCOMFY and job.request_id]
        else:
            chosen = select_jobs(store, campaign, keys)
            remote = [job for job in chosen if job.state in AT_RUNCOMFY and job.request_id]
        token = os.environ.get(protocol.TOKEN_ENV, "").strip()
        if remote and not token:
            raise ConfigError(
                f"{len(remote)} of these jobs are at RunComfy: set {protocol.TOKEN_ENV} to cancel them there "
                "(pending jobs alone need no token)"
            )
        if remote:
            base_url, token = checked_api_access(base_url, token)
        outcomes = cancel_jobs(store, chosen, base_url=base_url, token=token)
    cancelled = sum(o.action.startswith("cancelled") for o in outcomes)
    billed = sum(o.action == "not_cancellable" for o in outcomes)
    show_outcomes(
        f"campaign {campaign.name}: {cancelled} of {len(outcomes)} job(s) cancelled"
        + (f"; {billed} still running at RunComfy (billed)" if billed else ""),
        outcomes, as_json, {"campaign": campaign.name, "cancelled": cancelled},
    )
    click.get_current_context().exit(0 if all(o.ok for o in outcomes) else 1)


def cancel_jobs(store: Store, chosen: Iterable[Job], *, base_url: str, token: str) -> list[Outcome]:
    """Cancel each job where it is; the outcomes come back in the order of ``chosen``."""
    results: dict[int, Outcome] = {}
    order: list[int] = []
    remote: list[Job] = []
    jobs = iter(chosen)
    while page := list(itertools.islice(jobs, PAGE)):
        pending = [job for job in page if job.state is JobState.PENDING]
        cancelled = store.cancel_pending([job.id for job in pending], CANCEL_REASON)
        for job in page:
            order.append(job.id)
            if job.state is JobState.PENDING and job.id in cancelled:
                results[job.id] = Outcome(job.key, job.state, "cancelled", "cancelled (was never sent)")
                continue
            if job.state is JobState.PENDING:  # a runner took it meanwhile: cancel it where it is now
                job = store.get_job(job.id) or job
            if job.state in AT_RUNCOMFY and job.request_id and token:
                remote.append(job)
            else:
                results[job.id] = _local_outcome(job)
    if remote:
        results.update(anyio.run(_cancel_at_runcomfy, store, remote, base_url, token))
    return [results[job_id] for job_id in order]


def _local_outcome(job: Job) -> Outcome:
    """A job this command cannot cancel: say why."""
    if job.state is JobState.SUBMITTING:
        return Outcome(job.key, job.state, "skipped",
                       "cannot be cancelled: its submission is under way or its answer was lost, "
                       "so its request id is unknown", ok=False)
    if job.state in AT_RUNCOMFY:
        return Outcome(job.key, job.state, "skipped",
                       f"now at RunComfy: set {protocol.TOKEN_ENV} to cancel it there", ok=False)
    if job.state is JobState.DOWNLOADING:
        return Outcome(job.key, job.state, "skipped", "already finished at RunComfy (downloading)")
    return Outcome(job.key, job.state, "skipped", f"already {job.state.value}")


async def _cancel_at_runcomfy(store: Store, jobs: list[Job], base_url: str, token: str) -> dict[int, Outcome]:
    results: dict[int, Outcome] = {}
    auth: list[AuthError] = []
    limiter = anyio.CapacityLimiter(CANCEL_CONCURRENCY)
    async with RunComfyClient(base_url, token, max_connections=CANCEL_CONCURRENCY) as client:

        async def one(job: Job) -> None:
            async with limiter:
                if auth:
                    return
                try:
                    results[job.id] = await _cancel_one(store, client, job)
                except AuthError as error:
                    auth.append(error)

        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(one, job)
    if auth:
        raise auth[0]
    return results


async def _cancel_one(store: Store, client: RunComfyClient, job: Job) -> Outcome:
    assert job.request_id is not None
    try:
        report = await client.cancel(job.request_id)
    except AuthError:
        raise
    except ApiError as error:
        return Outcome(job.key, job.state, "error", f"RunComfy did not cancel it: {error.message}", ok=False)
    if report.outcome is None and report.status is None:  # the answer did not say: ask
        try:
            status = await client.status(job.request_id)
        except AuthError:
            raise
        except ApiError as error:
            return Outcome(job.key, job.state, "error", "RunComfy's cancel answer did not say whether it was "
                           f"cancelled, and its status could not be read: {error.message}", ok=False)
        report = replace(report, cancelled=status.status == "cancelled", status=status.status)
        if status.status == "queued":
            return Outcome(job.key, job.state, "not_cancellable", "RunComfy's cancel answer did not say whether "
                           "it was cancelled, and it is still queued; run `batchrun cancel` again", ok=False)
    if report.cancelled or report.status == "cancelled":  # cancelled now, or by an earlier request
        try:
            store.mark_cancelled(job.id, REMOTE_REASON)
        except StaleJobError:  # a runner saw the cancellation first, or the job moved on
            now = store.get_job(job.id)
            if now is not None and now.state is not JobState.CANCELLED:
                return Outcome(job.key, job.state, "cancelled_at_runcomfy",
                               f"cancelled at RunComfy; locally it is now {now.state.value}")
        return Outcome(job.key, job.state, "cancelled_at_runcomfy", "cancelled at RunComfy (not billed)")
    if report.status in ("completed", "failed"):
        return Outcome(job.key, job.state, "skipped",
                       f"already {report.status} at RunComfy; `batchrun run` collects it")
    if report.outcome == "not_cancellable" or report.status == "running":
        return Outcome(job.key, job.state, "not_cancellable", "still running at RunComfy, will be billed", ok=False)
    said = report.outcome or report.status or "no outcome"
    return Outcome(job.key, job.state, "not_cancellable", f"RunComfy did not cancel it ({said})", ok=False)


# --- retry -----------------------------------------------------------------------------------


@click.command()
@click.argument("args", nargs=-1, metavar="[CAMPAIGN|MANIFEST] [KEY]...")
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed job.")
@db_option
@json_option
def retry(args: tuple[str, ...], all_failed: bool, db: str | None, as_json: bool) -> None:
    """Put failed jobs (or the chosen failed, cancelled or done ones) back to pending.

    Their history stays in the database. Jobs in flight and superseded revisions are never
    touched. `batchrun run` then runs exactly these jobs again.
    """
    with opened_target_and_keys(db, args) as (target, keys):
        if all_failed == bool(keys):
            raise ConfigError("give the keys of the jobs to retry, or --failed (not both)")
        store, campaign = target.store, target.campaign
        assert campaign is not None
        chosen = (
            store.jobs_in_states(campaign.id, [JobState.FAILED], include_superseded=False)
            if all_failed
            else select_jobs(store, campaign, keys)
        )
        outcomes = [_retry_one(store, job) for job in chosen]
    reset = sum(o.action == "reset" for o in outcomes)
    show_outcomes(
        f"campaign {campaign.name}: {reset} job(s) back to pending"
        + ("; run `batchrun run` on it to run them again" if reset else ""),
        outcomes, as_json, {"campaign": campaign.name, "reset": reset},
    )


def _retry_one(store: Store, job: Job) -> Outcome:
    if job.state not in RETRYABLE:
        why = "already pending" if job.state is JobState.PENDING else f"in flight ({job.state.value}): left alone"
        return Outcome(job.key, job.state, "skipped", why, ok=job.state is JobState.PENDING)
    try:
        store.reset_to_pending(job.id, RETRY_REASON)
    except StaleJobError as error:
        return Outcome(job.key, job.state, "skipped", f"changed meanwhile (now {error.actual}): left alone", ok=False)
    was = f" (was: {short(job.error, 60)})" if job.error else ""
    return Outcome(job.key, job.state, "reset", f"pending again{was}")


# --- export ----------------------------------------------------------------------------------


@click.command("export")
@click.argument("campaign", required=False, metavar="[CAMPAIGN|MANIFEST]")
@db_option
@click.option("--format", "fmt", type=click.Choice(exporting.FORMATS), default=None,
              help="csv (itself a manifest that reruns the campaign) or jsonl. Default: from -o's suffix, else csv.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE (atomically) instead of standard output.")
@click.option("--all-revisions", is_flag=True, help="Include superseded revisions of edited jobs.")
@json_option
def export_command(
    campaign: str | None, db: str | None, fmt: str | None, output: Path | None, all_revisions: bool, as_json: bool
) -> None:
    """Write one row per job: id, model, every input field, then `_`-prefixed metadata (key, state,
    request id, times, durations, attempts, error, file, size, sha256, estimated cost).

    The CSV is itself a manifest: `batchrun run export.csv --model M` reruns the same jobs (CSV
    manifests ignore `_` columns). With -o, --json prints a summary of what was written.
    """
    if fmt is None:
        fmt = "jsonl" if (output and output.suffix.lower() in (".jsonl", ".ndjson")) or (as_json and not output) else "csv"
    with opened_target(db, campaign) as target:
        store, record = target.store, target.campaign
        assert record is not None
        with _destination(output) as stream:
            rows = write_export(store, record.id, record.name, stream, fmt=fmt, all_revisions=all_revisions)
    if output is not None:
        summary = {"campaign": record.name, "format": fmt, "rows": rows, "output": str(output)}
        if as_json:
            print_json(summary)
        else:
            click.echo(f"exported {rows} job(s) of campaign {record.name} to {output} ({fmt})")


@contextmanager
def _destination(output: Path | None) -> Iterator[TextIO]:
    if output is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with output_file(output) as stream:
        yield stream


def write_export(store: Store, campaign_id: int, name: str, stream: TextIO, *, fmt: str, all_revisions: bool) -> int:
    """Stream the campaign's jobs to ``stream``; returns how many rows were written."""
    superseded = frozenset(store.superseded_ids(campaign_id)) if all_revisions else frozenset()
    builder = exporting.LayoutBuilder(superseded=superseded)
    builder.add_all(store.iter_jobs(campaign_id, include_superseded=all_revisions))  # first pass: columns, takes
    layout = builder.build()
    rows = 0
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(layout.csv_header())
        for job in store.iter_jobs(campaign_id, include_superseded=all_revisions):
            writer.writerow(exporting.csv_row(job, name, layout))
            rows += 1
    else:
        import json

        for job in store.iter_jobs(campaign_id, include_superseded=all_revisions):
            stream.write(json.dumps(exporting.json_row(job, name, layout), ensure_ascii=False) + "\n")
            rows += 1
    return rows


COMMANDS = [cancel, retry, export_command]
