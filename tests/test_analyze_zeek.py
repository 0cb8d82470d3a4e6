"""Zeek's ``conn_state`` and ``history`` on packet sequences built by hand, each with the answer
worked out from the rules of ``docs/capture-analysis.md`` §1–2 (Zeek itself is not installed):
which endpoint states the packets give, then the decision table in its order."""

from __future__ import annotations

from pathlib import Path

import pytest

from synack.analyze.engine import Options
from synack.analyze.model import ConnectionResult
from synack.analyze.run import analyze
from synack.core.wire import ACK, FIN, PSH, RST, SYN, Segment, build_packet
from synack.pcap import PcapWriter

ORIG, RESP = "10.1.1.1", "10.2.2.2"
OP, RP = 40000, 80
X, Y = 1000, 5000  # their ISNs


def pkt(frm: str, seq: int, ack: int | None, flags: int, data: int = 0, win: int = 1000) -> tuple[str, bytes]:
    src, dst, sport, dport = (ORIG, RESP, OP, RP) if frm == "o" else (RESP, ORIG, RP, OP)
    return frm, build_packet(src, dst, Segment(sport, dport, seq, ack, flags, win, payload=b"x" * data))


def run(tmp: Path, packets: list[tuple[str, bytes]], **opts: object) -> ConnectionResult:
    path = tmp / "z.pcap"
    with PcapWriter(path) as w:
        for k, (_frm, raw) in enumerate(packets):
            w.write(raw, 1.0 + k * 0.01)
    out: list[ConnectionResult] = []
    analyze([str(path)], Options(**opts), [out.append])  # type: ignore[arg-type]
    assert len(out) == 1
    return out[0]


HANDSHAKE = [pkt("o", X, None, SYN), pkt("r", Y, X + 1, SYN | ACK), pkt("o", X + 1, Y + 1, ACK)]

CASES = {
    # name: (packets, conn_state, history) — the endpoint states that lead there in the comment
    "SF data both ways (the page's example)": (
        [
            *HANDSHAKE,
            pkt("o", X + 1, Y + 1, ACK | PSH, 10),
            pkt("r", Y + 1, X + 11, ACK),
            pkt("r", Y + 1, X + 11, ACK | PSH, 20),
            pkt("o", X + 11, Y + 21, ACK),
            pkt("o", X + 11, Y + 21, FIN | ACK),
            pkt("r", Y + 21, X + 12, FIN | ACK),
            pkt("o", X + 12, Y + 22, ACK),
        ],
        "SF",
        "ShADadFf",
    ),  # both CLOSED
    "REJ refused": (
        [pkt("o", X, None, SYN), pkt("r", 0, X + 1, RST | ACK)],
        "REJ",
        "Sr",
    ),  # os SYN_SENT, rs RESET
    "S0 unanswered, SYN retransmitted": ([pkt("o", X, None, SYN), pkt("o", X, None, SYN)], "S0", "S"),
    "S1 established": (HANDSHAKE, "S1", "ShA"),  # os, rs ESTABLISHED (the SYN,ACK establishes both)
    "RSTO originator aborts": ([*HANDSHAKE, pkt("o", X + 1, Y + 1, RST | ACK)], "RSTO", "ShAR"),
    "RSTR responder aborts": ([*HANDSHAKE, pkt("r", Y + 1, X + 1, RST | ACK)], "RSTR", "ShAr"),
    "S2 originator closes, no reply": ([*HANDSHAKE, pkt("o", X + 1, Y + 1, FIN | ACK)], "S2", "ShAF"),
    "S3 responder closes, no reply": ([*HANDSHAKE, pkt("r", Y + 1, X + 1, FIN | ACK)], "S3", "ShAf"),
    "SH SYN then FIN": (
        [pkt("o", X, None, SYN), pkt("o", X + 1, None, FIN)],
        "SH",
        "SF",
    ),  # os CLOSED, rs INACTIVE
    "RSTOS0 SYN then RST": ([pkt("o", X, None, SYN), pkt("o", X + 1, None, RST)], "RSTOS0", "SR"),
    "RSTRH SYN,ACK then RST (roles flipped)": (
        [pkt("r", Y, X + 1, SYN | ACK), pkt("r", Y + 1, X + 1, RST)],
        "RSTRH",
        "^hr",
    ),  # rs RESET, os INACTIVE
    "SHR SYN,ACK then FIN": (
        [pkt("r", Y, X + 1, SYN | ACK), pkt("r", Y + 1, X + 1, FIN | ACK)],
        "SHR",
        "^hf",
    ),
    "OTH midstream": (
        [pkt("o", X + 1, Y + 1, ACK | PSH, 10), pkt("r", Y + 1, X + 11, ACK | PSH, 10)],
        "OTH",
        "Dd",
    ),  # both PARTIAL
    "REJ both reset, no payload": (
        [
            pkt("o", X, None, SYN),
            pkt("r", Y, X + 1, SYN | ACK),
            pkt("o", X + 1, None, RST),
            pkt("r", Y + 1, None, RST),
        ],
        "REJ",
        "ShRr",
    ),
    "T retransmitted payload": (
        [*HANDSHAKE, pkt("o", X + 1, Y + 1, ACK | PSH, 10), pkt("o", X + 1, Y + 1, ACK | PSH, 10)],
        "S1",
        "ShADT",
    ),
    "W zero window": (
        [*HANDSHAKE, pkt("o", X + 1, Y + 1, ACK | PSH, 10), pkt("r", Y + 1, X + 11, ACK, win=0)],
        "S1",
        "ShADaw",
    ),
    "Q SYN with FIN": ([pkt("o", X, None, SYN | FIN)], "SH", "Q"),
    "I FIN with RST": ([*HANDSHAKE, pkt("o", X + 1, Y + 1, FIN | RST | ACK)], "RSTO", "ShAI"),
    "G content gap": (
        [*HANDSHAKE, pkt("o", X + 1, Y + 1, ACK | PSH, 10), pkt("r", Y + 1, X + 31, ACK)],
        "S1",
        "ShADaG",
    ),  # the gap is in the originator's data
    "F repeated only when its end changes": (
        [*HANDSHAKE, pkt("o", X + 1, Y + 1, FIN | ACK), pkt("o", X + 1, Y + 1, FIN | ACK)],
        "S2",
        "ShAF",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_conn_state_and_history(name: str, tmp_path: Path) -> None:
    packets, state, history = CASES[name]
    r = run(tmp_path, packets)
    assert (r.conn_state, r.history) == (state, history)


def test_counted_letters_repeat_at_powers_of_ten(tmp_path: Path) -> None:
    """T is written when the count reaches 1 and 10, not in between."""
    again = [pkt("o", X + 1, Y + 1, ACK | PSH, 10)] * 12
    r = run(tmp_path, [*HANDSHAKE, pkt("o", X + 1, Y + 1, ACK | PSH, 10), *again])
    assert r.history == "ShADTT"


def test_bad_checksum_is_c(tmp_path: Path) -> None:
    frm, raw = pkt("o", X + 1, Y + 1, ACK | PSH, 10)
    bad = raw[:36] + bytes([raw[36] ^ 0xFF, raw[37] ^ 0x55]) + raw[38:]  # the TCP checksum field
    r = run(tmp_path, [*HANDSHAKE, (frm, bad)], checksums="all")
    assert r.history == "ShACD"
    assert any(f.kind == "bad-checksum" for f in r.findings)
