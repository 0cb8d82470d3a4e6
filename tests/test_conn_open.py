"""Level 1: opening a connection. CLOSED, LISTEN, SYN-SENT and SYN-RECEIVED, one segment at a time
(RFC 9293 §3.5, §3.10.1–§3.10.7.3, the SYN-RECEIVED branches of §3.10.7.4), every user call in each
of these states (L4), and the options of the SYN (MSS, window scale, timestamps, SACK).

The test is the peer. Our ISS is ``L(0)`` = 0xFFFFFF00, the peer's is ``R(0)`` = 0xFFFFFFF0.
"""

from __future__ import annotations

import pytest
from tcpkit import (
    ACK,
    FIN,
    LOCAL,
    MSS,
    PLAIN,
    PSH,
    REMOTE,
    REMOTE_WND,
    RST,
    SYN,
    WND,
    L,
    R,
    conn_established,
    conn_listen,
    conn_syn_received,
    conn_syn_sent,
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
    Config,
    Connection,
    ConnectionExists,
    ConnectionRefused,
    NoConnection,
    reset_for,
)
from synack.core.records import Event, State
from synack.core.wire import Mss, Nop, Sack, SackPermitted, Timestamps, WindowScale

SYN_OPTS = (Mss(MSS),)


# =============================================================================================
# CLOSED (RFC 9293 §3.10.7.1; L9)
# =============================================================================================


def test_closed_segment_with_ack_draws_rst_seq_seg_ack() -> None:
    """<SEQ=SEG.ACK><CTL=RST> (no ACK bit) for an ACK-bearing segment."""
    c = make_conn()
    feed(c, seg(R(5), 0x1234, payload=b"data"), at=0.0)
    expect(c, at=0.0, segments=[out(0x1234, None, RST, window=0)])
    assert c.state is State.CLOSED


def test_closed_syn_draws_rst_ack_seq_zero_ack_seq_plus_len() -> None:
    """<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>: the SYN counts one."""
    c = make_conn()
    feed(c, seg(R(0), flags=SYN), at=0.0)
    expect(c, at=0.0, segments=[out(0, R(1), RST)])
    assert c.state is State.CLOSED


def test_closed_syn_fin_with_data_rst_acks_everything_across_the_wrap() -> None:
    """SEG.LEN counts SYN, text and FIN: 1 + 20 + 1, and the sum wraps past 2**32."""
    c = make_conn()
    feed(c, seg(R(0), flags=SYN | FIN, payload=b"x" * 20), at=0.0)
    expect(c, at=0.0, segments=[out(0, R(22), RST)])
    assert R(22) < R(0)  # really wrapped


def test_closed_bare_data_without_ack_draws_rst_ack() -> None:
    c = make_conn()
    feed(c, seg(R(3), payload=b"hello"), at=0.0)
    expect(c, at=0.0, segments=[out(0, R(8), RST)])


@pytest.mark.parametrize("flags,ack", [(RST, None), (RST, L(1)), (RST | SYN, None), (RST | FIN, L(7))])
def test_closed_rst_is_never_answered_with_rst(flags: int, ack: int | None) -> None:
    c = make_conn()
    feed(c, seg(R(1), ack, flags), at=0.0)
    expect_nothing(c, at=0.0)
    assert c.state is State.CLOSED


def test_reset_for_follows_the_two_rst_forms() -> None:
    with_ack = seg(R(1), 77, payload=b"abc")
    r1 = reset_for(with_ack)
    assert r1 is not None
    assert (r1.src_port, r1.dst_port, r1.seq, r1.ack, r1.flags) == (LOCAL[1], REMOTE[1], 77, None, RST)
    r2 = reset_for(seg(0xFFFFFFFF, flags=SYN, payload=b"ab"))
    assert r2 is not None
    assert (r2.seq, r2.ack, r2.flags) == (0, 2, RST | ACK)
    assert reset_for(seg(R(1), 77, RST)) is None


def test_closed_user_calls_say_connection_does_not_exist() -> None:
    """§3.10.2–§3.10.6 CLOSED: SEND, RECEIVE, CLOSE, ABORT and STATUS all return "error:
    connection does not exist" and change nothing (L4)."""
    c = make_conn()
    with pytest.raises(NoConnection, match="does not exist"):
        c.send(b"x", 0.0)
    with pytest.raises(NoConnection, match="does not exist"):
        c.receive(10, 0.0)
    with pytest.raises(NoConnection, match="does not exist"):
        c.close(0.0)
    with pytest.raises(NoConnection, match="does not exist"):
        c.abort(0.0)
    with pytest.raises(NoConnection, match="does not exist"):
        c.status()
    assert c.state is State.CLOSED
    expect_nothing(c, at=0.0)
    assert c.next_deadline() is None


