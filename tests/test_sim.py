"""The simulated network: timing, link faults, scripted faults, crashes, determinism, and a
property test that TCP delivers every byte exactly once through all of it.

Everything runs on the virtual clock: no test sleeps or reads a wall clock."""

from __future__ import annotations

import hashlib
import os
import pathlib
import random
import struct
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synack.core.connection import Config, Connection, ConnectionReset
from synack.core.host import Host, Listener
from synack.core.records import State
from synack.core.wire import (
    Mss,
    Nop,
    Option,
    Sack,
    SackPermitted,
    Timestamps,
    WindowScale,
    encode_options,
    parse_options,
)
from synack.sim import Link, Network, _syn_options_len, has_flags, segment_is
from synack.trace import PacketRecord, Trace

LAB = Config.lab()
V4 = ("10.0.0.1", "10.0.0.2")
V6 = ("2001:db8::1", "2001:db8::2")


def pair(seed: int = 0, *, trace: bool = True, v6: bool = False, config: Config = LAB,
         **link: Any) -> tuple[Network, Host, Host, Link, Link]:
    net = Network(seed=seed, trace=Trace() if trace else None)
    addrs = V6 if v6 else V4
    a = net.add_host("A", addrs[0], config=config)
    b = net.add_host("B", addrs[1], config=config)
    ab, ba = net.link("A", "B", **link)
    return net, a, b, ab, ba


def establish(net: Network, a: Host, b: Host, port: int = 80) -> tuple[Connection, Connection, Listener]:
    lst = b.listen(port)
    c = a.connect(b.addresses[0], port, net.now)
    assert net.run_until(lambda: lst.pending > 0, limit=30)
    s = lst.accept()
    assert s is not None and c.state is State.ESTABLISHED
    return c, s, lst


def packets(net: Network, kind: str) -> list[PacketRecord]:
    assert net.trace is not None
    return net.trace.packets(kind)


# ---------------------------------------------------------------------------------------------
# Time and timing
# ---------------------------------------------------------------------------------------------


def test_step_run_and_empty_network() -> None:
    net, a, b, _, _ = pair()
    assert net.step() is False and net.now == 0.0
    assert net.run(until=5.0) == 0 and net.now == 5.0  # run(until) moves the clock
    b.listen(80)
    a.connect("10.0.0.2", 80, net.now)
    assert net.step() is True  # the SYN arrives
    assert net.now == pytest.approx(5.001)
    assert b.stats()["segments_in"] == 1


def test_packet_arrives_exactly_after_the_delay() -> None:
    net, a, b, _, _ = pair(delay=0.025)
    b.listen(80)
    net.run(until=1.0)
    a.connect("10.0.0.2", 80, net.now)
    net.run(until=1.1)
    sent, delivered = packets(net, "send"), packets(net, "deliver")
    assert [d.t - s.t for s, d in zip(sent, delivered, strict=True)] == [pytest.approx(0.025)] * 3
    assert delivered[0].t == 1.0 + 0.025


def test_bandwidth_serializes_packets_and_the_queue_drops_the_tail() -> None:
    net, a, _, _, _ = pair(delay=0.01, bandwidth=1000.0, queue=2)
    for port in (1, 2, 3):  # three SYNs at t=0 to a port with no listener
        a.connect("10.0.0.2", port, 0.0)
    net.run(until=0.5)
    sent = [r for r in packets(net, "send") if r.src == "A"]
    size = len(sent[0].packet)
    drops = packets(net, "drop")
    assert [(d.pid, d.reason) for d in drops] == [(sent[2].pid, "queue full")]
    arrivals = [r.t for r in packets(net, "deliver") if r.src == "A"]
    # The first leaves after size/bandwidth, the second waits for it; both then travel 10 ms.
    assert arrivals == [size / 1000.0 + 0.01, 2 * size / 1000.0 + 0.01]
    assert net.stats()["drop: queue full"] == 1


def test_the_queue_empties_as_packets_leave() -> None:
    net, a, _, _, _ = pair(delay=0.0, bandwidth=1000.0, queue=1)
    a.connect("10.0.0.2", 1, 0.0)
    net.run(until=0.0)
    size = len(packets(net, "send")[0].packet)
    net.run(until=size / 1000.0)  # the first packet is fully serialized: the queue is free again
    a.connect("10.0.0.2", 2, net.now)
    net.run(until=1.0)
    assert not packets(net, "drop")


