"""What ``bench/fuzz.py`` fuzzes: the targets, the invariants checked after every input, the hosts
the packets are fed to, and the seed corpus — all made by the simulator, nothing stored.

Every target is a callable ``run(data: bytes) -> int`` (the number of packets it fed) that may
raise only its documented errors (``allowed``); anything else, or a :class:`BrokenInvariant`, is
a crash. The engine (``bench/fuzz.py``) imports this module inside atheris's import hook, so the
``synack`` modules imported here are the instrumented ones.

Targets:

``host``
    :meth:`synack.core.host.Host.receive` of a host restored, for every input, from one of the
    :data:`FIXTURES` (a listener, a half-open child, SYN-SENT, ESTABLISHED with data both ways and
    out-of-order data, a zero window, persist, keep-alive probing, every closing state; IPv4 and
    IPv6; with and without options). The first bytes of an input steer it (:class:`HostInput`): the
    fixture, the checksum mode — verified, trusted (``checksum_verified=True``), or fixed up by the
    harness so that a mutated packet reaches the state machine — whether the packet is re-addressed
    to the fixture's connection and its numbers taken relative to RCV.NXT and SND.UNA, and how far
    the virtual clock moves before and after the packets (the timers fire on the way).
``wire``
    :func:`~synack.core.wire.parse_packet` (bytes and memoryview, verified or not),
    :func:`~synack.core.wire.parse_segment`, :func:`~synack.core.wire.parse_options`, with the
    round trips their docstrings promise (``build_ip_packet`` rebuilds a parsed packet byte for
    byte).
``decode``
    ``synack decode`` on text: :func:`~synack.decode.decode_text`, then the analysis, the text
    report and the JSON report.
``pcap``
    :func:`~synack.pcap.read_pcap` on bytes as a file, then ``ip_packet`` and ``parse_packet`` of
    every record.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from synack import decode as decode_mod
from synack import pcap as pcap_mod
from synack.core import wire
from synack.core.connection import Config, Connection
from synack.core.host import Host
from synack.core.records import Event, State
from synack.sim import Network, segment_is
from synack.trace import PacketRecord, Trace

__all__ = [
    "FIXTURES",
    "TARGETS",
    "BrokenInvariant",
    "Fixture",
    "HostInput",
    "KnownDefect",
    "Target",
    "build_fixtures",
    "corpus",
    "host_input",
]

MASK = 0xFFFFFFFF
HALF = 1 << 31


class BrokenInvariant(Exception):
    """A property that must hold after every input does not (raised explicitly, so ``python -O``
    does not remove the checks)."""


def _check(ok: object, what: str) -> None:
    if not ok:
        raise BrokenInvariant(what)


def _sdiff(a: int, b: int) -> int:
    return ((a - b + HALF) & MASK) - HALF


# ---------------------------------------------------------------------------------------------
# Host fixtures: one small host per interesting state, made by the simulator and pickled
# ---------------------------------------------------------------------------------------------

A4, B4, A6, B6 = "10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"
#: The target host's configuration: every option, keep-alive, and timers short enough that the
#: clock the input draws reaches them (TIME-WAIT 60 s, FIN-WAIT-2 40 s, keep-alive after 20 s).
FULL = Config(msl=30.0, keepalive=True, keepidle=20.0, keepintvl=5.0, keepcnt=3, fin_wait_2_timeout=40.0,
              rcv_buf=64 * 1024, snd_buf=64 * 1024)
PLAIN = FULL.with_(timestamps=False, sack=False, window_scaling=False)
SMALL = FULL.with_(rcv_buf=4000, snd_buf=6000)
PEER = Config.lab()
PEER_SMALL = Config.lab(rcv_buf=4000)


@dataclass(frozen=True)
class Fixture:
    """Host B in one state: ``blob`` is the pickled host, ``now`` its clock, ``key`` the 4-tuple
    of the connection the input may be steered to (local address, port, remote address, port;
    for a listener fixture the remote half is a peer that has no connection yet)."""

    name: str
    state: str
    blob: bytes
    now: float
    key: tuple[str, int, str, int]
    #: Packets delivered to B after the snapshot in the traced run of the same scenario: the
    #: host target's seed corpus (they fit the fixture's numbers exactly).
    followers: tuple[bytes, ...] = field(default=(), repr=False)


@dataclass
class _Run:
    net: Network
    a: Host
    b: Host
    a_addr: str
    b_addr: str
    ca: Connection | None = None
    cb: Connection | None = None
    #: The 4-tuple at B to steer to when there is no connection ``cb`` (a SYN cookie's).
    key: tuple[str, int, str, int] | None = None


def _pair(trace: Trace | None, ipv6: bool = False, b_config: Config = FULL) -> _Run:
    net = Network(seed=9293, trace=trace)
    a = net.add_host("A", [A4, A6], config=PEER)
    b = net.add_host("B", [B4, B6], config=b_config)
    net.link("A", "B", delay=0.005)
    return _Run(net, a, b, A6 if ipv6 else A4, B6 if ipv6 else B4)


def _connect(r: _Run, port: int = 80, *, listen_config: Config | None = None,
             b_active: bool = False, peer_config: Config | None = None) -> None:
    """A connection between A and B, passive at B unless ``b_active``, run to ESTABLISHED."""
    if b_active:
        lst = r.a.listen(port, config=peer_config)
        r.cb = r.b.connect(r.a_addr, port, r.net.now, config=listen_config)
        r.net.run(until=r.net.now + 0.05)
        r.ca = lst.accept()
    else:
        lst = r.b.listen(port, backlog=4, syn_backlog=8, config=listen_config)
        r.ca = r.a.connect(r.b_addr, port, r.net.now, config=peer_config)
        r.net.run(until=r.net.now + 0.05)
        r.cb = lst.accept()


def _exchange(r: _Run, a_bytes: int = 3000, b_bytes: int = 3000, b_reads: int = 1000) -> None:
    assert r.ca is not None and r.cb is not None
    r.ca.send(bytes(range(256)) * (a_bytes // 256) + b"a" * (a_bytes % 256), r.net.now)
    r.cb.send(b"b" * b_bytes, r.net.now)
    r.net.run(until=r.net.now + 0.2)
    r.cb.receive(b_reads, r.net.now)
    r.ca.receive(1 << 20, r.net.now)
    r.net.run(until=r.net.now + 0.2)


def _sc_listen(r: _Run) -> None:
    r.b.listen(80, backlog=2, syn_backlog=4)
    r.b.listen(81, config=PLAIN)


def _sc_syn_received(r: _Run) -> None:
    r.b.listen(80, backlog=2, syn_backlog=4)
    r.net.drop_if(segment_is("SYN", "ACK"))
    r.ca = r.a.connect(r.b_addr, 80, r.net.now)
    r.net.run(until=0.02)
    r.cb = next(iter(r.b.conns.values()))


def _sc_syn_cookies(r: _Run) -> None:
    """A SYN queue of one, held by a half-open child; the next SYN is answered with a SYN cookie
    (RFC 4987 §3.6) and B keeps no state for it: the snapshot is taken before the peer's ACK of
    the cookie arrives (the first follower)."""
    r.b.syn_cookies = "auto"
    r.b.listen(80, backlog=4, syn_backlog=1)
    r.net.drop_if(segment_is("SYN", "ACK"))
    r.a.connect(r.b_addr, 80, r.net.now)
    r.net.run(until=0.02)
    r.ca = r.a.connect(r.b_addr, 80, r.net.now)
    r.key = (r.b_addr, 80, r.a_addr, r.ca.local_port)
    r.net.run(until=0.027)


def _sc_syn_sent(r: _Run) -> None:
    r.a.listen(7)
    r.net.drop_if(segment_is("SYN"))
    r.cb = r.b.connect(r.a_addr, 7, r.net.now)
    r.net.run(until=0.02)


def _sc_established(r: _Run) -> None:
    """Data both ways, some read; then B's next data and A's are lost (a partition), and one of
    A's lost segments reaches B out of order (B holds it and has SACKed it)."""
    _connect(r)
    _exchange(r)
    assert r.ca is not None and r.cb is not None
    r.net.partition("A", "B")
    r.cb.send(b"c" * 6000, r.net.now)
    r.ca.send(b"d" * 4000, r.net.now)
    lost = r.a.packets_to_send(r.net.now)  # taken from A before the network sees them
    if len(lost) > 1:
        r.b.receive(lost[1], r.net.now)
    r.net.run(until=r.net.now + 0.01)


