"""Terminal output: rich tables on a terminal, plain text otherwise, JSON on request."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import click
from rich.console import Console


def console(*, stderr: bool = False) -> Console:
    """A rich console that degrades to plain text when not writing to a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, soft_wrap=True)


def print_json(data: Mapping[str, Any] | list[Any]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
