"""Blocking, socket-like access to a synack :class:`~synack.core.host.Host`, mirroring the standard
library's :mod:`socket` (on Linux) call for call, option for option and errno for errno.

A *stack* is whatever drives the host — the TUN driver (:class:`synack.tun.TunStack`, real time)
or the simulator's adapter (virtual time). It offers ``host``, ``now()``, ``flush()`` and
``wait_until(predicate, timeout)``; every blocking call here is a ``wait_until``, so a blocked
``recv`` advances virtual time on the simulator and real time over TUN::

    from synack.sockets import create_connection
    with create_connection(stack, ("10.77.0.1", 8080), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        reply = s.recv(65536)

Behaviour follows Linux where the standard library leaves it to the kernel (checked against it):

* ``send`` on a socket that never connected, or on a listening one, raises ``BrokenPipeError``
  (EPIPE); ``recv`` there raises ``OSError(ENOTCONN)``; ``accept`` on a socket that is not
  listening raises ``OSError(EINVAL)``.
* An error from the peer (RST, refused, timed out) is reported *once*, by the first call that
  notices it (``send``, ``recv``, ``connect``, or ``getsockopt(SO_ERROR)``); afterwards ``send``
  raises ``BrokenPipeError`` and ``recv`` returns ``b""``.
* ``close()`` with unread data resets the connection (RST); with ``SO_LINGER`` (1, 0) it always
  aborts with RST and skips TIME-WAIT; otherwise queued data is delivered before the FIN.
  ``SO_LINGER`` (1, t>0) makes ``close`` wait up to t seconds for the FIN to be acknowledged.
* Deviations: ``SO_SNDBUF``/``SO_RCVBUF`` are taken as given (Linux doubles them for its
  bookkeeping; synack's buffers have none), with a floor of 1024 octets; names are not resolved
  (IP literals, ``""`` meaning any address, and on the simulator the names of its hosts).

Drop-in for the standard library:

* ``makefile()`` has the standard semantics (the socket really closes once its files are closed
  too), so :mod:`http.client` works — :func:`http_connection`, and for :mod:`urllib`
  :func:`build_opener` — as do ``socketserver`` handlers (:func:`serve` puts a ``socketserver``
  server class on a synack socket).
* ``fileno()`` is a real file descriptor — one end of a Unix socket pair, made on first use —
  that is readable and writable exactly when the socket is, so ``select``, ``selectors`` and
  ``socketserver.serve_forever`` work. It is kept in step after every call on the stack's
  sockets and after every step of the network: on the simulator by the network's conductor, over
  TUN by a helper thread waiting on the stack (made with the first descriptor).
* Threads: every call holds the stack's lock (``stack.lock``, a re-entrant lock the stack lets
  go of while it sleeps; a :class:`~synack.tun.TunStack` has one), so any number of threads may
  use one stack. On the simulator the lock is the network's :class:`~synack.aio.Conductor`, and
  virtual time moves only when every thread of the process is blocked — in a synack call,
  ``select``, a lock, a join — so a client and a server written the ordinary way, each in its
  thread, run in virtual time. (Where nothing but ``select`` on synack descriptors waits, nothing
  moves the clock: one thread must be in a synack call, or use :mod:`synack.aio`.)
"""

from __future__ import annotations

import contextlib
import errno
import functools
import http.client
import io
import ipaddress
import os
import selectors
import socket as _std
import struct
import threading
import urllib.request
import weakref
from collections.abc import Callable
from socket import (
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    MSG_DONTWAIT,
    MSG_NOSIGNAL,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SO_ERROR,
    SO_KEEPALIVE,
    SO_LINGER,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_SNDBUF,
    SO_TYPE,
    SOCK_STREAM,
    SOL_SOCKET,
    TCP_KEEPCNT,
    TCP_KEEPIDLE,
    TCP_KEEPINTVL,
    TCP_NODELAY,
)
from types import TracebackType
from typing import Any, Concatenate, Final, ParamSpec, Protocol, TypeVar

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
)
from synack.core.host import AddressInUse, AddressNotAvailable, Host, Listener, Reservation
from synack.core.records import State
from synack.sim import SimStack

__all__ = [
    "AF_INET",
    "AF_INET6",
    "IPPROTO_TCP",
    "SHUT_RD",
    "SHUT_RDWR",
    "SHUT_WR",
    "SOCK_STREAM",
    "SOL_SOCKET",
    "SO_ERROR",
    "SO_KEEPALIVE",
    "SO_LINGER",
    "SO_RCVBUF",
    "SO_REUSEADDR",
    "SO_SNDBUF",
    "TCP_KEEPCNT",
    "TCP_KEEPIDLE",
    "TCP_KEEPINTVL",
    "TCP_NODELAY",
    "HTTPHandler",
    "Socket",
    "Stack",
    "build_opener",
    "create_connection",
    "create_server",
    "http_connection",
    "serve",
    "socket",
    "to_oserror",
]

Address = tuple[Any, ...]

_ALLOWED_FLAGS: Final = MSG_DONTWAIT | MSG_NOSIGNAL
_CONNECTING: Final = frozenset((State.SYN_SENT, State.SYN_RECEIVED))
_CAN_SEND: Final = frozenset((State.ESTABLISHED, State.CLOSE_WAIT))
_SENT_FIN_DONE: Final = frozenset((State.FIN_WAIT_2, State.TIME_WAIT, State.CLOSED))
_MAX_KEEPIDLE: Final = 32767  # Linux MAX_TCP_KEEPIDLE / MAX_TCP_KEEPINTVL
_MAX_KEEPCNT: Final = 127  # Linux MAX_TCP_KEEPCNT
_MIN_BUF: Final = 1024
_KEEPALIVE_OPTS: Final = frozenset(((SOL_SOCKET, SO_KEEPALIVE), (IPPROTO_TCP, TCP_KEEPIDLE),
                                    (IPPROTO_TCP, TCP_KEEPINTVL), (IPPROTO_TCP, TCP_KEEPCNT)))
