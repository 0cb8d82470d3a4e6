"""Level 2 at the host: demultiplexing, listeners and backlogs, ports and bind rules, ISNs, RSTs
for strays, counters, and the lifecycle behaviours L7–L16 — either with the test playing the peer
(packets built by hand, fed to ``Host.receive``) or with two hosts joined by a :class:`synack.sim.Pipe`."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import pytest

from synack.core.connection import (
    Config,
    Connection,
    ConnectionAborted,
    ConnectionRefused,
    ConnectionReset,
    ConnectionTimedOut,
)
from synack.core.host import AddressInUse, AddressNotAvailable, Host, Listener
from synack.core.records import Event, State
from synack.core.wire import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    IPPacket,
    Segment,
    build_packet,
    internet_checksum,
    parse_packet,
)
from synack.sim import DropFn, Pipe

A, B = "10.0.0.1", "10.0.0.2"
A6, B6 = "fd00::1", "fd00::2"
CFG = Config.lab()
MASK = 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def pair(a_addrs: tuple[str, ...] = (A,), b_addrs: tuple[str, ...] = (B,), *, a_cfg: Config = CFG,
         b_cfg: Config = CFG, drop: DropFn | None = None, log: bool = False) -> Pipe[Host, Host]:
    """Host A (client side) and host B joined by the pipe (1 ms one way)."""
    return Pipe(Host(a_addrs, name="A", config=a_cfg), Host(b_addrs, name="B", config=b_cfg),
                drop=drop, log=log)


def accept(pipe: Pipe[Host, Host], lst: Listener, limit: float = 30.0) -> Connection:
    pipe.run_until(lambda: lst.pending > 0, pipe.now + limit)
    conn = lst.accept()
    assert conn is not None
    return conn


def established(pipe: Pipe[Host, Host], port: int = 80, dst: str = B,
                local_port: int = 0) -> tuple[Connection, Connection]:
    """Listen on B, connect from A, accept: (client, server), both ESTABLISHED."""
    lst = pipe.b.listeners.get(("", port)) or pipe.b.listen(port)
    client = pipe.a.connect(dst, port, pipe.now, local_port=local_port)
    server = accept(pipe, lst)
    pipe.run_until(lambda: client.state is State.ESTABLISHED, pipe.now + 30)
    return client, server


def read_all(pipe: Pipe[Host, Host], conn: Connection, n: int, limit: float = 60.0) -> bytes:
    got = bytearray()

    def more() -> bool:
        while len(got) < n:
            chunk = conn.receive(n - len(got), pipe.now)
            if not chunk:
                break
            got.extend(chunk)
        return len(got) >= n

    pipe.run_until(more, pipe.now + limit)
    return bytes(got)


def feed(host: Host, src: str, dst: str, seg: Segment, now: float = 0.0) -> list[IPPacket]:
    """The test is the peer: one packet in, every packet out (parsed)."""
    host.receive(build_packet(src, dst, seg), now)
    return [parse_packet(p) for p in host.packets_to_send(now)]


def segs(pipe: Pipe[Host, Host], side: int, pred: Callable[[Segment], bool] = lambda s: True,
         ) -> list[tuple[float, Segment]]:
    """(time sent, segment) of every logged packet from ``side`` (0 = A, 1 = B) matching ``pred``."""
    return [(t, p.seg) for t, _, p in pipe.packets(side) if pred(p.seg)]


def fix_ip_checksum(pkt: bytes) -> bytes:
    ihl = (pkt[0] & 0x0F) * 4
    hdr = pkt[:10] + b"\0\0" + pkt[12:ihl]
    return hdr[:10] + struct.pack("!H", internet_checksum(hdr)) + hdr[12:] + pkt[ihl:]


# ---------------------------------------------------------------------------------------------
# Demultiplexing, address families, listeners
# ---------------------------------------------------------------------------------------------


def test_demux_many_connections_each_gets_its_own_bytes() -> None:
    pipe = pair()
    lst = pipe.b.listen(80, backlog=64)
    clients = [pipe.a.connect(B, 80, 0.0) for _ in range(50)]
    pipe.run_until(lambda: lst.pending == 50, 5)
    servers = {}
    while (s := lst.accept()) is not None:
        servers[s.remote_port] = s
    assert sorted(servers) == sorted(c.local_port for c in clients)
    for i, c in enumerate(clients):
        c.send(f"client {i};".encode() * (i + 1), pipe.now)
        servers[c.local_port].send(f"server {i};".encode(), pipe.now)
    pipe.run(pipe.now + 1)
    for i, c in enumerate(clients):
        s = servers[c.local_port]
        # One dict lookup by the 4-tuple finds exactly this connection.
        assert pipe.b.conns[(B, 80, A, c.local_port)] is s
        assert pipe.a.conns[(A, c.local_port, B, 80)] is c
        assert s.receive(10_000, pipe.now) == f"client {i};".encode() * (i + 1)
        assert c.receive(10_000, pipe.now) == f"server {i};".encode()
    assert len(pipe.b.conns) == 50 and pipe.b.stats()["connections"] == 50


def test_demux_same_remote_port_from_two_addresses() -> None:
    pipe = pair((A, "10.0.0.3"))
    lst = pipe.b.listen(80)
    c1 = pipe.a.connect(B, 80, 0.0, local_addr=A, local_port=5000)
    c2 = pipe.a.connect(B, 80, 0.0, local_addr="10.0.0.3", local_port=5000)
    s1, s2 = accept(pipe, lst), accept(pipe, lst)
    pipe.run(0.1)
    c1.send(b"one", pipe.now)
    c2.send(b"two", pipe.now)
    pipe.run(0.2)
    by_addr = {s.remote_addr: s for s in (s1, s2)}
    assert by_addr[A].receive(10, pipe.now) == b"one"
    assert by_addr["10.0.0.3"].receive(10, pipe.now) == b"two"


def test_ipv6_hosts_handshake_transfer_close() -> None:
    pipe = pair((A6,), (B6,), log=True)
    client, server = established(pipe, dst=B6)
    assert client.ipv6 and server.ipv6
    assert client.snd_mss <= 1500 - 60  # IPv6 + TCP headers
    data = random.Random(6).randbytes(100_000)
    client.send(data, pipe.now)
    assert read_all(pipe, server, len(data)) == data
    client.close(pipe.now)
    pipe.run_until(lambda: server.receive(1, pipe.now) == b"", pipe.now + 10)
    server.close(pipe.now)
    pipe.run_until(lambda: not pipe.a.conns and not pipe.b.conns, pipe.now + 10)
    assert {p.version for _, _, p in pipe.packets()} == {6}
    assert {(p.src, p.dst) for _, s, p in pipe.packets() if s == 0} == {(A6, B6)}


def test_wildcard_listener_accepts_ipv4_and_ipv6() -> None:
    pipe = pair((A, A6), (B, B6))
    lst = pipe.b.listen(80)  # every address of B
    c4 = pipe.a.connect(B, 80, 0.0)
    c6 = pipe.a.connect(B6, 80, 0.0)
    s_first, s_second = accept(pipe, lst), accept(pipe, lst)
    pipe.run(0.1)
    assert {s.local_addr for s in (s_first, s_second)} == {B, B6}
    assert c4.state is State.ESTABLISHED and c6.state is State.ESTABLISHED
    assert c4.local_addr == A and c6.local_addr == A6


def test_listener_on_a_specific_address() -> None:
    pipe = pair(b_addrs=(B, "10.0.0.3"))
    lst = pipe.b.listen(80, "10.0.0.3")
    wild = pipe.b.listen(81)
    refused = pipe.a.connect(B, 80, 0.0)  # B has no listener on 10.0.0.2:80
    ok = pipe.a.connect("10.0.0.3", 80, 0.0)
    w1 = pipe.a.connect(B, 81, 0.0)
    w2 = pipe.a.connect("10.0.0.3", 81, 0.0)
    pipe.run(0.5)
    assert isinstance(refused.error, ConnectionRefused) and refused.state is State.CLOSED
    assert ok.state is State.ESTABLISHED and lst.pending == 1
    assert w1.state is State.ESTABLISHED and w2.state is State.ESTABLISHED and wild.pending == 2
    srv = lst.accept()
    assert srv is not None and srv.local_addr == "10.0.0.3"


# ---------------------------------------------------------------------------------------------
# Backlogs
# ---------------------------------------------------------------------------------------------


def test_accept_queue_never_exceeds_backlog_and_latecomers_get_in_after_accept() -> None:
    pipe = pair()
    lst = pipe.b.listen(80, backlog=2)
    clients = [pipe.a.connect(B, 80, 0.0) for _ in range(4)]
    pipe.run(0.5)
    # All four SYNs found room (SYN backlog 128), but only two handshakes may complete into the
    # queue: the ACKs of the others are dropped and counted; those children wait in SYN-RECEIVED.
    assert lst.pending == 2
    assert lst.syn_pending == 2
    assert pipe.b.stats()["drop_backlog_full"] == 2
    assert sorted(c.state.value for c in pipe.b.conns.values()) == ["ESTABLISHED"] * 2 + ["SYN-RECEIVED"] * 2
    first = [lst.accept(), lst.accept()]
    assert lst.accept() is None
    # The SYN,ACK retransmission (after the 1 s initial RTO) draws the ACK again: now it fits.
    pipe.run(1.5)
    assert lst.pending == 2 and lst.syn_pending == 0
    rest = [lst.accept(), lst.accept()]
    servers = [s for s in first + rest if s is not None]
    assert {s.remote_port for s in servers} == {c.local_port for c in clients}
    assert all(s.state is State.ESTABLISHED for s in servers)


def test_syn_backlog_full_drops_the_syn_and_the_client_retransmits() -> None:
    """Without SYN cookies a full SYN queue drops the SYN; the client's retransmission gets in."""
    pipe = pair(log=True)
    pipe.b.syn_cookies = "never"
    lst = pipe.b.listen(80, backlog=16, syn_backlog=2)
    clients = [pipe.a.connect(B, 80, 0.0) for _ in range(4)]
    pipe.run(0.5)
    assert lst.pending == 2
    assert pipe.b.stats()["drop_backlog_full"] == 2
    late = [c for c in clients if c.state is State.SYN_SENT]
    assert len(late) == 2
    pipe.run(1.5)  # their SYNs are retransmitted at t = 1 s and get in
    assert all(c.state is State.ESTABLISHED for c in clients)
    assert lst.pending == 4
    syns = segs(pipe, 0, lambda s: s.flags == SYN)
    assert [t for t, _ in syns] == [0.0] * 4 + [1.0] * 2
    assert pipe.a.stats()["retransmissions"] == 2


