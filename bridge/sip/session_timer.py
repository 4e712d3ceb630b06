"""RFC 4028 session timers, sans-I/O: what the headers say, what we answer, when to act.

A dialog with a session timer is refreshed by a re-INVITE or UPDATE every `interval` seconds by
the side named the refresher. The bridge refreshes at half the interval when it is the
refresher; when the peer is, a session not refreshed by `interval - min(32, interval / 3)`
seconds is over and the bridge sends BYE (§10). The UA core owns the clock-free state below and
asks `due(now)` from its timer; this module never reads a clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipmessage import Request, Response

from bridge.sip.message import SipError

ABSOLUTE_MIN_SE = 90  # RFC 4028 §4: no interval may be below 90 seconds
_DELTA = re.compile(r"^\s*(\d{1,10})\s*(?:;(.*))?$", re.S)


@dataclass(frozen=True)
class SessionTimerConfig:
    """What the bridge asks for as a caller and accepts as a callee (seconds)."""

    session_expires: int = 1800
    min_se: int = ABSOLUTE_MIN_SE


@dataclass(frozen=True)
class SessionExpires:
    """A parsed Session-Expires: the interval and who refreshes ("uac", "uas" or None)."""

    interval: int
    refresher: str | None


def parse_session_expires(message: Request | Response) -> SessionExpires | None:
    """The Session-Expires header (compact form `x` included); a malformed one is a 400."""
    value = message.headers.get("Session-Expires") or message.headers.get("x")
    if value is None:
        return None
    match = _DELTA.match(value)
    if match is None:
        raise SipError(400, "Malformed Session-Expires")
    refresher = None
    for param in (match.group(2) or "").split(";"):
        name, _, param_value = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = param_value.strip().lower()
            if refresher not in ("uac", "uas"):
                raise SipError(400, "Session-Expires refresher must be uac or uas")
    return SessionExpires(int(match.group(1)), refresher)


def parse_min_se(message: Request | Response) -> int | None:
    value = message.headers.get("Min-SE")
    if value is None:
        return None
    match = _DELTA.match(value)
    if match is None:
        raise SipError(400, "Malformed Min-SE")
    return int(match.group(1))


def supports_timer(message: Request | Response) -> bool:
    return "timer" in _tokens(message, "Supported", "k") | _tokens(message, "Require", "")


def _tokens(message: Request | Response, name: str, compact: str) -> set[str]:
    values = message.headers.getlist(name) + (message.headers.getlist(compact) if compact else [])
    return {token.strip().lower() for value in values for token in value.split(",")}


def uas_negotiate(
    request: Request, config: SessionTimerConfig, running: SessionTimer | None = None
) -> SessionExpires | None:
    """The session timer a UAS answers an INVITE or UPDATE with (§9), or None for no timer.

    Raises SipError 422 with our Min-SE when the asked interval is below it. The interval asked
    for is kept, lowered to our `session_expires` when it is longer but never below the
    request's Min-SE. Without a refresher in the request the side supporting timers refreshes:
    the caller when it says `Supported: timer`, else the bridge. A refresh without
    Session-Expires in a dialog whose timer runs keeps the timer, the bridge refreshing (§9
    lets the UAS insert it): a dead peer is still noticed."""
    asked = parse_session_expires(request)
    if asked is None:
        return SessionExpires(running.interval, "uas") if running is not None else None
    if asked.interval < config.min_se:
        raise SipError(422, "Session Interval Too Small", (("Min-SE", str(config.min_se)),))
    floor = max(parse_min_se(request) or ABSOLUTE_MIN_SE, config.min_se)
    interval = max(min(asked.interval, config.session_expires), floor)
    caller_supports = supports_timer(request)
    refresher = asked.refresher or ("uac" if caller_supports else "uas")
    if not caller_supports:
        refresher = "uas"  # only we can refresh: the caller does not know the extension
    return SessionExpires(interval, refresher)


def uac_outcome(response: Response) -> SessionExpires | None:
    """The session timer our INVITE or refresh got from its 2xx (§7.2): its Session-Expires,
    the refresher defaulting to us (uac) when the answer names none."""
    answered = parse_session_expires(response)
    if answered is None:
        return None
    return SessionExpires(answered.interval, answered.refresher or "uac")


def session_expires_header(timer: SessionExpires) -> tuple[str, str]:
    refresher = f";refresher={timer.refresher}" if timer.refresher else ""
    return ("Session-Expires", f"{max(timer.interval, ABSOLUTE_MIN_SE)}{refresher}")


@dataclass
class SessionTimer:
    """One dialog's running session timer. `we_refresh` when our role is the refresher."""

    interval: int
    we_refresh: bool
    refreshed_at: float
    refreshing: bool = False  # our refresh is in flight

    @property
    def deadline(self) -> float:
        if self.we_refresh:
            return self.refreshed_at + self.interval / 2
        return self.refreshed_at + self.interval - min(32.0, self.interval / 3)


def start(negotiated: SessionExpires, our_role: str, now: float) -> SessionTimer:
    return SessionTimer(negotiated.interval, negotiated.refresher == our_role, now)
