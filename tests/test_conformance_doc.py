"""docs/conformance.md stays honest: every RFC 9293 requirement id is listed exactly once with a
documented status, every "done" line names a test, and every test the document names exists. The
same holds for the sections of the other RFCs (``## RFC 5681: …``; ids ``5681-3.1-IW``), and the
findings stay visible: a "done" line never rests on a test marked ``xfail``, and every test of
``tests/test_rfc*.py`` marked ``xfail`` (an RFC requirement synack does not meet) is cited by a
"partial" or "deviation" line.

The document is parsed as text and the test files as Python syntax trees (nothing is imported and
no cited test is run — they run in the suite anyway), so this takes a few milliseconds."""

from __future__ import annotations

import ast
import functools
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "conformance.md"
TESTS = ROOT / "tests"
REQUIREMENTS = pathlib.Path("/work/shared/ref/rfc9293-requirements.md")

# Appendix B of RFC 9293, as the requirements file counts it; used when that file is not present.
ID_RANGES = {"MUST": 69, "SHLD": 31, "MAY": 18, "REC": 1}
# The RFCs beside RFC 9293 that synack implements, each with its section of the document.
OTHER_RFCS = ("5681", "6298", "6582", "6675", "3042", "2018", "7323", "5961", "4987")
RFC_SECTION = re.compile(r"RFC (\d{4})\b")
# `5681-3.1-IW`: the RFC, its section (or rule), a short name in capitals (several parts allowed).
RFC_ID = re.compile(r"(\d{4})-\d+(?:\.\d+)*(?:-[A-Z0-9][A-Z0-9.]*)*")

ID = re.compile(r"\b(?:MUST|SHLD|MAY|REC)-\d+\b")
# `abbr::test_name`, `abbr::Class::test_name`, optionally with a parametrize suffix `[...]`.
CITATION = re.compile(r"\b([a-z][a-z0-9_]*)::((?:[A-Z]\w*::)?test_\w+)(\[[^\]\s]*\])?")


# ---------------------------------------------------------------------------------------------
# Parsing the document
# ---------------------------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row (an escaped ``\\|`` stays inside its cell)."""
    inner = line.strip()
    assert inner.startswith("|") and inner.endswith("|"), line
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner[1:-1])]


@functools.cache
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


@functools.cache
def tables() -> dict[str, list[tuple[int, list[str]]]]:
    """Section heading -> the rows of the table under it, as (line number, cells), without the
    header and separator rows."""
    found: dict[str, list[tuple[int, list[str]]]] = {}
    section = ""
    in_table = False
    for no, line in enumerate(doc_text().splitlines(), 1):
        if line.startswith("## "):
            section, in_table = line[3:].strip(), False
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        if not in_table:  # the header row; the separator row follows
            in_table = True
            found.setdefault(section, [])
            continue
        cells = _cells(line)
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        found[section].append((no, cells))
    return found


@functools.cache
def statuses() -> tuple[str, ...]:
    """The statuses the document defines: the bold words of the list after "**Status** is one of"."""
    text = doc_text()
    start = text.index("**Status** is one of")
    names = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("* **"):
            names.append(line[4:line.index("**", 4)])
        elif names and not line.startswith(("* ", "  ", "\t")) and line.strip():
            break
    return tuple(names)


def status_of(cell: str) -> str | None:
    """The documented status a status cell starts with (the longest that fits), else None."""
    for name in sorted(statuses(), key=len, reverse=True):
        if cell == name or (cell.startswith(name) and not cell[len(name)].isalnum()):
            return name
    return None


@functools.cache
def abbreviations() -> dict[str, str]:
    """The legend: `abbr` = `test_file.py`."""
    return dict(re.findall(r"`([a-z][a-z0-9_]*)`\s*=\s*`(test_\w+\.py)`", doc_text()))


@functools.cache
def requirement_rows() -> list[tuple[int, list[str]]]:
    rows = tables()["Requirements"]
    for no, cells in rows:
        assert len(cells) == 4, f"line {no}: a requirement row has 4 cells (id, text, status, test)"
    return rows


@functools.cache
def rfc_sections() -> dict[str, list[tuple[int, list[str]]]]:
    """RFC number -> the rows of its section (``## RFC 5681: …``), each of 4 cells (id,
    requirement, status, test)."""
    found: dict[str, list[tuple[int, list[str]]]] = {}
    for heading, rows in tables().items():
        m = RFC_SECTION.match(heading)
        if m is None:
            continue
        assert m.group(1) not in found, f"two sections for RFC {m.group(1)}"
        for no, cells in rows:
            assert len(cells) == 4, f"line {no}: a requirement row has 4 cells (id, text, status, test)"
        found[m.group(1)] = rows
    return found


