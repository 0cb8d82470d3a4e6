"""The ladder model (:mod:`synack.diagram`) built from hand-made records — no simulator — and the
formatters every printer shares: options and control bits in three styles, relative sequence
numbers in two modes (:mod:`synack.core.wire`)."""

from __future__ import annotations

import re

import pytest

from synack.core.records import TRANSITIONS, Cause, ConnKey, HostNote, Note, State, StateRecord, Transition
from synack.core.wire import (
    ACK,
    CWR,
    ECE,
    FIN,
    NEAR_ISN,
    PSH,
    RST,
    SYN,
    URG,
    Eol,
    IPPacket,
    Mss,
    Nop,
    Option,
    RelativeSeq,
    Sack,
    SackPermitted,
    Segment,
    Timestamps,
    UnknownOption,
    WindowScale,
    build_packet,
    format_flags,
    format_option,
    format_tcpdump,
    parse_packet,
)
from synack.diagram import (
    ArrowFate,
    Ladder,
    LadderRecord,
    LineKind,
    ObservedState,
    Role,
    StateMark,
    build_ladder,
)
from synack.htmlview import ladder_html
from synack.render import ladder_text
from synack.trace import PacketRecord

A_END = ("10.0.0.1", 40000)
B_END = ("10.0.0.2", 80)
A_CONN: ConnKey = (A_END[0], A_END[1], B_END[0], B_END[1])
B_CONN: ConnKey = (B_END[0], B_END[1], A_END[0], A_END[1])
A_ISN = 0xFFFF_FFF0  # A's numbers wrap past 2**32 after 15 octets
B_ISN = 1000


# ---------------------------------------------------------------------------------------------
# Hand-made records
# ---------------------------------------------------------------------------------------------


class Records:
    """Records of an exchange between A (10.0.0.1:40000) and B (10.0.0.2:80), written by hand."""

    def __init__(self) -> None:
        self.records: list[LadderRecord] = []
        self.pid = 0

    def send(self, t: float, src: str, seq: int, ack: int | None = None, flags: int = 0,
             payload: bytes = b"") -> int:
        """A packet from ``src`` ("A" or "B") to the other end; returns its pid."""
        here, there = (A_END, B_END) if src == "A" else (B_END, A_END)
        if ack is not None:
            flags |= ACK
        seg = Segment(here[1], there[1], seq & 0xFFFFFFFF, None if ack is None else ack & 0xFFFFFFFF, flags,
                      65535, (), payload)
        self.pid += 1
        raw = build_packet(here[0], there[0], seg)
        self.records.append(PacketRecord(t, "send", src, "B" if src == "A" else "A", self.pid, 0, raw))
        return self.pid

    def fate(self, t: float, pid: int, kind: str, reason: str = "") -> None:
        sent = next(r for r in self.records if isinstance(r, PacketRecord) and r.pid == pid)
        self.records.append(PacketRecord(t, kind, sent.src, sent.dst, pid, 0, sent.packet, reason))

    def state(self, t: float, host: str, src: State, dst: State, event: Cause) -> None:
        conn = A_CONN if host == "A" else B_CONN
        self.records.append(StateRecord(t, host, conn, _transition(src, dst, event)))

    def observed(self, t: float, host: str, state: str, uncertain: bool = True) -> None:
        conn = A_CONN if host == "A" else B_CONN
        self.records.append(ObservedState(t, host, conn, state, uncertain))


def _transition(src: State, dst: State, event: Cause) -> Transition:
    return next(tr for tr in TRANSITIONS if (tr.src, tr.dst, tr.event) == (src, dst, event))


