"""The Teaming sign-in: OAuth client applications, the access tokens they were issued and the
authorization codes users granted.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def utc(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def ident(name: str = "id") -> sa.Column:
    return sa.Column(name, sa.String(32), nullable=False)


def fk(column: str, table: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [target], name=f"fk_{table}_{column}_{target.split('.')[0]}", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        ident(),
        ident("tenant_id"),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("hourly_quota", sa.Integer(), nullable=False),
        sa.Column("token_lifetime_s", sa.Integer(), nullable=False),
        utc("created_at"),
        fk("tenant_id", "oauth_clients", "tenants.id"),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_clients"),
    )
    op.create_index("ix_oauth_clients_tenant_id", "oauth_clients", ["tenant_id"])

    op.create_table(
        "oauth_tokens",
        ident(),
        ident("client_id"),
        ident("tenant_id"),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        utc("issued_at"),
        utc("expires_at"),
        fk("client_id", "oauth_tokens", "oauth_clients.id"),
        fk("tenant_id", "oauth_tokens", "tenants.id"),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_tokens"),
    )
    op.create_index("ix_oauth_tokens_tenant_id", "oauth_tokens", ["tenant_id"])
    op.create_index("ix_oauth_tokens_token_hash", "oauth_tokens", ["token_hash"], unique=True)
    op.create_index(
        "ix_oauth_tokens_client_id_issued_at", "oauth_tokens", ["client_id", "issued_at"]
    )

    op.create_table(
        "oauth_codes",
        ident(),
        ident("client_id"),
        ident("tenant_id"),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        utc("expires_at"),
        fk("client_id", "oauth_codes", "oauth_clients.id"),
        fk("tenant_id", "oauth_codes", "tenants.id"),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_codes"),
    )
    op.create_index("ix_oauth_codes_client_id", "oauth_codes", ["client_id"])
    op.create_index("ix_oauth_codes_code_hash", "oauth_codes", ["code_hash"], unique=True)


def downgrade() -> None:
    op.drop_table("oauth_codes")
    op.drop_table("oauth_tokens")
    op.drop_table("oauth_clients")
