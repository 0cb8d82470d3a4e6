"""RFC 6675 conservative SACK-based loss recovery, sender side (``Config.sack_recovery``).

Level 1: exact segments. The connection has SACK negotiated (no timestamps, so up to four blocks)
and a congestion window opened by earlier traffic; the peer's ACKs carry SACK blocks. Segment
``S(i)`` is our i-th full-sized data segment, [L(1 + i·MSS), L(1 + (i+1)·MSS)).

Level 2: the 10 MB both-ways transfer of ``test_transfer.py`` with every 7th packet dropped,
with and without SACK recovery.
"""

from __future__ import annotations

import random
from typing import Any

from tcpkit import (
    MSS,
    PLAIN,
    PSH,
    L,
    Out,
    R,
    conn_established,
    expect,
    expect_nothing,
    feed,
    out,
    pull,
    seg,
)
from test_transfer import CFG, MB, check, transfer

from synack.core.connection import Config, Connection
from synack.core.wire import Mss, Sack, SackPermitted

SACK_CFG = PLAIN.with_(sack=True)
PEER = (Mss(MSS), SackPermitted())
DATA = random.Random(6675).randbytes(20 * MSS)


def S(i: int) -> int:
    """The first sequence number of our i-th data segment."""
    return L(1 + i * MSS)


def data(i: int, n: int = 1) -> bytes:
    return DATA[i * MSS:(i + n) * MSS]


def d(i: int, ack: int = R(1), total: int = 20) -> Out:
    """Our data segment S(i) as expected on the wire (PSH on the last one buffered)."""
    return out(S(i), ack, PSH if i == total - 1 else 0, data(i))


def sack(*blocks: tuple[int, int]) -> tuple[Sack]:
    return (Sack(tuple((S(a), S(b)) for a, b in blocks)),)


def recovery(c: Connection) -> dict[str, Any]:
    """The loss-recovery part of the connection's public snapshot."""
    rec: dict[str, Any] = c.snapshot()["recovery"]
    return rec


def sending(config: Config = SACK_CFG, *, segments: int = 20, cwnd: int = 10) -> Connection:
    """ESTABLISHED with SACK; ``segments`` full segments queued, the first ``cwnd`` of them sent
    at t=0 (cwnd opened to ``cwnd`` segments by earlier traffic)."""
    c = conn_established(config, peer_options=PEER)
    assert c.sack_ok == config.sack
    c.cc.cwnd = cwnd * MSS
    assert c.send(DATA[:segments * MSS], 0.0) == segments * MSS
    expect(c, at=0.0, segments=[d(i, total=segments) for i in range(cwnd)])
    return c


def test_sack_blocks_are_recorded_and_data_stays_buffered() -> None:
    c = sending(segments=10)
    space = c.send_space
    feed(c, seg(R(1), S(0), options=sack((1, 3), (5, 6))), at=0.1)
    assert recovery(c)["sacked"] == [(S(1), S(3)), (S(5), S(6))]
    feed(c, seg(R(1), S(0), options=sack((3, 4), (8, 9))), at=0.2)
    assert recovery(c)["sacked"] == [(S(1), S(4)), (S(5), S(6)), (S(8), S(9))]
    # Blocks below SND.UNA (D-SACK), beyond what was sent, or reversed are ignored.
    feed(c, seg(R(1), S(0), options=(Sack(((L(-100), L(0)), (S(9), S(12)), (S(7), S(6)))),)), at=0.25)
    assert recovery(c)["sacked"] == [(S(1), S(4)), (S(5), S(6)), (S(8), S(10))]
    # SACKed data is not acknowledged: the send buffer still holds it (RFC 2018 §8).
    assert c.send_space == space
    # A cumulative ACK drops what it covers from the scoreboard.
    feed(c, seg(R(1), S(2), options=sack((5, 6), (8, 10))), at=0.3)
    assert recovery(c)["sacked"] == [(S(2), S(4)), (S(5), S(6)), (S(8), S(10))]
    assert c.send_space == space + 2 * MSS


