"""Many threads on one TUN stack, live: ``synack.sockets`` from 50 threads at once against a kernel
echo server, every byte checked.

The stack's loop runs in whichever thread waits (``TunStack``: one thread drives, the others
sleep until it finds their predicate true or hands the driving over). Before the stack had a
lock, two threads crashed it with ``RuntimeError: concurrent poll() invocation`` in half the runs.

Each test makes its own namespace ``synack-thr-<pid>-<n>`` and removes it whatever happens; the
kernel's echo server is a child process inside it (killed by its pid at the end). Every wait is
bounded.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from synack import sockets
from synack.core.connection import Config
from synack.tun import TunError, TunStack, create_netns, remove_netns

pytestmark: list[pytest.MarkDecorator] = [pytest.mark.live]

if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
    pytestmark.append(pytest.mark.skip(reason="needs root and /dev/net/tun"))

K4 = "10.77.0.1"
ECHO_PORT = 7100
WAIT = 20.0
_serial = itertools.count()

# The kernel's echo server: one asyncio task per connection, in a process of its own (so it has
# its own interpreter lock) inside the namespace. It prints "ready" once it listens.
ECHO_SERVER = """
import asyncio, sys
async def echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(echo, sys.argv[1], int(sys.argv[2]), backlog=256)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    name = f"synack-thr-{os.getpid()}-{next(_serial)}"
    create_netns(name)
    try:
        yield name
    finally:
        remove_netns(name)


