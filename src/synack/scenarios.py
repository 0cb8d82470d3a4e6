"""The textbook scenarios of TCP connection management, run on the simulated network and explained.

Each scenario is a short script against the public API of the simulator (:mod:`synack.sim`) and
the core (:mod:`synack.core.host`, :mod:`synack.core.connection`): two hosts, ``A`` (10.0.0.1, usually the
client) and ``B`` (10.0.0.2, usually the server), joined by a link with 10 ms of delay, using the
lab configuration (:meth:`~synack.core.connection.Config.lab`: no delayed ACK, MSL 1 s unless
``msl`` says otherwise). Nothing is canned: the diagram is drawn from what the hosts actually did.
A run is deterministic for a given ``seed`` (it sets the hosts' ISN secrets and ephemeral ports).

Every scenario returns a :class:`ScenarioResult`: the trace, the two host names, the final states,
what the applications saw, and a plain-language explanation of what happened and why it matters,
as the seed articles explain it.

``synack demo [SCENARIO]`` runs one (``lifecycle`` by default) and prints the sequence diagram,
the state timeline, the final states and the explanation; ``--list`` lists them.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Final

from synack.core.connection import Config, Connection, RemoteError, TcpError
from synack.core.host import AddressInUse, Host, Listener
from synack.core.records import Cause, ConnKey, State, Transition
from synack.core.wire import SYN, Mss, Segment, build_packet
from synack.render import sequence_diagram, timeline
from synack.sim import Network, segment_is
from synack.trace import NoteRecord, Trace

__all__ = [
    "SCENARIOS",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "add_parser",
    "run_scenario",
]

A_ADDR: Final = "10.0.0.1"
B_ADDR: Final = "10.0.0.2"
DELAY: Final = 0.01
_MASK: Final = 0xFFFFFFFF


class ScenarioError(RuntimeError):
    """A scenario's script did not see what it waited for (a bug in the core or the script)."""


@dataclass(frozen=True)
class ScenarioResult:
    """What a scenario did: the trace of the run, the hosts drawn left (TCP A) and right (TCP B),
    the final state of each connection the story follows, what the applications saw, and why it
    matters."""

    name: str
    title: str
    trace: Trace
    left: str
    right: str
    final: dict[str, str]
    outcome: tuple[str, ...]
    explanation: str
    seed: int = 0
    msl: float = 1.0

    def diagram(self, *, relative: bool = False) -> str:
        return sequence_diagram(self.trace, self.left, self.right, relative=relative)

    def timeline(self) -> str:
        return timeline(self.trace, (self.left, self.right))

    def explanation_text(self) -> str:
        """The explanation as plain paragraphs separated by blank lines."""
        return "\n\n".join(" ".join(para.split()) for para in self.explanation.split("\n\n") if para.strip())

    def final_text(self) -> str:
        return "Final states: " + ", ".join(f"{who} {state}" for who, state in self.final.items())

    def report(self, *, relative: bool = False) -> str:
        """The text ``synack demo`` prints."""
        numbers = "relative" if relative else "absolute"
        out = [
            f"synack demo {self.name}: {self.title}",
            f"seed {self.seed}, MSL {self.msl:g} s (TIME-WAIT lasts {2 * self.msl:g} s), link delay "
            f"{DELAY * 1000:g} ms, {numbers} sequence numbers",
            "",
            self.diagram(relative=relative).rstrip("\n"),
            "",
            "States over time (virtual seconds):",
            self.timeline().rstrip("\n"),
            "",
            self.final_text(),
        ]
        if self.outcome:
            out += ["", "What the applications saw:"]
            out += [textwrap.fill(line, 100, initial_indent="  - ", subsequent_indent="    ")
                    for line in self.outcome]
        out += ["", "Why it matters:"]
        for para in self.explanation_text().split("\n\n"):
            out.append(textwrap.fill(para, 100, initial_indent="  ", subsequent_indent="  "))
            out.append("")
        return "\n".join(out).rstrip("\n") + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "result", "scenario": self.name, "title": self.title, "seed": self.seed,
                "msl": self.msl, "left": self.left, "right": self.right, "final": dict(self.final),
                "outcome": list(self.outcome), "explanation": self.explanation_text()}


# ---------------------------------------------------------------------------------------------
# The laboratory every scenario runs in
# ---------------------------------------------------------------------------------------------


