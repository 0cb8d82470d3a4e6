"""``synack analyze`` against ``tshark -q -z conv,tcp`` on a capture this script makes itself.

The capture (written with :mod:`synack.pcap`, raw IP, snap length 128 as ``tcpdump -s 128``
takes headers) mixes what a busy host sees: bulk transfers (one direction of full segments, an
ACK every second segment, now and then a lost segment answered by duplicate ACKs and a fast
retransmission), request/response connections, refused and unanswered SYNs, and connections
that end with a RST. Both tools read the same file in the same run; the figures are packets per
second (best of ``--repeat``), the peak memory (maximum resident set) of each as a separate
process, and a check that both found the same conversations with the same frames and bytes each
way — the per-connection result tshark's table gives.

    python bench/bench_analyze.py [--packets 1000000] [--repeat 3] [--keep FILE] [--baseline SRC]
                                  [--compiled DIR]

synack is timed as Python (the default install) and, when ``DIR`` (default ``build/compiled``,
made by ``bash scripts/build-compiled.sh``) holds the compiled form, compiled by mypyc too —
each run's ``synack --version`` is checked to be the form it is labelled.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from synack.core.wire import ACK, FIN, PSH, RST, SYN, Segment, build_packet
from synack.pcap import PcapWriter

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPLEN = 128
MSS = 1448


def _connection(rng: random.Random, n: int, t: float, kind: str) -> Iterator[tuple[float, bytes]]:
    """The packets of connection number ``n`` starting at ``t`` (raw IP)."""
    client = f"10.{1 + (n >> 16) % 200}.{(n >> 8) & 255}.{n & 255}"
    server = f"192.168.{(n >> 12) & 15}.{1 + n % 250}"
    cport, sport = 10000 + n % 50000, (80, 443, 8080)[n % 3]
    isn, irs = rng.getrandbits(32), rng.getrandbits(32)
    rtt = rng.uniform(0.002, 0.05)

    def c2s(seq: int, ack: int | None, flags: int, payload: int = 0) -> bytes:
        return build_packet(
            client,
            server,
            Segment(
                cport,
                sport,
                seq & 0xFFFFFFFF,
                None if ack is None else ack & 0xFFFFFFFF,
                flags,
                502,
                payload=bytes(payload),
            ),
        )

    def s2c(seq: int, ack: int | None, flags: int, payload: int = 0) -> bytes:
        return build_packet(
            server,
            client,
            Segment(
                sport,
                cport,
                seq & 0xFFFFFFFF,
                None if ack is None else ack & 0xFFFFFFFF,
                flags,
                509,
                payload=bytes(payload),
            ),
        )

    yield t, c2s(isn, None, SYN)
    if kind == "unanswered":
        yield t + 1, c2s(isn, None, SYN)
        yield t + 3, c2s(isn, None, SYN)
        return
    if kind == "refused":
        yield t + rtt / 2, s2c(0, isn + 1, RST | ACK)
        return
    yield t + rtt / 2, s2c(irs, isn + 1, SYN | ACK)
    yield t + rtt, c2s(isn + 1, irs + 1, ACK)
    t += rtt
    sent = 0
    if kind == "bulk":
        total = rng.randrange(200, 1200)
        k = 0
        while k < total:
            t += 0.0002
            lost = rng.random() < 0.002 and k + 4 < total
            seq = isn + 1 + k * MSS
            yield t, c2s(seq, irs + 1, ACK | PSH, MSS)
            if lost:  # three duplicate ACKs, then the fast retransmission
                for _ in range(3):
                    t += 0.0002
                    k += 1
                    yield t, c2s(isn + 1 + k * MSS, irs + 1, ACK | PSH, MSS)
                    yield t + rtt / 2, s2c(irs + 1, seq, ACK)
                yield t + rtt / 2 + 0.0001, c2s(seq, irs + 1, ACK | PSH, MSS)
                t += rtt
            elif k % 2:
                yield t + rtt / 2, s2c(irs + 1, seq + MSS, ACK)
            k += 1
        sent = total * MSS
    else:
        yield t + 0.001, c2s(isn + 1, irs + 1, ACK | PSH, 300)
        yield t + 0.001 + rtt / 2, s2c(irs + 1, isn + 301, ACK | PSH, 1200)
        yield t + 0.001 + rtt, c2s(isn + 301, irs + 1201, ACK)
        sent, t = 300, t + 0.002 + rtt
        irs += 1200
    end = isn + 1 + sent
    if kind == "reset":
        yield t + 0.001, s2c(irs + 1, end, RST | ACK)
        return
    yield t + 0.001, c2s(end, irs + 1, FIN | ACK)
    yield t + 0.001 + rtt / 2, s2c(irs + 1, end + 1, FIN | ACK)
    yield t + 0.001 + rtt, c2s(end + 1, irs + 2, ACK)


def make_capture(path: str, packets: int, seed: int = 1) -> int:
    """Write a capture of at least ``packets`` packets; returns how many it has."""
    rng = random.Random(seed)
    kinds = ["bulk"] * 3 + ["request"] * 12 + ["reset", "refused", "unanswered"]
    pending: list[tuple[float, bytes]] = []
    written = 0
    t = 1_700_000_000.0
    n = 0
    with PcapWriter(path, snaplen=SNAPLEN) as w:
        while written < packets:
            n += 1
            t += rng.expovariate(400.0)
            pending.extend(_connection(rng, n, t, rng.choice(kinds)))
            if len(pending) > 20000:
                pending.sort(key=lambda p: p[0])
                cut = len(pending) // 2
                for ts, pkt in pending[:cut]:
                    w.write(pkt, ts)
                written += cut
                pending = pending[cut:]
        pending.sort(key=lambda p: p[0])
        for ts, pkt in pending:
            w.write(pkt, ts)
        written += len(pending)
    return written


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str, int]:
    """Run a command; its wall time, CPU time (user + system), standard output and peak RSS
    (KiB)."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "dt = time.perf_counter() - t; "
        "sys.stderr.write(p.stderr); sys.stdout.write(p.stdout); "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print('\\n@@', dt, u.ru_maxrss, p.returncode, u.ru_utime + u.ru_stime)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True, env=env
    ).stdout
    body, _, tail = out.rpartition("@@")
    dt, rss, rc, cpu = tail.split()
    if int(rc) not in (0,):
        raise SystemExit(f"{argv[0]} failed with status {rc}")
    return float(dt), float(cpu), body, int(rss)


