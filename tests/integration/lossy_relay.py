"""A lossy path between one real softphone and the bridge, for loss tests (check 3 of the
wideband issue): a UDP relay that carries the call's SIP and RTP and drops a share of the
phone's RTP packets at random.

The phone dials the relay's SIP port; the relay passes each datagram on (phone -> bridge from
its SIP socket, so the bridge answers it there, and back) and rewrites the audio port of the
bridge's SDP to its own RTP port. The phone then sends its RTP to the relay, which forwards it
to the bridge minus the dropped packets; the bridge latches onto the relay's RTP socket
(symmetric RTP) and its packets go back to the phone unharmed. Requests later in the dialog
(ACK, BYE) go straight to the bridge's Contact: only the first answer's SDP needs the relay.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket

from tests.integration.harness import LOOPBACK

Address = tuple[str, int]
_AUDIO_PORT = re.compile(rb"^(m=audio )(\d+)", re.MULTILINE)
_LENGTH = re.compile(rb"^(Content-Length|l)[ \t]*:[ \t]*\d+", re.MULTILINE | re.IGNORECASE)


class LossyRelay:
    """`start()`; the phone dials `sip:room@127.0.0.1:{sip_port}`; `dropped`/`forwarded`
    count the phone's RTP packets; `from_phone` and `to_phone` keep the RTP packets as sent
    (before any is dropped)."""

    def __init__(self, bridge_sip_port: int, loss: float, seed: int = 1) -> None:
        self.bridge_sip: Address = (LOOPBACK, bridge_sip_port)
        self.loss = loss
        self.rng = random.Random(seed)
        self.sip = self._socket()
        self.rtp = self._socket()
        self.sip_port = self.sip.getsockname()[1]
        self.rtp_port = self.rtp.getsockname()[1]
        self.phone_sip: Address | None = None
        self.phone_rtp: Address | None = None
        self.bridge_rtp: Address | None = None
        self.dropped = self.forwarded = 0
        self.to_phone: list[bytes] = []
        self.from_phone: list[bytes] = []

    @staticmethod
    def _socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        return sock

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sip.fileno(), self._on_sip)
        loop.add_reader(self.rtp.fileno(), self._on_rtp)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in (self.sip, self.rtp):
            loop.remove_reader(sock.fileno())
            sock.close()

    def _on_sip(self) -> None:
        data, source = self.sip.recvfrom(65535)
        if source == self.bridge_sip:
            if self.phone_sip is not None:
                self.sip.sendto(self._rewrite(data), self.phone_sip)
        else:
            self.phone_sip = source
            self.sip.sendto(data, self.bridge_sip)

    def _rewrite(self, message: bytes) -> bytes:
        """The bridge's SDP with our RTP port in place of its own (and the length fixed)."""
        head, separator, body = message.partition(b"\r\n\r\n")
        match = _AUDIO_PORT.search(body)
        if not separator or match is None:
            return message
        self.bridge_rtp = (LOOPBACK, int(match.group(2)))
        body = _AUDIO_PORT.sub(rb"\g<1>" + str(self.rtp_port).encode(), body, count=1)
        head = _LENGTH.sub(rb"\g<1>: " + str(len(body)).encode(), head, count=1)
        return head + separator + body

    def _on_rtp(self) -> None:
        data, source = self.rtp.recvfrom(65535)
        if source == self.bridge_rtp:
            self.to_phone.append(data)
            if self.phone_rtp is not None:
                self.rtp.sendto(data, self.phone_rtp)
            return
        if self.bridge_rtp is None:
            return
        self.phone_rtp = source
        self.from_phone.append(data)
        if self.rng.random() < self.loss:
            self.dropped += 1
            return
        self.forwarded += 1
        self.rtp.sendto(data, self.bridge_rtp)
