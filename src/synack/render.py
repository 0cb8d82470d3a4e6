"""Text formatters: the two-column sequence diagram of RFC 9293 §3.5 (RFC 793 §3.4; seed 003)
drawn from a :class:`~synack.diagram.Ladder`, and a timeline of each end's states.

The diagram follows the conventions the RFC states for its figures: each line is numbered; ``-->``
and ``<--`` are a segment leaving one end or reaching the other; ``...`` is a segment still in the
network (delayed); comments appear in parentheses; the state beside each end is its state *after*
the departure or arrival of the segment on that line; segments are abbreviated to
``<SEQ=..><ACK=..><CTL=..>`` (plus ``<DATA=n>`` for text and ``<WIN=0>`` for a closed window). A
lost segment's line ends in ``(lost)``; a state that was inferred rather than reported is written
``SYN-SENT?``; an end whose states are unknown has a blank column.

Which lines there are, in which order, and which departure shares a line with its arrival is the
model's business (:mod:`synack.diagram`); this module only writes them. ``relative=True`` prints
every sequence number relative to the ISN of the connection incarnation it belongs to (see
:class:`~synack.core.wire.RelativeSeq`), so a handshake reads ``SEQ=0`` / ``ACK=1``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from typing import Final

from synack.core.records import (
    Call,
    Cause,
    ConnKey,
    Drop,
    DropRecord,
    HostNote,
    ResetRecord,
    StateRecord,
    Timer,
    TimerAction,
    TimerRecord,
)
from synack.core.wire import RST, Segment, format_flags
from synack.diagram import (
    Aftermath,
    Change,
    Ladder,
    LadderLine,
    LineKind,
    Remark,
    Role,
    SegmentArrow,
    build_ladder,
)
from synack.trace import NoteRecord, Trace

__all__ = ["ladder_text", "segment_text", "sequence_diagram", "timeline"]

# Comments for user calls and timers, in the RFC's parenthesised style.
_CALLS: Final = {Call.CLOSE: "(Close)", Call.ABORT: "(Abort)"}
_REFIN: Final = "a retransmitted FIN in TIME-WAIT"

# A row of the diagram: number, time, left state, arrow, segment, arrow, right state.
_Row = tuple[str, str, str, str, str, str, str]


def segment_text(seg: Segment, seq: str | None = None, ack: str | None = None) -> str:
    """A segment as the RFC abbreviates it: ``<SEQ=100><ACK=301><CTL=SYN,ACK>``, then
    ``<DATA=n>`` when it carries text and ``<WIN=0>`` when it closes the window. ``seq`` and ``ack``
    replace the numbers (for relative numbering)."""
    parts = [f"<SEQ={seg.seq if seq is None else seq}>"]
    if seg.ack is not None:
        parts.append(f"<ACK={seg.ack if ack is None else ack}>")
    parts.append(f"<CTL={format_flags(seg.flags, 'figure') or 'none'}>")
    if seg.payload:
        parts.append(f"<DATA={len(seg.payload)}>")
    if seg.window == 0 and not seg.flags & RST:
        parts.append("<WIN=0>")
    return "".join(parts)


def _arrow_segment(arrow: SegmentArrow) -> str:
    return segment_text(arrow.packet.seg, str(arrow.seq), None if arrow.ack is None else str(arrow.ack))


# ---------------------------------------------------------------------------------------------
# Words for what the model carries as records
# ---------------------------------------------------------------------------------------------


def _remark_text(rec: Remark) -> str:
    """A user call or a timer as a comment: ``(Close)``, ``(retransmit #2)``, ``(2 MSL)``."""
    if not isinstance(rec, TimerRecord):
        return _CALLS.get(rec.call, f"({rec.call.value})")
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


def _transition_note(host: str, changes: Sequence[Change]) -> str | None:
    """A note when a line takes one end through several states, or through an unusual arrow."""
    recs = [r for r in changes if isinstance(r, StateRecord)]
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


def _aftermath_notes(aftermath: Iterable[Aftermath]) -> list[str]:
    """What the receiver did with the segment; a retransmitted FIN in TIME-WAIT is said once
    (not also as the unacceptable segment it formally is)."""
    notes: list[str] = []
    refin = False
    for rec in aftermath:
        if isinstance(rec, TimerRecord):
            notes.append(f"{rec.host}: {_REFIN}: ACK it again, restart the 2 MSL timer")
            refin = True
        elif isinstance(rec, ResetRecord):
            notes.append(f"{rec.host}: {rec.reason.value}: answer with RST")
        elif not (isinstance(rec, DropRecord) and rec.reason is Drop.UNACCEPTABLE and refin):
            notes.append(f"{rec.host}: {rec.text}")
    return notes


def _comment_text(rec: NoteRecord) -> str:
    if rec.kind == "partition":
        return f"the link {rec.detail} is cut (a pulled cable): nothing gets through"
    if rec.kind == "heal":
        return f"the link {rec.detail} works again"
    return f"{rec.host}: {rec.detail}" if rec.host else rec.detail


def _lost(reason: str) -> str:
    return "(lost)" if reason in ("scripted", "loss", "") else f"(lost: {reason})"


# ---------------------------------------------------------------------------------------------
# The diagram
# ---------------------------------------------------------------------------------------------


def _state_column(line: LadderLine, end: str) -> str:
    if line.kind is LineKind.CRASH:
        return "(CRASH)" if end in line.ends else ""
    if line.kind is LineKind.RESTART:
        return "(REBOOT)" if end in line.ends else ""
    return str(line.state_of(end))


def _segment_columns(line: LadderLine, arrow: SegmentArrow, left: str, lstate: str,
                     rstate: str) -> tuple[str, str, str, str]:
    """(left column, left arrow, right arrow, right column) of a segment's line."""
    rightward = arrow.src == left
    sender_col = arrow.label or (lstate if rightward else rstate)
    receiver_col = rstate if rightward else lstate
    role = line.role
    if role is Role.BOTH:
        out_arrow, in_arrow = ("...", "-->") if arrow.label else ("-->", "-->")
    elif role is Role.ARRIVE:
        out_arrow, in_arrow = "...", "-->"
        sender_col = ""
    else:  # SEND or LOST
        out_arrow, in_arrow = ("...", "...") if arrow.label else ("-->", "...")
        receiver_col = _lost(arrow.reason) if role is Role.LOST else ""
    if rightward:
        return sender_col, out_arrow, in_arrow, receiver_col
    return receiver_col, in_arrow.replace("-->", "<--"), out_arrow.replace("-->", "<--"), sender_col


def _rows(ladder: Ladder) -> tuple[list[_Row], dict[int, list[str]], dict[int, str]]:
    """The rows of the diagram, the notes below some of them and the comment rows."""
    left, right = ladder.left, ladder.right
    rows: list[_Row] = []
    notes: dict[int, list[str]] = {}
    comments: dict[int, str] = {}
    for line in ladder.lines:
        t = f"{line.t:7.3f}"
        if line.note is not None and line.kind is LineKind.COMMENT:
            comments[len(rows)] = f"{t}  * {_comment_text(line.note)}"
            rows.append(("", "", "", "", "", "", ""))
            continue
        num = f"{line.number}."
        lpre = [_remark_text(r) for r in line.remarks_of(left)]
        rpre = [_remark_text(r) for r in line.remarks_of(right)]
        for k in range(max(len(lpre), len(rpre))):
            rows.append((num if k == 0 else "", t if k == 0 else "",
                         lpre[k] if k < len(lpre) else "", "", "", "", rpre[k] if k < len(rpre) else ""))
        first = not (lpre or rpre)
        lstate, rstate = _state_column(line, left), _state_column(line, right)
        la = ra = seg = ""
        if line.arrow is not None:
            seg = _arrow_segment(line.arrow)
            lstate, la, ra, rstate = _segment_columns(line, line.arrow, left, lstate, rstate)
        if first or lstate or rstate or seg:
            rows.append((num if first else "", t if first else "", lstate, la, seg, ra, rstate))
        extra = [n for h in (left, right) if (n := _transition_note(h, line.changes_of(h))) is not None]
        extra.extend(_aftermath_notes(line.aftermath))
        if extra:
            notes[len(rows) - 1] = extra
    return rows, notes, comments


def ladder_text(ladder: Ladder) -> str:
    """The RFC-style diagram of a ladder: one numbered line per event with the time, both ends'
    states, the segment and its direction; comments for user calls (``(Close)``), timers
    (``(2 MSL)``), crashes; notes below a line for what an end did with a segment it could not
    accept."""
    left, right = ladder.left, ladder.right
    rows, notes, comments = _rows(ladder)
    wl = max([len(f"TCP {left}")] + [len(r[2]) for r in rows])
    ws = max([1] + [len(r[4]) for r in rows])
    wn = max([3] + [len(r[0]) for r in rows])
    head = f"{'':{wn}}  {'time':>7}  {'TCP ' + left:<{wl}}  {'':3}  {'':{ws}}  {'':3}  TCP {right}"
    out = [head.rstrip()]
    seg_col = wn + 2 + 7 + 2 + wl + 2 + 3 + 2
    for k, (n_, t_, ls, la_, sg, ra_, rs) in enumerate(rows):
        if k in comments:
            indent = " " * (wn + 2 + 7 + 4)
            out.extend(textwrap.wrap(comments[k], 100, initial_indent=" " * (wn + 2),
                                     subsequent_indent=indent, break_on_hyphens=False))
            continue
        out.append(f"{n_:>{wn}}  {t_:>7}  {ls:<{wl}}  {la_:3}  {sg:<{ws}}  {ra_:3}  {rs}".rstrip())
        for note in notes.get(k, []):
            out.append(f"{'':{seg_col}}{note}")
    return "\n".join(out) + "\n"


def sequence_diagram(trace: Trace, left: str, right: str, *, relative: bool = False) -> str:
    """The RFC-style diagram of what happened between hosts ``left`` (TCP A) and ``right`` (TCP B)
    of a trace: :func:`ladder_text` of :func:`~synack.diagram.build_ladder`."""
    return ladder_text(build_ladder(trace.records, left, right, relative=relative))


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