def test_syn_backlog_full_answers_with_cookies_and_everyone_gets_in_at_once() -> None:
    """RFC 4987 §3.6 (Linux's default): with the SYN queue full the listener answers with a
    cookie and keeps no state; the ACK completes the connection at once, no retransmission."""
    pipe = pair(log=True)
    lst = pipe.b.listen(80, backlog=16, syn_backlog=2)
    clients = [pipe.a.connect(B, 80, 0.0) for _ in range(4)]
    pipe.run(0.5)
    assert all(c.state is State.ESTABLISHED for c in clients)
    assert lst.pending == 4
    assert pipe.b.stats()["syn_cookies_sent"] == 2 and pipe.b.stats()["syn_cookies_ok"] == 2
    assert pipe.a.stats()["retransmissions"] == 0
    # The cookie connections carry data both ways like any other.
    accepted = [lst.accept() for _ in range(4)]
    by_port = {s.remote_port: s for s in accepted if s is not None}
    assert sorted(by_port) == sorted(c.local_port for c in clients)
    for c in clients:
        c.send(b"to server %d" % c.local_port, pipe.now)
        by_port[c.local_port].send(b"to client %d" % c.local_port, pipe.now)
    pipe.run(pipe.now + 0.1)
    for c in clients:
        assert by_port[c.local_port].receive(100, pipe.now) == b"to server %d" % c.local_port
        assert c.receive(100, pipe.now) == b"to client %d" % c.local_port