_TIMED_OUT: Final = -1  # connect() sentinel: the socket timeout expired


class Stack(Protocol):
    """What the socket layer needs from a driver (the TUN stack or the simulator's adapter).

    ``wait_until`` runs the network until ``predicate()`` is true (True) or ``timeout`` seconds
    of the driver's time have passed (False); ``None`` means no limit — a driver that can tell
    nothing will ever happen again (a simulator with no events left) returns False then.
    """

    @property
    def host(self) -> Host: ...

    def now(self) -> float: ...

    def flush(self) -> None: ...

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool: ...


def _err(code: int, detail: str | None = None) -> OSError:
    msg = os.strerror(code)
    return OSError(code, msg if detail is None else f"{msg} ({detail})")


# Each error of the core and the errno of the standard library's socket (order: most specific first).
_ERRNO: tuple[tuple[type[TcpError], int], ...] = (
    (ConnectionRefused, errno.ECONNREFUSED),
    (ConnectionReset, errno.ECONNRESET),
    (ConnectionTimedOut, errno.ETIMEDOUT),
    (ConnectionAborted, errno.ECONNABORTED),
    (AddressInUse, errno.EADDRINUSE),
    (AddressNotAvailable, errno.EADDRNOTAVAIL),
    (ConnectionClosing, errno.EPIPE),
    (NoConnection, errno.ENOTCONN),
    (ConnectionExists, errno.EISCONN),
    (InsufficientResources, errno.ENOBUFS),
)


def to_oserror(exc: TcpError) -> OSError:
    """The standard exception (with the usual errno) for an error of the core. An error that
    names its own errno (the core's ``Unreachable``, from an ICMP error) keeps it."""
    own = getattr(exc, "errno", None)
    if isinstance(own, int) and own:
        return _err(own)
    for kind, code in _ERRNO:
        if isinstance(exc, kind):
            return _err(code)
    if isinstance(exc, RemoteError):
        return _err(errno.EPROTO, str(exc))
    return _err(errno.EINVAL, str(exc))


def _send_ready(conn: Connection) -> bool:
    """send() can go on: there is room, or the connection left the states that accept data."""
    st = conn.state
    if st in _CAN_SEND:
        return conn.send_space > 0
    return st not in _CONNECTING


def _timeout_error() -> TimeoutError:
    return TimeoutError("timed out")


def _would_block() -> BlockingIOError:
    return BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))


# ---------------------------------------------------------------------------------------------
# Threads and file descriptors
# ---------------------------------------------------------------------------------------------

_READ: Final = selectors.EVENT_READ
_WRITE: Final = selectors.EVENT_WRITE


def _drain(sock: _std.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        while sock.recv(65536):
            pass


def _fill(sock: _std.socket) -> None:
    chunk = bytes(65536)
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.send(chunk)


class _Mirror:
    """A socket's real file descriptor: one end (``user``) of a Unix socket pair that is readable
    and writable exactly when the synack socket is. Readable: the other end wrote a byte to it;
    not writable: its own send buffer (shrunk to the kernel's minimum) is full."""

    __slots__ = ("inner", "readable", "user", "writable")

    def __init__(self) -> None:
        self.user, self.inner = _std.socketpair(_std.AF_UNIX, _std.SOCK_STREAM)
        for end in (self.user, self.inner):
            end.setblocking(False)
        self.user.setsockopt(SOL_SOCKET, SO_SNDBUF, 1)
        self.readable = False
        self.writable = True

    def show(self, mask: int) -> None:
        r, w = bool(mask & _READ), bool(mask & _WRITE)
        if r != self.readable:
            if r:
                self.inner.send(b"r")
            else:
                _drain(self.user)
            self.readable = r
        if w != self.writable:
            if w:
                _drain(self.inner)
            else:
                _fill(self.user)
            self.writable = w

    def close(self) -> None:
        self.user.close()
        self.inner.close()


class _Shared:
    """A stack as sockets use it from any number of threads: each call under the stack's lock
    (:meth:`hold`; none: one thread only), and the real descriptors of its sockets kept in step
    by a helper thread that waits on the stack and looks after every step (:meth:`watch`)."""

    def __init__(self, stack: Any) -> None:
        self.raw = stack
        self.mirrors: weakref.WeakSet[Socket] = weakref.WeakSet()
        self._pump: threading.Thread | None = None

    @property
    def host(self) -> Host:
        return self.raw.host  # type: ignore[no-any-return]

    def now(self) -> float:
        return self.raw.now()  # type: ignore[no-any-return]

    def flush(self) -> None:
        self.raw.flush()

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        return self.raw.wait_until(predicate, timeout)  # type: ignore[no-any-return]

    def hold(self) -> contextlib.AbstractContextManager[Any]:
        lock = getattr(self.raw, "lock", None)
        return lock if lock is not None else contextlib.nullcontext()

    def sync(self) -> None:
        for sock in list(self.mirrors):
            sock._show()

    def watch(self, sock: Socket) -> None:
        self.mirrors.add(sock)
        if self._pump is None or not self._pump.is_alive():
            self._pump = threading.Thread(target=self._run_pump, name="synack-fds", daemon=True)
            self._pump.start()

    def _run_pump(self) -> None:
        """Wait on the stack for ever (until no descriptor is left or the stack closes); the
        stack looks at the predicate after every step, which brings the descriptors up to date."""
        def step() -> bool:
            self.sync()
            return not self.mirrors or bool(getattr(self.raw, "closed", False))

        with contextlib.suppress(OSError):
            while not step():
                self.raw.wait_until(step, 1.0)


class _SimShared(_Shared):
    """A simulated host for sockets in any number of threads: the lock and the waits are the
    network's :class:`~synack.aio.Conductor`'s, which also keeps the descriptors in step."""

    def __init__(self, stack: SimStack) -> None:
        from synack.aio.conductor import Conductor

        super().__init__(stack)
        self.conductor = Conductor.of(stack.net)
        self.mirrors = _sim_mirrors(self.conductor)

    def now(self) -> float:
        return self.raw.net.now  # type: ignore[no-any-return]

    def hold(self) -> contextlib.AbstractContextManager[Any]:
        return self.conductor.hold()

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        from synack.aio.conductor import Deadlock

        net = self.raw.net
        try:
            return self.conductor.wait_until(predicate, None if timeout is None else net.now + timeout)
        except Deadlock:
            return False

    def watch(self, sock: Socket) -> None:
        self.mirrors.add(sock)


_net_mirrors: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Socket]] = weakref.WeakKeyDictionary()
_shared: weakref.WeakKeyDictionary[Any, _Shared] = weakref.WeakKeyDictionary()
_registry = threading.Lock()


