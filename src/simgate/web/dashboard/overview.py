"""The overview page: gateways at a glance, the queue, today's figures, and charts of
messages per hour (last 24 h) and per day (last 14 days)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from simgate.services import gateways as gateway_service
from simgate.services import stats
from simgate.services.apps import list_apps
from simgate.web.dashboard.charts import bar_chart, legend
from simgate.web.dashboard.core import Viewer
from simgate.web.runtime import Runtime

HOURS, DAYS = 24, 14


async def page(db: AsyncSession, viewer: Viewer, runtime: Runtime) -> dict[str, Any]:
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    apps = await list_apps(db, owner=viewer.owner)
    app_ids = None if viewer.is_admin else [a.id for a in apps]
    gateways = await gateway_service.list_all(
        db, offline_after=runtime.settings.gateway_offline_after
    )
    hour0 = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    hourly = await stats.series(
        db, start=hour0, step=timedelta(hours=1), count=HOURS, app_ids=app_ids
    )
    day0 = today - timedelta(days=DAYS - 1)
    daily = await stats.series(db, start=day0, step=timedelta(days=1), count=DAYS, app_ids=app_ids)
    by_gateway = await stats.per_gateway(db, since=today) if viewer.is_admin else {}
    counts: dict[str, int] = {}
    for g in gateways:
        counts[g.status] = counts.get(g.status, 0) + 1
    return {
        "now": now,
        "apps": apps,
        "gateways": gateways,
        "gateway_counts": counts,
        "by_gateway": by_gateway,
        "today": await stats.tally(db, since=today, app_ids=app_ids),
        "queue": await stats.queue_depth(db, app_ids=app_ids),
        "hourly_chart": bar_chart(
            hourly,
            [t.strftime("%H:00") for t in hourly.edges()],
            title="Messages per hour, last 24 hours (UTC)",
        ),
        "daily_chart": bar_chart(
            daily,
            [t.strftime("%d %b") for t in daily.edges()],
            title="Messages per day, last 14 days (UTC)",
        ),
        "legend": legend(),
    }
