"""A media worker's rooms: commands in, one tick at a time, reports out. No sockets, no clock.

The worker process (`bridge.workers.process`) feeds it the main process' commands and the RTP
it receives, calls `tick` every 20 ms with the time, and sends back what `tick` returns. The
rooms are the same `Room` objects the main process mixes with when it has no workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from bridge.conference.participant import Participant
from bridge.conference.room import Room
from bridge.net.mixer_clock import LatenessHistogram
from bridge.workers.handoff import apply_flags, unpack
from bridge.workers.protocol import (
    AddParticipant,
    ClearPrompts,
    Command,
    DigitPressed,
    ParticipantRemoved,
    ParticipantStats,
    PlayPrompt,
    PromptsIdle,
    RemoveParticipant,
    Report,
    SetMixing,
    TalkingChanged,
    UpdateParticipant,
    WorkerStats,
)

SendFunction = Callable[[bytes, tuple[str, int]], None]
STATS_EVERY_TICKS = 50  # one WorkerStats a second

log = structlog.get_logger()


def stats_of(participant: Participant) -> ParticipantStats:
    jitter = participant.jitter.stats
    return ParticipantStats(
        participant.call_key,
        participant.counters,
        jitter.lost,
        jitter.jitter_ms,
        participant.last_rtp,
    )


@dataclass
class MediaEngine:
    rooms: dict[str, Room] = field(default_factory=dict)
    members: dict[str, Participant] = field(default_factory=dict)  # by call key
    prompt_sequence: dict[str, int] = field(default_factory=dict)  # awaiting PromptsIdle
    ticks: int = 0
    lateness: LatenessHistogram = field(default_factory=LatenessHistogram)
    _reports: list[Report] = field(default_factory=list)

    def add(self, command: AddParticipant, send: SendFunction) -> Participant:
        """Take over a participant whose RTP socket the caller has opened here."""
        participant = unpack(command.state)
        participant.send = send
        room = self.rooms.get(command.room)
        if room is None:
            room = self.rooms[command.room] = Room(command.room, max_participants=1_000_000)
        room.mixing = command.mixing
        room.add(participant)
        self.members[participant.call_key] = participant
        if participant.prompts.busy:
            self.prompt_sequence[participant.call_key] = 0
        return participant

    def apply(self, command: Command) -> Participant | None:
        """Apply a command other than AddParticipant; returns the participant a
        RemoveParticipant took out (its socket is the caller's to close)."""
        if isinstance(command, RemoveParticipant):
            return self._remove(command.call_key)
        if isinstance(command, SetMixing):
            room = self.rooms.get(command.room)
            if room is not None:
                room.mixing = command.mixing
            return None
        participant = self.members.get(command.call_key)  # type: ignore[union-attr]
        if participant is None:
            return None  # already gone: commands and removals cross
        if isinstance(command, UpdateParticipant):
            apply_flags(participant, command)
        elif isinstance(command, PlayPrompt):
            participant.prompts.play(
                command.prompt, replace_room_audio=command.replace_room_audio
            )
            self.prompt_sequence[command.call_key] = command.sequence
        elif isinstance(command, ClearPrompts):
            participant.prompts.clear()
            self.prompt_sequence[command.call_key] = command.sequence
        return None

    def _remove(self, call_key: str) -> Participant | None:
        participant = self.members.pop(call_key, None)
        self.prompt_sequence.pop(call_key, None)
        if participant is None:
            return None
        room = self.rooms.get(participant.room)
        if room is not None:
            room.remove(participant)
            if not room.participants:
                del self.rooms[room.name]
                log.info("room.tick_stats", room=room.name, **dataclasses.asdict(room.stats))
        self._reports.append(ParticipantRemoved(stats_of(participant)))
        return participant

    def tick(
        self, now: float, deadline: float, cpu_seconds: Callable[[], float]
    ) -> list[Report]:
        """Mix every room once; returns the reports to send (digits, talking, prompts done,
        and every STATS_EVERY_TICKS ticks the load and counters as of `now`)."""
        late_s = now - deadline
        reports, self._reports = self._reports, []
        self.ticks += 1
        self.lateness.observe(late_s)
        for room in self.rooms.values():
            room.stats.record(late_s)
            for participant, digit, method in room.tick():
                reports.append(DigitPressed(participant.call_key, digit, method))
            for participant in room.talk_changes:
                reports.append(TalkingChanged(participant.call_key, participant.voice.talking))
            room.talk_changes.clear()
        for call_key, sequence in list(self.prompt_sequence.items()):
            participant = self.members[call_key]
            if not participant.prompts.busy:
                reports.append(PromptsIdle(call_key, sequence))
                del self.prompt_sequence[call_key]
        if self.ticks % STATS_EVERY_TICKS == 0:
            reports.append(self._stats(now, cpu_seconds()))
        return reports

    def _stats(self, now: float, cpu_seconds: float) -> WorkerStats:
        stats = WorkerStats(
            at=now,
            rooms=len(self.rooms),
            participants=len(self.members),
            lateness=self.lateness,
            cpu_seconds=cpu_seconds,
            participants_stats=tuple(stats_of(p) for p in self.members.values()),
        )
        self.lateness = LatenessHistogram()
        return stats