def handshake(*, with_b_states: bool) -> Records:
    """A's active open against B: SYN, SYN,ACK, ACK, 10 ms each way. A reports its states; B
    reports them only when asked (a packetdrill script reports none)."""
    r = Records()
    if with_b_states:
        r.records.append(HostNote(0.0, "B", Note.LISTEN, "*", 80))
    r.state(0.0, "A", State.CLOSED, State.SYN_SENT, Cause.ACTIVE_OPEN)
    syn = r.send(0.0, "A", A_ISN, flags=SYN)
    r.fate(0.01, syn, "deliver")
    if with_b_states:
        r.state(0.01, "B", State.LISTEN, State.SYN_RECEIVED, Cause.RCV_SYN)
    synack = r.send(0.01, "B", B_ISN, A_ISN + 1, SYN)
    r.fate(0.02, synack, "deliver")
    r.state(0.02, "A", State.SYN_SENT, State.ESTABLISHED, Cause.RCV_SYN_ACK)
    ack = r.send(0.02, "A", A_ISN + 1, B_ISN + 1)
    r.fate(0.03, ack, "deliver")
    if with_b_states:
        r.state(0.03, "B", State.SYN_RECEIVED, State.ESTABLISHED, Cause.RCV_ACK_OF_SYN)
    return r


def text(records: Records, *, relative: bool = True, untracked: tuple[str, ...] = ()) -> str:
    return ladder_text(build_ladder(records.records, "A", "B", relative=relative, untracked=untracked))


# ---------------------------------------------------------------------------------------------
# The ladder
# ---------------------------------------------------------------------------------------------


def test_an_end_without_states_has_a_blank_column() -> None:
    """B is a script (packetdrill): it reports no state, so its column stays blank — not CLOSED."""
    records = handshake(with_b_states=False)
    assert text(records, untracked=("B",)) == (
        "        time  TCP A                                               TCP B\n"
        " 1.    0.000  CLOSED\n"
        " 2.    0.000  SYN-SENT     -->  <SEQ=0><CTL=SYN>             -->\n"
        " 3.    0.010  ESTABLISHED  <--  <SEQ=0><ACK=1><CTL=SYN,ACK>  <--\n"
        " 4.    0.020  ESTABLISHED  -->  <SEQ=1><ACK=1><CTL=ACK>      -->\n")
    # Without saying so, an end with no TCB for the 4-tuple is CLOSED, as a simulated host is.
    assert " 2.    0.000  SYN-SENT     -->  <SEQ=0><CTL=SYN>             -->  CLOSED\n" in text(records)
    # The same handshake with B's states reported.
    assert text(handshake(with_b_states=True)) == (
        "        time  TCP A                                               TCP B\n"
        " 1.    0.000  CLOSED                                              LISTEN\n"
        " 2.    0.000  SYN-SENT     -->  <SEQ=0><CTL=SYN>             -->  SYN-RECEIVED\n"
        " 3.    0.010  ESTABLISHED  <--  <SEQ=0><ACK=1><CTL=SYN,ACK>  <--  SYN-RECEIVED\n"
        " 4.    0.020  ESTABLISHED  -->  <SEQ=1><ACK=1><CTL=ACK>      -->  ESTABLISHED\n")


def test_an_end_without_states_in_the_model_and_the_html() -> None:
    ladder = build_ladder(handshake(with_b_states=False).records, "A", "B", untracked=("B",))
    assert [ln.state_of("B") for ln in ladder.lines] == [StateMark()] * 4
    assert [str(ln.state_of("A")) for ln in ladder.lines] == [
        "CLOSED", "SYN-SENT", "ESTABLISHED", "ESTABLISHED"]
    page = ladder_html(ladder, title="a script as B")
    assert page.count('<g class="segment"') == 3
    labels = re.findall(r'<g class="(state|note)" (?:data-state="([^"]*)" )?data-host="([^"]*)"', page)
    assert labels == [("state", "SYN-SENT", "A"), ("state", "ESTABLISHED", "A")]  # and nothing for B


