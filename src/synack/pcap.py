"""Read and write packet capture files (libpcap and pcapng).

Writing produces classic libpcap files: little-endian, microsecond timestamps
(magic ``0xa1b2c3d4`` stored little-endian, so the file starts ``d4 c3 b2 a1``),
version 2.4, snaplen 262144 and link type ``LINKTYPE_RAW`` unless told
otherwise.  The output depends only on the packets and timestamps given, never
on the wall clock, so a simulation driven by a virtual clock produces the same
file byte for byte every time.

Reading accepts:

* classic libpcap in either byte order, with microsecond (``a1b2c3d4``) or
  nanosecond (``a1b23c4d``) timestamps;
* pcapng: Section Header Blocks in either byte order (several sections, each
  with its own byte order, may follow one another), Interface Description
  Blocks (link type, snaplen, the ``if_tsresol`` option in its power-of-10 and
  power-of-2 forms, and ``if_tsoffset``), Enhanced Packet Blocks, Simple
  Packet Blocks and the obsolete Packet Block.  Name Resolution, Interface
  Statistics and all other block types are skipped.  Block lengths are
  checked: leading and trailing copies must match, be a multiple of 4 and not
  run past the end of the file.

``ip_packet`` digs the IP packet out of a record for the link types synack
meets: raw IP, IPv4, IPv6, Ethernet (with at most one 802.1Q tag) and Linux
cooked captures v1 and v2.

This is hand-written rather than built on dpkt or scapy on purpose: the formats
are small, synack should not pull in a heavy dependency just to read and write
captures, and the reader must never raise anything but ``PcapError`` (a
``ValueError``) on bad input -- a library would bring its own assortment of
exception types (``struct.error``, ``IndexError``, ``EOFError``, ...).  Every
``PcapError`` says what is wrong and at which byte offset of the file.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Self

__all__ = [
    "DEFAULT_SNAPLEN",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_RAW",
    "PcapError",
    "PcapRecord",
    "PcapWriter",
    "ip_packet",
    "iter_pcap",
    "read_pcap",
    "write_pcap",
]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

DEFAULT_SNAPLEN = 262144

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_VLAN = 0x8100
_IP_ETHERTYPES = frozenset({_ETHERTYPE_IPV4, _ETHERTYPE_IPV6})

_USEC = 1_000_000
_NSEC = 1_000_000_000

# Classic libpcap magics as they appear in the first four bytes of the file.
_CLASSIC_MAGICS: dict[bytes, tuple[str, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", _USEC),
    b"\xa1\xb2\xc3\xd4": (">", _USEC),
    b"\x4d\x3c\xb2\xa1": ("<", _NSEC),
    b"\xa1\xb2\x3c\x4d": (">", _NSEC),
}
_PCAP_HEADER = struct.Struct("<IHHiIII")
_PCAP_RECORD_LE = struct.Struct("<IIII")

# pcapng block types.  The SHB type reads the same in both byte orders.
_SHB_TYPE_BYTES = b"\x0a\x0d\x0d\x0a"
_BT_OPB = 0x00000002
_BT_SPB = 0x00000003
_BT_IDB = 0x00000001
_BT_EPB = 0x00000006
_BYTE_ORDER_MAGICS: dict[bytes, str] = {
    b"\x4d\x3c\x2b\x1a": "<",
    b"\x1a\x2b\x3c\x4d": ">",
}
_OPT_ENDOFOPT = 0
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14


class PcapError(ValueError):
    """A capture file is malformed; the message names the problem and its byte offset."""


@dataclass(frozen=True, slots=True)
class PcapRecord:
    """One captured packet.

    ``ts`` is in seconds, ``data`` the captured bytes (possibly cut at the
    snaplen), ``linktype`` the LINKTYPE_* value of the link layer and
    ``orig_len`` the length of the packet on the wire.
    """

    ts: float
    data: bytes
    linktype: int
    orig_len: int

    def ip_packet(self) -> bytes | None:
        """The IP packet inside this record, or None; see the module-level ``ip_packet``."""
        return ip_packet(self)


def ip_packet(record: PcapRecord) -> bytes | None:
    """Return the IPv4/IPv6 packet carried by ``record``, or None if it carries none.

    Raw IP link types give the data as it is.  Ethernet frames lose their
    14-byte header (18 with one 802.1Q VLAN tag), Linux cooked v1 its 16-byte
    header and v2 its 20-byte header, but only when the protocol field says
    IPv4 (0x0800) or IPv6 (0x86DD).  Other link types, other protocols and
    frames too short for their header give None.
    """
    data = record.data
    linktype = record.linktype
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return data
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None
        ethertype = int.from_bytes(data[12:14], "big")
        start = 14
        if ethertype == _ETHERTYPE_VLAN:
            if len(data) < 18:
                return None
            ethertype = int.from_bytes(data[16:18], "big")
            start = 18
        return data[start:] if ethertype in _IP_ETHERTYPES else None
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return None
        protocol = int.from_bytes(data[14:16], "big")
        return data[16:] if protocol in _IP_ETHERTYPES else None
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return None
        protocol = int.from_bytes(data[0:2], "big")
        return data[20:] if protocol in _IP_ETHERTYPES else None
    return None


# --------------------------------------------------------------------------- writing


def _split_timestamp(ts: float) -> tuple[int, int]:
    """Split ``ts`` seconds into (seconds, microseconds), rounding half up exactly.

    The float's exact binary value is used, so no intermediate rounding error
    can move a timestamp across a microsecond boundary; a fraction that rounds
    up to a whole second carries into the seconds.
    """
    value = float(ts)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"pcap timestamp must be a finite number of seconds >= 0, got {ts!r}")
    num, den = value.as_integer_ratio()
    usec_total = (2 * num * _USEC + den) // (2 * den)
    sec, usec = divmod(usec_total, _USEC)
    if sec > 0xFFFFFFFF:
        raise ValueError(f"pcap timestamp {ts!r} does not fit the 32-bit seconds field")
    return sec, usec


class PcapWriter:
    """Write packets to a classic little-endian, microsecond libpcap file.

    ``dest`` is a path (the file is created or truncated, and closed by
    ``close``) or a binary file object (written from its current position and
    left open by ``close``, which only flushes it).  The file header is
    written at once.
    """

    def __init__(
        self,
        dest: str | os.PathLike[str] | BinaryIO,
        linktype: int = LINKTYPE_RAW,
        *,
        snaplen: int = DEFAULT_SNAPLEN,
    ) -> None:
        if not 0 <= linktype <= 0xFFFFFFFF:
            raise ValueError(f"linktype must fit 32 bits, got {linktype}")
        if not 1 <= snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen must be between 1 and 2**32-1, got {snaplen}")
        self.linktype = linktype
        self.snaplen = snaplen
        self._packets_written = 0
        self._closed = False
        if isinstance(dest, (str, os.PathLike)):
            self._file: BinaryIO = open(dest, "wb")  # noqa: SIM115 -- closed by close()
            self._owns_file = True
        else:
            self._file = dest
            self._owns_file = False
        try:
            self._file.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        except BaseException:
            if self._owns_file:
                self._file.close()
            raise

    @property
    def packets_written(self) -> int:
        """How many packets ``write`` has stored so far."""
        return self._packets_written

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, packet: bytes, ts: float) -> None:
        """Append ``packet`` captured at ``ts`` seconds; packets longer than snaplen are cut."""
        if self._closed:
            raise ValueError("write to a closed PcapWriter")
        data = bytes(packet)
        orig_len = len(data)
        if orig_len > 0xFFFFFFFF:
            raise ValueError(f"packet of {orig_len} bytes is too long for a pcap record")
        sec, usec = _split_timestamp(ts)
        captured = data[: self.snaplen]
        self._file.write(_PCAP_RECORD_LE.pack(sec, usec, len(captured), orig_len))
        self._file.write(captured)
        self._packets_written += 1

    def flush(self) -> None:
        if not self._closed:
            self._file.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it.  Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self._owns_file:
            self._file.close()
        else:
            self._file.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_pcap(
    path: str | os.PathLike[str] | BinaryIO,
    records: Iterable[tuple[float, bytes]],
    linktype: int = LINKTYPE_RAW,
) -> int:
    """Write ``(ts, packet)`` pairs to a new pcap file at ``path``; return how many were written."""
    with PcapWriter(path, linktype) as writer:
        for ts, packet in records:
            writer.write(packet, ts)
        return writer.packets_written


# --------------------------------------------------------------------------- reading


def read_pcap(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> list[PcapRecord]:
    """Read every record of a pcap or pcapng file given by path or as its contents."""
    return list(iter_pcap(source))


def iter_pcap(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> Iterator[PcapRecord]:
    """Iterate over the records of a pcap or pcapng file given by path or as its contents.

    The file is read and its magic checked when this is called; malformed
    records raise ``PcapError`` when iteration reaches them.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        with open(source, "rb") as f:
            data = f.read()
    if len(data) < 4:
        raise PcapError(
            f"not a pcap or pcapng file: only {len(data)} bytes, a 4-byte magic is needed at offset 0"
        )
    magic = data[:4]
    classic = _CLASSIC_MAGICS.get(magic)
    if classic is not None:
        return _iter_classic(data, *classic)
    if magic == _SHB_TYPE_BYTES:
        return _iter_pcapng(data)
    raise PcapError(f"not a pcap or pcapng file: magic {magic.hex()} at offset 0")


