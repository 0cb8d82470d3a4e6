"""Level 1: every timer of one connection, at exact virtual times.

Retransmission (RFC 6298 with Karn and backoff; R1/R2 of RFC 9293 §3.8.3), SYN retransmission,
TIME-WAIT (2×MSL) and the FIN retransmissions of the close (L10), delayed ACK (§3.8.6.3),
keep-alive (§3.8.4), zero-window probing (§3.8.6.1), the FIN-WAIT-2 timeout and the user timeout.

The factories run the handshake at t = 0 with a zero RTT, so the RTO is the 1 s minimum until a
test feeds other samples; backoff doubles it to at most ``rto_max`` = 60 s.
"""

from __future__ import annotations

import itertools

import pytest
from tcpkit import (
    FIN,
    MSS,
    PLAIN,
    PSH,
    SYN,
    L,
    R,
    conn_closing,
    conn_established,
    conn_fin_wait_1,
    conn_fin_wait_2,
    conn_last_ack,
    conn_syn_received,
    conn_syn_sent,
    conn_time_wait,
    events,
    expect,
    expect_nothing,
    feed,
    fire,
    make_conn,
    out,
    pull,
    seg,
    timeline,
)

from synack.core.connection import Config, ConnectionTimedOut
from synack.core.records import Event, State

# =============================================================================================
# Retransmission timer (RFC 6298, MUST-18, MUST-19)
# =============================================================================================


def test_retransmission_backoff_example_of_the_architecture() -> None:
    """Six octets at t=0; nothing at RTO−1 ms; the same segment at exactly RTO; nothing at
    3·RTO−1 ms; again at 3·RTO (the RTO doubled)."""
    c = conn_established()
    rto = c.rtt.rto
    assert rto == 1.0
    c.send(b"hello!", 0.0)
    data = out(L(1), R(1), PSH, b"hello!")
    expect(c, at=0.0, segments=[data])
    expect_nothing(c, at=rto - 0.001)
    expect(c, at=rto, segments=[data])
    expect_nothing(c, at=3 * rto - 0.001)
    expect(c, at=3 * rto, segments=[data])
    expect_nothing(c, at=7 * rto - 0.001)
    expect(c, at=7 * rto, segments=[data])


def test_must_19_rto_backoff_doubles_up_to_rto_max() -> None:
    c = conn_established(PLAIN.with_(r2=1000.0))
    c.send(b"x", 0.0)
    pull(c, 0.0)
    times = [t for t, _ in timeline(c, until=400.0)]
    assert times == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0, 183.0, 243.0, 303.0, 363.0]


