"""The TUN figures of synack, PyTCP and the kernel in one run, and their ratios.

    sudo .venv/bin/python bench/compare.py [--mb 20] [--runs 3] [--pytcp] [--write-thread]

* synack: ``bench_tun.py``'s transfers (synack on a TUN device in a namespace, the kernel's
  socket in a child process there), MTU 1500 without and with offloads, both ways;
* the kernel: kernel↔kernel over a veth pair between two namespaces, the same transfers;
* PyTCP (``--pytcp``): installed from PyPI into a throw-away virtual environment (deleted
  afterwards) and run against the same kernel peer. PyTCP drives a TAP device (Ethernet, ARP,
  MTU 1500, no offloads), so it is compared with synack's MTU 1500 rows without offloads. It
  runs in a process of its own (its stack is a set of threads), which enters the namespace,
  opens ``tap7`` there, starts the stack with a static address (10.79.0.2/24) and does one
  transfer with its own socket API (``pytcp.lib.socket``) against a kernel socket on
  10.79.0.1; Python runs it with ``-O``, which skips its logging. Whatever stops it — no
  network for pip, a version whose API differs, a transfer that does not finish within its
  time limit — is printed in its row instead of a figure, with the reason.

Every figure is the median of ``--runs`` transfers of ``--mb`` MB (10^6 bytes); MB/s is 10^6
bytes per second of wall time; the machine's load average is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from types import FrameType

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_tun

from synack.tun import create_netns, netns_socket, remove_netns

PYTCP_LIMIT = 120.0  # seconds for one PyTCP transfer

# The PyTCP side, run by the throw-away environment's Python (PyTCP 2.7's library API).
PYTCP_RUNNER = r'''
import ctypes, os, sys, time, traceback
try:
    nsfd, direction, nbytes, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(nsfd, 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    import pytcp
    from pytcp import config
    config.LOG_CHANEL = set()
    from pytcp.lib import socket
    stack = pytcp.TcpIpStack(interface="tap7", ip4_address="10.79.0.2/24", ip6_address="fd79::2/64")
    print("tap", flush=True)
    sys.stdin.readline()
    stack.start()
    time.sleep(3)  # address conflict detection (ARP probes) before the address is usable
    s = socket.socket(socket.AF_INET4, socket.SOCK_STREAM)
    s.connect(("10.79.0.1", port))
    print("start", flush=True)
    if direction == "send":
        block = os.urandom(1 << 16)
        left = nbytes
        while left > 0:
            left -= s.send(block[:min(left, len(block))])
        s.close()
    else:
        got = 0
        while got < nbytes:
            data = s.recv()
            if not data:
                break
            got += len(data)
        print(f"received {got}", flush=True)
    print("end", flush=True)
    time.sleep(30)  # (killed once measured) the last segments and the FIN go out meanwhile
except BaseException as exc:  # PyTCP's threads would keep the process alive: say why, and go
    traceback.print_exc()
    print(f"error {type(exc).__name__}: {exc}", flush=True)
    os._exit(1)
os._exit(0)
'''


class _Lines:
    """The runner's output lines, read by a thread: every wait for one is bounded."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.queue.put(line.strip())
        self.queue.put("(PyTCP's process ended)")

    def next(self, timeout: float, want: str) -> str:
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"PyTCP printed nothing for {timeout:.0f} s (waiting for {want!r})") from None
        if line.startswith("error "):
            raise RuntimeError(f"PyTCP failed: {line[6:]}")
        return line