def test_full_accept_queue_drops_syns_until_the_server_accepts() -> None:
    pipe = pair(log=True)
    lst = pipe.b.listen(80, backlog=1)
    first = pipe.a.connect(B, 80, 0.0)
    pipe.run(0.1)
    assert first.state is State.ESTABLISHED and lst.pending == 1
    second = pipe.a.connect(B, 80, pipe.now)
    pipe.run(2.0)  # SYN at 0.1 and its retransmission at 1.1 find the queue full
    assert second.state is State.SYN_SENT
    assert pipe.b.stats()["drop_backlog_full"] == 2
    assert lst.accept() is not None  # the application accepts at t = 2
    pipe.run(3.5)  # the retransmission at 3.1 gets in
    assert second.state is State.ESTABLISHED
    late = lst.accept()
    assert late is not None and late.remote_port == second.local_port
    assert [round(t, 3) for t, _ in segs(pipe, 0, lambda s: s.flags == SYN)] == [0.0, 0.1, 1.1, 3.1]


# ---------------------------------------------------------------------------------------------
# Segments for no connection (L9), listeners, bad packets
# ---------------------------------------------------------------------------------------------


def test_rst_for_a_segment_with_ack_is_seq_seg_ack() -> None:
    host = Host([B], name="B", config=CFG)
    out = feed(host, A, B, Segment(5555, 81, 1000, 777_777, ACK | PSH, 100, payload=b"data"))
    assert len(out) == 1
    pkt = out[0]
    assert (pkt.src, pkt.dst, pkt.seg.src_port, pkt.seg.dst_port) == (B, A, 81, 5555)
    assert (pkt.seg.flags, pkt.seg.seq, pkt.seg.ack, pkt.seg.payload) == (RST, 777_777, None, b"")
    st = host.stats()
    assert st["resets_out"] == 1 and st["segments_out"] == 1 and st["segments_in"] == 1


@pytest.mark.parametrize(("flags", "seq", "payload", "want_ack"), [
    (SYN, 1000, b"", 1001),
    (0, 1000, b"hello", 1005),
    (FIN, 50, b"abc", 54),
    (SYN | FIN, 7, b"", 9),
    (SYN, MASK, b"", 0),  # SEG.SEQ+SEG.LEN wraps
])
def test_rst_for_a_segment_without_ack(flags: int, seq: int, payload: bytes, want_ack: int) -> None:
    host = Host([B], name="B", config=CFG)
    out = feed(host, A, B, Segment(5555, 81, seq, None, flags, 100, payload=payload))
    assert len(out) == 1
    rst = out[0].seg
    assert (rst.flags, rst.seq, rst.ack, rst.src_port, rst.dst_port) == (RST | ACK, 0, want_ack, 81, 5555)


@pytest.mark.parametrize("flags", [RST, RST | ACK])
def test_a_rst_for_no_connection_gets_nothing(flags: int) -> None:
    host = Host([B], name="B", config=CFG)
    host.listen(80)
    for port in (80, 81):  # at a listener and where nobody listens
        out = feed(host, A, B, Segment(5555, port, 1000, 5 if flags & ACK else None, flags, 0))
        assert out == []
    st = host.stats()
    assert st.get("resets_out", 0) == 0 and st["resets_in"] == 2
    assert st["drop_rst_no_connection"] == 1 and st["drop_rst_listen"] == 1


def test_ack_at_a_listener_is_answered_by_rst_seq_seg_ack() -> None:
    host = Host([B], name="B", config=CFG)
    host.listen(80)
    for flags in (ACK, SYN | ACK, ACK | FIN):
        out = feed(host, A, B, Segment(5555, 80, 1000, 424242, flags, 100))
        assert [(p.seg.flags, p.seg.seq, p.seg.ack) for p in out] == [(RST, 424242, None)]
    assert host.conns == {}
    # A segment with neither SYN, ACK nor RST is dropped silently.
    assert feed(host, A, B, Segment(5555, 80, 1000, None, FIN, 100)) == []
    assert host.stats()["drop_listen_no_syn"] == 1


def test_connect_to_a_closed_port_is_refused() -> None:
    pipe = pair()
    client = pipe.a.connect(B, 81, 0.0)
    pipe.run(1.0)
    assert client.state is State.CLOSED
    assert isinstance(client.error, ConnectionRefused)
    assert Event.REFUSED in client.events
    with pytest.raises(ConnectionRefused):
        client.send(b"x", pipe.now)
    assert pipe.a.conns == {} and pipe.b.conns == {}
    assert pipe.b.stats()["resets_out"] == 1 and pipe.a.stats()["resets_in"] == 1
    assert pipe.a.stats()["retransmissions"] == 0


def _valid_packet(src: str = A, dst: str = B) -> bytes:
    return build_packet(src, dst, Segment(5555, 80, 1, None, SYN, 1000, payload=b""))


def test_bad_checksums_are_counted_never_raised() -> None:
    host = Host([B, B6], name="B", config=CFG)
    lst = host.listen(80)
    data = build_packet(A, B, Segment(5555, 80, 1, None, SYN | PSH, 1000, payload=b"payload"))
    flipped = bytearray(data)
    flipped[-1] ^= 0x01  # a payload bit: the TCP checksum catches it
    host.receive(bytes(flipped), 0.0)
    hdr = bytearray(data)
    hdr[8] ^= 0x01  # the TTL: the IPv4 header checksum catches it
    host.receive(bytes(hdr), 0.0)
    v6 = bytearray(build_packet(A6, B6, Segment(5555, 80, 1, None, SYN, 1000, payload=b"six")))
    v6[-2] ^= 0x40
    host.receive(bytes(v6), 0.0)
    assert host.packets_to_send(0.0) == []
    assert host.stats()["bad_checksum"] == 3
    assert host.conns == {} and lst.syn_pending == 0