def _sc_established6(r: _Run) -> None:
    _connect(r)
    _exchange(r, 5000, 2000, 4000)


def _sc_established_plain(r: _Run) -> None:
    _connect(r, 81, listen_config=PLAIN)
    _exchange(r, 2000, 4000, 500)
    assert r.cb is not None
    r.net.partition("A", "B")
    r.cb.send(b"e" * 1500, r.net.now)
    r.net.run(until=r.net.now + 0.01)


def _sc_active_plain(r: _Run) -> None:
    _connect(r, 7, listen_config=PLAIN, b_active=True)
    _exchange(r, 1000, 1000, 1000)


def _sc_zero_window(r: _Run) -> None:
    """B's receive buffer (4,000 octets) is full and B's application does not read."""
    _connect(r, 82, listen_config=SMALL)
    assert r.ca is not None
    r.ca.send(b"z" * 20000, r.net.now)
    r.net.run(until=r.net.now + 3.0)


def _sc_persist(r: _Run) -> None:
    """A's window is closed: B probes it (persist timer)."""
    _connect(r, 9, b_active=True, peer_config=PEER_SMALL)
    assert r.cb is not None
    r.cb.send(b"p" * 20000, r.net.now)
    r.net.run(until=r.net.now + 3.0)


def _sc_keepalive(r: _Run) -> None:
    """Idle past keepidle with A unreachable: B's keep-alive probes go unanswered."""
    _connect(r)
    _exchange(r, 500, 500, 500)
    r.net.partition("A", "B")
    r.net.run(until=r.net.now + 27.0)


