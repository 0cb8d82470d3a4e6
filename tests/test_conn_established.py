"""Level 1: the ESTABLISHED state. Every segment kind against the acceptability test of RFC 9293
§3.10.7.4 (in the window, at its edges, outside), the RST/SYN/ACK rules with the RFC 5961
defences, reassembly, the receive window, sending (MSS, Nagle, PSH, backpressure, the peer's
window, sender SWS avoidance), NewReno fast retransmit, and the user calls.

After ``conn_established()``: SND.UNA = SND.NXT = L(1), RCV.NXT = R(1), RCV.WND = 65535, the
peer's window is 65535 and its MSS 1460; the congestion window is 3 × 1460 (RFC 5681 IW).
"""

from __future__ import annotations

import pytest
from tcpkit import (
    FIN,
    MSS,
    PLAIN,
    PSH,
    REMOTE_WND,
    RST,
    SYN,
    URG,
    WND,
    L,
    R,
    conn_established,
    events,
    expect,
    expect_nothing,
    feed,
    make_conn,
    out,
    pull,
    seg,
    timeline,
)

from synack.core.connection import (
    Connection,
    ConnectionAborted,
    ConnectionExists,
    ConnectionReset,
)
from synack.core.records import Event, State
from synack.core.wire import Mss, WindowScale

# =============================================================================================
# Receiving: the acceptability test (Table 6) and the text
# =============================================================================================


def test_established_data_at_rcv_nxt_is_taken_and_acknowledged() -> None:
    c = conn_established()
    feed(c, seg(R(1), L(1), PSH, b"abc"), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(4), window=WND - 3)])
    assert Event.READABLE in events(c)
    assert c.receive(100, 1.0) == b"abc"
    assert c.receive(100, 1.0) is None


def test_established_receive_sequence_numbers_wrap_past_2_32() -> None:
    """The peer's 16th octet has sequence number 0; RCV.NXT wraps and the ACK with it."""
    c = conn_established()
    feed(c, seg(R(1), L(1), payload=b"0123456789abcdefghij"), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), 5, window=WND - 20)])
    assert c.rcv_nxt == 5 == R(21)
    feed(c, seg(5, L(1), payload=b"KLM"), at=1.1)
    expect(c, at=1.1, segments=[out(L(1), 8, window=WND - 23)])
    assert c.receive(100, 1.1) == b"0123456789abcdefghijKLM"


def test_must_58_must_59_one_ack_for_a_batch_of_segments() -> None:
    """Segments processed together are acknowledged by one ACK."""
    c = conn_established()
    for i in range(3):
        feed(c, seg(R(1 + 10 * i), L(1), payload=bytes([65 + i]) * 10), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(31), window=WND - 30)])


def test_established_old_duplicate_data_draws_an_ack_and_is_dropped() -> None:
    """Entirely left of RCV.NXT: not acceptable: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (L9)."""
    c = conn_established()
    feed(c, seg(R(1), L(1), payload=b"first"), at=1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(1), payload=b"first"), at=1.1)
    expect(c, at=1.1, segments=[out(L(1), R(6))])
    assert c.receive(100, 1.1) == b"first"


def test_established_data_straddling_the_left_edge_is_trimmed() -> None:
    """Only the new part of a segment that straddles RCV.NXT is processed."""
    c = conn_established()
    feed(c, seg(R(1), L(1), payload=b"abcde"), at=1.0)
    pull(c, 1.0)
    feed(c, seg(R(4), L(1), payload=b"defgh"), at=1.1)  # "de" is old
    expect(c, at=1.1, segments=[out(L(1), R(9))])
    assert c.receive(100, 1.1) == b"abcdefgh"


def test_established_last_octet_of_the_window_is_acceptable() -> None:
    """RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND: one octet at RCV.NXT+RCV.WND-1 is taken (held out of
    order) and the duplicate ACK is sent (MAY-13)."""
    c = conn_established()
    feed(c, seg(R(WND), L(1), payload=b"z"), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1))])
    assert c.snapshot()["out_of_order"] == 1


def test_established_data_just_past_the_right_edge_draws_an_ack() -> None:
    c = conn_established()
    feed(c, seg(R(1 + WND), L(1), payload=b"z"), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1))])
    assert c.snapshot()["out_of_order"] == 0


def test_established_data_straddling_the_right_edge_keeps_what_fits() -> None:
    c = conn_established(PLAIN.with_(rcv_buf=1000))
    feed(c, seg(R(1), L(1), payload=b"x" * 1500), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1001), window=0)])
    assert c.readable == 1000


