"""Reading a file the user names (a manifest, its CSV, a price file): only regular files of a
sane size, so `/dev/zero` cannot fill memory and a FIFO cannot hang the command."""

from __future__ import annotations

import os
import stat
from pathlib import Path


#: the largest manifest or CSV file read (a CSV of a million jobs is a few hundred MB)
MAX_INPUT_BYTES = 1 << 30


def read_input_file(path: Path, limit: int = MAX_INPUT_BYTES) -> tuple[bytes | None, str]:
    """The file's bytes (at most ``limit``), or None and why not: only regular files of a sane size are
    read (``/dev/zero`` would fill memory, a FIFO would wait forever)."""
    try:
        with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK)) as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                return None, "not a regular file"
            if info.st_size > limit:
                return None, f"larger than {limit >> 20:,} MB"
            # read(limit + 1) would reserve the whole limit (1 GB) up front for any manifest
            data = handle.read(info.st_size + 1)
            if len(data) > info.st_size:  # it grew while being read: the rest, within the limit
                data += handle.read(limit + 1 - len(data))
            return data, ""
    except OSError as error:
        return None, error.strerror or str(error)
    except ValueError:  # an embedded NUL character in the path
        return None, "the path contains a NUL character"
