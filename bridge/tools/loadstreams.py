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
`DIGEST_SECONDS` in one pass). Those per-packet loops, and the building of a send batch, run
compiled when built (`_loadcols.c`, one call per batch; `loadnative` says which runs), numpy's
otherwise: the same figures, onsets, audio and packets (`tests/unit/test_loadcols.py`).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import numpy as np

from bridge.media.g711 import CODECS, FRAME_SAMPLES
from bridge.media.tones import FULL_SCALE
from bridge.net.mmsg import BatchSocket, ipv4, set_buffers
from bridge.tools import loadnative
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

    def __init__(self, capacity: int, native: bool | None = None) -> None:
        self.native = loadnative.wanted() if native is None else native
        # two blocks, a row per figure (in the order _loadcols.c reads them), each figure a view
        self._ints = np.zeros((7, capacity), np.int64)
        self._floats = np.zeros((4, capacity))
        self.received, self.late, self.reordered = self._ints[0], self._ints[1], self._ints[2]
        self.base_seq, self.max_seq, self.cycles = self._ints[3], self._ints[4], self._ints[5]
        self.first_ts = self._ints[6]
        self.jitter, self.max_jitter = self._floats[0], self._floats[1]
        self.last_transit, self.min_transit = self._floats[2], self._floats[3]
        self.min_transit[:] = np.inf

    def receive(self, rows: np.ndarray, seq: np.ndarray, ts: np.ndarray, now: np.ndarray) -> None:
        """Account packets in arrival order; a row may come several times (taken in turns)."""
        if self.native:
            loadnative.module().stats(
                rows.size,
                np.ascontiguousarray(rows, np.int64),
                seq.astype(np.int64),
                ts.astype(np.int64),
                np.ascontiguousarray(now, np.float64),
                *self.columns(),
            )
            return
        while rows.size:
            unique, first = np.unique(rows, return_index=True)
            if unique.size == rows.size:
                self._receive_once(rows, seq, ts, now)
                return
            self._receive_once(rows[first], seq[first], ts[first], now[first])
            rest = np.ones(rows.size, bool)
            rest[first] = False
            rows, seq, ts, now = rows[rest], seq[rest], ts[rest], now[rest]

    def columns(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        """What the compiled `stats` and `receive` take after the packets."""
        return self._ints, self._floats, _TS_SECONDS, LATE_SECONDS

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

    def counts(self) -> np.ndarray:
        """Every call's packets received, expected and late so far (rows of a copy): two of
        them taken at a window's edges give the window's."""
        expected = np.where(self.received > 0, self.cycles + self.max_seq - self.base_seq + 1, 0)
        return np.stack([self.received, expected, self.late])


class Stash:
    """What the compiled `receive` took since the last digest (each packet's call, arrival and
    payload, `count` of them), and room for what the compiled digest writes out."""

    def __init__(self, capacity: int = 1024) -> None:
        self.count = 0
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        self.rows = np.zeros(capacity, np.int64)
        self.arrivals = np.zeros(capacity)
        self.codes = np.zeros((capacity, FRAME_SAMPLES), np.uint8)
        self.onset_rows = np.zeros(capacity, np.int64)
        self.onset_at = np.zeros(capacity)
        self.kept_rows = np.zeros(capacity, np.int64)
        self.kept_samples = np.zeros((capacity, FRAME_SAMPLES), np.int16)

    def reserve(self, more: int) -> None:
        """Room for `more` packets after those held (grown twice over, the held kept)."""
        if self.count + more <= self.rows.size:
            return
        held = self.rows[: self.count], self.arrivals[: self.count], self.codes[: self.count]
        self._allocate(max(2 * self.rows.size, self.count + more))
        self.rows[: self.count], self.arrivals[: self.count], self.codes[: self.count] = held


def burst_basis() -> tuple[np.ndarray, float]:
    """`frame_levels`' DFT at BURST_HZ as the compiled digest takes it: the Hann-windowed cosine
    then sine of a frame (one array), and the squared magnitude past which a frame's level
    passes BURST_DB."""
    hann = np.hanning(FRAME_SAMPLES)
    angle = 2 * np.pi * BURST_HZ * np.arange(FRAME_SAMPLES) / RATE
    basis = np.concatenate([hann * np.cos(angle), hann * np.sin(angle)])
    magnitude = 10.0 ** (BURST_DB / 20.0) * FULL_SCALE * hann.sum() / 2.0
    return basis, float(magnitude**2)


BURST_BASIS, BURST_POWER = burst_basis()
CALL_ADDRESSES = ipv4("127.64.0.0")  # call `row` is at CALL_ADDRESSES + row + 1
SO_BINDTODEVICE = 25


class Streams:
    """The RTP of up to `capacity` calls on one socket: `add` a call, `start` it once answered,
    `send_due` per pacer slot, `receive` on every pacer wake, `digest` now and then."""

    def __init__(
        self,
        capacity: int,
        codec: str,
        host: str = "127.0.0.1",
        per_call_address: bool = False,
        native: bool | None = None,
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
        self.native = loadnative.wanted() if native is None else native
        self.stats = ReceiveStats(capacity, self.native)
        self.markers: dict[int, Marker] = {}
        self.burst_due = np.full(capacity, np.inf)  # a marker's next burst; -inf while one is on
        self._bank: list[np.ndarray] = []  # every call's frames, joined at the first send
        self._banked = 0
        self.bank = np.zeros((0, FRAME_SAMPLES), np.uint8)
        self._tx = self.io.tx.data.view(ROW).reshape(-1)
        self._rx = self.io.rx.data.view(ROW).reshape(-1)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # numpy's path
        self._stash = Stash()  # the compiled path's
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
            self.markers[row].next_burst = self.burst_due[row] = first_burst

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
        if self.native:
            rows = np.ascontiguousarray(rows, np.int64)
            loadnative.module().build(
                count,
                rows,
                self.io.tx.data,
                self.io.tx.size,
                PACKET_BYTES,
                self.codec.payload_type,
                self.seq,
                self.ts,
                self.ssrc,
                self.frame_start,
                self.frame_count,
                self.position,
                self.bank,
            )
        else:
            self._build_numpy(rows)
        payloads = self._tx["payload"]
        for i in np.flatnonzero(self.next_time[rows] >= self.burst_due[rows]).tolist():
            row = int(rows[i])
            self._marker_payload(row, float(self.next_time[row]), payloads[i])
        sources = CALL_ADDRESSES + 1 + rows.astype(np.uint32) if self.per_call_address else None
        self.io.send(count, self.host[rows], self.remote_port[rows], PACKET_BYTES, sources)
        if self.native:
            loadnative.module().advance(
                count, rows, self.seq, self.ts, self.position, self.sent, self.next_time,
                FRAME_SAMPLES, FRAME_SECONDS,
            )  # fmt: skip
        else:
            self._advance_numpy(rows)

    def _build_numpy(self, rows: np.ndarray) -> None:
        out = self._tx[: rows.size]
        out["first"] = 0x80
        out["second"] = self.codec.payload_type
        out["seq"] = self.seq[rows]
        out["ts"] = self.ts[rows]
        out["ssrc"] = self.ssrc[rows]
        frames = self.frame_start[rows] + self.position[rows] % self.frame_count[rows]
        out["payload"] = self.bank[frames]

    def _advance_numpy(self, rows: np.ndarray) -> None:
        self.seq[rows] += 1
        self.ts[rows] += FRAME_SAMPLES
        self.position[rows] += 1
        self.sent[rows] += 1
        self.next_time[rows] += FRAME_SECONDS

    def _marker_payload(self, row: int, frame_time: float, payload: np.ndarray) -> None:
        """Add the burst's next frame to `payload` (in place) while a burst is due or on."""
        marker = self.markers[row]
        if marker.left == 0 and frame_time >= marker.next_burst:
            marker.next_burst += BURST_PERIOD
            marker.left = BURST_FRAMES
            marker.sent_at.append(monotonic())
        if marker.left:
            own = self.codec.decode(payload.tobytes()).astype(np.int32)
            mixed = np.clip(own + marker.burst[BURST_FRAMES - marker.left], -32768, 32767)
            payload[:] = np.frombuffer(self.codec.encode(mixed.astype(np.int16)), np.uint8)
            marker.left -= 1
        self.burst_due[row] = -np.inf if marker.left else marker.next_burst

    # --- receiving --------------------------------------------------------------------------

    def receive(self) -> None:
        """Read and account everything waiting, a batch per system call. Called on the pacer's
        wakes, not on readiness, so batches are big; each packet's time is the kernel's."""
        while count := self.io.receive():
            rows = self._rows_of(count)
            if self.native:
                self._take(count, rows)
            else:
                self._take_numpy(count, rows)
            if count < self.io.batch:
                return

    def _rows_of(self, count: int) -> np.ndarray:
        """Each datagram's call, -1 where none of ours."""
        if self.per_call_address:  # the call is the address it was sent to
            rows = self.io.destinations(count).astype(np.int64) - (CALL_ADDRESSES + 1)
            return np.where((rows >= 0) & (rows < self.count), rows, -1)
        _, ports = self.io.sources(count)  # the call is the bridge port it came from
        return self.by_port[ports]

    def _take(self, count: int, rows: np.ndarray) -> None:
        lengths, now = self.io.stamps(count, self._wall_to_monotonic)
        stash = self._stash
        stash.reserve(count)
        unknown, stash.count = loadnative.module().receive(
            count,
            rows.astype(np.int64),
            lengths,
            self.io.rx.data,
            self.io.rx.size,
            now,
            self.odd,
            *self.stats.columns(),
            PACKET_BYTES,
            stash.rows,
            stash.arrivals,
            stash.codes,
            stash.count,
        )
        self.unknown += unknown

    def _take_numpy(self, count: int, rows: np.ndarray) -> None:
        now = self.io.arrivals(count) + self._wall_to_monotonic
        now = np.where(np.isnan(now), monotonic(), now)
        packets = self._rx[:count]
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

    def digest(self) -> None:
        """What came since the last digest: burst onsets per call, the window's audio kept."""
        if self.native:
            self._digest_stash()
        else:
            self._digest_numpy()

    def _digest_stash(self) -> None:
        stash = self._stash
        if not stash.count:
            return
        onsets, kept = loadnative.module().digest(
            stash.count,
            stash.rows,
            stash.arrivals,
            stash.codes,
            DECODE_TABLES[self.codec.name],
            BURST_BASIS,
            BURST_POWER,
            self.burst_on,
            float(self.window[0]),
            float(self.window[1]),
            stash.onset_rows,
            stash.onset_at,
            stash.kept_rows,
            stash.kept_samples,
        )
        stash.count = 0
        at_times = stash.onset_at[:onsets].tolist()
        for row, at in zip(stash.onset_rows[:onsets].tolist(), at_times, strict=True):
            self.onsets[row].append(at)
        if kept:
            self._kept.append((stash.kept_rows[:kept].copy(), stash.kept_samples[:kept].copy()))

    def _digest_numpy(self) -> None:
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