class _Lab:
    """Hosts A and B joined by one link, a trace, and small helpers for the scripts."""

    def __init__(self, seed: int, msl: float, *, a_config: Config | None = None,
                 b_config: Config | None = None) -> None:
        self.seed = seed
        self.msl = msl
        self.trace = Trace()
        self.outcome: list[str] = []
        self.net = Network(seed=seed, trace=self.trace)
        base = Config.lab(msl=msl)
        self.net.add_host("A", A_ADDR, config=a_config or base)
        self.net.add_host("B", B_ADDR, config=b_config or base)
        self.net.link("A", "B", delay=DELAY)

    @property
    def a(self) -> Host:
        return self.net.host("A")

    @property
    def b(self) -> Host:
        return self.net.host("B")

    @property
    def now(self) -> float:
        return self.net.now

    def until(self, what: str, predicate: Callable[[], bool], limit: float = 120.0) -> None:
        if not self.net.run_until(predicate, limit=limit):
            raise ScenarioError(f"{what}: did not happen within {limit:g} virtual seconds")

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass (the applications do nothing meanwhile)."""
        self.net.run(until=self.net.now + seconds)

    def settle(self) -> None:
        """Run until nothing is left to happen (every timer has fired)."""
        self.net.run(max_events=100_000)
        if self.net.next_event_time() is not None:
            raise ScenarioError("the run does not settle")

    def say(self, text: str, host: str = "") -> None:
        """A comment line in the diagram, at this instant."""
        self.trace.append(NoteRecord(self.net.now, "comment", host, text))

    def saw(self, text: str) -> None:
        self.outcome.append(text)

    def open(self, port: int = 80, *, reuseaddr: bool = False) -> tuple[Connection, Connection, Listener]:
        """B listens (with SO_REUSEADDR if asked), A connects: the three-way handshake; returns
        (A's, B's, B's listener)."""
        lst = self.b.listen(port, now=self.now, reuseaddr=reuseaddr)
        c = self.a.connect(B_ADDR, port, self.now)
        self.until("the handshake", lambda: lst.pending > 0 and c.state is State.ESTABLISHED)
        s = lst.accept()
        assert s is not None
        return c, s, lst

    def read(self, conn: Connection, who: str, n: int) -> bytes:
        """The application ``who`` waits for ``n`` octets and reads them."""
        self.until(f"{who} receives {n} octets", lambda: conn.readable >= n)
        data = conn.receive(n, self.now)
        assert data is not None
        return data

    def result(self, name: str, final: dict[str, str], explanation: str) -> ScenarioResult:
        self.trace.append(NoteRecord(self.net.now, "end", "", "end of the scenario"))
        return ScenarioResult(name, _TITLES[name], self.trace, "A", "B", final, tuple(self.outcome),
                              explanation, self.seed, self.msl)


def _err(exc: BaseException) -> str:
    """An error as the socket API reports it (``ConnectionResetError: [Errno 104] ...``)."""
    if isinstance(exc, TcpError):
        from synack.sockets import to_oserror

        exc = to_oserror(exc)
    return f"{type(exc).__name__}: {exc}"


def _recv_error(conn: Connection, now: float) -> str:
    """What recv() reports on a connection that failed."""
    try:
        data = conn.receive(100, now)
    except (TcpError, OSError) as exc:
        return _err(exc)
    return f"recv() returned {data!r}"


def _state(conn: Connection | None) -> str:
    return "CLOSED" if conn is None else conn.state.value


# ---------------------------------------------------------------------------------------------
# The scenarios
# ---------------------------------------------------------------------------------------------


def lifecycle(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """Handshake, data both ways, half-close, close, TIME-WAIT expiry."""
    lab = _Lab(seed, msl)
    c, s, _ = lab.open()
    lab.wait(0.1)
    c.send(b"hello", lab.now)
    lab.saw(f"B read {lab.read(s, 'B', 5)!r}")
    lab.wait(0.1)
    s.send(b"world", lab.now)
    lab.saw(f"A read {lab.read(c, 'A', 5)!r}")
    lab.wait(0.1)
    c.close(lab.now)  # A has nothing more to send: shutdown(SHUT_WR)
    lab.until("B sees the end of A's data", lambda: s.at_eof)
    lab.saw(f"B's recv() returned {s.receive(100, lab.now)!r}: end of stream, A has closed its side")
    lab.wait(0.1)
    s.send(b"bye", lab.now)  # B may still send: the connection is only half closed
    lab.saw(f"A, already in {c.state}, still read {lab.read(c, 'A', 3)!r}")
    lab.wait(0.1)
    s.close(lab.now)
    lab.settle()
    return lab.result("lifecycle", {"A": _state(c), "B": _state(s)}, """
        Everything a connection goes through. The three-way handshake: A's SYN carries its initial
        sequence number x and consumes one number, so B acknowledges x+1; B's SYN,ACK carries y and A
        acknowledges y+1. Data moves the sequence numbers by its length; a pure ACK moves nothing.

        A closes first: its FIN, which also consumes one sequence number, says "I have no more to
        send", not "go away". A is in FIN-WAIT-2 and B in CLOSE-WAIT, and B keeps sending: A still
        receives and acknowledges (the half-close). When B has finished it sends its own FIN from
        LAST-ACK, A acknowledges it and enters TIME-WAIT.

        A, the side that closed first, waits 2×MSL in TIME-WAIT before the connection is gone: if
        its last ACK were lost, B would retransmit its FIN and A must still be there to acknowledge
        it again; and after 2×MSL every segment of this connection has died out of the network, so
        none can be mistaken for part of a new connection between the same two ports.""")


def handshake(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """The three-way handshake, then A's first data (RFC 9293 Figure 6)."""
    lab = _Lab(seed, msl)
    lst = lab.b.listen(80, now=lab.now)
    c = lab.a.connect(B_ADDR, 80, lab.now)
    lab.until("A reaches ESTABLISHED", lambda: c.state is State.ESTABLISHED)
    c.send(b"hello", lab.now)  # A may send as soon as it is ESTABLISHED
    lab.until("B accepts", lambda: lst.pending > 0)
    s = lst.accept()
    assert s is not None
    lab.saw(f"B's accept() returned the connection; B read {lab.read(s, 'B', 5)!r}")
    lab.settle()
    return lab.result("handshake", {"A": _state(c), "B": _state(s)}, """
        A chooses an initial sequence number x and sends SYN, seq=x; the SYN occupies one sequence
        number. B, listening, answers SYN,ACK with its own initial number y and ack=x+1: "I have
        everything up to x, send x+1 next". A acknowledges with ack=y+1 and is ESTABLISHED; when this
        third segment arrives B is ESTABLISHED too. A's first data carries seq=x+1, the same number
        as the ACK before it, because an ACK occupies no sequence space (otherwise we would be
        ACKing ACKs).

        Why three segments: each side must learn that the other received its initial sequence
        number. After two segments only A knows that both directions work; the third tells B that
        A really asked for this connection and got B's SYN — see why-three-way.""")


def close(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """The four-segment close: FIN, ACK, FIN, ACK, then TIME-WAIT (RFC 9293 Figure 12)."""
    lab = _Lab(seed, msl)
    c, s, _ = lab.open()
    lab.wait(0.1)
    c.close(lab.now)
    lab.until("B sees the end of A's data", lambda: s.at_eof)
    lab.saw(f"B's recv() returned {s.receive(100, lab.now)!r} (end of stream); B finishes its work, "
            "then closes")
    lab.wait(0.1)
    s.close(lab.now)
    lab.settle()
    return lab.result("close", {"A": _state(c), "B": _state(s)}, """
        A closes: FIN, seq=u. The FIN consumes one sequence number, so B's ACK says u+1. A is in
        FIN-WAIT-2, waiting for B's FIN; B is in CLOSE-WAIT, waiting for its own application to
        close. When it does, B sends FIN, seq=w, with the same ack=u+1, and enters LAST-ACK; A
        answers ack=w+1, seq=u+1, and B is CLOSED.

        A is not: it waits 2×MSL in TIME-WAIT. Its ACK could be lost, and then B retransmits its FIN
        — A must still be there to acknowledge it (see lost-final-ack). And after 2×MSL no segment of
        this connection can still be in the network to be taken for part of a new one with the same
        addresses and ports.""")


def close_fin_ack(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """The three-segment close: B's ACK and FIN travel together (seed 001's windump trace)."""
    lab = _Lab(seed, msl, b_config=Config.lab(msl=msl, delayed_ack=0.2))
    c, s, _ = lab.open()
    lab.wait(0.1)
    c.close(lab.now)
    lab.until("B sees the end of A's data", lambda: s.at_eof)
    s.close(lab.now)  # B's application closes as soon as recv() returns b"": its ACK has not left
    lab.saw("B's recv() returned b'' and B closed at once, while its ACK of A's FIN was still "
            "held back by delayed ACK")
    lab.settle()
    return lab.result("close-fin-ack", {"A": _state(c), "B": _state(s)}, """
        The close is often three segments, not four. B delays its ACKs a little (as every real
        stack does) in the hope that something else will carry them; here its application closes as
        soon as it reads the end of A's data, so B's FIN leaves while the ACK is still waiting and
        carries it: FIN,ACK with ack=u+1. This is seed 001's windump trace: "F 1:1(0) ack 1",
        "F 1:1(0) ack 2", ". ack 2".

        A's FIN is acknowledged by the same segment that brings B's FIN, so A passes through
        FIN-WAIT-2 for no time at all and enters TIME-WAIT at once. B went from CLOSE-WAIT to
        LAST-ACK in the same instant. The four-segment exchange is what happens when the passive side
        has more to do (or send) before it closes.""")


def half_close(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """Half-close: B keeps sending after A's FIN; A receives and acknowledges in FIN-WAIT-2."""
    lab = _Lab(seed, msl)
    c, s, _ = lab.open()
    lab.wait(0.1)
    c.close(lab.now)  # shutdown(SHUT_WR): A will send no more, but still reads
    lab.until("B sees the end of A's data", lambda: s.at_eof)
    lab.wait(0.1)
    s.send(b"more data\n", lab.now)
    lab.saw(f"A, in {c.state}, read {lab.read(c, 'A', 10)!r} after its own FIN")
    lab.wait(0.1)
    s.close(lab.now)
    lab.settle()
    return lab.result("half-close", {"A": _state(c), "B": _state(s)}, """
        TCP is full duplex, and each direction is closed on its own. A's FIN only says that A will
        send nothing more; it does not stop B. B, in CLOSE-WAIT, sends 10 more octets; A, in
        FIN-WAIT-2, receives them, hands them to its application and acknowledges them, exactly as
        it would when ESTABLISHED. Only B's own FIN closes the second direction.

        This is what shutdown(SHUT_WR) gives an application — "I have sent my whole request, now
        send me the whole answer" — and why a FIN is no signal to stop reading.""")


def simultaneous_open(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """Both ends send SYN at once: SYN-SENT → SYN-RECEIVED → ESTABLISHED (RFC 9293 Figure 7)."""
    lab = _Lab(seed, msl)
    lab.net.hold(segment_is("SYN"), 0.01, direction=("A", "B"))  # A's SYN is delayed, as drawn in the RFC
    c = lab.a.connect(B_ADDR, 6000, lab.now, local_port=5000)
    lab.wait(0.005)  # B's SYN leaves before A's arrives, and arrives first: the two SYNs cross
    d = lab.b.connect(A_ADDR, 5000, lab.now, local_port=6000)
    lab.until("both ends reach ESTABLISHED",
              lambda: c.state is State.ESTABLISHED and d.state is State.ESTABLISHED)
    lab.settle()
    return lab.result("simultaneous-open", {"A": _state(c), "B": _state(d)}, """
        Both ends open actively, each towards the other's port, at nearly the same time; their SYNs
        cross in the network. Each receives a SYN while in SYN-SENT, so each answers with SYN,ACK
        (repeating its own SYN and acknowledging the other's) and moves to SYN-RECEIVED; each SYN,ACK
        then acknowledges the other's SYN, and both reach ESTABLISHED. One connection results, not
        two: a connection is named by its two ends, and both ends name the same pair.

        Four segments instead of three, and every state on the way is a real one: SYN-SENT,
        SYN-RECEIVED, ESTABLISHED at both ends.""")


def simultaneous_close(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """Both ends close at once: FIN-WAIT-1 → CLOSING → TIME-WAIT at both (RFC 9293 Figure 13)."""
    lab = _Lab(seed, msl)
    c, s, _ = lab.open()
    lab.wait(0.1)
    s.close(lab.now)
    lab.net.flush()
    c.close(lab.now)  # the same instant: the two FINs cross
    lab.settle()
    return lab.result("simultaneous-close", {"A": _state(c), "B": _state(s)}, """
        Both applications close at the same moment and both FINs are in the network at once. Each
        end, in FIN-WAIT-1, receives the other's FIN before the ACK of its own: it acknowledges it
        and enters CLOSING — both FINs sent, the other's received, waiting only for the ACK of its
        own. When that ACK arrives it enters TIME-WAIT.

        Both ends closed "first", so both wait 2×MSL in TIME-WAIT. CLOSING is the state this
        scenario exists to show: it is only reached when the FINs cross.""")


def _old_syn(host: Host, local_port: int, seq: int) -> bytes:
    """An old SYN of A's for port 80 of B, as it left A in an earlier connection."""
    seg = Segment(local_port, 80, seq & _MASK, None, SYN, 65535, (Mss(1460),))
    return build_packet(host.addresses[0], B_ADDR, seg)


def old_duplicate_syn(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """An old duplicate SYN arrives during the handshake: RST, LISTEN, then the real handshake
    (RFC 9293 Figure 8)."""
    lab = _Lab(seed, msl)
    lst = lab.b.listen(80, now=lab.now)
    lab.net.hold(segment_is("SYN"), 0.05, direction=("A", "B"))  # A's SYN lingers in a router
    c = lab.a.connect(B_ADDR, 80, lab.now)
    lab.net.flush()
    lab.net.inject("A", _old_syn(lab.a, c.local_port, c.iss - 10), label="(old duplicate)")
    lab.say("an old SYN of an earlier connection on the same ports (10 below A's ISN) reaches B first")
    lab.until("the handshake", lambda: lst.pending > 0 and c.state is State.ESTABLISHED)
    s = lst.accept()
    lab.settle()
    lab.saw(f"A's connect() succeeded; B's accept() returned one connection, the real one (from port "
            f"{c.local_port}, acknowledging A's ISN + 1)")
    return lab.result("old-duplicate-syn", {"A": _state(c), "B": _state(s)}, """
        A connects, but its SYN is delayed in the network. Meanwhile an old duplicate SYN from an
        earlier connection between the same two ports reaches B. B cannot tell it is old, so it
        answers normally: SYN,ACK acknowledging the old sequence number + 1. A, in SYN-SENT, sees an
        ACK for a number it never sent (not its ISN + 1) and answers with RST, whose sequence number
        is that ACK field — the one value B will accept. B, in SYN-RECEIVED after a passive open,
        returns to LISTEN; nothing reaches its application.

        Then A's real SYN arrives and the handshake completes normally. This is the principal
        reason for the three-way handshake: the third step lets the side that started the
        connection reject a handshake it did not start.""")


def half_open_crash(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """A crashes and reconnects from the same port: B's stale connection answers the new SYN with
    an ACK, A resets it, then the new handshake completes (RFC 9293 Figure 9)."""
    lab = _Lab(seed, msl)
    c, s, lst = lab.open()
    port = c.local_port
    c.send(b"hello", lab.now)
    lab.read(s, "B", 5)
    lab.wait(0.1)
    lab.net.crash("A")
    lab.wait(0.5)
    lab.net.restart("A")
    lab.say("A's application starts again and opens the connection again, from the same port", "A")
    c2 = lab.a.connect(B_ADDR, 80, lab.now, local_port=port)
    lab.until("B's stale connection is reset", lambda: s.state is State.CLOSED)
    lab.saw(f"B's old connection: {_recv_error(s, lab.now)}")
    lab.until("the new handshake", lambda: lst.pending > 0 and c2.state is State.ESTABLISHED)
    s2 = lst.accept()
    lab.settle()
    lab.saw("A's new connect() succeeded after one SYN retransmission; B accepted the new connection")
    return lab.result("half-open-crash",
                      {"A": _state(c2), "B": _state(s2), "B's old connection": _state(s)}, """
        A crashes and forgets its connection; B still has it, ESTABLISHED: a half-open connection.
        When A comes back and opens again from the same port, its SYN lands on B's old connection.
        B, synchronized, finds the SYN outside its window and answers with an ACK of what it
        expects next — a number from the old connection. A, in SYN-SENT, sees that this ACK
        acknowledges nothing it sent and answers with RST, seq = that ACK field. The RST is exactly
        at B's RCV.NXT, so B accepts it and aborts the old connection: its application learns that
        the connection was reset.

        A's SYN is unanswered, so A retransmits it after its retransmission timeout; now B has no
        connection for these ports, its listener takes the SYN and the new connection is made. Half
        an open connection is found and cleaned up as soon as either side sends something.""")


def half_open_data(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """A crashed; B sends data into the half-open connection, gets RST and aborts (RFC 9293
    Figure 10)."""
    lab = _Lab(seed, msl)
    _, s, _ = lab.open()
    lab.wait(0.1)
    lab.net.crash("A")
    lab.wait(0.5)
    lab.net.restart("A")
    lab.wait(0.1)
    s.send(b"0123456789", lab.now)
    lab.until("B's connection fails", lambda: s.state is State.CLOSED)
    lab.saw(f"B's send() was accepted, then B's next call failed: {_recv_error(s, lab.now)}")
    lab.settle()
    assert not list(lab.a.connections())
    return lab.result("half-open-data", {"A": "CLOSED", "B": _state(s)}, """
        A crashed and came back with no memory of the connection; B, which never heard of the crash,
        still has it ESTABLISHED and sends 10 octets on it. The segment reaches A's TCP, which has no
        connection for it: a segment for no connection is answered with RST, and since the segment
        carried an ACK the RST takes its sequence number from that ACK field. That is exactly the
        number B expects next, so the RST is acceptable: B aborts and tells its application
        "connection reset by peer".

        A half-open connection cannot survive traffic: the first segment into it is answered with a
        reset. Without traffic it can survive forever — see keepalive-dead-peer.""")


def lost_final_ack(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """A's last ACK is lost: B retransmits its FIN from LAST-ACK, A acknowledges it again from
    TIME-WAIT and restarts the 2×MSL timer."""
    lab = _Lab(seed, msl)
    c, s, _ = lab.open()
    lab.wait(0.1)
    c.close(lab.now)
    lab.until("B sees the end of A's data", lambda: s.at_eof)
    lab.wait(0.1)
    lab.net.drop_nth(1, segment_is("ACK", data=False), direction=("A", "B"))  # A's final ACK
    s.close(lab.now)
    lab.settle()
    return lab.result("lost-final-ack", {"A": _state(c), "B": _state(s)}, """
        This is the first reason TIME-WAIT exists. A's last ACK, the fourth segment of the close,
        is lost. B, in LAST-ACK, does not know whether its FIN arrived, so when its retransmission
        timer expires it sends the FIN again. A is still in TIME-WAIT, still remembers the
        connection, and acknowledges the FIN again; B is then CLOSED. A restarts its 2×MSL timer
        whenever a retransmitted FIN arrives, so it stays until the network has been quiet for 2×MSL.

        Had A already forgotten the connection, the retransmitted FIN would have been answered with
        RST, and B's application would have seen an error for a connection that had in fact ended
        well.""")


def time_wait_bind(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """The server closes first and keeps port 80 in TIME-WAIT: bind() fails with EADDRINUSE, and
    succeeds with SO_REUSEADDR — which the server set on its first start too (Linux lets a
    socket bind beside a TIME-WAIT connection only when both set it)."""
    lab = _Lab(seed, msl)
    c, s, lst = lab.open(reuseaddr=True)
    lab.wait(0.1)
    lab.say("the server program stops: it closes the connection (B closes first) and its listener", "B")
    s.close(lab.now)
    lst.close(lab.now)
    lab.until("A sees the end of B's data", lambda: c.at_eof)
    lab.wait(0.1)
    c.close(lab.now)
    lab.until("B's connection reaches TIME-WAIT", lambda: s.state is State.TIME_WAIT)
    lab.wait(0.1)
    try:
        lab.b.bind("", 80)
    except AddressInUse as exc:
        lab.say("the server restarts: bind(*:80) fails with EADDRINUSE: port 80 has a connection in "
                "TIME-WAIT", "B")
        lab.saw(f"B: bind(('', 80)) -> {_err(exc)}")
    else:
        raise ScenarioError("bind() succeeded while port 80 was in TIME-WAIT")
    res = lab.b.bind("", 80, reuseaddr=True)
    lst2 = lab.b.listen(80, reservation=res, now=lab.now)
    lab.say("with SO_REUSEADDR, bind(*:80) succeeds: B listens again beside the TIME-WAIT connection",
            "B")
    lab.saw("B: bind(('', 80)) with SO_REUSEADDR -> ok; listen() -> ok")
    c2 = lab.a.connect(B_ADDR, 80, lab.now)
    lab.until("the new handshake", lambda: lst2.pending > 0 and c2.state is State.ESTABLISHED)
    s2 = lst2.accept()
    lab.saw(f"A connected again (from port {c2.local_port}) while B's old connection was still in "
            f"TIME-WAIT")
    lab.settle()
    return lab.result("time-wait-bind",
                      {"A": _state(c2), "B": _state(s2), "B's first connection": _state(s)}, """
        The side that closes first keeps the connection in TIME-WAIT for 2×MSL (2 to 4 minutes on
        real systems), and while it does, the local port is in use. Here that side is the server:
        when it is restarted, bind() on its well-known port fails with EADDRINUSE until TIME-WAIT is
        over — seed 001's "the server cannot restart within 2MSL, because bind fails".

        SO_REUSEADDR lets a socket bind a port whose only other user is a connection in TIME-WAIT
        — on Linux only if that connection's socket had set it too, as this server did on its
        first start; and it never lets two sockets listen on the same port. The new listener works at
        once, while the old connection finishes its TIME-WAIT beside it; TIME-WAIT still protects
        the old connection's exact pair of addresses and ports.""")


def linger_abort(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """close() with SO_LINGER {on, 0}: RST at once, unsent data thrown away, no TIME-WAIT."""
    lab = _Lab(seed, msl)
    c, s, _ = lab.open()
    lab.wait(0.1)
    queued = c.send(b"x" * 1000, lab.now)
    c.abort(lab.now, why="close() with SO_LINGER {on, 0}")  # what such a close() does
    lab.saw(f"A: {queued} octets were queued by send(); close() with SO_LINGER {{1, 0}} threw them "
            "away and returned at once")
    lab.until("B's connection is reset", lambda: s.state is State.CLOSED)
    lab.saw(f"B: {_recv_error(s, lab.now)}")
    lab.settle()
    return lab.result("linger-abort", {"A": _state(c), "B": _state(s)}, """
        With SO_LINGER set to {on, linger 0}, close() does not close gracefully: TCP discards what
        is still waiting in the send buffer (here 1000 octets that never left), sends a single RST
        and deletes the connection. There is no FIN, no ACK of it, and no TIME-WAIT: A is CLOSED at
        once and its port is free again. B's application learns "connection reset by peer".

        Seed 001 mentions this as the way to avoid TIME-WAIT, and warns that it is unsafe: the
        peer may lose data, and nothing protects a new connection on the same ports from old
        segments of this one. A normal close() delivers all queued data before the FIN.""")


def close_wait_leak(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """B's application never closes: B sits in CLOSE-WAIT for good; A leaves FIN-WAIT-2 only
    through its FIN-WAIT-2 timeout."""
    fin_wait_2 = 5.0
    lab = _Lab(seed, msl, a_config=Config.lab(msl=msl, fin_wait_2_timeout=fin_wait_2))
    c, s, _ = lab.open()
    lab.wait(0.1)
    c.close(lab.now, discard_input=True)  # A's application closes its socket and goes away
    lab.until("B sees the end of A's data", lambda: s.at_eof)
    lab.saw(f"B's recv() returned {s.receive(100, lab.now)!r}, but B's application never calls close()")
    lab.settle()
    lab.wait(1.0)
    lab.saw(f"A's connection ended after {fin_wait_2:g} s in FIN-WAIT-2 (its FIN-WAIT-2 timeout); "
            f"B's is still in {s.state}")
    return lab.result("close-wait-leak", {"A": _state(c), "B": _state(s)}, """
        CLOSE-WAIT means "the peer has closed, and we are waiting for our own application to
        close". TCP cannot leave it on its own: only the application's close() sends our FIN. If the
        application never calls close() — it forgot, or never checks for recv() returning 0 — the
        connection stays in CLOSE-WAIT, with its buffers and its port, for as long as the process
        lives. On a server every such client adds one more: CLOSE-WAIT connections piling up in
        netstat are a bug in the application, never in TCP.

        The other end waits in FIN-WAIT-2 for a FIN that never comes. The RFC sets no limit; real
        stacks (Linux: tcp_fin_timeout, 60 s) give up on a FIN-WAIT-2 connection whose socket is
        already closed, as A does here after 5 s, silently.""")


def keepalive_dead_peer(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """Keep-alive probes find that the peer has vanished (cable pulled): ETIMEDOUT."""
    cfg = Config.lab(msl=msl, keepalive=True, keepidle=5.0, keepintvl=1.0, keepcnt=3)
    lab = _Lab(seed, msl, a_config=cfg)
    c, s, _ = lab.open()
    lab.wait(6.0 - lab.now)  # the first probe, at idle + 5 s, is answered
    lab.net.partition("A", "B")  # someone pulls the cable
    lab.until("A gives up", lambda: c.state is State.CLOSED, limit=60.0)
    lab.saw(f"A: {_recv_error(c, lab.now)} (after idle 5 s, then 3 unanswered probes 1 s apart)")
    lab.wait(1.0)
    lab.saw(f"B, without keep-alive, still believes the connection is {s.state}")
    return lab.result("keepalive-dead-peer", {"A": _state(c), "B": _state(s)}, """
        An idle connection sends nothing, so if the peer disappears — the cable is pulled, the
        machine is switched off — neither end notices: seed 001 observes that Linux then considers
        the connection valid forever. SO_KEEPALIVE changes that. After TCP_KEEPIDLE seconds without
        a segment from the peer, A sends a probe: an ACK with a sequence number one below what it
        should send next, which any live TCP must answer with an ACK. The first probe here is
        answered. After the cable is pulled, TCP_KEEPCNT probes sent TCP_KEEPINTVL apart go
        unanswered, and A gives up with ETIMEDOUT.

        B has no keep-alive, so it keeps its half of a connection that no longer exists: half-open,
        until it tries to send.""")


def syn_retransmit(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """A's SYN is lost twice: it is retransmitted after 1 s, then 2 s (exponential backoff)."""
    lab = _Lab(seed, msl)
    lst = lab.b.listen(80, now=lab.now)
    lab.net.drop_if(segment_is("SYN"), count=2, direction=("A", "B"))
    c = lab.a.connect(B_ADDR, 80, lab.now)
    lab.until("A reaches ESTABLISHED", lambda: c.state is State.ESTABLISHED)
    lab.saw(f"A's connect() returned after {lab.now:.2f} s of virtual time instead of one round trip "
            f"({2 * DELAY:g} s)")
    lab.until("B accepts", lambda: lst.pending > 0)
    s = lst.accept()
    lab.settle()
    return lab.result("syn-retransmit", {"A": _state(c), "B": _state(s)}, """
        A SYN can be lost like any segment, and it occupies a sequence number, so TCP retransmits it
        when its retransmission timer expires: first after the initial RTO of 1 second, then after
        twice that, doubling each time (exponential backoff), for at least 3 minutes before giving
        up. Every copy carries the same initial sequence number. The third SYN gets through and the
        handshake completes as usual.

        No round-trip time is measured from the retransmitted SYN (Karn's rule: it would be unclear
        which copy the SYN,ACK answers).""")


def connect_refused(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """A connects to a port where nothing listens: RST,ACK, ConnectionRefusedError."""
    lab = _Lab(seed, msl)
    c = lab.a.connect(B_ADDR, 80, lab.now)
    lab.until("A's connect() fails", lambda: c.state is State.CLOSED)
    assert isinstance(c.error, RemoteError)
    lab.saw(f"A: connect() -> {_err(c.error)}")
    lab.settle()
    return lab.result("connect-refused", {"A": _state(c), "B": "CLOSED"}, """
        Nothing listens on B's port 80, so B's TCP has no connection for A's SYN. A segment for no
        connection is answered with RST; since the SYN had no ACK, the RST carries seq=0 and
        ack = the SYN's sequence number + 1 (the SYN's length), with the ACK bit on, so that A can
        tell it answers its SYN. A, in SYN-SENT, accepts it and reports "connection refused".

        A refused connection costs one round trip. A host that is switched off, or a firewall that
        drops the SYN, answers nothing, and connect() only fails when the SYN retransmissions time
        out.""")


# The broken rule's arrow: SYN-RECEIVED -> ESTABLISHED on the SYN itself, no ACK awaited. Not in
# synack.core.records.TRANSITIONS; only the two-way connection below declares it.
_TWO_WAY: Final = Transition(State.SYN_RECEIVED, State.ESTABLISHED, Cause.RCV_SYN, main=False)


class _TwoWayConnection(Connection):
    """A TCB whose transition table has the two-way handshake's arrow."""

    __slots__ = ()
    transitions: ClassVar[Mapping[tuple[State, State, Cause], Transition]] = MappingProxyType(
        {**Connection.transitions, (_TWO_WAY.src, _TWO_WAY.dst, _TWO_WAY.event): _TWO_WAY})


class _TwoWayHost(Host):
    """A deliberately broken TCP for why-three-way: its listener treats a SYN alone as establishing
    the connection (a two-way handshake) and hands it to the application at once. Not TCP."""

    connection_class = _TwoWayConnection

    def _listener_input(self, lst: Listener, key: ConnKey, src: str, seg: Segment, now: float) -> None:
        super()._listener_input(lst, key, src, seg, now)
        conn = self.conns.get(key)
        if conn is not None and conn.state is State.SYN_RECEIVED:
            # The broken rule: no ACK of our SYN is awaited. SYN-RECEIVED -> ESTABLISHED is an arrow
            # of the state diagram; this host takes it without the event that should trigger it.
            conn._set_state(_TWO_WAY, "rcv SYN (two-way handshake: no ACK awaited)")
            conn._established(now)
            self._after(conn)


def why_three_way(seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """An old duplicate SYN reaches B twice: TCP's three-way handshake refuses it; a broken two-way
    handshake opens a connection nobody asked for."""
    lab = _Lab(seed, msl)
    lst = lab.b.listen(80, now=lab.now)
    old_port = 40000
    key = (A_ADDR, old_port, B_ADDR, 80)
    old = _old_syn(lab.a, old_port, lab.a.isn(key, lab.now - 60.0))  # A's SYN of a minute ago
    lab.say("run 1: B runs TCP. A SYN of a connection A made a minute ago, stuck in the network, reaches B")
    lab.net.inject("A", old, label="(old duplicate)")
    lab.settle()
    three = lst.accept()
    lab.saw("B with the three-way handshake: accept() returned " + (
        "nothing: the old SYN never became a connection" if three is None else "a connection (!)"))
    lab.wait(1.0)
    b = lab.b
    two_way = _TwoWayHost(b.addresses, name=b.name, config=b.config, isn_key=b.isn_key, mtu=b.mtu,
                          tracer=b.tracer)
    lab.net.hosts["B"] = two_way  # B's TCP is replaced by the broken one
    lst2 = two_way.listen(80, now=lab.now)
    lab.say("run 2: the same old SYN reaches a B with a two-way handshake (broken on purpose: a SYN "
            "alone opens a connection)")
    lab.net.inject("A", old, label="(old duplicate)")
    lab.until("the two-way B accepts", lambda: lst2.pending > 0, limit=1.0)
    bogus = lst2.accept()
    assert bogus is not None
    lab.saw(f"B with a two-way handshake: accept() returned a connection from {A_ADDR}:{old_port}, "
            f"{bogus.state}, that A never asked for")
    lab.settle()
    lab.saw(f"the bogus connection ended only because A answered the SYN,ACK with RST: {bogus.state}"
            f" ({_recv_error(bogus, lab.now)})")
    return lab.result("why-three-way", {"A": "CLOSED", "B (three-way)": "LISTEN" if three is None
                                        else _state(three), "B (two-way)": _state(bogus)}, """
        The argument every seed makes. A connection request from long ago — a SYN that lingered in
        some router while A retried, connected, and finished — finally reaches B. B cannot tell it
        from a new request, so it answers SYN,ACK. With the three-way handshake that is all: B is in
        SYN-RECEIVED, its application knows nothing, and B waits for the third segment, the ACK that
        would prove A really wants this connection. A has no such connection and answers the
        SYN,ACK with RST; B returns to LISTEN. The stale request is refused at no cost.

        With a two-way handshake "as soon as B sends its confirmation, the connection is
        established": B's application accepts a connection that nobody asked for and waits for data
        that will never come, holding its resources. Here A's RST still kills it one round trip
        later, but only because A was there to object; had A been switched off, or its RST lost,
        nothing would ever tell B. The third segment is what lets the initiator say "that was not
        me" before anything is opened.""")


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

ScenarioFn = Callable[[int, float], ScenarioResult]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    run: ScenarioFn


def _entry(name: str, fn: ScenarioFn, summary: str) -> tuple[str, Scenario]:
    return name, Scenario(name, summary, fn)


SCENARIOS: Final[dict[str, Scenario]] = dict((
    _entry("lifecycle", lifecycle, "a whole connection: handshake, data both ways, half-close, close, "
           "TIME-WAIT expiry"),
    _entry("handshake", handshake, "the three-way handshake (ack = x+1, y+1), then the first data"),
    _entry("close", close, "the four-segment close: FIN, ACK, FIN, ACK, then 2×MSL in TIME-WAIT"),
    _entry("close-fin-ack", close_fin_ack, "the three-segment close: the passive side's ACK rides on "
           "its FIN"),
    _entry("half-close", half_close, "data still flows from B after A's FIN; A receives it in "
           "FIN-WAIT-2"),
    _entry("simultaneous-open", simultaneous_open, "both SYNs cross: SYN-SENT -> SYN-RECEIVED -> "
           "ESTABLISHED at both ends"),
    _entry("simultaneous-close", simultaneous_close, "both FINs cross: FIN-WAIT-1 -> CLOSING -> "
           "TIME-WAIT at both ends"),
    _entry("old-duplicate-syn", old_duplicate_syn, "an old SYN during the handshake: RST, back to "
           "LISTEN, then the real handshake"),
    _entry("half-open-crash", half_open_crash, "A reboots and reconnects: B's stale connection is "
           "found and reset"),
    _entry("half-open-data", half_open_data, "B sends into a connection A forgot in a crash: RST, "
           "B aborts"),
    _entry("lost-final-ack", lost_final_ack, "the last ACK is lost: FIN again from LAST-ACK, ACK "
           "again from TIME-WAIT"),
    _entry("time-wait-bind", time_wait_bind, "a port in TIME-WAIT: bind() fails with EADDRINUSE, "
           "works with SO_REUSEADDR"),
    _entry("linger-abort", linger_abort, "close() with SO_LINGER 0: RST, unsent data discarded, no "
           "TIME-WAIT"),
    _entry("close-wait-leak", close_wait_leak, "an application that never closes: CLOSE-WAIT for "
           "good, FIN-WAIT-2 until a timeout"),
    _entry("keepalive-dead-peer", keepalive_dead_peer, "the cable is pulled: keep-alive probes go "
           "unanswered, ETIMEDOUT"),
    _entry("syn-retransmit", syn_retransmit, "lost SYNs are sent again after 1 s, then 2 s "
           "(exponential backoff)"),
    _entry("connect-refused", connect_refused, "nothing listens: RST,ACK <SEQ=0><ACK=x+1>, "
           "ConnectionRefusedError"),
    _entry("why-three-way", why_three_way, "an old SYN meets the three-way handshake, then a broken "
           "two-way one"),
))

_TITLES: Final = {
    "lifecycle": "the life of a TCP connection",
    "handshake": "the three-way handshake",
    "close": "closing: FIN, ACK, FIN, ACK",
    "close-fin-ack": "closing in three segments",
    "half-close": "the half-close",
    "simultaneous-open": "simultaneous open",
    "simultaneous-close": "simultaneous close",
    "old-duplicate-syn": "recovery from an old duplicate SYN",
    "half-open-crash": "half-open connection discovery after a crash",
    "half-open-data": "data into a half-open connection",
    "lost-final-ack": "the last ACK is lost",
    "time-wait-bind": "TIME-WAIT, bind() and SO_REUSEADDR",
    "linger-abort": "close() with SO_LINGER 0",
    "close-wait-leak": "an application that never closes",
    "keepalive-dead-peer": "keep-alive finds a dead peer",
    "syn-retransmit": "a lost SYN, retransmitted",
    "connect-refused": "connection refused",
    "why-three-way": "why three segments: an old SYN against two handshakes",
}


def run_scenario(name: str, *, seed: int = 0, msl: float = 1.0) -> ScenarioResult:
    """Run the scenario called ``name``; KeyError for an unknown name."""
    return SCENARIOS[name].run(seed, msl)


# ---------------------------------------------------------------------------------------------
# synack demo
# ---------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="run a textbook TCP scenario on the simulated network and explain it",
        description=(
            "Run a named scenario of TCP connection management on a simulated network with a "
            "virtual clock, and print an RFC-style sequence diagram (both ends' states beside "
            "every segment), each end's state timeline, the final states and an explanation. "
            "Without SCENARIO, runs 'lifecycle'. Runs are deterministic for a given --seed."
        ),
    )
    p.add_argument("scenario", nargs="?", default="lifecycle", metavar="SCENARIO",
                   help="the scenario to run (see --list); default: lifecycle")
    p.add_argument("--list", action="store_true", help="list the scenarios with a one-line description")
    p.add_argument("--pcap", metavar="FILE", help="also write the packets to FILE (pcap, virtual timestamps)")
    p.add_argument("--html", metavar="FILE", help="also write an HTML/SVG diagram to FILE")
    p.add_argument("--json", action="store_true",
                   help="print the trace as JSON lines, then one line with the result")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="the simulation's seed (default 0)")
    p.add_argument("--relative", action="store_true",
                   help="sequence numbers relative to each side's initial sequence number")
    p.add_argument("--msl", type=float, default=1.0, metavar="SECONDS",
                   help="maximum segment lifetime; TIME-WAIT lasts twice this (default 1)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    if args.list:
        width = max(len(n) for n in SCENARIOS)
        for sc in SCENARIOS.values():
            print(f"{sc.name:<{width}}  {sc.summary}")
        return 0
    name: str = args.scenario
    if name not in SCENARIOS:
        print(f"synack demo: unknown scenario {name!r} (synack demo --list shows them all)", file=sys.stderr)
        return 2
    if not args.msl >= 0:
        print(f"synack demo: --msl must be a non-negative number of seconds, not {args.msl}", file=sys.stderr)
        return 2
    try:
        result = run_scenario(name, seed=args.seed, msl=args.msl)
    except ScenarioError as exc:
        print(f"synack demo {name}: {exc}", file=sys.stderr)
        return 1
    if args.pcap:
        n = result.trace.to_pcap(args.pcap)
        print(f"synack demo: wrote {n} packets to {args.pcap}", file=sys.stderr)
    if args.html:
        try:
            from synack import htmlview
        except ImportError:
            print("synack demo: --html needs synack.htmlview, which this installation does not have",
                  file=sys.stderr)
            return 1
        page = htmlview.render_html(result.trace, result.left, result.right, title=result.title,
                                    explanation=result.explanation_text(),
                                    relative=args.relative)
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(page)
        print(f"synack demo: wrote {args.html}", file=sys.stderr)
    if args.json:
        for line in result.trace.jsonl():
            print(line)
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        print(result.report(relative=args.relative), end="")
    return 0
