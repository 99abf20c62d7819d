"""`batchrun validate` and `batchrun plan` as a user runs them: exit codes, messages, JSON, the database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

T2V = "kling/kling-3.0/pro/text-to-video"


def batchrun(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrun", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**os.environ, **(env or {})})


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD = f"""name: shorts
model: {T2V}
defaults: {{duration: 5}}
jobs:
  - id: rain
    prompt: rain on a tin roof
  - id: sun
    prompt: sunrise over dunes
    sound: false
"""


def test_every_shipped_example_validates(repo_root):
    """Each manifest in manifests/ validates, so users can copy any of them."""
    for manifest in sorted((repo_root / "manifests").glob("*.yaml")):
        result = batchrun("validate", str(manifest))
        assert result.returncode == 0, result.stderr
    csv = batchrun("validate", str(repo_root / "manifests" / "products.csv"), "--model",
                   "kling/kling-3.0/standard/image-to-video")
    assert csv.returncode == 0, csv.stderr


def test_bad_manifest_lists_every_problem_located_and_exits_2(isolated_env):
    """All problems at once, `file:line:col: field: message`, exit 2, no traceback, no database."""
    path = write(isolated_env / "bad.yaml", f"""model: {T2V}
defaults:
  duration: 20
jobs:
  - prompt: hi
    generate_audio: false
  - prompt: there
    aspect_ratio: 4:3
