"""The core as Python against the core compiled by mypyc, alternately, in one sitting.

    python bench/ab_mypyc.py [--rounds 5] [--compiled build/compiled] [--no-build] [--no-memory]

Builds the compiled form first if it is missing or stale (``scripts/build-compiled.sh``, with the
python running this script), checks that each form is the one it claims to be
(``synack.core.compiled()``), then runs ``--rounds`` rounds of ``bench/ab_refactor.py``'s figures —
``bench/bench_sim.py --lifecycles 10000 --bulk-mb 10`` and ``bench/bench_core.py --mb 20 --segs
20000 --traced 2000 --conns 0`` — on each form, Python first in odd rounds and the compiled form
first in even ones, and reads the load average (``/proc/loadavg``) before each. It prints the best
of each figure (highest rate, lowest time), the ratio compiled/Python (above 1: the compiled form
is faster), every run, and the load. ``--no-memory`` leaves out one memory run per form
(``bench_core.py --traced 20000 --conns 100000``: bytes per idle connection, tracemalloc and RSS).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys

from ab_refactor import FIGURES, measure

ROOT = pathlib.Path(__file__).resolve().parent.parent
MEMORY = ("memory per connection, tracemalloc (B, both ends)", "memory per connection, RSS (B, both ends)")


def _env(pythonpath: str) -> dict[str, str]:
    return {"PYTHONPATH": pythonpath, "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"}


def build(directory: str) -> None:
    subprocess.run(["bash", "scripts/build-compiled.sh", directory], cwd=ROOT, env=_env(""), check=True)


def check_form(pythonpath: str, compiled: bool) -> None:
    code = "import synack.core as c; print(c.compiled(), c.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(pythonpath), capture_output=True,
                         text=True, check=True).stdout.split()
    if out[0] != str(compiled):
        raise SystemExit(f"PYTHONPATH={pythonpath}: synack.core.compiled() is {out[0]} ({out[1]})")


def load() -> float:
    return float(pathlib.Path("/proc/loadavg").read_text().split()[0])


def memory(pythonpath: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "bench/bench_core.py", "--mb", "1", "--segs", "1000", "--traced",
                          "20000", "--conns", "100000"], cwd=ROOT, env=_env(pythonpath), capture_output=True,
                         text=True, check=True).stdout
    found = [float(x.replace(",", ""))
             for x in re.findall(r"([\d,]+) bytes per connection \(both ends\)", out)]
    return dict(zip(MEMORY, found, strict=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compiled", default="build/compiled", help="the compiled build's directory")
    ap.add_argument("--no-build", action="store_true", help="use --compiled as it is")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory run of each form")
    args = ap.parse_args()
    forms = {"Python": str(ROOT / "src"), "compiled": str((ROOT / args.compiled).resolve())}
    if not args.no_build:
        build(args.compiled)
    check_form(forms["Python"], False)
    check_form(forms["compiled"], True)
    runs: dict[str, dict[str, list[float]]] = {form: {} for form in forms}
    loads: list[float] = []
    for r in range(args.rounds):
        order = list(forms) if r % 2 == 0 else list(forms)[::-1]
        for form in order:
            loads.append(load())
            for name, value in measure(str(ROOT), forms[form]).items():
                runs[form].setdefault(name, []).append(value)
            print(f"round {r + 1}: {form} done (load {loads[-1]:.2f})", file=sys.stderr, flush=True)
    loads.append(load())
    mem = {} if args.no_memory else {form: memory(path) for form, path in forms.items()}

    print(f"{args.rounds} rounds, alternating; 1-minute load average {min(loads):.2f}–{max(loads):.2f} "
          f"(mean {sum(loads) / len(loads):.2f}); {os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    print("| figure | Python | compiled | compiled/Python | runs Python / compiled |")
    print("|---|---:|---:|---:|---|")
    for name in FIGURES:
        lower = "µs" in name
        best = {form: (min if lower else max)(runs[form][name]) for form in forms}
        gain = best["Python"] / best["compiled"] if lower else best["compiled"] / best["Python"]
        every = " / ".join(", ".join(f"{v:.2f}" for v in runs[form][name]) for form in forms)
        print(f"| {name} | {best['Python']:.2f} | {best['compiled']:.2f} | {gain:.2f}× | {every} |")
    for name in MEMORY if mem else ():  # here below 1 is better: the compiled form takes less
        print(f"| {name} | {mem['Python'][name]:,.0f} | {mem['compiled'][name]:,.0f} | "
              f"{mem['compiled'][name] / mem['Python'][name]:.2f} (size) | one run each |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
