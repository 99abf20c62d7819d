"""The shipped example manifests load cleanly (users copy them), and big matrices stay lazy."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.cost import PriceTable
from batchrun.manifest import load_campaign

MANIFESTS = Path(__file__).resolve().parent.parent.parent / "manifests"
I2V = "kling/kling-3.0/standard/image-to-video"


@pytest.mark.parametrize("name", ["demo.yaml", "i2v-standard.yaml", "t2v-pro-multi-prompt.yaml", "matrix.yaml",
                                  "csv-campaign.yaml"])
def test_example_loads(name: str) -> None:
    """Every example manifest loads without problems and yields unique keys and file names."""
    campaign = load_campaign(MANIFESTS / name)
    jobs = list(campaign.jobs())
    assert len(jobs) == campaign.job_count > 0
    assert len({j.key for j in jobs}) == len(jobs)
    assert len({j.output_name for j in jobs}) == len(jobs)
    assert all(campaign.prices.estimate(j.model, j.input) for j in jobs)


def test_every_example_is_tested() -> None:
    """No example manifest is shipped without this test loading it."""
    assert {p.name for p in MANIFESTS.glob("*.yaml")} == {
        "demo.yaml", "i2v-standard.yaml", "t2v-pro-multi-prompt.yaml", "matrix.yaml", "csv-campaign.yaml"}


def test_demo_is_small_and_cheap() -> None:
    """The README demo is about a dozen short standard-tier jobs."""
    campaign = load_campaign(MANIFESTS / "demo.yaml")
    jobs = list(campaign.jobs())
    assert 10 <= len(jobs) <= 15
    assert all(j.model == I2V and 3 <= j.input.get("duration", 10) <= 5 for j in jobs)
    assert sum(PriceTable.default().estimate(j.model, j.input) or 0 for j in jobs) < 10


def test_products_csv_directly() -> None:
    """products.csv also works on its own with --model."""
    campaign = load_campaign(MANIFESTS / "products.csv", model=I2V)
    assert campaign.name == "products" and campaign.job_count == 5


def test_a_big_matrix_loads_and_iterates_every_job(tmp_path: Path) -> None:
    """A 20,000-job matrix of four job kinds loads, validates and yields every job in order.
    (100,000 jobs is benchmark d.: its time and memory are measured there, not here.)"""
    axis = ", ".join(f"v{i}" for i in range(50))
    path = tmp_path / "big.yaml"
    path.write_text(
        "model: kling/kling-3.0/pro/text-to-video\n"
        "defaults: {sound: false}\n"
        f"matrix:\n  a: [{axis}]\n  b: [{axis}]\n  duration: [3, 4]\n"
        "jobs:\n  - prompt: 'cat {a} {b}'\n  - {id: 'dog-{a}-{b}-{duration}', prompt: 'dog {a} {b}'}\n"
        "  - {id: 'owl', prompt: 'owl {a}{b}'}\n  - {prompt: 'fox {a} {b}', takes: 1}\n"
    )
    campaign = load_campaign(path)
    assert campaign.job_count == 20_000
    count = 0
    for job in campaign.jobs():
        count += 1
    assert count == 20_000 and job.key.startswith("fox-")
