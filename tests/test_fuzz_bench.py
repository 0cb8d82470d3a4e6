"""bench/fuzz.py, in its fallback engine (the seeded random mutator, no atheris needed): it counts
its inputs, reports a crash (an exception, a broken invariant, a hang) with a saved reproducer,
and its host target does reach the state machine. The fuzzing itself is a benchmark, not a test."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from synack.core import wire
from synack.core.records import State

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


fuzz = _load("fuzz")
ft = fuzz._load_targets(None)


@pytest.fixture(scope="module")
def fixtures() -> list[Any]:
    fx: list[Any] = ft.build_fixtures(followers=False)
    return fx


@pytest.mark.parametrize(("name", "n"), [("host", 1500), ("wire", 1500), ("decode", 300), ("pcap", 1000)])
def test_fallback_counts_inputs_and_finds_nothing(name: str, n: int, tmp_path: Path) -> None:
    target = ft.TARGETS[name]()
    stats = fuzz.run_random(target, ft.corpus(target), n, seed=5, out=tmp_path, timeout=5.0)
    assert stats.inputs == n
    assert stats.engine == "random"
    assert stats.packets > 0
    assert stats.crashes == 0, stats.unique
    assert not any(tmp_path.iterdir())


class _Fake:
    """A target that crashes on inputs starting with 0xEE, raises its documented error on 0xDD
    and spins (forever, as far as it knows) on 0xCC."""

    name = "fake"
    allowed = (ValueError,)
    max_len = 64

    def __call__(self, data: bytes) -> int:
        if data[:1] == b"\xee":
            table: dict[bytes, int] = {}
            return table[data]  # KeyError: a crash
        if data[:1] == b"\xdd":
            raise ValueError("documented")
        if data == b"\xcc spin":
            while True:
                pass
        return 1


def test_harness_reports_and_saves_a_crash(tmp_path: Path) -> None:
    corpus = [b"\x00abc", b"\xddbad", b"\xeecrash"]
    stats = fuzz.run_random(_Fake(), corpus, 3000, seed=1, out=tmp_path, timeout=5.0)
    assert stats.inputs == 3000
    assert stats.crashes >= 1
    assert [c.kind for c in stats.unique] == ["KeyError"]
    crash = stats.unique[0]
    assert crash.count == stats.crashes
    saved = Path(crash.input_file)
    assert saved.read_bytes()[:1] == b"\xee"
    text = saved.with_suffix(".txt").read_text()
    assert "KeyError" in text and "Traceback" in text and "--reproduce" in text


def test_harness_catches_a_hang(tmp_path: Path) -> None:
    h = fuzz.Harness(_Fake(), tmp_path, timeout=0.05)
    with h.watchdog():
        h.one(b"\x00")
        h.one(b"\xcc spin")
        h.one(b"\x00")
    assert h.stats.inputs == 3
    assert [c.kind for c in h.stats.unique] == ["Hang"]


def test_cli_fallback_runs_and_says_it_is_not_coverage_guided(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc = fuzz.main(["--packets", "1000", "--engine", "random", "--out", str(tmp_path), "--quiet",
                    "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "NOT coverage-guided" in out
    assert "crashes found: 0" in out
    assert '"inputs": 1000' in (tmp_path / "r.json").read_text()


def test_broken_invariants_are_caught(fixtures: list[Any]) -> None:
    import pickle

    fx = next(f for f in fixtures if f.name == "established")
    host = pickle.loads(fx.blob)
    ft.check_host(host, fx.now)
    conn = host.conns[fx.key]
    conn.snd_nxt = (conn.snd_una - 1) & 0xFFFFFFFF
    with pytest.raises(ft.BrokenInvariant, match=r"SND\.UNA"):
        ft.check_host(host, fx.now)


def test_every_fixture_reaches_its_state(fixtures: list[Any]) -> None:
    for fx in fixtures:
        want = ft.SCENARIOS[fx.name][3]
        assert fx.state == want.name, fx.name


def test_steered_relative_packet_with_fixed_checksum_reaches_the_connection(fixtures: list[Any]) -> None:
    """A packet from nowhere, its numbers relative to RCV.NXT/SND.UNA, bad checksums: the harness
    re-addresses it and fixes its checksums, and the connection takes its data."""
    import pickle

    fx = next(f for f in fixtures if f.name == "established-plain")
    host = pickle.loads(fx.blob)
    conn = host.conns[fx.key]
    assert conn.state is State.ESTABLISHED
    before = conn.rcv_nxt
    seg = wire.Segment(1, 2, 0, 0, wire.ACK | wire.PSH, 5000, (), b"fuzz!")
    pkt = bytearray(wire.build_packet("192.0.2.1", "192.0.2.2", seg))
    pkt[-1] ^= 0xFF  # a bad TCP checksum
    pkt = ft.fix_checksums(ft.steer(bytes(pkt), fx.key, conn, relative=True))
    host.receive(pkt, fx.now)
    assert conn.rcv_nxt == (before + 5) & 0xFFFFFFFF
    assert ft.pull(host, fx.now) >= 0


def test_host_input_layout_round_trips() -> None:
    data = ft.encode_host_input(ft.CK_FIXUP | ft.STEER, 3, 7, [b"one", b"two", b"three"])
    inp = ft.host_input(data)
    assert inp is not None
    assert (inp.mode & 0x0F, inp.fixture, inp.clock, inp.packets) == (ft.CK_FIXUP | ft.STEER, 3, 7,
                                                                      (b"one", b"two", b"three"))


def test_reproduce_a_saved_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "crash-wire-000000000000.bin"
    path.write_bytes(b"\x00" + b"\x45" * 30)
    assert fuzz.main(["--reproduce", str(path)]) == 0
    assert "documented error WireError" in capsys.readouterr().out


def test_wire_round_trip_accepts_either_zero_checksum() -> None:
    """A TCP checksum of 0xFFFF on the wire is right (ones' complement has two zeros) though a
    rebuild computes 0x0000: not a broken round trip (the fuzzer's first false alarm)."""
    pkt = bytes.fromhex("4500002800004000400626ce0a0000020a000001"
                        "0050dbdd5ba48ee51d68b2635010ffffffff054f0000")
    assert wire.parse_packet(pkt).seg.checksum == 0xFFFF
    assert ft.WireTarget()(b"\x00" + pkt) == 1


def test_the_known_defect_check_tells_a_spinning_host_from_a_fixed_one() -> None:
    """At the R2 deadline of test_fuzz_regressions.py's scenario the precondition holds. The core
    has been fixed (daabb84), so the check must let the real call run — and it returns, closing
    the connection. (Against e5564cf, ``--src``, the same check reports the connection.)"""
    from test_fuzz_regressions import START, _cpu_limit

    from synack.core.connection import Config
    from synack.core.host import Host
    from synack.sim import Pipe

    a = Host(["10.0.0.1"], name="A", config=Config.lab())
    b = Host(["10.0.0.2"], name="B", config=Config.lab())
    b.listen(80)
    c = a.connect("10.0.0.2", 80, 0.0)
    Pipe(a, b, delay=0.0, max_steps=20).run(0.0)
    c.send(b"x" * 10, START)
    a.packets_to_send(START)
    for _ in range(10):
        t = a.next_deadline()
        assert t is not None
        if ft._r2_suspect(c, t):
            break
        a.handle_timeout(t)
        a.packets_to_send(t)
    assert t is not None and ft._r2_suspect(c, t)
    assert ft.spinning_connection(a, t) is None
    with _cpu_limit(1.0):
        a.handle_timeout(t)
    assert c.state is State.CLOSED
