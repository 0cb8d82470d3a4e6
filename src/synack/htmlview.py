"""A self-contained HTML page that shows a ladder diagram: a formatter of the model of
:mod:`synack.diagram`, which decides the arrows, their fates and numbers, and both ends' states.

:func:`ladder_html` turns a :class:`~synack.diagram.Ladder` (:func:`render_html`: the ladder of a
:class:`~synack.trace.Trace`) into one HTML file with inline CSS, an inline SVG and a little inline
JavaScript — no external resource of any kind, so the page opens from a file with no network. An
end whose states are unknown (a script) simply has no state labels; an inferred state is labelled
``SYN-SENT?``. It shows:

* an SVG ladder diagram: the two hosts as columns (name and addresses at the top), time flowing
  down, one arrow per segment from its send time at the sender's column to its delivery time at
  the receiver's (so the slant is the delay), labelled like the RFC figures (``SYN seq=0``,
  ``SYN,ACK seq=0 ack=1``, ``PSH,ACK seq=1 ack=1 len=5``); a lost segment is an arrow that stops
  half-way with an ✗ and ``lost (reason)``; the states of each end are written on its side where
  they change (with the event that caused the change), and host notes (listen, crash, timers)
  likewise;
* a detail panel: hovering, focusing or clicking an arrow (or a table row) shows every field of
  the segment — ports, sequence and acknowledgment numbers (absolute and relative), flags, window,
  header length, urgent pointer, each option decoded, payload length and a preview, checksum (and
  whether it is correct), the IP header, the times and the fate;
* the explanation text given by the caller, and a compact table of every segment.

The time scale
--------------
A purely linear time axis does not work for TCP: a handshake takes milliseconds, a retransmission
timeout a second, TIME-WAIT minutes. The vertical position is therefore built event by event:

* within a burst time is linear: one typical one-way delay of the run (the median delay of the
  delivered segments) is :data:`UNIT_PX` pixels, so the slant of every arrow shows its delay;
* a quiet period longer than :data:`GAP_UNITS` one-way delays — nothing sent, nothing arriving,
  no state change — is cut to a fixed height (as tall as the longest uncut pause, so the mapping
  stays monotonic) and marked as a break: a grey band, broken lifelines and the real length of
  the pause ("⋯ 990 ms pass ⋯");
* events that happen at the same instant, or too close together to read, are pushed apart so
  that no two labels overlap: two segments sent by one host at one instant leave one row
  (:data:`ROW_PX`) apart, and a reply leaves from the point where the segment that caused it
  arrived (an arrow that leaves from a lower row still drops by at least its delay). Time never
  goes backwards, but near crowded instants the drawing is stretched.

Each arrow's label runs along it, near its receiving end, its sending end or its middle, above or
below it: the first of these places that crosses no other arrow and no other label.

Every arrow is a ``<g class="segment">`` with ``data-i``, ``data-src``, ``data-dst``,
``data-flags`` (``SYN,ACK``), ``data-seq`` and ``data-ack`` (absolute), ``data-len``,
``data-fate`` (``delivered``, ``lost`` or ``in-flight``) and ``data-reason``; every state label a
``<g class="state">`` with ``data-state``, ``data-host`` and ``data-t``. On load, the page's
script counts them in the SVG and writes a summary into ``<pre id="summary">`` (tests read it from
a headless browser's DOM). Opening the page as ``page.html#seg-6`` shows segment 6 (counting from
1) in the detail panel, pinned.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from dataclasses import dataclass, field
from itertools import groupby

from synack.core.records import HostNote, StateRecord, Timer, TimerAction, TimerRecord
from synack.core.wire import (
    ACK,
    FIN,
    RST,
    SYN,
    IPPacket,
    WireError,
    format_flags,
    format_option,
    format_tcpdump,
    parse_packet,
)
from synack.diagram import ArrowFate, EndEvent, Ladder, ObservedState, SegmentArrow, StateMark, build_ladder
from synack.trace import NoteRecord, Trace

__all__ = ["GAP_UNITS", "ROW_PX", "UNIT_PX", "ladder_html", "render_html"]

UNIT_PX = 48.0
"""Pixels for one typical one-way delay (the median delay of the delivered segments)."""
GAP_UNITS = 2.0
"""A pause longer than this many one-way delays is cut short and marked as a break."""
ROW_PX = 28.0
"""The least vertical distance between two segments leaving (or reaching) one host."""

# Horizontal layout of the SVG (pixels).
_W = 880.0
_AXIS_X = 54.0  # right edge of the time labels
_XL = 212.0  # the left host's lifeline
_XR = 730.0  # the right host's lifeline
_TOP = 108.0  # y of the first event
_STATE_H = 30.0  # a state label: the name and, below it, why
_NOTE_H = 16.0
_GAP_H = GAP_UNITS * UNIT_PX

_FLAG_BITS = SYN | FIN | RST | ACK
_EM_PER_CHAR = 0.52  # the average width of a label's character, in ems
_STATE_COLOURS = {
    "CLOSED": "#666666", "LISTEN": "#1f5fbf", "SYN-SENT": "#1f5fbf", "SYN-RECEIVED": "#1f5fbf",
    "ESTABLISHED": "#1e7b34", "FIN-WAIT-1": "#a85000", "FIN-WAIT-2": "#a85000", "CLOSING": "#a85000",
    "CLOSE-WAIT": "#a85000", "LAST-ACK": "#a85000", "TIME-WAIT": "#7b3fa0",
}
_KIND_COLOURS = {"syn": "#1f5fbf", "fin": "#a85000", "rst": "#c0392b", "data": "#1e7b34", "ack": "#444444"}
_NOTE_KINDS = frozenset(("listen", "unlisten", "crash", "restart", "partition", "heal"))


# ---------------------------------------------------------------------------------------------
# The model: arrows and events
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Drawn:
    """One arrow of the model as drawn: its columns, the time it ends at (where a lost one would
    have arrived), and where its ends are on the page."""

    m: SegmentArrow
    src_col: int
    dst_col: int
    status: str  # delivered | lost | in-flight
    end_t: float
    y0: float = 0.0
    y1: float = 0.0


@dataclass(slots=True)
class _Event:
    """Something that needs a place on the time axis. ``kind``: ``send`` and ``arrive`` (an
    arrow's ends), ``end`` (where a lost or unfinished arrow would have arrived: no column),
    ``state`` and ``note`` (labels beside a column)."""

    t: float
    order: int
    kind: str
    col: int
    arrow: int = -1
    text: str = ""
    sub: str = ""
    state: str = ""
    host: str = ""
    y: float = 0.0


@dataclass(slots=True)
class _Layout:
    ticks: list[tuple[float, float]] = field(default_factory=list)  # (y, t)
    gaps: list[tuple[float, float, float]] = field(default_factory=list)  # (y0, y1, seconds)
    bottom: float = _TOP


# ---------------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------------


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _fmt_t(t: float, decimals: int) -> str:
    return f"{t:.{decimals}f}"


def _fmt_dur(dt: float) -> str:
    """A duration for people: ``10 ms``, ``250 µs``, ``1.99 s``, ``2 min 0.0 s``."""
    if dt >= 120.0:
        m, s = divmod(dt, 60.0)
        return f"{int(m)} min {s:.1f} s"
    if dt >= 1.0:
        return f"{dt:.3g} s" if dt < 10 else f"{dt:.1f} s"
    if dt >= 1e-3:
        return f"{dt * 1e3:.3g} ms"
    if dt > 0:
        return f"{dt * 1e6:.3g} µs"
    return "0 s"


def _kind(pkt: IPPacket) -> str:
    seg = pkt.seg
    if seg.flags & RST:
        return "rst"
    if seg.flags & SYN:
        return "syn"
    if seg.flags & FIN:
        return "fin"
    if seg.payload:
        return "data"
    return "ack"


def _label(flags: int, seq: int, ack: int | None, length: int) -> str:
    """``SYN,ACK seq=0 ack=1`` as the RFC figures write it (plus ``len=`` for data)."""
    parts = [format_flags(flags) or "(no flags)", f"seq={seq}"]
    if ack is not None:
        parts.append(f"ack={ack}")
    if length:
        parts.append(f"len={length}")
    return " ".join(parts)


def _payload_preview(data: bytes, limit: int = 48) -> str:
    if not data:
        return "none"
    shown = data[:limit]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in shown):
        text = shown.decode("ascii").encode("unicode_escape").decode("ascii")
        preview = f'"{text}"'
    else:
        preview = shown.hex(" ")
    more = f" … ({len(data) - limit} more bytes)" if len(data) > limit else ""
    return preview + more


def _fit_font(text: str, room: float, size: float = 12.0) -> float:
    """A font size at which ``text`` fits in ``room`` pixels (roughly: half an em per character),
    but not below 9.5 px: a long label may then run past the middle of its arrow."""
    need = len(text) * _EM_PER_CHAR * size
    if need <= room:
        return size
    return max(9.5, math.floor(size * room / need * 2) / 2)



# ---------------------------------------------------------------------------------------------
# From the ladder to arrows and events
# ---------------------------------------------------------------------------------------------


def _arrows_and_events(ladder: Ladder) -> tuple[list[_Drawn], list[_Event]]:
    """The model's arrows as drawn, and every event that needs a place in time: each arrow's
    departure and arrival (at their positions in the input), where a lost or unfinished arrow
    would have arrived, and the labels beside each column."""
    arrows: list[_Drawn] = []
    events: list[_Event] = []
    for m in ladder.arrows:
        src_col = ladder.column(m.src)
        a = _Drawn(m, src_col, 1 - src_col, m.fate.value, m.end if m.end is not None else m.sent)
        arrows.append(a)
        events.append(_Event(m.sent, m.sent_order, "send", src_col, m.index))
        if m.fate is ArrowFate.DELIVERED and m.end is not None and m.end_order is not None:
            events.append(_Event(m.end, m.end_order, "arrive", a.dst_col, m.index))
    for ev in ladder.events:
        label = _label_event(ladder, ev)
        if label is not None:
            events.append(label)
    # Where would a segment lost as it was sent have arrived? After the usual delay that way.
    delays: list[list[float]] = [[], []]
    for a in arrows:
        if a.status == "delivered" and a.end_t > a.m.sent:
            delays[a.src_col].append(a.end_t - a.m.sent)
    every = delays[0] + delays[1]
    unit = statistics.median(every) if every else 0.001
    nominal = [statistics.median(d) if d else unit for d in delays]
    last = 1 + max((e.order for e in events), default=0)
    for a in arrows:
        if a.status != "delivered":
            if a.end_t <= a.m.sent:
                a.end_t = a.m.sent + nominal[a.src_col]
            events.append(_Event(a.end_t, last, "end", -1, a.m.index))
    events.sort(key=lambda e: (e.t, e.order))
    return arrows, events


def _label_event(ladder: Ladder, ev: EndEvent) -> _Event | None:
    """The label an end's event puts beside its column: a state (with why it changed), a timer,
    a listener, a crash; None for what the page does not show."""
    rec, col = ev.record, ladder.column(ev.end)
    if isinstance(rec, StateRecord):
        multi = len(ladder.connections[col]) > 1
        sub = f"{rec.why} · port {rec.conn[1]}" if multi else rec.why
        return _Event(rec.t, ev.order, "state", col, text=rec.new, sub=sub, state=rec.new, host=rec.host)
    if isinstance(rec, ObservedState):
        mark = StateMark(rec.state, rec.uncertain)
        sub = "inferred from the packets" if rec.uncertain else "observed"
        return _Event(rec.t, ev.order, "state", col, text=str(mark), sub=sub, state=str(mark), host=rec.host)
    if isinstance(rec, TimerRecord):
        if rec.timer is Timer.TIME_WAIT and rec.action is TimerAction.EXPIRED:
            return None
        count = f" #{rec.count}" if rec.count else ""
        if rec.action is TimerAction.RETRANSMIT:
            text = f"timeout → {rec.action.value}{count}"
        else:
            text = f"{rec.timer.value} timer: {rec.action.value}{count}"
        return _Event(rec.t, ev.order, "note", col, text=text, host=rec.host)
    if isinstance(rec, (NoteRecord, HostNote)) and rec.kind in _NOTE_KINDS:
        text = {"crash": "crashed", "restart": "restarted", "heal": "healed"}.get(rec.kind, "")
        if not text:
            text = f"{rec.kind} {rec.detail}" if rec.kind in ("listen", "unlisten") else rec.kind
        return _Event(rec.t, ev.order, "note", col, text=text, sub=rec.detail, host=rec.host)
    return None


# ---------------------------------------------------------------------------------------------
# Layout: a y for every event
# ---------------------------------------------------------------------------------------------


def _layout(arrows: list[_Drawn], events: list[_Event]) -> tuple[_Layout, float]:
    """Place every event (see the module's notes on the time scale); returns the layout and the
    seconds per one-way delay that the scale is built on."""
    lay = _Layout()
    delays = sorted(a.end_t - a.m.sent for a in arrows if a.status == "delivered" and a.end_t > a.m.sent)
    # Without a delivered segment that took time (a link without delay), a millisecond.
    unit = statistics.median(delays) if delays else 0.001
    scale = UNIT_PX / unit
    gap_after = GAP_UNITS * unit
    label_floor = [0.0, 0.0]
    prev_t: float | None = None
    prev_y = _TOP
    bottom = _TOP
    for _, group_iter in groupby(events, key=lambda e: round(e.t, 9)):
        group = list(group_iter)
        t = group[0].t
        if prev_t is None:
            y = _TOP
        else:
            dt = t - prev_t
            if dt > gap_after * (1 + 1e-9):
                start = max(bottom, prev_y)
                y = start + _GAP_H
                lay.gaps.append((start, y, dt))
            else:
                y = max(bottom, prev_y + dt * scale)
        occupied = y
        # Per column: where the next send and the next arrival may go, and the last of either.
        send_next = [y, y]
        arrive_next = [y, y]
        last: list[float | None] = [None, None]
        last_was_send = [False, False]
        ticked = False
        for ev in group:
            c = ev.col
            if ev.kind == "send":
                ey = max(send_next[c], last[c] or y)
                send_next[c] = ey + ROW_PX
                last[c], last_was_send[c] = ey, True
                ev.y = arrows[ev.arrow].y0 = ey
                occupied = max(occupied, ey + ROW_PX)
                ticked = True
            elif ev.kind == "arrive":
                a = arrows[ev.arrow]
                prior = last[c]
                ey = max(arrive_next[c], y if prior is None else prior + (ROW_PX if last_was_send[c] else 0),
                         a.y0)
                delay = ev.t - a.m.sent
                if delay <= gap_after:  # it slants by its delay even when it left from a lower row
                    ey = max(ey, a.y0 + delay * scale)
                arrive_next[c] = ey + ROW_PX
                last[c], last_was_send[c] = ey, False
                ev.y = a.y1 = ey
                occupied = max(occupied, ey + ROW_PX)
                ticked = True
            elif ev.kind == "end":
                a = arrows[ev.arrow]
                delay = ev.t - a.m.sent
                ev.y = a.y1 = max(y, a.y0 + min(delay, gap_after) * scale, a.y0 + ROW_PX / 2)
            else:
                height = _STATE_H if ev.kind == "state" else _NOTE_H
                ev.y = max(last[c] or y, label_floor[c])
                label_floor[c] = ev.y + height
                occupied = max(occupied, ev.y + height)
                ticked = True
        if ticked:
            lay.ticks.append((y, t))
        bottom = occupied
        prev_y, prev_t = y, t
    lay.bottom = bottom
    return lay, unit


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


def _svg(arrows: list[_Drawn], events: list[_Event], lay: _Layout, names: tuple[str, str],
         addrs: tuple[tuple[str, ...], tuple[str, ...]], decimals: int) -> str:
    xs = (_XL, _XR)
    end_y = lay.bottom + 24
    height = end_y + 16
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="ladder" width="{_W:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {_W:.0f} {height:.0f}" role="img" data-hosts="{_esc(names[0])} {_esc(names[1])}" '
        f'aria-label="ladder diagram of the segments between {_esc(names[0])} and {_esc(names[1])}">',
        "<defs>",
    ]
    for kind, colour in _KIND_COLOURS.items():
        out.append(f'<marker id="head-{kind}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" '
                   f'markerHeight="9" orient="auto"><path d="M0,1 L10,5 L0,9 z" fill="{colour}"/></marker>')
    out.append("</defs>")
    out.append(f'<rect width="{_W:.0f}" height="{height:.0f}" fill="#ffffff"/>')

    # Breaks in time: a band across the diagram and the length of the pause.
    for y0, y1, dt in lay.gaps:
        top, bot = y0 + 6, y1 - 14
        mid = (top + bot) / 2
        out.append(f'<g class="gap" data-seconds="{dt:.9g}"><rect x="{_AXIS_X - 44:.0f}" y="{top:.1f}" '
                   f'width="{_W - _AXIS_X + 34:.0f}" height="{bot - top:.1f}" fill="#f1f1f1"/>'
                   f'<text x="{(_XL + _XR) / 2:.1f}" y="{mid + 4:.1f}" class="gap-text" text-anchor="middle">'
                   f'⋯ {_esc(_fmt_dur(dt))} pass ⋯</text></g>')

    # Lifelines, broken at every gap.
    for x in xs:
        y = 64.0
        for y0, y1, _ in lay.gaps:
            mid = (y0 + 6 + y1 - 14) / 2
            out.append(f'<line x1="{x}" y1="{y:.1f}" x2="{x}" y2="{mid - 7:.1f}" class="lifeline"/>')
            for dy in (-7, 3):
                out.append(f'<line x1="{x - 7}" y1="{mid + dy + 4:.1f}" x2="{x + 7}" y2="{mid + dy - 4:.1f}" '
                           'class="break"/>')
            y = mid + 7
        out.append(f'<line x1="{x}" y1="{y:.1f}" x2="{x}" y2="{end_y:.1f}" class="lifeline"/>')

    # Time labels.
    out.append(f'<text x="{_AXIS_X}" y="78" class="axis-title" text-anchor="end">time (s)</text>')
    for y, t in lay.ticks:
        out.append(f'<text x="{_AXIS_X}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
                   f"{_fmt_t(t, decimals)}</text>")

    # Host headers.
    for col, x in enumerate(xs):
        addr = ", ".join(addrs[col]) or "address unknown"
        out.append(f'<g class="host" data-host="{_esc(names[col])}">'
                   f'<rect x="{x - 96}" y="8" width="192" height="50" rx="6" fill="#f4f6fb" '
                   'stroke="#8a94a8"/>'
                   f'<text x="{x}" y="29" class="host-name" text-anchor="middle">{_esc(names[col])}</text>'
                   f'<text x="{x}" y="48" class="host-addr" text-anchor="middle">{_esc(addr)}</text></g>')

    # State labels and notes, beside each column (outside the lifelines).
    for ev in events:
        if ev.kind not in ("state", "note"):
            continue
        x = xs[ev.col]
        sign = -1 if ev.col == 0 else 1
        anchor = "end" if ev.col == 0 else "start"
        tx = x + sign * 12
        if ev.kind == "state":
            colour = _STATE_COLOURS.get(ev.state.rstrip("?"), "#333333")  # an inferred state: as the real one
            out.append(
                f'<g class="state" data-state="{_esc(ev.state)}" data-host="{_esc(ev.host)}" '
                f'data-t="{ev.t:.9g}">'
                f'<title>{_esc(ev.host)} enters {_esc(ev.state)} at {ev.t:.6f} s: {_esc(ev.sub)}</title>'
                f'<line x1="{x - 5}" y1="{ev.y:.1f}" x2="{x + 5}" y2="{ev.y:.1f}" stroke="{colour}" '
                f'stroke-width="3"/>'
                f'<text x="{tx}" y="{ev.y + 4:.1f}" class="state-name" fill="{colour}" '
                f'text-anchor="{anchor}">'
                f'{_esc(ev.state)}</text>'
                f'<text x="{tx}" y="{ev.y + 17:.1f}" class="state-why" text-anchor="{anchor}">'
                f"{_esc(ev.sub)}</text>"
                "</g>")
        else:
            short = ev.text if len(ev.text) <= 30 else ev.text[:29] + "…"
            out.append(f'<g class="note" data-host="{_esc(ev.host)}" data-t="{ev.t:.9g}">'
                       f'<title>{_esc(ev.text)} ({_esc(ev.sub or ev.host)}) at {ev.t:.6f} s</title>'
                       f'<text x="{tx}" y="{ev.y + 4:.1f}" class="note-text" text-anchor="{anchor}">'
                       f'{_esc(short)}</text></g>')

    # The arrows, each label placed where it touches nothing else.
    geoms = [_geometry(a) for a in arrows]
    obstacles = [b for a, g in zip(arrows, geoms, strict=True) for b in _fate_boxes(a, g)]
    for y0, y1, _ in lay.gaps:
        mid = (y0 + 6 + y1 - 14) / 2
        obstacles.append(_flat_box((_XL + _XR) / 2 - 70, mid - 10, (_XL + _XR) / 2 + 70, mid + 8))
    _place_labels(geoms, obstacles)
    for a, g in zip(arrows, geoms, strict=True):
        out.append(_arrow_svg(a, g, names))
    out.append("</svg>")
    return "\n".join(out)


@dataclass(slots=True)
class _Box:
    """A rectangle in a rotated frame: origin ``(ox, oy)``, unit ``e`` along, unit ``n`` across;
    it covers ``s0..s1`` along and ``p0..p1`` across."""

    ox: float
    oy: float
    ex: float
    ey: float
    nx: float
    ny: float
    s0: float
    s1: float
    p0: float
    p1: float

    def corners(self) -> list[tuple[float, float]]:
        return [(self.ox + s * self.ex + p * self.nx, self.oy + s * self.ey + p * self.ny)
                for s in (self.s0, self.s1) for p in (self.p0, self.p1)]

    def y_range(self) -> tuple[float, float]:
        ys = [y for _, y in self.corners()]
        return min(ys), max(ys)

    def _frame(self, x: float, y: float) -> tuple[float, float]:
        dx, dy = x - self.ox, y - self.oy
        return dx * self.ex + dy * self.ey, dx * self.nx + dy * self.ny

    def crosses(self, x0: float, y0: float, x1: float, y1: float, margin: float = 1.5) -> bool:
        """Does the segment from (x0, y0) to (x1, y1) pass within ``margin`` of the box?
        (Liang–Barsky clipping in the box's own frame.)"""
        a_s, a_p = self._frame(x0, y0)
        b_s, b_p = self._frame(x1, y1)
        lo, hi = 0.0, 1.0
        for start, delta, low, high in ((a_s, b_s - a_s, self.s0 - margin, self.s1 + margin),
                                        (a_p, b_p - a_p, self.p0 - margin, self.p1 + margin)):
            if delta == 0:
                if not low <= start <= high:
                    return False
                continue
            t0, t1 = (low - start) / delta, (high - start) / delta
            if t0 > t1:
                t0, t1 = t1, t0
            lo, hi = max(lo, t0), min(hi, t1)
            if lo > hi:
                return False
        return True

    def overlaps(self, other: _Box) -> bool:
        """Separating-axis test of two rotated rectangles."""
        for box, against in ((self, other), (other, self)):
            axes = ((box.ex, box.ey, box.s0, box.s1), (box.nx, box.ny, box.p0, box.p1))
            for axis_x, axis_y, low, high in axes:
                proj = [(x - box.ox) * axis_x + (y - box.oy) * axis_y for x, y in against.corners()]
                if max(proj) < low or min(proj) > high:
                    return False
        return True


def _flat_box(x0: float, y0: float, x1: float, y1: float) -> _Box:
    """An axis-aligned box from (x0, y0) to (x1, y1)."""
    return _Box(x0, y0, 1.0, 0.0, 0.0, 1.0, 0.0, x1 - x0, 0.0, y1 - y0)


@dataclass(slots=True)
class _Geom:
    """Where an arrow and its label are drawn."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    size: float
    tx: float = 0.0
    ty: float = 0.0
    angle: float = 0.0
    anchor: str = "start"
    dy: float = -5.0


_BIN = 64.0


class _Space:
    """The lines and boxes already drawn, binned by y so that a query looks only nearby."""

    __slots__ = ("bins", "items")

    def __init__(self) -> None:
        self.items: list[tuple[float, float, float, float] | _Box] = []
        self.bins: dict[int, list[int]] = {}

    def add(self, item: tuple[float, float, float, float] | _Box) -> int:
        if isinstance(item, _Box):
            top, bottom = item.y_range()
        else:
            top, bottom = min(item[1], item[3]), max(item[1], item[3])
        n = len(self.items)
        self.items.append(item)
        for b in range(math.floor(top / _BIN), math.floor(bottom / _BIN) + 1):
            self.bins.setdefault(b, []).append(n)
        return n

    def hits(self, box: _Box, skip: int) -> int:
        top, bottom = box.y_range()
        seen = {skip}
        count = 0
        for b in range(math.floor((top - 2) / _BIN), math.floor((bottom + 2) / _BIN) + 1):
            for n in self.bins.get(b, ()):
                if n in seen:
                    continue
                seen.add(n)
                item = self.items[n]
                if item.overlaps(box) if isinstance(item, _Box) else box.crosses(*item):
                    count += 1
        return count


# Where a label may go, in order of preference: (along the arrow, above it?).
_PLACES = (("receiver", True), ("sender", True), ("middle", True),
           ("receiver", False), ("sender", False), ("middle", False))


def _place_labels(geoms: list[_Geom], obstacles: list[_Box]) -> None:
    """Put each arrow's label along it, above or below, next to its receiving end, its sending end
    or in its middle: the first of these places that touches no other arrow and no label placed
    before (or the least crowded one). Near the receiver first: a reply leaves from the point
    where the segment that caused it arrived, so the sending end of most arrows is a crowded
    vertex, while above the receiving end there is the open wedge between a request and its
    answer."""
    space = _Space()
    ids = [space.add((g.x0, g.y0, g.x1, g.y1)) for g in geoms]
    for box in obstacles:
        space.add(box)
    for i, g in enumerate(geoms):
        left_end = (g.x0, g.y0) if g.x0 <= g.x1 else (g.x1, g.y1)
        right_end = (g.x1, g.y1) if g.x0 <= g.x1 else (g.x0, g.y0)
        lx, ly = left_end
        length = math.hypot(right_end[0] - lx, right_end[1] - ly) or 1.0
        ex, ey = (right_end[0] - lx) / length, (right_end[1] - ly) / length
        nx, ny = ey, -ex  # "up" from the line
        width = len(g.label) * _EM_PER_CHAR * g.size
        sender_left = g.x0 <= g.x1
        best: tuple[int, _Box, str, bool] | None = None
        for where, above in _PLACES:
            at = where if where == "middle" else ("right" if (where == "receiver") == sender_left else "left")
            if at == "right":
                s0, s1 = length - 14 - width, length - 14
            elif at == "left":
                s0, s1 = 14.0, 14 + width
            else:
                s0, s1 = (length - width) / 2, (length + width) / 2
            p0, p1 = (2.0, 4.0 + 0.8 * g.size) if above else (-4.0 - 0.9 * g.size, -2.0)
            box = _Box(lx, ly, ex, ey, nx, ny, s0, s1, p0, p1)
            hits = space.hits(box, ids[i])
            if best is None or hits < best[0]:
                best = (hits, box, at, above)
            if hits == 0:
                break
        assert best is not None
        _, box, at, above = best
        space.add(box)
        s = {"right": length - 14, "left": 14.0}.get(at, length / 2)
        g.tx, g.ty = lx + s * ex, ly + s * ey
        g.angle = math.degrees(math.atan2(ey, ex))
        g.anchor = {"right": "end", "left": "start"}.get(at, "middle")
        g.dy = -5.0 if above else round(0.8 * g.size + 3, 1)


def _geometry(a: _Drawn) -> _Geom:
    xs = (_XL, _XR)
    seg = a.m.packet.seg
    x0, y0 = xs[a.src_col], a.y0
    x1, y1 = xs[a.dst_col], a.y1
    if a.status != "delivered":  # stop half-way
        x1, y1 = (x0 + x1) / 2, (y0 + y1) / 2
    label = _label(seg.flags, a.m.seq, a.m.ack, len(seg.payload))
    extra = []
    if a.m.retransmission:
        extra.append("retransmission")
    if a.m.copy:
        extra.append(f"duplicate #{a.m.copy}")
    if extra:
        label += " (" + ", ".join(extra) + ")"
    room = math.hypot(x1 - x0, y1 - y0) - 28 if a.status != "delivered" else abs(_XR - _XL) / 2 - 22
    return _Geom(x0, y0, x1, y1, label, _fit_font(label, room))


def _fate_text(a: _Drawn) -> str:
    if a.status == "lost":
        return f"lost ({a.m.reason})" if a.m.reason else "lost"
    if a.status == "in-flight":
        return "still in flight when the trace ends"
    return ""


def _fate_boxes(a: _Drawn, g: _Geom) -> list[_Box]:
    """Where the texts at an arrow's end go (lost, in flight, discarded), so labels avoid them."""
    out = []
    text = _fate_text(a)
    if text:
        w = len(text) * 0.6 * 11.5
        if g.x0 < g.x1:
            out.append(_flat_box(g.x1 - 8, g.y1 - 10, g.x1 + 12 + w, g.y1 + 8))
        else:
            out.append(_flat_box(g.x1 - 12 - w, g.y1 - 10, g.x1 + 8, g.y1 + 8))
    if a.m.discarded:
        w = (len(a.m.discarded) + 11) * 0.6 * 11.5
        if g.x0 < g.x1:
            out.append(_flat_box(g.x1 - 14 - w, g.y1 + 5, g.x1 - 14, g.y1 + 19))
        else:
            out.append(_flat_box(g.x1 + 14, g.y1 + 5, g.x1 + 14 + w, g.y1 + 19))
    return out


def _arrow_svg(a: _Drawn, g: _Geom, names: tuple[str, str]) -> str:
    pkt = a.m.packet
    seg = pkt.seg
    kind = _kind(pkt)
    colour = _KIND_COLOURS[kind]
    attrs = {
        "class": "segment", "tabindex": "0", "data-i": str(a.m.index), "data-src": names[a.src_col],
        "data-dst": names[a.dst_col], "data-flags": format_flags(seg.flags), "data-seq": str(seg.seq),
        "data-ack": "" if seg.ack is None else str(seg.ack), "data-len": str(len(seg.payload)),
        "data-fate": a.status, "data-reason": a.m.reason, "data-t": f"{a.m.sent:.9g}",
        "data-t-end": f"{a.end_t:.9g}", "data-kind": kind,
    }
    if a.m.retransmission:
        attrs["data-retransmission"] = "1"
    if a.m.copy:
        attrs["data-copy"] = str(a.m.copy)
    if a.m.discarded:
        attrs["data-discarded"] = a.m.discarded
    head = " ".join(f'{k}="{_esc(v)}"' for k, v in attrs.items())
    lost = a.status != "delivered"
    dash = ' stroke-dasharray="7 4"' if lost else ""
    marker = "" if lost else f' marker-end="url(#head-{kind})"'
    x0, y0, x1, y1 = g.x0, g.y0, g.x1, g.y1
    parts = [f"<g {head}>", f"<title>{_esc(a.m.sent)} s: {_esc(_summary(pkt))}</title>",
             f'<line x1="{x0}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" class="hit"/>',
             f'<line x1="{x0}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" class="wire" stroke="{colour}"{dash}'
             f"{marker}/>",
             f'<text class="seg-label" transform="translate({g.tx:.1f},{g.ty:.1f}) rotate({g.angle:.2f})" '
             f'x="0" y="{g.dy:g}" text-anchor="{g.anchor}" fill="{colour}" font-size="{g.size:g}">'
             f"{_esc(g.label)}</text>"]
    if a.status == "lost":
        parts.append(f'<path class="x-mark" d="M{x1 - 6:.1f},{y1 - 6:.1f} L{x1 + 6:.1f},{y1 + 6:.1f} '
                     f'M{x1 - 6:.1f},{y1 + 6:.1f} L{x1 + 6:.1f},{y1 - 6:.1f}"/>')
    text = _fate_text(a)
    if text:
        sign = 1 if x0 < x1 else -1
        parts.append(f'<text class="lost-label" x="{x1 + sign * 12:.1f}" y="{y1 + 4:.1f}" '
                     f'text-anchor="{"start" if sign > 0 else "end"}">{_esc(text)}</text>')
    discarded = a.m.discarded
    if discarded:
        sign = -1 if x0 < x1 else 1
        parts.append(f'<text class="lost-label" x="{x1 + sign * 14:.1f}" y="{y1 + 16:.1f}" '
                     f'text-anchor="{"end" if sign < 0 else "start"}">discarded: {_esc(discarded)}</text>')
    parts.append("</g>")
    return "".join(parts)


def _summary(pkt: IPPacket) -> str:
    try:
        return format_tcpdump(pkt)
    except (WireError, ValueError) as exc:  # pragma: no cover - a parsed packet always formats
        return f"unprintable segment: {exc}"


# ---------------------------------------------------------------------------------------------
# The detail panel and the table
# ---------------------------------------------------------------------------------------------


def _details(a: _Drawn, names: tuple[str, str], total: int, decimals: int) -> dict[str, object]:
    """Everything about one segment, as (field, value) rows for the detail panel."""
    m = a.m
    pkt = m.packet
    seg = pkt.seg
    rows: list[tuple[str, str]] = [
        ("from", f"{names[a.src_col]} {pkt.src} port {seg.src_port}"),
        ("to", f"{names[a.dst_col]} {pkt.dst} port {seg.dst_port}"),
        ("sent at", f"{_fmt_t(m.sent, decimals)} s"),
    ]
    if a.status == "delivered":
        rows.append(("arrived at", f"{_fmt_t(a.end_t, decimals)} s (after {_fmt_dur(a.end_t - m.sent)})"))
    elif a.status == "lost":
        when = m.end if m.end is not None else m.sent
        rows.append(("lost", f"at {_fmt_t(when, decimals)} s: {m.reason or 'unknown reason'}"))
    else:
        rows.append(("fate", "still in flight when the trace ends"))
    if m.held:
        rows.append(("held back", f"{_fmt_dur(m.held)} beyond the link's delay"))
    if a.m.corrupt:
        rows.append(("corrupted", a.m.corrupt))
    if a.m.discarded:
        rows.append(("discarded by the receiver", a.m.discarded))
    if a.m.retransmission:
        rows.append(("retransmission", "yes: the same sequence range was sent before"))
    if m.copy:
        rows.append(("duplicate", f"copy #{m.copy} made by the link"))
    rows.append(("flags", f"{format_flags(seg.flags) or 'none'} (0x{seg.flags:02x})"))
    rel = a.m.seq != seg.seq or (a.m.ack is not None and a.m.ack != seg.ack)
    rows.append(("sequence number", f"{seg.seq}" + (f" (relative {a.m.seq})" if rel else "")))
    if seg.ack is not None:
        rows.append(("acknowledgment number", f"{seg.ack}" + (f" (relative {a.m.ack})" if rel else "")))
    else:
        rows.append(("acknowledgment number", f"none: ACK bit off (field holds {seg.raw_ack})"))
    rows.append(("SEG.LEN", f"{seg.seg_len} (payload {len(seg.payload)}"
                 + (" + SYN" if seg.flags & SYN else "") + (" + FIN" if seg.flags & FIN else "") + ")"))
    rows.append(("window", f"{seg.window}"))
    rows.append(("header length", f"{seg.header_len} bytes (data offset {seg.header_len // 4})"))
    rows.append(("urgent pointer", f"{seg.urg}"))
    if seg.reserved:
        rows.append(("reserved bits", f"0x{seg.reserved:x} (should be zero)"))
    opts = [format_option(o, "long") for o in seg.options]
    rows.append(("options", "\n".join(opts) if opts else "none"))
    rows.append(("payload length", f"{len(seg.payload)} bytes"))
    rows.append(("payload", _payload_preview(seg.payload)))
    rows.append(("checksum", _checksum_text(seg.checksum, a.m.raw)))
    if pkt.version == 4:
        ip = f"IPv4, TTL {pkt.ttl}, ID {pkt.ident}, " + ("DF" if pkt.frag & 0x4000 else "may fragment")
        if pkt.tos:
            ip += f", TOS 0x{pkt.tos:02x}"
    else:
        ip = f"IPv6, hop limit {pkt.ttl}, traffic class 0x{pkt.tos:02x}, flow label {pkt.flow}"
    rows.append(("IP", ip))
    rows.append(("packet size", f"{len(a.m.raw)} bytes" if a.m.raw else "unknown"))
    rows.append(("tcpdump", _summary(pkt)))
    label = _label(seg.flags, a.m.seq, a.m.ack, len(seg.payload))
    return {"title": f"#{a.m.index + 1} of {total}: {names[a.src_col]} → {names[a.dst_col]}  {label}",
            "rows": rows}


def _checksum_text(checksum: int | None, raw: bytes) -> str:
    if checksum is None:
        return "not recorded"
    text = f"0x{checksum:04x}"
    if not raw:
        return text
    try:
        parse_packet(raw, verify=True)
    except WireError as exc:
        return f"{text} (wrong: {exc.reason})"
    return f"{text} (correct)"


def _table(arrows: list[_Drawn], names: tuple[str, str], decimals: int) -> str:
    out = ['<table class="segments"><thead><tr><th>#</th><th>sent (s)</th><th>from → to</th><th>flags</th>'
           "<th>seq</th><th>ack</th><th>len</th><th>win</th><th>options</th><th>fate</th></tr></thead><tbody>"]
    for a in arrows:
        seg = a.m.packet.seg
        opts = ", ".join(s for s in (format_option(o, "short") for o in seg.options) if s)
        if a.status == "delivered":
            fate = f"arrived {_fmt_t(a.end_t, decimals)}"
        elif a.status == "lost":
            fate = f"✗ lost ({a.m.reason})"
        else:
            fate = "in flight"
        if a.m.discarded:
            fate += f", discarded: {a.m.discarded}"
        notes = []
        if a.m.retransmission:
            notes.append("retransmission")
        if a.m.copy:
            notes.append(f"duplicate #{a.m.copy}")
        flags = format_flags(seg.flags) or "none"
        if notes:
            flags += " (" + ", ".join(notes) + ")"
        cls = "segrow" + ("" if a.status == "delivered" else " lost")
        out.append(
            f'<tr class="{cls}" data-i="{a.m.index}" tabindex="0"><td>{a.m.index + 1}</td>'
            f"<td>{_fmt_t(a.m.sent, decimals)}</td>"
            f"<td>{_esc(names[a.src_col])} → {_esc(names[a.dst_col])}</td>"
            f'<td class="k-{_kind(a.m.packet)}">{_esc(flags)}</td><td>{a.m.seq}</td>'
            f"<td>{'' if a.m.ack is None else a.m.ack}</td><td>{len(seg.payload)}</td><td>{seg.window}</td>"
            f"<td>{_esc(opts)}</td><td>{_esc(fate)}</td></tr>")
    if not arrows:
        out.append('<tr><td colspan="10">no segments between these hosts</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { font-family: "Segoe UI", Helvetica, Arial, "DejaVu Sans", sans-serif; color: #1d2330;
  background: #fbfbfc; margin: 0; padding: 14px 18px 40px; line-height: 1.4; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
.sub { color: #4b5563; margin: 0 0 6px; font-size: 14px; }
.legend { font-size: 13px; color: #4b5563; margin: 0 0 8px; }
.legend span { margin-right: 14px; white-space: nowrap; }
.layout { display: flex; gap: 14px; align-items: flex-start; }
.diagram { flex: 1 1 auto; min-width: 0; background: #fff; border: 1px solid #dde1e8; border-radius: 6px; }
.diagram svg { display: block; width: 100%; max-width: 880px; height: auto; }
.detail { flex: 0 0 290px; position: sticky; top: 10px; max-height: calc(100vh - 20px); overflow: auto;
  background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 10px 12px; font-size: 12.5px; }
.detail h2 { margin: 0 0 6px; font-size: 14px; }
.detail .hint { color: #6b7280; margin: 0; }
.detail table { border-collapse: collapse; width: 100%; }
.detail th { text-align: left; vertical-align: top; color: #4b5563; font-weight: 600; padding: 2px 8px 2px 0;
  width: 38%; }
.detail td { white-space: pre-wrap; word-break: break-word; padding: 2px 0;
  font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 11.5px; }
.scale-note { font-size: 12.5px; color: #6b7280; margin: 6px 2px 0; }
.explanation { max-width: 880px; font-size: 15px; }
table.segments { border-collapse: collapse; font-size: 12.5px; background: #fff; }
table.segments th, table.segments td { border-bottom: 1px solid #e5e7eb; padding: 3px 8px; text-align: left; }
table.segments th { background: #f3f4f6; }
table.segments tr.lost td { color: #b91c1c; }
table.segments tr.sel td, table.segments tr:hover td { background: #fff7d6; cursor: pointer; }
#summary { font-size: 11px; color: #6b7280; background: #f3f4f6; padding: 6px 8px; border-radius: 4px; }
.k-syn { color: #1f5fbf; } .k-fin { color: #a85000; } .k-rst { color: #c0392b; } .k-data { color: #1e7b34; }
svg text { font-family: "Helvetica Neue", Helvetica, Arial, "DejaVu Sans Condensed", sans-serif; }
svg .lifeline { stroke: #9aa3b2; stroke-width: 2; }
svg .break { stroke: #6b7280; stroke-width: 2; }
svg .host-name { font-size: 15px; font-weight: bold; fill: #1d2330; }
svg .host-addr { font-size: 12px; fill: #4b5563; }
svg .tick { font-size: 10.5px; fill: #6b7280; }
svg .axis-title { font-size: 10.5px; fill: #6b7280; font-style: italic; }
svg .gap-text { font-size: 12px; fill: #6b7280; font-style: italic; }
svg .state-name { font-size: 12px; font-weight: bold; }
svg .state-why { font-size: 10px; fill: #6b7280; }
svg .note-text { font-size: 10.5px; fill: #6b7280; font-style: italic; }
svg .segment { cursor: pointer; outline: none; }
svg .segment .wire { stroke-width: 1.6; }
svg .segment .hit { stroke: transparent; stroke-width: 14; }
svg .segment:hover .wire, svg .segment:focus .wire, svg .segment.sel .wire { stroke-width: 3.2; }
svg .segment.sel .seg-label, svg .segment:hover .seg-label { font-weight: bold; }
svg .x-mark { stroke: #d00000; stroke-width: 3; fill: none; }
svg .lost-label { font-size: 11.5px; fill: #c00000; font-weight: bold; }
"""

_JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("segment-data").textContent);
  var body = document.getElementById("detail-body");
  var title = document.getElementById("detail-title");
  var hint = document.getElementById("detail-hint");
  var svg = document.getElementById("ladder");
  var arrows = Array.prototype.slice.call(svg.querySelectorAll(".segment"));
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.segrow"));
  var pinned = -1;
  function show(i) {
    var d = data[i];
    if (!d) { return; }
    title.textContent = d.title;
    hint.textContent = pinned === i ? "pinned: click the arrow again to unpin" : "click to pin";
    while (body.firstChild) { body.removeChild(body.firstChild); }
    d.rows.forEach(function (r) {
      var tr = document.createElement("tr");
      var th = document.createElement("th");
      var td = document.createElement("td");
      th.textContent = r[0];
      td.textContent = r[1];
      tr.appendChild(th);
      tr.appendChild(td);
      body.appendChild(tr);
    });
    arrows.forEach(function (a) { a.classList.toggle("sel", a.getAttribute("data-i") === String(i)); });
    rows.forEach(function (r) { r.classList.toggle("sel", r.getAttribute("data-i") === String(i)); });
  }
  function pin(i) { pinned = pinned === i ? -1 : i; show(i); }
  arrows.forEach(function (a) {
    var i = Number(a.getAttribute("data-i"));
    a.addEventListener("mouseenter", function () { if (pinned < 0) { show(i); } });
    a.addEventListener("focus", function () { show(i); });
    a.addEventListener("click", function () { pin(i); });
  });
  rows.forEach(function (r) {
    var i = Number(r.getAttribute("data-i"));
    r.addEventListener("mouseenter", function () { if (pinned < 0) { show(i); } });
    r.addEventListener("click", function () {
      pin(i);
      var a = arrows[i];
      if (a && a.scrollIntoView) { a.scrollIntoView({block: "center"}); }
    });
  });
  // "page.html#seg-6" opens with segment 6 shown and pinned.
  var wanted = /^#seg-(\\d+)$/.exec(window.location.hash);
  if (wanted && data[Number(wanted[1]) - 1]) { pin(Number(wanted[1]) - 1); }
  // A summary computed from the SVG itself, for people and for tests run in a real browser.
  var hosts = (svg.getAttribute("data-hosts") || "").split(" ");
  var lines = ["segments=" + arrows.length +
    " lost=" + svg.querySelectorAll('.segment[data-fate="lost"]').length +
    " in-flight=" + svg.querySelectorAll('.segment[data-fate="in-flight"]').length +
    " states=" + svg.querySelectorAll(".state").length + " rows=" + rows.length];
  hosts.forEach(function (h) {
    var names = [];
    svg.querySelectorAll(".state").forEach(function (s) {
      if (s.getAttribute("data-host") === h) { names.push(s.getAttribute("data-state")); }
    });
    lines.push("states[" + h + "]=" + names.join(","));
  });
  document.getElementById("summary").textContent = lines.join("\\n");
})();
"""


def render_html(trace: Trace, left: str, right: str, *, title: str, explanation: str = "",
                relative: bool = False) -> str:
    """A self-contained HTML page with the ladder diagram of the segments between hosts ``left``
    and ``right`` of a trace (names as given to :meth:`~synack.sim.Network.add_host`):
    :func:`ladder_html` of :func:`~synack.diagram.build_ladder`. ``relative``: label sequence and
    acknowledgment numbers relative to the ISN of their connection (as the RFC figures do);
    otherwise absolute."""
    if left == right:
        raise ValueError("left and right must be two different hosts")
    return ladder_html(build_ladder(trace.records, left, right, relative=relative), title=title,
                       explanation=explanation)


def ladder_html(ladder: Ladder, *, title: str, explanation: str = "") -> str:
    """A self-contained HTML page with the ladder's diagram, the ends' states, a detail panel,
    ``explanation`` (plain text; blank lines separate paragraphs) and a table of the segments.
    The page loads nothing from anywhere."""
    left, right = names = ladder.ends
    arrows, events = _arrows_and_events(ladder)
    lay, unit = _layout(arrows, events)
    addrs = ladder.addresses
    decimals = max(3, min(9, math.ceil(-math.log10(unit)) + 1)) if unit > 0 else 3
    svg = _svg(arrows, events, lay, names, addrs, decimals)
    details = [_details(a, names, len(arrows), decimals) for a in arrows]
    # JSON inside <script>: no "<" at all, so "</script>" cannot end it early.
    blob = json.dumps(details, ensure_ascii=False).replace("<", "\\u003c")
    lost = sum(a.status == "lost" for a in arrows)
    numbers = "relative to each side's first sequence number" if ladder.relative else "absolute"
    sub = (f"{_esc(left)} ({_esc(', '.join(addrs[0]) or '?')}) ⇄ {_esc(right)} "
           f"({_esc(', '.join(addrs[1]) or '?')}) · {len(arrows)} segments, {lost} lost · "
           f"{_esc(_fmt_dur(ladder.end_time))} of virtual time · sequence numbers {numbers}")
    legend = ("<span class='k-syn'>━ SYN</span><span class='k-data'>━ data</span>"
              "<span>━ ACK</span><span class='k-fin'>━ FIN</span><span class='k-rst'>━ RST</span>"
              "<span style='color:#c00000'>╌ ✗ lost</span>"
              "<span>states: <b style='color:#1f5fbf'>opening</b> <b style='color:#1e7b34'>ESTABLISHED</b> "
              "<b style='color:#a85000'>closing</b> <b style='color:#7b3fa0'>TIME-WAIT</b></span>")
    if any(a.status == "delivered" and a.end_t > a.m.sent for a in arrows):
        unit_text = f"one typical one-way delay ({_esc(_fmt_dur(unit))})"
    else:
        unit_text = f"{_esc(_fmt_dur(unit))} (no segment here took any time to arrive)"
    scale = (f"Time flows down. Within a burst {UNIT_PX:.0f} px is {unit_text}, so each arrow's slant "
             f"shows its delay; a pause longer than {GAP_UNITS:g} times that is cut short and marked with "
             "its length; segments sent at the same instant are spread apart so every label can be read.")
    paragraphs = [p.strip() for p in explanation.split("\n\n") if p.strip()]
    expl = "".join(f"<p>{_esc(p)}</p>" for p in paragraphs) or "<p>(no explanation given)</p>"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{_esc(title)}</h1><p class='sub'>{sub}</p><p class='legend'>{legend}</p></header>",
        '<main class="layout"><div class="diagram">',
        svg,
        "</div>",
        '<aside class="detail" aria-live="polite"><h2 id="detail-title">Segment details</h2>'
        '<p class="hint" id="detail-hint">Hover over an arrow or a table row to see every field; '
        'click to keep it (or open the page as <code>…#seg-N</code>).</p>'
        '<table><tbody id="detail-body"></tbody></table></aside></main>',
        f'<p class="scale-note">{scale}</p>',
        f'<section class="explanation"><h2>What happens</h2>{expl}</section>',
        f"<section><h2>All segments</h2>{_table(arrows, names, decimals)}</section>",
        '<footer><h2>Summary</h2><pre id="summary">the page script has not run</pre></footer>',
        f'<script type="application/json" id="segment-data">{blob}</script>',
        f"<script>{_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