def test_uncertain_states_are_marked() -> None:
    """A capture: states inferred from the packets, drawn with a question mark."""
    r = Records()
    r.observed(0.0, "A", "SYN-SENT")  # it sends a SYN: it must have been asked to open
    syn = r.send(0.0, "A", A_ISN, flags=SYN)
    r.fate(0.01, syn, "deliver")
    r.observed(0.01, "B", "SYN-RECEIVED")  # it will answer with a SYN,ACK
    synack = r.send(0.01, "B", B_ISN, A_ISN + 1, SYN)
    r.fate(0.02, synack, "deliver")
    r.observed(0.02, "A", "ESTABLISHED", uncertain=False)
    assert text(r, untracked=("A", "B")) == (
        "        time  TCP A                                               TCP B\n"
        " 1.    0.000\n"
        " 2.    0.000  SYN-SENT?    -->  <SEQ=0><CTL=SYN>             -->  SYN-RECEIVED?\n"
        " 3.    0.010  ESTABLISHED  <--  <SEQ=0><ACK=1><CTL=SYN,ACK>  <--  SYN-RECEIVED?\n")
    assert str(StateMark("SYN-SENT", uncertain=True)) == "SYN-SENT?" and str(StateMark()) == ""
    page = ladder_html(build_ladder(r.records, "A", "B", untracked=("A", "B")), title="capture")
    assert 'data-state="SYN-SENT?" data-host="A"' in page and 'data-state="ESTABLISHED" data-host="A"' in page


def test_a_lost_segment() -> None:
    r = handshake(with_b_states=True)
    data = r.send(0.05, "A", A_ISN + 1, B_ISN + 1, PSH, b"hello")
    r.fate(0.05, data, "drop", "loss")
    again = r.send(1.05, "A", A_ISN + 1, B_ISN + 1, PSH, b"hello")
    r.fate(1.06, again, "drop", "corrupt: bad checksum")
    ladder = build_ladder(r.records, "A", "B", relative=True)
    lost = [a for a in ladder.arrows if a.fate is ArrowFate.LOST]
    assert [(a.index, a.reason, a.seq, a.retransmission) for a in lost] == [
        (3, "loss", 1, False), (4, "corrupt: bad checksum", 1, True)]
    assert [ln.role for ln in ladder.lines if ln.arrow in lost] == [Role.LOST, Role.LOST]
    assert ladder_text(ladder).splitlines()[-2:] == [
        " 5.    0.050  ESTABLISHED  -->  <SEQ=1><ACK=1><CTL=ACK><DATA=5>  ...  (lost)",
        " 6.    1.050  ESTABLISHED  -->  <SEQ=1><ACK=1><CTL=ACK><DATA=5>  ...  (lost: corrupt: bad checksum)"]
    page = ladder_html(ladder, title="lost")
    assert page.count('data-fate="lost" data-reason=') == 2 and "lost (loss)" in page


def test_merged_and_split_lines() -> None:
    """A's SYN is in the network while B sends its own (a simultaneous open): it is drawn twice,
    leaving and arriving. B's SYN meets nothing at A before it arrives: one line."""
    r = Records()
    r.state(0.0, "A", State.CLOSED, State.SYN_SENT, Cause.ACTIVE_OPEN)
    a_syn = r.send(0.0, "A", A_ISN, flags=SYN)
    r.state(0.005, "B", State.CLOSED, State.SYN_SENT, Cause.ACTIVE_OPEN)
    b_syn = r.send(0.005, "B", B_ISN, flags=SYN)
    r.fate(0.01, a_syn, "deliver")
    r.state(0.01, "B", State.SYN_SENT, State.SYN_RECEIVED, Cause.RCV_SYN)
    r.fate(0.015, b_syn, "deliver")
    r.state(0.015, "A", State.SYN_SENT, State.SYN_RECEIVED, Cause.RCV_SYN)
    ladder = build_ladder(r.records, "A", "B", relative=True)
    assert [(ln.kind, ln.role, ln.number) for ln in ladder.lines] == [
        (LineKind.START, None, 1), (LineKind.SEGMENT, Role.SEND, 2), (LineKind.SEGMENT, Role.BOTH, 3),
        (LineKind.SEGMENT, Role.ARRIVE, 4)]
    assert ladder_text(ladder) == (
        "        time  TCP A                                     TCP B\n"
        " 1.    0.000  CLOSED                                    CLOSED\n"
        " 2.    0.000  SYN-SENT      -->  <SEQ=0><CTL=SYN>  ...\n"
        " 3.    0.005  SYN-RECEIVED  <--  <SEQ=0><CTL=SYN>  <--  SYN-SENT\n"
        " 4.    0.010                ...  <SEQ=0><CTL=SYN>  -->  SYN-RECEIVED\n")
    # Without B's SYN in the way, A's SYN is one line.
    assert " 2.    0.000  SYN-SENT     -->  <SEQ=0><CTL=SYN>             -->  SYN-RECEIVED\n" in \
        text(handshake(with_b_states=True))


