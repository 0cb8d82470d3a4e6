"""ICMP and ICMPv6 errors about our segments (RFC 9293 §3.9.2.2: MUST-54, MUST-55, MUST-56,
SHLD-25, SHLD-26), validated as RFC 5927 §4.1 asks, with path MTU discovery (RFC 1191, RFC 8201):
the parser, one connection, a host, and the simulator generating them."""

from __future__ import annotations

import errno

import pytest
from tcpkit import MSS, PLAIN, L, R, conn_established, conn_syn_sent, expect, feed, make_conn, out, pull, seg

from synack.core.connection import Config, Connection
from synack.core.host import Host
from synack.core.records import Event, State, Unreachable
from synack.core.wire import (
    ACK,
    SYN,
    IcmpError,
    Segment,
    WireError,
    build_icmp_error,
    build_packet,
    is_icmp,
    parse_icmp_error,
)
from synack.sim import Network

A, B, ROUTER = "10.0.0.1", "10.0.0.2", "10.0.0.254"


def _err(seq: int, icmp_type: int, code: int, *, version: int = 4, mtu: int = 0) -> IcmpError:
    """An ICMP error about our segment with sequence number ``seq`` (tcpkit's 4-tuple)."""
    if version == 4:
        return IcmpError(4, ROUTER, icmp_type, code, "10.0.0.1", "10.0.0.2", 40000, 80, seq, mtu)
    return IcmpError(6, "fd00::fe", icmp_type, code, "fd00::1", "fd00::2", 40000, 80, seq, mtu)


# =============================================================================================
# The messages
# =============================================================================================


@pytest.mark.parametrize("version,src,dst,sender", [(4, A, "10.9.9.9", ROUTER),
                                                    (6, "fd00::1", "fd00::9", "fd00::fe")])
def test_build_and_parse_an_error_quoting_a_segment(version: int, src: str, dst: str, sender: str) -> None:
    pkt = build_packet(src, dst, Segment(40000, 80, 0xDEADBEEF, None, SYN, 65535))
    icmp = build_icmp_error(sender, pkt, 3 if version == 4 else 1, 3)
    assert is_icmp(icmp) and not is_icmp(pkt)
    err = parse_icmp_error(icmp)
    assert (err.version, err.sender, err.src, err.dst, err.sport, err.dport, err.seq) == (
        version, sender, src, dst, 40000, 80, 0xDEADBEEF)


def test_packet_too_big_carries_the_mtu() -> None:
    pkt4 = build_packet(A, B, Segment(40000, 80, 1, 1, ACK, 100, (), b"x" * 1400))
    assert parse_icmp_error(build_icmp_error(ROUTER, pkt4, 3, 4, mtu=1280)).mtu == 1280
    pkt6 = build_packet("fd00::1", "fd00::2", Segment(40000, 80, 1, 1, ACK, 100, (), b"x" * 1400))
    assert parse_icmp_error(build_icmp_error("fd00::fe", pkt6, 2, 0, mtu=1300)).mtu == 1300


