"""``batchrun status``: where a campaign (or every campaign of a database) stands right now."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.text import Text

from batchrun.cli.options import FiniteRange, db_option, json_option
from batchrun.cli.render import console, plain_table, print_json, rich_table, short, usd
from batchrun.cli.target import Target, opened_target
from batchrun.overview import WINDOW, Overview, duration_text, overview_json, rate_text
from batchrun.states import JobState
from batchrun.store import CampaignRecord, Store

#: the order states are shown in
SHOWN = (
    JobState.DONE,
    JobState.FAILED,
    JobState.CANCELLED,
    JobState.PENDING,
    JobState.SUBMITTING,
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.DOWNLOADING,
)


def campaign_overview(store: Store, campaign: CampaignRecord, *, errors: int = 5) -> Overview:
    now = store.now()
    stats = store.campaign_stats(campaign.id, since=now - WINDOW)
    return Overview(campaign.name, stats, now, tuple(store.error_groups(campaign.id, limit=errors)))


def gather(target: Target) -> list[Overview]:
    campaigns = [target.campaign] if target.campaign is not None else target.store.list_campaigns()
    return [campaign_overview(target.store, c) for c in campaigns]


@click.command()
@click.argument("campaign", required=False, metavar="[CAMPAIGN|MANIFEST]")
@db_option
@json_option
@click.option("--watch", type=FiniteRange(min=0.2, max=86400), is_flag=False, flag_value=2.0, default=None,
              metavar="[SECONDS]", help="Refresh every SECONDS (default 2) until Ctrl-C.")
def status(campaign: str | None, db: str | None, as_json: bool, watch: float | None) -> None:
    """Show where a campaign stands: jobs per state, spend, throughput, ETA, stuck jobs, errors.

    CAMPAIGN is a campaign name in --db, or a manifest path (its database defaults to the one next
    to it). Without one, every campaign of --db is listed, one line each.
    """
    with opened_target(db, campaign, need_campaign=False) as target:
        listing = target.campaign is None
        if watch is None:
            show(gather(target), listing=listing, as_json=as_json, label=target.store.label)
        else:
            watch_loop(lambda: gather(target), watch, listing=listing, as_json=as_json, label=target.store.label)


def show(overviews: list[Overview], *, listing: bool, as_json: bool, label: str) -> None:
    if as_json:
        print_json(status_json(overviews, listing=listing, label=label))
        return
    out = console()
    for renderable in renderables(overviews, listing=listing, label=label, terminal=out.is_terminal):
        out.print(renderable)


def watch_loop(
    collect: Callable[[], list[Overview]],
    interval: float,
    *,
    listing: bool,
    as_json: bool,
    label: str,
    iterations: int | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    out: Console | None = None,
) -> None:
    """Show ``collect()`` every ``interval`` seconds until Ctrl-C (or ``iterations`` refreshes).

    On a terminal one live display is redrawn in place; otherwise each refresh is printed as a
    block (a JSON document per line with ``--json``) so a log reads as a history.
    """
    out = out or console()
    count = 0

    def more() -> bool:
        return iterations is None or count < iterations

    try:
        if out.is_terminal and not as_json:
            from rich.live import Live

            with Live(console=out, auto_refresh=False) as live:
                while more():
                    live.update(Group(*renderables(collect(), listing=listing, label=label, terminal=True)),
                                refresh=True)
                    count += 1
                    if more():
                        sleep(interval)
            return
        while more():
            overviews = collect()
            if as_json:
                out.file.write(json.dumps(status_json(overviews, listing=listing, label=label), default=str) + "\n")
                out.file.flush()
            else:
                if count:
                    out.print()
                for renderable in renderables(overviews, listing=listing, label=label, terminal=False):
                    out.print(renderable)
            count += 1
            if more():
                sleep(interval)
    except KeyboardInterrupt:  # the normal way out of --watch
        return


def status_json(overviews: list[Overview], *, listing: bool, label: str) -> dict[str, Any]:
    if not listing:
        return {"database": label, **overview_json(overviews[0])}
    return {
        "database": label,
        "campaigns": [overview_json(o) for o in overviews],
        "totals": {
            "total": sum(o.total for o in overviews),
            "counts": {s.value: sum(o.count(s) for o in overviews) for s in JobState},
            "spent_usd": round(sum(o.stats.spent for o in overviews), 4),
            "remaining_usd": round(sum(o.stats.remaining for o in overviews), 4),
        },
    }


def counts_line(overview: Overview) -> str:
    shown = [f"{s.value} {overview.count(s)}" for s in SHOWN if overview.count(s) or s is JobState.DONE]
    return " · ".join(shown)


def renderables(overviews: list[Overview], *, listing: bool, label: str, terminal: bool) -> list[RenderableType]:
    if listing:
        return _listing(overviews, label, terminal)
    return _detail(overviews[0], label)


def _detail(o: Overview, label: str) -> list[RenderableType]:
    stats = o.stats
    lines = [
        Text.assemble(("Campaign ", "bold"), o.name, f"  ({label})"),
        Text(f"  jobs        {o.total}: {counts_line(o)}"),
        Text(f"  spend       {usd(stats.spent)} so far (estimated, every submission) · "
             f"{usd(stats.remaining)} remaining (pending jobs)"),
        Text(f"  throughput  {rate_text(o.recent_rate)} over the last {int(WINDOW.total_seconds() // 60)} min · "
             f"{rate_text(o.overall_rate)} overall"),
    ]
    if o.left == 0:
        lines.append(Text("  eta         finished"))
    else:
        eta = o.eta
        when = f" (at {eta:%H:%M} UTC)" if eta is not None else ""
        lines.append(Text(f"  eta         {duration_text(o.eta_seconds)}{when} for {o.left} unfinished jobs"))
    oldest = stats.oldest_in_flight
    if oldest is not None:
        age = duration_text((o.now - oldest.since).total_seconds())
        lines.append(Text(f"  oldest      {oldest.key} {oldest.state.value} since {oldest.since:%Y-%m-%d %H:%M:%S} UTC "
                          f"({age})"))
    if o.errors:
        lines.append(Text(f"  errors      {o.count(JobState.FAILED)} failed jobs, by message:"))
        for group in o.errors:
            more = " …" if group.count > len(group.examples) else ""
            lines.append(Text(f"    {group.count} × {short(group.message, 100)}  (e.g. {', '.join(group.examples)}{more})"))
    return list(lines)


def _listing(overviews: list[Overview], label: str, terminal: bool) -> list[RenderableType]:
    if not overviews:
        return [Text(f"no campaigns in {label} yet")]
    columns = ("campaign", "jobs", "done", "failed", "cancelled", "in flight", "pending", "spent", "remaining",
               "throughput", "eta")
    rows = [
        [o.name, str(o.total), str(o.count(JobState.DONE)), str(o.count(JobState.FAILED)),
         str(o.count(JobState.CANCELLED)), str(o.in_flight), str(o.count(JobState.PENDING)), usd(o.stats.spent),
         usd(o.stats.remaining), rate_text(o.recent_rate), "finished" if o.left == 0 else duration_text(o.eta_seconds)]
        for o in overviews
    ]
    total = lambda state: str(sum(x.count(state) for x in overviews))  # noqa: E731
    rows.append([
        "total", str(sum(o.total for o in overviews)), total(JobState.DONE), total(JobState.FAILED),
        total(JobState.CANCELLED), str(sum(o.in_flight for o in overviews)), total(JobState.PENDING),
        usd(sum(o.stats.spent for o in overviews)), usd(sum(o.stats.remaining for o in overviews)), "", "",
    ])
    right = set(columns) - {"campaign"}
    heading = Text(f"{len(overviews)} campaign(s) in {label}")
    if terminal:
        return [heading, rich_table(columns, rows, right=right)]
    return [heading, *(Text(line) for line in plain_table(columns, rows, right=right))]


COMMANDS = [status]
