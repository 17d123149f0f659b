"""Gateway placement: where each gateway may run (any node, a host, one node), the nodes
that run, the number a gateway's SIM receives on, and who deactivated it.

Modems added before this stored ``config.node = "<hostname>:<port>"``, which pinned them to
one server process: those become host placements, so a server on another port (or after a
rename) starts them. Other ``node`` values were chosen by a person and stay node pins.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from simgate.domain.placement import PlaceKind, from_legacy_pin
from simgate.store.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_gateways = sa.table(
    "gateways",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("config", sa.JSON),
    sa.column("place_kind", sa.String),
    sa.column("place_host_name", sa.String),
    sa.column("place_node", sa.String),
)


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("host_id", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("stopped_at", UTCDateTime(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_nodes")),
    )
    op.create_index(op.f("ix_nodes_host_id"), "nodes", ["host_id"], unique=False)
    op.create_index(op.f("ix_nodes_last_seen_at"), "nodes", ["last_seen_at"], unique=False)
    with op.batch_alter_table("gateways") as batch:
        batch.add_column(
            sa.Column("place_kind", sa.String(length=8), nullable=False, server_default="any")
        )
        batch.add_column(sa.Column("place_host_id", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("place_host_name", sa.String(length=255), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("place_node", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("number", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("deactivated_by", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("deactivated_at", UTCDateTime(), nullable=True))

    conn = op.get_bind()
    rows = conn.execute(sa.select(_gateways.c.id, _gateways.c.kind, _gateways.c.config)).all()
    for id_, kind, config in rows:
        options = dict(config or {})
        pin = options.pop("node", None)
        placement = from_legacy_pin(kind, str(pin) if pin else None)
        conn.execute(
            sa.update(_gateways)
            .where(_gateways.c.id == id_)
            .values(
                config=options,
                place_kind=placement.kind.value,
                place_host_name=placement.host_name,
                place_node=placement.node,
            )
        )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(
            _gateways.c.id,
            _gateways.c.config,
            _gateways.c.place_kind,
            _gateways.c.place_host_name,
            _gateways.c.place_node,
        )
    ).all()
    for id_, config, kind, host_name, node in rows:
        options = dict(config or {})
        if kind == PlaceKind.NODE.value and node:
            options["node"] = node
        elif kind == PlaceKind.HOST.value and host_name:
            options["node"] = f"{host_name}:8000"  # what 'modem add' wrote by default
        conn.execute(sa.update(_gateways).where(_gateways.c.id == id_).values(config=options))
    with op.batch_alter_table("gateways") as batch:
        for column in (
            "deactivated_at",
            "deactivated_by",
            "number",
            "place_node",
            "place_host_name",
            "place_host_id",
            "place_kind",
        ):
            batch.drop_column(column)
    op.drop_index(op.f("ix_nodes_last_seen_at"), table_name="nodes")
    op.drop_index(op.f("ix_nodes_host_id"), table_name="nodes")
    op.drop_table("nodes")
