"""Outgoing RTP streams as array columns, and what a tick sends as rows of one buffer.

Why: a worker sends one packet per member per tick, so any Python touched per packet (build a
header with `struct`, concatenate, queue) costs as much as the member's whole mix. Here each
stream's state (sequence, timestamp, SSRC, counts, destination) is one slot of numpy columns:
a tick's common sends are built with a handful of array operations (`send_rows`: 12-byte
headers from the columns, the payload rows gathered from the encoded mix) and the columns
advance as arrays. What still sends one packet at a time (prompts, hold music, SRTP legs,
telephone-event, the multi-rate tick) goes through `ColumnSender`, an `RtpSender` whose fields
are its slot of the same columns, so both ways share one sequence space per stream.

Sans-I/O: what is to be sent waits in `take()`'s segments (datagrams back to back with their
offsets, lengths and `ip << 16 | port` destinations), in the order it was queued; the shared
RTP port hands them to `sendmmsg`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bridge.rtp.packet import RtpSender, build_rtp
from bridge.rtp.seq import uint32_add
from bridge.rtp.source_demux import address_key

Address = tuple[str, int]


class Counted(Protocol):
    """A member's media counters (`MediaCounters`)."""

    packets_out: int


def _row_type(payload_bytes: int) -> np.dtype:
    """One plain RTP datagram (no CSRC, extension or padding) as a record: header fields in
    network order, then the payload."""
    return np.dtype(
        {
            "names": ["first", "second", "sequence", "timestamp", "ssrc", "payload"],
            "formats": ["u1", "u1", ">u2", ">u4", ">u4", (np.uint8, (payload_bytes,))],
            "offsets": [0, 1, 2, 4, 8, 12],
            "itemsize": 12 + payload_bytes,
        }
    )


@dataclass
class Segment:
    """Datagrams back to back in `blob`: datagram i is `lengths[i]` bytes from `offsets[i]`,
    for `destinations[i]` (`ip << 16 | port`)."""

    blob: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    destinations: np.ndarray


