"""Helpers for level-1 tests: one :class:`~synack.core.connection.Connection`, exact segments, exact
virtual times.

The test plays the remote peer. It feeds segments with :func:`feed` and checks what the connection
sends with :func:`expect` / :func:`expect_nothing`. Time is only ever a number passed in; a helper
that "advances" time fires the connection's due timers at that time, exactly as a driver would.

Both initial sequence numbers sit just below 2**32, so every test crosses the wrap-around:

* ``LOCAL_ISS``  = 0xFFFFFF00: our SYN; our first data octet is ``L(1)``; 255 octets later we wrap.
* ``REMOTE_ISS`` = 0xFFFFFFF0: the peer's SYN; its 16th data octet already has sequence number 0.

``L(n)`` and ``R(n)`` are the sequence numbers ``ISS + n`` of each side, modulo 2**32.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from synack.core.connection import Config, Connection
from synack.core.records import Event, Observer, State
from synack.core.wire import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    Mss,
    Option,
    RelativeSeq,
    Segment,
    format_flags,
    seq_add,
)

__all__ = [
    "ACK",
    "FIN",
    "LOCAL",
    "LOCAL_ISS",
    "MSS",
    "PLAIN",
    "PSH",
    "REMOTE",
    "REMOTE_ISS",
    "REMOTE_WND",
    "RST",
    "SYN",
    "URG",
    "WND",
    "L",
    "Out",
    "R",
    "conn_close_wait",
    "conn_closing",
    "conn_established",
    "conn_fin_wait_1",
    "conn_fin_wait_2",
    "conn_last_ack",
    "conn_listen",
    "conn_syn_received",
    "conn_syn_sent",
    "conn_time_wait",
    "events",
    "expect",
    "expect_nothing",
    "feed",
    "fire",
    "make_conn",
    "out",
    "pull",
    "seg",
    "show",
    "timeline",
]

LOCAL: tuple[str, int] = ("10.0.0.1", 40000)
REMOTE: tuple[str, int] = ("10.0.0.2", 80)
LOCAL_ISS = 0xFFFF_FF00
REMOTE_ISS = 0xFFFF_FFF0
MSS = 1460
#: The window the peer advertises in the factories (unscaled).
REMOTE_WND = 65535
#: The window we advertise with :data:`PLAIN` (the whole receive buffer, unscaled).
WND = 65535

#: Options off, no delayed ACK: the configuration of the exact tests.
PLAIN = Config(mss=MSS, rcv_buf=WND, snd_buf=65535, timestamps=False, sack=False,
               window_scaling=False, delayed_ack=0.0)


def L(n: int = 0) -> int:
    """Our sequence number ISS + n (mod 2**32)."""
    return seq_add(LOCAL_ISS, n)


def R(n: int = 0) -> int:
    """The peer's sequence number ISS + n (mod 2**32)."""
    return seq_add(REMOTE_ISS, n)


# ---------------------------------------------------------------------------------------------
# Segments in (from the peer) and segments expected out
# ---------------------------------------------------------------------------------------------


def seg(seq: int, ack: int | None = None, flags: int = 0, payload: bytes = b"", *,
        window: int = REMOTE_WND, options: Sequence[Option] = (), urg: int = 0,
        src_port: int = REMOTE[1], dst_port: int = LOCAL[1]) -> Segment:
    """A segment from the peer. The ACK bit follows ``ack``: it is set exactly when ``ack`` is
    given (so ``flags=SYN`` with an ``ack`` is a SYN,ACK)."""
    if flags & ACK and ack is None:
        raise ValueError("ACK flag without an acknowledgment number: pass ack=")
    if ack is not None:
        flags |= ACK
    return Segment(src_port, dst_port, seq & 0xFFFFFFFF, None if ack is None else ack & 0xFFFFFFFF,
                   flags, window, tuple(options), payload, urg)


def _ctl(flags: int) -> str:
    return format_flags(flags) or "-"


# Relative numbers as the diagrams read them (RFC-figure style), from the two ISNs known in advance.
_NUMBERS = RelativeSeq("isn")
_NUMBERS.add_base((LOCAL[0], LOCAL[1], REMOTE[0], REMOTE[1]), LOCAL_ISS)
_NUMBERS.add_base((REMOTE[0], REMOTE[1], LOCAL[0], LOCAL[1]), REMOTE_ISS)


