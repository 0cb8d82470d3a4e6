"""System-call lines: their arguments decoded into a :class:`Call`, and the :class:`Result` a
backend gives checked against what the line expects (``../shared/docs/packetdrill-language.md``,
"System-call lines").

Decoding and checking are the same for every backend; only *doing* the call differs
(:mod:`synack.drill.hostcalls` on a synack host, :mod:`synack.drill.linux` on kernel sockets).
A backend sees a :class:`Call` with live file descriptors and plain values; the script's file
descriptors are names (``socket(...) = 3``) that :class:`FdMap` binds to the live ones.

Calls are grouped by what they do: ``read``/``recv``/``recvfrom``/``readv``/``recvmsg`` are one
operation (``read``, with a length and flags), ``write``/``send``/``sendto``/``writev``/``sendmsg``
another (``write``). Payloads are zeros: only lengths are compared, as packetdrill does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

from synack.drill import symbols
from synack.drill.script import (
    DrillError,
    Expr,
    ExprCall,
    ExprEllipsis,
    ExprInt,
    ExprList,
    ExprNeg,
    ExprOr,
    ExprStr,
    ExprStruct,
    ExprWord,
    Pos,
    Syscall,
)

__all__ = [
    "SYSCALLS",
    "Call",
    "FdMap",
    "Result",
    "check_result",
    "decode",
    "describe_result",
    "int_value",
]

Linger = tuple[int, int]
OptValue = int | Linger

_READS: Final = frozenset({"read", "recv", "recvfrom", "readv", "recvmsg"})
_WRITES: Final = frozenset({"write", "send", "sendto", "writev", "sendmsg"})
SYSCALLS: Final = frozenset({"socket", "bind", "listen", "accept", "accept4", "connect", "close", "shutdown",
                             "fcntl", "setsockopt", "getsockopt", "poll"}) | _READS | _WRITES
"""Every system call the runner knows; any other makes a script UNSUPPORTED."""

_FD_RESULT: Final = frozenset({"socket", "accept", "accept4"})


@dataclass(slots=True)
class Call:
    """One system call, decoded. ``op`` is the operation (``read`` for every reading call ...),
    ``name`` the script's word for it, ``fd`` the live descriptor (-1 when the call has none).
    The other fields are the arguments the operation takes; ``progress`` counts what earlier
    attempts of a blocking call already did (octets written), ``deadline`` is when a ``poll``
    gives up (absolute time, None: never)."""

    op: str
    name: str
    pos: Pos
    fd: int = -1
    family: int = symbols.AF_INET
    nonblock: bool = False  # socket(..., SOCK_NONBLOCK, ...), MSG_DONTWAIT
    addr: tuple[str, int] | None = None
    n: int = 0  # length, backlog, how, fcntl command
    flags: int = 0
    level: int = 0
    optname: int = 0
    optword: str = ""
    value: OptValue | None = None
    polls: tuple[tuple[int, int], ...] = ()
    timeout_ms: int = 0
    progress: int = 0
    deadline: float | None = None


@dataclass(slots=True)
class Result:
    """What a call returned: ``ret`` (-1 with ``err`` set on failure), the option value of a
    ``getsockopt``, the ``revents`` of a ``poll``."""

    ret: int
    err: int = 0
    value: OptValue | None = None
    revents: tuple[int, ...] = ()

    @classmethod
    def error(cls, code: int) -> Result:
        return cls(-1, code)


@dataclass(slots=True)
class FdMap:
    """Script file descriptors (names) and the live ones they stand for."""

    live: dict[int, int] = field(default_factory=dict)

    def get(self, script_fd: int, pos: Pos) -> int:
        """The live descriptor of a script one; an unknown name is passed through unchanged (the
        backend then answers EBADF, as the kernel would for a number never opened)."""
        return self.live.get(script_fd, script_fd if script_fd < 0 else 10_000 + script_fd)

    def bind(self, script_fd: int, live_fd: int) -> None:
        self.live[script_fd] = live_fd

    def script_fd(self, live_fd: int) -> int | None:
        for s, v in self.live.items():
            if v == live_fd:
                return s
        return None


@dataclass(frozen=True, slots=True)
class Env:
    """What ``...`` means in a call: the test's addresses and ports, and the ``-D`` names."""

    local_addr: str
    remote_addr: str
    bind_port: int
    connect_port: int
    defines: dict[str, str]


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def int_value(e: Expr, defines: dict[str, str] | None = None) -> int:
    """An expression as an integer: numbers, symbols, ``-x``, ``A|B``, ``htons(n)``, ``[x]``."""
    if isinstance(e, ExprInt):
        return e.value
    if isinstance(e, ExprNeg):
        return -int_value(e.operand, defines)
    if isinstance(e, ExprOr):
        out = 0
        for t in e.terms:
            out |= int_value(t, defines)
        return out
    if isinstance(e, ExprWord):
        v = symbols.lookup(e.name)
        if v is not None:
            return v
        if defines and e.name in defines:
            try:
                return int(defines[e.name], 0)
            except ValueError:
                pass
        raise DrillError(f"unknown symbol {e.name}", e.pos, unsupported=True)
    if isinstance(e, ExprCall) and e.name in ("htons", "ntohs", "htonl", "ntohl") and len(e.args) == 1:
        return int_value(e.args[0], defines)
    if isinstance(e, ExprList) and len(e.items) == 1:
        return int_value(e.items[0], defines)
    raise DrillError(f"expected a number, found {_kind(e)}", e.pos)


