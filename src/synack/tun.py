"""Run a synack :class:`~synack.core.host.Host` against the real Linux kernel through a TUN device.

The kernel sees a point-to-point interface (say ``synack0``) that carries its own address
(``10.77.0.1/24``, ``fd77::1/64``); synack's host owns addresses on the far side of it
(``10.77.0.2``, ``fd77::2``), so the kernel routes every packet for them into the device, and
whatever synack writes to the device arrives at the kernel as if from the wire::

    kernel sockets ── 10.77.0.1 [synack0] ══ TUN fd ══ TunStack(Host 10.77.0.2) ── synack sockets

:class:`TunDevice` opens ``/dev/net/tun`` with ``IFF_TUN | IFF_NO_PI`` (raw IP packets, no
packet-information prefix), non-blocking, and configures address, MTU and link state over
netlink with pyroute2 (``IPRoute``, or ``IPRoute(netns=...)`` inside a namespace) — never by
running ``ip``. :class:`TunStack` drives the host in real time (``time.monotonic()``): one step
of its loop reads every packet the device has ready, feeds them to ``Host.receive``, fires due
timers, and writes ``Host.packets_to_send``; when nothing is ready it sleeps in ``poll`` until
the device is readable or the host's next deadline. The driver is the IP layer's receive path
too: it hands the host TCP segments and the ICMP/ICMPv6 errors that quote them, and drops (and
counts) every other packet the kernel sends into the device.

Threads
-------
The loop runs inside :meth:`TunStack.wait_until` (and :meth:`TunStack.flush`), in the thread
that waits: with one thread using synack's blocking sockets, that thread drives the stack, as in
the simulator, and pays no thread switch. Any number of threads may share a stack: one lock
(``TunStack.lock``, re-entrant) serialises everything that touches the host; the first thread
to wait *drives* — it sleeps in ``poll`` with the lock let go — and the others sleep on an event
each until the driver, after every step, finds their predicate true; when the driver's own wait
ends it hands the driving to the longest-waiting thread. This "leader/followers" arrangement was
measured against a thread of the stack's own that always drives (``background=True``, kept as an
option): equal with 8 and 50 threads, while with one thread the stack thread's switch per wait
cost 20 % of the throughput and 13 % more CPU per MB (``bench/bench_tun.py --threads``). The lock
is a plain ``threading.RLock``: a Python lock class cost 4 % of blocking-socket lifecycles per
CPU second (``bench/bench_lifecycles.py``). While nobody waits, packets queue in the
device (up to its ``txqueuelen``) and timers are late — call ``wait_until`` (or
:meth:`TunStack.run_for`) to let time pass, or use ``background=True``.

A device deleted under a running stack (``ip link del``: its fd's reads and writes fail with
EBADFD, ``poll`` reports POLLERR) closes the stack with :attr:`TunStack.error` saying so, at the
first read — never a loop spinning on the dead descriptor.

Network namespaces
------------------
Tests and benchmarks run everything in a private network namespace so that no packet can
leave the machine and nothing collides with the host's interfaces. A TUN device belongs to the
namespace its file descriptor was *opened* in, and a kernel socket to the namespace it was
*created* in; both keep working from any thread afterwards. So the approach here is:

* :func:`create_netns` / :func:`remove_netns` make and delete a named namespace
  (``/run/netns/NAME``, the same as ``ip netns add``), through pyroute2;
* :func:`in_netns` enters a namespace **for the calling thread only** (``setns(2)`` on
  ``/run/netns/NAME``, restored from ``/proc/thread-self/ns/net`` on exit). ``TunDevice``
  opens ``/dev/net/tun`` inside it, and :func:`netns_socket` creates kernel sockets inside it;
  the process as a whole, and every other thread, never changes namespace;
* the device is configured from outside with ``IPRoute(netns=NAME)``.

This keeps the synack side, the kernel-side peers (threads or child processes) and the test in
one process when that is convenient, without ``ip netns exec`` wrappers; a child process can
enter the namespace the same way (``bench/bench_tun.py`` does, to use a second CPU).
Checksums with offloads
-----------------------
With ``offload=True`` (``IFF_VNET_HDR``) every frame the kernel writes to us starts with a
virtio_net_hdr whose flags say how far its checksums can be trusted, and the driver acts on them
as a NIC driver's receive path does:

* ``VIRTIO_NET_HDR_F_NEEDS_CSUM`` (the skb was ``CHECKSUM_PARTIAL``): the packet was generated in
  this machine — a kernel socket's segment routed into the device — and has only ever been in
  memory. The TCP checksum field holds the pseudo-header sum, the rest was left for "hardware"
  to add; Linux delivers such packets locally without ever verifying them.
* ``VIRTIO_NET_HDR_F_DATA_VALID`` (``CHECKSUM_UNNECESSARY``): the checksum was already verified
  (by the NIC of a forwarded packet, or the kernel).

The IPv4 header checksum of either is computed (or verified, for a forwarded packet) by the
kernel in software. Such a frame goes to ``Host.receive(..., checksum_verified=True)``, which
parses it without summing either checksum (every length and offset is still checked) and counts
it in ``host.stats()["checksum_trusted"]``; the bytes are as trustworthy as the memory they were
copied from, and checking a sum the kernel itself left unfinished would only find our own bugs.
So no payload is summed in Python on the receive path: completing the partial checksum and then
verifying it again were two passes over every byte. A frame with neither flag — e.g. a packet
from a raw socket, whose bytes the kernel does not vouch for — is verified exactly as without
offloads (MUST-3: a checksum that could be wrong is always checked). With a pcap, the recorded
copy of a checksum-partial frame has its checksum completed (:func:`_from_vnet`), so captures
verify as they would on a wire; only the pcap pays that pass. The host gets a ``memoryview`` of
the read buffer past the virtio header, so a packet's payload is copied once, into its
``Segment``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import math
import os
import select
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Protocol, TypeVar, cast

from synack.core.connection import Config
from synack.core.host import Host, HostTracer
from synack.core.records import State
from synack.core.wire import Segment, build_headers_partial, build_packet, encode_options, internet_checksum
from synack.pcap import PcapWriter

__all__ = [
    "TunDevice",
    "TunError",
    "TunStack",
    "create_netns",
    "device_owners",
    "in_netns",
    "netns_socket",
    "remove_netns",
]

TUN_PATH: Final = "/dev/net/tun"
NETNS_DIR: Final = "/run/netns"
_TUNSETIFF: Final = 0x400454CA
_IFF_TUN: Final = 0x0001
_IFF_NO_PI: Final = 0x1000
_CLONE_NEWNET: Final = 0x40000000
_IFA_F_NODAD: Final = 0x02
_IFNAMSIZ: Final = 16
# Offloads (IFF_VNET_HDR): every packet read or written is preceded by a struct virtio_net_hdr
# (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset; native byte order).
_IFF_VNET_HDR: Final = 0x4000
_TUNSETOFFLOAD: Final = 0x400454D0
_TUN_F_CSUM: Final = 0x01
_TUN_F_TSO4: Final = 0x02
_TUN_F_TSO6: Final = 0x04
_VNET_HDR: Final = struct.Struct("=BBHHHH")
_VNET_NONE: Final = bytes(_VNET_HDR.size)
_NEEDS_CSUM: Final = 0x01
_DATA_VALID: Final = 0x02
# Frames whose checksums the kernel vouches for: partial (generated in this machine, never on a
# wire) or already validated (by the NIC or the kernel). Host.receive does not sum them again.
_CSUM_TRUSTED: Final = _NEEDS_CSUM | _DATA_VALID
_GSO_TCPV4: Final = 1
_GSO_TCPV6: Final = 4
_ACK_FLAG: Final = 0x10
_PSH_ACK: Final = 0x18
_PSH: Final = 0x08
_FIN: Final = 0x01
# The most payload a TSO segment may carry: the IPv4 total length (65535) less a 20-octet IP
# header and the longest TCP header (60).
_TSO_MAX: Final = 65535 - 20 - 60


class TunError(OSError):
    """The TUN device or the namespace could not be set up; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# Network namespaces