def test_closed_active_open_sends_syn_and_enters_syn_sent() -> None:
    """§3.10.1: <SEQ=ISS><CTL=SYN>, SND.UNA = ISS, SND.NXT = ISS+1 (L1)."""
    c = make_conn()
    c.open_active(0.0)
    assert c.state is State.SYN_SENT
    expect(c, at=0.0, segments=[out(L(0), None, SYN, window=WND, options=SYN_OPTS)])
    assert (c.snd_una, c.snd_nxt) == (L(0), L(1))


def test_closed_passive_open_enters_listen_and_sends_nothing() -> None:
    c = make_conn()
    c.open_passive(0.0)
    assert c.state is State.LISTEN
    assert c.status()["state"] == "LISTEN"
    expect_nothing(c, at=0.0)
    assert c.next_deadline() is None


# =============================================================================================
# LISTEN (§3.10.7.2)
# =============================================================================================


@pytest.mark.parametrize("ack", [None, L(1), 12345])
def test_listen_rst_is_ignored(ack: int | None) -> None:
    c = conn_listen()
    feed(c, seg(R(0), ack, RST), at=0.0)
    expect_nothing(c, at=0.0)
    assert c.state is State.LISTEN


@pytest.mark.parametrize("flags,payload", [(0, b""), (0, b"data"), (FIN, b""), (SYN, b"")])
def test_listen_any_ack_draws_rst_seq_seg_ack(flags: int, payload: bytes) -> None:
    """Any acknowledgment is bad in LISTEN: <SEQ=SEG.ACK><CTL=RST>, stay in LISTEN. The SYN,ACK
    case is the "old SYN,ACK at a listener"."""
    c = conn_listen()
    feed(c, seg(R(0), 0xABCDEF, flags, payload), at=0.0)
    expect(c, at=0.0, segments=[out(0xABCDEF, None, RST)])
    assert c.state is State.LISTEN


def test_listen_syn_answers_syn_ack_and_enters_syn_received() -> None:
    """<SEQ=ISS><ACK=SEG.SEQ+1><CTL=SYN,ACK>, IRS = SEG.SEQ, RCV.NXT = SEG.SEQ+1 (L1)."""
    c = conn_listen()
    feed(c, seg(R(0), flags=SYN, options=SYN_OPTS), at=0.0)
    assert c.state is State.SYN_RECEIVED
    assert (c.irs, c.rcv_nxt) == (R(0), R(1))
    expect(c, at=0.0, segments=[out(L(0), R(1), SYN, window=WND, options=SYN_OPTS)])
    assert (c.snd_una, c.snd_nxt) == (L(0), L(1))


def test_listen_syn_with_data_acks_only_the_syn() -> None:
    """Deliberate: data on a SYN is not taken (no TCP Fast Open); the SYN,ACK acknowledges only
    the SYN, so the peer sends the data again once established."""
    c = conn_listen()
    feed(c, seg(R(0), flags=SYN, payload=b"early", options=SYN_OPTS), at=0.0)
    expect(c, at=0.0, segments=[out(L(0), R(1), SYN, options=SYN_OPTS)])
    feed(c, seg(R(1), L(1), payload=b"early"), at=0.1)
    assert c.state is State.ESTABLISHED
    expect(c, at=0.1, segments=[out(L(1), R(6))])
    assert c.receive(100, 0.1) == b"early"


@pytest.mark.parametrize("flags,payload", [(0, b"data"), (FIN, b""), (PSH, b"x")])
def test_listen_segment_without_syn_or_ack_is_dropped(flags: int, payload: bytes) -> None:
    c = conn_listen()
    feed(c, seg(R(0), None, flags, payload), at=0.0)
    expect_nothing(c, at=0.0)
    assert c.state is State.LISTEN


def test_listen_open_passive_again_says_already_exists() -> None:
    c = conn_listen()
    with pytest.raises(ConnectionExists, match="already exists"):
        c.open_passive(0.0)
    assert c.state is State.LISTEN


def test_listen_active_open_turns_the_listener_active() -> None:
    """§3.10.1 LISTEN: an active OPEN changes the connection from passive to active."""
    c = conn_listen()
    c.open_active(0.5)
    assert c.state is State.SYN_SENT
    assert not c.passive
    expect(c, at=0.5, segments=[out(L(0), None, SYN, options=SYN_OPTS)])


