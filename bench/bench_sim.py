"""Connection lifecycles per second on the simulated network, both ends in-process.

One lifecycle: connect, the client sends 1 byte and closes, the server reads it and the EOF, sends
1 byte back and closes (LAST-ACK → CLOSED); the client's TIME-WAIT expires in the background.
Clients open ``--batch`` connections at a time to one listener; each phase of a batch runs the
network (virtual time) until it is done. No trace (``trace=None``).

    .venv/bin/python bench/bench_sim.py [--lifecycles 20000] [--batch 100] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from synack.connection import Config, State
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lifecycles", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--profile", action="store_true")
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


if __name__ == "__main__":
    main()
