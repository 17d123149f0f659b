"""Android phone gateways (seed 003): registration and keys, heartbeats and presence,
received SMS and the checks on status reports. Transport-free: the HTTP routes and the
cable endpoint both call these, so the two behave the same."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from simgate.domain import phone as phone_numbers
from simgate.domain.keys import generate_enrollment_token, generate_gateway_key, hash_key
from simgate.domain.messages import Direction, Received
from simgate.domain.placement import Placement
from simgate.errors import Forbidden, Invalid, NotFound, SimgateError, Unauthorized
from simgate.services import audit, events, gateways, inbound, samples
from simgate.services.apps import bump_auth_generation
from simgate.services.phone_auth import Phone
from simgate.store.models import EnrollmentToken, Message
from simgate.store.models import Gateway as GatewayRow
from simgate.store.types import utcnow

KIND = "android"
STATUSES = ("sent", "delivered", "failed", "error")  # what a phone reports on a message
MAX_ENROLL_HOURS = 24 * 30


class DuplicateDevice(SimgateError):
    status = 400  # seed 003: "400 Bad Request", "Device ID already exists"
    code = "device_exists"


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    label: str
    device_id: str | None
    id: int
    key: str  # the secret: shown once


def _slug(label: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", label.strip().lower()).strip("-._")
    return (slug or "phone")[:56]


async def _free_name(session: AsyncSession, label: str) -> str:
    base = _slug(label)
    taken = set(
        await session.scalars(
            select(GatewayRow.name).where(
                or_(GatewayRow.name == base, GatewayRow.name.like(f"{base}-%"))
            )
        )
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _text(data: dict[str, Any], name: str, *, limit: int, required: bool = False) -> str:
    value = data.get(name)
    if value is None:
        if required:
            raise Invalid(f"{name} is required", field=name)
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string", field=name)
    value = value.strip()
    if required and not value:
        raise Invalid(f"{name} must not be empty", field=name)
    if len(value) > limit:
        raise Invalid(f"{name} is longer than {limit} characters", field=name)
    return value


def _int(data: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise Invalid(f"{name} must be a whole number from {lo} to {hi}", field=name)
    if not lo <= int(value) <= hi:
        raise Invalid(f"{name} must be from {lo} to {hi}, not {value}", field=name)
    return int(value)


def _device_info(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Invalid("device_info must be an object", field="device_info")
    out = {}
    for key, value in list(raw.items())[:20]:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise Invalid(f"device_info.{key} must be a string", field=f"device_info.{key}")
        out[str(key)[:64]] = str(value)[:128]
    return out


def parse_sims(raw: Any) -> list[dict[str, Any]] | None:
    """``[{"slot": 1, "number": "+49…", "operator": "…", "signal_strength": 4}, …]``."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > 4:
        raise Invalid("sims must be a list of at most 4 SIMs", field="sims")
    out = []
    for i, sim in enumerate(raw):
        where = f"sims[{i}]"
        if not isinstance(sim, dict):
            raise Invalid(f"{where} must be an object", field=where)
        slot = _int(sim, "slot", 1, 4)
        if slot is None:
            raise Invalid(f"{where}.slot is required (1 or 2)", field=f"{where}.slot")
        entry: dict[str, Any] = {"slot": slot}
        number = _text(sim, "number", limit=32)
        if number:
            try:
                entry["number"] = phone_numbers.normalise(number).e164
            except phone_numbers.InvalidNumber as exc:
                raise Invalid(
                    f"{where}.number: {number!r} {exc}", field=f"{where}.number"
                ) from None
        operator = _text(sim, "operator", limit=64)
        if operator:
            entry["operator"] = operator
        signal = _int(sim, "signal_strength", 0, 5)
        if signal is not None:
            entry["signal_strength"] = signal
        out.append(entry)
    return sorted(out, key=lambda s: s["slot"])


def record_event(session: AsyncSession, kind: str, subject: str, **data: Any) -> None:
    data.pop("gateway", None)
    events.gateway_changed(session, kind, subject, **data)


# --- registration and keys -----------------------------------------------------------------


