"""One TCP connection: every state transition it can make (RFC 9293 §3.10).

Sans-IO: the connection never reads a clock or touches a socket. Time is the ``now`` argument of
every call (seconds, monotonic). Input only changes state; the driver then pulls what is due with
:meth:`~synack.core.tcb.Tcb.segments_to_send`, asks :meth:`~synack.core.tcb.Tcb.next_deadline`
when to come back, and calls :meth:`Connection.handle_timeout` then.

:class:`Connection` extends the :class:`~synack.core.tcb.Tcb` (the variables of §3.3.1 and the
output they imply) with the user calls (§3.10.1–6), segment arrival (§3.10.7) and the timeouts
(§3.10.8). Segment arrival follows the RFC: the CLOSED, LISTEN and SYN-SENT procedures, then for
the other states :meth:`Connection._other_arrives`, a short driver over the RFC's steps, each a
method that cites its paragraph — ``_check_sequence`` (first), ``_check_rst`` (second),
``_check_syn`` (fourth; the third, security, does not apply), ``_check_ack`` (fifth),
``_process_urg`` (sixth), ``_process_text`` (seventh), ``_check_fin`` (eighth) — passing one
:class:`_Arrival` record. Every change of state goes through :meth:`Connection._set_state`, which
checks the (source, destination, event) against :data:`~synack.core.records.TRANSITIONS` — the
same table from which ``synack states`` draws the state diagram. Loss recovery
(:mod:`synack.core.recovery`) and congestion control (:mod:`synack.core.congestion`) are parts the
connection calls.
"""

from __future__ import annotations

import errno as errno_codes
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from synack.core.buffers import ReassemblyQueue
from synack.core.records import (
    TRANSITIONS,
    Call,
    Cause,
    ConnectionAborted,
    ConnectionClosing,
    ConnectionExists,
    ConnectionRefused,
    ConnectionReset,
    ConnectionTimedOut,
    Drop,
    Event,
    InsufficientResources,
    LocalError,
    NoConnection,
    RecoveryAction,
    RemoteError,
    State,
    TcpError,
    Timer,
    TimerAction,
    Transition,
    Unreachable,
)
from synack.core.recovery import SackRecovery
from synack.core.tcb import _EMPTY, _NO_EVENTS, Config, Tcb, default_mss, wscale_for
from synack.core.wire import (
    ACK,
    FIN,
    RST,
    SYN,
    URG,
    IcmpError,
    Mss,
    SackPermitted,
    Segment,
    Timestamps,
    WindowScale,
    segment_acceptable,
    seq_diff,
    seq_le,
    seq_lt,
    shared_int,
)

__all__ = [
    "Config",
    "Connection",
    "ConnectionAborted",
    "ConnectionClosing",
    "ConnectionExists",
    "ConnectionRefused",
    "ConnectionReset",
    "ConnectionTimedOut",
    "InsufficientResources",
    "LocalError",
    "NoConnection",
    "RemoteError",
    "TcpError",
    "reset_for",
]

_MASK: Final = 0xFFFFFFFF
_HALF: Final = 1 << 31
_PAWS_IDLE: Final = 24 * 86400.0
"""RFC 7323 §5.5: after more than 24 days without a segment, the peer's 1 ms timestamp clock
may have moved by more than 2**31, so TS.Recent is no longer valid and PAWS (§5.3 R1) is not
applied to the next segment (Linux: TCP_PAWS_24DAYS)."""

# The transition table, keyed as _set_state checks it (a plain dict: looked up on every change).
_TABLE: Final[Mapping[tuple[State, State, Cause], Transition]] = {
    (t.src, t.dst, t.event): t for t in TRANSITIONS}

# Sequence-space comparisons (RFC 9293 §3.4), under short names: they appear on nearly every line.
_lt = seq_lt
_le = seq_le
_diff = seq_diff


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


class _Arrival:
    """One segment on its way through §3.10.7.4, in place of local variables: the steps trim
    it (``seq``, ``text``, ``syn``, ``fin``) and later steps see what earlier ones left.
    ``ts`` is its timestamps option when timestamps are in use (RFC 7323)."""

    __slots__ = ("fin", "rst", "seg", "seq", "syn", "text", "ts")

    def __init__(self, seg: Segment, ts: Timestamps | None) -> None:
        flags = seg.flags
        self.seg = seg
        self.seq = seg.seq
        self.text = seg.payload
        self.syn = bool(flags & SYN)
        self.fin = bool(flags & FIN)
        self.rst = bool(flags & RST)
        self.ts = ts

    @property
    def seg_len(self) -> int:
        """SEG.LEN of what is left: text octets, plus one each for SYN and FIN (§3.4)."""
        return len(self.text) + self.syn + self.fin


# ---------------------------------------------------------------------------------------------
# The connection
# ---------------------------------------------------------------------------------------------


