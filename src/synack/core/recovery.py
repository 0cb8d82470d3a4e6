"""Loss recovery: deciding from the ACKs that a segment was lost, and what to send about it.

Two algorithms behind one interface, :class:`LossRecovery`:

* :class:`NewRenoRecovery` — RFC 5681 §3.2 fast retransmit and fast recovery with the RFC 6582
  NewReno modification (partial acknowledgments), for connections without SACK;
* :class:`SackRecovery` — RFC 6675 conservative SACK-based loss recovery with RFC 3042 Limited
  Transmit, over a :class:`Scoreboard` of the SACKed ranges (RFC 2018).

The connection asks its recovery three questions at every arriving ACK — is this a duplicate
(:meth:`~LossRecovery.is_duplicate`), what follows from a cumulative ACK
(:meth:`~LossRecovery.on_advance`), what follows from a duplicate
(:meth:`~LossRecovery.on_duplicate`) — and tells it about retransmission timeouts. Window
sizes are the congestion controller's (:mod:`synack.core.congestion`): recovery calls its hooks
and, during a recovery, sets ``cwnd`` as its RFC says.

Pure: these classes read the sender's variables through the :class:`Sender` protocol (the
connection satisfies it) and change only their own state and the controller's window.
"""

from __future__ import annotations

from typing import Final, Protocol

from synack.core.congestion import CongestionController
from synack.core.timers import RttEstimator
from synack.core.wire import Sack, Segment, seq_diff, seq_le, seq_lt

__all__ = ["DUP_THRESH", "LossRecovery", "NewRenoRecovery", "SackRecovery", "Scoreboard", "Sender"]

DUP_THRESH: Final = 3  # RFC 5681 §3.2, RFC 6675 §2 DupThresh
_MASK: Final = 0xFFFFFFFF


class Sender(Protocol):
    """What recovery reads of the sender (RFC 9293 §3.3.1 names; ``snd_max`` is the highest
    sequence number sent, RFC 6675's HighData)."""

    snd_una: int
    snd_nxt: int
    snd_max: int
    snd_wnd: int
    snd_wscale: int
    snd_mss: int
    cc: CongestionController
    rtt: RttEstimator
    now: float

    @property
    def fin_seq(self) -> int | None: ...


def _is_rfc5681_duplicate(tcb: Sender, seg: Segment, ack: int, text: bool) -> bool:
    """RFC 5681 §2 DUPLICATE ACKNOWLEDGMENT: the ACK does not move SND.UNA, carries no data nor
    FIN (``text``), the sender "has outstanding data" — octets of data, not merely our FIN —
    and the window is unchanged. Not with a zero window: those ACKs answer our zero-window
    probes (RFC 9293 §3.8.6.1) and say "no room", not "lost"."""
    if ack != tcb.snd_una or text or tcb.snd_wnd == 0 or (seg.window << tcb.snd_wscale) != tcb.snd_wnd:
        return False
    outstanding = seq_diff(tcb.snd_max, tcb.snd_una)
    fin = tcb.fin_seq
    if fin is not None and seq_lt(fin, tcb.snd_max):
        outstanding -= 1  # our FIN occupies one sequence number but is not data
    return outstanding > 0


