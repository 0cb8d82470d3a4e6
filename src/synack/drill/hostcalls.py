"""System calls of a script, made on a synack :class:`~synack.core.host.Host` with the errno values
Linux gives (the scripts are written against Linux's socket API).

Each call is an *attempt*: :meth:`HostSockets.call` returns a :class:`~synack.drill.calls.Result`,
or None when a blocking socket would block — the engine attempts again as virtual time advances
(``retry=True``), which is how a ``START...END`` call completes when its condition holds. A
non-blocking socket (``O_NONBLOCK``, ``SOCK_NONBLOCK``, ``MSG_DONTWAIT``) answers EAGAIN,
EINPROGRESS or EALREADY instead, as the kernel does.

Linux behaviour mirrored here (each from ``net/ipv4/af_inet.c``/``tcp.c`` as documented in
``socket(7)``, ``tcp(7)``, ``connect(2)``): ``listen(fd, n)`` queues up to n + 1 connections; a
second ``connect`` after a non-blocking one returns 0 once, then EISCONN; a connection's error
(ECONNRESET, ECONNREFUSED, ETIMEDOUT) is reported once, by the first call that looks, after which
reads return 0 and writes EPIPE; ``shutdown(SHUT_RD)`` on a listener stops it; ``close`` with
``SO_LINGER {1, 0}`` aborts (RST), with ``{1, t}`` it blocks until the FIN is acknowledged or t
seconds pass. Where synack's buffers have no bookkeeping overhead, ``SO_RCVBUF``/``SO_SNDBUF`` are
taken and reported as given (Linux doubles them).
"""

from __future__ import annotations

import contextlib
import errno as E
from dataclasses import dataclass, field
from typing import Final

from synack.core.connection import Config, Connection
from synack.core.host import Host, Listener, Reservation
from synack.core.records import ConnectionAborted, LocalError, RemoteError, State, TcpError
from synack.drill import symbols
from synack.drill.calls import Call, Result, fcntl
from synack.drill.script import DrillError
from synack.sockets import to_oserror

__all__ = ["HostSockets", "tcp_info"]

_CONNECTING: Final = frozenset((State.SYN_SENT, State.SYN_RECEIVED))
_CAN_SEND: Final = frozenset((State.ESTABLISHED, State.CLOSE_WAIT))
_PEER_FIN: Final = frozenset((State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT))
_LINGER_DONE: Final = frozenset((State.FIN_WAIT_2, State.TIME_WAIT, State.CLOSED))
_SOL, _TCP = symbols.SOL_SOCKET, symbols.IPPROTO_TCP
_C = symbols.CONSTANTS
_IO_FLAGS: Final = _C["MSG_DONTWAIT"] | _C["MSG_NOSIGNAL"] | _C["MSG_WAITALL"] | _C["MSG_MORE"]
_POLLIN, _POLLOUT, _POLLERR, _POLLHUP = _C["POLLIN"], _C["POLLOUT"], _C["POLLERR"], _C["POLLHUP"]
_POLLRDNORM, _POLLWRNORM = _C["POLLRDNORM"], _C["POLLWRNORM"]
_POLLRDHUP, _POLLNVAL = _C["POLLRDHUP"], _C["POLLNVAL"]
_MIN_BUF: Final = 1024

# Socket options: (level, name) -> the Config field it sets (None: kept on the socket only).
_INT_OPTS: Final = {
    (_SOL, _C["SO_REUSEADDR"]): None,
    (_SOL, _C["SO_KEEPALIVE"]): "keepalive",
    (_SOL, _C["SO_RCVBUF"]): "rcv_buf",
    (_SOL, _C["SO_SNDBUF"]): "snd_buf",
    (_TCP, _C["TCP_NODELAY"]): "nodelay",
    (_TCP, _C["TCP_KEEPIDLE"]): "keepidle",
    (_TCP, _C["TCP_KEEPINTVL"]): "keepintvl",
    (_TCP, _C["TCP_KEEPCNT"]): "keepcnt",
    (_TCP, _C["TCP_MAXSEG"]): "mss",
    (_TCP, _C["TCP_USER_TIMEOUT"]): "user_timeout",
}


@dataclass(slots=True)
class _Sock:
    """A script's socket: what it is bound to, listening on or connected by, and its options."""

    fd: int
    family: int
    nonblock: bool = False
    res: Reservation | None = None
    lst: Listener | None = None
    conn: Connection | None = None
    opts: dict[tuple[int, int], int] = field(default_factory=dict)
    linger: tuple[int, int] = (0, 0)
    shut_rd: bool = False
    shut_wr: bool = False
    connecting: bool = False  # a connect() is in progress (Linux SS_CONNECTING)
    reported: bool = False  # the connection's error was given to the user
    linger_until: float | None = None