def test_must_19_timeout_collapses_the_congestion_window_to_one_segment() -> None:
    """RFC 5681 §3.1: after a timeout cwnd = 1 SMSS: only the first segment is resent; slow start
    then opens the window again."""
    c = conn_established()
    data = bytes(range(256)) * 18
    c.send(data[:4380], 0.0)
    assert len(pull(c, 0.0)) == 3
    expect(c, at=1.0, segments=[out(L(1), R(1), 0, data[:1460])])
    assert (c.cc.cwnd, c.cc.ssthresh) == (MSS, 2190 if 2 * MSS <= 4380 // 2 else 2 * MSS)
    feed(c, seg(R(1), L(1461)), at=1.2)
    expect(c, at=1.2, segments=[out(L(1461), R(1), 0, data[1460:2920]),
                                out(L(2921), R(1), PSH, data[2920:4380])])


def test_rto_timer_restarts_when_new_data_is_acknowledged() -> None:
    """RFC 6298 §5.3: an ACK of new data restarts the timer for the rest."""
    c = conn_established(PLAIN.with_(nodelay=True))
    c.send(b"a", 0.0)
    pull(c, 0.0)
    c.send(b"b", 0.5)
    pull(c, 0.5)
    feed(c, seg(R(1), L(2)), at=0.8)
    assert c.next_deadline() == pytest.approx(0.8 + c.rtt.rto)
    expect_nothing(c, at=1.0)
    expect(c, at=0.8 + c.rtt.rto, segments=[out(L(2), R(1), PSH, b"b")])


def test_rto_from_samples_follows_rfc_6298() -> None:
    """SRTT, RTTVAR and RTO after the SYN sample (0.1 s) and one data sample (0.25 s)."""
    cfg = PLAIN.with_(rto_min=0.2)
    c = conn_syn_sent(cfg, at=0.0)
    feed(c, seg(R(0), L(1), SYN), at=0.1)
    pull(c, 0.1)
    assert (c.rtt.srtt, c.rtt.rttvar, c.rtt.rto) == pytest.approx((0.1, 0.05, 0.3))
    c.send(b"data", 1.0)
    pull(c, 1.0)
    assert c.next_deadline() == pytest.approx(1.3)
    feed(c, seg(R(1), L(5)), at=1.25)  # a 0.25 s sample
    # RTTVAR = 3/4·0.05 + 1/4·|0.1 − 0.25| = 0.075; SRTT = 7/8·0.1 + 1/8·0.25 = 0.11875
    assert (c.rtt.srtt, c.rtt.rttvar) == pytest.approx((0.11875, 0.075))
    assert c.rtt.rto == pytest.approx(0.11875 + 4 * 0.075)
    c.send(b"more", 2.0)
    pull(c, 2.0)
    assert c.next_deadline() == pytest.approx(2.0 + 0.41875)


def test_must_18_karn_no_sample_from_a_retransmitted_segment() -> None:
    """The ACK of a retransmitted segment gives no RTT sample, and the backed-off RTO stays until
    a segment that was sent once is acknowledged."""
    c = conn_established()
    srtt_before = c.rtt.srtt
    c.send(b"k", 0.0)
    pull(c, 0.0)
    expect(c, at=1.0, segments=[out(L(1), R(1), PSH, b"k")])
    feed(c, seg(R(1), L(2)), at=1.9)  # ambiguous: 1.9 s after the first, 0.9 s after the second
    assert c.rtt.srtt == srtt_before
    assert c.rtt.rto == 2.0
    c.send(b"m", 2.0)
    pull(c, 2.0)
    assert c.next_deadline() == 4.0  # still the backed-off RTO
    feed(c, seg(R(1), L(3)), at=2.25)
    assert c.rtt.srtt is not None and c.rtt.srtt > srtt_before  # a valid sample was taken
    assert c.rtt.rto == 1.0  # recomputed (and clamped to the 1 s minimum)


def test_shld_10_shld_9_r1_delivery_problem_reported_once_after_three_retransmissions() -> None:
    """MUST-47: the soft error is reported asynchronously (Event.DELIVERY_PROBLEM), once."""
    c = conn_established()
    assert Config().r1 >= 3
    c.send(b"r", 0.0)
    pull(c, 0.0)
    seen: list[tuple[float, list[Event]]] = []
    for t in (1.0, 3.0, 7.0, 15.0):
        pull(c, t)
        seen.append((t, events(c)))
    assert seen == [(1.0, []), (3.0, []), (7.0, [Event.DELIVERY_PROBLEM]), (15.0, [])]
    assert c.state is State.ESTABLISHED


def test_must_20_shld_11_r2_closes_the_connection_after_100_seconds() -> None:
    c = conn_established()
    assert Config().r2 >= 100
    c.send(b"lost", 0.0)
    pull(c, 0.0)
    times = [t for t, _ in timeline(c, until=99.999)]
    assert times == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0]
    assert c.state is State.ESTABLISHED
    assert c.next_deadline() == 100.0
    expect_nothing(c, at=100.0)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionTimedOut)
    assert Event.TIMED_OUT in events(c)
    with pytest.raises(ConnectionTimedOut):
        c.send(b"x", 100.0)


def test_must_21_r2_is_set_per_connection() -> None:
    c = conn_established(PLAIN.with_(r2=10.0))
    c.send(b"lost", 0.0)
    pull(c, 0.0)
    assert [t for t, _ in timeline(c, until=9.999)] == [1.0, 3.0, 7.0]
    fire(c, 10.0)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionTimedOut)


def test_user_timeout_aborts_when_data_stays_unacknowledged() -> None:
    """§3.10.8 USER TIMEOUT: flush, "connection aborted due to user timeout", CLOSED."""
    c = conn_established(PLAIN.with_(user_timeout=5.0))
    c.send(b"u", 0.0)
    pull(c, 0.0)
    assert [t for t, _ in timeline(c, until=4.999)] == [1.0, 3.0]
    fire(c, 5.0)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionTimedOut)


