"""The transmission control block (RFC 9293 §3.3.1): its variables, and what it sends.

:class:`Tcb` holds every variable of a connection — the send and receive sequence spaces named
as the RFC names them, options, buffers, timers, the RTT estimator, congestion control and loss
recovery — and derives from them the segments that are due to leave (RFC 9293 §3.8, data
communication): the SYN or SYN,ACK while SND.NXT = ISS, data from SND.NXT within the windows,
Nagle and silly-window avoidance, the FIN, ACKs now or delayed, window probes, TSO segments and
the retransmissions of an RFC 6675 recovery. Nothing here changes the state: every transition is
:class:`~synack.core.connection.Connection`'s, which extends this class with the user calls,
segment arrival and the timeouts.

Output is derived, not queued: a retransmission timeout simply rewinds SND.NXT to SND.UNA, and
``snd_max`` keeps the highest sequence number ever sent (the RFC's SND.NXT before a rewind).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from synack.core.buffers import ReassemblyQueue
from synack.core.congestion import CONTROLLERS, CongestionController, make_controller
from synack.core.records import (
    Drop,
    Event,
    Observer,
    RecoveryAction,
    State,
    TcpError,
    Timer,
    TimerAction,
    Unreachable,
)
from synack.core.recovery import LossRecovery, NewRenoRecovery, SackRecovery
from synack.core.timers import ReplyLimiter, RttEstimator
from synack.core.wire import (
    ACK,
    FIN,
    PSH,
    SYN,
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
    shared_int,
)

__all__ = ["Config", "Tcb"]

_MASK: Final = 0xFFFFFFFF
_NOP: Final = Nop()  # Nop is frozen and has no fields: every segment can share one
_HALF: Final = 1 << 31

# Sequence-space comparisons (RFC 9293 §3.4), under short names: they appear on nearly every line.
_lt = seq_lt
_le = seq_le
_diff = seq_diff


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
    * ``fin_wait_2_timeout``: abort FIN-WAIT-2 this long after an application that closed its
      socket (``close(discard_input=True)``) can read nothing more (None: never, as in the RFC;
      default 60 s, Linux's ``tcp_fin_timeout``: a peer that vanished would hold it for ever).
    * ``min_snd_mss``: the smallest send MSS a peer's MSS option may impose (Linux's
      ``tcp_min_snd_mss``, 48): an MSS of 1 would cut a stream into 1-octet segments.
    * ``synack_retries``: how many times a listener's half-open child resends its SYN,ACK before
      it gives up (Linux's ``tcp_synack_retries``, 5: about 63 s with a 1 s RTO).
    * ``invalid_ratelimit``: seconds between two ACKs sent in reply to unacceptable segments
      (out of the window, PAWS) on one connection (Linux's ``tcp_invalid_ratelimit``, 0.5 s).
    * ``window_scaling``/``timestamps``/``sack``: offer RFC 7323/2018 options on the SYN.
    * ``challenge_ack_limit``: RFC 5961 §7 challenge ACKs per second per connection.
    * ``ooo_limit``: octets of out-of-order data held (None: the receive buffer size).
    * ``congestion``: the congestion controller, a name in
      :data:`~synack.core.congestion.CONTROLLERS` ("newreno").
    * ``initial_window``: the initial congestion window in segments (None: RFC 5681 §3.1
      equation (1), 2 to 4 segments by the MSS; 10 is Linux's and RFC 6928's). After a lost
      SYN it is one segment whatever this says (RFC 5681 §3.1).
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
    fin_wait_2_timeout: float | None = 60.0
    window_scaling: bool = True
    timestamps: bool = True
    sack: bool = True
    challenge_ack_limit: int = 10
    min_snd_mss: int = 48
    synack_retries: int = 5
    invalid_ratelimit: float = 0.5
    ooo_limit: int | None = None
    congestion: str = "newreno"
    initial_window: int | None = None
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
        if not 1 <= self.min_snd_mss <= 65495:
            raise ValueError(f"min_snd_mss {self.min_snd_mss} out of range 1..65495")
        if self.synack_retries < 0:
            raise ValueError("synack_retries must not be negative")
        if self.invalid_ratelimit < 0:
            raise ValueError("invalid_ratelimit must not be negative")
        if self.fin_wait_2_timeout is not None and self.fin_wait_2_timeout < 0:
            raise ValueError("fin_wait_2_timeout must not be negative")
        if self.initial_window is not None and not 1 <= self.initial_window <= 1000:
            raise ValueError(f"initial_window {self.initial_window} out of range 1..1000 segments")
        if self.congestion not in CONTROLLERS:
            raise ValueError(f"unknown congestion control {self.congestion!r} "
                             f"(known: {', '.join(sorted(CONTROLLERS))})")

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)

    @classmethod
    def lab(cls, **changes: Any) -> Config:
        """Shorter timers for the simulated network: MSL 1 s (TIME-WAIT 2 s), no delayed ACK."""
        base = cls(msl=1.0, delayed_ack=0.0)
        return replace(base, **changes)


_EMPTY: Final = b""
"""The send or receive buffer of a connection that holds no data (a bytearray once it does)."""

_NO_EVENTS: Final[tuple[Event, ...]] = ()
"""The events of a connection with none pending (a list once there is one)."""


def default_mss(ipv6: bool) -> int:
    """MUST-15: 536 for IPv4, 1220 for IPv6 when no MSS option was received."""
    return 1220 if ipv6 else 536


# ---------------------------------------------------------------------------------------------
# The TCB
# ---------------------------------------------------------------------------------------------


class Tcb:
    """The variables of one connection (RFC 9293 §3.3.1) and its output (§3.8).

    Send sequence variables: ``snd_una``, ``snd_nxt``, ``snd_wnd``, ``snd_wl1``, ``snd_wl2``,
    ``iss`` (plus ``snd_max``, the highest sequence number sent); no SND.UP, as SEND offers no
    urgent data (MUST-30, docs/conformance.md).
    Receive sequence variables: ``rcv_nxt``, ``rcv_wnd`` (derived from the advertised right edge
    ``rcv_adv``), ``rcv_up``, ``irs``.
    """

    __slots__ = (
        "_ack_now",
        "_ack_pending",
        "_app_closed",
        "_fast_rexmit",
        "_fin_queued",
        "_ka_probes",
        "_last_rcv",
        "_last_send",
        "_mtu_mss",
        "_ooo",
        "_ooo_fin",
        "_out",
        "_peer_fin",
        "_persist_backoff",
        "_probe_due",
        "_r1_reported",
        "_rbuf",
        "_replies",
        "_rexmit_start",
        "_rexmits",
        "_rtt_seq",
        "_rtt_time",
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
        "irs",
        "iss",
        "last_ack_sent",
        "local_addr",
        "local_port",
        "max_snd_wnd",
        "notify",
        "now",
        "passive",
        "peer_smss",
        "rcv_adv",
        "rcv_mss",
        "rcv_nxt",
        "rcv_up",
        "rcv_wscale",
        "recovery",
        "remote_addr",
        "remote_port",
        "replies_limited",
        "reuseaddr",
        "rexmitted",
        "rtt",
        "sack_ok",
        "segs_in",
        "segs_out",
        "snd_max",
        "snd_mss",
        "snd_nxt",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "soft_error",
        "state",
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
        tracer: Observer | None = None,
    ) -> None:
        self.config = cfg = config or Config()
        self.local_addr, self.local_port = local
        self.remote_addr, self.remote_port = remote
        self.state = State.CLOSED
        self.passive = False
        self.tracer = tracer
        self.notify: Callable[[Any], None] | None = None  # the owner: called with this connection
        self.now = 0.0
        self.reuseaddr = False
        self.error: TcpError | None = None
        self.soft_error: Unreachable | None = None  # an ICMP soft error, until read (SHLD-25)
        self.events: list[Event] | tuple[Event, ...] = _NO_EVENTS  # a list once there is one
        self.ttl = 64  # MUST-49
        self.tos = 0  # MUST-48
        # Send sequence space (RFC 9293 §3.3.1)
        self.iss = iss & _MASK
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        self.snd_wnd = self.snd_wl1 = self.snd_wl2 = self.max_snd_wnd = 0
        # Receive sequence space
        self.irs = self.rcv_nxt = self.rcv_adv = self.rcv_up = self.last_ack_sent = 0
        # Options
        header = 60 if self.ipv6 else 40
        self._mtu_mss = shared_int(max(mtu - header, 64))  # the largest segment IP can send (EMTU_S)
        self.rcv_mss = cfg.mss if cfg.mss is not None else self._mtu_mss
        self.snd_mss = default_mss(self.ipv6)
        # The peer's sending segment size as the largest segment it sent so far (RFC 5681 §4.2
        # "full-sized" is judged against it), starting from the default MSS (MUST-15).
        self.peer_smss = min(self.rcv_mss, self.snd_mss)
        # TSO: the driver can cut a segment of up to this many octets of payload into snd_mss
        # pieces (0 = it cannot). Set by the host from Host.tso_max; see _next_data.
        self.tso_max = 0
        self.rcv_wscale = self.snd_wscale = 0
        self.ws_ok = self.ts_ok = self.sack_ok = self._syn_opts_sent = False
        self.ts_offset = ts_offset & _MASK
        self.ts_recent = 0
        # Buffers: made with their first octet, dropped when empty (an idle connection has none)
        self._sbuf: bytearray | bytes = _EMPTY
        self._sbuf_seq = (self.iss + 1) & _MASK
        self._rbuf: bytearray | bytes = _EMPTY
        self._ooo: ReassemblyQueue | None = None
        self._ooo_fin: int | None = None
        self._fin_queued = self._peer_fin = self._app_closed = False
        # Output flags
        self._out: list[Segment] | None = None  # replies queued by the input; a list once there is one
        self._ack_now = self._fast_rexmit = self._probe_due = False
        self._ack_pending = 0  # octets received since the last ACK we sent
        self._replies: ReplyLimiter | None = None  # made at the first reply to an unacceptable segment
        # Timers (absolute deadlines, or None)
        self._t_rexmit: float | None = None
        self._t_delack: float | None = None
        self._t_timewait: float | None = None
        self._t_keepalive: float | None = None
        self._t_persist: float | None = None
        self._t_finwait2: float | None = None
        self._rexmit_start: float | None = None
        self._rtt_seq: int | None = None
        self._persist_backoff = self._rexmits = self._ka_probes = 0
        self._r1_reported = False
        self._rtt_time = self._last_rcv = 0.0
        self._last_send = -1.0  # when data (or the SYN) last left, for RFC 5681 §4.1
        self.rtt = RttEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max)
        self.cc: CongestionController = make_controller(cfg.congestion, self.snd_mss,
                                                        iw_segments=cfg.initial_window)
        # RFC 5681/6582 until the handshake negotiates SACK (then RFC 6675, _take_syn_options).
        self.recovery: LossRecovery = NewRenoRecovery(self.iss)
        # segments in, segments out, retransmissions, replies to unacceptable segments suppressed
        self.segs_in = self.segs_out = self.rexmitted = self.replies_limited = 0

    # -----------------------------------------------------------------------------------------
    # What the TCB says of itself
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

    def _event(self, ev: Event) -> None:
        """Queue a report for the user. Reports are readiness notifications: one pending entry
        per kind is enough, so the list stays bounded even when nobody drains it."""
        events = self.events
        if isinstance(events, list):
            if ev not in events:
                events.append(ev)
        else:
            self.events = [ev]

    def _append_rbuf(self, data: bytes) -> None:
        """In-order data for the user (the receive buffer is made with its first octets)."""
        buf = self._rbuf
        if isinstance(buf, bytearray):
            buf += data
        else:
            self._rbuf = bytearray(data)

    def _queue(self, seg: Segment) -> None:
        """A segment the input wants sent (a RST, a challenge ACK), ahead of the rest of the output."""
        out = self._out
        if out is None:
            self._out = [seg]
        else:
            out.append(seg)

    def _limiter(self) -> ReplyLimiter:
        lim = self._replies
        if lim is None:
            lim = self._replies = ReplyLimiter()
        return lim

    @property
    def ipv6(self) -> bool:
        return ":" in self.local_addr

    @property
    def stats(self) -> tuple[int, int, int, int]:
        """(segments in, segments out, retransmissions, replies to unacceptable segments that the
        rate limit suppressed)."""
        return self.segs_in, self.segs_out, self.rexmitted, self.replies_limited

    def _drop(self, reason: Drop) -> None:
        if self.tracer is not None:
            self.tracer.drop(self, reason)

    def _timer(self, timer: Timer, action: TimerAction, count: int = 0) -> None:
        if self.tracer is not None:
            self.tracer.timer(self, timer, action, count)

    def snapshot(self) -> dict[str, Any]:
        """Every variable of the TCB, the timers, the buffers, congestion control and loss
        recovery, as plain values."""
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
            "recovery": self.recovery.snapshot(),
            "send_buffered": len(self._sbuf), "unsent": self.unsent, "recv_buffered": len(self._rbuf),
            "out_of_order": self._ooo.held if self._ooo else 0,
            "timers": {k: v for k, v in (
                ("retransmit", self._t_rexmit), ("delayed_ack", self._t_delack),
                ("time_wait", self._t_timewait), ("keepalive", self._t_keepalive),
                ("persist", self._t_persist), ("fin_wait_2", self._t_finwait2)) if v is not None},
            "segments_in": self.segs_in, "segments_out": self.segs_out, "retransmissions": self.rexmitted,
            "replies_rate_limited": self.replies_limited,
            "error": None if self.error is None else type(self.error).__name__,
            "soft_error": None if self.soft_error is None else str(self.soft_error),
        }

    # -----------------------------------------------------------------------------------------
    # Output (pull): what is due to leave (§3.8)
    # -----------------------------------------------------------------------------------------

    def _schedule_ack(self, nbytes: int, now: float) -> None:
        """§3.8.6.3: delay the ACK (MUST-40: < 0.5 s), but ACK at least every second full-sized
        segment or 2·MSS octets of new data (SHLD-19; RFC 5681 §4.2). "Full-sized" is the peer's
        sending size, learnt from the largest segment it sent (as Linux's ``rcv_mss``): a peer
        whose MSS is smaller than ours sends full segments smaller than our MSS, and judging
        them against ours would ACK none of them before the delay."""
        if nbytes > self.peer_smss:
            self.peer_smss = min(nbytes, self.rcv_mss)
        if self.config.delayed_ack <= 0:
            self._ack_now = True
            return
        self._ack_pending += nbytes
        if self._ack_pending >= 2 * self.peer_smss:
            self._ack_now = True
        elif self._t_delack is None:
            self._t_delack = now + self.config.delayed_ack

    def _window_opened(self, now: float) -> None:
        """After the user reads: receiver SWS avoidance (§3.8.6.2.2). Move the right edge only
        when the free space grew by min(RCV.BUFF/2, Eff.snd.MSS); then send a window update."""
        if not self.state.synchronized or self._peer_fin:
            # After the peer's FIN no more text can come (§3.10.7.4 eighth step): a window update
            # is useless, and from TIME-WAIT it would draw a RST from a peer already CLOSED
            # (which ends our TIME-WAIT early, §3.10.7.4 second step).
            return
        # The window a 16-bit field can offer is the most a window update could say: without
        # scaling, a buffer larger than 65535 octets would otherwise send an update at every
        # read, each repeating the same 65535.
        free = min(self.config.rcv_buf - len(self._rbuf), 0xFFFF << self.rcv_wscale)
        cur = self.rcv_wnd
        if free - cur >= min(self.config.rcv_buf // 2, self.rcv_mss):
            self._ack_now = True

    def _advertise(self) -> int:
        """The window field to send, and RCV.WND/right edge bookkeeping (§3.8.6.2.2, RFC 7323
        §2.3–2.4). The window opens to the free buffer space by whole steps (receiver SWS
        avoidance) and its right edge never moves left (SHLD-14). With a scale factor the field
        is the window shifted right, rounded down — the data we take never passes the buffer —
        except where that would shrink the window already offered: then it is rounded up.
        Either way the edge the peer computes from the field is the edge we keep (``rcv_adv``)
        and take data up to, so a peer that fills the window it was given loses nothing."""
        free = self.config.rcv_buf - len(self._rbuf)
        cur = self.rcv_wnd
        wnd = cur
        if free - cur >= min(self.config.rcv_buf // 2, self.rcv_mss):
            wnd = free
        shift = self.rcv_wscale
        field = wnd >> shift
        if field << shift < cur:
            field = (cur + (1 << shift) - 1) >> shift  # round up, not shrink
        if field > 0xFFFF:
            field = 0xFFFF
        edge = (self.rcv_nxt + (field << shift)) & _MASK
        if _lt(self.rcv_adv, edge):  # rcv_adv is set once the IRS is known; 0 is a valid edge
            self.rcv_adv = edge
        return field

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
                syn_opts.append(WindowScale(wscale_for(cfg.rcv_buf)))
            opts = tuple(syn_opts)
            self._syn_opts_sent = True
        elif self.ts_ok:
            # RFC 7323 §3.2: TSopt in every segment, a RST included; TSecr is zero without ACK.
            opts = (_NOP, _NOP, Timestamps(self._tsval(now), self.ts_recent if ack is not None else 0))
            if self.sack_ok and self._ooo is not None and self._ooo.reportable and ack is not None:
                opts += (_NOP, _NOP, Sack(self._ooo.sack_blocks(3)))
        elif self.sack_ok and self._ooo is not None and self._ooo.reportable and ack is not None:
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
        if out is None:
            out = []
        else:
            self._out = None
        st = self.state
        if st is State.CLOSED or st is State.LISTEN:
            return out
        # Our SYN is unacknowledged: SYN-SENT, SYN-RECEIVED, or FIN-WAIT-1/CLOSING entered by a
        # CLOSE in SYN-RECEIVED (§3.10.4), where the SYN,ACK still heads the retransmission queue.
        if (st is State.SYN_SENT or st is State.SYN_RECEIVED or self.snd_una == self.iss) \
                and self._handshake_output(now, out):
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
        if self._probe_due and self._probe_output(now, out):
            sent_any = True
        rec = self.recovery
        if st is not State.TIME_WAIT:
            if rec.in_recovery and isinstance(rec, SackRecovery):
                if self._recovery_output(rec, now, out):
                    sent_any = True
            else:
                while (nxt := self._next_data(now)) is not None:
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
            self._ack_pending = 0
            self._t_delack = None
        self._arm_persist(now)
        return out

    def _handshake_output(self, now: float, out: list[Segment]) -> bool:
        """The SYN (SYN-SENT) or SYN,ACK while SND.NXT = ISS; until our SYN is acknowledged in
        SYN-RECEIVED nothing else leaves but the ACK that §3.10.7.4 sends for an unacceptable
        segment (or RFC 5961 for an in-window RST). Returns True when output stops here."""
        st = self.state
        if self.snd_nxt == self.iss:
            if st is State.SYN_SENT:
                seg = self._make(self.iss, None, SYN, b"", now, syn_options=True)
            else:
                seg = self._make(self.iss, self.rcv_nxt, SYN | ACK, b"", now, syn_options=True)
            self._sent(seg, self.iss, 1, now)
            out.append(seg)
            self._ack_now = False
        if st is State.SYN_SENT:
            return True
        if self.snd_una == self.iss and st is State.SYN_RECEIVED:
            if self._ack_now:
                seg = self._make(self.snd_max, self.rcv_nxt, ACK, b"", now)
                self._count_out(seg)
                out.append(seg)
            self._ack_now = False
            return True
        return False

    def _probe_output(self, now: float, out: list[Segment]) -> bool:
        """The persist timer fired: a zero-window probe of one octet at SND.UNA, or, into a window
        that is open but too small (§3.8.6.2.1 rule (4), the SWS override), what it allows — a
        one-octet probe into an open window would itself be a silly window."""
        self._probe_due = False
        usable = min(self.snd_wnd, self.cc.cwnd) - _diff(self.snd_nxt, self.snd_una)
        if usable > 0:
            seg = self._data_segment(self.snd_nxt, min(usable, self.snd_mss), now, rexmit=False)
        else:
            seg = self._data_segment(self.snd_una, 1, now, rexmit=True, probe=True)
        if seg is None:
            return False
        out.append(seg)
        return True

    def _recovery_output(self, rec: SackRecovery, now: float, out: list[Segment]) -> bool:
        """§5 steps 4.3 and C: the first retransmission at once, then NextSeg() while
        cwnd − pipe >= SMSS: lost segments (rule 1), new data (rule 2, :meth:`_recovery_new_data`),
        then rules 3 and 4. Retransmissions are one MSS at most (no TSO)."""
        una = self.snd_una
        mss = self.snd_mss
        if self.snd_wnd == 0:
            rec.first = False
            return False  # a closed window: the persist and retransmission timers take over
        sent = False
        holes = rec.holes(self)
        if rec.first:
            rec.first = False
            n = min(mss, holes[0][1]) if holes and holes[0][0] == 0 else mss
            seg = self._data_segment(una, n, now, rexmit=True)
            if seg is not None:
                out.append(seg)
                sent = True
                rec.high_rxt = rec.rescue_rxt = (una + max(seg.seg_len, 1)) & _MASK
                holes = rec.holes(self)
        pipe = rec.pipe(self, holes)
        for _ in range(1 << 16):
            if self.cc.cwnd - pipe < mss:
                break
            rescue = False
            lost = rec.next_lost(self, holes)
            if lost is None:
                seg = self._recovery_new_data(now)
                if seg is not None:
                    out.append(seg)
                    sent = True
                    pipe += seg.seg_len
                    continue
                last = rec.last_resort(self, rec.holes(self))
                if last is None:
                    break
                off, n, rescue = last
            else:
                off, n = lost
            seq = (una + off) & _MASK
            seg = self._data_segment(seq, n, now, rexmit=True)
            if seg is None:
                break
            out.append(seg)
            sent = True
            rec.retransmitted((seq + max(seg.seg_len, 1)) & _MASK, rescue)
            if rescue and self.tracer is not None:
                self.tracer.recovery(self, RecoveryAction.RESCUE, seq)
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

    def _next_data(self, now: float) -> Segment | None:
        """The next new segment the windows and Nagle allow, or None (RFC 9293 §3.8.6.2.1)."""
        snd_nxt = self.snd_nxt
        room = None
        if self.sack_ok and _lt(snd_nxt, self.snd_max):
            snd_nxt, room = self._skip_sacked(snd_nxt)
        off = _diff(snd_nxt, self._sbuf_seq)
        unsent = len(self._sbuf) - off
        fin_seq = self.fin_seq
        fin_pending = fin_seq is not None and _le(snd_nxt, fin_seq)
        if unsent <= 0 and not fin_pending:
            return None
        if snd_nxt == self.snd_una and unsent > 0 and 0 <= self._last_send < now - self.rtt.rto:
            # RFC 5681 §4.1: nothing was sent for longer than the RTO; the ACK clock is gone, so
            # the window restarts at no more than RW = min(IW, cwnd) instead of a full burst.
            self.cc.on_idle(now - self._last_send, now=now, rtt=self.rtt.srtt)
            self._last_send = now
        cwnd = self.cc.cwnd
        if self.recovery.dupacks:
            cwnd += self.recovery.limited_transmit(self)  # RFC 3042
        wnd = min(self.snd_wnd, cwnd)
        usable = wnd - _diff(snd_nxt, self.snd_una)
        mss = self.snd_mss
        n = min(unsent, mss, max(usable, 0))
        if room is not None:
            n = min(n, room)
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
                    and _lt(self.snd_una, snd_nxt) and snd_nxt == self.snd_max:
                # Nagle (SHLD-7): a short segment of new data waits while data is unacknowledged
                # — unless CLOSE was called: no later SEND can join it, so waiting would only
                # delay the FIN. Data sent once already (SND.NXT below snd_max after a rewind) is
                # a retransmission and goes at once, however short the MSS makes its tail.
                return None
            elif self.tso_max > mss and snd_nxt == self.snd_max:
                tso = self._tso_segment(snd_nxt, unsent, usable, now)
                if tso is not None:
                    return tso
        return self._data_segment(snd_nxt, n, now, rexmit=False)

    def _skip_sacked(self, snd_nxt: int) -> tuple[int, int | None]:
        """Going back over what a timeout rewound (SND.NXT < snd_max): RFC 6675 §5.1, "a TCP
        sender SHOULD use this SACK information when determining what data should be sent in
        each segment following an RTO". Octets SACKed since the timeout are passed over; returns
        the new SND.NXT and how many octets may go before the next SACKed range (None: no
        limit)."""
        rec = self.recovery
        if not isinstance(rec, SackRecovery) or not rec.board:
            return snd_nxt, None
        r = rec.sacked_after(snd_nxt)
        if r is not None and _le(r[0], snd_nxt):
            snd_nxt = self.snd_nxt = r[1]  # inside a SACKed range: continue after it
            r = rec.sacked_after(snd_nxt)
        return snd_nxt, (_diff(r[0], snd_nxt) if r is not None else None)

    def _tso_segment(self, snd_nxt: int, unsent: int, usable: int, now: float) -> Segment | None:
        """TSO: one segment for the k ≥ 2 full-sized segments that would leave back to back now,
        or None. New data only (SND.NXT = snd_max): retransmissions stay MSS-sized. Each call of
        _next_data sends a full segment whenever min(unsent, usable) ≥ MSS (Nagle and SWS
        avoidance only hold back short ones) and nothing it reads changes in between but SND.NXT,
        so k·MSS octets here are exactly the octets of those k calls; the driver cuts them into
        MSS pieces again (PSH on the last one, one timestamp for all, as Linux TSO does)."""
        mss = self.snd_mss
        if self.sack_ok and self._ooo is not None and self._ooo.reportable:
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
        if self.sack_ok and self._ooo is not None and self._ooo.reportable:
            # RFC 9293 §3.7.1: Eff.snd.MSS counts every option sent; the SACK blocks _make adds
            # (2 NOPs, kind, length, 8 octets a block) come out of the room for data.
            blocks = min(self._ooo.reportable, 3 if self.ts_ok else 4)
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
            self.rexmitted += 1
            if self._rtt_seq is not None and _lt(seq, self._rtt_seq):
                self._rtt_seq = None  # Karn: do not time a retransmitted segment
        elif self._rtt_seq is None:
            self._rtt_seq = end
            self._rtt_time = now
        if _lt(self.snd_nxt, end):
            self.snd_nxt = end
        if _lt(self.snd_max, end):
            self.snd_max = end
        self._last_send = now
        if self._t_rexmit is None:
            self._t_rexmit = now + self.rtt.rto
            if self._rexmit_start is None:
                self._rexmit_start = now

    def _count_out(self, seg: Segment) -> None:
        self.segs_out += 1
        if self.tracer is not None:
            self.tracer.segment(self, seg, True)

    def _arm_persist(self, now: float) -> None:
        """Zero-window probing (§3.8.6.1, MUST-35/36, SHLD-29/30): when the peer's window is zero
        and data waits with nothing in flight, probe after RTO, then back off exponentially."""
        # The same timer is the override timeout of sender SWS avoidance (§3.8.6.2.1): a window
        # that is open but too small to send into (usable < min(D, Eff.snd.MSS)) with nothing in
        # flight would otherwise wait forever when the peer's window update is lost.
        usable = self.snd_wnd - _diff(self.snd_max, self.snd_una)
        if usable < min(self.unsent, self.snd_mss) and _diff(self.snd_max, self.snd_una) <= 1 \
                and self.state in CAN_SEND_DATA:
            if self._t_persist is None:
                self._t_rexmit = None
                self._rexmit_start = None
                delay = min(self.rtt.rto * (1 << min(self._persist_backoff, 16)), self.config.rto_max)
                self._t_persist = now + delay
        else:
            self._t_persist = None
            if self._t_rexmit is None and self.snd_max != self.snd_una and self.state in CAN_SEND_DATA:
                # Out of persist with a probe octet still unacknowledged: it is data, so the
                # retransmission timer must cover it (RFC 6298 §5.1), or a lost ACK stalls us.
                self._t_rexmit = now + self.rtt.rto
                self._rexmit_start = now

    # -----------------------------------------------------------------------------------------
    # When to come back
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
        if self._out or self._ack_now or self._fast_rexmit or self._probe_due or self.recovery.wants_output:
            return True
        st = self.state
        if st in (State.SYN_SENT, State.SYN_RECEIVED):
            return self.snd_nxt == self.iss
        if st in CAN_SEND_DATA:
            return self.unsent > 0 or (self._fin_queued and _le(self.snd_nxt, self.fin_seq or 0))
        return False


CAN_SEND_DATA: Final = frozenset((State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.LAST_ACK,
                                  State.CLOSING))
"""The states in which data (and our FIN) may still leave."""


def wscale_for(buf: int) -> int:
    """The smallest shift that lets a 16-bit field describe ``buf`` octets (RFC 7323 §2.3, ≤ 14)."""
    shift = 0
    while (0xFFFF << shift) < buf and shift < 14:
        shift += 1
    return shift
