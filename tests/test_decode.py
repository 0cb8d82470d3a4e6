"""Tests for ``synack decode``: hex text parsing, decoding, analysis, text/JSON output, errors."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synack import decode
from synack.cli import main
from synack.core import wire

DATA = Path(__file__).parent / "data"
SEED001 = DATA / "seed001_handshake.txt"

# The three TCP headers of seed 001, as the exercise prints them (bytes 0x22 onwards of each frame).
SEED_HEX = {
    "1": "0050 83aa 4649 3edd 3396 37a3 a012 16a0 c4c0 0000 0204 05b4 0402 080a d79b 62b7 0056 4a2a "
         "0103 0302",
    "2": "83aa 0050 3396 37a2 0000 0000 a002 16d0 841d 0000 0204 05b4 0402 080a 0056 4a2a 0000 0000 "
         "0103 0300",
    "3": "83aa 0050 3396 37a3 4649 3ede 8010 16d0 f34b 0000 0101 080a 0056 4a36 d79b 62b7",
}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["decode", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def decode_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """Run ``synack decode --json ARGV`` and return the parsed document."""
    rc, out, err = run_cli(capsys, "--json", *argv)
    assert rc == 0, err
    doc = json.loads(out)
    assert isinstance(doc, dict)
    return doc


def by_label(doc: Any) -> dict[str, Any]:
    return {str(p["label"] if p["label"] is not None else p["index"]): p for p in doc["packets"]}


# --- helpers that produce the text of other tools -------------------------------------------------


def wireshark_pane(data: bytes, start: int = 0, label: str | None = None) -> str:
    """A hex pane in Wireshark's layout: ``0000  xx xx ...   ascii``, blank columns before ``start``."""
    lines = []
    first_line = start - start % 16
    for off in range(first_line, start + len(data), 16):
        cells = []
        chars = []
        for pos in range(off, off + 16):
            if start <= pos < start + len(data):
                b = data[pos - start]
                cells.append(f"{b:02x}")
                chars.append(chr(b) if 32 <= b < 127 else ".")
            elif pos < start:
                cells.append("  ")
                chars.append(".")
        lines.append(f"{off:04x}  {' '.join(cells):<47}   {''.join(chars)}")
    if label is not None:
        lines[-1] += f"   ({label})"
    return "\n".join(lines)


def tcpdump_xx(packets: list[bytes], with_ascii: bool = False) -> str:
    """``tcpdump -xx`` (or ``-X``) text: a summary line, then ``\\t0x0000:  4500 003c ...`` lines."""
    out = []
    for i, raw in enumerate(packets):
        pkt = wire.parse_packet(raw)
        out.append(f"12:00:0{i}.000000 IP{'6' if pkt.version == 6 else ''} {wire.format_tcpdump(pkt)}")
        for off in range(0, len(raw), 16):
            chunk = raw[off:off + 16]
            groups = " ".join(chunk[j:j + 2].hex() for j in range(0, len(chunk), 2))
            line = f"\t0x{off:04x}:  {groups}"
            if with_ascii:
                line = f"{line:<50}  " + "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            out.append(line)
    return "\n".join(out) + "\n"


def handshake_v4() -> list[bytes]:
    c, s = "192.0.2.10", "198.51.100.7"
    return [
        wire.build_packet(c, s, wire.Segment(50123, 443, 100, None, wire.SYN, 64240,
                                             (wire.Mss(1460), wire.SackPermitted(), wire.WindowScale(7))),
                          ident=0x1c46),
        wire.build_packet(s, c, wire.Segment(443, 50123, 9000, 101, wire.SYN | wire.ACK, 65160,
                                             (wire.Mss(1400), wire.Nop(), wire.WindowScale(9)))),
        wire.build_packet(c, s, wire.Segment(50123, 443, 101, 9001, wire.ACK, 502)),
    ]


def segment_v6() -> bytes:
    return wire.build_packet(
        "2001:db8::1", "2001:db8::2",
        wire.Segment(40000, 22, 7, 1234, wire.ACK | wire.PSH, 1000, (wire.Nop(), wire.Nop(),
                     wire.Timestamps(10, 20)), payload=b"SSH-2.0-synack\r\n"),
        flow=0x12345, tos=0x10,
    )


# --- seed 001 --------------------------------------------------------------------------------------


