"""A deterministic simulated network: many hosts, links with faults, and a virtual clock.

The simulator is a driver in the sense of the architecture: it owns the clock and moves the bytes,
the hosts (:class:`~synack.core.host.Host`, sans-IO) do the TCP. One heap holds every future event —
a packet arriving, a host's next timer, a scripted user action — and time jumps straight to the
earliest; nothing sleeps and no wall clock is read.

Links (:meth:`Network.link`) join two hosts; each direction (:class:`Link`) has its own delay,
jitter, bandwidth with a drop-tail queue, MTU, loss, duplication, reordering and single-bit
corruption, and its own ``random.Random`` seeded from (seed, a, b), so that a run with the same
seed and the same script produces the same events, the same trace and the same pcap, byte for
byte. A packet is routed by its destination address to the host that owns it, over the link from
its sender to that host.

What happens to a packet a host sends, in order:

1. ``send`` is recorded; no owner of the destination address or no link to it: drop ``no route``;
   the sending host is down: ``host down``;
2. longer than the link's MTU: ``mtu``; the link is partitioned: ``partition``;
3. scripted faults (:meth:`Network.drop_nth`, :meth:`Network.drop_if`, :meth:`Network.hold`) see the
   parsed packet: ``scripted`` drop, or an extra delay (``hold``);
4. bandwidth: the packet waits behind those still being serialized; if ``queue`` packets are
   already in the link's buffer (waiting or being serialized) it is dropped: ``queue full``;
   otherwise it leaves when the previous one is done plus ``len/bandwidth``;
5. ``loss``: dropped on the wire (after using the bandwidth);
6. ``duplicate``: a second copy is made, arriving with the first; then for each copy: ``jitter``
   (uniform in ±jitter, never before it was sent), ``corrupt`` (one bit of the TCP segment flipped
   — header or payload, which the receiving host's checksum check always catches, since a
   ones'-complement sum detects every single-bit error) and ``reorder`` (the copy is held back an
   extra ``reorder_delay``, so later packets overtake it);
7. on arrival: the link was partitioned in the meantime: ``partition``; the receiving host is down:
   ``host down``; otherwise it is handed to the host (``deliver``), or, for a corrupted copy,
   handed over and recorded as ``drop`` with reason ``corrupt: bad checksum`` once the host has
   counted it in its ``bad_checksum`` counter.

After every event the hosts that took part are flushed: their output is pulled and put on the
links, and their next timer is (re)scheduled. A user call made between steps (``conn.send``,
``host.connect`` ...) is picked up by the flush at the start of the next step, or by
:meth:`Network.flush`.

Crashes: :meth:`Network.crash` replaces the host by a fresh :class:`~synack.core.host.Host` with the
same name, addresses, configuration and MTU (and a new ISN secret): every connection, listener and
port binding is forgotten. The host stays down — packets to it are dropped (``host down``), its
own output is dropped and its timers do not run — until :meth:`Network.restart`; restart is
never implicit, but ``crash(name, restart_after=t)`` schedules it. A restarted host has no
listeners: the script re-creates what the rebooted application would.

The smaller driver: :class:`Pipe` joins exactly two ends — hosts, or a :class:`Tap` through which
a test or a script plays the peer packet by packet — with one wire of fixed delay, and its clock
moves only when the caller asks (to a time, until a condition holds, or until the ends are idle).
It is what tests use when a link's faults are not the point, and what a script runner drives.

Speed: with no trace and no scripted fault, a segment whose link does not corrupt is never built
into bytes — the receiving host gets the sender's segment as parsing would give it (``_Unbuilt``,
:meth:`Host.receive_segment`); the events, counters and random draws are the same either way.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Generic, NamedTuple, Protocol, TypeVar

from synack.core.connection import Config, Connection
from synack.core.host import Host
from synack.core.wire import (
    ACK,
    FIN,
    RST,
    SYN,
    IPPacket,
    Mss,
    Nop,
    Option,
    SackPermitted,
    Segment,
    Timestamps,
    WindowScale,
    WireError,
    address_text,
    build_icmp_error,
    build_packet,
    encode_options,
    parse_options,
    parse_packet,
)
from synack.trace import NoteRecord, PacketRecord, Trace

__all__ = [
    "Arrival",
    "DropFn",
    "Endpoint",
    "Fault",
    "Link",
    "Livelock",
    "Network",
    "NotReached",
    "PacketPredicate",
    "Pipe",
    "PipeError",
    "Sent",
    "SimStack",
    "Tap",
    "has_flags",
    "segment_is",
]

PacketPredicate = Callable[[IPPacket], bool]
"""A scripted fault's test of a packet (parsed, checksums not verified)."""

_DELIVER: Final = 0
_TIMER: Final = 1
_CALL: Final = 2

_FLAG_BITS: Final = {"SYN": SYN, "FIN": FIN, "RST": RST, "ACK": ACK}
_CONTROL: Final = SYN | FIN | RST | ACK


# ---------------------------------------------------------------------------------------------
# Predicates for scripted faults
# ---------------------------------------------------------------------------------------------


def _bits(names: Iterable[str]) -> int:
    bits = 0
    for name in names:
        try:
            bits |= _FLAG_BITS[name.upper()]
        except KeyError:
            raise ValueError(f"unknown flag {name!r}: use SYN, FIN, RST or ACK") from None
    return bits


def segment_is(*flags: str, data: bool | None = None) -> PacketPredicate:
    """A predicate for packets whose SYN, FIN, RST and ACK bits are exactly ``flags`` (PSH, URG,
    ECE and CWR are ignored): ``segment_is("SYN", "ACK")`` is the SYN,ACK, ``segment_is("ACK",
    data=True)`` a data segment, ``segment_is("ACK", data=False)`` a pure ACK."""
    want = _bits(flags)

    def match(pkt: IPPacket) -> bool:
        seg = pkt.seg
        if seg.flags & _CONTROL != want:
            return False
        return data is None or bool(seg.payload) == data

    return match


def has_flags(*flags: str) -> PacketPredicate:
    """A predicate for packets with at least these control bits: ``has_flags("FIN")``."""
    want = _bits(flags)
    return lambda pkt: pkt.seg.flags & want == want


# ---------------------------------------------------------------------------------------------
# Links and faults
# ---------------------------------------------------------------------------------------------


