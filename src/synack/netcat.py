"""``synack nc`` and ``synack serve``: real tools on synack's TCP, over a TUN device.

Both put a synack host on a TUN device (``--tun synack0``): the kernel's side of the link gets
``--peer-addr`` (10.77.0.1/24) and synack answers as ``--addr`` (10.77.0.2), so any program of
the machine (curl, nc, a browser) reaches synack at that address.

``synack nc`` is netcat with OpenBSD nc's flags: ``synack nc HOST PORT`` connects,
``synack nc -l [PORT]`` (or ``-l -p PORT``) accepts one connection; standard input goes to the
connection and the connection to standard output. ``-N`` sends our FIN when standard input ends,
``-w SECS`` bounds the connect and any idle period, ``-v`` reports on standard error, with every
state change of the connection. As OpenBSD nc does, it ends when the peer's stream ends.

``synack serve echo|discard|chargen|http [DIR]`` runs one of the classic services (RFC 862, 863,
864) or a static HTTP/1.1 file server (GET and HEAD, Content-Length, 404; one request per
connection) until interrupted, printing each connection's state changes
(``time  peer  OLD -> NEW``) on standard output.

The application and the TCP under it end separately, as with the kernel's TCP when a process
exits. When the application part is finished — nc's streams ended, or Ctrl-C (SIGINT) or
SIGTERM — every listener and connection it left is closed (our FIN after what is queued; a reset
if unread data waits, as Linux's close), but the TCP part keeps running until every connection is
CLOSED: TIME-WAIT for its 2×MSL (``--msl``, 30 s by default: Linux's 60 s TIME-WAIT), so that a
retransmitted FIN is acknowledged again; LAST-ACK and FIN-WAIT until acknowledged or timed out.
The tool says on standard error what it waits for; after a short grace period in the foreground
(1 s) the rest continues in a detached child process that keeps the device and exits when the
host has no connection left (``kill PID`` resets what it still holds), and the shell is back at
once. ``--linger-exit SECONDS`` waits in the foreground instead, at most that long (0: reset what
is left and exit at once); a second SIGINT or SIGTERM while it waits does the same. Whatever is
still open when the waiting ends is reset (RST), so no peer is left hanging.

A TUN device deleted under a running tool (``ip link del``) ends it at once with one line saying
so and exit status 1. Setup errors (not root, no /dev/net/tun, a bad address, the port in use)
are one line on standard error and exit status 1 (2 for bad arguments), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import html
import ipaddress
import mimetypes
import os
import signal
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final, NoReturn

from synack import streams
from synack.core.connection import Config, Connection, TcpError
from synack.core.host import HostTracer
from synack.core.records import Record, State, StateRecord
from synack.tun import TunError, TunStack

__all__ = ["add_parser", "chargen_block", "run_nc", "run_serve"]

DEFAULT_PORTS: Final = {"echo": 7, "discard": 9, "chargen": 19, "http": 80}
CLOSE_WAIT_SECS: Final = 3.0  # how long nc waits for its transport to hand over the FIN
GRACE_SECS: Final = 1.0  # in the foreground after the application, before detaching the rest
DEFAULT_MSL: Final = 30.0  # TIME-WAIT = 2×MSL = 60 s, Linux's TCP_TIMEWAIT_LEN
_CHUNK: Final = 64 * 1024


class CliError(Exception):
    """A setup problem reported as one line; ``code`` is the exit status (1, or 2 for usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------


def _tun_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TUN device")
    g.add_argument("--tun", default="synack0", metavar="NAME", help="TUN interface name (default synack0)")
    g.add_argument("--addr", default="10.77.0.2", metavar="IP", help="synack's address (default 10.77.0.2)")
    g.add_argument("--peer-addr", default="10.77.0.1/24", metavar="IP/PREFIX",
                   help="the kernel side's address on the device, with prefix (default 10.77.0.1/24)")
    g.add_argument("--mtu", type=int, default=1500, help="device MTU (default 1500)")
    g.add_argument("--netns", metavar="NAME", help="create the device inside this existing network namespace")
    g.add_argument("--pcap", metavar="FILE", help="record every packet synack sends and receives")
    g.add_argument("--offload", action="store_true", help="use the device's TSO/GSO offloads")
    e = p.add_argument_group("after the application part ends")
    e.add_argument("--msl", type=float, default=DEFAULT_MSL, metavar="SECS",
                   help=f"maximum segment lifetime: TIME-WAIT lasts 2×MSL (default {DEFAULT_MSL:g} s)")
    e.add_argument("--linger-exit", type=float, metavar="SECS",
                   help="wait in the foreground at most SECS for the connections to close, then reset what "
                        "is left and exit (0: at once); default: finish them in a detached process")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``nc`` and ``serve`` subcommands."""
    nc = sub.add_parser(
        "nc", help="netcat on synack's TCP over a TUN device (OpenBSD nc flags)",
        description="Connect to HOST PORT, or with -l accept one connection on PORT, and copy standard "
                    "input to the connection and the connection to standard output, with synack's TCP on "
                    "a TUN device (needs root). Ends when the peer's stream ends.")
    nc.add_argument("-l", dest="listen", action="store_true", help="listen for one incoming connection")
    nc.add_argument("-p", dest="port", type=int, metavar="PORT", help="local port")
    nc.add_argument("-N", dest="shutdown", action="store_true",
                    help="shut down the write side (send FIN) when standard input ends")
    nc.add_argument("-w", dest="wait", type=float, metavar="SECS",
                    help="timeout for the connect and for idle")
    nc.add_argument("-v", dest="verbose", action="store_true",
                    help="report connection and state changes on stderr")
    nc.add_argument("-d", dest="no_stdin", action="store_true", help="do not read standard input")
    nc.add_argument("-n", dest="numeric", action="store_true",
                    help="numeric addresses only (always the case)")
    nc.add_argument("args", nargs="*", metavar="HOST PORT",
                    help="HOST PORT to connect; [ADDR] [PORT] with -l")
    _tun_options(nc)
    nc.set_defaults(handler=run_nc)

    sv = sub.add_parser(
        "serve", help="echo/discard/chargen/http server on synack's TCP over a TUN device",
        description="Serve echo (RFC 862), discard (RFC 863), chargen (RFC 864) or static files over HTTP "
                    "(GET/HEAD) on synack's TCP over a TUN device (needs root), printing each "
                    "connection's state changes, until interrupted (Ctrl-C closes every connection "
                    "gracefully).")
    sv.add_argument("service", choices=tuple(DEFAULT_PORTS), help="the service")
    sv.add_argument("dir", nargs="?", metavar="DIR", help="directory to serve (http; default .)")
    sv.add_argument("--port", type=int, help="port (default: echo 7, discard 9, chargen 19, http 80)")
    sv.add_argument("--backlog", type=int, default=128, help="accept queue length (default 128)")
    sv.add_argument("-q", "--quiet", action="store_true", help="do not print state changes")
    _tun_options(sv)
    sv.set_defaults(handler=run_serve)


def _port(value: int | str | None, what: str) -> int:
    try:
        port = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CliError(f"{what} {value!r} is not a port number", 2) from None
    if not 1 <= port <= 65535:
        raise CliError(f"{what} {port} out of range 1..65535", 2)
    return port


def _check_addresses(args: argparse.Namespace) -> tuple[str, str]:
    """synack's address and the kernel's interface, checked: valid, same family, same network."""
    try:
        ours = ipaddress.ip_address(args.addr)
    except ValueError:
        raise CliError(f"bad address {args.addr!r} (--addr wants an IP address, e.g. 10.77.0.2)", 2) from None
    try:
        peer = ipaddress.ip_interface(args.peer_addr)
    except ValueError:
        raise CliError(f"bad address {args.peer_addr!r} (--peer-addr wants IP/PREFIX, e.g. 10.77.0.1/24)",
                       2) from None
    if ours.version != peer.version:
        raise CliError(f"--addr {ours} and --peer-addr {peer} are of different IP versions", 2)
    if ours == peer.ip:
        raise CliError(f"--addr and --peer-addr are both {ours}: synack and the kernel need one each", 2)
    if ours not in peer.network:
        raise CliError(f"--addr {ours} is outside the kernel side's network {peer.network}: the kernel "
                       f"would not route it into the device", 2)
    if not 68 <= args.mtu <= 65535:
        raise CliError(f"--mtu {args.mtu} out of range 68..65535", 2)
    if args.msl < 0 or (args.linger_exit is not None and args.linger_exit < 0):
        raise CliError("--msl and --linger-exit take a number of seconds, not negative", 2)
    spec = args.peer_addr if "/" in args.peer_addr else f"{peer.ip}/{peer.network.prefixlen}"
    return str(ours), spec


def _make_stack(args: argparse.Namespace, tracer: HostTracer | None) -> TunStack:
    addr, peer = _check_addresses(args)
    try:
        return TunStack(addresses=(addr,), kernel_addresses=(peer,), ifname=args.tun, netns=args.netns,
                        mtu=args.mtu, pcap=args.pcap, tracer=tracer, offload=args.offload,
                        config=Config(msl=args.msl))
    except TunError as exc:
        raise CliError(exc.strerror or str(exc)) from None
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    except OSError as exc:
        raise CliError(f"{exc.filename or 'setup'}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------
# Shared plumbing
# ---------------------------------------------------------------------------------------------


def _clock() -> str:
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1e6):06d}"


def _peer(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def state_printer(write: Callable[[str], None]) -> HostTracer:
    """A host tracer printing one line per state change: time, peer, OLD -> NEW."""

    def tracer(rec: Record) -> None:
        if isinstance(rec, StateRecord):
            _la, _lp, ra, rp = rec.conn
            write(f"{_clock()} {_peer(ra, rp)} {rec.old} -> {rec.new}")

    return tracer


def _writer_for(stream: Any) -> Callable[[str], None]:
    def write(line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            stream.write(line + "\n")
            stream.flush()

    return write


def _run(main: Callable[[asyncio.Event], Awaitable[int]], stack: TunStack, prog: str) -> int:
    """Run the application part, ``main(stop)``, with SIGINT/SIGTERM — or the device vanishing —
    setting ``stop``; setup errors become one line."""

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def stack_closed(_error: TunError | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be gone already
                loop.call_soon_threadsafe(stop.set)

        stack.add_close_callback(stack_closed)
        try:
            return await main(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(runner())
    except CliError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.code


# ---------------------------------------------------------------------------------------------
# After the application: the TCP part runs until every connection is CLOSED
# ---------------------------------------------------------------------------------------------

_USER_OPEN: Final = frozenset((State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT))
_WAITS_FOR: Final = {
    State.FIN_WAIT_1: "the ACK of our FIN",
    State.FIN_WAIT_2: "the peer's FIN",
    State.CLOSING: "the ACK of our FIN",
    State.LAST_ACK: "the ACK of our FIN",
}


class _Ending:
    """SIGINT/SIGTERM while the TCP part finishes: the handler notes it and wakes the stack's
    loop (no exception thrown into the middle of the host's code)."""

    def __init__(self, stack: TunStack) -> None:
        self.stack = stack
        self.interrupted = False

    def __call__(self, _signum: int, _frame: object) -> None:
        self.interrupted = True
        self.stack.wakeup()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self)


def _open_conns(stack: TunStack) -> list[Connection]:
    """The host's connections that are not CLOSED yet."""
    return [c for c in stack.host.connections() if c.state is not State.CLOSED]


def _close_everything(stack: TunStack) -> None:
    """What the kernel does with an exiting process's sockets: every listener closed (what waits
    in its queues is reset), every connection closed — our FIN after what is queued, a RST when
    unread data waits."""
    with stack.lock:
        now = stack.now()
        for lst in list(stack.host.listeners.values()):
            lst.close(now)
        for conn in stack.host.connections():
            if conn.state in _USER_OPEN:
                with contextlib.suppress(TcpError):
                    conn.close(now, discard_input=True)
        stack.flush()


def _reset_the_rest(stack: TunStack) -> int:
    """Before the device goes: ABORT every connection not yet CLOSED — a RST from the states
    that have a peer to tell (RFC 9293 §3.10.5), TIME-WAIT, CLOSING and LAST-ACK just end.
    Returns how many there were."""
    with stack.lock:
        left = _open_conns(stack)
        now = stack.now()
        for conn in left:
            with contextlib.suppress(TcpError):
                conn.abort(now, why="exiting")
        stack.flush()
    return len(left)


def _describe(conns: list[Connection], config: Config) -> str:
    """What the TCP part still waits for, in one line: the connection, or how many per state."""

    def why(st: State) -> str:
        if st is State.TIME_WAIT:
            return f"2×MSL = {2 * config.msl:g} s"
        if st is State.FIN_WAIT_2 and config.fin_wait_2_timeout is not None:
            return f"the peer's FIN, at most {config.fin_wait_2_timeout:g} s"
        return _WAITS_FOR.get(st, "its end")

    if len(conns) == 1:
        c = conns[0]
        return (f"the connection with {_peer(c.remote_addr, c.remote_port)} is in {c.state.value} "
                f"({why(c.state)})")
    counts = Counter(c.state for c in conns)
    parts = "; ".join(f"{n} in {st.value} ({why(st)})" for st, n in counts.most_common())
    return f"{len(conns)} connections are not closed yet: {parts}"


def _linger(stack: TunStack, limit: float, ending: _Ending) -> int:
    """Run the stack until no connection is left, ``limit`` seconds pass or a signal comes; then
    reset whatever is left and return how many that was. A vanished device raises TunError."""
    try:
        stack.wait_until(lambda: ending.interrupted or not _open_conns(stack), limit)
    finally:
        left = 0 if stack.closed else _reset_the_rest(stack)
    return left


def _detached_limit(config: Config) -> float:
    """The longest a detached TCP part may run: TIME-WAIT, or a FIN retransmitted for R2, or
    FIN-WAIT-2's timeout, whichever is longest, and a margin; then it resets what is left."""
    return 2 * config.msl + max(config.r2, config.fin_wait_2_timeout or 0.0) + 10.0


def _finish(stack: TunStack, code: int, args: argparse.Namespace, prog: str) -> int:
    """The application part ended with ``code``: let the TCP part finish (:func:`_tcp_part`), then
    close the stack — unless a detached child took it over. Returns the exit status."""
    ending = _Ending(stack)
    ending.install()
    detached = False
    try:
        if stack.error is None:
            detached = _tcp_part(stack, args, prog, ending)
    except TunError:
        pass  # the device vanished while we waited: said below
    finally:
        if not detached:
            stack.close()
    if stack.error is not None:
        print(f"{prog}: {stack.error.strerror}", file=sys.stderr)
        return 1
    return code


def _tcp_part(stack: TunStack, args: argparse.Namespace, prog: str, ending: _Ending) -> bool:
    """Close what the application left, then wait for the connections to be CLOSED: in the
    foreground at most ``--linger-exit`` seconds, or ``GRACE_SECS`` and then in a detached child
    (→ True, in the parent). What is left when the waiting ends is reset."""
    _close_everything(stack)
    linger: float | None = args.linger_exit
    if linger is None:  # what ends within a few round trips ends in the foreground
        stack.wait_until(lambda: ending.interrupted
                         or all(c.state is State.TIME_WAIT for c in _open_conns(stack)), GRACE_SECS)
    left = _open_conns(stack)
    if not left:
        return False
    if ending.interrupted or linger == 0:
        _reset_the_rest(stack)
        return False
    what = _describe(left, stack.host.config)
    if linger is None:
        it_is = "it is" if len(left) == 1 else "they are"
        return _detach(stack, prog, f"{what}; its TCP keeps running in process PID, which exits when {it_is} "
                                    f"closed ('kill PID' ends it at once, resetting what is still open)")
    print(f"{prog}: {what}; waiting at most {linger:g} s (--linger-exit)", file=sys.stderr)
    if _linger(stack, linger, ending):
        print(f"{prog}: reset what was still open", file=sys.stderr)
    return False


def _detach(stack: TunStack, prog: str, message: str) -> bool:
    """Fork: the parent prints ``message`` (``PID`` replaced by the child's) and returns True —
    the shell is back; the child keeps the device, runs the stack until its connections are
    CLOSED, and exits."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if stack.pcap is not None:
        stack.pcap.flush()  # or the child would write the parent's buffer again
    pid = os.fork()
    if pid:
        print(f"{prog}: {message.replace('PID', str(pid))}", file=sys.stderr)
        return True
    _detached_child(stack)


def _detached_child(stack: TunStack) -> NoReturn:
    """The detached TCP part: its own session (the terminal's Ctrl-C and hang-up do not reach
    it), standard streams on /dev/null (no pipe of the caller held open), then the stack until
    nothing is left — bounded by :func:`_detached_limit` — and ``os._exit``."""
    status = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        ending = _Ending(stack)
        ending.install()
        _linger(stack, _detached_limit(stack.host.config), ending)
        status = 0
    except BaseException:
        status = 1
    finally:
        with contextlib.suppress(BaseException):
            stack.close()
        os._exit(status)


# ---------------------------------------------------------------------------------------------
# synack nc
# ---------------------------------------------------------------------------------------------


def _stdin_pump(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
    """Thread: standard input into ``queue`` (bounded: the thread waits while it is full)."""
    try:
        while True:
            try:
                data = os.read(0, _CHUNK)
            except OSError:
                data = b""
            asyncio.run_coroutine_threadsafe(queue.put(data or None), loop).result()
            if not data:
                return
    except (RuntimeError, concurrent.futures.CancelledError):
        return  # the loop is gone: we are exiting


def _write_stdout(data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(1, view)
        view = view[n:]


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, args: argparse.Namespace,
                 stop: asyncio.Event, log: Callable[[str], None]) -> int:
    """Copy stdin → connection and connection → stdout until the peer's stream ends."""
    loop = asyncio.get_running_loop()
    last = [loop.time()]
    out_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="synack-nc-stdout")

    async def upstream() -> None:
        if args.no_stdin:
            return
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(4)
        threading.Thread(target=_stdin_pump, args=(loop, queue), daemon=True, name="synack-nc-stdin").start()
        while (chunk := await queue.get()) is not None:
            writer.write(chunk)
            last[0] = loop.time()
            await writer.drain()
        if args.shutdown and not writer.is_closing():
            writer.write_eof()

    async def downstream() -> None:
        while data := await reader.read(_CHUNK):
            last[0] = loop.time()
            await loop.run_in_executor(out_pool, _write_stdout, data)

    async def idle() -> None:
        wait = args.wait
        while True:
            left = last[0] + wait - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(left)

    up = asyncio.create_task(upstream())
    down = asyncio.create_task(downstream())
    stopper = asyncio.create_task(stop.wait())
    timer = asyncio.create_task(idle()) if args.wait is not None else None
    watch = [t for t in (down, stopper, timer) if t is not None]
    code = 0
    try:
        done, _ = await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
        if down in done:
            down.result()  # the connection's error, if any (a reset, a timeout)
        elif timer is not None and timer in done:
            log("idle timeout")
            code = 1
    except BrokenPipeError:
        code = 0  # our standard output went away: nothing more to do
    except OSError as exc:  # a reset, a timeout; the stack closed under us (said by _finish)
        if not stop.is_set():
            print(f"synack nc: {exc.strerror or exc}", file=sys.stderr)
        code = 1
    finally:
        for t in (up, down, stopper, timer):
            if t is not None:
                t.cancel()
        if up.done() and not up.cancelled():
            up.exception()  # seen (a reset shows up on the reading side too)
        out_pool.shutdown(wait=False)
    writer.close()
    with contextlib.suppress(OSError):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_WAIT_SECS)
    return code