def _venv_with_pytcp(where: str) -> tuple[str, str]:
    """A virtual environment in ``where`` with PyTCP from PyPI; its Python and PyTCP's version."""
    subprocess.run([sys.executable, "-m", "venv", where], check=True, timeout=300)
    py = os.path.join(where, "bin", "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "pytcp"], check=True, timeout=600)
    version = subprocess.run([py, "-c", "import importlib.metadata as m; print(m.version('pytcp'))"],
                             check=True, timeout=60, capture_output=True, text=True).stdout.strip()
    return py, version


def _kernel_peer(lsock: socket.socket, direction: str, nbytes: int, result: list[int]) -> None:
    """The kernel's end (a thread): PyTCP sends (``send``) — read to end of stream — or receives."""
    lsock.settimeout(120)
    conn, _ = lsock.accept()
    conn.settimeout(120)
    with conn:
        if direction == "send":
            buf = bytearray(1 << 20)
            total = 0
            while n := conn.recv_into(buf):
                total += n
            result.append(total)
        else:
            conn.sendall(os.urandom(nbytes))
            conn.shutdown(socket.SHUT_WR)
            conn.recv(1)
            result.append(nbytes)


def _pytcp_run(py: str, direction: str, nbytes: int) -> float:
    """Seconds for one PyTCP transfer (``send``: PyTCP → kernel, to the kernel's end of stream),
    in a fresh namespace: PyTCP's process enters it (by descriptor) and opens tap7 there; this
    process configures the kernel's side and runs the kernel's socket in a thread."""
    ns = f"synack-pytcp-{os.getpid()}"
    create_netns(ns)
    runner: subprocess.Popen[str] | None = None
    nsfd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    script = os.path.join(os.path.dirname(py), "synack_pytcp_runner.py")
    try:
        lsock = netns_socket(ns)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with open(script, "w") as f:
            f.write(PYTCP_RUNNER)
        runner = subprocess.Popen([py, "-O", script, str(nsfd), direction, str(nbytes), str(bench_tun.PORT)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, pass_fds=(nsfd,))
        assert runner.stdin is not None
        lines = _Lines(runner)
        line = lines.next(60, "tap")
        if line != "tap":
            raise RuntimeError(f"PyTCP did not open its TAP device (printed {line!r})")
        from pyroute2 import IPRoute  # type: ignore[import-untyped]

        with IPRoute(netns=ns) as ipr:
            idx = ipr.link_lookup(ifname="tap7")[0]
            ipr.addr("add", index=idx, address="10.79.0.1", prefixlen=24)
            ipr.link("set", index=idx, state="up")
        lsock.bind(("10.79.0.1", bench_tun.PORT))
        lsock.listen(1)
        result: list[int] = []
        peer = threading.Thread(target=_kernel_peer, args=(lsock, direction, nbytes, result), daemon=True)
        peer.start()
        runner.stdin.write("go\n")
        runner.stdin.flush()
        line = lines.next(30, "start")
        if line != "start":
            raise RuntimeError(f"PyTCP did not connect to the kernel (printed {line!r})")
        t0 = time.monotonic()
        if direction == "send":
            peer.join(PYTCP_LIMIT)
            if result != [nbytes]:
                raise RuntimeError(f"the kernel received {result or 'nothing'} of {nbytes} bytes "
                                   f"within {PYTCP_LIMIT:.0f} s")
        else:
            got = lines.next(PYTCP_LIMIT, "received").split()
            if got[:1] != ["received"] or int(got[1]) != nbytes:
                raise RuntimeError(f"PyTCP received {got!r}, not {nbytes} bytes")
        return time.monotonic() - t0
    finally:
        if runner is not None:
            runner.kill()
            runner.wait()
        os.close(nsfd)
        remove_netns(ns)


def _make_term_handler(pid: int) -> Callable[[int, FrameType | None], None]:
    """SIGTERM: this process leaves through its ``finally`` blocks (the namespaces are removed on
    the way out). Not a child forked from it: pyroute2 forks one per ``IPRoute(netns=...)`` and
    ends it with SIGTERM, and that copy of us, unwinding the same stack, would remove the
    namespaces and the throw-away environment this process is still using."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != pid:
            os._exit(128 + signum)
        sys.exit(1)

    return handler


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pytcp", action="store_true", help="install PyTCP in a throw-away venv and measure it")
    ap.add_argument("--pytcp-mb", type=float, default=5.0, help="MB per PyTCP transfer (it is slow)")
    ap.add_argument("--write-thread", action="store_true", help="synack: TunStack(write_thread=True) "
                    "for the rows without offloads")
    ap.add_argument("--venv-dir", default=None, help="where the throw-away environment is made (default: "
                    "the system's temporary directory; it is deleted afterwards either way)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _make_term_handler(os.getpid()))
    nbytes = int(args.mb * 1e6)
    rows: dict[tuple[bool, str], float] = {}
    for offload in (False, True):
        res = bench_tun.bench_tun(1500, nbytes, args.runs, False, offload, args.write_thread and not offload)
        for direction in ("send", "recv"):
            rows[(offload, direction)] = nbytes / statistics.median(t for t, _ in res[direction]) / 1e6
    veth = bench_tun.bench_veth(1500, nbytes, args.runs)
    kernel = {d: nbytes / statistics.median(veth[d]) / 1e6 for d in ("send", "recv")}
    pytcp: dict[str, float | str] = {"send": "not measured (--pytcp)", "recv": "not measured (--pytcp)"}
    version = "-"
    if args.pytcp:
        with tempfile.TemporaryDirectory(prefix="synack-pytcp-", dir=args.venv_dir) as where:
            try:
                py, version = _venv_with_pytcp(where)
            except (subprocess.SubprocessError, OSError) as exc:
                pytcp = {d: f"PyTCP could not be installed: {exc}" for d in pytcp}
            else:
                pbytes = int(args.pytcp_mb * 1e6)
                for direction in ("send", "recv"):
                    try:
                        times = [_pytcp_run(py, direction, pbytes) for _ in range(args.runs)]
                        pytcp[direction] = pbytes / statistics.median(times) / 1e6
                    except Exception as exc:  # what stopped it is the figure's place in the table
                        pytcp[direction] = f"did not run: {type(exc).__name__}: {exc}"
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"\nMTU 1500, median of {args.runs} runs, MB/s (10^6 bytes/s); synack and the kernel "
          f"{args.mb:g} MB per transfer, PyTCP ({version}) {args.pytcp_mb:g} MB; synack's write thread "
          f"{'on' if args.write_thread else 'off'} without offloads; load average {load}")
    print("| direction | synack, no offload | synack, offload | PyTCP | kernel↔kernel (veth) | "
          "synack/PyTCP (no offload) | synack (offload)/kernel |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for direction, label in (("recv", "kernel → stack"), ("send", "stack → kernel")):
        plain, off = rows[(False, direction)], rows[(True, direction)]
        ref, p = kernel[direction], pytcp[direction]
        ptxt = f"{p:.1f}" if isinstance(p, float) else "—"
        ratio = f"{plain / p:.1f}×" if isinstance(p, float) else "—"
        print(f"| {label} | {plain:.1f} | {off:.1f} | {ptxt} | {ref:.0f} | {ratio} | {off / ref:.2f} |")
    for direction in ("recv", "send"):
        if not isinstance(pytcp[direction], float):
            print(f"PyTCP, {direction}: {pytcp[direction]}")
    if args.pytcp:
        print(json.dumps({"synack": {f"{'offload' if o else 'plain'} {d}": v for (o, d), v in rows.items()},
                          "kernel": kernel, "pytcp": pytcp, "pytcp_version": version, "loadavg": load}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
