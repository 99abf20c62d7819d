#!/usr/bin/env python3
"""Developer entry point that needs nothing but Python 3.11+.

    python3 dev.py demo      run the demo campaign end to end on the embedded simulator
    python3 dev.py test      run the whole test suite
    python3 dev.py bench     run the benchmarks and print their table (extra args are passed on)

The first call creates ./.venv and installs batchrun into it (editable, with the dev extras);
later calls reuse it and reinstall only when pyproject.toml changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("BATCHRUN_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".batchrun-installed"


def ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"batchrun needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PY.exists():
        print(f"dev.py: creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    print("dev.py: installing batchrun with its dev extras", file=sys.stderr)
    pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip", "setuptools", "wheel"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "bench"}:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_venv()
    command, rest = argv[0], argv[1:]
    env = dict(os.environ)
    if command == "demo":
        out = ROOT / "demo-output"
        args = [str(BIN / "batchrun"), "run", str(ROOT / "manifests" / "demo.yaml"),
                "--simulate", "--db", str(out / "demo.db"), "--out", str(out / "videos"), *rest]
    elif command == "test":
        workers = [] if any(a.startswith("-n") for a in rest) else ["-n", "2"]
        args = [str(PY), "-m", "pytest", *workers, *rest]
    else:
        args = [str(PY), "-m", "benchmarks", *rest]
    return subprocess.run(args, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