def _nc_endpoints(args: argparse.Namespace) -> tuple[str | None, int | None, str | None, int | None]:
    """(listen address, listen port, remote host, remote port) from the positional arguments."""
    pos: list[str] = list(args.args)
    if args.listen:
        if len(pos) > 2:
            raise CliError("usage: synack nc -l [ADDR] [PORT] (or -l -p PORT)", 2)
        addr = pos[0] if len(pos) == 2 else None
        given = pos[-1] if pos else None
        if given is not None and args.port is not None and int(_port(given, "port")) != args.port:
            raise CliError("two different ports given (-p and PORT)", 2)
        value = given if given is not None else args.port
        if value is None:
            raise CliError("-l needs a port: synack nc -l PORT (or -l -p PORT)", 2)
        if addr is not None:
            try:
                addr = str(ipaddress.ip_address(addr))
            except ValueError:
                raise CliError(f"bad address {addr!r} (synack nc takes IP addresses only)", 2) from None
        return addr, _port(value, "port"), None, None
    if len(pos) != 2:
        raise CliError("usage: synack nc [-N] [-w SECS] [-v] [-p LPORT] HOST PORT  |  synack nc -l [PORT]", 2)
    try:
        host = str(ipaddress.ip_address(pos[0]))
    except ValueError:
        raise CliError(f"bad address {pos[0]!r} (synack nc takes IP addresses only)", 2) from None
    lport = _port(args.port, "local port") if args.port is not None else None
    return None, lport, host, _port(pos[1], "port")