def test_seed_text_parses_into_three_labelled_tcp_headers() -> None:
    packets = decode.parse_hex_dump(SEED001.read_text(encoding="utf-8"))
    assert [p.label for p in packets] == ["1", "2", "3"]
    assert [p.start_offset for p in packets] == [0x22, 0x22, 0x22]
    for p in packets:
        assert p.data == bytes.fromhex(SEED_HEX[p.label or ""])


def test_seed_text_without_nbsp_or_blank_lines() -> None:
    text = SEED001.read_text(encoding="utf-8").replace("\u00a0", " ")
    text = "\n".join(line for line in text.splitlines() if line.strip())
    packets = decode.parse_hex_dump(text)
    assert [(p.label, p.data) for p in packets] == [(k, bytes.fromhex(v)) for k, v in SEED_HEX.items()]


@pytest.mark.parametrize("label", ["1", "2", "3"])
def test_seed_round_trip_is_byte_exact(label: str) -> None:
    raw = bytes.fromhex(SEED_HEX[label])
    assert wire.build_segment(wire.parse_segment(raw)) == raw


def test_seed_fields(capsys: pytest.CaptureFixture[str]) -> None:
    doc = decode_json(capsys, "-f", str(SEED001))
    p = by_label(doc)
    assert all(x["kind"] == "tcp" and x["ip"] is None for x in p.values())
    t1, t2, t3 = (p[k]["tcp"] for k in "123")
    # (2) SYN, (1) SYN-ACK, (3) ACK
    assert (t2["flags"], t2["flag_names"]) == (0x02, ["SYN"])
    assert (t1["flags"], t1["flag_names"]) == (0x12, ["SYN", "ACK"])
    assert (t3["flags"], t3["flag_names"]) == (0x10, ["ACK"])
    assert (t2["src_port"], t2["dst_port"]) == (33706, 80)
    assert (t1["src_port"], t1["dst_port"]) == (80, 33706)
    assert (t3["src_port"], t3["dst_port"]) == (33706, 80)
    assert t2["ack"] is None and t1["ack"] is not None
    # the seq/ack relations of the handshake, both ways
    assert t1["ack"] == t2["seq"] + 1
    assert t3["ack"] == t1["seq"] + 1
    assert t3["seq"] == t2["seq"] + 1
    assert (t1["seq"], t1["ack"], t2["seq"], t3["ack"]) == (1179205341, 865482659, 865482658, 1179205342)
    assert (t1["header_length"], t2["header_length"], t3["header_length"]) == (40, 40, 32)
    assert (t1["window"], t2["window"], t3["window"]) == (5792, 5840, 5840)
    assert (t1["checksum"], t2["checksum"], t3["checksum"]) == (0xC4C0, 0x841D, 0xF34B)
    assert t1["checksum_ok"] is None

    def opts(t: Any) -> dict[str, Any]:
        return {o["name"]: o for o in t["options"]}

    o1, o2, o3 = opts(t1), opts(t2), opts(t3)
    assert o1["MSS"]["value"] == 1460 and o2["MSS"]["value"] == 1460
    assert o1["MSS"]["raw"] == "020405b4"
    assert o1["window scale"]["value"] == 2 and o1["window scale"]["multiplier"] == 4
    assert o1["window scale"]["raw"] == "030302"
    assert o2["window scale"]["value"] == 0
    assert "SACK permitted" in o1 and "SACK permitted" in o2 and "SACK permitted" not in o3
    assert (o1["timestamps"]["tsval"], o1["timestamps"]["tsecr"]) == (3617284791, 5655082)
    assert (o2["timestamps"]["tsval"], o2["timestamps"]["tsecr"]) == (5655082, 0)
    assert (o3["timestamps"]["tsval"], o3["timestamps"]["tsecr"]) == (5655094, 3617284791)
    assert o1["timestamps"]["raw"] == "080ad79b62b700564a2a"
    assert [o["name"] for o in t3["options"]] == ["NOP", "NOP", "timestamps"]