@pytest.mark.parametrize("seq,acceptable", [
    (R(0), False), (R(1), True), (R(1 + WND - 1), True), (R(1 + WND), True), (R(2 + WND), False),
    (R(1 - 70000), False),
], ids=["left-of-window", "rcv-nxt", "last-in-window", "right-edge", "past-right-edge", "far-old"])
def test_established_empty_segment_acceptability(seq: int, acceptable: bool) -> None:
    """SEG.LEN = 0, RCV.WND > 0: acceptable iff RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND (Table 6),
    widened by one to SEG.SEQ = RCV.NXT+RCV.WND — the RFC 9293 Appendix A.2 mitigation that stops
    an ACK war (docs/design.md); an unacceptable one draws an ACK, an acceptable bare ACK nothing."""
    c = conn_established()
    feed(c, seg(seq, L(1)), at=1.0)
    expect(c, at=1.0, segments=[] if acceptable else [out(L(1), R(1))])
    assert c.state is State.ESTABLISHED


def test_established_unacceptable_segment_changes_nothing() -> None:
    """L9: an unacceptable segment is answered with an ACK and changes nothing — not even a FIN,
    an ACK of our data or the peer's window."""
    c = conn_established()
    c.send(b"hello", 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1 + WND + 100), L(6), FIN, b"zz", window=7), at=1.1)
    expect(c, at=1.1, segments=[out(L(6), R(1))])
    assert (c.state, c.snd_una, c.snd_wnd) == (State.ESTABLISHED, L(1), REMOTE_WND)


def test_established_zero_window_accepts_only_an_empty_segment_at_rcv_nxt() -> None:
    """RCV.WND = 0: SEG.LEN = 0 is acceptable at RCV.NXT; any text is not, but its ACK is still
    processed (special allowance for ACKs, URGs and RSTs). MAY-8: the window stays closed for as
    long as the application does not read."""
    c = conn_established(PLAIN.with_(rcv_buf=1000))
    feed(c, seg(R(1), L(1), payload=b"x" * 1000), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1001), window=0)])
    c.send(b"abc", 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1001), L(4), payload=b"more"), at=1.1)  # text refused, ACK taken
    expect(c, at=1.1, segments=[out(L(4), R(1001), window=0)])
    assert c.snd_una == L(4)
    assert c.readable == 1000
    feed(c, seg(R(1001), L(4)), at=1.2)
    expect_nothing(c, at=1.2)
    feed(c, seg(R(1002), L(4)), at=1.3)
    expect(c, at=1.3, segments=[out(L(4), R(1001), window=0)])


def test_must_66_rst_processed_with_a_zero_window() -> None:
    c = conn_established(PLAIN.with_(rcv_buf=1000))
    feed(c, seg(R(1), L(1), payload=b"x" * 1000), at=1.0)
    pull(c, 1.0)
    feed(c, seg(R(1001), None, RST), at=1.1)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionReset)


def test_must_66_urg_processed_with_a_zero_window() -> None:
    c = conn_established(PLAIN.with_(rcv_buf=1000))
    feed(c, seg(R(1), L(1), payload=b"x" * 1000), at=1.0)
    pull(c, 1.0)
    events(c)
    feed(c, seg(R(1001), L(1), URG, urg=5), at=1.1)
    assert Event.URGENT in events(c)


def test_established_segment_without_ack_bit_is_dropped() -> None:
    """Fifth step: the ACK bit is off: drop the segment (no reply)."""
    c = conn_established()
    feed(c, seg(R(1), None, PSH, b"noack"), at=1.0)
    expect_nothing(c, at=1.0)
    assert c.readable == 0
    assert c.rcv_nxt == R(1)


def test_shld_31_may_13_out_of_order_data_is_held_and_draws_a_duplicate_ack() -> None:
    c = conn_established()
    feed(c, seg(R(11), L(1), payload=b"KLMNOPQRST"), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1))])
    assert c.readable == 0
    feed(c, seg(R(21), L(1), payload=b"uvw"), at=1.1)
    expect(c, at=1.1, segments=[out(L(1), R(1))])
    feed(c, seg(R(1), L(1), payload=b"ABCDEFGHIJ"), at=1.2)
    expect(c, at=1.2, segments=[out(L(1), R(24))])
    assert c.receive(100, 1.2) == b"ABCDEFGHIJKLMNOPQRSTuvw"


