"""The dashboard: an index for messages per hour and day, and each gateway's signal and
battery over time.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from simgate.store.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index("ix_messages_created_at", "messages", ["created_at"])
    op.create_table(
        "gateway_samples",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("signal", sa.SmallInteger(), nullable=True),
        sa.Column("battery", sa.SmallInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
    )
    op.create_index("ix_gateway_samples_gateway_at", "gateway_samples", ["gateway", "at"])


def downgrade() -> None:
    op.drop_index("ix_gateway_samples_gateway_at", table_name="gateway_samples")
    op.drop_table("gateway_samples")
    op.drop_index("ix_messages_created_at", table_name="messages")