def _sc_fin_wait_1(r: _Run) -> None:
    _connect(r)
    _exchange(r)
    assert r.cb is not None
    r.net.partition("A", "B")
    r.cb.send(b"f" * 2000, r.net.now)
    r.cb.close(r.net.now)
    r.net.run(until=r.net.now + 0.01)


def _sc_fin_wait_2(r: _Run) -> None:
    _connect(r)
    _exchange(r)
    assert r.cb is not None
    r.cb.close(r.net.now)
    r.net.run(until=r.net.now + 0.1)


def _sc_closing(r: _Run) -> None:
    """Simultaneous close; B's FIN is lost, A's arrives: B is in CLOSING until it retransmits."""
    _connect(r)
    _exchange(r)
    assert r.ca is not None and r.cb is not None
    b_addr = r.b_addr
    r.net.drop_if(lambda p: bool(p.seg.flags & wire.FIN) and p.src == b_addr)
    r.cb.close(r.net.now)
    r.ca.close(r.net.now)
    r.net.run(until=r.net.now + 0.05)


def _sc_time_wait(r: _Run) -> None:
    _connect(r)
    _exchange(r)
    assert r.ca is not None and r.cb is not None
    r.cb.close(r.net.now)
    r.net.run(until=r.net.now + 0.05)
    r.ca.close(r.net.now)
    r.net.run(until=r.net.now + 0.05)


def _sc_close_wait(r: _Run) -> None:
    _connect(r)
    _exchange(r)
    assert r.ca is not None
    r.ca.send(b"w" * 500, r.net.now)
    r.ca.close(r.net.now)
    r.net.run(until=r.net.now + 0.1)


def _sc_last_ack(r: _Run) -> None:
    _sc_close_wait(r)
    assert r.cb is not None
    r.net.partition("A", "B")
    r.cb.close(r.net.now)
    r.net.run(until=r.net.now + 0.01)


#: name → (scenario, IPv6, B's configuration, the state the steered connection should be in).
SCENARIOS: dict[str, tuple[Callable[[_Run], None], bool, Config, State]] = {
    "listen": (_sc_listen, False, FULL, State.LISTEN),
    "syn-received": (_sc_syn_received, False, FULL, State.SYN_RECEIVED),
    "syn-sent": (_sc_syn_sent, True, FULL, State.SYN_SENT),
    "established": (_sc_established, False, FULL, State.ESTABLISHED),
    "established-ipv6": (_sc_established6, True, FULL, State.ESTABLISHED),
    "established-plain": (_sc_established_plain, False, FULL, State.ESTABLISHED),
    "established-active-plain": (_sc_active_plain, True, FULL, State.ESTABLISHED),
    "zero-window": (_sc_zero_window, False, FULL, State.ESTABLISHED),
    "persist": (_sc_persist, False, FULL, State.ESTABLISHED),
    "keepalive": (_sc_keepalive, True, FULL, State.ESTABLISHED),
    "fin-wait-1": (_sc_fin_wait_1, False, FULL, State.FIN_WAIT_1),
    "fin-wait-2": (_sc_fin_wait_2, True, FULL, State.FIN_WAIT_2),
    "closing": (_sc_closing, False, FULL, State.CLOSING),
    "time-wait": (_sc_time_wait, False, FULL, State.TIME_WAIT),
    "close-wait": (_sc_close_wait, True, FULL, State.CLOSE_WAIT),
    "last-ack": (_sc_last_ack, False, FULL, State.LAST_ACK),
    "syn-cookies": (_sc_syn_cookies, False, FULL, State.LISTEN),
}


def _scenario(name: str, trace: Trace | None) -> tuple[_Run, tuple[str, int, str, int]]:
    fn, ipv6, cfg, _ = SCENARIOS[name]
    r = _pair(trace, ipv6, cfg)
    fn(r)
    r.net.flush()
    if r.key is not None:
        key = r.key
    elif r.cb is not None:
        key = (r.cb.local_addr, r.cb.local_port, r.cb.remote_addr, r.cb.remote_port)
    else:
        key = (r.b_addr, 80, r.a_addr, 40000)
    return r, key


def _followers(name: str, seconds: float = 90.0) -> tuple[bytes, ...]:
    """The packets that reach B after the snapshot, when the same scenario is run with a trace
    and then goes on: the partition heals, both applications read, and both ends close."""
    trace = Trace()
    r, _ = _scenario(name, trace)
    t0 = r.net.now
    for lk in r.net.links.values():
        lk.partitioned = False
    for c in (r.ca, r.cb):
        if c is not None and c.state.synchronized:
            c.receive(1 << 20, r.net.now)
    r.net.run(until=t0 + 1.0)
    for c in (r.cb, r.ca):
        if c is not None and c.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            c.receive(1 << 20, r.net.now)
            c.close(r.net.now)
    r.net.run(until=t0 + seconds)
    return tuple(rec.packet for rec in trace.packets("deliver") if rec.dst == "B" and rec.t >= t0)


