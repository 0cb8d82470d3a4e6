"""The blocking socket API (synack.sockets) on the simulated network: the calls, options and
errors of the standard library's socket module on Linux, with virtual time.

Both ends live in one thread: a blocking call on one host runs the whole network until it can
return, so the other host answers by itself (handshakes, ACKs, FINs) but its application only
acts between calls.
"""

from __future__ import annotations

import contextlib
import errno
import socket as std
import struct

import pytest

from synack import sockets
from synack.core.connection import Config
from synack.core.records import State
from synack.sim import Network, SimStack

A4, B4, A6, B6 = "10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"


def _net(**cfg: object) -> tuple[Network, SimStack, SimStack]:
    net = Network(seed=7)
    config = Config.lab(**cfg)
    net.add_host("a", [A4, A6], config=config)
    net.add_host("b", [B4, B6], config=config)
    net.link("a", "b", delay=0.001)
    return net, net.stack("a"), net.stack("b")


def _pair(port: int = 80, family: int = sockets.AF_INET
          ) -> tuple[Network, sockets.Socket, sockets.Socket, sockets.Socket]:
    """(network, client on a, accepted socket on b, listening socket on b)."""
    net, a, b = _net()
    srv = sockets.create_server(b, ("", port), family=family)
    cli = sockets.create_connection(a, (B4 if family == sockets.AF_INET else B6, port), timeout=10)
    acc, _ = srv.accept()
    return net, cli, acc, srv


def test_connect_accept_exchange_and_close() -> None:
    _, a, b = _net()
    srv = sockets.socket(b)
    srv.bind((B4, 80))
    srv.listen()
    assert srv.getsockname() == (B4, 80)
    with sockets.socket(a) as cli:
        cli.connect((B4, 80))
        acc, addr = srv.accept()
        assert addr == cli.getsockname() and addr[0] == A4
        assert cli.getpeername() == (B4, 80) == acc.getsockname()
        cli.sendall(b"hello")
        assert acc.recv(100) == b"hello"
        acc.sendall(b"world")
        buf = bytearray(10)
        assert cli.recv_into(buf) == 5 and buf[:5] == b"world"
    assert acc.recv(100) == b""  # the client's close arrived as end of stream
    conn = acc.connection
    assert conn is not None and conn.state is State.CLOSE_WAIT
    acc.close()
    assert b.wait_until(lambda: conn.state is State.CLOSED, 5)
    srv.close()


def test_ipv6_addresses_are_four_tuples() -> None:
    _, cli, acc, srv = _pair(81, sockets.AF_INET6)
    assert cli.family == sockets.AF_INET6
    assert cli.getpeername() == (B6, 81, 0, 0)
    assert acc.getpeername() == cli.getsockname()
    assert srv.getsockname() == ("::", 81, 0, 0)


def test_refused_then_the_socket_may_try_again() -> None:
    _, a, b = _net()
    s = sockets.socket(a)
    with pytest.raises(ConnectionRefusedError) as info:
        s.connect((B4, 5000))
    assert info.value.errno == errno.ECONNREFUSED
    assert s.connect_ex((B4, 5000)) == errno.ECONNREFUSED
    srv = sockets.create_server(b, (B4, 5000))
    s.connect((B4, 5000))
    assert srv.accept()[1] == s.getsockname()


def test_connect_timeouts() -> None:
    net, a, _ = _net(r2_syn=20.0)
    net.partition("a", "b")
    s = sockets.socket(a)
    s.settimeout(3)
    t0 = a.now()
    with pytest.raises(TimeoutError) as info:
        s.connect((B4, 80))
    assert info.value.errno is None and str(info.value) == "timed out"  # the socket timeout
    assert a.now() - t0 == pytest.approx(3)
    s2 = sockets.socket(a)
    s2.settimeout(2)
    assert s2.connect_ex((B4, 80)) == errno.EWOULDBLOCK
    s3 = sockets.socket(a)  # no socket timeout: the SYN retransmissions give up (R2 for a SYN)
    with pytest.raises(TimeoutError) as info:
        s3.connect((B4, 80))
    assert info.value.errno == errno.ETIMEDOUT


