"""tshark is the oracle for Wireshark's per-packet analysis flags and ``-z conv,tcp``.

Two sources of captures, both made by the tests: the simulator with faults (loss, duplication,
reordering, aborts, crashes), written as seen at one end; and real Linux traffic, kernel to
kernel over the loopback of a private network namespace the test creates and removes, captured
by tcpdump (a bounded number of packets) — a normal exchange, a zero window with its probes,
keep-alives, a refused connection, an abortive close, captured as Ethernet (``-i lo``) and as
Linux cooked capture (``-i any``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from synack.analyze.engine import Engine, Options
from synack.analyze.model import FLAG_FIELDS, ConnectionResult
from synack.analyze.run import analyze
from synack.pcap import iter_batches
from tests.test_analyze_truth import PLANS, simulate

FIELDS = list(FLAG_FIELDS.values())


def tshark() -> str:
    path = shutil.which("tshark")
    assert path is not None, "tshark is not installed: run scripts/setup-system.sh (CI installs it)"
    return path


def tshark_flags(path: Path) -> dict[int, tuple[int, set[str]]]:
    cmd = [tshark(), "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "tcp.stream"]
    for f in FIELDS:
        cmd += ["-e", f"tcp.analysis.{f}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    found: dict[int, tuple[int, set[str]]] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[1]:
            found[int(parts[0])] = (int(parts[1]), {FIELDS[i] for i, v in enumerate(parts[2:]) if v})
    return found


def synack_flags(path: Path) -> dict[int, tuple[int, set[str]]]:
    found: dict[int, tuple[int, set[str]]] = {}

    def record(frame: int, cid: int, bits: int) -> None:
        found[frame] = (cid, {name for bit, name in FLAG_FIELDS.items() if bits & bit})

    engine = Engine(Options(on_packet=record), lambda r: None)
    engine.run(iter_batches(str(path)))
    engine.finish()
    return found


def tshark_conversations(path: Path) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """(endpoint, endpoint) sorted → frames and bytes from the first endpoint, then the second."""
    out = subprocess.run(
        [tshark(), "-r", str(path), "-q", "-z", "conv,tcp"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    conv: dict[tuple[str, str], tuple[int, int, int, int]] = {}
    for line in out.splitlines():
        parts = line.split()
        if "<->" not in parts:
            continue
        a, b = parts[0], parts[2]
        # tshark 4.0: frames and bytes B→A, then A→B; bytes as "N bytes" (small enough here)
        assert parts[5] == parts[8] == "bytes", line
        f_ba, b_ba, f_ab, b_ab = int(parts[3]), int(parts[4]), int(parts[6]), int(parts[7])
        conv[(a, b) if a < b else (b, a)] = (f_ab, b_ab, f_ba, b_ba) if a < b else (f_ba, b_ba, f_ab, b_ab)
    return conv


def synack_conversations(results: list[ConnectionResult]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    conv: dict[tuple[str, str], tuple[int, int, int, int]] = {}
    for r in results:
        a, b = r.endpoint(0), r.endpoint(1)
        o, p = r.stats
        conv[(a, b) if a < b else (b, a)] = (
            (o.packets, o.frame_bytes, p.packets, p.frame_bytes)
            if a < b
            else (p.packets, p.frame_bytes, o.packets, o.frame_bytes)
        )
    return conv


def results_of(path: Path, **options: Any) -> list[ConnectionResult]:
    out: list[ConnectionResult] = []
    analyze([str(path)], Options(**options), [out.append])
    return sorted(out, key=lambda r: r.id)


def assert_like_tshark(path: Path) -> dict[str, int]:
    """Every frame's stream and analysis flags as tshark's; returns how often each flag was seen."""
    theirs, mine = tshark_flags(path), synack_flags(path)
    assert theirs, "tshark found no TCP"
    differences = [(f, theirs[f], mine.get(f)) for f in sorted(theirs) if theirs[f] != mine.get(f)]
    assert not differences, differences[:5]
    seen: dict[str, int] = {}
    for _stream, flags in theirs.values():
        for flag in flags:
            seen[flag] = seen.get(flag, 0) + 1
    return seen


# ---------------------------------------------------------------------------------------------
# Simulated captures
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("at", ["A", "B"])
def test_flags_and_streams_match_tshark_on_faulty_simulations(at: str, tmp_path: Path) -> None:
    seen: dict[str, int] = {}
    for seed in range(40):
        run = simulate(
            seed, PLANS[seed % len(PLANS)], (0.0, 0.1, 0.2)[seed % 3], 0.1 * (seed % 2), 0.1, seed % 5 == 0
        )
        path = tmp_path / f"{seed}.pcap"
        run.trace.to_pcap(path, at=at)
        for flag, n in assert_like_tshark(path).items():
            seen[flag] = seen.get(flag, 0) + n
    # the comparison has something to compare
    assert {"retransmission", "duplicate_ack", "lost_segment", "spurious_retransmission"} <= set(seen)


def test_conversations_match_tshark(tmp_path: Path) -> None:
    for seed in range(12):
        run = simulate(seed, PLANS[seed % len(PLANS)], 0.1, 0.05, 0.05, False)
        path = tmp_path / f"{seed}.pcap"
        run.trace.to_pcap(path, at="A")
        assert synack_conversations(results_of(path)) == tshark_conversations(path)


# ---------------------------------------------------------------------------------------------
# Real Linux traffic in a private namespace
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    from synack.tun import create_netns, remove_netns

    name = f"synack-az-{os.getpid()}"
    create_netns(name)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        yield name
    finally:
        remove_netns(name)


@contextlib.contextmanager
def tcpdump(ns: str, path: Path, *args: str) -> Iterator[None]:
    """tcpdump in the namespace, writing ``path``; stopped (by its pid) when the block ends."""
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            shutil.which("tcpdump") or "tcpdump",
            "-U",
            "-n",
            "-c",
            "5000",
            "-w",
            str(path),
            *args,
            "tcp",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(1)]
        while "listening" not in lines[-1] and lines[-1] and len(lines) < 5:
            lines.append(proc.stderr.readline())  # "listening on ...": it is capturing
        assert "listening" in lines[-1], lines
        yield
        time.sleep(0.3)  # live test: let the last packets reach the capture
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
        if proc.stderr is not None:
            proc.stderr.close()


def _sock(ns: str, *opts: tuple[int, int, int]) -> socket.socket:
    from synack.tun import netns_socket

    s = netns_socket(ns)
    for level, name, value in opts:
        s.setsockopt(level, name, value)
    return s


def kernel_traffic(ns: str) -> None:
    """A normal exchange, a zero window with probes, keep-alives, a refused connection, an
    abortive close: kernel to kernel on 127.0.0.1 inside ``ns``."""
    srv = _sock(ns, (socket.SOL_SOCKET, socket.SO_REUSEADDR, 1), (socket.SOL_SOCKET, socket.SO_RCVBUF, 4096))
    srv.bind(("127.0.0.1", 8000))
    srv.listen(8)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        _exchange(ns, accepted)
    finally:
        done.set()
        srv.close()
        for c in accepted:
            c.close()
        thread.join(5)


def _wait(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred() and time.monotonic() < end:
        time.sleep(0.01)  # live test: real kernel time


def _exchange(ns: str, accepted: list[socket.socket]) -> None:
    # 1. request, response, the client closes first
    c = _sock(ns)
    c.connect(("127.0.0.1", 8000))
    _wait(lambda: len(accepted) == 1)
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    accepted[0].recv(100)
    accepted[0].sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")
    c.recv(100)
    c.close()
    _wait(lambda: accepted[0].recv(100) == b"")
    accepted[0].close()
    # 2. the server does not read: its window closes, the client probes it
    z = _sock(ns, (socket.SOL_SOCKET, socket.SO_SNDBUF, 65536))
    z.connect(("127.0.0.1", 8000))
    _wait(lambda: len(accepted) == 2)
    z.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        for _ in range(200):
            z.send(b"z" * 8192)
    time.sleep(1.5)  # live test: let the zero window last, so probes are sent
    z.setblocking(True)
    # 3. keep-alives after one second of silence
    k = _sock(
        ns,
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1),
        (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1),
    )
    k.connect(("127.0.0.1", 8000))
    time.sleep(2.5)  # live test: two keep-alive probes and their ACKs
    # 4. refused, 5. an abortive close after data
    r = _sock(ns)
    with contextlib.suppress(ConnectionRefusedError):
        r.connect(("127.0.0.1", 8001))
    r.close()
    a = _sock(ns)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    a.connect(("127.0.0.1", 8000))
    a.sendall(b"some data")
    time.sleep(0.05)  # live test: the data is acknowledged before the abort
    a.close()
    for s in (z, k):
        s.close()


@pytest.fixture(scope="module")
def kernel_captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same kernel traffic captured on lo (Ethernet), on 'any' (Linux cooked v2, tcpdump's
    default) and on 'any' as Linux cooked v1."""
    if os.geteuid() != 0:
        pytest.fail("the kernel captures need root (a private network namespace)")
    tmp = tmp_path_factory.mktemp("kernel")
    paths = {"lo": tmp / "lo.pcap", "any": tmp / "any.pcap", "sll1": tmp / "sll1.pcap"}
    with (
        namespace() as ns,
        tcpdump(ns, paths["lo"], "-i", "lo"),
        tcpdump(ns, paths["any"], "-i", "any"),
        tcpdump(ns, paths["sll1"], "-i", "any", "-y", "LINUX_SLL"),
    ):
        kernel_traffic(ns)
    return paths


