"""What the main process and a media worker say to each other over their Unix socket pair.

Commands go main -> worker, reports worker -> main; each is a small frozen dataclass, a message
is one pickled list of them on a SOCK_SEQPACKET socket (boundaries kept by the kernel), and a
participant's RTP socket travels with its `HandOver` as an SCM_RIGHTS file descriptor.
Both ends are our own code of the same version, so pickle is safe here; nothing from the
network is ever unpickled.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterable
from dataclasses import dataclass, fields
from operator import attrgetter

import numpy as np

from bridge.mixing.backend import (
    ClearPrompts,
    DigitPressed,
    MediaStats,
    PlayPrompt,
    PromptsIdle,
    RecordingEnded,
    RemoveParticipant,
    SetRoomMixing,
    StartRecording,
    StopRecording,
    TalkingChanged,
    UpdateControls,
    UpdateMedia,
)
from bridge.mixing.participant import MediaCounters
from bridge.net.mixer_clock import LatenessHistogram

MAX_MESSAGE = 8 * 1024 * 1024  # a stats report for thousands of participants fits easily
SOCKET_BUFFER = 8 * 1024 * 1024


# --- main -> worker -------------------------------------------------------------------------


@dataclass(frozen=True)
class HandOver:
    """Take over a participant: its pickled media state, and its RTP socket as the message's fd
    (none when `shared`: its RTP is on the worker's shared port).

    `state` is a `Participant` pickled without its send function (see `handoff`), so its jitter
    buffer, RTP sender (SSRC and sequence numbers), prompts and flags carry on. `sequence` is
    the prompt command its queued prompts answer to, if any. Every other command is one of the
    seam's own (`bridge.mixing.backend`), sent as it is.
    """

    room: str | None  # None: the worker's lobby (a shared-port leg waiting for "#")
    mixing: bool
    state: bytes
    sequence: int | None
    shared: bool = False  # on the worker's shared RTP port: no socket travels with it


Command = (
    HandOver
    | RemoveParticipant
    | UpdateMedia
    | UpdateControls
    | PlayPrompt
    | ClearPrompts
    | SetRoomMixing
    | StartRecording
    | StopRecording
)


# --- worker -> main -------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerReady:
    """The worker's loop runs: participants handed over now are served at once."""

    pid: int


@dataclass(frozen=True)
class ParticipantStats:
    call_key: str
    counters: MediaCounters
    lost: int
    jitter_ms: float
    last_rtp: float  # monotonic: the same clock in every process of the machine
    concealed: int = 0  # `MediaStats.concealed`
    trimmed: int = 0  # `MediaStats.trimmed`

    @property
    def media(self) -> MediaStats:
        """These figures as the API's."""
        return MediaStats(self.counters, self.lost, self.jitter_ms, self.concealed, self.trimmed)


COUNTERS = tuple(f.name for f in fields(MediaCounters))
_read_counters = attrgetter(*COUNTERS)


@dataclass(frozen=True)
class StatsTable:
    """Many participants' `ParticipantStats` as columns. Why: a worker of 500 reports every
    second, and 1,000 pickled objects a second set off the main process' garbage collector
    over its whole heap (tens of ms now and then); a few arrays do not, and the main process
    keeps a member's row (`row`) rather than objects of its own."""

    call_keys: tuple[str, ...]
    counts: np.ndarray  # (participants, len(COUNTERS) + 3) int64: the counters, then lost,
    # concealed and trimmed
    jitter_ms: np.ndarray
    last_rtp: np.ndarray

    @classmethod
    def of(cls, stats: Iterable[ParticipantStats]) -> StatsTable:
        rows = list(stats)
        counts = np.array(
            [(*_read_counters(s.counters), s.lost, s.concealed, s.trimmed) for s in rows],
            np.int64,
        ).reshape(len(rows), len(COUNTERS) + 3)
        return cls(
            tuple(s.call_key for s in rows), counts,
            np.array([s.jitter_ms for s in rows], np.float64),
            np.array([s.last_rtp for s in rows], np.float64),
        )  # fmt: skip

    def row(self, i: int) -> ParticipantStats:
        *counters, lost, concealed, trimmed = self.counts[i].tolist()
        return ParticipantStats(
            self.call_keys[i], MediaCounters(*counters), lost, float(self.jitter_ms[i]),
            float(self.last_rtp[i]), concealed, trimmed,
        )  # fmt: skip


@dataclass(frozen=True)
class ParticipantRemoved:
    """The participant's final counters, once its socket is closed in the worker."""

    stats: ParticipantStats


@dataclass(frozen=True)
class WorkerStats:
    """Sent about once a second: the worker's load, how late its ticks ran since the last
    report, its CPU time so far, and its participants' counters."""

    at: float  # monotonic: the participants' counters and last_rtp are as of this time
    rooms: int
    participants: int
    lateness: LatenessHistogram
    cpu_seconds: float
    participants_stats: StatsTable
    unmatched: int = 0  # datagrams on the shared RTP port that matched no call, since start


Report = (
    WorkerReady
    | DigitPressed
    | TalkingChanged
    | PromptsIdle
    | RecordingEnded
    | ParticipantRemoved
    | WorkerStats
)


# --- the socket pair --------------------------------------------------------------------------


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """(main's end, the worker's end), with buffers large enough for a burst of commands."""
    ends = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in ends:
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    return ends


def encode(messages: list[Command] | list[Report]) -> bytes:
    return pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> list:  # type: ignore[type-arg]
    return pickle.loads(data)  # our own process on the other end, see above


def receive(sock: socket.socket) -> tuple[bytes, list[int]] | None:
    """One message and the file descriptors it carried; None when the other end is gone.

    Raises BlockingIOError when nothing is waiting (non-blocking socket)."""
    try:
        data, fds, _flags, _address = socket.recv_fds(sock, MAX_MESSAGE, 4)
    except (ConnectionResetError, BrokenPipeError):
        return None
    if not data:
        return None
    return data, fds
