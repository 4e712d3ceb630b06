"""Hoiio room ids live in each application's own name space ("Conference rooms are unique to
each application and cannot be accessed by other applications"): another application's room
name must be indistinguishable from a free one.

The bridge has one name space (names are what callers dial), so an application's room id is
used as the bridge room's name when that name is free for it, and otherwise as its private
name `h<6 hex of the application>-<id>`. Hoiio ids cannot contain '-' (nor can the native API's
names), so no id an application can ask for is another's private name, and the id is read back
from the private name in every answer (`public_id`). Either way the answer is the same."""

from __future__ import annotations

import hashlib
import re

from control.store.records import Tenant

_PRIVATE = re.compile(r"^h[0-9a-f]{6}-(.+)$")


def private_name(tenant: Tenant, room_id: str) -> str:
    """The bridge room holding `tenant`'s room `room_id` when the plain name is not its own."""
    return f"h{hashlib.sha256(tenant.id.encode()).hexdigest()[:6]}-{room_id}"


def public_id(name: str) -> str:
    """The room id an application knows for the bridge room `name`."""
    match = _PRIVATE.match(name)
    return match.group(1) if match else name
