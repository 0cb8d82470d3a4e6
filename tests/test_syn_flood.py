"""SYN floods (RFC 4987): SYN cookies (§3.6), the bound on half-open children, and a flood of
spoofed SYNs during which legitimate clients still connect at once — at the level of the cookie
functions and of one host with the test playing every peer (packets built by hand)."""

from __future__ import annotations

import random

import pytest

from synack.core.connection import Config
from synack.core.cookies import (
    MSS_TABLE_V4,
    MSS_TABLE_V6,
    check_cookie,
    make_cookie,
    ts_options_decode,
    ts_options_encode,
)
from synack.core.host import Host
from synack.core.records import State
from synack.core.wire import (
    ACK,
    RST,
    SYN,
    Mss,
    SackPermitted,
    Segment,
    Timestamps,
    WindowScale,
    build_packet,
    parse_packet,
)
from synack.sim import Pipe

SECRET = bytes(range(32))
KEY = ("10.0.0.2", 80, "10.0.0.1", 40000)
B, A = "10.0.0.2", "10.0.0.1"
MASK = 0xFFFFFFFF


# =============================================================================================
# The cookie (RFC 4987 §3.6): the ISN encodes what the listener needs, bound to the SYN
# =============================================================================================


@pytest.mark.parametrize("peer_mss,want", [(1460, 1460), (1459, 1440), (1400, 1300), (600, 536), (100, 536),
                                           (9000, 1460)])
def test_a_cookie_remembers_the_largest_table_mss_not_above_the_peers(peer_mss: int, want: int) -> None:
    c = make_cookie(SECRET, KEY, 1000, 5.0, peer_mss)
    assert check_cookie(SECRET, KEY, 1000, c, 5.0) == want


def test_ipv6_uses_its_own_table() -> None:
    key6 = ("fd00::2", 80, "fd00::1", 40000)
    assert check_cookie(SECRET, key6, 7, make_cookie(SECRET, key6, 7, 0.0, 1440), 0.0) == 1440
    assert MSS_TABLE_V6[0] == 1220 and MSS_TABLE_V4[0] == 536


def test_a_cookie_is_bound_to_the_tuple_the_peer_isn_and_the_secret() -> None:
    c = make_cookie(SECRET, KEY, 1000, 5.0, 1460)
    assert check_cookie(SECRET, KEY, 1001, c, 5.0) is None  # another SYN
    assert check_cookie(SECRET, ("10.0.0.2", 80, "10.0.0.1", 40001), 1000, c, 5.0) is None
    assert check_cookie(bytes(32), KEY, 1000, c, 5.0) is None  # another host's secret
    assert check_cookie(SECRET, KEY, 1000, c ^ 1, 5.0) is None  # one bit forged


def test_a_cookie_expires_after_its_slot_and_the_next() -> None:
    c = make_cookie(SECRET, KEY, 1000, 10.0, 1460)  # slot 0 (0..64 s)
    assert check_cookie(SECRET, KEY, 1000, c, 127.9) == 1460  # slot 1: still good
    assert check_cookie(SECRET, KEY, 1000, c, 128.0) is None  # slot 2: expired


def test_random_guesses_almost_never_pass() -> None:
    rng = random.Random(1)
    hits = sum(check_cookie(SECRET, KEY, 1000, rng.getrandbits(32), 5.0) is not None for _ in range(100_000))
    assert hits <= 2  # 2**-22 per guess and per slot: about 0.05 expected


@pytest.mark.parametrize("ws,sack", [(None, False), (7, True), (14, False), (0, True)])
def test_window_scale_and_sack_ride_in_the_timestamp_and_it_never_goes_up(ws: int | None, sack: bool) -> None:
    for tsval in (0x40, 0x12345678, 0xFFFFFFFF, 0x7F):
        enc = ts_options_encode(tsval, ws, sack)
        assert enc <= tsval or tsval < 0x40
        assert ts_options_decode(enc) == (ws, sack)


# =============================================================================================
# A listener answering with cookies
# =============================================================================================


def _syn(sport: int, isn: int, *, ts: bool = True, src: str = A) -> bytes:
    opts: list[object] = [Mss(1460), SackPermitted()]
    if ts:
        opts.append(Timestamps(1000 + sport, 0))
    opts.append(WindowScale(7))
    return build_packet(src, B, Segment(sport, 80, isn, None, SYN, 65535, tuple(opts)))  # type: ignore[arg-type]


