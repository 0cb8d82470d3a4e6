"""A tiny deterministic driver for two hosts joined by a wire (test helper, not the simulator).

Packets leave a host, travel for a fixed one-way ``delay`` and arrive at the other host; the
virtual clock jumps straight to the next event (an arrival or a host deadline). An optional
``drop`` predicate sees every packet as a parsed :class:`synack.core.wire.IPPacket` together with its
index in its direction (0, 1, 2, … counted separately for a→b and b→a, dropped packets included)
and returns True to lose it. With ``tick`` the clock also stops every ``tick`` seconds, so that
a ``run_until`` predicate standing for an application (a slow reader) runs even when the network
is idle. Everything is deterministic: same inputs, same run.

The two ends are slots 0 (``a``) and 1 (``b``); a slot may be given a new host at any time (a
crash and restart), and packets already in flight then reach the new host.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from synack.core.host import Host
from synack.core.wire import IPPacket, parse_packet

__all__ = ["DropFn", "Pipe"]

DropFn = Callable[[IPPacket, int], bool]


class Pipe:
    """Two hosts, one wire, one virtual clock."""

    def __init__(self, a: Host, b: Host, *, delay: float = 0.001, drop: DropFn | None = None,
                 now: float = 0.0, log: bool = False, tick: float | None = None,
                 max_steps: int = 5_000_000) -> None:
        self.hosts: list[Host] = [a, b]
        self.delay = delay
        self.drop = drop
        self.now = now
        self.max_steps = max_steps
        self.tick = tick  # also stop the clock every ``tick`` seconds (an application timer)
        self._next_tick = now + tick if tick else None
        self.sent = [0, 0]  # packets put on the wire per direction (a→b, b→a), drops included
        self.dropped = [0, 0]
        self.log: list[tuple[float, int, bytes]] | None = [] if log else None
        self._flight: list[tuple[float, int, int, bytes]] = []  # (arrival, order, to slot, packet)
        self._order = 0
        self._steps = 0

    @property
    def a(self) -> Host:
        return self.hosts[0]

    @a.setter
    def a(self, host: Host) -> None:
        self.hosts[0] = host

    @property
    def b(self) -> Host:
        return self.hosts[1]

    @b.setter
    def b(self, host: Host) -> None:
        self.hosts[1] = host

    @property
    def in_flight(self) -> int:
        return len(self._flight)

    def packets(self, side: int | None = None) -> list[tuple[float, int, IPPacket]]:
        """The logged packets (``log=True``), parsed: (time sent, sender slot, packet)."""
        assert self.log is not None, "create the Pipe with log=True"
        return [(t, s, parse_packet(p)) for t, s, p in self.log if side is None or s == side]

    def flush(self) -> None:
        """Take every packet the hosts have to send now and put it on the wire."""
        for side in (0, 1):
            for pkt in self.hosts[side].packets_to_send(self.now):
                idx = self.sent[side]
                self.sent[side] = idx + 1
                if self.log is not None:
                    self.log.append((self.now, side, pkt))
                if self.drop is not None and self.drop(parse_packet(pkt), idx):
                    self.dropped[side] += 1
                    continue
                self._order += 1
                heapq.heappush(self._flight, (self.now + self.delay, self._order, 1 - side, pkt))

    def next_event(self) -> float | None:
        times = [h.next_deadline() for h in self.hosts]
        if self._flight:
            times.append(self._flight[0][0])
        if self._next_tick is not None and self.tick:
            while self._next_tick <= self.now:
                self._next_tick += self.tick
            times.append(self._next_tick)
        known = [t for t in times if t is not None]
        return max(min(known), self.now) if known else None

    def step(self, limit: float) -> bool:
        """Flush, then advance to the next event if it is not later than ``limit`` and process
        everything due then. Returns False (clock unchanged) when there is none."""
        self.flush()
        t = self.next_event()
        if t is None or t > limit:
            return False
        self._steps += 1
        if self._steps > self.max_steps:
            raise AssertionError(f"pipe: more than {self.max_steps} steps (livelock?) at t={self.now}")
        self.now = t
        flight = self._flight
        while flight and flight[0][0] <= t:
            _, _, to, pkt = heapq.heappop(flight)
            self.hosts[to].receive(pkt, t)
        for host in self.hosts:
            host.handle_timeout(t)
        self.flush()
        return True

    def run(self, until: float) -> None:
        """Process every event up to ``until``; the clock then reads ``until``."""
        while self.step(until):
            pass
        self.now = max(self.now, until)

    def run_until(self, pred: Callable[[], bool], limit: float) -> float:
        """Advance event by event until ``pred()`` holds (checked before the first event and after
        each one; it may call the connections, e.g. to pump data). Fails if the virtual clock would
        pass ``limit``. Returns the time at which it held."""
        if pred():
            return self.now
        while self.step(limit):
            if pred():
                return self.now
        raise AssertionError(f"pipe: condition not reached by t={limit} (stopped at t={self.now})")
