"""RFC 5961 (improving TCP's robustness to blind in-window attacks), each test written from the
numbered steps of the RFC it quotes. ``docs/conformance.md`` lists them with their ids
(``5961-…``), status and tests; RFC 9293 §3.10.7.4 adopts these steps for stacks that implement
RFC 5961, and per-state tests are in ``test_conn_close.py`` and ``test_conn_established.py``.

The challenge ACK of the RFC is ``<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>``. Level 1 (tcpkit): one
connection, exact segments at exact virtual times; the window we offer is 65535 octets from R(1),
so with RCV.NXT = R(101) the receive window is [R(101), R(65536))."""

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

from synack.core.connection import Connection
from synack.core.records import State
from synack.core.wire import RST, SYN

DATA = bytes(range(251)) * 100


def busy() -> Connection:
    """ESTABLISHED; we sent 300 octets ("a" × 300, SND.NXT = L(301)) and received 100 (RCV.NXT =
    R(101)); nothing acknowledged yet by the peer."""
    c = conn_established(PLAIN.with_(nodelay=True))
    c.send(b"a" * 300, 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(1), PSH, b"b" * 100), at=1.1)
    expect(c, at=1.1, segments=[out(L(301), R(101))])
    return c


# =============================================================================================
# §3.2 RST
# =============================================================================================


@pytest.mark.parametrize("seq", [R(65536), R(50), R(101 - 70000)], ids=["right-edge", "old", "far-below"])
def test_3_2_1_a_rst_outside_the_window_is_silently_dropped(seq: int) -> None:
    """5961-3.2-1: "If the RST bit is set and the sequence number is outside the current receive
    window, silently drop the segment." """
    c = busy()
    feed(c, seg(seq, None, RST), at=1.2)
    expect_nothing(c, at=1.2)
    assert c.state is State.ESTABLISHED


def test_3_2_2_a_rst_exactly_at_rcv_nxt_resets_the_connection() -> None:
    """5961-3.2-2: "If the RST bit is set and the sequence number exactly matches the next
    expected sequence number (RCV.NXT), then TCP MUST reset the connection." """
    c = busy()
    feed(c, seg(R(101), None, RST), at=1.2)
    assert c.state is State.CLOSED
    expect_nothing(c, at=1.2)


@pytest.mark.parametrize("seq", [R(102), R(5000), R(65535)], ids=["next", "middle", "last"])
def test_3_2_3_a_rst_elsewhere_in_the_window_draws_a_challenge_ack_and_is_dropped(seq: int) -> None:
    """5961-3.2-3: "If the RST bit is set and the sequence number does not exactly match the next
    expected sequence value, yet is within the current receive window, TCP MUST send an
    acknowledgment (challenge ACK): <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>. After sending the
    challenge ACK, TCP MUST drop the unacceptable segment and stop processing the incoming
    packet further." """
    c = busy()
    feed(c, seg(seq, L(301), RST | PSH, b"rst data"), at=1.2)
    expect(c, at=1.2, segments=[out(L(301), R(101))])
    assert c.state is State.ESTABLISHED
    assert c.snd_una == L(1) and c.rcv_nxt == R(101)  # its ACK and text were not processed


# =============================================================================================
# §4.2 SYN
# =============================================================================================


@pytest.mark.parametrize("seq,ack", [(R(101), None), (R(5000), None), (R(101 + 70000), None), (R(0), L(1)),
                                     (R(50), L(301))],
                         ids=["at-rcv-nxt", "in-window", "above", "old-syn-ack", "old-with-ack"])
def test_4_2_any_syn_draws_a_challenge_ack_and_is_dropped(seq: int, ack: int | None) -> None:
    """5961-4.2: "If the SYN bit is set, irrespective of the sequence number, TCP MUST send an ACK
    (also referred to as challenge ACK) to the remote peer: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
    After sending the acknowledgment, TCP MUST drop the unacceptable segment and stop processing
    further." """
    c = busy()
    feed(c, seg(seq, ack, SYN), at=1.2)
    expect(c, at=1.2, segments=[out(L(301), R(101))])
    assert c.state is State.ESTABLISHED and c.snd_una == L(1)