""")
    for command in ("validate", "plan", "run"):
        result = batchrun(command, str(path), env={"RUNCOMFY_API_TOKEN": "t"})
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines == [
            f"{path}:3:13: duration: must be between 3 and 15 (got 20)",
            f"{path}:6:21: generate_audio: unknown field `generate_audio`; did you mean `sound`?",
            f"{path}:8:19: aspect_ratio: must be one of 16:9, 9:16, 1:1 (got `4:3`)",
        ]
        assert "Traceback" not in result.stderr
    assert not list(isolated_env.glob("*.db*"))


def test_validate_json_lists_the_problems_on_stdout(isolated_env):
    """`validate --json` on a bad manifest prints {"ok": false, "problems": [...]} (file, line,
    column, field, message) for a script to read, exits 2, and still tells a person on stderr."""
    path = write(isolated_env / "bad.yaml", f"model: {T2V}\njobs:\n  - prompt: hi\n    duration: 20\n")
    result = batchrun("validate", str(path), "--json")
    assert result.returncode == 2
    assert json.loads(result.stdout) == {"ok": False, "problems": [
        {"file": str(path), "line": 4, "column": 15, "field": "duration", "message": "must be between 3 and 15 (got 20)"},
    ]}
    assert result.stderr.strip() == f"{path}:4:15: duration: must be between 3 and 15 (got 20)"


def test_missing_manifest_is_one_line_exit_2(isolated_env):
    """A path that does not exist is named in one line."""
    result = batchrun("plan", "nope.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == "batchrun: nope.yaml: no such file"


def test_plan_stores_jobs_once_and_reports_counts_and_cost(isolated_env):
    """Planning twice inserts nothing the second time; the JSON shows counts and cost per model."""
    path = write(isolated_env / "shorts.yaml", GOOD)
    first = batchrun("plan", str(path), "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["counts"] == {"new": 2, "unchanged": 0, "changed": 0, "renamed": 0, "done": 0, "removed": 0,
                              "unlisted_kept": 0}
    # 5 s with sound at $0.168 + 5 s silent at $0.112
    assert data["models"] == [{"model": T2V, "jobs": 2, "seconds": 10, "usd": pytest.approx(1.40)}]
    assert (isolated_env / "shorts.batchrun.db").exists()
    assert oct((isolated_env / "shorts.batchrun.db").stat().st_mode & 0o777) == "0o600"
    again = json.loads(batchrun("plan", str(path), "--json").stdout)
    assert again["counts"] == {"new": 0, "unchanged": 2, "changed": 0, "renamed": 0, "done": 0, "removed": 0, "unlisted_kept": 0}


def test_plan_shows_effective_values_but_stores_only_what_was_written(isolated_env):
    """Schema defaults appear in plan's output, yet the stored input is exactly the manifest's."""
    path = write(isolated_env / "shorts.yaml", GOOD)
    data = json.loads(batchrun("plan", str(path), "--json").stdout)
    rain = data["sample"][0]
    assert rain["input"] == {"duration": 5, "prompt": "rain on a tin roof"}
    assert rain["effective_input"]["aspect_ratio"] == "16:9" and rain["effective_input"]["sound"] is True
    human = batchrun("plan", str(path))
    assert "(aspect_ratio=16:9)" in human.stdout and "$1.40" in human.stdout


def test_editing_one_job_changes_only_that_job(isolated_env):
    """After an edit, plan reports exactly one changed job and keeps the rest unchanged."""
    path = write(isolated_env / "shorts.yaml", GOOD)
    batchrun("plan", str(path))
    path.write_text(GOOD.replace("sunrise over dunes", "sunset over dunes"))
    data = json.loads(batchrun("plan", str(path), "--json").stdout)
    assert data["counts"] == {"new": 0, "unchanged": 1, "changed": 1, "renamed": 0, "done": 0, "removed": 0, "unlisted_kept": 0}


def test_budget_is_compared_with_the_estimate(isolated_env):
    """`plan --budget` says when the estimate is over it."""
    path = write(isolated_env / "shorts.yaml", GOOD)
    data = json.loads(batchrun("plan", str(path), "--json", "--budget", "1").stdout)
    assert data["over_budget"] is True and data["budget"] == 1
    assert "OVER BUDGET" in batchrun("plan", str(path), "--budget", "1").stdout


def test_db_flag_and_env_choose_the_database(isolated_env):
    """--db takes a path (or BATCHRUN_DB does), instead of the file next to the manifest."""
    path = write(isolated_env / "shorts.yaml", GOOD)
    assert batchrun("plan", str(path), "--db", str(isolated_env / "a.db")).returncode == 0
    assert batchrun("plan", str(path), env={"BATCHRUN_DB": str(isolated_env / "b.db")}).returncode == 0
    assert (isolated_env / "a.db").exists() and (isolated_env / "b.db").exists()
    assert not (isolated_env / "shorts.batchrun.db").exists()


def test_corrupt_database_is_a_clear_error(isolated_env):
    """A database file that is not a database gives one line naming it, exit 2."""
    path = write(isolated_env / "shorts.yaml", GOOD)
    (isolated_env / "junk.db").write_bytes(b"this is not sqlite" * 100)
    result = batchrun("plan", str(path), "--db", str(isolated_env / "junk.db"))
    assert result.returncode == 2
    assert "junk.db" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_model_needs_the_flag(isolated_env):
    """An unknown model id is an error unless --allow-unknown-model."""
    path = write(isolated_env / "m.yaml", "model: acme/video-9\njobs:\n  - prompt: x\n    anything: [1, 2]\n")
    refused = batchrun("validate", str(path))
    assert refused.returncode == 2 and "model" in refused.stderr
    assert batchrun("validate", str(path), "--allow-unknown-model").returncode == 0


def test_help_shows_environment_variables():
    """Options that read the environment say so in --help."""
    result = batchrun("run", "--help")
    assert result.returncode == 0
    for name in ("BATCHRUN_DB", "RUNCOMFY_BASE_URL", "BATCHRUN_CONCURRENCY"):
        assert name in result.stdout


@pytest.mark.slow
def test_wheel_carries_migrations_and_data_and_works_outside_the_checkout(repo_root, tmp_path):
    """The built wheel contains migrations, schemas and the clip, and plans from a foreign directory."""
    dist, source = tmp_path / "dist", tmp_path / "source"
    # a copy without build/: setuptools builds in place and keeps stale files there, which once
    # hid a subpackage missing from pyproject's package list
    shutil.copytree(repo_root, source, ignore=shutil.ignore_patterns(
        "build", "dist", ".venv", ".git", "*.egg-info", "__pycache__", ".pytest_cache", "demo-output"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(dist), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("batchrun-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = {path.relative_to(repo_root).as_posix() for path in (repo_root / "batchrun").rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))  # every module of every subpackage
    assert "batchrun/migrations/env.py" in names
    assert any(n.startswith("batchrun/migrations/versions/0001_") for n in names)
    assert "batchrun/schemas/kling-3.0-text-to-video.input.json" in names
    assert "batchrun/sim/data/clip.mp4" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    manifest = write(elsewhere / "shorts.yaml", GOOD)
    probe = ("import batchrun, sys; from batchrun.cli.main import main; "
             "assert batchrun.__file__.startswith(sys.argv[1]), batchrun.__file__; "
             "main(['plan', sys.argv[2], '--json'])")
    result = subprocess.run([sys.executable, "-c", probe, str(target), str(manifest)], capture_output=True,
                            text=True, cwd=elsewhere, env={**os.environ, "PYTHONPATH": str(target)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["new"] == 2
