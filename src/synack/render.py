"""Text renderers over a :class:`~synack.trace.Trace`: the two-column sequence diagram of RFC 9293
§3.5 (RFC 793 §3.4; seed 003) and a timeline of each end's states.

The diagram follows the conventions the RFC states for its figures: each line is numbered; ``-->``
and ``<--`` are a segment leaving one end or reaching the other; ``...`` is a segment still in the
network (delayed); comments appear in parentheses; the state beside each end is its state *after*
the departure or arrival of the segment on that line; segments are abbreviated to
``<SEQ=..><ACK=..><CTL=..>`` (plus ``<DATA=n>`` for text and ``<WIN=0>`` for a closed window).

How the lines are chosen. Every packet is sent once and delivered at most once. When nothing
happens at the receiver while the segment is in the network — or nothing at the sender, which lets
the line sit at the arrival — one line shows both ends (``-->  <SEG>  -->``). Otherwise the segment
gets two lines, one when it leaves (``-->  <SEG>  ...``) and one when it arrives
(``...  <SEG>  -->``), as the RFC draws the crossing SYNs of a simultaneous open or the old
duplicate SYN. Formally: every line is a node of a graph whose edges are the order of events at each
end; a departure and its arrival share a line whenever that leaves the graph acyclic (tried in the
order the segments were sent), and the lines are printed in a topological order that follows the
trace wherever it can. A lost segment gets one line ending in ``(lost)``.

``relative=True`` prints every sequence number relative to the initial sequence number of the
connection incarnation it belongs to (that side's SYN on that 4-tuple), so a handshake reads
``SEQ=0`` / ``ACK=1``. A number below the ISN (an old duplicate) prints negative; a number that
belongs to no SYN seen in the trace (the ``<SEQ=0>`` of a RST answering a SYN) prints as it is.
"""

from __future__ import annotations

import heapq
import itertools
import textwrap
from collections.abc import Iterable
from typing import Final

from synack.core.records import (
    Call,
    Cause,
    ConnKey,
    Drop,
    DropRecord,
    HostNote,
    Note,
    ResetRecord,
    StateRecord,
    Timer,
    TimerAction,
    TimerRecord,
    UserCallRecord,
)
from synack.core.wire import ACK, FIN, RST, SYN, URG, IPPacket, Segment, WireError, parse_packet
from synack.trace import NoteRecord, PacketRecord, Trace

__all__ = ["segment_text", "sequence_diagram", "timeline"]

_MASK: Final = 0xFFFFFFFF
_HALF: Final = 1 << 31
_NEAR: Final = 1 << 20  # how far below an ISN a number may be and still be read relative to it

_CTL_ORDER: Final = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (URG, "URG"), (ACK, "ACK"))

# Comments for user calls and timers, in the RFC's parenthesised style.
_CALLS: Final = {Call.CLOSE: "(Close)", Call.ABORT: "(Abort)"}

Direction = tuple[str, int, str, int]
_REFIN: Final = "a retransmitted FIN in TIME-WAIT"


def _signed(a: int) -> int:
    return ((a + _HALF) & _MASK) - _HALF


def _timer_comment(rec: TimerRecord) -> str:
    timer, action = rec.timer, rec.action
    if timer is Timer.TIME_WAIT:
        return "(2 MSL)" if action is TimerAction.EXPIRED else f"(2 MSL: {action.value})"
    if timer is Timer.RETRANSMIT:
        if action is TimerAction.RETRANSMIT:
            return f"(retransmit #{rec.count})"
        return f"(retransmit: {action.value})"
    if timer is Timer.KEEPALIVE:
        if action is TimerAction.PROBE:
            return f"(keep-alive #{rec.count})"
        if action is TimerAction.PEER_DEAD:
            return "(keep-alive: no answer)"
        return f"(keep-alive: {action.value})"
    if timer is Timer.FIN_WAIT_2:
        return "(FIN-WAIT-2 timeout)"
    if timer is Timer.PERSIST:
        return "(window probe)" if action is TimerAction.PROBE else f"(persist: {action.value})"
    return f"({timer.value}: {action.value})"