@pytest.mark.live
@pytest.mark.parametrize("link", ["lo", "any", "sll1"])
def test_kernel_traffic_flags_match_tshark(kernel_captures: dict[str, Path], link: str) -> None:
    seen = assert_like_tshark(kernel_captures[link])
    # Linux probes a zero window with an empty segment one below SND.UNA: Wireshark calls it a
    # keep-alive, so zero_window_probe does not appear from a Linux sender.
    assert {"zero_window", "window_full", "keep_alive", "keep_alive_ack"} <= set(seen), seen


@pytest.mark.live
def test_kernel_traffic_conversations_match_tshark(kernel_captures: dict[str, Path]) -> None:
    path = kernel_captures["lo"]
    assert synack_conversations(results_of(path)) == tshark_conversations(path)


@pytest.mark.live
def test_kernel_traffic_reads_as_the_kernel_behaved(kernel_captures: dict[str, Path]) -> None:
    """On lo the capture is at both ends (offloaded checksums reveal it): every state is certain,
    and the stories are the kernel's."""
    results = results_of(kernel_captures["lo"], msl=30.0)
    by_kind = {r.conn_state: r for r in results}
    first = results[0]
    assert first.conn_state == "SF" and first.history.startswith("ShAD")
    assert [c.text for c in first.states[0] if c.frame][-1] == "TIME-WAIT"  # the client closed first
    assert first.final(1) == "CLOSED"
    assert all(p.value == "here" for p in first.capture_point)
    assert "REJ" in by_kind and by_kind["REJ"].final(0) == "CLOSED"
    kinds = {f.kind for r in results for f in r.findings}
    assert {"zero-window", "rst-after-data"} <= kinds, kinds
    assert all(not c.uncertain for r in results for side in (0, 1) for c in r.states[side] if c.frame)
