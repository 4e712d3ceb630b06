"""Aculab's `divert` (seed 004) end to end: a caller before a reservation's start is bounced by
a SIP redirect (302) to the divert target, and following the redirect works. A divert naming a
service (not a SIP URI) leads back to the bridge, which answers it with the announcement the
document implies ("call back later") and hangs up; a SIP URI target is reached as it is (a SIPp
callee here); without a divert, early callers are busied (486), as the document says."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest

from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    LOOPBACK,
    FakeClock,
    eventually,
    free_port,
    sipp_callee,
)
from tests.integration.test_compat_aculab import app_token, http, listing, reserve, start

pytestmark = pytest.mark.integration

CONTACT = re.compile(r"<sip:([^@>]+)@([0-9.]+):([0-9]+)>")


def contact_of(phone: Phone) -> tuple[str, str, int]:
    assert phone.last_final is not None and phone.last_final.code == 302
    found = CONTACT.search(phone.last_final.headers.get("Contact") or "")
    assert found, phone.last_final
    return found.group(1), found.group(2), int(found.group(3))


async def test_early_callers_are_redirected_and_the_redirect_works(tmp_path: Path) -> None:
    clock = FakeClock()
    runtime: Runtime = await start(tmp_path, clock)
    sipp_port = free_port()
    callee = await sipp_callee(tmp_path, sipp_port, 1)
    port = runtime.bridge.transports.udp_port
    phones: list[Phone] = []

    def dial(room: str, host: str = LOOPBACK, at: int = port) -> Phone:
        phone = Phone(host, at, room, tone_hz=440.0, user="+4930999")
        phones.append(phone)
        return phone

    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))
            for name, divert in (
                ("Board", "EarlyNews"),
                ("Sales", f"sip:desk@{LOOPBACK}:{sipp_port}"),
                ("Plain", None),
            ):
                given = {"divert": divert} if divert else {}
                assert (await reserve(client, auth, clock, name, **given)).status_code == 200
            entries = await listing(client, auth)
            assert entries["Board"]["divert"] == "EarlyNews" and "divert" not in entries["Plain"]

            # a service name: redirected to the bridge, which says "call back later"
            early = dial("Board")
            assert await early.call() == 302
            user, host, at = contact_of(early)
            assert (user, host, at) == ("EarlyNews", LOOPBACK, port)
            diverted = dial(user, host, at)
            assert await diverted.call() == 200
            await eventually(lambda: diverted.ended_by_bridge, timeout=15)
            heard = diverted.audio()
            assert len(heard) > 8000 * 3  # the announcement is about five seconds
            assert float(np.sqrt(np.mean(heard.astype(np.float64) ** 2))) > 300  # speech
            assert "EarlyNews" not in (await listing(client, auth))  # no room was made

            # a SIP URI: reached as it is
            early_sales = dial("Sales")
            assert await early_sales.call() == 302
            user, host, at = contact_of(early_sales)
            assert (user, host, at) == ("desk", LOOPBACK, sipp_port)
            reached = dial(user, host, at)
            assert await reached.call() == 200
            await reached.hangup()
            result = await asyncio.wait_for(callee, 30)
            assert result.successful == 1, result.stderr[-800:]

            # no divert: busy
            assert await dial("Plain").call() == 486
    finally:
        for phone in phones:
            await phone.close()
        if not callee.done():
            callee.cancel()
        await runtime.stop()
