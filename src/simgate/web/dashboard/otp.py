"""Dashboard pages: one-time passcodes (recent verifications, never their codes, and the
conversion ratio per app over the last 24 hours)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from simgate.domain.otp import Status
from simgate.services import otp as otp_service
from simgate.services.apps import list_apps
from simgate.store.types import utcnow
from simgate.web.dashboard.core import SessionDep, Viewer, ViewerDep, render
from simgate.web.routing import Router

router = Router(include_in_schema=False)
STATUSES = tuple(s.value for s in Status)


async def _context(request: Request, db: SessionDep, viewer: Viewer) -> dict[str, Any]:
    apps = await list_apps(db, owner=viewer.owner)
    app = request.query_params.get("app", "")[:64]
    status = request.query_params.get("status", "")
    status = status if status in STATUSES else ""
    visible = None if viewer.is_admin else [a.id for a in apps]
    chosen = [a.id for a in apps if a.name == app] if app else visible
    rows = await otp_service.recent(db, app_ids=chosen, status=status or None, limit=100)
    counts = await otp_service.counts_since(db, since=utcnow() - timedelta(days=1), app_ids=visible)
    ratios = {name: ratio for (name,), ratio in otp_service.conversion_samples(counts)}
    now = utcnow()
    verifications = [
        {
            "id": v.id,
            "app": name or "simgate",
            "phone": v.phone,
            # A pending one whose time ran out is expired (the sweep writes it down soon).
            "status": Status.EXPIRED.value
            if v.status == Status.PENDING.value and v.expires_at <= now
            else v.status,
            "attempts": v.attempts,
            "max_attempts": v.max_attempts,
            "sends": v.sends,
            "created_at": v.created_at,
            "expires_at": v.expires_at,
        }
        for v, name in rows
    ]
    summary = [
        {
            "app": name,
            "started": sum(c.values()),
            "approved": c.get(Status.APPROVED.value, 0),
            "pending": c.get(Status.PENDING.value, 0),
            "ratio": ratios.get(name),
        }
        for name, c in sorted(counts.items())
    ]
    return {
        "apps": apps,
        "filters": {"app": app, "status": status},
        "statuses": STATUSES,
        "verifications": verifications,
        "summary": summary,
    }


@router.get("/admin/otp", response_model=None)
async def otp_page(request: Request, db: SessionDep, viewer: ViewerDep) -> Response:
    return render(request, "otp.html", await _context(request, db, viewer), section="otp")


@router.get("/admin/otp/live", response_model=None)
async def otp_live(request: Request, db: SessionDep, viewer: ViewerDep) -> Response:
    return render(request, "_otp_live.html", await _context(request, db, viewer))