def test_established_out_of_order_fin_is_held_until_the_hole_fills() -> None:
    c = conn_established()
    feed(c, seg(R(6), L(1), FIN, b"world"), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1))])
    assert c.state is State.ESTABLISHED
    feed(c, seg(R(1), L(1), payload=b"hello"), at=1.1)
    expect(c, at=1.1, segments=[out(L(1), R(12))])
    assert c.state is State.CLOSE_WAIT
    assert c.receive(100, 1.1) == b"helloworld"
    assert c.receive(100, 1.1) == b""


def test_established_overlapping_out_of_order_segments_are_reassembled_once() -> None:
    c = conn_established()
    feed(c, seg(R(5), L(1), payload=b"EFGH"), at=1.0)
    feed(c, seg(R(7), L(1), payload=b"GHIJ"), at=1.0)
    feed(c, seg(R(3), L(1), payload=b"CDEF"), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1))])
    feed(c, seg(R(1), L(1), payload=b"AB"), at=1.1)
    expect(c, at=1.1, segments=[out(L(1), R(11))])
    assert c.receive(100, 1.1) == b"ABCDEFGHIJ"


def test_established_urgent_data_is_delivered_inline_and_signalled() -> None:
    """MUST-30/31/32: the urgent pointer is taken and the user signalled; the data stays inline."""
    c = conn_established()
    feed(c, seg(R(1), L(1), URG, b"!!!abc", urg=3), at=1.0)
    assert Event.URGENT in events(c)
    assert c.rcv_up == R(4)  # MUST-62: points at the first non-urgent octet
    assert c.receive(100, 1.0) == b"!!!abc"


def test_shld_2_rst_with_data_is_accepted() -> None:
    c = conn_established()
    feed(c, seg(R(1), None, RST, b"diagnostic text"), at=1.0)
    assert c.state is State.CLOSED


# =============================================================================================
# RST (RFC 9293 §3.10.7.4 second step, RFC 5961 §3)
# =============================================================================================


@pytest.mark.parametrize("ack", [None, L(1)], ids=["rst", "rst-ack"])
def test_established_rst_at_rcv_nxt_resets_the_connection(ack: int | None) -> None:
    """MUST-12: the user learns that the connection was reset (RESET event, ConnectionReset),
    not closed normally; queues are flushed."""
    c = conn_established()
    c.send(b"pending", 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), ack, RST), at=1.5)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionReset)
    assert events(c)[-2:] == [Event.RESET, Event.CLOSED]
    expect_nothing(c, at=1.5)  # never a RST for a RST
    assert c.next_deadline() is None  # queues flushed, timers off
    with pytest.raises(ConnectionReset):
        c.send(b"x", 2.0)
    with pytest.raises(ConnectionReset):
        c.receive(10, 2.0)


@pytest.mark.parametrize("seq", [R(2), R(1000), R(WND)])
def test_established_rst_in_window_not_at_rcv_nxt_draws_a_challenge_ack(seq: int) -> None:
    """RFC 5961 §3.2: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, then drop; the state is unchanged."""
    c = conn_established()
    feed(c, seg(seq, None, RST), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1))])
    assert c.state is State.ESTABLISHED


@pytest.mark.parametrize("seq", [R(0), R(1 + WND), R(-100000)], ids=["left", "right-edge", "far"])
def test_established_rst_outside_the_window_is_dropped_silently(seq: int) -> None:
    c = conn_established()
    feed(c, seg(seq, L(1), RST), at=1.0)
    expect_nothing(c, at=1.0)
    assert c.state is State.ESTABLISHED


def test_established_challenge_acks_are_rate_limited_per_second() -> None:
    """RFC 5961 §7: at most ``challenge_ack_limit`` challenge ACKs in any one second."""
    c = conn_established(PLAIN.with_(challenge_ack_limit=3))
    for i in range(3):
        feed(c, seg(R(50 + i), None, RST), at=5.0 + i * 0.1)
        expect(c, at=5.0 + i * 0.1, segments=[out(L(1), R(1))])
    feed(c, seg(R(60), None, RST), at=5.5)
    expect_nothing(c, at=5.5)
    feed(c, seg(R(5), None, SYN), at=5.9)  # a SYN challenge counts against the same budget
    expect_nothing(c, at=5.9)
    feed(c, seg(R(61), None, RST), at=6.0)
    expect(c, at=6.0, segments=[out(L(1), R(1))])
    assert c.state is State.ESTABLISHED


# =============================================================================================
# SYN in a synchronized state (RFC 5961 §4)
# =============================================================================================


@pytest.mark.parametrize("seq,ack", [(R(1), None), (R(500), None), (R(1), L(1)), (0x12345678, None)],
                         ids=["syn-at-rcv-nxt", "syn-in-window", "syn-ack-in-window", "syn-anywhere"])
