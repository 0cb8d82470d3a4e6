"""synack.aio: the asyncio event loop on the simulated network, in virtual time.

Every test runs on the ``synack_sim`` fixture (the pytest plugin, synack.testing): a network of
hosts joined by links, and the virtual-time loop over it. Nothing sleeps and no wall clock is
read: timeouts below are virtual seconds.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket
import threading
from typing import Any

import pytest

import synack.aio as aio
from synack import sockets, streams
from synack.core.records import State
from synack.testing import SimWorld


def _two(world: SimWorld, **link: Any) -> None:
    world.host("client", "10.0.0.1")
    world.host("server", "10.0.0.2")
    world.link("client", "server", **{"delay": 0.01, **link})


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _serve_echo(port: int = 7) -> asyncio.AbstractServer:
    with aio.on("server"):
        return await asyncio.start_server(echo, None, port)


def test_sleep_timeouts_and_loop_time_follow_the_virtual_clock(synack_sim: SimWorld) -> None:
    _two(synack_sim)

    async def main() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(600)  # ten minutes
        t1 = loop.time()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.3)
        return t0, t1, loop.time()

    assert synack_sim.run(main()) == (0.0, 600.0, 600.3)
    assert synack_sim.now == 600.3


def test_ten_minutes_of_echo_under_30_percent_loss(synack_sim: SimWorld) -> None:
    _two(synack_sim)
    synack_sim.net.links[("client", "server")].loss = 0.3  # both ways, R2 (100 s) ends it now and then

    async def main() -> int:
        server = await _serve_echo()
        rounds = 0
        with aio.on("client"):
            reader, writer = await asyncio.open_connection("server", 7)
            loop = asyncio.get_running_loop()
            while loop.time() < 600:
                msg = hashlib.sha256(str(rounds).encode()).digest() * 40  # 1280 octets
                writer.write(msg)
                assert await asyncio.wait_for(reader.readexactly(len(msg)), 300) == msg
                rounds += 1
                await asyncio.sleep(5)
            writer.close()
        server.close()
        return rounds

    rounds = synack_sim.run(main())
    assert rounds >= 60
    assert synack_sim.now >= 600
    assert synack_sim.net.stats()["drop: loss"] > 20


def _echo_run(seed: int) -> tuple[list[str], bytes]:
    world = SimWorld(seed)
    _two(world, loss=0.2, jitter=0.005)

    async def main() -> None:
        server = await _serve_echo()
        with aio.on("client"):
            reader, writer = await asyncio.open_connection("server", 7)
            for i in range(20):
                writer.write(os.urandom(100 + i))  # virtual entropy: seeded
                await reader.readexactly(100 + i)
            writer.close()
        server.close()
        await asyncio.sleep(5)

    world.run(main())
    pcap = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"synack-aio-{os.getpid()}-{seed}.pcap")
    try:
        world.trace.to_pcap(pcap)
        with open(pcap, "rb") as f:
            return list(world.trace.jsonl()), f.read()
    finally:
        os.unlink(pcap)


def test_the_same_seed_gives_the_same_trace_byte_for_byte() -> None:
    first, second, other = _echo_run(5), _echo_run(5), _echo_run(6)
    assert first == second
    assert first[0] != other[0] or first != other


def test_a_run_that_cannot_progress_is_a_deadlock_naming_the_waiting_tasks(synack_sim: SimWorld) -> None:
    _two(synack_sim)

    async def main() -> None:
        server = await _serve_echo()
        with aio.on("client"):
            reader, _writer = await asyncio.open_connection("server", 7)

            async def stuck() -> None:
                await reader.read(1)  # the echo server never speaks first

            await asyncio.gather(asyncio.create_task(stuck(), name="reader-task"))
        server.close()

    with pytest.raises(aio.Deadlock) as info:
        synack_sim.run(main())
    text = str(info.value)
    assert text.startswith("deadlock: every task is waiting and nothing is scheduled")
    assert "reader-task: stuck() at test_aio.py:" in text and "main() at test_aio.py:" in text
    assert "-> read() at streams.py:" in text


def test_code_in_the_loop_cannot_reach_the_real_network(synack_sim: SimWorld) -> None:
    _two(synack_sim)

    async def main() -> None:
        with pytest.raises(aio.RealNetworkError, match=r"socket\.socket\(AF_INET, SOCK_STREAM\)"):
            socket.socket()
        with pytest.raises(aio.RealNetworkError, match=r"socket\.getaddrinfo\('example\.com'\)"):
            socket.getaddrinfo("example.com", 80)
        with pytest.raises(aio.RealNetworkError, match=r"loop\.getaddrinfo\('example\.com'\)"):
            await asyncio.get_running_loop().getaddrinfo("example.com", 80)
        with aio.on("client"), pytest.raises(aio.RealNetworkError, match="create_connection"):
            await asyncio.open_connection("example.com", 80)
        with aio.on("client"), pytest.raises(OSError) as info:
            await asyncio.open_connection("192.0.2.1", 80)
        assert info.value.errno == errno.ENETUNREACH
        a, b = socket.socketpair()  # AF_UNIX never leaves the machine: allowed
        a.close()
        b.close()
        with pytest.raises(aio.RealNetworkError, match="sock_recv"):
            await asyncio.get_running_loop().sock_recv(object(), 10)

    synack_sim.run(main())
    socket.socket().close()  # outside the loop the guard is off


def test_a_simulated_host_refuses_a_real_time_loop_and_a_transport_refuses_other_threads(
        synack_sim: SimWorld) -> None:
    _two(synack_sim)

    async def plain() -> None:
        await streams.start_server(echo, synack_sim.stack("server"), None, 7)

    with pytest.raises(RuntimeError, match="virtual-time loop"):
        asyncio.run(plain())

    async def main() -> None:
        server = await _serve_echo()
        with aio.on("client"):
            _reader, writer = await asyncio.open_connection("server", 7)
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                writer.write(b"x")
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=other_thread)
        t.start()
        await asyncio.get_running_loop().run_in_executor(None, t.join)
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
        assert "call_soon_threadsafe" in str(errors[0])
        writer.close()
        server.close()

    synack_sim.run(main())


def test_partition_and_loss_injected_while_the_application_runs(synack_sim: SimWorld) -> None:
    _two(synack_sim)

    async def main() -> float:
        server = await _serve_echo()
        loop = asyncio.get_running_loop()
        with aio.on("client"):
            reader, writer = await asyncio.open_connection("server", 7)
            synack_sim.partition("client", "server", seconds=2.0)
            synack_sim.loss("client", "server", 0.2)
            start = loop.time()
            writer.write(b"through the partition")
            assert await reader.readexactly(21) == b"through the partition"
            took = loop.time() - start
            writer.close()
        server.close()
        return took

    took = synack_sim.run(main())
    assert took >= 2.0  # nothing crossed before the link healed
    assert synack_sim.net.stats()["drop: partition"] >= 1


def test_crash_cancels_the_hosts_tasks_and_restart_brings_it_back_empty(synack_sim: SimWorld) -> None:
    _two(synack_sim)
    handlers: list[asyncio.Task[Any]] = []

    async def tracked_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        await echo(reader, writer)

    async def main() -> None:
        with aio.on("server"):
            await asyncio.start_server(tracked_echo, None, 7)
        with aio.on("client"):
            reader, writer = await asyncio.open_connection("server", 7)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            synack_sim.crash("server", restart_after=1.0)
            await asyncio.sleep(0)
            assert handlers[0].cancelled() or handlers[0].cancelling()
            await asyncio.sleep(2)
            writer.write(b"into the void")  # the rebooted server answers with RST
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(100), 60)
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("server", 7)
        server = await _serve_echo()  # the application starts again
        with aio.on("client"):
            reader, writer = await asyncio.open_connection("server", 7)
            writer.write(b"again")
            assert await reader.readexactly(5) == b"again"
            writer.close()
        server.close()

    synack_sim.run(main())


def test_sock_calls_on_synack_sockets(synack_sim: SimWorld) -> None:
    _two(synack_sim)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        lsock = sockets.create_server(synack_sim.stack("server"), ("", 9))
        lsock.setblocking(False)
        csock = sockets.socket(synack_sim.stack("client"))
        csock.setblocking(False)
        accepting = asyncio.ensure_future(loop.sock_accept(lsock))
        await loop.sock_connect(csock, ("10.0.0.2", 9))
        conn, addr = await accepting
        assert addr == csock.getsockname()
        await loop.sock_sendall(csock, b"x" * 100_000)
        got = bytearray()
        while len(got) < 100_000:
            buf = bytearray(70_000)
            n = await loop.sock_recv_into(conn, buf)
            got += buf[:n]
        assert got == b"x" * 100_000
        csock.close()
        assert await loop.sock_recv(conn, 10) == b""
        conn.close()
        lsock.close()

    synack_sim.run(main())


def test_an_executor_job_holds_virtual_time(synack_sim: SimWorld) -> None:
    _two(synack_sim)

    def work() -> float:
        digest = b""
        for _ in range(50_000):  # the thread runs (real time passes); virtual time must not
            digest = hashlib.sha256(digest).digest()
        return 0.0 * len(digest)

    async def main() -> tuple[float, float, bool]:
        loop = asyncio.get_running_loop()
        timer = asyncio.ensure_future(asyncio.sleep(1))
        result = await loop.run_in_executor(None, work)
        done_early = timer.done()
        await timer
        return result + loop.time(), loop.time(), done_early

    _, at_timer, early = synack_sim.run(main())
    assert early is False and at_timer == 1.0


def test_blocking_sockets_in_a_thread_beside_the_loop(synack_sim: SimWorld) -> None:
    _two(synack_sim, loss=0.1)
    server_stack = synack_sim.stack("server")
    lsock = sockets.create_server(server_stack, ("", 7))
    served: list[bytes] = []

    def blocking_server() -> None:
        conn, _ = lsock.accept()
        with conn:
            data = conn.makefile("rb").read()  # until the client's FIN
            served.append(data)
            conn.sendall(hashlib.sha256(data).digest())
        lsock.close()

    async def main() -> bytes:
        t = threading.Thread(target=blocking_server)
        t.start()
        with aio.on("client"):
            reader, writer = await asyncio.open_connection("server", 7)
            writer.write(b"y" * 50_000)
            writer.write_eof()
            digest = await reader.read()
            writer.close()
        await asyncio.get_running_loop().run_in_executor(None, t.join)
        return digest

    assert synack_sim.run(main()) == hashlib.sha256(b"y" * 50_000).digest()
    assert served == [b"y" * 50_000]


def test_runner_loop_factory_and_connect_accepted_socket(synack_sim: SimWorld) -> None:
    _two(synack_sim)

    async def main() -> bytes:
        server = await _serve_echo()
        sock = sockets.create_connection(synack_sim.stack("client"), ("server", 7))
        assert sock.connection is not None and sock.connection.state is State.ESTABLISHED
        with aio.on("client"):
            reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"adopted")
        got = await reader.readexactly(7)
        writer.close()
        server.close()
        return got

    with asyncio.Runner(loop_factory=aio.loop_factory(synack_sim.net)) as runner:
        assert runner.run(main()) == b"adopted"
