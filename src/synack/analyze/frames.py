"""From a captured frame to the TCP header fields the analysis reads.

:func:`tcp_fields` handles every IP packet: IPv4 with or without options, IPv6 with its
extension headers skipped (hop-by-hop, routing, destination options, AH), fragments and
non-TCP packets told apart, and frames cut by the snap length — the headers must be there, the
payload length comes from the IP header. :func:`checksum_state` verifies the TCP checksum when
the whole segment was captured and recognises the checksums a capturing host leaves to its
network card (checksum offload): such a packet was sent by the capturing host and its checksum
is not corruption.

The engine reads the common case (IPv4 without options) itself, without calling these."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

__all__ = [
    "CHECKSUM_BAD",
    "CHECKSUM_OFFLOAD",
    "CHECKSUM_OK",
    "Fields",
    "Skip",
    "checksum_state",
    "tcp_fields",
]

CHECKSUM_OK: Final = 0
CHECKSUM_BAD: Final = 1
CHECKSUM_OFFLOAD: Final = 2

_TCP: Final = struct.Struct("!HHIIHHHH")
_IPV6_SKIP: Final = frozenset(
    (0, 43, 60, 135, 139, 140)
)  # hop-by-hop, routing, dest. opts, mobility, HIP, shim6
_AH: Final = 51
_FRAGMENT: Final = 44


class Skip(NamedTuple):
    """A frame the analysis does not read, and why: ``not-ip``, ``not-tcp``, ``fragment``,
    ``damaged`` (with ``detail``)."""

    reason: str
    detail: str = ""


class Fields(NamedTuple):
    """The TCP segment of a frame: ``key`` (packed source address, destination address,
    source port, destination port — the flow table's key), where the TCP header starts and
    how long it is, the segment's length on the wire (``tcp_len``, from the IP header), whether
    it was all captured, and the header fields."""

    key: bytes
    v6: bool
    tcp: int
    tcp_len: int
    complete: bool
    sport: int
    dport: int
    seq: int
    ack: int
    thl: int
    flags: int
    window: int
    checksum: int


def tcp_fields(buf: bytes, ip: int, stop: int) -> Fields | Skip:
    """Read the IP packet at ``buf[ip:stop]`` (``stop``: the end of what was captured)."""
    if ip >= stop:
        return Skip("damaged", "no IP header")
    version = buf[ip] >> 4
    if version == 4:
        return _ipv4(buf, ip, stop)
    if version == 6:
        return _ipv6(buf, ip, stop)
    return Skip("not-ip", f"IP version {version}")


def _ipv4(buf: bytes, ip: int, stop: int) -> Fields | Skip:
    if stop - ip < 20:
        return Skip("damaged", f"IPv4 header cut at {stop - ip} bytes")
    ihl = (buf[ip] & 0x0F) * 4
    total = (buf[ip + 2] << 8) | buf[ip + 3]
    if ihl < 20 or total < ihl:
        return Skip("damaged", f"IPv4 header length {ihl}, total length {total}")
    if buf[ip + 9] != 6:
        return Skip("not-tcp")
    if ((buf[ip + 6] << 8) | buf[ip + 7]) & 0x3FFF:
        return Skip("fragment")
    tcp = ip + ihl
    return _tcp(buf, tcp, ip + total, stop, buf[ip + 12 : ip + 20], False)


def _ipv6(buf: bytes, ip: int, stop: int) -> Fields | Skip:
    if stop - ip < 40:
        return Skip("damaged", f"IPv6 header cut at {stop - ip} bytes")
    plen = (buf[ip + 4] << 8) | buf[ip + 5]
    nxt = buf[ip + 6]
    end = ip + 40 + plen
    pos = ip + 40
    while nxt in _IPV6_SKIP or nxt == _AH:
        if pos + 8 > stop:
            return Skip("damaged", f"IPv6 extension header {nxt} cut by the snap length")
        length = (buf[pos + 1] + 2) * 4 if nxt == _AH else (buf[pos + 1] + 1) * 8
        nxt = buf[pos]
        pos += length
        if pos > end:
            return Skip("damaged", "IPv6 extension headers run past the packet")
    if nxt == _FRAGMENT:
        return Skip("fragment")
    if nxt != 6:
        return Skip("not-tcp")
    if plen == 0:
        return Skip("damaged", "IPv6 jumbogram (payload length 0)")
    return _tcp(buf, pos, end, stop, buf[ip + 8 : ip + 40], True)


def _tcp(buf: bytes, tcp: int, end: int, stop: int, addresses: bytes, v6: bool) -> Fields | Skip:
    if tcp + 20 > stop:
        return Skip(
            "damaged", "TCP header cut by the snap length" if tcp + 20 <= end else "TCP header missing"
        )
    sport, dport, seq, ack, off_flags, window, checksum, _urg = _TCP.unpack_from(buf, tcp)
    thl = (off_flags >> 12) * 4
    tcp_len = end - tcp
    if thl < 20 or thl > tcp_len:
        return Skip("damaged", f"TCP data offset {thl // 4} in a {tcp_len}-byte segment")
    key = addresses + buf[tcp : tcp + 4]
    return Fields(
        key, v6, tcp, tcp_len, end <= stop, sport, dport, seq, ack, thl, off_flags & 0xFF, window, checksum
    )


def checksum_state(buf: bytes, tcp: int, tcp_len: int, addresses: bytes, checksum: int) -> int:
    """The TCP checksum of ``buf[tcp:tcp + tcp_len]`` (entirely captured) between the packed
    ``addresses`` (source then destination): :data:`CHECKSUM_OK`, :data:`CHECKSUM_BAD`, or
    :data:`CHECKSUM_OFFLOAD` when the field holds what a host leaves for its network card to
    complete — zero, or the sum of the pseudo-header alone (Linux ``CHECKSUM_PARTIAL``, seen by
    a capture on the sending host)."""
    pseudo = int.from_bytes(addresses, "big") + 6 + tcp_len
    value = int.from_bytes(buf[tcp : tcp + tcp_len], "big")
    if tcp_len & 1:
        value <<= 8
    if (pseudo + value) % 0xFFFF == 0:
        return CHECKSUM_OK
    if checksum == 0:
        return CHECKSUM_OFFLOAD
    folded = pseudo % 0xFFFF
    partial = folded or 0xFFFF
    if checksum in (partial, folded, 0xFFFF - folded):
        return CHECKSUM_OFFLOAD
    return CHECKSUM_BAD
