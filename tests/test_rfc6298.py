"""RFC 6298 (computing TCP's retransmission timer), each test written from the numbered rule of the
RFC it quotes. ``docs/conformance.md`` lists every rule with its id (``6298-…``), status and
tests; the estimator's arithmetic alone is tested in ``test_helpers_pure.py``.

Level 1 (tcpkit): one connection, exact segments at exact virtual times. The round-trip times are
chosen so that every SRTT, RTTVAR and RTO of the rules is exact in binary floating point."""

from __future__ import annotations

import pytest
from tcpkit import (
    MSS,
    PLAIN,
    PSH,
    L,
    R,
    expect,
    expect_nothing,
    feed,
    make_conn,
    out,
    pull,
    seg,
    timeline,
)

from synack.core.connection import Connection
from synack.core.records import State
from synack.core.wire import SYN, Mss

DATA = bytes(range(251)) * 400


def _established_after(rtt: float) -> Connection:
    """Active OPEN at 0; the SYN,ACK arrives ``rtt`` later: the handshake's RTT sample is ``rtt``."""
    c = make_conn(PLAIN.with_(nodelay=True))
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, options=[Mss(MSS)]), at=rtt)
    assert c.state is State.ESTABLISHED
    pull(c, rtt)
    return c


def test_2_1_one_second_before_any_measurement_and_backoff_still_applies() -> None:
    """6298-2.1: "Until a round-trip time (RTT) measurement has been made for a segment sent
    between the sender and receiver, the sender SHOULD set RTO <- 1 second, though the "backing
    off" on repeated retransmission discussed in (5.5) still applies." A SYN that is never
    answered: again after 1 s, then after 2, 4, 8 s."""
    c = make_conn(PLAIN)
    c.open_active(0.0)
    pull(c, 0.0)
    assert [t for t, s in timeline(c, until=31.0) if s.flags == SYN] == [1.0, 3.0, 7.0, 15.0, 31.0]


def test_2_2_the_first_measurement_sets_srtt_rttvar_and_rto() -> None:
    """6298-2.2: "When the first RTT measurement R is made, the host MUST set SRTT <- R, RTTVAR
    <- R/2, RTO <- SRTT + max (G, K*RTTVAR) where K = 4." R = 0.5 s (the handshake): RTO =
    0.5 + 4 × 0.25 = 1.5 s, so data sent at 1.0 is sent again at exactly 2.5."""
    c = _established_after(0.5)
    assert (c.rtt.srtt, c.rtt.rttvar, c.rtt.rto) == (0.5, 0.25, 1.5)
    c.send(b"a", 1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1), PSH, b"a")])
    expect_nothing(c, at=2.499)
    expect(c, at=2.5, segments=[out(L(1), R(1), PSH, b"a")])


def test_2_3_a_later_measurement_updates_rttvar_with_the_old_srtt_then_srtt() -> None:
    """6298-2.3: "RTTVAR <- (1 - beta) * RTTVAR + beta * |SRTT - R'|", then "SRTT <- (1 - alpha)
    * SRTT + alpha * R'", "computed in the above order", alpha = 1/8, beta = 1/4, then RTO as in
    (2.2). R = 0.5 then R' = 1.0: RTTVAR = 0.1875 + 0.125, SRTT = 0.4375 + 0.125, RTO = 1.8125."""
    c = _established_after(0.5)
    c.send(b"a", 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(2)), at=2.0)  # R' = 1.0
    assert (c.rtt.rttvar, c.rtt.srtt) == (0.3125, 0.5625)
    c.send(b"b", 2.0)
    pull(c, 2.0)
    expect_nothing(c, at=3.8124)
    expect(c, at=3.8125, segments=[out(L(2), R(1), PSH, b"b")])


def test_2_4_an_rto_below_one_second_is_rounded_up() -> None:
    """6298-2.4: "Whenever RTO is computed, if it is less than 1 second, then the RTO SHOULD be
    rounded up to 1 second." R = 1/64 s would give an RTO of 3/64 s."""
    c = _established_after(1 / 64)
    assert c.rtt.rto == 1.0
    c.send(b"a", 1.0)
    pull(c, 1.0)
    expect_nothing(c, at=1.999)
    expect(c, at=2.0, segments=[out(L(1), R(1), PSH, b"a")])


def test_3_perrtt_at_least_one_measurement_per_round_trip() -> None:
    """6298-3-PERRTT: "A TCP implementation MUST take at least one RTT measurement per RTT
    (unless that is not possible per Karn's algorithm)." A bulk sender whose round trip changes
    every round: SRTT moves every round, towards that round's RTT."""
    c = _established_after(0.5)
    c.cc.cwnd = 4 * MSS
    assert c.send(DATA[:40 * MSS], 1.0) == 40 * MSS
    t, una = 1.0, L(1)
    for rtt in (0.25, 0.75, 0.125, 1.0, 0.5):
        window = pull(c, t)
        assert window, "nothing to time"
        before = c.rtt.srtt
        assert before is not None
        t += rtt
        end = window[-1]
        una = (end.seq + len(end.payload)) & 0xFFFFFFFF
        feed(c, seg(R(1), una), at=t)  # one ACK for the round
        assert c.rtt.srtt is not None and c.rtt.srtt != before
        assert (c.rtt.srtt - before) * (rtt - before) > 0  # moved towards this round's RTT


