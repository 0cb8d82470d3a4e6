"""Before and after, side by side: the TUN benchmarks against two checkouts of synack, alternately.

    sudo .venv/bin/python bench/ab_tun.py OLD_TREE NEW_TREE [--rounds 3] [--bench tun] -- [ARGS ...]
    sudo .venv/bin/python bench/ab_tun.py OLD_TREE NEW_TREE --bench lifecycles -- --modes host

A tree is a checkout (``git worktree add /tmp/old COMMIT``); its ``src/`` is put first on
``PYTHONPATH``, and this checkout's own ``bench/bench_tun.py`` (or ``bench_lifecycles.py``) runs
against it with ``--json`` and the ARGS after ``--``, so both trees are measured by the same
script. Each round runs the old tree then the new one (the order alternates between rounds: old,
new, new, old, ...). On this shared 2-core machine a figure moves by ±40 % with the others'
load, so the table gives, per tree, the median of the rounds' figures and their range, the
machine's load average (``/proc/loadavg``) at each run, and the kernel↔kernel (veth) reference
measured in the same rounds.

``--new-args "..."`` adds arguments for the new tree's runs only — options the old tree's stack
does not have, e.g. ``--new-args "--write-thread offload-off"`` (each figure then compares the
old stack with the new one with its writer thread, row for row); a single option is written
with ``=`` (``--bench lifecycles --new-args=--write-thread``) so that it is not taken for one
of this script's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(tree: str, bench: str, args: list[str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "src"))
        subprocess.run([sys.executable, os.path.join(HERE, f"bench_{bench}.py"), *args, "--json", out.name],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        with open(out.name) as f:
            result: dict[str, Any] = json.load(f)
            return result


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    if "mode" in row:
        return (row["mode"],)
    return (row["mtu"], "on" if row["offload"] else "off", row["direction"])


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):,.1f} ({min(values):,.0f}–{max(values):,.0f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bench", choices=["tun", "lifecycles"], default="tun")
    ap.add_argument("--new-args", default="", help="more arguments for the new tree only (options the old "
                    "tree does not have, e.g. \"--write-thread offload-off\")")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:cut])
    extra = argv[cut + 1:]  # the benchmark's own arguments
    joined = " ".join(extra + a.new_args.split())
    if "--write-thread both" in joined or "--write-thread=both" in joined:
        ap.error("--write-thread both makes two rows per figure, which this table would merge")
    trees = {"old": a.old, "new": a.new}
    figures: dict[tuple[Any, ...], dict[str, list[float]]] = {}
    loads: dict[str, list[str]] = {"old": [], "new": []}
    for r in range(a.rounds):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        for i, which in enumerate(order):
            args = list(extra) + (a.new_args.split() if which == "new" else [])
            if a.bench == "tun" and i == 1:
                args.append("--no-veth")  # one veth reference per round
            result = _run(trees[which], a.bench, args)
            loads[which].append(result["loadavg"])
            for row in result["rows"]:
                fig = figures.setdefault(_key(row), {})
                value = row["mbps"] if a.bench == "tun" else row["per_s"]
                fig.setdefault(which, []).append(value)
                cpu = row["mb_per_cpu_s"] if a.bench == "tun" else row["per_cpu_s"]
                fig.setdefault(f"{which} cpu", []).append(cpu)
                if row.get("veth") is not None:
                    fig.setdefault("veth", []).append(row["veth"])
            print(f"round {r + 1}: {which} ({trees[which]}) done, load {result['loadavg']}",
                  file=sys.stderr, flush=True)
    unit = "MB/s" if a.bench == "tun" else "per s"
    cpu_unit = "MB per CPU s" if a.bench == "tun" else "per CPU s"
    print(f"\n{a.rounds} rounds, old = {a.old}, new = {a.new}; each cell: median of the rounds (range)")
    print(f"| figure | old {unit} | new {unit} | old {cpu_unit} | new {cpu_unit} | veth {unit} |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, fig in figures.items():
        name = " ".join(str(k) for k in key)
        cells = [_cell(fig.get(k, [])) for k in ("old", "new", "old cpu", "new cpu", "veth")]
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"load average (1, 5, 15 min) at the old runs: {'; '.join(loads['old'])}")
    print(f"load average (1, 5, 15 min) at the new runs: {'; '.join(loads['new'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
