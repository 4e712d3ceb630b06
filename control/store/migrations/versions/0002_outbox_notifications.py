"""Outbox rows for one-off notifications (a dial-out's notify_url): a callback URL of their own
and no subscription.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("callback_url", sa.Text(), nullable=True))
        batch.alter_column("subscription_id", existing_type=sa.String(32), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE subscription_id IS NULL")
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("subscription_id", existing_type=sa.String(32), nullable=False)
        batch.drop_column("callback_url")
