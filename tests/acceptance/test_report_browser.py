"""`batchrun report` opened in a real headless Chromium (Debian's chromium + chromedriver).

A simulated campaign is run through the CLI, two more jobs are planned and then failed and
cancelled through the Store, the report is written, and the page is loaded from file:// as a
user would open it from the output folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from batchrun.states import JobState
from batchrun.store import open_store, resolve_db_url

CHROMIUM = os.environ.get("BATCHRUN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BATCHRUN_CHROMEDRIVER", "/usr/bin/chromedriver")
#: the closed network refuses Chromium's background connections: never let it try
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000")
I2V = "kling/kling-3.0/standard/image-to-video"

pytestmark = pytest.mark.slow


def batchrun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrun", *args], capture_output=True, text=True, timeout=120)


def manifest(folder: Path, jobs: int) -> Path:
    lines = ["name: gallery", f"model: {I2V}", "output:", "  dir: videos", "defaults:", "  duration: 3",
             "  start_image_url: https://example.com/start.png", "jobs:"]
    for index in range(jobs):
        lines += [f"  - id: clip{index}", f"    prompt: a paper boat on a river, number {index}"]
    path = folder / "gallery.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def browser(tmp_path: Path):
    """A headless Chromium driven through chromedriver; skipped when either is not installed."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.access(binary, os.X_OK) or shutil.which(binary)):
            pytest.skip(f"{binary} not found: apt-get install {package} (.ci/run does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def campaign_with_failures(folder: Path) -> Path:
    """6 done videos (simulated run), then 3 more planned: one failed, one cancelled, one pending."""
    path = manifest(folder, 6)
    result = batchrun("run", str(path), "--simulate", "--sim-latency", "0.05")
    assert result.returncode == 0, result.stdout + result.stderr
    path.write_text(path.read_text() + "".join(
        f"  - id: extra{i}\n    prompt: \"<script>alert({i})</script><img src=x onerror=alert({i})> a kite\"\n"
        for i in range(3)))
    assert batchrun("plan", str(path)).returncode == 0
    store = open_store(resolve_db_url(None, path))
    try:
        campaign = store.get_campaign("gallery")
        failed = store.get_job_by_key(campaign.id, "extra0-t1")
        store.transition(failed.id, JobState.PENDING, JobState.FAILED, error="content moderation rejected the prompt")
        cancelled = store.get_job_by_key(campaign.id, "extra1-t1")
        store.transition(cancelled.id, JobState.PENDING, JobState.CANCELLED, error="cancelled by the user")
    finally:
        store.close()
    return path


def visible_cards(driver) -> list[list[str]]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.card'))"
        ".map(c => [c.dataset.key, c.dataset.state, c.checkVisibility() ? 'shown' : 'hidden']);"
    )


def test_report_opens_offline_plays_every_video_and_filters(isolated_env, browser):
    """The report loads from file:// without console errors, every video exists and loads, filters hide cards."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    path = campaign_with_failures(isolated_env)
    result = batchrun("report", str(path))
    assert result.returncode == 0, result.stderr
    report = isolated_env / "videos" / "report.html"
    assert report.is_file() and str(report) in result.stdout

    browser.get(report.as_uri())
    assert browser.title == "gallery: batchrun report"

    sources = [v.get_attribute("src") for v in browser.find_elements(By.TAG_NAME, "video")]
    assert len(sources) == 6
    for source in sources:  # the browser resolves each src against the report's own location
        file = Path(unquote(urlsplit(source).path))
        assert urlsplit(source).scheme == "file" and file.is_file() and file.parent == report.parent, source
    deadline = time.monotonic() + 10  # metadata of every (local) video loads: Chromium can play them
    while time.monotonic() < deadline:
        states = browser.execute_script(
            "return Array.from(document.querySelectorAll('video')).map(v => [v.readyState, v.error && v.error.code]);")
        if all(ready >= 1 for ready, _ in states) or any(error for _, error in states):
            break
        time.sleep(0.1)
    assert all(ready >= 1 and error is None for ready, error in states), states

    cards = visible_cards(browser)
    assert len(cards) == 9 and all(shown == "shown" for _, _, shown in cards)
    assert not browser.execute_script("return window.__xss || document.querySelectorAll('main script').length")

    Select(browser.find_element(By.ID, "f-state")).select_by_value("failed")
    cards = visible_cards(browser)
    assert [key for key, _, shown in cards if shown == "shown"] == ["extra0-t1"]
    assert sum(shown == "hidden" for _, _, shown in cards) == 8
    assert browser.find_element(By.ID, "shown").text == "1 of 9 jobs shown"

    Select(browser.find_element(By.ID, "f-state")).select_by_value("")
    browser.find_element(By.ID, "f-text").send_keys("number 3")
    assert [key for key, _, shown in visible_cards(browser) if shown == "shown"] == ["clip3-t1"]

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
