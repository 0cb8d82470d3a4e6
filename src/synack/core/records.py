"""The vocabulary of the core: states, the events that move them, the transition table, and the
typed records a connection and a host emit while they work.

Everything here is data. :data:`TRANSITIONS` lists every ``(source, destination, event)`` a
connection may take; :meth:`Connection._set_state <synack.core.connection.Connection>` refuses
any other, and ``synack states`` draws the state diagram from the same table, so neither the
picture nor an observer can drift from the code.

Records carry enums and numbers, never prose that a reader would have to parse: a renderer that
wants words asks an enum for its ``label``. A connection reports through an :class:`Observer`
(one method per kind of fact); :class:`Recorder` is the observer a host installs, which stamps each
fact with the time, the host's name and the connection's 4-tuple and hands the frozen record to a
sink (a :class:`~synack.trace.Trace`, a list, a callback).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from synack.core._mypyc import mypyc_attr
from synack.core.wire import Segment, format_segment

__all__ = [
    "TRANSITIONS",
    "Arrow",
    "Call",
    "Cause",
    "ConnKey",
    "ConnectionAborted",
    "ConnectionClosing",
    "ConnectionExists",
    "ConnectionRefused",
    "ConnectionReset",
    "ConnectionTimedOut",
    "Drop",
    "DropRecord",
    "Event",
    "HostNote",
    "InsufficientResources",
    "LocalError",
    "NoConnection",
    "Note",
    "Observer",
    "Record",
    "Recorder",
    "RecoveryAction",
    "RecoveryRecord",
    "RemoteError",
    "ResetReason",
    "ResetRecord",
    "SegmentRecord",
    "State",
    "StateRecord",
    "TcpError",
    "Timer",
    "TimerAction",
    "TimerRecord",
    "Transition",
    "Unreachable",
    "UserCallRecord",
    "diagram_arrows",
]

ConnKey = tuple[str, int, str, int]
"""A connection as (local address, local port, remote address, remote port)."""


# ---------------------------------------------------------------------------------------------
# States
# ---------------------------------------------------------------------------------------------


class State(enum.Enum):
    """The 11 states of RFC 9293 §3.3.2 (CLOSED is the fictional "no TCB" state)."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    def __str__(self) -> str:
        return self.value

    # Members are singletons compared by identity, so the identity hash (computed in C) is a
    # valid hash; Enum's own __hash__ is Python code that hashes the name, and the state is
    # looked up in sets on every segment.
    __hash__ = object.__hash__

    @property
    def synchronized(self) -> bool:
        return self not in _UNSYNCHRONIZED


_UNSYNCHRONIZED: Final = frozenset((State.CLOSED, State.LISTEN, State.SYN_SENT))


class Cause(enum.Enum):
    """What moved a connection from one state to another: the event of a transition, in the
    words of RFC 9293 (Figure 5, §3.10) where it has them. The value is the label."""

    PASSIVE_OPEN = "passive OPEN"
    ACTIVE_OPEN = "active OPEN"
    SEND = "SEND"
    CLOSE = "CLOSE"
    RCV_SYN = "rcv SYN"
    RCV_SYN_ACK = "rcv SYN,ACK"
    RCV_ACK_OF_SYN = "rcv ACK of SYN"
    RCV_FIN = "rcv FIN"
    RCV_ACK_OF_FIN = "rcv ACK of FIN"
    TIMEOUT_2MSL = "timeout=2MSL"
    RCV_RST = "rcv RST"
    RCV_RST_REFUSED = "rcv RST (refused)"
    RCV_SYN_IN_SYN_RECEIVED = "rcv SYN in SYN-RECEIVED"
    ABORT = "ABORT"
    ABORT_UNREAD_DATA = "CLOSE with unread data (SHLD-3)"
    ABORT_DATA_AFTER_CLOSE = "data after CLOSE (SHLD-3)"
    TIMEOUT_R2 = "retransmission timeout (R2)"
    TIMEOUT_PERSIST = "persist timeout (R2)"
    TIMEOUT_KEEPALIVE = "keep-alive timeout"
    TIMEOUT_FIN_WAIT_2 = "FIN-WAIT-2 timeout"
    ICMP_UNREACHABLE = "ICMP: destination unreachable"
    TIME_WAIT_REUSED = "TIME-WAIT 4-tuple reused (SO_REUSEADDR)"
    TIME_WAIT_REOPENED = "new SYN above RCV.NXT (MAY-2)"

    __hash__ = object.__hash__  # as State: the C identity hash (it keys the transition table)

    @property
    def label(self) -> str:
        return self.value

    @property
    def short(self) -> str:
        """The word the state diagram uses for the event (timeouts and aborts grouped)."""
        return _SHORT.get(self, self.value)