def test_listen_send_turns_active_and_queues_the_data_until_established() -> None:
    """§3.10.2 LISTEN: SEND changes passive to active, sends a SYN; the data is queued."""
    c = conn_listen()
    assert c.send(b"queued", 0.0) == 6
    assert c.state is State.SYN_SENT
    expect(c, at=0.0, segments=[out(L(0), None, SYN, options=SYN_OPTS)])
    feed(c, seg(R(0), L(1), SYN, options=SYN_OPTS), at=0.1)
    assert c.state is State.ESTABLISHED
    expect(c, at=0.1, segments=[out(L(1), R(1), PSH, b"queued")])


def test_listen_receive_is_queued() -> None:
    c = conn_listen()
    assert c.receive(10, 0.0) is None
    assert c.state is State.LISTEN


def test_listen_close_deletes_the_tcb_silently() -> None:
    c = conn_listen()
    c.close(0.0)
    assert c.state is State.CLOSED
    expect_nothing(c, at=0.0)


def test_listen_abort_deletes_the_tcb_silently() -> None:
    c = conn_listen()
    c.abort(0.0)
    assert c.state is State.CLOSED
    expect_nothing(c, at=0.0)


# =============================================================================================
# SYN-SENT (§3.10.7.3)
# =============================================================================================


def test_syn_sent_syn_ack_establishes_and_acks() -> None:
    """Figure 6 line 3/4: <SEQ=R><ACK=L+1><CTL=SYN,ACK> → ESTABLISHED, <SEQ=L+1><ACK=R+1><CTL=ACK>."""
    c = conn_syn_sent()
    feed(c, seg(R(0), L(1), SYN, options=SYN_OPTS), at=0.25)
    assert c.state is State.ESTABLISHED
    expect(c, at=0.25, segments=[out(L(1), R(1), window=WND, options=())])
    assert (c.snd_una, c.snd_nxt, c.irs, c.rcv_nxt) == (L(1), L(1), R(0), R(1))
    assert c.snd_wnd == REMOTE_WND
    assert Event.CONNECTED in events(c)
    assert c.next_deadline() is None  # nothing in flight, no timer


@pytest.mark.parametrize("ack", [L(0), L(-1), L(2), L(1000)], ids=["iss", "below-iss", "above-nxt", "far"])
def test_syn_sent_unacceptable_ack_draws_rst_and_keeps_state(ack: int) -> None:
    """SEG.ACK =< ISS or SEG.ACK > SND.NXT: <SEQ=SEG.ACK><CTL=RST>, discard (L9)."""
    c = conn_syn_sent()
    feed(c, seg(R(0), ack, SYN), at=0.1)
    expect(c, at=0.1, segments=[out(ack, None, RST)])
    assert c.state is State.SYN_SENT
    # The real SYN,ACK still completes the handshake.
    feed(c, seg(R(0), L(1), SYN), at=0.2)
    assert c.state is State.ESTABLISHED


def test_syn_sent_unacceptable_ack_without_syn_draws_rst() -> None:
    c = conn_syn_sent()
    feed(c, seg(R(9), L(50)), at=0.1)
    expect(c, at=0.1, segments=[out(L(50), None, RST)])
    assert c.state is State.SYN_SENT


def test_syn_sent_rst_with_unacceptable_ack_is_dropped_without_rst() -> None:
    c = conn_syn_sent()
    feed(c, seg(R(0), L(5), RST), at=0.1)
    expect_nothing(c, at=0.1)
    assert c.state is State.SYN_SENT


def test_syn_sent_rst_with_acceptable_ack_means_connection_refused() -> None:
    """L16: a closed port answers our SYN with RST,ACK: CLOSED, "connection refused"."""
    c = conn_syn_sent()
    feed(c, seg(0, L(1), RST), at=0.1)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionRefused)
    assert events(c) == [Event.REFUSED, Event.CLOSED]
    expect_nothing(c, at=0.1)
    assert c.next_deadline() is None
    with pytest.raises(ConnectionRefused):
        c.send(b"x", 0.2)


def test_syn_sent_rst_without_ack_is_dropped() -> None:
    c = conn_syn_sent()
    feed(c, seg(R(0), None, RST), at=0.1)
    expect_nothing(c, at=0.1)
    assert c.state is State.SYN_SENT


