"""Both ends' RFC 9293 states, inferred from what one capture point saw.

A segment in a capture is two events: its sender sent it, and its receiver received it. The
first is certain — the segment exists. The second is certain only when the capture was made at
the receiver (a segment seen there has reached it) or when the receiver later proves it: an
acknowledgment that covers the segment, or an answer only that segment could draw. Everything
else a capture at one point says about the other end is a guess, and is shown as one
(``CLOSE-WAIT?``).

So each end is followed as the core's own :class:`~synack.core.records.State` machine, moved by
the arrows of :data:`~synack.core.records.TRANSITIONS` (every change records the
:class:`~synack.core.records.Cause` of its arrow), with two parts:

* ``confirmed``: the state after every event known to have happened at that end — what it sent,
  and what it is known to have received;
* ``pending``: segments sent towards it that it has not yet been shown to have received, in
  capture order. The state shown is ``confirmed`` with the pending receipts applied on top,
  uncertain if any of them changed it. When the end's own next segment acknowledges a pending
  one, that receipt moves into ``confirmed``: it happened before the end sent that segment.

What the end sends is read the same way RFC 9293 §3.10 would produce it: a FIN is a CLOSE, a
SYN,ACK answers a SYN, a RST is an abort, a refusal, or the answer of a TCP that has no such
connection (then the states before it are revised: the end had lost the connection, or never
had it). TIME-WAIT ends 2×MSL after it began (``msl``, which the capture cannot see: given by
the user), uncertain at an end the capture was not made at. Timeouts that send nothing (R2, a
FIN-WAIT-2 timeout, keep-alive) are invisible; a capture only shows their silence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # conn imports this module; the tracker only reads its sides' fields
    from synack.analyze.conn import Side

from synack.analyze.model import StateChange, arrow_of
from synack.core.records import Cause, State
from synack.core.wire import ACK, FIN, RST, SYN, seq_add, seq_ge, seq_in_window

__all__ = ["Seg", "StateTracker"]

S = State
C = Cause
_SYNCHRONIZED: Final = frozenset(
    (S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT)
)
# A FIN received in these states moves the end (RFC 9293 §3.10.7.4, eighth step).
_ON_FIN: Final = {S.ESTABLISHED: S.CLOSE_WAIT, S.FIN_WAIT_1: S.CLOSING, S.FIN_WAIT_2: S.TIME_WAIT}
# The ACK of our FIN moves these (fifth step).
_ON_ACK_OF_FIN: Final = {S.FIN_WAIT_1: S.FIN_WAIT_2, S.CLOSING: S.TIME_WAIT, S.LAST_ACK: S.CLOSED}
# CLOSE (sending our FIN) from these (§3.10.4).
_ON_CLOSE: Final = {S.ESTABLISHED: S.FIN_WAIT_1, S.SYN_RECEIVED: S.FIN_WAIT_1, S.CLOSE_WAIT: S.LAST_ACK}
_MAX_CHANGES: Final = 200  # a pathological connection cycling through states: keep the first ones


class Seg:
    """What the inference reads of one segment: capture time and frame number, the control
    bits, the sequence number, the acknowledgment (None without the ACK bit), SEG.LEN and the
    payload length; ``again``: it repeats octets sent before, and whether an earlier copy
    reached the receiver first is not known.

    A value, never changed once made (:meth:`but` makes a changed copy). A plain class, not a
    frozen dataclass: one is made per segment the inference reads, and a frozen dataclass's
    ``__init__`` (Python, ``object.__setattr__`` per field) cost more than the rest of its
    reading, in both forms (compiled by mypyc it is still that Python ``__init__``)."""

    __slots__ = ("ack", "again", "flags", "frame", "plen", "seg_len", "seq", "t", "tsval")

    def __init__(
        self,
        t: float,
        frame: int,
        flags: int,
        seq: int,
        ack: int | None,
        seg_len: int,
        plen: int,
        again: bool = False,
        tsval: int = -1,
    ) -> None:
        self.t = t
        self.frame = frame
        self.flags = flags
        self.seq = seq
        self.ack = ack
        self.seg_len = seg_len
        self.plen = plen
        self.again = again  # a copy of octets sent before, not known whether an earlier copy arrived
        self.tsval = tsval  # its TSopt's TSval, -1 without one

    def but(self, *, flags: int = -1, no_ack: bool = False, again: bool = False) -> Seg:
        """A copy with other control bits, without its acknowledgment, or marked ``again``."""
        return Seg(
            self.t,
            self.frame,
            self.flags if flags < 0 else flags,
            self.seq,
            None if no_ack else self.ack,
            self.seg_len,
            self.plen,
            self.again or again,
            self.tsval,
        )

    def __repr__(self) -> str:
        return (f"Seg(t={self.t!r}, frame={self.frame}, flags={self.flags:#x}, seq={self.seq}, "
                f"ack={self.ack}, seg_len={self.seg_len}, plen={self.plen}, again={self.again}, "
                f"tsval={self.tsval})")

    @property
    def end(self) -> int:
        """The sequence number after this segment."""
        return seq_add(self.seq, self.seg_len)

    @property
    def occupies(self) -> bool:
        return self.seg_len > 0


Step = tuple[State, Cause | None, str]
"""One move of an end: the state it enters, the RFC event (None for an inference that follows
no arrow), and words for that inference."""


class _End:
    """One end of the connection as inferred so far: ``firm`` changes (the end certainly went
    through them, though a remote end's exact moment may be unknown: then the entry is marked
    uncertain) and ``tentative`` ones (pending receipts applied on top, recomputed after every
    segment)."""

    __slots__ = (
        "confirmed",
        "fin_acked",
        "fin_seq",
        "firm",
        "iss",
        "last_ack_sent",
        "last_sent",
        "passive",
        "pending",
        "sent_at_peer_fin",
        "sure",
        "tentative",
        "ts_recent",
    )

    def __init__(self) -> None:
        self.confirmed: State | None = None  # None: not known (nothing seen of it yet)
        self.sure = True  # whether ``confirmed`` itself is certain (a midstream guess is not)
        self.pending: list[Seg] = []
        self.firm: list[StateChange] = []
        self.tentative: list[StateChange] = []
        self.iss: int | None = None
        self.fin_seq: int | None = None
        self.fin_acked = False
        self.passive = False
        self.last_ack_sent: int | None = None
        self.last_sent: Seg | None = None
        self.sent_at_peer_fin: int | None = None  # how far it had sent when the peer's FIN arrived
        self.ts_recent = -1  # RFC 7323 TS.Recent, followed at an end the capture is at (-1: none)

    @property
    def changes(self) -> list[StateChange]:
        return self.firm + self.tentative

    @property
    def shown(self) -> StateChange | None:
        if self.tentative:
            return self.tentative[-1]
        return self.firm[-1] if self.firm else None

    @property
    def firm_t(self) -> float:
        return self.firm[-1].t if self.firm else -1.0


def _known(value: int) -> int | None:
    """A Side's number, None when it is not known yet (conn.UNKNOWN, -1)."""
    return None if value < 0 else value


