"""Fixtures that start the real bridge in-process on loopback (free ports, private RTP range)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bridge.logs import configure_logging
from bridge.server import BridgeServer
from tests.integration.harness import loopback_config

configure_logging("warning")


@pytest.fixture
async def bridge() -> AsyncIterator[BridgeServer]:
    server = await BridgeServer(loopback_config()).start()
    try:
        yield server
    finally:
        await server.stop()