def _kind(e: Expr) -> str:
    return {ExprStr: "a string", ExprEllipsis: "'...'", ExprList: "a list", ExprStruct: "a structure",
            ExprCall: "a call"}.get(type(e), "a value")


def _sockaddr(e: Expr, default: tuple[str, int], env: Env) -> tuple[str, int]:
    """``...`` (the default), or ``{sa_family=..., sin_port=htons(N), sin_addr=inet_addr("A")}``
    (``sin6_port``/``sin6_addr=inet6_addr(...)`` for IPv6)."""
    if isinstance(e, ExprEllipsis):
        return default
    if not isinstance(e, ExprStruct):
        raise DrillError(f"expected a socket address ({{sa_family=..., sin_port=..., sin_addr=...}} or ...), "
                         f"found {_kind(e)}", e.pos)
    port_e = e.get("sin_port") or e.get("sin6_port")
    addr_e = e.get("sin_addr") or e.get("sin6_addr")
    port = int_value(port_e, env.defines) if port_e is not None else default[1]
    addr = default[0]
    if addr_e is not None:
        if isinstance(addr_e, ExprCall) and addr_e.name in ("inet_addr", "inet6_addr", "inet_pton") \
                and addr_e.args and isinstance(addr_e.args[-1], ExprStr):
            addr = addr_e.args[-1].value
        elif isinstance(addr_e, ExprWord) and addr_e.name in ("INADDR_ANY", "in6addr_any"):
            addr = ""
        else:
            raise DrillError("expected sin_addr=inet_addr(\"...\")", addr_e.pos)
    return addr, port


def _iov_length(e: Expr, defines: dict[str, str]) -> int:
    """The total length of an iovec list ``[{..., 100}, {..., 200}]``."""
    items = e.items if isinstance(e, ExprList) else (e,)
    total = 0
    for it in items:
        if not isinstance(it, ExprStruct) or not it.fields:
            raise DrillError("expected an iovec {..., LENGTH}", it.pos)
        total += int_value(it.fields[-1].value, defines)
    return total


def _msghdr_length(e: Expr, defines: dict[str, str]) -> int:
    if not isinstance(e, ExprStruct):
        raise DrillError("expected a msghdr {msg_name(...)=..., msg_iov(N)=[...], msg_flags=...}", e.pos)
    iov = e.get("msg_iov")
    if iov is None:
        raise DrillError("a msghdr without msg_iov", e.pos)
    return _iov_length(iov, defines)


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def _need(sc: Syscall, n: int) -> None:
    if len(sc.args) < n:
        raise DrillError(f"{sc.name}() needs {n} arguments, got {len(sc.args)}", sc.pos)


