"""The HTML report of ``synack analyze --html FILE``: one self-contained page (nothing loaded
from anywhere) with the summary, the findings, a table of every connection, and for each kept
connection its RFC ladder (the text one, and the SVG one of ``synack demo`` opened on demand)
and its time-sequence graph as Stevens and tcptrace draw it: sequence number against time, each
segment a vertical bar (retransmissions red), the acknowledgments of the other side as a line
below and the edge of its advertised window as a line above."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Final

from synack.analyze.ladder import ladder_page, ladder_text_of
from synack.analyze.model import FLAG_ORDER, ConnectionResult, Severity
from synack.analyze.output import summary_dict
from synack.analyze.run import Summary
from synack.analyze.zeek import conn_state_meaning

__all__ = ["report_page", "tsg_svg"]

_W: Final = 760
_H: Final = 300
_LADDERS: Final = 200  # connections with a ladder and a graph in the page
_ROWS: Final = 5000  # rows of the connections table

_CSS: Final = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:0 16px;color:#1d1d1f}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}table{border-collapse:collapse}
td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #e5e5e5;vertical-align:top}
th{background:#f4f4f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.problem{color:#b00020}.warning{color:#a05a00}.info{color:#1f5fbf}.dim{color:#6e6e73}
pre{background:#f7f7f9;padding:8px;overflow-x:auto;font-size:12px}
details{margin:6px 0;border:1px solid #e5e5e5;border-radius:6px;padding:4px 10px}
summary{cursor:pointer;font-weight:600}iframe{width:100%;height:560px;border:1px solid #ddd}
svg.tsg{background:#fff;border:1px solid #ddd}.uncertain{color:#a05a00}
"""