def test_mtu_drop() -> None:
    net, a, b, _, _ = pair(mtu=576)
    c, s, _ = establish(net, a, b)
    c.send(bytes(1000), net.now)  # the host's MTU is 1500: a 1000-byte segment is too big here
    net.run(until=net.now + 0.5)
    drops = packets(net, "drop")
    assert drops and {d.reason for d in drops} == {"mtu"}
    assert all(len(d.packet) > 576 for d in drops)
    assert s.readable == 0


def test_call_at_and_run_until() -> None:
    net, a, b, _, _ = pair()
    lst = b.listen(80)
    box: list[Connection] = []
    net.call_at(2.0, lambda: box.append(a.connect("10.0.0.2", 80, net.now)))
    assert net.run_until(lambda: lst.pending > 0, limit=10)
    assert net.now == pytest.approx(2.003)  # SYN sent at 2.0, SYN,ACK at 2.001, ACK at 2.002
    assert box[0].state is State.ESTABLISHED
    assert not net.run_until(lambda: False, limit=3)
    assert net.now == pytest.approx(5.003)  # a timeout takes its time
    with pytest.raises(ValueError):
        net.call_at(1.0, lambda: None)


def test_user_calls_between_steps_are_flushed() -> None:
    net, a, b, _, _ = pair()
    c, s, _ = establish(net, a, b)
    c.send(b"hello", net.now)
    net.flush()
    assert packets(net, "send")[-1].parsed.seg.payload == b"hello"
    assert net.step() and s.receive(100, net.now) == b"hello"


def test_sim_stack_waits_in_virtual_time() -> None:
    net, a, b, _, _ = pair(delay=0.05)
    stack = net.stack("A")
    assert stack.host is a and stack.now() == 0.0
    lst = b.listen(80)
    c = stack.host.connect("10.0.0.2", 80, stack.now())
    stack.flush()
    assert stack.wait_until(lambda: c.state is State.ESTABLISHED, 1.0)
    assert stack.now() == pytest.approx(0.1)
    assert not stack.wait_until(lambda: c.readable > 0, 2.0)
    assert stack.now() == pytest.approx(2.1)
    s = lst.accept()
    assert s is not None
    s.send(b"x", net.now)
    assert stack.wait_until(lambda: c.readable > 0, None)
    c.abort(net.now)
    assert not stack.wait_until(lambda: False, None)  # nothing is left to happen: give up


# ---------------------------------------------------------------------------------------------
# Link faults at their rates
# ---------------------------------------------------------------------------------------------


def many_syns(n: int, seed: int = 7, **link: Any) -> tuple[Network, Host, Host]:
    """``n`` SYNs from A to a port of B with no listener, at t=0; B answers each with a RST over
    a clean link. Nothing is retransmitted before t=0.5."""
    net, a, b, _, ba = pair(seed, **link)
    ba.loss = ba.duplicate = ba.reorder = ba.corrupt = 0.0
    ba.jitter = 0.0
    for _ in range(n):
        a.connect("10.0.0.2", 9, 0.0)
    net.run(until=0.5)
    return net, a, b


def test_loss_rate() -> None:
    net, _, b = many_syns(2000, loss=0.2)
    lost = net.stats()["drop: loss"]
    assert 320 < lost < 480
    assert b.stats()["segments_in"] == 2000 - lost
    assert all(d.reason == "loss" and d.src == "A" for d in packets(net, "drop"))


def test_duplicate_rate() -> None:
    net, _, b = many_syns(2000, duplicate=0.1)
    dups = net.stats()["duplicated"]
    assert 140 < dups < 260
    assert b.stats()["segments_in"] == 2000 + dups
    assert len(packets(net, "duplicate")) == dups


def test_reorder_rate_and_reordering() -> None:
    net, _, _ = many_syns(2000, reorder=0.1, delay=0.001)
    held = [h for h in packets(net, "hold") if h.reason == "reorder"]
    assert 140 < len(held) < 260
    assert all(h.extra == pytest.approx(0.002) for h in held)
    order = [d.pid for d in packets(net, "deliver") if d.src == "A"]
    assert sorted(order) == [s.pid for s in packets(net, "send") if s.src == "A"]
    assert order != sorted(order)


