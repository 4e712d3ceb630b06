"""Call policy: which room a call joins, how its media is negotiated, when it is hung up.

It consumes the UA core's events and drives rooms and RTP sockets. The asyncio server owns the
loop; this class only needs `now` and a way to open RTP sockets, so tests can run it in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from bridge.conference.participant import Participant
from bridge.conference.room import Room, valid_room_name
from bridge.config import Config
from bridge.media.g711 import CODECS
from bridge.net.rtp_port import PortRangeExhausted, RtpPortPool, RtpSocket
from bridge.rtp.jitter import JitterBuffer
from bridge.sip.sdp import (
    AudioSession,
    SdpError,
    build_answer,
    build_offer,
    negotiate_answer,
    negotiate_offer,
    parse_sdp,
)
from bridge.sip.useragent import (
    Call,
    CallConfirmed,
    CallEnded,
    IncomingCall,
    InfoReceived,
    ReInvite,
    UaEvent,
    UserAgent,
)

log = structlog.get_logger()

Scheduler = Callable[[float, Callable[[float], None]], None]
"""Run an action after a delay (seconds) with the then-current time; the server flushes after."""


@dataclass(eq=False)
class CallMedia:
    """What the service keeps per call: its socket, its SDP state and (once joined) participant."""

    call: Call
    room: Room
    socket: RtpSocket
    session_id: int
    sdp_version: int = 1
    participant: Participant | None = None
    offered_in_answer: bool = False  # INVITE had no SDP: we offered in the 200


@dataclass
class ConferenceService:
    config: Config
    ua: UserAgent
    ports: RtpPortPool
    schedule: Scheduler = field(default=lambda delay, action: None)
    rooms: dict[str, Room] = field(default_factory=dict)
    media: dict[str, CallMedia] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.config.rooms.names:
            self.rooms[name] = Room(name, self.config.rooms.max_participants)

    # --- UA events --------------------------------------------------------------------------

    def handle(self, event: UaEvent, now: float) -> None:
        if isinstance(event, IncomingCall):
            self._on_incoming(event.call, event.offer, now)
        elif isinstance(event, CallConfirmed):
            self._on_confirmed(event.call, event.answer, now)
        elif isinstance(event, ReInvite):
            self._on_reinvite(event.call, event.offer, now)
        elif isinstance(event, CallEnded):
            self._end_media(event.call.key, event.reason)
        elif isinstance(event, InfoReceived):
            pass  # DTMF over INFO arrives with the DTMF work

    def _on_incoming(self, call: Call, offer: bytes | None, now: float) -> None:
        name = call.room
        if not valid_room_name(name):
            self.ua.reject(call, 404, now, reason="Invalid room name")
            log.info(
                "call.rejected",
                call_id=call.invite.call_id,
                room=name,
                status=404,
                reason="invalid room name",
            )
            return
        room = self.rooms.get(name)
        if room is None and not self.config.rooms.auto_create:
            self.ua.reject(call, 404, now, reason="No such room")
            return
        if room is not None and room.full:
            self.ua.reject(call, 486, now, reason="Room full")
            log.info("call.rejected", call_id=call.invite.call_id, room=name, status=486)
            return
        session: AudioSession | None = None
        if offer:
            try:
                session = negotiate_offer(parse_sdp(offer), self.config.rtp.codecs)
            except SdpError as exc:
                self.ua.reject(call, exc.status, now, reason=_reason(str(exc)))
                log.info(
                    "call.rejected",
                    call_id=call.invite.call_id,
                    room=name,
                    status=exc.status,
                    reason=str(exc),
                )
                return
        try:
            sock = RtpSocket(self.ports.bind(self.config.sip.bind), self.ports)
        except PortRangeExhausted:
            self.ua.reject(call, 503, now, reason="No RTP port free")
            return
        if room is None:
            room = self.rooms[name] = Room(name, self.config.rooms.max_participants)
            log.info("room.created", room=name)
        media = CallMedia(call, room, sock, session_id=random.randrange(1, 2**31))
        self.media[call.key] = media
        host = self.config.advertise_address
        if session is None:
            media.offered_in_answer = True
            sdp = build_offer(
                local_host=host,
                local_port=sock.port,
                session_id=media.session_id,
                version=media.sdp_version,
                codecs=self.config.rtp.codecs,
            )
        else:
            assert offer is not None
            sdp = build_answer(
                parse_sdp(offer),
                session,
                local_host=host,
                local_port=sock.port,
                session_id=media.session_id,
                version=media.sdp_version,
            )
        asyncio.get_running_loop().create_task(sock.open(self._receiver(call.key)))
        delay = self.config.sip.answer_delay_ms / 1000
        if delay > 0:
            self.ua.ringing(call, now)
            self.schedule(delay, lambda later: self._answer(media, sdp, session, later))
        else:
            self._answer(media, sdp, session, now)

    def _answer(
        self, media: CallMedia, sdp: bytes, session: AudioSession | None, now: float
    ) -> None:
        if self.media.get(media.call.key) is not media:
            return  # cancelled while ringing
        self.ua.answer(media.call, sdp, now)
        log.info("call.answered", call_id=media.call.invite.call_id, room=media.room.name)
        if session is not None:
            self._join(media, session, now)

    def _on_confirmed(self, call: Call, answer: bytes | None, now: float) -> None:
        media = self.media.get(call.key)
        if media is None or not media.offered_in_answer or media.participant is not None:
            return
        try:
            if not answer:
                raise SdpError("ACK carried no SDP answer to our offer", 488)
            session = negotiate_answer(parse_sdp(answer), self.config.rtp.codecs)
        except SdpError as exc:
            log.info("call.bad_answer", call_id=call.invite.call_id, reason=str(exc))
            self.hangup(call.key, now, reason="bad SDP answer")
            return
        self._join(media, session, now)

    def _on_reinvite(self, call: Call, offer: bytes | None, now: float) -> None:
        media = self.media.get(call.key)
        if media is None or media.participant is None:
            self.ua.reject_reinvite(call, 491 if media else 481, now)
            return
        if not offer:
            # An offerless re-INVITE would need the answer from its ACK; refresh-style only.
            self.ua.reject_reinvite(call, 488, now, reason="Re-INVITE without SDP not supported")
            return
        try:
            description = parse_sdp(offer)
            session = negotiate_offer(description, self.config.rtp.codecs)
        except SdpError as exc:
            self.ua.reject_reinvite(call, exc.status, now, reason=_reason(str(exc)))
            return
        participant = media.participant
        participant.remote = (session.remote_host, session.remote_port)
        participant.on_hold = session.on_hold
        participant.telephone_event_pt = (
            session.telephone_event.payload_type if session.telephone_event else None
        )
        participant.codec = CODECS[session.codec.encoding.upper()]
        media.sdp_version += 1
        sdp = build_answer(
            description,
            session,
            local_host=self.config.advertise_address,
            local_port=media.socket.port,
            session_id=media.session_id,
            version=media.sdp_version,
        )
        self.ua.answer_reinvite(call, sdp, now)
        log.info(
            "participant.hold" if session.on_hold else "participant.resume",
            room=media.room.name,
            participant=participant.id,
        )

    # --- media ------------------------------------------------------------------------------

    def _join(self, media: CallMedia, session: AudioSession, now: float) -> None:
        call = media.call
        rtp = self.config.rtp
        caller = call.invite.from_address
        participant = Participant(
            id=call.local_tag,
            call_key=call.key,
            room=media.room.name,
            caller=caller.uri.user or "",
            display_name=caller.name,
            codec=CODECS[session.codec.encoding.upper()],
            remote=(session.remote_host, session.remote_port),
            signalling_host=call.peer.host,
            send=media.socket.send,
            jitter=JitterBuffer(rtp.jitter_target_ms // 20, rtp.jitter_max_ms // 20),
            telephone_event_pt=(
                session.telephone_event.payload_type if session.telephone_event else None
            ),
            on_hold=session.on_hold,
            last_rtp=now,
            joined_at=now,
        )
        media.participant = participant
        media.room.add(participant)
        log.info(
            "participant.joined",
            room=media.room.name,
            participant=participant.id,
            caller=participant.caller,
            codec=participant.codec.name,
            count=len(media.room.participants),
        )

    def _receiver(self, call_key: str):
        loop = asyncio.get_running_loop()
        media_by_key = self.media

        def on_packet(data: bytes, source: tuple[str, int]) -> None:
            media = media_by_key.get(call_key)
            if media is not None and media.participant is not None:
                media.participant.receive_rtp(data, source, loop.time())

        return on_packet

    def hangup(self, call_key: str, now: float, reason: str) -> None:
        """End a call from the bridge's side (BYE) and free its media."""
        media = self.media.get(call_key)
        if media is None:
            return
        self.ua.hangup(media.call, now, reason=reason)
        self._end_media(call_key, reason)

    def _end_media(self, call_key: str, reason: str) -> None:
        media = self.media.pop(call_key, None)
        if media is None:
            return
        media.socket.close()
        room = media.room
        if media.participant is not None:
            room.remove(media.participant)
            log.info(
                "participant.left",
                room=room.name,
                participant=media.participant.id,
                reason=reason,
                count=len(room.participants),
                packets_in=media.participant.counters.packets_in,
                lost=media.participant.jitter.stats.lost,
            )
        if (
            not room.participants
            and room.name not in self.config.rooms.names
            and not any(m.room is room for m in self.media.values())
        ):
            self.rooms.pop(room.name, None)
            log.info("room.closed", room=room.name, **dataclasses.asdict(room.stats))

    def check_rtp_timeouts(self, now: float) -> None:
        """Hang up calls whose RTP stopped (a vanished phone must not hold a seat forever)."""
        limit = self.config.rtp.timeout_s
        for key, media in list(self.media.items()):
            participant = media.participant
            if participant is None or participant.on_hold:
                continue
            if now - participant.last_rtp > limit:
                self.hangup(key, now, reason="rtp_timeout")

    def hangup_all(self, now: float, reason: str) -> None:
        for key in list(self.media):
            self.hangup(key, now, reason)

    def tick(self) -> None:
        for room in list(self.rooms.values()):
            room.tick()


def _reason(text: str) -> str:
    """A reason phrase may not contain CR/LF; keep it short."""
    return " ".join(text.split())[:100]
