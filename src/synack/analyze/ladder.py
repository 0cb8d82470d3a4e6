"""One connection of a capture as the RFC's two-column ladder, with both ends' inferred states:
the same diagram model as ``synack demo`` (:func:`synack.diagram.build_ladder`), fed with what
the capture saw — each packet sent and received at its capture time — and the
:class:`~synack.diagram.ObservedState` records the inference made (uncertain ones drawn
``CLOSE-WAIT?``). Both ends are ``untracked``: where the inference says nothing, the column
stays blank."""

from __future__ import annotations

from typing import Any

from synack.analyze.model import ConnectionResult
from synack.diagram import Ladder, LadderRecord, ObservedState, build_ladder
from synack.htmlview import ladder_html
from synack.render import ladder_text
from synack.trace import PacketRecord

__all__ = ["ladder_of", "ladder_page", "ladder_records", "ladder_text_of"]


def ladder_records(r: ConnectionResult) -> list[LadderRecord]:
    """The records of one connection, in the order they happened: each packet leaving and
    arriving at its capture time, each state change right after the packet that caused it.
    Times count from the connection's first packet."""
    packets: list[tuple[float, int, bytes]] = r.extras.get("ladder") or []
    frames: list[int] = r.extras.get("frame_numbers") or []
    names = (r.endpoint(0), r.endpoint(1))
    keys = ((r.orig[0], r.orig[1], r.resp[0], r.resp[1]), (r.resp[0], r.resp[1], r.orig[0], r.orig[1]))
    timeline: list[tuple[float, float, int, Any]] = []
    t0 = r.start
    packets = [(t - t0, side, raw) for t, side, raw in packets]
    for k, (t, side, raw) in enumerate(packets):
        frame = frames[k] if k < len(frames) else k + 1
        src, dst = names[side], names[1 - side]
        timeline.append((t, frame, 0, PacketRecord(t, "send", src, dst, k + 1, 0, raw)))
        timeline.append((t, frame, 1, PacketRecord(t, "deliver", src, dst, k + 1, 0, raw)))
    last_frame = frames[-1] if frames else 0
    sender = {(frames[k] if k < len(frames) else k + 1): side for k, (_t, side, _raw) in enumerate(packets)}
    for side in (0, 1):
        for c in r.states[side]:
            if c.frame and frames and c.frame > last_frame:
                continue  # after the packets kept for the ladder
            order = float(c.frame) if c.frame else _frame_at(c.t - t0, packets, frames)
            # What an end did before sending comes before its segment leaves; what a segment did
            # to its receiver comes after it arrives.
            place = -1 if c.frame and sender.get(c.frame) == side else 2
            t = c.t - t0
            observed = ObservedState(t, names[side], keys[side], c.state.value, c.uncertain)
            timeline.append((t, order, place, observed))
    timeline.sort(key=lambda item: (item[0], item[1], item[2]))
    return [rec for _, _, _, rec in timeline]


def _frame_at(t: float, packets: list[tuple[float, int, bytes]], frames: list[int]) -> float:
    """Where a change at time ``t`` with no frame (a timer, the first state) goes: before the
    first packet at or after ``t``."""
    for k, (pt, _side, _raw) in enumerate(packets):
        if pt >= t:
            return (frames[k] if k < len(frames) else k + 1) - 0.5
    return float("inf")


def ladder_of(r: ConnectionResult) -> Ladder:
    names = (r.endpoint(0), r.endpoint(1))
    return build_ladder(ladder_records(r), names[0], names[1], relative=True, untracked=names)


def ladder_text_of(r: ConnectionResult) -> str:
    """The text ladder of one connection, with a heading."""
    head = (
        f"connection {r.id}: {r.endpoint(0)} → {r.endpoint(1)}, conn_state {r.conn_state}, history "
        f"{r.history or '-'}\nstates inferred from the capture (? = the capture cannot know); times in "
        f"seconds from its first packet (at {r.start:.6f})\n"
    )
    packets = r.extras.get("ladder") or []
    more = ""
    if len(packets) < r.packets:
        more = f"(the first {len(packets)} of {r.packets} packets)\n"
    return head + more + ladder_text(ladder_of(r))


def ladder_page(r: ConnectionResult) -> str:
    """A self-contained HTML page with the SVG ladder of one connection."""
    findings = "\n\n".join(f"{f.kind}: {f.text} {f.advice}" for f in r.findings)
    explanation = (
        f"Connection {r.id} of the capture, from {r.endpoint(0)} to {r.endpoint(1)} (Zeek conn_state "
        f"{r.conn_state}, history {r.history or '-'}). Both ends' states are inferred from the "
        "capture: a state with a question mark is one the capture point cannot know (a segment "
        "seen leaving one end may never have reached the other)."
    )
    if findings:
        explanation += "\n\n" + findings
    return ladder_html(
        ladder_of(r), title=f"connection {r.id}: {r.endpoint(0)} → {r.endpoint(1)}", explanation=explanation
    )
