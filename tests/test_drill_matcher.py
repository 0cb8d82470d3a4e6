"""The matcher and the interpreter's timing, against a scripted fake stack: each way an outbound
packet can differ from its line, timing at the tolerance edges (absolute, percent, ranges, ``*``),
TSO-style aggregation, and packets no line was waiting for."""

from __future__ import annotations

import pytest

from synack.core.wire import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Mss,
    Nop,
    Option,
    SackPermitted,
    Segment,
    Timestamps,
    WindowScale,
    build_packet,
)
from synack.drill.calls import Call, Result
from synack.drill.commands import ShellPlan
from synack.drill.engine import FAIL, PASS, Outcome, Settings, run_script
from synack.drill.matcher import Checks, flag_bits, flag_text
from synack.drill.parser import parse

LOCAL, REMOTE = "192.168.0.1", "192.0.2.1"
STRICT = Checks(windows=True, option_values=True)
RELAXED = Checks(windows=False, option_values=False)


class Fake:
    """A stack that sends exactly the packets it was given, at their times, and answers every call
    with 0; it records what the script injects."""

    name = "fake"
    virtual = True

    def __init__(self, sends: list[tuple[float, bytes]]) -> None:
        self.t = 0.0
        self.sends = sorted(sends, key=lambda s: s[0])
        self.inbox: list[tuple[float, bytes]] = []
        self.injected: list[tuple[float, bytes]] = []

    def now(self) -> float:
        return self.t

    def advance(self, limit: float, *, inclusive: bool, busy: bool) -> bool:
        if not self.sends:
            return False
        t = self.sends[0][0]
        if t > limit or (not inclusive and t >= limit):
            return False
        self.t = max(self.t, t)
        self.inbox.append(self.sends.pop(0))
        return True

    def move_to(self, t: float) -> None:
        self.t = max(self.t, t)

    def inject(self, packet: bytes) -> None:
        self.injected.append((self.t, packet))

    def take(self) -> list[tuple[float, bytes]]:
        out, self.inbox = self.inbox, []
        return out

    def call(self, call: Call, retry: bool) -> Result | None:
        return Result(3 if call.op == "socket" else 0)

    def wake_time(self, call: Call) -> float | None:
        return None

    def tcp_info(self, fd: int) -> dict[str, int]:
        return {"tcpi_state": 1}


def pkt(flags: int, seq: int, ack: int | None = None, *, win: int = 1000, opts: tuple[Option, ...] = (),
        n: int = 0, urg: int = 0, sport: int = 8080, dport: int = 45678, src: str = LOCAL,
        dst: str = REMOTE, raw_ack: int = 0) -> bytes:
    return build_packet(src, dst, Segment(sport, dport, seq, ack, flags, win, opts, bytes(n), urg=urg,
                                          raw_ack=raw_ack))


def run(text: str, sends: list[tuple[float, bytes]], checks: Checks = STRICT, **settings: object) -> Outcome:
    script = parse(text)
    s = Settings(checks=checks)
    for k, v in settings.items():
        setattr(s, k, v)
    return run_script(script, Fake(sends), s, ShellPlan())


# An outbound SYN,ACK teaches the local ISN (5000 here): later lines count from it.
SYNACK = "0 > S. 0:0(0) ack 1\n"
SYNACK_PKT = (0.0, pkt(SYN | ACK, 5000, 1))


def one(line: str, packet: bytes, at: float = 0.0, checks: Checks = STRICT) -> Outcome:
    return run(SYNACK + line, [SYNACK_PKT, (at, packet)], checks)


def test_flag_spellings_round_trip() -> None:
    for text in ("S", "S.", ".", "P.", "F.", "R", "R.", "FP.", "FSRP.UEW"):
        assert flag_text(flag_bits(text)) == text
    assert flag_bits("-") == 0 and flag_text(0) == "-"


