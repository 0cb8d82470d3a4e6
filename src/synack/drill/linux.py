"""The Linux backend: the same scripts against the kernel's TCP, in real time
(``synack drill --against linux``).

Each run creates a private network namespace (``synack-drill-<pid>-<n>``) with a TUN device in it:
the kernel side of the device has the script's local address, and a route sends the remote
address (``192.0.2.1``, ``2001:db8::1``) into the device. The runner injects the script's inbound
packets by writing them to the device and reads the kernel's outbound packets from it; the
script's system calls are made on kernel sockets created inside the namespace
(:func:`synack.tun.netns_socket`). No packet can leave the namespace. The profile's and the
script's ``net.ipv4.tcp_*`` sysctls are set inside it (they are per-namespace). Everything is
removed when the run ends, whatever happened; every wait is bounded.

Blocking calls are emulated the way the synack backend makes them: every kernel socket is
non-blocking underneath, the script's notion of ``O_NONBLOCK`` is kept apart, and a call that
would block is attempted again as time passes (the kernel answers every attempt itself — a second
``connect`` returns 0 or the error exactly as a blocking one would). One exception: ``close`` on a
socket with ``SO_LINGER {1, t>0}`` does not wait here.

This module is the only place in the drill package that reads the wall clock or sleeps.
"""

from __future__ import annotations

import contextlib
import errno as E
import ipaddress
import itertools
import os
import select
import socket
import struct
import time
from typing import Any, Final

from synack.drill import symbols
from synack.drill.calls import Call, Result, fcntl
from synack.drill.commands import ShellPlan
from synack.drill.engine import Settings
from synack.drill.profiles import Profile
from synack.drill.script import DrillError
from synack.trace import PacketRecord
from synack.tun import TunDevice, TunError, create_netns, in_netns, netns_socket, remove_netns

__all__ = ["LinuxBackend", "unpack_tcp_info"]

_serial = itertools.count()
_C = symbols.CONSTANTS
_BUSY_SLICE: Final = 0.0005
_TCP_INFO: Final = struct.Struct("=8B24I")
_TCP_INFO_FIELDS: Final = (
    "tcpi_rto", "tcpi_ato", "tcpi_snd_mss", "tcpi_rcv_mss", "tcpi_unacked", "tcpi_sacked", "tcpi_lost",
    "tcpi_retrans", "tcpi_fackets", "tcpi_last_data_sent", "tcpi_last_ack_sent", "tcpi_last_data_recv",
    "tcpi_last_ack_recv", "tcpi_pmtu", "tcpi_rcv_ssthresh", "tcpi_rtt", "tcpi_rttvar", "tcpi_snd_ssthresh",
    "tcpi_snd_cwnd", "tcpi_advmss", "tcpi_reordering", "tcpi_rcv_rtt", "tcpi_rcv_space", "tcpi_total_retrans",
)
STACK: Final = "linux"
PEER: Final = "script"


def unpack_tcp_info(raw: bytes) -> dict[str, int]:
    """The fields of Linux's ``struct tcp_info`` up to ``tcpi_total_retrans``."""
    raw = raw.ljust(_TCP_INFO.size, b"\0")[:_TCP_INFO.size]
    v = _TCP_INFO.unpack(raw)
    info = {"tcpi_state": v[0], "tcpi_ca_state": v[1], "tcpi_retransmits": v[2], "tcpi_probes": v[3],
            "tcpi_backoff": v[4], "tcpi_options": v[5], "tcpi_snd_wscale": v[6] & 0xF,
            "tcpi_rcv_wscale": v[6] >> 4}
    info.update(zip(_TCP_INFO_FIELDS, v[8:], strict=True))
    return info


class _KSock:
    __slots__ = ("linger", "nonblock", "sock")

    def __init__(self, sock: socket.socket, nonblock: bool) -> None:
        self.sock = sock
        self.nonblock = nonblock
        self.linger = (0, 0)


