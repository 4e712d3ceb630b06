"""RFC 3261 §17 / RFC 6026 timer values, all derived from T1, T2 and T4 in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimerConfig:
    """T1 (RTT estimate), T2 (maximum non-INVITE retransmit interval), T4 (network lifetime).

    Timers that are zero on reliable transports are methods taking ``reliable``.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timer_a(self) -> float:
        """INVITE request retransmit interval, initially T1, doubling (UDP only)."""
        return self.t1

    @property
    def timer_b(self) -> float:
        """INVITE client transaction timeout."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """Wait for response retransmits after a 3xx-6xx to an INVITE."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    @property
    def timer_e(self) -> float:
        """Non-INVITE request retransmit interval, initially T1, doubling to T2 (UDP only)."""
        return self.t1

    @property
    def timer_f(self) -> float:
        """Non-INVITE client transaction timeout."""
        return 64 * self.t1

    @property
    def timer_g(self) -> float:
        """INVITE final response retransmit interval, initially T1, doubling to T2."""
        return self.t1

    @property
    def timer_h(self) -> float:
        """Wait time for the ACK to a 3xx-6xx."""
        return 64 * self.t1

    def timer_i(self, reliable: bool) -> float:
        """Wait for ACK retransmits in Confirmed."""
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:
        """Wait for non-INVITE request retransmits in Completed."""
        return 0.0 if reliable else 64 * self.t1

    def timer_k(self, reliable: bool) -> float:
        """Wait for non-INVITE response retransmits in Completed."""
        return 0.0 if reliable else self.t4

    @property
    def timer_l(self) -> float:
        """RFC 6026: INVITE server transaction stays Accepted (2xx sent) this long."""
        return 64 * self.t1

    @property
    def timer_m(self) -> float:
        """RFC 6026: INVITE client transaction stays Accepted to pass up 2xx retransmits."""
        return 64 * self.t1
