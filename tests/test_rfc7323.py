"""RFC 7323 (TCP extensions for high performance: window scale, timestamps, RTTM, PAWS), each test
written from the sentence of the RFC it quotes. ``docs/conformance.md`` lists them with their ids
(``7323-…``), status and tests.

Level 1 (tcpkit): one connection, exact segments at exact virtual times. The connection's
timestamp clock is 1 ms per tick from 0 (``TSval = int(now × 1000)``); the peer's TSvals are
whatever the test sends."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from tcpkit import (
    MSS,
    PLAIN,
    PSH,
    L,
    R,
    expect,
    feed,
    fire,
    make_conn,
    out,
    pull,
    seg,
)

from synack.core.connection import Config, Connection
from synack.core.records import State
from synack.core.wire import ACK, FIN, RST, SYN, Mss, Nop, Option, Segment, Timestamps, WindowScale

TS_CFG = PLAIN.with_(timestamps=True)


def ts(s: Segment) -> Timestamps | None:
    return s.option(Timestamps)


def with_timestamps(peer_tsval: int = 100, *, at: float = 0.0, config: Config = TS_CFG) -> Connection:
    """Active OPEN at ``at``; the peer's SYN,ACK carries TSval ``peer_tsval`` and echoes ours."""
    c = make_conn(config)
    c.open_active(at)
    (syn,) = pull(c, at)
    mine = ts(syn)
    assert mine is not None
    feed(c, seg(R(0), L(1), SYN, options=(Mss(MSS), Timestamps(peer_tsval, mine.tsval))), at=at)
    assert c.state is State.ESTABLISHED and c.ts_ok
    pull(c, at)
    return c


def scaled(config: Config, peer: Sequence[Option]) -> tuple[Connection, Segment]:
    """Active OPEN with ``config``; the peer's SYN,ACK carries ``peer``; our ACK of it."""
    c = make_conn(config)
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, window=50000, options=peer), at=0.0)
    (ack,) = pull(c, 0.0)
    return c, ack


# =============================================================================================
# §2 Window scale
# =============================================================================================


def test_2_2_both_no_scaling_in_either_direction_unless_both_syns_carry_the_option() -> None:
    """7323-2.2-BOTH: "Both sides MUST send Window Scale options in their <SYN> segments to enable
    window scaling in either direction." We offer a shift; the peer's SYN,ACK has none: our 1 MB
    window goes out unscaled (capped at 65535) and the peer's window fields are taken as they
    are."""
    c, ack = scaled(PLAIN.with_(window_scaling=True, rcv_buf=1 << 20), [Mss(MSS)])
    assert ack.window == 65535
    feed(c, seg(R(1), L(1), window=1000), at=0.1)
    assert c.snd_wnd == 1000


def test_2_2_nonsyn_a_window_scale_option_on_a_later_segment_is_ignored() -> None:
    """7323-2.2-NONSYN: "A Window Scale option in a segment without a <SYN> bit should be
    ignored." """
    c, _ = scaled(PLAIN.with_(window_scaling=True), [Mss(MSS)])
    feed(c, seg(R(1), L(1), window=100, options=[Nop(), WindowScale(7)]), at=0.1)
    assert c.snd_wnd == 100 and c.snd_wscale == 0


@pytest.mark.parametrize("passive", [False, True], ids=["syn", "syn-ack"])
def test_2_2_synwnd_the_window_of_our_syn_is_not_scaled(passive: bool) -> None:
    """7323-2.2-SYNWND: "The window field in a segment where the SYN bit is set (i.e., a <SYN> or
    <SYN,ACK>) MUST NOT be scaled." A 100000-octet buffer (shift 1): the SYN says 65535, the most
    an unscaled field can say, not 100000 >> 1."""
    config = PLAIN.with_(window_scaling=True, rcv_buf=100_000)
    c = make_conn(config)
    if passive:
        c.open_passive(0.0)
        feed(c, seg(R(0), None, SYN, options=[Mss(MSS), Nop(), WindowScale(2)]), at=0.0)
    else:
        c.open_active(0.0)
    (syn,) = pull(c, 0.0)
    assert syn.flags & SYN and syn.option(WindowScale) == WindowScale(1)
    assert syn.window == 65535