def test_no_timer_runs_on_an_idle_established_connection() -> None:
    c = conn_established()
    assert c.next_deadline() is None
    expect_nothing(c, at=100000.0)
    assert c.state is State.ESTABLISHED


# =============================================================================================
# SYN and SYN,ACK retransmission (L16, MUST-22, MUST-23)
# =============================================================================================


def test_l16_lost_syn_is_retransmitted_with_exponential_backoff() -> None:
    c = conn_syn_sent()
    syn = out(L(0), None, SYN)
    expect_nothing(c, at=0.999)
    expect(c, at=1.0, segments=[syn])
    expect_nothing(c, at=2.999)
    expect(c, at=3.0, segments=[syn])
    expect(c, at=7.0, segments=[syn])
    feed(c, seg(R(0), L(1), SYN), at=8.0)
    assert c.state is State.ESTABLISHED
    expect(c, at=8.0, segments=[out(L(1), R(1))])


def test_must_23_syn_retransmitted_for_at_least_three_minutes_then_timed_out() -> None:
    """L16: connect() to a silent host times out — after r2_syn (180 s by default)."""
    assert Config().r2_syn >= 180
    c = conn_syn_sent()
    sent = timeline(c, until=179.999)
    assert [t for t, _ in sent] == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0]
    assert all(s.flags == SYN and s.seq == L(0) for _, s in sent)
    assert c.state is State.SYN_SENT
    fire(c, 180.0)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionTimedOut)
    assert Event.TIMED_OUT in events(c)


def test_must_22_syn_retransmissions_report_the_delivery_problem_too() -> None:
    c = conn_syn_sent()
    timeline(c, until=7.0)
    assert Event.DELIVERY_PROBLEM in events(c)


def test_syn_received_syn_ack_is_retransmitted_with_backoff() -> None:
    c = conn_syn_received()
    synack = out(L(0), R(1), SYN)
    expect_nothing(c, at=0.999)
    expect(c, at=1.0, segments=[synack])
    expect(c, at=3.0, segments=[synack])
    feed(c, seg(R(1), L(1)), at=3.5)
    assert c.state is State.ESTABLISHED
    assert c.next_deadline() is None


def test_syn_received_gives_up_after_r2_syn() -> None:
    c = conn_syn_received(PLAIN.with_(r2_syn=10.0))
    assert [t for t, _ in timeline(c, until=9.999)] == [1.0, 3.0, 7.0]
    fire(c, 10.0)
    assert c.state is State.CLOSED


def test_a_passive_syn_received_resends_its_syn_ack_five_times_then_gives_up() -> None:
    """A listener's half-open child stops after ``synack_retries`` (5, Linux's
    tcp_synack_retries) retransmissions of its SYN,ACK — about 63 s with a 1 s RTO — rather than
    after R2 for a SYN (3 minutes): each spoofed SYN of a flood would otherwise hold its place
    in the SYN queue for 3 minutes (RFC 4987 §3.2). A deliberate deviation from MUST-23 for the
    SYN,ACK, listed in docs/conformance.md."""
    c = conn_syn_received()
    assert c.passive
    assert [t for t, _ in timeline(c, until=62.999)] == [1.0, 3.0, 7.0, 15.0, 31.0]
    assert c.state is State.SYN_RECEIVED
    fire(c, 63.0)
    assert c.state is State.CLOSED


def test_an_active_syn_received_keeps_r2_syn() -> None:
    """Simultaneous open: our own SYN (repeated in the SYN,ACK) keeps MUST-23's 3 minutes."""
    c = make_conn(PLAIN)
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), None, SYN), at=0.0)  # the peer's SYN crosses ours
    assert c.state is State.SYN_RECEIVED and not c.passive
    times = [t for t, _ in timeline(c, until=179.0)]
    assert len(times) > 5 and c.state is State.SYN_RECEIVED


# =============================================================================================
# Closing timers: TIME-WAIT (MUST-13, L10) and FIN retransmission
# =============================================================================================


def test_must_13_time_wait_lasts_exactly_two_msl() -> None:
    c = conn_time_wait()  # MSL = 120 s: TIME-WAIT ends at 240 s
    assert c.next_deadline() == 240.0
    expect_nothing(c, at=239.999)
    assert c.state is State.TIME_WAIT
    expect_nothing(c, at=240.0)
    assert c.state is State.CLOSED
    assert c.error is None


