"""``synack analyze`` from the command line: the outputs (summary, JSON, CSV, ladder, HTML report
in headless Chromium), the link types and odd captures it reads, bad input (one message, status
2, never a traceback), ``--jobs`` and ``--dask``, and bounded memory."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from synack.analyze.engine import Options
from synack.analyze.model import ConnectionResult
from synack.analyze.run import AnalyzeError, analyze
from synack.cli import main
from synack.core.wire import ACK, FIN, PSH, SYN, Segment, build_packet
from synack.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PcapWriter,
)
from synack.scenarios import run_scenario

CHROMIUM = "/usr/bin/chromium"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["analyze", *argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The close-wait-leak and lifecycle scenarios in one capture (different ports)."""
    path = tmp_path_factory.mktemp("demo") / "demo.pcap"
    a, b = run_scenario("close-wait-leak"), run_scenario("lifecycle", seed=7)
    from synack.trace import PacketRecord

    packets = sorted(
        [(r.t, r.packet) for r in a.trace.records if isinstance(r, PacketRecord) and r.kind == "send"]
        + [(r.t + 3.0, r.packet) for r in b.trace.records if isinstance(r, PacketRecord) and r.kind == "send"]
    )
    with PcapWriter(path) as w:
        for t, p in packets:
            w.write(p, t)
    return path


def test_summary_reads_well_at_100_columns(capsys: pytest.CaptureFixture[str], demo: Path) -> None:
    status, out, err = run_cli(capsys, str(demo), "--msl", "1", "--color", "never")
    assert status == 0, err
    assert all(len(line) <= 100 for line in out.splitlines())
    assert "\x1b[" not in out  # no colour when not asked
    assert "Connections by Zeek conn_state" in out and "S2" in out and "SF" in out
    assert "close-wait:" in out and "still in CLOSE-WAIT" in out
    assert "what to do:" in out


def test_the_count_of_connections_agrees_with_its_noun(
        capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path) -> None:
    from synack.trace import PacketRecord

    status, out, _ = run_cli(capsys, str(demo), "--color", "never")
    assert status == 0 and "2 connections over" in " ".join(out.split())
    one = tmp_path / "one.pcap"
    with PcapWriter(one) as w:
        for r in run_scenario("close").trace.records:
            if isinstance(r, PacketRecord) and r.kind == "send":
                w.write(r.packet, r.t)
    status, out, _ = run_cli(capsys, str(one), "--color", "never")
    assert status == 0 and "1 connection over" in " ".join(out.split()), out


def test_colour_when_asked(capsys: pytest.CaptureFixture[str], demo: Path) -> None:
    status, out, _ = run_cli(capsys, str(demo), "--msl", "1", "--color", "always")
    assert status == 0 and "\x1b[" in out


