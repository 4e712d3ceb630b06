"""A load process: many simulated participants that dial the bridge over SIP and stream RTP.

Why not one `Phone` each: a Phone has its own SIP socket, a 10 ms timer task and a 20 ms sender
task, and decodes every packet as it arrives; at hundreds of participants that alone fills a
core. Here one SIP socket and one transaction layer serve every call of the process (re-armed on
its one deadline, as the bridge does), one pacer sends every call's frames on absolute 2 ms
slots, and received payloads are decoded in batches. Each call keeps its own RTP socket, as a
real phone does (the bridge latches each call's source address).

The coordinator (`bridge.tools.loadtest`) runs it as `python -m bridge.tools.loadgen`: orders
come as JSON lines on stdin, reports go as JSON lines on stdout (nothing else may print there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from sipmessage import URI, Request, Response

from bridge.media.g711 import CODECS
from bridge.rtp.packet import RtpSender
from bridge.sip.message import SipError, make_response, new_branch, new_call_id, new_tag
from bridge.sip.message import parse_message as parse_sip
from bridge.sip.sdp import SdpError, build_offer, negotiate_answer, parse_sdp
from bridge.sip.transaction import (
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTimeout,
)
from bridge.tools.loadplan import (
    BURST_FRAMES,
    BURST_PERIOD,
    FRAME_SECONDS,
    LISTENER,
    MARKER,
    Member,
    PlanSpec,
    amplitude,
    burst_frames,
    members,
    next_burst,
    tone_frames,
    tone_plan,
    wav_frames,
)
from bridge.tools.loadrtp import Recorder, RtpStats, rms_dbfs, tone_report

LOCAL = "127.0.0.1"
PACKET_BYTES = 12 + 160  # a plain RTP header and one 20 ms G.711 frame
SLOTS = 10  # pacer slots per 20 ms: packets leave spread over the frame, as from real phones
SLOT_SECONDS = FRAME_SECONDS / SLOTS
DIGEST_SECONDS = 0.1  # one tenth of the calls is digested per wake: short, even stalls
DRAIN_SECONDS = 0.3  # after the last frame, wait this long for the bridge's last packets
_seq_ts = struct.Struct("!HI").unpack_from
monotonic = time.monotonic


def emit(event: str, **fields: Any) -> None:
    """One report line for the coordinator."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class SipAgent(asyncio.DatagramProtocol):
    """One SIP UDP socket and transaction layer for every call of this process."""

    def __init__(self, bridge: Peer) -> None:
        self.bridge = bridge
        self.transactions = TransactionLayer()
        self.calls: dict[str, LoadCall] = {}
        self.port = 0
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, (LOCAL, 0))
        self.port = self.transport.get_extra_info("sockname")[1]

    def send_request(self, request: Request) -> str:
        loop = asyncio.get_running_loop()
        txn_id = self.transactions.send_request(request, self.bridge, loop.time())
        self.flush()
        return txn_id

    def send_stateless(self, message: Request | Response) -> None:
        self.transactions.send_stateless(message, self.bridge)
        self.flush()

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        try:
            message = parse_sip(data)
        except SipError:
            return
        now = asyncio.get_running_loop().time()
        self.transactions.receive(message, Peer(addr[0], addr[1], "udp"), now)
        self._take_events(now)

    def _take_events(self, now: float) -> None:
        """Hand what the transaction layer saw to the calls, then send and re-arm."""
        while (event := self.transactions.next_event()) is not None:
            if isinstance(event, ResponseReceived):
                call = self.calls.get(event.response.headers.get("Call-ID") or "")
                if call is not None:
                    call.on_response(event.response)
            elif isinstance(event, RequestReceived):
                self._on_request(event.txn_id, event.request, now)
            elif isinstance(event, TransactionTimeout):
                for call in self.calls.values():
                    call.on_timeout(event.txn_id)
        self.flush()

    def _on_request(self, txn_id: str, request: Request, now: float) -> None:
        call = self.calls.get(request.headers.get("Call-ID") or "")
        if call is not None and request.method == "BYE":
            call.ended_by_bridge = True
            call.stop_streaming()
            emit("ended", index=call.member.index)
        code = 200 if call is not None else 481
        self.transactions.send_response(txn_id, make_response(request, code), now)

    def flush(self) -> None:
        for out in self.transactions.datagrams_to_send():
            with contextlib.suppress(OSError):
                self.transport.sendto(out.data, (out.peer.host, out.peer.port))
        deadline = self.transactions.get_timer()
        if deadline != self._deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._deadline = deadline
            loop = asyncio.get_running_loop()
            self._timer = None if deadline is None else loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._deadline = None, None
        now = asyncio.get_running_loop().time()
        self.transactions.handle_timer(now)
        self._take_events(now)


