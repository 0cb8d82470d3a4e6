"""The trace of a simulated run: typed records, JSON lines, pcap files, and the views renderers
use (segments with their fates, state timelines)."""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib
import shutil
import subprocess
from typing import Any

import pytest

from synack.core.connection import Config, Connection
from synack.core.host import Host
from synack.core.records import (
    TRANSITIONS,
    Call,
    Cause,
    Drop,
    DropRecord,
    HostNote,
    Note,
    SegmentRecord,
    State,
    StateRecord,
    Timer,
    TimerAction,
    TimerRecord,
    UserCallRecord,
)
from synack.core.wire import ACK, Segment
from synack.pcap import read_pcap
from synack.sim import Network, segment_is
from synack.trace import PacketRecord, Trace

TSHARK = "/usr/bin/tshark"


def lifecycle(seed: int = 0, **link: Any) -> tuple[Network, Trace, Connection, Connection]:
    """Handshake, 5 bytes from A, A closes, B reads the EOF and closes, TIME-WAIT expires."""
    tr = Trace()
    net = Network(seed=seed, trace=tr)
    a = net.add_host("A", "10.0.0.1", config=Config.lab())
    b = net.add_host("B", "10.0.0.2", config=Config.lab())
    net.link(a, b, delay=0.01, **link)
    lst = b.listen(80)
    c = a.connect("10.0.0.2", 80, net.now)
    assert net.run_until(lambda: lst.pending > 0, limit=30)
    s = lst.accept()
    assert s is not None
    c.send(b"hello", net.now)
    c.close(net.now)
    assert net.run_until(lambda: s.readable == 5, limit=30)
    assert s.receive(100, net.now) == b"hello"
    assert net.run_until(lambda: s.at_eof, limit=30)
    s.close(net.now)
    net.run()
    assert c.state is State.CLOSED and s.state is State.CLOSED
    return net, tr, c, s


