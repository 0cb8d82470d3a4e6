"""Congestion control and the retransmission timer around the handshake and after losses, each
test written from the sentence of the RFC it cites (RFC 5681, RFC 6298, RFC 6582, RFC 3042).

Level 1: one connection, exact segments at exact virtual times (tcpkit)."""

from __future__ import annotations

import pytest
from tcpkit import (
    MSS,
    PLAIN,
    L,
    R,
    conn_established,
    conn_listen,
    expect,
    expect_nothing,
    feed,
    out,
    pull,
    seg,
)

from synack.core.connection import Connection
from synack.core.records import State
from synack.core.tcb import Config
from synack.core.wire import PSH, SYN, Mss

DATA = bytes(range(256)) * 64  # 16 KiB


def _active_with_lost_syn(config: Config = PLAIN) -> Connection:
    """Active OPEN at t=0; the SYN is lost, the retransmission timer (1 s) resends it at t=1, and
    the SYN,ACK answering it arrives at t=1.05: ESTABLISHED."""
    c = Connection(("10.0.0.1", 40000), ("10.0.0.2", 80), iss=L(0), config=config)
    c.open_active(0.0)
    expect(c, at=0.0, segments=[out(L(0), None, SYN)])
    expect_nothing(c, at=0.999)
    expect(c, at=1.0, segments=[out(L(0), None, SYN)])  # the SYN again: the first was lost
    feed(c, seg(R(0), L(1), SYN, options=[Mss(MSS)]), at=1.05)
    expect(c, at=1.05, segments=[out(L(1), R(1))])
    assert c.state is State.ESTABLISHED
    return c


def _send_and_count(c: Connection, at: float, n: int) -> int:
    """Queue ``n`` full segments at ``at``; how many leave at once."""
    c.send(DATA[:n * MSS], at)
    return len(pull(c, at))


# =============================================================================================
# RFC 5681 §3.1: "if the SYN or SYN/ACK is lost, the initial window used by a sender after a
# correctly transmitted SYN MUST be one segment consisting of at most SMSS bytes."
# =============================================================================================


def test_rfc5681_initial_window_without_loss_follows_equation_1() -> None:
    c = conn_established()
    assert _send_and_count(c, 1.0, 10) == 3  # SMSS 1460: IW = 3 segments


def test_rfc5681_lost_syn_gives_an_initial_window_of_one_segment() -> None:
    c = _active_with_lost_syn()
    c.send(DATA[:4 * MSS], 1.1)
    expect(c, at=1.1, segments=[out(L(1), R(1), 0, DATA[:MSS])])  # one segment, no more
    assert c.cc.cwnd == MSS


def test_rfc5681_lost_syn_ack_gives_the_passive_side_one_segment() -> None:
    c = conn_listen()
    feed(c, seg(R(0), None, SYN, options=[Mss(MSS)]), at=0.0)
    expect(c, at=0.0, segments=[out(L(0), R(1), SYN | 0)])
    expect(c, at=1.0, segments=[out(L(0), R(1), SYN)])  # our SYN,ACK timed out: sent again
    feed(c, seg(R(1), L(1)), at=1.05)
    assert c.state is State.ESTABLISHED
    assert _send_and_count(c, 1.1, 4) == 1


def test_rfc5681_lost_syn_leaves_ssthresh_high_so_slow_start_follows() -> None:
    """The SYN carries no data: its timeout is no congestion signal for the data that follows
    ("ssthresh MUST be reduced in response to congestion" — of data, equation 4 is about
    FlightSize). From one segment, each ACK of new data adds one SMSS (slow start)."""
    c = _active_with_lost_syn()
    assert c.cc.ssthresh > 64 * MSS
    c.send(DATA[:15 * MSS], 1.1)
    sent = len(pull(c, 1.1))
    una = L(1)
    t = 1.2
    for _ in range(3):
        una = (una + sent * MSS) & 0xFFFFFFFF
        for k in range(sent):  # one ACK per segment: slow start grows cwnd by one SMSS each
            feed(c, seg(R(1), (una - (sent - 1 - k) * MSS) & 0xFFFFFFFF), at=t)
        sent = len(pull(c, t))
        t += 0.1
    assert c.cc.cwnd == 8 * MSS  # 1 -> 2 -> 4 -> 8: doubling each round trip