def test_syn_sent_acceptable_ack_without_syn_is_dropped() -> None:
    """Fifth: neither SYN nor RST: drop (the ACK alone does not synchronize)."""
    c = conn_syn_sent()
    feed(c, seg(R(0), L(1)), at=0.1)
    expect_nothing(c, at=0.1)
    assert c.state is State.SYN_SENT
    assert c.snd_una == L(0)


@pytest.mark.parametrize("flags,payload", [(0, b"data"), (FIN, b"")])
def test_syn_sent_segment_without_syn_rst_or_ack_is_dropped(flags: int, payload: bytes) -> None:
    c = conn_syn_sent()
    feed(c, seg(R(0), None, flags, payload), at=0.1)
    expect_nothing(c, at=0.1)
    assert c.state is State.SYN_SENT


def test_syn_sent_bare_syn_is_simultaneous_open() -> None:
    """MUST-10, L5: a SYN without ACK: SYN-RECEIVED, <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>."""
    c = conn_syn_sent()
    feed(c, seg(R(0), flags=SYN, options=SYN_OPTS), at=0.1)
    assert c.state is State.SYN_RECEIVED
    assert not c.passive  # MUST-11: reached SYN-RECEIVED from an active OPEN
    expect(c, at=0.1, segments=[out(L(0), R(1), SYN, options=SYN_OPTS)])
    feed(c, seg(R(1), L(1)), at=0.2)
    assert c.state is State.ESTABLISHED
    expect_nothing(c, at=0.2)


def test_syn_sent_syn_ack_with_data_establishes_and_takes_the_data() -> None:
    """§3.10.7.3: other text on the SYN,ACK continues at the sixth step: one ACK covers it."""
    c = conn_syn_sent()
    feed(c, seg(R(0), L(1), SYN, b"hi!", options=SYN_OPTS), at=0.1)
    assert c.state is State.ESTABLISHED
    expect(c, at=0.1, segments=[out(L(1), R(4))])
    assert c.receive(10, 0.1) == b"hi!"


def test_syn_sent_syn_ack_with_fin_goes_to_close_wait() -> None:
    c = conn_syn_sent()
    feed(c, seg(R(0), L(1), SYN | FIN, options=SYN_OPTS), at=0.1)
    assert c.state is State.CLOSE_WAIT
    expect(c, at=0.1, segments=[out(L(1), R(2))])
    assert c.receive(10, 0.1) == b""


def test_syn_sent_open_again_says_already_exists() -> None:
    c = conn_syn_sent()
    with pytest.raises(ConnectionExists):
        c.open_active(0.1)
    with pytest.raises(ConnectionExists):
        c.open_passive(0.1)
    assert c.state is State.SYN_SENT
    expect_nothing(c, at=0.1)


def test_syn_sent_send_is_queued_until_established_then_carries_the_ack() -> None:
    """§3.10.2 SYN-SENT: queue; §3.10.7.3: queued data MAY ride on the ACK of the SYN,ACK."""
    c = conn_syn_sent()
    assert c.send(b"early", 0.0) == 5
    expect_nothing(c, at=0.0)
    feed(c, seg(R(0), L(1), SYN, options=SYN_OPTS), at=0.1)
    expect(c, at=0.1, segments=[out(L(1), R(1), PSH, b"early")])


def test_syn_sent_receive_is_queued() -> None:
    c = conn_syn_sent()
    assert c.receive(10, 0.0) is None


def test_syn_sent_close_deletes_the_tcb_without_a_segment() -> None:
    c = conn_syn_sent()
    c.send(b"never", 0.0)
    c.close(0.1)
    assert c.state is State.CLOSED
    expect_nothing(c, at=0.1)
    assert c.next_deadline() is None


def test_syn_sent_abort_sends_no_rst() -> None:
    """§3.10.5 SYN-SENT: delete the TCB; no reset is sent (nothing is synchronized)."""
    c = conn_syn_sent()
    c.abort(0.1)
    assert c.state is State.CLOSED
    expect_nothing(c, at=0.1)


def test_syn_sent_status_reports_the_state() -> None:
    c = conn_syn_sent()
    st = c.status()
    assert st["state"] == "SYN-SENT"
    assert (st["iss"], st["snd_una"], st["snd_nxt"]) == (L(0), L(0), L(1))


# =============================================================================================
# SYN-RECEIVED (§3.10.7.4 for SYN-RECEIVED)
# =============================================================================================


