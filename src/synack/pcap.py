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

Reading streams: the file is read in chunks (:func:`iter_batches`), so a capture of any size
is read in memory bounded by the chunk size and the largest packet; a path, a binary file
object (a pipe too: ``tcpdump -w - | ...``) or the contents as bytes will do.  The records of a
chunk come as a :class:`FrameBatch` (the chunk and the position of each record in it), which
a reader that must be fast (``synack analyze``) walks without one object per packet;
:func:`iter_pcap` gives one :class:`PcapRecord` per packet.

``ip_offset`` finds the IP packet inside a record for the link types synack meets: raw IP,
IPv4, IPv6, Ethernet (with any number of 802.1Q/802.1ad VLAN tags), Linux cooked captures v1
and v2 (``tcpdump -i any``) and BSD loopback (``LINKTYPE_NULL`` in either byte order,
``LINKTYPE_LOOP``); ``link_direction`` reads the packet type of a Linux cooked capture (sent
by the capturing host, or received); ``ip_packet`` slices the IP packet out of a record.

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
from typing import Any, BinaryIO, Final, NamedTuple, Self

__all__ = [
    "DEFAULT_SNAPLEN",
    "LINKTYPES",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "FrameBatch",
    "PcapError",
    "PcapRecord",
    "PcapWriter",
    "RecordChunk",
    "ip_offset",
    "ip_packet",
    "iter_batches",
    "iter_chunks",
    "iter_pcap",
    "link_direction",
    "read_pcap",
    "write_pcap",
]

LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276

LINKTYPES: Final[dict[int, str]] = {
    LINKTYPE_NULL: "BSD loopback (NULL)",
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_RAW: "raw IP",
    LINKTYPE_LOOP: "OpenBSD loopback (LOOP)",
    LINKTYPE_LINUX_SLL: "Linux cooked capture v1",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_LINUX_SLL2: "Linux cooked capture v2",
}
"""The link types whose IP packets :func:`ip_offset` can find, with their names."""

DEFAULT_SNAPLEN = 262144

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_VLAN_ETHERTYPES = frozenset({0x8100, 0x88A8, 0x9100})  # 802.1Q, 802.1ad (QinQ), old QinQ
_IP_ETHERTYPES = frozenset({_ETHERTYPE_IPV4, _ETHERTYPE_IPV6})
# BSD loopback's address family, written in the capturing host's byte order: AF_INET is 2
# everywhere, AF_INET6 is 10 on Linux, 24 on NetBSD/OpenBSD, 28 on FreeBSD, 30 on macOS.
_BSD_FAMILIES = frozenset({2, 10, 24, 28, 30})
# Linux cooked capture packet types (``sll_pkttype``): 0 to us, 1 broadcast, 2 multicast,
# 3 to another host, 4 sent by us.
_SLL_OUTGOING = 4

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
_PCAP_RECORD_LE: Final = struct.Struct("<IIII")  # seconds, fraction, captured length, wire length
_PCAP_RECORD_BE: Final = struct.Struct(">IIII")

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


def ip_offset(data: bytes, linktype: int, start: int = 0, end: int | None = None) -> int | None:
    """Where the IPv4/IPv6 packet of the record ``data[start:end]`` begins, or None when the record
    carries none (another protocol, an unknown link type, a frame too short for its header).

    Raw IP link types start at once; Ethernet after 14 bytes and 4 more per VLAN tag (802.1Q,
    802.1ad), Linux cooked v1 after 16 and v2 after 20, BSD loopback after its 4-byte address
    family -- each only when its protocol field says IPv4 or IPv6."""
    stop = len(data) if end is None else end
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return start
    if linktype == LINKTYPE_ETHERNET:
        pos = start + 12
        while pos + 2 <= stop:
            ethertype = (data[pos] << 8) | data[pos + 1]
            if ethertype not in _VLAN_ETHERTYPES:
                return pos + 2 if ethertype in _IP_ETHERTYPES else None
            pos += 4
        return None
    if linktype == LINKTYPE_LINUX_SLL:
        ok = start + 16 <= stop and ((data[start + 14] << 8) | data[start + 15]) in _IP_ETHERTYPES
        return start + 16 if ok else None
    if linktype == LINKTYPE_LINUX_SLL2:
        ok = start + 20 <= stop and ((data[start] << 8) | data[start + 1]) in _IP_ETHERTYPES
        return start + 20 if ok else None
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if start + 4 > stop:
            return None
        family = int.from_bytes(data[start:start + 4], "big")
        if linktype == LINKTYPE_NULL and family not in _BSD_FAMILIES:
            family = int.from_bytes(data[start:start + 4], "little")
        return start + 4 if family in _BSD_FAMILIES else None
    return None


