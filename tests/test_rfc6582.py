"""RFC 6582 (the NewReno modification to TCP's fast recovery), each test written from the step of
§3.2 it quotes. ``docs/conformance.md`` lists the steps with their ids (``6582-…``), status and
tests. NewReno is what synack uses when SACK is not negotiated (the tcpkit default here).

RFC 6582 compares with the variable "recover" in the RFC's own terms: the Cumulative
Acknowledgment field covers more than recover when "ack_number - 1 > recover" (§3.2), where
recover is "the highest sequence number transmitted" (an octet, inclusive) or, at first, the ISS.

Level 1 (tcpkit): one connection, exact segments at exact virtual times."""

from __future__ import annotations

from tcpkit import (
    MSS,
    L,
    R,
    conn_established,
    expect,
    expect_nothing,
    feed,
    out,
    pull,
    seg,
)

from synack.core.connection import Connection
from synack.core.wire import seq_diff

DATA = bytes(range(251)) * 400


def S(i: int) -> int:
    """The first sequence number of our i-th full-sized data segment (S(0) = L(1))."""
    return L(1 + i * MSS)


def d(i: int) -> bytes:
    return DATA[i * MSS:(i + 1) * MSS]


def recovering(c: Connection) -> bool:
    return bool(c.snapshot()["recovery"]["recovering"])


def sent(n: int) -> Connection:
    """ESTABLISHED, the window opened to ``n`` segments, exactly ``n`` segments sent at 1.0 (no
    unsent data, so no limited transmit)."""
    c = conn_established()
    c.cc.cwnd = n * MSS
    c.send(DATA[:n * MSS], 1.0)
    assert len(pull(c, 1.0)) == n
    return c


def dupacks(c: Connection, ack: int, at: float, count: int = 3) -> None:
    for k in range(count):
        feed(c, seg(R(1), ack), at=at + k * 0.001)


def in_fast_recovery(n: int = 10) -> Connection:
    """``n`` + 1 segments sent; S(0) acknowledged at 1.05 (so the ACK covers more than recover =
    ISS); three duplicate ACKs of S(1) at 1.1: the fast retransmission of S(1) has left."""
    c = sent(n + 1)
    feed(c, seg(R(1), S(1)), at=1.05)
    dupacks(c, S(1), 1.1)
    expect(c, at=1.102, segments=[out(S(1), R(1), 0, d(1))])
    assert recovering(c)
    return c


# =============================================================================================
# §3.2 step 1 and step 2: recover, and entering fast retransmit only past it
# =============================================================================================


def test_3_2_step_2_not_in_the_first_window_before_any_data_is_acknowledged() -> None:
    """6582-3.2-2: "When the third duplicate ACK is received, the TCP sender first checks the
    value of recover to see if the Cumulative Acknowledgment field covers more than recover.
    ... If not, the TCP does not enter fast retransmit and does not reset ssthresh", with step 1
    "recover is set to the initial send sequence number" and "covers more than recover when
    ack_number - 1 > recover". The first window, nothing acknowledged but the SYN: three
    duplicates of ISS+1 do not cover more than ISS."""
    c = sent(4)
    ssthresh = c.cc.ssthresh
    dupacks(c, L(1), 1.1)  # ack_number - 1 = ISS = recover
    expect_nothing(c, at=1.102)
    assert c.cc.ssthresh == ssthresh and not recovering(c)


def test_3_2_step_2_past_recover_fast_retransmit_and_recover_is_the_highest_sequence_sent() -> None:
    """6582-3.2-2: "If so, the value of recover is incremented to the value of the highest
    sequence number transmitted by the TCP so far. The TCP then enters fast retransmit"."""
    c = in_fast_recovery(10)
    # Highest sequence number transmitted: the last octet of S(10), i.e. S(11) - 1. synack keeps
    # recover as the octet after it (an exclusive end), and compares accordingly.
    assert seq_diff(c.snapshot()["recovery"]["recover"], S(11)) in (-1, 0)


def test_3_2_step_2_below_recover_no_fast_retransmit_and_ssthresh_untouched() -> None:
    """6582-3.2-2: "If not, the TCP does not enter fast retransmit and does not reset ssthresh."
    After a timeout recover is the highest sequence number sent (step 4); the ACK of the
    retransmission moves SND.UNA below it, and three duplicates of that ACK change nothing."""
    c = sent(8)
    feed(c, seg(R(1), S(1)), at=1.05)
    pull(c, 1.05)
    expect(c, at=2.05, segments=[out(S(1), R(1), 0, d(1))])  # timeout: recover = S(8) - 1
    ssthresh = c.cc.ssthresh
    feed(c, seg(R(1), S(2)), at=2.1)  # SND.UNA = S(2), still below recover
    pull(c, 2.1)
    dupacks(c, S(2), 2.2)
    assert not any(s.seq == S(2) for s in pull(c, 2.202))
    assert c.cc.ssthresh == ssthresh and not recovering(c)


# =============================================================================================
# §3.2 step 3: full and partial acknowledgments
# =============================================================================================


