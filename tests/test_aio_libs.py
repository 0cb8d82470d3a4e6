"""Unmodified libraries on synack's virtual-time event loop: aiohttp's web server, websockets
(server and client), an h11-based server, under 20 % loss and a 2-second partition; each run
twice with the same seed must give the same trace, byte for byte.

The libraries are used exactly as their documentation shows; the only synack-specific lines
choose the host a piece of code runs on (``synack.aio.on``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import synack.aio as aio
from synack import sockets
from synack.testing import SimWorld

aiohttp = pytest.importorskip("aiohttp")
websockets = pytest.importorskip("websockets")
h11 = pytest.importorskip("h11")
from aiohttp import web  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402


def _world(seed: int) -> SimWorld:
    world = SimWorld(seed)
    world.host("client", "10.0.0.1")
    world.host("server", "10.0.0.2")
    world.link("client", "server", delay=0.01, loss=0.2)
    return world


def _twice(scenario: Callable[[SimWorld], Coroutine[Any, Any, Any]], seed: int) -> list[Any]:
    """Run ``scenario`` on two fresh networks with the same seed: its results and the traces
    must be equal."""
    runs = []
    for _ in range(2):
        world = _world(seed)
        result = world.run(scenario(world))
        runs.append((result, list(world.trace.jsonl()), world.now))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1], "same seed, different traces"
    assert runs[0][2] == runs[1][2]
    return [r[0] for r in runs]


# ---------------------------------------------------------------------------------------------
# aiohttp's web server
# ---------------------------------------------------------------------------------------------


def make_app() -> web.Application:
    """An ordinary aiohttp application."""
    counts: dict[str, int] = {}

    async def hello(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        counts[name] = counts.get(name, 0) + 1
        return web.json_response({"hello": name, "visits": counts[name]})

    async def upload(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=f"{len(body)} octets, sum {sum(body) % 65536}")

    app = web.Application()
    app.router.add_get("/hello/{name}", hello)
    app.router.add_post("/upload", upload)
    return app


async def http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str,
                   body: bytes | None = None) -> tuple[int, bytes]:
    """One request on a keep-alive connection, written by hand (aiohttp's own client opens
    kernel sockets, which synack's loop refuses: see the last test)."""
    method = "POST" if body is not None else "GET"
    head = f"{method} {path} HTTP/1.1\r\nHost: server\r\nContent-Length: {len(body or b'')}\r\n\r\n"
    writer.write(head.encode() + (body or b""))
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) != b"\r\n":
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def aiohttp_scenario(world: SimWorld) -> list[Any]:
    runner = web.AppRunner(make_app())
    await runner.setup()
    with aio.on("server"):
        await web.TCPSite(runner, None, 8080).start()
    out: list[Any] = []
    with aio.on("client"):
        reader, writer = await asyncio.open_connection("server", 8080)
        for i in range(3):
            status, body = await http_get(reader, writer, "/hello/ada")
            out.append((status, json.loads(body)))
            if i == 0:
                world.partition("client", "server", seconds=2.0)
        status, body = await http_get(reader, writer, "/upload", bytes(range(256)) * 200)
        out.append((status, body.decode()))
        writer.close()
    await runner.cleanup()
    out.append(round(asyncio.get_running_loop().time(), 6))
    return out


def test_aiohttp_app_under_loss_and_a_partition_twice_with_identical_traces() -> None:
    result = _twice(aiohttp_scenario, seed=11)[0]
    assert result[:3] == [(200, {"hello": "ada", "visits": n}) for n in (1, 2, 3)]
    assert result[3] == (200, "51200 octets, sum 39936")
    assert result[4] > 2.0  # the partition held the second request for two virtual seconds


# ---------------------------------------------------------------------------------------------
# websockets, server and client
# ---------------------------------------------------------------------------------------------


async def ws_scenario(world: SimWorld) -> list[str]:
    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message[::-1])

    with aio.on("server"):
        server = await serve(echo, None, 8765)
    got: list[str] = []
    with aio.on("client"):
        async with connect("ws://server:8765") as ws:
            for i in range(10):
                if i == 5:
                    world.partition("client", "server", seconds=2.0)
                await ws.send(f"message {i} " * 50)
                got.append(await ws.recv())
    server.close()
    await server.wait_closed()
    return got


def test_websockets_echo_under_loss_and_a_partition_twice_with_identical_traces() -> None:
    got = _twice(ws_scenario, seed=12)[0]
    assert got == [(f"message {i} " * 50)[::-1] for i in range(10)]


# ---------------------------------------------------------------------------------------------
# An h11 server, and http.client from a thread as its client
# ---------------------------------------------------------------------------------------------


async def h11_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal HTTP/1.1 server on h11 (sans-IO) over asyncio streams."""
    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
            continue
        if isinstance(event, h11.Request):
            body = f"h11 says hi to {event.target.decode()}".encode()
            headers = [("content-length", str(len(body))), ("content-type", "text/plain")]
            writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
            writer.write(conn.send(h11.Data(data=body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        elif isinstance(event, h11.EndOfMessage):
            if conn.our_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
        else:  # ConnectionClosed, or a protocol error
            break
    writer.close()


def test_h11_server_answers_http_client_running_in_a_thread(synack_sim: SimWorld) -> None:
    synack_sim.host("client", "10.0.0.1")
    synack_sim.host("server", "10.0.0.2")
    synack_sim.link("client", "server", delay=0.01, loss=0.2)
    answers: list[tuple[int, bytes]] = []

    def blocking_client() -> None:
        conn = sockets.http_connection(synack_sim.stack("client"), "server", 80, timeout=120)
        for path in ("/one", "/two"):  # one keep-alive connection
            conn.request("GET", path)
            resp = conn.getresponse()
            answers.append((resp.status, resp.read()))
        conn.close()

    async def main() -> None:
        with aio.on("server"):
            server = await asyncio.start_server(h11_handler, None, 80)
        t = threading.Thread(target=blocking_client)
        t.start()
        await asyncio.get_running_loop().run_in_executor(None, t.join)
        server.close()

    synack_sim.run(main())
    assert answers == [(200, b"h11 says hi to /one"), (200, b"h11 says hi to /two")]


# ---------------------------------------------------------------------------------------------
# A library that opens its own kernel sockets fails loudly
# ---------------------------------------------------------------------------------------------


def test_aiohttps_client_opens_kernel_sockets_and_is_refused(synack_sim: SimWorld) -> None:
    synack_sim.host("client", "10.0.0.1")
    synack_sim.host("server", "10.0.0.2")
    synack_sim.link("client", "server")

    async def main() -> None:
        runner = web.AppRunner(make_app())
        await runner.setup()
        with aio.on("server"):
            await web.TCPSite(runner, None, 8080).start()
        with aio.on("client"), pytest.raises(aio.RealNetworkError, match=r"socket\.socket\(AF_INET"):
            async with aiohttp.ClientSession() as session:
                await session.get("http://server:8080/hello/x")
        await runner.cleanup()

    synack_sim.run(main())
