"""RFC 5681 (TCP congestion control), each test written from the sentence of the RFC it quotes —
not from what synack's code does. ``docs/conformance.md`` lists every requirement of the RFC
with its id (``5681-…``), status and tests.

A test that fails on synack is a finding: it is marked ``xfail(strict=True)`` with what the RFC
says and what synack does, and its row in the document is "partial" or "deviation (to decide)".

Level 1 (tcpkit): one connection, exact segments at exact virtual times. SMSS is 1460 octets;
``S(i)`` is the first sequence number of our i-th full-sized data segment."""

from __future__ import annotations

import pytest
from tcpkit import (
    MSS,
    PLAIN,
    PSH,
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

from synack.core.congestion import initial_window
from synack.core.connection import Config, Connection
from synack.core.records import State
from synack.core.wire import FIN, SYN, IcmpError, Mss, Sack, SackPermitted, Segment, seq_diff

DATA = bytes(range(251)) * 400  # ~100 KB, a period that is not a power of two
DELAYED = PLAIN.with_(delayed_ack=0.2)


def S(i: int) -> int:
    """The first sequence number of our i-th full-sized data segment (S(0) = L(1))."""
    return L(1 + i * MSS)


def index(s: Segment) -> int:
    """Which of our full-sized segments ``s`` starts (S(index) = s.seq)."""
    return seq_diff(s.seq, L(1)) // MSS


def flight(c: Connection) -> int:
    """Octets sent and not yet cumulatively acknowledged (RFC 5681 §2 FlightSize)."""
    return seq_diff(c.snd_max, c.snd_una)


def in_flight(n: int, *, queued: int | None = None, config: Config = PLAIN, at: float = 1.0) -> Connection:
    """ESTABLISHED; the window opened to ``n`` segments by earlier traffic; ``queued`` segments
    (default ``n``) handed to SEND at ``at``, of which up to ``n`` leave at once."""
    queued = n if queued is None else queued
    c = conn_established(config)
    c.cc.cwnd = n * MSS
    c.send(DATA[:queued * MSS], at)
    assert len(pull(c, at)) == min(n, queued)
    return c


# =============================================================================================
# §3.1 Slow start and congestion avoidance
# =============================================================================================


def _established_with_peer_mss(peer_mss: int) -> Connection:
    """Active open over a 9000-octet MTU, the peer announcing ``peer_mss``: SMSS = peer_mss."""
    c = Connection(("10.0.0.1", 40000), ("10.0.0.2", 80), iss=L(0), config=PLAIN.with_(mss=None), mtu=9000)
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, options=[Mss(peer_mss)]), at=0.0)
    assert c.state is State.ESTABLISHED and c.snd_mss == peer_mss
    pull(c, 0.0)
    return c


@pytest.mark.parametrize("smss,segments", [(536, 4), (1095, 4), (1096, 3), (1460, 3), (2190, 3), (2191, 2),
                                           (8000, 2)])
def test_3_1_iw_initial_window_is_at_most_equation_1(smss: int, segments: int) -> None:
    """5681-3.1-IW: "IW, the initial value of cwnd, MUST be set using the following guidelines
    as an upper bound": 2, 3 or 4 segments of SMSS bytes by SMSS (> 2190, > 1095, <= 1095) — and
    "MUST NOT be more than" that many segments. The first flight is counted on the wire."""
    c = _established_with_peer_mss(smss)
    c.send(DATA[:10 * smss], 1.0)
    first = pull(c, 1.0)
    assert len(first) <= segments
    assert sum(len(s.payload) for s in first) <= segments * smss
    assert len(first) == segments  # synack uses the whole of the upper bound


@pytest.mark.parametrize("passive", [False, True], ids=["active", "passive"])
def test_3_1_iw_handshake_the_syn_ack_and_its_ack_do_not_grow_cwnd(passive: bool) -> None:
    """5681-3.1-IW-HANDSHAKE: "the SYN/ACK and the acknowledgment of the SYN/ACK MUST NOT
    increase the size of the congestion window" — the first flight after either handshake is
    IW and no more (3 segments for SMSS 1460)."""
    c = conn_established(passive=passive)
    assert c.cc.cwnd == initial_window(MSS)
    c.send(DATA[:10 * MSS], 1.0)
    assert len(pull(c, 1.0)) == 3


