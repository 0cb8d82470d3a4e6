"""Profiles: what a run checks, and the peer-facing defaults a script assumes
(``../shared/docs/packetdrill-language.md``, "What scripts in the wild assume").

Two built-in profiles differ only in what they compare: **strict** checks everything the
language checks; **relaxed** ignores outbound window values and option values (an option the line
names must still be present), while flags, sequence and ACK numbers, lengths, timing, call results
and errno are still checked. A profile file (TOML) names one of them as its base and adds the
defaults of the stack the scripts were written for::

    checks = "relaxed"            # or "strict" (the default)

    [config]                      # fields of synack.core.Config, as the stack under test uses them
    rto_min = 0.2
    rto_initial = 1.0
    delayed_ack = 0.04
    rcv_buf = 65535
    mss = 1460

    [script]                      # defaults of script options (a script's own --options win)
    tolerance_usecs = 10000
    define = ["Linux"]            # names defined as with -D
    time_cap = 600                # seconds of virtual time before a script is given up

    [linux.sysctl]                # set inside the private namespace for --against linux
    "net.ipv4.tcp_early_retrans" = 0

The profile's name (the built-in name, or the file's stem) is printed in every report line.
``--config KEY=VALUE`` on the command line sets one ``Config`` field on top of the profile.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, Final

from synack.core.connection import Config
from synack.drill.matcher import Checks

__all__ = ["BUILTIN", "Profile", "ProfileError", "config_fields", "load_profile", "parse_config_value"]


class ProfileError(ValueError):
    """A profile (or a ``--config`` setting) that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Profile:
    """A named set of checks and defaults."""

    name: str
    checks: Checks
    config: dict[str, Any] = field(default_factory=dict)
    script: dict[str, Any] = field(default_factory=dict)
    defines: tuple[str, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)

    def make_config(self, extra: dict[str, Any] | None = None) -> Config:
        """``Config()`` with the profile's fields and then ``extra`` applied (checked by Config)."""
        changes = dict(self.config) | (extra or {})
        try:
            return Config(**changes)
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"profile {self.name}: {exc}") from None

    def with_config(self, extra: dict[str, Any]) -> Profile:
        return dataclasses.replace(self, config=dict(self.config) | extra)


BUILTIN: Final = {
    "strict": Profile("strict", Checks(windows=True, option_values=True)),
    "relaxed": Profile("relaxed", Checks(windows=False, option_values=False)),
}


def config_fields() -> dict[str, type]:
    """The fields of :class:`~synack.core.connection.Config` a profile may set, and their types."""
    out: dict[str, type] = {}
    for f in dataclasses.fields(Config):
        text = str(f.type)
        kind: type = float
        for name, typ in (("bool", bool), ("int", int), ("str", str), ("float", float)):
            if name in text.split(" | "):
                kind = typ
                break
        out[f.name] = kind
    return out


def parse_config_value(key: str, text: str) -> Any:
    """``--config KEY=VALUE``: the value converted to the field's type."""
    fields = config_fields()
    if key not in fields:
        raise ProfileError(f"unknown Config field {key!r} (known: {', '.join(sorted(fields))})")
    kind = fields[key]
    if text.lower() in ("none", "null"):
        return None
    try:
        if kind is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes", "on")
        if kind is int:
            return int(text, 0)
        if kind is str:
            return text
        return float(text)
    except ValueError:
        raise ProfileError(f"--config {key}: {text!r} is not a {kind.__name__}") from None


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: [{key}] must be a table")
    return value


def load_profile(spec: str) -> Profile:
    """A built-in profile by name, or a TOML profile file by path."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    if not os.path.exists(spec):
        raise ProfileError(f"no profile {spec!r}: use strict, relaxed or the path of a TOML profile file")
    try:
        with open(spec, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"cannot read profile {spec}: {exc}") from None
    known = {"checks", "config", "script", "linux", "name"}
    extra = sorted(set(data) - known)
    if extra:
        raise ProfileError(f"{spec}: unknown key(s) {', '.join(extra)} (known: {', '.join(sorted(known))})")
    base_name = data.get("checks", "strict")
    if base_name not in BUILTIN:
        raise ProfileError(f"{spec}: checks must be \"strict\" or \"relaxed\", not {base_name!r}")
    config = _table(data, "config", spec)
    fields = config_fields()
    for key in config:
        if key not in fields:
            raise ProfileError(f"{spec}: [config] {key} is not a field of synack.core.Config "
                               f"(known: {', '.join(sorted(fields))})")
    script = dict(_table(data, "script", spec))
    defines = script.pop("define", [])
    if isinstance(defines, str):
        defines = [defines]
    sysctls = _table(_table(data, "linux", spec), "sysctl", spec)
    name = str(data.get("name") or os.path.splitext(os.path.basename(spec))[0])
    profile = Profile(name, BUILTIN[base_name].checks, dict(config), script, tuple(map(str, defines)),
                      {k: str(v) for k, v in sysctls.items()})
    profile.make_config()  # check the values now, not in the middle of a run
    return profile
