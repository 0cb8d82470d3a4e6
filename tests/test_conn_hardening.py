"""The hardening of issue 10 at the level of one connection: ACK generation judged by the peer's
segment size, data kept after a RST, timers that must fire, the MSS floor, and the rate limits on
replies to unacceptable segments. Each test cites the sentence (RFC) or the Linux behaviour
(where the RFC leaves the choice) it checks.

Level 1: exact segments at exact virtual times (tcpkit)."""

from __future__ import annotations

import pytest
from tcpkit import (
    MSS,
    PLAIN,
    L,
    R,
    conn_established,
    expect,
    expect_nothing,
    feed,
    make_conn,
    out,
    pull,
    seg,
)

from synack.core.connection import Config, ConnectionReset, ConnectionTimedOut
from synack.core.records import State
from synack.core.wire import ACK, FIN, PSH, RST, SYN, Mss

DELAYED = PLAIN.with_(delayed_ack=0.2)


# =============================================================================================
# RFC 5681 §4.2 / RFC 9293 §3.8.6.3 (SHLD-19): "an ACK SHOULD be generated for at least every
# second full-sized segment" — full-sized for the sender, whose MSS may be smaller than ours.
# =============================================================================================


@pytest.mark.parametrize("size", [1460, 1000, 536])
def test_every_second_full_sized_segment_of_the_peer_is_acknowledged_at_once(size: int) -> None:
    c = conn_established(DELAYED)
    feed(c, seg(R(1), L(1), payload=b"a" * size), at=1.0)
    expect_nothing(c, at=1.0)  # the first: delayed
    feed(c, seg(R(1 + size), L(1), payload=b"b" * size), at=1.01)
    expect(c, at=1.01, segments=[out(L(1), R(1 + 2 * size))])  # the second: at once


def test_small_segments_are_acknowledged_after_two_full_segments_worth_of_data() -> None:
    """SHLD-19's other arm: "or 2*RMSS bytes of new data" — many small segments still get an
    ACK once as much data as two of the peer's full segments arrived, not only after the delay."""
    c = conn_established(DELAYED)
    feed(c, seg(R(1), L(1), payload=b"a" * 1000), at=1.0)  # the peer's segments are 1000 octets
    feed(c, seg(R(1001), L(1), payload=b"b" * 1000), at=1.0)
    pull(c, 1.0)
    seq, t = 2001, 1.1
    for _ in range(7):  # 7 × 250 = 1750 octets: less than 2 × 1000, no ACK yet
        feed(c, seg(R(seq), L(1), payload=b"c" * 250), at=t)
        expect_nothing(c, at=t)
        seq += 250
        t += 0.01
    feed(c, seg(R(seq), L(1), payload=b"c" * 250), at=t)  # 2000 octets: ACK now
    expect(c, at=t, segments=[out(L(1), R(seq + 250))])


def test_a_lone_segment_is_still_acknowledged_after_the_delay() -> None:
    c = conn_established(DELAYED)
    feed(c, seg(R(1), L(1), payload=b"a" * 1000), at=1.0)
    expect_nothing(c, at=1.199)
    expect(c, at=1.2, segments=[out(L(1), R(1001))])


# =============================================================================================
# RFC 9293 §3.10.7.4, second step (RST in ESTABLISHED/FIN-WAIT/CLOSE-WAIT): "any outstanding
# RECEIVEs and SEND should receive 'reset' responses" — a reset is never a clean end of stream.
# What was received in order and acknowledged before it stays readable (as Linux keeps it).
# =============================================================================================


def test_data_and_fin_then_rst_in_close_wait_is_data_then_reset_not_end_of_stream() -> None:
    c = conn_established()
    feed(c, seg(R(1), L(1), FIN | PSH, payload=b"hello"), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(7))])
    assert c.state is State.CLOSE_WAIT
    feed(c, seg(R(7), None, RST), at=1.1)
    assert c.state is State.CLOSED
    assert c.receive(100, 1.2) == b"hello"  # acknowledged to the peer: not lost
    with pytest.raises(ConnectionReset):
        c.receive(100, 1.3)  # and then "connection reset", never b"" (a clean close)


def test_rst_in_established_keeps_what_was_received_then_reports_the_reset() -> None:
    c = conn_established()
    feed(c, seg(R(1), L(1), payload=b"abc"), at=1.0)
    pull(c, 1.0)
    feed(c, seg(R(4), None, RST), at=1.1)
    assert c.receive(2, 1.2) == b"ab"
    assert c.receive(100, 1.2) == b"c"
    with pytest.raises(ConnectionReset):
        c.receive(100, 1.2)


def test_abort_still_discards_what_was_not_read() -> None:
    """§3.10.5 ABORT: "All queued SENDs and RECEIVEs should be given 'connection reset'"."""
    c = conn_established()
    feed(c, seg(R(1), L(1), payload=b"abc"), at=1.0)
    c.abort(1.1)
    with pytest.raises(Exception, match="aborted"):
        c.receive(100, 1.2)


# =============================================================================================
# Timers that must fire
# =============================================================================================


def test_r2_ends_probing_into_a_one_octet_window_of_a_silent_peer() -> None:
    """MUST-20 (§3.8.3): R2 seconds of retransmissions without an answer close the connection.
    The SWS override (§3.8.6.2.1) sends into a window too small for a segment; those octets are
    data, and a peer that never answers must not keep the connection alive for ever."""
    c = conn_established(PLAIN.with_(r2=100.0))
    feed(c, seg(R(1), L(1), window=1), at=1.0)  # the peer offers one octet, then goes silent
    c.send(b"x" * 10, 1.0)
    t, sent = 1.0, 0
    while t < 400.0:
        sent += len(pull(c, t))
        if c.state is State.CLOSED:
            break
        d = c.next_deadline()
        assert d is not None, "no timer runs: the connection would live for ever"
        t = d
    assert c.state is State.CLOSED and isinstance(c.error, ConnectionTimedOut)
    assert sent >= 3 and 100.0 <= t - 1.0 <= 170.0