class LossRecovery:
    """The interface (and what both algorithms share). ``recovering`` is True between entering
    a recovery and its end."""

    __slots__ = ("dupacks", "in_recovery", "lt_high")

    def __init__(self) -> None:
        self.dupacks = 0  # duplicate ACKs (RFC 5681) or DupAcks (RFC 6675) since the last new ACK
        self.in_recovery = False
        self.lt_high = 0  # snd_max at the first duplicate ACK, before any Limited Transmit

    def _first_duplicate(self, tcb: Sender) -> None:
        if self.dupacks == 0:
            self.lt_high = tcb.snd_max

    def _flight_size(self, tcb: Sender) -> int:
        """FlightSize for the ssthresh of a loss found by duplicate ACKs: RFC 5681 §3.2 step 2,
        "When [RFC3042] is in use, additional data sent in limited transmit MUST NOT be included
        in this calculation" (and RFC 6675 §5 (4.2)). The segments Limited Transmit sent lie
        above the snd_max of the first duplicate ACK."""
        high = self.lt_high if seq_lt(tcb.snd_una, self.lt_high) and seq_le(self.lt_high, tcb.snd_max) \
            else tcb.snd_max
        return seq_diff(high, tcb.snd_una)

    @property
    def recovering(self) -> bool:
        return self.in_recovery

    def is_duplicate(self, tcb: Sender, seg: Segment, ack: int, text: bool) -> bool:
        """Before the ACK is processed (SEG.ACK =< SND.NXT): does it count as a duplicate?
        ``text`` says whether the segment brought data or a FIN we accept. May record what the
        ACK says (SACK blocks)."""
        raise NotImplementedError

    def on_advance(self, tcb: Sender, acked: int, ack: int, flight: int, *, grow: bool) -> bool:
        """SND.UNA advanced to ``ack`` by ``acked`` octets (``flight`` were outstanding before);
        ``grow``: the ACK may grow the congestion window (not the ACK of a SYN). Returns True
        when the segment now at SND.UNA must be retransmitted at once."""
        raise NotImplementedError

    def on_duplicate(self, tcb: Sender) -> bool:
        """A duplicate ACK arrived. Returns True when a fast retransmit of SND.UNA is due."""
        raise NotImplementedError

    def on_timeout(self, tcb: Sender) -> None:
        """The retransmission timer fired (after the controller's ``on_timeout``)."""
        raise NotImplementedError

    def limited_transmit(self, tcb: Sender) -> int:
        """Octets beyond ``cwnd`` that new data may use now (RFC 3042)."""
        return 0

    @property
    def wants_output(self) -> bool:
        """A retransmission is due at the next output, whatever the window says."""
        return False

    def snapshot(self) -> dict[str, object]:
        """The recovery's variables as plain values."""
        raise NotImplementedError