def test_the_model_is_typed_and_complete() -> None:
    ladder: Ladder = build_ladder(handshake(with_b_states=True).records, "A", "B")
    assert ladder.ends == ("A", "B") and ladder.column("B") == 1
    assert ladder.addresses == (("10.0.0.1",), ("10.0.0.2",))
    assert ladder.connections == (frozenset({A_CONN}), frozenset({B_CONN}))
    assert [(a.src, a.dst, a.sent, a.end, a.fate) for a in ladder.arrows] == [
        ("A", "B", 0.0, 0.01, ArrowFate.DELIVERED), ("B", "A", 0.01, 0.02, ArrowFate.DELIVERED),
        ("A", "B", 0.02, 0.03, ArrowFate.DELIVERED)]
    assert ladder.arrows[0].seq == A_ISN  # absolute
    assert [e.record.kind for e in ladder.events] == ["listen"] + ["state"] * 4
    assert ladder.end_time == 0.03
    with pytest.raises(ValueError):
        build_ladder([], "A", "A")


# ---------------------------------------------------------------------------------------------
# Options and control bits
# ---------------------------------------------------------------------------------------------

OPTIONS: list[tuple[Option, str, str, str]] = [
    (Mss(1460), "MSS 1460", "mss 1460", "mss 1460"),
    (WindowScale(7), "window scale 7 (multiply by 128)", "wscale 7", "wscale 7"),
    (SackPermitted(), "SACK permitted", "sackOK", "sackOK"),
    (Sack(((1, 2), (5, 9))), "SACK 1-2 5-9", "sack 2 {1:2} {5:9}", "sack 1-2 5-9"),
    (Timestamps(1, 0), "timestamps val=1 ecr=0", "TS val 1 ecr 0", "TS"),
    (Nop(), "NOP", "nop", ""),
    (Eol(), "EOL (end of option list)", "eol", "eol"),
    (Eol(b"\0\0\0"), "EOL (end of option list), then 3 bytes of padding", "eol", "eol"),
    (UnknownOption(30, b"\xab\xcd"), "unknown option kind 30 (4 bytes: abcd)", "opt-30:abcd", "opt-30"),
    (UnknownOption(31, b""), "unknown option kind 31 (2 bytes: )", "opt-31", "opt-31"),
]


@pytest.mark.parametrize(("opt", "long", "tcpdump", "short"), OPTIONS, ids=lambda v: repr(v)[:20])
def test_option_styles(opt: Option, long: str, tcpdump: str, short: str) -> None:
    assert format_option(opt) == format_option(opt, "long") == long
    assert format_option(opt, "tcpdump") == tcpdump
    assert format_option(opt, "short") == short


def test_flag_styles() -> None:
    every = FIN | SYN | RST | PSH | ACK | URG | ECE | CWR
    assert format_flags(every) == "SYN,FIN,RST,PSH,ACK,URG,ECE,CWR"
    assert format_flags(every, "figure") == "SYN,FIN,RST,URG,ACK"  # the RFC figures' <CTL=...>
    assert format_flags(every, "tcpdump") == "FSRP.UEW"
    assert format_flags(PSH | ACK, "figure") == "ACK" and format_flags(PSH | ACK) == "PSH,ACK"
    assert format_flags(RST | ACK, sep=", ") == "RST, ACK"
    assert format_flags(0) == format_flags(0, "figure") == format_flags(0, "tcpdump") == ""


# ---------------------------------------------------------------------------------------------
# Relative sequence numbers
# ---------------------------------------------------------------------------------------------

FWD = (A_END[0], A_END[1], B_END[0], B_END[1])
REV = (B_END[0], B_END[1], A_END[0], A_END[1])


def _seg(seq: int, ack: int | None = None, flags: int = 0) -> Segment:
    return Segment(A_END[1], B_END[1], seq & 0xFFFFFFFF, ack, flags | (ACK if ack is not None else 0), 100)