async def create(
    session: AsyncSession,
    *,
    label: str,
    device_id: str | None,
    device_info: dict[str, str] | None = None,
    sims: list[dict[str, Any]] | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    placement: Placement | None = None,
    rate_per_minute: int = 0,
    max_in_flight: int = 4,
    actor: str,
) -> Registered:
    """A new phone gateway and its key (shown once)."""
    if device_id is not None:
        taken = await session.scalar(select(GatewayRow.id).where(GatewayRow.device_id == device_id))
        if taken is not None:
            raise DuplicateDevice("Device ID already exists", field="device_id")
    handle = name or await _free_name(session, label)
    info = await gateways.create(
        session,
        name=handle,
        kind=KIND,
        config=config or {},
        placement=placement or Placement.anywhere(),
        rate_per_minute=rate_per_minute,
        max_in_flight=max_in_flight,
        actor=actor,
    )
    key = generate_gateway_key()
    device = dict(device_info or {})
    try:
        await session.execute(
            update(GatewayRow)
            .where(GatewayRow.name == info.name)
            .values(
                label=label[:128],
                device_id=device_id,
                key_hash=key.digest,
                key_prefix=key.prefix,
                device_info=device or None,
                app_version=device.get("app_version", "")[:64],
                sims=sims,
            )
        )
    except IntegrityError:
        raise DuplicateDevice("Device ID already exists", field="device_id") from None
    row_id = await session.scalar(select(GatewayRow.id).where(GatewayRow.name == info.name))
    assert row_id is not None
    return Registered(info.name, label, device_id, row_id, key.secret)


async def register(
    session: AsyncSession,
    *,
    data: dict[str, Any],
    token: str | None,
    open_registration: bool,
    client: str,
) -> Registered:
    """``POST /api/v1/gateway/register``: with an enrollment token, or open registration."""
    now = utcnow()
    enrollment: EnrollmentToken | None = None
    if token is not None:
        enrollment = await session.scalar(
            select(EnrollmentToken).where(EnrollmentToken.token_hash == hash_key(token))
        )
        if enrollment is None or enrollment.used_at is not None or enrollment.expires_at < now:
            raise Unauthorized("Invalid, used or expired enrollment token")
    elif not open_registration:
        raise Unauthorized(
            "Registration needs an enrollment token: send 'Authorization: Bearer <token>' "
            "(an admin makes one with 'simgate gateway enroll-token')"
        )
    device_id = _text(data, "device_id", limit=128, required=True)
    label = _text(data, "name", limit=128) or device_id
    found = await create(
        session,
        label=label,
        device_id=device_id,
        device_info=_device_info(data.get("device_info")),
        sims=parse_sims(data.get("sims")),
        actor=f"register:{client}",
    )
    if enrollment is not None:
        # Used up only by this registration, and only once: two phones racing with one
        # token cannot both pass this conditional update.
        used = await session.execute(
            update(EnrollmentToken)
            .where(EnrollmentToken.id == enrollment.id, EnrollmentToken.used_at.is_(None))
            .values(used_at=now, gateway=found.name)
        )
        if not getattr(used, "rowcount", 0):
            raise Unauthorized("Invalid, used or expired enrollment token")
    return found


async def enrollment_token(
    session: AsyncSession, *, hours: float, label: str, actor: str
) -> tuple[str, datetime]:
    if not 0 < hours <= MAX_ENROLL_HOURS:
        raise Invalid(f"the token may last 1 minute to {MAX_ENROLL_HOURS} hours", field="ttl")
    token = generate_enrollment_token()
    expires = utcnow() + timedelta(hours=hours)
    session.add(
        EnrollmentToken(
            token_hash=token.digest,
            prefix=token.prefix,
            label=label[:128],
            created_by=actor[:80],
            created_at=utcnow(),
            expires_at=expires,
        )
    )
    audit.record(session, actor=actor, action="gateway.enroll_token", target=token.prefix)
    return token.secret, expires


async def list_enrollment_tokens(session: AsyncSession, limit: int = 50) -> list[EnrollmentToken]:
    """The newest tokens (only their prefixes: the secrets were shown once)."""
    return list(
        await session.scalars(
            select(EnrollmentToken).order_by(EnrollmentToken.id.desc()).limit(limit)
        )
    )


