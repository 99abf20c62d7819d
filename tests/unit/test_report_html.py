"""The report's pure parts: totals from plain job dicts, and the HTML rendered from them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from batchrun.report import render, summarize
from batchrun.report.data import failure_groups, throughput, video_src
from batchrun.report.html import duration

I2V = "kling/kling-3.0/standard/image-to-video"
T2V = "kling/kling-3.0/pro/text-to-video"
EVIL = "<script>alert(1)</script>"


def job(key: str, state: str = "done", *, submitted: str | None = "2026-01-01T10:00:00+00:00",
        finished: str | None = "2026-01-01T10:00:30+00:00", **extra: Any) -> dict[str, Any]:
    """A job dict as ``data.gather`` makes it."""
    base = {
        "id": abs(hash(key)) % 10_000, "key": key, "revision": 1, "superseded": False, "model": I2V,
        "state": state, "prompt": f"prompt of {key}", "input": {"prompt": f"prompt of {key}", "duration": 5},
        "seconds": 5, "estimated_cost": 0.42, "attempts": 1 if submitted else 0, "request_id": None,
        "error": None, "output_path": None, "src": f"videos/{key}.mp4" if state == "done" else None,
        "size": 81_000 if state == "done" else None, "sha256": None,
        "submitted_at": submitted, "started_at": None, "finished_at": finished,
    }
    return {**base, **extra}


def page(jobs: list[dict[str, Any]], committed: float = 0.0) -> str:
    data = {
        "campaign": {"name": "spring", "manifest": "/m/spring.yaml", "output_dir": "/m/out", "created_at": None,
                     "budget": 10},
        "generated_at": "2026-01-01T11:00:00+00:00",
        "totals": summarize(jobs, committed_usd=committed),
        "failures": failure_groups(jobs),
        "throughput": throughput(jobs),
        "jobs": jobs,
    }
    return render(data)


def mixed() -> list[dict[str, Any]]:
    return [
        job("a-t1"),
        job("b-t1", finished="2026-01-01T10:02:00+00:00", model=T2V),
        job("c-t1", "failed", error="generation failed: out of memory"),
        job("d-t1", "failed", error="generation failed:   out of\nmemory"),
        job("e-t1", "failed", error="content moderation"),
        job("f-t1", "running", finished=None),
        job("g-t1", "pending", submitted=None, finished=None),
        job("h-t1", "cancelled", submitted=None, finished="2026-01-01T09:00:00+00:00", error="superseded by revision 2"),
    ]


def test_prompt_markup_is_inert_text():
    """A prompt (user text) full of markup is shown as text, never as HTML or script."""
    evil = job("x-t1", "failed", prompt=EVIL, input={"prompt": EVIL, "note": '" onmouseover="alert(2)'},
               error=EVIL, model=f'm"{EVIL}')
    html = page([{**evil, "key": f"k{EVIL}"}])
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'onmouseover="alert' not in html
    assert html.count("<script") == 1  # only the report's own script


def test_videos_are_players_with_a_poster_frame_and_relative_src():
    """Each done job is a <video controls preload=metadata> whose src is relative, with a #t= poster frame."""
    html = page([job("a-t1", src="videos/a%20b.mp4"), job("c-t1", "failed", error="boom")])
    videos = re.findall(r"<video [^>]*>", html)
    assert videos == ['<video controls preload="metadata" src="videos/a%20b.mp4#t=0.1">']


@pytest.mark.parametrize(
    ("output", "folder", "expected"),
    [
        ("/runs/out/videos/a.mp4", "/runs/out", "videos/a.mp4"),
        ("/runs/out/a b#1.mp4", "/runs/out", "a%20b%231.mp4"),
        ("/runs/out/a.mp4", "/runs/report", "../out/a.mp4"),
        (None, "/runs/out", None),
    ],
)
def test_video_paths_are_relative_to_the_report(output, folder, expected):
    """Video links are relative to the report file and URL-quoted, so the folder can move."""
    assert video_src(output, Path(folder)) == expected