def show(s: Segment) -> str:
    """RFC-figure style: ``<SEQ=..><ACK=..><CTL=..><WND=..><DATA=..>`` with relative numbers:
    ``L(n)`` and ``R(n)`` as in the tests, absolute when a number belongs to neither ISN."""

    ours = s.src_port == LOCAL[1]
    mine, theirs = (LOCAL, REMOTE) if ours else (REMOTE, LOCAL)

    def rel(x: int, sender: tuple[str, int], receiver: tuple[str, int]) -> str:
        d = _NUMBERS.offset((sender[0], sender[1], receiver[0], receiver[1]), x)
        return str(x) if d is None else f"{'L' if sender == LOCAL else 'R'}({d})"

    parts = [f"{s.src_port}>{s.dst_port}", f"<SEQ={rel(s.seq, mine, theirs)}>"]
    if s.ack is not None:
        parts.append(f"<ACK={rel(s.ack, theirs, mine)}>")
    parts.append(f"<CTL={_ctl(s.flags)}>")
    parts.append(f"<WND={s.window}>")
    if s.payload:
        shown = s.payload if len(s.payload) <= 16 else s.payload[:16] + b"..."
        parts.append(f"<DATA={len(s.payload)}:{shown!r}>")
    if s.options:
        parts.append(f"<OPT={s.options}>")
    return "".join(parts)


@dataclass(frozen=True)
class Out:
    """An expected outgoing segment. ``window`` and ``options`` are compared only when given."""

    seq: int
    ack: int | None
    flags: int
    payload: bytes = b""
    window: int | None = None
    options: tuple[Option, ...] | None = None
    urg: int | None = None
    src_port: int = LOCAL[1]
    dst_port: int = REMOTE[1]

    def mismatch(self, s: Segment) -> str | None:
        checks: list[tuple[str, object, object]] = [
            ("src_port", self.src_port, s.src_port),
            ("dst_port", self.dst_port, s.dst_port),
            ("seq", self.seq, s.seq),
            ("ack", self.ack, s.ack),
            ("flags", _ctl(self.flags), _ctl(s.flags)),
            ("payload", self.payload, s.payload),
        ]
        if self.window is not None:
            checks.append(("window", self.window, s.window))
        if self.options is not None:
            checks.append(("options", self.options, s.options))
        if self.urg is not None:
            checks.append(("urg", self.urg, s.urg))
        for name, want, got in checks:
            if want != got:
                return f"{name}: want {want!r}, got {got!r}"
        return None

    def __str__(self) -> str:
        s = Segment(self.src_port, self.dst_port, self.seq, self.ack, self.flags,
                    -1 if self.window is None else self.window, self.options or (), self.payload)
        return show(s).replace("<WND=-1>", "")


def out(seq: int, ack: int | None = None, flags: int = 0, payload: bytes = b"", *,
        window: int | None = None, options: Sequence[Option] | None = None, urg: int | None = None,
        src_port: int = LOCAL[1], dst_port: int = REMOTE[1]) -> Out:
    """An expected segment from us. As with :func:`seg`, the ACK bit follows ``ack``."""
    if flags & ACK and ack is None:
        raise ValueError("ACK flag without an acknowledgment number: pass ack=")
    if ack is not None:
        flags |= ACK
    return Out(seq & 0xFFFFFFFF, None if ack is None else ack & 0xFFFFFFFF, flags, payload, window,
               None if options is None else tuple(options), urg, src_port, dst_port)


# ---------------------------------------------------------------------------------------------
# Driving a connection
# ---------------------------------------------------------------------------------------------


def _check_invariants(conn: Connection, segs: Sequence[Segment]) -> None:
    for s in segs:
        if not s.flags & SYN:
            # MUST-65: the MSS option is sent on SYN segments only.
            assert not any(isinstance(o, Mss) for o in s.options), f"MSS option on non-SYN {show(s)}"
        assert 0 <= s.window <= 0xFFFF, f"window field out of range in {show(s)}"


def fire(conn: Connection, at: float) -> None:
    """Fire the connection's timers if one is due at ``at`` (what a driver does at that time)."""
    d = conn.next_deadline()
    if d is not None and d <= at:
        conn.handle_timeout(at)