def test_three_sack_acks_carrying_data_retransmit_the_first_hole_at_once() -> None:
    # All data sent (no Limited Transmit); the peer's ACKs carry data, so none of them is a
    # duplicate ACK for RFC 5681, but each newly SACKs data: a DupAck for RFC 6675.
    c = sending(segments=10)
    feed(c, seg(R(1), S(0), payload=b"a" * 10, options=sack((1, 2))), at=0.1)
    expect(c, at=0.1, segments=[out(S(10), R(11))])  # our ACK of their data; nothing else
    feed(c, seg(R(11), S(0), payload=b"b" * 10, options=sack((1, 3))), at=0.2)
    expect(c, at=0.2, segments=[out(S(10), R(21))])
    feed(c, seg(R(21), S(0), payload=b"c" * 10, options=sack((1, 4))), at=0.3)
    # Third DupAck: recovery, the first hole at once (the ACK rides on it), long before the RTO.
    expect(c, at=0.3, segments=[out(S(0), R(31), payload=data(0))])
    assert recovery(c)["recovering"] and c.cc.ssthresh == c.cc.cwnd == 5 * MSS
    assert c.stats[2] == 1
    # pipe = S(0) retransmitted + S(4)..S(9) not lost = 7 MSS > cwnd: nothing more.
    expect_nothing(c, at=0.31)


def test_pure_dupacks_without_new_sack_information_do_not_count() -> None:
    c = sending(segments=10)
    feed(c, seg(R(1), S(0), options=sack((1, 2))), at=0.1)
    for t in (0.2, 0.3, 0.4):  # the same block again: nothing newly SACKed
        feed(c, seg(R(1), S(0), options=sack((1, 2))), at=t)
    assert recovery(c)["dupacks"] == 1 and not recovery(c)["recovering"]
    expect_nothing(c, at=0.5)


def test_is_lost_enters_recovery_before_three_dupacks() -> None:
    # One ACK SACKing three segments above SND.UNA: IsLost(HighACK+1) (RFC 6675 §5 step 2).
    c = sending(segments=10)
    feed(c, seg(R(1), S(0), options=sack((1, 4))), at=0.1)
    assert recovery(c)["recovering"]
    expect(c, at=0.1, segments=[out(S(0), R(1), payload=data(0))])


def test_several_holes_repaired_in_one_recovery_and_pipe_limits_sending() -> None:
    c = sending()  # S(0)..S(9) in flight; S(0), S(3) and S(6) are lost
    # First and second DupAcks: Limited Transmit sends one new segment each (RFC 3042).
    # (Two SACKed ranges of one segment each: IsLost(S(0)) is still false.)
    feed(c, seg(R(1), S(0), options=sack((1, 2))), at=0.1)
    expect(c, at=0.1, segments=[out(S(10), R(1), payload=data(10))])
    feed(c, seg(R(1), S(0), options=sack((1, 2), (4, 5))), at=0.2)
    expect(c, at=0.2, segments=[out(S(11), R(1), payload=data(11))])
    assert not recovery(c)["recovering"]
    # Third: recovery. RecoveryPoint = HighData = S(12); cwnd = ssthresh = 10/2 MSS — the two
    # Limited Transmit segments are not part of FlightSize (RFC 6675 §5 (4.2), RFC 5681 §3.2).
    # S(0) at once; then pipe (S(0) again in flight, S(10) and S(11) not lost = 3 MSS) leaves
    # room for the two other lost holes.
    feed(c, seg(R(1), S(0), options=sack((1, 3), (4, 6), (7, 10))), at=0.3)
    expect(c, at=0.3, segments=[
        out(S(0), R(1), payload=data(0)),
        out(S(3), R(1), payload=data(3)),
        out(S(6), R(1), payload=data(6)),
    ])
    assert recovery(c)["recovery_point"] == S(12) and c.cc.cwnd == 5 * MSS
    # S(10) is SACKed: one segment left the network, exactly one new segment may enter.
    feed(c, seg(R(1), S(0), options=sack((1, 3), (4, 6), (7, 11))), at=0.31)
    expect(c, at=0.31, segments=[out(S(12), R(1), payload=data(12))])
    # A DupAck that SACKs nothing new sends nothing.
    feed(c, seg(R(1), S(0), options=sack((1, 3), (4, 6), (7, 11))), at=0.315)
    expect_nothing(c, at=0.315)
    # The retransmissions arrive: partial ACKs move SND.UNA; each frees room for one segment.
    feed(c, seg(R(1), S(3), options=sack((4, 6), (7, 11))), at=0.32)
    expect(c, at=0.32, segments=[out(S(13), R(1), payload=data(13))])
    feed(c, seg(R(1), S(6), options=sack((7, 11))), at=0.33)
    expect(c, at=0.33, segments=[out(S(14), R(1), payload=data(14))])
    assert recovery(c)["recovering"]
    # The ACK of RecoveryPoint ends the recovery, without a timeout; three holes, three
    # retransmissions, each once.
    feed(c, seg(R(1), S(12)), at=0.34)
    assert not recovery(c)["recovering"] and recovery(c)["sacked"] == []
    assert c.stats[2] == 3
    assert c.cc.cwnd == 5 * MSS


