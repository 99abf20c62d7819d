"""e. download throughput of one large file on loopback, against a raw httpx stream to disk.

A benchmark-local file server (``python -m http.server`` in a child process, serving a random
file from a temp folder) keeps the simulator simple. Definitions:

- **batchrun**: ``Downloader.fetch(url, dest)``: stream to ``.part``, sha256, size check, fsync,
  rename. **raw**: ``httpx.AsyncClient.stream`` writing each block to a file, then fsync (the same
  durability, no hashing or checks). Each is run ``repeat`` times alternately; the best of each
  is compared (loopback on a shared machine is noisy; the best run is the least disturbed). **ratio** = batchrun MB/s / raw MB/s (target >= 0.9).
- **memory**: the peak rise of this process's RSS (sampled from /proc every 5 ms) during one more
  batchrun download, untimed (the sampling thread would slow a timed one); flat means independent of the file size (a few MB at most).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx

from benchmarks.common import PYTHON, Result, rss_bytes


class RssPeak:
    """Samples VmRSS in a thread; ``rise`` is the peak above the value at start."""

    def __init__(self) -> None:
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def rise(self) -> int:
        return self.peak - self.start


async def raw_download(url: str, dest: Path) -> None:
    async with httpx.AsyncClient() as client, client.stream("GET", url) as response:
        with open(dest, "wb") as handle:
            async for block in response.aiter_bytes():
                handle.write(block)
            handle.flush()
            os.fsync(handle.fileno())


async def batchrun_download(url: str, dest: Path) -> None:
    from batchrun.download import Downloader

    async with Downloader() as downloader:
        await downloader.fetch(url, dest)


def timed(download: Callable[[str, Path], Awaitable[None]], url: str, dest: Path, size: int) -> float:
    """Seconds one download takes, file checked and removed afterwards."""
    os.sync()  # start each run with no earlier writeback pending: the disk is the noisiest part
    started = time.perf_counter()
    anyio.run(download, url, dest)
    elapsed = time.perf_counter() - started
    assert dest.stat().st_size == size
    dest.unlink()
    return elapsed


def run(quick: bool) -> list[Result]:
    size = (20 if quick else 200) * 2**20
    repeat = 2 if quick else 7
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        folder = Path(tmp)
        served = folder / "served"
        served.mkdir()
        with open(served / "big.bin", "wb") as handle:
            block = os.urandom(2**20)
            for _ in range(size // 2**20):
                handle.write(block)
        server = subprocess.Popen(
            [PYTHON, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(served)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            assert server.stdout is not None
            match = re.search(r"port (\d+)", server.stdout.readline())
            assert match, "http.server did not announce its port"
            url = f"http://127.0.0.1:{match.group(1)}/big.bin"
            raw_times, ours_times, rises = [], [], []
            for index in range(repeat):
                raw_times.append(timed(raw_download, url, folder / f"raw{index}.bin", size))
                ours_times.append(timed(batchrun_download, url, folder / f"ours{index}.bin", size))
            # memory in a run of its own: the sampling thread would slow the timed runs
            dest = folder / "memory.bin"
            with RssPeak() as rss:
                anyio.run(batchrun_download, url, dest)
            rises.append(rss.rise)
            assert dest.stat().st_size == size
            dest.unlink()
        finally:
            server.terminate()
            server.wait()
    mb = size / 2**20
    raw_rate, ours_rate = mb / min(raw_times), mb / min(ours_times)
    details = {"file_mb": mb, "raw_mb_s": round(raw_rate, 1), "batchrun_mb_s": round(ours_rate, 1),
               "raw_s": [round(t, 3) for t in raw_times], "batchrun_s": [round(t, 3) for t in ours_times]}
    return [
        Result(f"e. download {int(mb)} MB: throughput vs raw httpx", round(ours_rate / raw_rate, 3), "ratio", 0.9,
               higher_is_better=True, details=details),
        Result("e. download: RSS rise", round(max(rises) / 2**20, 1), "MB", 32.0,
               details={"rss_rise_mb": [round(r / 2**20, 1) for r in rises], "file_mb": mb}),
    ]
