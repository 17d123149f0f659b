"""Gateways as configured in the database: create, list (with why one does not run),
place, (de)activate and remove them. Which node runs which gateway is
``services.gateway_manager``; the rules are ``domain.placement``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.domain.messages import MessageStatus
from simgate.domain.placement import NAME_RE as NODE_RE
from simgate.domain.placement import (
    GatewayFacts,
    NodeSeen,
    PlaceKind,
    Placement,
    Reach,
    ago,
    explain,
)
from simgate.drivers.kinds import KINDS, kind_of
from simgate.errors import Conflict, Invalid, NotFound
from simgate.services import audit, nodes, outbound
from simgate.services.apps import bump_auth_generation
from simgate.store.models import Gateway as GatewayRow
from simgate.store.types import utcnow

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def placement_of(row: Any) -> Placement:
    """From a gateway row (ORM or plain, with the place_* columns)."""
    try:
        kind = PlaceKind(row.place_kind)
    except ValueError:
        kind = PlaceKind.ANY
    return Placement(kind, row.place_host_id, row.place_host_name or "", row.place_node)


def reach_of(row: GatewayRow) -> Reach:
    found = KINDS.get(row.kind)
    return found.reach if found else Reach.ANYWHERE


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    name: str
    kind: str
    active: bool
    status: str
    status_detail: str
    node: str | None  # the node running it (None when none does)
    placement: Placement
    number: str | None
    last_seen_at: datetime | None
    signal: int | None
    battery: int | None
    sent: int
    failed: int
    received: int
    rate_per_minute: int
    max_in_flight: int
    config: dict[str, Any]
    running: bool  # a live node runs it (its status is then the driver's own)
    sendable: bool  # running and online: a message for it goes out now
    label: str = ""
    device_id: str | None = None
    device_info: dict[str, Any] | None = None
    app_version: str = ""
    sims: list[dict[str, Any]] | None = None
    last_heartbeat_at: datetime | None = None
    key_prefix: str | None = None

    @classmethod
    def of(
        cls,
        row: GatewayRow,
        *,
        offline_after: float,
        seen: Sequence[NodeSeen],
        single_host: bool,
        now: datetime | None = None,
    ) -> GatewayInfo:
        now = now or utcnow()
        config = dict(row.config or {})
        found = KINDS.get(row.kind)
        facts = GatewayFacts(
            name=row.name,
            reach=reach_of(row),
            placement=placement_of(row),
            active=row.is_active,
            deactivated_by=row.deactivated_by,
            holder=row.node,
            port=found.device(config) if found else None,
        )
        why = explain(facts, seen, now, alive_within=nodes.ALIVE_WITHIN, single_host=single_host)
        status, detail = row.status, row.status_detail
        stale = row.last_seen_at is None or now - row.last_seen_at > timedelta(
            seconds=offline_after
        )
        # Online over HTTP: a heartbeat posted within the timeout (one sent over a socket
        # that has closed since does not count: the socket was what made it online).
        heard = (
            row.last_heartbeat_at is not None
            and (row.reported or {}).get("via") == "http"
            and now - row.last_heartbeat_at <= timedelta(seconds=offline_after)
        )
        if why is not None and facts.reach is Reach.SOCKET and row.is_active and heard:
            # Online over HTTP (it receives and reports), but nothing can be pushed to it.
            assert row.last_heartbeat_at is not None
            age = ago((now - row.last_heartbeat_at).total_seconds())
            status = "online"
            detail = (
                f"online over HTTP only (last heartbeat {age} ago): it has no WebSocket "
                "connection to /cable, so messages for it wait until it connects"
            )
        elif why is not None:
            status, detail = "offline", why
            if facts.reach is Reach.SOCKET and row.last_heartbeat_at is not None:
                detail += (
                    f" (last heartbeat {ago((now - row.last_heartbeat_at).total_seconds())} ago)"
                )
        elif stale and status == "online":
            status = "offline"
        return cls(
            name=row.name,
            kind=row.kind,
            active=row.is_active,
            status=status,
            status_detail=detail,
            node=row.node if why is None else None,
            placement=facts.placement,
            number=row.number or (found.number(config) if found else None),
            last_seen_at=row.last_seen_at,
            signal=row.signal,
            battery=row.battery,
            sent=row.sent_count,
            failed=row.failed_count,
            received=row.received_count,
            rate_per_minute=row.rate_per_minute,
            max_in_flight=row.max_in_flight,
            config=config,
            running=why is None,
            sendable=why is None and status == "online",
            label=row.label or "",
            device_id=row.device_id,
            device_info=row.device_info,
            app_version=row.app_version or "",
            sims=row.sims,
            last_heartbeat_at=row.last_heartbeat_at,
            key_prefix=row.key_prefix,
        )


def _single_host(session: AsyncSession) -> bool:
    bind = session.bind
    return bind is not None and bind.dialect.name == "sqlite"


async def _seen(session: AsyncSession) -> list[NodeSeen]:
    return nodes.as_seen(await nodes.seen(session))


async def _info(session: AsyncSession, row: GatewayRow, offline_after: float) -> GatewayInfo:
    return GatewayInfo.of(
        row,
        offline_after=offline_after,
        seen=await _seen(session),
        single_host=_single_host(session),
    )


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise Invalid(
            f"gateway name {name!r} is not valid: use 1-64 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit",
            field="name",
        )


def check_placement(placement: Placement) -> Placement:
    if placement.kind is PlaceKind.NODE and not (placement.node and NODE_RE.match(placement.node)):
        raise Invalid(
            f"node name {placement.node!r} is not valid: use 1-64 letters, digits, '.', ':', "
            "'_' or '-'",
            field="node",
        )
    if placement.kind is PlaceKind.HOST and not (placement.host_id or placement.host_name):
        raise Invalid("a host placement needs the host", field="host")
    return placement


async def create(
    session: AsyncSession,
    *,
    name: str,
    kind: str,
    config: dict[str, Any] | None = None,
    placement: Placement | None = None,
    rate_per_minute: int = 0,
    max_in_flight: int = 1,
    actor: str,
) -> GatewayInfo:
    check_name(name)
    try:
        found = kind_of(kind)
    except ValueError as exc:
        raise Invalid(str(exc), field="kind") from None
    if rate_per_minute < 0:
        raise Invalid("rate_per_minute: must be 0 (no limit) or more", field="rate_per_minute")
    if not 1 <= max_in_flight <= 100:
        raise Invalid("max_in_flight: must be 1-100", field="max_in_flight")
    try:
        checked = found.check(dict(config or {}))
    except (ValueError, TypeError) as exc:
        raise Invalid(str(exc), field="config") from None
    place = check_placement(placement or Placement.anywhere())
    if await session.scalar(select(GatewayRow.id).where(GatewayRow.name == name)) is not None:
        raise Conflict(f"a gateway named {name!r} already exists", field="name")
    row = GatewayRow(
        name=name,
        kind=kind,
        is_active=True,
        config=checked,
        place_kind=place.kind.value,
        place_host_id=place.host_id,
        place_host_name=place.host_name,
        place_node=place.node,
        number=found.number(checked),
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
    audit.record(
        session,
        actor=actor,
        action="gateway.create",
        target=name,
        kind=kind,
        placement=place.describe(),
    )
    return await _info(session, row, 1.0)


async def list_all(session: AsyncSession, *, offline_after: float) -> list[GatewayInfo]:
    rows = await session.scalars(select(GatewayRow).order_by(GatewayRow.name))
    seen = await _seen(session)
    single = _single_host(session)
    now = utcnow()
    return [
        GatewayInfo.of(r, offline_after=offline_after, seen=seen, single_host=single, now=now)
        for r in rows
    ]


async def get(session: AsyncSession, name: str, *, offline_after: float) -> GatewayInfo:
    row = await _row(session, name)
    return GatewayInfo.of(
        row,
        offline_after=offline_after,
        seen=await _seen(session),
        single_host=_single_host(session),
    )


async def _row(session: AsyncSession, name: str) -> GatewayRow:
    row = await session.scalar(select(GatewayRow).where(GatewayRow.name == name))
    if row is None:
        raise NotFound(f"no gateway named {name!r}", field="name")
    return row


async def set_active(session: AsyncSession, *, name: str, active: bool, actor: str) -> None:
    row = await _row(session, name)
    row.is_active = active
    row.deactivated_by = None if active else actor
    row.deactivated_at = None if active else utcnow()
    if row.key_hash is not None:  # a phone: its open sockets close at once, on every node
        await bump_auth_generation(session)
    audit.record(
        session,
        actor=actor,
        action="gateway.activate" if active else "gateway.deactivate",
        target=name,
    )


async def move(
    session: AsyncSession, *, name: str, placement: Placement, actor: str
) -> GatewayInfo:
    """Place a gateway elsewhere. The node running it stops it at its next heartbeat and
    lets go; a node where it may run then takes it."""
    row = await _row(session, name)
    place = check_placement(placement)
    if reach_of(row) is Reach.SOCKET and place.kind is PlaceKind.HOST:
        raise Invalid(
            f"gateway {name!r} is a phone: it runs on the node its connection reaches; "
            "pin it to a node or let it run on any",
            field="placement",
        )
    before = placement_of(row).describe()
    row.place_kind = place.kind.value
    row.place_host_id = place.host_id
    row.place_host_name = place.host_name
    row.place_node = place.node
    audit.record(
        session,
        actor=actor,
        action="gateway.move",
        target=name,
        before=before,
        after=place.describe(),
    )
    await session.flush()
    return await _info(session, row, 1.0)


async def remove(session: AsyncSession, *, name: str, actor: str) -> None:
    row = await _row(session, name)
    await session.delete(row)
    audit.record(session, actor=actor, action="gateway.remove", target=name, kind=row.kind)


async def waiting_reason(
    session: AsyncSession, *, pinned: str | None, offline_after: float
) -> str | None:
    """Why a queued message is not being sent, when no gateway can take it: its pinned
    gateway does not run or is not online, or no gateway is online at all."""
    infos = await list_all(session, offline_after=offline_after)
    if pinned is not None:
        mine = next((g for g in infos if g.name == pinned), None)
        if mine is None:
            return f"waiting for gateway {pinned!r}, which does not exist (any more)"
        if mine.sendable:
            return None
        state = {"error": "is in error", "offline": "is offline"}.get(mine.status, mine.status)
        if not mine.running:
            state = "cannot take it now" if mine.status == "online" else "does not run"
        return f"waiting for gateway {pinned!r}, which {state}: {mine.status_detail}"
    if any(g.sendable for g in infos):
        return None
    if not infos:
        return "waiting for a gateway: none is configured ('simgate modem add' or 'gateway add')"
    reasons = "; ".join(f"{g.name}: {g.status_detail or g.status}" for g in infos[:5])
    more = f"; and {len(infos) - 5} more" if len(infos) > 5 else ""
    return f"waiting for a gateway: none is online ({reasons}{more})"


async def message_status(
    session: AsyncSession, id_: str, *, app_id: int | None, offline_after: float
) -> dict[str, Any]:
    """A message as ``outbound.get_message`` reads it, plus ``status_detail``: for one still
    waiting in the queue, why (its next attempt is later, or no gateway can take it)."""
    found = await outbound.get_message(session, id_, app_id=app_id)
    detail = None
    if found.get("status") in (MessageStatus.QUEUED.value, MessageStatus.SCHEDULED.value):
        detail = await waiting_reason(
            session,
            pinned=found["gateway"] if found["pinned"] else None,
            offline_after=offline_after,
        )
        due = found.get("next_attempt_at")
        later = due and datetime.fromisoformat(due) > utcnow() + timedelta(seconds=1)
        if later and found["status"] == MessageStatus.SCHEDULED.value:
            detail = f"scheduled for {due}" + (f"; {detail}" if detail else "")
        elif later:
            detail = f"next attempt at {due}" + (f"; {detail}" if detail else "")
    if found["direction"] == "outbound":
        found["status_detail"] = detail
    return found
