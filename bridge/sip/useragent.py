"""The bridge's SIP user agent core (the transaction user of RFC 3261), sans-I/O.

It turns transactions into calls: new INVITEs, ACKs, re-INVITEs, BYEs, CANCELs, OPTIONS and INFO,
answering what SIP itself settles (481, 501, 487, OPTIONS 200) and handing call decisions to the
application as events. The application answers synchronously through `answer`, `reject`,
`answer_reinvite` and `hangup`. Like the transaction layer it never reads a clock or touches a
socket: the asyncio layer feeds `receive_data(data, peer, now)` and `handle_timer(now)` and drains
`datagrams_to_send()` and `next_event()`.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
from collections import deque
from dataclasses import dataclass, field

from sipmessage import URI, Address, Parameters, Request, Response, Via

from bridge.sip.auth import Credentials, DigestSession
from bridge.sip.dialog import Dialog, create_cancel, dialog_id_of, format_address
from bridge.sip.info import DTMF_TYPES, InfoBodyError, dtmf_from_info
from bridge.sip.message import (
    SipError,
    encode,
    error_response,
    header_tag,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)
from bridge.sip.refer import (
    SIPFRAG,
    is_refer_event,
    notified_status,
    refer_target,
    sipfrag,
    subscription_ended,
)
from bridge.sip.registration import Registration, RegistrationConfig, RegistrationState
from bridge.sip.routing import (
    LocalAddresses,
    behind_nat,
    consume_routes,
    first_hop,
    parse_record_route,
)
from bridge.sip.session_timer import (
    SessionExpires,
    SessionTimer,
    SessionTimerConfig,
    parse_min_se,
    session_expires_header,
    supports_timer,
    uac_outcome,
    uas_negotiate,
)
from bridge.sip.session_timer import start as start_session_timer
from bridge.sip.timers import TimerConfig
from bridge.sip.transaction import (
    AckReceived,
    AckTimeout,
    Outgoing,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTimeout,
)
from bridge.sip.validate import check_request, sdp_body

ALLOWED_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY"}
)
ALLOW_HEADER = ", ".join(sorted(ALLOWED_METHODS))
SUPPORTED = frozenset({"timer"})
SUPPORTED_HEADER = ", ".join(sorted(SUPPORTED))
ACCEPTED_TYPES = frozenset(
    {"application/sdp", "application/dtmf-relay", "application/dtmf", SIPFRAG}
)

DialogId = tuple[str, str, str]


class CallState(enum.Enum):
    CALLING = "calling"  # our INVITE sent, nothing but 100 back yet
    EARLY = "early"  # our INVITE got a provisional response (ringing)
    INCOMING = "incoming"  # INVITE received, no final response yet
    ANSWERED = "answered"  # 2xx sent, waiting for the ACK
    CONFIRMED = "confirmed"  # ACK received
    ENDED = "ended"


@dataclass
class Call:
    """One call leg as the UA core tracks it: incoming, or `outgoing` (we sent the INVITE)."""

    key: str
    invite: Request
    invite_txn: str
    peer: Peer
    local_tag: str
    state: CallState = CallState.INCOMING
    dialog: Dialog | None = None
    reinvite: tuple[str, Request] | None = None  # pending re-INVITE: (txn, request)
    outgoing: bool = False
    room_name: str | None = None  # outgoing: the room that called (the Request-URI names a callee)
    auth: DigestSession | None = None  # outgoing: answers the callee's or trunk's challenges
    ack: Outgoing | None = None  # outgoing: our ACK to the 2xx, sent again if the 2xx repeats
    cancel_wanted: bool = False  # outgoing: CANCEL as soon as a provisional response arrives
    cancel_sent: bool = False
    local_sdp: bytes = b""  # our last offer or answer: a re-INVITE refresh sends it again
    remote_allow: frozenset[str] = frozenset()  # the methods the peer said it allows
    session_retried: bool = False  # outgoing: our INVITE was sent again after a 422
    alternatives: list[Peer] = field(default_factory=list)  # outgoing: next targets (RFC 3263)
    nated: bool = False  # incoming from behind NAT: in-dialog requests go to its source
    session: SessionTimer | None = None  # RFC 4028 timer of the dialog, when one runs
    pending_session: SessionExpires | None = None  # what our 2xx to the pending request says
    refer_in: tuple[str, Request] | None = None  # the peer's REFER awaiting our decision
    transferring: bool = False  # our REFER was sent: its NOTIFYs are expected

    @property
    def room(self) -> str:
        if self.room_name is not None:
            return self.room_name
        return self.invite.uri.user or ""

    @property
    def dialog_id(self) -> DialogId:
        if self.dialog is not None:
            return self.dialog.id
        return (
            self.invite.call_id,
            self.local_tag,
            self.invite.from_address.parameters.get("tag") or "",
        )


class UaEvent:
    """Base of the events the UA core gives the application."""


@dataclass(frozen=True)
class IncomingCall(UaEvent):
    """A new INVITE: the application must `answer` or `reject` it before its next input."""

    call: Call
    offer: bytes | None


@dataclass(frozen=True)
class CallConfirmed(UaEvent):
    """The ACK for our 2xx arrived; `answer` holds the SDP answer when our 2xx carried the offer."""

    call: Call
    answer: bytes | None


@dataclass(frozen=True)
class ReInvite(UaEvent):
    """A re-INVITE in an established dialog: `answer_reinvite` or `reject_reinvite` it."""

    call: Call
    offer: bytes | None


@dataclass(frozen=True)
class InfoReceived(UaEvent):
    """A DTMF digit sent in an INFO of the call's dialog (already answered 200)."""

    call: Call
    digit: str


