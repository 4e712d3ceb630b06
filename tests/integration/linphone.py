"""Drive Debian's linphonec (linphone-cli 5.1) as a real softphone in integration tests.

Each `Linphone` gets its own configuration file and HOME: SIP on UDP only, SIP and RTP bound to
loopback (which is also what its SDP then advertises), video off, one audio codec enabled, and
"files instead of a sound card": it sends a WAV file and records what it decodes to another.
linphonec only runs its core while its line editor waits on a terminal, and refuses to start
its transports without a writable database under HOME, so it runs on a pseudo-terminal with
HOME in the test's directory.

With `tls_ca`, SIP goes over TLS only (UDP off) with SRTP (SDES) mandatory; belle-sip checks
the bridge's certificate chain against that CA, not its name (`verify_server_cn=0`: its mbedTLS
does not match an IP address in the certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import shutil
import wave
from pathlib import Path

import numpy as np

from tests.integration.baresip import free_rtp_range, free_sip_port
from tests.integration.harness import LOOPBACK

CONFIG = """\
# Written by tests/integration/linphone.py: loopback only, UDP only, no sound card.
[sip]
sip_port={sip_port}
sip_tcp_port=0
sip_tls_port=0
bind_address={host}
ipv6_migration_done=1
use_ipv6=0
default_proxy=-1
contact=sip:{user}@{host}
[rtp]
audio_rtp_port={rtp_port}
bind_address={host}
[sound]
echocancellation=0
[video]
enabled=0
capture=0
display=0
automatically_initiate=0
automatically_accept=0
"""

CODECS = {"opus": (48000, 2), "g722": (8000, 1), "pcmu": (8000, 1), "pcma": (8000, 1),
          "speex": (16000, 1)}
"""linphone's codecs by name: clock rate and channels as in its `[audio_codec_N]` sections.
Only the first is enabled (speex is listed to switch it off: linphone offers it by default)."""


class Linphone:
    """One linphonec process: `await start()`, `dial(uri)`, `hangup()`, `stop()`, then read
    `heard()` (what it decoded, a mono WAV at the codec's rate: 48 kHz for Opus)."""

    def __init__(self, workdir: Path, *, source_file: Path, user: str = "linphone",
                 codec: str = "opus", tls_ca: Path | None = None) -> None:
        """`source_file`: a WAV file long enough for the call (linphone plays it once)."""
        self.workdir = workdir / "linphone"
        self.source_file = source_file
        self.record_file = self.workdir / "heard.wav"
        self.user = user
        self.codec = codec
        self.tls_ca = tls_ca
        self.process: asyncio.subprocess.Process | None = None
        self._master: int | None = None
        self._output = bytearray()
        self._changed = asyncio.Event()

    @property
    def output(self) -> str:
        return self._output.decode(errors="replace")

    def write_config(self) -> Path:
        assert shutil.which("linphonec"), (
            "linphonec is missing: scripts/setup.sh --test installs Debian's linphone-cli"
        )
        (self.workdir / "home" / ".local" / "share" / "linphone").mkdir(parents=True)
        rtp_port, _ = self.rtp_ports = free_rtp_range(2)
        text = CONFIG.format(sip_port=free_sip_port(), host=LOOPBACK, user=self.user,
                             rtp_port=rtp_port)
        if self.tls_ca is not None:
            tls = (f"sip_tls_port={free_sip_port()}\nroot_ca={self.tls_ca}\n"
                   "verify_server_certs=1\nverify_server_cn=0\n"
                   "media_encryption=srtp\nmedia_encryption_mandatory=1")
            text = re.sub(r"(?m)^sip_port=\d+$", "sip_port=0", text)
            text = text.replace("sip_tls_port=0", tls)
        for index, name in enumerate([self.codec, *(c for c in CODECS if c != self.codec)]):
            rate, channels = CODECS[name]
            enabled = int(index == 0)
            text += (f"[audio_codec_{index}]\nmime={name}\nrate={rate}\nchannels={channels}\n"
                     f"enabled={enabled}\n")
        path = self.workdir / "linphonerc"
        path.write_text(text)
        return path

    async def start(self, timeout: float = 10.0) -> None:
        config = self.write_config()
        master, slave = pty.openpty()
        self._master = master
        env = {**os.environ, "HOME": str(self.workdir / "home")}
        self.process = await asyncio.create_subprocess_exec(
            "linphonec", "-c", str(config), "-d", "1",
            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
        )
        os.close(slave)
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._read)
        await self.wait_for("linphonec>", timeout)
        for line in ("soundcard use files", f"play {self.source_file}",
                     f"record {self.record_file}"):
            await self.command(line)

    def _read(self) -> None:
        assert self._master is not None
        try:
            chunk = os.read(self._master, 4096)
        except OSError:  # the terminal closes when linphonec exits
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self._master)
        self._output += chunk
        self._changed.set()

    async def wait_for(self, text: str, timeout: float, start: int = 0) -> None:
        async def seen() -> None:
            while text not in self.output[start:]:
                assert self.process is not None
                if self.process.returncode is not None:
                    raise AssertionError(f"linphonec exited before {text!r}:\n{self.output}")
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.5)

        try:
            await asyncio.wait_for(seen(), timeout)
        except TimeoutError:
            raise AssertionError(f"linphonec: no {text!r} in {timeout} s:\n{self.output}") from None

    async def command(self, line: str) -> None:
        assert self._master is not None
        mark = len(self.output)
        os.write(self._master, line.encode() + b"\n")
        await self.wait_for("linphonec>", 5.0, mark)

    async def dial(self, uri: str, timeout: float = 10.0) -> None:
        """Call `uri` and wait until linphone reports the media streams running."""
        mark = len(self.output)
        await self.command(f"call {uri}")
        await self.wait_for("Media streams established", timeout, mark)

    async def hangup(self, timeout: float = 5.0) -> None:
        mark = len(self.output)
        await self.command("terminate")
        await self.wait_for("ended", timeout, mark)

    async def stop(self, timeout: float = 5.0) -> None:
        """Quit; terminate, then kill, if linphonec does not exit in time."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(OSError, AssertionError):
                assert self._master is not None
                os.write(self._master, b"quit\n")
            for signal_it in (lambda: None, process.terminate, process.kill):
                with contextlib.suppress(ProcessLookupError):
                    signal_it()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), timeout)
                    break
        if self._master is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._master)
                os.close(self._master)
            self._master = None

    def heard(self) -> tuple[np.ndarray, int]:
        """What linphone decoded during its call: mono samples and their rate."""
        assert self.process is not None and self.process.returncode is not None, "stop() first"
        with wave.open(str(self.record_file)) as wav:
            assert wav.getsampwidth() == 2, self.record_file
            channels, rate = wav.getnchannels(), wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        if channels == 2:
            samples = samples.reshape(-1, 2).mean(axis=1)
        return samples.astype(np.int16), rate
