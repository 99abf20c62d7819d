"""`batchrun run` as a user runs it: a real process, real signals, the simulator over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from batchrun.states import JobState
from batchrun.store import open_store, resolve_db_url

I2V = "kling/kling-3.0/standard/image-to-video"


def manifest(folder: Path, jobs: int) -> Path:
    lines = ["name: accept", f"model: {I2V}", "output:", "  dir: videos", "defaults:", "  duration: 3",
             "  start_image_url: https://example.com/start.png", "jobs:"]
    for index in range(jobs):
        lines += [f"  - id: clip{index:03d}", f"    prompt: a paper boat on a river, number {index}"]
    path = folder / "accept.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def batchrun(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrun", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, **kwargs)


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "batchrun", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def states(path: Path) -> dict[JobState, int]:
    store = open_store(resolve_db_url(None, path))
    try:
        campaign = store.get_campaign("accept")
        return store.count_by_state(campaign.id)
    finally:
        store.close()


def test_simulated_run_produces_every_video(isolated_env):
    """`batchrun run --simulate` runs a campaign end to end with no account and exits 0."""
    path = manifest(isolated_env, 6)
    result = batchrun("run", str(path), "--simulate", "--sim-latency", "0.05")
    assert result.returncode == 0, result.stderr
    videos = sorted((isolated_env / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == [f"clip{i:03d}.mp4" for i in range(6)]
    assert all(v.read_bytes()[4:8] == b"ftyp" for v in videos)
    assert "6/6 done" in result.stdout


def test_json_summary_is_machine_readable(isolated_env):
    """`run --json` prints one JSON document with the counts and the exit code."""
    path = manifest(isolated_env, 2)
    result = batchrun("run", str(path), "--simulate", "--sim-latency", "0.05", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["counts"]["done"] == 2 and data["exit_code"] == 0


def test_jobs_dropped_from_the_manifest_are_not_submitted(isolated_env):
    """Plan 4 jobs, drop 2 from the manifest, run: only the 2 still listed are made and paid for."""
    path = manifest(isolated_env, 4)
    assert batchrun("plan", str(path)).returncode == 0
    text = path.read_text()
    kept = text.split("  - id: clip002")[0]
    path.write_text(kept)
    plan = json.loads(batchrun("plan", str(path), "--json").stdout)
    assert plan["counts"]["removed"] == 2 and plan["jobs"] == 2
    result = batchrun("run", str(path), "--simulate", "--sim-latency", "0.05", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["submitted"] == 2 and data["counts"]["done"] == 2
    assert sorted(v.name for v in (isolated_env / "videos").glob("*.mp4")) == ["clip000.mp4", "clip001.mp4"]


def test_a_new_file_name_renames_done_videos_and_pays_for_nothing_again(isolated_env, make_simulator):
    """Going from 1 take to 2 turns `clip000.mp4` into `clip000-t1.mp4`: the done video (and its
    sidecar) is moved, only the new takes are generated, and a taken name is reported, not overwritten."""
    simulator = make_simulator()
    token = {"RUNCOMFY_API_TOKEN": simulator.config.token}
    path = manifest(isolated_env, 2)
    assert batchrun("run", str(path), "--base-url", simulator.base_url, env=token).returncode == 0
    videos = isolated_env / "videos"
    first = (videos / "clip000.mp4").read_bytes()
    (videos / "clip001-t1.mp4").write_bytes(b"the user's own file")
    path.write_text(path.read_text().replace("defaults:", "takes: 2\ndefaults:"))
    plan = json.loads(batchrun("plan", str(path), "--json").stdout)
    assert (plan["counts"]["renamed"], plan["counts"]["changed"], plan["counts"]["new"]) == (2, 0, 2)
    assert plan["notes"] == ["clip001-t1: clip001-t1.mp4 already exists; the file stays clip001.mp4"]
    assert (videos / "clip000-t1.mp4").read_bytes() == first and not (videos / "clip000.mp4").exists()
    assert json.loads((videos / "clip000-t1.mp4.json").read_text())["job_key"] == "clip000-t1"
    result = batchrun("run", str(path), "--base-url", simulator.base_url, "--json", env=token)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["submitted"] == 2 and simulator.stats().jobs_created == 4
    assert (videos / "clip001-t1.mp4").read_bytes() == b"the user's own file"
    assert (videos / "clip000-t2.mp4").exists() and (videos / "clip001-t2.mp4").exists()


def test_a_rename_moves_the_extra_files_too_and_the_sidecar_follows(isolated_env, make_simulator):
    """A job's thumbnail (`clip000~2.png`) moves with its video, and the moved sidecar names the
    files where they now are."""
    simulator = make_simulator(thumbnail_output=True)
    token = {"RUNCOMFY_API_TOKEN": simulator.config.token}
    path = manifest(isolated_env, 1)
    assert batchrun("run", str(path), "--base-url", simulator.base_url, env=token).returncode == 0
    videos = isolated_env / "videos"
    assert sorted(p.name for p in videos.iterdir()) == ["clip000.mp4", "clip000.mp4.json", "clip000~2.png"]
    thumbnail = (videos / "clip000~2.png").read_bytes()
    path.write_text(path.read_text().replace("defaults:", "takes: 2\ndefaults:"))
    assert batchrun("plan", str(path)).returncode == 0
    assert sorted(p.name for p in videos.iterdir()) == ["clip000-t1.mp4", "clip000-t1.mp4.json", "clip000-t1~2.png"]
    assert (videos / "clip000-t1~2.png").read_bytes() == thumbnail
    sidecar = json.loads((videos / "clip000-t1.mp4.json").read_text())
    assert [f["path"] for f in sidecar["files"]] == [str(videos / "clip000-t1.mp4"), str(videos / "clip000-t1~2.png")]
    result = batchrun("run", str(path), "--base-url", simulator.base_url, "--json", env=token)
    assert result.returncode == 0 and json.loads(result.stdout)["submitted"] == 1, result.stdout + result.stderr


def test_missing_token_is_one_line_and_exit_2_before_anything_happens(isolated_env):
    """Without RUNCOMFY_API_TOKEN (and no --simulate) the run refuses at once, writing nothing."""
    path = manifest(isolated_env, 2)
    env = {k: v for k, v in os.environ.items() if k != "RUNCOMFY_API_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "batchrun", "run", str(path)], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "RUNCOMFY_API_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(isolated_env.glob("*.db"))


def test_rejected_token_exits_2_with_a_clear_message(isolated_env, make_simulator):
    """A token RunComfy refuses stops the run with exit 2 and says so."""
    simulator = make_simulator()
    path = manifest(isolated_env, 3)
    result = batchrun("run", str(path), "--base-url", simulator.base_url, env={"RUNCOMFY_API_TOKEN": "nope"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "token" in (result.stdout + result.stderr).lower()
    assert simulator.stats().jobs_created == 0


def _wait_for_submissions(simulator, count: int, process: subprocess.Popen[str]) -> None:
    """Block until the simulator has created `count` jobs."""
    assert simulator.wait_for_jobs(count, timeout=60), process.poll()


def _wait_for_line(process: subprocess.Popen[str], text: str) -> list[str]:
    """Read the run's output until a line containing `text` appears."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never printed: {''.join(seen)}")


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_pays_for_nothing_twice(isolated_env, make_simulator):
    """A run killed with SIGKILL resumes: every job done once, no duplicate submission, no .part left."""
    from batchrun.sim import Latency

    simulator = make_simulator(latency=Latency(kind="uniform", value=0.05, high=0.3), seed=11)
    path = manifest(isolated_env, 30)
    env = {"RUNCOMFY_API_TOKEN": "sim-token"}
    process = start("run", str(path), "--base-url", simulator.base_url, "-c", "6", env=env)
    _wait_for_submissions(simulator, 10, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    result = batchrun("run", str(path), "--base-url", simulator.base_url, "-c", "6", env=env)
    held = result.returncode == 1 and "held in `submitting`" in result.stdout
    if held:  # killed between the POST and recording its answer: resolve it the documented way
        result = batchrun("run", str(path), "--base-url", simulator.base_url, "--on-unknown-submit=resubmit", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert states(path)[JobState.DONE] == 30
    duplicates = sum(n - 1 for n in simulator.stats().submissions_by_input.values())
    assert duplicates <= (1 if held else 0) * 6
    served = simulator.served_files()
    assert len(served) >= 30
    videos = list((isolated_env / "videos").glob("*.mp4"))
    assert len(videos) == 30
    digests = set(served.values())
    assert all(hashlib.sha256(v.read_bytes()).hexdigest() in digests for v in videos)
    assert not list((isolated_env / "videos").rglob("*.part"))


@pytest.mark.slow
def test_first_ctrl_c_drains_and_exits_130_then_resume_finishes(isolated_env, make_simulator):
    """Ctrl-C stops new submissions, lets jobs in flight finish, exits 130; the next run completes."""
    from batchrun.sim import Latency

    simulator = make_simulator(latency=Latency(kind="fixed", value=0.3))
    path = manifest(isolated_env, 20)
    env = {"RUNCOMFY_API_TOKEN": "sim-token"}
    process = start("run", str(path), "--base-url", simulator.base_url, "-c", "3", env=env)
    _wait_for_submissions(simulator, 3, process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "no new submissions" in (out + err)
    counts = states(path)
    assert counts.get(JobState.QUEUED, 0) + counts.get(JobState.RUNNING, 0) + counts.get(JobState.SUBMITTING, 0) == 0
    assert counts.get(JobState.PENDING, 0) > 0
    result = batchrun("run", str(path), "--base-url", simulator.base_url, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert states(path)[JobState.DONE] == 20
    assert max(simulator.stats().submissions_by_input.values()) == 1


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once_and_leaves_a_resumable_database(isolated_env, make_simulator):
    """Two Ctrl-Cs exit with 130 without waiting for jobs in flight; the next run collects them."""
    from batchrun.sim import Latency

    simulator = make_simulator(latency=Latency(kind="manual"))
    path = manifest(isolated_env, 6)
    env = {"RUNCOMFY_API_TOKEN": "sim-token"}
    process = start("run", str(path), "--base-url", simulator.base_url, "-c", "3", env=env)
    _wait_for_submissions(simulator, 3, process)
    process.send_signal(signal.SIGINT)
    _wait_for_line(process, "no new submissions")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, out + err
    counts = states(path)
    assert counts.get(JobState.QUEUED, 0) + counts.get(JobState.RUNNING, 0) == 3  # not drained: still at RunComfy
    simulator.finish()  # RunComfy finishes them while batchrun is not running
    simulator.set_latency(Latency(kind="fixed", value=0.05))
    result = batchrun("run", str(path), "--base-url", simulator.base_url, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert states(path)[JobState.DONE] == 6
    assert max(simulator.stats().submissions_by_input.values()) == 1


def test_a_second_run_on_the_same_database_is_refused_naming_the_holder(isolated_env, make_simulator):
    """Two `batchrun run` on one SQLite database: the second exits 2 saying which process holds it."""
    from batchrun.sim import Latency

    simulator = make_simulator(latency=Latency(kind="manual"))
    path = manifest(isolated_env, 3)
    env = {"RUNCOMFY_API_TOKEN": "sim-token"}
    first = start("run", str(path), "--base-url", simulator.base_url, env=env)
    try:
        _wait_for_submissions(simulator, 3, first)
        second = batchrun("run", str(path), "--base-url", simulator.base_url, env=env)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"pid {first.pid}" in second.stderr and "in use by another `batchrun run`" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.kill()
        first.wait(timeout=30)
    simulator.finish()
    third = batchrun("run", str(path), "--base-url", simulator.base_url, env=env)  # the kill freed the lock
    assert third.returncode == 0, third.stdout + third.stderr
    assert simulator.stats().jobs_created == 3


def test_brackets_in_names_and_messages_print_as_written(isolated_env):
    """Text like `[bold]` in a campaign name or prompt is printed literally, never parsed as markup."""
    path = manifest(isolated_env, 2)
    path.write_text(path.read_text().replace("name: accept", 'name: "spring [bold] promo"'))
    plan = batchrun("plan", str(path))
    assert plan.returncode == 0, plan.stderr
    assert "spring [bold] promo" in plan.stdout
    result = batchrun("run", str(path), "--simulate", "--sim-latency", "0.05")
    assert result.returncode == 0, result.stderr
    assert "spring [bold] promo: 2/2 done" in result.stdout


def test_unusable_output_folder_or_database_is_one_line_exit_2(isolated_env):
    """An output folder or database path that cannot be created gives one line and exit 2, nothing else."""
    path = manifest(isolated_env, 1)
    blocker = isolated_env / "a-file"
    blocker.write_text("not a folder")
    out = batchrun("run", str(path), "--simulate", "--out", str(blocker / "videos"))
    assert out.returncode == 2 and "cannot write the output folder" in out.stderr
    assert f"{blocker} is a file, not a folder" in out.stderr  # not mkdir's "File exists"
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not (isolated_env / "accept.batchrun.db").exists()
    db = batchrun("plan", str(path), "--db", str(blocker / "x.db"))
    assert db.returncode == 2 and "a-file" in db.stderr and "Traceback" not in db.stderr
    assert len(db.stderr.strip().splitlines()) == 1


def test_a_plain_http_base_url_to_another_machine_is_used_with_a_warning(isolated_env, make_simulator):
    """`--base-url http://<not this machine>` (a test server, say) works, and says once on stderr
    that the token travels unencrypted; a broken port is one line, exit 2, no database."""
    path = manifest(isolated_env, 1)
    bad = batchrun("run", str(path), "--base-url", "http://127.0.0.1:80800", env={"RUNCOMFY_API_TOKEN": "t"})
    assert bad.returncode == 2 and "port" in bad.stderr and "Traceback" not in bad.stderr
    assert not (isolated_env / "accept.batchrun.db").exists()
    simulator = make_simulator()
    remote = simulator.base_url.replace("127.0.0.1", "0.0.0.0")  # reaches this machine, but is no loopback name
    result = batchrun("run", str(path), "--base-url", remote, env={"RUNCOMFY_API_TOKEN": simulator.config.token})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "plain http, unencrypted" in result.stderr and result.stderr.count("warning:") == 1
    quiet = batchrun("run", str(path), "--base-url", simulator.base_url, env={"RUNCOMFY_API_TOKEN": "x"})
    assert "warning:" not in quiet.stderr  # the simulator's own loopback address needs no warning


def test_poll_lateness_out_of_range_is_a_usage_error(isolated_env):
    """`--poll-lateness 0` would poll without end: refused with exit 2 before anything happens."""
    path = manifest(isolated_env, 1)
    result = batchrun("run", str(path), "--simulate", "--poll-lateness", "0")
    assert result.returncode == 2 and "--poll-lateness" in result.stderr
    assert not (isolated_env / "accept.batchrun.db").exists()


def test_a_base_url_host_that_does_not_exist_fails_at_once(isolated_env):
    """A typo in --base-url is one line and exit 2 at start, not minutes of retries."""
    import socket

    try:
        socket.getaddrinfo("no-such-host.invalid", None)
        pytest.skip("this resolver answers for .invalid names")
    except socket.gaierror as error:
        if error.errno != socket.EAI_NONAME:
            pytest.skip(f"no definite answer from the resolver here ({error})")
    path = manifest(isolated_env, 1)
    result = batchrun("run", str(path), "--base-url", "https://no-such-host.invalid", env={"RUNCOMFY_API_TOKEN": "t"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no such host 'no-such-host.invalid'" in result.stderr and "Traceback" not in result.stderr
