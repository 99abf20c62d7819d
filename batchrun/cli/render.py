"""Terminal output: rich tables on a terminal, plain text otherwise, JSON on request."""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text


def console(*, stderr: bool = False) -> Console:
    """A rich console that degrades to plain text when not writing to a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    # markup off: prompts, ids, paths and server messages are user text, and a `[/x]` in them
    # must print as written, not crash or vanish (style with rich.text.Text instead)
    return Console(file=stream, highlight=False, soft_wrap=True, markup=False)


def print_json(data: Mapping[str, Any] | list[Any]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def rich_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, right: Collection[str] = ()) -> Table:
    grid = Table(show_edge=False, pad_edge=False)
    for column in columns:
        grid.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        grid.add_row(*(Text(cell) for cell in row))
    return grid


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, right: Collection[str] = ()) -> list[str]:
    """Rows under a header as aligned plain lines, never cut (for pipes and logs)."""
    widths = [max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)]
    return [
        "  ".join(cell.rjust(w) if column in right else cell.ljust(w) for cell, w, column in zip(row, widths, columns)).rstrip()
        for row in (columns, *rows)
    ]


def table(out: Console, columns: Sequence[str], rows: Sequence[Sequence[str]], *, right: Collection[str] = ()) -> None:
    """Rows under a header: a rich table on a terminal, plain aligned lines otherwise."""
    if out.is_terminal:
        out.print(rich_table(columns, rows, right=right))
        return
    for line in plain_table(columns, rows, right=right):
        out.print(line, markup=False, highlight=False)