def link_direction(data: bytes, linktype: int, start: int = 0) -> bool | None:
    """For a Linux cooked capture: True when the capturing host sent the packet, False when it
    received it (to itself, broadcast or multicast); None for other link types (they do not
    say) and for a packet seen passing to another host."""
    if linktype == LINKTYPE_LINUX_SLL and start + 2 <= len(data):
        kind = (data[start] << 8) | data[start + 1]
    elif linktype == LINKTYPE_LINUX_SLL2 and start + 11 <= len(data):
        kind = data[start + 10]
    else:
        return None
    if kind == _SLL_OUTGOING:
        return True
    return False if kind in (0, 1, 2) else None


def ip_packet(record: PcapRecord) -> bytes | None:
    """Return the IPv4/IPv6 packet carried by ``record``, or None if it carries none
    (see :func:`ip_offset`)."""
    at = ip_offset(record.data, record.linktype)
    return None if at is None else record.data[at:]


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

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
"""What the readers take: a path, the file's contents, or a binary file object read from its
current position (a pipe will do)."""

CHUNK_SIZE: Final = 4 << 20
"""How much of a file the streaming reader asks for at a time."""
_MAX_RECORD: Final = 256 << 20  # no packet is this large: a record claiming more is corrupt


Frame = tuple[float, int, int, int, int]
"""Where one record lies in its :class:`FrameBatch`: ``(ts, start, caplen, orig_len, linktype)``,
the record being ``data[start:start + caplen]`` (a plain tuple: a reader makes one per packet)."""


class FrameBatch(NamedTuple):
    """The records found in one chunk of a capture: ``data`` is the chunk, each frame says
    where its record lies in it; ``offset`` is the file offset of ``data[0]``."""

    data: bytes
    frames: list[Frame]
    offset: int


class RecordChunk:
    """A chunk of a classic pcap file whose records the reader leaves to its consumer to walk
    (:func:`iter_chunks`), so that nothing is made per record that the consumer does not need.

    The records start at ``data[at]``, one after the other, each a 16-byte header (seconds,
    fraction in ``unit`` per second, captured length, length on the wire; big-endian when
    ``big``; ``record`` is that header's :class:`struct.Struct`) then its captured bytes;
    ``offset`` is the file offset of ``data[0]`` and ``linktype`` the link type of every
    record. The consumer walks them while a whole valid header and its bytes lie before
    ``len(data)`` (:meth:`fits`), and sets ``at`` to where it stopped: the reader carries on
    from there, reads on, or raises :class:`PcapError` for a bad or truncated record (after the
    records before it were given)."""

    __slots__ = ("at", "big", "data", "linktype", "offset", "record", "unit")

    def __init__(self, data: bytes, at: int, offset: int, big: bool, unit: int, linktype: int) -> None:
        self.data = data
        self.at = at
        self.offset = offset
        self.big = big
        self.unit = unit
        self.linktype = linktype
        self.record = _PCAP_RECORD_BE if big else _PCAP_RECORD_LE

    def header(self, at: int) -> tuple[int, int, int, int]:
        """The record header at ``data[at]``: seconds, fraction, captured length, wire length."""
        return self.record.unpack_from(self.data, at)

    def fits(self, at: int) -> bool:
        """Whether a whole record starts at ``data[at]``, its header valid (a fraction below
        ``unit``) and its captured bytes within ``data``."""
        end = len(self.data)
        if at + 16 > end:
            return False
        _sec, frac, incl_len, _orig = self.header(at)
        return frac < self.unit and incl_len <= end - at - 16

    def frames(self) -> list[Frame]:
        """Walk every record of the chunk (``at`` is left after the last): where each lies."""
        data, at, unit, linktype = self.data, self.at, self.unit, self.linktype
        unpack = self.record.unpack_from
        end = len(data)
        frames: list[Frame] = []
        append = frames.append
        while at + 16 <= end:
            sec, frac, incl_len, orig_len = unpack(data, at)
            if frac >= unit or incl_len > end - at - 16:
                break
            append((sec + frac / unit, at + 16, incl_len, orig_len, linktype))
            at += 16 + incl_len
        self.at = at
        return frames


