"""Call legs: what the core keeps per call, and the one media set-up both directions share
(our SDP with the leg's port, the session negotiated from the peer's)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.conference.admission import Plan
from bridge.conference.dialout import DialOut
from bridge.conference.ivr import CodeEntry, PoundToJoin
from bridge.conference.keypad import Keypad
from bridge.media.srtp import SrtpKeys
from bridge.mixing.backend import Controls, NegotiatedMedia
from bridge.sip import sdes
from bridge.sip.sdp import (
    AudioSession,
    SdpError,
    build_answer,
    build_offer,
    negotiate_answer,
    negotiate_offer,
    parse_sdp,
)


@dataclass(eq=False)
class Leg:
    """One call, incoming or placed by the conference. Times in `*_at` are wall clock."""

    key: str  # the UA's call key
    participant_id: str  # our tag in the dialog: the participant's id in its room
    call_id: str
    dialled: str  # the Request-URI user (incoming) or the room that calls (outgoing)
    display_name: str
    peer_host: str  # where its signalling comes from: RTP from there is accepted too
    plan: Plan
    port: int
    session_id: int
    caller: str
    started_at: float
    host: str  # the address our SDP advertises
    codecs: tuple[str, ...]
    sdp_version: int = 1
    offered_in_answer: bool = False  # INVITE had no SDP: we offered in the 200
    media: NegotiatedMedia | None = None  # set once media runs
    room: str | None = None  # the room joined (None: not yet, or in the lobby)
    controls: Controls = field(default_factory=Controls)
    dtmf_enabled: bool = True
    talking: bool = False
    joined_at: float = 0.0
    answered_at: float | None = None
    prompt_sequence: int = 0  # prompt commands sent for this leg
    prompts_busy: bool = False  # until the media side reports the last one played
    alone_prompt: int | None = None  # the sequence of a queued "only participant" prompt
    code_entry: CodeEntry | PoundToJoin | None = None
    keypad: Keypad | None = None
    hangup_reason: str | None = None  # hang up once the queued prompts have played
    dialout: DialOut | None = None  # set for calls the conference placed
    pending_answer: tuple[bytes, AudioSession | None] | None = None  # ringing: SDP, session
    srtp_mode: str = "off"  # rtp.srtp: which offers we answer (bridge/sip/sdes.py)
    secure_offer: bool = False  # our offers are RTP/SAVP with SDES keys
    offered_crypto: tuple[sdes.Crypto, ...] = ()  # the keys of our SAVP offer
    srtp: SrtpKeys | None = None  # the keys settled, once an SRTP stream is negotiated

    def offer(self) -> bytes:
        """Our offer: for a call we place, or in the 200 to an INVITE without SDP."""
        if self.secure_offer and not self.offered_crypto:
            self.offered_crypto = sdes.offer_cryptos()
        return build_offer(
            local_host=self.host,
            local_port=self.port,
            session_id=self.session_id,
            version=self.sdp_version,
            codecs=self.codecs,
            proto="RTP/SAVP" if self.secure_offer else "RTP/AVP",
            attributes=[crypto.line() for crypto in self.offered_crypto],
        )

    def answer(self, offer: bytes) -> tuple[bytes, AudioSession]:
        """Our answer to the peer's offer (INVITE or re-INVITE); SdpError carries the status."""
        description = parse_sdp(offer)
        profiles = sdes.profiles(self.srtp_mode)
        try:
            session = negotiate_offer(description, self.codecs, profiles)
        except SdpError as exc:
            raise sdes.refusal(list(description.media), self.srtp_mode) or exc from None
        keys, attributes = None, []
        if session.media is not None and sdes.is_srtp(session.media.proto):
            keys, line = sdes.answer_crypto(session.media, self.srtp)
            attributes.append(line)
        sdp = build_answer(
            description,
            session,
            local_host=self.host,
            local_port=self.port,
            session_id=self.session_id,
            version=self.sdp_version,
            profiles=profiles,
            attributes=attributes,
        )
        self.srtp = keys
        return sdp, session

    def take_answer(self, answer: bytes | None, where: str) -> AudioSession:
        """The peer's answer to our offer (in the ACK, or in its 200)."""
        if not answer:
            raise SdpError(f"{where} carried no SDP answer to our offer", 488)
        if not self.secure_offer:
            return negotiate_answer(parse_sdp(answer), self.codecs)
        session = negotiate_answer(parse_sdp(answer), self.codecs, sdes.SRTP_PROFILES)
        assert session.media is not None
        self.srtp = sdes.read_answer(session.media, self.offered_crypto)
        return session


def negotiated(session: AudioSession, srtp: SrtpKeys | None = None) -> NegotiatedMedia:
    codec = session.codec
    dynamic = codec.is_named("opus")  # the others' payload types are static
    return NegotiatedMedia(
        codec=codec.encoding.upper(),
        remote=(session.remote_host, session.remote_port),
        telephone_event_pt=(
            session.telephone_event.payload_type if session.telephone_event else None
        ),
        on_hold=session.on_hold,
        payload_type=codec.payload_type if dynamic else None,
        fmtp=codec.fmtp if dynamic else None,
        srtp=srtp,
    )


def reason_phrase(text: str) -> str:
    """A reason phrase may not contain CR/LF; keep it short."""
    return " ".join(text.split())[:100]
