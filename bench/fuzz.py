#!/usr/bin/env python3
"""Fuzz synack's packet input and its decoders at scale, as a benchmark.

    python bench/fuzz.py --packets 1000000              # every target, the inputs split by SHARES
    python bench/fuzz.py --packets 200000 --targets host --engine random --seed 3
    python bench/fuzz.py --reproduce crash-host-1a2b3c4d5e6f.bin

Targets (``bench/fuzz_targets.py``): ``host`` — ``Host.receive`` into hosts restored from
simulator snapshots in every state; ``wire`` — ``parse_packet``/``parse_segment``/
``parse_options`` and their round trips; ``decode`` — ``synack decode`` on text; ``pcap`` — the
pcap/pcapng reader on bytes.

Engines: ``atheris`` (coverage-guided: libFuzzer through atheris, ``pip install -e '.[fuzz]'``),
one child process per target with the ``synack`` modules instrumented; ``random`` (NOT
coverage-guided: a seeded mutator over the seed corpus, in this process), used when atheris is
not installed. ``auto`` (the default) picks atheris when it can be imported.

A crash is any exception other than the target's documented errors (``WireError``,
``DecodeError``, ``PcapError``; none at all for ``Host.receive``), a broken invariant checked
after every input (``fuzz_targets.BrokenInvariant``), or an input that runs longer than
``--timeout`` seconds of CPU (a hang, caught by a watchdog timer). Each distinct crash (type and
place) is saved with its input (``crash-TARGET-HASH.bin``) and its traceback (``.txt``) in
``OUT/crashes``; the run goes on.

Printed at the end: per target the inputs, the packets fed, inputs per second (wall clock and
CPU), libFuzzer's coverage (``cov``: edges, ``ft``: features, ``corp``: corpus entries) with
atheris, and the crashes found.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

BENCH = Path(__file__).resolve().parent
#: How ``--packets`` is split between the targets (``--targets`` renormalises the shares).
SHARES = {"host": 0.4, "wire": 0.35, "decode": 0.1, "pcap": 0.15}
STATS_EVERY = 5000


class FuzzTarget(Protocol):
    name: str
    allowed: tuple[type[BaseException], ...]
    max_len: int

    def __call__(self, data: bytes) -> int: ...


class Hang(Exception):
    """The watchdog's verdict: one input ran longer than the timeout."""


@dataclass
class Crash:
    target: str
    kind: str
    where: str
    message: str
    count: int = 1
    input_file: str = ""


@dataclass
class Stats:
    target: str
    engine: str
    inputs: int = 0
    packets: int = 0
    crashes: int = 0
    unique: list[Crash] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    cov: int | None = None
    ft: int | None = None
    corp: int | None = None


def _where(tb: traceback.StackSummary, hang: bool = False) -> str:
    """The innermost frame in synack (or, failing that, the innermost one): the crash's place.
    For a hang the outermost synack function, without a line: where the timer caught it is
    chance, what was called is not."""
    frames = [f for f in tb if "synack" in f.filename] or list(tb)
    if not frames:
        return "?"
    if hang:
        return f"{Path(frames[0].filename).name} in {frames[0].name}"
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}"