class HostSockets:
    """The script's file descriptors on one synack host. ``flush`` is called after every call
    that may have made the host want to send (the driver puts the output on the wire)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.socks: dict[int, _Sock] = {}

    # -- plumbing ------------------------------------------------------------------------------

    def connection(self, fd: int) -> Connection | None:
        s = self.socks.get(fd)
        return s.conn if s is not None else None

    def state_of(self, fd: int) -> State | None:
        s = self.socks.get(fd)
        if s is None:
            return None
        if s.conn is not None:
            return s.conn.state
        if s.lst is not None:
            return s.lst.state
        return State.CLOSED

    def _config(self, s: _Sock) -> Config:
        changes: dict[str, object] = {}
        for key, value in s.opts.items():
            name = _INT_OPTS.get(key)
            if name is None:
                continue
            if name in ("keepalive", "nodelay"):
                changes[name] = bool(value)
            elif name in ("keepidle", "keepintvl"):
                changes[name] = float(value)
            elif name == "user_timeout":
                changes[name] = value / 1000 if value else None
            elif name == "mss":
                changes[name] = min(max(value, 64), 65495)
            elif name in ("rcv_buf", "snd_buf"):
                changes[name] = max(value, _MIN_BUF)
            else:
                changes[name] = value
        base = self.host.config
        return base.with_(**changes) if changes else base

    def _pending_error(self, s: _Sock) -> int:
        """The connection's error, once (0 when none or already reported)."""
        c = s.conn
        if c is None or s.reported or c.state is not State.CLOSED or not isinstance(c.error, RemoteError):
            return 0
        s.reported = True
        if isinstance(c.error, ConnectionAborted):
            return 0  # our own abort: nothing to tell
        return to_oserror(c.error).errno or E.EIO

    # -- the calls -----------------------------------------------------------------------------

    def call(self, c: Call, now: float, retry: bool = False) -> Result | None:
        """Attempt ``c`` at ``now``: a result, or None when a blocking call must wait."""
        if c.op == "socket":
            return self._socket(c)
        if c.op == "poll":
            return self._poll(c, now)
        s = self.socks.get(c.fd)
        if s is None:
            return Result.error(E.EBADF)
        handler = getattr(self, "_" + c.op)
        result: Result | None = handler(s, c, now, retry)
        return result

    def _socket(self, c: Call) -> Result:
        if c.family not in (symbols.AF_INET, symbols.AF_INET6):
            return Result.error(E.EAFNOSUPPORT)
        fd = 3
        while fd in self.socks:
            fd += 1
        self.socks[fd] = _Sock(fd, c.family, nonblock=c.nonblock)
        return Result(fd)

    def _bind(self, s: _Sock, c: Call, now: float, retry: bool) -> Result:
        assert c.addr is not None
        if s.res is not None or s.lst is not None or s.conn is not None:
            return Result.error(E.EINVAL)
        addr, port = c.addr
        try:
            s.res = self.host.bind(addr, port, reuseaddr=bool(s.opts.get((_SOL, _C["SO_REUSEADDR"]))))
        except TcpError as exc:
            return Result.error(to_oserror(exc).errno or E.EINVAL)
        except ValueError:
            return Result.error(E.EINVAL)
        return Result(0)

    def _listen(self, s: _Sock, c: Call, now: float, retry: bool) -> Result:
        if s.conn is not None:
            return Result.error(E.EINVAL)
        backlog = max(c.n, 0) + 1  # Linux's accept queue holds backlog + 1 (sk_acceptq_is_full)
        if s.lst is not None:
            s.lst.backlog = backlog
            return Result(0)
        reuse = bool(s.opts.get((_SOL, _C["SO_REUSEADDR"])))
        try:
            res = s.res if s.res is not None else self.host.bind("", 0, reuseaddr=reuse)
            s.lst = self.host.listen(res.local_port, res.local_addr, backlog=backlog, config=self._config(s),
                                     reservation=res, now=now)
        except TcpError as exc:
            return Result.error(to_oserror(exc).errno or E.EINVAL)
        s.res = None
        return Result(0)

    def _accept(self, s: _Sock, c: Call, now: float, retry: bool) -> Result | None:
        lst = s.lst
        if lst is None or lst.closed:
            return Result.error(E.EINVAL)
        conn = lst.accept()
        if conn is None:
            return Result.error(E.EAGAIN) if s.nonblock else None
        fd = 3
        while fd in self.socks:
            fd += 1
        child = _Sock(fd, s.family, nonblock=c.nonblock, conn=conn, opts=dict(s.opts), linger=s.linger)
        self.socks[fd] = child
        return Result(fd)

    def _connect(self, s: _Sock, c: Call, now: float, retry: bool) -> Result | None:
        if s.lst is not None:
            return Result.error(E.EISCONN)
        conn = s.conn
        if conn is not None and (retry or s.connecting):
            return self._connect_progress(s, conn, retry)
        if conn is not None:
            if conn.state is State.CLOSED and conn.error is not None:
                err = self._pending_error(s)
                if err:
                    return Result.error(err)
                s.conn, s.reported = None, False  # Linux lets a failed socket connect again
            else:
                return Result.error(E.EISCONN)
        assert c.addr is not None
        addr, port = c.addr
        try:
            s.conn = self.host.connect(addr, port, now, config=self._config(s), reservation=s.res,
                                       reuseaddr=bool(s.opts.get((_SOL, _C["SO_REUSEADDR"]))))
        except TcpError as exc:
            return Result.error(to_oserror(exc).errno or E.EINVAL)
        except ValueError:
            return Result.error(E.EINVAL)
        s.res = None
        s.reported = False
        s.connecting = True
        return Result.error(E.EINPROGRESS) if s.nonblock else None

    def _connect_progress(self, s: _Sock, conn: Connection, retry: bool) -> Result | None:
        """connect() on a socket whose connect is in progress (a retry of a blocking one, or a
        second call after a non-blocking one)."""
        if conn.state in _CONNECTING:
            return None if retry else Result.error(E.EALREADY)
        if not s.connecting:
            return Result.error(E.EISCONN)
        s.connecting = False
        if conn.state is State.CLOSED:
            err = self._pending_error(s)
            return Result.error(err or E.ECONNABORTED)
        return Result(0)

    def _read(self, s: _Sock, c: Call, now: float, retry: bool) -> Result | None:
        if c.flags & ~_IO_FLAGS:
            raise DrillError(f"{c.name}() flags {c.flags:#x} are not supported", c.pos, unsupported=True)
        conn = s.conn
        if conn is None:
            return Result.error(E.ENOTCONN)
        nonblock = s.nonblock or c.nonblock
        if conn.readable:
            want = c.n - c.progress
            got = conn.receive(want, now) or b""
            c.progress += len(got)
            if c.flags & _C["MSG_WAITALL"] and c.progress < c.n and not conn.at_eof and not nonblock:
                return None
            return Result(c.progress)
        if c.progress:
            return Result(c.progress)
        if c.n == 0 or s.shut_rd:
            return Result(0)
        err = self._pending_error(s)
        if err:
            return Result.error(err)
        if conn.at_eof or conn.state is State.CLOSED or conn.state in _PEER_FIN:
            return Result(0)
        if conn.state in _CONNECTING or conn.state.synchronized:
            return Result.error(E.EAGAIN) if nonblock else None
        return Result.error(E.ENOTCONN)

    def _write(self, s: _Sock, c: Call, now: float, retry: bool) -> Result | None:
        if c.flags & ~_IO_FLAGS:
            raise DrillError(f"{c.name}() flags {c.flags:#x} are not supported", c.pos, unsupported=True)
        conn = s.conn
        err = self._pending_error(s) if conn is not None else 0
        if err:
            return Result.error(err)
        if conn is None or s.shut_wr:
            return Result.error(E.EPIPE)
        nonblock = s.nonblock or c.nonblock
        st = conn.state
        if st in _CONNECTING:
            return Result.error(E.EAGAIN) if nonblock else None
        if st not in _CAN_SEND:
            return Result(c.progress) if c.progress else Result.error(E.EPIPE)
        left = c.n - c.progress
        if left and conn.send_space:
            try:
                c.progress += conn.send(bytes(min(left, conn.send_space)), now)
            except TcpError as exc:
                return Result.error(to_oserror(exc).errno or E.EPIPE)
        if c.progress == c.n:
            return Result(c.n)
        if nonblock:
            return Result(c.progress) if c.progress else Result.error(E.EAGAIN)
        return None

    def _close(self, s: _Sock, c: Call, now: float, retry: bool) -> Result | None:
        if retry:
            conn = s.conn
            expired = s.linger_until is not None and now >= s.linger_until
            if conn is None or conn.state in _LINGER_DONE or expired:
                del self.socks[s.fd]
                return Result(0)
            return None
        if s.res is not None:
            s.res.release()
        if s.lst is not None:
            s.lst.close(now)
        conn = s.conn
        on, secs = s.linger
        if conn is not None and conn.state is not State.CLOSED:
            if on and secs == 0:
                if conn.state is not State.TIME_WAIT:
                    conn.abort(now, why="close() with SO_LINGER 0")
            else:
                with contextlib.suppress(LocalError):
                    conn.close(now, discard_input=True)
                if on and not s.nonblock and conn.state not in _LINGER_DONE:
                    s.linger_until = now + secs
                    return None
        del self.socks[s.fd]
        return Result(0)

    def _shutdown(self, s: _Sock, c: Call, now: float, retry: bool) -> Result:
        how = c.n
        if how not in (0, 1, 2):
            return Result.error(E.EINVAL)
        if s.lst is not None:
            if how in (0, 2):
                s.lst.close(now)
            return Result(0)
        conn = s.conn
        if conn is None or conn.state is State.CLOSED:
            return Result.error(E.ENOTCONN)
        if conn.state is State.SYN_SENT:
            conn.abort(now, why="shutdown() in SYN-SENT")
            return Result(0)
        if how in (0, 2):
            s.shut_rd = True
        if how in (1, 2) and not s.shut_wr:
            s.shut_wr = True
            with contextlib.suppress(LocalError):
                conn.close(now)
        return Result(0)

    def _fcntl(self, s: _Sock, c: Call, now: float, retry: bool) -> Result:
        return fcntl(s, c)

    def _setsockopt(self, s: _Sock, c: Call, now: float, retry: bool) -> Result:
        key = (c.level, c.optname)
        if key == (_SOL, _C["SO_LINGER"]):
            if not isinstance(c.value, tuple):
                return Result.error(E.EINVAL)
            s.linger = (1 if c.value[0] else 0, max(c.value[1], 0))
            return Result(0)
        if key not in _INT_OPTS:
            raise DrillError(f"socket option {c.optword or c.optname} is not supported on synack", c.pos,
                             unsupported=True)
        if not isinstance(c.value, int):
            return Result.error(E.EINVAL)
        v = c.value
        if key in ((_TCP, _C["TCP_KEEPIDLE"]), (_TCP, _C["TCP_KEEPINTVL"])) and not 1 <= v <= 32767:
            return Result.error(E.EINVAL)
        if key == (_TCP, _C["TCP_KEEPCNT"]) and not 1 <= v <= 127:
            return Result.error(E.EINVAL)
        if key == (_TCP, _C["TCP_USER_TIMEOUT"]) and v < 0:
            return Result.error(E.EINVAL)
        if key == (_TCP, _C["TCP_MAXSEG"]) and (s.conn is not None and s.conn.state is not State.CLOSED):
            return Result(0)  # Linux takes it but it changes nothing once connected
        s.opts[key] = v
        self._apply(s, now)
        return Result(0)

    def _apply(self, s: _Sock, now: float) -> None:
        """Options set on a live connection or listener take effect at once."""
        cfg = self._config(s)
        if s.lst is not None:
            s.lst.config = cfg
        conn = s.conn
        if conn is None or conn.state is State.CLOSED:
            return
        conn.config = conn.config.with_(snd_buf=cfg.snd_buf, rcv_buf=cfg.rcv_buf,
                                        user_timeout=cfg.user_timeout)
        conn.set_nodelay(cfg.nodelay)
        conn.set_keepalive(cfg.keepalive, now, idle=cfg.keepidle, interval=cfg.keepintvl, count=cfg.keepcnt)

    def _getsockopt(self, s: _Sock, c: Call, now: float, retry: bool) -> Result:
        key = (c.level, c.optname)
        cfg = s.conn.config if s.conn is not None else self._config(s)
        value: int | tuple[int, int]
        if key == (_SOL, _C["SO_LINGER"]):
            value = s.linger
        elif key == (_SOL, _C["SO_ERROR"]):
            value = self._pending_error(s)
        elif key == (_SOL, _C["SO_TYPE"]):
            value = symbols.SOCK_STREAM
        elif key == (_SOL, _C["SO_REUSEADDR"]):
            value = s.opts.get(key, 0)
        elif key == (_TCP, _C["TCP_MAXSEG"]):
            conn = s.conn
            value = conn.snd_mss if conn is not None and conn.state.synchronized else (cfg.mss or 536)
        elif key == (_TCP, _C["TCP_USER_TIMEOUT"]):
            value = round((cfg.user_timeout or 0) * 1000)
        elif key in _INT_OPTS:
            name = _INT_OPTS[key]
            assert name is not None
            raw = getattr(cfg, name)
            value = int(raw)  # bools and floats of Config as the kernel's integers
        else:
            raise DrillError(f"socket option {c.optword or c.optname} is not supported on synack", c.pos,
                             unsupported=True)
        return Result(0, value=value)

    # -- poll ----------------------------------------------------------------------------------

    def _poll(self, c: Call, now: float) -> Result | None:
        if c.deadline is None and c.timeout_ms > 0:
            c.deadline = now + c.timeout_ms / 1000
        revents = tuple(self._revents(fd, events) for fd, events in c.polls)
        ready = sum(1 for r in revents if r)
        if ready or c.timeout_ms == 0 or (c.deadline is not None and now >= c.deadline):
            return Result(ready, revents=revents)
        return None

    def _revents(self, fd: int, events: int) -> int:
        """Linux's ``tcp_poll`` mask for one socket, limited to what was asked (and ERR/HUP/NVAL)."""
        s = self.socks.get(fd)
        if s is None:
            return _POLLNVAL
        mask = 0
        conn = s.conn
        if s.lst is not None:
            mask = _POLLIN | _POLLRDNORM if s.lst.pending else 0
        elif conn is None:
            mask = _POLLOUT | _POLLWRNORM | _POLLHUP
        else:
            st = conn.state
            err = conn.state is State.CLOSED and isinstance(conn.error, RemoteError) and not s.reported
            if err:
                mask |= _POLLERR
            peer_fin = st in _PEER_FIN or conn.at_eof or st is State.CLOSED
            if st is State.CLOSED or (peer_fin and s.shut_wr):
                mask |= _POLLHUP
            if peer_fin:
                mask |= _POLLIN | _POLLRDNORM | _POLLRDHUP
            if conn.readable:
                mask |= _POLLIN | _POLLRDNORM
            if st not in _CONNECTING and (s.shut_wr or st is State.CLOSED or conn.send_space > 0):
                mask |= _POLLOUT | _POLLWRNORM
        return mask & (events | _POLLERR | _POLLHUP | _POLLNVAL)

    def wake_time(self, c: Call) -> float | None:
        """When a blocked call should be attempted again even if nothing happens (poll timeout,
        SO_LINGER timeout)."""
        if c.op == "poll":
            return c.deadline
        if c.op == "close":
            s = self.socks.get(c.fd)
            return s.linger_until if s is not None else None
        return None


