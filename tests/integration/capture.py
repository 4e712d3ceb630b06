"""A packet capture of the phones' RTP ports (tcpdump on loopback, owned by the test) and a
decoder that looks for a tone in the payloads as if they were plaintext G.711 mu-law: with SRTP
it must not be found, without SRTP it must (the control run that shows the test can fail)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
from collections import defaultdict
from pathlib import Path

import numpy as np

from bridge.media.g711 import ulaw_decode

Flow = tuple[str, int, str, int]  # source address, port, destination address, port


class Capture:
    """`async with Capture(path, ranges)`: tcpdump writes UDP to or from those port ranges
    (the phones' own: other sessions on this machine may use the bridge's range too)."""

    def __init__(self, path: Path, ranges: list[tuple[int, int]]) -> None:
        self.path, self.ranges = path, ranges
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Capture:
        tcpdump = shutil.which("tcpdump")
        assert tcpdump, "tcpdump is missing: scripts/setup.sh --test installs it"
        ports = " or ".join(f"portrange {low}-{high}" for low, high in self.ranges)
        self.process = await asyncio.create_subprocess_exec(
            tcpdump, "-i", "lo", "-n", "-U", "-s", "0", "-w", str(self.path),
            f"udp and ({ports})",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stderr is not None
        line = await asyncio.wait_for(self.process.stderr.readline(), 10)
        assert b"listening on" in line, line
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        await asyncio.wait_for(self.process.wait(), 10)

    def flows(self) -> dict[Flow, list[bytes]]:
        """UDP payloads by flow, from the pcap file (Ethernet framing, as Linux gives lo)."""
        data = self.path.read_bytes()
        magic, _, _, _, _, _, link = struct.unpack_from("<IHHiIII", data)
        assert magic == 0xA1B2C3D4 and link == 1, (hex(magic), link)
        flows: dict[Flow, list[bytes]] = defaultdict(list)
        offset = 24
        while offset + 16 <= len(data):
            _, _, length, _ = struct.unpack_from("<IIII", data, offset)
            frame = data[offset + 16 : offset + 16 + length]
            offset += 16 + length
            if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            ip_header = (frame[14] & 0x0F) * 4
            udp = 14 + ip_header
            sport, dport = struct.unpack_from("!HH", frame, udp)
            source = ".".join(str(b) for b in frame[26:30])
            dest = ".".join(str(b) for b in frame[30:34])
            flows[(source, sport, dest, dport)].append(frame[udp + 8 :])
        return dict(flows)


def plaintext_prominence(payloads: list[bytes], freq_hz: float, rate: int = 8000) -> float:
    """How far (dB) `freq_hz` stands above the median of the spectrum when the packets' bytes
    after a 12-byte RTP header are decoded as mu-law: a plaintext tone stands 40 dB or more
    above; encrypted bytes decode to white noise (a few dB)."""
    body = b"".join(p[12 : 12 + 160] for p in payloads if len(p) >= 172)
    if len(body) < rate:
        return 0.0
    samples = ulaw_decode(body).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) + 1e-9
    levels = 20 * np.log10(spectrum)
    centre = round(freq_hz * len(samples) / rate)
    return float(levels[centre - 2 : centre + 3].max() - np.median(levels))
