"""Level 1: closing. FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT, CLOSING, LAST-ACK and TIME-WAIT against
every segment kind (RFC 9293 §3.10.7.4), and every user call in each (§3.10.1–§3.10.6, L4).
The timers of these states (TIME-WAIT 2×MSL, FIN retransmission) are in ``test_conn_timers.py``.

Sequence numbers after the factories (see ``tcpkit``): our FIN is L(1), the peer's FIN is R(1).
"""

from __future__ import annotations

import pytest
from tcpkit import (
    FIN,
    PSH,
    RST,
    SYN,
    WND,
    L,
    R,
    conn_close_wait,
    conn_closing,
    conn_established,
    conn_fin_wait_1,
    conn_fin_wait_2,
    conn_last_ack,
    conn_time_wait,
    events,
    expect,
    expect_nothing,
    feed,
    out,
    pull,
    seg,
)

from synack.core.connection import (
    ConnectionAborted,
    ConnectionClosing,
    ConnectionExists,
    ConnectionReset,
    NoConnection,
)
from synack.core.records import Event, State

# =============================================================================================
# FIN-WAIT-1
# =============================================================================================


def test_fin_wait_1_ack_of_fin_enters_fin_wait_2() -> None:
    c = conn_fin_wait_1()
    feed(c, seg(R(1), L(2)), at=0.5)
    assert c.state is State.FIN_WAIT_2
    expect_nothing(c, at=0.5)
    assert c.next_deadline() is None  # FIN acknowledged; no FIN-WAIT-2 timer by default (L14)


def test_fin_wait_1_ack_below_the_fin_keeps_fin_wait_1() -> None:
    c = conn_fin_wait_1()
    feed(c, seg(R(1), L(1)), at=0.5)
    assert c.state is State.FIN_WAIT_1
    expect_nothing(c, at=0.5)


def test_l6_fin_wait_1_crossing_fin_enters_closing() -> None:
    """The peer's FIN does not acknowledge ours: CLOSING, and our ACK of its FIN."""
    c = conn_fin_wait_1()
    feed(c, seg(R(1), L(1), FIN), at=0.5)
    assert c.state is State.CLOSING
    expect(c, at=0.5, segments=[out(L(2), R(2))])


def test_l3_fin_wait_1_fin_with_ack_of_fin_enters_time_wait() -> None:
    """The three-segment close: the peer's ACK and FIN travel together."""
    c = conn_fin_wait_1()
    feed(c, seg(R(1), L(2), FIN), at=0.5)
    assert c.state is State.TIME_WAIT
    expect(c, at=0.5, segments=[out(L(2), R(2))])
    assert Event.PEER_CLOSED in events(c)


def test_fin_wait_1_data_is_still_received_and_acknowledged() -> None:
    c = conn_fin_wait_1()
    feed(c, seg(R(1), L(1), payload=b"late"), at=0.5)
    expect(c, at=0.5, segments=[out(L(2), R(5), window=WND - 4)])
    assert c.receive(10, 0.5) == b"late"
    assert c.state is State.FIN_WAIT_1


def test_fin_wait_1_rst_resets() -> None:
    c = conn_fin_wait_1()
    feed(c, seg(R(1), None, RST), at=0.5)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionReset)
    expect_nothing(c, at=0.5)


def test_fin_wait_1_in_window_rst_and_syn_draw_challenge_acks() -> None:
    c = conn_fin_wait_1()
    feed(c, seg(R(3), None, RST), at=0.5)
    expect(c, at=0.5, segments=[out(L(2), R(1))])
    feed(c, seg(R(3), None, SYN), at=0.6)
    expect(c, at=0.6, segments=[out(L(2), R(1))])
    assert c.state is State.FIN_WAIT_1


def test_fin_wait_1_unacceptable_segment_draws_an_ack() -> None:
    c = conn_fin_wait_1()
    feed(c, seg(R(-3), L(2), payload=b"old"), at=0.5)
    expect(c, at=0.5, segments=[out(L(2), R(1))])
    assert c.state is State.FIN_WAIT_1


