"""Packet lines against live packets: the relative numbering of a run, the inbound packets built
from script lines, and the comparison of what the stack sent with what a line expects
(``../shared/docs/packetdrill-language.md``, "TCP packet lines" and "Sequence numbers are
relative").

Numbers, as packetdrill has them: the script's inbound sequence numbers are sent as written (the
remote ISN is what the script's SYN says); the local ISN is learnt from the first SYN or SYN,ACK
the stack sends on a flow (again after that flow was synchronized: a new incarnation), and every
outbound sequence number and every inbound ACK and SACK block is ``local ISN + script value``; an
outbound ACK is compared as written (it counts in the script's own space) and only when the ACK bit
is expected — ``> R 1:1(0)`` requires a raw ack field of 0; the ``<SEQ=0>`` of a RST,ACK answering
a segment without ACK is 0 in every flow (zero is in nobody's space). An inbound ``TS ecr`` is mapped to the
live clock by the offset learnt from the last outbound ``TS val`` matched.

Checks, by :class:`Checks` (the profile): flags bit by bit, sequence number, ACK, payload length,
urgent pointer, checksum, ports and addresses always; the window only when the line gives ``win``
and the profile checks windows; options exactly (kind, order, values; ``TS val`` never, as
packetdrill) unless ``<...>`` — a *relaxed* profile checks only that each option the line names
(NOPs and EOLs aside) is present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from synack.core.wire import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    Eol,
    IPPacket,
    Mss,
    Nop,
    Option,
    Sack,
    SackPermitted,
    Segment,
    Timestamps,
    UnknownOption,
    WindowScale,
    build_packet,
)
from synack.drill.script import OptionSpec, Packet

__all__ = ["Checks", "Flow", "Numbers", "build_inbound", "compare", "describe", "flag_bits", "flag_text"]

_MASK: Final = 0xFFFFFFFF
_FLAG_BITS: Final = {"F": FIN, "S": SYN, "R": RST, "P": PSH, ".": ACK, "U": URG, "E": ECE, "W": CWR}
_FLAG_ORDER: Final = "FSRP.UEW"


def flag_bits(text: str) -> int:
    """``S.`` -> SYN|ACK; ``-`` -> 0."""
    bits = 0
    for ch in text:
        bits |= _FLAG_BITS.get(ch, 0)
    return bits


def flag_text(bits: int) -> str:
    """The script spelling of a flag byte (``S.``, ``FP.``; ``-`` for none)."""
    out = "".join(ch for ch in _FLAG_ORDER if bits & _FLAG_BITS[ch])
    return out or "-"


@dataclass(frozen=True, slots=True)
class Checks:
    """What a profile compares beyond flags, numbers, lengths and timing."""

    windows: bool = True
    option_values: bool = True


@dataclass(slots=True)
class Flow:
    """The test connection: addresses and ports (a port None until learnt from a packet)."""

    local_addr: str
    remote_addr: str
    local_port: int | None
    remote_port: int


@dataclass(slots=True)
class Numbers:
    """The relative numbering of a run: the local ISN of each flow, which flows went past their
    handshake (synchronized, or reset: a SYN after that starts a new connection, whose ISN is
    learnt again; a retransmitted SYN before it must keep the ISN), the TS val offset."""

    isn: dict[tuple[int, int], int] = field(default_factory=dict)
    synced: set[tuple[int, int]] = field(default_factory=set)
    ts_offset: int | None = None

    def local(self, ports: tuple[int, int], value: int) -> int:
        """A script number in the local space -> live (``local ISN + value``)."""
        return (self.isn.get(ports, 0) + value) & _MASK

    def script_local(self, ports: tuple[int, int], live: int) -> int:
        return (live - self.isn.get(ports, 0)) & _MASK

    def learn(self, ports: tuple[int, int], line: Packet, seg: Segment) -> None:
        """After an outbound line matched: a SYN sets the flow's ISN, an ACK synchronizes it, a
        TS option sets the TS offset."""
        if seg.flags & SYN and (ports not in self.isn or ports in self.synced):
            self.isn[ports] = (seg.seq - line.start) & _MASK
            self.synced.discard(ports)
        elif (seg.flags & ACK and not seg.flags & SYN) or seg.flags & RST:
            self.synced.add(ports)
        ts = seg.option(Timestamps)
        want = _ts_spec(line.options)
        if ts is not None and want is not None:
            self.ts_offset = (ts.tsval - want[0]) & _MASK


def _ts_spec(opts: tuple[OptionSpec, ...] | None) -> tuple[int, int] | None:
    for o in opts or ():
        if o.name == "TS":
            return o.values[0], o.values[1]
    return None


# ---------------------------------------------------------------------------------------------
# Inbound
# ---------------------------------------------------------------------------------------------


def _inbound_option(o: OptionSpec, ports: tuple[int, int], nums: Numbers) -> Option:
    if o.name == "mss":
        return Mss(o.values[0])
    if o.name == "wscale":
        return WindowScale(o.values[0])
    if o.name == "sackOK":
        return SackPermitted()
    if o.name == "sack":
        v = o.values
        pairs = zip(v[0::2], v[1::2], strict=True)
        return Sack(tuple((nums.local(ports, a), nums.local(ports, b)) for a, b in pairs))
    if o.name == "TS":
        ecr = o.values[1]
        if nums.ts_offset is not None and ecr:
            ecr = (ecr + nums.ts_offset) & _MASK
        return Timestamps(o.values[0], ecr)
    if o.name == "eol":
        return Eol()
    return Nop()


def build_inbound(line: Packet, flow: Flow, nums: Numbers) -> tuple[bytes, Segment]:
    """The IP packet an inbound line injects (payload zeros), and its segment."""
    assert flow.local_port is not None
    sport, dport = line.ports if line.ports is not None else (flow.remote_port, flow.local_port)
    ports = (dport, sport)
    flags = flag_bits(line.flags)
    ack: int | None = None
    raw_ack = 0
    if flags & ACK:
        ack = nums.local(ports, line.ack or 0)
    elif line.ack is not None:
        raw_ack = line.ack & _MASK
    opts = tuple(_inbound_option(o, ports, nums) for o in line.options or ())
    seg = Segment(sport, dport, line.start & _MASK, ack, flags, line.win or 0, opts, bytes(line.length),
                  urg=line.urg or 0, raw_ack=raw_ack)
    return build_packet(flow.remote_addr, flow.local_addr, seg), seg


# ---------------------------------------------------------------------------------------------
# Outbound
# ---------------------------------------------------------------------------------------------


def compare(line: Packet, pkt: IPPacket, flow: Flow, nums: Numbers, checks: Checks, *,
            length: int | None = None, checksum_ok: bool = True) -> list[str]:
    """How ``pkt`` differs from what ``line`` expects (empty: it matches). ``length`` overrides
    the payload length compared (the sum of TSO-style pieces)."""
    seg = pkt.seg
    diffs: list[str] = []
    want_ports = _ports(line, flow)
    got_ports = (seg.src_port, seg.dst_port)
    if want_ports[0] is not None and got_ports != want_ports:
        diffs.append(f"ports {got_ports[0]}>{got_ports[1]}, expected {want_ports[0]}>{want_ports[1]}")
    if (pkt.src, pkt.dst) != (flow.local_addr, flow.remote_addr):
        diffs.append(f"addresses {pkt.src} > {pkt.dst}, expected {flow.local_addr} > {flow.remote_addr}")
    want_flags = flag_bits(line.flags)
    if seg.flags != want_flags:
        diffs.append(f"flags {flag_text(seg.flags)}, expected {line.flags}")
    key = (seg.src_port, seg.dst_port)
    if not (want_flags & SYN and seg.flags & SYN and (key not in nums.isn or key in nums.synced)):
        got = nums.script_local(key, seg.seq) if not _reset_ack_zero(seg) else 0
        if got != line.start:
            diffs.append(f"sequence number {got}, expected {line.start}")
    n = len(seg.payload) if length is None else length
    if n != line.length:
        diffs.append(f"payload length {n}, expected {line.length}")
    diffs.extend(_compare_ack(line, seg, want_flags))
    if checks.windows and line.win is not None and seg.window != line.win:
        diffs.append(f"window {seg.window}, expected {line.win}")
    if seg.urg != (line.urg or 0):
        diffs.append(f"urgent pointer {seg.urg}, expected {line.urg or 0}")
    if line.options is not None:
        diffs.extend(_compare_options(line.options, seg.options, checks))
    if not checksum_ok:
        diffs.append("bad TCP checksum")
    return diffs


def _reset_ack_zero(seg: Segment) -> bool:
    """``<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`` (RFC 9293 §3.10.7.1): zero is in nobody's
    sequence space, so it is compared as 0 whatever the flow's ISN (as the diagrams show it)."""
    return seg.seq == 0 and bool(seg.flags & RST) and seg.ack is not None