class NewRenoRecovery(LossRecovery):
    """RFC 5681 §3.2 fast retransmit / fast recovery with the RFC 6582 NewReno modification.

    ``dupacks`` counts duplicate ACKs; the third starts a recovery that lasts until SND.UNA
    passes ``recover`` (HighData on entry). During it every further duplicate inflates ``cwnd``
    by one SMSS (step 4), a partial ACK retransmits the next hole and deflates ``cwnd`` by the
    amount acknowledged, adding one SMSS back if that was at least one SMSS (RFC 6582 §3.2
    step 3), and the full ACK sets ``cwnd`` to min(ssthresh, max(FlightSize, SMSS) + SMSS)
    (step 3 (1)) — and ``ssthresh`` to that ``cwnd`` when it is lower, so that growth goes on
    by congestion avoidance, not slow start (RFC 5681 §4.3: after the loss is repaired "cwnd
    MUST be set to no more than ssthresh and congestion avoidance MUST be used").

    ``recover`` is kept as an exclusive end — the octet after the one RFC 6582 names, as
    ``snd_max`` is the octet after the highest one sent. So RFC 6582's "recover = ISS" (step 1)
    is ``ISS + 1`` here, "ack_number - 1 > recover" is ``recover < ack`` and "acknowledges all
    of the data up to and including recover" is ``recover =< ack``. A consequence the RFC
    accepts: a loss in the very first window (nothing acknowledged but the SYN) is not fast
    retransmitted; the retransmission timer repairs it (Linux, which has no such variable,
    fast retransmits there)."""

    __slots__ = ("recover",)

    def __init__(self, iss: int = 0) -> None:
        super().__init__()
        self.recover = (iss + 1) & _MASK  # RFC 6582 §3.2 step 1: recover = ISS (exclusive: ISS + 1)

    def is_duplicate(self, tcb: Sender, seg: Segment, ack: int, text: bool) -> bool:
        return _is_rfc5681_duplicate(tcb, seg, ack, text)

    def on_advance(self, tcb: Sender, acked: int, ack: int, flight: int, *, grow: bool) -> bool:
        self.dupacks = 0
        cc = tcb.cc
        if self.in_recovery:
            mss = tcb.snd_mss
            if seq_le(self.recover, ack):  # full acknowledgment
                self.in_recovery = False
                cc.cwnd = min(cc.ssthresh, max(flight - acked, mss) + mss)
                if cc.cwnd < cc.ssthresh:
                    cc.ssthresh = cc.cwnd  # RFC 5681 §4.3: congestion avoidance from here
                return False
            # A partial ACK: deflate by the amount acknowledged, add one SMSS back only if that
            # was at least one SMSS, retransmit the next hole (RFC 6582 §3.2 step 3).
            cc.cwnd = max(cc.cwnd - acked + (mss if acked >= mss else 0), mss)
            return True
        if grow:
            cc.on_ack(acked, now=tcb.now, rtt=tcb.rtt.srtt, flight=flight)
        return False

    def on_duplicate(self, tcb: Sender) -> bool:
        cc = tcb.cc
        if self.in_recovery:
            cc.cwnd += tcb.snd_mss  # RFC 5681 §3.2 step 4: inflate
            return False
        self._first_duplicate(tcb)
        self.dupacks += 1
        if self.dupacks != DUP_THRESH:
            return False
        if not seq_lt(self.recover, tcb.snd_una):
            # RFC 6582 §3.2 step 2: the Cumulative Acknowledgment does not cover more than recover
            # (the first window, or a recovery or timeout since): no fast retransmit, ssthresh kept.
            return False
        cc.on_congestion(self._flight_size(tcb), now=tcb.now, rtt=tcb.rtt.srtt)  # 5681 step 2
        cc.cwnd = cc.ssthresh + DUP_THRESH * tcb.snd_mss  # step 3
        self.in_recovery = True
        self.recover = tcb.snd_max
        return True

    def on_timeout(self, tcb: Sender) -> None:
        """RFC 6582 §3.2 step 5: "After a retransmit timeout, record the highest sequence number
        transmitted in the variable recover, and exit the fast recovery procedure"."""
        self.dupacks = 0
        self.in_recovery = False
        self.recover = tcb.snd_max

    def limited_transmit(self, tcb: Sender) -> int:
        """RFC 3042 §2: on the first and second duplicate ACK, one segment of new data each, if
        the peer's window allows, with outstanding data at most cwnd + 2 segments; cwnd itself is
        not changed."""
        if 0 < self.dupacks < DUP_THRESH and not self.in_recovery and tcb.snd_nxt == tcb.snd_max:
            return self.dupacks * tcb.snd_mss
        return 0

    def snapshot(self) -> dict[str, object]:
        # RFC 6582's recover: the highest sequence number sent (or ISS), not our exclusive end.
        return {"algorithm": "newreno", "recovering": self.in_recovery, "dupacks": self.dupacks,
                "recover": (self.recover - 1) & _MASK}


