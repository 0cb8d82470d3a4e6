"""Your own code on synack over TUN, against the real kernel, live: an unmodified aiohttp app
serving the kernel's ``curl``; ``http.client`` and ``socketserver.ThreadingTCPServer`` on synack
sockets against kernel peers; the network guard of the real-time loop.

Each test gets a private namespace from the ``synack_tun`` fixture (synack.testing), removed
whatever happens; kernel-side peers run inside it (``ip netns exec``, or a thread that entered
it). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import os
import shutil
import socket
import socketserver
import threading
from typing import Any

import pytest

import synack.aio as aio
from synack import sockets
from synack.testing import TunLab
from synack.tun import in_netns, netns_socket

pytestmark = [pytest.mark.live]
aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

WAIT = 20.0


def make_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": request.match_info["name"], "via": request.remote})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=bytes(range(256)) * 4096)  # 1 MiB

    app = web.Application()
    app.router.add_get("/hello/{name}", hello)
    app.router.add_get("/big", big)
    return app


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_aiohttp_app_serves_the_kernels_curl(synack_tun: TunLab) -> None:
    lab = synack_tun

    async def main() -> list[Any]:
        runner = web.AppRunner(make_app())
        await runner.setup()
        await web.TCPSite(runner, lab.address, 8080).start()
        loop = asyncio.get_running_loop()
        url = f"http://{lab.address}:8080"
        hello = await loop.run_in_executor(
            None, lambda: lab.kernel("curl", "-sS", "-m", "10", f"{url}/hello/kernel"))
        big = await loop.run_in_executor(None, lambda: lab.kernel(
            "sh", "-c", f"curl -sS -m 20 {url}/big | sha256sum"))
        await runner.cleanup()
        return [hello, big]

    hello, big = lab.run(main())
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == '{"hello": "kernel", "via": "10.77.0.1"}'
    assert big.stdout.split()[0] == hashlib.sha256(bytes(range(256)) * 4096).hexdigest()


def test_http_client_on_synack_against_a_kernel_http_server(synack_tun: TunLab) -> None:
    lab = synack_tun

    class Hello(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"kernel says hello to {self.client_address[0]} for {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with in_netns(lab.ns):  # the kernel's server socket lives in the namespace
        httpd = http.server.ThreadingHTTPServer((lab.kernel_address, 0), Hello)
    port = httpd.server_address[1]
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        conn = sockets.http_connection(lab.stack, lab.kernel_address, port, timeout=WAIT)
        conn.request("GET", "/one")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"kernel says hello to 10.77.0.2 for /one")
        conn.request("GET", "/two")  # keep-alive: the same synack connection
        assert conn.getresponse().read() == b"kernel says hello to 10.77.0.2 for /two"
        conn.close()
        opener = sockets.build_opener(lab.stack)
        with opener.open(f"http://{lab.kernel_address}:{port}/urllib", timeout=WAIT) as page:
            assert page.read() == b"kernel says hello to 10.77.0.2 for /urllib"
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(WAIT)


def test_threading_tcp_server_on_synack_sockets_serves_kernel_clients(synack_tun: TunLab) -> None:
    lab = synack_tun

    class Digest(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            data = self.rfile.read()  # until the client's FIN
            self.wfile.write(hashlib.sha256(data).digest())

    server = sockets.serve(lab.stack, socketserver.ThreadingTCPServer, (lab.address, 7000), Digest)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    answers: dict[int, bytes] = {}

    def kernel_client(n: int) -> None:
        payload = hashlib.sha256(str(n).encode()).digest() * 2000  # 64000 octets
        with netns_socket(lab.ns) as s:
            s.settimeout(WAIT)
            s.connect((lab.address, 7000))
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(100):
                got += chunk
            answers[n] = got if got == hashlib.sha256(payload).digest() else b"wrong"

    clients = [threading.Thread(target=kernel_client, args=(n,)) for n in range(8)]
    try:
        for c in clients:
            c.start()
        for c in clients:
            c.join(WAIT * 2)
    finally:
        server.shutdown()
        server.server_close()
        serving.join(WAIT)
    assert sorted(answers) == list(range(8))
    assert all(v != b"wrong" for v in answers.values())


def test_the_real_time_loop_keeps_off_the_hosts_network(synack_tun: TunLab) -> None:
    lab = synack_tun

    async def main() -> None:
        with pytest.raises(aio.RealNetworkError, match="not on the synack link"):
            await asyncio.open_connection("192.0.2.1", 80)  # TEST-NET: the kernel would route it
        with pytest.raises(aio.RealNetworkError, match=r"socket\.socket\(AF_INET6"):
            socket.socket(socket.AF_INET6)
        with pytest.raises(aio.RealNetworkError, match="getaddrinfo"):
            await asyncio.get_running_loop().getaddrinfo("localhost", 80)
        with pytest.raises(ConnectionRefusedError):  # on the link: a real answer (RST)
            await asyncio.open_connection(lab.kernel_address, 9)

    lab.run(main())
    assert os.path.exists(lab.pcap)