def read_pcap(source: Source) -> list[PcapRecord]:
    """Read every record of a pcap or pcapng file given by path, contents or file object."""
    return list(iter_pcap(source))


def iter_pcap(source: Source) -> Iterator[PcapRecord]:
    """Iterate over the records of a pcap or pcapng file given by path, contents or file object.

    The file is opened and its magic checked when this is called; malformed records raise
    ``PcapError`` when iteration reaches them."""
    batches = iter_batches(source)
    return _records(batches)


def _records(batches: Iterator[FrameBatch]) -> Iterator[PcapRecord]:
    for data, frames, _ in batches:
        for ts, start, caplen, orig_len, linktype in frames:
            yield PcapRecord(ts, data[start:start + caplen], linktype, orig_len)


def iter_batches(source: Source, *, chunk_size: int = CHUNK_SIZE) -> Iterator[FrameBatch]:
    """The records of a pcap or pcapng file, a chunk at a time, reading the file as it goes
    (memory: about ``chunk_size`` plus the largest record). The magic is checked when this is
    called; a malformed record raises ``PcapError`` when the iteration reaches it, after the
    records before it were given."""
    return _framed(iter_chunks(source, chunk_size=chunk_size))


def _framed(chunks: Iterator[FrameBatch | RecordChunk]) -> Iterator[FrameBatch]:
    for chunk in chunks:
        if isinstance(chunk, RecordChunk):
            frames = chunk.frames()
            if frames:
                yield FrameBatch(chunk.data, frames, chunk.offset)
        else:
            yield chunk


def iter_chunks(source: Source, *, chunk_size: int = CHUNK_SIZE) -> Iterator[FrameBatch | RecordChunk]:
    """As :func:`iter_batches`, but a classic pcap file comes in :class:`RecordChunk` pieces
    whose records the consumer walks itself (nothing is made per record that it does not need:
    the one pass of ``synack analyze`` is a tenth faster so); pcapng still comes in
    :class:`FrameBatch` pieces."""
    window = _Window(source, chunk_size)
    try:
        if not window.fill(0, 4):
            raise PcapError(f"not a pcap or pcapng file: only {window.available(0)} bytes, a 4-byte magic "
                            "is needed at offset 0")
        magic = window.data[:4]
        classic = _CLASSIC_MAGICS.get(magic)
        if classic is not None:
            return _closing(window, _classic_chunks(window, *classic))
        if magic == _SHB_TYPE_BYTES:
            return _closing(window, _pcapng_batches(window))
        raise PcapError(f"not a pcap or pcapng file: magic {magic.hex()} at offset 0")
    except BaseException:
        window.close()
        raise


def _closing(
    window: _Window, batches: Iterator[FrameBatch] | Iterator[RecordChunk]
) -> Iterator[FrameBatch | RecordChunk]:
    try:
        yield from batches
    finally:
        window.close()