class Scoreboard:
    """The SACKed ranges above SND.UNA (RFC 6675 §3), as sorted, disjoint, non-adjacent
    ``(left, right)`` sequence numbers (right exclusive), at most ``limit`` of them: more are
    forgotten, highest first, which only makes the sender more conservative."""

    __slots__ = ("limit", "ranges")

    def __init__(self, limit: int = 64) -> None:
        self.ranges: tuple[tuple[int, int], ...] = ()
        self.limit = limit

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def update(self, blocks: tuple[tuple[int, int], ...], ack: int, una: int, high: int) -> bool:
        """Update() (RFC 6675 §4): record the SACK blocks of an ACK of ``ack`` (SND.UNA =
        ``una`` =< ``ack``, HighData = ``high``). Only octets between SEG.ACK and HighData count;
        blocks outside them (D-SACK, stale, malformed) are ignored. Returns True when some octet
        was neither acknowledged nor SACKed before — the ACK is then a DupAck (§2)."""
        top = seq_diff(high, una)
        start = seq_diff(ack, una)
        rel = [(seq_diff(lo, una), seq_diff(hi, una)) for lo, hi in self.ranges]
        new = False
        for left, right in blocks:
            if not seq_lt(left, right):
                continue  # empty or reversed: malformed
            lo = max(seq_diff(left, una), start)
            hi = min(seq_diff(right, una), top)
            if hi <= lo:
                continue
            covered = 0
            for a, b in rel:
                if a < hi and lo < b:
                    covered += min(b, hi) - max(a, lo)
            if covered < hi - lo:
                new = True
                rel = _range_insert(rel, lo, hi)
        if new:
            del rel[self.limit:]
            self.ranges = tuple(((lo + una) & _MASK, (hi + una) & _MASK) for lo, hi in rel)
        return new

    def prune(self, una: int) -> None:
        """SND.UNA advanced: forget what lies below it."""
        self.ranges = tuple((una if seq_lt(lo, una) else lo, hi) for lo, hi in self.ranges if seq_lt(una, hi))

    def clear(self) -> None:
        self.ranges = ()

    def holes(self, una: int, high: int, mss: int) -> list[tuple[int, int, bool]]:
        """The un-SACKed ranges between SND.UNA and HighData as (start, end, lost) offsets from
        SND.UNA, in order; the last one may lie above every SACKed octet. ``lost`` is IsLost()
        of their octets (§4): DupThresh SACKed ranges, or more than (DupThresh−1)·SMSS SACKed
        octets, above them — the same for every octet of one hole."""
        top = seq_diff(high, una)
        rel = [(seq_diff(lo, una), seq_diff(hi, una)) for lo, hi in self.ranges]
        limit = (DUP_THRESH - 1) * mss
        holes: list[tuple[int, int, bool]] = []
        above = sum(hi - lo for lo, hi in rel)
        prev = 0
        for i, (lo, hi) in enumerate(rel):
            if lo > prev:
                holes.append((prev, lo, len(rel) - i >= DUP_THRESH or above > limit))
            above -= hi - lo
            prev = max(prev, hi)
        if prev < top:
            holes.append((prev, top, False))
        return holes

    def highest(self, una: int) -> int:
        """Offset from SND.UNA of the end of the highest SACKed range (0 when there is none)."""
        return seq_diff(self.ranges[-1][1], una) if self.ranges else 0


