"""SYN cookies (RFC 4987 §3.6): a listener answers a SYN without keeping any state, and rebuilds
the connection from the ACK that completes the handshake.

The cookie is the initial sequence number of the stateless SYN,ACK. Its 32 bits hold

* bits 31–24: a time slot (the host's clock in 64-second steps, modulo 256), so that a cookie
  expires: one is accepted in its own slot and the next (between 64 and 128 seconds);
* bits 23–22: an index into a table of four MSS values (the largest not above the peer's MSS
  option), which is all the cookie remembers of the SYN's MSS;
* bits 21–0: a MAC of the 4-tuple, the peer's ISN, the slot and the index, keyed with the
  host's secret (BLAKE2s): without the secret a blind attacker has one chance in 2**22 per guess,
  and a cookie is bound to the SYN it answers.

Like Linux, window scale and SACK-permitted — which a cookie's 32 bits have no room for — ride
in the low 6 bits of the SYN,ACK's timestamp value when the peer sent timestamps (the peer
echoes it in the ACK): bits 0–3 the peer's window shift (15 = none), bit 4 SACK-permitted. The
value is lowered, never raised, so that our timestamps stay monotonic. Without timestamps the
connection goes on without scaling and SACK (as Linux's cookie connections do).

Pure functions: the caller passes the secret and the time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

__all__ = ["MSS_TABLE_V4", "MSS_TABLE_V6", "CookieOptions", "check_cookie", "make_cookie",
           "ts_options_decode", "ts_options_encode"]

#: The MSS values a cookie can say (Linux's tables): IPv4, IPv6.
MSS_TABLE_V4: Final = (536, 1300, 1440, 1460)
MSS_TABLE_V6: Final = (1220, 1420, 1440, 8940)
SLOT_SECONDS: Final = 64.0
_MAC_BITS: Final = 22
_MAC_MASK: Final = (1 << _MAC_BITS) - 1
_TS_MASK: Final = 0x3F
_WSCALE_NONE: Final = 0xF
_TS_SACK: Final = 0x10
_MASK: Final = 0xFFFFFFFF

Key = tuple[str, int, str, int]


@dataclass(frozen=True, slots=True)
class CookieOptions:
    """What a valid cookie ACK tells of the SYN it answers: the peer's MSS (from the table), its
    window shift (None: no window scaling) and whether it offered SACK."""

    mss: int
    wscale: int | None
    sack: bool


def _slot(now: float) -> int:
    return int(now // SLOT_SECONDS) & 0xFF


def _mac(secret: bytes, key: Key, peer_isn: int, slot: int, index: int) -> int:
    la, lp, ra, rp = key
    data = f"cookie|{la}|{lp}|{ra}|{rp}|{peer_isn}|{slot}|{index}".encode()
    return int.from_bytes(hashlib.blake2s(data, key=secret[:32]).digest()[:4], "big") & _MAC_MASK


def _table(ipv6: bool) -> tuple[int, ...]:
    return MSS_TABLE_V6 if ipv6 else MSS_TABLE_V4


def make_cookie(secret: bytes, key: Key, peer_isn: int, now: float, peer_mss: int) -> int:
    """The ISN of a stateless SYN,ACK for the SYN with sequence number ``peer_isn`` and MSS
    option ``peer_mss`` on ``key`` (local address, local port, remote address, remote port)."""
    table = _table(":" in key[0])
    index = max((i for i, m in enumerate(table) if m <= peer_mss), default=0)
    slot = _slot(now)
    return (slot << 24) | (index << _MAC_BITS) | _mac(secret, key, peer_isn & _MASK, slot, index)


def check_cookie(secret: bytes, key: Key, peer_isn: int, cookie: int, now: float) -> int | None:
    """The MSS the cookie remembers if ``cookie`` (SEG.ACK − 1 of the ACK) is one we made at most
    one slot ago for this 4-tuple and peer ISN (SEG.SEQ − 1); None otherwise."""
    slot = (cookie >> 24) & 0xFF
    if (_slot(now) - slot) & 0xFF > 1:
        return None  # expired (or from the future)
    index = (cookie >> _MAC_BITS) & 0x3
    if _mac(secret, key, peer_isn & _MASK, slot, index) != cookie & _MAC_MASK:
        return None
    return _table(":" in key[0])[index]


def ts_options_encode(tsval: int, wscale: int | None, sack: bool) -> int:
    """Our SYN,ACK's timestamp value with the peer's window shift and SACK-permitted in its low
    6 bits, never above ``tsval``."""
    options = (_WSCALE_NONE if wscale is None else min(wscale, 14)) | (_TS_SACK if sack else 0)
    ts = (tsval & ~_TS_MASK & _MASK) | options
    if ts > tsval:
        ts = (ts - (_TS_MASK + 1)) & _MASK
    return ts


def ts_options_decode(tsecr: int) -> tuple[int | None, bool]:
    """The window shift (None: none) and SACK-permitted from the echo of our SYN,ACK's
    timestamp."""
    ws = tsecr & _WSCALE_NONE
    return (None if ws == _WSCALE_NONE else ws), bool(tsecr & _TS_SACK)
