"""Bulk throughput between synack and the Linux kernel over TUN, with kernel↔kernel over a veth
pair measured in the same run as the reference.

Everything happens inside network namespaces this script creates and deletes (needs root):

* ``tun``: synack (this process, one thread) on a TUN device in namespace A; the kernel peer is a
  child process that enters A and listens on 10.77.0.1. ``send`` = synack → kernel,
  ``recv`` = kernel → synack.
* ``veth``: two namespaces joined by a veth pair (10.78.0.1 ↔ 10.78.0.2), a kernel socket in each
  (this process and a child process), same transfer: the kernel↔kernel reference.

Each figure is the median of ``--runs`` transfers of ``--mb`` MB (10^6 bytes), timed from the
first byte sent to the last byte acknowledged (send) or received (recv).

``--threads N [N ...]`` measures instead what sharing one stack between threads costs: N threads
each echo ``--mb``/N MB through their own connection to a kernel echo server (a child process),
in 16 KB round trips, with the stack's two ways of running — the waiting threads drive it
(default), or a stack thread of its own drives it (``TunStack(background=True)``); MB/s is
echoed bytes (one way) per second of wall time.

    sudo .venv/bin/python bench/bench_tun.py [--mb 50] [--runs 3] [--mtu 1500 65000] [--profile]
    sudo .venv/bin/python bench/bench_tun.py --threads 1 8 50 [--mb 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from synack import sockets
from synack.core.records import State
from synack.tun import TunStack, create_netns, in_netns, remove_netns

BLOCK = os.urandom(1 << 20)
PORT = 5201


# ---------------------------------------------------------------------------------------------
# The kernel peer (a child process inside a namespace)
# ---------------------------------------------------------------------------------------------


def peer_main(ns: str, mode: str, addr: str, nbytes: int) -> None:
    """Listen on addr:PORT inside ``ns``; ``sink``: read until EOF; ``source``: send nbytes, close."""
    with in_netns(ns):
        srv = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, PORT))
    srv.listen(1)
    print("ready", flush=True)
    srv.settimeout(60)
    conn, _ = srv.accept()
    conn.settimeout(120)
    if mode == "sink":
        buf = bytearray(1 << 20)
        total = 0
        while n := conn.recv_into(buf):
            total += n
        print(f"done {total}", flush=True)
    else:
        view = memoryview(BLOCK)
        left = nbytes
        while left > 0:
            n = min(left, len(view))
            conn.sendall(view[:n])
            left -= n
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)
        print(f"done {nbytes}", flush=True)
    conn.close()


def echo_main(ns: str, addr: str) -> None:
    """Listen on addr:PORT inside ``ns`` and echo every connection (a thread each) until killed."""
    with in_netns(ns):
        srv = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, PORT))
    srv.listen(256)
    print("ready", flush=True)

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1 << 16):
                conn.sendall(data)

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


@contextlib.contextmanager
def peer(ns: str, mode: str, addr: str, nbytes: int) -> Iterator[subprocess.Popen[str]]:
    argv = ["--echo", ns, addr] if mode == "echo" else ["--peer", ns, mode, addr, str(nbytes)]
    proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the kernel peer did not start: {line!r}")
        yield proc
    finally:
        if mode == "echo":
            proc.kill()  # it serves until killed
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------
# synack over TUN
# ---------------------------------------------------------------------------------------------


def _cpu() -> float:
    """CPU seconds (user + system) of this process so far: the system part includes the
    kernel's work inside our reads and writes of the device."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def tun_run(stack: TunStack, ns: str, direction: str, nbytes: int) -> tuple[float, float]:
    """One transfer; returns (seconds, CPU seconds of this process) for it."""
    mode = "sink" if direction == "send" else "source"
    with peer(ns, mode, "10.77.0.1", nbytes):
        s = sockets.socket(stack)
        s.settimeout(60)
        s.connect(("10.77.0.1", PORT))
        conn = s.connection
        assert conn is not None
        if direction == "send":
            t0, c0 = time.monotonic(), _cpu()
            left = nbytes
            while left > 0:
                n = min(left, len(BLOCK))
                s.sendall(BLOCK[:n] if n < len(BLOCK) else BLOCK)
                left -= n
            s.shutdown(sockets.SHUT_WR)
            if not stack.wait_until(lambda: conn.state in (State.FIN_WAIT_2, State.TIME_WAIT,
                                                           State.CLOSED), 60):
                raise RuntimeError("the kernel did not acknowledge everything")
            dt, cpu = time.monotonic() - t0, _cpu() - c0
        else:
            buf = bytearray(1 << 20)
            total = 0
            t0, c0 = time.monotonic(), _cpu()
            while n := s.recv_into(buf):
                total += n
            dt, cpu = time.monotonic() - t0, _cpu() - c0
            if total != nbytes:
                raise RuntimeError(f"received {total} of {nbytes} bytes")
        s.close()
        stack.run_for(0.05)
        return dt, cpu