def decode(sc: Syscall, fds: FdMap, env: Env) -> Call:
    """The :class:`Call` a system-call line makes. An unknown call, symbol or socket option is a
    :class:`DrillError` marked unsupported; a malformed argument is a plain one."""
    name = sc.name
    if name not in SYSCALLS:
        raise DrillError(f"system call {name}() is not supported", sc.pos, unsupported=True)
    d = env.defines
    if name == "socket":
        _need(sc, 3)
        typ = int_value(sc.args[1], d)
        if typ & 0xF != symbols.SOCK_STREAM:
            raise DrillError("only SOCK_STREAM sockets are supported", sc.args[1].pos, unsupported=True)
        fam_e = sc.args[0]
        fam = symbols.AF_INET6 if ":" in env.local_addr else symbols.AF_INET
        if not isinstance(fam_e, ExprEllipsis):
            fam = int_value(fam_e, d)
        return Call("socket", name, sc.pos, family=fam, nonblock=bool(typ & symbols.SOCK_NONBLOCK))
    if name == "poll":
        _need(sc, 3)
        call = Call("poll", name, sc.pos)
        call.polls = tuple((fds.get(fd, sc.pos), ev) for fd, ev in _polls(sc.args[0], d))
        call.timeout_ms = int_value(sc.args[2], d)
        return call
    _need(sc, 1)
    fd = fds.get(int_value(sc.args[0], d), sc.pos)
    call = Call(_op(name), name, sc.pos, fd=fd)
    _decode_args(call, sc, env)
    return call


def _op(name: str) -> str:
    if name in _READS:
        return "read"
    if name in _WRITES:
        return "write"
    return "accept" if name == "accept4" else name


def _decode_args(call: Call, sc: Syscall, env: Env) -> None:
    d = env.defines
    a = sc.args
    op = call.op
    if op == "bind":
        _need(sc, 2)
        call.addr = _sockaddr(a[1], (env.local_addr, env.bind_port), env)
    elif op == "connect":
        _need(sc, 2)
        call.addr = _sockaddr(a[1], (env.remote_addr, env.connect_port), env)
    elif op == "listen":
        _need(sc, 2)
        call.n = int_value(a[1], d)
    elif op == "accept" and call.name == "accept4" and len(a) >= 4:
        call.nonblock = bool(int_value(a[3], d) & symbols.SOCK_NONBLOCK)
    elif op == "shutdown":
        _need(sc, 2)
        call.n = int_value(a[1], d)
    elif op == "fcntl":
        _need(sc, 2)
        call.n = int_value(a[1], d)
        if len(a) > 2:
            call.flags = int_value(a[2], d)
    elif op in ("read", "write"):
        _decode_io(call, sc, d)
    elif op in ("setsockopt", "getsockopt"):
        _decode_sockopt(call, sc, d)


def _decode_io(call: Call, sc: Syscall, d: dict[str, str]) -> None:
    a = sc.args
    name = sc.name
    if name in ("readv", "writev"):
        _need(sc, 3)
        call.n = _iov_length(a[1], d)
    elif name in ("recvmsg", "sendmsg"):
        _need(sc, 3)
        call.n = _msghdr_length(a[1], d)
        call.flags = int_value(a[2], d)
    else:
        _need(sc, 3)
        call.n = int_value(a[2], d)
        if name in ("recv", "recvfrom", "send", "sendto") and len(a) > 3:
            call.flags = int_value(a[3], d)
    if call.n < 0:
        raise DrillError(f"negative length {call.n}", sc.pos)
    call.nonblock = bool(call.flags & symbols.CONSTANTS["MSG_DONTWAIT"])


def _decode_sockopt(call: Call, sc: Syscall, d: dict[str, str]) -> None:
    a = sc.args
    _need(sc, 4 if call.op == "setsockopt" else 3)
    call.level = int_value(a[1], d)
    opt = a[2]
    if isinstance(opt, ExprWord):
        call.optword = opt.name
        if opt.name in symbols.UNSUPPORTED_SOCKOPTS:
            raise DrillError(f"socket option {opt.name} is not supported (another stack's)", opt.pos,
                             unsupported=True)
    call.optname = int_value(opt, d)
    if call.op == "setsockopt":
        v = a[3]
        if isinstance(v, ExprStruct) and v.get("onoff") is not None:
            linger = v.get("linger")
            onoff = v.get("onoff") or v
            call.value = (int_value(onoff, d), int_value(linger, d) if linger is not None else 0)
        else:
            call.value = int_value(v, d)