def test_corruption_rate_and_the_checksum_catches_every_flip() -> None:
    net, _, b = many_syns(2000, corrupt=0.1)
    corrupted = net.stats()["corrupted"]
    assert 140 < corrupted < 260
    counters = b.stats()
    assert counters.get("bad_checksum", 0) + counters.get("malformed", 0) == corrupted
    assert counters.get("bad_checksum", 0) > 0.9 * corrupted  # only data-offset flips are "malformed"
    assert counters["segments_in"] == 2000 - corrupted
    assert net.stats().get("corrupt undetected", 0) == 0
    reasons = {d.reason for d in packets(net, "drop")}
    assert reasons <= {"corrupt: bad checksum", "corrupt: malformed"}


@pytest.mark.parametrize("v6", [False, True])
def test_every_corrupted_packet_is_dropped_by_the_receiver(v6: bool) -> None:
    net, a, b, _, _ = pair(v6=v6, corrupt=1.0)
    b.listen(80)
    c = a.connect(b.addresses[0], 80, 0.0)
    net.run(until=4.0)  # the SYN and two retransmissions, all corrupted
    assert c.state is State.SYN_SENT
    assert b.stats()["bad_checksum"] + b.stats().get("malformed", 0) == 3
    assert b.stats()["bad_checksum"] >= 2
    assert not b.conns


def test_jitter_stays_within_bounds() -> None:
    net, _, _ = many_syns(500, jitter=0.0005, delay=0.001)
    sent = {s.pid: s.t for s in packets(net, "send")}
    delays = [d.t - sent[d.pid] for d in packets(net, "deliver") if d.src == "A"]
    assert all(0.0005 - 1e-12 <= x <= 0.0015 + 1e-12 for x in delays)
    assert max(delays) - min(delays) > 0.0008


# ---------------------------------------------------------------------------------------------
# Scripted faults
# ---------------------------------------------------------------------------------------------


def test_drop_nth_drops_exactly_the_syn_ack() -> None:
    net, a, b, _, _ = pair()
    fault = net.drop_nth(1, segment_is("SYN", "ACK"))
    lst = b.listen(80)
    c = a.connect("10.0.0.2", 80, 0.0)
    assert net.run_until(lambda: lst.pending > 0, limit=10)
    drops = packets(net, "drop")
    assert len(drops) == 1 and drops[0].reason == "scripted"
    assert drops[0].parsed.seg.ctl() == "SYN,ACK"
    assert fault.hits == 1 and not fault.active
    assert c.state is State.ESTABLISHED and net.now > 1.0  # recovered by a retransmission


def test_drop_nth_counts_matching_packets_in_one_direction() -> None:
    net, a, b, _, _ = pair()
    fault = net.drop_nth(2, has_flags("ACK"), direction=("A", "B"))
    c, s, _ = establish(net, a, b)  # A's first ACK (of the SYN,ACK) passes
    c.send(b"one", net.now)
    net.run(until=net.now + 0.1)
    (drop,) = packets(net, "drop")
    assert drop.src == "A" and drop.parsed.seg.payload == b"one"
    assert fault.seen == 2 and fault.hits == 1
    net.run(until=net.now + 3)
    assert s.receive(10, net.now) == b"one"  # retransmitted


def test_drop_if_count_and_cancel() -> None:
    net, a, b, _, _ = pair()
    fault = net.drop_if(segment_is("SYN"), count=2)
    lst = b.listen(80)
    a.connect("10.0.0.2", 80, 0.0)
    assert net.run_until(lambda: lst.pending > 0, limit=10)
    assert net.now == pytest.approx(3.003)  # SYN at 0, 1 (RTO), 3 (backed off): the third gets through
    assert fault.hits == 2
    forever = net.drop_if(segment_is("SYN"), count=None)
    forever.cancel()
    assert not forever.active


def test_hold_delays_one_packet() -> None:
    net, a, b, _, _ = pair()
    c, s, _ = establish(net, a, b)
    net.hold(segment_is("ACK", data=True), 0.5)
    t0 = net.now
    c.send(b"late", t0)
    assert net.run_until(lambda: s.readable > 0, limit=2)
    assert net.now == pytest.approx(t0 + 0.001 + 0.5)
    (held,) = packets(net, "hold")
    assert held.reason == "scripted" and held.extra == 0.5


def test_partition_and_heal() -> None:
    net, a, b, _, _ = pair()
    c, s, _ = establish(net, a, b)
    c.send(b"a", net.now)
    net.flush()
    net.partition("A", "B")  # the segment in flight is lost as well
    net.run(until=net.now + 2.5)
    drops = packets(net, "drop")
    assert drops and {d.reason for d in drops} == {"partition"}
    assert s.readable == 0
    net.heal("A", "B")
    assert net.run_until(lambda: s.readable > 0, limit=10)
    assert s.receive(10, net.now) == b"a"