class LinuxBackend:
    """The kernel in a namespace of its own, seen through a TUN device (see the module)."""

    name = STACK
    virtual = False

    def __init__(self, settings: Settings, plan: ShellPlan, profile: Profile,
                 records: list[Any] | None = None) -> None:
        self.settings = settings
        self.records = records
        self.ns = f"synack-drill-{os.getpid()}-{next(_serial)}"
        self.tun: TunDevice | None = None
        self.socks: dict[int, _KSock] = {}
        self._inbox: list[tuple[float, bytes]] = []
        self._pid = 0
        create_netns(self.ns)
        try:
            self._setup(settings, [*profile.sysctls.items(), *plan.sysctls])
        except BaseException:
            self.close()
            raise
        self._start = time.monotonic()

    def _setup(self, settings: Settings, sysctls: list[tuple[str, str]]) -> None:
        """The device, its address and the route to the script's address, made from a thread that
        has entered the namespace (a netlink socket belongs to the namespace it is opened in)."""
        v6 = ":" in settings.local_addr
        local = f"{settings.local_addr}/{48 if v6 else 16}"
        remote = str(ipaddress.ip_network(f"{settings.remote_addr}/{32 if v6 else 24}", strict=False))
        import pyroute2  # type: ignore[import-untyped]

        with in_netns(self.ns):
            try:
                self.tun = TunDevice("drill0", kernel_addresses=(local,), mtu=settings.mtu)
            except TunError as exc:
                raise DrillError(f"cannot set up the Linux namespace: {exc}") from None
            try:
                with pyroute2.IPRoute() as ipr:
                    idx = ipr.link_lookup(ifname="drill0")[0]
                    ipr.route("add", dst=remote, oif=idx)
            except Exception as exc:  # pyroute2's NetlinkError is not an OSError
                raise DrillError(f"cannot route {remote} into the TUN device: {exc}") from None
        for name, value in sysctls:
            self._sysctl(name, value)

    def _sysctl(self, name: str, value: str) -> None:
        if not name.startswith("net.ipv4.tcp_"):
            raise DrillError(f"sysctl {name}: only net.ipv4.tcp_* is set inside the namespace",
                             unsupported=True)
        path = "/proc/sys/" + name.replace(".", "/")
        with in_netns(self.ns):
            try:
                with open(path, "w") as f:
                    f.write(value)
            except OSError as exc:
                raise DrillError(f"sysctl {name}={value}: {exc.strerror}", unsupported=True) from None

    # -- the clock and the wire ----------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self._start

    def _receive(self, timeout: float) -> bool:
        assert self.tun is not None
        fd = self.tun.fd
        ready, _, _ = select.select([fd], [], [], max(timeout, 0.0))
        if not ready:
            return False
        got = False
        while True:
            try:
                pkt = os.read(fd, 65536)
            except BlockingIOError:
                break
            t = self.now()
            self._inbox.append((t, pkt))
            if self.records is not None:
                self._record(STACK, PEER, t, pkt)
            got = True
        return got

    def advance(self, limit: float, *, inclusive: bool, busy: bool) -> bool:
        if self._inbox:
            return True
        left = limit - self.now()
        if left <= 0:
            return self._receive(0.0)
        if self._receive(min(left, _BUSY_SLICE) if busy else left):
            return True
        return busy and self.now() < limit

    def move_to(self, t: float) -> None:
        while (left := t - self.now()) > 0:
            self._receive(left)

    def inject(self, packet: bytes) -> None:
        assert self.tun is not None
        os.write(self.tun.fd, packet)
        if self.records is not None:
            self._record(PEER, STACK, self.now(), packet)

    def take(self) -> list[tuple[float, bytes]]:
        out, self._inbox = self._inbox, []
        return out

    def _record(self, src: str, dst: str, t: float, packet: bytes) -> None:
        assert self.records is not None
        self._pid += 1
        self.records.append(PacketRecord(t, "send", src, dst, self._pid, 0, packet))
        self.records.append(PacketRecord(t, "deliver", src, dst, self._pid, 0, packet))

    # -- sockets -------------------------------------------------------------------------------

    def call(self, c: Call, retry: bool) -> Result | None:
        try:
            if c.op == "socket":
                return self._socket(c)
            if c.op == "poll":
                return self._poll(c)
            k = self.socks.get(c.fd)
            if k is None:
                return Result.error(E.EBADF)
            res: Result | None = getattr(self, "_" + c.op)(k, c, retry)
            return res
        except OSError as exc:
            return Result.error(exc.errno or E.EIO)

    def wake_time(self, c: Call) -> float | None:
        return c.deadline if c.op == "poll" else None

    def _socket(self, c: Call) -> Result:
        fam = socket.AF_INET6 if c.family == symbols.AF_INET6 else socket.AF_INET
        s = netns_socket(self.ns, fam, socket.SOCK_STREAM)
        s.setblocking(False)
        self.socks[s.fileno()] = _KSock(s, c.nonblock)
        return Result(s.fileno())

    def _bind(self, k: _KSock, c: Call, retry: bool) -> Result:
        assert c.addr is not None
        k.sock.bind(c.addr)
        return Result(0)

    def _listen(self, k: _KSock, c: Call, retry: bool) -> Result:
        k.sock.listen(c.n)
        return Result(0)

    def _accept(self, k: _KSock, c: Call, retry: bool) -> Result | None:
        try:
            s, _ = k.sock.accept()
        except BlockingIOError:
            return Result.error(E.EAGAIN) if k.nonblock else None
        s.setblocking(False)
        self.socks[s.fileno()] = _KSock(s, c.nonblock)
        return Result(s.fileno())

    def _connect(self, k: _KSock, c: Call, retry: bool) -> Result | None:
        """Each attempt is the kernel's connect(); a blocking one is attempted again only once the
        socket is writable (the handshake ended), when the kernel answers 0 or the error."""
        assert c.addr is not None
        if retry:
            _, writable, _ = select.select([], [k.sock], [], 0)
            if not writable:
                return None
        code = k.sock.connect_ex(c.addr)
        if code in (E.EINPROGRESS, E.EALREADY) and not k.nonblock:
            return None
        return Result(0) if code == 0 else Result.error(code)

    def _read(self, k: _KSock, c: Call, retry: bool) -> Result | None:
        flags = c.flags & ~_C["MSG_DONTWAIT"]
        while True:
            try:
                data = k.sock.recv(c.n - c.progress, flags)
            except BlockingIOError:
                if c.progress:
                    return Result(c.progress)
                return Result.error(E.EAGAIN) if (k.nonblock or c.nonblock) else None
            c.progress += len(data)
            if not data or c.progress >= c.n or not flags & _C["MSG_WAITALL"]:
                return Result(c.progress)

    def _write(self, k: _KSock, c: Call, retry: bool) -> Result | None:
        flags = (c.flags & ~_C["MSG_DONTWAIT"]) | _C["MSG_NOSIGNAL"]
        while c.progress < c.n:
            try:
                c.progress += k.sock.send(bytes(c.n - c.progress), flags)
            except BlockingIOError:
                if k.nonblock or c.nonblock:
                    return Result(c.progress) if c.progress else Result.error(E.EAGAIN)
                return None
        return Result(c.n)

    def _close(self, k: _KSock, c: Call, retry: bool) -> Result:
        del self.socks[c.fd]
        k.sock.close()
        return Result(0)

    def _shutdown(self, k: _KSock, c: Call, retry: bool) -> Result:
        k.sock.shutdown(c.n)
        return Result(0)

    def _fcntl(self, k: _KSock, c: Call, retry: bool) -> Result:
        return fcntl(k, c)

    def _setsockopt(self, k: _KSock, c: Call, retry: bool) -> Result:
        if isinstance(c.value, tuple):
            k.sock.setsockopt(c.level, c.optname, struct.pack("ii", *c.value))
        else:
            assert c.value is not None
            k.sock.setsockopt(c.level, c.optname, c.value)
        return Result(0)

    def _getsockopt(self, k: _KSock, c: Call, retry: bool) -> Result:
        if (c.level, c.optname) == (symbols.SOL_SOCKET, _C["SO_LINGER"]):
            on, secs = struct.unpack("ii", k.sock.getsockopt(c.level, c.optname, 8))
            return Result(0, value=(on, secs))
        if (c.level, c.optname) == (symbols.IPPROTO_TCP, _C["TCP_INFO"]):
            raise DrillError("getsockopt(TCP_INFO) is not supported: use a %{ }% block", c.pos,
                             unsupported=True)
        return Result(0, value=k.sock.getsockopt(c.level, c.optname))

    def _poll(self, c: Call) -> Result | None:
        if c.deadline is None and c.timeout_ms > 0:
            c.deadline = self.now() + c.timeout_ms / 1000
        p = select.poll()
        for fd, events in c.polls:
            p.register(self.socks[fd].sock.fileno() if fd in self.socks else fd, events)
        got = dict(p.poll(0))
        revents = tuple(got.get(fd, 0) for fd, _ in c.polls)
        ready = sum(1 for r in revents if r)
        if ready or c.timeout_ms == 0 or (c.deadline is not None and self.now() >= c.deadline):
            return Result(ready, revents=revents)
        return None

    def tcp_info(self, fd: int) -> dict[str, int]:
        k = self.socks.get(fd)
        if k is None:
            raise DrillError(f"code block: file descriptor {fd} is not open")
        return unpack_tcp_info(k.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104))

    def close(self) -> None:
        """Close every socket and the device, and remove the namespace (always)."""
        for k in self.socks.values():
            with contextlib.suppress(OSError):
                k.sock.close()
        self.socks.clear()
        try:
            if self.tun is not None:
                self.tun.close()
        finally:
            remove_netns(self.ns)
