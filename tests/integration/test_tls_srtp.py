"""Issue 15 check 4: SIP over TLS and SRTP (SDES) with real softphones.

baresip (TLS, `mediaenc=srtp-mand`, a 1700 Hz sine) and linphonec (TLS, SRTP mandatory, a
1000 Hz WAV) join one room on a bridge with `rtp.srtp = "mandatory"`; each must hear the other
(FFT of their recordings), and a tcpdump capture of the bridge's RTP ports decoded as plaintext
mu-law must show neither tone. The control run (SRTP off, plain RTP) shows the same decoder
finds the tones, so the check can fail. The bridge also calls a baresip UAS out over TLS+SRTP
(`rtp.srtp = "optional"`: a plain phone in the same room). Certificates come from a CA the test
makes; both phones verify the bridge's chain against it, and the bridge verifies baresip's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import socket
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bridge.config import ApplicationDefinition, Config
from bridge.media.tones import tone_levels
from bridge.server import BridgeServer
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.baresip import Baresip
from tests.integration.capture import Capture, plaintext_prominence
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    eventually,
    loopback_config,
    with_control,
)
from tests.integration.linphone import Linphone
from tests.integration.tls_certs import TestPki, make_pki

pytestmark = pytest.mark.integration

BARESIP_HZ, LINPHONE_HZ, PHONE_HZ = 1700, 1000, 440
HEARD_DB = -35.0
ABSENT_DB = -50.0
PLAIN_DB = 30.0  # a plaintext tone stands this far over the spectrum's median, or more
NOISE_DB = 15.0  # encrypted payloads decoded as mu-law: no bin stands out this far


def write_tone_wav(path: Path, freq_hz: float, seconds: float, rate: int = 8000) -> None:
    """A mono 16-bit WAV of a sine, for linphonec to play."""
    samples = 8000 * np.sin(2 * np.pi * freq_hz * np.arange(int(seconds * rate)) / rate)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def tls_config(pki: TestPki, srtp: str, **extra: Any) -> Config:
    sip = {"tls_port": 0, "tls_cert": str(pki.cert), "tls_key": str(pki.key), "tls_ca": str(pki.ca)}
    return loopback_config(sip=sip, rtp={"srtp": srtp, "codecs": ("PCMU",)}, **extra)


def tls_baresip(workdir: Path, pki: TestPki, **options: Any) -> Baresip:
    """baresip with TLS (its listener on its SIP port + 1 uses the test certificate too) and
    mandatory SRTP (SDES)."""
    return Baresip(
        workdir,
        tone_hz=BARESIP_HZ,
        codecs="pcmu",
        extra_config=(
            f"sip_certificate\t{pki.combined}\nsip_cafile\t{pki.ca}\nmodule\t\tsrtp.so\n"
        ),
        account_params=";mediaenc=srtp-mand" + options.pop("account_params", ""),
        **options,
    )


async def members(bridge: BridgeServer, room: str, count: int, timeout: float = 10.0) -> None:
    await eventually(lambda: len(bridge.control.participants(room)) == count, timeout)


def tls_uri(room: str, port: int) -> str:
    return f"sip:{room}@{LOOPBACK}:{port};transport=tls"


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return make_pki(tmp_path / "pki")


async def test_baresip_and_linphone_talk_over_tls_and_srtp_and_the_wire_shows_no_tone(
    pki: TestPki, tmp_path: Path
) -> None:
    config = tls_config(pki, "mandatory")
    bridge = await BridgeServer(config).start()
    tls_port, room = bridge.transports.tls_port, "secure"
    write_tone_wav(tmp_path / "linphone.wav", LINPHONE_HZ, 30.0)
    softphone = tls_baresip(tmp_path / "a", pki)
    linphone = Linphone(
        tmp_path / "b", source_file=tmp_path / "linphone.wav", codec="pcmu", tls_ca=pki.ca
    )
    plain = Phone(LOOPBACK, bridge.transports.udp_port, room, tone_hz=440.0, user="plain")
    try:
        # A plain RTP offer is refused, naming why.
        assert await plain.call() == 488
        await softphone.start()
        await linphone.start()
        phones = [softphone.rtp_ports, linphone.rtp_ports]
        capture = Capture(tmp_path / "rtp.pcap", phones)
        async with capture:
            await softphone.dial(tls_uri(room, tls_port))
            await linphone.dial(tls_uri(room, tls_port))
            await members(bridge, room, 2)
            assert "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)" in softphone.output
            views = bridge.control.participants(room)
            assert [(p.srtp, p.srtp_rejected) for p in views] == [(True, 0), (True, 0)]
            # Forged SRTP (random bytes after an RTP header) at baresip's leg: dropped, counted.
            port = re.search(r"receiving from 127\.0\.0\.1:(\d+)", softphone.output)
            assert port is not None, softphone.output
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger:
                for _ in range(5):
                    forged = bytes([0x80, 0]) + os.urandom(10) + os.urandom(170)
                    forger.sendto(forged, (LOOPBACK, int(port.group(1))))
            # (on a worker's shared RTP port a stranger's datagrams reach no call at all: they
            # are counted as from no call instead)
            await eventually(
                lambda: (stats := bridge.control.stats()).srtp_rejected + stats.rtp_unmatched == 5
            )
            await asyncio.sleep(3.0)
            await linphone.hangup()
            await softphone.hangup()
            await members(bridge, room, 0)
    finally:
        await softphone.stop()
        await linphone.stop()
        await bridge.stop()

    baresip_heard = tone_levels(
        softphone.heard()[-int(2.0 * 8000) : -int(0.3 * 8000)], [LINPHONE_HZ, BARESIP_HZ]
    )
    assert baresip_heard[LINPHONE_HZ] > HEARD_DB, ("baresip hears linphone", baresip_heard)
    assert baresip_heard[BARESIP_HZ] < ABSENT_DB, ("baresip hears itself", baresip_heard)
    samples, rate = linphone.heard()
    window = samples[int(1.0 * rate) : -int(0.5 * rate)]
    linphone_heard = tone_levels(window, [LINPHONE_HZ, BARESIP_HZ], rate)
    assert linphone_heard[BARESIP_HZ] > HEARD_DB, ("linphone hears baresip", linphone_heard)
    assert linphone_heard[LINPHONE_HZ] < ABSENT_DB, ("linphone hears itself", linphone_heard)

    flows = {flow: packets for flow, packets in capture.flows().items() if len(packets) > 50}
    assert len(flows) >= 4, f"expected both directions of both legs: {list(flows)}"
    for flow, packets in flows.items():
        for tone in (BARESIP_HZ, LINPHONE_HZ):
            prominence = plaintext_prominence(packets, tone)
            assert prominence < NOISE_DB, (f"{tone} Hz readable in plaintext", flow, prominence)


async def test_control_run_without_srtp_the_capture_shows_the_tones(tmp_path: Path) -> None:
    """The same decoder on plain RTP: it must find baresip's tone going in and the phone's
    coming back (else the check above proves nothing)."""
    config = loopback_config(rtp={"srtp": "off", "codecs": ("PCMU",)})
    bridge = await BridgeServer(config).start()
    port, room = bridge.transports.udp_port, "plain"
    softphone = Baresip(tmp_path, tone_hz=BARESIP_HZ, codecs="pcmu")
    phone = Phone(LOOPBACK, port, room, tone_hz=float(PHONE_HZ), user="phone")
    try:
        assert await phone.call() == 200
        await softphone.start()
        capture = Capture(tmp_path / "rtp.pcap", [softphone.rtp_ports])
        async with capture:
            await softphone.dial(f"sip:{room}@{LOOPBACK}:{port}")
            await members(bridge, room, 2)
            assert not any(p.srtp for p in bridge.control.participants(room))
            await asyncio.sleep(2.0)
            await softphone.hangup()
    finally:
        await softphone.stop()
        await phone.hangup()
        await bridge.stop()
    low, high = softphone.rtp_ports
    flows = capture.flows()
    sent = [p for (_, sport, _, _), p in flows.items() if low <= sport <= high]
    received = [p for (_, _, _, dport), p in flows.items() if low <= dport <= high]
    assert max(plaintext_prominence(p, BARESIP_HZ) for p in sent) > PLAIN_DB
    assert max(plaintext_prominence(p, PHONE_HZ) for p in received) > PLAIN_DB


async def test_the_bridge_calls_a_baresip_uas_over_tls_and_srtp(
    pki: TestPki, tmp_path: Path
) -> None:
    """Dial-out through the API to `sip:...;transport=tls`: the bridge verifies baresip's
    certificate with the test CA, offers RTP/SAVP (srtp optional + TLS), and the plain phone
    in the room and baresip hear each other. A TLS target nobody listens on fails cleanly."""
    config = with_control(tls_config(pki, "optional"), tmp_path / "data")
    acme = ApplicationDefinition("acme", token="acme-config-token-0123")
    runtime = await Runtime(dataclasses.replace(config, application=(acme,))).start()
    bridge = runtime.bridge
    room = "outbound"
    callee = tls_baresip(tmp_path / "callee", pki, account_params=";answermode=auto")
    phone = Phone(LOOPBACK, bridge.transports.udp_port, room, tone_hz=float(PHONE_HZ), user="p")
    loop = asyncio.get_running_loop()
    try:
        await callee.start()
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            reply = await client.post("/v1/admin/applications/acme/tokens", headers=admin)
            headers = {"Authorization": f"Bearer {reply.json()['token']}"}
            reply = await client.post("/v1/conferences", json={"name": room}, headers=headers)
            assert reply.status_code == 201, reply.text
            assert await phone.call() == 200
            dest = f"sip:softphone@{LOOPBACK}:{callee.sip_port + 1};transport=tls"
            nobody = f"sips:nobody@{LOOPBACK}:{callee.sip_port + 3}"
            reply = await client.post(
                f"/v1/conferences/{room}/calls", json={"dest": [dest, nobody]}, headers=headers
            )
            assert reply.status_code == 202, reply.text
            first, second = reply.json()["txn_refs"]
            await callee.wait_for("Call established", 15)
            await members(bridge, room, 2)
            assert "SRTP is Enabled" in callee.output
            joined = loop.time()
            await asyncio.sleep(2.5)
            heard = tone_levels(phone.audio(joined + 0.5, loop.time()), [BARESIP_HZ, PHONE_HZ])
            assert heard[BARESIP_HZ] > HEARD_DB, ("the phone hears baresip over SRTP", heard)
            await callee.hangup()

            async def status(ref: str) -> str:
                got = await client.get(f"/v1/dialouts/{ref}", headers=headers)
                return str(got.json()["status"])

            for _ in range(200):
                if await status(second) not in ("dialling", "ringing"):
                    break
                await asyncio.sleep(0.1)
            assert await status(first) == "answered"
            assert await status(second) == "failed"
    finally:
        await callee.stop()
        await phone.hangup()
        await runtime.stop()
    got = tone_levels(callee.heard()[-int(2.0 * 8000) : -int(0.3 * 8000)], [PHONE_HZ, BARESIP_HZ])
    assert got[PHONE_HZ] > HEARD_DB, ("baresip hears the plain phone", got)
    assert got[BARESIP_HZ] < ABSENT_DB, ("baresip hears itself", got)
