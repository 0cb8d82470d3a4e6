"""Level 1: TSO in the core (``Connection.tso_max``, set by a driver through ``Host.tso_max``).

With TSO on, a connection that would send k ≥ 2 full-sized segments back to back now sends one
segment of k·MSS octets instead, for the driver to cut into MSS pieces. The pieces must be the
very segments the connection sends without TSO: same octets, sequence numbers, ACK, window,
options; PSH and FIN only where they were (on the last piece). Retransmissions stay MSS-sized.

Most tests run two connections side by side — one with TSO, one without — feed both the same
segments at the same times, and compare what the TSO one sends, split with :func:`split_tso`,
with what the other one sends.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from tcpkit import (
    FIN,
    MSS,
    PLAIN,
    PSH,
    L,
    R,
    conn_established,
    feed,
    fire,
    pull,
    seg,
    show,
)

from synack.core.connection import Config
from synack.core.records import State
from synack.core.wire import Mss, Option, SackPermitted, Segment, Timestamps

TSO_MAX = 65535 - 80
DATA = bytes(random.Random(7).getrandbits(8) for _ in range(400_000))


def split_tso(s: Segment, mss: int) -> list[Segment]:
    """The MSS-sized pieces a driver makes of ``s`` (as Linux TSO does: every header field
    copied, the sequence number advanced, PSH and FIN on the last piece only)."""
    if len(s.payload) <= mss:
        return [s]
    pieces = []
    last_flags = s.flags
    for off in range(0, len(s.payload), mss):
        end = off + mss >= len(s.payload)
        flags = last_flags if end else last_flags & ~(PSH | FIN)
        pieces.append(replace(s, seq=(s.seq + off) & 0xFFFFFFFF, payload=s.payload[off:off + mss],
                              flags=flags))
    return pieces


def split_all(segs: Sequence[Segment], mss: int) -> list[Segment]:
    return [p for s in segs for p in split_tso(s, mss)]


class Twins:
    """Two connections fed the same input: ``tso`` with TSO on, ``plain`` without."""

    def __init__(self, config: Config = PLAIN, *, peer_options: Sequence[Option] = (Mss(MSS),)) -> None:
        self.plain = conn_established(config, peer_options=peer_options)
        self.tso = conn_established(config, peer_options=peer_options)
        self.tso.tso_max = TSO_MAX
        self.big: list[Segment] = []  # every segment of the TSO connection larger than its MSS

    def send(self, data: bytes, at: float) -> None:
        assert self.plain.send(data, at) == self.tso.send(data, at)

    def close(self, at: float) -> None:
        self.plain.close(at)
        self.tso.close(at)

    def feed(self, s: Segment, at: float) -> None:
        feed(self.plain, s, at=at)
        feed(self.tso, s, at=at)

    def fire(self, at: float) -> None:
        fire(self.plain, at)
        fire(self.tso, at)

    def pull(self, at: float) -> list[Segment]:
        """What both send at ``at`` (asserted equal once the TSO segments are split)."""
        want = pull(self.plain, at)
        got = pull(self.tso, at)
        mss = self.tso.snd_mss
        assert all(len(s.payload) <= mss for s in want)
        self.big.extend(s for s in got if len(s.payload) > mss)
        pieces = split_all(got, mss)
        assert pieces == want, ("with TSO, split:\n" + "\n".join(map(show, pieces))
                                + "\nwithout TSO:\n" + "\n".join(map(show, want)))
        self.same_state()
        return got

    def same_state(self) -> None:
        for name in ("snd_una", "snd_nxt", "snd_max", "snd_wnd", "_rtt_seq", "_rtt_time", "_t_rexmit",
                     "_t_persist", "unsent"):
            assert getattr(self.tso, name) == getattr(self.plain, name), name
        assert (self.tso.cc.cwnd, self.tso.cc.ssthresh) == (self.plain.cc.cwnd, self.plain.cc.ssthresh)


def _grow_cwnd(t: Twins, at: float, target: int) -> float:
    """Send and acknowledge until the congestion window is at least ``target``."""
    while t.plain.cc.cwnd < target:
        t.send(DATA[:t.plain.cc.cwnd], at)
        t.pull(at)
        at += 0.01
        t.feed(seg(R(1), t.plain.snd_max), at)
        t.pull(at)
    return at


# =============================================================================================
# Sending
# =============================================================================================


def test_tso_off_by_default() -> None:
    c = conn_established()
    assert c.tso_max == 0
    c.send(DATA[:10 * MSS], 1.0)
    assert [len(s.payload) for s in pull(c, 1.0)] == [MSS] * 3  # the initial window, per MSS


def test_large_send_is_one_segment_of_the_same_octets() -> None:
    t = Twins()
    t.send(DATA[:10 * MSS], 1.0)
    (big,) = t.pull(1.0)  # the initial window: 3 × MSS in one segment
    assert big.seq == L(1) and big.ack == R(1)
    assert big.payload == DATA[:3 * MSS]
    assert not big.flags & PSH  # more data is buffered
    # The first piece is timed for the RTT, as without TSO.
    assert t.tso._rtt_seq == L(1 + MSS)


def test_whole_buffer_gets_psh_on_the_last_piece_only() -> None:
    t = Twins()
    at = _grow_cwnd(t, 1.0, 20 * MSS)
    t.send(DATA[:8 * MSS], at)
    (big,) = t.pull(at)
    assert len(big.payload) == 8 * MSS and big.flags & PSH
    pieces = split_tso(big, MSS)
    assert [bool(p.flags & PSH) for p in pieces] == [False] * 7 + [True]


def test_cwnd_limits_the_segment() -> None:
    t = Twins()
    at = _grow_cwnd(t, 1.0, 10 * MSS)
    cwnd = t.tso.cc.cwnd
    t.send(DATA[:40 * MSS], at)
    got = t.pull(at)
    assert sum(len(s.payload) for s in got) <= cwnd
    assert len(got[0].payload) == cwnd // MSS * MSS


def test_peer_window_limits_the_segment_and_sws_holds_the_rest() -> None:
    t = Twins()
    at = _grow_cwnd(t, 1.0, 30 * MSS)
    # The peer shrinks its window to 5.5 MSS worth: 5 full pieces, and the half-MSS rest waits
    # (sender SWS avoidance: less than half the largest window ever offered).
    t.feed(seg(R(1), t.plain.snd_max, window=5 * MSS + MSS // 2), at)
    t.pull(at)
    t.send(DATA[:20 * MSS], at)
    (big,) = t.pull(at)
    assert len(big.payload) == 5 * MSS


def test_tso_max_limits_the_segment() -> None:
    t = Twins(PLAIN.with_(snd_buf=400_000))
    t.tso.tso_max = 4 * MSS + 100
    at = _grow_cwnd(t, 1.0, 30 * MSS)
    t.send(DATA[:12 * MSS], at)
    got = t.pull(at)
    assert [len(s.payload) for s in got] == [4 * MSS] * 3


def test_nagle_holds_the_short_tail_as_without_tso() -> None:
    t = Twins()
    at = _grow_cwnd(t, 1.0, 20 * MSS)
    t.send(DATA[:3 * MSS + 100], at)
    (big,) = t.pull(at)  # the 100-octet tail waits for the ACK (Nagle)
    assert len(big.payload) == 3 * MSS
    t.feed(seg(R(1), t.plain.snd_max), at + 0.01)
    (tail,) = t.pull(at + 0.01)
    assert tail.payload == DATA[3 * MSS:3 * MSS + 100] and tail.flags & PSH


def test_fin_rides_on_a_piece_of_its_own() -> None:
    t = Twins()
    at = _grow_cwnd(t, 1.0, 20 * MSS)
    t.send(DATA[:4 * MSS], at)
    t.close(at)
    big, last = t.pull(at)
    assert len(big.payload) == 3 * MSS and not big.flags & (FIN | PSH)
    assert len(last.payload) == MSS and last.flags & FIN


def test_one_full_segment_is_not_tso() -> None:
    t = Twins()
    t.send(DATA[:MSS + 10], 1.0)
    got = t.pull(1.0)
    assert [len(s.payload) for s in got] == [MSS]  # and Nagle holds the 10 octets
    assert not t.big


# =============================================================================================
# Retransmission stays MSS-sized
# =============================================================================================


def test_retransmission_after_rto_is_mss_sized() -> None:
    t = Twins()
    t.send(DATA[:10 * MSS], 1.0)
    (big,) = t.pull(1.0)
    assert len(big.payload) == 3 * MSS
    deadline = t.tso.next_deadline()
    assert deadline is not None
    t.fire(deadline)
    (rexmit,) = t.pull(deadline)  # cwnd is one MSS after the timeout
    assert rexmit.seq == L(1) and rexmit.payload == DATA[:MSS]
    # The ACK of that piece opens the window to 2 MSS: the rest of the rewound flight goes again
    # MSS by MSS (SND.NXT < snd_max), not as one TSO segment.
    t.feed(seg(R(1), L(1 + MSS)), deadline + 0.01)
    again = t.pull(deadline + 0.01)
    assert [len(s.payload) for s in again] == [MSS, MSS]
    assert again[0].seq == L(1 + MSS)


def test_fast_retransmit_is_mss_sized() -> None:
    t = Twins()
    at = _grow_cwnd(t, 1.0, 20 * MSS)
    una = t.plain.snd_max
    t.send(DATA[:10 * MSS], at)
    (big,) = t.pull(at)
    assert len(big.payload) == 10 * MSS
    for i in range(3):
        t.feed(seg(R(1), una), at + 0.01 * (i + 1))
        t.pull(at + 0.01 * (i + 1))
    assert t.tso.stats[2] == 1  # the fast retransmission happened (one MSS, compared in pull)


# =============================================================================================
# The same wire, whatever happens
# =============================================================================================


def _random_run(seed: int, config: Config, *, timestamps: bool) -> Twins:
    rng = random.Random(seed)
    opts: tuple[Option, ...] = (Mss(MSS), Timestamps(1000, 0)) if timestamps else (Mss(MSS),)
    t = Twins(config, peer_options=opts)
    at = 1.0
    sent = 0
    tsval = 1000
    closed = False
    for _ in range(300):
        if t.plain.state not in (State.ESTABLISHED, State.FIN_WAIT_1):
            break
        at += rng.choice((0.001, 0.01, 0.05, 0.3, 1.5))
        t.fire(at)
        t.pull(at)
        r = rng.random()
        if r < 0.35 and sent < len(DATA) and not closed:
            n = rng.choice((1, 100, MSS, 3 * MSS + 7, 20_000, 70_000))
            k = t.plain.send(DATA[sent:sent + n], at)
            assert t.tso.send(DATA[sent:sent + n], at) == k
            sent += k
        elif r < 0.97 or closed:
            una, mx = t.plain.snd_una, t.plain.snd_max
            span = (mx - una) & 0xFFFFFFFF
            ack = (una + rng.randint(0, span)) & 0xFFFFFFFF if span else una
            wnd = rng.choice((0, 1000, 3 * MSS, 10 * MSS, 30_000, 65535, 65535))
            tsval += 1
            # The peer echoes a timestamp we sent (the latest: an RTT sample of zero; fine here).
            options = (Timestamps(tsval, t.plain._tsval(at)),) if timestamps else ()
            t.feed(seg(t.plain.rcv_nxt, ack, window=wnd, options=options), at)
        elif sent > 100_000:
            t.close(at)
            closed = True
        t.pull(at)
    return t


def test_random_runs_put_the_same_segments_on_the_wire() -> None:
    big = 0
    for seed in range(12):
        big += len(_random_run(seed, PLAIN.with_(snd_buf=200_000), timestamps=False).big)
    assert big > 20  # TSO was used, not only the per-MSS path


def test_random_runs_with_timestamps_put_the_same_segments_on_the_wire() -> None:
    big = 0
    config = PLAIN.with_(snd_buf=200_000, timestamps=True)
    for seed in range(12):
        t = _random_run(100 + seed, config, timestamps=True)
        assert t.tso.ts_ok and t.tso.snd_mss == MSS - 12
        big += len(t.big)
    assert big > 20


def test_split_tso_gives_the_per_mss_segments() -> None:
    t = Twins(PLAIN.with_(snd_buf=400_000))
    at = _grow_cwnd(t, 1.0, 40 * MSS)
    t.send(DATA[:45 * MSS + 5], at)
    plain = pull(t.plain, at)
    tso = pull(t.tso, at)
    assert len(tso) < len(plain)
    assert split_all(tso, MSS) == plain
    assert b"".join(s.payload for s in tso) == b"".join(s.payload for s in plain)
    assert [s.seq for s in split_all(tso, MSS)] == [s.seq for s in plain]


def test_no_tso_while_sack_blocks_shorten_the_segments() -> None:
    config = PLAIN.with_(sack=True)
    t = Twins(config, peer_options=(Mss(MSS), SackPermitted()))
    assert t.tso.sack_ok
    at = _grow_cwnd(t, 1.0, 20 * MSS)
    t.big.clear()
    # Out-of-order data from the peer: every segment we send now carries a SACK block, which
    # takes 12 octets of its room for data.
    t.feed(seg(R(2), t.plain.snd_max, payload=b"y"), at)
    t.pull(at)
    t.send(DATA[:6 * MSS], at)
    got = t.pull(at)
    assert len(got) >= 5 and all(len(s.payload) == MSS - 12 for s in got)
    assert not t.big
    # The hole is filled: no SACK blocks any more, TSO again.
    t.feed(seg(R(1), t.plain.snd_una, payload=b"x"), at + 0.01)
    t.feed(seg(R(3), t.plain.snd_max, window=65535), at + 0.02)
    t.send(DATA[:8 * MSS], at + 0.02)
    t.pull(at + 0.02)
    assert t.big


# =============================================================================================
# The TUN driver's frame for a TSO segment
# =============================================================================================


def test_tso_frame_equals_the_gso_frame_of_the_pieces() -> None:
    # synack.tun writes a TSO segment as one GSO frame; it must be byte for byte the frame it
    # already wrote for the run of per-MSS packets the segment stands for (IPv4 and IPv6).
    from synack.core.wire import build_packet
    from synack.tun import _gso_frame, _tso_frame

    for src, dst, mss in (("10.77.0.2", "10.77.0.1", 1448), ("fd77::2", "fd77::1", 1428)):
        for flags in (0x10, 0x18):
            big = Segment(40000, 80, 0xFFFFF000, 12345, flags, 500,
                          (Timestamps(77, 88),), DATA[:7 * mss])
            pieces = split_tso(big, mss)
            packets = [build_packet(src, dst, p, ttl=64, tos=0) for p in pieces]
            ihl = 20 if ":" not in src else 40
            frame = _tso_frame(src, dst, big, 64, 0, mss)
            assert frame == _gso_frame(packets, ihl, len(packets[0]) - ihl - mss, mss)


def test_host_tso_max_reaches_its_connections() -> None:
    from synack.core.host import Host

    host = Host(["10.0.0.1"])
    assert host.tso_max == 0
    assert host.connect("10.0.0.2", 80, 0.0).tso_max == 0
    host.tso_max = TSO_MAX
    assert host.connect("10.0.0.2", 81, 0.0).tso_max == TSO_MAX
