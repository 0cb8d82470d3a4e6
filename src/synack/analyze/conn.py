"""One connection while the capture is read: per-direction sequence analysis with Wireshark's
flags, tcptrace's statistics, Zeek's endpoint states and history, and the state inference.

:class:`Side` is what one end sent (Wireshark's ``tcp_flow_t``: next expected sequence number,
last ACK, window, duplicate-ACK count; tcptrace's counters). :meth:`Conn.segment` takes one
packet and returns its analysis flags, the rules of ``docs/capture-analysis.md`` §3 in their
order of priority (keep-alive > spurious > fast retransmission > out-of-order > retransmission).
The rules are Wireshark's, re-stated; this is not its code. Where a rule needs a number it
cannot have (the window of a side whose SYN was not seen), the rule is skipped as Wireshark
skips it.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

from synack.analyze import model as m
from synack.analyze.model import DirectionStats
from synack.analyze.states import Seg, StateTracker
from synack.analyze.zeek import ZeekConn
from synack.core.records import Cause
from synack.core.wire import Timestamps, WireError, parse_options

__all__ = ["QUIET_ACK", "QUIET_DATA", "QUIET_RTT", "UNKNOWN", "Conn", "Side", "tsval_of"]

_M: Final = 0xFFFFFFFF
_H: Final = 0x80000000
_FIN: Final = 0x01
_SYN: Final = 0x02
_RST: Final = 0x04
_ACK: Final = 0x10
_CONTROL: Final = _SYN | _FIN | _RST
_RETRANSMITTED: Final = m.RETRANSMISSION | m.FAST_RETRANSMISSION | m.SPURIOUS_RETRANSMISSION
_TS_ONLY: Final = b"\x01\x01\x08\x0a"
_MAX_TIMED: Final = 4096  # data segments waiting for their ACK, for RTT samples
_SAMPLED: Final = 4  # checksums verified per direction in "sample" mode, besides control segments
_OOO_DEFAULT: Final = 0.003  # Wireshark's out-of-order threshold without a handshake RTT
# Conn.quiet's bits: a plain data segment (QUIET_DATA) or ACK (QUIET_ACK) of side s may take the
# engine's fast path when bit ``QUIET_DATA << 2 * s`` (or ``QUIET_ACK << 2 * s``) is set; plain
# integers, not a pair indexed by side: compiled by mypyc, a tuple indexed by a variable is
# made into a Python tuple at every access.
QUIET_DATA: Final = 1
QUIET_ACK: Final = 2
QUIET_RTT: Final = 16
UNKNOWN: Final = -1  # a Side's sequence number, window or size not seen yet


def tsval_of(options: bytes) -> int:
    """The TSval of the Timestamps option among a segment's ``options`` (RFC 7323 §3), -1 when
    there is none or the options are malformed (read by the core's parser)."""
    try:
        parsed = parse_options(options)
    except WireError:
        return -1
    for opt in parsed:
        if isinstance(opt, Timestamps):
            return opt.tsval
    return -1


def _gt(a: int, b: int) -> bool:
    """``a > b`` in sequence space."""
    return a != b and not (a - b) & _H


def _ge(a: int, b: int) -> bool:
    return not (a - b) & _H


class Side:
    """What one end sent, and what the analysis keeps about it."""

    __slots__ = (
        # Wireshark's sequence analysis
        "base",
        "contig",
        "contig_before",
        "dsack_packets",
        "dupacks",
        "fin",
        "fin_seq",
        "first",
        "frame_bytes",
        "holes",
        "idle_max",
        "last",
        "last_frame",
        "lastack",
        "lastack_t",
        "lastflags",
        "maxseqtobeacked",
        "mss",
        "nextseq",
        "nextseq_t",
        "ooo_packets",
        # tcptrace's statistics
        "packets",
        "payload_bytes",
        "prev_frame",
        "prev_t",
        "pure_acks",
        "retrans_bytes",
        "retrans_packets",
        "rst",
        "rtt_max",
        "rtt_min",
        "rtt_n",
        "rtt_sq",
        "rtt_sum",
        "sack_ok",
        "sack_packets",
        "seg_max",
        "seg_min",
        "seg_n",
        "syn",
        "syn_t",
        "syn_window",
        "timed",
        "ts_ok",
        "win_max",
        "win_min",
        "win_scale",
        "win_sum",
        "window",
        "ws_option",
        "zero_windows",
        "zw_probes",
    )

    def __init__(self) -> None:
        self.base: int | None = None
        # Sequence numbers, windows and sizes not known yet are UNKNOWN (-1), not None: compiled
        # by mypyc, an ``int | None`` field is a Python object, boxed at every store and compared
        # as objects (the fast path reads and writes several per packet).
        self.nextseq = UNKNOWN
        self.nextseq_t = 0.0
        self.maxseqtobeacked = UNKNOWN
        self.lastack = UNKNOWN
        self.lastack_t = 0.0
        self.window = UNKNOWN
        self.win_scale = -1  # -1 unknown (no SYN seen), -2 not in use, else the shift
        self.dupacks = 0
        self.lastflags = 0
        self.syn_window = True  # the last segment was a SYN: its window is never scaled
        # Derived when the figures are read: unique bytes (payload less retransmitted), the sum of
        # segment sizes (the payload), the windows counted (every packet but a RST).
        self.packets = self.frame_bytes = self.payload_bytes = 0
        self.retrans_packets = self.retrans_bytes = self.pure_acks = self.sack_packets = 0
        self.dsack_packets = self.ooo_packets = self.zw_probes = self.zero_windows = 0
        self.syn = self.fin = self.rst = 0
        self.mss: int | None = None
        self.ws_option: int | None = None
        self.sack_ok = self.ts_ok = False
        self.seg_n = self.win_sum = 0
        self.seg_min = UNKNOWN
        self.seg_max = 0
        self.win_min = UNKNOWN
        self.win_max = 0
        self.first: float | None = None
        self.last = 0.0
        self.idle_max = 0.0
        self.rtt_n = 0
        self.rtt_sum = self.rtt_sq = 0.0
        self.rtt_min = math.inf
        self.rtt_max = 0.0
        # (end seq, sent at, retransmitted) of the data waiting for its ACK; made at the first
        # data segment (an empty deque is 600 bytes, and most connections' ends send no data or
        # never get this far: a SYN flood's attempts)
        self.timed: deque[tuple[int, float, bool]] | None = None
        self.fin_seq: int | None = None
        self.syn_t: float | None = None
        self.contig = UNKNOWN
        self.contig_before = UNKNOWN  # ``contig`` before the segment being analysed
        self.last_frame = 0
        self.prev_frame = 0  # the frame and time of the segment this side sent before the current one
        self.prev_t = 0.0
        self.holes: list[tuple[int, int]] = []

    def advance_contig(self, seq: int, end: int) -> None:
        """Record that [seq, end) was seen: ``contig`` is the end of what was seen without a
        hole (at most 64 ranges beyond a hole are remembered; more and the oldest are dropped)."""
        cur = self.contig
        if cur == UNKNOWN or seq == cur or (_ge(cur, seq) and _gt(end, cur)):
            self.contig = end
            if self.holes:
                self._fill()
        elif _gt(seq, cur):
            self.holes.append((seq, end))
            if len(self.holes) > 64:
                del self.holes[0]

    def _fill(self) -> None:
        again = True
        while again and self.holes:
            again = False
            cur = self.contig
            for k, (start, end) in enumerate(self.holes):
                if _ge(cur, start):
                    if _gt(end, cur):
                        self.contig = end
                    del self.holes[k]
                    again = True
                    break

    def scaled(self, window: int) -> int:
        """A window this side advertised, scaled when the scale is known to be in use."""
        return window << self.win_scale if self.win_scale > 0 and not self.syn_window else window

    def stats(self) -> DirectionStats:
        """The tcptrace-style figures of this direction."""
        n = self.rtt_n
        avg = self.rtt_sum / n if n else None
        stdev = math.sqrt(max(self.rtt_sq / n - (avg or 0.0) ** 2, 0.0)) if n else None
        span = (self.last - self.first) if self.first is not None else 0.0
        unique = self.payload_bytes - self.retrans_bytes
        win_n = self.packets - self.rst
        return DirectionStats(
            packets=self.packets,
            frame_bytes=self.frame_bytes,
            payload_bytes=self.payload_bytes,
            unique_bytes=unique,
            retransmitted_packets=self.retrans_packets,
            retransmitted_bytes=self.retrans_bytes,
            pure_acks=self.pure_acks,
            sack_packets=self.sack_packets,
            dsack_packets=self.dsack_packets,
            out_of_order_packets=self.ooo_packets,
            zero_window_probes=self.zw_probes,
            zero_windows=self.zero_windows,
            syn=self.syn,
            fin=self.fin,
            rst=self.rst,
            mss=self.mss,
            window_scale=self.ws_option,
            sack_permitted=self.sack_ok,
            timestamps=self.ts_ok,
            segment_min=None if self.seg_min == UNKNOWN else self.seg_min,
            segment_max=self.seg_max if self.seg_n else None,
            segment_avg=self.payload_bytes / self.seg_n if self.seg_n else None,
            window_min=None if self.win_min == UNKNOWN else self.win_min,
            window_max=self.win_max if win_n else None,
            window_avg=self.win_sum / win_n if win_n else None,
            first=self.first,
            last=self.last if self.first is not None else None,
            idle_max=self.idle_max,
            throughput=unique / span if span > 0 else 0.0,
            rtt_samples=n,
            rtt_min=self.rtt_min if n else None,
            rtt_avg=avg,
            rtt_max=self.rtt_max if n else None,
            rtt_stdev=stdev,
        )


class Conn:
    """One connection (one incarnation of a 4-tuple) while the capture is being read.

    ``sides[0]`` is the originator. ``keys`` are the two direction keys of the flow table
    (source address, destination address, source port, destination port, as packed bytes) —
    ``keys[0]`` is the originator's. ``addrs``/``ports`` the two ends in text."""

    __slots__ = (
        "addrs",
        "bad_checksums",
        "chain",
        "closed_at",
        "extra",
        "first_frame",
        "first_rtt",
        "flag_counts",
        "frames",
        "id",
        "keys",
        "ladder",
        "last_frame",
        "last_t",
        "local",
        "longest_chain",
        "offload",
        "older",
        "packets",
        "payload_seen",
        "points",
        "ports",
        "quiet",
        "rst_pending",
        "rtt_syn_t",
        "sides",
        "start",
        "tracker",
        "unanswered",
        "ws_rtt",
        "zeek",
        "zero_probes",
        "zero_since",
        "zero_total",
    )

    def __init__(
        self,
        cid: int,
        keys: tuple[bytes, bytes],
        addrs: tuple[str, str],
        ports: tuple[int, int],
        t: float,
        frame: int,
        tracker: StateTracker,
    ) -> None:
        self.id = cid
        self.keys = keys
        self.addrs = addrs
        self.ports = ports
        self.sides = [Side(), Side()]  # a list: see QUIET_DATA
        self.start = t
        self.last_t = t
        self.first_frame = frame
        self.last_frame = frame
        self.packets = 0
        self.payload_seen = False
        self.zeek = ZeekConn()
        self.tracker = tracker
        self.first_rtt: float | None = None  # Wireshark's initial RTT: last SYN to the ACK of the SYN,ACK
        self.rtt_syn_t: float | None = None
        # Wireshark's own initial RTT (its out-of-order threshold): from the latest SYN to the next
        # segment with ACK and no SYN; a time of exactly 0 counts as unset there, as in Wireshark.
        self.ws_rtt = 0.0
        self.closed_at: float | None = None
        self.older: Conn | None = None  # the previous incarnation of the same 4-tuple, still open
        self.flag_counts: dict[int, int] = {}
        self.local = [False, False]
        self.extra: dict[str, object] = {}
        self.ladder: list[tuple[float, int, bytes]] | None = None  # (t, side, IP packet) when kept
        self.points: list[tuple[float, int, int, int, int, int]] | None = None  # time-sequence graph
        self.frames: list[int] | None = None
        self.offload = [0, 0]
        self.bad_checksums = [0, 0]
        # Per side: segments sent again (retransmissions, keep-alives) with no answer since,
        # the times of the last two, and whether they were keep-alives.
        self.unanswered: list[tuple[int, float, float, bool]] = [(0, 0.0, 0.0, False), (0, 0.0, 0.0, False)]
        # Zero windows per side: since when the current one lasts, the total, the probes it drew.
        self.zero_since: list[float | None] = [None, None]
        self.zero_total = [0.0, 0.0]
        self.zero_probes = [0, 0]
        # Retransmission chains per side: (seq, count, first, last); the longest one seen.
        self.chain: list[tuple[int, int, float, float]] = [(0, 0, 0.0, 0.0), (0, 0, 0.0, 0.0)]
        self.longest_chain: list[tuple[int, int, float, float]] = [(0, 0, 0.0, 0.0), (0, 0, 0.0, 0.0)]
        # Unacknowledged octets in each direction when a RST was sent (None: no RST).
        self.rst_pending: tuple[int, int, int, float, int] | None = None
        # Which plain segments may take the engine's fast path (see Engine._batch): QUIET_DATA and
        # QUIET_ACK shifted by 2 × side, and QUIET_RTT while the handshake RTTs are still to be
        # measured.
        self.quiet = 0

    # -- one packet --------------------------------------------------------------------------

    def segment(
        self,
        side: int,
        t: float,
        frame: int,
        flen: int,
        seq: int,
        ack: int,
        flags: int,
        win: int,
        plen: int,
        options: bytes,
    ) -> int:
        """Analyse one packet sent by ``side``; returns its analysis flags."""
        fwd = self.sides[side]
        rev = self.sides[1 - side]
        self.packets += 1
        self.last_t = t
        self.last_frame = frame
        fwd.prev_frame, fwd.prev_t = fwd.last_frame, fwd.last
        fwd.last_frame = frame
        if fwd.first is None:
            fwd.first = t
        elif t - fwd.last > fwd.idle_max:
            fwd.idle_max = t - fwd.last
        fwd.last = t
        fwd.packets += 1
        fwd.frame_bytes += flen
        if not flags & _ACK:
            ack = 0
        if options and (flags & _SYN or options[:4] != _TS_ONLY or len(options) != 12):
            self._options(fwd, flags, options, ack)
        elif options:
            fwd.ts_ok = True
        if flags & _SYN:
            self._syn(side, fwd, rev, t, flags, win)
        bits = self._sequence(fwd, rev, t, seq, ack, flags, win, plen)
        self._unanswered(side, t, bits, flags)
        if (
            bits & (m.ZERO_WINDOW | m.ZERO_WINDOW_PROBE)
            or self.zero_since[side] is not None
            or self.zero_since[1 - side] is not None
        ):
            self._zero_window(side, t, bits, win, flags)
        if bits & _RETRANSMITTED or self.chain[side][1]:
            self._chain(side, t, seq, bits)
        if flags & _RST and self.rst_pending is None:
            self._rst(side, t, seq, frame)
        if flags & _ACK:
            self._acked(fwd, rev, t, ack, side)
        self._stats(fwd, flags, seq, win, plen, bits)
        if bits:
            counts = self.flag_counts
            for bit in m.FLAG_FIELDS:
                if bits & bit:
                    counts[bit] = counts.get(bit, 0) + 1
        return bits

    def _unanswered(self, side: int, t: float, bits: int, flags: int) -> None:
        """Count what ``side`` sends again without an answer: a chain of retransmissions or
        keep-alive probes that ends the capture means the sender gave up (R2, keep-alive count)."""
        if self.unanswered[1 - side][0]:
            self.unanswered[1 - side] = (0, 0.0, 0.0, False)
        if not bits and not self.unanswered[side][0]:
            return
        if bits & (m.KEEP_ALIVE | m.RETRANSMISSION) and not flags & _RST:
            n, last, _prev, _ka = self.unanswered[side]
            self.unanswered[side] = (n + 1, t, last if n else t, bool(bits & m.KEEP_ALIVE))
        elif self.unanswered[side][0] and (flags & _RST or bits & m.ZERO_WINDOW_PROBE == 0):
            self.unanswered[side] = (0, 0.0, 0.0, False)

    def _zero_window(self, side: int, t: float, bits: int, win: int, flags: int) -> None:
        if bits & m.ZERO_WINDOW_PROBE:
            self.zero_probes[1 - side] += 1
        since = self.zero_since[side]
        if win == 0 and not flags & (_SYN | _RST):
            if since is None:
                self.zero_since[side] = t
        elif since is not None and not flags & _RST:
            self.zero_total[side] += t - since
            self.zero_since[side] = None

    def _chain(self, side: int, t: float, seq: int, bits: int) -> None:
        """The same segment sent again and again: how many times, over how long."""
        cseq, n, first, _last = self.chain[side]
        if bits & _RETRANSMITTED:
            if n and seq == cseq:
                self.chain[side] = (seq, n + 1, first, t)
            else:
                self.chain[side] = (seq, 1, t, t)
            if self.chain[side][1] > self.longest_chain[side][1]:
                self.longest_chain[side] = self.chain[side]
        elif n:
            self.chain[side] = (0, 0, 0.0, 0.0)

    def _rst(self, side: int, t: float, seq: int, frame: int) -> None:
        """How much data was unacknowledged in each direction when the first RST was sent."""
        out = []
        for s, r in ((self.sides[side], self.sides[1 - side]), (self.sides[1 - side], self.sides[side])):
            if s.nextseq == UNKNOWN or r.lastack == UNKNOWN:
                out.append(0)
            else:
                out.append(max((s.nextseq - r.lastack) & _M if not (s.nextseq - r.lastack) & _H else 0, 0))
        self.rst_pending = (side, out[0], out[1], t, frame)

    def attempt(self) -> bool:
        """Whether this is a connection attempt that never completed its handshake, as far as
        the capture shows: no payload, and neither end known or guessed to have reached a
        synchronized state (a connection seen from its middle is guessed ESTABLISHED)."""
        return not self.payload_seen and not self.tracker.synchronized()

    def silent(self) -> dict[int, tuple[float, Cause, str]]:
        """The ends whose last segments were sent again and again unanswered: when and why
        each probably gave up, for :meth:`StateTracker.finish`."""
        out: dict[int, tuple[float, Cause, str]] = {}
        for side, (n, last, prev, keepalive) in enumerate(self.unanswered):
            if n >= 2:
                gap = max(last - prev, 0.0)
                if keepalive:
                    out[side] = (
                        last + gap,
                        Cause.TIMEOUT_KEEPALIVE,
                        f"{n} keep-alive probes unanswered: it gives up when its count runs out",
                    )
                else:
                    out[side] = (
                        last + 2 * gap,
                        Cause.TIMEOUT_R2,
                        f"{n} retransmissions unanswered: it gives up at R2",
                    )
        return out

    def _options(self, fwd: Side, flags: int, options: bytes, ack: int) -> None:
        try:
            opts = parse_options(options)
        except WireError:
            return
        for opt in opts:
            kind = type(opt).__name__
            if kind == "Timestamps":
                fwd.ts_ok = True
            elif kind == "Sack" and not flags & _SYN:
                fwd.sack_packets += 1
                blocks = opt.blocks  # type: ignore[union-attr]
                if blocks and (
                    not _gt(blocks[0][1], ack)
                    or (
                        len(blocks) > 1
                        and _ge(blocks[1][0], blocks[0][0])
                        and _ge(blocks[1][1], blocks[0][1])
                    )
                ):
                    fwd.dsack_packets += 1  # RFC 2883: the first block is below the ACK or inside the second
            elif flags & _SYN:
                if kind == "Mss":
                    fwd.mss = opt.value  # type: ignore[union-attr]
                elif kind == "WindowScale":
                    fwd.ws_option = min(opt.shift, 14)  # type: ignore[union-attr]
                elif kind == "SackPermitted":
                    fwd.sack_ok = True

    def _syn(self, side: int, fwd: Side, rev: Side, t: float, flags: int, win: int) -> None:
        """Window scaling as the handshake settles it (RFC 7323 §2.2: used only when both SYNs
        carry the option), and the times for the handshake RTT."""
        if flags & _ACK:
            if fwd.ws_option is None or rev.win_scale == -2 or rev.ws_option is None:
                fwd.win_scale = rev.win_scale = -2
            else:
                fwd.win_scale = fwd.ws_option
                if rev.win_scale == -1:
                    rev.win_scale = rev.ws_option
        else:
            fwd.win_scale = -2 if fwd.ws_option is None else fwd.ws_option
            self.rtt_syn_t = t
        fwd.syn_t = t

    def _sequence(
        self, fwd: Side, rev: Side, t: float, seq: int, ack: int, flags: int, win: int, plen: int
    ) -> int:
        """Wireshark's per-packet rules (capture-analysis.md §3)."""
        if fwd.base is None:
            fwd.base = seq if flags & _SYN else (seq - 1) & _M
        nextseq = fwd.nextseq
        control = flags & _CONTROL
        if plen == 1 and seq == nextseq and rev.window == 0:
            bits = m.ZERO_WINDOW_PROBE
        else:
            bits = self._flags_before(fwd, rev, seq, ack, control, win, plen)
        if ack != fwd.lastack:
            fwd.dupacks = 0
        if flags & _ACK and rev.maxseqtobeacked != UNKNOWN and _gt(ack, rev.maxseqtobeacked):
            # This ACK covers data the capture never showed. The boundary jumps to what was
            # seen, so one missing segment is reported once.
            if rev.nextseq != UNKNOWN and _gt(rev.maxseqtobeacked, rev.nextseq):
                rev.maxseqtobeacked = rev.nextseq
                bits |= m.ACK_LOST_SEGMENT
            else:
                if rev.dupacks == 0:
                    bits |= m.ACK_LOST_SEGMENT
                rev.dupacks = -1
        if (plen or flags & (_SYN | _FIN)) and not bits & m.KEEP_ALIVE and not bits & m.ZERO_WINDOW_PROBE:
            bits |= self._retransmission(fwd, rev, t, seq, flags, plen)
        end = (seq + plen + (1 if flags & (_SYN | _FIN) else 0)) & _M
        fwd.contig_before = fwd.contig
        if end != seq and not flags & _RST:
            if fwd.contig == UNKNOWN and not flags & _SYN:
                fwd.contig = seq
            fwd.advance_contig(seq, end)
        if nextseq == UNKNOWN or _gt(end, nextseq):
            if not bits & m.ZERO_WINDOW_PROBE:
                fwd.nextseq = end
                fwd.nextseq_t = t
        if fwd.maxseqtobeacked == UNKNOWN or seq == fwd.maxseqtobeacked:
            if not bits & m.ZERO_WINDOW_PROBE:
                fwd.maxseqtobeacked = fwd.nextseq
        fwd.window = win
        fwd.lastack = ack
        fwd.lastack_t = t
        fwd.lastflags = bits
        fwd.syn_window = bool(flags & _SYN)
        return bits

    def _flags_before(
        self, fwd: Side, rev: Side, seq: int, ack: int, control: int, win: int, plen: int
    ) -> int:
        """Zero window, lost segment, keep-alive, window update, window full, keep-alive ACK,
        zero-window-probe ACK, duplicate ACK — in Wireshark's order."""
        bits = 0
        nextseq = fwd.nextseq
        if win == 0 and not control:
            bits |= m.ZERO_WINDOW
        if nextseq != UNKNOWN and _gt(seq, nextseq) and not control & _RST:
            bits |= m.LOST_SEGMENT
        if nextseq != UNKNOWN and plen <= 1 and seq == (nextseq - 1) & _M and not control:
            bits |= m.KEEP_ALIVE
        same = plen == 0 and seq == nextseq and ack == fwd.lastack and not control
        if same and win and win != fwd.window:
            bits |= m.WINDOW_UPDATE
        if (
            plen
            and not control
            and rev.win_scale != -1
            and rev.lastack != UNKNOWN
            and rev.window != UNKNOWN
        ):
            edge = (rev.lastack + rev.scaled(rev.window)) & _M
            if (seq + plen) & _M == edge:
                bits |= m.WINDOW_FULL
        if same and win == fwd.window:
            if win and rev.lastflags & m.KEEP_ALIVE:
                return bits | m.KEEP_ALIVE_ACK
            if win == 0 and rev.lastflags & m.ZERO_WINDOW_PROBE:
                return bits | m.ZERO_WINDOW_PROBE_ACK
            if win:
                fwd.dupacks = 1 if fwd.dupacks == -1 else fwd.dupacks + 1
                bits |= m.DUPLICATE_ACK
        return bits

    def _retransmission(self, fwd: Side, rev: Side, t: float, seq: int, flags: int, plen: int) -> int:
        """One of spurious retransmission, fast retransmission, out-of-order, retransmission."""
        nextseq = fwd.nextseq
        if seq == nextseq and not (plen and rev.lastack > 0 and not (rev.lastack - seq - plen) & _H):
            return 0  # new data in order: none of them (the common case, decided at once)
        behind = nextseq != UNKNOWN and _gt(nextseq, seq)
        if plen > 1 and nextseq != UNKNOWN and (nextseq - 1) & _M == seq:
            behind = False
        # tshark marks a fast or spurious retransmission as a retransmission too (both fields).
        if plen and rev.lastack > 0 and _ge(rev.lastack, (seq + plen) & _M):
            return m.SPURIOUS_RETRANSMISSION | m.RETRANSMISSION
        if behind and rev.dupacks >= 2 and rev.lastack == seq and t - rev.lastack_t < 0.02:
            return m.FAST_RETRANSMISSION | m.RETRANSMISSION
        threshold = self.ws_rtt if self.ws_rtt else _OOO_DEFAULT
        end = (seq + plen + (1 if flags & (_SYN | _FIN) else 0)) & _M
        if behind and t - fwd.nextseq_t < threshold and nextseq != end:
            return m.OUT_OF_ORDER
        return m.RETRANSMISSION if behind else 0

    def _acked(self, fwd: Side, rev: Side, t: float, ack: int, side: int) -> None:
        """RTT samples (tcptrace, Karn's rule) and the handshake RTT (Wireshark's initial RTT)."""
        timed = rev.timed
        if timed and _ge(ack, timed[0][0]):
            self.rtt_sample(rev, t, ack)
        self.handshake_rtt(fwd, rev, t)

    @staticmethod
    def rtt_sample(rev: Side, t: float, ack: int) -> None:
        """An ACK at ``t`` covers the oldest data ``rev`` sent that was waiting for it (the caller
        checked): the RTT of the last segment it covers, unless that one was retransmitted (Karn)."""
        timed = rev.timed
        assert timed is not None
        pop = timed.popleft
        _end, sent, again = pop()
        while timed and not (ack - timed[0][0]) & _H:
            _end, sent, again = pop()
        if again:
            return
        sample = t - sent
        if sample >= 0:  # the RTT of the direction whose data was acknowledged
            rev.rtt_n += 1
            rev.rtt_sum += sample
            rev.rtt_sq += sample * sample
            if sample < rev.rtt_min:
                rev.rtt_min = sample
            if sample > rev.rtt_max:
                rev.rtt_max = sample

    def handshake_rtt(self, fwd: Side, rev: Side, t: float) -> None:
        """The handshake RTT (tcptrace's, and Wireshark's own initial RTT) at a segment with ACK."""
        if (
            self.first_rtt is None
            and self.rtt_syn_t is not None
            and rev.syn
            and fwd.syn
            and fwd.syn_t == self.rtt_syn_t
            and not fwd.syn_window
        ):
            self.first_rtt = t - self.rtt_syn_t  # the SYN sender's ACK of the SYN,ACK
        if not self.ws_rtt and self.rtt_syn_t and not fwd.syn_window:
            self.ws_rtt = t - self.rtt_syn_t

    def _stats(self, fwd: Side, flags: int, seq: int, win: int, plen: int, bits: int) -> None:
        if flags & _SYN:
            fwd.syn += 1
        if flags & _FIN:
            fwd.fin += 1
        if flags & _RST:
            fwd.rst += 1
        if bits & m.OUT_OF_ORDER:
            fwd.ooo_packets += 1
        if bits & m.ZERO_WINDOW_PROBE:
            fwd.zw_probes += 1
        if bits & m.ZERO_WINDOW:
            fwd.zero_windows += 1
        if not flags & _RST:
            w = fwd.scaled(win)
            fwd.win_sum += w
            if fwd.win_min == UNKNOWN or w < fwd.win_min:
                fwd.win_min = w
            if w > fwd.win_max:
                fwd.win_max = w
        if not plen:
            if flags & _ACK and not flags & _CONTROL:
                fwd.pure_acks += 1
            return
        self.payload_seen = True
        fwd.payload_bytes += plen
        fwd.seg_n += 1
        if fwd.seg_min == UNKNOWN or plen < fwd.seg_min:
            fwd.seg_min = plen
        if plen > fwd.seg_max:
            fwd.seg_max = plen
        end = (seq + plen) & _M
        if bits & _RETRANSMITTED:
            fwd.retrans_packets += 1
            fwd.retrans_bytes += plen
            timed = fwd.timed
            if timed is not None:
                for k, (tend, sent, _again) in enumerate(timed):
                    if _gt(tend, seq):
                        timed[k] = (tend, sent, True)
        else:
            if fwd.timed is None:
                fwd.timed = deque()
            if len(fwd.timed) < _MAX_TIMED:
                fwd.timed.append((end, fwd.last, False))

    def refresh_quiet(self, sampled: bool) -> None:
        """Which plain segments (ACK, no SYN/FIN/RST) can change nothing but counters and
        sequence numbers (and, while it is busy, the inference, which the fast path feeds too)
        when they are in order with nothing to flag: none while a zero window, a retransmission
        chain or unanswered segments are being followed, both FINs have been sent, or packets
        are kept; then, per side and kind (data, ACK), once Zeek's letter is written and
        (``sampled``) its checksums are no longer sampled. Set by the engine after every
        segment that takes the general path."""
        a, b = self.sides
        if (
            self.older is not None
            or self.ladder is not None
            or self.closed_at is not None
            or self.packets <= 4
            or (a.fin and b.fin)
            or self.zero_since[0] is not None
            or self.zero_since[1] is not None
            or self.chain[0][1]
            or self.chain[1][1]
            or self.unanswered[0][0]
            or self.unanswered[1][0]
        ):
            self.quiet = 0
            return
        q = 0
        z = self.zeek
        for side in (0, 1):
            if sampled and self.sides[side].packets < _SAMPLED:
                continue
            if z.settled(side, 1):
                q |= QUIET_DATA << 2 * side
            if z.settled(side, 0):
                q |= QUIET_ACK << 2 * side
        if q and self.rtt_syn_t is not None and (self.first_rtt is None or not self.ws_rtt):
            q |= QUIET_RTT
        self.quiet = q

    # -- the state inference -----------------------------------------------------------------

    def infer(
        self, side: int, t: float, frame: int, seq: int, ack: int, flags: int, plen: int, tsval: int = -1
    ) -> None:
        """Feed one segment to the state inference (``tsval``: its TSval, -1 without one)."""
        seg_len = plen + (1 if flags & _SYN else 0) + (1 if flags & _FIN else 0)
        ack_or_none = ack if flags & _ACK else None
        self.tracker.packet(side, Seg(t, frame, flags, seq, ack_or_none, seg_len, plen, False, tsval))
