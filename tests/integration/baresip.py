"""Drive Debian's baresip 1.0 as a real softphone in integration tests.

Each `Baresip` gets its own config dir: loopback only, no sound card, a sine source (`ausine`),
and the `sndfile` filter, which writes what baresip sends and what it decodes to WAV files, so a
test can check both directions numerically. Commands go through the `stdio` UI on stdin (it works
on a pipe, only warning that it cannot set up a terminal); progress is read from its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import wave
from pathlib import Path

import numpy as np

from tests.integration.harness import LOOPBACK

RTP_PORT_RANGE = (10000, 20000)
"""baresip's RTP ports come from here: below both `free_port` (20000+) and the bridge's range."""

CONFIG = """\
# Written by tests/integration/baresip.py: loopback only, no sound card.
poll_method		epoll
sip_listen		{host}:{sip_port}
net_interface		{host}
call_local_timeout	30
call_max_calls		1
# ausine only produces 48 kHz stereo; baresip resamples it for G.711.
audio_source		{source}
ausrc_srate		48000
ausrc_channels		2
# aubridge is a sink without a sound card; sndfile records the decoded audio before it.
audio_player		aubridge,{device}
audio_alert		aubridge,{device}
audio_level		no
ausrc_format		s16
auplay_format		s16
auenc_format		s16
audec_format		s16
audio_buffer		20-160
rtp_tos			0
rtp_ports		{rtp_min}-{rtp_max}
rtcp_mux		no
jitter_buffer_delay	5-10
rtp_stats		no
module_path		{module_path}
module			stdio.so
module			g711.so
module			g722.so
module			opus.so
module			sndfile.so
module			ausine.so
module			aufile.so
module			aubridge.so
module_tmp		account.so
module_app		menu.so
snd_path		{record_dir}
ringback_disabled	yes
"""

ACCOUNT = "<sip:{user}@{host}>;regint=0;audio_codecs={codecs};ptime=20\n"
RATES = {"pcmu": 8000, "pcma": 8000, "g722": 16000, "opus": 48000}
"""The rate of sndfile's dumps for the first codec of the account's list."""


def _all_free(ports: list[tuple[int, int]]) -> bool:
    """Whether every (port, socket kind) can be bound on loopback right now."""
    sockets = []
    try:
        for port, kind in ports:
            sock = socket.socket(socket.AF_INET, kind)
            sockets.append(sock)
            sock.bind((LOOPBACK, port))
        return True
    except OSError:
        return False
    finally:
        for sock in sockets:
            sock.close()


def free_sip_port() -> int:
    """A port free for UDP and TCP whose successor is free for TCP: baresip binds TLS on +1."""
    udp, tcp = socket.SOCK_DGRAM, socket.SOCK_STREAM
    for _ in range(200):
        port = random.randrange(20000, 60000)
        if _all_free([(port, udp), (port, tcp), (port + 1, tcp)]):
            return port
    raise RuntimeError("no free SIP port for baresip")


def free_rtp_range(size: int = 4) -> tuple[int, int]:
    """An even-based block of UDP ports (RTP + RTCP) free now, inside RTP_PORT_RANGE."""
    for _ in range(200):
        base = random.randrange(RTP_PORT_RANGE[0], RTP_PORT_RANGE[1] - size, 2)
        if _all_free([(base + i, socket.SOCK_DGRAM) for i in range(size)]):
            return base, base + size - 1
    raise RuntimeError("no free RTP ports for baresip")


def read_wav(path: Path, rate: int = 8000) -> np.ndarray:
    """Mono 16-bit samples of a WAV file (sndfile writes the codec's rate, 8 kHz for G.711;
    Opus' dumps are stereo: the channels are averaged)."""
    with wave.open(str(path)) as wav:
        channels = wav.getnchannels()
        assert channels in (1, 2) and wav.getsampwidth() == 2, path
        assert wav.getframerate() == rate, (path, wav.getframerate())
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels == 2:
        samples = samples.reshape(-1, 2).mean(axis=1)
    return samples.astype(np.int16)


class Baresip:
    """One baresip process: `await start()`, `dial(uri)`, `hangup()`, `stop()`, then read
    `heard()` and `sent()`."""

    def __init__(
        self,
        workdir: Path,
        *,
        tone_hz: int,
        user: str = "softphone",
        codecs: str = "pcmu,pcma",
        source_file: Path | None = None,
        extra_config: str = "",
        account_params: str = "",
    ) -> None:
        """`source_file` (a 48 kHz stereo WAV, long enough for the call) replaces the sine;
        `extra_config` lines go at the end of the config (e.g. TLS, `module srtp.so`), and
        `account_params` at the end of the account line (e.g. `;mediaenc=srtp-mand`)."""
        self.extra_config = extra_config
        self.account_params = account_params
        assert 10 <= tone_hz <= 20000, "ausine accepts 10..20000 Hz"
        self.source_file = source_file
        self.codecs = codecs
        self.rate = RATES[codecs.split(",")[0].split("/")[0].lower()]
        self.config_dir = workdir / "baresip"
        self.record_dir = self.config_dir / "recordings"
        self.tone_hz = tone_hz
        self.user = user
        self.sip_port = free_sip_port()
        self.process: asyncio.subprocess.Process | None = None
        self._output = bytearray()
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def output(self) -> str:
        """Everything baresip printed so far (stdout and stderr), for assertion messages."""
        return self._output.decode(errors="replace")

    @property
    def source(self) -> str:
        if self.source_file is not None:
            return f"aufile,{self.source_file}"
        return f"ausine,{self.tone_hz}"

    def write_config(self) -> None:
        executable = shutil.which("baresip")
        assert executable, "baresip is missing: scripts/setup.sh --test installs Debian's baresip"
        self.record_dir.mkdir(parents=True, exist_ok=True)
        rtp_min, rtp_max = self.rtp_ports = free_rtp_range()
        (self.config_dir / "config").write_text(
            CONFIG.format(
                host=LOOPBACK,
                sip_port=self.sip_port,
                source=self.source,
                device=f"sink{self.sip_port}",
                rtp_min=rtp_min,
                rtp_max=rtp_max,
                module_path="/usr/lib/baresip/modules",
                record_dir=self.record_dir,
            )
            + self.extra_config
        )
        account = ACCOUNT.format(user=self.user, host=LOOPBACK, codecs=self.codecs)
        account = account.rstrip("\n") + self.account_params + "\n"
        (self.config_dir / "accounts").write_text(account)

    async def start(self, timeout: float = 10.0, lifetime_s: int = 60) -> None:
        """Start baresip and wait until it is ready; `-t` makes it quit on its own eventually,
        so a crashed test never leaves it running."""
        self.write_config()
        self.process = await asyncio.create_subprocess_exec(
            "baresip",
            "-f",
            str(self.config_dir),
            "-t",
            str(lifetime_s),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_for("baresip is ready.", timeout)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while chunk := await self.process.stdout.read(4096):
            self._output += chunk
            self._changed.set()
        self._changed.set()

    async def wait_for(self, text: str, timeout: float, start: int = 0) -> None:
        """Wait until `text` appears in the output after offset `start`."""

        async def seen() -> None:
            while text not in self.output[start:]:
                assert self.process is not None
                if self.process.returncode is not None or self._reader_done():
                    raise AssertionError(f"baresip exited before {text!r}:\n{self.output}")
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(seen(), timeout)
        except TimeoutError:
            raise AssertionError(f"baresip: no {text!r} in {timeout} s:\n{self.output}") from None

    def _reader_done(self) -> bool:
        return self._reader is not None and self._reader.done()

    async def command(self, line: str) -> None:
        """Send one stdio command, e.g. `/dial sip:...`, `/hangup`, `/quit`."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def dial(self, uri: str, timeout: float = 10.0) -> None:
        """Call `uri` and wait until baresip reports the call established (200 OK + ACK)."""
        mark = len(self.output)
        await self.command(f"/dial {uri}")
        await self.wait_for("Call established", timeout, mark)

    async def hangup(self, timeout: float = 5.0) -> None:
        """Hang up the current call: baresip sends BYE and prints "terminate call". (The menu's
        "Call ... terminated" line is missing when the hang-up follows the answer closely.)"""
        mark = len(self.output)
        await self.command("/hangup")
        await self.wait_for("call: terminate call", timeout, mark)

    async def stop(self, timeout: float = 5.0) -> None:
        """Quit cleanly; terminate, then kill, if baresip does not exit in time."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ConnectionError):
                await self.command("/quit")
            if not await self._exited(timeout):
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                if not await self._exited(timeout):
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _exited(self, timeout: float) -> bool:
        assert self.process is not None
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _recording(self, direction: str, last_call: bool = False) -> np.ndarray:
        # libsndfile completes the WAV header only when it closes the file, which happens some
        # time after the hang-up: read the dumps once baresip has quit.
        assert self.process is not None and self.process.returncode is not None, "stop() first"
        files = sorted(self.record_dir.glob(f"dump-*-{direction}.wav"))
        # sndfile names a dump by the second its call started: a later call (a transfer's)
        # starting in another second has its own, newer file; in the same second, the same one.
        assert len(files) == 1 or (last_call and files), (files, self.output)
        return read_wav(files[-1], self.rate)

    def heard(self, last_call: bool = False) -> np.ndarray:
        """What baresip decoded from the bridge during its call (sndfile's decode dump); with
        last_call, during the newest of several calls (the one a REFER made)."""
        return self._recording("dec", last_call)

    def sent(self) -> np.ndarray:
        """What baresip encoded and sent during its call (sndfile's encode dump)."""
        return self._recording("enc")