def test_first_seen_numbers_like_tcpdump() -> None:
    numbers = RelativeSeq("first")
    assert numbers.offset(FWD, 5) is None  # nothing seen yet: absolute
    numbers.learn(FWD, _seg(A_ISN + 3))  # a capture that starts in the middle: no SYN needed
    numbers.learn(FWD, _seg(A_ISN + 100))  # only the first one counts
    assert numbers.base(FWD) == A_ISN + 3
    assert numbers.offset(FWD, A_ISN + 3) == 0
    assert numbers.offset(FWD, (A_ISN + 3 + 20) & 0xFFFFFFFF) == 20  # past 2**32: wraps to 0x7
    assert numbers.offset(FWD, A_ISN) == (1 << 32) - 3  # below the base: as tcpdump prints it
    assert numbers.offset(FWD, A_ISN, signed=True) == -3  # or signed, to sort
    assert numbers.offset(REV, 7) is None
    numbers.learn(REV, _seg(B_ISN))
    pkt = IPPacket(4, A_END[0], B_END[0], _seg(A_ISN + 13, B_ISN + 1))
    assert numbers.numbers(pkt) == (10, 1)


def test_isn_numbers_like_the_rfc_figures() -> None:
    numbers = RelativeSeq("isn")
    numbers.learn(FWD, _seg(A_ISN + 50))  # no SYN: no base
    assert numbers.offset(FWD, A_ISN) is None
    numbers.learn(FWD, _seg(A_ISN, flags=SYN))
    assert numbers.offset(FWD, A_ISN + 1) == 1
    assert numbers.offset(FWD, (A_ISN + 0x200) & 0xFFFFFFFF) == 0x200  # wrapped past 2**32 to 0x1F0
    assert numbers.offset(FWD, A_ISN - 10) == -10  # an old duplicate, below the ISN
    assert numbers.offset(FWD, A_ISN - NEAR_ISN) == -NEAR_ISN
    assert numbers.offset(FWD, A_ISN - NEAR_ISN - 1) is None  # nobody's: shown absolute
    assert numbers.show(FWD, A_ISN - NEAR_ISN - 1) == A_ISN - NEAR_ISN - 1
    # A new incarnation on the same ports: each number reads against the nearest ISN below it.
    second = (A_ISN + 100_000) & 0xFFFFFFFF
    numbers.learn(FWD, _seg(second, flags=SYN))
    assert numbers.offset(FWD, (second + 1) & 0xFFFFFFFF) == 1
    assert numbers.offset(FWD, A_ISN + 5) == 5
    assert numbers.offset(FWD, (second - 3) & 0xFFFFFFFF) == 99_997
    # The <SEQ=0> of a RST,ACK answering a SYN is in nobody's space: shown 0.
    numbers.learn(REV, Segment(B_END[1], A_END[1], B_ISN, None, SYN, 100))
    rst = IPPacket(4, B_END[0], A_END[0], Segment(B_END[1], A_END[1], 0, (A_ISN + 1) & 0xFFFFFFFF,
                                                  RST | ACK, 0))
    assert numbers.numbers(rst) == (0, 1)


def test_isn_numbers_of_injected_packets_count_only_alone() -> None:
    numbers = RelativeSeq("isn")
    numbers.learn(FWD, _seg(A_ISN - 10, flags=SYN), injected=True)
    assert numbers.offset(FWD, A_ISN - 9) == 1  # the only ISN known
    numbers.learn(FWD, _seg(A_ISN, flags=SYN))
    assert numbers.offset(FWD, A_ISN - 9) == -9  # now read against the real one


def test_tcpdump_lines_use_the_helper() -> None:
    numbers = RelativeSeq()
    syn = IPPacket(4, A_END[0], B_END[0], _seg(A_ISN, flags=SYN))
    data = parse_packet(build_packet(A_END[0], B_END[0], Segment(A_END[1], B_END[1], (A_ISN + 1) & 0xFFFFFFFF,
                                                                 None, PSH, 100, (), b"x" * 20)))
    assert "seq 0," in format_tcpdump(syn, numbers)
    assert "seq 1:21," in format_tcpdump(data, numbers)  # 0xFFFFFFF1 + 20 wrapped: still 1:21
    assert f"seq {(A_ISN + 1) & 0xFFFFFFFF}:" in format_tcpdump(data)
