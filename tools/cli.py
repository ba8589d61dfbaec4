"""``smilebot-tools``: the desktop command line (benchmarks now; data, training, ... later)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smilebot_tools import bench
from smilebot_tools.results import write_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smilebot-tools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("bench", help="benchmark the detection core; figures go to JSON")
    b.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all of {', '.join(bench.BENCHMARKS)})",
    )
    b.add_argument("--results", type=Path, default=Path("results"), help="folder for the JSON")
    b.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    unknown = [n for n in args.names if n not in bench.BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(bench.BENCHMARKS)}")
    figures = bench.run(args.names or list(bench.BENCHMARKS), seed=args.seed)
    path = write_run(figures, args.results)
    print(f"wrote {len(figures)} figures to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
