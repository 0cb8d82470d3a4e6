"""Connection attempts that never complete (a SYN flood, a scan, a peer that is down) end after
``attempt_timeout`` seconds of capture time without a packet: their results are given then, so
that memory follows the attempts still alive rather than every attempt in the file, and what
follows on their 4-tuple is a new connection. The results must not depend on when the engine
looks (how the file is cut into chunks), and nothing but attempts may be ended early."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from synack.analyze.engine import Engine, Options
from synack.analyze.model import ConnectionResult
from synack.core.wire import ACK, PSH, SYN, Segment, build_packet
from synack.pcap import PcapWriter, iter_chunks

T0 = 1_700_000_000.0
SERVER = "192.168.1.1"


def _syn(src: str, sport: int, isn: int) -> bytes:
    return build_packet(src, SERVER, Segment(sport, 80, isn, None, SYN, 64240))


def _flood(path: Path, n: int, gap: float) -> None:
    """``n`` SYNs from as many sources, one every ``gap`` seconds, none answered."""
    rng = random.Random(7)
    with PcapWriter(str(path), snaplen=128) as w:
        for k in range(n):
            src = f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}"
            w.write(_syn(src, rng.randrange(1024, 65535), rng.getrandbits(32)), T0 + k * gap)


def _run(path: Path, chunk_size: int = 1 << 22, **options: Any) -> tuple[list[ConnectionResult], int]:
    results: list[ConnectionResult] = []
    engine = Engine(Options(**options), results.append)
    engine.run(iter_chunks(str(path), chunk_size=chunk_size))
    stats = engine.finish()
    return sorted(results, key=lambda r: r.id), stats.peak_open


def _without_until(r: ConnectionResult) -> dict[str, Any]:
    d = r.to_dict()
    d["extras"] = {k: v for k, v in r.extras.items() if k != "until"}
    return d


def test_a_long_flood_holds_only_the_attempts_still_alive(tmp_path: Path) -> None:
    """3,000 unanswered SYNs at 10 a second (300 s): with the default 120 s, at most the last
    120 s of them and the half timeout between two looks (1,800) are held at once; kept to the
    end, all 3,000. Each attempt's result is the same either way but for when it was followed
    until (``until``: 120 s after its SYN, or the end of the capture)."""
    path = tmp_path / "flood.pcap"
    _flood(path, 3000, 0.1)
    ended, peak = _run(path)
    kept, peak_kept = _run(path, attempt_timeout=None)
    assert peak_kept == 3000
    assert peak <= 10 * (120 + 60) + 64
    assert len(ended) == len(kept) == 3000
    assert all(r.conn_state == "S0" for r in ended)
    for a, b in zip(ended, kept, strict=True):
        assert _without_until(a) == _without_until(b)
    early = [r for r in ended if r.extras["until"] == pytest.approx(r.start + 120.0, abs=1e-6)]
    assert len(early) == sum(1 for r in kept if r.extras["until"] - r.start >= 120.0 - 1e-6) > 1700


def test_the_results_do_not_depend_on_when_the_engine_looks(tmp_path: Path) -> None:
    """The same file read in 4 KiB chunks (a look at the attempts every few dozen packets)
    and in 4 MiB ones (the whole file at once) gives the same results, field by field."""
    path = tmp_path / "flood.pcap"
    _flood(path, 1500, 0.2)
    small, _ = _run(path, chunk_size=4096)
    large, _ = _run(path)
    assert [r.to_dict() for r in small] == [r.to_dict() for r in large]


def _conversation(path: Path, gaps: list[float], syn_only: bool) -> None:
    """One 4-tuple: a SYN (then, unless ``syn_only``, a handshake and data), then a packet after
    each gap: the same SYN again, or more data."""
    client, isn, irs = "10.0.0.1", 1000, 5000
    with PcapWriter(str(path), snaplen=128) as w:
        t = T0
        w.write(_syn(client, 40000, isn), t)
        if not syn_only:
            syn_ack = Segment(80, 40000, irs, isn + 1, SYN | ACK, 65000)
            w.write(build_packet(SERVER, client, syn_ack), t + 0.01)
            w.write(build_packet(client, SERVER, Segment(40000, 80, isn + 1, irs + 1, ACK, 502)), t + 0.02)
        sent = 0
        for gap in gaps:
            t += gap
            if syn_only:
                w.write(_syn(client, 40000, isn), t)
            else:
                pkt = Segment(40000, 80, isn + 1 + sent, irs + 1, ACK | PSH, 502, payload=b"x" * 10)
                w.write(build_packet(client, SERVER, pkt), t)
                sent += 10


def test_a_syn_after_the_timeout_starts_a_new_attempt(tmp_path: Path) -> None:
    """Retransmissions within the timeout belong to the attempt (Linux: 1, 3, 7, 15, 31, 63 s);
    the same SYN 121 s after the last one is a new attempt, with its own result."""
    path = tmp_path / "again.pcap"
    _conversation(path, [1, 2, 4, 8, 16, 32, 121], syn_only=True)
    results, _ = _run(path)
    assert [r.packets for r in results] == [7, 1]
    assert results[0].flags.get("retransmission") == 6
    assert results[0].extras["until"] == pytest.approx(T0 + 63 + 120, abs=1e-6)
    kept, _ = _run(path, attempt_timeout=None)
    assert [r.packets for r in kept] == [8]


def test_an_established_connection_is_never_ended_for_being_silent(tmp_path: Path) -> None:
    """Only attempts end early: a connection past its handshake, silent for an hour, is one
    connection to the end of the capture."""
    path = tmp_path / "idle.pcap"
    _conversation(path, [1, 3600, 1], syn_only=False)
    results, _ = _run(path)
    assert len(results) == 1 and results[0].packets == 6
    assert results[0].extras["until"] == pytest.approx(T0 + 3602, abs=1e-6)
