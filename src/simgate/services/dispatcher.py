"""The dispatcher: claims queued messages with a lease, hands them to gateways, records
what happened, and retries, fails over or gives up by the retry policy.

A message leaves the queue only through a lease that expires: if this process dies while a
message is with a gateway, the lease runs out and the message is queued again (a node that
restarts under the same name takes its own leases back at once). Gateways see the same
message id on a retry and can drop the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simgate.config import Settings
from simgate.domain.messages import CLAIMABLE, MessageError, MessageStatus, Priority, Received
from simgate.domain.retry import ErrorKind, RetryPolicy
from simgate.domain.routing import GatewayView, TokenBucket, choose
from simgate.drivers.base import Gateway, GatewayStatus, OutboundSms, SendOutcome
from simgate.services import events, inbound, samples
from simgate.services.outbound import move
from simgate.store import queue_rows
from simgate.store.engine import describe_db_error
from simgate.store.models import Gateway as GatewayRow
from simgate.store.models import Message
from simgate.store.queue_rows import QueuedMessage
from simgate.store.types import utcnow

log = logging.getLogger(__name__)
S = MessageStatus
POLL_INTERVAL = 1.0  # fallback for work nobody woke us for (scheduled, other processes)
SWEEP_INTERVAL = 5.0
MAX_RECORD = 500
LEASE_MARGIN = 30.0  # seconds a lease outlasts the longest a send may take


def _transient(exc: BaseException) -> bool:
    """A database error that passes (connection lost, deadlock, lock timeout)."""
    if isinstance(exc, OSError | OperationalError | InterfaceError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@dataclass(slots=True)
class _Outcome:
    item: Claimed
    outcome: SendOutcome
    done: asyncio.Future[None] | None = None


@dataclass(slots=True)
class _Sent:
    """A late acknowledgement: the gateway sent it after its send had ended here."""

    gateway: str
    message_id: str
    done: asyncio.Future[None] | None = None


@dataclass(slots=True)
class _Report:
    gateway: str
    message_id: str | None
    gateway_ref: str | None
    delivered: bool
    error: MessageError | None
    done: asyncio.Future[None] | None = None
    only_if_sent: bool = False  # a failure report that must not end a send in progress


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    to: str
    body: str
    encoding: str
    segments: int
    priority: int
    attempt: int
    gateway: str
    sim_slot: int | None = None

    def sms(self) -> OutboundSms:
        return OutboundSms(
            self.id,
            self.to,
            self.body,
            self.encoding,
            self.segments,
            self.priority,
            self.attempt,
            self.sim_slot,
        )


Entry = _Outcome | _Report | _Sent


class Dispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        # Who waits for a status hears of it through the change feed, which ``move`` notes
        # on the session: see services.changes.
        self._sessionmaker = sessionmaker
        self._settings = settings
        self.node = settings.node
        self.policy = RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
        )
        self.ack_timeout = settings.gateway_ack_timeout
        self._skip_locked = settings.backend != "sqlite"
        self.gateways: dict[str, Gateway] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._sim_buckets: dict[str, dict[int, TokenBucket]] = {}
        self._in_flight: dict[str, int] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_sweep = 0.0
        self._last_scheduled = 0.0
        self._pending: list[Entry] = []
        self._statuses: dict[str, tuple[str, str, dict[str, Any], datetime]] = {}
        self._recorder_wake = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._recorder_task: asyncio.Task[None] | None = None
        self.dropped = 0

    # --- gateways -----------------------------------------------------------------------

    async def add_gateway(self, gateway: Gateway, *, rate_per_minute: int = 0) -> None:
        self.gateways[gateway.name] = gateway
        now = time.monotonic()
        self._buckets[gateway.name] = TokenBucket(
            rate_per_minute=rate_per_minute, burst=1.0, updated=now
        )
        self._sim_buckets[gateway.name] = {
            slot: TokenBucket(rate_per_minute=rate, burst=1.0, updated=now)
            for slot, rate in gateway.sim_rates.items()
        }
        self._in_flight.setdefault(gateway.name, 0)
        await gateway.start(self)
        await self.status_changed(gateway.name, gateway.status, gateway.status_detail)
        self.wake()

    async def remove_gateway(
        self, name: str, *, detail: str | None = "stopped on this node"
    ) -> None:
        """Stop a gateway. ``detail``: the status to record, or None to write nothing (when
        the database cannot be reached: the write would only wait for it)."""
        gateway = self.gateways.pop(name, None)
        self._sim_buckets.pop(name, None)
        if gateway is not None:
            await gateway.stop()
            if detail is not None:
                await self.status_changed(name, GatewayStatus.OFFLINE, detail)

    def _rate_ok(self, name: str, now: float) -> bool:
        sims = self._sim_buckets.get(name)
        return self._buckets[name].available(now) and (
            not sims or any(b.available(now) for b in sims.values())
        )

    def _ready(self, now: float) -> dict[str, GatewayView]:
        """The gateways that can take a message now (a node may run thousands of phones:
        views are made only for those)."""
        ready = {}
        for name, gw in self.gateways.items():
            in_flight = self._in_flight.get(name, 0)
            if gw.online and in_flight < gw.max_in_flight and self._rate_ok(name, now):
                ready[name] = GatewayView(
                    name, True, in_flight, gw.max_in_flight, True, gw.sim_count
                )
        return ready

    def _take_sim(self, name: str, wanted: int | None, now: float) -> tuple[bool, int | None]:
        """Which SIM sends (the one asked for, or the one with most room), and whether its
        own rate allows a send now. Gateways without per-SIM rates send as asked."""
        sims = self._sim_buckets.get(name)
        if not sims:
            return True, wanted
        if wanted is not None:
            bucket = sims.get(wanted)
            if bucket is None:
                return True, wanted
            if not bucket.available(now):
                return False, wanted
            bucket.take(now)
            return True, wanted
        ready = [(b.tokens, -slot, slot) for slot, b in sims.items() if b.available(now)]
        if not ready:
            return False, None
        slot = max(ready)[2]
        sims[slot].take(now)
        return True, slot

    # --- the loop -----------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        """Start claiming and recording (call from a running event loop)."""
        self._stopping = False
        self._recorder_task = asyncio.create_task(self.record_forever(), name="recorder")
        self._run_task = asyncio.create_task(self.run(), name="dispatcher")

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self._reclaim(own_only=True)
                break
            except (SQLAlchemyError, OSError) as exc:
                log.warning(
                    "dispatcher: database not ready; retrying",
                    extra={"error": describe_db_error(exc)},
                )
                await asyncio.sleep(1.0)
        while not self._stopping:
            self._wake.clear()
            try:
                # Scheduled messages fall due with time, not with a wake-up: they are looked
                # for once per poll interval, and a claim woken for a new message saves
                # those queries (two round trips on a server database).
                mono = time.monotonic()
                scheduled = mono - self._last_scheduled >= POLL_INTERVAL
                if scheduled:
                    self._last_scheduled = mono
                await self._claim_and_send(scheduled=scheduled)
                if time.monotonic() - self._last_sweep > SWEEP_INTERVAL:
                    self._last_sweep = time.monotonic()
                    await self._reclaim(own_only=False)
                    await self._expire()
            except (SQLAlchemyError, OSError) as exc:
                log.warning(
                    "dispatcher: database error; retrying", extra={"error": describe_db_error(exc)}
                )
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("dispatcher: unexpected error; carrying on")
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL)

    async def stop(self, drain: float = 10.0) -> None:
        """Stop claiming; let in-flight sends finish for up to ``drain`` seconds and record
        their outcomes. Whatever is still out keeps its lease and is taken back when this
        node starts again, so a stop never loses a message."""
        self._stopping = True
        self.wake()
        if self._run_task is not None:  # no claim may start sends after this point
            self._run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        if self._sends:
            await asyncio.wait(list(self._sends), timeout=drain)
        for task in list(self._sends):
            task.cancel()
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        if self._recorder_task is not None:
            self._recorder_task.cancel()  # an interrupted batch rolls back and stays pending
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder_task
        try:
            await asyncio.wait_for(self._record_pending(), timeout=5.0)
            await asyncio.wait_for(self._write_statuses(), timeout=5.0)
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            log.warning(
                "could not record every outcome before stopping; the leases bring "
                "those messages back",
                extra={"error": str(exc)},
            )
        for gateway in list(self.gateways.values()):
            with contextlib.suppress(Exception):
                await gateway.stop()

    async def _claim_and_send(self, *, scheduled: bool = True) -> None:
        while not self._stopping:
            claimed = await self._claim(scheduled=scheduled)
            if not claimed:
                return
            for item in claimed:
                task = asyncio.create_task(self._send(item), name=f"send-{item.id}")
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)

    async def _claim(self, *, scheduled: bool = True) -> list[Claimed]:
        mono = time.monotonic()
        views = self._ready(mono)
        if not views:
            return []
        free = sum(v.max_in_flight - v.in_flight for v in views.values())
        names = list(views)
        now = utcnow()
        claimed: list[Claimed] = []
        taken: dict[str, int] = {}
        buckets = [
            (self._buckets[n], self._buckets[n].tokens, self._buckets[n].updated) for n in names
        ]
        buckets += [
            (b, b.tokens, b.updated) for n in names for b in self._sim_buckets.get(n, {}).values()
        ]
        try:
            await self._claim_rows(views, names, free, mono, now, claimed, taken, scheduled)
        except BaseException:
            # Nothing was claimed: give back the capacity and rate tokens counted for it.
            for name, n in taken.items():
                self._in_flight[name] = max(0, self._in_flight.get(name, 0) - n)
            for bucket, tokens, updated in buckets:
                bucket.tokens, bucket.updated = tokens, updated
            raise
        return claimed

    async def _claim_rows(
        self,
        views: dict[str, GatewayView],
        names: list[str],
        free: int,
        mono: float,
        now: datetime,
        claimed: list[Claimed],
        taken: dict[str, int],
        scheduled: bool = True,
    ) -> None:
        statuses = (S.QUEUED, S.SCHEDULED) if scheduled else (S.QUEUED,)
        async with self._sessionmaker.begin() as session:
            history = events.Rows()
            rows: list[QueuedMessage] = []
            # One query per (priority, status), each an ordered range scan of
            # ix_messages_claim that stops at the limit: a single query ordered by
            # priority across two statuses would sort the whole backlog every time.
            for priority in (Priority.HIGH, Priority.NORMAL):
                for status in statuses:
                    if len(rows) >= free:
                        break
                    stmt = (
                        queue_rows.query()
                        .where(
                            Message.status == status.value,
                            Message.priority == int(priority),
                            Message.next_attempt_at <= now,
                            or_(
                                Message.gateway_pinned.is_(None), Message.gateway_pinned.in_(names)
                            ),
                        )
                        .order_by(Message.next_attempt_at, Message.id)
                        .limit(free - len(rows))
                    )
                    if self._skip_locked:
                        stmt = stmt.with_for_update(skip_locked=True)
                    rows += await queue_rows.load(session, stmt)
            for m in rows:
                if m.expires_at is not None and m.expires_at <= now:
                    move(
                        session,
                        m,
                        S.EXPIRED,
                        {"reason": "ttl passed before sending"},
                        now=now,
                        rows=history,
                    )
                    continue
                if m.gateway_pinned is not None:  # its own gateway, looked up, not searched for
                    view = views.get(m.gateway_pinned)
                    name = choose([view], pinned=m.gateway_pinned, sim=m.sim_slot) if view else None
                else:
                    name = choose(
                        views.values(),
                        avoid=[m.avoid_gateway] if m.avoid_gateway else [],
                        sim=m.sim_slot,
                    )
                if name is None:
                    continue
                sim_ok, slot = self._take_sim(name, m.sim_slot, mono)
                if not sim_ok:
                    continue  # that SIM is at its rate; the message waits for it
                bucket = self._buckets[name]
                bucket.take(mono)
                self._in_flight[name] += 1
                taken[name] = taken.get(name, 0) + 1
                views[name] = GatewayView(
                    name,
                    True,
                    self._in_flight[name],
                    views[name].max_in_flight,
                    self._rate_ok(name, mono),
                    views[name].sims,
                )
                m.attempts += 1
                move(
                    session,
                    m,
                    S.SENDING,
                    {"gateway": name, "attempt": m.attempts, "node": self.node},
                    now=now,
                    rows=history,
                )
                m.gateway = name
                m.lease_owner = self.node
                item = Claimed(
                    m.id,
                    m.to_number,
                    m.body,
                    m.encoding,
                    m.segments,
                    m.priority,
                    m.attempts,
                    name,
                    slot,
                )
                # The lease outlasts the longest the send may take, or the message could be
                # queued again (and sent twice) while this gateway is still on it.
                limit = max(self.ack_timeout, self.gateways[name].time_limit(item.sms()) or 0.0)
                m.lease_expires_at = now + timedelta(seconds=limit + LEASE_MARGIN)
                claimed.append(item)
            await queue_rows.save_with(session, rows, history.take())

    async def _send(self, item: Claimed) -> None:
        gateway = self.gateways.get(item.gateway)
        try:
            if gateway is None:
                outcome = SendOutcome.failed(
                    "gateway_gone", f"gateway {item.gateway!r} was removed", kind=ErrorKind.GATEWAY
                )
            else:
                sms = item.sms()
                limit = max(self.ack_timeout, gateway.time_limit(sms) or 0.0)
                try:
                    outcome = await asyncio.wait_for(gateway.send(sms), limit)
                except TimeoutError:
                    outcome = SendOutcome.failed(
                        "gateway_timeout",
                        f"gateway {item.gateway!r} did not answer within {limit:g} s",
                        "the gateway may be hung or its connection lost; simgate retries, "
                        "on another gateway when there is one",
                    )
                except Exception as exc:  # a driver bug must not lose the message
                    log.exception("gateway send raised", extra={"gateway": item.gateway})
                    outcome = SendOutcome.failed("gateway_error", f"{type(exc).__name__}: {exc}")
        finally:
            # The gateway is done with the message: its slot takes the next one while the
            # outcome is written (the message keeps its lease until then). Held until the
            # write, each slot waited out the recorder's transaction as well, and under load
            # that wait, not the gateway, limited how fast messages were handed over.
            self._in_flight[item.gateway] = max(0, self._in_flight.get(item.gateway, 1) - 1)
            self.wake()
        await self._record(_Outcome(item, outcome))

    # --- recording: outcomes and delivery reports share one transaction per batch -----------

    async def _record(self, entry: Entry) -> None:
        """Queue for the recorder and wait until written (the lease keeps a message safe
        meanwhile, and a driver may delete a report from the SIM only once it is stored)."""
        entry.done = asyncio.get_running_loop().create_future()
        self._pending.append(entry)
        self._recorder_wake.set()
        await asyncio.shield(entry.done)

    async def record_forever(self) -> None:
        while True:
            await self._recorder_wake.wait()
            self._recorder_wake.clear()
            try:
                await self._record_pending()
                await self._write_statuses()
            except Exception:  # never let the recorder die: every send waits on it
                log.exception("recorder: unexpected error; carrying on")
                await asyncio.sleep(1.0)
                self._recorder_wake.set()

    async def _record_pending(self) -> None:
        """Write pending outcomes and reports, oldest first. A batch is removed only once
        written; a database outage is waited out; an entry the database refuses for good
        is logged and dropped rather than blocking every later one (its message's lease
        still brings it back)."""
        delay = 0.2
        while self._pending:
            batch = self._pending[:MAX_RECORD]
            try:
                wake = await self._record_batch(batch)
                written = len(batch)
            except Exception as exc:
                if _transient(exc):
                    log.warning(
                        "could not record send outcomes; retrying",
                        extra={"count": len(batch), "error": describe_db_error(exc)},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                wake, written = await self._record_one_by_one(batch)
                if written == 0:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            done, self._pending = self._pending[:written], self._pending[written:]
            for entry in done:
                if entry.done is not None and not entry.done.done():
                    entry.done.set_result(None)
            if wake:
                self.wake()

    async def _record_one_by_one(self, batch: list[Entry]) -> tuple[bool, int]:
        wake = False
        for i, entry in enumerate(batch):
            try:
                w = await self._record_batch([entry])
            except Exception as exc:
                if _transient(exc):
                    return wake, i  # the rest waits for the next try
                self.dropped += 1
                log.error(
                    "dropping an outcome the database refuses",
                    extra={"entry": repr(entry)[:300], "error": describe_db_error(exc)},
                )
                continue
            wake = wake or w
        return wake, len(batch)

    async def _record_batch(self, batch: list[Entry]) -> bool:
        now = utcnow()
        wake = False
        counts: dict[tuple[str, bool], int] = {}
        async with self._sessionmaker.begin() as session:
            history = events.Rows()
            ids = {e.item.id for e in batch if isinstance(e, _Outcome)}
            ids |= {e.message_id for e in batch if isinstance(e, _Report | _Sent) and e.message_id}
            stmt = queue_rows.query().where(Message.id.in_(sorted(ids)))
            if self._skip_locked:
                stmt = stmt.with_for_update()
            rows = {m.id: m for m in await queue_rows.load(session, stmt)} if ids else {}
            for entry in batch:
                if isinstance(entry, _Outcome):
                    m = rows.get(entry.item.id)
                    status = self._apply_outcome(session, m, entry, now, history) if m else None
                    if status is not None:
                        key = (entry.item.gateway, entry.outcome.ok)
                        counts[key] = counts.get(key, 0) + 1
                        wake = wake or status == S.QUEUED.value
                elif isinstance(entry, _Sent):
                    m = rows.get(entry.message_id)
                    status = self._apply_sent(session, m, entry, now, history) if m else None
                    if status is not None:
                        key = (entry.gateway, True)
                        counts[key] = counts.get(key, 0) + 1
                else:
                    m = rows.get(entry.message_id or "") or await self._by_ref(session, entry, rows)
                    if m is not None:
                        self._apply_report(session, m, entry, now, history)
            await queue_rows.save_with(session, rows.values(), history.take())
            for (gateway, ok), n in counts.items():
                counter = GatewayRow.sent_count if ok else GatewayRow.failed_count
                await session.execute(
                    update(GatewayRow)
                    .where(GatewayRow.name == gateway)
                    .values({counter: counter + n})
                )
        return wake

    def _apply_outcome(
        self,
        session: AsyncSession,
        m: QueuedMessage,
        entry: _Outcome,
        now: datetime,
        history: events.Rows | None = None,
    ) -> str | None:
        item, outcome = entry.item, entry.outcome
        if (
            m.status != S.SENDING.value
            or m.lease_owner != self.node
            or m.gateway != item.gateway
            or m.attempts != item.attempt
        ):
            # A delivery report got here first, or our lease expired and the message moved
            # on; either way this outcome no longer decides anything.
            if outcome.ok and m.gateway == item.gateway and not m.gateway_ref:
                m.gateway_ref = (outcome.gateway_ref or "")[:64] or None
            return None
        if outcome.ok:
            m.gateway_ref = (outcome.gateway_ref or "")[:64] or None
            move(
                session,
                m,
                S.SENT,
                {"gateway": item.gateway, "gateway_ref": outcome.gateway_ref},
                now=now,
                rows=history,
            )
            return S.SENT.value
        error = outcome.error or MessageError("unknown", "the gateway refused the message")
        kind = outcome.kind
        if kind is ErrorKind.GATEWAY and m.gateway_pinned:
            kind = ErrorKind.TRANSIENT  # no other gateway may take it: back off instead
        decision = self.policy.decide(m.attempts, kind)
        detail: dict[str, Any] = {
            "gateway": item.gateway,
            "error": error.code,
            "attempt": m.attempts,
        }
        if decision is None:
            move(session, m, S.FAILED, detail, error=error, now=now, rows=history)
            return S.FAILED.value
        m.next_attempt_at = now + timedelta(seconds=decision.delay)
        m.avoid_gateway = item.gateway if decision.avoid_gateway else None
        detail["retry_in"] = decision.delay
        move(session, m, S.QUEUED, detail, error=error, now=now, rows=history)
        if decision.delay > 0:  # come back exactly when it is due, not at the next poll
            asyncio.get_running_loop().call_later(decision.delay, self.wake)
        return S.QUEUED.value

    def _apply_sent(
        self,
        session: AsyncSession,
        m: QueuedMessage,
        entry: _Sent,
        now: datetime,
        history: events.Rows | None = None,
    ) -> str | None:
        if m.gateway != entry.gateway or m.status not in (S.SENDING.value, S.QUEUED.value):
            return None  # already recorded (or handed to another gateway since)
        move(session, m, S.SENT, {"gateway": entry.gateway, "late": True}, now=now, rows=history)
        return S.SENT.value

    async def _by_ref(
        self, session: AsyncSession, report: _Report, rows: dict[str, QueuedMessage]
    ) -> QueuedMessage | None:
        """The newest message a report names by the gateway's reference. Messages already
        read in this batch (``rows``) count as they are now: an outcome earlier in the
        batch may have just given one its reference, which the database does not hold yet;
        and a message found in the database that is in ``rows`` is that same object, so
        its changes are written once."""
        ref = report.gateway_ref
        if ref is None:
            return None

        def matches(m: QueuedMessage) -> bool:
            return m.gateway == report.gateway and m.gateway_ref == ref

        id_ = await session.scalar(
            select(Message.id)
            .where(Message.gateway == report.gateway, Message.gateway_ref == ref)
            .order_by(Message.id.desc())
            .limit(1)
        )
        if id_ is not None and id_ not in rows:
            stmt = queue_rows.query().where(Message.id == id_)
            if self._skip_locked:
                stmt = stmt.with_for_update()
            found = await queue_rows.load(session, stmt)
            if found:
                rows[id_] = found[0]
        candidates = [m for m in rows.values() if matches(m)]
        return max(candidates, key=lambda m: m.id) if candidates else None

    def _apply_report(
        self,
        session: AsyncSession,
        m: QueuedMessage,
        report: _Report,
        now: datetime,
        history: events.Rows | None = None,
    ) -> str | None:
        late = m.status == S.QUEUED.value and m.gateway == report.gateway
        if report.only_if_sent and (m.status != S.SENT.value or m.gateway != report.gateway):
            return None
        if m.status not in (S.SENT.value, S.SENDING.value) and not late:
            return None  # a duplicate or late report; the message already ended
        # ``late``: the gateway's answer timed out and the message went back to the queue,
        # but the report proves it went out; sending it again would duplicate it.
        new = S.DELIVERED if report.delivered else S.FAILED
        move(
            session,
            m,
            new,
            {
                "gateway": report.gateway,
                "report": "delivered" if report.delivered else "undelivered",
            },
            error=report.error,
            now=now,
            rows=history,
        )
        return new.value

    # --- reports and health -------------------------------------------------------------

    async def delivery_report(
        self,
        gateway: str,
        *,
        message_id: str | None,
        gateway_ref: str | None,
        delivered: bool,
        error: MessageError | None = None,
    ) -> None:
        await self._record(_Report(gateway, message_id, gateway_ref, delivered, error))

    async def sent_report(self, gateway: str, *, message_id: str) -> None:
        await self._record(_Sent(gateway, message_id))

    async def failed_after_sent(self, gateway: str, *, message_id: str, error: str) -> None:
        """A gateway says a message it had sent did not arrive; ignored while the send is
        still in progress (the node running the gateway decides about that one)."""
        problem = MessageError("undelivered", error or "the gateway reported it failed")
        await self._record(_Report(gateway, message_id, None, False, problem, only_if_sent=True))

    async def received(self, item: Received) -> None:
        async with self._sessionmaker.begin() as session:
            await inbound.store(session, item)

    async def status_changed(self, gateway: str, status: GatewayStatus, detail: str) -> None:
        """Note a gateway's new status; the recorder writes the latest of each gateway in
        one transaction with others (a thousand phones connecting must not cost a thousand
        transactions)."""
        log.info(
            "gateway status", extra={"gateway": gateway, "status": status.value, "detail": detail}
        )
        self._statuses[gateway] = (status.value, detail[:255], self.health_of(gateway), utcnow())
        self._recorder_wake.set()
        if status is GatewayStatus.ONLINE:
            self.wake()

    async def _write_statuses(self) -> None:
        if not self._statuses:
            return
        pending, self._statuses = self._statuses, {}
        try:
            async with self._sessionmaker.begin() as session:
                for gateway, (status, detail, health, at) in pending.items():
                    await session.execute(
                        update(GatewayRow)
                        # Only while this node holds it: a node that just lost a gateway
                        # must not write over its new owner's claim.
                        .where(
                            GatewayRow.name == gateway,
                            or_(GatewayRow.node == self.node, GatewayRow.node.is_(None)),
                        )
                        .values(status=status, status_detail=detail, last_seen_at=at, **health)
                    )
                    await samples.record(
                        session, gateway, status=status, signal=health.get("signal"), now=at
                    )
                    await self._presence(session, gateway, status, detail)
        except (SQLAlchemyError, OSError) as exc:
            for gateway, value in pending.items():  # newer ones win; try again at the next
                self._statuses.setdefault(gateway, value)
            log.warning(
                "could not record gateway statuses", extra={"error": describe_db_error(exc)}
            )

    async def _presence(
        self, session: AsyncSession, gateway: str, status: str, detail: str
    ) -> None:
        """``gateway.online``/``gateway.offline`` for modems and the fake gateway, once per
        change even with several nodes (the update is conditional). Phones keep their own
        presence (services.phones), from heartbeats and their socket."""
        online = status == GatewayStatus.ONLINE.value
        changed = await session.execute(
            update(GatewayRow)
            .where(
                GatewayRow.name == gateway,
                GatewayRow.kind != "android",
                GatewayRow.presence != "online" if online else GatewayRow.presence == "online",
            )
            .values(presence="online" if online else "offline")
        )
        if getattr(changed, "rowcount", 0):
            if online:
                events.gateway_changed(session, "gateway.online", gateway, node=self.node)
            else:
                events.gateway_changed(
                    session, "gateway.offline", gateway, status=status, reason=detail
                )

    def health_of(self, gateway: str) -> dict[str, Any]:
        """What a gateway knows of itself worth showing: signal bars, its SIM's number."""
        driver = self.gateways.get(gateway)
        if driver is None:
            return {}
        found: dict[str, Any] = {}
        if driver.signal_bars is not None:
            found["signal"] = driver.signal_bars
        if driver.own_number:
            found["number"] = driver.own_number
        return found

    # --- housekeeping ---------------------------------------------------------------------

    async def _reclaim(self, *, own_only: bool) -> None:
        """Queue again what is 'sending' with an expired lease (or, at start, what this
        node had out when it stopped)."""
        now = utcnow()
        cond = [Message.status == S.SENDING.value]
        if own_only:
            cond.append(Message.lease_owner == self.node)
        else:
            cond.append(Message.lease_expires_at < now)
        async with self._sessionmaker.begin() as session:
            stmt = select(Message).where(*cond).limit(1000)
            if self._skip_locked:
                stmt = stmt.with_for_update(skip_locked=True)
            rows = (await session.scalars(stmt)).all()
            for m in rows:
                reason = "node restarted" if own_only else "lease expired"
                m.next_attempt_at = now
                move(session, m, S.QUEUED, {"reason": reason, "gateway": m.gateway}, now=now)
        if rows:
            log.warning(
                "messages returned to the queue",
                extra={"count": len(rows), "reason": "restart" if own_only else "lease expired"},
            )
            self.wake()

    async def _expire(self) -> None:
        now = utcnow()
        async with self._sessionmaker.begin() as session:
            expired: list[Message] = []
            for status in CLAIMABLE:  # each a range scan of ix_messages_expiry
                stmt = (
                    select(Message)
                    .where(
                        Message.status == status.value,
                        Message.expires_at.is_not(None),
                        Message.expires_at <= now,
                    )
                    .limit(1000)
                )
                if self._skip_locked:
                    stmt = stmt.with_for_update(skip_locked=True)
                expired += (await session.scalars(stmt)).all()
            for m in expired:
                move(session, m, S.EXPIRED, {"reason": "ttl passed before sending"}, now=now)
