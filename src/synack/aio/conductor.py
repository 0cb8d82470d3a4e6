"""One simulated network's virtual clock, shared by every thread that uses it.

On the simulator, a blocking ``recv`` runs the network until data arrives; with one thread that
is all there is to it. With several — a client and a ``socketserver`` in threads, or blocking
sockets beside a virtual-time event loop — time may only move when **every participant is
blocked**: otherwise a server thread that is about to answer would see its client time out,
seconds of virtual time passing in a microsecond of real time. The :class:`Conductor` of a
network (one per :class:`~synack.sim.Network`, :meth:`Conductor.of`) enforces that:

* every touch of the network happens under :attr:`Conductor.lock` (a re-entrant lock): the
  socket layer takes it around each call, a virtual-time loop holds it while it runs callbacks;
* a participant that must wait calls :meth:`Conductor.wait_until` with its condition and
  deadline, and sleeps on a condition variable;
* whichever waiter finds that no thread of the process is running becomes the *advancer*: it
  wakes the first waiter (in the order they started waiting) whose condition holds or whose
  deadline has come, or else processes the network's next event, or else moves the clock to the
  earliest deadline — one thing at a time, looking again after each. When nothing is scheduled
  and no deadline is set, every waiter is told: a deadlock.

**Is a thread running?** A waiter of the conductor is not. For any other thread the kernel is
asked (``/proc/self/task/TID/syscall``, readable for threads of our own process): it is
*blocked* when it sleeps in a wait that only another thread or the outside world can end —
``select``/``poll``/``epoll`` (a ``selectors``-based server loop), a lock, queue, ``join`` or
``Event.wait`` (with or without a timeout: a ``FUTEX_WAIT_BITSET``), reading or accepting on a
file descriptor, waiting for a child, sleeping — and *running* otherwise: on a CPU, runnable,
or passing through a pthread mutex (a plain ``FUTEX_WAIT``). Each thread is sampled twice, and
reading the samples lets go of the GIL, so a thread that only waits for the GIL gets it and is
seen running. (The GIL's own condition wait looks like a lock wait; a thread caught in it twice
in a row would be taken for blocked — the one race left, which only moves the clock early.)
Where the file does not exist (not Linux, or an architecture not listed below), only
the conductor's own waiters are known and other threads are taken to be blocked.

Limits, said plainly: with several threads the *times* are exact (nothing moves while anyone
runs), but threads woken at the same virtual instant then run in the order the OS gives them,
so two runs may order their packets differently; a single thread — or the asyncio loop, which is
one thread — repeats byte for byte.
"""

from __future__ import annotations

import itertools
import os
import platform
import threading
import time
import weakref
from collections.abc import Callable
from typing import Final

from synack.sim import Network

__all__ = ["Conductor", "Deadlock", "thread_is_blocked"]

# Syscalls in which a sleeping thread waits for something only another thread (or the outside
# world) can bring: the poll family, reads/accepts, child waits and sleeps. futex is special.
_BLOCKING: Final[dict[str, tuple[int, frozenset[int]]]] = {
    "x86_64": (202, frozenset((0, 7, 23, 35, 43, 45, 47, 61, 230, 232, 247, 270, 271, 281,
                        288, 441))),
    "aarch64": (98, frozenset((22, 63, 72, 73, 95, 101, 115, 202, 207, 212, 242, 260, 441))),
}
_FUTEX_CMD_MASK: Final = 0x7F
_FUTEX_WAIT_BITSET: Final = 9  # what sem_wait (a Python lock) uses; the GIL's mutex uses FUTEX_WAIT
_ARCH = _BLOCKING.get(platform.machine())
_PROC_OK = _ARCH is not None and os.path.exists(f"/proc/self/task/{threading.get_native_id()}/syscall")


def _sample(tid: int) -> str | None:
    try:
        with open(f"/proc/self/task/{tid}/syscall", "rb", buffering=0) as f:
            return f.read(256).decode("ascii", "replace")
    except OSError:
        return None  # the thread ended


def _blocked_text(text: str) -> bool:
    fields = text.split()
    if not fields or fields[0] == "running" or _ARCH is None:
        return False
    try:
        nr = int(fields[0])
    except ValueError:
        return False
    futex, calls = _ARCH
    if nr == futex:
        # A Python lock, queue, join or Event wait (with or without a timeout) is a
        # FUTEX_WAIT_BITSET; a pthread mutex on its way (the GIL's, say) a plain FUTEX_WAIT.
        return len(fields) > 2 and int(fields[2], 16) & _FUTEX_CMD_MASK == _FUTEX_WAIT_BITSET
    return nr in calls


def thread_is_blocked(thread: threading.Thread) -> bool:
    """Whether the kernel says ``thread`` sleeps in a wait that only another thread or the
    outside world can end (see the module documentation). Unknown: True."""
    if not _PROC_OK:
        return True
    tid = thread.native_id
    if tid is None:
        return False  # started, not yet running its first line: about to run
    first = _sample(tid)
    if first is None or not _blocked_text(first):
        return first is None
    second = _sample(tid)
    return second is None or (second == first)


class _Hold:
    __slots__ = ("_c",)

    def __init__(self, conductor: Conductor) -> None:
        self._c = conductor

    def __enter__(self) -> None:
        c = self._c
        tid = threading.get_ident()
        wanting = c._wanting
        wanting[tid] = wanting.get(tid, 0) + 1
        try:
            c.lock.acquire()
        finally:
            n = wanting[tid] - 1
            if n:
                wanting[tid] = n
            else:
                del wanting[tid]

    def __exit__(self, *exc: object) -> None:
        self._c.lock.release()