@contextlib.contextmanager
def echo_server(ns: str) -> Iterator[subprocess.Popen[str]]:
    """The kernel's echo server on K4:ECHO_PORT (the TUN device must exist: it binds K4)."""
    argv = ["ip", "netns", "exec", ns, sys.executable, "-c", ECHO_SERVER, K4, str(ECHO_PORT)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: the process prints at once or dies
        assert line.strip() == "ready", f"the echo server did not start: {line!r}"
        yield proc
    finally:
        proc.kill()  # by pid: only what this test started
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def _client(stack: TunStack, seed: int, chunks: int, size: int, out: dict[int, object]) -> None:
    """One thread: connect, send ``chunks`` random chunks, read each one's echo back, close;
    records (SHA-256 sent, SHA-256 received) or the exception."""
    try:
        rng = random.Random(seed)
        sent, got = hashlib.sha256(), hashlib.sha256()
        with sockets.create_connection(stack, (K4, ECHO_PORT), timeout=WAIT) as s:
            for _ in range(chunks):
                data = rng.randbytes(rng.randint(1, size))
                sent.update(data)
                s.sendall(data)
                left = len(data)
                while left:
                    piece = s.recv(left)
                    assert piece, "the echo ended early"
                    got.update(piece)
                    left -= len(piece)
            s.shutdown(sockets.SHUT_WR)
            assert s.recv(1) == b""  # the server's FIN after ours
        out[seed] = (sent.hexdigest(), got.hexdigest())
    except BaseException as exc:  # reported by the test, with the thread's seed
        out[seed] = exc


def run_threads(stack: TunStack, n: int, chunks: int, size: int, limit: float) -> dict[int, object]:
    out: dict[int, object] = {}
    threads = [threading.Thread(target=_client, args=(stack, i, chunks, size, out), daemon=True)
               for i in range(n)]
    for t in threads:
        t.start()
    end = time.monotonic() + limit
    for t in threads:
        t.join(max(end - time.monotonic(), 0.0))
    assert not any(t.is_alive() for t in threads), f"threads still running after {limit} s"
    return out


@pytest.mark.parametrize("background", [False, True], ids=["waiters-drive", "stack-thread"])
def test_fifty_threads_one_stack_every_byte_checked(background: bool) -> None:
    with namespace() as ns, TunStack(netns=ns, config=Config(msl=1.0), background=background) as stack, \
            echo_server(ns):
        t0 = time.monotonic()
        out = run_threads(stack, 50, chunks=40, size=8192, limit=90.0)
        dt = time.monotonic() - t0
        errors = {seed: r for seed, r in out.items() if isinstance(r, BaseException)}
        shown = dict(list(errors.items())[:3])
        assert not errors, f"{len(errors)} thread(s) failed, e.g. {shown}"
        assert len(out) == 50
        for seed, result in out.items():
            assert isinstance(result, tuple)
            sent, got = result
            assert sent == got, f"thread {seed}: the bytes echoed differ from the bytes sent"
        print(f"\n50 threads × 40 echoes: {dt:.2f} s, stats {stack.stats().get('packets_in')} packets in")


def sleepers(stack: TunStack, n: int) -> tuple[list[threading.Thread], list[BaseException | bool]]:
    """``n`` threads waiting in ``stack.wait_until`` for a condition that never holds, started,
    and returned once one of them drives and the other ``n - 1`` follow; each thread's outcome
    (what ``wait_until`` returned, or what it raised) goes into the list."""
    results: list[BaseException | bool] = []

    def wait() -> None:
        try:
            results.append(stack.wait_until(lambda: False, WAIT))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=wait, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    end = time.monotonic() + WAIT
    while len(stack._waiters) < n - 1 and time.monotonic() < end:
        time.sleep(0.01)
    assert len(stack._waiters) == n - 1, "the threads did not all start waiting"
    return threads, results


def test_wait_until_raises_in_every_thread_when_the_stack_closes() -> None:
    """Threads asleep in wait_until (one driving, the others following) all wake with TunError
    when another thread closes the stack; none is left hanging."""
    with namespace() as ns:
        stack = TunStack(netns=ns)
        threads, results = sleepers(stack, 5)  # one drives, four follow
        stack.close()
        for t in threads:
            t.join(WAIT)
        assert len(results) == 5
        assert all(isinstance(r, TunError) for r in results), results


def test_a_waiting_thread_lets_the_lock_go_whatever_its_depth() -> None:
    """A thread that waits holding ``stack.lock`` (twice: a socket call around the wait) lets it
    go while it sleeps, so another thread can use the stack — and its flush wakes the waiter."""
    with namespace() as ns, TunStack(netns=ns) as stack:
        flag = threading.Event()
        got: list[bool] = []

        def waiter() -> None:
            with stack.lock, stack.lock:
                got.append(stack.wait_until(flag.is_set, WAIT))

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        end = time.monotonic() + WAIT
        while stack._driver is None and time.monotonic() < end:
            time.sleep(0.01)  # until the waiter drives (asleep in poll)
        t0 = time.monotonic()
        with stack.lock:  # would block until WAIT if the waiter kept the lock
            flag.set()
            stack.wakeup()
        t.join(WAIT)
        assert got == [True]
        assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("write_thread", [False, True], ids=["", "write-thread"])
def test_deleted_device_fails_every_waiting_thread_with_enodev_within_a_second(write_thread: bool) -> None:
    """``ip link del`` under threads asleep in wait_until (one driving in poll, two following):
    the driver's poll sees POLLERR, its read EBADFD; the stack closes with an error that says
    what happened, and every thread gets it (ENODEV) at once — no spin, no thread left asleep
    (the stack's writer thread, with ``write_thread``, included)."""
    with namespace() as ns:
        stack = TunStack(netns=ns, ifname="synack5", write_thread=write_thread)
        threads, results = sleepers(stack, 3)
        cpu0, t0 = time.process_time(), time.monotonic()
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "del", "synack5"], check=True, timeout=WAIT)
        for t in threads:
            t.join(WAIT)
        took, cpu = time.monotonic() - t0, time.process_time() - cpu0
        assert len(results) == 3 and all(isinstance(r, TunError) and r.errno == errno.ENODEV for r in results)
        assert "the TUN device synack5 disappeared" in str(results[0])
        assert stack.closed and stack.error is not None
        assert took < 1.0 and cpu < 0.5
        if write_thread:
            assert stack._writer is not None and not stack._writer.thread.is_alive()