_MAX_PENDING: Final = 64
_UNLESS: Final = "unless what was sent to it since had moved it"
_PROVED_BY_FIN: Final = -1  # the peer's FIN is known to have arrived only from the end's own FIN


class StateTracker:
    """Both ends of one connection: side 0 is the originator (it sent the first SYN), side 1
    the responder. ``local(side)`` says whether the capture was made at that end (it may become
    true later, when the capture reveals where it was made); ``msl`` is the MSL assumed for
    TIME-WAIT; ``fin_wait_2`` the FIN-WAIT-2 timeout assumed for a projection after the
    capture's end (None: none)."""

    __slots__ = ("busy", "ends", "fin_wait_2", "local", "msl", "sides")

    def __init__(
        self,
        local: Callable[[int], bool],
        msl: float,
        fin_wait_2: float | None = None,
        sides: list[Side] | None = None,
    ) -> None:
        self.local = local
        self.msl = msl
        self.fin_wait_2 = fin_wait_2
        # Lists, not pairs: compiled by mypyc, a tuple indexed by a variable is made into a
        # Python tuple at every access.
        self.ends = [_End(), _End()]
        # What each end sent, as the analysis keeps it (Conn.sides): the end of what the capture
        # saw of it without a hole, before and after the current segment, its last ACK.
        self.sides: list[Side] = [] if sides is None else sides
        self.busy = True  # whether plain segments can still move a state (see _busy)

    def _contig(self, side: int) -> int | None:
        return _known(self.sides[side].contig) if self.sides else None

    # -- the public interface ----------------------------------------------------------------

    def synchronized(self) -> bool:
        """Whether either end is known or guessed to have reached a synchronized state."""
        return any(
            e.confirmed in _SYNCHRONIZED or any(c.state in _SYNCHRONIZED for c in e.changes)
            for e in self.ends
        )

    def _busy(self) -> bool:
        """Whether plain segments (no SYN/FIN/RST) can still move a state: some receipt awaits
        proof, or an end waits for the ACK of its SYN or FIN."""
        for e in self.ends:
            if e.pending or (e.fin_seq is not None and not e.fin_acked):
                return True
            if e.confirmed in (S.SYN_RECEIVED, S.SYN_SENT, None):
                return True
        return False

    def packet(self, side: int, seg: Seg) -> None:
        """Segment ``seg`` sent by ``side`` (and, perhaps, received by the other)."""
        self.advance(seg.t)
        x, y = self.ends[side], self.ends[1 - side]
        dropped = not self.stamp(side, seg.seq, seg.flags, seg.tsval)
        if self._no_news(side, x, y, seg):
            x.last_sent = seg
            if seg.ack is not None:
                x.last_ack_sent = seg.ack
            return
        if not self._refused(side, x, seg):
            self._hidden_fin(side, x, seg)
            self._confirm(side, x, seg)
            self._sent(side, x, y, seg)
        x.last_sent = seg
        if seg.ack is not None:
            x.last_ack_sent = seg.ack
        if not dropped:
            if y.pending and self.local(1 - side):
                self._in_order_now(1 - side, y, seg)
            self._receive(1 - side, y, seg)
        self._retent(side)
        self._retent(1 - side)
        self.busy = self._busy()

    def stamp(self, side: int, seq: int, flags: int, tsval: int) -> bool:
        """A segment from ``side`` with TSval ``tsval`` (-1: no timestamp) reaches the other end:
        False when that end is where the capture was made and drops it by PAWS (RFC 7323 §5.3
        R1: a TSval below TS.Recent, and no RST — a copy sent before one that arrived first);
        otherwise True, TS.Recent updated as §4.3 (2) says: SEG.TSval >= TS.Recent and
        SEG.SEQ <= Last.ACK.sent (the last acknowledgment that end sent). The engine also calls
        this for segments the inference does not otherwise read (a retransmission on a quiet
        connection moves TS.Recent as much as any)."""
        if tsval < 0 or not self.local(1 - side):
            return True
        y = self.ends[1 - side]
        recent = y.ts_recent
        if recent >= 0 and not seq_ge(tsval, recent):  # (timestamps compare as sequence numbers do)
            return bool(flags & RST)
        if flags & SYN:
            y.ts_recent = tsval  # §4.3 (1): TS.Recent starts from the SYN
            return True
        last_ack = _known(self.sides[1 - side].lastack) if self.sides else y.last_ack_sent
        if last_ack is None or seq_ge(last_ack, seq):
            y.ts_recent = tsval
        return True

    def _no_news(self, side: int, x: _End, y: _End, seg: Seg) -> bool:
        """Whether ``seg`` (from ``x`` to ``y``) changes nothing but what ``x`` was last seen to
        send — the bulk of a busy phase, e.g. a flight of data while the receiver's move to
        ESTABLISHED awaits proof. It does when: it has no SYN, FIN or RST; ``x`` has no receipt
        to prove and is past the handshake (sending it moves nothing, §3.10); it carries data or
        follows ``x``'s FIN (no FIN to infer from it); ``y`` holds no FIN or RST receipt (their
        replay reads what ``x`` sent); and its arrival at ``y`` is no news: it cannot move ``y``,
        or, with the capture elsewhere, it is new and the receipt before it carried the same
        acknowledgment (see :meth:`_receive`). Then every step of :meth:`packet` would leave
        both ends, their guesses and ``busy`` as they are."""
        if (
            seg.flags & (SYN | FIN | RST)
            or x.pending
            or x.confirmed in (None, S.SYN_SENT, S.SYN_RECEIVED)
            or (not seg.plen and x.fin_seq is None)
        ):
            return False
        for r in y.pending:
            if r.flags & (FIN | RST):
                return False
        if not self._moves(1 - side, seg):
            return True
        if self.local(1 - side):
            return False
        before = _known(self.sides[side].contig_before) if self.sides else None
        if seg.occupies and before is not None and seq_ge(before, seg.end):
            return False  # a copy of what was sent before: _receive decides
        last = y.pending[-1] if y.pending else None
        return (
            last is not None
            and not last.flags & (SYN | FIN | RST)
            and last.ack == seg.ack
            and (last.occupies or not seg.occupies)
        )

    def advance(self, now: float) -> None:
        """Let time run to ``now``: TIME-WAIT ends 2×MSL after it began."""
        for side, e in enumerate(self.ends):
            shown = e.shown
            if shown is None or shown.state is not S.TIME_WAIT:
                continue
            began = self._began(e, S.TIME_WAIT)
            if now >= began + 2 * self.msl:
                uncertain = shown.uncertain or not self.local(side)
                e.firm.extend(e.tentative)
                e.tentative = []
                e.pending = []
                e.confirmed, e.sure = S.CLOSED, not uncertain
                self._firm(
                    side,
                    began + 2 * self.msl,
                    0,
                    [(S.CLOSED, C.TIMEOUT_2MSL, "2×MSL after TIME-WAIT began")],
                    uncertain,
                )

    def finish(
        self,
        end_time: float,
        silent: dict[int, tuple[float, Cause, str]] | None = None,
    ) -> tuple[tuple[StateChange, ...], tuple[StateChange, ...]]:
        """The state changes of both ends, up to ``end_time``, then what the capture could not
        see, as uncertain projections: a TIME-WAIT still running ends 2×MSL after it began, a
        FIN-WAIT-2 after the assumed timeout, and an end whose last segments went unanswered
        (``silent``: side → when, why) gave up."""
        self.advance(end_time)
        for side, e in enumerate(self.ends):
            shown = e.shown
            if shown is None:
                continue
            e.firm.extend(e.tentative)
            e.tentative = []
            if shown.state is S.TIME_WAIT:
                at = self._began(e, S.TIME_WAIT) + 2 * self.msl
                self._firm(
                    side,
                    at,
                    0,
                    [(S.CLOSED, C.TIMEOUT_2MSL, "2×MSL after TIME-WAIT began (after the capture ended)")],
                    True,
                )
            elif shown.state is S.FIN_WAIT_2 and self.fin_wait_2 is not None:
                at = self._began(e, S.FIN_WAIT_2) + self.fin_wait_2
                self._firm(
                    side,
                    at,
                    0,
                    [
                        (
                            S.CLOSED,
                            C.TIMEOUT_FIN_WAIT_2,
                            "if its application had closed the socket (FIN-WAIT-2 timeout)",
                        )
                    ],
                    True,
                )
            elif silent and side in silent and shown.state is not S.CLOSED:
                at, cause, note = silent[side]
                self._firm(side, max(at, e.firm_t), 0, [(S.CLOSED, cause, note)], True)
        return tuple(self.ends[0].firm), tuple(self.ends[1].firm)

    def state(self, side: int) -> tuple[State | None, bool]:
        """The state shown for ``side`` now, and whether it is uncertain."""
        shown = self.ends[side].shown
        return (None, False) if shown is None else (shown.state, shown.uncertain)

    @staticmethod
    def _began(e: _End, state: State) -> float:
        """When the current run of ``state`` began (its first entry among the last ones)."""
        began = 0.0
        for c in reversed(e.changes):
            if c.state is not state:
                break
            began = c.t
            if c.cause is None and c.note.startswith("a retransmitted FIN"):
                break  # the 2×MSL timer restarted here
        return began

    # -- receipts ----------------------------------------------------------------------------

    def _moves(self, side: int, seg: Seg) -> bool:
        """Whether ``seg`` could move the state of ``side`` when it arrives there. A segment
        without SYN, FIN or RST moves only an end waiting for the ACK of its SYN, or one whose
        ACK covers the end's FIN (§3.10.7.4, fifth step): below that (an ACK of data while the
        FIN is in flight) it moves nothing, whenever it arrives — it is not kept."""
        if seg.flags & (SYN | FIN | RST):
            return True
        e = self.ends[side]
        if seg.ack is None:
            return False
        if e.confirmed in (S.SYN_RECEIVED, S.SYN_SENT):
            return True
        fin = e.fin_seq
        return fin is not None and not e.fin_acked and seq_ge(seg.ack, seq_add(fin, 1))

    def _receive(self, side: int, e: _End, seg: Seg) -> None:
        if not self._moves(side, seg):
            return
        before = _known(self.sides[1 - side].contig_before) if self.sides else None
        if seg.occupies and not seg.flags & (SYN | RST) and before is not None and seq_ge(before, seg.end):
            # A copy of what its sender had sent before. It is old where it arrives when an
            # earlier copy is known to have arrived first: seen arriving (the capture is at the
            # receiver), or acknowledged by the receiver before this copy was captured.
            if self.local(side) or (e.last_ack_sent is not None and seq_ge(e.last_ack_sent, seg.end)):
                # Unacceptable, its ACK is not processed (§3.10.7.4); an old FIN only restarts
                # TIME-WAIT.
                if not seg.flags & FIN:
                    return
                seg = seg.but(no_ack=True)
            else:
                # The earlier copies may all have been lost: this one may be the first to arrive,
                # and then its ACK counts. Which is not known (see _apply).
                seg = seg.but(again=True)
        if self.local(side) and (not seg.flags & FIN or self._in_order(side, seg)):
            self._apply(side, e, seg, seg, False)
        elif self.local(side) and seg.ack is not None:
            # A FIN beyond a hole, where the capture is: its ACK counts at once (the segment is in
            # the window), its FIN waits for the hole to fill.
            self._apply(side, e, seg.but(flags=seg.flags & ~FIN), seg, False)
            e.pending.append(seg.but(no_ack=True))
        else:
            last = e.pending[-1] if e.pending else None
            if (
                last is not None
                and not (seg.flags | last.flags) & (SYN | FIN | RST)
                and last.ack == seg.ack
                and (last.occupies or not seg.occupies)
            ):
                return  # the same news as the receipt before it, which will be proven no later
            e.pending.append(seg)
            if len(e.pending) > _MAX_PENDING:
                del e.pending[0]

    def _in_order(self, side: int, seg: Seg) -> bool:
        """Whether everything the other end sent before ``seg``'s FIN has been seen arriving:
        a TCP acts on a FIN only in order (RFC 9293 §3.10.7.4, eighth step)."""
        contig = self._contig(1 - side)
        return contig is None or seq_ge(contig, seg.end)

    def _in_order_now(self, side: int, e: _End, seg: Seg) -> None:
        """A segment filled the hole before a FIN that reached ``side`` (where the capture is)."""
        keep: list[Seg] = []
        for r in e.pending:
            if r.flags & FIN and not r.flags & RST and self._in_order(side, r):
                self._apply(side, e, r, seg, False)
            else:
                keep.append(r)
        e.pending = keep

    def _refused(self, side: int, x: _End, seg: Seg) -> bool:
        """A RST,ACK that answers a SYN from an end that never sent a SYN,ACK: nothing listened
        there. The SYN's arrival is proven, but it moved nothing: the end was CLOSED."""
        if (
            not seg.flags & RST
            or seg.ack is None
            or x.iss is not None
            or x.confirmed not in (None, S.SYN_RECEIVED)
        ):
            return False
        syns = [r for r in x.pending if r.flags & SYN and r.ack is None and seg.ack == r.end]
        if x.confirmed is None and not syns:
            return False
        x.pending = [r for r in x.pending if r not in syns]
        x.firm = [c for c in x.firm if c.state is not S.SYN_RECEIVED]
        x.passive = False
        x.confirmed, x.sure = S.CLOSED, True
        self._firm(
            side,
            seg.t,
            seg.frame,
            [(S.CLOSED, None, "nothing listens: it refused the SYN")],
            False,
            force=True,
        )
        return True

    def _confirm(self, side: int, x: _End, seg: Seg) -> None:
        """``x`` sends ``seg``: the pending receipts its acknowledgment covers happened before."""
        if not x.pending or seg.ack is None:
            return
        ack = seg.ack
        proven = [r.occupies and seq_ge(ack, r.end) for r in x.pending]
        if (
            x.confirmed is S.SYN_RECEIVED
            and x.passive
            and x.iss is not None
            and (seg.flags & FIN or seg.plen)
        ):
            # A listener's connection sends data or closes only once its application has it:
            # the ACK of its SYN had arrived.
            syn_end = seq_add(x.iss, 1)
            proven = [
                ok
                or (
                    not r.occupies
                    and r.ack is not None
                    and seq_ge(r.ack, syn_end)
                    and not r.flags & (SYN | RST)
                )
                for ok, r in zip(proven, x.pending, strict=True)
            ]
        later_ack: int | None = None
        for k in range(len(x.pending) - 1, -1, -1):
            r = x.pending[k]
            if proven[k]:
                if later_ack is None and not r.again:  # a copy sent again: some copy arrived, not this one
                    later_ack = r.ack
            elif (
                not r.occupies
                and not r.flags & RST
                and r.ack is not None
                and later_ack is not None
                and seq_ge(later_ack, r.ack)
            ):
                proven[k] = True  # a later segment known to have arrived carried the same news
        keep: list[Seg] = []
        local = self.local(side)
        before = x.confirmed
        for r, ok in zip(x.pending, proven, strict=True):
            if ok:
                # It arrived between its capture and now: an end elsewhere entered the new state
                # at a moment the capture cannot tell (uncertain there), and is in it now.
                self._apply(side, x, r, seg, not local, settle=False)
            else:
                keep.append(r)
        x.pending = keep
        if not local and x.confirmed is not None and x.confirmed is not before and x.sure:
            self._firm(side, seg.t, seg.frame, [(x.confirmed, None, "")], False, force=True)

    def _apply(
        self, side: int, e: _End, receipt: Seg, at: Seg, when_unknown: bool, *, settle: bool = True
    ) -> None:
        """``receipt`` reached end ``e`` and is known to have done so once ``at`` was seen (its own
        arrival, the segment that filled the hole before it, the end's answer that proves it).
        ``when_unknown``: the end is elsewhere, so the move happened at some moment between the
        two: uncertain at the receipt, certain from ``at`` on."""
        other: State | None = None
        if receipt.again and receipt.ack is not None:
            # A proof that octets arrived proves that one copy of them did, not which: if an
            # earlier copy came first, this one was an old duplicate and its ACK moved nothing.
            dup = self._arrive(side, e, e.confirmed, receipt.but(no_ack=True), keep=False)
            other = dup[-1][0] if dup else e.confirmed
        steps = self._arrive(side, e, e.confirmed, receipt, keep=True)
        if not steps:
            return
        if other is not None and other is not steps[-1][0]:
            e.sure = False
            note = f"or {other.value}, if an earlier copy of this segment had arrived first"
            steps = [(st, cause, note) for st, cause, _ in steps]
        if receipt.flags & FIN and e.sent_at_peer_fin is None:
            if at is receipt:  # it arrived here, where the capture is: how far this end had sent
                e.sent_at_peer_fin = self._contig(side)
            elif not at.flags & FIN:
                # An answer that is not a FIN: how far the end had sent when it answered (its
                # SND.NXT, for an ACK without data). It does not show the end had not closed: its
                # FIN may have left before the answer and reached the capture after it (reordered,
                # or lost and sent again) — then the FIN lies below this point.
                e.sent_at_peer_fin = at.seq
            else:
                e.sent_at_peer_fin = _PROVED_BY_FIN
        e.confirmed = steps[-1][0]
        if not e.sure:
            steps = [(st, cause, note or "follows from an uncertain state") for st, cause, note in steps]
            self._firm(side, *((receipt.t, receipt.frame) if when_unknown else (at.t, at.frame)), steps, True)
        elif when_unknown:
            self._firm(side, receipt.t, receipt.frame, steps, True)
            if settle:
                self._firm(side, at.t, at.frame, [(steps[-1][0], None, "")], False, force=True)
        else:
            self._firm(side, at.t, at.frame, steps, False)

    def _arrive(self, side: int, e: _End, state: State | None, seg: Seg, *, keep: bool) -> list[Step]:
        """The moves ``seg`` makes end ``e`` take from ``state`` when it arrives (``keep``: record
        the facts it teaches, as opposed to a tentative replay)."""
        flags = seg.flags
        if flags & RST:
            step = self._arrive_rst(side, e, state, seg)
            return [step] if step is not None else []
        if flags & SYN:
            step = self._arrive_syn(e, state, seg, keep)
            return [step] if step is not None else []
        steps: list[Step] = []
        ack = seg.ack
        if ack is not None:
            if state is S.SYN_RECEIVED and e.iss is not None and ack == seq_add(e.iss, 1):
                state = S.ESTABLISHED
                steps.append((state, C.RCV_ACK_OF_SYN, ""))
            if e.fin_seq is not None and state in _ON_ACK_OF_FIN and seq_ge(ack, seq_add(e.fin_seq, 1)):
                if keep:
                    e.fin_acked = True
                state = _ON_ACK_OF_FIN[state]
                steps.append((state, C.RCV_ACK_OF_FIN, ""))
        if flags & FIN and state in _ON_FIN:
            steps.append((_ON_FIN[state], C.RCV_FIN, ""))
        elif flags & FIN and state is S.TIME_WAIT:
            steps.append((S.TIME_WAIT, None, "a retransmitted FIN: ACK it again, restart the 2×MSL timer"))
        return steps

    def _arrive_syn(self, e: _End, state: State | None, seg: Seg, keep: bool) -> Step | None:
        if seg.ack is None:  # a SYN
            if state in (None, S.LISTEN) and e.iss is None:
                if keep:
                    e.passive = True
                return S.SYN_RECEIVED, C.RCV_SYN, ""
            if state is S.SYN_SENT:
                return S.SYN_RECEIVED, C.RCV_SYN, "simultaneous open"
            return None
        if state is S.SYN_SENT and e.iss is not None and seg.ack == seq_add(e.iss, 1):
            return S.ESTABLISHED, C.RCV_SYN_ACK, ""
        if state is S.SYN_RECEIVED and e.iss is not None and seg.ack == seq_add(e.iss, 1):
            return S.ESTABLISHED, C.RCV_ACK_OF_SYN, ""  # the other half of a simultaneous open
        return None

    def _arrive_rst(self, side: int, e: _End, state: State | None, seg: Seg) -> Step | None:
        if state is S.SYN_SENT:
            if e.iss is not None and seg.ack == seq_add(e.iss, 1):
                return S.CLOSED, C.RCV_RST_REFUSED, "connection refused"
            return None
        expected = self._rcv_nxt(side, e)
        if self.local(side) and self._contig(1 - side) is not None:
            expected = {self._contig(1 - side) or 0}
        if state is S.SYN_RECEIVED:
            if expected is None or any(seq_in_window(seg.seq, x, 1 << 16) for x in expected):
                if e.passive:
                    return S.LISTEN, C.RCV_RST, "back to LISTEN"
                return S.CLOSED, C.RCV_RST_REFUSED, ""
            return None
        if state in _SYNCHRONIZED and (expected is None or seg.seq in expected):
            return S.CLOSED, C.RCV_RST, ""
        return None  # outside the window, or a challenge ACK (RFC 5961 §3.2): no change

    def _rcv_nxt(self, side: int, e: _End) -> set[int] | None:
        """The sequence numbers end ``side`` may expect next from the other: its own last
        acknowledgment, and the other's last sequence number as the capture saw it."""
        other = self.ends[1 - side].last_sent
        out: set[int] = set()
        if e.last_ack_sent is not None:
            out.add(e.last_ack_sent)
        if other is not None:
            out.add(other.end)
        return out or None

    # -- what an end sends -------------------------------------------------------------------

    def _sent(self, side: int, x: _End, y: _End, seg: Seg) -> None:
        flags = seg.flags
        if flags & RST:
            self._sent_rst(side, x, y, seg)
        elif flags & SYN:
            self._sent_syn(side, x, seg)
        else:
            self._sent_other(side, x, seg)

    def _set(
        self,
        side: int,
        x: _End,
        state: State,
        cause: Cause | None,
        seg: Seg,
        *,
        sure: bool = True,
        note: str = "",
    ) -> None:
        before = x.confirmed
        x.confirmed, x.sure = state, sure
        self._keep_guesses(x, before, state, cause, sure)
        self._firm(side, seg.t, seg.frame, [(state, cause, note)], not sure)

    @staticmethod
    def _keep_guesses(x: _End, before: State | None, state: State, cause: Cause | None, sure: bool) -> None:
        """What the end sent moves it from ``before`` to ``state``. The guesses shown until now
        (receipts not yet proven, applied in turn) stay in its history as far as the move
        follows from them — the end may well have been there — and those after are dropped:
        they contradict it. When none is kept, the end was in ``before`` all along if the move
        is certain (states do not come back); if the move is itself a guess, the end may have
        been where those receipts led, so the time since the first of them is not certain."""
        guesses = x.tentative
        if not guesses:
            return
        x.tentative = []
        keep = len(guesses)
        while keep and not (
            guesses[keep - 1].state is state or arrow_of(guesses[keep - 1].state, state, cause) is not None
        ):
            keep -= 1
        if keep:
            x.firm.extend(guesses[:keep])
        elif not sure and before is not None and len(x.firm) < _MAX_CHANGES:
            first = guesses[0]
            x.firm.append(
                StateChange(
                    max(first.t, x.firm[-1].t if x.firm else first.t),
                    before,
                    True,
                    first.frame,
                    before,
                    None,
                    _UNLESS,
                )
            )

    def _sent_syn(self, side: int, x: _End, seg: Seg) -> None:
        if seg.ack is None:  # SYN: an active OPEN
            if x.confirmed in (None, S.CLOSED):
                if not x.firm:
                    self._firm(side, seg.t, seg.frame, [(S.CLOSED, None, "before its SYN")], False)
                x.iss = seg.seq
                self._set(side, x, S.SYN_SENT, C.ACTIVE_OPEN, seg)
            elif x.confirmed is S.LISTEN:
                x.iss = seg.seq
                self._set(side, x, S.SYN_SENT, C.SEND, seg)
            return
        # SYN,ACK: the end received a SYN (proven even if the capture missed it) and answers it.
        if x.confirmed is S.SYN_RECEIVED and x.passive and (x.iss is None or seg.seq != x.iss):
            x.iss = seg.seq
        if x.confirmed in (None, S.LISTEN, S.CLOSED):
            x.iss = seg.seq
            x.passive = True
            self._set(side, x, S.SYN_RECEIVED, C.RCV_SYN, seg)
        elif x.confirmed is S.SYN_SENT:
            self._set(side, x, S.SYN_RECEIVED, C.RCV_SYN, seg, note="simultaneous open")
        if x.passive and (not x.firm or x.firm[0].state is not S.LISTEN):
            self._prepend_listen(side, x, seg)

    def _prepend_listen(self, side: int, x: _End, seg: Seg) -> None:
        """A SYN,ACK shows its sender was listening: LISTEN from the first thing seen of the
        connection (the SYN it answers, when the capture has it)."""
        other = self.ends[1 - side].firm
        t = min(other[0].t if other else seg.t, x.firm[0].t if x.firm else seg.t)
        first = StateChange(
            t, S.LISTEN, False, 0, None, C.PASSIVE_OPEN, "it answered a SYN: it was listening"
        )
        x.firm = [first] + [c.but(src=S.LISTEN) if k == 0 else c for k, c in enumerate(x.firm)]

    def _sent_other(self, side: int, x: _End, seg: Seg) -> None:
        if x.confirmed is None:
            self._set(
                side, x, S.ESTABLISHED, None, seg, sure=False, note="seen from the middle of the connection"
            )
        elif x.confirmed is S.SYN_SENT and seg.ack is not None:
            self._set(side, x, S.ESTABLISHED, C.RCV_SYN_ACK, seg, note="its ACK shows it had the SYN,ACK")
        elif x.confirmed is S.SYN_RECEIVED and not seg.flags & FIN and seg.plen:
            self._set(side, x, S.ESTABLISHED, C.RCV_ACK_OF_SYN, seg, note="it sends data")
        if seg.flags & FIN and x.fin_seq is None:
            x.fin_seq = seq_add(seg.seq, seg.plen)
            state = x.confirmed
            if state is S.CLOSE_WAIT and self._close_unsure(x, seg):
                # Its CLOSE may have come before the peer's FIN arrived (FIN-WAIT-1, then CLOSING),
                # its FIN waiting behind data or lost once: the wire looks the same.
                self._set(
                    side,
                    x,
                    S.LAST_ACK,
                    C.CLOSE,
                    seg,
                    sure=False,
                    note="or CLOSING, if its CLOSE came before the peer's FIN arrived and its FIN "
                    "waited behind data or was lost",
                )
            elif state in _ON_CLOSE:
                self._set(side, x, _ON_CLOSE[state], C.CLOSE, seg, sure=x.sure)
            elif state not in (S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.TIME_WAIT, S.LAST_ACK):
                self._set(side, x, S.FIN_WAIT_1, C.CLOSE, seg, sure=False)

    @staticmethod
    def _close_unsure(x: _End, seg: Seg) -> bool:
        """Whether the FIN ``seg`` of an end in CLOSE-WAIT may come from a CLOSE made before the
        peer's FIN arrived. It may unless the FIN sits exactly where the end stood when the peer's
        FIN was shown to have arrived (the answer that proved it was sent at SND.NXT = the FIN's
        sequence number: the FIN was not sent yet, and waited behind nothing): a FIN carrying
        data or following data sent since may have waited behind that data, and a FIN below that
        point was sent before the answer — the capture saw it later (reordered, or lost and sent
        again), so it may have left before the peer's FIN arrived."""
        sent = x.sent_at_peer_fin
        if seg.plen or sent is None or sent == _PROVED_BY_FIN:
            return True
        return x.fin_seq != sent

    def _hidden_fin(self, side: int, x: _End, seg: Seg) -> None:
        """An empty segment one past everything the end was seen to send: it sent a FIN the
        capture did not show (lost before it, or on another path). Which came first — its CLOSE
        or the peer's FIN — is then unknown: what follows is uncertain."""
        contig = self._contig(side)
        if (
            x.fin_seq is not None
            or seg.seg_len
            or seg.flags & (SYN | RST)
            or contig is None
            or seg.seq != seq_add(contig, 1)
            or x.confirmed not in _ON_CLOSE
        ):
            return
        x.fin_seq = contig
        state = x.confirmed
        self._set(
            side,
            x,
            _ON_CLOSE[state],
            C.CLOSE,
            seg,
            sure=False,
            note="its FIN was not captured: its sequence number is one past its last data",
        )

    def _sent_rst(self, side: int, x: _End, y: _End, seg: Seg) -> None:
        state = x.confirmed
        answered = y.last_sent
        if (
            state is S.SYN_SENT
            and answered is not None
            and answered.flags & SYN
            and answered.ack is not None
            and seg.seq == answered.ack
        ):
            if x.iss is not None and answered.ack == seq_add(x.iss, 1):
                self._never_had(side, x, seg)
            return  # RST for an unacceptable ACK in SYN-SENT: the end stays (§3.10.7.3)
        if state in (None, S.CLOSED, S.LISTEN):
            if state is None:
                note = (
                    "nothing listens: it refused the SYN"
                    if answered is not None and answered.flags & SYN
                    else "it has no such connection"
                )
                x.pending = []
                self._set(side, x, S.CLOSED, None, seg, note=note)
            return
        if (
            state is S.SYN_RECEIVED
            and answered is not None
            and answered.ack is not None
            and not seg.flags & ACK
            and x.iss is not None
            and answered.ack != seq_add(x.iss, 1)
        ):
            return  # RST for an unacceptable ACK in SYN-RECEIVED: the end stays (L9)
        # The reply of a TCP with no such connection to a segment with an ACK: <SEQ=SEG.ACK><CTL=RST>
        if self.sides:
            peer_ack = _known(self.sides[1 - side].lastack)
        else:
            peer_ack = answered.ack if answered else None
        gone = not seg.flags & ACK and peer_ack is not None and seg.seq == peer_ack and state in _SYNCHRONIZED
        x.pending = []
        if gone:
            # It had lost the connection since the last segment it sent (a timeout that sends
            # nothing, a crash): what arrived after that moved nothing.
            if self.sides:
                keep_to, since = self.sides[side].prev_frame, self.sides[side].prev_t
            else:
                keep_to = x.last_sent.frame if x.last_sent is not None else 0
                since = x.last_sent.t if x.last_sent is not None else seg.t
            x.firm = [c for c in x.firm if not c.frame or c.frame <= keep_to]
            x.tentative = []
            self._firm(side, since, keep_to,
                       [(S.CLOSED, None, "it lost the connection after its last segment: a timeout "
                                         "that sends nothing, or a crash")], True, force=True)
            self._set(
                side,
                x,
                S.CLOSED,
                None,
                seg,
                note="it answered as a TCP with no such connection: it had lost it (a crash or reboot?)",
            )
        else:
            self._set(side, x, S.CLOSED, C.ABORT, seg)

    def _never_had(self, side: int, x: _End, seg: Seg) -> None:
        """``x`` reset the SYN,ACK that correctly answered its SYN: it had no such connection —
        it gave up before the answer came (a timeout that sends nothing), or the SYN was an old
        duplicate it never sent in this life. The capture cannot tell which: its SYN-SENT becomes
        uncertain, and it was CLOSED, at the latest, when it answered."""
        first = [c for c in x.firm if c.state is S.CLOSED][:1]
        note = "or it never sent that SYN: an old duplicate"
        x.firm = first + [c.but(uncertain=True, note=c.note or note) for c in x.firm[len(first):]]
        x.tentative = []
        x.pending = []
        x.iss = None
        x.confirmed, x.sure = S.CLOSED, True
        words = ("it reset the SYN,ACK that answered its SYN: it had no such connection (it had given up, "
                 "or the SYN was an old duplicate)")
        self._firm(side, seg.t, seg.frame, [(S.CLOSED, None, words)], False, force=True)

    # -- the history -------------------------------------------------------------------------

    def _firm(
        self, side: int, t: float, frame: int, steps: list[Step], uncertain: bool, *, force: bool = False
    ) -> None:
        """Record moves the end certainly made (``uncertain``: at a moment only guessed). The
        tentative entries are dropped: they are recomputed from what is still pending. Guesses
        shown before this frame that it does not keep leave their mark: from the first of them,
        the end was where its history says only unless what was sent to it had moved it."""
        e = self.ends[side]
        if e.tentative:
            first = e.tentative[0]
            last = e.firm[-1] if e.firm else None
            if last is not None and 0 < first.frame < frame and len(e.firm) < _MAX_CHANGES:
                e.firm.append(
                    StateChange(
                        max(first.t, last.t), last.state, True, first.frame, last.state, None, _UNLESS
                    )
                )
        e.tentative = []
        for state, cause, note in steps:
            last = e.firm[-1] if e.firm else None
            restart = cause is None and note.startswith("a retransmitted FIN")
            if (
                last is not None
                and last.state is state
                and last.uncertain == uncertain
                and not force
                and not restart
            ):
                continue
            if len(e.firm) >= _MAX_CHANGES:
                return
            e.firm.append(
                StateChange(
                    max(t, e.firm_t),
                    state,
                    uncertain,
                    frame,
                    last.state if last is not None else None,
                    cause,
                    note,
                )
            )
            force = False

    def _retent(self, side: int) -> None:
        """Recompute the tentative entries: the pending receipts applied on top of the confirmed
        state (on copies of the facts they may touch)."""
        e = self.ends[side]
        e.tentative = []
        state = e.confirmed
        last = e.firm[-1] if e.firm else None
        local = self.local(side)
        for r in e.pending:
            if local and r.flags & FIN and not self._in_order(side, r):
                continue  # it reached the end, which holds it until the hole before it fills
            for new, cause, note in self._arrive(side, e, state, r, keep=False):
                if new is state and cause is not None:
                    continue
                e.tentative.append(
                    StateChange(
                        max(r.t, e.firm_t),
                        new,
                        True,
                        r.frame,
                        state if last is not None or state is not None else None,
                        cause,
                        note,
                    )
                )
                state = new

    def revise_uncertain(self, side: int, since: float) -> None:
        """Make every change of ``side`` after ``since`` uncertain (the end may have crashed)."""
        e = self.ends[side]
        e.firm = [c.but(uncertain=True) if c.t > since else c for c in e.firm]