def test_malformed_packets_are_counted_never_raised() -> None:
    host = Host([B], name="B", config=CFG)
    host.listen(80)
    good = _valid_packet()
    udp = bytearray(good)
    udp[9] = 17
    frag = bytearray(good)
    frag[6:8] = b"\x20\x00"  # more fragments
    short_offset = bytearray(good)
    short_offset[20 + 12] = 0x40  # TCP data offset 4 (< 5)
    bad = [b"", b"\x45", good[:19], good[:30], b"\x55" + good[1:], fix_ip_checksum(bytes(udp)),
           fix_ip_checksum(bytes(frag)), bytes(short_offset), b"\x60" + b"\0" * 10]
    for pkt in bad:
        host.receive(pkt, 0.0)
    assert host.packets_to_send(0.0) == []
    st = host.stats()
    assert st["malformed"] == len(bad) and st.get("bad_checksum", 0) == 0
    assert st["packets_in"] == len(bad) and st.get("segments_in", 0) == 0


def test_random_garbage_and_mutations_never_raise_and_every_packet_is_accounted_for() -> None:
    rng = random.Random(1234)
    host = Host([B], name="B", config=CFG)
    host.listen(80)
    good = build_packet(A, B, Segment(5555, 80, 1, None, SYN, 1000, payload=b"0123456789"))
    for i in range(500):
        if i % 2:
            pkt = rng.randbytes(rng.randrange(0, 80))
        else:
            buf = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            pkt = bytes(buf[:rng.randrange(len(buf) + 1)] if rng.random() < 0.3 else buf)
        host.receive(pkt, i * 0.001)
        host.packets_to_send(i * 0.001)
    st = host.stats()
    accounted = st.get("bad_checksum", 0) + st.get("malformed", 0) + st.get("drop_not_for_us", 0) \
        + st.get("segments_in", 0)
    assert st["packets_in"] == 500 == accounted


def test_packets_for_another_address_are_dropped_and_counted() -> None:
    host = Host([B], name="B", config=CFG)
    host.listen(80)
    assert feed(host, A, "10.0.0.99", Segment(5555, 80, 1, None, SYN, 1000)) == []
    assert feed(host, A, "10.0.0.99", Segment(5555, 81, 1, 9, ACK, 1000)) == []  # no RST either
    st = host.stats()
    assert st["drop_not_for_us"] == 2 and st.get("resets_out", 0) == 0 and host.conns == {}


# ---------------------------------------------------------------------------------------------
# Ports, ISNs, bind rules (L11)
# ---------------------------------------------------------------------------------------------


def test_ephemeral_ports_are_distinct_and_from_the_range() -> None:
    host = Host([A], name="A", config=CFG, ephemeral=(40000, 40009))
    conns = [host.connect(B, 80, 0.0) for _ in range(10)]
    assert sorted(c.local_port for c in conns) == list(range(40000, 40010))
    with pytest.raises(AddressNotAvailable):
        host.connect(B, 80, 0.0)
    default = Host([A], name="D", config=CFG)
    ports = [default.connect(B, 80, 0.0).local_port for _ in range(300)]
    assert len(set(ports)) == 300 and all(32768 <= p <= 60999 for p in ports)
    assert default.bind(A, 0).local_port not in ports


def test_rfc6528_isns_differ_per_tuple_and_key_and_grow_with_time() -> None:
    h1 = Host([A], name="h", isn_key=b"k" * 32)
    h2 = Host([A], name="h", isn_key=b"q" * 32)
    k1 = (A, 40000, B, 80)
    k2 = (A, 40001, B, 80)
    k3 = (A, 40000, B, 81)
    isns = {h1.isn(k, 5.0) for k in (k1, k2, k3)}
    assert len(isns) == 3
    assert h1.isn(k1, 5.0) != h2.isn(k1, 5.0)
    # M is a 4 µs clock: one second later, F() unchanged, the ISN moved by 250,000 (mod 2**32).
    assert (h1.isn(k1, 6.0) - h1.isn(k1, 5.0)) & MASK == 250_000
    assert (h1.isn(k1, 5.000004) - h1.isn(k1, 5.0)) & MASK == 1
    # A fresh host with the same key repeats the same ISNs (deterministic runs).
    assert Host([A], name="other", isn_key=b"k" * 32).isn(k1, 5.0) == h1.isn(k1, 5.0)
    # The SYN really carries it.
    conn = h1.connect(B, 80, 5.0, local_port=40000)
    (syn,) = [parse_packet(p).seg for p in h1.packets_to_send(5.0)]
    assert syn.flags == SYN and syn.seq == conn.iss == h1.isn(k1, 5.0)


def _server_time_wait(pipe: Pipe[Host, Host], *,
                      reuseaddr: bool = False) -> tuple[Listener, Connection, Connection]:
    """B's connection on port 80 ends in TIME-WAIT (B closes first); its listener, and so the
    connection, with SO_REUSEADDR if asked."""
    lst = pipe.b.listen(80, reuseaddr=reuseaddr)
    client, server = established(pipe)
    server.send(b"bye", pipe.now)
    server.close(pipe.now)
    pipe.run_until(lambda: client.receive(10, pipe.now) == b"", pipe.now + 5)
    client.close(pipe.now)
    pipe.run_until(lambda: server.state is State.TIME_WAIT and client.state is State.CLOSED, pipe.now + 5)
    return lst, client, server