# =============================================================================================
# RFC 6298 §5.7: "If the timer expires awaiting the ACK of a SYN segment and the TCP
# implementation is using an RTO less than 3 seconds, the RTO MUST be re-initialized to 3 seconds
# when data transmission begins (i.e., after the three-way handshake completes)."
# =============================================================================================


def test_rfc6298_5_7_rto_is_three_seconds_once_data_transmission_begins() -> None:
    c = _active_with_lost_syn()
    assert c.rtt.rto == 3.0
    c.send(b"x" * 100, 2.0)
    expect(c, at=2.0, segments=[out(L(1), R(1), PSH, b"x" * 100)])
    expect_nothing(c, at=4.999)
    expect(c, at=5.0, segments=[out(L(1), R(1), PSH, b"x" * 100)])  # 3 s later, not 1 or 2


def test_rfc6298_5_7_not_when_the_syn_was_answered_in_time() -> None:
    c = conn_established(at=0.0)
    c.send(b"x" * 100, 1.0)
    pull(c, 1.0)
    expect_nothing(c, at=1.999)
    expect(c, at=2.0, segments=[out(L(1), R(1), PSH, b"x" * 100)])  # RTO still the initial 1 s


def test_rfc6298_5_7_applies_to_the_passive_side_whose_syn_ack_timed_out() -> None:
    c = conn_listen()
    feed(c, seg(R(0), None, SYN, options=[Mss(MSS)]), at=0.0)
    pull(c, 0.0)
    pull(c, 1.0)  # the SYN,ACK timed out and was sent again
    feed(c, seg(R(1), L(1)), at=1.05)
    assert c.rtt.rto == 3.0


def test_rfc6298_5_7_only_below_three_seconds() -> None:
    """An implementation already using an initial RTO of at least 3 s keeps it."""
    c = _active_with_lost_syn(PLAIN.with_(rto_initial=1.0))
    assert c.rtt.rto == 3.0
    slow = Connection(("10.0.0.1", 40000), ("10.0.0.2", 80), iss=L(0), config=PLAIN.with_(rto_initial=3.5))
    slow.open_active(0.0)
    pull(slow, 0.0)
    pull(slow, 3.5)
    feed(slow, seg(R(0), L(1), SYN, options=[Mss(MSS)]), at=3.6)
    assert slow.state is State.ESTABLISHED and slow.rtt.rto == 7.0  # backed off, not re-initialised


# =============================================================================================
# RFC 6582 §3.2 (NewReno): "recover" — initialised to the ISS; after a retransmit timeout,
# "record the highest sequence number transmitted in the variable recover"; on the third
# duplicate ACK, enter fast retransmit only "if the Cumulative Acknowledgment field covers more
# than recover".
# =============================================================================================


def _in_flight(n: int) -> Connection:
    """ESTABLISHED with cwnd opened to ``n`` segments and ``n`` full segments in flight at 1.0."""
    c = conn_established()
    c.cc.cwnd = n * MSS
    c.send(DATA[:n * MSS], 1.0)
    assert len(pull(c, 1.0)) == n
    return c


def test_rfc6582_recover_starts_at_the_iss() -> None:
    c = conn_established()
    assert c.snapshot()["recovery"]["recover"] == L(0)