def test_an_exact_match_passes() -> None:
    out = one("+0 > P. 1:101(100) ack 1 win 1000 <nop,nop,TS val 7 ecr 9>",
              pkt(PSH | ACK, 5001, 1, n=100, opts=(Nop(), Nop(), Timestamps(12345, 9))))
    assert out.verdict == PASS, out.message


@pytest.mark.parametrize(("line", "packet", "words"), [
    ("+0 > P. 1:101(100) ack 1", pkt(ACK, 5001, 1, n=100), "flags ., expected P."),
    ("+0 > . 1:1(0) ack 1", pkt(ACK, 5002, 1), "sequence number 2, expected 1"),
    ("+0 > . 1:1(0) ack 7", pkt(ACK, 5001, 1), "ack 1, expected 7"),
    ("+0 > R 1:1(0)", pkt(RST, 5001, None, raw_ack=3), "ack field 3, expected 0 (the ACK bit is off)"),
    ("+0 > . 1:101(100) ack 1", pkt(ACK, 5001, 1, n=50), "payload length 50 in 1 segment(s), expected 100"),
    ("+0 > . 1:51(50) ack 1", pkt(ACK, 5001, 1, n=100), "payload length 100, expected 50"),
    ("+0 > . 1:1(0) ack 1 win 500", pkt(ACK, 5001, 1, win=1000), "window 1000, expected 500"),
    ("+0 > U. 1:11(10) ack 1 urg 4", pkt(ACK | 0x20, 5001, 1, n=10, urg=5), "urgent pointer 5, expected 4"),
    ("+0 > . 1:1(0) ack 1", pkt(ACK, 5001, 1, opts=(Nop(), Nop(), Timestamps(1, 2))), "expected none"),
    ("+0 > . 1:1(0) ack 1 <nop,nop,TS val 1 ecr 2>", pkt(ACK, 5001, 1), "options no options, expected"),
    ("+0 > . 1:1(0) ack 1 <nop,nop,TS val 1 ecr 2>", pkt(ACK, 5001, 1, opts=(Nop(), Nop(), Timestamps(1, 3))),
     "ecr 3"),
    ("+0 > S. 0:0(0) ack 1 <mss 1460,sackOK>", pkt(SYN | ACK, 5000, 1, opts=(SackPermitted(), Mss(1460))),
     "expected <mss 1460,sackOK>"),
    ("+0 > S. 0:0(0) ack 1 <mss 1460>", pkt(SYN | ACK, 5000, 1, opts=(Mss(1400),)), "options <mss 1400>"),
    ("+0 > . 1:1(0) ack 1", pkt(ACK, 5001, 1, sport=9999), "ports 9999>45678, expected 8080>45678"),
    ("+0 > . 1:1(0) ack 1", pkt(ACK, 5001, 1, src="192.168.0.9"), "addresses 192.168.0.9 > 192.0.2.1"),
])
def test_each_way_a_packet_can_differ(line: str, packet: bytes, words: str) -> None:
    out = one(line, packet)
    assert out.verdict == FAIL and words in out.message, out.message
    assert out.line == 2 and out.expected == line and "at 0.000" in out.happened


def test_a_bad_checksum_is_a_difference() -> None:
    raw = bytearray(pkt(ACK, 5001, 1))
    raw[36] ^= 0xFF  # a byte of the TCP checksum field (20-byte IP header + 16)
    out = one("+0 > . 1:1(0) ack 1", bytes(raw))
    assert out.verdict == FAIL and "bad TCP checksum" in out.message


def test_ts_val_is_never_compared() -> None:
    out = one("+0 > . 1:1(0) ack 1 <nop,nop,TS val 1 ecr 2>", pkt(ACK, 5001, 1, opts=(Nop(), Nop(),
                                                                                 Timestamps(999, 2))))
    assert out.verdict == PASS


