"""The seam between call policy and media: the commands the conference core gives, the reports
it gets back, and the `MediaBackend` protocol that carries them.

Above the seam a participant is a call leg key with negotiated media and controls; below it,
rooms, jitter buffers, prompts and mixing live wherever the backend puts them (this process,
a media worker process, later a vectorised engine or a WebRTC leg). Nothing above asks where.
Everything here is a frozen dataclass, so a command or report can cross a process boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bridge.media.srtp import SrtpKeys
from bridge.mixing.participant import MediaCounters

Address = tuple[str, int]


@dataclass(frozen=True)
class NegotiatedMedia:
    """What SDP offer/answer settled for a leg."""

    codec: str  # "PCMU" | "PCMA" | "G722" | "OPUS"
    remote: Address  # where the SDP says to send (0 port: send nothing)
    telephone_event_pt: int | None
    on_hold: bool  # the phone is sendonly/inactive: not mixed, sent nothing
    payload_type: int | None = None  # the codec's, when dynamic (Opus)
    fmtp: str | None = None  # the peer's fmtp for it (Opus: RFC 7587 parameters)
    srtp: SrtpKeys | None = None  # SDES keys: the leg's RTP is SRTP (bridge/media/srtp.py)


@dataclass(frozen=True)
class Controls:
    """The per-participant switches the core decides (keypad, API)."""

    muted: bool = False
    deaf: bool = False
    held: bool = False  # put on hold by the API: hears hold music
    volume_db: int = 0  # listening volume


@dataclass(frozen=True)
class Identity:
    """Who the leg is, for the media side's own records and logs."""

    participant_id: str
    caller: str
    display_name: str
    signalling_host: str  # RTP is also accepted from here (NAT'd phones)


# --- commands (core -> media) -----------------------------------------------------------------


@dataclass(frozen=True)
class AddParticipant:
    """Start a leg's media on the port `MediaBackend.reserve` gave it. `room` None: the lobby,
    where a caller hears only its own prompts (code entry, "press # to join")."""

    leg: str
    identity: Identity
    media: NegotiatedMedia
    controls: Controls
    room: str | None
    now: float


@dataclass(frozen=True)
class MoveParticipant:
    """From the lobby into `room` (or between rooms), keeping the stream continuous."""

    leg: str
    room: str


@dataclass(frozen=True)
class RemoveParticipant:
    """Stop the leg's media and free its port (also for a leg whose media never started)."""

    leg: str


@dataclass(frozen=True)
class UpdateMedia:
    leg: str
    media: NegotiatedMedia


@dataclass(frozen=True)
class UpdateControls:
    leg: str
    controls: Controls


@dataclass(frozen=True)
class PlayPrompt:
    leg: str
    prompt: str  # a packaged prompt's name
    replace_room_audio: bool
    sequence: int  # the core's count of prompt commands for this leg


@dataclass(frozen=True)
class ClearPrompts:
    leg: str
    sequence: int


@dataclass(frozen=True)
class SetRoomMixing:
    """False while a conference is HOLDING: members wait without hearing each other."""

    room: str
    mixing: bool


@dataclass(frozen=True)
class StartRecording:
    """Write the room's mix to `path` ("wav" or "ogg": Opus in Ogg) until StopRecording, the
    room closes or the disk fails; each ends in one RecordingEnded report."""

    room: str
    path: str
    format: str


@dataclass(frozen=True)
class StopRecording:
    room: str


MediaCommand = (
    AddParticipant
    | MoveParticipant
    | RemoveParticipant
    | UpdateMedia
    | UpdateControls
    | PlayPrompt
    | ClearPrompts
    | SetRoomMixing
    | StartRecording
    | StopRecording
)


# --- reports (media -> core) ------------------------------------------------------------------


@dataclass(frozen=True)
class DigitPressed:
    leg: str
    digit: str
    method: str  # "rfc4733" | "inband"


@dataclass(frozen=True)
class TalkingChanged:
    leg: str
    talking: bool


@dataclass(frozen=True)
class PromptsIdle:
    """Every prompt queued up to command `sequence` has played (or was cleared)."""

    leg: str
    sequence: int


@dataclass(frozen=True)
class ParticipantLost:
    """The media side gave up on a leg: its RTP stopped (`rtp_timeout`) or the process mixing
    it died (`media_worker_died`). The core hangs the call up."""

    leg: str
    reason: str


@dataclass(frozen=True)
class RecordingEnded:
    """A room's recording is over: `reason` is "stopped", "room_closed", "media_worker_died",
    "not_mixed_here" (no such room) or "error: ..." (the disk refused)."""

    room: str
    path: str
    duration_s: float
    size_bytes: int
    reason: str


MediaReport = DigitPressed | TalkingChanged | PromptsIdle | ParticipantLost | RecordingEnded

RTP_TIMEOUT = "rtp_timeout"
WORKER_DIED = "media_worker_died"


@dataclass(frozen=True)
class MediaStats:
    """A leg's counters for the API (at most a second old on a worker)."""

    counters: MediaCounters
    lost: int  # RTP sequence gaps: packets the network lost
    jitter_ms: float
    concealed: int = 0  # ticks its jitter buffer had no frame for (the mixer concealed them)
    trimmed: int = 0  # frames its jitter buffer dropped to bound the delay


@dataclass(frozen=True)
class MediaTotals:
    """Since start, over every leg, for /metrics."""

    packets_in: int
    packets_out: int
    packets_lost: int
    lateness_counts: tuple[int, ...]
    lateness_total_s: float
    unmatched: int = 0  # datagrams on shared RTP ports from no call's address (dropped)
    srtp_rejected: int = 0  # SRTP packets dropped: forged, replayed, or plain RTP
    frames_concealed: int = 0  # `MediaStats.concealed`, summed
    frames_trimmed: int = 0  # `MediaStats.trimmed`, summed


class MediaBackend(Protocol):
    """Where legs' media is received, mixed and sent. The server glue drives it: `reserve` when
    a leg needs a port for its SDP, `apply` the core's commands, `tick` every 20 ms, `check`
    once a second, and feed `take_reports` back to the core."""

    def reserve(self, leg: str, host: str, room: str | None = None) -> int | None:
        """Bind an RTP port for `leg` (None when the range is exhausted); `room` when it is
        known already (a backend may answer with a port shared by the room's calls)."""
        ...

    def apply(self, command: MediaCommand) -> None: ...

    def tick(self, now: float, deadline: float) -> None:
        """The 20 ms step of the rooms mixed in this process (if any)."""
        ...

    def check(self, now: float, rtp_timeout_s: float) -> None:
        """Once a second: legs whose RTP stopped become ParticipantLost reports."""
        ...

    def take_reports(self) -> list[MediaReport]: ...

    def stats(self, leg: str) -> MediaStats | None: ...

    def totals(self) -> MediaTotals: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