def test_3_1_ssthresh_init_is_arbitrarily_high() -> None:
    """5681-3.1-SSTHRESH-INIT: "The initial value of ssthresh SHOULD be set arbitrarily high
    (e.g., to the size of the largest possible advertised window)" — 65535 << 14 octets."""
    c = conn_established()
    assert c.cc.ssthresh >= 0xFFFF << 14


def test_3_1_ss_each_ack_adds_at_most_the_octets_it_acknowledges() -> None:
    """5681-3.1-SS: "During slow start, a TCP increments cwnd by at most SMSS bytes for each ACK
    received that cumulatively acknowledges new data", RECOMMENDED "cwnd += min (N, SMSS)" —
    a receiver that acknowledges one segment in four pieces (ACK division) grows the window by
    one segment's worth, not four."""
    c = in_flight(3)
    cwnd = c.cc.cwnd
    for k in range(1, 5):
        feed(c, seg(R(1), L(1 + k * MSS // 4)), at=1.1 + k * 0.01)
        assert c.cc.cwnd == cwnd + k * MSS // 4
    feed(c, seg(R(1), S(2)), at=1.2)  # a whole segment more: min(N, SMSS) = SMSS
    assert c.cc.cwnd == cwnd + MSS + MSS


def test_3_1_ca_at_most_one_smss_per_round_trip() -> None:
    """5681-3.1-CA: "During congestion avoidance, cwnd is incremented by roughly 1 full-sized
    segment per round-trip time", and "cwnd MUST NOT be increased by more than SMSS bytes per
    RTT" — whether each segment is acknowledged on its own or in pieces."""
    c = in_flight(4, queued=40)
    c.cc.ssthresh = 2 * MSS  # cwnd > ssthresh: congestion avoidance
    t, una = 1.0, 1
    for _round in range(3):
        start = c.cc.cwnd
        n = start // MSS
        for k in range(n):  # each segment of the window in two ACKs
            t += 0.01
            feed(c, seg(R(1), L(una + k * MSS + MSS // 2)), at=t)
            t += 0.01
            feed(c, seg(R(1), L(una + (k + 1) * MSS)), at=t)
        una += n * MSS
        assert c.cc.cwnd == start + MSS  # one SMSS for the round trip, not one per ACK
        sent = pull(c, t)
        assert sum(len(s.payload) for s in sent) == c.cc.cwnd  # the next window leaves


def test_3_1_rto_ssthresh_from_flight_size_not_cwnd() -> None:
    """5681-3.1-RTO-SSTHRESH: on a timeout "ssthresh MUST be set to no more than ... ssthresh =
    max (FlightSize / 2, 2*SMSS)", and "An easy mistake to make is to simply use cwnd, rather
    than FlightSize". An application-limited sender: cwnd 20 segments, 6 in flight."""
    c = in_flight(20, queued=6)  # only 6 segments to send: the window is far from full
    assert flight(c) == 6 * MSS
    expect(c, at=2.0, segments=[out(S(0), R(1), 0, DATA[:MSS])])  # RTO 1 s: S(0) again
    assert c.cc.ssthresh <= max(6 * MSS // 2, 2 * MSS)  # 3 segments, not 10


def test_3_1_rto_repeat_a_second_timeout_of_the_same_segment_holds_ssthresh() -> None:
    """5681-3.1-RTO-REPEAT: "when a TCP sender detects segment loss using the retransmission
    timer and the given segment has already been retransmitted by way of the retransmission
    timer at least once, the value of ssthresh is held constant"."""
    c = in_flight(10)
    expect(c, at=2.0, segments=[out(S(0), R(1), 0, DATA[:MSS])])
    after_first = c.cc.ssthresh
    assert after_first == 5 * MSS
    expect(c, at=4.0, segments=[out(S(0), R(1), 0, DATA[:MSS])])  # backed off to 2 s
    assert c.cc.ssthresh == after_first
    expect(c, at=8.0, segments=[out(S(0), R(1), 0, DATA[:MSS])])
    assert c.cc.ssthresh == after_first


def test_3_1_lw_after_a_timeout_one_segment_then_slow_start() -> None:
    """5681-3.1-LW: "upon a timeout ... cwnd MUST be set to no more than the loss window, LW,
    which equals 1 full-sized segment", and "after retransmitting the dropped segment the TCP
    sender uses the slow start algorithm to increase the window from 1 full-sized segment"."""
    c = in_flight(10)
    expect(c, at=2.0, segments=[out(S(0), R(1), 0, DATA[:MSS])])  # one segment only
    assert c.cc.cwnd == MSS
    feed(c, seg(R(1), S(1)), at=2.1)
    assert [index(s) for s in pull(c, 2.1)] == [1, 2]  # slow start: 2 segments
    feed(c, seg(R(1), S(3)), at=2.2)
    assert [index(s) for s in pull(c, 2.2)] == [3, 4, 5]  # one ACK of two segments: +1 SMSS


def test_3_1_pmtu_a_smaller_mss_shrinks_cwnd_by_the_ratio() -> None:
    """5681-3.1-PMTU: "When initial congestion windows of more than one segment are implemented
    along with Path MTU Discovery [RFC1191], and the MSS being used is found to be too large,
    the congestion window cwnd SHOULD be reduced ... cwnd SHOULD be reduced by the ratio of the
    old segment size to the new segment size." Ten 1460-octet segments in flight; the path
    says 576: the window holds ten 536-octet segments, not 27."""
    c = in_flight(10)
    err = IcmpError(4, "10.9.9.9", 3, 4, "10.0.0.1", "10.0.0.2", 40000, 80, S(0), mtu=576)
    assert c.handle_icmp(err, 1.05)
    assert c.snd_mss == 536
    burst = pull(c, 1.05)
    assert c.cc.cwnd <= 10 * MSS * 536 // MSS
    assert len(burst) <= 10


# =============================================================================================
# §2 DUPLICATE ACKNOWLEDGMENT, §3.2 fast retransmit and fast recovery
# =============================================================================================


def test_2_dupack_needs_outstanding_data_and_the_greatest_ack_so_far() -> None:
    """5681-2-DUPACK: a duplicate needs "(a) the receiver of the ACK has outstanding data" and
    "(d) the acknowledgment number is equal to the greatest acknowledgment received" — three
    ACKs of everything (nothing outstanding), and three old ACKs below SND.UNA, start nothing."""
    c = conn_established()
    for k in range(3):
        feed(c, seg(R(1), L(1)), at=1.0 + k * 0.01)
    expect_nothing(c, at=1.02)
    c = in_flight(4)
    feed(c, seg(R(1), S(1)), at=1.05)
    pull(c, 1.05)
    for k in range(3):
        feed(c, seg(R(1), S(0) if k else S(1) - 1), at=1.1 + k * 0.01)  # below SND.UNA
        expect_nothing(c, at=1.1 + k * 0.01)
    assert not c.snapshot()["recovery"]["recovering"]


def test_2_dupack_a_segment_with_fin_is_not_a_duplicate() -> None:
    """5681-2-DUPACK: "(c) the SYN and FIN bits are both off" — the peer's FIN carrying the same
    acknowledgment, then two duplicates, are two duplicate ACKs, not three."""
    c = in_flight(4, queued=10)
    feed(c, seg(R(1), S(1)), at=1.05)
    pull(c, 1.05)
    feed(c, seg(R(1), S(1), FIN), at=1.1)
    pull(c, 1.1)
    feed(c, seg(R(2), S(1)), at=1.11)
    feed(c, seg(R(2), S(1)), at=1.12)
    assert not any(s.seq == S(1) for s in pull(c, 1.12))
    assert not c.snapshot()["recovery"]["recovering"]


def _recovering(n: int) -> Connection:
    """``n`` + 1 segments sent, the first acknowledged (so the ACK covers more than RFC 6582's
    recover = ISS), then S(1) lost: the three duplicate ACKs of S(1) have arrived at 1.12. No
    unsent data, so no limited transmit: FlightSize at the third duplicate is ``n`` segments."""
    c = in_flight(n + 1)
    feed(c, seg(R(1), S(1)), at=1.05)
    expect_nothing(c, at=1.05)
    assert flight(c) == n * MSS
    for k in range(2):
        feed(c, seg(R(1), S(1)), at=1.1 + k * 0.01)
        expect_nothing(c, at=1.1 + k * 0.01)
    feed(c, seg(R(1), S(1)), at=1.12)
    return c


def test_3_2_fr_three_duplicates_retransmit_the_segment_at_snd_una_at_once() -> None:
    """5681-3.2-FR: "After receiving 3 duplicate ACKs, TCP performs a retransmission of what
    appears to be the missing segment, without waiting for the retransmission timer to expire",
    and step 3: "The lost segment starting at SND.UNA MUST be retransmitted"."""
    c = _recovering(10)
    expect(c, at=1.12, segments=[out(S(1), R(1), 0, DATA[MSS:2 * MSS])])


def test_3_2_step_2_and_3_ssthresh_from_equation_4_then_inflated_by_three() -> None:
    """5681-3.2-2 and -3: "When the third duplicate ACK is received, a TCP MUST set ssthresh to
    no more than the value given in equation (4)" (max(FlightSize/2, 2*SMSS)), and "cwnd set to
    ssthresh plus 3*SMSS"."""
    c = _recovering(10)
    pull(c, 1.12)
    assert c.cc.ssthresh <= max(10 * MSS // 2, 2 * MSS)
    assert c.cc.cwnd == c.cc.ssthresh + 3 * MSS


def test_3_2_step_4_each_further_duplicate_inflates_by_one_smss() -> None:
    """5681-3.2-4: "For each additional duplicate ACK received (after the third), cwnd MUST be
    incremented by SMSS"."""
    c = _recovering(10)
    pull(c, 1.12)
    cwnd = c.cc.cwnd
    for k in range(1, 4):
        feed(c, seg(R(1), S(1)), at=1.13 + k * 0.01)
        assert c.cc.cwnd == cwnd + k * MSS


def test_3_2_step_5_new_data_leaves_once_the_inflated_window_allows() -> None:
    """5681-3.2-5: "When previously unsent data is available and the new value of cwnd and the
    receiver's advertised window allow, a TCP SHOULD send 1*SMSS bytes of previously unsent
    data." FlightSize 10 segments, cwnd 5 + 3: the third further duplicate makes cwnd 11."""
    c = _recovering(10)
    pull(c, 1.12)
    c.send(DATA[11 * MSS:16 * MSS], 1.125)  # new data from the application
    for k in range(2):
        feed(c, seg(R(1), S(1)), at=1.13 + k * 0.01)
        expect_nothing(c, at=1.13 + k * 0.01)
    feed(c, seg(R(1), S(1)), at=1.15)
    expect(c, at=1.15, segments=[out(S(11), R(1), 0, DATA[11 * MSS:12 * MSS])])
    feed(c, seg(R(1), S(1)), at=1.16)
    expect(c, at=1.16, segments=[out(S(12), R(1), 0, DATA[12 * MSS:13 * MSS])])


def test_3_2_step_2_limited_transmit_segments_are_not_counted_in_ssthresh() -> None:
    """5681-3.2-2: "When [RFC3042] is in use, additional data sent in limited transmit MUST NOT
    be included in this calculation." Twelve segments in flight, two more sent by limited transmit
    on the first two duplicates: ssthresh is at most 12 / 2 = 6 segments, not 14 / 2."""
    c = in_flight(11, queued=20)
    feed(c, seg(R(1), S(1)), at=1.05)  # ACK of S(0); slow start sends S(11), S(12)
    assert [index(s) for s in pull(c, 1.05)] == [11, 12]
    assert flight(c) == 12 * MSS
    for k in range(2):  # limited transmit: S(13), S(14)
        feed(c, seg(R(1), S(1)), at=1.1 + k * 0.01)
        assert [index(s) for s in pull(c, 1.1 + k * 0.01)] == [13 + k]
    feed(c, seg(R(1), S(1)), at=1.12)
    assert [index(s) for s in pull(c, 1.12)][:1] == [1]
    assert c.cc.ssthresh <= max(12 * MSS // 2, 2 * MSS)


# =============================================================================================
# §4.1 Restarting idle connections
# =============================================================================================


def test_4_1_rw_measured_from_the_last_data_sent_not_the_last_segment_received() -> None:
    """5681-4.1-RW: "Using the last time a segment was received to determine whether or not to
    decrease cwnd can fail to deflate cwnd in the common case of persistent HTTP connections",
    so "a TCP SHOULD set cwnd to no more than RW before beginning transmission if the TCP has not
    sent data in an interval exceeding the retransmission timeout" (RW = min(IW, cwnd)). A
    server idle for 5 s (RTO 1 s) receives a request, then answers: it restarts at IW."""
    c = in_flight(10, queued=10)
    feed(c, seg(R(1), S(10)), at=1.1)  # everything acknowledged: cwnd 11 segments
    assert c.cc.cwnd > 3 * MSS
    feed(c, seg(R(1), S(10), PSH, b"GET / HTTP/1.1\r\n\r\n"), at=6.0)
    c.send(DATA[:10 * MSS], 6.01)
    answer = [s for s in pull(c, 6.01) if s.payload]
    assert len(answer) == 3  # RW = min(IW, cwnd) = 3 segments


def test_4_1_rw_not_after_a_pause_shorter_than_the_rto() -> None:
    """5681-4.1-RW: only "an interval exceeding the retransmission timeout" restarts."""
    c = in_flight(10, queued=10)
    feed(c, seg(R(1), S(10)), at=1.1)
    c.send(DATA[:10 * MSS], 1.9)  # 0.9 s after the last data left at 1.0
    assert len(pull(c, 1.9)) == 10


# =============================================================================================
# §4.2 Generating acknowledgments (the receiver)
# =============================================================================================


def test_4_2_ack_within_500_ms_of_the_first_unacknowledged_packet() -> None:
    """5681-4.2-DELACK: an ACK "MUST be generated within 500 ms of the arrival of the first
    unacknowledged packet" — a second small segment does not push the delayed ACK back."""
    c = conn_established(DELAYED)
    feed(c, seg(R(1), L(1), PSH, b"a" * 100), at=1.0)
    feed(c, seg(R(101), L(1), PSH, b"b" * 100), at=1.15)
    expect_nothing(c, at=1.199)
    expect(c, at=1.2, segments=[out(L(1), R(201))])  # 0.2 s after the first, < 0.5 s


def test_4_2_ooo_an_out_of_order_segment_draws_an_immediate_duplicate_ack() -> None:
    """5681-4.2-OOO: "Out-of-order data segments SHOULD be acknowledged immediately" and "the
    receiver SHOULD send an immediate duplicate ACK when it receives a data segment above a gap
    in the sequence space" — even with delayed ACKs on."""
    c = conn_established(DELAYED)
    feed(c, seg(R(1), L(1), payload=b"a" * 500), at=1.0)  # in order: delayed
    expect_nothing(c, at=1.0)
    feed(c, seg(R(1001), L(1), payload=b"c" * 500), at=1.01)  # above a gap
    expect(c, at=1.01, segments=[out(L(1), R(501))])
    feed(c, seg(R(1501), L(1), payload=b"d" * 500), at=1.02)
    expect(c, at=1.02, segments=[out(L(1), R(501))])


@pytest.mark.parametrize("fill", ["part", "all"])
def test_4_2_gap_a_segment_filling_a_gap_is_acknowledged_at_once(fill: str) -> None:
    """5681-4.2-GAP: "the receiver SHOULD send an immediate ACK when it receives a data segment
    that fills in all or part of a gap in the sequence space"."""
    c = conn_established(DELAYED)
    feed(c, seg(R(1001), L(1), payload=b"c" * 500), at=1.0)  # hole [R(1), R(1001))
    pull(c, 1.0)
    if fill == "part":
        feed(c, seg(R(1), L(1), payload=b"a" * 500), at=1.1)
        expect(c, at=1.1, segments=[out(L(1), R(501))])
    else:
        feed(c, seg(R(1), L(1), payload=b"a" * 1000), at=1.1)
        expect(c, at=1.1, segments=[out(L(1), R(1501))])


def test_4_2_one_at_most_one_ack_per_segment_received() -> None:
    """5681-4.2-ONE: "A TCP receiver MUST NOT generate more than one ACK for every incoming
    segment, other than to update the offered window as the receiving application consumes new
    data" — in-order, out-of-order, duplicate and gap-filling segments, delayed ACKs firing in
    between; the application reads nothing."""
    c = conn_established(DELAYED)
    arrivals = [(R(1), 700), (R(2101), 700), (R(1), 700), (R(701), 700), (R(1401), 700), (R(2801), 10),
                (R(2801), 10), (R(5000), 10), (R(2811), 100)]
    acks, t = 0, 1.0
    for n, (seq, size) in enumerate(arrivals, 1):
        feed(c, seg(seq, L(1), payload=bytes(size)), at=t)
        acks += len(pull(c, t))
        t += 0.3  # lets each delayed ACK fire before the next segment
        acks += len(pull(c, t - 0.01))
        assert acks <= n


# =============================================================================================
# §4.3 Loss recovery mechanisms (the general principles NewReno and SACK recovery must follow)
# =============================================================================================


def _sack_config() -> tuple[Config, tuple[Mss, SackPermitted]]:
    return PLAIN.with_(sack=True), (Mss(MSS), SackPermitted())


def _recovering_with(algorithm: str, n: int = 10) -> tuple[Connection, list[Segment]]:
    """As :func:`_recovering`, with NewReno or SACK recovery (SACK: each duplicate SACKs one
    more segment above the hole at S(1)); also what left at the third duplicate."""
    if algorithm == "newreno":
        c = _recovering(n)
        return c, pull(c, 1.12)
    config, peer = _sack_config()
    c = conn_established(config, peer_options=peer)
    c.cc.cwnd = (n + 1) * MSS
    c.send(DATA[:(n + 1) * MSS], 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), S(1)), at=1.05)
    sent: list[Segment] = []
    for k in range(3):
        feed(c, seg(R(1), S(1), options=[Sack(((S(2), S(3 + k)),))]), at=1.1 + k * 0.01)
        sent = pull(c, 1.1 + k * 0.01)
    assert c.snapshot()["recovery"]["recovering"]
    return c, sent


@pytest.mark.parametrize("algorithm", ["newreno", "sack"])
def test_4_3_half_at_most_half_the_outstanding_segments_per_rtt_while_repairing(algorithm: str) -> None:
    """5681-4.3-HALF: "Until all lost segments in the window of data in question are repaired,
    the number of segments transmitted in each RTT MUST be no more than half the number of
    outstanding segments when the loss was detected." Ten outstanding, S(1) lost: during the
    round trip that follows, the remaining duplicates (one per segment that arrived) release
    at most five segments, retransmission included."""
    c, first = _recovering_with(algorithm)
    assert [index(s) for s in first] == [1]  # the retransmission
    c.send(DATA[11 * MSS:40 * MSS], 1.12)  # plenty of new data
    sent = len(first) + len(pull(c, 1.12))
    for k in range(3, 9):  # the duplicates of the segments after the three counted
        options = [Sack(((S(2), S(3 + k)),))] if algorithm == "sack" else []
        feed(c, seg(R(1), S(1), options=options), at=1.13 + k * 0.01)
        sent += len(pull(c, 1.13 + k * 0.01))
    assert sent <= 10 // 2


@pytest.mark.parametrize("algorithm", ["newreno", "sack"])
def test_4_3_ca_after_recovery_cwnd_at_most_ssthresh_and_congestion_avoidance(algorithm: str) -> None:
    """5681-4.3-CA-AFTER: "After all loss in the given window of segments has been successfully
    retransmitted, cwnd MUST be set to no more than ssthresh and congestion avoidance MUST be
    used to further increase cwnd." The ACK of everything ends the recovery; the next window is
    acknowledged segment by segment and grows cwnd by at most one SMSS."""
    c, _ = _recovering_with(algorithm)
    feed(c, seg(R(1), S(11)), at=1.3)  # the retransmission arrived: everything acknowledged
    assert not c.snapshot()["recovery"]["recovering"]
    assert c.cc.cwnd <= c.cc.ssthresh
    c.send(DATA[11 * MSS:60 * MSS], 1.31)
    window = [s for s in pull(c, 1.31) if s.payload]
    start = c.cc.cwnd
    for k, s in enumerate(window):
        feed(c, seg(R(1), (s.seq + len(s.payload)) & 0xFFFFFFFF), at=1.4 + k * 0.001)
    assert c.cc.cwnd <= start + MSS


@pytest.mark.parametrize("algorithm", ["newreno", "sack"])
def test_4_3_twice_losing_the_retransmission_lowers_ssthresh_a_second_time(algorithm: str) -> None:
    """5681-4.3-TWICE: "Loss in two successive windows of data, or the loss of a retransmission,
    should be taken as two indications of congestion and, therefore, cwnd (and ssthresh) MUST
    be lowered twice in this case." The fast retransmission of S(1) is lost too; the
    retransmission timer finds it."""
    c, _ = _recovering_with(algorithm)
    first = c.cc.ssthresh, c.cc.cwnd
    d = c.next_deadline()
    assert d is not None
    got = pull(c, d)
    assert got and got[0].seq == S(1)  # the retransmission timer resends S(1)
    assert c.cc.cwnd < first[1]
    assert c.cc.ssthresh < first[0]
