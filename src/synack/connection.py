"""One TCP connection (the TCB of RFC 9293 §3.3.1) and every state transition it can make.

Sans-IO: the connection never reads a clock or touches a socket. Time is the ``now`` argument of
every call (seconds, monotonic). Input only changes state; the driver then pulls what is due with
:meth:`Connection.segments_to_send`, asks :meth:`Connection.next_deadline` when to come back, and
calls :meth:`Connection.handle_timeout` then.

Segment arrival follows RFC 9293 §3.10.7 step by step: the CLOSED/LISTEN/SYN-SENT procedures, then
for the other states (1) sequence check, (2) RST, (3) security (not applicable: no compartments),
(4) SYN, (5) ACK, (6) URG, (7) text, (8) FIN. Every change of state goes through
:meth:`Connection._set_state`, which checks it against :data:`TRANSITIONS` — the same table from
which ``synack states`` draws the state diagram.

Output is derived from the TCB, not queued: the SYN is (re)sent while SND.NXT = ISS, data from
SND.NXT, the FIN when SND.NXT reaches it; a retransmission timeout simply rewinds SND.NXT to SND.UNA.
``snd_max`` is the highest sequence number ever sent (the RFC's SND.NXT before a rewind); ACK
acceptability is checked against it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from synack.buffers import ReassemblyQueue
from synack.congestion import CongestionControl, make_congestion_control
from synack.timers import RttEstimator
from synack.wire import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    Mss,
    Nop,
    Option,
    Sack,
    SackPermitted,
    Segment,
    Timestamps,
    WindowScale,
    seq_diff,
    seq_le,
    seq_lt,
)

__all__ = [
    "TRANSITIONS",
    "Config",
    "Connection",
    "ConnectionAborted",
    "ConnectionClosing",
    "ConnectionExists",
    "ConnectionRefused",
    "ConnectionReset",
    "ConnectionTimedOut",
    "Event",
    "InsufficientResources",
    "LocalError",
    "NoConnection",
    "RemoteError",
    "State",
    "TcpError",
    "Transition",
    "reset_for",
]

_MASK: Final = 0xFFFFFFFF
_DUP_THRESH: Final = 3  # RFC 6675 §2 DupThresh
_SACK_RANGES: Final = 64  # scoreboard bound: more SACKed ranges than this are forgotten (highest first)
_NOP: Final = Nop()  # Nop is frozen and has no fields: every segment can share one
_HALF: Final = 1 << 31


# Sequence-space comparisons (RFC 9293 §3.4), under short names: they appear on nearly every line.
_lt = seq_lt
_le = seq_le
_diff = seq_diff


# ---------------------------------------------------------------------------------------------
# States, transitions, errors, events
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
    # looked up in sets on every segment (_LEGAL, _CAN_SEND_DATA).
    __hash__ = object.__hash__

    @property
    def synchronized(self) -> bool:
        return self not in _UNSYNCHRONIZED


_UNSYNCHRONIZED: Final = frozenset((State.CLOSED, State.LISTEN, State.SYN_SENT))
S = State


@dataclass(frozen=True, slots=True)
class Transition:
    """One arrow of the state diagram: ``event`` causes ``src`` → ``dst`` and ``action`` is sent.
    ``main`` marks the arrows of RFC 9293 Figure 5; the others are resets, aborts and timeouts."""

    src: State
    dst: State
    event: str
    action: str = ""
    main: bool = True


TRANSITIONS: Final[tuple[Transition, ...]] = (
    Transition(S.CLOSED, S.LISTEN, "passive OPEN", "create TCB"),
    Transition(S.CLOSED, S.SYN_SENT, "active OPEN", "snd SYN"),
    Transition(S.LISTEN, S.SYN_RECEIVED, "rcv SYN", "snd SYN,ACK"),
    Transition(S.LISTEN, S.SYN_SENT, "SEND", "snd SYN"),
    Transition(S.LISTEN, S.CLOSED, "CLOSE", "delete TCB"),
    Transition(S.SYN_SENT, S.SYN_RECEIVED, "rcv SYN", "snd SYN,ACK"),
    Transition(S.SYN_SENT, S.ESTABLISHED, "rcv SYN,ACK", "snd ACK"),
    Transition(S.SYN_SENT, S.CLOSED, "CLOSE", "delete TCB"),
    Transition(S.SYN_RECEIVED, S.ESTABLISHED, "rcv ACK of SYN"),
    Transition(S.SYN_RECEIVED, S.FIN_WAIT_1, "CLOSE", "snd FIN"),
    Transition(S.SYN_RECEIVED, S.LISTEN, "rcv RST (passive open)", main=False),
    Transition(S.ESTABLISHED, S.FIN_WAIT_1, "CLOSE", "snd FIN"),
    Transition(S.ESTABLISHED, S.CLOSE_WAIT, "rcv FIN", "snd ACK"),
    Transition(S.FIN_WAIT_1, S.FIN_WAIT_2, "rcv ACK of FIN"),
    Transition(S.FIN_WAIT_1, S.CLOSING, "rcv FIN", "snd ACK"),
    Transition(S.FIN_WAIT_2, S.TIME_WAIT, "rcv FIN", "snd ACK"),
    Transition(S.CLOSE_WAIT, S.LAST_ACK, "CLOSE", "snd FIN"),
    Transition(S.CLOSING, S.TIME_WAIT, "rcv ACK of FIN"),
    Transition(S.LAST_ACK, S.CLOSED, "rcv ACK of FIN", "delete TCB"),
    Transition(S.TIME_WAIT, S.CLOSED, "timeout=2MSL", "delete TCB"),
    # Resets, aborts and timeouts (RFC 9293 §3.10.5, §3.10.7.3/4, §3.10.8)
    Transition(S.SYN_SENT, S.CLOSED, "rcv RST / timeout / ABORT", main=False),
    Transition(S.SYN_RECEIVED, S.CLOSED, "rcv RST (active open) / timeout / ABORT", main=False),
    Transition(S.ESTABLISHED, S.CLOSED, "rcv RST / timeout / ABORT", main=False),
    Transition(S.FIN_WAIT_1, S.CLOSED, "rcv RST / timeout / ABORT", main=False),
    Transition(S.FIN_WAIT_2, S.CLOSED, "rcv RST / timeout / ABORT", main=False),
    Transition(S.CLOSE_WAIT, S.CLOSED, "rcv RST / timeout / ABORT", main=False),
    Transition(S.CLOSING, S.CLOSED, "rcv RST / timeout / ABORT", main=False),
    Transition(S.LAST_ACK, S.CLOSED, "rcv RST / timeout / ABORT", main=False),
    Transition(S.TIME_WAIT, S.CLOSED, "rcv RST / ABORT", main=False),
)

_LEGAL: Final = frozenset((t.src, t.dst) for t in TRANSITIONS)


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


class ConnectionAborted(RemoteError):
    """The local user aborted the connection (ABORT call)."""


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


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a user can tune, per connection. Defaults follow the RFCs; ``lab()`` is a set
    of shorter timers for the simulated network.

    * ``mss``: the MSS we announce (MUST-14, MUST-67); None = derived from the MTU by the host.
    * ``snd_buf``/``rcv_buf``: octets of send and receive buffer (SO_SNDBUF/SO_RCVBUF).
    * ``msl``: maximum segment lifetime; TIME-WAIT lasts 2×MSL (RFC 9293 §3.4.2: 2 minutes).
    * ``rto_initial``/``rto_min``/``rto_max``: RFC 6298 (1 s, 1 s, 60 s).
    * ``r1``: retransmissions before the delivery-problem report (SHLD-10: at least 3).
    * ``r2``/``r2_syn``: seconds of retransmission before giving up (SHLD-11: ≥ 100 s;
      MUST-23: ≥ 3 minutes for a SYN). Per connection (MUST-21).
    * ``user_timeout``: seconds unacknowledged data may wait before the connection is aborted.
    * ``keepalive``/``keepidle``/``keepintvl``/``keepcnt``: RFC 9293 §3.8.4 (MUST-24..29):
      off by default, idle 2 hours, then ``keepcnt`` probes ``keepintvl`` apart.
    * ``delayed_ack``: delay of a lone ACK (MUST-40: < 0.5 s; 0 = ACK every segment at once).
    * ``nodelay``: disable Nagle (MUST-17).
    * ``fin_wait_2_timeout``: abort an orphaned FIN-WAIT-2 after this long (None: never, as in the RFC).
    * ``window_scaling``/``timestamps``/``sack``: offer RFC 7323/2018 options on the SYN.
    * ``challenge_ack_limit``: RFC 5961 §7 challenge ACKs per second per connection.
    * ``ooo_limit``: octets of out-of-order data held (None: the receive buffer size).
    * ``congestion``: the congestion-control algorithm ("newreno").
    * ``sack_recovery``: when SACK was negotiated, recover losses with the SACK blocks the peer
      sends (RFC 6675) instead of RFC 5681/6582 fast retransmit and fast recovery.
    """

    mss: int | None = None
    snd_buf: int = 256 * 1024
    rcv_buf: int = 256 * 1024
    msl: float = 120.0
    rto_initial: float = 1.0
    rto_min: float = 1.0
    rto_max: float = 60.0
    r1: int = 3
    r2: float = 100.0
    r2_syn: float = 180.0
    user_timeout: float | None = None
    keepalive: bool = False
    keepidle: float = 7200.0
    keepintvl: float = 75.0
    keepcnt: int = 9
    delayed_ack: float = 0.2
    nodelay: bool = False
    fin_wait_2_timeout: float | None = None
    window_scaling: bool = True
    timestamps: bool = True
    sack: bool = True
    challenge_ack_limit: int = 10
    ooo_limit: int | None = None
    congestion: str = "newreno"
    sack_recovery: bool = True

    def __post_init__(self) -> None:
        if self.mss is not None and not 64 <= self.mss <= 65495:
            raise ValueError(f"mss {self.mss} out of range 64..65495")
        if self.snd_buf < 1 or self.rcv_buf < 1:
            raise ValueError("buffer sizes must be positive")
        if self.msl < 0:
            raise ValueError("msl must not be negative")
        if not 0 <= self.delayed_ack < 0.5:
            raise ValueError("delayed_ack must be in [0, 0.5) seconds (RFC 9293 MUST-40)")
        if self.keepidle <= 0 or self.keepintvl <= 0 or self.keepcnt < 1:
            raise ValueError("keepalive idle/interval must be > 0 and count >= 1")

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)

    @classmethod
    def lab(cls, **changes: Any) -> Config:
        """Shorter timers for the simulated network: MSL 1 s (TIME-WAIT 2 s), no delayed ACK."""
        base = cls(msl=1.0, delayed_ack=0.0)
        return replace(base, **changes)


def _default_mss(ipv6: bool) -> int:
    """MUST-15: 536 for IPv4, 1220 for IPv6 when no MSS option was received."""
    return 1220 if ipv6 else 536


# ---------------------------------------------------------------------------------------------
# Reset generation for segments that belong to no connection (RFC 9293 §3.5.2, §3.10.7.1)
# ---------------------------------------------------------------------------------------------