def test_fin_wait_1_ack_above_snd_nxt_draws_an_ack() -> None:
    c = conn_fin_wait_1()
    feed(c, seg(R(1), L(3)), at=0.5)
    expect(c, at=0.5, segments=[out(L(2), R(1))])
    assert c.state is State.FIN_WAIT_1


def test_fin_wait_1_user_calls() -> None:
    """SEND: "connection closing"; CLOSE again: "ok" and no second FIN; OPEN: "already exists"."""
    c = conn_fin_wait_1()
    with pytest.raises(ConnectionClosing, match="closing"):
        c.send(b"x", 0.5)
    c.close(0.5)
    with pytest.raises(ConnectionExists):
        c.open_active(0.5)
    assert c.receive(10, 0.5) is None
    assert c.status()["state"] == "FIN-WAIT-1"
    assert c.state is State.FIN_WAIT_1
    expect_nothing(c, at=0.5)


def test_fin_wait_1_abort_sends_rst_after_the_fin() -> None:
    c = conn_fin_wait_1()
    c.abort(0.5)
    assert c.state is State.CLOSED
    expect(c, at=0.5, segments=[out(L(2), None, RST)])


def test_l13_close_with_unsent_data_delivers_all_of_it_before_the_fin() -> None:
    """CLOSE queues the FIN behind every SEND; it rides on the last data segment."""
    c = conn_established()
    data = bytes(range(256)) * 20  # 5120 octets: more than the initial congestion window
    assert c.send(data, 1.0) == 5120
    c.close(1.0)
    assert c.state is State.FIN_WAIT_1
    expect(c, at=1.0, segments=[out(L(1), R(1), 0, data[:1460]), out(L(1461), R(1), 0, data[1460:2920]),
                                out(L(2921), R(1), 0, data[2920:4380])])
    feed(c, seg(R(1), L(2921)), at=1.1)
    # The short tail goes at once although data is outstanding: after CLOSE no later SEND can
    # join it, so Nagle (§3.7.4) would only delay the FIN (docs/design.md). The FIN rides on it.
    expect(c, at=1.1, segments=[out(L(4381), R(1), PSH | FIN, data[4380:])])
    feed(c, seg(R(1), L(5122)), at=1.3)
    assert c.state is State.FIN_WAIT_2


def test_nagle_holds_a_short_tail_while_data_is_outstanding_before_close() -> None:
    """SHLD-7: without CLOSE, a short segment waits for the outstanding data to be ACKed."""
    c = conn_established()
    data = bytes(range(256)) * 20
    assert c.send(data, 1.0) == 5120
    expect(c, at=1.0, segments=[out(L(1), R(1), 0, data[:1460]), out(L(1461), R(1), 0, data[1460:2920]),
                                out(L(2921), R(1), 0, data[2920:4380])])
    feed(c, seg(R(1), L(2921)), at=1.1)
    expect_nothing(c, at=1.1)
    feed(c, seg(R(1), L(4381)), at=1.2)
    expect(c, at=1.2, segments=[out(L(4381), R(1), PSH, data[4380:])])


# =============================================================================================
# FIN-WAIT-2
# =============================================================================================


def test_l2_fin_wait_2_half_close_keeps_receiving_and_acknowledging() -> None:
    c = conn_fin_wait_2()
    for i, chunk in enumerate((b"more ", b"data")):
        feed(c, seg(R(1 + 5 * i), L(2), payload=chunk), at=1.0 + i)
        expect(c, at=1.0 + i, segments=[out(L(2), R(1 + 5 * i + len(chunk)))])
    assert c.receive(100, 3.0) == b"more data"
    assert c.state is State.FIN_WAIT_2


def test_fin_wait_2_fin_enters_time_wait_and_is_acknowledged() -> None:
    c = conn_fin_wait_2()
    feed(c, seg(R(1), L(2), FIN), at=1.0)
    assert c.state is State.TIME_WAIT
    expect(c, at=1.0, segments=[out(L(2), R(2))])
    assert c.next_deadline() == 1.0 + 2 * 120.0