# ---------------------------------------------------------------------------------------------


def _pyroute2() -> Any:
    """pyroute2, imported on first use (it is slow to import and untyped)."""
    import pyroute2  # type: ignore[import-untyped]
    import pyroute2.netns  # type: ignore[import-untyped]

    return pyroute2


_T = TypeVar("_T")


def _off_loop(fn: Callable[[], _T]) -> _T:
    """Run a pyroute2 call. pyroute2 (≥ 0.9) runs an asyncio loop of its own inside its
    synchronous calls, which fails in a thread whose event loop is running (a TunStack made inside
    ``async def main()``); there the call runs in a short-lived helper thread instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="synack-netlink") as pool:
        return pool.submit(fn).result()


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    if _libc().setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        hint = " (needs root / CAP_SYS_ADMIN)" if err in (errno.EPERM, errno.EACCES) else ""
        raise TunError(err, f"cannot enter network namespace {what}: {os.strerror(err)}{hint}")


def _netns_path(name: str) -> str:
    return name if name.startswith("/") else os.path.join(NETNS_DIR, name)


def create_netns(name: str) -> None:
    """Create the named network namespace (like ``ip netns add NAME``); EEXIST if it exists."""
    _netns = _pyroute2().netns
    if os.path.exists(_netns_path(name)):
        raise TunError(errno.EEXIST, f"network namespace {name} already exists")
    if os.geteuid() != 0:
        raise TunError(errno.EPERM, f"creating network namespace {name} needs root (CAP_SYS_ADMIN)")
    try:
        _netns.create(name)
    except OSError as exc:
        raise TunError(exc.errno or errno.EPERM, f"cannot create network namespace {name}: {exc}") from None
    if not os.path.exists(_netns_path(name)):
        raise TunError(errno.EPERM, f"cannot create network namespace {name}")


def remove_netns(name: str) -> None:
    """Delete the named namespace (like ``ip netns del NAME``). Missing namespaces are ignored.
    The namespace itself lives on until its last device fd and socket are closed."""
    if os.path.exists(_netns_path(name)):
        _pyroute2().netns.remove(name)


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the body with the *calling thread* inside network namespace ``name`` (``None``: stay
    where we are). Sockets and TUN fds opened in the body belong to that namespace for life."""
    if name is None:
        yield
        return
    path = _netns_path(name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TunError(errno.ENOENT, f"network namespace {name} does not exist ({path})") from None
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(target)
        raise
    try:
        _setns(target, name)
        try:
            yield
        finally:
            _setns(home, "of this thread (restoring)")
    finally:
        os.close(target)
        os.close(home)


def netns_socket(name: str | None, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
                 proto: int = 0) -> socket.socket:
    """A kernel socket created inside namespace ``name`` (usable from any thread afterwards)."""
    with in_netns(name):
        return socket.socket(family, type, proto)


# ---------------------------------------------------------------------------------------------
# The device
# ---------------------------------------------------------------------------------------------


def _interface(spec: str) -> tuple[str, int]:
    iface = ipaddress.ip_interface(spec)
    if "/" not in spec:
        return str(iface.ip), 24 if iface.version == 4 else 64
    return str(iface.ip), iface.network.prefixlen


def _owners_hint(name: str) -> str:
    """Who holds the device, for the EBUSY message (a synack still closing its connections in
    the background keeps its device until they are all CLOSED)."""
    try:
        owners = device_owners(name)
    except OSError:
        return ""
    if not owners:
        return ""
    who = ", ".join(f"process {pid} ({cmd[:100]})" for pid, cmd in owners)
    return (f" by {who}; a synack that is finishing its connections (TIME-WAIT) keeps its device "
            f"until they are closed: wait, 'kill' it to reset them now, or use another --tun")


class TunDevice:
    """A TUN interface (raw IP, no PI header) opened non-blocking, optionally inside a namespace.

    ``kernel_addresses`` are the kernel's addresses on the interface with their prefix
    (``"10.77.0.1/24"``, ``"fd77::1/64"``): the prefix route sends everything else in that
    network — synack's addresses — into the device. IPv6 addresses are added without duplicate
    address detection so that they are usable at once.
    """

    def __init__(self, name: str = "synack0", *, netns: str | None = None,
                 kernel_addresses: Iterable[str] = ("10.77.0.1/24", "fd77::1/64"), mtu: int = 1500,
                 up: bool = True, offload: bool = False) -> None:
        if not 0 < len(name.encode()) < _IFNAMSIZ:
            raise ValueError(f"interface name {name!r} must be 1..15 bytes")
        if not 68 <= mtu <= 65535:
            raise ValueError(f"MTU {mtu} out of range 68..65535")
        self.name = name
        self.netns = netns
        self.mtu = mtu
        self.offload = offload
        self.kernel_addresses = [_interface(a) for a in kernel_addresses]
        self.fd = -1
        self.fd = self._open()
        try:
            self.configure(up=up)
        except BaseException:
            self.close()
            raise

    def _open(self) -> int:
        if not os.path.exists(TUN_PATH):
            raise TunError(errno.ENOENT, f"{TUN_PATH} does not exist: this kernel or container has no TUN "
                                         f"support (load it with 'modprobe tun', or give the container the "
                                         f"device)")
        with in_netns(self.netns):
            try:
                fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except PermissionError as exc:
                raise TunError(exc.errno, f"cannot open {TUN_PATH}: {exc.strerror} (a TUN device needs root "
                                          f"or CAP_NET_ADMIN)") from None
            except OSError as exc:
                raise TunError(exc.errno, f"cannot open {TUN_PATH}: {exc.strerror}") from None
            try:
                flags = _IFF_TUN | _IFF_NO_PI | (_IFF_VNET_HDR if self.offload else 0)
                ifr = struct.pack("16sH22x", self.name.encode(), flags)
                fcntl.ioctl(fd, _TUNSETIFF, ifr)
                if self.offload:
                    fcntl.ioctl(fd, _TUNSETOFFLOAD, _TUN_F_CSUM | _TUN_F_TSO4 | _TUN_F_TSO6)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EPERM, errno.EACCES):
                    msg = "creating a TUN device needs root or CAP_NET_ADMIN"
                elif exc.errno == errno.EBUSY:
                    msg = f"interface {self.name} exists and is in use{_owners_hint(self.name)}"
                else:
                    msg = f"TUNSETIFF failed: {exc.strerror}"
                raise TunError(exc.errno, f"cannot create TUN device {self.name}: {msg}") from None
        return fd

    @contextlib.contextmanager
    def _ipr(self) -> Iterator[Any]:
        iproute = _pyroute2().IPRoute
        ipr = iproute(netns=self.netns) if self.netns is not None else iproute()
        try:
            yield ipr
        finally:
            ipr.close()

    def _index(self, ipr: Any) -> int:
        found = ipr.link_lookup(ifname=self.name)
        if not found:
            raise TunError(errno.ENODEV, f"interface {self.name} vanished")
        return int(found[0])

    def configure(self, *, up: bool = True) -> None:
        """Set MTU and the kernel's addresses, and bring the link (and ``lo`` of a private
        namespace) up, over netlink."""
        _off_loop(lambda: self._configure(up=up))

    def _configure(self, *, up: bool) -> None:
        try:
            with self._ipr() as ipr:
                idx = self._index(ipr)
                ipr.link("set", index=idx, mtu=self.mtu)
                for addr, plen in self.kernel_addresses:
                    if ":" in addr:
                        ipr.addr("add", index=idx, address=addr, prefixlen=plen, flags=_IFA_F_NODAD)
                    else:
                        ipr.addr("add", index=idx, address=addr, prefixlen=plen)
                if self.netns is not None:
                    lo = ipr.link_lookup(ifname="lo")
                    if lo:
                        ipr.link("set", index=lo[0], state="up")
                ipr.link("set", index=idx, state="up" if up else "down")
        except TunError:
            raise
        except Exception as exc:  # pyroute2's NetlinkError is an Exception, not an OSError
            code = getattr(exc, "code", 0) or errno.EIO
            raise TunError(code, f"cannot configure {self.name} over netlink: {exc}") from None

    def set_link(self, up: bool) -> None:
        """Bring the kernel side of the link up or down (down = the cable is pulled: the kernel
        stops sending into the device and writes to it fail with EIO)."""
        def apply() -> None:
            with self._ipr() as ipr:
                ipr.link("set", index=self._index(ipr), state="up" if up else "down")

        _off_loop(apply)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        where = f" netns={self.netns}" if self.netns else ""
        return f"<TunDevice {self.name}{where} mtu={self.mtu} fd={self.fd}>"


