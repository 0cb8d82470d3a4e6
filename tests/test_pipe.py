"""The manual-clock driver :class:`synack.sim.Pipe` and its scripted peer :class:`synack.sim.Tap`:
exact times, the order of a step, zero-delay batches, the drop predicate, the limits and the
livelock guard, replacing an end, and a handshake with a synack Host played packet by packet."""

from __future__ import annotations

import pytest

from synack.core.connection import Config
from synack.core.host import Host
from synack.core.records import State
from synack.core.wire import ACK, SYN, IPPacket, Mss, Segment, build_packet
from synack.sim import Arrival, Livelock, NotReached, Pipe, PipeError, Sent, Tap

A, B = "10.0.0.1", "10.0.0.2"


def pkt(n: int, src: str = A, dst: str = B) -> bytes:
    """A small, valid IP packet told apart by its sequence number ``n``."""
    return build_packet(src, dst, Segment(40000, 80, n, None, 0, 1000))


def seqs(arrivals: list[Arrival]) -> list[tuple[float, int]]:
    return [(a.time, a.parse().seg.seq) for a in arrivals]


class Echo:
    """An endpoint that sends back every packet it receives, at once (no timers)."""

    def __init__(self) -> None:
        self.got: list[float] = []
        self._out: list[bytes] = []

    def receive(self, packet: bytes, now: float) -> None:
        self.got.append(now)
        self._out.append(packet)

    def packets_to_send(self, now: float) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        return None

    def handle_timeout(self, now: float) -> None:
        pass


class Recorder:
    """An endpoint that records what the pipe makes it do — receive, fire its timer, send —
    with one timer at ``deadline`` that sends ``pkt(99)`` when it fires. ``stuck``: the timer
    never clears (a buggy endpoint)."""

    def __init__(self, deadline: float | None = None, *, stuck: bool = False) -> None:
        self.calls: list[tuple[str, float]] = []
        self.deadline = deadline
        self.stuck = stuck
        self._out: list[bytes] = []

    def receive(self, packet: bytes, now: float) -> None:
        self.calls.append(("receive", now))

    def packets_to_send(self, now: float) -> list[bytes]:
        out, self._out = self._out, []
        if out:
            self.calls.append(("send", now))
        return out

    def next_deadline(self) -> float | None:
        return self.deadline

    def handle_timeout(self, now: float) -> None:
        self.calls.append(("timeout", now))
        if not self.stuck:
            self.deadline = None
            self._out.append(pkt(99, B, A))


# ---------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------


def test_a_packet_arrives_exactly_delay_after_it_left_each_way() -> None:
    a, b = Tap(), Tap()
    pipe = Pipe(a, b, delay=0.25, log=True)
    a.send(pkt(1))
    pipe.run(0.125)
    a.send(pkt(3))  # in flight together with the first, arriving 0.125 s after it
    pipe.run(1.0)
    b.send(pkt(2, B, A))
    pipe.run(3.0)
    assert seqs(b.take()) == [(0.25, 1), (0.375, 3)]
    assert seqs(a.take()) == [(1.25, 2)]
    assert pipe.log == [Sent(0.0, 0, pkt(1)), Sent(0.125, 0, pkt(3)), Sent(1.0, 1, pkt(2, B, A))]
    assert pipe.now == 3.0 and pipe.sent == [2, 1] and pipe.dropped == [0, 0]


def test_arrival_time_is_departure_plus_delay_to_the_last_bit() -> None:
    a, b = Tap(), Tap()
    pipe = Pipe(a, b, delay=0.001, now=0.3)
    a.send(pkt(1))
    assert pipe.run_until(lambda: b.pending > 0, 1.0) == 0.3 + 0.001
    assert b.received[0].time == 0.3 + 0.001


def test_with_zero_delay_a_packet_arrives_at_the_time_it_left() -> None:
    a, b = Tap(), Tap()
    pipe = Pipe(a, b, delay=0.0, now=7.5)
    a.send(pkt(1))
    assert pipe.step(7.5) is True
    assert seqs(b.take()) == [(7.5, 1)] and pipe.now == 7.5
    assert pipe.step(100.0) is False and pipe.now == 7.5  # nothing left: the clock stays


def test_zero_delay_packets_flushed_together_arrive_in_one_step_and_replies_in_the_next() -> None:
    a, echo = Tap(), Echo()
    pipe = Pipe(a, echo, delay=0.0, now=2.0)
    a.send(pkt(1), pkt(2))
    assert pipe.step(2.0) and echo.got == [2.0, 2.0] and a.pending == 0 and pipe.in_flight == 2
    assert pipe.step(2.0) and seqs(a.take()) == [(2.0, 1), (2.0, 2)]
    assert pipe.step(2.0) is False
    assert pipe.steps == 2 and pipe.now == 2.0 and pipe.sent == [2, 2]