def test_bind_to_a_port_in_time_wait_needs_reuseaddr_on_both_sockets() -> None:
    """L11 with Linux's rule: a socket binds beside a TIME-WAIT connection only when both set
    SO_REUSEADDR (checked against the kernel: old without, new with -> EADDRINUSE)."""
    pipe = pair()
    lst, _, server = _server_time_wait(pipe)  # the first server did not set SO_REUSEADDR
    lst.close(pipe.now)
    for reuse in (False, True):
        with pytest.raises(AddressInUse):
            pipe.b.bind("", 80, reuseaddr=reuse)
    pipe.run(pipe.now + 2 * CFG.msl + 0.1)
    assert server.state is State.CLOSED

    pipe = pair()
    lst, _, server = _server_time_wait(pipe, reuseaddr=True)
    lst.close(pipe.now)
    with pytest.raises(AddressInUse):
        pipe.b.listen(80)
    with pytest.raises(AddressInUse):
        pipe.b.bind("", 80)
    with pytest.raises(AddressInUse):
        pipe.b.bind(B, 80)
    res = pipe.b.bind("", 80, reuseaddr=True)
    again = pipe.b.listen(80, reservation=res)  # SO_REUSEADDR: TIME-WAIT does not block
    assert again.state is State.LISTEN and server.state is State.TIME_WAIT
    again.close(pipe.now)
    # Once TIME-WAIT is over (2 × MSL = 2 s in the lab), the port is free for anyone.
    pipe.run(pipe.now + 2 * CFG.msl + 0.1)
    assert server.state is State.CLOSED and pipe.b.conns == {}
    assert pipe.b.listen(80).state is State.LISTEN


def test_client_port_in_time_wait_bind_and_connect_rules() -> None:
    pipe = pair()
    lst = pipe.b.listen(80)
    client = pipe.a.connect(B, 80, pipe.now, local_port=5000, reuseaddr=True)
    server = accept(pipe, lst)
    pipe.run_until(lambda: client.state is State.ESTABLISHED, pipe.now + 30)
    client.close(pipe.now)
    pipe.run_until(lambda: server.receive(10, pipe.now) == b"", pipe.now + 5)
    server.close(pipe.now)
    pipe.run_until(lambda: client.state is State.TIME_WAIT and server.state is State.CLOSED, pipe.now + 5)
    with pytest.raises(AddressInUse):
        pipe.a.bind(A, 5000)
    with pytest.raises(AddressInUse):
        pipe.a.connect(B, 80, pipe.now, local_port=5000)
    pipe.a.bind(A, 5000, reuseaddr=True).release()
    # With SO_REUSEADDR the TIME-WAIT connection of the same 4-tuple gives way to the new one.
    again = pipe.a.connect(B, 80, pipe.now, local_port=5000, reuseaddr=True)
    # ... and the old TCB is deleted (its object says so), not left claiming TIME-WAIT.
    assert pipe.a.conns[(A, 5000, B, 80)] is again and client.state is State.CLOSED
    pipe.run(pipe.now + 0.5)
    assert again.state is State.ESTABLISHED


def test_two_listeners_on_one_port_always_conflict() -> None:
    host = Host([B, "10.0.0.3"], name="B", config=CFG)
    host.listen(90, reuseaddr=True)
    for addr in ("", B, "10.0.0.3"):
        with pytest.raises(AddressInUse):
            host.listen(90, addr, reuseaddr=True)
    # Linux (inet_csk_bind_conflict): a listener blocks even the bind() of a SO_REUSEADDR socket.
    with pytest.raises(AddressInUse):
        host.bind(B, 90, reuseaddr=True)
    assert host.listen(91, B, reuseaddr=True).state is State.LISTEN
    with pytest.raises(AddressInUse):
        host.listen(91, "", reuseaddr=True)


def test_may2_new_syn_with_higher_seq_reopens_a_time_wait_connection() -> None:
    pipe = pair(log=True)
    lst, client, server = _server_time_wait(pipe)
    port = client.local_port
    rcv_nxt = server.rcv_nxt
    again = pipe.a.connect(B, 80, pipe.now + 0.1, local_port=port)
    assert ((again.iss - rcv_nxt) & MASK) < 1 << 31 and again.iss != rcv_nxt  # a higher ISN
    new = accept(pipe, lst)
    assert new is not server and server.state is State.CLOSED  # the TIME-WAIT TCB is deleted
    assert pipe.b.conns[(B, 80, A, port)] is new and new.irs == again.iss
    assert pipe.b.stats()["time_wait_reopened"] == 1
    again.send(b"second life", pipe.now)
    assert read_all(pipe, new, 11) == b"second life"


def test_syn_with_lower_seq_does_not_reopen_time_wait() -> None:
    pipe = pair()
    lst, client, server = _server_time_wait(pipe)
    old = (server.rcv_nxt - 10_000) & MASK
    out = feed(pipe.b, A, B, Segment(client.local_port, 80, old, None, SYN, 1000), pipe.now)
    assert server.state is State.TIME_WAIT and pipe.b.conns[(B, 80, A, client.local_port)] is server
    assert lst.syn_pending == 0 and pipe.b.stats().get("time_wait_reopened", 0) == 0
    # The TIME-WAIT connection answers with an ACK of what it has (RFC 5961 §4 / §3.10.7.4).
    assert [(p.seg.flags & (SYN | RST | ACK), p.seg.ack) for p in out] == [(ACK, server.rcv_nxt)]


# ---------------------------------------------------------------------------------------------
# L7 – L16 with two hosts
# ---------------------------------------------------------------------------------------------