def test_syn_received_ack_of_syn_establishes_silently() -> None:
    c = conn_syn_received()
    feed(c, seg(R(1), L(1)), at=0.1)
    assert c.state is State.ESTABLISHED
    assert Event.CONNECTED in events(c)
    expect_nothing(c, at=0.1)
    assert (c.snd_una, c.snd_wnd, c.snd_wl1, c.snd_wl2) == (L(1), REMOTE_WND, R(1), L(1))
    assert c.next_deadline() is None


@pytest.mark.parametrize("ack", [L(0), L(2), L(-7)], ids=["una", "above-nxt", "old"])
def test_syn_received_unacceptable_ack_draws_rst(ack: int) -> None:
    """SYN-RECEIVED, SND.UNA < SEG.ACK =< SND.NXT fails: <SEQ=SEG.ACK><CTL=RST> (L9)."""
    c = conn_syn_received()
    feed(c, seg(R(1), ack), at=0.1)
    expect(c, at=0.1, segments=[out(ack, None, RST)])
    assert c.state is State.SYN_RECEIVED


def test_syn_received_data_with_ack_establishes_and_is_acknowledged() -> None:
    c = conn_syn_received()
    feed(c, seg(R(1), L(1), payload=b"GET /"), at=0.1)
    assert c.state is State.ESTABLISHED
    expect(c, at=0.1, segments=[out(L(1), R(6), window=WND - 5)])
    assert c.receive(100, 0.1) == b"GET /"


def test_syn_received_fin_with_ack_goes_to_close_wait() -> None:
    c = conn_syn_received()
    feed(c, seg(R(1), L(1), FIN), at=0.1)
    assert c.state is State.CLOSE_WAIT
    expect(c, at=0.1, segments=[out(L(1), R(2))])


def test_syn_received_segment_without_ack_is_dropped() -> None:
    """Fifth step: the ACK bit is off: drop (the text is not taken before the handshake ends)."""
    c = conn_syn_received()
    feed(c, seg(R(1), None, 0, b"data"), at=0.1)
    expect_nothing(c, at=0.1)
    assert c.state is State.SYN_RECEIVED
    assert c.readable == 0


def test_syn_received_rst_at_rcv_nxt_returns_a_passive_connection_to_listen() -> None:
    """Passive OPEN: back to LISTEN, the user need not be informed (L7)."""
    c = conn_syn_received()
    feed(c, seg(R(1), None, RST), at=0.1)
    assert c.state is State.LISTEN
    assert c.error is None
    expect_nothing(c, at=0.1)
    assert c.next_deadline() is None  # the SYN,ACK is no longer retransmitted


def test_syn_received_rst_refuses_an_active_connection() -> None:
    """Active OPEN (simultaneous open): "connection refused", CLOSED."""
    c = conn_syn_sent()
    feed(c, seg(R(0), flags=SYN), at=0.1)
    pull(c, 0.1)
    feed(c, seg(R(1), None, RST), at=0.2)
    assert c.state is State.CLOSED
    assert isinstance(c.error, ConnectionRefused)
    expect_nothing(c, at=0.2)


def test_syn_received_rst_in_window_but_not_at_rcv_nxt_draws_a_challenge_ack() -> None:
    """RFC 5961 §3.2 (RFC 9293 §3.10.7.4 second step, case 3)."""
    c = conn_syn_received()
    feed(c, seg(R(100), None, RST), at=0.1)
    assert c.state is State.SYN_RECEIVED
    expect(c, at=0.1, segments=[out(L(1), R(1))])


def test_syn_received_rst_outside_the_window_is_dropped_silently() -> None:
    c = conn_syn_received()
    feed(c, seg(R(1 + WND + 10), None, RST), at=0.1)
    feed(c, seg(R(-5), None, RST), at=0.1)
    expect_nothing(c, at=0.1)
    assert c.state is State.SYN_RECEIVED


def test_syn_received_unacceptable_segment_draws_an_ack() -> None:
    """First step: a segment outside the window is answered <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>."""
    c = conn_syn_received()
    feed(c, seg(R(-10), L(1), payload=b"old"), at=0.1)
    expect(c, at=0.1, segments=[out(L(1), R(1))])
    assert c.state is State.SYN_RECEIVED


def test_syn_received_new_syn_in_window_returns_a_passive_connection_to_listen() -> None:
    """Fourth step, SYN-RECEIVED from a passive OPEN: return to LISTEN."""
    c = conn_syn_received()
    feed(c, seg(R(50), flags=SYN), at=0.1)
    assert c.state is State.LISTEN
    expect_nothing(c, at=0.1)


