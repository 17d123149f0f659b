"""Everything a running app holds: built once in create_app and injected into routes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from simgate.config import Settings
from simgate.services.auth import KeyAuthenticator
from simgate.services.dispatcher import Dispatcher
from simgate.services.gateway_manager import GatewayManager
from simgate.services.outbound import Outbound
from simgate.services.request_log import RequestLog
from simgate.services.sessions import LoginThrottle
from simgate.services.waiters import StatusWaiters
from simgate.store.engine import make_sessionmaker
from simgate.web.metrics import Metrics


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    metrics: Metrics
    authenticator: KeyAuthenticator
    request_log: RequestLog
    login_throttle: LoginThrottle
    waiters: StatusWaiters
    dispatcher: Dispatcher
    gateways: GatewayManager
    outbound: Outbound

    @classmethod
    def build(cls, settings: Settings, engine: AsyncEngine) -> Runtime:
        sessionmaker = make_sessionmaker(engine)
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
        waiters = StatusWaiters(sessionmaker)
        dispatcher = Dispatcher(sessionmaker, settings, on_status=waiters.notify)
        gateways = GatewayManager(sessionmaker, settings, dispatcher)
        outbound = Outbound(sessionmaker, settings, wake=dispatcher.wake)
        return cls(
            settings,
            engine,
            sessionmaker,
            metrics,
            authenticator,
            request_log,
            LoginThrottle(),
            waiters,
            dispatcher,
            gateways,
            outbound,
        )
