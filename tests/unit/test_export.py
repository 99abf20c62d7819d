"""Export rows: the CSV cells read back as the same input, and ids that plan the same keys."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from batchrun.domain import Job
from batchrun.export import METADATA, LayoutBuilder, cell, csv_row, escape_braces, export_id, json_row, key_base
from batchrun.manifest import csvrows
from batchrun.states import JobState

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def job(key: str, take: int = 1, *, id: int = 1, state: JobState = JobState.DONE, **input) -> Job:
    return Job(id=id, campaign_id=1, key=key, model="kling/kling-3.0/pro/text-to-video",
               input=input or {"prompt": f"p {key}"}, state=state, output_name=f"{key}.mp4", fingerprint="f",
               take=take, created_at=T0, submitted_at=T0 + timedelta(seconds=10),
               finished_at=T0 + timedelta(seconds=70), estimated_cost=0.56, attempts=1)


def layout(*jobs: Job, superseded: frozenset[int] = frozenset()):
    return LayoutBuilder(superseded=superseded).add_all(jobs).build()


def test_a_single_take_job_exports_its_id_so_the_rerun_key_is_the_same():
    """`hero-t1` alone exports id `hero`, which plans key `hero-t1` again."""
    j = job("hero-t1")
    assert key_base("hero-t1", 1) == "hero" and export_id(j, layout(j)) == "hero"


def test_takes_of_one_job_export_their_whole_keys():
    """Each of several takes becomes its own row with id `hero-t2`: unique, readable, same file name."""
    takes = [job("hero-t1", 1, id=1), job("hero-t2", 2, id=2), job("solo-t1", 1, id=3)]
    shape = layout(*takes)
    assert [export_id(j, shape) for j in takes] == ["hero-t1", "hero-t2", "solo"]


def test_an_id_that_looks_like_another_jobs_take_keeps_its_whole_key():
    """A one-take job whose id is `x-t2` never meets take 2 of a job `x` on rerun."""
    jobs = [job("x-t1", 1, id=1), job("x-t2", 2, id=2), job("x-t2-t1", 1, id=3)]
    shape = layout(*jobs)
    assert len({export_id(j, shape) for j in jobs}) == 3


def test_keys_without_a_take_suffix_export_as_they_are():
    """A key that does not end in -t<take> is used whole as the id."""
    j = job("odd-key", 1)
    assert export_id(j, layout(j)) == "odd-key"


def test_superseded_revisions_get_their_revision_in_the_id():
    """With --all-revisions an old revision's id never clashes with its active revision's."""
    old = job("hero-t1", id=1)
    shape = layout(old, superseded=frozenset({1}))
    assert export_id(old, shape) == "hero-rev1"


def test_cells_are_typed_the_way_the_csv_loader_reads_them():
    """Booleans, numbers, JSON lists and missing values come out as the loader expects."""
    assert [cell(v) for v in (True, False, 5, 0.5, 1.0, None, "text")] == ["true", "false", "5", "0.5", "1.0", "", "text"]
    assert json.loads(cell([{"prompt": "a", "duration": 3}])) == [{"prompt": "a", "duration": 3}]


def test_braces_are_doubled_everywhere_so_templates_give_the_text_back():
    """A literal `{` in a prompt or a multi_prompt segment is written `{{`."""
    assert escape_braces({"p": "a {b}", "m": [{"prompt": "{x}"}], "n": 3}) == {"p": "a {{b}}", "m": [{"prompt": "{{x}}"}], "n": 3}


def test_input_columns_are_the_union_with_prompt_first():
    """Every input field of any job is a column, prompt first; a job without a field leaves it empty."""
    a = job("a-t1", id=1, duration=5, prompt="A")
    b = job("b-t1", id=2, prompt="B", aspect_ratio="9:16")
    shape = layout(a, b)
    assert shape.fields == ("prompt", "duration", "aspect_ratio")
    header = shape.csv_header()
    assert header[:2] == ["id", "model"] and header[-len(METADATA):] == [f"_{m}" for m in METADATA]
    row = dict(zip(header, csv_row(b, "camp", shape)))
    assert row["duration"] == "" and row["aspect_ratio"] == "9:16" and row["_campaign"] == "camp"


def test_metadata_columns_are_ignored_when_the_csv_is_read_back():
    """The CSV loader reads only id, model and input columns of an export; `_` columns are skipped."""
    j = job("a-t1", prompt="A", duration=5)
    shape = layout(j)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(shape.csv_header())
    writer.writerow(csv_row(j, "camp", shape))
    table = csvrows.read_table(buffer.getvalue(), "export.csv")
    assert not table.problems
    assert set(table.rows[0].cells) == {"id", "model", "prompt", "duration"}


def test_durations_and_times_are_in_the_row():
    """Queue+run seconds run from submission to finish; total from creation to finish."""
    j = job("a-t1")
    data = json_row(j, "camp", layout(j))
    assert data["queue_run_seconds"] == 60.0 and data["total_seconds"] == 70.0
    assert data["submitted_at"] == (T0 + timedelta(seconds=10)).isoformat()
    assert data["input"] == {"prompt": "p a-t1"} and data["prompt"] == "p a-t1" and data["state"] == "done"