def build_fixtures(names: Iterable[str] | None = None, *, followers: bool = True) -> list[Fixture]:
    """Run every scenario (a few ms each) and snapshot host B. The fixtures are made untraced
    (a traced host would pickle its trace); ``followers`` runs each once more with a trace."""
    out = []
    for name in names if names is not None else SCENARIOS:
        r, key = _scenario(name, None)
        conn = r.b.conns.get(key)
        state = conn.state.name if conn is not None else ("LISTEN" if r.b.listeners else "-")
        blob = pickle.dumps(r.b, protocol=pickle.HIGHEST_PROTOCOL)
        out.append(Fixture(name, state, blob, r.net.now, key, _followers(name) if followers else ()))
    return out


FIXTURES: list[Fixture] = []


def _fixtures() -> list[Fixture]:
    if not FIXTURES:
        FIXTURES.extend(build_fixtures())
    return FIXTURES


# ---------------------------------------------------------------------------------------------
# Invariants of a host after its output is pulled
# ---------------------------------------------------------------------------------------------

MAX_TIMER_HOPS = 32
MAX_STUCK = 8


def check_connection(conn: Connection) -> None:
    st = conn.state
    _check(st is not State.CLOSED, f"a CLOSED connection stays in the host's table after its output "
           f"was pulled: {conn.local_port}->{conn.remote_port}")
    una, nxt, mx = conn.snd_una, conn.snd_nxt, conn.snd_max
    _check(_sdiff(nxt, una) >= 0 and _sdiff(mx, nxt) >= 0,
           f"SND.UNA {una} =< SND.NXT {nxt} =< snd_max {mx} violated in {st.name}")
    held = conn._ooo.held if conn._ooo is not None else 0
    bound = conn.config.rcv_buf + (1 << conn.rcv_wscale)  # plus one scaling rounding
    _check(len(conn._rbuf) + held <= bound,
           f"receive memory {len(conn._rbuf)} + {held} out of order > {bound} in {st.name}")
    _check(len(conn._sbuf) <= conn.config.snd_buf,
           f"send buffer {len(conn._sbuf)} > {conn.config.snd_buf} in {st.name}")
    _check(len(conn.events) <= len(Event), f"{len(conn.events)} pending events in {st.name}")


def check_host(host: Host, now: float) -> None:
    for conn in host.conns.values():
        check_connection(conn)
    for lst in host.listeners.values():
        _check(0 <= lst.syn_pending <= lst.syn_backlog,
               f"listener {lst.local_port}: {lst.syn_pending} half-open of {lst.syn_backlog}")
        _check(lst.pending <= lst.backlog, f"listener {lst.local_port}: accept queue {lst.pending} "
               f"> backlog {lst.backlog}")
    d = host.next_deadline()
    _check(d is None or d == d, "a timer at NaN")  # NaN compares unequal to itself


def pull(host: Host, now: float) -> int:
    """Pull the host's output and check it: every packet well formed (checksums verified), from
    one of the host's addresses; then the host's invariants."""
    out = host.packets_to_send(now)
    for pkt in out:
        try:
            p = wire.parse_packet(pkt)
        except wire.WireError as exc:
            raise BrokenInvariant(f"the host sent a malformed packet ({exc}): {pkt.hex()}") from exc
        _check(p.src in host.addresses, f"the host sent a packet from {p.src}")
    check_host(host, now)
    return len(out)


class KnownDefect(BrokenInvariant):
    """A defect already reported (with a strict-xfail test in ``tests/test_fuzz_regressions.py``)
    caught just before the call it would hang: each occurrence costs a pickle round trip instead
    of the watchdog's timeout. Still counted as a crash."""


_SYN_STATES = (State.SYN_SENT, State.SYN_RECEIVED)
SPIN_ROUNDS = 64


def _r2_suspect(conn: Connection, now: float) -> bool:
    """The precondition of the R2 rounding defect: the retransmission timer is due, ``now - start
    < R2`` says R2 has not passed, yet ``start + R2 <= now`` in floats, so the timer is re-armed
    at ``min(now + RTO, start + R2)`` = ``now``. Reads the TCB's private timer fields; a rename
    turns the check off."""
    start = getattr(conn, "_rexmit_start", None)
    due = getattr(conn, "_t_rexmit", None)
    if not isinstance(start, float | int) or not isinstance(due, float | int) or due > now:
        return False
    cfg = conn.config
    limit = cfg.r2_syn if conn.state in _SYN_STATES else cfg.r2
    if cfg.user_timeout is not None and conn.state not in _SYN_STATES:
        limit = cfg.user_timeout
    return now - start < limit and start + limit <= now


def spinning_connection(host: Host, now: float) -> Connection | None:
    """A connection for which ``host.handle_timeout(now)`` would never return, found by firing its
    timers at ``now`` (up to :data:`SPIN_ROUNDS` times, as the host's loop would) in a copy of
    the host. Only connections that meet the precondition of a known defect are tried, so a
    fixed core simply stops being reported."""
    for key, conn in host.conns.items():
        if not _r2_suspect(conn, now):
            continue
        twin = pickle.loads(pickle.dumps(host, protocol=pickle.HIGHEST_PROTOCOL)).conns[key]
        for _ in range(SPIN_ROUNDS):
            d = twin.next_deadline()
            if twin.state is State.CLOSED or d is None or d > now:
                break
            twin.handle_timeout(now)
        else:
            return conn
    return None


