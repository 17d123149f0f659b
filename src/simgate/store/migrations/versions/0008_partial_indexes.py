"""The queue's indexes leave out the rows they never find, and PostgreSQL vacuums the
messages table sooner.

Three of the messages indexes are searched only for rows where one column is set: a
delivery report by the gateway's reference, the lease sweep by lease expiry, the ttl
sweep by expiry. A queued message has none of the three, so on PostgreSQL and SQLite
those indexes become partial (WHERE the column IS NOT NULL): a queued message, and
every change of its status while the column is empty, writes three index entries fewer.
Every query that uses them compares the column, which implies the predicate, so the
plans do not change. MariaDB has no partial indexes and keeps the full ones.

Each change of a message's status leaves a dead row version in PostgreSQL. With the
default scale factor (20 % of the table), a table of millions of delivered messages
collects hundreds of thousands before autovacuum comes, and the claim's index scan
reads through all of them. messages is vacuumed at 1 %.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# (index, columns, the column that must be set)
PARTIAL = (
    ("ix_messages_expiry", ["status", "expires_at"], "expires_at"),
    ("ix_messages_lease", ["status", "lease_expires_at"], "lease_expires_at"),
    ("ix_messages_gateway_ref", ["gateway", "gateway_ref"], "gateway_ref"),
)


def _has_partial_indexes() -> bool:
    return op.get_bind().dialect.name in ("postgresql", "sqlite")


def upgrade() -> None:
    if _has_partial_indexes():
        for name, columns, column in PARTIAL:
            where = sa.text(f"{column} IS NOT NULL")
            op.drop_index(name, table_name="messages")
            op.create_index(name, "messages", columns, postgresql_where=where, sqlite_where=where)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE messages SET (autovacuum_vacuum_scale_factor = 0.01,"
            " autovacuum_analyze_scale_factor = 0.02)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE messages RESET (autovacuum_vacuum_scale_factor,"
            " autovacuum_analyze_scale_factor)"
        )
    if _has_partial_indexes():
        for name, columns, _column in PARTIAL:
            op.drop_index(name, table_name="messages")
            op.create_index(name, "messages", columns)
