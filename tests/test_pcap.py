"""Tests for synack.pcap: writing classic pcap, reading pcap/pcapng, link-layer stripping,
malformed input (only PcapError may come out) and interoperability with tshark."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synack.core.wire import ACK, SYN, Segment, build_packet
from synack.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PcapError,
    PcapRecord,
    PcapWriter,
    ip_packet,
    iter_pcap,
    read_pcap,
    write_pcap,
)

# ----------------------------------------------------------------------------- helpers

PACKETS = [b"\x45" + bytes(range(39)), b"", b"\x60" + b"\xaa" * 59, bytes(range(256)) * 3]
TIMESTAMPS = [1.5, 0.0, 1234567.000001, 4294967295.0]


def classic_bytes(
    records: list[tuple[int, int, bytes, int]],
    *,
    endian: str = "<",
    nano: bool = False,
    linktype: int = LINKTYPE_RAW,
    snaplen: int = 65535,
    version: tuple[int, int] = (2, 4),
) -> bytes:
    """A classic pcap file from (sec, frac, data, orig_len) tuples."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)]
    for sec, frac, data, orig_len in records:
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), orig_len) + data)
    return b"".join(out)


def pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def block(endian: str, btype: int, body: bytes) -> bytes:
    body = pad4(body)
    total = 12 + len(body)
    return struct.pack(endian + "II", btype, total) + body + struct.pack(endian + "I", total)


def option(endian: str, code: int, value: bytes) -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + pad4(value)


def end_of_options(endian: str) -> bytes:
    return struct.pack(endian + "HH", 0, 0)


def shb(endian: str, *, version: tuple[int, int] = (1, 0)) -> bytes:
    body = struct.pack(endian + "IHHq", 0x1A2B3C4D, version[0], version[1], -1)
    body += option(endian, 4, b"synack tests") + end_of_options(endian)
    return block(endian, 0x0A0D0D0A, body)


