"""Full connection lifecycles per second by synack against a Linux kernel server over TUN.

One lifecycle: synack connects (SYN, SYN,ACK, ACK), sends 1 byte, the kernel server reads it,
answers 1 byte and closes (its FIN); synack reads the byte and the end of stream and closes
(LAST-ACK); it counts when its connection is CLOSED (the kernel's ACK of our FIN arrived). The
kernel, having closed first, keeps the TIME-WAIT; synack's ports come back after ~28,000
connections and reopen the kernel's TIME-WAIT connections (RFC 6191), as a busy client does.

Everything runs inside a network namespace this script creates and deletes (needs root): synack
in this process (one thread) on a TUN device (10.77.0.2), the kernel server in a child process
inside the namespace (10.77.0.1:7000, epoll, non-blocking), so each has a CPU of the 2-core
machine. "per CPU s" divides by the CPU time this process used (user + system, which includes
the kernel's work inside our writes to the device): on a shared machine it is the figure that
does not depend on how much of a core the scheduler gave us. Modes, each for ``--seconds``:

* ``host``: synack's sans-IO Host driven directly by a small loop, ``--concurrency``
  connections in flight (the stack's own capacity);
* ``asyncio``: ``synack.streams`` with ``--concurrency`` client tasks
  (open_connection / write / readexactly / read / close);
* ``sockets``: ``synack.sockets``, one blocking connection at a time (latency-bound);
* ``kernel``: the reference — a Python kernel-socket client doing the same against the same
  server over the namespace's loopback, one at a time.

    sudo .venv/bin/python bench/bench_lifecycles.py [--seconds 4] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import select
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from synack import sockets, streams
from synack.core.connection import Connection
from synack.core.records import State
from synack.tun import TunStack, create_netns, in_netns, remove_netns

K4, S4, PORT = "10.77.0.1", "10.77.0.2", 7000


# ---------------------------------------------------------------------------------------------
# The kernel server (a child process inside the namespace)
# ---------------------------------------------------------------------------------------------


def server_main(ns: str) -> None:
    """Accept; per connection: read 1 byte, send 1 byte, close. Until stdin closes."""
    with in_netns(ns):
        lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", PORT))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select(1.0):
            if key.data == "stdin":
                return
            if key.fileobj is lsock:
                for _ in range(256):
                    try:
                        conn, _addr = lsock.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, "conn")
                continue
            conn = cast(socket.socket, key.fileobj)
            try:
                data = conn.recv(16)
                if data:
                    conn.send(b"y")
            except OSError:
                pass
            sel.unregister(conn)
            conn.close()


def start_server(ns: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, __file__, "--server", ns], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        proc.wait(5)
        raise RuntimeError("the kernel server did not start")
    return proc


def stop_server(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ---------------------------------------------------------------------------------------------
# The modes
# ---------------------------------------------------------------------------------------------


def run_host(stack: TunStack, seconds: float, concurrency: int) -> tuple[int, float]:
    """Lifecycles on the bare Host, ``concurrency`` at a time, for ``seconds``."""
    host = stack.host
    fd = stack.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    inflight: dict[Connection, int] = {}  # connection -> phase (0 connecting, 1 data, 2 closing)
    done = 0
    failed = 0
    t0 = time.monotonic()
    end = t0 + seconds

    def start(now: float) -> None:
        inflight[host.connect(K4, PORT, now)] = 0

    now = time.monotonic()
    for _ in range(concurrency):
        start(now)
    stack.transmit()
    while inflight:
        d = host.next_deadline()
        wait = 0.05 if d is None else min(max(d - time.monotonic(), 0.0), 0.05)
        if not stack.process_readable():
            poller.poll(int(wait * 1000))
            stack.process_readable()
        stack.process_timers()
        now = time.monotonic()
        for conn in list(inflight):
            if not conn.events:
                continue
            conn.events.clear()
            phase = inflight[conn]
            st = conn.state
            if phase == 0 and st is State.ESTABLISHED:
                conn.send(b"x", now)
                phase = inflight[conn] = 1
            if phase == 1 and conn.readable:
                conn.receive(16, now)
            if phase == 1 and conn.at_eof:
                conn.close(now)
                phase = inflight[conn] = 2
            if conn.state is State.CLOSED:
                del inflight[conn]
                if phase == 2 and conn.error is None:
                    done += 1
                else:
                    failed += 1
                if now < end:
                    start(now)
        stack.transmit()
        if time.monotonic() > end + 10:
            raise RuntimeError(f"{len(inflight)} connections did not finish")
    dt = time.monotonic() - t0
    if failed:
        print(f"  ({failed} lifecycles failed)")
    return done, dt


def run_asyncio(stack: TunStack, seconds: float, concurrency: int) -> tuple[int, float]:
    async def client(end: float, counter: list[int]) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < end:
            reader, writer = await streams.open_connection(stack, K4, PORT)
            writer.write(b"x")
            await reader.readexactly(1)
            if await reader.read(16):
                raise RuntimeError("more than one byte")
            writer.close()
            await writer.wait_closed()
            counter[0] += 1

    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        counter = [0]
        t0 = loop.time()
        await asyncio.wait_for(asyncio.gather(*(client(t0 + seconds, counter) for _ in range(concurrency))),
                               seconds + 30)
        host = stack.host
        limit = t0 + seconds + 10
        while any(c.state is not State.CLOSED for c in host.connections()) and loop.time() < limit:
            await asyncio.sleep(0.001)  # the last LAST-ACKs
        return counter[0], loop.time() - t0

    return asyncio.run(main())


def run_sockets(stack: TunStack, seconds: float) -> tuple[int, float]:
    done = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        s = sockets.create_connection(stack, (K4, PORT), timeout=10)
        s.sendall(b"x")
        s.recv(16)
        s.recv(16)
        s.close()
        done += 1
    host = stack.host
    stack.wait_until(lambda: not host.conns, 10)
    return done, time.monotonic() - t0


def run_kernel(ns: str, seconds: float) -> tuple[int, float]:
    done = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        with in_netns(ns):
            s = socket.socket()
        s.settimeout(10)
        s.connect(("127.0.0.1", PORT))
        s.sendall(b"x")
        s.recv(16)
        s.recv(16)
        s.close()
        done += 1
    return done, time.monotonic() - t0


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--server":
        server_main(sys.argv[2])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per mode (default 4)")
    p.add_argument("--concurrency", type=int, default=64, help="connections in flight (default 64)")
    p.add_argument("--modes", nargs="+", default=["host", "asyncio", "sockets", "kernel"],
                   choices=["host", "asyncio", "sockets", "kernel"])
    p.add_argument("--write-thread", action="store_true", help="TunStack(write_thread=True)")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE (JSON)")
    args = p.parse_args()
    ns = f"synack-life-{os.getpid()}"
    create_netns(ns)
    rows: list[dict[str, object]] = []
    extra: dict[str, Any] = {"write_thread": True} if args.write_thread else {}  # older trees lack it
    try:
        with TunStack(netns=ns, **extra) as stack:
            server = start_server(ns)
            try:
                runs: dict[str, Callable[[], tuple[int, float]]] = {
                    "host": lambda: run_host(stack, args.seconds, args.concurrency),
                    "asyncio": lambda: run_asyncio(stack, args.seconds, args.concurrency),
                    "sockets": lambda: run_sockets(stack, args.seconds),
                    "kernel": lambda: run_kernel(ns, args.seconds),
                }
                labels = {
                    "host": f"synack Host, {args.concurrency} in flight",
                    "asyncio": f"synack asyncio streams, {args.concurrency} tasks",
                    "sockets": "synack blocking sockets, 1 at a time",
                    "kernel": "kernel client (Python) over lo, 1 at a time",
                }
                print(f"{'':<46} {'lifecycles':>10} {'wall s':>7} {'per s':>8} {'CPU s':>6} {'per CPU s':>9}")
                for mode in args.modes:
                    r0 = resource.getrusage(resource.RUSAGE_SELF)
                    n, dt = runs[mode]()
                    r1 = resource.getrusage(resource.RUSAGE_SELF)
                    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                    print(f"{labels[mode]:<46} {n:>10} {dt:>7.2f} {n / dt:>8,.0f} {cpu:>6.2f} "
                          f"{n / cpu:>9,.0f}", flush=True)
                    rows.append({"mode": mode, "lifecycles": n, "per_s": n / dt, "per_cpu_s": n / cpu})
                stats = stack.stats()
                print(f"  (synack host: {stats.get('host_retransmissions', 0)} retransmissions, "
                      f"{stats.get('host_resets_in', 0)} resets in, {stats.get('host_resets_out', 0)} out)")
            finally:
                stop_server(server)
    finally:
        remove_netns(ns)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"load average {load}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"loadavg": load, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
