"""asyncio streams over synack: the standard ``StreamReader``/``StreamWriter`` on a synack host.

::

    reader, writer = await synack.streams.open_connection(stack, "10.77.0.1", 8080)
    writer.write(b"GET / HTTP/1.0\\r\\n\\r\\n")
    await writer.drain()
    reply = await reader.read()

    server = await synack.streams.start_server(handle, stack, "10.77.0.2", 7)
    async with server:
        await server.serve_forever()

``open_connection`` and ``start_server`` build the same ``asyncio.StreamReaderProtocol`` the
standard library does, on a :class:`TcpTransport` instead of a kernel socket, so stream code runs
unchanged. ``create_connection`` and ``create_server`` are the protocol-level calls behind them
(the counterparts of ``loop.create_connection``/``loop.create_server``).

How the stack runs inside the loop
----------------------------------
A *pump stack* (:class:`synack.tun.TunStack`, or anything with the same five calls, see
:class:`PumpStack`) gets one :class:`StackDriver` per event loop, created on first use. The
driver is the aioquic pattern: the device fd is registered with ``loop.add_reader``; when it is
readable the driver feeds every ready packet to the host; one ``loop.call_at`` timer is re-armed
to ``host.next_deadline()`` after every flush; every user call (``write``, ``close``, reading
that opens the window) schedules one flush with ``call_soon``, so many writes in one loop
iteration cost one pass. After input, a timer or a user call, the driver hands each connection's
news (its :class:`~synack.core.connection.Event` list, drained) to its transport, then writes what the
host has to send.

Flow control, as the kernel's socket transports do it
-----------------------------------------------------
* Reading: the transport moves data from the connection's receive buffer to
  ``protocol.data_received`` as it arrives. ``pause_reading()`` stops that (the StreamReader
  calls it when its buffer passes twice its ``limit``): the connection's receive buffer then fills
  and the window it advertises closes, so the peer stops; ``resume_reading()`` drains it and the
  window opens again.
* Writing: ``write`` puts data straight into the connection's send buffer (``SO_SNDBUF``, the
  kernel's socket buffer here); what does not fit waits in the transport's own buffer —
  ``get_write_buffer_size()`` — and moves on as the peer acknowledges data. Above the high-water
  mark (64 KiB by default, ``set_write_buffer_limits``) the protocol is told ``pause_writing()``
  (``await writer.drain()`` blocks), at the low-water mark ``resume_writing()``.
* ``write_eof()`` is the half-close (our FIN after everything written); ``close()`` sends the
  FIN once the buffer is handed over and reports ``connection_lost(None)`` (unread data makes it
  a reset, as on Linux); ``abort()`` resets at once. A reset, refusal or timeout from the peer is
  ``connection_lost`` with ``ConnectionResetError``/``ConnectionRefusedError``/``TimeoutError``.

Differences from kernel sockets: addresses are IP literals (no name resolution), there is no
file descriptor (``get_extra_info("socket")`` is None; ``"connection"`` is the synack
:class:`~synack.core.connection.Connection`), and the simulator has no asyncio adapter (its clock is
virtual; use :mod:`synack.sockets` there).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import ipaddress
import os
import socket as _std
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Protocol, cast

from synack.core.connection import Config, Connection, ConnectionAborted, LocalError, TcpError
from synack.core.host import Host, Listener, Reservation
from synack.core.records import State
from synack.sim import SimStack
from synack.sockets import to_oserror

__all__ = [
    "Driver",
    "PumpStack",
    "Server",
    "SimDriver",
    "StackDriver",
    "TcpTransport",
    "adopt_connection",
    "create_connection",
    "create_server",
    "driver_for",
    "open_connection",
    "start_server",
]

_DEFAULT_LIMIT: Final = 2**16  # asyncio.streams._DEFAULT_LIMIT
_HIGH_WATER: Final = 64 * 1024  # asyncio's default write-buffer limits
_READ_CHUNK: Final = 256 * 1024
_CONNECTING: Final = frozenset((State.SYN_SENT, State.SYN_RECEIVED))
_CAN_SEND: Final = frozenset((State.ESTABLISHED, State.CLOSE_WAIT))
_LOG_LOST_WRITES: Final = 5  # asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class PumpStack(Protocol):
    """What the driver needs from a stack: the host, its clock, a file descriptor to watch, and
    three non-blocking steps (see :meth:`synack.tun.TunStack.process_readable`)."""

    closed: bool

    @property
    def host(self) -> Host: ...

    def now(self) -> float: ...

    def fileno(self) -> int: ...

    def process_readable(self) -> int: ...

    def process_timers(self) -> None: ...

    def transmit(self) -> bool: ...


def _ip(host: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise _std.gaierror(_std.EAI_NONAME, f"{what} {host!r}: synack takes IP literals only "
                                             f"(no name resolution)") from None


def _name(addr: str, port: int) -> tuple[Any, ...]:
    return (addr, port, 0, 0) if ":" in addr else (addr, port)


# ---------------------------------------------------------------------------------------------
# The drivers: one per (stack, loop)
# ---------------------------------------------------------------------------------------------


class Driver:
    """What both drivers share: the transports, pending connects, ready servers and socket
    watchers of one stack in one loop, and the hand-over of the connections' news to them.
    Subclasses decide how the stack runs (:class:`StackDriver`: a device and a timer in a real-time
    loop; :class:`SimDriver`: a host of a simulated network in synack.aio's virtual-time loop)."""

    def __init__(self, stack: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.stack = stack
        self.loop = loop
        self.closed = False
        self._transports: dict[Connection, TcpTransport] = {}
        self._connecting: dict[Connection, asyncio.Future[None]] = {}
        self._ready: dict[Server, None] = {}
        self._watchers: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._kick: asyncio.Handle | None = None
        self._in_service = False

    @property
    def host(self) -> Host:
        return cast(Host, self.stack.host)

    def now(self) -> float:
        return cast(float, self.stack.now())

    def kick(self) -> None:
        """Something changed on the user's side: flush (once) in this loop iteration."""
        if self._in_service or self._kick is not None or self.closed:
            return
        self._kick = self.loop.call_soon(self._on_kick)

    def _on_kick(self) -> None:
        self._kick = None
        self._service()

    def _service(self) -> None:
        raise NotImplementedError

    def listener_ready(self, server: Server) -> None:
        """A listener of ``server`` has connections to accept."""
        self._ready[server] = None
        self.kick()

    def wait_for(self, predicate: Callable[[], bool]) -> asyncio.Future[None]:
        """A future done once ``predicate()`` holds (looked at after every service)."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self._watchers.append((predicate, fut))
        self.kick()
        return fut

    def _settle(self) -> None:
        """Hand out news until there is none (bounded: a callback may cause more)."""
        self._in_service = True
        try:
            for _ in range(8):
                if not self._dispatch():
                    break
        finally:
            self._in_service = False

    def _dispatch(self) -> bool:
        did = False
        if self._ready:
            servers = list(self._ready)
            self._ready.clear()
            for server in servers:
                server._accept_ready()
            did = True
        if self._connecting:
            for conn, fut in list(self._connecting.items()):
                if conn.state not in _CONNECTING:
                    del self._connecting[conn]
                    did = True
                    if not fut.done():
                        _settle_connect(conn, fut)
        if self._transports:
            for conn, tr in list(self._transports.items()):
                if conn.events:
                    conn.drain_events()
                    tr._context.run(tr._on_events)
                    did = True
        if self._watchers:
            waiting = []
            for pred, fut in self._watchers:
                if fut.done():
                    continue
                if pred():
                    fut.set_result(None)
                    did = True
                else:
                    waiting.append((pred, fut))
            self._watchers = waiting
        return did

    def _adopt(self, transport: TcpTransport) -> None:
        self._transports[transport._conn] = transport
        transport._conn.drain_events()
        try:
            transport._context.run(transport._protocol.connection_made, transport)
        except BaseException as exc:
            transport._fatal_exception(exc, "connection_made() failed")
            if not isinstance(exc, Exception):
                raise
            return
        transport._context.run(transport._on_events)
        self.kick()

    def _forget(self, transport: TcpTransport) -> None:
        if self._transports.get(transport._conn) is transport:
            del self._transports[transport._conn]

    def fail_all(self, err: OSError) -> None:
        """Every transport and pending connect of this driver fails with ``err``."""
        for fut in self._connecting.values():
            if not fut.done():
                fut.set_exception(err)
        self._connecting.clear()
        for _, fut in self._watchers:
            if not fut.done():
                fut.set_exception(err)
        self._watchers.clear()
        for tr in list(self._transports.values()):
            tr._force_close(err)

    def detach(self) -> None:
        """Stop driving the stack (the loop keeps nothing of it)."""
        self.closed = True
        if self._kick is not None:
            self._kick.cancel()
            self._kick = None


def _settle_connect(conn: Connection, fut: asyncio.Future[None]) -> None:
    if conn.state is State.CLOSED:
        err = conn.error
        if err is not None and not isinstance(err, ConnectionAborted):
            fut.set_exception(to_oserror(err))
        else:
            fut.set_exception(OSError(errno.ECONNABORTED, os.strerror(errno.ECONNABORTED)))
    else:
        fut.set_result(None)


class StackDriver(Driver):
    """Runs a pump stack inside a real-time event loop (see the module documentation)."""

    def __init__(self, stack: PumpStack, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(stack, loop)
        self._fd = stack.fileno()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._writer = False
        loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        if self.stack.closed:
            self._stack_gone()
            return
        self.stack.process_readable()
        self._service()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.stack.closed:
            self._stack_gone()
            return
        self.stack.process_timers()
        self._service()

    def _on_writable(self) -> None:
        if self.stack.closed:
            self._stack_gone()
            return
        if self.stack.transmit():
            self.loop.remove_writer(self._fd)
            self._writer = False

    def _service(self) -> None:
        """Hand news to transports, servers and pending connects; write; re-arm the timer."""
        if self.closed:
            return
        if self.stack.closed:
            self._stack_gone()
            return
        self._settle()
        ok = self.stack.transmit()
        if self._dispatch():  # sending never changes what users see, but be sure
            ok = self.stack.transmit()
        if not ok and not self._writer:
            self.loop.add_writer(self._fd, self._on_writable)
            self._writer = True
        self._arm()

    def _arm(self) -> None:
        d = self.stack.host.next_deadline()
        if d == self._timer_at and (d is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = d
        if d is not None:
            delay = max(d - self.stack.now(), 0.0)
            self._timer = self.loop.call_at(self.loop.time() + delay, self._on_timer)

    def _stack_gone(self) -> None:
        """The stack was closed under us: every transport and pending connect fails."""
        self.detach()
        self.fail_all(OSError(errno.ENETDOWN, "the synack stack was closed"))

    def detach(self) -> None:
        if self.closed:
            return
        super().detach()
        if not self.loop.is_closed():
            self.loop.remove_reader(self._fd)
            if self._writer:
                self.loop.remove_writer(self._fd)
        self._writer = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if _drivers.get(self.stack) is self:
            del _drivers[self.stack]

    def __repr__(self) -> str:
        return f"<StackDriver {self.stack!r} transports={len(self._transports)}>"


class SimDriver(Driver):
    """Runs one host of a simulated network inside synack.aio's virtual-time loop. The loop's
    selector moves the network (and its clock) and asks :meth:`has_news` after every event; a
    service hands the news out and flushes what the user's calls left to send."""

    def _service(self) -> None:
        if self.closed:
            return
        self._settle()
        self.stack.flush()

    def listener_ready(self, server: Server) -> None:
        # Called while the network runs — possibly by another thread advancing the shared clock:
        # only note it; the loop's selector sees has_news() and schedules the service.
        self._ready[server] = None

    def has_news(self) -> bool:
        """Something for the user's side: a server to accept on, a connect settled, a
        connection's event, a watcher's condition."""
        if self._ready:
            return True
        for conn in self._connecting:
            if conn.state not in _CONNECTING:
                return True
        for conn in self._transports:
            if conn.events:
                return True
        return any(pred() for pred, _ in self._watchers)

    def __repr__(self) -> str:
        return f"<SimDriver {self.stack!r} transports={len(self._transports)}>"


# One driver per pump stack (keyed weakly: a stack that goes away takes its driver with it).
_drivers: weakref.WeakKeyDictionary[Any, StackDriver] = weakref.WeakKeyDictionary()


def driver_for(stack: Any, loop: asyncio.AbstractEventLoop | None = None) -> Driver:
    """The driver running ``stack`` in ``loop`` (default: the running loop), made on first use.
    A synack.aio loop supplies its own (``loop.synack_driver``: a simulated host needs the
    virtual-time loop). A driver left behind by an earlier loop that has stopped is replaced;
    one whose loop still runs in another thread is an error."""
    if loop is None:
        loop = asyncio.get_running_loop()
    own = getattr(loop, "synack_driver", None)
    if own is not None:
        return cast(Driver, own(stack))
    if isinstance(stack, SimStack):
        raise RuntimeError(f"host {stack.name!r} is on a simulated network, whose clock is virtual: it runs "
                           f"only in synack.aio's virtual-time loop — synack.aio.run(main(), net) or "
                           f"asyncio.Runner(loop_factory=synack.aio.loop_factory(net)), "
                           f"not {type(loop).__name__}")
    drv = _drivers.get(stack)
    if drv is not None and drv.loop is loop and not drv.closed:
        return drv
    if drv is not None:
        if drv.loop.is_running() and not drv.closed:
            raise RuntimeError(f"{stack!r} is driven by another event loop that is still running "
                               f"({drv.loop!r}); a stack runs in one loop at a time")
        drv.detach()
    if stack.closed:
        raise OSError(errno.ENETDOWN, "the synack stack is closed")
    drv = StackDriver(stack, loop)
    _drivers[stack] = drv
    return drv


# ---------------------------------------------------------------------------------------------
# The transport
# ---------------------------------------------------------------------------------------------


class TcpTransport(asyncio.Transport):
    """An ``asyncio.Transport`` over one synack :class:`Connection`."""

    def __init__(self, driver: Driver, conn: Connection, protocol: asyncio.BaseProtocol,
                 server: Server | None = None) -> None:
        super().__init__({
            "peername": _name(conn.remote_addr, conn.remote_port),
            "sockname": _name(conn.local_addr, conn.local_port),
            "socket": None,
            "connection": conn,
            "stack": driver.stack,
        })
        self._driver = driver
        self._loop = driver.loop
        self._conn = conn
        self._protocol = protocol
        self._server = server
        self._buf = bytearray()
        self._high = _HIGH_WATER
        self._low = _HIGH_WATER // 4
        self._writing_paused = False
        self._reading_paused = False
        self._closing = False
        self._eof_requested = False  # write_eof() called
        self._fin_queued = False  # CLOSE given to the connection
        self._eof_delivered = False
        self._lost_scheduled = False
        self._lost = False
        self._lost_writes = 0
        # Protocol callbacks run in the context the transport was made in (the server's, or the
        # connecting task's): tasks they start inherit it, e.g. which synack host they run on.
        self._context = contextvars.copy_context()

    def _check_thread(self) -> None:
        """A transport belongs to its loop's thread (as asyncio's own do, checked always)."""
        tid = getattr(self._loop, "_thread_id", None)
        if tid is not None and tid != threading.get_ident():
            raise RuntimeError(f"{self!r} was used from thread {threading.current_thread().name!r}, but its "
                               f"event loop runs in another thread: use loop.call_soon_threadsafe()")

    def __repr__(self) -> str:
        c = self._conn
        what = "closed" if self._lost else ("closing" if self._closing else c.state.value)
        return (f"<TcpTransport {c.local_addr}:{c.local_port} -> {c.remote_addr}:{c.remote_port} {what}"
                f" buffered={len(self._buf)}>")

    # -- news from the connection -------------------------------------------------------------

    def _on_events(self) -> None:
        if self._lost_scheduled:
            return
        if self._buf or self._closing or (self._eof_requested and not self._fin_queued):
            self._push()
        if not self._reading_paused and not self._closing:
            self._read()
        conn = self._conn
        if conn.state is State.CLOSED and not self._lost_scheduled:
            err = conn.error
            if err is not None and not isinstance(err, ConnectionAborted):
                self._force_close(to_oserror(err))
            elif self._buf:
                self._force_close(OSError(errno.EPIPE, os.strerror(errno.EPIPE)))
        self._maybe_resume_protocol()

    def _read(self) -> None:
        conn = self._conn
        proto = self._protocol
        now = self._driver.now()
        while conn.readable and not self._reading_paused and not self._closing:
            data = conn.receive(_READ_CHUNK, now)
            if not data:
                break
            self._driver.kick()  # the window may have opened
            try:
                if isinstance(proto, asyncio.BufferedProtocol):
                    view = memoryview(data)
                    while view:
                        buf = memoryview(proto.get_buffer(len(view))).cast("B")
                        if not len(buf):
                            raise RuntimeError("get_buffer() returned an empty buffer")
                        n = min(len(buf), len(view))
                        buf[:n] = view[:n]
                        proto.buffer_updated(n)
                        view = view[n:]
                elif isinstance(proto, asyncio.Protocol):
                    proto.data_received(data)
            except BaseException as exc:
                self._fatal_exception(exc, "data_received() failed")
                if not isinstance(exc, Exception):
                    raise
                return
        if conn.at_eof and not self._eof_delivered and not self._reading_paused and not self._closing:
            self._eof_delivered = True
            try:
                keep_open = proto.eof_received() if isinstance(
                    proto, (asyncio.Protocol, asyncio.BufferedProtocol)) else None
            except BaseException as exc:
                self._fatal_exception(exc, "eof_received() failed")
                if not isinstance(exc, Exception):
                    raise
                return
            if not keep_open:
                self.close()

    def _push(self) -> None:
        """Hand buffered data to the connection; then the FIN, once everything is handed over."""
        conn = self._conn
        now = self._driver.now()
        room = conn.send_space
        if self._buf and room > 0 and conn.state in _CAN_SEND and not self._fin_queued:
            # A copy: the core keeps no reference, but it is promised immutable bytes.
            chunk = bytes(self._buf) if len(self._buf) <= room else bytes(self._buf[:room])
            try:
                n = conn.send(chunk, now)
            except TcpError as exc:
                self._force_close(to_oserror(exc))
                return
            if n:
                del self._buf[:n]
                self._driver.kick()
        if self._buf:
            return
        if (self._eof_requested or self._closing) and not self._fin_queued:
            self._fin_queued = True
            if conn.state is not State.CLOSED:
                with contextlib.suppress(LocalError):
                    conn.close(now, discard_input=self._closing)
                self._driver.kick()
        if self._closing and not self._lost_scheduled:
            self._schedule_lost(None)

    # -- flow control -------------------------------------------------------------------------

    def _maybe_pause_protocol(self) -> None:
        if self._writing_paused or len(self._buf) <= self._high:
            return
        self._writing_paused = True
        try:
            self._protocol.pause_writing()
        except Exception as exc:
            self._loop.call_exception_handler({
                "message": "protocol.pause_writing() failed", "exception": exc,
                "transport": self, "protocol": self._protocol})

    def _maybe_resume_protocol(self) -> None:
        if not self._writing_paused or len(self._buf) > self._low:
            return
        self._writing_paused = False
        try:
            self._protocol.resume_writing()
        except Exception as exc:
            self._loop.call_exception_handler({
                "message": "protocol.resume_writing() failed", "exception": exc,
                "transport": self, "protocol": self._protocol})

    def get_write_buffer_size(self) -> int:
        """Octets written but not yet taken by the connection's send buffer."""
        return len(self._buf)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = _HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_protocol()
        self._maybe_resume_protocol()

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing

    def pause_reading(self) -> None:
        """Stop delivering data: the connection's buffer fills and its window closes."""
        if self._closing or self._reading_paused:
            return
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._closing or not self._reading_paused:
            return
        self._reading_paused = False
        self._loop.call_soon(self._resume, context=self._context)

    def _resume(self) -> None:
        if self._lost_scheduled or self._reading_paused or self._closing:
            return
        self._read()
        self._driver.kick()

    # -- writing ------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._check_thread()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof_requested:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._lost_scheduled or self._fin_queued:
            self._lost_writes += 1
            if self._lost_writes == _LOG_LOST_WRITES:
                self._loop.call_exception_handler({
                    "message": "write() on a closed synack transport", "transport": self})
            return
        if not isinstance(data, bytes):
            data = bytes(data)
        conn = self._conn
        if not self._buf and conn.state in _CAN_SEND:
            try:
                n = conn.send(data, self._driver.now())
            except TcpError as exc:
                self._force_close(to_oserror(exc))
                return
            if n < len(data):
                self._buf += data[n:]
            self._driver.kick()
        else:
            self._buf += data
            if conn.state is State.CLOSED:
                self._driver.kick()  # let the driver report the failure
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Half-close: our FIN goes after everything written; reading goes on."""
        self._check_thread()
        if self._closing or self._eof_requested:
            return
        self._eof_requested = True
        self._push()

    # -- closing ------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading, send what is buffered and then the FIN; ``connection_lost(None)`` follows."""
        self._check_thread()
        if self._closing:
            return
        self._closing = True
        self._push()

    def abort(self) -> None:
        """Reset the connection (RST) and drop what is buffered."""
        self._check_thread()
        self._force_close(None)

    def _force_close(self, exc: Exception | None) -> None:
        if self._lost_scheduled:
            return
        self._buf.clear()
        self._closing = True
        conn = self._conn
        if conn.state is not State.CLOSED and conn.state is not State.TIME_WAIT:
            with contextlib.suppress(LocalError):
                conn.abort(self._driver.now(), why="transport aborted")
            self._driver.kick()
        self._fin_queued = True
        self._schedule_lost(exc)

    def _fatal_exception(self, exc: BaseException, message: str) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, OSError):
            self._loop.call_exception_handler({
                "message": f"synack transport: {message}", "exception": exc,
                "transport": self, "protocol": self._protocol})
        self._force_close(exc if isinstance(exc, Exception) else None)

    def _schedule_lost(self, exc: Exception | None) -> None:
        self._lost_scheduled = True
        self._closing = True
        self._loop.call_soon(self._call_connection_lost, exc, context=self._context)

    def _call_connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._driver._forget(self)
            if self._server is not None:
                self._server._detach(self)
                self._server = None

    # -- the rest -----------------------------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    @property
    def connection(self) -> Connection:
        return self._conn


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------


class _ListenerName:
    """What ``Server.sockets`` holds: enough of a socket to ask its name."""

    def __init__(self, addr: str, port: int) -> None:
        self._addr = addr
        self._port = port
        self.family = _std.AF_INET6 if ":" in addr else _std.AF_INET
        self.type = _std.SOCK_STREAM

    def getsockname(self) -> tuple[Any, ...]:
        return _name(self._addr or "0.0.0.0", self._port)

    def fileno(self) -> int:
        return -1

    def __repr__(self) -> str:
        return f"<synack listener {self.getsockname()}>"


class Server(asyncio.AbstractServer):
    """A listening synack port serving ``protocol_factory`` (like ``asyncio.Server``)."""

    def __init__(self, driver: Driver, reservation: Reservation, protocol_factory: ProtocolFactory,
                 backlog: int, config: Config | None) -> None:
        self._driver = driver
        self._loop = driver.loop
        self._res: Reservation | None = reservation
        self._addr = reservation.local_addr
        self._port = reservation.local_port
        self._factory = protocol_factory
        self._backlog = backlog
        self._config = config
        self._listener: Listener | None = None
        self._closed = False
        self._transports: dict[TcpTransport, None] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._serving_forever: asyncio.Future[None] | None = None
        self._context = contextvars.copy_context()  # the protocols and their tasks run in it

    def __repr__(self) -> str:
        return f"<synack Server {self._addr or '*'}:{self._port} serving={self.is_serving()}>"

    @property
    def sockets(self) -> tuple[_ListenerName, ...]:
        if self._closed:
            return ()
        return (_ListenerName(self._addr, self._port),)

    @property
    def port(self) -> int:
        return self._port

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._listener is not None and not self._closed

    async def start_serving(self) -> None:
        self._start()

    def _start(self) -> None:
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        if self._listener is not None:
            return
        res = self._res
        assert res is not None
        self._res = None
        try:
            lst = self._driver.host.listen(res.local_port, res.local_addr, backlog=self._backlog,
                                           config=self._config, reservation=res)
        except TcpError as exc:
            raise to_oserror(exc) from None
        lst.on_ready = self._on_ready
        self._listener = lst
        if lst.pending:
            self._on_ready(lst)

    def _on_ready(self, _lst: Listener) -> None:
        self._driver.listener_ready(self)

    def _accept_ready(self) -> None:
        lst = self._listener
        if lst is None or lst.closed:
            return
        while lst.pending:
            conn = lst.accept()
            if conn is None:
                break
            self._context.run(self._serve, conn)

    def _serve(self, conn: Connection) -> None:
        """One accepted connection: its protocol and transport (in the server's context)."""
        driver = self._driver
        try:
            protocol = self._factory()
        except Exception as exc:
            conn.abort(driver.now(), why="protocol factory failed")
            self._loop.call_exception_handler({
                "message": "synack server: protocol factory failed", "exception": exc, "server": self})
            return
        tr = TcpTransport(driver, conn, protocol, self)
        self._transports[tr] = None
        driver._adopt(tr)

    def _detach(self, transport: TcpTransport) -> None:
        self._transports.pop(transport, None)
        self._wakeup()

    def _wakeup(self) -> None:
        if self._closed and not self._transports:
            waiters = self._waiters
            self._waiters = []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def close(self) -> None:
        """Stop listening (SYNs are then answered by RST); existing connections stay open."""
        if self._closed:
            return
        self._closed = True
        now = self._driver.now()
        if self._listener is not None:
            self._listener.on_ready = None
            self._listener.close(now)
            self._driver.kick()
        if self._res is not None:
            self._res.release()
            self._res = None
        self._driver._ready.pop(self, None)
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
        self._serving_forever = None
        self._wakeup()

    def close_clients(self) -> None:
        for tr in list(self._transports):
            tr.close()

    def abort_clients(self) -> None:
        for tr in list(self._transports):
            tr.abort()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection it accepted is gone."""
        if self._closed and not self._transports:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        self._start()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None


# ---------------------------------------------------------------------------------------------
# The calls
# ---------------------------------------------------------------------------------------------


async def create_connection(stack: PumpStack, protocol_factory: ProtocolFactory, host: str, port: int, *,
                            local_addr: tuple[str, int] | None = None, config: Config | None = None,
                            reuse_address: bool = False) -> tuple[TcpTransport, asyncio.BaseProtocol]:
    """Active open to ``host``:``port`` (an IP literal); returns ``(transport, protocol)`` once
    ESTABLISHED, like ``loop.create_connection``. ``local_addr`` binds the local end;
    ``reuse_address`` is ``SO_REUSEADDR`` (a port in TIME-WAIT may be reused)."""
    driver = driver_for(stack)
    remote = _ip(host, "host")
    laddr: str | None = None
    lport = 0
    if local_addr is not None:
        laddr = _ip(local_addr[0], "local address") if local_addr[0] else None
        lport = local_addr[1]
    try:
        conn = driver.host.connect(remote, port, driver.now(), local_addr=laddr, local_port=lport,
                                   config=config, reuseaddr=reuse_address)
    except TcpError as exc:
        raise to_oserror(exc) from None
    except ValueError as exc:
        raise OSError(errno.EINVAL, str(exc)) from None
    fut: asyncio.Future[None] = driver.loop.create_future()
    driver._connecting[conn] = fut
    driver.kick()
    try:
        await fut
    except BaseException:
        driver._connecting.pop(conn, None)
        if conn.state is not State.CLOSED:
            conn.abort(driver.now(), why="connect cancelled")
            driver.kick()
        raise
    return await adopt_connection(stack, protocol_factory, conn)


async def adopt_connection(stack: Any, protocol_factory: ProtocolFactory,
                           conn: Connection) -> tuple[TcpTransport, asyncio.BaseProtocol]:
    """A transport (and a new protocol) over a connection that already exists on ``stack``
    (``loop.connect_accepted_socket`` with a :class:`synack.sockets.Socket`)."""
    driver = driver_for(stack)
    protocol = protocol_factory()
    transport = TcpTransport(driver, conn, protocol)
    driver._adopt(transport)
    return transport, protocol


async def create_server(stack: PumpStack, protocol_factory: ProtocolFactory, host: str | None = None,
                        port: int = 0, *, backlog: int = 100, reuse_address: bool = True,
                        config: Config | None = None, start_serving: bool = True) -> Server:
    """Listen on ``host`` (an IP literal; None or ``""``: every address of the host) and ``port``
    (0: an ephemeral port), like ``loop.create_server``. ``reuse_address`` defaults to True as
    in asyncio on POSIX. Raises ``OSError(EADDRINUSE)`` when the port is taken."""
    driver = driver_for(stack)
    addr = "" if not host else _ip(host, "host")
    try:
        res = driver.host.bind(addr, port, reuseaddr=reuse_address)
    except TcpError as exc:
        raise to_oserror(exc) from None
    except ValueError as exc:
        raise OSError(errno.EINVAL, str(exc)) from None
    server = Server(driver, res, protocol_factory, backlog, config)
    if start_serving:
        try:
            server._start()
        except BaseException:
            server.close()
            raise
    return server


async def open_connection(stack: PumpStack, host: str, port: int, *, limit: int = _DEFAULT_LIMIT,
                          **kwds: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` on synack: a standard ``(StreamReader, StreamWriter)``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(stack, lambda: protocol, host, port, **kwds)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


ClientConnected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]


async def start_server(client_connected_cb: ClientConnected, stack: PumpStack, host: str | None = None,
                       port: int = 0, *, limit: int = _DEFAULT_LIMIT, **kwds: Any) -> Server:
    """``asyncio.start_server`` on synack: ``client_connected_cb(reader, writer)`` per connection."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(stack, factory, host, port, **kwds)
