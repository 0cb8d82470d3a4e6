"""RFC 2018 (TCP selective acknowledgment options), each test written from the sentence of the RFC
it quotes: the option exchange (§2, §3), the data receiver (§4, §8) and the data sender (§5,
§8). ``docs/conformance.md`` lists them with their ids (``2018-…``), status and tests.

Level 1 (tcpkit): one connection with SACK negotiated (``sack=True``; no timestamps unless a
test turns them on), exact segments at exact virtual times."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from tcpkit import (
    MSS,
    PLAIN,
    L,
    R,
    conn_established,
    feed,
    make_conn,
    pull,
    seg,
)

from synack.core.connection import Config, Connection
from synack.core.wire import SYN, Mss, Option, Sack, SackPermitted, Segment, Timestamps, seq_diff

CFG = PLAIN.with_(sack=True)
PEER = (Mss(MSS), SackPermitted())
DATA = bytes(range(251)) * 200


def blocks(s: Segment) -> tuple[tuple[int, int], ...]:
    """The SACK blocks of a segment we sent (empty without a SACK option)."""
    opt = s.option(Sack)
    return () if opt is None else opt.blocks


def receiver(config: Config = CFG, peer: Sequence[Option] = PEER) -> Connection:
    return conn_established(config, peer_options=peer)


def held(c: Connection, start: int, size: int, at: float) -> Segment:
    """The peer's out-of-order segment [R(start), R(start + size)); returns our ACK of it."""
    feed(c, seg(R(start), L(1), payload=b"o" * size), at=at)
    (ack,) = pull(c, at)
    return ack


# =============================================================================================
# §2, §3: the options
# =============================================================================================


def test_2_permitted_only_on_syn_segments() -> None:
    """2018-2-PERMITTED: the SACK-Permitted option "may be sent in a SYN by a TCP that has been
    extended to receive (and presumably process) the SACK option once the connection has opened.
    It MUST NOT be sent on non-SYN segments." """
    c = make_conn(CFG)
    c.open_active(0.0)
    (syn,) = pull(c, 0.0)
    assert syn.option(SackPermitted) is not None
    feed(c, seg(R(0), L(1), SYN, options=PEER), at=0.0)
    c.send(DATA[:3 * MSS], 0.1)
    feed(c, seg(R(1), L(1), payload=b"x"), at=0.2)
    later = pull(c, 0.0) + pull(c, 0.1) + pull(c, 0.2)
    assert later and all(s.option(SackPermitted) is None for s in later)


@pytest.mark.parametrize("timestamps,limit", [(False, 4), (True, 3)], ids=["no-timestamps", "timestamps"])
def test_3_at_most_four_blocks_three_with_timestamps(timestamps: bool, limit: int) -> None:
    """2018-3-FORMAT: "the 40 bytes available for TCP options can specify a maximum of 4 blocks.
    It is expected that SACK will often be used in conjunction with the Timestamp option ...
    thus a maximum of 3 SACK blocks will be allowed in this case." Six separate blocks held."""
    config = CFG.with_(timestamps=timestamps)
    peer = PEER + ((Timestamps(1, 0),) if timestamps else ())
    c = receiver(config, peer)
    for k in range(6):
        ack = held(c, 1001 + 2000 * k, 500, 1.0 + k * 0.01)
    assert len(blocks(ack)) == limit
    assert len(ack.options) <= 40


# =============================================================================================
# §4 Generating SACK options: the data receiver
# =============================================================================================


def test_4_neg_no_sack_option_unless_sack_permitted_was_received() -> None:
    """2018-4-NEG: "If the data receiver has not received a SACK-Permitted option for a given
    connection, it MUST NOT send SACK options on that connection." """
    c = receiver(CFG, (Mss(MSS),))
    ack = held(c, 1001, 500, 1.0)
    assert ack.ack == R(1) and blocks(ack) == ()


def test_4_all_every_ack_carries_sack_while_the_receiver_holds_data_above_a_hole() -> None:
    """2018-4-ALL: "If sent at all, SACK options SHOULD be included in all ACKs which do not ACK
    the highest sequence number in the data receiver's queue." — the duplicate ACK, the ACK of
    in-order data that leaves a hole, our own data segments; then none once all is in order."""
    c = receiver()
    assert blocks(held(c, 2001, 500, 1.0)) == ((R(2001), R(2501)),)
    feed(c, seg(R(1), L(1), payload=b"a" * 1000), at=1.1)  # in order, the hole [R(1001), R(2001)) stays
    (ack,) = pull(c, 1.1)
    assert ack.ack == R(1001) and blocks(ack) == ((R(2001), R(2501)),)
    c.send(b"reply", 1.2)
    (data,) = pull(c, 1.2)
    assert data.payload == b"reply" and blocks(data) == ((R(2001), R(2501)),)
    feed(c, seg(R(1001), L(1), payload=b"b" * 1000), at=1.3)  # fills the hole: everything in order
    (ack,) = pull(c, 1.3)
    assert ack.ack == R(2501) and blocks(ack) == ()