def test_rescue_retransmission_once_per_recovery() -> None:
    # Rule (4): nothing lost left, no new data: one retransmission of the highest un-SACKed
    # segment once the first retransmission is acknowledged.
    c = sending(segments=10)
    feed(c, seg(R(1), S(0), options=sack((1, 4))), at=0.1)
    expect(c, at=0.1, segments=[out(S(0), R(1), payload=data(0))])
    feed(c, seg(R(1), S(4), options=sack((5, 6))), at=0.2)  # S(0) arrived; S(4) missing; S(6).. too
    # pipe: S(4) not lost (one range above) 1 + S(6)..S(9) 4 = 5 MSS = cwnd: nothing.
    expect_nothing(c, at=0.2)
    feed(c, seg(R(1), S(4), options=sack((5, 7))), at=0.21)
    # pipe 4 MSS; rule (3): S(4) (above HighRxt, below the highest SACK) though not yet lost.
    expect(c, at=0.21, segments=[out(S(4), R(1), payload=data(4))])
    feed(c, seg(R(1), S(4), options=sack((5, 8))), at=0.22)
    # pipe: S(4) (retransmitted, not lost) 2 + S(8), S(9) 2 = 4: rule (4), the last segment.
    expect(c, at=0.22, segments=[d(9, total=10)])
    feed(c, seg(R(1), S(4), options=sack((5, 9))), at=0.23)
    expect_nothing(c, at=0.23)  # no second rescue


def test_rto_clears_the_scoreboard_and_ends_recovery() -> None:
    c = sending(segments=10)
    feed(c, seg(R(1), S(0), options=sack((1, 4))), at=0.1)
    expect(c, at=0.1, segments=[out(S(0), R(1), payload=data(0))])
    assert recovery(c)["recovering"] and recovery(c)["sacked"]
    # No ACK at all: the retransmission timer (1 s after the last transmission of t=0) fires.
    expect(c, at=1.0, segments=[out(S(0), R(1), payload=data(0))])
    assert not recovery(c)["recovering"] and recovery(c)["sacked"] == [] and c.cc.cwnd == MSS
    assert recovery(c)["recovery_point"] == S(10)
    # SACK information arriving after the RTO is recorded again, but starts no recovery before
    # SND.UNA reaches the RecoveryPoint (RFC 6675 §5.1).
    feed(c, seg(R(1), S(1), options=sack((2, 6))), at=1.1)
    assert recovery(c)["sacked"] == [(S(2), S(6))] and not recovery(c)["recovering"]