def test_fin_wait_2_data_and_fin_in_one_segment() -> None:
    c = conn_fin_wait_2()
    feed(c, seg(R(1), L(2), FIN | PSH, b"last words"), at=1.0)
    assert c.state is State.TIME_WAIT
    expect(c, at=1.0, segments=[out(L(2), R(12))])
    assert c.receive(100, 1.0) == b"last words"
    assert c.receive(100, 1.0) == b""


def test_fin_wait_2_rst_resets() -> None:
    c = conn_fin_wait_2()
    feed(c, seg(R(1), L(2), RST), at=1.0)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionReset)
    expect_nothing(c, at=1.0)


def test_fin_wait_2_syn_draws_a_challenge_ack() -> None:
    c = conn_fin_wait_2()
    feed(c, seg(R(7), None, SYN), at=1.0)
    expect(c, at=1.0, segments=[out(L(2), R(1))])
    assert c.state is State.FIN_WAIT_2


def test_fin_wait_2_unacceptable_segment_draws_an_ack() -> None:
    c = conn_fin_wait_2()
    feed(c, seg(R(1 + WND), L(2), payload=b"far"), at=1.0)
    expect(c, at=1.0, segments=[out(L(2), R(1))])


def test_fin_wait_2_user_calls() -> None:
    c = conn_fin_wait_2()
    with pytest.raises(ConnectionClosing):
        c.send(b"x", 1.0)
    c.close(1.0)  # "ok", no second FIN
    with pytest.raises(ConnectionExists):
        c.open_passive(1.0)
    assert c.receive(10, 1.0) is None
    assert c.status()["state"] == "FIN-WAIT-2"
    expect_nothing(c, at=1.0)
    assert c.state is State.FIN_WAIT_2


def test_fin_wait_2_abort_sends_rst() -> None:
    c = conn_fin_wait_2()
    c.abort(1.0)
    expect(c, at=1.0, segments=[out(L(2), None, RST)])
    assert c.state is State.CLOSED


# =============================================================================================
# CLOSE-WAIT
# =============================================================================================


def test_l14_close_wait_receive_returns_end_of_stream_after_the_data() -> None:
    c = conn_established()
    feed(c, seg(R(1), L(1), FIN, b"tail"), at=1.0)
    assert c.state is State.CLOSE_WAIT
    expect(c, at=1.0, segments=[out(L(1), R(6))])
    assert Event.PEER_CLOSED in events(c)
    assert c.receive(100, 1.0) == b"tail"
    assert c.receive(100, 1.0) == b""
    assert c.at_eof


def test_close_wait_may_still_send() -> None:
    """Half-close (L2): the side in CLOSE-WAIT keeps sending; its ACK field stays at R(2)."""
    c = conn_close_wait()
    assert c.send(b"reply", 1.0) == 5
    expect(c, at=1.0, segments=[out(L(1), R(2), PSH, b"reply")])
    feed(c, seg(R(2), L(6)), at=1.1)
    assert c.snd_una == L(6)
    assert c.state is State.CLOSE_WAIT


def test_close_wait_close_sends_fin_and_enters_last_ack() -> None:
    c = conn_close_wait()
    c.close(1.0)
    assert c.state is State.LAST_ACK
    expect(c, at=1.0, segments=[out(L(1), R(2), FIN)])


def test_l3_close_wait_ack_and_fin_travel_together() -> None:
    """The application closes before the ACK of the peer's FIN left: one FIN,ACK segment."""
    c = conn_established()
    feed(c, seg(R(1), L(1), FIN), at=1.0)
    c.close(1.0)
    assert c.state is State.LAST_ACK
    expect(c, at=1.0, segments=[out(L(1), R(2), FIN)])


def test_close_wait_retransmitted_fin_draws_an_ack() -> None:
    c = conn_close_wait()
    feed(c, seg(R(1), L(1), FIN), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(2))])
    assert c.state is State.CLOSE_WAIT


def test_close_wait_text_after_the_fin_is_ignored() -> None:
    """Seventh step, CLOSE-WAIT: "this should not occur": ignore the segment text."""
    c = conn_close_wait()
    feed(c, seg(R(2), L(1), payload=b"bogus"), at=1.0)
    assert c.readable == 0
    assert c.rcv_nxt == R(2)
    assert c.state is State.CLOSE_WAIT


