"""Crashes found by ``bench/fuzz.py``, each as the smallest exact test that shows it.

A test is written here when the fuzzer finds a crash in the core, marked
``xfail(strict=True, reason=...)`` while the defect is open: it must fail, and once the core is
fixed it passes, strict xfail turns that into a failure, and the marker comes off. The fuzzer's
own inputs are kept in ``bench/fuzz_corpus/`` (replay one with
``python bench/fuzz.py --reproduce FILE --target host``).

Found so far:

* **R2 rounding** (found at e5564cf, fixed in daabb84): ``_retransmission_timeout`` gave up when
  ``now - start >= limit`` but re-armed the timer at ``min(now + rto, start + limit)``; when
  ``now == start + limit`` in floats yet ``now - start < limit``, the timer was re-armed at
  ``now`` for ever, so ``Host.handle_timeout`` never returned (100 % CPU). The fix compares
  ``now >= start + limit``, the same sum the timer is armed at.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from tcpkit import conn_established, pull

from synack.core.connection import Config
from synack.core.host import Host
from synack.core.records import State
from synack.sim import Pipe

#: A time of first transmission for which the float sum and difference disagree about R2:
#: ``(START + 100.0) - START`` is 99.99999999999999, below R2 = 100 s.
START = 63.73148148148148
R2 = 100.0


def test_the_rounding_exists() -> None:
    assert START + R2 - START < R2


def test_r2_gives_up_at_its_deadline_even_when_the_float_difference_falls_short() -> None:
    """Data sent at START, never acknowledged: retransmissions at START+1, +3, +7, +15, +31,
    +63, then the timer is clamped to START+R2, where the connection must give up (MUST-20..23)
    — not retransmit and re-arm the timer at the same instant."""
    c = conn_established()
    c.send(b"x" * 10, START)
    pull(c, START)
    for _ in range(12):
        t = c.next_deadline()
        if t is None or c.state is State.CLOSED:
            break
        c.handle_timeout(t)
        c.segments_to_send(t)
        d = c.next_deadline()
        assert d is None or d > t, f"timer re-armed at now = {t!r} (a driver's timer loop never ends)"
    assert c.state is State.CLOSED


class _Spinning(Exception):
    pass


@contextmanager
def _cpu_limit(seconds: float) -> Iterator[None]:
    """Raise _Spinning in the code under test once it has used ``seconds`` of CPU."""

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise _Spinning(f"still running after {seconds} s of CPU")

    old = signal.signal(signal.SIGVTALRM, alarm)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, old)


def test_host_handle_timeout_returns_when_r2_comes_due() -> None:
    """The same at the host: its timer loop pops every deadline <= now, and the connection keeps
    handing back ``now``. (What the fuzzer saw: ``Host.handle_timeout`` never returned.)"""
    a = Host(["10.0.0.1"], name="A", config=Config.lab())
    b = Host(["10.0.0.2"], name="B", config=Config.lab())
    b.listen(80)
    c = a.connect("10.0.0.2", 80, 0.0)
    Pipe(a, b, delay=0.0, max_steps=20).run(0.0)
    assert c.state.synchronized
    c.send(b"x" * 10, START)
    a.packets_to_send(START)  # lost
    with _cpu_limit(1.0):
        while (t := a.next_deadline()) is not None and t <= START + R2:
            a.handle_timeout(t)
            a.packets_to_send(t)
    assert c.state is State.CLOSED