def test_syn_received_retransmitted_syn_resends_the_syn_ack() -> None:
    """The peer repeats its SYN (our SYN,ACK was lost). Deliberate (as Linux): answer with the
    SYN,ACK again rather than a bare ACK, which a SYN-SENT peer would drop."""
    c = conn_syn_received()
    feed(c, seg(R(0), flags=SYN, options=SYN_OPTS), at=0.3)
    expect(c, at=0.3, segments=[out(L(0), R(1), SYN, options=SYN_OPTS)])
    assert c.state is State.SYN_RECEIVED


def test_syn_received_open_again_says_already_exists() -> None:
    c = conn_syn_received()
    with pytest.raises(ConnectionExists):
        c.open_active(0.1)
    assert c.state is State.SYN_RECEIVED


def test_syn_received_send_is_queued_until_established() -> None:
    c = conn_syn_received()
    assert c.send(b"hello", 0.1) == 5
    expect_nothing(c, at=0.1)
    feed(c, seg(R(1), L(1)), at=0.2)
    expect(c, at=0.2, segments=[out(L(1), R(1), PSH, b"hello")])


def test_syn_received_receive_is_queued() -> None:
    c = conn_syn_received()
    assert c.receive(10, 0.1) is None


def test_syn_received_close_without_data_sends_fin_and_enters_fin_wait_1() -> None:
    """§3.10.4 SYN-RECEIVED: no SENDs issued: form a FIN, send it, FIN-WAIT-1."""
    c = conn_syn_received()
    c.close(0.1)
    assert c.state is State.FIN_WAIT_1
    expect(c, at=0.1, segments=[out(L(1), R(1), FIN)])
    feed(c, seg(R(1), L(2)), at=0.2)
    assert c.state is State.FIN_WAIT_2


def test_syn_received_close_then_lost_syn_ack_is_retransmitted() -> None:
    """After CLOSE in SYN-RECEIVED the SYN,ACK is still at the front of the retransmission
    queue: when it was lost it must be sent again (§3.10.8), or the peer never synchronizes."""
    c = conn_syn_received()
    c.close(0.1)
    expect(c, at=0.1, segments=[out(L(1), R(1), FIN)])
    sent = timeline(c, until=1.0)
    assert [(t, s.seq, s.flags & (SYN | FIN)) for t, s in sent][:1] == [(1.0, L(0), SYN)]
    assert c.state is State.FIN_WAIT_1


def test_syn_received_close_with_queued_data_waits_for_established() -> None:
    """§3.10.4 SYN-RECEIVED with pending data: queue the CLOSE; after the ACK of our SYN, the
    data then the FIN (L13)."""
    c = conn_syn_received()
    c.send(b"bye", 0.1)
    c.close(0.1)
    assert c.state is State.SYN_RECEIVED
    expect_nothing(c, at=0.1)
    feed(c, seg(R(1), L(1)), at=0.2)
    assert c.state is State.FIN_WAIT_1
    expect(c, at=0.2, segments=[out(L(1), R(1), PSH | FIN, b"bye")])


def test_syn_received_abort_sends_rst_seq_snd_nxt() -> None:
    """§3.10.5 SYN-RECEIVED: <SEQ=SND.NXT><CTL=RST>."""
    c = conn_syn_received()
    c.abort(0.1)
    assert c.state is State.CLOSED
    expect(c, at=0.1, segments=[out(L(1), None, RST)])


def test_syn_received_status_reports_the_state() -> None:
    c = conn_syn_received()
    assert c.status()["state"] == "SYN-RECEIVED"


# =============================================================================================
# Options on the SYN: MSS (MUST-14/15/16/65/67, SHLD-5, MAY-3), window scale and timestamps
# (RFC 7323), SACK-permitted (RFC 2018)
# =============================================================================================

FULL = Config(mss=MSS, delayed_ack=0.0)  # window scaling, timestamps and SACK on (the defaults)


def test_must_14_shld_5_syn_offers_every_option_we_implement() -> None:
    c = make_conn(FULL)
    c.open_active(2.5)
    # 256 KiB receive buffer: 65535 << 3 >= 262144, so the shift is 3.
    expect(c, at=2.5, segments=[out(L(0), None, SYN, window=65535, options=(
        Mss(MSS), SackPermitted(), Timestamps(2500, 0), Nop(), WindowScale(3)))])