def test_reneging_is_safe() -> None:
    # The peer SACKs S(1)..S(3), then reneges (drops them): after the RTO the sender still has
    # every octet and sends them again from SND.UNA.
    c = sending(segments=10)
    feed(c, seg(R(1), S(0), options=sack((1, 4))), at=0.1)
    expect(c, at=0.1, segments=[out(S(0), R(1), payload=data(0))])
    expect(c, at=1.0, segments=[out(S(0), R(1), payload=data(0))])
    feed(c, seg(R(1), S(1)), at=1.1)  # S(0) arrives; no SACK blocks any more
    expect(c, at=1.1, segments=[out(S(1), R(1), payload=data(1)), out(S(2), R(1), payload=data(2))])
    feed(c, seg(R(1), S(3)), at=1.2)
    expect(c, at=1.2, segments=[out(S(3), R(1), payload=data(3)), out(S(4), R(1), payload=data(4)),
                                out(S(5), R(1), payload=data(5))])


def test_without_sack_negotiated_sack_blocks_are_ignored() -> None:
    c = sending(SACK_CFG.with_(sack=False))
    assert not c.sack_ok
    for i, t in enumerate((0.1, 0.2, 0.3)):
        feed(c, seg(R(1 + 10 * i), S(0), payload=b"x" * 10, options=sack((1, 2 + i))), at=t)
        expect(c, at=t, segments=[out(S(10), R(11 + 10 * i))])
    assert recovery(c)["algorithm"] == "newreno" and not recovery(c)["recovering"]


def test_sack_recovery_off_keeps_rfc5681_fast_retransmit() -> None:
    c = sending(SACK_CFG.with_(sack_recovery=False), segments=10)
    assert c.sack_ok
    feed(c, seg(R(1), S(1), options=sack((2, 3))), at=0.05)  # S(0) arrived: past recover = ISS
    for t in (0.1, 0.2):
        feed(c, seg(R(1), S(1), options=sack((2, 3))), at=t)
        expect_nothing(c, at=t)
    feed(c, seg(R(1), S(1), options=sack((2, 3))), at=0.3)  # third pure duplicate ACK
    expect(c, at=0.3, segments=[out(S(1), R(1), payload=data(1))])
    assert recovery(c)["algorithm"] == "newreno" and recovery(c)["recovering"]


# ---------------------------------------------------------------------------------------------
# Level 2
# ---------------------------------------------------------------------------------------------


def test_every_7th_segment_dropped_10mb_both_ways_sack_recovery_is_much_faster() -> None:
    def every7(pkt: object, idx: int) -> bool:
        return idx % 7 == 6

    without = transfer(10 * MB, every7, config=CFG.with_(sack_recovery=False))
    check(without)
    with_sack = transfer(10 * MB, every7, config=CFG.with_(sack_recovery=True))
    check(with_sack)
    assert with_sack.client.sack_ok and with_sack.server.sack_ok
    assert with_sack.pipe.dropped[0] > 1000 and with_sack.pipe.dropped[1] > 1000
    # Every 7th packet, retransmissions included: many fast retransmissions are lost too, and
    # each such loss ends in a timeout that lowers ssthresh a second time (RFC 5681 §4.3, which
    # Linux does not do). Measured: about 912 virtual seconds without SACK recovery, 615 with
    # (764 and 101 when the timeout did not lower ssthresh again).
    assert without.pipe.now > 500
    assert with_sack.pipe.now < 0.8 * without.pipe.now


def test_peer_that_negotiated_sack_but_sends_no_blocks_still_gets_fast_retransmit() -> None:
    """Three RFC 5681 duplicate ACKs without any SACK option count as DupAcks (docs/design.md),
    so a peer that negotiated SACK-permitted but never sends blocks is not left to the RTO."""
    c = sending(segments=10)
    for t in (0.1, 0.2):
        feed(c, seg(R(1), S(0)), at=t)
        expect_nothing(c, at=t)  # all data sent: Limited Transmit has nothing new to send
    feed(c, seg(R(1), S(0)), at=0.3)
    got = pull(c, 0.3)
    assert got and got[0].seq == S(0) and got[0].payload == data(0)
    assert recovery(c)["recovering"] and c.stats[2] == 1
