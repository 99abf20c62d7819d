"""Showing a run to a person: a live display on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO

from rich.console import Console
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from batchrun.runs import SilentProgress
from batchrun.states import TERMINAL, JobState

_SHOWN = (
    JobState.PENDING,
    JobState.SUBMITTING,
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.DOWNLOADING,
    JobState.DONE,
    JobState.FAILED,
    JobState.CANCELLED,
)


class _Counts:
    def __init__(self) -> None:
        self.counts: Counter[JobState] = Counter()
        self.total = 0

    def start(self, total: int, counts: dict[JobState, int]) -> None:
        self.total = total
        self.counts = Counter(counts)

    def move(self, old: JobState | None, new: JobState) -> None:
        if old is not None and self.counts[old] > 0:
            self.counts[old] -= 1
        self.counts[new] += 1

    @property
    def finished(self) -> int:
        return sum(self.counts[s] for s in TERMINAL)

    def line(self) -> str:
        return " · ".join(f"{s.value} {self.counts[s]}" for s in _SHOWN if self.counts[s] or s is JobState.DONE)


class LogProgress(_Counts):
    """Plain timestamped lines, for logs and pipes: one per submission, finish and message."""

    LOGGED = frozenset({JobState.QUEUED, JobState.DONE, JobState.FAILED, JobState.CANCELLED})

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stdout

    def _print(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=self.stream, flush=True)

    def started(self, total: int, counts: dict[JobState, int]) -> None:
        self.start(total, counts)
        self._print(f"run: {total} jobs ({self.line()})")

    def moved(self, key: str, old: JobState | None, new: JobState, note: str | None = None) -> None:
        self.move(old, new)
        if new in self.LOGGED:
            extra = f" ({note})" if note else ""
            self._print(f"{key}: {new.value}{extra} [{self.finished}/{self.total}]")

    def message(self, text: str) -> None:
        self._print(text)


class MessageLog(SilentProgress):
    """``run --json``: standard output is the summary document alone, so the run's messages
    (retries, files kept aside, a stop, jobs left for the next run) go to standard error as
    timestamped lines, and the per-job moves are not shown."""

    def message(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


class LiveProgress(_Counts):
    """A rich progress bar with counts per state, done/total and an ETA."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.bar = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[states]}", markup=False),
            console=console,
            transient=False,
        )
        self.task = self.bar.add_task("run", total=None, states="")

    def __enter__(self) -> LiveProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def _refresh(self) -> None:
        self.bar.update(self.task, total=self.total, completed=self.finished, states=self.line())

    def started(self, total: int, counts: dict[JobState, int]) -> None:
        self.start(total, counts)
        self._refresh()

    def moved(self, key: str, old: JobState | None, new: JobState, note: str | None = None) -> None:
        self.move(old, new)
        if new is JobState.FAILED:
            self.console.print(Text.assemble(("failed", "red"), f" {key}: {note or ''}"))
        self._refresh()

    def message(self, text: str) -> None:
        self.console.print(text)
