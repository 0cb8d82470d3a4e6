"""``synack drill`` from the command line, its reports (text, ladder, HTML, JSON, JUnit, the
comparison of two backends) and the pytest plugin that collects ``.pkt`` files."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from synack.cli import main
from synack.drill.engine import FAIL, PASS, Observation, Outcome
from synack.drill.report import compare_runs, junit_xml, result_line

REPO = Path(__file__).resolve().parent.parent
GOOD = """// a passive open (RFC 9293 §3.5)
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0    bind(3, ..., ...) = 0
+0    listen(3, 1) = 0
+0    < S 0:0(0) win 65535 <mss 1000>
+0    > S. 0:0(0) ack 1 <mss 1460>
+0.1  < . 1:1(0) ack 1 win 65535
+0    accept(3, ..., ...) = 4
"""
BAD = GOOD + "+0    close(4) = 0\n+0    > . 1:1(0) ack 1\n"
UNSUP = GOOD + "+0    epoll_wait(3) = 0\n"


@pytest.fixture
def scripts(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name, text in (("good", GOOD), ("bad", BAD), ("unsup", UNSUP)):
        p = tmp_path / f"{name}.pkt"
        p.write_text(text)
        out[name] = str(p)
    return out


def test_exit_status_and_one_line_per_script(scripts: dict[str, str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", scripts["good"], scripts["unsup"]]) == 0
    out = capsys.readouterr().out
    assert f"PASS        {scripts['good']}  (" in out and "synack, profile strict)" in out
    assert f"UNSUPPORTED {scripts['unsup']}" in out
    assert "line 10: system call epoll_wait() is not supported" in out
    assert out.rstrip().endswith("unsupported (" + out.rstrip().split("(")[-1])
    assert main(["drill", "--profile", "relaxed", scripts["good"], scripts["bad"]]) == 1
    out = capsys.readouterr().out
    assert "profile relaxed" in out and "FAIL        " in out
    assert "  line 11: flags F., expected .; sequence number 1, expected 1" not in out  # only what differs
    assert "  line 11: flags F., expected ." in out
    assert "    expected: +0    > . 1:1(0) ack 1" in out
    assert "    happened: > F. 1:1(0) ack 1 win 65535 at 0.100" in out
    assert "FIN-WAIT-1" in out and "TCP synack" in out and "TCP script" in out  # the ladder
    assert out.rstrip().splitlines()[-1].startswith("2 scripts: 1 passed, 1 failed, 0 unsupported")


def test_usage_errors_exit_2(scripts: dict[str, str], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "--profile", "nonesuch", scripts["good"]]) == 2
    assert "no profile 'nonesuch'" in capsys.readouterr().err
    assert main(["drill", "--config", "iw=10", scripts["good"]]) == 2
    assert "unknown Config field 'iw'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["drill", str(empty)]) == 2


def test_directories_are_searched_for_scripts(scripts: dict[str, str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not a script")
    assert main(["drill", "-q", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "PASS" not in out and "bad.pkt" in out and out.rstrip().endswith(")")
    assert "3 scripts: 1 passed, 1 failed, 1 unsupported" in out


def test_json_lines(scripts: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    main(["drill", "--json", scripts["good"], scripts["bad"]])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d.get("verdict") for d in lines[:2]] == [PASS, FAIL]
    assert lines[1]["line"] == 11 and lines[1]["expected"] == "+0    > . 1:1(0) ack 1"
    assert lines[0]["events"][4] == {"line": 6, "kind": "inbound", "time": 0.0, "text": "injected"}
    assert "summary" in lines[2]


def test_junit(scripts: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    main(["drill", "--junit", str(path), *scripts.values()])
    suite = ET.parse(path).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.get("message", "").startswith("line 11: flags F.")


def test_parallel_processes_give_the_same_verdicts(scripts: dict[str, str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    main(["drill", "--json", *scripts.values()])
    serial = [json.loads(x).get("verdict") for x in capsys.readouterr().out.splitlines()]
    main(["drill", "--json", "-j", "3", *scripts.values()])
    parallel = [json.loads(x).get("verdict") for x in capsys.readouterr().out.splitlines()]
    assert serial == parallel == [PASS, FAIL, "UNSUPPORTED", None]


def test_html_and_ladder(scripts: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "run.html"
    assert main(["drill", "--ladder", "--html", str(page), scripts["good"]]) == 0
    assert "SYN-RECEIVED" in capsys.readouterr().out  # the ladder of a passing script, on request
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "good.pkt" in html
    two = tmp_path / "two.html"
    main(["drill", "--html", str(two), scripts["good"], scripts["bad"]])
    assert "bad.pkt" in two.read_text() and "good.pkt — PASS" not in two.read_text()


def test_comparing_two_runs_event_by_event() -> None:
    a = Outcome("x.pkt", "synack", "strict", PASS, observations=[
        Observation(5, "outbound", 0.0, "> S. 0:0(0) ack 1 win 65535 <mss 1460>"),
        Observation(6, "outbound", 0.3, "> . 1:1(0) ack 101 win 65535")])
    b = Outcome("x.pkt", "linux", "strict", FAIL, message="nothing", line=7, observations=[
        Observation(5, "outbound", 0.001, "> S. 0:0(0) ack 1 win 64240 <mss 1460>"),
        Observation(6, "outbound", 0.105, "> . 1:1(0) ack 101 win 64140")])
    diff = compare_runs(a, b)
    assert diff[0] == "  verdict: synack PASS, linux FAIL"
    assert "  line 5" not in "\n".join(diff)  # windows aside, the same at the same time
    assert "  line 6: synack: > . 1:1(0) ack 101 win 65535 at 0.300" in diff
    assert "          linux: > . 1:1(0) ack 101 win 64140 at 0.105" in diff
    assert diff[-1] == "  linux stopped at line 7: nothing"
    assert result_line(a).startswith("PASS        x.pkt  (0.000 s, synack, profile strict)")
    assert 'failures="1"' in junit_xml([a, b])


# -- the pytest plugin ---------------------------------------------------------------------------


def _pytest(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_the_plugin_collects_pkt_files_as_tests(tmp_path: Path) -> None:
    (tmp_path / "good.pkt").write_text(GOOD)
    (tmp_path / "bad.pkt").write_text(BAD)
    (tmp_path / "unsup.pkt").write_text(UNSUP)
    (tmp_path / "known.pkt").write_text("// drill: xfail a gap we know\n" + BAD)
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    res = _pytest(["-q", "-rsx", str(tmp_path)], tmp_path)
    assert "1 failed, 2 passed, 1 skipped, 1 xfailed" in res.stdout, res.stdout
    assert "line 11: flags F., expected ." in res.stdout and "happened: > F. 1:1(0)" in res.stdout
    assert "UNSUPPORTED: system call epoll_wait() is not supported" in res.stdout
    assert "XFAIL" in res.stdout and "a gap we know" in res.stdout


def test_the_plugin_leaves_a_project_without_scripts_alone(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    (tmp_path / "data.txt").write_text("0 garbage\n")
    res = _pytest(["-q", str(tmp_path)], tmp_path)
    assert "1 passed" in res.stdout and res.returncode == 0


def test_our_suite_is_collected_once_through_the_plugin() -> None:
    res = _pytest(["--collect-only", "-q", "tests/drill"], REPO)
    items = [ln for ln in res.stdout.splitlines() if ".pkt::" in ln]
    files = sorted((REPO / "tests" / "drill").rglob("*.pkt"))
    assert len(files) >= 150
    assert len(items) == len(set(items)) == len(files)
    assert "tests/drill/matrix/established/rst.pkt::rst" in items
