"""The ladder diagram of an exchange between two TCP ends: one model, built from records, that
every formatter draws — the text figure of :mod:`synack.render` and the SVG page of
:mod:`synack.htmlview` — so that they cannot disagree about what happened.

A ladder has two columns, ``left`` (TCP A) and ``right`` (TCP B), and three things between them:

* **arrows** (:class:`SegmentArrow`): every copy of every packet between the two ends, in the order
  sent, with its sender, receiver, send time, fate (delivered, lost and why, still in flight), what
  it is (``(old duplicate)``, ``(copy)``, a retransmission) and its sequence and acknowledgment
  numbers as they are to be shown (relative or absolute, :class:`~synack.core.wire.RelativeSeq`);
* **lines** (:class:`LadderLine`): the numbered lines of RFC 9293 §3.5's figures (RFC 793 §3.4,
  seed 003). A line is a segment leaving, arriving, or both at once, a state change with no
  segment, a crash, or an unnumbered comment; it carries the state of each end shown on it *after*
  its event (:class:`StateMark`), the user calls and timers that came before it, and what the
  receiver did with a segment it could not accept (notes below the line);
* **events** (:class:`EndEvent`): everything else that happened at one end, in input order, for a
  formatter that places each fact at its own moment (state changes, timers, listeners, crashes).

Which lines there are is decided here, not by a formatter. Every packet is sent once and
delivered at most once. A departure and its arrival share one line when nothing happened at the
receiver while the segment was in the network (or nothing at the sender, which lets the line sit
at the arrival); otherwise the segment gets two lines, one leaving and one arriving, as the RFC
draws the crossing SYNs of a simultaneous open (Figure 7) and the delayed SYN of Figure 8.
Formally, every line is a node of a graph whose edges are the order of events at each end, each
departure before its arrival, and display time (a line is shown at its departure time); a merge is
kept when the graph stays acyclic, tried in the order the segments were sent, and the lines are
ordered topologically by time, following the input where there is a choice.

The model depends on nothing but the records: the typed records of the core
(:mod:`synack.core.records`), the network's :class:`~synack.trace.PacketRecord` and
:class:`~synack.trace.NoteRecord`, and :class:`ObservedState`. A simulation gives all of them. A
packet capture gives packets at one point and states an observer inferred, which may be uncertain
(``StateMark(uncertain=True)``, drawn ``SYN-SENT?``). A scripted peer (packetdrill) has no TCP
states at all: name it in ``untracked`` and its column stays blank where the records say nothing.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from synack.core.records import (
    Call,
    ConnKey,
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
from synack.core.wire import ACK, FIN, RST, SYN, IPPacket, RelativeSeq, WireError, direction_of, parse_packet
from synack.trace import NoteRecord, PacketRecord, Record

__all__ = [
    "Aftermath",
    "ArrowFate",
    "Change",
    "EndEvent",
    "Ladder",
    "LadderLine",
    "LadderRecord",
    "LineKind",
    "ObservedState",
    "Remark",
    "Role",
    "SegmentArrow",
    "StateMark",
    "build_ladder",
]


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateMark:
    """The state of one end as a ladder shows it: ``state`` is an RFC 9293 §3.3.2 state name
    (``""``: unknown, drawn blank); ``uncertain`` says it was inferred from packets rather than
    reported by the TCP itself, drawn with a question mark (``SYN-SENT?``)."""

    state: str = ""
    uncertain: bool = False

    @property
    def known(self) -> bool:
        """Whether the state is known at all (an unknown one is drawn blank)."""
        return bool(self.state)

    def __str__(self) -> str:
        if not self.state:
            return ""
        return self.state + "?" if self.uncertain else self.state


UNKNOWN: Final = StateMark()
_CLOSED: Final = StateMark("CLOSED")
_LISTEN: Final = StateMark("LISTEN")


@dataclass(frozen=True, slots=True)
class ObservedState:
    """A record for a source that infers states instead of being told them — a capture, where an
    observer guesses from the packets it saw that ``host``'s connection ``conn`` is in ``state``
    (an RFC 9293 state name) from time ``t`` on; ``uncertain`` unless it could not be otherwise."""

    kind: ClassVar[str] = "observed"
    t: float
    host: str
    conn: ConnKey
    state: str
    uncertain: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "conn": list(self.conn),
                "state": self.state, "uncertain": self.uncertain}


LadderRecord = Record | ObservedState
"""What :func:`build_ladder` reads; any other record is ignored."""
Change = StateRecord | ObservedState
"""A state change: reported by a TCP (with its transition) or inferred by an observer."""
Remark = UserCallRecord | TimerRecord
"""What an end did before a line's event: a user call (CLOSE, ABORT) or a timer that fired."""
Aftermath = DropRecord | ResetRecord | TimerRecord
"""What the receiver did with a segment on the line it arrived on: discarded it, answered it with
a RST for no connection, or (a retransmitted FIN in TIME-WAIT) restarted its 2 MSL timer."""