def _iter_classic(data: bytes, endian: str, unit: int) -> Iterator[PcapRecord]:
    size = len(data)
    if size < _PCAP_HEADER.size:
        raise PcapError(f"truncated pcap file header: {size} bytes at offset 0, need {_PCAP_HEADER.size}")
    _magic, major, minor, _zone, _sigfigs, _snaplen, network = struct.unpack_from(endian + "IHHiIII", data, 0)
    if major != 2:
        raise PcapError(f"unsupported pcap version {major}.{minor} at offset 4")
    # The upper 16 bits may carry FCS information; the link type is the lower 16.
    linktype = network & 0xFFFF
    record = struct.Struct(endian + "IIII")
    unit_name = "microsecond" if unit == _USEC else "nanosecond"
    pos = _PCAP_HEADER.size
    while pos < size:
        if size - pos < record.size:
            raise PcapError(
                f"truncated pcap record header at offset {pos}: {size - pos} bytes left, need {record.size}"
            )
        sec, frac, incl_len, orig_len = record.unpack_from(data, pos)
        if frac >= unit:
            raise PcapError(
                f"pcap record at offset {pos}: {unit_name} field {frac} at offset {pos + 4} "
                f"is not below {unit}"
            )
        start = pos + record.size
        if incl_len > size - start:
            raise PcapError(
                f"truncated pcap record at offset {pos}: captured length {incl_len} but only "
                f"{size - start} bytes left after the record header"
            )
        end = start + incl_len
        yield PcapRecord(ts=sec + frac / unit, data=data[start:end], linktype=linktype, orig_len=orig_len)
        pos = end