_SHORT: Final = {
    Cause.RCV_RST_REFUSED: "rcv RST",
    Cause.ABORT_UNREAD_DATA: "ABORT",
    Cause.ABORT_DATA_AFTER_CLOSE: "ABORT",
    Cause.TIMEOUT_R2: "timeout",
    Cause.TIMEOUT_PERSIST: "timeout",
    Cause.TIMEOUT_KEEPALIVE: "timeout",
    Cause.TIMEOUT_FIN_WAIT_2: "timeout",
    Cause.ICMP_UNREACHABLE: "ICMP",
    Cause.TIME_WAIT_REUSED: "reuse",
    Cause.TIME_WAIT_REOPENED: "reuse",
}


@dataclass(frozen=True, slots=True)
class Transition:
    """One arrow of the state diagram: ``event`` takes a connection from ``src`` to ``dst``, and
    ``action`` is what it sends. ``main`` marks the arrows of RFC 9293 Figure 5; the others are
    resets, aborts and timeouts (§3.10.5, §3.10.7.3/4, §3.10.8)."""

    src: State
    dst: State
    event: Cause
    action: str = ""
    main: bool = True

    @property
    def why(self) -> str:
        return self.event.value

    def __str__(self) -> str:
        return f"{self.src}=>{self.dst} ({self.event.value})"


S = State
C = Cause


def _resets(event: Cause, *sources: State, dst: State = State.CLOSED) -> tuple[Transition, ...]:
    return tuple(Transition(src, dst, event, main=False) for src in sources)


_SYNCHRONIZED: Final = (S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK,
                        S.TIME_WAIT)

TRANSITIONS: Final[tuple[Transition, ...]] = (
    # RFC 9293 Figure 5
    Transition(S.CLOSED, S.LISTEN, C.PASSIVE_OPEN, "create TCB"),
    Transition(S.CLOSED, S.SYN_SENT, C.ACTIVE_OPEN, "snd SYN"),
    Transition(S.LISTEN, S.SYN_RECEIVED, C.RCV_SYN, "snd SYN,ACK"),
    Transition(S.LISTEN, S.SYN_SENT, C.SEND, "snd SYN"),
    Transition(S.LISTEN, S.CLOSED, C.CLOSE, "delete TCB"),
    Transition(S.SYN_SENT, S.SYN_RECEIVED, C.RCV_SYN, "snd SYN,ACK"),
    Transition(S.SYN_SENT, S.ESTABLISHED, C.RCV_SYN_ACK, "snd ACK"),
    Transition(S.SYN_SENT, S.CLOSED, C.CLOSE, "delete TCB"),
    Transition(S.SYN_RECEIVED, S.ESTABLISHED, C.RCV_ACK_OF_SYN),
    Transition(S.SYN_RECEIVED, S.FIN_WAIT_1, C.CLOSE, "snd FIN"),
    Transition(S.ESTABLISHED, S.FIN_WAIT_1, C.CLOSE, "snd FIN"),
    Transition(S.ESTABLISHED, S.CLOSE_WAIT, C.RCV_FIN, "snd ACK"),
    Transition(S.FIN_WAIT_1, S.FIN_WAIT_2, C.RCV_ACK_OF_FIN),
    Transition(S.FIN_WAIT_1, S.CLOSING, C.RCV_FIN, "snd ACK"),
    Transition(S.FIN_WAIT_2, S.TIME_WAIT, C.RCV_FIN, "snd ACK"),
    Transition(S.CLOSE_WAIT, S.LAST_ACK, C.CLOSE, "snd FIN"),
    Transition(S.CLOSING, S.TIME_WAIT, C.RCV_ACK_OF_FIN),
    Transition(S.LAST_ACK, S.CLOSED, C.RCV_ACK_OF_FIN, "delete TCB"),
    Transition(S.TIME_WAIT, S.CLOSED, C.TIMEOUT_2MSL, "delete TCB"),
    # Resets (§3.10.7.3, §3.10.7.4 second and fourth steps)
    Transition(S.SYN_RECEIVED, S.LISTEN, C.RCV_RST, main=False),
    Transition(S.SYN_RECEIVED, S.LISTEN, C.RCV_SYN_IN_SYN_RECEIVED, main=False),
    *_resets(C.RCV_RST_REFUSED, S.SYN_SENT, S.SYN_RECEIVED),
    *_resets(C.RCV_RST, *_SYNCHRONIZED),
    # ABORT (§3.10.5) and the aborts of a half-duplex close (MAY-1, SHLD-3)
    *_resets(C.ABORT, S.LISTEN, S.SYN_SENT, S.SYN_RECEIVED, *_SYNCHRONIZED),
    *_resets(C.ABORT_UNREAD_DATA, S.SYN_RECEIVED, *_SYNCHRONIZED),
    *_resets(C.ABORT_DATA_AFTER_CLOSE, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2),
    # Timeouts (§3.8.3 R2, §3.8.4 keep-alive, §3.10.8) and TIME-WAIT taken over (MAY-2, L11)
    *_resets(C.TIMEOUT_R2, S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.CLOSE_WAIT,
             S.CLOSING, S.LAST_ACK),
    *_resets(C.TIMEOUT_PERSIST, S.ESTABLISHED, S.FIN_WAIT_1, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK),
    *_resets(C.TIMEOUT_KEEPALIVE, S.ESTABLISHED, S.FIN_WAIT_2, S.CLOSE_WAIT),
    *_resets(C.TIMEOUT_FIN_WAIT_2, S.FIN_WAIT_2),
    # ICMP (§3.9.2.2): an unreachable destination ends an opening connection (RFC 5461 §4)
    *_resets(C.ICMP_UNREACHABLE, S.SYN_SENT, S.SYN_RECEIVED),
    *_resets(C.TIME_WAIT_REUSED, S.TIME_WAIT),
    *_resets(C.TIME_WAIT_REOPENED, S.TIME_WAIT),
)