def test_r2_is_not_reached_while_the_peer_answers_zero_window_probes() -> None:
    """MUST-37: as long as probes are acknowledged (with a zero window) the connection stays."""
    c = conn_established(PLAIN.with_(r2=100.0))
    feed(c, seg(R(1), L(1), window=0), at=1.0)
    c.send(b"x" * 10, 1.0)
    t = 1.0
    while t < 500.0:
        probes = [s for s in pull(c, t) if s.payload]
        if probes:
            feed(c, seg(R(1), L(1), window=0), at=t + 0.01)  # "still no room"
        d = c.next_deadline()
        assert d is not None
        t = d
    assert c.state is State.ESTABLISHED


# =============================================================================================
# The MSS floor (Linux tcp_min_snd_mss = 48): a peer cannot make us send 1-octet segments.
# =============================================================================================


@pytest.mark.parametrize("peer_mss,want", [(1, 48), (47, 48), (48, 48), (500, 500)])
def test_the_peers_mss_is_floored(peer_mss: int, want: int) -> None:
    c = make_conn(PLAIN)
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, options=[Mss(peer_mss)]), at=0.0)
    assert c.snd_mss == want
    c.send(b"z" * 200, 0.1)
    pull(c, 0.0)
    assert all(len(s.payload) <= want for s in pull(c, 0.1))


def test_the_floor_is_configurable() -> None:
    c = make_conn(PLAIN.with_(min_snd_mss=100))
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, options=[Mss(1)]), at=0.0)
    assert c.snd_mss == 100
    with pytest.raises(ValueError, match="min_snd_mss"):
        Config(min_snd_mss=0)


# =============================================================================================
# Rate limits on replies to unacceptable segments (RFC 5961 §7; Linux tcp_invalid_ratelimit)
# =============================================================================================


def test_out_of_window_segments_draw_at_most_one_ack_per_half_second() -> None:
    c = conn_established()
    far = R(1 + 10 * 65536)  # far beyond the window
    answered = 0
    for k in range(100):  # 100 injected segments within one second
        t = 1.0 + k * 0.01
        feed(c, seg(far, L(1), payload=b"x"), at=t)
        answered += len(pull(c, t))
    assert answered == 2  # at 1.0 and at 1.5
    assert c.snapshot()["replies_rate_limited"] == 98
    assert c.state is State.ESTABLISHED


def test_a_retransmission_of_data_we_hold_is_acknowledged_every_time() -> None:
    """Old data sent again means our ACK was lost; only an ACK stops it (not rate-limited, as
    Linux answers segments at or after its RCV.WUP)."""
    c = conn_established()
    feed(c, seg(R(1), L(1), payload=b"abc"), at=1.0)
    pull(c, 1.0)
    for k in range(5):
        t = 1.1 + k * 0.01
        feed(c, seg(R(1), L(1), payload=b"abc"), at=t)
        expect(c, at=t, segments=[out(L(1), R(4))])


def test_out_of_window_syns_go_through_the_challenge_ack_limit() -> None:
    """RFC 5961 §4.2: a SYN in a synchronized state draws a challenge ACK "irrespective of the
    sequence number", limited per §7 (``challenge_ack_limit`` per second)."""
    c = conn_established(PLAIN.with_(challenge_ack_limit=3))
    answered = 0
    for k in range(20):
        t = 1.0 + k * 0.01
        feed(c, seg(R(1 + 1_000_000 + k), None, SYN), at=t)
        got = pull(c, t)
        assert all(s.flags == ACK and s.seq == L(1) and s.ack == R(1) for s in got)
        answered += len(got)
    assert answered == 3
    assert c.state is State.ESTABLISHED


def test_acks_of_unsent_data_go_through_the_challenge_ack_limit() -> None:
    c = conn_established(PLAIN.with_(challenge_ack_limit=2))
    answered = 0
    for k in range(10):
        t = 1.0 + k * 0.01
        feed(c, seg(R(1), L(1 + 5000)), at=t)  # acknowledges what was never sent
        answered += len(pull(c, t))
    assert answered == 2


def test_a_retransmitted_fin_in_time_wait_is_always_acknowledged() -> None:
    """L10: every retransmission of the peer's FIN is acknowledged again (the peer is in
    LAST-ACK waiting for exactly that)."""
    c = conn_established()
    c.close(1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(2), FIN), at=1.1)
    pull(c, 1.1)
    assert c.state is State.TIME_WAIT
    for k in range(4):
        t = 1.2 + k * 0.05
        feed(c, seg(R(1), L(2), FIN), at=t)
        expect(c, at=t, segments=[out(L(2), R(2))])


def test_unacceptable_acks_in_syn_received_draw_rate_limited_rsts() -> None:
    c = make_conn(PLAIN)
    c.open_passive(0.0)
    feed(c, seg(R(0), None, SYN, options=[Mss(MSS)]), at=0.0)
    pull(c, 0.0)
    rsts = 0
    for k in range(10):
        t = 0.1 + k * 0.01
        feed(c, seg(R(1), L(100)), at=t)
        rsts += sum(1 for s in pull(c, t) if s.flags & RST)
    assert rsts == 1 and c.state is State.SYN_RECEIVED
