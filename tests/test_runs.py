"""Runs of in-order data segments (``Host.receive_many``, :mod:`synack.core.runs`) are taken in
exactly as one segment at a time (``Host.receive``, the reference).

Twin hosts, each with one established connection (same ISN, same options), are fed the same
packets at the same times: ``one`` one packet at a time, ``many`` in batches. After every
batch the two must agree on every variable of the TCB (all slots, congestion control, loss
recovery, the reassembly queue, timers, pending events), on the host's counters and on every
packet they send. The peer's segments are drawn at random: in order and out of order, old
duplicates, overlaps, text beyond the window, ACKs that advance, windows and timestamps that
change, SACK blocks, PSH, URG, FIN; the application reads and writes in between and timers fire.
"""

from __future__ import annotations

import enum
import random
from typing import Any

import pytest

from synack.core.connection import Config, Connection
from synack.core.host import Host
from synack.core.wire import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    Mss,
    Nop,
    Option,
    Sack,
    SackPermitted,
    Segment,
    Timestamps,
    WindowScale,
    build_icmp_error,
    build_packet,
    parse_packet,
)

US, PEER = "10.0.0.1", "10.0.0.2"
RUN_KEYS = ("runs", "run_segments")  # Host.stats(): runs taken by their text, and their segments
PEER_ISS = 0xFFFFF000  # wraps within the first few hundred kilobytes