class SackRecovery(LossRecovery):
    """RFC 6675 §5 with RFC 3042 Limited Transmit, on a :class:`Scoreboard`.

    RFC 6675's DupAck — an ACK whose SACK blocks SACK new octets, even if it carries data,
    changes the window or advances SND.UNA — replaces RFC 5681's duplicate ACK; an RFC 5681
    duplicate carrying no SACK option at all counts too (a peer that negotiated SACK-permitted
    but sends no blocks still gets a fast retransmit). The DupThresh'th DupAck, or an earlier one
    when IsLost(HighACK+1), starts a recovery (§5 step 4): RecoveryPoint = HighData, the
    controller's ``on_congestion`` sets ``cwnd = ssthresh``, the segment at HighACK+1 leaves at
    once (``first``), then NextSeg() while cwnd − pipe >= SMSS. It ends when SND.UNA reaches the
    RecoveryPoint. An RTO clears the scoreboard (the peer may renege, RFC 2018 §8) and no new
    recovery begins before SND.UNA reaches the HighData of that moment (§5.1); SACK information
    arriving after it steers the retransmissions that follow (the output skips SACKed ranges).
    ``high_rxt`` and ``rescue_rxt`` are exclusive ends: the octet after the one the RFC names.

    Only DupAcks that bring new SACK information let Limited Transmit send (``lt_count``):
    RFC 3042 §2, "the data sender MUST NOT send new segments in response to duplicate ACKs that
    contain no new SACK information" — a duplicate without any SACK option counts towards
    DupThresh, and sends nothing."""

    __slots__ = ("_sack_new", "board", "first", "high_rxt", "lt_count", "rec_point", "rescue_rxt")

    def __init__(self) -> None:
        super().__init__()
        self.board = _NO_BOARD  # until the first SACK block: the shared empty board
        self.rec_point: int | None = None
        self.high_rxt = 0
        self.rescue_rxt: int | None = None
        self.first = False
        self.lt_count = 0  # DupAcks with new SACK information since the last cumulative ACK
        self._sack_new = False

    def is_duplicate(self, tcb: Sender, seg: Segment, ack: int, text: bool) -> bool:
        sack = seg.option(Sack)
        if sack is None:
            self._sack_new = False
            return _is_rfc5681_duplicate(tcb, seg, ack, text)
        if self.board is _NO_BOARD:
            self.board = Scoreboard()
        self._sack_new = bool(sack.blocks) and seq_le(tcb.snd_una, ack) and \
            self.board.update(sack.blocks, ack, tcb.snd_una, tcb.snd_max)
        return self._sack_new

    def on_advance(self, tcb: Sender, acked: int, ack: int, flight: int, *, grow: bool) -> bool:
        if self.board.ranges:
            self.board.prune(ack)
        self.dupacks = self.lt_count = 0  # §5: a cumulative ACK resets DupAcks
        if self.in_recovery:
            # §5 (A): an ACK of RecoveryPoint ends the recovery; cwnd stays at ssthresh, set on
            # entry, and the ACKs of the recovery do not grow it.
            rp = self.rec_point
            if rp is None or seq_le(rp, ack):
                self.in_recovery = False
                self.first = False
            return False
        if grow:
            tcb.cc.on_ack(acked, now=tcb.now, rtt=tcb.rtt.srtt, flight=flight)
        return False

    def on_duplicate(self, tcb: Sender) -> bool:
        """§5 steps 3 and 4: count the DupAck; enter a recovery on the DupThresh'th, or earlier
        when IsLost(HighACK+1) — unless one runs, SND.UNA has not passed the previous
        RecoveryPoint, or a timeout rewound SND.NXT. The first retransmission is left to the
        output (``first``), so this never asks for an RFC 5681 fast retransmit."""
        self._first_duplicate(tcb)
        self.dupacks += 1
        if self._sack_new:
            self.lt_count += 1
        if self.in_recovery or tcb.snd_nxt != tcb.snd_max or tcb.snd_una == tcb.snd_max:
            return False
        rp = self.rec_point
        if rp is not None and seq_lt(tcb.snd_una, rp):
            return False
        if self.dupacks < DUP_THRESH:
            holes = self.board.holes(tcb.snd_una, tcb.snd_max, tcb.snd_mss)
            if not holes or holes[0][0] != 0 or not holes[0][2]:
                return False  # IsLost(HighACK+1) is false
        self.in_recovery = True
        self.rec_point = tcb.snd_max  # (4.1) RecoveryPoint = HighData
        tcb.cc.on_congestion(self._flight_size(tcb), now=tcb.now, rtt=tcb.rtt.srtt)  # (4.2)
        self.high_rxt = tcb.snd_una
        self.rescue_rxt = None
        self.first = True  # (4.3): the segment at HighACK+1 leaves with the next output
        return False

    def on_timeout(self, tcb: Sender) -> None:
        self.board.clear()
        self.dupacks = self.lt_count = 0
        self.in_recovery = False
        self.first = False
        self.rec_point = tcb.snd_max
        self.high_rxt = tcb.snd_una
        self.rescue_rxt = None

    @property
    def wants_output(self) -> bool:
        return self.first

    def limited_transmit(self, tcb: Sender) -> int:
        """RFC 3042 (RFC 6675 §5 step 3): each of the first DupThresh−1 DupAcks lets one new
        segment go beyond cwnd, so that a small window still brings the DupThresh'th DupAck
        instead of a timeout — those that brought new SACK information."""
        if self.lt_count and tcb.snd_nxt == tcb.snd_max:
            return min(self.lt_count, DUP_THRESH - 1) * tcb.snd_mss
        return 0

    def sacked_after(self, seq: int) -> tuple[int, int] | None:
        """The SACKed range that holds ``seq``, or else the first one above it, as (left, right)
        sequence numbers (None: nothing SACKed at or above ``seq``)."""
        for lo, hi in self.board.ranges:
            if seq_lt(seq, hi):
                return lo, hi
        return None

    # -- output during a recovery (§5 step C) -----------------------------------------------

    def holes(self, tcb: Sender) -> list[tuple[int, int, bool]]:
        return self.board.holes(tcb.snd_una, tcb.snd_max, tcb.snd_mss)

    def pipe(self, tcb: Sender, holes: list[tuple[int, int, bool]]) -> int:
        """SetPipe() (§4): every un-SACKed octet counts once if it is not lost, and once more if
        it was retransmitted (below HighRxt)."""
        rxt = seq_diff(self.high_rxt, tcb.snd_una)
        pipe = 0
        for lo, hi, lost in holes:
            if not lost:
                pipe += hi - lo
            if rxt > lo:
                pipe += min(rxt, hi) - lo
        return pipe

    def next_lost(self, tcb: Sender, holes: list[tuple[int, int, bool]]) -> tuple[int, int] | None:
        """NextSeg() rule (1): (offset, length) of the first lost octets above HighRxt, below
        the highest SACKed octet, at most one SMSS. Rule (2), new data, is the output's."""
        rxt = max(seq_diff(self.high_rxt, tcb.snd_una), 0)
        high = self.board.highest(tcb.snd_una)
        for lo, hi, lost in holes:
            if hi <= high and lost and hi > rxt:
                s = max(lo, rxt)
                return s, min(tcb.snd_mss, hi - s)
        return None

    def last_resort(self, tcb: Sender, holes: list[tuple[int, int, bool]]) -> tuple[int, int, bool] | None:
        """NextSeg() rules (3) and (4), when neither a lost segment nor new data can go:
        (offset, length, rescue)."""
        una = tcb.snd_una
        rxt = max(seq_diff(self.high_rxt, una), 0)
        mss = tcb.snd_mss
        if self.board:
            high = self.board.highest(una)
            for lo, hi, _lost in holes:  # (3) an un-SACKed octet above HighRxt, below a SACK
                if hi <= high and hi > rxt:
                    s = max(lo, rxt)
                    return s, min(mss, hi - s), False
        r = self.rescue_rxt
        if holes and (r is None or seq_lt(r, una)):
            # (4) one rescue retransmission per recovery, ending at the highest un-SACKed octet.
            lo, hi, _lost = holes[-1]
            s = max(lo, hi - mss)
            return s, hi - s, True
        return None

    def retransmitted(self, end: int, rescue: bool) -> None:
        """A retransmission ending at ``end`` left (§5 C.2; rule (4) leaves HighRxt alone)."""
        if rescue:
            self.rescue_rxt = self.rec_point
        elif seq_lt(self.high_rxt, end):
            self.high_rxt = end

    def snapshot(self) -> dict[str, object]:
        return {"algorithm": "sack", "recovering": self.in_recovery, "dupacks": self.dupacks,
                "recovery_point": self.rec_point, "high_rxt": self.high_rxt,
                "rescue_rxt": self.rescue_rxt, "sacked": list(self.board.ranges)}


_NO_BOARD: Final = Scoreboard()
"""The board of every SACK sender that has not received a SACK block yet (never updated: the
first block gives the connection its own), so that an idle connection carries none."""


def _range_insert(ranges: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """``ranges`` (sorted, disjoint, non-adjacent [lo, hi) pairs) with [lo, hi) merged in."""
    res: list[tuple[int, int]] = []
    placed = False
    for a, b in ranges:
        if b < lo:
            res.append((a, b))
        elif hi < a:
            if not placed:
                res.append((lo, hi))
                placed = True
            res.append((a, b))
        else:
            lo = min(lo, a)
            hi = max(hi, b)
    if not placed:
        res.append((lo, hi))
    return res