class _Window:
    """A window on a capture read a chunk at a time: ``data`` holds the file's bytes from offset
    ``base`` on. ``size`` is the file's length when it can be known in advance (contents, a
    regular file), else None until the end is reached."""

    def __init__(self, source: Source, chunk_size: int) -> None:
        self.chunk = max(chunk_size, 64)
        self.base = 0
        self.eof = False
        self._owned: BinaryIO | None = None
        self._file: BinaryIO | None = None
        self.size: int | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.data = bytes(source)
            self.size = len(self.data)
            self.eof = True
            return
        self.data = b""
        if isinstance(source, (str, os.PathLike)):
            self._owned = self._file = open(source, "rb")  # noqa: SIM115 -- closed by close()
        else:
            self._file = source
        try:
            where = self._file.tell()
            self.size = os.fstat(self._file.fileno()).st_size - where
        except (OSError, ValueError, AttributeError):
            self.size = None
        if self.size is not None and self.size < 0:
            self.size = None

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def covers(self, pos: int, n: int) -> bool:
        """Whether ``data`` already holds the file's bytes [pos, pos + n)."""
        return pos >= self.base and pos + n <= self.base + len(self.data)

    def available(self, pos: int) -> int:
        """The bytes known to exist from ``pos`` on (all of them once the end was reached)."""
        if self.size is not None:
            return self.size - pos
        return self.base + len(self.data) - pos

    def fill(self, pos: int, n: int) -> bool:
        """Make ``data`` cover the file's bytes [pos, pos + n) (forgetting those before ``pos``);
        False when the file ends first (``data`` then holds what there is)."""
        have = self.base + len(self.data)
        if pos + n <= have:
            return True
        if self.eof or self._file is None:
            return False
        keep = self.data[pos - self.base:] if pos < have else b""
        parts = [keep]
        got = len(keep)
        while got < n:
            more = self._file.read(max(self.chunk, n - got))
            if not more:
                self.eof = True
                self.size = pos + got
                break
            parts.append(more)
            got += len(more)
        self.data = b"".join(parts)
        self.base = pos
        return got >= n


def _classic_chunks(window: _Window, endian: str, unit: int) -> Iterator[RecordChunk]:
    if not window.fill(0, _PCAP_HEADER.size):
        raise PcapError(f"truncated pcap file header: {window.available(0)} bytes at offset 0, "
                        f"need {_PCAP_HEADER.size}")
    _magic, major, minor, _zone, _sigfigs, _snaplen, network = struct.unpack_from(
        endian + "IHHiIII", window.data, 0)
    if major != 2:
        raise PcapError(f"unsupported pcap version {major}.{minor} at offset 4")
    # The upper 16 bits may carry FCS information; the link type is the lower 16.
    linktype = network & 0xFFFF
    unpack = (_PCAP_RECORD_BE if endian == ">" else _PCAP_RECORD_LE).unpack_from
    pos = _PCAP_HEADER.size
    while window.fill(pos, 16):
        data, base = window.data, window.base
        chunk = RecordChunk(data, pos - base, base, endian == ">", unit, linktype)
        yield chunk
        at = chunk.at
        if at < pos - base or at > len(data):
            raise ValueError(f"RecordChunk.at set to {at}, outside the chunk's records")
        pos = base + at
        if at + 16 <= len(data):  # the record at ``at`` needs more data, or is bad
            if chunk.fits(at):
                raise ValueError(f"the consumer of a RecordChunk stopped at {at}, before a whole record")
            _classic_record_needs(window, pos, unpack, unit)
    if window.available(pos) > 0:
        raise PcapError(f"truncated pcap record header at offset {pos}: {window.available(pos)} bytes left, "
                        "need 16")


def _classic_record_needs(window: _Window, pos: int, unpack: Any, unit: int) -> None:
    """The record at ``pos`` did not fit the chunk: check it, and read until it does."""
    _sec, frac, incl_len, _orig = unpack(window.data, pos - window.base)
    if frac >= unit:
        unit_name = "microsecond" if unit == _USEC else "nanosecond"
        raise PcapError(f"pcap record at offset {pos}: {unit_name} field {frac} at offset {pos + 4} "
                        f"is not below {unit}")
    left = window.available(pos + 16)
    if incl_len > _MAX_RECORD or (window.size is not None and incl_len > left) or \
            not window.fill(pos, 16 + incl_len):
        left = window.available(pos + 16)
        raise PcapError(f"truncated pcap record at offset {pos}: captured length {incl_len} but only "
                        f"{left} bytes left after the record header")


