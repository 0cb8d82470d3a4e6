"""The exact bytes of TCP segments inside IPv4 and IPv6 packets.

Pure functions and small value types, no I/O:

* sequence-number arithmetic modulo 2**32 (RFC 9293 §3.4);
* the TCP header (RFC 9293 §3.1, Figure 1) with every flag kept raw, and the options of
  RFC 9293 §3.2 (EOL, NOP, MSS), RFC 7323 (window scale, timestamps) and RFC 2018 (SACK);
  unknown options are preserved by kind and bytes (MUST-6);
* IPv4 (RFC 791) and IPv6 (RFC 8200) headers and the TCP checksum over the pseudo-header
  (RFC 9293 §3.1, MUST-2/MUST-3);
* the text forms every printer shares: control bits and options in each style in use
  (:func:`format_flags`, :func:`format_option`), relative sequence numbers
  (:class:`RelativeSeq`), and a one-line form in the style of tcpdump.

Every malformed input raises :class:`WireError`, whose message says what is wrong and at which
byte offset; no ``IndexError`` or ``struct.error`` escapes from a parser.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, Literal, TypeVar

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "NEAR_ISN",
    "PSH",
    "RST",
    "SEQ_MOD",
    "SYN",
    "URG",
    "Direction",
    "Eol",
    "FlagStyle",
    "IPPacket",
    "IcmpError",
    "Mss",
    "Nop",
    "Option",
    "OptionStyle",
    "RelativeSeq",
    "Sack",
    "SackPermitted",
    "Segment",
    "Timestamps",
    "UnknownOption",
    "WindowScale",
    "WireError",
    "address_text",
    "build_headers_partial",
    "build_icmp_error",
    "build_ip_packet",
    "build_packet",
    "build_segment",
    "direction_of",
    "encode_options",
    "flag_names",
    "format_flags",
    "format_option",
    "format_segment",
    "format_tcpdump",
    "internet_checksum",
    "is_icmp",
    "pack_address",
    "parse_icmp_error",
    "parse_options",
    "parse_packet",
    "parse_segment",
    "pseudo_header",
    "segment_acceptable",
    "seq_add",
    "seq_diff",
    "seq_ge",
    "seq_gt",
    "seq_in_window",
    "seq_le",
    "seq_lt",
    "seq_max",
    "shared_int",
    "tcp_checksum",
    "tcpdump_flags",
]

# ---------------------------------------------------------------------------------------------
# Sequence numbers (RFC 9293 §3.4): all arithmetic is modulo 2**32.
# ---------------------------------------------------------------------------------------------

SEQ_MOD: Final = 1 << 32
_SEQ_MASK: Final = SEQ_MOD - 1
_HALF: Final = 1 << 31


def seq_add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32."""
    return (a + n) & _SEQ_MASK


_SHARED_INTS: dict[int, int] = {}


