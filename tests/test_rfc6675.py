"""RFC 6675 (conservative SACK-based loss recovery), each test written from the definition, rule or
step of the RFC it quotes. ``docs/conformance.md`` lists them with their ids (``6675-…``), status
and tests; ``test_conn_sack_recovery.py`` has more.

RFC 6675's names: HighACK is the highest octet cumulatively acknowledged (SND.UNA − 1), HighData
the highest octet sent, DupThresh 3. Segment ``S(i)`` is our i-th full-sized data segment, so the
octets of S(i) are [S(i), S(i + 1)).

Level 1 (tcpkit): one connection with SACK negotiated (no timestamps: up to four blocks), exact
segments at exact virtual times."""

from __future__ import annotations

from tcpkit import (
    MSS,
    PLAIN,
    L,
    R,
    conn_established,
    expect,
    feed,
    out,
    pull,
    seg,
)

from synack.core.connection import Connection
from synack.core.wire import Mss, Sack, SackPermitted, Segment, seq_diff

CFG = PLAIN.with_(sack=True)
PEER = (Mss(MSS), SackPermitted())
DATA = bytes(range(251)) * 400


def S(i: int) -> int:
    return L(1 + i * MSS)


def d(i: int) -> bytes:
    return DATA[i * MSS:(i + 1) * MSS]


def index(s: Segment) -> int:
    return seq_diff(s.seq, L(1)) // MSS


def sacks(*ranges: tuple[int, int]) -> list[Sack]:
    """A SACK option for the segment ranges [S(a), S(b))."""
    return [Sack(tuple((S(a), S(b)) for a, b in ranges))]


def recovering(c: Connection) -> bool:
    return bool(c.snapshot()["recovery"]["recovering"])


def sent(n: int) -> Connection:
    """SACK negotiated; the window opened to ``n`` segments; exactly S(0)..S(n-1) sent at 1.0
    (nothing more queued, so no limited transmit)."""
    c = conn_established(CFG, peer_options=PEER)
    assert c.sack_ok
    c.cc.cwnd = n * MSS
    c.send(DATA[:n * MSS], 1.0)
    assert [index(s) for s in pull(c, 1.0)] == list(range(n))
    return c


# =============================================================================================
# §2 DupAck, §4 IsLost()
# =============================================================================================


def test_2_dupack_an_ack_sacking_new_octets_counts_even_with_data_and_a_new_window() -> None:
    """6675-2-DUPACK: "DupAck: A segment that arrives carrying a SACK block that identifies
    previously unacknowledged and un-SACKed octets between HighACK and HighData", counted "even
    if it carries new data, changes the advertised window, or moves the cumulative
    acknowledgment point". Three such ACKs, each with data and a different window: the third
    starts the recovery and S(0) is retransmitted."""
    c = sent(8)
    for k in range(3):
        feed(c, seg(R(1 + 10 * k), S(0), payload=b"x" * 10, window=60000 - k, options=sacks((1, 2 + k))),
             at=1.1 + k * 0.01)
        got = pull(c, 1.1 + k * 0.01)
    assert recovering(c)
    assert got[0].seq == S(0)


def test_4_islost_dupthresh_discontiguous_sacked_ranges_above() -> None:
    """6675-4-ISLOST: IsLost(SeqNum) "returns true when either DupThresh discontiguous SACKed
    sequences have arrived above 'SeqNum' or more than (DupThresh - 1) * SMSS bytes with
    sequence numbers greater than 'SeqNum' have been SACKed" — and §5 (2): "If DupAcks <
    DupThresh but IsLost (HighACK + 1) returns true", recovery starts. One ACK SACKing three
    separate segments above S(0)."""
    c = sent(8)
    feed(c, seg(R(1), S(0), options=sacks((1, 2), (3, 4), (5, 6))), at=1.1)
    assert recovering(c)
    assert pull(c, 1.1)[0].seq == S(0)


def test_4_islost_more_than_two_smss_sacked_above() -> None:
    """6675-4-ISLOST: "more than (DupThresh - 1) * SMSS bytes ... have been SACKed" — one ACK
    SACKing three contiguous segments (3 SMSS > 2 SMSS) above S(0)."""
    c = sent(8)
    feed(c, seg(R(1), S(0), options=sacks((1, 4))), at=1.1)
    assert recovering(c)
    assert pull(c, 1.1)[0].seq == S(0)


def test_4_islost_not_with_two_ranges_of_one_segment_each() -> None:
    """6675-4-ISLOST: two SACKed ranges and 2 SMSS above S(0) are fewer than DupThresh ranges and
    not more than 2 SMSS: S(0) is not lost yet (this is the second DupAck, not a loss)."""
    c = sent(8)
    feed(c, seg(R(1), S(0), options=sacks((2, 3), (4, 5))), at=1.1)
    assert not recovering(c)
    assert not any(s.seq == S(0) for s in pull(c, 1.1))