def _sim_mirrors(conductor: Any) -> weakref.WeakSet[Socket]:
    """The descriptors of a network's sockets, brought up to date after each conductor step."""
    with _registry:
        found = _net_mirrors.get(conductor)
        if found is None:
            mirrors: weakref.WeakSet[Socket] = weakref.WeakSet()
            found = _net_mirrors[conductor] = mirrors
            conductor.observers.append(functools.partial(_show_all, mirrors))
        return found


def _show_all(mirrors: weakref.WeakSet[Socket]) -> None:
    for sock in list(mirrors):
        sock._show()


def _shared_for(stack: Any) -> _Shared:
    if isinstance(stack, _Shared):
        return stack
    if isinstance(stack, SimStack):
        return _SimShared(stack)
    with _registry:
        try:
            found = _shared.get(stack)
            if found is None:
                found = _shared[stack] = _Shared(stack)
            return found
        except TypeError:  # a stack that cannot be weakly referenced: its own adapter each time
            return _Shared(stack)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(method: Callable[Concatenate[Socket, _P], _R]) -> Callable[Concatenate[Socket, _P], _R]:
    """Run a socket call holding the stack's lock; afterwards bring the descriptors up to date."""
    def call(self: Socket, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        shared = self._stack
        with shared.hold():
            try:
                return method(self, *args, **kwargs)
            finally:
                if shared.mirrors:
                    shared.sync()

    call.__name__ = method.__name__
    call.__qualname__ = method.__qualname__
    call.__doc__ = method.__doc__
    return call


def _sim_address(stack: Any, host: str, family: int) -> str | None:
    """On the simulator, a host's name stands for its first address of ``family``."""
    if isinstance(stack, _Shared):
        stack = stack.raw
    if not isinstance(stack, SimStack):
        return None
    h = stack.net.hosts.get(host)
    if h is None:
        return None
    want = 6 if family == AF_INET6 else 4
    return next((a for a in h.addresses if ipaddress.ip_address(a).version == want), None)


class Socket:
    """A TCP socket on a synack stack. Create it with :func:`socket`."""

    def __init__(self, stack: Stack, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0,
                 *, _conn: Connection | None = None, _opts: dict[tuple[int, int], Any] | None = None) -> None:
        if family not in (AF_INET, AF_INET6):
            raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
        if type != SOCK_STREAM:
            raise OSError(errno.ESOCKTNOSUPPORT, "synack sockets are SOCK_STREAM only")
        if proto not in (0, IPPROTO_TCP):
            raise OSError(errno.EPROTONOSUPPORT, os.strerror(errno.EPROTONOSUPPORT))
        self._stack = _shared_for(stack)
        self.family = family
        self.type = type
        self.proto = proto
        self._timeout: float | None = _std.getdefaulttimeout()
        self._closed = False
        self._close_asked = False  # close() was called while files from makefile() were open
        self._io_refs = 0
        self._mirror: _Mirror | None = None
        self._res: Reservation | None = None
        self._lst: Listener | None = None
        self._conn: Connection | None = _conn
        self._opts: dict[tuple[int, int], Any] = dict(_opts) if _opts else {}
        self._shut_rd = False
        self._shut_wr = False
        self._reported = False  # the connection's error has been reported to the user
        self._connecting = False  # a non-blocking connect() is in progress

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def stack(self) -> Any:
        """The stack this socket runs on (as given to :func:`socket`)."""
        return self._stack.raw

    @property
    def connection(self) -> Connection | None:
        """The core connection behind this socket (for tests and tracing)."""
        return self._conn

    @property
    def listener(self) -> Listener | None:
        return self._lst

    def _check_open(self) -> None:
        if self._closed:
            raise _err(errno.EBADF)

    def _deadline(self) -> float | None:
        return None if self._timeout is None else self._stack.now() + self._timeout

    def _wait(self, pred: Callable[[], bool], deadline: float | None) -> bool:
        """Wait for ``pred``; False when the socket timeout expired (or, non-blocking, at once)."""
        if pred():
            return True
        if self._timeout == 0.0:
            return False
        if deadline is None:
            if not self._stack.wait_until(pred, None) and not pred():
                raise TimeoutError(errno.ETIMEDOUT, "deadlock: every thread is waiting and nothing is "
                                                    "scheduled (the network has nothing left to do)")
            return True
        left = deadline - self._stack.now()
        return self._stack.wait_until(pred, max(left, 0.0))

    def _pending_error(self) -> OSError | None:
        """The connection's error, once: the first caller to see it gets it."""
        conn = self._conn
        if conn is None or self._reported or conn.state is not State.CLOSED or conn.error is None:
            return None
        self._reported = True
        if isinstance(conn.error, ConnectionAborted):
            return None  # our own abort: nothing to tell
        return to_oserror(conn.error)

    def _family_of(self, addr: str) -> int:
        return AF_INET6 if ":" in addr else AF_INET

    def _parse(self, address: Any, what: str, *, bind: bool = False) -> tuple[str, int]:
        fam = self.family
        if not isinstance(address, tuple):
            name = "AF_INET" if fam == AF_INET else "AF_INET6"
            raise TypeError(f"{what}(): {name} address must be tuple, not {type(address).__name__}")
        if fam == AF_INET and len(address) != 2:
            raise TypeError("AF_INET address must be a pair (host, port)")
        if fam == AF_INET6 and not 2 <= len(address) <= 4:
            raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
        host, port = address[0], address[1]
        if isinstance(host, (bytes, bytearray)):
            host = bytes(host).decode("ascii")
        if not isinstance(host, str):
            raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
        if not isinstance(port, int) or isinstance(port, bool):
            raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
        if not 0 <= port <= 65535:
            raise OverflowError(f"{what}(): port must be 0-65535.")
        if host == "":
            return ("" if bind else ("0.0.0.0" if fam == AF_INET else "::")), port
        host = _sim_address(self._stack, host, fam) or host
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            raise _std.gaierror(_std.EAI_NONAME, "Name or service not known (synack sockets take IP "
                                                 "literals, and on the simulator its hosts' names)") from None
        if (ip.version == 4) != (fam == AF_INET):
            raise _std.gaierror(_std.EAI_FAMILY, "Address family for hostname not supported")
        text = str(ip)
        if bind and ip.is_unspecified:
            text = ""
        return text, port

    def _name(self, addr: str, port: int) -> Address:
        fam = self._family_of(addr) if addr else self.family
        if fam == AF_INET6:
            return (addr or "::", port, 0, 0)
        return (addr or "0.0.0.0", port)

    def _opt(self, level: int, name: int, default: Any) -> Any:
        return self._opts.get((level, name), default)

    def _config(self) -> Config:
        base = self._stack.host.config
        changes: dict[str, Any] = {}
        for (level, name), value in self._opts.items():
            if (level, name) == (SOL_SOCKET, SO_SNDBUF):
                changes["snd_buf"] = value
            elif (level, name) == (SOL_SOCKET, SO_RCVBUF):
                changes["rcv_buf"] = value
            elif (level, name) == (SOL_SOCKET, SO_KEEPALIVE):
                changes["keepalive"] = bool(value)
            elif (level, name) == (IPPROTO_TCP, TCP_KEEPIDLE):
                changes["keepidle"] = float(value)
            elif (level, name) == (IPPROTO_TCP, TCP_KEEPINTVL):
                changes["keepintvl"] = float(value)
            elif (level, name) == (IPPROTO_TCP, TCP_KEEPCNT):
                changes["keepcnt"] = int(value)
            elif (level, name) == (IPPROTO_TCP, TCP_NODELAY):
                changes["nodelay"] = bool(value)
        return base.with_(**changes) if changes else base

    @staticmethod
    def _check_flags(flags: int) -> bool:
        """True when the call must not block (MSG_DONTWAIT)."""
        if flags & ~_ALLOWED_FLAGS:
            raise OSError(errno.EOPNOTSUPP, "only MSG_DONTWAIT and MSG_NOSIGNAL are supported")
        return bool(flags & MSG_DONTWAIT)

    # -- timeouts ------------------------------------------------------------------------------

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    # -- addresses -----------------------------------------------------------------------------

    def fileno(self) -> int:
        """A real file descriptor that is readable/writable exactly when this socket is (for
        ``select``, ``selectors``, ``socketserver``); made on first use. -1 once closed."""
        if self._closed:
            return -1
        if self._mirror is None:
            with self._stack.hold():
                self._mirror = _Mirror()
                self._stack.watch(self)
                self._show()
        return self._mirror.user.fileno()

    @_locked
    def poll(self) -> int:
        """What ``select`` would say now: ``selectors.EVENT_READ`` when ``recv``/``accept``
        would not block (data, end of stream, an error, a connection to accept), ``EVENT_WRITE``
        when ``send`` would not (room to send, an error, or a connect that has finished)."""
        return self._readiness()

    def _readiness(self) -> int:
        if self._closed:
            return 0
        lst = self._lst
        if lst is not None:
            return _READ if lst.pending or lst.closed else 0
        conn = self._conn
        if conn is None:
            return _READ | _WRITE  # as Linux: an unconnected socket polls HUP
        st = conn.state
        if st in _CONNECTING:
            return 0
        mask = 0
        if (conn.readable or conn.at_eof or self._shut_rd or st is State.CLOSED
                or st in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT)):
            mask |= _READ
        if st not in _CAN_SEND or conn.send_space > 0 or self._shut_wr:
            mask |= _WRITE
        return mask

    def _show(self) -> None:
        """Bring the real descriptor up to date (the stack's lock held)."""
        if self._mirror is not None and not self._closed:
            self._mirror.show(self._readiness())

    def makefile(self, mode: str = "r", buffering: int | None = None, *, encoding: str | None = None,
                 errors: str | None = None, newline: str | None = None) -> Any:
        """A file object reading from and/or writing to the socket, as ``socket.makefile`` —
        the same modes, buffering and text layers; the socket closes for real only when it and
        every such file are closed."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        raw = _std.SocketIO(self, ("r" if reading else "") + ("w" if writing else ""))  # type: ignore[arg-type]
        self._io_refs += 1
        size = io.DEFAULT_BUFFER_SIZE if buffering is None or buffering < 0 else buffering
        if size == 0:
            if "b" not in mode:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffer: io.BufferedIOBase
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, size)
        elif reading:
            buffer = io.BufferedReader(raw, size)
        else:
            buffer = io.BufferedWriter(raw, size)
        if "b" in mode:
            return buffer
        text = io.TextIOWrapper(buffer, io.text_encoding(encoding), errors, newline)  # type: ignore[type-var]
        text.mode = mode  # type: ignore[misc]
        return text

    def _decref_socketios(self) -> None:
        """A file of :meth:`makefile` was closed (called by ``socket.SocketIO``)."""
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._close_asked and self._io_refs == 0:
            self.close()

    def _release_connection(self) -> None:
        """Give the connection up to someone else (an asyncio transport): the socket is closed,
        the connection is not."""
        self._conn = None
        self._io_refs = 0
        self.close()

    @_locked
    def getsockname(self) -> Address:
        self._check_open()
        if self._conn is not None:
            return self._name(self._conn.local_addr, self._conn.local_port)
        if self._lst is not None:
            return self._name(self._lst.local_addr, self._lst.local_port)
        if self._res is not None:
            return self._name(self._res.local_addr, self._res.local_port)
        return self._name("", 0)

    @_locked
    def getpeername(self) -> Address:
        self._check_open()
        conn = self._conn
        if conn is None or conn.state is State.CLOSED or conn.state in _CONNECTING:
            raise _err(errno.ENOTCONN)
        return self._name(conn.remote_addr, conn.remote_port)

    # -- bind / listen / accept ----------------------------------------------------------------

    @_locked
    def bind(self, address: Address) -> None:
        self._check_open()
        addr, port = self._parse(address, "bind", bind=True)
        if self._res is not None or self._lst is not None or self._conn is not None:
            raise _err(errno.EINVAL)
        try:
            reuse = bool(self._opt(SOL_SOCKET, SO_REUSEADDR, 0))
            self._res = self._stack.host.bind(addr, port, reuseaddr=reuse)
        except TcpError as exc:
            raise to_oserror(exc) from None

    @_locked
    def listen(self, backlog: int | None = None) -> None:
        self._check_open()
        if backlog is None:
            backlog = min(_std.SOMAXCONN, 128)
        backlog = max(backlog, 0)
        if self._conn is not None:
            raise _err(errno.EINVAL)
        if self._lst is not None:
            self._lst.backlog = max(backlog, 1)
            return
        host = self._stack.host
        reuse = bool(self._opt(SOL_SOCKET, SO_REUSEADDR, 0))
        try:
            if self._res is None:
                self._res = host.bind("", 0, reuseaddr=reuse)
            res = self._res
            self._lst = host.listen(res.local_port, res.local_addr, backlog=max(backlog, 1),
                                    config=self._config(), reservation=res)
        except TcpError as exc:
            raise to_oserror(exc) from None
        self._res = None

    @_locked
    def accept(self) -> tuple[Socket, Address]:
        self._check_open()
        lst = self._lst
        if lst is None or lst.closed:
            raise _err(errno.EINVAL)
        if not self._wait(lambda: lst.pending > 0 or lst.closed, self._deadline()):
            raise _would_block() if self._timeout == 0.0 else _timeout_error()
        if lst.closed:
            raise _err(errno.EINVAL)
        conn = lst.accept()
        assert conn is not None
        fam = self._family_of(conn.local_addr)
        child = Socket(self._stack, fam, SOCK_STREAM, self.proto, _conn=conn, _opts=self._opts)
        return child, child._name(conn.remote_addr, conn.remote_port)

    # -- connect -------------------------------------------------------------------------------

    def _connect(self, address: Address) -> int:
        """connect() as an errno (0 on success, _TIMED_OUT when the socket timeout expired)."""
        if self._closed:
            return errno.EBADF
        addr, port = self._parse(address, "connect")
        if self._lst is not None:
            return errno.EISCONN
        conn = self._conn
        if conn is not None:
            if conn.state in _CONNECTING:
                return errno.EALREADY
            if conn.state is State.CLOSED:
                err = self._pending_error()
                if err is not None:
                    self._connecting = False
                    return err.errno or errno.EINVAL
                if self._connecting or conn.segs_in == 0 or conn.error is not None:
                    self._conn = None  # a failed attempt: Linux lets the socket try again
                    self._connecting = False
                    self._reported = False
                else:
                    return errno.EISCONN
            elif self._connecting:
                self._connecting = False
                return 0
            else:
                return errno.EISCONN
        stack = self._stack
        try:
            conn = stack.host.connect(addr, port, stack.now(), config=self._config(),
                                      reservation=self._res,
                                      reuseaddr=bool(self._opt(SOL_SOCKET, SO_REUSEADDR, 0)))
        except TcpError as exc:
            return to_oserror(exc).errno or errno.EINVAL
        except ValueError:
            return errno.EINVAL
        self._res = None
        self._conn = conn
        self._reported = False
        stack.flush()
        if self._timeout == 0.0:
            self._connecting = True
            return errno.EINPROGRESS
        if not self._wait(lambda: conn.state not in _CONNECTING, self._deadline()):
            conn.abort(stack.now(), why="connect() timed out")
            self._reported = True
            stack.flush()
            return _TIMED_OUT
        if conn.state is State.CLOSED:
            err = self._pending_error()
            return err.errno if err is not None and err.errno else errno.ECONNABORTED
        return 0

    @_locked
    def connect(self, address: Address) -> None:
        code = self._connect(address)
        if code == _TIMED_OUT:
            raise _timeout_error()
        if code:
            raise _err(code)

    @_locked
    def connect_ex(self, address: Address) -> int:
        code = self._connect(address)
        return errno.EWOULDBLOCK if code == _TIMED_OUT else code

    # -- data ----------------------------------------------------------------------------------

    def _send_conn(self) -> Connection:
        """The connection to send on, or the error send() must raise."""
        self._check_open()
        conn = self._conn
        if conn is None:
            raise _err(errno.EPIPE)
        if self._shut_wr:
            raise _err(errno.EPIPE)
        err = self._pending_error()
        if err is not None:
            raise err
        return conn

    @_locked
    def send(self, data: Any, flags: int = 0) -> int:
        dontwait = self._check_flags(flags)
        conn = self._send_conn()
        view = memoryview(data).cast("B")
        if not len(view):
            return 0
        stack = self._stack
        deadline = self._deadline()
        while True:
            st = conn.state
            if st in _CAN_SEND:
                space = conn.send_space
                if space > 0:
                    chunk = view[:space].tobytes() if len(view) > space else view.tobytes()
                    try:
                        n = conn.send(chunk, stack.now())
                    except TcpError as exc:
                        raise to_oserror(exc) from None
                    stack.flush()
                    return n
            elif st is State.CLOSED:
                err = self._pending_error()
                raise err if err is not None else _err(errno.EPIPE)
            elif st not in _CONNECTING:
                raise _err(errno.EPIPE)
            if dontwait or self._timeout == 0.0:
                raise _would_block()
            if not self._wait(lambda: _send_ready(conn), deadline):
                raise _timeout_error()

    @_locked
    def sendall(self, data: Any, flags: int = 0) -> None:
        dontwait = self._check_flags(flags)
        conn = self._send_conn()
        view = memoryview(data).cast("B")
        total = len(view)
        off = 0
        stack = self._stack
        deadline = self._deadline()
        nonblocking = dontwait or self._timeout == 0.0
        while off < total:
            st = conn.state
            if st in _CAN_SEND:
                space = conn.send_space
                if space > 0:
                    end = min(off + space, total)
                    try:
                        n = conn.send(view[off:end].tobytes(), stack.now())
                    except TcpError as exc:
                        raise to_oserror(exc) from None
                    off += n
                    stack.flush()
                    continue
            elif st is State.CLOSED:
                err = self._pending_error()
                raise err if err is not None else _err(errno.EPIPE)
            elif st not in _CONNECTING:
                raise _err(errno.EPIPE)
            if nonblocking:
                raise _would_block()
            if not self._wait(lambda: _send_ready(conn), deadline):
                raise _timeout_error()

    @_locked
    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        dontwait = self._check_flags(flags)
        self._check_open()
        conn = self._conn
        if conn is None:
            raise _err(errno.ENOTCONN)
        stack = self._stack
        deadline = self._deadline()
        while True:
            if conn.readable:
                got = conn.receive(bufsize, stack.now())
                data = got if got is not None else b""
                stack.flush()  # the window may have opened: tell the peer
                return data
            if bufsize == 0 or self._shut_rd:
                return b""
            err = self._pending_error()
            if err is not None:
                raise err
            try:
                more = conn.receive(bufsize, stack.now())
            except (RemoteError, ConnectionClosing):
                return b""  # the error was reported already
            except NoConnection:
                if self._reported or conn.error is not None:
                    return b""
                raise _err(errno.ENOTCONN) from None
            if more is not None:
                return more
            if dontwait or self._timeout == 0.0:
                raise _would_block()
            if not self._wait(lambda: conn.readable > 0 or conn.at_eof or conn.state is State.CLOSED
                              or conn.state in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT), deadline):
                raise _timeout_error()

    @_locked
    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        view = memoryview(buffer).cast("B")
        if nbytes == 0:
            nbytes = len(view)
        elif nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        data = self.recv(nbytes, flags)
        view[:len(data)] = data
        return len(data)

    # -- shutdown / close ----------------------------------------------------------------------

    @_locked
    def shutdown(self, how: int) -> None:
        self._check_open()
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise _err(errno.EINVAL)
        stack = self._stack
        if self._lst is not None:
            if how in (SHUT_RD, SHUT_RDWR):
                self._lst.close(stack.now())  # Linux: stop listening; accept() fails with EINVAL
                stack.flush()
            return
        conn = self._conn
        if conn is None or conn.state is State.CLOSED:
            raise _err(errno.ENOTCONN)
        if how in (SHUT_RD, SHUT_RDWR):
            self._shut_rd = True
        if how in (SHUT_WR, SHUT_RDWR) and not self._shut_wr:
            self._shut_wr = True
            with contextlib.suppress(LocalError):
                conn.close(stack.now())
            stack.flush()

    @_locked
    def close(self) -> None:
        """Close the socket (with files from :meth:`makefile` still open: once they close)."""
        if self._closed:
            return
        if self._io_refs > 0:
            self._close_asked = True
            return
        self._closed = True
        if self._mirror is not None:
            self._stack.mirrors.discard(self)
            self._mirror.close()
            self._mirror = None
        stack = self._stack
        now = stack.now()
        if self._res is not None:
            self._res.release()
            self._res = None
        if self._lst is not None:
            self._lst.close(now)
            stack.flush()
            return
        conn = self._conn
        if conn is None or conn.state is State.CLOSED:
            return
        on, secs = self._opt(SOL_SOCKET, SO_LINGER, (0, 0))
        if on and secs == 0:
            if conn.state is not State.TIME_WAIT:
                conn.abort(now, why="close() with SO_LINGER 0")
            stack.flush()
            return
        with contextlib.suppress(LocalError):
            conn.close(now, discard_input=True)
        stack.flush()
        if on and secs > 0:
            stack.wait_until(lambda: conn.state in _SENT_FIN_DONE, float(secs))

    def detach(self) -> int:
        raise OSError(errno.EOPNOTSUPP, "a synack socket has no file descriptor")

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- options -------------------------------------------------------------------------------

    def _int_value(self, value: Any) -> int:
        if isinstance(value, int):
            return value
        raw = bytes(value)
        if len(raw) < 4:
            raise _err(errno.EINVAL)
        return int(struct.unpack("i", raw[:4])[0])

    @_locked
    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        self._check_open()
        key = (level, optname)
        stack = self._stack
        conn = self._conn
        if value is None:
            raise _err(errno.EINVAL)
        if key == (SOL_SOCKET, SO_LINGER):
            if isinstance(value, int):
                raise _err(errno.EINVAL)
            raw = bytes(value)
            if len(raw) < 8:
                raise _err(errno.EINVAL)
            on, secs = struct.unpack("ii", raw[:8])
            self._opts[key] = (1 if on else 0, max(secs, 0))
            return
        v = self._int_value(value)
        if key == (SOL_SOCKET, SO_REUSEADDR):
            self._opts[key] = 1 if v else 0
            return
        if key in ((SOL_SOCKET, SO_SNDBUF), (SOL_SOCKET, SO_RCVBUF)):
            v = max(v, _MIN_BUF)
            self._opts[key] = v
            field = "snd_buf" if optname == SO_SNDBUF else "rcv_buf"
            if conn is not None:
                conn.config = conn.config.with_(**{field: v})
                stack.flush()
            elif self._lst is not None:
                self._lst.config = self._config()
            return
        if key in _KEEPALIVE_OPTS:
            if key == (SOL_SOCKET, SO_KEEPALIVE):
                v = 1 if v else 0
            elif optname == TCP_KEEPCNT:
                if not 1 <= v <= _MAX_KEEPCNT:
                    raise _err(errno.EINVAL)
            elif not 1 <= v <= _MAX_KEEPIDLE:
                raise _err(errno.EINVAL)
            self._opts[key] = v
            if conn is not None and conn.state is not State.CLOSED:
                cfg = self._config()
                conn.set_keepalive(cfg.keepalive, stack.now(), idle=cfg.keepidle, interval=cfg.keepintvl,
                                   count=cfg.keepcnt)
                stack.flush()
            elif self._lst is not None:
                self._lst.config = self._config()
            return
        if key == (IPPROTO_TCP, TCP_NODELAY):
            self._opts[key] = 1 if v else 0
            if conn is not None:
                conn.set_nodelay(bool(v))
                stack.flush()
            elif self._lst is not None:
                self._lst.config = self._config()
            return
        raise _err(errno.ENOPROTOOPT)

    @_locked
    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        self._check_open()
        key = (level, optname)
        cfg = self._conn.config if self._conn is not None else self._config()
        value: int
        if key == (SOL_SOCKET, SO_LINGER):
            on, secs = self._opt(level, optname, (0, 0))
            if buflen is not None:
                return struct.pack("ii", on, secs)[:buflen]
            return int(on)
        if key == (SOL_SOCKET, SO_ERROR):
            err = self._pending_error()
            value = (err.errno or 0) if err is not None else 0
        elif key == (SOL_SOCKET, SO_TYPE):
            value = SOCK_STREAM
        elif key == (SOL_SOCKET, SO_REUSEADDR):
            value = int(self._opt(level, optname, 0))
        elif key == (SOL_SOCKET, SO_SNDBUF):
            value = cfg.snd_buf
        elif key == (SOL_SOCKET, SO_RCVBUF):
            value = cfg.rcv_buf
        elif key == (SOL_SOCKET, SO_KEEPALIVE):
            value = int(cfg.keepalive)
        elif key == (IPPROTO_TCP, TCP_KEEPIDLE):
            value = int(cfg.keepidle)
        elif key == (IPPROTO_TCP, TCP_KEEPINTVL):
            value = int(cfg.keepintvl)
        elif key == (IPPROTO_TCP, TCP_KEEPCNT):
            value = int(cfg.keepcnt)
        elif key == (IPPROTO_TCP, TCP_NODELAY):
            value = int(cfg.nodelay)
        else:
            raise _err(errno.ENOPROTOOPT)
        if buflen is not None:
            return struct.pack("i", value)[:buflen]
        return value

    # -- the rest ------------------------------------------------------------------------------

    def __repr__(self) -> str:
        fam = "AF_INET6" if self.family == AF_INET6 else "AF_INET"
        if self._closed:
            return f"<synack.sockets.Socket [closed] family={fam}>"
        what = ""
        if self._conn is not None:
            c = self._conn
            what = (f" laddr={self._name(c.local_addr, c.local_port)}"
                    f" raddr={self._name(c.remote_addr, c.remote_port)} state={c.state}")
        elif self._lst is not None:
            what = f" laddr={self._name(self._lst.local_addr, self._lst.local_port)} state=LISTEN"
        elif self._res is not None:
            what = f" laddr={self._name(self._res.local_addr, self._res.local_port)}"
        return f"<synack.sockets.Socket family={fam}{what}>"


def socket(stack: Stack, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0) -> Socket:
    """A new TCP socket on ``stack`` (like ``socket.socket(family, type)``)."""
    return Socket(stack, family, type, proto)


_DEFAULT: Final = object()


def create_connection(stack: Stack, address: tuple[str, int], timeout: Any = _DEFAULT,
                      source_address: tuple[str, int] | None = None, *, all_errors: bool = False) -> Socket:
    """Connect to ``address`` (an IP literal and a port) and return the socket, like the
    standard ``socket.create_connection``. ``timeout`` defaults to ``getdefaulttimeout()``."""
    host, port = address[0], address[1]
    host = _sim_address(stack, host, AF_INET) or _sim_address(stack, host, AF_INET6) or host
    try:
        fam = AF_INET6 if ipaddress.ip_address(host).version == 6 else AF_INET
    except ValueError:
        raise _std.gaierror(_std.EAI_NONAME, "Name or service not known (synack sockets take IP "
                                             "literals, and on the simulator its hosts' names)") from None
    sock = Socket(stack, fam)
    try:
        if timeout is not _DEFAULT:
            sock.settimeout(timeout)
        if source_address is not None:
            sock.bind(source_address)
        sock.connect((host, port))
    except BaseException as exc:
        sock.close()
        if all_errors and isinstance(exc, OSError):
            raise ExceptionGroup("create_connection failed", [exc]) from None
        raise
    return sock


def create_server(stack: Stack, address: tuple[str, int], *, family: int = AF_INET,
                  backlog: int | None = None, reuse_port: bool = False,
                  dualstack_ipv6: bool = False) -> Socket:
    """A listening socket bound to ``address``, like the standard ``socket.create_server``
    (``SO_REUSEADDR`` is set, as the standard library does on POSIX). A wildcard address (``""``)
    accepts both IPv4 and IPv6, so ``dualstack_ipv6`` only checks its argument."""
    if reuse_port:
        raise ValueError("SO_REUSEPORT not supported on this platform")
    if dualstack_ipv6 and family != AF_INET6:
        raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    sock = Socket(stack, family)
    try:
        sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


# ---------------------------------------------------------------------------------------------
# The standard library's clients and servers on synack sockets
# ---------------------------------------------------------------------------------------------


def http_connection(stack: Stack, host: str, port: int | None = None, timeout: Any = _DEFAULT,
                    source_address: tuple[str, int] | None = None) -> http.client.HTTPConnection:
    """An :class:`http.client.HTTPConnection` whose socket is a synack socket on ``stack``."""
    chosen = _std.getdefaulttimeout() if timeout is _DEFAULT else timeout
    conn = http.client.HTTPConnection(host, port, chosen, source_address)
    conn._create_connection = functools.partial(create_connection, stack)  # type: ignore[attr-defined]
    return conn


class HTTPHandler(urllib.request.HTTPHandler):
    """urllib's handler for ``http://`` URLs, over synack (see :func:`build_opener`)."""

    def __init__(self, stack: Stack, debuglevel: int = 0) -> None:
        super().__init__(debuglevel)
        self._stack = stack

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        def connect(host: str, timeout: Any = _DEFAULT, **kwds: Any) -> http.client.HTTPConnection:
            return http_connection(self._stack, host, timeout=timeout, **kwds)

        return self.do_open(connect, req)


def build_opener(stack: Stack, *handlers: Any) -> urllib.request.OpenerDirector:
    """A :mod:`urllib` opener whose ``http://`` requests go over synack — and never through a
    proxy from the environment (``http_proxy``), which would be a real network address."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), HTTPHandler(stack), *handlers)


_Server = TypeVar("_Server")


def serve(stack: Stack, server_class: Callable[..., _Server], address: tuple[str, int], handler: Any,
          **kwds: Any) -> _Server:
    """A :mod:`socketserver` server (``TCPServer``, ``ThreadingTCPServer``, ``HTTPServer``, a
    subclass ...) listening on a synack socket: made without binding, its kernel socket swapped
    for a synack one, then bound and activated as the class does it::

        server = sockets.serve(stack, socketserver.ThreadingTCPServer, ("", 7), EchoHandler)
        threading.Thread(target=server.serve_forever).start()
    """
    server: Any = server_class(address, handler, bind_and_activate=False, **kwds)
    server.socket.close()
    server.socket = Socket(stack, server.address_family)
    try:
        server.server_bind()
        server.server_activate()
    except BaseException:
        server.server_close()
        raise
    return server  # type: ignore[no-any-return]