class Role(enum.Enum):
    """What a line shows of its segment."""

    SEND = "send"  # it leaves and is still in the network:  -->  <SEG>  ...
    ARRIVE = "arrive"  # it arrives, drawn leaving on an earlier line:  ...  <SEG>  -->
    BOTH = "both"  # it leaves and arrives:  -->  <SEG>  -->
    LOST = "lost"  # it leaves and never arrives:  -->  <SEG>  ...  (lost)


class LineKind(enum.Enum):
    """What a line is about."""

    START = "start"  # both ends' states before the first event
    SEGMENT = "segment"  # a segment leaving, arriving, or both (see ``role``)
    STATE = "state"  # one end changed state without a segment on the line
    REMARK = "remark"  # one end's user calls or timers, and nothing else
    CRASH = "crash"  # one end crashed: every connection forgotten
    RESTART = "restart"  # one end came back
    COMMENT = "comment"  # not numbered: a scenario's words, a partition, a heal


class ArrowFate(enum.Enum):
    """What became of a packet copy."""

    DELIVERED = "delivered"
    LOST = "lost"
    IN_FLIGHT = "in-flight"  # the records end first


@dataclass(frozen=True, slots=True)
class SegmentArrow:
    """One copy of one packet between the two ends. ``index`` counts the arrows from 0 in the
    order they were sent; ``sent_order`` and ``end_order`` are the positions in the input of the
    departure and of the arrival (None unless delivered), for formatters that interleave arrows
    with events. ``end`` is when the copy arrived or was dropped (None in flight). ``seq`` and
    ``ack`` are the numbers to show (relative when the ladder is). ``label`` is what the sender's
    column says instead of a state for a copy its TCP did not send: ``(copy)`` for a link's
    duplicate, an injected packet's own words such as ``(old duplicate)``. ``discarded`` is the
    receiver's reason for dropping it on arrival, ``corrupt`` what the link flipped, ``held`` the
    delay beyond the link's; ``dst`` is ``""`` when the packet had no route."""

    index: int
    src: str
    dst: str
    packet: IPPacket
    raw: bytes
    sent: float
    sent_order: int
    fate: ArrowFate
    end: float | None
    end_order: int | None
    seq: int
    ack: int | None
    reason: str = ""
    label: str = ""
    copy: int = 0
    held: float = 0.0
    corrupt: str = ""
    discarded: str = ""
    retransmission: bool = False


@dataclass(frozen=True, slots=True)
class LadderLine:
    """One line of the ladder, in display order. ``number`` counts the lines from 1 (None for a
    comment). ``ends`` are the ends the line is about. ``states`` maps each end whose state the
    line shows to its state after the line's event (blank when unknown). ``remarks`` are each
    end's user calls and timers that came before the event, ``changes`` its state changes on the
    line, ``aftermath`` what the receiver did with the segment, ``note`` the network's record
    behind a crash, restart or comment line."""

    kind: LineKind
    t: float
    number: int | None
    ends: tuple[str, ...]
    states: Mapping[str, StateMark]
    arrow: SegmentArrow | None = None
    role: Role | None = None
    remarks: Mapping[str, tuple[Remark, ...]] = field(default_factory=dict)
    changes: Mapping[str, tuple[Change, ...]] = field(default_factory=dict)
    aftermath: tuple[Aftermath, ...] = ()
    note: NoteRecord | None = None

    def state_of(self, end: str) -> StateMark:
        """The state shown for ``end`` on this line (blank when the line does not show it)."""
        return self.states.get(end, UNKNOWN)

    def remarks_of(self, end: str) -> tuple[Remark, ...]:
        return tuple(self.remarks.get(end, ()))

    def changes_of(self, end: str) -> tuple[Change, ...]:
        return tuple(self.changes.get(end, ()))