def test_close_wait_rst_resets() -> None:
    c = conn_close_wait()
    feed(c, seg(R(2), None, RST), at=1.0)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionReset)


def test_close_wait_syn_draws_a_challenge_ack() -> None:
    c = conn_close_wait()
    feed(c, seg(R(2), None, SYN), at=1.0)
    expect(c, at=1.0, segments=[out(L(1), R(2))])


def test_close_wait_user_calls() -> None:
    c = conn_close_wait()
    with pytest.raises(ConnectionExists):
        c.open_active(1.0)
    assert c.status()["state"] == "CLOSE-WAIT"
    assert c.receive(10, 1.0) == b""  # "connection closing", as end of stream
    assert c.state is State.CLOSE_WAIT
    expect_nothing(c, at=1.0)


def test_close_wait_second_close_says_closing() -> None:
    c = conn_close_wait()
    c.close(1.0)
    with pytest.raises(ConnectionClosing):
        c.close(1.0)
    assert c.state is State.LAST_ACK


def test_close_wait_abort_sends_rst() -> None:
    c = conn_close_wait()
    c.abort(1.0)
    expect(c, at=1.0, segments=[out(L(1), None, RST)])
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionAborted)


# =============================================================================================
# CLOSING
# =============================================================================================


def test_l6_closing_ack_of_fin_enters_time_wait() -> None:
    c = conn_closing()
    feed(c, seg(R(2), L(2)), at=0.5)
    assert c.state is State.TIME_WAIT
    expect_nothing(c, at=0.5)
    assert c.next_deadline() == 0.5 + 240.0


def test_closing_ack_below_the_fin_is_ignored() -> None:
    c = conn_closing()
    feed(c, seg(R(2), L(1)), at=0.5)
    assert c.state is State.CLOSING
    expect_nothing(c, at=0.5)


def test_closing_retransmitted_fin_draws_an_ack() -> None:
    c = conn_closing()
    feed(c, seg(R(1), L(1), FIN), at=0.5)
    expect(c, at=0.5, segments=[out(L(2), R(2))])
    assert c.state is State.CLOSING


def test_closing_rst_closes_without_error() -> None:
    c = conn_closing()
    feed(c, seg(R(2), None, RST), at=0.5)
    assert c.state is State.CLOSED
    assert c.error is None
    expect_nothing(c, at=0.5)


def test_closing_syn_draws_a_challenge_ack() -> None:
    c = conn_closing()
    feed(c, seg(R(2), None, SYN), at=0.5)
    expect(c, at=0.5, segments=[out(L(2), R(2))])


def test_closing_user_calls() -> None:
    c = conn_closing()
    with pytest.raises(ConnectionClosing):
        c.send(b"x", 0.5)
    with pytest.raises(ConnectionClosing):
        c.close(1.0)
    with pytest.raises(ConnectionExists):
        c.open_active(1.0)
    assert c.receive(10, 0.5) == b""
    assert c.status()["state"] == "CLOSING"
    assert c.state is State.CLOSING
    expect_nothing(c, at=0.5)


def test_closing_abort_deletes_the_tcb_without_rst() -> None:
    """§3.10.5 CLOSING/LAST-ACK/TIME-WAIT: respond "ok", delete the TCB — no reset is sent."""
    c = conn_closing()
    c.abort(1.0)
    assert c.state is State.CLOSED
    expect_nothing(c, at=0.5)


# =============================================================================================
# LAST-ACK
# =============================================================================================


def test_last_ack_ack_of_fin_closes() -> None:
    """MUST-12: a normal close ends without an error (compare the RESET of an abort)."""
    c = conn_last_ack()
    feed(c, seg(R(2), L(2)), at=0.5)
    assert c.state is State.CLOSED
    assert c.error is None
    assert Event.CLOSED in events(c)
    expect_nothing(c, at=0.5)
    assert c.next_deadline() is None


