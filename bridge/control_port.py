"""What the bridge offers the layers above it (the control plane, its API, tests): one port.

The control plane never touches rooms, participants' media state, call legs or worker
processes. It reads snapshots (frozen records, taken when asked) and sends commands by room
and participant id; the server glue runs each command through the conference core with the
loop's `now` and sends what it produced at once. This is also where a later "which node hosts
this room" answer goes: callers name rooms, never places.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sipmessage import URI

from bridge.config import RoomDefinition
from bridge.events import EventBus
from bridge.sip.auth import Credentials
from bridge.sip.transaction import Peer


@dataclass(frozen=True)
class Refusal:
    """A call turned away before it is answered: the SIP status, reason and extra headers
    (a Contact for a 302 to a divert target)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ManualAnswer:
    """Ring (180) and wait: the control plane answers (`answer_ringing`) or rejects. With
    `after_s`, a call still ringing then gets `then`: a refusal (a 302 forwarding it, say) or
    a reroute (answered into a voice-mail room)."""

    after_s: float | None = None
    then: Refusal | Reroute | None = None


@dataclass(frozen=True)
class Announcement:
    """Answer the call, play `prompt` to it, hang up: a service that only says something (the
    "call back later" of callers diverted before a reservation's start)."""

    prompt: str
    reason: str


@dataclass(frozen=True)
class Reroute:
    """Answer the call into another room instead (a voice-mail room of its own)."""

    room: str


Gate = Callable[[str, str], Refusal | ManualAnswer | Announcement | Reroute | None]
"""(room, caller) -> a refusal, a manual answer, an announcement, or None to let the room's own
access rules decide. The control plane's hook for conference states, locks and reservations;
no I/O."""

PARTICIPANT_OPTIONS = ("deaf", "held", "dtmf_enabled", "volume_db")
"""What `set_option` sets (muting goes through `set_muted`, which says who muted)."""


@dataclass(frozen=True)
class ParticipantView:
    """One participant as the API shows it. Times are wall clock (epoch seconds); counters are
    at most a second old when the room is mixed by a media worker."""

    id: str
    room: str
    caller: str
    display_name: str
    call_id: str
    started_at: float  # the call arrived (or was placed)
    joined_at: float  # it joined the room
    muted: bool
    deaf: bool
    dtmf_enabled: bool
    held: bool  # put on hold by the API
    on_hold: bool  # the phone put itself on hold (re-INVITE)
    talking: bool
    volume_db: int
    codec: str
    packets_in: int
    packets_out: int
    packets_lost: int
    jitter_ms: float
    srtp: bool = False  # its media is SRTP (SDES keys)
    srtp_rejected: int = 0  # SRTP packets dropped: forged, replayed, or plain RTP
    frames_concealed: int = 0  # ticks its jitter buffer had no frame for (concealed)
    frames_trimmed: int = 0  # frames its jitter buffer dropped to bound the delay


@dataclass(frozen=True)
class RingingCall:
    """A call left ringing for the control plane (a room with manual answer)."""

    id: str  # the participant id it will have once answered
    room: str
    caller: str
    call_id: str
    started_at: float


@dataclass(frozen=True)
class DialRequest:
    """One outgoing call into a room, routed and resolved by the control plane."""

    ref: str
    room: str
    dest: str  # as asked: +E.164 or a SIP URI (for records and events)
    caller_id: str
    confirm: bool  # "press # to join"
    target: URI
    peer: Peer
    credentials: Credentials | None = None
    headers: tuple[tuple[str, str], ...] = ()
    max_duration_s: float | None = None  # this call's own limit, within dialout.max_call_s
    alternatives: tuple[Peer, ...] = ()  # further targets (SRV), tried on 503 or no answer


@dataclass(frozen=True)
class RoomView:
    """A room the bridge has now. `managed`: it has rules (a `[[room]]` or the control plane's
    conference); a room made by a caller's dialling has none."""

    name: str
    participants: int
    ringing: int
    managed: bool


@dataclass(frozen=True)
class WorkerView:
    index: int
    pid: int
    rooms: int
    participants: int
    cpu_seconds: float
    restarts: int