@dataclass(frozen=True, slots=True)
class EndEvent:
    """A fact at one end other than a segment, at input position ``order``: a state change, a
    timer or a user call on one of the ladder's connections, a listener opened or closed, a crash,
    a restart, a partition or heal of its link, a comment about it."""

    t: float
    order: int
    end: str
    record: StateRecord | ObservedState | TimerRecord | UserCallRecord | HostNote | NoteRecord


@dataclass(frozen=True, slots=True)
class Ladder:
    """The whole diagram. ``addresses`` are each end's IP addresses (as seen in its packets and
    its connections), ``connections`` each end's connections that the ladder follows: those whose
    peer is an address of the other end (all of them when the other's addresses are unknown).
    ``end_time`` is the time of the last record read."""

    left: str
    right: str
    relative: bool
    arrows: tuple[SegmentArrow, ...]
    lines: tuple[LadderLine, ...]
    events: tuple[EndEvent, ...]
    addresses: tuple[tuple[str, ...], tuple[str, ...]]
    connections: tuple[frozenset[ConnKey], frozenset[ConnKey]]
    end_time: float

    @property
    def ends(self) -> tuple[str, str]:
        return (self.left, self.right)

    def column(self, end: str) -> int:
        """0 for the left end, 1 for the right one."""
        return self.ends.index(end)


# ---------------------------------------------------------------------------------------------
# Pass 1: the arrows
# ---------------------------------------------------------------------------------------------

_FLAG_BITS: Final = SYN | FIN | RST | ACK
# A user call worth a comment in the ladder, as the RFC figures write "(Close)".
_REMARKED_CALLS: Final = frozenset((Call.CLOSE, Call.ABORT))


class _Arrow:
    """A :class:`SegmentArrow` while it is being built, with the lines that show it."""

    __slots__ = ("copy", "corrupt", "deliver", "discarded", "dst", "end", "end_order", "fate", "held",
                 "index", "label", "packet", "raw", "reason", "retransmission", "send", "sent",
                 "sent_order", "src")

    def __init__(self, index: int, rec: PacketRecord, order: int, packet: IPPacket, raw: bytes,
                 label: str) -> None:
        self.index = index
        self.src = rec.src
        self.dst = rec.dst
        self.copy = rec.copy
        self.sent = rec.t
        self.sent_order = order
        self.packet = packet
        self.raw = raw
        self.label = label
        self.fate = ArrowFate.IN_FLIGHT
        self.end: float | None = None
        self.end_order: int | None = None
        self.reason = ""
        self.held = 0.0
        self.corrupt = ""
        self.discarded = ""
        self.retransmission = False
        self.send: _Line | None = None
        self.deliver: _Line | None = None

    def freeze(self, numbers: RelativeSeq | None) -> SegmentArrow:
        seg = self.packet.seg
        seq, ack = (seg.seq, seg.ack) if numbers is None else numbers.numbers(self.packet)
        return SegmentArrow(self.index, self.src, self.dst, self.packet, self.raw, self.sent, self.sent_order,
                            self.fate, self.end, self.end_order, seq, ack, self.reason, self.label, self.copy,
                            self.held, self.corrupt, self.discarded, self.retransmission)


def _collect_arrows(records: Sequence[LadderRecord], ends: tuple[str, str]) -> dict[tuple[int, int], _Arrow]:
    """Every packet copy between the two ends (or from one of them with no route at all), by
    (pid, copy), in the order sent, with its fate. A packet put on the wire by hand follows an
    ``inject`` note from its sender, whose words label it."""
    arrows: dict[tuple[int, int], _Arrow] = {}
    injected: dict[str, str] = {}
    for i, rec in enumerate(records):
        if isinstance(rec, NoteRecord) and rec.kind == "inject":
            injected[rec.host] = rec.detail
        elif isinstance(rec, PacketRecord):
            key = (rec.pid, rec.copy)
            if rec.kind == "send":
                label = injected.pop(rec.src, "")
                if rec.src in ends and (rec.dst in ends or rec.dst == "") and rec.src != rec.dst:
                    try:
                        packet = parse_packet(rec.packet, verify=False)
                    except WireError:
                        continue
                    arrows[key] = _Arrow(len(arrows), rec, i, packet, rec.packet, label)
            elif rec.kind == "duplicate":
                original = arrows.get((rec.pid, 0))
                if original is not None:
                    arrows[key] = _Arrow(len(arrows), rec, i, original.packet, original.raw, "(copy)")
            elif (arrow := arrows.get(key)) is not None:
                _fate(arrow, rec, i)
    return arrows