def test_seed_analysis_order_and_roles(capsys: pytest.CaptureFixture[str]) -> None:
    doc = decode_json(capsys, "-f", str(SEED001))
    analysis = doc["analysis"]
    assert [(a["packet"], a["role"]) for a in analysis] == [
        ("2", "first handshake segment (SYN)"),
        ("1", "second handshake segment (SYN, ACK)"),
        ("3", "third handshake segment (ACK)"),
    ]
    assert "865482659 = the SYN's seq 865482658 + 1" in analysis[1]["reason"]
    assert "ack 1179205342 = the SYN-ACK's seq 1179205341 + 1" in analysis[2]["reason"]
    conns = doc["connections"]
    assert len(conns) == 1
    assert conns[0]["client"] == {"address": None, "port": 33706}
    assert conns[0]["server"] == {"address": None, "port": 80}
    assert conns[0]["service"] == "HTTP"
    assert conns[0]["order"] == ["2", "1", "3"]


def test_seed_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(capsys, "-f", str(SEED001))
    assert rc == 0 and err == ""
    assert "packet (1): bare TCP header, 40 bytes (no IP header: checksum cannot be verified" in out
    assert "0x12 = 0001 0010 = SYN, ACK" in out
    assert "0x02 = 0000 0010 = SYN" in out
    assert "source port          80 (http)" in out
    assert "08 0a d7 9b 62 b7 00 56 4a 2a" in out and "timestamps val=3617284791 ecr=5655082" in out
    assert "03 03 02" in out and "window scale 2 (multiply by 4)" in out
    assert "connection 1: from port 33706 to port 80 (HTTP)" in out
    assert "order: (2) → (1) → (3)" in out
    assert "80 > 33706: Flags [S.], seq 1179205341, ack 865482659, win 5792" in out
    analysis = out[out.index("\nanalysis\n"):]
    assert analysis.index("packet (2)") < analysis.index("packet (1)") < analysis.index("packet (3)")


def test_seed_in_any_input_order_gives_the_same_analysis() -> None:
    hps = decode.parse_hex_dump(SEED001.read_text(encoding="utf-8"))
    for perm in ([0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]):
        packets = [decode.decode_packet(hps[i], n) for n, i in enumerate(perm, start=1)]
        (conn,) = decode.analyze(packets)
        assert [r.packet.label for r in conn.roles] == ["2", "1", "3"]


# --- input forms ------------------------------------------------------------------------------------


def test_bare_hex_arguments_forms(capsys: pytest.CaptureFixture[str]) -> None:
    compact = SEED_HEX["2"].replace(" ", "")
    colons = ":".join(compact[i:i + 2] for i in range(0, len(compact), 2))
    prefixed = " ".join("0x" + compact[i:i + 2] for i in range(0, len(compact), 2))
    for argv in ([compact], [colons], [prefixed], [SEED_HEX["2"]], SEED_HEX["2"].split()):
        doc = decode_json(capsys, *argv)
        (pkt,) = doc["packets"]
        assert pkt["kind"] == "tcp" and pkt["tcp"]["flag_names"] == ["SYN"]
        assert pkt["label"] is None


def test_several_packets_as_arguments_and_blank_line_separated(capsys: pytest.CaptureFixture[str]) -> None:
    doc = decode_json(capsys, SEED_HEX["3"], SEED_HEX["1"], SEED_HEX["2"])
    assert [a["packet"] for a in doc["analysis"]] == ["3", "2", "1"]
    text = "\n\n".join(SEED_HEX[k] for k in "123")
    assert [p.data for p in decode.parse_hex_dump(text)] == [bytes.fromhex(SEED_HEX[k]) for k in "123"]


def test_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(SEED001.read_text(encoding="utf-8")))
    doc = decode_json(capsys)
    assert [a["packet"] for a in doc["analysis"]] == ["2", "1", "3"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(SEED_HEX["1"]))
    doc = decode_json(capsys, "-")
    assert len(doc["packets"]) == 1


def test_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    path.write_text(tcpdump_xx(handshake_v4()), encoding="utf-8")
    doc = decode_json(capsys, "--file", str(path))
    assert [p["kind"] for p in doc["packets"]] == ["ipv4"] * 3