# ---------------------------------------------------------------------------------------------
# Offloads: virtio-net headers, checksum completion, GSO coalescing
# ---------------------------------------------------------------------------------------------


def _from_vnet(frame: bytes) -> bytes:
    """The IP packet of a frame read with IFF_VNET_HDR, its checksum completed when the kernel
    left it partial (NEEDS_CSUM: the field holds the pseudo-header sum; the rest is ours). The
    receive path uses it only for the pcap copy (the host trusts such frames, see the module
    docstring); it sums the whole segment in Python."""
    flags, _gso, _hlen, _gsize, start, offset = _VNET_HDR.unpack_from(frame)
    pkt = frame[_VNET_HDR.size:]
    if not flags & _NEEDS_CSUM:
        return pkt
    at = start + offset
    if at + 2 > len(pkt):
        return pkt  # malformed: the host will count it
    # The field holds the pseudo-header sum, so the checksum of everything from csum_start on is
    # the segment's checksum.
    csum = internet_checksum(pkt[start:])
    return b"".join((pkt[:at], csum.to_bytes(2, "big"), pkt[at + 2:]))


def _tcp_layout(pkt: bytes) -> tuple[int, int, int] | None:
    """(IP header length, TCP header length, flags) of a plain IPv4/IPv6 TCP packet, else None."""
    v = pkt[0] >> 4
    if v == 4:
        ihl = (pkt[0] & 0x0F) * 4
        if ihl != 20 or pkt[9] != 6 or pkt[6] & 0x3F or pkt[7]:
            return None
    elif v == 6:
        ihl = 40
        if pkt[6] != 6:
            return None
    else:
        return None
    if len(pkt) < ihl + 20:
        return None
    return ihl, (pkt[ihl + 12] >> 4) * 4, pkt[ihl + 13]


def _same_flow(a: bytes, b: bytes, ihl: int, thl: int) -> bool:
    """Same addresses, ports, ACK, header length, window, urgent pointer and options."""
    src = 12 if ihl == 20 else 8
    return (a[src:ihl] == b[src:ihl] and a[ihl:ihl + 4] == b[ihl:ihl + 4]
            and a[ihl + 8:ihl + 13] == b[ihl + 8:ihl + 13] and a[ihl + 14:ihl + 16] == b[ihl + 14:ihl + 16]
            and a[ihl + 18:ihl + thl] == b[ihl + 18:ihl + thl])


def _gso_frame(group: list[bytes], ihl: int, thl: int, gso_size: int) -> bytes:
    """One GSO frame carrying the segments of ``group`` (consecutive, same flow): the first
    header, the last segment's flags, every payload."""
    first = group[0]
    hl = ihl + thl
    payload = b"".join([p[hl:] for p in group])
    hdr = bytearray(first[:hl])
    hdr[ihl + 13] = group[-1][ihl + 13]
    return b"".join((_gso_header(hdr, ihl, thl, len(payload), gso_size), payload))


def _tso_frame(src: str, dst: str, seg: Segment, ttl: int, tos: int, gso_size: int) -> bytes:
    """One GSO frame for a segment the core made larger than the MSS (TSO: ``Host.tso_max``),
    for the kernel to take as ``gso_size`` pieces. Only the headers are built here: the payload
    is never summed in Python."""
    hdr = build_headers_partial(src, dst, seg, len(seg.payload), ttl=ttl, tos=tos)
    ihl = 20 if hdr[0] >> 4 == 4 else 40
    gso = _GSO_TCPV4 if ihl == 20 else _GSO_TCPV6
    return b"".join((_VNET_HDR.pack(_NEEDS_CSUM, gso, len(hdr), gso_size, ihl, 16), hdr, seg.payload))


