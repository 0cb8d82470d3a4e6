"""The TUN paths with offloads (IFF_VNET_HDR), without a device: which frames the host trusts
(the kernel's checksum flags) and which it verifies, what the pcap records, and the frames the
driver writes (checksums left to the kernel, runs coalesced into GSO frames).

Frames go through a SOCK_SEQPACKET socket pair standing in for the device's fd (one frame per
read, non-blocking), into ``TunStack._read_all``; no root is needed.
"""

from __future__ import annotations

import io
import os
import random
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import pytest

from synack.core.host import Host
from synack.core.wire import Segment, Timestamps, WireError, build_packet, parse_packet
from synack.pcap import PcapWriter, ip_packet, read_pcap
from synack.tun import (
    TunStack,
    _conn_frames,
    _from_vnet,
    _gso_frame,
    _partial_frame,
    _to_vnet,
    _tso_packets,
    _Writer,
)

US, THEM = "10.77.0.2", "10.77.0.1"
US6, THEM6 = "fd77::2", "fd77::1"
NEEDS_CSUM, DATA_VALID = 0x01, 0x02
VNET = struct.Struct("=BBHHHH")


def _syn(src: str = THEM, dst: str = US, payload: bytes = b"") -> bytes:
    """A SYN (with data, if asked) to a closed port of ours: the host answers with a reset."""
    return build_packet(src, dst, Segment(40000, 9, 1000, None, 0x02, 8192, payload=payload))


def _frame(pkt: bytes, flags: int) -> bytes:
    """``pkt`` as the kernel writes it to a device with IFF_VNET_HDR. With NEEDS_CSUM the TCP
    checksum field holds only the pseudo-header sum, as in a locally generated packet."""
    ihl = 20 if pkt[0] >> 4 == 4 else 40
    if flags & NEEDS_CSUM:
        tcp_len = len(pkt) - ihl
        pseudo = (int.from_bytes(pkt[12:20], "big") if ihl == 20 else int.from_bytes(pkt[8:40], "big"))
        r = (pseudo + 6 + tcp_len) % 0xFFFF
        partial = bytearray(pkt)
        partial[ihl + 16:ihl + 18] = (r or 0xFFFF).to_bytes(2, "big")
        return VNET.pack(flags, 0, 0, 0, ihl, 16) + bytes(partial)
    return VNET.pack(flags, 0, 0, 0, 0, 0) + pkt


class Rig:
    def __init__(self, pcap: bool) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ours.setblocking(False)
        self.buf = io.BytesIO()
        self.stack = object.__new__(TunStack)  # everything _read_all needs, without a device
        self.stack.fd = self.ours.fileno()
        self.stack.host = Host([US, US6], isn_key=b"k" * 32)
        self.stack.offload = True
        self.stack._readsize = 65536 + VNET.size
        self.stack.pcap = PcapWriter(self.buf) if pcap else None
        self.stack.counters = Counter()
        self.stack.closed = False

    def feed(self, *frames: bytes) -> dict[str, int]:
        for f in frames:
            self.theirs.send(f)
        assert self.stack._read_all() == len(frames)
        return self.stack.host.stats()

    def pcap_packets(self) -> list[bytes]:
        assert self.stack.pcap is not None
        self.stack.pcap.flush()
        return [p for r in read_pcap(self.buf.getvalue()) if (p := ip_packet(r)) is not None]

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    r = Rig(bool(getattr(request, "param", False)))
    yield r
    r.close()


@pytest.mark.parametrize("src,dst", [(THEM, US), (THEM6, US6)], ids=["ipv4", "ipv6"])
def test_checksum_partial_frames_are_trusted(rig: Rig, src: str, dst: str) -> None:
    stats = rig.feed(_frame(_syn(src, dst, b"x" * 5000), NEEDS_CSUM), _frame(_syn(src, dst), DATA_VALID))
    assert stats["checksum_trusted"] == 2
    assert stats.get("bad_checksum", 0) == 0
    assert stats["resets_out"] == 2  # both were taken in as segments


@pytest.mark.parametrize("flags", [0, DATA_VALID, NEEDS_CSUM])
def test_a_trusted_frame_still_has_its_lengths_checked(rig: Rig, flags: int) -> None:
    pkt = bytearray(_syn(payload=b"abc"))
    pkt[2:4] = (len(pkt) + 10).to_bytes(2, "big")  # IPv4 total length past the end
    stats = rig.feed(_frame(bytes(pkt), flags))
    assert stats["malformed"] == 1
    assert "resets_out" not in stats


