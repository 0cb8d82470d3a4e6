"""A host: many connections, listeners and ports on a set of IP addresses (sans-IO).

The host takes whole IP packets in (:meth:`Host.receive`) and gives whole IP packets out
(:meth:`Host.packets_to_send`); a driver (the simulator, the TUN device) moves them and owns the
clock. It demultiplexes by the 4-tuple with one dict lookup, answers segments for no connection
with the RST of RFC 9293 §3.10.7.1, keeps listeners with a bounded SYN backlog and accept queue,
allocates ephemeral ports, chooses RFC 6528 initial sequence numbers, applies the bind rules of
``SO_REUSEADDR`` (Linux semantics), reopens a TIME-WAIT connection on a new SYN (MAY-2), and
counts everything it does.

No module-level mutable state: a process may hold any number of hosts.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import ipaddress
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Final

from synack.core._mypyc import mypyc_attr
from synack.core.connection import Config, Connection, LocalError, reset_for
from synack.core.cookies import check_cookie, make_cookie, ts_options_decode, ts_options_encode
from synack.core.records import (
    Cause,
    Drop,
    DropRecord,
    HostNote,
    Note,
    Record,
    Recorder,
    ResetReason,
    ResetRecord,
    State,
)
from synack.core.runs import continues, only_text_left, starts_run, take_text
from synack.core.tcb import wscale_for
from synack.core.wire import (
    ACK,
    RST,
    SYN,
    Mss,
    Nop,
    Option,
    SackPermitted,
    Segment,
    Timestamps,
    WindowScale,
    WireError,
    build_packet,
    is_icmp,
    parse_icmp_error,
    parse_packet,
    seq_gt,
)

__all__ = ["AddressInUse", "AddressNotAvailable", "Host", "InvalidAddress", "Listener", "Reservation"]

Key = tuple[str, int, str, int]
HostTracer = Callable[[Record], None]

_MASK: Final = 0xFFFFFFFF


class AddressInUse(LocalError):
    """The local address and port are taken (errno EADDRINUSE)."""


class AddressNotAvailable(LocalError):
    """The address is not one of this host's, or no ephemeral port is free (EADDRNOTAVAIL)."""


class InvalidAddress(LocalError):
    """A broadcast, multicast or unspecified remote address (MUST-46), or a family mismatch."""


def _wildcard(addr: str) -> bool:
    return addr in ("0.0.0.0", "::", "")


def _family(addr: str) -> int:
    return 6 if ":" in addr else 4


def _invalid_peer(addr: str) -> bool:
    """Addresses no TCP connection can have at the far end (MUST-46, MUST-57, MUST-63)."""
    ip = ipaddress.ip_address(addr)
    if ip.is_multicast or ip.is_unspecified:
        return True
    return isinstance(ip, ipaddress.IPv4Address) and (addr == "255.255.255.255")


