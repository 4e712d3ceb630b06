"""SIP over TLS at the transport: bad input on the TLS port never takes it down, an OPTIONS over
TLS is answered on its own connection (its TLS Via echoed), a server we call
whose certificate is not trusted is reported unreachable at once, and bad TLS files stop
`confbridge` with a message naming them."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bridge.net.sip_transport import SipTransports
from bridge.net.tls import client_context, server_context
from bridge.server import BridgeServer
from bridge.sip.transaction import Outgoing, Peer
from tests.integration.harness import LOOPBACK, loopback_config
from tests.integration.tls_certs import TestPki, make_pki

pytestmark = pytest.mark.integration


def options(port: int) -> bytes:
    branch = f"z9hG4bK{uuid.uuid4().hex}"
    return (
        f"OPTIONS sip:{LOOPBACK}:{port};transport=tls SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {LOOPBACK}:5999;branch={branch}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:t@{LOOPBACK}>;tag=1\r\nTo: <sip:{LOOPBACK}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\n"
        f"Contact: <sip:t@{LOOPBACK}:5999;transport=tls>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def test_garbage_then_a_real_tls_client(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    sip = {"tls_port": 0, "tls_cert": str(pki.cert), "tls_key": str(pki.key)}
    bridge = await BridgeServer(loopback_config(sip=sip)).start()
    port = bridge.transports.tls_port
    try:
        # Plain text where a TLS handshake belongs, then a handshake cut short.
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(options(port))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 15) == b""  # closed on us
        writer.close()
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(b"\x16\x03\x01\x00\xff" + b"\x01" * 20)
        writer.close()
        # A client that does not trust the bridge gives up; the listener stays up.
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection(LOOPBACK, port, ssl=ssl.create_default_context())
        trusting = client_context(str(pki.ca), verify=True)
        reader, writer = await asyncio.open_connection(
            LOOPBACK, port, ssl=trusting, server_hostname=LOOPBACK
        )
        writer.write(options(port))
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
        writer.close()
        assert head.startswith("SIP/2.0 200"), head
        assert f"SIP/2.0/TLS {LOOPBACK}:5999" in head
    finally:
        await bridge.stop()


async def test_a_server_with_an_untrusted_certificate_is_unreachable_at_once(
    tmp_path: Path,
) -> None:
    ours, theirs = make_pki(tmp_path / "ours"), make_pki(tmp_path / "theirs")
    accepted: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(
        serve, LOOPBACK, 0, ssl=server_context(str(theirs.cert), str(theirs.key))
    )
    port = server.sockets[0].getsockname()[1]
    unreachable: list[Peer] = []
    transports = SipTransports(lambda data, peer: None, 65535)
    transports.tls_client = client_context(str(ours.ca), verify=True)
    transports.on_unreachable = unreachable.append
    try:
        peer = Peer(LOOPBACK, port, "tls")
        transports.send(Outgoing(b"INVITE 1\r\n\r\n", peer))
        transports.send(Outgoing(b"INVITE 2\r\n\r\n", peer))  # queued behind the handshake
        for _ in range(100):
            if unreachable:
                break
            await asyncio.sleep(0.05)
        assert unreachable == [peer]
        assert transports.send_errors == 2 and not any(accepted)
    finally:
        transports.close()
        server.close()


def confbridge(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control.confbridge", "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("sip", "message"),
    [
        ('tls_cert = "{missing}"\ntls_key = "{key}"', "no such file"),
        ('tls_cert = "{key}"\ntls_key = "{key}"', "cannot use"),
        ('tls_cert = "{cert}"', "give tls_cert and tls_key together"),
        ('tls_ca = "{key}"', "sip.tls_ca: cannot read"),
    ],
)
def test_bad_tls_files_stop_confbridge_naming_them(tmp_path: Path, sip: str, message: str) -> None:
    pki: TestPki = make_pki(tmp_path / "pki")
    names = {"missing": tmp_path / "nope.pem", "key": pki.key, "cert": pki.cert}
    config = tmp_path / "bridge.toml"
    config.write_text("[sip]\n" + sip.format(**names) + "\n")
    result = confbridge(config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
