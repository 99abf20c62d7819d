"""``batchrun report``: write a campaign's self-contained HTML report (or print its data)."""

from __future__ import annotations

from pathlib import Path

import click
import sqlalchemy as sa

from batchrun.cli.files import output_file
from batchrun.cli.options import db_option, json_option
from batchrun.cli.render import print_json
from batchrun.cli.target import manifest_campaign
from batchrun.errors import ConfigError, DatabaseError
from batchrun.report import gather, render
from batchrun.store import CampaignRecord, Store, open_store, resolve_db_url

REPORT_NAME = "report.html"


@click.command()
@click.argument("target", required=False, metavar="[CAMPAIGN_OR_MANIFEST]")
@db_option
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Where to write the page (default: <campaign output dir>/{REPORT_NAME}).")
@json_option
def report(target: str | None, db: str | None, output: Path | None, as_json: bool) -> None:
    """Write one self-contained HTML page about a campaign: its videos, totals and failures.

    TARGET is a manifest (its database is the one next to it unless --db) or a campaign name
    (with --db); without it, --db must hold exactly one campaign. The page links the videos
    relative to itself and fetches nothing, so it works offline from the output folder.
    """
    manifest = Path(target) if target and Path(target).is_file() else None
    url = resolve_db_url(db, manifest.resolve() if manifest else None)
    _refuse_missing_sqlite(url)
    store = open_store(url)
    try:
        campaign = _campaign(store, target, manifest)
        path = (output or Path(campaign.output_dir) / REPORT_NAME).absolute()
        data = gather(store, campaign, path)
    finally:
        store.close()
    if as_json:
        print_json(data)
        return
    with output_file(path) as stream:
        stream.write(render(data))
    totals = data["totals"]
    click.echo(f"{path}: {totals['done']}/{totals['jobs']} done, {len(data['failures'])} failure reason(s)")


def _refuse_missing_sqlite(url: str) -> None:
    """Opening a SQLite file creates it: a report of a database that does not exist is a mistake."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        raise DatabaseError(f"{parsed.database}: no such database; run `batchrun plan` or `batchrun run` first")


def _campaign(store: Store, target: str | None, manifest: Path | None) -> CampaignRecord:
    if manifest is not None:
        return manifest_campaign(store, manifest)
    campaigns = store.list_campaigns()
    names = ", ".join(c.name for c in campaigns) or "none"
    if target is not None:
        found = store.get_campaign(target)
        if found is None:
            raise ConfigError(f"no campaign {target!r} in {store.label} (campaigns: {names})")
        return found
    if len(campaigns) == 1:
        return campaigns[0]
    raise ConfigError(f"{store.label} holds {len(campaigns)} campaigns ({names}); name one")


COMMANDS = [report]