def _martian(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A source address no packet from a network may carry (what Linux calls martian): loopback,
    "this network" (0.0.0.0/8), reserved (240.0.0.0/4), an IPv4-mapped IPv6 address. Multicast,
    unspecified and the limited broadcast are :func:`_invalid_peer`'s."""
    if ip.is_loopback:
        return True
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.packed[0] == 0 or ip.packed[0] >= 240
    return ip.ipv4_mapped is not None


class Reservation:
    """A local address and port held by a socket that has called bind() but not yet listen() or
    connect(). Counts in the bind-conflict rules like any other user of the port."""

    __slots__ = ("host", "local_addr", "local_port", "released", "reuseaddr")

    def __init__(self, host: Host, addr: str, port: int, reuseaddr: bool) -> None:
        self.host = host
        self.local_addr = addr
        self.local_port = port
        self.reuseaddr = reuseaddr
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.host._unbind(self, self.local_port)


class Listener:
    """A passive OPEN on (address, port): children are born in SYN-RECEIVED on each SYN, wait in
    a bounded accept queue once ESTABLISHED, and are handed out by :meth:`accept`.

    ``backlog`` bounds the accept queue; ``syn_backlog`` bounds the children still in
    SYN-RECEIVED. A full queue drops the SYN (the peer retransmits) — it never grows."""

    __slots__ = (
        "_accept_q",
        "backlog",
        "closed",
        "config",
        "cookies_until",
        "host",
        "local_addr",
        "local_port",
        "on_ready",
        "reuseaddr",
        "syn_backlog",
        "syn_pending",
    )

    def __init__(self, host: Host, addr: str, port: int, backlog: int, syn_backlog: int,
                 config: Config, reuseaddr: bool) -> None:
        self.host = host
        self.local_addr = addr
        self.local_port = port
        self.backlog = max(backlog, 1)
        self.syn_backlog = max(syn_backlog, 1)
        self.config = config
        self.reuseaddr = reuseaddr
        self.closed = False
        self.syn_pending = 0
        self.cookies_until = -1.0  # a cookie ACK is looked at until then (cookies were sent)
        self._accept_q: deque[Connection] = deque()
        self.on_ready: Callable[[Listener], None] | None = None

    @property
    def state(self) -> State:
        return State.CLOSED if self.closed else State.LISTEN

    @property
    def pending(self) -> int:
        """Connections ready for :meth:`accept`."""
        return len(self._accept_q)

    def accept(self) -> Connection | None:
        """The oldest ESTABLISHED (or already further) child, or None when none is waiting."""
        if self.closed:
            raise LocalError("error: listener is closed")
        return self._accept_q.popleft() if self._accept_q else None

    def close(self, now: float) -> None:
        """Stop listening; children not yet accepted are reset (as Linux does)."""
        if self.closed:
            return
        self.closed = True
        self.host._close_listener(self, now)

    def _enqueue(self, conn: Connection) -> None:
        self._accept_q.append(conn)
        if self.on_ready is not None:
            self.on_ready(self)


@mypyc_attr(allow_interpreted_subclasses=True)
class Host:
    """Connections, listeners and ports of one host (one or more IPv4/IPv6 addresses).

    ``isn_key`` is the secret of RFC 6528's F() and of SYN cookies; give each host its own (the
    simulator derives it from the seed so that runs repeat exactly; the TUN driver uses
    ``os.urandom``). An address may carry its prefix (``10.0.0.1/24``): the subnet's broadcast
    address is then a martian source too. ``syn_cookies`` is ``"auto"`` (answer a SYN with a
    cookie when a listener's SYN queue is full, RFC 4987 §3.6 — Linux's default), ``"always"``
    or ``"never"``. ``tracer``,
    when set, receives every record of the host and its connections
    (:mod:`synack.core.records`). ``connection_class`` is the TCB a host makes (a subclass may
    model another TCP).
    """

    connection_class: ClassVar[type[Connection]] = Connection

    def __init__(
        self,
        addresses: Iterable[str],
        *,
        name: str = "host",
        config: Config | None = None,
        isn_key: bytes | None = None,
        mtu: int = 1500,
        tracer: HostTracer | None = None,
        ephemeral: tuple[int, int] = (32768, 60999),
        syn_cookies: str = "auto",
    ) -> None:
        self.name = name
        interfaces = [ipaddress.ip_interface(a) for a in addresses]
        self.addresses: list[str] = [str(i.ip) for i in interfaces]
        if not self.addresses:
            raise ValueError("a host needs at least one address")
        if syn_cookies not in ("auto", "always", "never"):
            raise ValueError(f"syn_cookies must be 'auto', 'always' or 'never', not {syn_cookies!r}")
        self.syn_cookies = syn_cookies
        self._addrset = frozenset(self.addresses)
        # Subnet broadcast addresses (martian sources), for addresses given with a prefix.
        self._broadcasts = frozenset(str(i.network.broadcast_address) for i in interfaces
                                     if i.version == 4 and i.network.prefixlen < 31)
        self.config = config or Config()
        self.mtu = mtu
        #: TSO: the driver can cut a TCP segment carrying up to this many octets of payload into
        #: MSS-sized ones (0 = it cannot: every segment fits the MTU). Read by each connection
        #: when it is made; the driver that sets it must segment what it gets (synack.tun does).
        self.tso_max = 0
        self.isn_key = isn_key if isn_key is not None else hashlib.sha256(name.encode()).digest()
        self._recorder: Recorder | None = None
        self.tracer = tracer
        lo, hi = ephemeral
        if not 1 <= lo <= hi <= 65535:
            raise ValueError("bad ephemeral port range")
        self._eph_lo, self._eph_hi = lo, hi
        self._eph_next = lo + int.from_bytes(self._prf(b"ephemeral")[:4], "big") % (hi - lo + 1)
        self.conns: dict[Key, Connection] = {}
        self.listeners: dict[tuple[str, int], Listener] = {}
        # port -> its user (a Listener, Connection or Reservation), or a list of them when it has
        # several: most ports (ephemeral ones) have one, and a list would cost ~60 octets each.
        self._ports: dict[int, Any] = {}
        self._parent: dict[Key, Listener] = {}
        self._dirty: dict[Connection, None] = {}
        self._stray: list[bytes] = []
        self._heap: list[tuple[float, int, Connection]] = []
        self._sched: dict[Connection, float] = {}
        self._tick = 0
        self.now = 0.0
        self.counters: Counter[str] = Counter()
        self.closed_connections = 0
        # One bound method shared by every connection (a bound method per connection is 64 bytes).
        self._notify_cb: Callable[[Connection], None] = self._notify
        # Remote addresses already parsed by _peer (ipaddress costs more than the rest of connect).
        self._peers: dict[str, tuple[str, bool, bool]] = {}

    # -------------------------------------------------------------------------------------
    # ISNs (RFC 6528 / RFC 9293 §3.4.1, SHLD-1)
    # -------------------------------------------------------------------------------------

    def _prf(self, data: bytes) -> bytes:
        return hashlib.blake2s(data, key=self.isn_key[:32]).digest()

    def isn(self, key: Key, now: float) -> int:
        """ISN = M + F(localip, localport, remoteip, remoteport, secretkey): M is a 4 µs clock
        (RFC 9293 §3.4.1), F a keyed hash (BLAKE2s with the host's secret)."""
        la, lp, ra, rp = key
        f = int.from_bytes(self._prf(f"{la}|{lp}|{ra}|{rp}".encode())[:4], "big")
        return (int(now * 250_000) + f) & _MASK

    def _ts_offset(self, key: Key) -> int:
        la, lp, ra, rp = key
        return int.from_bytes(self._prf(f"ts|{la}|{lp}|{ra}|{rp}".encode())[:4], "big")

    # -------------------------------------------------------------------------------------
    # Tracing
    # -------------------------------------------------------------------------------------

    @property
    def tracer(self) -> HostTracer | None:
        """Where the records go (None: nowhere). Set it at any time; connections made before
        keep the tracer they were made with."""
        return self._recorder.sink if self._recorder is not None else None

    @tracer.setter
    def tracer(self, sink: HostTracer | None) -> None:
        self._recorder = Recorder(self.name, sink) if sink is not None else None

    def _drop(self, reason: Drop, detail: str = "", conn: Key | None = None) -> None:
        if self._recorder is not None:
            self._recorder.sink(DropRecord(self.now, self.name, conn, reason, detail))

    def _note(self, note: Note, addr: str, port: int) -> None:
        if self._recorder is not None:
            self._recorder.sink(HostNote(self.now, self.name, note, addr, port))

    def _peer(self, addr: str) -> tuple[str, bool, bool]:
        """The normal text form of a remote address, whether no TCP connection can have it at the
        far end (_invalid_peer), and whether no packet from a network can carry it as its source
        (invalid, martian, one of ours, our subnet's broadcast). Raises ValueError when ``addr``
        is not an IP address. Remembered per address string; the memory is bounded (forgotten
        when it grows large)."""
        hit = self._peers.get(addr)
        if hit is None:
            ip = ipaddress.ip_address(addr)
            norm = str(ip)
            invalid = _invalid_peer(norm)
            martian = invalid or _martian(ip) or norm in self._addrset or norm in self._broadcasts
            if any(ipaddress.ip_address(a).is_loopback for a in self.addresses) and ip.is_loopback:
                martian = norm in self._addrset  # a loopback host talks to loopback peers
            if len(self._peers) >= 4096:
                self._peers.clear()
            hit = self._peers[addr] = (norm, invalid, martian)
        return hit

    # -------------------------------------------------------------------------------------
    # Ports and the bind rules (L11)
    # -------------------------------------------------------------------------------------

    def _check_addr(self, addr: str) -> str:
        try:
            norm = str(ipaddress.ip_address(addr)) if addr else ""
        except ValueError:
            raise InvalidAddress(f"error: {addr!r} is not an IP address") from None
        if norm and not _wildcard(norm) and norm not in self._addrset:
            raise AddressNotAvailable(f"error: {norm} is not an address of host {self.name}")
        return norm

    def _conflicts(self, addr: str, port: int, reuseaddr: bool, *, listening: bool) -> bool:
        """Linux bind semantics (``inet_csk_bind_conflict``): another user of the port with an
        overlapping address conflicts, unless both set SO_REUSEADDR and the other is not
        listening. So a listener blocks every bind() and listen() of its port, whatever the
        options; a connection in TIME-WAIT gives way only when it, too, had SO_REUSEADDR (a
        server that sets it on every start can restart beside its old connections, one that did
        not cannot); and a socket may listen beside other sockets bound with SO_REUSEADDR (not
        listening yet). ``listening`` says whether the caller is listen() (the same rule
        applies: Linux checks again there, and the other's state decides)."""
        for other in self._users(port):
            oaddr = other.local_addr
            if not (_wildcard(addr) or _wildcard(oaddr) or oaddr == addr):
                continue
            if _wildcard(addr) and _wildcard(oaddr) and oaddr and addr and _family(oaddr) != _family(addr):
                continue
            if isinstance(other, Listener):
                return True
            if isinstance(other, Connection) and other.state is State.CLOSED:
                continue
            if reuseaddr and other.reuseaddr:
                continue
            return True
        return False

    def _users(self, port: int) -> list[Any] | tuple[Any, ...]:
        cur = self._ports.get(port)
        if cur is None:
            return ()
        return cur if type(cur) is list else (cur,)

    def _bind(self, obj: Any, port: int) -> None:
        cur = self._ports.get(port)
        if cur is None:
            self._ports[port] = obj
        elif type(cur) is list:
            cur.append(obj)
        else:
            self._ports[port] = [cur, obj]

    def _unbind(self, obj: Any, port: int) -> None:
        cur = self._ports.get(port)
        if cur is None:
            return
        if type(cur) is list:
            with contextlib.suppress(ValueError):
                cur.remove(obj)
            if len(cur) == 1:
                self._ports[port] = cur[0]
            elif not cur:
                del self._ports[port]
        elif cur is obj:
            del self._ports[port]

    def bind(self, addr: str, port: int, *, reuseaddr: bool = False) -> Reservation:
        """Reserve ``addr``:``port`` (port 0 = an ephemeral port). Raises AddressInUse (L11)."""
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range 0..65535")
        norm = self._check_addr(addr)
        if port == 0:
            port = self._ephemeral_port(norm, None)
        elif self._conflicts(norm, port, reuseaddr, listening=False):
            raise AddressInUse(f"error: address {norm or '*'}:{port} already in use")
        res = Reservation(self, norm, port, reuseaddr)
        self._bind(res, port)
        return res

    def _ephemeral_port(self, addr: str, remote: tuple[str, int] | None) -> int:
        span = self._eph_hi - self._eph_lo + 1
        for _ in range(span):
            port = self._eph_next
            self._eph_next = self._eph_lo + (port + 1 - self._eph_lo) % span
            if port not in self._ports:
                return port
        raise AddressNotAvailable("error: no ephemeral port available")

    # -------------------------------------------------------------------------------------
    # User calls
    # -------------------------------------------------------------------------------------

    def listen(self, port: int, addr: str = "", *, backlog: int = 128, syn_backlog: int | None = None,
               config: Config | None = None, reuseaddr: bool = False,
               reservation: Reservation | None = None, now: float | None = None) -> Listener:
        """Passive OPEN on ``addr`` (empty = every address of the host) and ``port``. ``now``, when
        given, is the time of the call (for the trace record; the host's clock otherwise)."""
        if now is not None:
            self.now = now
        if reservation is not None:
            addr, port, reuseaddr = reservation.local_addr, reservation.local_port, reservation.reuseaddr
            reservation.release()
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} out of range 1..65535")
        norm = self._check_addr(addr)
        if self._conflicts(norm, port, reuseaddr, listening=True):
            if reservation is not None:
                self._bind(reservation, port)
                reservation.released = False
            raise AddressInUse(f"error: address {norm or '*'}:{port} already in use")
        syn_q = syn_backlog if syn_backlog is not None else max(backlog, 128)
        lst = Listener(self, norm, port, backlog, syn_q, config or self.config, reuseaddr)
        self.listeners[(norm, port)] = lst
        self._bind(lst, port)
        self._note(Note.LISTEN, norm or "*", port)
        return lst

    def connect(self, remote_addr: str, remote_port: int, now: float, *, local_addr: str | None = None,
                local_port: int = 0, config: Config | None = None, reuseaddr: bool = False,
                reservation: Reservation | None = None) -> Connection:
        """Active OPEN to ``remote_addr``:``remote_port``; returns the connection in SYN-SENT."""
        self.now = now
        if not 1 <= remote_port <= 65535:
            raise ValueError(f"port {remote_port} out of range 1..65535")
        try:
            remote, invalid, _ = self._peer(remote_addr)
        except ValueError:
            raise InvalidAddress(f"error: {remote_addr!r} is not an IP address") from None
        if invalid:
            raise InvalidAddress(f"error: cannot connect to {remote} (MUST-46)")
        if reservation is not None:
            local_addr = reservation.local_addr or None
            local_port = reservation.local_port
            reuseaddr = reservation.reuseaddr
        if local_addr is None or _wildcard(local_addr):
            # MUST-44: the IP layer chooses the source address (first of the right family).
            fam = _family(remote)
            cands = [a for a in self.addresses if _family(a) == fam]
            if not cands:
                raise InvalidAddress(f"error: host {self.name} has no IPv{fam} address")
            local = cands[0]
        else:
            local = self._check_addr(local_addr)
            if _family(local) != _family(remote):
                raise InvalidAddress("error: local and remote addresses are of different families")
        if reservation is None:
            if local_port == 0:
                local_port = self._ephemeral_port(local, (remote, remote_port))
            elif self._conflicts(local, local_port, reuseaddr, listening=False):
                raise AddressInUse(f"error: address {local}:{local_port} already in use")
        key = (local, local_port, remote, remote_port)
        old = self.conns.get(key)
        if old is not None:
            if old.state is State.TIME_WAIT and reuseaddr:
                old.end_time_wait(Cause.TIME_WAIT_REUSED)
                self._remove(old)
            else:
                raise AddressInUse(f"error: connection {local}:{local_port} -> {remote}:{remote_port} exists")
        if reservation is not None:
            reservation.release()
        conn = self._new_conn(key, config or self.config, now)
        conn.reuseaddr = reuseaddr
        conn.open_active(now)
        self._after(conn)
        return conn

    def _new_conn(self, key: Key, config: Config, now: float, *, iss: int | None = None) -> Connection:
        conn = self.connection_class((key[0], key[1]), (key[2], key[3]),
                                     iss=self.isn(key, now) if iss is None else iss,
                                     config=config, mtu=self.mtu, ts_offset=self._ts_offset(key),
                                     tracer=self._recorder)
        conn.now = now
        conn.notify = self._notify_cb
        conn.tso_max = self.tso_max
        self.conns[key] = conn
        self._bind(conn, key[1])
        return conn

    def _notify(self, conn: Connection) -> None:
        self._dirty[conn] = None

    def _close_listener(self, lst: Listener, now: float) -> None:
        self.now = now  # the trace record below carries the time of the call
        self.listeners.pop((lst.local_addr, lst.local_port), None)
        self._unbind(lst, lst.local_port)
        for key, parent in list(self._parent.items()):
            if parent is lst:
                conn = self.conns.get(key)
                del self._parent[key]
                if conn is not None and conn.state is not State.CLOSED:
                    conn.abort(now, why="listener closed")
                    self._after(conn)
        lst._accept_q.clear()
        self._note(Note.UNLISTEN, lst.local_addr or "*", lst.local_port)

    def connections(self) -> Iterator[Connection]:
        return iter(list(self.conns.values()))

    # -------------------------------------------------------------------------------------
    # Input
    # -------------------------------------------------------------------------------------

    def receive(self, packet: bytes | memoryview, now: float, *, checksum_verified: bool = False) -> None:
        """One IP packet from the network. Bad packets are counted and dropped, never raised.

        ``checksum_verified``: the driver vouches for the packet's checksums (a TUN frame the
        kernel marked checksum-partial or data-valid, see :mod:`synack.tun`), so neither the
        IPv4 header checksum nor the TCP checksum is summed again; lengths and offsets are still
        checked. Counted in ``stats()["checksum_trusted"]``."""
        self.now = now
        counters = self.counters
        counters["packets_in"] += 1
        try:
            if checksum_verified:
                pkt = parse_packet(packet, verify=False)
                counters["checksum_trusted"] += 1
            else:
                pkt = parse_packet(packet)
        except WireError as exc:
            if is_icmp(packet):
                self._icmp(packet, now, checksum_verified)
                return
            reason = Drop.BAD_CHECKSUM if exc.checksum else Drop.MALFORMED
            counters[reason.value] += 1
            self._drop(reason, str(exc))
            return
        self._arrive(pkt.src, pkt.dst, pkt.seg, now)

    def receive_many(self, packets: Sequence[bytes | memoryview], now: float, *,
                     checksum_verified: Sequence[bool] | None = None) -> None:
        """Packets that arrived together (a driver's batch), in order: the same as :meth:`receive`
        of each in turn (``checksum_verified[i]`` for ``packets[i]``). Consecutive segments of
        one connection that continue each other are a *run* (:mod:`synack.core.runs`): the
        first goes the whole way, and the others, where the TCB is then ready for nothing but
        their text, have only that taken in — equal to one at a time (tests/test_runs.py)."""
        self.now = now
        counters = self.counters
        pending: list[tuple[str, str, Segment]] = []
        for i, packet in enumerate(packets):
            verified = checksum_verified is not None and checksum_verified[i]
            try:
                pkt = parse_packet(packet, verify=not verified)
            except WireError:
                self._arrive_batch(pending, now)
                pending = []
                self.receive(packet, now, checksum_verified=verified)  # counted and dropped there
                continue
            counters["packets_in"] += 1
            if verified:
                counters["checksum_trusted"] += 1
            pending.append((pkt.src, pkt.dst, pkt.seg))
        self._arrive_batch(pending, now)

    def _arrive_batch(self, pending: list[tuple[str, str, Segment]], now: float) -> None:
        """:meth:`_arrive` of each parsed segment in turn, runs by :meth:`_arrive_run`."""
        n = len(pending)
        i = 0
        while i < n:
            src, dst, seg = pending[i]
            j = i + 1
            if starts_run(seg):
                while j < n:
                    s2, d2, nxt = pending[j]
                    if s2 != src or d2 != dst or nxt.src_port != seg.src_port \
                            or nxt.dst_port != seg.dst_port or not continues(pending[j - 1][2], nxt, seg):
                        break
                    j += 1
            if j - i == 1:
                self._arrive(src, dst, seg, now)
            else:
                self._arrive_run(src, dst, [p[2] for p in pending[i:j]], now)
            i = j

    def _arrive_run(self, src: str, dst: str, segs: list[Segment], now: float) -> None:
        """A run: the first segment by :meth:`_arrive`, the rest by their text alone where
        :func:`~synack.core.runs.only_text_left` says that is all they would do; else each
        by :meth:`_arrive`."""
        first = segs[0]
        self._arrive(src, dst, first, now)
        rest = segs[1:]
        conn = self.conns.get((dst, first.dst_port, src, first.src_port))
        if conn is not None and not conn.config.keepalive and dst in self._addrset \
                and not self._peer(src)[2] and only_text_left(conn, first, rest):
            counters = self.counters
            counters["segments_in"] += len(rest)
            counters["runs"] += 1  # runs taken by their text: how often the shortcut applied
            counters["run_segments"] += len(rest)
            take_text(conn, rest, now)
            self._after(conn)
            return
        for seg in rest:
            self._arrive(src, dst, seg, now)

    def _icmp(self, packet: bytes | memoryview, now: float, checksum_verified: bool) -> None:
        """An ICMP or ICMPv6 packet: an error quoting a segment of one of our connections goes to
        that connection (MUST-54, "the necessary demultiplexing information can be found in the
        IP header contained within the ICMP message"); anything else is counted and dropped."""
        counters = self.counters
        try:
            err = parse_icmp_error(packet, verify=not checksum_verified)
        except WireError as exc:
            counters["icmp_ignored"] += 1
            self._drop(Drop.ICMP_IGNORED, str(exc))
            return
        counters["icmp_in"] += 1
        conn = self.conns.get((err.src, err.sport, err.dst, err.dport))
        if conn is None or err.src not in self._addrset:
            counters["icmp_no_connection"] += 1
            self._drop(Drop.ICMP_IGNORED, f"no connection {err.src}:{err.sport} -> {err.dst}:{err.dport}")
            return
        if conn.handle_icmp(err, now):
            counters["icmp_acted"] += 1
        else:
            counters["icmp_dropped"] += 1
        self._after(conn)

    def receive_segment(self, src: str, dst: str, seg: Segment, now: float) -> None:
        """One segment from ``src`` to ``dst`` whose packet was never turned into bytes (the
        simulator's lab fast path: both hosts in this process, nothing that needs the bytes).
        The same as :meth:`receive` of the packet built from it, less building and parsing it:
        ``seg`` must be what parsing that packet would give (addresses in normal text form,
        sequence numbers reduced modulo 2**32, the ACK field present exactly when the ACK bit
        is set, options that parse back to themselves)."""
        self.now = now
        self.counters["packets_in"] += 1
        self._arrive(src, dst, seg, now)

    def _arrive(self, src: str, dst: str, seg: Segment, now: float) -> None:
        """A well-formed segment (checksums verified): demultiplex it (RFC 9293 §3.10.7)."""
        counters = self.counters
        if dst not in self._addrset:
            counters["drop_not_for_us"] += 1
            self._drop(Drop.NOT_FOR_US, dst)
            return
        if self._peer(src)[2]:
            # A martian source (loopback, ours, a broadcast, reserved, IPv4-mapped): dropped as
            # the IP layer would (MUST-63 for SYNs; nothing is answered to such an address).
            counters["drop_martian"] += 1
            self._drop(Drop.MARTIAN, src)
            return
        counters["segments_in"] += 1
        if seg.flags & RST:
            counters["resets_in"] += 1
        key = (dst, seg.dst_port, src, seg.src_port)
        conn = self.conns.get(key)
        if conn is not None and (conn.state is State.CLOSED or conn.state is State.LISTEN):
            # A deleted TCB (§3.10.5, §3.10.8) or a listener child back in LISTEN (§3.10.7.4
            # second/fourth step), still here only until the host's output is pulled: it does
            # not own the 4-tuple any more. Its last output (the RST of an ABORT) goes out, then
            # the segment is demultiplexed as for no connection (§3.10.7.1) or the listener.
            self._retire(conn, now)
            conn = None
        if conn is not None:
            if conn.state is State.SYN_RECEIVED and seg.ack is not None and not seg.flags & (RST | SYN):
                lst = self._parent.get(key)
                if lst is not None and lst.pending >= lst.backlog:
                    # The accept queue is full: the ACK that would complete the handshake is
                    # dropped (as Linux does), so the queue never holds more than ``backlog``;
                    # the child stays in SYN-RECEIVED and its SYN,ACK retransmission (§3.8.1)
                    # draws the ACK again later.
                    counters["drop_backlog_full"] += 1
                    self._drop(Drop.ACCEPT_QUEUE_FULL, conn=key)
                    return
            if conn.state is State.TIME_WAIT and seg.flags & SYN and seg.ack is None \
                    and not seg.flags & RST and seq_gt(seg.seq, conn.rcv_nxt) \
                    and self._find_listener(dst, seg.dst_port) is not None:
                # MAY-2: a new SYN with a higher sequence number reopens from TIME-WAIT.
                self._drop(Drop.TIME_WAIT_REOPENED, conn=key)
                counters["time_wait_reopened"] += 1
                conn.end_time_wait(Cause.TIME_WAIT_REOPENED)
                self._remove(conn)
            else:
                conn.received_keepalive_activity(now) if conn.config.keepalive else None
                conn.handle_segment(seg, now)
                self._after(conn)
                return
        lst = self._find_listener(dst, seg.dst_port)
        if lst is None:
            self._no_connection(src, dst, seg, ResetReason.NO_CONNECTION)
            return
        self._listener_input(lst, key, src, seg, now)

    def _retire(self, conn: Connection, now: float) -> None:
        """Send what a CLOSED (or returned-to-LISTEN) connection still has queued, then forget it."""
        self._dirty.pop(conn, None)
        segs = conn.segments_to_send(now)
        counters = self.counters
        for seg in segs:
            if seg.flags & RST:
                counters["resets_out"] += 1
            self._stray.append(build_packet(conn.local_addr, conn.remote_addr, seg, ttl=conn.ttl,
                                            tos=conn.tos))
        counters["segments_out"] += len(segs)
        self._remove(conn)

    def _find_listener(self, addr: str, port: int) -> Listener | None:
        lst = self.listeners.get((addr, port))
        if lst is None:
            lst = self.listeners.get(("", port))
        return lst

    def _no_connection(self, src: str, dst: str, seg: Segment, why: ResetReason) -> None:
        """RFC 9293 §3.10.7.1 (CLOSED): RST for anything but a RST (L9)."""
        rst = reset_for(seg)
        if rst is None:
            self.counters["drop_rst_no_connection"] += 1
            self._drop(Drop.RST_FOR_NO_CONNECTION)
            return
        self.counters["resets_out"] += 1
        self.counters["segments_out"] += 1
        if self._recorder is not None:
            self._recorder.sink(ResetRecord(self.now, self.name, why, src, seg.src_port, rst))
        self._stray.append(build_packet(dst, src, rst))

    def _listener_input(self, lst: Listener, key: Key, src: str, seg: Segment, now: float) -> None:
        """RFC 9293 §3.10.7.2 at a host's listener."""
        flags = seg.flags
        if flags & RST:
            self.counters["drop_rst_listen"] += 1
            self._drop(Drop.RST_AT_LISTENER)
            return
        if seg.ack is not None:
            if not flags & SYN and self._cookie_ack(lst, key, seg, now):
                return
            self._no_connection(src, key[0], seg, ResetReason.ACK_AT_LISTENER)  # <SEQ=SEG.ACK><CTL=RST>
            return
        if not flags & SYN:
            self.counters["drop_listen_no_syn"] += 1
            self._drop(Drop.NO_SYN_AT_LISTENER)
            return
        if self._peer(src)[1] or self._peer(key[0])[1]:
            self.counters["drop_bad_address"] += 1  # MUST-57, MUST-63
            self._drop(Drop.BAD_ADDRESS)
            return
        if lst.pending >= lst.backlog:
            self.counters["drop_backlog_full"] += 1  # the accept queue is full: no answer at all
            self._drop(Drop.BACKLOG_FULL)
            return
        mode = self.syn_cookies
        if mode == "always" or (mode == "auto" and lst.syn_pending >= lst.syn_backlog):
            self._send_cookie(lst, key, src, seg, now)
            return
        if lst.syn_pending >= lst.syn_backlog:
            self.counters["drop_backlog_full"] += 1
            self._drop(Drop.BACKLOG_FULL)
            return
        conn = self._new_conn(key, lst.config, now)
        conn.reuseaddr = lst.reuseaddr
        conn.open_passive(now)
        conn.handle_segment(seg, now)
        self._parent[key] = lst
        lst.syn_pending += 1
        self._after(conn)

    # -------------------------------------------------------------------------------------
    # SYN cookies (RFC 4987 §3.6; the encoding is synack.core.cookies')
    # -------------------------------------------------------------------------------------

    def _send_cookie(self, lst: Listener, key: Key, src: str, seg: Segment, now: float) -> None:
        """Answer a SYN with a SYN,ACK whose ISN is a cookie, keeping no state: the options the
        connection needs come back with the ACK (MSS in the cookie, window scale and SACK in the
        timestamp echo)."""
        cfg = lst.config
        mss = seg.option(Mss)
        ws = seg.option(WindowScale)
        ts = seg.option(Timestamps)
        sack = cfg.sack and seg.option(SackPermitted) is not None
        peer_ws = min(ws.shift, 14) if ws is not None and cfg.window_scaling else None
        header = 60 if ":" in key[0] else 40
        our_mss = cfg.mss if cfg.mss is not None else max(self.mtu - header, 64)
        cookie = make_cookie(self.isn_key, key, seg.seq, now, mss.value if mss is not None else 536)
        opts: list[Option] = [Mss(min(our_mss, 0xFFFF))]
        if sack:
            opts.append(SackPermitted())
        if ts is not None and cfg.timestamps:
            tsval = ts_options_encode((int(now * 1000) + self._ts_offset(key)) & _MASK, peer_ws, sack)
            opts.append(Timestamps(tsval, ts.tsval))
        if peer_ws is not None:
            opts += [Nop(), WindowScale(wscale_for(cfg.rcv_buf))]
        synack = Segment(seg.dst_port, seg.src_port, cookie, (seg.seq + 1) & _MASK, SYN | ACK,
                         min(cfg.rcv_buf, 0xFFFF), tuple(opts))
        lst.cookies_until = now + 128.0  # a cookie lives two 64-second slots
        self.counters["syn_cookies_sent"] += 1
        self.counters["segments_out"] += 1
        self._stray.append(build_packet(key[0], src, synack))

    def _cookie_ack(self, lst: Listener, key: Key, seg: Segment, now: float) -> bool:
        """An ACK for no connection at a listener: if it returns a valid cookie, the connection
        is made from it (ESTABLISHED at once) and True returned; False: not a cookie of ours."""
        ack = seg.ack
        if ack is None or seg.flags & RST or self.syn_cookies == "never" or (
                self.syn_cookies == "auto" and now > lst.cookies_until):
            return False
        peer_isn = (seg.seq - 1) & _MASK
        mss = check_cookie(self.isn_key, key, peer_isn, (ack - 1) & _MASK, now)
        if mss is None:
            self.counters["syn_cookies_bad"] += 1
            return False
        if lst.pending >= lst.backlog:
            self.counters["drop_backlog_full"] += 1
            self._drop(Drop.BACKLOG_FULL)
            return True
        ts = seg.option(Timestamps)
        opts: list[Option] = [Mss(mss)]
        if ts is not None:
            ws, sack = ts_options_decode(ts.tsecr)
            if ws is not None:
                opts.append(WindowScale(ws))
            if sack:
                opts.append(SackPermitted())
            opts.append(Timestamps(ts.tsval, 0))
        syn = Segment(seg.src_port, seg.dst_port, peer_isn, None, SYN, seg.window, tuple(opts))
        conn = self._new_conn(key, lst.config, now, iss=(ack - 1) & _MASK)
        conn.reuseaddr = lst.reuseaddr
        conn.accept_cookie(syn, now)
        self._parent[key] = lst
        lst.syn_pending += 1
        conn.handle_segment(seg, now)
        self._after(conn)
        self.counters["syn_cookies_ok"] += 1
        return True

    # -------------------------------------------------------------------------------------
    # Bookkeeping after anything touched a connection
    # -------------------------------------------------------------------------------------

    def _after(self, conn: Connection) -> None:
        self._dirty[conn] = None
        if not self._parent:  # no listener child is still in its handshake
            return
        lst = self._parent.get((conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port))
        if lst is not None and conn.state is not State.SYN_RECEIVED and conn.state is not State.LISTEN:
            # The child left SYN-RECEIVED: established ones go to the accept queue.
            del self._parent[(conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port)]
            lst.syn_pending -= 1
            if conn.state is not State.CLOSED and not lst.closed:
                lst._enqueue(conn)
        elif lst is not None and conn.state is State.LISTEN:
            lst.syn_pending -= 1
            del self._parent[(conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port)]

    def _reschedule(self, conn: Connection) -> None:
        d = conn.next_deadline()
        if d is None:
            self._sched.pop(conn, None)
            return
        if self._sched.get(conn) != d:
            self._sched[conn] = d
            self._tick += 1
            heapq.heappush(self._heap, (d, self._tick, conn))

    def _remove(self, conn: Connection) -> None:
        key = (conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port)
        if self.conns.get(key) is conn:
            del self.conns[key]
            self._unbind(conn, conn.local_port)
            self.closed_connections += 1
            self.counters["retransmissions"] += conn.rexmitted
            self.counters["replies_rate_limited"] += conn.replies_limited
        self._sched.pop(conn, None)
        self._dirty.pop(conn, None)
        lst = self._parent.pop(key, None)
        if lst is not None:
            lst.syn_pending -= 1
        conn.notify = None

    # -------------------------------------------------------------------------------------
    # Output and time
    # -------------------------------------------------------------------------------------

    def packets_to_send(self, now: float) -> list[bytes]:
        """Every IP packet due now, from every connection that may have something to send."""
        out, batches = self.segments_to_send(now)
        for conn, segs in batches:
            la, ra, ttl, tos = conn.local_addr, conn.remote_addr, conn.ttl, conn.tos
            for seg in segs:
                out.append(build_packet(la, ra, seg, ttl=ttl, tos=tos))
        return out

    def segments_to_send(self, now: float) -> tuple[list[bytes], list[tuple[Connection, list[Segment]]]]:
        """What :meth:`packets_to_send` returns, before the connections' segments are built into
        packets: first the packets the host made itself (RSTs for no connection), then each
        connection with its segments, in the order the packets would have. Counted as sent.
        (For the simulator's lab fast path, which can skip building and parsing the bytes.)"""
        self.now = now
        out = self._stray
        self._stray = []
        batches: list[tuple[Connection, list[Segment]]] = []
        counters = self.counters
        while self._dirty:
            conn = next(iter(self._dirty))
            del self._dirty[conn]
            segs = conn.segments_to_send(now)
            if segs:
                batches.append((conn, segs))
                for seg in segs:
                    if seg.flags & RST:
                        counters["resets_out"] += 1
                counters["segments_out"] += len(segs)
            st = conn.state
            if st is State.CLOSED or st is State.LISTEN:
                self._remove(conn)
            else:
                self._reschedule(conn)
        return out, batches

    def next_deadline(self) -> float | None:
        """The earliest timer of any connection (None when no timer runs)."""
        heap = self._heap
        sched = self._sched
        while heap:
            t, _, conn = heap[0]
            if sched.get(conn) == t:
                return t
            heapq.heappop(heap)
        return None

    def handle_timeout(self, now: float) -> None:
        """Fire every timer that is due at ``now``."""
        self.now = now
        heap = self._heap
        sched = self._sched
        while heap and heap[0][0] <= now:
            t, _, conn = heapq.heappop(heap)
            if sched.get(conn) != t:
                continue
            del sched[conn]
            conn.handle_timeout(now)
            self._after(conn)
            self._reschedule(conn)

    # -------------------------------------------------------------------------------------
    # Observability
    # -------------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters: packets/segments in and out, bad checksums, drops by reason, resets,
        retransmissions (including those of connections still open)."""
        out = dict(self.counters)
        conns = self.conns.values()
        out["retransmissions"] = self.counters["retransmissions"] + sum(c.rexmitted for c in conns)
        limited = sum(c.replies_limited for c in conns)
        out["replies_rate_limited"] = self.counters["replies_rate_limited"] + limited
        out["connections"] = len(self.conns)
        out["listeners"] = len(self.listeners)
        return out

    def __repr__(self) -> str:
        return f"<Host {self.name} {','.join(self.addresses)} conns={len(self.conns)}>"
