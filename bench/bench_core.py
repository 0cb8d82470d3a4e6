"""The sans-IO core in one process, no network: how many segments per second go through a Host,
how fast two in-process hosts move a bulk stream, and how much memory an idle connection costs.

* receive path: pre-built full-sized data packets (IPv4, 1448 octets of payload + NOP,NOP,TS) for
  one ESTABLISHED connection fed to ``Host.receive``, each followed by ``Host.packets_to_send``
  (which yields the ACK every second segment); the application reads every 64 segments;
* send path: ``Connection.send`` + ``Host.packets_to_send`` producing full-sized segments; the
  peer's ACK of each batch is fed in outside the timed part (and timed on its own); cwnd is
  opened up front so that congestion control does not decide the batch size;
* bulk: two hosts in one process, one lockstep loop (every packet A sends is handed to B and vice
  versa, the clock advancing 50 µs a round), default Config (MSS 1460 at MTU 1500, delayed ACK,
  256 KiB buffers), one direction; both ends' work is on this one core;
* memory: idle ESTABLISHED connections, both ends in this process (one server host, client hosts
  of 50,000 connections each), each one set up by a real handshake. tracemalloc (``--traced``
  connections, default 20,000) gives the bytes per connection, per side (the client hosts are
  deleted and the memory they free is their side) and the allocation sites; tracemalloc slows
  allocation about 6×, so the ``--conns`` run (default 100,000) counts the growth of the
  resident set instead (allocator overhead included). ``--traced 100000`` does it all with
  tracemalloc (about 2 minutes of CPU).

Times are CPU seconds of this process (``time.process_time``), which do not depend on how busy
the shared machine is; wall-clock figures are printed beside them.

    .venv/bin/python bench/bench_core.py [--mb 50] [--segs 20000] [--traced 20000] [--conns 100000]
                                         [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import io
import os
import pstats
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, TypeVar

from synack.core.connection import Config, Connection
from synack.core.host import Host
from synack.core.records import State
from synack.core.wire import ACK, Nop, Segment, Timestamps, build_packet

A, B = "10.0.0.1", "10.0.0.2"
MASK = 0xFFFFFFFF
cpu = time.process_time
T = TypeVar("T")


def lockstep(hosts: list[Host], now: float, limit: int = 1_000_000) -> None:
    """Hand every packet to the host it is addressed to until nobody has anything to send."""
    by_addr = {addr: h for h in hosts for addr in h.addresses}
    for _ in range(limit):
        moved = False
        for h in hosts:
            for pkt in h.packets_to_send(now):
                moved = True
                dst = ".".join(str(b) for b in pkt[16:20])
                by_addr[dst].receive(pkt, now)
        if not moved:
            return
    raise RuntimeError("lockstep did not settle")


def pair(cfg: Config) -> tuple[Host, Host, Connection, Connection]:
    a = Host([A], name="A", config=cfg)
    b = Host([B], name="B", config=cfg)
    lst = b.listen(80)
    client = a.connect(B, 80, 0.0)
    lockstep([a, b], 0.0)
    server = lst.accept()
    assert server is not None and client.state is State.ESTABLISHED
    return a, b, client, server


def best(times: list[float]) -> float:
    return min(times)


# ---------------------------------------------------------------------------------------------
# Receive path
# ---------------------------------------------------------------------------------------------


def bench_receive(n: int, rounds: int = 3) -> dict[str, float]:
    per_seg: list[float] = []
    for _ in range(rounds):
        _, b, client, server = pair(Config())
        payload = bytes(range(256)) * 6
        mss = server.snd_mss
        payload = (payload * 2)[:mss]
        tsval = server.ts_recent
        seq = client.snd_nxt
        pkts = []
        for i in range(n):
            seg = Segment(client.local_port, 80, seq, client.rcv_nxt, ACK, 0xFFFF,
                          (Nop(), Nop(), Timestamps((tsval + i // 16) & MASK, 1)), payload)
            pkts.append(build_packet(A, B, seg))
            seq = (seq + len(payload)) & MASK
        now = 0.01
        got = 0
        acks = 0
        receive = b.receive
        flush = b.packets_to_send
        gc.collect()
        t0 = cpu()
        for i, pkt in enumerate(pkts):
            receive(pkt, now)
            acks += len(flush(now))
            if i & 63 == 63:
                got += len(server.receive(1 << 22, now) or b"")
        got += len(server.receive(1 << 22, now) or b"")
        dt = cpu() - t0
        assert got == n * len(payload), (got, n * len(payload))  # every segment was accepted
        per_seg.append(dt / n)
    t = best(per_seg)
    return {"us_per_seg": t * 1e6, "segs_per_s": 1 / t, "mb_per_s": len(payload) / t / 1e6,
            "acks_per_seg": acks / n}


# ---------------------------------------------------------------------------------------------
# Send path
# ---------------------------------------------------------------------------------------------


def bench_send(total: int, rounds: int = 3) -> dict[str, float]:
    per_seg: list[float] = []
    per_ack: list[float] = []
    for _ in range(rounds):
        a, _, client, server = pair(Config())
        client.cc.cwnd = client.cc.ssthresh = 1 << 30
        chunk = bytes(range(256)) * 256  # 64 KiB
        shift = client.snd_wscale
        sent = segs = acks = 0
        t_send = t_ack = 0.0
        now = 0.01
        while sent < total:
            t0 = cpu()
            sent += client.send(chunk, now)
            out = a.packets_to_send(now)
            t1 = cpu()
            t_send += t1 - t0
            segs += len(out)
            # The peer acknowledges everything (built here, outside the timed part).
            ack = build_packet(B, A, Segment(80, client.local_port, server.snd_nxt, client.snd_max, ACK,
                                             (256 * 1024) >> shift,
                                             (Nop(), Nop(), Timestamps(client.ts_recent, 1))))
            t2 = cpu()
            a.receive(ack, now)
            t_ack += cpu() - t2
            acks += 1
        assert client.snd_una == client.snd_max
        per_seg.append(t_send / segs)
        per_ack.append(t_ack / acks)
    t = best(per_seg)
    return {"us_per_seg": t * 1e6, "segs_per_s": 1 / t, "mb_per_s": client.snd_mss / t / 1e6,
            "segs_per_batch": segs / acks, "us_per_ack": best(per_ack) * 1e6}


# ---------------------------------------------------------------------------------------------
# Bulk between two in-process hosts
# ---------------------------------------------------------------------------------------------


def bulk(total: int, per_packet: bool = False, collect: bool = True) -> dict[str, Any]:
    """``per_packet``: B's output is pulled after every packet it receives (an ACK every second
    segment, as on a wire); otherwise after each burst (one ACK per burst: a stretch ACK, as a
    driver that reads a batch of packets before pulling produces)."""
    a, b, client, server = pair(Config())
    data = bytes(range(256)) * (total // 256 + 1)
    data = data[:total]
    got = bytearray()
    sent = 0
    now = 0.001
    segments = 0
    a_send, b_send = a.packets_to_send, b.packets_to_send
    a_recv, b_recv = a.receive, b.receive
    if collect:
        gc.collect()
    t0 = time.perf_counter()
    c0 = cpu()
    while len(got) < total:
        if sent < total:
            sent += client.send(data[sent:sent + 65536], now)
        moved = False
        for pkt in a_send(now):
            b_recv(pkt, now)
            segments += 1
            moved = True
            if per_packet:
                for ack in b_send(now):
                    a_recv(ack, now)
        chunk = server.receive(1 << 22, now)
        if chunk:
            got += chunk
        for pkt in b_send(now):
            a_recv(pkt, now)
            moved = True
        if moved:
            now += 0.00005
        else:  # only a timer (the delayed ACK) can move things on
            deadlines = [d for d in (a.next_deadline(), b.next_deadline()) if d is not None]
            now = max(now, min(deadlines))
            a.handle_timeout(now)
            b.handle_timeout(now)
    wall = time.perf_counter() - t0
    used = cpu() - c0
    assert got == data
    assert a.stats()["retransmissions"] == 0
    return {"mb": total / 1e6, "wall": wall, "cpu": used, "mb_per_s": total / used / 1e6,
            "wall_mb_per_s": total / wall / 1e6, "segments": segments, "segs_per_s": segments / used,
            "mss": client.snd_mss, "b_segments_out": b.stats()["segments_out"]}


# ---------------------------------------------------------------------------------------------
# Memory per idle connection
# ---------------------------------------------------------------------------------------------


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def idle_connections(n: int, per_client: int = 50_000) -> tuple[Host, list[Host]]:
    """``n`` ESTABLISHED connections, each made by a real handshake; events drained (the
    application took CONNECTED and SEND_SPACE), no timer running."""
    cfg = Config()
    server = Host([B], name="S", config=cfg)
    lst = server.listen(80, backlog=1 << 20, syn_backlog=1 << 20)
    clients: list[Host] = []
    for i, start in enumerate(range(0, n, per_client)):
        m = min(per_client, n - start)
        h = Host([f"10.0.1.{i + 1}"], name=f"C{i}", config=cfg, ephemeral=(1024, 65535))
        clients.append(h)
        for batch in range(0, m, 2000):
            for _ in range(min(2000, m - batch)):
                h.connect(B, 80, 0.0)
            lockstep([h, server], 0.0)
            while (conn := lst.accept()) is not None:
                conn.drain_events()
        for conn in h.connections():
            conn.drain_events()
    for h in [*clients, server]:
        assert h.next_deadline() is None  # idle: no timer runs (stale heap entries are gone)
    assert len(server.conns) == n and all(c.state is State.ESTABLISHED for c in server.conns.values())
    return server, clients


def memory_traced(n: int) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    c0 = cpu()
    server, clients = idle_connections(n)
    setup = cpu() - c0
    gc.collect()
    total = tracemalloc.get_traced_memory()[0] - base
    snap = tracemalloc.take_snapshot()
    del clients
    gc.collect()
    server_side = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    stats = snap.filter_traces([tracemalloc.Filter(True, "*synack*")]).statistics("lineno")
    top = [(f"{s.traceback[0].filename.rsplit('/', 1)[-1]}:{s.traceback[0].lineno}", s.size / (2 * n))
           for s in stats[:12]]
    del server, snap
    return {"n": n, "total": total / n, "server": server_side / n, "client": (total - server_side) / n,
            "setup_cpu": setup, "top": top}


def memory_rss(n: int) -> dict[str, float]:
    gc.collect()
    before = rss()
    c0 = cpu()
    server, clients = idle_connections(n)
    setup = cpu() - c0
    gc.collect()
    grown = rss() - before
    del server, clients
    gc.collect()
    return {"n": n, "total": grown / n, "setup_cpu": setup}


# ---------------------------------------------------------------------------------------------


def timed(label: str, fn: Callable[[], T]) -> T:
    t0, c0 = time.perf_counter(), cpu()
    out = fn()
    print(f"  ({label}: {cpu() - c0:.1f} s CPU, {time.perf_counter() - t0:.1f} s wall)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=50, help="megabytes (10^6) for the bulk run")
    ap.add_argument("--segs", type=int, default=20_000, help="segments for the receive/send paths")
    ap.add_argument("--traced", type=int, default=20_000, help="idle connections under tracemalloc")
    ap.add_argument("--conns", type=int, default=100_000, help="idle connections for the RSS run (0: skip)")
    ap.add_argument("--profile", action="store_true", help="cProfile a 10 MB bulk run")
    ap.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        g = memory_rss(args.rss_child)
        print(g["total"], g["setup_cpu"])
        return
    t_all, c_all = time.perf_counter(), cpu()

    print("receive path (Host.receive + packets_to_send, full-sized IPv4 segments, best of 3):")
    r = timed("receive", lambda: bench_receive(args.segs))
    print(f"  {r['us_per_seg']:.2f} µs/segment  {r['segs_per_s']:,.0f} segments/s  "
          f"{r['mb_per_s']:.1f} MB/s of payload  ({r['acks_per_seg']:.2f} ACKs out per segment)")

    print("send path (Connection.send + Host.packets_to_send, full-sized segments, best of 3):")
    s = timed("send", lambda: bench_send(args.segs * 1448))
    print(f"  {s['us_per_seg']:.2f} µs/segment  {s['segs_per_s']:,.0f} segments/s  "
          f"{s['mb_per_s']:.1f} MB/s of payload  ({s['segs_per_batch']:.0f} segments per batch; "
          f"each ACK of a batch: {s['us_per_ack']:.1f} µs)")

    for per_packet in (False, True):
        how = "B pulls after every packet" if per_packet else "B pulls after each burst"
        print(f"bulk, two in-process hosts, {args.mb} MB one way, no loss, MTU 1500, one core for both, "
              f"{how}:")
        k = timed("bulk", functools.partial(bulk, args.mb * 1_000_000, per_packet))
        print(f"  {k['mb_per_s']:.1f} MB/s per CPU second ({k['cpu']:.2f} s CPU; wall {k['wall']:.2f} s = "
              f"{k['wall_mb_per_s']:.1f} MB/s), {k['segments']:,} data segments of {k['mss']} octets, "
              f"{k['segs_per_s']:,.0f} segments/s, {k['b_segments_out']:,} ACKs")

    print(f"memory, {args.traced:,} idle ESTABLISHED connections under tracemalloc:")
    m = timed("tracemalloc", lambda: memory_traced(args.traced))
    print(f"  {m['total']:,.0f} bytes per connection (both ends): server side {m['server']:,.0f}, "
          f"client side {m['client']:,.0f}")
    print("  top allocation sites, bytes per connection end:")
    for site, size in m["top"]:
        print(f"    {site:28} {size:8.1f}")
    if args.conns:
        # In a fresh process: memory freed by the runs above would be reused without growing RSS.
        print(f"memory, {args.conns:,} idle ESTABLISHED connections, growth of the resident set "
              f"(fresh process):")
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, __file__, "--rss-child", str(args.conns)],
                             capture_output=True, text=True, check=True)
        grown, setup = (float(x) for x in res.stdout.split())
        print(f"  ({setup:.1f} s CPU in the child, {time.perf_counter() - t0:.1f} s wall)")
        print(f"  {grown:,.0f} bytes per connection (both ends), {grown / 2:,.0f} per end")

    if args.profile:
        for per_packet in (False, True):
            gc.collect()
            prof = cProfile.Profile()
            prof.enable()
            bulk(10_000_000, per_packet, collect=False)
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
            print(f"cProfile, 10 MB bulk ({'per packet' if per_packet else 'per burst'}), by own time:")
            print(buf.getvalue())
    print(f"total {cpu() - c_all:.1f} s CPU, {time.perf_counter() - t_all:.1f} s wall")


if __name__ == "__main__":
    main()