def test_tcpdump_xx_ipv4_built_with_wire(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    raws = handshake_v4()
    text = tcpdump_xx(raws)
    assert text.splitlines()[1].startswith("\t0x0000:  4500 ")
    assert [p.data for p in decode.parse_hex_dump(text)] == raws
    path = tmp_path / "x.txt"
    path.write_text(text, encoding="utf-8")
    doc = decode_json(capsys, "-f", str(path))
    p1 = doc["packets"][0]
    ip = p1["ip"]
    assert ip["version"] == 4 and ip["src"] == "192.0.2.10" and ip["dst"] == "198.51.100.7"
    assert ip["identification"] == 0x1c46 and ip["flags"] == ["DF"] and ip["ttl"] == 64
    assert ip["checksum_ok"] is True and p1["tcp"]["checksum_ok"] is True
    assert p1["tcpdump"] == wire.format_tcpdump(wire.parse_packet(raws[0]))
    assert [a["role"] for a in doc["analysis"]] == [
        "first handshake segment (SYN)",
        "second handshake segment (SYN, ACK)",
        "third handshake segment (ACK)",
    ]
    assert doc["connections"][0]["service"] == "HTTPS"


def test_tcpdump_X_ipv6_built_with_wire(capsys: pytest.CaptureFixture[str]) -> None:
    raw = segment_v6()
    text = tcpdump_xx([raw], with_ascii=True)
    assert "SSH-2.0" in text  # the ASCII column is there
    (hp,) = decode.parse_hex_dump(text)
    assert hp.data == raw
    d = decode.decode_packet(hp)
    assert d.kind == "ipv6" and d.ip is not None and d.ip.flow == 0x12345 and d.tcp_checksum_ok is True
    doc: Any = json.loads(json.dumps(decode.report_json([d], decode.analyze([d]))))
    ip = doc["packets"][0]["ip"]
    assert ip["traffic_class"] == 0x10 and ip["flow_label"] == 0x12345 and ip["next_header"] == 6
    tcp = doc["packets"][0]["tcp"]
    assert tcp["payload_length"] == 16 and tcp["flag_names"] == ["PSH", "ACK"]


def test_real_tcpdump_output_files(capsys: pytest.CaptureFixture[str]) -> None:
    doc = decode_json(capsys, "-f", str(DATA / "tcpdump_xx_ipv4_handshake.txt"))
    assert [p["kind"] for p in doc["packets"]] == ["ipv4"] * 3
    assert all(p["tcp"]["checksum_ok"] and p["ip"]["checksum_ok"] for p in doc["packets"])
    assert doc["packets"][2]["tcp"]["payload_length"] == 37
    doc = decode_json(capsys, "-f", str(DATA / "tcpdump_X_ipv6_handshake.txt"))
    assert [p["kind"] for p in doc["packets"]] == ["ipv6"] * 2
    assert doc["packets"][1]["tcp"]["seq"] == 0xFFFFFFF0


def test_ethernet_pane_four_way_close_shuffled(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocks = (DATA / "tshark_x_ethernet_close.txt").read_text(encoding="utf-8").strip().split("\n\n")
    assert len(blocks) == 4
    path = tmp_path / "shuffled.txt"
    path.write_text("\n\n".join(blocks[i] for i in (3, 1, 0, 2)) + "\n", encoding="utf-8")
    doc = decode_json(capsys, "-f", str(path))
    assert {p["kind"] for p in doc["packets"]} == {"ethernet"}
    eth = doc["packets"][0]["ethernet"]
    assert eth["ethertype"] == 0x0800
    # input positions 3,2,4,1 hold the original packets 1..4: FIN, ACK, FIN, ACK
    assert [(a["index"], a["role"]) for a in doc["analysis"]] == [
        (3, "FIN"), (2, "ACK of FIN"), (4, "FIN (passive close)"), (1, "ACK of FIN"),
    ]


def test_combined_fin_ack_and_data_roles() -> None:
    c, s = "10.1.1.1", "10.1.1.2"
    raws = [
        wire.build_packet(c, s, wire.Segment(1000, 80, 1, 1, wire.ACK | wire.PSH, 100, payload=b"hello")),
        wire.build_packet(s, c, wire.Segment(80, 1000, 1, 6, wire.ACK, 100)),
        wire.build_packet(c, s, wire.Segment(1000, 80, 6, 1, wire.ACK | wire.FIN, 100)),
        wire.build_packet(s, c, wire.Segment(80, 1000, 1, 7, wire.ACK | wire.FIN, 100)),
        wire.build_packet(c, s, wire.Segment(1000, 80, 7, 2, wire.ACK, 100)),
        wire.build_packet(c, s, wire.Segment(1000, 80, 7, 2, wire.ACK | wire.RST, 0)),
    ]
    packets = [decode.decode_packet(decode.HexPacket(None, 0, r), i) for i, r in enumerate(raws, start=1)]
    (conn,) = decode.analyze(packets)
    assert [(r.packet.index, r.role) for r in conn.roles] == [
        (1, "data"), (2, "ACK"), (3, "FIN"), (4, "FIN, ACK (passive close, combined)"),
        (5, "ACK of FIN"), (6, "RST"),
    ]
    assert conn.client is None  # no SYN among these packets
    # Shuffled, the order may differ only where the numbers do not decide it (ties keep the input
    # order): (2) and (3) cross in flight, (5) and (6) share seq and ack.
    rng = random.Random(1)
    for _ in range(20):
        shuffled = packets[:]
        rng.shuffle(shuffled)
        (conn,) = decode.analyze(shuffled)
        order = [r.packet.index for r in conn.roles]
        for before, after in ((1, 2), (1, 3), (3, 4), (4, 5), (4, 6), (2, 4)):
            assert order.index(before) < order.index(after), order
        roles = {r.packet.index: r.role for r in conn.roles}
        assert roles[1] == "data" and roles[4] == "FIN, ACK (passive close, combined)"
        assert roles[5] == "ACK of FIN" and roles[6] == "RST"


def test_pane_ascii_column_that_looks_like_hex() -> None:
    text = (
        "0000  00 50 83 aa 46 49 3e dd 33 96 37 a3 50 12 16 a0   ab cd ef 01 23 45 67\n"
        "0010  c4 c0 00 00                                       ab cd\n"
    )
    (hp,) = decode.parse_hex_dump(text)
    assert hp.data.hex() == "005083aa46493edd339637a3501216a0c4c00000"
    # the packet-bytes pane of Wireshark has a double space after the eighth byte
    text = (
        "0000  00 50 83 aa 46 49 3e dd  33 96 37 a3 50 12 16 a0   ab cd ef 01 23 45 67\n"
        "0010  c4 c0 00 00                                        ab cd\n"
    )
    (hp,) = decode.parse_hex_dump(text)
    assert hp.data.hex() == "005083aa46493edd339637a3501216a0c4c00000"


def test_hexdump_c_and_xxd_layouts() -> None:
    raw = bytes.fromhex(SEED_HEX["1"])
    hexdump = (
        "00000000  00 50 83 aa 46 49 3e dd  33 96 37 a3 a0 12 16 a0  |.P..FI>.3.7.....|\n"
        "00000010  c4 c0 00 00 02 04 05 b4  04 02 08 0a d7 9b 62 b7  |..............b.|\n"
        "00000020  00 56 4a 2a 01 03 03 02                           |.VJ*....|\n"
        "00000028\n"
    )
    assert [hp.data for hp in decode.parse_hex_dump(hexdump)] == [raw]
    xxd = (
        "00000000: 0050 83aa 4649 3edd 3396 37a3 a012 16a0  .P..FI>.3.7.....\n"
        "00000010: c4c0 0000 0204 05b4 0402 080a d79b 62b7  ..............b.\n"
        "00000020: 0056 4a2a 0103 0302                      .VJ*....\n"
    )
    assert [hp.data for hp in decode.parse_hex_dump(xxd)] == [raw]


def test_first_line_with_real_offset_0x22() -> None:
    text = (
        "0022  00 50 83 aa 46 49 3e dd 33 96 37 a3 50 12   .P..FI>.3.7.P.\n"
        "0030  16 a0 c4 c0 00 00 00 00 00 00 00 00 00 00 00 00   ................\n"
        "0040  00 00                                             ..\n"
    )
    (hp,) = decode.parse_hex_dump(text)
    assert hp.start_offset == 0x22 and len(hp.data) == 32


def test_detection_kinds() -> None:
    eth = bytes.fromhex("0200000000010200000000020800")
    v4 = handshake_v4()[0]
    tcp = bytes.fromhex(SEED_HEX["1"])
    assert decode.decode_packet(decode.HexPacket(None, 0, eth + v4)).kind == "ethernet"
    assert decode.decode_packet(decode.HexPacket(None, 0, v4)).kind == "ipv4"
    assert decode.decode_packet(decode.HexPacket(None, 0, segment_v6())).kind == "ipv6"
    assert decode.decode_packet(decode.HexPacket(None, 0, tcp)).kind == "tcp"
    # a pane starting at 0x0e (after Ethernet) holds an IP packet; at 0x22 a TCP header
    assert decode.decode_packet(decode.HexPacket(None, 0x0E, v4)).kind == "ipv4"
    assert decode.decode_packet(decode.HexPacket(None, 0x22, tcp)).kind == "tcp"
    # an Ethernet pane that is not at offset 0 is not taken for Ethernet
    with pytest.raises(decode.DecodeError):
        decode.decode_packet(decode.HexPacket(None, 0x10, eth + v4))


def test_bad_checksums_are_reported_not_fatal(capsys: pytest.CaptureFixture[str]) -> None:
    raw = bytearray(handshake_v4()[0])
    raw[10] ^= 0xFF  # IPv4 header checksum
    raw[36] ^= 0x01  # TCP checksum
    d = decode.decode_packet(decode.HexPacket(None, 0, bytes(raw)))
    assert d.ip_checksum_ok is False and d.tcp_checksum_ok is False
    good = wire.parse_packet(handshake_v4()[0])
    assert d.tcp_checksum_expected == good.seg.checksum
    assert d.ip_checksum_expected == good.ip_checksum
    rc, out, _ = run_cli(capsys, bytes(raw).hex())
    assert rc == 0
    assert f"(WRONG: expected 0x{good.seg.checksum:04x})" in out
    assert f"(WRONG: expected 0x{good.ip_checksum:04x})" in out


def test_json_is_stable_and_complete(capsys: pytest.CaptureFixture[str]) -> None:
    rc1, out1, _ = run_cli(capsys, "--json", "-f", str(SEED001))
    rc2, out2, _ = run_cli(capsys, "--json", "-f", str(SEED001))
    assert rc1 == rc2 == 0 and out1 == out2
    doc = json.loads(out1)
    assert set(doc) >= {"packets", "analysis"}
    pkt = doc["packets"][0]
    assert set(pkt) >= {"label", "kind", "ip", "tcp"}
    assert set(pkt["tcp"]) >= {
        "src_port", "dst_port", "seq", "ack", "header_length", "flags", "flag_names", "window",
        "checksum", "checksum_ok", "urgent", "options", "payload_length",
    }
    for opt in pkt["tcp"]["options"]:
        assert set(opt) >= {"kind", "name", "raw"}
        assert bytes.fromhex(opt["raw"])[0] == opt["kind"]
    for entry in doc["analysis"]:
        assert set(entry) >= {"packet", "role", "reason"}


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["0050 83zz"], "'z' is not a hex digit"),
        (["005083a"], "odd number of hex digits"),
        ([" "], "empty input"),
        (["005083aa46493edd339637a3 4012 16a0c4c00000"], "data offset 4 is below the minimum of 5"),
        (["005083aa46493edd339637a35012 16a0c4c0"], "TCP header truncated"),
        (["005083aa46493edd339637a3601216a0c4c00000 02010000"], "kind 2 has illegal length 1 (at byte 21"),
        (["--file", "/nonexistent/dump.txt"], "cannot read /nonexistent/dump.txt"),
    ],
)
def test_bad_input_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.startswith("synack decode: error: ") and err.count("\n") == 1
    assert needle in err
    assert "Traceback" not in err