@dataclass(frozen=True)
class BridgeStats:
    """What /metrics reads at scrape time. Packet totals count the calls that ended plus the
    calls up now; `lateness_counts` are per bucket of `bridge.net.mixer_clock.LATENESS_BUCKETS`
    (the workers' ticks when media workers run)."""

    calls_active: int
    rooms_active: int
    participants: int
    packets_in: int
    packets_out: int
    packets_lost: int
    lateness_counts: tuple[int, ...]
    lateness_total_s: float
    workers: tuple[WorkerView, ...] | None = None  # None: rooms are mixed in-process
    wrong_codes: int = 0  # room codes entered wrong (or timed out), since start
    code_lockouts: int = 0  # sources locked out for guessing codes
    code_alarms: int = 0  # rooms whose wrong codes crossed the alarm threshold
    refused_locked: int = 0  # calls refused with 403 because their source was locked out
    flood_limited: int = 0  # new-dialog requests over a source's limit (503 or dropped)
    flood_sources: int = 0  # times a source went over its limit
    rtp_unmatched: int = 0  # datagrams on shared RTP ports from no call's address (dropped)
    frames_concealed: int = 0  # every leg's `ParticipantView.frames_concealed`, since start
    frames_trimmed: int = 0  # every leg's `ParticipantView.frames_trimmed`, since start
    srtp_rejected: int = 0  # SRTP packets dropped: forged, replayed, or plain RTP


class ConferenceControl(Protocol):
    """The commands and questions of the control plane. Commands naming a participant or call
    that is not there return False; nothing here blocks or raises for a vanished call."""

    events: EventBus

    def set_gate(self, gate: Gate | None) -> None: ...

    def sip_uri(self, user: str | None = None) -> str:
        """The bridge's own SIP address, for a room (`user`) or bare: what callers dial."""
        ...

    def define_room(self, definition: RoomDefinition) -> None: ...

    def forget_room(self, room: str, reason: str) -> None:
        """A managed room is over: hang everyone up and drop its rules."""
        ...

    def set_mixing(self, room: str, mixing: bool) -> None:
        """False while a conference is HOLDING: callers wait without hearing each other."""
        ...

    def play_to_room(self, room: str, prompt: str) -> None:
        """A packaged prompt's name, or an uploaded announcement's absolute path (8 kHz WAV)."""
        ...

    def play_to_participant(self, room: str, participant_id: str, prompt: str) -> bool:
        """As play_to_room, to one participant only; False when not in the room."""
        ...

    def start_recording(self, room: str, path: str, fmt: str) -> bool:
        """Record the room's mix ("wav" or "ogg"); False: nobody in it, or recording already."""
        ...

    def stop_recording(self, room: str) -> bool:
        """False when the room is not recording; the file ends with a recording.stopped event."""
        ...

    def recording(self, room: str) -> str | None:
        """The file the room's recording writes, while it records."""
        ...

    def live_rooms(self) -> list[RoomView]:
        """Every room the bridge has now, including rooms made by dialling."""
        ...

    def participants(self, room: str) -> list[ParticipantView]: ...

    def find_participant(self, room: str, participant_id: str) -> ParticipantView | None: ...

    def ringing_calls(self, room: str) -> list[RingingCall]: ...

    def set_muted(self, room: str, participant_id: str, muted: bool, by: str = "api") -> bool: ...

    def set_option(self, room: str, participant_id: str, option: str, value: object) -> bool:
        """Set one of PARTICIPANT_OPTIONS; ValueError for another name."""
        ...

    def eject(self, room: str, participant_id: str, reason: str = "ejected") -> bool: ...

    def transfer(self, room: str, participant_id: str, target: str) -> bool:
        """Blind transfer (REFER) to `target`: a SIP URI, or the name of a room of this
        bridge; the participant's call ends once its phone is connected there."""
        ...

    def answer_ringing(self, room: str, call_id: str) -> bool: ...

    def reject_ringing(self, room: str, call_id: str, status: int = 603) -> bool: ...

    def dial(self, request: DialRequest) -> None:
        """Place the call; its outcome comes as DialOutSettled and DialOutEnded events."""
        ...

    def cancel_dial(self, ref: str) -> bool:
        """Stop a call out before it is in its room (CANCEL, or BYE while asked for #); it
        settles unanswered. False when there is no such call (any more)."""
        ...

    def stats(self) -> BridgeStats: ...