def test_l7_old_duplicate_syn_at_a_listener() -> None:
    """RFC 9293 Figure 9: the SYN,ACK for an old duplicate SYN draws a RST, the listener's child is
    dropped (back to LISTEN), and the real handshake completes."""
    lost = [False]

    def lose_first_syn(pkt: IPPacket, idx: int) -> bool:
        if not lost[0] and pkt.seg.flags == SYN:
            lost[0] = True  # the real SYN is "delayed": it comes again at RTO
            return True
        return False

    pipe = pair(drop=lose_first_syn, log=True)
    lst = pipe.b.listen(80)
    client = pipe.a.connect(B, 80, 0.0)
    pipe.flush()
    old_seq = (client.iss - 90_000) & MASK
    pipe.b.receive(build_packet(A, B, Segment(client.local_port, 80, old_seq, None, SYN, 1000)), 0.0)
    assert lst.syn_pending == 1
    pipe.run(0.5)
    assert client.state is State.SYN_SENT and pipe.b.conns == {} and lst.syn_pending == 0
    server = accept(pipe, lst)
    pipe.run(pipe.now + 0.1)
    assert client.state is State.ESTABLISHED and server.irs == client.iss and client.error is None
    b_out = [(s.flags, s.ack) for _, s in segs(pipe, 1)]
    a_out = [(s.flags, s.seq) for _, s in segs(pipe, 0)]
    assert b_out[:2] == [(SYN | ACK, (old_seq + 1) & MASK), (SYN | ACK, (client.iss + 1) & MASK)]
    assert a_out[:3] == [(SYN, client.iss), (RST, (old_seq + 1) & MASK), (SYN, client.iss)]
    assert pipe.b.stats().get("resets_in") == 1


@pytest.mark.parametrize("restarted_listens", [False, True])
def test_l8_half_open_data_into_a_crashed_peer_is_reset(restarted_listens: bool) -> None:
    pipe = pair(log=True)
    client, _ = established(pipe)
    pipe.b = Host([B], name="B-restarted", config=CFG)  # B crashed and came back empty
    if restarted_listens:
        pipe.b.listen(80)
    client.send(b"anyone there?", pipe.now)
    pipe.run(pipe.now + 0.5)
    assert client.state is State.CLOSED and isinstance(client.error, ConnectionReset)
    assert Event.RESET in client.events
    with pytest.raises(ConnectionReset):
        client.receive(10, pipe.now)
    assert pipe.a.conns == {} and pipe.b.conns == {}
    rst = [s for _, s in segs(pipe, 1, lambda s: bool(s.flags & RST))]
    assert len(rst) == 1 and rst[0].seq == client.rcv_nxt and rst[0].flags == RST
    assert pipe.b.stats()["resets_out"] == 1 and pipe.a.stats()["resets_in"] == 1


def test_l8_half_open_syn_from_the_restarted_peer_resets_the_survivor() -> None:
    """RFC 9293 Figure 10: A crashes and reconnects from the same port; B, still ESTABLISHED,
    answers the SYN with an ACK, A answers that with a RST, B aborts, A's next SYN gets in."""
    pipe = pair(log=True)
    lst = pipe.b.listen(80)
    client, survivor = established(pipe)
    port = client.local_port
    t_crash = pipe.now
    pipe.a = Host([A], name="A-restarted", config=CFG)
    pipe.run(pipe.now + 1.0)
    again = pipe.a.connect(B, 80, pipe.now, local_port=port)
    pipe.run(pipe.now + 0.5)
    assert survivor.state is State.CLOSED and isinstance(survivor.error, ConnectionReset)
    assert again.state is State.SYN_SENT
    fresh = accept(pipe, lst)  # A's retransmitted SYN
    pipe.run(pipe.now + 0.1)
    assert again.state is State.ESTABLISHED and fresh.irs == again.iss and fresh is not survivor
    after = [(s.flags, s.seq) for t, s in segs(pipe, 0) if t > t_crash]
    assert after[:3] == [(SYN, again.iss), (RST, survivor.rcv_nxt), (SYN, again.iss)]


def test_l12_abort_resets_the_peer_and_leaves_no_time_wait() -> None:
    pipe = pair()
    client, server = established(pipe)
    client.send(b"x" * 200_000, pipe.now)
    pipe.run(pipe.now + 0.002)
    client.abort(pipe.now)
    assert client.state is State.CLOSED and isinstance(client.error, ConnectionAborted)
    pipe.run(pipe.now + 0.5)
    assert server.state is State.CLOSED and isinstance(server.error, ConnectionReset)
    assert Event.RESET in server.events
    # What arrived before the RST was acknowledged to the client: it stays readable, then the
    # connection reports the reset (not a clean end of stream).
    got = server.receive(1 << 20, pipe.now)
    assert got is not None and got == b"x" * len(got) and len(got) > 0
    with pytest.raises(ConnectionReset):
        server.receive(1 << 20, pipe.now)
    assert pipe.a.conns == {} and pipe.b.conns == {}
    assert pipe.a.stats()["resets_out"] == 1 and pipe.b.stats()["resets_in"] == 1


def test_l13_close_with_lots_of_unsent_data_delivers_all_before_the_fin() -> None:
    pipe = pair(b_cfg=CFG.with_(rcv_buf=16 * 1024), log=True)
    client, server = established(pipe)
    data = random.Random(13).randbytes(256 * 1024)
    assert client.send(data, pipe.now) == len(data)
    client.close(pipe.now)
    assert client.state is State.FIN_WAIT_1 and client.unsent > 200_000
    got = read_all(pipe, server, len(data))
    assert got == data
    pipe.run_until(lambda: server.receive(10, pipe.now) == b"", pipe.now + 10)
    fins = [s for _, s in segs(pipe, 0, lambda s: bool(s.flags & FIN))]
    end = (client.iss + 1 + len(data)) & MASK
    assert fins and all((s.seq + len(s.payload)) & MASK == end for s in fins)


