"""synack against the real Linux kernel, over TUN, inside a network namespace each test creates.

Every test gets a fresh namespace ``synack-<pid>-<n>`` with a TUN device ``synack0`` in it: the
kernel side has 10.77.0.1/24 and fd77::1/64 on the device, synack's host is 10.77.0.2 and
fd77::2 behind it. Kernel sockets are created inside the namespace (``netns_socket``), so no
packet can go anywhere but between the two stacks. The fixture removes the namespace whatever
happens. Every wait is bounded.

The synack side runs in the test's thread (its blocking socket calls drive the stack); a kernel
call that would block while synack must answer runs in a helper thread (``lab.background``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import shutil
import socket as kernel_socket_mod
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from synack import sockets
from synack.core.connection import Config
from synack.core.records import Record, State, StateRecord, Timer, TimerAction, TimerRecord
from synack.tun import TunStack, create_netns, netns_socket, remove_netns

pytestmark: list[pytest.MarkDecorator] = [pytest.mark.live]

K4, K6 = "10.77.0.1", "fd77::1"  # the kernel's addresses
S4, S6 = "10.77.0.2", "fd77::2"  # synack's addresses
WAIT = 15.0  # the longest any single wait may take


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces and TUN)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    if shutil.which("ss") is None or shutil.which("ip") is None:
        return "needs iproute2 (ss, ip) to observe the kernel side"
    return None


_REASON = _why_not()
if _REASON is not None:
    pytestmark.append(pytest.mark.skip(reason=_REASON))

_serial = itertools.count()


class Background:
    """A kernel-side call running in a helper thread."""

    def __init__(self, fn: Callable[[], Any], wake: Callable[[], None]) -> None:
        self._wake = wake
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self._done.set()
            self._wake()  # the test thread may be asleep in the stack's loop: let it look

    def done(self) -> bool:
        return self._done.is_set()

    def join(self, timeout: float = WAIT) -> None:
        self._thread.join(timeout)


class Lab:
    """One namespace, one TUN stack, and helpers to look at both sides."""

    def __init__(self, ns: str, stack: TunStack) -> None:
        self.ns = ns
        self.stack = stack
        self.host = stack.host
        self.ksocks: list[kernel_socket_mod.socket] = []
        self.threads: list[Background] = []
        self.transitions: list[tuple[tuple[str, int, str, int], str]] = []
        self.trace_states(True)

    # -- synack side -------------------------------------------------------------------------

    def trace_states(self, on: bool) -> None:
        """Record every state change of connections created from now on (off for speed)."""
        self.host.tracer = self._record if on else None

    def _record(self, rec: Record) -> None:
        if isinstance(rec, StateRecord):
            if not any(k == rec.conn for k, _ in self.transitions):
                self.transitions.append((rec.conn, rec.old))
            self.transitions.append((rec.conn, rec.new))

    def states(self, sock: sockets.Socket) -> list[str]:
        """Every state the socket's connection went through, from the first."""
        conn = sock.connection
        assert conn is not None
        key = (conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port)
        return [st for k, st in self.transitions if k == key]

    def socket(self, family: int = sockets.AF_INET) -> sockets.Socket:
        s = sockets.socket(self.stack, family)
        s.settimeout(WAIT)
        return s

    def run(self, seconds: float) -> None:
        self.stack.run_for(seconds)

    def pump_until(self, pred: Callable[[], bool], timeout: float = WAIT) -> bool:
        return self.stack.wait_until(pred, timeout)

    # -- kernel side -------------------------------------------------------------------------

    def ksocket(self, family: int = kernel_socket_mod.AF_INET) -> kernel_socket_mod.socket:
        s = netns_socket(self.ns, family, kernel_socket_mod.SOCK_STREAM)
        s.settimeout(WAIT)
        self.ksocks.append(s)
        return s

    def klisten(self, port: int, family: int = kernel_socket_mod.AF_INET) -> kernel_socket_mod.socket:
        s = self.ksocket(family)
        s.setsockopt(kernel_socket_mod.SOL_SOCKET, kernel_socket_mod.SO_REUSEADDR, 1)
        s.bind((K4 if family == kernel_socket_mod.AF_INET else K6, port))
        s.listen()
        return s

    def background(self, fn: Callable[[], Any]) -> Background:
        job = Background(fn, self.stack.wakeup)
        self.threads.append(job)
        return job

    def finish(self, job: Background, timeout: float = WAIT) -> Any:
        """Drive synack until the kernel-side job is done; return its result or raise its error."""
        assert self.pump_until(job.done, timeout), "the kernel side did not finish in time"
        job.join(1)
        if job.error is not None:
            raise job.error
        return job.result

    def ss(self) -> list[tuple[str, str, str]]:
        """(state, local, peer) of every TCP socket in the namespace, as ``ss -tan`` shows them."""
        out = subprocess.run(["ip", "netns", "exec", self.ns, "ss", "-tanH"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
        rows = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 5:
                rows.append((parts[0], parts[3], parts[4]))
        return rows

    def kernel_state(self, local_port: int, peer_port: int) -> str | None:
        for st, local, peer in self.ss():
            if local.rsplit(":", 1)[1] == str(local_port) and peer.rsplit(":", 1)[1] == str(peer_port):
                return st
        return None

    def wait_kernel_state(self, local_port: int, peer_port: int, want: str | None,
                          timeout: float = WAIT) -> str | None:
        """Keep synack running until ``ss`` shows the kernel socket in ``want`` (None: gone)."""
        end = time.monotonic() + timeout
        st = self.kernel_state(local_port, peer_port)
        while st != want and time.monotonic() < end:
            self.run(0.05)
            st = self.kernel_state(local_port, peer_port)
        return st

    def close(self) -> None:
        for s in self.ksocks:
            with contextlib.suppress(OSError):
                s.close()
        for job in self.threads:
            job.join(2)
        self.stack.close()


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A fresh namespace with synack on TUN in it (``indirect`` parameter: offloads on/off, or
    ``"thread"``: no offloads, a thread writing to the device)."""
    param = getattr(request, "param", False)
    offload = param is True
    ns = f"synack-{os.getpid()}-{next(_serial)}"
    create_netns(ns)
    the_lab: Lab | None = None
    try:
        stack = TunStack(netns=ns, config=Config(msl=30.0), offload=offload, write_thread=param == "thread")
        the_lab = Lab(ns, stack)
        yield the_lab
    finally:
        try:
            if the_lab is not None:
                the_lab.close()
        finally:
            remove_netns(ns)


def _established_pair(lab: Lab, port: int = 8000,
                      family: int = sockets.AF_INET) -> tuple[sockets.Socket, kernel_socket_mod.socket]:
    """A synack client connected to a kernel server (accepted)."""
    kaddr = K4 if family == sockets.AF_INET else K6
    srv = lab.klisten(port, family)
    ours = lab.socket(family)
    ours.connect((kaddr, port))
    theirs, _ = srv.accept()
    theirs.settimeout(WAIT)
    lab.ksocks.append(theirs)
    return ours, theirs


# ---------------------------------------------------------------------------------------------
# Handshake and close, both ways round
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [sockets.AF_INET, sockets.AF_INET6], ids=["ipv4", "ipv6"])
def test_synack_client_kernel_server_we_close_first(lab: Lab, family: int) -> None:
    kaddr = K4 if family == sockets.AF_INET else K6
    ours, theirs = _established_pair(lab, 8001, family)
    lport = ours.getsockname()[1]
    assert ours.getpeername()[:2] == (kaddr, 8001)
    assert lab.kernel_state(8001, lport) == "ESTAB"

    ours.sendall(b"ping")
    assert theirs.recv(100) == b"ping"
    theirs.sendall(b"pong")
    assert ours.recv(100) == b"pong"

    # We close first: FIN-WAIT-1 -> FIN-WAIT-2 here, CLOSE-WAIT there (the kernel app has not closed).
    conn = ours.connection
    assert conn is not None
    ours.close()
    assert lab.pump_until(lambda: conn.state is State.FIN_WAIT_2, 5)
    assert lab.wait_kernel_state(8001, lport, "CLOSE-WAIT") == "CLOSE-WAIT"
    assert theirs.recv(100) == b""  # the kernel app sees our FIN as end of stream
    theirs.close()  # LAST-ACK there, TIME-WAIT here; the kernel socket is gone after our ACK
    assert lab.pump_until(lambda: conn.state is State.TIME_WAIT, 5)
    assert lab.wait_kernel_state(8001, lport, None) is None
    assert lab.states(ours) == ["CLOSED", "SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT"]


def test_kernel_client_synack_server_kernel_closes_first(lab: Lab) -> None:
    srv = sockets.create_server(lab.stack, (S4, 9001))
    srv.settimeout(WAIT)
    client = lab.ksocket()
    job = lab.background(lambda: client.connect((S4, 9001)))
    ours, addr = srv.accept()
    lab.finish(job)
    kport = client.getsockname()[1]
    assert addr == (K4, kport)
    assert ours.getsockname() == (S4, 9001)
    assert lab.kernel_state(kport, 9001) == "ESTAB"

    client.sendall(b"hello synack")
    assert ours.recv(100) == b"hello synack"
    ours.sendall(b"hello kernel")
    assert client.recv(100) == b"hello kernel"

    # The kernel closes first; our application does not close yet: CLOSE-WAIT here, FIN-WAIT-2 there.
    client.shutdown(kernel_socket_mod.SHUT_WR)
    assert ours.recv(100) == b""
    conn = ours.connection
    assert conn is not None and conn.state is State.CLOSE_WAIT
    assert lab.wait_kernel_state(kport, 9001, "FIN-WAIT-2") == "FIN-WAIT-2"
    lab.run(0.3)
    assert conn.state is State.CLOSE_WAIT  # stays there until the application closes (L14)

    ours.close()  # LAST-ACK -> CLOSED here; the kernel's socket that closed first is in TIME-WAIT
    assert lab.pump_until(lambda: conn.state is State.CLOSED, 5)
    assert lab.wait_kernel_state(kport, 9001, "TIME-WAIT") == "TIME-WAIT"
    assert lab.states(ours) == ["CLOSED", "LISTEN", "SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT", "LAST-ACK",
                                "CLOSED"]
    srv.close()


def test_kernel_client_ipv6_and_close_with_fin_from_us(lab: Lab) -> None:
    srv = sockets.create_server(lab.stack, ("", 9002), family=sockets.AF_INET6)
    srv.settimeout(WAIT)
    client = lab.ksocket(kernel_socket_mod.AF_INET6)
    job = lab.background(lambda: client.connect((S6, 9002)))
    ours, addr = srv.accept()
    lab.finish(job)
    assert addr[:2] == (K6, client.getsockname()[1])
    ours.sendall(b"x" * 10_000)
    ours.close()  # L13: queued data goes out before the FIN
    got = lab.finish(lab.background(lambda: _recv_all(client)))
    assert got == b"x" * 10_000
    conn = ours.connection
    assert conn is not None
    assert lab.pump_until(lambda: conn.state is State.FIN_WAIT_2, 5)


# ---------------------------------------------------------------------------------------------
# Bulk data
# ---------------------------------------------------------------------------------------------

BULK = 50 * 1024 * 1024


def _recv_all(s: kernel_socket_mod.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        d = s.recv(1 << 20)
        if not d:
            return b"".join(chunks)
        chunks.append(d)


def _kernel_sink(s: kernel_socket_mod.socket) -> tuple[int, str]:
    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    while True:
        n = s.recv_into(buf)
        if not n:
            return total, h.hexdigest()
        h.update(view[:n])
        total += n


@pytest.fixture(scope="module")
def bulk_data() -> tuple[bytes, str]:
    data = os.urandom(BULK)
    return data, hashlib.sha256(data).hexdigest()


BULK_MODES = pytest.mark.parametrize("lab", [False, True, "thread"], indirect=True,
                                     ids=["plain", "offload", "write-thread"])


@BULK_MODES
def test_bulk_50mb_synack_to_kernel(lab: Lab, bulk_data: tuple[bytes, str],
                                    record_property: Callable[[str, object], None]) -> None:
    data, digest = bulk_data
    lab.trace_states(False)
    ours, theirs = _established_pair(lab, 8010)
    sink = lab.background(lambda: _kernel_sink(theirs))
    t0 = time.monotonic()
    ours.sendall(data)
    ours.shutdown(sockets.SHUT_WR)
    total, got = lab.finish(sink, 60)
    dt = time.monotonic() - t0
    record_property("MB/s", round(BULK / dt / 1e6, 1))
    print(f"\nsynack -> kernel (offload {lab.stack.offload}): {BULK / 1e6:.0f} MB in {dt:.2f} s"
          f" = {BULK / dt / 1e6:.1f} MB/s")
    assert total == BULK
    assert got == digest
    stats = lab.stack.stats()
    # TSO in the core: most of the data left as segments of many MSS (up to 64 KB) instead of
    # one segment per MSS (36,000 of them) ...
    assert stats.get("tso_segments_out", 0) >= BULK // 65535 // 2, stats
    if lab.stack.offload:
        # ... one GSO write each;
        assert stats["device_writes"] < BULK // 1448 // 4, stats
    else:
        # ... without offloads cut into MSS packets by the driver: one write per packet.
        assert stats["device_writes"] >= BULK // 1448, stats
    ours.close()


@pytest.mark.parametrize("lab", [True], indirect=True, ids=["offload"])
@pytest.mark.parametrize("family", [sockets.AF_INET, sockets.AF_INET6], ids=["ipv4", "ipv6"])
def test_tso_segments_reach_the_kernel_intact(lab: Lab, family: int) -> None:
    """TSO in the core over IPv4 and IPv6: the kernel takes our multi-MSS segments (GSO TCPV4 /
    TCPV6 frames) and the bytes arrive intact, including an odd-sized tail after them."""
    data = os.urandom(3_000_007)
    ours, theirs = _established_pair(lab, 8012, family)
    sink = lab.background(lambda: _kernel_sink(theirs))
    ours.sendall(data)
    ours.shutdown(sockets.SHUT_WR)
    total, got = lab.finish(sink, 60)
    assert (total, got) == (len(data), hashlib.sha256(data).hexdigest())
    assert lab.stack.stats().get("tso_segments_out", 0) >= 10
    ours.close()


@BULK_MODES
def test_bulk_50mb_kernel_to_synack(lab: Lab, bulk_data: tuple[bytes, str],
                                    record_property: Callable[[str, object], None]) -> None:
    data, digest = bulk_data
    lab.trace_states(False)
    ours, theirs = _established_pair(lab, 8011)
    t0 = time.monotonic()

    def source() -> None:
        theirs.sendall(data)
        theirs.shutdown(kernel_socket_mod.SHUT_WR)

    job = lab.background(source)
    h = hashlib.sha256()
    total = 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    ours.settimeout(30)
    while True:
        n = ours.recv_into(buf)
        if not n:
            break
        h.update(view[:n])
        total += n
    dt = time.monotonic() - t0
    lab.finish(job)
    record_property("MB/s", round(BULK / dt / 1e6, 1))
    print(f"\nkernel -> synack (offload {lab.stack.offload}): {BULK / 1e6:.0f} MB in {dt:.2f} s"
          f" = {BULK / dt / 1e6:.1f} MB/s")
    assert total == BULK
    assert h.hexdigest() == digest
    stats = lab.stack.stats()
    assert stats.get("host_bad_checksum", 0) == 0, stats
    if lab.stack.offload:
        # Every segment the kernel wrote came flagged checksum-partial: none was summed in Python.
        assert stats["host_checksum_trusted"] == stats["host_packets_in"] > 0, stats
    else:
        assert "host_checksum_trusted" not in stats, stats
    ours.close()


@pytest.mark.parametrize("lab", [False, True], indirect=True, ids=["plain", "offload"])
def test_unflagged_packets_with_bad_checksums_are_dropped(lab: Lab) -> None:
    """A packet the kernel hands over without a checksum flag (here from a raw socket, whose bytes
    the kernel does not vouch for) is verified even with offload: with a bad TCP checksum it is
    dropped and counted; the same packet with a good one gets a reset. (The kernel rewrites the
    IPv4 header checksum of raw packets, so that one is tested in test_tun_offload.py.)"""
    from synack.core.wire import Segment, build_packet

    raw = netns_socket(lab.ns, kernel_socket_mod.AF_INET, kernel_socket_mod.SOCK_RAW,
                       kernel_socket_mod.IPPROTO_RAW)  # IP_HDRINCL: we write the whole packet
    lab.ksocks.append(raw)
    good = build_packet(K4, S4, Segment(40000, 9, 1000, None, 0x02, 8192))  # a SYN to a closed port
    bad_tcp = bytearray(good)
    bad_tcp[36] ^= 0xFF  # the TCP checksum

    def stats() -> dict[str, int]:
        return lab.stack.stats()

    raw.sendto(bytes(bad_tcp), (S4, 0))
    assert lab.pump_until(lambda: stats().get("host_bad_checksum", 0) >= 1), stats()
    raw.sendto(good, (S4, 0))
    assert lab.pump_until(lambda: stats().get("host_resets_out", 0) >= 1), stats()
    final = stats()
    assert final["host_bad_checksum"] == 1, final
    assert "host_checksum_trusted" not in final, final


# ---------------------------------------------------------------------------------------------
# Refusals and resets
# ---------------------------------------------------------------------------------------------


def test_connect_to_closed_kernel_port_is_refused(lab: Lab) -> None:
    s = lab.socket()
    with pytest.raises(ConnectionRefusedError) as info:
        s.connect((K4, 8999))
    assert info.value.errno == errno.ECONNREFUSED
    s2 = lab.socket(sockets.AF_INET6)
    assert s2.connect_ex((K6, 8999)) == errno.ECONNREFUSED
    s.close()
    s2.close()


def test_kernel_connect_to_closed_synack_port_is_refused(lab: Lab) -> None:
    client = lab.ksocket()
    code = lab.finish(lab.background(lambda: client.connect_ex((S4, 9999))))
    assert code == errno.ECONNREFUSED
    assert lab.host.stats().get("resets_out", 0) >= 1


def test_linger_zero_close_is_a_reset_for_the_kernel(lab: Lab) -> None:
    ours, theirs = _established_pair(lab, 8020)
    ours.sendall(b"some data")
    assert theirs.recv(100) == b"some data"
    conn = ours.connection
    assert conn is not None
    ours.setsockopt(sockets.SOL_SOCKET, sockets.SO_LINGER, struct.pack("ii", 1, 0))
    ours.close()  # L12: RST, no FIN, no TIME-WAIT
    assert conn.state is State.CLOSED
    assert conn.local_port not in {k[1] for k in lab.host.conns}
    with pytest.raises(ConnectionResetError) as info:
        lab.finish(lab.background(lambda: theirs.recv(100)))
    assert info.value.errno == errno.ECONNRESET
    assert "TIME-WAIT" not in lab.states(ours)


def test_kernel_linger_zero_reset_is_connection_reset(lab: Lab) -> None:
    ours, theirs = _established_pair(lab, 8021)
    theirs.setsockopt(kernel_socket_mod.SOL_SOCKET, kernel_socket_mod.SO_LINGER, struct.pack("ii", 1, 0))
    theirs.close()
    with pytest.raises(ConnectionResetError) as info:
        ours.recv(100)
    assert info.value.errno == errno.ECONNRESET
    assert ours.recv(100) == b""  # reported once, as Linux does
    with pytest.raises(BrokenPipeError):
        ours.send(b"x")
    ours.close()


def test_close_with_unread_data_resets(lab: Lab) -> None:
    ours, theirs = _established_pair(lab, 8022)
    theirs.sendall(b"never read")
    conn = ours.connection
    assert conn is not None
    assert lab.pump_until(lambda: conn.readable > 0, 5)
    ours.close()  # Linux: unread data turns close() into an abort (RST)
    with pytest.raises(ConnectionResetError):
        lab.finish(lab.background(lambda: theirs.recv(100)))


# ---------------------------------------------------------------------------------------------
# Half-close
# ---------------------------------------------------------------------------------------------


def test_half_close_kernel_keeps_sending_after_our_fin(lab: Lab) -> None:
    ours, theirs = _established_pair(lab, 8030)
    ours.sendall(b"request")
    ours.shutdown(sockets.SHUT_WR)  # our FIN: FIN-WAIT-1/2 here, CLOSE-WAIT there
    conn = ours.connection
    assert conn is not None
    assert lab.finish(lab.background(lambda: _recv_all(theirs))) == b"request"
    assert lab.pump_until(lambda: conn.state is State.FIN_WAIT_2, 5)
    assert lab.kernel_state(8030, ours.getsockname()[1]) == "CLOSE-WAIT"
    with pytest.raises(BrokenPipeError):
        ours.send(b"more")
    reply = bytes(range(256)) * 400  # 100 KiB after our FIN

    def answer() -> None:
        theirs.sendall(reply)
        theirs.close()

    job = lab.background(answer)
    got = bytearray()
    while chunk := ours.recv(65536):
        got += chunk
    lab.finish(job)
    assert bytes(got) == reply
    assert lab.pump_until(lambda: conn.state is State.TIME_WAIT, 5)
    ours.close()
    assert lab.states(ours)[-3:] == ["FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT"]


def test_half_close_we_keep_sending_after_kernel_fin(lab: Lab) -> None:
    ours, theirs = _established_pair(lab, 8031)
    theirs.shutdown(kernel_socket_mod.SHUT_WR)
    assert ours.recv(100) == b""
    conn = ours.connection
    assert conn is not None and conn.state is State.CLOSE_WAIT
    payload = os.urandom(300_000)
    sink = lab.background(lambda: _recv_all(theirs))
    ours.sendall(payload)
    ours.close()
    assert lab.finish(sink) == payload
    assert lab.pump_until(lambda: conn.state is State.CLOSED, 5)
    assert lab.states(ours)[-4:] == ["ESTABLISHED", "CLOSE-WAIT", "LAST-ACK", "CLOSED"]


# ---------------------------------------------------------------------------------------------
# Keep-alive
# ---------------------------------------------------------------------------------------------


def _keepalive(s: sockets.Socket, idle: int, interval: int, count: int) -> None:
    s.setsockopt(sockets.IPPROTO_TCP, sockets.TCP_KEEPIDLE, idle)
    s.setsockopt(sockets.IPPROTO_TCP, sockets.TCP_KEEPINTVL, interval)
    s.setsockopt(sockets.IPPROTO_TCP, sockets.TCP_KEEPCNT, count)
    s.setsockopt(sockets.SOL_SOCKET, sockets.SO_KEEPALIVE, 1)


def test_keepalive_probes_are_answered_by_the_kernel(lab: Lab) -> None:
    probes: list[TimerAction] = []

    def tracer(rec: Record) -> None:
        if isinstance(rec, TimerRecord) and rec.timer is Timer.KEEPALIVE:
            probes.append(rec.action)

    lab.host.tracer = tracer
    ours, theirs = _established_pair(lab, 8040)
    _keepalive(ours, 1, 1, 2)
    assert ours.getsockopt(sockets.SOL_SOCKET, sockets.SO_KEEPALIVE) == 1
    conn = ours.connection
    assert conn is not None
    before = conn.stats[0]
    lab.run(4.5)  # idle 1 s, then a probe every second; two unanswered ones would kill it
    assert conn.state is State.ESTABLISHED
    assert sum(p is TimerAction.PROBE for p in probes) >= 3
    assert conn.stats[0] - before >= 3  # the kernel answered each probe with an ACK
    ours.sendall(b"still here")
    assert theirs.recv(100) == b"still here"


def test_keepalive_times_out_when_the_kernel_vanishes(lab: Lab) -> None:
    ours, _ = _established_pair(lab, 8041)
    conn = ours.connection
    assert conn is not None
    _keepalive(ours, 1, 1, 3)
    # Pull the cable: the link goes down on the kernel's side, so the kernel can no longer answer
    # and what we write into the device is lost (EIO). No netem/nftables is needed for this.
    lab.stack.set_link(False)
    t0 = time.monotonic()
    assert lab.pump_until(lambda: conn.state is State.CLOSED, 10)
    dt = time.monotonic() - t0
    assert 3.0 <= dt <= 8.0  # idle 1 s + 3 probes 1 s apart, then the verdict
    with pytest.raises(TimeoutError) as info:
        ours.recv(100)
    assert info.value.errno == errno.ETIMEDOUT
    assert lab.stack.counters["tun_write_EIO"] >= 3
    ours.close()


# ---------------------------------------------------------------------------------------------
# The driver itself
# ---------------------------------------------------------------------------------------------


def test_pcap_records_both_directions(lab: Lab, tmp_path: Any) -> None:
    from synack.core.wire import SYN, parse_packet
    from synack.pcap import PcapWriter, read_pcap

    path = tmp_path / "live.pcap"
    lab.stack.pcap = PcapWriter(str(path))
    ours, theirs = _established_pair(lab, 8050)
    ours.sendall(b"captured")
    assert theirs.recv(100) == b"captured"
    ours.close()
    lab.run(0.2)
    lab.stack.pcap.close()
    pkts = [parse_packet(r.data) for r in read_pcap(str(path)) if r.data[0] >> 4 == 4]
    assert pkts[0].seg.flags & SYN and pkts[0].src == S4  # our SYN
    assert pkts[1].seg.flags & SYN and pkts[1].src == K4  # the kernel's SYN,ACK
    assert any(p.seg.payload == b"captured" for p in pkts)


def test_clear_errors_without_a_namespace() -> None:
    from synack.tun import TunError, TunStack

    with pytest.raises(TunError) as info:
        TunStack(netns="synack-no-such-namespace")
    assert info.value.errno == errno.ENOENT
    assert "does not exist" in str(info.value)
