"""Options shared by several commands, each with its environment variable shown in --help.

Precedence, resolved once per command: flag > BATCHRUN_*/RUNCOMFY_* environment > manifest >
default. click handles the first two; the manifest layer is applied by the command.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class FiniteRange(click.FloatRange):
    """A number in a range that is never NaN or infinite (``FloatRange`` lets NaN through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


#: USD amounts (budgets)
USD = FiniteRange(min=0)


class FolderPath(click.Path):
    """A folder to write into; an empty value (``--out "$OUT"`` with OUT unset) is refused rather
    than read as the current folder, where a campaign's files would land among whatever is there."""

    def __init__(self) -> None:
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("an empty folder name (write . for the current folder)", param, ctx)
        return super().convert(value, param, ctx)


def checked_api_access(base_url: str, token: str) -> tuple[str, str]:
    """The base URL and token, checked before anything is written (ConfigError otherwise); says
    once on stderr when the token would travel unencrypted to another machine."""
    from batchrun.api.client import checked_base_url, checked_token, plain_http_warning  # httpx: only when needed

    token, base_url = checked_token(token), checked_base_url(base_url)
    warning = plain_http_warning(base_url)
    if warning:
        click.echo(warning, err=True)
    return base_url, token


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


manifest_argument = click.argument(
    "manifest", type=click.Path(dir_okay=False, path_type=Path)
)

db_option = click.option(
    "--db",
    envvar="BATCHRUN_DB",
    show_envvar=True,
    metavar="PATH|URL",
    help="Database: a SQLite file path or a SQLAlchemy URL (postgresql+psycopg://...). "
    "Default: <manifest>.batchrun.db next to the manifest.",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")

loading_options = _stack(
    click.option(
        "--model",
        envvar="BATCHRUN_MODEL",
        show_envvar=True,
        help="Model id for jobs that name none (required for a bare CSV manifest); overrides the manifest's `model`.",
    ),
    click.option(
        "--allow-unknown-model",
        is_flag=True,
        help="Accept model ids batchrun has no schema for; their input is only checked to be a JSON object.",
    ),
    click.option(
        "--max-jobs",
        type=click.IntRange(min=1),
        default=1_000_000,
        show_default=True,
        envvar="BATCHRUN_MAX_JOBS",
        show_envvar=True,
        help="Refuse manifests that expand to more jobs than this.",
    ),
    click.option(
        "--prices",
        "prices_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="BATCHRUN_PRICES",
        show_envvar=True,
        help="YAML/JSON price overrides (tier or model id -> {silent, audio} USD per second).",
    ),
)
