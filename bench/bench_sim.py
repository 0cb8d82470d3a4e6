"""Connection lifecycles per second on the simulated network, both ends in-process.

One lifecycle: connect, the client sends 1 byte and closes, the server reads it and the EOF, sends
1 byte back and closes (LAST-ACK → CLOSED); the client's TIME-WAIT expires in the background.
Clients open ``--batch`` connections at a time to one listener; each phase of a batch runs the
network (virtual time) until it is done. No trace (``trace=None``).

    .venv/bin/python bench/bench_sim.py [--lifecycles 20000] [--batch 100] [--bulk-mb 20] [--profile]

It also moves ``--bulk-mb`` MB one way over a 1 ms link, without and with 1 % loss, and prints MB
per CPU second (both ends' work) and the throughput in virtual time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from synack.core.connection import Config
from synack.core.records import State
from synack.sim import Network


def lifecycles(total: int, batch: int, seed: int = 0) -> tuple[int, float, int]:
    """Run ``total`` lifecycles; returns (completed, virtual seconds, events)."""
    net = Network(seed=seed)
    cfg = Config.lab()
    client = net.add_host("client", "10.0.0.1", config=cfg)
    server = net.add_host("server", "10.0.0.2", config=cfg)
    net.link("client", "server", delay=0.0005)
    lst = server.listen(80, backlog=batch)
    done = 0
    events = 0
    while done < total:
        n = min(batch, total - done)
        now = net.now
        conns = [client.connect("10.0.0.2", 80, now) for _ in range(n)]
        events += net.run(until=now + 0.002)  # SYN, SYN-ACK, ACK: 1.5 ms
        peers = []
        while (p := lst.accept()) is not None:
            peers.append(p)
        now = net.now
        for c in conns:  # the client asks and closes (its FIN follows the byte)
            c.send(b"q", now)
            c.close(now)
        events += net.run(until=now + 0.001)
        now = net.now
        for p in peers:  # the server reads the question and the EOF, answers and closes
            if p.receive(1, now) == b"q" and p.receive(1, now) == b"":
                p.send(b"r", now)
            p.close(now)
        events += net.run(until=now + 0.002)
        now = net.now
        for c in conns:
            if c.receive(1, now) == b"r" and c.state is State.TIME_WAIT:
                done += 1
        if len(peers) != n or any(p.state is not State.CLOSED for p in peers):
            stuck = [p for p in peers if p.state is not State.CLOSED][:3]
            raise SystemExit(f"a lifecycle did not complete at t={net.now}: {len(peers)} of {n}, {stuck}")
    events += net.run()  # let every TIME-WAIT expire
    assert not client.conns and not server.conns
    return done, net.now, events


def bulk(megabytes: int, *, loss: float = 0.0, seed: int = 0) -> tuple[float, int]:
    """One connection moves ``megabytes`` MB one way over a 1 ms link (MTU 1500, no bandwidth
    limit, optional loss), then closes. Returns (virtual seconds, packets sent); the caller times
    the CPU."""
    net = Network(seed=seed)
    # The lab's timers, but with delayed ACKs as a real stack has them (an ACK every second
    # full-sized segment; Config.lab() ACKs every segment so that diagrams show each one).
    cfg = Config.lab(delayed_ack=0.04)
    a = net.add_host("A", "10.0.0.1", config=cfg)
    b = net.add_host("B", "10.0.0.2", config=cfg)
    net.link("A", "B", delay=0.001, loss=loss)
    lst = b.listen(80)
    c = a.connect("10.0.0.2", 80, net.now)
    if not net.run_until(lambda: lst.pending > 0, limit=30):
        raise SystemExit("bulk: no connection")
    s = lst.accept()
    assert s is not None
    total = megabytes * 1_000_000
    chunk = bytes(64 * 1024)
    sent = got = 0

    def step() -> bool:
        nonlocal sent, got
        while sent < total and c.send_space > 0:
            left = total - sent
            sent += c.send(chunk if left >= len(chunk) else chunk[:left], net.now)
        if sent >= total and not c.fin_seq:
            c.close(net.now)
        if s.readable:
            while (d := s.receive(1 << 20, net.now)):
                got += len(d)
        net.flush()  # what the calls above queued (data, FIN, window updates) goes out now
        return got >= total and s.at_eof

    if not net.run_until(step, limit=3600):
        raise SystemExit(f"bulk: stalled at {got} of {total} octets")
    return net.now, net.stats().get("sent", 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lifecycles", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--bulk-mb", type=int, default=20, help="megabytes for the bulk runs (0: skip)")
    args = ap.parse_args()
    lifecycles(200, args.batch)  # warm up
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    done, virtual, events = lifecycles(args.lifecycles, args.batch)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if args.profile:
        prof.disable()
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(25)
        table = stats.stats  # type: ignore[attr-defined]
        total: float = stats.total_tt  # type: ignore[attr-defined]
        own = sum(v[2] for k, v in table.items() if k[0].endswith("sim.py") or "heapq" in k[2])
        print(f"time in sim.py itself and the event heap: {own:.3f} s of {total:.3f} s "
              f"({100 * own / total:.0f}%)")
    print(f"{done} lifecycles in {wall:.3f} s wall, {cpu:.3f} s CPU "
          f"({virtual:.3f} s virtual, {events} events): {done / wall:,.0f} lifecycles/s wall, "
          f"{done / cpu:,.0f} per CPU second, {events / cpu:,.0f} events per CPU second")
    for loss in (0.0, 0.01) if args.bulk_mb else ():
        c0 = time.process_time()
        virtual, packets = bulk(args.bulk_mb, loss=loss)
        cpu = time.process_time() - c0
        print(f"bulk {args.bulk_mb} MB one way, 1 ms link, loss {loss:.0%}: {args.bulk_mb / cpu:,.1f} MB per "
              f"CPU second ({cpu:.2f} s CPU, {packets} packets, {virtual:.2f} s virtual = "
              f"{args.bulk_mb / virtual:,.1f} MB/s of virtual time)")


if __name__ == "__main__":
    main()
