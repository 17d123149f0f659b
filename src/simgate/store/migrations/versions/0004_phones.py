"""Android phone gateways (seed 003): keys, device and SIM details, presence; enrollment
tokens; the SIM slot of messages and the key that stores a phone's retried SMS once; and
the events table (gateway.online, gateway.offline, …).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from simgate.store.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("gateways") as batch:
        batch.add_column(
            sa.Column("label", sa.String(length=128), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("device_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("key_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("key_prefix", sa.String(length=24), nullable=True))
        batch.add_column(sa.Column("device_info", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("app_version", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("sims", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("reported", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("last_heartbeat_at", UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("presence", sa.String(length=8), nullable=False, server_default="offline")
        )
        batch.create_unique_constraint(op.f("uq_gateways_device_id"), ["device_id"])
        batch.create_unique_constraint(op.f("uq_gateways_key_hash"), ["key_hash"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("sim_slot", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("inbound_key", sa.String(length=64), nullable=True))
        batch.create_unique_constraint(op.f("uq_messages_inbound_key"), ["inbound_key"])
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=24), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("gateway", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrollment_tokens_token_hash")),
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_type"), "events", ["type"], unique=False)
    op.create_index(op.f("ix_events_created_at"), "events", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_events_created_at"), table_name="events")
    op.drop_index(op.f("ix_events_type"), table_name="events")
    op.drop_table("events")
    op.drop_table("enrollment_tokens")
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint(op.f("uq_messages_inbound_key"), type_="unique")
        batch.drop_column("inbound_key")
        batch.drop_column("sim_slot")
    with op.batch_alter_table("gateways") as batch:
        batch.drop_constraint(op.f("uq_gateways_key_hash"), type_="unique")
        batch.drop_constraint(op.f("uq_gateways_device_id"), type_="unique")
        for column in (
            "presence",
            "last_heartbeat_at",
            "reported",
            "sims",
            "app_version",
            "device_info",
            "key_prefix",
            "key_hash",
            "device_id",
            "label",
        ):
            batch.drop_column(column)
