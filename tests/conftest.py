"""Fixtures every test gets: an isolated environment and working directory.

Subsystem fixtures live beside this file (``simfixtures.py``, ``storefixtures.py``) and are
pulled in here so every test directory sees them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:  # the simulator fixtures (tests/simfixtures.py)
    from simfixtures import *  # noqa: F403
except ImportError as error:  # pragma: no cover - only while the module does not exist yet
    if "simfixtures" not in str(error):
        raise
try:  # the store fixtures (tests/storefixtures.py)
    from storefixtures import *  # noqa: F403
except ImportError as error:  # pragma: no cover
    if "storefixtures" not in str(error):
        raise

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own empty directory with no batchrun/RunComfy settings leaking in."""
    for name in list(os.environ):
        if name.startswith(("BATCHRUN_", "RUNCOMFY_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def repo_root() -> Path:
    """The checkout, for tests that read the shipped example manifests."""
    return REPO