def reset_for(seg: Segment) -> Segment | None:
    """The RST that answers ``seg`` when no connection wants it (or None: never RST a RST).

    If the ACK bit is on: ``<SEQ=SEG.ACK><CTL=RST>``; otherwise
    ``<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`` (RFC 9293 §3.10.7.1).
    """
    if seg.flags & RST:
        return None
    if seg.ack is not None:
        return Segment(seg.dst_port, seg.src_port, seg.ack, None, RST, 0)
    return Segment(seg.dst_port, seg.src_port, 0, (seg.seq + seg.seg_len) & _MASK, RST | ACK, 0)


Tracer = Callable[["Connection", str, dict[str, Any]], None]


# ---------------------------------------------------------------------------------------------
# The connection
# ---------------------------------------------------------------------------------------------


class Connection:
    """The transmission control block and its event processing (RFC 9293 §3.3.1, §3.10).

    Send sequence variables: ``snd_una``, ``snd_nxt``, ``snd_wnd``, ``snd_up``, ``snd_wl1``,
    ``snd_wl2``, ``iss`` (plus ``snd_max``, the highest sequence number sent).
    Receive sequence variables: ``rcv_nxt``, ``rcv_wnd`` (derived from the advertised right edge
    ``rcv_adv``), ``rcv_up``, ``irs``.
    """

    __slots__ = (
        "__weakref__",
        "_ack_now",
        "_ack_pending_segs",
        "_app_closed",
        "_chal_count",
        "_chal_start",
        "_fast_rexmit",
        "_fin_queued",
        "_high_rxt",
        "_ka_probes",
        "_last_rcv",
        "_mtu_mss",
        "_ooo",
        "_ooo_fin",
        "_out",
        "_peer_fin",
        "_persist_backoff",
        "_probe_due",
        "_r1_reported",
        "_rbuf",
        "_rec_point",
        "_recovering",
        "_rescue_rxt",
        "_rexmit_start",
        "_rexmits",
        "_rtt_seq",
        "_rtt_time",
        "_sack_dupacks",
        "_sack_first",
        "_sacked",
        "_sbuf",
        "_sbuf_seq",
        "_syn_opts_sent",
        "_t_delack",
        "_t_finwait2",
        "_t_keepalive",
        "_t_persist",
        "_t_rexmit",
        "_t_timewait",
        "cc",
        "config",
        "error",
        "events",
        "ipv6",
        "irs",
        "iss",
        "last_ack_sent",
        "local_addr",
        "local_port",
        "max_snd_wnd",
        "notify",
        "now",
        "passive",
        "rcv_adv",
        "rcv_mss",
        "rcv_nxt",
        "rcv_up",
        "rcv_wscale",
        "remote_addr",
        "remote_port",
        "reuseaddr",
        "rtt",
        "sack_ok",
        "snd_max",
        "snd_mss",
        "snd_nxt",
        "snd_una",
        "snd_up",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "state",
        "stats",
        "tos",
        "tracer",
        "ts_offset",
        "ts_ok",
        "ts_recent",
        "tso_max",
        "ttl",
        "ws_ok",
    )

    def __init__(
        self,
        local: tuple[str, int],
        remote: tuple[str, int],
        *,
        iss: int,
        config: Config | None = None,
        mtu: int = 1500,
        ts_offset: int = 0,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = cfg = config or Config()
        self.local_addr, self.local_port = local
        self.remote_addr, self.remote_port = remote
        self.ipv6 = ":" in self.local_addr
        self.state = State.CLOSED
        self.passive = False
        self.tracer = tracer
        self.notify: Callable[[Connection], None] | None = None
        self.now = 0.0
        self.reuseaddr = False
        self.error: TcpError | None = None
        self.events: list[Event] = []
        self.ttl = 64  # MUST-49
        self.tos = 0  # MUST-48
        # Send sequence space (RFC 9293 §3.3.1)
        self.iss = iss & _MASK
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        self.snd_wnd = 0
        self.snd_up = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        # Receive sequence space
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.rcv_up = 0
        self.last_ack_sent = 0
        # Options
        header = 60 if self.ipv6 else 40
        self._mtu_mss = max(mtu - header, 64)  # the largest segment the IP layer can send (EMTU_S)
        self.rcv_mss = cfg.mss if cfg.mss is not None else self._mtu_mss
        self.snd_mss = _default_mss(self.ipv6)
        # TSO: the driver can cut a segment of up to this many octets of payload into snd_mss
        # pieces (0 = it cannot). Set by the host from Host.tso_max; see _next_data.
        self.tso_max = 0
        self.rcv_wscale = 0
        self.snd_wscale = 0
        self.ws_ok = False
        self.ts_ok = False
        self.ts_offset = ts_offset & _MASK
        self.ts_recent = 0
        self.sack_ok = False
        self._syn_opts_sent = False
        # Buffers
        self._sbuf = bytearray()
        self._sbuf_seq = (self.iss + 1) & _MASK
        self._rbuf = bytearray()
        self._ooo: ReassemblyQueue | None = None
        self._ooo_fin: int | None = None
        self._fin_queued = False
        self._peer_fin = False
        self._app_closed = False
        # Output flags
        self._out: list[Segment] = []
        self._ack_now = False
        self._ack_pending_segs = 0
        self._fast_rexmit = False
        self._probe_due = False
        # SACK-based loss recovery (RFC 6675): the scoreboard, SACKed ranges above SND.UNA as
        # (left, right) sequence numbers in order (at most _SACK_RANGES of them); DupAcks;
        # RecoveryPoint (kept after a recovery ends: a new one waits until SND.UNA reaches it);
        # HighRxt and RescueRxt (exclusive ends: the octet after the one the RFC names).
        self._sacked: list[tuple[int, int]] = []
        self._sack_dupacks = 0
        self._recovering = False
        self._rec_point: int | None = None
        self._high_rxt = 0
        self._rescue_rxt: int | None = None
        self._sack_first = False
        # Timers (absolute deadlines, or None)
        self._t_rexmit: float | None = None
        self._t_delack: float | None = None
        self._t_timewait: float | None = None
        self._t_keepalive: float | None = None
        self._t_persist: float | None = None
        self._t_finwait2: float | None = None
        self._persist_backoff = 0
        self._rexmit_start: float | None = None
        self._rexmits = 0
        self._r1_reported = False
        self._rtt_seq: int | None = None
        self._rtt_time = 0.0
        self._last_rcv = 0.0
        self._ka_probes = 0
        self._chal_start = -1.0
        self._chal_count = 0
        self.rtt = RttEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max)
        self.cc: CongestionControl = make_congestion_control(cfg.congestion, self.snd_mss)
        self.stats = [0, 0, 0]  # segments in, segments out, retransmissions

    # -----------------------------------------------------------------------------------------
    # Small helpers
    # -----------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (f"<Connection {self.local_addr}:{self.local_port} -> {self.remote_addr}:{self.remote_port}"
                f" {self.state.value}>")

    @property
    def rcv_wnd(self) -> int:
        """RCV.WND: the window we have advertised, from RCV.NXT to the advertised right edge."""
        return max(_diff(self.rcv_adv, self.rcv_nxt), 0)

    @property
    def fin_seq(self) -> int | None:
        """Sequence number of our FIN once CLOSE was called (it follows the last data octet)."""
        if not self._fin_queued:
            return None
        return (self._sbuf_seq + len(self._sbuf)) & _MASK

    @property
    def fin_acked(self) -> bool:
        f = self.fin_seq
        return f is not None and self.snd_una == (f + 1) & _MASK

    @property
    def send_space(self) -> int:
        """Octets SEND would accept now (SO_SNDBUF minus what is buffered)."""
        return max(self.config.snd_buf - len(self._sbuf), 0)

    @property
    def readable(self) -> int:
        """Octets ready for RECEIVE."""
        return len(self._rbuf)

    @property
    def at_eof(self) -> bool:
        """The peer's FIN has been received and every octet before it has been read."""
        return self._peer_fin and not self._rbuf

    @property
    def unsent(self) -> int:
        return len(self._sbuf) - _diff(self.snd_nxt, self._sbuf_seq)

    def _trace(self, kind: str, **fields: Any) -> None:
        if self.tracer is not None:
            self.tracer(self, kind, fields)

    def _touch(self, now: float) -> None:
        """A user call happened at ``now``: remember the time and tell the owner (a Host) that
        this connection may have something to send."""
        self.now = now
        if self.notify is not None:
            self.notify(self)

    def _set_state(self, new: State, why: str) -> None:
        """The one place where the state changes (checked against TRANSITIONS)."""
        old = self.state
        if (old, new) not in _LEGAL:
            raise AssertionError(f"illegal transition {old}=>{new} ({why})")
        self.state = new
        if self.tracer is not None:
            self._trace("state", old=old, new=new, why=why)

    def _event(self, ev: Event) -> None:
        """Queue a report for the user. Reports are readiness notifications: one pending entry
        per kind is enough, so the list stays bounded even when nobody drains it."""
        if ev not in self.events:
            self.events.append(ev)

    def end_time_wait(self, why: str) -> None:
        """(Host) a new connection takes over this TIME-WAIT 4-tuple (SO_REUSEADDR or MAY-2):
        delete the TCB."""
        if self.state is State.TIME_WAIT:
            self._teardown(None, why, report=False)

    def drain_events(self) -> list[Event]:
        ev = self.events
        self.events = []
        return ev

    # -----------------------------------------------------------------------------------------
    # User calls (RFC 9293 §3.10.1–§3.10.6)
    # -----------------------------------------------------------------------------------------

    def open_active(self, now: float) -> None:
        """OPEN, active (§3.10.1): send <SEQ=ISS><CTL=SYN>, enter SYN-SENT."""
        self._touch(now)
        self._trace("call", call="OPEN active")
        if self.state is State.CLOSED:
            self._set_state(State.SYN_SENT, "active OPEN")
        elif self.state is State.LISTEN:
            self.passive = False
            self._set_state(State.SYN_SENT, "SEND/OPEN on a listening TCB")
        else:
            raise ConnectionExists("error: connection already exists")
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        self._last_rcv = now

    def open_passive(self, now: float) -> None:
        """OPEN, passive (§3.10.1): enter LISTEN."""
        self._touch(now)
        self._trace("call", call="OPEN passive")
        if self.state is not State.CLOSED:
            raise ConnectionExists("error: connection already exists")
        self.passive = True
        self._set_state(State.LISTEN, "passive OPEN")

    def send(self, data: bytes, now: float) -> int:
        """SEND (§3.10.2). Queues as much of ``data`` as the send buffer has room for and returns
        that count (0 when full: backpressure, the buffer never grows past ``snd_buf``)."""
        self._touch(now)
        st = self.state
        if st is State.CLOSED:
            raise self.error if isinstance(self.error, RemoteError) else NoConnection(
                "error: connection does not exist")
        if st is State.LISTEN:
            self.open_active(now)  # §3.10.2 LISTEN: change from passive to active
        elif self._fin_queued or st not in _CAN_SEND:
            raise ConnectionClosing("error: connection closing")
        room = self.config.snd_buf - len(self._sbuf)
        if room <= 0:
            return 0
        chunk = data if len(data) <= room else data[:room]
        self._sbuf += chunk
        return len(chunk)

    def receive(self, max_bytes: int, now: float) -> bytes | None:
        """RECEIVE (§3.10.3). Returns up to ``max_bytes`` octets; ``b""`` at end of stream (the
        peer's FIN was consumed — the RFC's "connection closing" reply); ``None`` when nothing is
        available yet. A connection that failed raises its error."""
        self._touch(now)
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        if self._rbuf:
            n = min(max_bytes, len(self._rbuf))
            data = bytes(self._rbuf[:n])
            del self._rbuf[:n]
            self._window_opened(now)
            return data
        if self._peer_fin:
            return b""
        if self.state is State.CLOSED:
            if isinstance(self.error, RemoteError):
                raise self.error
            if self.error is None and self.passive is False and self.stats[0] == 0:
                raise NoConnection("error: connection does not exist")
            return b""
        if self.state in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
            raise ConnectionClosing("error: connection closing")
        return None

    def close(self, now: float, *, discard_input: bool = False) -> None:
        """CLOSE (§3.10.4): "I have no more to send". Queued data still goes out before the FIN
        (L13). With ``discard_input`` (the socket close(): MAY-1 half-duplex close) unread data
        makes it an abort with RST (SHLD-3), and data arriving later draws a RST."""
        self._touch(now)
        self._trace("call", call="CLOSE")
        st = self.state
        if discard_input:
            self._app_closed = True
            if self._rbuf and st.synchronized:
                self.abort(now, why="CLOSE with unread data (SHLD-3)")
                return
        if st is State.CLOSED:
            raise NoConnection("error: connection does not exist")
        if st is State.LISTEN:
            self._set_state(State.CLOSED, "CLOSE")
            self._clear_timers()
            self._event(Event.CLOSED)
            return
        if st is State.SYN_SENT:
            self._set_state(State.CLOSED, "CLOSE")
            self._clear_timers()
            self._sbuf.clear()
            self._event(Event.CLOSED)
            return
        if st in (State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT):
            if self._fin_queued:
                raise ConnectionClosing("error: connection closing")
            self._fin_queued = True
            if st is State.CLOSE_WAIT:
                self._set_state(State.LAST_ACK, "CLOSE")
            elif st is State.ESTABLISHED or not self._sbuf:
                self._set_state(State.FIN_WAIT_1, "CLOSE")
            # SYN-RECEIVED with pending data: FIN-WAIT-1 is entered on reaching ESTABLISHED.
            return
        if st in (State.FIN_WAIT_1, State.FIN_WAIT_2):
            return  # §3.10.4: an "ok" is acceptable as long as no second FIN is emitted
        raise ConnectionClosing("error: connection closing")

    def abort(self, now: float, *, why: str = "ABORT") -> None:
        """ABORT (§3.10.5): <SEQ=SND.NXT><CTL=RST> from a synchronized state, then CLOSED.
        This is what ``SO_LINGER`` with a zero timeout does on close (L12)."""
        self._touch(now)
        self._trace("call", call="ABORT")
        st = self.state
        if st is State.CLOSED:
            raise NoConnection("error: connection does not exist")
        if st in (State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
                  State.CLOSE_WAIT):
            self._out.append(self._make(self.snd_max, None, RST, b"", now, window=False))
        # §3.10.5: "All queued SENDs and RECEIVEs should be given 'connection reset'
        # notification": nothing received before the ABORT is delivered after it.
        self._rbuf.clear()
        self._peer_fin = False
        self._teardown(ConnectionAborted("connection aborted by the local user"), why, report=False)

    def status(self) -> dict[str, Any]:
        """STATUS (§3.10.6): the state and the TCB (same as :meth:`snapshot`)."""
        if self.state is State.CLOSED and self.error is None and self.stats[0] == 0 and not self.passive:
            raise NoConnection("error: connection does not exist")
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """Every variable of the TCB, the timers and the buffers, as plain values."""
        return {
            "state": self.state.value,
            "local": f"{self.local_addr}:{self.local_port}",
            "remote": f"{self.remote_addr}:{self.remote_port}",
            "iss": self.iss, "snd_una": self.snd_una, "snd_nxt": self.snd_nxt, "snd_max": self.snd_max,
            "snd_wnd": self.snd_wnd, "snd_wl1": self.snd_wl1, "snd_wl2": self.snd_wl2,
            "irs": self.irs, "rcv_nxt": self.rcv_nxt, "rcv_wnd": self.rcv_wnd,
            "snd_mss": self.snd_mss, "rcv_mss": self.rcv_mss,
            "snd_wscale": self.snd_wscale, "rcv_wscale": self.rcv_wscale,
            "timestamps": self.ts_ok, "sack": self.sack_ok,
            "cwnd": self.cc.cwnd, "ssthresh": self.cc.ssthresh,
            "srtt": self.rtt.srtt, "rttvar": self.rtt.rttvar, "rto": self.rtt.rto,
            "send_buffered": len(self._sbuf), "unsent": self.unsent, "recv_buffered": len(self._rbuf),
            "out_of_order": self._ooo.held if self._ooo else 0,
            "timers": {k: v for k, v in (
                ("retransmit", self._t_rexmit), ("delayed_ack", self._t_delack),
                ("time_wait", self._t_timewait), ("keepalive", self._t_keepalive),
                ("persist", self._t_persist), ("fin_wait_2", self._t_finwait2)) if v is not None},
            "segments_in": self.stats[0], "segments_out": self.stats[1], "retransmissions": self.stats[2],
            "error": None if self.error is None else type(self.error).__name__,
        }

    # -----------------------------------------------------------------------------------------
    # SEGMENT ARRIVES (RFC 9293 §3.10.7)
    # -----------------------------------------------------------------------------------------

    def handle_segment(self, seg: Segment, now: float) -> None:
        """Process one arriving segment (already checksummed and demultiplexed to us)."""
        self.now = now
        self.stats[0] += 1
        if self.tracer is not None:
            self._trace("in", seg=seg)
        st = self.state
        if st is State.CLOSED:
            self._closed_arrives(seg)
        elif st is State.LISTEN:
            self._listen_arrives(seg, now)
        elif st is State.SYN_SENT:
            self._syn_sent_arrives(seg, now)
        else:
            self._other_arrives(seg, now)

    def _drop(self, reason: str) -> None:
        self._trace("drop", reason=reason)

    def _closed_arrives(self, seg: Segment) -> None:
        """§3.10.7.1: everything is discarded; anything but a RST draws a RST."""
        rst = reset_for(seg)
        if rst is not None:
            self._out.append(rst)

    def _listen_arrives(self, seg: Segment, now: float) -> None:
        """§3.10.7.2."""
        flags = seg.flags
        if flags & RST:  # first: an incoming RST should be ignored
            self._drop("RST in LISTEN")
            return
        if seg.ack is not None:  # second: any acknowledgment is bad in LISTEN
            self._out.append(Segment(seg.dst_port, seg.src_port, seg.ack, None, RST, 0))
            self._drop("ACK in LISTEN")
            return
        if not flags & SYN:  # fourth: other control or text: drop
            self._drop("no SYN in LISTEN")
            return
        # third: SYN. RCV.NXT <- SEG.SEQ+1, IRS <- SEG.SEQ; send <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>
        self._take_syn_options(seg)
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & _MASK
        self.snd_wnd = seg.window  # SYN windows are never scaled (RFC 7323 §2.2)
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = seg.seq
        self.snd_wl2 = 0
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        # The window of our SYN,ACK (unscaled, RFC 7323 §2.2) starts at RCV.NXT. Set it here, not
        # lazily from "rcv_adv == 0": 0 is a legitimate right edge after wrap-around, and a TCB
        # back in LISTEN (§3.10.7.4 second/fourth step) still holds the old connection's edge.
        self.rcv_adv = (self.rcv_nxt + min(self.config.rcv_buf, 0xFFFF)) & _MASK
        self._last_rcv = now
        self._set_state(State.SYN_RECEIVED, "rcv SYN")
        # Data on a SYN is not taken (no TCP Fast Open): it is not acknowledged, so the peer
        # sends it again once the connection is established.

    def _syn_sent_arrives(self, seg: Segment, now: float) -> None:
        """§3.10.7.3."""
        flags = seg.flags
        ack = seg.ack
        # First, check the ACK bit.
        if ack is not None and (_le(ack, self.iss) or _lt(self.snd_max, ack)):
            if not flags & RST:
                self._out.append(Segment(seg.dst_port, seg.src_port, ack, None, RST, 0))
            self._drop("unacceptable ACK in SYN-SENT")
            return
        # Second, check the RST bit.
        if flags & RST:
            if ack is not None:
                self._teardown(ConnectionRefused("connection refused"), "rcv RST (refused)",
                               event=Event.REFUSED)
            else:
                self._drop("RST without ACK in SYN-SENT")
            return
        # Third: security/compartment does not apply (no IP security option is used).
        # Fourth, check the SYN bit.
        if not flags & SYN:
            self._drop("neither SYN nor RST in SYN-SENT")  # fifth
            return
        self._take_syn_options(seg)
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & _MASK
        # The window of our SYN (unscaled, RFC 7323 §2.2) now has a left edge: RCV.NXT. Before the
        # IRS was known RCV.NXT was 0, and an edge computed from it is meaningless.
        self.rcv_adv = (self.rcv_nxt + min(self.config.rcv_buf, 0xFFFF)) & _MASK
        self._last_rcv = now
        if ack is not None:
            self._ack_advances(ack, now)
        if _lt(self.iss, self.snd_una):
            # Our SYN has been ACKed: ESTABLISHED, send <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
            self.snd_wnd = seg.window  # not scaled in a SYN segment (RFC 7323 §2.2)
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = ack if ack is not None else 0
            self._set_state(State.ESTABLISHED, "rcv SYN,ACK")
            self._established(now)
            self._ack_now = True
            # Data or FIN on a SYN,ACK: continue at the sixth step (URG) of §3.10.7.4.
            if seg.payload or flags & FIN:
                self._process_text_and_fin(seg, (seg.seq + 1) & _MASK, seg.payload, bool(flags & FIN), now)
            return
        # Simultaneous open: enter SYN-RECEIVED, send <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>.
        self.snd_wnd = seg.window
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = seg.seq
        self.snd_wl2 = 0
        self.snd_nxt = self.iss  # the SYN,ACK is built by rewinding to ISS
        self._set_state(State.SYN_RECEIVED, "rcv SYN (simultaneous open)")

    def _acceptable(self, seq: int, seg_len: int, rst: bool = False) -> bool:
        """RFC 9293 §3.10.7.4 Table 6: the segment acceptability test.

        One widening, for the problem RFC 9293 Appendix A.2 describes: an empty segment whose
        SEG.SEQ is exactly RCV.NXT+RCV.WND is acceptable. A peer that has filled our window sends
        its ACKs with SEG.SEQ = SND.NXT = our right edge; by the letter of Table 6 each of them is
        unacceptable and draws an ACK, and when both ends sit at each other's right edge those ACKs
        answer each other once per round trip ("ACK war"). Linux accepts them the same way.
        Not for a RST: RFC 5961 §3.2 drops a RST outside the window silently."""
        wnd = self.rcv_wnd
        rcv_nxt = self.rcv_nxt
        if seg_len == 0:
            if wnd == 0:
                return seq == rcv_nxt
            off = (seq - rcv_nxt) & _MASK
            return off < wnd or (off == wnd and not rst)
        if wnd == 0:
            return False
        return ((seq - rcv_nxt) & _MASK) < wnd or ((seq + seg_len - 1 - rcv_nxt) & _MASK) < wnd

    def _other_arrives(self, seg: Segment, now: float) -> None:
        """§3.10.7.4: the synchronized states and SYN-RECEIVED, in the RFC's eight steps."""
        st = self.state
        flags = seg.flags
        seq = seg.seq
        payload = seg.payload
        syn = bool(flags & SYN)
        fin = bool(flags & FIN)
        seg_len = len(payload) + syn + fin

        # RFC 7323 §5.3 PAWS: a segment whose timestamp is older than TS.Recent is a duplicate.
        ts = _timestamps(seg) if self.ts_ok else None
        if ts is not None and not flags & RST:
            if ((ts.tsval - self.ts_recent) & _MASK) >= _HALF:
                self._drop("PAWS: old timestamp")
                self._ack_now = True
                return

        # Simultaneous open (RFC 793 Figure 8, line 6): our SYN-RECEIVED peer repeats its SYN
        # with the ACK of our SYN; the SYN lies left of the window and is trimmed off, the rest
        # begins exactly at RCV.NXT.
        if syn and st is State.SYN_RECEIVED and seq == self.irs:
            if not self.passive and seg.ack is not None:
                seq = (seq + 1) & _MASK
                syn = False
                seg_len -= 1
                if self.snd_nxt == self.iss:
                    # Our SYN,ACK (Figure 7 line 5) has not left yet — the driver read the peer's
                    # SYN and this SYN,ACK in one batch — and once ESTABLISHED it never will, so
                    # nothing would acknowledge the peer's SYN: the repeated SYN is left of the
                    # window, and §3.10.7.4 (first step) answers it with <ACK=RCV.NXT>. Without
                    # it a Linux peer waits in SYN-RECEIVED for its SYN,ACK retransmission.
                    self._ack_now = True
            elif seg.ack is None and not flags & RST:
                # A retransmitted SYN: our SYN,ACK was lost, send it again (rewind to ISS).
                self._drop("duplicate SYN in SYN-RECEIVED: SYN,ACK resent")
                self.snd_nxt = self.iss
                return

        # First, check the sequence number.
        if not self._acceptable(seq, seg_len, bool(flags & RST)):
            if self.rcv_wnd == 0 and seq == self.rcv_nxt and not syn:
                # Zero window: the text is not acceptable, but ACK, URG and RST are (MUST-66).
                payload = b""
                fin = False
                self._ack_now = True
            elif flags & RST:
                self._drop("RST outside the window")
                return
            else:
                if st is State.TIME_WAIT and fin and ((seq + seg_len) & _MASK) == self.rcv_nxt:
                    # A retransmitted FIN: acknowledge it and restart the 2 MSL timer (L10,
                    # §3.10.7.4 fifth step, TIME-WAIT).
                    self._t_timewait = now + 2 * self.config.msl
                    self._trace("timer", timer="time-wait", action="restart")
                self._drop("unacceptable segment: ACK sent")
                self._ack_now = True
                return

        # Second, check the RST bit (RFC 5961 §3.2).
        if flags & RST:
            if seq != self.rcv_nxt:
                self._challenge_ack(now, "RST in window but not at RCV.NXT")
                return
            if st is State.SYN_RECEIVED:
                if self.passive:
                    self._reset_to_listen("rcv RST")
                else:
                    self._teardown(ConnectionRefused("connection refused"), "rcv RST (refused)",
                                   event=Event.REFUSED)
                return
            if st in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
                self._teardown(None, "rcv RST", report=False)
                return
            self._teardown(ConnectionReset("connection reset by peer"), "rcv RST", event=Event.RESET)
            return

        # Third: security/compartment — not applicable.

        # Fourth, check the SYN bit.
        if syn:
            if st is State.SYN_RECEIVED and self.passive:
                self._reset_to_listen("rcv SYN in SYN-RECEIVED")
                return
            self._challenge_ack(now, "SYN in a synchronized state (RFC 5961 §4)")
            return

        # Fifth, check the ACK field.
        ack = seg.ack
        if ack is None:
            self._drop("no ACK bit")
            return
        if st is State.SYN_RECEIVED:
            if _lt(self.snd_una, ack) and _le(ack, self.snd_max):
                self.snd_wnd = seg.window << self.snd_wscale
                self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
                self.snd_wl1 = seq
                self.snd_wl2 = ack
                self._ack_advances(ack, now)
                self._set_state(State.ESTABLISHED, "rcv ACK of SYN")
                self._established(now)
                if self._fin_queued:
                    self._set_state(State.FIN_WAIT_1, "CLOSE (queued in SYN-RECEIVED)")
                st = self.state
            else:
                self._out.append(Segment(seg.dst_port, seg.src_port, ack, None, RST, 0))
                self._drop("unacceptable ACK in SYN-RECEIVED")
                return
        else:
            # RFC 5961 §5 (MAY-12): (SND.UNA - MAX.SND.WND) =< SEG.ACK =< SND.NXT
            if _lt(self.snd_max, ack):
                self._drop("ACK of data not yet sent: ACK sent")
                self._ack_now = True
                return
            if _lt(ack, (self.snd_una - self.max_snd_wnd) & _MASK):
                self._drop("ACK below SND.UNA - MAX.SND.WND (RFC 5961 §5): ACK sent")
                self._ack_now = True
                return
            # RFC 6675: record the SACK blocks (Update()); an ACK that SACKs new octets is a
            # DupAck even when it carries data or advances SND.UNA (§2).
            sack_rec = self.sack_ok and self.config.sack_recovery
            sack_dup = sack_rec and _le(self.snd_una, ack) and self._sack_update(seg, ack)
            if sack_rec and not sack_dup and ack == self.snd_una and not payload and not fin \
                    and self.snd_max != self.snd_una and seg.option(Sack) is None \
                    and (seg.window << self.snd_wscale) == self.snd_wnd and self.snd_wnd != 0:
                # A peer that negotiated SACK but sends an RFC 5681 duplicate ACK without any SACK
                # block: count it as a DupAck too, or such a peer would get no fast retransmit.
                sack_dup = True
            if _lt(self.snd_una, ack):
                if self.snd_una == self.iss:
                    # Our SYN is ACKed only now: CLOSE in SYN-RECEIVED went to FIN-WAIT-1 (or on to
                    # CLOSING) before it was (§3.10.4). The connection has still been established
                    # (§3.10.7.4 fifth step, SYN-RECEIVED): report it as the SYN-RECEIVED path does.
                    self._event(Event.CONNECTED)
                self._ack_advances(ack, now, ts.tsecr if ts is not None else None)
            elif not sack_rec and ack == self.snd_una and not payload and not fin \
                    and self.snd_max != self.snd_una \
                    and (seg.window << self.snd_wscale) == self.snd_wnd and self.snd_wnd != 0:
                # A duplicate ACK (RFC 5681 §2). Not with a zero window: those ACKs answer our
                # zero-window probes (§3.8.6.1) and say "no room", not "a segment was lost".
                if self.cc.on_dupack(self.snd_max, _diff(self.snd_max, self.snd_una)):
                    self._fast_rexmit = True
                    self._rtt_seq = None
            if sack_dup:
                self._sack_dupack()
            # Window update (§3.10.7.4 ESTABLISHED): only if SND.UNA =< SEG.ACK =< SND.NXT (an older
            # ACK is merely tolerated by RFC 5961 §5), and not from an older segment (WL1/WL2).
            if _le(self.snd_una, ack) and (
                    _lt(self.snd_wl1, seq) or (self.snd_wl1 == seq and _le(self.snd_wl2, ack))):
                self.snd_wnd = seg.window << self.snd_wscale
                if self.snd_wnd > self.max_snd_wnd:
                    self.max_snd_wnd = self.snd_wnd
                self.snd_wl1 = seq
                self.snd_wl2 = ack
                if self.snd_wnd == 0 and _lt(self.snd_una, self.snd_nxt):
                    # The window is closed and what we sent past SND.UNA (e.g. the octet of a
                    # zero-window probe) was refused: send it again first when the window opens
                    # (SHLD-16), rather than continuing after it and leaving a hole.
                    self.snd_nxt = self.snd_una
            if self.snd_wnd == 0 and self._rexmit_start is not None:
                # MUST-37 (§3.8.6.1): a peer that answers our probes with a zero window is alive;
                # R2 (§3.8.3) measures an unresponsive peer, so its clock starts again.
                self._rexmit_start = now
        self._last_rcv = now
        self._ka_probes = 0
        if ts is not None and _le(seq, self.last_ack_sent):
            self.ts_recent = ts.tsval  # RFC 7323 §4.3

        # Per-state ACK consequences.
        if self.fin_acked:
            if st is State.FIN_WAIT_1:
                self._set_state(State.FIN_WAIT_2, "rcv ACK of FIN")
                st = self.state
                if self._app_closed and self.config.fin_wait_2_timeout is not None:
                    self._t_finwait2 = now + self.config.fin_wait_2_timeout
            elif st is State.CLOSING:
                self._enter_time_wait(now, "rcv ACK of FIN")
                return
            elif st is State.LAST_ACK:
                self._teardown(None, "rcv ACK of FIN", report=False)
                return
        if st is State.TIME_WAIT:
            if fin:  # a retransmitted FIN: acknowledge it and restart the 2 MSL timeout
                self._ack_now = True
                self._t_timewait = now + 2 * self.config.msl
                self._trace("timer", timer="time-wait", action="restart")
            return

        self._process_text_and_fin(seg, seq, payload, fin, now)

    def _process_text_and_fin(self, seg: Segment, seq: int, payload: bytes, fin: bool, now: float) -> None:
        """Sixth (URG), seventh (text) and eighth (FIN) steps of §3.10.7.4."""
        st = self.state
        # Sixth: URG. RCV.UP <- max(RCV.UP, SEG.UP) — urgent data is delivered inline.
        if seg.flags & URG and st in _CAN_RECEIVE_TEXT:
            up = (seg.seq + seg.urg) & _MASK
            if _lt(self.rcv_up, up) or self.rcv_up == 0:
                self.rcv_up = up
                self._event(Event.URGENT)
        # Seventh: the segment text.
        if payload:
            if st not in _CAN_RECEIVE_TEXT:
                self._drop("text after the peer's FIN")
                payload = b""
            elif self._app_closed:
                # Data for an application that has closed: it can never be read (SHLD-3).
                self.abort(now, why="data after CLOSE (SHLD-3)")
                return
        rcv_nxt = self.rcv_nxt
        if payload:
            off = (rcv_nxt - seq) & _MASK
            if off < _HALF:  # starts at or before RCV.NXT: trim the old part
                if off:
                    payload = payload[off:]
                    seq = rcv_nxt
            wnd = self.rcv_wnd
            if len(payload) > wnd + _diff(rcv_nxt, seq):
                keep = wnd + _diff(rcv_nxt, seq)
                payload = payload[:max(keep, 0)]
                fin = False  # the FIN lies beyond the window
            if seq == rcv_nxt:
                if payload:
                    self._rbuf += payload
                    rcv_nxt = self.rcv_nxt = (rcv_nxt + len(payload)) & _MASK
                    if self._ooo is not None and len(self._ooo):
                        more = self._ooo.pop_ready(rcv_nxt)
                        if more:
                            self._rbuf += more
                            rcv_nxt = self.rcv_nxt = (rcv_nxt + len(more)) & _MASK
                        self._ack_now = True  # a hole was filled: ACK at once (RFC 5681 §4.2)
                    self._event(Event.READABLE)
                    self._schedule_ack(len(payload), now)
            else:
                # Out of order: hold it (SHLD-31) and send a duplicate ACK at once (MAY-13).
                if self._ooo is None:
                    self._ooo = ReassemblyQueue(self.config.ooo_limit or self.config.rcv_buf)
                if not self._ooo.add(seq, payload, rcv_nxt):
                    self._drop("reassembly queue full")
                if fin:
                    self._ooo_fin = (seq + len(payload)) & _MASK
                    fin = False
                self._ack_now = True
        if self._ooo_fin is not None and self._ooo_fin == self.rcv_nxt and not fin:
            fin = True
            self._ooo_fin = None
        elif fin and ((seq + len(payload)) & _MASK) != self.rcv_nxt:
            if not payload and _lt(self.rcv_nxt, seq):
                self._ooo_fin = seq  # a bare FIN ahead of a hole
                self._ack_now = True
            fin = False
        # Eighth: the FIN bit.
        if fin and st in (State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
                          State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
            if self._peer_fin:
                self._ack_now = True
                return
            self._peer_fin = True
            self.rcv_nxt = (self.rcv_nxt + 1) & _MASK
            self._event(Event.PEER_CLOSED)
            if st in (State.SYN_RECEIVED, State.ESTABLISHED):
                # "send an acknowledgment for the FIN" — as a delayed ACK (§3.8.6.3, MUST-40 bounds
                # the wait): an application that closes as soon as it reads the end of the stream
                # sends its FIN within the delay, and the ACK rides on it: the three-segment close
                # of seed 001 (L3). In the closing states the ACK leaves at once (below).
                self._schedule_ack(0, now)
                self._set_state(State.CLOSE_WAIT, "rcv FIN")
                return
            self._ack_now = True
            if st is State.FIN_WAIT_1:
                # "If our FIN has been ACKed (perhaps in this segment), then enter TIME-WAIT":
                # an ACK of our FIN in this segment already moved us to FIN-WAIT-2 in the fifth
                # step (handled below), so here our FIN is still unacknowledged.
                self._set_state(State.CLOSING, "rcv FIN")
            elif st is State.FIN_WAIT_2:
                self._enter_time_wait(now, "rcv FIN")

    # -----------------------------------------------------------------------------------------
    # Pieces of segment processing
    # -----------------------------------------------------------------------------------------

    def _take_syn_options(self, seg: Segment) -> None:
        """Read MSS (MUST-14/15), window scale (RFC 7323 §2), timestamps (§3) and SACK-permitted
        (RFC 2018) from a SYN. Scaling and timestamps apply only if both ends offered them."""
        cfg = self.config
        mss = None
        wscale = None
        ts = None
        sack = False
        for opt in seg.options:
            if isinstance(opt, Mss):
                mss = opt.value
            elif isinstance(opt, WindowScale):
                wscale = opt.shift
            elif isinstance(opt, Timestamps):
                ts = opt
            elif isinstance(opt, SackPermitted):
                sack = True
        offered_here = self.state is State.LISTEN or self._syn_opts_sent
        if wscale is not None and cfg.window_scaling and offered_here:
            self.ws_ok = True
            self.snd_wscale = min(wscale, 14)  # RFC 7323 §2.3: values above 14 are treated as 14
            self.rcv_wscale = _wscale_for(cfg.rcv_buf)
        else:
            self.ws_ok = False
            self.snd_wscale = self.rcv_wscale = 0
        if ts is not None and cfg.timestamps and offered_here:
            self.ts_ok = True
            self.ts_recent = ts.tsval
        else:
            self.ts_ok = False
        self.sack_ok = sack and cfg.sack and offered_here
        # MUST-15/MUST-16 (§3.7.1): Eff.snd.MSS = min(SendMSS, what IP can send) minus the TCP
        # options every segment carries (12 octets of timestamps when they are in use).
        send_mss = mss if mss is not None and mss > 0 else _default_mss(self.ipv6)
        self.snd_mss = max(min(send_mss, self._mtu_mss) - (12 if self.ts_ok else 0), 1)
        self.cc.reset_mss(self.snd_mss)

    def _established(self, now: float) -> None:
        self._event(Event.CONNECTED)
        self._event(Event.SEND_SPACE)
        self._last_rcv = now
        self._rexmits = 0
        if self.config.keepalive:
            self._t_keepalive = now + self.config.keepidle

    def _ack_advances(self, ack: int, now: float, tsecr: int | None = None) -> None:
        """SND.UNA < SEG.ACK =< SND.NXT: remove what is acknowledged, take an RTT sample (Karn:
        only from a segment that was not retransmitted, MUST-18 — or, after a retransmission,
        from the timestamp echo, which names the transmission it answers: RFC 7323 §4), feed
        congestion control."""
        acked = _diff(ack, self.snd_una)
        flight = _diff(self.snd_max, self.snd_una)
        # Data octets acknowledged (excluding our SYN and FIN).
        data_end = ack
        f = self.fin_seq
        if f is not None and _lt(f, ack):
            data_end = f
        n = _diff(data_end, self._sbuf_seq)
        if n > 0:
            del self._sbuf[:n]
            self._sbuf_seq = (self._sbuf_seq + n) & _MASK
            self._event(Event.SEND_SPACE)
        self.snd_una = ack
        if _lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        if self._rtt_seq is not None and _le(self._rtt_seq, ack):
            self.rtt.sample(now - self._rtt_time)
            self._rtt_seq = None
        elif tsecr and self._rtt_seq is None and self.rtt.backoff:
            # Karn leaves no timed segment after a timeout; without this, a lossy path keeps the
            # backed-off RTO (up to 60 s) for good and R2 ends the connection.
            elapsed_ms = (int(now * 1000) + self.ts_offset - tsecr) & _MASK
            if elapsed_ms < _HALF:
                self.rtt.sample(elapsed_ms / 1000)
        self._rexmits = 0
        self._r1_reported = False
        self._persist_backoff = 0
        if self._sacked:
            self._sack_prune()
        self._sack_dupacks = 0  # RFC 6675 §5: a cumulative ACK resets DupAcks
        if self._recovering:
            # §5 (A): an ACK of RecoveryPoint ends the recovery; cwnd stays at ssthresh, set on
            # entry, and the ACKs of the recovery do not grow it.
            rp = self._rec_point
            if rp is None or _le(rp, ack):
                self._recovering = False
                self._sack_first = False
                self._trace("recovery", action="end", ack=ack)
        elif self.state.synchronized and self.state is not State.SYN_RECEIVED:
            if self.cc.on_ack(acked, ack, flight):
                self._fast_rexmit = True
        # RFC 6298 §5.2/§5.3: stop the timer when everything is acknowledged, else restart it.
        if self.snd_una == self.snd_max:
            self._t_rexmit = None
            self._rexmit_start = None
        else:
            self._t_rexmit = now + self.rtt.rto
            self._rexmit_start = now

    # -----------------------------------------------------------------------------------------
    # SACK-based loss recovery, sender side (RFC 6675; SACK blocks are advisory: RFC 2018 §8)
    # -----------------------------------------------------------------------------------------

    def _sack_update(self, seg: Segment, ack: int) -> bool:
        """Update() (RFC 6675 §4): record the SACK blocks of an ACK (SND.UNA =< SEG.ACK) in the
        scoreboard. Only octets between SEG.ACK and HighData count; blocks outside (D-SACK, stale,
        malformed) are ignored. Returns True when some octet was neither acknowledged nor SACKed
        before: the ACK is then a DupAck (§2)."""
        blocks: tuple[tuple[int, int], ...] = ()
        for opt in seg.options:
            if isinstance(opt, Sack):
                blocks = opt.blocks
                break
        if not blocks:
            return False
        una = self.snd_una
        top = _diff(self.snd_max, una)
        start = _diff(ack, una)
        rel = [(_diff(lo, una), _diff(hi, una)) for lo, hi in self._sacked]
        new = False
        for left, right in blocks:
            if not _lt(left, right):
                continue  # empty or reversed: malformed
            lo = max(_diff(left, una), start)
            hi = min(_diff(right, una), top)
            if hi <= lo:
                continue
            covered = 0
            for a, b in rel:
                if a < hi and lo < b:
                    covered += min(b, hi) - max(a, lo)
            if covered < hi - lo:
                new = True
                rel = _range_insert(rel, lo, hi)
        if new:
            del rel[_SACK_RANGES:]
            self._sacked = [((lo + una) & _MASK, (hi + una) & _MASK) for lo, hi in rel]
        return new

    def _sack_prune(self) -> None:
        """SND.UNA advanced: forget what the scoreboard holds below it."""
        una = self.snd_una
        self._sacked = [(una if _lt(lo, una) else lo, hi) for lo, hi in self._sacked if _lt(una, hi)]

    def _sack_forget(self) -> None:
        """RTO (RFC 6675 §5.1, RFC 2018 §8): the peer may have reneged; end any recovery and
        clear the scoreboard. No new recovery begins before SND.UNA reaches HighData."""
        self._sacked = []
        self._sack_dupacks = 0
        self._recovering = False
        self._sack_first = False
        self._rec_point = self.snd_max
        self._high_rxt = self.snd_una
        self._rescue_rxt = None

    def _sack_dupack(self) -> None:
        """A DupAck arrived (RFC 6675 §5): enter loss recovery on the DupThresh'th one, or earlier
        when IsLost(HighACK+1) — unless a recovery runs, or SND.UNA has not yet passed the
        previous RecoveryPoint, or a timeout rewound SND.NXT."""
        self._sack_dupacks += 1
        if self._recovering or self.snd_nxt != self.snd_max or self.snd_una == self.snd_max:
            return
        rp = self._rec_point
        if rp is not None and _lt(self.snd_una, rp):
            return
        if self._sack_dupacks < _DUP_THRESH:
            holes = self._sack_holes()
            if not holes or holes[0][0] != 0 or not holes[0][2]:
                return  # IsLost(HighACK+1) is false
        self._recovering = True
        self._rec_point = self.snd_max  # (4.1) RecoveryPoint = HighData
        self.cc.on_loss_recovery(_diff(self.snd_max, self.snd_una))  # (4.2)
        self._high_rxt = self.snd_una
        self._rescue_rxt = None
        self._sack_first = True  # (4.3): the segment at HighACK+1 leaves with the next output
        self._rtt_seq = None  # as for RFC 5681 fast retransmit: no sample across the recovery
        self._trace("recovery", action="enter", point=self.snd_max, dupacks=self._sack_dupacks)

    def _sack_holes(self) -> list[tuple[int, int, bool]]:
        """The un-SACKed ranges between SND.UNA and HighData as (start, end, lost) offsets from
        SND.UNA, in order; the last one may lie above every SACKed octet. ``lost`` is IsLost()
        of their octets (§4): DupThresh SACKed ranges, or more than (DupThresh−1)·SMSS SACKed
        octets, above them — the same for every octet of one hole."""
        una = self.snd_una
        top = _diff(self.snd_max, una)
        rel = [(_diff(lo, una), _diff(hi, una)) for lo, hi in self._sacked]
        limit = (_DUP_THRESH - 1) * self.snd_mss
        holes: list[tuple[int, int, bool]] = []
        above = sum(hi - lo for lo, hi in rel)
        prev = 0
        for i, (lo, hi) in enumerate(rel):
            if lo > prev:
                holes.append((prev, lo, len(rel) - i >= _DUP_THRESH or above > limit))
            above -= hi - lo
            prev = max(prev, hi)
        if prev < top:
            holes.append((prev, top, False))
        return holes

    def _sack_pipe(self, holes: list[tuple[int, int, bool]]) -> int:
        """SetPipe() (§4): every un-SACKed octet counts once if it is not lost, and once more if
        it was retransmitted (below HighRxt)."""
        rxt = _diff(self._high_rxt, self.snd_una)
        pipe = 0
        for lo, hi, lost in holes:
            if not lost:
                pipe += hi - lo
            if rxt > lo:
                pipe += min(rxt, hi) - lo
        return pipe

    def _sack_next_seg(self, holes: list[tuple[int, int, bool]]) -> tuple[int, int, int] | None:
        """NextSeg() (§4), rules (1), (3) and (4): (offset, length, rule) of the retransmission
        to send, or None. Rule (2), new data, is the caller's, between rules (1) and (3)."""
        rxt = max(_diff(self._high_rxt, self.snd_una), 0)
        mss = self.snd_mss
        below_sacked = [h for h in holes if h[1] <= _diff(self._sacked[-1][1], self.snd_una)] \
            if self._sacked else []
        for lo, hi, lost in below_sacked:  # (1) the first lost octet above HighRxt
            if lost and hi > rxt:
                s = max(lo, rxt)
                return s, min(mss, hi - s), 1
        return None

    def _sack_last_resort(self, holes: list[tuple[int, int, bool]]) -> tuple[int, int, int] | None:
        """NextSeg() rules (3) and (4), when neither a lost segment nor new data can go."""
        una = self.snd_una
        rxt = max(_diff(self._high_rxt, una), 0)
        mss = self.snd_mss
        if self._sacked:
            high = _diff(self._sacked[-1][1], una)
            for lo, hi, _lost in holes:  # (3) an un-SACKed octet above HighRxt, below a SACK
                if hi <= high and hi > rxt:
                    s = max(lo, rxt)
                    return s, min(mss, hi - s), 3
        r = self._rescue_rxt
        if holes and (r is None or _lt(r, una)):
            # (4) one rescue retransmission per recovery, ending at the highest un-SACKed octet.
            lo, hi, _lost = holes[-1]
            s = max(lo, hi - mss)
            return s, hi - s, 4
        return None

    def _recovery_output(self, now: float, out: list[Segment]) -> bool:
        """Output during loss recovery (§5 steps 4.3 and C): the first retransmission at once,
        then NextSeg() while cwnd − pipe >= SMSS. Retransmissions are one MSS at most (no TSO)."""
        una = self.snd_una
        mss = self.snd_mss
        sent = False
        if self.snd_wnd == 0:
            self._sack_first = False
            return False  # a closed window: the persist and retransmission timers take over
        holes = self._sack_holes()
        if self._sack_first:
            self._sack_first = False
            n = min(mss, holes[0][1]) if holes and holes[0][0] == 0 else mss
            seg = self._data_segment(una, n, now, rexmit=True)
            if seg is not None:
                out.append(seg)
                sent = True
                end = (una + max(seg.seg_len, 1)) & _MASK
                self._high_rxt = self._rescue_rxt = end
                holes = self._sack_holes()
        pipe = self._sack_pipe(holes)
        for _ in range(1 << 16):
            if self.cc.cwnd - pipe < mss:
                break
            nxt = self._sack_next_seg(holes)
            if nxt is None:
                seg = self._recovery_new_data(now)
                if seg is not None:
                    out.append(seg)
                    sent = True
                    pipe += seg.seg_len
                    continue
                nxt = self._sack_last_resort(self._sack_holes())
                if nxt is None:
                    break
            off, n, rule = nxt
            seq = (una + off) & _MASK
            seg = self._data_segment(seq, n, now, rexmit=True)
            if seg is None:
                break
            out.append(seg)
            sent = True
            end = (seq + max(seg.seg_len, 1)) & _MASK
            if rule == 4:
                self._rescue_rxt = self._rec_point  # (4): HighRxt is not updated
                self._trace("recovery", action="rescue", seq=seq)
            elif _lt(self._high_rxt, end):
                self._high_rxt = end  # (C.2)
            pipe += seg.seg_len  # (C.4)
        return sent

    def _recovery_new_data(self, now: float) -> Segment | None:
        """NextSeg() rule (2): one segment of new data (or the FIN) at HighData, if the peer's
        window allows; not timed (its ACK waits for the holes below it), never TSO."""
        hd = self.snd_max
        unsent = len(self._sbuf) - _diff(hd, self._sbuf_seq)
        f = self.fin_seq
        if unsent <= 0:
            if f is None or hd != f:
                return None
            return self._data_segment(hd, 0, now, rexmit=False)
        usable = self.snd_wnd - _diff(hd, self.snd_una)
        mss = self.snd_mss
        n = min(unsent, mss, usable)
        if n <= 0 or (n < mss and (n < unsent or not (self.config.nodelay or self._fin_queued))):
            return None  # SWS avoidance and Nagle hold a short segment back, as outside recovery
        was_timing = self._rtt_seq is not None
        seg = self._data_segment(hd, n, now, rexmit=False)
        if not was_timing:
            self._rtt_seq = None
        return seg

    def _schedule_ack(self, nbytes: int, now: float) -> None:
        """§3.8.6.3: delay the ACK (MUST-40: < 0.5 s), but ACK at least every second full-sized
        segment (SHLD-19)."""
        if self.config.delayed_ack <= 0:
            self._ack_now = True
            return
        # "Full-sized": allow for up to 40 octets of options in the peer's segments.
        self._ack_pending_segs += 1 if nbytes >= self.rcv_mss - 40 else 0
        if self._ack_pending_segs >= 2:
            self._ack_now = True
        elif self._t_delack is None:
            self._t_delack = now + self.config.delayed_ack

    def _challenge_ack(self, now: float, why: str) -> None:
        """RFC 5961 §3.2/§4: send <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, rate-limited (§7)."""
        if now - self._chal_start >= 1.0:
            self._chal_start = now
            self._chal_count = 0
        if self._chal_count < self.config.challenge_ack_limit:
            self._chal_count += 1
            self._ack_now = True
            self._drop(f"{why}: challenge ACK")
        else:
            self._drop(f"{why}: challenge ACK rate-limited")

    def _window_opened(self, now: float) -> None:
        """After the user reads: receiver SWS avoidance (§3.8.6.2.2). Move the right edge only
        when the free space grew by min(RCV.BUFF/2, Eff.snd.MSS); then send a window update."""
        if not self.state.synchronized or self._peer_fin:
            # After the peer's FIN no more text can come (§3.10.7.4 eighth step): a window update
            # is useless, and from TIME-WAIT it would draw a RST from a peer already CLOSED
            # (which ends our TIME-WAIT early, §3.10.7.4 second step).
            return
        free = self.config.rcv_buf - len(self._rbuf)
        cur = self.rcv_wnd
        if free - cur >= min(self.config.rcv_buf // 2, self.rcv_mss):
            self._ack_now = True

    def _advertise(self) -> int:
        """The window field to send, and RCV.WND/right edge bookkeeping. The right edge never
        moves left (SHLD-14)."""
        free = self.config.rcv_buf - len(self._rbuf)
        cur = self.rcv_wnd
        wnd = cur
        if free - cur >= min(self.config.rcv_buf // 2, self.rcv_mss):
            wnd = free
        shift = self.rcv_wscale
        field = (wnd + (1 << shift) - 1) >> shift if shift else wnd
        if field > 0xFFFF:
            field = 0xFFFF
        # Rounding the scaled field up keeps the peer from seeing a shrinking window (RFC 7323
        # §2.4), but the edge up to which we take data never passes the free buffer space: each
        # rounding would otherwise push it up to 2**shift − 1 octets past RCV.BUFF (memory bound).
        edge = (self.rcv_nxt + min(field << shift, max(free, cur))) & _MASK
        if _lt(self.rcv_adv, edge):  # rcv_adv is set once the IRS is known; 0 is a valid edge
            self.rcv_adv = edge
        return field

    def _enter_time_wait(self, now: float, why: str) -> None:
        self._set_state(State.TIME_WAIT, why)
        self._t_rexmit = self._t_persist = self._t_keepalive = self._t_finwait2 = None
        self._t_timewait = now + 2 * self.config.msl
        self._event(Event.CLOSED)

    def _reset_to_listen(self, why: str) -> None:
        """SYN-RECEIVED from a passive OPEN goes back to LISTEN (§3.10.7.4 second/fourth step).
        A host's listener child is then simply forgotten; the listener itself never left LISTEN."""
        self._set_state(State.LISTEN, why)
        self._clear_timers()
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        self.rcv_nxt = self.irs = 0
        self._sbuf.clear()
        self._rbuf.clear()

    def _teardown(self, error: TcpError | None, why: str, *, event: Event | None = None,
                  report: bool = True) -> None:
        """Delete the TCB: flush every queue, stop every timer, enter CLOSED."""
        if error is not None:
            self.error = error
        self._sbuf.clear()
        self._rbuf.clear() if isinstance(error, ConnectionReset) else None
        if self._ooo is not None:
            self._ooo.clear()
        self._clear_timers()
        self._set_state(State.CLOSED, why)
        if event is not None:
            self._event(event)
        self._event(Event.CLOSED)
        del report

    def _clear_timers(self) -> None:
        self._t_rexmit = self._t_delack = self._t_timewait = None
        self._t_keepalive = self._t_persist = self._t_finwait2 = None
        self._ack_now = False

    # -----------------------------------------------------------------------------------------
    # Output (pull)
    # -----------------------------------------------------------------------------------------

    def _make(self, seq: int, ack: int | None, flags: int, payload: bytes, now: float,
              *, window: bool = True, syn_options: bool = False) -> Segment:
        opts: tuple[Option, ...] = ()
        if syn_options:
            cfg = self.config
            syn_opts: list[Option] = [Mss(min(self.rcv_mss, 0xFFFF))]
            if cfg.sack and (self.state is State.SYN_SENT or self.sack_ok):
                syn_opts.append(SackPermitted())
            if cfg.timestamps and (self.state is State.SYN_SENT or self.ts_ok):
                syn_opts.append(Timestamps(self._tsval(now), self.ts_recent if ack is not None else 0))
            if cfg.window_scaling and (self.state is State.SYN_SENT or self.ws_ok):
                syn_opts.append(_NOP)
                syn_opts.append(WindowScale(_wscale_for(cfg.rcv_buf)))
            opts = tuple(syn_opts)
            self._syn_opts_sent = True
        elif self.ts_ok and not flags & RST:
            opts = (_NOP, _NOP, Timestamps(self._tsval(now), self.ts_recent))
            if self.sack_ok and self._ooo is not None and len(self._ooo) and ack is not None:
                opts += (_NOP, _NOP, Sack(self._ooo.sack_blocks(3)))
        elif self.sack_ok and self._ooo is not None and len(self._ooo) and ack is not None:
            opts = (_NOP, _NOP, Sack(self._ooo.sack_blocks(4)))
        if flags & SYN:
            wnd = min(self.config.rcv_buf, 0xFFFF)
            # A bare SYN (SYN-SENT) has no RCV.NXT yet: its edge is set when the IRS arrives.
            if ack is not None and (_lt(self.rcv_adv, (self.rcv_nxt + wnd) & _MASK) or self.rcv_adv == 0):
                self.rcv_adv = (self.rcv_nxt + wnd) & _MASK
        else:
            wnd = self._advertise() if window else 0
        if ack is not None:
            self.last_ack_sent = ack
        return Segment(self.local_port, self.remote_port, seq, ack, flags, wnd, opts, payload)

    def _tsval(self, now: float) -> int:
        return (int(now * 1000) + self.ts_offset) & _MASK

    def segments_to_send(self, now: float) -> list[Segment]:
        """Everything that is due to leave now: replies, SYN/SYN,ACK, data, FIN, ACKs, probes."""
        self.now = now
        out = self._out
        self._out = []
        st = self.state
        if st is State.CLOSED or st is State.LISTEN:
            return out
        # Our SYN is unacknowledged: SYN-SENT, SYN-RECEIVED, or FIN-WAIT-1/CLOSING entered by a
        # CLOSE in SYN-RECEIVED (§3.10.4), where the SYN,ACK still heads the retransmission queue.
        if st is State.SYN_SENT or st is State.SYN_RECEIVED or self.snd_una == self.iss:
            if self.snd_nxt == self.iss:
                if st is State.SYN_SENT:
                    seg = self._make(self.iss, None, SYN, b"", now, syn_options=True)
                else:
                    seg = self._make(self.iss, self.rcv_nxt, SYN | ACK, b"", now, syn_options=True)
                self._sent(seg, self.iss, 1, now)
                out.append(seg)
                self._ack_now = False
            if st is State.SYN_SENT:
                return out
            if self.snd_una == self.iss and st is State.SYN_RECEIVED:
                # Nothing else until our SYN is ACKed, except the ACK that §3.10.7.4 sends for an
                # unacceptable segment and RFC 5961 for an in-window RST (a challenge ACK).
                if self._ack_now:
                    seg = self._make(self.snd_max, self.rcv_nxt, ACK, b"", now)
                    self._count_out(seg)
                    out.append(seg)
                self._ack_now = False
                return out
        sent_any = False
        nxt: Segment | None
        if self._fast_rexmit:
            self._fast_rexmit = False
            # RFC 5681 §3.2: retransmit the segment that appears lost — data sent before, never
            # octets beyond snd_max (those are new data and wait for the window and cwnd).
            n = min(self.snd_mss, _diff(self.snd_max, self.snd_una))
            nxt = self._data_segment(self.snd_una, n, now, rexmit=True) if n > 0 else None
            if nxt is not None:
                out.append(nxt)
                sent_any = True
        if self._probe_due:
            self._probe_due = False
            usable = min(self.snd_wnd, self.cc.cwnd) - _diff(self.snd_nxt, self.snd_una)
            if usable > 0:
                # §3.8.6.2.1 rule (4): the override timeout sends what the open window allows —
                # a one-octet probe into an open window would itself be a silly window.
                nxt = self._data_segment(self.snd_nxt, min(usable, self.snd_mss), now, rexmit=False)
            else:
                nxt = self._data_segment(self.snd_una, 1, now, rexmit=True, probe=True)
            if nxt is not None:
                out.append(nxt)
                sent_any = True
        if self._recovering and st is not State.TIME_WAIT:
            if self._recovery_output(now, out):
                sent_any = True
        elif st is not State.TIME_WAIT:
            while True:
                nxt = self._next_data(now)
                if nxt is None:
                    break
                out.append(nxt)
                sent_any = True
        if self._ack_now and not sent_any:
            # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (§3.10.7.4): the RFC's SND.NXT is our snd_max.
            # After a timeout rewind snd_nxt lies below what the peer already received, and an
            # ACK carrying it would be unacceptable there, its ACK field never read (ACK war).
            seg = self._make(self.snd_max, self.rcv_nxt, ACK, b"", now)
            self._count_out(seg)
            out.append(seg)
            sent_any = True
        if sent_any:
            self._ack_now = False
            self._ack_pending_segs = 0
            self._t_delack = None
        self._arm_persist(now)
        return out

    def _next_data(self, now: float) -> Segment | None:
        """The next new segment the windows and Nagle allow, or None (RFC 9293 §3.8.6.2.1)."""
        snd_nxt = self.snd_nxt
        off = _diff(snd_nxt, self._sbuf_seq)
        unsent = len(self._sbuf) - off
        fin_seq = self.fin_seq
        fin_pending = fin_seq is not None and _le(snd_nxt, fin_seq)
        if unsent <= 0 and not fin_pending:
            return None
        cwnd = self.cc.cwnd
        if self._sack_dupacks and snd_nxt == self.snd_max:
            # RFC 3042 Limited Transmit (RFC 6675 §5 step 3): each of the first DupThresh−1
            # DupAcks lets one new segment go beyond cwnd, so that a small window still brings
            # the DupThresh'th DupAck instead of a timeout.
            cwnd += min(self._sack_dupacks, _DUP_THRESH - 1) * self.snd_mss
        wnd = min(self.snd_wnd, cwnd)
        usable = wnd - _diff(snd_nxt, self.snd_una)
        mss = self.snd_mss
        n = min(unsent, mss, max(usable, 0))
        if unsent > 0:
            if n <= 0:
                return None
            if n < mss and n < unsent:
                # Window-limited, less than a full segment: sender SWS avoidance — wait unless
                # it is at least half the largest window the peer ever offered. Not for a
                # retransmission after a timeout rewind (SND.NXT < snd_max): that data was sent
                # once already and RFC 6298 §5.4 requires it to go again; holding it back left
                # the retransmission timer firing forever with nothing sent.
                if (n < self.max_snd_wnd // 2 or self.max_snd_wnd == 0) and not _lt(snd_nxt, self.snd_max):
                    return None
            elif n < mss and not self.config.nodelay and not self._fin_queued \
                    and self.snd_max != self.snd_una and _lt(self.snd_una, snd_nxt):
                # Nagle (SHLD-7): a short segment waits while data is unacknowledged — unless
                # CLOSE was called: no later SEND can join it, so waiting would only delay the FIN.
                return None
            elif self.tso_max > mss and snd_nxt == self.snd_max:
                tso = self._tso_segment(snd_nxt, unsent, usable, now)
                if tso is not None:
                    return tso
        return self._data_segment(snd_nxt, n, now, rexmit=False)

    def _tso_segment(self, snd_nxt: int, unsent: int, usable: int, now: float) -> Segment | None:
        """TSO: one segment for the k ≥ 2 full-sized segments that would leave back to back now,
        or None. New data only (SND.NXT = snd_max): retransmissions stay MSS-sized. Each call of
        _next_data sends a full segment whenever min(unsent, usable) ≥ MSS (Nagle and SWS
        avoidance only hold back short ones) and nothing it reads changes in between but SND.NXT,
        so k·MSS octets here are exactly the octets of those k calls; the driver cuts them into
        MSS pieces again (PSH on the last one, one timestamp for all, as Linux TSO does)."""
        mss = self.snd_mss
        if self.sack_ok and self._ooo is not None and len(self._ooo):
            return None  # SACK blocks shorten the segments (_data_segment): keep them per-MSS
        k = min(unsent, usable, self.tso_max) // mss
        if k * mss == unsent and self.fin_seq is not None:
            k -= 1  # the FIN rides on the last piece: leave that one to the per-MSS path
        if k < 2:
            return None
        timing = self._rtt_seq is None
        seg = self._data_segment(snd_nxt, k * mss, now, rexmit=False)
        if timing and self._rtt_seq is not None:
            self._rtt_seq = (snd_nxt + mss) & _MASK  # time the first piece, as without TSO
        return seg

    def _data_segment(
        self, seq: int, n: int, now: float, *, rexmit: bool, probe: bool = False,
    ) -> Segment | None:
        off = _diff(seq, self._sbuf_seq)
        if off < 0:
            return None
        avail = len(self._sbuf) - off
        n = max(min(n, avail), 0)
        if self.sack_ok and self._ooo is not None and len(self._ooo):
            # RFC 9293 §3.7.1: Eff.snd.MSS counts every option sent; the SACK blocks _make adds
            # (2 NOPs, kind, length, 8 octets a block) come out of the room for data.
            blocks = min(len(self._ooo), 3 if self.ts_ok else 4)
            n = min(n, max(self.snd_mss - 4 - 8 * blocks, 1))
        payload = bytes(self._sbuf[off:off + n]) if n else b""
        flags = ACK
        if n and off + n == len(self._sbuf):
            flags |= PSH  # MUST-61: PSH on the last buffered segment
        fin_seq = self.fin_seq
        end = (seq + n) & _MASK
        if fin_seq is not None and end == fin_seq and not probe:
            flags |= FIN
        if not n and not flags & FIN:
            return None
        seg = self._make(seq, self.rcv_nxt, flags, payload, now)
        self._sent(seg, seq, n + (1 if flags & FIN else 0), now, rexmit=rexmit)
        return seg

    def _sent(self, seg: Segment, seq: int, seg_len: int, now: float, *, rexmit: bool = False) -> None:
        """Bookkeeping for a segment that occupies sequence space."""
        self._count_out(seg)
        end = (seq + seg_len) & _MASK
        retransmission = _lt(seq, self.snd_max) or rexmit
        if retransmission:
            self.stats[2] += 1
            if self._rtt_seq is not None and _lt(seq, self._rtt_seq):
                self._rtt_seq = None  # Karn: do not time a retransmitted segment
        elif self._rtt_seq is None:
            self._rtt_seq = end
            self._rtt_time = now
        if _lt(self.snd_nxt, end):
            self.snd_nxt = end
        if _lt(self.snd_max, end):
            self.snd_max = end
        if self._t_rexmit is None:
            self._t_rexmit = now + self.rtt.rto
            if self._rexmit_start is None:
                self._rexmit_start = now

    def _count_out(self, seg: Segment) -> None:
        self.stats[1] += 1
        if self.tracer is not None:
            self._trace("out", seg=seg)

    def _arm_persist(self, now: float) -> None:
        """Zero-window probing (§3.8.6.1, MUST-35/36, SHLD-29/30): when the peer's window is zero
        and data waits with nothing in flight, probe after RTO, then back off exponentially."""
        # The same timer is the override timeout of sender SWS avoidance (§3.8.6.2.1): a window
        # that is open but too small to send into (usable < min(D, Eff.snd.MSS)) with nothing in
        # flight would otherwise wait forever when the peer's window update is lost.
        usable = self.snd_wnd - _diff(self.snd_max, self.snd_una)
        if usable < min(self.unsent, self.snd_mss) and _diff(self.snd_max, self.snd_una) <= 1 \
                and self.state in _CAN_SEND_DATA:
            if self._t_persist is None:
                self._t_rexmit = None
                self._rexmit_start = None
                delay = min(self.rtt.rto * (1 << min(self._persist_backoff, 16)), self.config.rto_max)
                self._t_persist = now + delay
        else:
            self._t_persist = None
            if self._t_rexmit is None and self.snd_max != self.snd_una and self.state in _CAN_SEND_DATA:
                # Out of persist with a probe octet still unacknowledged: it is data, so the
                # retransmission timer must cover it (RFC 6298 §5.1), or a lost ACK stalls us.
                self._t_rexmit = now + self.rtt.rto
                self._rexmit_start = now

    # -----------------------------------------------------------------------------------------
    # Timeouts (RFC 9293 §3.10.8)
    # -----------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`handle_timeout` has something to do."""
        best: float | None = None
        for t in (self._t_rexmit, self._t_delack, self._t_timewait, self._t_keepalive,
                  self._t_persist, self._t_finwait2):
            if t is not None and (best is None or t < best):
                best = t
        return best

    @property
    def wants_output(self) -> bool:
        """True when :meth:`segments_to_send` would return something now."""
        if self._out or self._ack_now or self._fast_rexmit or self._probe_due or self._sack_first:
            return True
        st = self.state
        if st in (State.SYN_SENT, State.SYN_RECEIVED):
            return self.snd_nxt == self.iss
        if st in _CAN_SEND_DATA:
            return self.unsent > 0 or (self._fin_queued and _le(self.snd_nxt, self.fin_seq or 0))
        return False

    def handle_timeout(self, now: float) -> None:
        """Fire every timer whose deadline has come."""
        self.now = now
        if self._t_timewait is not None and now >= self._t_timewait:
            self._t_timewait = None
            self._trace("timer", timer="time-wait", action="expired")
            self._teardown(None, "timeout=2MSL", report=False)
            return
        if self._t_rexmit is not None and now >= self._t_rexmit:
            self._t_rexmit = None
            self._retransmission_timeout(now)
            if self.state is State.CLOSED:
                return
        if self._t_delack is not None and now >= self._t_delack:
            self._t_delack = None
            self._ack_now = True
        if self._t_persist is not None and now >= self._t_persist:
            self._t_persist = None
            cfg = self.config
            limit = cfg.user_timeout if cfg.user_timeout is not None else cfg.r2
            if self.snd_wnd == 0 and now - self._last_rcv >= limit:
                # MUST-20 (§3.8.3): a zero-window probe is a retransmitted data octet; R2 seconds
                # with no answer at all fail the connection. (MUST-37: answered probes never do.)
                self._trace("timer", timer="persist", action="give up (R2)")
                self._teardown(ConnectionTimedOut("connection timed out (zero-window probes unanswered)"),
                               "persist timeout (R2)", event=Event.TIMED_OUT)
                return
            self._persist_backoff += 1
            self._probe_due = True
            self._trace("timer", timer="persist", action="probe")
        if self._t_finwait2 is not None and now >= self._t_finwait2:
            self._t_finwait2 = None
            if self.state is State.FIN_WAIT_2:
                self._trace("timer", timer="fin-wait-2", action="expired")
                self._teardown(ConnectionTimedOut("FIN-WAIT-2 timeout"), "FIN-WAIT-2 timeout", report=False)
                return
        if self._t_keepalive is not None and now >= self._t_keepalive:
            self._keepalive_timeout(now)

    def _retransmission_timeout(self, now: float) -> None:
        """§3.10.8 RETRANSMISSION TIMEOUT with RFC 6298 §5.4–5.7 and the R1/R2 thresholds of
        §3.8.3 (MUST-20..23)."""
        st = self.state
        if self.snd_una == self.snd_max and st not in (State.SYN_SENT, State.SYN_RECEIVED):
            return
        cfg = self.config
        start = self._rexmit_start if self._rexmit_start is not None else now
        limit = cfg.r2_syn if st in (State.SYN_SENT, State.SYN_RECEIVED) else cfg.r2
        if cfg.user_timeout is not None and st not in (State.SYN_SENT, State.SYN_RECEIVED):
            limit = cfg.user_timeout
        if now - start >= limit:
            self._trace("timer", timer="retransmit", action="give up (R2)")
            self._teardown(ConnectionTimedOut("connection timed out"), "retransmission timeout (R2)",
                           event=Event.TIMED_OUT)
            return
        self._rexmits += 1
        self._trace("timer", timer="retransmit", action=f"retransmission #{self._rexmits}")
        if self._rexmits >= cfg.r1 and not self._r1_reported:
            self._r1_reported = True
            self._event(Event.DELIVERY_PROBLEM)
        self.cc.on_timeout(_diff(self.snd_max, self.snd_una))
        if self.sack_ok and self.config.sack_recovery:
            self._sack_forget()
        self.rtt.on_timeout()
        self._rtt_seq = None  # Karn
        self.snd_nxt = self.snd_una  # go back: output resends from SND.UNA (the SYN if unacked)
        self._t_rexmit = min(now + self.rtt.rto, start + limit)
        if self.snd_wnd == 0 and self.state.synchronized and self.state is not State.SYN_RECEIVED:
            # The window closed with data outstanding: nothing fits, so the retransmission is a
            # zero-window probe of one octet (MUST-35/36), or a lost window update would leave
            # both ends silent until R2.
            self._probe_due = True
        if st is State.SYN_RECEIVED and self.snd_una == self.iss:
            self.snd_nxt = self.iss

    def _keepalive_timeout(self, now: float) -> None:
        """§3.8.4: after ``keepidle`` of silence send <SEQ=SND.NXT-1><ACK=RCV.NXT> with no data
        (SHLD-12), every ``keepintvl``; ``keepcnt`` unanswered probes fail the connection
        (one lost probe alone never does: MUST-29)."""
        cfg = self.config
        if self.state not in (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_2) or not cfg.keepalive:
            self._t_keepalive = None
            return
        # Compare with the deadline exactly as it was computed: ``now - last < idle`` can hold at
        # now == last + idle in floating point (20.004 - 10.004 < 10.0), re-arming the timer
        # at ``now`` for ever (the host's timer loop then never ends).
        if self._ka_probes == 0 and now < self._last_rcv + cfg.keepidle:
            self._t_keepalive = self._last_rcv + cfg.keepidle
            return
        if self.snd_una != self.snd_max:  # MUST-26: only when no sent data is outstanding
            self._t_keepalive = now + cfg.keepintvl
            return
        if self._ka_probes >= cfg.keepcnt:
            self._trace("timer", timer="keepalive", action="peer dead")
            self._teardown(ConnectionTimedOut("connection timed out (keep-alive)"), "keep-alive timeout",
                           event=Event.TIMED_OUT)
            return
        self._ka_probes += 1
        self._trace("timer", timer="keepalive", action=f"probe #{self._ka_probes}")
        seg = self._make((self.snd_nxt - 1) & _MASK, self.rcv_nxt, ACK, b"", now)
        self._out.append(seg)
        self._count_out(seg)
        self._t_keepalive = now + cfg.keepintvl

    def set_keepalive(self, on: bool, now: float, *, idle: float | None = None,
                      interval: float | None = None, count: int | None = None) -> None:
        """Turn keep-alives on or off for this connection (MUST-24) and set their parameters."""
        self._touch(now)  # the keep-alive deadline changed: the owner must reschedule us
        changes: dict[str, Any] = {"keepalive": on}
        if idle is not None:
            changes["keepidle"] = idle
        if interval is not None:
            changes["keepintvl"] = interval
        if count is not None:
            changes["keepcnt"] = count
        self.config = self.config.with_(**changes)
        if on and self.state in (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_2):
            self._t_keepalive = self._last_rcv + self.config.keepidle
            if self._t_keepalive < now:
                self._t_keepalive = now
        elif not on:
            self._t_keepalive = None

    def set_nodelay(self, on: bool) -> None:
        """Disable (True) or enable the Nagle algorithm (MUST-17)."""
        self.config = self.config.with_(nodelay=on)
        if self.notify is not None:
            self.notify(self)  # data held back by Nagle may be sendable now

    def received_keepalive_activity(self, now: float) -> None:
        """(Host hook) any segment from the peer counts as activity for keep-alive."""
        self._last_rcv = now
        self._ka_probes = 0
        if self.config.keepalive and self.state in (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_2):
            self._t_keepalive = now + self.config.keepidle


_CAN_SEND: Final = frozenset((State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT))
_CAN_SEND_DATA: Final = frozenset((State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.LAST_ACK,
                                   State.CLOSING))
_CAN_RECEIVE_TEXT: Final = frozenset((State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2))


def _range_insert(ranges: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """``ranges`` (sorted, disjoint, non-adjacent [lo, hi) pairs) with [lo, hi) merged in."""
    res: list[tuple[int, int]] = []
    placed = False
    for a, b in ranges:
        if b < lo:
            res.append((a, b))
        elif hi < a:
            if not placed:
                res.append((lo, hi))
                placed = True
            res.append((a, b))
        else:
            lo = min(lo, a)
            hi = max(hi, b)
    if not placed:
        res.append((lo, hi))
    return res


def _timestamps(seg: Segment) -> Timestamps | None:
    for opt in seg.options:
        if isinstance(opt, Timestamps):
            return opt
    return None


def _wscale_for(buf: int) -> int:
    """The smallest shift that lets a 16-bit field describe ``buf`` octets (RFC 7323 §2.3, ≤ 14)."""
    shift = 0
    while (0xFFFF << shift) < buf and shift < 14:
        shift += 1
    return shift
