"""What the benchmarks share: results, a simulator in a child process, manifests, resource use."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

I2V = "kling/kling-3.0/standard/image-to-video"
PYTHON = sys.executable


@dataclass
class Result:
    """One row of the table: a measured value against its target."""

    name: str
    measured: float
    unit: str
    target: float | None = None  #: None: informational, no pass/fail
    higher_is_better: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.measured >= self.target if self.higher_is_better else self.measured <= self.target

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": self.measured,
            "unit": self.unit,
            "target": self.target,
            "target_op": None if self.target is None else (">=" if self.higher_is_better else "<="),
            "passed": self.passed,
            "details": self.details,
        }


class SimProcess:
    """The simulator in a child process (``python -m benchmarks.simserver``), stats over a pipe."""

    def __init__(self, *, latency: str, capacity: int = 1000, seed: int = 1) -> None:
        self.args = [PYTHON, "-m", "benchmarks.simserver", "--latency", latency,
                     "--capacity", str(capacity), "--seed", str(seed)]
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> SimProcess:
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(
            self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        if not match:
            self.process.kill()
            raise RuntimeError(f"simulator did not announce its URL: {line!r}")
        self.base_url = match.group(1)
        return self

    def stats(self) -> dict[str, Any]:
        """Request counts, jobs and their sampled latencies (in submission order), sim CPU."""
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except Exception:  # noqa: BLE001 - never leave a child behind
                self.process.kill()
                self.process.wait()


def write_manifest(folder: Path, jobs: int, *, name: str = "bench") -> Path:
    """An image-to-video manifest of ``jobs`` explicit jobs."""
    lines = [f"name: {name}", f"model: {I2V}", "output:", "  dir: out", "defaults:", "  duration: 3",
             "  start_image_url: https://example.com/start.png", "jobs:"]
    for index in range(jobs):
        lines.append(f"  - id: shot{index:06d}")
        lines.append(f"    prompt: a lighthouse at dusk, take {index}")
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_matrix_manifest(folder: Path, jobs: int, *, name: str = "scale") -> Path:
    """A text-to-video matrix manifest of exactly ``jobs`` jobs (a x b x c values)."""
    a = 50 if jobs >= 2500 else 10
    b = 50 if jobs >= 2500 else 10
    c = max(1, jobs // (a * b))
    assert a * b * c == jobs, f"{jobs} is not {a}x{b}x{c}"
    lines = [
        f"name: {name}",
        "model: kling/kling-3.0/pro/text-to-video",
        "matrix:",
        f"  subject: [{', '.join(f'subject {i}' for i in range(a))}]",
        f"  style: [{', '.join(f'style {i}' for i in range(b))}]",
        f"  seed: [{', '.join(str(i) for i in range(c))}]",
        "defaults:",
        "  duration: 5",
        "  sound: false",
        "  prompt: A {subject} in the {style} manner, variation {seed}",
        "output:",
        "  dir: out",
    ]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv_manifest(folder: Path, jobs: int, *, name: str = "rows") -> Path:
    """An image-to-video CSV manifest of ``jobs`` rows, one job each (id, prompt, image, options),
    as a catalogue export would be: run with ``--model kling/kling-3.0/standard/image-to-video``."""
    path = folder / f"{name}.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("id,prompt,start_image_url,duration,generate_audio\n")
        for i in range(jobs):
            handle.write(f'p{i},"Product {i}, rotating slowly on a white pedestal, soft light",'
                         f"https://cdn.example.com/img/{i}.png,5,false\n")
    return path


def cpu_seconds() -> float:
    """user + sys CPU of this process (every thread) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes() -> int:
    """Current resident set size of this process (from /proc, no psutil)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class ChildUsage:
    returncode: int
    wall: float
    cpu: float
    max_rss: int  #: bytes
    stdout: str


def run_measured(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> ChildUsage:
    """Run a command; its wall time, CPU and peak RSS from os.wait4 (like /usr/bin/time)."""
    started = time.perf_counter()
    with open(os.devnull, "wb") as null:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=null, cwd=cwd, env=env)
        assert process.stdout is not None
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return ChildUsage(
        process.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, out.decode()
    )
