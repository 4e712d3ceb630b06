"""Issue 15, item 4: with `sip.allow_guests = false` only [[peer]] networks and digest users
call in. A trunk's address gets straight through; an unknown source gets 401 with SHA-256 and
MD5 challenges; SIPp proving alice's credentials (it answers the MD5 challenge) joins; a wrong
password gets 403; a guest-friendly bridge is unchanged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bridge.config import PeerDefinition
from bridge.server import BridgeServer
from bridge.tools.phone import Phone
from tests.integration.harness import LOOPBACK, SCENARIOS, loopback_config, run_sipp

pytestmark = pytest.mark.integration

PEERS = (
    PeerDefinition("office", networks=("127.0.0.2/32",)),
    PeerDefinition("alice", username="alice", password="wonderland-7"),
)


async def start(
    allow_guests: bool, algorithms: tuple[str, ...] = ("SHA-256", "MD5")
) -> BridgeServer:
    config = loopback_config()
    sip = dataclasses.replace(config.sip, allow_guests=allow_guests, digest_algorithms=algorithms)
    return await BridgeServer(dataclasses.replace(config, sip=sip, peer=PEERS)).start()


async def sipp_digest(bridge: BridgeServer, tmp_path: Path, password: str) -> tuple[int, int]:
    workdir = tmp_path / f"sipp-{password}"
    workdir.mkdir()
    args = ["-sf", str(SCENARIOS / "uac_digest.xml"), "-s", "members", "-m", "1",
            "-au", "alice", "-ap", password]  # fmt: skip
    result = await run_sipp(bridge.transports.udp_port, args, workdir, timeout=30)
    assert result.successful + result.failed == 1, result.stdout[-300:] + result.stderr[-1500:]
    return result.successful, result.failed


async def test_only_peers_and_digest_users_call_in(tmp_path: Path) -> None:
    bridge = await start(allow_guests=False)
    port = bridge.transports.udp_port
    trunk = Phone(LOOPBACK, port, "members", user="+15550100", local_host="127.0.0.2")
    stranger = Phone(LOOPBACK, port, "members", user="+15550199", local_host="127.0.0.3")
    try:
        assert await trunk.call() == 200  # the office's network
        assert await stranger.call() == 401
        assert stranger.last_final is not None
        challenges = stranger.last_final.headers.getlist("WWW-Authenticate")
        assert [c.split("algorithm=")[1].split(",")[0] for c in challenges] == ["SHA-256", "MD5"]
        assert all(f'realm="{LOOPBACK}"' in c and 'qop="auth"' in c for c in challenges)
    finally:
        await trunk.hangup()
        for phone in (trunk, stranger):
            await phone.close()
        await bridge.stop()


async def test_a_digest_user_joins_and_a_wrong_password_is_refused(tmp_path: Path) -> None:
    """SIPp 3.6 answers only the first challenge and only MD5: MD5 offered first here."""
    bridge = await start(allow_guests=False, algorithms=("MD5", "SHA-256"))
    try:
        assert await sipp_digest(bridge, tmp_path, "wonderland-7") == (1, 0)
        assert await sipp_digest(bridge, tmp_path, "wrong-password") == (0, 1)
    finally:
        await bridge.stop()


async def test_guests_are_welcome_by_default(tmp_path: Path) -> None:
    bridge = await start(allow_guests=True)
    guest = Phone(LOOPBACK, bridge.transports.udp_port, "open", local_host="127.0.0.3")
    try:
        assert await guest.call() == 200
    finally:
        await guest.hangup()
        await guest.close()
        await bridge.stop()
