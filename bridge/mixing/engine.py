"""Rooms and their members' media state: the seam's commands in, one tick at a time, reports
out. No sockets, no clock: whoever runs it (this process, or a media worker) hands each new
member its send function, feeds it RTP and calls `tick` every 20 ms with the time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from bridge.media.codecs import codec_for
from bridge.media.srtp import SrtpSession
from bridge.mixing.backend import (
    AddParticipant,
    ClearPrompts,
    DigitPressed,
    MediaCommand,
    MediaReport,
    MediaStats,
    MoveParticipant,
    NegotiatedMedia,
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
from bridge.mixing.participant import Address, Participant, SendFunction
from bridge.mixing.recording import ROOM_CLOSED, STOPPED, RoomRecording
from bridge.mixing.room import Digit, Room
from bridge.mixing.vector.tick import VectorTick
from bridge.net.mixer_clock import MAX_TICK_BACKLOG, TICK_SECONDS, LatenessHistogram
from bridge.rtp.jitter import JitterBuffer

log = structlog.get_logger()

LOBBY = "(lobby)"
UNLIMITED = 1_000_000  # the core decides who fits; the engine mixes whoever it is given


def new_participant(
    command: AddParticipant, send: SendFunction, jitter_target_ms: int, jitter_max_ms: int
) -> Participant:
    """A leg's media state as `AddParticipant` describes it."""
    who, media, controls = command.identity, command.media, command.controls
    participant = Participant(
        id=who.participant_id,
        call_key=command.leg,
        room=command.room or LOBBY,
        caller=who.caller,
        display_name=who.display_name,
        codec=codec_for(media.codec, media.payload_type, media.fmtp),
        remote=media.remote,
        signalling_host=who.signalling_host,
        send=send,
        jitter=JitterBuffer(jitter_target_ms // 20, jitter_max_ms // 20),
        last_rtp=command.now,
        joined_at=command.now,
    )
    apply_media(participant, media)
    participant.muted, participant.deaf = controls.muted, controls.deaf
    participant.held, participant.volume_db = controls.held, controls.volume_db
    return participant


def apply_media(participant: Participant, media: NegotiatedMedia) -> None:
    codec = codec_for(media.codec, media.payload_type, media.fmtp)
    if codec != participant.codec:
        participant.stream = None  # a new codec: new decoder and encoders
    participant.codec = codec
    participant.jitter.clock_rate = codec.clock_rate
    participant.jitter.rebuilds_lost = codec.name == "OPUS"
    participant.remote = media.remote
    participant.telephone_event_pt = media.telephone_event_pt
    participant.on_hold = media.on_hold
    if media.srtp is None:
        participant.srtp = None
    elif participant.srtp is None or participant.srtp.keys != media.srtp:
        participant.srtp = SrtpSession(media.srtp)  # new keys (a re-INVITE): new contexts


def media_stats(participant: Participant) -> MediaStats:
    """A leg's figures for the API, as of now."""
    jitter = participant.jitter
    return MediaStats(
        participant.counters, participant.loss.lost, jitter.jitter_ms, jitter.concealed,
        jitter.trimmed,
    )  # fmt: skip


@dataclass
class EndedTotals:
    """Packet counts of the legs that have left, for /metrics' totals since start (a copy,
    with the legs up now added, is the totals)."""

    packets_in: int = 0
    packets_out: int = 0
    lost: int = 0
    srtp_rejected: int = 0
    concealed: int = 0
    trimmed: int = 0

    def add(self, stats: MediaStats) -> None:
        self.packets_in += stats.counters.packets_in
        self.packets_out += stats.counters.packets_out
        self.lost += stats.lost
        self.srtp_rejected += stats.counters.srtp_rejected
        self.concealed += stats.concealed
        self.trimmed += stats.trimmed


@dataclass
class MediaEngine:
    """`lobby` holds members not yet in a room: each hears only its own prompts.

    `vector` mixes every room it takes (G.711) in one tick over all of them; the rest, and all
    rooms when it is None, tick one by one (`Room.tick`, the reference)."""

    rooms: dict[str, Room] = field(default_factory=dict)
    lobby: Room = field(default_factory=lambda: Room(LOBBY, UNLIMITED, mixing=False))
    members: dict[str, Participant] = field(default_factory=dict)  # by leg
    mixing: dict[str, bool] = field(default_factory=dict)  # rooms told apart from the default
    prompt_sequence: dict[str, int] = field(default_factory=dict)  # awaiting PromptsIdle
    ticks: int = 0
    lateness: LatenessHistogram = field(default_factory=LatenessHistogram)
    ended: EndedTotals = field(default_factory=EndedTotals)
    reports: list[MediaReport] = field(default_factory=list)
    _recordings_ending: list[tuple[str, RoomRecording]] = field(default_factory=list)
    vector: VectorTick | None = field(default_factory=VectorTick)
    last_deadline: float | None = None
    late_after: float = math.inf
    """Once the loop's clock passes this, the next tick is a whole tick late: a packet read
    then will be played by ticks run back to back before the next read (`ticks_behind`)."""

    # --- commands ---------------------------------------------------------------------------

    def add(self, participant: Participant, room: str | None) -> None:
        """Take a member whose media state is ready (new, or handed over by another process)."""
        self._changed(participant)
        self.members[participant.call_key] = participant
        self._room(room).add(participant)
        if participant.prompts.busy:
            self.prompt_sequence.setdefault(participant.call_key, 0)

    def apply(self, command: MediaCommand) -> Participant | None:
        """Apply any command but AddParticipant; returns the member a RemoveParticipant took
        out (its socket is the caller's to close)."""
        if isinstance(command, RemoveParticipant):
            removed = self.remove(command.leg)
            if removed is not None:
                self.ended.add(media_stats(removed))
            return removed
        if isinstance(command, SetRoomMixing | StartRecording | StopRecording):
            self._changed()  # a room's: every room is sorted again (rare)
        if isinstance(command, SetRoomMixing):
            self.mixing[command.room] = command.mixing
            if command.room in self.rooms:
                self.rooms[command.room].mixing = command.mixing
            return None
        if isinstance(command, StartRecording | StopRecording):
            self._record(command)
            return None
        participant = self.members.get(command.leg)  # type: ignore[union-attr]
        if participant is None:
            return None  # already gone: commands and removals cross
        self._changed(participant)
        if isinstance(command, MoveParticipant):
            self._leave_room(participant)
            self._room(command.room).add(participant)
        elif isinstance(command, UpdateMedia):
            apply_media(participant, command.media)
        elif isinstance(command, UpdateControls):
            controls = command.controls
            participant.muted, participant.deaf = controls.muted, controls.deaf
            participant.held, participant.volume_db = controls.held, controls.volume_db
        elif isinstance(command, PlayPrompt):
            try:
                participant.prompts.play(
                    command.prompt, replace_room_audio=command.replace_room_audio
                )
            except (OSError, ValueError) as exc:  # an announcement deleted meanwhile
                log.warning("prompt.unplayable", prompt=command.prompt, error=str(exc))
            self.prompt_sequence[command.leg] = command.sequence
        elif isinstance(command, ClearPrompts):
            participant.prompts.clear()
            self.prompt_sequence[command.leg] = command.sequence
        return None

    def _changed(self, participant: Participant | None = None) -> None:
        if self.vector is not None:
            self.vector.changed(participant)  # its room (or every room) is sorted again

    def _record(self, command: StartRecording | StopRecording) -> None:
        room = self.rooms.get(command.room)
        if isinstance(command, StopRecording):
            if room is not None and room.recording is not None:
                room.recording.end(STOPPED)
            return
        if room is None:
            ended = RecordingEnded(command.room, command.path, 0.0, 0, "not_mixed_here")
            self.reports.append(ended)
            return
        if room.recording is not None:
            room.recording.end(STOPPED)
            self._recordings_ending.append((room.name, room.recording))
        room.recording = RoomRecording(Path(command.path), command.format)

    def remove(self, leg: str) -> Participant | None:
        """Take a member out (for good, or to hand it to another process)."""
        participant = self.members.pop(leg, None)
        self.prompt_sequence.pop(leg, None)
        if participant is not None:
            self._changed(participant)
            self._leave_room(participant)
        return participant

    def _room(self, name: str | None) -> Room:
        if name is None:
            return self.lobby
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, UNLIMITED, self.mixing.get(name, True))
        return room

    def _leave_room(self, participant: Participant) -> None:
        if participant in self.lobby.participants:
            self.lobby.remove(participant)
            return
        room = self.rooms.get(participant.room)
        if room is None:
            return
        room.remove(participant)
        if not room.participants:
            del self.rooms[room.name]
            if room.recording is not None:
                room.recording.end(ROOM_CLOSED)
                self._recordings_ending.append((room.name, room.recording))
            log.info("room.tick_stats", room=room.name, **dataclasses.asdict(room.stats))

    # --- the clock --------------------------------------------------------------------------

    def tick(self, now: float, deadline: float) -> None:
        """Mix every room once; digits, talking changes and prompts played become reports."""
        late_s = now - deadline
        self._skip_missed(deadline)
        self.late_after = deadline + 2 * TICK_SECONDS  # `receive` reads late from then on
        self.ticks += 1
        self.lateness.observe(late_s)
        reports = self.reports
        rooms = (self.lobby, *self.rooms.values())
        vector = self.vector
        mixed: dict[Room, list[Digit]] = {}
        if vector is not None:
            taken = [  # a room being recorded keeps the reference tick, which feeds the file
                room
                for room in rooms
                if room.participants and room.recording is None and vector.takes(room)
            ]
            mixed = dict(zip(taken, vector.tick(taken), strict=True))
        for room in rooms:
            if room is not self.lobby:
                room.stats.record(late_s)
            digits = mixed.get(room)
            for participant, digit, method in room.tick() if digits is None else digits:
                reports.append(DigitPressed(participant.call_key, digit, method))
            if room is not self.lobby:
                for participant in room.talk_changes:
                    reports.append(TalkingChanged(participant.call_key, participant.voice.talking))
            room.talk_changes.clear()
        self._report_recordings()
        for leg, sequence in list(self.prompt_sequence.items()):
            if not self.members[leg].prompts.busy:
                reports.append(PromptsIdle(leg, sequence))
                del self.prompt_sequence[leg]

    def _skip_missed(self, deadline: float) -> None:
        """After ticks the clock skipped (a stall past its backlog), every stream's timestamp
        jumps the time they would have covered, as after silence not sent: left behind, every
        later packet reads that much late to its receiver for the rest of the call (RFC 3550:
        the timestamp follows the sampling clock; the load test's runs whose clock had skipped
        ticks counted most of their packets over 40 ms late)."""
        last, self.last_deadline = self.last_deadline, deadline
        if last is None:
            return
        missed = round((deadline - last) / TICK_SECONDS) - 1
        if missed > 0:
            for participant in self.members.values():
                participant.sender.skip(missed * participant.codec.clock_rate // 50)

    def receive(self, participant: Participant, data: bytes, source: Address, now: float) -> None:
        """A datagram read at `now` from a member's own RTP socket (the shared port has its own
        path): as usual, or, while the clock is behind, for the ticks about to run."""
        if now < self.late_after:
            participant.receive_rtp(data, source, now)
        else:
            participant.receive_late(data, source, now, self.ticks_behind(now))

    def ticks_behind(self, now: float) -> int:
        """How many ticks beyond the next are due at `now` (0 on time): a process woken late
        reads the packets of the ticks it slept through before it runs those ticks back to
        back, so each jitter buffer may hold that many frames more while they go in
        (`Participant.receive_late`); trimmed on the way in, the ticks after would conceal."""
        if self.last_deadline is None:
            return 0
        behind = int((now - self.last_deadline) / TICK_SECONDS) - 1
        return min(max(behind, 0), MAX_TICK_BACKLOG)

    def _report_recordings(self) -> None:
        """Recordings whose writer finished (stopped, room closed, disk failed) are reported."""
        for room in self.rooms.values():
            recording = room.recording
            if recording is not None and recording.finished:
                recording.end(STOPPED)  # the writer failed: nothing more to queue
                self._recordings_ending.append((room.name, recording))
                room.recording = None
        still: list[tuple[str, RoomRecording]] = []
        for name, recording in self._recordings_ending:
            if not recording.finished:
                still.append((name, recording))
                continue
            self.reports.append(
                RecordingEnded(name, str(recording.path), recording.duration_s,
                               recording.size_bytes, recording.outcome)
            )
        self._recordings_ending = still

    def take_reports(self) -> list[MediaReport]:
        reports, self.reports = self.reports, []
        return reports

    def silent_since(self, limit_s: float, known_until: Callable[[str], float]) -> list[str]:
        """Legs not on hold whose last RTP is more than `limit_s` before what is known of them."""
        return [
            leg
            for leg, p in self.members.items()
            if not p.on_hold and known_until(leg) - p.last_rtp > limit_s
        ]

    def stats(self, leg: str) -> MediaStats | None:
        participant = self.members.get(leg)
        if participant is None:
            return None
        return media_stats(participant)

    def log_tick_stats(self) -> None:
        for room in self.rooms.values():
            log.info("room.tick_stats", room=room.name, **dataclasses.asdict(room.stats))
