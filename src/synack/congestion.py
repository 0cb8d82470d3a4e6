"""Congestion control behind a small interface: RFC 5681 slow start and congestion avoidance with
RFC 6582 NewReno fast retransmit / fast recovery (MUST-19).

The connection tells the algorithm what happened (new data acknowledged, a duplicate ACK, a
retransmission timeout) and reads ``cwnd``. An alternative algorithm (MAY-18, e.g. CUBIC) implements
the same five methods.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["CongestionControl", "NewReno", "make_congestion_control"]


class CongestionControl(Protocol):
    cwnd: int
    ssthresh: int
    in_recovery: bool

    def on_ack(self, acked: int, ack: int, flight: int) -> bool:
        """New data acknowledged (``acked`` octets; ``ack`` is SEG.ACK; ``flight`` the octets that
        were outstanding before this ACK). Returns True when the segment at the new SND.UNA must be
        retransmitted at once (a NewReno partial acknowledgment)."""

    def on_dupack(self, snd_max: int, flight: int) -> bool:
        """A duplicate ACK. Returns True when a fast retransmit is due now."""

    def on_timeout(self, flight: int) -> None:
        """The retransmission timer fired."""

    def on_loss_recovery(self, flight: int) -> None:
        """SACK-based loss recovery (RFC 6675 §5 step 4.2) begins with ``flight`` octets
        outstanding. The connection then paces by its pipe estimate and reports no ACK (neither
        :meth:`on_ack` nor :meth:`on_dupack`) until the recovery ends."""

    def reset_mss(self, mss: int) -> None:
        """The effective send MSS is known (after the handshake)."""


def _initial_window(mss: int) -> int:
    """RFC 5681 §3.1, equation (1)."""
    if mss > 2190:
        return 2 * mss
    if mss > 1095:
        return 3 * mss
    return 4 * mss


class NewReno:
    """RFC 5681 + RFC 6582. Sequence numbers are compared modulo 2**32."""

    __slots__ = ("_acked_ca", "cwnd", "dupacks", "in_recovery", "mss", "recover", "ssthresh")

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = _initial_window(mss)
        self.ssthresh = 1 << 30  # RFC 5681 §3.1: arbitrarily high
        self.dupacks = 0
        self.in_recovery = False
        self.recover = 0
        self._acked_ca = 0

    def reset_mss(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = _initial_window(mss)

    def on_ack(self, acked: int, ack: int, flight: int) -> bool:
        self.dupacks = 0
        mss = self.mss
        if self.in_recovery:
            if ((ack - self.recover) & 0xFFFFFFFF) < (1 << 31):  # ack >= recover: full ACK
                self.in_recovery = False
                # RFC 6582 §3.2 step 3 (1): deflate to min(ssthresh, max(FlightSize, SMSS) + SMSS),
                # FlightSize being what is still outstanding after this ACK.
                self.cwnd = min(self.ssthresh, max(flight - acked, mss) + mss)
                return False
            # Partial ACK: retransmit the next hole, deflate by the amount acknowledged, add one MSS.
            self.cwnd = max(self.cwnd - acked + mss, mss)
            return True
        if self.cwnd < self.ssthresh:  # slow start (RFC 5681 §3.1, equation 2)
            self.cwnd += min(acked, mss)
        else:  # congestion avoidance: about one MSS per RTT (RFC 5681 §3.1, equation 3 variant)
            self._acked_ca += acked
            if self._acked_ca >= self.cwnd:
                self._acked_ca -= self.cwnd
                self.cwnd += mss
        return False

    def on_dupack(self, snd_max: int, flight: int) -> bool:
        if self.in_recovery:
            self.cwnd += self.mss  # RFC 6582 §3.2 step 4: inflate
            return False
        self.dupacks += 1
        if self.dupacks == 3:
            self.ssthresh = max(flight // 2, 2 * self.mss)  # RFC 5681 equation (4)
            self.cwnd = self.ssthresh + 3 * self.mss
            self.in_recovery = True
            self.recover = snd_max
            return True
        return False

    def on_loss_recovery(self, flight: int) -> None:
        # RFC 6675 §5 (4.2): ssthresh = cwnd = FlightSize / 2, bounded below as in RFC 5681
        # equation (4). NewReno's own recovery (in_recovery, recover) is not used alongside.
        self.ssthresh = self.cwnd = max(flight // 2, 2 * self.mss)
        self.dupacks = 0
        self._acked_ca = 0

    def on_timeout(self, flight: int) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss  # loss window (RFC 5681 §3.1)
        self.dupacks = 0
        self.in_recovery = False
        self._acked_ca = 0


def make_congestion_control(name: str, mss: int) -> CongestionControl:
    if name == "newreno":
        return NewReno(mss)
    raise ValueError(f"unknown congestion control {name!r} (available: newreno)")