def test_rfc6582_no_fast_retransmit_for_duplicates_of_data_sent_before_a_timeout() -> None:
    c = _in_flight(6)
    # Nothing is acknowledged: at 2.0 the timer resends the first segment (recover = the highest
    # sequence number sent, L(6 MSS)); the ACK of it moves SND.UNA one segment, then three
    # duplicates follow — copies of segments sent before the timeout, which must not trigger a
    # fast retransmit.
    expect(c, at=2.0, segments=[out(L(1), R(1), 0, DATA[:MSS])])
    assert c.snapshot()["recovery"]["recover"] == L(6 * MSS)
    feed(c, seg(R(1), L(1 + MSS)), at=2.1)
    pull(c, 2.1)  # slow start from one segment resends the next two
    for k in range(3):
        feed(c, seg(R(1), L(1 + MSS)), at=2.2 + k * 0.01)
        expect_nothing(c, at=2.2 + k * 0.01)
    assert not c.snapshot()["recovery"]["recovering"]


def test_rfc6582_no_fast_retransmit_in_the_first_window() -> None:
    # recover = ISS; three duplicates of L(1) (ack_number - 1 = ISS) do not cover more than it.
    c = _in_flight(4)
    for k in range(3):
        feed(c, seg(R(1), L(1)), at=1.1 + k * 0.01)
    got = pull(c, 1.12)
    assert not any(s.seq == L(1) for s in got)
    assert not c.snapshot()["recovery"]["recovering"]
    expect(c, at=2.0, segments=[out(L(1), R(1), 0, DATA[:MSS])])  # the timer repairs it


def test_rfc6582_fast_retransmit_once_the_ack_covers_more_than_recover() -> None:
    c = _in_flight(5)
    feed(c, seg(R(1), L(1 + MSS)), at=1.05)  # one segment acknowledged: past recover = ISS
    pull(c, 1.05)
    for k in range(3):
        feed(c, seg(R(1), L(1 + MSS)), at=1.1 + k * 0.01)
    got = pull(c, 1.12)
    assert got and got[0].seq == L(1 + MSS) and len(got[0].payload) == MSS
    assert c.snapshot()["recovery"]["recovering"]


# =============================================================================================
# RFC 3042 §2 (Limited Transmit): on the first and second duplicate ACK, "a TCP sender SHOULD
# send a segment of previously unsent data" if the receiver's window allows it and "the amount
# of outstanding data would remain less than or equal to the congestion window plus 2 segments";
# "the congestion window (cwnd) MUST NOT be changed".
# =============================================================================================


def test_rfc3042_one_new_segment_for_each_of_the_first_two_duplicate_acks() -> None:
    c = conn_established()  # IW 3 segments
    c.send(DATA[:8 * MSS], 1.0)
    assert len(pull(c, 1.0)) == 3
    cwnd = c.cc.cwnd
    feed(c, seg(R(1), L(1)), at=1.1)
    expect(c, at=1.1, segments=[out(L(1 + 3 * MSS), R(1), 0, DATA[3 * MSS:4 * MSS])])
    feed(c, seg(R(1), L(1)), at=1.11)
    expect(c, at=1.11, segments=[out(L(1 + 4 * MSS), R(1), 0, DATA[4 * MSS:5 * MSS])])
    assert c.cc.cwnd == cwnd  # unchanged
    feed(c, seg(R(1), L(1)), at=1.12)  # the third: the first window, ack - 1 = ISS = recover
    assert not any(s.seq == L(1) for s in pull(c, 1.12))  # no fast retransmit (RFC 6582 §3.2)


def test_rfc3042_then_fast_retransmit_on_the_third_duplicate() -> None:
    c = conn_established()
    c.send(DATA[:9 * MSS], 1.0)
    assert len(pull(c, 1.0)) == 3
    feed(c, seg(R(1), L(1 + MSS)), at=1.05)  # slow start: cwnd 4, two more segments
    assert len(pull(c, 1.05)) == 2
    for k in range(2):
        feed(c, seg(R(1), L(1 + MSS)), at=1.1 + k * 0.01)
        assert [s.seq for s in pull(c, 1.1 + k * 0.01)] == [L(1 + (5 + k) * MSS)]  # limited transmit
    feed(c, seg(R(1), L(1 + MSS)), at=1.12)
    got = pull(c, 1.12)
    assert got and got[0].seq == L(1 + MSS)
    # FlightSize without the two limited-transmit segments: 4 segments, ssthresh 2 (RFC 5681 §3.2)
    assert c.cc.ssthresh == 2 * MSS


