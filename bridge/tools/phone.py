"""A scripted SIP phone: dials a room over UDP, streams a tone as G.711 RTP, records what it hears.

Tests use it to check the mix numerically (each phone sends its own frequency and looks for the
others' in what it receives); `scripts/tone_call.py` is its command-line face. It reuses the
bridge's transaction layer for INVITE/BYE retransmissions, so it survives packet loss too.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from sipmessage import URI, Request, Response

from bridge.media.g711 import CODECS
from bridge.media.tones import ToneSource, dtmf_tones
from bridge.rtp.packet import RtpError, RtpSender, parse_rtp
from bridge.rtp.telephone_event import digit_packets
from bridge.sip.message import (
    SipError,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)
from bridge.sip.sdp import (
    AudioSession,
    build_answer,
    build_offer,
    negotiate_answer,
    negotiate_offer,
    parse_sdp,
)
from bridge.sip.transaction import (
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
)

FRAME_SECONDS = 0.020


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, handler) -> None:
        self.handler = handler

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.handler(data, addr)


@dataclass
class HeardFrame:
    arrival: float
    samples: np.ndarray


@dataclass
class Phone:
    """One simulated participant. `await phone.call()`, later `await phone.hangup()`."""

    bridge_host: str
    bridge_port: int
    room: str
    tone_hz: float | None = None
    amplitude: int = 6000
    codec: str = "PCMU"
    local_host: str = "127.0.0.1"
    user: str = "phone"
    final_status: int | None = None
    heard: list[HeardFrame] = field(default_factory=list)
    session: AudioSession | None = None
    ended_by_bridge: bool = False
    late_offer: bool = False  # INVITE without SDP: the bridge offers in its 200, we answer in ACK
    telephone_event: bool = True  # offer RFC 4733 telephone-event (else keys go in-band)

    def __post_init__(self) -> None:
        self.transactions = TransactionLayer()
        self.call_id = new_call_id(self.local_host)
        self.tag = new_tag()
        self.remote_tag = ""
        self.remote_target = f"sip:{self.room}@{self.bridge_host}:{self.bridge_port}"
        self.cseq = 1
        self._invites: dict[int, asyncio.Future[int]] = {}
        self._infos: dict[int, asyncio.Future[int]] = {}
        self.sdp_version = 1
        self._bye_done = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stream_task: asyncio.Task[None] | None = None
        self._queued_audio: deque[np.ndarray] = deque()  # frames sent instead of the tone
        self._queued_packets: deque[bytes] = deque()  # RTP packets sent instead of audio
        self.sender = RtpSender(payload_type=CODECS[self.codec].payload_type)
        self.source = ToneSource(self.tone_hz, self.amplitude) if self.tone_hz else None
        self.sent_packets = 0
        self.received_packets = 0
        self.sources: set[tuple[str, int]] = set()  # where the bridge's RTP came from
        self.last_final: Response | None = None  # the last final response to an INVITE
        self._closed = False

    @property
    def bridge(self) -> Peer:
        return Peer(self.bridge_host, self.bridge_port, "udp")

    async def call(self, timeout: float = 10.0) -> int:
        """Dial the room; on 200 start streaming. Returns the final status code."""
        loop = asyncio.get_running_loop()
        self.sip, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._on_sip), local_addr=(self.local_host, 0)
        )
        self.rtp, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._on_rtp), local_addr=(self.local_host, 0)
        )
        self.sip_port = self.sip.get_extra_info("sockname")[1]
        self.rtp_port = self.rtp.get_extra_info("sockname")[1]
        self._tasks.append(asyncio.create_task(self._timers()))
        self.session_id = random.randrange(1, 2**31)
        uri = f"sip:{self.room}@{self.bridge_host}:{self.bridge_port}"
        self.final_status = await self._invite(
            uri, None if self.late_offer else "sendrecv", timeout
        )
        if self.final_status == 200:
            self._stream_task = asyncio.create_task(self._stream())
            self._tasks.append(self._stream_task)
        return self.final_status

    async def reinvite(self, direction: str, timeout: float = 5.0) -> int:
        """Offer again with a new direction: "sendonly"/"inactive" hold, "sendrecv" resumes."""
        self.cseq += 1
        self.sdp_version += 1
        return await self._invite(self.remote_target, direction, timeout)

    def send_rfc4733(self, digits: str, duration_ms: int = 100, gap_ms: int = 60) -> None:
        """Queue RFC 4733 telephone-events in the RTP stream, one packet per 20 ms."""
        assert self.session is not None and self.session.telephone_event is not None
        payload_type = self.session.telephone_event.payload_type
        for digit in digits:
            self._queued_packets.extend(
                digit_packets(self.sender, digit, duration_ms, payload_type=payload_type)
            )
            for _ in range(gap_ms // 20):  # audio between key presses
                self._queued_packets.append(self.sender.packet(CODECS[self.codec].silence))

    def send_inband(
        self,
        digits: str,
        level_dbm0: float = -10.0,
        on_ms: int = 60,
        off_ms: int = 60,
        twist_db: float = 0.0,
    ) -> None:
        """Queue key tones in the audio itself (for callers without telephone-event)."""
        samples = dtmf_tones(digits, level_dbm0, on_ms, off_ms, twist_db)
        padded = np.zeros(-(-len(samples) // 160) * 160, np.int16)
        padded[: len(samples)] = samples
        self._queued_audio.extend(padded.reshape(-1, 160))

    async def send_info(
        self,
        digit: str,
        duration_ms: int = 160,
        body: bytes | None = None,
        content_type: str = "application/dtmf-relay",
    ) -> int:
        """Send a key press as a SIP INFO (dtmf-relay by default); returns the final status."""
        self.cseq += 1
        info = self._request("INFO", self.remote_target)
        info.headers.set("Content-Type", content_type)
        info.body = (
            body if body is not None else (f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode())
        )
        done = asyncio.get_running_loop().create_future()
        self._infos[self.cseq] = done
        self.transactions.send_request(info, self.bridge, asyncio.get_running_loop().time())
        self._flush()
        return await asyncio.wait_for(done, 5.0)

    async def stop_streaming(self) -> None:
        """Go silent on RTP (as a phone that vanished would)."""
        if self._stream_task is not None:
            self._stream_task.cancel()

    def _offer(self, direction: str) -> bytes:
        return build_offer(
            local_host=self.local_host,
            local_port=self.rtp_port,
            session_id=self.session_id,
            version=self.sdp_version,
            codecs=(self.codec,),
            direction=direction,
            telephone_event_pt=101 if self.telephone_event else None,
        )

    async def _invite(self, uri: str, direction: str | None, timeout: float) -> int:
        invite = self._request("INVITE", uri)
        if direction is not None:
            invite.headers.set("Content-Type", "application/sdp")
            invite.body = self._offer(direction)
        done = asyncio.get_running_loop().create_future()
        self._invites[self.cseq] = done
        self.transactions.send_request(invite, self.bridge, asyncio.get_running_loop().time())
        self._flush()
        return await asyncio.wait_for(done, timeout)

    async def hangup(self, timeout: float = 5.0) -> None:
        """BYE if the call is up, then close; safe to call again."""
        if self.final_status == 200 and not self.ended_by_bridge and not self._closed:
            self.cseq += 1
            bye = self._request("BYE", self.remote_target)
            self.transactions.send_request(bye, self.bridge, asyncio.get_running_loop().time())
            self._flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._bye_done.wait(), timeout)
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for transport in (getattr(self, "sip", None), getattr(self, "rtp", None)):
            if transport is not None:
                transport.close()

    def audio(self, since: float = 0.0, until: float = float("inf")) -> np.ndarray:
        """What this phone heard between two loop times, as one int16 array."""
        frames = [f.samples for f in self.heard if since <= f.arrival < until]
        return np.concatenate(frames) if frames else np.zeros(0, np.int16)

    # --- SIP ----------------------------------------------------------------------------------

    def _request(self, method: str, uri: str) -> Request:
        request = Request(method, URI.parse(uri))
        request.headers.add(
            "Via", f"SIP/2.0/UDP {self.local_host}:{self.sip_port};branch={new_branch()};rport"
        )
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", f"<sip:{self.user}@{self.local_host}>;tag={self.tag}")
        to_tag = f";tag={self.remote_tag}" if self.remote_tag else ""
        request.headers.add("To", f"<sip:{self.room}@{self.bridge_host}>{to_tag}")
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{self.cseq} {method}")
        request.headers.add("Contact", f"<sip:{self.user}@{self.local_host}:{self.sip_port}>")
        return request

    def _on_sip(self, data: bytes, addr: tuple) -> None:
        try:
            message = parse_message(data)
        except SipError:
            return
        now = asyncio.get_running_loop().time()
        self.transactions.receive(message, Peer(addr[0], addr[1], "udp"), now)
        while (event := self.transactions.next_event()) is not None:
            if isinstance(event, ResponseReceived):
                self._on_response(event.response)
            elif isinstance(event, RequestReceived):
                self._on_request(event.txn_id, event.request, now)
        self._flush()

    def _on_response(self, response: Response) -> None:
        method = response.cseq.method
        if method == "BYE" and response.code >= 200:
            self._bye_done.set()
            return
        if method == "INFO" and response.code >= 200:
            waiting_info = self._infos.pop(response.cseq.sequence, None)
            if waiting_info is not None and not waiting_info.done():
                waiting_info.set_result(response.code)
            return
        if method != "INVITE" or response.code < 200:
            return
        self.last_final = response
        number = response.cseq.sequence
        if response.code < 300:
            self.remote_tag = response.to_address.parameters.get("tag") or ""
            contacts = response.contact
            if contacts:
                self.remote_target = str(contacts[0].uri)
            ack = self._request("ACK", self.remote_target)
            ack.headers.set("CSeq", f"{number} ACK")
            if self.session is None and response.body and self.late_offer:
                offer = parse_sdp(response.body)
                self.session = negotiate_offer(offer, (self.codec,))
                ack.headers.set("Content-Type", "application/sdp")
                ack.body = build_answer(
                    offer,
                    self.session,
                    local_host=self.local_host,
                    local_port=self.rtp_port,
                    session_id=self.session_id,
                    version=self.sdp_version,
                )
            elif self.session is None and response.body:
                self.session = negotiate_answer(parse_sdp(response.body), (self.codec,))
            self.transactions.send_stateless(ack, self.bridge)
        waiting = self._invites.pop(number, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(response.code)

    def _on_request(self, txn: str, request: Request, now: float) -> None:
        if request.method == "BYE":
            self.ended_by_bridge = True
        self.transactions.send_response(txn, make_response(request, 200), now)

    def _flush(self) -> None:
        for out in self.transactions.datagrams_to_send():
            self.sip.sendto(out.data, (out.peer.host, out.peer.port))

    async def _timers(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.01)
            deadline = self.transactions.get_timer()
            if deadline is not None and deadline <= loop.time():
                self.transactions.handle_timer(loop.time())
                self._flush()

    # --- RTP ----------------------------------------------------------------------------------

    def _on_rtp(self, data: bytes, addr: tuple) -> None:
        try:
            packet = parse_rtp(data)
        except RtpError:
            return
        self.received_packets += 1
        self.sources.add(addr[:2])
        codec = CODECS[self.codec]
        if packet.payload_type == codec.payload_type:
            self.heard.append(
                HeardFrame(asyncio.get_running_loop().time(), codec.decode(packet.payload))
            )

    async def _stream(self) -> None:
        """Send a frame every 20 ms on absolute deadlines (start + n * 20 ms): no drift."""
        assert self.session is not None
        loop = asyncio.get_running_loop()
        codec = CODECS[self.codec]
        destination = (self.session.remote_host, self.session.remote_port)
        start = loop.time()
        frame = 0
        while True:
            if self._queued_packets:
                self.rtp.sendto(self._queued_packets.popleft(), destination)
            else:
                if self._queued_audio:
                    samples = self._queued_audio.popleft()
                elif self.source is not None:
                    samples = self.source.next_frame(160)
                else:
                    samples = None
                payload = codec.silence if samples is None else codec.encode(samples)
                self.rtp.sendto(self.sender.packet(payload), destination)
            self.sent_packets += 1
            frame += 1
            delay = start + frame * FRAME_SECONDS - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
