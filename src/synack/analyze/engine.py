"""The one pass over a capture: frames → TCP segments → connections → results.

:class:`Engine` reads chunks of a capture (:func:`synack.pcap.iter_chunks`), finds the TCP
segment of each (IPv4 without options is read here directly, everything else by
:func:`~synack.analyze.frames.tcp_fields`), looks up its connection by the packed 4-tuple
(both directions share one :class:`~synack.analyze.conn.Conn`), splits a 4-tuple into a new
connection when a SYN brings a new ISN (Wireshark's "reused ports"), and hands the segment to
the connection. A connection that has ended (RST, or both FINs acknowledged) is finalized once
it has been quiet for ``linger`` seconds of capture time — its result goes to the sink and its
memory is freed — so memory follows the connections open at once, not the file's length.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, TextIO

from synack.analyze import frames as fr
from synack.analyze import model as m
from synack.analyze.conn import (
    _MAX_TIMED,
    _SAMPLED,
    _TS_ONLY,
    QUIET_ACK,
    QUIET_DATA,
    QUIET_RTT,
    UNKNOWN,
    Conn,
    tsval_of,
)
from synack.analyze.findings import connection_findings
from synack.analyze.model import CapturePoint, ConnectionResult
from synack.analyze.states import StateTracker
from synack.core.records import Cause, State
from synack.core.wire import address_text, pack_address
from synack.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_RAW,
    LINKTYPES,
    Frame,
    FrameBatch,
    RecordChunk,
    ip_offset,
    link_direction,
)

__all__ = ["CaptureStats", "Engine", "Options", "collector_off"]

# IPv4 without options, then TCP: total length, flags and fragment offset, protocol; sequence
# and acknowledgment numbers, data offset and flags, window (the ports are read with the key,
# the checksum only when it is checked).
_IP4_TCP: Final = struct.Struct("!2xH2xHxB14xIIHH")
_FIN: Final = 0x01
_SYN: Final = 0x02
_RST: Final = 0x04
_ACK: Final = 0x10
_CONTROL: Final = _SYN | _FIN | _RST
_M: Final = 0xFFFFFFFF
_H: Final = 0x80000000
# Compared by identity (a tuple, not a set: an Enum member hashes in Python).
_CLOSED: Final = (State.TIME_WAIT, State.CLOSED)
_CLOSING_DOWN: Final = (State.TIME_WAIT, State.CLOSED, State.LAST_ACK, State.CLOSING)
_PLAIN_LINKS: Final = (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_ETHERNET)  # no direction hint
_GC_CHUNKS: Final = 64  # chunks of the file (4 MiB each) between the pass's cyclic collections


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """The cyclic garbage collector off for the block, as it was after it: the pass makes no
    reference cycles (see :meth:`Engine.run`)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class Options:
    """How to analyse. ``msl``: the MSL assumed for TIME-WAIT (2×MSL; Linux holds TIME-WAIT
    60 s, so 30 s); ``local``: addresses of the capturing host, when known; ``checksums``:
    ``sample`` (control segments and the first packets of each direction: enough to recognise
    offload), ``all`` or ``off``; ``linger``: seconds of capture time a finished connection is
    kept for late packets; ``attempt_timeout``: seconds of capture time after which a connection
    attempt that never completed its handshake (:meth:`Conn.attempt`) and shows nothing more is
    over — its result is given then, and a later packet of its 4-tuple starts a new connection
    (Linux gives up on a SYN 127 s after sending it, 64 s after its last retransmission; None:
    never, an attempt is then kept to the end of the capture); ``keep``: ids of connections
    whose packets are kept for a ladder and a time-sequence graph (``None``: all of them, up
    to ``keep_packets`` each)."""

    msl: float = 30.0
    fin_wait_2: float | None = 60.0
    local: tuple[str, ...] = ()
    checksums: str = "sample"
    linger: float = 10.0
    attempt_timeout: float | None = 120.0
    keep: frozenset[int] | None = frozenset()
    keep_packets: int = 3000
    progress: bool = False
    on_packet: Callable[[int, int, int], None] | None = None