def test_time_wait_lasts_two_msl_with_a_configured_msl() -> None:
    c = conn_time_wait(PLAIN.with_(msl=1.0), at=10.0)
    fire(c, 11.999)
    assert c.state is State.TIME_WAIT
    fire(c, 12.0)
    assert c.state is State.CLOSED


def test_l10_time_wait_retransmitted_fin_restarts_the_timer() -> None:
    c = conn_time_wait()
    feed(c, seg(R(1), L(2), FIN), at=100.0)
    expect(c, at=100.0, segments=[out(L(2), R(2))])
    assert c.next_deadline() == 340.0
    expect_nothing(c, at=339.999)
    assert c.state is State.TIME_WAIT
    expect_nothing(c, at=340.0)
    assert c.state is State.CLOSED


def test_time_wait_sends_nothing_by_itself() -> None:
    c = conn_time_wait()
    assert timeline(c, until=1000.0) == []
    assert c.state is State.CLOSED


def test_l10_last_ack_retransmits_its_fin_until_acknowledged() -> None:
    c = conn_last_ack()
    fin = out(L(1), R(2), FIN)
    expect_nothing(c, at=0.999)
    expect(c, at=1.0, segments=[fin])
    expect(c, at=3.0, segments=[fin])
    feed(c, seg(R(2), L(2)), at=3.2)
    assert c.state is State.CLOSED
    assert c.next_deadline() is None


def test_last_ack_gives_up_after_r2() -> None:
    c = conn_last_ack(PLAIN.with_(r2=10.0))
    timeline(c, until=20.0)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionTimedOut)


def test_fin_wait_1_retransmits_its_fin() -> None:
    c = conn_fin_wait_1()
    expect(c, at=1.0, segments=[out(L(1), R(1), FIN)])
    feed(c, seg(R(1), L(2)), at=1.5)
    assert c.state is State.FIN_WAIT_2
    assert c.next_deadline() is None


def test_l14_fin_wait_2_after_a_half_close_has_no_timeout() -> None:
    """The RFC's CLOSE (shutdown(SHUT_WR)): the application may still read, so FIN-WAIT-2 waits
    for the peer's FIN as long as it takes (RFC 9293 has no FIN-WAIT-2 timer)."""
    c = conn_fin_wait_2()
    assert c.next_deadline() is None
    expect_nothing(c, at=1e6)
    assert c.state is State.FIN_WAIT_2


def test_fin_wait_2_after_close_times_out_by_default_after_60_seconds() -> None:
    """An application that closed its socket can read nothing more: if the peer vanishes, the
    connection would wait in FIN-WAIT-2 for ever. Linux gives up after ``tcp_fin_timeout`` (60 s);
    so does the default Config."""
    assert Config().fin_wait_2_timeout == 60.0
    c = conn_established(PLAIN.with_(fin_wait_2_timeout=Config().fin_wait_2_timeout))
    c.close(0.0, discard_input=True)
    expect(c, at=0.0, segments=[out(L(1), R(1), FIN)])
    feed(c, seg(R(1), L(2)), at=0.5)
    assert c.state is State.FIN_WAIT_2
    expect_nothing(c, at=60.499)
    assert c.state is State.FIN_WAIT_2
    expect_nothing(c, at=60.5)
    assert c.state is State.CLOSED


def test_fin_wait_2_timeout_ends_an_orphaned_connection() -> None:
    """With ``fin_wait_2_timeout`` and an application that closed for good (socket close()),
    FIN-WAIT-2 ends after that time (L14: the bound on the peer of a CLOSE-WAIT leak)."""
    c = conn_established(PLAIN.with_(fin_wait_2_timeout=60.0))
    c.close(0.0, discard_input=True)
    expect(c, at=0.0, segments=[out(L(1), R(1), FIN)])
    feed(c, seg(R(1), L(2)), at=0.5)
    assert c.state is State.FIN_WAIT_2
    assert c.next_deadline() == 60.5
    fire(c, 60.499)
    assert c.state is State.FIN_WAIT_2
    expect_nothing(c, at=60.5)
    assert c.state is State.CLOSED


# =============================================================================================
# Delayed ACK (SHLD-18, MUST-40, SHLD-19)
# =============================================================================================

DELACK = PLAIN.with_(delayed_ack=0.2)


