"""Structured records of everything that happens on a simulated network, with virtual timestamps.

A :class:`Trace` is a list of frozen records written by two sources:

* the network (:mod:`synack.sim`): every packet sent, delivered, dropped (and why), duplicated,
  held back or corrupted, as :class:`PacketRecord`; host crashes, restarts, partitions, injected
  packets and a scenario's comments as :class:`NoteRecord`;
* the hosts, through :meth:`Trace.host_record` installed as each :class:`~synack.core.host.Host`'s
  tracer: the typed records of :mod:`synack.core.records` — state changes (``StateRecord``, with
  the :class:`~synack.core.records.Transition` taken), timers (``TimerRecord``), user calls
  (``UserCallRecord``), drops (``DropRecord``), loss recovery (``RecoveryRecord``), RSTs for
  strays (``ResetRecord``) and listeners (``HostNote``).

The hosts' segment records are not kept: the network's ``deliver`` and ``send`` records describe
the same segments, with the packet bytes.

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
``state``       a connection changed state (``transition``: source, destination, event)
``timer``       a connection's timer fired (``timer``, ``action``, ``count``)
``call``        a user call on a connection (``call``)
``host_drop``   a connection or a host discarded a segment (``reason``, a ``Drop``)
``recovery``    loss recovery entered, rescued or ended
``reset``       a host answered a segment for no connection with a RST
``listen``      a host started (``unlisten``: stopped) listening
others          :class:`NoteRecord`: ``crash``, ``restart``, ``partition``, ``heal``, ``inject``,
                ``comment``
==============  ==================================================================================

Exports: JSON lines (one object per record, keys in a fixed order, packet bytes in hex) and pcap
files (timestamps from the virtual clock, so the same run gives the same bytes). For renderers,
:meth:`Trace.segments` gives each packet with its fate and :meth:`Trace.states` the state timeline
of every connection of a host. No wall clock is read anywhere.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TextIO

from synack.core.records import (
    ConnKey,
    DropRecord,
    HostNote,
    RecoveryRecord,
    ResetRecord,
    SegmentRecord,
    StateRecord,
    TimerRecord,
    UserCallRecord,
)
from synack.core.wire import IPPacket, WireError, format_tcpdump, parse_packet
from synack.pcap import PcapWriter

__all__ = [
    "ConnKey",
    "Fate",
    "NoteRecord",
    "PacketRecord",
    "Record",
    "SegmentLine",
    "Trace",
]


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
        a header that no longer parses raises :class:`~synack.core.wire.WireError`)."""
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
class NoteRecord:
    """What the network did to a host or a link: ``crash``, ``restart``, ``partition``,
    ``heal``, ``inject`` (``detail``: the label of the injected packet), ``comment`` (a
    scenario's words)."""

    t: float
    kind: str
    host: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "host": self.host, "detail": self.detail}


Record = (PacketRecord | NoteRecord | StateRecord | TimerRecord | UserCallRecord | DropRecord | RecoveryRecord
          | ResetRecord | HostNote)


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


HostRecord = (StateRecord | TimerRecord | UserCallRecord | DropRecord | RecoveryRecord | SegmentRecord
              | ResetRecord | HostNote)


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

    def host_record(self, rec: HostRecord) -> None:
        """A :class:`~synack.core.host.Host` tracer: keep the host's typed record (its
        segment records are left out: the network's ``send``/``deliver`` describe them)."""
        if not isinstance(rec, SegmentRecord):
            self.records.append(rec)

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

    def to_pcap(self, path: str | os.PathLike[str], *, when: str = "sent", at: str | None = None) -> int:
        """Write a pcap (raw IP) with virtual timestamps; returns the number of packets.

        ``when="sent"``: every packet as a host sent it, at the time it left (one record per
        ``send``). ``when="delivered"``: every packet copy as it reached a host, at its arrival
        time — duplicates appear twice, and a corrupted copy appears with its flipped bit (and a
        bad checksum) because it did arrive, even though the host then dropped it.

        ``at=HOST``: the capture a packet capture on host ``HOST`` would have made
        (:meth:`seen_at`); ``when`` is then ignored."""
        if at is not None:
            wanted = self.seen_at(at)
        elif when == "sent":
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

    def seen_at(self, host: str) -> list[tuple[float, bytes]]:
        """What a packet capture running on ``host`` records, in time order: the packets ``host``
        sent, when they left it (not those it "sent" while crashed), and every copy that reached
        it, when it arrived — corrupted copies included, with their bad checksums, since they did
        arrive. Nothing is recorded while the host is down."""
        # A packet "sent" while its host was down is dropped at once: the record right after its send.
        recs = self.records
        dead: set[int] = {r.pid for r, nxt in itertools.pairwise(recs)
                          if isinstance(r, PacketRecord) and r.kind == "send" and r.src == host
                          and isinstance(nxt, PacketRecord) and nxt.kind == "drop" and nxt.pid == r.pid
                          and nxt.reason == "host down"}
        out: list[tuple[float, bytes]] = []
        for r in self.records:
            if not isinstance(r, PacketRecord):
                continue
            mine = r.kind == "send" and r.src == host and r.pid not in dead
            arrived = r.dst == host and r.src != host and (
                r.kind == "deliver" or (r.kind == "drop" and r.reason.startswith("corrupt")))
            if mine or arrived:
                out.append((r.t, r.packet))
        return out

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