def test_unflagged_frames_are_verified(rig: Rig) -> None:
    """MUST-3: without NEEDS_CSUM or DATA_VALID the kernel vouches for nothing (e.g. a raw
    socket's packet), so both checksums are checked as on a wire."""
    good = _syn(payload=b"payload")
    bad_tcp = bytearray(good)
    bad_tcp[-1] ^= 0x01
    bad_ip = bytearray(good)
    bad_ip[8] ^= 0x01  # the TTL: the IPv4 header checksum no longer matches
    stats = rig.feed(_frame(bytes(bad_tcp), 0), _frame(bytes(bad_ip), 0), _frame(good, 0))
    assert stats["bad_checksum"] == 2
    assert "checksum_trusted" not in stats
    assert stats["resets_out"] == 1  # the good one


def test_a_bad_checksum_in_a_trusted_frame_is_not_looked_at(rig: Rig) -> None:
    """What the flags buy: a data-valid frame is not summed again (the kernel, or the NIC before
    it, has verified it), so a checksum field that does not match is not noticed."""
    bad = bytearray(_syn())
    bad[36] ^= 0xFF
    stats = rig.feed(_frame(bytes(bad), DATA_VALID))
    assert stats["checksum_trusted"] == 1
    assert stats.get("bad_checksum", 0) == 0


@pytest.mark.parametrize("rig", [True], indirect=True)
def test_the_pcap_gets_completed_checksums(rig: Rig) -> None:
    """The host skips the checksum of a checksum-partial frame, but the pcap copy has it
    completed, so that captures verify as they would on a wire."""
    pkts = [_syn(payload=b"y" * 3000), _syn(THEM6, US6, b"z" * 7), _syn()]
    rig.feed(_frame(pkts[0], NEEDS_CSUM), _frame(pkts[1], NEEDS_CSUM), _frame(pkts[2], 0))
    assert rig.stack.host.stats()["checksum_trusted"] == 2
    assert rig.pcap_packets() == pkts
    for p in rig.pcap_packets():
        parse_packet(p)  # verifies both checksums


def test_from_vnet_completes_a_partial_checksum() -> None:
    pkt = _syn(payload=b"q" * 101)
    frame = _frame(pkt, NEEDS_CSUM)
    with pytest.raises(WireError, match="checksum"):
        parse_packet(frame[VNET.size:])
    assert _from_vnet(frame) == pkt
    assert _from_vnet(_frame(pkt, 0)) == pkt


def test_host_receive_of_a_memoryview() -> None:
    """The driver hands the host a view of its read buffer; both paths take it."""
    host = Host([US], isn_key=b"k" * 32)
    big = _syn(payload=b"w" * 9000)
    frame = b"\0" * 10 + big
    host.receive(memoryview(frame)[10:], 1.0)
    host.receive(memoryview(frame)[10:], 1.0, checksum_verified=True)
    host.receive(memoryview(_syn()), 1.0, checksum_verified=True)
    stats = host.stats()
    assert stats["resets_out"] == 3
    assert stats["checksum_trusted"] == 2


# =============================================================================================
# The send path: the frames of a connection's segments, checksums left to the kernel
# =============================================================================================


def _normal(frame: bytes) -> bytes:
    """A frame as the kernel would take it: a GSO frame as it is (its checksum is partial either
    way), any other frame as its IP packet with the checksum completed (:func:`_from_vnet`)."""
    return frame if frame[1] else _from_vnet(frame)


def _random_segments(rng: random.Random, mss: int, tso: bool) -> list[Segment]:
    """What a connection might send in one pull: runs of data segments of one size with short
    tails and PSH, TSO segments, pure ACKs, a FIN, the header fields changing now and then."""
    segs: list[Segment] = []
    seq = rng.choice((1000, 0xFFFFFFFF - 3 * mss))
    ack, window, opts = 5000, 500, (Timestamps(7, 8),)
    for _ in range(rng.randint(1, 25)):
        r = rng.random()
        if r < 0.05:
            ack += 1
        elif r < 0.1:
            window += 1
        elif r < 0.15:
            opts = (Timestamps(opts[0].tsval + 1, 8),)
        n = rng.choice((mss, mss, mss, mss, mss - 1, 1, 0))
        if tso and rng.random() < 0.2:
            n = rng.choice((min(3 * mss, 65000), min(44 * mss + 9, 65000)))
        flags = rng.choice((0x10, 0x10, 0x10, 0x18, 0x11, 0x19, 0x30))
        payload = rng.randbytes(n)
        segs.append(Segment(40000, 80, seq, ack, flags, window, opts, payload, urg=7 if flags & 0x20 else 0))
        seq = (seq + n + (flags & 1)) & 0xFFFFFFFF
    return segs


