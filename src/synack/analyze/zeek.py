"""Zeek's view of a TCP connection: each endpoint's state, the connection's ``conn_state``, and
its ``history`` string, by the rules of ``docs/capture-analysis.md`` §1–2 (Zeek's own, restated
there as facts; this is not Zeek's code).

:class:`ZeekConn` is fed every packet of one connection in capture order with which side sent
it (``is_orig``) and the few facts the rules read; :meth:`ZeekConn.conn_state` applies the
decision table in its order. The per-packet cost is a few comparisons once the letters a
direction can show only once have been written."""

from __future__ import annotations

import enum
import re
from typing import Final

__all__ = ["Endpoint", "ZeekConn", "conn_state_meaning"]

_FIN: Final = 0x01
_SYN: Final = 0x02
_RST: Final = 0x04
_ACK: Final = 0x10


class Endpoint(enum.Enum):
    """Zeek's endpoint states."""

    INACTIVE = "INACTIVE"
    SYN_SENT = "SYN_SENT"
    SYN_ACK_SENT = "SYN_ACK_SENT"
    PARTIAL = "PARTIAL"
    ESTABLISHED = "ESTABLISHED"
    CLOSED = "CLOSED"
    RESET = "RESET"


_E = Endpoint
_INACTIVE_LIKE: Final = frozenset((_E.INACTIVE, _E.PARTIAL))
_CONN_STATES: Final = {
    "S0": "connection attempt seen, no reply",
    "S1": "connection established, not terminated",
    "SF": "normal establishment and termination",
    "REJ": "connection attempt rejected",
    "S2": "established, the originator tried to close, no reply from the responder",
    "S3": "established, the responder tried to close, no reply from the originator",
    "RSTO": "established, the originator aborted (sent a RST)",
    "RSTR": "the responder sent a RST",
    "RSTOS0": "the originator sent a SYN then a RST; no SYN,ACK from the responder",
    "RSTRH": "the responder sent a SYN,ACK then a RST; no SYN from the originator",
    "SH": "the originator sent a SYN then a FIN; no SYN,ACK from the responder (half-open)",
    "SHR": "the responder sent a SYN,ACK then a FIN; no SYN from the originator",
    "OTH": "no SYN seen, only midstream traffic (or a partial connection not later closed)",
}


def conn_state_meaning(state: str) -> str:
    """Zeek's own description of a ``conn_state``."""
    return _CONN_STATES.get(state, "")


# The originator sent a SYN, then a RST, with no handshake, FIN, gap or odd-flag letter of its
# own in between (Zeek's pattern for RSTOS0).
_RSTOS0: Final = re.compile(r"\^?S[^HAFGIQ]*R.*")


