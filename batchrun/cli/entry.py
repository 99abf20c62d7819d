"""The console script's entry point, kept free of imports: a Ctrl-C while Python is still loading
batchrun (a second or so on a cold disk) exits 130 with one line, like a Ctrl-C at any other
moment, instead of a traceback through the import machinery."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from batchrun.cli.main import main as run
    except KeyboardInterrupt:
        sys.stderr.write("batchrun: interrupted\n")
        raise SystemExit(130) from None
    run()
