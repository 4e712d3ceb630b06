"""Call-forwarding services of applications (Teaming's `services/{service}`): one row per
application and service, replaced whole by each PUT."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from .base import StoreBase
from .errors import NotFound
from .models import CallForwardingRow, TenantRow
from .records import ForwardingRule


def rule_record(row: CallForwardingRow) -> ForwardingRule:
    return ForwardingRule(
        row.tenant_id, row.service, row.active, row.forward_to, row.ring_splash, row.rings
    )


class ForwardingQueries(StoreBase):
    async def all_rules(self) -> list[ForwardingRule]:
        async with self._session() as session:
            rows = (await session.scalars(select(CallForwardingRow))).all()
        return [rule_record(row) for row in rows]

    async def put_rule(self, rule: ForwardingRule, now: datetime) -> None:
        async with self._session() as session, session.begin():
            if await session.get(TenantRow, rule.tenant_id) is None:
                raise NotFound(f"tenant {rule.tenant_id}")
            row = await session.get(CallForwardingRow, (rule.tenant_id, rule.service))
            if row is None:
                row = CallForwardingRow(tenant_id=rule.tenant_id, service=rule.service)
                session.add(row)
            row.active, row.forward_to = rule.active, rule.forward_to
            row.ring_splash, row.updated_at, row.rings = rule.ring_splash, now, rule.rings