def test_must_67_mss_option_derived_from_the_mtu() -> None:
    """MUST-67: without a configured MSS, the MSS we announce is MTU − 40 (IPv4) / − 60 (IPv6)."""
    c4 = Connection(LOCAL, REMOTE, iss=L(0), config=PLAIN.with_(mss=None), mtu=1500)
    c4.open_active(0.0)
    assert pull(c4, 0.0)[0].options == (Mss(1460),)
    c6 = Connection(("2001:db8::1", 40000), ("2001:db8::2", 80), iss=L(0), config=PLAIN.with_(mss=None),
                    mtu=1500)
    c6.open_active(0.0)
    assert pull(c6, 0.0)[0].options == (Mss(1440),)


def test_must_15_send_mss_defaults_to_536_without_an_option() -> None:
    c = conn_established(peer_options=())
    assert c.snd_mss == 536
    c.set_nodelay(True)
    c.send(b"a" * 1000, 0.1)
    expect(c, at=0.1, segments=[out(L(1), R(1), 0, b"a" * 536), out(L(537), R(1), PSH, b"a" * 464)])


def test_must_15_send_mss_defaults_to_1220_over_ipv6() -> None:
    c = Connection(("2001:db8::1", 40000), ("2001:db8::2", 80), iss=L(0), config=PLAIN)
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN), at=0.0)
    assert c.state is State.ESTABLISHED
    assert c.snd_mss == 1220


def test_must_16_effective_send_mss_is_the_smaller_of_peer_mss_and_our_mtu() -> None:
    """The peer offers 9000, our MTU allows 1460: segments are 1460 octets."""
    c = conn_established(peer_options=(Mss(9000),))
    assert c.snd_mss == MSS
    c.set_nodelay(True)
    c.send(b"b" * 3000, 0.1)
    got = pull(c, 0.1)
    assert [len(s.payload) for s in got] == [1460, 1460, 80]


def test_must_16_smaller_peer_mss_is_used() -> None:
    c = conn_established(peer_options=(Mss(500),))
    assert c.snd_mss == 500
    c.set_nodelay(True)
    c.send(b"b" * 1200, 0.1)
    assert [len(s.payload) for s in pull(c, 0.1)] == [500, 500, 200]


def test_must_65_mss_option_only_on_syn_segments() -> None:
    c = make_conn(FULL)
    c.open_active(0.0)
    syn = pull(c, 0.0)[0]
    assert syn.option(Mss) == Mss(MSS)
    feed(c, seg(R(0), L(1), SYN, options=(Mss(MSS), SackPermitted(), Timestamps(7, 0), WindowScale(2))),
         at=0.0)
    c.send(b"x" * 4000, 0.0)
    later = pull(c, 0.0)
    assert later and all(s.option(Mss) is None for s in later)


def test_syn_ack_mirrors_only_the_options_the_peer_offered() -> None:
    """Window scale and timestamps are used only if both ends send them (RFC 7323 §1.3, §2.2);
    SACK only if both permit it (RFC 2018 §2)."""
    c = conn_listen(FULL)
    feed(c, seg(R(0), flags=SYN, options=(Mss(1400),)), at=0.0)
    expect(c, at=0.0, segments=[out(L(0), R(1), SYN, window=65535, options=(Mss(MSS),))])
    assert (c.ts_ok, c.sack_ok, c.snd_wscale, c.rcv_wscale) == (False, False, 0, 0)
    assert c.snd_mss == 1400


def test_syn_ack_with_every_option_when_the_peer_offers_them() -> None:
    c = conn_listen(FULL)
    feed(c, seg(R(0), flags=SYN, options=(Mss(1400), SackPermitted(), Timestamps(1000, 0), Nop(),
                                          WindowScale(7))), at=0.5)
    expect(c, at=0.5, segments=[out(L(0), R(1), SYN, window=65535, options=(
        Mss(MSS), SackPermitted(), Timestamps(500, 1000), Nop(), WindowScale(3)))])
    assert (c.ts_ok, c.sack_ok, c.snd_wscale, c.rcv_wscale) == (True, True, 7, 3)


def test_window_scale_shift_above_14_is_treated_as_14() -> None:
    c = conn_listen(FULL)
    feed(c, seg(R(0), flags=SYN, options=(WindowScale(15),)), at=0.0)
    assert c.snd_wscale == 14


