"""Dial-out for the conference service: the conference calls someone into a room.

A mixin of `ConferenceService`, kept apart because it is its own story: an INVITE with our
offer, CANCEL after the ring timeout, "press # to join" when asked, BYE after the maximum call
duration, and one outcome per call (answered, unanswered, busy, failed) published on the bus.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from sipmessage import URI

from bridge.conference.callmedia import CallMedia, Plan
from bridge.conference.dialout import DialOut, DialStatus
from bridge.conference.ivr import Admission
from bridge.conference.participant import Participant
from bridge.config import Config
from bridge.events import DialOutEnded, DialOutSettled, EventBus
from bridge.net.rtp_port import PortRangeExhausted, RtpPortPool, RtpSocket
from bridge.sip.auth import Credentials
from bridge.sip.sdp import AudioSession, SdpError, build_offer, negotiate_answer, parse_sdp
from bridge.sip.transaction import Peer
from bridge.sip.useragent import Call, UserAgent

log = structlog.get_logger()


class DialOutMixin:
    """The dial-out half of ConferenceService (which provides the attributes below)."""

    config: Config
    ua: UserAgent
    ports: RtpPortPool
    events: EventBus
    clock: Callable[[], float]
    media: dict[str, CallMedia]
    dialouts: dict[str, DialOut]
    schedule: Callable[[float, Callable[[float], None]], None]

    if TYPE_CHECKING:

        def hangup(self, call_key: str, now: float, reason: str) -> None: ...
        def _start(self, media: CallMedia, session: AudioSession, now: float) -> None: ...
        def _leave(self, participant: Participant | None, reason: str) -> None: ...
        def _receiver(self, call_key: str) -> Callable[[bytes, tuple[str, int]], None]: ...

    def dial(
        self,
        dialout: DialOut,
        *,
        target: URI,
        peer: Peer,
        now: float,
        credentials: Credentials | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Call `dialout.dest` into `dialout.room`: INVITE with our offer, CANCEL after the ring
        timeout, "press # to join" when `confirm`, BYE after the maximum call duration."""
        dialout.started_at = self.clock()
        try:
            sock = RtpSocket(self.ports.bind(self.config.sip.bind), self.ports)
        except PortRangeExhausted:
            dialout.settle(DialStatus.FAILED, "no RTP port free")
            self._announce_settled(dialout, "")
            self._publish_ended(dialout)
            return
        session_id = random.randrange(1, 2**31)
        sdp = build_offer(
            local_host=self.config.advertise_address,
            local_port=sock.port,
            session_id=session_id,
            version=1,
            codecs=self.config.rtp.codecs,
        )
        call = self.ua.invite(
            target=target,
            peer=peer,
            room=dialout.room,
            caller=dialout.caller_id,
            sdp=sdp,
            now=now,
            headers=headers,
            credentials=credentials,
        )
        admission_ = Admission.CONFIRM if dialout.confirm else Admission.JOIN
        media = CallMedia(
            call,
            Plan(admission_, dialout.room),
            sock,
            session_id=session_id,
            caller=dialout.dest,
            started_at=dialout.started_at,
            dialout=dialout,
        )
        dialout.call_key = call.key
        self.media[call.key] = media
        self.dialouts[dialout.ref] = dialout
        asyncio.get_running_loop().create_task(sock.open(self._receiver(call.key)))
        ring_timeout = float(self.config.dialout.ring_timeout_s)
        self.schedule(ring_timeout, lambda later: self._ring_timeout(media, later))
        log.info("dialout.started", ref=dialout.ref, room=dialout.room, dest=dialout.dest)

    def _dialout_of(self, call: Call) -> DialOut | None:
        media = self.media.get(call.key)
        return media.dialout if media is not None else None

    def _ring_timeout(self, media: CallMedia, now: float) -> None:
        dialout = media.dialout
        if self.media.get(media.call.key) is not media or dialout is None:
            return
        if dialout.answered_at is not None:
            return
        if self._settle(dialout, DialStatus.UNANSWERED, "ring timeout"):
            self.ua.cancel(media.call, now)

    def _on_dial_answered(self, call: Call, answer: bytes | None, now: float) -> None:
        media = self.media.get(call.key)
        if media is None or media.dialout is None:
            return
        dialout = media.dialout
        dialout.answered_at = self.clock()
        dialout.sip_status = 200
        media.answered_at = dialout.answered_at
        try:
            if not answer:
                raise SdpError("the 200 carried no SDP answer to our offer", 488)
            session = negotiate_answer(parse_sdp(answer), self.config.rtp.codecs)
        except SdpError as exc:
            self._settle(dialout, DialStatus.FAILED, str(exc))
            self.hangup(call.key, now, reason="bad SDP answer")
            return
        limit = float(self.config.dialout.max_call_s)
        self.schedule(limit, lambda later: self._max_duration(media, later))
        self._start(media, session, now)
        if not dialout.confirm and media.participant is not None:
            self._settle(dialout, DialStatus.ANSWERED, media.participant.id)

    def _max_duration(self, media: CallMedia, now: float) -> None:
        if self.media.get(media.call.key) is media:
            self.hangup(media.call.key, now, reason="maximum call duration")

    def _settle(self, dialout: DialOut, status: DialStatus, detail: str = "") -> bool:
        participant = detail if status is DialStatus.ANSWERED else ""
        if not dialout.settle(status, "" if participant else detail):
            return False
        self._announce_settled(dialout, participant)
        return True

    def _announce_settled(self, dialout: DialOut, participant: str) -> None:
        status = str(dialout.status)
        log.info("dialout.settled", ref=dialout.ref, dest=dialout.dest, status=status)
        self.events.publish(
            DialOutSettled(self.clock(), dialout.room, participant, dialout.ref, status)
        )

    def _finish_dialout(
        self, dialout: DialOut, participant: Participant | None, reason: str
    ) -> None:
        """The outgoing call is over: fix an outcome not yet known, tell everyone."""
        if not dialout.status.settled:
            status = DialStatus.UNANSWERED if dialout.answered_at else DialStatus.FAILED
            self._settle(dialout, status, reason)
        self._leave(participant, reason)
        self.dialouts.pop(dialout.ref, None)
        self._publish_ended(dialout)

    def _publish_ended(self, dialout: DialOut) -> None:
        dialout.ended_at = self.clock()
        self.events.publish(
            DialOutEnded(
                dialout.ended_at,
                dialout.room,
                "",
                dialout.ref,
                dialout.dest,
                dialout.caller_id,
                str(dialout.status),
                dialout.sip_status,
                dialout.reason,
                dialout.tag,
                dialout.owner,
                dialout.started_at,
                dialout.answered_at,
                dialout.ended_at,
            )
        )
