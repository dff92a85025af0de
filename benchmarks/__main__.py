"""``python -m benchmarks [NAME...] [--quick]``: run the named benchmarks (default: all), each
as its own script in a fresh interpreter, so one benchmark's processes, threads and heap
never weigh on the next; exit status is the worst of theirs. ``dynwf bench`` calls this."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("engine", "rpc", "isolate", "wasm", "dispatch", "throughput", "memory", "peer")
"""The known benchmarks, cheapest first; each writes ``results/<name>.json``. Any other
script in this directory (not ``_private`` and not ``plots``) runs after them."""
NOT_BENCHMARKS = {"plots"}


def available() -> list[str]:
    present = {
        p.stem
        for p in HERE.glob("*.py")
        if not p.stem.startswith("_") and p.stem not in NOT_BENCHMARKS
    }
    return [name for name in ORDER if name in present] + sorted(present - set(ORDER))


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(names)}")
    parser.add_argument("--quick", action="store_true", help="fewer samples, smaller points")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(names))
        return 0
    unknown = [n for n in args.names if n not in names]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}")
    status = 0
    summary: list[tuple[str, int, float]] = []
    for name in args.names or names:
        print(f"== benchmark {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        command = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if args.quick else [])]
        code = subprocess.call(command, cwd=HERE.parent)
        summary.append((name, code, time.monotonic() - started))
        status = max(status, code)
    for name, code, seconds in summary:
        verdict = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"{name:12} {verdict:18} {seconds:6.1f} s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
