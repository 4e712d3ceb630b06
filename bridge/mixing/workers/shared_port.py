"""A media worker's shared RTP port: every shared-port call of the worker on one UDP socket.

Read once per tick with `recvmmsg` (kernel arrival times, so reading late blurs no jitter or
delay figure), each datagram routed to its call by source address (`SourceDemux`: the exact
address, else latching an unknown source to the only unlatched call from that IP, else dropped
and counted) and its header parsed as array columns; what the tick sends is queued and leaves
in one or a few `sendmmsg` calls after it. Symmetric RTP: a call receives from the port its
SDP answer named (this one) and is sent to from it.

SRTP legs share the port too: their datagrams take the per-packet path (`receive_rtp`, which
unprotects and authenticates before anything is parsed), never the array fast path, and
`send_payload` protects what it hands to `queue`.
"""

from __future__ import annotations

import socket
import time

import numpy as np

from bridge.mixing.participant import Participant
from bridge.net.mmsg import BatchSocket, set_buffers
from bridge.rtp.source_demux import SourceDemux, address_key

BATCH = 512
DATAGRAM_BYTES = 1536  # a G.711 packet is 172, an Opus one at most a few hundred
MAX_READS = 16  # per tick: past 8,000 waiting datagrams the rest wait for the next tick


class SharedRtpPort:
    def __init__(self, sock: socket.socket) -> None:
        set_buffers(sock)
        self.io = BatchSocket(sock, batch=BATCH, size=DATAGRAM_BYTES, timestamps=True)
        self.port: int = sock.getsockname()[1]
        self.demux = SourceDemux()
        self.members: dict[str, Participant] = {}
        self._slots: list[str] | None = None
        self._parts: list[Participant | None] = []
        self._out: list[bytes] = []
        self._to: list[int] = []
        self._keys: dict[tuple[str, int], int] = {}

    # --- members ----------------------------------------------------------------------------

    def add(self, participant: Participant) -> None:
        leg = participant.call_key
        self.members[leg] = participant
        self.demux.add(leg, participant.remote, participant.signalling_host)
        participant.send = self.queue

    def update(self, participant: Participant) -> None:
        """After a re-INVITE: its SDP address may have moved."""
        self.demux.update(participant.call_key, participant.remote)

    def remove(self, leg: str) -> None:
        self.members.pop(leg, None)
        self.demux.remove(leg)

    @property
    def unmatched(self) -> int:
        return self.demux.unmatched

    # --- receive ----------------------------------------------------------------------------

    def receive(self, now: float) -> None:
        """Take every waiting datagram to its call's jitter buffer. `now` is the loop's
        (monotonic) clock; the kernel's arrival times are moved onto it."""
        io = self.io
        for _ in range(MAX_READS):
            count = io.receive()
            if count == 0:
                return
            self._deliver(count, now - time.time())
            if count < io.batch:
                return

    def _deliver(self, count: int, to_loop_clock: float) -> None:
        io = self.io
        ips, ports = io.sources(count)
        index, slots = self.demux.route(ips, ports)
        if slots is not self._slots:
            self._slots = slots
            self._parts = [self.members.get(leg) for leg in slots]
        parts = self._parts
        lengths = io.lengths(count)
        rows = io.rx.data[:count]
        arrivals = io.arrivals(count) + to_loop_clock
        arrivals = np.where(np.isnan(arrivals), time.time() + to_loop_clock, arrivals)
        # the header as columns (a short datagram's columns are junk and fail `plain`)
        sequence = (rows[:, 2].astype(np.int64) << 8) | rows[:, 3]
        header = rows[:, 4:12].copy().view(">u4")
        plain = (lengths >= 12) & (rows[:, 0] == 0x80) & (index >= 0)
        second = rows[:, 1]
        blob = rows.tobytes()
        size = DATAGRAM_BYTES
        for i, (slot, length, pt, is_plain, seq, ts, ssrc, at) in enumerate(
            zip(
                index.tolist(), lengths.tolist(), second.tolist(), plain.tolist(),
                sequence.tolist(), header[:, 0].tolist(), header[:, 1].tolist(),
                arrivals.tolist(), strict=True,
            )
        ):  # fmt: skip
            if slot < 0:
                continue  # dropped by the demultiplexer (counted there)
            participant = parts[slot]
            if participant is None:
                continue  # its leg was removed in this batch's tick
            start = i * size
            if participant.latched is None:
                participant.latched = self.demux.latched(slots[slot])
            # an SRTP leg's packet (header in clear) takes `receive_rtp`, which unprotects it
            if is_plain and pt == participant.codec.payload_type and participant.srtp is None:
                participant.counters.packets_in += 1
                participant.last_rtp = at
                participant.loss.observe(ssrc, seq)
                participant.jitter.push_frame(seq, ts, ssrc, blob[start + 12 : start + length], at)
            else:  # RTCP, malformed, telephone-event...: the per-call path, as on its own socket
                participant.receive_rtp(blob[start : start + length], participant.latched, at)

    # --- send -------------------------------------------------------------------------------

    def queue(self, data: bytes, address: tuple[str, int]) -> None:
        """A participant's send function: kept until `flush`, after the tick (an SRTP leg's
        packet comes protected)."""
        key = self._keys.get(address)
        if key is None:
            key = address_key(*address)
            if len(self._keys) > 65536:
                self._keys.clear()
            self._keys[address] = key
        if key >= 0:
            self._out.append(data)
            self._to.append(key)

    def flush(self) -> None:
        """Send what the tick queued, in batches of up to BATCH datagrams per system call."""
        out, to = self._out, self._to
        if not out:
            return
        self._out, self._to = [], []
        keys = np.array(to, np.int64)
        lengths = np.fromiter(map(len, out), np.int64, len(out))
        blob = np.frombuffer(b"".join(out), np.uint8)
        offsets = np.zeros(len(out), np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        for first in range(0, len(out), BATCH):
            last = min(first + BATCH, len(out))
            self.io.send_from(
                blob, offsets[first:last], lengths[first:last],
                keys[first:last] >> 16, keys[first:last] & 0xFFFF,
            )  # fmt: skip

    def close(self) -> None:
        self.io.close()
