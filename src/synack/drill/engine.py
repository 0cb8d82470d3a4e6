"""The interpreter: a parsed script run against a backend, event by event, to a verdict
(``../shared/docs/packetdrill-language.md``: "Times", "TCP packet lines", "System-call lines").

A :class:`Backend` is the stack under test seen from the script's side: a clock, a wire (inject
an IP packet now; the packets the stack sent, with their times) and the sockets (attempt a
:class:`~synack.drill.calls.Call`). :mod:`synack.drill.runner` gives synack on the virtual clock,
:mod:`synack.drill.linux` the kernel in real time; the rules below are the same for both.

**Times.** An absolute time counts from the start; a relative one from the moment the previous
event finished — except between two inbound packets, where it counts from the previous one's
script time, so injections do not drift. An event at script time t passes when
``|actual - t| <= tol``, ``tol = max(tolerance_usecs, tolerance_percent x (t - previous event's
time))``; a range ``lo~hi`` when ``lo - tol <= actual <= hi + tol``; ``*`` always.

**Order at one instant.** An inbound packet at t is injected after everything due strictly
before t and before the timers due at t (so a segment that arrives with a timer is taken first);
a system call or a code block at t runs after everything due at or before t.

**Outbound packets.** Each packet the stack sends is queued with its time. An outbound line takes
the next one (waiting up to its time plus tolerance — on the virtual clock that is free), checks
its time and its fields (:func:`~synack.drill.matcher.compare`); several contiguous segments add
up to one expected large segment (TSO-style) unless ``--strict_segments``. A packet still queued
when a later inbound packet, call or code block comes more than the tolerance after it was sent —
or at the end of the script — is a failure: this runner is stricter than packetdrill, which only
notices such packets when they collide with an expectation.

**Calls.** A call without ``...`` must return at its time; if its socket would block the clock
runs until it returns, and returning later than the tolerance allows is a failure. A
``START...END`` call starts at START, later events proceed while it blocks (the backend attempts
it again after every step), and it must return at END. Every wait is bounded by the profile's
time cap (default 600 s of script time); a script that would block forever fails there — at once
on the virtual clock when nothing at all is left to happen.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from synack.core.wire import ACK, FIN, PSH, RST, SYN, IPPacket, Segment, WireError, parse_packet
from synack.drill import code as codeblock
from synack.drill.calls import Call, Env, FdMap, Result, check_result, decode, describe_result
from synack.drill.commands import ShellPlan
from synack.drill.matcher import Checks, Flow, Numbers, build_inbound, compare, describe
from synack.drill.script import Code, Command, DrillError, Event, Packet, Pos, Script, Syscall, TimeKind

__all__ = ["Backend", "Observation", "Outcome", "Settings", "run_script"]

PASS, FAIL, UNSUPPORTED = "PASS", "FAIL", "UNSUPPORTED"


class Backend(Protocol):
    """The stack under test, as the interpreter drives it."""

    name: str
    virtual: bool  # the clock is the backend's own (it moves only when asked): waits cost nothing

    def now(self) -> float:
        """Seconds since the script started."""

    def advance(self, limit: float, *, inclusive: bool, busy: bool) -> bool:
        """Let the next thing happen if it is due before ``limit`` (at or before, ``inclusive``):
        True when something happened (the clock may have moved), False when nothing is due before
        ``limit``. ``busy``: a blocked call waits, so come back soon (real time)."""

    def move_to(self, t: float) -> None:
        """Make the clock read ``t`` (nothing is due before it)."""

    def inject(self, packet: bytes) -> None:
        """Put an IP packet on the wire towards the stack, now."""

    def take(self) -> list[tuple[float, bytes]]:
        """The IP packets the stack sent since the last call, with their times."""

    def call(self, call: Call, retry: bool) -> Result | None:
        """Attempt a system call now (None: it blocks)."""

    def wake_time(self, call: Call) -> float | None:
        """When a blocked call must be attempted again even if nothing happens."""

    def tcp_info(self, fd: int) -> dict[str, int]:
        """The ``tcpi_*`` fields of a socket that the backend can give."""


@dataclass(slots=True)
class Settings:
    """How a script is run: options of the script, the profile and the command line."""

    checks: Checks
    profile: str = "strict"
    tolerance_usecs: float = 4000.0
    tolerance_percent: float = 12.5
    strict_segments: bool = False
    ipv6: bool = False
    local_addr: str = "192.168.0.1"
    remote_addr: str = "192.0.2.1"
    remote_port: int = 45678
    bind_port: int = 8080
    connect_port: int = 8080
    mss: int | None = None
    mtu: int = 1500
    time_cap: float = 600.0
    grace: float = 0.0  # how long after the last event to look for stray packets (real time)


@dataclass(frozen=True, slots=True)
class Observation:
    """What happened at one event: its line, its kind, when, and what (script syntax)."""

    line: int
    kind: str
    time: float | None
    text: str


@dataclass(slots=True)
class Outcome:
    """A script's verdict. For a failure: ``message`` (one line), the event's ``line`` and its
    text (``expected``), and what happened instead (``happened``)."""

    path: str
    backend: str
    profile: str
    verdict: str
    message: str = ""
    line: int = 0
    expected: str = ""
    happened: str = ""
    seconds: float = 0.0
    script_time: float = 0.0
    observations: list[Observation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.verdict == FAIL


class _Fail(Exception):
    def __init__(self, message: str, line: int = 0, happened: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.happened = happened


@dataclass(slots=True)
class _Queued:
    t: float
    pkt: IPPacket
    checksum_ok: bool


@dataclass(slots=True)
class _Pending:
    """A blocked call: its line, the call, and the window it must return in (None: no check)."""

    sc: Syscall
    call: Call
    line: int
    lo: float
    hi: float
    started: float


def _tolerance(s: Settings, t: float, prev: float | None) -> float:
    tol = s.tolerance_usecs / 1e6
    if prev is not None:
        tol = max(tol, s.tolerance_percent / 100 * (t - prev))
    return tol


class _Run:
    """One script against one backend."""

    def __init__(self, script: Script, backend: Backend, settings: Settings, plan: ShellPlan) -> None:
        self.script = script
        self.b = backend
        self.s = settings
        self.plan = plan
        self.queue: deque[_Queued] = deque()
        self.pending: _Pending | None = None
        self.fds = FdMap()
        self.nums = Numbers()
        self.flow = Flow(settings.local_addr, settings.remote_addr, settings.bind_port, settings.remote_port)
        self.env = Env(settings.local_addr, settings.remote_addr, settings.bind_port, settings.connect_port,
                       script.defines)
        self.obs: list[Observation] = []
        self.prev_time: float | None = None  # the previous event's (adjusted) script time
        self.prev_inbound = False
        self.current_fd: int | None = None
        self.connecting: set[int] = set()  # sockets whose connect() was made
        self.event: Event | None = None

    # -- the clock -----------------------------------------------------------------------------

    def _after_step(self) -> None:
        for t, raw in self.b.take():
            try:
                pkt = parse_packet(raw, verify=False)
            except WireError:
                continue  # not TCP (an IPv6 router solicitation on a TUN device ...)
            try:
                parse_packet(raw)
                ok = True
            except WireError:
                ok = False
            self.queue.append(_Queued(t, pkt, ok))
        self._retry()
        if self.b.now() > self.s.time_cap:
            raise _Fail(f"time cap of {self.s.time_cap:g} s reached (the script would wait for ever?)",
                        self.event.line if self.event else 0)

    def _step(self, limit: float, inclusive: bool) -> bool:
        p = self.pending
        wake = self.b.wake_time(p.call) if p is not None else None
        if p is not None and wake is not None and wake < limit:
            if not self.b.advance(wake, inclusive=True, busy=True):
                self.b.move_to(wake)
            self._after_step()
            return True
        if self.b.advance(limit, inclusive=inclusive, busy=p is not None):
            self._after_step()
            return True
        return False

    def _run_to(self, t: float, *, inclusive: bool) -> None:
        while self._step(t, inclusive):
            pass
        self.b.move_to(t)
        if inclusive:
            self._retry()

    # -- calls in progress ---------------------------------------------------------------------

    def _retry(self) -> None:
        p = self.pending
        if p is None:
            return
        res = self.b.call(p.call, True)
        if res is not None:
            self.pending = None
            self._finish_call(p.sc, p.call, res, p.line, p.lo, p.hi)

    def _finish_call(self, sc: Syscall, call: Call, res: Result, line: int, lo: float, hi: float) -> None:
        now = self.b.now()
        try:
            bad = check_result(sc, call, res, self.fds, self.script.defines)
        except DrillError as exc:
            raise _located(exc, line) from None
        shown = res
        name = self.fds.script_fd(res.ret) if call.op in ("socket", "accept") and res.ret >= 0 else None
        if name is not None:
            shown = Result(name)  # the script's name for the descriptor, not the live number
        text = f"{sc.name}() {describe_result(shown)}"
        self.obs.append(Observation(line, "call", now, text))
        if bad:
            raise _Fail(f"{sc.name}() {bad}", line, f"{text} at {now:.3f}")
        if now < lo or now > hi:
            raise _Fail(f"{sc.name}() returned at {now:.3f}, expected in [{lo:.3f}, {hi:.3f}]"
                        + ("" if sc.end is not None else " (a call that blocks needs START...END)"),
                        line, f"{text} at {now:.3f}")
        if call.op in ("socket", "accept") and res.ret >= 0:
            self.current_fd = res.ret

    # -- events --------------------------------------------------------------------------------

    def run(self) -> None:
        for ev in self.script.events:
            self.event = ev
            self._event(ev)
        self.event = None
        self._finish()

    def _times(self, ev: Event) -> tuple[float, float, float, float]:
        """(base, lo, hi, tol) of an event: the base of its relative times, its window."""
        ts = ev.time
        inbound = isinstance(ev.action, Packet) and ev.action.inbound
        if ts.kind is TimeKind.ANY:
            now = self.b.now()
            return now, now, self.s.time_cap, 0.0
        if ts.relative:
            anchored = inbound and self.prev_inbound and self.prev_time is not None
            base = self.prev_time if anchored and self.prev_time is not None else self.b.now()
        else:
            base = 0.0
        lo = base + ts.start
        hi = base + ts.end if ts.end is not None else lo
        return base, lo, hi, _tolerance(self.s, lo, self.prev_time)

    def _event(self, ev: Event) -> None:
        base, lo, hi, tol = self._times(ev)
        act = ev.action
        if isinstance(act, Packet) and act.inbound:
            self._inbound(ev, act, lo, tol)
        elif isinstance(act, Packet):
            self._outbound(ev, act, lo, hi, tol)
        elif isinstance(act, Syscall):
            self._syscall(ev, act, base, lo, tol)
        elif isinstance(act, Code):
            self._code(ev, act, lo, tol)
        else:
            assert isinstance(act, Command)
            self._run_to(lo, inclusive=True)
            self.obs.append(Observation(ev.line, "command", self.b.now(), "recorded, not run"))
        self.prev_inbound = isinstance(act, Packet) and act.inbound
        self.prev_time = self.b.now() if ev.time.kind is TimeKind.ANY else lo

    def _check_stray(self, t: float, tol: float, line: int) -> None:
        """A queued packet sent more than ``tol`` before ``t`` was expected by no line."""
        if self.queue and self.queue[0].t < t - tol:
            q = self.queue[0]
            raise _Fail(f"unexpected packet at {q.t:.3f} (no outbound line was waiting for it)", line,
                        f"{describe(q.pkt, self.nums)} at {q.t:.3f}")

    def _inbound(self, ev: Event, line: Packet, t: float, tol: float) -> None:
        self._run_to(t, inclusive=False)
        self._check_stray(t, tol, ev.line)
        if self.flow.local_port is None and line.ports is None:
            raise DrillError("cannot address an inbound packet: the local port is not known yet (no SYN from "
                             "the stack, no bind)", line.pos)
        pkt, seg = build_inbound(line, self.flow, self.nums)
        if (seg.flags & ACK and not seg.flags & SYN) or seg.flags & RST:
            self.nums.synced.add((seg.dst_port, seg.src_port))
        self.b.inject(pkt)
        self.obs.append(Observation(ev.line, "inbound", self.b.now(), "injected"))

    def _outbound(self, ev: Event, line: Packet, lo: float, hi: float, tol: float) -> None:
        deadline = hi + tol if ev.time.kind is not TimeKind.ANY else self.s.time_cap
        first = self._next_packet(deadline)
        if first is None:
            raise _Fail(f"expected packet by {deadline:.3f}; nothing was sent", ev.line,
                        f"nothing by {deadline:.3f}" + self._look_ahead())
        happened = f"{describe(first.pkt, self.nums)} at {first.t:.3f}"
        if ev.time.kind is not TimeKind.ANY and first.t < lo - tol:
            raise _Fail(f"packet sent at {first.t:.3f}, expected at {lo:.3f} (tolerance {tol * 1000:g} ms)",
                        ev.line, happened)
        self._learn_port(first.pkt)
        diffs = compare(line, first.pkt, self.flow, self.nums, self.s.checks, checksum_ok=first.checksum_ok)
        taken = 1
        if diffs and self._aggregatable(line, first):
            taken, diffs = self._aggregate(line, first, deadline)
        if diffs:
            raise _Fail("; ".join(diffs), ev.line, happened)
        for _ in range(taken):
            last = self.queue.popleft()
        self.nums.learn((first.pkt.seg.src_port, first.pkt.seg.dst_port), line, first.pkt.seg)
        more = f" (+{taken - 1} more)" if taken > 1 else ""
        self.obs.append(Observation(ev.line, "outbound", last.t, describe(first.pkt, self.nums) + more))

    def _next_packet(self, deadline: float) -> _Queued | None:
        while not self.queue:
            if not self._step(deadline, True):
                return None
        return self.queue[0]

    def _look_ahead(self) -> str:
        """For a 'nothing by' failure on the virtual clock: what came next, if anything did."""
        if not self.b.virtual:
            return ""
        for _ in range(10_000):
            if self.queue or not self._step(self.s.time_cap, True):
                break
        if self.queue:
            q = self.queue[0]
            return f" (the next packet: {describe(q.pkt, self.nums)} at {q.t:.3f})"
        return " (the stack sent nothing more)"

    def _learn_port(self, pkt: IPPacket) -> None:
        if self.flow.local_port is None and pkt.src == self.flow.local_addr:
            self.flow.local_port = pkt.seg.src_port

    def _aggregatable(self, line: Packet, q: _Queued) -> bool:
        seg = q.pkt.seg
        return (not self.s.strict_segments and 0 < len(seg.payload) < line.length
                and not seg.flags & SYN and q.checksum_ok)

    def _aggregate(self, line: Packet, first: _Queued, deadline: float) -> tuple[int, list[str]]:
        """TSO-style: contiguous segments of one flow adding up to the expected length. The first
        must carry the expected sequence number, every piece the expected ACK and window; flags
        are compared as the union of the pieces (PSH and FIN only on the last one)."""
        seg0 = first.pkt.seg
        total = len(seg0.payload)
        end = (seg0.seq + total) & 0xFFFFFFFF
        flags = seg0.flags
        n = 1
        while total < line.length:
            while len(self.queue) <= n:
                if not self._step(deadline, True):
                    return n, [f"payload length {total} in {n} segment(s), expected {line.length}"]
            nxt = self.queue[n].pkt.seg
            if (nxt.src_port, nxt.dst_port) != (seg0.src_port, seg0.dst_port) or nxt.seq != end \
                    or flags & (PSH | FIN) or nxt.ack != seg0.ack or nxt.flags & SYN:
                return n, [f"payload length {total}, expected {line.length} (the next segment does not "
                           f"continue it)"]
            total += len(nxt.payload)
            end = (end + len(nxt.payload)) & 0xFFFFFFFF
            flags |= nxt.flags
            n += 1
        whole = IPPacket(first.pkt.version, first.pkt.src, first.pkt.dst,
                         _merged(seg0, flags, total))
        return n, compare(line, whole, self.flow, self.nums, self.s.checks, length=total)

    def _syscall(self, ev: Event, sc: Syscall, base: float, t: float, tol: float) -> None:
        self._run_to(t, inclusive=True)
        self._check_stray(t, tol, ev.line)
        if self.pending is not None:
            p = self.pending
            raise _Fail(f"the blocking {p.sc.name}() of line {p.line} has not returned by line {ev.line}",
                        ev.line, f"{p.sc.name}() still blocked at {self.b.now():.3f}")
        try:
            call = decode(sc, self.fds, self.env)
        except DrillError as exc:
            raise _located(exc, ev.line) from None
        self._track(call)
        if sc.end is not None:
            end = base + sc.end
            etol = _tolerance(self.s, end, t)
            lo, hi = end - etol, end + etol
        else:
            lo, hi = t - tol, t + tol
        try:
            res = self.b.call(call, False)
        except DrillError as exc:
            raise _located(exc, ev.line) from None
        if res is not None:
            if sc.end is None:  # returned at once: only its start time counts (as packetdrill)
                lo, hi = float("-inf"), float("inf")
            self._finish_call(sc, call, res, ev.line, lo, hi)
            return
        self.pending = _Pending(sc, call, ev.line, lo, hi, t)
        if sc.end is None:
            self._wait_inline(ev)

    def _track(self, call: Call) -> None:
        """Calls that name the test connection's ports, and the socket code blocks look at (the
        one used last and not closed)."""
        if call.fd >= 0 and call.op != "close":
            self.current_fd = call.fd
        elif call.op == "close" and call.fd == self.current_fd:
            self.current_fd = next((fd for fd in reversed(self.fds.live.values()) if fd != call.fd), None)
        if call.op == "bind" and call.addr is not None and call.addr[1]:
            self.flow.local_port = call.addr[1]
        elif call.op == "connect" and call.addr is not None and call.fd not in self.connecting:
            # A new active open: its local port is learnt from its SYN (a second connect() on the
            # same socket — EALREADY, then 0 — changes nothing).
            self.connecting.add(call.fd)
            self.flow.local_port = None
            if call.addr[0]:
                self.flow.remote_addr = call.addr[0]
            self.flow.remote_port = call.addr[1]

    def _wait_inline(self, ev: Event) -> None:
        """A call without START...END blocked: let time pass until it returns."""
        # On a virtual clock the wait is unbounded here: the step past the time cap fails in
        # _after_step, and "nothing left" means exactly that. In real time the cap bounds it.
        limit = math.inf if self.b.virtual else self.s.time_cap
        while self.pending is not None:
            if not self._step(limit, True):
                p = self.pending
                raise _Fail(f"{p.sc.name}() blocks for ever: nothing is left to happen", ev.line,
                            f"{p.sc.name}() still blocked at {self.b.now():.3f}")

    def _code(self, ev: Event, block: Code, t: float, tol: float) -> None:
        self._run_to(t, inclusive=True)
        self._check_stray(t, tol, ev.line)
        if self.current_fd is None:
            raise DrillError("a code block needs a socket (none was created yet)", block.pos)
        info = self.b.tcp_info(self.current_fd)
        bad = codeblock.evaluate(block.text, info, block.pos, self.b.name)
        shown = ", ".join(f"{k}={v}" for k, v in sorted(info.items()) if k in block.text)
        self.obs.append(Observation(ev.line, "code", self.b.now(), shown))
        if bad:
            raise _Fail(bad, ev.line, shown)

    def _finish(self) -> None:
        end = self.b.now() + self.s.grace
        self._run_to(end, inclusive=True)
        p = self.pending
        if p is not None:
            while self.pending is not None and self._step(p.hi, True):
                pass
            if self.pending is not None:
                raise _Fail(f"{p.sc.name}() of line {p.line} did not return by {p.hi:.3f}", p.line,
                            f"still blocked at {self.b.now():.3f}")
        if self.queue:
            q = self.queue[0]
            raise _Fail(f"unexpected packet at {q.t:.3f}, after the last line of the script", 0,
                        f"{describe(q.pkt, self.nums)} at {q.t:.3f}")


def _merged(seg: Segment, flags: int, total: int) -> Segment:
    """The one segment TSO-style pieces stand for."""
    return Segment(seg.src_port, seg.dst_port, seg.seq, seg.ack, flags, seg.window, seg.options,
                   bytes(total), seg.urg)


def _located(exc: DrillError, line: int) -> DrillError:
    if not exc.pos.line:
        exc.pos = Pos(line, 1)
    return exc


def run_script(script: Script, backend: Backend, settings: Settings, plan: ShellPlan, *,
               clock: Callable[[], float] = time.process_time) -> Outcome:
    """Run ``script`` to its verdict. Never raises for a problem of the script: an unsupported
    construct gives UNSUPPORTED, anything else wrong a FAIL with its line."""
    run = _Run(script, backend, settings, plan)
    out = Outcome(script.path, backend.name, settings.profile, PASS, notes=list(plan.skipped))
    start = clock()
    try:
        run.run()
    except _Fail as f:
        out.verdict, out.message, out.line, out.happened = FAIL, f.message, f.line, f.happened
    except DrillError as exc:
        out.verdict = UNSUPPORTED if exc.unsupported else FAIL
        out.message, out.line = exc.message, exc.pos.line
    out.expected = script.line_text(out.line) if out.line else ""
    out.seconds = clock() - start
    out.script_time = backend.now()
    out.observations = run.obs
    return out