def idb(
    endian: str,
    linktype: int,
    snaplen: int = 0,
    *,
    tsresol: int | None = None,
    tsoffset: int | None = None,
) -> bytes:
    body = struct.pack(endian + "HHI", linktype, 0, snaplen)
    opts = option(endian, 2, b"eth0")  # if_name, ignored
    if tsresol is not None:
        opts += option(endian, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += option(endian, 14, struct.pack(endian + "q", tsoffset))
    return block(endian, 1, body + opts + end_of_options(endian))


def epb(endian: str, iface: int, ticks: int, data: bytes, orig_len: int | None = None) -> bytes:
    orig = len(data) if orig_len is None else orig_len
    body = struct.pack(endian + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig)
    return block(endian, 6, body + pad4(data))


def opb(endian: str, iface: int, ticks: int, data: bytes) -> bytes:
    body = struct.pack(endian + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
    return block(endian, 2, body + pad4(data))


def spb(endian: str, data: bytes, orig_len: int | None = None) -> bytes:
    orig = len(data) if orig_len is None else orig_len
    return block(endian, 3, struct.pack(endian + "I", orig) + pad4(data))


def nrb(endian: str) -> bytes:
    record = struct.pack(endian + "HH", 1, 14) + pad4(b"\xc0\x00\x02\x01host.test\x00")
    return block(endian, 4, record + struct.pack(endian + "HH", 0, 0))


def isb(endian: str) -> bytes:
    return block(endian, 5, struct.pack(endian + "III", 0, 0, 0) + end_of_options(endian))


def unknown_block(endian: str) -> bytes:
    return block(endian, 0x0BAD0BAD, b"whatever is in here is skipped")


def sample_pcapng(endian: str = "<") -> bytes:
    return b"".join(
        [
            shb(endian),
            idb(endian, LINKTYPE_RAW, 65535),
            idb(endian, LINKTYPE_ETHERNET, 0, tsresol=9),
            epb(endian, 0, 1_500_000, b"\x45abc"),
            nrb(endian),
            epb(endian, 1, 2_000_000_001, b"\x00" * 12 + b"\x08\x00" + b"\x45" * 21),
            unknown_block(endian),
            spb(endian, b"\x60simple"),
            isb(endian),
        ]
    )


def sample_pcap() -> bytes:
    buf = io.BytesIO()
    with PcapWriter(buf) as writer:
        for ts, pkt in zip(TIMESTAMPS, PACKETS, strict=True):
            writer.write(pkt, ts)
    return buf.getvalue()


def pcapng_block_ends(data: bytes) -> list[int]:
    """Offsets just past each block of a well-formed little- or big-endian pcapng file."""
    ends = []
    pos = 0
    endian = "<"
    while pos < len(data):
        if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        (total,) = struct.unpack_from(endian + "I", data, pos + 4)
        pos += total
        ends.append(pos)
    return ends


# ----------------------------------------------------------------------------- writing


def test_writer_header_bytes_exact() -> None:
    buf = io.BytesIO()
    PcapWriter(buf).close()
    assert buf.getvalue() == bytes.fromhex("d4c3b2a1 0200 0400 00000000 00000000 00000400 65000000")
    buf = io.BytesIO()
    PcapWriter(buf, LINKTYPE_ETHERNET).close()
    assert buf.getvalue()[:4] == b"\xd4\xc3\xb2\xa1"
    assert struct.unpack_from("<I", buf.getvalue(), 20) == (LINKTYPE_ETHERNET,)


def test_round_trip_exact_bytes_and_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "rt.pcap"
    with PcapWriter(path) as writer:
        for ts, pkt in zip(TIMESTAMPS, PACKETS, strict=True):
            writer.write(pkt, ts)
        assert writer.packets_written == len(PACKETS)
    raw = path.read_bytes()
    # The record headers hold exactly the seconds and microseconds given.
    fields = []
    pos = 24
    for pkt in PACKETS:
        sec, usec, incl, orig = struct.unpack_from("<IIII", raw, pos)
        fields.append((sec, usec))
        assert incl == orig == len(pkt)
        assert raw[pos + 16 : pos + 16 + incl] == pkt
        pos += 16 + incl
    assert pos == len(raw)
    assert fields == [(1, 500000), (0, 0), (1234567, 1), (4294967295, 0)]

    records = read_pcap(path)
    assert [r.data for r in records] == PACKETS
    assert [r.ts for r in records] == TIMESTAMPS
    assert all(r.linktype == LINKTYPE_RAW for r in records)
    assert [r.orig_len for r in records] == [len(p) for p in PACKETS]
    # Path as str, raw bytes and the iterator all agree.
    assert read_pcap(str(path)) == records
    assert read_pcap(raw) == records
    assert read_pcap(bytearray(raw)) == records
    assert list(iter_pcap(path)) == records


def test_output_is_reproducible(tmp_path: Path) -> None:
    records = list(zip(TIMESTAMPS, PACKETS, strict=True))
    assert write_pcap(tmp_path / "a.pcap", records) == len(records)
    assert write_pcap(tmp_path / "b.pcap", records) == len(records)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    assert (tmp_path / "a.pcap").read_bytes() == sample_pcap()


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (0.0, (0, 0)),
        (0, (0, 0)),
        (1.5, (1, 500000)),
        (1.0000004, (1, 0)),
        (1.0000006, (1, 1)),
        (0.9999994, (0, 999999)),
        (0.9999996, (1, 0)),  # rounds up to a whole second: carried
        (41.99999999, (42, 0)),
        (1234567.000001, (1234567, 1)),
        (0.000123456, (0, 123)),
        (4294967295.0000001, (4294967295, 0)),
    ],
)
def test_timestamp_rounding_and_carry(ts: float, expected: tuple[int, int]) -> None:
    buf = io.BytesIO()
    with PcapWriter(buf) as writer:
        writer.write(b"x", ts)
    assert struct.unpack_from("<II", buf.getvalue(), 24) == expected


@settings(max_examples=500, deadline=None)
@given(st.floats(min_value=0.0, max_value=4294967295.0, allow_nan=False, allow_infinity=False))
def test_timestamp_rounds_to_nearest_microsecond(ts: float) -> None:
    buf = io.BytesIO()
    with PcapWriter(buf) as writer:
        writer.write(b"", ts)
    sec, usec = struct.unpack_from("<II", buf.getvalue(), 24)
    assert 0 <= usec < 1_000_000
    assert abs(Fraction(sec) + Fraction(usec, 10**6) - Fraction(ts)) <= Fraction(1, 2 * 10**6)


@pytest.mark.parametrize("ts", [-0.5, -1e-9, float("nan"), float("inf"), 2.0**32])
def test_bad_timestamps_rejected(ts: float) -> None:
    writer = PcapWriter(io.BytesIO())
    with pytest.raises(ValueError, match="timestamp"):
        writer.write(b"x", ts)
    assert writer.packets_written == 0


