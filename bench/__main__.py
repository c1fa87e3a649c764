"""``python -m bench [--only B1,B3] [--quick]``: run the benchmarks, print the table, write
``bench/results.md`` (with the machine's core count and load)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import Result, Row

BENCHMARKS: dict[str, str] = {
    "B1": "bench.b1_backfill",
    "B2": "bench.b2_ingest",
    "B3": "bench.b3_daily",
    "B4": "bench.b4_startup",
    "B5": "bench.b5_daily_big",
    "B6": "bench.b6_sheets_backfill",
}
RESULTS = Path(__file__).resolve().parent / "results.md"
HEADER = ("", "measure", "baseline", "revbot", "ratio", "target", "met")


def _cells(row: Row) -> tuple[str, ...]:
    met = "" if row.met is None else ("yes" if row.met else "NO")
    return (row.bench, row.measure, row.baseline, row.revbot, row.ratio, row.target, met)


def _text_table(rows: list[Row]) -> str:
    table = [HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown(rows: list[Row], notes: list[str], machine: str, took: float) -> str:
    out = [
        "# revbot benchmarks",
        "",
        f"`make bench` ({'`python -m bench`'}), {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{took:.0f} s in all.",
        "",
        machine,
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    if notes:
        out += ["", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", help="comma-separated benchmarks, e.g. B1,B3 (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller data, for a smoke test")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args(argv)
    chosen = [b.strip().upper() for b in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [b for b in chosen if b not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")

    load = os.getloadavg()
    machine = (
        f"Machine: {os.cpu_count()} cores ({platform.machine()}), "
        f"Python {platform.python_version()}, {platform.system()}; load average at start "
        f"{load[0]:.2f} (other processes share the cores)."
    )
    print(machine, flush=True)
    started = time.monotonic()
    total = Result()
    for name in chosen:
        import importlib

        module = importlib.import_module(BENCHMARKS[name])
        run: Callable[..., Result] = module.run
        print(f"{name} …", flush=True)
        t = time.monotonic()
        got = run(quick=args.quick)
        total.rows += got.rows
        total.notes += got.notes
        print(f"{name} done in {time.monotonic() - t:.0f} s", flush=True)
    took = time.monotonic() - started
    print()
    print(_text_table(total.rows))
    for note in total.notes:
        print(f"- {note}")
    if not args.no_write and not args.quick:
        RESULTS.write_text(_markdown(total.rows, total.notes, machine, took), encoding="utf-8")
        print(f"\nwritten to {RESULTS}")
    return 0 if all(r.met is not False for r in total.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
