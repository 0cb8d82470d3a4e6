"""Run an analysis: open a capture, feed the engine, collect a :class:`Summary` (bounded memory:
counts, the findings, the worst connections) and hand every connection's result to the sinks.

Every problem with the input becomes an :class:`AnalyzeError` with one sentence for the user
(the command line prints it and exits with status 2): a file that cannot be read, one that is
not a capture, a capture with no TCP or of an unknown link type. A file that is cut short or
damaged part-way is analysed up to the damage, and the damage is reported the same way."""

from __future__ import annotations

import heapq
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from synack.analyze.engine import CaptureStats, Engine, Options, collector_off
from synack.analyze.findings import Aggregate
from synack.analyze.model import ConnectionResult, Finding, Severity
from synack.pcap import LINKTYPES, PcapError, iter_chunks

__all__ = ["AnalyzeError", "Summary", "analyze"]

Sink = Callable[[ConnectionResult], None]
_WORST = 10
_KEEP_FINDINGS = 200


class AnalyzeError(Exception):
    """The input cannot be analysed (or only in part); the message says why, in one sentence."""


@dataclass
class Summary:
    """What a whole capture came to, kept small: counts, findings, the worst connections."""

    sources: list[str] = field(default_factory=list)
    capture: CaptureStats = field(default_factory=CaptureStats)
    connections: int = 0
    conn_states: Counter[str] = field(default_factory=Counter)
    final_states: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    finding_counts: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    worst: list[tuple[int, int, ConnectionResult]] = field(default_factory=list)
    aggregate: Aggregate = field(default_factory=Aggregate)
    msl: float = 30.0

    def add(self, r: ConnectionResult) -> None:
        """Count one connection."""
        self.connections += 1
        self.conn_states[r.conn_state] += 1
        for side in (0, 1):
            final = r.final_state(side)
            if final is not None and final.frame:  # a state the capture showed, not a projection
                self.final_states[final.state.value] += 1
        self.flags.update(r.flags)
        for f in r.findings:
            self.finding_counts[f.kind] += 1
            if sum(1 for g in self.findings if g.kind == f.kind) < _KEEP_FINDINGS:
                self.findings.append(f)
        self.aggregate.add(r)
        if r.score > 0:
            slim = _slim(r)
            item = (r.score, -r.id, slim)
            if len(self.worst) < _WORST:
                heapq.heappush(self.worst, item)
            elif item[:2] > self.worst[0][:2]:
                heapq.heapreplace(self.worst, item)

    def merge(self, other: Summary) -> None:
        """Add the summary of another shard of the same capture."""
        self.connections += other.connections
        self.conn_states.update(other.conn_states)
        self.final_states.update(other.final_states)
        self.flags.update(other.flags)
        self.finding_counts.update(other.finding_counts)
        self.findings.extend(other.findings)
        self.aggregate.merge(other.aggregate)
        for item in other.worst:
            if len(self.worst) < _WORST:
                heapq.heappush(self.worst, item)
            elif item[:2] > self.worst[0][:2]:
                heapq.heapreplace(self.worst, item)
        _merge_capture(self.capture, other.capture)

    def worst_connections(self) -> list[ConnectionResult]:
        return [r for _, _, r in sorted(self.worst, reverse=True)]

    def all_findings(self) -> list[Finding]:
        """Every finding, the worst first: per connection, across connections, about the capture."""
        out = self.findings + self.aggregate.findings() + self.capture_findings()
        return sorted(out, key=lambda f: (f.severity.rank, f.kind, f.t))

    def capture_findings(self) -> list[Finding]:
        st = self.capture
        out = []
        for host, n in sorted(st.offload_hosts.items(), key=lambda kv: -kv[1]):
            out.append(
                Finding(
                    "checksum-offload",
                    Severity.INFO,
                    f"{n} segments from {host} carry checksums left "
                    "for the network card to fill in (checksum offload): the capture was made on "
                    f"{host}. They are not corrupt.",
                    f"{n} segments",
                    "Nothing to do; its states are read as seen from that end.",
                    (),
                    host,
                )
            )
        if st.truncated:
            out.append(
                Finding(
                    "snap-length",
                    Severity.INFO,
                    f"{st.truncated} segments were cut by the capture's "
                    "snap length; their headers were read and their lengths taken from the IP "
                    "header.",
                    f"{st.truncated} frames",
                    "Capture with -s 0 to keep whole packets "
                    "(needed only to verify checksums or read payloads).",
                    (),
                )
            )
        if st.damaged:
            out.append(
                Finding(
                    "damaged-packets",
                    Severity.WARNING,
                    f"{st.damaged} damaged packets were counted and skipped.",
                    "; ".join(st.damaged_examples),
                    "Check the capture's source.",
                    (),
                )
            )
        return out