def run_timers(host: Host, now: float, until: float) -> float:
    """Move the clock from ``now`` to ``until``, firing each timer at its deadline (a bounded
    number of hops, then the rest at ``until``); returns ``until``."""
    stuck = 0
    for _ in range(MAX_TIMER_HOPS):
        d = host.next_deadline()
        if d is None or d > until:
            break
        now = max(now, d)
        if spinning_connection(host, now) is not None:
            raise KnownDefect(f"R2 rounding at now={now!r}: Host.handle_timeout would never return")
        host.handle_timeout(now)
        pull(host, now)
        d2 = host.next_deadline()
        if d2 is not None and d2 <= now:
            stuck += 1
            _check(stuck < MAX_STUCK, f"a timer stays due at {d2} after {stuck} rounds at now={now}")
        else:
            stuck = 0
    return until


# ---------------------------------------------------------------------------------------------
# Host target
# ---------------------------------------------------------------------------------------------

#: Inputs that crashed a target once (``*-TARGET-*.bin``), kept as seeds of their target.
REPRODUCERS = Path(__file__).resolve().parent / "fuzz_corpus"
CK_VERIFY, CK_TRUSTED, CK_FIXUP, CK_FIXUP_TRUSTED = range(4)
STEER = 0x04
RELATIVE = 0x08
#: The clock after the packets (bits 6-7 of the mode byte): nothing, a delayed ACK, an RTO, a
#: long idle (TIME-WAIT, FIN-WAIT-2, keep-alive, R2).
AFTER = (0.0, 0.25, 1.5, 130.0)


@dataclass(frozen=True)
class HostInput:
    """The layout of a host-target input: ``mode``, ``fixture``, ``clock`` bytes, then the packets.

    ``mode`` bits 0-1 checksums (:data:`CK_VERIFY` …), bit 2 :data:`STEER` (re-address the packet
    to the fixture's connection), bit 3 :data:`RELATIVE` (SEG.SEQ += RCV.NXT, SEG.ACK += SND.UNA of
    that connection), bits 4-5 the number of packets less one (each but the last preceded by a
    2-byte length), bits 6-7 the clock after the packets (:data:`AFTER`). ``clock`` moves the
    clock before the packets: 0 not at all, else (clock/255)³ × 400 s."""

    mode: int
    fixture: int
    clock: int
    packets: tuple[bytes, ...]


def host_input(data: bytes) -> HostInput | None:
    if len(data) < 4:
        return None
    mode, fixture, clock = data[0], data[1], data[2]
    rest = data[3:]
    packets: list[bytes] = []
    for _ in range((mode >> 4) & 3):
        if len(rest) < 2:
            break
        n = int.from_bytes(rest[:2], "big")
        packets.append(bytes(rest[2:2 + n]))
        rest = rest[2 + n:]
    packets.append(bytes(rest))
    return HostInput(mode, fixture, clock, tuple(packets))


def encode_host_input(mode: int, fixture: int, clock: int, packets: list[bytes]) -> bytes:
    mode = (mode & 0xCF) | ((len(packets) - 1) & 3) << 4
    out = bytearray((mode, fixture, clock))
    for p in packets[:-1]:
        out += len(p).to_bytes(2, "big") + p
    return bytes(out + packets[-1])


def _tcp_offset(pkt: bytes | bytearray) -> int | None:
    """Where the TCP header starts, read as leniently as possible (None: no room for one)."""
    if not pkt:
        return None
    v = pkt[0] >> 4
    if v == 4:
        off = (pkt[0] & 0x0F) * 4
    elif v == 6:
        try:
            off = wire.parse_packet(bytes(pkt), verify=False).header_len
        except wire.WireError:
            off = 40
    else:
        return None
    return off if off >= 20 and len(pkt) >= off + 12 else None


def steer(pkt: bytes, key: tuple[str, int, str, int], conn: Connection | None, relative: bool) -> bytes:
    """Re-address ``pkt`` to the connection ``key`` (from its remote end), and with ``relative``
    add RCV.NXT and SND.UNA of ``conn`` to its sequence and acknowledgment numbers."""
    off = _tcp_offset(pkt)
    local, lport, remote, rport = key
    six = ":" in local
    if off is None or (pkt[0] >> 4 == 6) != six:
        return pkt
    b = bytearray(pkt)
    src, dst = wire.pack_address(remote), wire.pack_address(local)
    if six:
        b[8:24], b[24:40] = src, dst
    else:
        b[12:16], b[16:20] = src, dst
    b[off + 2:off + 4] = lport.to_bytes(2, "big")
    if conn is not None:
        b[off:off + 2] = rport.to_bytes(2, "big")
        if relative:
            seq, ack = struct.unpack_from("!II", b, off + 4)
            struct.pack_into("!II", b, off + 4, (seq + conn.rcv_nxt) & MASK, (ack + conn.snd_una) & MASK)
    return bytes(b)