class Arrow(NamedTuple):
    """One arrow of the drawn state diagram: the transitions of one (source, destination, main)
    merged, their events listed by short name (``rcv RST / timeout / ABORT``)."""

    src: State
    dst: State
    label: str
    action: str
    main: bool


def diagram_arrows(transitions: tuple[Transition, ...] = TRANSITIONS) -> list[Arrow]:
    """The arrows of the state diagram, in table order (see :class:`Arrow`)."""
    groups: dict[tuple[State, State, bool], list[Transition]] = {}
    for t in transitions:
        groups.setdefault((t.src, t.dst, t.main), []).append(t)
    arrows: list[Arrow] = []
    for (src, dst, main), ts in groups.items():
        label = ts[0].event.value if len(ts) == 1 else " / ".join(dict.fromkeys(t.event.short for t in ts))
        arrows.append(Arrow(src, dst, label, ts[0].action, main))
    return arrows


# ---------------------------------------------------------------------------------------------
# What a connection tells its user, and what the records name
# ---------------------------------------------------------------------------------------------


class Event(enum.Enum):
    """What a connection tells its user (RFC 9293 §3.9.1.8 asynchronous reports, MUST-47)."""

    CONNECTED = "connected"
    READABLE = "readable"
    SEND_SPACE = "send-space"
    PEER_CLOSED = "peer-closed"
    RESET = "reset"
    REFUSED = "refused"
    TIMED_OUT = "timed-out"
    CLOSED = "closed"
    DELIVERY_PROBLEM = "delivery-problem"  # R1 reached (SHLD-9)
    URGENT = "urgent"
    UNREACHABLE = "unreachable"  # an ICMP error ended the connection
    SOFT_ERROR = "soft-error"  # an ICMP error was reported and the connection goes on (SHLD-25)


# ---------------------------------------------------------------------------------------------
# Errors: local (the user asked for something the state does not allow) and remote (the peer or
# the network ended the connection), as RFC 9293 §3.10 names them
# ---------------------------------------------------------------------------------------------


class TcpError(Exception):
    """Base of every error the core raises or records."""


class LocalError(TcpError):
    """The user asked for something the current state does not allow (RFC 9293 §3.10.1–6)."""


class NoConnection(LocalError):
    """"error: connection does not exist"."""


class ConnectionExists(LocalError):
    """"error: connection already exists"."""


class ConnectionClosing(LocalError):
    """"error: connection closing"."""


class InsufficientResources(LocalError):
    """"error: insufficient resources"."""


class RemoteError(TcpError):
    """The connection failed because of the peer or the network. Recorded in ``Connection.error``."""