class SenderColumns:
    """The outgoing streams of one shared RTP port, a slot each, and its queue of datagrams."""

    def __init__(self, capacity: int = 64) -> None:
        self.sequence = np.zeros(capacity, np.int64)
        self.timestamp = np.zeros(capacity, np.int64)
        self.ssrc = np.zeros(capacity, np.int64)
        self.payload_type = np.zeros(capacity, np.int64)
        self.packets = np.zeros(capacity, np.int64)
        self.octets = np.zeros(capacity, np.int64)
        self.destination = np.full(capacity, -1, np.int64)  # -1: nowhere (sent to no one)
        self.unsettled = np.zeros(capacity, np.int64)  # packets_out not yet in the counters
        self._counters: list[Counted | None] = [None] * capacity
        self._free = list(range(capacity - 1, -1, -1))
        self._rows: dict[int, np.dtype] = {}
        self._segments: list[Segment] = []
        self._out: list[bytes] = []
        self._to: list[int] = []
        self._keys: dict[Address, int] = {}

    # --- streams ----------------------------------------------------------------------------

    def attach(
        self, sender: RtpSender | ColumnSender, counters: Counted | None = None
    ) -> ColumnSender:
        """A slot holding `sender`'s state from now on (a ColumnSender of ours is kept).
        `counters.packets_out` gets the packets `send_rows` sends (`settle`)."""
        if isinstance(sender, ColumnSender) and sender.columns is self:
            return sender
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self.sequence[slot] = sender.sequence
        self.timestamp[slot] = sender.timestamp
        self.ssrc[slot] = sender.ssrc
        self.payload_type[slot] = sender.payload_type
        self.packets[slot] = sender.packets_sent
        self.octets[slot] = sender.octets_sent
        self.destination[slot] = -1
        self.unsettled[slot] = 0
        self._counters[slot] = counters
        return ColumnSender(self, slot)

    def detach(self, sender: ColumnSender) -> RtpSender:
        """The stream as a plain `RtpSender` again (leaving the port); its slot is freed."""
        self.settle()
        plain = sender.plain()
        slot = sender.slot
        self._free.append(slot)
        self.destination[slot] = -1
        self._counters[slot] = None
        # a stale reference keeps working on a copy of its own, never on a reused slot
        alone = SenderColumns(capacity=1)
        sender.columns, sender.slot = alone, alone.attach(plain).slot
        return plain

    def set_destination(self, sender: ColumnSender, address: Address) -> None:
        self.destination[sender.slot] = self._key(address)

    def _grow(self) -> None:
        size = len(self.sequence)
        self._counters.extend([None] * size)
        for name in (
            "sequence", "timestamp", "ssrc", "payload_type", "packets", "octets", "unsettled"
        ):  # fmt: skip
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(size, np.int64)]))
        self.destination = np.concatenate([self.destination, np.full(size, -1, np.int64)])
        self._free.extend(range(2 * size - 1, size - 1, -1))

    def settle(self) -> None:
        """Add the packets sent as rows to their streams' `packets_out` counters (before
        anyone reads them: a report, a member leaving)."""
        pending = np.flatnonzero(self.unsettled)
        counters = self._counters
        for slot, count in zip(pending.tolist(), self.unsettled[pending].tolist(), strict=True):
            counted = counters[slot]
            if counted is not None:
                counted.packets_out += count
        self.unsettled[pending] = 0

    # --- sending ----------------------------------------------------------------------------

    def queue(self, data: bytes, address: Address) -> None:
        """One datagram (a member's send function): kept, in order, until `take`."""
        key = self._key(address)
        if key >= 0:
            self._out.append(data)
            self._to.append(key)

    def send_rows(
        self,
        slots: np.ndarray,
        payload_type: int,
        payloads: np.ndarray,
        rows: np.ndarray,
        samples: int,
    ) -> None:
        """The next packet of each stream in `slots` (distinct), carrying row `rows[i]` of
        `payloads` (2-D uint8), as `RtpSender.packet(payload, samples, False, payload_type)`
        would build it; the streams advance as arrays. Streams with no destination advance
        but send nothing, as `queue` drops what it cannot address."""
        size = payloads.shape[1]
        row_type = self._rows.get(size)
        if row_type is None:
            row_type = self._rows[size] = _row_type(size)
        count = len(slots)
        block = np.empty(count, row_type)
        block["first"] = 0x80
        block["second"] = payload_type
        sequence = self.sequence[slots]
        timestamp = self.timestamp[slots]
        block["sequence"] = sequence
        block["timestamp"] = timestamp
        block["ssrc"] = self.ssrc[slots]
        block["payload"] = payloads[rows]
        self.sequence[slots] = (sequence + 1) & 0xFFFF
        self.timestamp[slots] = (timestamp + samples) & 0xFFFF_FFFF
        self.packets[slots] += 1
        self.octets[slots] += size
        self.unsettled[slots] += 1
        destinations = self.destination[slots]
        addressed = destinations >= 0
        if not addressed.all():
            block, destinations = block[addressed], destinations[addressed]
            count = len(block)
        if count:
            self._close_bytes()
            length = row_type.itemsize
            self._segments.append(
                Segment(
                    block.view(np.uint8),
                    np.arange(count, dtype=np.int64) * length,
                    np.full(count, length, np.int64),
                    destinations,
                )
            )

    def take(self) -> list[Segment]:
        """What was queued since the last `take`, in order."""
        self._close_bytes()
        segments, self._segments = self._segments, []
        return segments

    def _close_bytes(self) -> None:
        out = self._out
        if not out:
            return
        self._out, to, self._to = [], self._to, []
        lengths = np.fromiter(map(len, out), np.int64, len(out))
        offsets = np.zeros(len(out), np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        blob = np.frombuffer(b"".join(out), np.uint8)
        self._segments.append(Segment(blob, offsets, lengths, np.array(to, np.int64)))

    def _key(self, address: Address) -> int:
        key = self._keys.get(address)
        if key is None:
            key = address_key(*address)
            if len(self._keys) > 65536:
                self._keys.clear()
            self._keys[address] = key
        return key


def _column(name: str) -> property:
    """A ColumnSender field: its slot of the column `name`."""

    def get(sender: ColumnSender) -> int:
        return int(getattr(sender.columns, name)[sender.slot])

    def put(sender: ColumnSender, value: int) -> None:
        getattr(sender.columns, name)[sender.slot] = value

    return property(get, put)


class ColumnSender:
    """An `RtpSender` whose state is slot `slot` of `columns`: the one-packet-at-a-time way
    of sending on a stream the tick otherwise sends on as arrays."""

    __slots__ = ("columns", "slot")

    def __init__(self, columns: SenderColumns, slot: int) -> None:
        self.columns = columns
        self.slot = slot

    payload_type = _column("payload_type")
    ssrc = _column("ssrc")
    sequence = _column("sequence")
    timestamp = _column("timestamp")
    packets_sent = _column("packets")
    octets_sent = _column("octets")

    def packet(
        self,
        payload: bytes,
        samples: int = 160,
        marker: bool = False,
        payload_type: int | None = None,
    ) -> bytes:
        """As `RtpSender.packet`."""
        columns, slot = self.columns, self.slot
        if payload_type is None:
            payload_type = int(columns.payload_type[slot])
        sequence = int(columns.sequence[slot])
        timestamp = int(columns.timestamp[slot])
        data = build_rtp(
            payload_type, sequence, timestamp, int(columns.ssrc[slot]), payload, marker
        )
        columns.sequence[slot] = (sequence + 1) & 0xFFFF
        columns.timestamp[slot] = (timestamp + samples) & 0xFFFF_FFFF
        columns.packets[slot] += 1
        columns.octets[slot] += len(payload)
        return data

    def skip(self, samples: int) -> None:
        """As `RtpSender.skip`."""
        self.timestamp = uint32_add(self.timestamp, samples)

    def drop(self, samples: int) -> None:
        """As `RtpSender.drop`."""
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = uint32_add(self.timestamp, samples)

    def plain(self) -> RtpSender:
        """A copy as an ordinary `RtpSender`."""
        return RtpSender(
            payload_type=self.payload_type,
            ssrc=self.ssrc,
            sequence=self.sequence,
            timestamp=self.timestamp,
            packets_sent=self.packets_sent,
            octets_sent=self.octets_sent,
        )

    def __reduce__(self) -> tuple[type[RtpSender], tuple[int, int, int, int, int, int]]:
        """Pickles (a hand-over to another process) as the plain `RtpSender` it stands for."""
        p = self.plain()
        return RtpSender, (
            p.payload_type,
            p.ssrc,
            p.sequence,
            p.timestamp,
            p.packets_sent,
            p.octets_sent,
        )