def fix_checksums(pkt: bytes) -> bytes:
    """The packet with its IPv4 header checksum and TCP checksum made right (a packet whose
    lengths do not parse is returned as it is: no checksum would make it acceptable)."""
    try:
        p = wire.parse_packet(pkt, verify=False)
    except wire.WireError:
        return pkt
    b = bytearray(pkt)
    off = p.header_len
    if p.version == 4:
        end = int.from_bytes(b[2:4], "big")
        b[10:12] = b"\0\0"
        b[10:12] = wire.internet_checksum(bytes(b[:off])).to_bytes(2, "big")
    else:
        end = 40 + int.from_bytes(b[4:6], "big")
    b[off + 16:off + 18] = b"\0\0"
    b[off + 16:off + 18] = wire.tcp_checksum(p.src, p.dst, bytes(b[off:end])).to_bytes(2, "big")
    return bytes(b)


def _advance(clock: int) -> float:
    return 0.0 if clock == 0 else (clock / 255) ** 3 * 400.0


class HostTarget:
    """:meth:`Host.receive` into a host restored from a fixture (see :class:`HostInput`)."""

    name = "host"
    allowed: tuple[type[BaseException], ...] = ()
    max_len = 4096

    def __init__(self, fixtures: list[Fixture] | None = None) -> None:
        self.fixtures = fixtures if fixtures is not None else _fixtures()

    def __call__(self, data: bytes) -> int:
        inp = host_input(data)
        if inp is None:
            return 0
        fx = self.fixtures[inp.fixture % len(self.fixtures)]
        host: Host = pickle.loads(fx.blob)
        now = run_timers(host, fx.now, fx.now + _advance(inp.clock))
        ck = inp.mode & 3
        for pkt in inp.packets:
            if inp.mode & STEER:
                pkt = steer(pkt, fx.key, host.conns.get(fx.key), bool(inp.mode & RELATIVE))
            if ck >= CK_FIXUP:
                pkt = fix_checksums(pkt)
            before = host.counters["packets_in"]
            host.receive(pkt, now, checksum_verified=ck in (CK_TRUSTED, CK_FIXUP_TRUSTED))
            _check(host.counters["packets_in"] == before + 1, "Host.receive did not count the packet")
            pull(host, now)
        run_timers(host, now, now + AFTER[inp.mode >> 6])
        return len(inp.packets)

    def corpus(self) -> Iterator[bytes]:
        for path in sorted(REPRODUCERS.glob("*-host-*.bin")):  # the crashes found so far
            yield path.read_bytes()
        for i, fx in enumerate(self.fixtures):
            conn = pickle.loads(fx.blob).conns.get(fx.key)
            for j, pkt in enumerate(fx.followers):
                yield encode_host_input(CK_VERIFY | (j % 4) << 6, i, 0, [pkt])
                if conn is not None and j < 8:
                    yield encode_host_input(CK_FIXUP | STEER | RELATIVE, i, 0, [_unrelative(pkt, conn)])
            if fx.followers:
                yield encode_host_input(CK_TRUSTED, i, 40, list(fx.followers[:4]))


def _unrelative(pkt: bytes, conn: Connection) -> bytes:
    """``pkt`` with SEG.SEQ − RCV.NXT and SEG.ACK − SND.UNA of ``conn`` in its number fields."""
    off = _tcp_offset(pkt)
    if off is None:
        return pkt
    b = bytearray(pkt)
    seq, ack = struct.unpack_from("!II", b, off + 4)
    struct.pack_into("!II", b, off + 4, (seq - conn.rcv_nxt) & MASK, (ack - conn.snd_una) & MASK)
    return bytes(b)


# ---------------------------------------------------------------------------------------------
# wire target
# ---------------------------------------------------------------------------------------------

_IP_FIELDS = ("version", "src", "dst", "ttl", "tos", "ident", "frag", "flow", "ip_options", "ext_headers",
              "ext_first", "header_len")
_SEG_FIELDS = ("src_port", "dst_port", "seq", "ack", "flags", "window", "options", "payload", "urg",
               "reserved", "raw_ack")


def _ip_end(data: bytes | memoryview, p: wire.IPPacket) -> int:
    if p.version == 4:
        return int.from_bytes(data[2:4], "big")
    return 40 + int.from_bytes(data[4:6], "big")


def _no_checksums(pkt: bytes, p: wire.IPPacket) -> bytes:
    b = bytearray(pkt)
    if p.version == 4:
        b[10:12] = b"\0\0"
    b[p.header_len + 16:p.header_len + 18] = b"\0\0"
    return bytes(b)


def _same(p: wire.IPPacket, q: wire.IPPacket) -> str | None:
    for f in _IP_FIELDS:
        if getattr(p, f) != getattr(q, f):
            return f"IP {f}: {getattr(p, f)!r} != {getattr(q, f)!r}"
    for f in _SEG_FIELDS:
        if getattr(p.seg, f) != getattr(q.seg, f):
            return f"TCP {f}: {getattr(p.seg, f)!r} != {getattr(q.seg, f)!r}"
    return None


