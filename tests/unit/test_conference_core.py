"""The conference core driven in memory, aioquic style: no socket, no task, no real clock.

Fake phones send SIP bytes to a real `UserAgent`; its events go to the `ConferenceCore` with an
injected `now` (the wall clock is `WALL + now`), and the core's SIP actions are applied back to
the UA as `bridge/server.py` does, so the dialogs move on. Media reports are built directly.
Each step compares the core's whole output (SIP actions, media commands, bus events) with the
records expected; SDP bodies (random session ids) are replaced by `SDP` and parsed separately.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from sipmessage import URI, Request, Response

from bridge.conference.actions import (
    Answer,
    AnswerReinvite,
    Cancel,
    HangUp,
    PlaceCall,
    Reject,
    RejectReinvite,
    UaAction,
    carry_out,
)
from bridge.conference.core import ConferenceCore
from bridge.config import (
    AnnouncementsConfig,
    Config,
    KeypadConfig,
    RecordingConfig,
    RoomDefinition,
    RoomsConfig,
    SipConfig,
)
from bridge.control_port import DialRequest
from bridge.events import (
    BridgeEvent,
    CallAlerting,
    CallFinished,
    DialOutEnded,
    DialOutRinging,
    DialOutSettled,
    DtmfReceived,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    RecordingStarted,
    RecordingStopped,
)
from bridge.mixing.backend import (
    AddParticipant,
    ClearPrompts,
    Controls,
    DigitPressed,
    Identity,
    MediaCommand,
    MediaReport,
    MoveParticipant,
    NegotiatedMedia,
    ParticipantLost,
    PlayPrompt,
    PromptsIdle,
    RecordingEnded,
    RemoveParticipant,
    StartRecording,
    StopRecording,
    UpdateControls,
    UpdateMedia,
)
from bridge.sip.message import encode, make_response, parse_message
from bridge.sip.sdp import SessionDescription, parse_sdp
from bridge.sip.transaction import Peer
from bridge.sip.useragent import Call, IncomingCall, UserAgent

WALL = 1_700_000_000.0  # the wall clock when `now` is 0
HOST = "127.0.0.1"
PHONE = Peer(HOST, 5070, "udp")
CALLEE = Peer(HOST, 5080, "udp")
SDP = b"<sdp>"  # stands for the SDP body of an action in the outputs compared
NO_CODEC = "no common codec: offered G729, supported OPUS, G722, PCMU, PCMA"

OUR_FORMATS = [  # the default preference order, telephone-event at 8000 and at Opus' 48000
    ("opus", 48000), ("G722", 8000), ("PCMU", 8000), ("PCMA", 8000),
    ("telephone-event", 8000), ("telephone-event", 48000),
]

_branches = itertools.count(1)


# --- SDP and SIP from the phones' side --------------------------------------------------------


def phone_sdp(
    *, port: int = 4000, direction: str = "sendrecv", codec: str = "0 PCMU/8000", version: int = 1
) -> bytes:
    """A phone's offer (or answer): one codec plus telephone-event."""
    pt, name = codec.split()
    lines = [
        "v=0",
        f"o=- 77 {version} IN IP4 {HOST}",
        "s=-",
        f"c=IN IP4 {HOST}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {pt} 101",
        f"a=rtpmap:{pt} {name}",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        f"a={direction}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


G729_SDP = phone_sdp(codec="18 G729/8000")


def sip_request(
    method: str,
    uri: str,
    *,
    peer: Peer,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    body: bytes = b"",
    content_type: str = "application/sdp",
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {peer.host}:{peer.port};branch=z9hG4bKphone{next(_branches)}",
        "Max-Forwards: 70",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:{peer.host}:{peer.port}>",
        *(f"{name}: {value}" for name, value in headers),
        *([f"Content-Type: {content_type}"] if body else []),
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def summary(messages: list[Request | Response]) -> list[str]:
    """What the bridge sent on the wire: "200 INVITE" for responses, the method for requests."""
    return [f"{m.code} {m.cseq.method}" if isinstance(m, Response) else m.method for m in messages]


# --- the bridge under test: UA + core, outputs drained and compared whole ---------------------


class Ports:
    """The fake `reserve_port`: 40000, 40002, ...; None once `exhausted`."""

    def __init__(self) -> None:
        self._next = itertools.count(40000, 2)
        self.exhausted = False
        self.given: dict[str, int] = {}
        self.rooms: dict[str, str | None] = {}  # the room each leg's port was asked for

    def __call__(self, leg: str, room: str | None = None) -> int | None:
        if self.exhausted:
            return None
        self.rooms[leg] = room
        self.given[leg] = port = next(self._next)
        return port


@dataclass
class Out:
    """One drain of the core's outputs."""

    ua: list[UaAction] = field(default_factory=list)
    media: list[MediaCommand] = field(default_factory=list)
    events: list[BridgeEvent] = field(default_factory=list)


def config(*rooms: RoomDefinition, max_participants: int = 40) -> Config:
    return Config(
        sip=SipConfig(advertise=HOST),
        rooms=RoomsConfig(max_participants=max_participants),
        room=rooms,
        announcements=AnnouncementsConfig(only_participant=False, join_leave_tones=False),
    )


class Bridge:
    def __init__(self, cfg: Config | None = None) -> None:
        self.now = 0.0
        self.ports = Ports()
        self.ua = UserAgent(host=HOST, udp_port=5060, tcp_port=5060)
        self.core = ConferenceCore(cfg or config(), self.ports, lambda: WALL + self.now)
        self.calls: dict[str, Call] = {}  # by Call-ID, as the UA reported them
        self.sdps: list[bytes] = []  # the SDP bodies replaced by `SDP` in the outputs

    # inputs
    def receive(self, data: bytes, peer: Peer) -> None:
        self.ua.receive_data(data, peer, self.now)
        while (event := self.ua.next_event()) is not None:
            if isinstance(event, IncomingCall):
                self.calls[event.call.invite.call_id] = event.call
            self.core.handle_ua_event(event, self.now)

    def report(self, report: MediaReport) -> None:
        self.core.handle_media_report(report, self.now)

    def at(self, now: float) -> None:
        """The server's tick: the core's timers at `now`."""
        self.now = now
        self.core.handle_timer(now)

    # outputs
    def take(self) -> Out:
        """Drain the core; its SIP actions are carried out on the UA, as the server does."""
        actions = self.core.take_ua_actions()
        for action in actions:
            self._apply(action)
        return Out(
            [self._blank(a) for a in actions],
            self.core.take_media_commands(),
            self.core.take_events(),
        )

    def sent(self) -> list[Request | Response]:
        return [parse_message(out.data) for out in self.ua.datagrams_to_send()]

    @property
    def sdp(self) -> SessionDescription:
        """The last SDP body the core gave the UA, parsed."""
        return parse_sdp(self.sdps[-1])

    def _blank(self, action: UaAction) -> UaAction:
        if isinstance(action, Answer | AnswerReinvite | PlaceCall):
            self.sdps.append(action.sdp)
            return replace(action, sdp=SDP)
        return action

    def _apply(self, action: UaAction) -> None:
        carry_out(self.ua, action, self.now)  # as bridge/server.py does


class Phone:
    """A phone calling `sip:<room>@bridge` as `user`: the requests of its one dialog."""

    def __init__(
        self,
        bridge: Bridge,
        user: str,
        room: str = "r",
        headers: tuple[tuple[str, str], ...] = (),
        peer: Peer = PHONE,
    ) -> None:
        self.bridge, self.user, self.room, self.headers = bridge, user, room, headers
        self.peer = peer
        self.call_id = f"{user}-{next(_branches)}@{HOST}"
        self.cseq = 0

    @property
    def call(self) -> Call:
        return self.bridge.calls[self.call_id]

    @property
    def key(self) -> str:
        return self.call.key

    @property
    def tag(self) -> str:
        """The bridge's To tag: the participant id."""
        return self.call.local_tag

    def _send(self, method: str, body: bytes = b"", content_type: str = "application/sdp") -> None:
        if method != "ACK":
            self.cseq += 1
        in_dialog = method != "INVITE" or self.call_id in self.bridge.calls
        to = f"<sip:{self.room}@{HOST}>" + (f";tag={self.tag}" if in_dialog else "")
        self.bridge.receive(
            sip_request(
                method,
                f"sip:{self.room}@{HOST}:5060",
                peer=self.peer,
                from_=f"<sip:{self.user}@{HOST}>;tag={self.user}-tag",
                to=to,
                call_id=self.call_id,
                cseq=self.cseq,
                body=body,
                content_type=content_type,
                headers=self.headers if method == "INVITE" and not in_dialog else (),
            ),
            self.peer,
        )

    def invite(self, sdp: bytes = phone_sdp()) -> None:
        self._send("INVITE", sdp)

    def ack(self, sdp: bytes = b"") -> None:
        self._send("ACK", sdp)

    def bye(self) -> None:
        self._send("BYE")

    def reinvite(self, sdp: bytes) -> None:
        self._send("INVITE", sdp)

    def info(self, digit: str) -> None:
        self._send("INFO", f"Signal={digit}\r\nDuration=160\r\n".encode(), "application/dtmf-relay")

    # what the core should say about this phone's call
    def added(self, room: str | None, now: float = 0.0, port: int = 4000) -> AddParticipant:
        identity = Identity(self.tag, self.user, "", HOST)
        return AddParticipant(self.key, identity, pcmu(port), Controls(), room, now)

    def alerting(self, at: float = 0.0) -> CallAlerting:
        return CallAlerting(WALL + at, self.room, self.tag, self.call_id, self.user, False)

    def finished(
        self,
        at: float,
        reason: str,
        answered: float | None = 0.0,
        status: int = 200,
        participant: str | None = None,
    ) -> CallFinished:
        return CallFinished(
            WALL + at,
            self.room,
            self.tag if participant is None else participant,
            self.call_id,
            self.user,
            WALL,
            None if answered is None else WALL + answered,
            status,
            reason,
        )


class Callee:
    """The phone the conference calls: answers the bridge's INVITE as the test says."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.tag = "bob-tag"
        (self.invite,) = [m for m in bridge.sent() if isinstance(m, Request)]

    def respond(self, code: int, body: bytes = b"", to: Request | None = None) -> None:
        response = make_response(
            to or self.invite,
            code,
            to_tag=self.tag,
            body=body,
            content_type="application/sdp" if body else None,
        )
        if code == 200 and to is None:
            response.headers.set("Contact", f"<sip:bob@{CALLEE.host}:{CALLEE.port}>")
        self.bridge.receive(encode(response), CALLEE)

    def bye(self) -> None:
        self.bridge.receive(
            sip_request(
                "BYE",
                f"sip:r@{HOST}:5060",
                peer=CALLEE,
                from_=f"<sip:bob@{HOST}:5080>;tag={self.tag}",
                to=self.invite.headers["From"],
                call_id=self.invite.call_id,
                cseq=1,
            ),
            CALLEE,
        )


def pcmu(port: int = 4000, on_hold: bool = False) -> NegotiatedMedia:
    return NegotiatedMedia("PCMU", (HOST, port), 101, on_hold)


def joined(bridge: Bridge, user: str) -> Phone:
    """A phone that called in, was answered and ACKed; the outputs are dropped."""
    caller = Phone(bridge, user)
    caller.invite()
    caller.ack()
    bridge.take()
    bridge.sent()
    return caller


def press(bridge: Bridge, leg: str, keys: str) -> None:
    for key in keys:
        bridge.report(DigitPressed(leg, key, "rfc4733"))


# --- dialling in ------------------------------------------------------------------------------


def test_dial_in_to_an_open_room_answers_joins_and_leaves() -> None:
    bridge = Bridge()
    alice = Phone(bridge, "alice")
    alice.invite()
    assert bridge.take() == Out(
        ua=[Answer(alice.key, SDP)],
        media=[alice.added("r")],
        events=[alice.alerting(), ParticipantJoined(WALL, "r", alice.tag, "alice")],
    )
    assert bridge.ports.given == {alice.key: 40000}
    assert bridge.ports.rooms == {alice.key: "r"}  # known when answered: a shared port may do
    (audio,) = bridge.sdp.media
    assert (bridge.sdp.connection, audio.port, audio.direction) == (HOST, 40000, "sendrecv")
    assert [f.encoding for f in audio.formats] == ["PCMU", "telephone-event"]
    sent = bridge.sent()
    assert summary(sent) == ["100 INVITE", "200 INVITE"]
    assert sent[1].body == bridge.sdps[-1]
    alice.ack()
    assert bridge.take() == Out()

    bridge.now = 1.0
    bob = Phone(bridge, "bob")
    bob.invite()
    bob.ack()
    assert bridge.take() == Out(
        ua=[Answer(bob.key, SDP)],
        media=[bob.added("r", now=1.0)],
        events=[bob.alerting(1.0), ParticipantJoined(WALL + 1, "r", bob.tag, "bob")],
    )
    assert bridge.sdp.media[0].port == 40002
    assert [leg.participant_id for leg in bridge.core.members("r")] == [alice.tag, bob.tag]

    bridge.now = 5.0
    alice.bye()
    assert bridge.take() == Out(
        media=[RemoveParticipant(alice.key)],
        events=[
            alice.finished(5.0, "bye"),
            ParticipantLeft(WALL + 5, "r", alice.tag, "bye"),
        ],
    )
    assert "r" in bridge.core.rooms
    bridge.now = 6.0
    bob.bye()
    assert bridge.take() == Out(
        media=[RemoveParticipant(bob.key)],
        events=[
            CallFinished(
                WALL + 6, "r", bob.tag, bob.call_id, "bob", WALL + 1, WALL + 1, 200, "bye"
            ),
            ParticipantLeft(WALL + 6, "r", bob.tag, "bye"),
        ],
    )
    assert "r" not in bridge.core.rooms  # closed once empty
    assert bridge.core.legs == {}
    assert summary(bridge.sent()) == ["100 INVITE", "200 INVITE", "200 BYE", "200 BYE"]


def test_invite_without_sdp_gets_our_offer_and_media_starts_with_the_answer_in_the_ack() -> None:
    bridge = Bridge()
    alice = Phone(bridge, "alice")
    alice.invite(b"")
    assert bridge.take() == Out(ua=[Answer(alice.key, SDP)], events=[alice.alerting()])
    (audio,) = bridge.sdp.media
    assert audio.port == 40000
    assert [(f.encoding, f.clock_rate) for f in audio.formats] == OUR_FORMATS
    bridge.now = 0.5
    alice.ack(phone_sdp())
    assert bridge.take() == Out(
        media=[alice.added("r", now=0.5)],
        events=[ParticipantJoined(WALL + 0.5, "r", alice.tag, "alice")],
    )


# --- room codes and caller lists --------------------------------------------------------------

CODED = RoomDefinition(name="r", access="room", code="1234")


def test_the_port_is_asked_for_with_the_room_when_the_room_is_known() -> None:
    """A named room's code can only admit into that room; the IVR user's can be any room."""
    bridge = Bridge(config(CODED))
    named, ivr = Phone(bridge, "alice"), Phone(bridge, "bob", room="conference")
    named.invite()
    ivr.invite()
    assert bridge.ports.rooms == {named.key: "r", ivr.key: None}


def test_room_code_right_code_moves_the_caller_from_the_lobby_into_the_room() -> None:
    bridge = Bridge(config(CODED))
    alice = Phone(bridge, "alice")
    alice.invite()
    alice.ack()
    assert bridge.take() == Out(
        ua=[Answer(alice.key, SDP)],
        media=[alice.added(None), PlayPrompt(alice.key, "enter_code", True, 1)],
        events=[alice.alerting()],
    )
    bridge.now = 2.0
    press(bridge, alice.key, "1234")
    # each key stops the prompt playing (barge-in); digits in the lobby are still reported
    assert bridge.take() == Out(
        media=[ClearPrompts(alice.key, n) for n in (2, 3, 4, 5)],
        events=[DtmfReceived(WALL + 2, "(lobby)", alice.tag, d, "rfc4733") for d in "1234"],
    )
    press(bridge, alice.key, "#")
    assert bridge.take() == Out(
        media=[
            ClearPrompts(alice.key, 6),
            ClearPrompts(alice.key, 7),
            MoveParticipant(alice.key, "r"),
        ],
        events=[
            DtmfReceived(WALL + 2, "(lobby)", alice.tag, "#", "rfc4733"),
            ParticipantJoined(WALL + 2, "r", alice.tag, "alice"),
        ],
    )
    assert bridge.core.find("r", alice.tag) is not None
    bridge.at(60.0)  # the code timeout no longer runs
    assert bridge.take() == Out()


def test_room_code_wrong_three_times_hangs_up_once_the_last_prompt_played() -> None:
    bridge = Bridge(config(CODED))
    bob = joined(bridge, "bob")
    press(bridge, bob.key, "99#")
    assert bridge.take().media == [
        *[ClearPrompts(bob.key, n) for n in (2, 3, 4)],
        PlayPrompt(bob.key, "wrong_code", True, 5),
        PlayPrompt(bob.key, "enter_code", True, 6),
    ]
    press(bridge, bob.key, "#")  # an empty code is wrong too
    assert bridge.take().media == [
        ClearPrompts(bob.key, 7),
        PlayPrompt(bob.key, "wrong_code", True, 8),
        PlayPrompt(bob.key, "enter_code", True, 9),
    ]
    press(bridge, bob.key, "4321#")
    assert bridge.take().media == [
        *[ClearPrompts(bob.key, n) for n in range(10, 15)],
        PlayPrompt(bob.key, "too_many_attempts", True, 15),
    ]
    assert bridge.core.find("r", bob.tag) is None

    bridge.at(1.0)  # the prompt is still playing: no hang-up yet
    bridge.report(PromptsIdle(bob.key, 14))  # an older sequence does not count
    bridge.at(1.02)
    assert bridge.take() == Out()
    bridge.report(PromptsIdle(bob.key, 15))
    assert bridge.take() == Out()
    bridge.at(3.0)
    assert bridge.take() == Out(
        ua=[HangUp(bob.key, "wrong code")],
        media=[RemoveParticipant(bob.key)],
        events=[bob.finished(3.0, "wrong code")],
    )
    assert summary(bridge.sent()) == ["BYE"]
    assert bridge.core.legs == {}


def test_room_code_timeout_counts_as_a_wrong_attempt() -> None:
    bridge = Bridge(config(CODED))
    bob = joined(bridge, "bob")
    bridge.at(14.9)
    assert bridge.take() == Out()
    bridge.at(15.0)  # rooms.code_timeout_s after the first prompt
    assert bridge.take() == Out(
        media=[
            PlayPrompt(bob.key, "wrong_code", True, 2),
            PlayPrompt(bob.key, "enter_code", True, 3),
        ]
    )
    bridge.at(20.0)
    press(bridge, bob.key, "1")  # a key restarts the timeout
    bridge.take()
    bridge.at(34.9)
    assert bridge.take() == Out()
    bridge.at(35.0)
    assert bridge.take().media == [
        PlayPrompt(bob.key, "wrong_code", True, 5),
        PlayPrompt(bob.key, "enter_code", True, 6),
    ]
    bridge.at(50.0)
    assert bridge.take().media == [PlayPrompt(bob.key, "too_many_attempts", True, 7)]
    bridge.report(PromptsIdle(bob.key, 7))
    bridge.at(52.0)
    assert bridge.take() == Out(
        ua=[HangUp(bob.key, "code timeout")],
        media=[RemoveParticipant(bob.key)],
        events=[bob.finished(52.0, "code timeout")],
    )


def test_caller_list_refuses_others_after_a_prompt_and_lets_listed_callers_in() -> None:
    bridge = Bridge(config(RoomDefinition(name="r", access="caller", callers=("alice",))))
    bob = Phone(bridge, "bob")
    bob.invite()
    bob.ack()
    assert bridge.take() == Out(
        ua=[Answer(bob.key, SDP)],
        media=[bob.added(None), PlayPrompt(bob.key, "not_allowed", True, 1)],
        events=[bob.alerting()],
    )
    bridge.at(0.02)
    assert bridge.take() == Out()
    bridge.report(PromptsIdle(bob.key, 1))
    bridge.at(2.0)
    assert bridge.take() == Out(
        ua=[HangUp(bob.key, "caller not allowed")],
        media=[RemoveParticipant(bob.key)],
        events=[bob.finished(2.0, "caller not allowed")],
    )
    assert summary(bridge.sent()) == ["100 INVITE", "200 INVITE", "BYE"]

    alice = Phone(bridge, "alice")
    alice.invite()
    assert bridge.take() == Out(
        ua=[Answer(alice.key, SDP)],
        media=[alice.added("r", now=2.0)],
        events=[alice.alerting(2.0), ParticipantJoined(WALL + 2, "r", alice.tag, "alice")],
    )
    # the number is taken from P-Asserted-Identity when there is one
    device = Phone(bridge, "device7", headers=(("P-Asserted-Identity", f"<sip:alice@{HOST}>"),))
    device.invite()
    (added,) = bridge.take().media
    assert (added.room, added.identity.caller) == ("r", "alice")  # type: ignore[union-attr]


def test_only_participant_prompt_stops_when_a_second_person_arrives() -> None:
    cfg = replace(config(), announcements=AnnouncementsConfig(join_leave_tones=False))
    bridge = Bridge(cfg)
    alice = joined(bridge, "alice")
    bridge.now = 1.0
    bob = Phone(bridge, "bob")
    bob.invite()
    out = bridge.take()
    assert out.media == [bob.added("r", now=1.0), ClearPrompts(alice.key, 2)]
    bridge.report(PromptsIdle(alice.key, 2))
    assert bridge.take() == Out()

    # once it has played, a later arrival clears nothing
    bridge.now = 2.0
    alice.bye()
    bob.bye()
    bridge.take()
    carol = joined(bridge, "carol")
    bridge.report(PromptsIdle(carol.key, 1))
    dave = Phone(bridge, "dave")
    dave.invite()
    assert bridge.take().media == [dave.added("r", now=2.0)]


# --- keys and re-INVITEs of a participant -----------------------------------------------------


def test_keypad_1_mutes_and_unmutes_with_a_prompt() -> None:
    bridge = Bridge()
    alice = joined(bridge, "alice")
    bridge.now = 3.0
    bridge.report(DigitPressed(alice.key, "1", "rfc4733"))
    assert bridge.take() == Out(
        media=[
            UpdateControls(alice.key, Controls(muted=True)),
            PlayPrompt(alice.key, "muted", False, 1),
        ],
        events=[
            DtmfReceived(WALL + 3, "r", alice.tag, "1", "rfc4733"),
            ParticipantMuted(WALL + 3, "r", alice.tag, True, "keypad"),
        ],
    )
    bridge.now = 4.0
    alice.info("1")  # the same key sent as SIP INFO
    assert bridge.take() == Out(
        media=[UpdateControls(alice.key, Controls()), PlayPrompt(alice.key, "unmuted", False, 2)],
        events=[
            DtmfReceived(WALL + 4, "r", alice.tag, "1", "info"),
            ParticipantMuted(WALL + 4, "r", alice.tag, False, "keypad"),
        ],
    )
    assert summary(bridge.sent()) == ["200 INFO"]


def test_recording_key_starts_and_stops_for_listed_callers_only() -> None:
    listed = RoomDefinition(name="r", access="caller", callers=("alice",))
    cfg = replace(config(listed), keypad=KeypadConfig(toggle_recording="9"),
                  recording=RecordingConfig(dir="/rec", format="ogg"))
    bridge = Bridge(cfg)
    alice = joined(bridge, "alice")
    bridge.now = 2.0
    press(bridge, alice.key, "9")
    path = "/rec/r-20231114T221322Z.ogg"  # WALL + 2 s, UTC
    out = bridge.take()
    assert out.media == [StartRecording("r", path, "ogg"), PlayPrompt(alice.key, "beep", False, 1)]
    assert RecordingStarted(WALL + 2, "r", "", path, "ogg") in out.events
    press(bridge, alice.key, "9")
    assert bridge.take().media == [StopRecording("r"), PlayPrompt(alice.key, "beep", False, 2)]
    bridge.report(RecordingEnded("r", path, 1.5, 1234, "stopped"))
    assert bridge.take().events == [RecordingStopped(WALL + 2, "r", "", path, 1.5, 1234, "stopped")]
    assert bridge.core.recordings == {}

    anyone = replace(cfg, keypad=KeypadConfig(toggle_recording="9", recording_by="anyone"))
    for settings, expected in ((cfg, "not_allowed"), (anyone, "beep")):
        other = Bridge(replace(settings, room=()))  # no caller list: only "anyone" lets bob
        bob = joined(other, "bob")
        press(other, bob.key, "9")
        assert other.take().media[-1] == PlayPrompt(bob.key, expected, False, 1)


def test_reinvite_sendonly_holds_sendrecv_resumes_and_unusable_sdp_gets_488() -> None:
    bridge = Bridge()
    alice = joined(bridge, "alice")
    session_id = bridge.sdp.origin.session_id
    alice.reinvite(phone_sdp(direction="sendonly", version=2))
    assert bridge.take() == Out(
        ua=[AnswerReinvite(alice.key, SDP)], media=[UpdateMedia(alice.key, pcmu(on_hold=True))]
    )
    assert (bridge.sdp.origin.session_id, bridge.sdp.origin.version) == (session_id, "2")
    assert (bridge.sdp.media[0].port, bridge.sdp.media[0].direction) == (40000, "recvonly")

    alice.reinvite(phone_sdp(version=3))
    assert bridge.take() == Out(
        ua=[AnswerReinvite(alice.key, SDP)], media=[UpdateMedia(alice.key, pcmu())]
    )
    assert bridge.sdp.origin.version == "3" and bridge.sdp.media[0].direction == "sendrecv"

    alice.reinvite(G729_SDP)
    assert bridge.take() == Out(ua=[RejectReinvite(alice.key, 488, NO_CODEC)])
    sent = bridge.sent()
    assert summary(sent) == [
        *["100 INVITE", "200 INVITE"] * 2,
        *["100 INVITE", "488 INVITE"],
    ]
    assert [sent[1].body, sent[3].body] == bridge.sdps[-2:]


# --- dial-out ---------------------------------------------------------------------------------

DEST = f"sip:bob@{HOST}:5080"


def dial(bridge: Bridge, confirm: bool) -> tuple[str, str]:
    """The conference calls bob into "r"; returns the leg key and the participant id."""
    target = URI.parse(DEST)
    bridge.core.dial(DialRequest("d1", "r", DEST, "100", confirm, target, CALLEE), bridge.now)
    out = bridge.take()
    (place,) = out.ua
    assert isinstance(place, PlaceCall)
    assert out == Out(
        ua=[PlaceCall(place.call_id, place.local_tag, target, CALLEE, "r", "100", SDP)]
    )
    key = f"{place.call_id}/out"
    assert bridge.ports.given == {key: 40000}
    assert bridge.ports.rooms == {key: "r"}
    (audio,) = bridge.sdp.media
    assert audio.port == 40000
    assert [(f.encoding, f.clock_rate) for f in audio.formats] == OUR_FORMATS
    return key, place.local_tag


def callee_added(key: str, tag: str, now: float) -> AddParticipant:
    return AddParticipant(key, Identity(tag, DEST, "", HOST), pcmu(4002), Controls(), None, now)


def dial_ended(
    at: float, status: str, sip_status: int | None, reason: str, answered: float | None
) -> DialOutEnded:
    return DialOutEnded(
        WALL + at,
        "r",
        "",
        "d1",
        DEST,
        "100",
        status,
        sip_status,
        reason,
        WALL,
        None if answered is None else WALL + answered,
        WALL + at,
    )


def test_dial_out_with_pound_confirmation_joins_on_pound() -> None:
    bridge = Bridge()
    key, tag = dial(bridge, confirm=True)
    bob = Callee(bridge)
    assert bob.invite.call_id == key.removesuffix("/out")
    assert bob.invite.from_address.parameters["tag"] == tag
    bob.respond(180)
    assert bridge.take() == Out(events=[DialOutRinging(WALL, "r", "", "d1")])
    bridge.now = 3.0
    bob.respond(200, phone_sdp(port=4002))
    assert bridge.take() == Out(
        media=[callee_added(key, tag, 3.0), PlayPrompt(key, "press_pound_to_join", True, 1)]
    )
    assert summary(bridge.sent()) == ["ACK"]
    bridge.at(8.0)  # the prompt repeats every 5 s
    assert bridge.take() == Out(media=[PlayPrompt(key, "press_pound_to_join", True, 2)])

    bridge.now = 9.0
    bridge.report(DigitPressed(key, "#", "rfc4733"))
    assert bridge.take() == Out(
        media=[ClearPrompts(key, 3), ClearPrompts(key, 4), MoveParticipant(key, "r")],
        events=[
            DtmfReceived(WALL + 9, "(lobby)", tag, "#", "rfc4733"),
            ParticipantJoined(WALL + 9, "r", tag, DEST),
            DialOutSettled(WALL + 9, "r", tag, "d1", "answered", 200, "", WALL + 3),
        ],
    )
    bridge.at(40.0)  # past the ring timeout and the confirm timeout: nothing happens
    assert bridge.take() == Out()

    bridge.now = 60.0
    bob.bye()
    assert bridge.take() == Out(
        media=[RemoveParticipant(key)],
        events=[
            ParticipantLeft(WALL + 60, "r", tag, "bye"),
            dial_ended(60.0, "answered", 200, "", answered=3.0),
        ],
    )
    assert summary(bridge.sent()) == ["200 BYE"]
    assert bridge.core.legs == {} and "r" not in bridge.core.rooms


def test_dial_out_without_pound_says_goodbye_and_hangs_up_unanswered() -> None:
    bridge = Bridge()
    key, _tag = dial(bridge, confirm=True)
    bob = Callee(bridge)
    bridge.now = 2.0
    bob.respond(200, phone_sdp(port=4002))
    bridge.take()
    bridge.at(16.98)  # a late tick repeats the prompt once, not once per 5 s missed
    assert bridge.take() == Out(media=[PlayPrompt(key, "press_pound_to_join", True, 2)])
    bridge.at(17.0)  # dialout.confirm_timeout_s after the answer
    assert bridge.take() == Out(
        media=[PlayPrompt(key, "goodbye", True, 3)],
        events=[
            DialOutSettled(WALL + 17, "r", "", "d1", "unanswered", 200, "not confirmed", WALL + 2)
        ],
    )
    bridge.at(17.02)
    assert bridge.take() == Out()
    bridge.report(PromptsIdle(key, 3))
    bridge.at(19.0)
    assert bridge.take() == Out(
        ua=[HangUp(key, "not confirmed")],
        media=[RemoveParticipant(key)],
        events=[dial_ended(19.0, "unanswered", 200, "not confirmed", answered=2.0)],
    )
    assert summary(bridge.sent()) == ["ACK", "BYE"]


def test_dial_out_busy() -> None:
    bridge = Bridge()
    key, _tag = dial(bridge, confirm=False)
    bob = Callee(bridge)
    bridge.now = 4.0
    bob.respond(486)
    assert bridge.take() == Out(
        media=[RemoveParticipant(key)],
        events=[
            DialOutSettled(WALL + 4, "r", "", "d1", "busy", 486, "Busy Here"),
            dial_ended(4.0, "busy", 486, "Busy Here", answered=None),
        ],
    )
    assert summary(bridge.sent()) == ["ACK"]
    bridge.at(30.0)  # the ring timeout of a call that is over
    assert bridge.take() == Out()


def test_dial_out_cancelled_after_the_ring_timeout() -> None:
    bridge = Bridge()
    key, _tag = dial(bridge, confirm=False)
    bob = Callee(bridge)
    bob.respond(180)
    bob.respond(180)  # a second provisional response: still ringing, said once
    assert bridge.take() == Out(events=[DialOutRinging(WALL, "r", "", "d1")])
    bridge.at(29.98)
    assert bridge.take() == Out()
    bridge.at(30.0)  # dialout.ring_timeout_s
    assert bridge.take() == Out(
        ua=[Cancel(key)],
        events=[DialOutSettled(WALL + 30, "r", "", "d1", "unanswered", None, "ring timeout")],
    )
    (cancel,) = bridge.sent()
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    bridge.now = 30.1
    bob.respond(200, to=cancel)
    bob.respond(487)
    assert bridge.take() == Out(
        media=[RemoveParticipant(key)],
        events=[dial_ended(30.1, "unanswered", 487, "ring timeout", answered=None)],
    )
    assert bridge.core.legs == {}


def test_dial_out_cancelled_on_request_and_a_crossing_200_hung_up() -> None:
    bridge = Bridge()
    key, _tag = dial(bridge, confirm=False)
    bob = Callee(bridge)
    bob.respond(180)
    bridge.take()
    bridge.now = 3.0
    assert bridge.core.cancel_dial("d1")
    assert bridge.take() == Out(
        ua=[Cancel(key)],
        events=[DialOutSettled(WALL + 3, "r", "", "d1", "unanswered", None, "cancelled")],
    )
    assert not bridge.core.cancel_dial("d1") and not bridge.core.cancel_dial("nope")
    (cancel,) = bridge.sent()
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    bridge.now = 3.1
    bob.respond(200, phone_sdp(port=4002))  # answered before our CANCEL arrived
    out = bridge.take()
    assert not any(isinstance(event, ParticipantJoined) for event in out.events), out
    assert summary(bridge.sent()) == ["ACK", "BYE"]
    assert bridge.core.legs == {}


def test_dial_out_without_a_free_port_fails_at_once() -> None:
    bridge = Bridge()
    bridge.ports.exhausted = True
    bridge.core.dial(DialRequest("d1", "r", DEST, "100", False, URI.parse(DEST), CALLEE), 0.0)
    assert bridge.take() == Out(
        events=[
            DialOutSettled(WALL, "r", "", "d1", "failed", None, "no RTP port free"),
            dial_ended(0.0, "failed", None, "no RTP port free", answered=None),
        ]
    )
    assert bridge.sent() == [] and bridge.core.legs == {}


# --- bad input --------------------------------------------------------------------------------


def test_offer_without_a_common_codec_gets_488_and_frees_the_port() -> None:
    bridge = Bridge()
    carol = Phone(bridge, "carol")
    carol.invite(G729_SDP)
    assert bridge.take() == Out(
        ua=[Reject(carol.key, 488, NO_CODEC)],
        media=[RemoveParticipant(carol.key)],
        events=[carol.finished(0.0, NO_CODEC, answered=None, status=488, participant="")],
    )
    assert bridge.ports.given == {carol.key: 40000}
    assert summary(bridge.sent()) == ["100 INVITE", "488 INVITE"]
    assert bridge.core.legs == {} and "r" not in bridge.core.rooms


def test_no_rtp_port_free_gets_503() -> None:
    bridge = Bridge()
    bridge.ports.exhausted = True
    carol = Phone(bridge, "carol")
    carol.invite()
    reason = "No RTP port free"
    assert bridge.take() == Out(
        ua=[Reject(carol.key, 503, reason)],
        events=[carol.finished(0.0, reason, answered=None, status=503, participant="")],
    )
    assert summary(bridge.sent()) == ["100 INVITE", "503 INVITE"]
    assert bridge.core.legs == {}


def test_full_room_gets_486() -> None:
    bridge = Bridge(config(max_participants=2))
    joined(bridge, "alice")
    joined(bridge, "bob")
    carol = Phone(bridge, "carol")
    carol.invite()
    assert bridge.take() == Out(
        ua=[Reject(carol.key, 486, "Room full")],
        events=[carol.finished(0.0, "Room full", answered=None, status=486, participant="")],
    )
    assert carol.key not in bridge.ports.given
    assert summary(bridge.sent()) == ["100 INVITE", "486 INVITE"]
    assert len(bridge.core.members("r")) == 2


def test_participant_lost_is_hung_up() -> None:
    bridge = Bridge()
    alice = joined(bridge, "alice")
    bridge.now = 31.0
    bridge.report(ParticipantLost(alice.key, "rtp_timeout"))
    assert bridge.take() == Out(
        ua=[HangUp(alice.key, "rtp_timeout")],
        media=[RemoveParticipant(alice.key)],
        events=[
            alice.finished(31.0, "rtp_timeout"),
            ParticipantLeft(WALL + 31, "r", alice.tag, "rtp_timeout"),
        ],
    )
    (bye,) = bridge.sent()
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert bye.headers["Reason"] == 'SIP;cause=200;text="rtp_timeout"'
    assert "r" not in bridge.core.rooms
