"""`batchrun status`, `cancel`, `retry` and `export` as a user runs them (in-process CLI, the
simulator over HTTP on 127.0.0.1, a real `Runner` next to them for the cancel-while-running case)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from rich.console import Console

from batchrun import planning
from batchrun.api import RunComfyClient
from batchrun.cli.main import cli
from batchrun.cli.manage import watch_loop
from batchrun.domain import canonical_json
from batchrun.download import Downloader
from batchrun.overview import CampaignStats, Overview
from batchrun.polling import PollSchedule
from batchrun.pool import Runner, RunOptions, SilentProgress
from batchrun.retry import RetryPolicy
from batchrun.states import JobState
from batchrun.store import open_store, resolve_db_url

I2V = "kling/kling-3.0/standard/image-to-video"
T2V = "kling/kling-3.0/pro/text-to-video"
TOKEN = {"RUNCOMFY_API_TOKEN": "sim-token"}
FAST_RETRY = RetryPolicy(max_attempts=5, base=0.005, cap=0.02, max_elapsed=10, retry_after_cap=0.02)


def manifest(folder: Path, jobs: int, *, name: str = "shots") -> Path:
    lines = [f"name: {name}", f"model: {I2V}", "output: {dir: videos}", "defaults:", "  duration: 3",
             "  start_image_url: https://example.com/start.png", "jobs:"]
    for index in range(jobs):
        lines += [f"  - id: clip{index}", f"    prompt: a paper boat on a river, number {index}"]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def batchrun(*args: str, env: dict[str, str] | None = None):
    """The CLI in-process, as a user would type it (stdout is not a terminal: plain text)."""
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert all(word in lines[0] for word in words), lines[0]


def states(path: Path, name: str = "shots") -> dict[JobState, int]:
    with open_store(resolve_db_url(None, path)) as store:
        return store.count_by_state(store.get_campaign(name).id)


def simulate(path: Path, *extra: str):
    result = batchrun("run", str(path), "--simulate", "--sim-latency", "0.02", "--json", *extra)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


# -- status -----------------------------------------------------------------------------------


def test_status_of_a_manifest_shows_counts_spend_and_grouped_errors(isolated_env):
    """After a run, `status MANIFEST` shows jobs per state, spend, ETA and failures grouped by message."""
    path = manifest(isolated_env, 3)
    simulate(path, "--sim-failure-rate", "1")
    result = batchrun("status", str(path))
    assert result.exit_code == 0, result.output
    assert "jobs        3: done 0 · failed 3" in result.stdout
    assert "eta         finished" in result.stdout and "$1.13 so far" in result.stdout
    assert "3 failed jobs, by message" in result.stdout and "generation failed" in result.stdout
    data = json.loads(batchrun("status", str(path), "--json").stdout)
    assert data["campaign"] == "shots" and data["counts"]["failed"] == 3
    assert sum(group["count"] for group in data["errors"]) == 3
    assert data["spent_usd"] == pytest.approx(3 * 3 * 0.126) and data["remaining_usd"] == 0


def test_status_without_a_campaign_lists_every_campaign_with_totals(isolated_env):
    """`status --db` prints one line per campaign of the database and a total line."""
    db = str(isolated_env / "all.db")
    for name, jobs in (("alpha", 2), ("beta", 3)):
        (isolated_env / name).mkdir()  # each its own output folder
        assert batchrun("plan", str(manifest(isolated_env / name, jobs, name=name)), "--db", db).exit_code == 0
    result = batchrun("status", "--db", db)
    lines = result.stdout.splitlines()
    assert lines[0].endswith("2 campaign(s) in " + db)
    assert lines[2].split()[:2] == ["alpha", "2"] and lines[3].split()[:2] == ["beta", "3"]
    assert lines[4].split()[:2] == ["total", "5"]
    data = json.loads(batchrun("status", "--json", env={"BATCHRUN_DB": db}).stdout)
    assert [c["campaign"] for c in data["campaigns"]] == ["alpha", "beta"]
    assert data["totals"]["counts"]["pending"] == 5 and data["totals"]["remaining_usd"] == pytest.approx(5 * 3 * 0.126)


def test_status_mistakes_are_one_line_and_exit_2(isolated_env):
    """No database, an unknown campaign (the known ones are listed) or a missing file: one line, exit 2."""
    one_line_error(batchrun("status", "shots"), "--db", "BATCHRUN_DB")
    one_line_error(batchrun("status", "missing.yaml"), "no such manifest")
    one_line_error(batchrun("status", "--db", "nowhere.db"), "no batchrun database")
    path = manifest(isolated_env, 1)
    batchrun("plan", str(path))
    db = str(resolve_db_url(None, path)).removeprefix("sqlite:///")
    one_line_error(batchrun("status", "shot", "--db", db), "no campaign `shot`", "known: `shots`", "did you mean")


def test_watch_redraws_until_stopped_and_never_sleeps_in_between_for_real(isolated_env):
    """--watch prints a fresh block per refresh when not on a terminal (one JSON line each with --json)."""
    calls: list[int] = []
    sleeps: list[float] = []

    def collect() -> list[Overview]:
        calls.append(1)
        from datetime import UTC, datetime

        counts = dict.fromkeys(JobState, 0) | {JobState.DONE: len(calls)}
        now = datetime(2026, 1, 1, tzinfo=UTC)
        return [Overview("shots", CampaignStats(counts, 0.0, 0.0, 0, now), now)]

    buffer = io.StringIO()
    out = Console(file=buffer, force_terminal=False, width=120)
    watch_loop(collect, 5.0, listing=False, as_json=False, label="db", iterations=2, sleep=sleeps.append, out=out)
    text = buffer.getvalue()
    assert "done 1" in text and "done 2" in text and sleeps == [5.0]
    buffer.seek(0), buffer.truncate()
    watch_loop(collect, 1.0, listing=False, as_json=True, label="db", iterations=2, sleep=sleeps.append, out=out)
    documents = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [d["counts"]["done"] for d in documents] == [3, 4]


# -- retry ------------------------------------------------------------------------------------


def test_retry_puts_failed_jobs_back_and_run_reruns_exactly_them(isolated_env):
    """`retry KEY` then `retry --failed` reset just those jobs (history kept); each run submits only them."""
    path = manifest(isolated_env, 3)
    simulate(path, "--sim-failure-rate", "1")
    result = batchrun("retry", str(path), "clip1-t1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reset"] == 1
    assert simulate(path)["submitted"] == 1
    assert states(path)[JobState.DONE] == 1
    result = batchrun("retry", str(path), "--failed")
    assert "2 job(s) back to pending" in result.stdout and "clip0-t1" in result.stdout
    assert simulate(path)["submitted"] == 2
    assert states(path)[JobState.DONE] == 3
    with open_store(resolve_db_url(None, path)) as store:
        job = store.get_job_by_key(store.get_campaign("shots").id, "clip0-t1")
        moves = [e.to_state for e in store.history(job.id) if e.kind == "transition"]
    assert JobState.FAILED in moves and moves[-1] is JobState.DONE  # the failure is still in its history


def test_retry_leaves_pending_jobs_and_refuses_unknown_keys(isolated_env):
    """A pending job is left as it is; a mistyped key is one line with a suggestion, exit 2."""
    path = manifest(isolated_env, 2)
    batchrun("plan", str(path))
    result = batchrun("retry", str(path), "clip0-t1")
    assert result.exit_code == 0 and "already pending" in result.stdout
    one_line_error(batchrun("retry", str(path), "clip1-t"), "unknown job key", "`clip1-t`", "did you mean `clip1-t1`")
    one_line_error(batchrun("retry", str(path)), "--failed")


# -- cancel -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["cancel", "--all"], ["status"], ["export"], ["report"]])
def test_a_manifest_never_stands_for_another_campaign_of_a_shared_database(isolated_env, command):
    """`cancel beta.yaml --all --db shared.db` when only `alpha` was planned there: an error naming
    the campaigns, never alpha's jobs cancelled (or shown) in beta's name."""
    db = str(isolated_env / "shared.db")
    alpha, beta = manifest(isolated_env, 2, name="alpha"), manifest(isolated_env, 2, name="beta")
    assert batchrun("plan", str(alpha), "--db", db).exit_code == 0
    result = CliRunner().invoke(cli, [command[0], str(beta), *command[1:], "--db", db])
    assert result.exit_code == 2 and "alpha" in result.output and "Traceback" not in result.output
    with open_store(resolve_db_url(db, None)) as store:
        assert store.count_by_state(store.get_campaign("alpha").id)[JobState.PENDING] == 2


def test_cancelling_pending_jobs_needs_no_token(isolated_env):
    """Pending jobs are cancelled locally without RUNCOMFY_API_TOKEN; a later run leaves them alone."""
    path = manifest(isolated_env, 3)
    batchrun("plan", str(path))
    result = batchrun("cancel", str(path), "clip0-t1")
    assert result.exit_code == 0, result.output
    assert "clip0-t1" in result.stdout and "cancelled (was never sent)" in result.stdout
    result = batchrun("cancel", str(path), "--all", "--json")
    assert json.loads(result.stdout)["cancelled"] == 2
    assert states(path)[JobState.CANCELLED] == 3
    assert simulate(path)["submitted"] == 0


def _submit_all(path: Path, simulator) -> None:
    """Submit every pending job of the campaign, as a run would, and stop (a run that crashed)."""
    with open_store(resolve_db_url(None, path)) as store:
        campaign = store.get_campaign("shots")

        async def submit() -> None:
            async with RunComfyClient(simulator.base_url, "sim-token", retry=FAST_RETRY) as client:
                for job in store.jobs_in_states(campaign.id, [JobState.PENDING]):
                    store.begin_submit(job.id)
                    store.record_submission(job.id, (await client.submit(job.model, dict(job.input))).request_id)

        anyio.run(submit)


def test_cancel_asks_runcomfy_for_queued_jobs_and_reports_running_ones(isolated_env, make_simulator):
    """Queued jobs are cancelled at RunComfy; one already generating is reported as still billed; exit 1."""
    from batchrun.sim import Latency

    simulator = make_simulator(latency=Latency(kind="manual"), capacity=1)
    path = manifest(isolated_env, 3)
    batchrun("plan", str(path))
    _submit_all(path, simulator)
    one_line_error(batchrun("cancel", str(path), "--all", "--base-url", simulator.base_url), "RUNCOMFY_API_TOKEN")
    result = batchrun("cancel", str(path), "--all", "--base-url", simulator.base_url, "--json", env=TOKEN)
    assert result.exit_code == 1, result.output
    outcomes = {job["key"]: job["action"] for job in json.loads(result.stdout)["jobs"]}
    assert sorted(outcomes.values()) == ["cancelled_at_runcomfy", "cancelled_at_runcomfy", "not_cancellable"]
    assert simulator.stats().cancelled == 2
    assert states(path)[JobState.CANCELLED] == 2 and states(path)[JobState.QUEUED] == 1
    text = batchrun("cancel", str(path), "--all", "--base-url", simulator.base_url, env=TOKEN).stdout
    assert "still running at RunComfy, will be billed" in text


def test_cancel_reads_the_status_when_runcomfy_answers_with_an_empty_body(isolated_env, make_simulator):
    """An empty 2xx to a cancel says nothing: batchrun asks the status at once instead of retrying
    the cancel, so queued jobs are recorded as cancelled and the running one as still billed."""
    from batchrun.sim import Latency

    simulator = make_simulator(latency=Latency(kind="manual"), capacity=1, empty_cancel_answers=True)
    path = manifest(isolated_env, 3)
    batchrun("plan", str(path))
    _submit_all(path, simulator)
    result = batchrun("cancel", str(path), "--all", "--base-url", simulator.base_url, "--json", env=TOKEN)
    assert result.exit_code == 1, result.output
    outcomes = sorted(job["action"] for job in json.loads(result.stdout)["jobs"])
    assert outcomes == ["cancelled_at_runcomfy", "cancelled_at_runcomfy", "not_cancellable"]
    assert simulator.stats().cancelled == 2
    assert states(path)[JobState.CANCELLED] == 2 and states(path)[JobState.QUEUED] == 1
    assert simulator.stats().requests["cancel"] == 3  # one each: an empty answer is not retried


class _QueuedSignal(SilentProgress):
    """Tells the test when the run has `count` jobs recorded as submitted."""

    def __init__(self, count: int) -> None:
        self.count, self.seen, self.event = count, 0, threading.Event()

    def moved(self, key, old, new, note=None) -> None:
        if new is JobState.QUEUED:
            self.seen += 1
            if self.seen >= self.count:
                self.event.set()


def test_a_running_run_stops_waiting_for_jobs_cancelled_under_it(isolated_env, make_simulator):
    """`cancel --all` during a run: the run ends with those jobs cancelled instead of waiting for them."""
    from batchrun.sim import Latency

    simulator = make_simulator(latency=Latency(kind="manual"), capacity=1)
    path = manifest(isolated_env, 5)
    loaded = planning.load(path)
    store = open_store(resolve_db_url(None, path))
    report = planning.plan_campaign(loaded, store)
    signal = _QueuedSignal(3)
    outcome: dict[str, object] = {}

    async def run() -> None:
        async with RunComfyClient(simulator.base_url, "sim-token", retry=FAST_RETRY) as client, Downloader(
            retry=FAST_RETRY
        ) as downloader:
            runner = Runner(store, campaign_id=report.campaign_id, campaign_name="shots",
                            output_dir=report.output_dir, client=client, downloader=downloader,
                            options=RunOptions(concurrency=3), progress=signal,
                            schedule=PollSchedule(first=0.02, cap=0.1, floor=0.02, max_idle=0.1))
            outcome["summary"] = await runner.run()

    thread = threading.Thread(target=lambda: anyio.run(run), daemon=True)
    thread.start()
    try:
        assert signal.event.wait(30), "the run never submitted 3 jobs"
        result = batchrun("cancel", str(path), "--all", "--base-url", simulator.base_url, "--json", env=TOKEN)
        actions = sorted(job["action"] for job in json.loads(result.stdout)["jobs"])
        assert actions == ["cancelled", "cancelled", "cancelled_at_runcomfy", "cancelled_at_runcomfy",
                           "not_cancellable"]
        simulator.finish()  # the one RunComfy was already generating completes (and is billed)
        thread.join(60)
        assert not thread.is_alive(), "the run kept waiting for cancelled jobs"
    finally:
        store.close()
    summary = outcome["summary"]
    assert summary.counts[JobState.DONE] == 1 and summary.counts[JobState.CANCELLED] == 4
    assert simulator.stats().jobs_created == 3


# -- export -----------------------------------------------------------------------------------

RICH = f"""name: launch
model: {T2V}
output: {{dir: out}}
defaults: {{duration: 5, sound: false}}
matrix:
  aspect_ratio: ["16:9", "9:16"]
