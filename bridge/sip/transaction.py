"""RFC 3261 §17 transactions (with RFC 6026 Accepted states) as one sans-I/O object.

The layer never reads a clock or touches a socket: ``receive`` takes a parsed message, its
source and ``now``; ``handle_timer(now)`` fires due timers; ``datagrams_to_send`` and
``next_event`` drain what it produced and ``get_timer`` gives the next absolute deadline, in the
style of aioquic's ``QuicConnection``. Each state has one handler; inputs are named as the RFC
names them.
"""

from __future__ import annotations

import heapq
import re
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from sipmessage import Request, Response, Via

from bridge.sip.message import (
    MAGIC_COOKIE,
    encode,
    header_tag,
    make_response,
    split_list,
    valid_host,
    valid_port,
)
from bridge.sip.timers import TimerConfig

DEFAULT_SIP_PORT = 5060
_RPORT_EMPTY = re.compile(r";\s*rport\s*(?=;|$)", re.I)
_RECEIVED = re.compile(r";\s*received\s*=\s*[^;]*", re.I)


@dataclass(frozen=True)
class Peer:
    """Where a message came from or goes to; for tcp it names the connection."""

    host: str
    port: int
    transport: str  # "udp" | "tcp" | "tls"

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


@dataclass(frozen=True)
class Outgoing:
    data: bytes
    peer: Peer


@dataclass(frozen=True)
class TransactionEvent:
    """Base of everything the transaction layer tells its transaction user."""


@dataclass(frozen=True)
class RequestReceived(TransactionEvent):
    txn_id: str
    request: Request
    peer: Peer


@dataclass(frozen=True)
class AckReceived(TransactionEvent):
    """An ACK for a 2xx (or matching nothing): the TU's business, not a transaction's."""

    request: Request
    peer: Peer


@dataclass(frozen=True)
class ResponseReceived(TransactionEvent):
    """txn_id None: a 2xx to an INVITE whose client transaction is gone (re-send the ACK)."""

    txn_id: str | None
    response: Response


@dataclass(frozen=True)
class TransactionTimeout(TransactionEvent):
    """Timer B/F (client: no final response) or Timer H (server: no ACK for a 3xx-6xx)."""

    txn_id: str
    method: str
    server: bool
    unreachable: bool = False  # client: the transport could not connect (§17.1.4)


@dataclass(frozen=True)
class AckTimeout(TransactionEvent):
    """Timer L fired with no ACK for our 2xx: the TU should send BYE (RFC 3261 §13.3.1.4)."""

    txn_id: str
    call_id: str


class TransactionStateError(RuntimeError):
    """Our own misuse: a response or request that the transaction's state forbids."""


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


# Keys: (branch, sent-by, method) for RFC 3261 branches; the RFC 2543 fallback key is built
# from the request identity fields (§17.2.3). ACK and CANCEL look up with method INVITE.
Key = tuple[str, ...]


@dataclass
class _Transaction:
    txn_id: str
    key: Key
    method: str
    request: Request
    peer: Peer  # server: where responses go; client: where the request goes
    server: bool
    state: State
    call_id: str
    cseq: int
    last_data: bytes | None = None  # last response sent (server) / request (client)
    retransmit_at: float | None = None
    interval: float = 0.0
    timeout_at: float | None = None
    acked: bool = False
    deadline: float | None = field(default=None, repr=False)