@dataclass(frozen=True, slots=True)
class _Interface:
    linktype: int
    snaplen: int
    divisor: int  # ticks per second
    offset: int  # seconds added to every timestamp (if_tsoffset)


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _iter_pcapng(data: bytes) -> Iterator[PcapRecord]:
    size = len(data)
    endian = "<"
    interfaces: list[_Interface] = []
    pos = 0
    while pos < size:
        if size - pos < 8:
            raise PcapError(f"truncated pcapng block header at offset {pos}: {size - pos} bytes left, need 8")
        if data[pos : pos + 4] == _SHB_TYPE_BYTES:
            if size - pos < 12:
                raise PcapError(
                    f"truncated pcapng section header at offset {pos}: {size - pos} bytes left, need 12"
                )
            bom = data[pos + 8 : pos + 12]
            section_endian = _BYTE_ORDER_MAGICS.get(bom)
            if section_endian is None:
                raise PcapError(
                    f"pcapng section header: bad byte-order magic {bom.hex()} at offset {pos + 8}"
                )
            endian = section_endian
            total = _check_block(data, pos, endian, 28, "section header")
            major, minor = struct.unpack_from(endian + "HH", data, pos + 12)
            if major != 1:
                raise PcapError(f"unsupported pcapng version {major}.{minor} at offset {pos + 12}")
            interfaces = []
            pos += total
            continue
        (btype,) = struct.unpack_from(endian + "I", data, pos)
        if btype == _BT_IDB:
            total = _check_block(data, pos, endian, 20, "interface description")
            linktype, _reserved, snaplen = struct.unpack_from(endian + "HHI", data, pos + 8)
            divisor, offset = _parse_idb_options(data, pos + 16, pos + total - 4, endian)
            interfaces.append(_Interface(linktype, snaplen, divisor, offset))
        elif btype in (_BT_EPB, _BT_OPB):
            name = "enhanced packet" if btype == _BT_EPB else "packet"
            total = _check_block(data, pos, endian, 32, name)
            if btype == _BT_EPB:
                iface_id, ts_high, ts_low, cap_len, orig_len = struct.unpack_from(
                    endian + "IIIII", data, pos + 8
                )
            else:
                iface_id, _drops, ts_high, ts_low, cap_len, orig_len = struct.unpack_from(
                    endian + "HHIIII", data, pos + 8
                )
            iface = _interface(interfaces, iface_id, pos, name)
            room = total - 32
            if cap_len > room:
                raise PcapError(
                    f"pcapng {name} block at offset {pos}: captured length {cap_len} at offset {pos + 20} "
                    f"does not fit the block ({room} bytes of room)"
                )
            ticks = (ts_high << 32) | ts_low
            yield PcapRecord(
                ts=iface.offset + ticks / iface.divisor,
                data=data[pos + 28 : pos + 28 + cap_len],
                linktype=iface.linktype,
                orig_len=orig_len,
            )
        elif btype == _BT_SPB:
            total = _check_block(data, pos, endian, 16, "simple packet")
            iface = _interface(interfaces, 0, pos, "simple packet")
            (orig_len,) = struct.unpack_from(endian + "I", data, pos + 8)
            cap_len = orig_len if iface.snaplen == 0 else min(orig_len, iface.snaplen)
            room = total - 16
            if cap_len > room:
                raise PcapError(
                    f"pcapng simple packet block at offset {pos}: packet length {orig_len} at offset "
                    f"{pos + 8} does not fit the block ({room} bytes of room)"
                )
            yield PcapRecord(
                ts=0.0,
                data=data[pos + 12 : pos + 12 + cap_len],
                linktype=iface.linktype,
                orig_len=orig_len,
            )
        else:
            # Name Resolution, Interface Statistics, Decryption Secrets, custom and unknown blocks.
            total = _check_block(data, pos, endian, 12, f"type 0x{btype:08x}")
        pos += total