def test_must_40_config_refuses_a_delay_of_half_a_second_or_more() -> None:
    with pytest.raises(ValueError, match="MUST-40"):
        Config(delayed_ack=0.5)
    assert Config().delayed_ack < 0.5


def test_shld_18_lone_segment_is_acknowledged_after_the_delay() -> None:
    c = conn_established(DELACK)
    feed(c, seg(R(1), L(1), payload=b"x" * 100), at=1.0)
    expect_nothing(c, at=1.0)
    expect_nothing(c, at=1.199)
    expect(c, at=1.2, segments=[out(L(1), R(101))])
    expect_nothing(c, at=2.0)


def test_shld_19_every_second_full_sized_segment_is_acknowledged_at_once() -> None:
    c = conn_established(DELACK)
    feed(c, seg(R(1), L(1), payload=b"f" * MSS), at=1.0)
    expect_nothing(c, at=1.0)
    feed(c, seg(R(1 + MSS), L(1), payload=b"f" * MSS), at=1.05)
    expect(c, at=1.05, segments=[out(L(1), R(1 + 2 * MSS))])
    assert c.next_deadline() is None
    feed(c, seg(R(1 + 2 * MSS), L(1), payload=b"f" * MSS), at=1.1)
    expect_nothing(c, at=1.1)
    expect(c, at=1.3, segments=[out(L(1), R(1 + 3 * MSS))])


def test_delayed_ack_rides_on_data_sent_meanwhile() -> None:
    c = conn_established(DELACK)
    feed(c, seg(R(1), L(1), payload=b"question"), at=1.0)
    c.send(b"answer", 1.1)
    expect(c, at=1.1, segments=[out(L(1), R(9), PSH, b"answer")])
    expect_nothing(c, at=1.2)  # no separate ACK: the timer was cancelled


def test_delayed_ack_not_applied_to_out_of_order_data() -> None:
    """RFC 5681 §4.2: an out-of-order segment, and the one that fills the hole, are ACKed at once."""
    c = conn_established(DELACK)
    feed(c, seg(R(11), L(1), payload=b"k" * 10), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(1))])
    feed(c, seg(R(1), L(1), payload=b"j" * 10), at=1.05)
    expect(c, at=1.05, segments=[out(L(1), R(21))])


def test_fin_in_established_is_acknowledged_after_the_delay() -> None:
    """The ACK of a FIN that moves us to CLOSE-WAIT is a delayed ACK (§3.8.6.3; Linux's tcp_fin
    schedules it too)."""
    c = conn_established(DELACK)
    feed(c, seg(R(1), L(1), FIN), at=1.0)
    assert c.state is State.CLOSE_WAIT
    expect_nothing(c, at=1.0)
    expect_nothing(c, at=1.199)
    expect(c, at=1.2, segments=[out(L(1), R(2))])
    expect_nothing(c, at=2.0)


def test_fin_ack_rides_on_our_fin_when_the_application_closes_at_once() -> None:
    """L3, seed 001's windump trace: the passive side's ACK and FIN travel together."""
    c = conn_established(DELACK)
    feed(c, seg(R(1), L(1), FIN), at=1.0)
    expect_nothing(c, at=1.0)
    c.close(1.05)
    assert c.state is State.LAST_ACK
    expect(c, at=1.05, segments=[out(L(1), R(2), FIN)])
    expect_nothing(c, at=1.25)  # no separate ACK: the timer was cancelled


def test_fin_in_fin_wait_2_is_acknowledged_without_delay() -> None:
    c = conn_fin_wait_2(DELACK, at=1.0)
    feed(c, seg(R(1), L(2), FIN), at=1.1)
    assert c.state is State.TIME_WAIT
    expect(c, at=1.1, segments=[out(L(2), R(2))])


def test_fin_in_fin_wait_1_is_acknowledged_without_delay() -> None:
    c = conn_fin_wait_1(DELACK, at=1.0)
    feed(c, seg(R(1), L(1), FIN), at=1.1)
    assert c.state is State.CLOSING
    expect(c, at=1.1, segments=[out(L(2), R(2))])


# =============================================================================================
# Keep-alive (§3.8.4: MUST-24..29, SHLD-12, L15)
# =============================================================================================


def test_must_25_must_28_keepalive_off_by_default_and_two_hours_idle() -> None:
    cfg = Config()
    assert cfg.keepalive is False
    assert cfg.keepidle >= 7200
    c = conn_established()
    assert timeline(c, until=3 * 3600.0) == []
    assert c.state is State.ESTABLISHED


