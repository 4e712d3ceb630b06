"""The control plane at run time: conferences cached in memory for the SIP path, the state
scheduler, and the pump that turns bridge events into webhooks, live streams and call records.

Why a cache: the SIP and media paths ask "may this caller join?" synchronously and must never
wait for the database. Every change goes to the database first, then to the cache and the
bridge, so a restart rebuilds the same picture from the database (`start`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from bridge.config import Config, RoomDefinition
from bridge.control_port import Announcement, ConferenceControl, ManualAnswer, Refusal, Reroute
from bridge.events import BridgeEvent, CallFinished, ParticipantJoined, ParticipantLeft
from control import calldetail
from control.callout import CallOut, ended_payload, notification
from control.dialout import DialOuts
from control.events import Broker, Published, describe, iso
from control.forwarding import Forwarding
from control.outbox import FORM_NOTIFICATION, WebhookDeliverer
from control.schedule import (
    ConferenceState,
    HangUpEveryone,
    Occupancy,
    PlayWarning,
    StateChanged,
    Timing,
    end_by_api,
    next_deadline,
    step,
)
from control.store import Store
from control.store.records import Conference
from control.voicemail import VoiceMail, is_voice_mail_room, tenant_of

log = structlog.get_logger(__name__)
PURGE_EVERY = timedelta(hours=1)  # how often ended conferences past retention are purged

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def timing_of(conference: Conference) -> Timing:
    return Timing(
        conference.start_at,
        conference.end_at,
        has_leader=bool(conference.leader),
        end_on_leader_exit=conference.end_on_leader_exit,
    )


class ControlPlane:
    def __init__(
        self,
        config: Config,
        bridge: ConferenceControl,
        store: Store,
        *,
        clock: Clock = utcnow,
        deliverer: WebhookDeliverer | None = None,
    ) -> None:
        self.config = config
        self.bridge = bridge
        self.store = store
        self.clock = clock
        self.deliverer = deliverer or WebhookDeliverer(store, clock=clock)
        self.broker = Broker()
        self.conferences: dict[str, Conference] = {}  # open ones, by room name
        self.forwarding = Forwarding(config.dialout.trunk)
        voicemail_dir = Path(config.recording.dir).resolve() / "voicemail"
        self.voicemail = VoiceMail(bridge, store, voicemail_dir, clock, self._publish)
        self._unsubscribe_voicemail: Callable[[], None] | None = None
        self.owners: dict[str, str] = {}  # every name on record (ended ones too) -> tenant id
        self.dial_in: dict[str, str] = {}  # [[application]] dial_in names -> tenant id
        self.dialouts = DialOuts(
            bridge, config, is_open=self.is_open, finished=self._call_out_finished
        )
        self._events: asyncio.Queue[Published] = asyncio.Queue()
        self._reschedule = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Callable[[], None] | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        for app in self.config.application:
            tenants = self.store.tenants
            tenant = await tenants.get_tenant(app.name) or await tenants.create_tenant(app.name)
            await tenants.add_token(tenant.id, app.token)
            self.dial_in.update(dict.fromkeys(app.dial_in, tenant.id))
        await self.purge_expired()
        for conference in await self.store.conferences.open_conferences():
            self._install(conference)
        self.forwarding.load(await self.store.forwarding.all_rules())
        self.bridge.set_gate(self.gate)
        self._unsubscribe = self.bridge.events.subscribe(self._on_bridge_event)
        self._unsubscribe_voicemail = self.bridge.events.subscribe(self.voicemail.on_event)
        self._tasks = [
            asyncio.create_task(self._pump(), name="control-events"),
            asyncio.create_task(self._scheduler(), name="control-scheduler"),
        ]
        self.deliverer.start()
        await self.advance()
        log.info("control.started", conferences=len(self.conferences))

    async def stop(self) -> None:
        await self.dialouts.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._unsubscribe_voicemail is not None:
            self._unsubscribe_voicemail()
        await self.voicemail.stop()
        self.bridge.set_gate(None)
        await self._drain()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.deliverer.stop()

    async def _drain(self, timeout_s: float = 5.0) -> None:
        """Let queued events reach the outbox before stopping: a restart loses nothing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._events.join(), timeout_s)

    # --- the SIP path's questions (synchronous, no I/O) -------------------------------------

    def gate(
        self, room: str, caller: str
    ) -> Refusal | ManualAnswer | Announcement | Reroute | None:
        if is_voice_mail_room(room):  # reached only through the gate's own reroutes
            return Refusal(404, "No such room")
        conference = self.conferences.get(room)
        if conference is None:
            if self._is_divert_service(room):
                return Announcement("call_back_later", "diverted before the start")
            if room in self.owners:  # ended: never reopened as an open room by dialling
                return Refusal(404, "Conference has ended")
            return None
        if self.forwarding.do_not_disturb(conference.tenant_id):
            return Reroute(self.voicemail.room_for(conference.tenant_id))
        full = self._is_full(conference)
        forwarded = self.forwarding.decide(
            conference.tenant_id,
            full=full,
            unreachable=conference.state == ConferenceState.RESERVED or conference.locked,
        )
        if forwarded is not None:
            return forwarded
        if conference.state == ConferenceState.RESERVED:
            if conference.divert_to:
                contact = ("Contact", self._divert_uri(conference.divert_to))
                return Refusal(302, "Conference not started", (contact,))
            return Refusal(486, "Conference not started")
        if (conference.locked or full) and self.forwarding.voice_mail(conference.tenant_id):
            return Reroute(self.voicemail.room_for(conference.tenant_id))
        if conference.locked:
            return Refusal(403, "Conference locked")
        if conference.manual_answer:
            tenant_id = conference.tenant_id
            return self.forwarding.manual_answer(
                tenant_id, lambda: self.voicemail.room_for(tenant_id)
            )
        return None

    def _is_full(self, conference: Conference) -> bool:
        capacity = conference.max_participants or self.config.rooms.max_participants
        return len(self.bridge.participants(conference.name)) >= capacity

    def _is_divert_service(self, name: str) -> bool:
        """`name` is the divert service (not a SIP URI) of a conference not started yet, and
        no room of the configuration: the bridge itself says "call back later" there."""
        if name in {r.name for r in self.config.room} or name in self.config.rooms.names:
            return False
        return any(
            c.state == ConferenceState.RESERVED and c.divert_to == name
            for c in self.conferences.values()
        )

    def _divert_uri(self, target: str) -> str:
        if target.startswith(("sip:", "sips:")):
            return f"<{target}>"
        return f"<{self.sip_uri(target)}>"

    def sip_uri(self, user: str | None = None) -> str:
        """The bridge's own SIP address, for a room (`user`) or bare: what callers dial."""
        return self.bridge.sip_uri(user)

    def is_open(self, room: str) -> bool:
        """True while a managed conference of that name is not over."""
        return room in self.conferences

    # --- conferences ------------------------------------------------------------------------

    def _install(self, conference: Conference) -> None:
        """Put a conference into the cache and its rules into the bridge."""
        self.conferences[conference.name] = conference
        self.owners[conference.name] = conference.tenant_id
        self.bridge.define_room(
            RoomDefinition(
                conference.name,
                access=conference.access,
                code=conference.code or "",
                callers=conference.callers,
                max_participants=conference.max_participants or 0,
            )
        )
        self.bridge.set_mixing(conference.name, conference.state == ConferenceState.ACTIVE)

    async def save(self, conference: Conference, **changes: Any) -> Conference:
        """Write changes to the database, then to the cache and the bridge."""
        if changes:
            conference = await self.store.conferences.update_conference(conference.id, **changes)
        if conference.state == ConferenceState.COMPLETED:
            self.conferences.pop(conference.name, None)
        else:
            self._install(conference)
        self._reschedule.set()
        return conference

    async def refresh(self, conference: Conference) -> Conference:
        """Re-read a conference (after its callers changed) and install it."""
        fresh = await self.store.conferences.get_conference_by_id(conference.id)
        assert fresh is not None
        return await self.save(fresh)

    def initial_state(self, start_at: datetime | None) -> ConferenceState:
        if start_at is not None and start_at > self.clock():
            return ConferenceState.RESERVED
        return ConferenceState.HOLDING

    async def end(self, conference: Conference, reason: str = "ended by API") -> Conference:
        state, actions = end_by_api(ConferenceState(conference.state))
        return await self._apply(conference, state, actions, reason)

    # --- the scheduler ----------------------------------------------------------------------

    def occupancy(self, conference: Conference) -> Occupancy:
        people = self.bridge.participants(conference.name)
        leader = conference.leader
        present = leader is not None and any(p.caller == leader for p in people)
        return Occupancy(len(people), present)

    async def advance(self) -> None:
        """Step every open conference to now."""
        now = self.clock()
        for conference in list(self.conferences.values()):
            state, actions = step(
                ConferenceState(conference.state),
                timing_of(conference),
                self.occupancy(conference),
                now,
                conference.warned,
            )
            if actions:
                await self._apply(conference, state, actions, "")

    async def _apply(
        self, conference: Conference, state: ConferenceState, actions: list[Any], reason: str
    ) -> Conference:
        changes: dict[str, Any] = {}
        now = self.clock()
        for action in actions:
            if isinstance(action, PlayWarning):
                self.bridge.play_to_room(conference.name, "warning")
                changes["warned"] = True
            elif isinstance(action, StateChanged):
                changes["state"] = str(action.new)
                if action.new is ConferenceState.COMPLETED:
                    changes["ended_at"] = now
                    changes["end_reason"] = reason or action.reason
                self._publish(
                    conference.tenant_id,
                    "conference.state_changed",
                    {
                        "conference": conference.name,
                        "old": str(action.old),
                        "new": str(action.new),
                        "reason": reason or action.reason,
                        "time": iso(now),
                    },
                )
                log.info(
                    "conference.state",
                    conference=conference.name,
                    old=str(action.old),
                    new=str(action.new),
                )
        conference = await self.save(conference, **changes)
        for action in actions:
            if isinstance(action, HangUpEveryone):
                self.bridge.forget_room(conference.name, action.reason)
        return conference

    async def purge_expired(self) -> None:
        """Forget conferences that ended more than `conferences.retention_days` ago; their
        names are free again (and may then be created by dialling)."""
        days = self.config.conferences.retention_days
        if days:
            purged = await self.store.conferences.purge_ended(self.clock() - timedelta(days=days))
            if purged:
                log.info("conference.purged", count=purged, retention_days=days)
        self.owners = await self.store.conferences.name_owners()
        self.owners.update({c.name: c.tenant_id for c in self.conferences.values()})

    async def _scheduler(self) -> None:
        next_purge = self.clock() + PURGE_EVERY
        while True:
            self._reschedule.clear()
            try:
                await self.advance()
                if self.clock() >= next_purge:
                    next_purge = self.clock() + PURGE_EVERY
                    await self.purge_expired()
            except Exception:
                log.exception("control.scheduler_failed")
            deadlines = [
                d
                for c in self.conferences.values()
                if (d := next_deadline(ConferenceState(c.state), timing_of(c), c.warned))
            ]
            delay = 60.0
            if deadlines:
                delay = max(0.0, min(60.0, (min(deadlines) - self.clock()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reschedule.wait(), delay + 0.01)

    def wake_scheduler(self) -> None:
        """For tests with an injected clock: look again now."""
        self._reschedule.set()

    # --- events -----------------------------------------------------------------------------

    def _on_bridge_event(self, event: BridgeEvent) -> None:
        """Runs on the SIP/media path: tag with the tenant, queue, return."""
        self.dialouts.on_event(event)
        described = describe(event)
        if described is None:
            return
        conference = self.conferences.get(event.room)
        tenant = conference.tenant_id if conference else self._voice_mail_owner(event.room)
        if isinstance(event, ParticipantJoined | ParticipantLeft):
            self._reschedule.set()  # occupancy changed: states may move
        if isinstance(event, CallFinished):
            described[1]["conference_id"] = conference.id if conference else None
        self._events.put_nowait(Published(tenant, described[0], described[1], event))

    def _voice_mail_owner(self, room: str) -> str | None:
        """The application whose voice-mail room `room` is (a known one, not a stray name)."""
        owner = tenant_of(room)
        return owner if owner is not None and owner in self.owners.values() else None

    def _call_out_finished(self, call: CallOut) -> None:
        """A call out is over (ended by the bridge, or never placed): its `call.ended` event,
        then (in the pump) its call-detail record and notification."""
        conference = self.conferences.get(call.room)
        payload = ended_payload(call, conference.id if conference else None)
        self._events.put_nowait(Published(call.tenant_id, "call.ended", payload, call))

    def _publish(self, tenant_id: str | None, kind: str, payload: dict[str, Any]) -> None:
        self._events.put_nowait(Published(tenant_id, kind, payload))

    async def _pump(self) -> None:
        while True:
            event = await self._events.get()
            try:
                self.broker.publish(event)
                if isinstance(event.source, CallFinished):
                    conference_id = event.payload.get("conference_id")
                    fields = calldetail.incoming(event.tenant_id, conference_id, event.source)
                    await calldetail.write(self.store, fields)
                if isinstance(event.source, CallOut):
                    await self._call_out_ended(event.source, event.payload)
                if event.tenant_id is not None:
                    await self.deliverer.publish(event.tenant_id, event.type, event.payload)
            except Exception:
                log.exception("control.event_failed", type=event.type)
            finally:
                self._events.task_done()

    async def _call_out_ended(self, call: CallOut, payload: dict[str, Any]) -> None:
        """The call-detail record, and the notification to the request's notify_url (through
        the outbox: a receiver that is down gets it later)."""
        await calldetail.write(self.store, calldetail.outgoing(call, payload.get("conference_id")))
        if call.notify_url:
            body: dict[str, Any] = notification(call, self.config.dialout.currency)
            kind = "call.notification"
            if call.notify_format is not None:
                body, kind = dict(call.notify_format(body)), FORM_NOTIFICATION
            await self.store.outbox.enqueue_notification(
                call.tenant_id, call.notify_url, kind, body, self.clock()
            )
            self.deliverer.wake()