def test_crash_forgets_connections_and_the_survivor_gets_a_reset() -> None:
    """L8: the restarted peer answers the survivor's next segment with RST."""
    net, a, b, _, _ = pair()
    c, _, _ = establish(net, a, b)
    old_b = b
    b = net.crash("B")
    assert b is not old_b and net.host("B") is b and not b.conns and not b.listeners
    c.send(b"data", net.now)
    net.run(until=net.now + 0.5)
    assert packets(net, "drop")[-1].reason == "host down"
    net.restart("B")
    assert net.run_until(lambda: c.state is State.CLOSED, limit=10)
    assert isinstance(c.error, ConnectionReset)
    rst = [r for r in packets(net, "deliver") if r.src == "B"][-1].parsed.seg
    assert rst.ctl() == "RST"
    assert b.stats()["resets_out"] == 1
    assert not a.conns and not b.conns


def test_crash_with_scheduled_restart() -> None:
    net, a, b, _, _ = pair()
    b.listen(80)
    net.crash("B", restart_after=1.5)
    assert net.is_down("B")
    net.host("B").listen(80)  # the application comes back with the host
    c = a.connect("10.0.0.2", 80, 0.0)
    assert net.run_until(lambda: c.state is State.ESTABLISHED, limit=10)
    assert not net.is_down("B")
    assert net.now == pytest.approx(3.002)  # SYNs at 0 and 1 hit a dead host; the one at 3 does not
    assert [n.kind for n in net.trace or [] if n.kind in ("crash", "restart")] == ["crash", "restart"]


def test_crashed_host_sends_nothing_and_runs_no_timers() -> None:
    net, _, _, _, _ = pair()
    dead = net.crash("A")
    c = dead.connect("10.0.0.2", 80, 0.0)
    net.run(until=10.0)
    assert [d.reason for d in packets(net, "drop")] == ["host down"]
    assert c.state is State.SYN_SENT


# ---------------------------------------------------------------------------------------------
# Determinism, IPv6, addressing
# ---------------------------------------------------------------------------------------------


def scripted_run(seed: int, tmp: str) -> tuple[str, bytes]:
    net, a, b, _, _ = pair(seed, delay=0.002, jitter=0.001, loss=0.1, duplicate=0.05, reorder=0.05,
                           corrupt=0.05, bandwidth=200_000.0, queue=8)
    net.drop_nth(1, has_flags("FIN"))
    lst = b.listen(80)
    c = a.connect("10.0.0.2", 80, 0.0)
    net.call_at(0.5, lambda: c.send(bytes(range(256)) * 40, net.now))
    net.call_at(0.6, lambda: c.close(net.now))
    net.run(until=1.0)
    s = lst.accept()
    assert s is not None
    net.call_at(net.now + 20.0, lambda: s.close(net.now))
    net.run(until=60.0)
    assert net.trace is not None
    lines = "\n".join(net.trace.jsonl())
    net.trace.to_pcap(tmp)
    with open(tmp, "rb") as f:
        return lines, f.read()


def test_same_seed_same_bytes_different_seed_different_bytes(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "x.pcap"
    one = scripted_run(11, str(p))
    two = scripted_run(11, str(p))
    other = scripted_run(12, str(p))
    assert one == two
    assert one[0] != other[0] and one[1] != other[1]


def test_same_bytes_in_another_process_with_another_hash_seed(tmp_path: pathlib.Path) -> None:
    """Nothing depends on set or str hash order: a fresh interpreter with a different
    PYTHONHASHSEED produces the same JSONL and pcap."""
    here = pathlib.Path(__file__).parent
    code = ("import hashlib, sys; sys.path.insert(0, sys.argv[1]); import test_sim; "
            "lines, pcap = test_sim.scripted_run(11, sys.argv[2]); "
            "print(hashlib.sha256(lines.encode() + pcap).hexdigest())")
    digests = set()
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, str(here), str(tmp_path / "p")],
                             env={**os.environ, "PYTHONHASHSEED": hash_seed}, capture_output=True, text=True,
                             check=True, timeout=120)
        digests.add(out.stdout.strip())
    lines, pcap = scripted_run(11, str(tmp_path / "q"))
    assert digests == {hashlib.sha256(lines.encode() + pcap).hexdigest()}