def test_relaxed_ignores_window_and_option_values_but_not_presence() -> None:
    synack = pkt(SYN | ACK, 5000, 1, win=29200, opts=(Mss(1400), Nop(), WindowScale(9)))
    line = "+0 > S. 0:0(0) ack 1 win 65535 <mss 1460,nop,wscale 7>"
    assert run(line.replace("+0", "0"), [(0.0, synack)], RELAXED).verdict == PASS
    assert run(line.replace("+0", "0"), [(0.0, synack)], STRICT).verdict == FAIL
    missing = run("0 > S. 0:0(0) ack 1 <mss 1460,sackOK>", [(0.0, synack)], RELAXED)
    assert missing.verdict == FAIL and "sackOK missing" in missing.message
    flags = run("0 > S 0:0(0) <...>", [(0.0, synack)], RELAXED)
    assert flags.verdict == FAIL and "flags S., expected S" in flags.message


def test_options_not_checked_with_ellipsis() -> None:
    packet = pkt(ACK, 5001, 1, opts=(Nop(), Nop(), Timestamps(1, 2)))
    assert one("+0 > . 1:1(0) ack 1 <...>", packet).verdict == PASS


# -- timing ----------------------------------------------------------------------------------------


def timed(line: str, at: float, **settings: object) -> Outcome:
    """``line`` after a call at 0.09 (so that an absolute 0.1 has the 4 ms floor as its tolerance:
    12.5 % of 10 ms is less)."""
    return run("0 close(3) = 0\n0.09 close(3) = 0\n" + line, [(at, pkt(ACK, 0, 1))], **settings)


@pytest.mark.parametrize(("at", "verdict"), [(0.1, PASS), (0.104, PASS), (0.096, PASS), (0.104001, FAIL),
                                             (0.095999, FAIL)])
def test_tolerance_usecs_at_the_edges(at: float, verdict: str) -> None:
    assert timed("0.1 > . 0:0(0) ack 1", at).verdict == verdict


@pytest.mark.parametrize(("at", "verdict"), [(1.2149, PASS), (0.9651, PASS), (1.216, FAIL), (0.964, FAIL)])
def test_tolerance_percent_of_the_gap_since_the_previous_event(at: float, verdict: str) -> None:
    assert timed("+1 > . 0:0(0) ack 1", at).verdict == verdict  # 1.09 +- 12.5 % of 1 s


def test_tolerance_options_change_the_edges() -> None:
    assert timed("0.1 > . 0:0(0) ack 1", 0.109, tolerance_usecs=10000).verdict == PASS
    assert timed("+1 > . 0:0(0) ack 1", 1.33, tolerance_percent=25.0).verdict == PASS


def test_messages_name_the_expected_time_and_what_came() -> None:
    late = timed("0.1 > . 0:0(0) ack 1", 0.2)
    assert late.message == "expected packet by 0.104; nothing was sent"
    assert late.happened == "nothing by 0.104 (the next packet: > . 0:0(0) ack 1 win 1000 at 0.200)"
    early = timed("0.1 > . 0:0(0) ack 1", 0.093)
    assert "packet sent at 0.093, expected at 0.100 (tolerance 4 ms)" in early.message


@pytest.mark.parametrize(("at", "verdict"), [(0.3, PASS), (0.5, PASS), (0.274, PASS), (0.526, PASS),
                                             (0.2735, FAIL), (0.5265, FAIL)])
def test_a_range_with_its_tolerance(at: float, verdict: str) -> None:
    assert timed("0.3~0.5 > . 0:0(0) ack 1", at).verdict == verdict  # 12.5 % of 0.21 s: 26.25 ms


def test_any_time_waits_as_long_as_it_takes() -> None:
    assert timed("* > . 0:0(0) ack 1", 400.0).verdict == PASS


def test_relative_times_count_from_when_the_previous_event_happened() -> None:
    # The packet came 0.05 late, within the percent tolerance; the next line counts from it.
    out = run("0 close(3) = 0\n+1 > . 0:0(0) ack 1\n+0.5 > . 0:0(0) ack 1\n",
              [(1.05, pkt(ACK, 0, 1)), (1.55, pkt(ACK, 0, 1))])
    assert out.verdict == PASS, out.message


