"""``batchrun run``: plan, then submit, poll, download and record every job not yet done."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import click

from batchrun import planning, protocol
from batchrun.api import RunComfyClient
from batchrun.api.client import api_lanes
from batchrun.cli.files import folder_problem
from batchrun.cli.options import (
    USD, FiniteRange, FolderPath, checked_api_access, db_option, json_option, loading_options, manifest_argument,
)
from batchrun.cli.plan import opened_store
from batchrun.cli.progress import LiveProgress, LogProgress, MessageLog
from batchrun.cli.render import console, print_json, usd
from batchrun.download import Downloader
from batchrun.errors import ConfigError
from batchrun.pool import Runner, RunOptions, RunSummary, UnknownSubmitPolicy
from batchrun.states import JobState
from batchrun.store.runlock import run_lock

SIM_TOKEN = "sim-token"


@click.command()
@manifest_argument
@db_option
@loading_options
@click.option("--out", "out_dir", type=FolderPath(), envvar="BATCHRUN_OUT",
              show_envvar=True, help="Output folder (default: the manifest's `output.dir`).")
@click.option("-c", "--concurrency", type=click.IntRange(1, 10_000), default=10, show_default=True,
              envvar="BATCHRUN_CONCURRENCY", show_envvar=True,
              help="Most jobs submitted and unfinished at RunComfy at any moment, for the whole campaign "
              "(all runners together when several share a PostgreSQL database).")
@click.option("--local-concurrency", type=click.IntRange(1, 10_000), default=None, envvar="BATCHRUN_LOCAL_CONCURRENCY",
              show_envvar=True, help="This runner's own share of --concurrency (default: all of it).")
@click.option("--lease", "lease_seconds", type=FiniteRange(0.5, 86_400), default=60.0, show_default=True,
              envvar="BATCHRUN_LEASE", show_envvar=True,
              help="Seconds without a heartbeat after which other runners take this runner's jobs over.")
@click.option("--poll-lateness", type=FiniteRange(0.005, 1.0), default=0.03, show_default=True,
              envvar="BATCHRUN_POLL_LATENESS", show_envvar=True,
              help="How late a finished job may be noticed, as a fraction of the jobs' learned mean duration: "
              "lower finishes sooner with more status requests, higher spends fewer requests (see README, "
              "Performance).")
@click.option("--submit-parallelism", type=click.IntRange(1, 64), default=4, show_default=True,
              envvar="BATCHRUN_SUBMIT_PARALLELISM", show_envvar=True,
              help="Most submit requests in flight at once; a crash can leave at most this many jobs in doubt "
              "(see --on-unknown-submit).")
@click.option("--downloads", type=click.IntRange(1, 64), default=4, show_default=True,
              envvar="BATCHRUN_DOWNLOADS", show_envvar=True, help="Most simultaneous downloads.")
@click.option("--base-url", envvar=protocol.BASE_URL_ENV, show_envvar=True, default=protocol.DEFAULT_BASE_URL,
              show_default=True, help="RunComfy API base URL. The token is read from RUNCOMFY_API_TOKEN.")
@click.option("--on-unknown-submit", "unknown_submit", type=click.Choice([p.value for p in UnknownSubmitPolicy]),
              default=UnknownSubmitPolicy.HOLD.value, show_default=True, envvar="BATCHRUN_ON_UNKNOWN_SUBMIT",
              show_envvar=True,
              help="Jobs whose submit answer was lost (RunComfy may have created and billed them): "
              "hold them in `submitting`, resubmit them (may pay twice) or fail them.")
@click.option("--budget", type=USD, envvar="BATCHRUN_BUDGET", show_envvar=True,
              help="USD cap on the estimated cost of everything submitted (default: the manifest's `budget`); "
              "jobs beyond it stay pending.")
@click.option("--max-file-size", type=click.IntRange(1, 1_000_000), default=2048, show_default=True,
              envvar="BATCHRUN_MAX_FILE_MB", show_envvar=True, help="Refuse result files larger than this many MB.")
@click.option("--no-verify", is_flag=True, help="Do not re-hash the files of done jobs at start-up.")
@click.option("--simulate", is_flag=True,
              help="Run against the embedded RunComfy simulator on 127.0.0.1 (no account, no network).")
@click.option("--sim-latency", default="uniform:0.3-1.2", show_default=True,
              help="With --simulate: generation latency (e.g. 0.5, uniform:0.2-1, lognormal:2,0.6).")
@click.option("--sim-failure-rate", type=FiniteRange(0, 1), default=0.0, show_default=True,
              help="With --simulate: fraction of generations that fail.")
@click.option("--sim-faults", default="", help="With --simulate: faults, e.g. server_error=0.1,rate_limit=0.05.")
@json_option
def run(
    manifest: Path,
    db: str | None,
    model: str | None,
    allow_unknown_model: bool,
    max_jobs: int,
    prices_file: Path | None,
    out_dir: Path | None,
    concurrency: int,
    poll_lateness: float,
    local_concurrency: int | None,
    lease_seconds: float,
    submit_parallelism: int,
    downloads: int,
    base_url: str,
    unknown_submit: str,
    budget: float | None,
    max_file_size: int,
    no_verify: bool,
    simulate: bool,
    sim_latency: str,
    sim_failure_rate: float,
    sim_faults: str,
    as_json: bool,
) -> None:
    """Run every job of MANIFEST that is not done yet; safe to kill and run again at any moment.

    \b
    Exit codes: 0 all done, 1 some jobs failed or were left undone, 2 usage/manifest/auth error,
    130 interrupted (Ctrl-C). The first Ctrl-C stops new submissions and waits for the jobs in
    flight; the second exits at once. Both leave a database the next run resumes from.
    """
    campaign = planning.load(
        manifest, model=model, allow_unknown_model=allow_unknown_model, max_jobs=max_jobs, prices_file=prices_file
    )
    token = SIM_TOKEN if simulate else os.environ.get(protocol.TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(
            f"{protocol.TOKEN_ENV} is not set: export your RunComfy API token, or use --simulate to try batchrun offline"
        )
    options = RunOptions(
        concurrency=concurrency,
        submit_parallelism=submit_parallelism,
        downloads=downloads,
        unknown_submit=UnknownSubmitPolicy(unknown_submit),
        verify_done=not no_verify,
        budget=budget if budget is not None else campaign.budget,
        local_concurrency=local_concurrency,
        lease_seconds=lease_seconds,
        poll_lateness=poll_lateness,
    )
    if not simulate:
        base_url, token = checked_api_access(base_url, token)  # before anything is written
    output_dir = (out_dir or campaign.output_dir).resolve()
    _ensure_output_dir(output_dir)
    with (
        _api(simulate, base_url, sim_latency, sim_failure_rate, sim_faults) as api_url,
        opened_store(db, manifest) as store,
        run_lock(store.engine) as alone,
    ):
        options = dataclasses.replace(options, alone=alone)
        report = planning.plan_campaign(
            campaign, store, output_dir=output_dir, budget=options.budget
        )
        if not as_json:
            counts = report.counts
            click.echo(
                f"campaign {campaign.name}: {report.estimate.jobs} jobs ({counts.new} new, {counts.done} done, "
                f"{counts.changed} changed{f', {counts.renamed} renamed' if counts.renamed else ''}"
                f"{f', {counts.removed} dropped from the manifest' if counts.removed else ''}), "
                f"estimate {usd(report.estimate.usd)}"
                f"{f' (budget {usd(options.budget)})' if options.budget is not None else ''}; "
                f"{'simulator ' if simulate else ''}{api_url}"
            )
            for note in report.notes:
                click.echo(f"note: {note}")
        summary = _execute(
            store, report.campaign_id, campaign.name, output_dir, api_url, token, options, as_json,
            max_bytes=max_file_size * 1024 * 1024,
        )
    if as_json:
        print_json(summary_json(summary))
    else:
        show_summary(summary, unknown_policy=options.unknown_submit)
    click.get_current_context().exit(summary.exit_code)


def _ensure_output_dir(output_dir: Path) -> None:
    """Create the output folder user-only, or say in one line why it cannot be written."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.access(output_dir, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        raise ConfigError(f"{output_dir}: cannot write the output folder: {folder_problem(output_dir, error)}") from None


