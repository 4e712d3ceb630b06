"""Per-participant audio jitter buffer, sans-I/O: arrival time comes in as `now`.

The mixer pops exactly one frame per 20 ms tick. Packets are held in a small dict keyed by
sequence number; playout starts once `target_frames` are queued and latency stays bounded by
dropping the oldest frame when more than `max_frames` wait. A missing frame pops as None so the
caller conceals it. Resets follow an SSRC change at once, and a sequence jump only once a second
packet confirms it (RFC 3550 Appendix A.1 probation), so one stray packet cannot flush the buffer.

A frame missing while later ones are queued is lost: it is skipped. A frame missing with nothing
queued is most likely late, not lost: the pop conceals it but waits one tick for it, so when it
comes it plays one tick late instead of being dropped as late. Why: skipping it leaves the
stream's playout point where it was, too close to the packets' arrival, so the next packet as
late is concealed again; streams whose margin a burst had cut (an overflow trims a frame) lost
~1% of their frames that way to ordinary scheduling jitter. The wait costs the stream 20 ms of
delay, once per run of empty pops (a second empty pop skips as before), and `max_frames` still
bounds the delay; if later frames come instead, the next one plays at once (no added delay),
or, when the next one is lost too and the one after it is queued, the lost one pops as None
with that one as `upcoming()`: the waited-for frame's tick was its concealment, so the stream
keeps its timeline and its one frame of margin, and Opus rebuilds the lost frame from the
queued packet's FEC (skipping to the queued one cut the margin to nothing, after which no
lost frame could ever be rebuilt: at 10 % loss one in three was, PESQ 1.9 instead of 2.8).
A stream whose decoder rebuilds lost frames (`rebuilds_lost`: Opus) with no margin at all
(each packet comes just before its tick) gets one: the waited-for frame, lost, pops as None
once more with the next one as `upcoming()`, which plays a tick later.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.rtp.packet import RtpPacket
from bridge.rtp.seq import seq_delta, ts_delta, uint16_add

MAX_SEQUENCE_JUMP = 100
"""A larger jump (either way) than this is a new stream, not loss or reordering."""
EMPTY_POPS_TO_REBUFFER = 5
"""After this many pops in a row with nothing queued, wait for `target_frames` again."""


@dataclass(slots=True)
class JitterStats:
    """Counters for one participant's incoming stream (mutable: updated per packet)."""

    received: int = 0
    played: int = 0
    lost: int = 0
    """Pops that returned None while playing: frames the caller concealed."""
    late: int = 0
    duplicate: int = 0
    reset: int = 0
    jitter_ms: float = 0.0
    """RFC 3550 §6.4.1 interarrival jitter estimate."""
    overflow: int = 0
    """Frames dropped because more than `max_frames` were queued."""
    rejected_jump: int = 0
    """Packets held back as an unconfirmed sequence jump."""
    waited: int = 0
    """Pops (counted in `lost` too) that found nothing queued and waited for the late frame."""