class ZeekConn:
    """One connection as Zeek tracks it. ``packet`` takes each packet in capture order."""

    __slots__ = (
        "_counts",
        "_last_fin",
        "_last_rst",
        "_last_syn",
        "_letters",
        "flipped",
        "history",
        "max_end",
        "os",
        "rs",
        "saw_first",
        "started",
    )

    def __init__(self) -> None:
        self.os = _E.INACTIVE
        self.rs = _E.INACTIVE
        self.history: list[str] = []
        self.flipped = False
        self.started = False
        self.saw_first = False
        self._letters = ""  # the letters written once (a string: a set costs 216 bytes a connection)
        self._counts: dict[str, int] = {}
        self._last_syn: list[int | None] = [None, None]
        self._last_fin: list[int | None] = [None, None]
        self._last_rst: list[int | None] = [None, None]
        self.max_end: list[int | None] = [None, None]

    def settled(self, side: int, plen: int) -> bool:
        """Whether a plain in-order segment (no control bit, no analysis flag, open window) from
        ``side`` can change nothing here: its letter (D or A) is already written."""
        return (
            ("D" if side == 0 else "d") in self._letters
            if plen
            else ("A" if side == 0 else "a") in self._letters
        )

    # -- history ---------------------------------------------------------------------------

    def _letter(self, is_orig: bool, letter: str) -> None:
        self.history.append(letter.upper() if is_orig else letter.lower())

    def _once(self, is_orig: bool, letter: str) -> None:
        key = letter.upper() if is_orig else letter.lower()
        if key not in self._letters:
            self._letters += key
            self.history.append(key)

    def count(self, is_orig: bool, letter: str) -> None:
        """An event of a counted kind (C bad checksum, G content gap, T retransmission, W zero
        window): the letter is written when the direction's count reaches 1, 10, 100, ..."""
        key = letter.upper() if is_orig else letter.lower()
        n = self._counts.get(key, 0) + 1
        self._counts[key] = n
        if n in (1, 10, 100, 1000, 10000, 100000, 1000000):
            self.history.append(key)

    def _repeat(self, table: list[int | None], side: int, value: int, is_orig: bool, letter: str) -> None:
        """S/H, F and R repeat only when the SYN's sequence number, the FIN's end or the RST's
        sequence number changes."""
        if table[side] != value:
            table[side] = value
            self._letter(is_orig, letter)

    # -- per packet ------------------------------------------------------------------------

    def first(self, flags: int) -> bool:
        """Called with the first packet of the connection: True when the roles are flipped
        (the first packet is a SYN,ACK, so its sender is the responder: history starts ``^``)."""
        self.started = True
        if flags & (_SYN | _ACK) == (_SYN | _ACK):
            self.flipped = True
            self.history.append("^")
        return self.flipped

    def packet(
        self, is_orig: bool, flags: int, seq: int, seg_end: int, plen: int, zero_window: bool, peer_fin: bool
    ) -> None:
        """One packet: ``seg_end`` is seq + SEG.LEN, ``zero_window`` whether it advertises a window
        of 0 after scaling, ``peer_fin`` whether the other side has sent a FIN."""
        side = 0 if is_orig else 1
        control = flags & (_SYN | _FIN | _RST)
        if control & (control - 1):  # more than one of SYN/FIN/RST
            self._once(is_orig, "I" if control == _FIN | _RST else "Q")
        elif control == _SYN:
            self._repeat(self._last_syn, side, seq, is_orig, "H" if flags & _ACK else "S")
        elif control == _FIN:
            self._repeat(self._last_fin, side, seg_end, is_orig, "F")
        elif control == _RST:
            self._repeat(self._last_rst, side, seq, is_orig, "R")
        elif plen:
            self._once(is_orig, "D")
        elif flags & _ACK:
            self._once(is_orig, "A")
        if plen:
            high = self.max_end[side]
            if high is not None and ((seg_end - high) & 0xFFFFFFFF == 0 or (seg_end - high) & 0x80000000):
                self.count(is_orig, "T")
            else:
                self.max_end[side] = seg_end
        if zero_window and not flags & _RST and not peer_fin:
            self.count(is_orig, "W")
        self._endpoint(is_orig, flags, plen)

    # -- endpoint states -------------------------------------------------------------------

    def _endpoint(self, is_orig: bool, flags: int, plen: int) -> None:
        me = self.os if is_orig else self.rs
        peer = self.rs if is_orig else self.os
        if flags & _RST:
            if not (me is _E.CLOSED and peer is _E.CLOSED):  # a RST after both FINs changes nothing
                me = _E.RESET
        elif flags & _SYN:
            me, peer = self._syn(is_orig, flags, me, peer)
        elif flags & _FIN:
            me = _E.CLOSED
        elif me is _E.INACTIVE:
            me = _E.PARTIAL
        if flags & _FIN and flags & _SYN:
            me = _E.CLOSED
        if is_orig:
            self.os, self.rs = me, peer
        else:
            self.rs, self.os = me, peer

    @staticmethod
    def _syn(is_orig: bool, flags: int, me: Endpoint, peer: Endpoint) -> tuple[Endpoint, Endpoint]:
        if is_orig:
            if me in _INACTIVE_LIKE or me is _E.SYN_SENT:
                me = _E.SYN_ACK_SENT if flags & _ACK else _E.SYN_SENT
            return me, peer
        # The responder: its SYN,ACK establishes it, and the originator too if it sent a SYN; a SYN
        # without ACK while the originator waits is a simultaneous open (both established).
        if peer is _E.SYN_SENT:
            peer = _E.ESTABLISHED
        if me not in (_E.CLOSED, _E.RESET):
            me = _E.ESTABLISHED
        return me, peer

    # -- the verdict -------------------------------------------------------------------------

    def conn_state(self, payload_seen: bool) -> str:
        """The decision table of capture-analysis.md §1, in its order. ``payload_seen``: any
        payload in either direction (two RESET ends without payload are a rejection)."""
        os_, rs = self.os, self.rs
        hist = "".join(self.history)
        if rs is _E.RESET:
            if os_ in (_E.SYN_SENT, _E.SYN_ACK_SENT) or (os_ is _E.RESET and not payload_seen):
                return "REJ"
            if os_ in _INACTIVE_LIKE:
                return "RSTRH"
            return "RSTR"
        if os_ is _E.RESET:
            if rs in _INACTIVE_LIKE:
                return "RSTOS0" if _RSTOS0.fullmatch(hist) else "OTH"
            return "RSTO"
        if os_ is _E.CLOSED and rs is _E.CLOSED:
            return "SF"
        if os_ is _E.CLOSED:
            return "SH" if rs in _INACTIVE_LIKE else "S2"
        if rs is _E.CLOSED:
            return "SHR" if os_ in _INACTIVE_LIKE else "S3"
        if os_ is _E.SYN_SENT and rs is _E.INACTIVE:
            return "S0"
        if os_ is _E.ESTABLISHED and rs is _E.ESTABLISHED:
            return "S1"
        return "OTH"