jobs:
  - id: hero
    prompt: "Our {{{{brand}}}} hero, {{aspect_ratio}}, with a comma"
    takes: 2
    cfg_scale: 0.5
  - prompt: A calm lake at dawn
    duration: 6
    multi_prompt: [{{prompt: "mist rises", duration: 3}}, {{prompt: "the sun appears", duration: 3}}]
"""


def _jobs_of(path: Path, **kwargs) -> dict[str, tuple[str, str]]:
    return {spec.key: (spec.model, canonical_json(dict(spec.input))) for spec in planning.load(path, **kwargs).jobs()}


def test_csv_export_is_a_manifest_that_reruns_the_same_jobs(isolated_env):
    """Export a finished campaign to CSV: it validates, and plans the same model and input for every job."""
    path = isolated_env / "launch.yaml"
    path.write_text(RICH)
    assert simulate(path)["counts"]["done"] == 6
    result = batchrun("export", str(path), "-o", "export.csv")
    assert result.exit_code == 0 and "exported 6 job(s)" in result.stdout
    checked = subprocess.run([sys.executable, "-m", "batchrun", "validate", "export.csv", "--model", T2V],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    original, again = _jobs_of(path), _jobs_of(isolated_env / "export.csv", model=T2V)
    assert sorted(original.values()) == sorted(again.values())
    takes = {key for key in original if key.startswith("hero-")}
    assert set(again) == {key + "-t1" if key in takes else key for key in original}  # one-take keys unchanged
    rows = list(csv.DictReader((isolated_env / "export.csv").open()))
    assert {row["_state"] for row in rows} == {"done"} and all(len(row["_sha256"]) == 64 for row in rows)
    assert all(Path(row["_output_path"]).is_file() and float(row["_estimated_cost_usd"]) > 0 for row in rows)


def test_a_second_manifest_of_the_same_name_does_not_take_the_campaign_over(isolated_env):
    """Two `shots.yaml` in different folders sharing one database (the default name is the file's):
    the second is refused in one line by plan and run, and by cancel, retry and status, so the
    first keeps its pending jobs and its output folder."""
    first, second = isolated_env / "a", isolated_env / "b"
    first.mkdir(), second.mkdir()
    one, other = manifest(first, 3), manifest(second, 2)
    db = str(isolated_env / "shared.db")
    assert batchrun("plan", str(one), "--db", db).exit_code == 0
    one_line_error(batchrun("plan", str(other), "--db", db), str(other), "campaign `shots`",
                   f"was planned from {one}", "its own `name:`")
    one_line_error(batchrun("run", str(other), "--db", db, "--simulate"), "was planned from")
    for command in (("cancel", "--all"), ("retry", "--failed"), ("status",)):  # nor act on the other's jobs
        one_line_error(batchrun(command[0], str(other), *command[1:], "--db", db),
                       f"was planned from {one}", "not from this file")
    with open_store(resolve_db_url(db, None)) as store:
        record = store.get_campaign("shots")
        counts = store.count_by_state(record.id)
        assert counts[JobState.PENDING] == 3 and sum(counts.values()) == 3
        assert record.manifest_path == str(one) and record.output_dir == str(first / "videos")


def test_a_moved_manifest_is_still_its_campaign(isolated_env):
    """A manifest moved to another folder (its old path gone), as on another machine, resumes its
    campaign: nothing is refused and nothing runs again."""
    old_home, new_home = isolated_env / "old", isolated_env / "new"
    old_home.mkdir(), new_home.mkdir()
    path = manifest(old_home, 2)
    db = str(isolated_env / "shared.db")
    assert simulate(path, "--db", db)["counts"]["done"] == 2
    moved = path.rename(new_home / path.name)
    report = simulate(moved, "--db", db)
    assert report["counts"]["done"] == 2 and report["submitted"] == 0 and report["downloaded"] == 0, report


def test_an_export_beside_its_manifest_is_refused_rather_than_merged(isolated_env):
    """`export shots.yaml -o shots.csv` then `run shots.csv` would share the default database and the
    campaign name: refused in one line; under another file name it is a new campaign of its own."""
    path = manifest(isolated_env, 2)
    simulate(path)
    assert batchrun("export", str(path), "-o", "shots.csv").exit_code == 0
    one_line_error(batchrun("run", "shots.csv", "--model", I2V, "--simulate"), "shots.csv", "campaign `shots`",
                   "another file name")
    Path("shots.csv").rename("shots-again.csv")
    again = simulate(Path("shots-again.csv"), "--model", I2V)
    assert again["campaign"] == "shots-again" and again["counts"]["done"] == 2, again
    assert states(path)[JobState.DONE] == 2


def test_another_campaign_in_the_same_output_folder_never_overwrites_a_video(isolated_env):
    """Two campaigns (two manifests, two databases) writing `clip0.mp4` into one folder: the second
    keeps the first's video aside as `clip0.kept.mp4` instead of taking a sidecar with the same
    job key for its own file and overwriting it."""
    first, second = manifest(isolated_env, 1, name="first"), manifest(isolated_env, 1, name="second")
    second.write_text(second.read_text().replace("paper boat", "red kite"))
    assert simulate(first)["counts"]["done"] == 1
    videos = isolated_env / "videos"
    before = hashlib.sha256((videos / "clip0.mp4").read_bytes()).hexdigest()
    result = batchrun("run", str(second), "--simulate", "--sim-latency", "0.02", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["counts"]["done"] == 1, result.output
    assert hashlib.sha256((videos / "clip0.kept.mp4").read_bytes()).hexdigest() == before
    assert json.loads((videos / "clip0.mp4.json").read_text())["campaign"] == "second"
    # the user is told why, and how to stop the two campaigns taking files from each other (with
    # --json on standard error, standard output being the summary document alone)
    assert "clip0.mp4 was campaign `first`'s file" in result.stderr and "own output.dir" in result.stderr


def test_two_campaigns_of_one_database_writing_the_same_files_in_one_folder_are_refused_at_plan(isolated_env):
    """Two manifests planned into one database with the same output folder and file names would
    take each other's videos on every run: the second is refused in one line, before anything is
    stored. Other names in that folder are fine; a manifest renamed (`name:` changed) is its own
    past, not a rival; a rival whose manifest is not on this machine (another machine's folder of
    the same path) gets a note, not a refusal."""
    db = str(isolated_env / "shared.db")
    first, second = manifest(isolated_env, 3, name="first"), manifest(isolated_env, 2, name="second")
    assert batchrun("plan", str(first), "--db", db).exit_code == 0
    one_line_error(batchrun("plan", str(second), "--db", db), str(second), "campaign `first`",
                   f"planned from {first}", "`clip0.mp4` and 1 more", "own `output.dir`")
    one_line_error(batchrun("run", str(second), "--db", db, "--simulate"), "campaign `first`")
    with open_store(resolve_db_url(db, None)) as store:
        assert store.get_campaign("second") is None
    first.write_text(first.read_text().replace("name: first", "name: renamed"))
    assert batchrun("plan", str(first), "--db", db).exit_code == 0  # the same file: campaign `first` is its past
    clips = second.read_text()
    second.write_text(clips.replace("id: clip", "id: other"))  # other file names in that folder: no conflict
    assert batchrun("plan", str(second), "--db", db).exit_code == 0
    second.write_text(clips)
    first.unlink()  # as if `first` and `renamed` were planned on another machine
    result = batchrun("plan", str(second), "--db", db)
    assert result.exit_code == 0, result.output
    assert "campaign `first` (planned from" in result.output and "not on this machine" in result.output


def test_a_campaign_writing_into_another_campaigns_folder_through_a_subfolder_is_refused(isolated_env):
    """`output.dir: videos/sub` with `{id}.mp4` and `output.dir: videos` with `sub/{id}.mp4` are
    the same files: refused whichever is planned second."""
    db = str(isolated_env / "shared.db")
    inner, outer = manifest(isolated_env, 2, name="inner"), manifest(isolated_env, 2, name="outer")
    inner.write_text(inner.read_text().replace("output: {dir: videos}", "output: {dir: videos/sub}"))
    outer.write_text(outer.read_text().replace("output: {dir: videos}", 'output: {dir: videos, filename: "sub/{id}.mp4"}'))
    assert batchrun("plan", str(inner), "--db", db).exit_code == 0
    one_line_error(batchrun("plan", str(outer), "--db", db), "campaign `inner`", "`sub/clip0.mp4` and 1 more")
    other_db = str(isolated_env / "other.db")
    assert batchrun("plan", str(outer), "--db", other_db).exit_code == 0
    one_line_error(batchrun("plan", str(inner), "--db", other_db), "campaign `outer`", "`sub/clip0.mp4` and 1 more")


def test_jsonl_export_streams_one_object_per_job(isolated_env):
    """`export --format jsonl` prints one JSON object per job with its input nested; -o --json summarises."""
    path = manifest(isolated_env, 3)
    simulate(path)
    result = batchrun("export", str(path), "--format", "jsonl")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["key"] for row in rows] == ["clip0-t1", "clip1-t1", "clip2-t1"]
    assert rows[0]["input"]["prompt"] == rows[0]["prompt"] and rows[0]["request_id"] and rows[0]["attempts"] == 1
    summary = json.loads(batchrun("export", str(path), "-o", "all.jsonl", "--json").stdout)
    assert summary == {"campaign": "shots", "format": "jsonl", "rows": 3, "output": "all.jsonl"}
    assert len((isolated_env / "all.jsonl").read_text().splitlines()) == 3


def test_long_results_list_problems_first_and_say_how_many_more(capsys):
    """With thousands of jobs the table shows 100 rows, those needing attention first, and counts the rest."""
    from batchrun.cli.jobs import SHOWN_ROWS, Outcome, show_outcomes

    outcomes = [Outcome(f"k{i}-t1", JobState.PENDING, "cancelled", "cancelled (was never sent)") for i in range(150)]
    outcomes.append(Outcome("late-t1", JobState.RUNNING, "not_cancellable", "still running at RunComfy, will be billed",
                            ok=False))
    show_outcomes("title", outcomes, False, {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("late-t1") and len(lines) == 2 + SHOWN_ROWS + 1
    assert lines[-1] == f"… and {151 - SHOWN_ROWS} more (--json lists every job)"


@pytest.mark.parametrize("command", ["export", "report"])
def test_an_output_file_that_cannot_be_written_is_one_line_and_a_device_is_never_replaced(isolated_env, command):
    """`-o` under a file, `-o ''`, or a full device: one line, exit 2, no traceback; a device
    (or FIFO) given as the output is written to, never replaced by a regular file."""
    import os
    import stat

    path = manifest(isolated_env, 1)
    batchrun("plan", str(path))
    (isolated_env / "a-file").write_text("x")
    for target in (str(isolated_env / "a-file" / "out.html"), "", "/dev/full"):
        result = CliRunner().invoke(cli, [command, str(path), "-o", target])
        assert result.exit_code == 2, (target, result.output)
        assert "cannot write" in result.output and len(result.output.strip().splitlines()) == 1
        if "a-file" in target:  # says what is wrong, not mkdir's "File exists"
            assert f"{isolated_env / 'a-file'} is a file, not a folder" in result.output, result.output
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
