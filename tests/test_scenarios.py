"""Level 3: the named scenarios of ``synack demo``, checked against reviewed expectations.

Each ``tests/golden/<scenario>.txt`` holds two things:

* above ``=== diagram ===``: the segments and final states written by hand from RFC 9293's figures
  and the seed articles, before the program was run (relative sequence numbers, one line per
  segment in the order the diagram shows it leaving: ``A>B SYN,ACK seq=0 ack=1``, with
  ``[lost]`` or ``[old duplicate]`` where it applies);
* below it: the program's diagram (seed 0, ``--relative``) and final states, reviewed line by line
  against the hand-written part and the RFC. Nothing here regenerates it.

The diagram is parsed back into the hand-written form, so each golden diagram is checked against
the expectations that were written independently of it. Then the values a reader checks in the
seeds are checked on the absolute numbers of the trace, every pcap is read by tshark, and the
command runs both in-process and as a subprocess.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys
from functools import cache

import pytest

from synack.cli import main
from synack.core.records import State
from synack.core.wire import ACK, FIN, RST, SYN, IPPacket
from synack.render import sequence_diagram, timeline
from synack.scenarios import SCENARIOS, ScenarioResult, run_scenario
from synack.trace import PacketRecord, StateRecord, Trace

GOLDEN = pathlib.Path(__file__).parent / "golden"
TSHARK = "/usr/bin/tshark"
NAMES = list(SCENARIOS)
MARK = "=== diagram ==="


@cache
def result(name: str, seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    return run_scenario(name, seed=seed, msl=msl)


def golden(name: str) -> tuple[list[str], str, str]:
    """(hand-written segments, hand-written final states, reviewed diagram text)."""
    text = (GOLDEN / f"{name}.txt").read_text(encoding="utf-8")
    hand, _, diagram = text.partition(MARK + "\n")
    segments: list[str] = []
    final = ""
    for line in hand.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("final: "):
            final = line[len("final: "):]
        else:
            segments.append(line.strip())
    return segments, final, diagram


_SEG = re.compile(r"(?P<la>-->|<--|\.\.\.)\s+(?P<seg>(?:<[A-Z]+=[^>]*>)+)\s+"
                  r"(?P<ra>-->|<--|\.\.\.)(?P<rest>.*)$")
_FIELD = re.compile(r"<([A-Z]+)=([^>]*)>")


def diagram_segments(diagram: str, left: str = "A", right: str = "B") -> list[str]:
    """The segments of a diagram, once each (at the line where it leaves), in the hand-written form."""
    out: list[str] = []
    for line in diagram.splitlines():
        m = _SEG.search(line)
        if m is None:
            continue
        parts = line[:m.start()].split()
        if parts and re.fullmatch(r"\d+\.", parts[0]):
            parts = parts[2:]  # the line number and the time
        lcol = " ".join(parts)
        rcol = m["rest"].strip()
        la, ra = m["la"], m["ra"]
        if "-->" in (la, ra):
            src, dst, sender_col, out_arrow = left, right, lcol, la
        elif "<--" in (la, ra):
            src, dst, sender_col, out_arrow = right, left, rcol, ra
        else:
            raise AssertionError(f"no direction in {line!r}")
        label = sender_col if sender_col.startswith("(") and not sender_col.startswith("(lost") else ""
        if out_arrow == "..." and not label:
            continue  # the arrival of a segment drawn earlier when it left
        fields = dict(_FIELD.findall(m["seg"]))
        text = f"{src}>{dst} {fields['CTL']} seq={fields['SEQ']}"
        if "ACK" in fields:
            text += f" ack={fields['ACK']}"
        if "DATA" in fields:
            text += f" data={fields['DATA']}"
        receiver_col = rcol if src == left else lcol
        if receiver_col.startswith("(lost"):
            text += " [lost]"
        if label:
            text += f" [{label.strip('()')}]"
        out.append(text)
    return out


# ---------------------------------------------------------------------------------------------
# Golden diagrams
# ---------------------------------------------------------------------------------------------


def test_every_scenario_has_a_golden_file() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(NAMES)
    assert NAMES[0] == "lifecycle" and len(NAMES) == 18


@pytest.mark.parametrize("name", NAMES)
def test_program_matches_the_hand_written_segments_and_states(name: str) -> None:
    segments, final, _ = golden(name)
    res = result(name)
    assert diagram_segments(res.diagram(relative=True)) == segments
    assert res.final_text() == f"Final states: {final}"


@pytest.mark.parametrize("name", NAMES)
def test_golden_diagram(name: str) -> None:
    segments, final, reviewed = golden(name)
    assert reviewed, f"{name}: no reviewed diagram below {MARK!r}"
    # The reviewed diagram itself says what the hand-written part says.
    assert diagram_segments(reviewed) == segments
    assert reviewed.rstrip("\n").endswith(f"Final states: {final}")
    res = result(name)
    assert res.diagram(relative=True) + res.final_text() + "\n" == reviewed


def without_notes(diagram: str) -> str:
    """The diagram without the notes below its lines (``B: PAWS: old timestamp`` ...)."""
    return "\n".join(line for line in diagram.splitlines() if not re.match(r"\s+[A-Z]: ", line))


@pytest.mark.parametrize("name", NAMES)
def test_relative_diagram_does_not_depend_on_the_seed(name: str) -> None:
    """Other seeds give other ISNs, timestamps and ports; relative to the ISNs the segments and
    states are the same. (The notes may differ: in half-open-crash B answers the rebooted A's SYN
    because it lies outside the window, or, with some seeds, because its timestamp is older than
    TS.Recent — RFC 7323 §5.3, PAWS. The answer is the same ACK.)"""
    for seed in (1, 2, 3):
        assert without_notes(result(name, seed).diagram(relative=True)) == \
            without_notes(result(name).diagram(relative=True))


def test_runs_repeat_exactly_for_a_seed() -> None:
    for name in ("lifecycle", "half-open-crash", "why-three-way"):
        a = run_scenario(name, seed=7)
        b = run_scenario(name, seed=7)
        assert list(a.trace.jsonl()) == list(b.trace.jsonl())
    assert result("handshake", 1).diagram() != result("handshake").diagram()  # other ISNs


# ---------------------------------------------------------------------------------------------
# The values a reader checks in the seeds (absolute numbers)
# ---------------------------------------------------------------------------------------------


def sent(trace: Trace, src: str | None = None) -> list[tuple[PacketRecord, IPPacket]]:
    return [(r, r.parsed) for r in trace.packets("send") if src is None or r.src == src]


def ctl(p: IPPacket) -> int:
    return p.seg.flags & (SYN | FIN | RST | ACK)


def states(trace: Trace, host: str) -> list[str]:
    return [r.new for r in trace.records if isinstance(r, StateRecord) and r.host == host]


def test_handshake_ack_is_x_plus_1_then_y_plus_1() -> None:
    (_, syn), (_, synack), (_, ack), (_, data), _ = sent(result("handshake").trace)
    x, y = syn.seg.seq, synack.seg.seq
    assert ctl(syn) == SYN and ctl(synack) == SYN | ACK and ctl(ack) == ACK
    assert synack.seg.ack == (x + 1) % 2**32
    assert (ack.seg.seq, ack.seg.ack) == ((x + 1) % 2**32, (y + 1) % 2**32)
    assert data.seg.seq == ack.seg.seq and data.seg.payload == b"hello"  # the ACK took no number
    a = states(result("handshake").trace, "A")
    b = states(result("handshake").trace, "B")
    assert a == ["SYN-SENT", "ESTABLISHED"]
    assert b == ["LISTEN", "SYN-RECEIVED", "ESTABLISHED"]  # a listener's child is born in LISTEN


def test_close_fin_consumes_a_number() -> None:
    pkts = sent(result("close").trace)[3:]
    (_, fin_a), (_, ack_b), (_, fin_b), (_, ack_a) = pkts
    u, w = fin_a.seg.seq, fin_b.seg.seq
    assert ctl(fin_a) == FIN | ACK and ack_b.seg.ack == (u + 1) % 2**32
    assert ctl(fin_b) == FIN | ACK and fin_b.seg.ack == (u + 1) % 2**32  # repeats ack=u+1
    assert (ack_a.seg.seq, ack_a.seg.ack) == ((u + 1) % 2**32, (w + 1) % 2**32)
    assert states(result("close").trace, "A")[-4:] == ["FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSED"]
    assert states(result("close").trace, "B")[-3:] == ["CLOSE-WAIT", "LAST-ACK", "CLOSED"]


def test_close_fin_ack_is_three_segments() -> None:
    pkts = sent(result("close-fin-ack").trace)[3:]
    assert [ctl(p) for _, p in pkts] == [FIN | ACK, FIN | ACK, ACK]
    assert pkts[1][1].seg.ack == (pkts[0][1].seg.seq + 1) % 2**32  # B's FIN carries the ACK


@pytest.mark.parametrize("name", ["close", "lifecycle", "simultaneous-close"])
@pytest.mark.parametrize("msl", [1.0, 0.5])
def test_time_wait_lasts_two_msl(name: str, msl: float) -> None:
    tr = result(name, 0, msl).trace
    for host in ("A", "B") if name == "simultaneous-close" else ("A",):
        recs = [r for r in tr.records if isinstance(r, StateRecord) and r.host == host]
        (k,) = [i for i, r in enumerate(recs) if r.new == "TIME-WAIT"]
        assert recs[k + 1].new == "CLOSED" and recs[k + 1].why == "timeout=2MSL"
        assert recs[k + 1].t - recs[k].t == pytest.approx(2 * msl)
    assert f"TIME-WAIT lasts {2 * msl:g} s" in result(name, 0, msl).report()


def test_simultaneous_close_passes_through_closing_on_both_sides() -> None:
    tr = result("simultaneous-close").trace
    for host in ("A", "B"):
        assert states(tr, host)[-4:] == ["FIN-WAIT-1", "CLOSING", "TIME-WAIT", "CLOSED"]


def test_simultaneous_open_passes_through_syn_received_on_both_sides() -> None:
    tr = result("simultaneous-open").trace
    for host in ("A", "B"):
        assert states(tr, host) == ["SYN-SENT", "SYN-RECEIVED", "ESTABLISHED"]
    assert len(tr.packets("send")) == 4


def test_old_duplicate_syn_rst_numbers() -> None:
    """RFC 9293 Figure 8 / seed 003: SYN,ACK <ACK=91> to the old SYN 90, answered <SEQ=91><CTL=RST>."""
    pkts = sent(result("old-duplicate-syn").trace)
    (_, real), (_, old), (_, bogus), (_, rst), (_, good), (_, last) = pkts
    assert old.seg.seq == (real.seg.seq - 10) % 2**32
    assert bogus.seg.ack == (old.seg.seq + 1) % 2**32 != (real.seg.seq + 1) % 2**32
    assert ctl(rst) == RST and rst.seg.seq == bogus.seg.ack and rst.seg.ack is None
    assert good.seg.ack == (real.seg.seq + 1) % 2**32 and ctl(last) == ACK
    b = [r for r in result("old-duplicate-syn").trace.records if isinstance(r, StateRecord) and r.host == "B"]
    assert [(r.old, r.new) for r in b][:3] == [("CLOSED", "LISTEN"), ("LISTEN", "SYN-RECEIVED"),
                                               ("SYN-RECEIVED", "LISTEN")]


def test_half_open_rst_takes_its_number_from_the_ack() -> None:
    """Seed 003 / RFC 9293 Figure 9: <SEQ=300><ACK=100><CTL=ACK> answered <SEQ=100><CTL=RST>."""
    pkts = sent(result("half-open-crash").trace)
    (_, ack), (_, rst) = pkts[6], pkts[7]
    assert ctl(ack) == ACK and ctl(rst) == RST
    assert rst.seg.seq == ack.seg.ack and rst.seg.ack is None
    assert result("half-open-crash").final["B's old connection"] == "CLOSED"


def test_half_open_data_rst_takes_its_number_from_the_ack() -> None:
    """RFC 9293 Figure 10: <SEQ=300><ACK=100><DATA=10><CTL=ACK> answered <SEQ=100><CTL=RST>."""
    *_, (_, data), (_, rst) = sent(result("half-open-data").trace)
    assert len(data.seg.payload) == 10
    assert ctl(rst) == RST and rst.seg.seq == data.seg.ack and rst.seg.ack is None
    assert any("ConnectionResetError" in line for line in result("half-open-data").outcome)


def test_connect_refused_rst_ack() -> None:
    (_, syn), (_, rst) = sent(result("connect-refused").trace)
    assert ctl(rst) == RST | ACK and rst.seg.seq == 0 and rst.seg.ack == (syn.seg.seq + 1) % 2**32
    assert any("ConnectionRefusedError" in line for line in result("connect-refused").outcome)


def test_lost_final_ack_restarts_time_wait() -> None:
    tr = result("lost-final-ack").trace
    fins = [(r, p) for r, p in sent(tr, "B") if p.seg.flags & FIN]
    assert len(fins) == 2
    (first, f1), (again, f2) = fins
    assert (f2.seg.seq, f2.seg.ack, ctl(f2)) == (f1.seg.seq, f1.seg.ack, FIN | ACK)  # the same FIN
    fins = [first, again]
    assert fins[1].t - fins[0].t == pytest.approx(1.0)  # after B's RTO
    arrival = next(r.t for r in tr.packets("deliver") if r.pid == fins[1].pid)
    a = [r for r in tr.records if isinstance(r, StateRecord) and r.host == "A"]
    assert a[-1].new == "CLOSED" and a[-1].t == pytest.approx(arrival + 2.0)
    assert [r.reason for r in tr.packets("drop")] == ["scripted"]


def test_syn_retransmissions_back_off() -> None:
    syns = [(r, p) for r, p in sent(result("syn-retransmit").trace, "A") if ctl(p) == SYN]
    assert [round(r.t, 6) for r, _ in syns] == [0.0, 1.0, 3.0]
    assert len({p.seg.seq for _, p in syns}) == 1


def test_keepalive_probes_and_timeout() -> None:
    res = result("keepalive-dead-peer")
    probes = [(r.t, p) for r, p in sent(res.trace, "A")[2:]]
    assert [round(t, 3) for t, _ in probes] == [5.02, 10.04, 11.04, 12.04]
    syn = sent(res.trace, "A")[0][1]
    assert all(p.seg.seq == syn.seg.seq and not p.seg.payload for _, p in probes)  # SND.NXT - 1
    a = [r for r in res.trace.records if isinstance(r, StateRecord) and r.host == "A"]
    assert a[-1].why == "keep-alive timeout" and a[-1].t == pytest.approx(13.04)
    assert any("TimeoutError" in line and "timed out" in line for line in res.outcome)
    assert res.final == {"A": "CLOSED", "B": "ESTABLISHED"}


def test_time_wait_blocks_bind_until_so_reuseaddr() -> None:
    res = result("time-wait-bind")
    assert any("Address already in use" in line and "OSError" in line for line in res.outcome)
    assert any("SO_REUSEADDR -> ok" in line for line in res.outcome)
    b = [r for r in res.trace.records if isinstance(r, StateRecord) and r.host == "B"]
    tw = next(r for r in b if r.new == "TIME-WAIT")
    listens = [r.t for r in res.trace.of_kind("listen")]
    assert len(listens) == 2 and tw.t < listens[1] < tw.t + 2.0  # listening again during TIME-WAIT


def test_linger_abort_has_no_fin_and_no_time_wait() -> None:
    tr = result("linger-abort").trace
    assert [ctl(p) for _, p in sent(tr, "A")] == [SYN, ACK, RST]
    assert "TIME-WAIT" not in states(tr, "A")
    assert all(not p.seg.payload for _, p in sent(tr))  # the 1000 queued octets never left


def test_close_wait_leak_is_bounded_only_on_the_closing_side() -> None:
    res = result("close-wait-leak")
    a = [r for r in res.trace.records if isinstance(r, StateRecord) and r.host == "A"]
    assert [r.new for r in a][-2:] == ["FIN-WAIT-2", "CLOSED"]
    assert a[-1].t - a[-2].t == pytest.approx(5.0)
    assert res.final == {"A": "CLOSED", "B": "CLOSE-WAIT"}
    assert not any(p.seg.flags & FIN for _, p in sent(res.trace, "B"))


def test_why_three_way_two_way_server_opens_a_connection_nobody_asked_for() -> None:
    res = result("why-three-way")
    b = [r for r in res.trace.records if isinstance(r, StateRecord) and r.host == "B"]
    run1 = [r for r in b if r.t < 1.0]
    run2 = [r for r in b if r.t >= 1.0]
    assert "ESTABLISHED" not in [r.new for r in run1] and run1[-1].new == "LISTEN"
    assert [r.new for r in run2] == ["LISTEN", "SYN-RECEIVED", "ESTABLISHED", "CLOSED"]
    syn_arrival = next(r.t for r in res.trace.packets("deliver") if r.dst == "B" and r.t >= 1.0)
    assert run2[2].t == syn_arrival  # established by the SYN alone
    assert any("never asked for" in line for line in res.outcome)


# ---------------------------------------------------------------------------------------------
# Renderers on their own
# ---------------------------------------------------------------------------------------------


def test_absolute_numbers_by_default_and_delayed_segments_drawn_twice() -> None:
    res = result("old-duplicate-syn")
    text = sequence_diagram(res.trace, "A", "B")
    syn = sent(res.trace)[0][1]
    assert f"<SEQ={syn.seg.seq}><CTL=SYN>" in text
    lines = [line for line in text.splitlines() if f"<SEQ={syn.seg.seq}><CTL=SYN>" in line]
    assert len(lines) == 2 and "-->" in lines[0] and lines[0].rstrip().endswith("...")
    assert "(old duplicate)" in text and "A: unacceptable ACK in SYN-SENT" in text


def test_timeline_shows_time_in_each_state() -> None:
    text = timeline(result("close").trace, ["A", "B"])
    assert re.search(r"TIME-WAIT\s+2\.000 s", text)
    assert "listening on *:80 from 0.000 to the end" in text
    assert timeline(result("half-open-crash").trace, ["A"]).count("10.0.0.1:") == 2  # two incarnations
    assert "(forgotten: the host crashed)" in timeline(result("half-open-data").trace, ["A"])


# ---------------------------------------------------------------------------------------------
# pcap files through tshark
# ---------------------------------------------------------------------------------------------

# Flags of every packet sent, in the order sent (tshark letters, sorted: A=ACK F=FIN P=PSH R=RST S=SYN).
FLAGS = {
    "lifecycle": "S AS A AP A AP A AF A AP A AF A",
    "handshake": "S AS A AP A",
    "close": "S AS A AF A AF A",
    "close-fin-ack": "S AS A AF AF A",
    "half-close": "S AS A AF A AP A AF A",
    "simultaneous-open": "S S AS AS",
    "simultaneous-close": "S AS A AF AF A A",
    "old-duplicate-syn": "S S AS R AS A",
    "half-open-crash": "S AS A AP A S A R S AS A",
    "half-open-data": "S AS A AP R",
    "lost-final-ack": "S AS A AF A AF A AF A",
    "time-wait-bind": "S AS A AF A AF A S AS A",
    "linger-abort": "S AS A R",
    "close-wait-leak": "S AS A AF A",
    "keepalive-dead-peer": "S AS A A A A A A",
    "syn-retransmit": "S S S AS A",
    "connect-refused": "S AR",
    "why-three-way": "S AS R S AS R",
}


@pytest.mark.skipif(shutil.which(TSHARK) is None, reason="tshark is not installed")
def test_every_pcap_opens_in_tshark_with_good_checksums(tmp_path: pathlib.Path) -> None:
    assert sorted(FLAGS) == sorted(NAMES)
    procs = {}
    for name in NAMES:
        path = tmp_path / f"{name}.pcap"
        assert result(name).trace.to_pcap(path) == len(result(name).trace.packets("send"))
        procs[name] = subprocess.Popen(
            [TSHARK, "-r", str(path), "-o", "tcp.check_checksum:TRUE", "-T", "fields",
             "-e", "tcp.flags.str", "-e", "tcp.checksum.status"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, name
        rows = [line.split("\t") for line in out.splitlines()]
        flags = " ".join("".join(sorted(f.replace("·", "").replace(".", ""))) for f, _ in rows)
        assert flags == FLAGS[name], name
        assert all(status == "1" for _, status in rows), name  # 1 = Good


# ---------------------------------------------------------------------------------------------
# synack demo
# ---------------------------------------------------------------------------------------------


def test_demo_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    assert all(len(line.split(None, 1)[1]) > 20 for line in lines)


def test_demo_runs_lifecycle_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("synack demo lifecycle: ")
    res = result("lifecycle")
    for part in (res.diagram(), res.timeline(), res.final_text(), "Why it matters:", "2×MSL"):
        assert part.strip() in out


def test_demo_options(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    assert main(["demo", "close", "--relative", "--msl", "0.5", "--seed", "3",
                 "--pcap", str(tmp_path / "c.pcap")]) == 0
    out = capsys.readouterr().out
    assert "<SEQ=1><ACK=2><CTL=FIN,ACK>" in out and re.search(r"TIME-WAIT\s+1\.000 s", out)
    assert (tmp_path / "c.pcap").stat().st_size > 24
    assert main(["demo", "handshake", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[-1]["kind"] == "result" and rows[-1]["final"] == {"A": "ESTABLISHED", "B": "ESTABLISHED"}
    assert len(rows) == len(result("handshake").trace) + 1


def test_demo_unknown_scenario_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "no-such-thing"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1 and "unknown scenario 'no-such-thing'" in captured.err
    assert main(["demo", "close", "--msl", "-1"]) == 2


def test_demo_html(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "d.html"
    code = main(["demo", "handshake", "--html", str(path)])
    try:
        import synack.htmlview  # noqa: F401
    except ImportError:
        assert code == 1 and "htmlview" in capsys.readouterr().err
    else:
        assert code == 0 and path.read_text(encoding="utf-8").strip()


def test_demo_as_a_subprocess() -> None:
    run = [sys.executable, "-m", "synack", "demo"]
    listed = subprocess.run([*run, "--list"], capture_output=True, text=True, timeout=60, check=True)
    assert listed.stdout.split()[0] == "lifecycle"
    life = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    assert life.stdout == result("lifecycle").report()
    bad = subprocess.run([*run, "bogus"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.splitlines()) == 1


def test_final_states_are_states() -> None:
    known = {s.value for s in State}
    for name in NAMES:
        assert set(result(name).final.values()) <= known, name