def test_truncation_at_snaplen() -> None:
    big = bytes(range(256)) * 1200  # 307200 bytes
    buf = io.BytesIO()
    with PcapWriter(buf) as writer:
        writer.write(big, 2.0)
        writer.write(big[:262144], 3.0)
    (rec, exact) = read_pcap(buf.getvalue())
    assert rec.data == big[:262144]
    assert rec.orig_len == len(big)
    assert exact.data == big[:262144]
    assert exact.orig_len == 262144
    assert struct.unpack_from("<I", buf.getvalue(), 16) == (262144,)

    small = io.BytesIO()
    with PcapWriter(small, snaplen=10) as writer:
        writer.write(b"0123456789abcdef", 0.0)
    (rec,) = read_pcap(small.getvalue())
    assert (rec.data, rec.orig_len) == (b"0123456789", 16)


def test_file_object_left_open_and_closing() -> None:
    buf = io.BytesIO()
    buf.write(b"prefix")
    writer = PcapWriter(buf, LINKTYPE_IPV4)
    writer.write(b"\x45abc", 1.0)
    writer.close()
    writer.close()  # harmless
    assert writer.closed
    assert not buf.closed
    assert buf.getvalue()[:6] == b"prefix"
    (rec,) = read_pcap(buf.getvalue()[6:])
    assert rec == PcapRecord(ts=1.0, data=b"\x45abc", linktype=LINKTYPE_IPV4, orig_len=4)
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"x", 2.0)


def test_path_writer_closes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    with PcapWriter(str(path)) as writer:
        writer.write(b"abc", 0.0)
    assert writer.closed
    assert len(read_pcap(path)) == 1


def test_write_pcap_linktype_and_count(tmp_path: Path) -> None:
    frame = b"\x00" * 12 + b"\x86\xdd" + b"\x60" * 40
    n = write_pcap(tmp_path / "e.pcap", [(0.25, frame), (0.5, frame)], linktype=LINKTYPE_ETHERNET)
    assert n == 2
    records = read_pcap(tmp_path / "e.pcap")
    assert [r.linktype for r in records] == [LINKTYPE_ETHERNET] * 2
    assert [ip_packet(r) for r in records] == [b"\x60" * 40] * 2
    assert write_pcap(tmp_path / "empty.pcap", []) == 0
    assert read_pcap(tmp_path / "empty.pcap") == []


def test_writer_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        PcapWriter(io.BytesIO(), -1)
    with pytest.raises(ValueError):
        PcapWriter(io.BytesIO(), snaplen=0)


# ----------------------------------------------------------------------------- classic pcap reading


def test_big_endian_microsecond_pcap() -> None:
    data = classic_bytes([(7, 250000, b"\x45big", 4), (8, 999999, b"\x60cut", 100)], endian=">")
    assert data[:4] == b"\xa1\xb2\xc3\xd4"
    assert read_pcap(data) == [
        PcapRecord(ts=7.25, data=b"\x45big", linktype=LINKTYPE_RAW, orig_len=4),
        PcapRecord(ts=8.999999, data=b"\x60cut", linktype=LINKTYPE_RAW, orig_len=100),
    ]


@pytest.mark.parametrize("endian", ["<", ">"])
def test_nanosecond_pcap(endian: str) -> None:
    data = classic_bytes(
        [(3, 123456789, b"nano", 4), (4, 999999999, b"", 0)],
        endian=endian,
        nano=True,
        linktype=LINKTYPE_ETHERNET,
    )
    assert data[:4] == (b"\x4d\x3c\xb2\xa1" if endian == "<" else b"\xa1\xb2\x3c\x4d")
    records = read_pcap(data)
    assert [r.ts for r in records] == [3 + 123456789 / 1e9, 4 + 999999999 / 1e9]
    assert [r.data for r in records] == [b"nano", b""]
    assert {r.linktype for r in records} == {LINKTYPE_ETHERNET}


def test_fcs_bits_in_linktype_field_are_ignored() -> None:
    data = classic_bytes([(0, 0, b"x", 1)], linktype=0x1400_0000 | LINKTYPE_ETHERNET)
    assert read_pcap(data)[0].linktype == LINKTYPE_ETHERNET