@dataclass(frozen=True, slots=True)
class _Interface:
    linktype: int
    snaplen: int
    divisor: int  # ticks per second
    offset: int  # seconds added to every timestamp (if_tsoffset)


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _pcapng_batches(window: _Window) -> Iterator[FrameBatch]:
    section = _Section()
    pos = 0
    frames: list[Frame] = []
    while True:
        if frames and not window.covers(pos, 12):  # a refill replaces the chunk the frames are in
            yield FrameBatch(window.data, frames, window.base)
            frames = []
        if not window.fill(pos, 8):
            left = window.available(pos)
            if left:
                raise PcapError(f"truncated pcapng block header at offset {pos}: {left} bytes left, need 8")
            break
        if frames and not window.covers(pos, _peek_length(window, pos, section)):
            yield FrameBatch(window.data, frames, window.base)
            frames = []
        total = _block_length(window, pos, section)
        if not window.fill(pos, total):
            raise PcapError(f"pcapng block at offset {pos}: total length {total} runs past the end of "
                            f"the file ({window.available(pos)} bytes left)")
        data, base = window.data, window.base
        frame = section.block(data, pos - base, pos, total)
        if frame is not None:
            frames.append(frame)
        pos += total
    if frames:
        yield FrameBatch(window.data, frames, window.base)


def _peek_length(window: _Window, pos: int, section: _Section) -> int:
    """The total length the block at ``pos`` claims (unchecked; 12 when it cannot be read yet)."""
    at = pos - window.base
    data = window.data
    if len(data) - at < 12:
        return 12
    endian = section.endian
    if data[at:at + 4] == _SHB_TYPE_BYTES:
        endian = _BYTE_ORDER_MAGICS.get(data[at + 8:at + 12], endian)
    return int(struct.unpack_from(endian + "I", data, at + 4)[0])


def _block_length(window: _Window, pos: int, section: _Section) -> int:
    """Check the block header at ``pos`` (a Section Header Block sets the byte order), return
    its total length, having made sure it fits the file."""
    at = pos - window.base
    data = window.data
    if data[at:at + 4] == _SHB_TYPE_BYTES:
        if not window.fill(pos, 12):
            raise PcapError(f"truncated pcapng section header at offset {pos}: {window.available(pos)} "
                            "bytes left, need 12")
        data, at = window.data, pos - window.base
        bom = data[at + 8:at + 12]
        endian = _BYTE_ORDER_MAGICS.get(bom)
        if endian is None:
            raise PcapError(f"pcapng section header: bad byte-order magic {bom.hex()} at offset {pos + 8}")
        section.endian = endian
        btype, minimum, name = -1, 28, "section header"
    else:
        (btype,) = struct.unpack_from(section.endian + "I", data, at)
        minimum, name = _BLOCK_MINIMA.get(btype, (12, f"type 0x{btype:08x}"))
    total = int(struct.unpack_from(section.endian + "I", data, at + 4)[0])
    where = f"pcapng {name} block at offset {pos}"
    if total < minimum:
        raise PcapError(f"{where}: total length {total} at offset {pos + 4} is below the minimum {minimum}")
    if total % 4:
        raise PcapError(f"{where}: total length {total} at offset {pos + 4} is not a multiple of 4")
    left = window.available(pos)
    if total > _MAX_RECORD or (window.size is not None and total > left) or not window.fill(pos, total):
        raise PcapError(f"{where}: total length {total} at offset {pos + 4} runs past the end of the file "
                        f"({window.available(pos)} bytes left)")
    data, at = window.data, pos - window.base
    (trailing,) = struct.unpack_from(section.endian + "I", data, at + total - 4)
    if trailing != total:
        raise PcapError(f"{where}: trailing total length {trailing} at offset {pos + total - 4} "
                        f"does not match the leading {total}")
    return total


_BLOCK_MINIMA: Final = {
    _BT_IDB: (20, "interface description"),
    _BT_EPB: (32, "enhanced packet"),
    _BT_OPB: (32, "packet"),
    _BT_SPB: (16, "simple packet"),
}