async def _phone_row(session: AsyncSession, name: str) -> GatewayRow:
    row = await session.scalar(select(GatewayRow).where(GatewayRow.name == name))
    if row is None:
        raise NotFound(f"no gateway named {name!r}", field="name")
    if row.kind != KIND:
        raise Invalid(f"gateway {name!r} is a {row.kind}, not a phone: it has no key", field="name")
    return row


async def rotate_key(session: AsyncSession, *, name: str, actor: str) -> str:
    """A new key for a phone; the old one is refused at once, on every node."""
    row = await _phone_row(session, name)
    key = generate_gateway_key()
    row.key_hash, row.key_prefix = key.digest, key.prefix
    await bump_auth_generation(session)
    audit.record(session, actor=actor, action="gateway.rotate_key", target=name)
    return key.secret


# --- heartbeats and presence ---------------------------------------------------------------


async def went_online(session: AsyncSession, *, gateway_id: int, name: str, via: str) -> bool:
    """Mark a phone online; records ``gateway.online`` when it was not (exactly once, even
    with several nodes: the update is conditional)."""
    changed = await session.execute(
        update(GatewayRow)
        .where(GatewayRow.id == gateway_id, GatewayRow.presence != "online")
        .values(presence="online")
    )
    if getattr(changed, "rowcount", 0):
        record_event(session, "gateway.online", name, gateway=name, via=via)
        return True
    return False


async def heartbeat(session: AsyncSession, *, phone: Phone, data: dict[str, Any], via: str) -> str:
    """Store what the phone reports; the status it has now."""
    status = _text(data, "status", limit=32) or "online"
    battery = _int(data, "battery_level", 0, 100)
    signal = _int(data, "signal_strength", 0, 5)
    reported: dict[str, Any] = {"status": status, "via": via}
    for counter in ("messages_sent", "messages_received"):
        value = _int(data, counter, 0, 2**53)
        if value is not None:
            reported[counter] = value
    sims = parse_sims(data.get("sims"))
    app_version = _text(data, "app_version", limit=64)
    values: dict[str, Any] = {"last_heartbeat_at": utcnow(), "reported": reported}
    if battery is not None:
        values["battery"] = battery
    if signal is not None:
        values["signal"] = signal
    if sims is not None:
        values["sims"] = sims
    if app_version:
        values["app_version"] = app_version
    await session.execute(update(GatewayRow).where(GatewayRow.id == phone.id).values(**values))
    await samples.record(
        session,
        phone.name,
        status=status,
        signal=signal,
        battery=battery,
        now=values["last_heartbeat_at"],
    )
    if status == "offline":  # the phone says it is going away
        await went_offline(
            session, gateway_id=phone.id, name=phone.name, reason="the phone said so"
        )
        return "offline"
    await went_online(session, gateway_id=phone.id, name=phone.name, via=via)
    return "online"


async def went_offline(session: AsyncSession, *, gateway_id: int, name: str, reason: str) -> bool:
    changed = await session.execute(
        update(GatewayRow)
        .where(GatewayRow.id == gateway_id, GatewayRow.presence == "online")
        .values(presence="offline")
    )
    if getattr(changed, "rowcount", 0):
        record_event(session, "gateway.offline", name, gateway=name, reason=reason)
        return True
    return False


async def sweep_offline(session: AsyncSession, *, now: datetime, offline_after: float) -> list[str]:
    """Phones with neither a heartbeat nor a connected socket for ``offline_after`` seconds
    become offline (``gateway.offline``). A node holding a phone's socket renews its
    ``last_seen_at`` every heartbeat, so a connected phone never ages out."""
    cutoff = now - timedelta(seconds=offline_after)
    stale = and_(
        GatewayRow.kind == KIND,
        GatewayRow.presence == "online",
        or_(GatewayRow.last_heartbeat_at.is_(None), GatewayRow.last_heartbeat_at < cutoff),
        or_(GatewayRow.last_seen_at.is_(None), GatewayRow.last_seen_at < cutoff),
    )
    rows = list(await session.execute(select(GatewayRow.id, GatewayRow.name).where(stale)))
    gone = []
    for gateway_id, name in rows:
        changed = await session.execute(
            update(GatewayRow).where(GatewayRow.id == gateway_id, stale).values(presence="offline")
        )
        if getattr(changed, "rowcount", 0):
            record_event(
                session,
                "gateway.offline",
                name,
                gateway=name,
                reason=f"no heartbeat and no connection for {offline_after:g} s",
            )
            gone.append(name)
    return gone