_JS: Final = """
(function () {
  var sections = document.querySelectorAll("details.conn");
  sections.forEach(function (d) {
    d.addEventListener("toggle", function () {
      if (!d.open || d.querySelector("iframe")) { return; }
      var src = d.querySelector("script.ladder");
      if (!src) { return; }
      var frame = document.createElement("iframe");
      frame.setAttribute("title", "ladder of connection " + d.getAttribute("data-id"));
      frame.srcdoc = JSON.parse(src.textContent);
      d.appendChild(frame);
    });
  });
  var rows = document.querySelectorAll("tr.conn-row").length;
  var graphs = document.querySelectorAll("svg.tsg").length;
  var data = JSON.parse(document.getElementById("report-data").textContent);
  document.getElementById("check").textContent = "connections=" + data.connections + " rows=" + rows +
    " sections=" + sections.length + " graphs=" + graphs;
  if (location.hash.indexOf("#conn-") === 0) {
    var target = document.getElementById(location.hash.slice(1));
    if (target) { target.open = true; target.dispatchEvent(new Event("toggle")); }
  }
})();
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def report_page(summary: Summary, results: Sequence[ConnectionResult]) -> str:
    """The whole report. ``results`` are the connections to list (in any order); those that still
    carry their packets get a ladder and a graph, the worst first, at most 200."""
    ordered = sorted(results, key=lambda r: r.id)
    detailed = sorted((r for r in ordered if r.extras.get("ladder")), key=lambda r: (-r.score, r.id))[
        :_LADDERS
    ]
    data = json.dumps(summary_dict(summary)).replace("<", "\\u003c")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>synack analyze: {_e(', '.join(summary.sources))}</title><style>{_CSS}</style></head><body>",
        f"<h1>synack analyze: {_e(', '.join(summary.sources))}</h1>",
        _overview(summary),
        _findings(summary),
        _table(ordered, summary.connections),
        "<h2>Connections in detail</h2>",
        "<p class='dim'>Each ladder is drawn from the capture; a state with a question mark is one the "
        "capture point cannot know. Open a connection to see its SVG ladder.</p>",
        *(_section(r) for r in sorted(detailed, key=lambda r: r.id)),
        '<footer><h2>Check</h2><pre id="check">the page script has not run</pre></footer>',
        f'<script type="application/json" id="report-data">{data}</script>',
        f"<script>{_JS}</script></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _overview(summary: Summary) -> str:
    st = summary.capture
    span = (st.last or 0.0) - (st.first or 0.0)
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td class='n'>{n:,}</td><td class='dim'>{_e(conn_state_meaning(k))}</td></tr>"
        for k, n in summary.conn_states.most_common()
    )
    finals = ", ".join(f"{_e(k)} {n:,}" for k, n in summary.final_states.most_common()) or "-"
    flags = ", ".join(f"{_e(k)} {summary.flags[k]:,}" for k in FLAG_ORDER if summary.flags.get(k)) or "none"
    where = ", ".join(sorted(st.offload_hosts)) or "not known"
    return (
        f"<p>{st.frames:,} frames, {st.tcp:,} TCP segments, {summary.connections:,} "
        f"connection{'' if summary.connections == 1 else 's'} over "
        f"{span:.3f} s. Capture point: {_e(where)}. MSL assumed: {summary.msl:g} s.</p>"
        f"<h2>Connections by Zeek conn_state</h2><table>{rows}</table>"
        f"<p><b>Last state seen of each end:</b> {finals}</p><p><b>Wireshark analysis flags:</b> {flags}</p>"
    )


def _findings(summary: Summary) -> str:
    items = []
    for f in summary.all_findings():
        conns = "".join(f" <a href='#conn-{c}'>#{c}</a>" for c in f.connections[:5])
        items.append(
            f"<li class='{f.severity.value}'><b>{_e(f.kind)}</b>: {_e(f.text)}{conns}<br>"
            f"<span class='dim'>evidence: {_e(f.evidence)}</span><br>what to do: {_e(f.advice)}</li>"
        )
    body = "<ul>" + "".join(items) + "</ul>" if items else "<p>No findings: every connection behaved.</p>"
    counts = {s: sum(1 for f in summary.all_findings() if f.severity is s) for s in Severity}
    return (
        f"<h2>Findings ({counts[Severity.PROBLEM]} problems, {counts[Severity.WARNING]} warnings, "
        f"{counts[Severity.INFO]} notes)</h2>{body}"
    )


def _table(results: Sequence[ConnectionResult], total: int) -> str:
    head = (
        "<tr><th>id</th><th>from</th><th>to</th><th>conn_state</th><th>history</th><th>from's state</th>"
        "<th>to's state</th><th>packets</th><th>bytes</th><th>duration</th><th>findings</th></tr>"
    )
    rows = []
    for r in results[:_ROWS]:
        kinds = ", ".join(dict.fromkeys(f.kind for f in r.findings))
        rows.append(
            f"<tr class='conn-row' id='row-{r.id}'><td class='n'><a href='#conn-{r.id}'>{r.id}</a></td>"
            f"<td>{_e(r.endpoint(0))}</td><td>{_e(r.endpoint(1))}</td><td>{_e(r.conn_state)}</td>"
            f"<td>{_e(r.history)}</td>{_state_cell(r, 0)}{_state_cell(r, 1)}<td class='n'>{r.packets:,}</td>"
            f"<td class='n'>{r.stats[0].frame_bytes + r.stats[1].frame_bytes:,}</td>"
            f"<td class='n'>{r.duration:.3f}</td><td>{_e(kinds)}</td></tr>"
        )
    more = ""
    if total > len(rows):
        more = f"<p class='dim'>{total - len(rows):,} more connections: see --csv or --json.</p>"
    return f"<h2>Connections</h2><table>{head}{''.join(rows)}</table>{more}"


def _state_cell(r: ConnectionResult, side: int) -> str:
    text = r.final(side)
    cls = " class='uncertain'" if text.endswith("?") else ""
    return f"<td{cls}>{_e(text)}</td>"


def _section(r: ConnectionResult) -> str:
    page = ladder_page(r)
    graphs = "".join(tsg_svg(r, side) for side in _graph_sides(r))
    return (
        f"<details class='conn' id='conn-{r.id}' data-id='{r.id}'><summary>connection {r.id}: "
        f"{_e(r.endpoint(0))} → {_e(r.endpoint(1))} · {_e(r.conn_state)} · {_e(r.history)}</summary>"
        f"<pre>{_e(ladder_text_of(r))}</pre>{graphs}"
        f"<script type='application/json' class='ladder'>{_json(page)}</script></details>"
    )


def _json(text: str) -> str:
    """A string as JSON that can sit inside a <script> element (no "<" at all)."""
    return json.dumps(text).replace("<", "\\u003c")


def _graph_sides(r: ConnectionResult) -> list[int]:
    sides = [s for s in (0, 1) if r.stats[s].payload_bytes]
    return sides or [0]


def tsg_svg(r: ConnectionResult, side: int) -> str:
    """The time-sequence graph of what ``side`` sent: sequence numbers (relative to its first)
    against time, with the other side's ACK line and window edge."""
    points: list[tuple[float, int, int, int, int, int]] = r.extras.get("points") or []
    mine = [p for p in points if p[1] == side]
    theirs = [p for p in points if p[1] != side and p[4] >= 0]
    if not mine:
        return ""
    base = mine[0][2]
    t0, t1 = points[0][0], max(points[-1][0], points[0][0] + 1e-6)

    def rel(n: int) -> int:
        return (n - base) & 0xFFFFFFFF if ((n - base) & 0xFFFFFFFF) < 1 << 31 else -((base - n) & 0xFFFFFFFF)

    ys = [rel(p[2]) for p in mine] + [rel(p[2]) + p[3] for p in mine]
    ys += [rel(p[4]) for p in theirs] + [rel(p[4]) + p[5] for p in theirs]
    lo, hi = min(ys), max(max(ys), min(ys) + 1)
    hi = min(hi, max(rel(p[2]) + p[3] for p in mine) * 2 + 10)

    def x(t: float) -> float:
        return 60 + (t - t0) / (t1 - t0) * (_W - 80)

    def y(v: int) -> float:
        return _H - 30 - (min(max(v, lo), hi) - lo) / (hi - lo) * (_H - 50)

    bars, seen = [], None
    for t, _s, seq, length, _ack, _win in mine:
        a = rel(seq)
        again = seen is not None and a < seen
        seen = a + length if seen is None else max(seen, a + length)
        color = "#c00000" if again else "#1f5fbf"
        bars.append(
            f"<line x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{y(a):.1f}' y2='{y(a + max(length, 0)):.1f}' "
            f"stroke='{color}' stroke-width='2'/>"
        )
    ack_line = _steps([(x(t), y(rel(ack))) for t, _s, _q, _l, ack, _w in theirs])
    win_line = _steps([(x(t), y(rel(ack) + win)) for t, _s, _q, _l, ack, win in theirs])
    name = r.endpoint(side)
    return (
        f"<svg class='tsg' width='{_W}' height='{_H}' viewBox='0 0 {_W} {_H}' role='img' "
        f"aria-label='time-sequence graph of {_e(name)}'><title>{_e(name)}: sequence number against time"
        f"</title><text x='60' y='16' font-size='12'>{_e(name)} → {_e(r.endpoint(1 - side))}: "
        f"sequence (relative) against time; blue data, red retransmitted, green ACKs, grey window</text>"
        f"<line x1='60' y1='{_H - 30}' x2='{_W - 20}' y2='{_H - 30}' stroke='#999'/>"
        f"<line x1='60' y1='20' x2='60' y2='{_H - 30}' stroke='#999'/>"
        f"<text x='60' y='{_H - 12}' font-size='11'>{t0:.3f} s</text>"
        f"<text x='{_W - 20}' y='{_H - 12}' font-size='11' text-anchor='end'>{t1:.3f} s</text>"
        f"<text x='54' y='{_H - 30}' font-size='11' text-anchor='end'>{lo}</text>"
        f"<text x='54' y='26' font-size='11' text-anchor='end'>{hi}</text>"
        f"<polyline class='ack' points='{ack_line}' fill='none' stroke='#1e7b34'/>"
        f"<polyline class='win' points='{win_line}' fill='none' stroke='#999' stroke-dasharray='4 3'/>"
        f"{''.join(bars)}</svg>"
    )


def _steps(points: list[tuple[float, float]]) -> str:
    out: list[str] = []
    for k, (px, py) in enumerate(points):
        if k:
            out.append(f"{px:.1f},{points[k - 1][1]:.1f}")
        out.append(f"{px:.1f},{py:.1f}")
    return " ".join(out)