@dataclass
class CaptureStats:
    """What the pass saw, whatever it was."""

    frames: int = 0
    tcp: int = 0
    fast: int = 0  # of the TCP segments, those that took the fast path (Engine._batch)
    not_ip: int = 0
    not_tcp: int = 0
    fragments: int = 0
    damaged: int = 0
    damaged_examples: list[str] = field(default_factory=list)
    truncated: int = 0
    bad_checksums: int = 0
    offload: int = 0
    offload_hosts: dict[str, int] = field(default_factory=dict)
    linktypes: dict[int, int] = field(default_factory=dict)
    unknown_linktypes: dict[int, int] = field(default_factory=dict)
    connections: int = 0
    first: float | None = None
    last: float | None = None
    error: str = ""
    peak_open: int = 0

    def damage(self, detail: str, frame: int) -> None:
        self.damaged += 1
        if len(self.damaged_examples) < 5:
            self.damaged_examples.append(f"frame {frame}: {detail}")


class Engine:
    """One analysis: feed it frames (:meth:`run`), then :meth:`finish`. Every connection's
    :class:`~synack.analyze.model.ConnectionResult` goes to ``sink`` when it is finalized."""

    def __init__(self, options: Options, sink: Callable[[ConnectionResult], None]) -> None:
        self.opt = options
        self.sink = sink
        self.stats = CaptureStats()
        self.flows: dict[bytes, tuple[Conn, int]] = {}
        self.open: dict[int, Conn] = {}
        self.ended: deque[Conn] = deque()
        self.local: set[bytes] = {pack_address(a) for a in options.local}
        self.next_id = 0
        self.now = 0.0
        self.tombstones: dict[bytes, tuple[float, int, int]] = {}  # key → (TIME-WAIT start, side, id)
        self._progress_at = 0.0
        self._swept = -math.inf  # capture time of the last sweep for attempts that are over
        self.shard: Callable[[bytes], bool] | None = None  # read only the flows it accepts (--jobs)
        self.fast = True  # False: every segment takes the general path (the reference)

    # -- reading -----------------------------------------------------------------------------

    def run(self, batches: Iterable[FrameBatch | RecordChunk], size: int | None = None) -> None:
        """Read every frame of ``batches`` (:func:`synack.pcap.iter_chunks` or
        :func:`~synack.pcap.iter_batches`; a file's size, when known, for progress)."""
        started = time.monotonic()
        done = 0
        # The pass allocates a few small objects per packet, all freed by their reference counts:
        # it makes no reference cycles (tests/test_analyze_fast.py checks that the collector
        # finds none after it). The cyclic collector would still walk every open connection's
        # objects again and again (an eighth of the time, compiled), so it is off during the
        # pass, and a full collection runs every _GC_CHUNKS chunks of the file in case a cycle
        # was made after all.
        with collector_off():
            for k, batch in enumerate(batches, 1):
                self._batch(batch)
                done = batch.offset + len(batch.data)
                if self.opt.progress:
                    self._progress(started, done, size)
                if not k % _GC_CHUNKS:
                    gc.collect()
        if self.opt.progress:
            sys.stderr.write("\r\033[K")

    def _progress(self, started: float, done: int, size: int | None, out: TextIO | None = None) -> None:
        now = time.monotonic()
        if now - self._progress_at < 0.5:
            return
        self._progress_at = now
        rate = self.stats.frames / max(now - started, 1e-9)
        part = f"{100 * done / size:5.1f}% " if size else ""
        (out or sys.stderr).write(
            f"\r{part}{self.stats.frames:,} frames, {rate:,.0f}/s, {len(self.open):,} connections open\033[K"
        )
        (out or sys.stderr).flush()

    def _batch(self, batch: FrameBatch | RecordChunk) -> None:
        """Every frame of one chunk. The common case — an in-order segment with data or an
        advancing ACK, with nothing to flag, on a connection where nothing else is being
        followed (``Conn.quiet``) — takes the fast path written out here: the few counters and
        sequence numbers it moves, the same ones the general path (:meth:`_segment`) would
        move. Everything else takes the general path. ``fast=False`` sends every segment
        there (the twin test runs both and compares everything)."""
        # The fields read with struct, declared: compiled by mypyc, the loop then works on
        # machine integers rather than on Python objects (no effect as Python).
        sec: int
        frac: int
        caplen: int
        orig_len: int
        total: int
        frag: int
        proto: int
        seq: int
        ack: int
        off_flags: int
        win: int
        buf = batch.data
        st = self.stats
        unpack = _IP4_TCP.unpack_from
        flows = self.flows
        frame = first_frame = st.frames
        fast = self.fast and self.opt.checksums != "all"
        on_packet = self.opt.on_packet
        sampled = self.opt.checksums == "sample"
        now = self.now
        n_fast = truncated = 0
        attempt_over = math.inf if self.opt.attempt_timeout is None else self.opt.attempt_timeout
        # A RecordChunk's records are walked here (nothing made per record); a FrameBatch says
        # where its records are.
        frames: list[Frame] = []
        raw = False
        if isinstance(batch, RecordChunk):
            raw = True
            at = first_at = batch.at
            unit = batch.unit
            chunk_linktype = batch.linktype
            record = batch.record.unpack_from
        else:
            frames = batch.frames
            at = first_at = unit = chunk_linktype = 0
            record = unpack  # (not read: a FrameBatch says where its records are)
        end_at = len(buf)
        i = 0
        n = len(frames)
        ts = 0.0
        while True:
            if raw:
                if at + 16 > end_at:
                    break
                sec, frac, caplen, orig_len = record(buf, at)
                if frac >= unit or caplen > end_at - at - 16:
                    break
                ts = sec + frac / unit
                start = at + 16
                at = start + caplen
                linktype = chunk_linktype
            else:
                if i == n:
                    break
                ts, start, caplen, orig_len, linktype = frames[i]
                i += 1
            frame += 1
            stop = start + caplen
            if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
                ip = start
            elif linktype == LINKTYPE_ETHERNET and buf[start + 12 : start + 14] == b"\x08\x00":
                ip = start + 14
            else:
                got = self._link(buf, linktype, start, stop, frame)
                if got is None:
                    continue
                ip = got
            if stop - ip >= 40 and buf[ip] == 0x45:
                total, frag, proto, seq, ack, off_flags, win = unpack(buf, ip)
                thl = (off_flags >> 12) << 2
                if proto != 6 or frag & 0x3FFF or thl < 20 or total < 20 + thl:
                    self._skip_ip(buf, ip, stop, frame)
                    continue
                key = buf[ip + 12 : ip + 24]
                tcp = ip + 20
                tcp_len = total - 20
                complete = ip + total <= stop
            else:
                got4 = self._slow_ip(buf, ip, stop, frame)
                if got4 is None:
                    continue
                key, tcp, tcp_len, complete, seq, ack, thl, off_flags, win = got4
            flags = off_flags & 0xFF
            entry = flows.get(key)
            if entry is not None and ts - entry[0].last_t > attempt_over and self._over(entry[0]):
                entry = None
            if entry is None and self.shard is not None and not self.shard(key):
                continue
            if entry is None or (
                flags & 0x12 == _SYN
                and (entry[0].sides[entry[1]].base not in (None, seq) or entry[0].closed_at is not None)
            ):
                entry = self._new(key, entry, ts, frame, flags, seq, len(key) > 12)
            conn, side = entry
            if conn.older is not None and flags & 0x12 != _SYN:
                self.now = now
                conn, side = self._route(conn, side, seq, ack, flags)
            now = ts
            q = conn.quiet
            plen = tcp_len - thl
            if (
                fast
                and q
                and flags & 0x17 == _ACK
                and win
                and q & ((QUIET_DATA if plen else QUIET_ACK) << 2 * side)
                and (
                    thl == 20 or (thl == 32 and buf[tcp + 20 : tcp + 24] == _TS_ONLY and tcp + 32 <= len(buf))
                )
            ):
                fwd, rev = conn.sides[side], conn.sides[1 - side]
                if plen:
                    end = (seq + plen) & _M
                    rl = rev.lastack
                    rw = rev.window
                    sc = rev.win_scale
                    mx = rev.maxseqtobeacked
                    ok = (
                        seq == fwd.nextseq
                        and seq == fwd.contig
                        and not fwd.holes
                        and (mx == UNKNOWN or ack == mx or (ack - mx) & _H != 0)
                        and not (rl > 0 and not (rl - seq - plen) & _H)  # a spurious retransmission
                        and not (plen == 1 and rw == 0)  # a zero-window probe
                        and (
                            sc == -1
                            or rl == UNKNOWN
                            or rw == UNKNOWN
                            or end != (rl + (rw << sc if sc > 0 and not rev.syn_window else rw)) & _M
                        )  # window full
                    )
                else:
                    mx = rev.maxseqtobeacked
                    ok = (
                        seq == fwd.nextseq
                        and ack != fwd.lastack
                        and (mx == UNKNOWN or ack == mx or (ack - mx) & _H != 0)
                    )
                if ok:
                    n_fast += 1
                    if not complete:
                        truncated += 1
                    conn.packets += 1
                    conn.last_t = ts
                    conn.last_frame = frame
                    fwd.last_frame = frame
                    idle = ts - fwd.last
                    if idle > fwd.idle_max:
                        fwd.idle_max = idle
                    fwd.last = ts
                    fwd.packets += 1
                    fwd.frame_bytes += orig_len
                    if thl != 20:
                        fwd.ts_ok = True
                    if ack != fwd.lastack:
                        fwd.dupacks = 0
                    fwd.window = win
                    fwd.lastack = ack
                    fwd.lastack_t = ts
                    fwd.lastflags = 0
                    fwd.syn_window = False
                    sc = fwd.win_scale
                    w = win << sc if sc > 0 else win
                    fwd.win_sum += w
                    if fwd.win_min == UNKNOWN or w < fwd.win_min:
                        fwd.win_min = w
                    if w > fwd.win_max:
                        fwd.win_max = w
                    if plen:
                        fwd.contig_before = seq
                        fwd.contig = fwd.nextseq = end
                        fwd.nextseq_t = ts
                        mx = fwd.maxseqtobeacked
                        if mx in (UNKNOWN, seq):
                            fwd.maxseqtobeacked = end
                        conn.payload_seen = True
                        fwd.payload_bytes += plen
                        fwd.seg_n += 1
                        if fwd.seg_min == UNKNOWN or plen < fwd.seg_min:
                            fwd.seg_min = plen
                        if plen > fwd.seg_max:
                            fwd.seg_max = plen
                        timed = fwd.timed
                        if timed is None:
                            timed = fwd.timed = deque()
                        if len(timed) < _MAX_TIMED:
                            timed.append((end, ts, False))
                        conn.zeek.max_end[side] = end
                    else:
                        fwd.contig_before = fwd.contig
                        if fwd.maxseqtobeacked == UNKNOWN:
                            fwd.maxseqtobeacked = seq
                        fwd.pure_acks += 1
                    timed = rev.timed
                    if timed and not (ack - timed[0][0]) & _H:
                        conn.rtt_sample(rev, ts, ack)
                    if q & QUIET_RTT:
                        conn.handshake_rtt(fwd, rev, ts)
                    if conn.tracker.busy:  # it may move a state (an arrival awaits proof)
                        # (thl 32 here is NOP, NOP, Timestamps: TSval after the first 4 bytes)
                        tsval = int.from_bytes(buf[tcp + 24 : tcp + 28], "big") if thl == 32 else -1
                        conn.infer(side, ts, frame, seq, ack, flags, plen, tsval)
                    if on_packet is not None:
                        on_packet(frame, conn.id, 0)
                    if linktype not in _PLAIN_LINKS:
                        self._direction_hint(buf, linktype, start, key, len(key) > 12)
                    if not frame & 63:
                        self._expire(ts)
                        self._sweep(ts)
                    continue
            self._segment(
                conn,
                side,
                buf,
                ts,
                frame,
                orig_len,
                tcp,
                tcp_len,
                complete,
                seq,
                ack,
                flags,
                win,
                thl,
                key,
            )
            conn.refresh_quiet(sampled)
            if linktype not in _PLAIN_LINKS:
                self._direction_hint(buf, linktype, start, key, len(key) > 12)
            if not frame & 63:
                self._expire(ts)
                self._sweep(ts)
        self.now = now
        st.frames = frame
        st.tcp += n_fast
        st.fast += n_fast
        st.truncated += truncated
        if isinstance(batch, RecordChunk):
            batch.at = at
        if frame > first_frame:
            last = ts
            if st.first is None:
                if raw:
                    sec, frac, _caplen, _orig_len = record(buf, first_at)
                    st.first = sec + frac / unit
                else:
                    st.first = frames[0][0]
            st.last = last if st.last is None or last > st.last else st.last
            self._expire(last)
            self._sweep(st.last)

    def _link(self, buf: bytes, linktype: int, start: int, stop: int, frame: int) -> int | None:
        st = self.stats
        if linktype not in LINKTYPES:
            st.unknown_linktypes[linktype] = st.unknown_linktypes.get(linktype, 0) + 1
            return None
        ip = ip_offset(buf, linktype, start, stop)
        if ip is None:
            st.not_ip += 1
        return ip

    def _skip_ip(self, buf: bytes, ip: int, stop: int, frame: int) -> None:
        got = fr.tcp_fields(buf, ip, stop)
        if isinstance(got, fr.Skip):
            self._count_skip(got, frame)

    def _count_skip(self, skip: fr.Skip, frame: int) -> None:
        st = self.stats
        if skip.reason == "not-tcp":
            st.not_tcp += 1
        elif skip.reason == "fragment":
            st.fragments += 1
        elif skip.reason == "not-ip":
            st.not_ip += 1
        else:
            st.damage(skip.detail, frame)

    def _slow_ip(
        self, buf: bytes, ip: int, stop: int, frame: int
    ) -> tuple[bytes, int, int, bool, int, int, int, int, int] | None:
        got = fr.tcp_fields(buf, ip, stop)
        if isinstance(got, fr.Skip):
            self._count_skip(got, frame)
            return None
        return (got.key, got.tcp, got.tcp_len, got.complete, got.seq, got.ack, got.thl, got.flags, got.window)

    def _direction_hint(self, buf: bytes, linktype: int, start: int, key: bytes, v6: bool) -> None:
        """A Linux cooked capture says which packets the capturing host sent."""
        out = link_direction(buf, linktype, start)
        if out is None:
            return
        n = 16 if v6 else 4
        addr = key[:n] if out else key[n : 2 * n]
        if addr not in self.local:
            self.local.add(addr)

    # -- connections -------------------------------------------------------------------------

    def _new(
        self,
        key: bytes,
        old: tuple[Conn, int] | None,
        ts: float,
        frame: int,
        flags: int,
        seq: int,
        v6: bool,
    ) -> tuple[Conn, int]:
        """A connection for the first segment of a 4-tuple, or a new incarnation of one (a SYN
        with another ISN). The originator is the sender, unless the segment is a SYN,ACK."""
        n = 16 if v6 else 4
        src, dst = key[:n], key[n : 2 * n]
        sport = (key[2 * n] << 8) | key[2 * n + 1]
        dport = (key[2 * n + 2] << 8) | key[2 * n + 3]
        rkey = dst + src + key[2 * n + 2 : 2 * n + 4] + key[2 * n : 2 * n + 2]
        flipped = flags & (_SYN | _ACK) == (_SYN | _ACK)
        keys = (rkey, key) if flipped else (key, rkey)
        packed = (dst, src) if flipped else (src, dst)
        ports = (dport, sport) if flipped else (sport, dport)
        addrs = (address_text(packed[0]), address_text(packed[1]))
        local = self.local

        def is_local(side: int, packed: tuple[bytes, bytes] = packed) -> bool:
            return packed[side] in local

        tracker = StateTracker(is_local, self.opt.msl, self.opt.fin_wait_2)
        conn = Conn(self.next_id, keys, addrs, ports, ts, frame, tracker)
        tracker.sides = conn.sides
        conn.zeek.first(flags)
        self.next_id += 1
        self.stats.connections += 1
        if old is not None:
            conn.extra["reused"] = True
            prev = old[0]
            if prev.closed_at is None or ts - prev.last_t < self.opt.linger:
                conn.older = prev
                prev.extra["newer"] = conn
        self._port_reuse(conn, key, rkey, ts)
        keep = self.opt.keep
        if keep is None or conn.id in keep:
            conn.ladder = []
            conn.points = []
            conn.frames = []
        self.open[conn.id] = conn
        self.stats.peak_open = max(self.stats.peak_open, len(self.open))
        self.flows[keys[0]] = (conn, 0)
        self.flows[keys[1]] = (conn, 1)
        return (conn, 1) if flipped else (conn, 0)

    def _port_reuse(self, conn: Conn, key: bytes, rkey: bytes, ts: float) -> None:
        """A new connection on a 4-tuple whose last one began TIME-WAIT less than 2×MSL ago."""
        for k in (key, rkey):
            tomb = self.tombstones.pop(k, None)
            if tomb is not None and ts - tomb[0] < 2 * self.opt.msl:
                conn.extra["port_reuse"] = (tomb[2], ts - tomb[0], tomb[1])

    def _route(self, conn: Conn, side: int, seq: int, ack: int, flags: int) -> tuple[Conn, int]:
        """Two incarnations of a 4-tuple are open (an old duplicate SYN, a crashed host opening
        again): a segment belongs to the one whose sequence spaces it falls in — the nearest ISN
        at or below its numbers."""
        older = conn.older
        assert older is not None
        if older.closed_at is not None and self.now - older.last_t > self.opt.linger:
            conn.older = None
            return conn, side
        oside = side if older.keys[side] == conn.keys[side] else 1 - side
        new = _distance(conn, side, seq, ack, flags)
        old = _distance(older, oside, seq, ack, flags)
        return (older, oside) if old < new else (conn, side)

    def _segment(
        self,
        conn: Conn,
        side: int,
        buf: bytes,
        ts: float,
        frame: int,
        flen: int,
        tcp: int,
        tcp_len: int,
        complete: bool,
        seq: int,
        ack: int,
        flags: int,
        win: int,
        thl: int,
        key: bytes,
    ) -> None:
        st = self.stats
        st.tcp += 1
        fwd = conn.sides[side]
        if not complete:
            st.truncated += 1
        elif self.opt.checksums != "off" and (
            self.opt.checksums == "all" or flags & _CONTROL or fwd.packets < _SAMPLED
        ):
            self._checksum(conn, side, buf, tcp, tcp_len, key)
        plen = tcp_len - thl
        options = buf[tcp + 20 : tcp + thl] if thl > 20 else b""
        bits = conn.segment(side, ts, frame, flen, seq, ack, flags, win, plen, options)
        if flags & _CONTROL or win == 0 or bits or conn.packets <= 4 or not conn.zeek.settled(side, plen):
            self._zeek(conn, side, flags, seq, plen, win, bits)
        elif plen:
            conn.zeek.max_end[side] = (seq + plen) & _M
        tsval = tsval_of(options) if options else -1
        if flags & _CONTROL or conn.tracker.busy:
            conn.infer(side, ts, frame, seq, ack, flags, plen, tsval)
        elif tsval >= 0:
            conn.tracker.stamp(side, seq, flags, tsval)  # TS.Recent moves all the same (PAWS)
        if conn.extra.get("reused") and conn.packets == 1:
            bits |= m.REUSED_PORTS
            conn.flag_counts[m.REUSED_PORTS] = conn.flag_counts.get(m.REUSED_PORTS, 0) + 1
        if conn.ladder is not None and len(conn.ladder) < self.opt.keep_packets:
            self._keep(conn, side, buf, ts, frame, tcp, tcp_len, thl, seq, ack, flags, win, plen, key)
        if self.opt.on_packet is not None:
            self.opt.on_packet(frame, conn.id, bits)
        if conn.closed_at is None and self._ended(conn, flags):
            conn.closed_at = ts
            self.ended.append(conn)

    def _zeek(self, conn: Conn, side: int, flags: int, seq: int, plen: int, win: int, bits: int) -> None:
        z = conn.zeek
        is_orig = side == 0
        seg_end = (seq + plen + (1 if flags & _SYN else 0) + (1 if flags & _FIN else 0)) & _M
        zero = win == 0 and not flags & _SYN
        peer_fin = conn.sides[1 - side].fin > 0
        z.packet(is_orig, flags, seq, seg_end, plen, zero, peer_fin)
        if bits & m.ACK_LOST_SEGMENT:
            z.count(not is_orig, "G")  # a gap in the data the other side sent

    def _checksum(
        self, conn: Conn, side: int, buf: bytes, tcp: int, tcp_len: int, key: bytes
    ) -> None:
        n = len(key) - 4
        csum = (buf[tcp + 16] << 8) | buf[tcp + 17]  # the TCP header was captured whole
        state = fr.checksum_state(buf, tcp, tcp_len, key[:n], csum)
        if state == fr.CHECKSUM_OK:
            return
        st = self.stats
        if state == fr.CHECKSUM_OFFLOAD:
            st.offload += 1
            conn.offload[side] += 1
            src = key[: n // 2]
            if src not in self.local:
                self.local.add(src)
            host = address_text(src)
            st.offload_hosts[host] = st.offload_hosts.get(host, 0) + 1
        else:
            st.bad_checksums += 1
            conn.bad_checksums[side] += 1
            conn.zeek.count(side == 0, "C")

    def _keep(
        self,
        conn: Conn,
        side: int,
        buf: bytes,
        ts: float,
        frame: int,
        tcp: int,
        tcp_len: int,
        thl: int,
        seq: int,
        ack: int,
        flags: int,
        win: int,
        plen: int,
        key: bytes,
    ) -> None:
        """The packet for the ladder (IP header rebuilt around the TCP header and the captured
        payload) and a point of the time-sequence graph."""
        assert conn.ladder is not None and conn.points is not None and conn.frames is not None
        conn.ladder.append((ts, side, _packet_bytes(buf, tcp, tcp_len, thl, key)))
        conn.frames.append(frame)
        conn.points.append(
            (
                ts,
                side,
                seq,
                plen + (1 if flags & (_SYN | _FIN) else 0),
                ack if flags & _ACK else -1,
                conn.sides[side].scaled(win) if not flags & _SYN else win,
            )
        )

    @staticmethod
    def _ended(conn: Conn, flags: int) -> bool:
        """A RST, or both FINs sent and the last one acknowledged."""
        if flags & _RST:
            return True
        a, b = conn.sides
        if not (a.fin and b.fin):
            return False
        states = (conn.tracker.state(0)[0], conn.tracker.state(1)[0])
        return all(s is None or s in _CLOSING_DOWN for s in states) and any(s in _CLOSED for s in states)

    # -- finishing ---------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        linger = self.opt.linger
        ended = self.ended
        while ended and now - ended[0].last_t > linger:
            conn = ended.popleft()
            if conn.closed_at is not None and now - conn.last_t > linger and conn.id in self.open:
                self._finalize(conn, conn.last_t + linger)
            elif conn.id in self.open:
                ended.append(conn)
                break

    def _finalize(self, conn: Conn, end_time: float) -> None:
        del self.open[conn.id]
        for k in conn.keys:
            entry = self.flows.get(k)
            if entry is not None and entry[0] is conn:
                del self.flows[k]
        newer = conn.extra.pop("newer", None)
        if isinstance(newer, Conn) and newer.older is conn:
            newer.older = None
        result = build_result(conn, end_time, self.opt.msl)
        tw = [c for c in result.states[0] + result.states[1] if c.state is State.TIME_WAIT]
        if tw:
            side = 0 if tw[0] in result.states[0] else 1
            for k in conn.keys:
                self.tombstones[k] = (tw[0].t, side, conn.id)
            if len(self.tombstones) > 200_000:
                for k in list(self.tombstones)[:50_000]:
                    del self.tombstones[k]
        self.sink(result)

    def _over(self, conn: Conn) -> bool:
        """A connection attempt silent for ``attempt_timeout`` is over: finalized (as of that
        time) when it is, so that what follows on its 4-tuple is a new connection."""
        timeout = self.opt.attempt_timeout
        if timeout is None or conn.closed_at is not None or not conn.attempt():
            return False
        self._finalize(conn, conn.last_t + timeout)
        return True

    def _sweep(self, now: float) -> None:
        """Finalize the connection attempts silent for ``attempt_timeout`` (a SYN flood or a scan
        leaves one per address and port it tried), every half timeout of capture time: memory
        follows the attempts still alive, not all the file's. The result does not depend on
        when this runs: a packet after the timeout finds its attempt over all the same
        (:meth:`_over`), and :meth:`finish` ends each attempt at the same time."""
        timeout = self.opt.attempt_timeout
        if timeout is None or now - self._swept < timeout / 2:
            return
        self._swept = now
        for conn in [c for c in self.open.values() if now - c.last_t > timeout]:
            self._over(conn)

    def finish(self) -> CaptureStats:
        """Finalize every connection still open (at the time of the last frame; an attempt
        silent for ``attempt_timeout`` before that, when the timeout ran out)."""
        end = self.stats.last if self.stats.last is not None else 0.0
        over = math.inf if self.opt.attempt_timeout is None else self.opt.attempt_timeout
        with collector_off():  # as in run(): the results of thousands of connections at once
            for conn in sorted(self.open.values(), key=lambda c: c.id):
                if not (end - conn.last_t > over and self._over(conn)):
                    self._finalize(conn, end)
        return self.stats


def _distance(conn: Conn, side: int, seq: int, ack: int, flags: int) -> int:
    """How far a segment's numbers lie above the ISNs of ``conn`` (smaller: more likely its own)."""
    best = 1 << 33
    base = conn.sides[side].base
    if base is not None:
        best = min(best, (seq - base) & _M)
    other = conn.sides[1 - side].base
    if flags & _ACK and other is not None:
        best = min(best, (ack - other) & _M)
    return best


def _packet_bytes(buf: bytes, tcp: int, tcp_len: int, thl: int, key: bytes) -> bytes:
    """An IP packet around the captured TCP segment, its payload padded to the length on the wire
    (a capture cut by the snap length still draws the right <DATA=n>)."""
    segment = buf[tcp : tcp + tcp_len]
    if len(segment) < tcp_len:
        segment += bytes(tcp_len - len(segment))
    if len(key) > 12:
        return struct.pack("!IHBB", 6 << 28, tcp_len, 6, 64) + key[:32] + segment
    total = 20 + tcp_len
    return struct.pack("!BBHHHBBH", 0x45, 0, total, 0, 0x4000, 64, 6, 0) + key[:8] + segment


def build_result(conn: Conn, end_time: float, msl: float) -> ConnectionResult:
    """The :class:`ConnectionResult` of a connection, followed until ``end_time``."""
    conn.extra["until"] = end_time
    states = conn.tracker.finish(end_time, conn.silent())
    tracker = conn.tracker
    flags = {m.FLAG_FIELDS[bit]: n for bit, n in sorted(conn.flag_counts.items())}
    z = conn.zeek
    point = tuple(CapturePoint.HERE if tracker.local(s) else CapturePoint.ELSEWHERE for s in (0, 1))
    closed_first = _closed_first(conn)
    partial = ConnectionResult(
        id=conn.id,
        orig=(conn.addrs[0], conn.ports[0]),
        resp=(conn.addrs[1], conn.ports[1]),
        start=conn.start,
        end=conn.last_t,
        packets=conn.packets,
        conn_state=z.conn_state(conn.payload_seen),
        history="".join(z.history),
        states=states,
        stats=(conn.sides[0].stats(), conn.sides[1].stats()),
        flags=flags,
        findings=(),
        capture_point=(point[0], point[1]),
        handshake_rtt=conn.first_rtt,
        frames=(conn.first_frame, conn.last_frame),
        closed_first=closed_first,
        extras=_extras(conn),
    )
    findings = connection_findings(partial, conn, msl)
    if not findings:  # most connections: the result is complete already
        return partial
    return dataclasses.replace(partial, findings=tuple(findings))


def _closed_first(conn: Conn) -> int | None:
    """Which side sent the first FIN."""
    changes = conn.tracker.ends
    firsts = []
    for side in (0, 1):
        for c in changes[side].changes:
            if c.cause is Cause.CLOSE:
                firsts.append((c.t, side))
                break
    return min(firsts)[1] if firsts else None


def _extras(conn: Conn) -> dict[str, object]:
    extras: dict[str, object] = dict(conn.extra)
    extras["isn"] = [
        conn.sides[0].base if conn.sides[0].syn else None,
        conn.sides[1].base if conn.sides[1].syn else None,
    ]
    if conn.ladder is not None:
        extras["ladder"] = conn.ladder
        extras["points"] = conn.points
        extras["frame_numbers"] = conn.frames
    if any(conn.offload):
        extras["offload"] = list(conn.offload)
    if any(conn.bad_checksums):
        extras["bad_checksums"] = list(conn.bad_checksums)
    return extras