class ConnectionReset(RemoteError):
    """"connection reset": the peer sent an acceptable RST."""


class ConnectionRefused(RemoteError):
    """"connection refused": RST in answer to our SYN."""


class ConnectionTimedOut(RemoteError):
    """Retransmissions reached R2, the user timeout expired, or keep-alive probes went unanswered."""


class Unreachable(RemoteError):
    """An ICMP or ICMPv6 error about the connection's segments (RFC 9293 §3.9.2.2). ``errno`` is
    the error number Linux reports for that ICMP type and code (``icmp_err_convert``)."""

    def __init__(self, message: str, errno: int, icmp_type: int, icmp_code: int, version: int) -> None:
        super().__init__(message)
        self.errno = errno
        self.icmp_type = icmp_type
        self.icmp_code = icmp_code
        self.version = version


class ConnectionAborted(RemoteError):
    """The local user aborted the connection (ABORT call)."""


class Timer(enum.Enum):
    """The timers of a connection (RFC 9293 §3.8, §3.10.8)."""

    RETRANSMIT = "retransmit"
    TIME_WAIT = "time-wait"
    KEEPALIVE = "keepalive"
    PERSIST = "persist"
    FIN_WAIT_2 = "fin-wait-2"


class TimerAction(enum.Enum):
    """What a timer did when it fired (``count`` in the record numbers retransmissions and
    probes from 1)."""

    RETRANSMIT = "retransmission"
    PROBE = "probe"
    GIVE_UP = "give up (R2)"
    PEER_DEAD = "peer dead"
    EXPIRED = "expired"
    RESTART = "restart"


class Call(enum.Enum):
    """A user call (RFC 9293 §3.10.1–6) worth a line in a diagram."""

    OPEN_ACTIVE = "OPEN active"
    OPEN_PASSIVE = "OPEN passive"
    CLOSE = "CLOSE"
    ABORT = "ABORT"


class Drop(enum.Enum):
    """Why a connection or a host discarded a segment. The value is the label."""

    # LISTEN, SYN-SENT (§3.10.7.2, §3.10.7.3)
    RST_IN_LISTEN = "RST in LISTEN"
    ACK_IN_LISTEN = "ACK in LISTEN"
    NO_SYN_IN_LISTEN = "no SYN in LISTEN"
    BAD_ACK_IN_SYN_SENT = "unacceptable ACK in SYN-SENT"
    RST_WITHOUT_ACK_IN_SYN_SENT = "RST without ACK in SYN-SENT"
    NO_SYN_IN_SYN_SENT = "neither SYN nor RST in SYN-SENT"
    # The other states (§3.10.7.4, RFC 7323 §5.3, RFC 5961)
    PAWS = "PAWS: old timestamp"
    PAWS_LIMITED = "PAWS: old timestamp, ACK rate-limited"
    DUPLICATE_SYN = "duplicate SYN in SYN-RECEIVED: SYN,ACK resent"
    RST_OUTSIDE_WINDOW = "RST outside the window"
    UNACCEPTABLE = "unacceptable segment: ACK sent"
    UNACCEPTABLE_LIMITED = "unacceptable segment: ACK rate-limited"
    RST_CHALLENGED = "RST in window but not at RCV.NXT: challenge ACK"
    RST_CHALLENGE_LIMITED = "RST in window but not at RCV.NXT: challenge ACK rate-limited"
    SYN_CHALLENGED = "SYN in a synchronized state (RFC 5961 §4): challenge ACK"
    SYN_CHALLENGE_LIMITED = "SYN in a synchronized state (RFC 5961 §4): challenge ACK rate-limited"
    NO_ACK_BIT = "no ACK bit"
    BAD_ACK_IN_SYN_RECEIVED = "unacceptable ACK in SYN-RECEIVED"
    BAD_ACK_IN_SYN_RECEIVED_LIMITED = "unacceptable ACK in SYN-RECEIVED: RST rate-limited"
    ACK_OF_UNSENT = "ACK of data not yet sent: ACK sent"
    ACK_OF_UNSENT_LIMITED = "ACK of data not yet sent: ACK rate-limited"
    ACK_TOO_OLD = "ACK below SND.UNA - MAX.SND.WND (RFC 5961 §5): ACK sent"
    ACK_TOO_OLD_LIMITED = "ACK below SND.UNA - MAX.SND.WND (RFC 5961 §5): ACK rate-limited"
    TEXT_AFTER_FIN = "text after the peer's FIN"
    REASSEMBLY_FULL = "reassembly queue full"
    # The host (§3.10.7.1, §3.10.7.2 at a listener, RFC 9293 MUST-57/63)
    MALFORMED = "malformed"
    BAD_CHECKSUM = "bad_checksum"
    NOT_FOR_US = "not for us"
    ACCEPT_QUEUE_FULL = "accept queue full: handshake ACK dropped"
    TIME_WAIT_REOPENED = "TIME-WAIT connection replaced by a new SYN (MAY-2)"
    RST_FOR_NO_CONNECTION = "RST for no connection: ignored"
    RST_AT_LISTENER = "RST at a listener: ignored"
    NO_SYN_AT_LISTENER = "segment without SYN at a listener"
    BAD_ADDRESS = "SYN from/to an invalid address"
    MARTIAN = "martian source address"
    ICMP_OUT_OF_WINDOW = "ICMP error about a sequence number we did not send (RFC 5927)"
    ICMP_SOURCE_QUENCH = "ICMP source quench (MUST-55)"
    ICMP_IGNORED = "ICMP message ignored"
    BACKLOG_FULL = "listen backlog full"

    @property
    def label(self) -> str:
        return self.value


