"""Congestion control (RFC 5681, MUST-19; MAY-18 for other algorithms) as a small interface.

A *controller* owns the congestion window and the slow-start threshold and decides how they grow
and how far they fall. It does not decide *when* a segment is lost or what to retransmit: that is
loss recovery (:mod:`synack.core.recovery`), which calls the controller's hooks —

* :meth:`~CongestionController.on_ack`: new data was cumulatively acknowledged outside loss
  recovery (grow: slow start, congestion avoidance);
* :meth:`~CongestionController.on_congestion`: duplicate ACKs or SACK information show a loss
  (RFC 5681 §3.2 step 2, RFC 6675 §5 step 4.2): lower ``ssthresh`` and ``cwnd``;
* :meth:`~CongestionController.on_timeout`: the retransmission timer fired (RFC 5681 §3.1).

During a recovery, the recovery algorithm works from the ``ssthresh`` the controller chose:
RFC 6582 inflates and deflates ``cwnd`` around it, RFC 6675 paces by its pipe estimate below it.

Every hook takes the time (``now``, seconds) and the smoothed round-trip time (``rtt``, None before
the first sample) as keyword arguments, and does nothing unless a controller overrides it; a
controller that overrides nothing keeps the initial window for ever. Controllers are chosen by
name from :data:`CONTROLLERS`, which :class:`~synack.core.connection.Config` checks when it is
made. A new algorithm is one new module and one line in that table. For example, CUBIC (RFC 9438)
would be::

    # synack/core/cubic.py
    from synack.core.congestion import CongestionController

    class Cubic(CongestionController):
        '''RFC 9438: a window that grows as a cubic function of the time since the last loss.'''

        __slots__ = ("k", "t_epoch", "w_max")
        C = 0.4
        BETA = 0.7

        def __init__(self, mss: int, *, iw_segments: int | None = None) -> None:
            super().__init__(mss, iw_segments=iw_segments)
            self.w_max = 0.0
            self.k = 0.0
            self.t_epoch: float | None = None

        def on_ack(self, acked, *, now, rtt, flight):
            if self.cwnd < self.ssthresh:                      # slow start, as Reno (§4.10)
                self.cwnd += min(acked, self.mss)
                return
            if self.t_epoch is None:
                self.t_epoch = now
            t = now - self.t_epoch + (rtt or 0.0)              # §4.2: W_cubic(t + RTT)
            target = (self.C * (t - self.k) ** 3 + self.w_max) * self.mss
            if target > self.cwnd:                             # §4.4, concave and convex regions
                self.cwnd += max(int((target - self.cwnd) * acked / self.cwnd), 1)

        def on_congestion(self, flight, *, now, rtt):         # §4.6, §4.7
            self.w_max = self.cwnd / self.mss
            self.ssthresh = self.cwnd = max(int(self.cwnd * self.BETA), 2 * self.mss)
            self.k = (self.w_max * (1 - self.BETA) / self.C) ** (1 / 3)
            self.t_epoch = None

        def on_timeout(self, flight, *, now, rtt):             # §4.8
            self.on_congestion(flight, now=now, rtt=rtt)
            self.cwnd = self.mss

    # and in synack/core/congestion.py:
    CONTROLLERS = MappingProxyType({"newreno": NewReno, "cubic": Cubic})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from synack.core.wire import shared_int

__all__ = ["CONTROLLERS", "CongestionController", "NewReno", "initial_window", "make_controller"]


def initial_window(mss: int) -> int:
    """RFC 5681 §3.1, equation (1): IW = 2, 3 or 4 segments by the size of one."""
    if mss > 2190:
        return 2 * mss
    if mss > 1095:
        return 3 * mss
    return 4 * mss


class CongestionController:
    """The interface, and a controller that never changes its window (every hook does nothing).

    ``cwnd`` and ``ssthresh`` are in octets; ``mss`` is the sender's effective MSS. The
    connection reads ``cwnd``; loss recovery reads ``ssthresh`` and, during a recovery, sets
    ``cwnd`` as its RFC says. ``iw_segments`` fixes the initial window in segments (None: RFC
    5681's equation (1))."""

    __slots__ = ("cwnd", "iw_segments", "mss", "ssthresh")

    def __init__(self, mss: int, *, iw_segments: int | None = None) -> None:
        self.mss = mss
        self.iw_segments = iw_segments
        self.cwnd = self.initial_window(mss)
        self.ssthresh = 1 << 30  # RFC 5681 §3.1: "arbitrarily high"

    def initial_window(self, mss: int) -> int:
        """IW for a sender of this MSS: ``iw_segments`` segments, or RFC 5681 equation (1)."""
        n = self.iw_segments
        return shared_int(n * mss if n is not None else initial_window(mss))

    def reset_mss(self, mss: int, *, syn_lost: bool = False) -> None:
        """The handshake is complete and the effective send MSS known: the initial window follows
        it — or is one segment when the SYN or SYN,ACK was lost (RFC 5681 §3.1: "the initial
        window used by a sender after a correctly transmitted SYN MUST be one segment")."""
        self.mss = mss
        self.cwnd = mss if syn_lost else self.initial_window(mss)

    def on_ack(self, acked: int, *, now: float, rtt: float | None, flight: int) -> None:
        """``acked`` octets of new data were acknowledged outside loss recovery; ``flight`` octets
        were outstanding before this ACK."""

    def on_congestion(self, flight: int, *, now: float, rtt: float | None) -> None:
        """Loss recovery begins with ``flight`` octets outstanding (RFC 5681 §3.2 step 2, RFC 6675
        §5 step 4.2): choose the new ``ssthresh`` and ``cwnd``."""

    def on_timeout(self, flight: int, *, now: float, rtt: float | None) -> None:
        """The retransmission timer fired with ``flight`` octets outstanding."""

    def on_idle(self, idle: float, *, now: float, rtt: float | None) -> None:
        """Data is about to leave after ``idle`` seconds without sending, more than the RTO
        (RFC 5681 §4.1, "restarting idle connections")."""


class NewReno(CongestionController):
    """RFC 5681 slow start and congestion avoidance; on a loss, half the flight (RFC 5681
    equation 4) — the window arithmetic of Reno and NewReno (RFC 6582)."""

    __slots__ = ("_acked_ca",)

    def __init__(self, mss: int, *, iw_segments: int | None = None) -> None:
        super().__init__(mss, iw_segments=iw_segments)
        self._acked_ca = 0

    def on_ack(self, acked: int, *, now: float, rtt: float | None, flight: int) -> None:
        mss = self.mss
        if self.cwnd < self.ssthresh:  # slow start (RFC 5681 §3.1, equation 2)
            self.cwnd += min(acked, mss)
        else:  # congestion avoidance: about one MSS per RTT (RFC 5681 §3.1, equation 3 variant)
            self._acked_ca += acked
            if self._acked_ca >= self.cwnd:
                self._acked_ca -= self.cwnd
                self.cwnd += mss

    def on_congestion(self, flight: int, *, now: float, rtt: float | None) -> None:
        # RFC 5681 equation (4); RFC 6675 §5 (4.2) also sets cwnd = ssthresh, and RFC 6582's fast
        # recovery (recovery.NewRenoRecovery) inflates it from there.
        self.ssthresh = self.cwnd = max(flight // 2, 2 * self.mss)
        self._acked_ca = 0

    def on_idle(self, idle: float, *, now: float, rtt: float | None) -> None:
        # RFC 5681 §4.1: "TCP SHOULD set cwnd to no more than RW before beginning transmission",
        # RW = min(IW, cwnd).
        self.cwnd = min(self.cwnd, self.initial_window(self.mss))

    def on_timeout(self, flight: int, *, now: float, rtt: float | None) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)  # equation (4)
        self.cwnd = self.mss  # the loss window (RFC 5681 §3.1)
        self._acked_ca = 0


ControllerFactory = Callable[..., CongestionController]
"""A controller class (or factory): called with the MSS and the keyword ``iw_segments``."""

#: The controllers a :class:`~synack.core.connection.Config` may name, by name.
CONTROLLERS: Final[Mapping[str, ControllerFactory]] = MappingProxyType({"newreno": NewReno})


def make_controller(name: str, mss: int, *, iw_segments: int | None = None) -> CongestionController:
    """The controller called ``name`` for a sender of this MSS (ValueError for an unknown name)."""
    factory = CONTROLLERS.get(name)
    if factory is None:
        raise ValueError(f"unknown congestion control {name!r} (known: {', '.join(sorted(CONTROLLERS))})")
    return factory(mss, iw_segments=iw_segments)
