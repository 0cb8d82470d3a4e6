"""Timer arithmetic: the RFC 6298 estimator with Karn's rule and backoff, and the rate limits
on replies to unacceptable segments.

Pure: the caller passes measured round-trip times and the time, and tells it when a timeout fired.
"""

from __future__ import annotations

__all__ = ["ReplyLimiter", "RttEstimator"]


class RttEstimator:
    """RFC 6298 §2: SRTT, RTTVAR and RTO.

    * before any sample, RTO = ``initial`` (RFC 6298 §2.1: 1 second);
    * first sample R: SRTT = R, RTTVAR = R/2 (§2.2);
    * later samples: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|, SRTT = 7/8 SRTT + 1/8 R (§2.3);
    * RTO = SRTT + max(G, 4 RTTVAR), clamped to [``minimum``, ``maximum``] (§2.4, §2.5);
    * on a timeout the RTO doubles ("backs off", §5.5) up to ``maximum``; the next valid sample
      recomputes it. Karn's algorithm (MUST-18) is the caller's duty: never sample a segment that
      was retransmitted.
    """

    __slots__ = ("backoff", "granularity", "maximum", "minimum", "rto", "rttvar", "srtt")

    def __init__(self, initial: float = 1.0, minimum: float = 1.0, maximum: float = 60.0,
                 granularity: float = 0.001) -> None:
        if not (0 < minimum <= maximum) or initial <= 0:
            raise ValueError("RTO bounds must satisfy 0 < minimum <= maximum and initial > 0")
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.minimum = minimum
        self.maximum = maximum
        self.granularity = granularity
        self.rto = min(max(initial, minimum), maximum)
        self.backoff = 0

    def sample(self, r: float) -> None:
        """Feed one round-trip measurement (seconds) of a segment that was not retransmitted."""
        if r < 0:
            return
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        self.backoff = 0
        self.rto = min(max(self.srtt + max(self.granularity, 4 * self.rttvar), self.minimum), self.maximum)

    def on_timeout(self) -> None:
        """RFC 6298 §5.5: back off the timer (RTO <- RTO * 2, bounded by the maximum)."""
        self.backoff += 1
        self.rto = min(self.rto * 2, self.maximum)

    def restart(self, rto: float) -> None:
        """RFC 6298 §5.7: re-initialise the RTO (to 3 s when the timer expired awaiting the ACK of
        a SYN and no valid sample was taken); the next sample is again a first one (§2.2)."""
        self.srtt = None
        self.rttvar = 0.0
        self.backoff = 0
        self.rto = min(max(rto, self.minimum), self.maximum)


class ReplyLimiter:
    """How often a connection may answer segments it does not accept.

    * an ACK for an unacceptable segment (RFC 9293 §3.10.7.4 first step) or an old duplicate
      (RFC 7323 PAWS): at most one per ``interval`` seconds (Linux's ``tcp_invalid_ratelimit``);
    * a challenge ACK (RFC 5961 §3.2, §4, §5): at most ``limit`` in each second (§7).

    A connection makes one at its first such reply; most never need one."""

    __slots__ = ("challenges", "last_invalid", "second_start")

    def __init__(self) -> None:
        self.last_invalid = float("-inf")
        self.second_start = float("-inf")
        self.challenges = 0

    def invalid_reply(self, now: float, interval: float) -> bool:
        """May an ACK answer an unacceptable segment now? (It is then counted as sent.)"""
        if now - self.last_invalid >= interval:
            self.last_invalid = now
            return True
        return False

    def challenge(self, now: float, limit: int) -> bool:
        """May a challenge ACK leave now? (It is then counted as sent.)"""
        if now - self.second_start >= 1.0:
            self.second_start = now
            self.challenges = 0
        if self.challenges < limit:
            self.challenges += 1
            return True
        return False