def test_must_24_must_27_shld_12_probe_is_seq_snd_nxt_minus_one_without_data() -> None:
    """<SEQ=SND.NXT−1><ACK=RCV.NXT><CTL=ACK>, no data, after the configured idle time."""
    c = conn_established()
    c.set_keepalive(True, 0.0, idle=10.0, interval=5.0, count=3)
    expect_nothing(c, at=9.999)
    expect(c, at=10.0, segments=[out(L(0), R(1))])


def test_l15_unanswered_probes_time_the_connection_out() -> None:
    c = conn_established()
    c.set_keepalive(True, 0.0, idle=10.0, interval=5.0, count=3)
    probes = timeline(c, until=24.999)
    assert [(t, s.seq, s.ack, s.payload) for t, s in probes] == [
        (10.0, L(0), R(1), b""), (15.0, L(0), R(1), b""), (20.0, L(0), R(1), b"")]
    assert c.state is State.ESTABLISHED
    fire(c, 25.0)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionTimedOut)
    assert Event.TIMED_OUT in events(c)


def test_must_29_one_lost_probe_does_not_kill_the_connection() -> None:
    c = conn_established()
    c.set_keepalive(True, 0.0, idle=10.0, interval=5.0, count=3)
    expect(c, at=10.0, segments=[out(L(0), R(1))])  # lost
    expect(c, at=15.0, segments=[out(L(0), R(1))])
    feed(c, seg(R(1), L(1)), at=15.5)  # the peer answers the second probe
    probes = timeline(c, until=40.0)
    assert [t for t, _ in probes] == [25.5, 30.5, 35.5]  # idle counted again from 15.5
    assert c.state is State.ESTABLISHED
    assert c.next_deadline() == 40.5  # three more unanswered probes: dead at 40.5


def test_must_26_keepalive_only_after_idle_since_the_last_segment() -> None:
    c = conn_established()
    c.set_keepalive(True, 0.0, idle=10.0, interval=5.0, count=3)
    feed(c, seg(R(1), L(1), payload=b"ping"), at=8.0)
    expect(c, at=8.0, segments=[out(L(1), R(5))])
    expect_nothing(c, at=10.0)
    expect_nothing(c, at=17.999)
    expect(c, at=18.0, segments=[out(L(0), R(5))])


def test_must_26_no_keepalive_probe_while_data_is_outstanding() -> None:
    c = conn_established(PLAIN.with_(r2=1000.0))
    c.set_keepalive(True, 0.0, idle=10.0, interval=5.0, count=3)
    c.send(b"q", 9.0)
    pull(c, 9.0)
    sent = timeline(c, until=60.0)
    assert sent and all(s.payload == b"q" for _, s in sent)  # retransmissions only
    assert c.state is State.ESTABLISHED


def test_must_24_keepalive_can_be_turned_off_again() -> None:
    c = conn_established()
    c.set_keepalive(True, 0.0, idle=10.0, interval=5.0, count=3)
    c.set_keepalive(False, 5.0)
    assert timeline(c, until=100.0) == []


# =============================================================================================
# Zero-window probing (§3.8.6.1: MUST-35/36/37, SHLD-29/30)
# =============================================================================================


def test_shld_29_first_zero_window_probe_after_one_rto() -> None:
    c = conn_established()
    feed(c, seg(R(1), L(1), window=0), at=1.0)
    c.send(b"z" * 100, 1.0)
    expect_nothing(c, at=1.0)
    expect_nothing(c, at=1.999)
    expect(c, at=2.0, segments=[out(L(1), R(1), 0, b"z")])


def test_must_36_shld_30_probes_back_off_exponentially_while_acked() -> None:
    """MUST-37: as long as the probes are acknowledged the connection stays open — here for an
    hour, far past R2 — and the interval doubles up to ``rto_max``."""
    c = conn_established()
    feed(c, seg(R(1), L(1), window=0), at=1.0)
    c.send(b"z" * 100, 1.0)
    pull(c, 1.0)
    times: list[float] = []
    t = 1.0
    while t < 3600.0:
        d = c.next_deadline()
        assert d is not None, "no probe scheduled"
        got = pull(c, d)
        assert [(s.seq, s.payload) for s in got] == [(L(1), b"z")], f"at {d}: {got}"
        times.append(d)
        t = d + 0.05
        feed(c, seg(R(1), L(1), window=0), at=t)  # the peer: still no room
        expect_nothing(c, at=t)
    assert times[:7] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 124.0]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) == pytest.approx(60.0, abs=0.1)
    assert c.state is State.ESTABLISHED