_UNITS = {"bytes": 1, "kB": 1000, "MB": 1000_000, "GB": 1000_000_000}


def tshark_conversations(text: str) -> dict[tuple[str, str], tuple[int, float, int, float, float]]:
    """tshark's conv,tcp table: (endpoint, endpoint) → frames and bytes each way, and the unit the
    bytes were rounded to (tshark prints 24 kB, 1779 kB ...)."""
    out: dict[tuple[str, str], tuple[int, float, int, float, float]] = {}
    for line in text.splitlines():
        parts = line.split()
        if "<->" not in parts:
            continue
        a, b = parts[0], parts[2]
        f_ba, b_ba, u1, f_ab, b_ab, u2 = parts[3], parts[4], parts[5], parts[6], parts[7], parts[8]
        unit = max(_UNITS[u1], _UNITS[u2])
        ab = (int(f_ab), float(b_ab) * _UNITS[u2])
        ba = (int(f_ba), float(b_ba) * _UNITS[u1])
        first, second = (ab, ba) if a < b else (ba, ab)
        out[(a, b) if a < b else (b, a)] = (*first, *second, float(unit))
    return out


def same(mine: tuple[int, int, int, int], theirs: tuple[int, float, int, float, float]) -> bool:
    """Frames equal each way, bytes equal to the unit tshark rounded them to."""
    unit = theirs[4]
    return (mine[0], mine[2]) == (theirs[0], theirs[2]) and abs(mine[1] - theirs[1]) <= unit \
        and abs(mine[3] - theirs[3]) <= unit


def synack_conversations(path: str) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    import csv

    out: dict[tuple[str, str], tuple[int, int, int, int]] = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            a = f"{row['orig_addr']}:{row['orig_port']}"
            b = f"{row['resp_addr']}:{row['resp_port']}"
            fa, ba = int(row["orig_packets"]), int(row["orig_bytes"])
            fb, bb = int(row["resp_packets"]), int(row["resp_bytes"])
            out[tuple(sorted((a, b)))] = (fa, ba, fb, bb) if a < b else (fb, bb, fa, ba)  # type: ignore[index]
    return out