def test_ipv6_hosts() -> None:
    net, a, b, _, _ = pair(v6=True)
    c, s, _ = establish(net, a, b)
    assert c.local_addr == "2001:db8::1" and s.remote_addr == "2001:db8::1"
    c.send(b"six", net.now)
    assert net.run_until(lambda: s.readable > 0, limit=1)
    assert s.receive(10, net.now) == b"six"
    assert packets(net, "send")[0].packet[0] >> 4 == 6


def test_mixed_families_on_one_network() -> None:
    net = Network(seed=3)
    a = net.add_host("A", ["10.0.0.1", "2001:db8::1"], config=LAB)
    b = net.add_host("B", ["10.0.0.2", "2001:db8::2"], config=LAB)
    net.link(a, b)
    lst = b.listen(80)
    c4 = a.connect("10.0.0.2", 80, 0.0)
    c6 = a.connect("2001:db8::2", 80, 0.0)
    assert net.run_until(lambda: lst.pending == 2, limit=1)
    assert c4.state is c6.state is State.ESTABLISHED


def test_routing_among_many_hosts() -> None:
    net = Network(seed=5, trace=Trace())
    hosts = [net.add_host(f"H{i}", f"10.0.1.{i}", config=LAB) for i in range(1, 5)]
    for h in hosts[1:]:
        net.link("H1", h.name, delay=0.001 * int(h.name[1:]))
        h.listen(80)
    conns = [hosts[0].connect(f"10.0.1.{i}", 80, 0.0) for i in range(2, 5)]
    assert net.run_until(lambda: all(c.state is State.ESTABLISHED for c in conns), limit=1)
    assert net.now == pytest.approx(2 * 0.004)  # the farthest host
    unlinked = hosts[1].connect("10.0.1.3", 80, net.now)  # H2 and H3 are not linked
    stray = hosts[1].connect("192.0.2.9", 80, net.now)  # nobody owns this address
    net.run(until=net.now + 0.5)
    assert [d.reason for d in packets(net, "drop")] == ["no route", "no route"]
    assert unlinked.state is stray.state is State.SYN_SENT


def test_isn_and_ports_repeat_per_seed() -> None:
    def first_syn(seed: int) -> tuple[int, int]:
        _, a, _, _, _ = pair(seed)
        c = a.connect("10.0.0.2", 80, 0.0)
        return c.iss, c.local_port

    assert first_syn(1) == first_syn(1)
    assert first_syn(1) != first_syn(2)


def test_bad_arguments() -> None:
    net, _, _, _, _ = pair()
    with pytest.raises(ValueError):
        net.add_host("A", "10.0.0.9")
    with pytest.raises(ValueError):
        net.add_host("C", "10.0.0.1")
    with pytest.raises(ValueError):
        net.link("A", "B")
    with pytest.raises(ValueError):
        net.partition("A", "nobody")
    with pytest.raises(ValueError):
        net.drop_nth(0)
    net.add_host("C", "10.0.0.3")
    with pytest.raises(ValueError):
        net.link("A", "C", loss=1.5)


# ---------------------------------------------------------------------------------------------
# Property: every byte exactly once, in order, whatever the network does
# ---------------------------------------------------------------------------------------------

# Retry long enough that no connection gives up under 30 % loss (a run is about delivery, not
# about R2), with a short maximum RTO so that a run does not wander far in virtual time.
ROBUST = Config.lab(r2=10_000.0, r2_syn=10_000.0, rto_max=4.0)


