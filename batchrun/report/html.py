"""Rendering the report: the dicts of ``data.gather`` in, one self-contained HTML page out.

Pure apart from reading the two shipped assets (``assets/report.css``, ``assets/report.js``),
which are inlined: the page fetches nothing, so it works offline from the output folder. Every
piece of job data (prompts are user text) goes through ``escape``; the script reads only
``data-*`` attributes and never builds markup, so a prompt cannot become HTML or script.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from html import escape
from importlib.resources import files
from typing import Any

from batchrun.states import JobState

#: media fragment: the browser seeks to 0.1 s on load, so the card shows a frame, not black
POSTER_FRAGMENT = "#t=0.1"
_CHART_W, _CHART_H = 720, 200
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 34, 40, 14, 26


@cache
def _asset(name: str) -> str:
    return (files("batchrun.report") / "assets" / name).read_text(encoding="utf-8")


def e(value: Any) -> str:
    """``value`` as HTML text or attribute content (quotes escaped too)."""
    return escape("" if value is None else str(value), quote=True)


def render(data: Mapping[str, Any]) -> str:
    """The whole report page for ``data`` (see ``data.gather``)."""
    campaign = data["campaign"]
    jobs = data["jobs"]
    title = f"{campaign['name']}: batchrun report"
    # "</" inside the inlined script would end it early; the assets are ours, but stay safe
    script = _asset("report.js").replace("</", "<\\/")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "media-src 'self' file: data: blob:; img-src 'self' file: data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
            f"<title>{e(title)}</title>",
            f"<style>\n{_asset('report.css')}</style>",
            "</head>",
            "<body>",
            "<main>",
            f"<h1>{e(campaign['name'])}</h1>",
            f'<p class="sub">batchrun report · generated {e(_when(data.get("generated_at")))} · '
            f'manifest <code>{e(campaign.get("manifest"))}</code></p>',
            _stats(data["totals"], campaign),
            '<div class="overview">',
            _chart_panel(data["throughput"]),
            _failures_panel(data["failures"], data["totals"]),
            "</div>",
            _filters(jobs, data["totals"]),
            '<section class="grid" id="gallery">',
            *(_card(job) for job in jobs),
            "</section>",
            '<p id="nothing" hidden>No job matches these filters.</p>',
            f'<footer>Output folder <code>{e(campaign.get("output_dir"))}</code>. Videos are linked '
            "relative to this file: keep it in the output folder when moving or zipping it.</footer>",
            "</main>",
            f"<script>\n{script}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


# -- totals ---------------------------------------------------------------------------------


def _stats(totals: Mapping[str, Any], campaign: Mapping[str, Any]) -> str:
    states = totals["states"]
    in_flight = sum(states.get(s.value, 0) for s in (JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING,
                                                     JobState.DOWNLOADING))
    budget = campaign.get("budget")
    spend_note = f"committed {usd(totals['committed_usd'])}"
    if budget is not None:
        spend_note += f" · budget {usd(budget)}"
    tiles = [
        ("Jobs", f"{totals['done']} / {totals['jobs']}", f"done · {in_flight} in flight · {states.get('pending', 0)} pending"),
        ("Video", duration(totals["video_seconds"]), f"of {duration(totals['planned_seconds'])} planned"),
        ("Spend", usd(totals["spent_usd"]), spend_note),
        ("Wall time", duration(totals["wall_seconds"]) if totals["wall_seconds"] is not None else "–",
         "first submit → last finish"),
        ("Failures", str(states.get("failed", 0)), f"{states.get('cancelled', 0)} cancelled"),
    ]
    body = "".join(
        f'<div class="panel stat"><div class="label">{e(label)}</div><div class="value">{e(value)}</div>'
        f'<div class="note">{e(note)}</div></div>'
        for label, value, note in tiles
    )
    return f'<section class="stats" id="totals">{body}</section>'


def _failures_panel(failures: Sequence[Mapping[str, Any]], totals: Mapping[str, Any]) -> str:
    chips = "".join(
        f'<button type="button" class="chip s-{e(state)}" data-state="{e(state)}"><span class="dot"></span>'
        f"{e(state)} {count}</button>"
        for state, count in totals["states"].items()
        if count
    )
    if failures:
        rows = "".join(
            f'<tr><td>{e(f["reason"])}</td><td class="n">{f["count"]}</td></tr>' for f in failures
        )
        table = f'<table id="failures"><tr><th>reason</th><th class="n">jobs</th></tr>{rows}</table>'
    else:
        table = '<p class="none" id="failures">No failures.</p>'
    models = "".join(
        f'<tr><td class="mono">{e(m["model"])}</td><td class="n">{m["done"]} / {m["jobs"]}</td>'
        f'<td class="n">{e(duration(m["video_seconds"]))}</td><td class="n">{e(usd(m["planned_usd"]))}</td></tr>'
        for m in totals.get("models", ())
    )
    if models:
        models = ('<h2 class="gap">Models</h2><table id="models"><tr><th>model</th><th class="n">done</th>'
                  f'<th class="n">video</th><th class="n">planned</th></tr>{models}</table>')
    return (f'<section class="panel"><h2>Failures by reason</h2>{table}<div class="chips">{chips}</div>'
            f"{models}</section>")


# -- chart ----------------------------------------------------------------------------------


def _chart_panel(throughput: Mapping[str, Any]) -> str:
    return f'<section class="panel chart"><h2>Throughput</h2>{chart_svg(throughput)}</section>'


def chart_svg(throughput: Mapping[str, Any]) -> str:
    """An inline SVG: done jobs per bucket (bars, left axis) and the running total (line, right)."""
    buckets = throughput.get("buckets") or []
    if not buckets:
        return '<p class="none" id="throughput">No job has finished yet.</p>'
    size = throughput["bucket_seconds"]
    inner_w = _CHART_W - _PAD_L - _PAD_R
    inner_h = _CHART_H - _PAD_T - _PAD_B
    peak = max(b["done"] for b in buckets) or 1
    total = buckets[-1]["cumulative"] or 1
    slot = inner_w / len(buckets)
    bottom = _PAD_T + inner_h
    parts = [
        f'<svg id="throughput" viewBox="0 0 {_CHART_W} {_CHART_H}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="done jobs per {e(duration(size))} and in total">',
        f"<title>Done jobs per {e(duration(size))} (bars) and cumulative (line)</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):  # gridlines at 0, half and the peak of the bars
        y = bottom - inner_h * fraction
        parts.append(f'<line class="{"axis" if fraction == 0 else "grid"}" x1="{_PAD_L}" y1="{y:.1f}" '
                     f'x2="{_CHART_W - _PAD_R}" y2="{y:.1f}"/>')
    for index, bucket in enumerate(buckets):
        height = inner_h * bucket["done"] / peak
        x = _PAD_L + index * slot + slot * 0.1
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{bottom - height:.1f}" width="{slot * 0.8:.1f}" height="{height:.1f}">'
            f"<title>+{e(duration(bucket['offset_seconds']))}: {bucket['done']} done, "
            f"{bucket['cumulative']} in total</title></rect>"
        )
    points = " ".join(
        f"{_PAD_L + (i + 1) * slot:.1f},{bottom - inner_h * b['cumulative'] / total:.1f}" for i, b in enumerate(buckets)
    )
    parts += [
        f'<polyline class="line" points="{_PAD_L:.1f},{bottom:.1f} {points}"/>',
        f'<text x="{_PAD_L - 6}" y="{_PAD_T + 4}" text-anchor="end">{peak}</text>',
        f'<text x="{_PAD_L - 6}" y="{bottom + 4}" text-anchor="end">0</text>',
        f'<text x="{_CHART_W - _PAD_R + 6}" y="{_PAD_T + 4}">{buckets[-1]["cumulative"]}</text>',
        f'<text x="{_PAD_L}" y="{_CHART_H - 6}">+0 s</text>',
        f'<text x="{_CHART_W - _PAD_R}" y="{_CHART_H - 6}" text-anchor="end">'
        f"+{e(duration(len(buckets) * size))}</text>",
        "</svg>",
        f'<div class="legend"><span><i style="background:#a5b4fc"></i>done per {e(duration(size))} (left)</span>'
        '<span><i style="background:#3b5bdb"></i>done in total (right)</span>'
        f"<span>from {e(_when(throughput.get('start')))}</span></div>",
    ]
    return "".join(parts)


# -- gallery --------------------------------------------------------------------------------


def _filters(jobs: Sequence[Mapping[str, Any]], totals: Mapping[str, Any]) -> str:
    states = [s for s, n in totals["states"].items() if n] or [s.value for s in JobState]
    for job in jobs:  # superseded revisions may be in a state no current job is in
        if job["state"] not in states:
            states.append(job["state"])
    models = sorted({job["model"] for job in jobs})
    state_options = "".join(f'<option value="{e(s)}">{e(s)}</option>' for s in states)
    model_options = "".join(f'<option value="{e(m)}">{e(m)}</option>' for m in models)
    return (
        '<nav class="filters" id="filters">'
        f'<label>State <select id="f-state"><option value="">all</option>{state_options}</select></label>'
        f'<label>Model <select id="f-model"><option value="">all</option>{model_options}</select></label>'
        '<label>Search <input id="f-text" type="search" placeholder="prompt or key" autocomplete="off"></label>'
        f'<span id="shown">{len(jobs)} of {len(jobs)} jobs shown</span>'
        "</nav>"
    )


def _card(job: Mapping[str, Any]) -> str:
    state = job["state"]
    search = f"{job['key']} {job.get('prompt') or ''}".lower()
    if job.get("src"):
        media = (
            f'<div class="media"><video controls preload="metadata" '
            f'src="{e(job["src"] + POSTER_FRAGMENT)}"></video></div>'
        )
    else:
        error = f'<div class="error">{e(job["error"])}</div>' if job.get("error") else ""
        media = f'<div class="media empty"><div class="what">{e(state)} · no video</div>{error}</div>'
    badges = f'<span class="badge s-{e(state)}"><span class="dot s-{e(state)}"></span>{e(state)}</span>'
    if job.get("superseded"):
        badges = f'<span class="badge old">rev {job["revision"]} · superseded</span>' + badges
    params = "".join(
        f"<dt>{e(name)}</dt><dd title=\"{e(_value(value))}\">{e(_value(value))}</dd>"
        for name, value in sorted(job["input"].items())
        if name != "prompt"
    )
    meta = [duration(job["seconds"]) if job.get("seconds") else None, usd(job.get("estimated_cost")),
            _size(job.get("size")), _took(job)]
    return (
        f'<article class="card s-{e(state)}" data-state="{e(state)}" data-model="{e(job["model"])}" '
        f'data-key="{e(job["key"])}" data-text="{e(search)}">'
        f"{media}"
        '<div class="body">'
        f'<div class="head"><code class="key">{e(job["key"])}</code><span>{badges}</span></div>'
        f'<p class="prompt">{e(job.get("prompt") or "")}</p>'
        f'<dl class="params">{params}</dl>'
        f'<p class="meta">{e(" · ".join(m for m in meta if m))}</p>'
        f'<code class="model" title="{e(job["model"])}">{e(job["model"])}</code>'
        "</div></article>"
    )


# -- formatting -----------------------------------------------------------------------------


def usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def duration(seconds: float | None) -> str:
    """``75`` -> ``1 min 15 s``; ``3725`` -> ``1 h 02 min``; ``2.5`` -> ``2.5 s``."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds != int(seconds) else f"{int(seconds)} s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _size(size: int | None) -> str | None:
    if size is None:
        return None
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return None


def _took(job: Mapping[str, Any]) -> str | None:
    if job.get("submitted_at") and job.get("finished_at"):
        seconds = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["submitted_at"])).total_seconds()
        return f"took {duration(round(seconds, 1))}"
    return None


def _when(text: str | None) -> str:
    if not text:
        return "–"
    return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S UTC")