def test_established_syn_draws_a_challenge_ack(seq: int, ack: int | None) -> None:
    c = conn_established()
    feed(c, seg(seq, ack, SYN), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1))])
    assert c.state is State.ESTABLISHED


def test_established_retransmitted_syn_ack_is_answered_with_an_ack() -> None:
    """Our third handshake segment was lost: the peer resends its SYN,ACK, which is old
    (SEG.SEQ < RCV.NXT): the ACK we send completes its handshake."""
    c = conn_established()
    feed(c, seg(R(0), L(1), SYN), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1))])
    assert c.state is State.ESTABLISHED


# =============================================================================================
# ACK field (§3.10.7.4 fifth step; RFC 5961 §5, MAY-12)
# =============================================================================================


def test_established_ack_of_unsent_data_draws_an_ack_and_drops_the_segment() -> None:
    """SEG.ACK > SND.NXT: send an ACK, drop the segment, return (its data is not taken)."""
    c = conn_established()
    c.send(b"hello", 1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1), PSH, b"hello")])
    feed(c, seg(R(1), L(10), payload=b"data"), at=1.1)
    expect(c, at=1.1, segments=[out(L(6), R(1))])
    assert (c.snd_una, c.readable, c.rcv_nxt) == (L(1), 0, R(1))


def test_may_12_ack_below_snd_una_minus_max_snd_wnd_draws_an_ack() -> None:
    """RFC 5961 §5: (SND.UNA − MAX.SND.WND) =< SEG.ACK =< SND.NXT, otherwise ACK and drop."""
    c = conn_established()
    feed(c, seg(R(1), L(1 - REMOTE_WND - 1), payload=b"inject"), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1))])
    assert c.readable == 0


def test_established_old_ack_within_max_snd_wnd_is_ignored_but_data_taken() -> None:
    """A duplicate ACK (SEG.ACK < SND.UNA) "can be ignored": the segment's text is processed."""
    c = conn_established()
    feed(c, seg(R(1), L(1 - 100), payload=b"ok"), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(3))])
    assert c.receive(10, 1.0) == b"ok"
    assert c.snd_una == L(1)


def test_established_ack_advances_snd_una_and_frees_the_send_buffer() -> None:
    c = conn_established()
    c.send(b"0123456789", 1.0)
    pull(c, 1.0)
    events(c)
    feed(c, seg(R(1), L(6)), at=1.1)
    assert c.snd_una == L(6)
    assert c.snapshot()["send_buffered"] == 5
    assert Event.SEND_SPACE in events(c)
    expect_nothing(c, at=1.1)
    feed(c, seg(R(1), L(11)), at=1.2)
    assert c.snd_una == L(11)
    assert c.next_deadline() is None  # all acknowledged: retransmission timer off


def test_established_send_sequence_numbers_wrap_past_2_32() -> None:
    """Our 255th data octet (L(255)) is the last before 2**32: 300 octets cross the wrap."""
    c = conn_established()
    data = bytes(range(256)) + bytes(44)
    c.send(data, 1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1), PSH, data)])
    assert L(301) == 45
    feed(c, seg(R(1), 45), at=1.1)
    assert c.snd_una == 45
    assert c.next_deadline() is None


def test_established_window_update_follows_wl1_and_wl2() -> None:
    """SND.WND is taken from a segment only if SND.WL1 < SEG.SEQ, or SND.WL1 = SEG.SEQ and
    SND.WL2 =< SEG.ACK: a reordered older segment does not roll the window back."""
    c = conn_established()
    c.send(b"0123456789", 1.0)
    pull(c, 1.0)
    feed(c, seg(R(6), L(11), payload=b"later", window=1000), at=1.1)  # arrives first
    assert (c.snd_wnd, c.snd_wl1, c.snd_wl2) == (1000, R(6), L(11))
    feed(c, seg(R(1), L(6), payload=b"early", window=9000), at=1.2)  # older: SEG.SEQ < WL1
    assert c.snd_wnd == 1000
    feed(c, seg(R(11), L(11), window=3000), at=1.3)
    assert (c.snd_wnd, c.snd_wl1) == (3000, R(11))
    feed(c, seg(R(11), L(6), window=50000), at=1.4)  # same SEQ, older ACK: SND.WL2 > SEG.ACK
    assert c.snd_wnd == 3000