def transfer(seed: int, loss: float, duplicate: float, reorder: float, corrupt: float, jitter: float,
             n_a: int, n_b: int, server_waits_for_eof: bool, v6: bool, mtu: int = 1500,
             bandwidth: float | None = None, queue: int = 1000, options: bool = True,
             delayed_ack: float = 0.0, rcv_buf: int = 256 * 1024) -> None:
    """A sends ``n_a`` random bytes to B and closes; B sends ``n_b`` bytes and closes (at once,
    or after A's FIN); then every byte must have arrived exactly once and in order, both ends
    must be CLOSED without an error, and both hosts' connection tables empty."""
    rnd = random.Random(seed)
    data_a, data_b = rnd.randbytes(n_a), rnd.randbytes(n_b)
    cfg = ROBUST.with_(delayed_ack=delayed_ack, rcv_buf=rcv_buf, timestamps=options, sack=options,
                       window_scaling=options)
    net = Network(seed=seed)
    addrs = V6 if v6 else V4
    a = net.add_host("A", addrs[0], config=cfg, mtu=mtu)
    b = net.add_host("B", addrs[1], config=cfg, mtu=mtu)
    net.link(a, b, delay=0.001, jitter=jitter, loss=loss, duplicate=duplicate, reorder=reorder,
             corrupt=corrupt, mtu=mtu, bandwidth=bandwidth, queue=queue)
    lst = b.listen(80)
    c = a.connect(b.addresses[0], 80, 0.0)
    s: Connection | None = None
    got_a, got_b = bytearray(), bytearray()  # what B read from A, what A read from B
    sent_a = sent_b = 0
    eof_a = eof_b = False  # A saw B's FIN, B saw A's FIN

    def app() -> bool:
        nonlocal s, sent_a, sent_b, eof_a, eof_b
        now = net.now
        busy = False
        if s is None and (s := lst.accept()) is not None:
            lst.close(now)
            busy = True
        if c.state is State.ESTABLISHED:
            if sent_a < n_a:
                sent_a += c.send(data_a[sent_a:], now)
                busy = True
            if sent_a == n_a:
                c.close(now)  # the FIN follows the data
                busy = True
        if c.readable:
            got_b.extend(c.receive(1 << 20, now) or b"")
            busy = True
        if not eof_a and c.at_eof:
            eof_a = busy = True
        if s is not None:
            if s.state in (State.ESTABLISHED, State.CLOSE_WAIT) and sent_b < n_b:
                sent_b += s.send(data_b[sent_b:], now)
                busy = True
            if s.readable:
                got_a.extend(s.receive(1 << 20, now) or b"")
                busy = True
            if not eof_b and s.at_eof:
                eof_b = busy = True
            if sent_b == n_b and (eof_b or not server_waits_for_eof) \
                    and s.state in (State.ESTABLISHED, State.CLOSE_WAIT):
                s.close(now)
                busy = True
        return busy

    for _ in range(200_000):
        busy = app()
        if not net.step() and not busy:
            break
    else:
        raise AssertionError("the run did not settle")
    assert s is not None, "never accepted"
    assert bytes(got_a) == data_a and bytes(got_b) == data_b
    assert eof_a and eof_b
    assert c.state is State.CLOSED and s.state is State.CLOSED
    assert c.error is None and s.error is None, (c.error, s.error)
    assert not a.conns and not b.conns


def test_sack_blocks_do_not_push_a_full_segment_past_the_mtu() -> None:
    """Found by the property test: a full-sized segment that also carried SACK blocks was 12+
    octets over the MTU, dropped on every retransmission, and the transfer stalled."""
    net, a, b, _, _ = pair()
    c, s, _ = establish(net, a, b)
    net.drop_nth(1, segment_is("ACK", data=True), direction=("A", "B"))
    net.drop_nth(1, segment_is("ACK", data=True), direction=("B", "A"))
    c.send(bytes(3000), net.now)  # both ends now hold out-of-order data: SACK blocks on the
    s.send(bytes(3000), net.now)  # retransmission of their own first segment
    net.run(until=net.now + 5)
    assert s.readable == 3000 and c.readable == 3000
    assert all(len(r.packet) <= 1500 for r in packets(net, "send"))
    assert not [d for d in packets(net, "drop") if d.reason == "mtu"]


def test_window_update_after_a_lost_probe_ack_does_not_stall() -> None:
    """Found by the property test: a window update that leaves persist while the zero-window
    probe octet is still unacknowledged (its ACK was lost) must leave the retransmission timer
    covering that octet; otherwise Nagle holds the rest behind it forever."""
    net = Network(seed=0, trace=Trace())
    a = net.add_host("A", "10.0.0.1", config=LAB)
    b = net.add_host("B", "10.0.0.2", config=LAB.with_(rcv_buf=1000))
    net.link(a, b)
    c, s, _ = establish(net, a, b)
    c.send(bytes(1002), net.now)  # fills B's window of 1000; 2 octets and the FIN wait
    c.close(net.now)
    net.run(until=net.now + 0.1)
    assert s.readable == 1000 and "persist" in c.snapshot()["timers"]
    net.hold(segment_is("ACK", data=False), 1.0, direction=("B", "A"))
    assert s.receive(1000, net.now) == bytes(1000)  # B's window update: held back for 1 s
    net.flush()
    net.drop_nth(1, segment_is("ACK", data=False), direction=("B", "A"))  # the ACK of the probe
    assert net.run_until(lambda: s.state is State.CLOSE_WAIT and s.readable == 2, limit=30)
    assert s.receive(10, net.now) == bytes(2) and s.at_eof
    probe = [r for r in packets(net, "send") if r.src == "A" and len(r.parsed.seg.payload) == 1]
    assert probe and probe[0].t == pytest.approx(1.0, abs=0.01)


