"""One-time passcodes: verifications (codes only as keyed hashes), their start limits per
phone, app and client address, and the redacted text of secret messages.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from simgate.store.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("body_redacted", sa.Text(), nullable=True))
    op.create_table(
        "otp_verifications",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("app_id", BigId, nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("length", sa.SmallInteger(), nullable=False),
        sa.Column("code_hashes", sa.JSON(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.SmallInteger(), nullable=False),
        sa.Column("sends", sa.SmallInteger(), nullable=False),
        sa.Column("max_sends", sa.SmallInteger(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("app_label", sa.String(length=64), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("message_ids", sa.JSON(), nullable=False),
        sa.Column("last_sent_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["apps.id"],
            name=op.f("fk_otp_verifications_app_id_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_otp_verifications")),
    )
    op.create_index(
        "ix_otp_verifications_lookup",
        "otp_verifications",
        ["app_id", "phone", "status"],
        unique=False,
    )
    op.create_index(
        "ix_otp_verifications_expiry", "otp_verifications", ["status", "expires_at"], unique=False
    )
    op.create_index(
        "ix_otp_verifications_created_at", "otp_verifications", ["created_at"], unique=False
    )
    op.create_table(
        "otp_limits",
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", "window_start", name=op.f("pk_otp_limits")),
    )


def downgrade() -> None:
    op.drop_table("otp_limits")
    op.drop_table("otp_verifications")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("body_redacted")