def test_3_2_step_3_full_ack_deflates_and_ends_fast_recovery() -> None:
    """6582-3.2-3-FULL: "If this ACK acknowledges all of the data up to and including recover
    ... Set cwnd to either (1) min (ssthresh, max(FlightSize, SMSS) + SMSS) or (2) ssthresh" and
    "Exit the fast recovery procedure." FlightSize is "the amount of data presently
    outstanding": here new data sent during the recovery is still outstanding after the ACK."""
    c = in_fast_recovery(10)
    c.send(DATA[11 * MSS:14 * MSS], 1.103)
    dupacks(c, S(1), 1.11, count=6)  # inflation lets new segments out (RFC 5681 step 5)
    pull(c, 1.116)
    assert seq_diff(c.snd_max, S(11)) > 0  # something new is in flight beyond recover
    ssthresh = c.cc.ssthresh
    feed(c, seg(R(1), S(11)), at=1.2)  # everything up to recover
    outstanding = seq_diff(c.snd_max, c.snd_una)
    assert not recovering(c)
    assert c.cc.cwnd in (min(ssthresh, max(outstanding, MSS) + MSS), ssthresh)


def test_3_2_step_3_partial_ack_retransmits_the_first_unacknowledged_segment_and_stays() -> None:
    """6582-3.2-3-PARTIAL: "If this ACK does *not* acknowledge all of the data up to and
    including recover, then this is a partial ACK. In this case, retransmit the first
    unacknowledged segment. Deflate the congestion window by the amount of new data
    acknowledged ... If the partial ACK acknowledges at least one SMSS of new data, then add back
    SMSS bytes" and "Do not exit the fast recovery procedure". S(1) and S(3) were lost; the
    ACK of the retransmitted S(1) stops at S(3)."""
    c = in_fast_recovery(10)
    cwnd = c.cc.cwnd
    feed(c, seg(R(1), S(3)), at=1.2)  # two segments acknowledged
    expect(c, at=1.2, segments=[out(S(3), R(1), 0, d(3))])
    assert c.cc.cwnd == cwnd - 2 * MSS + MSS
    assert recovering(c)
    feed(c, seg(R(1), S(3)), at=1.21)  # a further duplicate: RFC 5681 step 4 inflates again
    assert c.cc.cwnd == cwnd - 2 * MSS + MSS + MSS


def test_3_2_step_3_partial_ack_of_less_than_one_smss_adds_nothing_back() -> None:
    """6582-3.2-3-PARTIAL: "Deflate the congestion window by the amount of new data acknowledged
    by the Cumulative Acknowledgment field. If the partial ACK acknowledges at least one SMSS of
    new data, then add back SMSS bytes to the congestion window." A partial ACK of 100 octets
    deflates cwnd by 100 and adds nothing back."""
    c = in_fast_recovery(10)
    cwnd = c.cc.cwnd
    feed(c, seg(R(1), (S(1) + 100) & 0xFFFFFFFF), at=1.2)
    assert recovering(c)
    assert c.cc.cwnd == cwnd - 100


def test_3_2_step_3_first_partial_ack_resets_the_retransmit_timer() -> None:
    """6582-3.2-3-TIMER: "For the first partial ACK that arrives during fast recovery, also
    reset the retransmit timer." The timer, started at 1.0 (RTO 1 s), would fire at 2.05 after
    the ACK of S(0); the partial ACK at 1.5 moves it to 2.5."""
    c = in_fast_recovery(10)
    feed(c, seg(R(1), S(3)), at=1.5)
    pull(c, 1.5)
    assert c.next_deadline() == 1.5 + c.rtt.rto


def test_3_2_step_3_new_segment_sent_if_the_deflated_window_allows() -> None:
    """6582-3.2-3-PARTIAL: "Send a new segment if permitted by the new value of cwnd." Ten
    segments outstanding, ssthresh 5 + 3; six further duplicates inflate cwnd to 14 segments and
    let S(11)..S(14) out. The partial ACK of two segments deflates cwnd to 14 - 2 + 1 = 13 with
    12 outstanding: S(3) is retransmitted and one new segment, S(15), may leave."""
    c = in_fast_recovery(10)
    c.send(DATA[11 * MSS:20 * MSS], 1.103)
    dupacks(c, S(1), 1.11, count=6)
    assert [s.seq for s in pull(c, 1.116)] == [S(11), S(12), S(13), S(14)]
    feed(c, seg(R(1), S(3)), at=1.2)
    expect(c, at=1.2, segments=[out(S(3), R(1), 0, d(3)), out(S(15), R(1), 0, d(15))])


# =============================================================================================
# §3.2 step 4: retransmit timeouts
# =============================================================================================


def test_3_2_step_4_a_timeout_records_the_highest_sequence_sent_and_exits() -> None:
    """6582-3.2-4: "After a retransmit timeout, record the highest sequence number transmitted
    in the variable recover, and exit the fast recovery procedure if applicable." The fast
    retransmission is lost too; after the timeout, three duplicates of an ACK below recover do
    not start a new fast retransmit."""
    c = in_fast_recovery(10)
    deadline = c.next_deadline()
    assert deadline is not None
    got = pull(c, deadline)
    assert got and got[0].seq == S(1)
    assert not recovering(c)
    assert seq_diff(c.snapshot()["recovery"]["recover"], S(11)) in (-1, 0)
    t = deadline + 0.1
    feed(c, seg(R(1), S(2)), at=t)
    pull(c, t)
    dupacks(c, S(2), t + 0.01)
    assert not recovering(c)
