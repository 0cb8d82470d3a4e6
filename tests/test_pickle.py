"""The core's values cross processes and copy: what a host records, the segments and options it
parses, its configuration. ``synack drill -j`` and ``synack analyze --jobs`` send them between
processes; in the compiled form a frozen dataclass needs copyreg's help for that
(synack.core._mypyc.picklable_frozen_dataclasses), so these run on both forms (scripts/test.sh)."""

from __future__ import annotations

import copy
import copyreg
import dataclasses
import importlib
import pickle
import pkgutil
from dataclasses import MISSING
from typing import Any

import synack.core
from synack.core import Config, Host, State
from synack.core.records import Record
from synack.core.wire import build_icmp_error, build_packet, parse_icmp_error, parse_packet
from synack.sim import Pipe


def _round_trips(value: Any) -> None:
    assert pickle.loads(pickle.dumps(value)) == value
    assert copy.copy(value) == value
    assert copy.deepcopy(value) == value


def test_a_lifecycle_s_records_round_trip() -> None:
    records: list[Record] = []
    cfg = Config(timestamps=True, sack=True, window_scaling=True)
    pipe = Pipe(Host(["10.0.0.1"], name="A", config=cfg, tracer=records.append),
                Host(["10.0.0.2"], name="B", config=cfg, tracer=records.append))
    lst = pipe.b.listen(80, now=0.0)
    conn = pipe.a.connect("10.0.0.2", 80, 0.0)
    pipe.run(0.1)
    peer = lst.accept()
    assert peer is not None and conn.state is State.ESTABLISHED
    conn.send(b"x" * 5000, pipe.now)
    conn.close(pipe.now)
    pipe.run(pipe.now + 0.1)
    peer.close(pipe.now)
    pipe.run(pipe.now + 300.0)
    kinds = {r.kind for r in records}
    assert {"state", "segment", "timer", "listen"} <= kinds, kinds
    _round_trips(records)
    for record in records:
        _round_trips(record)


def test_packets_options_icmp_errors_and_configuration_round_trip() -> None:
    records: list[Record] = []
    pipe = Pipe(Host(["10.0.0.1"], tracer=records.append), Host(["10.0.0.2"]))
    pipe.b.listen(80, now=0.0)
    pipe.a.connect("10.0.0.2", 80, 0.0)
    pipe.run(0.1)
    syn = next(r.seg for r in records if r.kind == "segment")  # type: ignore[union-attr]
    assert syn.options
    packet = build_packet("10.0.0.1", "10.0.0.2", syn)
    _round_trips(parse_packet(packet))
    _round_trips(syn)
    _round_trips(syn.options)
    _round_trips(parse_icmp_error(build_icmp_error("10.0.0.9", packet, 3, 1)))
    _round_trips(Config(mss=1200, congestion="newreno"))


def _frozen_dataclasses_of_the_core() -> list[type]:
    """Every frozen dataclass defined in a module of synack.core, each module imported."""
    found = []
    for info in pkgutil.iter_modules(synack.core.__path__, "synack.core."):
        module = importlib.import_module(info.name)
        found += [cls for cls in vars(module).values()
                  if isinstance(cls, type) and cls.__module__ == info.name and dataclasses.is_dataclass(cls)
                  and cls.__dataclass_params__.frozen]  # type: ignore[attr-defined]
    return found


def test_every_frozen_dataclass_of_the_core_is_covered() -> None:
    """The compiled form registers every frozen dataclass of the core with copyreg when the
    package is imported — a new one, or one in a module synack.core does not import, would
    otherwise fail only when a value of it is first pickled; the Python form needs no help and
    gets none. Those that take no arguments round-trip here."""
    classes = _frozen_dataclasses_of_the_core()
    names = {cls.__qualname__ for cls in classes}
    assert {"Config", "Transition", "StateRecord", "SegmentRecord", "Mss", "Timestamps"} <= names, names
    registered = [cls for cls in classes if cls in copyreg.dispatch_table]
    assert registered == (classes if synack.core.compiled() else [])
    for cls in classes:
        if all(f.default is not MISSING or f.default_factory is not MISSING for f in dataclasses.fields(cls)):
            _round_trips(cls())


def test_an_analysis_result_and_summary_round_trip(tmp_path: Any) -> None:
    """What ``synack analyze --jobs`` sends back from a worker: every connection's result (its
    states, statistics, findings) and the shard's summary."""
    from synack.analyze.engine import Options
    from synack.analyze.parallel import run_shard
    from synack.scenarios import run_scenario

    path = tmp_path / "handshake.pcap"
    run_scenario("handshake").trace.to_pcap(path)
    summary, results, error = run_shard([str(path)], Options(msl=1.0), 0, 1)
    assert error == "" and results and all(r.states[0] for r in results)
    for r in results:
        _round_trips(r)
        _round_trips(r.states[0][0])
    back = pickle.loads(pickle.dumps(summary))
    assert back.connections == summary.connections and back.conn_states == summary.conn_states