@contextlib.contextmanager
def _api(simulate: bool, base_url: str, latency: str, failure_rate: float, faults: str) -> Iterator[str]:
    """The API base URL to use: the real (or given) service, or a simulator started for this run."""
    if not simulate:
        yield base_url.rstrip("/")
        return
    from batchrun.sim import Faults, Latency, SimConfig, Simulator

    try:
        config = SimConfig(
            token=SIM_TOKEN,
            latency=Latency.parse(latency),
            failure_rate=failure_rate,
            faults=Faults.parse(faults) if faults else Faults(),
        )
    except ValueError as error:
        raise ConfigError(f"--sim-*: {error}") from None
    with Simulator(config) as simulator:
        yield simulator.base_url


def _execute(
    store: Any,
    campaign_id: int,
    campaign_name: str,
    output_dir: Path,
    base_url: str,
    token: str,
    options: RunOptions,
    quiet: bool,
    *,
    max_bytes: int,
) -> RunSummary:
    terminal = console(stderr=False)
    live = not quiet and terminal.is_terminal

    async def main() -> RunSummary:
        async with RunComfyClient(base_url, token, max_connections=api_lanes(options.concurrency)) as client, Downloader(
            max_connections=options.downloads, max_bytes=max_bytes, api_credentials=(client.base_url, token)
        ) as downloader:
            await anyio.to_thread.run_sync(client.check_host_resolves)
            plain = MessageLog() if quiet else LogProgress()
            progress_cm = LiveProgress(terminal) if live else contextlib.nullcontext(plain)
            with progress_cm as progress:
                runner = Runner(
                    store,
                    campaign_id=campaign_id,
                    campaign_name=campaign_name,
                    output_dir=output_dir,
                    client=client,
                    downloader=downloader,
                    options=options,
                    progress=progress,
                )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_watch_signals, runner)
                    summary = await runner.run()
                    tg.cancel_scope.cancel()
                return summary

    return anyio.run(main)