def test_established_window_not_updated_from_an_ack_below_snd_una() -> None:
    """"If SND.UNA =< SEG.ACK =< SND.NXT, the send window should be updated": an ACK below
    SND.UNA (a duplicate that is only tolerated by RFC 5961 §5) never sets SND.WND."""
    c = conn_established()
    c.send(b"0123456789", 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(11), payload=b"abcde", window=3000), at=1.1)
    assert (c.snd_una, c.snd_wnd) == (L(11), 3000)
    feed(c, seg(R(6), L(6), payload=b"fghij", window=100), at=1.2)
    assert c.snd_wnd == 3000
    assert c.receive(100, 1.2) == b"abcdefghij"


# =============================================================================================
# Sending: MSS, PSH, Nagle, backpressure, the peer's window
# =============================================================================================


def test_established_send_six_octets_leaves_as_one_pushed_segment() -> None:
    """MUST-61: PSH on the last buffered segment."""
    c = conn_established()
    assert c.send(b"hello!", 1.0) == 6
    expect(c, at=1.0, segments=[out(L(1), R(1), PSH, b"hello!", window=WND)])


def test_must_61_shld_27_psh_only_on_the_segment_that_empties_the_buffer() -> None:
    c = conn_established()
    c.set_nodelay(True)
    data = bytes(range(250)) * 12  # 3000 octets
    c.send(data, 1.0)
    expect(c, at=1.0, segments=[
        out(L(1), R(1), 0, data[:1460]),
        out(L(1461), R(1), 0, data[1460:2920]),
        out(L(2921), R(1), PSH, data[2920:]),
    ])


def test_shld_28_segments_are_maximum_sized_and_limited_by_the_congestion_window() -> None:
    """RFC 5681 IW = 3 × 1460: three full segments, then one more per ACKed segment pair
    (slow start adds min(acked, MSS))."""
    c = conn_established()
    data = b"q" * 10000
    assert c.send(data, 1.0) == 10000
    expect(c, at=1.0, segments=[
        out(L(1), R(1), 0, data[:1460]),
        out(L(1461), R(1), 0, data[:1460]),
        out(L(2921), R(1), 0, data[:1460]),
    ])
    feed(c, seg(R(1), L(1461)), at=1.1)
    expect(c, at=1.1, segments=[out(L(4381), R(1), 0, data[:1460]), out(L(5841), R(1), 0, data[:1460])])


def test_established_send_buffer_backpressure_never_grows() -> None:
    """SEND accepts only what fits in ``snd_buf`` (PyTCP's unbounded buffer is the anti-model)."""
    c = conn_established(PLAIN.with_(snd_buf=1000))
    assert c.send(b"a" * 1500, 1.0) == 1000
    assert c.send(b"b", 1.0) == 0
    assert c.send_space == 0
    assert c.snapshot()["send_buffered"] == 1000
    expect(c, at=1.0, segments=[out(L(1), R(1), PSH, b"a" * 1000)])
    assert c.send(b"c", 1.0) == 0  # sent but unacknowledged octets still occupy the buffer
    feed(c, seg(R(1), L(401)), at=1.1)
    assert c.send_space == 400
    assert c.send(b"d" * 500, 1.1) == 400
    assert c.snapshot()["send_buffered"] == 1000


def test_shld_7_nagle_holds_a_small_segment_while_data_is_unacknowledged() -> None:
    """SHLD-7, MAY-16: small SENDs are aggregated while data is unacknowledged; MUST-60: they
    are released by the ACK, never held indefinitely."""
    c = conn_established()
    c.send(b"a", 1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1), PSH, b"a")])
    c.send(b"b", 1.01)
    expect_nothing(c, at=1.01)
    c.send(b"c", 1.02)
    expect_nothing(c, at=1.02)
    feed(c, seg(R(1), L(2)), at=1.1)
    expect(c, at=1.1, segments=[out(L(2), R(1), PSH, b"bc")])


def test_shld_7_nagle_lets_a_full_sized_segment_go() -> None:
    c = conn_established()
    c.send(b"a", 1.0)
    pull(c, 1.0)
    c.send(b"F" * MSS, 1.01)
    expect(c, at=1.01, segments=[out(L(2), R(1), PSH, b"F" * MSS)])


def test_must_17_nodelay_disables_nagle() -> None:
    c = conn_established(PLAIN.with_(nodelay=True))
    c.send(b"a", 1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1), PSH, b"a")])
    c.send(b"b", 1.01)
    expect(c, at=1.01, segments=[out(L(2), R(1), PSH, b"b")])