def _ports(line: Packet, flow: Flow) -> tuple[int | None, int | None]:
    if line.ports is not None:
        return line.ports
    if flow.local_port is None:
        return None, None
    return flow.local_port, flow.remote_port


def _compare_ack(line: Packet, seg: Segment, want_flags: int) -> list[str]:
    if want_flags & ACK:
        want = line.ack or 0
        if seg.ack is not None and seg.ack != want & _MASK:
            return [f"ack {seg.ack}, expected {want}"]
        return []
    raw = seg.raw_ack if seg.ack is None else seg.ack
    want = line.ack or 0
    if raw != want:
        return [f"ack field {raw}, expected {want} (the ACK bit is off)"]
    return []


def _option_kinds(opts: tuple[Option, ...]) -> list[str]:
    return [_NAMES.get(type(o), "?") for o in opts]


_NAMES: Final[dict[type, str]] = {Mss: "mss", WindowScale: "wscale", SackPermitted: "sackOK", Sack: "sack",
                                  Timestamps: "TS", Nop: "nop", Eol: "eol", UnknownOption: "unknown"}


def _compare_options(want: tuple[OptionSpec, ...], got: tuple[Option, ...], checks: Checks) -> list[str]:
    shown = f"<{format_options(got)}>" if got else "no options"
    if not checks.option_values:
        names = _option_kinds(got)
        missing = [o.name for o in want if o.name not in ("nop", "eol") and o.name not in names]
        return [f"options {shown}: {', '.join(missing)} missing"] if missing else []
    expected = ",".join(_spec_text(o) for o in want)
    if len(want) != len(got):
        return [f"options {shown}, expected <{expected}>" if want else f"options {shown}, expected none"]
    for w, g in zip(want, got, strict=True):
        if not _option_matches(w, g):
            return [f"options {shown}, expected <{expected}>"]
    return []