async def _watch_signals(runner: Runner) -> None:
    """First Ctrl-C (or SIGTERM): drain; second: stop at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        received = 0
        async for _ in signals:
            received += 1
            if received == 1:
                runner.interrupt()
            else:
                runner.abort()
                return


def summary_json(summary: RunSummary) -> dict[str, Any]:
    return {
        "campaign": summary.campaign,
        "output_dir": str(summary.output_dir),
        "exit_code": summary.exit_code,
        "counts": {state.value: summary.counts.get(state, 0) for state in JobState},
        "total": summary.total,
        "submitted": summary.submitted,
        "downloaded": summary.downloaded,
        "failures": [{"key": key, "error": error} for key, error in summary.failures],
        "held_in_submitting": summary.held,
        "stop_reason": summary.stop_reason,
        "interrupted": summary.interrupted,
        "wall_seconds": round(summary.wall_seconds, 3),
    }


def show_summary(summary: RunSummary, *, unknown_policy: UnknownSubmitPolicy) -> None:
    out = console()
    counts = summary.counts
    done = counts.get(JobState.DONE, 0)
    out.print(
        f"{summary.campaign}: {done}/{summary.total} done, "
        f"{counts.get(JobState.FAILED, 0)} failed, {counts.get(JobState.CANCELLED, 0)} cancelled, "
        f"{counts.get(JobState.PENDING, 0)} pending, "
        f"{sum(counts.get(s, 0) for s in (JobState.QUEUED, JobState.RUNNING, JobState.DOWNLOADING))} unfinished "
        f"in {summary.wall_seconds:.1f}s"
    )
    out.print(f"output: {summary.output_dir}")
    if summary.failures:
        reasons = Counter(error for _, error in summary.failures)
        out.print("failed this run:")
        for reason, count in reasons.most_common(10):
            keys = [key for key, error in summary.failures if error == reason][:3]
            out.print(f"  {count} × {reason}  (e.g. {', '.join(keys)})")
    if summary.held:
        out.print(
            f"{len(summary.held)} job(s) held in `submitting`: their submit answer was lost, so RunComfy may or may "
            f"not have them (and may bill them): {', '.join(summary.held[:5])}{' …' if len(summary.held) > 5 else ''}"
        )
        if unknown_policy is UnknownSubmitPolicy.HOLD:
            out.print("  rerun with --on-unknown-submit=resubmit to submit them again (may pay twice), or =fail to give up")
    if summary.stop_reason:
        out.print(f"stopped: {summary.stop_reason}")


COMMANDS = [run]