def tcp_info(state: State, conn: Connection | None) -> dict[str, int]:
    """The ``tcpi_*`` fields whose meaning synack's TCB truly has (the rest are absent, and a
    code block that names one is UNSUPPORTED): state, options, the congestion window and
    ssthresh in segments, RTO/RTT/RTT variance in µs, the send MSS, the window shifts and the
    total retransmissions."""
    info = {"tcpi_state": symbols.LINUX_STATE[state]}
    if conn is None:
        return info
    snap = conn.snapshot()
    mss = max(int(snap["snd_mss"]), 1)
    opts = (symbols.CONSTANTS["TCPI_OPT_TIMESTAMPS"] if snap["timestamps"] else 0) \
        | (symbols.CONSTANTS["TCPI_OPT_SACK"] if snap["sack"] else 0) \
        | (symbols.CONSTANTS["TCPI_OPT_WSCALE"] if conn.ws_ok else 0)
    ssthresh = int(snap["ssthresh"])
    info.update({
        "tcpi_options": opts,
        "tcpi_snd_cwnd": int(snap["cwnd"]) // mss,
        "tcpi_snd_ssthresh": 0x7FFFFFFF if ssthresh >= 0x7FFFFFFF else ssthresh // mss,
        "tcpi_rto": round(float(snap["rto"]) * 1_000_000),
        "tcpi_rtt": round(float(snap["srtt"] or 0) * 1_000_000),
        "tcpi_rttvar": round(float(snap["rttvar"] or 0) * 1_000_000),
        "tcpi_snd_mss": mss,
        "tcpi_snd_wscale": int(snap["snd_wscale"]) if conn.ws_ok else 0,
        "tcpi_rcv_wscale": int(snap["rcv_wscale"]) if conn.ws_ok else 0,
        "tcpi_total_retrans": int(snap["retransmissions"]),
    })
    return info
