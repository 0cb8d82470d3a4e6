"""synack's tools and asyncio streams against the real kernel and its tools (curl, nc, ss), live.

Every test makes its own network namespace (``synack-tools-<pid>-<n>``) and removes it whatever
happens; every process it starts runs inside that namespace (``ip netns exec``) and is killed
by its pid at the end if it is still running. synack is 10.77.0.2 on the TUN device
``synack0``, the kernel 10.77.0.1. Nothing can reach another address. Every wait is bounded.

The tools are installed by ``scripts/setup-system.sh``: a missing tool fails the test (it does
not skip); only a machine without root or /dev/net/tun skips, as in test_live_kernel.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import itertools
import os
import re
import select
import shutil
import signal
import socket as kernel_socket_mod
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from synack import sockets, streams
from synack.core.connection import Config
from synack.core.records import Record, State, StateRecord
from synack.tun import TunStack, create_netns, netns_socket, remove_netns

pytestmark: list[pytest.MarkDecorator] = [pytest.mark.live]

K4, S4 = "10.77.0.1", "10.77.0.2"
WAIT = 15.0

if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
    pytestmark.append(pytest.mark.skip(reason="needs root and /dev/net/tun"))

_serial = itertools.count()


def tool(name: str) -> str:
    """The path of a tool the test needs; a missing one is a failure (run scripts/setup-system.sh)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/setup-system.sh")
    return path


def synack_cmd() -> list[str]:
    script = Path(sys.executable).parent / "synack"
    return [str(script)] if script.exists() else [sys.executable, "-m", "synack"]


class Lines:
    """Collects a pipe's lines in a thread; ``wait_for`` a substring, bounded."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self._thread.start()

    def _run(self, pipe: IO[str]) -> None:
        for line in pipe:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<EOF>")
            self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = WAIT) -> str:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = end - time.monotonic()
                if left <= 0 or (self.lines and self.lines[-1] == "<EOF>"):
                    raise AssertionError(f"{text!r} not seen; got {self.lines}")
                self._cond.wait(left)

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


class Namespace:
    """A private network namespace and the processes started in it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen[Any]] = []

    def spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kw)
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], timeout: float = WAIT, **kw: Any) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], timeout=timeout, **kw)

    def ss(self) -> list[tuple[str, str, str]]:
        out = self.run([tool("ss"), "-tanH"], capture_output=True, text=True, check=True).stdout
        return [(p[0], p[3], p[4]) for p in (line.split() for line in out.splitlines()) if len(p) >= 5]

    def kernel_state(self, local_port: int, peer_port: int) -> str | None:
        for st, local, peer in self.ss():
            if local.rsplit(":", 1)[1] == str(local_port) and peer.rsplit(":", 1)[1] == str(peer_port):
                return st
        return None

    def wait_listening(self, port: int, timeout: float = WAIT) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(st == "LISTEN" and local.rsplit(":", 1)[1] == str(port) for st, local, _ in self.ss()):
                return
            time.sleep(0.05)
        raise AssertionError(f"nothing listens on port {port} in {self.name}")

    def pids(self) -> list[int]:
        """Every process inside the namespace: what the test started, and what those left
        behind (a synack finishing its connections in a detached child)."""
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=WAIT)
        return [int(p) for p in out.stdout.split()]

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # by pid: only what this test started
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for pid in self.pids():  # the private namespace holds only what this test started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def ns() -> Iterator[Namespace]:
    tool("ip")
    name = f"synack-tools-{os.getpid()}-{next(_serial)}"
    create_netns(name)
    space = Namespace(name)
    try:
        yield space
    finally:
        try:
            space.cleanup()
        finally:
            remove_netns(name)


def interrupt(proc: subprocess.Popen[Any], timeout: float = WAIT) -> int:
    """Ctrl-C (SIGINT) to a process we started; its exit status, bounded."""
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout)


# ---------------------------------------------------------------------------------------------
# synack serve http, fetched by curl
# ---------------------------------------------------------------------------------------------