def _routed(arrows: dict[tuple[int, int], _Arrow], ends: tuple[str, str],
            addresses: list[list[str]]) -> dict[tuple[int, int], _Arrow]:
    """The arrows without those that had no route to an address of the other end (kept when the
    other end's addresses are unknown), numbered again in the order sent."""
    kept: dict[tuple[int, int], _Arrow] = {}
    for key, a in arrows.items():
        other = addresses[1 - ends.index(a.src)]
        if a.dst == "" and other and a.packet.dst not in other:
            continue
        a.index = len(kept)
        kept[key] = a
    _mark_retransmissions(kept.values())
    return kept


def _fate(arrow: _Arrow, rec: PacketRecord, order: int) -> None:
    if rec.kind == "deliver":
        arrow.fate, arrow.end, arrow.end_order = ArrowFate.DELIVERED, rec.t, order
    elif rec.kind == "drop":
        arrow.fate, arrow.end, arrow.reason = ArrowFate.LOST, rec.t, rec.reason
    elif rec.kind == "hold":
        arrow.held += rec.extra
    elif rec.kind == "corrupt":
        arrow.corrupt = rec.reason


def _mark_retransmissions(arrows: Iterable[_Arrow]) -> None:
    """A segment that takes sequence space and repeats the range and control bits of one its
    sender sent before (a link's copy is not a retransmission)."""
    seen: set[tuple[str, int, str, int, int, int, int]] = set()
    for a in arrows:
        if a.copy:
            continue
        seg = a.packet.seg
        sent = (*direction_of(a.packet), seg.seq, seg.seg_len, seg.flags & _FLAG_BITS)
        a.retransmission = seg.seg_len > 0 and sent in seen
        seen.add(sent)


def _addresses(arrows: Iterable[_Arrow], changes: Sequence[Change], ends: tuple[str, str]) -> list[list[str]]:
    """Each end's addresses, in the order first seen: the source of what it sent, the destination
    of what reached it, the local address of its connections."""
    found: list[list[str]] = [[], []]
    for a in arrows:
        pkt = a.packet
        for end, addr in ((a.src, pkt.src), (a.dst, pkt.dst)):
            if end in ends and addr not in found[ends.index(end)]:
                found[ends.index(end)].append(addr)
    for rec in changes:
        col = ends.index(rec.host)
        if rec.conn[0] not in found[col]:
            found[col].append(rec.conn[0])
    return found


def _followed(changes: Sequence[Change], ends: tuple[str, str],
              addresses: list[list[str]]) -> list[set[ConnKey]]:
    """The connections of each end that the ladder follows (see :class:`Ladder`)."""
    out: list[set[ConnKey]] = [set(), set()]
    for rec in changes:
        col = ends.index(rec.host)
        other = addresses[1 - col]
        if not other or rec.conn[2] in other:
            out[col].add(rec.conn)
    return out


# ---------------------------------------------------------------------------------------------
# Pass 2: the lines
# ---------------------------------------------------------------------------------------------


class _Line:
    """One line while the ladder is built (before merging: one event at one end)."""

    __slots__ = ("arrow", "hosts", "kind", "note", "order", "post", "pre", "role", "state", "t", "trans")

    def __init__(self, kind: LineKind, order: int, t: float, hosts: Iterable[str]) -> None:
        self.kind = kind
        self.order = order
        self.t = t
        self.hosts = list(hosts)
        self.arrow: _Arrow | None = None
        self.role: Role | None = None
        self.pre: dict[str, list[Remark]] = {}
        self.post: list[Aftermath] = []
        self.state: dict[str, StateMark] = {}
        self.trans: dict[str, list[Change]] = {}
        self.note: NoteRecord | None = None


