"""Rooms on media workers: the conference service's half of the process split.

A mixin of `ConferenceService`. Without workers it does nothing and the main process mixes
every room. With workers, a room is placed on the least-loaded worker when its first caller
joins and stays there while it has people; each participant who joins it is handed over
(media state and RTP socket) and from then on the main process keeps a mirror: the flags it
decides are sent over as they change, prompts become commands, and digits, talking, prompts
played and counters come back as reports, taken once per tick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import structlog

from bridge.conference.callmedia import CallMedia
from bridge.conference.participant import Participant
from bridge.conference.room import Room
from bridge.events import EventBus, ParticipantTalking
from bridge.media.prompt import PromptPlayer
from bridge.workers.handoff import flags_of, pack
from bridge.workers.pool import WorkerPool
from bridge.workers.protocol import (
    AddParticipant,
    ClearPrompts,
    DigitPressed,
    ParticipantRemoved,
    ParticipantStats,
    PlayPrompt,
    PromptsIdle,
    RemoveParticipant,
    Report,
    SetMixing,
    TalkingChanged,
    WorkerStats,
)

log = structlog.get_logger()

WORKER_DIED = "media_worker_died"


class RemotePrompts(PromptPlayer):
    """A participant's prompts when its room is on a worker: play and clear become commands,
    and `busy` holds until the worker reports the last command's prompts played."""

    def __init__(self, pool: WorkerPool, worker: int, call_key: str, busy: bool) -> None:
        super().__init__()
        self.pool, self.worker, self.call_key = pool, worker, call_key
        self.sequence = 0
        self._busy = busy

    @property
    def busy(self) -> bool:
        return self._busy

    def play(
        self,
        name_or_samples: str | np.ndarray,
        *,
        replace_room_audio: bool = False,
        label: str | None = None,
    ) -> None:
        if not isinstance(name_or_samples, str):
            raise TypeError("a worker plays packaged prompts by name only")
        self.sequence += 1
        self._busy = True
        self.pool.send(
            self.worker,
            PlayPrompt(self.call_key, str(name_or_samples), replace_room_audio, self.sequence),
        )

    def clear(self) -> list[str]:
        self.sequence += 1
        self._busy = False
        self.pool.send(self.worker, ClearPrompts(self.call_key, self.sequence))
        return []

    def played(self, sequence: int) -> None:
        if sequence == self.sequence:
            self._busy = False


class WorkerPlacementMixin:
    """The worker half of ConferenceService (which provides the attributes below)."""

    workers: WorkerPool | None
    rooms: dict[str, Room]
    media: dict[str, CallMedia]
    events: EventBus
    clock: Callable[[], float]
    ended_totals: dict[str, int]
    room_workers: dict[str, int]  # rooms on a worker, while they have people
    placed: dict[str, int]  # call key -> worker, for participants handed over
    mirrored_at: dict[str, float]  # call key -> time of its worker's last counters
    if TYPE_CHECKING:

        def hangup(self, call_key: str, now: float, reason: str) -> None: ...
        def _on_digit(
            self, participant: Participant, digit: str, method: str, now: float
        ) -> None: ...

    def _place(self, media: CallMedia, room: Room) -> None:
        """Hand a participant who just joined `room` to the room's worker (if workers run)."""
        pool, participant = self.workers, media.participant
        if pool is None or participant is None:
            return
        worker = self.room_workers.get(room.name)
        if worker is None:
            worker = self.room_workers[room.name] = pool.least_loaded()
            log.info("room.placed", room=room.name, worker=worker)
        pool.add(
            worker,
            AddParticipant(room.name, room.mixing, pack(participant)),
            media.socket.sock.fileno(),
        )
        media.socket.detach()
        participant.prompts = RemotePrompts(
            pool, worker, participant.call_key, participant.prompts.busy
        )
        self.placed[participant.call_key] = worker

    def _unplace(self, participant: Participant, room: Room) -> bool:
        """Take a leaving participant off its worker; False if it was mixed here.

        Its final counters come back in a ParticipantRemoved report."""
        worker = self.placed.pop(participant.call_key, None)
        self.mirrored_at.pop(participant.call_key, None)
        if worker is None or self.workers is None:
            return False
        self.workers.send(worker, RemoveParticipant(participant.call_key))
        self.workers.removed(worker)
        if not room.participants:
            self.room_workers.pop(room.name, None)
        return True

    def _sync(self, participant: Participant) -> None:
        """Tell the worker about flags the main process changed (mute, hold, re-INVITE...)."""
        worker = self.placed.get(participant.call_key)
        if worker is not None and self.workers is not None:
            self.workers.send(worker, flags_of(participant))

    def _sync_mixing(self, room: Room) -> None:
        worker = self.room_workers.get(room.name)
        if worker is not None and self.workers is not None:
            self.workers.send(worker, SetMixing(room.name, room.mixing))

    def _rtp_known_until(self, call_key: str, now: float) -> float:
        """Up to when a call's `last_rtp` is known: now when mixed here, else the time of its
        worker's last report (-inf before the first), so silence is never overestimated."""
        if call_key not in self.placed:
            return now
        return self.mirrored_at.get(call_key, float("-inf"))

    def _take_worker_reports(self, now: float) -> None:
        if self.workers is None:
            return
        for report in self.workers.take_inbox():
            self._on_report(report, now)

    def _on_report(self, report: Report, now: float) -> None:
        if isinstance(report, WorkerStats):
            for stats in report.participants_stats:
                self._mirror(stats, report.at)
            return
        if isinstance(report, ParticipantRemoved):
            stats = report.stats
            self.ended_totals["packets_in"] += stats.counters.packets_in
            self.ended_totals["packets_out"] += stats.counters.packets_out
            self.ended_totals["lost"] += stats.lost
            return
        media = self.media.get(report.call_key)
        participant = media.participant if media is not None else None
        if participant is None:
            return  # the call ended meanwhile
        if isinstance(report, DigitPressed):
            self._on_digit(participant, report.digit, report.method, now)
        elif isinstance(report, TalkingChanged):
            participant.voice.talking = report.talking
            self.events.publish(
                ParticipantTalking(self.clock(), participant.room, participant.id, report.talking)
            )
        elif isinstance(report, PromptsIdle) and isinstance(participant.prompts, RemotePrompts):
            participant.prompts.played(report.sequence)

    def _mirror(self, stats: ParticipantStats, at: float) -> None:
        media = self.media.get(stats.call_key)
        if media is None or media.participant is None or stats.call_key not in self.placed:
            return
        self.mirrored_at[stats.call_key] = at
        participant = media.participant
        participant.counters = stats.counters
        participant.jitter.stats.lost = stats.lost
        participant.jitter.stats.jitter_ms = stats.jitter_ms
        participant.last_rtp = stats.last_rtp

    def worker_died(self, worker: int, now: float) -> None:
        """Hang up every call the dead worker carried: BYE, and the usual left/ended events
        with the reason `media_worker_died`. Their counters are the last ones reported."""
        keys = [key for key, placed_on in self.placed.items() if placed_on == worker]
        for room, placed_on in list(self.room_workers.items()):
            if placed_on == worker:
                del self.room_workers[room]
        for key in keys:
            del self.placed[key]
            self.mirrored_at.pop(key, None)
        log.error("worker.calls_lost", worker=worker, calls=len(keys))
        for key in keys:
            self.hangup(key, now, WORKER_DIED)
