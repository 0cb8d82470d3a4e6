"""RFC 4987 (TCP SYN flooding attacks and common mitigations) — an informational RFC: it states no
MUST or SHOULD, it describes mitigations. These tests check synack against the RFC's description
of the ones it implements: the bounded backlog (§3.2), a shorter SYN-RECEIVED timer (§3.3) and SYN
cookies (§3.6). ``docs/conformance.md`` lists every mitigation of §3 with its id (``4987-…``).

Level 2: a listening :class:`~synack.core.host.Host` with either a second host (a real client) or
a :class:`~synack.sim.Tap` (the test plays the peer, packet by packet) at the other end of a
:class:`~synack.sim.Pipe`; ``test_syn_flood.py`` has the cookie encoding and a flood."""

from __future__ import annotations

from synack.core.connection import Config
from synack.core.host import Host
from synack.core.records import State
from synack.core.wire import ACK, RST, SYN, Mss, Segment, build_packet
from synack.sim import Pipe, Tap

A, B = "10.0.0.1", "10.0.0.2"
MASK = 0xFFFFFFFF


def syn(sport: int, isn: int = 1000, mss: int = 1460) -> bytes:
    return build_packet(A, B, Segment(sport, 80, isn, None, SYN, 65535, (Mss(mss),)))


def answers(tap: Tap) -> list[tuple[float, Segment]]:
    return [(a.time, a.parse().seg) for a in tap.take()]


def tapped(server: Host) -> tuple[Pipe[Tap, Host], Tap]:
    tap = Tap()
    return Pipe(tap, server, delay=0.0), tap


# =============================================================================================
# §3.6 SYN cookies
# =============================================================================================


def test_3_6_cookie_no_state_until_the_ack_returns_the_cookie_then_a_normal_connection() -> None:
    """4987-3.6-COOKIE: with SYN cookies the listener keeps no state for a SYN (RFC 4987 §3.6,
    paraphrased): what it needs is encoded in the initial sequence number of its SYN-ACK, and the
    connection is built when the ACK returns that number (SEG.ACK − 1). A real client connects to
    a listener that always answers with cookies; data then flows both ways."""
    server = Host([B], name="B", config=Config.lab(), syn_cookies="always")
    lst = server.listen(80)
    client = Host([A], name="A", config=Config.lab())
    pipe: Pipe[Host, Host] = Pipe(client, server, delay=0.01, log=True)
    conn = client.connect(B, 80, 0.0)
    pipe.run(0.015)  # the SYN arrived at 0.01 and the SYN,ACK left: the server holds nothing
    assert not server.conns and lst.syn_pending == 0 and lst.pending == 0
    (synack,) = [p.seg for _, _, p in pipe.packets(1)]
    assert synack.flags == SYN | ACK
    pipe.run(0.05)
    assert conn.state is State.ESTABLISHED
    peer = lst.accept()
    assert peer is not None and peer.state is State.ESTABLISHED
    assert peer.iss == synack.seq and peer.irs == conn.iss  # the cookie is the ISS
    conn.send(b"hello", pipe.now)
    peer.send(b"world", pipe.now)
    pipe.run(pipe.now + 0.05)
    assert peer.receive(10, pipe.now) == b"hello" and conn.receive(10, pipe.now) == b"world"


def test_3_6_cookie_remembers_an_mss_no_larger_than_the_peers() -> None:
    """4987-3.6-COOKIE: the cookie encodes the peer's MSS with a few bits, one of a small set of
    values; the connection never sends segments larger than the MSS the peer announced. A
    client announcing 1400 (and timestamps: 12 octets of every segment)."""
    server = Host([B], name="B", config=Config.lab(), syn_cookies="always")
    lst = server.listen(80)
    client = Host([A], name="A", config=Config.lab(mss=1400))
    pipe: Pipe[Host, Host] = Pipe(client, server, delay=0.01, log=True)
    conn = client.connect(B, 80, 0.0)
    pipe.run(0.05)
    peer = lst.accept()
    assert peer is not None and conn.state is State.ESTABLISHED
    peer.send(bytes(20000), pipe.now)
    pipe.run(pipe.now + 1.0)
    sizes = [len(p.seg.payload) for _, _, p in pipe.packets(1) if p.seg.payload]
    assert sizes and max(sizes) <= 1400 - 12
    assert conn.receive(30000, pipe.now) == bytes(20000)


def test_3_6_cookie_an_ack_that_does_not_return_a_cookie_creates_nothing() -> None:
    """4987-3.6-COOKIE: only an ACK that returns a valid cookie makes a connection — a blind
    attacker's ACK with the wrong number gets a RST, and so does a valid cookie returned too
    late (cookies carry the time: they expire)."""
    server = Host([B], name="B", config=Config.lab(), syn_cookies="always")
    lst = server.listen(80)
    pipe, tap = tapped(server)
    tap.send(syn(40000, 1000), syn(40001, 5000))
    pipe.run(0.0)
    (_, c1), (_, c2) = answers(tap)
    assert c1.flags == c2.flags == SYN | ACK
    tap.send(build_packet(A, B, Segment(40000, 80, 1001, (c1.seq + 2) & MASK, ACK, 65535)))  # wrong
    pipe.run(300.0)
    tap.send(build_packet(A, B, Segment(40001, 80, 5001, (c2.seq + 1) & MASK, ACK, 65535)))  # stale
    pipe.run(300.0)
    assert [s.flags for _, s in answers(tap)] == [RST, RST]
    assert not server.conns and lst.pending == 0


# =============================================================================================
# §3.2 backlog, §3.3 SYN-RECEIVED timer
# =============================================================================================


def test_3_2_backlog_half_open_connections_are_bounded() -> None:
    """4987-3.2-BACKLOG: the listener keeps at most its backlog of half-open connections; a SYN
    beyond it is not given a TCB (here: dropped, cookies off)."""
    server = Host([B], name="B", config=Config.lab(), syn_cookies="never")
    lst = server.listen(80, syn_backlog=4)
    pipe, tap = tapped(server)
    tap.send(*(syn(41000 + k) for k in range(10)))
    pipe.run(0.0)
    assert len(server.conns) == 4 and lst.syn_pending == 4
    assert len(answers(tap)) == 4


def test_3_3_timer_a_half_open_connection_is_given_up_after_about_a_minute() -> None:
    """4987-3.3-TIMER: "Reducing SYN-RECEIVED Timer" — a half-open TCB is kept for less time than
    RFC 9293's 3 minutes for a SYN: the SYN,ACK is sent 1 + 5 times (Linux's
    tcp_synack_retries, 1 s RTO backed off) and the child is gone at 63 s."""
    server = Host([B], name="B", config=Config(), syn_cookies="never")
    lst = server.listen(80)
    pipe, tap = tapped(server)
    tap.send(syn(42000))
    pipe.run(62.9)
    times = [t for t, s in answers(tap) if s.flags == SYN | ACK]
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0]
    assert len(server.conns) == 1 and lst.syn_pending == 1
    pipe.run(63.0)
    assert not server.conns and lst.syn_pending == 0
    assert answers(tap) == []  # given up silently