def _ack_for(synack: Segment, sport: int, *, ts: bool = True, payload: bytes = b"") -> bytes:
    tsopt = synack.option(Timestamps)
    opts = (Timestamps(2000 + sport, tsopt.tsval),) if ts and tsopt is not None else ()
    return build_packet(A, B, Segment(sport, 80, synack.ack or 0, (synack.seq + 1) & MASK, ACK, 1000, opts,
                                      payload))


def test_always_mode_keeps_no_state_until_the_ack_and_negotiates_through_the_timestamp() -> None:
    host = Host([B], name="B", syn_cookies="always")
    lst = host.listen(80)
    host.receive(_syn(40000, 555), 1.0)
    (synack,) = [parse_packet(p).seg for p in host.packets_to_send(1.0)]
    assert synack.flags == SYN | ACK and synack.ack == 556
    assert not host.conns and lst.syn_pending == 0  # no child: nothing to exhaust
    host.receive(_ack_for(synack, 40000, payload=b"hello"), 1.1)
    conn = lst.accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    assert (conn.iss, conn.irs) == (synack.seq, 555)
    assert conn.snd_wscale == 7 and conn.sack_ok and conn.ts_ok  # restored from the echo
    assert conn.snd_mss == 1460 - 12
    assert conn.receive(100, 1.1) == b"hello"  # data on the cookie ACK is taken
    assert host.stats()["syn_cookies_ok"] == 1


def test_without_timestamps_a_cookie_connection_has_no_window_scale_and_no_sack() -> None:
    host = Host([B], name="B", syn_cookies="always")
    lst = host.listen(80)
    host.receive(_syn(40000, 9, ts=False), 1.0)
    (synack,) = [parse_packet(p).seg for p in host.packets_to_send(1.0)]
    host.receive(_ack_for(synack, 40000, ts=False), 1.1)
    conn = lst.accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    assert (conn.snd_wscale, conn.sack_ok, conn.ts_ok, conn.snd_mss) == (0, False, False, 1460)


def test_a_forged_or_stale_cookie_ack_draws_a_rst_and_no_connection() -> None:
    host = Host([B], name="B", syn_cookies="always")
    lst = host.listen(80)
    host.receive(_syn(40000, 9), 1.0)
    (synack,) = [parse_packet(p).seg for p in host.packets_to_send(1.0)]
    forged = Segment(40001, 80, 10, (synack.seq + 1) & MASK, ACK, 1000)  # another port
    host.receive(build_packet(A, B, forged), 1.1)
    host.receive(_ack_for(synack, 40000), 200.0)  # too late: two slots have passed
    out = [parse_packet(p).seg for p in host.packets_to_send(200.0)]
    assert [s.flags for s in out] == [RST, RST]
    assert lst.pending == 0 and not host.conns
    assert host.stats()["syn_cookies_bad"] == 2


def test_auto_mode_looks_at_cookie_acks_only_after_sending_cookies() -> None:
    host = Host([B], name="B")  # auto
    lst = host.listen(80)
    host.receive(build_packet(A, B, Segment(40000, 80, 10, 12345, ACK, 1000)), 1.0)
    assert [parse_packet(p).seg.flags for p in host.packets_to_send(1.0)] == [RST]
    assert host.stats().get("syn_cookies_bad", 0) == 0 and lst.pending == 0


def test_spoofed_syn_flood_does_not_stop_legitimate_clients() -> None:
    """RFC 4987's attack: spoofed SYNs fill the SYN queue (their SYN,ACKs go nowhere); with
    cookies every legitimate client connects at once, and the host's memory stays bounded by the
    SYN queue (half-open children give up after synack_retries)."""
    server = Host([B], name="B", config=Config.lab())
    lst = server.listen(80, backlog=200, syn_backlog=64)
    client = Host([A], name="A", config=Config.lab())
    pipe: Pipe[Host, Host] = Pipe(client, server, delay=0.001)
    rng = random.Random(4987)
    legit = []
    for k in range(2000):  # 2,000 spoofed SYNs, 100 legitimate connections among them
        t = k * 0.001
        pipe.run(t)
        spoofed = f"198.51.100.{rng.randrange(1, 255)}"
        server.receive(_syn(rng.randrange(1024, 65535), rng.getrandbits(32), src=spoofed), t)
        if k % 20 == 0:
            legit.append(client.connect(B, 80, t))
        assert len(server.conns) <= 64 + 200
    pipe.run(pipe.now + 1.0)
    assert sum(c.state is State.ESTABLISHED for c in legit) == 100
    assert server.stats()["syn_cookies_sent"] > 1900
    pipe.run(pipe.now + 70.0)  # the half-open children have given up their SYN,ACKs
    assert lst.syn_pending == 0
    assert sum(1 for c in server.conns.values() if c.state is State.SYN_RECEIVED) == 0