class Harness:
    """Feed one target, count, catch and save crashes, watch for hangs."""

    MAX_SAVED = 50

    def __init__(self, target: FuzzTarget, out: Path | None, timeout: float = 5.0) -> None:
        self.target = target
        self.out = out
        self.timeout = timeout
        self.stats = Stats(target.name, "")
        self._unique: dict[tuple[str, str], Crash] = {}
        self._busy = False
        self._seen = -1

    # The watchdog: a CPU-time timer every ``timeout`` seconds; an input still running at two
    # ticks in a row is a hang (raised inside the target, so the traceback shows where it spins).
    def _tick(self, signum: int, frame: FrameType | None) -> None:
        if self._busy and self._seen == self.stats.inputs:
            raise Hang(f"one input ran for more than {self.timeout} s of CPU")
        self._seen = self.stats.inputs

    @contextlib.contextmanager
    def watchdog(self) -> Iterator[None]:
        if self.timeout <= 0 or not hasattr(signal, "setitimer"):
            yield
            return
        old = signal.signal(signal.SIGVTALRM, self._tick)
        signal.setitimer(signal.ITIMER_VIRTUAL, self.timeout, self.timeout)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
            signal.signal(signal.SIGVTALRM, old)

    def guarded(self, data: bytes) -> int:
        """The target on one input, with the watchdog (when running) looking."""
        self._busy = True
        try:
            return self.target(data)
        finally:
            self._busy = False

    def one(self, data: bytes) -> None:
        st = self.stats
        st.inputs += 1
        try:
            st.packets += self.guarded(data)
        except self.target.allowed:
            pass
        except Exception as exc:  # every other exception is what we look for
            self._record(data, exc)

    def _record(self, data: bytes, exc: BaseException) -> None:
        tb = traceback.extract_tb(exc.__traceback__)
        key = (type(exc).__name__, _where(tb, hang=isinstance(exc, Hang)))
        self.stats.crashes += 1
        crash = self._unique.get(key)
        if crash is not None:
            crash.count += 1
            return
        crash = Crash(self.target.name, key[0], key[1], str(exc)[:500])
        self._unique[key] = crash
        self.stats.unique.append(crash)
        if self.out is not None and len(self._unique) <= self.MAX_SAVED:
            self.out.mkdir(parents=True, exist_ok=True)
            stem = f"crash-{self.target.name}-{hashlib.sha1(data).hexdigest()[:12]}"
            (self.out / f"{stem}.bin").write_bytes(data)
            text = "".join(traceback.format_exception(exc))
            (self.out / f"{stem}.txt").write_text(
                f"target: {self.target.name}\ninput: {len(data)} bytes, {data.hex()}\n"
                f"reproduce: python bench/fuzz.py --reproduce {self.out / stem}.bin\n\n{text}")
            crash.input_file = str(self.out / f"{stem}.bin")
        print(f"CRASH {self.target.name}: {key[0]} at {key[1]}: {str(exc)[:200]}", file=sys.stderr,
              flush=True)


# ---------------------------------------------------------------------------------------------
# The random engine: NOT coverage-guided
# ---------------------------------------------------------------------------------------------

_INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF)
_INTERESTING16 = (0, 1, 20, 40, 0x7FFF, 0x8000, 0xFFFF)
_INTERESTING32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


class Mutator:
    """A seeded mutator over a fixed corpus (bit flips, interesting values, inserted, deleted and
    repeated bytes, splices of two entries). It keeps nothing it generated: it cannot tell which
    inputs were new, since nothing measures coverage."""

    def __init__(self, corpus: list[bytes], seed: int, max_len: int) -> None:
        self.corpus = corpus or [b""]
        self.rng = random.Random(seed)
        self.max_len = max_len

    def __call__(self) -> bytes:
        rng = self.rng
        b = bytearray(rng.choice(self.corpus))
        for _ in range(1 + int(rng.expovariate(0.7))):
            self._mutate(b)
        return bytes(b[:self.max_len])

    def _mutate(self, b: bytearray) -> None:
        rng = self.rng
        op = rng.randrange(9)
        n = len(b)
        if n == 0 or op == 0:
            b[rng.randrange(n + 1):0] = rng.randbytes(rng.randrange(1, 9))
        elif op == 1:
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 2:
            b[rng.randrange(n)] = rng.choice(_INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
        elif op == 3 and n >= 2:
            i = rng.randrange(n - 1)
            b[i:i + 2] = rng.choice(_INTERESTING16).to_bytes(2, rng.choice(("big", "little")))
        elif op == 4 and n >= 4:
            i = rng.randrange(n - 3)
            v = (int.from_bytes(b[i:i + 4], "big") + rng.randrange(-70000, 70000)) & 0xFFFFFFFF \
                if rng.random() < 0.5 else rng.choice(_INTERESTING32)
            b[i:i + 4] = v.to_bytes(4, "big")
        elif op == 5:
            i = rng.randrange(n)
            del b[i:i + rng.randrange(1, 17)]
        elif op == 6:
            del b[rng.randrange(n):]
        elif op == 7:
            i = rng.randrange(n)
            j = min(n, i + rng.randrange(1, 33))
            b[j:j] = b[i:j] * rng.randrange(1, 4)
        else:
            other = rng.choice(self.corpus)
            if other:
                i = rng.randrange(len(other))
                b[rng.randrange(n):] = other[i:]


def _load_targets(src: str | None) -> Any:
    """``fuzz_targets`` (which imports synack); ``src`` puts another source tree first."""
    if src:
        sys.path.insert(0, str(Path(src).resolve()))
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import fuzz_targets
    return fuzz_targets


def run_random(target: FuzzTarget, corpus: list[bytes], inputs: int, seed: int, out: Path | None,
               timeout: float, progress: Callable[[Stats], None] | None = None) -> Stats:
    """``inputs`` inputs through ``target``: the corpus itself first, then mutants of it."""
    h = Harness(target, out, timeout)
    h.stats.engine = "random"
    mutate = Mutator(corpus, seed, target.max_len)
    t0, c0 = time.perf_counter(), time.process_time()
    last = t0
    with h.watchdog():
        for i in range(inputs):
            h.one(corpus[i] if i < len(corpus) else mutate())
            if progress is not None and i % 1000 == 0 and time.perf_counter() - last > 30:
                last = time.perf_counter()
                h.stats.wall, h.stats.cpu = last - t0, time.process_time() - c0
                progress(h.stats)
    h.stats.wall, h.stats.cpu = time.perf_counter() - t0, time.process_time() - c0
    return h.stats


# ---------------------------------------------------------------------------------------------
# The atheris engine: one child process per target
# ---------------------------------------------------------------------------------------------

_PULSE = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)")