# ---------------------------------------------------------------------------------------------
# Sequence numbers
# ---------------------------------------------------------------------------------------------


class SeqNumbers:
    """Absolute or relative sequence numbers. Relative: per direction (4-tuple), against the
    ISNs its SYNs carried; a number is read against the nearest ISN at or below it (so an old
    duplicate reads negative and a new connection on the same ports starts again at 0). Shared by
    the text diagram and the HTML view."""

    def __init__(self, relative: bool) -> None:
        self.relative = relative
        self._isns: dict[Direction, list[int]] = {}
        self._injected: dict[Direction, list[int]] = {}

    def learn(self, d: Direction, seg: Segment, injected: bool) -> None:
        if seg.flags & SYN:
            table = self._injected if injected else self._isns
            isns = table.setdefault(d, [])
            if seg.seq not in isns:
                isns.append(seg.seq)

    def show(self, d: Direction, n: int) -> str:
        if not self.relative:
            return str(n)
        isns = self._isns.get(d) or self._injected.get(d)
        if not isns:
            return str(n)
        best: int | None = None
        for isn in isns:
            diff = _signed(n - isn)
            if best is None or (diff >= 0 and (best < 0 or diff < best)) or (best < 0 and diff > best):
                best = diff
        assert best is not None
        if best < 0 and -best > _NEAR:
            return str(n)
        return str(best)

    def pair(self, pkt: IPPacket) -> tuple[str, str | None]:
        """The (SEQ, ACK) of a packet as they should be printed."""
        seg = pkt.seg
        fwd = (pkt.src, seg.src_port, pkt.dst, seg.dst_port)
        rev = (pkt.dst, seg.dst_port, pkt.src, seg.src_port)
        if seg.flags & RST and seg.seq == 0 and seg.ack is not None:
            seq = "0"  # <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>: zero is in nobody's space
        else:
            seq = self.show(fwd, seg.seq)
        return seq, None if seg.ack is None else self.show(rev, seg.ack)

    def segment(self, pkt: IPPacket) -> str:
        seq, ack = self.pair(pkt)
        return segment_text(pkt.seg, seq, ack)