def test_no_ack_war_when_both_ends_sit_at_the_right_window_edge() -> None:
    """Found by a harsher property run. Each end's SND.MAX is exactly the other's right window
    edge (both filled a 100-octet window, the data was lost); Table 6 makes a zero-length segment
    there unacceptable, the ACK sent in reply is unacceptable on the other side, and so on, once
    per round trip until a retransmission timeout — and a duplicating link multiplies the chains.
    Linux accepts SEG.SEQ = RCV.NXT+RCV.WND for an empty segment and rate-limits such ACKs."""
    cfg = LAB.with_(rcv_buf=100, nodelay=True)
    net = Network(seed=0, trace=Trace())
    a = net.add_host("A", "10.0.0.1", config=cfg)
    b = net.add_host("B", "10.0.0.2", config=cfg)
    net.link(a, b)
    c, s, _ = establish(net, a, b)
    net.drop_nth(2, segment_is("ACK", data=True), direction=("A", "B"))  # A's second 50 octets
    net.drop_nth(1, segment_is("ACK", data=True), direction=("B", "A"))  # all of B's 100 octets
    c.send(b"a" * 50, net.now)
    net.flush()  # arrives; B's application does not read it, so B's window shrinks to 50
    c.send(b"b" * 50, net.now)  # lost: A's SND.MAX is now B's right edge
    s.send(b"c" * 100, net.now)  # lost: B's SND.MAX is A's right edge
    before = net.stats()["sent"]
    net.run(until=net.now + 0.5)  # before any retransmission timeout
    assert net.stats()["sent"] - before < 20


sizes = st.one_of(st.integers(0, 1000), st.integers(1000, 8000))
runs = dict(
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0.0, 0.3),
    duplicate=st.floats(0.0, 0.2),
    reorder=st.floats(0.0, 0.2),
    corrupt=st.floats(0.0, 0.1),
    jitter=st.sampled_from([0.0, 0.0005, 0.002]),
    n_a=sizes,
    n_b=sizes,
    server_waits_for_eof=st.booleans(),
    v6=st.booleans(),
    mtu=st.sampled_from([1500, 576, 9000]),
    bandwidth=st.sampled_from([None, None, 200_000.0]),
    queue=st.sampled_from([1000, 4]),
    options=st.booleans(),
    delayed_ack=st.sampled_from([0.0, 0.0, 0.2]),
    rcv_buf=st.sampled_from([256 * 1024, 256 * 1024, 4096, 1000]),
)


@settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(**runs)
def test_property_every_byte_once_in_order_and_both_ends_closed(**kw: object) -> None:
    transfer(**kw)  # type: ignore[arg-type]


@pytest.mark.soak
@settings(max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**runs)
def test_soak_every_byte_once_in_order_and_both_ends_closed(**kw: object) -> None:
    transfer(**kw)  # type: ignore[arg-type]


_OPTION = st.one_of(
    st.just(Nop()),
    st.builds(Mss, st.integers(-1, 0x10000)),
    st.builds(WindowScale, st.integers(-1, 0x100)),
    st.just(SackPermitted()),
    st.builds(Timestamps, st.integers(-1, 1 << 32), st.integers(-1, 1 << 32)),
    st.builds(Sack, st.just(((1, 2),))),
)


@given(st.lists(_OPTION, max_size=8).map(tuple))
def test_the_lab_fast_path_knows_a_syns_options_as_encoding_them_would(options: tuple[Option, ...]) -> None:
    """The twin of the lab path's option check: _syn_options_len gives a length only where
    encoding the options and parsing them back gives the same options, and then the same length."""
    fast = _syn_options_len(options)
    try:
        raw = encode_options(options)
    except (ValueError, struct.error):
        assert fast is None
        return
    if parse_options(raw) == options and fast is not None:
        assert fast == len(raw)
    if fast is not None:
        assert parse_options(raw) == options