def child_main(args: argparse.Namespace) -> None:
    """In the child: instrument synack, write the seed corpus, run libFuzzer for ``--runs``."""
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(include=["synack"]):
        ft = _load_targets(args.src)
    target = ft.TARGETS[args.child]()
    seeds, work = Path(args.seeds), Path(args.work)
    for data in ft.corpus(target):
        (seeds / hashlib.sha1(data).hexdigest()).write_bytes(data)
    out = Path(args.out) / "crashes"
    out.mkdir(parents=True, exist_ok=True)
    h = Harness(target, out, args.timeout)
    h.stats.engine = "atheris"
    stats_file = Path(args.stats)
    runs = args.runs
    t0, c0 = time.perf_counter(), time.process_time()

    def write() -> None:
        h.stats.wall, h.stats.cpu = time.perf_counter() - t0, time.process_time() - c0
        tmp = stats_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(h.stats)))
        tmp.replace(stats_file)

    seen_crashes = [0]

    def one(data: bytes) -> None:
        h.one(data)
        if h.stats.inputs % STATS_EVERY == 0 or h.stats.inputs >= runs or h.stats.crashes != seen_crashes[0]:
            seen_crashes[0] = h.stats.crashes
            write()

    with h.watchdog():
        atheris.Setup([sys.argv[0], str(work), str(seeds), f"-runs={runs}", f"-seed={args.seed}",
                       f"-max_len={target.max_len}", "-print_final_stats=1", "-rss_limit_mb=4096",
                       # libFuzzer's own timeout (it ends the process) only backs up the watchdog,
                       # which saves the hang and goes on; its artifacts go to OUT, not the cwd.
                       "-timeout=600", f"-artifact_prefix={out}/libfuzzer-"], one)
        atheris.Fuzz()


