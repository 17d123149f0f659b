"""Tables. Every schema change is an Alembic migration in ``migrations/versions``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from simgate.store.types import UTCDateTime, utcnow

# Explicit constraint names so migrations can alter them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BinaryString255 = String(255).with_variant(
    mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb"
)

# BIGINT ids on servers, INTEGER on SQLite (only INTEGER PRIMARY KEY autoincrements there).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class App(Base):
    __tablename__ = "apps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    owner_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Sending limits (None: unlimited) and an allow-list of destination countries
    # ("DE,AT"; empty: any) against SMS pumping.
    rate_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rate_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allowed_countries: Mapped[str] = mapped_column(String(255), default="")


class Session(Base):
    """A dashboard login. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("apps.id", ondelete="CASCADE"), index=True
    )
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    scopes: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiRequest(Base):
    """One authenticated API call (seed 000's request log); pruned by age."""

    __tablename__ = "api_requests"
    __table_args__ = (Index("ix_api_requests_app_id_created_at", "app_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    app_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("apps.id", ondelete="SET NULL"), nullable=True
    )
    key_prefix: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(8))
    endpoint: Mapped[str] = mapped_column(String(255))
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")


class AuditEvent(Base):
    """Who changed what: accounts, apps, keys (and later gateways and settings)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Counter(Base):
    """Small named integers shared by all nodes (e.g. the auth generation)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


def _partial(name: str, *columns: str) -> Index:
    """An index of the rows whose last column is set, on PostgreSQL and SQLite; MariaDB
    has no partial indexes and indexes every row."""
    where = text(f"{columns[-1]} IS NOT NULL")
    return Index(name, *columns, postgresql_where=where, sqlite_where=where)


