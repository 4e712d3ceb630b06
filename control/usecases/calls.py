"""Calls out (dial-out): a conference calls one number or a list, dialled one after another;
each call's record by its reference. Placing and sequencing is `control.dialout`'s job; this
is the rule book every API shares (the conference must be running, destinations routable,
the application under its limit of calls at once)."""

from __future__ import annotations

from control.callout import CallOut, NotifyFormat
from control.dialout import LimitError, RouteError
from control.plane import ControlPlane
from control.schedule import ConferenceState
from control.store.records import Tenant
from control.usecases import conferences
from control.usecases.errors import Conflict, Invalid, LimitExceeded, NotFound

NOT_CALLING = (ConferenceState.RESERVED, ConferenceState.COMPLETED)


async def place(
    plane: ControlPlane,
    tenant: Tenant,
    room: str,
    dests: list[str],
    *,
    caller_id: str | None = None,
    private: bool = False,
    confirm: bool = False,
    tag: str = "",
    notify_url: str | None = None,
    notify_format: NotifyFormat | None = None,
    max_duration_s: int | None = None,
) -> list[CallOut]:
    """Queue calls from the tenant's conference `room` to `dests`, in order. The caller id is
    `caller_id`, else the configured one, else the room's name; `private` calls anonymously.
    Nothing is dialled unless every destination is routable (Invalid "dest") and the tenant
    stays under its limit (LimitExceeded). `max_duration_s` shortens the calls' maximum
    duration (never beyond `dialout.max_call_s`)."""
    conference = await conferences.find(plane, tenant, room)
    if conference.state in NOT_CALLING:
        state = conference.state.lower()
        raise Conflict(f"conference {room!r} is {state}: no calls out")
    if not dests:
        raise Invalid("dest", "give at least one destination")
    if caller_id and not private:  # "" or None: the default
        check_caller_id(plane, tenant, caller_id)
    try:
        return await plane.dialouts.start_request(
            tenant.id,
            room,
            dests,
            caller_id=caller_id or plane.config.dialout.caller_id or room,
            private=private,
            confirm=confirm,
            tag=tag,
            notify_url=notify_url,
            notify_format=notify_format,
            max_duration_s=max_duration_s,
        )
    except RouteError as exc:
        field, _, problem = str(exc).partition(": ")
        raise Invalid(field, problem) from None
    except LimitError as exc:
        raise LimitExceeded(str(exc)) from None


def owned_numbers(plane: ControlPlane, tenant: Tenant) -> set[str]:
    """The numbers the configuration gives the tenant's application."""
    apps = plane.config.application
    return {n for app in apps if app.name == tenant.name for n in app.caller_ids}


def check_caller_id(plane: ControlPlane, tenant: Tenant, caller_id: str) -> None:
    """A caller id a request names must be the application's own (`dialout.caller_id_policy`);
    the default (none named) and "private" always may be used."""
    if plane.config.dialout.caller_id_policy == "any":
        return
    if caller_id not in owned_numbers(plane, tenant):
        raise Invalid(
            "caller_id", f"{caller_id!r} is not a number of this application (its caller_ids)"
        )


async def into(plane: ControlPlane, tenant: Tenant, room: str) -> list[CallOut]:
    """The tenant's calls out of its conference `room` since the bridge started."""
    await conferences.find(plane, tenant, room)
    return [
        c for c in plane.dialouts.records.values() if c.room == room and c.tenant_id == tenant.id
    ]


def find(plane: ControlPlane, tenant: Tenant, ref: str) -> CallOut:
    call = plane.dialouts.records.get(ref)
    if call is None or call.tenant_id != tenant.id:
        raise NotFound(f"call {ref!r}")
    return call


def cancel(plane: ControlPlane, tenant: Tenant, ref: str) -> None:
    """Stop a call out of the tenant's that is not in its room yet (queued, ringing, or
    waiting for the callee's #); Conflict when it is answered or over."""
    call = find(plane, tenant, ref)
    if not plane.dialouts.cancel(call.ref):
        raise Conflict(f"callId: call {ref!r} is answered or over")


def active_count(plane: ControlPlane, tenant: Tenant) -> int:
    """Calls of the tenant queued or up now (what the limit counts)."""
    return plane.dialouts.active_count(tenant.id)


def load(plane: ControlPlane, room: str) -> int:
    """People in the room plus calls to it still being placed."""
    return len(plane.bridge.participants(room)) + plane.dialouts.pending_into(room)
