"""Reports of a drill run: one line per script, the first mismatch of a failure with the expected
line and what happened instead, the run drawn as the RFC two-column ladder (text, or HTML with
``--html``), the differences between synack and Linux event by event (``--against both``), JSON
lines and JUnit XML for CI.

The ladder comes from the diagram model (:func:`synack.diagram.build_ladder`): the stack under test
is the left end, the script the right one, named in ``untracked`` — a script has no TCP states, so
its column stays blank. The formatters are the project's (:func:`synack.render.ladder_text`,
:func:`synack.htmlview.ladder_html`).
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from typing import Any, Final

from synack.diagram import Ladder, build_ladder
from synack.drill.engine import FAIL, PASS, UNSUPPORTED, Observation, Outcome
from synack.htmlview import ladder_html
from synack.render import ladder_text

__all__ = [
    "compare_runs",
    "html_page",
    "junit_xml",
    "ladder_of",
    "outcome_json",
    "result_line",
    "summary_line",
    "text_report",
]

PEER = "script"
TIME_SLACK = 0.010
"""Two runs' times for one event differ when they are further apart than this (10 ms: real time
drifts by a few milliseconds over a script)."""


def result_line(o: Outcome) -> str:
    """``PASS  path  (0.004 s, synack, profile strict)``."""
    return f"{o.verdict:<11} {o.path}  ({o.seconds:.3f} s, {o.backend}, profile {o.profile})"


def failure_text(o: Outcome) -> list[str]:
    """The lines under a FAIL or UNSUPPORTED result line."""
    if o.verdict == PASS:
        return []
    where = f"line {o.line}: " if o.line else ""
    out = [f"  {where}{o.message}"]
    if o.expected:
        out.append(f"    expected: {o.expected}")
    if o.happened:
        out.append(f"    happened: {o.happened}")
    return out


def ladder_of(records: Sequence[Any], backend: str) -> Ladder:
    """The run's ladder: the stack on the left (untracked too for Linux: its states are not
    reported), the script on the right."""
    untracked = (PEER,) if backend == "synack" else (PEER, backend)
    return build_ladder(records, backend, PEER, relative=True, untracked=untracked)


def text_report(o: Outcome, records: Sequence[Any] | None = None, *, ladder: bool = False) -> str:
    """The result line, the failure, the notes, and (for a failure, or when asked) the ladder."""
    lines = [result_line(o), *failure_text(o)]
    if o.verdict != PASS:
        lines.extend(f"  note: {n}" for n in o.notes)
    if records is not None and (ladder or o.verdict == FAIL):
        drawn = ladder_text(ladder_of(records, o.backend))
        lines.append("")
        lines.extend("    " + ln if ln else "" for ln in drawn.rstrip("\n").splitlines())
        lines.append("")
    return "\n".join(lines)


def summary_line(outcomes: Sequence[Outcome]) -> str:
    counts = {v: sum(o.verdict == v for o in outcomes) for v in (PASS, FAIL, UNSUPPORTED)}
    cpu = sum(o.seconds for o in outcomes)
    return (f"{len(outcomes)} scripts: {counts[PASS]} passed, {counts[FAIL]} failed, "
            f"{counts[UNSUPPORTED]} unsupported ({cpu:.3f} s)")


def outcome_json(o: Outcome) -> dict[str, Any]:
    return {
        "path": o.path, "backend": o.backend, "profile": o.profile, "verdict": o.verdict,
        "message": o.message, "line": o.line, "expected": o.expected, "happened": o.happened,
        "seconds": round(o.seconds, 6), "script_time": round(o.script_time, 6), "notes": o.notes,
        "events": [{"line": ob.line, "kind": ob.kind, "time": ob.time, "text": ob.text}
                   for ob in o.observations],
    }


def junit_xml(outcomes: Iterable[Outcome], name: str = "synack drill") -> str:
    """A JUnit XML document: one ``testcase`` per script and backend; a failure's message is the
    mismatch, its text the expected line and what happened; UNSUPPORTED is ``skipped``."""
    items = list(outcomes)
    suite = ET.Element("testsuite", name=name, tests=str(len(items)),
                       failures=str(sum(o.verdict == FAIL for o in items)),
                       skipped=str(sum(o.verdict == UNSUPPORTED for o in items)),
                       time=f"{sum(o.seconds for o in items):.6f}")
    for o in items:
        case = ET.SubElement(suite, "testcase", classname=f"drill.{o.backend}.{o.profile}", name=o.path,
                             time=f"{o.seconds:.6f}")
        if o.verdict == FAIL:
            el = ET.SubElement(case, "failure", message=(f"line {o.line}: " if o.line else "") + o.message)
            el.text = "\n".join(failure_text(o))
        elif o.verdict == UNSUPPORTED:
            ET.SubElement(case, "skipped", message=o.message)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def html_page(pages: Sequence[tuple[Outcome, Sequence[Any]]]) -> str:
    """One page: a single run's ladder page, or several framed one under another."""
    docs = []
    for o, records in pages:
        title = f"{o.path} — {o.verdict} on {o.backend} (profile {o.profile})"
        explanation = "\n".join(failure_text(o)).strip() or "Every event of the script matched."
        docs.append((title, ladder_html(ladder_of(records, o.backend), title=title, explanation=explanation)))
    if len(docs) == 1:
        return docs[0][1]
    frames = "".join(f"<section><h2>{html.escape(t)}</h2><iframe style='width:100%;height:80vh;border:0' "
                     f"srcdoc=\"{html.escape(d, quote=True)}\"></iframe></section>" for t, d in docs)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>synack drill</title></head>"
            f"<body><h1>synack drill: {len(docs)} scripts</h1>{frames}</body></html>\n")


def _obs_text(ob: Observation | None) -> str:
    if ob is None:
        return "(not reached)"
    when = f" at {ob.time:.3f}" if ob.time is not None else ""
    return f"{ob.text}{when}"


_NOISE: Final = re.compile(r" win \d+| TS val \d+")


def _same(x: str, y: str) -> bool:
    """Two observations say the same, window values and TS vals aside (each stack has its own)."""
    return _NOISE.sub("", x) == _NOISE.sub("", y)


def compare_runs(a: Outcome, b: Outcome) -> list[str]:
    """Where two runs of one script differ, event by event (``--against both``): each line whose
    observation differs in what happened (window values and TS vals aside: each stack has its own),
    or in when by more than :data:`TIME_SLACK`."""
    out: list[str] = []
    if a.verdict != b.verdict:
        out.append(f"  verdict: {a.backend} {a.verdict}, {b.backend} {b.verdict}")
    by_a = {ob.line: ob for ob in a.observations}
    by_b = {ob.line: ob for ob in b.observations}
    for line in sorted(set(by_a) | set(by_b)):
        x, y = by_a.get(line), by_b.get(line)
        if x is not None and y is not None and _same(x.text, y.text) and \
                (x.time is None or y.time is None or abs(x.time - y.time) <= TIME_SLACK):
            continue
        out.append(f"  line {line}: {a.backend}: {_obs_text(x)}")
        out.append(f"  {' ' * len(f'line {line}')}  {b.backend}: {_obs_text(y)}")
    for o in (a, b):
        if o.verdict != PASS:
            out.append(f"  {o.backend} stopped at line {o.line}: {o.message}")
    return out


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=False)