# ----------------------------------------------------------------------------- pcapng reading


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_blocks(endian: str) -> None:
    records = read_pcap(sample_pcapng(endian))
    assert records == [
        PcapRecord(ts=1.5, data=b"\x45abc", linktype=LINKTYPE_RAW, orig_len=4),
        PcapRecord(
            ts=2.000000001,
            data=b"\x00" * 12 + b"\x08\x00" + b"\x45" * 21,
            linktype=LINKTYPE_ETHERNET,
            orig_len=35,
        ),
        PcapRecord(ts=0.0, data=b"\x60simple", linktype=LINKTYPE_RAW, orig_len=7),
    ]
    assert ip_packet(records[1]) == b"\x45" * 21


def test_pcapng_tsresol_power_of_two_and_offset() -> None:
    data = b"".join(
        [
            shb(">"),
            idb(">", LINKTYPE_RAW, tsresol=0x80 | 10, tsoffset=1000),  # 1/1024 s ticks
            idb(">", LINKTYPE_RAW, tsresol=3),  # milliseconds
            idb(">", LINKTYPE_RAW, tsresol=0x80),  # 2^0: whole seconds
            epb(">", 0, 1536, b"a"),
            epb(">", 1, 2500, b"b"),
            epb(">", 2, 7, b"c"),
            epb(">", 1, (1 << 40) + 1, b"d"),
        ]
    )
    assert [r.ts for r in read_pcap(data)] == [1001.5, 2.5, 7.0, ((1 << 40) + 1) / 1000]


def test_pcapng_two_sections_with_their_own_byte_order() -> None:
    first = shb("<") + idb("<", LINKTYPE_IPV4) + epb("<", 0, 1_000_000, b"one")
    second = shb(">") + idb(">", LINKTYPE_IPV6, tsresol=9) + epb(">", 0, 3_000_000_000, b"two")
    records = read_pcap(first + second)
    assert records == [
        PcapRecord(ts=1.0, data=b"one", linktype=LINKTYPE_IPV4, orig_len=3),
        PcapRecord(ts=3.0, data=b"two", linktype=LINKTYPE_IPV6, orig_len=3),
    ]
    # Interfaces belong to their section: the second one does not inherit the first's.
    epb_at = len(first) + len(shb(">"))
    with pytest.raises(PcapError, match=f"block at offset {epb_at}: interface 0 is not defined"):
        read_pcap(first + shb(">") + epb(">", 0, 0, b"x"))


def test_pcapng_spb_uses_interface_snaplen_and_opb() -> None:
    data = (
        shb("<")
        + idb("<", LINKTYPE_ETHERNET, snaplen=4)
        + spb("<", b"abcd", orig_len=9)
        + opb("<", 0, 2_000_000, b"old")
    )
    assert read_pcap(data) == [
        PcapRecord(ts=0.0, data=b"abcd", linktype=LINKTYPE_ETHERNET, orig_len=9),
        PcapRecord(ts=2.0, data=b"old", linktype=LINKTYPE_ETHERNET, orig_len=3),
    ]


def test_pcapng_capture_shorter_than_original() -> None:
    data = shb("<") + idb("<", LINKTYPE_RAW) + epb("<", 0, 0, b"\x45" * 5, orig_len=1500)
    (rec,) = read_pcap(data)
    assert (rec.data, rec.orig_len) == (b"\x45" * 5, 1500)


def test_pcapng_with_no_packets() -> None:
    assert read_pcap(shb("<")) == []
    assert read_pcap(shb(">") + idb(">", LINKTYPE_RAW) + isb(">")) == []


def test_iter_pcap_checks_magic_eagerly_and_records_lazily() -> None:
    with pytest.raises(PcapError):
        iter_pcap(b"nope")
    good = sample_pcap()
    it = iter_pcap(good + b"\x00\x00")
    assert next(it).data == PACKETS[0]
    with pytest.raises(PcapError, match=f"truncated pcap record header at offset {len(good)}"):
        list(it)


# ----------------------------------------------------------------------------- ip_packet


IP4 = b"\x45" + b"\x00" * 19
IP6 = b"\x60" + b"\x00" * 39
MACS = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02"


def rec(linktype: int, data: bytes) -> PcapRecord:
    return PcapRecord(ts=0.0, data=data, linktype=linktype, orig_len=len(data))