class Link:
    """One direction of a link, from host ``src`` to host ``dst``. Every parameter may be
    changed between steps (e.g. ``link.loss = 1.0`` to pull the cable one way).

    ``delay`` seconds of propagation, ``jitter`` (± seconds, uniform), ``bandwidth`` in bytes per
    second (None: infinite, no queue), ``queue``: packets the link's buffer holds, the one being
    serialized included (drop-tail), ``mtu`` in bytes of IP packet, ``loss``, ``duplicate``,
    ``reorder`` and ``corrupt``: probabilities per packet; a reordered packet arrives
    ``reorder_delay`` seconds late. ``partitioned`` drops everything."""

    __slots__ = ("_backlog", "bandwidth", "corrupt", "delay", "dst", "duplicate", "jitter", "loss",
                 "mtu", "partitioned", "queue", "reorder", "reorder_delay", "rng", "src")

    def __init__(self, src: str, dst: str, rng: random.Random, *, delay: float, jitter: float,
                 bandwidth: float | None, queue: int, mtu: int, loss: float, duplicate: float,
                 reorder: float, reorder_delay: float, corrupt: float) -> None:
        if delay < 0 or jitter < 0 or reorder_delay < 0:
            raise ValueError("delay, jitter and reorder_delay must not be negative")
        if bandwidth is not None and bandwidth <= 0:
            raise ValueError("bandwidth must be positive (or None)")
        if queue < 1:
            raise ValueError("queue must hold at least one packet")
        for name, p in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder), ("corrupt", corrupt)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], not {p}")
        self.src = src
        self.dst = dst
        self.rng = rng
        self.delay = delay
        self.jitter = jitter
        self.bandwidth = bandwidth
        self.queue = queue
        self.mtu = mtu
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.reorder_delay = reorder_delay
        self.corrupt = corrupt
        self.partitioned = False
        self._backlog: deque[float] = deque()  # times at which queued packets finish serializing

    def __repr__(self) -> str:
        return f"<Link {self.src}->{self.dst} delay={self.delay}>"


class Fault:
    """A scripted fault: on packets from ``direction`` (a (src, dst) pair of host names, or any)
    that satisfy ``predicate`` (or all), let ``skip`` pass, then act on ``remaining`` of them
    (None: on all): ``action`` is ``drop`` or ``hold`` (an extra delay of ``seconds``).
    ``seen`` counts the matching packets, ``hits`` those acted on."""

    __slots__ = ("_net", "action", "direction", "hits", "icmp", "predicate", "remaining", "seconds", "seen",
                 "skip")

    def __init__(self, net: Network, action: str, predicate: PacketPredicate | None,
                 direction: tuple[str, str] | None, skip: int, remaining: int | None, seconds: float) -> None:
        self._net = net
        self.action = action
        self.predicate = predicate
        self.direction = direction
        self.skip = skip
        self.remaining = remaining
        self.seconds = seconds
        self.seen = 0
        self.hits = 0
        self.icmp: tuple[int, int] | None = None  # a reject: the ICMP (type, code) sent back

    @property
    def active(self) -> bool:
        return self in self._net._faults

    def cancel(self) -> None:
        """Remove the fault (no effect when it is already used up)."""
        if self in self._net._faults:
            self._net._faults.remove(self)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


class _HostSpec:
    __slots__ = ("addresses", "config", "ephemeral", "incarnation", "mtu")

    def __init__(self, addresses: list[str], config: Config | None, mtu: int,
                 ephemeral: tuple[int, int]) -> None:
        self.addresses = addresses
        self.config = config
        self.mtu = mtu
        self.ephemeral = ephemeral
        self.incarnation = 0