def run_atheris(name: str, inputs: int, seed: int, out: Path, timeout: float, src: str | None,
                progress: Callable[[Stats], None] | None = None) -> Stats:
    work = out / "corpus" / name
    seeds = out / "seeds" / name
    for d in (work, seeds):
        d.mkdir(parents=True, exist_ok=True)
    stats_file = out / f"stats-{name}.json"
    cmd = [sys.executable, __file__, "--child", name, "--runs", str(inputs), "--seed", str(seed),
           "--out", str(out), "--work", str(work), "--seeds", str(seeds), "--stats", str(stats_file),
           "--timeout", str(timeout)] + (["--src", src] if src else [])
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    last = t0
    pulse: tuple[int, int, int] | None = None
    with open(out / f"libfuzzer-{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=log, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            log.write(line)
            m = _PULSE.match(line)
            if m:
                pulse = (int(m[3]), int(m[4]), int(m[5]))
            if line.startswith("CRASH "):
                print(line.rstrip(), file=sys.stderr, flush=True)
            if progress is not None and m and pulse is not None and time.perf_counter() - last > 60:
                last = time.perf_counter()
                st = Stats(name, "atheris", inputs=int(m[1]), wall=last - t0)
                st.cov, st.ft, st.corp = pulse
                progress(st)
        rc = proc.wait()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        st = Stats(**json.loads(stats_file.read_text()))
        st.unique = [Crash(**c) for c in st.unique]  # type: ignore[arg-type]
    except (OSError, ValueError):
        st = Stats(name, "atheris")
    st.wall = time.perf_counter() - t0
    st.cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if pulse is not None:
        st.cov, st.ft, st.corp = pulse
    if rc != 0:
        st.crashes += 1
        st.unique.append(Crash(name, f"exit {rc}", "the fuzzing process", f"see {log.name}"))
    return st


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _split(total: int, names: list[str]) -> dict[str, int]:
    weight = sum(SHARES[n] for n in names)
    out = {n: int(total * SHARES[n] / weight) for n in names}
    out[names[0]] += total - sum(out.values())
    return out


def _row(st: Stats) -> str:
    rate = st.inputs / st.wall if st.wall else 0.0
    cpu_rate = st.inputs / st.cpu if st.cpu else 0.0
    cov = "-" if st.cov is None else f"{st.cov}/{st.ft}/{st.corp}"
    return (f"{st.target:<8} {st.engine:<8} {st.inputs:>11,} {st.packets:>11,} {rate:>10,.0f} "
            f"{cpu_rate:>10,.0f} {cov:>18} {st.crashes:>8} {st.wall:>9.1f} {st.cpu:>9.1f}")


HEADER = (f"{'target':<8} {'engine':<8} {'inputs':>11} {'packets':>11} {'inputs/s':>10} "
          f"{'per CPU s':>10} {'cov/ft/corp':>18} {'crashes':>8} {'wall s':>9} {'CPU s':>9}")


def _engine(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "random"
    return "atheris"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--packets", type=int, default=100_000, help="inputs in all, split between the targets")
    p.add_argument("--targets", default=",".join(SHARES), help="comma-separated: host,wire,decode,pcap")
    p.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=0.5, help="CPU seconds one input may take (a hang)")
    p.add_argument("--out", help="where crashes, logs and the grown corpus go (default: a new temp dir)")
    p.add_argument("--src", help="fuzz the synack of this source tree (a directory holding synack/)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--reproduce", metavar="FILE", help="run one saved input and print its traceback")
    p.add_argument("--target", help="the target of --reproduce (default: from the file name)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    for hidden in ("--child", "--work", "--seeds", "--stats"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def reproduce(path: str, target_name: str | None, src: str | None, timeout: float) -> int:
    ft = _load_targets(src)
    name = target_name or Path(path).name.split("-")[1]
    target = ft.TARGETS[name]()
    data = Path(path).read_bytes()
    h = Harness(target, None, timeout)
    try:
        with h.watchdog():
            n = h.guarded(data)
    except target.allowed as exc:
        print(f"{name}: documented error {type(exc).__name__}: {exc} (not a crash)")
        return 0
    except Exception:
        traceback.print_exc()
        return 1
    print(f"{name}: no crash ({n} packets)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    if args.reproduce:
        return reproduce(args.reproduce, args.target, args.src, args.timeout)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHARES]
    if unknown or not names:
        print(f"unknown target(s) {unknown}; known: {', '.join(SHARES)}", file=sys.stderr)
        return 2
    engine = _engine(args.engine)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="synack-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    label = ("atheris (coverage-guided, libFuzzer; synack instrumented)" if engine == "atheris" else
             "random mutator over the seed corpus (NOT coverage-guided: install atheris for that)")
    print(f"synack fuzz: {args.packets:,} inputs over {', '.join(names)}; engine: {label}; "
          f"seed {args.seed}; output in {out}", flush=True)

    def progress(st: Stats) -> None:
        if not args.quiet:
            print("  ... " + _row(st), flush=True)

    results: list[Stats] = []
    ft: Any = None if engine == "atheris" else _load_targets(args.src)
    for name, n in _split(args.packets, names).items():
        if n <= 0:
            continue
        if engine == "atheris":
            st = run_atheris(name, n, args.seed, out, args.timeout, args.src, progress)
        else:
            target = ft.TARGETS[name]()
            st = run_random(target, ft.corpus(target), n, args.seed, out / "crashes", args.timeout, progress)
        results.append(st)
        print(_row(st), flush=True)
    total = Stats("total", engine, sum(s.inputs for s in results), sum(s.packets for s in results),
                  sum(s.crashes for s in results), [c for s in results for c in s.unique],
                  sum(s.wall for s in results), sum(s.cpu for s in results))
    print("\n" + HEADER)
    for st in [*results, total]:
        print(_row(st))
    print(f"\ncrashes found: {total.crashes} ({len(total.unique)} distinct)")
    for c in total.unique:
        print(f"  {c.target}: {c.kind} at {c.where} ×{c.count}: {c.message[:160]}  {c.input_file}")
    if args.json:
        Path(args.json).write_text(json.dumps({"engine": engine, "seed": args.seed, "packets": args.packets,
                                               "targets": [asdict(s) for s in [*results, total]]}, indent=2))
    return 1 if total.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