def test_bad_hex_in_pane_columns(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = SEED001.read_text(encoding="utf-8").replace("16 a0 c4 c0", "16 a0 c4 zz")
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    rc, _, err = run_cli(capsys, "-f", str(path))
    assert rc == 2 and err == "synack decode: error: line 3: 'zz' in the hex columns is not hex\n"


def test_one_bad_packet_among_several(capsys: pytest.CaptureFixture[str]) -> None:
    bad = SEED_HEX["3"].replace("8010", "4010")  # data offset 4
    rc, out, err = run_cli(capsys, SEED_HEX["1"], bad)
    assert rc == 2 and out == ""
    assert err.startswith("synack decode: error: packet (2): ") and err.count("\n") == 1


def test_missing_bytes_in_pane() -> None:
    text = (
        "0000  00 50 83 aa 46 49 3e dd 33 96 37 a3 50 12 16 a0   .P..FI>.3.7.P...\n"
        "0010  c4 c0 00                                          ...\n"
        "0020  00 00                                             ..\n"
    )
    with pytest.raises(decode.DecodeError, match="line 2: 3 bytes"):
        decode.parse_hex_dump(text)


def test_subprocess_error_has_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "synack", "decode", "00 50 83 aa 46"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("synack decode: error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_subprocess_stdin_ok() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "synack", "decode", "--json"],
        input=SEED001.read_text(encoding="utf-8"), capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["analysis"][0]["role"] == "first handshake segment (SYN)"


# --- properties --------------------------------------------------------------------------------------

_HEXISH = st.text(alphabet="0123456789abcdefABCDEFxX:,() .|\t\n\u00a0zg", max_size=400)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), _HEXISH))
def test_parser_raises_only_decode_error(text: str) -> None:
    try:
        packets = decode.parse_hex_dump(text)
    except decode.DecodeError:
        return
    assert packets and all(p.data for p in packets)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([0, 0x0E, 0x22, 0x36, 0x05]))