def test_last_ack_ack_below_the_fin_keeps_waiting() -> None:
    c = conn_last_ack()
    feed(c, seg(R(2), L(1)), at=0.5)
    assert c.state is State.LAST_ACK
    expect_nothing(c, at=0.5)


def test_last_ack_retransmitted_fin_draws_an_ack() -> None:
    c = conn_last_ack()
    feed(c, seg(R(1), L(1), FIN), at=0.5)
    expect(c, at=0.5, segments=[out(L(2), R(2))])
    assert c.state is State.LAST_ACK


def test_last_ack_rst_closes_without_error() -> None:
    c = conn_last_ack()
    feed(c, seg(R(2), None, RST), at=0.5)
    assert c.state is State.CLOSED
    assert c.error is None


def test_last_ack_user_calls() -> None:
    c = conn_last_ack()
    with pytest.raises(ConnectionClosing):
        c.send(b"x", 0.5)
    with pytest.raises(ConnectionClosing):
        c.close(1.0)
    with pytest.raises(ConnectionExists):
        c.open_passive(1.0)
    assert c.receive(10, 0.5) == b""
    assert c.status()["state"] == "LAST-ACK"
    assert c.state is State.LAST_ACK
    expect_nothing(c, at=0.5)


def test_last_ack_abort_deletes_the_tcb_without_rst() -> None:
    c = conn_last_ack()
    c.abort(1.0)
    assert c.state is State.CLOSED
    expect_nothing(c, at=0.5)


# =============================================================================================
# TIME-WAIT
# =============================================================================================


def test_time_wait_retransmitted_fin_is_acknowledged_again() -> None:
    """L10: the peer's FIN is repeated (our last ACK was lost): ACK it again."""
    c = conn_time_wait()
    feed(c, seg(R(1), L(2), FIN), at=5.0)
    expect(c, at=5.0, segments=[out(L(2), R(2))])
    assert c.state is State.TIME_WAIT


def test_time_wait_rst_closes() -> None:
    c = conn_time_wait()
    feed(c, seg(R(2), None, RST), at=5.0)
    assert c.state is State.CLOSED
    assert c.error is None
    expect_nothing(c, at=5.0)


def test_time_wait_syn_draws_a_challenge_ack() -> None:
    """RFC 5961 §4 in TIME-WAIT (reopening from TIME-WAIT, MAY-2, is the host's decision)."""
    c = conn_time_wait()
    feed(c, seg(R(100000), None, SYN), at=5.0)
    expect(c, at=5.0, segments=[out(L(2), R(2))])
    assert c.state is State.TIME_WAIT


def test_time_wait_unacceptable_segment_draws_an_ack() -> None:
    c = conn_time_wait()
    feed(c, seg(R(-20), L(2), payload=b"old"), at=5.0)
    expect(c, at=5.0, segments=[out(L(2), R(2))])


def test_time_wait_user_calls() -> None:
    c = conn_time_wait()
    with pytest.raises(ConnectionClosing):
        c.send(b"x", 5.0)
    with pytest.raises(ConnectionClosing):
        c.close(5.0)
    with pytest.raises(ConnectionExists):
        c.open_active(5.0)
    assert c.receive(10, 5.0) == b""
    assert c.status()["state"] == "TIME-WAIT"
    assert c.state is State.TIME_WAIT
    expect_nothing(c, at=5.0)


def test_time_wait_abort_deletes_the_tcb_without_rst() -> None:
    c = conn_time_wait()
    c.abort(5.0)
    assert c.state is State.CLOSED
    expect_nothing(c, at=5.0)


# =============================================================================================
# After the end
# =============================================================================================


def test_closed_after_a_normal_close_user_calls() -> None:
    """Once the TCB is deleted, SEND/CLOSE/ABORT say "connection does not exist"; RECEIVE keeps
    returning end of stream."""
    c = conn_last_ack()
    feed(c, seg(R(2), L(2)), at=0.5)
    assert c.state is State.CLOSED
    with pytest.raises(NoConnection):
        c.send(b"x", 0.5)
    with pytest.raises(NoConnection):
        c.close(1.0)
    with pytest.raises(NoConnection):
        c.abort(1.0)
    assert c.receive(10, 0.5) == b""