def shared_int(n: int) -> int:
    """One object for each value of a size (an MSS, an initial window) that every connection
    stores: CPython allocates each int above 256 separately, 32 octets a connection a field.
    At most 4,096 values are kept; past that ``n`` itself is returned."""
    got = _SHARED_INTS.get(n)
    if got is not None:
        return got
    if len(_SHARED_INTS) < 4096:
        _SHARED_INTS[n] = n
    return n


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` in the range [-2**31, 2**31)."""
    return ((a - b + _HALF) & _SEQ_MASK) - _HALF


def seq_lt(a: int, b: int) -> bool:
    """``a < b`` in sequence space (RFC 9293 §3.4: "=<" means less than or equal, modulo 2**32)."""
    return ((a - b) & _SEQ_MASK) >= _HALF


def seq_le(a: int, b: int) -> bool:
    return a == b or ((a - b) & _SEQ_MASK) >= _HALF


def seq_gt(a: int, b: int) -> bool:
    return ((b - a) & _SEQ_MASK) >= _HALF


def seq_ge(a: int, b: int) -> bool:
    return a == b or ((b - a) & _SEQ_MASK) >= _HALF


def seq_max(a: int, b: int) -> int:
    return b if seq_lt(a, b) else a


def seq_in_window(x: int, start: int, size: int) -> bool:
    """``start =< x < start + size`` in sequence space (a window of ``size`` octets)."""
    return ((x - start) & _SEQ_MASK) < size


def segment_acceptable(seg_seq: int, seg_len: int, rcv_nxt: int, rcv_wnd: int, *, rst: bool = False) -> bool:
    """RFC 9293 §3.10.7.4 Table 6, the segment acceptability test:

    ======  ======  ================================================================
    SEG.LEN RCV.WND test
    ======  ======  ================================================================
    0       0       SEG.SEQ = RCV.NXT
    0       >0      RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND
    >0      0       not acceptable
    >0      >0      RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND
                    or RCV.NXT =< SEG.SEQ+SEG.LEN-1 < RCV.NXT+RCV.WND
    ======  ======  ================================================================

    One widening, for the problem RFC 9293 Appendix A.2 describes: an empty segment whose
    SEG.SEQ is exactly RCV.NXT+RCV.WND is acceptable. A peer that has filled our window sends
    its ACKs with SEG.SEQ = its SND.NXT = our right edge; by the letter of the table each of them
    is unacceptable and draws an ACK, and when both ends sit at each other's right edge those
    ACKs answer each other once per round trip (an "ACK war"). Linux accepts them the same way.
    Not for a RST (``rst``): RFC 5961 §3.2 drops a RST outside the window silently."""
    if seg_len == 0:
        if rcv_wnd == 0:
            return seg_seq == rcv_nxt
        off = (seg_seq - rcv_nxt) & _SEQ_MASK
        return off < rcv_wnd or (off == rcv_wnd and not rst)
    if rcv_wnd == 0:
        return False
    return seq_in_window(seg_seq, rcv_nxt, rcv_wnd) or seq_in_window(seg_seq + seg_len - 1, rcv_nxt, rcv_wnd)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class WireError(ValueError):
    """A packet or header that cannot be parsed. ``offset`` is the byte where the problem is;
    ``checksum`` is True when the only fault is a checksum that does not match (MUST-3)."""

    def __init__(self, message: str, offset: int, *, checksum: bool = False) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.reason = message
        self.offset = offset
        self.checksum = checksum


# ---------------------------------------------------------------------------------------------
# Flags (RFC 9293 §3.1 "Control bits", RFC 3168 for ECE/CWR)
# ---------------------------------------------------------------------------------------------

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80

# Each style of control-bit text is one table: the bits it shows, in the order it shows them.
_FLAG_STYLES: Final[dict[str, tuple[tuple[int, str], ...]]] = {
    # Display order used by people (and by ``Segment.ctl``): SYN first, then FIN, RST, PSH, ACK ...
    "names": ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"),
              (ACK, "ACK"), (URG, "URG"), (ECE, "ECE"), (CWR, "CWR")),
    # The <CTL=...> field of RFC 9293 §3.5's figures (RFC 793 §3.4): the five bits connection
    # management talks about, in the figures' order (``<CTL=SYN,ACK>``, ``<CTL=RST,ACK>``).
    "figure": ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (URG, "URG"), (ACK, "ACK")),
    # tcpdump prints one letter per bit, in bit order: F S R P . U E W
    "tcpdump": ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"),
                (ACK, "."), (URG, "U"), (ECE, "E"), (CWR, "W")),
}
FlagStyle = Literal["names", "figure", "tcpdump"]


def format_flags(flags: int, style: FlagStyle = "names", *, sep: str = ",") -> str:
    """The control bits of a segment (RFC 9293 §3.1, RFC 3168 for ECE/CWR) as text, in one of
    three styles; no bit shown gives ``""``:

    * ``"names"``: every bit by name in display order, ``0x12`` → ``SYN,ACK``, ``0xFF`` →
      ``SYN,FIN,RST,PSH,ACK,URG,ECE,CWR`` (``sep`` joins them);
    * ``"figure"``: the ``<CTL=...>`` field of the RFC's sequence figures — only SYN, FIN, RST, URG
      and ACK, in that order (PSH and the ECN bits are not part of connection management);
    * ``"tcpdump"``: tcpdump's letters, ``0x12`` → ``S.`` (``sep`` is not used)."""
    table = _FLAG_STYLES[style]
    if style == "tcpdump":
        sep = ""
    return sep.join(name for bit, name in table if flags & bit)


def flag_names(flags: int) -> list[str]:
    """``0x12`` → ``["SYN", "ACK"]``: the names of :func:`format_flags`'s ``"names"`` style, as a
    list."""
    return [name for bit, name in _FLAG_STYLES["names"] if flags & bit]


def tcpdump_flags(flags: int) -> str:
    """``0x12`` → ``"S."`` as tcpdump prints it; no flag at all → ``"none"``."""
    return format_flags(flags, "tcpdump") or "none"


# ---------------------------------------------------------------------------------------------
# Options (RFC 9293 §3.2, RFC 7323, RFC 2018)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Eol:
    """End of Option List (kind 0). ``padding`` holds the bytes that followed it (MUST-69: zeros)."""

    padding: bytes = b""


@dataclass(frozen=True, slots=True)
class Nop:
    """No-Operation (kind 1)."""


@dataclass(frozen=True, slots=True)
class Mss:
    """Maximum Segment Size (kind 2, length 4), RFC 9293 §3.2 / §3.7.1."""

    value: int


@dataclass(frozen=True, slots=True)
class WindowScale:
    """Window scale (kind 3, length 3), RFC 7323 §2. ``shift`` is kept raw (may exceed 14)."""

    shift: int


@dataclass(frozen=True, slots=True)
class SackPermitted:
    """SACK-permitted (kind 4, length 2), RFC 2018 §2."""


@dataclass(frozen=True, slots=True)
class Sack:
    """SACK blocks (kind 5), RFC 2018 §3: ``((left, right), ...)``, right edge exclusive."""

    blocks: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Timestamps:
    """Timestamps (kind 8, length 10), RFC 7323 §3."""

    tsval: int
    tsecr: int


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """Any other option, kept as kind and raw data (MUST-6: ignored without error)."""

    kind: int
    data: bytes


Option = Eol | Nop | Mss | WindowScale | SackPermitted | Sack | Timestamps | UnknownOption
_O = TypeVar("_O", Eol, Nop, Mss, WindowScale, SackPermitted, Sack, Timestamps, UnknownOption)

_H: Final = struct.Struct("!H")
_I: Final = struct.Struct("!I")
_II: Final = struct.Struct("!II")
_TS_FAST: Final = b"\x01\x01\x08\x0a"
_FIXED_LEN: Final = {2: 4, 3: 3, 4: 2, 8: 10}
_OPTION_NAMES: Final = {0: "EOL", 1: "NOP", 2: "MSS", 3: "window scale", 4: "SACK permitted", 5: "SACK",
                        8: "timestamps"}


def parse_options(data: bytes | memoryview, base: int = 20) -> tuple[Option, ...]:
    """Parse the option bytes of a TCP header. ``base`` is the offset of ``data`` in the header.

    Options may begin on any byte boundary (MUST-64); an illegal length raises WireError (MUST-7:
    the caller drops the segment and counts it).
    """
    if len(data) == 12 and data[:4] == _TS_FAST:  # the common NOP,NOP,TS layout
        tsval, tsecr = _II.unpack_from(data, 4)
        return (_NOP, _NOP, Timestamps(tsval, tsecr))
    opts: list[Option] = []
    i = 0
    n = len(data)
    while i < n:
        kind = data[i]
        if kind == 0:
            opts.append(Eol(bytes(data[i + 1:])))
            break
        if kind == 1:
            opts.append(_NOP)
            i += 1
            continue
        if i + 1 >= n:
            raise WireError(f"option kind {kind} has no length byte", base + i)
        length = data[i + 1]
        if length < 2:
            raise WireError(f"option kind {kind} has illegal length {length}", base + i + 1)
        if i + length > n:
            raise WireError(f"option kind {kind} of length {length} runs past the header", base + i + 1)
        want = _FIXED_LEN.get(kind)
        if want is not None and length != want:
            raise WireError(
                f"{_OPTION_NAMES[kind]} option (kind {kind}) must have length {want}, not {length}",
                base + i + 1,
            )
        if kind == 2:
            opts.append(Mss(_H.unpack_from(data, i + 2)[0]))
        elif kind == 3:
            opts.append(WindowScale(data[i + 2]))
        elif kind == 4:
            opts.append(_SACK_PERMITTED)
        elif kind == 8:
            tsval, tsecr = _II.unpack_from(data, i + 2)
            opts.append(Timestamps(tsval, tsecr))
        elif kind == 5:
            if (length - 2) % 8:
                raise WireError(f"SACK option length {length} is not 2 + 8*n", base + i + 1)
            blocks = tuple(_II.unpack_from(data, j) for j in range(i + 2, i + length, 8))
            opts.append(Sack(blocks))
        else:
            opts.append(UnknownOption(kind, bytes(data[i + 2:i + length])))
        i += length
    return tuple(opts)


_NOP: Final = Nop()
_SACK_PERMITTED: Final = SackPermitted()


def encode_options(options: Iterable[Option]) -> bytes:
    """Option bytes, padded with zeros to a multiple of 4 (MUST-69)."""
    if type(options) is tuple and len(options) == 3:
        a, b, ts = options
        if type(ts) is Timestamps and type(a) is Nop and type(b) is Nop:  # the common NOP,NOP,TS
            return _TS_FAST + _II.pack(ts.tsval & _SEQ_MASK, ts.tsecr & _SEQ_MASK)
    out = bytearray()
    for opt in options:
        if isinstance(opt, Nop):
            out.append(1)
        elif isinstance(opt, Timestamps):
            out += b"\x08\x0a"
            out += _II.pack(opt.tsval & _SEQ_MASK, opt.tsecr & _SEQ_MASK)
        elif isinstance(opt, Mss):
            out += b"\x02\x04"
            out += _H.pack(opt.value & 0xFFFF)
        elif isinstance(opt, WindowScale):
            out += bytes((3, 3, opt.shift & 0xFF))
        elif isinstance(opt, SackPermitted):
            out += b"\x04\x02"
        elif isinstance(opt, Sack):
            out += bytes((5, 2 + 8 * len(opt.blocks)))
            for left, right in opt.blocks:
                out += _II.pack(left & _SEQ_MASK, right & _SEQ_MASK)
        elif isinstance(opt, Eol):
            out.append(0)
            out += opt.padding
        else:
            if len(opt.data) > 253:
                raise ValueError(f"option kind {opt.kind} data too long ({len(opt.data)} bytes)")
            out += bytes((opt.kind & 0xFF, 2 + len(opt.data)))
            out += opt.data
    pad = -len(out) % 4
    if pad:
        out += bytes(pad)
    if len(out) > 40:
        raise ValueError(f"options take {len(out)} bytes; a TCP header has room for 40")
    return bytes(out)


OptionStyle = Literal["long", "tcpdump", "short"]


def format_option(opt: Option, style: OptionStyle = "long") -> str:
    """One option (RFC 9293 §3.2, RFC 7323, RFC 2018) as text, in one of three styles — the one
    formatter of options for every printer:

    * ``"long"`` (``synack decode``, the HTML detail panel): ``MSS 1460``, ``window scale 7
      (multiply by 128)``, ``SACK permitted``, ``SACK 1-2 5-9``, ``timestamps val=1 ecr=0``,
      ``NOP``, ``EOL (end of option list)`` (``, then 3 bytes of padding`` when padding followed
      it), ``unknown option kind 30 (4 bytes: abcd)``;
    * ``"tcpdump"`` (:func:`format_tcpdump`): ``mss 1460``, ``wscale 7``, ``sackOK``,
      ``sack 2 {1:2} {5:9}``, ``TS val 1 ecr 0``, ``nop``, ``eol``, ``opt-30:abcd``;
    * ``"short"`` (a table cell): ``mss 1460``, ``wscale 7``, ``sackOK``, ``sack 1-2 5-9``, ``TS``,
      ``""`` for a NOP (a table leaves it out), ``eol``, ``opt-30``."""
    if style == "tcpdump":
        return _tcpdump_option_text(opt)
    if style == "short":
        return _short_option_text(opt)
    return _long_option_text(opt)


def _long_option_text(opt: Option) -> str:
    if isinstance(opt, Mss):
        return f"MSS {opt.value}"
    if isinstance(opt, WindowScale):
        return f"window scale {opt.shift} (multiply by {1 << min(opt.shift, 30)})"
    if isinstance(opt, SackPermitted):
        return "SACK permitted"
    if isinstance(opt, Sack):
        return "SACK " + " ".join(f"{left}-{right}" for left, right in opt.blocks)
    if isinstance(opt, Timestamps):
        return f"timestamps val={opt.tsval} ecr={opt.tsecr}"
    if isinstance(opt, Nop):
        return "NOP"
    if isinstance(opt, Eol):
        padding = f", then {len(opt.padding)} bytes of padding" if opt.padding else ""
        return "EOL (end of option list)" + padding
    return f"unknown option kind {opt.kind} ({len(opt.data) + 2} bytes: {opt.data.hex()})"


def _tcpdump_option_text(opt: Option) -> str:
    if isinstance(opt, Sack):
        return f"sack {len(opt.blocks)} " + " ".join(f"{{{left}:{right}}}" for left, right in opt.blocks)
    if isinstance(opt, Timestamps):
        return f"TS val {opt.tsval} ecr {opt.tsecr}"
    if isinstance(opt, Nop):
        return "nop"
    if isinstance(opt, UnknownOption) and opt.data:
        return f"opt-{opt.kind}:{opt.data.hex()}"
    return _short_option_text(opt)


def _short_option_text(opt: Option) -> str:
    if isinstance(opt, Mss):
        return f"mss {opt.value}"
    if isinstance(opt, WindowScale):
        return f"wscale {opt.shift}"
    if isinstance(opt, SackPermitted):
        return "sackOK"
    if isinstance(opt, Sack):
        return "sack " + " ".join(f"{left}-{right}" for left, right in opt.blocks)
    if isinstance(opt, Timestamps):
        return "TS"
    if isinstance(opt, Nop):
        return ""
    if isinstance(opt, Eol):
        return "eol"
    return f"opt-{opt.kind}"


# ---------------------------------------------------------------------------------------------
# The TCP segment (RFC 9293 §3.1)
# ---------------------------------------------------------------------------------------------

_TCP_HDR: Final = struct.Struct("!HHIIBBHHH")


@dataclass(slots=True)
class Segment:
    """One TCP segment. Fields as in RFC 9293 Figure 1.

    ``ack`` is ``None`` when the ACK bit is off (the raw field is then kept in ``raw_ack`` so that
    parse→build is byte-exact); ``flags`` is the raw control byte, so any combination can be made.
    ``checksum`` is what was on the wire (``None`` for a segment built here: computed on build).
    ``reserved`` is the 4 bits between data offset and flags (RFC 9293: must be zero).
    """

    src_port: int
    dst_port: int
    seq: int
    ack: int | None
    flags: int
    window: int
    options: tuple[Option, ...] = ()
    payload: bytes = b""
    urg: int = 0
    checksum: int | None = None
    reserved: int = 0
    raw_ack: int = 0

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload octets plus one for SYN and one for FIN (RFC 9293 §3.4)."""
        return len(self.payload) + (self.flags & SYN and 1) + (self.flags & FIN and 1)

    @property
    def header_len(self) -> int:
        return 20 + len(encode_options(self.options))

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    def option(self, kind: type[_O]) -> _O | None:
        """The first option of the given class, or None."""
        for opt in self.options:
            if isinstance(opt, kind):
                return opt
        return None

    def ctl(self) -> str:
        """``SYN,ACK`` — the control bits by name (:func:`format_flags`, ``"names"`` style)."""
        return format_flags(self.flags)


def _fold(total: int) -> int:
    """Ones'-complement checksum from the big-integer sum of 16-bit-aligned pieces."""
    r = total % 0xFFFF
    return 0xFFFF - r if r else (0x0000 if total else 0xFFFF)


def _be(data: bytes | memoryview) -> int:
    """A number ≡ the sum of the 16-bit big-endian words of ``data`` (mod 0xFFFF), an odd last
    byte padded with a zero on its right; it is 0 only when ``data`` is all zeros.

    RFC 1071 ones'-complement trick: 2**16 ≡ 1 mod 0xFFFF, so the word sum ≡ the big-endian
    integer of the whole buffer. The caller's ``% 0xFFFF`` costs one machine division per 30-bit
    digit, more than ``int.from_bytes`` itself, so longer buffers are cut into even-length pieces
    whose integers are added first: the division then runs over one piece, not the whole buffer.
    The pieces are read little-endian, which needs no padding: 256 × (little-endian word) ≡
    (big-endian word) mod 0xFFFF.
    """
    n = len(data)
    if n <= 256:
        v = int.from_bytes(data, "big")
        return v << 8 if n & 1 else v
    if n <= 8192:
        half = ((n + 3) >> 2) << 1
        return (int.from_bytes(data[:half], "little") + int.from_bytes(data[half:], "little")) << 8
    mv = memoryview(data)
    return sum([int.from_bytes(mv[i:i + 4096], "little") for i in range(0, n, 4096)]) << 8


def internet_checksum(data: bytes) -> int:
    """The RFC 1071 Internet checksum of ``data``."""
    return _fold(_be(data))


def pseudo_header(src: str, dst: str, tcp_length: int) -> bytes:
    """The pseudo-header of RFC 9293 §3.1 (IPv4) or RFC 8200 §8.1 (IPv6)."""
    if ":" in src:
        return pack_address(src) + pack_address(dst) + \
            struct.pack("!I3xB", tcp_length, 6)
    return pack_address(src) + pack_address(dst) + struct.pack("!xBH", 6, tcp_length)


def tcp_checksum(src: str, dst: str, tcp_bytes: bytes) -> int:
    """The TCP checksum of ``tcp_bytes`` (checksum field zeroed) between ``src`` and ``dst``."""
    return _fold(_be(pseudo_header(src, dst, len(tcp_bytes))) + _be(tcp_bytes))


def _tcp_header(seg: Segment) -> bytes:
    """The header and options of ``seg`` with a zero checksum field."""
    opts = encode_options(seg.options) if seg.options else b""
    offset = (20 + len(opts)) >> 2
    ack = seg.ack if seg.ack is not None else seg.raw_ack
    try:
        return _TCP_HDR.pack(
            seg.src_port, seg.dst_port, seg.seq & _SEQ_MASK, ack & _SEQ_MASK,
            (offset << 4) | (seg.reserved & 0x0F), seg.flags & 0xFF, seg.window, 0, seg.urg,
        ) + opts
    except struct.error:
        raise ValueError(
            f"segment field out of range: ports {seg.src_port}/{seg.dst_port}, window {seg.window} and "
            f"urgent pointer {seg.urg} must each fit in 16 bits") from None


def build_segment(seg: Segment, src: str | None = None, dst: str | None = None) -> bytes:
    """The bytes of ``seg``. With ``src``/``dst`` the checksum is computed over the pseudo-header
    (MUST-2); without them ``seg.checksum`` (or 0) is written as is."""
    hdr = _tcp_header(seg)
    payload = seg.payload
    if src is None or dst is None:
        csum = seg.checksum or 0
    else:
        pseudo = pseudo_header(src, dst, len(hdr) + len(payload))
        csum = _fold(_be(pseudo) + int.from_bytes(hdr, "big") + _be(payload))
    return b"".join((hdr[:16], _H.pack(csum), hdr[18:], payload))


def parse_segment(
    data: bytes, src: str | None = None, dst: str | None = None, *, base: int = 0,
) -> Segment:
    """Parse a TCP segment. With ``src``/``dst`` the checksum is verified (MUST-3) and a bad one
    raises WireError. ``base`` is the offset of ``data`` within a larger packet (for messages)."""
    return _parse_tcp(data, src, dst, base, None)


def _parse_tcp(data: bytes | memoryview, src: str | None, dst: str | None, base: int,
               pseudo: int | None) -> Segment:
    """parse_segment; ``pseudo``, when given, is ``_be`` of the pseudo-header (parse_packet has it
    from the address bytes, without a round trip through text)."""
    n = len(data)
    if n < 20:
        raise WireError(f"TCP header truncated: {n} bytes, need at least 20", base + n)
    sport, dport, seq, ack, off_res, flags, window, csum, urg = _TCP_HDR.unpack_from(data)
    hlen = (off_res >> 4) * 4
    if hlen < 20:
        raise WireError(f"TCP data offset {off_res >> 4} is below the minimum of 5", base + 12)
    if hlen > n:
        raise WireError(f"TCP data offset {off_res >> 4} ({hlen} bytes) runs past the {n}-byte segment",
                        base + 12)
    if src is not None and dst is not None:
        if pseudo is None:
            pseudo = _be(pseudo_header(src, dst, n))
        if (pseudo + _be(data)) % 0xFFFF:
            want = tcp_checksum(src, dst, bytes(data[:16]) + b"\0\0" + bytes(data[18:]))
            raise WireError(f"bad TCP checksum 0x{csum:04x}, expected 0x{want:04x}", base + 16, checksum=True)
    options = parse_options(data[20:hlen], base + 20) if hlen > 20 else ()
    has_ack = flags & ACK
    return Segment(
        sport, dport, seq, ack if has_ack else None, flags, window, options,
        bytes(data[hlen:]), urg, csum, off_res & 0x0F, 0 if has_ack else ack,
    )


# ---------------------------------------------------------------------------------------------
# IP packets
# ---------------------------------------------------------------------------------------------

_IP4: Final = struct.Struct("!BBHHHBBH4s4s")
_IP6: Final = struct.Struct("!IHBB16s16s")
_PSEUDO4: Final = struct.Struct("!4s4sxBH")  # the pseudo-headers of pseudo_header()
_PSEUDO6: Final = struct.Struct("!16s16sI3xB")
_IPV6_SKIPPABLE: Final = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options


@lru_cache(maxsize=4096)
def pack_address(addr: str) -> bytes:
    """The 4 or 16 bytes of an IPv4 or IPv6 address in text form (ValueError if it is none).

    A bounded memo of a pure function: a host meets few addresses, and a hit costs less than
    converting (it holds no state that one host could see of another)."""
    return ipaddress.ip_address(addr).packed


@lru_cache(maxsize=4096)
def address_text(packed: bytes) -> str:
    """The normal text form of a 4- or 16-byte address (RFC 5952 for IPv6), as
    :func:`pack_address` reads it."""
    return str(ipaddress.ip_address(packed))


@dataclass(slots=True)
class IPPacket:
    """An IPv4 or IPv6 packet carrying one TCP segment.

    IPv4 fields: ``tos``, ``ident``, ``frag`` (flags+offset, 0x4000 = DF), ``ttl``, ``ip_options``;
    IPv6: ``tos`` is the traffic class, ``flow`` the flow label, ``ttl`` the hop limit and
    ``ext_headers`` the raw extension headers (their first next-header in ``ext_first``).
    ``ip_checksum`` is the IPv4 header checksum seen on the wire (None when built here).
    """

    version: int
    src: str
    dst: str
    seg: Segment
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    frag: int = 0x4000
    flow: int = 0
    ip_options: bytes = b""
    ext_headers: bytes = b""
    ext_first: int = 6
    ip_checksum: int | None = None
    header_len: int = field(default=0)


def build_packet(
    src: str, dst: str, seg: Segment, *, ttl: int = 64, tos: int = 0, ident: int = 0,
    frag: int = 0x4000, flow: int = 0, ip_options: bytes = b"",
) -> bytes:
    """A whole IP packet: IPv4 when the addresses are dotted quads, IPv6 when they contain ':'.
    The IPv4 header checksum and the TCP checksum are computed here."""
    # As build_segment, but each address is converted once and the payload copied once.
    tcp_hdr = _tcp_header(seg)
    payload = seg.payload
    tcp_len = len(tcp_hdr) + len(payload)
    if tcp_len + (0 if ":" in src else 20 + len(ip_options)) > 0xFFFF:
        raise ValueError(f"packet too large: a {tcp_len}-byte TCP segment does not fit the IP length field "
                         "(no jumbograms)")
    if ":" in src:
        s = pack_address(src)
        d = pack_address(dst)
        pseudo = _PSEUDO6.pack(s, d, tcp_len, 6)
        ip_hdr = _IP6.pack((6 << 28) | ((tos & 0xFF) << 20) | (flow & 0xFFFFF), tcp_len, 6, ttl, s, d)
    else:
        s = pack_address(src)
        d = pack_address(dst)
        pseudo = _PSEUDO4.pack(s, d, 6, tcp_len)
        if len(ip_options) % 4 or len(ip_options) > 40:
            raise ValueError("IPv4 options must be a multiple of 4 bytes and at most 40")
        ihl = 5 + len(ip_options) // 4
        hdr = _IP4.pack(0x40 | ihl, tos, ihl * 4 + tcp_len, ident, frag, ttl, 6, 0, s, d) + ip_options
        ip_hdr = b"".join((hdr[:10], _H.pack(_fold(int.from_bytes(hdr, "big"))), hdr[12:]))
    csum = _fold(int.from_bytes(pseudo, "big") + int.from_bytes(tcp_hdr, "big") + _be(payload))
    return b"".join((ip_hdr, tcp_hdr[:16], _H.pack(csum), tcp_hdr[18:], payload))


def build_headers_partial(src: str, dst: str, seg: Segment, paylen: int, *, ttl: int = 64,
                          tos: int = 0) -> bytes:
    """The IP and TCP headers of the packet that carries ``seg`` with ``paylen`` octets of
    payload (``seg.payload`` itself is not read), for a device that completes the TCP checksum
    (checksum offload: virtio's ``NEEDS_CSUM``, Linux's ``CHECKSUM_PARTIAL``). Everything is as
    :func:`build_packet` makes it — lengths for ``paylen`` octets, the IPv4 header checksum —
    but the TCP checksum field, which holds the *partial* sum: the pseudo-header's sum folded
    to 16 bits, not complemented. The device adds the ones'-complement sum of the header and
    payload to it and stores the complement, which gives :func:`build_packet`'s checksum; so no
    payload octet is summed here."""
    tcp_hdr = _tcp_header(seg)
    tcp_len = len(tcp_hdr) + paylen
    v6 = ":" in src
    if tcp_len + (0 if v6 else 20) > 0xFFFF:
        raise ValueError(f"packet too large: a {tcp_len}-byte TCP segment does not fit the IP length field")
    s = pack_address(src)
    d = pack_address(dst)
    pseudo = int.from_bytes(s, "big") + int.from_bytes(d, "big") + tcp_len + 6
    if v6:
        ip_hdr = _IP6.pack((6 << 28) | ((tos & 0xFF) << 20), tcp_len, 6, ttl, s, d)
    else:
        hdr = _IP4.pack(0x45, tos, 20 + tcp_len, 0, 0x4000, ttl, 6, 0, s, d)
        ip_hdr = b"".join((hdr[:10], _H.pack(_fold(int.from_bytes(hdr, "big"))), hdr[12:]))
    r = pseudo % 0xFFFF
    return b"".join((ip_hdr, tcp_hdr[:16], _H.pack(r if r else 0xFFFF), tcp_hdr[18:]))


def build_ip_packet(pkt: IPPacket) -> bytes:
    """Rebuild a parsed packet byte for byte (checksums recomputed)."""
    if pkt.version == 6 and pkt.ext_headers:
        tcp = build_segment(pkt.seg, pkt.src, pkt.dst)
        return _IP6.pack(
            (6 << 28) | ((pkt.tos & 0xFF) << 20) | (pkt.flow & 0xFFFFF), len(pkt.ext_headers) + len(tcp),
            pkt.ext_first, pkt.ttl,
            pack_address(pkt.src), pack_address(pkt.dst),
        ) + pkt.ext_headers + tcp
    return build_packet(pkt.src, pkt.dst, pkt.seg, ttl=pkt.ttl, tos=pkt.tos, ident=pkt.ident,
                        frag=pkt.frag, flow=pkt.flow, ip_options=pkt.ip_options)


def _view(data: bytes | memoryview, start: int, end: int) -> bytes | memoryview:
    """``data[start:end]``, without copying a large packet (the payload is copied once, later)."""
    if end - start > 4096:
        return memoryview(data)[start:end]
    return bytes(data[start:end])  # no copy when ``data`` is bytes


def parse_packet(data: bytes | memoryview, *, verify: bool = True) -> IPPacket:
    """Parse an IPv4 or IPv6 packet carrying TCP. With ``verify`` (the default) the IPv4 header
    checksum and the TCP checksum are checked (MUST-3) and a bad one raises WireError; without
    it every length and offset is still checked. ``data`` may be a memoryview (a driver's
    buffer), which is not copied beyond the payload."""
    n = len(data)
    if n < 1:
        raise WireError("empty packet", 0)
    version = data[0] >> 4
    if version == 4:
        if n < 20:
            raise WireError(f"IPv4 header truncated: {n} bytes, need at least 20", n)
        vihl, tos, total, ident, frag, ttl, proto, csum, s, d = _IP4.unpack_from(data)
        ihl = (vihl & 0x0F) * 4
        if ihl < 20:
            raise WireError(f"IPv4 header length {ihl // 4} is below the minimum of 5", 0)
        if ihl > n:
            raise WireError(f"IPv4 header length {ihl} runs past the {n}-byte packet", 0)
        if total < ihl:
            raise WireError(f"IPv4 total length {total} is shorter than its header ({ihl})", 2)
        if total > n:
            raise WireError(f"IPv4 total length {total} exceeds the {n} bytes captured", 2)
        if verify and int.from_bytes(data[:ihl], "big") % 0xFFFF != 0:
            want = _fold(int.from_bytes(bytes(data[:10]) + b"\0\0" + bytes(data[12:ihl]), "big"))
            raise WireError(f"bad IPv4 header checksum 0x{csum:04x}, expected 0x{want:04x}", 10,
                            checksum=True)
        if frag & 0x3FFF:
            raise WireError("IPv4 fragment (fragments are not reassembled)", 6)
        if proto != 6:
            raise WireError(f"IPv4 protocol {proto} is not TCP (6)", 9)
        src = address_text(s)
        dst = address_text(d)
        if verify:  # pseudo-header words: the addresses, protocol 6 and the TCP length
            seg = _parse_tcp(_view(data, ihl, total), src, dst, ihl,
                             int.from_bytes(data[12:20], "big") + 6 + total - ihl)
        else:
            seg = _parse_tcp(_view(data, ihl, total), None, None, ihl, None)
        return IPPacket(4, src, dst, seg, ttl, tos, ident, frag, 0, bytes(data[20:ihl]), b"", 6, csum, ihl)
    if version == 6:
        if n < 40:
            raise WireError(f"IPv6 header truncated: {n} bytes, need at least 40", n)
        vtf, plen, nxt, hlim, s, d = _IP6.unpack_from(data)
        if 40 + plen > n:
            raise WireError(f"IPv6 payload length {plen} exceeds the {n - 40} bytes captured", 4)
        end = 40 + plen
        first = nxt
        off = 40
        while nxt in _IPV6_SKIPPABLE:
            if off + 8 > end:
                raise WireError(f"IPv6 extension header {nxt} truncated", off)
            hlen = (data[off + 1] + 1) * 8
            if off + hlen > end:
                raise WireError(f"IPv6 extension header {nxt} of {hlen} bytes runs past the packet", off + 1)
            nxt = data[off]
            off += hlen
        if nxt == 44:
            raise WireError("IPv6 fragment header (fragments are not reassembled)", off)
        if nxt != 6:
            raise WireError(f"IPv6 next header {nxt} is not TCP (6)", 6 if off == 40 else off)
        src = address_text(s)
        dst = address_text(d)
        if verify:  # pseudo-header words: the addresses, the TCP length and next header 6
            seg = _parse_tcp(_view(data, off, end), src, dst, off,
                             int.from_bytes(data[8:40], "big") + end - off + 6)
        else:
            seg = _parse_tcp(_view(data, off, end), None, None, off, None)
        return IPPacket(6, src, dst, seg, hlim, (vtf >> 20) & 0xFF, 0, 0, vtf & 0xFFFFF, b"",
                        bytes(data[40:off]), first, None, off)
    raise WireError(f"IP version {version} is neither 4 nor 6", 0)


# ---------------------------------------------------------------------------------------------
# ICMP errors about our segments (RFC 792, RFC 4443; RFC 9293 §3.9.2.2)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP or ICMPv6 error that quotes a TCP segment: sent by ``sender`` about the segment
    from ``src``:``sport`` to ``dst``:``dport`` with sequence number ``seq`` (from the quoted
    header). ``icmp_type``/``icmp_code`` as on the wire; ``mtu`` for "fragmentation needed" and
    "packet too big" (0 otherwise); ``version`` 4 or 6."""

    version: int
    sender: str
    icmp_type: int
    icmp_code: int
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    mtu: int = 0


# Error types: unreachable, source quench, time exceeded, parameter problem (ICMP); unreachable,
# packet too big, time exceeded, parameter problem (ICMPv6).
_ICMP4_ERRORS: Final = frozenset((3, 4, 11, 12))
_ICMP6_ERRORS: Final = frozenset((1, 2, 3, 4))


def is_icmp(data: bytes | memoryview) -> bool:
    """Whether an IP packet carries ICMP (IPv4 protocol 1) or ICMPv6 (next header 58)."""
    if len(data) < 20:
        return False
    version = data[0] >> 4
    return (version == 4 and data[9] == 1) or (version == 6 and len(data) >= 40 and data[6] == 58)


def parse_icmp_error(data: bytes | memoryview, *, verify: bool = True) -> IcmpError:
    """Parse an ICMP (RFC 792) or ICMPv6 (RFC 4443) error message that quotes a TCP segment —
    the IP header of the segment and at least its first 8 octets (ports and sequence number),
    which is all an error must carry. With ``verify`` the IPv4 header checksum and the ICMP
    checksum are checked. Anything else (not an error type, not quoting TCP, truncated) raises
    :class:`WireError`."""
    n = len(data)
    version = data[0] >> 4 if n else 0
    if version == 4 and n >= 20:
        ihl = (data[0] & 0x0F) * 4
        total = _H.unpack_from(data, 2)[0]
        if ihl < 20 or total > n or total < ihl + 8:
            raise WireError("ICMP packet truncated", 0)
        if verify and (int.from_bytes(data[:ihl], "big") % 0xFFFF or _be(bytes(data[ihl:total])) % 0xFFFF):
            raise WireError("bad IPv4 or ICMP checksum", ihl + 2, checksum=True)
        sender, body, end = address_text(bytes(data[12:16])), ihl, total
        errors = _ICMP4_ERRORS
    elif version == 6 and n >= 48:
        end = 40 + _H.unpack_from(data, 4)[0]
        if end > n or data[6] != 58:
            raise WireError("ICMPv6 packet truncated or not ICMPv6", 4)
        if verify:
            pseudo = bytes(data[8:40]) + _I.pack(end - 40) + b"\0\0\0\x3a"
            if (_be(pseudo) + _be(bytes(data[40:end]))) % 0xFFFF:
                raise WireError("bad ICMPv6 checksum", 42, checksum=True)
        sender, body = address_text(bytes(data[8:24])), 40
        errors = _ICMP6_ERRORS
    else:
        raise WireError("not an ICMP packet", 0)
    icmp_type, icmp_code = data[body], data[body + 1]
    if icmp_type not in errors:
        raise WireError(f"ICMP type {icmp_type} is not an error message", body)
    mtu = 0
    if version == 4 and icmp_type == 3 and icmp_code == 4:
        mtu = _H.unpack_from(data, body + 6)[0]
    elif version == 6 and icmp_type == 2:
        mtu = _I.unpack_from(data, body + 4)[0]
    return _quoted_tcp(data, version, sender, icmp_type, icmp_code, body + 8, end, mtu)


def build_icmp_error(sender: str, packet: bytes, icmp_type: int, icmp_code: int, *, mtu: int = 0,
                     ttl: int = 64) -> bytes:
    """The ICMP (RFC 792) or ICMPv6 (RFC 4443) error that ``sender`` (a router, a firewall, the
    destination) sends back about ``packet``: addressed to the packet's source, quoting its IP
    header and as much of the rest as fits in 576 (IPv4) or 1280 (IPv6) octets. ``mtu`` fills
    the next-hop MTU of "fragmentation needed" and the MTU of "packet too big"."""
    if packet[0] >> 4 == 6:
        quoted = packet[:1280 - 48]
        rest = _I.pack(mtu) if icmp_type == 2 else bytes(4)
        body = bytes((icmp_type, icmp_code, 0, 0)) + rest + quoted
        s, d = pack_address(sender), packet[8:24]
        pseudo = s + d + _I.pack(len(body)) + b"\0\0\0\x3a"
        csum = _fold(_be(pseudo) + _be(body))
        body = body[:2] + _H.pack(csum) + body[4:]
        return _IP6.pack(6 << 28, len(body), 58, ttl, s, d) + body
    quoted = packet[:576 - 28]
    rest = bytes(2) + _H.pack(mtu) if icmp_type == 3 and icmp_code == 4 else bytes(4)
    body = bytes((icmp_type, icmp_code, 0, 0)) + rest + quoted
    body = body[:2] + _H.pack(_fold(_be(body))) + body[4:]
    hdr = _IP4.pack(0x45, 0xC0, 20 + len(body), 0, 0, ttl, 1, 0, pack_address(sender), packet[12:16])
    return hdr[:10] + _H.pack(_fold(int.from_bytes(hdr, "big"))) + hdr[12:] + body


def _quoted_tcp(data: bytes | memoryview, version: int, sender: str, icmp_type: int, icmp_code: int,
                off: int, end: int, mtu: int) -> IcmpError:
    """The TCP segment an ICMP error quotes, from its IP header at ``off``."""
    if version == 4:
        if end - off < 28 or data[off] >> 4 != 4:
            raise WireError("ICMP error quotes no IPv4 header and 8 octets", off)
        ihl = (data[off] & 0x0F) * 4
        proto, src, dst = data[off + 9], bytes(data[off + 12:off + 16]), bytes(data[off + 16:off + 20])
    else:
        if end - off < 48 or data[off] >> 4 != 6:
            raise WireError("ICMPv6 error quotes no IPv6 header and 8 octets", off)
        proto, ihl = data[off + 6], 40
        src, dst = bytes(data[off + 8:off + 24]), bytes(data[off + 24:off + 40])
        while proto in _IPV6_SKIPPABLE and off + ihl + 8 <= end:
            proto, ihl = data[off + ihl], ihl + (data[off + ihl + 1] + 1) * 8
    t = off + ihl
    if proto != 6 or t + 8 > end:
        raise WireError("ICMP error does not quote a TCP segment", off)
    sport, dport, seq = struct.unpack_from("!HHI", data, t)
    return IcmpError(version, sender, icmp_type, icmp_code, address_text(src), address_text(dst),
                     sport, dport, seq, mtu)


# ---------------------------------------------------------------------------------------------
# tcpdump-style text
# ---------------------------------------------------------------------------------------------


Direction = tuple[str, int, str, int]
"""One direction of a connection: (source address, source port, destination address,
destination port). A bare TCP header has ``""`` for its addresses."""

NEAR_ISN: Final = 1 << 20
"""How far below an ISN a number may lie and still be read relative to it (an old duplicate);
further below, :class:`RelativeSeq` in ``"isn"`` mode gives up and the number is shown absolute."""


def direction_of(pkt: IPPacket) -> Direction:
    """The direction a packet travels in (its sequence space); reverse it for its ACK's."""
    seg = pkt.seg
    return (pkt.src, seg.src_port, pkt.dst, seg.dst_port)


class RelativeSeq:
    """Relative sequence numbers: each direction of each connection counted from a base of its
    own, as RFC 9293 §3.4 counts each side's numbers from its ISN. The one place that decides
    which base a number is read against, for every printer: tcpdump lines
    (:func:`format_tcpdump`), the diagrams, ``synack decode`` and the tests' segment listings.

    It lives here, in the core's ``wire``, because :func:`format_tcpdump` needs it and the core
    imports nothing from outside; the diagram model (:mod:`synack.diagram`) uses it from here.

    Two ways of choosing the base, the ``mode``:

    * ``"first"`` (tcpdump): the first sequence number seen in a direction is that direction's
      base, whatever the segment (a capture may start in the middle). :meth:`offset` counts up from
      it modulo 2**32, as tcpdump prints it (``signed=True`` gives the signed distance instead,
      which sorts numbers on either side of the base);
    * ``"isn"`` (the RFC figures): only SYNs set bases, and a direction may have several — a new
      connection on the same ports, a crashed host's next incarnation. A number is read against
      the nearest ISN at or below it; below every ISN it reads negative (an old duplicate sits at
      ``-10``), but more than :data:`NEAR_ISN` below any of them it belongs to none and is shown
      absolute (``None``). ISNs of segments put on the wire by hand (``injected``) are used only
      for a direction that has no other. :meth:`numbers` shows the ``<SEQ=0>`` of a RST,ACK that
      answers a SYN (RFC 9293 §3.10.7.1) as 0, since zero is in nobody's space.

    Arithmetic is modulo 2**32 throughout, so numbers wrap past 2**32 - 1 to 0 seamlessly."""

    __slots__ = ("_bases", "_injected", "mode")

    def __init__(self, mode: Literal["first", "isn"] = "first") -> None:
        self.mode = mode
        self._bases: dict[Direction, list[int]] = {}
        self._injected: dict[Direction, list[int]] = {}

    def learn(self, direction: Direction, seg: Segment, *, injected: bool = False) -> None:
        """Take note of a segment seen travelling in ``direction``."""
        if self.mode == "first":
            self._bases.setdefault(direction, [seg.seq])
        elif seg.flags & SYN:
            self.add_base(direction, seg.seq, injected=injected)

    def add_base(self, direction: Direction, value: int, *, injected: bool = False) -> None:
        """Declare a base for ``direction`` (an ISN known in advance, or a first number seen some
        other way). In ``"first"`` mode only the first base of a direction counts."""
        table = self._injected if injected else self._bases
        bases = table.setdefault(direction, [])
        if value not in bases and not (self.mode == "first" and bases):
            bases.append(value)

    def base(self, direction: Direction) -> int | None:
        """The first base of ``direction`` (the tcpdump base; the first ISN), or None."""
        bases = self._bases.get(direction) or self._injected.get(direction)
        return bases[0] if bases else None

    def offset(self, direction: Direction, n: int, *, signed: bool = False) -> int | None:
        """``n`` relative to its base in ``direction``; None when it has none (show it absolute).
        In ``"isn"`` mode the result is always signed (see the class)."""
        bases = self._bases.get(direction) or self._injected.get(direction)
        if not bases:
            return None
        if self.mode == "first":
            return seq_diff(n, bases[0]) if signed else (n - bases[0]) & _SEQ_MASK
        best: int | None = None
        for isn in bases:
            diff = seq_diff(n, isn)
            if best is None or (diff >= 0 and (best < 0 or diff < best)) or (best < 0 and diff > best):
                best = diff
        assert best is not None
        return None if best < -NEAR_ISN else best

    def show(self, direction: Direction, n: int) -> int:
        """``n`` as it should be printed: relative when it has a base, else as it is."""
        rel = self.offset(direction, n)
        return n if rel is None else rel

    def numbers(self, pkt: IPPacket) -> tuple[int, int | None]:
        """The (SEQ, ACK) of a packet as they should be printed (ACK None without the ACK bit)."""
        seg = pkt.seg
        fwd = direction_of(pkt)
        rev = (fwd[2], fwd[3], fwd[0], fwd[1])
        if self.mode == "isn" and seg.flags & RST and seg.seq == 0 and seg.ack is not None:
            seq = 0  # <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>: zero is in nobody's space
        else:
            seq = self.show(fwd, seg.seq)
        return seq, None if seg.ack is None else self.show(rev, seg.ack)


def format_tcpdump(pkt: IPPacket, ctx: RelativeSeq | None = None) -> str:
    """One line like tcpdump's: ``10.0.0.1.80 > 10.0.0.2.33706: Flags [S.], seq 0, ack 1, win
    65535, options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0``.

    With a ``ctx`` (a :class:`RelativeSeq`, tcpdump's ``"first"`` mode) the numbers are relative to
    each direction's first sequence number; the packet is learned first. A packet with empty
    addresses (a bare TCP header) is printed with its ports only."""
    seg = pkt.seg
    seq = seg.seq
    ack = seg.ack
    if ctx is not None:
        ctx.learn(direction_of(pkt), seg)
        seq, ack = ctx.numbers(pkt)
    src = f"{pkt.src}.{seg.src_port}" if pkt.src else str(seg.src_port)  # no address: a bare header
    dst = f"{pkt.dst}.{seg.dst_port}" if pkt.dst else str(seg.dst_port)
    parts = [f"{src} > {dst}: Flags [{tcpdump_flags(seg.flags)}]"]
    plen = len(seg.payload)
    if plen or seg.flags & (SYN | FIN | RST):
        parts.append(f"seq {seq}:{(seq + plen) & _SEQ_MASK}" if plen else f"seq {seq}")
    if ack is not None:
        parts.append(f"ack {ack}")
    parts.append(f"win {seg.window}")
    if seg.flags & URG:
        parts.append(f"urg {seg.urg}")
    if seg.options:
        parts.append("options [" + ",".join(format_option(o, "tcpdump") for o in seg.options) + "]")
    parts.append(f"length {plen}")
    return ", ".join(parts)


def format_segment(seg: Segment) -> str:
    """A segment alone (no IP header), as :func:`format_tcpdump` prints it: ports, no addresses."""
    return format_tcpdump(IPPacket(4, "", "", seg))
