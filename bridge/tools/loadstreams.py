"""Every call's RTP of one load process as arrays: sent and received in batches.

Why: a call per socket, a packet built per call, a `sendto` and a `datagram_received` per
packet made the load generator cost 0.6-0.8x what the bridge costs per participant, so the
machine ran out before the bridge did. Here one UDP socket carries every call of the process
(each call's SDP offers its own loopback address on it, 127.64.x.y, and the call's packets
leave from that address (IP_PKTINFO), so the bridge tells the calls apart by source even on a
port shared by many; what the bridge sends is told apart by the address it went to), a
pacer slot's packets are built as one array (headers written as columns, payloads gathered from
frames prepared ahead) and leave in one `sendmmsg`, and what comes back is read by `recvmmsg`
and accounted as arrays: RFC 3550 loss, jitter and lateness (the same figures `RtpStats` gives,
`tests/unit/test_loadstreams.py`), burst onsets and the analysis window's audio (digested every
`DIGEST_SECONDS` in one pass).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import numpy as np

from bridge.media.g711 import CODECS, FRAME_SAMPLES
from bridge.net.mmsg import BatchSocket, ipv4, set_buffers
from bridge.tools.loadplan import BURST_FRAMES, BURST_HZ, BURST_PERIOD, FRAME_SECONDS, RATE
from bridge.tools.loadrtp import BURST_DB, DECODE_TABLES, LATE_SECONDS, frame_levels

PACKET_BYTES = 12 + FRAME_SAMPLES
BATCH = 512
ROW = np.dtype(
    {
        "names": ["first", "second", "seq", "ts", "ssrc", "payload"],
        "formats": ["u1", "u1", ">u2", ">u4", ">u4", ("u1", FRAME_SAMPLES)],
        "offsets": [0, 1, 2, 4, 8, 12],
        "itemsize": 2048,
    }
)
_TS_SECONDS = 1.0 / RATE
monotonic = time.monotonic


@dataclass
class Marker:
    """A call that sends the delay bursts: its burst schedule (a few per room: Python)."""

    burst: np.ndarray  # linear samples, a frame per row, added to the call's own frames
    next_burst: float
    left: int = 0
    sent_at: list[float] = field(default_factory=list)


class ReceiveStats:
    """`RtpStats` for many calls at once: each array holds one figure per call (row)."""

    def __init__(self, capacity: int) -> None:
        self.received = np.zeros(capacity, np.int64)
        self.late = np.zeros(capacity, np.int64)
        self.reordered = np.zeros(capacity, np.int64)
        self.jitter = np.zeros(capacity)
        self.max_jitter = np.zeros(capacity)
        self.base_seq = np.zeros(capacity, np.int64)
        self.max_seq = np.zeros(capacity, np.int64)
        self.cycles = np.zeros(capacity, np.int64)
        self.first_ts = np.zeros(capacity, np.int64)
        self.last_transit = np.zeros(capacity)
        self.min_transit = np.full(capacity, np.inf)

    def receive(self, rows: np.ndarray, seq: np.ndarray, ts: np.ndarray, now: np.ndarray) -> None:
        """Account packets in arrival order; a row may come several times (taken in turns)."""
        while rows.size:
            unique, first = np.unique(rows, return_index=True)
            if unique.size == rows.size:
                self._receive_once(rows, seq, ts, now)
                return
            self._receive_once(rows[first], seq[first], ts[first], now[first])
            rest = np.ones(rows.size, bool)
            rest[first] = False
            rows, seq, ts, now = rows[rest], seq[rest], ts[rest], now[rest]

    def _receive_once(
        self, rows: np.ndarray, seq: np.ndarray, ts: np.ndarray, now: np.ndarray
    ) -> None:
        seq = seq.astype(np.int64)
        ts = ts.astype(np.int64)
        new = self.received[rows] == 0
        starting = rows[new]
        self.base_seq[starting] = seq[new]
        self.max_seq[starting] = seq[new]
        self.first_ts[starting] = ts[new]
        max_seq = self.max_seq[rows]
        delta = (seq - max_seq) & 0xFFFF
        ahead = (delta > 0) & (delta < 0x8000) & ~new
        self.cycles[rows] += np.where(ahead & (seq < max_seq), 0x10000, 0)
        self.max_seq[rows] = np.where(ahead, seq, max_seq)
        self.reordered[rows] += ~ahead & ~new
        self.received[rows] += 1
        transit = now - ((ts - self.first_ts[rows]) & 0xFFFF_FFFF) * _TS_SECONDS
        jitter = self.jitter[rows]
        jitter = np.where(
            new, jitter, jitter + (np.abs(transit - self.last_transit[rows]) - jitter) / 16.0
        )
        self.jitter[rows] = jitter
        self.max_jitter[rows] = np.maximum(self.max_jitter[rows], jitter)
        self.last_transit[rows] = transit
        lowest = self.min_transit[rows]
        fastest = transit < lowest
        self.min_transit[rows] = np.where(fastest, transit, lowest)
        self.late[rows] += ~fastest & (transit - lowest > LATE_SECONDS)

    def expected(self, row: int) -> int:
        if not self.received[row]:
            return 0
        return int(self.cycles[row] + self.max_seq[row] - self.base_seq[row] + 1)

    def lost(self, row: int) -> int:
        return max(0, self.expected(row) - int(self.received[row]))


CALL_ADDRESSES = ipv4("127.64.0.0")  # call `row` is at CALL_ADDRESSES + row + 1
SO_BINDTODEVICE = 25


class Streams:
    """The RTP of up to `capacity` calls on one socket: `add` a call, `start` it once answered,
    `send_due` per pacer slot, `receive` on every pacer wake, `digest` now and then."""

    def __init__(
        self, capacity: int, codec: str, host: str = "127.0.0.1", per_call_address: bool = False
    ) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # With `per_call_address` (a bridge on shared RTP ports, which tells calls apart by
        # source address), each call its own loopback address (127.64.0.0 + row + 1) on this one
        # socket, as if each were a phone of its own. The socket then listens on the wildcard
        # address held to the loopback device (SO_BINDTODEVICE: nothing from another interface
        # reaches it); where that is refused, every call shares `host`. Otherwise the socket is
        # bound to `host` alone, and the bridge's per-call sockets tell the calls apart.
        self.per_call_address = per_call_address and host.startswith("127.")
        if self.per_call_address:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, b"lo")
                sock.bind(("0.0.0.0", 0))  # held to "lo" just above
            except OSError:
                self.per_call_address = False
        if not self.per_call_address:
            sock.bind((host, 0))
        set_buffers(sock)
        self.io = BatchSocket(sock, batch=BATCH, size=ROW.itemsize, timestamps=True)
        if self.per_call_address:
            self.io.with_pktinfo()
        self.shared_host = host
        # the kernel stamps arrivals on the wall clock; bursts are timed on the monotonic one
        self._wall_to_monotonic = time.monotonic() - time.time()
        self.port: int = sock.getsockname()[1]
        self.codec = CODECS[codec]
        self.capacity = capacity
        self.count = 0
        self.host = np.zeros(capacity, np.uint32)
        self.remote_port = np.zeros(capacity, np.uint16)
        self.by_port = np.full(65536, -1, np.int32)  # the bridge's port -> row
        self.seq = np.zeros(capacity, np.uint16)
        self.ts = np.zeros(capacity, np.uint32)
        self.ssrc = np.zeros(capacity, np.uint32)
        self.frame_start = np.zeros(capacity, np.int64)
        self.frame_count = np.ones(capacity, np.int64)
        self.position = np.zeros(capacity, np.int64)
        self.next_time = np.full(capacity, np.inf)
        self.sent = np.zeros(capacity, np.int64)
        self.odd = np.zeros(capacity, np.int64)
        self.unknown = 0  # datagrams from a port no call of ours was answered from
        self.stats = ReceiveStats(capacity)
        self.markers: dict[int, Marker] = {}
        self.is_marker = np.zeros(capacity, bool)
        self._bank: list[np.ndarray] = []  # every call's frames, joined at the first send
        self._banked = 0
        self.bank = np.zeros((0, FRAME_SAMPLES), np.uint8)
        self._tx = self.io.tx.data.view(ROW).reshape(-1)
        self._rx = self.io.rx.data.view(ROW).reshape(-1)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.burst_on = np.zeros(capacity, bool)
        self.onsets: dict[int, list[float]] = {}
        self.window = (float("inf"), float("inf"))
        self._kept: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, samples) in the window
        rng = np.random.default_rng()
        self.seq[:] = rng.integers(0, 1 << 16, capacity)
        self.ts[:] = rng.integers(0, 1 << 32, capacity, dtype=np.uint64)
        self.ssrc[:] = rng.integers(1, 1 << 32, capacity, dtype=np.uint64)

    # --- calls ----------------------------------------------------------------------------

    def add(self, frames: list[bytes], burst: np.ndarray | None = None) -> int:
        """A call's row; `frames` (looped) are encoded payloads, `burst` a marker's frames as
        linear samples (`loadplan.burst_samples`), added to its frames as they leave."""
        row = self.count
        if row >= self.capacity:
            raise ValueError("more calls than this process was sized for")
        self.count += 1
        start = self._banked
        self._bank.append(np.frombuffer(b"".join(frames), np.uint8).reshape(-1, FRAME_SAMPLES))
        self._banked += len(frames)
        self.frame_start[row], self.frame_count[row] = start, len(frames)
        if burst is not None:
            self.markers[row] = Marker(burst, float("inf"))
            self.is_marker[row] = True
        self.onsets[row] = []
        return row

    def local_host(self, row: int) -> str:
        """The address `row`'s SDP offers (and its RTP comes from)."""
        if not self.per_call_address:
            return self.shared_host
        return socket.inet_ntoa(int(CALL_ADDRESSES + row + 1).to_bytes(4, "big"))

    def start(self, row: int, remote: tuple[str, int], first: float, first_burst: float) -> None:
        self.host[row] = ipv4(remote[0])
        self.remote_port[row] = remote[1]
        self.by_port[remote[1]] = row
        self.next_time[row] = first
        if row in self.markers:
            self.markers[row].next_burst = first_burst

    def stop(self, row: int) -> None:
        self.next_time[row] = np.inf

    def streaming(self, row: int) -> bool:
        return bool(np.isfinite(self.next_time[row]))

    # --- sending ----------------------------------------------------------------------------

    def send_due(self, rows: np.ndarray, due: float) -> None:
        """Send every frame of `rows` whose time has come (normally one each): drift-free,
        catching up after a stall, BATCH packets per system call."""
        due_rows = rows[self.next_time[rows] <= due]
        while due_rows.size:
            for chunk in range(0, due_rows.size, BATCH):
                self._send(due_rows[chunk : chunk + BATCH])
            due_rows = due_rows[self.next_time[due_rows] <= due]

    def _send(self, rows: np.ndarray) -> None:
        if self.bank.shape[0] != self._banked:
            self.bank = np.concatenate(self._bank)
        count = rows.size
        out = self._tx[:count]
        out["first"] = 0x80
        out["second"] = self.codec.payload_type
        out["seq"] = self.seq[rows]
        out["ts"] = self.ts[rows]
        out["ssrc"] = self.ssrc[rows]
        position = self.position[rows]
        out["payload"] = self.bank[self.frame_start[rows] + position % self.frame_count[rows]]
        for i in np.flatnonzero(self.is_marker[rows]).tolist():
            row = int(rows[i])
            self._marker_payload(self.markers[row], float(self.next_time[row]), out["payload"][i])
        sources = CALL_ADDRESSES + 1 + rows.astype(np.uint32) if self.per_call_address else None
        self.io.send(count, self.host[rows], self.remote_port[rows], PACKET_BYTES, sources)
        self.seq[rows] += 1
        self.ts[rows] += FRAME_SAMPLES
        self.position[rows] = position + 1
        self.sent[rows] += 1
        self.next_time[rows] += FRAME_SECONDS

    def _marker_payload(self, marker: Marker, frame_time: float, payload: np.ndarray) -> None:
        """Add the burst's next frame to `payload` (in place) while a burst is due or on."""
        if marker.left == 0 and frame_time >= marker.next_burst:
            marker.next_burst += BURST_PERIOD
            marker.left = BURST_FRAMES
            marker.sent_at.append(monotonic())
        if marker.left:
            own = self.codec.decode(payload.tobytes()).astype(np.int32)
            mixed = np.clip(own + marker.burst[BURST_FRAMES - marker.left], -32768, 32767)
            payload[:] = np.frombuffer(self.codec.encode(mixed.astype(np.int16)), np.uint8)
            marker.left -= 1

    # --- receiving --------------------------------------------------------------------------

    def receive(self) -> None:
        """Read and account everything waiting, a batch per system call. Called on the pacer's
        wakes, not on readiness, so batches are big; each packet's time is the kernel's."""
        while count := self.io.receive():
            now = self.io.arrivals(count) + self._wall_to_monotonic
            now = np.where(np.isnan(now), monotonic(), now)
            packets = self._rx[:count]
            if self.per_call_address:  # the call is the address it was sent to
                rows = self.io.destinations(count).astype(np.int64) - (CALL_ADDRESSES + 1)
                rows = np.where((rows >= 0) & (rows < self.count), rows, -1)
            else:  # the call is the bridge port it came from
                _, ports = self.io.sources(count)
                rows = self.by_port[ports]
            known = rows >= 0
            self.unknown += int(count - known.sum())
            plain = known & (self.io.lengths(count) == PACKET_BYTES) & (packets["first"] == 0x80)
            odd = rows[known & ~plain]
            if odd.size:
                np.add.at(self.odd, odd, 1)
            if not plain.all():
                rows, packets, now = rows[plain], packets[plain], now[plain]
            if rows.size:
                self.stats.receive(rows, packets["seq"], packets["ts"], now)
                self._pending.append((rows.copy(), now, packets["payload"].copy()))
            if count < self.io.batch:
                return

    def digest(self) -> None:
        """What came since the last digest: burst onsets per call, the window's audio kept."""
        if not self._pending:
            return
        rows = np.concatenate([p[0] for p in self._pending])
        arrivals = np.concatenate([p[1] for p in self._pending])
        codes = np.concatenate([p[2] for p in self._pending])
        self._pending = []
        order = np.argsort(rows, kind="stable")  # per call, in arrival order
        rows, arrivals, codes = rows[order], arrivals[order], codes[order]
        samples = DECODE_TABLES[self.codec.name][codes]
        flags = frame_levels(samples, BURST_HZ) > BURST_DB
        starts = np.ones(rows.size, bool)
        starts[1:] = rows[1:] != rows[:-1]
        previous = np.empty_like(flags)
        previous[1:] = flags[:-1]
        previous[starts] = self.burst_on[rows[starts]]
        for row, at in zip(
            rows[flags & ~previous].tolist(), arrivals[flags & ~previous].tolist(), strict=True
        ):
            self.onsets[row].append(at)
        ends = np.ones(rows.size, bool)
        ends[:-1] = starts[1:]
        self.burst_on[rows[ends]] = flags[ends]
        inside = (arrivals >= self.window[0]) & (arrivals < self.window[1])
        if inside.any():
            self._kept.append((rows[inside], samples[inside]))

    def audio(self, row: int) -> np.ndarray:
        """The analysis window's audio this call received, in arrival order."""
        parts = [samples[rows == row].reshape(-1) for rows, samples in self._kept]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def close(self) -> None:
        self.io.close()
