"""What the conference service keeps per call, and where an accepted call is going."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bridge.conference.dialout import DialOut
from bridge.conference.ivr import Admission, CodeEntry, PoundToJoin
from bridge.conference.keypad import Keypad
from bridge.conference.participant import Participant
from bridge.net.rtp_port import RtpSocket
from bridge.sip.useragent import Call


@dataclass(frozen=True)
class Plan:
    """Where an answered call goes: straight into `room`, through a code dialogue, or away."""

    admission: Admission
    room: str = ""
    code_for: Callable[[str], str | None] | None = None
    manual: bool = False  # ring until the control plane answers


@dataclass(eq=False)
class CallMedia:
    """What the service keeps per call: its socket, its SDP state and (once joined) participant."""

    call: Call
    plan: Plan
    socket: RtpSocket
    session_id: int
    caller: str
    sdp_version: int = 1
    participant: Participant | None = None
    offered_in_answer: bool = False  # INVITE had no SDP: we offered in the 200
    code_entry: CodeEntry | PoundToJoin | None = None
    hangup_reason: str | None = None  # hang up once the queued prompts have played
    keypad: Keypad | None = None
    started_at: float = 0.0  # wall clock, for the call-detail record
    dialout: DialOut | None = None  # set for calls the conference placed
    answered_at: float | None = None
