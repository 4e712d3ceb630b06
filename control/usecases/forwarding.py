"""Reading and setting an application's call-forwarding services (`control.forwarding` says
what they do to incoming calls)."""

from __future__ import annotations

import re

from control.forwarding import FORWARDS_NOWHERE, NO_ANSWER, SERVICES
from control.plane import ControlPlane
from control.store.records import ForwardingRule, Tenant
from control.usecases.errors import Invalid, NotFound

NUMBER = re.compile(r"^\+?[0-9]{2,20}$")
SIP_URI = re.compile(r"^sips?:[^\s<>@]+@[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def check_service(service: str) -> str:
    if service not in SERVICES:
        raise NotFound(f"service {service!r}")
    return service


def get(plane: ControlPlane, tenant: Tenant, service: str) -> ForwardingRule:
    return plane.forwarding.rule(tenant.id, check_service(service))


async def put(
    plane: ControlPlane,
    tenant: Tenant,
    service: str,
    *,
    active: bool,
    forward_to: str | None,
    ring_splash: bool,
    rings: int | None = None,
) -> ForwardingRule:
    """Replace one service's settings; the next incoming call follows them."""
    check_service(service)
    field = "forwardToPhoneNumber"
    if service in FORWARDS_NOWHERE:
        if forward_to is not None:
            raise Invalid(field, f"{service} forwards nowhere")
    elif forward_to is not None:
        if not (NUMBER.match(forward_to) or SIP_URI.match(forward_to)):
            raise Invalid(field, "must be a phone number (digits, optional +) or a SIP URI")
        if NUMBER.match(forward_to) and not plane.config.dialout.trunk:
            raise Invalid(field, "numbers need a trunk (dialout.trunk) and none is configured")
    elif active:
        raise Invalid(field, "required to activate forwarding")
    if rings is not None and service != NO_ANSWER:
        raise Invalid("numberOfRings", "only callForwardingNoAnswer rings")
    rule = ForwardingRule(tenant.id, service, active, forward_to, ring_splash, rings)
    await plane.store.forwarding.put_rule(rule, plane.clock())
    plane.forwarding.put(rule)
    return rule