class RecoveryAction(enum.Enum):
    """Loss recovery (RFC 6675 §5, RFC 6582): entering, the rescue retransmission, ending."""

    ENTER = "enter"
    RESCUE = "rescue"
    END = "end"


class Note(enum.Enum):
    """A host started or stopped listening."""

    LISTEN = "listen"
    UNLISTEN = "unlisten"


class ResetReason(enum.Enum):
    """Why a host answered a segment with a RST of its own (RFC 9293 §3.10.7.1, §3.10.7.2)."""

    NO_CONNECTION = "no connection"
    ACK_AT_LISTENER = "ACK at a listener"


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------
# Each record's ``kind`` is a property rather than a ``ClassVar``: the mypyc build hands a
# dataclass's class variables to ``dataclasses`` as fields (mypyc issue 1122), and a field with
# a default cannot come before ``t``.


@dataclass(frozen=True, slots=True)
class StateRecord:
    """A connection changed state. ``detail`` is the caller's words for an ABORT (an API's
    reason such as ``close() with SO_LINGER 0``), else empty."""

    t: float
    host: str
    conn: ConnKey
    transition: Transition
    detail: str = ""

    @property
    def kind(self) -> str:
        """What the record is, in its JSON form: ``state``."""
        return "state"

    @property
    def old(self) -> str:
        return self.transition.src.value

    @property
    def new(self) -> str:
        return self.transition.dst.value

    @property
    def why(self) -> str:
        """The detail when the caller gave one, else the event's label."""
        return self.detail or self.transition.event.value

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "conn": list(self.conn),
                "old": self.old, "new": self.new, "event": self.transition.event.name, "why": self.why}


@dataclass(frozen=True, slots=True)
class TimerRecord:
    """A timer of a connection fired; ``count`` numbers retransmissions and keep-alive probes."""

    t: float
    host: str
    conn: ConnKey
    timer: Timer
    action: TimerAction
    count: int = 0

    @property
    def kind(self) -> str:
        """What the record is, in its JSON form: ``timer``."""
        return "timer"

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "conn": list(self.conn),
                "timer": self.timer.value, "action": self.action.value, "count": self.count}


@dataclass(frozen=True, slots=True)
class UserCallRecord:
    """A user call on a connection."""

    t: float
    host: str
    conn: ConnKey
    call: Call

    @property
    def kind(self) -> str:
        """What the record is, in its JSON form: ``call``."""
        return "call"

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "conn": list(self.conn),
                "call": self.call.value}


@dataclass(frozen=True, slots=True)
class DropRecord:
    """A connection or a host discarded a segment. ``conn`` is None when no connection was
    involved; ``detail`` carries data that explains it (the parser's message for a malformed
    packet, the address of a packet not for us)."""

    t: float
    host: str
    conn: ConnKey | None
    reason: Drop
    detail: str = ""

    @property
    def kind(self) -> str:
        """What the record is, in its JSON form: ``host_drop``."""
        return "host_drop"

    @property
    def text(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host,
                "conn": None if self.conn is None else list(self.conn), "reason": self.reason.name,
                "text": self.text}