def test_l14_eof_then_close_wait_and_fin_wait_2_stay_visible() -> None:
    pipe = pair()
    client, server = established(pipe)
    client.send(b"last words", pipe.now)
    client.close(pipe.now)
    assert read_all(pipe, server, 10) == b"last words"
    pipe.run(pipe.now + 0.1)
    assert server.receive(100, pipe.now) == b"" and server.receive(100, pipe.now) == b""
    assert Event.PEER_CLOSED in server.events
    pipe.run(pipe.now + 300)  # the server application never closes
    assert server.state is State.CLOSE_WAIT and client.state is State.FIN_WAIT_2
    assert pipe.b.conns[(B, 80, A, client.local_port)] is server
    assert pipe.a.conns[(A, client.local_port, B, 80)] is client
    assert pipe.b.next_deadline() is None and pipe.a.next_deadline() is None
    # Still a half-close: the server may send, the client reads.
    server.send(b"reply", pipe.now)
    assert read_all(pipe, client, 5) == b"reply"


def test_l14_fin_wait_2_timeout_bounds_an_orphaned_peer() -> None:
    pipe = pair(a_cfg=CFG.with_(fin_wait_2_timeout=5.0))
    client, server = established(pipe)
    client.close(pipe.now, discard_input=True)  # the socket close(): the application is gone
    pipe.run_until(lambda: client.state is State.FIN_WAIT_2, pipe.now + 1)
    t_fw2 = pipe.now
    pipe.run_until(lambda: client.state is State.CLOSED, pipe.now + 60)
    assert pipe.now == pytest.approx(t_fw2 + 5.0)
    assert pipe.a.conns == {}
    assert server.state is State.CLOSE_WAIT  # the peer that never closes is not helped
    # When it finally closes, its FIN meets no connection: RST, and it ends without error.
    server.close(pipe.now)
    pipe.run(pipe.now + 1)
    assert server.state is State.CLOSED and server.error is None and pipe.b.conns == {}
    assert pipe.a.stats()["resets_out"] == 1


def test_l15_keepalive_detects_a_vanished_peer() -> None:
    pulled = [False]
    pipe = pair(a_cfg=CFG.with_(keepalive=True, keepidle=10.0, keepintvl=2.0, keepcnt=3),
                drop=lambda pkt, idx: pulled[0], log=True)
    client, server = established(pipe)
    t0 = segs(pipe, 1)[-1][0] + pipe.delay  # the last segment the client received (SYN,ACK)
    pipe.run(5.0)
    pulled[0] = True  # the cable is pulled
    pipe.run_until(lambda: client.state is State.CLOSED, 100.0)
    assert pipe.now == pytest.approx(t0 + 10.0 + 3 * 2.0)
    assert isinstance(client.error, ConnectionTimedOut) and Event.TIMED_OUT in client.events
    probes = [(t, s) for t, s in segs(pipe, 0) if t > 1.0]
    assert [round(t - t0, 6) for t, _ in probes] == [10.0, 12.0, 14.0]
    assert all(s.seq == (client.snd_max - 1) & MASK and not s.payload and s.flags == ACK for _, s in probes)
    assert server.state is State.ESTABLISHED  # B never heard a thing
    assert pipe.a.conns == {}


def test_l15_keepalive_probes_are_answered_by_a_live_peer() -> None:
    pipe = pair(a_cfg=CFG.with_(keepalive=True, keepidle=10.0, keepintvl=2.0, keepcnt=3), log=True)
    client, server = established(pipe)
    pipe.run(100.0)
    assert client.state is State.ESTABLISHED and server.state is State.ESTABLISHED
    probes = segs(pipe, 0, lambda s: s.flags == ACK and not s.payload)
    answers = segs(pipe, 1, lambda s: s.flags == ACK and not s.payload)
    assert len(probes) >= 9 and len(answers) >= 9


def test_l16_lost_syns_are_retransmitted_with_backoff_then_connect_succeeds() -> None:
    pipe = pair(drop=lambda pkt, idx: pkt.seg.flags == SYN and idx < 2, log=True)
    pipe.b.listen(80)
    client = pipe.a.connect(B, 80, 0.0)
    pipe.run_until(lambda: client.state is State.ESTABLISHED, 10)
    assert [t for t, _ in segs(pipe, 0, lambda s: s.flags == SYN)] == [0.0, 1.0, 3.0]
    assert pipe.now == pytest.approx(3.002)
    assert pipe.a.stats()["retransmissions"] == 2 and pipe.dropped == [2, 0]


def test_l16_connect_to_a_silent_host_times_out_after_r2_syn() -> None:
    pipe = pair(drop=lambda pkt, idx: True, log=True)
    client = pipe.a.connect(B, 80, 0.0)
    pipe.run_until(lambda: client.state is State.CLOSED, 1000)
    assert pipe.now == pytest.approx(CFG.r2_syn)  # 180 s (MUST-23: at least 3 minutes)
    assert isinstance(client.error, ConnectionTimedOut) and Event.TIMED_OUT in client.events
    times = [t for t, _ in segs(pipe, 0, lambda s: s.flags == SYN)]
    # RTO 1 s, doubling (RFC 6298 §5.5), capped at 60 s.
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0]
    assert pipe.a.stats()["retransmissions"] == 7 and pipe.a.conns == {}


# ---------------------------------------------------------------------------------------------
# Counters and independence
# ---------------------------------------------------------------------------------------------


def test_counters_match_what_the_wire_carried() -> None:
    pipe = pair(drop=lambda pkt, idx: pkt.src == A and idx == 5, log=True)
    client, server = established(pipe)
    data = b"z" * 20_000
    client.send(data, pipe.now)
    assert read_all(pipe, server, len(data)) == data
    client.close(pipe.now)
    pipe.run_until(lambda: server.receive(1, pipe.now) == b"", pipe.now + 10)
    server.close(pipe.now)
    pipe.run_until(lambda: not pipe.a.conns and not pipe.b.conns, pipe.now + 10)
    a, b = pipe.a.stats(), pipe.b.stats()
    assert a["segments_out"] == a.get("packets_out", a["segments_out"]) == pipe.sent[0]
    assert b["segments_out"] == pipe.sent[1]
    assert b["segments_in"] == b["packets_in"] == pipe.sent[0] - pipe.dropped[0]
    assert a["segments_in"] == a["packets_in"] == pipe.sent[1] - pipe.dropped[1]
    assert pipe.dropped == [1, 0]
    assert a["retransmissions"] >= 1 and b["retransmissions"] == 0
    assert a.get("resets_out", 0) == b.get("resets_out", 0) == 0
    assert a["connections"] == b["connections"] == 0 and b["listeners"] == 1
    assert pipe.a.closed_connections == pipe.b.closed_connections == 1


