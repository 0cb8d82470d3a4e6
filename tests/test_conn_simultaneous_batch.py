"""Simultaneous open when the peer's SYN and its SYN,ACK are read in one batch (found live
against Linux, tests/test_live_tools.py): no output is pulled between them, so our SYN,ACK of
Figure 7 line 5 never leaves; the ACK of the peer's SYN must still go out at once."""

from __future__ import annotations

from tcpkit import ACK, SYN, L, R, conn_syn_sent, expect, expect_nothing, feed, out, pull, seg

from synack.core.records import State


def test_syn_then_syn_ack_in_one_batch_acknowledges_the_peers_syn() -> None:
    c = conn_syn_sent()
    feed(c, seg(R(0), flags=SYN), at=0.1)  # their SYN crosses ours: SYN-RECEIVED
    assert c.state is State.SYN_RECEIVED
    feed(c, seg(R(0), L(1), SYN | ACK), at=0.1)  # their SYN,ACK, before anything was pulled
    assert c.state is State.ESTABLISHED
    expect(c, at=0.1, segments=[out(L(1), R(1), ACK)])  # the peer's SYN is acknowledged
    expect_nothing(c, at=0.2)


def test_syn_ack_after_our_syn_ack_left_draws_nothing_more() -> None:
    """RFC 9293 Figure 7 as drawn: our SYN,ACK already acknowledged their SYN (line 5)."""
    c = conn_syn_sent()
    feed(c, seg(R(0), flags=SYN), at=0.1)
    assert [s.flags for s in pull(c, 0.1)] == [SYN | ACK]
    feed(c, seg(R(0), L(1), SYN | ACK), at=0.2)
    assert c.state is State.ESTABLISHED
    expect_nothing(c, at=0.2)