@dataclass(frozen=True)
class CallProgress(UaEvent):
    """Our INVITE got a provisional response (180 Ringing, 183 Session Progress)."""

    call: Call
    status: int


@dataclass(frozen=True)
class CallAnswered(UaEvent):
    """Our INVITE was answered (2xx, already ACKed); `answer` is the callee's SDP."""

    call: Call
    answer: bytes | None


@dataclass(frozen=True)
class CallFailed(UaEvent):
    """Our INVITE ended without a dialog: a final error, a timeout (408) or a CANCEL (487)."""

    call: Call
    status: int
    reason: str


@dataclass(frozen=True)
class CallEnded(UaEvent):
    """The remote side ended the call (BYE, CANCEL) or SIP gave up on it (no ACK)."""

    call: Call
    reason: str


@dataclass(frozen=True)
class TransferRequested(UaEvent):
    """The peer asks by REFER to transfer the call to `target` (`to_bridge`: a URI of this
    bridge): `accept_transfer` then `report_transfer`, or `reject_transfer`."""

    call: Call
    target: URI
    to_bridge: bool


@dataclass(frozen=True)
class TransferResult(UaEvent):
    """How our REFER ended: the referred call's final status (2xx: the peer is connected to
    the target), or the REFER's own failure."""

    call: Call
    status: int
    reason: str


@dataclass(frozen=True)
class RegistrationChanged(UaEvent):
    """A trunk registration was granted, refreshed, removed or failed (then retried)."""

    registration: Registration


@dataclass
class UserAgentCounters:
    requests: int = 0
    bad_messages: int = 0
    stray_acks: int = 0
    calls_started: int = 0
    calls_ended: int = 0


