"""Backquoted shell commands in a script (``../shared/docs/packetdrill-language.md``: "record them
and ignore them (or map a known few to Config)").

The runner never runs a script's shell commands. It reads ``sysctl NAME=VALUE`` assignments: on
synack a known few map onto :class:`~synack.core.connection.Config` (timestamps, SACK, window
scaling, keep-alive times, the FIN-WAIT-2 timeout); switching *off* a Linux mechanism synack does
not have (tail loss probes, auto-corking, F-RTO, ECN, Fast Open ...) changes nothing and is
accepted; any other TCP sysctl matters and makes the script UNSUPPORTED. On Linux, ``net.ipv4.tcp_*``
sysctls are set inside the runner's namespace (they are per-namespace), nothing else. Any other
command is recorded and skipped when it stands before the first or after the last packet or call
(an initialisation or cleanup script of the original stack); in the middle of a script its effect
would matter, and the script is UNSUPPORTED.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Final

from synack.drill.script import Command, DrillError, Event, Script

__all__ = ["ShellPlan", "plan_commands"]

_SYSCTL_CONFIG: Final = {
    "net.ipv4.tcp_timestamps": ("timestamps", bool),
    "net.ipv4.tcp_sack": ("sack", bool),
    "net.ipv4.tcp_window_scaling": ("window_scaling", bool),
    "net.ipv4.tcp_keepalive_time": ("keepidle", float),
    "net.ipv4.tcp_keepalive_intvl": ("keepintvl", float),
    "net.ipv4.tcp_keepalive_probes": ("keepcnt", int),
    "net.ipv4.tcp_fin_timeout": ("fin_wait_2_timeout", float),
}

# Linux mechanisms synack does not have, and the value that switches each off (synack's behaviour).
_LINUX_ONLY_OFF: Final = {
    "net.ipv4.tcp_early_retrans": "0", "net.ipv4.tcp_autocorking": "0", "net.ipv4.tcp_frto": "0",
    "net.ipv4.tcp_ecn": "0", "net.ipv4.tcp_fastopen": "0", "net.ipv4.tcp_dsack": "0",
    "net.ipv4.tcp_mtu_probing": "0", "net.ipv4.tcp_thin_linear_timeouts": "0",
    "net.ipv4.tcp_moderate_rcvbuf": "0", "net.ipv4.tcp_no_metrics_save": "1", "net.ipv4.tcp_recovery": "0",
    "net.ipv4.tcp_pacing_ss_ratio": "100", "net.ipv4.tcp_pacing_ca_ratio": "100",
}

_SPLIT: Final = re.compile(r";|&&|\n")


@dataclass(slots=True)
class ShellPlan:
    """What the runner makes of a script's commands: ``config`` for synack, ``sysctls`` for Linux
    (applied in order), ``skipped`` for the report, and the line of each command (by event index)."""

    config: dict[str, Any] = field(default_factory=dict)
    sysctls: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _sysctls(words: list[str]) -> list[tuple[str, str]] | None:
    """``sysctl [-q] [-w] a.b=c ...`` -> [(a.b, c)], or None when it is no sysctl assignment."""
    if not words or words[0] != "sysctl":
        return None
    out = []
    for w in words[1:]:
        if w.startswith("-"):
            continue
        name, eq, value = w.partition("=")
        if not eq:
            return None  # a sysctl read: harmless, but not an assignment either
        out.append((name.replace("/", "."), value))
    return out


def _config_value(name: str, value: str, cmd: Command, backend: str) -> tuple[str, Any] | None:
    """The Config change of one sysctl on synack (None: no change); raises when it matters."""
    if name in _SYSCTL_CONFIG:
        key, kind = _SYSCTL_CONFIG[name]
        try:
            num = float(value)
        except ValueError:
            raise DrillError(f"sysctl {name}={value}: not a number", cmd.pos) from None
        if kind is bool:
            return key, bool(num)
        if key == "fin_wait_2_timeout":
            return key, num if num > 0 else None
        return key, kind(num)
    if _LINUX_ONLY_OFF.get(name) == value:
        return None
    raise DrillError(f"sysctl {name}={value} has no synack equivalent", cmd.pos, unsupported=True)


def plan_commands(script: Script, backend: str) -> ShellPlan:
    """Read every command of ``script`` for ``backend`` (``synack`` or ``linux``)."""
    plan = ShellPlan()
    events = script.events
    active = [i for i, e in enumerate(events) if not isinstance(e.action, Command)]
    first, last = (active[0], active[-1]) if active else (len(events), -1)
    for i, ev in enumerate(events):
        if isinstance(ev.action, Command):
            _plan_one(plan, ev, ev.action, backend, at_edge=i < first or i > last)
    return plan


def _plan_one(plan: ShellPlan, ev: Event, cmd: Command, backend: str, *, at_edge: bool) -> None:
    for part in _SPLIT.split(cmd.text):
        part = part.strip()
        if not part:
            continue
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        assignments = _sysctls(words)
        if assignments is None:
            if not at_edge:
                raise DrillError(f"shell command `{part}` in the middle of the script: its effect would "
                                 f"matter, and the runner does not run commands", cmd.pos, unsupported=True)
            plan.skipped.append(f"line {cmd.pos.line}: skipped `{part}`")
            continue
        for name, value in assignments:
            if backend == "linux":
                if not name.startswith("net.ipv4.tcp_"):
                    raise DrillError(f"sysctl {name} is not a per-namespace TCP setting: the runner sets "
                                     f"net.ipv4.tcp_* inside its namespace", cmd.pos, unsupported=True)
                plan.sysctls.append((name, value))
                continue
            change = _config_value(name, value, cmd, backend)
            if change is not None:
                plan.config[change[0]] = change[1]
            what = f" -> Config.{change[0]}={change[1]}" if change else " (synack has no such mechanism)"
            plan.skipped.append(f"line {cmd.pos.line}: sysctl {name}={value}{what}")
