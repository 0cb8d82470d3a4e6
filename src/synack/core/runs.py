"""Runs of in-order data segments taken in at once: the receive side of GRO.

A driver that reads many packets in one go (the TUN driver reads up to 512 per step) hands them
to :meth:`~synack.core.host.Host.receive_many`. There, consecutive segments of one connection
that continue each other and differ in nothing but their sequence numbers — the same ACK,
window, options and urgent field, ACK or PSH,ACK, each with text (:func:`continues`) — form a
*run*, as Linux's GRO would merge them. The first segment of a run goes through RFC 9293
§3.10.7.4 (``Host._arrive`` → ``Connection.handle_segment``) like any other. If afterwards the
TCB is where each of the others would only have its text appended (:func:`only_text_left`:
ESTABLISHED, their first octet at RCV.NXT, all of them inside the window, nothing held out of
order, SND.UNA at their ACK, the first's window update made, their timestamps neither
PAWS-old nor due to become TS.Recent...), the others are taken by that bookkeeping alone
(:func:`take_text`): per segment the text appended, RCV.NXT advanced, the ACK scheduled
(§3.8.6.3: every second full-sized segment), SND.WL1 moved to it — what ``handle_segment``
would have done to each, step by step, and nothing else. Otherwise each goes through
``Host._arrive`` in turn.

``handle_segment`` stays the reference: ``tests/test_runs.py`` feeds the same segments to twin
hosts, one segment at a time and as runs, in many states and orders (gaps, old duplicates,
full windows, changing timestamps, SACK, ACKs that advance), and compares the TCBs, events,
counters and everything they send.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from synack.core.connection import Connection
from synack.core.records import Event, State
from synack.core.wire import ACK, PSH, Sack, Segment, Timestamps, seq_lt

__all__ = ["continues", "only_text_left", "starts_run", "take_text"]

_MASK: Final = 0xFFFFFFFF
_HALF: Final = 1 << 31
_RUN_FLAGS: Final = frozenset((ACK, ACK | PSH))


def starts_run(seg: Segment) -> bool:
    """``seg`` may begin a run: ACK or PSH,ACK with text."""
    return seg.flags in _RUN_FLAGS and len(seg.payload) > 0


def continues(prev: Segment, seg: Segment, first: Segment) -> bool:
    """``seg`` may follow ``prev`` in the run that ``first`` began (same connection assumed):
    its first octet follows ``prev``'s last, it carries text, ACK or PSH,ACK, and its ACK,
    window, urgent field and options are ``first``'s."""
    return (seg.flags in _RUN_FLAGS and len(seg.payload) > 0
            and seg.seq == (prev.seq + len(prev.payload)) & _MASK
            and seg.ack == first.ack and seg.window == first.window and seg.urg == first.urg
            and seg.options == first.options)


def only_text_left(conn: Connection, first: Segment, rest: Sequence[Segment]) -> bool:
    """After ``first`` went through §3.10.7.4: would each segment of ``rest`` (continuing it,
    :func:`continues`) now only have its text appended? Every condition below is one the
    procedure tests for such a segment; where any fails, the segments go the whole way."""
    ack = first.ack
    if (conn.state is not State.ESTABLISHED or conn.tracer is not None or conn._app_closed
            or conn._fin_queued or conn._ooo_fin is not None or ack is None
            or (conn._ooo is not None and conn._ooo.reportable)):
        return False
    # Fifth step: SND.UNA = SEG.ACK (nothing to acknowledge, no duplicate: they carry text) and
    # the first made the window update (SND.WL1 = its SEG.SEQ), so each of the rest makes it.
    if conn.snd_una != ack or conn.snd_wl1 != first.seq or conn.snd_wl2 != ack or conn.snd_wnd == 0:
        return False
    # First step: they start at RCV.NXT and all of them lie inside the window.
    if conn.rcv_nxt != rest[0].seq or sum(len(s.payload) for s in rest) > conn.rcv_wnd:
        return False
    ts: Timestamps | None = None
    for opt in first.options:
        if isinstance(opt, Sack):
            return False  # SACK blocks: RFC 6675's DupAck test records them
        if ts is None and isinstance(opt, Timestamps):
            ts = opt  # the first one, as the connection reads it
    if conn.ts_ok and ts is not None:
        # PAWS passes (TS.Recent is not newer), and TS.Recent would not change (RFC 7323 §4.3:
        # only a segment at or below Last.ACK.sent updates it).
        if ((ts.tsval - conn.ts_recent) & _MASK) >= _HALF:
            return False
        if conn.ts_recent != ts.tsval and not seq_lt(conn.last_ack_sent, rest[0].seq):
            return False
    return True


def take_text(conn: Connection, rest: Sequence[Segment], now: float) -> None:
    """What ``handle_segment`` does to each segment of ``rest`` once :func:`only_text_left`
    holds: the fifth step's window update (the same window again, SND.WL1 <- SEG.SEQ) and
    activity, the seventh step's text appended at RCV.NXT with its ACK scheduled."""
    conn.now = now
    conn._last_rcv = now
    conn._ka_probes = 0
    for s in rest:
        text = s.payload
        conn.segs_in += 1
        conn.snd_wl1 = s.seq
        conn._append_rbuf(text)
        conn.rcv_nxt = (conn.rcv_nxt + len(text)) & _MASK
        conn._event(Event.READABLE)
        conn._schedule_ack(len(text), now)
