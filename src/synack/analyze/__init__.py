"""``synack analyze``: what every connection in a capture did — both ends' RFC 9293 states (with
honest uncertainty), Zeek's ``conn_state`` and ``history``, Wireshark's analysis flags,
tcptrace's statistics, and findings in plain words.

The parts: :mod:`~synack.analyze.engine` (the one pass: frames, flows, connections),
:mod:`~synack.analyze.conn` (per-packet analysis), :mod:`~synack.analyze.states` (the state
inference), :mod:`~synack.analyze.zeek`, :mod:`~synack.analyze.findings`,
:mod:`~synack.analyze.run` (an analysis and its summary), :mod:`~synack.analyze.output`,
:mod:`~synack.analyze.ladder` and :mod:`~synack.analyze.report` (text, JSON, CSV, HTML),
:mod:`~synack.analyze.parallel` (``--jobs``, ``--dask``) and :mod:`~synack.analyze.cli`."""

from __future__ import annotations

from synack.analyze.cli import add_parser
from synack.analyze.engine import Options
from synack.analyze.model import ConnectionResult, DirectionStats, Finding, Severity, StateChange
from synack.analyze.run import AnalyzeError, Summary, analyze
from synack.core._mypyc import picklable_frozen_dataclasses

# In the compiled form (setup.py's ANALYZE_COMPILED) results cross to other processes (--jobs,
# --dask) pickled: see synack.core._mypyc.
picklable_frozen_dataclasses("synack.analyze")
picklable_frozen_dataclasses("synack.pcap")

__all__ = [
    "AnalyzeError",
    "ConnectionResult",
    "DirectionStats",
    "Finding",
    "Options",
    "Severity",
    "StateChange",
    "Summary",
    "add_parser",
    "analyze",
]
