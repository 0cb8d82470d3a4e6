"""The TCP state diagram, drawn from the core's transition table.

Everything here is generated from :data:`synack.core.records.TRANSITIONS` (merged into one arrow
per pair of states by :func:`~synack.core.records.diagram_arrows`), so the picture cannot drift
from the code: text (one block per state, like the arrows of RFC 9293 Figure 5), Graphviz DOT, and
a self-contained SVG laid out like the RFC's figure (positions are the only hand-written data).
"""

from __future__ import annotations

import argparse
import html
import math

from synack.core.records import Arrow, State, diagram_arrows

__all__ = ["add_parser", "to_dot", "to_svg", "to_text"]

# Column/row placement in the spirit of RFC 9293 Figure 5 (x, y in SVG units).
_POS: dict[State, tuple[int, int]] = {
    State.CLOSED: (400, 40),
    State.LISTEN: (400, 150),
    State.SYN_RECEIVED: (180, 270),
    State.SYN_SENT: (620, 270),
    State.ESTABLISHED: (400, 390),
    State.FIN_WAIT_1: (180, 510),
    State.CLOSE_WAIT: (620, 510),
    State.FIN_WAIT_2: (150, 650),
    State.CLOSING: (400, 580),
    State.LAST_ACK: (620, 650),
    State.TIME_WAIT: (400, 760),
}
# Like RFC 9293 Figure 5, CLOSED is drawn twice: arrows from ESTABLISHED and the closing states
# end in a second CLOSED box at the bottom right.
_CLOSED_LOW = (640, 760)
_UPPER = frozenset((State.CLOSED, State.LISTEN, State.SYN_SENT, State.SYN_RECEIVED))


def _pos(t: Arrow, end: State) -> tuple[int, int]:
    if end is State.CLOSED and t.src not in _UPPER:
        return _CLOSED_LOW
    return _POS[end]


def _label(t: Arrow) -> str:
    return f"{t.label} / {t.action}" if t.action else t.label


def to_text(*, include_aborts: bool = False) -> str:
    """Each state and its outgoing arrows: ``  rcv SYN / snd SYN,ACK  -->  SYN-RECEIVED``."""
    lines = ["TCP connection states (RFC 9293 §3.3.2), generated from synack.core.records.TRANSITIONS", ""]
    arrows = diagram_arrows()
    for st in State:
        outs = [t for t in arrows if t.src is st and (t.main or include_aborts)]
        lines.append(st.value)
        if not outs:
            lines.append("    (no transitions)")
        width = max((len(_label(t)) for t in outs), default=0)
        for t in outs:
            mark = "" if t.main else "   (abort/reset)"
            lines.append(f"    {_label(t).ljust(width)}  -->  {t.dst.value}{mark}")
        lines.append("")
    if not include_aborts:
        lines.append("Resets, aborts and timeouts to CLOSED from every other state: --all")
    return "\n".join(lines).rstrip() + "\n"


def to_dot(*, include_aborts: bool = False) -> str:
    """Graphviz DOT source of the diagram."""
    out = ["digraph tcp {", '  rankdir=TB; node [shape=box, style=rounded, fontname="Helvetica"];',
           '  edge [fontname="Helvetica", fontsize=10];']
    for st in State:
        out.append(f'  "{st.value}";')
    for t in diagram_arrows():
        if not (t.main or include_aborts):
            continue
        style = "" if t.main else ", style=dashed, color=gray40"
        out.append(f'  "{t.src.value}" -> "{t.dst.value}" [label="{_label(t)}"{style}];')
    out.append("}")
    return "\n".join(out) + "\n"


def to_svg(*, include_aborts: bool = False) -> str:
    """A self-contained SVG of the diagram (no external resources)."""
    w, h = 820, 820
    bw, bh = 130, 34
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="Helvetica, Arial, sans-serif">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    seen: dict[tuple[State, State], int] = {}
    labels: list[str] = []
    for t in diagram_arrows():
        if not (t.main or include_aborts):
            continue
        x1, y1 = _pos(t, t.src)
        x2, y2 = _pos(t, t.dst)
        n = seen.get((t.src, t.dst), 0)
        seen[(t.src, t.dst)] = n + 1
        # Clip the line to the box edges.
        dx, dy = x2 - x1, y2 - y1
        dist = math.hypot(dx, dy) or 1.0
        ux, uy = dx / dist, dy / dist

        def clip(cx: float, cy: float, sx: float, sy: float) -> tuple[float, float]:
            tx = (bw / 2) / abs(sx) if sx else math.inf
            ty = (bh / 2) / abs(sy) if sy else math.inf
            k = min(tx, ty)
            return cx + sx * k, cy + sy * k

        sx, sy = clip(x1, y1, ux, uy)
        ex, ey = clip(x2, y2, -ux, -uy)
        # Bend reverse/parallel edges so they do not overlap.
        bend = 22 * (1 + n)  # reverse arrows bend to opposite sides by themselves
        mx, my = (sx + ex) / 2 - uy * bend, (sy + ey) / 2 + ux * bend
        color = "#333" if t.main else "#999"
        dash = "" if t.main else ' stroke-dasharray="4 3"'
        parts.append(
            f'<path class="transition" data-src="{t.src.value}" data-dst="{t.dst.value}" '
            f'd="M{sx:.1f},{sy:.1f} Q{mx:.1f},{my:.1f} {ex:.1f},{ey:.1f}" fill="none" stroke="{color}"'
            f'{dash} marker-end="url(#arrow)"><title>{html.escape(_label(t))}</title></path>')
        if t.main:
            # Put the label on the outside of the bend so that opposite arrows do not collide.
            off = mx - (sx + ex) / 2
            anchor = "middle" if abs(off) < 6 else ("end" if off < 0 else "start")
            lx = mx + (0 if anchor == "middle" else (-4 if off < 0 else 4))
            labels.append(f'<text x="{lx:.1f}" y="{my:.1f}" font-size="9" fill="#225" '
                          f'text-anchor="{anchor}" stroke="white" stroke-width="3" paint-order="stroke">'
                          f'{html.escape(_label(t))}</text>')
    boxes = [*_POS.items(), (State.CLOSED, _CLOSED_LOW)]
    for st, (x, y) in boxes:
        parts.append(f'<g class="state" data-state="{st.value}"><rect x="{x - bw / 2}" y="{y - bh / 2}" '
                     f'width="{bw}" height="{bh}" rx="8" fill="#eef4ff" stroke="#335"/>'
                     f'<text x="{x}" y="{y + 5}" font-size="13" text-anchor="middle" font-weight="bold">'
                     f'{st.value}</text></g>')
    parts.extend(labels)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("states", help="print the TCP state diagram (generated from the core's transitions)",
                       description="The 11 TCP states and their transitions, generated from the "
                                   "transition table that the connection code checks on every change.")
    p.add_argument("--format", choices=("text", "dot", "svg"), default="text")
    p.add_argument("--all", action="store_true", help="include resets, aborts and timeouts")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    render = {"text": to_text, "dot": to_dot, "svg": to_svg}[args.format]
    out = render(include_aborts=args.all)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(out)
    else:
        print(out, end="")
    return 0
