"""Every malformed manifest of the corpus, through the CLI: exit 2, located lines, no traceback, nothing written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from batchrun.cli.main import cli

CORPUS = Path(__file__).resolve().parent.parent / "data" / "bad_manifests"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text())
T2V = "kling/kling-3.0/pro/text-to-video"
LOCATED = re.compile(r"^\S.*?:\d+(:\d+)?: ")


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_manifest_exits_2_with_located_lines_and_writes_nothing(name, command, isolated_env, monkeypatch):
    """`batchrun validate|plan|run` on a bad manifest: exit 2, `file:line:` on every line, no database."""
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "token")
    for item in CORPUS.iterdir():  # a private copy: the default database would sit next to it
        shutil.copy(item, isolated_env / item.name)
    path = isolated_env / name
    args = [command, str(path)] + (["--model", T2V] if name.endswith(".csv") else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert lines, result.output
    assert all(LOCATED.match(line) or line.startswith(f"{path}: ") for line in lines), lines
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert not list(isolated_env.glob("*.db*"))


@pytest.mark.parametrize("kind", ["fifo", "device", "symlink to a device"])
def test_a_manifest_that_is_not_a_regular_file_is_refused_at_once(kind, isolated_env):
    """A FIFO would wait forever and /dev/zero would fill memory: both are one-line errors, exit 2."""
    path = isolated_env / "m.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path.symlink_to("/dev/zero")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"batchrun: {path}: cannot read the manifest: not a regular file"


@pytest.mark.parametrize(("flag", "value"), [
    ("--budget", "nan"), ("--budget", "inf"), ("--lease", "nan"), ("--lease", "inf"), ("--poll-lateness", "nan"),
    ("-c", "99999999999999999999"), ("--downloads", "100000000"), ("--local-concurrency", "0"),
])
def test_run_flags_out_of_range_or_not_finite_are_usage_errors(flag, value, isolated_env, monkeypatch):
    """Flags that would overflow the database or spawn millions of workers are refused before anything runs."""
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "token")
    path = isolated_env / "m.yaml"
    path.write_text(f"name: m\nmodel: {T2V}\njobs:\n  - {{id: a, prompt: x}}\n")
    result = CliRunner().invoke(cli, ["run", str(path), "--simulate", flag, value])
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.stderr and "Traceback" not in result.output
    assert not list(isolated_env.glob("*.db*"))


def test_an_error_raised_inside_the_runs_task_group_is_one_line_too():
    """The run's workers raise inside a task group (an ExceptionGroup): a batchrun error there
    is still one line and its exit code, never a traceback; anything else stays a traceback."""
    from batchrun.cli.main import BatchrunGroup
    from batchrun.errors import DatabaseError

    group = BatchrunGroup(name="t")

    @group.command()
    def fails() -> None:
        raise ExceptionGroup("workers", [ExceptionGroup("inner", [DatabaseError("x.db: cannot use the database: gone")])])

    @group.command()
    def bug() -> None:
        raise ExceptionGroup("workers", [DatabaseError("x.db: gone"), KeyError("ours")])

    result = CliRunner().invoke(group, ["fails"])
    assert result.exit_code == 2 and result.output.strip() == "batchrun: x.db: cannot use the database: gone"
    assert isinstance(CliRunner().invoke(group, ["bug"]).exception, ExceptionGroup)


@pytest.mark.parametrize("args", [
    ["plan", "{manifest}", "--db", "postgresql://u:p@host:notaport/db"],
    ["plan", "{manifest}", "--db", "sqlite:///%00x"],
    ["plan", "{manifest}", "--prices", "/dev/zero"],
    ["status", "--watch", "nan", "--db", "{db}"],
    ["run", "{manifest}", "--simulate", "--out", ""],
    ["run", "{manifest}", "--simulate", "--sim-latency", "nan"],
    ["run", "{manifest}", "--base-url", "http://xn--/"],
    ["sim", "--balance", "-5"],
    ["validate", "{long}.yaml"],
    ["status", "--db", "{long}.db"],
    ["export", "m", "--db", "{long}.db"],
    ["run", "{manifest}", "--simulate", "--out", "{long}/videos"],
])
def test_odd_flag_values_are_one_line_errors(tmp_path, args, monkeypatch):
    """A port that is no number, a NUL in a database name, a price 'file' that never ends, a
    refresh of nan seconds, an empty output folder, a latency of nan, a malformed IDNA host, a
    negative balance, a file or folder name longer than the file system allows: one line and
    exit 2, never a traceback (or a hang, or files in the cwd)."""
    manifest = tmp_path / "m.yaml"
    shutil.copy(Path(__file__).resolve().parents[2] / "manifests" / "demo.yaml", manifest)
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "token")  # so that the flag, not the token, is what is wrong
    runner = CliRunner()
    runner.invoke(cli, ["plan", str(manifest), "--db", str(tmp_path / "ok.db")])
    long = tmp_path / ("a" * 300)
    result = runner.invoke(cli, [a.format(manifest=manifest, db=tmp_path / "ok.db", long=long) for a in args])
    assert result.exit_code == 2 and (result.exception is None or isinstance(result.exception, SystemExit)), result.output
    lines = result.output.strip().splitlines()  # ours: one line; click's usage errors end in one
    assert "Traceback" not in result.output and (len(lines) == 1 or lines[-1].startswith("Error: Invalid value"))


def test_a_ctrl_c_while_batchrun_is_still_loading_is_one_line_and_exit_130():
    """`python -m batchrun` and the console script start at an import-free entry point that turns a
    Ctrl-C landing while Python imports batchrun (here: raised by the import system when it
    reaches the CLI module) into one line and exit 130, not a traceback."""
    code = (
        "import sys\n"
        "class Stop:\n"
        "    @staticmethod\n"
        "    def find_spec(name, path=None, target=None):\n"
        "        if name == 'batchrun.cli.main':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop)\n"
        "import runpy\n"
        "runpy.run_module('batchrun', run_name='__main__')\n"  # what `python -m batchrun` does
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130 and result.stderr == "batchrun: interrupted\n"


@pytest.mark.parametrize(("suffix", "way_out"), [(".yaml", "shorter `name:`"), (".csv", "file a shorter name")])
def test_a_file_name_too_long_to_name_the_campaign_is_refused_by_validate(suffix, way_out, tmp_path):
    """Without `name:` the campaign takes the file's name, and its folder `<name>-output`: a name
    of 250 bytes fits the file but not that folder. validate says so (and how to fix it) rather
    than passing a manifest that run could not write."""
    path = tmp_path / ("c" * 250 + suffix)
    path.write_text("model: kling/kling-3.0/pro/text-to-video\njobs:\n  - prompt: hi\n" if suffix == ".yaml"
                    else "prompt,model\nhi,kling/kling-3.0/pro/text-to-video\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"{path}: name: the campaign name is the file's name" in lines[0] and way_out in lines[0]