def bench_tun(mtu: int, nbytes: int, runs: int, profile: bool, offload: bool,
              write_thread: bool = False) -> dict[str, list[tuple[float, float]]]:
    """(seconds, CPU seconds) of each synack transfer, per direction."""
    ns = f"synack-bench-{os.getpid()}"
    create_netns(ns)
    results: dict[str, list[tuple[float, float]]] = {"send": [], "recv": []}
    extra: dict[str, Any] = {"write_thread": True} if write_thread else {}  # older trees lack it
    try:
        with TunStack(netns=ns, mtu=mtu, offload=offload, **extra) as stack:
            for direction in ("send", "recv"):
                for i in range(runs):
                    prof = cProfile.Profile() if profile and i == 0 else None
                    if prof is not None:
                        prof.enable()
                    results[direction].append(tun_run(stack, ns, direction, nbytes))
                    if prof is not None:
                        prof.disable()
                        print(f"\n--- profile: synack {direction}, MTU {mtu}, offload {offload} "
                              f"(one run, under cProfile) ---")
                        pstats.Stats(prof).sort_stats("tottime").print_stats(14)
    finally:
        remove_netns(ns)
    return results


# ---------------------------------------------------------------------------------------------
# Threads sharing one stack
# ---------------------------------------------------------------------------------------------

ECHO_CHUNK = 16 * 1024


