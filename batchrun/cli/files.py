"""Writing a file the user named with `-o` (export, report): whole or not at all."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from batchrun.errors import ConfigError


@contextlib.contextmanager
def output_file(output: Path) -> Iterator[TextIO]:
    """A text stream for ``output``: written to ``<output>.part`` and renamed into place, so a
    failure never leaves half a file; a FIFO or a device (``-o /dev/stdout``) is written to
    directly, never replaced. Any OS error is one ConfigError naming the file."""
    if not output.name:
        raise ConfigError(f"cannot write {str(output)!r}: it names no file")
    try:
        special = output.exists() and not stat.S_ISREG(output.stat().st_mode) and not output.is_dir()
    except OSError as error:
        raise ConfigError(f"cannot write {output}: {error.strerror or error}") from None
    if special:
        try:
            with output.open("w", encoding="utf-8", newline="") as stream:
                yield stream
        except OSError as error:
            raise ConfigError(f"cannot write {output}: {error.strerror or error}") from None
        return
    part = output.with_name(output.name + ".part")
    _make_folder(output)
    try:
        with part.open("w", encoding="utf-8", newline="") as stream:
            yield stream
        os.replace(part, output)
    except OSError as error:
        raise ConfigError(f"cannot write {output}: {error.strerror or error}") from None
    finally:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)


def _make_folder(output: Path) -> None:
    """Create ``output``'s folder, or say in one line why it cannot be made."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot write {output}: {folder_problem(output.parent, error)}") from None


def folder_problem(folder: Path, error: OSError) -> str:
    """Why ``folder`` could not be made: a file where a folder should be is named as such (mkdir
    itself only says "File exists" or "Not a directory"), else the system's reason."""
    blocker = next((p for p in (folder, *folder.parents) if _is_file(p)), None)
    return f"{blocker} is a file, not a folder" if blocker is not None else (error.strerror or str(error))


def _is_file(path: Path) -> bool:
    try:
        return path.exists() and not path.is_dir()
    except OSError:  # a name too long, say: the caller's error tells that
        return False