# =============================================================================================
# §5.2 ACK (blind data injection)
# =============================================================================================


def test_5_2_an_ack_of_data_never_sent_is_discarded_with_its_data_and_answered() -> None:
    """5961-5.2: "The ACK value is considered acceptable only if it is in the range of ((SND.UNA -
    MAX.SND.WND) <= SEG.ACK <= SND.NXT). All incoming segments whose ACK value doesn't satisfy the
    above condition MUST be discarded and an ACK sent back." SEG.ACK above SND.NXT, with data."""
    c = busy()
    feed(c, seg(R(101), L(302), PSH, b"injected"), at=1.2)
    expect(c, at=1.2, segments=[out(L(301), R(101))])
    assert c.readable == 100  # only the 100 octets received before


def test_5_2_an_ack_too_far_below_snd_una_is_discarded_with_its_data_and_answered() -> None:
    """5961-5.2: below SND.UNA − MAX.SND.WND (MAX.SND.WND = 65535 here) the segment is discarded
    and answered too."""
    c = busy()
    feed(c, seg(R(101), (L(1) - 65536) & 0xFFFFFFFF, PSH, b"injected"), at=1.2)
    expect(c, at=1.2, segments=[out(L(301), R(101))])
    assert c.readable == 100


def test_5_2_an_old_ack_within_max_snd_wnd_is_acceptable_and_its_data_taken() -> None:
    """5961-5.2: an ACK in [SND.UNA − MAX.SND.WND, SND.UNA) is in the acceptable range: the
    segment is processed (its data taken) — "the ACK value is considered acceptable"."""
    c = busy()
    feed(c, seg(R(1), L(201)), at=1.2)  # SND.UNA = L(201)
    feed(c, seg(R(101), L(101), PSH, b"late"), at=1.3)  # SEG.ACK = SND.UNA - 100
    assert c.readable == 104


def test_5_2_max_snd_wnd_is_the_largest_window_the_peer_ever_offered() -> None:
    """5961-5.2: "MAX.SND.WND is defined as the largest window that the local sender has ever
    received from its peer." The peer offered 65535, then shrinks to 1000: an ACK 30000 below
    SND.UNA is still within MAX.SND.WND and acceptable."""
    c = conn_established(PLAIN.with_(nodelay=True))
    c.cc.cwnd = 40 * MSS
    c.send(DATA[:40000], 1.0)
    pull(c, 1.0)
    feed(c, seg(R(1), L(40001), window=1000), at=1.1)
    feed(c, seg(R(1), L(10001), PSH, b"ok", window=1000), at=1.2)
    assert c.readable == 2


# =============================================================================================
# §7 ACK throttling
# =============================================================================================


@pytest.mark.parametrize("limit", [1, 3, 10])
def test_7_challenge_acks_are_throttled_with_a_configurable_limit(limit: int) -> None:
    """5961-7: "An implementation SHOULD include an ACK throttling mechanism to be conservative",
    whose limit an administrator can set. Fifty in-window RSTs and SYNs within one second draw at
    most ``challenge_ack_limit`` challenge ACKs; a second later, more may go."""
    c = conn_established(PLAIN.with_(challenge_ack_limit=limit))
    answered = 0
    for k in range(50):
        flags = RST if k % 2 else SYN
        feed(c, seg(R(1000 + k), None, flags), at=1.0 + k * 0.01)
        answered += len(pull(c, 1.0 + k * 0.01))
    assert answered == limit and c.state is State.ESTABLISHED
    feed(c, seg(R(2000), None, RST), at=2.5)
    assert len(pull(c, 2.5)) == 1
