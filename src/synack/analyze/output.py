"""The outputs of ``synack analyze``: a terminal summary (rich; 100 columns, colour only on a
terminal), a JSON document and a CSV table with one row per connection. JSON and CSV are written
as connections end, so a capture of any length is written in bounded memory: rows come in the
order connections were finalized (their ``id`` is Wireshark's ``tcp.stream``)."""

from __future__ import annotations

import csv
import json
import math
from typing import IO, Any, Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from synack.analyze.model import FLAG_ORDER, ConnectionResult, Finding, Severity
from synack.analyze.run import Summary
from synack.analyze.zeek import conn_state_meaning

__all__ = ["CSV_FIELDS", "CsvSink", "JsonSink", "print_summary", "summary_dict"]

WIDTH: Final = 100
_MARK: Final = {
    Severity.PROBLEM: ("✖", "bold red"),
    Severity.WARNING: ("!", "yellow"),
    Severity.INFO: ("·", "cyan"),
}
_STATE_STYLE: Final = {
    "ESTABLISHED": "green",
    "CLOSE-WAIT": "bold red",
    "TIME-WAIT": "magenta",
    "SYN-SENT": "blue",
    "SYN-RECEIVED": "blue",
    "CLOSED": "dim",
}


def _num(n: float) -> str:
    return f"{n:,}" if isinstance(n, int) else f"{n:,.3f}"