def test_must_17_set_nodelay_on_a_live_connection() -> None:
    c = conn_established()
    c.send(b"a", 1.0)
    pull(c, 1.0)
    c.send(b"b", 1.01)
    expect_nothing(c, at=1.01)
    c.set_nodelay(True)
    expect(c, at=1.02, segments=[out(L(2), R(1), PSH, b"b")])


def test_established_sending_stops_at_the_peer_window() -> None:
    c = conn_established()
    c.set_nodelay(True)
    feed(c, seg(R(1), L(1), window=2000), at=1.0)
    c.send(b"w" * 1500, 1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1), 0, b"w" * 1460), out(L(1461), R(1), PSH, b"w" * 40)])
    c.send(b"v" * 1000, 1.0)
    # Usable window 500 < MSS and less than half the largest window offered (65535): wait.
    expect_nothing(c, at=1.0)
    feed(c, seg(R(1), L(1501), window=2000), at=1.1)
    expect(c, at=1.1, segments=[out(L(1501), R(1), PSH, b"v" * 1000)])


def test_must_34_shrunk_window_sends_no_new_data() -> None:
    """SHLD-15: after the peer moved its right edge left, no new data is sent; the connection
    survives a negative usable window (MUST-34)."""
    c = conn_established()
    c.set_nodelay(True)
    c.send(b"s" * 2000, 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(1), window=100), at=1.1)  # 2000 octets in flight, window 100
    c.send(b"t" * 10, 1.1)
    expect_nothing(c, at=1.1)
    assert c.state is State.ESTABLISHED


def test_shld_16_after_a_shrink_old_data_inside_the_window_is_retransmitted() -> None:
    """SHLD-16: the unacknowledged data between SND.UNA and SND.UNA+SND.WND is retransmitted
    normally (at the RTO) — a retransmission is not held back by sender SWS avoidance."""
    c = conn_established(PLAIN.with_(nodelay=True))
    c.send(b"s" * 2000, 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(1), window=100), at=1.1)
    expect(c, at=2.0, segments=[out(L(1), R(1), 0, b"s" * 100)])


def test_must_38_sender_sws_override_timeout_sends_into_a_small_window() -> None:
    """§3.8.6.2.1 rule 4: a window that stays below both the MSS and half the largest window
    must not block the sender forever: the override timeout (0.1–1.0 s) forces a segment."""
    c = conn_established(PLAIN.with_(nodelay=True))
    c.send(b"o" * 3000, 1.0)
    assert [len(s.payload) for s in pull(c, 1.0)] == [1460, 1460, 80]
    feed(c, seg(R(1), L(3001), window=1000), at=1.1)  # all ACKed, the receiver shrank its buffer
    c.send(b"p" * 5000, 1.1)
    expect_nothing(c, at=1.1)
    sent = timeline(c, until=2.1)
    assert sent, "nothing sent into a 1000-octet window within 1 s: SWS deadlock"
    t, s = sent[0]
    assert t <= 2.1
    assert (s.seq, len(s.payload)) == (L(3001), 1000)


# =============================================================================================
# Fast retransmit and fast recovery (RFC 5681 §3.2, RFC 6582)
# =============================================================================================


def _three_segments_in_flight() -> tuple[Connection, bytes]:
    c = conn_established()
    data = bytes(range(256)) * 18  # 4608 octets
    c.send(data[:4380], 1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1), 0, data[:1460]), out(L(1461), R(1), 0, data[1460:2920]),
                                out(L(2921), R(1), PSH, data[2920:4380])])
    return c, data


def test_newreno_third_duplicate_ack_triggers_fast_retransmit() -> None:
    c, data = _three_segments_in_flight()
    feed(c, seg(R(1), L(1461)), at=1.05)  # the first segment arrives: past recover = ISS (RFC 6582)
    pull(c, 1.05)
    for i in range(2):
        feed(c, seg(R(1), L(1461)), at=1.1 + i * 0.01)
        expect_nothing(c, at=1.1 + i * 0.01)
    feed(c, seg(R(1), L(1461)), at=1.12)
    expect(c, at=1.12, segments=[out(L(1461), R(1), 0, data[1460:2920])])
    # ssthresh = max(FlightSize / 2, 2 × SMSS) = 1460 → 2920; cwnd = ssthresh + 3 × SMSS
    assert (c.cc.ssthresh, c.cc.cwnd) == (2920, 2920 + 3 * MSS)
    feed(c, seg(R(1), L(4381)), at=1.2)
    assert c.snapshot()["recovery"]["recovering"] is False
    assert c.snd_una == L(4381)