def segment_text(seg: Segment, seq: str | None = None, ack: str | None = None) -> str:
    """A segment as the RFC abbreviates it: ``<SEQ=100><ACK=301><CTL=SYN,ACK>``, then
    ``<DATA=n>`` when it carries text and ``<WIN=0>`` when it closes the window. ``seq`` and ``ack``
    replace the numbers (for relative numbering)."""
    parts = [f"<SEQ={seg.seq if seq is None else seq}>"]
    if seg.ack is not None:
        parts.append(f"<ACK={seg.ack if ack is None else ack}>")
    ctl = ",".join(name for bit, name in _CTL_ORDER if seg.flags & bit)
    parts.append(f"<CTL={ctl or 'none'}>")
    if seg.payload:
        parts.append(f"<DATA={len(seg.payload)}>")
    if seg.window == 0 and not seg.flags & RST:
        parts.append("<WIN=0>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Lines
# ---------------------------------------------------------------------------------------------


class _Pkt:
    __slots__ = ("deliver", "dst", "fate", "label", "packet", "reason", "send", "src")

    def __init__(self, src: str, dst: str, packet: IPPacket, label: str) -> None:
        self.src = src
        self.dst = dst
        self.packet = packet
        self.label = label  # "" for a segment its host sent; else "(old duplicate)", "(copy)" ...
        self.fate = "in flight"
        self.reason = ""
        self.send: _Line | None = None
        self.deliver: _Line | None = None


class _Line:
    """One numbered line of the diagram (before merging: one event at one end)."""

    __slots__ = ("hosts", "kind", "order", "pkt", "post", "pre", "role", "state", "t", "text", "trans")

    def __init__(self, kind: str, order: int, t: float, hosts: Iterable[str]) -> None:
        self.kind = kind  # start, pkt, state, mark, comment
        self.order = order
        self.t = t
        self.hosts = list(hosts)
        self.pkt: _Pkt | None = None
        self.role = ""  # send, deliver, both, lost
        self.pre: dict[str, list[str]] = {}
        self.post: list[str] = []
        self.state: dict[str, str] = {}
        self.trans: dict[str, list[StateRecord]] = {}
        self.text = ""


class _View:
    """What the diagram knows about one end: its connections' states and its listening ports."""

    __slots__ = ("attach", "listening", "name", "pending_pre", "pending_t", "pending_trans", "table")

    def __init__(self, name: str) -> None:
        self.name = name
        self.table: dict[ConnKey, str] = {}
        self.listening: set[int] = set()
        self.attach: tuple[_Line, ConnKey] | None = None  # the arrival whose consequences follow
        self.pending_pre: list[str] = []
        self.pending_trans: list[StateRecord] = []
        self.pending_t = 0.0  # when the first pending item happened

    def pend(self, t: float) -> None:
        if not self.pending_pre and not self.pending_trans:
            self.pending_t = t

    def lookup(self, key: ConnKey | None) -> str:
        if key is not None:
            st = self.table.get(key)
            if st is not None:
                return st
            return "LISTEN" if key[1] in self.listening else "CLOSED"
        live = [s for s in self.table.values() if s != "CLOSED"]
        if live:
            return live[-1]
        return "LISTEN" if self.listening else "CLOSED"


class _Builder:
    """Pass 1: turn the records of the two ends into lines, with states and comments."""

    def __init__(self, trace: Trace, left: str, right: str, relative: bool) -> None:
        self.ends = (left, right)
        self.views = {left: _View(left), right: _View(right)}
        self.numbers = SeqNumbers(relative)
        self.lines: list[_Line] = []
        self.pkts: dict[tuple[int, int], _Pkt] = {}
        self.sent: dict[int, _Pkt] = {}
        self.inject: dict[str, str] = {}
        self.started = False
        self.t_end = 0.0
        for i, rec in enumerate(trace.records):
            self.t_end = max(self.t_end, rec.t)
            self.expire(i, rec.t)
            self.record(i, rec)
        for name in self.ends:
            self.close_window(name)
            self.flush_pending(name, len(trace.records), self.views[name].pending_t)

    def new(self, kind: str, order: int, t: float, hosts: Iterable[str]) -> _Line:
        line = _Line(kind, order, t, hosts)
        self.lines.append(line)
        return line

    def start(self, t: float) -> None:
        if not self.started:
            self.started = True
            line = self.new("start", -1, t, self.ends)
            for name, view in self.views.items():
                line.state[name] = view.lookup(None)

    # -- windows: the consequences of an arrival, and what waits for the next line --------------

    def expire(self, order: int, t: float) -> None:
        """Time moved on: an arrival's consequences are complete, and comments or state changes
        still waiting for a departure at their instant get a line of their own."""
        for name, view in self.views.items():
            if view.attach is not None and view.attach[0].t < t:
                self.close_window(name)
            if (view.pending_pre or view.pending_trans) and view.pending_t < t:
                self.flush_pending(name, order, view.pending_t)

    def close_window(self, name: str) -> None:
        view = self.views[name]
        if view.attach is not None:
            line, key = view.attach
            line.state[name] = view.lookup(key)
            view.attach = None

    def flush_pending(self, name: str, order: int, t: float) -> None:
        view = self.views[name]
        if not view.pending_trans and not view.pending_pre:
            return
        if view.pending_trans:
            line = self.new("state", order, t, (name,))
            key: ConnKey = view.pending_trans[-1].conn
            line.trans[name] = view.pending_trans
            line.state[name] = view.lookup(key)
        else:
            line = self.new("mark", order, t, (name,))
            line.state[name] = ""
        line.pre[name] = view.pending_pre
        view.pending_pre = []
        view.pending_trans = []

    # -- records --------------------------------------------------------------------------------

    def record(self, i: int, rec: object) -> None:
        ends = self.ends
        if isinstance(rec, HostNote):
            if rec.host in self.views:
                if rec.note is Note.LISTEN:
                    self.views[rec.host].listening.add(rec.port)
                else:
                    self.views[rec.host].listening.discard(rec.port)
            return
        if isinstance(rec, PacketRecord):
            if rec.src not in ends or rec.dst not in ends:
                return
            self.start(rec.t)
            self.packet(i, rec)
            return
        if isinstance(rec, StateRecord):
            if rec.host not in self.views:
                return
            self.start(rec.t)
            view = self.views[rec.host]
            view.table[rec.conn] = rec.new
            if view.attach is not None and view.attach[1] == rec.conn:
                view.attach[0].trans.setdefault(rec.host, []).append(rec)
            else:
                self.close_window(rec.host)
                if view.pending_trans and view.pending_trans[-1].conn != rec.conn:
                    self.flush_pending(rec.host, i, view.pending_t)
                view.pend(rec.t)
                view.pending_trans.append(rec)
            return
        if isinstance(rec, UserCallRecord):
            comment = _CALLS.get(rec.call)
            if rec.host in self.views and comment is not None:
                self.start(rec.t)
                self.close_window(rec.host)
                self.views[rec.host].pend(rec.t)
                self.views[rec.host].pending_pre.append(comment)
            return
        if isinstance(rec, TimerRecord):
            if rec.host not in self.views:
                return
            self.start(rec.t)
            view = self.views[rec.host]
            if rec.timer is Timer.TIME_WAIT and rec.action is TimerAction.RESTART and view.attach is not None:
                view.attach[0].post.append(f"{rec.host}: {_REFIN}: ACK it again, restart the 2 MSL timer")
                return
            self.close_window(rec.host)
            view.pend(rec.t)
            view.pending_pre.append(_timer_comment(rec))
            return
        if isinstance(rec, DropRecord):
            view_or_none = self.views.get(rec.host)
            if view_or_none is not None and view_or_none.attach is not None:
                post = view_or_none.attach[0].post
                if not (rec.reason is Drop.UNACCEPTABLE and any(_REFIN in p for p in post)):
                    post.append(f"{rec.host}: {rec.text}")
            return
        if isinstance(rec, ResetRecord):
            answering = self.views.get(rec.host)
            if answering is not None and answering.attach is not None:
                answering.attach[0].post.append(f"{rec.host}: {rec.reason.value}: answer with RST")
            return
        if isinstance(rec, NoteRecord):
            self.note(i, rec)

    def note(self, i: int, rec: NoteRecord) -> None:
        kind = rec.kind
        if kind == "inject":
            if rec.host in self.views:
                self.inject[rec.host] = rec.detail
            return
        if kind in ("crash", "restart"):
            if rec.host not in self.views:
                return
            self.start(rec.t)
            self.close_window(rec.host)
            self.flush_pending(rec.host, i, self.views[rec.host].pending_t)
            view = self.views[rec.host]
            if kind == "crash":
                view.table.clear()
                view.listening.clear()
            line = self.new("mark", i, rec.t, (rec.host,))
            line.state[rec.host] = "(CRASH)" if kind == "crash" else "(REBOOT)"
            return
        if kind in ("partition", "heal", "comment"):
            if kind != "comment" and rec.host not in self.views:
                return
            self.start(rec.t)
            hosts = (rec.host,) if rec.host in self.views and kind == "comment" else self.ends
            for name in hosts:
                self.close_window(name)
                self.flush_pending(name, i, self.views[name].pending_t)
            line = self.new("comment", i, rec.t, hosts)
            if kind == "partition":
                line.text = f"the link {rec.detail} is cut (a pulled cable): nothing gets through"
            elif kind == "heal":
                line.text = f"the link {rec.detail} works again"
            else:
                line.text = f"{rec.host}: {rec.detail}" if rec.host else rec.detail
            return

    def packet(self, i: int, rec: PacketRecord) -> None:
        kind = rec.kind
        key = (rec.pid, rec.copy)
        if kind in ("send", "duplicate"):
            for name in self.ends:
                self.close_window(name)
            try:
                if kind == "duplicate":
                    parsed = self.sent[rec.pid].packet
                else:
                    parsed = parse_packet(rec.packet, verify=False)
            except (KeyError, WireError):
                return
            label = ""
            if kind == "duplicate":
                label = "(copy)"
            elif rec.src in self.inject:
                label = self.inject.pop(rec.src)
            src = rec.src
            pkt = _Pkt(src, rec.dst, parsed, label)
            self.pkts[key] = pkt
            if kind == "send":
                self.sent[rec.pid] = pkt
            seg = parsed.seg
            self.numbers.learn((parsed.src, seg.src_port, parsed.dst, seg.dst_port), seg, bool(label))
            line = self.new("pkt", i, rec.t, () if label else (src,))
            line.pkt = pkt
            line.role = "send"
            pkt.send = line
            if not label:
                view = self.views[src]
                if view.pending_trans and view.pending_trans[-1].conn != _src_key(parsed):
                    self.flush_pending(src, i, view.pending_t)
                line.pre[src] = view.pending_pre
                line.trans[src] = view.pending_trans
                view.pending_pre = []
                view.pending_trans = []
                line.state[src] = view.lookup(_src_key(parsed))
            return
        pkt_or_none = self.pkts.get(key)
        if pkt_or_none is None:
            return
        pkt = pkt_or_none
        if kind == "deliver":
            for name in self.ends:
                self.close_window(name)
            self.flush_pending(pkt.dst, i, self.views[pkt.dst].pending_t)
            pkt.fate = "delivered"
            line = self.new("pkt", i, rec.t, (pkt.dst,))
            line.pkt = pkt
            line.role = "deliver"
            pkt.deliver = line
            self.views[pkt.dst].attach = (line, _dst_key(pkt.packet))
        elif kind == "drop":
            pkt.fate = "dropped"
            pkt.reason = rec.reason
            if pkt.send is not None:
                pkt.send.role = "lost"


def _src_key(p: IPPacket) -> ConnKey:
    return (p.src, p.seg.src_port, p.dst, p.seg.dst_port)


def _dst_key(p: IPPacket) -> ConnKey:
    return (p.dst, p.seg.dst_port, p.src, p.seg.src_port)


# ---------------------------------------------------------------------------------------------
# Merging departures with arrivals, and ordering the lines
# ---------------------------------------------------------------------------------------------


def _arrange(lines: list[_Line], ends: tuple[str, str]) -> list[_Line]:
    """Merge each departure with its arrival where the order of events allows it, then order the
    lines: topologically, by time, following the trace where there is a choice.

    The graph has two kinds of edges. Causal ones: the order of events at each end, and each
    departure before its arrival. Time ones: a line shown at time t comes after every line shown
    earlier (through one barrier node between consecutive instants, to keep the graph small). A
    merged line is shown at its departure time, so merging departure S with arrival D keeps D's
    causal edges (now S's) and drops D's time edges; it is allowed when no path leads from S to an
    event that had to precede D — an event at the receiver while the segment was in the network."""
    n = len(lines)
    index = {id(line): k for k, line in enumerate(lines)}
    times = sorted({round(line.t, 9) for line in lines})
    group = {t: g for g, t in enumerate(times)}
    total = n + max(len(times) - 1, 0)
    csucc: list[set[int]] = [set() for _ in range(total)]
    cpred: list[set[int]] = [set() for _ in range(total)]
    tsucc: list[set[int]] = [set() for _ in range(total)]
    tpred: list[set[int]] = [set() for _ in range(total)]

    def causal(a: int, b: int) -> None:
        if a != b:
            csucc[a].add(b)
            cpred[b].add(a)

    def timed(a: int, b: int) -> None:
        tsucc[a].add(b)
        tpred[b].add(a)

    for k, line in enumerate(lines):
        g = group[round(line.t, 9)]
        if g > 0:
            timed(n + g - 1, k)
        if g < len(times) - 1:
            timed(k, n + g)
    for name in ends:
        chain = [k for k, line in enumerate(lines) if name in line.hosts]
        for a, b in itertools.pairwise(chain):
            causal(a, b)
    pairs: list[tuple[int, int]] = []
    for k, line in enumerate(lines):
        pkt = line.pkt
        if line.kind == "pkt" and line.role == "send" and pkt is not None and pkt.deliver is not None:
            d = index[id(pkt.deliver)]
            causal(k, d)
            pairs.append((k, d))
    alive = [True] * total
    for s, d in pairs:
        before_d = cpred[d] - {s}
        seen = {s, d}
        stack = [x for x in csucc[s] | tsucc[s] if x != d]
        blocked = False
        while stack:
            x = stack.pop()
            if x in before_d:
                blocked = True
                break
            if x in seen:
                continue
            seen.add(x)
            stack.extend(y for y in csucc[x] | tsucc[x] if y != d)
        if blocked:
            continue
        for p in list(cpred[d]):
            csucc[p].discard(d)
            causal(p, s)
        for q in list(csucc[d]):
            cpred[q].discard(d)
            causal(s, q)
        for p in list(tpred[d]):
            tsucc[p].discard(d)
        for q in list(tsucc[d]):
            tpred[q].discard(d)
        cpred[d].clear()
        csucc[d].clear()
        tpred[d].clear()
        tsucc[d].clear()
        alive[d] = False
        sline, dline = lines[s], lines[d]
        sline.role = "both"
        sline.hosts.extend(h for h in dline.hosts if h not in sline.hosts)
        sline.state.update(dline.state)
        sline.trans.update(dline.trans)
        sline.post.extend(dline.post)
        for h, pre in dline.pre.items():
            sline.pre.setdefault(h, []).extend(pre)
    indeg = [len(cpred[k] | tpred[k]) if alive[k] else 0 for k in range(total)]

    def key(k: int) -> tuple[float, float]:
        if k < n:
            return (round(lines[k].t, 9), float(lines[k].order))
        return (times[k - n], float("inf"))

    heap = [(key(k), k) for k in range(total) if alive[k] and indeg[k] == 0]
    heapq.heapify(heap)
    out: list[_Line] = []
    while heap:
        _, k = heapq.heappop(heap)
        if k < n:
            out.append(lines[k])
        for q in csucc[k] | tsucc[k]:
            indeg[q] -= 1
            if indeg[q] == 0:
                heapq.heappush(heap, (key(q), q))
    if len(out) != sum(alive[:n]):
        raise AssertionError("the diagram's lines cannot be ordered (a cycle)")
    return out


# ---------------------------------------------------------------------------------------------
# The diagram
# ---------------------------------------------------------------------------------------------


def _transition_note(host: str, recs: list[StateRecord]) -> str | None:
    """A note when a line takes one end through several states, or through an unusual arrow."""
    recs = list(recs)
    if recs and recs[0].old == "CLOSED" and recs[0].new == "LISTEN" and len(recs) > 1:
        recs = recs[1:]  # a listener's child is born in LISTEN: not worth a word
    if not recs:
        return None
    unusual = [r for r in recs if not r.transition.main or r.detail]
    if len(recs) < 2 and not unusual:
        return None
    path = " -> ".join([recs[0].old] + [r.new for r in recs])
    whys = "; ".join(dict.fromkeys(r.why for r in unusual))
    return f"{host}: {path}" + (f" ({whys})" if whys else "")


def _lost(reason: str) -> str:
    return "(lost)" if reason in ("scripted", "loss", "") else f"(lost: {reason})"


def sequence_diagram(trace: Trace, left: str, right: str, *, relative: bool = False) -> str:
    """The RFC-style diagram of what happened between hosts ``left`` (TCP A) and ``right`` (TCP B):
    one numbered line per event with the time (virtual seconds), both ends' states, the segment
    and its direction; comments for user calls (``(Close)``), timers (``(2 MSL)``), crashes; notes
    below a line for what an end did with a segment it could not accept."""
    b = _Builder(trace, left, right, relative)
    lines = _arrange(b.lines, (left, right))
    rows: list[tuple[str, str, str, str, str, str, str]] = []  # num, time, L, la, seg, ra, R
    notes: dict[int, list[str]] = {}
    comments: dict[int, str] = {}
    num = 0
    for line in lines:
        t = f"{line.t:7.3f}"
        if line.kind == "comment":
            comments[len(rows)] = f"{t}  * {line.text}"
            rows.append(("", "", "", "", "", "", ""))
            continue
        num += 1
        lpre = line.pre.get(left, [])
        rpre = line.pre.get(right, [])
        for k in range(max(len(lpre), len(rpre))):
            rows.append((f"{num}." if k == 0 else "", t if k == 0 else "",
                         lpre[k] if k < len(lpre) else "", "", "", "", rpre[k] if k < len(rpre) else ""))
        first = not (lpre or rpre)
        lstate = line.state.get(left, "") if left in line.hosts or line.kind == "start" else ""
        rstate = line.state.get(right, "") if right in line.hosts or line.kind == "start" else ""
        la = ra = seg = ""
        pkt = line.pkt
        if pkt is not None:
            seg = b.numbers.segment(pkt.packet)
            rightward = pkt.src == left
            sender_col = pkt.label or (lstate if rightward else rstate)
            role = line.role
            if role == "both":
                out_arrow, in_arrow = ("...", "-->") if pkt.label else ("-->", "-->")
                recv_col = rstate if rightward else lstate
            elif role == "send":
                out_arrow, in_arrow = ("...", "...") if pkt.label else ("-->", "...")
                recv_col = ""
            elif role == "lost":
                out_arrow, in_arrow = ("...", "...") if pkt.label else ("-->", "...")
                recv_col = _lost(pkt.reason)
            else:  # deliver
                out_arrow, in_arrow = "...", "-->"
                sender_col = ""
                recv_col = rstate if rightward else lstate
            if rightward:
                lstate, la, ra, rstate = sender_col, out_arrow, in_arrow, recv_col
            else:
                lstate, la, ra, rstate = recv_col, in_arrow.replace("-->", "<--"), \
                    out_arrow.replace("-->", "<--"), sender_col
        if first or lstate or rstate or seg:
            rows.append((f"{num}." if first else "", t if first else "", lstate, la, seg, ra, rstate))
        extra = [n for h in (left, right) if (n := _transition_note(h, line.trans.get(h, []))) is not None]
        extra.extend(line.post)
        if extra:
            notes[len(rows) - 1] = extra
    wl = max([len(f"TCP {left}")] + [len(r[2]) for r in rows])
    ws = max([1] + [len(r[4]) for r in rows])
    wn = max([3] + [len(r[0]) for r in rows])
    head = f"{'':{wn}}  {'time':>7}  {'TCP ' + left:<{wl}}  {'':3}  {'':{ws}}  {'':3}  TCP {right}"
    out = [head.rstrip()]
    seg_col = wn + 2 + 7 + 2 + wl + 2 + 3 + 2
    for k, (n_, t_, ls, la_, sg, ra_, rs) in enumerate(rows):
        if k in comments:
            text = comments[k]
            indent = " " * (wn + 2 + 7 + 4)
            out.extend(textwrap.wrap(text, 100, initial_indent=" " * (wn + 2),
                                     subsequent_indent=indent, break_on_hyphens=False))
            continue
        out.append(f"{n_:>{wn}}  {t_:>7}  {ls:<{wl}}  {la_:3}  {sg:<{ws}}  {ra_:3}  {rs}".rstrip())
        for note in notes.get(k, []):
            out.append(f"{'':{seg_col}}{note}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# The timeline
# ---------------------------------------------------------------------------------------------


def _fmt_conn(key: ConnKey) -> str:
    la, lp, ra, rp = key
    if ":" in la:
        return f"[{la}]:{lp} > [{ra}]:{rp}"
    return f"{la}:{lp} > {ra}:{rp}"


def timeline(trace: Trace, hosts: Iterable[str]) -> str:
    """Each host's connections with the time each spent in every state (virtual seconds), and its
    listening ports; a bar beside each state shows its share of the run, so TIME-WAIT's 2×MSL
    stands out. A connection that ends (CLOSED, a listener's child back to LISTEN, or forgotten in
    a crash) and is later opened again on the same ports is shown as a new one."""
    names = list(hosts)
    t_end = max((r.t for r in trace.records), default=0.0)
    t0 = min((r.t for r in trace.records), default=0.0)
    span = t_end - t0
    scale = 40.0 / span if span > 0 else 0.0
    listens: dict[str, list[tuple[str, float, float | None]]] = {}
    open_listen: dict[tuple[str, str], float] = {}
    conns: dict[str, list[_Incarnation]] = {}
    open_conn: dict[tuple[str, ConnKey], _Incarnation] = {}
    for r in trace.records:
        if isinstance(r, StateRecord) and r.host in names:
            inc = open_conn.get((r.host, r.conn))
            if inc is None:
                inc = open_conn[(r.host, r.conn)] = _Incarnation(r.conn)
                conns.setdefault(r.host, []).append(inc)
            inc.recs.append(r)
            if r.new == "CLOSED" or (r.new == "LISTEN" and r.old == "SYN-RECEIVED"):
                del open_conn[(r.host, r.conn)]
        elif isinstance(r, (NoteRecord, HostNote)) and r.host in names:
            if r.kind == "crash":
                for (h, ck), inc in list(open_conn.items()):
                    if h == r.host:
                        inc.crashed = r.t
                        del open_conn[(h, ck)]
                for (h, where), since in list(open_listen.items()):
                    if h == r.host:
                        listens.setdefault(h, []).append((where, since, r.t))
                        del open_listen[(h, where)]
            elif r.kind == "listen":
                open_listen.setdefault((r.host, r.detail), r.t)
            elif r.kind == "unlisten":
                since_or_none = open_listen.pop((r.host, r.detail), None)
                if since_or_none is not None:
                    listens.setdefault(r.host, []).append((r.detail, since_or_none, r.t))
    for (h, where), since in open_listen.items():
        listens.setdefault(h, []).append((where, since, None))
    out: list[str] = []
    for name in names:
        out.append(f"TCP {name}")
        for detail, since, until in sorted(listens.get(name, []), key=lambda x: x[1]):
            end = "the end" if until is None else f"{until:.3f}"
            out.append(f"  listening on {detail} from {since:.3f} to {end}")
        if not conns.get(name) and not listens.get(name):
            out.append("  no connection")
        for inc in conns.get(name, []):
            out.append(f"  {_fmt_conn(inc.key)}")
            recs = inc.recs
            if len(recs) > 1 and recs[0].new == "LISTEN" and recs[0].transition.event is Cause.PASSIVE_OPEN \
                    and recs[1].t == recs[0].t:
                recs = recs[1:]  # a listener's child: born in LISTEN and SYN-RECEIVED at once
            for k, r in enumerate(recs):
                tail = ""
                if k + 1 < len(recs):
                    until_t = recs[k + 1].t
                elif r.new == "CLOSED":
                    out.append(f"    {r.t:8.3f}  {r.new}")
                    continue
                elif r.new == "LISTEN" and r.old == "SYN-RECEIVED":
                    out.append(f"    {r.t:8.3f}  LISTEN        (gone: the listener takes the next SYN)")
                    continue
                elif inc.crashed is not None:
                    until_t, tail = inc.crashed, "  (forgotten: the host crashed)"
                else:
                    until_t, tail = t_end, "  (still, at the end)"
                spent = until_t - r.t
                bar = "=" * round(spent * scale)
                out.append(f"    {r.t:8.3f}  {r.new:<12} {spent:8.3f} s  |{bar}{tail}")
    return "\n".join(out) + "\n"


class _Incarnation:
    """One connection on one 4-tuple, from its first state change to CLOSED (or a crash)."""

    __slots__ = ("crashed", "key", "recs")

    def __init__(self, key: ConnKey) -> None:
        self.key = key
        self.recs: list[StateRecord] = []
        self.crashed: float | None = None
