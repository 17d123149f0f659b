"""Gateways as configured in the database: create, list, (de)activate, and start on this
node the ones it owns. Each gateway runs on exactly one node: the one named in its config,
or else the first to claim it while its previous owner is silent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simgate.config import Settings
from simgate.drivers.base import Gateway
from simgate.drivers.fake import FakeConfig, FakeGateway
from simgate.drivers.modem import ModemConfig, ModemGateway
from simgate.errors import Conflict, Invalid, NotFound
from simgate.services import audit
from simgate.services.dispatcher import Dispatcher
from simgate.store.engine import describe_db_error
from simgate.store.models import Gateway as GatewayRow
from simgate.store.types import utcnow

log = logging.getLogger(__name__)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KINDS = ("fake", "modem")
HEARTBEAT = 10.0


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    name: str
    kind: str
    active: bool
    status: str
    status_detail: str
    node: str | None
    last_seen_at: datetime | None
    signal: int | None
    battery: int | None
    sent: int
    failed: int
    received: int
    rate_per_minute: int
    max_in_flight: int
    config: dict[str, Any]

    @classmethod
    def of(cls, row: GatewayRow, *, offline_after: float) -> GatewayInfo:
        status = row.status
        stale = row.last_seen_at is None or (
            utcnow() - row.last_seen_at > timedelta(seconds=offline_after)
        )
        if not row.is_active or (stale and status == "online"):
            status = "offline"
        return cls(
            row.name,
            row.kind,
            row.is_active,
            status,
            row.status_detail,
            row.node,
            row.last_seen_at,
            row.signal,
            row.battery,
            row.sent_count,
            row.failed_count,
            row.received_count,
            row.rate_per_minute,
            row.max_in_flight,
            dict(row.config or {}),
        )


def _check_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    node = config.get("node")
    if node is not None and not isinstance(node, str):
        raise Invalid("config.node: must be a node name", field="config.node")
    if kind == "fake":
        options = {k: v for k, v in config.items() if k != "node"}
        try:
            checked = FakeConfig.from_dict(options).as_dict()
        except ValueError as exc:
            raise Invalid(str(exc), field="config") from None
        return {**checked, **({"node": node} if node else {})}
    if kind == "modem":
        try:
            ModemConfig.from_dict(config)
        except (ValueError, TypeError) as exc:
            raise Invalid(str(exc), field="config") from None
    return config


async def create(
    session: AsyncSession,
    *,
    name: str,
    kind: str,
    config: dict[str, Any] | None = None,
    rate_per_minute: int = 0,
    max_in_flight: int = 1,
    actor: str,
) -> GatewayInfo:
    if not NAME_RE.match(name):
        raise Invalid(
            f"gateway name {name!r} is not valid: use 1-64 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit",
            field="name",
        )
    if kind not in KINDS:
        raise Invalid(f"kind {kind!r} is not supported; use {', '.join(KINDS)}", field="kind")
    if rate_per_minute < 0:
        raise Invalid("rate_per_minute: must be 0 (no limit) or more", field="rate_per_minute")
    if not 1 <= max_in_flight <= 100:
        raise Invalid("max_in_flight: must be 1-100", field="max_in_flight")
    checked = _check_config(kind, config or {})
    if await session.scalar(select(GatewayRow.id).where(GatewayRow.name == name)) is not None:
        raise Conflict(f"a gateway named {name!r} already exists", field="name")
    row = GatewayRow(
        name=name,
        kind=kind,
        is_active=True,
        config=checked,
        rate_per_minute=rate_per_minute,
        max_in_flight=max_in_flight,
        status="offline",
        status_detail="not started yet",
        sent_count=0,
        failed_count=0,
        received_count=0,
        created_at=utcnow(),
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a gateway named {name!r} already exists", field="name") from None
    audit.record(session, actor=actor, action="gateway.create", target=name, kind=kind)
    return GatewayInfo.of(row, offline_after=1.0)


async def list_all(session: AsyncSession, *, offline_after: float) -> list[GatewayInfo]:
    rows = await session.scalars(select(GatewayRow).order_by(GatewayRow.name))
    return [GatewayInfo.of(r, offline_after=offline_after) for r in rows]


async def set_active(session: AsyncSession, *, name: str, active: bool, actor: str) -> None:
    row = await session.scalar(select(GatewayRow).where(GatewayRow.name == name))
    if row is None:
        raise NotFound(f"no gateway named {name!r}", field="name")
    row.is_active = active
    audit.record(
        session,
        actor=actor,
        action="gateway.activate" if active else "gateway.deactivate",
        target=name,
    )


async def remove(session: AsyncSession, *, name: str, actor: str) -> None:
    row = await session.scalar(select(GatewayRow).where(GatewayRow.name == name))
    if row is None:
        raise NotFound(f"no gateway named {name!r}", field="name")
    await session.delete(row)
    audit.record(session, actor=actor, action="gateway.remove", target=name, kind=row.kind)


def build_driver(row: GatewayRow) -> Gateway:
    if row.kind == "modem":
        return ModemGateway(row.name, ModemConfig.from_dict(dict(row.config or {})))
    if row.kind == "fake":
        options = {k: v for k, v in (row.config or {}).items() if k != "node"}
        return FakeGateway(row.name, FakeConfig.from_dict(options), max_in_flight=row.max_in_flight)
    raise ValueError(f"no driver for gateway kind {row.kind!r}")


class GatewayManager:
    """Starts and stops this node's gateways as the database says, and keeps its claim on
    them fresh so that other nodes know they are in use."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        dispatcher: Dispatcher,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._dispatcher = dispatcher
        self.node = settings.node

    async def sync(self) -> None:
        """Claim and start the active gateways this node should run; stop the others."""
        now = utcnow()
        stale = now - timedelta(seconds=self._settings.gateway_offline_after)
        async with self._sessionmaker.begin() as session:
            rows = list(await session.scalars(select(GatewayRow).where(GatewayRow.kind.in_(KINDS))))
            mine: list[GatewayRow] = []
            for row in rows:
                wanted = (row.config or {}).get("node")
                if not row.is_active or (wanted and wanted != self.node):
                    continue
                cond = [GatewayRow.id == row.id]
                if not wanted:  # unpinned: take it only if nobody else holds it
                    cond.append(
                        or_(
                            GatewayRow.node.is_(None),
                            GatewayRow.node == self.node,
                            GatewayRow.last_seen_at.is_(None),
                            GatewayRow.last_seen_at < stale,
                        )
                    )
                values: dict[str, Any] = {"node": self.node, "last_seen_at": now}
                driver = self._dispatcher.gateways.get(row.name)
                signal = getattr(getattr(driver, "health", None), "signal_bars", None)
                if signal is not None:
                    values["signal"] = signal  # 0-5 bars, as phones report it
                result = await session.execute(update(GatewayRow).where(*cond).values(**values))
                if getattr(result, "rowcount", 0):
                    mine.append(row)
        running = set(self._dispatcher.gateways)
        wanted_names = {r.name for r in mine}
        for name in running - wanted_names:
            await self._dispatcher.remove_gateway(name)
        for row in mine:
            if row.name not in running:
                try:
                    driver = build_driver(row)
                except ValueError as exc:
                    log.error(
                        "cannot start gateway", extra={"gateway": row.name, "error": str(exc)}
                    )
                    continue
                await self._dispatcher.add_gateway(driver, rate_per_minute=row.rate_per_minute)

    async def run(self) -> None:
        while True:
            try:
                await self.sync()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("gateway sync failed", extra={"error": describe_db_error(exc)})
            await asyncio.sleep(HEARTBEAT)

    async def release(self) -> None:
        """Let other nodes take this node's gateways at once after a clean stop."""
        with contextlib.suppress(SQLAlchemyError, OSError):
            async with self._sessionmaker.begin() as session:
                await session.execute(
                    update(GatewayRow)
                    .where(GatewayRow.node == self.node)
                    .values(node=None, status="offline", status_detail="node stopped")
                )