def test_json_and_csv_have_one_entry_per_connection(capsys: pytest.CaptureFixture[str], demo: Path) -> None:
    status, out, _ = run_cli(capsys, str(demo), "--msl", "1", "--json")
    doc = json.loads(out)
    assert status == 0 and len(doc["connections"]) == 2 == doc["summary"]["connections"]
    leak = next(c for c in doc["connections"] if c["conn_state"] == "S2")
    assert leak["final"]["resp"] == "CLOSE-WAIT"
    arrow = [c for c in leak["states"]["resp"] if c["state"] == "CLOSE-WAIT" and c["rfc_arrow"]]
    assert arrow and arrow[0]["event"] == "rcv FIN" and arrow[0]["from"] == "ESTABLISHED"
    assert any(f["kind"] == "close-wait" for f in doc["findings"])
    status, out, _ = run_cli(capsys, str(demo), "--msl", "1", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and len(rows) == 2
    assert {r["conn_state"] for r in rows} == {"S2", "SF"}
    assert all(int(r["orig_packets"]) + int(r["resp_packets"]) == int(r["packets"]) for r in rows)


def test_conn_draws_the_ladder(capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path) -> None:
    status, out, _ = run_cli(capsys, str(demo), "--msl", "1", "--conn", "0")
    assert status == 0
    assert "SYN-SENT" in out and "<SEQ=0><CTL=SYN>" in out and "CLOSE-WAIT" in out
    status, _, err = run_cli(capsys, str(demo), "--conn", "9")
    assert status == 2 and "no connection 9" in err
    page = tmp_path / "conn.html"
    status, _, _ = run_cli(capsys, str(demo), "--msl", "1", "--conn", "0", "--html", str(page))
    assert status == 0 and "<svg" in page.read_text()


# ---------------------------------------------------------------------------------------------
# What it reads
# ---------------------------------------------------------------------------------------------

A, B = "192.0.2.1", "192.0.2.2"


def handshake_packets() -> list[bytes]:
    x, y = 100, 900
    return [
        build_packet(A, B, Segment(5000, 80, x, None, SYN, 1000)),
        build_packet(B, A, Segment(80, 5000, y, x + 1, SYN | ACK, 1000)),
        build_packet(A, B, Segment(5000, 80, x + 1, y + 1, ACK, 1000)),
        build_packet(A, B, Segment(5000, 80, x + 1, y + 1, ACK | PSH, 1000, payload=b"q" * 400)),
        build_packet(A, B, Segment(5000, 80, x + 401, y + 1, FIN | ACK, 1000)),
    ]


def write(path: Path, frames: list[bytes], linktype: int = LINKTYPE_RAW, snaplen: int = 262144) -> Path:
    with PcapWriter(path, linktype, snaplen=snaplen) as w:
        for k, f in enumerate(frames):
            w.write(f, 10.0 + k * 0.01)
    return path


def one(path: Path, **opts: object) -> ConnectionResult:
    out: list[ConnectionResult] = []
    analyze([str(path)], Options(**opts), [out.append])  # type: ignore[arg-type]
    assert len(out) == 1
    return out[0]


MAC = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"


@pytest.mark.parametrize(
    "wrap, linktype",
    [
        (lambda p: MAC + b"\x08\x00" + p, LINKTYPE_ETHERNET),
        (lambda p: MAC + b"\x81\x00\x00\x07\x88\xa8\x00\x08\x08\x00" + p, LINKTYPE_ETHERNET),  # two VLAN tags
        (
            lambda p: b"\x08\x00\x00\x00" + b"\x00\x00\x00\x02" + b"\x00\x04" + b"\x00" * 10 + p,
            LINKTYPE_LINUX_SLL2,
        ),
        (lambda p: b"\x02\x00\x00\x00" + p, LINKTYPE_NULL),
        (lambda p: p, LINKTYPE_RAW),
    ],
    ids=["ethernet", "vlan", "sll2", "bsd-loopback", "raw"],
)
def test_link_types(tmp_path: Path, wrap: object, linktype: int) -> None:
    frames = [wrap(p) for p in handshake_packets()]  # type: ignore[operator]
    r = one(write(tmp_path / "l.pcap", frames, linktype))
    assert r.history == "ShADF" and r.stats[0].payload_bytes == 400


def test_snap_length_keeps_headers_and_true_lengths(tmp_path: Path) -> None:
    r = one(write(tmp_path / "s.pcap", handshake_packets(), snaplen=60))
    assert r.stats[0].payload_bytes == 400 and r.history == "ShADF"


def test_ipv6_with_extension_headers(tmp_path: Path) -> None:
    seg = Segment(5000, 80, 1, None, SYN, 1000)
    plain = build_packet("2001:db8::1", "2001:db8::2", seg)
    hop = bytes([6, 0, 1, 4, 0, 0, 0, 0])  # hop-by-hop options, next header TCP
    ext = plain[:4] + struct.pack("!HB", len(plain) - 40 + 8, 0) + plain[7:40] + hop + plain[40:]
    r = one(write(tmp_path / "v6.pcap", [ext]))
    assert r.conn_state == "S0" and r.orig == ("2001:db8::1", 5000)


def test_offloaded_checksums_are_explained_not_reported(tmp_path: Path) -> None:
    frames = []
    for p in handshake_packets():
        src = p[12:16]
        if src == bytes([192, 0, 2, 1]):  # as the capturing host leaves them: pseudo-header sum only
            tcp_len = len(p) - 20
            pseudo = int.from_bytes(p[12:20], "big") + 6 + tcp_len
            p = p[:36] + struct.pack("!H", pseudo % 0xFFFF) + p[38:]
        frames.append(p)
    status_out: list[ConnectionResult] = []
    summary = analyze(
        [str(write(tmp_path / "o.pcap", frames))], Options(checksums="all"), [status_out.append]
    )
    (r,) = status_out
    assert summary.capture.bad_checksums == 0 and summary.capture.offload_hosts == {A: 4}
    assert "C" not in r.history and r.capture_point[0].value == "here"
    assert any(f.kind == "checksum-offload" for f in summary.all_findings())


def test_damaged_packet_in_a_good_file_is_counted_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = handshake_packets()
    bad = bytearray(frames[2])
    bad[32] = 0x10  # TCP data offset 1: impossible
    path = write(tmp_path / "d.pcap", [*frames[:2], bytes(bad), *frames[2:]])
    status, out, err = run_cli(capsys, str(path), "--color", "never")
    assert status == 0, err
    assert "damaged-packets" in out and "1 damaged packets" in out


# ---------------------------------------------------------------------------------------------
# Bad input: one message, status 2, no traceback
# ---------------------------------------------------------------------------------------------


def test_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.pcap", handshake_packets()).read_bytes()
    cases = {
        "truncated.pcap": (good[:-7], "truncated pcap record"),
        "corrupt.pcap": (
            good[:24] + struct.pack("<IIII", 10, 0, 0xFFFFFF00, 60) + good[40:],
            "truncated pcap record at offset 24",
        ),
        "notes.txt": (b"hello, this is not a capture\n", "not a pcap or pcapng file"),
        "empty.pcap": (b"", "not a pcap or pcapng file"),
        "linktype.pcap": (
            write(tmp_path / "x.pcap", handshake_packets(), linktype=147).read_bytes(),
            "link type 147 is not supported",
        ),
        "udp.pcap": (
            write(
                tmp_path / "u.pcap", [bytes.fromhex("4500001c0000400040110000c0000201c000020200350035000800")]
            ).read_bytes(),
            "no TCP segments",
        ),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        status, _out, err = run_cli(capsys, str(path), "--color", "never")
        assert status == 2, (name, err)
        assert message in err and "Traceback" not in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
    status, _, err = run_cli(capsys, str(tmp_path / "missing.pcap"))
    assert status == 2 and "no such file" in err
    status, _, err = run_cli(capsys, str(tmp_path))
    assert status == 2 and "directory" in err


def test_truncated_file_still_reports_what_it_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "good.pcap", handshake_packets()).read_bytes()
    (tmp_path / "cut.pcap").write_bytes(good[:-7])
    status, out, err = run_cli(capsys, str(tmp_path / "cut.pcap"), "--csv")
    assert status == 2 and "truncated" in err
    assert len(list(csv.DictReader(io.StringIO(out)))) == 1


def test_never_a_traceback_as_a_program(tmp_path: Path) -> None:
    path = tmp_path / "junk.pcap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1" + os.urandom(200))
    proc = subprocess.run(
        [sys.executable, "-m", "synack", "analyze", str(path)], capture_output=True, text=True, timeout=60
    )
    assert (
        proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("synack analyze")
    )


