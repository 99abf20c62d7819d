"""The ``batchrun`` command: a thin shell that parses, calls the library and renders.

Every user mistake ends here as one line per problem on stderr and exit code 2; a traceback is
only ever printed for our own bugs. One module per command group keeps each file short.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from batchrun import __version__
from batchrun.errors import BatchrunError


class BatchrunGroup(click.Group):
    """A click group that turns batchrun errors into exit codes and one-line messages."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BatchrunError as error:
            _report(ctx, error)
        except BaseExceptionGroup as group:  # raised inside a task group (the run's workers)
            matched, rest = group.split(BatchrunError)
            if rest is not None or matched is None:
                raise
            _report(ctx, _first_leaf(matched))
        except KeyboardInterrupt:
            click.echo("batchrun: interrupted", err=True)
            ctx.exit(130)
        except OSError as error:
            if error.filename is None:
                raise
            # a path the user gave that the system refuses (a name too long, a folder without
            # permission) and that no check before named: still one line, not a traceback
            other = f" -> {error.filename2}" if error.filename2 is not None else ""
            click.echo(f"batchrun: {error.filename}{other}: {error.strerror or error}", err=True)
            ctx.exit(2)


def _report(ctx: click.Context, error: BatchrunError) -> None:
    for line in error.lines():
        click.echo(f"batchrun: {line}" if not _is_located(line) else line, err=True)
    ctx.exit(error.exit_code)


def _first_leaf(group: BaseExceptionGroup[BatchrunError]) -> BatchrunError:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _is_located(line: str) -> bool:
    """Manifest problems already start with ``path:line:col:``; don't prefix them."""
    head = line.split(" ", 1)[0]
    return head.count(":") >= 2


@click.group(cls=BatchrunGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="batchrun")
def cli() -> None:
    """Run hundreds or thousands of RunComfy video generations from a YAML or CSV manifest.

    \b
    batchrun validate MANIFEST   check every job against the model's published schema
    batchrun plan MANIFEST       store the jobs and show what would run and cost
    batchrun run MANIFEST        submit, poll, download; resumable at any moment
    batchrun status [CAMPAIGN]   counts, spend, throughput, ETA, recent errors
    batchrun cancel / retry      cancel queued or pending jobs; put failed ones back to pending
    batchrun export [CAMPAIGN]   one row per job as CSV (a rerunnable manifest) or JSON lines
    batchrun report [CAMPAIGN]   a self-contained HTML gallery of the campaign
    batchrun sim                 serve the embedded RunComfy simulator
    """


def _register() -> None:
    from batchrun.cli import jobs, manage, plan, report, run, sim

    for module in (plan, run, manage, jobs, report, sim):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="batchrun")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
