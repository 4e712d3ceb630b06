"""callForwardingNoAnswer's number of rings.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("call_forwarding") as batch:
        batch.add_column(sa.Column("rings", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call_forwarding") as batch:
        batch.drop_column("rings")