class WireTarget:
    """The parsers of :mod:`synack.core.wire`; the first byte picks one."""

    name = "wire"
    allowed: tuple[type[BaseException], ...] = (wire.WireError,)
    max_len = 4096

    def __call__(self, data: bytes) -> int:
        if not data:
            return 0
        op, body = data[0] % 8, data[1:]
        if op <= 3:
            self._packet(body)
        elif op == 4:
            wire.format_segment(wire.parse_segment(body))
        elif op == 5:
            wire.parse_segment(body, A4, B4)
        elif op == 6:
            self._options(body)
        else:
            self._packet(memoryview(bytearray(body)))
        return 1

    @staticmethod
    def _packet(data: bytes | memoryview) -> None:
        try:
            verified: wire.IPPacket | None = wire.parse_packet(data)
        except wire.WireError:
            verified = None
        try:
            p = wire.parse_packet(data, verify=False)
        except wire.WireError as exc:
            _check(verified is None, f"parses verified but not unverified: {exc}")
            raise
        _check(verified is None or verified == p, "verified and unverified parses differ")
        wire.format_tcpdump(p)
        wire.format_segment(p.seg)
        rebuilt = wire.build_ip_packet(p)
        try:
            q = wire.parse_packet(rebuilt)
        except wire.WireError as exc:
            raise BrokenInvariant(f"build_ip_packet(parse_packet(x)) does not parse: {exc}") from exc
        diff = _same(p, q)
        _check(diff is None, f"parse → build → parse changes the packet: {diff}")
        if verified is not None:
            # Byte for byte but for the checksums, which are recomputed: a right checksum on the
            # wire may be 0xFFFF where the sum gives 0x0000 (the two zeros of ones' complement).
            _check(_no_checksums(rebuilt, p) == _no_checksums(bytes(data[:_ip_end(data, p)]), p),
                   "build_ip_packet(parse_packet(x)) is not x byte for byte (checksums were right)")

    @staticmethod
    def _options(data: bytes) -> None:
        opts = wire.parse_options(data)
        for o in opts:
            wire.format_option(o)
        if len(data) <= 40:
            again = wire.parse_options(wire.encode_options(opts))
            n = len(opts) - (1 if opts and isinstance(opts[-1], wire.Eol) else 0)
            _check(again[:n] == opts[:n], f"options change through encode → parse: {opts!r} → {again!r}")

    def corpus(self) -> Iterator[bytes]:
        for i, pkt in enumerate(_all_packets()):
            yield bytes((i % 8,)) + pkt
            off = _tcp_offset(pkt)
            if off is not None and i % 4 == 0:
                hlen = (pkt[off + 12] >> 4) * 4
                yield b"\x04" + pkt[off:]
                yield b"\x06" + pkt[off + 20:off + hlen]


# ---------------------------------------------------------------------------------------------
# decode target
# ---------------------------------------------------------------------------------------------


class DecodeTarget:
    """``synack decode`` on text (the input read as Latin-1, so every byte is a character)."""

    name = "decode"
    allowed: tuple[type[BaseException], ...] = (decode_mod.DecodeError,)
    max_len = 8192

    def __call__(self, data: bytes) -> int:
        packets = decode_mod.decode_text(data.decode("latin-1"))
        exchanges = decode_mod.analyze(packets)
        report = decode_mod.format_report(packets, exchanges)
        _check(isinstance(report, str), "format_report did not return text")
        json.dumps(decode_mod.report_json(packets, exchanges))
        return len(packets)

    def corpus(self) -> Iterator[bytes]:
        data_dir = Path(__file__).resolve().parent.parent / "tests" / "data"
        for path in sorted(data_dir.glob("*.txt")):
            yield path.read_bytes()
        pkts = _all_packets()
        for i in range(0, min(len(pkts), 240), 6):
            group = pkts[i:i + 1 + i % 5]
            style = (i // 6) % 4
            if style == 0:
                text = "\n\n".join(p.hex() for p in group)
            elif style == 1:
                text = "\n".join(_tcpdump_xx(p) for p in group)
            elif style == 2:
                text = "\n".join(_hex_pane(b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"
                                           + (b"\x86\xdd" if p[0] >> 4 == 6 else b"\x08\x00") + p, k + 1)
                                 for k, p in enumerate(group))
            else:
                text = "\n\n".join(" ".join(f"{b:02x}" for b in p[_tcp_offset(p) or 0:]) for p in group)
            yield text.encode()


def _hex_pane(frame: bytes, label: int) -> str:
    """A Wireshark-style hex pane of ``frame`` with a ``(label)`` after its last line."""
    lines = []
    for off in range(0, len(frame), 16):
        chunk = frame[off:off + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk[:8]) + "  " + " ".join(f"{b:02x}" for b in chunk[8:])
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:04x}   {hexes:<48}  {text}")
    lines[-1] += f"   ({label})"
    return "\n".join(lines) + "\n"


