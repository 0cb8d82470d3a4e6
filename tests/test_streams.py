"""asyncio streams on synack (synack.streams), synack to synack on the simulated network.

The two hosts run in synack.aio's virtual-time event loop (through the ``synack_sim`` fixture of
the synack.testing plugin); the same code runs over TUN against the kernel in
``test_live_tools.py``. Every wait is bounded by ``asyncio.wait_for`` — in virtual seconds.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import Awaitable
from typing import Any

import pytest

from synack import streams
from synack.core.connection import Config
from synack.core.records import State
from synack.sim import SimStack, segment_is
from synack.testing import SimWorld

A, B = "10.0.0.1", "10.0.0.2"
WAIT = 10.0
Pair = tuple[SimWorld, SimStack, SimStack]


def _pair(world: SimWorld, config: Config | None = None) -> Pair:
    cfg = config or Config(msl=1.0)
    a = world.host("a", A, "fd00::1", config=cfg)
    b = world.host("b", B, "fd00::2", config=cfg)
    world.link("a", "b", delay=0.001)
    return world, a, b


@pytest.fixture
def pair(synack_sim: SimWorld) -> Pair:
    return _pair(synack_sim)


def run(world: SimWorld, coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 30)

    return world.run(bounded())


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def read_all(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while chunk := await asyncio.wait_for(reader.read(1 << 20), WAIT):
        out += chunk
    return bytes(out)


def test_echo_roundtrip_and_names(pair: Pair) -> None:
    world, a, b = pair

    async def main() -> None:
        server = await streams.start_server(echo, b, B, 7)
        assert server.is_serving()
        assert server.sockets[0].getsockname() == (B, 7)
        reader, writer = await streams.open_connection(a, B, 7)
        assert writer.get_extra_info("peername") == (B, 7)
        assert writer.get_extra_info("sockname")[0] == A
        assert writer.get_extra_info("socket") is None
        assert writer.get_extra_info("connection").state is State.ESTABLISHED
        writer.write(b"hello, ")
        writer.writelines([b"synack", b"\n"])
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), WAIT) == b"hello, synack\n"
        assert writer.can_write_eof()
        writer.write_eof()  # half-close: the echo server sees EOF, closes; we read EOF
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), WAIT)
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)
        assert not server.is_serving()

    run(world, main())


def test_bulk_both_ways_exactly_once(pair: Pair) -> None:
    world, a, b = pair
    data = os.urandom(3_000_000)

    async def main() -> None:
        got_at_server: list[bytes] = []

        async def sink_then_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got_at_server.append(await read_all(reader))  # until our write_eof
            writer.write(data[::-1])
            await writer.drain()
            writer.close()

        server = await streams.start_server(sink_then_reply, b, B, 9000)
        reader, writer = await streams.open_connection(a, B, 9000)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        back = await read_all(reader)
        assert hashlib.sha256(got_at_server[0]).digest() == hashlib.sha256(data).digest()
        assert back == data[::-1]
        writer.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)

    run(world, main())


def test_pause_reading_closes_the_window_and_resume_reopens_it(pair: Pair) -> None:
    world, a, b = pair
    data = os.urandom(2_000_000)

    async def main() -> None:
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.get_running_loop().create_future()
        server = await streams.start_server(lambda r, w: accepted.set_result((r, w)), b, B, 9001, limit=4096)
        _reader, writer = await streams.open_connection(a, B, 9001)
        sreader, swriter = await asyncio.wait_for(accepted, WAIT)
        writer.write(data)  # far more than the peer's StreamReader (2 x 4 KiB) and window hold
        sconn = swriter.get_extra_info("connection")
        loop = asyncio.get_running_loop()
        end = loop.time() + WAIT
        while not (sconn.rcv_wnd == 0 and sconn.readable > 0) and loop.time() < end:
            await asyncio.sleep(0.01)
        # The StreamReader paused the transport; the connection's buffer filled; window 0.
        assert isinstance(swriter.transport, streams.TcpTransport)
        assert not swriter.transport.is_reading()
        assert sconn.rcv_wnd == 0
        # full, but for less than a segment: receiver-side SWS avoidance keeps the window shut
        assert sconn.config.rcv_buf - sconn.rcv_mss < sconn.readable <= sconn.config.rcv_buf
        assert writer.transport.get_write_buffer_size() > 0  # the sender holds the rest
        got = await asyncio.wait_for(sreader.readexactly(len(data)), WAIT)
        assert got == data
        await asyncio.wait_for(writer.drain(), WAIT)
        assert writer.transport.get_write_buffer_size() == 0
        writer.close()
        swriter.close()
        server.close()

    run(world, main())


def test_write_buffer_limits_pause_and_resume_the_writer(pair: Pair) -> None:
    world, a, b = pair

    class Recorder(asyncio.Protocol):
        def __init__(self) -> None:
            self.events: list[str] = []
            self.transport: asyncio.Transport | None = None
            self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def pause_writing(self) -> None:
            self.events.append("pause")

        def resume_writing(self) -> None:
            self.events.append("resume")

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost.set_result(exc)

    async def main() -> None:
        received = bytearray()

        class Sink(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                received.extend(data)

        await streams.create_server(b, Sink, B, 9002)
        snd = Config(snd_buf=16384)
        tr, proto = await streams.create_connection(a, Recorder, B, 9002, config=snd)
        assert isinstance(proto, Recorder) and isinstance(tr, streams.TcpTransport)
        assert tr.get_write_buffer_limits() == (16384, 65536)
        tr.set_write_buffer_limits(high=1000)
        assert tr.get_write_buffer_limits() == (250, 1000)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=10, low=20)
        tr.write(b"x" * 100_000)  # 16 KiB go into the send buffer, the rest waits in the transport
        assert tr.get_write_buffer_size() == 100_000 - 16384
        assert proto.events == ["pause"]
        loop = asyncio.get_running_loop()
        end = loop.time() + WAIT
        while len(received) < 100_000 and loop.time() < end:
            await asyncio.sleep(0.01)
        assert len(received) == 100_000
        assert proto.events == ["pause", "resume"]
        assert tr.get_write_buffer_size() == 0
        tr.close()
        assert await asyncio.wait_for(proto.lost, WAIT) is None
        assert tr.is_closing()

    run(world, main())


def test_abort_is_connection_reset_for_the_peer(pair: Pair) -> None:
    world, a, b = pair

    async def main() -> None:
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.get_running_loop().create_future()
        await streams.start_server(lambda r, w: accepted.set_result((r, w)), b, B, 9003)
        reader, writer = await streams.open_connection(a, B, 9003)
        _sreader, swriter = await asyncio.wait_for(accepted, WAIT)
        swriter.transport.abort()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), WAIT)
        conn = writer.get_extra_info("connection")
        assert conn.state is State.CLOSED
        writer.close()

    run(world, main())


def test_refused_and_bad_addresses(pair: Pair) -> None:
    world, a, b = pair

    async def main() -> None:
        # b runs with the network (it answers with RST) though nothing of it is in the loop yet
        with pytest.raises(ConnectionRefusedError) as info:
            await streams.open_connection(a, B, 9999)
        assert info.value.errno == errno.ECONNREFUSED
        import socket

        with pytest.raises(socket.gaierror):
            await streams.open_connection(a, "example.invalid", 80)
        with pytest.raises(OSError) as info2:
            await streams.start_server(echo, a, "10.9.9.9", 80)  # not an address of host a
        assert info2.value.errno == errno.EADDRNOTAVAIL
        server = await streams.start_server(echo, b, B, 9004, reuse_address=False)
        with pytest.raises(OSError) as info3:
            await streams.start_server(echo, b, B, 9004)
        assert info3.value.errno == errno.EADDRINUSE
        server.close()

    run(world, main())


def test_connect_cancelled_on_a_silent_network_aborts(pair: Pair) -> None:
    world, a, _b = pair
    world.net.links[("a", "b")].loss = 1.0  # everything a sends is lost

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(streams.open_connection(a, B, 7), 0.3)
        assert all(c.state is State.CLOSED for c in a.host.conns.values())
        assert not a.host.conns

    run(world, main())


def test_serve_forever_cancel_closes_and_wait_closed_waits_for_clients(pair: Pair) -> None:
    world, a, b = pair

    async def main() -> None:
        server = await streams.start_server(echo, b, B, 9005, start_serving=False)
        assert not server.is_serving()
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        reader, writer = await streams.open_connection(a, B, 9005)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"ping"
        task.cancel()
        waiting = asyncio.create_task(server.wait_closed())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # a client is still connected
        writer.close()  # our FIN: the echo handler reads EOF and closes
        await asyncio.wait_for(waiting, WAIT)
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(ConnectionRefusedError):
            await streams.open_connection(a, B, 9005)

    run(world, main())


def test_buffered_protocol_and_eof_received_false_closes(pair: Pair) -> None:
    world, a, b = pair

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(1000)
            self.got = bytearray()
            self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def get_buffer(self, sizehint: int) -> memoryview:
            return memoryview(self.buf)

        def buffer_updated(self, nbytes: int) -> None:
            self.got += self.buf[:nbytes]

        def eof_received(self) -> bool:
            return False  # the transport closes itself

        def connection_lost(self, exc: Exception | None) -> None:
            self.done.set_result(None)

    async def main() -> None:
        protos: list[Buffered] = []

        def factory() -> Buffered:
            protos.append(Buffered())
            return protos[-1]

        await streams.create_server(b, factory, B, 9006)
        reader, writer = await streams.open_connection(a, B, 9006)
        payload = os.urandom(5000)
        writer.write(payload)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # the server closed after our EOF
        await asyncio.wait_for(protos[0].done, WAIT)
        assert bytes(protos[0].got) == payload
        writer.close()

    run(world, main())


def test_a_new_loop_gets_new_drivers_and_a_crash_fails_the_hosts_transports(pair: Pair) -> None:
    world, a, b = pair

    async def once() -> None:
        server = await streams.start_server(echo, b, B, 7)
        reader, writer = await streams.open_connection(a, B, 7)
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readexactly(1), WAIT) == b"x"
        writer.close()
        server.close()
        await asyncio.sleep(3)  # TIME-WAIT (2 MSL) is over: port 7 is free again

    run(world, once())
    run(world, once())  # a second loop on the same network: new drivers

    async def crashed_under_us() -> None:
        server = await streams.start_server(echo, b, B, 8)
        lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

        class Watcher(asyncio.Protocol):
            def connection_lost(self, exc: Exception | None) -> None:
                lost.set_result(exc)

        await streams.create_connection(a, Watcher, B, 8)
        world.crash("a")
        exc = await asyncio.wait_for(lost, WAIT)
        assert isinstance(exc, ConnectionAbortedError) and "crashed" in str(exc)
        server.close()

    run(world, crashed_under_us())


def test_lost_packets_are_recovered(synack_sim: SimWorld) -> None:
    world, a, b = _pair(synack_sim, Config.lab(rto_min=0.2, rto_initial=0.5))
    for n in (30, 31, 90):  # two back to back, one later
        world.net.drop_nth(n, segment_is("ACK", data=True), direction=("a", "b"))
    data = os.urandom(300_000)

    async def main() -> None:
        server = await streams.start_server(echo, b, B, 9007)
        reader, writer = await streams.open_connection(a, B, 9007)
        writer.write(data)
        writer.write_eof()
        assert await read_all(reader) == data
        writer.close()
        server.close()

    run(world, main())
    assert a.host.stats()["retransmissions"] >= 3
