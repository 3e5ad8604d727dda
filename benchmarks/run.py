"""Run benchmarks by name and write their sections into docs/benchmarks.md."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

BENCHMARKS = sorted(
    path.stem.removeprefix("bench_") for path in Path(__file__).parent.glob("bench_*.py")
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=BENCHMARKS, help=f"any of {BENCHMARKS}")
    parser.add_argument("--quick", action="store_true", help="smallest sizes only (smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch the docs")
    args = parser.parse_args()
    from benchmarks.common import write_section

    for name in args.names:
        if name not in BENCHMARKS:
            parser.error(f"unknown benchmark {name!r}; choose from {BENCHMARKS}")
        module = importlib.import_module(f"benchmarks.bench_{name}")
        body = module.run(quick=args.quick)
        print(body)
        if not args.no_write:
            write_section(name, body)


if __name__ == "__main__":
    main()
