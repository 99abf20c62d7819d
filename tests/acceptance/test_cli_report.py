"""`batchrun report` as a user runs it: which campaign, where the page goes, --json, mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

I2V = "kling/kling-3.0/standard/image-to-video"

pytestmark = pytest.mark.slow  # each test runs a simulated campaign in a subprocess


def batchrun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrun", *args], capture_output=True, text=True, timeout=120)


def manifest(folder: Path, name: str = "shop", jobs: int = 3) -> Path:
    lines = [f"name: {name}", f"model: {I2V}", "output:", "  dir: clips", "defaults:", "  duration: 3",
             "  start_image_url: https://example.com/start.png", "jobs:"]
    lines += [line for i in range(jobs) for line in (f"  - id: item{i}", f"    prompt: product shot {i}")]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def ran(isolated_env: Path) -> Path:
    path = manifest(isolated_env)
    result = batchrun("run", str(path), "--simulate", "--sim-latency", "0.05")
    assert result.returncode == 0, result.stderr
    return path


def test_report_of_a_manifest_goes_to_its_output_folder(ran):
    """`batchrun report MANIFEST` writes report.html beside the videos, linking them relatively."""
    result = batchrun("report", str(ran))
    assert result.returncode == 0, result.stderr
    page = (ran.parent / "clips" / "report.html").read_text()
    assert page.count('<video controls preload="metadata" src="item') == 3


def test_json_prints_the_gathered_data(ran):
    """`--json` prints the totals and jobs instead of writing a page."""
    result = batchrun("report", str(ran), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["totals"]["done"] == 3 and data["totals"]["video_seconds"] == 9
    assert [job["src"] for job in data["jobs"]] == ["item0.mp4", "item1.mp4", "item2.mp4"]
    assert not (ran.parent / "clips" / "report.html").exists()


def test_campaign_name_with_db_and_output_elsewhere(ran, isolated_env):
    """A campaign name plus --db works, and -o elsewhere links the videos relative to that file."""
    db = str(ran.with_name("shop.batchrun.db"))
    out = isolated_env / "reports" / "shop.html"
    result = batchrun("report", "shop", "--db", db, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert 'src="../clips/item0.mp4#t=0.1"' in out.read_text()
    assert batchrun("report", "--db", db, "-o", str(out)).returncode == 0  # one campaign: no name needed


def test_mistakes_are_one_line_and_exit_2(ran, isolated_env):
    """An unknown campaign or a database that does not exist is one line, exit 2, nothing created."""
    db = str(ran.with_name("shop.batchrun.db"))
    unknown = batchrun("report", "nope", "--db", db)
    assert unknown.returncode == 2 and "no campaign 'nope'" in unknown.stderr and "shop" in unknown.stderr
    missing = batchrun("report", "shop", "--db", str(isolated_env / "missing.db"))
    assert missing.returncode == 2 and "no such database" in missing.stderr
    assert not (isolated_env / "missing.db").exists()
    assert "Traceback" not in unknown.stderr + missing.stderr
