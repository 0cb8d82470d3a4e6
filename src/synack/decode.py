"""``synack decode``: explain TCP segments given as hex, field by field.

The input is text in one of three forms, recognised automatically:

* a hex pane as Wireshark (or ``hexdump -C``, ``xxd``) prints it: ``OFFSET  hex bytes  ascii``,
  one line per 16 bytes, optionally ending in a label such as ``(1)``.  The first line of a
  packet may start in the middle (the exercise of seed 001 blanks out the bytes before the TCP
  header, so its first line ``0020`` shows only the bytes from ``0x22`` on);
* ``tcpdump -x``/``-xx``/``-X`` output: ``0x0000:  4500 003c ...`` lines, each packet usually
  preceded by its summary line;
* bare hex, with or without spaces, colons or ``0x`` prefixes; packets are separated by blank
  lines (or given as separate command-line arguments).

Each packet is then recognised as an Ethernet frame, an IPv4/IPv6 packet or a bare TCP header,
decoded with :mod:`synack.core.wire` (checksums are checked separately, so a bad one is reported
rather than fatal), and, when several packets are given, put in causal order per connection with
the role of each one in the handshake, the data transfer or the close.

The text parsing (:func:`parse_hex_dump`), the decoding (:func:`decode_packet`) and the analysis
(:func:`analyze`) are pure functions; every problem with the input raises :class:`DecodeError`.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from synack.core import wire

__all__ = [
    "DecodeError",
    "DecodedPacket",
    "EthernetHeader",
    "HexPacket",
    "PacketExchange",
    "Role",
    "add_parser",
    "analyze",
    "causal_order",
    "decode_capture",
    "decode_packet",
    "decode_text",
    "format_analysis",
    "format_packet",
    "format_report",
    "option_chunks",
    "parse_hex_dump",
    "report_json",
    "run",
    "tcpdump_line",
]

ETH_HEADER_LEN: Final = 14
ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_IPV6: Final = 0x86DD
# A hex pane starting at one of these offsets shows a frame whose link and IP headers are hidden.
_TCP_AFTER_ETH_IPV4: Final = ETH_HEADER_LEN + 20
_TCP_AFTER_ETH_IPV6: Final = ETH_HEADER_LEN + 40
_DEFAULT_WIDTH: Final = 16


class DecodeError(ValueError):
    """Input that cannot be decoded: the message says what is wrong and where."""


# ---------------------------------------------------------------------------------------------
# Hex text → packets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HexPacket:
    """The bytes of one packet found in the input text.

    ``label`` is the name written after the packet (``"1"`` for a trailing ``(1)``), ``None`` when
    there is none; ``start_offset`` is the offset of ``data[0]`` in the original frame as the dump
    shows it (0 unless the dump starts in the middle of the frame).
    """

    label: str | None
    start_offset: int
    data: bytes


@dataclass(slots=True)
class _DumpLine:
    lineno: int
    offset: int
    rest: str
    blank_before: bool
    data: bytes = b""
    label: str | None = None


# An offset column: 4-8 hex digits (``0x`` allowed), then a colon or at least two spaces.
_OFFSET_RE: Final = re.compile(r"(?:0[xX])?([0-9A-Fa-f]{4,8})(?::(?: +|$)| {2,})")
_END_OFFSET_RE: Final = re.compile(r"[0-9A-Fa-f]{8}")
_LABEL_RE: Final = re.compile(r"\s\(([^()\s]{1,16})\)\s*$")
_TOKEN_RE: Final = re.compile(r"\S+")
_HEX_RE: Final = re.compile(r"[0-9A-Fa-f]+")
_HEXISH_LINE_RE: Final = re.compile(r"[0-9A-Fa-fxX:,\s]+")
_OTHER_SPACE_RE: Final = re.compile(r"[^\S\n]")


def parse_hex_dump(text: str) -> list[HexPacket]:
    """Find the packets in ``text`` (a hex pane, ``tcpdump -x`` output or bare hex).

    Raises :class:`DecodeError` for non-hex characters where hex bytes belong, an odd number of
    hex digits, lines that do not fit together, or an input without any byte.
    """
    lines = _OTHER_SPACE_RE.sub(" ", text).split("\n")
    if any(_is_offset_line(line) for line in lines):
        packets = _parse_dump(lines)
    else:
        packets = _parse_bare(lines)
    if not packets:
        raise DecodeError("empty input: no hex bytes found")
    return packets


def _is_offset_line(line: str) -> bool:
    return _OFFSET_RE.match(line.strip()) is not None  # trailing blanks do not make a column


def _parse_bare(lines: list[str]) -> list[HexPacket]:
    """Bare hex: blank lines separate packets; spaces, colons, commas and ``0x`` are ignored."""
    packets: list[HexPacket] = []
    digits: list[str] = []
    first_line = 0
    for lineno, line in enumerate([*lines, ""], start=1):
        if not line.strip():
            if "".join(digits):
                packets.append(_bare_packet("".join(digits), first_line, len(packets) + 1))
            digits = []
            continue
        if not digits:
            first_line = lineno
        digits.append(_bare_line_digits(line, lineno))
    return packets


def _bare_line_digits(line: str, lineno: int) -> str:
    out: list[str] = []
    for match in re.finditer(r"[^\s:,]+", line):
        token = match.group()
        if token[:2] in ("0x", "0X"):
            token = token[2:]
        bad = re.search(r"[^0-9A-Fa-f]", token)
        if bad is not None:
            column = match.start() + (len(match.group()) - len(token)) + bad.start() + 1
            raise DecodeError(f"line {lineno}, column {column}: {bad.group()!r} is not a hex digit")
        out.append(token)
    return "".join(out)


def _bare_packet(digits: str, lineno: int, number: int) -> HexPacket:
    if len(digits) % 2:
        raise DecodeError(
            f"packet ({number}) (from line {lineno}): odd number of hex digits ({len(digits)}), "
            "a byte needs two"
        )
    return HexPacket(None, 0, bytes.fromhex(digits))


def _parse_dump(lines: list[str]) -> list[HexPacket]:
    """Offset-prefixed lines; any other non-blank line (a tcpdump summary) ends a packet."""
    groups: list[list[_DumpLine]] = [[]]
    blank = False
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            blank = True
            continue
        match = _OFFSET_RE.match(line)
        if match is None:
            if line == "*":
                raise DecodeError(f"line {lineno}: '*' stands for repeated lines that are not shown "
                                  "(use hexdump -v to print them)")
            if _END_OFFSET_RE.fullmatch(line):
                groups.append([])  # hexdump -C ends with the total length as a lone offset
            elif _HEXISH_LINE_RE.fullmatch(line):
                raise DecodeError(
                    f"line {lineno}: hex without an offset column inside a hex dump: {line[:40]!r}"
                )
            else:
                groups.append([])  # a summary or heading line: the next lines are a new packet
        else:
            groups[-1].append(_DumpLine(lineno, int(match.group(1), 16), line[match.end():], blank))
        blank = False
    all_lines = [dl for group in groups for dl in group]
    width = _line_width(all_lines)
    for dl in all_lines:
        _read_hex_columns(dl, width)
    packets: list[HexPacket] = []
    for group in groups:
        for run in _split_packets(group, width):
            packets.append(_assemble(run, width))
    return packets


def _line_width(lines: list[_DumpLine]) -> int:
    """The number of bytes in a full line: the most common step between consecutive offsets
    (a multiple of 8: a first line may start at an odd place such as 0x22), 16 by default."""
    steps = Counter(b.offset - a.offset for a, b in itertools.pairwise(lines)
                    if b.offset > a.offset and (b.offset - a.offset) % 8 == 0)
    if not steps:
        return _DEFAULT_WIDTH
    return max(steps, key=lambda step: (steps[step], step))


def _read_hex_columns(dl: _DumpLine, width: int) -> None:
    """Read the hex bytes of one dump line, stopping before the ASCII column.

    The hex columns are tokens of 2 (or 4, 6, 8: tcpdump/xxd groups) hex digits separated by
    single spaces, with at most one double space (the gap after the eighth byte).  The ASCII
    column follows a wider gap, a second double space, or the line's full width of bytes, so
    an ASCII column that happens to read ``ab cd`` is never taken for bytes.
    """
    rest = dl.rest
    label = _LABEL_RE.search(rest)
    if label is not None:
        dl.label = label.group(1)
        rest = rest[:label.start()]
    out = bytearray()
    end = 0
    wide_gap_seen = False
    for match in _TOKEN_RE.finditer(rest):
        token = match.group()
        gap = match.start() - end
        if out:
            if gap >= 3 or (gap == 2 and wide_gap_seen):
                break
            wide_gap_seen = wide_gap_seen or gap == 2
        if len(out) >= width:
            break
        problem = _token_problem(token)
        if problem is not None:
            if out and gap > 1:
                break  # the ASCII column, after a double space
            if out or len(token) <= 2:
                raise DecodeError(f"line {dl.lineno}: {token!r} in the hex columns {problem}")
            break  # a line without any hex byte, only its ASCII column
        if len(out) + len(token) // 2 > width:
            break
        out += bytes.fromhex(token)
        end = match.end()
    dl.data = bytes(out)


def _token_problem(token: str) -> str | None:
    """Why ``token`` is not a group of hex bytes, or None when it is one."""
    if not _HEX_RE.fullmatch(token):
        return "is not hex"
    if len(token) % 2:
        return "has an odd number of hex digits"
    if len(token) > 8:
        return "is longer than a group of 4 bytes"
    return None


def _split_packets(group: list[_DumpLine], width: int) -> list[list[_DumpLine]]:
    """Cut a run of dump lines into packets: a new packet starts where the offset goes back (or
    stays), or after a blank line that follows a short line (only a packet's last line is short)."""
    runs: list[list[_DumpLine]] = []
    for dl in group:
        if runs:
            prev = runs[-1][-1]
            short_end = len(runs[-1]) > 1 and len(prev.data) < width and dl.blank_before
            if dl.offset > prev.offset and not short_end:
                runs[-1].append(dl)
                continue
        runs.append([dl])
    return runs


def _assemble(run: list[_DumpLine], width: int) -> HexPacket:
    """Join the lines of one packet, checking that their bytes fill the offsets exactly."""
    first = run[0]
    start = first.offset
    if len(run) > 1:
        span = run[1].offset - first.offset
        if span > width:
            raise DecodeError(
                f"line {run[1].lineno}: offset 0x{run[1].offset:04x} skips ahead from 0x{first.offset:04x}"
            )
        if len(first.data) > span:
            raise DecodeError(
                f"line {first.lineno}: {len(first.data)} bytes, but the next line starts {span} bytes later"
            )
        start = run[1].offset - len(first.data)  # blank leading columns: the bytes are right-aligned
    for dl, nxt in itertools.pairwise(run[1:]):
        span = nxt.offset - dl.offset
        if len(dl.data) != span:
            raise DecodeError(
                f"line {dl.lineno}: {len(dl.data)} bytes at offset 0x{dl.offset:04x}, but the next line "
                f"starts at 0x{nxt.offset:04x} ({span} bytes later)"
            )
    data = b"".join(dl.data for dl in run)
    if not data:
        raise DecodeError(f"line {first.lineno}: a packet without any hex byte")
    return HexPacket(run[-1].label, start, data)


# ---------------------------------------------------------------------------------------------
# Packets → decoded headers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EthernetHeader:
    dst: str
    src: str
    ethertype: int


@dataclass(slots=True)
class DecodedPacket:
    """One packet with every header decoded.

    ``kind`` is ``"ethernet"``, ``"ipv4"``, ``"ipv6"`` or ``"tcp"`` (a bare TCP header).  The
    checksum fields are ``None`` when they cannot be verified (no IP header).
    """

    index: int
    label: str | None
    start_offset: int
    data: bytes
    kind: str
    seg: wire.Segment
    tcp_bytes: bytes
    ethernet: EthernetHeader | None = None
    ip: wire.IPPacket | None = None
    ip_bytes: bytes = b""
    ip_checksum_ok: bool | None = None
    ip_checksum_expected: int | None = None
    tcp_checksum_ok: bool | None = None
    tcp_checksum_expected: int | None = None
    trailing: int = 0

    @property
    def name(self) -> str:
        """``(1)``: the packet's label, or its position in the input when it has none."""
        return f"({self.label if self.label is not None else self.index})"

    @property
    def src(self) -> tuple[str | None, int]:
        return (self.ip.src if self.ip else None, self.seg.src_port)

    @property
    def dst(self) -> tuple[str | None, int]:
        return (self.ip.dst if self.ip else None, self.seg.dst_port)

    @property
    def tcp_header_len(self) -> int:
        """The TCP header length as the data offset field gives it, in bytes."""
        return (self.tcp_bytes[12] >> 4) * 4

    @property
    def end(self) -> int:
        """The sequence number just after this segment (seq + SEG.LEN)."""
        return wire.seq_add(self.seg.seq, self.seg.seg_len)


def decode_text(text: str) -> list[DecodedPacket]:
    """Parse and decode every packet of ``text``; raises DecodeError for the first bad one."""
    return [decode_packet(hp, i) for i, hp in enumerate(parse_hex_dump(text), start=1)]


def decode_packet(hp: HexPacket, index: int = 1) -> DecodedPacket:
    """Decode one packet, trying Ethernet, IP and bare TCP as its offset and first bytes allow."""
    attempts: list[str] = []
    for kind in _candidate_kinds(hp):
        try:
            return _decode_as(kind, hp, index)
        except wire.WireError as exc:
            attempts.append(f"{_KIND_TEXT[kind]}: {_where(exc, _kind_base(kind), hp.start_offset)}")
    name = hp.label if hp.label is not None else index
    raise DecodeError(f"packet ({name}): cannot be decoded as " + "; nor as ".join(attempts))


_KIND_TEXT: Final = {
    "ethernet": "an Ethernet frame", "ip": "an IP packet", "tcp": "a bare TCP header",
}


def _kind_base(kind: str) -> int:
    return ETH_HEADER_LEN if kind == "ethernet" else 0


def _where(exc: wire.WireError, base: int, start_offset: int) -> str:
    """The WireError text, its offset counted from the packet's first byte (and, for a dump
    that starts mid-frame, also as the offset the dump shows)."""
    at = exc.offset + base
    dump = f", offset 0x{start_offset + at:04x} in the dump" if start_offset else ""
    return f"{exc.reason} (at byte {at} of the packet{dump})"


def _candidate_kinds(hp: HexPacket) -> list[str]:
    data = hp.data
    if hp.start_offset in (_TCP_AFTER_ETH_IPV4, _TCP_AFTER_ETH_IPV6):
        return ["tcp"]
    kinds: list[str] = []
    if hp.start_offset == 0 and len(data) > ETH_HEADER_LEN:
        ethertype = int.from_bytes(data[12:14], "big")
        version = data[ETH_HEADER_LEN] >> 4
        if (ethertype, version) in ((ETHERTYPE_IPV4, 4), (ETHERTYPE_IPV6, 6)):
            kinds.append("ethernet")
    if data and data[0] >> 4 in (4, 6):
        kinds.append("ip")
    kinds.append("tcp")
    return kinds


def _decode_as(kind: str, hp: HexPacket, index: int) -> DecodedPacket:
    data = hp.data
    if kind == "tcp":
        seg = wire.parse_segment(data)  # no addresses: the checksum cannot be verified
        return DecodedPacket(index, hp.label, hp.start_offset, data, "tcp", seg, data)
    eth = None
    ip_bytes = data
    if kind == "ethernet":
        eth = EthernetHeader(_mac(data[0:6]), _mac(data[6:12]), int.from_bytes(data[12:14], "big"))
        ip_bytes = data[ETH_HEADER_LEN:]
    pkt = wire.parse_packet(ip_bytes, verify=False)
    end = _ip_end(ip_bytes, pkt)
    tcp_bytes = ip_bytes[pkt.header_len:end]
    decoded = DecodedPacket(
        index, hp.label, hp.start_offset, data, kind if eth else f"ipv{pkt.version}", pkt.seg, tcp_bytes,
        ethernet=eth, ip=pkt, ip_bytes=ip_bytes[:end], trailing=len(ip_bytes) - end,
    )
    _check_checksums(decoded)
    return decoded


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _ip_end(ip_bytes: bytes, pkt: wire.IPPacket) -> int:
    """Where the IP packet ends (anything after it is link-layer padding)."""
    if pkt.version == 4:
        return int.from_bytes(ip_bytes[2:4], "big")
    return 40 + int.from_bytes(ip_bytes[4:6], "big")


def _check_checksums(d: DecodedPacket) -> None:
    assert d.ip is not None
    tcp = d.tcp_bytes
    d.tcp_checksum_expected = wire.tcp_checksum(d.ip.src, d.ip.dst, tcp[:16] + b"\0\0" + tcp[18:])
    d.tcp_checksum_ok = wire.tcp_checksum(d.ip.src, d.ip.dst, tcp) == 0
    if d.ip.version == 4:
        hdr = d.ip_bytes[:d.ip.header_len]
        d.ip_checksum_expected = wire.internet_checksum(hdr[:10] + b"\0\0" + hdr[12:])
        d.ip_checksum_ok = wire.internet_checksum(hdr) == 0


def option_chunks(option_bytes: bytes) -> list[bytes]:
    """The raw bytes of each option, in the order :func:`wire.parse_options` returns them
    (the input must already have been accepted by it)."""
    chunks: list[bytes] = []
    i = 0
    while i < len(option_bytes):
        kind = option_bytes[i]
        if kind == 0:
            chunks.append(option_bytes[i:])
            break
        length = 1 if kind == 1 else option_bytes[i + 1]
        chunks.append(option_bytes[i:i + length])
        i += length
    return chunks


def _options_with_raw(d: DecodedPacket) -> list[tuple[wire.Option, bytes]]:
    return list(zip(d.seg.options, option_chunks(d.tcp_bytes[20:d.tcp_header_len]), strict=True))


# ---------------------------------------------------------------------------------------------
# Well-known ports
# ---------------------------------------------------------------------------------------------

# port: (service name as in /etc/services, name for people)
_SERVICES: Final = {
    20: ("ftp-data", "FTP data"), 21: ("ftp", "FTP"), 22: ("ssh", "SSH"), 23: ("telnet", "Telnet"),
    25: ("smtp", "SMTP"), 53: ("domain", "DNS"), 80: ("http", "HTTP"), 110: ("pop3", "POP3"),
    119: ("nntp", "NNTP"), 143: ("imap", "IMAP"), 179: ("bgp", "BGP"), 389: ("ldap", "LDAP"),
    443: ("https", "HTTPS"), 445: ("microsoft-ds", "SMB"), 465: ("submissions", "SMTP over TLS"),
    587: ("submission", "mail submission"), 993: ("imaps", "IMAP over TLS"),
    995: ("pop3s", "POP3 over TLS"), 3306: ("mysql", "MySQL"), 3389: ("ms-wbt-server", "RDP"),
    5432: ("postgresql", "PostgreSQL"), 6379: ("redis", "Redis"), 8080: ("http-alt", "HTTP alternate"),
}


def _port_text(port: int) -> str:
    service = _SERVICES.get(port)
    return f"{port} ({service[0]})" if service else str(port)


# ---------------------------------------------------------------------------------------------
# Analysis: connections, causal order, roles
# ---------------------------------------------------------------------------------------------

Endpoint = tuple[str | None, int]


@dataclass(frozen=True, slots=True)
class Role:
    packet: DecodedPacket
    role: str
    reason: str


@dataclass(slots=True)
class PacketExchange:
    """The packets of one connection, as decode sees it, in causal order. ``client`` sent the SYN
    (None: unknown). Not :class:`synack.core.connection.Connection`: no TCB, only packets."""

    number: int
    endpoints: tuple[Endpoint, Endpoint]
    client: Endpoint | None
    server: Endpoint | None
    roles: list[Role] = field(default_factory=list)


def _endpoint_text(ep: Endpoint) -> str:
    addr, port = ep
    if addr is None:
        return f"port {port}"
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def analyze(packets: Sequence[DecodedPacket]) -> list[PacketExchange]:
    """Group the packets by connection, order each group causally and name each packet's role."""
    groups: dict[frozenset[Endpoint], list[DecodedPacket]] = {}
    for p in packets:
        groups.setdefault(frozenset((p.src, p.dst)), []).append(p)
    connections = []
    for number, group in enumerate(groups.values(), start=1):
        ordered = causal_order(group)
        state = _ConnState()
        roles = [Role(p, *state.role(p)) for p in ordered]
        client, server = state.client_server()
        first = group[0]
        connections.append(PacketExchange(number, (first.src, first.dst), client, server, roles))
    return connections


def causal_order(group: Sequence[DecodedPacket]) -> list[DecodedPacket]:
    """Order the packets of one connection so that every packet comes after what it acknowledges.

    Within a direction: by sequence number, segments taking no sequence space before one that
    does at the same number, then by acknowledgment.  Across directions: a packet whose ack
    covers the end of a segment (seq + SEG.LEN) comes after it.  Ties keep the input order.
    """
    after: dict[int, set[int]] = {i: set() for i in range(len(group))}
    by_dir: dict[tuple[Endpoint, Endpoint], list[int]] = {}
    for i, p in enumerate(group):
        by_dir.setdefault((p.src, p.dst), []).append(i)
    for members in by_dir.values():
        chain = sorted(members, key=_direction_key(group, members))
        for a, b in itertools.pairwise(chain):
            after[b].add(a)
    for a, sent in enumerate(group):
        if sent.seg.seg_len == 0:
            continue
        for b, reply in enumerate(group):
            if (reply.src, reply.dst) == (sent.dst, sent.src) and a != b and reply.seg.ack is not None \
                    and wire.seq_ge(reply.seg.ack, sent.end):
                after[b].add(a)
    return [group[i] for i in _topological(after)]


def _direction_key(
    group: Sequence[DecodedPacket], members: list[int],
) -> Callable[[int], tuple[int, bool, int, int]]:
    """Sort key for the packets of one direction: numbers relative to the first ones seen
    (:class:`~synack.core.wire.RelativeSeq`, tcpdump's base), as signed distances, so that wrapping
    around 2**32 does not disturb the order. An acknowledgment is read in the other direction's
    sequence space, from that direction's first number — or, when none of its packets is here,
    from the first acknowledgment number of this one."""
    numbers = wire.RelativeSeq("first")
    fwd = _direction(group[members[0]])
    rev = (fwd[2], fwd[3], fwd[0], fwd[1])
    for p in group:
        numbers.learn(_direction(p), p.seg)
    first_ack = next((a for a in (group[i].seg.ack for i in members) if a is not None), None)
    if first_ack is not None:
        numbers.add_base(rev, first_ack)  # a base only when that direction has no packet here

    def key(i: int) -> tuple[int, bool, int, int]:
        seg = group[i].seg
        ack = numbers.offset(rev, seg.ack, signed=True) if seg.ack is not None else None
        seq = numbers.offset(fwd, seg.seq, signed=True)
        assert seq is not None  # learned above
        return (seq, seg.seg_len > 0, -(1 << 33) if ack is None else ack, i)

    return key


def _direction(p: DecodedPacket) -> wire.Direction:
    """The direction of a decoded packet, ``""`` for an address a bare TCP header does not have."""
    (src, sport), (dst, dport) = p.src, p.dst
    return (src or "", sport, dst or "", dport)


def _topological(after: dict[int, set[int]]) -> list[int]:
    """Kahn's algorithm, smallest index first; a cycle (inconsistent numbers) is broken at the
    smallest remaining index."""
    pending = {i: set(deps) for i, deps in after.items()}
    order: list[int] = []
    ready = [i for i, deps in pending.items() if not deps]
    heapq.heapify(ready)
    while pending:
        if not ready:
            ready = [min(pending)]
        i = heapq.heappop(ready)
        if i not in pending:
            continue
        del pending[i]
        order.append(i)
        for j, deps in pending.items():
            if i in deps:
                deps.discard(i)
                if not deps:
                    heapq.heappush(ready, j)
    return order


class _ConnState:
    """What has been seen so far on one connection, to name the role of the next packet."""

    def __init__(self) -> None:
        self.syn: dict[Endpoint, DecodedPacket] = {}
        self.synack: DecodedPacket | None = None
        self.established = False
        self.fin: dict[Endpoint, DecodedPacket] = {}
        self.fin_acked_by: dict[Endpoint, DecodedPacket] = {}
        self.sent_end: dict[Endpoint, tuple[int, DecodedPacket]] = {}
        self.last_ack: dict[Endpoint, DecodedPacket] = {}
        self.sent: dict[Endpoint, list[DecodedPacket]] = {}

    def client_server(self) -> tuple[Endpoint | None, Endpoint | None]:
        """The side that sent the first SYN (or received the SYN-ACK) and its peer."""
        first_syn = next(iter(self.syn.values()), None)
        if first_syn is not None:
            return first_syn.src, first_syn.dst
        if self.synack is not None:
            return self.synack.dst, self.synack.src
        return None, None

    def role(self, p: DecodedPacket) -> tuple[str, str]:
        seg = p.seg
        if seg.has(wire.RST):
            result = self._rst(p)
        elif seg.has(wire.SYN):
            result = self._syn(p) if seg.ack is None else self._synack(p)
        elif seg.has(wire.FIN):
            result = self._fin(p)
        else:
            result = self._other(p)
        self._remember(p)
        return result

    def _remember(self, p: DecodedPacket) -> None:
        d = p.src
        self.sent.setdefault(d, []).append(p)
        best = self.sent_end.get(d)
        if best is None or wire.seq_gt(p.end, best[0]):
            self.sent_end[d] = (p.end, p)
        if p.seg.ack is not None:
            self.last_ack[d] = p

    def _rst(self, p: DecodedPacket) -> tuple[str, str]:
        seg = p.seg
        syn = self.syn.get(p.dst)
        if seg.ack is not None and syn is not None and not self.established \
                and seg.ack == wire.seq_add(syn.seg.seq, 1):
            return "RST", (f"RST with ack {seg.ack} = the SYN's seq {syn.seg.seq} + 1 (packet {syn.name}): "
                           f"{_endpoint_text(p.src)} refuses the connection (nothing listens there)")
        return "RST", f"RST set: {_endpoint_text(p.src)} aborts the connection at seq {seg.seq}"

    def _syn(self, p: DecodedPacket) -> tuple[str, str]:
        seg = p.seg
        mine = self.syn.get(p.src)
        if mine is not None and mine.seg.seq == seg.seq:
            return "retransmitted SYN", (
                f"the same ISN {seg.seq} as packet {mine.name}: that SYN was not answered in time")
        if p.dst in self.syn:
            return "simultaneous open (SYN)", (
                f"SYN without ACK from {_endpoint_text(p.src)} although {_endpoint_text(p.dst)} also sent "
                f"one (packet {self.syn[p.dst].name}): both sides open at once")
        self.syn[p.src] = p
        return "first handshake segment (SYN)", (
            f"SYN set and ACK not set: {_endpoint_text(p.src)} asks {_endpoint_text(p.dst)} to open a "
            f"connection, with initial sequence number {seg.seq}")

    def _synack(self, p: DecodedPacket) -> tuple[str, str]:
        seg = p.seg
        assert seg.ack is not None
        if self.synack is not None and self.synack.src == p.src and self.synack.seg.seq == seg.seq:
            return "retransmitted SYN, ACK", f"the same ISN {seg.seq} as packet {self.synack.name}"
        self.synack = p
        syn = self.syn.get(p.dst)
        own = f"its own initial sequence number is {seg.seq}"
        if syn is None:
            return "second handshake segment (SYN, ACK)", (
                f"SYN and ACK set: answers a SYN with ISN {wire.seq_add(seg.ack, -1)} "
                f"(ack {seg.ack} = ISN + 1, that SYN is not among these packets); {own}")
        if seg.ack == wire.seq_add(syn.seg.seq, 1):
            return "second handshake segment (SYN, ACK)", (
                f"SYN and ACK set, ack {seg.ack} = the SYN's seq {syn.seg.seq} + 1 "
                f"(packet {syn.name}); {own}")
        return "second handshake segment (SYN, ACK)", (
            f"SYN and ACK set, but ack {seg.ack} is not the SYN's seq {syn.seg.seq} + 1 (packet {syn.name}):"
            f" it answers another SYN; {own}")

    def _handshake_ack(self, p: DecodedPacket) -> str | None:
        """The reason why ``p`` completes the handshake, or None when it does not."""
        seg = p.seg
        if self.established or seg.ack is None:
            return None
        syn = self.syn.get(p.src)
        synack = self.synack
        seq_note = ""
        if syn is not None and seg.seq == wire.seq_add(syn.seg.seq, 1):
            seq_note = f", and seq {seg.seq} = the SYN's seq {syn.seg.seq} + 1 (packet {syn.name})"
        if synack is not None and synack.dst == p.src and seg.ack == wire.seq_add(synack.seg.seq, 1):
            return f"ack {seg.ack} = the SYN-ACK's seq {synack.seg.seq} + 1 (packet {synack.name}){seq_note}"
        if synack is None and seq_note:
            return f"the first ACK after the SYN{seq_note} (the SYN-ACK is not among these packets)"
        return None

    def _fin(self, p: DecodedPacket) -> tuple[str, str]:
        seg = p.seg
        data = f"; it also carries {len(seg.payload)} bytes of data" if seg.payload else ""
        mine = self.fin.get(p.src)
        if mine is not None and mine.seg.seq == seg.seq:
            return "retransmitted FIN", f"the same seq {seg.seq} as the FIN of packet {mine.name}"
        self.fin.setdefault(p.src, p)
        other = self.fin.get(p.dst)
        if other is None:
            if self._handshake_ack(p) is not None:
                self.established = True
            return "FIN", (f"FIN set: {_endpoint_text(p.src)} has nothing more to send and starts closing "
                           f"(active close), FIN at seq {wire.seq_add(seg.seq, len(seg.payload))}{data}")
        if seg.ack is None or not wire.seq_ge(seg.ack, other.end):
            return "FIN (simultaneous close)", (
                f"FIN that does not acknowledge the FIN of packet {other.name}: "
                f"both sides close at once{data}")
        earlier = self.fin_acked_by.get(other.src)
        if earlier is not None:
            return "FIN (passive close)", (
                f"the second FIN: {_endpoint_text(p.src)} already acknowledged the other FIN in packet "
                f"{earlier.name} and now closes its own half{data}")
        self.fin_acked_by[other.src] = p
        return "FIN, ACK (passive close, combined)", (
            f"FIN set and ack {seg.ack} = the FIN's seq {wire.seq_add(other.end, -1)} + 1 (packet "
            f"{other.name}): acknowledges the other side's FIN and closes its own half in one segment{data}")

    def _other(self, p: DecodedPacket) -> tuple[str, str]:
        seg = p.seg
        if seg.ack is None:
            return "segment without ACK", (
                "neither SYN, RST nor ACK is set: only a SYN may omit the ACK bit (RFC 9293 §3.10.7.4)")
        data = f"; it also carries {len(seg.payload)} bytes of data" if seg.payload else ""
        handshake = self._handshake_ack(p)
        if handshake is not None:
            self.established = True
            return "third handshake segment (ACK)", handshake + data
        other_fin = self.fin.get(p.dst)
        if other_fin is not None and other_fin.src not in self.fin_acked_by \
                and wire.seq_ge(seg.ack, other_fin.end):
            self.fin_acked_by[other_fin.src] = p
            last = " (the last segment of the close)" if p.src in self.fin else ""
            return "ACK of FIN", (f"ack {seg.ack} = the FIN's seq {wire.seq_add(other_fin.end, -1)} + 1 "
                                  f"(packet {other_fin.name}){last}{data}")
        if seg.payload:
            return self._data(p)
        return self._pure_ack(p)

    def _data(self, p: DecodedPacket) -> tuple[str, str]:
        seg = p.seg
        last = wire.seq_add(p.end, -1)
        sent = self.sent_end.get(p.src)
        if sent is not None and wire.seq_le(p.end, sent[0]):
            return "retransmitted data", (
                f"bytes {seg.seq}..{last} were already sent (up to packet {sent[1].name})")
        return "data", (
            f"carries {len(seg.payload)} bytes of payload, seq {seg.seq}..{last}, and acks {seg.ack}")

    def _pure_ack(self, p: DecodedPacket) -> tuple[str, str]:
        seg = p.seg
        prev = self.last_ack.get(p.src)
        if prev is not None and prev.seg.ack == seg.ack and not prev.seg.payload \
                and not prev.seg.flags & (wire.SYN | wire.FIN):
            if prev.seg.window == seg.window:
                return "duplicate ACK", (f"the same ack {seg.ack} and window as packet {prev.name}, "
                                         "without data: the receiver is missing a segment")
            return "window update", (f"the same ack {seg.ack} as packet {prev.name} with window "
                                     f"{prev.seg.window} → {seg.window}")
        for q in self.sent.get(p.dst, []):
            if q.seg.seg_len and q.end == seg.ack:
                return "ACK", (f"ack {seg.ack} = seq {q.seg.seq} + {q.seg.seg_len} of packet {q.name}: "
                               "acknowledges it, without data")
        return "ACK", f"acknowledges everything before {seg.ack}, without data"


# ---------------------------------------------------------------------------------------------
# Output: text and JSON
# ---------------------------------------------------------------------------------------------


def tcpdump_line(d: DecodedPacket) -> str:
    """The packet as one tcpdump line (ports only for a bare TCP header)."""
    if d.ip is not None:
        return wire.format_tcpdump(d.ip)
    return wire.format_tcpdump(wire.IPPacket(4, "", "", d.seg))


def _describe_kind(d: DecodedPacket) -> str:
    n = len(d.data)
    if d.kind == "tcp":
        hidden = f"; the dump starts at offset 0x{d.start_offset:04x}" if d.start_offset else ""
        if d.start_offset == _TCP_AFTER_ETH_IPV4:
            hidden += ", after Ethernet (14) + IPv4 (20) headers"
        elif d.start_offset == _TCP_AFTER_ETH_IPV6:
            hidden += ", after Ethernet (14) + IPv6 (40) headers"
        return f"bare TCP header, {n} bytes (no IP header: checksum cannot be verified{hidden})"
    assert d.ip is not None
    ip = f"IPv{d.ip.version} packet"
    inner = f"IP header {d.ip.header_len} + TCP header {d.tcp_header_len} + payload {len(d.seg.payload)}"
    text = f"{ip}, {len(d.ip_bytes)} bytes ({inner})"
    if d.kind == "ethernet":
        text = f"Ethernet frame, {n} bytes, carrying an {text}"
    if d.trailing:
        text += f", then {d.trailing} bytes of padding"
    return text


def _row(name: str, value: str) -> str:
    return f"  {name:<21}{value}"


def _checksum_text(value: int, ok: bool | None, expected: int | None, why: str) -> str:
    if ok is None:
        return f"0x{value:04x} ({why})"
    if ok:
        return f"0x{value:04x} (correct)"
    return f"0x{value:04x} (WRONG: expected 0x{expected or 0:04x})"


def _ethernet_rows(eth: EthernetHeader) -> list[str]:
    ip = {ETHERTYPE_IPV4: "IPv4", ETHERTYPE_IPV6: "IPv6"}.get(eth.ethertype, "?")
    return [
        _row("destination MAC", eth.dst),
        _row("source MAC", eth.src),
        _row("ethertype", f"0x{eth.ethertype:04x} ({ip})"),
    ]


def _ip_rows(d: DecodedPacket) -> list[str]:
    ip = d.ip
    assert ip is not None
    raw = d.ip_bytes
    if ip.version == 4:
        flags = _ip4_flags(ip.frag)
        rows = [
            _row("IP version", "4"),
            _row("IP header length", f"{ip.header_len} bytes (IHL {ip.header_len // 4})"),
            _row("type of service", f"0x{ip.tos:02x} (DSCP {ip.tos >> 2}, ECN {ip.tos & 3})"),
            _row("total length", f"{int.from_bytes(raw[2:4], 'big')} bytes"),
            _row("identification", f"{ip.ident} (0x{ip.ident:04x})"),
            _row("IP flags", f"0x{ip.frag >> 13:x} ({', '.join(flags) or 'none'}), fragment offset "
                             f"{ip.frag & 0x1FFF}"),
            _row("time to live", str(ip.ttl)),
            _row("protocol", "6 (TCP)"),
            _row("header checksum", _checksum_text(ip.ip_checksum or 0, d.ip_checksum_ok,
                                                   d.ip_checksum_expected, "")),
            _row("source address", ip.src),
            _row("destination address", ip.dst),
        ]
        if ip.ip_options:
            rows.append(_row("IP options", ip.ip_options.hex(" ")))
        return rows
    rows = [
        _row("IP version", "6"),
        _row("traffic class", f"0x{ip.tos:02x} (DSCP {ip.tos >> 2}, ECN {ip.tos & 3})"),
        _row("flow label", f"0x{ip.flow:05x}"),
        _row("payload length", f"{int.from_bytes(raw[4:6], 'big')} bytes"),
        _row("next header", f"{ip.ext_first}" + (" (TCP)" if ip.ext_first == 6 else "")),
        _row("hop limit", str(ip.ttl)),
        _row("source address", ip.src),
        _row("destination address", ip.dst),
    ]
    if ip.ext_headers:
        rows.append(_row("extension headers", ip.ext_headers.hex(" ")))
    return rows


def _ip4_flags(frag: int) -> list[str]:
    names = []
    if frag & 0x8000:
        names.append("reserved bit")
    if frag & 0x4000:
        names.append("DF")
    if frag & 0x2000:
        names.append("MF")
    return names


def _tcp_rows(d: DecodedPacket) -> list[str]:
    seg = d.seg
    flags = seg.flags
    ack = f"{seg.ack} (0x{seg.ack:08x})" if seg.ack is not None else \
        f"{seg.raw_ack} (ACK bit off: the field is not meaningful)"
    hlen = d.tcp_header_len
    rows = [
        _row("source port", _port_text(seg.src_port)),
        _row("destination port", _port_text(seg.dst_port)),
        _row("sequence number", f"{seg.seq} (0x{seg.seq:08x})"),
        _row("acknowledgment", ack),
        _row("header length", f"{hlen} bytes (data offset {hlen // 4})"),
    ]
    if seg.reserved:
        rows.append(_row("reserved bits", f"0x{seg.reserved:x} (should be zero)"))
    names = wire.format_flags(flags, sep=", ") or "none"
    rows += [
        _row("flags", f"0x{flags:02x} = {flags >> 4:04b} {flags & 15:04b} = {names}"),
        _row("window", str(seg.window)),
        _row("checksum", _checksum_text(seg.checksum or 0, d.tcp_checksum_ok, d.tcp_checksum_expected,
                                        "not verifiable without the IP header")),
        _row("urgent pointer", _urgent_text(seg)),
    ]
    opts = _options_with_raw(d)
    if not opts:
        rows.append(_row("options", "none"))
    for i, (opt, raw) in enumerate(opts):
        raw_text = raw.hex(" ")
        rows.append(_row("options" if i == 0 else "", f"{raw_text:<31} {wire.format_option(opt, 'long')}"))
    payload = seg.payload
    text = f"{len(payload)} bytes"
    if payload:
        shown = payload[:16]
        ascii_text = "".join(chr(b) if 32 <= b < 127 else "." for b in shown)
        more = " ..." if len(payload) > 16 else ""
        text += f": {shown.hex(' ')}{more}  {ascii_text!r}"
    rows.append(_row("payload", text))
    return rows


def _urgent_text(seg: wire.Segment) -> str:
    if seg.has(wire.URG):
        return f"{seg.urg} (URG set: urgent data ends before seq {wire.seq_add(seg.seq, seg.urg)})"
    return f"{seg.urg} (URG bit off: ignored)" if seg.urg else "0"


def format_packet(d: DecodedPacket) -> str:
    lines = [f"packet {d.name}: {_describe_kind(d)}"]
    if d.ethernet is not None:
        lines += _ethernet_rows(d.ethernet)
    if d.ip is not None:
        lines += _ip_rows(d)
    lines += _tcp_rows(d)
    lines.append(_row("tcpdump", tcpdump_line(d)))
    return "\n".join(lines)


def _connection_title(c: PacketExchange) -> str:
    if c.client is not None and c.server is not None:
        service = _SERVICES.get(c.server[1])
        what = f" ({service[1]})" if service else ""
        return (f"connection {c.number}: from {_endpoint_text(c.client)} to {_endpoint_text(c.server)}{what};"
                f" {_endpoint_text(c.client)} sent the SYN")
    a, b = c.endpoints
    return f"connection {c.number}: between {_endpoint_text(a)} and {_endpoint_text(b)} (no SYN seen)"


def format_analysis(connections: Sequence[PacketExchange]) -> str:
    lines = ["analysis"]
    for c in connections:
        lines.append(f"  {_connection_title(c)}")
        for step, r in enumerate(c.roles, start=1):
            p = r.packet
            lines.append(f"    {step}. packet {p.name}  {p.seg.src_port} > {p.seg.dst_port}  {r.role}")
            lines.append(f"         {r.reason}")
        lines.append("    order: " + " → ".join(r.packet.name for r in c.roles))
    return "\n".join(lines)


def format_report(packets: Sequence[DecodedPacket], connections: Sequence[PacketExchange]) -> str:
    """The text output: each packet, then the analysis when there are several."""
    parts = [format_packet(d) for d in packets]
    if len(packets) > 1:
        parts.append(format_analysis(connections))
    return "\n\n".join(parts) + "\n"


def _option_json(opt: wire.Option, raw: bytes) -> dict[str, object]:
    kind = raw[0]
    out: dict[str, object] = {"kind": kind, "name": "", "raw": raw.hex()}
    if isinstance(opt, wire.Mss):
        out.update(name="MSS", value=opt.value)
    elif isinstance(opt, wire.WindowScale):
        out.update(name="window scale", value=opt.shift, multiplier=1 << min(opt.shift, 30))
    elif isinstance(opt, wire.SackPermitted):
        out.update(name="SACK permitted")
    elif isinstance(opt, wire.Sack):
        out.update(name="SACK", blocks=[[left, right] for left, right in opt.blocks])
    elif isinstance(opt, wire.Timestamps):
        out.update(name="timestamps", tsval=opt.tsval, tsecr=opt.tsecr)
    elif isinstance(opt, wire.Nop):
        out.update(name="NOP")
    elif isinstance(opt, wire.Eol):
        out.update(name="EOL", padding=opt.padding.hex())
    else:
        out.update(name="unknown", data=opt.data.hex())
    return out


def _ip_json(d: DecodedPacket) -> dict[str, object] | None:
    ip = d.ip
    if ip is None:
        return None
    raw = d.ip_bytes
    if ip.version == 4:
        return {
            "version": 4, "header_length": ip.header_len, "tos": ip.tos,
            "total_length": int.from_bytes(raw[2:4], "big"), "identification": ip.ident,
            "flags": _ip4_flags(ip.frag), "fragment_offset": ip.frag & 0x1FFF, "ttl": ip.ttl,
            "protocol": 6, "checksum": ip.ip_checksum, "checksum_ok": d.ip_checksum_ok,
            "checksum_expected": d.ip_checksum_expected, "src": ip.src, "dst": ip.dst,
            "options": ip.ip_options.hex(),
        }
    return {
        "version": 6, "header_length": ip.header_len, "traffic_class": ip.tos, "flow_label": ip.flow,
        "payload_length": int.from_bytes(raw[4:6], "big"), "next_header": ip.ext_first,
        "hop_limit": ip.ttl, "src": ip.src, "dst": ip.dst, "extension_headers": ip.ext_headers.hex(),
    }


def _packet_json(d: DecodedPacket) -> dict[str, object]:
    seg = d.seg
    eth = d.ethernet
    return {
        "index": d.index,
        "label": d.label,
        "kind": d.kind,
        "length": len(d.data),
        "start_offset": d.start_offset,
        "ethernet": None if eth is None else {"dst": eth.dst, "src": eth.src, "ethertype": eth.ethertype},
        "ip": _ip_json(d),
        "tcp": {
            "src_port": seg.src_port,
            "dst_port": seg.dst_port,
            "seq": seg.seq,
            "ack": seg.ack,
            "raw_ack": seg.ack if seg.ack is not None else seg.raw_ack,
            "header_length": d.tcp_header_len,
            "reserved": seg.reserved,
            "flags": seg.flags,
            "flag_names": wire.flag_names(seg.flags),
            "window": seg.window,
            "checksum": seg.checksum,
            "checksum_ok": d.tcp_checksum_ok,
            "checksum_expected": d.tcp_checksum_expected,
            "urgent": seg.urg,
            "options": [_option_json(opt, raw) for opt, raw in _options_with_raw(d)],
            "payload_length": len(seg.payload),
            "payload": seg.payload.hex(),
        },
        "trailing_bytes": d.trailing,
        "tcpdump": tcpdump_line(d),
    }


def _endpoint_json(ep: Endpoint | None) -> dict[str, object] | None:
    return None if ep is None else {"address": ep[0], "port": ep[1]}


def report_json(packets: Sequence[DecodedPacket], connections: Sequence[PacketExchange]) -> dict[str, object]:
    """The JSON document: ``packets`` in input order, ``connections`` and ``analysis`` in causal
    order (``analysis[i].packet`` is the packet's label, or its 1-based position without one)."""
    return {
        "packets": [_packet_json(d) for d in packets],
        "connections": [
            {
                "connection": c.number,
                "client": _endpoint_json(c.client),
                "server": _endpoint_json(c.server),
                "service": _SERVICES[c.server[1]][1] if c.server and c.server[1] in _SERVICES else None,
                "order": [r.packet.name.strip("()") for r in c.roles],
            }
            for c in connections
        ],
        "analysis": [
            {"packet": r.packet.name.strip("()"), "index": r.packet.index, "connection": c.number,
             "role": r.role, "reason": r.reason}
            for c in connections for r in c.roles
        ],
    }


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``decode`` subcommand."""
    p = subparsers.add_parser(
        "decode",
        help="explain TCP segments given as hex (hex pane, tcpdump -xx, or bare hex)",
        description=(
            "Decode TCP segments from hex: a Wireshark-style hex pane (offset, hex, ASCII, optional "
            "(1) labels), tcpdump -x/-xx output, or bare hex (packets separated by blank lines or "
            "given as separate arguments). Shows every field with its meaning, checks checksums "
            "when the IP header is present, and orders several packets by their seq/ack relations."
        ),
    )
    p.add_argument("hex", nargs="*", metavar="HEX",
                   help="hex bytes, or a pcap/pcapng file; '-' or nothing reads standard input")
    p.add_argument("-f", "--file", metavar="FILE",
                   help="read the hex (or the packets of a pcap/pcapng capture) from FILE ('-' for "
                        "standard input)")
    p.add_argument("--json", action="store_true", help="print a JSON document instead of text")
    p.set_defaults(handler=run)


def _args_text(parts: Sequence[str]) -> str:
    """Command-line hex: single bytes/groups (``45 00 00 3c``) form one packet; longer
    arguments are one packet each."""
    if len(parts) > 1 and all(len(part.strip()) <= 8 for part in parts):
        return " ".join(parts)
    return "\n\n".join(parts)


def _read_input(args: argparse.Namespace) -> str:
    hex_args: list[str] = list(args.hex)
    if args.file is not None and hex_args:
        raise DecodeError("give the hex either as arguments or with --file, not both")
    if args.file not in (None, "-"):
        try:
            with open(args.file, encoding="utf-8") as fh:
                return fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise DecodeError(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}") from None
    if args.file == "-" or not hex_args or hex_args == ["-"]:
        try:
            return sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"standard input is not UTF-8 text: {exc}") from None
    return _args_text(hex_args)


def _capture_file(args: argparse.Namespace) -> str | None:
    """The capture file named on the command line, if the input is one (by its magic number)."""
    names = [args.file] if args.file not in (None, "-") else list(args.hex)
    if len(names) != 1 or not os.path.isfile(names[0]):
        return None
    try:
        with open(names[0], "rb") as fh:
            magic = fh.read(4)
    except OSError:
        return None
    return names[0] if magic in _CAPTURE_MAGICS else None


_CAPTURE_MAGICS: Final = frozenset((b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                                    b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a"))


def decode_capture(path: str) -> tuple[list[DecodedPacket], int]:
    """Decode the TCP packets of a pcap/pcapng file: each labelled with its frame number. Frames
    that are not TCP over IP, or cut by the snap length, are skipped; returns how many."""
    from synack.pcap import PcapError, ip_offset, iter_pcap

    packets: list[DecodedPacket] = []
    skipped = 0
    try:
        for frame, rec in enumerate(iter_pcap(path), start=1):
            at = ip_offset(rec.data, rec.linktype)
            if at is None:
                skipped += 1
                continue
            try:
                packets.append(decode_packet(HexPacket(str(frame), 0, rec.data[at:]), frame))
            except DecodeError:
                skipped += 1
    except PcapError as exc:
        raise DecodeError(f"{path}: {exc}") from None
    except OSError as exc:
        raise DecodeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not packets:
        raise DecodeError(f"{path}: no TCP packet that can be decoded ({skipped} frames skipped)")
    return packets, skipped


def run(args: argparse.Namespace) -> int:
    """The ``decode`` handler: 0 on success, 2 (with one line on stderr) on bad input."""
    try:
        capture = _capture_file(args)
        if capture is not None:
            packets, skipped = decode_capture(capture)
            if skipped:
                print(f"synack decode: {skipped} frames of {capture} skipped (not TCP over IP, or cut by "
                      "the snap "
                      "length)", file=sys.stderr)
        else:
            packets = decode_text(_read_input(args))
    except DecodeError as exc:
        print(f"synack decode: error: {exc}", file=sys.stderr)
        return 2
    connections = analyze(packets)
    if args.json:
        sys.stdout.write(json.dumps(report_json(packets, connections), indent=2) + "\n")
    else:
        sys.stdout.write(format_report(packets, connections))
    return 0
