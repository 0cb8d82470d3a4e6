"""RFC 3042 (Limited Transmit), each test written from the sentence of §2 it quotes.
``docs/conformance.md`` lists them with their ids (``3042-…``), status and tests.

Level 1 (tcpkit): one connection, exact segments at exact virtual times; without SACK (NewReno)
unless a test says otherwise."""

from __future__ import annotations

from tcpkit import (
    MSS,
    PLAIN,
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

from synack.core.connection import Config, Connection
from synack.core.wire import Mss, Option, Sack, SackPermitted, seq_diff

DATA = bytes(range(251)) * 400
SACK_CFG = PLAIN.with_(sack=True)
SACK_PEER = (Mss(MSS), SackPermitted())


def S(i: int) -> int:
    return L(1 + i * MSS)


def d(i: int) -> bytes:
    return DATA[i * MSS:(i + 1) * MSS]


def window_full(cwnd: int = 3, queued: int = 10, config: Config = PLAIN,
                peer: tuple[Option, ...] = (Mss(MSS),)) -> Connection:
    """``cwnd`` segments in flight (S(0)..), ``queued`` segments handed to SEND at 1.0."""
    c = conn_established(config, peer_options=peer)
    c.cc.cwnd = cwnd * MSS
    c.send(DATA[:queued * MSS], 1.0)
    assert len(pull(c, 1.0)) == min(cwnd, queued)
    return c


def test_2_send_one_new_segment_on_each_of_the_first_two_duplicate_acks() -> None:
    """3042-2-SEND: "When a TCP sender has previously unsent data queued for transmission it
    SHOULD use the Limited Transmit algorithm, which calls for a TCP sender to transmit new data
    upon the arrival of the first two consecutive duplicate ACKs"."""
    c = window_full()
    feed(c, seg(R(1), S(0)), at=1.1)
    expect(c, at=1.1, segments=[out(S(3), R(1), 0, d(3))])
    feed(c, seg(R(1), S(0)), at=1.2)
    expect(c, at=1.2, segments=[out(S(4), R(1), 0, d(4))])


def test_2_cwnd2_outstanding_at_most_cwnd_plus_two_segments() -> None:
    """3042-2-CWND2: "The amount of outstanding data would remain less than or equal to the
    congestion window plus 2 segments. In other words, the sender can only send two segments
    beyond the congestion window (cwnd)." — even when both duplicates arrive together and the
    receiver's window would allow more."""
    c = window_full()
    feed(c, seg(R(1), S(0)), at=1.1)
    feed(c, seg(R(1), S(0)), at=1.1)
    got = pull(c, 1.1)
    assert [s.seq for s in got] == [S(3), S(4)]
    assert seq_diff(c.snd_max, c.snd_una) == c.cc.cwnd + 2 * MSS
    feed(c, seg(R(1), S(0), window=60000), at=1.2)  # a window update: not a duplicate
    pull(c, 1.2)
    assert seq_diff(c.snd_max, c.snd_una) <= c.cc.cwnd + 2 * MSS


def test_2_rwnd_only_if_the_receivers_window_allows() -> None:
    """3042-2-RWND: "The receiver's advertised window allows the transmission of the segment." The
    receiver's window is exactly the three segments in flight."""
    c = window_full()
    feed(c, seg(R(1), S(0), window=3 * MSS), at=1.1)  # a window update, not a duplicate
    pull(c, 1.1)
    for k in range(2):
        feed(c, seg(R(1), S(0), window=3 * MSS), at=1.2 + k * 0.01)
        expect_nothing(c, at=1.2 + k * 0.01)


def test_2_nocwnd_the_congestion_window_is_not_changed() -> None:
    """3042-2-NOCWND: "The congestion window (cwnd) MUST NOT be changed when these new segments
    are transmitted." """
    c = window_full()
    cwnd = c.cc.cwnd
    for k in range(2):
        feed(c, seg(R(1), S(0)), at=1.1 + k * 0.01)
        pull(c, 1.1 + k * 0.01)
        assert c.cc.cwnd == cwnd


def test_2_new_only_previously_unsent_data_and_no_early_retransmission() -> None:
    """3042-2-NEW: Limited Transmit sends "new data" — "previously unsent data queued for
    transmission". With nothing new to send, the first two duplicates send nothing: no early
    retransmission of S(0)."""
    c = window_full(queued=3)
    for k in range(2):
        feed(c, seg(R(1), S(0)), at=1.1 + k * 0.01)
        expect_nothing(c, at=1.1 + k * 0.01)


def test_2_fr3_the_third_duplicate_is_a_fast_retransmit_as_before() -> None:
    """3042-2-FR3: the new segments let the sender "infer loss using the standard Fast Retransmit
    threshold of three duplicate ACKs": the third duplicate retransmits S(0)."""
    c = window_full()
    feed(c, seg(R(1), S(1)), at=1.05)  # S(0) arrives; S(1) is lost
    pull(c, 1.05)
    for k in range(2):
        feed(c, seg(R(1), S(1)), at=1.1 + k * 0.01)
        assert all(s.seq != S(1) for s in pull(c, 1.1 + k * 0.01))
    feed(c, seg(R(1), S(1)), at=1.12)
    assert pull(c, 1.12)[0].seq == S(1)


def test_2_sack_no_new_segment_for_a_duplicate_repeating_old_sack_information() -> None:
    """3042-2-SACK: "If the connection is using selective acknowledgments [RFC2018], the data
    sender MUST NOT send new segments in response to duplicate ACKs that contain no new SACK
    information" — a duplicate repeating the SACK block of the one before."""
    c = window_full(config=SACK_CFG, peer=SACK_PEER)
    block = [Sack(((S(1), S(2)),))]
    feed(c, seg(R(1), S(0), options=block), at=1.1)
    expect(c, at=1.1, segments=[out(S(3), R(1), 0, d(3))])  # new SACK information: one segment
    feed(c, seg(R(1), S(0), options=block), at=1.2)
    expect_nothing(c, at=1.2)


def test_2_sack_no_new_segment_for_a_duplicate_without_any_sack_option() -> None:
    """3042-2-SACK: "the data sender MUST NOT send new segments in response to duplicate ACKs
    that contain no new SACK information, as a misbehaving receiver can generate such ACKs to
    trigger inappropriate transmission of data segments" — a duplicate ACK that carries no SACK
    option at all contains no new SACK information."""
    c = window_full(config=SACK_CFG, peer=SACK_PEER)
    feed(c, seg(R(1), S(0)), at=1.1)
    expect_nothing(c, at=1.1)