def _slim(r: ConnectionResult) -> ConnectionResult:
    """The result without its kept packets (the summary keeps only what it prints)."""
    if "ladder" not in r.extras:
        return r
    extras = {k: v for k, v in r.extras.items() if k not in ("ladder", "points", "frame_numbers")}
    return ConnectionResult(**{**{f: getattr(r, f) for f in r.__dataclass_fields__}, "extras": extras})


def _merge_capture(mine: CaptureStats, other: CaptureStats) -> None:
    for name in (
        "frames",
        "tcp",
        "fast",
        "not_ip",
        "not_tcp",
        "fragments",
        "damaged",
        "truncated",
        "bad_checksums",
        "offload",
        "connections",
        "peak_open",
    ):
        setattr(mine, name, getattr(mine, name) + getattr(other, name))
    mine.damaged_examples = (mine.damaged_examples + other.damaged_examples)[:5]
    for table_name in ("offload_hosts", "linktypes", "unknown_linktypes"):
        table: dict[Any, int] = getattr(mine, table_name)
        for k, n in getattr(other, table_name).items():
            table[k] = table.get(k, 0) + n
    if other.first is not None and (mine.first is None or other.first < mine.first):
        mine.first = other.first
    if other.last is not None and (mine.last is None or other.last > mine.last):
        mine.last = other.last
    mine.error = mine.error or other.error


def analyze(
    sources: Sequence[str | os.PathLike[str] | BinaryIO] | str,
    options: Options,
    sinks: Iterable[Sink] = (),
    *,
    shard: Callable[[bytes], bool] | None = None,
    require_tcp: bool = True,
) -> Summary:
    """Analyse one or more captures (read one after the other, as one capture) and return the
    summary; every connection's result also goes to each sink. Raises :class:`AnalyzeError`
    when the input is not a capture, has no TCP, or is damaged (the results of what could be read
    have gone to the sinks, and the summary is on the exception)."""
    paths = [sources] if isinstance(sources, str) else list(sources)
    summary = Summary(sources=[getattr(p, "name", str(p)) for p in paths], msl=options.msl)
    outs = list(sinks)

    def sink(r: ConnectionResult) -> None:
        summary.add(r)
        for s in outs:
            s(r)

    # The cyclic collector stays off from the first chunk to the last result (Engine.run says
    # why): on between run() and finish() it would walk every open connection's objects once.
    with collector_off():
        return _analyze(paths, summary, options, sink, shard, require_tcp)


def _analyze(
    paths: Sequence[str | os.PathLike[str] | BinaryIO],
    summary: Summary,
    options: Options,
    sink: Callable[[ConnectionResult], None],
    shard: Callable[[bytes], bool] | None,
    require_tcp: bool,
) -> Summary:
    engine = Engine(options, sink)
    engine.shard = shard
    error = ""
    for src in paths:
        name = getattr(src, "name", str(src))
        try:
            size = os.path.getsize(src) if isinstance(src, (str, os.PathLike)) else None
            batches = iter_chunks(src)
            engine.run(batches, size)
        except FileNotFoundError:
            error = error or f"{name}: no such file"
            break
        except IsADirectoryError:
            error = error or f"{name}: is a directory, not a capture file"
            break
        except PermissionError:
            error = error or f"{name}: permission denied"
            break
        except OSError as exc:
            error = error or f"{name}: cannot read it: {exc.strerror or exc}"
            break
        except PcapError as exc:
            error = error or f"{name}: {exc}"
            if engine.stats.frames == 0:
                break
    summary.capture = engine.finish()
    summary.capture.error = error
    if error:
        raise AnalyzeError(error, summary)
    st = summary.capture
    if st.tcp == 0 and require_tcp:
        raise AnalyzeError(_no_tcp(st, summary.sources), summary)
    return summary


def _no_tcp(st: CaptureStats, names: Sequence[str]) -> str:
    where = ", ".join(names) or "the capture"
    if st.frames == 0:
        return f"{where}: the capture holds no packets"
    if st.unknown_linktypes and not (st.not_ip or st.not_tcp or st.damaged):
        kinds = ", ".join(str(k) for k in sorted(st.unknown_linktypes))
        known = ", ".join(f"{k} ({v})" for k, v in sorted(LINKTYPES.items()))
        return f"{where}: link type {kinds} is not supported (supported: {known})"
    parts = []
    for n, what in (
        (st.not_ip, "not IP"),
        (st.not_tcp, "IP but not TCP"),
        (st.fragments, "IP fragments"),
        (st.damaged, "damaged"),
        (sum(st.unknown_linktypes.values()), "of an unsupported link type"),
    ):
        if n:
            parts.append(f"{n} {what}")
    return f"{where}: no TCP segments in {st.frames} frames ({', '.join(parts)})"