class Network:
    """Hosts, links, faults and a virtual clock (seconds, starting at 0).

    ``seed`` makes the run repeatable: it derives every link direction's random generator and
    every host's ISN secret. ``trace`` (a :class:`~synack.trace.Trace`) receives the records of
    the network and of every host; None (the default) records nothing, for speed."""

    def __init__(self, seed: int = 0, trace: Trace | None = None, *, icmp: bool = False) -> None:
        self.seed = seed
        self.trace = trace
        #: Answer a packet for a host that is down with ICMP "host unreachable", as the router in
        #: front of it would (False: it is silently lost, as when nothing answers for the host).
        self.icmp = icmp
        self._rejected: tuple[int, int] | None = None
        self.now = 0.0
        self.hosts: dict[str, Host] = {}
        self.links: dict[tuple[str, str], Link] = {}
        self.counters: Counter[str] = Counter()
        self._specs: dict[str, _HostSpec] = {}
        self._routes: dict[bytes, str] = {}
        # Address text -> host, for the lab fast path: only addresses whose text is what parsing
        # a packet gives back (inet_ntoa / inet_ntop of the address bytes).
        self._text_routes: dict[str, str] = {}
        self._down: set[str] = set()
        self._events: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._timer_at: dict[str, float] = {}
        self._faults: list[Fault] = []
        self._pid = 0

    # -------------------------------------------------------------------------------------
    # Building the network
    # -------------------------------------------------------------------------------------

    def add_host(self, name: str, addresses: str | Iterable[str], *, config: Config | None = None,
                 mtu: int = 1500, ephemeral: tuple[int, int] = (32768, 60999)) -> Host:
        """A new host with these IPv4/IPv6 addresses; its ISN secret comes from the seed and its
        name, so that runs repeat exactly."""
        if name in self._specs:
            raise ValueError(f"there is already a host named {name!r}")
        given = [addresses] if isinstance(addresses, str) else list(addresses)
        addrs = [str(ipaddress.ip_address(a)) for a in given]
        for a in addrs:
            owner = self._routes.get(ipaddress.ip_address(a).packed)
            if owner is not None:
                raise ValueError(f"address {a} already belongs to host {owner!r}")
        spec = _HostSpec(addrs, config, mtu, ephemeral)
        self._specs[name] = spec
        for a in addrs:
            packed = ipaddress.ip_address(a).packed
            self._routes[packed] = name
            text = address_text(packed)
            if text == a:
                self._text_routes[a] = name
        host = self._make_host(name, spec)
        self.hosts[name] = host
        return host

    def _make_host(self, name: str, spec: _HostSpec) -> Host:
        key = hashlib.sha256(f"synack-sim|{self.seed}|{name}|{spec.incarnation}".encode()).digest()
        return Host(spec.addresses, name=name, config=spec.config, isn_key=key, mtu=spec.mtu,
                    tracer=self.trace.host_record if self.trace is not None else None,
                    ephemeral=spec.ephemeral)

    def host(self, name: str) -> Host:
        """The host called ``name`` (after a crash: the fresh one)."""
        return self.hosts[name]

    def link(self, a: str | Host, b: str | Host, *, delay: float = 0.001, jitter: float = 0.0,
             bandwidth: float | None = None, queue: int = 1000, mtu: int = 1500, loss: float = 0.0,
             duplicate: float = 0.0, reorder: float = 0.0, reorder_delay: float | None = None,
             corrupt: float = 0.0) -> tuple[Link, Link]:
        """Join ``a`` and ``b``; returns the two directions (a→b, b→a), each with these
        parameters and its own random generator. ``reorder_delay`` defaults to twice the delay
        (at least 1 ms)."""
        an, bn = _name(a), _name(b)
        for n in (an, bn):
            if n not in self._specs:
                raise ValueError(f"no host named {n!r}")
        if an == bn:
            raise ValueError("a link joins two different hosts")
        if (an, bn) in self.links:
            raise ValueError(f"{an} and {bn} are already linked (change the Link objects instead)")
        rd = reorder_delay if reorder_delay is not None else max(2 * delay, 0.001)
        out: list[Link] = []
        for s, d in ((an, bn), (bn, an)):
            rng = random.Random(f"synack-link|{self.seed}|{s}|{d}")
            lk = Link(s, d, rng, delay=delay, jitter=jitter, bandwidth=bandwidth, queue=queue, mtu=mtu,
                      loss=loss, duplicate=duplicate, reorder=reorder, reorder_delay=rd, corrupt=corrupt)
            self.links[(s, d)] = lk
            out.append(lk)
        return out[0], out[1]

    def stack(self, host: str | Host) -> SimStack:
        """The adapter the blocking socket layer drives this network through."""
        name = _name(host)
        if name not in self._specs:
            raise ValueError(f"no host named {name!r}")
        return SimStack(self, name)

    # -------------------------------------------------------------------------------------
    # Scripted faults
    # -------------------------------------------------------------------------------------

    def _add_fault(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def drop_nth(self, n: int, predicate: PacketPredicate | None = None,
                 direction: tuple[str, str] | None = None) -> Fault:
        """Drop the ``n``-th packet (counting from 1, from now on) that matches ``predicate`` (and
        goes from ``direction[0]`` to ``direction[1]``, if given)."""
        if n < 1:
            raise ValueError("n counts from 1")
        return self._add_fault(Fault(self, "drop", predicate, direction, n - 1, 1, 0.0))

    def drop_if(self, predicate: PacketPredicate, count: int | None = 1,
                direction: tuple[str, str] | None = None) -> Fault:
        """Drop the next ``count`` packets that match (None: every one, until cancelled)."""
        return self._add_fault(Fault(self, "drop", predicate, direction, 0, count, 0.0))

    def hold(self, predicate: PacketPredicate, seconds: float, count: int | None = 1,
             direction: tuple[str, str] | None = None) -> Fault:
        """Delay the next ``count`` matching packets by ``seconds`` on top of the link's delay."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        return self._add_fault(Fault(self, "hold", predicate, direction, 0, count, seconds))

    def reject(self, host: str | Host, *, port: int | None = None, code: int | None = None) -> Fault:
        """A firewall in front of ``host``: TCP packets to it (to ``port`` only, if given) are
        dropped and answered with ICMP destination unreachable — code 3 (port unreachable, IPv4)
        or 4 (IPv6) by default, as ``iptables -j REJECT`` does; another ``code`` (e.g. 1 for host
        unreachable, 13 for administratively prohibited) if given. Cancel the returned fault to
        open the way again."""
        name = _name(host)
        if name not in self._specs:
            raise ValueError(f"no host named {name!r}")
        addrs = frozenset(self._specs[name].addresses)

        def aimed(pkt: IPPacket) -> bool:
            return pkt.dst in addrs and (port is None or pkt.seg.dst_port == port)

        fault = Fault(self, "reject", aimed, None, 0, None, 0.0)
        fault.icmp = (3, code) if code is not None else (3, -1)
        return self._add_fault(fault)

    def inject(self, src: str | Host, packet: bytes, *, label: str = "(injected)") -> None:
        """Put a hand-made IP packet on the wire from host ``src`` — an old duplicate, a forged
        segment — as if that host had sent it: the host knows nothing of it, but the packet is
        recorded (right after an ``inject`` note carrying ``label``, for renderers), meets the
        scripted faults and the link like any other, and is delivered by address."""
        name = _name(src)
        if name not in self._specs:
            raise ValueError(f"no host named {name!r}")
        self._note("inject", name, label)
        self._send(name, packet)

    def partition(self, a: str | Host, b: str | Host | None = None) -> None:
        """Cut the link between ``a`` and ``b`` both ways (without ``b``: every link of ``a``).
        Packets in flight on it are lost too."""
        self._set_partition(_name(a), None if b is None else _name(b), True)

    def heal(self, a: str | Host, b: str | Host | None = None) -> None:
        """Undo :meth:`partition`."""
        self._set_partition(_name(a), None if b is None else _name(b), False)

    def _set_partition(self, a: str, b: str | None, cut: bool) -> None:
        found = False
        for (s, d), lk in self.links.items():
            if (s == a and (b is None or d == b)) or (d == a and (b is None or s == b)):
                lk.partitioned = cut
                found = True
        if not found:
            raise ValueError(f"no link between {a} and {b or 'any host'}")
        self._note("partition" if cut else "heal", a, f"{a} <-> {b or '*'}")

    def crash(self, host: str | Host, *, restart_after: float | None = None) -> Host:
        """The host crashes: it is replaced by a fresh host that has forgotten every connection,
        listener and port, and stays down (receives nothing, sends nothing, runs no timer) until
        :meth:`restart` — called by the script, or after ``restart_after`` virtual seconds."""
        name = _name(host)
        spec = self._specs[name]
        spec.incarnation += 1
        fresh = self._make_host(name, spec)
        self.hosts[name] = fresh
        self._down.add(name)
        self._timer_at.pop(name, None)
        self._note("crash", name, f"{name} crashed: every connection forgotten")
        if restart_after is not None:
            self.call_at(self.now + restart_after, lambda: self.restart(name))
        return fresh

    def restart(self, host: str | Host) -> Host:
        """Bring a crashed host back up (with no connections and no listeners)."""
        name = _name(host)
        if name not in self._specs:
            raise ValueError(f"no host named {name!r}")
        if name in self._down:
            self._down.discard(name)
            self._note("restart", name, f"{name} restarted")
            self._flush_host(name, self.hosts[name])
        return self.hosts[name]

    def is_down(self, host: str | Host) -> bool:
        return _name(host) in self._down

    def _note(self, kind: str, host: str, detail: str) -> None:
        if self.trace is not None:
            self.trace.append(NoteRecord(self.now, kind, host, detail))

    # -------------------------------------------------------------------------------------
    # Time
    # -------------------------------------------------------------------------------------

    def call_at(self, t: float, fn: Callable[[], object]) -> None:
        """Run ``fn()`` at virtual time ``t`` (a scripted user action); every host is flushed
        after it."""
        if t < self.now:
            raise ValueError(f"call_at({t}) is in the past (now = {self.now})")
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, _CALL, fn))

    def next_event_time(self) -> float | None:
        """The time of the next event (None when nothing is left to happen)."""
        events = self._events
        timer_at = self._timer_at
        while events:
            t, _, kind, arg = events[0]
            if kind == _TIMER and timer_at.get(arg) != t:
                heapq.heappop(events)  # superseded by a later reschedule
                continue
            return t
        return None

    def step(self) -> bool:
        """Flush the hosts, then process the next event (a delivery, a timer, a scripted call).
        False when nothing is left to happen."""
        self.flush()
        if self.next_event_time() is None:
            return False
        self._process()
        return True

    def run(self, until: float | None = None, *, max_events: int | None = None) -> int:
        """Process every event up to virtual time ``until`` (None: until nothing is left), then
        set the clock to ``until``. Returns the number of events processed."""
        self.flush()
        n = 0
        while max_events is None or n < max_events:
            t = self.next_event_time()
            if t is None or (until is not None and t > until):
                break
            self._process()
            n += 1
        if until is not None and until > self.now and (max_events is None or n < max_events):
            self.now = until
        return n

    def run_until(self, predicate: Callable[[], bool], limit: float | None = None, *,
                  max_events: int | None = None) -> bool:
        """Step until ``predicate()`` is true (checked before every event and after the last);
        give up after ``limit`` virtual seconds (the clock then reads now + limit) or when nothing
        is left to happen. Returns ``predicate()``."""
        deadline = None if limit is None else self.now + limit
        n = 0
        while True:
            self.flush()
            if predicate():
                return True
            if max_events is not None and n >= max_events:
                return False
            t = self.next_event_time()
            if t is None or (deadline is not None and t > deadline):
                if deadline is not None and deadline > self.now:
                    self.now = deadline
                    self.flush()
                return predicate()
            self._process()
            n += 1

    def flush(self) -> None:
        """Pull the output of every host that has something to send (after user calls)."""
        for name, host in self.hosts.items():
            if host._dirty or host._stray:
                self._flush_host(name, host)

    # -------------------------------------------------------------------------------------
    # The engine
    # -------------------------------------------------------------------------------------

    def _process(self) -> None:
        t, _, kind, arg = heapq.heappop(self._events)
        self.now = t
        if kind == _DELIVER:
            self._deliver(arg)
        elif kind == _TIMER:
            del self._timer_at[arg]
            host = self.hosts[arg]
            host.handle_timeout(t)
            self._flush_host(arg, host)
        else:
            arg()
            self.flush()

    def _flush_host(self, name: str, host: Host) -> None:
        if self.trace is None and not self._faults:
            # The lab fast path: nothing records or inspects the packets (see _Unbuilt).
            pkts, batches = host.segments_to_send(self.now)
            for pkt in pkts:
                self._send(name, pkt)
            for conn, segs in batches:
                for seg in segs:
                    self._send(name, self._lab_packet(name, conn, seg))
        else:
            for pkt in host.packets_to_send(self.now):
                self._send(name, pkt)
        if name in self._down:
            return
        d = host.next_deadline()
        timer_at = self._timer_at
        if d is None:
            timer_at.pop(name, None)
            return
        if d < self.now:
            d = self.now
        if timer_at.get(name) != d:
            timer_at[name] = d
            self._seq += 1
            heapq.heappush(self._events, (d, self._seq, _TIMER, name))

    def _lab_packet(self, name: str, conn: Connection, seg: Segment) -> Packet:
        """A segment ``conn`` of host ``name`` sends, as an _Unbuilt packet when its link has no
        corruption and it parses back to itself; as bytes otherwise."""
        la, ra = conn.local_addr, conn.remote_addr
        routes = self._text_routes
        dst = routes.get(ra)
        if dst is not None and la in routes:
            link = self.links.get((name, dst))
            if link is not None and not link.corrupt:
                hlen = _lab_header_len(seg)
                if hlen is not None:
                    size = (40 if ":" in la else 20) + hlen + len(seg.payload)
                    if size <= 0xFFFF:
                        return _Unbuilt(la, ra, seg, conn.ttl, conn.tos, size, dst)
        return build_packet(la, ra, seg, ttl=conn.ttl, tos=conn.tos)

    def _send(self, src: str, pkt: Packet) -> None:
        now = self.now
        self._pid = pid = self._pid + 1
        self.counters["sent"] += 1
        if isinstance(pkt, _Unbuilt):
            dst = pkt.route
            size = pkt.size
        else:
            dst = self._routes.get(pkt[16:20] if pkt[0] >> 4 == 4 else pkt[24:40], "")
            size = len(pkt)
        tr = self.trace
        if tr is not None:
            tr.append(PacketRecord(now, "send", src, dst, pid, 0, _wire(pkt)))
        if src in self._down:
            self._drop(src, dst, pid, 0, pkt, "host down")
            return
        link = self.links.get((src, dst))
        if link is None:
            self._drop(src, dst, pid, 0, pkt, "no route")
            return
        if size > link.mtu:
            self._drop(src, dst, pid, 0, pkt, "mtu")
            return
        if link.partitioned:
            self._drop(src, dst, pid, 0, pkt, "partition")
            return
        extra = 0.0
        if self._faults:
            verdict = self._scripted(src, dst, _wire(pkt))
            if verdict is None:
                self._drop(src, dst, pid, 0, pkt, "scripted")
                if self._rejected is not None:
                    icmp, self._rejected = self._rejected, None
                    self._icmp_back(src, dst, _wire(pkt), icmp)
                return
            if verdict:
                extra = verdict
                if tr is not None:
                    tr.append(PacketRecord(now, "hold", src, dst, pid, 0, _wire(pkt), "scripted", verdict))
        depart = now
        if link.bandwidth is not None:
            backlog = link._backlog
            while backlog and backlog[0] <= now:
                backlog.popleft()
            if len(backlog) >= link.queue:
                self._drop(src, dst, pid, 0, pkt, "queue full")
                return
            depart = (backlog[-1] if backlog else now) + size / link.bandwidth
            backlog.append(depart)
        rng = link.rng
        if link.loss and rng.random() < link.loss:
            self._drop(src, dst, pid, 0, pkt, "loss")
            return
        arrive = depart + link.delay + extra
        self._launch(link, pkt, pid, 0, arrive)
        if link.duplicate and rng.random() < link.duplicate:
            self.counters["duplicated"] += 1
            if tr is not None:
                tr.append(PacketRecord(now, "duplicate", src, dst, pid, 1, _wire(pkt)))
            self._launch(link, pkt, pid, 1, arrive)

    def _launch(self, link: Link, pkt: Packet, pid: int, copy: int, arrive: float) -> None:
        """Put one copy of a packet on the wire: jitter, corruption, reordering, then the heap."""
        rng = link.rng
        corrupted = False
        if link.jitter:
            arrive = max(arrive + link.jitter * (2.0 * rng.random() - 1.0), self.now)
        if link.corrupt and rng.random() < link.corrupt:
            pkt, bit = _flip_bit(_wire(pkt), rng)
            corrupted = True
            self.counters["corrupted"] += 1
            if self.trace is not None:
                self.trace.append(PacketRecord(self.now, "corrupt", link.src, link.dst, pid, copy, pkt,
                                               f"bit {bit} of the TCP segment flipped"))
        if link.reorder and rng.random() < link.reorder:
            arrive += link.reorder_delay
            self.counters["reordered"] += 1
            if self.trace is not None:
                self.trace.append(PacketRecord(self.now, "hold", link.src, link.dst, pid, copy, _wire(pkt),
                                               "reorder", link.reorder_delay))
        self._seq += 1
        heapq.heappush(self._events, (arrive, self._seq, _DELIVER, (link, pkt, pid, copy, corrupted)))

    def _deliver(self, arg: tuple[Link, Packet, int, int, bool]) -> None:
        link, pkt, pid, copy, corrupted = arg
        dst = link.dst
        if link.partitioned:
            self._drop(link.src, dst, pid, copy, pkt, "partition")
            return
        if dst in self._down:
            self._drop(link.src, dst, pid, copy, pkt, "host down")
            if self.icmp:
                self._icmp_back(link.src, dst, _wire(pkt), (3, 1))
            return
        host = self.hosts[dst]
        now = self.now
        if corrupted:
            pkt = _wire(pkt)  # a corrupted copy is always bytes (_flip_bit)
            counters = host.counters
            bad, malformed = counters["bad_checksum"], counters["malformed"]
            host.receive(pkt, now)
            if counters["bad_checksum"] > bad:
                self._drop(link.src, dst, pid, copy, pkt, "corrupt: bad checksum")
            elif counters["malformed"] > malformed:
                self._drop(link.src, dst, pid, copy, pkt, "corrupt: malformed")
            else:  # cannot happen for a single flipped bit; recorded should it ever
                self.counters["corrupt undetected"] += 1
                if self.trace is not None:
                    self.trace.append(PacketRecord(now, "deliver", link.src, dst, pid, copy, pkt,
                                                   "corrupt: undetected"))
        else:
            self.counters["delivered"] += 1
            if self.trace is not None:
                self.trace.append(PacketRecord(now, "deliver", link.src, dst, pid, copy, _wire(pkt)))
            if isinstance(pkt, _Unbuilt):
                host.receive_segment(pkt.src, pkt.dst, pkt.seg, now)
            else:
                host.receive(pkt, now)
        self._flush_host(dst, host)

    def _icmp_back(self, towards: str, via: str, about: bytes, icmp: tuple[int, int]) -> None:
        """An ICMP destination unreachable about ``about`` (sent by ``towards``), sent back over
        the link from ``via`` as the router or firewall there would: from the address ``about``
        was sent to, recorded as a packet ``via`` sent, delivered after the link's delay."""
        link = self.links.get((via, towards))
        if link is None or about[0] >> 4 not in (4, 6):
            return
        v6 = about[0] >> 4 == 6
        icmp_type, code = (1, icmp[1]) if v6 else icmp
        if code < 0:
            code = 4 if v6 else 3  # port unreachable
        sender = address_text(about[24:40] if v6 else about[16:20])
        packet = build_icmp_error(sender, about, icmp_type, code)
        self._pid = pid = self._pid + 1
        self.counters["icmp"] += 1
        if self.trace is not None:
            self.trace.append(PacketRecord(self.now, "send", via, towards, pid, 0, packet))
        self._seq += 1
        heapq.heappush(self._events, (self.now + link.delay, self._seq, _DELIVER,
                                      (link, packet, pid, 0, False)))

    def _drop(self, src: str, dst: str, pid: int, copy: int, pkt: Packet, reason: str) -> None:
        self.counters["drop: " + reason] += 1
        if self.trace is not None:
            self.trace.append(PacketRecord(self.now, "drop", src, dst, pid, copy, _wire(pkt), reason))

    def _scripted(self, src: str, dst: str, pkt: bytes) -> float | None:
        """Apply the scripted faults: None = drop, else the extra delay (0.0 for none)."""
        parsed = parse_packet(pkt, verify=False)
        extra = 0.0
        for f in list(self._faults):
            if f.direction is not None and f.direction != (src, dst):
                continue
            if f.predicate is not None and not f.predicate(parsed):
                continue
            f.seen += 1
            if f.skip:
                f.skip -= 1
                continue
            f.hits += 1
            if f.remaining is not None:
                f.remaining -= 1
                if f.remaining <= 0:
                    self._faults.remove(f)
            if f.action == "drop":
                return None
            if f.action == "reject":
                self._rejected = f.icmp
                return None
            extra += f.seconds
        return extra

    def stats(self) -> dict[str, int]:
        """Counters: packets sent, delivered, duplicated, corrupted, reordered, and dropped by
        reason (``drop: loss`` ...)."""
        return dict(self.counters)

    def __repr__(self) -> str:
        return f"<Network seed={self.seed} t={self.now} hosts={sorted(self.hosts)}>"


class _Unbuilt:
    """A packet of the lab fast path, never built into bytes. When nothing needs a packet's
    bytes — no trace (so no pcap either), no scripted fault, no corruption on its link — the
    simulator skips building it (two checksums) and parsing it again at the receiver (two more):
    the receiving host gets the sender's :class:`Segment`, which is exactly what parsing the
    packet would give (:func:`_lab_header_len` checks that, field by field; only ``checksum``
    stays None). Everything else — routing, MTU, bandwidth, loss, the event order and the random
    draws — sees the same packet as before; a record that needs the bytes builds them."""

    __slots__ = ("dst", "route", "seg", "size", "src", "tos", "ttl")

    def __init__(self, src: str, dst: str, seg: Segment, ttl: int, tos: int, size: int, route: str) -> None:
        self.src = src
        self.dst = dst
        self.seg = seg
        self.ttl = ttl
        self.tos = tos
        self.size = size  # len() of the packet it stands for
        self.route = route  # the host that owns dst

    def packet(self) -> bytes:
        """The bytes it stands for (as :meth:`Host.packets_to_send` would have built them)."""
        return build_packet(self.src, self.dst, self.seg, ttl=self.ttl, tos=self.tos)


Packet = bytes | _Unbuilt

_U32: Final = 0xFFFFFFFF


def _lab_header_len(seg: Segment) -> int | None:
    """The TCP header length of ``seg`` when parsing the packet built from it would give back an
    equal Segment (every field in range, the ACK field present exactly when the ACK bit is, the
    payload a ``bytes``, options that parse to themselves — padding would come back as an EOL);
    None otherwise."""
    ack = seg.ack
    if (ack is None) != (not seg.flags & ACK):
        return None
    if not (0 <= seg.seq <= _U32 and (ack is None or 0 <= ack <= _U32) and seg.raw_ack == 0
            and seg.reserved == 0 and 0 <= seg.flags <= 0xFF and 0 <= seg.window <= 0xFFFF
            and 0 <= seg.urg <= 0xFFFF and 0 <= seg.src_port <= 0xFFFF and 0 <= seg.dst_port <= 0xFFFF
            and type(seg.payload) is bytes and type(seg.options) is tuple):
        return None
    options = seg.options
    if not options:
        return 20
    if len(options) == 3 and type(options[0]) is Nop and type(options[1]) is Nop:
        ts = options[2]  # the common NOP,NOP,TS layout: 12 octets of options
        if type(ts) is Timestamps:
            return 32 if 0 <= ts.tsval <= _U32 and 0 <= ts.tsecr <= _U32 else None
    n = _syn_options_len(options)
    if n is not None:
        return 20 + n
    opts = encode_options(options)
    return 20 + len(opts) if parse_options(opts) == options else None


def _syn_options_len(options: tuple[Option, ...]) -> int | None:
    """The length of options made only of NOP, MSS, SACK-permitted, timestamps and window scale
    (what a SYN carries), in range and with no padding — they then parse back to themselves —
    without encoding them; None for anything else (the caller encodes and parses to check)."""
    total = 0
    for opt in options:
        if type(opt) is Nop:
            total += 1
        elif type(opt) is Mss:
            if not 0 <= opt.value <= 0xFFFF:
                return None
            total += 4
        elif type(opt) is WindowScale:
            if not 0 <= opt.shift <= 0xFF:
                return None
            total += 3
        elif type(opt) is SackPermitted:
            total += 2
        elif type(opt) is Timestamps:
            if not (0 <= opt.tsval <= _U32 and 0 <= opt.tsecr <= _U32):
                return None
            total += 10
        else:
            return None
    return total if total % 4 == 0 and total <= 40 else None


def _wire(pkt: Packet) -> bytes:
    """The bytes of a packet (built now for an _Unbuilt one)."""
    return pkt.packet() if isinstance(pkt, _Unbuilt) else pkt


def _name(host: str | Host) -> str:
    return host if isinstance(host, str) else host.name


def _flip_bit(pkt: bytes, rng: random.Random) -> tuple[bytes, int]:
    """Flip one bit of the TCP segment (the part the TCP checksum covers)."""
    off = (pkt[0] & 0x0F) * 4 if pkt[0] >> 4 == 4 else 40
    bit = rng.randrange((len(pkt) - off) * 8)
    b = bytearray(pkt)
    b[off + (bit >> 3)] ^= 0x80 >> (bit & 7)
    return bytes(b), bit


# ---------------------------------------------------------------------------------------------
# The adapter for the blocking socket layer
# ---------------------------------------------------------------------------------------------


class SimStack:
    """What a blocking socket on a simulated host needs: the host (the current one — after a
    crash, the fresh host), the virtual time, a flush, and a way to wait that advances the
    simulation instead of sleeping."""

    __slots__ = ("name", "net")

    def __init__(self, net: Network, name: str) -> None:
        self.net = net
        self.name = name

    @property
    def host(self) -> Host:
        return self.net.hosts[self.name]

    def now(self) -> float:
        return self.net.now

    def flush(self) -> None:
        self.net.flush()

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Advance virtual time until ``predicate()`` is true, ``timeout`` virtual seconds have
        passed (None: no limit) or nothing is left to happen; returns ``predicate()``. When the
        timeout expires — also when nothing else happens before it — the clock reads the deadline:
        waiting takes time."""
        return self.net.run_until(predicate, limit=timeout)


# ---------------------------------------------------------------------------------------------
# Two ends, one wire, a manual clock
# ---------------------------------------------------------------------------------------------


class Endpoint(Protocol):
    """One end of a :class:`Pipe`: the sans-IO surface of :class:`~synack.core.host.Host` — IP
    packets in, IP packets out, time passed in. A :class:`Tap` is the other kind."""

    def receive(self, packet: bytes, now: float) -> None:
        """One IP packet arrives at ``now``."""

    def packets_to_send(self, now: float) -> Sequence[bytes]:
        """Every IP packet due at ``now``; each is returned once."""

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`handle_timeout` has work (None: no timer runs)."""

    def handle_timeout(self, now: float) -> None:
        """Fire every timer due at ``now``."""


DropFn = Callable[[IPPacket, int], bool]
"""The pipe's loss predicate: (the packet, its index in its direction) -> lose it?"""


class Sent(NamedTuple):
    """A packet put on the pipe's wire: when, by which end (0 = ``a``, 1 = ``b``), the bytes."""

    time: float
    side: int
    packet: bytes


class Arrival(NamedTuple):
    """A packet a :class:`Tap` received, and when it arrived."""

    time: float
    packet: bytes

    def parse(self, *, verify: bool = True) -> IPPacket:
        """The packet parsed; with ``verify`` a bad checksum raises
        :class:`~synack.core.wire.WireError`."""
        return parse_packet(self.packet, verify=verify)


class Tap:
    """A scripted peer: the end of a :class:`Pipe` that a test or a script plays by hand.

    It records every packet that reaches it, with its arrival time, in :attr:`received`
    (:meth:`take` hands out those not yet taken), and sends exactly what the caller queued with
    :meth:`send`: the pipe takes the queue at its next flush, which happens at the current
    virtual time before the clock moves (every :meth:`Pipe.step` starts with one). It has no
    timers and never answers on its own. An arrival time is when the packet reached the tap: with
    a delay d, the other end sent it at d earlier (the pipe's :attr:`Pipe.log` holds departure
    times); with a zero delay the two are the same number."""

    __slots__ = ("_outbox", "_taken", "received")

    def __init__(self) -> None:
        self.received: list[Arrival] = []
        self._outbox: list[bytes] = []
        self._taken = 0

    def send(self, *packets: bytes) -> None:
        """Queue IP packets (built with :func:`~synack.core.wire.build_packet`, or any bytes —
        a corrupted packet reaches the other end as it is) to leave at the next flush."""
        self._outbox.extend(packets)

    @property
    def queued(self) -> int:
        """Packets queued by :meth:`send` that have not left yet."""
        return len(self._outbox)

    @property
    def pending(self) -> int:
        """Packets received and not yet handed out by :meth:`take`."""
        return len(self.received) - self._taken

    def take(self) -> list[Arrival]:
        """The packets received since the last call, oldest first."""
        new = self.received[self._taken:]
        self._taken = len(self.received)
        return new

    def receive(self, packet: bytes, now: float) -> None:
        self.received.append(Arrival(now, bytes(packet)))

    def packets_to_send(self, now: float) -> list[bytes]:
        out, self._outbox = self._outbox, []
        return out

    def next_deadline(self) -> float | None:
        return None

    def handle_timeout(self, now: float) -> None:
        pass

    def __repr__(self) -> str:
        return f"<Tap received={len(self.received)} pending={self.pending} queued={self.queued}>"


class PipeError(RuntimeError):
    """The pipe could not do what it was asked."""


class NotReached(PipeError):
    """:meth:`Pipe.run_until`'s condition did not hold by its time limit."""


class Livelock(PipeError):
    """The ends kept exchanging packets or firing timers without the clock moving."""


EA = TypeVar("EA", bound=Endpoint)
EB = TypeVar("EB", bound=Endpoint)


class Pipe(Generic[EA, EB]):
    """Two endpoints, one wire with a fixed one-way ``delay``, and a clock only the caller moves.

    Where :class:`Network` models many hosts and links with faults, the pipe is the smallest
    deterministic driver: what ``a`` sends arrives at ``b`` exactly ``delay`` seconds later (0 is
    allowed) and vice versa, and the clock jumps from event to event — an arrival, an end's
    deadline, a ``tick`` — only when :meth:`step`, :meth:`run`, :meth:`run_before`,
    :meth:`run_until` or :meth:`settle` is called. Nothing sleeps and no wall clock is read: the
    same calls give the same run. An end is a :class:`~synack.core.host.Host`, a :class:`Tap` (a
    scripted peer) or anything else with the :class:`Endpoint` methods.

    **One step at time t**, where t is the earliest of: the first packet on the wire, each end's
    ``next_deadline()``, the next tick — and never earlier than :attr:`now`:

    0. *flush* at the current time (before t is chosen): output the user's calls made since;
    1. *deliveries*: every packet on the wire due at or before t, in order of arrival time and,
       for equal times, of sending. Only packets already on the wire are delivered: the replies
       they draw leave in step 3 and, with a zero delay, arrive in the next step at the same t;
    2. *timers*: ``a.handle_timeout(t)``, then ``b``'s, for each end whose ``next_deadline()`` is
       at or before t;
    3. *flush* at t: ``a.packets_to_send(t)``, then ``b``'s. Each packet gets the next index of
       its direction (a→b and b→a count separately from 0, dropped packets included), is logged
       with its departure time t, shown to ``drop`` (True loses it; a packet that does not parse
       is never shown) and otherwise arrives at t + ``delay``.

    Per direction (index 0: a→b, 1: b→a), :attr:`sent` counts the packets flushed and
    :attr:`dropped` those ``drop`` took. With ``log=True``, :attr:`log` lists every flushed packet
    as :class:`Sent` (departure time, side, bytes). ``tick`` also stops the clock every ``tick``
    seconds from the start, so that a :meth:`run_until` predicate standing for an application
    runs while the wire is idle. Either end may be replaced at any time (``pipe.b = Host(...)``: a
    crash and restart); packets in flight reach the new end. The livelock guard: more than
    ``max_steps`` steps at one virtual time raises :class:`Livelock` (a time limit cannot stop
    ends that answer each other without delay)."""

    def __init__(self, a: EA, b: EB, *, delay: float = 0.001, drop: DropFn | None = None,
                 now: float = 0.0, log: bool = False, tick: float | None = None,
                 max_steps: int = 100_000) -> None:
        if delay < 0:
            raise ValueError(f"delay must not be negative, not {delay}")
        if tick is not None and tick <= 0:
            raise ValueError(f"tick must be positive (or None), not {tick}")
        self._a = a
        self._b = b
        self.delay = delay
        self.drop = drop
        self.now = now
        self.tick = tick
        self.max_steps = max_steps
        self.sent = [0, 0]
        self.dropped = [0, 0]
        self.log: list[Sent] | None = [] if log else None
        self.steps = 0  # every step taken, for the curious
        self._tick_at = now + tick if tick is not None else 0.0
        self._wire: list[tuple[float, int, int, bytes]] = []  # (arrival, order, to side, packet)
        self._order = 0
        self._instant: tuple[float, int] = (now, 0)  # (a virtual time, steps taken at it)

    @property
    def a(self) -> EA:
        """End 0."""
        return self._a

    @a.setter
    def a(self, end: EA) -> None:
        self._a = end

    @property
    def b(self) -> EB:
        """End 1."""
        return self._b

    @b.setter
    def b(self, end: EB) -> None:
        self._b = end

    def end(self, side: int) -> Endpoint:
        """End ``side`` (0: ``a``, 1: ``b``)."""
        if side not in (0, 1):
            raise ValueError(f"a pipe has ends 0 and 1, not {side}")
        return self._a if side == 0 else self._b

    @property
    def in_flight(self) -> int:
        """Packets on the wire, not yet delivered."""
        return len(self._wire)

    def packets(self, side: int | None = None) -> list[tuple[float, int, IPPacket]]:
        """The logged packets (``log=True``), parsed without checking checksums: (departure
        time, sending side, packet), of one side or both."""
        if self.log is None:
            raise PipeError("packets() reads the log: create the Pipe with log=True")
        return [(t, s, parse_packet(p, verify=False)) for t, s, p in self.log if side is None or s == side]

    # -------------------------------------------------------------------------------------
    # The clock
    # -------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Take every packet the ends have to send now (``a``'s, then ``b``'s) onto the wire."""
        self._flush(0, self._a)
        self._flush(1, self._b)

    def next_event_time(self) -> float | None:
        """When the next step would happen (never before :attr:`now`); None: nothing ever will."""
        times = [d for d in (self._a.next_deadline(), self._b.next_deadline()) if d is not None]
        if self._wire:
            times.append(self._wire[0][0])
        if self.tick is not None:
            while self._tick_at <= self.now:
                self._tick_at += self.tick
            times.append(self._tick_at)
        return max(min(times), self.now) if times else None

    def step(self, limit: float) -> bool:
        """Flush, then take one step (see the class) if the next event is due at or before
        ``limit``. Returns False, the clock unchanged, when none is."""
        return self._step(limit, False)

    def _step(self, limit: float, strictly_before: bool) -> bool:
        self.flush()
        t = self.next_event_time()
        if t is None or t > limit or (strictly_before and t == limit):
            return False
        self._count_step(t)
        self.now = t
        wire = self._wire
        while wire and wire[0][0] <= t:
            _, _, to, pkt = heapq.heappop(wire)
            self.end(to).receive(pkt, t)
        for end in (self._a, self._b):
            d = end.next_deadline()
            if d is not None and d <= t:
                end.handle_timeout(t)
        self.flush()
        return True

    def run(self, until: float) -> None:
        """Take every step due at or before ``until``; the clock then reads ``until`` (or
        stays where it is, if that is later)."""
        while self.step(until):
            pass
        self.now = max(self.now, until)

    def run_before(self, until: float) -> None:
        """Take every step due strictly before ``until``; the clock then reads ``until`` (or stays
        where it is, if that is later). What is due at ``until`` itself waits for the next step,
        so a packet a :class:`Tap` sends now, with a zero delay, is delivered before the timers
        due at the same time (deliveries come first in a step) — where :meth:`run` would have
        fired them already."""
        while self._step(until, True):
            pass
        self.now = max(self.now, until)

    def settle(self, limit: float) -> float:
        """Take every step due at or before ``limit`` and stop at the last one: the ends have
        nothing left to do before ``limit``. Returns the clock, which does not move to ``limit``
        (unlike :meth:`run`)."""
        while self.step(limit):
            pass
        return self.now

    def run_until(self, pred: Callable[[], bool], limit: float) -> float:
        """Step until ``pred()`` holds — checked before the first step and after each (it may act
        for an application: send, read, close) — and return the time at which it held. Raises
        :class:`NotReached` when the next step would pass ``limit``; the clock then reads the
        last step's time."""
        if pred():
            return self.now
        while self.step(limit):
            if pred():
                return self.now
        raise NotReached(f"pipe: condition not reached by t={limit} (stopped at t={self.now}; {self})")

    # -------------------------------------------------------------------------------------
    # Internals
    # -------------------------------------------------------------------------------------

    def _flush(self, side: int, end: Endpoint) -> None:
        now = self.now
        for pkt in end.packets_to_send(now):
            idx = self.sent[side]
            self.sent[side] = idx + 1
            if self.log is not None:
                self.log.append(Sent(now, side, pkt))
            if self.drop is not None and self._lost(pkt, idx):
                self.dropped[side] += 1
                continue
            self._order += 1
            heapq.heappush(self._wire, (now + self.delay, self._order, 1 - side, pkt))

    def _lost(self, pkt: bytes, idx: int) -> bool:
        assert self.drop is not None
        try:
            parsed = parse_packet(pkt, verify=False)
        except WireError:
            return False
        return self.drop(parsed, idx)

    def _count_step(self, t: float) -> None:
        self.steps += 1
        at, n = self._instant
        n = n + 1 if t == at else 1
        self._instant = (t, n)
        if n > self.max_steps:
            raise Livelock(f"pipe: more than {self.max_steps} steps at t={t} without the clock moving "
                           f"(the ends keep answering each other or a timer stays due; {self})")

    def __repr__(self) -> str:
        nxt = self.next_event_time()
        return (f"<Pipe t={self.now} sent a->b {self.sent[0]} (dropped {self.dropped[0]}), "
                f"b->a {self.sent[1]} (dropped {self.dropped[1]}), {self.in_flight} in flight, "
                f"next event {'none' if nxt is None else f't={nxt}'}>")
