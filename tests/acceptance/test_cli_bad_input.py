"""Every malformed manifest of the corpus, through the CLI: exit 2, located lines, no traceback, nothing written."""

from __future__ import annotations

import re
import shutil
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