def feed(conn: Connection, s: Segment, *, at: float) -> None:
    """Deliver one segment from the peer at time ``at`` (due timers fire first)."""
    fire(conn, at)
    conn.handle_segment(s, at)


def pull(conn: Connection, at: float) -> list[Segment]:
    """Fire due timers at ``at`` and take everything the connection sends then."""
    fire(conn, at)
    segs = conn.segments_to_send(at)
    _check_invariants(conn, segs)
    return segs


def expect(conn: Connection, *, at: float, segments: Sequence[Out]) -> list[Segment]:
    """Exactly ``segments`` leave the connection at ``at``, in this order, and then nothing."""
    got = pull(conn, at)
    listing = "\n".join(f"    {show(s)}" for s in got) or "    (nothing)"
    wanted = "\n".join(f"    {e}" for e in segments) or "    (nothing)"
    assert len(got) == len(segments), (
        f"at t={at}: {len(got)} segment(s) sent, {len(segments)} expected\n"
        f"  sent:\n{listing}\n  expected:\n{wanted}\n  state: {conn.state}")
    for i, (e, s) in enumerate(zip(segments, got, strict=True)):
        why = e.mismatch(s)
        assert why is None, f"at t={at}: segment #{i}: {why}\n  sent:\n{listing}\n  expected:\n{wanted}"
    again = conn.segments_to_send(at)
    assert again == [], f"at t={at}: more output on a second pull: {[show(s) for s in again]}"
    return got


def expect_nothing(conn: Connection, *, at: float) -> None:
    """Nothing leaves the connection at ``at``."""
    expect(conn, at=at, segments=[])


def timeline(conn: Connection, *, until: float, limit: int = 1000) -> list[tuple[float, Segment]]:
    """Run the connection's timers up to ``until`` (inclusive) as a driver would — firing each
    timer at its own deadline — and return every ``(time, segment)`` sent on the way."""
    got: list[tuple[float, Segment]] = []
    for _ in range(limit):
        d = conn.next_deadline()
        if d is None or d > until:
            return got
        conn.handle_timeout(d)
        segs = conn.segments_to_send(d)
        _check_invariants(conn, segs)
        got.extend((d, s) for s in segs)
    raise AssertionError(f"more than {limit} timer events before t={until}")


# ---------------------------------------------------------------------------------------------
# One factory per state, built by running the real handshake / close through the public API
# ---------------------------------------------------------------------------------------------


_OBSERVERS: list[Observer] = []


@contextmanager
def observing(observer: Observer) -> Iterator[None]:
    """Every connection the factories below make while this is open reports to ``observer`` (it is
    the connection's ``tracer``), from its first transition on."""
    _OBSERVERS.append(observer)
    try:
        yield
    finally:
        _OBSERVERS.remove(observer)


def make_conn(config: Config = PLAIN, iss: int = LOCAL_ISS, *, local: tuple[str, int] = LOCAL,
              remote: tuple[str, int] = REMOTE) -> Connection:
    return Connection(local, remote, iss=iss, config=config, tracer=_OBSERVERS[-1] if _OBSERVERS else None)


def conn_listen(config: Config = PLAIN, *, at: float = 0.0) -> Connection:
    c = make_conn(config)
    c.open_passive(at)
    assert c.state is State.LISTEN
    expect_nothing(c, at=at)
    return c


def _syn_opts(config: Config) -> list[Option]:
    return [Mss(MSS)] if config.mss == MSS else []


def conn_syn_sent(config: Config = PLAIN, *, at: float = 0.0) -> Connection:
    """Active OPEN; our SYN <SEQ=L(0)><CTL=SYN> has left at ``at``."""
    c = make_conn(config)
    c.open_active(at)
    assert c.state is State.SYN_SENT
    got = pull(c, at)
    assert len(got) == 1 and got[0].flags == SYN and got[0].seq == LOCAL_ISS and got[0].ack is None
    return c