def test_newreno_no_fast_retransmit_of_the_first_data_segment() -> None:
    """RFC 6582 §3.2: recover starts at ISS, and duplicates of ISS+1 do not cover more than it:
    the first data segment lost is repaired by the retransmission timer."""
    c, data = _three_segments_in_flight()
    for i in range(3):
        feed(c, seg(R(1), L(1)), at=1.1 + i * 0.01)
        expect_nothing(c, at=1.1 + i * 0.01)
    expect(c, at=2.0, segments=[out(L(1), R(1), 0, data[:1460])])


def test_newreno_duplicate_ack_with_data_or_window_change_is_not_counted() -> None:
    """RFC 5681 §2 "DUPLICATE ACKNOWLEDGMENT": no data, same window, outstanding data."""
    c, _ = _three_segments_in_flight()
    feed(c, seg(R(1), L(1), payload=b"x"), at=1.1)
    feed(c, seg(R(2), L(1), window=40000), at=1.1)
    feed(c, seg(R(2), L(1)), at=1.1)
    feed(c, seg(R(2), L(1)), at=1.1)
    got = pull(c, 1.1)
    assert [(s.seq, s.ack, s.payload) for s in got] == [(L(4381), R(2), b"")]


def test_newreno_partial_ack_retransmits_the_next_hole_at_once() -> None:
    c, data = _three_segments_in_flight()
    feed(c, seg(R(1), L(1461)), at=1.05)
    pull(c, 1.05)
    for _ in range(3):
        feed(c, seg(R(1), L(1461)), at=1.1)
    expect(c, at=1.1, segments=[out(L(1461), R(1), 0, data[1460:2920])])
    feed(c, seg(R(1), L(2921)), at=1.2)  # partial: the third segment was lost too
    expect(c, at=1.2, segments=[out(L(2921), R(1), PSH, data[2920:4380])])
    assert c.snapshot()["recovery"]["recovering"]


# =============================================================================================
# User calls in ESTABLISHED (§3.10.1–§3.10.6; L4, L12)
# =============================================================================================


def test_established_open_says_already_exists() -> None:
    c = conn_established()
    with pytest.raises(ConnectionExists):
        c.open_active(1.0)
    with pytest.raises(ConnectionExists):
        c.open_passive(1.0)
    assert c.state is State.ESTABLISHED
    expect_nothing(c, at=1.0)


def test_established_receive_returns_none_when_nothing_is_there() -> None:
    c = conn_established()
    assert c.receive(10, 1.0) is None
    feed(c, seg(R(1), L(1), payload=b"abcdef"), at=1.0)
    assert c.receive(4, 1.0) == b"abcd"
    assert c.receive(4, 1.0) == b"ef"


def test_established_close_sends_fin_and_enters_fin_wait_1() -> None:
    c = conn_established()
    c.close(1.0)
    assert c.state is State.FIN_WAIT_1
    expect(c, at=1.0, segments=[out(L(1), R(1), FIN)])


def test_l12_abort_sends_rst_seq_snd_nxt_and_discards_everything() -> None:
    """§3.10.5: <SEQ=SND.NXT><CTL=RST>, queues flushed, CLOSED at once — no TIME-WAIT."""
    c = conn_established()
    c.send(b"sent", 1.0)
    pull(c, 1.0)
    c.send(b"queued but never sent", 1.0)
    feed(c, seg(R(1), L(1), payload=b"unread"), at=1.0)
    pull(c, 1.0)
    c.abort(1.1)
    assert c.state is State.CLOSED
    expect(c, at=1.1, segments=[out(L(5), None, RST)])
    assert c.next_deadline() is None
    assert isinstance(c.error, ConnectionAborted)


def test_established_status_reports_the_tcb() -> None:
    c = conn_established()
    st = c.status()
    assert st["state"] == "ESTABLISHED"
    assert (st["snd_una"], st["snd_nxt"], st["rcv_nxt"], st["rcv_wnd"]) == (L(1), L(1), R(1), WND)


# =============================================================================================
# Receive window: shrinking as data is buffered, reopening with SWS avoidance
# =============================================================================================


def test_shld_14_right_window_edge_never_moves_left() -> None:
    c = conn_established(PLAIN.with_(rcv_buf=4000))
    edge = R(1 + 4000)
    for i in range(4):
        feed(c, seg(R(1 + 1000 * i), L(1), payload=b"r" * 1000), at=1.0 + i)
        (s,) = pull(c, 1.0 + i)
        assert s.ack is not None and (s.ack + s.window) & 0xFFFFFFFF == edge
    assert s.window == 0