def all_rows() -> list[tuple[int, str, str, str]]:
    """(line, item, status cell, test cell) of every table row that has a status: RFC 9293's
    requirements and normative text, and the other RFCs' requirements."""
    rows = [(no, cells[0], cells[2], cells[3]) for no, cells in requirement_rows()]
    rows += [(no, cells[0][:40], cells[1], cells[2])
             for no, cells in tables().get("Normative text without an id", [])]
    rows += [(no, cells[0], cells[2], cells[3]) for rows_ in rfc_sections().values() for no, cells in rows_]
    return rows


# ---------------------------------------------------------------------------------------------
# What exists
# ---------------------------------------------------------------------------------------------


@functools.cache
def expected_ids() -> frozenset[str]:
    if REQUIREMENTS.exists():
        ids = frozenset(m.group(1) for m in re.finditer(
            r"^\| ((?:MUST|SHLD|MAY|REC)-\d+) \|", REQUIREMENTS.read_text(encoding="utf-8"), re.M))
        assert ids, f"no requirement ids found in {REQUIREMENTS}"
        return ids
    return frozenset(f"{kind}-{n}" for kind, top in ID_RANGES.items() for n in range(1, top + 1))


@functools.cache
def names_in(filename: str) -> frozenset[str]:
    """Every test pytest would collect by name from one file: module-level ``test*`` functions and
    ``test*`` methods of ``Test*`` classes (as ``Class::test``); parametrized ones by base name."""
    tree = ast.parse((TESTS / filename).read_text(encoding="utf-8"), filename)
    names: set[str] = set()
    funcs = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, funcs) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names.update(f"{node.name}::{m.name}" for m in node.body
                         if isinstance(m, funcs) and m.name.startswith("test"))
    return frozenset(names)


@functools.cache
def xfail_in(filename: str) -> dict[str, str]:
    """The tests of one file marked ``xfail``: name -> "all" (the test is decorated with
    ``pytest.mark.xfail``) or "some" (some of its parameter cases carry the mark)."""
    return xfail_in_source((TESTS / filename).read_text(encoding="utf-8"), filename)


def xfail_in_source(source: str, filename: str = "<test>") -> dict[str, str]:
    tree = ast.parse(source, filename)
    marked: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.name.startswith("test"):
            continue
        for deco in node.decorator_list:
            head = deco.func if isinstance(deco, ast.Call) else deco
            if isinstance(head, ast.Attribute) and head.attr == "xfail":
                marked[node.name] = "all"
            elif any(isinstance(n, ast.Attribute) and n.attr == "xfail" for n in ast.walk(deco)):
                marked.setdefault(node.name, "some")
    return marked


def citations(cell: str) -> list[tuple[str, str]]:
    """(abbreviation, test name) of every test a cell cites."""
    return [(m.group(1), m.group(2)) for m in CITATION.finditer(cell)]


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_the_document_has_its_three_tables() -> None:
    assert {"Deliberate decisions", "Requirements", "Normative text without an id"} <= set(tables())
    assert all(tables()[name] for name in ("Deliberate decisions", "Requirements"))


def test_every_requirement_id_is_listed_exactly_once() -> None:
    listed = [cells[0] for _, cells in requirement_rows()]
    assert all(ID.fullmatch(i) for i in listed), [i for i in listed if not ID.fullmatch(i)]
    twice = sorted({i for i in listed if listed.count(i) > 1})
    assert not twice, f"listed more than once: {twice}"
    missing = sorted(expected_ids() - set(listed), key=_id_order)
    assert not missing, f"requirement ids missing from docs/conformance.md: {missing}"
    unknown = sorted(set(listed) - expected_ids(), key=_id_order)
    assert not unknown, f"ids that RFC 9293 Appendix B does not have: {unknown}"


def _id_order(rid: str) -> tuple[int, int]:
    kind, n = rid.split("-")
    return list(ID_RANGES).index(kind), int(n)


def test_the_statuses_are_the_documented_ones() -> None:
    assert {"done", "partial", "deviation", "n/a", "not implemented"} <= set(statuses())
    bad = [(no, what, status) for no, what, status, _ in all_rows() if status_of(status) is None]
    assert not bad, f"status not among {statuses()}: {bad}"


def test_every_done_line_cites_a_test() -> None:
    bare = [(no, what) for no, what, status, test in all_rows()
            if status_of(status) == "done" and not CITATION.search(test)]
    assert not bare, f"'done' without a test (line, item): {bare}"


def test_every_other_rfc_has_its_section_with_well_formed_unique_ids() -> None:
    sections = rfc_sections()
    assert set(OTHER_RFCS) <= set(sections), f"sections missing: {set(OTHER_RFCS) - set(sections)}"
    seen: dict[str, int] = {}
    for rfc, rows in sections.items():
        assert rows, f"RFC {rfc}: an empty section"
        for no, cells in rows:
            rid = cells[0]
            m = RFC_ID.fullmatch(rid)
            assert m is not None, f"line {no}: {rid!r} is not an id like 5681-3.1-IW"
            assert m.group(1) == rfc, f"line {no}: {rid} listed under RFC {rfc}"
            assert rid not in seen, f"line {no}: {rid} already listed on line {seen[rid]}"
            seen[rid] = no


