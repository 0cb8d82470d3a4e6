"""The small pure helpers of the core, on their own: the RFC 6298 estimator, RFC 5681/6582 NewReno,
the reassembly queue (SHLD-31) and the window-scale shift of RFC 7323."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synack.core.buffers import ReassemblyQueue
from synack.core.congestion import CONTROLLERS, CongestionController, NewReno, make_controller
from synack.core.connection import Config
from synack.core.recovery import NewRenoRecovery
from synack.core.tcb import wscale_for
from synack.core.timers import RttEstimator
from synack.core.wire import ACK, Segment

# =============================================================================================
# RttEstimator (RFC 6298)
# =============================================================================================


def test_rfc6298_2_1_initial_rto_before_any_sample() -> None:
    r = RttEstimator()
    assert (r.srtt, r.rto) == (None, 1.0)


def test_rfc6298_2_2_first_sample() -> None:
    r = RttEstimator(minimum=0.1)
    r.sample(0.5)
    assert (r.srtt, r.rttvar) == (0.5, 0.25)
    assert r.rto == pytest.approx(0.5 + 4 * 0.25)


def test_rfc6298_2_3_later_samples() -> None:
    r = RttEstimator(minimum=0.01)
    r.sample(0.4)
    r.sample(0.2)
    # RTTVAR = 3/4·0.2 + 1/4·|0.4 − 0.2| = 0.2; SRTT = 7/8·0.4 + 1/8·0.2 = 0.375
    assert r.rttvar == pytest.approx(0.2)
    assert r.srtt == pytest.approx(0.375)
    assert r.rto == pytest.approx(0.375 + 0.8)


def test_rfc6298_2_4_clock_granularity_term() -> None:
    r = RttEstimator(minimum=0.001, granularity=0.05)
    for _ in range(200):
        r.sample(0.01)  # RTTVAR decays towards 0: the G term takes over
    assert r.rto == pytest.approx(0.01 + 0.05, abs=1e-6)


def test_rfc6298_2_4_minimum_of_one_second() -> None:
    r = RttEstimator()
    r.sample(0.01)
    assert r.rto == 1.0


def test_rfc6298_2_5_maximum() -> None:
    r = RttEstimator(maximum=60.0)
    r.sample(50.0)
    assert r.rto == 60.0


def test_rfc6298_5_5_backoff_doubles_to_the_maximum_and_a_sample_resets_it() -> None:
    r = RttEstimator(maximum=10.0)
    seen = []
    for _ in range(6):
        r.on_timeout()
        seen.append(r.rto)
    assert seen == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert r.backoff == 6
    r.sample(0.1)
    assert (r.backoff, r.rto) == (0, 1.0)


def test_negative_sample_is_ignored() -> None:
    r = RttEstimator()
    r.sample(-1.0)
    assert r.srtt is None


@pytest.mark.parametrize("initial,minimum,maximum", [(1.0, 0.0, 1.0), (1.0, 2.0, 1.0), (0.0, 1.0, 60.0)])
def test_estimator_rejects_bad_bounds(initial: float, minimum: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        RttEstimator(initial, minimum, maximum)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=1, max_size=30))
def test_rto_always_within_bounds(samples: list[float]) -> None:
    r = RttEstimator(minimum=0.2, maximum=60.0)
    for s in samples:
        r.sample(s)
        assert 0.2 <= r.rto <= 60.0
        r.on_timeout()
        assert 0.2 <= r.rto <= 60.0


# =============================================================================================
# NewReno (RFC 5681, RFC 6582) — MUST-19
# =============================================================================================


@pytest.mark.parametrize("mss,iw", [(536, 2144), (1095, 4380), (1096, 3288), (1460, 4380), (2190, 6570),
                                    (2191, 4382), (9000, 18000)])
def test_rfc5681_initial_window(mss: int, iw: int) -> None:
    assert NewReno(mss).cwnd == iw


def test_rfc5681_slow_start_adds_at_most_one_smss_per_ack() -> None:
    cc = NewReno(1000)
    cc.on_ack(500, now=0.0, rtt=None, flight=4000)
    assert cc.cwnd == 4500
    cc.on_ack(3000, now=0.0, rtt=None, flight=4000)
    assert cc.cwnd == 5500


def test_rfc5681_congestion_avoidance_adds_one_smss_per_window() -> None:
    cc = NewReno(1000)
    cc.ssthresh = 4000
    assert cc.cwnd == 4000
    for _ in range(3):
        cc.on_ack(1000, now=0.0, rtt=None, flight=4000)
    assert cc.cwnd == 4000
    cc.on_ack(1000, now=0.0, rtt=None, flight=4000)
    assert cc.cwnd == 5000


@dataclass
class _Tcb:
    """The sender variables loss recovery reads (recovery.Sender), set by hand."""

    snd_una: int = 0
    snd_max: int = 10000
    snd_nxt: int = 10000
    snd_wnd: int = 65535
    snd_wscale: int = 0
    snd_mss: int = 1000
    cc: CongestionController = field(default_factory=lambda: NewReno(1000))
    rtt: RttEstimator = field(default_factory=RttEstimator)
    now: float = 0.0
    fin_seq: int | None = None


def _dupack(tcb: _Tcb) -> Segment:
    """An RFC 5681 duplicate ACK for ``tcb``: ack = SND.UNA, no data, same window."""
    return Segment(80, 1000, 0, tcb.snd_una, ACK, tcb.snd_wnd)


def _three_dupacks(tcb: _Tcb, rec: NewRenoRecovery) -> list[bool]:
    """Three RFC 5681 duplicate ACKs (``rec`` must have ``recover`` below SND.UNA, RFC 6582)."""
    dup = _dupack(tcb)
    return [rec.on_duplicate(tcb) for _ in range(3) if rec.is_duplicate(tcb, dup, tcb.snd_una, False)]


def test_rfc5681_third_duplicate_ack_enters_fast_recovery() -> None:
    tcb = _Tcb(snd_una=2000)  # FlightSize 8000
    rec = NewRenoRecovery()
    assert _three_dupacks(tcb, rec) == [False, False, True]
    assert (tcb.cc.ssthresh, tcb.cc.cwnd, rec.recovering, rec.recover) == (4000, 7000, True, 10000)
    assert rec.on_duplicate(tcb) is False  # RFC 5681 §3.2 step 4: inflate
    assert tcb.cc.cwnd == 8000


def test_rfc5681_duplicate_ack_definition() -> None:
    """RFC 5681 §2: same ACK, no data, outstanding data, same window; not with a zero window."""
    tcb = _Tcb()
    rec = NewRenoRecovery()
    assert rec.is_duplicate(tcb, _dupack(tcb), 0, False)
    assert not rec.is_duplicate(tcb, _dupack(tcb), 0, True)  # carries data (or a FIN)
    assert not rec.is_duplicate(tcb, replace(_dupack(tcb), window=1000), 0, False)  # window update
    assert not rec.is_duplicate(_Tcb(snd_max=0, snd_nxt=0), _dupack(tcb), 0, False)  # nothing outstanding
    fin_only = _Tcb(snd_max=1, snd_nxt=1, fin_seq=0)  # only our FIN is unacknowledged: no data
    assert not rec.is_duplicate(fin_only, _dupack(fin_only), 0, False)
    data_and_fin = _Tcb(snd_max=2, snd_nxt=2, fin_seq=1)
    assert rec.is_duplicate(data_and_fin, _dupack(data_and_fin), 0, False)
    closed = _Tcb(snd_wnd=0)
    assert not rec.is_duplicate(closed, _dupack(closed), 0, False)


def test_rfc5681_equation_4_ssthresh_at_least_two_segments() -> None:
    tcb = _Tcb(snd_una=8500)  # FlightSize 1500
    _three_dupacks(tcb, NewRenoRecovery())
    assert tcb.cc.ssthresh == 2000


def test_rfc6582_partial_ack_retransmits_and_deflates() -> None:
    tcb = _Tcb(snd_una=2000)
    rec = NewRenoRecovery()
    _three_dupacks(tcb, rec)
    assert rec.on_advance(tcb, 2000, 4000, 8000, grow=True) is True  # below recover: partial
    assert tcb.cc.cwnd == 7000 - 2000 + 1000
    assert rec.recovering


def test_rfc6582_full_ack_leaves_recovery_with_the_deflated_window() -> None:
    """Step 3: cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS)."""
    tcb = _Tcb(snd_una=2000)
    rec = NewRenoRecovery()
    _three_dupacks(tcb, rec)
    assert rec.on_advance(tcb, 6000, 10000, 8000, grow=True) is False
    assert not rec.recovering
    assert tcb.cc.cwnd == min(4000, max(8000 - 6000, 1000) + 1000)


def test_rfc6582_full_ack_of_everything_leaves_two_segments() -> None:
    """FlightSize 0 after the full ACK: max(FlightSize, SMSS) + SMSS = 2 SMSS (not 1)."""
    tcb = _Tcb(snd_una=2000)
    rec = NewRenoRecovery()
    _three_dupacks(tcb, rec)
    rec.on_advance(tcb, 8000, 10000, 8000, grow=True)
    assert tcb.cc.cwnd == 2000


def test_rfc6582_recover_compared_modulo_2_32() -> None:
    una = (0x10 - 8000) & 0xFFFFFFFF
    tcb = _Tcb(snd_una=una, snd_max=0x10, snd_nxt=0x10)  # recover wraps past 2**32
    rec = NewRenoRecovery(iss=(una - 2) & 0xFFFFFFFF)  # recover = ISS, below SND.UNA - 1
    _three_dupacks(tcb, rec)
    assert rec.recover == 0x10
    assert rec.on_advance(tcb, 1000, 0xFFFFFFF0, 8000, grow=True) is True  # before recover: partial
    assert rec.on_advance(tcb, 1000, 0x20, 8000, grow=True) is False  # after it: full
    assert not rec.recovering


def test_rfc5681_timeout_sets_the_loss_window() -> None:
    tcb = _Tcb(snd_una=2000)
    rec = NewRenoRecovery()
    _three_dupacks(tcb, rec)
    tcb.cc.on_timeout(6000, now=0.0, rtt=None)
    rec.on_timeout(tcb)
    assert (tcb.cc.cwnd, tcb.cc.ssthresh, rec.recovering, rec.dupacks) == (1000, 3000, False, 0)


def test_congestion_hooks_receive_now_and_rtt() -> None:
    """The controller interface: hooks get the time and the smoothed RTT (keyword-only)."""
    seen: list[tuple[str, float, float | None]] = []

    class Spy(CongestionController):
        def on_ack(self, acked: int, *, now: float, rtt: float | None, flight: int) -> None:
            seen.append(("ack", now, rtt))

        def on_congestion(self, flight: int, *, now: float, rtt: float | None) -> None:
            seen.append(("congestion", now, rtt))

    tcb = _Tcb(snd_una=2000, cc=Spy(1000), now=7.5)
    tcb.rtt.sample(0.25)
    rec = NewRenoRecovery()
    rec.on_advance(tcb, 1000, 3000, 8000, grow=True)
    tcb.snd_una = 3000
    _three_dupacks(tcb, rec)
    assert seen == [("ack", 7.5, 0.25), ("congestion", 7.5, 0.25)]


def test_the_base_controller_keeps_its_initial_window() -> None:
    """Every hook of the interface does nothing unless a controller overrides it."""
    cc = CongestionController(1460)
    cc.on_ack(1460, now=1.0, rtt=0.1, flight=4380)
    cc.on_congestion(4380, now=1.0, rtt=0.1)
    cc.on_timeout(4380, now=1.0, rtt=0.1)
    assert cc.cwnd == 3 * 1460 and cc.ssthresh == 1 << 30


def test_unknown_congestion_control_is_refused() -> None:
    assert isinstance(make_controller("newreno", 1000), NewReno)
    assert set(CONTROLLERS) == {"newreno"}
    with pytest.raises(ValueError, match=r"cubic.*known: newreno"):
        make_controller("cubic", 1000)


def test_config_validates_the_congestion_controller_when_made() -> None:
    with pytest.raises(ValueError, match="unknown congestion control 'cubic' \\(known: newreno\\)"):
        Config(congestion="cubic")
    assert Config(congestion="newreno").congestion == "newreno"


# =============================================================================================
# ReassemblyQueue (SHLD-31)
# =============================================================================================


def test_reassembly_in_order_after_the_hole_is_filled() -> None:
    q = ReassemblyQueue(1000)
    assert q.add(110, b"KLMNO", 100)
    assert q.add(120, b"UVW", 100)
    assert (len(q), q.held) == (2, 8)
    assert q.pop_ready(100) == b""  # the hole 100..110 is still open
    assert q.pop_ready(110) == b"KLMNO"
    assert q.pop_ready(115) == b""
    assert q.pop_ready(120) == b"UVW"
    assert (len(q), q.held) == (0, 0)


def test_reassembly_overlaps_are_stored_once() -> None:
    q = ReassemblyQueue(1000)
    q.add(105, b"FGHI", 100)
    q.add(103, b"DEFGHIJK", 100)  # overlaps on both sides
    q.add(106, b"GH", 100)  # entirely inside
    assert q.held == 8
    assert q.sack_blocks() == ((103, 111),)
    assert q.pop_ready(103) == b"DEFGHIJK"


def test_reassembly_adjacent_blocks_coalesce() -> None:
    q = ReassemblyQueue(1000)
    q.add(110, b"ab", 100)
    q.add(112, b"cd", 100)
    assert len(q) == 1
    assert q.sack_blocks() == ((110, 114),)


def test_reassembly_pop_ready_trims_what_is_already_delivered() -> None:
    q = ReassemblyQueue(1000)
    q.add(110, b"0123456789", 100)
    assert q.pop_ready(115) == b"56789"
    q.add(130, b"xy", 100)
    assert q.pop_ready(140) == b""  # wholly old: discarded
    assert q.held == 0


def test_reassembly_memory_limit_refuses_and_keeps_nothing() -> None:
    q = ReassemblyQueue(10)
    assert q.add(110, b"12345678", 100)
    assert q.add(120, b"abc", 100) is False
    assert q.held == 8
    assert q.add(118, b"9a", 100)
    assert q.held == 10


def test_reassembly_empty_and_duplicate_adds() -> None:
    q = ReassemblyQueue(100)
    assert q.add(5, b"", 0)
    q.add(5, b"abc", 0)
    q.add(5, b"abc", 0)
    assert q.held == 3


def test_reassembly_across_the_sequence_wrap() -> None:
    q = ReassemblyQueue(1000)
    rcv_nxt = 0xFFFFFFF8
    q.add(0xFFFFFFFC, b"wxyz0123", rcv_nxt)  # 0xFFFFFFFC .. 4
    q.add(4, b"4567", rcv_nxt)
    assert q.sack_blocks() == ((0xFFFFFFFC, 8),)
    assert q.pop_ready(0xFFFFFFFC) == b"wxyz01234567"


def test_rfc2018_first_block_holds_the_newest_segment_then_the_recent_ones() -> None:
    """RFC 2018 §4: the first block contains the segment that triggered the ACK; the next ones
    repeat the most recently reported blocks (not subsets of one already included); the rest are
    the lowest, which a sender needs first."""
    q = ReassemblyQueue(1000)
    for start in (150, 110, 130, 170):
        q.add(start, b"xx", 100)
    assert q.sack_blocks(3) == ((170, 172), (130, 132), (110, 112))
    q.add(131, b"xx", 100)  # inside (130, 132) and beyond: the block grows and comes first
    assert q.sack_blocks(4) == ((130, 133), (170, 172), (110, 112), (150, 152))
    q.add(112, b"x" * 18, 100)  # joins 110..112 and 130..133 into one block
    assert q.sack_blocks(2) == ((110, 133), (170, 172))
    assert q.pop_ready(110) == b"xx" + b"x" * 18 + b"xxx"  # the first block is delivered...
    assert q.sack_blocks(3) == ((170, 172), (150, 152))  # ...and no longer reported
    q.clear()
    assert (len(q), q.held, q.sack_blocks()) == (0, 0, ())


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=(1 << 32) - 1), st.integers(min_value=0, max_value=2**31))
def test_reassembly_any_arrival_order_rebuilds_the_stream(base: int, seed: int) -> None:
    rng = random.Random(seed)
    stream = bytes(rng.randrange(256) for _ in range(300))
    pieces = []
    for _ in range(40):
        a = rng.randrange(1, 300)
        b = min(300, a + rng.randrange(1, 40))
        pieces.append((a, stream[a:b]))
    pieces.append((0, stream[:1]))
    rng.shuffle(pieces)
    q = ReassemblyQueue(10_000)
    rcv_nxt = base
    got = b""
    for off, data in pieces:
        start = (base + off) & 0xFFFFFFFF
        behind = (rcv_nxt - start) & 0xFFFFFFFF
        if behind < (1 << 31):  # the piece starts at or before RCV.NXT: the receiver trims it
            data = data[behind:]
            if data:
                got += data
                rcv_nxt = (rcv_nxt + len(data)) & 0xFFFFFFFF
        else:
            q.add(start, data, rcv_nxt)
        more = q.pop_ready(rcv_nxt)
        got += more
        rcv_nxt = (rcv_nxt + len(more)) & 0xFFFFFFFF
    assert stream.startswith(got)
    covered = {0}
    for off, data in pieces:
        covered.update(range(off, off + len(data)))
    prefix = 0
    while prefix in covered:
        prefix += 1
    assert got == stream[:prefix]


# =============================================================================================
# Window scale shift (RFC 7323 §2.3)
# =============================================================================================


@pytest.mark.parametrize("buf,shift", [(1, 0), (65535, 0), (65536, 1), (131070, 1), (131071, 2),
                                       (256 * 1024, 3), (1 << 30, 14), (1 << 40, 14)])
def test_wscale_for_is_the_smallest_sufficient_shift_at_most_14(buf: int, shift: int) -> None:
    assert wscale_for(buf) == shift
