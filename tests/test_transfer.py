"""Level 2: two hosts joined by a :class:`synack.sim.Pipe` move 10 MB each way, with a half-close
and a close, under deterministic loss patterns. Every byte must arrive exactly once and in order,
both ends must end CLOSED after TIME-WAIT, and both hosts' connection tables must be empty."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from synack.core.connection import Config, Connection
from synack.core.host import Host
from synack.core.records import State
from synack.core.wire import ACK, FIN, SYN, IPPacket
from synack.sim import DropFn, Pipe

MB = 1_000_000
A, B = "10.0.0.1", "10.0.0.2"
CFG = Config.lab(snd_buf=256 * 1024, rcv_buf=256 * 1024)
CHUNK = 64 * 1024
LIMIT = 5_000.0  # virtual seconds; every-7th-drop needs about 1,100 (one RTO per loss)


@dataclass
class Outcome:
    a_got: bytes
    b_got: bytes
    a_sent: bytes
    b_sent: bytes
    client: Connection
    server: Connection
    pipe: Pipe[Host, Host]
    control: list[tuple[float, str, int, int, int | None]]  # (time, src, flags, seq, ack) of SYN/FIN
    b_eof_state: State | None = None
    b_sent_after_fin: int = 0
    a_read_in_fin_wait_2: int = 0


def _payload(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def transfer(size: int, drop: DropFn | None = None, *, tail: int = MB // 2,
             read_max: int | None = None, config: Config = CFG) -> Outcome:
    """A (client) sends ``size`` bytes and closes (half-close). B (server) sends all but the last
    ``tail`` bytes at once, the rest only after it has read A's FIN (so that data flows into
    FIN-WAIT-2), then closes. ``read_max`` limits what each application reads per event (a slow
    reader: the windows close). Returns what each side received."""
    a = Host([A], name="A", config=config)
    b = Host([B], name="B", config=config)
    control: list[tuple[float, str, int, int, int | None]] = []
    fin_from: set[str] = set()

    def watch(pkt: IPPacket, idx: int) -> bool:
        """Apply ``drop`` and log every SYN and FIN, and every pure ACK once both sides sent FIN."""
        seg = pkt.seg
        lost = drop is not None and drop(pkt, idx)
        if seg.flags & FIN:
            fin_from.add(pkt.src)
        if seg.flags & (SYN | FIN) or (len(fin_from) == 2 and seg.flags == ACK and not seg.payload):
            control.append((pipe.now, pkt.src + (" lost" if lost else ""), seg.flags, seg.seq, seg.ack))
        return lost

    pipe = Pipe(a, b, drop=watch, tick=0.01 if read_max is not None else None)
    lst = b.listen(80, backlog=4)
    client = a.connect(B, 80, pipe.now)
    acc: list[Connection] = []

    def accepted() -> bool:
        if not acc and lst.pending:
            conn = lst.accept()
            assert conn is not None
            acc.append(conn)
        return bool(acc) and client.state is State.ESTABLISHED

    pipe.run_until(accepted, LIMIT)
    server = acc[0]
    a_data = _payload(1, size)
    b_data = _payload(2, size)
    got_a = bytearray()
    got_b = bytearray()
    out = Outcome(b"", b"", a_data, b_data, client, server, pipe, control)
    pos = {"a": 0, "b": 0}
    closed = {"a": False, "b": False}
    eof = {"a": False, "b": False}

    def pump() -> bool:
        now = pipe.now
        # A: send everything, then close.
        if pos["a"] < size:
            pos["a"] += client.send(a_data[pos["a"]:pos["a"] + CHUNK], now)
        elif not closed["a"]:
            client.close(now)
            closed["a"] = True
        # B: hold back the tail until A's FIN has been read.
        b_limit = size if eof["b"] else size - tail
        if pos["b"] < b_limit:
            n = server.send(b_data[pos["b"]:min(pos["b"] + CHUNK, b_limit)], now)
            pos["b"] += n
            if eof["b"]:
                out.b_sent_after_fin += n
        elif eof["b"] and pos["b"] == size and not closed["b"]:
            server.close(now)
            closed["b"] = True
        for conn, got, side in ((client, got_a, "a"), (server, got_b, "b")):
            budget = read_max if read_max is not None else 1 << 62
            while not eof[side] and budget > 0:
                chunk = conn.receive(min(budget, 1 << 20), now)
                if chunk is None:
                    break
                if chunk == b"":
                    eof[side] = True
                    if side == "b":
                        out.b_eof_state = server.state
                    break
                got += chunk
                budget -= len(chunk)
                if side == "a" and client.state is State.FIN_WAIT_2:
                    out.a_read_in_fin_wait_2 += len(chunk)
        return closed["a"] and closed["b"] and eof["a"] and eof["b"]

    done = pipe.run_until(pump, LIMIT)
    pipe.run_until(lambda: not a.conns and not b.conns, done + 60)
    out.a_got = bytes(got_a)
    out.b_got = bytes(got_b)
    return out


def check(out: Outcome, *, half_close: bool = True) -> None:
    assert len(out.b_got) == len(out.a_sent)
    assert hashlib.sha256(out.b_got).digest() == hashlib.sha256(out.a_sent).digest()
    assert out.b_got == out.a_sent
    assert len(out.a_got) == len(out.b_sent)
    assert hashlib.sha256(out.a_got).digest() == hashlib.sha256(out.b_sent).digest()
    assert out.a_got == out.b_sent
    assert out.client.state is State.CLOSED and out.client.error is None
    assert out.server.state is State.CLOSED and out.server.error is None
    assert out.pipe.a.conns == {} and out.pipe.b.conns == {}
    assert out.pipe.a.stats()["connections"] == 0 and out.pipe.b.stats()["connections"] == 0
    if not half_close:
        return
    # A, the active closer, left last: its TIME-WAIT lasted 2 × MSL from its final ACK (L10).
    t_final_ack, src, flags, _, _ = out.control[-1]
    assert (src, flags) == (A, ACK)
    assert out.pipe.now == pytest.approx(t_final_ack + 2 * CFG.msl)
    # The half-close really happened: B read A's FIN in CLOSE-WAIT and sent on; A read that data
    # in FIN-WAIT-2.
    assert out.b_eof_state is State.CLOSE_WAIT
    assert out.b_sent_after_fin > 0
    assert out.a_read_in_fin_wait_2 > 0


def _first(pred: Callable[[IPPacket], bool]) -> DropFn:
    """Drop the first packet (either direction) for which ``pred`` holds, and nothing else."""
    done = [False]

    def drop(pkt: IPPacket, idx: int) -> bool:
        if not done[0] and pred(pkt):
            done[0] = True
            return True
        return False

    return drop


def _final_ack() -> DropFn:
    """Drop the ACK of the second FIN (the last segment of the close: the LAST-ACK side must
    retransmit its FIN and the TIME-WAIT side acknowledge it again)."""
    fins: dict[str, int] = {}
    done = [False]

    def drop(pkt: IPPacket, idx: int) -> bool:
        seg = pkt.seg
        if seg.flags & FIN and pkt.src not in fins:
            fins[pkt.src] = (seg.seq + len(seg.payload)) & 0xFFFFFFFF
        if done[0] or len(fins) < 2:
            return False
        last_src = list(fins)[1]
        if pkt.dst == last_src and seg.flags == ACK and seg.ack == (fins[last_src] + 1) & 0xFFFFFFFF:
            done[0] = True
            return True
        return False

    return drop


def _log(out: Outcome) -> list[tuple[str, str]]:
    """The SYN/FIN/final-ACK log as (sender, kind) pairs."""
    names = {SYN: "SYN", SYN | ACK: "SYN,ACK", ACK: "ACK"}
    return [(src, names.get(flags, "FIN" if flags & FIN else hex(flags)))
            for _, src, flags, _, _ in out.control]


def test_no_loss_10mb_both_ways() -> None:
    out = transfer(10 * MB)
    check(out)
    assert out.pipe.dropped == [0, 0]
    assert out.pipe.a.stats()["retransmissions"] == 0
    assert out.pipe.b.stats()["retransmissions"] == 0
    assert _log(out) == [(A, "SYN"), (B, "SYN,ACK"), (A, "FIN"), (B, "FIN"), (A, "ACK")]


def test_every_7th_segment_dropped_10mb_both_ways() -> None:
    out = transfer(10 * MB, lambda pkt, idx: idx % 7 == 6)
    check(out)
    assert out.pipe.dropped[0] > 1000 and out.pipe.dropped[1] > 1000
    assert out.pipe.a.stats()["retransmissions"] > 0 and out.pipe.b.stats()["retransmissions"] > 0


def test_syn_lost_10mb_both_ways() -> None:
    out = transfer(10 * MB, _first(lambda p: bool(p.seg.flags & SYN)))
    check(out)
    assert out.pipe.dropped == [1, 0]
    assert out.pipe.a.stats()["retransmissions"] == 1
    assert _log(out)[:3] == [(A + " lost", "SYN"), (A, "SYN"), (B, "SYN,ACK")]
    # The same SYN again after the initial RTO (RFC 6298 §2.1: 1 s).
    (t0, _, _, seq0, _), (t1, _, _, seq1, _) = out.control[:2]
    assert t0 == 0.0 and t1 == pytest.approx(1.0) and seq1 == seq0


def test_first_fin_lost_10mb_both_ways() -> None:
    out = transfer(10 * MB, _first(lambda p: bool(p.seg.flags & FIN)))
    check(out)
    assert out.pipe.dropped == [1, 0]  # A's FIN (A closes first)
    assert _log(out)[2:] == [(A + " lost", "FIN"), (A, "FIN"), (B, "FIN"), (A, "ACK")]
    assert out.control[2][3] == out.control[3][3]  # the same sequence number


def test_final_ack_lost_10mb_both_ways() -> None:
    out = transfer(10 * MB, _final_ack())
    check(out)
    assert out.pipe.dropped == [1, 0]  # A's ACK of B's FIN
    # B retransmits its FIN from LAST-ACK; A, in TIME-WAIT, acknowledges it again (L10).
    assert _log(out)[2:] == [(A, "FIN"), (B, "FIN"), (A + " lost", "ACK"), (B, "FIN"), (A, "ACK")]
    assert out.pipe.b.stats()["retransmissions"] >= 1
    assert out.control[-1][4] == out.control[-3][4]


@pytest.mark.parametrize("drop", [None, "every7"])
def test_runs_repeat_exactly(drop: str | None) -> None:
    def fn() -> DropFn | None:
        return (lambda pkt, idx: idx % 7 == 6) if drop else None

    runs = []
    for _ in range(2):
        out = transfer(MB, fn(), tail=MB // 4)
        check(out)
        runs.append((out.pipe.now, out.pipe.sent, out.pipe.dropped, out.pipe.a.stats(), out.pipe.b.stats()))
    assert runs[0] == runs[1]
