"""``python -m benchmarks [--quick] [--only a,b] [--json FILE]``: run, print the table, write JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks.common import Result

BENCHMARKS = ("makespan", "scale", "download", "runners")
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def table(results: list[Result]) -> str:
    rows = [("benchmark", "measured", "target", "result")]
    for r in results:
        target = "-" if r.target is None else f"{'>=' if r.higher_is_better else '<='} {r.target:g}"
        verdict = {True: "pass", False: "FAIL", None: "info"}[r.passed]
        rows.append((r.name, f"{r.measured:g} {r.unit}", target, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, about a minute)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(BENCHMARKS)
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    results: list[Result] = []
    timings: dict[str, float] = {}
    for name in chosen:
        started = time.perf_counter()
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        results.extend(module.run(args.quick))
        timings[name] = round(time.perf_counter() - started, 1)
    print(table(results))
    document = {
        "quick": args.quick,
        "benchmarks": chosen,
        "seconds": timings,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "results": [r.to_json() for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