def _secs(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s"


def print_summary(
    summary: Summary, out: IO[str], *, color: bool | None = None, findings_shown: int = 20
) -> None:
    """The terminal summary: the capture, conn_state counts, final states, flags, findings and
    the worst connections."""
    console = Console(
        file=out,
        width=WIDTH,
        force_terminal=color,
        no_color=color is False,
        color_system="auto" if color is not False else None,
        highlight=False,
        soft_wrap=False,
    )
    st = summary.capture
    span = (st.last - st.first) if st.first is not None and st.last is not None else 0.0
    title = Text("synack analyze", style="bold")
    title.append(
        f"  {', '.join(summary.sources)}: {st.frames:,} frames, {st.tcp:,} TCP segments, "
        f"{summary.connections:,} connection{'' if summary.connections == 1 else 's'} over {_secs(span)}"
    )
    console.print(title)
    console.print(_capture_point(summary))
    console.print()
    console.print(_states_table(summary))
    if summary.final_states:
        line = Text("Last state seen of each end: ", style="bold")
        for state, n in summary.final_states.most_common():
            line.append(f"{state} ", style=_STATE_STYLE.get(state, ""))
            line.append(f"{n:,}   ")
        console.print(line)
    flags = [(name, summary.flags[name]) for name in FLAG_ORDER if summary.flags.get(name)]
    if flags:
        text = Text("Wireshark analysis flags: ", style="bold")
        text.append(", ".join(f"{name} {n:,}" for name, n in flags))
        console.print(text)
    console.print()
    _print_findings(console, summary.all_findings(), findings_shown)
    worst = summary.worst_connections()
    if worst:
        console.print()
        console.print(_worst_table(worst))


def _capture_point(summary: Summary) -> Text:
    hosts = sorted(summary.capture.offload_hosts)
    text = Text("Capture point: ", style="bold")
    if hosts:
        text.append(f"{', '.join(hosts)} (its own segments carry offloaded checksums). ")
    else:
        text.append("not known: each end's states are read from what it sent and what it acknowledged. ")
    text.append("A state marked ? is one the capture cannot know for sure.", style="dim")
    return text


def _states_table(summary: Summary) -> Table:
    table = Table(
        title="Connections by Zeek conn_state",
        title_justify="left",
        title_style="bold",
        show_header=False,
        box=None,
        padding=(0, 2),
    )
    table.add_column(justify="left", style="bold")
    table.add_column(justify="right")
    table.add_column()
    for state, n in summary.conn_states.most_common():
        table.add_row(state, f"{n:,}", conn_state_meaning(state))
    return table


def _print_findings(console: Console, findings: list[Finding], shown: int) -> None:
    if not findings:
        console.print(Text("No findings: every connection behaved.", style="green"))
        return
    counts = {sev: sum(1 for f in findings if f.severity is sev) for sev in Severity}
    head = Text("Findings", style="bold")
    head.append(
        f"  {counts[Severity.PROBLEM]} problems, {counts[Severity.WARNING]} warnings, "
        f"{counts[Severity.INFO]} notes"
    )
    console.print(head)
    for f in findings[:shown]:
        mark, style = _MARK[f.severity]
        line = Text(f" {mark} ", style=style)
        line.append(f"{f.kind}: ", style=style)
        line.append(f.text)
        if f.connections:
            line.append(f" [connection {', '.join(map(str, f.connections[:5]))}]", style="dim")
        console.print(line)
        console.print(Text(f"     evidence: {f.evidence}", style="dim"))
        console.print(Text(f"     what to do: {f.advice}"))
    if len(findings) > shown:
        console.print(
            Text(f"   … and {len(findings) - shown} more (--json or --html show them all)", style="dim")
        )


def _worst_table(worst: list[ConnectionResult]) -> Table:
    table = Table(
        title="The worst connections",
        title_justify="left",
        title_style="bold",
        box=None,
        padding=(0, 1),
        header_style="bold",
    )
    for name, just in (
        ("id", "right"),
        ("from → to", "left"),
        ("state", "left"),
        ("history", "left"),
        ("ends", "left"),
        ("pkts", "right"),
        ("findings", "left"),
    ):
        table.add_column(name, justify=just, overflow="fold")  # type: ignore[arg-type]
    for r in worst:
        ends = Text()
        for side in (0, 1):
            final = r.final(side)
            ends.append(final or "?", style=_STATE_STYLE.get(final.rstrip("?"), ""))
            if side == 0:
                ends.append(" / ")
        kinds = ", ".join(dict.fromkeys(f.kind for f in r.findings)) or "-"
        table.add_row(
            str(r.id),
            f"{r.endpoint(0)} → {r.endpoint(1)}",
            r.conn_state,
            r.history[:14],
            ends,
            f"{r.packets:,}",
            kinds,
        )
    return table


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def summary_dict(summary: Summary) -> dict[str, Any]:
    st = summary.capture
    return {
        "sources": summary.sources,
        "frames": st.frames,
        "tcp_segments": st.tcp,
        "connections": summary.connections,
        "first": st.first,
        "last": st.last,
        "msl": summary.msl,
        "skipped": {
            "not_ip": st.not_ip,
            "not_tcp": st.not_tcp,
            "fragments": st.fragments,
            "damaged": st.damaged,
            "unknown_link_types": {str(k): v for k, v in st.unknown_linktypes.items()},
        },
        "truncated_by_snap_length": st.truncated,
        "bad_checksums": st.bad_checksums,
        "offloaded_checksums": dict(st.offload_hosts),
        "conn_states": dict(summary.conn_states),
        "final_states": dict(summary.final_states),
        "flags": dict(summary.flags),
        "finding_counts": dict(summary.finding_counts),
        "error": st.error or None,
    }


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonSink:
    """Writes ``{"connections": [...], "summary": ..., "findings": [...]}``, the connections as
    they end."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.first = True
        out.write('{"connections": [\n')

    def __call__(self, r: ConnectionResult) -> None:
        data = r.to_dict()
        data["stats"] = {k: {kk: _clean(vv) for kk, vv in v.items()} for k, v in data["stats"].items()}
        self.out.write(("" if self.first else ",\n") + json.dumps(data, ensure_ascii=False))
        self.first = False

    def close(self, summary: Summary) -> None:
        self.out.write('\n],\n"summary": ' + json.dumps(summary_dict(summary), ensure_ascii=False))
        self.out.write(
            ',\n"findings": '
            + json.dumps([f.to_dict() for f in summary.all_findings()], ensure_ascii=False)
            + "\n}\n"
        )


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------

CSV_FIELDS: Final = (
    "id",
    "orig_addr",
    "orig_port",
    "resp_addr",
    "resp_port",
    "start",
    "end",
    "duration",
    "packets",
    "orig_packets",
    "resp_packets",
    "orig_bytes",
    "resp_bytes",
    "orig_payload",
    "resp_payload",
    "conn_state",
    "history",
    "orig_final",
    "resp_final",
    "closed_first",
    "handshake_rtt",
    "orig_rtt_avg",
    "resp_rtt_avg",
    *FLAG_ORDER,
    "findings",
)


class CsvSink:
    """One row per connection (``CSV_FIELDS``); byte counts are whole frames, as in tshark's
    conversation table."""

    def __init__(self, out: IO[str]) -> None:
        self.writer = csv.writer(out, lineterminator="\n")
        self.writer.writerow(CSV_FIELDS)

    def __call__(self, r: ConnectionResult) -> None:
        o, p = r.stats
        closed = "" if r.closed_first is None else ("orig", "resp")[r.closed_first]
        row: list[object] = [
            r.id,
            r.orig[0],
            r.orig[1],
            r.resp[0],
            r.resp[1],
            f"{r.start:.6f}",
            f"{r.end:.6f}",
            f"{r.duration:.6f}",
            r.packets,
            o.packets,
            p.packets,
            o.frame_bytes,
            p.frame_bytes,
            o.payload_bytes,
            p.payload_bytes,
            r.conn_state,
            r.history,
            r.final(0),
            r.final(1),
            closed,
            "" if r.handshake_rtt is None else f"{r.handshake_rtt:.6f}",
            _opt(o.rtt_avg),
            _opt(p.rtt_avg),
        ]
        row.extend(r.flags.get(name, 0) for name in FLAG_ORDER)
        row.append(";".join(dict.fromkeys(f.kind for f in r.findings)))
        self.writer.writerow(row)


def _opt(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"