@dataclass(frozen=True, slots=True)
class RecoveryRecord:
    """Loss recovery entered, made its rescue retransmission, or ended; ``seq`` is the recovery
    point on entry, the retransmitted sequence number of the rescue, the ACK that ended it."""

    t: float
    host: str
    conn: ConnKey
    action: RecoveryAction
    seq: int

    @property
    def kind(self) -> str:
        """What the record is, in its JSON form: ``recovery``."""
        return "recovery"

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "conn": list(self.conn),
                "action": self.action.value, "seq": self.seq}


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """A segment a connection processed (``outbound`` False) or produced (True)."""

    t: float
    host: str
    conn: ConnKey
    outbound: bool
    seg: Segment

    @property
    def kind(self) -> str:
        """What the record is, in its JSON form: ``segment``."""
        return "segment"

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "conn": list(self.conn),
                "outbound": self.outbound, "segment": format_segment(self.seg)}


@dataclass(frozen=True, slots=True)
class ResetRecord:
    """A host answered a segment from ``addr``:``port`` that no connection wanted with ``rst``."""

    t: float
    host: str
    reason: ResetReason
    addr: str
    port: int
    rst: Segment

    @property
    def kind(self) -> str:
        """What the record is, in its JSON form: ``reset``."""
        return "reset"

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "reason": self.reason.value,
                "to": f"{self.addr}:{self.port}", "segment": format_segment(self.rst)}


@dataclass(frozen=True, slots=True)
class HostNote:
    """A host started or stopped listening on ``addr``:``port`` (``*`` for every address)."""

    t: float
    host: str
    note: Note
    addr: str
    port: int

    @property
    def kind(self) -> str:
        return self.note.value

    @property
    def detail(self) -> str:
        return f"{self.addr}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "detail": self.detail}


Record = (StateRecord | TimerRecord | UserCallRecord | DropRecord | RecoveryRecord | SegmentRecord
          | ResetRecord | HostNote)


# ---------------------------------------------------------------------------------------------
# Observers
# ---------------------------------------------------------------------------------------------


@mypyc_attr(allow_interpreted_subclasses=True)
class Observer:
    """What a connection reports while it works, one method per kind of fact. Every method does
    nothing here; override the ones you need. ``conn`` is the
    :class:`~synack.core.connection.Connection` (its ``now`` is the time of the fact)."""

    __slots__ = ()

    def transition(self, conn: Any, transition: Transition, detail: str) -> None:
        """``conn`` took ``transition`` (checked against :data:`TRANSITIONS`)."""

    def timer(self, conn: Any, timer: Timer, action: TimerAction, count: int) -> None:
        """A timer of ``conn`` fired and did ``action``."""

    def call(self, conn: Any, call: Call) -> None:
        """The user called ``call`` on ``conn``."""

    def drop(self, conn: Any, reason: Drop) -> None:
        """``conn`` discarded the segment it was processing."""

    def recovery(self, conn: Any, action: RecoveryAction, seq: int) -> None:
        """Loss recovery entered, rescued or ended."""

    def segment(self, conn: Any, seg: Segment, outbound: bool) -> None:
        """``conn`` processed (``outbound`` False) or produced ``seg``."""


class Recorder(Observer):
    """The observer a host installs: each fact becomes a frozen record stamped with the time,
    the host's name and the connection, handed to ``sink``."""

    __slots__ = ("name", "sink")

    def __init__(self, name: str, sink: Callable[[Record], None]) -> None:
        self.name = name
        self.sink = sink

    @staticmethod
    def _key(conn: Any) -> ConnKey:
        return (conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port)

    def transition(self, conn: Any, transition: Transition, detail: str) -> None:
        self.sink(StateRecord(conn.now, self.name, self._key(conn), transition, detail))

    def timer(self, conn: Any, timer: Timer, action: TimerAction, count: int) -> None:
        self.sink(TimerRecord(conn.now, self.name, self._key(conn), timer, action, count))

    def call(self, conn: Any, call: Call) -> None:
        self.sink(UserCallRecord(conn.now, self.name, self._key(conn), call))

    def drop(self, conn: Any, reason: Drop) -> None:
        self.sink(DropRecord(conn.now, self.name, self._key(conn), reason))

    def recovery(self, conn: Any, action: RecoveryAction, seq: int) -> None:
        self.sink(RecoveryRecord(conn.now, self.name, self._key(conn), action, seq))

    def segment(self, conn: Any, seg: Segment, outbound: bool) -> None:
        self.sink(SegmentRecord(conn.now, self.name, self._key(conn), outbound, seg))