def _lifecycle(pipe: Pipe[Host, Host]) -> list[bytes]:
    client, server = established(pipe)
    client.send(b"ping" * 1000, pipe.now)
    read_all(pipe, server, 4000)
    server.send(b"pong", pipe.now)
    read_all(pipe, client, 4)
    client.close(pipe.now)
    pipe.run_until(lambda: server.receive(1, pipe.now) == b"", pipe.now + 10)
    server.close(pipe.now)
    pipe.run_until(lambda: not pipe.a.conns and not pipe.b.conns, pipe.now + 10)
    assert pipe.log is not None
    return [p for _, _, p in pipe.log]


def test_two_host_pairs_in_one_process_do_not_interfere() -> None:
    solo = _lifecycle(pair(log=True))
    # Same names, addresses, ports and keys, alive at the same time, driven phase by phase.
    p1, p2 = pair(log=True), pair(log=True)
    for p in (p1, p2):
        p.b.listen(80)
    c1 = p1.a.connect(B, 80, 0.0)
    c2 = p2.a.connect(B, 80, 0.0)
    assert c1.local_port == c2.local_port and c1.iss == c2.iss
    p1.run(0.5)
    p2.run(0.5)
    assert len(p1.b.conns) == len(p2.b.conns) == 1
    for c in (c1, c2):
        c.abort(0.5)
    p1.run(1.0)
    p2.run(1.0)
    assert p1.log == p2.log
    # And a full lifecycle on a fresh pair repeats the solo run byte for byte.
    assert _lifecycle(pair(log=True)) == solo


# ---------------------------------------------------------------------------------------------
# Address validation (MUST-46, MUST-57, MUST-63) and the IP fields of a connection (MUST-48/49)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("remote", ["224.0.0.1", "255.255.255.255", "0.0.0.0", "ff02::1", "::"])
def test_must_46_open_to_a_broadcast_or_multicast_address_is_an_error(remote: str) -> None:
    from synack.core.host import InvalidAddress

    host = Host([A, A6], name="A", config=CFG)
    with pytest.raises(InvalidAddress):
        host.connect(remote, 80, 0.0)
    assert not host.conns and not host.packets_to_send(0.0)


@pytest.mark.parametrize("src,dst", [
    ("224.0.0.5", B), ("0.0.0.0", B), ("127.0.0.1", B), (B, B), ("10.0.0.255", B), ("240.1.2.3", B),
    ("0.1.2.3", B), ("ff02::1", B6), ("::1", B6), ("::ffff:10.0.0.1", B6), (B6, B6),
], ids=["multicast", "unspecified", "loopback", "our-own", "subnet-broadcast", "reserved", "this-network",
        "v6-multicast", "v6-loopback", "v4-mapped", "v6-our-own"])
def test_must_63_syn_from_an_invalid_source_is_silently_discarded(src: str, dst: str) -> None:
    """MUST-63: "An incoming SYN with an invalid source address MUST be ignored", and so is
    every other segment from a source no network can deliver (Linux's martians): no RST to it."""
    host = Host([f"{B}/24", B6], name="B", config=CFG)
    host.listen(80)
    for flags, ack in ((SYN, None), (ACK, 5), (0, None)):
        host.receive(build_packet(src, dst, Segment(1234, 80, 1000, ack, flags, 65535)), 0.0)
    assert not host.conns and host.packets_to_send(0.0) == []
    assert host.counters["drop_martian"] == 3


def test_a_loopback_host_takes_segments_from_loopback() -> None:
    host = Host(["127.0.0.1"], name="lo", config=CFG)
    host.listen(80)
    host.receive(build_packet("127.0.0.2", "127.0.0.1", Segment(1234, 80, 1000, None, SYN, 65535)), 0.0)
    assert len(host.conns) == 1 and host.counters["drop_martian"] == 0


def test_must_57_syn_to_a_broadcast_or_multicast_address_is_silently_discarded() -> None:
    """The host owns only unicast addresses, so such a SYN is not for us: dropped, no RST."""
    host = Host([B], name="B", config=CFG)
    host.listen(80)
    for dst in ("255.255.255.255", "224.0.0.1"):
        host.receive(build_packet(A, dst, Segment(1234, 80, 1000, None, SYN, 65535)), 0.0)
    assert not host.conns and host.packets_to_send(0.0) == []
    assert host.counters["drop_not_for_us"] == 2


def test_must_48_49_tos_and_ttl_of_a_connection_reach_the_ip_header() -> None:
    """MUST-49: the TTL is configurable; MUST-48/SHLD-22: the application's Diffserv field is
    passed unchanged to IP; SHLD-21: it can be changed during the connection."""
    pipe = pair()
    client, _server = established(pipe)
    client.ttl = 7
    client.tos = 0xB8  # DSCP EF
    client.send(b"x", pipe.now)
    pkts = pipe.a.packets_to_send(pipe.now)
    assert pkts
    ip = parse_packet(pkts[0])
    assert (ip.ttl, ip.tos) == (7, 0xB8)
    client.tos = 0x28
    client.send(b"y", pipe.now)
    client.set_nodelay(True)
    assert parse_packet(pipe.a.packets_to_send(pipe.now)[0]).tos == 0x28
