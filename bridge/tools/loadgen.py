"""A load process: many simulated participants that dial the bridge over SIP and stream RTP.

Why not one `Phone` each: a Phone has its own SIP socket, a 10 ms timer task and a 20 ms sender
task, and decodes every packet as it arrives; at hundreds of participants that alone fills a
core. Here one SIP socket and one transaction layer serve every call of the process (re-armed on
its one deadline, as the bridge does), one pacer sends every call's frames on absolute 2 ms
slots, and every call's RTP goes through one socket in batches, accounted as arrays
(`loadstreams.py`): the bridge latches each call's source, which is that one socket, and sends
each call's stream from the call's own port, which tells the calls apart.

The coordinator (`bridge.tools.loadtest`) runs it as `python -m bridge.tools.loadgen`: orders
come as JSON lines on stdin, reports go as JSON lines on stdout (nothing else may print there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sipmessage import URI, Request, Response

from bridge.media.g711 import CODECS
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
    FRAME_SECONDS,
    LISTENER,
    MARKER,
    Member,
    PlanSpec,
    amplitude,
    burst_samples,
    members,
    next_burst,
    tone_frames,
    tone_plan,
    wav_frames,
)
from bridge.tools.loadrtp import rms_dbfs, tone_report
from bridge.tools.loadstreams import Streams

LOCAL = "127.0.0.1"
SLOTS = 10  # pacer slots per 20 ms: packets leave spread over the frame, as from real phones
SLOT_SECONDS = FRAME_SECONDS / SLOTS
RECEIVE_EVERY = 5  # pacer wakes per read of what came back: 100 reads a second, see `Pacer`
DIGEST_SECONDS = 0.02  # what came since the last digest, every 20 ms: a short stall each
DRAIN_SECONDS = 0.3  # after the last frame, wait this long for the bridge's last packets
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
class LoadCall:
    """One participant: its dialog; its RTP is row `row` of the process' `Streams`."""

    member: Member
    agent: SipAgent
    codec: str
    streams: Streams
    row: int
    plan_start: float = 0.0  # the plan's start (monotonic): bursts are on its schedule
    status: int = 0
    setup_ms: float | None = None
    ended_by_bridge: bool = False

    def __post_init__(self) -> None:
        self.call_id = new_call_id(LOCAL)
        self.tag, self.remote_tag, self.cseq = new_tag(), "", 1
        self.target = f"sip:{self.member.room}@{self.agent.bridge.host}:{self.agent.bridge.port}"
        self.answered: asyncio.Future[int] | None = None
        self.bye_done = asyncio.Event()
        self.invite_txn = ""
        self.remote: tuple[str, int] = ("", 0)

    @property
    def streaming(self) -> bool:
        return self.streams.streaming(self.row)

    @property
    def sent(self) -> int:
        return int(self.streams.sent[self.row])

    def start_streaming(self, first: float) -> None:
        self.streams.start(self.row, self.remote, first, next_burst(self.plan_start, first))

    def stop_streaming(self) -> None:
        self.streams.stop(self.row)

    # --- SIP ----------------------------------------------------------------------------------

    async def dial(self, timeout: float = 15.0) -> int:
        loop = asyncio.get_running_loop()
        rtp_port = self.streams.port  # every call's RTP on the process' one socket
        self.agent.calls[self.call_id] = self
        invite = self._request("INVITE", self.target)
        invite.headers.set("Content-Type", "application/sdp")
        invite.body = build_offer(
            local_host=self.streams.local_host(self.row),
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
    """Sends every call's frames: SLOTS wakes per 20 ms on absolute times.

    Each call sits in one slot and its frame leaves when the slot comes round, a slot's packets
    in one batch, so packets leave spread over the frame and a slow wake never drifts the
    schedule (the next wake is absolute). What came back is read every RECEIVE_EVERY wakes
    (10 ms): the kernel stamps each packet's arrival, so reading later blurs no figure, and
    each read's fixed cost (a few dozen numpy calls) is paid 100 times a second, not 500."""

    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self.slots: list[list[int]] = [[] for _ in range(SLOTS)]
        self._rows = [np.zeros(0, np.int64) for _ in range(SLOTS)]
        self.origin = monotonic()
        self.running = True
        self.wakes = 0  # since `measure` (the analysis window's start), as the two below
        self.late_wakes = 0  # wakes over 5 ms late: the generator itself added jitter
        self.max_late = 0.0

    def add(self, call: LoadCall) -> None:
        slot = min(range(SLOTS), key=lambda s: len(self.slots[s]))
        self.slots[slot].append(call.row)
        self._rows[slot] = np.array(self.slots[slot], np.int64)
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
            rows = self._rows[wake % SLOTS]
            if rows.size:
                self.streams.send_due(rows, max(due, now))
            if wake % RECEIVE_EVERY == 0:
                self.streams.receive()
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
        self.streams = Streams(
            max(1, len(self.mine)),
            orders.spec.codec,
            LOCAL,
            per_call_address=orders.spec.per_call_addresses,
        )
        self.pacer = Pacer(self.streams)
        self.calls: list[LoadCall] = []
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
            self.streams.close()

    def _call_for(self, member: Member) -> LoadCall:
        spec, level = self.orders.spec, amplitude(self.orders.spec.talkers)
        if member.role == LISTENER:
            frames = [CODECS[spec.codec].silence]
        elif spec.wav:
            frames = wav_frames(spec.wav, spec.codec, offset_s=1.7 * member.index)
        else:
            assert member.tone_hz is not None
            frames = tone_frames(member.tone_hz, level, spec.codec)
        burst = burst_samples(level) if member.role == MARKER else None
        row = self.streams.add(frames, burst)
        return LoadCall(member, self.agent, spec.codec, self.streams, row, self.orders.start)

    async def _dial(self, call: LoadCall) -> None:
        await asyncio.sleep(max(0.0, self.orders.start + call.member.dial_at - monotonic()))
        status = await call.dial()
        if status == 200:
            self.pacer.add(call)
        emit("call", index=call.member.index, status=status, setup_ms=call.setup_ms)

    async def _digest_loop(self) -> None:
        while True:
            await asyncio.sleep(DIGEST_SECONDS)
            self.streams.digest()

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            emit("stats", worker=self.orders.worker, **self._totals())

    def _totals(self) -> dict[str, int]:
        streams, stats = self.streams, self.streams.stats
        return {
            "up": sum(call.streaming for call in self.calls),
            "sent": int(streams.sent.sum()),
            "received": int(stats.received.sum()),
            "lost": sum(stats.lost(call.row) for call in self.calls),
            "late": int(stats.late.sum()),
        }

    async def _measure(self, command: dict[str, Any]) -> None:
        """Keep the analysis window's audio; at `end` stop sending, drain, report what went."""
        self.streams.window = (float(command["window"][0]), float(command["window"][1]))
        self.cpu_at_measure = cpu_seconds()
        self.pacer.wakes = self.pacer.late_wakes = 0  # the window's, not the ramp's
        self.pacer.max_late = 0.0
        sent_before = int(self.streams.sent.sum())
        counts_before = self.streams.stats.counts()
        await asyncio.sleep(max(0.0, float(command["end"]) - monotonic()))
        self.pacer.running = False
        cpu = cpu_seconds() - self.cpu_at_measure
        window_sent = int(self.streams.sent.sum()) - sent_before
        self.streams.receive()
        received, expected, late = (self.streams.stats.counts() - counts_before).sum(axis=1)
        for _ in range(int(DRAIN_SECONDS / 0.01)):  # the pacer has stopped: read on
            await asyncio.sleep(0.01)
            self.streams.receive()
        self.streams.digest()
        by_call = {str(call.member.index): call.sent for call in self.calls if call.status == 200}
        emit(
            "stopped",
            worker=self.orders.worker,
            sent_by_call=by_call,
            cpu_s=cpu,
            window_sent=window_sent,
            window_received=int(received),
            window_lost=max(0, int(expected - received)),
            window_late=int(late),
            pacer_wakes=self.pacer.wakes,
            pacer_late_wakes=self.pacer.late_wakes,
            pacer_max_late_ms=self.pacer.max_late * 1000.0,
            **self._totals(),
        )

    async def _hangup(self) -> None:
        await asyncio.gather(*(call.hangup() for call in self.calls))
        self.streams.digest()
        emit(
            "result", worker=self.orders.worker, participants=[self._result(c) for c in self.calls]
        )

    def _result(self, call: LoadCall) -> dict[str, Any]:
        stats, member, row = self.streams.stats, call.member, call.row
        marker = self.streams.markers.get(row)
        return {
            "index": member.index,
            "room": member.room,
            "role": member.role,
            "tone_hz": member.tone_hz,
            "status": call.status,
            "setup_ms": call.setup_ms,
            "sent": call.sent,
            "received": int(stats.received[row]),
            "expected": stats.expected(row),
            "lost": stats.lost(row),
            "late": int(stats.late[row]),
            "reordered": int(stats.reordered[row]),
            "odd": int(self.streams.odd[row]),
            "jitter_ms": float(stats.jitter[row]) * 1000.0,
            "max_jitter_ms": float(stats.max_jitter[row]) * 1000.0,
            "ended_by_bridge": call.ended_by_bridge,
            "bursts_sent": marker.sent_at if marker is not None else [],
            "burst_onsets": self.streams.onsets[row],
            "audio": self._audio(call),
        }

    def _audio(self, call: LoadCall) -> dict[str, Any]:
        """What the analysis window holds: each relevant tone's level, or the speech level."""
        audio = self.streams.audio(call.row)
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