def test_must_39_receiver_sws_avoidance_reopens_the_window_by_whole_segments() -> None:
    """§3.8.6.2.2: the right edge moves only when the space grew by min(RCV.BUFF/2, MSS)."""
    c = conn_established(PLAIN.with_(rcv_buf=4000))
    feed(c, seg(R(1), L(1), payload=b"r" * 4000), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(4001), window=0)])
    assert len(c.receive(1000, 1.1) or b"") == 1000
    expect_nothing(c, at=1.1)  # 1000 < min(2000, 1460): no window update
    assert len(c.receive(459, 1.2) or b"") == 459
    expect_nothing(c, at=1.2)
    assert len(c.receive(1, 1.3) or b"") == 1
    expect(c, at=1.3, segments=[out(L(1), R(4001), window=1460)])
    assert len(c.receive(3000, 1.4) or b"") == 2540
    expect(c, at=1.4, segments=[out(L(1), R(4001), window=4000)])


@pytest.mark.parametrize("rcv_buf,shift", [(70001, 1), (300_003, 3), (1_000_001, 4)])
def test_rfc7323_a_peer_filling_the_scaled_window_it_was_given_loses_nothing(rcv_buf: int,
                                                                             shift: int) -> None:
    """RFC 7323 §2.3: the peer reads our window as SEG.WND << Rcv.Wind.Shift, and RFC 9293
    §3.8.6 lets it send up to that edge. Every octet it sends within the edge it was told is
    accepted and acknowledged — filling each advertised window exactly, segment after segment —
    and what we hold never exceeds the buffer by more than one rounding step (2**shift − 1)."""
    cfg = PLAIN.with_(window_scaling=True, rcv_buf=rcv_buf)
    c = make_conn(cfg)
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, options=(Mss(MSS), WindowScale(2))), at=0.0)
    assert c.rcv_wscale == shift
    (ack,) = pull(c, 0.0)  # our ACK of the SYN,ACK: its window is scaled (only SYNs' are not, §2.2)
    seq, t, edge = 1, 0.0, R(1) + (ack.window << shift)
    while True:
        t += 0.01
        n = min(MSS, (edge - R(seq)) & 0xFFFFFFFF)  # up to the edge the last ACK gave
        if n <= 0:
            break
        feed(c, seg(R(seq), L(1), payload=b"x" * n), at=t)
        (ack,) = pull(c, t)
        seq += n
        assert ack.ack == R(seq), "an octet inside the advertised window was not taken"
        edge = max(edge, ack.ack + (ack.window << shift))
        assert c.readable < rcv_buf + (1 << shift)
    assert c.readable >= rcv_buf - (1 << shift) + 1


def test_rfc7323_rounding_never_shrinks_the_window() -> None:
    """SHLD-14 (RFC 9293 §3.8.6.2.2): the right edge never moves left. With a scale factor the
    field is rounded down where that keeps the edge, and up where rounding down would shrink."""
    cfg = PLAIN.with_(window_scaling=True, rcv_buf=70001)
    c = make_conn(cfg)
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, options=(Mss(MSS), WindowScale(2))), at=0.0)
    (ack,) = pull(c, 0.0)
    right = R(1) + ack.window
    for k, n in enumerate((1000, 333, 1, 777, 1460, 5)):
        feed(c, seg(R(1 + k * 5000 % 60000), L(1), payload=b"y" * n), at=0.1 + k)
        for out_seg in pull(c, 0.1 + k):
            new = (out_seg.ack + (out_seg.window << 1)) & 0xFFFFFFFF
            assert ((new - right) & 0xFFFFFFFF) < 1 << 31, "the right edge moved left"
            right = new


def test_established_bare_fin_ahead_of_a_hole_waits_for_the_data() -> None:
    c = conn_established()
    feed(c, seg(R(6), L(1), FIN), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1))])
    assert c.state is State.ESTABLISHED
    feed(c, seg(R(1), L(1), payload=b"12345"), at=1.1)
    expect(c, at=1.1, segments=[out(L(1), R(7))])
    assert c.state is State.CLOSE_WAIT
    assert c.receive(10, 1.1) == b"12345"
    assert c.receive(10, 1.1) == b""


def test_events_stay_bounded_when_nobody_drains_them() -> None:
    """Events are readiness reports: a long transfer that nobody drains keeps one entry per kind."""
    c = conn_established()
    for i in range(1000):
        feed(c, seg(R(1 + i), L(1), payload=b"x"), at=1.0 + i * 0.001)
        pull(c, 1.0 + i * 0.001)
    assert c.readable == 1000
    assert len(c.events) == len(set(c.events)) <= len(type(c.events[0]))