class Deadlock(RuntimeError):
    """Every participant waits and nothing is scheduled: nothing can ever happen again."""


class _Waiter:
    __slots__ = ("deadline", "deadlock", "order", "outside", "pred", "thread", "woken")

    def __init__(self, pred: Callable[[], bool], deadline: float | None, order: int, outside: bool) -> None:
        self.pred = pred
        self.deadline = deadline
        self.order = order
        self.outside = outside
        self.thread = threading.current_thread()
        self.woken = False
        self.deadlock = False

    def ready(self, now: float) -> bool:
        return (self.deadline is not None and self.deadline <= now) or self.pred()


_conductors: weakref.WeakKeyDictionary[Network, Conductor] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()

# How long a waiter sleeps before it looks again when some thread runs (seconds of real time).
_POLL_MIN: Final = 0.0002
_POLL_MAX: Final = 0.005
# A deadlock with other threads alive is confirmed over this much real time first.
_DEADLOCK_GRACE: Final = 0.05


class Conductor:
    """The shared virtual clock of one network (see the module documentation)."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.lock = threading.RLock()
        self._cond = threading.Condition(self.lock)
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()
        self._suspect_since: float | None = None
        self._wanting: dict[int, int] = {}  # threads waiting to take the lock: they are about to run
        # Called (lock held) after every step the conductor takes: e.g. the socket layer keeps
        # its sockets' real file descriptors in step with the network.
        self.observers: list[Callable[[], None]] = []

    def hold(self) -> _Hold:
        """``with conductor.hold():`` — take :attr:`lock` for one call on the network. A thread
        waiting here counts as running, so the clock does not move under its feet."""
        return _Hold(self)

    @staticmethod
    def of(net: Network) -> Conductor:
        """The conductor of ``net`` (made on first use)."""
        with _registry_lock:
            c = _conductors.get(net)
            if c is None:
                c = _conductors[net] = Conductor(net)
            return c

    def wait_until(self, pred: Callable[[], bool], deadline: float | None, *, outside: bool = False) -> bool:
        """Wait (virtual time moving as described above) until ``pred()`` holds (True) or the
        virtual clock reaches ``deadline`` (False; None: no deadline). Raises :class:`Deadlock`
        when nothing can ever make ``pred()`` true — unless ``outside``: the waiter also waits for
        the outside world (a subprocess's pipe), so with nothing scheduled it is polled instead."""
        with self.lock:
            self.net.flush()
            if pred():
                return True
            me = _Waiter(pred, deadline, next(self._order), outside)
            self._waiters.append(me)
            try:
                self._wait(me)
            finally:
                self._waiters.remove(me)
                self._cond.notify_all()  # an advancer may be waiting for us to block again
            if me.deadlock:
                raise Deadlock(f"deadlock: every thread is waiting and nothing is scheduled "
                               f"(virtual time {self.net.now:.6f} s)")
            return pred()

    def _wait(self, me: _Waiter) -> None:
        pause = _POLL_MIN
        while not me.woken:
            if self._advance():
                pause = _POLL_MIN
                continue
            self._cond.wait(pause)
            pause = min(pause * 2, _POLL_MAX)

    def _others_running(self) -> bool:
        me = threading.current_thread()
        if any(tid != me.ident for tid in self._wanting):
            return True
        waiting = {w.thread for w in self._waiters if not w.woken}
        for t in threading.enumerate():
            if t is me or t in waiting:
                continue  # (not is_alive(): that is False for a thread still starting, which runs)
            if not thread_is_blocked(t):
                return True
        return False

    def _advance(self) -> bool:
        """One step, if no thread runs: wake a ready waiter, process an event, or move the clock.
        False when some thread runs (the caller waits a little and looks again)."""
        if any(w.woken for w in self._waiters) or self._others_running():
            self._suspect_since = None
            return False
        net = self.net
        net.flush()
        now = net.now
        waiters = sorted(self._waiters, key=lambda w: w.order)
        for w in waiters:
            if w.ready(now):
                self._wake(w)
                return True
        t = net.next_event_time()
        deadlines = [w.deadline for w in waiters if w.deadline is not None]
        d = min(deadlines) if deadlines else None
        if t is None and d is None:
            if any(w.outside for w in waiters):
                return False  # the outside world may still answer: look again in a moment
            return self._deadlock(waiters)
        self._suspect_since = None
        if t is not None and (d is None or t <= d):
            net.step()
        else:
            assert d is not None
            net.run(until=d)
        for observe in self.observers:
            observe()
        return True

    def _wake(self, w: _Waiter) -> None:
        w.woken = True
        self._cond.notify_all()

    def _deadlock(self, waiters: list[_Waiter]) -> bool:
        """Nothing scheduled, nobody ready. With other threads alive, confirm over a short grace
        period (one of them may be about to wake from a real wait) before telling the waiters."""
        if threading.active_count() > len(waiters):
            now = time.monotonic()
            if self._suspect_since is None:
                self._suspect_since = now
            if now - self._suspect_since < _DEADLOCK_GRACE:
                return False
        self._suspect_since = None
        for w in waiters:
            w.deadlock = True
            self._wake(w)
        return True

    def __repr__(self) -> str:
        return f"<Conductor {self.net!r} waiters={len(self._waiters)}>"
