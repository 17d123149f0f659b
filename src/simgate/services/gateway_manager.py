"""Which gateways this node runs: every heartbeat it records itself in ``nodes``, claims the
active gateways it may run (``domain.placement``) and nobody else holds, lets go of the
ones it may no longer run, and starts and stops their drivers to match.

Exactly one node runs a gateway: a claim is a conditional UPDATE that succeeds only while
the gateway is free, already ours, its holder silent for ``GATEWAY_OFFLINE_AFTER``, or its
holder a process on this host that has certainly ended (a crash, or a restart on another
port, is taken over at once). A node whose heartbeats cannot be written for half of
``GATEWAY_OFFLINE_AFTER`` stops its gateways, so it has let go before any other node may
take them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simgate.config import Settings
from simgate.domain.placement import decide
from simgate.drivers.kinds import KINDS, DriverEnv
from simgate.services import nodes, phones
from simgate.services.dispatcher import Dispatcher
from simgate.services.gateways import placement_of
from simgate.services.nodes import HEARTBEAT, HostIdentity
from simgate.store.engine import describe_db_error
from simgate.store.models import Gateway as GatewayRow
from simgate.store.models import Node
from simgate.store.types import utcnow

log = logging.getLogger(__name__)
SYNC_COLUMNS = (
    GatewayRow.id,
    GatewayRow.name,
    GatewayRow.kind,
    GatewayRow.is_active,
    GatewayRow.config,
    GatewayRow.place_kind,
    GatewayRow.place_host_id,
    GatewayRow.place_host_name,
    GatewayRow.place_node,
    GatewayRow.node,
    GatewayRow.rate_per_minute,
    GatewayRow.max_in_flight,
    GatewayRow.sims,
)
# A gateway as a heartbeat reads it: a row of SYNC_COLUMNS (attributes by column name).
Synced = Any
YIELD_EVERY = 50
MIN_SYNC_GAP = 0.5  # seconds between the starts of two syncs


class GatewayManager:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        dispatcher: Dispatcher,
        *,
        identity: HostIdentity | None = None,
        env: DriverEnv | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._dispatcher = dispatcher
        self.identity = identity or nodes.host_identity(settings)
        self.here = nodes.here(settings, self.identity)
        self.node = settings.node
        self.started_at = utcnow()
        self.step_down_after = settings.gateway_offline_after / 2
        self._last_ok = time.monotonic()
        self.stepped_down = False
        self.env = env or DriverEnv()
        self._wake = asyncio.Event()
        self._sync_gap = MIN_SYNC_GAP

    def wake(self) -> None:
        """Sync now rather than at the next heartbeat (a phone's socket opened or closed)."""
        self._wake.set()

    def _connected(self, name: str) -> bool:
        return self.env.phones is not None and self.env.phones.connected(name)

    def _claimable(self, row: Synced, holders: dict[str, Node], stale: datetime) -> Any:
        """The condition under which this node may take ``row`` now (None: it may not)."""
        free = [
            GatewayRow.node.is_(None),
            GatewayRow.node == self.node,
            GatewayRow.last_seen_at.is_(None),
            GatewayRow.last_seen_at < stale,
        ]
        holder = holders.get(row.node or "")
        if holder is not None and nodes.process_gone(holder, self.identity):
            free.append(GatewayRow.node == holder.name)
        return and_(GatewayRow.id == row.id, GatewayRow.is_active.is_(True), or_(*free))

    async def sync(self) -> None:
        """One heartbeat: record this node, claim and start what it should run, stop and
        release the rest."""
        await self.apply(await self.heartbeat())

    async def heartbeat(self) -> list[Synced]:
        """The database side of a heartbeat: this node's row, the claims, and the phones
        that went offline. The gateways this node holds now."""
        started = time.monotonic()
        now = utcnow()
        stale = now - timedelta(seconds=self._settings.gateway_offline_after)
        mine: list[Synced] = []
        bulk: list[Synced] = []
        missing: list[str] = []
        async with self._sessionmaker.begin() as session:
            # Plain rows of the columns a heartbeat needs, not ORM objects: a node with
            # thousands of phones reads them all every heartbeat, on the event loop.
            rows = list(await session.execute(select(*SYNC_COLUMNS)))
            holders = {n.name: n for n in await session.scalars(select(Node))}
            # Detached, the nodes are only read: every UPDATE below would otherwise match
            # itself against each object in the session.
            session.expunge_all()
            for row in rows:
                kind = KINDS.get(row.kind)
                if kind is None or not row.is_active:
                    continue
                options = dict(row.config or {})
                device = kind.device(options)
                present = os.path.exists(device) if device else True  # noqa: ASYNC240
                verdict = decide(
                    kind.reach,
                    placement_of(row),
                    self.here,
                    port_present=present,
                    connected=self._connected(row.name),
                )
                if not verdict.may_run:
                    if device and not present:
                        missing.append(device)
                    continue
                values: dict[str, Any] = dict(self._dispatcher.health_of(row.name))
                if verdict.bind_host:
                    values["place_host_id"] = self.here.host_id
                    values["place_host_name"] = self.here.hostname[:255]
                holder = holders.get(row.node or "")
                if not values and not (holder and nodes.process_gone(holder, self.identity)):
                    bulk.append(row)  # nothing but the claim to write: claimed in bulk
                    continue
                values.update(node=self.node, last_seen_at=now)
                cond = self._claimable(row, holders, stale)
                result = await session.execute(update(GatewayRow).where(cond).values(**values))
                if getattr(result, "rowcount", 0):
                    mine.append(row)
            mine += await self._claim_bulk(session, bulk, stale, now)
            await phones.sweep_offline(
                session, now=now, offline_after=self._settings.gateway_offline_after
            )
            await nodes.heartbeat(
                session,
                settings=self._settings,
                identity=self.identity,
                started_at=self.started_at,
                now=now,
                missing_ports=missing,
            )
        self._last_ok = started
        self.stepped_down = False
        return mine

    async def apply(self, mine: list[Synced]) -> None:
        """Run exactly the gateways in ``mine``: start the new ones, stop and release the
        others."""
        running = self._dispatcher.gateways
        keep = {r.name for r in mine}
        dropped = [name for name in running if name not in keep]
        for i, name in enumerate(dropped):
            await self._dispatcher.remove_gateway(name)
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
        if dropped:
            await self._release(dropped)
        started = 0
        for row in mine:
            if row.name not in running:
                await self._start(row)
                started += 1
                # Starting a driver rarely waits for anything: without a pause now and
                # then, starting thousands would hold the event loop (and every socket's
                # pings) for seconds.
                if started % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            driver = running.get(row.name)
            if driver is not None and row.kind == phones.KIND:
                driver.sim_count = len(row.sims) if row.sims else None

    async def _claim_bulk(
        self, session: AsyncSession, rows: list[Synced], stale: datetime, now: datetime
    ) -> list[Synced]:
        """Claim (or renew the claim on) gateways, a statement per 500, and read back which
        are ours: a node with thousands of phones must not write a row each heartbeat."""
        kept: list[Synced] = []
        for i in range(0, len(rows), 500):
            chunk = {r.id: r for r in rows[i : i + 500]}
            ids = list(chunk)
            await session.execute(
                update(GatewayRow)
                .where(
                    GatewayRow.id.in_(ids),
                    GatewayRow.is_active.is_(True),
                    or_(
                        GatewayRow.node.is_(None),
                        GatewayRow.node == self.node,
                        GatewayRow.last_seen_at.is_(None),
                        GatewayRow.last_seen_at < stale,
                    ),
                )
                .values(node=self.node, last_seen_at=now)
                .execution_options(synchronize_session=False)
            )
            ours = await session.scalars(
                select(GatewayRow.id).where(GatewayRow.id.in_(ids), GatewayRow.node == self.node)
            )
            kept += [chunk[id_] for id_ in ours]
        return kept

    async def _start(self, row: Synced) -> None:
        try:
            driver = KINDS[row.kind].build(
                row.name, dict(row.config or {}), row.max_in_flight, self.env
            )
        except ValueError as exc:
            log.error("cannot start gateway", extra={"gateway": row.name, "error": str(exc)})
            return
        await self._dispatcher.add_gateway(driver, rate_per_minute=row.rate_per_minute)

    async def _release(self, names: list[str]) -> None:
        """Let other nodes take these at once (this node has stopped them)."""
        async with self._sessionmaker.begin() as session:
            await session.execute(
                update(GatewayRow)
                .where(GatewayRow.name.in_(names), GatewayRow.node == self.node)
                .values(node=None)
            )

    async def step_down_if_cut_off(self) -> None:
        """Stop every gateway when heartbeats have failed for ``step_down_after`` seconds:
        another node may take them over soon, and two must never run one."""
        silent = time.monotonic() - self._last_ok
        if silent < self.step_down_after or not self._dispatcher.gateways:
            return
        names = list(self._dispatcher.gateways)
        log.error(
            "stepping down: this node could not write its heartbeat; its gateways are "
            "stopped so that another node can take them over",
            extra={"silent_for": round(silent, 1), "gateways": names},
        )
        for name in names:
            await self._dispatcher.remove_gateway(name, detail=None)
        self.stepped_down = True

    async def run(self) -> None:
        while True:
            self._wake.clear()  # before the sync: a wake during it means sync again
            began = time.monotonic()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
                # cancellation that stops the server when sync finishes at that moment.
                async with asyncio.timeout(max(HEARTBEAT, self.step_down_after / 2)):
                    mine = await self.heartbeat()
                # Starting and stopping drivers is not bounded: a thousand phones take a
                # while, and cutting that short would help nobody.
                await self.apply(mine)
            except TimeoutError:
                log.warning("gateway heartbeat timed out (database slow or unreachable)")
                await self.step_down_if_cut_off()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("gateway heartbeat failed", extra={"error": describe_db_error(exc)})
                await self.step_down_if_cut_off()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT):
                    await self._wake.wait()
            # Woken early (a phone connected): a sync reads every gateway, so thousands of
            # phones connecting at once share syncs rather than each causing one.
            await asyncio.sleep(max(0.0, began + self._sync_gap - time.monotonic()))

    async def release(self) -> None:
        """Let other nodes take this node's gateways at once after a clean stop."""
        with contextlib.suppress(SQLAlchemyError, OSError):
            async with self._sessionmaker.begin() as session:
                await session.execute(
                    update(GatewayRow)
                    .where(GatewayRow.node == self.node)
                    .values(node=None, status="offline", status_detail="node stopped")
                )
                await nodes.stopped(session, node=self.node)
