"""Compare two checkouts of synack on the core benchmarks, alternately, in one sitting.

    python bench/ab_refactor.py OLD_TREE NEW_TREE [--rounds 5]

Each round runs ``bench/bench_sim.py --lifecycles 10000 --bulk-mb 10`` and ``bench/bench_core.py
--mb 20 --segs 20000 --traced 2000 --conns 0`` in each tree (its own ``bench/`` and ``src/``), one
tree after the other, and at the end prints the best figure of each (lowest time, highest rate)
with every run beside it: on a shared, noisy machine the best of several alternating runs is the
figure least disturbed by the others' load. (Used for the refactor of issue 9: bench/README.md.)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

FIGURES = ("lifecycles/CPU-s", "sim bulk 0% MB/CPU-s", "sim bulk 1% MB/CPU-s", "recv µs/seg", "send µs/seg",
           "core bulk MB/CPU-s", "core bulk (pull per packet) MB/CPU-s")


def _run(tree: str, args: list[str], pythonpath: str) -> str:
    return subprocess.run([sys.executable, *args], cwd=tree, env={"PYTHONPATH": pythonpath},
                          capture_output=True, text=True, check=True).stdout


def measure(tree: str, pythonpath: str = "src") -> dict[str, float]:
    """The figures of one round in ``tree``, importing synack from ``pythonpath`` (bench/ab_mypyc.py
    passes the compiled build's directory)."""
    sim = _run(tree, ["bench/bench_sim.py", "--lifecycles", "10000", "--bulk-mb", "10"], pythonpath)
    core = _run(tree, ["bench/bench_core.py", "--mb", "20", "--segs", "20000", "--traced", "2000",
                       "--conns", "0"], pythonpath)
    found = re.search(r"([\d,]+) per CPU second", sim)
    if found is None:
        raise SystemExit(f"{tree}: no lifecycle figure in bench_sim's output")
    bulk = [float(x) for x in re.findall(r"loss \d+%: ([\d.]+) MB per CPU second", sim)]
    per_seg = [float(x) for x in re.findall(r"([\d.]+) µs/segment", core)]
    core_bulk = [float(x) for x in re.findall(r"\n\s+([\d.]+) MB/s per CPU second", core)]
    values = (float(found.group(1).replace(",", "")), *bulk[:2], *per_seg[:2], *core_bulk[:2])
    return dict(zip(FIGURES, values, strict=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    runs: dict[str, dict[str, list[float]]] = {args.old: {}, args.new: {}}
    for r in range(args.rounds):
        for tree in runs:
            for name, value in measure(tree).items():
                runs[tree].setdefault(name, []).append(value)
            print(f"round {r + 1}: {tree} done", file=sys.stderr, flush=True)
    for tree, figures in runs.items():
        print(tree)
        for name, values in figures.items():
            best = min(values) if "µs" in name else max(values)
            print(f"  {name:40} best {best:9.2f}   runs {', '.join(f'{v:.2f}' for v in values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