def test_closed_after_close_answers_stray_segments_with_rst() -> None:
    c = conn_last_ack()
    feed(c, seg(R(2), L(2)), at=0.5)
    pull(c, 0.5)
    feed(c, seg(R(2), L(2), payload=b"late"), at=2.0)
    expect(c, at=2.0, segments=[out(L(2), None, RST)])


# =============================================================================================
# Half-duplex close (MAY-1) and the RST that shows data was lost (SHLD-3)
# =============================================================================================


def test_shld_3_close_with_unread_data_sends_rst() -> None:
    """The socket close() (``discard_input``): received data is still unread, so it is lost:
    RST instead of FIN, CLOSED at once."""
    c = conn_established()
    feed(c, seg(R(1), L(1), payload=b"unread"), at=0.5)
    pull(c, 0.5)
    c.close(0.6, discard_input=True)
    assert c.state is State.CLOSED
    expect(c, at=0.6, segments=[out(L(1), None, RST)])


def test_may_1_shld_3_data_after_a_half_duplex_close_draws_rst() -> None:
    """MAY-1: after the socket close() the application can no longer read; data the peer sends
    then is lost, and SHLD-3 says so with a RST."""
    c = conn_established()
    c.close(0.5, discard_input=True)
    expect(c, at=0.5, segments=[out(L(1), R(1), FIN)])
    feed(c, seg(R(1), L(2)), at=0.6)
    assert c.state is State.FIN_WAIT_2
    feed(c, seg(R(1), L(2), payload=b"too late"), at=0.7)
    assert c.state is State.CLOSED
    expect(c, at=0.7, segments=[out(L(2), None, RST)])


# =============================================================================================
# The synchronized states side by side (§3.10.7.4; L9, RFC 5961)
# =============================================================================================

#: factory, (SND.NXT, RCV.NXT) as seen in the ACKs it sends, whether a RST is an error
SYNCHRONIZED = {
    "ESTABLISHED": (conn_established, (L(1), R(1)), True),
    "FIN-WAIT-1": (conn_fin_wait_1, (L(2), R(1)), True),
    "FIN-WAIT-2": (conn_fin_wait_2, (L(2), R(1)), True),
    "CLOSE-WAIT": (conn_close_wait, (L(1), R(2)), True),
    "CLOSING": (conn_closing, (L(2), R(2)), False),
    "LAST-ACK": (conn_last_ack, (L(2), R(2)), False),
    "TIME-WAIT": (conn_time_wait, (L(2), R(2)), False),
}
STATES = list(SYNCHRONIZED)


@pytest.mark.parametrize("name", STATES)
def test_synchronized_old_segment_draws_an_ack_and_changes_nothing(name: str) -> None:
    make, (snd, rcv), _ = SYNCHRONIZED[name]
    c = make()
    before = c.snapshot()
    feed(c, seg(rcv - 10 & 0xFFFFFFFF, snd, FIN, b"old!!"), at=0.5)
    expect(c, at=0.5, segments=[out(snd, rcv)])
    after = c.snapshot()
    for key in ("state", "snd_una", "snd_nxt", "rcv_nxt", "snd_wnd", "recv_buffered"):
        assert after[key] == before[key], key


@pytest.mark.parametrize("name", STATES)
def test_synchronized_segment_beyond_the_window_draws_an_ack(name: str) -> None:
    make, (snd, rcv), _ = SYNCHRONIZED[name]
    c = make()
    feed(c, seg(rcv + WND + 5 & 0xFFFFFFFF, snd, payload=b"far"), at=0.5)
    expect(c, at=0.5, segments=[out(snd, rcv)])
    assert c.state.value == name


@pytest.mark.parametrize("name", STATES)
def test_synchronized_rst_outside_the_window_is_silently_dropped(name: str) -> None:
    make, (snd, rcv), _ = SYNCHRONIZED[name]
    c = make()
    feed(c, seg(rcv - 1 & 0xFFFFFFFF, snd, RST), at=0.5)
    feed(c, seg(rcv + WND + 5 & 0xFFFFFFFF, None, RST), at=0.5)
    expect_nothing(c, at=0.5)
    assert c.state.value == name