def test_4_first_the_block_holding_the_segment_that_triggered_the_ack() -> None:
    """2018-4-FIRST: "The first SACK block ... MUST specify the contiguous block of data containing
    the segment which triggered this ACK, unless that segment advanced the Acknowledgment Number
    field in the header." A segment that extends an older block, then one that repeats data
    already held, each put their own block first."""
    c = receiver()
    held(c, 1001, 500, 1.0)
    held(c, 3001, 500, 1.1)
    ack = held(c, 1501, 500, 1.2)  # extends the first block
    assert blocks(ack)[0] == (R(1001), R(2001))
    ack = held(c, 3001, 500, 1.3)  # a copy of data already held
    assert blocks(ack)[0] == (R(3001), R(3501))


def test_4_repeat_then_the_most_recently_reported_blocks() -> None:
    """2018-4-REPEAT: "The SACK option SHOULD be filled out by repeating the most recently
    reported SACK blocks (based on first SACK blocks in previous SACK options) that are not
    subsets of a SACK block already included", and 2018-4-MANY: "The data receiver SHOULD
    include as many distinct SACK blocks as possible". Blocks arrive in the order C, A, D, B."""
    c = receiver()
    order = [5001, 1001, 7001, 3001]
    for k, start in enumerate(order):
        ack = held(c, start, 500, 1.0 + k * 0.1)
    assert blocks(ack) == tuple((R(s), R(s + 500)) for s in reversed(order))


# =============================================================================================
# §5 and §8: the data sender after a retransmission timeout
# =============================================================================================


def sender(n: int = 6) -> Connection:
    c = conn_established(CFG, peer_options=PEER)
    c.cc.cwnd = n * MSS
    c.send(DATA[:n * MSS], 1.0)
    assert len(pull(c, 1.0)) == n
    return c


def S(i: int) -> int:
    return L(1 + i * MSS)


def test_5_left_edge_retransmitted_after_a_timeout_even_if_sacked() -> None:
    """2018-5-LEFT-EDGE: "The data sender MUST retransmit the segment at the left edge of the
    window after a retransmit timeout, whether or not the SACKed bit is on for that segment." The
    receiver SACKed S(0) (and then discarded it)."""
    c = sender()
    feed(c, seg(R(1), S(0), options=[Sack(((S(0), S(1)),))]), at=1.1)
    pull(c, 1.1)
    deadline = c.next_deadline()
    assert deadline is not None
    got = pull(c, deadline)
    assert got and got[0].seq == S(0) and got[0].payload == DATA[:MSS]


def test_8_prior_sack_information_is_ignored_after_a_timeout() -> None:
    """2018-8-IGNORE: "when a retransmit timeout occurs the data sender MUST ignore prior SACK
    information in determining which data to retransmit", and 2018-5-RTO-CLEAR: "After a
    retransmit timeout the data sender SHOULD turn off all of the SACKed bits". S(2) and S(3)
    were SACKed before the timeout; after it, the ACK of S(0) brings S(1), S(2) again."""
    c = sender()
    feed(c, seg(R(1), S(0), options=[Sack(((S(2), S(4)),))]), at=1.1)
    pull(c, 1.1)
    deadline = c.next_deadline()
    assert deadline is not None
    pull(c, deadline)
    assert c.snapshot()["recovery"]["sacked"] == []
    feed(c, seg(R(1), S(1)), at=deadline + 0.1)
    got = pull(c, deadline + 0.1)
    assert [seq_diff(s.seq, L(1)) // MSS for s in got] == [1, 2]


def test_8_newest_reported_first_even_when_it_is_discarded() -> None:
    """2018-8-NEWEST: "The first SACK block MUST reflect the newest segment. Even if the newest
    segment is going to be discarded and the receiver has already discarded adjacent segments,
    the first SACK block MUST report, at a minimum, the left and right edges of the newest
    segment." The out-of-order queue holds 1000 octets; the third block does not fit."""
    c = receiver(CFG.with_(ooo_limit=1000))
    held(c, 1001, 500, 1.0)
    held(c, 3001, 500, 1.1)
    ack = held(c, 5001, 500, 1.2)  # refused: the queue is full
    assert blocks(ack)[0] == (R(5001), R(5501))
    assert (R(1001), R(1501)) in blocks(ack) and (R(3001), R(3501)) in blocks(ack)
    assert c.snapshot()["out_of_order"] == 1000  # reported, not held


def test_8_a_refused_segment_is_reported_once_not_for_ever() -> None:
    """2018-8-NEWEST, the other side of it: the block of a refused segment is not data we hold.
    Once a later segment arrives it is no longer the newest, and it is not reported again."""
    c = receiver(CFG.with_(ooo_limit=1500))
    held(c, 1001, 500, 1.0)
    held(c, 3001, 500, 1.1)
    ack = held(c, 5001, 600, 1.2)  # refused: 1600 octets would be held
    assert blocks(ack)[0] == (R(5001), R(5601))
    ack = held(c, 3501, 500, 1.3)  # accepted: 1500 octets held
    assert (R(5001), R(5501)) not in blocks(ack)
    assert blocks(ack)[0] == (R(3001), R(4001))