def test_window_scaling_applies_to_seg_wnd_after_the_syn_but_never_on_it() -> None:
    """RFC 7323 §2.2: the window field of a SYN is not scaled; later ones are shifted."""
    c = make_conn(FULL)
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, window=1000, options=(Mss(MSS), WindowScale(4))), at=0.0)
    assert c.state is State.ESTABLISHED
    assert c.snd_wnd == 1000
    expect(c, at=0.0, segments=[out(L(1), R(1), window=(256 * 1024) >> 3, options=())])
    feed(c, seg(R(1), L(1), window=1000), at=0.1)
    assert c.snd_wnd == 16000


def test_timestamps_are_echoed_on_every_segment_once_negotiated() -> None:
    c = make_conn(FULL.with_(sack=False, window_scaling=False))
    c.open_active(1.0)
    assert pull(c, 1.0)[0].option(Timestamps) == Timestamps(1000, 0)
    feed(c, seg(R(0), L(1), SYN, options=(Mss(MSS), Timestamps(777, 1000))), at=1.2)
    expect(c, at=1.2, segments=[out(L(1), R(1), options=(Nop(), Nop(), Timestamps(1200, 777)))])
    feed(c, seg(R(1), L(1), payload=b"abc", options=(Timestamps(790, 1200),)), at=1.3)
    expect(c, at=1.3, segments=[out(L(1), R(4), options=(Nop(), Nop(), Timestamps(1300, 790)))])


def test_paws_drops_a_segment_with_an_old_timestamp_and_acks() -> None:
    """RFC 7323 §5.3: TSval older than TS.Recent: drop the segment, send an ACK."""
    c = make_conn(FULL.with_(sack=False, window_scaling=False))
    c.open_active(1.0)
    pull(c, 1.0)
    feed(c, seg(R(0), L(1), SYN, options=(Timestamps(5000, 1000),)), at=1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(1), payload=b"stale", options=(Timestamps(4000, 1000),)), at=1.5)
    expect(c, at=1.5, segments=[out(L(1), R(1), options=(Nop(), Nop(), Timestamps(1500, 5000)))])
    assert c.readable == 0
    # The same octets with a current timestamp are taken.
    feed(c, seg(R(1), L(1), payload=b"fresh", options=(Timestamps(5001, 1000),)), at=1.6)
    assert c.receive(10, 1.6) == b"fresh"


def test_paws_timestamp_comparison_wraps_modulo_2_32() -> None:
    c = make_conn(FULL.with_(sack=False, window_scaling=False))
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, options=(Timestamps(0xFFFFFFF0, 0),)), at=0.0)
    pull(c, 0.0)
    feed(c, seg(R(1), L(1), payload=b"new", options=(Timestamps(0x10, 0),)), at=0.1)  # newer: wrapped
    assert c.receive(10, 0.1) == b"new"


def test_sack_blocks_report_out_of_order_data() -> None:
    """RFC 2018 §4: the duplicate ACK for out-of-order data carries SACK blocks; "The first SACK
    block ... MUST specify the contiguous block of data containing the segment which triggered
    this ACK" and the others repeat the most recently reported ones."""
    c = make_conn(FULL.with_(timestamps=False, window_scaling=False))
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, options=(Mss(MSS), SackPermitted())), at=0.0)
    pull(c, 0.0)
    assert c.sack_ok
    feed(c, seg(R(11), L(1), payload=b"k" * 10), at=0.1)
    expect(c, at=0.1, segments=[out(L(1), R(1), options=(Nop(), Nop(), Sack(((R(11), R(21)),))))])
    feed(c, seg(R(31), L(1), payload=b"m" * 10), at=0.2)
    expect(c, at=0.2, segments=[out(L(1), R(1), options=(
        Nop(), Nop(), Sack(((R(31), R(41)), (R(11), R(21))))))])  # the newest block first
    feed(c, seg(R(1), L(1), payload=b"j" * 10), at=0.3)
    expect(c, at=0.3, segments=[out(L(1), R(21), options=(Nop(), Nop(), Sack(((R(31), R(41)),))))])


def test_must_1_rec_1_windows_are_unsigned_and_held_in_32_bits() -> None:
    """A window field of 0xFFFF is 65535 (never −1), and scaled by 14 it still fits the 32-bit
    SND.WND."""
    c = make_conn(FULL)
    c.open_active(0.0)
    pull(c, 0.0)
    feed(c, seg(R(0), L(1), SYN, window=0xFFFF, options=(Mss(MSS), WindowScale(14))), at=0.0)
    assert c.snd_wnd == 0xFFFF
    feed(c, seg(R(1), L(1), window=0xFFFF), at=0.1)
    assert c.snd_wnd == 0xFFFF << 14 < 1 << 32
