"""Level 1: findings of the RFC 9293 §3.10 review of the arrival and user-call code, one test per
finding, each showing the RFC's behaviour with exact segments at exact times."""

from __future__ import annotations

import pytest
from tcpkit import (
    FIN,
    PLAIN,
    RST,
    SYN,
    WND,
    L,
    R,
    conn_established,
    conn_listen,
    conn_syn_received,
    events,
    expect,
    feed,
    out,
    seg,
)

from synack.core.connection import Config, ConnectionAborted
from synack.core.host import Host
from synack.core.records import Event, State
from synack.core.wire import ACK, Mss, Segment, Timestamps, build_packet, parse_packet

A_ADDR, B_ADDR = "10.0.0.1", "10.0.0.2"

# ---------------------------------------------------------------------------------------------
# §3.10.5 ABORT: "All queued SENDs and RECEIVEs should be given 'connection reset' notification"
# ---------------------------------------------------------------------------------------------


def test_abort_discards_received_data_receive_reports_the_abort() -> None:
    """Data that arrived before ABORT is not delivered after it: the TCB is deleted (§3.10.5),
    so RECEIVE gets the error, not stale octets."""
    c = conn_established()
    feed(c, seg(R(1), L(1), payload=b"unread"), at=0.1)
    expect(c, at=0.1, segments=[out(L(1), R(7))])
    c.abort(0.2)
    expect(c, at=0.2, segments=[out(L(1), None, RST)])
    assert c.state is State.CLOSED
    assert c.readable == 0
    with pytest.raises(ConnectionAborted):
        c.receive(100, 0.3)


def test_abort_after_peer_fin_is_not_end_of_stream() -> None:
    """After the peer's FIN and an ABORT, RECEIVE reports the abort, not a clean end of stream."""
    c = conn_established()
    feed(c, seg(R(1), L(1), FIN, payload=b"x"), at=0.1)
    assert c.state is State.CLOSE_WAIT
    c.abort(0.2)
    with pytest.raises(ConnectionAborted):
        c.receive(100, 0.3)


# ---------------------------------------------------------------------------------------------
# §3.10.4 CLOSE in SYN-RECEIVED, then §3.10.7.4 fifth step: the SYN is ACKed in FIN-WAIT-1
# ---------------------------------------------------------------------------------------------


def test_close_in_syn_received_then_ack_of_syn_reports_connected() -> None:
    """The connection was established when its SYN was ACKed even though CLOSE had already moved
    it to FIN-WAIT-1: the user is told (CONNECTED), as on the plain SYN-RECEIVED path."""
    c = conn_syn_received()
    c.drain_events()
    c.close(0.1)
    assert c.state is State.FIN_WAIT_1
    expect(c, at=0.1, segments=[out(L(1), R(1), FIN)])
    feed(c, seg(R(1), L(1)), at=0.2)  # ACK of our SYN only
    assert c.state is State.FIN_WAIT_1
    assert Event.CONNECTED in events(c)
    feed(c, seg(R(1), L(2)), at=0.3)  # ACK of our FIN
    assert c.state is State.FIN_WAIT_2
    assert Event.CONNECTED not in events(c)  # once only


def test_close_in_syn_received_ack_of_syn_and_fin_together_reports_connected() -> None:
    c = conn_syn_received()
    c.drain_events()
    c.close(0.1)
    expect(c, at=0.1, segments=[out(L(1), R(1), FIN)])
    feed(c, seg(R(1), L(2), FIN), at=0.2)
    assert c.state is State.TIME_WAIT
    evs = events(c)
    assert Event.CONNECTED in evs and Event.PEER_CLOSED in evs
    expect(c, at=0.2, segments=[out(L(2), R(2))])


# ---------------------------------------------------------------------------------------------
# RCV.WND after LISTEN (§3.10.7.2): the right edge comes from the new IRS, and 0 is a real edge
# ---------------------------------------------------------------------------------------------


def test_listen_again_after_rst_window_is_from_the_new_irs() -> None:
    """A passive TCB that went back to LISTEN (§3.10.7.4 second step) and takes a new SYN
    offers exactly its buffer from the new RCV.NXT; the old connection's right edge must not
    survive (it made RCV.WND 100000 octets larger than the buffer here)."""
    c = conn_syn_received()
    feed(c, seg(R(1), flags=RST), at=0.1)
    assert c.state is State.LISTEN
    irs2 = R(-100_000)
    feed(c, seg(irs2, flags=SYN, options=(Mss(1460),)), at=0.2)
    assert c.state is State.SYN_RECEIVED
    expect(c, at=0.2, segments=[out(L(0), irs2 + 1, SYN, window=WND)])
    feed(c, seg(irs2 + 1, L(1)), at=0.3)
    assert c.state is State.ESTABLISHED
    assert c.rcv_wnd == WND
    # One octet just past the offered window (RCV.NXT+RCV.WND) is not acceptable: ACK, not held.
    feed(c, seg(irs2 + 1 + WND, L(1), payload=b"z"), at=0.4)
    expect(c, at=0.4, segments=[out(L(1), irs2 + 1)])
    assert c.snapshot()["out_of_order"] == 0