@pytest.mark.parametrize("name", STATES)
def test_synchronized_rst_in_window_not_at_rcv_nxt_draws_a_challenge_ack(name: str) -> None:
    make, (snd, rcv), _ = SYNCHRONIZED[name]
    c = make()
    feed(c, seg(rcv + 1 & 0xFFFFFFFF, snd, RST), at=0.5)
    expect(c, at=0.5, segments=[out(snd, rcv)])
    assert c.state.value == name


@pytest.mark.parametrize("name", STATES)
def test_synchronized_syn_draws_a_challenge_ack(name: str) -> None:
    make, (snd, rcv), _ = SYNCHRONIZED[name]
    c = make()
    feed(c, seg(rcv + 3 & 0xFFFFFFFF, None, SYN), at=0.5)
    expect(c, at=0.5, segments=[out(snd, rcv)])
    assert c.state.value == name


@pytest.mark.parametrize("name", STATES)
def test_synchronized_rst_ack_at_rcv_nxt_closes(name: str) -> None:
    make, (snd, rcv), is_error = SYNCHRONIZED[name]
    c = make()
    feed(c, seg(rcv, snd, RST), at=0.5)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionReset) if is_error else c.error is None
    expect_nothing(c, at=0.5)
    assert c.next_deadline() is None


@pytest.mark.parametrize("name", STATES)
def test_synchronized_ack_of_unsent_data_draws_an_ack(name: str) -> None:
    make, (snd, rcv), _ = SYNCHRONIZED[name]
    c = make()
    feed(c, seg(rcv, snd + 100 & 0xFFFFFFFF), at=0.5)
    expect(c, at=0.5, segments=[out(snd, rcv)])
    assert c.state.value == name


@pytest.mark.parametrize("name", STATES)
def test_synchronized_segment_without_ack_is_dropped(name: str) -> None:
    make, (_snd, rcv), _ = SYNCHRONIZED[name]
    c = make()
    feed(c, seg(rcv, None, FIN, b"x"), at=0.5)
    expect_nothing(c, at=0.5)
    assert c.state.value == name


@pytest.mark.parametrize("name", STATES)
def test_synchronized_abort(name: str) -> None:
    """§3.10.5: RST <SEQ=SND.NXT> from ESTABLISHED, FIN-WAIT-1/2 and CLOSE-WAIT; silently from
    CLOSING, LAST-ACK and TIME-WAIT. CLOSED in every case."""
    make, (snd, _rcv), sends_rst = SYNCHRONIZED[name]
    c = make()
    c.abort(0.5)
    assert c.state is State.CLOSED
    expect(c, at=0.5, segments=[out(snd, None, RST)] if sends_rst else [])


@pytest.mark.parametrize("name", STATES)
def test_synchronized_old_syn_ack_is_answered_with_an_ack(name: str) -> None:
    """The peer's SYN,ACK repeated (SEG.SEQ = IRS, left of the window): an ACK, no change."""
    make, (snd, rcv), _ = SYNCHRONIZED[name]
    c = make()
    feed(c, seg(R(0), L(1), SYN), at=0.5)
    expect(c, at=0.5, segments=[out(snd, rcv)])
    assert c.state.value == name


@pytest.mark.parametrize("name", STATES)
def test_synchronized_in_window_text(name: str) -> None:
    """Seventh step: text is taken (and ACKed) in ESTABLISHED, FIN-WAIT-1 and FIN-WAIT-2; after
    the peer's FIN it "should not occur" and is ignored."""
    make, (snd, rcv), _ = SYNCHRONIZED[name]
    c = make()
    feed(c, seg(rcv, c.snd_una, payload=b"text"), at=0.5)  # acknowledges nothing new
    if name in ("ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2"):
        expect(c, at=0.5, segments=[out(snd, rcv + 4 & 0xFFFFFFFF)])
        assert c.receive(10, 0.5) == b"text"
    else:
        expect_nothing(c, at=0.5)
        assert c.readable == 0
    assert c.state.value == name