@pytest.mark.parametrize("src,dst", [(US, THEM), (US6, THEM6)], ids=["ipv4", "ipv6"])
def test_conn_frames_are_to_vnets_frames_but_for_the_checksums(src: str, dst: str) -> None:
    """The driver writes a connection's segments with :func:`_conn_frames` — built from the
    segments, every TCP checksum left for the kernel — instead of building every packet and
    coalescing them with :func:`_to_vnet`: the kernel gets the same packets, in the same GSO
    frames."""
    rng = random.Random(14)
    coalesced = singles = 0
    for _ in range(300):
        mss = rng.choice((1448, 536, 64948 if ":" not in src else 64928))
        segs = _random_segments(rng, mss, rng.random() < 0.3)
        old = _to_vnet([build_packet(src, dst, s, ttl=61, tos=4) for s in segs if len(s.payload) <= mss])
        if all(len(s.payload) <= mss for s in segs):
            new = _conn_frames(src, dst, segs, 61, 4, mss)
            assert [_normal(f) for f in new] == [_normal(f) for f in old]
            coalesced += sum(1 for f in new if f[1])
            singles += sum(1 for f in new if not f[1])
        for s in segs:  # a TSO segment is the GSO frame of its pieces (tests/test_conn_tso.py)
            if len(s.payload) > mss:
                pieces = [build_packet(src, dst, p, ttl=61, tos=4) for p in _split(s, mss)]
                ihl = 20 if ":" not in src else 40
                thl = (pieces[0][ihl + 12] >> 4) * 4
                assert _conn_frames(src, dst, [s], 61, 4, mss) == [_gso_frame(pieces, ihl, thl, mss)]
    assert coalesced > 20 and singles > 100


def _split(s: Segment, mss: int) -> list[Segment]:
    out = []
    for off in range(0, len(s.payload), mss):
        last = off + mss >= len(s.payload)
        out.append(replace(s, seq=(s.seq + off) & 0xFFFFFFFF, payload=s.payload[off:off + mss],
                           flags=s.flags if last else s.flags & ~0x09))
    return out


def test_a_partial_frame_completed_is_build_packets_packet() -> None:
    for src, dst in ((US, THEM), (US6, THEM6)):
        for n in (0, 1, 1448, 9001):
            seg = Segment(40000, 80, 77, 88, 0x18, 500, (Timestamps(1, 2),), b"p" * n)
            frame = _partial_frame(src, dst, seg, 64, 0)
            flags, gso, _, _, start, off = VNET.unpack_from(frame)
            assert (flags, gso, start, off) == (NEEDS_CSUM, 0, 20 if ":" not in src else 40, 16)
            assert _from_vnet(frame) == build_packet(src, dst, seg)


@pytest.mark.parametrize("src,dst", [(US, THEM), (US6, THEM6)], ids=["ipv4", "ipv6"])
def test_software_segmentation_gives_the_per_mss_packets(src: str, dst: str) -> None:
    """Without offloads the driver cuts a TSO segment itself (:func:`_tso_packets`): the packets
    are build_packet's of the per-MSS segments the connection sends without TSO (split as in
    tests/test_conn_tso.py), byte for byte — checksums included."""
    rng = random.Random(5)
    for _ in range(300):
        mss = rng.choice((1448, 1447, 536, 1, 7, 1220))
        n = rng.randint(mss + 1, min(45 * mss + mss - 1, 65000))
        flags = rng.choice((0x10, 0x18, 0x11, 0x19, 0x38))
        opts = rng.choice(((), (Timestamps(rng.getrandbits(32), rng.getrandbits(32)),)))
        big = Segment(rng.randint(1, 65535), rng.randint(1, 65535), rng.getrandbits(32), rng.getrandbits(32),
                      flags, rng.randint(0, 65535), opts, rng.randbytes(n), urg=rng.choice((0, 5)))
        ttl, tos = rng.randint(1, 255), rng.randint(0, 255)
        want = [build_packet(src, dst, p, ttl=ttl, tos=tos) for p in _split(big, mss)]
        assert _tso_packets(src, dst, big, ttl, tos, mss) == want


# =============================================================================================
# The writer thread (TunStack(write_thread=True))
# =============================================================================================


def test_the_writer_thread_writes_every_frame_in_order_through_a_full_queue() -> None:
    """Frames leave in the order queued; a full device queue (EAGAIN) is waited out in the
    writer's poll and nothing is lost."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setblocking(False)
    wake = os.eventfd(0, os.EFD_NONBLOCK)
    writer = _Writer(ours.fileno(), wake, "test-writer")
    try:
        frames = [i.to_bytes(4, "big") * 300 for i in range(2000)]
        for k in range(0, len(frames), 100):
            writer.put(frames[k:k + 100])
        theirs.settimeout(5)
        got = [theirs.recv(2000) for _ in frames]
        assert got == frames
        assert not writer.errors and not writer.gone
    finally:
        writer.stop()
        assert not writer.thread.is_alive()
        os.close(wake)
        ours.close()
        theirs.close()