# --- received SMS and status reports -------------------------------------------------------


def _received_at(data: dict[str, Any]) -> datetime:
    raw = data.get("received_at")
    if raw is None:
        return utcnow()
    if not isinstance(raw, str):
        raise Invalid("received_at must be an ISO-8601 time", field="received_at")
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(
            f"received_at: {raw[:40]!r} is not an ISO-8601 time such as 2025-10-20T13:45:30Z",
            field="received_at",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=utcnow().tzinfo)  # no zone: UTC, as the seed writes it
    return when


def _sender(raw: str) -> str:
    """A phone number as E.164 where it is one; a sender name ("DHL") or short code as is."""
    try:
        return phone_numbers.normalise(raw).e164
    except phone_numbers.InvalidNumber:
        return raw


async def receive_sms(
    session: AsyncSession, *, phone: Phone, data: dict[str, Any]
) -> tuple[str, bool]:
    """Store a received SMS; its id and whether it is new. The same SMS sent again (the
    phone retrying after a lost answer) is stored once and answers the same id."""
    sender = _sender(_text(data, "phone_number", limit=64, required=True))
    body = data.get("message_body")
    if not isinstance(body, str):
        raise Invalid("message_body is required (a string)", field="message_body")
    if len(body) > 10_000:
        raise Invalid("message_body is longer than 10000 characters", field="message_body")
    when = _received_at(data)
    slot = _int(data, "sim_slot", 1, 4)
    key = hashlib.sha256(
        "\x00".join([phone.name, sender, when.isoformat(), body]).encode()
    ).hexdigest()
    existing = await session.scalar(select(Message.id).where(Message.inbound_key == key))
    if existing is not None:
        return existing, False
    row = await session.scalar(select(GatewayRow).where(GatewayRow.id == phone.id))
    to = receiving_number(row.sims if row else None, slot)
    item = Received(
        gateway=phone.name, sender=sender, body=body, received_at=when, to=to, sim_slot=slot
    )
    try:
        async with session.begin_nested():
            message_id = await inbound.store(session, item, inbound_key=key)
    except IntegrityError:  # the same retry on two nodes at once: the first one stored it
        existing = await session.scalar(select(Message.id).where(Message.inbound_key == key))
        if existing is None:
            raise
        return existing, False
    return message_id, True


def receiving_number(sims: list[dict[str, Any]] | None, slot: int | None) -> str:
    """The number of the SIM that received it, when the phone told us."""
    for sim in sims or ():
        if (slot is None or sim.get("slot") == slot) and sim.get("number"):
            return str(sim["number"])
    return ""


@dataclass(frozen=True, slots=True)
class StatusReport:
    message_id: str
    status: str
    error: str


async def check_status(
    session: AsyncSession, *, phone: Phone, data: dict[str, Any]
) -> StatusReport:
    """A status report, checked: the message must be one this phone was given."""
    message_id = _text(data, "message_id", limit=64, required=True)
    status = _text(data, "status", limit=32, required=True).lower()
    if status not in STATUSES:
        raise Invalid(f"status {status!r} is not one of {', '.join(STATUSES)}", field="status")
    error = _text(data, "error_message", limit=255)
    owner = await session.scalar(
        select(Message.gateway).where(
            Message.id == message_id, Message.direction == Direction.OUTBOUND.value
        )
    )
    if owner != phone.name:  # unknown, or another gateway's: the same answer for both
        raise NotFound(f"Message {message_id!r} not found for this gateway", field="message_id")
    return StatusReport(message_id, status, error)


def refuse_inactive(phone: Phone) -> None:
    if not phone.active:
        raise Forbidden("Gateway inactive")