def test_argument_errors_as_the_standard_library() -> None:
    _, a, _ = _net()
    s = sockets.socket(a)
    with pytest.raises(OverflowError):
        s.bind((A4, 70000))
    with pytest.raises(OverflowError):
        s.connect((B4, -1))
    with pytest.raises(TypeError):
        s.bind("10.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        s.bind((A4, 1, 2))
    with pytest.raises(std.gaierror):
        s.bind((A6, 0))  # an IPv6 address on an AF_INET socket
    with pytest.raises(std.gaierror):
        s.connect(("example.invalid", 80))
    with pytest.raises(ValueError):
        s.recv(-1)
    with pytest.raises(ValueError):
        s.settimeout(-1)
    with pytest.raises(OSError) as info:
        s.bind(("10.9.9.9", 0))
    assert info.value.errno == errno.EADDRNOTAVAIL
    s.bind((A4, 0))
    with pytest.raises(OSError) as info:
        s.bind((A4, 0))
    assert info.value.errno == errno.EINVAL
    for level, name, value in ((std.SOL_SOCKET, 9999, 1), (std.IPPROTO_TCP, 9999, 1),
                               (std.SOL_SOCKET, std.SO_ERROR, 0)):
        with pytest.raises(OSError) as info:
            s.setsockopt(level, name, value)
        assert info.value.errno == errno.ENOPROTOOPT
    with pytest.raises(OSError) as info:
        s.getsockopt(std.SOL_SOCKET, 9999)
    assert info.value.errno == errno.ENOPROTOOPT
    for name, value in ((std.TCP_KEEPIDLE, 0), (std.TCP_KEEPINTVL, 40000), (std.TCP_KEEPCNT, 128)):
        with pytest.raises(OSError) as info:
            s.setsockopt(std.IPPROTO_TCP, name, value)
        assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        s.setsockopt(std.SOL_SOCKET, std.SO_LINGER, 1)  # needs struct linger
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        sockets.socket(a, std.AF_UNIX)
    with pytest.raises(ValueError):
        sockets.create_server(a, ("", 80), reuse_port=True)


def test_calls_in_the_wrong_state() -> None:
    _, a, b = _net()
    s = sockets.socket(a)

    def code(fn: object, *args: object) -> int | None:
        with pytest.raises(OSError) as info:
            fn(*args)  # type: ignore[operator]
        return info.value.errno

    assert code(s.send, b"x") == errno.EPIPE  # Linux: never connected -> EPIPE
    assert code(s.recv, 1) == errno.ENOTCONN
    assert code(s.getpeername) == errno.ENOTCONN
    assert code(s.accept) == errno.EINVAL
    assert code(s.shutdown, sockets.SHUT_WR) == errno.ENOTCONN
    assert s.getsockname() == ("0.0.0.0", 0)
    lst = sockets.create_server(b, (B4, 80))
    assert code(lst.recv, 1) == errno.ENOTCONN
    assert code(lst.send, b"x") == errno.EPIPE
    assert code(lst.connect, (A4, 80)) == errno.EISCONN
    assert code(lst.shutdown, 7) == errno.EINVAL
    s.connect((B4, 80))
    assert code(s.connect, (B4, 80)) == errno.EISCONN
    assert s.connect_ex((B4, 80)) == errno.EISCONN
    assert code(s.listen) == errno.EINVAL
    assert code(s.bind, (A4, 0)) == errno.EINVAL
    assert s.recv(0) == b""
    s.close()
    s.close()
    assert s.fileno() == -1
    assert code(s.send, b"x") == errno.EBADF
    assert code(s.getsockname) == errno.EBADF
    lst.shutdown(sockets.SHUT_RD)  # Linux: a listener stops listening
    assert code(lst.accept) == errno.EINVAL


def test_half_close_and_broken_pipe() -> None:
    _, cli, acc, _ = _pair()
    cli.sendall(b"question")
    cli.shutdown(sockets.SHUT_WR)
    with pytest.raises(BrokenPipeError):
        cli.send(b"more")
    with pytest.raises(BrokenPipeError):
        cli.sendall(b"more")
    assert acc.recv(100) == b"question"
    assert acc.recv(100) == b""
    acc.sendall(b"answer after your FIN")  # L2: the CLOSE-WAIT side may keep sending
    acc.close()
    assert cli.recv(100) == b"answer after your FIN"
    assert cli.recv(100) == b""
    conn = cli.connection
    assert conn is not None and conn.state is State.TIME_WAIT


def test_reset_is_reported_once_then_broken_pipe() -> None:
    _, cli, acc, _ = _pair()
    acc.setsockopt(std.SOL_SOCKET, std.SO_LINGER, struct.pack("ii", 1, 0))
    assert acc.getsockopt(std.SOL_SOCKET, std.SO_LINGER, 8) == struct.pack("ii", 1, 0)
    acc.close()  # RST (L12)
    cli.stack.wait_until(lambda: cli.connection is not None and cli.connection.state is State.CLOSED, 1)
    with pytest.raises(ConnectionResetError) as info:
        cli.send(b"x")
    assert info.value.errno == errno.ECONNRESET
    with pytest.raises(BrokenPipeError):
        cli.send(b"x")
    assert cli.recv(10) == b""
    assert cli.getsockopt(std.SOL_SOCKET, std.SO_ERROR) == 0
    with pytest.raises(OSError) as oinfo:
        cli.getpeername()
    assert oinfo.value.errno == errno.ENOTCONN


def test_so_error_reports_the_reset() -> None:
    _, cli, acc, _ = _pair()
    acc.setsockopt(std.SOL_SOCKET, std.SO_LINGER, struct.pack("ii", 1, 0))
    acc.close()
    cli.stack.wait_until(lambda: False, 0.1)
    assert cli.getsockopt(std.SOL_SOCKET, std.SO_ERROR) == errno.ECONNRESET
    assert cli.getsockopt(std.SOL_SOCKET, std.SO_ERROR) == 0
    assert cli.recv(10) == b""


def test_close_with_unread_data_resets_the_peer() -> None:
    _, cli, acc, _ = _pair()
    cli.sendall(b"unread")
    acc.stack.wait_until(lambda: acc.connection is not None and acc.connection.readable > 0, 1)
    acc.close()
    with pytest.raises(ConnectionResetError):
        cli.recv(10)


def test_close_delivers_queued_data_before_the_fin() -> None:
    _, cli, acc, _ = _pair()
    data = bytes(range(256)) * 500
    cli.sendall(data)
    cli.close()  # L13
    got = bytearray()
    while chunk := acc.recv(4096):
        got += chunk
    assert bytes(got) == data


def test_bind_time_wait_port_needs_reuseaddr() -> None:
    _, a, b = _net()
    srv = sockets.create_server(b, (B4, 7000))
    cli = sockets.create_connection(a, (B4, 7000))
    acc, _ = srv.accept()
    acc.close()  # the server closes first: its side of the connection goes to TIME-WAIT
    assert cli.recv(1) == b""
    cli.close()
    conn = acc.connection
    assert conn is not None
    assert b.wait_until(lambda: conn.state is State.TIME_WAIT, 1)
    srv.close()
    s = sockets.socket(b)
    with pytest.raises(OSError) as info:
        s.bind((B4, 7000))
    assert info.value.errno == errno.EADDRINUSE  # L11
    s.setsockopt(std.SOL_SOCKET, std.SO_REUSEADDR, 1)
    s.bind((B4, 7000))
    s.listen()
    other = sockets.socket(b)
    other.setsockopt(std.SOL_SOCKET, std.SO_REUSEADDR, 1)
    with pytest.raises(OSError) as info:
        other.bind((B4, 7000))  # never beside a listener (Linux refuses already the bind)
    assert info.value.errno == errno.EADDRINUSE


def test_nonblocking_calls() -> None:
    _, a, b = _net()
    srv = sockets.create_server(b, (B4, 80))
    srv.setblocking(False)
    with pytest.raises(BlockingIOError):
        srv.accept()
    s = sockets.socket(a)
    s.setblocking(False)
    assert s.gettimeout() == 0.0 and not s.getblocking()
    with pytest.raises(BlockingIOError) as info:
        s.connect((B4, 80))
    assert info.value.errno == errno.EINPROGRESS
    assert s.connect_ex((B4, 80)) == errno.EALREADY
    with pytest.raises(BlockingIOError):
        s.recv(10)
    a.wait_until(lambda: srv.listener is not None and srv.listener.pending > 0, 1)
    assert s.connect_ex((B4, 80)) == 0
    assert s.connect_ex((B4, 80)) == errno.EISCONN
    acc, _ = srv.accept()
    assert acc.getblocking()  # accepted sockets are blocking, as with the standard library
    with pytest.raises(BlockingIOError):
        s.recv(10)
    # Backpressure: a small send buffer fills, send() says so, the reader drains it.
    s.setsockopt(std.SOL_SOCKET, std.SO_SNDBUF, 4096)
    assert s.getsockopt(std.SOL_SOCKET, std.SO_SNDBUF) == 4096
    data = bytes(range(256)) * 1000
    sent = 0
    got = bytearray()
    for _ in range(10_000):
        if sent == len(data) and len(got) == len(data):
            break
        try:
            n = s.send(data[sent:])
            assert n <= 4096
            sent += n
        except BlockingIOError:
            pass
        acc.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            got += acc.recv(65536)
    assert bytes(got) == data


def test_recv_timeout_advances_virtual_time() -> None:
    _, cli, _, _ = _pair()
    cli.settimeout(2.5)
    t0 = cli.stack.now()
    with pytest.raises(TimeoutError):
        cli.recv(10)
    assert cli.stack.now() - t0 == pytest.approx(2.5)


def test_options_defaults_and_inheritance() -> None:
    _, a, b = _net()
    srv = sockets.socket(b)
    assert srv.getsockopt(std.SOL_SOCKET, std.SO_REUSEADDR) == 0
    assert srv.getsockopt(std.SOL_SOCKET, std.SO_LINGER) == 0
    assert srv.getsockopt(std.SOL_SOCKET, std.SO_TYPE) == std.SOCK_STREAM
    assert srv.getsockopt(std.IPPROTO_TCP, std.TCP_NODELAY) == 0
    assert srv.getsockopt(std.SOL_SOCKET, std.SO_KEEPALIVE) == 0
    assert srv.getsockopt(std.IPPROTO_TCP, std.TCP_KEEPIDLE) == 7200
    assert srv.getsockopt(std.IPPROTO_TCP, std.TCP_KEEPINTVL) == 75
    assert srv.getsockopt(std.IPPROTO_TCP, std.TCP_KEEPCNT) == 9
    srv.setsockopt(std.IPPROTO_TCP, std.TCP_NODELAY, 5)
    srv.setsockopt(std.SOL_SOCKET, std.SO_KEEPALIVE, 7)
    srv.setsockopt(std.IPPROTO_TCP, std.TCP_KEEPIDLE, 30)
    assert srv.getsockopt(std.IPPROTO_TCP, std.TCP_NODELAY) == 1
    assert srv.getsockopt(std.SOL_SOCKET, std.SO_KEEPALIVE, 4) == struct.pack("i", 1)
    srv.bind(("", 80))
    srv.listen(5)
    cli = sockets.create_connection(a, (B4, 80))
    acc, _ = srv.accept()
    assert acc.getsockopt(std.IPPROTO_TCP, std.TCP_NODELAY) == 1
    assert acc.getsockopt(std.SOL_SOCKET, std.SO_KEEPALIVE) == 1
    assert acc.getsockopt(std.IPPROTO_TCP, std.TCP_KEEPIDLE) == 30
    conn = acc.connection
    assert conn is not None and conn.config.nodelay and conn.config.keepalive
    cli.close()


def test_keepalive_detects_a_vanished_peer() -> None:
    net, cli, _, _ = _pair()
    cli.setsockopt(std.IPPROTO_TCP, std.TCP_KEEPIDLE, 10)
    cli.setsockopt(std.IPPROTO_TCP, std.TCP_KEEPINTVL, 5)
    cli.setsockopt(std.IPPROTO_TCP, std.TCP_KEEPCNT, 3)
    cli.setsockopt(std.SOL_SOCKET, std.SO_KEEPALIVE, 1)
    net.partition("a", "b")  # L15: the cable is pulled
    t0 = cli.stack.now()
    cli.settimeout(100)
    with pytest.raises(TimeoutError) as info:
        cli.recv(10)
    assert info.value.errno == errno.ETIMEDOUT
    assert 24 <= cli.stack.now() - t0 <= 26  # idle 10 s + 3 probes 5 s apart


def test_create_connection_errors_close_the_socket() -> None:
    _, a, _ = _net()
    with pytest.raises(ConnectionRefusedError):
        sockets.create_connection(a, (B4, 1), timeout=5)
    with pytest.raises(ExceptionGroup):
        sockets.create_connection(a, (B4, 1), all_errors=True)
    with pytest.raises(std.gaierror):
        sockets.create_connection(a, ("no.such.host", 1))


# ---------------------------------------------------------------------------------------------
# Drop-in: makefile, a real file descriptor, threads (virtual time moves when all are blocked)
# ---------------------------------------------------------------------------------------------


def test_makefile_has_the_standard_semantics() -> None:
    _, cli, acc, srv = _pair(90)
    wf = cli.makefile("wb")
    rf = acc.makefile("rb")
    wf.write(b"line one\n")
    wf.flush()
    assert rf.readline() == b"line one\n"
    wf.write(b"line two\n")
    wf.flush()
    text = acc.makefile("r", encoding="utf-8", newline="")
    assert text.readline() == "line two\n" and text.mode == "r"
    rw = cli.makefile("rwb", buffering=0)
    assert isinstance(rw, std.SocketIO)
    with pytest.raises(ValueError):
        cli.makefile("x")
    with pytest.raises(ValueError):
        cli.makefile("r", buffering=0)
    cli.close()  # files still open: the socket stays usable until they close
    assert cli.fileno() >= 0 and cli.connection is not None
    wf.write(b"after close()\n")
    wf.flush()
    assert rf.readline() == b"after close()\n"
    wf.close()
    rw.close()  # the last file: now the socket closes for real (FIN)
    assert cli.fileno() == -1
    assert rf.read() == b""
    for f in (rf, text):
        f.close()
    acc.close()
    srv.close()


def _let_time_pass(sock: sockets.Socket, seconds: float = 0.05) -> None:
    """Let virtual time pass through a blocking socket call that times out (one thread: the only
    way the clock moves is a synack call that waits)."""
    saved = sock.gettimeout()
    sock.settimeout(seconds)
    with pytest.raises(TimeoutError):
        sock.recv(1) if sock.listener is None else sock.accept()
    sock.settimeout(saved)


def test_fileno_is_a_real_descriptor_that_select_sees() -> None:
    import select
    import selectors

    net, cli, acc, srv = _pair(91)
    fd = acc.fileno()
    assert fd >= 0 and fd == acc.fileno()  # made once
    sel = selectors.DefaultSelector()
    sel.register(acc, selectors.EVENT_READ | selectors.EVENT_WRITE)
    assert [(k.fileobj, ev) for k, ev in sel.select(0)] == [(acc, selectors.EVENT_WRITE)]
    cli.sendall(b"ping")
    _let_time_pass(srv)  # the ping arrives; the descriptors follow each step of the network
    r, w, _ = select.select([acc], [acc], [], 0)
    assert r == [acc] and w == [acc]
    assert acc.recv(10) == b"ping"
    assert select.select([acc], [], [], 0)[0] == []  # drained
    lfd = srv.fileno()
    assert select.select([lfd], [], [], 0)[0] == []
    late = sockets.create_connection(net.stack("a"), (B4, 91))
    _let_time_pass(cli)  # our last ACK reaches the listener
    assert select.select([lfd], [], [], 0)[0] == [lfd]  # a connection to accept
    srv.accept()[0].close()
    assert select.select([lfd], [], [], 0)[0] == []
    for s in (late, cli, acc, srv):
        s.close()
    sel.close()


def test_socketserver_and_a_client_in_threads_run_in_virtual_time() -> None:
    import socketserver
    import threading

    net = Network(seed=3)
    net.add_host("client", "10.0.0.1", config=Config.lab())
    net.add_host("server", "10.0.0.2", config=Config.lab())
    net.link("client", "server", delay=0.01, loss=0.1)

    class Upper(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                self.wfile.write(line.upper())

    server = sockets.serve(net.stack("server"), socketserver.ThreadingTCPServer, ("", 7), Upper)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    loop.start()
    results: list[bytes] = []

    def client(n: int) -> None:
        with sockets.create_connection(net.stack("client"), ("server", 7), timeout=600) as s, \
                s.makefile("rwb") as f:
            for i in range(5):
                f.write(b"client %d line %d\n" % (n, i))
                f.flush()
                results.append(f.readline())

    clients = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(60)
    server.shutdown()
    server.server_close()
    loop.join(60)
    assert sorted(results) == sorted(b"CLIENT %d LINE %d\n" % (n, i) for n in range(3) for i in range(5))
    assert net.now > 0.1  # virtual time moved (round trips of 20 ms, retransmissions)


def test_http_client_and_urllib_on_the_simulator() -> None:
    import http.server
    import threading

    net = Network(seed=4)
    net.add_host("client", "10.0.0.1", config=Config.lab())
    net.add_host("server", "10.0.0.2", config=Config.lab())
    net.link("client", "server", delay=0.005)

    class Hello(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"hello {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = sockets.serve(net.stack("server"), http.server.ThreadingHTTPServer, ("", 80), Hello)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    try:
        conn = sockets.http_connection(net.stack("client"), "server", 80, timeout=30)
        conn.request("GET", "/a")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"hello /a")
        conn.request("GET", "/b")  # the same connection (keep-alive)
        assert conn.getresponse().read() == b"hello /b"
        conn.close()
        opener = sockets.build_opener(net.stack("client"))
        with opener.open("http://10.0.0.2/urllib", timeout=30) as page:
            assert page.read() == b"hello /urllib"
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(60)


def test_a_thread_blocked_forever_is_a_deadlock_not_a_hang() -> None:
    _, cli, acc, srv = _pair(92)
    cli.settimeout(None)
    with pytest.raises(TimeoutError, match="deadlock: every thread is waiting and nothing is scheduled"):
        cli.recv(10)  # the peer never sends: nothing can ever happen
    for s in (cli, acc, srv):
        s.close()