def test_consecutive_inbound_packets_are_anchored_to_script_time() -> None:
    fake = Fake([])
    script = parse("0 < S 0:0(0) win 1\n+0.1 < . 1:1(0) ack 1 win 1\n+0.1 < . 1:1(0) ack 1 win 1\n")
    assert run_script(script, fake, Settings(checks=STRICT), ShellPlan()).verdict == PASS
    assert [round(t, 6) for t, _ in fake.injected] == [0.0, 0.1, 0.2]


# -- TSO-style aggregation -------------------------------------------------------------------------


def pieces(*parts: tuple[int, int, int]) -> list[tuple[float, bytes]]:
    return [SYNACK_PKT] + [(0.0, pkt(f, 5000 + s, 1, n=n)) for s, n, f in parts]


def test_contiguous_segments_add_up_to_one_large_expected_segment() -> None:
    out = run(SYNACK + "+0 > P. 1:2001(2000) ack 1\n", pieces((1, 1000, ACK), (1001, 1000, PSH | ACK)))
    assert out.verdict == PASS, out.message
    assert out.observations[-1].text.endswith("(+1 more)")


def test_strict_segments_turns_aggregation_off() -> None:
    out = run(SYNACK + "+0 > P. 1:2001(2000) ack 1\n", pieces((1, 1000, ACK), (1001, 1000, PSH | ACK)),
              strict_segments=True)
    assert out.verdict == FAIL and "payload length 1000, expected 2000" in out.message


def test_aggregation_needs_contiguous_pieces_without_push_in_the_middle() -> None:
    gap = run(SYNACK + "+0 > P. 1:2001(2000) ack 1\n", pieces((1, 1000, ACK), (1101, 900, PSH | ACK)))
    assert gap.verdict == FAIL and "does not continue it" in gap.message
    push = run(SYNACK + "+0 > P. 1:2001(2000) ack 1\n", pieces((1, 1000, PSH | ACK), (1001, 1000, PSH | ACK)))
    assert push.verdict == FAIL
    short = run(SYNACK + "+0 > P. 1:3001(3000) ack 1\n", pieces((1, 1000, ACK), (1001, 1000, PSH | ACK)))
    assert short.verdict == FAIL and "payload length 2000 in 2 segment(s), expected 3000" in short.message


# -- packets nobody expected -----------------------------------------------------------------------


def test_a_packet_before_an_inbound_line_is_unexpected() -> None:
    out = run("0 close(3) = 0\n0.5 < . 1:1(0) ack 1 win 1\n", [(0.2, pkt(FIN | ACK, 0, 1))])
    assert out.verdict == FAIL and out.line == 2 and "unexpected packet at 0.200" in out.message
    assert out.happened.startswith("> F. 0:0(0) ack 1")


def test_a_packet_within_the_tolerance_of_the_next_line_waits_for_a_later_outbound_line() -> None:
    out = run("0 close(3) = 0\n0.2 < . 1:1(0) ack 1 win 1\n+0 > . 0:0(0) ack 1\n", [(0.198, pkt(ACK, 0, 1))])
    assert out.verdict == PASS, out.message


def test_a_packet_after_the_last_line_is_unexpected() -> None:
    out = run("0 close(3) = 0\n", [(0.0, pkt(ACK, 0, 1))])
    assert out.verdict == FAIL and "after the last line of the script" in out.message


def test_inbound_packets_are_built_from_the_line() -> None:
    fake = Fake([SYNACK_PKT])
    script = parse(SYNACK + "+0 < P. 1:11(10) ack 1 win 300 urg 2 <nop,nop,TS val 5 ecr 0,sack 3:7>\n")
    assert run_script(script, fake, Settings(checks=STRICT), ShellPlan()).verdict == PASS
    from synack.core.wire import Sack, parse_packet

    seg = parse_packet(fake.injected[0][1]).seg
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack) == (45678, 8080, 1, 5001)
    assert (seg.window, seg.urg) == (300, 2)
    assert seg.flags == PSH | ACK and seg.payload == bytes(10)
    assert seg.option(Sack) == Sack(((5003, 5007),))  # SACK blocks count in the local space