def test_decoder_raises_only_decode_error(data: bytes, start: int) -> None:
    try:
        d = decode.decode_packet(decode.HexPacket(None, start, data))
    except decode.DecodeError:
        return
    conns = decode.analyze([d, d])
    decode.format_report([d, d], conns)
    json.dumps(decode.report_json([d], decode.analyze([d])))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=100), st.integers(min_value=0, max_value=15), st.booleans())
def test_wireshark_pane_round_trip(data: bytes, skip: int, label: bool) -> None:
    text = wireshark_pane(data, skip, "7" if label else None)
    (hp,) = decode.parse_hex_dump(text)
    assert hp.data == data
    if skip + len(data) > 16:  # several lines: the blank leading columns are recovered
        assert hp.start_offset == skip
    if label:
        assert hp.label == "7"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=70), min_size=1, max_size=4))
def test_tcpdump_style_round_trip(chunks: list[bytes]) -> None:
    lines = []
    for i, raw in enumerate(chunks):
        lines.append(f"12:00:00.{i:06d} IP 10.0.0.1.1 > 10.0.0.2.2: Flags [S], length 0")
        for off in range(0, len(raw), 16):
            chunk = raw[off:off + 16]
            groups = " ".join(chunk[j:j + 2].hex() for j in range(0, len(chunk), 2))
            ascii_col = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            lines.append(f"\t0x{off:04x}:  {groups:<39}  {ascii_col}")
    assert [hp.data for hp in decode.parse_hex_dump("\n".join(lines))] == chunks