class _View:
    """What the ladder knows about one end: its connections' states and its listening ports, the
    arrival whose consequences are being gathered, and what waits for the end's next line."""

    __slots__ = ("attach", "listening", "pending_pre", "pending_t", "pending_trans", "table", "tracked")

    def __init__(self, tracked: bool) -> None:
        self.tracked = tracked
        self.table: dict[ConnKey, StateMark] = {}
        self.listening: set[int] = set()
        self.attach: tuple[_Line, ConnKey] | None = None
        self.pending_pre: list[Remark] = []
        self.pending_trans: list[Change] = []
        self.pending_t = 0.0  # when the first pending item happened

    def pend(self, t: float) -> None:
        if not self.pending_pre and not self.pending_trans:
            self.pending_t = t

    def lookup(self, key: ConnKey | None) -> StateMark:
        """The state of connection ``key`` (None: of the end as a whole, its latest live one)."""
        if key is not None:
            mark = self.table.get(key)
            if mark is not None:
                return mark
        else:
            live = [m for m in self.table.values() if m.state != "CLOSED"]
            if live:
                return live[-1]
        if not self.tracked:
            return UNKNOWN
        listening = key[1] in self.listening if key is not None else bool(self.listening)
        return _LISTEN if listening else _CLOSED


def _dst_key(p: IPPacket) -> ConnKey:
    return (p.dst, p.seg.dst_port, p.src, p.seg.src_port)


