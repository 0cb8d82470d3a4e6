"""The engine's fast path (plain in-order segments on quiet connections, written out in
:meth:`Engine._batch`) against the general path it short-cuts: the same captures analysed both
ways must give the same results, field by field — every connection, every packet's analysis
flags, the capture's counters. The fast runs also walk the pcap records in the engine
(:class:`~synack.pcap.RecordChunk`), the reference runs are given them."""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import random
from pathlib import Path
from typing import Any

import pytest

from synack.analyze.engine import Engine, Options
from synack.analyze.model import ConnectionResult
from synack.pcap import iter_batches, iter_chunks
from synack.scenarios import SCENARIOS, run_scenario
from tests.test_analyze_truth import PLANS, simulate

_BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_analyze.py"


Outcome = tuple[list[dict[str, Any]], list[tuple[int, int, int]], dict[str, Any]]


def _run(path: Path, fast: bool, **options: Any) -> Outcome:
    """One analysis: the fast path on the records the engine walks itself, as ``synack analyze``
    runs (iter_chunks), or every segment on the general path, given each record's place
    (iter_batches)."""
    packets: list[tuple[int, int, int]] = []
    results: list[ConnectionResult] = []
    engine = Engine(Options(on_packet=lambda *p: packets.append(p), **options), results.append)
    engine.fast = fast
    # The pass turns the cyclic collector off (Engine.run): it must make no reference cycles.
    # With the collector off, all it allocates stays in the youngest generation: collecting
    # that one alone (fast in a big test process) finds any cycle it made.
    gc.collect(0)
    gc.disable()
    try:
        engine.run(iter_chunks(str(path)) if fast else iter_batches(str(path)))
        finished = engine.finish()
        cycles = gc.collect(0)
    finally:
        gc.enable()
    assert cycles == 0, f"the pass left {cycles} objects in reference cycles"
    stats = dataclasses.asdict(finished)
    del stats["fast"]  # how many took the fast path: the one counter that differs
    rows = [dict(r.to_dict(), extras=repr(sorted(r.extras.items(), key=str))) for r in results]
    return sorted(rows, key=lambda d: d["id"]), packets, stats


def _same_both_ways(path: Path, **options: Any) -> int:
    """Compare the two paths on one capture; how many packets took the fast path."""
    ref = _run(path, False, **options)
    got = _run(path, True, **options)
    assert got[2] == ref[2]  # the capture's counters
    assert got[1] == ref[1]  # every packet's connection and flags
    assert len(got[0]) == len(ref[0])
    for a, b in zip(got[0], ref[0], strict=True):
        assert a == b, f"connection {b['id']}"
    return len(got[1])


@pytest.fixture(scope="module")
def bench_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The benchmark's mix (bulk transfers with losses, fast retransmissions and duplicate ACKs,
    request/response, refusals, RSTs), 30,000 packets."""
    spec = importlib.util.spec_from_file_location("bench_analyze", _BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tmp_path_factory.mktemp("fast") / "bench.pcap"
    mod.make_capture(str(path), 30_000)
    return path


@pytest.mark.parametrize("checksums", ["sample", "off"])
def test_the_benchmark_mix_gives_the_same_results_both_ways(bench_capture: Path, checksums: str) -> None:
    assert _same_both_ways(bench_capture, checksums=checksums) >= 30_000


def test_kept_connections_and_a_short_msl_give_the_same_results_both_ways(bench_capture: Path) -> None:
    _same_both_ways(bench_capture, keep=frozenset(range(0, 400, 3)), msl=0.5, linger=1.0)


def test_the_fast_path_is_taken_on_bulk_transfers(bench_capture: Path) -> None:
    """Not a vacuous comparison: most of the benchmark's packets skip the general path, whether
    the engine walks the file's records itself (iter_chunks) or is given them (iter_batches)."""
    for chunks in (iter_chunks(str(bench_capture)), iter_batches(str(bench_capture))):
        engine = Engine(Options(), lambda r: None)
        engine.run(chunks)
        stats = engine.finish()
        assert stats.tcp >= 30_000
        assert stats.tcp - stats.fast < stats.tcp // 3


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_demo_scenario_gives_the_same_results_both_ways(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.pcap"
    run_scenario(name).trace.to_pcap(path)
    _same_both_ways(path, msl=1.0, keep=None)


@pytest.mark.parametrize("plan", PLANS)
def test_faulty_simulations_give_the_same_results_both_ways(plan: str, tmp_path: Path) -> None:
    rng = random.Random(plan)
    for k in range(12):
        seed = rng.getrandbits(32)
        run = simulate(seed, plan, rng.choice([0.0, 0.05, 0.15]), rng.choice([0.0, 0.1]),
                       rng.choice([0.0, 0.1]), bool(k & 1))
        for at in ("A", "B"):
            path = tmp_path / f"{k}-{at}.pcap"
            if run.trace.to_pcap(path, at=at):
                _same_both_ways(path, msl=1.0, fin_wait_2=None)