def test_a_done_line_never_rests_on_a_test_marked_xfail() -> None:
    legend = abbreviations()
    bad = [(no, what, f"{abbr}::{name}") for no, what, status, test in all_rows()
           if status_of(status) == "done"
           for abbr, name in citations(test) if name in xfail_in(legend[abbr])]
    assert not bad, f"'done' citing a test that fails on synack (line, item, test): {bad}"


def test_every_finding_is_listed_as_partial_or_deviation() -> None:
    """Each test of tests/test_rfc*.py marked xfail — a requirement written from the RFC that
    synack does not meet — is cited by a line whose status says so."""
    legend = abbreviations()
    by_file = {f: a for a, f in legend.items()}
    listed = {(abbr, name) for _, _, status, test in all_rows()
              if status_of(status) in ("partial", "deviation") for abbr, name in citations(test)}
    findings = [(path.name, name) for path in sorted(TESTS.glob("test_rfc*.py"))
                for name in xfail_in(path.name)]
    # No finding may be open (none is today); test_xfail_markers_are_recognised keeps the parser
    # honest, so an empty list here means none, not a parser that stopped seeing the marks.
    unlisted = [(f, name) for f, name in findings if f not in by_file or (by_file[f], name) not in listed]
    assert not unlisted, f"findings no 'partial'/'deviation' line cites: {unlisted}"


def test_every_decision_cites_its_test_or_says_there_is_none() -> None:
    for no, cells in tables()["Deliberate decisions"]:
        assert len(cells) == 3, f"line {no}: a decision row has 3 cells (decision, why, test)"
        assert CITATION.search(cells[2]) or cells[2] == "—", f"line {no}: no test and no '—'"


def test_the_legend_names_existing_test_files() -> None:
    legend = abbreviations()
    assert legend, "no `abbr` = `test_file.py` legend found"
    missing = {abbr: f for abbr, f in legend.items() if not (TESTS / f).is_file()}
    assert not missing, f"legend names files that do not exist: {missing}"


def test_every_cited_test_exists() -> None:
    legend = abbreviations()
    cited = [(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2))
             for text in (doc_text(),) for m in CITATION.finditer(text)]
    assert cited
    unknown_abbr = sorted({(no, abbr) for no, abbr, _ in cited if abbr not in legend})
    assert not unknown_abbr, f"abbreviations not in the legend (line, abbr): {unknown_abbr}"
    missing = [(no, f"{abbr}::{name}") for no, abbr, name in cited
               if name not in names_in(legend[abbr])]
    assert not missing, f"cited tests that do not exist (line, test): {missing}"


def test_xfail_markers_are_recognised() -> None:
    marked = xfail_in_source(
        "import pytest\n"
        "@pytest.mark.xfail(strict=True, reason='r')\n"
        "def test_all() -> None: ...\n"
        "@pytest.mark.parametrize('a', [pytest.param(1, marks=pytest.mark.xfail(strict=True)), 2])\n"
        "def test_some(a: int) -> None: ...\n"
        "@pytest.mark.parametrize('a', [1, 2])\n"
        "def test_none(a: int) -> None: ...\n")
    assert marked == {"test_all": "all", "test_some": "some"}


@pytest.mark.parametrize("rid,ok", [("5681-3.1-IW", True), ("5681-3.2-4-LIMIT", True), ("5961-7", True),
                                    ("7323-2.3-14", True), ("5681", False), ("5681-IW", False),
                                    ("5681-3.1-iw", False), ("MUST-1", False)])
def test_rfc_ids_are_recognised(rid: str, ok: bool) -> None:
    assert (RFC_ID.fullmatch(rid) is not None) is ok


@pytest.mark.parametrize("text,found", [
    ("est::test_a, est::test_b[case-1]", [("est", "test_a"), ("est", "test_b")]),
    ("x::TestK::test_m (host side only)", [("x", "TestK::test_m")]),
    ("— ", []),
])
def test_citations_are_recognised(text: str, found: list[tuple[str, str]]) -> None:
    assert [(m.group(1), m.group(2)) for m in CITATION.finditer(text)] == found


def test_status_of_takes_the_longest_documented_status() -> None:
    assert status_of("done") == "done"
    assert status_of("done (Event.URGENT)") == "done"
    assert status_of("partial (deviation): receiving is done") == "partial"
    assert status_of("not implemented (only data inside the window)") == "not implemented"
    assert status_of("n/a: IP source routing") == "n/a"
    assert status_of("doneish") is None
    assert status_of("not shown: no test") is None