def conn_syn_received(config: Config = PLAIN, *, at: float = 0.0,
                      peer_options: Sequence[Option] = (Mss(MSS),)) -> Connection:
    """Passive OPEN, the peer's SYN <SEQ=R(0)> arrived, our SYN,ACK <SEQ=L(0)><ACK=R(1)> left."""
    c = conn_listen(config, at=at)
    feed(c, seg(R(0), flags=SYN, options=peer_options), at=at)
    assert c.state is State.SYN_RECEIVED
    got = pull(c, at)
    assert len(got) == 1 and got[0].flags == SYN | ACK and got[0].seq == L(0) and got[0].ack == R(1)
    return c


def conn_established(config: Config = PLAIN, *, at: float = 0.0, passive: bool = False,
                     peer_options: Sequence[Option] = (Mss(MSS),)) -> Connection:
    """ESTABLISHED with SND.NXT = SND.UNA = L(1) and RCV.NXT = R(1); nothing in flight.

    Active (default): our SYN, the peer's SYN,ACK, our ACK. Passive: the peer's SYN, our SYN,ACK,
    the peer's ACK. The peer offers ``REMOTE_WND`` and ``peer_options``."""
    if passive:
        c = conn_syn_received(config, at=at, peer_options=peer_options)
        feed(c, seg(R(1), L(1)), at=at)
        assert c.state is State.ESTABLISHED
        expect_nothing(c, at=at)
    else:
        c = conn_syn_sent(config, at=at)
        feed(c, seg(R(0), L(1), SYN, options=peer_options), at=at)
        assert c.state is State.ESTABLISHED
        expect(c, at=at, segments=[out(L(1), R(1))])
    c.drain_events()
    return c


def conn_fin_wait_1(config: Config = PLAIN, *, at: float = 0.0) -> Connection:
    """ESTABLISHED, CLOSE: our FIN <SEQ=L(1)><ACK=R(1)> left (unacknowledged)."""
    c = conn_established(config, at=at)
    c.close(at)
    assert c.state is State.FIN_WAIT_1
    expect(c, at=at, segments=[out(L(1), R(1), FIN)])
    return c


def conn_fin_wait_2(config: Config = PLAIN, *, at: float = 0.0) -> Connection:
    """FIN-WAIT-1, then the peer ACKs our FIN (SND.UNA = L(2))."""
    c = conn_fin_wait_1(config, at=at)
    feed(c, seg(R(1), L(2)), at=at)
    assert c.state is State.FIN_WAIT_2
    expect_nothing(c, at=at)
    return c


def conn_close_wait(config: Config = PLAIN, *, at: float = 0.0) -> Connection:
    """ESTABLISHED, the peer's FIN <SEQ=R(1)> arrived and was ACKed (RCV.NXT = R(2))."""
    c = conn_established(config, at=at)
    feed(c, seg(R(1), L(1), FIN), at=at)
    assert c.state is State.CLOSE_WAIT
    expect(c, at=at, segments=[out(L(1), R(2))])
    c.drain_events()
    return c


def conn_closing(config: Config = PLAIN, *, at: float = 0.0) -> Connection:
    """FIN-WAIT-1, then the peer's FIN crosses ours (it does not ACK our FIN)."""
    c = conn_fin_wait_1(config, at=at)
    feed(c, seg(R(1), L(1), FIN), at=at)
    assert c.state is State.CLOSING
    expect(c, at=at, segments=[out(L(2), R(2))])
    return c


def conn_last_ack(config: Config = PLAIN, *, at: float = 0.0) -> Connection:
    """CLOSE-WAIT, CLOSE: our FIN <SEQ=L(1)><ACK=R(2)> left (unacknowledged)."""
    c = conn_close_wait(config, at=at)
    c.close(at)
    assert c.state is State.LAST_ACK
    expect(c, at=at, segments=[out(L(1), R(2), FIN)])
    return c


def conn_time_wait(config: Config = PLAIN, *, at: float = 0.0) -> Connection:
    """FIN-WAIT-2, the peer's FIN <SEQ=R(1)> arrived and was ACKed; TIME-WAIT starts at ``at``."""
    c = conn_fin_wait_2(config, at=at)
    feed(c, seg(R(1), L(2), FIN), at=at)
    assert c.state is State.TIME_WAIT
    expect(c, at=at, segments=[out(L(2), R(2))])
    c.drain_events()
    return c


def events(conn: Connection) -> list[Event]:
    """The connection's events since the last call."""
    return conn.drain_events()