class Message(Base):
    """One SMS, outbound or inbound. Outbound rows are the durable queue: the dispatcher
    claims them with a lease that expires, so a crash anywhere loses nothing."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_claim", "status", "priority", "next_attempt_at", "id"),
        # Partial where the database has them (migration 0008): a queued message has
        # none of these three columns set, and every query on them compares the column.
        _partial("ix_messages_expiry", "status", "expires_at"),
        _partial("ix_messages_lease", "status", "lease_expires_at"),
        Index("ix_messages_app_id_id", "app_id", "id"),
        Index("ix_messages_direction_id", "direction", "id"),
        _partial("ix_messages_gateway_ref", "gateway", "gateway_ref"),
        Index("ix_messages_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    direction: Mapped[str] = mapped_column(String(8))
    app_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("apps.id", ondelete="SET NULL"), nullable=True
    )
    to_number: Mapped[str] = mapped_column(String(32), index=True)
    from_number: Mapped[str] = mapped_column(String(64), default="")
    body: Mapped[str] = mapped_column(Text)
    encoding: Mapped[str] = mapped_column(String(8))
    segments: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    gateway_pinned: Mapped[str | None] = mapped_column(String(64), nullable=True)
    gateway: Mapped[str | None] = mapped_column(String(64), nullable=True)
    avoid_gateway: Mapped[str | None] = mapped_column(String(64), nullable=True)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    gateway_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(255), nullable=True)
    error_hint: Mapped[str | None] = mapped_column(String(255), nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The SIM asked for (outbound) or that received it (inbound), on phones with two.
    sim_slot: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    # Inbound: a hash of (gateway, sender, time, body), so a phone's retry is stored once.
    inbound_key: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    # Inbound: when an app marked it read; when an admin deleted it (kept until pruned).
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Outbound: where to POST this message's status changes (signed like webhooks).
    status_callback: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    # Outbound: what everyone but the recipient sees of a secret text (a one-time code as
    # dots); the body itself is overwritten with it once the message has left the queue.
    body_redacted: Mapped[str | None] = mapped_column(Text, nullable=True)


class MessageEvent(Base):
    """Every status change of a message, with its time and detail."""

    __tablename__ = "message_events"
    __table_args__ = (Index("ix_message_events_message_id_id", "message_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("messages.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class IdempotencyKey(Base):
    """The answer given to a request with an Idempotency-Key, replayed for retries."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("app_id", "key", name="uq_idempotency_keys_app_id_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_id: Mapped[int] = mapped_column(BigId, ForeignKey("apps.id", ondelete="CASCADE"))
    # Compared byte for byte: MariaDB's default collation would treat "abc" and "ABC " as one.
    key: Mapped[str] = mapped_column(BinaryString255)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AppUsage(Base):
    """Messages an app sent per minute and per day, for its limits (shared by all nodes)."""

    __tablename__ = "app_usage"

    app_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    window: Mapped[str] = mapped_column(String(8), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class Gateway(Base):
    """A way out to the radio network: a modem, an Android phone, or the fake gateway."""

    __tablename__ = "gateways"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rate_per_minute: Mapped[int] = mapped_column(Integer, default=0)
    max_in_flight: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="offline")
    status_detail: Mapped[str] = mapped_column(String(255), default="")
    # The node running it now (its claim, renewed with ``last_seen_at`` as a heartbeat).
    node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Where it may run (domain.placement): any node, the nodes of one host, or one node.
    place_kind: Mapped[str] = mapped_column(String(8), default="any")
    place_host_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    place_host_name: Mapped[str] = mapped_column(String(255), default="")
    place_node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    number: Mapped[str | None] = mapped_column(String(32), nullable=True)  # its SIM's number
    deactivated_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Phones (seed 003): the registered name and device, the key (only its SHA-256), what
    # the phone reports, and whether it counts as online (for gateway.online/offline).
    label: Mapped[str] = mapped_column(String(128), default="")
    device_id: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    key_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    key_prefix: Mapped[str | None] = mapped_column(String(24), nullable=True)
    device_info: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    app_version: Mapped[str] = mapped_column(String(64), default="")
    sims: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    reported: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    presence: Mapped[str] = mapped_column(String(8), default="offline")
    signal: Mapped[int | None] = mapped_column(Integer, nullable=True)
    battery: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sent_count: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_count: Mapped[int] = mapped_column(BigInteger, default=0)
    received_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GatewaySample(Base):
    """A gateway's signal, battery and status at one moment, for its history chart."""

    __tablename__ = "gateway_samples"
    __table_args__ = (Index("ix_gateway_samples_gateway_at", "gateway", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    signal: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    battery: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(16))


class Node(Base):
    """A running ``simgate serve`` process, as its heartbeat last told: which host it is on
    (a stable id, not the hostname), and what it noticed (ports missing on its host)."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    host_id: Mapped[str] = mapped_column(String(64), index=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(255), default="")
    version: Mapped[str] = mapped_column(String(32), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class EnrollmentToken(Base):
    """Lets one phone register itself (``POST /api/v1/gateway/register``); only its SHA-256
    is stored, and a successful registration uses it up."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(24))
    label: Mapped[str] = mapped_column(String(128), default="")
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    gateway: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Event(Base):
    """Something that happened, for webhooks and the dashboard: ``message.received``,
    ``message.sent``, ``gateway.online``, … Written in the transaction that made it happen,
    so it is the webhooks' outbox: a worker fans each one out to the endpoints that want it
    (``dispatched`` once it has) and nothing is lost across crashes."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_dispatched_id", "dispatched", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Whose event it is (an outbound message's app); None: every app may subscribe to it.
    app_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    # Deliveries with the same key reach an endpoint in order (a message id, a gateway).
    order_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A message's own status_callback URL, when it had one.
    callback_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False)


class WebhookEndpoint(Base):
    """Where an app wants events POSTed. ``secret`` signs them (Standard Webhooks); after a
    rotation the previous secret signs too until ``previous_expires_at``. The secrets are
    kept as they are because signing needs them. One hidden endpoint per app
    (``is_callback``) holds the secret that signs per-message status callbacks."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    app_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("apps.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048), default="")
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(255), default="")
    secret: Mapped[str] = mapped_column(String(80))
    previous_secret: Mapped[str | None] = mapped_column(String(80), nullable=True)
    previous_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_callback: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str] = mapped_column(String(255), default="")
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Since when every delivery to it failed (None: the last one worked).
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint, retried until delivered or given up. Claimed with an
    expiring lease, like outbound messages, so several nodes deliver it once between them."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint(
            "event_id", "endpoint_id", name="uq_webhook_deliveries_event_id_endpoint_id"
        ),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at", "id"),
        Index("ix_webhook_deliveries_order", "endpoint_id", "order_key", "status", "id"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    app_id: Mapped[int] = mapped_column(BigId)
    url: Mapped[str] = mapped_column(String(2048))
    order_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # pending, delivered, failed (gave up), canceled (endpoint disabled or deleted)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebhookAttempt(Base):
    """One try of a delivery: what the receiver answered and how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id_id", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str] = mapped_column(String(255), default="")
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
    manual: Mapped[bool] = mapped_column(Boolean, default=False)


class OtpVerification(Base):
    """A one-time passcode sent to a phone. Codes are never stored: ``code_hashes`` holds
    an HMAC (with a secret outside the database) of each code sent for it."""

    __tablename__ = "otp_verifications"
    __table_args__ = (
        Index("ix_otp_verifications_lookup", "app_id", "phone", "status"),
        Index("ix_otp_verifications_expiry", "status", "expires_at"),
        Index("ix_otp_verifications_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("apps.id", ondelete="CASCADE"), nullable=True
    )
    phone: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    length: Mapped[int] = mapped_column(SmallInteger)
    code_hashes: Mapped[list[str]] = mapped_column(JSON)
    key_id: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(SmallInteger)
    sends: Mapped[int] = mapped_column(SmallInteger, default=0)
    max_sends: Mapped[int] = mapped_column(SmallInteger)
    template: Mapped[str] = mapped_column(Text)
    app_label: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(16), default="")
    gateway: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message_ids: Mapped[list[str]] = mapped_column(JSON)
    last_sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OtpLimit(Base):
    """Verifications started per phone, app or client address in fixed hourly windows,
    shared by every node (a conditional UPDATE counts, so nodes cannot overshoot)."""

    __tablename__ = "otp_limits"

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