def test_what_is_not_an_error_about_tcp_is_refused_with_a_clear_error() -> None:
    pkt = build_packet(A, B, Segment(40000, 80, 1, None, SYN, 65535))
    good = build_icmp_error(ROUTER, pkt, 3, 1)
    echo = good[:20] + bytes([8]) + good[21:]  # an echo request: not an error message
    with pytest.raises(WireError, match="not an error"):
        parse_icmp_error(echo, verify=False)
    with pytest.raises(WireError, match="checksum"):
        parse_icmp_error(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(WireError):
        parse_icmp_error(good[:40])  # truncated before the quoted header and 8 octets


# =============================================================================================
# One connection
# =============================================================================================


@pytest.mark.parametrize("icmp_type,code,version,want", [
    (3, 1, 4, errno.EHOSTUNREACH),  # host unreachable: soft, but it fails an opening connection
    (3, 0, 4, errno.ENETUNREACH),
    (3, 3, 4, errno.ECONNREFUSED),  # port unreachable: hard
    (3, 13, 4, errno.EHOSTUNREACH),  # administratively prohibited
    (11, 0, 4, errno.EHOSTUNREACH),  # time exceeded
    (1, 4, 6, errno.ECONNREFUSED),
    (1, 3, 6, errno.EHOSTUNREACH),
    (1, 1, 6, errno.EACCES),
])
def test_in_syn_sent_an_unreachable_destination_fails_the_connect_at_once(icmp_type: int, code: int,
                                                                           version: int, want: int) -> None:
    """RFC 9293 §3.9.2.2 notes (after RFC 5461 §4) that implementations treat soft errors as hard
    while the connection is being established; Linux fails connect() with these errno values."""
    c = conn_syn_sent()
    assert c.handle_icmp(_err(L(0), icmp_type, code, version=version), 0.5)
    assert c.state is State.CLOSED and Event.UNREACHABLE in c.events
    assert isinstance(c.error, Unreachable) and c.error.errno == want
    with pytest.raises(Unreachable):
        c.send(b"x", 0.6)


def test_soft_errors_do_not_abort_a_synchronized_connection_but_are_reported() -> None:
    """MUST-56: a soft error MUST NOT abort the connection; SHLD-25: it is made available."""
    c = conn_established()
    c.send(b"data", 1.0)
    pull(c, 1.0)
    assert c.handle_icmp(_err(L(1), 3, 1), 1.1)
    assert c.state is State.ESTABLISHED
    assert isinstance(c.soft_error, Unreachable) and c.soft_error.errno == errno.EHOSTUNREACH
    assert Event.SOFT_ERROR in c.events
    feed(c, seg(R(1), L(5)), at=1.2)  # the data arrives anyway
    assert c.state is State.ESTABLISHED


def test_a_connection_that_times_out_after_a_soft_error_reports_that_error() -> None:
    """Linux's tcp_write_err: the error is the soft error (EHOSTUNREACH), not ETIMEDOUT."""
    c = conn_established(PLAIN.with_(r2=10.0))
    c.send(b"data", 1.0)
    pull(c, 1.0)
    c.handle_icmp(_err(L(1), 3, 1), 1.1)
    t = 1.1
    while t < 100:
        pull(c, t)
        if c.state is State.CLOSED:
            break
        d = c.next_deadline()
        assert d is not None
        t = d
    assert isinstance(c.error, Unreachable) and c.error.errno == errno.EHOSTUNREACH


def test_hard_errors_in_a_synchronized_state_are_reported_not_acted_on() -> None:
    """SHLD-26 (abort on a hard error) is not followed once synchronized: RFC 5927 §4 shows
    that a forged ICMP error would be a blind connection reset, and Linux does not abort either
    (docs/conformance.md lists the deviation)."""
    c = conn_established()
    c.send(b"data", 1.0)
    pull(c, 1.0)
    assert c.handle_icmp(_err(L(1), 3, 3), 1.1)
    assert c.state is State.ESTABLISHED and c.soft_error is not None


def test_source_quench_is_silently_discarded() -> None:
    """MUST-55."""
    c = conn_syn_sent()
    assert not c.handle_icmp(_err(L(0), 4, 0), 0.5)
    assert c.state is State.SYN_SENT and c.soft_error is None and Event.SOFT_ERROR not in c.events


@pytest.mark.parametrize("seq", [L(-1), L(2), L(100_000)])
def test_an_error_about_a_sequence_number_we_did_not_send_is_ignored(seq: int) -> None:
    """RFC 5927 §4.1: only SND.UNA =< SEQ =< SND.NXT is believed (a blind attacker must guess it)."""
    c = conn_syn_sent()
    assert not c.handle_icmp(_err(seq, 3, 3), 0.5)
    assert c.state is State.SYN_SENT


def test_packet_too_big_lowers_the_mss_and_sends_the_outstanding_data_again() -> None:
    """RFC 1191 §6.3 / RFC 8201: the sender lowers its segment size to the reported MTU and
    sends what the path could not carry again."""
    c = conn_established()
    c.cc.cwnd = 10 * MSS
    c.send(b"y" * 2 * MSS, 1.0)
    assert len(pull(c, 1.0)) == 2
    assert c.handle_icmp(_err(L(1), 3, 4, mtu=1000), 1.05)
    assert c.snd_mss == 960
    sizes = [len(s.payload) for s in pull(c, 1.05)]
    assert sizes == [960, 960, 960, 2 * MSS - 3 * 960]


def test_an_implausible_mtu_is_not_believed() -> None:
    c = conn_established()
    c.send(b"y" * MSS, 1.0)
    pull(c, 1.0)
    c.handle_icmp(_err(L(1), 3, 4, mtu=40), 1.05)  # below IPv4's minimum of 68
    assert c.snd_mss == MSS


def test_a_hard_error_ends_a_passive_syn_received_a_soft_one_does_not() -> None:
    for code, gone in ((1, False), (3, True)):
        c = make_conn(PLAIN)
        c.open_passive(0.0)
        feed(c, seg(R(0), None, SYN), at=0.0)
        expect(c, at=0.0, segments=[out(L(0), R(1), SYN)])
        c.handle_icmp(_err(L(0), 3, code), 0.1)
        assert (c.state is State.CLOSED) is gone


# =============================================================================================
# A host, and the simulator
# =============================================================================================


def test_the_host_hands_an_icmp_error_to_the_connection_that_sent_the_segment() -> None:
    host = Host([A], name="A", config=Config.lab())
    conn = host.connect(B, 80, 0.0)
    (syn,) = host.packets_to_send(0.0)
    host.receive(build_icmp_error(ROUTER, syn, 3, 1), 0.1)
    assert conn.state is State.CLOSED and isinstance(conn.error, Unreachable)
    stray = build_packet(B, "10.0.0.77", Segment(80, 9, 1, None, SYN, 100))  # about nothing of ours
    host.receive(build_icmp_error(ROUTER, stray, 3, 1), 0.2)
    host.receive(b"\x45" + bytes(19), 0.3)  # garbage that says ICMP nowhere: malformed
    stats = host.stats()
    assert stats["icmp_in"] == 2 and stats["icmp_acted"] == 1 and stats["icmp_no_connection"] == 1


def test_simulator_firewall_rejects_with_port_unreachable_and_connect_fails_fast() -> None:
    net = Network(seed=1)
    a = net.add_host("A", A, config=Config.lab())
    net.add_host("B", B, config=Config.lab())
    net.link("A", "B", delay=0.01)
    net.reject("B", port=80)
    conn: Connection = a.connect(B, 80, 0.0)
    net.run_until(lambda: conn.state is State.CLOSED, limit=5.0)
    assert conn.state is State.CLOSED and net.now < 0.05  # one round trip, not the SYN timeout
    assert isinstance(conn.error, Unreachable) and conn.error.errno == errno.ECONNREFUSED


def test_simulator_router_reports_a_host_that_is_down_when_asked_to() -> None:
    for icmp, closed_fast in ((True, True), (False, False)):
        net = Network(seed=2, icmp=icmp)
        a = net.add_host("A", A, config=Config.lab())
        net.add_host("B", B, config=Config.lab())
        net.link("A", "B", delay=0.01)
        net.crash("B")
        conn = a.connect(B, 80, 0.0)
        net.run(until=0.5)
        assert (conn.state is State.CLOSED) is closed_fast
        if closed_fast:
            assert isinstance(conn.error, Unreachable) and conn.error.errno == errno.EHOSTUNREACH
