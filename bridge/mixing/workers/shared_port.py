"""A media worker's shared RTP port: every shared-port call of the worker on one UDP socket.

Read once per tick with `recvmmsg` (kernel arrival times, so reading late blurs no jitter or
delay figure), each datagram routed to its call by source address (`SourceDemux`: the exact
address, else latching an unknown source to the only unlatched call from that IP, else dropped
and counted) and its header parsed as array columns; what the tick sends is queued and leaves
in one or a few `sendmmsg` calls after it. Symmetric RTP: a call receives from the port its
SDP answer named (this one) and is sent to from it.

The fast path's packets (plain RTP in the member's codec) go to the members' jitter buffers,
loss counts and packet counters as one batch: they live in `JitterColumns` while the member is
on the port (`bridge/mixing/columnar.py`), and the vectorised tick pops them in one call.

SRTP legs share the port too: their datagrams take the per-packet path (`receive_rtp`, which
unprotects and authenticates before anything is parsed), never the array fast path, and
`send_payload` protects what it hands to `queue`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import numpy as np

from bridge.mixing import columnar
from bridge.mixing.participant import Participant
from bridge.net.mmsg import BatchSocket, buffer_address, set_buffers
from bridge.rtp.jitter_columns import JitterColumns
from bridge.rtp.sender_columns import ColumnSender, SenderColumns
from bridge.rtp.source_demux import SourceDemux

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
        self._fast_type = np.full(1, -2, np.int16)
        self.senders = SenderColumns()  # the members' outgoing streams, and what waits to go
        self._column = np.zeros(1, np.int64)  # each demux slot's row of `columns`
        self.columns = JitterColumns()  # the members' incoming streams

    # --- members ----------------------------------------------------------------------------

    def add(self, participant: Participant, now: float) -> None:
        leg = participant.call_key
        self.members[leg] = participant
        self.demux.add(leg, participant.remote, participant.signalling_host, now)
        participant.send = self.queue
        participant.sender = self.senders.attach(participant.sender, participant.counters)
        self._aim(participant)
        columnar.attach(self.columns, participant)
        self._slots = None

    def _aim(self, participant: Participant) -> None:
        """Where the tick's array sends to it go: where `send_payload` would send."""
        sender = participant.sender
        if isinstance(sender, ColumnSender):
            self.senders.set_destination(sender, participant.latched or participant.remote)

    def update(self, participant: Participant) -> None:
        """After a re-INVITE: its SDP address, its codec or its SRTP may have changed."""
        self.demux.update(participant.call_key, participant.remote)
        self._slots = None  # remake the members' payload types
        self._aim(participant)
        self.columns.generation += 1  # and the tick its layout (the codec may have changed)

    def remove(self, leg: str) -> None:
        """Before the engine takes it out: its counters settled, its stream a plain sender
        again and its own jitter buffer and loss count back (it may be handed on)."""
        participant = self.members.pop(leg, None)
        self.demux.remove(leg)
        if participant is not None:
            if isinstance(participant.sender, ColumnSender):
                participant.sender = self.senders.detach(participant.sender)
            columnar.detach(participant)
        self._slots = None

    def fold(self) -> None:
        """The members' packets in and last RTP time, counted in the columns, into their
        `Participant`s (before their stats are read)."""
        for participant in self.members.values():
            columnar.fold(participant)

    @property
    def unmatched(self) -> int:
        return self.demux.unmatched

    # --- receive ----------------------------------------------------------------------------

    def receive(
        self, now: float, before_routing: Callable[[], None] | None = None, ticks_due: int = 1
    ) -> None:
        """Take every waiting datagram to its call's jitter buffer. `now` is the loop's
        (monotonic) clock; the kernel's arrival times are moved onto it.

        `before_routing` runs after each read and before its datagrams are routed: the worker
        reads its commands there. A call is handed over before its 200 OK is sent, so any of
        its packets just read was sent after its hand-over was written: reading commands
        before the datagrams (not before the read) leaves no first packet unmatched.

        `ticks_due`: how many ticks the worker will run before it reads again (more than one
        when it woke late). Each buffer may then hold that many frames more than its bound
        while they go in: a worker late by 40 ms finds three ticks' packets waiting and has
        three ticks to play them, and trimming them on the way in (then concealing the ticks
        they would have filled) made two glitches for every caller on the worker."""
        io = self.io
        for _ in range(MAX_READS):
            count = io.receive()
            if before_routing is not None:
                before_routing()
            if count == 0:
                return
            self._deliver(count, now, now - time.time(), ticks_due - 1)
            if count < io.batch:
                return

    def _deliver(self, count: int, now: float, to_loop_clock: float, slack: int = 0) -> None:
        io, columns = self.io, self.columns
        if columns.compiled:
            index, slots = self.demux.route_names(io.rx.names[:count], now)
        else:
            index, slots = self.demux.route(*io.sources(count), now)
        if slots is not self._slots:
            self._slots = slots
            self._parts = [self.members.get(leg) for leg in slots]
            views = [None if p is None else columnar.column_of(p) for p in self._parts]
            self._fast_type = np.array(
                [
                    # the payload type a member's packets take the array path with; an SRTP
                    # leg's (header in clear, payload not) never do: -1
                    -1 if p is None or v is None or p.srtp is not None else p.codec.payload_type
                    for p, v in zip(self._parts, views, strict=True)
                ]
                + [-2],  # (and one more: never empty, even with no member yet)
                np.int16,
            )
            self._column = np.array([0 if v is None else v.slot for v in views] + [0], np.int64)
        for leg in self.demux.take_latched():
            participant = self.members.get(leg)
            if participant is not None:
                participant.latched = self.demux.latched(leg)
                self._aim(participant)
        lengths, arrivals = io.stamps(count, to_loop_clock)
        rows = io.rx.data[:count]
        if slack > 0:  # every slot's bound, for this batch only (see `receive`)
            columns.max_frames += slack
        try:
            others = columns.deliver(
                rows, lengths, index, self._fast_type, self._column, arrivals
            )
            # the rest, as on a call's own socket: RTCP, malformed, telephone-event, SRTP
            parts = self._parts
            for i in np.flatnonzero(others).tolist():
                participant = parts[int(index[i])]
                if participant is None:
                    continue  # its leg was removed since the slots were made
                data = rows[i, : int(lengths[i])].tobytes()
                participant.receive_rtp(data, participant.latched, float(arrivals[i]))  # type: ignore[arg-type]
        finally:
            if slack > 0:
                columns.max_frames -= slack

    # --- send -------------------------------------------------------------------------------

    def queue(self, data: bytes, address: tuple[str, int]) -> None:
        """A participant's send function: kept until `flush`, after the tick (an SRTP leg's
        packet comes protected)."""
        self.senders.queue(data, address)

    def flush(self) -> None:
        """Send what the tick queued, in order, up to BATCH datagrams per system call
        whichever buffer they lie in (the rows of the tick's array sends, the one-by-one
        packets joined)."""
        segments = self.senders.take()  # held to the end: the iovecs point into their buffers
        if not segments:
            return
        starts = np.concatenate(
            [buffer_address(s.blob) + s.offsets.astype(np.uint64) for s in segments]
        )
        lengths = np.concatenate([s.lengths for s in segments])
        to = np.concatenate([s.destinations for s in segments])
        self.io.send_at(starts, lengths, to >> 16, to & 0xFFFF)

    def close(self) -> None:
        self.io.close()
