"""Tests of :mod:`synack.core.wire`: sequence arithmetic, the TCP header and its options, IPv4/IPv6
packets, checksums and the tcpdump-style line.

Requirement numbers refer to RFC 9293 (see /work/shared/ref/rfc9293-requirements.md). The fuzz
tests at the end feed well over 100,000 generated or mutated inputs to the parsers; each of them
counts its inputs and asserts the count, so the figure cannot silently shrink.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import random
import struct
from collections.abc import Callable, Iterable
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synack.core.wire import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SEQ_MOD,
    SYN,
    URG,
    Eol,
    IPPacket,
    Mss,
    Nop,
    Option,
    RelativeSeq,
    Sack,
    SackPermitted,
    Segment,
    Timestamps,
    UnknownOption,
    WindowScale,
    WireError,
    build_headers_partial,
    build_ip_packet,
    build_packet,
    build_segment,
    encode_options,
    flag_names,
    format_tcpdump,
    internet_checksum,
    parse_options,
    parse_packet,
    parse_segment,
    pseudo_header,
    segment_acceptable,
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_in_window,
    seq_le,
    seq_lt,
    seq_max,
    tcp_checksum,
    tcpdump_flags,
)

V4_SRC, V4_DST = "10.0.0.1", "10.0.0.2"
V6_SRC, V6_DST = "2001:db8::1", "2001:db8::2"
TOP = SEQ_MOD - 1
HALF = 1 << 31

def fuzz(examples: int) -> settings:
    """Settings for the slower property tests: a fixed number of examples, no deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.large_base_example],
    )


# ---------------------------------------------------------------------------------------------
# Independent reference implementations (written here, not taken from wire.py)
# ---------------------------------------------------------------------------------------------


