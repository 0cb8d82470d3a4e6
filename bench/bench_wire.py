"""Throughput of synack.core.wire: parse and build of whole IP packets, and the Internet checksum.

    python bench/bench_wire.py             # the figures (about 15 s)
    python bench/bench_wire.py --profile   # plus cProfile of the 1500-byte IPv4 parse and build

Each figure is the best of 5 timed runs of a ``time.perf_counter`` loop, after a warm-up run; the
loop length is calibrated so that one run takes about 0.15 s. Packets are built once up front and
parsed with checksum verification on (the default), as a receiver would; a build computes both
checksums, as a sender would.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from synack.core.wire import (
    ACK,
    PSH,
    Nop,
    Segment,
    Timestamps,
    build_packet,
    internet_checksum,
    parse_packet,
)

RUNS = 5
RUN_SECONDS = 0.15
TS_OPTIONS = (Nop(), Nop(), Timestamps(0x12345678, 0x9ABCDEF0))  # 12 bytes: TCP header of 32

# (name, src, dst, payload bytes). 1500-byte packets carry 1448 bytes: MSS 1460 less the 12 bytes
# of NOP,NOP,TS. The large ones are the biggest each IP version's 16-bit length field allows.
CASES = [
    ("IPv4 1500 B", "10.0.0.1", "10.0.0.2", 1500 - 20 - 32),
    ("IPv4 64 KB", "10.0.0.1", "10.0.0.2", 65535 - 20 - 32),
    ("IPv6 1500 B", "2001:db8::1", "2001:db8::2", 1500 - 40 - 32),
    ("IPv6 64 KB", "2001:db8::1", "2001:db8::2", 65535 - 32),
]


def best_time(fn: Callable[[], object]) -> float:
    """Seconds per call: best of RUNS runs, after a warm-up that also sizes the loop."""
    n = 1
    while True:                                   # warm-up and calibration
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= RUN_SECONDS / 4:
            break
        n *= 4
    n = max(1, int(n * RUN_SECONDS / elapsed))
    best = float("inf")
    for _ in range(RUNS):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def segment(payload_len: int) -> Segment:
    return Segment(443, 50000, 0xFFFFF000, 0x01000000, ACK | PSH, 65535, TS_OPTIONS, os.urandom(payload_len))


def row(what: str, size: int, seconds: float) -> str:
    return (f"{what:<22}{size:>8} B  {seconds * 1e6:>9.2f} µs  {1 / seconds:>12,.0f} /s"
            f"  {size / seconds / 1e6:>9.1f} MB/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", action="store_true", help="also print cProfile of the 1500-byte IPv4 case")
    args = ap.parse_args()

    print(f"synack.core.wire benchmark — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"best of {RUNS} runs")
    print(f"{'':<22}{'packet':>10}  {'per call':>12}  {'segments':>14}  {'throughput':>14}")
    for name, src, dst, plen in CASES:
        seg = segment(plen)
        pkt = build_packet(src, dst, seg)
        assert parse_packet(pkt).seg.payload == seg.payload
        print(row(f"parse {name}", len(pkt), best_time(lambda pkt=pkt: parse_packet(pkt))))
        print(row(f"build {name}", len(pkt),
                  best_time(lambda src=src, dst=dst, seg=seg: build_packet(src, dst, seg))))
    for size in (1500, 65536):
        buf = os.urandom(size)
        print(row(f"checksum {size} B", size, best_time(lambda buf=buf: internet_checksum(buf))))

    if args.profile:
        name, src, dst, plen = CASES[0]
        seg = segment(plen)
        pkt = build_packet(src, dst, seg)
        for label, fn in (("parse_packet", lambda: parse_packet(pkt)),
                          ("build_packet", lambda: build_packet(src, dst, seg))):
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(100_000):
                fn()
            prof.disable()
            print(f"\ncProfile: 100,000 × {label}, {name}")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