def test_2_3_shift_incoming_windows_left_shifted_outgoing_right_shifted() -> None:
    """7323-2.3-SHIFT: "The window field (SEG.WND) in the header of every incoming segment, with
    the exception of <SYN> segments, MUST be left-shifted by Snd.Wind.Shift bits before updating
    SND.WND", and outgoing "SEG.WND = RCV.WND >> Rcv.Wind.Shift". The SYN,ACK's 50000 is taken
    as it is; a later 1000 with shift 3 is 8000; our 256 KiB buffer goes out >> 3."""
    c, ack = scaled(PLAIN.with_(window_scaling=True, rcv_buf=256 * 1024), [Mss(MSS), Nop(), WindowScale(3)])
    assert c.snd_wnd == 50000
    assert (c.rcv_wscale, ack.window) == (3, (256 * 1024) >> 3)
    feed(c, seg(R(1), L(1), window=1000), at=0.1)
    assert c.snd_wnd == 8000


def test_2_4_rcv_a_segment_inside_any_window_we_advertised_is_honoured() -> None:
    """7323-2.4-RCV: "The receiver MUST honor, as in window, any segment that would have been in
    window for any <ACK> sent by the receiver." The first ACK offers a (scaled, rounded) window;
    the application reads nothing; a segment ending exactly at that first edge arrives before
    the data below it, after later ACKs offered less, and is held, then delivered."""
    c, ack = scaled(PLAIN.with_(window_scaling=True, rcv_buf=70001), [Mss(MSS), Nop(), WindowScale(2)])
    edge = (R(1) + (ack.window << c.rcv_wscale)) & 0xFFFFFFFF
    total = (edge - R(1)) & 0xFFFFFFFF
    seq, t = 1, 0.0
    while total - (seq - 1) > 2 * MSS:  # fill all but the last two segments' worth, in order
        t += 0.01
        feed(c, seg(R(seq), L(1), payload=b"x" * MSS), at=t)
        pull(c, t)
        seq += MSS
    last = total - (seq - 1) - MSS
    t += 0.01
    feed(c, seg(R(seq + MSS), L(1), payload=b"z" * last), at=t)  # out of order, up to the first edge
    pull(c, t)
    feed(c, seg(R(seq), L(1), payload=b"y" * MSS), at=t + 0.01)
    (final,) = pull(c, t + 0.01)
    assert final.ack == edge  # every octet below the first edge was taken
    assert c.readable == total


# =============================================================================================
# §3 Timestamps option
# =============================================================================================


def test_3_2_every_non_rst_segment_carries_timestamps_once_negotiated() -> None:
    """7323-3.2-EVERY: "Once TSopt has been successfully negotiated, that is both <SYN> and
    <SYN,ACK> contain TSopt, the TSopt MUST be sent in every non-<RST> segment for the duration
    of the connection" — ACKs, data, a challenge ACK, a window probe, a keep-alive, the FIN."""
    c = with_timestamps(config=TS_CFG.with_(keepalive=True, keepidle=10.0))
    seen: list[Segment] = []
    feed(c, seg(R(1), L(1), payload=b"q", options=[Timestamps(101, 0)]), at=0.5)
    seen += pull(c, 0.5)  # ACK
    c.send(b"data", 0.6)
    seen += pull(c, 0.6)  # data
    feed(c, seg(R(2), L(5), window=0, options=[Timestamps(102, 600)]), at=0.7)
    c.send(b"more", 0.8)
    seen += pull(c, 0.8) + pull(c, 2.0)  # a zero-window probe after one RTO
    feed(c, seg(R(900), None, SYN, options=[Timestamps(103, 0)]), at=2.5)
    seen += pull(c, 2.5)  # challenge ACK (RFC 5961 §4.2)
    feed(c, seg(R(2), L(6), window=1000, options=[Timestamps(104, 2000)]), at=2.6)
    seen += pull(c, 2.6)  # the rest of the data
    feed(c, seg(R(2), L(9), options=[Timestamps(105, 2600)]), at=2.7)
    keepalive = pull(c, 12.7)  # 10 s after the last segment received
    assert [(s.seq, s.payload) for s in keepalive] == [(L(8), b"")]
    c.close(13.0)
    fin = pull(c, 13.0)
    assert fin and fin[0].flags & FIN
    seen += keepalive + fin
    assert len(seen) == 7
    assert all(ts(s) is not None for s in seen)


def test_3_2_every_a_rst_carries_timestamps_too() -> None:
    """7323-3.2-EVERY: "... and SHOULD be sent in an <RST> segment (see Section 5.2 for
    details)." The RST of an ABORT."""
    c = with_timestamps()
    c.abort(1.0)
    (rst,) = pull(c, 1.0)
    assert rst.flags & RST and ts(rst) is not None


