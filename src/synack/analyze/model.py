"""What ``synack analyze`` finds, as plain data: the per-packet analysis flags (Wireshark's
vocabulary), each end's inferred RFC 9293 states, per-direction statistics (tcptrace's),
findings, and one :class:`ConnectionResult` per connection.

Everything here is a frozen, picklable value with a ``to_dict()`` for JSON, so that results made
in another process (``--jobs``) or on a Dask worker (``--dask``) come back whole and merge."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final

from synack.core.records import TRANSITIONS, Cause, State, Transition

__all__ = [
    "FLAG_FIELDS",
    "FLAG_ORDER",
    "CapturePoint",
    "ConnectionResult",
    "DirectionStats",
    "Finding",
    "Severity",
    "StateChange",
    "arrow_of",
    "flag_names",
]

# ---------------------------------------------------------------------------------------------
# Per-packet analysis flags: bits, in the order tshark's tcp.analysis fields are listed
# ---------------------------------------------------------------------------------------------

RETRANSMISSION: Final = 1 << 0
FAST_RETRANSMISSION: Final = 1 << 1
SPURIOUS_RETRANSMISSION: Final = 1 << 2
OUT_OF_ORDER: Final = 1 << 3
LOST_SEGMENT: Final = 1 << 4
ACK_LOST_SEGMENT: Final = 1 << 5
DUPLICATE_ACK: Final = 1 << 6
ZERO_WINDOW: Final = 1 << 7
ZERO_WINDOW_PROBE: Final = 1 << 8
ZERO_WINDOW_PROBE_ACK: Final = 1 << 9
WINDOW_FULL: Final = 1 << 10
WINDOW_UPDATE: Final = 1 << 11
KEEP_ALIVE: Final = 1 << 12
KEEP_ALIVE_ACK: Final = 1 << 13
REUSED_PORTS: Final = 1 << 14

FLAG_FIELDS: Final[dict[int, str]] = {
    RETRANSMISSION: "retransmission",
    FAST_RETRANSMISSION: "fast_retransmission",
    SPURIOUS_RETRANSMISSION: "spurious_retransmission",
    OUT_OF_ORDER: "out_of_order",
    LOST_SEGMENT: "lost_segment",
    ACK_LOST_SEGMENT: "ack_lost_segment",
    DUPLICATE_ACK: "duplicate_ack",
    ZERO_WINDOW: "zero_window",
    ZERO_WINDOW_PROBE: "zero_window_probe",
    ZERO_WINDOW_PROBE_ACK: "zero_window_probe_ack",
    WINDOW_FULL: "window_full",
    WINDOW_UPDATE: "window_update",
    KEEP_ALIVE: "keep_alive",
    KEEP_ALIVE_ACK: "keep_alive_ack",
    REUSED_PORTS: "reused_ports",
}
"""Each flag bit and the name of the tshark field ``tcp.analysis.<name>`` it corresponds to."""
FLAG_ORDER: Final = tuple(FLAG_FIELDS.values())


def flag_names(bits: int) -> list[str]:
    """The tshark field names (without ``tcp.analysis.``) of the bits set in ``bits``."""
    return [name for bit, name in FLAG_FIELDS.items() if bits & bit]


# ---------------------------------------------------------------------------------------------
# States
# ---------------------------------------------------------------------------------------------

_ARROWS: Final[dict[tuple[State, State, Cause], Transition]] = {
    (t.src, t.dst, t.event): t for t in TRANSITIONS
}


def arrow_of(src: State | None, dst: State, cause: Cause | None) -> Transition | None:
    """The arrow of RFC 9293's state diagram (:data:`~synack.core.records.TRANSITIONS`) that
    takes ``src`` to ``dst`` on ``cause``, or None when the change follows no single arrow (a
    connection seen from its middle, a TCB lost in a crash)."""
    if src is None or cause is None:
        return None
    return _ARROWS.get((src, dst, cause))


class StateChange:
    """One end of a connection entered ``state`` at ``t`` (capture time).

    ``uncertain``: inferred from a segment the capture saw leave for this end but cannot know
    it arrived (or from a timer the capture cannot see); ``frame`` the frame number of the
    segment that caused it (0 for a timer); ``src`` and ``cause`` the previous state and the
    RFC 9293 event, whose arrow in the state diagram is :attr:`transition` when there is one;
    ``note`` words for an inference that follows no arrow.

    A value: equal to another with the same fields, hashable, never changed once made (its
    fields are ``Final``, which mypy checks; :meth:`but` makes a changed copy). A plain class
    rather than a frozen dataclass because the inference makes one for every guess it shows
    and recomputes them after every segment it reads: a frozen dataclass's ``__init__`` runs as
    Python even when this module is compiled, and took a tenth of a compiled pass."""

    __slots__ = ("cause", "frame", "note", "src", "state", "t", "uncertain")

    def __init__(
        self,
        t: float,
        state: State,
        uncertain: bool,
        frame: int,
        src: State | None,
        cause: Cause | None,
        note: str = "",
    ) -> None:
        self.t: Final = t
        self.state: Final = state
        self.uncertain: Final = uncertain
        self.frame: Final = frame
        self.src: Final = src
        self.cause: Final = cause
        self.note: Final = note

    def _fields(self) -> tuple[float, State, bool, int, State | None, Cause | None, str]:
        return (self.t, self.state, self.uncertain, self.frame, self.src, self.cause, self.note)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StateChange):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __reduce__(self) -> tuple[type[StateChange], tuple[object, ...]]:
        """Pickled as its fields (compiled by mypyc, a class with an ``__init__`` that takes
        arguments cannot be unpickled otherwise: ``--jobs`` and ``--dask`` send results
        between processes)."""
        return StateChange, self._fields()

    def __repr__(self) -> str:
        return (f"StateChange(t={self.t!r}, state={self.state}, uncertain={self.uncertain}, "
                f"frame={self.frame}, src={self.src}, cause={self.cause}, note={self.note!r})")

    def but(
        self, *, uncertain: bool | None = None, src: State | None = None, note: str | None = None
    ) -> StateChange:
        """A copy made uncertain (or certain), from another state, or with other words."""
        return StateChange(
            self.t,
            self.state,
            self.uncertain if uncertain is None else uncertain,
            self.frame,
            self.src if src is None else src,
            self.cause,
            self.note if note is None else note,
        )

    @property
    def transition(self) -> Transition | None:
        return arrow_of(self.src, self.state, self.cause)

    @property
    def text(self) -> str:
        """``SYN-SENT`` or ``SYN-SENT?``."""
        return self.state.value + ("?" if self.uncertain else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "state": self.state.value,
            "uncertain": self.uncertain,
            "frame": self.frame,
            "from": None if self.src is None else self.src.value,
            "event": None if self.cause is None else self.cause.value,
            "rfc_arrow": self.transition is not None,
            "note": self.note,
        }


# ---------------------------------------------------------------------------------------------
# Statistics per direction (tcptrace's)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DirectionStats:
    """What one end sent, as tcptrace counts it. Sizes are in octets of TCP payload unless
    named ``frame_bytes`` (whole frames, as tshark's conversation table counts them); windows
    are scaled when the scale is known; RTTs in seconds (None when not measured)."""

    packets: int = 0
    frame_bytes: int = 0
    payload_bytes: int = 0
    unique_bytes: int = 0
    retransmitted_packets: int = 0
    retransmitted_bytes: int = 0
    pure_acks: int = 0
    sack_packets: int = 0
    dsack_packets: int = 0
    out_of_order_packets: int = 0
    zero_window_probes: int = 0
    zero_windows: int = 0
    syn: int = 0
    fin: int = 0
    rst: int = 0
    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    timestamps: bool = False
    segment_min: int | None = None
    segment_max: int | None = None
    segment_avg: float | None = None
    window_min: int | None = None
    window_max: int | None = None
    window_avg: float | None = None
    first: float | None = None
    last: float | None = None
    idle_max: float = 0.0
    throughput: float = 0.0
    rtt_samples: int = 0
    rtt_min: float | None = None
    rtt_avg: float | None = None
    rtt_max: float | None = None
    rtt_stdev: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# ---------------------------------------------------------------------------------------------
# Findings
# ---------------------------------------------------------------------------------------------


class Severity(enum.Enum):
    """How much a finding matters: ``problem`` (something failed or leaks), ``warning`` (worth a
    look), ``info`` (how the traffic behaved)."""

    PROBLEM = "problem"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"problem": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True, slots=True)
class Finding:
    """Something worth telling, in plain words: ``kind`` (a stable identifier such as
    ``close-wait``), ``text`` what happened, ``evidence`` which frames and figures show it,
    ``advice`` what to do. ``connections`` are the connection ids it is about (several for a
    finding about many, such as a SYN flood), ``end`` the address:port it is about, if one."""

    kind: str
    severity: Severity
    text: str
    evidence: str
    advice: str
    connections: tuple[int, ...] = ()
    end: str = ""
    t: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity.value,
            "text": self.text,
            "evidence": self.evidence,
            "advice": self.advice,
            "connections": list(self.connections),
            "end": self.end,
            "t": self.t,
        }


# ---------------------------------------------------------------------------------------------
# A connection
# ---------------------------------------------------------------------------------------------


class CapturePoint(enum.Enum):
    """Where the capture was made, for one end: at that end (what it sent is seen leaving, what
    reached it is seen arriving), or elsewhere (unknown)."""

    HERE = "here"
    ELSEWHERE = "elsewhere"


@dataclass(frozen=True, slots=True)
class ConnectionResult:
    """Everything found about one connection (one incarnation of a 4-tuple, from its SYN).

    ``id`` numbers connections from 0 in the order their first packet was seen (Wireshark's
    ``tcp.stream``). The originator (``orig``) is the end that sent the first SYN (Zeek's
    sense); without a SYN, the sender of the first packet. ``states`` are each end's state
    changes, ``final`` each end's last state (``?`` when uncertain). ``flags`` counts every
    analysis flag over the connection's packets. ``frames`` are the frame numbers of its first
    and last packets."""

    id: int
    orig: tuple[str, int]
    resp: tuple[str, int]
    start: float
    end: float
    packets: int
    conn_state: str
    history: str
    states: tuple[tuple[StateChange, ...], tuple[StateChange, ...]]
    stats: tuple[DirectionStats, DirectionStats]
    flags: dict[str, int]
    findings: tuple[Finding, ...]
    capture_point: tuple[CapturePoint, CapturePoint]
    handshake_rtt: float | None
    frames: tuple[int, int]
    closed_first: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.end - self.start

    def endpoint(self, side: int) -> str:
        """``10.0.0.1:39824`` (``[fd00::1]:80`` for IPv6) for side 0 (originator) or 1."""
        addr, port = (self.orig, self.resp)[side]
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

    def final(self, side: int) -> str:
        changes = self.states[side]
        return changes[-1].text if changes else ""

    def final_state(self, side: int) -> StateChange | None:
        changes = self.states[side]
        return changes[-1] if changes else None

    @property
    def score(self) -> int:
        """How bad the connection looks, for "the worst connections": problems first."""
        worst = sum((3 - f.severity.rank) * 100 for f in self.findings)
        return worst + self.flags.get("retransmission", 0) + self.flags.get("lost_segment", 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "orig": {"address": self.orig[0], "port": self.orig[1]},
            "resp": {"address": self.resp[0], "port": self.resp[1]},
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "packets": self.packets,
            "frames": list(self.frames),
            "conn_state": self.conn_state,
            "history": self.history,
            "states": {
                "orig": [c.to_dict() for c in self.states[0]],
                "resp": [c.to_dict() for c in self.states[1]],
            },
            "final": {"orig": self.final(0), "resp": self.final(1)},
            "capture_point": {"orig": self.capture_point[0].value, "resp": self.capture_point[1].value},
            "handshake_rtt": self.handshake_rtt,
            "closed_first": self.closed_first,
            "flags": dict(self.flags),
            "stats": {"orig": self.stats[0].to_dict(), "resp": self.stats[1].to_dict()},
            "findings": [f.to_dict() for f in self.findings],
        }