def test_zero_delay_handshake_between_hosts_takes_three_steps_at_one_instant() -> None:
    a, b = Host([A], name="A", config=Config.lab()), Host([B], name="B", config=Config.lab())
    b.listen(80)
    client = a.connect(B, 80, 5.0)
    pipe = Pipe(a, b, delay=0.0, now=5.0, log=True)
    pipe.run(5.0)
    flags = [(t, side, p.seg.flags) for t, side, p in pipe.packets()]
    assert flags == [(5.0, 0, SYN), (5.0, 1, SYN | ACK), (5.0, 0, ACK)]
    assert pipe.steps == 3 and client.state is State.ESTABLISHED


def test_a_step_delivers_then_fires_timers_then_flushes() -> None:
    tap, rec = Tap(), Recorder(deadline=1.0)
    pipe = Pipe(tap, rec, delay=0.5)
    tap.send(pkt(0))  # arrives at 0.5, before the timer is due: the timer is left alone
    pipe.run(0.5)
    tap.send(pkt(1))  # leaves at 0.5, arrives at 1.0 — when the timer is due
    assert pipe.step(10.0) and pipe.now == 1.0
    assert rec.calls == [("receive", 0.5), ("receive", 1.0), ("timeout", 1.0), ("send", 1.0)]
    pipe.run(2.0)
    assert seqs(tap.take()) == [(1.5, 99)]  # the timer's packet left in the same step, at 1.0


@pytest.mark.parametrize("before", [False, True])
def test_run_before_leaves_what_is_due_at_until_so_an_injected_packet_comes_first(before: bool) -> None:
    tap, rec = Tap(), Recorder(deadline=1.0)
    pipe = Pipe(tap, rec, delay=0.0)
    if before:
        pipe.run_before(1.0)  # the timer due at 1.0 has not fired yet
    else:
        pipe.run(1.0)  # the timer due at 1.0 has fired
    assert pipe.now == 1.0
    tap.send(pkt(1))
    pipe.run(1.0)
    if before:
        assert rec.calls == [("receive", 1.0), ("timeout", 1.0), ("send", 1.0)]
    else:
        assert rec.calls == [("timeout", 1.0), ("send", 1.0), ("receive", 1.0)]


def test_run_moves_the_clock_to_until_and_settle_stops_at_the_last_event() -> None:
    a, b = Tap(), Tap()
    pipe = Pipe(a, b, delay=0.2)
    a.send(pkt(1))
    assert pipe.settle(5.0) == 0.2 and pipe.now == 0.2
    pipe.run(5.0)
    assert pipe.now == 5.0 and pipe.next_event_time() is None
    pipe.run(4.0)  # the clock never goes back
    assert pipe.now == 5.0


def test_tick_stops_an_idle_clock_so_an_application_predicate_runs() -> None:
    checked: list[float] = []

    def app() -> bool:
        checked.append(pipe.now)
        return pipe.now >= 1.2

    pipe = Pipe(Tap(), Tap(), tick=0.5)
    assert pipe.run_until(app, 10.0) == 1.5
    assert checked == [0.0, 0.5, 1.0, 1.5]


# ---------------------------------------------------------------------------------------------
# The drop predicate and the counters
# ---------------------------------------------------------------------------------------------


def test_the_drop_predicate_sees_each_packet_with_its_index_in_its_own_direction() -> None:
    seen: list[tuple[str, int, int]] = []

    def drop(p: IPPacket, idx: int) -> bool:
        seen.append((p.src, p.seg.seq, idx))
        return idx == 1

    a, b = Tap(), Tap()
    pipe = Pipe(a, b, drop=drop)
    a.send(pkt(10), pkt(11), pkt(12))
    b.send(pkt(20, B, A), pkt(21, B, A))
    pipe.run(1.0)
    a.send(pkt(13))
    pipe.run(2.0)
    assert seen == [(A, 10, 0), (A, 11, 1), (A, 12, 2), (B, 20, 0), (B, 21, 1), (A, 13, 3)]
    assert [a.parse().seg.seq for a in b.take()] == [10, 12, 13]
    assert [a.parse().seg.seq for a in a.take()] == [20]
    assert pipe.sent == [4, 2] and pipe.dropped == [1, 1]


def test_a_packet_that_does_not_parse_is_never_shown_to_drop_but_is_counted() -> None:
    a, b = Tap(), Tap()
    pipe = Pipe(a, b, drop=lambda p, idx: True)
    a.send(b"\x45garbage", pkt(1))
    pipe.run(1.0)
    assert [x.packet for x in b.received] == [b"\x45garbage"]
    assert pipe.sent == [2, 0] and pipe.dropped == [1, 0]


def test_packets_needs_the_log() -> None:
    with pytest.raises(PipeError, match="log=True"):
        Pipe(Tap(), Tap()).packets()


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="delay"):
        Pipe(Tap(), Tap(), delay=-0.001)
    with pytest.raises(ValueError, match="tick"):
        Pipe(Tap(), Tap(), tick=0.0)
    with pytest.raises(ValueError, match="ends 0 and 1"):
        Pipe(Tap(), Tap()).end(2)


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------


