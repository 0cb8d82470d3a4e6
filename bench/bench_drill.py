"""``synack drill``: scripts per CPU second on synack's virtual clock, and the same suite's wall
time against the Linux kernel, side by side.

    .venv/bin/python bench/bench_drill.py [--rounds 5] [--linux] [--linux-limit N] [DIR ...]

The suite is ``tests/drill`` (every ``*.pkt`` under the given directories). On synack each script
is parsed and run to its verdict in this process, on one core, ``--rounds`` times; the figure is
scripts per CPU second (``time.process_time``: parsing, the engine and the TCP core together; no
ladder is drawn, as for a passing script). With ``--linux`` (root, ``/dev/net/tun``) the same
scripts then run against the kernel, one after another in real time, each in a namespace of its
own; ``--linux-limit`` runs only the first N. The target (issue 11) is at least 200 scripts per CPU
second on synack, so that a thousand-script suite runs in seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

from synack.drill.cli import expand_paths
from synack.drill.runner import Request, run_file

SUITE = Path(__file__).resolve().parent.parent / "tests" / "drill"


def synack_rate(paths: list[str], rounds: int) -> tuple[float, float, Counter[str]]:
    """(scripts per CPU second, the suite's virtual seconds, verdicts of the last round)."""
    req = Request()
    verdicts: Counter[str] = Counter()
    virtual = 0.0
    start = time.process_time()
    for _ in range(rounds):
        verdicts = Counter()
        virtual = 0.0
        for p in paths:
            out = run_file(p, req)
            verdicts[out.verdict] += 1
            virtual += out.script_time
    cpu = time.process_time() - start
    return rounds * len(paths) / cpu, virtual, verdicts


def linux_wall(paths: list[str]) -> tuple[float, Counter[str]]:
    req = Request(backend="linux")
    verdicts: Counter[str] = Counter()
    start = time.monotonic()
    for p in paths:
        verdicts[run_file(p, req).verdict] += 1
    return time.monotonic() - start, verdicts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="*", default=[str(SUITE)], help="script directories (default tests/drill)")
    ap.add_argument("--rounds", type=int, default=5, help="runs of the suite on synack (default 5)")
    ap.add_argument("--linux", action="store_true", help="also run the suite against the Linux kernel")
    ap.add_argument("--linux-limit", type=int, default=0, metavar="N",
                    help="only the first N scripts on Linux")
    args = ap.parse_args()
    paths = expand_paths(args.dirs)
    rate, virtual, verdicts = synack_rate(paths, args.rounds)
    print(f"suite: {len(paths)} scripts, {virtual:.1f} s of script time")
    print(f"synack (virtual clock): {rate:8.0f} scripts per CPU second   "
          f"({len(paths) / rate:.2f} CPU s for the suite; {dict(verdicts)})")
    if args.linux:
        if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
            print("linux: skipped (needs root and /dev/net/tun)", file=sys.stderr)
            return 1
        chosen = paths[:args.linux_limit] if args.linux_limit else paths
        wall, lv = linux_wall(chosen)
        print(f"linux (real time):      {len(chosen) / wall:8.2f} scripts per wall second   "
              f"({wall:.1f} s for {len(chosen)} scripts; {dict(lv)})")
        print(f"synack's virtual clock runs the same scripts {wall / (len(chosen) / rate):.0f} times faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
