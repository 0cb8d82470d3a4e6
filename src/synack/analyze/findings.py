"""Findings: what a capture says in the seeds' terms, each with its evidence and what to do.

Per connection (:func:`connection_findings`): an end left in CLOSE-WAIT (its peer closed, its
application did not) and for how long, RST after data (data possibly lost), half-open
connections (an end answered as if it had no such connection), keep-alive probes unanswered,
zero-window stalls, long retransmission chains, ports reused before 2×MSL, corrupt segments.
Across connections (:class:`Aggregate`): unanswered and refused SYNs by destination, SYN floods
and port scans, TIME-WAIT piling up on the side that closes first, checksum offload at the
capturing host. Counters in the aggregate are bounded (the busiest keys are kept), so memory
does not grow with the capture.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from synack.analyze.model import ConnectionResult, Finding, Severity
from synack.core.records import State

if TYPE_CHECKING:
    from synack.analyze.conn import Conn

__all__ = ["Aggregate", "Thresholds", "connection_findings"]

P, W, NOTE = Severity.PROBLEM, Severity.WARNING, Severity.INFO
_KEYS: Final = 10_000  # distinct keys each aggregate counter keeps


@dataclass(frozen=True)
class Thresholds:
    """When something becomes worth a finding."""

    close_wait: float = 1.0  # seconds in CLOSE-WAIT at the end of the capture
    slow_close: float = 5.0  # seconds in CLOSE-WAIT before the application closed
    zero_window: float = 1.0  # seconds of zero window
    chain: int = 3  # retransmissions of one segment
    flood: int = 100  # unanswered SYNs to one port
    scan: int = 20  # ports of one host a source tried without success
    time_wait: int = 10  # connections one end closed first (TIME-WAIT there)


_DEFAULT: Final = Thresholds()


def _frames(*numbers: int) -> str:
    shown = [str(n) for n in numbers if n]
    return ("frame " if len(shown) == 1 else "frames ") + ", ".join(shown) if shown else ""


def _dur(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    if seconds >= 1:
        return f"{seconds:.1f} s"
    return f"{seconds * 1000:.0f} ms"


def connection_findings(
    r: ConnectionResult, conn: Conn, msl: float, th: Thresholds | None = None
) -> list[Finding]:
    """The findings about one connection."""
    th = th or _DEFAULT
    out: list[Finding] = []
    for check in (
        _close_wait,
        _half_open,
        _rst_after_data,
        _keepalive,
        _zero_window,
        _chains,
        _port_reuse,
        _corrupt,
        _unanswered_syn,
    ):
        out.extend(check(r, conn, msl, th))
    return out


def _close_wait(r: ConnectionResult, conn: Conn, msl: float, th: Thresholds) -> list[Finding]:
    out = []
    for side in (0, 1):
        changes = r.states[side]
        for k, c in enumerate(changes):
            if c.state is not State.CLOSE_WAIT or (k and changes[k - 1].state is State.CLOSE_WAIT):
                continue
            nxt = next((d for d in changes[k + 1 :] if d.state is not State.CLOSE_WAIT), None)
            end, who, peer = r.endpoint(side), r.endpoint(side), r.endpoint(1 - side)
            if nxt is None:
                until = r.extras.get("until", r.end)
                lasted = (until if isinstance(until, float) else r.end) - c.t
                if lasted >= th.close_wait:
                    out.append(
                        Finding(
                            "close-wait",
                            P,
                            f"{who} is still in CLOSE-WAIT after {_dur(lasted)}: its peer {peer} "
                            f"closed its side and the application at {who} never closed the connection.",
                            f"peer's FIN acknowledged at {_frames(c.frame)}; no FIN from {who} until the "
                            f"capture ends {_dur(lasted)} later",
                            f"The application on {who} must call close() when recv() "
                            "returns 0 (end of stream). CLOSE-WAIT sockets piling up in `ss -tan` are a "
                            "leak in the application, never in TCP.",
                            (r.id,),
                            end,
                            c.t,
                        )
                    )
            elif nxt.t - c.t >= th.slow_close:
                out.append(
                    Finding(
                        "slow-close",
                        W,
                        f"{who} stayed {_dur(nxt.t - c.t)} in CLOSE-WAIT before its application "
                        "closed the connection.",
                        f"{_frames(c.frame, nxt.frame)}",
                        "Check why the application waits so long after the peer's FIN before closing.",
                        (r.id,),
                        end,
                        c.t,
                    )
                )
            break
    return out


def _half_open(r: ConnectionResult, conn: Conn, msl: float, th: Thresholds) -> list[Finding]:
    out = []
    for side in (0, 1):
        for c in r.states[side]:
            if "lost it" in c.note:
                out.append(
                    Finding(
                        "half-open",
                        P,
                        f"Half-open connection: {r.endpoint(side)} answered {r.endpoint(1 - side)} "
                        "with a RST, as a TCP with no such connection — it had lost it (a crash or a "
                        "reboot), while "
                        f"{r.endpoint(1 - side)} still had it open.",
                        f"RST at {_frames(c.frame)}",
                        f"If {r.endpoint(side)} restarted, its peers' connections were cut: they must "
                        "reconnect. "
                        "Keep-alives (SO_KEEPALIVE) find such connections without traffic.",
                        (r.id,),
                        r.endpoint(side),
                        c.t,
                    )
                )
                break
    return out


def _rst_after_data(r: ConnectionResult, conn: Conn, msl: float, th: Thresholds) -> list[Finding]:
    pending = conn.rst_pending
    if pending is None or r.conn_state in ("REJ", "RSTOS0", "RSTRH"):
        return []
    side, mine, theirs, t, frame = pending
    payload = r.stats[0].payload_bytes + r.stats[1].payload_bytes
    if not payload:
        return []
    who, peer = r.endpoint(side), r.endpoint(1 - side)
    if mine or theirs:
        what = []
        if mine:
            what.append(f"{mine} octets {who} had sent were not yet acknowledged")
        if theirs:
            what.append(f"{theirs} octets from {peer} were not yet acknowledged")
        return [
            Finding(
                "rst-data-lost",
                P,
                f"{who} reset the connection after data: {'; '.join(what)} — that data may be lost.",
                f"RST at {_frames(frame)} after {payload} octets of data",
                "An abortive close (SO_LINGER 0, a crash, a proxy timeout) discards what is in flight. "
                "Close with shutdown()/close() and read until EOF so that every byte is delivered.",
                (r.id,),
                who,
                t,
            )
        ]
    return [
        Finding(
            "rst-after-data",
            W,
            f"{who} ended the connection with a RST instead of a FIN, after "
            f"{payload} octets of data (all acknowledged).",
            f"RST at {_frames(frame)}",
            "An abortive close skips TIME-WAIT and hides errors; use a normal close unless the "
            "application means to abort.",
            (r.id,),
            who,
            t,
        )
    ]


def _keepalive(r: ConnectionResult, conn: Conn, msl: float, th: Thresholds) -> list[Finding]:
    out = []
    for side, (n, last, _prev, keepalive) in enumerate(conn.unanswered):
        if n >= 2 and keepalive:
            out.append(
                Finding(
                    "keepalive-unanswered",
                    P,
                    f"{r.endpoint(side)} sent {n} keep-alive probes that "
                    f"{r.endpoint(1 - side)} never answered: the peer is gone (host down, cable pulled, a "
                    "middlebox dropped the connection).",
                    f"the last probe at {last:.3f} s",
                    f"{r.endpoint(side)} will report ETIMEDOUT when its probe count runs out; the peer, "
                    "if it comes back, will answer with a RST.",
                    (r.id,),
                    r.endpoint(side),
                    last,
                )
            )
    return out


def _zero_window(r: ConnectionResult, conn: Conn, msl: float, th: Thresholds) -> list[Finding]:
    out = []
    for side in (0, 1):
        total = conn.zero_total[side]
        since = conn.zero_since[side]
        if since is not None:
            total += r.end - since
        if total >= th.zero_window:
            still = " and still was when the capture ended" if since is not None else ""
            out.append(
                Finding(
                    "zero-window",
                    W,
                    f"{r.endpoint(side)} advertised a zero window for {_dur(total)}{still}: its "
                    f"application was not reading, so {r.endpoint(1 - side)} could not send.",
                    f"{conn.zero_probes[side]} zero-window probes; {r.flags.get('zero_window', 0)} "
                    "zero-window "
                    "segments",
                    f"Find why the application on {r.endpoint(side)} stops reading (blocked, "
                    "overloaded, a deadlock with its peer both waiting to write).",
                    (r.id,),
                    r.endpoint(side),
                    since or r.start,
                )
            )
    return out


def _chains(r: ConnectionResult, conn: Conn, msl: float, th: Thresholds) -> list[Finding]:
    out = []
    for side in (0, 1):
        seq, n, first, last = conn.longest_chain[side]
        if n >= th.chain:
            out.append(
                Finding(
                    "retransmission-chain",
                    P if n >= 5 else W,
                    f"{r.endpoint(side)} sent the same segment "
                    f"{n + 1} times over {_dur(last - first)} (exponential backoff): the path kept "
                    "losing it or the peer did not answer.",
                    f"sequence number {seq}",
                    "Look for loss on the path (interface errors, a congested link) or an unreachable peer.",
                    (r.id,),
                    r.endpoint(side),
                    first,
                )
            )
    return out


def _port_reuse(r: ConnectionResult, conn: Conn, msl: float, th: Thresholds) -> list[Finding]:
    reuse = r.extras.get("port_reuse")
    if not isinstance(reuse, tuple):
        return []
    old_id, after, _side = reuse
    return [
        Finding(
            "port-reuse",
            W,
            f"Connection {r.id} reused the addresses and ports of connection {old_id} "
            f"{_dur(after)} after TIME-WAIT began there, before 2×MSL ({_dur(2 * msl)}) had passed.",
            f"the SYN at {_frames(r.frames[0])}",
            "TIME-WAIT protects a new connection from the old one's "
            "late segments; reusing the 4-tuple early (SO_REUSEADDR with tcp_tw_reuse, a NAT, few "
            "ephemeral ports) "
            "is safe only with timestamps (PAWS). Widen the ephemeral port range or pool connections.",
            (r.id, old_id),
            r.endpoint(0),
            r.start,
        )
    ]


def _corrupt(r: ConnectionResult, conn: Conn, msl: float, th: Thresholds) -> list[Finding]:
    bad = conn.bad_checksums
    if not any(bad):
        return []
    return [
        Finding(
            "bad-checksum",
            W,
            f"{sum(bad)} segments of connection {r.id} arrived with a wrong TCP "
            "checksum (not explained by checksum offload).",
            f"{bad[0]} from {r.endpoint(0)}, {bad[1]} from {r.endpoint(1)}",
            "The receiver drops them; find the faulty link, NIC or middlebox.",
            (r.id,),
            "",
            r.start,
        )
    ]


def _unanswered_syn(r: ConnectionResult, conn: Conn, msl: float, th: Thresholds) -> list[Finding]:
    if r.conn_state != "S0" or r.stats[0].syn < 2:
        return []
    return [
        Finding(
            "unanswered-syn",
            W,
            f"{r.endpoint(0)} sent {r.stats[0].syn} SYNs to {r.endpoint(1)} over "
            f"{_dur(r.duration)} and got no answer.",
            f"{_frames(r.frames[0], r.frames[1])}",
            "Nothing answered: the host is down, or a firewall drops the SYNs silently.",
            (r.id,),
            r.endpoint(1),
            r.start,
        )
    ]


# ---------------------------------------------------------------------------------------------
# Across connections
# ---------------------------------------------------------------------------------------------


def _bounded_add(counter: Counter[str], key: str, n: int = 1) -> None:
    if key in counter or len(counter) < _KEYS:
        counter[key] += n


@dataclass
class Aggregate:
    """Findings across connections, fed one result at a time (memory bounded)."""

    th: Thresholds = field(default_factory=Thresholds)
    s0_by_dest: Counter[str] = field(default_factory=Counter)
    rej_by_dest: Counter[str] = field(default_factory=Counter)
    s0_sources: dict[str, set[str]] = field(default_factory=dict)
    failed_ports: dict[str, set[int]] = field(default_factory=dict)
    closed_first: Counter[str] = field(default_factory=Counter)
    conns_by_dest: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, r: ConnectionResult) -> None:
        dest = r.endpoint(1)
        _bounded_add(self.conns_by_dest, dest)
        if r.conn_state in ("S0", "REJ", "RSTOS0"):
            key = f"{r.resp[0]}:{r.resp[1]}"
            _bounded_add(self.s0_by_dest if r.conn_state != "REJ" else self.rej_by_dest, key)
            self._example(key, r.id)
            if r.conn_state != "REJ" and len(self.s0_sources) < _KEYS:
                sources = self.s0_sources.setdefault(key, set())
                if len(sources) < 1000:
                    sources.add(r.orig[0])
            scan_key = f"{r.orig[0]} → {r.resp[0]}"
            if scan_key in self.failed_ports or len(self.failed_ports) < _KEYS:
                ports = self.failed_ports.setdefault(scan_key, set())
                if len(ports) < 10_000:
                    ports.add(r.resp[1])
        if r.closed_first is not None and any(c.state is State.TIME_WAIT for c in r.states[r.closed_first]):
            side = "originator" if r.closed_first == 0 else "responder"
            _bounded_add(self.closed_first, f"{(r.orig, r.resp)[r.closed_first][0]}|{side}")

    def merge(self, other: Aggregate) -> None:
        """Add another aggregate (of a shard of the same capture)."""
        for mine, theirs in (
            (self.s0_by_dest, other.s0_by_dest),
            (self.rej_by_dest, other.rej_by_dest),
            (self.closed_first, other.closed_first),
            (self.conns_by_dest, other.conns_by_dest),
        ):
            for k, n in theirs.items():
                _bounded_add(mine, k, n)
        for table, theirs_t in ((self.s0_sources, other.s0_sources), (self.failed_ports, other.failed_ports)):
            for k, values in theirs_t.items():
                table.setdefault(k, set()).update(values)  # type: ignore[arg-type]
        for k, ids in other.examples.items():
            self.examples.setdefault(k, []).extend(ids[: 5 - len(self.examples.get(k, []))])

    def _example(self, key: str, cid: int) -> None:
        ids = self.examples.setdefault(key, [])
        if len(ids) < 5:
            ids.append(cid)

    def findings(self) -> list[Finding]:
        """The findings across connections."""
        out: list[Finding] = []
        th = self.th
        for dest, n in self.s0_by_dest.most_common(20):
            sources = self.s0_sources.get(dest, set())
            ids = tuple(self.examples.get(dest, []))
            if n >= th.flood and len(sources) >= 10:
                out.append(
                    Finding(
                        "syn-flood",
                        P,
                        f"SYN flood: {n} connection attempts to {dest} from "
                        f"{len(sources)}{'+' if len(sources) >= 1000 else ''} sources were never "
                        "completed.",
                        f"connections {', '.join(map(str, ids))}, …",
                        "Enable SYN cookies (net.ipv4.tcp_syncookies), raise the listen backlog, "
                        "filter upstream.",
                        ids,
                        dest,
                    )
                )
            elif n >= 3:
                out.append(
                    Finding(
                        "unanswered-syns",
                        W,
                        f"{n} connection attempts to {dest} got no answer.",
                        f"connections {', '.join(map(str, ids))}",
                        "The host or service is down, or a firewall drops the SYNs silently.",
                        ids,
                        dest,
                    )
                )
        for dest, n in self.rej_by_dest.most_common(20):
            ids = tuple(self.examples.get(dest, []))
            if n >= 3:
                out.append(
                    Finding(
                        "refused",
                        NOTE,
                        f"{n} connection attempts to {dest} were refused (RST): "
                        "nothing listens on that port.",
                        f"connections {', '.join(map(str, ids))}",
                        "Start the service, or fix the clients' port.",
                        ids,
                        dest,
                    )
                )
        for pair, ports in self.failed_ports.items():
            if len(ports) >= th.scan:
                out.append(
                    Finding(
                        "port-scan",
                        P,
                        f"Port scan: {pair} tried {len(ports)} ports without completing a connection.",
                        f"ports {_port_list(ports)}",
                        "Check the source; block it if the scan is not authorised.",
                        (),
                        pair,
                    )
                )
        for key, n in self.closed_first.most_common(10):
            if n >= th.time_wait:
                addr, role = key.split("|")
                out.append(
                    Finding(
                        "time-wait",
                        NOTE,
                        f"{addr} (the {role}) closed first in {n} connections: "
                        f"TIME-WAIT accumulates on {addr}, holding each 4-tuple for 2×MSL.",
                        f"{n} connections",
                        "Normal for the side that closes first. If that is a "
                        "busy server and its TIME-WAIT sockets run out of ports, let the clients "
                        "close first or keep connections alive.",
                        (),
                        addr,
                    )
                )
        return out


def _port_list(ports: set[int]) -> str:
    shown = sorted(ports)[:12]
    return ", ".join(map(str, shown)) + (", …" if len(ports) > 12 else "")