def _state(obj: Any, depth: int = 0) -> Any:
    """Every slot and attribute of ``obj`` as plain values (objects inside, two levels deep)."""
    if isinstance(obj, (int, float, str, bytes, type(None), enum.Enum)):
        return obj
    if isinstance(obj, bytearray):
        return bytes(obj)
    if isinstance(obj, (list, tuple, dict, set, frozenset)) or depth > 2 or callable(obj):
        return repr(obj)
    names: list[str] = []
    for cls in type(obj).__mro__:
        slots = getattr(cls, "__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    names.extend(getattr(obj, "__dict__", {}))
    skip = {"notify", "tracer", "config", "_host", "host"}
    return {n: _state(getattr(obj, n, None), depth + 1) for n in sorted(set(names)) if n not in skip}


class Twins:
    """Two hosts, each with one connection established to PEER:80 in the same way."""

    def __init__(self, config: Config, peer_options: tuple[Option, ...]) -> None:
        self.one = Host([US], isn_key=b"r" * 32, config=config)
        self.many = Host([US], isn_key=b"r" * 32, config=config)
        self.now = 1.0
        self.conns: list[Connection] = []
        for h in (self.one, self.many):
            c = h.connect(PEER, 80, self.now)
            syn = parse_packet(h.packets_to_send(self.now)[0]).seg
            synack = Segment(80, syn.src_port, PEER_ISS, (syn.seq + 1) & 0xFFFFFFFF, SYN | ACK, 65535,
                             peer_options)
            h.receive(build_packet(PEER, US, synack), self.now)
            h.packets_to_send(self.now)
            assert c.state.name == "ESTABLISHED"
            self.conns.append(c)
        self.port = self.conns[0].local_port

    def feed(self, segs: list[Segment], at: float, batches: list[int]) -> None:
        self.now = at
        packets = [build_packet(PEER, US, s) for s in segs]
        for p in packets:
            self.one.receive(p, at)
        i = 0
        for n in batches:
            self.many.receive_many(packets[i:i + n], at, checksum_verified=[bool(k & 1) for k in range(n)])
            i += n
        assert i == len(packets)

    def same(self) -> list[bytes]:
        a, b = self.conns
        assert _state(a) == _state(b)
        sa, sb = self.one.stats(), self.many.stats()
        for key in ("checksum_trusted", *RUN_KEYS):  # only the batch host trusts and takes runs
            sa.pop(key, None)
            sb.pop(key, None)
        assert sa == sb
        out = self.one.packets_to_send(self.now)
        assert out == self.many.packets_to_send(self.now)
        assert self.one.next_deadline() == self.many.next_deadline()
        return out


def _scenario(seed: int, config: Config, peer_options: tuple[Option, ...]) -> tuple[int, int]:
    """A random exchange, the twins compared after every step; returns the batch host's runs
    taken by their text and the segments in them."""
    rng = random.Random(seed)
    t = Twins(config, peer_options)
    a = t.conns[0]
    nxt = (PEER_ISS + 1) & 0xFFFFFFFF  # the peer's next new octet
    tsval = 5000
    ts = any(isinstance(o, Timestamps) for o in peer_options)
    sack = a.sack_ok
    window = 65535
    for _ in range(60):
        t.now += rng.choice((0.0, 0.001, 0.01, 0.2, 0.6))
        r = rng.random()
        if r < 0.1:
            for h in (t.one, t.many):
                h.handle_timeout(t.now)
            t.same()
            continue
        if r < 0.2:
            data = bytes(rng.getrandbits(8) for _ in range(rng.choice((10, 1000, 5000))))
            for c in t.conns:
                c.send(data, t.now)
            t.same()
            continue
        if r < 0.3:
            n = rng.choice((1, 500, 4000, 100_000))
            assert t.conns[0].receive(n, t.now) == t.conns[1].receive(n, t.now)
            t.same()
            continue
        segs: list[Segment] = []
        size = rng.choice((1448, 1448, 536, 100, 1))
        ack = a.snd_una if rng.random() < 0.7 else (a.snd_una + rng.randint(0, max(a.snd_max - a.snd_una, 0)))
        ack &= 0xFFFFFFFF
        if rng.random() < 0.1:
            window = rng.choice((0, 1000, 30_000, 65535))
        for _ in range(rng.randint(1, 30)):
            k = rng.random()
            seq = nxt
            if k < 0.05:
                seq = (nxt - rng.choice((1, size, 3 * size))) & 0xFFFFFFFF  # old or overlapping
            elif k < 0.1:
                seq = (nxt + rng.choice((size, 2 * size))) & 0xFFFFFFFF  # a gap
            if rng.random() < 0.08:
                tsval += 1
            if rng.random() < 0.03:
                ack = (ack + rng.randint(0, 100)) & 0xFFFFFFFF
            opts: list[Option] = [Nop(), Nop(), Timestamps(tsval, 1)] if ts else []
            if sack and rng.random() < 0.05:
                block = ((a.snd_una + 10) & 0xFFFFFFFF, (a.snd_una + 20) & 0xFFFFFFFF)
                opts += [Nop(), Nop(), Sack((block,))]
            flags = ACK | (PSH if rng.random() < 0.2 else 0) | (URG if rng.random() < 0.02 else 0)
            if rng.random() < 0.01:
                flags |= FIN
            payload = bytes(rng.getrandbits(8) for _ in range(size))
            segs.append(Segment(80, t.port, seq, ack, flags, window, tuple(opts), payload,
                                urg=3 if flags & URG else 0))
            if seq == nxt:
                nxt = (nxt + size) & 0xFFFFFFFF
        cut: list[int] = []
        left = len(segs)
        while left:
            cut.append(min(left, rng.randint(1, 12)))
            left -= cut[-1]
        t.feed(segs, t.now, cut)
        t.same()
        if a.state.name != "ESTABLISHED":
            break
    return _runs(t.many)


def _runs(host: Host) -> tuple[int, int]:
    """How many runs the host took in by their text alone, and how many segments they held (the
    first of each run, which goes the whole way, not counted)."""
    stats = host.stats()
    return stats.get("runs", 0), stats.get("run_segments", 0)


CONFIGS = {
    "plain": (Config(timestamps=False, sack=False, window_scaling=False), (Mss(1460),)),
    "timestamps+sack": (Config(), (Mss(1460), SackPermitted(), Timestamps(5000, 0), Nop(), WindowScale(7))),
    "no-delayed-ack": (Config(delayed_ack=0.0), (Mss(1460), SackPermitted(), Timestamps(5000, 0), Nop(),
                                                  WindowScale(7))),
    "small-buffer": (Config(rcv_buf=8000, timestamps=True), (Mss(1460), Timestamps(5000, 0))),
    "keepalive": (Config(keepalive=True), (Mss(1460), Timestamps(5000, 0))),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_runs_are_taken_in_as_one_segment_at_a_time(name: str) -> None:
    config, opts = CONFIGS[name]
    runs = segments = 0
    for seed in range(25):
        r, n = _scenario(seed, config, opts)
        runs, segments = runs + r, segments + n
    # The comparison is not empty: the random exchanges take the shortcut many times (but not
    # with keep-alive, where every segment goes the whole way).
    if config.keepalive:
        assert (runs, segments) == (0, 0)
    else:
        assert runs >= 30 and segments >= 100, (runs, segments)


def test_a_batch_with_bad_packets_icmp_and_other_connections_is_taken_as_one_at_a_time() -> None:
    """What breaks a run inside a batch — a packet with a bad checksum, a truncated one, an ICMP
    error quoting one of our segments, a segment for no connection (answered with a RST), one
    from another address — is handled as :meth:`Host.receive` handles it, in its place, and the
    runs on either side of it are still runs."""
    t = Twins(Config(), (Mss(1460), SackPermitted(), Timestamps(5000, 0), Nop(), WindowScale(7)))
    port, nxt = t.port, (PEER_ISS + 1) & 0xFFFFFFFF
    una = t.conns[0].snd_una
    opts = (Nop(), Nop(), Timestamps(6000, 1))
    data = [Segment(80, port, (nxt + i * 1448) & 0xFFFFFFFF, una, ACK, 65535, opts, bytes([i]) * 1448)
            for i in range(12)]
    packets = [build_packet(PEER, US, s) for s in data]
    bad = bytearray(packets[4])
    bad[-1] ^= 0xFF  # the payload's last octet: the TCP checksum fails
    for c in t.conns:
        c.send(b"x" * 100, t.now)
    ours = t.one.packets_to_send(t.now)[0]
    assert ours == t.many.packets_to_send(t.now)[0]
    icmp = build_icmp_error("10.9.9.9", ours, 3, 4, mtu=1280)  # fragmentation needed
    stray = build_packet(PEER, US, Segment(81, port, 5, 6, ACK, 100, (), b"?"))  # no connection
    other = build_packet("10.0.0.3", US, data[5])  # the same ports, another peer
    batch = [*packets[:4], bytes(bad), packets[4], packets[5][:30], *packets[5:8], icmp, stray, other,
             *packets[8:]]
    t.now = 2.0
    for p in batch:
        t.one.receive(p, t.now)
    t.many.receive_many(batch, t.now)
    out = t.same()
    stats = t.many.stats()
    assert stats["bad_checksum"] == 1 and stats["malformed"] == 1, stats
    assert t.conns[1].readable == 12 * 1448
    # runs of 4, 3 and 4 segments, the first of each in full: 3 runs, 3 + 2 + 3 segments by text
    assert _runs(t.many) == (3, 8)
    assert any(parse_packet(p).seg.flags & RST for p in out)


def test_the_shortcut_is_taken() -> None:
    """Not only the reference path: in-order bulk data mostly takes the shortcut."""
    t = Twins(Config(), (Mss(1460), SackPermitted(), Timestamps(5000, 0), Nop(), WindowScale(7)))
    port, nxt = t.port, (PEER_ISS + 1) & 0xFFFFFFFF
    una = t.conns[0].snd_una
    opts = (Nop(), Nop(), Timestamps(6000, 1))
    segs = [Segment(80, port, (nxt + i * 1448) & 0xFFFFFFFF, una, ACK, 65535, opts, bytes([i]) * 1448)
            for i in range(40)]
    t.feed(segs, 2.0, [20, 20])
    t.same()
    assert _runs(t.many) == (2, 38)  # two batches of 20: 19 segments of each by their text
    assert t.conns[1].readable == 40 * 1448