class _Section:
    """The state of the current pcapng section: its byte order and its interfaces."""

    def __init__(self) -> None:
        self.endian = "<"
        self.interfaces: list[_Interface] = []

    def block(self, data: bytes, at: int, pos: int, total: int) -> Frame | None:
        """Read the (checked) block of ``total`` bytes at ``data[at]`` (file offset ``pos``)."""
        endian = self.endian
        if data[at:at + 4] == _SHB_TYPE_BYTES:
            major, minor = struct.unpack_from(endian + "HH", data, at + 12)
            if major != 1:
                raise PcapError(f"unsupported pcapng version {major}.{minor} at offset {pos + 12}")
            self.interfaces = []
            return None
        (btype,) = struct.unpack_from(endian + "I", data, at)
        if btype == _BT_IDB:
            linktype, _reserved, snaplen = struct.unpack_from(endian + "HHI", data, at + 8)
            divisor, offset = _parse_idb_options(data, at + 16, at + total - 4, endian, pos - at)
            self.interfaces.append(_Interface(linktype, snaplen, divisor, offset))
            return None
        if btype in (_BT_EPB, _BT_OPB):
            return self._packet(data, at, pos, total, btype)
        if btype == _BT_SPB:
            iface = self._interface(0, pos, "simple packet")
            (orig_len,) = struct.unpack_from(endian + "I", data, at + 8)
            cap_len = orig_len if iface.snaplen == 0 else min(orig_len, iface.snaplen)
            if cap_len > total - 16:
                raise PcapError(
                    f"pcapng simple packet block at offset {pos}: packet length {orig_len} at offset "
                    f"{pos + 8} does not fit the block ({total - 16} bytes of room)")
            return (0.0, at + 12, cap_len, orig_len, iface.linktype)
        return None  # Name Resolution, Interface Statistics, Decryption Secrets, custom, unknown

    def _packet(self, data: bytes, at: int, pos: int, total: int, btype: int) -> Frame:
        name = "enhanced packet" if btype == _BT_EPB else "packet"
        if btype == _BT_EPB:
            iface_id, ts_high, ts_low, cap_len, orig_len = struct.unpack_from(
                self.endian + "IIIII", data, at + 8)
        else:
            iface_id, _drops, ts_high, ts_low, cap_len, orig_len = struct.unpack_from(
                self.endian + "HHIIII", data, at + 8)
        iface = self._interface(iface_id, pos, name)
        if cap_len > total - 32:
            raise PcapError(
                f"pcapng {name} block at offset {pos}: captured length {cap_len} at offset {pos + 20} "
                f"does not fit the block ({total - 32} bytes of room)")
        ticks = (ts_high << 32) | ts_low
        return (iface.offset + ticks / iface.divisor, at + 28, cap_len, orig_len, iface.linktype)

    def _interface(self, iface_id: int, pos: int, name: str) -> _Interface:
        if iface_id >= len(self.interfaces):
            raise PcapError(
                f"pcapng {name} block at offset {pos}: interface {iface_id} is not defined "
                f"({len(self.interfaces)} interface(s) in this section so far)")
        return self.interfaces[iface_id]


def _parse_idb_options(data: bytes, start: int, end: int, endian: str, shift: int) -> tuple[int, int]:
    """Return (ticks per second, timestamp offset in seconds) from the IDB options in
    ``data[start:end]``; ``shift`` turns a position in ``data`` into a file offset."""
    divisor = _USEC
    offset = 0
    pos = start
    while pos < end:
        if end - pos < 4:
            raise PcapError(f"truncated pcapng option header at offset {pos + shift}: "
                            f"{end - pos} bytes left, "
                            "need 4")
        code, length = struct.unpack_from(endian + "HH", data, pos)
        if code == _OPT_ENDOFOPT:
            break
        value = pos + 4
        if length > end - value:
            raise PcapError(
                f"pcapng option {code} at offset {pos + shift}: length {length} runs past the end of "
                "its block")
        if code == _OPT_IF_TSRESOL:
            if length != 1:
                raise PcapError(f"pcapng if_tsresol option at offset {pos + shift}: length {length}, "
                                "expected 1")
            resol = data[value]
            divisor = 2 ** (resol & 0x7F) if resol & 0x80 else 10**resol
        elif code == _OPT_IF_TSOFFSET:
            if length != 8:
                raise PcapError(f"pcapng if_tsoffset option at offset {pos + shift}: length {length}, "
                                "expected 8")
            (offset,) = struct.unpack_from(endian + "q", data, value)
        pos = value + _pad4(length)
    return divisor, offset