def echo_client(stack: TunStack, nbytes: int, errors: list[BaseException]) -> None:
    """One thread: echo ``nbytes`` through a connection of its own, ECHO_CHUNK at a time."""
    try:
        with sockets.create_connection(stack, ("10.77.0.1", PORT), timeout=60) as s:
            chunk = BLOCK[:ECHO_CHUNK]
            buf = bytearray(ECHO_CHUNK)
            for _ in range(nbytes // ECHO_CHUNK):
                s.sendall(chunk)
                got = 0
                while got < ECHO_CHUNK:
                    n = s.recv_into(memoryview(buf)[got:])
                    if not n:
                        raise RuntimeError("the echo ended early")
                    got += n
    except BaseException as exc:
        errors.append(exc)


def bench_threads(nthreads: int, nbytes: int, runs: int, background: bool) -> list[tuple[float, float]]:
    """(MB/s, MB per CPU second of this process) echoed by ``nthreads`` threads on one stack,
    per run."""
    ns = f"synack-bench-{os.getpid()}"
    create_netns(ns)
    rates = []
    try:
        with TunStack(netns=ns, background=background) as stack, peer(ns, "echo", "10.77.0.1", 0):
            per = max(nbytes // nthreads // ECHO_CHUNK, 1) * ECHO_CHUNK
            for _ in range(runs):
                errors: list[BaseException] = []
                threads = [threading.Thread(target=echo_client, args=(stack, per, errors))
                           for _ in range(nthreads)]
                t0, cpu0 = time.monotonic(), time.process_time()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(300)
                dt, cpu = time.monotonic() - t0, time.process_time() - cpu0
                if errors or any(t.is_alive() for t in threads):
                    raise RuntimeError(f"{len(errors)} thread(s) failed: {errors[:3]}")
                rates.append((per * nthreads / dt / 1e6, per * nthreads / cpu / 1e6))
                stack.run_for(0.05)
    finally:
        remove_netns(ns)
    return rates


def main_threads(counts: list[int], nbytes: int, runs: int) -> None:
    print(f"\n{nbytes / 1e6:g} MB echoed per run over all threads, {ECHO_CHUNK // 1024} KB round trips, "
          f"median of {runs} runs (MB/s = 10^6 bytes/s, one way; per CPU s: this process's CPU time)")
    print("| threads | waiting threads drive: MB/s (runs) | MB per CPU s | stack thread drives: MB/s (runs) "
          "| MB per CPU s |")
    print("|---:|---|---:|---|---:|")
    for n in counts:
        cells = []
        for background in (False, True):
            rates = bench_threads(n, nbytes, runs, background)
            wall = [r for r, _ in rates]
            cells.append(f"{statistics.median(wall):.1f} ({', '.join(f'{r:.1f}' for r in wall)}) | "
                         f"{statistics.median(c for _, c in rates):.1f}")
        print(f"| {n} | {cells[0]} | {cells[1]} |", flush=True)


# ---------------------------------------------------------------------------------------------
# kernel ↔ kernel over veth
# ---------------------------------------------------------------------------------------------


def bench_veth(mtu: int, nbytes: int, runs: int) -> dict[str, list[float]]:
    from pyroute2 import IPRoute  # type: ignore[import-untyped]

    a, b = f"synack-va-{os.getpid()}", f"synack-vb-{os.getpid()}"
    create_netns(a)
    create_netns(b)
    results: dict[str, list[float]] = {"send": [], "recv": []}
    try:
        with IPRoute(netns=a) as ipr:
            ipr.link("add", ifname="veth0", kind="veth", peer={"ifname": "veth1", "net_ns_fd": b})
            idx = ipr.link_lookup(ifname="veth0")[0]
            ipr.link("set", index=idx, mtu=mtu)
            ipr.addr("add", index=idx, address="10.78.0.1", prefixlen=24)
            ipr.link("set", index=idx, state="up")
        with IPRoute(netns=b) as ipr:
            idx = ipr.link_lookup(ifname="veth1")[0]
            ipr.link("set", index=idx, mtu=mtu)
            ipr.addr("add", index=idx, address="10.78.0.2", prefixlen=24)
            ipr.link("set", index=idx, state="up")
        for direction in ("send", "recv"):
            for _ in range(runs):
                mode = "sink" if direction == "send" else "source"
                with peer(b, mode, "10.78.0.2", nbytes):
                    with in_netns(a):
                        s = socket.socket()
                    s.settimeout(60)
                    s.connect(("10.78.0.2", PORT))
                    t0 = time.monotonic()
                    if direction == "send":
                        left = nbytes
                        view = memoryview(BLOCK)
                        while left > 0:
                            n = min(left, len(view))
                            s.sendall(view[:n])
                            left -= n
                        s.shutdown(socket.SHUT_WR)
                        s.recv(1)  # the peer closes after reading everything
                    else:
                        buf = bytearray(1 << 20)
                        while s.recv_into(buf):
                            pass
                    results[direction].append(time.monotonic() - t0)
                    s.close()
    finally:
        remove_netns(a)
        remove_netns(b)
    return results


def _tun_rows(mtu: int, nbytes: int, args: argparse.Namespace, offload: bool, thread: bool,
              veth: dict[str, list[float]] | None) -> list[dict[str, Any]]:
    """The table's rows (recv, send) for one kind of synack stack."""
    tun = bench_tun(mtu, nbytes, args.runs, args.profile, offload, thread)
    rows = []
    for direction in ("recv", "send"):
        times = [t for t, _ in tun[direction]]
        rows.append({
            "mtu": mtu, "offload": offload, "direction": direction, "write_thread": thread,
            "mbps": nbytes / statistics.median(times) / 1e6,
            "runs": [nbytes / t / 1e6 for t in times],
            "mb_per_cpu_s": nbytes / statistics.median(c for _, c in tun[direction]) / 1e6,
            "veth": nbytes / statistics.median(veth[direction]) / 1e6 if veth else None,
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=50.0, help="MB (10^6 bytes) per transfer")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mtu", type=int, nargs="+", default=[1500, 65000])
    ap.add_argument("--profile", action="store_true", help="profile the first synack run of each kind")
    ap.add_argument("--no-veth", action="store_true", help="skip the kernel<->kernel reference")
    ap.add_argument("--offload", choices=["off", "on", "both"], default="both",
                    help="TUN segmentation offloads (TSO/GSO through IFF_VNET_HDR)")
    ap.add_argument("--threads", type=int, nargs="+", metavar="N",
                    help="measure N threads echoing on one stack instead (both ways of driving it)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE (JSON)")
    ap.add_argument("--write-thread", choices=["off", "on", "offload-off", "both"], default="off",
                    help="TunStack(write_thread=True): always, only for the runs without offloads, or "
                    "both ways (every offload mode without and with the thread, in the same run)")
    args = ap.parse_args()
    nbytes = int(args.mb * 1e6)
    if args.threads:
        main_threads(args.threads, nbytes, args.runs)
        return
    rows = []
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.offload]
    for mtu in args.mtu:
        veth = None if args.no_veth else bench_veth(mtu, nbytes, args.runs)
        for offload in modes:
            if args.write_thread == "both":
                threads = [False, True]
            else:
                threads = [args.write_thread == "on" or (args.write_thread == "offload-off" and not offload)]
            for thread in threads:
                rows += _tun_rows(mtu, nbytes, args, offload, thread, veth)
    print(f"\n{args.mb:g} MB per transfer, median of {args.runs} runs (MB/s = 10^6 bytes/s; "
          f"per CPU s: this process's user + system CPU time); load average {_loadavg()}")
    print("| MTU | offload | direction | write thread | synack MB/s | runs | MB per CPU s | "
          "kernel<->kernel (veth) MB/s |")
    print("|---:|---|---|---|---:|---|---:|---:|")
    for r in rows:
        label = "kernel -> synack" if r["direction"] == "recv" else "synack -> kernel"
        runs = ", ".join(f"{x:.0f}" for x in r["runs"])
        ref = f"{r['veth']:.0f}" if r["veth"] is not None else "-"
        thread = "yes" if r["write_thread"] else "no"
        off = "on" if r["offload"] else "off"
        rate, cpu = f"{r['mbps']:.1f}", f"{r['mb_per_cpu_s']:.0f}"
        print(f"| {r['mtu']} | {off} | {label} | {thread} | {rate} | {runs} | {cpu} | {ref} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"mb": args.mb, "runs": args.runs, "loadavg": _loadavg(), "rows": rows}, f, indent=1)


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--peer":
        peer_main(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif len(sys.argv) >= 2 and sys.argv[1] == "--echo":
        echo_main(sys.argv[2], sys.argv[3])
    else:
        main()
