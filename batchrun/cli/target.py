"""Which database and campaign a management command (status, cancel, retry, export) acts on.

The argument is a manifest path or a campaign name:

- a manifest (an existing file): its database is ``--db``, else the default one next to it; its
  campaign is the one planned from that file (else the one named like the file, else the only one);
- a campaign name: looked up in ``--db`` / ``BATCHRUN_DB``, which is then required;
- nothing: ``--db`` is required; a command that needs one campaign takes the only one there is.

Every mistake is one ``ConfigError`` line (exit 2) that says what would work instead.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from batchrun.domain import Job
from batchrun.errors import ConfigError
from batchrun.planning import planned_elsewhere
from batchrun.store import CampaignRecord, Store, open_store, resolve_db_url

MANIFEST_SUFFIXES = (".yaml", ".yml", ".csv", ".tsv", ".json")


@dataclass(frozen=True)
class Target:
    """An open store and, when one was named or implied, the campaign to act on."""

    store: Store
    campaign: CampaignRecord | None
    manifest: Path | None = None


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other backends or in-memory databases)."""
    if not url.startswith("sqlite:"):
        return None
    try:
        database = sa.make_url(url).database
    except sa.exc.ArgumentError:
        return None  # not a URL: opening it says so
    return Path(database) if database and database != ":memory:" else None


def _open(url: str, shown: str) -> Store:
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        raise ConfigError(f"no batchrun database at {path}; plan or run a manifest first ({shown})")
    return open_store(url)


def is_manifest(arg: str | None) -> bool:
    return arg is not None and Path(arg).is_file()


def _known(store: Store) -> str:
    names = [c.name for c in store.list_campaigns()]
    return ", ".join(f"`{n}`" for n in names) if names else "none"


def manifest_campaign(store: Store, manifest: Path) -> CampaignRecord:
    campaigns = store.list_campaigns()
    absolute = os.path.abspath(manifest)
    planned = [c for c in campaigns if c.manifest_path == absolute]
    if len(planned) == 1:
        return planned[0]
    named = [c for c in (planned or campaigns) if c.name == manifest.stem]
    if len(named) == 1:
        other = named[0].manifest_path
        if not planned and planned_elsewhere(other, absolute):
            # a campaign of the same name that another manifest, still there, was planned from:
            # `cancel --all` or `retry` on it would act on someone else's jobs
            raise ConfigError(f"{manifest}: campaign `{named[0].name}` of {store.label} was planned from {other}, "
                              "not from this file; give the campaign's name, or use that manifest")
        return named[0]
    if not campaigns:
        raise ConfigError(f"{manifest}: no campaign in {store.label} yet; run `batchrun plan {manifest}` first")
    if not planned and not named:  # never guess: `cancel --all` on the wrong campaign cannot be undone
        raise ConfigError(f"{manifest}: no campaign of {store.label} was planned from this manifest "
                          f"(known: {_known(store)}); give the campaign's name, or `batchrun plan {manifest}` first")
    raise ConfigError(
        f"{manifest}: cannot tell which campaign of {store.label} it is; name one of {_known(store)}"
    )


def campaign_named(store: Store, name: str) -> CampaignRecord:
    """The campaign called ``name``, or a ConfigError listing the known ones."""
    found = store.get_campaign(name)
    if found is None:
        names = [c.name for c in store.list_campaigns()]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        raise ConfigError(f"no campaign `{name}` in {store.label} (known: {_known(store)}){hint}")
    return found


def _only_campaign(store: Store) -> CampaignRecord:
    campaigns = store.list_campaigns()
    if len(campaigns) == 1:
        return campaigns[0]
    if not campaigns:
        raise ConfigError(f"no campaigns in {store.label} yet")
    raise ConfigError(f"{store.label} holds several campaigns; name one of {_known(store)}")


@contextmanager
def opened_target(db: str | None, arg: str | None, *, need_campaign: bool = True) -> Iterator[Target]:
    """The store and campaign for ``[--db] [CAMPAIGN_OR_MANIFEST]`` (see the module docstring)."""
    store, target = _resolve(db, arg, need_campaign)
    try:
        yield target
    finally:
        store.close()


def _resolve(db: str | None, arg: str | None, need_campaign: bool) -> tuple[Store, Target]:
    if is_manifest(arg):
        assert arg is not None
        manifest = Path(arg)
        store = _open(resolve_db_url(db, manifest.resolve()), "--db or the default next to the manifest")
        try:
            return store, Target(store, manifest_campaign(store, manifest), manifest)
        except BaseException:
            store.close()
            raise
    if db is None:
        if arg is not None and Path(arg).suffix.lower() in MANIFEST_SUFFIXES:
            raise ConfigError(f"no such manifest: {arg}")
        what = f"to find campaign `{arg}`" if arg else "(or give a manifest path)"
        raise ConfigError(f"no database: pass --db PATH|URL or set BATCHRUN_DB {what}")
    store = _open(resolve_db_url(db, None), "--db")
    try:
        if arg is not None:
            return store, Target(store, campaign_named(store, arg))
        return store, Target(store, _only_campaign(store) if need_campaign else None)
    except BaseException:
        store.close()
        raise


@contextmanager
def opened_target_and_keys(db: str | None, args: Sequence[str]) -> Iterator[tuple[Target, list[str]]]:
    """``[CAMPAIGN_OR_MANIFEST] [KEY...]``: the first argument names the campaign when it is a
    manifest file or a campaign of the database; every other argument is a job key."""
    first = args[0] if args else None
    campaign_arg: str | None = None
    if is_manifest(first):
        campaign_arg = first
    elif first is not None and db is not None:
        probe = _open(resolve_db_url(db, None), "--db")
        try:
            if probe.get_campaign(first) is not None:
                campaign_arg = first
        finally:
            probe.close()
    keys = list(args[1:] if campaign_arg is not None else args)
    with opened_target(db, campaign_arg) as target:
        yield target, keys


def select_jobs(store: Store, campaign: CampaignRecord, keys: Iterable[str]) -> list[Job]:
    """The active jobs with these keys, in the order given; unknown keys are one ConfigError line."""
    wanted = list(dict.fromkeys(keys))
    found = store.jobs_by_keys(campaign.id, wanted)
    missing = [key for key in wanted if key not in found]
    if missing:
        known = store.job_keys(campaign.id)
        parts = []
        for key in missing[:5]:
            close = difflib.get_close_matches(key, known, n=1)
            parts.append(f"`{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        noun = "key" if len(missing) == 1 else "keys"
        raise ConfigError(f"unknown job {noun} in campaign `{campaign.name}`: {', '.join(parts)}{more}")
    return [found[key] for key in wanted]