class TransactionLayer:
    def __init__(self, timers: TimerConfig | None = None, auto_trying: bool = True) -> None:
        self.timers = timers if timers is not None else TimerConfig()
        self.auto_trying = auto_trying
        self._server: dict[Key, _Transaction] = {}
        # §8.2.2.2 merge detection without scanning every live transaction per request
        self._by_origin: dict[tuple[str, int, str, str | None], _Transaction] = {}
        self._client: dict[Key, _Transaction] = {}
        self._by_id: dict[str, _Transaction] = {}
        self._accepted: dict[tuple[str, int], _Transaction] = {}
        self._events: deque[TransactionEvent] = deque()
        self._outgoing: list[Outgoing] = []
        self._heap: list[tuple[float, int, str]] = []
        self._counter = 0

    # -- public API ------------------------------------------------------------------------------

    def receive(self, message: Request | Response, peer: Peer, now: float) -> None:
        """Feed one parsed message; bad addresses or headers drop it, never raise."""
        try:
            if isinstance(message, Request):
                self._receive_request(message, peer, now)
            else:
                self._receive_response(message, now)
        except (ValueError, KeyError):
            return  # a header sipmessage cannot parse: the message is dropped

    def send_response(self, txn_id: str, response: Response, now: float) -> None:
        """Send a response in a server transaction; unknown (ended) transactions are ignored."""
        txn = self._by_id.get(txn_id)
        if txn is None or not txn.server:
            return
        if txn.state not in (State.TRYING, State.PROCEEDING, State.ACCEPTED):
            raise TransactionStateError(f"{txn_id} is {txn.state.value}: no more responses")
        if txn.state is State.ACCEPTED and not 200 <= response.code < 300:
            raise TransactionStateError(f"{txn_id} already answered 2xx")
        self._send(txn, encode(response))
        code = response.code
        if code < 200:
            txn.state = State.PROCEEDING
        elif txn.method != "INVITE":
            self._complete_non_invite_server(txn, now)
        elif code < 300:
            self._accept_invite_server(txn, now)
        else:
            self._complete_invite_server(txn, now)
        self._schedule(txn)

    def send_request(self, request: Request, peer: Peer, now: float) -> str:
        """Start a client transaction; the top Via must carry an RFC 3261 branch."""
        if request.method == "ACK":
            raise TransactionStateError("ACK is not a transaction: use send_stateless")
        branch = request.via[0].parameters.get("branch") or ""
        if not branch.startswith(MAGIC_COOKIE):
            raise TransactionStateError("client requests need a z9hG4bK branch")
        key = (branch, request.method)
        if key in self._client:
            raise TransactionStateError(f"branch {branch} already in use")
        txn = self._new(key, request, peer, server=False)
        txn.state = State.CALLING if request.method == "INVITE" else State.TRYING
        self._send(txn, encode(request))
        if not peer.reliable:
            txn.interval = (
                self.timers.timer_a if txn.state is State.CALLING else self.timers.timer_e
            )
            txn.retransmit_at = now + txn.interval
        timeout = self.timers.timer_b if txn.state is State.CALLING else self.timers.timer_f
        txn.timeout_at = now + timeout
        self._client[key] = txn
        self._schedule(txn)
        return txn.txn_id

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        self._outgoing.append(Outgoing(encode(message), peer))

    def find_invite_server_txn(self, cancel: Request) -> str | None:
        """The INVITE server transaction a CANCEL refers to (RFC 3261 §9.2)."""
        try:
            key = _server_key(cancel, "INVITE")
        except (ValueError, KeyError):
            return None
        txn = self._server.get(key)
        return txn.txn_id if txn is not None else None

    def server_txn_state(self, txn_id: str) -> str | None:
        """ "trying", "proceeding", "completed", "confirmed", "accepted", or None when gone."""
        txn = self._by_id.get(txn_id)
        return txn.state.value if txn is not None and txn.server else None

    def final_response_sent(self, txn_id: str) -> bool:
        """True once a final response went out (or the transaction is gone)."""
        state = self.server_txn_state(txn_id)
        return state not in ("trying", "proceeding")

    def transport_failed(self, peer: Peer) -> None:
        """No connection to `peer` could be made (§17.1.4): its client transactions end now,
        as if their timer had fired, instead of waiting out Timer B or F."""
        waiting = (State.CALLING, State.TRYING, State.PROCEEDING)
        for txn in [t for t in self._client.values() if t.peer == peer and t.state in waiting]:
            self._events.append(TransactionTimeout(txn.txn_id, txn.method, False, True))
            self._terminate(txn)

    def handle_timer(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            deadline, _, txn_id = heapq.heappop(self._heap)
            txn = self._by_id.get(txn_id)
            if txn is None or txn.deadline != deadline:
                continue  # stale entry
            self._fire(txn, now)
            if txn.state is not State.TERMINATED:
                self._schedule(txn)

    def get_timer(self) -> float | None:
        while self._heap:
            deadline, _, txn_id = self._heap[0]
            txn = self._by_id.get(txn_id)
            if txn is not None and txn.deadline == deadline:
                return deadline
            heapq.heappop(self._heap)
        return None

    def next_event(self) -> TransactionEvent | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[Outgoing]:
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def __len__(self) -> int:
        """Live transactions (for tests and metrics)."""
        return len(self._by_id)

    # -- server side -----------------------------------------------------------------------------

    def _receive_request(self, request: Request, peer: Peer, now: float) -> None:
        destination = _note_source(request, peer)
        if destination is None:
            return
        if request.method == "ACK":
            self._receive_ack(request, peer, now)
            return
        key = _server_key(request, request.method)
        txn = self._server.get(key)
        if txn is not None:
            if txn.last_data is not None:  # retransmission: re-send the last response
                self._outgoing.append(Outgoing(txn.last_data, txn.peer))
            return
        if self._is_merged(request, key):
            self.send_stateless(make_response(request, 482), destination)
            return
        txn = self._new(key, request, destination, server=True)
        self._server[key] = txn
        if header_tag(request, "To") is None:
            self._by_origin.setdefault(_origin(request), txn)
        if request.method == "INVITE":
            txn.state = State.PROCEEDING
            if self.auto_trying:
                self._send(txn, encode(make_response(request, 100)))
        else:
            txn.state = State.TRYING
            # The client gives up after Timer F: a TU that never answers must not leak.
            txn.timeout_at = now + self.timers.timer_f
            self._schedule(txn)
        self._events.append(RequestReceived(txn.txn_id, request, peer))

    def _receive_ack(self, ack: Request, peer: Peer, now: float) -> None:
        txn = self._server.get(_server_key(ack, "INVITE"))
        if txn is not None and txn.state is State.COMPLETED:
            txn.state = State.CONFIRMED
            txn.retransmit_at = None
            wait = self.timers.timer_i(txn.peer.reliable)
            if wait <= 0:
                self._terminate(txn)
                return
            txn.timeout_at = now + wait
            self._schedule(txn)
            return
        if txn is not None and txn.state is State.CONFIRMED:
            return  # retransmitted ACK absorbed
        accepted = self._accepted.get((ack.call_id, ack.cseq.sequence))
        if accepted is not None:
            accepted.acked = True
            accepted.retransmit_at = None
            self._schedule(accepted)
        self._events.append(AckReceived(ack, peer))

    def _is_merged(self, request: Request, key: Key) -> bool:
        """§8.2.2.2: same From tag, Call-ID and CSeq as a live transaction, another branch."""
        if header_tag(request, "To") is not None:
            return False
        live = self._by_origin.get(_origin(request))
        return live is not None and live.key != key

    def _complete_non_invite_server(self, txn: _Transaction, now: float) -> None:
        txn.state = State.COMPLETED
        wait = self.timers.timer_j(txn.peer.reliable)
        if wait <= 0:
            self._terminate(txn)
        else:
            txn.timeout_at = now + wait

    def _accept_invite_server(self, txn: _Transaction, now: float) -> None:
        if txn.state is State.ACCEPTED:
            return  # a TU re-send of the 2xx: timers keep running
        txn.state = State.ACCEPTED
        self._accepted[(txn.call_id, txn.cseq)] = txn
        txn.timeout_at = now + self.timers.timer_l
        if not txn.peer.reliable:
            txn.interval = self.timers.t1
            txn.retransmit_at = now + txn.interval

    def _complete_invite_server(self, txn: _Transaction, now: float) -> None:
        txn.state = State.COMPLETED
        txn.timeout_at = now + self.timers.timer_h
        if not txn.peer.reliable:
            txn.interval = self.timers.timer_g
            txn.retransmit_at = now + txn.interval

    # -- client side -----------------------------------------------------------------------------

    def _receive_response(self, response: Response, now: float) -> None:
        vias = response.via
        if len(vias) != 1:
            return
        branch = vias[0].parameters.get("branch") or ""
        method = response.cseq.method
        txn = self._client.get((branch, method))
        if txn is None:
            if method == "INVITE" and 200 <= response.code < 300:
                self._events.append(ResponseReceived(None, response))
            return
        code = response.code
        if txn.method == "INVITE":
            self._invite_client_response(txn, response, now)
        elif txn.state in (State.TRYING, State.PROCEEDING):
            if code < 200:
                txn.state = State.PROCEEDING
            else:
                txn.state = State.COMPLETED
                txn.retransmit_at = None
                txn.timeout_at = None
                wait = self.timers.timer_k(txn.peer.reliable)
                if wait <= 0:
                    self._terminate(txn)
                else:
                    txn.timeout_at = now + wait
            self._events.append(ResponseReceived(txn.txn_id, response))
        if txn.state is not State.TERMINATED:
            self._schedule(txn)

    def _invite_client_response(self, txn: _Transaction, response: Response, now: float) -> None:
        code = response.code
        if txn.state in (State.CALLING, State.PROCEEDING):
            txn.retransmit_at = None
            if code < 200:
                txn.state = State.PROCEEDING
                txn.timeout_at = None
            elif code < 300:
                txn.state = State.ACCEPTED
                txn.timeout_at = now + self.timers.timer_m
            else:
                txn.state = State.COMPLETED
                txn.last_data = encode(_ack_for(txn.request, response))
                self._outgoing.append(Outgoing(txn.last_data, txn.peer))
                wait = self.timers.timer_d(txn.peer.reliable)
                txn.timeout_at = now + wait
                if wait <= 0:
                    self._terminate(txn)
            self._events.append(ResponseReceived(txn.txn_id, response))
        elif txn.state is State.ACCEPTED and 200 <= code < 300:
            self._events.append(ResponseReceived(txn.txn_id, response))
        elif txn.state is State.COMPLETED and code >= 300 and txn.last_data is not None:
            self._outgoing.append(Outgoing(txn.last_data, txn.peer))  # re-send our ACK

    # -- timers ----------------------------------------------------------------------------------

    def _fire(self, txn: _Transaction, now: float) -> None:
        if txn.timeout_at is not None and txn.timeout_at <= now:
            self._timeout(txn)
            return
        if txn.retransmit_at is not None and txn.retransmit_at <= now and txn.last_data:
            self._outgoing.append(Outgoing(txn.last_data, txn.peer))
            txn.interval = self._next_interval(txn)
            txn.retransmit_at = now + txn.interval

    def _next_interval(self, txn: _Transaction) -> float:
        if not txn.server and txn.method == "INVITE":
            return 2 * txn.interval  # Timer A doubles without a cap
        if not txn.server and txn.state is State.PROCEEDING:
            return self.timers.t2  # Timer E once a provisional response arrived
        return min(2 * txn.interval, self.timers.t2)  # Timers E and G, 2xx retransmission

    def _timeout(self, txn: _Transaction) -> None:
        """Timer B, D, F, H, I, J, K, L or M fired."""
        if txn.server and txn.state is State.COMPLETED and txn.method == "INVITE":
            self._events.append(TransactionTimeout(txn.txn_id, txn.method, server=True))
        elif txn.server and txn.state is State.ACCEPTED and not txn.acked:
            self._events.append(AckTimeout(txn.txn_id, txn.call_id))
        elif not txn.server and txn.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self._events.append(TransactionTimeout(txn.txn_id, txn.method, server=False))
        self._terminate(txn)

    def _schedule(self, txn: _Transaction) -> None:
        deadlines = [t for t in (txn.retransmit_at, txn.timeout_at) if t is not None]
        deadline = min(deadlines) if deadlines else None
        if deadline != txn.deadline and deadline is not None:
            self._counter += 1
            heapq.heappush(self._heap, (deadline, self._counter, txn.txn_id))
        txn.deadline = deadline

    # -- bookkeeping -----------------------------------------------------------------------------

    def _new(self, key: Key, request: Request, peer: Peer, *, server: bool) -> _Transaction:
        self._counter += 1
        txn_id = f"{'srv' if server else 'cli'}-{self._counter}"
        txn = _Transaction(
            txn_id=txn_id,
            key=key,
            method=request.method,
            request=request,
            peer=peer,
            server=server,
            state=State.TRYING,
            call_id=request.call_id,
            cseq=request.cseq.sequence,
        )
        self._by_id[txn_id] = txn
        return txn

    def _send(self, txn: _Transaction, data: bytes) -> None:
        txn.last_data = data
        self._outgoing.append(Outgoing(data, txn.peer))

    def _terminate(self, txn: _Transaction) -> None:
        txn.state = State.TERMINATED
        txn.retransmit_at = txn.timeout_at = txn.deadline = None
        self._by_id.pop(txn.txn_id, None)
        table = self._server if txn.server else self._client
        if table.get(txn.key) is txn:
            del table[txn.key]
        if txn.server and header_tag(txn.request, "To") is None:
            origin = _origin(txn.request)
            if self._by_origin.get(origin) is txn:
                del self._by_origin[origin]
        if self._accepted.get((txn.call_id, txn.cseq)) is txn:
            del self._accepted[(txn.call_id, txn.cseq)]


# -- helpers ---------------------------------------------------------------------------------------


def _origin(request: Request) -> tuple[str, int, str, str | None]:
    """What identifies a request across forked copies: Call-ID, CSeq, method, From tag."""
    return (request.call_id, request.cseq.sequence, request.method, header_tag(request, "From"))


def _top_via(request: Request) -> tuple[str, Via]:
    raw = split_list(request.headers.getlist("Via")[0])[0]
    return raw, Via.parse(raw)


def _server_key(request: Request, method: str) -> Key:
    """§17.2.3 matching key; ``method`` is INVITE for an ACK or CANCEL looking for its INVITE."""
    _raw, via = _top_via(request)
    branch = via.parameters.get("branch") or ""
    sent_by = f"{via.host.lower()}:{via.port or DEFAULT_SIP_PORT}"
    if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return ("3261", branch, sent_by, method)
    return (
        "2543",
        str(request.uri),
        header_tag(request, "From") or "",
        request.call_id,
        str(request.cseq.sequence),
        sent_by,
        branch,
        method,
    )


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _note_source(request: Request, peer: Peer) -> Peer | None:
    """Add received/rport to the top Via (§18.2.1, RFC 3581) and pick where responses go.

    Returns None when an address in the Via is out of range: the request is dropped.
    """
    raw, via = _top_via(request)
    params = via.parameters
    if not valid_host(via.host) or not valid_port(via.port):
        return None
    maddr = params.get("maddr")
    if maddr is not None and not valid_host(maddr):
        return None
    rport_value = params.get("rport")
    if rport_value and not (rport_value.isdigit() and valid_port(int(rport_value))):
        return None
    if not valid_host(peer.host) or not valid_port(peer.port):
        return None
    has_rport = "rport" in params
    updated = raw
    if has_rport and not rport_value:
        updated = _RPORT_EMPTY.sub(f";rport={peer.port}", updated, count=1)
    if has_rport or via.host.strip("[]").lower() != peer.host.lower():
        updated = _RECEIVED.sub("", updated) + f";received={_format_host(peer.host)}"
    if updated != raw:
        values = request.headers.getlist("Via")
        rest = split_list(values[0])[1:]
        request.headers.setlist("Via", [updated, *rest, *values[1:]])
    if peer.reliable:
        return peer
    if has_rport:
        return Peer(peer.host, peer.port, peer.transport)
    if updated != raw:  # received was added: the source address, sent-by port
        return Peer(peer.host, via.port or DEFAULT_SIP_PORT, peer.transport)
    if maddr is not None:
        return Peer(maddr.strip("[]"), via.port or DEFAULT_SIP_PORT, peer.transport)
    return Peer(via.host.strip("[]"), via.port or DEFAULT_SIP_PORT, peer.transport)


def _ack_for(invite: Request, response: Response) -> Request:
    """The ACK an INVITE client transaction sends for a 3xx-6xx (§17.1.1.3)."""
    ack = Request(method="ACK", uri=invite.uri)
    ack.headers.add("Via", split_list(invite.headers.getlist("Via")[0])[0])
    for value in invite.headers.getlist("Route"):
        ack.headers.add("Route", value)
    ack.headers.add("Max-Forwards", "70")
    ack.headers.add("From", invite.headers["From"])
    ack.headers.add("To", response.headers["To"])
    ack.headers.add("Call-ID", invite.headers["Call-ID"])
    ack.headers.add("CSeq", f"{invite.cseq.sequence} ACK")
    return ack