# =============================================================================================
# §4 Update(), SetPipe(), NextSeg()
# =============================================================================================


def test_4_update_sacked_data_is_kept_until_cumulatively_acknowledged() -> None:
    """6675-4-UPDATE: "SACK information is advisory and therefore SACKed data MUST NOT be removed
    from the TCP's retransmission buffer until the data is cumulatively acknowledged". S(1)..S(7)
    are SACKed, then the receiver reneges: after the timeout its ACK covers S(0) only, and S(1)
    is sent again from the buffer."""
    c = sent(8)
    feed(c, seg(R(1), S(0), options=sacks((1, 8))), at=1.1)
    pull(c, 1.1)  # recovery: S(0) retransmitted
    deadline = c.next_deadline()
    assert deadline is not None
    pull(c, deadline)  # the timeout resends S(0) again
    feed(c, seg(R(1), S(1)), at=deadline + 0.1)  # no SACK: the receiver discarded S(1)..S(7)
    got = pull(c, deadline + 0.1)
    assert got and got[0].seq == S(1) and got[0].payload == d(1)


def test_4_setpipe_and_5_c_new_data_only_once_cwnd_minus_pipe_reaches_one_smss() -> None:
    """6675-4-SETPIPE and 6675-5-C: pipe counts, for each un-SACKed octet, "(a) If IsLost (S1)
    returns false: Pipe is incremented by 1 octet. (b) If S1 <= HighRxt: Pipe is incremented by
    1 octet"; and "(C) If cwnd - pipe >= 1 SMSS, the sender SHOULD transmit one or more
    segments". Ten segments out, S(0) lost, S(1)..S(3) SACKed: cwnd = ssthresh = 5 (4.2); pipe =
    S(4)..S(9) + the retransmitted S(0) = 7. Each later SACK of one segment lowers pipe by one;
    new data leaves once pipe is 4."""
    c = sent(10)
    feed(c, seg(R(1), S(0), options=sacks((1, 4))), at=1.1)
    expect(c, at=1.1, segments=[out(S(0), R(1), 0, d(0))])
    assert c.cc.cwnd == 5 * MSS
    c.send(DATA[10 * MSS:16 * MSS], 1.11)
    for k, top in enumerate((5, 6)):  # pipe 6, then 5: cwnd - pipe < SMSS
        feed(c, seg(R(1), S(0), options=sacks((1, top))), at=1.12 + k * 0.01)
        expect(c, at=1.12 + k * 0.01, segments=[])
    feed(c, seg(R(1), S(0), options=sacks((1, 7))), at=1.14)  # pipe 4: one segment
    expect(c, at=1.14, segments=[out(S(10), R(1), 0, d(10))])


def test_4_nextseg_1_lost_holes_before_new_data() -> None:
    """6675-4-NEXTSEG: rule (1), "If there exists a smallest unSACKed sequence number 'S2' that
    meets the following three criteria for determining loss, the sequence range of one segment
    of up to SMSS octets starting with S2 MUST be returned" (S2 > HighRxt, S2 below the highest
    SACKed octet, IsLost(S2)) — before rule (2), new data. Holes at S(0) and S(2), both lost."""
    c = sent(10)
    c.cc.cwnd = 10 * MSS
    c.send(DATA[10 * MSS:14 * MSS], 1.05)
    feed(c, seg(R(1), S(0), options=sacks((1, 2), (3, 9))), at=1.1)
    got = pull(c, 1.1)
    assert [index(s) for s in got][:2] == [0, 2]


def test_4_nextseg_3_an_unsacked_segment_below_the_highest_sack_when_nothing_else_can_go() -> None:
    """6675-4-NEXTSEG: rule (3), "If the conditions for rules (1) and (2) fail, but there exists
    an unSACKed sequence number 'S3' that meets the criteria for detecting loss given in steps
    (1.a) and (1.b) above (specifically excluding step (1.c)), then one segment of up to SMSS
    octets starting with S3 SHOULD be returned." Six segments out, no new data; S(1)..S(3) and
    S(5) SACKed: S(0) is lost, S(4) is not (one SACKed segment above it). cwnd = 3, pipe after
    the retransmission of S(0) = 2: room for S(4)."""
    c = sent(6)
    feed(c, seg(R(1), S(0), options=sacks((1, 4), (5, 6))), at=1.1)
    expect(c, at=1.1, segments=[out(S(0), R(1), 0, d(0)), out(S(4), R(1), 0, d(4))])


# =============================================================================================
# §5 the algorithm
# =============================================================================================


