"""Packets lost from one incoming RTP stream, counted from its sequence numbers (RFC 3550 A.3).

Every packet of the stream counts, whatever its payload type: telephone-event and comfort
noise packets take sequence numbers from the same space as the audio, so counting gaps in the
audio alone reports a caller's key presses as loss. Expected is the extended highest sequence
number minus the first, plus one; lost is expected minus received, never below zero.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DROPOUT = 3000
"""A forward jump larger than this (RFC 3550 A.1) starts the count afresh: a new stream."""
MAX_MISORDER = 100
"""A packet up to this far behind the highest is late or duplicated, not a restart."""


@dataclass(slots=True)
class StreamLoss:
    """Counts per packet; `lost` adds the losses of earlier streams (SSRC changes, restarts)."""

    ssrc: int | None = None
    first: int = 0  # extended sequence numbers: cycles * 65536 + sequence
    highest: int = 0
    received: int = 0
    earlier_lost: int = 0

    def observe(self, ssrc: int, sequence: int) -> None:
        """One packet of the stream arrived (any payload type)."""
        if ssrc != self.ssrc:
            self._restart(ssrc, sequence)
            return
        delta = (sequence - self.highest) & 0xFFFF
        if delta < 0x8000:
            if delta > MAX_DROPOUT:
                self._restart(ssrc, sequence)
                return
            self.highest += delta
        elif 0x10000 - delta > MAX_MISORDER:  # far behind: the sender started again
            self._restart(ssrc, sequence)
            return
        self.received += 1

    @property
    def lost(self) -> int:
        return self.earlier_lost + self._lost_now()

    def _lost_now(self) -> int:
        if self.ssrc is None:
            return 0
        return max(0, self.highest - self.first + 1 - self.received)

    def _restart(self, ssrc: int, sequence: int) -> None:
        self.earlier_lost += self._lost_now()
        self.ssrc, self.first, self.highest, self.received = ssrc, sequence, sequence, 1
