"""The overhead of synack's asyncio event loop: echo round trips per second with one asyncio
client, the same code in every case, measured in one run.

* ``sim``: client and echo server both on synack, on the simulated network (zero-delay link), in
  the virtual-time loop — round trips per **CPU second** (``time.process_time``: virtual time
  costs nothing to wait for, so CPU is what a round trip costs);
* ``fds``: the blocking-socket equivalent on the simulator, one client thread and a
  ``socketserver`` thread, with real file descriptors kept in step (what ``fileno()`` costs);
* ``tun``: the client on synack's real-time loop over TUN, the echo server a kernel asyncio
  server (a child process inside the namespace) — round trips per second of wall time;
* ``kernel``: the same client on the standard asyncio loop and kernel sockets, to the same
  server over loopback inside the namespace — the reference.

``tun`` and ``kernel`` need root (a namespace and a TUN device, made and removed here).

    sudo .venv/bin/python bench/bench_aio.py [--rounds 5000] [--size 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socketserver
import subprocess
import sys
import threading
import time

import synack.aio as aio
from synack import sockets
from synack.core.connection import Config
from synack.sim import Network
from synack.tun import TunStack, create_netns, in_netns, remove_netns

ECHO_SERVER = """
import asyncio, sys
async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, None, int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


async def client(host: str, port: int, rounds: int, size: int) -> float:
    """``rounds`` echo round trips of ``size`` octets; returns the seconds they took (wall)."""
    reader, writer = await asyncio.open_connection(host, port)
    msg = b"x" * size
    start = time.perf_counter()
    for _ in range(rounds):
        writer.write(msg)
        await reader.readexactly(size)
    took = time.perf_counter() - start
    writer.close()
    return took


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def bench_sim(rounds: int, size: int) -> float:
    net = Network(seed=1)
    cfg = Config.lab(delayed_ack=0.0)
    net.add_host("a", "10.0.0.1", config=cfg)
    net.add_host("b", "10.0.0.2", config=cfg)
    net.link("a", "b", delay=0.0)

    async def main() -> None:
        with aio.on("b"):
            server = await asyncio.start_server(echo, None, 7)
        with aio.on("a"):
            await client("b", 7, rounds, size)
        await asyncio.sleep(1)  # (virtual) the server's handler reads the end of the stream
        server.close()

    cpu = time.process_time()
    aio.run(main(), net)
    return rounds / (time.process_time() - cpu)


def bench_fds(rounds: int, size: int) -> tuple[float, float]:
    """Blocking sockets in two threads on the simulator; with and without real descriptors."""
    out = []
    for with_fd in (False, True):
        net = Network(seed=1)
        cfg = Config.lab(delayed_ack=0.0)
        net.add_host("a", "10.0.0.1", config=cfg)
        net.add_host("b", "10.0.0.2", config=cfg)
        net.link("a", "b", delay=0.0)

        class Echo(socketserver.BaseRequestHandler):
            mirrored = with_fd

            def handle(self) -> None:
                if self.mirrored:
                    self.request.fileno()
                while data := self.request.recv(65536):
                    self.request.sendall(data)

        server = sockets.serve(net.stack("b"), socketserver.ThreadingTCPServer, ("", 7), Echo)
        t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        t.start()
        msg = b"x" * size
        with sockets.create_connection(net.stack("a"), ("10.0.0.2", 7), timeout=60) as s:
            if with_fd:
                s.fileno()
            start = time.perf_counter()
            for _ in range(rounds):
                s.sendall(msg)
                got = 0
                while got < size:
                    got += len(s.recv(size - got))
            out.append(rounds / (time.perf_counter() - start))
        server.shutdown()
        server.server_close()
        t.join()
    return out[0], out[1]


def bench_live(rounds: int, size: int) -> tuple[float, float]:
    ns = f"synack-bench-aio-{os.getpid()}"
    create_netns(ns)
    server = None
    try:
        stack = TunStack(netns=ns, config=Config.lab(delayed_ack=0.0))
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", ECHO_SERVER, "7100"],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        try:
            tun = rounds / aio.run(client("10.77.0.1", 7100, rounds, size), stack)
        finally:
            stack.close()
        with in_netns(ns):  # kernel sockets made in this thread belong to the namespace
            kernel = rounds / asyncio.run(client("127.0.0.1", 7100, rounds, size))
        return tun, kernel
    finally:
        if server is not None:
            server.kill()
            server.wait()
        remove_netns(ns)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5000)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    print(f"asyncio echo, {args.rounds} round trips of {args.size} octets, one connection")
    sim = bench_sim(args.rounds, args.size)
    print(f"  sim     synack both ends, virtual-time loop   {sim:>9,.0f} round trips / CPU second")
    plain, fds = bench_fds(args.rounds // 5, args.size)
    print(f"  threads synack sockets, 2 threads (sim)       {plain:>9,.0f} round trips / s")
    print(f"          ... with real fds kept in step        {fds:>9,.0f} round trips / s "
          f"({(1 / fds - 1 / plain) * 1e6:+.1f} µs per round trip)")
    if os.geteuid() != 0:
        print("  tun, kernel: need root (a namespace and a TUN device): skipped")
        return
    tun, kernel = bench_live(args.rounds, args.size)
    print(f"  tun     synack client, kernel server, TUN     {tun:>9,.0f} round trips / s")
    print(f"  kernel  asyncio + kernel sockets, loopback    {kernel:>9,.0f} round trips / s "
          f"(synack over TUN: {tun / kernel:.0%} of it)")


if __name__ == "__main__":
    main()
