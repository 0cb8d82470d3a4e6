"""Structured records of everything that happens on a simulated network, with virtual timestamps.

A :class:`Trace` is a list of frozen records written by two sources:

* the network (:mod:`synack.sim`): every packet sent, delivered, dropped (and why), duplicated,
  held back or corrupted, as :class:`PacketRecord`; host crashes, restarts and partitions as
  :class:`NoteRecord`;
* the hosts, through :meth:`Trace.host_record` installed as each :class:`~synack.host.Host`'s
  tracer: every state change (:class:`StateRecord`), timer firing (:class:`TimerRecord`), user
  call (:class:`CallRecord`) and drop inside a host (:class:`HostDropRecord`).

The hosts' own "in" and "out" records are not kept: the network's ``deliver`` and ``send`` records
describe the same segments, with the packet bytes.

Record kinds (the ``kind`` field):

==============  ==================================================================================
``send``        a host put a packet on the wire (``src`` → ``dst``; ``dst`` is ``""`` without route)
``deliver``     a packet reached ``dst`` and was handed to it
``drop``        a packet was lost; ``reason`` is one of ``loss``, ``queue full``, ``partition``,
                ``scripted``, ``host down``, ``mtu``, ``no route``, or ``corrupt: bad checksum``
                (``corrupt: malformed`` when the flipped bit was in the data offset and the header
                no longer parses) — the corrupt ones are counted by the receiving host
``duplicate``   the link made another copy (``copy`` ≥ 1) of packet ``pid``
``hold``        a packet was delayed beyond the link's delay by ``extra`` seconds: ``reason`` is
                ``reorder`` or ``scripted``
``corrupt``     the link flipped one bit of the TCP segment (``reason`` says which);
                ``packet`` is the corrupted copy
``state``       a connection changed state (``old`` → ``new``, ``why``)
``timer``       a connection's timer fired (``timer``, ``action``)
``call``        a user call on a connection (``call``: ``OPEN active``, ``CLOSE``, ``ABORT`` ...)
``host_drop``   a host discarded a segment (``reason``; ``conn`` is None for host-level drops)
others          :class:`NoteRecord`: ``listen``, ``unlisten``, ``reset`` (a host answered a segment
                for no connection), ``crash``, ``restart``, ``partition``, ``heal`` ...
==============  ==================================================================================

Exports: JSON lines (one object per record, keys in a fixed order, packet bytes in hex) and pcap
files (timestamps from the virtual clock, so the same run gives the same bytes). For renderers,
:meth:`Trace.segments` gives each packet with its fate and :meth:`Trace.states` the state timeline
of every connection of a host. No wall clock is read anywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TextIO

from synack.pcap import PcapWriter
from synack.wire import IPPacket, WireError, format_tcpdump, parse_packet

__all__ = [
    "CallRecord",
    "ConnKey",
    "Fate",
    "HostDropRecord",
    "NoteRecord",
    "PacketRecord",
    "Record",
    "SegmentLine",
    "StateRecord",
    "TimerRecord",
    "Trace",
]

ConnKey = tuple[str, int, str, int]
"""A connection as (local address, local port, remote address, remote port)."""


@dataclass(frozen=True, slots=True)
class PacketRecord:
    """A packet on the network: ``send``, ``deliver``, ``drop``, ``duplicate``, ``hold`` or
    ``corrupt``. ``pid`` numbers the packets a host sent (in order, from 1); ``copy`` is 0 for
    the packet itself and 1, 2 ... for the copies a link made. ``packet`` holds the bytes as they
    are at that point (a corrupted copy's bytes are the corrupted ones). ``extra`` is the added
    delay of a ``hold``."""

    t: float
    kind: str
    src: str
    dst: str
    pid: int
    copy: int
    packet: bytes
    reason: str = ""
    extra: float = 0.0

    @property
    def parsed(self) -> IPPacket:
        """The packet parsed without checking checksums (a corrupted copy parses as far as it can;
        a header that no longer parses raises :class:`~synack.wire.WireError`)."""
        return parse_packet(self.packet, verify=False)

    @property
    def summary(self) -> str:
        """One tcpdump-style line (absolute sequence numbers)."""
        try:
            return format_tcpdump(self.parsed)
        except WireError as exc:
            return f"unparsable packet: {exc}"

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "src": self.src, "dst": self.dst, "pid": self.pid,
                "copy": self.copy, "reason": self.reason, "extra": self.extra, "summary": self.summary,
                "packet": self.packet.hex()}


@dataclass(frozen=True, slots=True)
class StateRecord:
    """A state change of connection ``conn`` on ``host``, with the RFC's name of the event."""

    t: float
    kind: str
    host: str
    conn: ConnKey
    old: str
    new: str
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "conn": list(self.conn),
                "old": self.old, "new": self.new, "why": self.why}