def test_5_4_2_limited_transmit_segments_are_not_counted_in_flight_size() -> None:
    """6675-5-4: "(4.2) ssthresh = cwnd = (FlightSize / 2)" and "[RFC5681] requires that any
    segments sent as part of the Limited Transmit mechanism not be counted in FlightSize for the
    purpose of the above equation." Ten segments out; the first two DupAcks send S(10), S(11)
    by Limited Transmit; the third starts the recovery: cwnd = ssthresh = 10 / 2 segments."""
    c = sent(10)
    c.send(DATA[10 * MSS:20 * MSS], 1.05)
    for k in range(2):
        feed(c, seg(R(1), S(0), options=sacks((1, 2 + k))), at=1.1 + k * 0.01)
        assert [index(s) for s in pull(c, 1.1 + k * 0.01)] == [10 + k]
    feed(c, seg(R(1), S(0), options=sacks((1, 4))), at=1.12)
    assert recovering(c)
    assert c.cc.ssthresh == c.cc.cwnd == 5 * MSS


def test_5_4_3_the_first_retransmission_leaves_at_once_and_recovery_point_is_high_data() -> None:
    """6675-5-4: "(4.1) RecoveryPoint = HighData" and "(4.3) Retransmit the first data segment
    presumed dropped -- the segment starting with sequence number HighACK + 1" — even though
    cwnd (5 segments) is below pipe (S(4)..S(9) = 6)."""
    c = sent(10)
    feed(c, seg(R(1), S(0), options=sacks((1, 4))), at=1.1)
    expect(c, at=1.1, segments=[out(S(0), R(1), 0, d(0))])
    assert seq_diff(c.snapshot()["recovery"]["recovery_point"], S(10)) in (-1, 0)


def test_5_a_recovery_ends_at_recovery_point_keeping_sack_information_above() -> None:
    """6675-5-A: "An incoming cumulative ACK for a sequence number greater than RecoveryPoint
    signals the end of loss recovery" and "Any information contained in the scoreboard for
    sequence numbers greater than the new value of HighACK SHOULD NOT be cleared when leaving the
    loss recovery phase." New data S(10)..S(12) went out during the recovery; the ACK that
    covers RecoveryPoint also SACKs S(12)."""
    c = sent(10)
    feed(c, seg(R(1), S(0), options=sacks((1, 4))), at=1.1)
    pull(c, 1.1)
    c.send(DATA[10 * MSS:13 * MSS], 1.11)
    for k, top in enumerate((7, 8, 9, 10)):
        feed(c, seg(R(1), S(0), options=sacks((1, top))), at=1.12 + k * 0.01)
        pull(c, 1.12 + k * 0.01)
    assert c.snd_max == S(13)
    feed(c, seg(R(1), S(10), options=sacks((12, 13))), at=1.3)
    assert not recovering(c)
    assert (S(12), S(13)) in c.snapshot()["recovery"]["sacked"]


def test_5_1_rto_ends_recovery_and_none_starts_before_high_ack_reaches_recovery_point() -> None:
    """6675-5.1-RTO: "If an RTO occurs during loss recovery as specified in this document,
    RecoveryPoint MUST be set to HighData. Further, the new value of RecoveryPoint MUST be
    preserved and the loss recovery algorithm outlined in this document MUST be terminated. In
    addition, a new recovery phase ... MUST NOT be initiated until HighACK is greater than or
    equal to the new value of RecoveryPoint." After the timeout, DupAcks that SACK new data below
    RecoveryPoint start nothing."""
    c = sent(10)
    feed(c, seg(R(1), S(0), options=sacks((2, 5))), at=1.1)  # S(0) and S(1) lost
    pull(c, 1.1)
    deadline = c.next_deadline()
    assert deadline is not None
    pull(c, deadline)  # RTO: S(0) again
    assert not recovering(c)
    assert seq_diff(c.snapshot()["recovery"]["recovery_point"], S(10)) in (-1, 0)
    t = deadline + 0.1
    for k in range(4):  # S(0) arrived; S(1) still missing; new SACK information each time
        feed(c, seg(R(1), S(1), options=sacks((2, 6 + k))), at=t + k * 0.01)
        pull(c, t + k * 0.01)
        assert not recovering(c)


def test_5_1_sack_information_arriving_after_an_rto_is_used() -> None:
    """6675-5.1-USE: "a SACK TCP sender SHOULD utilize all SACK information made available during
    the loss recovery following an RTO" and "a TCP sender SHOULD use this SACK information when
    determining what data should be sent in each segment following an RTO". Six segments out,
    all lost or late; after the timeout the ACK of S(0) SACKs S(2)..S(5): only S(1) needs
    sending, not S(2)."""
    c = sent(6)
    expect(c, at=2.0, segments=[out(S(0), R(1), 0, d(0))])  # RTO
    feed(c, seg(R(1), S(1), options=sacks((2, 6))), at=2.1)
    got = pull(c, 2.1)
    assert [index(s) for s in got] == [1]