def test_right_window_edge_exactly_zero_after_wrap() -> None:
    """RCV.NXT+RCV.WND = 2**32 ≡ 0: the edge is a sequence number like any other (§3.3.1)."""
    c = conn_listen()
    irs = (0 - WND - 1) & 0xFFFFFFFF  # RCV.NXT = IRS+1, and RCV.NXT + 65535 wraps to exactly 0
    feed(c, seg(irs, flags=SYN), at=0.0)
    expect(c, at=0.0, segments=[out(L(0), irs + 1, SYN, window=WND)])
    feed(c, seg(irs + 1, L(1), payload=b"a" * 100), at=0.1)
    assert c.rcv_adv == 0 and c.rcv_wnd == WND - 100
    expect(c, at=0.1, segments=[out(L(1), irs + 101, window=WND - 100)])
    assert c.rcv_adv == 0  # the edge neither moved left nor was "re-initialised"
    feed(c, seg(0xFFFFFFFF, L(1), payload=b"b"), at=0.2)  # last octet in the window: held
    assert c.snapshot()["out_of_order"] == 1
    expect(c, at=0.2, segments=[out(L(1), irs + 101)])
    feed(c, seg(0, L(1), payload=b"c"), at=0.3)  # first octet past it: not acceptable
    assert c.snapshot()["out_of_order"] == 1
    expect(c, at=0.3, segments=[out(L(1), irs + 101)])


# ---------------------------------------------------------------------------------------------
# RFC 7323 §4.3 (2): TS.Recent <- SEG.TSval if SEG.TSval >= TS.Recent and SEG.SEQ =< Last.ACK.sent
# ---------------------------------------------------------------------------------------------


def test_ts_recent_is_updated_by_a_pure_ack_at_last_ack_sent() -> None:
    """RFC 7323 dropped RFC 1323's upper bound (Last.ACK.sent < SEG.SEQ+SEG.LEN), under which a
    pure ACK could never update TS.Recent; a pure ACK at Last.ACK.sent does update it."""
    cfg = PLAIN.with_(timestamps=True)
    c = conn_established(cfg, peer_options=(Mss(1460), Timestamps(100, 0)))
    assert c.ts_recent == 100
    feed(c, seg(R(1), L(1), options=(Timestamps(150, 0),)), at=0.1)
    assert c.ts_recent == 150
    # Beyond Last.ACK.sent (a segment after a hole) the TSval is ignored.
    feed(c, seg(R(11), L(1), payload=b"x", options=(Timestamps(200, 0),)), at=0.2)
    assert c.ts_recent == 150


# ---------------------------------------------------------------------------------------------
# Host (level 2, the test is the peer): a listener child that went back to LISTEN (§3.10.7.4
# second step) or a deleted TCB awaiting removal must not take the next segment of its 4-tuple
# ---------------------------------------------------------------------------------------------


def _host_out(host: Host, now: float) -> list[Segment]:
    return [parse_packet(p).seg for p in host.packets_to_send(now)]


def test_host_child_back_in_listen_does_not_swallow_the_next_syn() -> None:
    """A RST returns the child to LISTEN; the listener never left LISTEN (design.md). A new SYN
    for the same 4-tuple, read in the same batch (before the host's output is pulled), is the
    listener's: its child must reach the accept queue once the handshake completes."""
    host = Host([B_ADDR], name="B", config=Config.lab())
    lst = host.listen(80)
    host.receive(build_packet(A_ADDR, B_ADDR, Segment(5555, 80, 1000, None, SYN, 1000)), 0.0)
    (synack,) = _host_out(host, 0.0)
    assert synack.flags == SYN | ACK and synack.ack == 1001
    # One batch: the RST (at RCV.NXT) sends the child back to LISTEN, then a new SYN arrives.
    host.receive(build_packet(A_ADDR, B_ADDR, Segment(5555, 80, 1001, None, RST, 0)), 0.1)
    host.receive(build_packet(A_ADDR, B_ADDR, Segment(5555, 80, 90_000, None, SYN, 1000)), 0.1)
    (synack2,) = _host_out(host, 0.1)
    assert synack2.flags == SYN | ACK and synack2.ack == 90_001
    assert lst.syn_pending == 1
    host.receive(build_packet(A_ADDR, B_ADDR, Segment(5555, 80, 90_001, (synack2.seq + 1) & 0xFFFFFFFF,
                                                      ACK, 1000)), 0.2)
    assert _host_out(host, 0.2) == []
    assert lst.pending == 1 and lst.syn_pending == 0
    conn = lst.accept()
    assert conn is not None and conn.state is State.ESTABLISHED and conn.irs == 90_000


def test_host_aborted_connection_still_sends_its_rst_and_a_new_syn_reaches_the_listener() -> None:
    """An accepted connection ABORTed by the user (its RST not yet pulled) is deleted (§3.10.5):
    a SYN for the same 4-tuple arriving before the host's output is pulled goes to the listener
    (not answered by RST as if nobody listened), and the RST of the ABORT still goes out."""
    host = Host([B_ADDR], name="B", config=Config.lab())
    lst = host.listen(80)
    host.receive(build_packet(A_ADDR, B_ADDR, Segment(5555, 80, 1000, None, SYN, 1000)), 0.0)
    (synack,) = _host_out(host, 0.0)
    host.receive(build_packet(A_ADDR, B_ADDR, Segment(5555, 80, 1001, (synack.seq + 1) & 0xFFFFFFFF,
                                                      ACK, 1000)), 0.1)
    conn = lst.accept()
    assert conn is not None
    conn.abort(0.2)
    host.receive(build_packet(A_ADDR, B_ADDR, Segment(5555, 80, 90_000, None, SYN, 1000)), 0.2)
    got = [(s.flags, s.seq, s.ack) for s in _host_out(host, 0.2)]
    assert got[0] == (RST, (synack.seq + 1) & 0xFFFFFFFF, None)
    assert [(f, a) for f, _, a in got[1:]] == [(SYN | ACK, 90_001)]
    assert lst.syn_pending == 1
