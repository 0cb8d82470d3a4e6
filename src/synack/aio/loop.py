"""The event loops: asyncio over synack, in real time (a TUN stack) and in virtual time (a
simulated network). See :mod:`synack.aio` for the overview."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import functools
import heapq
import ipaddress
import os
import selectors
import socket as _std
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Final, TypeVar

from synack import sockets, streams
from synack.aio.conductor import Conductor, Deadlock
from synack.aio.sandbox import Determinism, RealNetworkError, guarded
from synack.sim import Network, SimStack

__all__ = ["SynackEventLoop", "VirtualEventLoop", "current_stack", "loop_factory", "new_event_loop", "on",
           "run", "spawn"]

_T = TypeVar("_T")
_host: contextvars.ContextVar[Any] = contextvars.ContextVar("synack_host", default=None)
_WILDCARDS: Final = frozenset(("", "0.0.0.0", "::"))


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return None


def _family(addr: str) -> int:
    return _std.AF_INET6 if ":" in addr else _std.AF_INET


def _sockaddr(addr: str, port: int) -> tuple[Any, ...]:
    return (addr, port, 0, 0) if ":" in addr else (addr, port)


def _one_error(errors: list[OSError]) -> OSError:
    """asyncio's rule for several failed attempts: the first if all say the same, else one error
    listing them."""
    if len({str(e) for e in errors}) == 1:
        return errors[0]
    return OSError(f"Multiple exceptions: {', '.join(str(e) for e in errors)}")


class SynackEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose TCP is synack: ``create_connection``, ``create_server`` (and so
    ``asyncio.open_connection``/``start_server`` and every library built on them), ``getaddrinfo``
    and the ``sock_*`` calls for :class:`synack.sockets.Socket` go to a synack stack — the one
    given here, or the one chosen with :func:`on`/:func:`spawn` for the running task. While it
    runs, its thread may not touch the real network (:mod:`synack.aio.sandbox`)."""

    def __init__(self, stack: Any = None, *, selector: selectors.BaseSelector | None = None) -> None:
        super().__init__(selector)
        self._synack_default = stack

    # -- which stack ---------------------------------------------------------------------------

    def synack_stack(self, which: Any = None) -> Any:
        """The stack for ``which`` (a stack; in virtual time also a host name), else the running
        task's (:func:`on`, :func:`spawn`), else the loop's default."""
        if which is None:
            which = _host.get()
        if which is None:
            which = self._synack_default
        if which is None:
            raise RuntimeError("no synack host to run this on: give the loop a stack (synack.aio.run(main(), "
                               "stack)) or choose one for the task (async with / with synack.aio.on(host), "
                               "synack.aio.spawn(host, coro))")
        return self._as_stack(which)

    def _as_stack(self, which: Any) -> Any:
        if isinstance(which, (str, SimStack, Network)):
            raise RuntimeError(f"{which!r} names a simulated host: it runs only in the virtual-time loop "
                               f"(synack.aio.run(main(), net))")
        return which

    def run_forever(self) -> None:
        with guarded(f"the synack event loop ({type(self).__name__})"):
            super().run_forever()

    # -- names ---------------------------------------------------------------------------------

    def _resolve(self, stack: Any, host: str, family: int, call: str) -> list[str]:
        """The addresses ``host`` names: an IP literal (or, in virtual time, a simulated host)."""
        lit = _literal(host)
        if lit is None:
            raise RealNetworkError(f"{call}({host!r}): synack resolves IP literals only{self._names_hint()}; "
                                   f"a DNS lookup would use the host's real network")
        if family not in (0, _family(lit)):
            raise _std.gaierror(_std.EAI_FAMILY, "Address family for hostname not supported")
        return [lit]

    def _names_hint(self) -> str:
        return ""

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0, proto: int = 0,
                          flags: int = 0) -> list[tuple[Any, ...]]:
        if isinstance(host, bytes):
            host = host.decode("idna")
        if isinstance(port, (bytes, str)):
            port = int(port) if str(port).isdigit() else _std.getservbyname(str(port), "tcp")
        port = port or 0
        if host is None:
            addrs = ["0.0.0.0"] if family != _std.AF_INET6 else ["::"]
        else:
            addrs = self._resolve(None, host, family, "loop.getaddrinfo")
        kind = type or _std.SOCK_STREAM
        return [(_family(a), kind, proto or _std.IPPROTO_TCP, "", _sockaddr(a, port)) for a in addrs]

    async def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int = 0) -> tuple[str, str]:
        return str(sockaddr[0]), str(sockaddr[1])

    # -- connections ---------------------------------------------------------------------------

    def _check_destination(self, stack: Any, addr: str) -> None:
        """Refuse a destination the stack would hand to the real network: over TUN, anything
        outside the networks of the link (the kernel would route it on)."""
        device = getattr(stack, "device", None)
        nets = getattr(device, "kernel_addresses", None)
        if not nets:
            return
        ip = ipaddress.ip_address(addr)
        if not any(ip in ipaddress.ip_network(f"{a}/{plen}", strict=False) for a, plen in nets):
            raise RealNetworkError(f"loop.create_connection({addr!r}): not on the synack link "
                                   f"({', '.join(f'{a}/{p}' for a, p in nets)}); the kernel would route "
                                   f"it to the host's real network")

    async def create_connection(  # type: ignore[override]
            self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str | None = None,
            port: int | None = None, *, ssl: Any = None, family: int = 0, proto: int = 0, flags: int = 0,
            sock: Any = None, local_addr: tuple[str, int] | None = None, server_hostname: str | None = None,
            all_errors: bool = False, **kwds: Any) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """``loop.create_connection`` on synack (happy-eyeballs options are accepted and ignored:
        addresses are tried in order)."""
        if ssl:
            raise NotImplementedError("TLS over synack is not supported yet (ssl=... in create_connection)")
        if sock is not None:
            return await self.connect_accepted_socket(protocol_factory, sock)
        if host is None or port is None:
            raise ValueError("host and port was not specified and no sock specified")
        stack = self.synack_stack()
        errors: list[OSError] = []
        for addr in self._resolve(stack, host, family, "loop.create_connection"):
            self._check_destination(stack, addr)
            try:
                return await streams.create_connection(stack, protocol_factory, addr, port,
                                                       local_addr=local_addr)
            except OSError as exc:
                errors.append(exc)
        if all_errors:
            raise ExceptionGroup("create_connection failed", errors)
        raise _one_error(errors)

    async def create_server(  # type: ignore[override]
            self, protocol_factory: Callable[[], asyncio.BaseProtocol],
            host: str | Iterable[str] | None = None, port: int | None = None, *, family: int = 0,
            flags: int = 0, sock: Any = None, backlog: int = 100,
            ssl: Any = None, reuse_address: bool | None = None, reuse_port: bool | None = None,
            start_serving: bool = True, **kwds: Any) -> streams.Server:
        """``loop.create_server`` on synack: one listening address (None, ``""``, ``0.0.0.0`` or
        ``::``: every address of the host)."""
        if ssl:
            raise NotImplementedError("TLS over synack is not supported yet (ssl=... in create_server)")
        if sock is not None:
            raise NotImplementedError("create_server(sock=...): pass host and port instead")
        hosts = [host] if host is None or isinstance(host, str) else list(host)
        if len(hosts) != 1:
            raise NotImplementedError(f"create_server: one address per server on synack, not {hosts!r}")
        stack = self.synack_stack()
        h = hosts[0] or ""
        if h not in _WILDCARDS:
            h = self._resolve(stack, h, family, "loop.create_server")[0]
        return await streams.create_server(stack, protocol_factory, "" if h in _WILDCARDS else h, port or 0,
                                           backlog=backlog, start_serving=start_serving,
                                           reuse_address=True if reuse_address is None else reuse_address)

    async def connect_accepted_socket(  # type: ignore[override]
            self, protocol_factory: Callable[[], asyncio.BaseProtocol], sock: Any,
            **kwds: Any) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """A transport over a connected :class:`synack.sockets.Socket` (which gives its
        connection up, as ``socket.detach()`` would)."""
        conn = self._synack_socket(sock, "connect_accepted_socket").connection
        if conn is None:
            raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN))
        sock._release_connection()
        return await streams.adopt_connection(sock.stack, protocol_factory, conn)

    async def create_datagram_endpoint(self, *args: Any, **kwds: Any) -> Any:
        raise RealNetworkError("loop.create_datagram_endpoint: synack has no UDP; a kernel UDP socket would "
                               "use the host's real network")

    # -- sock_* for synack sockets -----------------------------------------------------------------

    @staticmethod
    def _synack_socket(sock: Any, call: str) -> sockets.Socket:
        if not isinstance(sock, sockets.Socket):
            raise RealNetworkError(f"loop.{call}({sock!r}): not a synack socket; a kernel socket would use "
                                   f"the host's real network")
        return sock

    async def _retry(self, sock: sockets.Socket, attempt: Callable[[], _T], event: int) -> _T:
        drv = streams.driver_for(sock.stack, self)
        while True:
            try:
                return attempt()
            except BlockingIOError:
                await drv.wait_for(lambda: bool(sock.poll() & event))

    async def sock_recv(self, sock: Any, n: int) -> bytes:
        s = self._synack_socket(sock, "sock_recv")
        return await self._retry(s, lambda: s.recv(n, _std.MSG_DONTWAIT), selectors.EVENT_READ)

    async def sock_recv_into(self, sock: Any, buf: Any) -> int:
        s = self._synack_socket(sock, "sock_recv_into")
        return await self._retry(s, lambda: s.recv_into(buf, 0, _std.MSG_DONTWAIT), selectors.EVENT_READ)

    async def sock_sendall(self, sock: Any, data: Any) -> None:
        s = self._synack_socket(sock, "sock_sendall")
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            rest = view[sent:]
            attempt = functools.partial(s.send, rest, _std.MSG_DONTWAIT)
            sent += await self._retry(s, attempt, selectors.EVENT_WRITE)

    async def sock_connect(self, sock: Any, address: Any) -> None:
        s = self._synack_socket(sock, "sock_connect")
        if s.connection is None:
            addr = self._resolve(s.stack, address[0], s.family, "loop.sock_connect")[0]
            self._check_destination(s.stack, addr)
            code = s.connect_ex((addr, *address[1:]))
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, os.strerror(code))
        drv = streams.driver_for(s.stack, self)
        await drv.wait_for(lambda: bool(s.poll() & selectors.EVENT_WRITE))
        code = int(s.getsockopt(_std.SOL_SOCKET, _std.SO_ERROR))
        if code:
            raise OSError(code, os.strerror(code))

    async def sock_accept(self, sock: Any) -> tuple[Any, Any]:
        s = self._synack_socket(sock, "sock_accept")

        def attempt() -> tuple[Any, Any]:
            saved = s.gettimeout()
            s.settimeout(0.0)
            try:
                return s.accept()
            finally:
                s.settimeout(saved)

        return await self._retry(s, attempt, selectors.EVENT_READ)