# ---------------------------------------------------------------------------------------------
# Parallel: --jobs and --dask give the same results
# ---------------------------------------------------------------------------------------------


def _csv_rows(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, str]]:
    status, out, err = run_cli(capsys, *argv, "--csv")
    assert status == 0, err
    return sorted(csv.DictReader(io.StringIO(out)), key=lambda r: int(r["id"]))


def test_jobs_give_the_same_results(capsys: pytest.CaptureFixture[str], demo: Path) -> None:
    one_process = _csv_rows(capsys, str(demo), "--msl", "1")
    assert _csv_rows(capsys, str(demo), "--msl", "1", "--jobs", "2") == one_process


def _dies(*args: object) -> None:
    os._exit(9)


def test_a_worker_that_dies_is_a_clear_error_not_a_hang(
        capsys: pytest.CaptureFixture[str], demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A --jobs worker killed mid-shard (here it exits at once, as the OOM killer would end it):
    exit status 2 and one line, where multiprocessing.Pool would have waited for ever."""
    from synack.analyze import parallel

    monkeypatch.setattr(parallel, "run_shard", _dies)
    status, out, err = run_cli(capsys, str(demo), "--jobs", "2")
    assert status == 2 and "a worker process died" in err, (out, err)


def test_dask_local_cluster_gives_the_same_results(tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="Dask is an optional dependency: pip install 'synack[dask]'")
    from distributed import LocalCluster

    from synack.analyze.parallel import analyze_dask

    path = tmp_path / "d.pcap"
    run_scenario("half-open-crash").trace.to_pcap(path)
    expected: list[ConnectionResult] = []
    analyze([str(path)], Options(msl=1.0), [expected.append])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        got: list[ConnectionResult] = []
        summary = analyze_dask(
            [str(path)], Options(msl=1.0), cluster.scheduler_address, [got.append], shards=3
        )
    key = [(r.id, r.conn_state, r.history, r.final(0), r.final(1), r.packets) for r in expected]
    assert sorted(key) == sorted(
        (r.id, r.conn_state, r.history, r.final(0), r.final(1), r.packets) for r in got
    )
    assert summary.connections == len(expected)


def test_dask_unreachable_is_a_clear_error(capsys: pytest.CaptureFixture[str], demo: Path) -> None:
    pytest.importorskip("distributed", reason="Dask is an optional dependency: pip install 'synack[dask]'")
    status, _, err = run_cli(capsys, str(demo), "--dask", "tcp://127.0.0.1:9")
    assert status == 2 and "cannot reach the cluster" in err


# ---------------------------------------------------------------------------------------------
# The HTML report, in a real browser
# ---------------------------------------------------------------------------------------------


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.sections: list[str] = []
        self.check = ""
        self._in_check = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "conn-row" in (a.get("class") or ""):
            self.rows.append(a.get("id") or "")
        if tag == "details" and "conn" in (a.get("class") or ""):
            self.sections.append(a.get("id") or "")
        self._in_check = a.get("id") == "check"

    def handle_data(self, data: str) -> None:
        if self._in_check:
            self.check += data


def test_report_in_headless_chromium(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run scripts/setup-system.sh"
    page = tmp_path / "report.html"
    status, _, err = run_cli(capsys, str(demo), "--msl", "1", "--html", str(page), "--color", "never")
    assert status == 0, err
    profile = tmp_path / "profile"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-sync",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=3000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri() + "#conn-0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, HOME=str(tmp_path)),
    )
    assert proc.returncode == 0
    dom = _Page()
    dom.feed(proc.stdout)
    assert dom.rows == ["row-0", "row-1"] and dom.sections == ["conn-0", "conn-1"]
    assert dom.check.strip() == "connections=2 rows=2 sections=2 graphs=3", dom.check
    errors = [
        line
        for line in proc.stderr.splitlines()
        if "Uncaught" in line or ("CONSOLE" in line and "rror" in line)
    ]
    assert not errors, errors
    assert "<iframe" in proc.stdout  # #conn-0 opened the first ladder


def test_memory_follows_open_connections_not_the_file(tmp_path: Path) -> None:
    """Many short connections in sequence: finished ones are finalized as the capture goes on."""
    path = tmp_path / "many.pcap"
    with PcapWriter(path) as w:
        for n in range(400):
            sport = 1024 + n
            pkts = [
                build_packet(A, B, Segment(sport, 80, 1, None, SYN, 1000)),
                build_packet(B, A, Segment(80, sport, 7, 2, SYN | ACK, 1000)),
                build_packet(A, B, Segment(sport, 80, 2, 8, FIN | ACK, 1000)),
                build_packet(B, A, Segment(80, sport, 8, 3, FIN | ACK, 1000)),
                build_packet(A, B, Segment(sport, 80, 3, 9, ACK, 1000)),
            ]
            for k, p in enumerate(pkts):
                w.write(p, n * 1.0 + k * 0.001)
    summary = analyze([str(path)], Options(linger=2.0))
    assert summary.connections == 400 and summary.capture.peak_open <= 20  # not 400


def test_attempt_timeout_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--attempt-timeout S`` ends an unanswered attempt after S silent seconds (a SYN sent again
    after that is a new attempt); 0 keeps every attempt to the end; a negative or NaN value is
    a one-line error."""
    path = tmp_path / "again.pcap"
    with PcapWriter(path) as w:
        for t in (0.0, 1.0, 200.0):
            w.write(build_packet(A, B, Segment(40000, 80, 1, None, SYN, 1000)), t)
    counts = {}
    for value in ("120", "0", "300"):
        status, out, _ = run_cli(capsys, str(path), "--attempt-timeout", value, "--csv")
        assert status == 0
        counts[value] = len(out.strip().splitlines()) - 1
    assert counts == {"120": 2, "0": 1, "300": 1}
    for bad in ("-1", "nan"):
        status, _, err = run_cli(capsys, str(path), "--attempt-timeout", bad)
        assert status == 2 and "--attempt-timeout must be" in err and len(err.strip().splitlines()) == 1


def test_analyze_error_carries_the_message() -> None:
    with pytest.raises(AnalyzeError, match="no such file"):
        analyze(["/nonexistent/x.pcap"], Options())