def _polls(e: Expr, d: dict[str, str]) -> tuple[tuple[int, int], ...]:
    items = e.items if isinstance(e, ExprList) else (e,)
    out = []
    for it in items:
        if not isinstance(it, ExprStruct) or it.get("fd") is None or it.get("events") is None:
            raise DrillError("expected {fd=N, events=...}", it.pos)
        out.append((int_value(it.get("fd") or it, d), int_value(it.get("events") or it, d)))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------------------------


def describe_result(r: Result) -> str:
    """``= 4``, ``= -1 ECONNRESET``, with a getsockopt value."""
    text = f"= {r.ret}"
    if r.ret == -1 and r.err:
        text += f" {symbols.errno_name(r.err)}"
    if r.value is not None:
        text += f" (value {list(r.value) if isinstance(r.value, tuple) else r.value})"
    if r.revents:
        text += f" (revents {', '.join(hex(x) for x in r.revents)})"
    return text


def check_result(sc: Syscall, call: Call, r: Result, fds: FdMap, defines: dict[str, str]) -> str | None:
    """None when the result is what the line expects, else what differs. A call that returns a
    file descriptor binds the script's name to it."""
    want_err = sc.errno
    if want_err is not None and symbols.lookup(want_err) is None and want_err not in symbols.ERRNO:
        raise DrillError(f"unknown errno {want_err}", sc.pos, unsupported=True)
    expect_fd = call.op in ("socket", "accept") and not (isinstance(sc.result, ExprNeg))
    if expect_fd and r.ret >= 0:
        fds.bind(int_value(sc.result, defines), r.ret)
    elif not isinstance(sc.result, ExprEllipsis):
        want = int_value(sc.result, defines)
        if r.ret != want:
            return f"returned {r.ret}{_err_text(r)}, expected {want}" + (f" {want_err}" if want_err else "")
    if r.ret == -1 or want_err is not None:
        got = symbols.errno_name(r.err) if r.err else "no error"
        if want_err is None and r.err:
            return f"failed with {got}, expected success"
        if want_err is not None and symbols.ERRNO.get(want_err) != r.err:
            return f"errno {got}, expected {want_err}"
    if call.op == "getsockopt" and len(sc.args) > 3:
        return _check_value(sc.args[3], r, defines)
    if call.op == "poll" and sc.args:
        return _check_revents(sc.args[0], r, defines)
    return None


def _err_text(r: Result) -> str:
    return f" {symbols.errno_name(r.err)}" if r.ret == -1 and r.err else ""


def _check_value(e: Expr, r: Result, defines: dict[str, str]) -> str | None:
    if isinstance(e, ExprEllipsis):
        return None
    if isinstance(e, ExprStruct):
        on, linger = e.get("onoff"), e.get("linger")
        want: OptValue = (int_value(on, defines) if on is not None else 0,
                          int_value(linger, defines) if linger is not None else 0)
    else:
        want = int_value(e, defines)
    if r.value != want:
        shown = list(want) if isinstance(want, tuple) else want
        got = list(r.value) if isinstance(r.value, tuple) else r.value
        return f"option value {got}, expected {shown}"
    return None


def _check_revents(e: Expr, r: Result, defines: dict[str, str]) -> str | None:
    items = e.items if isinstance(e, ExprList) else (e,)
    for i, it in enumerate(items):
        if isinstance(it, ExprStruct) and (rev := it.get("revents")) is not None and i < len(r.revents):
            want = int_value(rev, defines)
            if r.revents[i] != want:
                return f"revents of fd entry {i} {r.revents[i]:#x}, expected {want:#x}"
    return None


class NonBlocking(Protocol):
    """A backend's socket as ``fcntl`` sees it: only its O_NONBLOCK flag."""

    nonblock: bool


def fcntl(sock: NonBlocking, c: Call) -> Result:
    """``fcntl(fd, F_GETFL)`` and ``fcntl(fd, F_SETFL, flags)``, the same on every backend (each
    keeps the O_NONBLOCK flag on its socket and honours it in its own calls); any other command
    makes the script UNSUPPORTED."""
    if c.n == symbols.F_GETFL:
        return Result(symbols.O_RDWR | (symbols.O_NONBLOCK if sock.nonblock else 0))
    if c.n == symbols.F_SETFL:
        sock.nonblock = bool(c.flags & symbols.O_NONBLOCK)
        return Result(0)
    raise DrillError(f"fcntl command {c.n} is not supported (F_GETFL, F_SETFL)", c.pos, unsupported=True)