@pytest.mark.parametrize(
    ("linktype", "data", "expected"),
    [
        (LINKTYPE_RAW, IP4, IP4),
        (LINKTYPE_RAW, IP6, IP6),
        (LINKTYPE_IPV4, IP4, IP4),
        (LINKTYPE_IPV6, IP6, IP6),
        (LINKTYPE_ETHERNET, MACS + b"\x08\x00" + IP4, IP4),
        (LINKTYPE_ETHERNET, MACS + b"\x86\xdd" + IP6, IP6),
        (LINKTYPE_ETHERNET, MACS + b"\x81\x00\x00\x05\x08\x00" + IP4, IP4),
        (LINKTYPE_ETHERNET, MACS + b"\x81\x00\x20\x07\x86\xdd" + IP6, IP6),
        (LINKTYPE_ETHERNET, MACS + b"\x08\x06" + b"\x00" * 28, None),  # ARP
        (LINKTYPE_ETHERNET, MACS + b"\x81\x00\x00\x05\x08\x06" + b"\x00" * 28, None),
        (LINKTYPE_ETHERNET, MACS + b"\x81\x00\x00\x05\x81\x00\x00\x06\x08\x00" + IP4, IP4),  # two tags
        (LINKTYPE_ETHERNET, MACS + b"\x88\xa8\x00\x05\x81\x00\x00\x06\x86\xdd" + IP6, IP6),  # 802.1ad
        (LINKTYPE_ETHERNET, MACS + b"\x81\x00\x00\x05\x81\x00", None),  # cut inside the tags
        (LINKTYPE_ETHERNET, MACS + b"\x08", None),
        (LINKTYPE_ETHERNET, MACS + b"\x81\x00\x00", None),
        (LINKTYPE_ETHERNET, MACS + b"\x08\x00", b""),
        (LINKTYPE_LINUX_SLL, b"\x00\x00\x00\x01\x00\x06" + b"\x11" * 8 + b"\x08\x00" + IP4, IP4),
        (LINKTYPE_LINUX_SLL, b"\x00\x04\x00\x01\x00\x06" + b"\x11" * 8 + b"\x86\xdd" + IP6, IP6),
        (LINKTYPE_LINUX_SLL, b"\x00\x00\x00\x01\x00\x06" + b"\x11" * 8 + b"\x00\x03" + IP4, None),
        (LINKTYPE_LINUX_SLL, b"\x00" * 14 + b"\x08", None),
        (LINKTYPE_LINUX_SLL2, b"\x08\x00\x00\x00" + b"\x00\x00\x00\x02" + b"\x00" * 12 + IP4, IP4),
        (LINKTYPE_LINUX_SLL2, b"\x86\xdd\x00\x00" + b"\x00\x00\x00\x02" + b"\x00" * 12 + IP6, IP6),
        (LINKTYPE_LINUX_SLL2, b"\x08\x06\x00\x00" + b"\x00" * 16 + IP4, None),
        (LINKTYPE_LINUX_SLL2, b"\x08\x00" + b"\x00" * 17, None),
        (LINKTYPE_NULL, b"\x02\x00\x00\x00" + IP4, IP4),  # BSD loopback, little-endian host
        (LINKTYPE_NULL, b"\x00\x00\x00\x1e" + IP6, IP6),  # macOS AF_INET6, big-endian host
        (LINKTYPE_NULL, b"\x07\x00\x00\x00" + IP4, None),  # another family
        (LINKTYPE_NULL, b"\x02\x00", None),
        (LINKTYPE_LOOP, b"\x00\x00\x00\x18" + IP6, IP6),  # OpenBSD loopback: network order
        (147, IP4, None),
    ],
)
def test_ip_packet(linktype: int, data: bytes, expected: bytes | None) -> None:
    record = rec(linktype, data)
    assert ip_packet(record) == expected
    assert record.ip_packet() == expected


def test_ip_packet_through_a_file() -> None:
    frame = MACS + b"\x81\x00\x00\x05\x86\xdd" + IP6
    (record,) = read_pcap(shb("<") + idb("<", LINKTYPE_ETHERNET) + epb("<", 0, 0, frame))
    assert record.ip_packet() == IP6


# ----------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a pcap or pcapng file: only 0 bytes"),
        (b"\xd4\xc3", "not a pcap or pcapng file: only 2 bytes"),
        (b"GIF89a....", "not a pcap or pcapng file: magic 47494638 at offset 0"),
        (b"\xa1\xb2\xcd\x34" + b"\x00" * 20, "magic a1b2cd34 at offset 0"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", r"truncated pcap file header: 6 bytes at offset 0"),
    ],
)
def test_bad_magic_and_short_files(data: bytes, message: str) -> None:
    with pytest.raises(PcapError, match=message):
        read_pcap(data)