def rfc1071(data: bytes) -> int:
    """The Internet checksum the slow and obvious way: a loop over 16-bit words with end-around
    carry (RFC 1071 §4.1), an odd last byte padded with a zero on its right."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo4(src: str, dst: str, length: int) -> bytes:
    """RFC 9293 Figure 2."""
    return (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
            + bytes((0, 6)) + length.to_bytes(2, "big"))


def pseudo6(src: str, dst: str, length: int) -> bytes:
    """RFC 8200 §8.1."""
    return (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
            + length.to_bytes(4, "big") + bytes((0, 0, 0, 6)))


def fix_ip4_checksum(buf: bytearray) -> bytes:
    """Rewrite the IPv4 header checksum of ``buf`` after a test has edited the header."""
    ihl = (buf[0] & 0x0F) * 4
    buf[10:12] = b"\0\0"
    buf[10:12] = rfc1071(bytes(buf[:ihl])).to_bytes(2, "big")
    return bytes(buf)


def raw_tcp(options: bytes = b"", *, flags: int = ACK, payload: bytes = b"", offset: int | None = None,
            seq: int = 1000, ack: int = 2000, window: int = 4096, csum: int = 0, urg: int = 0,
            byte12_low: int = 0) -> bytes:
    """A TCP header assembled field by field with ``struct``, independently of wire.py."""
    if offset is None:
        offset = 5 + (len(options) + 3) // 4
        options += bytes(-len(options) % 4)
    return struct.pack("!HHIIBBHHH", 1234, 80, seq, ack, (offset << 4) | byte12_low, flags, window, csum,
                       urg) + options + payload


def opt_len(opt: Option) -> int:
    """Bytes that ``opt`` takes on the wire."""
    if isinstance(opt, Nop):
        return 1
    if isinstance(opt, Eol):
        return 1 + len(opt.padding)
    if isinstance(opt, Mss):
        return 4
    if isinstance(opt, WindowScale):
        return 3
    if isinstance(opt, SackPermitted):
        return 2
    if isinstance(opt, Timestamps):
        return 10
    if isinstance(opt, Sack):
        return 2 + 8 * len(opt.blocks)
    return 2 + len(opt.data)


def expect_wire_error(fn: Callable[[], object], offset: int, text: str) -> WireError:
    with pytest.raises(WireError) as info:
        fn()
    assert info.value.offset == offset, str(info.value)
    assert text in info.value.reason, str(info.value)
    assert f"(at byte {offset})" in str(info.value)
    return info.value


def wire_checksum(tcp: bytes) -> int:
    return int.from_bytes(tcp[16:18], "big")


# ---------------------------------------------------------------------------------------------
# Sequence numbers (RFC 9293 §3.4)
# ---------------------------------------------------------------------------------------------

u32 = st.integers(0, TOP)


def test_seq_add_wraps_modulo_2_32() -> None:
    assert seq_add(TOP, 1) == 0
    assert seq_add(TOP - 9, 20) == 10
    assert seq_add(5, -10) == SEQ_MOD - 5
    assert seq_add(0, SEQ_MOD) == 0
    assert seq_add(123, 3 * SEQ_MOD + 7) == 130


def test_seq_comparisons_across_the_wrap() -> None:
    assert seq_lt(TOP, 0) and seq_le(TOP, 0)
    assert seq_gt(0, TOP) and seq_ge(0, TOP)
    assert not seq_lt(0, TOP) and not seq_gt(TOP, 0)
    assert seq_lt(SEQ_MOD - 100, 100)
    assert not seq_lt(7, 7) and seq_le(7, 7) and seq_ge(7, 7) and not seq_gt(7, 7)
    assert seq_le(TOP, TOP) and seq_ge(0, 0)


def test_seq_half_space_boundary() -> None:
    a = SEQ_MOD - 10
    just_under = seq_add(a, HALF - 1)
    assert seq_lt(a, just_under) and not seq_lt(just_under, a)
    assert seq_gt(just_under, a) and not seq_gt(a, just_under)
    assert seq_diff(just_under, a) == HALF - 1
    assert seq_diff(a, just_under) == -(HALF - 1)
    # Exactly half the space apart the order is undefined (RFC 1982 §3.2). wire.py follows
    # Linux's before()/after(): each number is "less than" the other and seq_diff says -2**31.
    opposite = seq_add(a, HALF)
    assert seq_lt(a, opposite) and seq_lt(opposite, a)
    assert seq_diff(a, opposite) == seq_diff(opposite, a) == -HALF


def test_seq_diff_and_max_across_the_wrap() -> None:
    assert seq_diff(2, TOP) == 3
    assert seq_diff(TOP, 2) == -3
    assert seq_diff(0, 0) == 0
    assert seq_max(TOP, 5) == 5 and seq_max(5, TOP) == 5
    assert seq_max(10, 20) == 20


def test_seq_in_window_across_the_wrap() -> None:
    start = SEQ_MOD - 3
    assert seq_in_window(start, start, 10)
    assert seq_in_window(TOP, start, 10)
    assert seq_in_window(0, start, 10)
    assert seq_in_window(6, start, 10)          # start + 9, the last octet of the window
    assert not seq_in_window(7, start, 10)      # start + 10 is just past it
    assert not seq_in_window(start - 1, start, 10)
    assert not seq_in_window(start, start, 0)   # an empty window holds nothing


def test_acceptable_ack_across_the_wrap() -> None:
    """RFC 9293 §3.4: an acceptable ACK satisfies SND.UNA < SEG.ACK =< SND.NXT."""
    snd_una, snd_nxt = SEQ_MOD - 100, 400
    for seg_ack, ok in ((SEQ_MOD - 100, False), (SEQ_MOD - 99, True), (0, True), (400, True), (401, False)):
        assert (seq_lt(snd_una, seg_ack) and seq_le(seg_ack, snd_nxt)) is ok, seg_ack


@settings(max_examples=400)
@given(u32, u32)
def test_seq_order_is_antisymmetric_except_half_way(a: int, b: int) -> None:
    assert seq_lt(a, b) == seq_gt(b, a)
    assert seq_le(a, b) == (a == b or seq_lt(a, b))
    assert seq_ge(a, b) == (a == b or seq_gt(a, b))
    assert seq_diff(a, b) == -seq_diff(b, a) or seq_diff(a, b) == -HALF
    if a == b:
        assert not seq_lt(a, b) and not seq_gt(a, b)
    elif (a - b) % SEQ_MOD != HALF:
        assert seq_lt(a, b) != seq_lt(b, a)
        assert seq_lt(a, b) == (seq_diff(a, b) < 0)
        assert seq_max(a, b) in (a, b) and seq_ge(seq_max(a, b), a) and seq_ge(seq_max(a, b), b)


@settings(max_examples=400)
@given(u32, st.integers(1, HALF - 1))
def test_seq_lt_a_before_a_plus_k(a: int, k: int) -> None:
    assert seq_lt(a, seq_add(a, k))
    assert seq_gt(a, seq_add(a, -k))
    assert not seq_lt(seq_add(a, k), a)
    assert seq_diff(seq_add(a, k), a) == k
    assert seq_diff(seq_add(a, -k), a) == -k


@settings(max_examples=400)
@given(u32, st.integers(-(2**40), 2**40), st.integers(-(2**40), 2**40))
def test_seq_add_is_associative_and_in_range(a: int, x: int, y: int) -> None:
    r = seq_add(seq_add(a, x), y)
    assert r == seq_add(a, x + y)
    assert 0 <= r < SEQ_MOD


@settings(max_examples=400)
@given(u32, u32, st.integers(1, HALF))
def test_seq_in_window_equivalences(x: int, start: int, size: int) -> None:
    inside = seq_in_window(x, start, size)
    assert inside == (seq_le(start, x) and seq_lt(x, seq_add(start, size)))
    assert inside == (0 <= seq_diff(x, start) < size)
    assert seq_in_window(seq_add(start, size - 1), start, size)
    assert not seq_in_window(seq_add(start, size), start, size)


# ---------------------------------------------------------------------------------------------
# The TCP header (RFC 9293 §3.1)
# ---------------------------------------------------------------------------------------------


def test_header_fields_at_their_offsets() -> None:
    seg = Segment(0xA1B2, 0xC3D4, 0x01020304, 0x05060708, ACK | PSH, 0x1122, (Mss(1460),), b"hello",
                  urg=0x3344, checksum=0x5566, reserved=0x9)
    data = build_segment(seg)
    assert data == struct.pack("!HHIIBBHHH", 0xA1B2, 0xC3D4, 0x01020304, 0x05060708, 0x69, 0x18, 0x1122,
                               0x5566, 0x3344) + b"\x02\x04\x05\xb4" + b"hello"
    back = parse_segment(data)
    assert back == seg
    assert back.header_len == 24 and back.seg_len == 5
    assert back.option(Mss) == Mss(1460) and back.option(Timestamps) is None


def test_every_flag_combination_is_kept_raw() -> None:
    for flags in range(256):
        data = raw_tcp(flags=flags, ack=0xDEADBEEF)
        seg = parse_segment(data)
        assert seg.flags == flags
        if flags & ACK:
            assert seg.ack == 0xDEADBEEF and seg.raw_ack == 0
        else:
            assert seg.ack is None and seg.raw_ack == 0xDEADBEEF
        assert build_segment(seg) == data
        assert data[13] == flags


def test_flag_bits_match_rfc_9293_figure_1() -> None:
    assert (CWR, ECE, URG, ACK, PSH, RST, SYN, FIN) == (0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01)
    assert flag_names(SYN | ACK) == ["SYN", "ACK"]
    assert flag_names(0xFF) == ["SYN", "FIN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"]
    assert tcpdump_flags(0) == "none"
    assert tcpdump_flags(0xFF) == "FSRP.UEW"
    assert Segment(1, 2, 3, None, SYN | FIN, 0).ctl() == "SYN,FIN"


def test_ack_bit_off_gives_none_and_keeps_the_raw_field() -> None:
    data = raw_tcp(flags=SYN, ack=0x12345678)
    seg = parse_segment(data)
    assert seg.ack is None and seg.raw_ack == 0x12345678
    assert build_segment(seg) == data
    # A segment built here with no ACK writes raw_ack (0 by default) into the field.
    assert build_segment(Segment(1, 2, 3, None, SYN, 4))[8:12] == b"\0\0\0\0"


def test_reserved_bits_are_preserved() -> None:
    for reserved in range(16):
        data = raw_tcp(byte12_low=reserved)
        seg = parse_segment(data)
        assert seg.reserved == reserved
        assert build_segment(seg) == data
        assert build_segment(Segment(1, 2, 3, 4, ACK, 5, reserved=reserved))[12] == 0x50 | reserved


def test_urgent_pointer_kept_with_and_without_urg() -> None:
    for flags in (ACK | URG, ACK):
        data = raw_tcp(flags=flags, urg=0xBEEF, payload=b"x" * 10)
        seg = parse_segment(data)
        assert seg.urg == 0xBEEF
        assert build_segment(seg) == data


def test_seg_len_counts_syn_and_fin() -> None:
    assert Segment(1, 2, 3, None, SYN, 4).seg_len == 1
    assert Segment(1, 2, 3, 9, SYN | FIN | ACK, 4, payload=b"abc").seg_len == 5
    assert Segment(1, 2, 3, 9, ACK, 4, payload=b"abc").seg_len == 3
    assert Segment(1, 2, 3, 9, RST | ACK, 4).seg_len == 0


def test_truncated_tcp_header() -> None:
    for n in range(20):
        expect_wire_error(partial(parse_segment, raw_tcp()[:n]), n, "TCP header truncated")


def test_data_offset_below_five() -> None:
    for offset in range(5):
        expect_wire_error(partial(parse_segment, raw_tcp(offset=offset)), 12, "below the minimum of 5")


def test_data_offset_past_the_segment() -> None:
    data = raw_tcp(b"\x01\x01\x01\x01", offset=7)   # claims 28 bytes of header, has 24
    expect_wire_error(lambda: parse_segment(data), 12, "runs past")
    expect_wire_error(lambda: parse_segment(data, base=40), 52, "runs past")


def test_wire_error_is_a_value_error_with_reason_and_offset() -> None:
    err = WireError("something odd", 17)
    assert isinstance(err, ValueError)
    assert err.reason == "something odd" and err.offset == 17
    assert str(err) == "something odd (at byte 17)"


# ---------------------------------------------------------------------------------------------
# Options (RFC 9293 §3.1, §3.2; RFC 7323; RFC 2018)
# ---------------------------------------------------------------------------------------------

UNKNOWN_KINDS = [6, 7, *range(9, 256)]

OPTION_BYTES: list[tuple[Option, bytes]] = [
    (Nop(), b"\x01"),
    (Eol(), b"\x00"),
    (Mss(1460), b"\x02\x04\x05\xb4"),
    (Mss(0xFFFF), b"\x02\x04\xff\xff"),
    (WindowScale(7), b"\x03\x03\x07"),
    (WindowScale(15), b"\x03\x03\x0f"),             # above 14: kept raw, RFC 7323 §2.3 says clamp later
    (SackPermitted(), b"\x04\x02"),
    (Timestamps(1, 0), b"\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x00"),
    (Timestamps(TOP, 0x01020304), b"\x08\x0a\xff\xff\xff\xff\x01\x02\x03\x04"),
    (Sack(((1, 2),)), b"\x05\x0a" + struct.pack("!II", 1, 2)),
    (UnknownOption(30, b"abc"), b"\x1e\x05abc"),
    (UnknownOption(253, b""), b"\xfd\x02"),
]


@pytest.mark.parametrize(("opt", "raw"), OPTION_BYTES, ids=[type(o).__name__ + str(i) for i, (o, _) in
                                                          enumerate(OPTION_BYTES)])
def test_each_option_kind_encodes_and_decodes(opt: Option, raw: bytes) -> None:
    padded = raw + bytes(-len(raw) % 4)
    assert encode_options([opt]) == padded
    expected: tuple[Option, ...] = (opt,)
    if isinstance(opt, Eol):
        expected = (Eol(bytes(3)),)
    elif len(raw) % 4:
        expected = (opt, Eol(bytes(len(padded) - len(raw) - 1)))
    assert parse_options(padded) == expected
    assert encode_options(expected) == padded


def test_must_4_mandatory_option_set_eol_nop_mss() -> None:
    data = raw_tcp(b"\x01\x02\x04\x02\x18\x00\x00\x00", flags=SYN)
    seg = parse_segment(data)
    assert seg.options == (Nop(), Mss(536), Eol(b"\x00\x00"))
    assert seg.option(Mss) == Mss(536)
    assert build_segment(seg) == data


@pytest.mark.parametrize("flags", [SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK, URG | ACK, 0])
def test_must_5_options_received_in_any_segment(flags: int) -> None:
    opts = b"\x02\x04\x05\xb4\x01\x01\x08\x0a\x00\x00\x00\x07\x00\x00\x00\x09\x01\x03\x03\x02"
    seg = parse_segment(raw_tcp(opts, flags=flags, payload=b"data"))
    assert seg.options == (Mss(1460), Nop(), Nop(), Timestamps(7, 9), Nop(), WindowScale(2))
    assert seg.payload == b"data"


def test_must_6_unknown_options_are_kept_without_error() -> None:
    for kind in UNKNOWN_KINDS:
        data = raw_tcp(bytes((kind, 4, kind, 0xAA)) + b"\x02\x04\x05\xb4", payload=b"p")
        seg = parse_segment(data)
        assert seg.options == (UnknownOption(kind, bytes((kind, 0xAA))), Mss(1460))
        assert build_segment(seg) == data


def test_must_6_unknown_option_of_maximal_length() -> None:
    body = bytes(range(38))
    seg = parse_segment(raw_tcp(b"\xfe\x28" + body))
    assert seg.options == (UnknownOption(254, body),)
    assert seg.header_len == 60


def test_must_64_options_not_on_word_boundaries() -> None:
    # NOP, MSS at offset 1, WS at offset 5, TS at offset 8... then SACK-permitted at 18 and a SACK at 20.
    opts = (b"\x01" + b"\x02\x04\x05\xb4" + b"\x03\x03\x0e" + b"\x08\x0a\x00\x00\x00\x05\x00\x00\x00\x06"
            + b"\x04\x02" + b"\x05\x0a" + struct.pack("!II", 100, 200) + b"\x01\x01")
    assert len(opts) == 32
    seg = parse_segment(raw_tcp(opts))
    assert seg.options == (Nop(), Mss(1460), WindowScale(14), Timestamps(5, 6), SackPermitted(),
                           Sack(((100, 200),)), Nop(), Nop())
    assert encode_options(seg.options) == opts


def test_must_64_timestamps_at_an_odd_offset() -> None:
    opts = b"\x01\x08\x0a" + struct.pack("!II", 0xAABBCCDD, 0x11223344) + b"\x00"
    assert parse_options(opts) == (Nop(), Timestamps(0xAABBCCDD, 0x11223344), Eol())


def test_must_68_option_without_length_byte() -> None:
    for kind in (2, 3, 4, 5, 8, 30):
        data = raw_tcp(b"\x01\x01\x01" + bytes((kind,)))
        expect_wire_error(partial(parse_segment, data), 23, "has no length byte")


def test_must_69_encoder_pads_with_zeros_after_the_options() -> None:
    raw = encode_options([Mss(1460), WindowScale(7)])
    assert raw == b"\x02\x04\x05\xb4\x03\x03\x07\x00"
    assert parse_options(raw) == (Mss(1460), WindowScale(7), Eol())
    assert encode_options([SackPermitted()]) == b"\x04\x02\x00\x00"
    assert encode_options([]) == b""


def test_must_69_eol_then_zero_padding() -> None:
    data = raw_tcp(b"\x02\x04\x05\xb4\x00\x00\x00\x00", flags=SYN)
    seg = parse_segment(data)
    assert seg.options == (Mss(1460), Eol(b"\x00\x00\x00"))
    assert build_segment(seg) == data


def test_must_69_bytes_after_eol_are_padding_not_options() -> None:
    # What follows EOL is never read as options, whatever it holds; it is kept for byte-exactness.
    data = raw_tcp(b"\x00\x02\x04\x05\xb4\x00\x00\x00")
    seg = parse_segment(data)
    assert seg.options == (Eol(b"\x02\x04\x05\xb4\x00\x00\x00"),)
    assert build_segment(seg) == data


@pytest.mark.parametrize("kind", [2, 3, 4, 5, 8, 30, 254])
@pytest.mark.parametrize("length", [0, 1])
def test_must_7_illegal_option_length_zero_and_one(kind: int, length: int) -> None:
    data = raw_tcp(b"\x01" + bytes((kind, length)) + b"\x00\x00\x00\x00\x00")
    err = expect_wire_error(lambda: parse_segment(data), 22, f"illegal length {length}")
    assert f"kind {kind}" in err.reason


def test_must_7_illegal_option_length_zero_inside_a_packet() -> None:
    seg = Segment(1, 2, 3, 4, ACK, 5, (Nop(), Nop(), UnknownOption(30, b"")))
    pkt = bytearray(build_packet(V4_SRC, V4_DST, seg))
    assert pkt[42:44] == b"\x1e\x02"
    pkt[43] = 0
    pkt[36:38] = b"\0\0"
    pkt[36:38] = rfc1071(pseudo4(V4_SRC, V4_DST, len(pkt) - 20) + bytes(pkt[20:])).to_bytes(2, "big")
    expect_wire_error(lambda: parse_packet(bytes(pkt)), 43, "illegal length 0")   # offset in the packet


@pytest.mark.parametrize(("opts", "where"), [
    (b"\x1e\x08\x00\x00", 21),
    (b"\x01\x02\x04\x05", 22),                              # MSS cut short by the end of the header
    (b"\x01\x01\x08\x0a\x00\x00\x00\x00", 23),
    (b"\x01\x01\x05\x12" + bytes(12), 23),                   # SACK of 2 blocks, room for 1.5
])
def test_must_7_option_running_past_the_header(opts: bytes, where: int) -> None:
    assert len(opts) % 4 == 0
    expect_wire_error(lambda: parse_segment(raw_tcp(opts)), where, "runs past the header")
    expect_wire_error(lambda: parse_options(opts), where, "runs past the header")
    expect_wire_error(lambda: parse_options(opts, base=0), where - 20, "runs past the header")


@pytest.mark.parametrize(("opts", "what"), [
    (b"\x02\x03\x05\x00", "must have length 4, not 3"),     # MSS with length 3
    (b"\x02\x05\x05\xb4\x00\x00\x00\x00", "must have length 4, not 5"),
    (b"\x08\x09" + bytes(10), "must have length 10, not 9"),  # timestamps with length 9
    (b"\x08\x0b" + bytes(10), "must have length 10, not 11"),
    (b"\x03\x04\x07\x00", "must have length 3, not 4"),
    (b"\x04\x03\x00\x00", "must have length 2, not 3"),
])
def test_must_7_wrong_fixed_option_length(opts: bytes, what: str) -> None:
    expect_wire_error(lambda: parse_segment(raw_tcp(opts)), 21, what)


@pytest.mark.parametrize("nblocks", [1, 2, 3, 4])
def test_sack_with_one_to_four_blocks(nblocks: int) -> None:
    blocks = tuple((TOP - 1000 * i, seq_add(TOP - 1000 * i, 500)) for i in range(nblocks))
    raw = b"\x01\x01" + bytes((5, 2 + 8 * nblocks)) + b"".join(struct.pack("!II", *b) for b in blocks)
    assert encode_options([Nop(), Nop(), Sack(blocks)]) == raw
    data = raw_tcp(raw)
    seg = parse_segment(data)
    assert seg.options == (Nop(), Nop(), Sack(blocks))
    assert seg.header_len == 20 + len(raw)
    assert build_segment(seg) == data


@pytest.mark.parametrize("length", [3, 9, 11, 17, 25, 33])
def test_must_7_bad_sack_length(length: int) -> None:
    opts = b"\x01\x01" + bytes((5, length)) + bytes(36)
    expect_wire_error(lambda: parse_segment(raw_tcp(opts)), 23, f"SACK option length {length}")


def test_encoder_refuses_more_than_40_bytes_of_options() -> None:
    with pytest.raises(ValueError, match="room for 40"):
        encode_options([Sack(tuple((i, i + 1) for i in range(5)))])
    with pytest.raises(ValueError, match="room for 40"):
        encode_options([Timestamps(1, 2)] * 4 + [Nop()])
    assert len(encode_options([Timestamps(1, 2)] * 4)) == 40


def test_truncated_options_at_every_length_raise_only_wire_error() -> None:
    full = encode_options([Mss(1460), SackPermitted(), Timestamps(1, 2), Nop(), WindowScale(7),
                           Sack(((1, 2), (3, 4)))])
    assert len(parse_options(full)) == 7                     # the last is EOL + padding
    for n in range(len(full)):
        with contextlib.suppress(WireError):
            parse_options(full[:n])


# ---------------------------------------------------------------------------------------------
# Checksums (RFC 1071; RFC 9293 §3.1, MUST-2 / MUST-3)
# ---------------------------------------------------------------------------------------------


def test_checksum_rfc_1071_worked_example() -> None:
    data = bytes((0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7))
    assert rfc1071(data) == internet_checksum(data) == 0xFFFF - 0xDDF2


def test_checksum_edge_values() -> None:
    assert internet_checksum(b"") == rfc1071(b"") == 0xFFFF
    assert internet_checksum(bytes(7)) == rfc1071(bytes(7)) == 0xFFFF
    assert internet_checksum(b"\xff\xff") == rfc1071(b"\xff\xff") == 0x0000
    assert internet_checksum(b"\xff" * 1501) == rfc1071(b"\xff" * 1501)
    assert internet_checksum(b"\x01") == rfc1071(b"\x01") == 0xFEFF     # odd byte padded on the right


@settings(max_examples=600)
@given(st.binary(max_size=3000))
def test_checksum_matches_rfc_1071_word_loop(data: bytes) -> None:
    assert internet_checksum(data) == rfc1071(data)
    assert internet_checksum(data + b"\x00" if len(data) % 2 else data) == rfc1071(data)


@fuzz(30)
@given(st.integers(60000, 70000), st.integers(0, 2**64 - 1))
def test_checksum_matches_rfc_1071_on_large_buffers(size: int, seed: int) -> None:
    data = random.Random(seed).randbytes(size)
    assert internet_checksum(data) == rfc1071(data)


@settings(max_examples=200)
@given(st.binary(max_size=1600), st.booleans())
def test_tcp_checksum_uses_the_right_pseudo_header(tcp: bytes, v6: bool) -> None:
    src, dst = (V6_SRC, V6_DST) if v6 else (V4_SRC, V4_DST)
    pseudo = (pseudo6 if v6 else pseudo4)(src, dst, len(tcp))
    assert pseudo_header(src, dst, len(tcp)) == pseudo
    assert tcp_checksum(src, dst, tcp) == rfc1071(pseudo + tcp)


@pytest.mark.parametrize(("src", "dst"), [(V4_SRC, V4_DST), (V6_SRC, V6_DST)])
@pytest.mark.parametrize("payload", [b"", b"x", b"odd!!", bytes(range(256)) * 5 + b"z"])
def test_must_2_checksum_computed_on_build(src: str, dst: str, payload: bytes) -> None:
    seg = Segment(443, 50000, 7, 9, ACK | PSH, 1000, (Nop(), Nop(), Timestamps(3, 4)), payload)
    tcp = build_segment(seg, src, dst)
    pseudo = (pseudo6 if ":" in src else pseudo4)(src, dst, len(tcp))
    assert rfc1071(pseudo + tcp) == 0                        # the sum over everything is all ones
    zeroed = tcp[:16] + b"\0\0" + tcp[18:]
    assert wire_checksum(tcp) == rfc1071(pseudo + zeroed)
    pkt = build_packet(src, dst, seg)
    hl = 40 if ":" in src else 20
    assert pkt[hl:] == tcp
    if hl == 20:
        assert rfc1071(pkt[:20]) == 0                        # IPv4 header checksum


def test_must_2_checksum_ignores_a_stale_checksum_field() -> None:
    seg = Segment(1, 2, 3, 4, ACK, 5, payload=b"abc", checksum=0x1234)
    assert build_segment(seg)[16:18] == b"\x12\x34"           # no addresses: written as given
    assert build_segment(seg, V4_SRC, V4_DST) == build_segment(dataclasses.replace(seg, checksum=None),
                                                                V4_SRC, V4_DST)


@pytest.mark.parametrize(("src", "dst"), [(V4_SRC, V4_DST), (V6_SRC, V6_DST)])
def test_must_3_bad_checksum_rejected(src: str, dst: str) -> None:
    seg = Segment(443, 50000, 7, 9, ACK, 1000, payload=b"payload")
    tcp = bytearray(build_segment(seg, src, dst))
    good = wire_checksum(bytes(tcp))
    tcp[16:18] = ((good + 1) & 0xFFFF).to_bytes(2, "big")
    expect_wire_error(lambda: parse_segment(bytes(tcp), src, dst), 16, f"expected 0x{good:04x}")
    assert parse_segment(bytes(tcp)).payload == b"payload"     # no addresses: not checked
    pkt = bytearray(build_packet(src, dst, seg))
    hl = 40 if ":" in src else 20
    pkt[hl + 16:hl + 18] = tcp[16:18]
    expect_wire_error(lambda: parse_packet(bytes(pkt)), hl + 16, "bad TCP checksum")
    assert parse_packet(bytes(pkt), verify=False).seg.checksum == (good + 1) & 0xFFFF


@pytest.mark.parametrize(("src", "dst", "size"), [(V4_SRC, V4_DST, 65535 - 40), (V6_SRC, V6_DST, 65535 - 20),
                                                   (V4_SRC, V4_DST, 5001), (V6_SRC, V6_DST, 9999)])
def test_must_2_must_3_large_packets(src: str, dst: str, size: int) -> None:
    payload = random.Random(size).randbytes(size)
    seg = Segment(443, 50000, 1, 2, ACK, 1000, payload=payload)
    pkt = build_packet(src, dst, seg)
    hl = 40 if ":" in src else 20
    assert rfc1071((pseudo6 if hl == 40 else pseudo4)(src, dst, len(pkt) - hl) + pkt[hl:]) == 0
    p = parse_packet(pkt)
    assert p.seg.payload == payload and type(p.seg.payload) is bytes
    assert build_ip_packet(p) == pkt
    assert parse_packet(bytearray(pkt)) == p  # type: ignore[arg-type]  # a receive buffer works too
    bad = bytearray(pkt)
    bad[-1000] ^= 0x40
    expect_wire_error(lambda: parse_packet(bytes(bad)), hl + 16, "bad TCP checksum")
    expect_wire_error(lambda: parse_packet(bad), hl + 16, "bad TCP checksum")  # type: ignore[arg-type]


def test_must_3_checksum_verified_against_the_addresses() -> None:
    tcp = build_segment(Segment(1, 2, 3, 4, ACK, 5, payload=b"to the right host"), V4_SRC, V4_DST)
    parse_segment(tcp, V4_SRC, V4_DST)
    expect_wire_error(lambda: parse_segment(tcp, V4_SRC, "10.0.0.3"), 16, "bad TCP checksum")
    expect_wire_error(lambda: parse_segment(tcp, V4_DST, V4_SRC + "0"), 16, "bad TCP checksum")


def _flip_every_bit(pkt: bytes) -> Iterable[tuple[int, bytes]]:
    for bit in range(len(pkt) * 8):
        b = bytearray(pkt)
        b[bit >> 3] ^= 0x80 >> (bit & 7)
        yield bit, bytes(b)


def test_must_3_every_single_bit_flip_of_an_ipv4_packet_is_detected() -> None:
    seg = Segment(80, 33706, TOP, 5, ACK | PSH, 512, (Nop(), Nop(), Timestamps(10, 20)), b"odd-sized data")
    pkt = build_packet(V4_SRC, V4_DST, seg, ip_options=b"\x01\x01\x01\x00", ident=0x1234, tos=0x10)
    for bit, bad in _flip_every_bit(pkt):
        with pytest.raises(WireError):
            parse_packet(bad)
            pytest.fail(f"bit {bit} flipped and not detected")


def test_must_3_every_single_bit_flip_of_a_bare_segment_is_detected() -> None:
    for src, dst in ((V4_SRC, V4_DST), (V6_SRC, V6_DST)):
        seg = Segment(80, 33706, 0, None, SYN, 65535, (Mss(1460), SackPermitted(), WindowScale(7)), b"s")
        tcp = build_segment(seg, src, dst)
        for bit, bad in _flip_every_bit(tcp):
            with pytest.raises(WireError):
                parse_segment(bad, src, dst)
                pytest.fail(f"bit {bit} flipped and not detected")


def test_must_3_every_single_bit_flip_of_an_ipv6_packet() -> None:
    """IPv6 has no header checksum: the traffic class, flow label and hop limit are covered by no
    checksum, so flips there parse and show up in those fields. Every other bit is detected (the
    addresses and length through the TCP pseudo-header, the next header by its value)."""
    seg = Segment(80, 33706, 1, 2, ACK | FIN, 512, (Nop(), Nop(), Timestamps(10, 20)), b"odd-sized data")
    pkt = build_packet(V6_SRC, V6_DST, seg, tos=0xA5, flow=0x12345, ttl=77)
    unseen = 0
    for bit, bad in _flip_every_bit(pkt):
        if 4 <= bit < 32 or 56 <= bit < 64:
            p = parse_packet(bad)
            assert (p.tos, p.flow, p.ttl) != (0xA5, 0x12345, 77)
            assert p.seg == parse_packet(pkt).seg
            unseen += 1
        else:
            with pytest.raises(WireError):
                parse_packet(bad)
                pytest.fail(f"bit {bit} flipped and not detected")
    assert unseen == 36


# ---------------------------------------------------------------------------------------------
# IPv4 (RFC 791)
# ---------------------------------------------------------------------------------------------


def _v4(seg: Segment | None = None, **kw: object) -> bytes:
    seg = seg or Segment(80, 33706, 100, 200, ACK, 1000, (Mss(1400),), b"hello")
    return build_packet(V4_SRC, V4_DST, seg, **kw)  # type: ignore[arg-type]


def test_ipv4_header_fields() -> None:
    seg = Segment(80, 33706, 100, 200, ACK, 1000, (Mss(1400),), b"hello")
    pkt = build_packet(V4_SRC, V4_DST, seg, ttl=33, tos=0xB8, ident=0xABCD, frag=0x4000,
                       ip_options=b"\x94\x04\x00\x00")
    vihl, tos, total, ident, frag, ttl, proto, csum = struct.unpack_from("!BBHHHBBH", pkt)
    assert (vihl, tos, total, ident, frag, ttl, proto) == (0x46, 0xB8, len(pkt), 0xABCD, 0x4000, 33, 6)
    assert pkt[12:16] == bytes((10, 0, 0, 1)) and pkt[16:20] == bytes((10, 0, 0, 2))
    assert pkt[20:24] == b"\x94\x04\x00\x00"
    assert rfc1071(pkt[:24]) == 0 and csum == rfc1071(pkt[:10] + b"\0\0" + pkt[12:24])
    p = parse_packet(pkt)
    assert (p.version, p.src, p.dst, p.ttl, p.tos, p.ident, p.frag, p.ip_options, p.header_len) == (
        4, V4_SRC, V4_DST, 33, 0xB8, 0xABCD, 0x4000, b"\x94\x04\x00\x00", 24)
    assert p.ip_checksum == csum
    assert p.seg == dataclasses.replace(seg, checksum=wire_checksum(pkt[24:]))
    assert build_ip_packet(p) == pkt


def test_ipv4_bad_header_checksum() -> None:
    pkt = bytearray(_v4())
    pkt[8] = 63                                                # TTL changed, checksum not
    expect_wire_error(lambda: parse_packet(bytes(pkt)), 10, "bad IPv4 header checksum")
    assert parse_packet(bytes(pkt), verify=False).ttl == 63


def test_ipv4_builder_rejects_bad_ip_options() -> None:
    for opts in (b"\x01", b"\x01" * 44):
        with pytest.raises(ValueError, match="IPv4 options"):
            _v4(ip_options=opts)


def test_ipv4_empty_and_truncated() -> None:
    expect_wire_error(lambda: parse_packet(b""), 0, "empty packet")
    pkt = _v4()
    for n in range(1, 20):
        expect_wire_error(partial(parse_packet, pkt[:n]), n, "IPv4 header truncated")


def test_ipv4_ihl_below_five() -> None:
    for ihl in range(5):
        pkt = bytearray(_v4())
        pkt[0] = 0x40 | ihl
        expect_wire_error(partial(parse_packet, bytes(pkt)), 0, "below the minimum of 5")


def test_ipv4_ihl_past_the_packet() -> None:
    pkt = bytearray(_v4(Segment(1, 2, 3, 4, ACK, 5))[:24])
    pkt[0] = 0x47                                                # 28 bytes of header, 24 captured
    expect_wire_error(lambda: parse_packet(bytes(pkt)), 0, "runs past the 24-byte packet")


def test_ipv4_total_length_shorter_than_header() -> None:
    pkt = bytearray(_v4())
    pkt[2:4] = (19).to_bytes(2, "big")
    expect_wire_error(lambda: parse_packet(bytes(pkt)), 2, "shorter than its header")


def test_ipv4_total_length_past_what_was_captured() -> None:
    pkt = _v4()
    expect_wire_error(lambda: parse_packet(pkt[:-1]), 2, f"exceeds the {len(pkt) - 1} bytes captured")


def test_ipv4_total_length_cuts_the_tcp_header() -> None:
    pkt = bytearray(_v4())
    pkt[2:4] = (30).to_bytes(2, "big")
    expect_wire_error(lambda: parse_packet(fix_ip4_checksum(pkt)), 30, "TCP header truncated")


def test_ipv4_trailing_bytes_after_total_length_are_ignored() -> None:
    pkt = _v4()
    p = parse_packet(pkt + b"\xff" * 7)                          # e.g. Ethernet minimum-frame padding
    assert p == parse_packet(pkt)
    assert p.seg.payload == b"hello"
    assert build_ip_packet(p) == pkt


@pytest.mark.parametrize("frag", [0x2000, 0x0001, 0x1FFF, 0x6000, 0x4001, 0x2001])
def test_ipv4_fragments_are_rejected(frag: int) -> None:
    pkt = bytearray(_v4())
    pkt[6:8] = frag.to_bytes(2, "big")
    expect_wire_error(lambda: parse_packet(fix_ip4_checksum(pkt)), 6, "fragment")


@pytest.mark.parametrize("frag", [0x0000, 0x4000])
def test_ipv4_unfragmented_packets_accepted(frag: int) -> None:
    pkt = _v4(frag=frag)
    assert parse_packet(pkt).frag == frag
    assert build_ip_packet(parse_packet(pkt)) == pkt


@pytest.mark.parametrize("proto", [1, 17, 41, 58, 255, 0])
def test_ipv4_protocol_not_tcp(proto: int) -> None:
    pkt = bytearray(_v4())
    pkt[9] = proto
    expect_wire_error(lambda: parse_packet(fix_ip4_checksum(pkt)), 9, f"protocol {proto} is not TCP")


@pytest.mark.parametrize("version", [0, 1, 5, 7, 15])
def test_ip_version_neither_4_nor_6(version: int) -> None:
    pkt = bytearray(_v4())
    pkt[0] = (version << 4) | 5
    expect_wire_error(lambda: parse_packet(bytes(pkt)), 0, f"IP version {version} is neither 4 nor 6")


# ---------------------------------------------------------------------------------------------
# IPv6 (RFC 8200)
# ---------------------------------------------------------------------------------------------


def _v6_with_ext(ext: bytes, first: int, seg: Segment | None = None) -> bytes:
    """An IPv6 packet with extension headers, assembled here with struct (not by wire.py)."""
    seg = seg or Segment(443, 50000, 1, 2, ACK | PSH, 100, (), b"ext")
    tcp = build_segment(seg, V6_SRC, V6_DST)
    return struct.pack("!IHBB16s16s", 6 << 28, len(ext) + len(tcp), first, 64,
                       ipaddress.IPv6Address(V6_SRC).packed, ipaddress.IPv6Address(V6_DST).packed) + ext + tcp


HOP_BY_HOP_TO_TCP = bytes((6, 0, 1, 4, 0, 0, 0, 0))            # next header TCP, PadN of 4
HOP_BY_HOP_TO_DSTOPTS = bytes((60, 0, 1, 4, 0, 0, 0, 0))
DSTOPTS_TO_TCP = bytes((6, 1, 1, 12)) + bytes(12)               # 16 bytes, PadN of 12


def test_ipv6_header_fields() -> None:
    seg = Segment(443, 50000, 7, None, SYN, 64800, (Mss(1440),))
    pkt = build_packet(V6_SRC, V6_DST, seg, ttl=3, tos=0xB8, flow=0xABCDE)
    vtf, plen, nxt, hlim = struct.unpack_from("!IHBB", pkt)
    assert vtf == (6 << 28) | (0xB8 << 20) | 0xABCDE
    assert (plen, nxt, hlim) == (len(pkt) - 40, 6, 3)
    assert pkt[8:24] == ipaddress.IPv6Address(V6_SRC).packed
    assert pkt[24:40] == ipaddress.IPv6Address(V6_DST).packed
    p = parse_packet(pkt)
    assert (p.version, p.src, p.dst, p.ttl, p.tos, p.flow, p.header_len) == (
        6, V6_SRC, V6_DST, 3, 0xB8, 0xABCDE, 40)
    assert (p.ext_headers, p.ext_first, p.ip_checksum) == (b"", 6, None)
    assert p.seg == dataclasses.replace(seg, checksum=wire_checksum(pkt[40:]))
    assert build_ip_packet(p) == pkt


def test_ipv6_truncated_header() -> None:
    pkt = build_packet(V6_SRC, V6_DST, Segment(1, 2, 3, 4, ACK, 5))
    for n in range(1, 40):
        expect_wire_error(partial(parse_packet, pkt[:n]), n, "IPv6 header truncated")


def test_ipv6_payload_length_past_the_end() -> None:
    pkt = build_packet(V6_SRC, V6_DST, Segment(1, 2, 3, 4, ACK, 5, payload=b"abc"))
    expect_wire_error(lambda: parse_packet(pkt[:-1]), 4, "payload length 23 exceeds the 22 bytes")


def test_ipv6_trailing_bytes_after_payload_length_are_ignored() -> None:
    pkt = build_packet(V6_SRC, V6_DST, Segment(1, 2, 3, 4, ACK, 5, payload=b"abc"))
    p = parse_packet(pkt + b"\0\0\0\0")
    assert p == parse_packet(pkt) and build_ip_packet(p) == pkt


def test_ipv6_hop_by_hop_before_tcp_parses() -> None:
    pkt = _v6_with_ext(HOP_BY_HOP_TO_TCP, 0)
    p = parse_packet(pkt)
    assert p.seg.payload == b"ext"
    assert (p.ext_headers, p.ext_first, p.header_len) == (HOP_BY_HOP_TO_TCP, 0, 48)
    assert build_ip_packet(p) == pkt


def test_ipv6_chain_of_extension_headers_parses() -> None:
    ext = HOP_BY_HOP_TO_DSTOPTS + DSTOPTS_TO_TCP
    pkt = _v6_with_ext(ext, 0)
    p = parse_packet(pkt)
    assert (p.ext_headers, p.ext_first, p.header_len) == (ext, 0, 64)
    assert build_ip_packet(p) == pkt


def test_ipv6_fragment_header_raises() -> None:
    frag = bytes((6, 0, 0, 0, 0, 0, 0, 1))
    expect_wire_error(lambda: parse_packet(_v6_with_ext(frag, 44)), 40, "fragment header")
    expect_wire_error(lambda: parse_packet(_v6_with_ext(bytes((44, 0, 1, 4, 0, 0, 0, 0)) + frag, 0)), 48,
                      "fragment header")


def test_ipv6_extension_header_past_the_packet() -> None:
    long_hbh = bytes((6, 9, 1, 4, 0, 0, 0, 0))                      # claims 80 bytes
    expect_wire_error(lambda: parse_packet(_v6_with_ext(long_hbh, 0)), 41, "runs past the packet")
    pkt = build_packet(V6_SRC, V6_DST, Segment(1, 2, 3, 4, ACK, 5))[:40] + b"\x06\0\0\0"
    pkt = pkt[:4] + (4).to_bytes(2, "big") + b"\x00" + pkt[7:]       # 4 bytes of a hop-by-hop header
    expect_wire_error(lambda: parse_packet(pkt), 40, "truncated")


@pytest.mark.parametrize("nxt", [17, 58, 59, 4, 41])
def test_ipv6_next_header_not_tcp(nxt: int) -> None:
    pkt = bytearray(build_packet(V6_SRC, V6_DST, Segment(1, 2, 3, 4, ACK, 5)))
    pkt[6] = nxt
    expect_wire_error(lambda: parse_packet(bytes(pkt)), 6, f"next header {nxt} is not TCP")
    # After extension headers the offset is where the unsupported header begins.
    expect_wire_error(lambda: parse_packet(_v6_with_ext(bytes((nxt, 0, 1, 4, 0, 0, 0, 0)), 0)), 48,
                      f"next header {nxt} is not TCP")


def test_ipv6_tcp_checksum_uses_the_upper_layer_length() -> None:
    pkt = _v6_with_ext(HOP_BY_HOP_TO_TCP, 0)
    tcp = pkt[48:]
    assert rfc1071(pseudo6(V6_SRC, V6_DST, len(tcp)) + tcp) == 0


def test_ipv4_mapped_ipv6_addresses() -> None:
    seg = Segment(1, 2, 3, 4, ACK, 5)
    pkt = build_packet("::ffff:10.0.0.1", "::ffff:10.0.0.2", seg)
    p = parse_packet(pkt)
    assert p.version == 6
    assert ipaddress.ip_address(p.src) == ipaddress.ip_address("::ffff:10.0.0.1")


# ---------------------------------------------------------------------------------------------
# tcpdump-style text
# ---------------------------------------------------------------------------------------------

CLIENT_ISN, SERVER_ISN = 0xFFFFFF00, 4000000000


def _handshake_ctx() -> RelativeSeq:
    ctx = RelativeSeq()
    syn = Segment(33706, 80, CLIENT_ISN, None, SYN, 64240, (Mss(1460),))
    format_tcpdump(IPPacket(4, V4_DST, V4_SRC, syn), ctx)
    return ctx


def _line(src: str, dst: str, seg: Segment, ctx: RelativeSeq | None = None) -> str:
    return format_tcpdump(parse_packet(build_packet(src, dst, seg)), ctx)


def test_tcpdump_syn_ack_with_relative_numbers() -> None:
    ctx = _handshake_ctx()
    synack = Segment(80, 33706, SERVER_ISN, seq_add(CLIENT_ISN, 1), SYN | ACK, 65535,
                     (Mss(1460), SackPermitted(), Timestamps(1, 0), Nop(), WindowScale(7)))
    assert _line(V4_SRC, V4_DST, synack, ctx) == (
        "10.0.0.1.80 > 10.0.0.2.33706: Flags [S.], seq 0, ack 1, win 65535, "
        "options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0")


def test_tcpdump_data_ack_fin_rst() -> None:
    ctx = _handshake_ctx()
    server_seq = seq_add(SERVER_ISN, 1)
    synack = Segment(80, 33706, SERVER_ISN, seq_add(CLIENT_ISN, 1), SYN | ACK, 65535)
    _line(V4_SRC, V4_DST, synack, ctx)
    data = Segment(33706, 80, seq_add(CLIENT_ISN, 1), server_seq, PSH | ACK, 502, payload=bytes(100))
    assert _line(V4_DST, V4_SRC, data, ctx) == (
        "10.0.0.2.33706 > 10.0.0.1.80: Flags [P.], seq 1:101, ack 1, win 502, length 100")
    ack = Segment(80, 33706, server_seq, seq_add(CLIENT_ISN, 101), ACK, 509)
    assert _line(V4_SRC, V4_DST, ack, ctx) == (
        "10.0.0.1.80 > 10.0.0.2.33706: Flags [.], ack 101, win 509, length 0")
    fin = Segment(33706, 80, seq_add(CLIENT_ISN, 101), server_seq, FIN | ACK, 502)
    assert _line(V4_DST, V4_SRC, fin, ctx) == (
        "10.0.0.2.33706 > 10.0.0.1.80: Flags [F.], seq 101, ack 1, win 502, length 0")
    rst = Segment(80, 33706, server_seq, None, RST, 0)
    assert _line(V4_SRC, V4_DST, rst, ctx) == (
        "10.0.0.1.80 > 10.0.0.2.33706: Flags [R], seq 1, win 0, length 0")


def test_tcpdump_absolute_numbers_without_context() -> None:
    seg = Segment(80, 33706, TOP, 5, ACK | URG, 1, payload=b"ab", urg=2)
    assert _line(V4_SRC, V4_DST, seg) == (
        "10.0.0.1.80 > 10.0.0.2.33706: Flags [.U], seq 4294967295:1, ack 5, win 1, urg 2, length 2")


def test_tcpdump_ipv6_addresses_and_sack() -> None:
    seg = Segment(443, 50000, 1, 2, ACK, 300, (Nop(), Nop(), Sack(((10, 20), (30, 40)))))
    assert _line("2001:db8::1", "2001:db8:0:0::2", seg) == (
        "2001:db8::1.443 > 2001:db8::2.50000: Flags [.], ack 2, win 300, "
        "options [nop,nop,sack 2 {10:20} {30:40}], length 0")


def test_tcpdump_no_flags_and_unknown_option() -> None:
    seg = Segment(1, 2, 3, None, 0, 4, (UnknownOption(30, b"\xab"), Eol(b"")))
    assert _line(V4_SRC, V4_DST, seg) == (
        "10.0.0.1.1 > 10.0.0.2.2: Flags [none], win 4, options [opt-30:ab,eol], length 0")


# ---------------------------------------------------------------------------------------------
# Property tests: build → parse → build
# ---------------------------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
one_option: st.SearchStrategy[Option] = st.one_of(
    st.just(Nop()),
    st.builds(Mss, u16),
    st.builds(WindowScale, st.integers(0, 255)),
    st.just(SackPermitted()),
    st.builds(Timestamps, u32, u32),
    st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(lambda b: Sack(tuple(b))),
    st.builds(UnknownOption, st.sampled_from(UNKNOWN_KINDS), st.binary(max_size=38)),
)


@st.composite
def option_lists(draw: st.DrawFn) -> tuple[Option, ...]:
    """Valid options that fit in 40 bytes, in the form parse_options gives back: when they do not
    end on a word boundary they end with an EOL and its zero padding (MUST-69)."""
    out: list[Option] = []
    used = 0
    for opt in draw(st.lists(one_option, max_size=10)):
        if used + opt_len(opt) <= 40:
            out.append(opt)
            used += opt_len(opt)
    if used % 4:
        out.append(Eol(bytes(3 - used % 4)))
    elif used <= 36 and draw(st.booleans()):
        out.append(Eol(bytes(3)))
    return tuple(out)


@st.composite
def segments(draw: st.DrawFn, max_payload: int = 2000) -> Segment:
    flags = draw(st.integers(0, 255))
    if draw(st.booleans()):
        flags |= ACK
        ack: int | None = draw(u32)
        raw_ack = 0
    else:
        flags &= ~ACK
        ack = None
        raw_ack = draw(u32)
    return Segment(draw(u16), draw(u16), draw(u32), ack, flags, draw(u16), draw(option_lists()),
                   draw(st.binary(max_size=max_payload)), urg=draw(u16), reserved=draw(st.integers(0, 15)),
                   raw_ack=raw_ack)


@st.composite
def packet_args(draw: st.DrawFn, max_payload: int = 2000) -> tuple[str, str, Segment, dict[str, int | bytes]]:
    seg = draw(segments(max_payload))
    kw: dict[str, int | bytes]
    if draw(st.booleans()):
        src, dst = str(draw(st.ip_addresses(v=4))), str(draw(st.ip_addresses(v=4)))
        kw = {"ttl": draw(st.integers(0, 255)), "tos": draw(st.integers(0, 255)), "ident": draw(u16),
              "frag": draw(st.sampled_from([0, 0x4000, 0x8000, 0xC000])),
              "ip_options": draw(st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n,
                                                                                 max_size=4 * n)))}
    else:
        src, dst = str(draw(st.ip_addresses(v=6))), str(draw(st.ip_addresses(v=6)))
        kw = {"ttl": draw(st.integers(0, 255)), "tos": draw(st.integers(0, 255)),
              "flow": draw(st.integers(0, 0xFFFFF))}
    return src, dst, seg, kw


@fuzz(500)
@given(packet_args())
def test_build_parse_is_identity_and_parse_build_is_byte_exact(
        args: tuple[str, str, Segment, dict[str, int | bytes]]) -> None:
    src, dst, seg, kw = args
    pkt = build_packet(src, dst, seg, **kw)  # type: ignore[arg-type]
    p = parse_packet(pkt)
    assert ipaddress.ip_address(p.src) == ipaddress.ip_address(src)
    assert ipaddress.ip_address(p.dst) == ipaddress.ip_address(dst)
    assert p.version == (6 if ":" in src else 4)
    tcp = pkt[p.header_len:]
    assert p.seg == dataclasses.replace(seg, checksum=wire_checksum(tcp))
    assert rfc1071(pseudo_header(src, dst, len(tcp)) + tcp) == 0
    for name, value in kw.items():
        assert getattr(p, name) == value, name
    assert build_ip_packet(p) == pkt
    bare = build_segment(seg, src, dst)
    assert bare == tcp
    assert parse_segment(bare, src, dst) == p.seg
    assert build_segment(p.seg) == bare


@fuzz(300)
@given(st.lists(one_option, max_size=10))
def test_encoded_options_decode_to_the_same_list(opts: list[Option]) -> None:
    kept: list[Option] = []
    for opt in opts:
        if sum(map(opt_len, kept)) + opt_len(opt) <= 40:
            kept.append(opt)
    raw = encode_options(kept)
    assert len(raw) % 4 == 0 and len(raw) <= 40
    back = parse_options(raw)
    assert back[:len(kept)] == tuple(kept)
    assert all(isinstance(o, Eol) and not any(o.padding) for o in back[len(kept):])
    assert encode_options(back) == raw


# ---------------------------------------------------------------------------------------------
# Fuzzing: random bytes and mutated packets raise WireError or parse consistently
# ---------------------------------------------------------------------------------------------


def _length_fields(pkt: bytes, tcp_at: int) -> list[tuple[int, str]]:
    """The length/offset fields of a packet built by wire.py: (offset, 'u16' | 'u8' | 'hi' | 'lo')."""
    fields = [(tcp_at + 12, "hi")]
    if pkt and pkt[0] >> 4 == 4:
        fields += [(0, "lo"), (2, "u16"), (6, "u16"), (9, "u8")]
    elif pkt:
        fields += [(4, "u16"), (6, "u8")]
        fields += [(off + 1, "u8") for off in range(40, tcp_at, 8)]
    hlen = (pkt[tcp_at + 12] >> 4) * 4
    i = tcp_at + 20
    while i < tcp_at + hlen:
        if pkt[i] == 0:
            break
        if pkt[i] == 1:
            i += 1
            continue
        fields.append((i + 1, "u8"))
        i += pkt[i + 1]
    return fields


def _mutate(rng: random.Random, data: bytes, fields: list[tuple[int, str]]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.randrange(7)
        if op == 0 and b:                                           # flip one to three bits
            for _ in range(rng.randint(1, 3)):
                bit = rng.randrange(len(b) * 8)
                b[bit >> 3] ^= 1 << (bit & 7)
        elif op == 1:                                               # truncate
            del b[rng.randrange(len(b) + 1):]
        elif op == 2:                                               # insert random bytes
            at = rng.randrange(len(b) + 1)
            b[at:at] = rng.randbytes(rng.randint(1, 9))
        elif op == 3:                                               # delete a few bytes
            at = rng.randrange(len(b) + 1)
            del b[at:at + rng.randint(1, 9)]
        elif op in (4, 5) and fields:                               # overwrite a length/offset field
            at, kind = rng.choice(fields)
            special = rng.choice((0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 255, rng.randrange(256)))
            if at + (kind == "u16") >= len(b):
                continue
            if kind == "u16":
                value = rng.choice((0, 1, 19, 20, 39, 40, 0xFFFF, rng.randrange(0x10000),
                                    len(b) + rng.randint(-60, 60)))
                b[at:at + 2] = (value & 0xFFFF).to_bytes(2, "big")
            elif kind == "hi":
                b[at] = (b[at] & 0x0F) | ((special & 0x0F) << 4)
            elif kind == "lo":
                b[at] = (b[at] & 0xF0) | (special & 0x0F)
            else:
                b[at] = special
        elif b:                                                     # overwrite a byte
            b[rng.randrange(len(b))] = rng.choice((0, 1, 2, 4, 5, 8, 0xFF, rng.randrange(256)))
    return bytes(b)


def _fix_up(rng: random.Random, data: bytes, tcp_at: int, src: str, dst: str) -> bytes:
    """Sometimes make a mutant consistent again (IP length, IPv4 header checksum, TCP checksum), so
    that it gets past those checks and into the TCP header and option parsers."""
    b = bytearray(data)
    if len(b) < 40 or rng.random() < 0.5:
        return data
    if b[0] >> 4 == 4 and src.count(".") == 3:
        b[2:4] = (len(b) & 0xFFFF).to_bytes(2, "big")
        if (b[0] & 0x0F) * 4 <= len(b):
            fix_ip4_checksum(b)
    elif b[0] >> 4 == 6:
        b[4:6] = ((len(b) - 40) & 0xFFFF).to_bytes(2, "big")
    if rng.random() < 0.7 and len(b) >= tcp_at + 20:
        b[tcp_at + 16:tcp_at + 18] = b"\0\0"
        b[tcp_at + 16:tcp_at + 18] = tcp_checksum(src, dst, bytes(b[tcp_at:])).to_bytes(2, "big")
    return bytes(b)


def _parse_or_wire_error(data: bytes) -> int:
    """Parse ``data`` with and without checksum checks; anything but WireError fails the test.
    An accepted packet must rebuild into one that parses back to the same values."""
    accepted = 0
    for verify in (True, False):
        try:
            p = parse_packet(data, verify=verify)
        except WireError:
            continue
        accepted += 1
        again = parse_packet(build_ip_packet(p))
        assert dataclasses.replace(again, ip_checksum=p.ip_checksum,
                                   seg=dataclasses.replace(again.seg, checksum=p.seg.checksum)) == p
    return accepted


def _parse_segment_or_wire_error(data: bytes, src: str, dst: str) -> None:
    try:
        seg = parse_segment(data)
    except WireError:
        return
    assert build_segment(seg) == data                           # any accepted bare header is byte-exact
    try:
        parse_segment(data, src, dst)
    except WireError as e:
        assert "checksum" in e.reason and e.offset == 16


IP_EXAMPLES, IP_MUTATIONS = 400, 250
TCP_EXAMPLES, TCP_MUTATIONS = 300, 200
RANDOM_EXAMPLES, RANDOM_PER_EXAMPLE = 500, 60


def test_mutated_ip_packets_raise_only_wire_error() -> None:
    count = 0
    accepted = 0

    @fuzz(IP_EXAMPLES)
    @given(packet_args(max_payload=300), st.booleans(), st.integers(0, 2**64 - 1))
    def run(args: tuple[str, str, Segment, dict[str, int | bytes]], ext: bool, seed: int) -> None:
        nonlocal count, accepted
        src, dst, seg, kw = args
        if ext and ":" in src:
            ext_headers = HOP_BY_HOP_TO_DSTOPTS + DSTOPTS_TO_TCP
            pkt = build_ip_packet(IPPacket(6, src, dst, seg, ext_headers=ext_headers, ext_first=0))
        else:
            pkt = build_packet(src, dst, seg, **kw)  # type: ignore[arg-type]
        tcp_at = parse_packet(pkt).header_len
        fields = _length_fields(pkt, tcp_at)
        rng = random.Random(seed)
        for _ in range(IP_MUTATIONS):
            accepted += _parse_or_wire_error(_fix_up(rng, _mutate(rng, pkt, fields), tcp_at, src, dst))
            count += 1

    run()
    assert count >= IP_EXAMPLES * IP_MUTATIONS
    assert accepted > count // 10            # the mutants do reach the TCP and option parsers


def test_mutated_bare_tcp_headers_raise_only_wire_error() -> None:
    count = 0

    @fuzz(TCP_EXAMPLES)
    @given(segments(max_payload=100), st.booleans(), st.integers(0, 2**64 - 1))
    def run(seg: Segment, v6: bool, seed: int) -> None:
        nonlocal count
        src, dst = (V6_SRC, V6_DST) if v6 else (V4_SRC, V4_DST)
        tcp = build_segment(seg, src, dst)
        fields = [f for f in _length_fields(b"\x00" + tcp, 1) if f[0] > 0]
        fields = [(at - 1, kind) for at, kind in fields]
        rng = random.Random(seed)
        for _ in range(TCP_MUTATIONS):
            _parse_segment_or_wire_error(_mutate(rng, tcp, fields), src, dst)
            count += 1

    run()
    assert count >= TCP_EXAMPLES * TCP_MUTATIONS


def test_random_bytes_raise_only_wire_error() -> None:
    count = 0

    @fuzz(RANDOM_EXAMPLES)
    @given(st.binary(max_size=120), st.integers(0, 2**64 - 1))
    def run(data: bytes, seed: int) -> None:
        nonlocal count
        rng = random.Random(seed)
        inputs = [data]
        for _ in range(RANDOM_PER_EXAMPLE - 1):
            mutable = bytearray(rng.randbytes(rng.choice((rng.randrange(20), rng.randrange(120),
                                                      rng.randrange(400)))))
            if mutable and rng.random() < 0.8:                       # mostly make it look like IPv4 or IPv6
                mutable[0] = rng.choice((0x45, 0x46, 0x4F, 0x60, rng.randrange(256)))
                if len(mutable) > 9:
                    if mutable[0] >> 4 == 4:
                        mutable[2:4] = len(mutable).to_bytes(2, "big")
                        mutable[9] = 6
                    else:
                        mutable[4:6] = max(0, len(mutable) - 40).to_bytes(2, "big")
                        mutable[6] = rng.choice((6, 0, 60, 43, 44))
            inputs.append(bytes(mutable))
        for buf in inputs:
            _parse_or_wire_error(buf)
            _parse_segment_or_wire_error(buf, V4_SRC, V4_DST)
            try:
                opts = parse_options(buf[:40])
            except WireError:
                pass
            else:
                raw = buf[:40]
                assert encode_options(opts) == raw + bytes(-len(raw) % 4)
            count += 1

    run()
    assert count >= RANDOM_EXAMPLES * RANDOM_PER_EXAMPLE


def test_format_tcpdump_of_a_bare_header_prints_ports_only() -> None:
    """A TCP header with no IP header around it (as `synack decode` meets them): ports only."""
    seg = Segment(33706, 80, 865482658, None, SYN, 5840, (Mss(1460),))
    line = format_tcpdump(IPPacket(4, "", "", seg))
    assert line == "33706 > 80: Flags [S], seq 865482658, win 5840, options [mss 1460], length 0"


# =============================================================================================
# Segment acceptability (RFC 9293 §3.10.7.4, Table 6), on its own
# =============================================================================================

@pytest.mark.parametrize("rcv_nxt", [1000, 0xFFFFFF00])  # and across the wrap of 2**32
@pytest.mark.parametrize("seg_len,rcv_wnd,offset,want", [
    # SEG.LEN 0, RCV.WND 0: SEG.SEQ = RCV.NXT
    (0, 0, 0, True), (0, 0, 1, False), (0, 0, -1, False),
    # SEG.LEN 0, RCV.WND > 0: RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND
    (0, 100, 0, True), (0, 100, 99, True), (0, 100, -1, False), (0, 100, 101, False),
    # SEG.LEN > 0, RCV.WND 0: not acceptable
    (1, 0, 0, False), (10, 0, -5, False),
    # SEG.LEN > 0, RCV.WND > 0: the first or the last octet inside the window
    (10, 100, 0, True), (10, 100, 99, True), (10, 100, 100, False),
    (10, 100, -9, True),  # the last octet (RCV.NXT) is inside
    (10, 100, -10, False),  # entirely before RCV.NXT
    # Table 6 tests only the first and the last octet: a segment from before the window to after
    # it has neither inside and is not acceptable by the letter of the table.
    (300, 100, -100, False),
])
def test_table_6_acceptability(rcv_nxt: int, seg_len: int, rcv_wnd: int, offset: int, want: bool) -> None:
    seq = (rcv_nxt + offset) & 0xFFFFFFFF
    assert segment_acceptable(seq, seg_len, rcv_nxt, rcv_wnd) is want


@pytest.mark.parametrize("rcv_nxt", [1000, 0xFFFFFFF0])
def test_empty_segment_at_the_right_edge_is_acceptable_but_not_a_rst(rcv_nxt: int) -> None:
    """RFC 9293 Appendix A.2 (the "ACK war"): an empty segment at exactly RCV.NXT+RCV.WND is
    accepted; a RST there stays unacceptable (RFC 5961 §3.2)."""
    edge = (rcv_nxt + 100) & 0xFFFFFFFF
    assert segment_acceptable(edge, 0, rcv_nxt, 100)
    assert not segment_acceptable(edge, 0, rcv_nxt, 100, rst=True)
    assert not segment_acceptable((edge + 1) & 0xFFFFFFFF, 0, rcv_nxt, 100)
    assert not segment_acceptable(edge, 1, rcv_nxt, 100)  # with text it is outside


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 3000), st.integers(0, 0xFFFF), st.integers(-5000, 5000))
def test_acceptability_matches_table_6_written_with_plain_integers(rcv_nxt: int, seg_len: int, rcv_wnd: int,
                                                                  offset: int) -> None:
    """The same test with the window unrolled to plain integers (no modular arithmetic), for any
    RCV.NXT: the wrap-around of 2**32 makes no difference."""
    seq = (rcv_nxt + offset) & 0xFFFFFFFF
    first, last = offset, offset + seg_len - 1

    def inside(x: int) -> bool:
        return 0 <= x < rcv_wnd

    if seg_len == 0:
        want = offset == 0 if rcv_wnd == 0 else (inside(first) or offset == rcv_wnd)
    else:
        want = rcv_wnd > 0 and (inside(first) or inside(last))
    assert segment_acceptable(seq, seg_len, rcv_nxt, rcv_wnd) is want


# ---------------------------------------------------------------------------------------------
# Headers for a device that completes the TCP checksum (checksum offload)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("src,dst", [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")])
@pytest.mark.parametrize("n", [0, 1, 1447, 1448, 60_001])
def test_partial_headers_completed_are_build_packets_headers(src: str, dst: str, n: int) -> None:
    """What the device does with the partial checksum: add the ones'-complement sum from the TCP
    header on, store the complement. The result is build_packet's packet, octet for octet."""
    rng = random.Random(n)
    payload = rng.randbytes(n)
    for seg in (Segment(1234, 80, 7, 9, ACK | PSH, 501, (Nop(), Nop(), Timestamps(5, 6)), payload),
                Segment(1, 2, 0xFFFFFFFF, None, SYN, 0, (Mss(1460),), payload, urg=3)):
        hdr = build_headers_partial(src, dst, seg, n, ttl=33, tos=8)
        want = build_packet(src, dst, seg, ttl=33, tos=8)
        assert len(hdr) + n == len(want)
        ihl = 20 if ":" not in src else 40
        at = ihl + 16
        partial = int.from_bytes(hdr[at:at + 2], "big")
        rest = hdr[ihl:at] + b"\0\0" + hdr[at + 2:] + payload
        r = (partial + int.from_bytes(rest + b"\0" * (len(rest) & 1), "big")) % 0xFFFF
        csum = 0xFFFF - r if r else 0  # the sum is never zero: the header is not
        assert hdr[:at] + csum.to_bytes(2, "big") + hdr[at + 2:] + payload == want


def test_partial_headers_refuse_what_no_ip_length_field_holds() -> None:
    seg = Segment(1, 2, 3, 4, ACK, 5)
    with pytest.raises(ValueError, match="too large"):
        build_headers_partial("10.0.0.1", "10.0.0.2", seg, 65535 - 40 + 1)
    assert len(build_headers_partial("10.0.0.1", "10.0.0.2", seg, 65535 - 40)) == 40
