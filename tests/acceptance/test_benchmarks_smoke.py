"""The benchmark suite at its tiny size: it runs and reports; its numbers are never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_benchmarks_print_a_table_and_write_json(tmp_path: Path) -> None:
    """`python -m benchmarks --quick --only ...` prints one row per measure and writes the same as JSON."""
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "scale,download", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    header = done.stdout.splitlines()[0]
    assert [cell.strip() for cell in header.split("|")] == ["benchmark", "measured", "target", "result"]
    document = json.loads(out.read_text())
    assert document["quick"] is True and document["benchmarks"] == ["scale", "download"]
    names = [row["name"] for row in document["results"]]
    assert any(name.startswith("d. plan+insert") for name in names)
    assert any(name.startswith("e. download") for name in names)
    for row in document["results"]:
        assert set(row) == {"name", "measured", "unit", "target", "target_op", "passed", "details"}
        assert isinstance(row["measured"], (int, float))
        assert row["name"] in done.stdout


def test_unknown_benchmark_is_refused() -> None:
    """A typo in --only is a usage error, not an empty run."""
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown benchmark" in done.stderr