def test_pcap_error_is_a_value_error() -> None:
    assert issubclass(PcapError, ValueError)


def test_classic_structural_errors() -> None:
    with pytest.raises(PcapError, match=r"unsupported pcap version 1\.0 at offset 4"):
        read_pcap(classic_bytes([], version=(1, 0)))
    with pytest.raises(PcapError, match="microsecond field 1000000 at offset 28 is not below 1000000"):
        read_pcap(classic_bytes([(0, 1_000_000, b"", 0)]))
    with pytest.raises(PcapError, match="nanosecond field 1000000000 at offset 28"):
        read_pcap(classic_bytes([(0, 10**9, b"", 0)], nano=True, endian=">"))
    lying = classic_bytes([(0, 0, b"abc", 3)])
    lying = lying[:32] + struct.pack("<I", 0xFFFFFFFF) + lying[36:]
    with pytest.raises(PcapError, match="truncated pcap record at offset 24: captured length 4294967295"):
        read_pcap(lying)


def with_u32(data: bytes, offset: int, value: int, endian: str = "<") -> bytes:
    return data[:offset] + struct.pack(endian + "I", value) + data[offset + 4 :]


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_bad_block_lengths(endian: str) -> None:
    head = shb(endian)
    block_at = len(head)
    good = head + idb(endian, LINKTYPE_RAW) + epb(endian, 0, 0, b"payload!")
    epb_at = len(head) + len(idb(endian, LINKTYPE_RAW))
    epb_len = len(good) - epb_at

    cases = [
        (with_u32(good, epb_at + 4, epb_len + 2, endian), f"offset {epb_at}.*not a multiple of 4"),
        (with_u32(good, epb_at + 4, 8, endian), f"offset {epb_at}.*below the minimum 32"),
        (with_u32(good, epb_at + 4, epb_len + 4, endian), f"offset {epb_at}.*runs past the end"),
        (with_u32(good, epb_at + 4, 0xFFFFFFFC, endian), f"offset {epb_at}.*runs past the end"),
        (with_u32(good, len(good) - 4, epb_len + 4, endian), f"trailing total length {epb_len + 4}"),
        (with_u32(good, 4, 12, endian), "section header block at offset 0.*below the minimum 28"),
        (with_u32(good, block_at + 4, 16, endian), f"interface description block at offset {block_at}"),
        (good + b"\x00" * 4, f"truncated pcapng block header at offset {len(good)}"),
        (
            good + struct.pack(endian + "II", 99, 8),
            f"type 0x00000063 block at offset {len(good)}.*minimum 12",
        ),
        (good[:12] + b"\x01\x02\x03\x04", "truncated pcapng section header|runs past"),
        (good[:8] + b"\x1a\x2b\x3c\x4e" + good[12:], "bad byte-order magic 1a2b3c4e at offset 8"),
        (good + b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00", f"section header at offset {len(good)}"),
        (with_u32(good, epb_at + 20, 9, endian), f"captured length 9 at offset {epb_at + 20} does not fit"),
        (with_u32(good, epb_at + 8, 1, endian), f"block at offset {epb_at}: interface 1 is not defined"),
    ]
    for data, message in cases:
        with pytest.raises(PcapError, match=message):
            read_pcap(data)


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_bad_contents(endian: str) -> None:
    with pytest.raises(PcapError, match=r"unsupported pcapng version 2\.0 at offset 12"):
        read_pcap(shb(endian, version=(2, 0)))
    no_iface = shb(endian) + spb(endian, b"x")
    with pytest.raises(PcapError, match=f"simple packet block at offset {len(shb(endian))}"):
        read_pcap(no_iface)
    big_spb = shb(endian) + idb(endian, LINKTYPE_RAW) + spb(endian, b"abcd", orig_len=5)
    with pytest.raises(PcapError, match=r"packet length 5 at offset \d+ does not fit"):
        read_pcap(big_spb)
    idb_at = len(shb(endian))
    bad_resol = block(
        endian,
        1,
        struct.pack(endian + "HHI", 1, 0, 0) + option(endian, 9, b"\x06\x00") + end_of_options(endian),
    )
    with pytest.raises(PcapError, match=f"if_tsresol option at offset {idb_at + 16}: length 2"):
        read_pcap(shb(endian) + bad_resol)
    bad_offset = block(endian, 1, struct.pack(endian + "HHI", 1, 0, 0) + option(endian, 14, b"\x00" * 4))
    with pytest.raises(PcapError, match=r"if_tsoffset option at offset \d+: length 4, expected 8"):
        read_pcap(shb(endian) + bad_offset)
    overrun = block(endian, 1, struct.pack(endian + "HHI", 1, 0, 0) + struct.pack(endian + "HH", 2, 200))
    with pytest.raises(PcapError, match=f"option 2 at offset {idb_at + 16}: length 200 runs past"):
        read_pcap(shb(endian) + overrun)


def test_every_truncation_of_a_pcap_is_a_pcap_error_or_a_clean_prefix() -> None:
    data = sample_pcap()
    full = read_pcap(data)
    boundaries = [24]
    for record in full:
        boundaries.append(boundaries[-1] + 16 + len(record.data))
    assert boundaries[-1] == len(data)
    for cut in range(len(data)):
        if cut in boundaries:
            assert read_pcap(data[:cut]) == full[: boundaries.index(cut)]
        else:
            with pytest.raises(PcapError):
                read_pcap(data[:cut])


@pytest.mark.parametrize("endian", ["<", ">"])
def test_every_truncation_of_a_pcapng_is_a_pcap_error_or_a_clean_prefix(endian: str) -> None:
    data = sample_pcapng(endian)
    ends = pcapng_block_ends(data)
    assert ends[-1] == len(data)
    full = read_pcap(data)
    for cut in range(len(data)):
        if cut in ends:
            prefix = read_pcap(data[:cut])
            assert prefix == full[: len(prefix)]
        else:
            with pytest.raises(PcapError):
                read_pcap(data[:cut])


MUTATION_SEEDS = {
    "pcap": sample_pcap(),
    "pcap-be-nano": classic_bytes([(1, 2, b"abc", 3), (4, 5, b"defgh", 9)], endian=">", nano=True),
    "pcapng-le": sample_pcapng("<"),
    "pcapng-be": sample_pcapng(">"),
    "pcapng-2-sections": sample_pcapng("<") + sample_pcapng(">") + opb("<", 0, 5, b"xyz"),
}


@st.composite
def mutated_capture(draw: st.DrawFn) -> bytes:
    data = bytearray(MUTATION_SEEDS[draw(st.sampled_from(sorted(MUTATION_SEEDS)))])
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        kind = draw(st.sampled_from(["byte", "u32", "cut", "insert", "delete"]))
        if not data:
            break
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        if kind == "byte":
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "u32":
            value = draw(st.sampled_from([0, 1, 3, 4, 8, 12, 28, 32, 0x7FFFFFFF, 0xFFFFFFFC, 0xFFFFFFFF]))
            data[at : at + 4] = value.to_bytes(4, draw(st.sampled_from(["little", "big"])))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at : at + draw(st.integers(min_value=1, max_value=8))]
    return bytes(data)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_capture())