def test_must_35_window_opening_after_probes_releases_the_data() -> None:
    c = conn_established()
    feed(c, seg(R(1), L(1), window=0), at=1.0)
    c.send(b"0123456789", 1.0)
    pull(c, 1.0)
    expect(c, at=2.0, segments=[out(L(1), R(1), 0, b"0")])
    feed(c, seg(R(1), L(2), window=4000), at=2.1)  # the probe octet was taken; room again
    expect(c, at=2.1, segments=[out(L(2), R(1), PSH, b"123456789")])


def test_must_35_window_closing_with_data_in_flight_is_probed() -> None:
    """The window closes while unacknowledged data is outstanding (the peer took part of it):
    the retransmission timeout must still put something on the wire (a probe), or a lost window
    update would leave both ends waiting until R2."""
    c = conn_established(PLAIN.with_(nodelay=True))
    c.send(b"a" * 3000, 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(1461), window=0), at=1.1)  # first segment taken, then no room
    sent = timeline(c, until=10.0)
    assert sent, "nothing sent into the zero window: no probe"
    assert all(s.seq == L(1461) and len(s.payload) == 1 for _, s in sent)
    # MUST-37: the peer keeps answering "no room" — for an hour, far past R2 (100 s).
    t = 10.0
    while t < 3600.0:
        d = c.next_deadline()
        assert d is not None
        got = pull(c, d)
        assert [(s.seq, len(s.payload)) for s in got] == [(L(1461), 1)]
        t = d + 0.05
        feed(c, seg(R(1), L(1461), window=0), at=t)
    assert c.state is State.ESTABLISHED
    feed(c, seg(R(1), L(1462), window=8000), at=t + 0.01)  # probe octet taken, room at last
    got = pull(c, t + 0.01)
    assert got and got[0].seq == L(1462) and len(got[0].payload) > 1


def test_zero_window_probe_replies_are_not_duplicate_acks() -> None:
    """RFC 5681: the ACKs that answer zero-window probes must not trigger a fast retransmit of
    data the peer has no room for."""
    c = conn_established()
    feed(c, seg(R(1), L(1), window=0), at=1.0)
    c.send(b"z" * 100, 1.0)
    pull(c, 1.0)
    for _ in range(5):
        d = c.next_deadline()
        assert d is not None
        got = pull(c, d)
        assert [len(s.payload) for s in got] == [1]
        feed(c, seg(R(1), L(1), window=0), at=d + 0.05)
        expect_nothing(c, at=d + 0.05)


def test_closing_retransmits_its_fin_until_acknowledged() -> None:
    c = conn_closing()
    expect_nothing(c, at=0.999)
    expect(c, at=1.0, segments=[out(L(1), R(2), FIN)])
    feed(c, seg(R(2), L(2)), at=1.5)
    assert c.state is State.TIME_WAIT
    assert c.next_deadline() == 1.5 + 240.0


def test_must_20_unanswered_zero_window_probes_time_out_after_r2() -> None:
    """A peer that advertised a zero window and then vanished: the probes (retransmissions of one
    data octet) go unanswered; the first probe due after R2 = 100 s of silence fails the
    connection instead of probing forever."""
    c = conn_established()
    feed(c, seg(R(1), L(1), window=0), at=1.0)  # the last thing ever heard from the peer
    c.send(b"z" * 100, 1.0)
    pull(c, 1.0)
    probes = timeline(c, until=123.999)
    assert [t for t, _ in probes] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    assert c.state is State.ESTABLISHED
    fire(c, 124.0)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionTimedOut)
    assert Event.TIMED_OUT in events(c)


# =============================================================================================
# RTT from timestamp echoes after a timeout; a refused zero-window probe octet
# =============================================================================================


