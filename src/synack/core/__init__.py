"""The sans-IO TCP core: everything that decides what TCP does, and nothing that moves bytes.

Time is an argument (``now``, seconds); input is packets and user calls; output is pulled. The
modules of this package import nothing outside it and no clock, socket, event loop, thread or
unseeded randomness (``tests/test_layout.py`` enforces it). Imports inside point one way:

    wire  <-  buffers, timers, congestion, recovery, records  <-  connection  <-  host

* :mod:`~synack.core.wire` — sequence arithmetic, segment acceptability, headers, options,
  checksums, the text forms of a segment;
* :mod:`~synack.core.records` — the states, the transition table and the typed records the core
  emits (state changes, timers, drops, user calls);
* :mod:`~synack.core.buffers`, :mod:`~synack.core.timers` — reassembly, the RFC 6298 estimator;
* :mod:`~synack.core.congestion` — the congestion-controller interface and its registry;
* :mod:`~synack.core.recovery` — loss recovery: the SACK scoreboard, RFC 6675 and RFC 6582;
* :mod:`~synack.core.connection` — the TCB and every state transition (RFC 9293 §3.10);
* :mod:`~synack.core.host` — demultiplexing, listeners, ports, ISNs, RSTs for strays.

The package runs as Python, or compiled by mypyc when installed with ``SYNACK_MYPYC=1``
(:func:`compiled` tells which; :mod:`~synack.core._mypyc` says what compiling asks of the code).
"""

from synack.core._mypyc import compiled_modules, picklable_frozen_dataclasses
from synack.core.buffers import ReassemblyQueue
from synack.core.congestion import CONTROLLERS, CongestionController, NewReno
from synack.core.connection import (
    Config,
    Connection,
    ConnectionAborted,
    ConnectionClosing,
    ConnectionExists,
    ConnectionRefused,
    ConnectionReset,
    ConnectionTimedOut,
    InsufficientResources,
    LocalError,
    NoConnection,
    RemoteError,
    TcpError,
    reset_for,
)
from synack.core.host import AddressInUse, AddressNotAvailable, Host, InvalidAddress, Listener, Reservation
from synack.core.records import TRANSITIONS, Cause, Event, State, Transition
from synack.core.timers import RttEstimator
from synack.core.wire import IPPacket, Segment, WireError, build_packet, parse_packet, segment_acceptable

picklable_frozen_dataclasses()  # compiled by mypyc they would not unpickle (see synack.core._mypyc)

__all__ = [
    "CONTROLLERS",
    "TRANSITIONS",
    "AddressInUse",
    "AddressNotAvailable",
    "Cause",
    "Config",
    "CongestionController",
    "Connection",
    "ConnectionAborted",
    "ConnectionClosing",
    "ConnectionExists",
    "ConnectionRefused",
    "ConnectionReset",
    "ConnectionTimedOut",
    "Event",
    "Host",
    "IPPacket",
    "InsufficientResources",
    "InvalidAddress",
    "Listener",
    "LocalError",
    "NewReno",
    "NoConnection",
    "ReassemblyQueue",
    "RemoteError",
    "Reservation",
    "RttEstimator",
    "Segment",
    "State",
    "TcpError",
    "Transition",
    "WireError",
    "build_packet",
    "compiled",
    "compiled_modules",
    "parse_packet",
    "reset_for",
    "segment_acceptable",
]


def compiled() -> bool:
    """True when this core runs as C extension modules compiled by mypyc (``SYNACK_MYPYC=1 pip
    install .``), False when it runs as Python (the default install). The two behave the same."""
    return bool(compiled_modules())