class _Builder:
    """Turn the records into lines, each with the states, remarks and aftermath it shows."""

    def __init__(self, ends: tuple[str, str], arrows: dict[tuple[int, int], _Arrow],
                 followed: list[set[ConnKey]], untracked: Collection[str]) -> None:
        self.ends = ends
        self.views = {name: _View(name not in untracked) for name in ends}
        self.arrows = arrows
        self.followed = dict(zip(ends, followed, strict=True))
        self.lines: list[_Line] = []
        self.started = False

    def run(self, records: Sequence[LadderRecord]) -> list[_Line]:
        for i, rec in enumerate(records):
            self.expire(i, rec.t)
            self.dispatch(i, rec)
        for name in self.ends:
            self.close_window(name)
            self.flush_pending(name, len(records), self.views[name].pending_t)
        return self.lines

    def dispatch(self, i: int, rec: LadderRecord) -> None:
        if isinstance(rec, PacketRecord):
            self.packet(i, rec)
        elif isinstance(rec, (StateRecord, ObservedState)):
            self.change(i, rec)
        elif isinstance(rec, UserCallRecord):
            if self.follows(rec.host, rec.conn) and rec.call in _REMARKED_CALLS:
                self.remark(rec.host, rec)
        elif isinstance(rec, TimerRecord):
            self.timer(rec)
        elif isinstance(rec, (DropRecord, ResetRecord)):
            self.aftermath(rec)
        elif isinstance(rec, HostNote):
            self.host_note(rec)
        elif isinstance(rec, NoteRecord):
            self.note(i, rec)

    def new(self, kind: LineKind, order: int, t: float, hosts: Iterable[str]) -> _Line:
        line = _Line(kind, order, t, hosts)
        self.lines.append(line)
        return line

    def start(self, t: float) -> None:
        if not self.started:
            self.started = True
            line = self.new(LineKind.START, -1, t, self.ends)
            for name, view in self.views.items():
                line.state[name] = view.lookup(None)

    def follows(self, host: str, conn: ConnKey) -> bool:
        return host in self.views and conn in self.followed[host]

    # -- windows: the consequences of an arrival, and what waits for the next line --------------

    def expire(self, order: int, t: float) -> None:
        """Time moved on: an arrival's consequences are complete, and remarks or state changes
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
            line = self.new(LineKind.STATE, order, t, (name,))
            line.trans[name] = view.pending_trans
            line.state[name] = view.lookup(view.pending_trans[-1].conn)
        else:
            line = self.new(LineKind.REMARK, order, t, (name,))
        line.pre[name] = view.pending_pre
        view.pending_pre = []
        view.pending_trans = []

    def remark(self, host: str, rec: Remark) -> None:
        self.start(rec.t)
        self.close_window(host)
        self.views[host].pend(rec.t)
        self.views[host].pending_pre.append(rec)

    # -- records about the ends -----------------------------------------------------------------

    def change(self, i: int, rec: Change) -> None:
        if not self.follows(rec.host, rec.conn):
            return
        self.start(rec.t)
        view = self.views[rec.host]
        if isinstance(rec, StateRecord):
            view.table[rec.conn] = StateMark(rec.new)
        else:
            view.table[rec.conn] = StateMark(rec.state, rec.uncertain)
        if view.attach is not None and view.attach[1] == rec.conn:
            view.attach[0].trans.setdefault(rec.host, []).append(rec)
            return
        self.close_window(rec.host)
        if view.pending_trans and view.pending_trans[-1].conn != rec.conn:
            self.flush_pending(rec.host, i, view.pending_t)
        view.pend(rec.t)
        view.pending_trans.append(rec)

    def timer(self, rec: TimerRecord) -> None:
        if not self.follows(rec.host, rec.conn):
            return
        view = self.views[rec.host]
        if rec.timer is Timer.TIME_WAIT and rec.action is TimerAction.RESTART and view.attach is not None:
            self.start(rec.t)
            view.attach[0].post.append(rec)  # a retransmitted FIN in TIME-WAIT, on its own line
            return
        self.remark(rec.host, rec)

    def aftermath(self, rec: DropRecord | ResetRecord) -> None:
        view = self.views.get(rec.host)
        if view is None or view.attach is None:
            return
        line = view.attach[0]
        line.post.append(rec)
        arrow = line.arrow
        if isinstance(rec, DropRecord) and arrow is not None and not arrow.discarded:
            arrow.discarded = rec.text

    def host_note(self, rec: HostNote) -> None:
        view = self.views.get(rec.host)
        if view is not None:
            if rec.note is Note.LISTEN:
                view.listening.add(rec.port)
            else:
                view.listening.discard(rec.port)

    def note(self, i: int, rec: NoteRecord) -> None:
        kind = rec.kind
        if kind in ("crash", "restart") and rec.host in self.views:
            self.start(rec.t)
            self.close_window(rec.host)
            self.flush_pending(rec.host, i, self.views[rec.host].pending_t)
            view = self.views[rec.host]
            if kind == "crash":
                view.table.clear()
                view.listening.clear()
            line = self.new(LineKind.CRASH if kind == "crash" else LineKind.RESTART, i, rec.t, (rec.host,))
            line.note = rec
        elif kind == "comment" or (kind in ("partition", "heal") and rec.host in self.views):
            self.start(rec.t)
            hosts = (rec.host,) if rec.host in self.views and kind == "comment" else self.ends
            for name in hosts:
                self.close_window(name)
                self.flush_pending(name, i, self.views[name].pending_t)
            line = self.new(LineKind.COMMENT, i, rec.t, hosts)
            line.note = rec

    # -- segments -------------------------------------------------------------------------------

    def packet(self, i: int, rec: PacketRecord) -> None:
        arrow = self.arrows.get((rec.pid, rec.copy))
        if arrow is None:
            return
        if rec.kind in ("send", "duplicate"):
            self.start(rec.t)
            self.depart(i, arrow)
        elif rec.kind == "deliver":
            self.start(rec.t)
            self.arrive(i, arrow)
        elif rec.kind == "drop" and arrow.send is not None:
            arrow.send.role = Role.LOST

    def depart(self, i: int, arrow: _Arrow) -> None:
        for name in self.ends:
            self.close_window(name)
        src = arrow.src
        line = self.new(LineKind.SEGMENT, i, arrow.sent, () if arrow.label else (src,))
        line.arrow = arrow
        line.role = Role.SEND
        arrow.send = line
        if arrow.label:
            return
        view = self.views[src]
        key = direction_of(arrow.packet)
        if view.pending_trans and view.pending_trans[-1].conn != key:
            self.flush_pending(src, i, view.pending_t)
        line.pre[src] = view.pending_pre
        line.trans[src] = view.pending_trans
        view.pending_pre = []
        view.pending_trans = []
        line.state[src] = view.lookup(key)

    def arrive(self, i: int, arrow: _Arrow) -> None:
        for name in self.ends:
            self.close_window(name)
        dst = arrow.dst
        self.flush_pending(dst, i, self.views[dst].pending_t)
        assert arrow.end is not None
        line = self.new(LineKind.SEGMENT, i, arrow.end, (dst,))
        line.arrow = arrow
        line.role = Role.ARRIVE
        arrow.deliver = line
        self.views[dst].attach = (line, _dst_key(arrow.packet))


# ---------------------------------------------------------------------------------------------
# Merging departures with arrivals, and ordering the lines
# ---------------------------------------------------------------------------------------------


class _Graph:
    """The order constraints between lines. Causal edges: the order of events at each end, each
    departure before its arrival. Time edges: a line shown at time t comes after every line shown
    earlier, through one barrier node between consecutive instants (nodes ``n``...), to keep the
    graph small."""

    def __init__(self, lines: list[_Line], ends: tuple[str, str]) -> None:
        self.lines = lines
        n = self.n = len(lines)
        self.times = sorted({round(line.t, 9) for line in lines})
        group = {t: g for g, t in enumerate(self.times)}
        total = self.total = n + max(len(self.times) - 1, 0)
        self.csucc: list[set[int]] = [set() for _ in range(total)]
        self.cpred: list[set[int]] = [set() for _ in range(total)]
        self.tsucc: list[set[int]] = [set() for _ in range(total)]
        self.tpred: list[set[int]] = [set() for _ in range(total)]
        self.alive = [True] * total
        for k, line in enumerate(lines):
            g = group[round(line.t, 9)]
            if g > 0:
                self.timed(n + g - 1, k)
            if g < len(self.times) - 1:
                self.timed(k, n + g)
        for name in ends:
            chain = [k for k, line in enumerate(lines) if name in line.hosts]
            for a, b in itertools.pairwise(chain):
                self.causal(a, b)

    def causal(self, a: int, b: int) -> None:
        if a != b:
            self.csucc[a].add(b)
            self.cpred[b].add(a)

    def timed(self, a: int, b: int) -> None:
        self.tsucc[a].add(b)
        self.tpred[b].add(a)

    def can_merge(self, s: int, d: int) -> bool:
        """Departure ``s`` may take arrival ``d``'s place when no path leads from ``s`` to an event
        that had to precede ``d`` (something at the receiver while the segment was in flight)."""
        before_d = self.cpred[d] - {s}
        seen = {s, d}
        stack = [x for x in self.csucc[s] | self.tsucc[s] if x != d]
        while stack:
            x = stack.pop()
            if x in before_d:
                return False
            if x in seen:
                continue
            seen.add(x)
            stack.extend(y for y in self.csucc[x] | self.tsucc[x] if y != d)
        return True

    def merge(self, s: int, d: int) -> None:
        """Node ``s`` keeps ``d``'s causal edges; ``d``'s time edges go (a merged line is shown at
        its departure time)."""
        csucc, cpred, tsucc, tpred = self.csucc, self.cpred, self.tsucc, self.tpred
        for p in list(cpred[d]):
            csucc[p].discard(d)
            self.causal(p, s)
        for q in list(csucc[d]):
            cpred[q].discard(d)
            self.causal(s, q)
        for p in list(tpred[d]):
            tsucc[p].discard(d)
        for q in list(tsucc[d]):
            tpred[q].discard(d)
        for edges in (cpred[d], csucc[d], tpred[d], tsucc[d]):
            edges.clear()
        self.alive[d] = False

    def order(self) -> list[_Line]:
        """The live lines in a topological order, by time, following the input where it can."""
        n, lines, times = self.n, self.lines, self.times
        indeg = [len(self.cpred[k] | self.tpred[k]) if self.alive[k] else 0 for k in range(self.total)]

        def key(k: int) -> tuple[float, float]:
            if k < n:
                return (round(lines[k].t, 9), float(lines[k].order))
            return (times[k - n], float("inf"))

        heap = [(key(k), k) for k in range(self.total) if self.alive[k] and indeg[k] == 0]
        heapq.heapify(heap)
        out: list[_Line] = []
        while heap:
            _, k = heapq.heappop(heap)
            if k < n:
                out.append(lines[k])
            for q in self.csucc[k] | self.tsucc[k]:
                indeg[q] -= 1
                if indeg[q] == 0:
                    heapq.heappush(heap, (key(q), q))
        if len(out) != sum(self.alive[:n]):
            raise AssertionError("the ladder's lines cannot be ordered (a cycle)")
        return out


def _absorb(sline: _Line, dline: _Line) -> None:
    """Line ``sline`` (a departure) now also shows ``dline`` (its arrival)."""
    sline.role = Role.BOTH
    sline.hosts.extend(h for h in dline.hosts if h not in sline.hosts)
    sline.state.update(dline.state)
    sline.trans.update(dline.trans)
    sline.post.extend(dline.post)
    for h, pre in dline.pre.items():
        sline.pre.setdefault(h, []).extend(pre)


def _arrange(lines: list[_Line], ends: tuple[str, str]) -> list[_Line]:
    """Merge each departure with its arrival where the order of events allows it, tried in the
    order the segments were sent, then order the lines (see the module's notes)."""
    graph = _Graph(lines, ends)
    index = {id(line): k for k, line in enumerate(lines)}
    pairs: list[tuple[int, int]] = []
    for k, line in enumerate(lines):
        arrow = line.arrow
        if line.role is Role.SEND and arrow is not None and arrow.deliver is not None:
            d = index[id(arrow.deliver)]
            graph.causal(k, d)
            pairs.append((k, d))
    for s, d in pairs:
        if graph.can_merge(s, d):
            graph.merge(s, d)
            _absorb(lines[s], lines[d])
    return graph.order()


# ---------------------------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------------------------


def _freeze(lines: list[_Line], frozen: dict[int, SegmentArrow]) -> tuple[LadderLine, ...]:
    out: list[LadderLine] = []
    number = 0
    for line in lines:
        if line.kind is not LineKind.COMMENT:
            number += 1
        arrow = None if line.arrow is None else frozen[line.arrow.index]
        out.append(LadderLine(
            line.kind, line.t, None if line.kind is LineKind.COMMENT else number, tuple(line.hosts),
            dict(line.state), arrow, line.role,
            {h: tuple(pre) for h, pre in line.pre.items() if pre},
            {h: tuple(ch) for h, ch in line.trans.items() if ch},
            tuple(line.post), line.note))
    return tuple(out)


def _events(records: Sequence[LadderRecord], ends: tuple[str, str],
            followed: list[set[ConnKey]]) -> tuple[EndEvent, ...]:
    out: list[EndEvent] = []
    for i, rec in enumerate(records):
        if isinstance(rec, (StateRecord, ObservedState, TimerRecord, UserCallRecord)):
            if rec.host in ends and rec.conn in followed[ends.index(rec.host)]:
                out.append(EndEvent(rec.t, i, rec.host, rec))
        elif isinstance(rec, (HostNote, NoteRecord)) and rec.host in ends and rec.kind != "inject":
            out.append(EndEvent(rec.t, i, rec.host, rec))
    return tuple(out)


def build_ladder(records: Iterable[LadderRecord], left: str, right: str, *, relative: bool = False,
                 untracked: Collection[str] = ()) -> Ladder:
    """The ladder of what happened between ends ``left`` (TCP A) and ``right`` (TCP B) — host names
    as the records give them — read from ``records`` in the order they happened (a
    :class:`~synack.trace.Trace` will do).

    ``relative``: show sequence and acknowledgment numbers relative to the ISN of the connection
    incarnation they belong to (:class:`~synack.core.wire.RelativeSeq`, ``"isn"`` mode, learned from
    every SYN between the ends). ``untracked``: ends whose TCP states the records do not report (a
    script playing the peer, the far side of a capture): where no record names their state it is
    unknown, and drawn blank, instead of CLOSED (or LISTEN on a listening port)."""
    if left == right:
        raise ValueError("left and right must be two different ends")
    recs = list(records)
    ends = (left, right)
    arrows = _collect_arrows(recs, ends)
    changes = [r for r in recs if isinstance(r, (StateRecord, ObservedState)) and r.host in ends]
    addresses = _addresses(arrows.values(), changes, ends)
    arrows = _routed(arrows, ends, addresses)
    followed = _followed(changes, ends, addresses)
    lines = _arrange(_Builder(ends, arrows, followed, untracked).run(recs), ends)
    numbers: RelativeSeq | None = None
    if relative:
        numbers = RelativeSeq("isn")
        for a in arrows.values():
            if not a.copy:
                numbers.learn(direction_of(a.packet), a.packet.seg, injected=bool(a.label))
    frozen = {a.index: a.freeze(numbers) for a in arrows.values()}
    return Ladder(left, right, relative, tuple(frozen.values()), _freeze(lines, frozen),
                  _events(recs, ends, followed), (tuple(addresses[0]), tuple(addresses[1])),
                  (frozenset(followed[0]), frozenset(followed[1])),
                  max((r.t for r in recs), default=0.0))