def test_totals_count_current_jobs_and_spend_what_runcomfy_has():
    """Counts, seconds of done video, spend of done + in-flight jobs and wall time add up."""
    jobs = mixed() + [job("a-t1", superseded=True, revision=1, estimated_cost=1.0)]
    totals = summarize(jobs, committed_usd=4.2)
    assert totals["jobs"] == 8 and totals["done"] == 2
    assert totals["states"]["failed"] == 3 and totals["states"]["pending"] == 1 and totals["states"]["queued"] == 0
    assert totals["video_seconds"] == 10 and totals["planned_seconds"] == 40
    assert totals["spent_usd"] == pytest.approx(0.42 * 3 + 1.0)  # 2 done + 1 running + the superseded done one
    assert totals["committed_usd"] == 4.2
    assert totals["wall_seconds"] == 120  # first submit 10:00:00 -> last finish 10:02:00 (the cancel is not a run)


def test_failures_are_grouped_by_reason_most_frequent_first():
    """Failed jobs are grouped by their (whitespace-normalised) error."""
    assert failure_groups(mixed()) == [
        {"reason": "generation failed: out of memory", "count": 2, "keys": ["c-t1", "d-t1"]},
        {"reason": "content moderation", "count": 1, "keys": ["e-t1"]},
    ]


def test_throughput_buckets_add_up_to_the_done_jobs():
    """The chart's buckets cover first submit to last finish and their total is the done count."""
    jobs = [job(f"j{i}", finished=f"2026-01-01T10:{i:02d}:00+00:00") for i in range(1, 11)]
    data = throughput(jobs)
    assert sum(b["done"] for b in data["buckets"]) == 10 == data["buckets"][-1]["cumulative"]
    assert len(data["buckets"]) <= 48 and data["bucket_seconds"] == 15
    assert throughput([job("p", "pending", submitted=None, finished=None)])["buckets"] == []


def test_page_has_totals_chart_and_failures():
    """The page shows the totals, an inline SVG chart (bars and a cumulative line) and failure reasons."""
    html = page(mixed(), committed=3.5)
    assert "2 / 8" in html and "$1.26" in html and "committed $3.50" in html and "budget $10.00" in html
    assert "2 min" in html  # wall time
    svg = re.search(r"<svg id=\"throughput\".*?</svg>", html, re.S)
    assert svg and "<rect" in svg.group(0) and "<polyline" in svg.group(0)
    assert "generation failed: out of memory" in html and "content moderation" in html


def test_filters_offer_states_and_models_and_cards_carry_them():
    """State and model selects list what the campaign has; every card carries its state, model and text."""
    html = page(mixed())
    states = re.search(r'<select id="f-state">(.*?)</select>', html).group(1)
    assert re.findall(r'value="([^"]*)"', states) == ["", "pending", "running", "done", "failed", "cancelled"]
    models = re.search(r'<select id="f-model">(.*?)</select>', html).group(1)
    assert re.findall(r'value="([^"]*)"', models) == ["", T2V, I2V]  # sorted
    assert html.count('<article class="card') == 8
    assert '<input id="f-text" type="search"' in html
    assert 'data-state="failed" data-model="kling/kling-3.0/standard/image-to-video" data-key="c-t1"' in html


def test_jobs_without_video_are_listed_with_their_error():
    """Failed, cancelled and pending jobs get a card without a player, showing their error."""
    html = page(mixed())
    card = re.search(r'<article [^>]*data-key="h-t1".*?</article>', html).group(0)
    assert "<video" not in card and "cancelled · no video" in card and "superseded by revision 2" in card
    pending = re.search(r'<article [^>]*data-key="g-t1".*?</article>', html).group(0)
    assert "<video" not in pending and "pending · no video" in pending


def test_page_is_self_contained():
    """Nothing is fetched from anywhere: no external stylesheet, script, font or image."""
    html = page(mixed())
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r'<script[^>]+src=', html)
    assert not re.search(r'\ssrc="(https?:)?//', html)


def test_empty_campaign_renders():
    """A campaign with no jobs still renders (nothing finished yet, no failures)."""
    html = page([])
    assert "No job has finished yet." in html and "No failures." in html


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (2.5, "2.5 s"), (60, "1 min"), (75, "1 min 15 s"),
                                               (3725, "1 h 02 min"), (None, "–")])
def test_durations_read_naturally(seconds, text):
    """Durations are shown as people say them."""
    assert duration(seconds) == text


def test_totals_per_model():
    """Each model shows its done/total jobs, seconds of done video and planned USD."""
    models = summarize(mixed(), committed_usd=0)["models"]
    assert [(m["model"], m["done"], m["jobs"], m["video_seconds"]) for m in models] == [(T2V, 1, 1, 5), (I2V, 1, 7, 5)]
    assert models[1]["planned_usd"] == pytest.approx(0.42 * 7)
    assert '<table id="models">' in page(mixed())