class Connection(Tcb):
    """A TCB and its event processing (RFC 9293 §3.10): the user calls, segment arrival and the
    timeouts — every state transition a connection makes. The variables and the output are the
    :class:`~synack.core.tcb.Tcb`'s.

    ``transitions`` is the table :meth:`_set_state` checks; a subclass that models a different
    (or deliberately broken) TCP declares its extra arrows there.
    """

    __slots__ = ()
    transitions: ClassVar[Mapping[tuple[State, State, Cause], Transition]] = _TABLE


    # -----------------------------------------------------------------------------------------
    # Small helpers
    # -----------------------------------------------------------------------------------------










    def _touch(self, now: float, call: Call | None = None) -> None:
        """A user call happened at ``now``: remember the time, record ``call`` (the ones worth a
        line in a diagram), and tell the owner (a Host) that this connection may have something
        to send."""
        self.now = now
        if call is not None and self.tracer is not None:
            self.tracer.call(self, call)
        if self.notify is not None:
            self.notify(self)

    def _set_state(self, transition: Transition, detail: str = "") -> None:
        """The one place where the state changes. ``transition`` must be the current state's
        arrow for its event in :attr:`transitions` — source, destination and event all checked."""
        if transition.src is not self.state or \
                self.transitions.get((transition.src, transition.dst, transition.event)) is not transition:
            raise AssertionError(f"illegal transition {transition} from {self.state}")
        self.state = transition.dst
        if self.tracer is not None:
            self.tracer.transition(self, transition, detail)

    def _go(self, dst: State, event: Cause, detail: str = "") -> None:
        """Take the arrow of the table from the current state to ``dst`` on ``event`` (what
        :meth:`_set_state` does, with the arrow found by its key: checked by construction)."""
        try:
            transition = self.transitions[(self.state, dst, event)]
        except KeyError:
            raise AssertionError(f"illegal transition {self.state}=>{dst} ({event.value})") from None
        self.state = dst
        if self.tracer is not None:
            self.tracer.transition(self, transition, detail)





    def end_time_wait(self, event: Cause) -> None:
        """(Host) a new connection takes over this TIME-WAIT 4-tuple — SO_REUSEADDR
        (:attr:`Cause.TIME_WAIT_REUSED`) or MAY-2 (:attr:`Cause.TIME_WAIT_REOPENED`): delete
        the TCB."""
        if self.state is State.TIME_WAIT:
            self._teardown(None, event)

    def drain_events(self) -> list[Event]:
        ev = self.events
        self.events = _NO_EVENTS
        return ev if isinstance(ev, list) else []

    # -----------------------------------------------------------------------------------------
    # User calls (RFC 9293 §3.10.1–§3.10.6)
    # -----------------------------------------------------------------------------------------

    def open_active(self, now: float) -> None:
        """OPEN, active (§3.10.1): send <SEQ=ISS><CTL=SYN>, enter SYN-SENT."""
        self._touch(now, Call.OPEN_ACTIVE)
        if self.state is State.CLOSED:
            self._go(State.SYN_SENT, Cause.ACTIVE_OPEN)
        elif self.state is State.LISTEN:
            self.passive = False
            self._go(State.SYN_SENT, Cause.SEND)
        else:
            raise ConnectionExists("error: connection already exists")
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        self._last_rcv = now

    def open_passive(self, now: float) -> None:
        """OPEN, passive (§3.10.1): enter LISTEN."""
        self._touch(now, Call.OPEN_PASSIVE)
        if self.state is not State.CLOSED:
            raise ConnectionExists("error: connection already exists")
        self.passive = True
        self._go(State.LISTEN, Cause.PASSIVE_OPEN)

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
        buf = self._sbuf
        if isinstance(buf, bytearray):
            buf += chunk
        elif chunk:
            self._sbuf = bytearray(chunk)  # the first data: the buffer is made only now
        return len(chunk)

    def receive(self, max_bytes: int, now: float) -> bytes | None:
        """RECEIVE (§3.10.3). Returns up to ``max_bytes`` octets; ``b""`` at end of stream (the
        peer's FIN was consumed — the RFC's "connection closing" reply); ``None`` when nothing is
        available yet. A connection that failed raises its error — once the data it received and
        acknowledged before failing has been read: a RST does not take back octets the peer saw
        acknowledged (Linux keeps them too), and after them RECEIVE says "connection reset"
        (§3.10.7.4 second step) rather than a clean end of stream, even after the peer's FIN."""
        self._touch(now)
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        buf = self._rbuf
        if buf:
            n = min(max_bytes, len(buf))
            data = bytes(buf[:n])
            if n == len(buf):
                self._rbuf = _EMPTY  # an idle connection keeps no buffer
            else:
                assert isinstance(buf, bytearray)
                del buf[:n]
            self._window_opened(now)
            return data
        if self.state is State.CLOSED and isinstance(self.error, RemoteError):
            raise self.error
        if self._peer_fin:
            return b""
        if self.state is State.CLOSED:
            if self.error is None and self.passive is False and self.segs_in == 0:
                raise NoConnection("error: connection does not exist")
            return b""
        if self.state in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
            raise ConnectionClosing("error: connection closing")
        return None


    def close(self, now: float, *, discard_input: bool = False) -> None:
        """CLOSE (§3.10.4): "I have no more to send". Queued data still goes out before the FIN
        (L13). With ``discard_input`` (the socket close(): MAY-1 half-duplex close) unread data
        makes it an abort with RST (SHLD-3), and data arriving later draws a RST."""
        self._touch(now, Call.CLOSE)
        st = self.state
        if discard_input:
            self._app_closed = True
            if self._rbuf and st.synchronized:
                self._abort(now, Cause.ABORT_UNREAD_DATA)
                return
        if st is State.CLOSED:
            raise NoConnection("error: connection does not exist")
        if st is State.LISTEN or st is State.SYN_SENT:
            self._go(State.CLOSED, Cause.CLOSE)
            self._clear_timers()
            self._sbuf = _EMPTY
            self._event(Event.CLOSED)
            return
        if st in (State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT):
            if self._fin_queued:
                raise ConnectionClosing("error: connection closing")
            self._fin_queued = True
            if st is State.CLOSE_WAIT:
                self._go(State.LAST_ACK, Cause.CLOSE)
            elif st is State.ESTABLISHED or not self._sbuf:
                self._go(State.FIN_WAIT_1, Cause.CLOSE)
            # SYN-RECEIVED with pending data: FIN-WAIT-1 is entered on reaching ESTABLISHED.
            return
        if st in (State.FIN_WAIT_1, State.FIN_WAIT_2):
            return  # §3.10.4: an "ok" is acceptable as long as no second FIN is emitted
        raise ConnectionClosing("error: connection closing")

    def abort(self, now: float, *, why: str = "") -> None:
        """ABORT (§3.10.5): <SEQ=SND.NXT><CTL=RST> from a synchronized state, then CLOSED.
        This is what ``SO_LINGER`` with a zero timeout does on close (L12). ``why`` is the
        caller's words for the record (``close() with SO_LINGER 0``)."""
        self._abort(now, Cause.ABORT, why)

    def _abort(self, now: float, event: Cause, detail: str = "") -> None:
        self._touch(now, Call.ABORT)
        st = self.state
        if st is State.CLOSED:
            raise NoConnection("error: connection does not exist")
        if st in (State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
                  State.CLOSE_WAIT):
            self._queue(self._make(self.snd_max, None, RST, b"", now, window=False))
        # §3.10.5: "All queued SENDs and RECEIVEs should be given 'connection reset'
        # notification": nothing received before the ABORT is delivered after it.
        self._rbuf = _EMPTY
        self._peer_fin = False
        self._teardown(ConnectionAborted("connection aborted by the local user"), event, detail=detail)

    def accept_cookie(self, syn: Segment, now: float) -> None:
        """(Host) A SYN cookie came back (RFC 4987 §3.6): ``syn`` is the SYN rebuilt from the ACK
        and the cookie. Run the passive OPEN and the LISTEN procedure (§3.10.7.2) on it as if it
        had arrived, and count the SYN,ACK the host sent without state (ISS = the cookie) as sent
        and acknowledged by the ACK the host feeds next, which completes the handshake."""
        self.open_passive(now)
        self._listen_arrives(syn, now)
        self._syn_opts_sent = True
        self.snd_nxt = self.snd_max = (self.iss + 1) & _MASK
        self._t_rexmit = now + self.rtt.rto  # should the ACK not complete it, SYN-RECEIVED times out
        self._rexmit_start = now

    # -----------------------------------------------------------------------------------------
    # ICMP errors (RFC 9293 §3.9.2.2, MUST-54..56)
    # -----------------------------------------------------------------------------------------

    def handle_icmp(self, err: IcmpError, now: float) -> bool:
        """An ICMP or ICMPv6 error quoting one of our segments (MUST-54). It is believed only if
        the quoted sequence number is one we sent and the peer has not acknowledged
        (SND.UNA =< SEQ =< SND.NXT, RFC 5927 §4.1, as Linux checks). Source quench is discarded
        (MUST-55); "fragmentation needed"/"packet too big" lowers the send MSS (RFC 1191/8201).
        An unreachable destination, time exceeded or a parameter problem fails an opening
        connection — in SYN-SENT whatever the class (the behaviour RFC 9293 notes, after RFC 5461
        §4, and Linux's), in SYN-RECEIVED for a hard error — and is otherwise a soft error: the
        connection goes on (MUST-56) and the error is reported (SHLD-25: ``soft_error``, an event,
        and the error the connection reports if it later times out). Hard errors in a
        synchronized state are reported too, not acted on: SHLD-26 asks to abort, RFC 5927 §4
        explains why stacks do not (a blind reset), and Linux does not. Returns True when the
        error was acted on or recorded."""
        self.now = now
        if not (_le(self.snd_una, err.seq) and _le(err.seq, self.snd_max)):
            self._drop(Drop.ICMP_OUT_OF_WINDOW)
            return False
        v4 = err.version == 4
        if v4 and err.icmp_type == 4:
            self._drop(Drop.ICMP_SOURCE_QUENCH)
            return False
        if (v4 and (err.icmp_type, err.icmp_code) == (3, 4)) or (not v4 and err.icmp_type == 2):
            self._path_mtu(err.mtu)
            return True
        code, hard = _icmp_errno(err)
        error = Unreachable(f"{'ICMP' if v4 else 'ICMPv6'} type {err.icmp_type} code {err.icmp_code} "
                            f"from {err.sender}", code, err.icmp_type, err.icmp_code, err.version)
        st = self.state
        if st is State.SYN_SENT or (st is State.SYN_RECEIVED and hard):
            self._teardown(error, Cause.ICMP_UNREACHABLE, report=Event.UNREACHABLE)
        else:
            self.soft_error = error
            self._event(Event.SOFT_ERROR)
        return True

    def _path_mtu(self, mtu: int) -> None:
        """RFC 1191 §6.3 / RFC 8201 §5: the path cannot carry our segments; send smaller ones.
        An MTU below the protocol's minimum (68, 1280) is not believed; what is outstanding is sent
        again at the new size (Linux's ``tcp_simple_retransmit``)."""
        header = 60 if self.ipv6 else 40
        if mtu < (1280 if self.ipv6 else 68) or mtu - header >= self._mtu_mss:
            return
        self._mtu_mss = mtu - header
        mss = max(min(self.snd_mss, self._mtu_mss - (12 if self.ts_ok else 0)), self.config.min_snd_mss)
        if mss < self.snd_mss:
            # RFC 5681 §3.1: "cwnd SHOULD be reduced by the ratio of the old segment size to the
            # new segment size" — the window keeps its number of segments; so does a finite
            # ssthresh (as Linux, which counts both in segments).
            cc = self.cc
            old = self.snd_mss
            cc.cwnd = max(cc.cwnd * mss // old, mss)
            if cc.ssthresh < 1 << 30:
                cc.ssthresh = max(cc.ssthresh * mss // old, 2 * mss)
            self.snd_mss = cc.mss = mss
            if self.snd_nxt != self.snd_una:
                self.snd_nxt = self.snd_una
                self._rtt_seq = None  # Karn: what is sent again is not timed

    def status(self) -> dict[str, Any]:
        """STATUS (§3.10.6): the state and the TCB (same as :meth:`snapshot`)."""
        if self.state is State.CLOSED and self.error is None and self.segs_in == 0 and not self.passive:
            raise NoConnection("error: connection does not exist")
        return self.snapshot()


    # -----------------------------------------------------------------------------------------
    # SEGMENT ARRIVES (RFC 9293 §3.10.7)
    # -----------------------------------------------------------------------------------------

    def handle_segment(self, seg: Segment, now: float) -> None:
        """Process one arriving segment (already checksummed and demultiplexed to us)."""
        self.now = now
        self.segs_in += 1
        if self.tracer is not None:
            self.tracer.segment(self, seg, False)
        st = self.state
        if st is State.CLOSED:
            self._closed_arrives(seg)
        elif st is State.LISTEN:
            self._listen_arrives(seg, now)
        elif st is State.SYN_SENT:
            self._syn_sent_arrives(seg, now)
        else:
            self._other_arrives(seg, now)

    def _closed_arrives(self, seg: Segment) -> None:
        """§3.10.7.1: everything is discarded; anything but a RST draws a RST."""
        rst = reset_for(seg)
        if rst is not None:
            self._queue(rst)

    def _listen_arrives(self, seg: Segment, now: float) -> None:
        """§3.10.7.2."""
        flags = seg.flags
        if flags & RST:  # first: an incoming RST should be ignored
            self._drop(Drop.RST_IN_LISTEN)
            return
        if seg.ack is not None:  # second: any acknowledgment is bad in LISTEN
            self._queue(Segment(seg.dst_port, seg.src_port, seg.ack, None, RST, 0))
            self._drop(Drop.ACK_IN_LISTEN)
            return
        if not flags & SYN:  # fourth: other control or text: drop
            self._drop(Drop.NO_SYN_IN_LISTEN)
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
        self._go(State.SYN_RECEIVED, Cause.RCV_SYN)
        # Data on a SYN is not taken (no TCP Fast Open): it is not acknowledged, so the peer
        # sends it again once the connection is established.

    def _syn_sent_arrives(self, seg: Segment, now: float) -> None:
        """§3.10.7.3."""
        flags = seg.flags
        ack = seg.ack
        # First, check the ACK bit.
        if ack is not None and (_le(ack, self.iss) or _lt(self.snd_max, ack)):
            if not flags & RST:
                self._queue(Segment(seg.dst_port, seg.src_port, ack, None, RST, 0))
            self._drop(Drop.BAD_ACK_IN_SYN_SENT)
            return
        # Second, check the RST bit.
        if flags & RST:
            if ack is not None:
                self._teardown(ConnectionRefused("connection refused"), Cause.RCV_RST_REFUSED,
                               report=Event.REFUSED)
            else:
                self._drop(Drop.RST_WITHOUT_ACK_IN_SYN_SENT)
            return
        # Third: security/compartment does not apply (no IP security option is used).
        # Fourth, check the SYN bit.
        if not flags & SYN:
            self._drop(Drop.NO_SYN_IN_SYN_SENT)  # fifth
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
            self._go(State.ESTABLISHED, Cause.RCV_SYN_ACK)
            self._established(now)
            self._ack_now = True
            # Data or FIN on a SYN,ACK: continue at the sixth step (URG) of §3.10.7.4.
            if seg.payload or flags & FIN:
                a = _Arrival(seg, None)
                a.seq = (seg.seq + 1) & _MASK
                a.syn = False
                if flags & URG:
                    self._process_urg(a)
                if self._process_text(a, now) and a.fin:
                    self._check_fin(a, now)
            return
        # Simultaneous open: enter SYN-RECEIVED, send <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>.
        self.snd_wnd = seg.window
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = seg.seq
        self.snd_wl2 = 0
        self.snd_nxt = self.iss  # the SYN,ACK is built by rewinding to ISS
        self._go(State.SYN_RECEIVED, Cause.RCV_SYN)


    def _other_arrives(self, seg: Segment, now: float) -> None:
        """§3.10.7.4, "Otherwise": SYN-RECEIVED and the synchronized states, step by step. A
        check returns False when the segment has been dealt with and processing stops there; a
        step whose control bit is off is skipped (the RST and SYN steps always end processing).
        The third step (security and compartment) does not apply to us."""
        a = _Arrival(seg, _timestamps(seg) if self.ts_ok else None)
        ts = a.ts
        if ts is not None and ((ts.tsval - self.ts_recent) & _MASK) >= _HALF and not a.rst \
                and now - self._last_rcv <= _PAWS_IDLE:
            self._reject_old_duplicate(now)  # PAWS
            return
        if a.syn and not self._trim_repeated_syn(a):
            return
        # First step: the acceptability test of Table 6.
        if not segment_acceptable(a.seq, len(a.text) + a.syn + a.fin, self.rcv_nxt, self.rcv_wnd, rst=a.rst) \
                and not self._check_sequence(a, now):
            return
        if a.rst:
            self._check_rst(a)
            return
        if a.syn:
            self._check_syn(a, now)
            return
        if not self._check_ack(a, now):
            return
        if seg.flags & URG:
            self._process_urg(a)
        if self._process_text(a, now) and a.fin:
            self._check_fin(a, now)

    def _reject_old_duplicate(self, now: float) -> None:
        """RFC 7323 §5.3 R1 (PAWS), before the sequence check: a segment (not a RST) whose
        timestamp is older than TS.Recent — while TS.Recent is valid: the connection has not
        been idle for more than 24 days (§5.5) — is an old duplicate; drop it and send an ACK
        (rate limited as every reply to an unacceptable segment, :meth:`_reply_invalid`)."""
        self._reply_invalid(now, Drop.PAWS, Drop.PAWS_LIMITED)

    def _trim_repeated_syn(self, a: _Arrival) -> bool:
        """A SYN repeated at IRS in SYN-RECEIVED (our reading of RFC 793 Figure 8 line 6 and of
        §3.10.7.4's "trimming off any portions that lie outside the window (including SYN and
        FIN)", docs/design.md). After an active OPEN it is the peer's SYN,ACK of a simultaneous
        open: the SYN is trimmed and the rest begins at RCV.NXT. After a passive OPEN, a bare
        SYN means our SYN,ACK was lost: it is sent again."""
        if not (a.syn and self.state is State.SYN_RECEIVED and a.seq == self.irs):
            return True
        if not self.passive and a.seg.ack is not None:
            a.seq = (a.seq + 1) & _MASK
            a.syn = False
            if self.snd_nxt == self.iss:
                # Our SYN,ACK (Figure 7 line 5) has not left yet — the driver read the peer's SYN
                # and this SYN,ACK in one batch — and once ESTABLISHED it never will, so nothing
                # would acknowledge the peer's SYN: the repeated SYN is left of the window, and
                # the first step answers it with <ACK=RCV.NXT>. Without it a Linux peer waits in
                # SYN-RECEIVED for its SYN,ACK retransmission.
                self._ack_now = True
        elif a.seg.ack is None and not a.rst:
            self._drop(Drop.DUPLICATE_SYN)
            self.snd_nxt = self.iss  # rewind: the SYN,ACK is built again
            return False
        return True

    def _check_sequence(self, a: _Arrival, now: float) -> bool:
        """First step, for a segment that failed the acceptability test of Table 6
        (:func:`~synack.core.wire.segment_acceptable`, which the driver applies): it draws
        <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and is dropped — unless it is a RST (dropped
        silently) or, with a zero window, exactly at RCV.NXT: then its ACK, URG and RST are
        still processed and its text is not (MUST-66). Returns True to go on."""
        if self.rcv_wnd == 0 and a.seq == self.rcv_nxt and not a.syn:
            a.text = b""
            a.fin = False
            self._ack_now = True
            return True
        if a.rst:
            self._drop(Drop.RST_OUTSIDE_WINDOW)
            return False
        st = self.state
        if a.syn and st is not State.SYN_RECEIVED:
            # RFC 5961 §4.2: a SYN in a synchronized state, in the window or not, draws a
            # challenge ACK (rate-limited, §7) — not the plain ACK of Table 6 every time.
            self._challenge_ack(now, Drop.SYN_CHALLENGED, Drop.SYN_CHALLENGE_LIMITED)
            return False
        end = (a.seq + a.seg_len) & _MASK
        if st is State.TIME_WAIT and a.fin and end == self.rcv_nxt:
            # A retransmitted FIN: acknowledge it and restart the 2 MSL timer (L10, fifth step,
            # TIME-WAIT; it lies left of the window, so it never gets that far).
            self._t_timewait = now + 2 * self.config.msl
            self._timer(Timer.TIME_WAIT, TimerAction.RESTART)
            self._drop(Drop.UNACCEPTABLE)
            self._ack_now = True
        elif ((self.rcv_nxt - end) & _MASK) <= max(self.config.rcv_buf, 0xFFFF):
            # Old data the peer sent again (it ends at or below RCV.NXT, within a window of it):
            # our ACK of it was lost, and only an ACK now stops its retransmissions. Answered
            # every time, as Linux answers segments ending at or after its RCV.WUP.
            self._drop(Drop.UNACCEPTABLE)
            self._ack_now = True
        else:
            self._reply_invalid(now, Drop.UNACCEPTABLE, Drop.UNACCEPTABLE_LIMITED)
        return False

    def _reply_invalid(self, now: float, sent: Drop, limited: Drop) -> None:
        """The ACK that answers an unacceptable segment, at most one per
        ``Config.invalid_ratelimit`` seconds on this connection (Linux's
        ``tcp_invalid_ratelimit``; RFC 5961 §7 asks the same of challenge ACKs): a blind
        attacker injecting segments at random sequence numbers must not turn each into a reply
        towards the peer."""
        if self._limiter().invalid_reply(now, self.config.invalid_ratelimit):
            self._ack_now = True
            self._drop(sent)
        else:
            self.replies_limited += 1
            self._drop(limited)

    def _check_rst(self, a: _Arrival) -> None:
        """Second step (RST set), with RFC 5961 §3.2: a RST is accepted only at exactly RCV.NXT
        (one elsewhere in the window draws a challenge ACK). SYN-RECEIVED returns to LISTEN after
        a passive OPEN, else the connection is refused; CLOSING, LAST-ACK and TIME-WAIT close
        quietly; the other states report "connection reset" and close."""
        st = self.state
        if a.seq != self.rcv_nxt:
            self._challenge_ack(self.now, Drop.RST_CHALLENGED, Drop.RST_CHALLENGE_LIMITED)
        elif st is State.SYN_RECEIVED:
            if self.passive:
                self._reset_to_listen(Cause.RCV_RST)
            else:
                self._teardown(ConnectionRefused("connection refused"), Cause.RCV_RST_REFUSED,
                               report=Event.REFUSED)
        elif st in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
            self._teardown(None, Cause.RCV_RST)
        else:
            self._teardown(ConnectionReset("connection reset by peer"), Cause.RCV_RST, report=Event.RESET)

    def _check_syn(self, a: _Arrival, now: float) -> None:
        """Fourth step (SYN set): a SYN in SYN-RECEIVED after a passive OPEN returns to LISTEN; in
        a synchronized state it draws a challenge ACK (RFC 5961 §4) and is dropped."""
        if self.state is State.SYN_RECEIVED and self.passive:
            self._reset_to_listen(Cause.RCV_SYN_IN_SYN_RECEIVED)
        else:
            self._challenge_ack(now, Drop.SYN_CHALLENGED, Drop.SYN_CHALLENGE_LIMITED)

    def _check_ack(self, a: _Arrival, now: float) -> bool:
        """Fifth step: no ACK bit, drop. SYN-RECEIVED: an acceptable ACK (SND.UNA < SEG.ACK =<
        SND.NXT) establishes the connection, any other draws <SEQ=SEG.ACK><CTL=RST>. The other
        states: the ACK range check of RFC 5961 §5, then the ACK itself
        (:meth:`_process_ack`), then what acknowledging our FIN means in each closing state."""
        ack = a.seg.ack
        if ack is None:
            self._drop(Drop.NO_ACK_BIT)
            return False
        if self.state is State.SYN_RECEIVED:
            if not (_lt(self.snd_una, ack) and _le(ack, self.snd_max)):
                if self._limiter().invalid_reply(now, self.config.invalid_ratelimit):
                    # <SEQ=SEG.ACK><CTL=RST>
                    self._queue(Segment(a.seg.dst_port, a.seg.src_port, ack, None, RST, 0))
                    self._drop(Drop.BAD_ACK_IN_SYN_RECEIVED)
                else:
                    self.replies_limited += 1
                    self._drop(Drop.BAD_ACK_IN_SYN_RECEIVED_LIMITED)
                return False
            self._update_window(a.seg, a.seq, ack)
            self._ack_advances(ack, now)
            self._go(State.ESTABLISHED, Cause.RCV_ACK_OF_SYN)
            self._established(now)
            if self._fin_queued:
                self._go(State.FIN_WAIT_1, Cause.CLOSE)  # the CLOSE made in SYN-RECEIVED (§3.10.4)
        else:
            # RFC 5961 §5 (MAY-12): (SND.UNA - MAX.SND.WND) =< SEG.ACK =< SND.NXT, else ACK and drop.
            if _lt(self.snd_max, ack):
                self._challenge_ack(now, Drop.ACK_OF_UNSENT, Drop.ACK_OF_UNSENT_LIMITED)
                return False
            if _lt(ack, (self.snd_una - self.max_snd_wnd) & _MASK):
                self._challenge_ack(now, Drop.ACK_TOO_OLD, Drop.ACK_TOO_OLD_LIMITED)
                return False
            self._process_ack(a, ack, now)
        self._last_rcv = now
        self._ka_probes = 0
        if a.ts is not None and _le(a.seq, self.last_ack_sent):
            self.ts_recent = a.ts.tsval  # RFC 7323 §4.3
        # Only a connection whose FIN is queued (FIN-WAIT-1, CLOSING, LAST-ACK) or in TIME-WAIT
        # has anything more to do in the fifth step.
        if self._fin_queued or self.state is State.TIME_WAIT:
            return self._ack_of_fin(a, now)
        return True

    def _process_ack(self, a: _Arrival, ack: int, now: float) -> None:
        """Fifth step, ESTABLISHED and the states that share its processing: "If SND.UNA <
        SEG.ACK =< SND.NXT, then set SND.UNA <- SEG.ACK", a duplicate ACK goes to loss recovery,
        and the send window is updated from a segment not older than the last update (WL1/WL2).
        An ACK below SND.UNA is merely tolerated (RFC 5961 §5): it updates nothing."""
        rec = self.recovery
        dup = rec.is_duplicate(self, a.seg, ack, bool(a.text) or a.fin)
        if _lt(self.snd_una, ack):
            if self.snd_una == self.iss:
                # Our SYN is ACKed only now: CLOSE in SYN-RECEIVED went to FIN-WAIT-1 (or on to
                # CLOSING) before it was (§3.10.4). The connection has still been established
                # (fifth step, SYN-RECEIVED): report it as the SYN-RECEIVED path does.
                self._event(Event.CONNECTED)
            self._ack_advances(ack, now, a.ts.tsecr if a.ts is not None else None)
        if dup:
            self._duplicate_ack()
        if _le(self.snd_una, ack) and (
                _lt(self.snd_wl1, a.seq) or (self.snd_wl1 == a.seq and _le(self.snd_wl2, ack))):
            was_closed = self.snd_wnd == 0
            self._update_window(a.seg, a.seq, ack)
            refused = self.snd_wnd == 0 or (was_closed and ack == self.snd_una)
            if refused and _lt(self.snd_una, self.snd_nxt):
                # The window is closed — or opens with an ACK that takes nothing beyond SND.UNA —
                # and what we sent past SND.UNA (e.g. the octet of a zero-window probe) was
                # refused: send it again first (SHLD-16), rather than continuing after it and
                # leaving a hole only the retransmission timer would fill.
                self.snd_nxt = self.snd_una
        if self.snd_wnd == 0 and self._rexmit_start is not None:
            # MUST-37 (§3.8.6.1): a peer that answers our probes with a zero window is alive;
            # R2 (§3.8.3) measures an unresponsive peer, so its clock starts again.
            self._rexmit_start = now

    def _update_window(self, seg: Segment, seq: int, ack: int) -> None:
        """SND.WND <- SEG.WND (scaled, RFC 7323 §2.3), SND.WL1 <- SEG.SEQ, SND.WL2 <- SEG.ACK."""
        self.snd_wnd = seg.window << self.snd_wscale
        if self.snd_wnd > self.max_snd_wnd:
            self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = seq
        self.snd_wl2 = ack

    def _ack_of_fin(self, a: _Arrival, now: float) -> bool:
        """Fifth step, the closing states: FIN-WAIT-1 whose FIN is acknowledged enters FIN-WAIT-2;
        CLOSING enters TIME-WAIT; LAST-ACK closes; TIME-WAIT acknowledges a retransmitted FIN and
        restarts the 2 MSL timeout. Returns False when nothing is left to process."""
        st = self.state
        if self.fin_acked:
            if st is State.FIN_WAIT_1:
                self._go(State.FIN_WAIT_2, Cause.RCV_ACK_OF_FIN)
                st = State.FIN_WAIT_2
                if self._app_closed and self.config.fin_wait_2_timeout is not None:
                    self._t_finwait2 = now + self.config.fin_wait_2_timeout
            elif st is State.CLOSING:
                self._enter_time_wait(now, Cause.RCV_ACK_OF_FIN)
                return False
            elif st is State.LAST_ACK:
                self._teardown(None, Cause.RCV_ACK_OF_FIN)
                return False
        if st is State.TIME_WAIT:
            if a.fin:
                self._ack_now = True
                self._t_timewait = now + 2 * self.config.msl
                self._timer(Timer.TIME_WAIT, TimerAction.RESTART)
            return False
        return True

    def _process_urg(self, a: _Arrival) -> None:
        """Sixth step (URG set): ESTABLISHED, FIN-WAIT-1/2: RCV.UP <- max(RCV.UP, SEG.UP) and tell
        the user (urgent data itself is delivered inline, docs/design.md)."""
        seg = a.seg
        if self.state in _CAN_RECEIVE_TEXT:
            up = (seg.seq + seg.urg) & _MASK
            if _lt(self.rcv_up, up) or self.rcv_up == 0:
                self.rcv_up = up
                self._event(Event.URGENT)

    def _process_text(self, a: _Arrival, now: float) -> bool:
        """Seventh step: in ESTABLISHED and FIN-WAIT-1/2 the text goes to the receive buffer from
        RCV.NXT on, trimmed to the window, and RCV.NXT advances over it; text beyond a hole is
        held (SHLD-31) with a duplicate ACK at once (MAY-13). After the peer's FIN text is
        ignored; for an application that closed, it aborts the connection (SHLD-3). Returns
        False when the connection was aborted."""
        if a.text:
            if self.state not in _CAN_RECEIVE_TEXT:
                self._drop(Drop.TEXT_AFTER_FIN)
                a.text = b""
            elif self._app_closed:
                self._abort(now, Cause.ABORT_DATA_AFTER_CLOSE)
                return False
        if a.text:
            self._take_text(a, now)
        # A FIN that arrived beyond a hole is acted on once the hole is filled.
        if self._ooo_fin is not None and self._ooo_fin == self.rcv_nxt and not a.fin:
            a.fin = True
            self._ooo_fin = None
        elif a.fin and ((a.seq + len(a.text)) & _MASK) != self.rcv_nxt:
            if not a.text and _lt(self.rcv_nxt, a.seq):
                self._ooo_fin = a.seq  # a bare FIN ahead of a hole
                self._ack_now = True
            a.fin = False
        return True

    def _take_text(self, a: _Arrival, now: float) -> None:
        """The text of an acceptable segment: trim what lies before RCV.NXT and beyond the window
        (with a FIN there), then deliver it in order or hold it out of order."""
        rcv_nxt = self.rcv_nxt
        off = (rcv_nxt - a.seq) & _MASK
        if off < _HALF and off:  # starts before RCV.NXT: trim the old part
            a.text = a.text[off:]
            a.seq = rcv_nxt
        room = self.rcv_wnd + _diff(rcv_nxt, a.seq)
        if len(a.text) > room:
            a.text = a.text[:max(room, 0)]
            a.fin = False  # the FIN lies beyond the window
        if a.seq == rcv_nxt:
            if a.text:
                self._append_rbuf(a.text)
                rcv_nxt = self.rcv_nxt = (rcv_nxt + len(a.text)) & _MASK
                if self._ooo is not None and self._ooo.reportable:
                    more = self._ooo.pop_ready(rcv_nxt)
                    if more:
                        self._append_rbuf(more)
                        self.rcv_nxt = (rcv_nxt + len(more)) & _MASK
                    self._ack_now = True  # a hole was filled: ACK at once (RFC 5681 §4.2)
                self._event(Event.READABLE)
                self._schedule_ack(len(a.text), now)
            return
        if self._ooo is None:
            self._ooo = ReassemblyQueue(self.config.ooo_limit or self.config.rcv_buf)
        if not self._ooo.add(a.seq, a.text, rcv_nxt):
            self._drop(Drop.REASSEMBLY_FULL)
        if a.fin:
            self._ooo_fin = (a.seq + len(a.text)) & _MASK
            a.fin = False
        self._ack_now = True

    def _check_fin(self, a: _Arrival, now: float) -> None:
        """Eighth step (FIN set, in order): advance RCV.NXT over the FIN and tell the user;
        ESTABLISHED enters CLOSE-WAIT, FIN-WAIT-1 CLOSING (its own FIN is not yet acknowledged: an
        ACK of it in this segment moved it to FIN-WAIT-2 in the fifth step), FIN-WAIT-2
        TIME-WAIT."""
        if self.state not in _CAN_RECEIVE_FIN:
            return
        if self._peer_fin:
            self._ack_now = True
            return
        self._peer_fin = True
        self.rcv_nxt = (self.rcv_nxt + 1) & _MASK
        self._event(Event.PEER_CLOSED)
        st = self.state
        if st is State.ESTABLISHED:
            # "send an acknowledgment for the FIN" — as a delayed ACK (§3.8.6.3, MUST-40 bounds
            # the wait): an application that closes as soon as it reads the end of the stream
            # sends its FIN within the delay, and the ACK rides on it: the three-segment close
            # of seed 001 (L3). In the closing states the ACK leaves at once.
            self._schedule_ack(0, now)
            self._go(State.CLOSE_WAIT, Cause.RCV_FIN)
            return
        self._ack_now = True
        if st is State.FIN_WAIT_1:
            self._go(State.CLOSING, Cause.RCV_FIN)
        elif st is State.FIN_WAIT_2:
            self._enter_time_wait(now, Cause.RCV_FIN)

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
            self.rcv_wscale = wscale_for(cfg.rcv_buf)
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
        send_mss = mss if mss is not None and mss > 0 else default_mss(self.ipv6)
        send_mss = max(send_mss, cfg.min_snd_mss)  # an MSS option of 1 would mean 1-octet segments
        self.snd_mss = shared_int(max(min(send_mss, self._mtu_mss) - (12 if self.ts_ok else 0), 1))
        if self.sack_ok and cfg.sack_recovery:
            self.recovery = SackRecovery()

    def _established(self, now: float) -> None:
        """The handshake is complete. If our SYN or SYN,ACK was retransmitted (nothing else can
        have been before now), the initial window is one segment (RFC 5681 §3.1); if the timer
        expired awaiting the ACK of the SYN and no RTT sample was taken, the RTO starts again at
        3 seconds (RFC 6298 §5.7: "the RTO MUST be re-initialized to 3 seconds when data
        transmission begins")."""
        self._event(Event.CONNECTED)
        self._event(Event.SEND_SPACE)
        self._last_rcv = now
        self._rexmits = 0
        self.cc.reset_mss(self.snd_mss, syn_lost=self.rexmitted > 0)
        if self.rtt.backoff and self.rtt.srtt is None and self.config.rto_initial < 3.0:
            self.rtt.restart(3.0)
        if self.config.keepalive:
            self._t_keepalive = now + self.config.keepidle

    def _ack_advances(self, ack: int, now: float, tsecr: int | None = None) -> None:
        """SND.UNA < SEG.ACK =< SND.NXT: remove what is acknowledged, take an RTT sample (Karn:
        only from a segment that was not retransmitted, MUST-18 — or, after a retransmission,
        from the timestamp echo, which names the transmission it answers: RFC 7323 §4), tell
        loss recovery and congestion control, restart or stop the retransmission timer."""
        acked = _diff(ack, self.snd_una)
        flight = _diff(self.snd_max, self.snd_una)
        # Data octets acknowledged (excluding our SYN and FIN).
        data_end = ack
        f = self.fin_seq
        if f is not None and _lt(f, ack):
            data_end = f
        n = _diff(data_end, self._sbuf_seq)
        if n > 0:
            buf = self._sbuf
            if n >= len(buf):
                self._sbuf = _EMPTY  # all acknowledged: an idle connection keeps no buffer
            else:
                assert isinstance(buf, bytearray)
                del buf[:n]
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
        rec = self.recovery
        was = rec.in_recovery
        grow = self.state.synchronized and self.state is not State.SYN_RECEIVED  # not for our SYN
        if rec.on_advance(self, acked, ack, flight, grow=grow):
            self._fast_rexmit = True  # a partial acknowledgment (RFC 6582 §3.2 step 5)
        if was and not rec.in_recovery and self.tracer is not None:
            self.tracer.recovery(self, RecoveryAction.END, ack)
        # RFC 6298 §5.2/§5.3: stop the timer when everything is acknowledged, else restart it.
        if self.snd_una == self.snd_max:
            self._t_rexmit = None
            self._rexmit_start = None
        else:
            self._t_rexmit = now + self.rtt.rto
            self._rexmit_start = now

    def _duplicate_ack(self) -> None:
        """A duplicate ACK (RFC 5681 §2, or RFC 6675's DupAck) goes to loss recovery. A fast
        retransmit, like a SACK recovery, takes no RTT sample across the recovery (Karn)."""
        rec = self.recovery
        was = rec.in_recovery
        if rec.on_duplicate(self):
            self._fast_rexmit = True
            self._rtt_seq = None
        if rec.in_recovery and not was:
            self._rtt_seq = None
            if self.tracer is not None:
                self.tracer.recovery(self, RecoveryAction.ENTER, self.snd_max)

    # -----------------------------------------------------------------------------------------
    # Output during an RFC 6675 loss recovery
    # -----------------------------------------------------------------------------------------





    def _challenge_ack(self, now: float, sent: Drop, limited: Drop) -> None:
        """RFC 5961 §3.2/§4: send <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, rate-limited (§7)."""
        if self._limiter().challenge(now, self.config.challenge_ack_limit):
            self._ack_now = True
            self._drop(sent)
        else:
            self.replies_limited += 1
            self._drop(limited)



    def _enter_time_wait(self, now: float, event: Cause) -> None:
        self._go(State.TIME_WAIT, event)
        self._t_rexmit = self._t_persist = self._t_keepalive = self._t_finwait2 = None
        self._t_timewait = now + 2 * self.config.msl
        self._event(Event.CLOSED)

    def _reset_to_listen(self, event: Cause) -> None:
        """SYN-RECEIVED from a passive OPEN goes back to LISTEN (§3.10.7.4 second/fourth step).
        A host's listener child is then simply forgotten; the listener itself never left LISTEN."""
        self._go(State.LISTEN, event)
        self._clear_timers()
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        self.rcv_nxt = self.irs = 0
        self._sbuf = self._rbuf = _EMPTY

    def _teardown(self, error: TcpError | None, event: Cause, *, report: Event | None = None,
                  detail: str = "") -> None:
        """Delete the TCB: flush the send and reassembly queues, stop every timer, enter CLOSED;
        record ``error`` and queue ``report`` (then CLOSED) for the user. Data already received in
        order stays readable (:meth:`receive`); an ABORT flushes it itself."""
        if error is not None:
            self.error = error
        self._sbuf = _EMPTY
        if self._ooo is not None:
            self._ooo.clear()
        self._clear_timers()
        self._go(State.CLOSED, event, detail)
        if report is not None:
            self._event(report)
        self._event(Event.CLOSED)

    def _clear_timers(self) -> None:
        self._t_rexmit = self._t_delack = self._t_timewait = None
        self._t_keepalive = self._t_persist = self._t_finwait2 = None
        self._ack_now = False

    # -----------------------------------------------------------------------------------------
    # Output (pull)
    # -----------------------------------------------------------------------------------------












    # -----------------------------------------------------------------------------------------
    # Timeouts (RFC 9293 §3.10.8)
    # -----------------------------------------------------------------------------------------



    def handle_timeout(self, now: float) -> None:
        """Fire every timer whose deadline has come."""
        self.now = now
        if self._t_timewait is not None and now >= self._t_timewait:
            self._t_timewait = None
            self._timer(Timer.TIME_WAIT, TimerAction.EXPIRED)
            self._teardown(None, Cause.TIMEOUT_2MSL)
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
            if now - self._last_rcv >= limit:
                # MUST-20 (§3.8.3): a window probe is a retransmitted data octet — into a zero
                # window, or the SWS override's few octets into a window too small for a segment —
                # and R2 seconds with no answer at all fail the connection, whatever window the
                # peer last offered. (MUST-37: probes that are answered never do.)
                self._timer(Timer.PERSIST, TimerAction.GIVE_UP)
                self._teardown(ConnectionTimedOut("connection timed out (zero-window probes unanswered)"),
                               Cause.TIMEOUT_PERSIST, report=Event.TIMED_OUT)
                return
            self._persist_backoff += 1
            self._probe_due = True
            self._timer(Timer.PERSIST, TimerAction.PROBE)
        if self._t_finwait2 is not None and now >= self._t_finwait2:
            self._t_finwait2 = None
            if self.state is State.FIN_WAIT_2:
                self._timer(Timer.FIN_WAIT_2, TimerAction.EXPIRED)
                self._teardown(ConnectionTimedOut("FIN-WAIT-2 timeout"), Cause.TIMEOUT_FIN_WAIT_2)
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
        if now >= start + limit:  # the same sum the timer is armed at (below), or it re-arms at now for ever
            self._timer(Timer.RETRANSMIT, TimerAction.GIVE_UP)
            self._teardown(self.soft_error or ConnectionTimedOut("connection timed out"), Cause.TIMEOUT_R2,
                           report=Event.TIMED_OUT)
            return
        if st is State.SYN_RECEIVED and self.passive and self._rexmits >= cfg.synack_retries:
            # A listener's half-open child resends its SYN,ACK at most synack_retries times
            # (Linux tcp_synack_retries: 5, about 63 s), not for R2 = 3 minutes: under a SYN
            # flood each spoofed SYN would hold a queue slot that long (RFC 4987 §3.2, §3.6).
            self._timer(Timer.RETRANSMIT, TimerAction.GIVE_UP)
            self._teardown(self.soft_error or ConnectionTimedOut("connection timed out"), Cause.TIMEOUT_R2,
                           report=Event.TIMED_OUT)
            return
        self._rexmits += 1
        self._timer(Timer.RETRANSMIT, TimerAction.RETRANSMIT, self._rexmits)
        if self._rexmits >= cfg.r1 and not self._r1_reported:
            self._r1_reported = True
            self._event(Event.DELIVERY_PROBLEM)
        if self.snd_una != self.iss:
            # A data (or FIN) segment timed out. The SYN carries no data: its loss leaves the
            # window and ssthresh alone and sets the initial window instead (_established).
            self._congestion_timeout(now)
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

    def _congestion_timeout(self, now: float) -> None:
        """RFC 5681 §3.1 on a retransmission timeout: ssthresh = max(FlightSize / 2, 2·SMSS) and
        cwnd = LW — but "the given segment has already been retransmitted by way of the
        retransmission timer at least once": ssthresh is held constant. A timeout during a fast
        recovery is the loss of a retransmission, and §4.3 says cwnd and ssthresh "MUST be
        lowered twice": FlightSize is then taken no larger than the ssthresh the recovery set,
        so the new one is half of it (Linux keeps the recovery's ssthresh here; we follow the
        RFC)."""
        cc = self.cc
        rec = self.recovery
        flight = _diff(self.snd_max, self.snd_una)
        if rec.in_recovery:
            flight = min(flight, cc.ssthresh)
        held = cc.ssthresh if self._rexmits > 1 else None
        cc.on_timeout(flight, now=now, rtt=self.rtt.srtt)
        if held is not None:
            cc.ssthresh = held
        rec.on_timeout(self)

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
            self._timer(Timer.KEEPALIVE, TimerAction.PEER_DEAD)
            self._teardown(ConnectionTimedOut("connection timed out (keep-alive)"), Cause.TIMEOUT_KEEPALIVE,
                           report=Event.TIMED_OUT)
            return
        self._ka_probes += 1
        self._timer(Timer.KEEPALIVE, TimerAction.PROBE, self._ka_probes)
        seg = self._make((self.snd_nxt - 1) & _MASK, self.rcv_nxt, ACK, b"", now)
        self._queue(seg)
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
_CAN_RECEIVE_TEXT: Final = frozenset((State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2))
_CAN_RECEIVE_FIN: Final = frozenset((State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT,
                                     State.CLOSING, State.LAST_ACK, State.TIME_WAIT))


def _timestamps(seg: Segment) -> Timestamps | None:
    opts = seg.options
    if len(opts) == 3 and type(opts[2]) is Timestamps:  # NOP, NOP, TS: what every segment carries
        return opts[2]
    for opt in opts:
        if isinstance(opt, Timestamps):
            return opt
    return None


# Linux's icmp_err_convert (IPv4) and icmpv6_err_convert: (type, code) -> (errno, hard). Hard per
# RFC 9293 §3.9.2.2: ICMP destination unreachable codes 2-4 (and the administrative ones Linux
# also treats as fatal); ICMPv6 unreachable codes other than 0 and 3.
_ICMP4_UNREACH: Final = {
    0: (errno_codes.ENETUNREACH, False), 1: (errno_codes.EHOSTUNREACH, False),
    2: (errno_codes.ENOPROTOOPT, True), 3: (errno_codes.ECONNREFUSED, True),
    5: (errno_codes.EOPNOTSUPP, False), 6: (errno_codes.ENETUNREACH, True),
    7: (errno_codes.EHOSTDOWN, True), 8: (errno_codes.ENONET, True), 9: (errno_codes.ENETUNREACH, True),
    10: (errno_codes.EHOSTUNREACH, True), 11: (errno_codes.ENETUNREACH, True),
    12: (errno_codes.EHOSTUNREACH, True), 13: (errno_codes.EHOSTUNREACH, True),
    14: (errno_codes.EHOSTUNREACH, True), 15: (errno_codes.EHOSTUNREACH, True),
}
_ICMP6_UNREACH: Final = {
    0: (errno_codes.ENETUNREACH, False), 1: (errno_codes.EACCES, True), 2: (errno_codes.EHOSTUNREACH, True),
    3: (errno_codes.EHOSTUNREACH, False), 4: (errno_codes.ECONNREFUSED, True), 5: (errno_codes.EACCES, True),
    6: (errno_codes.EACCES, True),
}


def _icmp_errno(err: IcmpError) -> tuple[int, bool]:
    """(errno as Linux reports it, hard error?) for an unreachable, time-exceeded or
    parameter-problem message."""
    if err.version == 4:
        if err.icmp_type == 3:
            return _ICMP4_UNREACH.get(err.icmp_code, (errno_codes.EHOSTUNREACH, True))
        return (errno_codes.EHOSTUNREACH, False) if err.icmp_type == 11 else (errno_codes.EPROTO, False)
    if err.icmp_type == 1:
        return _ICMP6_UNREACH.get(err.icmp_code, (errno_codes.EHOSTUNREACH, True))
    return (errno_codes.EHOSTUNREACH, False) if err.icmp_type == 3 else (errno_codes.EPROTO, False)