def run_nc(args: argparse.Namespace) -> int:
    try:
        laddr, lport, rhost, rport = _nc_endpoints(args)
        if args.wait is not None and args.wait <= 0:
            raise CliError("-w wants a positive number of seconds", 2)
        log = _writer_for(sys.stderr) if args.verbose else (lambda _line: None)
        stack = _make_stack(args, state_printer(log) if args.verbose else None)
    except CliError as exc:
        print(f"synack nc: {exc}", file=sys.stderr)
        return exc.code

    async def main(stop: asyncio.Event) -> int:
        if args.listen:
            return await _nc_listen(stack, laddr, lport or 0, args, stop, log)
        assert rhost is not None and rport is not None
        return await _nc_connect(stack, rhost, rport, lport, args, stop, log)

    try:
        code = _run(main, stack, "synack nc")
    except BaseException:
        stack.close()
        raise
    return _finish(stack, code, args, "synack nc")


async def _nc_connect(stack: TunStack, host: str, port: int, lport: int | None, args: argparse.Namespace,
                      stop: asyncio.Event, log: Callable[[str], None]) -> int:
    local = (stack.host.addresses[0], lport) if lport is not None else None
    connect: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.ensure_future(
        streams.open_connection(stack, host, port, local_addr=local, reuse_address=True))
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([connect, stopper], timeout=args.wait,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if connect not in done:
        connect.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await connect
        if stop.is_set():
            return 0
        print(f"synack nc: connect to {host} port {port} (tcp) timed out", file=sys.stderr)
        return 1
    try:
        reader, writer = connect.result()
    except OSError as exc:
        if not stop.is_set():  # else the stack closed under us: said by _finish
            print(f"synack nc: connect to {host} port {port} (tcp) failed: {exc.strerror or exc}",
                  file=sys.stderr)
        return 1
    log(f"Connection to {host} {port} port [tcp/*] succeeded!")
    return await _relay(reader, writer, args, stop, log)


async def _nc_listen(stack: TunStack, addr: str | None, port: int, args: argparse.Namespace,
                     stop: asyncio.Event, log: Callable[[str], None]) -> int:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[Any] = loop.create_future()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if accepted.done():
            writer.transport.abort()  # one connection only, as nc -l without -k
        else:
            accepted.set_result((reader, writer))

    try:
        server = await streams.start_server(on_connect, stack, addr, port, backlog=1)
    except OSError as exc:
        raise CliError(f"cannot listen on port {port}: {exc.strerror or exc}") from None
    log(f"Listening on {addr or stack.host.addresses[0]} {port}")
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([accepted, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        server.close()
    if accepted not in done:
        accepted.cancel()
        return 0
    reader, writer = accepted.result()
    peer = writer.get_extra_info("peername")
    log(f"Connection received on {peer[0]} {peer[1]}")
    return await _relay(reader, writer, args, stop, log)


# ---------------------------------------------------------------------------------------------
# synack serve
# ---------------------------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 862: send back whatever arrives, until the client's stream ends."""
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()


async def _discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 863: throw away whatever arrives."""
    while await reader.read(_CHUNK):
        pass


_PRINTABLE: Final = bytes(range(32, 127))  # the 95 printable ASCII characters


def chargen_block(start: int, lines: int) -> bytes:
    """RFC 864's pattern: 72-character lines of the 95 printable characters, each line starting
    one character further along, CRLF after each."""
    ring = _PRINTABLE * 2
    out = []
    for i in range(lines):
        k = (start + i) % 95
        out.append(ring[k:k + 72])
    return b"\r\n".join(out) + b"\r\n"


async def _chargen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 864: send the pattern until the client closes; what it sends is thrown away."""
    done = asyncio.Event()

    async def sink() -> None:
        try:
            while await reader.read(_CHUNK):
                pass
        finally:
            done.set()

    task = asyncio.create_task(sink())
    block = chargen_block(0, 95)  # after 95 lines the pattern is back at its start
    try:
        while not done.is_set() and not writer.is_closing():
            writer.write(block)
            await writer.drain()
    finally:
        task.cancel()


class HttpFiles:
    """GET and HEAD of the files under ``root`` (HTTP/1.1, one request per connection)."""

    def __init__(self, root: str, log: Callable[[str], None]) -> None:
        self.root = os.path.realpath(root)
        self.log = log

    def _resolve(self, target: str) -> str | None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        full = os.path.realpath(os.path.join(self.root, path.lstrip("/")))
        if full != self.root and not full.startswith(self.root + os.sep):
            return None
        return full

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        peer = writer.get_extra_info("peername")
        who = _peer(peer[0], peer[1])
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._reply(writer, 400, "Bad Request", b"bad request\n", who, line)
            return
        method, target, _version = parts
        if method not in ("GET", "HEAD"):
            await self._reply(writer, 501, "Not Implemented", b"only GET and HEAD\n", who, line,
                              extra=("Allow: GET, HEAD",))
            return
        full = self._resolve(target)
        if full is not None and os.path.isdir(full):
            index = os.path.join(full, "index.html")
            if os.path.isfile(index):
                full = index
            else:
                body = self._listing(full, target)
                await self._reply(writer, 200, "OK", body, who, line, ctype="text/html; charset=utf-8",
                                  head_only=method == "HEAD")
                return
        if full is None or not os.path.isfile(full):
            await self._reply(writer, 404, "Not Found", b"not found\n", who, line)
            return
        try:
            f = open(full, "rb")  # noqa: SIM115 - closed below, across awaits
        except OSError:
            await self._reply(writer, 403, "Forbidden", b"forbidden\n", who, line)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
            writer.write(self._header(200, "OK", size, ctype))
            self.log(f"{_clock()} {who} \"{line}\" 200 {size}")
            if method == "GET":
                while chunk := f.read(4 * _CHUNK):
                    writer.write(chunk)
                    await writer.drain()

    def _listing(self, path: str, target: str) -> bytes:
        base = urllib.parse.urlsplit(target).path
        if not base.endswith("/"):
            base += "/"
        items = []
        for name in sorted(os.listdir(path)):
            slash = "/" if os.path.isdir(os.path.join(path, name)) else ""
            href = urllib.parse.quote(base + name + slash)
            items.append(f'<li><a href="{href}">{html.escape(name + slash)}</a></li>')
        title = html.escape(base)
        return (f"<!DOCTYPE html><title>{title}</title><h1>{title}</h1><ul>{''.join(items)}</ul>\n"
                .encode())

    @staticmethod
    def _header(status: int, reason: str, length: int, ctype: str, extra: tuple[str, ...] = ()) -> bytes:
        lines = [f"HTTP/1.1 {status} {reason}", "Server: synack", f"Content-Type: {ctype}",
                 f"Content-Length: {length}", "Connection: close", *extra]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _reply(self, writer: asyncio.StreamWriter, status: int, reason: str, body: bytes, who: str,
                     line: str, *, ctype: str = "text/plain; charset=utf-8", extra: tuple[str, ...] = (),
                     head_only: bool = False) -> None:
        writer.write(self._header(status, reason, len(body), ctype, extra))
        if not head_only:
            writer.write(body)
        self.log(f"{_clock()} {who} \"{line}\" {status} {len(body)}")
        await writer.drain()


def run_serve(args: argparse.Namespace) -> int:
    out = _writer_for(sys.stdout)
    try:
        port = _port(args.port if args.port is not None else DEFAULT_PORTS[args.service], "--port")
        handler: Handler
        if args.service == "http":
            root = args.dir or "."
            if not os.path.isdir(root):
                raise CliError(f"{root}: not a directory", 2)
            handler = HttpFiles(root, out)
        else:
            if args.dir is not None:
                raise CliError(f"{args.service} takes no directory", 2)
            handler = {"echo": _echo, "discard": _discard, "chargen": _chargen}[args.service]
        if args.backlog < 1:
            raise CliError("--backlog must be at least 1", 2)
        stack = _make_stack(args, None if args.quiet else state_printer(out))
    except CliError as exc:
        print(f"synack serve: {exc}", file=sys.stderr)
        return exc.code

    async def main(stop: asyncio.Event) -> int:
        return await _serve(stack, args, port, handler, stop, out)

    try:
        code = _run(main, stack, "synack serve")
    except BaseException:
        stack.close()
        raise
    return _finish(stack, code, args, "synack serve")


async def _serve(stack: TunStack, args: argparse.Namespace, port: int, handler: Handler,
                 stop: asyncio.Event, out: Callable[[str], None]) -> int:
    tasks: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        tasks[me] = writer
        try:
            await handler(reader, writer)
        except OSError:
            pass  # the peer reset or timed out (its state changes are printed), or the stack closed
        except asyncio.CancelledError:
            pass  # stopping, the handler was stuck: end quietly (a cancelled task's traceback
            # would be printed by asyncio's stream callback)
        finally:
            tasks.pop(me, None)
            writer.close()

    addr = stack.host.addresses[0]
    try:
        server = await streams.start_server(client, stack, addr, port, backlog=args.backlog)
    except OSError as exc:
        raise CliError(f"cannot listen on {addr} port {port}: {exc.strerror or exc}") from None
    where = f" in {os.path.realpath(args.dir or '.')}" if args.service == "http" else ""
    out(f"synack serve {args.service}{where}: listening on {_peer(addr, port)} "
        f"(device {args.tun}, kernel side {args.peer_addr}); Ctrl-C to stop")
    await stop.wait()
    if stack.closed:
        return 1  # the device vanished: said by _finish
    out(f"{_clock()} stopping: closing {len(tasks)} connection(s)")
    server.close()
    for writer in list(tasks.values()):
        writer.close()  # our FIN (a reset if unread data waits): the handlers see the end
    if tasks:
        _, stuck = await asyncio.wait(list(tasks), timeout=1.0)
        for task in stuck:
            task.cancel()  # e.g. waiting for a peer that does not read; ends quietly (client)
        if stuck:
            await asyncio.wait(stuck, timeout=1.0)
    return 0