def _option_matches(w: OptionSpec, g: Option) -> bool:
    if _NAMES.get(type(g)) != w.name:
        return False
    if isinstance(g, Mss):
        return g.value == w.values[0]
    if isinstance(g, WindowScale):
        return g.shift == w.values[0]
    if isinstance(g, Sack):
        flat = tuple(x for block in g.blocks for x in block)
        return flat == tuple(v & _MASK for v in w.values)
    if isinstance(g, Timestamps):
        return g.tsecr == w.values[1]  # TS val is not checked (packetdrill's default)
    return True


def _spec_text(o: OptionSpec) -> str:
    if o.name == "sack":
        return "sack " + " ".join(f"{o.values[i]}:{o.values[i + 1]}" for i in range(0, len(o.values), 2))
    if o.name == "TS":
        return f"TS val {o.values[0]} ecr {o.values[1]}"
    return " ".join([o.name, *map(str, o.values)])


def format_options(opts: tuple[Option, ...]) -> str:
    """Options in script syntax (``mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7``)."""
    out = []
    for o in opts:
        if isinstance(o, Mss):
            out.append(f"mss {o.value}")
        elif isinstance(o, WindowScale):
            out.append(f"wscale {o.shift}")
        elif isinstance(o, SackPermitted):
            out.append("sackOK")
        elif isinstance(o, Sack):
            out.append("sack " + " ".join(f"{a}:{b}" for a, b in o.blocks))
        elif isinstance(o, Timestamps):
            out.append(f"TS val {o.tsval} ecr {o.tsecr}")
        elif isinstance(o, Nop):
            out.append("nop")
        elif isinstance(o, Eol):
            out.append("eol")
        else:
            out.append(f"opt-{o.kind}")
    return ",".join(out)


def describe(pkt: IPPacket, nums: Numbers, *, outbound: bool = True) -> str:
    """A live packet in script syntax, numbers relative as the script would write them
    (``> P. 1:1001(1000) ack 1 win 65535 <nop,nop,TS val 5 ecr 100>``)."""
    seg = pkt.seg
    key = (seg.src_port, seg.dst_port) if outbound else (seg.dst_port, seg.src_port)
    if outbound:
        start = 0 if _reset_ack_zero(seg) else nums.script_local(key, seg.seq)
        ack = seg.ack
    else:
        start = seg.seq
        ack = None if seg.ack is None else nums.script_local(key, seg.ack)
    n = len(seg.payload)
    text = f"{'>' if outbound else '<'} {flag_text(seg.flags)} {start}:{(start + n) & _MASK}({n})"
    if ack is not None:
        text += f" ack {ack}"
    elif seg.raw_ack:
        text += f" ack {seg.raw_ack}"
    text += f" win {seg.window}"
    if seg.urg:
        text += f" urg {seg.urg}"
    if seg.options:
        text += f" <{format_options(seg.options)}>"
    return text
