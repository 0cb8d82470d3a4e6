"""Running scripts: the synack backend on the virtual clock, and :func:`run_file`, which takes a
script from its path to an :class:`~synack.drill.engine.Outcome` on any backend.

**The synack backend** is one :class:`~synack.core.host.Host` (the stack under test, named
``synack``) and a :class:`~synack.sim.Tap` (the script, named ``script``) joined by a
:class:`~synack.sim.Pipe` with zero delay. Inbound packets are queued on the tap at their script
time; what the tap receives is what the host sent, at the exact virtual time it sent it. The
pipe's clock moves only when the interpreter asks, so a script gives the same result every run and
a minute of TCP timers costs nothing. The host's ISN secret is fixed, so runs repeat exactly;
that is also how a failing script gets its ladder diagram — it is run a second time with the
host's records and the packets kept (:func:`ladder_records`).

**Options** (``../shared/docs/packetdrill-language.md``, "File structure"), from the lowest
precedence: the built-in defaults, the profile's ``[script]`` table, the command line, the
script's own option lines (as packetdrill: a script's options win). Each backend defines its
name for ``#ifdef``: ``synack`` on synack, ``Linux`` on the kernel, so one script can state where
Linux chooses differently from the RFC (``#ifdef Linux ... #else ... #endif``) and run on both.
Known: ``--ip_version``,
``--tolerance_usecs``, ``--tolerance_percent``, ``--mss`` (the MSS synack announces:
``Config.mss``), ``--mtu``, ``--strict_segments``, ``--bind_port``, ``--connect_port``,
``--local_ip``, ``--remote_ip``, ``--define``/``-D`` and ``--time_cap`` (this runner's bound on
script time); ``--verbose``, ``--debug`` and ``--dry_run`` are accepted and ignored. Any other
option makes the script UNSUPPORTED.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from synack.core.connection import Config
from synack.core.host import Host
from synack.core.records import Record, State
from synack.drill import calls as calls_mod
from synack.drill import code as codeblock
from synack.drill.calls import Call, Result
from synack.drill.commands import ShellPlan, plan_commands
from synack.drill.engine import FAIL, UNSUPPORTED, Backend, Outcome, Settings, run_script
from synack.drill.hostcalls import HostSockets, tcp_info
from synack.drill.parser import parse_file
from synack.drill.profiles import BUILTIN, Profile, ProfileError
from synack.drill.script import NOWHERE, Code, DrillError, Script, ScriptOption, Syscall
from synack.sim import Pipe, Tap
from synack.trace import PacketRecord

__all__ = ["Request", "SynackBackend", "ladder_records", "make_settings", "run_file"]

V6_LOCAL: Final = "fd3d:fa7b:d17d::1"
V6_REMOTE: Final = "2001:db8::1"
_IGNORED: Final = frozenset({"verbose", "v", "debug", "dry_run", "define", "D"})
STACK: Final = "synack"
BACKEND_DEFINES: Final = {"synack": "synack", "linux": "Linux"}
"""The name each backend defines for ``#ifdef`` (a script marks Linux's own choices with ``#ifdef Linux``)."""
PEER: Final = "script"


@dataclass(frozen=True, slots=True)
class Request:
    """How to run scripts: the backend (``synack``, ``linux``), the profile, ``--config`` fields,
    command-line script options and ``-D`` names."""

    backend: str = "synack"
    profile: Profile = BUILTIN["strict"]
    config: dict[str, Any] = field(default_factory=dict)
    options: tuple[tuple[str, str | None], ...] = ()
    defines: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


def _apply_option(s: Settings, name: str, value: str | None, opt: ScriptOption | None) -> None:
    pos = opt.pos if opt is not None else None

    def bad(why: str) -> DrillError:
        return DrillError(f"--{name}: {why}", pos) if pos is not None else DrillError(f"--{name}: {why}")

    def num(kind: Callable[[str], Any]) -> Any:
        if value is None:
            raise bad("needs a value")
        try:
            return kind(value)
        except ValueError:
            raise bad(f"{value!r} is not a number") from None

    if name in _IGNORED:
        return
    if name == "tolerance_usecs":
        s.tolerance_usecs = float(num(int))
    elif name == "tolerance_percent":
        s.tolerance_percent = float(num(float))
    elif name == "ip_version":
        if value not in ("ipv4", "ipv6"):
            raise DrillError(f"--ip_version={value} is not supported (ipv4, ipv6)", pos or NOWHERE,
                             unsupported=True)
        s.ipv6 = value == "ipv6"
        s.local_addr, s.remote_addr = (V6_LOCAL, V6_REMOTE) if s.ipv6 else ("192.168.0.1", "192.0.2.1")
    elif name == "mss":
        s.mss = num(int)
    elif name == "mtu":
        s.mtu = num(int)
    elif name == "strict_segments":
        s.strict_segments = True
    elif name in ("bind_port", "connect_port"):
        setattr(s, name, num(int))
    elif name == "local_ip":
        s.local_addr = num(str).split("/")[0]
    elif name == "remote_ip":
        s.remote_addr = num(str).split("/")[0]
    elif name == "time_cap":
        s.time_cap = float(num(float))
    else:
        raise DrillError(f"option --{name} is not supported", pos or NOWHERE, unsupported=True)


def make_settings(script: Script, req: Request) -> Settings:
    """The settings of one run: defaults < profile < command line < the script's own options."""
    s = Settings(checks=req.profile.checks, profile=req.profile.name)
    for name, value in req.profile.script.items():
        _apply_option(s, name, None if value is True else str(value), None)
    for name, value in req.options:
        _apply_option(s, name, value, None)
    for opt in script.options:
        _apply_option(s, opt.name, opt.value, opt)
    return s