def _tcpdump_xx(pkt: bytes) -> str:
    """``tcpdump -x`` style: the summary line, then 16 octets a line in 2-octet groups."""
    try:
        head = wire.format_tcpdump(wire.parse_packet(pkt, verify=False))
    except wire.WireError:
        head = "IP"
    lines = [f"00:00:00.000000 {head}"]
    for off in range(0, len(pkt), 16):
        chunk = pkt[off:off + 16]
        groups = " ".join(chunk[i:i + 2].hex() for i in range(0, len(chunk), 2))
        lines.append(f"\t0x{off:04x}:  {groups}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# pcap target
# ---------------------------------------------------------------------------------------------


class PcapTarget:
    """:func:`synack.pcap.read_pcap` of bytes as a file, then the IP packet of every record."""

    name = "pcap"
    allowed: tuple[type[BaseException], ...] = (pcap_mod.PcapError,)
    max_len = 8192

    def __call__(self, data: bytes) -> int:
        records = pcap_mod.read_pcap(data)
        for rec in records:
            ip = pcap_mod.ip_packet(rec)
            _check(ip is None or isinstance(ip, bytes), "ip_packet returned something else than bytes")
            if ip:
                with contextlib.suppress(wire.WireError):
                    wire.parse_packet(ip, verify=False)
        return len(records)

    def corpus(self) -> Iterator[bytes]:
        pkts = _all_packets()
        for i in range(0, min(len(pkts), 200), 5):
            group = pkts[i:i + 1 + i % 4]
            yield _classic(group, pcap_mod.LINKTYPE_RAW, "<", 1_000_000)
            yield _classic([_ether(p) for p in group], pcap_mod.LINKTYPE_ETHERNET, ">", 1_000_000_000)
            yield _classic([_sll(p) for p in group], pcap_mod.LINKTYPE_LINUX_SLL, "<", 1_000_000)
            yield _pcapng(group, "<" if i % 2 else ">")


def _ether(p: bytes) -> bytes:
    et = b"\x86\xdd" if p[0] >> 4 == 6 else b"\x08\x00"
    return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02" + et + p


def _sll(p: bytes) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00",
                       0x86DD if p[0] >> 4 == 6 else 0x0800) + p


def _classic(packets: list[bytes], linktype: int, endian: str, unit: int) -> bytes:
    magic = 0xA1B2C3D4 if unit == 1_000_000 else 0xA1B23C4D
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for k, p in enumerate(packets):
        out.append(struct.pack(endian + "IIII", 100 + k, 250 * k, len(p), len(p)) + p)
    return b"".join(out)


def _block(endian: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def _pcapng(packets: list[bytes], endian: str) -> bytes:
    """A pcapng file: a section header, an interface (raw IP, nanosecond resolution) and one
    Enhanced Packet Block per packet, the first packet also as a Simple Packet Block."""
    shb = _block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = struct.pack(endian + "HH", 9, 1) + b"\x09\0\0\0" + struct.pack(endian + "HH", 0, 0)
    idb = _block(endian, 1, struct.pack(endian + "HHI", pcap_mod.LINKTYPE_RAW, 0, 65535) + opts)
    out = [shb, idb]
    for k, p in enumerate(packets):
        ts = 10**9 * (1000 + k)
        epb = struct.pack(endian + "IIIII", 0, ts >> 32, ts & MASK, len(p), len(p)) + p
        out.append(_block(endian, 6, epb))
    if packets:
        out.append(_block(endian, 3, struct.pack(endian + "I", len(packets[0])) + packets[0]))
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# The seed corpus
# ---------------------------------------------------------------------------------------------

_PACKETS: list[bytes] = []


def _all_packets() -> list[bytes]:
    """Every packet of the lifecycle traffic of a few simulated runs (IPv4 and IPv6, options on
    and off, loss so that SACK blocks and retransmissions appear), each distinct once."""
    if _PACKETS:
        return _PACKETS
    seen: dict[bytes, None] = {}
    for ipv6 in (False, True):
        for cfg in (PEER, PEER.with_(timestamps=False, sack=False, window_scaling=False)):
            trace = Trace()
            net = Network(seed=7, trace=trace)
            a = net.add_host("A", [A4, A6], config=cfg)
            b = net.add_host("B", [B4, B6], config=cfg)
            net.link("A", "B", delay=0.002, loss=0.05)
            lst = b.listen(80)
            c = a.connect(B6 if ipv6 else B4, 80, 0.0)
            net.run(until=0.5)
            s = lst.accept()
            c.send(bytes(range(256)) * 80, net.now)
            if s is not None:
                s.send(b"reply" * 1000, net.now)
            net.run(until=3.0)
            c.close(net.now)
            if s is not None:
                s.receive(1 << 20, net.now)
                s.close(net.now)
            net.run(until=20.0)
            for rec in trace.records:
                if isinstance(rec, PacketRecord) and rec.kind == "send":
                    seen.setdefault(rec.packet, None)
    _PACKETS.extend(seen)
    return _PACKETS


Target = HostTarget | WireTarget | DecodeTarget | PcapTarget
TARGETS: dict[str, Callable[[], Target]] = {
    "host": HostTarget,
    "wire": WireTarget,
    "decode": DecodeTarget,
    "pcap": PcapTarget,
}


def corpus(target: Target) -> list[bytes]:
    """The seed inputs of ``target``, distinct, in a fixed order."""
    return list(dict.fromkeys(target.corpus()))