def test_mutated_files_raise_only_pcap_error(data: bytes) -> None:
    try:
        records = read_pcap(data)
    except PcapError as exc:
        assert "offset" in str(exc)
    else:
        for record in records:
            assert isinstance(record.data, bytes)
            assert isinstance(record.ts, float)
            record.ip_packet()


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\x0a\x0d\x0d\x0a"]),
    st.binary(max_size=200),
)
def test_random_bytes_after_a_valid_magic_raise_only_pcap_error(magic: bytes, rest: bytes) -> None:
    try:
        read_pcap(magic + rest)
    except PcapError as exc:
        assert "offset" in str(exc)


# ----------------------------------------------------------------------------- tshark interoperability


def tshark_path() -> str:
    path = shutil.which("tshark")
    assert path is not None, "tshark is not installed: run scripts/setup-system.sh (CI installs it)"
    return path


def run_tshark(*args: str) -> list[list[str]]:
    proc = subprocess.run(
        [tshark_path(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    # As root tshark warns 'Running as user "root" ...' on stderr; that is all stderr may hold.
    stderr = [line for line in proc.stderr.splitlines() if line and "Running as user" not in line]
    assert proc.returncode == 0 and not stderr, (proc.returncode, proc.stderr)
    return [line.split("\t") for line in proc.stdout.splitlines()]


def tcp_packets() -> list[tuple[float, bytes]]:
    syn = Segment(src_port=40000, dst_port=80, seq=1000, ack=None, flags=SYN, window=65535)
    synack = Segment(src_port=80, dst_port=40000, seq=7000, ack=1001, flags=SYN | ACK, window=8192)
    data6 = Segment(
        src_port=443, dst_port=50000, seq=1, ack=2, flags=ACK, window=1024, payload=b"hello, tshark" * 7
    )
    return [
        (0.0, build_packet("192.0.2.1", "198.51.100.2", syn)),
        (0.000250, build_packet("198.51.100.2", "192.0.2.1", synack)),
        (1.5, build_packet("2001:db8::1", "2001:db8::2", syn)),
        (1234567.000001, build_packet("2001:db8::2", "2001:db8::1", data6)),
    ]


def test_tshark_decodes_our_pcap_with_good_checksums(tmp_path: Path) -> None:
    packets = tcp_packets()
    corrupt = bytearray(packets[0][1])
    corrupt[-3] ^= 0x01  # flip a bit in the TCP window: the checksum no longer matches
    path = tmp_path / "tcp.pcap"
    assert write_pcap(path, [*packets, (2.0, bytes(corrupt))]) == 5
    rows = run_tshark(
        "-r",
        str(path),
        "-o",
        "tcp.check_checksum:TRUE",
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "ipv6.src",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.flags",
        "-e",
        "tcp.checksum.status",
        "-e",
        "frame.time_epoch",
    )
    # tcp.checksum.status is Wireshark's enum: 0 Bad, 1 Good, 2 Unverified.
    assert rows == [
        ["192.0.2.1", "", "40000", "0x0002", "1", "0.000000000"],
        ["198.51.100.2", "", "80", "0x0012", "1", "0.000250000"],
        ["", "2001:db8::1", "40000", "0x0002", "1", "1.500000000"],
        ["", "2001:db8::2", "443", "0x0010", "1", "1234567.000001000"],
        ["192.0.2.1", "", "40000", "0x0002", "0", "2.000000000"],
    ]


@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap", "pcap"])
def test_we_read_what_tshark_writes(tmp_path: Path, fmt: str) -> None:
    packets = tcp_packets()
    ours = tmp_path / "ours.pcap"
    write_pcap(ours, packets)
    theirs = tmp_path / f"theirs.{fmt}"
    run_tshark("-r", str(ours), "-F", fmt, "-w", str(theirs))
    records = read_pcap(theirs)
    assert [r.data for r in records] == [p for _, p in packets]
    assert [r.ip_packet() for r in records] == [p for _, p in packets]
    assert [r.orig_len for r in records] == [len(p) for _, p in packets]
    assert [r.ts for r in records] == pytest.approx([ts for ts, _ in packets], abs=1e-9)
    assert {r.linktype for r in records} == {LINKTYPE_RAW}
    if fmt == "pcapng":
        assert theirs.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


# ----------------------------------------------------------------------------- streaming


def test_streaming_reads_the_same_records_in_any_chunk_size() -> None:
    from synack.pcap import iter_batches

    for data in (sample_pcap(), sample_pcapng("<"), sample_pcapng(">")):
        full = [(r.ts, r.data, r.linktype, r.orig_len) for r in read_pcap(data)]
        for chunk in (1, 7, 64, 100, 4096):
            got = [(ts, b.data[start:start + n], lt, orig)
                   for b in iter_batches(io.BytesIO(data), chunk_size=chunk)
                   for ts, start, n, orig, lt in b.frames]
            assert got == full, chunk


def test_streaming_from_a_pipe_and_errors_after_the_good_records(tmp_path: Path) -> None:
    import os as _os

    data = sample_pcap()
    r, w = _os.pipe()
    _os.write(w, data + b"\x01\x02\x03")
    _os.close(w)
    with _os.fdopen(r, "rb") as pipe:
        it = iter_pcap(pipe)
        got = []
        with pytest.raises(PcapError, match=f"truncated pcap record header at offset {len(data)}"):
            for rec in it:
                got.append(rec.data)
    assert got == [rec.data for rec in read_pcap(data)]


def test_a_huge_claimed_record_length_fails_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.pcap"
    path.write_bytes(classic_bytes([(1, 0, b"abcd", 4)])[:24] + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 64))
    with pytest.raises(PcapError, match="captured length 4294967280"):
        read_pcap(path)