class JitterBuffer:
    """Reorders one SSRC's packets and hands out one payload per mixer tick."""

    def __init__(self, target_frames: int = 2, max_frames: int = 3, clock_rate: int = 8000) -> None:
        if target_frames < 1 or max_frames < target_frames:
            raise ValueError("need 1 <= target_frames <= max_frames")
        self.target_frames = target_frames
        self.max_frames = max_frames
        self.clock_rate = clock_rate
        self.rebuilds_lost = False
        """The decoder can rebuild a lost frame from the next packet (Opus' in-band FEC)."""
        self.stats = JitterStats()
        self._frames: dict[int, bytes] = {}
        self._ssrc: int | None = None
        self._next: int | None = None  # sequence to pop next; None while buffering
        self._last_played: int | None = None
        self._empty_pops = 0
        self._waiting = False  # the last pop concealed `_next` and kept waiting for it
        self._probation: tuple[int, int, bytes] | None = None  # (sequence, timestamp, payload)
        self._jitter = 0.0  # in timestamp units, as RFC 3550 keeps it
        self._last_arrival: float | None = None
        self._last_timestamp = 0

    @property
    def jitter_ms(self) -> float:
        """`stats.jitter_ms` (as `ColumnJitter.jitter_ms`)."""
        return self.stats.jitter_ms

    @property
    def concealed(self) -> int:
        """Ticks that found no frame to play (`stats.lost`): the mixer concealed them."""
        return self.stats.lost

    @property
    def trimmed(self) -> int:
        """Queued frames dropped to bound the delay (`stats.overflow`): skips in the audio."""
        return self.stats.overflow

    @property
    def playing(self) -> bool:
        return self._next is not None

    @property
    def queued(self) -> int:
        return len(self._frames)

    def push(self, packet: RtpPacket, now: float) -> bool:
        """Queue a packet that arrived at `now`; False when it was dropped."""
        return self.push_frame(packet.sequence, packet.timestamp, packet.ssrc, packet.payload, now)

    def push_frame(
        self, sequence: int, timestamp: int, ssrc: int, payload: bytes, now: float
    ) -> bool:
        """`push` from the header fields, with no RtpPacket: the per-packet hot path.

        The usual packet (same SSRC, playing, within MAX_SEQUENCE_JUMP of the next frame) is
        queued inline here; anything else goes through `_push`, the general case."""
        next_sequence = self._next
        if (
            next_sequence is None
            or ssrc != self._ssrc
            # |seq_delta(sequence, next)| > MAX_SEQUENCE_JUMP, in one masked compare
            or (sequence - next_sequence + MAX_SEQUENCE_JUMP) & 0xFFFF > 2 * MAX_SEQUENCE_JUMP
        ):
            return self._push(sequence, timestamp, ssrc, payload, now)
        stats = self.stats
        stats.received += 1
        self._probation = None
        # `_update_jitter`, inlined
        last_arrival = self._last_arrival
        if last_arrival is not None:
            clock_rate = self.clock_rate
            elapsed = (timestamp - self._last_timestamp) & 0xFFFF_FFFF  # ts_delta, inlined
            if elapsed >= 0x8000_0000:
                elapsed -= 0x1_0000_0000
            jitter = self._jitter
            jitter += (abs((now - last_arrival) * clock_rate - elapsed) - jitter) / 16.0
            self._jitter = jitter
            stats.jitter_ms = jitter * 1000.0 / clock_rate
        self._last_arrival = now
        self._last_timestamp = timestamp
        # `_store` while playing, inlined
        if (sequence - next_sequence) & 0xFFFF >= 0x8000:  # seq_delta < 0: late
            stats.late += 1
            return False
        frames = self._frames
        if sequence in frames:
            stats.duplicate += 1
            return False
        frames[sequence] = payload
        if len(frames) > self.max_frames:
            self._overflow()
        return True

    def _push(self, sequence: int, timestamp: int, ssrc: int, payload: bytes, now: float) -> bool:
        self.stats.received += 1
        if ssrc != self._ssrc:
            if self._ssrc is not None:
                self._reset()
            self._ssrc = ssrc
        reference = self._reference()
        if reference is not None and abs(seq_delta(sequence, reference)) > MAX_SEQUENCE_JUMP:
            probation = self._probation
            if probation is None or sequence != uint16_add(probation[0], 1):
                self._probation = (sequence, timestamp, payload)
                self.stats.rejected_jump += 1
                return False
            self._reset()
            self._store(*probation, now)
        self._probation = None
        return self._store(sequence, timestamp, payload, now)

    def upcoming(self) -> bytes | None:
        """The payload queued to play next, if here: Opus rebuilds a lost frame from its FEC."""
        return self._frames.get(self._next) if self._next is not None else None

    def pop(self) -> bytes | None:
        """The next frame's payload, or None when it is missing or while (re)buffering."""
        sequence = self._next
        if sequence is None:
            return None
        frames = self._frames
        payload = frames.pop(sequence, None)
        if payload is None and self._waiting and frames:
            # waited a tick for it (concealed) and later frames came instead: it is lost
            self._waiting = False
            following = (sequence + 1) & 0xFFFF
            if self.rebuilds_lost and following in frames:
                # Opus: the lost frame once more, rebuilt from the next packet's FEC, which
                # plays on the next tick: 20 ms more delay, as a late packet's, buys the margin
                # that lets every later lost frame be rebuilt in its own tick
                self._next = following
                self.stats.lost += 1
                return None
            if following in frames or ((following + 1) & 0xFFFF) in frames:
                # its successor plays now, or is lost with the one after it queued (Opus
                # rebuilds it from that one's FEC): the stream keeps its place and its margin
                sequence = following
                payload = frames.pop(sequence, None)
            else:  # a longer gap: play on from the oldest queued
                sequence = self._oldest()
                payload = frames.pop(sequence)
        if payload is not None:  # per tick and participant: no helper calls (uint16_add inlined)
            self._next = (sequence + 1) & 0xFFFF
            self._waiting = False
            self._empty_pops = 0
            self._last_played = sequence
            self.stats.played += 1
            return payload
        self.stats.lost += 1
        if frames:  # later frames are here: this one is lost
            self._next = (sequence + 1) & 0xFFFF
            self._empty_pops = 0
            return None
        if self._waiting:  # still nothing: skip it (the wait stays one frame behind)
            self._next = (sequence + 1) & 0xFFFF
        else:  # late rather than lost: wait for it, once per run (see the module docstring)
            self._waiting = True
            self.stats.waited += 1
        self._empty_pops += 1
        if self._empty_pops >= EMPTY_POPS_TO_REBUFFER:
            # Keep _last_played: after silence suppression the sequence carries on from it.
            self._next = None
            self._waiting = False
            self._empty_pops = 0
        return None

    def _store(self, sequence: int, timestamp: int, payload: bytes, now: float) -> bool:
        self._update_jitter(timestamp, now)
        if self._is_late(sequence):
            self.stats.late += 1
            return False
        if sequence in self._frames:
            self.stats.duplicate += 1
            return False
        self._frames[sequence] = payload
        if self._next is None:
            if len(self._frames) >= self.target_frames:
                self._next = self._oldest()
        elif len(self._frames) > self.max_frames:
            self._overflow()
        return True

    def _overflow(self) -> None:
        """Drop the oldest frames down to `max_frames`: latency stays bounded."""
        while len(self._frames) > self.max_frames:
            oldest = self._oldest()
            del self._frames[oldest]
            self._next = uint16_add(oldest, 1)
            self._waiting = False
            self.stats.overflow += 1

    def _is_late(self, sequence: int) -> bool:
        if self._next is not None:
            return seq_delta(sequence, self._next) < 0
        return self._last_played is not None and seq_delta(sequence, self._last_played) <= 0

    def _reference(self) -> int | None:
        """The sequence number a new packet is expected near, if any."""
        if self._next is not None:
            return self._next
        if self._last_played is not None:
            return self._last_played
        for sequence in self._frames:
            return sequence
        return None

    def _oldest(self) -> int:
        frames = iter(self._frames)
        oldest = next(frames)
        for sequence in frames:
            if seq_delta(sequence, oldest) < 0:
                oldest = sequence
        return oldest

    def _update_jitter(self, timestamp: int, now: float) -> None:
        if self._last_arrival is not None:
            arrival_delta = (now - self._last_arrival) * self.clock_rate
            transit_delta = abs(arrival_delta - ts_delta(timestamp, self._last_timestamp))
            self._jitter += (transit_delta - self._jitter) / 16.0
            self.stats.jitter_ms = self._jitter * 1000.0 / self.clock_rate
        self._last_arrival = now
        self._last_timestamp = timestamp

    def _reset(self) -> None:
        self.stats.reset += 1
        self._frames.clear()
        self._next = None
        self._last_played = None
        self._empty_pops = 0
        self._waiting = False
        self._probation = None
        self._jitter = 0.0
        self._last_arrival = None
        self.stats.jitter_ms = 0.0