def _check_block(data: bytes, pos: int, endian: str, min_len: int, name: str) -> int:
    """Validate the leading and trailing total length of the block at ``pos``; return it."""
    size = len(data)
    total: int = struct.unpack_from(endian + "I", data, pos + 4)[0]
    where = f"pcapng {name} block at offset {pos}"
    if total < min_len:
        raise PcapError(f"{where}: total length {total} at offset {pos + 4} is below the minimum {min_len}")
    if total % 4:
        raise PcapError(f"{where}: total length {total} at offset {pos + 4} is not a multiple of 4")
    if total > size - pos:
        raise PcapError(
            f"{where}: total length {total} at offset {pos + 4} runs past the end of the file "
            f"({size - pos} bytes left)"
        )
    (trailing,) = struct.unpack_from(endian + "I", data, pos + total - 4)
    if trailing != total:
        raise PcapError(
            f"{where}: trailing total length {trailing} at offset {pos + total - 4} "
            f"does not match the leading {total}"
        )
    return total


def _interface(interfaces: list[_Interface], iface_id: int, pos: int, name: str) -> _Interface:
    if iface_id >= len(interfaces):
        raise PcapError(
            f"pcapng {name} block at offset {pos}: interface {iface_id} is not defined "
            f"({len(interfaces)} interface(s) in this section so far)"
        )
    return interfaces[iface_id]


def _parse_idb_options(data: bytes, start: int, end: int, endian: str) -> tuple[int, int]:
    """Return (ticks per second, timestamp offset in seconds) from the IDB options in [start, end)."""
    divisor = _USEC
    offset = 0
    pos = start
    while pos < end:
        if end - pos < 4:
            raise PcapError(f"truncated pcapng option header at offset {pos}: {end - pos} bytes left, need 4")
        code, length = struct.unpack_from(endian + "HH", data, pos)
        if code == _OPT_ENDOFOPT:
            break
        value = pos + 4
        if length > end - value:
            raise PcapError(
                f"pcapng option {code} at offset {pos}: length {length} runs past the end of its block"
            )
        if code == _OPT_IF_TSRESOL:
            if length != 1:
                raise PcapError(f"pcapng if_tsresol option at offset {pos}: length {length}, expected 1")
            resol = data[value]
            divisor = 2 ** (resol & 0x7F) if resol & 0x80 else 10**resol
        elif code == _OPT_IF_TSOFFSET:
            if length != 8:
                raise PcapError(f"pcapng if_tsoffset option at offset {pos}: length {length}, expected 8")
            (offset,) = struct.unpack_from(endian + "q", data, value)
        pos = value + _pad4(length)
    return divisor, offset