def test_curl_fetches_10mb_from_synack_serve_http(ns: Namespace, tmp_path: Path) -> None:
    curl = tool("curl")
    root = tmp_path / "www"
    root.mkdir()
    data = os.urandom(10 * 1024 * 1024)
    (root / "big.bin").write_bytes(data)
    (root / "hello.txt").write_text("hello from synack\n")
    server = ns.spawn([*synack_cmd(), "serve", "http", str(root), "--tun", "synack0"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stderr is not None
    out = Lines(server.stdout)
    err = Lines(server.stderr)
    out.wait_for("listening on 10.77.0.2:80")

    target = tmp_path / "got.bin"
    t0 = time.monotonic()
    got = ns.run([curl, "-sS", "--max-time", "60", "-o", str(target), "-w", "%{http_code} %{size_download}",
                  "http://10.77.0.2/big.bin"], timeout=70, capture_output=True, text=True)
    dt = time.monotonic() - t0
    assert got.returncode == 0, got.stderr
    assert got.stdout == f"200 {len(data)}"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    print(f"\ncurl: 10 MiB from synack serve http in {dt:.2f} s ({len(data) / dt / 1e6:.1f} MB/s)")

    small = ns.run([curl, "-sS", "--max-time", "10", "-i", "http://10.77.0.2/hello.txt"],
                   capture_output=True, text=True)
    assert small.returncode == 0
    assert small.stdout.startswith("HTTP/1.1 200 OK")
    assert "Content-Length: 18" in small.stdout and small.stdout.endswith("hello from synack\n")
    missing = ns.run([curl, "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                      "http://10.77.0.2/no/such/file"], capture_output=True, text=True)
    assert missing.stdout == "404"
    head = ns.run([curl, "-sS", "--max-time", "10", "-I", "http://10.77.0.2/big.bin"],
                  capture_output=True, text=True)
    assert f"Content-Length: {len(data)}" in head.stdout

    # Every connection's life, one line per state change.
    out.wait_for("LISTEN -> SYN-RECEIVED")
    out.wait_for("SYN-RECEIVED -> ESTABLISHED")
    out.wait_for("ESTABLISHED -> FIN-WAIT-1")
    out.wait_for('"GET /big.bin HTTP/1.1" 200 10485760')
    assert interrupt(server) == 0
    out.wait_for("stopping")
    assert "Traceback" not in err.text()


def test_synack_serve_ctrl_c_closes_open_connections_gracefully(ns: Namespace, tmp_path: Path) -> None:
    from synack.core.wire import FIN, SYN, parse_packet
    from synack.pcap import read_pcap

    pcap = tmp_path / "echo.pcap"
    server = ns.spawn([*synack_cmd(), "serve", "echo", "--port", "7007", "--pcap", str(pcap)],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    out = Lines(server.stdout)
    out.wait_for("listening on 10.77.0.2:7007")
    client = netns_socket(ns.name)
    try:
        client.settimeout(WAIT)
        client.connect((S4, 7007))
        client.sendall(b"echo me\n")
        assert client.recv(100) == b"echo me\n"
        server.send_signal(signal.SIGINT)  # Ctrl-C: our FIN ...
        assert client.recv(100) == b""  # ... end of stream, not a reset
    finally:
        client.close()
    assert server.wait(WAIT) == 0  # our TIME-WAIT goes on in a detached child (the namespace's)
    out.wait_for("ESTABLISHED -> FIN-WAIT-1")
    out.wait_for("FIN-WAIT-1 -> FIN-WAIT-2")
    segs = [parse_packet(r.data).seg for r in read_pcap(str(pcap)) if r.data[0] >> 4 == 4]
    assert segs[0].flags & SYN and segs[1].flags & SYN  # the handshake ...
    assert any(s.payload == b"echo me\n" and s.src_port == 7007 for s in segs)  # ... the echo ...
    assert any(s.flags & FIN and s.src_port == 7007 for s in segs)  # ... and our FIN on Ctrl-C


def test_synack_serve_chargen_and_discard(ns: Namespace) -> None:
    from synack.netcat import chargen_block

    chargen = ns.spawn([*synack_cmd(), "serve", "chargen", "-q"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert chargen.stdout is not None
    Lines(chargen.stdout).wait_for("listening on 10.77.0.2:19")
    client = netns_socket(ns.name)
    try:
        client.settimeout(WAIT)
        client.connect((S4, 19))
        got = bytearray()
        while len(got) < 100_000:
            chunk = client.recv(65536)
            assert chunk
            got += chunk
        pattern = chargen_block(0, 95)
        assert bytes(got[:len(pattern)]) == pattern  # RFC 864: 72 printable characters per line
        assert got.split(b"\r\n")[1] == bytes(range(33, 105))
    finally:
        client.close()  # unread data: a reset, which ends the server's loop
    assert interrupt(chargen) == 0

    discard = ns.spawn([*synack_cmd(), "serve", "discard", "-q", "--tun", "synack1"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert discard.stdout is not None
    Lines(discard.stdout).wait_for("listening on 10.77.0.2:9")
    client = netns_socket(ns.name)
    try:
        client.settimeout(WAIT)
        client.connect((S4, 9))
        client.sendall(os.urandom(1_000_000))
        client.shutdown(kernel_socket_mod.SHUT_WR)
        assert client.recv(100) == b""  # everything swallowed, then the server's FIN
    finally:
        client.close()
    assert interrupt(discard) == 0


def test_synack_nc_idle_timeout(ns: Namespace) -> None:
    ns.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = netns_socket(ns.name)
    try:
        listener.bind(("0.0.0.0", 5002))
        listener.listen()
        t0 = time.monotonic()
        ours = ns.run([*synack_cmd(), "nc", "-d", "-w", "1", K4, "5002"], capture_output=True, text=True,
                      stdin=subprocess.DEVNULL)
        dt = time.monotonic() - t0
        assert ours.returncode == 1
        assert 1.0 <= dt < 8.0
    finally:
        listener.close()


def test_cli_setup_errors_are_one_line(ns: Namespace) -> None:
    bad = ns.run([*synack_cmd(), "serve", "echo", "--addr", "10.99.0.2"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "outside the kernel side's network" in bad.stderr
    refused = ns.run([*synack_cmd(), "nc", "-w", "5", K4, "9"], capture_output=True, text=True,
                     stdin=subprocess.DEVNULL)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "synack nc: connect to 10.77.0.1 port 9 (tcp) failed: Connection refused"
    first = ns.spawn([*synack_cmd(), "serve", "discard", "--tun", "synack9"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert first.stdout is not None
    Lines(first.stdout).wait_for("listening")
    busy = ns.run([*synack_cmd(), "serve", "discard", "--tun", "synack9"], capture_output=True, text=True)
    assert busy.returncode == 1
    assert busy.stderr.count("\n") == 1 and "Traceback" not in busy.stderr
    assert "synack9" in busy.stderr
    assert interrupt(first) == 0
    setpriv = tool("setpriv")
    drop_root = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    unprivileged = ns.run([*drop_root, *synack_cmd(), "serve", "echo"], capture_output=True, text=True)
    assert unprivileged.returncode == 1
    assert unprivileged.stderr.count("\n") == 1
    assert "needs root or CAP_NET_ADMIN" in unprivileged.stderr


# ---------------------------------------------------------------------------------------------
# synack nc against the kernel's nc (netcat-openbsd)
# ---------------------------------------------------------------------------------------------


def test_synack_nc_listen_receives_from_kernel_nc(ns: Namespace, tmp_path: Path) -> None:
    nc = tool("nc")
    data = os.urandom(2_000_000)
    (tmp_path / "in.bin").write_bytes(data)
    with open(tmp_path / "out.bin", "wb") as sink:
        ours = ns.spawn([*synack_cmd(), "nc", "-l", "-v", "5000"], stdin=subprocess.DEVNULL, stdout=sink,
                        stderr=subprocess.PIPE, text=True)
    assert ours.stderr is not None
    err = Lines(ours.stderr)
    err.wait_for("Listening on 10.77.0.2 5000")
    with open(tmp_path / "in.bin", "rb") as src:
        theirs = ns.run([nc, "-N", S4, "5000"], stdin=src, capture_output=True, timeout=30)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.wait(WAIT) == 0  # the kernel's FIN ends our nc, which closes in turn
    assert (tmp_path / "out.bin").read_bytes() == data
    err.wait_for("Connection received on 10.77.0.1")
    err.wait_for("ESTABLISHED -> CLOSE-WAIT")
    err.wait_for("LAST-ACK -> CLOSED")


def test_synack_nc_sends_to_kernel_nc_listen(ns: Namespace, tmp_path: Path) -> None:
    nc = tool("nc")
    data = os.urandom(2_000_000)
    (tmp_path / "in.bin").write_bytes(data)
    # Kernel side first: the namespace's loopback only, until synack brings up synack0.
    ns.run(["ip", "link", "set", "lo", "up"], check=True)
    with open(tmp_path / "out.bin", "wb") as sink:
        theirs = ns.spawn([nc, "-l", "-d", "5001"], stdout=sink, stderr=subprocess.PIPE)
    ns.wait_listening(5001)
    with open(tmp_path / "in.bin", "rb") as src:
        ours = ns.run([*synack_cmd(), "nc", "-N", "-v", "-w", "10", K4, "5001"], stdin=src,
                      capture_output=True, text=True, timeout=30)
    assert ours.returncode == 0, ours.stderr
    assert theirs.wait(WAIT) == 0
    assert (tmp_path / "out.bin").read_bytes() == data
    assert "Connection to 10.77.0.1 5001 port [tcp/*] succeeded!" in ours.stderr
    # -N: our FIN when stdin ended; the kernel's nc then closed too; we close first (TIME-WAIT).
    assert "ESTABLISHED -> FIN-WAIT-1" in ours.stderr
    assert "FIN-WAIT-2 -> TIME-WAIT" in ours.stderr


# ---------------------------------------------------------------------------------------------
# asyncio streams on synack, against kernel sockets
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def stack(ns: Namespace) -> Iterator[TunStack]:
    s = TunStack(netns=ns.name, config=Config(msl=30.0))
    try:
        yield s
    finally:
        s.close()


def arun(coro: Awaitable[Any], timeout: float = 60.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    """Send ``data`` and our FIN while reading the echo to its end."""

    async def send() -> None:
        writer.write(data)
        await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    got = bytearray()
    while chunk := await asyncio.wait_for(reader.read(1 << 20), WAIT):
        got += chunk
    await sender
    return bytes(got)


def test_asyncio_echo_server_on_synack_kernel_client(ns: Namespace, stack: TunStack) -> None:
    data = os.urandom(4_000_000)

    async def main() -> None:
        server = await streams.start_server(_echo, stack, S4, 7)
        ksock = netns_socket(ns.name)
        ksock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(ksock, (S4, 7)), WAIT)
        reader, writer = await asyncio.open_connection(sock=ksock)  # the kernel's own streams
        assert await _exchange(reader, writer, data) == data
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), WAIT)
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)

    arun(main())


def test_asyncio_echo_client_on_synack_kernel_server(ns: Namespace, stack: TunStack) -> None:
    data = os.urandom(4_000_000)

    async def main() -> None:
        lsock = netns_socket(ns.name)
        lsock.setsockopt(kernel_socket_mod.SOL_SOCKET, kernel_socket_mod.SO_REUSEADDR, 1)
        lsock.bind((K4, 8007))
        lsock.listen()
        lsock.setblocking(False)
        kserver = await asyncio.start_server(_echo, sock=lsock)
        reader, writer = await streams.open_connection(stack, K4, 8007)
        assert writer.get_extra_info("peername") == (K4, 8007)
        port = writer.get_extra_info("sockname")[1]
        assert await asyncio.to_thread(ns.kernel_state, 8007, port) == "ESTAB"
        assert await _exchange(reader, writer, data) == data
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), WAIT)
        kserver.close()
        await asyncio.wait_for(kserver.wait_closed(), WAIT)

    arun(main())


def test_asyncio_flow_control_against_the_kernel(ns: Namespace, stack: TunStack) -> None:
    """A synack reader that stops reading closes its window to the kernel; a synack writer whose
    kernel peer does not read is paused (drain blocks) and resumed when the kernel reads."""
    data = os.urandom(3_000_000)

    async def main() -> None:
        lsock = netns_socket(ns.name)
        lsock.bind((K4, 8008))
        lsock.listen()
        lsock.setblocking(False)
        loop = asyncio.get_running_loop()
        reader, writer = await streams.open_connection(stack, K4, 8008, limit=8192)
        ksock, _ = await asyncio.wait_for(loop.sock_accept(lsock), WAIT)
        conn = writer.get_extra_info("connection")

        # Kernel -> synack, synack not reading: our window closes; the kernel keeps the rest.
        sending = asyncio.create_task(loop.sock_sendall(ksock, data))
        end = loop.time() + WAIT
        while not (conn.rcv_wnd == 0 and conn.readable == conn.config.rcv_buf) and loop.time() < end:
            await asyncio.sleep(0.02)
        assert conn.rcv_wnd == 0
        assert isinstance(writer.transport, streams.TcpTransport)
        assert not writer.transport.is_reading()
        assert not sending.done()
        got = await asyncio.wait_for(reader.readexactly(len(data)), WAIT)
        assert got == data
        await asyncio.wait_for(sending, WAIT)

        # synack -> kernel, kernel not reading: the transport buffers, the writer is paused.
        writer.write(data * 2)
        assert writer.transport.get_write_buffer_size() > 64 * 1024
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(writer.drain(), 0.5)
        received = bytearray()
        while len(received) < 2 * len(data):
            chunk = await asyncio.wait_for(loop.sock_recv(ksock, 1 << 20), WAIT)
            assert chunk
            received += chunk
        assert bytes(received) == data * 2
        await asyncio.wait_for(writer.drain(), WAIT)
        assert writer.transport.get_write_buffer_size() == 0

        # A reset from the kernel is ConnectionResetError for the reader.
        ksock.setsockopt(kernel_socket_mod.SOL_SOCKET, kernel_socket_mod.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        ksock.close()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), WAIT)
        writer.close()
        lsock.close()
        with pytest.raises(ConnectionRefusedError):
            await streams.open_connection(stack, K4, 8008)

    arun(main())


# ---------------------------------------------------------------------------------------------
# Simultaneous open with the kernel
# ---------------------------------------------------------------------------------------------


def test_simultaneous_open_with_the_kernel(ns: Namespace, stack: TunStack) -> None:
    """Kernel port 40001 connects to synack port 40002 while synack's 40002 connects to 40001:
    both SYNs cross. Deterministic: the kernel's SYN is left waiting in the device (not read) until
    our SYN has been written, so each side is in SYN-SENT when the other's SYN arrives."""
    states: list[str] = []

    def tracer(rec: Record) -> None:
        if isinstance(rec, StateRecord) and rec.conn[1] == 40002:
            if not states:
                states.append(rec.old)
            states.append(rec.new)

    stack.host.tracer = tracer
    ksock = netns_socket(ns.name)
    try:
        ksock.setsockopt(kernel_socket_mod.SOL_SOCKET, kernel_socket_mod.SO_REUSEADDR, 1)
        ksock.bind((K4, 40001))
        ksock.setblocking(False)
        assert ksock.connect_ex((S4, 40002)) == errno.EINPROGRESS  # the kernel's SYN is sent
        readable, _, _ = select.select([stack.fileno()], [], [], WAIT)  # ... and waits in the device
        assert readable
        conn = stack.host.connect(K4, 40001, stack.now(), local_port=40002)
        assert stack.transmit()  # our SYN goes out before we have looked at theirs
        assert stack.wait_until(lambda: conn.state is State.ESTABLISHED, WAIT)
        _, writable, _ = select.select([], [ksock], [], WAIT)
        assert writable and ksock.getsockopt(kernel_socket_mod.SOL_SOCKET, kernel_socket_mod.SO_ERROR) == 0
        assert ns.kernel_state(40001, 40002) == "ESTAB"
        assert states == ["CLOSED", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED"]

        conn.send(b"crossed", stack.now())
        stack.flush()
        ksock.setblocking(True)
        ksock.settimeout(WAIT)
        assert ksock.recv(100) == b"crossed"
        ksock.sendall(b"and back")
        assert stack.wait_until(lambda: conn.readable >= 8, WAIT)
        assert conn.receive(100, stack.now()) == b"and back"
    finally:
        ksock.close()


# ---------------------------------------------------------------------------------------------
# TIME-WAIT and the bind rules, against the kernel
# ---------------------------------------------------------------------------------------------


def _kernel_server(ns: Namespace, port: int) -> kernel_socket_mod.socket:
    srv = netns_socket(ns.name)
    srv.setsockopt(kernel_socket_mod.SOL_SOCKET, kernel_socket_mod.SO_REUSEADDR, 1)
    srv.bind((K4, port))
    srv.listen()
    srv.settimeout(WAIT)
    return srv


def test_time_wait_after_our_active_close_and_so_reuseaddr(ns: Namespace, stack: TunStack) -> None:
    srv = _kernel_server(ns, 8100)
    ours = sockets.socket(stack)
    ours.settimeout(WAIT)
    # Linux: SO_REUSEADDR shares a port with a TIME-WAIT connection only if both sockets set it.
    ours.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEADDR, 1)
    ours.bind((S4, 40100))
    ours.connect((K4, 8100))
    theirs, _ = srv.accept()
    try:
        theirs.settimeout(WAIT)
        ours.sendall(b"one")
        assert theirs.recv(10) == b"one"
        conn = ours.connection
        assert conn is not None
        ours.close()  # we close first ...
        assert stack.wait_until(lambda: conn.state is State.FIN_WAIT_2, WAIT)
        assert theirs.recv(10) == b""
        theirs.close()  # ... the kernel second: we end in TIME-WAIT, the kernel's socket is gone
        assert stack.wait_until(lambda: conn.state is State.TIME_WAIT, WAIT)
        end = time.monotonic() + WAIT
        while ns.kernel_state(8100, 40100) is not None and time.monotonic() < end:
            stack.run_for(0.05)
        assert ns.kernel_state(8100, 40100) is None

        again = sockets.socket(stack)
        with pytest.raises(OSError) as info:
            again.bind((S4, 40100))
        assert info.value.errno == errno.EADDRINUSE
        again.close()

        reuse = sockets.socket(stack)
        reuse.settimeout(WAIT)
        reuse.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEADDR, 1)
        reuse.bind((S4, 40100))  # allowed: the only other user is in TIME-WAIT, and set it too
        reuse.connect((K4, 8100))  # same four-tuple: the TIME-WAIT connection makes way
        second, addr = srv.accept()
        second.settimeout(WAIT)
        assert addr == (S4, 40100)
        reuse.sendall(b"two")
        assert second.recv(10) == b"two"
        assert ns.kernel_state(8100, 40100) == "ESTAB"
        key = (S4, 40100, K4, 8100)
        assert stack.host.conns[key] is reuse.connection is not conn  # the old incarnation is gone
        reuse.close()
        second.close()
    finally:
        theirs.close()
        srv.close()


def test_kernel_time_wait_when_the_kernel_closes_first(ns: Namespace, stack: TunStack) -> None:
    srv = _kernel_server(ns, 8101)
    ours = sockets.socket(stack)
    ours.settimeout(WAIT)
    ours.bind((S4, 40101))
    ours.connect((K4, 8101))
    theirs, _ = srv.accept()
    try:
        theirs.sendall(b"bye")
        theirs.close()  # the kernel closes first: FIN-WAIT there, CLOSE-WAIT here
        assert ours.recv(10) == b"bye"
        assert ours.recv(10) == b""
        conn = ours.connection
        assert conn is not None and conn.state is State.CLOSE_WAIT
        ours.close()  # LAST-ACK -> CLOSED here; TIME-WAIT on the kernel's side
        assert stack.wait_until(lambda: conn.state is State.CLOSED, WAIT)
        end = time.monotonic() + WAIT
        while ns.kernel_state(8101, 40101) != "TIME-WAIT" and time.monotonic() < end:
            stack.run_for(0.05)
        assert ns.kernel_state(8101, 40101) == "TIME-WAIT"
        # Our side holds nothing: the port is free at once, without SO_REUSEADDR.
        again = sockets.socket(stack)
        again.settimeout(WAIT)
        again.bind((S4, 40101))
        # The same four-tuple into the kernel's TIME-WAIT: our new SYN has a higher sequence
        # number and timestamp, so Linux reopens the connection (RFC 9293 MAY-2, RFC 6191).
        again.connect((K4, 8101))
        third, _ = srv.accept()
        third.settimeout(WAIT)
        again.sendall(b"reborn")
        assert third.recv(10) == b"reborn"
        assert ns.kernel_state(8101, 40101) == "ESTAB"
        again.close()
        third.close()
    finally:
        srv.close()


# ---------------------------------------------------------------------------------------------
# The TCP part outlives the application (issue 10)
# ---------------------------------------------------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36
_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4


class Reaper:
    """The test process adopts the orphans of what it starts (``PR_SET_CHILD_SUBREAPER``): a
    synack that detaches its TCP part leaves a child, whose exit status we can then read."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._set(1)
        self.adopted: list[int] = []

    def _set(self, on: int) -> None:
        assert self._libc.prctl(_PR_SET_CHILD_SUBREAPER, on, 0, 0, 0) == 0

    def adopt(self, pid: int) -> None:
        self.adopted.append(pid)

    def wait(self, pid: int, timeout: float) -> int | None:
        """The exit status of an adopted process, or None if it still runs after ``timeout``."""
        end = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.adopted.remove(pid)
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() >= end:
                return None
            time.sleep(0.01)

    def close(self) -> None:
        for pid in self.adopted:  # only the processes this test made us the parent of
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._set(0)


@pytest.fixture
def reaper(ns: Namespace) -> Iterator[Reaper]:
    r = Reaper()
    try:
        yield r
    finally:
        r.close()


def detached_pid(line: str) -> int:
    """The process a synack tool left to finish its connections, from the line it printed."""
    found = re.search(r"keeps running in process (\d+)", line)
    assert found, line
    return int(found.group(1))


class Sniffer:
    """Every IPv4 TCP packet crossing a device of the namespace (an AF_PACKET socket, read in a
    thread): ``(time, outgoing, segment)`` — outgoing = the kernel's, into the device."""

    def __init__(self, ns: str, ifname: str) -> None:
        from synack.core.wire import Segment

        self.packets: list[tuple[float, bool, Segment]] = []
        self._cond = threading.Condition()
        self._sock = netns_socket(ns, kernel_socket_mod.AF_PACKET, kernel_socket_mod.SOCK_RAW,
                                  kernel_socket_mod.htons(_ETH_P_ALL))
        self._sock.bind((ifname, 0))
        self._sock.settimeout(0.1)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from synack.core.wire import WireError, parse_packet

        while not self._stop:
            try:
                data, addr = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENETDOWN:
                    continue  # the link went down (it listens again once it is up)
                return  # the device went away
            if not data or data[0] >> 4 != 4 or data[9] != 6:
                continue
            try:
                seg = parse_packet(data).seg
            except WireError:
                continue
            with self._cond:
                self.packets.append((time.monotonic(), addr[2] == _PACKET_OUTGOING, seg))
                self._cond.notify_all()

    def wait_for(self, what: Callable[[float, bool, Any], bool], timeout: float = WAIT) -> tuple[float, Any]:
        """The first packet ``what(time, outgoing, segment)`` accepts: (time, segment)."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, out, seg in self.packets:
                    if what(t, out, seg):
                        return t, seg
                left = end - time.monotonic()
                if left <= 0:
                    seen = [(round(t, 3), out, str(seg)) for t, out, seg in self.packets]
                    raise AssertionError(f"no such packet in {len(self.packets)} seen: {seen}")
                self._cond.wait(left)

    def close(self) -> None:
        self._stop = True
        self._thread.join(WAIT)
        self._sock.close()


def wait_reset(sock: kernel_socket_mod.socket) -> None:
    """Bounded: a RST reaches the kernel socket (in CLOSE-WAIT: Linux's error is EPIPE)."""
    end = time.monotonic() + WAIT
    while sock.getsockopt(kernel_socket_mod.SOL_SOCKET, kernel_socket_mod.SO_ERROR) != errno.EPIPE:
        assert time.monotonic() < end, "no RST reached the kernel's socket"
        time.sleep(0.02)


def _recv_to_eof(sock: kernel_socket_mod.socket) -> bytes:
    got = bytearray()
    while chunk := sock.recv(65536):
        got += chunk
    return bytes(got)


def test_synack_nc_listen_reacks_a_retransmitted_fin_after_its_application_ended(
        ns: Namespace, reaper: Reaper, tmp_path: Path) -> None:
    """L10 after the application (issue 10): ``synack nc -l -N`` closes first (its stdin ends),
    the kernel second; synack's ACK of the kernel's FIN is lost; synack nc exits (the shell is
    back) while its TCP part, detached, stays in TIME-WAIT — and acknowledges the kernel's
    retransmitted FIN, so the kernel's socket leaves LAST-ACK. The loss is deterministic: synack
    is stopped (SIGSTOP) while the kernel's FIN waits in the device, the link is taken down, and
    synack, continued, reads the FIN and fails to write its ACK (EIO); the link comes back up
    once synack nc has exited."""
    from synack.core.wire import ACK, FIN

    data = b"bytes from synack nc\n"
    (tmp_path / "in").write_bytes(data)
    with open(tmp_path / "in", "rb") as src:
        ours = ns.spawn([*synack_cmd(), "nc", "-l", "-N", "-v", "--msl", "5", "5000"], stdin=src,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert ours.stderr is not None
    err = Lines(ours.stderr)
    err.wait_for("Listening on 10.77.0.2 5000")
    sniff = Sniffer(ns.name, "synack0")
    client = netns_socket(ns.name)
    try:
        client.settimeout(WAIT)
        client.connect((S4, 5000))
        kport = client.getsockname()[1]
        assert _recv_to_eof(client) == data  # synack's data and FIN: it is in FIN-WAIT-2
        err.wait_for("FIN-WAIT-1 -> FIN-WAIT-2")
        os.kill(ours.pid, signal.SIGSTOP)
        try:
            client.close()  # the kernel's FIN (LAST-ACK) waits in the device: synack is stopped
            _, fin = sniff.wait_for(lambda _t, out, s: out and bool(s.flags & FIN))
            ns.run(["ip", "link", "set", "synack0", "down"], check=True)
        finally:
            os.kill(ours.pid, signal.SIGCONT)
        assert ours.wait(WAIT) == 0  # synack nc is done: the shell is back ...
        err.wait_for("FIN-WAIT-2 -> TIME-WAIT")  # ... its ACK of that FIN was lost (EIO)
        pid = detached_pid(err.wait_for("keeps running in process"))
        reaper.adopt(pid)
        assert ns.kernel_state(kport, 5000) == "LAST-ACK"
        t_up = time.monotonic()
        ns.run(["ip", "link", "set", "synack0", "up"], check=True)
        # The kernel retransmits its FIN; the detached TCP part acknowledges it again.
        t_ack, ack = sniff.wait_for(lambda t, out, s: t > t_up and not out and s.ack == (fin.seq + 1) % 2**32
                                    and s.flags & (ACK | FIN) == ACK)
        assert t_ack > t_up and ack.src_port == 5000
        end = time.monotonic() + WAIT
        while ns.kernel_state(kport, 5000) is not None and time.monotonic() < end:
            time.sleep(0.05)
        assert ns.kernel_state(kport, 5000) is None  # the kernel's socket got its ACK: CLOSED
        # TIME-WAIT (2×MSL = 10 s from the retransmitted FIN) ends, the child exits, the device goes.
        assert reaper.wait(pid, 10 + WAIT) == 0
        assert ns.run(["ip", "link", "show", "synack0"], capture_output=True).returncode != 0
    finally:
        client.close()
        sniff.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_synack_serve_signal_with_open_connections_no_traceback_every_peer_told(
        ns: Namespace, sig: signal.Signals) -> None:
    """A signal with four open connections: no traceback; each gets our FIN; the three peers that
    close in turn are acknowledged (no kernel socket left in LAST-ACK), the one that does not
    (synack in FIN-WAIT-2, the kernel in CLOSE-WAIT) is reset when ``--linger-exit`` runs out
    (its socket error is EPIPE, Linux's for a RST in CLOSE-WAIT) — no peer left hanging."""
    server = ns.spawn([*synack_cmd(), "serve", "echo", "--port", "7008", "--msl", "5", "--linger-exit", "2"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stderr is not None
    out, err = Lines(server.stdout), Lines(server.stderr)
    out.wait_for("listening on 10.77.0.2:7008")
    clients = [netns_socket(ns.name) for _ in range(4)]
    try:
        for c in clients:
            c.settimeout(WAIT)
            c.connect((S4, 7008))
            c.sendall(b"ping")
            assert c.recv(10) == b"ping"
        *polite, stubborn = clients
        server.send_signal(sig)
        for c in polite:
            assert c.recv(10) == b""  # our FIN
            c.close()  # theirs
        assert stubborn.recv(10) == b""  # our FIN; this one stays open
        t0 = time.monotonic()
        assert server.wait(WAIT) == 0
        assert time.monotonic() - t0 < 2 + 3  # the --linger-exit bound, and a margin
        err.wait_for("waiting at most 2 s (--linger-exit)")
        err.wait_for("reset what was still open")
        text = out.text() + err.text()
        assert "Traceback" not in text and "Exception" not in text, text
        wait_reset(stubborn)
        assert [st for st, _, peer in ns.ss() if peer.endswith(":7008")] == []  # every kernel socket closed
    finally:
        for c in clients:
            c.close()


def test_deleted_device_ends_synack_serve_within_a_second(ns: Namespace) -> None:
    """``ip link del`` under a running ``synack serve`` (the asyncio loop): one clear line, exit
    status 1, within a second — no spin on the dead descriptor, no traceback."""
    server = ns.spawn([*synack_cmd(), "serve", "echo", "--port", "7009"], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stderr is not None
    Lines(server.stdout).wait_for("listening on 10.77.0.2:7009")
    err = Lines(server.stderr)
    client = netns_socket(ns.name)
    try:
        client.settimeout(WAIT)
        client.connect((S4, 7009))
        client.sendall(b"ping")
        assert client.recv(10) == b"ping"
        t0 = time.monotonic()
        ns.run(["ip", "link", "del", "synack0"], check=True)
        assert server.wait(WAIT) == 1
        assert time.monotonic() - t0 < 1.0
    finally:
        client.close()
    line = err.wait_for("synack serve: the TUN device synack0 disappeared")
    assert "1 connection(s) lost" in line
    assert "Traceback" not in err.text() and err.text().count("\n") == 1  # one line, and <EOF>


def test_deleted_device_ends_a_detached_tcp_part_within_a_second(ns: Namespace, reaper: Reaper) -> None:
    """The detached TCP part (the blocking loop, in TIME-WAIT) ends within a second of ``ip link
    del``, with status 1, instead of spinning on the descriptor."""
    listener = netns_socket(ns.name)
    try:
        ns.run(["ip", "link", "set", "lo", "up"], check=True)
        listener.bind(("0.0.0.0", 5003))
        listener.listen()
        listener.settimeout(WAIT)
        ours = ns.spawn([*synack_cmd(), "nc", "-N", K4, "5003"], stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert ours.stderr is not None
        err = Lines(ours.stderr)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(WAIT)
            assert conn.recv(10) == b""  # synack's FIN (stdin was empty) ...
        assert ours.wait(WAIT) == 0  # ... ours after it: synack is in TIME-WAIT, detached
        pid = detached_pid(err.wait_for("keeps running in process"))
        reaper.adopt(pid)
        time.sleep(0.2)  # it is asleep in poll (TIME-WAIT: 60 s)
        assert reaper.wait(pid, 0) is None
        t0 = time.monotonic()
        ns.run(["ip", "link", "del", "synack0"], check=True)
        assert reaper.wait(pid, 1.0) == 1
        assert time.monotonic() - t0 < 1.0
    finally:
        listener.close()


def test_kill_of_the_detached_tcp_part_resets_what_it_holds(ns: Namespace, reaper: Reaper) -> None:
    """``kill PID``, as the tool's message says, ends the detached TCP part at once and tells
    its peer: here synack is in FIN-WAIT-2 (its nc timed out idle; the kernel's side never
    closes) and the kernel's socket gets a RST (SO_ERROR EPIPE: a RST in CLOSE-WAIT)."""
    listener = netns_socket(ns.name)
    try:
        ns.run(["ip", "link", "set", "lo", "up"], check=True)
        listener.bind(("0.0.0.0", 5004))
        listener.listen()
        listener.settimeout(WAIT)
        ours = ns.spawn([*synack_cmd(), "nc", "-d", "-w", "1", K4, "5004"], stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert ours.stderr is not None
        err = Lines(ours.stderr)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(WAIT)
            assert conn.recv(10) == b""  # synack's FIN after its idle second; we do not close
            assert ours.wait(WAIT) == 1  # the idle timeout's status
            line = err.wait_for("keeps running in process")
            assert "in FIN-WAIT-2 (the peer's FIN, at most 60 s)" in line
            pid = detached_pid(line)
            reaper.adopt(pid)
            os.kill(pid, signal.SIGTERM)
            assert reaper.wait(pid, 2.0) == 0
            wait_reset(conn)
    finally:
        listener.close()
