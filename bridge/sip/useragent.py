"""The bridge's SIP user agent core (the transaction user of RFC 3261), sans-I/O.

It turns transactions into calls: new INVITEs, ACKs, re-INVITEs, BYEs, CANCELs, OPTIONS and INFO,
answering what SIP itself settles (481, 501, 487, OPTIONS 200) and handing call decisions to the
application as events. The application answers synchronously through `answer`, `reject`,
`answer_reinvite` and `hangup`. Like the transaction layer it never reads a clock or touches a
socket: the asyncio layer feeds `receive_data(data, peer, now)` and `handle_timer(now)` and drains
`datagrams_to_send()` and `next_event()`.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import deque
from dataclasses import dataclass, field

from sipmessage import URI, Address, Parameters, Request, Via

from bridge.sip.dialog import Dialog, dialog_id_of
from bridge.sip.info import DTMF_TYPES, InfoBodyError, dtmf_from_info
from bridge.sip.message import (
    SipError,
    error_response,
    make_response,
    new_branch,
    new_tag,
    parse_message,
)
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

ALLOWED_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"})
ALLOW_HEADER = ", ".join(sorted(ALLOWED_METHODS))
ACCEPTED_TYPES = frozenset({"application/sdp", "application/dtmf-relay", "application/dtmf"})

DialogId = tuple[str, str, str]


class CallState(enum.Enum):
    INCOMING = "incoming"  # INVITE received, no final response yet
    ANSWERED = "answered"  # 2xx sent, waiting for the ACK
    CONFIRMED = "confirmed"  # ACK received
    ENDED = "ended"


@dataclass
class Call:
    """One incoming call leg as the UA core tracks it."""

    key: str
    invite: Request
    invite_txn: str
    peer: Peer
    local_tag: str
    state: CallState = CallState.INCOMING
    dialog: Dialog | None = None
    reinvite: tuple[str, Request] | None = None  # pending re-INVITE: (txn, request)

    @property
    def room(self) -> str:
        return self.invite.uri.user or ""

    @property
    def dialog_id(self) -> DialogId:
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
class CallEnded(UaEvent):
    """The remote side ended the call (BYE, CANCEL) or SIP gave up on it (no ACK)."""

    call: Call
    reason: str


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

    def __post_init__(self) -> None:
        self.transactions = TransactionLayer(self.timers)
        self.calls_by_txn: dict[str, Call] = {}
        self.calls_by_dialog: dict[DialogId, Call] = {}
        self.calls: dict[str, Call] = {}
        self.events: deque[UaEvent] = deque()
        self._stateless: list[Outgoing] = []
        self.counters = UserAgentCounters()

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

    def handle_timer(self, now: float) -> None:
        self.transactions.handle_timer(now)
        self._process_transaction_events(now)

    def get_timer(self) -> float | None:
        return self.transactions.get_timer()

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
        self.calls_by_dialog[call.dialog_id] = call
        self._respond(call.invite_txn, call.invite, call, 200, now, body=sdp, with_contact=True)

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
        if call.reinvite is None:
            return
        (txn, request), call.reinvite = call.reinvite, None
        self._respond(txn, request, call, 200, now, body=sdp, with_contact=True)

    def reject_reinvite(
        self, call: Call, status: int, now: float, reason: str | None = None
    ) -> None:
        if call.reinvite is None:
            return
        (txn, request), call.reinvite = call.reinvite, None
        self._respond(txn, request, call, status, now, reason=reason)

    def hangup(self, call: Call, now: float, reason: str | None = None) -> None:
        """End the call from our side: BYE once answered, 480 before that."""
        if call.state is CallState.ENDED:
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
                self._on_ack(event.request)
            elif isinstance(event, AckTimeout):
                call = self.calls_by_txn.get(event.txn_id)
                if call is not None and call.state is CallState.ANSWERED:
                    self.events.append(CallEnded(call, "no_ack"))
                    self.hangup(call, now)
            elif isinstance(event, TransactionTimeout | ResponseReceived):
                # Our only client transactions are BYEs of calls already forgotten.
                pass

    def _on_request(self, txn: str, request: Request, peer: Peer, now: float) -> None:
        try:
            check_request(request, allowed_methods=ALLOWED_METHODS, accepted_types=ACCEPTED_TYPES)
        except SipError as exc:
            headers = exc.headers
            if exc.status in (405, 501) and not any(k.lower() == "allow" for k, _ in headers):
                headers = (*headers, ("Allow", ALLOW_HEADER))
            self._respond_plain(txn, request, exc.status or 400, now, exc.reason, headers)
            return
        method = request.method
        if method == "OPTIONS":
            self._respond_plain(
                txn,
                request,
                200,
                now,
                headers=(
                    ("Allow", ALLOW_HEADER),
                    ("Accept", "application/sdp"),
                    ("Accept-Encoding", "identity"),
                    ("Accept-Language", "en"),
                ),
            )
            return
        if method == "CANCEL":
            self._on_cancel(txn, request, now)
            return
        to_tag = request.to_address.parameters.get("tag")
        if method == "INVITE" and not to_tag:
            self._on_new_invite(txn, request, peer)
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
        elif method == "INVITE":
            if call.reinvite is not None:
                self._respond_plain(txn, request, 491, now)
                return
            call.reinvite = (txn, request)
            self.events.append(ReInvite(call, sdp_body(request)))
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

    def _on_new_invite(self, txn: str, request: Request, peer: Peer) -> None:
        call = Call(
            key=f"{request.call_id}/{txn}",
            invite=request,
            invite_txn=txn,
            peer=peer,
            local_tag=new_tag(),
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

    def _on_ack(self, ack: Request) -> None:
        call = self.calls_by_dialog.get(dialog_id_of(ack))
        if call is None or call.state is not CallState.ANSWERED:
            self.counters.stray_acks += 1
            return
        call.state = CallState.CONFIRMED
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

    def _forget(self, call: Call) -> None:
        call.state = CallState.ENDED
        self.calls.pop(call.key, None)
        self.calls_by_txn.pop(call.invite_txn, None)
        self.calls_by_dialog.pop(call.dialog_id, None)
        self.counters.calls_ended += 1

    def _via(self, transport: str) -> Via:
        port = self.tcp_port if transport == "tcp" else self.udp_port
        return Via(
            transport=transport.upper(),
            host=self.host,
            port=port,
            parameters=Parameters(branch=new_branch(), rport=None),
        )

    def _contact(self, call: Call) -> Address:
        transport = call.peer.transport
        port = self.tcp_port if transport == "tcp" else self.udp_port
        params = Parameters(transport="tcp") if transport == "tcp" else Parameters()
        return Address(
            uri=URI(
                scheme="sip", host=self.host, user=call.room or None, port=port, parameters=params
            )
        )

    def _dialog_peer(self, call: Call) -> Peer:
        """Where in-dialog requests go: the remote target when it is an address we can reach
        directly over UDP, otherwise back to where the INVITE came from (NAT, TCP connection)."""
        if call.peer.transport == "udp" and call.dialog is not None:
            target = call.dialog.remote_target
            try:
                ipaddress.ip_address(target.host)
            except ValueError:
                return call.peer
            port = target.port or 5060
            if 0 < port < 65536:
                return Peer(target.host, port, "udp")
        return call.peer

    def _reply_peer(self, data: bytes, peer: Peer) -> Peer:
        # Stateless error answers go back to the source: the Via of a broken message is not
        # trustworthy, and RFC 3581 behaviour is what NATed phones need anyway.
        return peer
