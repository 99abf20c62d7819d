"""``batchrun export`` rows: one per job, as CSV cells or a JSON object. Pure: no I/O.

The CSV is itself a manifest that reruns the campaign (``batchrun run export.csv --model ...``):

- ``id``, ``model`` and every input field are ordinary columns, typed the way the CSV loader reads
  them back (integers, numbers, ``true``/``false``, JSON for lists and objects; braces in text are
  doubled so the loader's templates give the same text back);
- every other column is metadata and starts with ``_`` (``_key``, ``_state``, ...): the CSV loader
  ignores such columns.

**Which id.** A key is ``<id>-t<take>``. A job whose key stands alone (one take) is exported with
``id`` = the key without ``-t1``, so a rerun plans exactly the same key and file name. A job that
is one of several takes is exported with its whole key as ``id`` (``hero-t2``): each take becomes
its own one-take row, keys stay unique and readable (``hero-t2-t1``), and the default file name
``{id}.mp4`` is the same ``hero-t2.mp4`` the takes had. Knowing which jobs have several takes needs
one pass over the keys first (``LayoutBuilder``); the rows themselves then stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from batchrun.domain import Job

FORMATS = ("csv", "jsonl")
#: metadata columns, in order; in CSV each is prefixed with ``_`` so a rerun ignores it
METADATA = (
    "key",
    "campaign",
    "revision",
    "superseded",
    "state",
    "request_id",
    "created_at",
    "submitted_at",
    "started_at",
    "finished_at",
    "queue_run_seconds",
    "total_seconds",
    "attempts",
    "error",
    "output_path",
    "size",
    "sha256",
    "estimated_cost_usd",
)
_TAKE = re.compile(r"(.+)-t(\d+)")


def key_base(key: str, take: int) -> str | None:
    """The id part of a ``<id>-t<take>`` key, or None when the key does not end so."""
    suffix = f"-t{take}"
    return key[: -len(suffix)] if key.endswith(suffix) and len(key) > len(suffix) else None


@dataclass(frozen=True)
class Layout:
    """What the rows depend on beyond one job: the input columns and which keys share an id."""

    fields: tuple[str, ...]  #: input field names, ``prompt`` first, then in order of appearance
    multi_take: frozenset[str] = frozenset()  #: key bases with more than one take
    superseded: frozenset[int] = frozenset()  #: job ids of superseded revisions

    def csv_header(self) -> list[str]:
        return ["id", "model", *self.fields, *(f"_{name}" for name in METADATA)]


@dataclass
class LayoutBuilder:
    """Collects the ``Layout`` from a first pass over the jobs (memory: field names and bases)."""

    superseded: frozenset[int] = frozenset()
    _fields: dict[str, None] = field(default_factory=dict)
    _multi: set[str] = field(default_factory=set)

    def add(self, job: Job) -> None:
        for name in job.input:
            if name not in self._fields:
                self._fields[name] = None
        if job.take > 1:
            base = key_base(job.key, job.take)
            if base is not None:
                self._multi.add(base)

    def add_all(self, jobs: Iterable[Job]) -> LayoutBuilder:
        for job in jobs:
            self.add(job)
        return self

    def build(self) -> Layout:
        names = list(self._fields)
        if "prompt" in self._fields:
            names.remove("prompt")
            names.insert(0, "prompt")
        return Layout(tuple(names), frozenset(self._multi), self.superseded)


def export_id(job: Job, layout: Layout) -> str:
    """The ``id`` that plans this job again under the same key (see the module docstring)."""
    base = key_base(job.key, job.take)
    ident = job.key
    if base is not None and base not in layout.multi_take:
        clash = _TAKE.fullmatch(base)  # `x-t2` alone would meet take 2 of a job `x`
        if clash is None or clash.group(1) not in layout.multi_take:
            ident = base
    if job.id in layout.superseded:
        ident = f"{ident}-rev{job.revision}"  # keeps it apart from the active revision's id
    return ident


def escape_braces(value: Any) -> Any:
    """``value`` with ``{``/``}`` doubled in every string, so manifest templates read it back as is."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, dict):
        return {k: escape_braces(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape_braces(v) for v in value]
    return value


def cell(value: Any) -> str:
    """A value as the CSV loader reads it back: empty for None, JSON for lists and objects."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return str(value)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds(), 3)


def metadata(job: Job, campaign: str, layout: Layout) -> dict[str, Any]:
    """The metadata of a job, typed (datetimes as ISO 8601 text)."""
    iso = lambda value: None if value is None else value.isoformat()  # noqa: E731
    return {
        "key": job.key,
        "campaign": campaign,
        "revision": job.revision,
        "superseded": job.id in layout.superseded,
        "state": job.state.value,
        "request_id": job.request_id,
        "created_at": iso(job.created_at),
        "submitted_at": iso(job.submitted_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "queue_run_seconds": _seconds(job.submitted_at, job.finished_at),
        "total_seconds": _seconds(job.created_at, job.finished_at),
        "attempts": job.attempts,
        "error": job.error,
        "output_path": job.output_path,
        "size": job.size,
        "sha256": job.sha256,
        "estimated_cost_usd": job.estimated_cost,
    }


def csv_row(job: Job, campaign: str, layout: Layout) -> list[str]:
    """The CSV cells of a job, in ``layout.csv_header()`` order."""
    data: Mapping[str, Any] = job.input
    inputs = [cell(escape_braces(data[name])) if name in data else "" for name in layout.fields]
    meta = metadata(job, campaign, layout)
    return [export_id(job, layout), job.model, *inputs, *(cell(meta[name]) for name in METADATA)]


def json_row(job: Job, campaign: str, layout: Layout) -> dict[str, Any]:
    """A job as one JSON object (``--format jsonl``): the input stays a nested object."""
    meta = metadata(job, campaign, layout)
    return {
        "id": export_id(job, layout),
        "key": meta.pop("key"),
        "campaign": meta.pop("campaign"),
        "model": job.model,
        "prompt": job.input.get("prompt"),
        "input": dict(job.input),
        **meta,
    }