def test_run_until_fails_at_its_limit_with_a_clear_message() -> None:
    a, b = Host([A], name="A", config=Config.lab()), Host([B], name="B", config=Config.lab())
    client = a.connect(B, 80, 0.0)
    pipe = Pipe(a, b, drop=lambda p, idx: True)  # every SYN is lost: retransmitted at 1 s, 3 s ...
    with pytest.raises(NotReached, match=r"not reached by t=2\.5 \(stopped at t=1\.0; .*dropped 2"):
        pipe.run_until(lambda: client.state is State.ESTABLISHED, 2.5)
    assert pipe.now == 1.0  # the last step before the limit; the clock does not jump to 2.5
    assert pipe.run_until(lambda: True, 0.0) == 1.0  # a predicate that holds already: no step


def test_run_until_with_nothing_left_to_happen_fails_at_once() -> None:
    pipe = Pipe(Tap(), Tap(), now=4.0)
    with pytest.raises(NotReached, match=r"stopped at t=4\.0.*next event none"):
        pipe.run_until(lambda: False, 1e9)


def test_the_livelock_guard_stops_ends_that_answer_each_other_without_delay() -> None:
    a, b = Echo(), Echo()
    pipe = Pipe(a, b, delay=0.0, max_steps=50)
    a._out.append(pkt(1))
    with pytest.raises(Livelock, match=r"more than 50 steps at t=0\.0 without the clock moving"):
        pipe.run(1.0)
    assert pipe.steps == 51 and len(a.got) + len(b.got) == 50


def test_the_same_ping_pong_with_a_delay_is_bounded_by_time_not_by_the_guard() -> None:
    a, b = Echo(), Echo()
    pipe = Pipe(a, b, delay=0.25, max_steps=2)
    a._out.append(pkt(1))
    pipe.run(10.0)
    assert pipe.steps == 40 and b.got[:3] == [0.25, 0.75, 1.25]


def test_the_livelock_guard_stops_a_timer_that_stays_due() -> None:
    stuck = Recorder(deadline=3.0, stuck=True)
    pipe = Pipe(Tap(), stuck, max_steps=10)
    with pytest.raises(Livelock, match=r"at t=3\.0"):
        pipe.run(5.0)
    assert stuck.calls.count(("timeout", 3.0)) == 10


# ---------------------------------------------------------------------------------------------
# A scripted peer: a handshake with a synack Host, played packet by packet
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.01])
def test_tap_plays_the_peer_of_a_three_way_handshake(delay: float) -> None:
    host, peer = Host([A], name="A", config=Config.lab()), Tap()
    lst = host.listen(80)
    pipe = Pipe(host, peer, delay=delay, log=True)
    pipe.run(0.5)
    peer.send(build_packet(B, A, Segment(40000, 80, 1000, None, SYN, 65535, (Mss(1460),))))
    pipe.run_until(lambda: peer.pending > 0, 2.0)
    (synack,) = peer.take()
    seg = synack.parse().seg  # the host's checksums are right
    assert synack.time == 0.5 + 2 * delay == pipe.now
    assert pipe.packets(0)[0][0] == 0.5 + delay  # it left the moment the SYN arrived
    assert (seg.src_port, seg.dst_port, seg.flags, seg.ack) == (80, 40000, SYN | ACK, 1001)
    assert lst.pending == 0
    peer.send(build_packet(B, A, Segment(40000, 80, 1001, (seg.seq + 1) & 0xFFFFFFFF, ACK, 65535)))
    pipe.run(1.0)
    conn = lst.accept()
    assert conn is not None and conn.state is State.ESTABLISHED
    assert (conn.irs, conn.iss, conn.snd_nxt) == (1000, seg.seq, (seg.seq + 1) & 0xFFFFFFFF)
    assert peer.take() == [] and pipe.sent == [1, 2]  # the host sent nothing else


# ---------------------------------------------------------------------------------------------
# Replacing an end (crash and restart)
# ---------------------------------------------------------------------------------------------


def test_packets_in_flight_reach_the_end_that_replaced_the_old_one() -> None:
    a, old = Tap(), Tap()
    pipe = Pipe(a, old, delay=0.1)
    a.send(pkt(1))
    pipe.flush()
    new = Tap()
    pipe.b = new
    pipe.run(1.0)
    assert old.received == [] and seqs(new.take()) == [(0.1, 1)]
    assert pipe.end(1) is new


def test_a_restarted_host_resets_data_for_the_connection_it_forgot() -> None:
    a, b = Host([A], name="A", config=Config.lab()), Host([B], name="B", config=Config.lab())
    lst = b.listen(80)
    client = a.connect(B, 80, 0.0)
    pipe = Pipe(a, b, delay=0.01)
    pipe.run_until(lambda: lst.pending > 0, 1.0)  # both ends ESTABLISHED
    client.send(b"hello?", pipe.now)
    pipe.flush()  # the data is on the wire ...
    pipe.b = Host([B], name="B-restarted", config=Config.lab())  # ... when B crashes and comes back
    pipe.run(pipe.now + 0.1)
    assert client.state is State.CLOSED and pipe.b.stats()["resets_out"] == 1
    assert b.stats()["segments_in"] == 2  # the old B saw only the handshake's SYN and ACK