@dataclass(frozen=True, slots=True)
class TimerRecord:
    """A timer of connection ``conn`` fired (``timer``: retransmit, time-wait, keepalive ...)."""

    t: float
    kind: str
    host: str
    conn: ConnKey
    timer: str
    action: str

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "conn": list(self.conn),
                "timer": self.timer, "action": self.action}


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A user call on connection ``conn``."""

    t: float
    kind: str
    host: str
    conn: ConnKey
    call: str

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "conn": list(self.conn),
                "call": self.call}


@dataclass(frozen=True, slots=True)
class HostDropRecord:
    """A host discarded a segment; ``conn`` is None when no connection was involved (a bad
    checksum, a RST for no connection, a full backlog ...)."""

    t: float
    kind: str
    host: str
    conn: ConnKey | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host,
                "conn": None if self.conn is None else list(self.conn), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class NoteRecord:
    """Anything else about a host: ``listen``/``unlisten`` (``detail`` = address:port), ``reset``
    (a RST for a segment that had no connection; ``detail`` = why), ``crash``, ``restart``,
    ``partition``, ``heal``, and any record kind a host invents later (``detail`` lists its
    fields)."""

    t: float
    kind: str
    host: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "detail": self.detail}


Record = PacketRecord | StateRecord | TimerRecord | CallRecord | HostDropRecord | NoteRecord


@dataclass(frozen=True, slots=True)
class Fate:
    """What became of one copy of a packet: ``status`` is ``delivered``, ``dropped`` or
    ``in flight`` (the trace ended first); ``t`` is when it arrived or was dropped (None while in
    flight); ``reason`` is the drop reason; ``held`` is the extra delay it was given (0 if none)."""

    status: str
    t: float | None
    reason: str
    pid: int
    copy: int
    held: float = 0.0

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"


class SegmentLine(NamedTuple):
    """One packet copy as a renderer draws it: sent at ``t`` by ``src`` towards ``dst``."""

    t: float
    src: str
    dst: str
    packet: IPPacket
    fate: Fate


_HOST_SKIPPED = frozenset(("in", "out"))


class Trace:
    """The records of one run, in the order they happened (which is also time order)."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: list[Record] = []

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def append(self, record: Record) -> None:
        self.records.append(record)

    def of_kind(self, *kinds: str) -> list[Record]:
        """The records of the given kinds, in order."""
        return [r for r in self.records if r.kind in kinds]

    def packets(self, kind: str = "send") -> list[PacketRecord]:
        """The packet records of one kind (``send``, ``deliver``, ``drop`` ...), in order."""
        return [r for r in self.records if isinstance(r, PacketRecord) and r.kind == kind]

    # -------------------------------------------------------------------------------------
    # The hosts' side
    # -------------------------------------------------------------------------------------

    def host_record(self, rec: dict[str, Any]) -> None:
        """A :class:`~synack.host.Host` tracer: turn the host's dict record into a typed one."""
        kind = rec["kind"]
        if kind in _HOST_SKIPPED:
            return
        t = rec["t"]
        host = rec["host"]
        conn = rec.get("conn")
        out: Record
        if kind == "state" and conn is not None:
            out = StateRecord(t, kind, host, conn, str(rec["old"]), str(rec["new"]), rec["why"])
        elif kind == "timer" and conn is not None:
            out = TimerRecord(t, kind, host, conn, rec["timer"], rec["action"])
        elif kind == "call" and conn is not None:
            out = CallRecord(t, kind, host, conn, rec["call"])
        elif kind == "drop":
            out = HostDropRecord(t, "host_drop", host, conn, rec["reason"])
        elif kind == "reset":
            out = NoteRecord(t, kind, host, str(rec.get("reason", "")))
        elif kind in ("listen", "unlisten"):
            out = NoteRecord(t, kind, host, f"{rec.get('addr', '*')}:{rec.get('port', '')}")
        else:
            rest = {k: v for k, v in rec.items() if k not in ("t", "host", "kind")}
            out = NoteRecord(t, kind, host, " ".join(f"{k}={rest[k]}" for k in sorted(rest)))
        self.records.append(out)

    # -------------------------------------------------------------------------------------
    # Export
    # -------------------------------------------------------------------------------------

    def jsonl(self) -> Iterator[str]:
        """Each record as one line of JSON (no newline), keys in a fixed order."""
        dumps = json.dumps
        for r in self.records:
            yield dumps(r.to_dict(), ensure_ascii=False)

    def to_jsonl(self, dest: str | os.PathLike[str] | TextIO) -> int:
        """Write one JSON object per line to a path or a text file; returns the number of lines."""
        if isinstance(dest, (str, os.PathLike)):
            with open(dest, "w", encoding="utf-8") as f:
                return self._write_jsonl(f)
        return self._write_jsonl(dest)

    def _write_jsonl(self, f: TextIO) -> int:
        n = 0
        for line in self.jsonl():
            f.write(line)
            f.write("\n")
            n += 1
        return n

    def to_pcap(self, path: str | os.PathLike[str], *, when: str = "sent") -> int:
        """Write a pcap (raw IP) with virtual timestamps; returns the number of packets.

        ``when="sent"``: every packet as a host sent it, at the time it left (one record per
        ``send``). ``when="delivered"``: every packet copy as it reached a host, at its arrival
        time — duplicates appear twice, and a corrupted copy appears with its flipped bit (and a
        bad checksum) because it did arrive, even though the host then dropped it."""
        if when == "sent":
            wanted = [(r.t, r.packet) for r in self.records
                      if isinstance(r, PacketRecord) and r.kind == "send"]
        elif when == "delivered":
            wanted = [(r.t, r.packet) for r in self.records
                      if isinstance(r, PacketRecord) and (r.kind == "deliver" or (
                          r.kind == "drop" and r.reason.startswith("corrupt")))]
        else:
            raise ValueError(f"when must be 'sent' or 'delivered', not {when!r}")
        with PcapWriter(path) as w:
            for t, pkt in wanted:
                w.write(pkt, t)
            return w.packets_written

    # -------------------------------------------------------------------------------------
    # Views for renderers
    # -------------------------------------------------------------------------------------

    def segments(self) -> Iterator[SegmentLine]:
        """Every packet copy in the order it was sent (a duplicate right after the packet it
        copies), parsed, with its fate."""
        order: list[tuple[int, int]] = []
        sent: dict[int, PacketRecord] = {}
        fates: dict[tuple[int, int], tuple[str, float | None, str]] = {}
        held: dict[tuple[int, int], float] = {}
        for r in self.records:
            if not isinstance(r, PacketRecord):
                continue
            key = (r.pid, r.copy)
            kind = r.kind
            if kind == "send":
                sent[r.pid] = r
                order.append(key)
                fates[key] = ("in flight", None, "")
            elif kind == "duplicate":
                order.append(key)
                fates[key] = ("in flight", None, "")
            elif kind == "deliver":
                fates[key] = ("delivered", r.t, "")
            elif kind == "drop":
                fates[key] = ("dropped", r.t, r.reason)
            elif kind == "hold":
                held[key] = held.get(key, 0.0) + r.extra
        parsed: dict[int, IPPacket] = {}
        for key in order:
            pid, copy = key
            s = sent[pid]
            pkt = parsed.get(pid)
            if pkt is None:
                pkt = parsed[pid] = parse_packet(s.packet, verify=False)
            status, t, reason = fates[key]
            yield SegmentLine(s.t, s.src, s.dst, pkt, Fate(status, t, reason, pid, copy, held.get(key, 0.0)))

    def states(self, host: str) -> dict[ConnKey, list[StateRecord]]:
        """The state changes of every connection of ``host``, in order, by connection."""
        out: dict[ConnKey, list[StateRecord]] = {}
        for r in self.records:
            if isinstance(r, StateRecord) and r.host == host:
                out.setdefault(r.conn, []).append(r)
        return out