def test_rfc3042_respects_the_receivers_window() -> None:
    c = conn_established()
    c.send(DATA[:8 * MSS], 1.0)
    assert len(pull(c, 1.0)) == 3
    feed(c, seg(R(1), L(1), window=3 * MSS), at=1.1)  # a window update: not a duplicate
    feed(c, seg(R(1), L(1), window=3 * MSS), at=1.11)  # duplicate, but the window is full
    expect_nothing(c, at=1.11)


# =============================================================================================
# RFC 5681 §4.1: "TCP SHOULD set cwnd to no more than RW before beginning transmission if the
# TCP has not sent data in an interval exceeding the retransmission timeout" (RW = min(IW, cwnd)).
# =============================================================================================


def _grown(c: Connection, rounds: int, t: float) -> float:
    """Send a window and acknowledge it ``rounds`` times (slow start); returns the time."""
    una = L(1)
    for _ in range(rounds):
        c.send(DATA[:c.cc.cwnd], t)
        sent = pull(c, t)
        una = (una + sum(len(s.payload) for s in sent)) & 0xFFFFFFFF
        t += 0.1
        feed(c, seg(R(1), una), at=t)
        pull(c, t)
    return t


def test_rfc5681_after_an_idle_period_longer_than_the_rto_cwnd_restarts_at_the_initial_window() -> None:
    c = conn_established()
    t = _grown(c, 3, 1.0)
    assert c.cc.cwnd > 3 * MSS
    c.send(DATA[:10 * MSS], t + 5.0)  # 5 s of silence, RTO 1 s
    assert len(pull(c, t + 5.0)) == 3  # IW for SMSS 1460


def test_rfc5681_no_restart_when_the_pause_is_shorter_than_the_rto() -> None:
    c = conn_established()
    t = _grown(c, 3, 1.0)
    cwnd = c.cc.cwnd
    c.send(DATA[:10 * MSS], t + 0.5)
    assert len(pull(c, t + 0.5)) == min(10, cwnd // MSS)


# =============================================================================================
# Config.initial_window: a fixed initial window in segments (RFC 6928's and Linux's 10), for
# scripts and comparisons that assume it; RFC 5681's equation (1) otherwise; one segment after
# a lost SYN whatever it says (RFC 5681 §3.1).
# =============================================================================================


def test_initial_window_of_ten_segments_when_configured() -> None:
    c = conn_established(PLAIN.with_(initial_window=10))
    c.send(DATA[:20 * MSS], 1.0)
    assert len(pull(c, 1.0)) == 10
    assert c.cc.cwnd == 10 * MSS


def test_initial_window_default_is_rfc_5681_equation_1() -> None:
    c = conn_established(PLAIN)
    c.send(DATA[:20 * MSS], 1.0)
    assert len(pull(c, 1.0)) == 3  # SMSS 1460: 3 segments


def test_initial_window_after_idle_restart_is_the_configured_one() -> None:
    c = conn_established(PLAIN.with_(initial_window=10))
    t = _grown(c, 2, 1.0)  # two rounds of slow start, one cumulative ACK each
    assert c.cc.cwnd == 12 * MSS
    c.send(DATA[:30 * MSS], t + 5.0)  # RFC 5681 §4.1: RW = min(IW, cwnd)
    assert len(pull(c, t + 5.0)) == 10


@pytest.mark.parametrize("bad", [0, -1, 1001])
def test_initial_window_out_of_range_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="initial_window"):
        PLAIN.with_(initial_window=bad)