def test_3_2_tsecr_is_zero_without_the_ack_bit() -> None:
    """7323-3.2-TSECR: "If the ACK bit is not set in the outgoing TCP header, the sender of that
    segment SHOULD set the TSecr field to zero." Our SYN."""
    c = make_conn(TS_CFG)
    c.open_active(3.0)
    (syn,) = pull(c, 3.0)
    assert syn.ack is None and ts(syn) == Timestamps(3000, 0)


def test_3_2_missing_a_segment_without_timestamps_is_processed_as_linux_does() -> None:
    """7323-3.2-MISSING: "If a non-<RST> segment is received without a TSopt, a TCP SHOULD
    silently drop the segment." A deliberate deviation (docs/conformance.md, decisions): Linux
    processes such a segment (its fast option parser just notes that no timestamp was seen), and
    stacks that dropped them broke peers omitting TSopt on some segments (keep-alives). The data
    is taken and acknowledged, and our ACK still carries TSopt, echoing the last valid TSval."""
    c = with_timestamps()
    recent = c.ts_recent
    feed(c, seg(R(1), L(1), PSH, b"no timestamp"), at=1.0)
    (ack,) = pull(c, 1.0)
    assert ack.ack == R(13) and ts(ack) is not None and ts(ack).tsecr == recent
    assert c.receive(100, 1.0) == b"no timestamp"


def test_3_2_missing_never_aborts_the_connection() -> None:
    """7323-3.2-MISSING: "A TCP MUST NOT abort a TCP connection because any segment lacks an
    expected TSopt." Segments without TSopt, with data, a FIN: the connection stays open."""
    c = with_timestamps()
    feed(c, seg(R(1), L(1), PSH, b"x"), at=1.0)
    feed(c, seg(R(1), L(1)), at=1.1)
    pull(c, 1.1)
    assert c.state is State.ESTABLISHED and c.error is None


def test_3_2_unneg_timestamps_of_a_connection_that_did_not_negotiate_them_are_ignored() -> None:
    """7323-3.2-UNNEG: "If a TSopt is received on a connection where TSopt was not negotiated in
    the initial three-way handshake, the TSopt MUST be ignored and the packet processed normally."
    The peer's SYN,ACK had none; its later segment carries an old-looking TSopt: the data is
    taken (no PAWS) and our ACK carries no TSopt."""
    c = make_conn(TS_CFG)
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, options=[Mss(MSS)]), at=0.0)
    pull(c, 0.0)
    assert not c.ts_ok
    feed(c, seg(R(1), L(1), PSH, b"abc", options=[Timestamps(1, 99)]), at=0.5)
    expect(c, at=0.5, segments=[out(L(1), R(4), options=())])
    assert c.receive(10, 0.5) == b"abc"


# =============================================================================================
# §4 RTTM and which timestamp to echo
# =============================================================================================


def test_4_1_rttm_only_an_ack_that_advances_snd_una_may_give_a_sample() -> None:
    """7323-4.1-RTTM: "A TSecr value received in a segment MAY be used to update the averaged RTT
    measurement only if the segment advances the left edge of the send window, i.e., SND.UNA is
    increased." After a timeout (RTO 2 s, backed off), a duplicate ACK echoing the
    retransmission changes nothing; the ACK that advances SND.UNA does."""
    c = with_timestamps()
    c.send(b"x" * 100, 1.0)
    pull(c, 1.0)
    (again,) = pull(c, 2.0)
    echo = ts(again)
    assert echo is not None and c.rtt.rto == 2.0
    feed(c, seg(R(1), L(1), options=[Timestamps(110, echo.tsval)]), at=2.05)  # does not advance
    assert c.rtt.rto == 2.0 and c.rtt.backoff == 1
    feed(c, seg(R(1), L(101), options=[Timestamps(111, echo.tsval)]), at=2.06)
    assert c.rtt.backoff == 0 and c.rtt.rto < 2.0


def test_4_3_a_delayed_ack_echoes_the_earliest_unacknowledged_segment() -> None:
    """7323-4.3-RECENT: "(2) If: SEG.TSval >= TS.Recent and SEG.SEQ <= Last.ACK.sent then
    SEG.TSval is copied to TS.Recent; otherwise, it is ignored." and "(3) When a TSopt is sent,
    its TSecr field is set to the current TS.Recent value." — with delayed ACKs, the ACK of two
    segments echoes the first one's TSval."""
    c = with_timestamps(config=TS_CFG.with_(delayed_ack=0.2))
    feed(c, seg(R(1), L(1), payload=b"a" * 100, options=[Timestamps(200, 0)]), at=1.0)
    feed(c, seg(R(101), L(1), payload=b"b" * 100, options=[Timestamps(201, 0)]), at=1.05)
    (ack,) = pull(c, 1.2)
    assert ack.ack == R(201) and ts(ack) == Timestamps(1200, 200)


