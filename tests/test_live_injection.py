"""Blind injection into a live connection, over TUN (issue 10, "Done when": "the injection rates
above answered within the rate limit").

Inside a private namespace: a synack connection (a blocking synack socket on a TUN stack in this
process) to a kernel server. A raw kernel socket in the namespace then forges segments of that
connection's 4-tuple, as a blind attacker off the path would, about 3,000 a second of each kind:

* out-of-window SYNs (RFC 5961 §4 would challenge them; they fail the sequence check first),
* ACKs of data never sent (RFC 5961 §5: a challenge ACK, rate-limited by §7),
* data far outside the window (RFC 9293 §3.10.7.4: an ACK in reply, rate-limited as Linux's
  ``tcp_invalid_ratelimit``).

Before the limits synack answered every one (about 3,200 ACKs/s towards the peer); Linux sends a
handful. The test counts what synack sends during the injection, requires it to stay within
the limits (Config.invalid_ratelimit = 0.5 s, challenge_ack_limit = 10 a second), the rest to be
counted as suppressed, and the connection to carry data both ways afterwards.

Bounded: a fixed number of forged packets, paced; every wait has a limit; the namespace is
removed whatever happens.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from synack import sockets
from synack.core.connection import Config, Connection
from synack.core.wire import internet_checksum
from synack.tun import TunStack, create_netns, in_netns, netns_socket, remove_netns

pytestmark: list[pytest.MarkDecorator] = [pytest.mark.live]

if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
    pytestmark.append(pytest.mark.skip(reason="needs root and /dev/net/tun"))

K4, S4 = "10.77.0.1", "10.77.0.2"
PORT = 8300
PER_KIND = 3000  # forged segments of each kind
RATE = 3000  # per second, per kind (all three kinds interleaved)
WAIT = 15.0
_serial = itertools.count()


@contextlib.contextmanager
def namespace() -> Iterator[str]:
    name = f"synack-inject-{os.getpid()}-{next(_serial)}"
    create_netns(name)
    try:
        yield name
    finally:
        remove_netns(name)


def forged(conn: Connection, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    """An IPv4 segment from the kernel's end of ``conn`` (K4:PORT) to synack's, checksums right."""
    src, dst = socket.inet_aton(K4), socket.inet_aton(S4)
    tcp = bytearray(struct.pack("!HHIIBBHHH", PORT, conn.local_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                                5 << 4, flags, 65535, 0, 0) + payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp[16:18] = internet_checksum(pseudo + bytes(tcp)).to_bytes(2, "big")
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, src, dst))
    ip[10:12] = internet_checksum(bytes(ip)).to_bytes(2, "big")
    return bytes(ip + tcp)


def inject(ns: str, packets: list[bytes], rate: int, report: dict[str, float]) -> None:
    """Send ``packets`` through a raw socket in ``ns``, paced at ``rate`` a second in 10 ms batches."""
    with in_netns(ns):
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        batch = max(rate // 100, 1)
        sent = 0
        t0 = time.monotonic()
        for i in range(0, len(packets), batch):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for pkt in packets[i:i + batch]:
                with contextlib.suppress(OSError):  # ENOBUFS: the device queue is full
                    raw.sendto(pkt, (S4, 0))
                    sent += 1
        report["sent"] = sent
        report["seconds"] = time.monotonic() - t0
    finally:
        raw.close()


def test_blind_injection_is_answered_within_the_rate_limits() -> None:
    with namespace() as ns:
        stack = TunStack(netns=ns, config=Config(msl=30.0))
        srv = netns_socket(ns)
        try:
            srv.bind((K4, PORT))
            srv.listen()
            srv.settimeout(WAIT)
            ours = sockets.socket(stack)
            ours.settimeout(WAIT)
            ours.connect((K4, PORT))
            theirs, _ = srv.accept()
            theirs.settimeout(WAIT)
            ours.sendall(b"hello")
            assert theirs.recv(10) == b"hello"
            conn = ours.connection
            assert conn is not None
            with stack.lock:
                rcv_nxt, snd_max = conn.rcv_nxt, conn.snd_max
            far = 1 << 30  # half the sequence space away: outside any window
            SYN, ACK, PSH = 0x02, 0x10, 0x08
            kinds = [
                forged(conn, rcv_nxt + far, 0, SYN),
                forged(conn, rcv_nxt, snd_max + far, ACK),
                forged(conn, rcv_nxt + far, snd_max, ACK | PSH, b"x" * 100),
            ]
            packets = [kinds[i % 3] for i in range(3 * PER_KIND)]
            before = stack.host.stats()
            report: dict[str, float] = {}
            sender = threading.Thread(target=inject, args=(ns, packets, 3 * RATE, report), daemon=True)
            sender.start()
            end = time.monotonic() + WAIT
            while sender.is_alive() and time.monotonic() < end:
                stack.run_for(0.05)
            sender.join(WAIT)
            stack.run_for(0.2)  # what is still queued in the device
            after = stack.host.stats()
            assert report.get("sent", 0) >= 0.9 * len(packets), report
            seconds = report["seconds"]
            arrived = after["segments_in"] - before["segments_in"]
            replies = after["segments_out"] - before["segments_out"]
            suppressed = after["replies_rate_limited"] - before["replies_rate_limited"]
            print(f"forged {report['sent']:.0f} in {seconds:.2f} s ({report['sent'] / seconds:,.0f}/s), "
                  f"{arrived} reached synack, {replies} replies, {suppressed} suppressed")
            assert arrived >= 0.9 * len(packets)
            # invalid_ratelimit: one ACK per 0.5 s; challenge ACKs: 10 in each second (RFC 5961 §7).
            span = seconds + 0.3
            limit = (span / 0.5 + 1) + 10 * (span + 1)
            assert replies <= limit, f"{replies} replies in {span:.2f} s (limit {limit:.0f})"
            assert suppressed >= 0.99 * (arrived - replies)  # the others: dropped, no reply due
            with stack.lock:
                assert conn.state.name == "ESTABLISHED"
            # the connection is unharmed: data both ways
            ours.sendall(b"still here")
            assert theirs.recv(20) == b"still here"
            theirs.sendall(b"so am I")
            assert ours.recv(20) == b"so am I"
            theirs.close()
            ours.close()
        finally:
            srv.close()
            stack.close()