def host_config(req: Request, settings: Settings, plan: ShellPlan) -> Config:
    """The synack host's Config: the profile, ``--config``, the script's sysctls, ``--mss``."""
    extra = dict(req.config) | plan.config
    if settings.mss is not None:
        extra["mss"] = settings.mss
    try:
        return req.profile.make_config(extra)
    except ProfileError as exc:
        raise DrillError(str(exc)) from None


def check_supported(script: Script) -> None:
    """What can be known before running: unknown system calls, code blocks the runner cannot
    evaluate. (Unknown options and socket options are found as they are met.)"""
    for ev in script.events:
        act = ev.action
        if isinstance(act, Syscall) and act.name not in calls_mod.SYSCALLS:
            raise DrillError(f"system call {act.name}() is not supported", act.pos, unsupported=True)
        if isinstance(act, Code):
            codeblock.names_used(act.text, act.pos)


# ---------------------------------------------------------------------------------------------
# The synack backend
# ---------------------------------------------------------------------------------------------


class SynackBackend:
    """synack's :class:`~synack.core.host.Host` on a zero-delay :class:`~synack.sim.Pipe`, the
    script behind a :class:`~synack.sim.Tap` (see the module)."""

    name = "synack"
    virtual = True

    def __init__(self, settings: Settings, config: Config, *, records: list[Any] | None = None) -> None:
        self.records = records
        tracer = records.append if records is not None else None
        self.host = Host([settings.local_addr], name=STACK, config=config, mtu=settings.mtu,
                         isn_key=hashlib.sha256(b"synack drill").digest(), tracer=tracer)
        self.tap = Tap()
        self.pipe: Pipe[Host, Tap] = Pipe(self.host, self.tap, delay=0.0)
        self.sockets = HostSockets(self.host)
        self._pid = 0  # one count for both directions: the diagram keys packets by it

    def now(self) -> float:
        return self.pipe.now

    def advance(self, limit: float, *, inclusive: bool, busy: bool) -> bool:
        pipe = self.pipe
        pipe.flush()
        t = pipe.next_event_time()
        if t is None or t > limit or (not inclusive and t >= limit):
            return False
        pipe.step(t)
        return True

    def move_to(self, t: float) -> None:
        if t > self.pipe.now:
            self.pipe.run_before(t)

    def inject(self, packet: bytes) -> None:
        self.tap.send(packet)
        self._record(PEER, STACK, self.pipe.now, packet)

    def take(self) -> list[tuple[float, bytes]]:
        out = [(a.time, a.packet) for a in self.tap.take()]
        for t, pkt in out:
            self._record(STACK, PEER, t, pkt)
        return out

    def _record(self, src: str, dst: str, t: float, packet: bytes) -> None:
        if self.records is None:
            return
        self._pid += 1
        pid = self._pid
        self.records.append(PacketRecord(t, "send", src, dst, pid, 0, packet))
        self.records.append(PacketRecord(t, "deliver", src, dst, pid, 0, packet))

    def call(self, call: Call, retry: bool) -> Result | None:
        return self.sockets.call(call, self.pipe.now, retry)

    def wake_time(self, call: Call) -> float | None:
        return self.sockets.wake_time(call)

    def tcp_info(self, fd: int) -> dict[str, int]:
        state = self.sockets.state_of(fd)
        if state is None:
            raise DrillError(f"code block: file descriptor {fd} is not open")
        return tcp_info(state, self.sockets.connection(fd))


# ---------------------------------------------------------------------------------------------
# From a path to an outcome
# ---------------------------------------------------------------------------------------------


def _backend(req: Request, script: Script, settings: Settings, plan: ShellPlan,
             records: list[Any] | None) -> Backend:
    if req.backend == "linux":
        from synack.drill.linux import LinuxBackend

        return LinuxBackend(settings, plan, req.profile, records)
    return SynackBackend(settings, host_config(req, settings, plan), records=records)


def _prepare(path: str, req: Request) -> tuple[Script, Settings, ShellPlan]:
    defines = {BACKEND_DEFINES[req.backend]: ""} | {d: "" for d in req.profile.defines} | dict(req.defines)
    script = parse_file(path, defines)
    settings = make_settings(script, req)
    plan = plan_commands(script, req.backend)
    check_supported(script)
    return script, settings, plan


def run_file(path: str, req: Request, *, records: list[Any] | None = None) -> Outcome:
    """Run one script file; every problem becomes the verdict (never an exception)."""
    try:
        script, settings, plan = _prepare(path, req)
        backend = _backend(req, script, settings, plan, records)
    except DrillError as exc:
        verdict = UNSUPPORTED if exc.unsupported else FAIL
        return Outcome(path, req.backend, req.profile.name, verdict, exc.message, exc.pos.line,
                       "", "")
    except OSError as exc:  # the Linux backend's namespace or device could not be made
        return Outcome(path, req.backend, req.profile.name, FAIL, f"cannot set up the {req.backend} backend: "
                       f"{exc}")
    try:
        out = run_script(script, backend, settings, plan)
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    return out


def ladder_records(path: str, req: Request) -> list[Record | PacketRecord]:
    """The run again, with the host's records and the packets kept (synack only: deterministic)."""
    records: list[Any] = []
    run_file(path, Request("synack", req.profile, req.config, req.options, req.defines), records=records)
    return records


def state_name(state: State) -> str:
    return state.value