# ---------------------------------------------------------------------------------------------
# Virtual time
# ---------------------------------------------------------------------------------------------


class _VirtualSelector(selectors.BaseSelector):
    """The selector of the virtual-time loop: real file descriptors (the self-pipe, a
    subprocess's pipes) go to a real selector, polled without waiting; when the loop would wait,
    the simulated network runs instead — under the network's :class:`Conductor`, so that threads
    using blocking sockets on the same network take part — until a host has news for the loop, a
    real descriptor is ready, or the loop's next timer is due."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.loop: VirtualEventLoop | None = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self.loop
        assert loop is not None
        ready = self._real.select(0)
        if ready or loop._schedule_news() or timeout == 0:
            return ready
        outside = len(self._real.get_map()) > 1  # more than the self-pipe: the outside world
        watch = outside or threading.active_count() > 1  # someone may write to our descriptors

        def woken() -> bool:
            return loop._has_news() or (watch and bool(self._real.select(0)))

        deadline = None if timeout is None else loop._next_timer(timeout)
        try:
            loop.conductor.wait_until(woken, deadline, outside=outside)
        except Deadlock:
            raise loop.deadlock_error() from None
        loop._schedule_news()
        return self._real.select(0)


def _where(task: asyncio.Task[Any]) -> str:
    """Where a task waits: the chain of its coroutines (outermost first, each with its file and
    line) and the future the innermost awaits."""
    chain = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
            chain.append(f"{frame.f_code.co_name}() at {where}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if coro is not None and not (hasattr(coro, "cr_frame") or hasattr(coro, "gi_frame")):
            break
    waiting_for = getattr(task, "_fut_waiter", None)  # the future itself, as asyncio keeps it
    what = f", awaiting {waiting_for!r}" if waiting_for is not None else ""
    return f"{task.get_name()}: {' -> '.join(chain) or '?'}{what}"


class VirtualEventLoop(SynackEventLoop):
    """The loop on a simulated network: ``loop.time()`` is the network's clock; when every task
    waits, the network runs (and its clock jumps) to the next thing that can happen — a packet, a
    host's timer, a scripted fault, a ``call_at`` of the loop — and when nothing can happen,
    :class:`Deadlock` names every waiting task. Several hosts run in one loop: a task's host is
    chosen with :func:`on` or :func:`spawn` (or the loop's ``default``). With ``deterministic``
    (the default) the wall clock and entropy are virtual too (:class:`Determinism`)."""

    def __init__(self, net: Network, default: str | None = None, *, deterministic: bool = True) -> None:
        self.synack_network = net
        self.conductor = Conductor.of(net)
        self._deterministic = deterministic
        self._stacks: dict[str, SimStack] = {}
        self._drivers: dict[str, streams.SimDriver] = {}
        self._tasks_of: dict[str, weakref.WeakSet[asyncio.Task[Any]]] = {}
        selector = _VirtualSelector()
        super().__init__(default, selector=selector)
        selector.loop = self
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self.synack_network.now

    def _as_stack(self, which: Any) -> Any:
        net = self.synack_network
        if isinstance(which, SimStack):
            if which.net is not net:
                raise RuntimeError(f"host {which.name!r} is on another simulated network than this loop's")
            which = which.name
        if not isinstance(which, str):
            raise RuntimeError(f"the virtual-time loop runs hosts of its simulated network, not {which!r}")
        if which not in net.hosts:
            raise ValueError(f"no host named {which!r} on the simulated network (hosts: {sorted(net.hosts)})")
        st = self._stacks.get(which)
        if st is None:
            st = self._stacks[which] = net.stack(which)
        return st

    def synack_driver(self, stack: Any) -> streams.Driver:
        """The driver of a host of this loop's network (see :func:`synack.streams.driver_for`)."""
        st = self._as_stack(stack)
        drv = self._drivers.get(st.name)
        if drv is None or drv.closed:
            drv = self._drivers[st.name] = streams.SimDriver(st, self)
        return drv

    # -- names ---------------------------------------------------------------------------------

    def _resolve(self, stack: Any, host: str, family: int, call: str) -> list[str]:
        spec = self.synack_network.hosts.get(host)
        if spec is None:
            addrs = super()._resolve(stack, host, family, call)
        else:
            addrs = [a for a in spec.addresses if family in (0, _family(a))]
            if not addrs:
                raise _std.gaierror(_std.EAI_FAMILY, "Address family for hostname not supported")
        return addrs

    def _names_hint(self) -> str:
        return f" and the names of the simulated hosts ({', '.join(sorted(self.synack_network.hosts))})"

    def _check_destination(self, stack: Any, addr: str) -> None:
        owners = [h for h in self.synack_network.hosts.values() if addr in h.addresses]
        if not owners:
            raise OSError(errno.ENETUNREACH, f"{addr}: no host of the simulated network has this address")

    # -- running -------------------------------------------------------------------------------

    def run_forever(self) -> None:
        net = self.synack_network
        determinism = Determinism(net.seed, self.time) if self._deterministic else contextlib.nullcontext()
        with self.conductor.hold(), determinism:
            super().run_forever()

    def create_task(self, coro: Coroutine[Any, Any, _T], *, name: str | None = None,  # type: ignore[override]
                    context: contextvars.Context | None = None) -> asyncio.Task[_T]:
        task = super().create_task(coro, name=name, context=context)
        stack = context.get(_host) if context is not None else _host.get()
        if isinstance(stack, SimStack):
            self._tasks_of.setdefault(stack.name, weakref.WeakSet()).add(task)
        return task

    def _next_timer(self, timeout: float) -> float:
        """The virtual time the loop wants to wake at: exactly its earliest timer's, so that
        ``sleep(0.3)`` wakes at 0.3 and not at 0.30000000000000004."""
        scheduled: list[asyncio.TimerHandle] = self.__dict__["_scheduled"]  # BaseEventLoop's timer heap
        while scheduled and scheduled[0].cancelled():
            heapq.heappop(scheduled)
        if scheduled:
            return scheduled[0].when()
        return self.time() + timeout

    def _has_news(self) -> bool:
        return any(d.has_news() for d in self._drivers.values())

    def _schedule_news(self) -> bool:
        news = False
        for d in self._drivers.values():
            if d.has_news():
                d.kick()
                news = True
        return news

    def deadlock_error(self) -> Deadlock:
        """The error for a run that can make no progress, listing the waiting tasks."""
        tasks = [t for t in asyncio.all_tasks(self) if not t.done()]
        lines = [f"deadlock: every task is waiting and nothing is scheduled (virtual time "
                 f"{self.time():.6f} s; {len(tasks)} task(s) waiting)"]
        lines += [f"  {_where(t)}" for t in sorted(tasks, key=lambda t: t.get_name())]
        return Deadlock("\n".join(lines))

    # -- crashes -------------------------------------------------------------------------------

    def crash(self, host: str, *, restart_after: float | None = None) -> None:
        """The host crashes with everything running on it: its tasks are cancelled, its
        transports and servers vanish without a packet (their protocols see
        ``ConnectionAbortedError``), and the network forgets its connections
        (:meth:`Network.crash`). Restart it with :meth:`restart` (or ``restart_after``); its
        application is then started again by the test, as after a reboot."""
        name = self._as_stack(host).name
        for task in list(self._tasks_of.pop(name, ())):
            task.cancel(f"host {name} crashed")
        drv = self._drivers.pop(name, None)
        if drv is not None:
            drv.fail_all(ConnectionAbortedError(errno.ECONNABORTED, f"host {name} crashed"))
            drv.detach()
        self.synack_network.crash(name, restart_after=restart_after)

    def restart(self, host: str) -> None:
        """Bring a crashed host back (with no listeners and no connections)."""
        self.synack_network.restart(self._as_stack(host).name)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def new_event_loop(stack: Any = None, *, deterministic: bool = True) -> SynackEventLoop:
    """A loop for ``stack``: a :class:`~synack.sim.Network` (several hosts, chosen per task) or
    one of its hosts' stacks (``net.stack("a")``, the default host) gives the virtual-time loop;
    any other stack (a :class:`~synack.tun.TunStack`) the real-time one."""
    if isinstance(stack, Network):
        return VirtualEventLoop(stack, deterministic=deterministic)
    if isinstance(stack, SimStack):
        return VirtualEventLoop(stack.net, stack.name, deterministic=deterministic)
    return SynackEventLoop(stack)


def loop_factory(stack: Any = None, *, deterministic: bool = True) -> Callable[[], SynackEventLoop]:
    """What ``asyncio.Runner(loop_factory=...)`` takes: ``Runner(loop_factory=loop_factory(net))``."""
    return lambda: new_event_loop(stack, deterministic=deterministic)


def run(main: Coroutine[Any, Any, _T], stack: Any = None, *, debug: bool | None = None,
        deterministic: bool = True) -> _T:
    """``asyncio.run`` on synack: run ``main`` in a loop for ``stack`` (see :func:`new_event_loop`)."""
    with asyncio.Runner(debug=debug, loop_factory=loop_factory(stack, deterministic=deterministic)) as runner:
        return runner.run(main)


def _synack_loop() -> SynackEventLoop:
    loop = asyncio.get_running_loop()
    if not isinstance(loop, SynackEventLoop):
        raise RuntimeError(f"not inside a synack event loop (this is {type(loop).__name__}): use "
                           f"synack.aio.run(main(), stack)")
    return loop


class on:
    """``with synack.aio.on("b"): ...`` — what runs in the block (and the tasks it starts, and
    the servers it creates, with their connections) uses host ``b``: a host name or stack."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self._token: contextvars.Token[Any] | None = None

    def __enter__(self) -> Any:
        stack = _synack_loop().synack_stack(self.host)
        self._token = _host.set(stack)
        return stack

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _host.reset(self._token)

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


def spawn(host: Any, coro: Coroutine[Any, Any, _T], *, name: str | None = None) -> asyncio.Task[_T]:
    """A task running ``coro`` on ``host`` (a host name or stack)."""
    loop = _synack_loop()
    stack = loop.synack_stack(host)
    ctx = contextvars.copy_context()
    ctx.run(_host.set, stack)
    return loop.create_task(coro, name=name, context=ctx)


def current_stack() -> Any:
    """The stack the running task uses."""
    return _synack_loop().synack_stack()