# ---------------------------------------------------------------------------------------------
# A capture file as the argument (pcap, pcapng)
# ---------------------------------------------------------------------------------------------


def _capture(tmp_path: Path) -> Path:
    from synack.scenarios import run_scenario

    path = tmp_path / "close.pcap"
    run_scenario("close").trace.to_pcap(path)
    return path


def test_decode_reads_a_pcap_file_given_as_argument(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = _capture(tmp_path)
    assert main(["decode", str(path)]) == 0
    out = capsys.readouterr().out
    assert (out.count("packet (") >= 7 and "three-way handshake" in out.lower()) or "SYN-ACK" in out
    assert "order: (1) → (2) → (3) → (4) → (5) → (6) → (7)" in out
    assert main(["decode", "--json", "-f", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in doc["packets"]] == [str(n) for n in range(1, 8)]


def test_decode_reads_pcapng_and_skips_frames_that_are_not_tcp(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import struct

    udp = bytes.fromhex("4500001c0000400040110000c0000201c000020200350035000800")
    tcp = wire.build_packet("192.0.2.1", "192.0.2.2", wire.Segment(1, 2, 3, None, wire.SYN, 100))

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 101, 0, 65535))
    epbs = b"".join(block(6, struct.pack("<IIIII", 0, 0, k, len(p), len(p)) + p)
                    for k, p in enumerate((udp, tcp)))
    path = tmp_path / "two.pcapng"
    path.write_bytes(shb + idb + epbs)
    assert main(["decode", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "packet (2)" in out and "1 frames of" in err


def test_decode_of_a_damaged_capture_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _capture(tmp_path)
    (tmp_path / "cut.pcap").write_bytes(path.read_bytes()[:-5])
    assert main(["decode", str(tmp_path / "cut.pcap")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("synack decode: error:") and "truncated" in err and len(err.splitlines()) == 1