@dataclass
class UserAgent:
    """The conference bridge's UAS: owns the transaction layer and the dialogs of its calls."""

    host: str
    udp_port: int
    tcp_port: int
    timers: TimerConfig = field(default_factory=TimerConfig)
    user_agent: str = "confbridge/0.1"
    max_message_bytes: int = 65535
    session_timers: SessionTimerConfig = field(default_factory=SessionTimerConfig)
    keepalive_s: float = 0.0  # OPTIONS in each established dialog this often; 0 = never
    tls_port: int = 0  # the TLS listener's, 0 when there is none

    def __post_init__(self) -> None:
        self.transactions = TransactionLayer(self.timers)
        self.calls_by_txn: dict[str, Call] = {}
        self.calls_by_dialog: dict[DialogId, Call] = {}
        self.calls: dict[str, Call] = {}
        self.events: deque[UaEvent] = deque()
        self._stateless: list[Outgoing] = []
        self.counters = UserAgentCounters()
        self._session_heap: list[tuple[float, int, str]] = []
        self._session_order = 0
        self._refreshes: dict[str, Call] = {}  # our refresh transactions
        self._refers: dict[str, Call] = {}  # our REFER transactions
        self.registrations: list[Registration] = []
        self._next_keepalive: float | None = None
        self._keepalives: dict[str, Call] = {}  # our OPTIONS keep-alives by transaction
        self._registering: dict[str, tuple[Registration, Request]] = {}  # by transaction
        self.local = LocalAddresses(
            hosts=frozenset({self.host.strip("[]").lower()}),
            ports=frozenset({self.udp_port, self.tcp_port, self.tls_port} - {0}),
        )

    # --- inputs -----------------------------------------------------------------------------

    def receive_data(self, data: bytes, peer: Peer, now: float) -> None:
        """One datagram or one framed TCP message from `peer`."""
        try:
            message = parse_message(data, self.max_message_bytes)
        except SipError as exc:
            self.counters.bad_messages += 1
            answer = error_response(data, exc)
            if answer is not None:
                self._stateless.append(Outgoing(answer, self._reply_peer(data, peer)))
            return
        self.transactions.receive(message, peer, now)
        self._process_transaction_events(now)

    def transport_failed(self, peer: Peer, now: float) -> None:
        """The transport could not reach `peer` (a TLS connection refused or not trusted)."""
        self.transactions.transport_failed(peer)
        self._process_transaction_events(now)

    def handle_timer(self, now: float) -> None:
        self.transactions.handle_timer(now)
        self._process_transaction_events(now)
        self._session_timers_due(now)
        for registration in self.registrations:
            if registration.next_at is not None and registration.next_at <= now:
                self._send_register(registration, now)
        if self._next_keepalive is not None and self._next_keepalive <= now:
            self._send_keepalives(now)

    def get_timer(self) -> float | None:
        deadlines = [
            self.transactions.get_timer(),
            self._next_session_deadline(),
            *(r.next_at for r in self.registrations),
            self._next_keepalive,
        ]
        present = [deadline for deadline in deadlines if deadline is not None]
        return min(present) if present else None

    def next_event(self) -> UaEvent | None:
        return self.events.popleft() if self.events else None

    def datagrams_to_send(self) -> list[Outgoing]:
        out = self._stateless + self.transactions.datagrams_to_send()
        self._stateless = []
        return out

    # --- application actions ----------------------------------------------------------------

    def ringing(self, call: Call, now: float) -> None:
        self._respond(call.invite_txn, call.invite, call, 180, now)

    def answer(self, call: Call, sdp: bytes, now: float) -> None:
        """Send the 2xx (the transaction layer repeats it until the ACK) and open the dialog."""
        if call.state is not CallState.INCOMING:
            return
        call.dialog = Dialog.as_uas(call.invite, call.local_tag)
        call.state = CallState.ANSWERED
        call.local_sdp = sdp
        call.remote_allow = _allowed(call.invite)
        self.calls_by_dialog[call.dialog_id] = call
        headers = self._session_answer(call, call.invite, now)
        self._respond(
            call.invite_txn,
            call.invite,
            call,
            200,
            now,
            body=sdp,
            with_contact=True,
            headers=headers,
        )

    def reject(
        self,
        call: Call,
        status: int,
        now: float,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if call.state is not CallState.INCOMING:
            return
        self._respond(
            call.invite_txn, call.invite, call, status, now, reason=reason, headers=headers
        )
        self._forget(call)

    def answer_reinvite(self, call: Call, sdp: bytes, now: float) -> None:
        """The 2xx to the peer's re-INVITE or UPDATE with an offer: `sdp` is our answer."""
        if call.reinvite is None:
            return
        (txn, request), call.reinvite = call.reinvite, None
        call.local_sdp = sdp
        headers = self._session_answer(call, request, now)
        self._respond(txn, request, call, 200, now, body=sdp, with_contact=True, headers=headers)

    def reject_reinvite(
        self, call: Call, status: int, now: float, reason: str | None = None
    ) -> None:
        if call.reinvite is None:
            return
        (txn, request), call.reinvite = call.reinvite, None
        call.pending_session = None
        self._respond(txn, request, call, status, now, reason=reason)

    def invite(
        self,
        *,
        target: URI,
        peer: Peer,
        room: str,
        caller: str,
        sdp: bytes,
        now: float,
        display_name: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        credentials: Credentials | None = None,
        call_id: str | None = None,
        local_tag: str | None = None,
        alternatives: tuple[Peer, ...] = (),
    ) -> Call:
        """Call `target` through `peer` (the callee, or the trunk for numbers) from the room.

        `caller` is the From user (the caller id: "anonymous" for a private call)."""
        local_tag = local_tag or new_tag()
        request = Request(method="INVITE", uri=target, body=sdp)
        request.headers.add("Via", str(self._via(peer.transport)))
        request.headers.add("Max-Forwards", "70")
        from_host = "anonymous.invalid" if caller == "anonymous" else self.host
        from_uri = URI(scheme="sip", user=caller, host=from_host)
        from_address = Address(name=display_name or "", uri=from_uri)
        request.headers.add("From", format_address(from_address, local_tag))
        request.headers.add("To", format_address(Address(uri=target)))
        request.headers.add("Call-ID", call_id or new_call_id(self.host))
        request.headers.add("CSeq", "1 INVITE")
        call = Call(
            key="",
            invite=request,
            invite_txn="",
            peer=peer,
            local_tag=local_tag,
            state=CallState.CALLING,
            outgoing=True,
            room_name=room,
            auth=DigestSession(credentials) if credentials else None,
            alternatives=list(alternatives),
        )
        request.headers.add("Contact", format_address(self._contact(call)))
        request.headers.add("Allow", ALLOW_HEADER)
        request.headers.add("Supported", SUPPORTED_HEADER)
        request.headers.add("Session-Expires", str(self.session_timers.session_expires))
        request.headers.add("Min-SE", str(self.session_timers.min_se))
        request.headers.add("User-Agent", self.user_agent)
        for name, value in headers:
            request.headers.add(name, value)
        request.headers.add("Content-Type", "application/sdp")
        call.key = f"{request.call_id}/out"
        call.local_sdp = sdp
        call.invite_txn = self.transactions.send_request(request, peer, now)
        self.calls[call.key] = call
        self.calls_by_txn[call.invite_txn] = call
        self.counters.calls_started += 1
        return call

    # --- keep-alives (NAT bindings, dead dialogs) -------------------------------------------

    def _send_keepalives(self, now: float) -> None:
        """OPTIONS in every established dialog: keeps the peer's NAT binding open and finds
        dialogs the peer has forgotten (481 ends the call)."""
        self._next_keepalive = now + self.keepalive_s if self.calls else None
        for call in list(self.calls.values()):
            if call.state is not CallState.CONFIRMED or call.dialog is None:
                continue
            request = call.dialog.create_request(
                "OPTIONS",
                via=self._via(call.peer.transport),
                contact=self._contact(call),
                extra_headers=(("User-Agent", self.user_agent),),
            )
            txn = self.transactions.send_request(request, self._dialog_peer(call), now)
            self._keepalives[txn] = call

    def _on_keepalive_response(self, txn: str, response: Response, now: float) -> None:
        if response.code < 200:
            return
        call = self._keepalives.pop(txn)
        if response.code == 481 and call.state is CallState.CONFIRMED:
            self._forget(call)  # the peer has no such dialog: no BYE to send
            self.events.append(CallEnded(call, "dialog_gone"))

    def _arm_keepalive(self, now: float) -> None:
        if self.keepalive_s > 0 and self._next_keepalive is None:
            self._next_keepalive = now + self.keepalive_s

    # --- trunk registration (RFC 3261 §10) ------------------------------------------------

    def register(self, config: RegistrationConfig, now: float) -> Registration:
        """Register `config.aor` now and keep it registered (refreshes, retries)."""
        registration = Registration(config)
        self.registrations.append(registration)
        self._send_register(registration, now)
        return registration

    def unregister(self, registration: Registration, now: float) -> None:
        """Remove the binding (Expires: 0); nothing more is sent for it afterwards."""
        if registration.state is RegistrationState.REGISTERED:
            self._send_register(registration, now, expires=0)
        else:
            registration.state = RegistrationState.UNREGISTERED
        registration.next_at = None
        if registration in self.registrations:
            self.registrations.remove(registration)

    def _send_register(
        self,
        registration: Registration,
        now: float,
        expires: int | None = None,
        header: tuple[str, str] | None = None,
    ) -> None:
        peer = registration.config.registrar
        request = registration.request(self._via(peer.transport), expires, header)
        if expires != 0:
            registration.state = RegistrationState.REGISTERING
        registration.next_at = None
        txn = self.transactions.send_request(request, peer, now)
        self._registering[txn] = (registration, request)

    def _on_register_response(self, txn: str, response: Response, now: float) -> None:
        if response.code < 200:
            return
        registration, request = self._registering.pop(txn)
        if response.code in (401, 407) and not registration.removing:
            header = registration.challenged(response, request)
            if header is not None:
                self._send_register(registration, now, header=header)
                return
        registration.answered(response, now)
        self.events.append(RegistrationChanged(registration))

    # --- transfers (RFC 3515) ----------------------------------------------------------------

    def refer(self, call: Call, target: URI, now: float) -> bool:
        """Ask the peer to call `target` (blind transfer, the bridge as transferor); the outcome
        comes as TransferResult. False when the call is not established or already moving."""
        if call.state is not CallState.CONFIRMED or call.dialog is None or call.transferring:
            return False
        contact = self._contact(call)
        request = call.dialog.create_request(
            "REFER",
            via=self._via(call.peer.transport),
            contact=contact,
            extra_headers=(
                ("Refer-To", f"<{target}>"),
                ("Referred-By", f"<{contact.uri}>"),
                ("Allow", ALLOW_HEADER),
                ("User-Agent", self.user_agent),
            ),
        )
        call.transferring = True
        txn = self.transactions.send_request(request, self._dialog_peer(call), now)
        self._refers[txn] = call
        return True

    def accept_transfer(self, call: Call, now: float) -> None:
        """202 to the peer's REFER and the first NOTIFY (100 Trying) of its subscription."""
        if call.refer_in is None:
            return
        txn, request = call.refer_in
        self._respond(txn, request, call, 202, now)
        self._notify(call, 100, now)

    def report_transfer(
        self, call: Call, status: int, now: float, reason: str | None = None
    ) -> None:
        """The final NOTIFY of an accepted REFER: how the transfer ended."""
        if call.refer_in is None:
            return
        call.refer_in = None
        self._notify(call, status, now, reason, final=True)

    def reject_transfer(
        self, call: Call, status: int, now: float, reason: str | None = None
    ) -> None:
        if call.refer_in is None:
            return
        (txn, request), call.refer_in = call.refer_in, None
        self._respond(txn, request, call, status, now, reason=reason)

    def _notify(
        self, call: Call, status: int, now: float, reason: str | None = None, final: bool = False
    ) -> None:
        if call.dialog is None or call.state is CallState.ENDED:
            return
        state = "terminated;reason=noresource" if final else "active;expires=60"
        request = call.dialog.create_request(
            "NOTIFY",
            via=self._via(call.peer.transport),
            contact=self._contact(call),
            body=sipfrag(status, reason),
            content_type=SIPFRAG,
            extra_headers=(
                ("Event", "refer"),
                ("Subscription-State", state),
                ("User-Agent", self.user_agent),
            ),
        )
        self.transactions.send_request(request, self._dialog_peer(call), now)

    def _on_refer(self, txn: str, request: Request, call: Call, now: float) -> None:
        try:
            target = refer_target(request)
        except SipError as exc:
            self._respond(txn, request, call, exc.status or 400, now, reason=exc.reason)
            return
        if call.refer_in is not None or call.state is not CallState.CONFIRMED:
            self._respond(txn, request, call, 491, now)
            return
        call.refer_in = (txn, request)
        self.events.append(TransferRequested(call, target, self.local.names(target)))

    def _on_notify(self, txn: str, request: Request, call: Call, now: float) -> None:
        """The transferee's report on our REFER (RFC 3515 §2.4.5)."""
        if not is_refer_event(request):
            self._respond(txn, request, call, 489, now, headers=(("Allow-Events", "refer"),))
            return
        if not call.transferring:
            self._respond(txn, request, call, 481, now, reason="No transfer in progress")
            return
        self._respond(txn, request, call, 200, now)
        status = notified_status(request)
        if status is not None and status[0] >= 200:
            call.transferring = False
            self.events.append(TransferResult(call, *status))
        elif subscription_ended(request):
            call.transferring = False
            self.events.append(TransferResult(call, 487, "subscription ended without result"))

    def _on_refer_response(self, txn: str, response: Response) -> None:
        if response.code < 200:
            return
        call = self._refers.pop(txn)
        if response.code >= 300 and call.transferring:
            call.transferring = False
            self.events.append(TransferResult(call, response.code, response.phrase))

    def cancel(self, call: Call, now: float) -> None:
        """Give up on our unanswered INVITE (CANCEL, §9.1: only after a provisional response;
        before one, remember to send it when one arrives). The INVITE then ends with 487."""
        if not call.outgoing or call.state not in (CallState.CALLING, CallState.EARLY):
            return
        call.cancel_wanted = True
        if call.state is CallState.EARLY and not call.cancel_sent:
            call.cancel_sent = True
            self.transactions.send_request(create_cancel(call.invite), call.peer, now)

    def hangup(self, call: Call, now: float, reason: str | None = None) -> None:
        """End the call from our side: BYE once answered, 480 before that (CANCEL for ours)."""
        if call.state is CallState.ENDED:
            return
        if call.state in (CallState.CALLING, CallState.EARLY):
            self.cancel(call, now)
            return
        if call.state is CallState.INCOMING or call.dialog is None:
            self.reject(call, 480, now, reason=reason)
            return
        bye = call.dialog.create_request(
            "BYE", via=self._via(call.peer.transport), contact=self._contact(call)
        )
        bye.headers.set("Max-Forwards", "70")
        bye.headers.set("User-Agent", self.user_agent)
        if reason:
            bye.headers.set("Reason", f'SIP;cause=200;text="{reason}"')
        self.transactions.send_request(bye, self._dialog_peer(call), now)
        self._forget(call)

    # --- event handling ---------------------------------------------------------------------

    def _process_transaction_events(self, now: float) -> None:
        while (event := self.transactions.next_event()) is not None:
            if isinstance(event, RequestReceived):
                self.counters.requests += 1
                self._on_request(event.txn_id, event.request, event.peer, now)
            elif isinstance(event, AckReceived):
                self._on_ack(event.request, now)
            elif isinstance(event, AckTimeout):
                call = self.calls_by_txn.get(event.txn_id)
                if call is not None and call.state is CallState.ANSWERED:
                    self.events.append(CallEnded(call, "no_ack"))
                    self.hangup(call, now)
            elif isinstance(event, ResponseReceived):
                self._on_response(event.txn_id, event.response, now)
            elif isinstance(event, TransactionTimeout):
                self._keepalives.pop(event.txn_id, None)  # unanswered: UDP may lose it
                registering = self._registering.pop(event.txn_id, None)
                if registering is not None:
                    registering[0].failed(408, "no answer from the registrar", now)
                    self.events.append(RegistrationChanged(registering[0]))
                    continue
                referred = self._refers.pop(event.txn_id, None)
                if referred is not None and referred.transferring:
                    referred.transferring = False
                    self.events.append(TransferResult(referred, 408, "no answer to REFER"))
                    continue
                refreshed = self._refreshes.pop(event.txn_id, None)
                if refreshed is not None:
                    self._end_session(refreshed, "session_refresh_timeout", now)
                    continue
                call = self.calls_by_txn.get(event.txn_id)
                if call is None or not call.outgoing or call.dialog is not None:
                    continue
                if self._try_next_target(call, now):
                    continue
                if event.unreachable:  # RFC 3261 §8.1.3.1: a transport error counts as 503
                    self._fail(call, 503, "cannot connect to the callee (transport error)")
                else:
                    self._fail(call, 408, "no answer from the callee's side (Timer B)")

    # --- our INVITEs ------------------------------------------------------------------------

    def _on_response(self, txn: str | None, response: Response, now: float) -> None:
        if txn is not None and txn in self._refreshes:
            self._on_refresh_response(txn, response, now)
            return
        if txn is not None and txn in self._refers:
            self._on_refer_response(txn, response)
            return
        if txn is not None and txn in self._keepalives:
            self._on_keepalive_response(txn, response, now)
            return
        if txn is not None and txn in self._registering:
            self._on_register_response(txn, response, now)
            return
        if response.cseq.method != "INVITE":
            return  # BYE and CANCEL answers: nothing more to do
        call = self.calls_by_txn.get(txn) if txn is not None else None
        if 200 <= response.code < 300 and (call is None or call.dialog is not None):
            # a 2xx repeated (the transaction ended, or already answered): ACK it again
            call = self.calls_by_dialog.get(
                (
                    response.call_id,
                    header_tag(response, "From") or "",  # tolerant: URIs of any scheme
                    header_tag(response, "To") or "",
                )
            )
            if call is not None and call.ack is not None:
                self._stateless.append(call.ack)
            return
        if call is None or not call.outgoing:
            return
        code = response.code
        if code < 200:
            if call.state is CallState.CALLING:  # any 1xx, 100 included, allows a CANCEL
                call.state = CallState.EARLY
                if call.cancel_wanted:
                    self.cancel(call, now)
            if code > 100 and not call.cancel_wanted:
                self.events.append(CallProgress(call, code))
            return
        if code < 300:
            self._on_answered(call, response, now)
        elif code in (401, 407) and call.auth is not None and call.dialog is None:
            header = call.auth.respond(response, "INVITE", str(call.invite.uri))
            if header is None:
                self._fail(call, code, "authentication failed")
            else:
                self._resend_with(call, header, now=now)
        elif code == 503 and self._try_next_target(call, now):
            return
        elif code == 422 and call.dialog is None and not call.session_retried:
            call.session_retried = True  # once: a second 422 means we cannot agree
            min_se = max(parse_min_se(response) or 0, self.session_timers.min_se)
            self._resend_with(
                call, ("Session-Expires", str(min_se)), ("Min-SE", str(min_se)), now=now
            )
        else:
            self._fail(call, code, response.phrase)

    def _on_answered(self, call: Call, response: Response, now: float) -> None:
        if call.dialog is not None:
            return  # another fork's 2xx: RFC 3261 would ACK and BYE it; we keep the first
        try:
            dialog = Dialog.as_uac(call.invite, response)
        except SipError as exc:
            self._fail(call, 502, f"unusable answer: {exc.reason}")
            return
        call.dialog = dialog
        self.calls_by_dialog[dialog.id] = call
        ack = dialog.create_ack(call.invite.cseq.sequence, via=self._via(call.peer.transport))
        ack.headers.set("User-Agent", self.user_agent)
        call.ack = Outgoing(encode(ack), self._dialog_peer(call))
        self._stateless.append(call.ack)
        if call.cancel_wanted:
            # answered while we were giving up (CANCEL crossed the 200): end it properly
            call.state = CallState.CONFIRMED
            self.hangup(call, now, reason="cancelled")
            self.events.append(CallFailed(call, 487, "cancelled"))
            return
        call.state = CallState.CONFIRMED
        self._arm_keepalive(now)
        call.remote_allow = _allowed(response)
        try:
            negotiated = uac_outcome(response)
        except SipError:
            negotiated = None  # a garbled Session-Expires: the call goes on without a timer
        if negotiated is not None:
            call.session = start_session_timer(negotiated, "uac", now)
            self._schedule_session(call)
        self.events.append(CallAnswered(call, sdp_body(response)))

    def _try_next_target(self, call: Call, now: float) -> bool:
        """RFC 3263 §4.3: the target said 503 or did not answer; the INVITE goes to the next
        one located for the name, if any (not once we are giving up on the call)."""
        if not call.alternatives or call.cancel_wanted or call.dialog is not None:
            return False
        call.peer = call.alternatives.pop(0)
        self._resend_with(call, now=now)
        return True

    def _resend_with(self, call: Call, *headers: tuple[str, str], now: float) -> None:
        """The INVITE again with credentials or a longer Session-Expires: same Call-ID and
        tags, next CSeq, new branch."""
        old = call.invite
        request = Request(method="INVITE", uri=old.uri, body=old.body)
        names = list(old.headers.keys())
        replaced = {name.lower() for name, _ in headers}
        for name, value in [(n, v) for n in names for v in old.headers.getlist(n)]:
            if name.lower() == "via":
                value = str(self._via(call.peer.transport))
            elif name.lower() == "cseq":
                value = f"{old.cseq.sequence + 1} INVITE"
            elif name.lower() in replaced:
                continue  # replaced below; a Proxy-Authorization stays for a later 401
            request.headers.add(name, value)
        for header in headers:
            request.headers.add(*header)
        self.calls_by_txn.pop(call.invite_txn, None)
        call.invite = request
        call.invite_txn = self.transactions.send_request(request, call.peer, now)
        call.state = CallState.CALLING
        self.calls_by_txn[call.invite_txn] = call

    def _fail(self, call: Call, status: int, reason: str) -> None:
        if call.state is CallState.ENDED:
            return
        self._forget(call)
        self.events.append(CallFailed(call, status, reason))

    def _on_request(self, txn: str, request: Request, peer: Peer, now: float) -> None:
        try:
            check_request(
                request,
                allowed_methods=ALLOWED_METHODS,
                supported=SUPPORTED,
                accepted_types=ACCEPTED_TYPES,
            )
        except SipError as exc:
            headers = exc.headers
            if exc.status in (405, 501) and not any(k.lower() == "allow" for k, _ in headers):
                headers = (*headers, ("Allow", ALLOW_HEADER))
            self._respond_plain(txn, request, exc.status or 400, now, exc.reason, headers)
            return
        method = request.method
        try:
            consume_routes(request, self.local)
            if method == "INVITE":
                parse_record_route(request)
        except SipError as exc:
            self._respond_plain(txn, request, exc.status or 400, now, exc.reason)
            return
        if method == "OPTIONS":
            self._respond_plain(
                txn,
                request,
                200,
                now,
                headers=(
                    ("Allow", ALLOW_HEADER),
                    ("Supported", SUPPORTED_HEADER),
                    ("Accept", "application/sdp"),
                    ("Accept-Encoding", "identity"),
                    ("Accept-Language", "en"),
                ),
            )
            return
        if method == "CANCEL":
            self._on_cancel(txn, request, now)
            return
        to_tag = header_tag(request, "To")  # tolerant: a To of another scheme is valid SIP
        if method == "INVITE" and not to_tag:
            try:
                negotiated = uas_negotiate(request, self.session_timers)
            except SipError as exc:
                self._respond_plain(txn, request, exc.status or 400, now, exc.reason, exc.headers)
                return
            self._on_new_invite(txn, request, peer, negotiated)
            return
        call = self.calls_by_dialog.get(dialog_id_of(request)) if to_tag else None
        if call is None:
            self._respond_plain(txn, request, 481, now)
            return
        assert call.dialog is not None
        try:
            call.dialog.receive_request(request)
        except SipError as exc:
            self._respond_plain(txn, request, exc.status or 500, now, exc.reason)
            return
        if method == "BYE":
            self._respond(txn, request, call, 200, now)
            self._forget(call)
            self.events.append(CallEnded(call, "bye"))
        elif method in ("INVITE", "UPDATE"):
            self._on_session_request(txn, request, call, now)
        elif method == "REFER":
            self._on_refer(txn, request, call, now)
        elif method == "NOTIFY":
            self._on_notify(txn, request, call, now)
        elif method == "INFO":
            try:
                digit = dtmf_from_info(request.headers.get("Content-Type"), request.body)
            except InfoBodyError as exc:
                headers = (("Accept", ", ".join(DTMF_TYPES)),) if exc.status == 415 else ()
                self._respond_plain(txn, request, exc.status, now, exc.reason, headers)
                return
            self._respond(txn, request, call, 200, now)
            if digit is not None:
                self.events.append(InfoReceived(call, digit))

    def _on_new_invite(
        self, txn: str, request: Request, peer: Peer, session: SessionExpires | None
    ) -> None:
        call = Call(
            key=f"{request.call_id}/{txn}",
            invite=request,
            invite_txn=txn,
            peer=peer,
            local_tag=new_tag(),
            pending_session=session,
            nated=behind_nat(request, peer),
        )
        self.calls[call.key] = call
        self.calls_by_txn[txn] = call
        self.counters.calls_started += 1
        self.events.append(IncomingCall(call, sdp_body(request)))

    def _on_cancel(self, txn: str, cancel: Request, now: float) -> None:
        invite_txn = self.transactions.find_invite_server_txn(cancel)
        call = self.calls_by_txn.get(invite_txn) if invite_txn else None
        if invite_txn is None:
            self._respond_plain(txn, cancel, 481, now)
            return
        self._respond_plain(txn, cancel, 200, now)
        if call is not None and call.state is CallState.INCOMING:
            self._respond(invite_txn, call.invite, call, 487, now)
            self._forget(call)
            self.events.append(CallEnded(call, "cancelled"))

    def _on_ack(self, ack: Request, now: float) -> None:
        call = self.calls_by_dialog.get(dialog_id_of(ack))
        if call is None or call.state is not CallState.ANSWERED:
            self.counters.stray_acks += 1
            return
        call.state = CallState.CONFIRMED
        self._arm_keepalive(now)
        self.events.append(CallConfirmed(call, sdp_body(ack)))

    # --- helpers ----------------------------------------------------------------------------

    def _respond(
        self,
        txn: str,
        request: Request,
        call: Call,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        body: bytes = b"",
        with_contact: bool = False,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        response = make_response(
            request,
            status,
            reason,
            to_tag=call.local_tag,
            headers=headers,
            body=body,
            content_type="application/sdp" if body else None,
        )
        if with_contact:
            response.headers.set("Contact", str(self._contact(call)))
            response.headers.set("Allow", ALLOW_HEADER)
        response.headers.set("Server", self.user_agent)
        self.transactions.send_response(txn, response, now)

    def _respond_plain(
        self,
        txn: str,
        request: Request,
        status: int,
        now: float,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        response = make_response(request, status, reason, to_tag=new_tag(), headers=headers)
        response.headers.set("Server", self.user_agent)
        self.transactions.send_response(txn, response, now)

    # --- session timers (RFC 4028) and UPDATE (RFC 3311) ------------------------------------

    def _on_session_request(self, txn: str, request: Request, call: Call, now: float) -> None:
        """A re-INVITE or UPDATE in the dialog: a refresh, a media change, or both. An offer goes
        to the application (ReInvite); an UPDATE without one is answered here."""
        offer = sdp_body(request)
        if call.reinvite is not None:
            self._respond_plain(txn, request, 491, now)  # one offer at a time (RFC 3311 §5.2)
            return
        try:
            negotiated = uas_negotiate(request, self.session_timers, call.session)
        except SipError as exc:
            self._respond_plain(txn, request, exc.status or 400, now, exc.reason, exc.headers)
            return
        call.pending_session = negotiated
        call.remote_allow = _allowed(request) or call.remote_allow
        if request.method == "UPDATE" and offer is None:
            headers = self._session_answer(call, request, now)
            self._respond(txn, request, call, 200, now, with_contact=True, headers=headers)
            return
        call.reinvite = (txn, request)
        self.events.append(ReInvite(call, offer))

    def _session_answer(
        self, call: Call, request: Request, now: float
    ) -> tuple[tuple[str, str], ...]:
        """Headers of our 2xx to `request` for the negotiated session timer, which (re)starts."""
        negotiated, call.pending_session = call.pending_session, None
        headers: tuple[tuple[str, str], ...] = (("Supported", SUPPORTED_HEADER),)
        if negotiated is None:
            call.session = None
            return headers
        call.session = start_session_timer(negotiated, "uas", now)
        self._schedule_session(call)
        headers += (session_expires_header(negotiated),)
        if supports_timer(request):
            headers += (("Require", "timer"),)
        return headers

    def _schedule_session(self, call: Call) -> None:
        if call.session is None:
            return
        self._session_order += 1
        heapq.heappush(self._session_heap, (call.session.deadline, self._session_order, call.key))

    def _next_session_deadline(self) -> float | None:
        while self._session_heap:
            deadline, _, key = self._session_heap[0]
            call = self.calls.get(key)
            if call is not None and call.session is not None and call.session.deadline == deadline:
                return deadline
            heapq.heappop(self._session_heap)  # stale: refreshed, ended or without a timer
        return None

    def _session_timers_due(self, now: float) -> None:
        while (deadline := self._next_session_deadline()) is not None and deadline <= now:
            _, _, key = heapq.heappop(self._session_heap)
            call = self.calls[key]
            session = call.session
            assert session is not None
            if session.we_refresh and not session.refreshing:
                self._send_refresh(call, now)
            else:
                self._end_session(call, "session_expired", now)

    def _send_refresh(self, call: Call, now: float, interval: int | None = None) -> None:
        """Refresh the session as its refresher: UPDATE without a body when the peer allows
        UPDATE, else a re-INVITE offering our last SDP again (no change to the media)."""
        session, dialog = call.session, call.dialog
        assert session is not None and dialog is not None
        use_update = "UPDATE" in call.remote_allow
        seconds = interval or session.interval
        request = dialog.create_request(
            "UPDATE" if use_update else "INVITE",
            via=self._via(call.peer.transport),
            contact=self._contact(call),
            body=b"" if use_update else call.local_sdp,
            content_type=None if use_update else "application/sdp",
            extra_headers=(
                ("Allow", ALLOW_HEADER),
                ("Supported", SUPPORTED_HEADER),
                ("Session-Expires", f"{seconds};refresher=uac"),
                ("Min-SE", str(self.session_timers.min_se)),
                ("User-Agent", self.user_agent),
            ),
        )
        session.refreshing = True
        txn = self.transactions.send_request(request, self._dialog_peer(call), now)
        self._refreshes[txn] = call
        # until the answer: the refresh transaction's own timeout ends the call
        session.refreshed_at = now
        session.we_refresh = True
        self._schedule_session(call)

    def _on_refresh_response(self, txn: str, response: Response, now: float) -> None:
        code = response.code
        if code < 200:
            return
        call = self._refreshes.pop(txn)
        session, dialog = call.session, call.dialog
        if call.state is CallState.ENDED or session is None or dialog is None:
            return
        session.refreshing = False
        if code < 300:
            with contextlib.suppress(SipError):  # a garbled Contact: the old target stays
                dialog.receive_response(response)  # a new Contact is the new remote target
            if response.cseq.method == "INVITE":
                ack = dialog.create_ack(response.cseq.sequence, via=self._via(call.peer.transport))
                call.ack = Outgoing(encode(ack), self._dialog_peer(call))
                self._stateless.append(call.ack)
            try:
                negotiated = uac_outcome(response)
            except SipError:
                negotiated = None
            call.session = start_session_timer(negotiated, "uac", now) if negotiated else None
            self._schedule_session(call)  # the answer's SDP repeats the running media
        elif code == 422:
            min_se = max(parse_min_se(response) or 0, session.interval + 1)
            self._send_refresh(call, now, interval=min_se)
        elif code in (408, 481):
            self._end_session(call, "session_refresh_failed", now)  # §12.2.1.2: dialog gone
        else:
            # refused (491, 5xx...): the session stands until it expires, then we end it
            session.we_refresh = False
            self._schedule_session(call)

    def _end_session(self, call: Call, reason: str, now: float) -> None:
        """The session timer ran out (or its refresh failed): BYE, and tell the application."""
        if call.state is CallState.ENDED:
            return
        self.hangup(call, now, reason=reason)
        self.events.append(CallEnded(call, reason))

    def _forget(self, call: Call) -> None:
        call.state = CallState.ENDED
        self.calls.pop(call.key, None)
        self.calls_by_txn.pop(call.invite_txn, None)
        self.calls_by_dialog.pop(call.dialog_id, None)
        self.counters.calls_ended += 1

    def _port(self, transport: str) -> int:
        return {"tcp": self.tcp_port, "tls": self.tls_port}.get(transport, self.udp_port)

    def _via(self, transport: str) -> Via:
        port = self._port(transport)
        return Via(
            transport=transport.upper(),
            host=self.host,
            port=port,
            parameters=Parameters(branch=new_branch(), rport=None),
        )

    def _contact(self, call: Call) -> Address:
        transport = call.peer.transport
        port = self._port(transport)
        params = Parameters(transport=transport) if transport != "udp" else Parameters()
        scheme = "sip"
        if transport == "tls" and call.invite.uri.scheme.lower() == "sips":
            scheme, params = "sips", Parameters()  # RFC 5630: a sips: dialog stays sips:
        return Address(
            uri=URI(
                scheme=scheme, host=self.host, user=call.room or None, port=port, parameters=params
            )
        )

    def _dialog_peer(self, call: Call) -> Peer:
        """Where in-dialog requests go: the first proxy of the route set, else the remote
        target; back to where the INVITE came from when neither is a reachable UDP address
        (a TCP connection, a host name)."""
        if call.dialog is None:
            return call.peer
        return first_hop(call.dialog.route_set, call.dialog.remote_target, call.peer, call.nated)

    def _reply_peer(self, data: bytes, peer: Peer) -> Peer:
        # Stateless error answers go back to the source: the Via of a broken message is not
        # trustworthy, and RFC 3581 behaviour is what NATed phones need anyway.
        return peer


def _allowed(message: Request | Response) -> frozenset[str]:
    """The methods an Allow header lists (empty when there is none)."""
    return frozenset(
        token.strip().upper()
        for value in message.headers.getlist("Allow")
        for token in value.split(",")
        if token.strip()
    )