def _tso_packets(src: str, dst: str, seg: Segment, ttl: int, tos: int, mss: int) -> list[bytes]:
    """Software segmentation, for a device without offloads: the IP packets of the ``mss``
    pieces a TSO segment stands for, as :func:`~synack.core.wire.build_packet` makes them for the
    per-MSS segments the connection sends without TSO (every header field copied, the sequence
    number advanced, PSH and FIN on the last piece only, as Linux's GSO cuts them;
    tests/test_tun_offload.py). The full pieces share one header: only the sequence number and
    the TCP checksum change — the header's sum is taken once, and each piece's checksum adds
    the sequence number and the sum of its payload (still one pass over every octet: MUST-2)."""
    payload = seg.payload
    n = len(payload)
    flags = seg.flags & ~(_PSH | _FIN)
    tail = n - ((n - 1) // mss) * mss  # the last piece: 1..mss octets
    out: list[bytes] = []
    if n > tail:
        zero = Segment(seg.src_port, seg.dst_port, 0, seg.ack, flags, seg.window, seg.options, b"", seg.urg)
        hdr = build_headers_partial(src, dst, zero, mss, ttl=ttl, tos=tos)
        at = 20 if hdr[0] >> 4 == 4 else 40
        # The partial field holds the pseudo-header's sum; with it, the header's own words (its
        # sequence number zero) — every piece adds its sequence number and payload to this.
        base = int.from_bytes(hdr[at:], "big")
        head, mid, rest = hdr[:at + 4], hdr[at + 8:at + 16], hdr[at + 18:]
        pad = 8 if mss & 1 else 0  # an odd piece is summed as if a zero octet followed it
        seq0 = seg.seq
        join = b"".join
        view = memoryview(payload)
        for off in range(0, n - tail, mss):
            piece = view[off:off + mss]
            seq = (seq0 + off) & 0xFFFFFFFF
            r = (base + seq + (int.from_bytes(piece, "big") << pad)) % 0xFFFF
            out.append(join((head, seq.to_bytes(4, "big"), mid, (0xFFFF - r if r else 0).to_bytes(2, "big"),
                             rest, piece)))
    seq = (seg.seq + n - tail) & 0xFFFFFFFF
    last = Segment(seg.src_port, seg.dst_port, seq, seg.ack, seg.flags, seg.window, seg.options,
                   payload[n - tail:], seg.urg)
    out.append(build_packet(src, dst, last, ttl=ttl, tos=tos))
    return out


def _partial_frame(src: str, dst: str, seg: Segment, ttl: int, tos: int) -> bytes:
    """The frame of one segment with its TCP checksum left to the kernel (NEEDS_CSUM, checksum
    offload): :func:`~synack.core.wire.build_packet`'s packet but for that field, which the
    kernel completes — or, delivering the packet locally, never needs to. No payload octet is
    summed in Python, and the payload is copied once."""
    hdr = build_headers_partial(src, dst, seg, len(seg.payload), ttl=ttl, tos=tos)
    ihl = 20 if hdr[0] >> 4 == 4 else 40
    return b"".join((_VNET_HDR.pack(_NEEDS_CSUM, 0, len(hdr), 0, ihl, 16), hdr, seg.payload))


def _conn_frames(src: str, dst: str, segs: list[Segment], ttl: int, tos: int, mss: int) -> list[bytes]:
    """The frames for one connection's segments, in order, every TCP checksum left to the
    kernel: a TSO segment (larger than ``mss``) is one GSO frame of ``mss`` pieces; a run of
    consecutive data segments of one size, the last possibly shorter or with PSH (what
    :func:`_to_vnet` coalesces from the packets), one GSO frame of that size; any other
    segment one frame of its own (:func:`_partial_frame`). The frames are :func:`_to_vnet`'s
    of the built packets but for the checksums the kernel completes (tests/test_tun_offload.py)."""
    out: list[bytes] = []
    n = len(segs)
    i = 0
    while i < n:
        s = segs[i]
        size = len(s.payload)
        if size > mss:
            out.append(_tso_frame(src, dst, s, ttl, tos, mss))
            i += 1
            continue
        j = i + 1
        if s.flags == _ACK_FLAG and size:
            limit = 65535 - (20 if ":" not in src else 40) - 20 - len(encode_options(s.options))
            seq = (s.seq + size) & 0xFFFFFFFF
            total = size
            while j < n and total + size <= limit:
                q = segs[j]
                qsize = len(q.payload)
                if not 0 < qsize <= size or (q.flags != _ACK_FLAG and q.flags != _PSH_ACK) or q.seq != seq \
                        or q.ack != s.ack or q.window != s.window or q.options != s.options or q.urg != s.urg:
                    break
                total += qsize
                seq = (seq + qsize) & 0xFFFFFFFF
                j += 1
                if qsize < size or q.flags != _ACK_FLAG:
                    break  # a short segment or a PSH ends the run
        if j - i == 1:
            out.append(_partial_frame(src, dst, s, ttl, tos))
        else:
            last = segs[j - 1]
            run = Segment(s.src_port, s.dst_port, s.seq, s.ack, last.flags, s.window, s.options,
                          b"".join([q.payload for q in segs[i:j]]), s.urg)
            out.append(_tso_frame(src, dst, run, ttl, tos, size))
        i = j
    return out


def _gso_header(hdr: bytearray, ihl: int, thl: int, paylen: int, gso_size: int) -> bytes:
    """virtio_net_hdr + the IP and TCP headers ``hdr`` (changed in place) of a GSO frame carrying
    ``paylen`` octets in ``gso_size`` pieces: IP length and header checksum for the whole, the
    TCP checksum left partial (the pseudo-header sum) for the kernel, which never needs to
    finish it for local delivery."""
    hl = ihl + thl
    tcp_len = thl + paylen
    if ihl == 20:
        hdr[2:4] = (hl + paylen).to_bytes(2, "big")
        hdr[10:12] = b"\0\0"
        hdr[10:12] = internet_checksum(bytes(hdr[:20])).to_bytes(2, "big")
        pseudo = int.from_bytes(hdr[12:20], "big") + 6 + tcp_len
        gso = _GSO_TCPV4
    else:
        hdr[4:6] = tcp_len.to_bytes(2, "big")
        pseudo = int.from_bytes(hdr[8:40], "big") + 6 + tcp_len
        gso = _GSO_TCPV6
    r = pseudo % 0xFFFF
    hdr[ihl + 16:ihl + 18] = (r if r else 0xFFFF).to_bytes(2, "big")
    return _VNET_HDR.pack(_NEEDS_CSUM, gso, hl, gso_size, ihl, 16) + hdr


def _to_vnet(packets: list[bytes]) -> list[bytes]:
    """Frames for a device with IFF_VNET_HDR: runs of full-sized data segments of one flow
    become one GSO frame; everything else is sent as it is behind an empty header. (The
    driver's frames for the host's own packets, and the reference :func:`_conn_frames` is
    tested against.)"""
    out: list[bytes] = []
    n = len(packets)
    i = 0
    while i < n:
        p = packets[i]
        lay = _tcp_layout(p)
        if lay is None or lay[2] != _ACK_FLAG:
            out.append(_VNET_NONE + p)
            i += 1
            continue
        ihl, thl, _ = lay
        hl = ihl + thl
        size = len(p) - hl
        limit = 65535 - hl
        if size <= 0:
            out.append(_VNET_NONE + p)
            i += 1
            continue
        seq = (int.from_bytes(p[ihl + 4:ihl + 8], "big") + size) & 0xFFFFFFFF
        total = size
        j = i + 1
        while j < n and total + size <= limit:
            q = packets[j]
            if len(q) - hl > size or len(q) <= hl or q[0] != p[0] or (q[ihl + 12] >> 4) * 4 != thl:
                break
            qflags = q[ihl + 13]
            if (qflags != _ACK_FLAG and qflags != _PSH_ACK) or not _same_flow(p, q, ihl, thl) \
                    or int.from_bytes(q[ihl + 4:ihl + 8], "big") != seq:
                break
            qsize = len(q) - hl
            total += qsize
            seq = (seq + qsize) & 0xFFFFFFFF
            j += 1
            if qsize < size or qflags != _ACK_FLAG:
                break  # a short segment or a PSH ends the run
        if j - i == 1:
            out.append(_VNET_NONE + p)
        else:
            out.append(_gso_frame(packets[i:j], ihl, thl, size))
        i = j
    return out

# ---------------------------------------------------------------------------------------------
# Threads: the stack's lock and its waiters
# ---------------------------------------------------------------------------------------------


class _Suspendable(Protocol):
    """What ``threading.Condition`` uses of an ``RLock`` to let it go whatever its depth while it
    waits, and to take it back at that depth (CPython's ``_thread.RLock``)."""

    def _release_save(self) -> Any: ...

    def _acquire_restore(self, state: Any, /) -> None: ...


class _Waiter:
    """A thread in :meth:`TunStack.wait_until` while another thread drives: the driver sets
    ``event`` when ``predicate`` holds (or to hand over the driving)."""

    __slots__ = ("event", "predicate")

    def __init__(self, predicate: Callable[[], bool]) -> None:
        self.predicate = predicate
        self.event = threading.Event()


class _Writer:
    """A thread that writes the driver's frames to the device (``TunStack(write_thread=True)``).

    Linux runs its whole receive path for a packet written to a TUN device — IP, TCP, waking
    the socket's reader — inside that ``write``: without offloads, about as much CPU as
    synack spends making the packet. In a thread of its own (``os.write`` lets the GIL go) it
    runs on another core while the stack's thread goes on. Frames leave in the order they were
    queued; a full device queue (EAGAIN) is waited out in ``poll`` here, not in the stack's
    loop. Nothing here touches the host: the thread takes no lock but the GIL."""

    def __init__(self, fd: int, wake: int, name: str) -> None:
        self.fd = fd
        self.wake = wake  # the stack's eventfd: a deleted device wakes its loop
        self.queue: deque[bytes] = deque()
        self.event = threading.Event()
        self.stopping = False
        self.gone = False
        self.errors: Counter[str] = Counter()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def put(self, frames: list[bytes]) -> None:
        self.queue.extend(frames)
        self.event.set()

    def _run(self) -> None:
        queue, write, fd = self.queue, os.write, self.fd
        out = select.poll()
        out.register(fd, select.POLLOUT)
        while not self.stopping:
            self.event.wait()
            self.event.clear()
            while queue and not self.stopping:
                try:
                    write(fd, queue[0])
                except BlockingIOError:
                    out.poll(100)  # the device's queue is full: wait until it drains
                    continue
                except OSError as exc:
                    if exc.errno in _DEVICE_GONE:
                        self.gone = True
                        queue.clear()
                        with contextlib.suppress(OSError):
                            os.eventfd_write(self.wake, 1)
                        return
                    # EIO: the link is down — the frame is lost, as on a wire.
                    self.errors[f"tun_write_{errno.errorcode.get(exc.errno or 0, 'error')}"] += 1
                queue.popleft()

    def stop(self) -> None:
        """Stop after the frame being written (the rest are dropped, as the device is closing)."""
        self.stopping = True
        self.event.set()
        self.thread.join(5)


def device_owners(name: str) -> list[tuple[int, str]]:
    """(pid, command line) of the processes holding TUN device ``name`` open in the calling
    thread's network namespace (from ``/proc/PID/fdinfo``: a TUN fd shows ``iff: NAME``)."""
    here = _netns_inode("thread-self")
    found: list[tuple[int, str]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or _netns_inode(entry) != here:
            continue
        with contextlib.suppress(OSError):
            fds = os.listdir(f"/proc/{entry}/fdinfo")
            for fd in fds:
                with contextlib.suppress(OSError), open(f"/proc/{entry}/fdinfo/{fd}") as f:
                    if f"iff:\t{name}\n" in f.read():
                        with open(f"/proc/{entry}/cmdline", "rb") as c:
                            cmd = c.read().replace(b"\0", b" ").decode(errors="replace").strip()
                        found.append((int(entry), cmd))
                        break
    return found


def _netns_inode(pid: str) -> int:
    """The inode of a process's network namespace (-1 when it cannot be read): equal inodes,
    same namespace."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return -1


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------

# Packets the driver hands to the host: TCP (IPv6 also behind the extension headers hop-by-hop,
# routing and destination options, which the host walks), and ICMP/ICMPv6 *errors* — destination
# unreachable, source quench, time exceeded, parameter problem; ICMPv6 also packet too big —
# which quote one of its segments (RFC 9293 MUST-54..56, RFC 5927). Everything else (router
# solicitations, MLD reports, UDP, echo requests) is the IP layer's business: counted, dropped.
_ICMP4_ERRORS: Final = frozenset((3, 4, 11, 12))
_ICMP6_ERRORS: Final = frozenset((1, 2, 3, 4))
_IP6_TCP: Final = frozenset((6, 0, 43, 60))
# A read or write of a TUN fd whose interface was deleted fails with EBADFD.
_DEVICE_GONE: Final = frozenset((errno.EBADFD, errno.ENODEV))
_NEVER: Final = math.inf
_LONGEST_SLEEP: Final = 3600.0


def _to_host(pkt: bytes | memoryview) -> int:
    """0 when the packet is not the host's business, 1 for TCP, 2 for an ICMP error."""
    if len(pkt) < 20:
        return 0
    v = pkt[0] >> 4
    if v == 4:
        proto = pkt[9]
        if proto == 6:
            return 1
        ihl = (pkt[0] & 0x0F) * 4
        return 2 if proto == 1 and len(pkt) > ihl and pkt[ihl] in _ICMP4_ERRORS else 0
    if v == 6 and len(pkt) >= 40:
        nxt = pkt[6]
        if nxt in _IP6_TCP:
            return 1
        return 2 if nxt == 58 and len(pkt) > 40 and pkt[40] in _ICMP6_ERRORS else 0
    return 0


class TunStack:
    """A :class:`Host` wired to a TUN device and driven in real time.

    The same small interface as the simulator's adapter, so :mod:`synack.sockets` works on both:
    ``host``, ``now()``, ``flush()`` and ``wait_until(predicate, timeout)``.

    ``addresses`` are synack's own (default ``10.77.0.2`` and ``fd77::2``);
    ``kernel_addresses`` the kernel's on the device. ``pcap`` (a path or a ``PcapWriter``)
    records every packet the host sends and receives, with wall-clock timestamps. ``tracer``
    receives the host's trace records (state changes, segments); ``host`` replaces the host
    built here.

    ``offload=True`` turns on the device's segmentation offloads (``IFF_VNET_HDR`` with
    checksum, TSO4 and TSO6), as a NIC driver would: the kernel then hands synack TCP segments of
    up to 64 KiB (several MSS of payload, checksum left for us to fill in) instead of one packet
    per MSS, and runs of full-sized segments synack sends to one connection are written as one
    GSO packet that the kernel takes in as a single receive (what GRO does for a NIC). It also
    turns on TSO in the core (``Host.tso_max``): where a connection would send several
    full-sized segments back to back it makes one segment of up to 64 KB instead, written as one
    GSO packet with ``gso_size`` = the connection's send MSS — the per-MSS segments it stands for
    are the ones the core sends without TSO (PSH only on the last, one timestamp for all), and
    the pcap shows the large segment, as tcpdump does on a TSO NIC. The MSS both ends announce
    is unchanged; only the number of segments and packets crossing the device is not. Every TCP
    checksum we send is then left for the kernel to complete (``NEEDS_CSUM``, as a NIC's
    checksum offload; the kernel never needs to for local delivery): no payload is summed in
    Python on the send path. Off by default so that every packet crosses the device as it
    would cross a wire (and the pcap shows it so).

    Without offloads the core makes TSO segments all the same (unless the host has a tracer,
    which then sees exactly the segments on the wire) and the driver cuts them into the
    per-MSS packets they stand for (software segmentation, :func:`_tso_packets`, byte for byte
    the packets the connection sends without TSO): one header is summed per segment instead of
    one per packet, and the core's per-segment work is done once per 64 KB.
    ``stats()["tso_segments_out"]`` counts the TSO segments, either way.

    ``write_thread=True`` hands every frame to a thread of the stack's own that writes it to
    the device (:class:`_Writer`): Linux runs its receive path for our packet (IP, TCP, waking
    the reader) inside that write, so in a thread it overlaps the stack's own work on another
    core. It can pay where writes are many and small (without offloads), and not with offloads,
    where the few large writes gain less than handing them over costs. Measured on the loaded
    2-core machine it went both ways (sending without offloads 37 → 75 MB/s in one run, 93 → 76
    in another: ``bench/README.md``), so it is off by default.

    Threads (see the module documentation): every method may be called from any thread;
    :attr:`lock`, a ``threading.RLock`` that a waiting thread lets go whatever its depth,
    serialises everything that touches the host — calls into ``host`` and its connections made
    while another thread may be driving belong inside ``with stack.lock:``. The thread that waits
    drives the loop; with ``background=True`` a thread of the stack's own drives it all the time
    instead, so timers fire on time and packets are read while no thread waits.

    A device deleted under a running stack (``ip link del``) closes the stack: :attr:`error`
    says what happened, :meth:`wait_until` raises it (a :class:`TunError`, ENODEV), the
    callbacks of :meth:`add_close_callback` run, and nothing spins on the dead descriptor.
    """

    READ_BATCH: Final = 512

    def __init__(self, *, addresses: Iterable[str] = ("10.77.0.2", "fd77::2"),
                 kernel_addresses: Iterable[str] = ("10.77.0.1/24", "fd77::1/64"),
                 ifname: str = "synack0", netns: str | None = None, mtu: int = 1500,
                 config: Config | None = None, name: str = "synack", pcap: str | PcapWriter | None = None,
                 host: Host | None = None, tracer: HostTracer | None = None, offload: bool = False,
                 background: bool = False, write_thread: bool = False) -> None:
        self.device = TunDevice(ifname, netns=netns, kernel_addresses=kernel_addresses, mtu=mtu,
                                offload=offload)
        self.offload = offload
        try:
            self.host = host if host is not None else Host(addresses, name=name, config=config,
                                                           isn_key=os.urandom(32), mtu=mtu, tracer=tracer)
            # TSO in the core: with offload the kernel segments what we write, without it the
            # driver does (_output) — unless a tracer watches the segments the core sends.
            self.host.tso_max = _TSO_MAX if offload or self.host.tracer is None else 0
            self._own_pcap = isinstance(pcap, str)
            self.pcap: PcapWriter | None = PcapWriter(pcap) if isinstance(pcap, str) else pcap
        except BaseException:
            self.device.close()
            raise
        self.fd = self.device.fd
        self._readsize = 65536 + _VNET_HDR.size if offload else max(mtu, 1500) + 64
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self._poll.register(self._wake, select.POLLIN)
        self._pending: deque[bytes] = deque()
        self.counters: Counter[str] = Counter()
        self.closed = False
        self.error: TunError | None = None
        self.lock = threading.RLock()
        self._suspendable = cast(_Suspendable, self.lock)
        self._waiters: list[_Waiter] = []
        self._driver: int | None = None  # the thread running the loop (in wait_until)
        self._driver_pred: Callable[[], bool] | None = None
        self._asleep_until = _NEVER  # when the driver, asleep in poll, wakes by itself
        self._on_close: list[Callable[[TunError | None], None]] = []
        self._thread: threading.Thread | None = None
        self._writer = _Writer(self.fd, self._wake, f"synack-{ifname}-write") if write_thread else None
        if background:
            self._thread = threading.Thread(target=self._background, name=f"synack-{ifname}", daemon=True)
            self._thread.start()

    # -- the adapter interface ----------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic()

    def flush(self) -> None:
        """Send whatever the host has to send now (after a user call), and take in what the
        device already holds, without waiting."""
        with self.lock:
            self._step(0.0)

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Run the loop until ``predicate()`` is true (→ True) or ``timeout`` seconds of real time
        have passed (→ False). ``None`` waits without limit. With another thread driving, sleep
        until it finds ``predicate()`` true. Raises :class:`TunError` if the stack is (or gets)
        closed — :attr:`error` when the device disappeared. ``predicate`` is always called
        with :attr:`lock` held (by whichever thread is driving, after each of its steps)."""
        with self.lock:
            if predicate():
                return True
            self._check_open()
            end = None if timeout is None else time.monotonic() + timeout
            try:
                self._step(0.0)
                while not predicate():
                    self._check_open()
                    if end is not None and time.monotonic() >= end:
                        return False
                    if self._driver is None:
                        self._drive(predicate, end)
                    else:
                        self._follow(predicate, end)
                return True
            finally:
                if self._driver is None and self._waiters:
                    self._waiters[0].event.set()  # somebody must drive: the longest waiting

    def wakeup(self) -> None:
        """Make every thread waiting in ``wait_until`` check its predicate now (for predicates
        that depend on something other than the network, e.g. a helper thread). Takes no lock,
        so a signal handler may call it (while its thread drives or does not wait)."""
        if self.closed:
            return
        with contextlib.suppress(OSError):  # closed meanwhile
            os.eventfd_write(self._wake, 1)
        for w in list(self._waiters):
            w.event.set()

    def run_for(self, seconds: float) -> None:
        """Let ``seconds`` of real time pass with the stack running."""
        self.wait_until(lambda: False, seconds)

    def add_close_callback(self, callback: Callable[[TunError | None], None]) -> None:
        """Call ``callback(error)`` once when the stack closes — ``error`` is None after
        :meth:`close`, the :class:`TunError` when the device disappeared. It runs in the
        thread that closes the stack, with :attr:`lock` held."""
        self._on_close.append(callback)

    # -- the non-blocking pump (for an event loop: see synack.streams) ------------------------
    # An event loop watches ``fileno()`` for input and keeps one timer at
    # ``host.next_deadline()``; it calls ``process_readable()`` when the device is readable,
    # ``process_timers()`` when the timer fires, and ``transmit()`` after either and after every
    # user call. None of them ever waits. A device that disappeared closes the stack (the loop's
    # next call sees ``closed``).

    def fileno(self) -> int:
        """The device's file descriptor (non-blocking), to register with an event loop."""
        return self.fd

    def process_readable(self) -> int:
        """Feed every packet the device holds now to the host; returns how many were read."""
        with self.lock:
            if self.closed:
                return 0
            n = self._read_all()
            self._notify()
            return n

    def process_timers(self) -> None:
        """Fire the host's timers that are due now."""
        with self.lock:
            if self.closed:
                return
            now = time.monotonic()
            d = self.host.next_deadline()
            if d is not None and d <= now:
                self.host.handle_timeout(now)
                self._notify()

    def transmit(self) -> bool:
        """Write everything the host has to send now. False when the device's queue was full and
        packets wait (call again once the fd is writable)."""
        with self.lock:
            if self.closed:
                return True
            self._write(self._output(time.monotonic()))
            self._notify()
            return not self._pending

    # -- the loop -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        """Raise if the stack is closed: a fresh :class:`TunError` per caller (threads must not
        share one exception object), :attr:`error`'s when the device disappeared."""
        if self.closed:
            err = self.error
            raise TunError(err.errno, err.strerror) if err is not None else TunError(
                errno.EBADF, "the TUN stack is closed")

    def _drive(self, predicate: Callable[[], bool], end: float | None) -> None:
        """Run the loop in this thread (which holds the lock; nobody else drives) until
        ``predicate()`` or ``end``."""
        self._driver = threading.get_ident()
        self._driver_pred = predicate
        mono = time.monotonic
        host = self.host
        try:
            while not predicate():
                now = mono()
                limit = _LONGEST_SLEEP if end is None else end - now
                if limit <= 0:
                    return
                d = host.next_deadline()
                if d is not None and d - now < limit:
                    limit = max(d - now, 0.0)
                self._step(limit)
                self._check_open()
        finally:
            self._driver = None
            self._driver_pred = None

    def _follow(self, predicate: Callable[[], bool], end: float | None) -> None:
        """Sleep (the lock let go) until the driver finds ``predicate()`` true, hands the
        driving over, the stack closes, or ``end``."""
        waiter = _Waiter(predicate)
        self._waiters.append(waiter)
        try:
            held = self._suspendable._release_save()
            try:
                waiter.event.wait(None if end is None else max(end - time.monotonic(), 0.0))
            finally:
                self._suspendable._acquire_restore(held)
        finally:
            self._waiters.remove(waiter)

    def _background(self) -> None:
        """The stack's own thread (``background=True``): the driver, until the stack closes;
        every other thread's wait is a follower's."""
        with self.lock, contextlib.suppress(TunError):
            self._drive(lambda: self.closed, None)

    def _step(self, wait: float) -> None:
        """Read every packet that is ready (if none is, sleep up to ``wait`` seconds for one),
        fire due timers, write everything the host has to send, and wake the waiters."""
        if self.closed:
            return
        got = self._read_all()
        if not got and wait > 0 and not self._pending and not self.closed:
            self._sleep(wait)
        if self.closed:
            return
        now = time.monotonic()
        host = self.host
        d = host.next_deadline()
        if d is not None and d <= now:
            host.handle_timeout(now)
        self._write(self._output(now))
        if self._waiters or self._asleep_until != _NEVER:
            self._notify()

    def _sleep(self, wait: float) -> None:
        """Sleep in ``poll`` (the lock let go) until the device is readable, someone wakes us,
        or ``wait`` seconds; then read what arrived."""
        self._asleep_until = time.monotonic() + wait
        held = self._suspendable._release_save()
        try:
            ready = self._poll.poll(max(int(wait * 1000 + 0.999), 1) if wait > 0.0005 else 0)
        finally:
            self._suspendable._acquire_restore(held)
            self._asleep_until = _NEVER
        if self.closed:
            return
        for fd, _ in ready:
            if self.closed:
                return
            if fd == self._wake:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake)
            else:
                self._read_all()  # POLLERR too: a deleted device shows up as a failed read

    def _notify(self) -> None:
        """After a step: wake each waiter whose predicate now holds, and the driver asleep in
        ``poll`` when its own predicate holds or the host's next timer is due before it wakes."""
        for w in self._waiters:
            if not w.event.is_set():
                try:
                    ready = w.predicate()
                except Exception:
                    ready = True  # its own thread will meet the error
                if ready:
                    w.event.set()
        until = self._asleep_until
        if until != _NEVER and self._driver != threading.get_ident():
            pred = self._driver_pred
            d = self.host.next_deadline()
            if (d is not None and d < until) or (pred is not None and pred()):
                os.eventfd_write(self._wake, 1)

    def _read_all(self) -> int:
        fd = self.fd
        read = os.read
        host = self.host
        size = self._readsize
        pcap = self.pcap
        offload = self.offload
        now = time.monotonic()
        n = 0
        ignored = 0
        icmp = 0
        pkt: bytes | memoryview
        # TCP packets go to the host together (Host.receive_many: a run of one connection's
        # in-order segments is taken in at once), in order with the ICMP errors between them.
        batch: list[bytes | memoryview] = []
        trust: list[bool] = []
        while n < self.READ_BATCH:
            try:
                pkt = read(fd, size)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                if exc.errno in _DEVICE_GONE:
                    if batch:
                        host.receive_many(batch, now, checksum_verified=trust)
                        batch = []
                    self._gone()
                    break
                self.counters["tun_read_errors"] += 1
                break
            n += 1
            trusted = False
            if offload:
                # The kernel's checksum flags: trusted frames go to the host unsummed (the pcap
                # gets a copy with the checksum completed); the packet is a view, not a copy.
                trusted = bool(pkt[0] & _CSUM_TRUSTED)
                if pcap is not None:
                    pcap.write(_from_vnet(pkt), time.time())
                pkt = memoryview(pkt)[_VNET_HDR.size:]
            elif pcap is not None:
                pcap.write(pkt, time.time())
            kind = _to_host(pkt)
            if kind == 1:
                batch.append(pkt)
                trust.append(trusted)
            elif kind == 2:
                icmp += 1
                if batch:
                    host.receive_many(batch, now, checksum_verified=trust)
                    batch, trust = [], []
                host.receive(pkt, now, checksum_verified=trusted)
            else:
                ignored += 1
        if batch:
            host.receive_many(batch, now, checksum_verified=trust)
        if n:
            self.counters["packets_in"] += n
            if ignored:
                self.counters["ignored_not_tcp_icmp"] += ignored
            if icmp:
                self.counters["icmp_errors_in"] += icmp
        return n

    def _output(self, now: float) -> list[bytes]:
        """What goes to the device now: the host's IP packets, or with offload their frames —
        each TSO segment (larger than its connection's MSS) one GSO frame, the rest through
        :func:`_to_vnet`. The pcap gets every packet as the core made it."""
        host = self.host
        pcap = self.pcap
        if not self.offload:
            # Host.packets_to_send, but a TSO segment is cut into its MSS packets here.
            packets, batches = host.segments_to_send(now)
            tso = 0
            for conn, segs in batches:
                la, ra, ttl, tos, mss = conn.local_addr, conn.remote_addr, conn.ttl, conn.tos, conn.snd_mss
                for seg in segs:
                    if len(seg.payload) > mss:
                        packets += _tso_packets(la, ra, seg, ttl, tos, mss)
                        tso += 1
                    else:
                        packets.append(build_packet(la, ra, seg, ttl=ttl, tos=tos))
            if tso:
                self.counters["tso_segments_out"] += tso
            if packets:
                if pcap is not None:
                    ts = time.time()
                    for pkt in packets:
                        pcap.write(pkt, ts)
                self.counters["packets_out"] += len(packets)
            return packets
        plain, batches = host.segments_to_send(now)
        ts = time.time()
        if pcap is not None:
            for pkt in plain:
                pcap.write(pkt, ts)
        # The host's own packets (RSTs for no connection) carry their checksums; a connection's
        # leave with the TCP checksum for the kernel to complete (checksum offload).
        frames = _to_vnet(plain) if plain else []
        n = len(plain)
        tso = 0
        for conn, segs in batches:
            la, ra, ttl, tos, mss = conn.local_addr, conn.remote_addr, conn.ttl, conn.tos, conn.snd_mss
            n += len(segs)
            for seg in segs:
                if len(seg.payload) > mss:
                    tso += 1
                if pcap is not None:
                    pcap.write(build_packet(la, ra, seg, ttl=ttl, tos=tos), ts)
            frames += _conn_frames(la, ra, segs, ttl, tos, mss)
        if n:
            self.counters["packets_out"] += n
            if tso:
                self.counters["tso_segments_out"] += tso
        return frames

    def _write(self, packets: list[bytes]) -> None:
        writer = self._writer
        if writer is not None:
            if writer.gone:
                self._gone()
            elif packets:
                writer.put(packets)
                self.counters["device_writes"] += len(packets)
            return
        pending = self._pending
        if pending:
            pending.extend(packets)
            packets = list(pending)
            pending.clear()
        if not packets:
            return
        fd = self.fd
        write = os.write
        for i, frame in enumerate(packets):
            try:
                write(fd, frame)
            except BlockingIOError:
                pending.extend(packets[i:])
                break
            except OSError as exc:
                if exc.errno in _DEVICE_GONE:
                    self._gone()
                    return
                # EIO: the link is down (the cable is pulled) — the packet is lost, as on a wire.
                self.counters[f"tun_write_{errno.errorcode.get(exc.errno or 0, 'error')}"] += 1
        self.counters["device_writes"] += len(packets)

    def _gone(self) -> None:
        """The device was deleted under us (its fd reads and writes EBADFD): close the stack with
        an :attr:`error` that says so."""
        lost = sum(1 for c in self.host.connections() if c.state is not State.CLOSED)
        self.error = TunError(errno.ENODEV, f"the TUN device {self.device.name} disappeared (deleted with "
                                            f"'ip link del'?); {lost} connection(s) lost")
        self.counters["device_gone"] += 1
        self.close()

    # -- lifetime -----------------------------------------------------------------------------

    def set_link(self, up: bool) -> None:
        """Pull (False) or plug back (True) the virtual cable on the kernel's side."""
        self.device.set_link(up)

    def close(self) -> None:
        """Close the device (the kernel deletes the interface) and the pcap file. Threads waiting
        in :meth:`wait_until` wake and raise :class:`TunError`."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            os.eventfd_write(self._wake, 1)  # the driver, asleep in poll, wakes before the fds go
            for w in self._waiters:
                w.event.set()
            with contextlib.suppress(KeyError, ValueError):
                self._poll.unregister(self.fd)
            if self._writer is not None:
                self._writer.stop()  # before its descriptor is closed (and perhaps reused)
            os.close(self._wake)
            self.device.close()
            if self.pcap is not None and self._own_pcap:
                self.pcap.close()
            elif self.pcap is not None:
                self.pcap.flush()
            callbacks, self._on_close = self._on_close, []
            for callback in callbacks:
                callback(self.error)

    def __enter__(self) -> TunStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        if self._writer is not None:
            for k, v in self._writer.errors.items():
                out[k] = out.get(k, 0) + v
        out.update({f"host_{k}": v for k, v in self.host.stats().items()})
        return out

    def __repr__(self) -> str:
        return f"<TunStack {self.device!r} {self.host!r}>"