def _check_form(env: dict[str, str], expect: str) -> None:
    """Check that ``synack --version`` run in ``env`` names the form ``expect``."""
    out = subprocess.run([sys.executable, "-m", "synack", "--version"], capture_output=True, text=True,
                         env=env, check=True).stdout
    if expect not in out:
        raise SystemExit(f"expected {expect!r}, synack --version says {out.strip()!r}")
    print(out.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", metavar="FILE", help="write the capture here and keep it")
    ap.add_argument(
        "--baseline",
        metavar="SRC",
        help="also time the synack whose package is under SRC (another checkout's src/), in the same "
        "rounds: before and after a change, side by side with tshark",
    )
    ap.add_argument(
        "--compiled",
        metavar="DIR",
        default=os.path.join(_ROOT, "build", "compiled"),
        help="the compiled form's directory (scripts/build-compiled.sh; default build/compiled): timed "
        "beside the Python form when it is there",
    )
    args = ap.parse_args()
    tshark = shutil.which("tshark")
    work = tempfile.mkdtemp(prefix="bench-analyze-")
    path = args.keep or os.path.join(work, "bench.pcap")
    t = time.perf_counter()
    n = make_capture(path, args.packets)
    print(
        f"capture: {n:,} packets, {os.path.getsize(path) / 1e6:.0f} MB, "
        f"made in {time.perf_counter() - t:.1f} s"
    )
    synack = [sys.executable, "-m", "synack", "analyze", path, "--csv"]
    best: dict[str, list[float]] = {}  # tool → [best wall, best CPU, peak RSS]

    def timed(name: str, argv: list[str], env: dict[str, str] | None = None) -> str:
        dt, cpu, text, rss = _timed(argv, env)
        b = best.setdefault(name, [float("inf"), float("inf"), 0])
        b[0], b[1], b[2] = min(b[0], dt), min(b[1], cpu), max(b[2], rss)
        return text

    base_env = dict(os.environ, PYTHONPATH=os.path.abspath(args.baseline)) if args.baseline else None
    py_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _check_form(py_env, "core: Python")
    compiled_env = None
    if os.path.isdir(args.compiled):
        compiled_env = dict(py_env, PYTHONPATH=os.path.abspath(args.compiled))
        _check_form(compiled_env, "core: compiled by mypyc")
    else:
        print(f"no compiled form in {args.compiled} (bash scripts/build-compiled.sh): Python only")
    csv_text = compiled_text = tshark_text = ""
    for _ in range(args.repeat):
        if base_env is not None:
            timed("baseline", synack, base_env)
        csv_text = timed("synack", synack, py_env)
        if compiled_env is not None:
            compiled_text = timed("compiled", synack, compiled_env)
        if tshark:
            tshark_text = timed("tshark", [tshark, "-r", path, "-q", "-z", "conv,tcp"])
    if compiled_env is not None and compiled_text != csv_text:
        raise SystemExit("the compiled form's --csv differs from the Python form's")
    labels = {
        "baseline": f"baseline {args.baseline}",
        "synack": "synack (Python)",
        "compiled": "synack (compiled)",
        "tshark": "tshark -z conv,tcp",
    }
    for name, (wall, cpu, rss) in best.items():
        print(
            f"{labels[name]:<25}: {n / wall:>10,.0f} packets/s  ({wall:.2f} s wall, {cpu:.2f} s CPU = "
            f"{n / cpu:,.0f} packets per CPU second, peak RSS {rss / 1024:.0f} MiB)"
        )
    if tshark:
        for name in ("baseline", "synack", "compiled"):
            if name in best:
                wall_x, cpu_x = best["tshark"][0] / best[name][0], best["tshark"][1] / best[name][1]
                print(
                    f"{labels[name] + ' ratio':<25}: {wall_x:.2f}x tshark's packets per second (wall), "
                    f"{cpu_x:.2f}x per CPU second"
                )
        csv_path = os.path.join(work, "synack.csv")
        with open(csv_path, "w", encoding="utf-8") as f:
            f.write(csv_text)
        mine, theirs = synack_conversations(csv_path), tshark_conversations(tshark_text)
        alike = sum(1 for k, v in theirs.items() if k in mine and same(mine[k], v))
        print(
            f"{'same conversations':<25}: {alike:,} of tshark's {len(theirs):,} alike (frames equal each "
            f"way, bytes to tshark's rounding; synack found {len(mine):,})"
        )
    else:
        print("tshark not installed: run scripts/setup-system.sh")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