def test_5_early_a_segment_is_never_retransmitted_less_than_one_rto_after_it_was_sent() -> None:
    """6298-5-EARLY: "An implementation MUST manage the retransmission timer(s) in such a way that
    a segment is never retransmitted too early, i.e., less than one RTO after the previous
    transmission of that segment." Two segments, the second sent 0.5 s after the first; the ACK
    of the first restarts the timer (5.3), and the second goes again one RTO after that ACK,
    which is more than one RTO after it was sent."""
    c = _established_after(0.5)  # RTO 1.5
    c.send(b"a", 1.0)
    pull(c, 1.0)
    c.send(b"b", 1.5)
    pull(c, 1.5)
    feed(c, seg(R(1), L(2)), at=1.6)  # ACK of "a": a sample of 0.6 s
    rto = c.rtt.rto
    assert c.next_deadline() == pytest.approx(1.6 + rto)
    expect_nothing(c, at=1.5 + rto)
    (again,) = pull(c, 1.6 + rto)
    assert again.payload == b"b"


def test_5_1_sending_data_starts_the_timer_when_it_is_not_running() -> None:
    """6298-5.1: "Every time a packet containing data is sent (including a retransmission), if
    the timer is not running, start it running so that it will expire after RTO seconds" — and
    a second segment while it runs does not restart it."""
    c = _established_after(0.5)
    assert c.next_deadline() is None
    c.send(b"a", 1.0)
    pull(c, 1.0)
    assert c.next_deadline() == 2.5
    c.send(b"b", 1.25)
    pull(c, 1.25)
    assert c.next_deadline() == 2.5


def test_5_2_the_timer_stops_when_everything_is_acknowledged() -> None:
    """6298-5.2: "When all outstanding data has been acknowledged, turn off the retransmission
    timer.\""""
    c = _established_after(0.5)
    c.send(b"ab", 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(3)), at=1.5)
    assert c.next_deadline() is None
    expect_nothing(c, at=100.0)


def test_5_3_an_ack_of_new_data_restarts_the_timer() -> None:
    """6298-5.3: "When an ACK is received that acknowledges new data, restart the retransmission
    timer so that it will expire after RTO seconds (for the current value of RTO)."""
    c = _established_after(0.5)
    c.cc.cwnd = 4 * MSS
    c.send(DATA[:3 * MSS], 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(1 + MSS)), at=2.0)  # sample 1.0: the current RTO is 1.8125
    assert c.next_deadline() == 2.0 + c.rtt.rto == 3.8125


def test_5_4_the_earliest_unacknowledged_segment_is_retransmitted() -> None:
    """6298-5.4: "Retransmit the earliest segment that has not been acknowledged by the TCP
    receiver." Three segments, the first acknowledged: the timer resends the second, alone."""
    c = _established_after(0.5)
    c.cc.cwnd = 4 * MSS
    c.send(DATA[:3 * MSS], 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(1 + MSS)), at=1.5)  # sample 0.5: RTO stays 1.5
    expect(c, at=3.0, segments=[out(L(1 + MSS), R(1), 0, DATA[MSS:2 * MSS])])


def test_5_5_and_5_6_the_timer_backs_off_and_restarts_with_the_doubled_rto() -> None:
    """6298-5.5: "The host MUST set RTO <- RTO * 2 ("back off the timer")" and 5.6: "Start the
    retransmission timer, such that it expires after RTO seconds (for the value of RTO after
    the doubling operation outlined in 5.5)." RTO 1.5: 1.5, 3, 6, 12 s apart."""
    c = _established_after(0.5)
    c.send(b"a", 1.0)
    pull(c, 1.0)
    times = [t for t, _ in timeline(c, until=25.0)]
    assert times == [2.5, 5.5, 11.5, 23.5]
    assert c.rtt.rto == 24.0


def test_5_collapse_a_new_measurement_after_backoff_brings_the_rto_back_down() -> None:
    """6298-5-COLLAPSE: "once a new RTT measurement is obtained (which can only happen when new
    data has been sent and acknowledged), the computations outlined in Section 2 are performed
    ... which may result in "collapsing" RTO back down after it has been subject to exponential
    back off". The ACK of the retransmitted "a" gives no sample (Karn); that of "b" does."""
    c = _established_after(0.5)
    c.send(b"a", 1.0)
    pull(c, 1.0)
    expect(c, at=2.5, segments=[out(L(1), R(1), PSH, b"a")])
    assert c.rtt.rto == 3.0
    feed(c, seg(R(1), L(2)), at=2.75)
    assert c.rtt.rto == 3.0  # Karn: no sample from a retransmitted segment
    c.send(b"b", 3.0)
    pull(c, 3.0)
    feed(c, seg(R(1), L(3)), at=3.5)  # R = 0.5, sent once
    assert c.rtt.rto < 3.0
