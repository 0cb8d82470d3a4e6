"""Two synack hosts joined by a Unix datagram socket pair, driven in real time (test helper).

Each end is a *pump stack* (what :mod:`synack.streams` drives: ``host``, ``now``, ``fileno``,
``process_readable``, ``process_timers``, ``transmit``): what one host sends is one datagram on
its end of the pair and arrives, whole, at the other host. No root, no device, no network: it
lets the asyncio layer be tested synack-to-synack on an ordinary event loop. ``drop`` (a
predicate on the packet) loses packets on the way out.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable

from synack.core.connection import Config
from synack.core.host import Host

__all__ = ["PairEnd", "make_pair"]


class PairEnd:
    """One end: a host and its half of the socket pair."""

    def __init__(self, host: Host, sock: socket.socket) -> None:
        self.host = host
        self.sock = sock
        self.closed = False
        self.drop: Callable[[bytes], bool] | None = None
        self.sent = 0
        self.received = 0

    def now(self) -> float:
        return time.monotonic()

    def fileno(self) -> int:
        return self.sock.fileno()

    def process_readable(self) -> int:
        n = 0
        now = time.monotonic()
        while n < 512:
            try:
                pkt = self.sock.recv(70000)
            except BlockingIOError:
                break
            n += 1
            self.host.receive(pkt, now)
        self.received += n
        return n

    def process_timers(self) -> None:
        now = time.monotonic()
        d = self.host.next_deadline()
        if d is not None and d <= now:
            self.host.handle_timeout(now)

    def transmit(self) -> bool:
        for pkt in self.host.packets_to_send(time.monotonic()):
            if self.drop is not None and self.drop(pkt):
                continue
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                self.sock.send(pkt)  # a full queue loses the packet, like a wire
                self.sent += 1
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


def make_pair(config: Config | None = None, *, mtu: int = 1500) -> tuple[PairEnd, PairEnd]:
    """Host ``a`` (10.0.0.1, fd00::1) and host ``b`` (10.0.0.2, fd00::2) on one wire."""
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (sa, sb):
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    a = PairEnd(Host(["10.0.0.1", "fd00::1"], name="a", config=config, isn_key=os.urandom(32), mtu=mtu), sa)
    b = PairEnd(Host(["10.0.0.2", "fd00::2"], name="b", config=config, isn_key=os.urandom(32), mtu=mtu), sb)
    return a, b