@dataclass(eq=False)
class LoadCall(asyncio.DatagramProtocol):
    """One participant: its dialog, its RTP socket, what it sends and what it measures."""

    member: Member
    agent: SipAgent
    codec: str
    frames: list[bytes]  # looped: a tone, speech, or silence
    plan_start: float = 0.0  # the plan's start (monotonic): bursts are on its schedule
    burst_payloads: list[bytes] = field(default_factory=list)  # marker only
    status: int = 0
    setup_ms: float | None = None
    sent: int = 0
    odd: int = 0  # datagrams that are not one plain 20 ms RTP packet
    burst_sent: list[float] = field(default_factory=list)
    ended_by_bridge: bool = False
    streaming: bool = False

    def __post_init__(self) -> None:
        self.stats = RtpStats()
        self.recorder = Recorder(self.codec)
        self.sender = RtpSender(payload_type=CODECS[self.codec].payload_type)
        self.call_id = new_call_id(LOCAL)
        self.tag, self.remote_tag, self.cseq = new_tag(), "", 1
        self.target = f"sip:{self.member.room}@{self.agent.bridge.host}:{self.agent.bridge.port}"
        self.answered: asyncio.Future[int] | None = None
        self.bye_done = asyncio.Event()
        self.invite_txn = ""
        self.next_time = 0.0
        self.position = 0
        self.burst_left = 0
        self.next_burst = float("inf")
        self.remote: tuple[str, int] = ("", 0)

    # --- RTP: the per-packet path ---------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        now = monotonic()
        if len(data) != PACKET_BYTES or data[0] != 0x80:
            self.odd += 1
            return
        seq, ts = _seq_ts(data, 2)
        self.stats.receive(seq, ts, now)
        self.recorder.add(data[12:], now)

    def start_streaming(self, first: float) -> None:
        self.next_time = first
        if self.burst_payloads:
            self.next_burst = next_burst(self.plan_start, first)
        self.streaming = True

    def send_due(self, due: float) -> None:
        """Send every frame whose time has come (normally one): drift-free, catches up."""
        while self.streaming and self.next_time <= due:
            self.rtp.sendto(self.sender.packet(self._payload()), self.remote)
            self.sent += 1
            self.next_time += FRAME_SECONDS

    def _payload(self) -> bytes:
        payload = self.frames[self.position % len(self.frames)]
        self.position += 1
        if self.burst_left == 0 and self.next_time >= self.next_burst:
            self.next_burst += BURST_PERIOD
            self.burst_left = BURST_FRAMES
            self.burst_sent.append(monotonic())
        if self.burst_left:
            payload = self.burst_payloads[BURST_FRAMES - self.burst_left]
            self.burst_left -= 1
        return payload

    def stop_streaming(self) -> None:
        self.streaming = False

    # --- SIP ----------------------------------------------------------------------------------

    async def dial(self, timeout: float = 15.0) -> int:
        loop = asyncio.get_running_loop()
        self.rtp, _ = await loop.create_datagram_endpoint(lambda: self, (LOCAL, 0))
        rtp_port = self.rtp.get_extra_info("sockname")[1]
        self.agent.calls[self.call_id] = self
        invite = self._request("INVITE", self.target)
        invite.headers.set("Content-Type", "application/sdp")
        invite.body = build_offer(
            local_host=LOCAL,
            local_port=rtp_port,
            session_id=random.randrange(1, 2**31),
            version=1,
            codecs=(self.codec,),
        )
        self.answered = loop.create_future()
        began = monotonic()
        self.invite_txn = self.agent.send_request(invite)
        try:
            self.status = await asyncio.wait_for(self.answered, timeout)
        except TimeoutError:
            self.status = 408
        self.setup_ms = (monotonic() - began) * 1000.0
        return self.status

    def on_response(self, response: Response) -> None:
        method = response.cseq.method
        if method == "BYE" and response.code >= 200:
            self.bye_done.set()
        if method != "INVITE" or response.code < 200:
            return
        if response.code < 300:
            self._accept(response)
        self._settle(response.code)

    def _accept(self, response: Response) -> None:
        """ACK every 2xx (retransmissions too); the first one sets up the media."""
        self.remote_tag = response.to_address.parameters.get("tag") or ""
        if response.contact:
            self.target = str(response.contact[0].uri)
        ack = self._request("ACK", self.target)
        ack.headers.set("CSeq", f"{response.cseq.sequence} ACK")
        self.agent.send_stateless(ack)
        if self.remote[1] == 0 and response.body:
            try:
                session = negotiate_answer(parse_sdp(response.body), (self.codec,))
            except SdpError:
                return
            self.remote = (session.remote_host, session.remote_port)

    def _settle(self, code: int) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(code if code >= 300 or self.remote[1] else 488)

    def on_timeout(self, txn_id: str) -> None:
        if self.answered is not None and not self.answered.done() and txn_id == self.invite_txn:
            self.answered.set_result(408)

    async def hangup(self, timeout: float = 3.0) -> None:
        self.stop_streaming()
        if self.status == 200 and not self.ended_by_bridge:
            self.cseq += 1
            self.agent.send_request(self._request("BYE", self.target))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.bye_done.wait(), timeout)
        if getattr(self, "rtp", None) is not None:
            self.rtp.close()

    def _request(self, method: str, uri: str) -> Request:
        request = Request(method, URI.parse(uri))
        port, user = self.agent.port, f"lg{self.member.index}"
        request.headers.add("Via", f"SIP/2.0/UDP {LOCAL}:{port};branch={new_branch()};rport")
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", f"<sip:{user}@{LOCAL}>;tag={self.tag}")
        to_tag = f";tag={self.remote_tag}" if self.remote_tag else ""
        request.headers.add("To", f"<sip:{self.member.room}@{self.agent.bridge.host}>{to_tag}")
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{self.cseq} {method}")
        request.headers.add("Contact", f"<sip:{user}@{LOCAL}:{port}>")
        return request