def test_rfc7323_timestamp_echo_measures_rtt_after_a_retransmission() -> None:
    from synack.core.wire import Mss, Nop, Timestamps

    """Karn (MUST-18) leaves no timed segment once a segment was retransmitted; the timestamp
    echo names the transmission it answers (RFC 7323 §4), so the backed-off RTO comes down."""
    cfg = PLAIN.with_(timestamps=True)
    c = conn_established(cfg, peer_options=(Mss(MSS), Timestamps(100, 0)))
    assert c.ts_ok
    c.send(b"x" * 100, 1.0)
    first = pull(c, 1.0)
    assert len(first) == 1
    fire(c, 2.0)  # RTO (1 s): retransmission, RTO backed off to 2 s
    again = pull(c, 2.0)
    assert len(again) == 1 and again[0].payload == b"x" * 100
    assert c.rtt.rto == 2.0 and c.rtt.backoff == 1
    tsval = again[0].option(Timestamps)
    assert tsval is not None
    feed(c, seg(R(1), L(101), options=(Nop(), Nop(), Timestamps(200, tsval.tsval))), at=2.05)
    assert c.rtt.backoff == 0
    assert c.rtt.srtt == pytest.approx(0.05 / 8, abs=0.001)  # 7/8 of the handshake's 0 s + 1/8 of 50 ms
    assert c.rtt.rto == 1.0  # SRTT + 4·RTTVAR is below the 1 s floor (RFC 6298 §2.4)


def test_without_timestamps_karn_takes_no_sample_after_a_retransmission() -> None:
    c = conn_established()
    c.send(b"x" * 100, 1.0)
    pull(c, 1.0)
    fire(c, 2.0)
    pull(c, 2.0)
    feed(c, seg(R(1), L(101)), at=2.05)
    assert c.rtt.rto == 2.0 and c.rtt.backoff == 1  # MUST-18: no sample, the backoff stays


def test_refused_zero_window_probe_octet_is_sent_again_first() -> None:
    """SHLD-16: when the peer answers the probe with a zero window without taking its octet, the
    octet goes again — first — once the window opens, rather than leaving a hole after it."""
    c = conn_established()
    feed(c, seg(R(1), L(1), window=0), at=0.5)
    c.send(b"abcdef", 1.0)
    expect_nothing(c, at=1.0)  # zero window: nothing may be sent
    fire(c, 2.0)  # persist timer (RTO = 1 s): one-octet probe
    expect(c, at=2.0, segments=[out(L(1), R(1), 0, b"a")])
    feed(c, seg(R(1), L(1), window=0), at=2.1)  # probe refused: still zero, octet not taken
    feed(c, seg(R(1), L(1), window=100), at=2.2)  # window update
    got = pull(c, 2.2)
    assert got and got[0].seq == L(1) and got[0].payload == b"abcdef"


def test_probe_octet_refused_by_a_window_update_itself_is_sent_again_first() -> None:
    """SHLD-16, when the window opens in the very ACK that answers the probe: SEG.ACK = SND.UNA
    says the octet was not taken, so the data resumes at SND.UNA, not one octet after it (which
    would leave a hole that only the retransmission timer fills)."""
    c = conn_established()
    feed(c, seg(R(1), L(1), window=0), at=0.5)
    c.send(b"abcdef", 1.0)
    expect_nothing(c, at=1.0)
    fire(c, 2.0)
    expect(c, at=2.0, segments=[out(L(1), R(1), 0, b"a")])
    feed(c, seg(R(1), L(1), window=100), at=2.1)  # room now, but the probe octet was not taken
    got = pull(c, 2.1)
    assert got and got[0].seq == L(1) and got[0].payload == b"abcdef"


def test_no_window_update_that_repeats_the_largest_field_without_scaling() -> None:
    """Receiver SWS avoidance (§3.8.6.2.2) sends a window update when the window it can offer
    grew by a step. Without window scaling the field says at most 65535: with a 256 KB buffer,
    reads that free space the field cannot show send no update (each would repeat 65535)."""
    cfg = PLAIN.with_(rcv_buf=256 * 1024, window_scaling=False)
    c = conn_established(cfg)
    assert c.rcv_wscale == 0
    t = 1.0
    for k in range(4):  # four 10,000-octet segments: the peer fills part of the 65535 window
        feed(c, seg(R(1 + k * 10000), L(1), payload=b"d" * 10000), at=t)
        pull(c, t)
    # 40,000 octets buffered; free space (262,144 - 40,000) still exceeds 65535: reading changes
    # nothing the 16-bit field can say beyond what the next ACK will say anyway.
    assert c.receive(40000, t) is not None
    expect_nothing(c, at=t)