def test_4_3_an_out_of_order_segment_does_not_update_ts_recent() -> None:
    """7323-4.3-RECENT: an out-of-order segment lies beyond Last.ACK.sent, so its TSval is not
    recorded: the duplicate ACK echoes the TSval of the last segment that advanced RCV.NXT."""
    c = with_timestamps()
    feed(c, seg(R(1), L(1), payload=b"a" * 100, options=[Timestamps(300, 0)]), at=1.0)
    pull(c, 1.0)
    feed(c, seg(R(501), L(1), payload=b"c" * 100, options=[Timestamps(305, 0)]), at=1.1)
    (dup,) = pull(c, 1.1)
    assert dup.ack == R(101) and ts(dup) == Timestamps(1100, 300)


def test_4_3_the_segment_that_fills_a_hole_is_echoed() -> None:
    """7323-4.3-RECENT: the segment that fills the hole starts at Last.ACK.sent: its (latest)
    TSval becomes TS.Recent and is echoed."""
    c = with_timestamps()
    feed(c, seg(R(201), L(1), payload=b"c" * 100, options=[Timestamps(300, 0)]), at=1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(1), payload=b"a" * 200, options=[Timestamps(310, 0)]), at=1.1)
    (ack,) = pull(c, 1.1)
    assert ack.ack == R(301) and ts(ack) == Timestamps(1100, 310)


# =============================================================================================
# §5 PAWS
# =============================================================================================


def test_5_2_rst_a_reset_is_not_subject_to_paws() -> None:
    """7323-5.2-RST: "When an <RST> segment is received, it MUST NOT be subjected to the PAWS
    check by verifying an acceptable value in SEG.TSval, and information from the Timestamps
    option MUST NOT be used to update connection state information." A RST at RCV.NXT with an
    old TSval resets the connection."""
    c = with_timestamps(peer_tsval=5000)
    feed(c, seg(R(1), None, RST, options=[Timestamps(10, 0)]), at=1.0)
    assert c.state is State.CLOSED


def test_5_3_r1_an_old_timestamp_draws_an_ack_and_the_segment_is_dropped() -> None:
    """7323-5.3-R1: "If there is a Timestamps option in the arriving segment, SEG.TSval <
    TS.Recent, TS.Recent is valid ..., and if the RST bit is not set, then treat the arriving
    segment as not acceptable: Send an acknowledgment in reply ... and drop the segment." """
    c = with_timestamps(peer_tsval=5000)
    feed(c, seg(R(1), L(1), PSH, b"old", options=[Timestamps(4999, 0)]), at=1.0)
    (reply,) = pull(c, 1.0)
    assert reply.flags == ACK and reply.ack == R(1) and ts(reply) == Timestamps(1000, 5000)
    assert c.readable == 0


def test_5_4_the_timestamp_clock_ticks_between_1_ms_and_1_s() -> None:
    """7323-5.4-CLOCK: the RFC chooses "a timestamp clock frequency in the range 1 ms to 1 sec per
    tick", and the clock is monotone non-decreasing. Our TSvals over 2.5 s advance by 2500, one
    per ms."""
    c = with_timestamps()
    stamps = []
    for t in (1.0, 1.5, 3.5):
        c.send(b"t", t)
        for s in pull(c, t):
            stamp = ts(s)
            assert stamp is not None
            stamps.append(stamp.tsval)
        feed(c, seg(R(1), (c.snd_max) & 0xFFFFFFFF, options=[Timestamps(100, 0)]), at=t + 0.01)
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] == 2500


def test_5_5_ts_recent_is_no_longer_valid_after_a_long_idle_period() -> None:
    """7323-5.5-IDLE: R1 drops a segment only if "TS.Recent is valid", and §5.5 (Outdated
    Timestamps) invalidates TS.Recent once a connection has been idle for more than 24 days: the
    peer's 1 ms clock may have moved by more than half its range (Linux: TCP_PAWS_24DAYS). After
    25 idle days the peer's TSval has moved by 2,160,000,000 — "older" modulo 2**32 — and its
    data must still be taken."""
    c = with_timestamps(peer_tsval=1000)
    t = 25 * 86400.0
    fire(c, t)
    tsval = (1000 + int(t * 1000)) & 0xFFFFFFFF
    feed(c, seg(R(1), L(1), PSH, b"still here", options=[Timestamps(tsval, 0)]), at=t)
    pull(c, t)
    assert c.receive(100, t) == b"still here"
