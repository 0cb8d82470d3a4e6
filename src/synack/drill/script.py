"""The typed tree of a packetdrill script: what :mod:`synack.drill.parser` builds and
:mod:`synack.drill.engine` runs. Every node carries the :class:`Pos` (line, column) of its first
token, so that any complaint — a syntax error, an unsupported call, a mismatch at run time — names
the place in the script.

The shapes follow ``../shared/docs/packetdrill-language.md``: a script is options, then events; an
event is a time and an action; an action is a packet line, a system call, a backquoted shell
command or a ``%{ code }%`` block.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Action",
    "Code",
    "Command",
    "DrillError",
    "Event",
    "Expr",
    "ExprCall",
    "ExprEllipsis",
    "ExprInt",
    "ExprList",
    "ExprNeg",
    "ExprOr",
    "ExprStr",
    "ExprStruct",
    "ExprWord",
    "Field",
    "OptionSpec",
    "Packet",
    "Pos",
    "Script",
    "ScriptOption",
    "Syscall",
    "TimeKind",
    "TimeSpec",
]


@dataclass(frozen=True, slots=True)
class Pos:
    """A place in a script: 1-based line and column."""

    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.line}:{self.col}"


NOWHERE: Final = Pos(0, 0)


class DrillError(Exception):
    """A script that cannot be read or run as written; ``pos`` says where (``NOWHERE`` for the
    whole file). ``unsupported`` marks what the runner cannot do rather than what is wrong."""

    def __init__(self, message: str, pos: Pos = NOWHERE, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.unsupported = unsupported

    def located(self, path: str) -> str:
        """``path:line:col: message`` (or ``path: message`` for the whole file)."""
        where = f"{path}:{self.pos}" if self.pos.line else path
        return f"{where}: {self.message}"


# ---------------------------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------------------------


class TimeKind(enum.Enum):
    """The time forms of the language page: ``0.1``, ``+0.1``, ``*``, ``0.1~0.3``, ``+0.1~+0.3``."""

    ABSOLUTE = "absolute"
    RELATIVE = "relative"
    ANY = "any"
    ABSOLUTE_RANGE = "absolute range"
    RELATIVE_RANGE = "relative range"


@dataclass(frozen=True, slots=True)
class TimeSpec:
    """When an event happens. ``start`` (and ``end`` for a range) in seconds; for a relative kind
    they count from the previous event. ``pos`` is the time's first character."""

    kind: TimeKind
    start: float
    end: float | None
    pos: Pos

    @property
    def relative(self) -> bool:
        return self.kind in (TimeKind.RELATIVE, TimeKind.RELATIVE_RANGE)

    def __str__(self) -> str:
        if self.kind is TimeKind.ANY:
            return "*"
        sign = "+" if self.relative else ""
        if self.end is None:
            return f"{sign}{self.start:g}"
        return f"{sign}{self.start:g}~{sign}{self.end:g}"


# ---------------------------------------------------------------------------------------------
# Expressions (system-call arguments and results)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExprInt:
    """A number (decimal or ``0x`` hex)."""

    value: int
    pos: Pos


@dataclass(frozen=True, slots=True)
class ExprWord:
    """A symbol: ``SOCK_STREAM``, ``EINPROGRESS``, ``TCP_ESTABLISHED``, a ``-D`` name."""

    name: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class ExprStr:
    """A ``"string"`` (``ellipsis``: followed by ``...``, as in ``"abc"...``)."""

    value: str
    pos: Pos
    ellipsis: bool = False


@dataclass(frozen=True, slots=True)
class ExprEllipsis:
    """``...``: the obvious value (the test's address, a zero-filled buffer)."""

    pos: Pos


@dataclass(frozen=True, slots=True)
class ExprNeg:
    """``-x``."""

    operand: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class ExprOr:
    """``A|B|C`` (flags)."""

    terms: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ExprList:
    """``[a, b]``: an array, or one value through a pointer (``[1]``, ``[ECONNRESET]``)."""

    items: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Field:
    """One entry of a ``{...}`` structure: ``name=value``, or a bare value (``name`` None)."""

    name: str | None
    value: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class ExprStruct:
    """``{sa_family=AF_INET, sin_port=htons(8080), ...}``, ``{onoff=1, linger=0}``,
    ``{fd=3, events=POLLIN}``, ``{..., 100}`` (an iovec)."""

    fields: tuple[Field, ...]
    pos: Pos

    def get(self, name: str) -> Expr | None:
        for f in self.fields:
            if f.name == name:
                return f.value
        return None


@dataclass(frozen=True, slots=True)
class ExprCall:
    """``htons(8080)``, ``inet_addr("192.0.2.1")``; also ``msg_iov(1)`` inside a msghdr."""

    name: str
    args: tuple[Expr, ...]
    pos: Pos


Expr = ExprInt | ExprWord | ExprStr | ExprEllipsis | ExprNeg | ExprOr | ExprList | ExprStruct | ExprCall


# ---------------------------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One TCP option of a packet line: ``name`` is ``mss``, ``wscale``, ``sackOK``, ``sack``,
    ``TS``, ``nop`` or ``eol``; ``values`` its numbers (``sack``: left, right, left, right ...;
    ``TS``: val, ecr)."""

    name: str
    values: tuple[int, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Packet:
    """``<dir> [sport>dport] <flags> <start>:<end>(<len>) [ack n] [win n] [urg n] [<options>]``.

    ``inbound`` is ``<``. ``flags`` is the flag text as written (``S.``, ``FP.``, ``-``).
    ``options`` is None for ``<...>`` (not checked) and ``()`` when no list was written."""

    inbound: bool
    ports: tuple[int, int] | None
    flags: str
    start: int
    end: int
    length: int
    ack: int | None
    win: int | None
    urg: int | None
    options: tuple[OptionSpec, ...] | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class Syscall:
    """``[START...END] name(arg, ...) = result [ERRNO [(note)]]``. ``end`` is the END time of
    a blocking call (same frame as the event's START: absolute, or relative to the previous event
    when START is relative), None for a call that must return at once."""

    name: str
    args: tuple[Expr, ...]
    result: Expr
    errno: str | None
    note: str
    end: float | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class Command:
    """A backquoted shell command (recorded; see :mod:`synack.drill.engine` for what is done)."""

    text: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Code:
    """A ``%{ python }%`` block, run with the socket's ``tcpi_*`` fields in scope."""

    text: str
    pos: Pos


Action = Packet | Syscall | Command | Code


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the script: a time and an action."""

    time: TimeSpec
    action: Action

    @property
    def pos(self) -> Pos:
        return self.time.pos

    @property
    def line(self) -> int:
        return self.time.pos.line


@dataclass(frozen=True, slots=True)
class ScriptOption:
    """``--name[=value]`` at the top of a script (or ``-D NAME[=VALUE]``)."""

    name: str
    value: str | None
    pos: Pos


@dataclass(frozen=True, slots=True)
class Script:
    """A parsed script: its options, its events in order, the ``-D`` names in force, and the
    source lines (for reports that quote a line)."""

    path: str
    options: tuple[ScriptOption, ...]
    events: tuple[Event, ...]
    defines: dict[str, str]
    lines: tuple[str, ...]

    def line_text(self, line: int) -> str:
        """The source text of a line (stripped), or ``""``."""
        if 1 <= line <= len(self.lines):
            return self.lines[line - 1].strip()
        return ""
