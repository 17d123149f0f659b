"""Everything a running app holds: built once in create_app and injected into routes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from simgate.config import Settings
from simgate.domain.ratelimit import FixedWindows
from simgate.drivers.kinds import DriverEnv
from simgate.services.auth import KeyAuthenticator
from simgate.services.changes import ChangeFeed
from simgate.services.dispatcher import Dispatcher
from simgate.services.gateway_manager import GatewayManager
from simgate.services.inbox import InboxWaiters
from simgate.services.notify import notify
from simgate.services.otp import Otp, conversion_samples, stat_samples
from simgate.services.outbound import Outbound
from simgate.services.phone_auth import PhoneAuthenticator
from simgate.services.phone_hub import PhoneHub
from simgate.services.request_log import RequestLog
from simgate.services.sessions import LoginThrottle
from simgate.services.waiters import StatusWaiters
from simgate.services.webhooks import WebhookWorker
from simgate.web.metrics import Metrics

PHONE_CHANNEL = "simgate_phone"
# Requests a minute per phone key on /api/v1/gateway/* (seed 003's limits). The seed asks
# for a heartbeat every 30-120 s and says "1 per minute"; six a minute never refuses a phone
# that keeps to the 30 s minimum, even when two beats fall into one fixed window.
PHONE_LIMITS = {"heartbeat": 6, "sms_received": 100, "sms_status": 1000, "register": 10}


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    feed: ChangeFeed
    metrics: Metrics
    authenticator: KeyAuthenticator
    request_log: RequestLog
    login_throttle: LoginThrottle
    waiters: StatusWaiters
    dispatcher: Dispatcher
    gateways: GatewayManager
    outbound: Outbound
    phone_auth: PhoneAuthenticator
    phones: PhoneHub
    phone_limits: dict[str, FixedWindows]
    inbox: InboxWaiters
    webhooks: WebhookWorker
    otp: Otp

    @classmethod
    def build(cls, settings: Settings, engine: AsyncEngine) -> Runtime:
        push = engine.url.get_backend_name() == "postgresql"
        feed = ChangeFeed(node=settings.node, notify=push)
        sessionmaker = feed.sessionmaker(engine)
        metrics = Metrics()
        authenticator = KeyAuthenticator(
            sessionmaker,
            cache_size=settings.auth_cache_size,
            marker_path=settings.auth_marker_path,
            sync_interval=settings.auth_sync_interval,
        )
        request_log = RequestLog(sessionmaker, on_drop=metrics.request_log_dropped.inc)
        metrics.add_callback_counters(
            {
                "simgate_auth_cache_hits": (
                    "API key checks answered from memory.",
                    lambda: authenticator.hits,
                ),
                "simgate_auth_cache_misses": (
                    "API key checks that read the database.",
                    lambda: authenticator.misses,
                ),
            }
        )
        waiters = StatusWaiters(sessionmaker, recheck=5.0 if push else 1.0)
        feed.listeners.append(waiters.changed)
        inbox = InboxWaiters(
            sessionmaker, per_app=settings.inbox_waiters_per_app, rescan=None if push else 1.0
        )
        feed.listeners.append(inbox.changed)
        hooks = WebhookWorker(sessionmaker, settings, metrics=metrics)
        feed.listeners.append(hooks.changed)
        metrics.add_gauges(
            {
                "simgate_inbox_waiters": (
                    "Open GET /api/v1/inbox/wait calls.",
                    lambda: inbox.waiting,
                ),
                "simgate_webhooks_in_flight": (
                    "Webhook deliveries being attempted on this node.",
                    lambda: hooks.in_flight,
                ),
                "simgate_status_waiters": (
                    "Callers waiting for a message's status (/api/sendsms).",
                    lambda: waiters.waiting,
                ),
            }
        )
        dispatcher = Dispatcher(sessionmaker, settings)
        phone_auth = PhoneAuthenticator(sessionmaker, cache_size=settings.auth_cache_size)

        async def tell_nodes(payload: str) -> None:
            if settings.backend == "postgresql":
                async with sessionmaker.begin() as session:
                    await notify(session, PHONE_CHANNEL, payload)

        hub = PhoneHub(phone_auth, dispatcher, sessionmaker, notify=tell_nodes)
        authenticator.listeners.append(hub.keys_changed)
        gateways = GatewayManager(sessionmaker, settings, dispatcher, env=DriverEnv(phones=hub))
        hub.on_change = gateways.wake
        outbound = Outbound(sessionmaker, settings, wake=dispatcher.wake)
        otp = Otp(sessionmaker, settings, outbound, metrics=metrics)
        metrics.add_labelled_gauge(
            "simgate_otp_verifications_24h",
            "Verifications started in the last 24 hours, by app and current status.",
            ["app", "status"],
            lambda: stat_samples(otp.stats),
        )
        metrics.add_labelled_gauge(
            "simgate_otp_conversion_ratio",
            "Share of the last 24 hours' decided verifications that were approved, per app "
            "(a falling ratio is the classic sign of SMS pumping).",
            ["app"],
            lambda: conversion_samples(otp.stats),
        )
        return cls(
            settings,
            engine,
            sessionmaker,
            feed,
            metrics,
            authenticator,
            request_log,
            LoginThrottle(),
            waiters,
            dispatcher,
            gateways,
            outbound,
            phone_auth,
            hub,
            {kind: FixedWindows(limit) for kind, limit in PHONE_LIMITS.items()},
            inbox,
            hooks,
            otp,
        )