class Pacer:
    """Sends every call's frames from one task: SLOTS wakes per 20 ms on absolute times.

    Each call sits in one slot and sends when its slot comes round, so packets leave spread
    over the frame and a slow wake never drifts the schedule (the next wake is absolute)."""

    def __init__(self) -> None:
        self.slots: list[list[LoadCall]] = [[] for _ in range(SLOTS)]
        self.origin = monotonic()
        self.running = True
        self.wakes = 0
        self.late_wakes = 0  # wakes over 5 ms late: the generator itself added jitter
        self.max_late = 0.0

    def add(self, call: LoadCall) -> None:
        slot = min(range(SLOTS), key=lambda s: len(self.slots[s]))
        self.slots[slot].append(call)
        now = monotonic()
        first = self.origin + ((now - self.origin) // FRAME_SECONDS) * FRAME_SECONDS
        first += slot * SLOT_SECONDS
        call.start_streaming(first if first > now else first + FRAME_SECONDS)

    async def run(self) -> None:
        wake = 0
        while self.running:
            due = self.origin + wake * SLOT_SECONDS
            now = monotonic()
            self._note(now - due)
            for call in self.slots[wake % SLOTS]:
                call.send_due(max(due, now))
            wake += 1
            await asyncio.sleep(max(0.0, self.origin + wake * SLOT_SECONDS - monotonic()))

    def _note(self, late: float) -> None:
        self.wakes += 1
        if late > 0.005:
            self.late_wakes += 1
        if late > self.max_late:
            self.max_late = late


@dataclass
class Orders:
    """What the coordinator tells one load process at start."""

    spec: PlanSpec
    indices: list[int]
    host: str
    port: int
    start: float  # the plan's start, monotonic
    worker: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Orders:
        return cls(**{**data, "spec": PlanSpec(**data["spec"])})


class Worker:
    """Dials this process's share on the plan's ramp, streams, and answers the coordinator."""

    def __init__(self, orders: Orders) -> None:
        self.orders = orders
        everyone = members(orders.spec)
        self.mine = [everyone[i] for i in orders.indices]
        self.tones = tone_plan(orders.spec.rooms, orders.spec.talkers)
        self.agent = SipAgent(Peer(orders.host, orders.port, "udp"))
        self.pacer = Pacer()
        self.calls: list[LoadCall] = []
        self.window = (float("inf"), float("inf"))
        self.cpu_at_measure = 0.0

    async def run(self, commands: asyncio.Queue[dict[str, Any] | None]) -> None:
        await self.agent.start()
        self.calls = [self._call_for(member) for member in self.mine]
        tasks = [
            asyncio.create_task(self.pacer.run()),
            asyncio.create_task(self._digest_loop()),
            asyncio.create_task(self._report_loop()),
            *(asyncio.create_task(self._dial(call)) for call in self.calls),
        ]
        try:
            while (command := await commands.get()) is not None:
                if command["cmd"] == "measure":
                    tasks.append(asyncio.create_task(self._measure(command)))
                elif command["cmd"] == "hangup":
                    await self._hangup()
                    break
            else:  # the coordinator went away: leave no call up behind it
                await asyncio.gather(*(call.hangup() for call in self.calls))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _call_for(self, member: Member) -> LoadCall:
        spec, level = self.orders.spec, amplitude(self.orders.spec.talkers)
        if member.role == LISTENER:
            frames = [CODECS[spec.codec].silence]
        elif spec.wav:
            frames = wav_frames(spec.wav, spec.codec, offset_s=1.7 * member.index)
        else:
            assert member.tone_hz is not None
            frames = tone_frames(member.tone_hz, level, spec.codec)
        bursts = burst_frames(level, spec.codec) if member.role == MARKER else []
        return LoadCall(member, self.agent, spec.codec, frames, self.orders.start, bursts)

    async def _dial(self, call: LoadCall) -> None:
        await asyncio.sleep(max(0.0, self.orders.start + call.member.dial_at - monotonic()))
        status = await call.dial()
        if status == 200:
            call.recorder.window = self.window
            self.pacer.add(call)
        emit("call", index=call.member.index, status=status, setup_ms=call.setup_ms)

    async def _digest_loop(self) -> None:
        group = 0
        while True:
            await asyncio.sleep(DIGEST_SECONDS)
            for call in self.calls[group % SLOTS :: SLOTS]:
                call.recorder.digest()
            group += 1

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            emit("stats", worker=self.orders.worker, **self._totals())

    def _totals(self) -> dict[str, int]:
        return {
            "up": sum(call.streaming for call in self.calls),
            "sent": sum(call.sent for call in self.calls),
            "received": sum(call.stats.received for call in self.calls),
            "lost": sum(call.stats.lost for call in self.calls),
            "late": sum(call.stats.late for call in self.calls),
        }

    async def _measure(self, command: dict[str, Any]) -> None:
        """Keep the analysis window's audio; at `end` stop sending, drain, report what went."""
        self.window = (float(command["window"][0]), float(command["window"][1]))
        for call in self.calls:
            call.recorder.window = self.window
        self.cpu_at_measure = cpu_seconds()
        await asyncio.sleep(max(0.0, float(command["end"]) - monotonic()))
        self.pacer.running = False
        cpu = cpu_seconds() - self.cpu_at_measure
        await asyncio.sleep(DRAIN_SECONDS)
        for call in self.calls:
            call.recorder.digest()
        by_call = {str(call.member.index): call.sent for call in self.calls if call.status == 200}
        emit(
            "stopped",
            worker=self.orders.worker,
            sent_by_call=by_call,
            cpu_s=cpu,
            pacer_wakes=self.pacer.wakes,
            pacer_late_wakes=self.pacer.late_wakes,
            pacer_max_late_ms=self.pacer.max_late * 1000.0,
            **self._totals(),
        )

    async def _hangup(self) -> None:
        await asyncio.gather(*(call.hangup() for call in self.calls))
        for call in self.calls:
            call.recorder.digest()
        emit(
            "result", worker=self.orders.worker, participants=[self._result(c) for c in self.calls]
        )

    def _result(self, call: LoadCall) -> dict[str, Any]:
        stats, member = call.stats, call.member
        return {
            "index": member.index,
            "room": member.room,
            "role": member.role,
            "tone_hz": member.tone_hz,
            "status": call.status,
            "setup_ms": call.setup_ms,
            "sent": call.sent,
            "received": stats.received,
            "expected": stats.expected,
            "lost": stats.lost,
            "late": stats.late,
            "reordered": stats.reordered,
            "odd": call.odd,
            "jitter_ms": stats.jitter * 1000.0,
            "max_jitter_ms": stats.max_jitter * 1000.0,
            "ended_by_bridge": call.ended_by_bridge,
            "bursts_sent": call.burst_sent,
            "burst_onsets": call.recorder.onsets,
            "audio": self._audio(call),
        }

    def _audio(self, call: LoadCall) -> dict[str, Any]:
        """What the analysis window holds: each relevant tone's level, or the speech level."""
        audio = call.recorder.audio()
        result: dict[str, Any] = {"samples": int(audio.size)}
        if audio.size == 0:
            return result
        if self.orders.spec.wav:
            return {**result, "rms_db": rms_dbfs(audio)}
        member = call.member
        return {**result, **tone_report(audio, self.tones, member.room_index, member.tone_hz)}


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def _commands(reader: asyncio.StreamReader, queue: asyncio.Queue[Any]) -> None:
    while line := await reader.readline():
        queue.put_nowait(json.loads(line))
    queue.put_nowait(None)  # the coordinator went away: hang up and leave


async def serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emit("ready")
    orders = Orders.from_dict(json.loads(await reader.readline()))
    queue: asyncio.Queue[Any] = asyncio.Queue()
    listener = asyncio.create_task(_commands(reader, queue))
    try:
        await Worker(orders).run(queue)
    finally:
        listener.cancel()


def main() -> int:
    """`python -m bridge.tools.loadgen [uvloop|asyncio]`: one load process."""
    if (sys.argv[1:] or ["uvloop"])[0] == "uvloop":
        import uvloop

        uvloop.run(serve())
    else:
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