def test_records_are_typed_frozen_and_in_time_order() -> None:
    _, tr, _, _ = lifecycle()
    kinds = {type(r) for r in tr}
    assert {PacketRecord, StateRecord, TimerRecord, UserCallRecord, HostNote} <= kinds
    times = [r.t for r in tr]
    assert times == sorted(times) and times[0] == 0.0
    rec = tr.records[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.t = 1.0  # type: ignore[misc]
    assert not hasattr(rec, "__dict__")  # slotted


def test_state_timelines() -> None:
    _, tr, c, s = lifecycle()
    (client,) = tr.states("A").values()
    assert [(r.old, r.new) for r in client] == [
        ("CLOSED", "SYN-SENT"), ("SYN-SENT", "ESTABLISHED"), ("ESTABLISHED", "FIN-WAIT-1"),
        ("FIN-WAIT-1", "FIN-WAIT-2"), ("FIN-WAIT-2", "TIME-WAIT"), ("TIME-WAIT", "CLOSED")]
    assert client[-1].why == "timeout=2MSL" and client[-1].transition.event is Cause.TIMEOUT_2MSL
    assert all(r.transition in TRANSITIONS for r in client)  # the very arrows of the table
    assert client[-1].t - client[-2].t == pytest.approx(2.0)  # 2×MSL with the lab's MSL of 1 s
    (key, server), = tr.states("B").items()
    assert key == (s.local_addr, s.local_port, s.remote_addr, s.remote_port)
    assert [r.new for r in server] == ["LISTEN", "SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT",
                                       "LAST-ACK", "CLOSED"]
    assert tr.states("nobody") == {}
    del c


def test_calls_timers_and_notes() -> None:
    _, tr, _, _ = lifecycle()
    calls = [(r.host, r.call) for r in tr.of_kind("call") if isinstance(r, UserCallRecord)]
    assert ("A", Call.OPEN_ACTIVE) in calls and ("A", Call.CLOSE) in calls and ("B", Call.CLOSE) in calls
    timers = [r for r in tr.of_kind("timer") if isinstance(r, TimerRecord)]
    assert [(r.host, r.timer, r.action) for r in timers] == [("A", Timer.TIME_WAIT, TimerAction.EXPIRED)]
    (listen,) = tr.of_kind("listen")
    assert isinstance(listen, HostNote) and listen.note is Note.LISTEN
    assert (listen.addr, listen.port) == ("*", 80)


def test_jsonl_lines_parse_with_stable_keys(tmp_path: pathlib.Path) -> None:
    _, tr, _, _ = lifecycle()
    path = tmp_path / "run.jsonl"
    assert tr.to_jsonl(path) == len(tr)
    lines = path.read_text().splitlines()
    objs = [json.loads(line) for line in lines]
    assert len(objs) == len(tr)
    for obj, rec in zip(objs, tr, strict=True):
        assert list(obj)[:2] == ["t", "kind"] and obj["t"] == rec.t and obj["kind"] == rec.kind
        assert list(obj) == list(rec.to_dict())
    sends = [o for o in objs if o["kind"] == "send"]
    assert list(sends[0]) == ["t", "kind", "src", "dst", "pid", "copy", "reason", "extra", "summary",
                              "packet"]
    assert bytes.fromhex(sends[0]["packet"]) == tr.packets("send")[0].packet
    assert "Flags [S]" in sends[0]["summary"]
    states = [o for o in objs if o["kind"] == "state"]
    assert states[0]["conn"][0] == "10.0.0.1" and states[0]["new"] == "SYN-SENT"
    buf = io.StringIO()
    tr.to_jsonl(buf)
    assert buf.getvalue() == path.read_text()


def test_pcap_as_sent_and_as_delivered(tmp_path: pathlib.Path) -> None:
    net, tr, _, _ = lifecycle(duplicate=0.5, seed=3)
    sent = tr.packets("send")
    assert tr.to_pcap(tmp_path / "sent.pcap") == len(sent)
    recs = read_pcap(tmp_path / "sent.pcap")
    assert [r.data for r in recs] == [p.packet for p in sent]
    assert [r.ts for r in recs] == [pytest.approx(p.t, abs=1e-6) for p in sent]
    delivered = tr.packets("deliver")
    assert len(delivered) > len(sent)  # duplicates arrive twice
    assert tr.to_pcap(tmp_path / "delivered.pcap", when="delivered") == len(delivered)
    recs = read_pcap(tmp_path / "delivered.pcap")
    assert [r.ts for r in recs] == [pytest.approx(p.t, abs=1e-6) for p in delivered]
    assert recs[0].ts == pytest.approx(0.01)  # the first SYN lands after the link's 10 ms
    with pytest.raises(ValueError):
        tr.to_pcap(tmp_path / "x.pcap", when="never")
    assert net.stats()["duplicated"] == len(tr.packets("duplicate"))


def tshark_fields(path: pathlib.Path) -> list[tuple[str, str]]:
    out = subprocess.run(
        [TSHARK, "-r", str(path), "-T", "fields", "-e", "tcp.flags.str", "-e", "tcp.checksum.status",
         "-o", "tcp.check_checksum:TRUE"], capture_output=True, text=True, check=True, timeout=60).stdout
    rows = []
    for line in out.splitlines():
        flags, status = line.split("\t")
        rows.append(("".join(sorted(flags.replace("·", "").replace(".", ""))), status))
    return rows


@pytest.mark.skipif(shutil.which(TSHARK) is None, reason="tshark is not installed")
def test_tshark_reads_the_handshake_and_close(tmp_path: pathlib.Path) -> None:
    _, tr, _, _ = lifecycle()
    path = tmp_path / "life.pcap"
    tr.to_pcap(path)
    rows = tshark_fields(path)
    # Letters sorted: A = ACK, F = FIN, P = PSH, S = SYN. The handshake; A's data with its FIN
    # (close() right after send()); B's ACK; B's FIN once it has read the EOF; A's last ACK.
    assert [f for f, _ in rows] == ["S", "AS", "A", "AFP", "A", "AF", "A"]
    assert all(status == "1" for _, status in rows)  # 1 = Good
    assert len(rows) == len(tr.packets("send"))


@pytest.mark.skipif(shutil.which(TSHARK) is None, reason="tshark is not installed")
def test_tshark_sees_the_corrupted_copy_as_delivered(tmp_path: pathlib.Path) -> None:
    tr = Trace()
    net = Network(seed=1, trace=tr)
    a = net.add_host("A", "10.0.0.1", config=Config.lab())
    net.add_host("B", "10.0.0.2", config=Config.lab())
    net.link("A", "B", corrupt=1.0)
    a.connect("10.0.0.2", 80, 0.0)
    net.run(until=0.5)
    assert [d.reason for d in tr.packets("drop")] == ["corrupt: bad checksum"]
    tr.to_pcap(tmp_path / "sent.pcap")
    tr.to_pcap(tmp_path / "delivered.pcap", when="delivered")
    assert tshark_fields(tmp_path / "sent.pcap") == [("S", "1")]
    assert tshark_fields(tmp_path / "delivered.pcap")[0][1] == "0"  # 0 = Bad


def test_segments_with_their_fates() -> None:
    tr = Trace()
    net = Network(seed=2, trace=tr)
    a = net.add_host("A", "10.0.0.1", config=Config.lab())
    b = net.add_host("B", "10.0.0.2", config=Config.lab())
    ab, _ = net.link(a, b, delay=0.01)
    net.drop_nth(1, segment_is("SYN", "ACK"))
    net.hold(segment_is("ACK", data=True), 0.25)
    lst = b.listen(80)
    c = a.connect("10.0.0.2", 80, 0.0)
    assert net.run_until(lambda: lst.pending > 0, limit=5)
    ab.duplicate = 1.0
    c.send(b"dup", net.now)
    net.run(until=net.now + 0.1)  # the held data segment is still on its way
    lines = list(tr.segments())
    assert [line.packet.seg.ctl() for line in lines[:2]] == ["SYN", "SYN,ACK"]
    syn_ack = lines[1]
    assert (syn_ack.src, syn_ack.dst) == ("B", "A")
    assert syn_ack.fate.status == "dropped" and syn_ack.fate.reason == "scripted"
    assert lines[0].fate.delivered and lines[0].fate.t == pytest.approx(0.01)
    data = [line for line in lines if line.packet.seg.payload == b"dup"]
    assert [(d.fate.copy, d.fate.status) for d in data] == [(0, "in flight"), (1, "in flight")]
    assert data[0].fate.held == 0.25 and data[0].fate.pid == data[1].fate.pid
    net.run(until=net.now + 1)
    data = [line for line in tr.segments() if line.packet.seg.payload == b"dup"]
    assert all(d.fate.delivered for d in data)
    assert data[0].fate.t == pytest.approx(data[0].t + 0.01 + 0.25)


def test_host_records_are_kept_as_they_are() -> None:
    tr = Trace()
    key = ("a", 1, "b", 2)
    seg = Segment(1, 2, 0, 0, ACK, 0)
    tr.host_record(SegmentRecord(1.0, "H", key, False, seg))
    tr.host_record(SegmentRecord(1.0, "H", key, True, seg))
    assert len(tr) == 0  # the network records segments itself, with their bytes
    arrow = next(t for t in TRANSITIONS if t.src is State.LISTEN and t.dst is State.SYN_RECEIVED)
    st = StateRecord(1.0, "H", key, arrow)
    drop = DropRecord(1.5, "H", None, Drop.BAD_CHECKSUM, "x")
    tr.host_record(st)
    tr.host_record(drop)
    assert tr.records == [st, drop]
    assert (st.old, st.new, st.why) == ("LISTEN", "SYN-RECEIVED", "rcv SYN")
    assert drop.kind == "host_drop" and drop.text == "bad_checksum: x"
    objs = [json.loads(line) for line in tr.jsonl()]
    assert [o["kind"] for o in objs] == ["state", "host_drop"]
    assert objs[0]["event"] == "RCV_SYN" and objs[1]["reason"] == "BAD_CHECKSUM"


def test_bad_checksums_are_recorded_by_the_host_and_by_the_network() -> None:
    tr = Trace()
    net = Network(seed=4, trace=tr)
    a = net.add_host("A", "2001:db8::1")
    b: Host = net.add_host("B", "2001:db8::2")
    net.link(a, b, corrupt=1.0)
    a.connect("2001:db8::2", 80, 0.0)
    net.run(until=0.5)
    (host_drop,) = tr.of_kind("host_drop")
    assert isinstance(host_drop, DropRecord) and host_drop.host == "B"
    assert host_drop.reason is Drop.BAD_CHECKSUM and "bad TCP checksum" in host_drop.detail
    (corrupt,) = tr.packets("corrupt")
    (drop,) = tr.packets("drop")
    assert drop.packet == corrupt.packet != tr.packets("send")[0].packet
    assert b.stats()["bad_checksum"] == 1
