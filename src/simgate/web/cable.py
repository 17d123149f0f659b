"""``/cable``: seed 003's Action Cable endpoint for phones, a thin loop around
``protocols.cable``. The phone authenticates with ``?api_key=gw_live_…`` (or an
``Authorization: Bearer`` header), subscribes to ``GatewayChannel``, and then takes
``send_sms`` and sends ``heartbeat``, ``sms_received`` and ``delivery_status``.

A wrong or deactivated key is answered the way Rails does it: the socket opens, gets one
``disconnect`` frame (``reason: "unauthorized"``, ``reconnect: false``, so the official
clients stop retrying) and closes; it is never subscribed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from fastapi import WebSocket
from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocketDisconnect

from simgate.domain.keys import looks_like_app_key
from simgate.domain.routing import TokenBucket
from simgate.errors import SimgateError
from simgate.protocols.cable import (
    CableConnection,
    Perform,
    Subscribed,
    Unsubscribed,
    choose_subprotocol,
)
from simgate.services import phones
from simgate.services.phone_hub import Link
from simgate.store.engine import describe_db_error
from simgate.web.runtime import Runtime

log = logging.getLogger(__name__)
# A phone sends a heartbeat a minute and a frame per SMS; bursts of inbound SMS come in
# tens. Beyond this it is flooding: told so, then disconnected.
FRAMES_PER_MINUTE = 1200
FRAME_BURST = 200
STRIKES = 20


def _key(websocket: WebSocket) -> str:
    key = websocket.query_params.get("api_key")
    if key:
        return key.strip()
    scheme, _, token = (websocket.headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _refuse(websocket: WebSocket, conn: CableConnection, error: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(conn.disconnect("unauthorized", reconnect=False, error=error))
        await websocket.close(code=1008)


async def cable(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    await websocket.accept(subprotocol=choose_subprotocol(websocket.scope.get("subprotocols", [])))
    conn = CableConnection()
    key = _key(websocket)
    if not key:
        await _refuse(websocket, conn, "Missing API key: connect to /cable?api_key=gw_live_…")
        return
    if looks_like_app_key(key):
        await _refuse(websocket, conn, "Invalid API key: this is an app key; phones use gw_live_")
        return
    try:
        phone = await runtime.phone_auth.authenticate(key)
    except (SQLAlchemyError, OSError) as exc:
        log.warning(
            "phone connection: database unavailable", extra={"error": describe_db_error(exc)}
        )
        with contextlib.suppress(Exception):
            await websocket.send_text(conn.disconnect("server_unavailable", reconnect=True))
            await websocket.close(code=1013)
        return
    if phone is None or not phone.active:
        await _refuse(websocket, conn, "Invalid API key" if phone is None else "Gateway inactive")
        return
    await websocket.send_text(conn.welcome())

    async def close() -> None:
        with contextlib.suppress(Exception):
            await websocket.close()

    link = Link(phone, conn, websocket.send_text, close)
    await runtime.phones.attach(link)
    log.info("phone connected", extra={"gateway": phone.name})
    try:
        runtime.phones.online(phone)
        await _serve(runtime, websocket, link)
    finally:
        link.shut()
        await runtime.phones.detach(link)
        await link.wait_closed()
        log.info("phone disconnected", extra={"gateway": phone.name})


async def _serve(runtime: Runtime, websocket: WebSocket, link: Link) -> None:
    conn = link.conn
    flood = TokenBucket(
        rate_per_minute=FRAMES_PER_MINUTE, burst=FRAME_BURST, updated=time.monotonic()
    )
    strikes = 0
    while not link.closed:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        frame: str | bytes = message.get("text") or message.get("bytes") or ""
        now = time.monotonic()
        if not flood.available(now):
            strikes += 1
            if strikes >= STRIKES:
                link.shut(conn.disconnect("flooding", reconnect=True))
                log.warning("phone flooding its socket; disconnected", extra={"gateway": link.name})
                return
            link.offer('{"type":"error","message":"too many frames; slow down"}')
            continue
        flood.take(now)
        event = conn.receive(frame)
        for out in conn.frames_to_send():
            link.offer(out)
        if isinstance(event, Subscribed | Unsubscribed):
            await runtime.phones.changed(link.name)
        elif isinstance(event, Perform):
            answer = await _perform(runtime, link, event)
            link.offer(answer)


async def _perform(runtime: Runtime, link: Link, event: Perform) -> str:
    conn, phone, fields = link.conn, link.phone, event.fields
    try:
        result: dict[str, Any]
        if event.action == "heartbeat":
            async with runtime.sessionmaker.begin() as session:
                status = await phones.heartbeat(session, phone=phone, data=fields, via="cable")
            result = {"gateway_status": status}
        elif event.action == "sms_received":
            async with runtime.sessionmaker.begin() as session:
                message_id, _ = await phones.receive_sms(session, phone=phone, data=fields)
            result = {"message_id": message_id}
        elif event.action == "delivery_status":
            async with runtime.sessionmaker() as session:
                report = await phones.check_status(session, phone=phone, data=fields)
            await runtime.phones.report(phone.name, report)
            result = {"message_id": report.message_id, "status": report.status}
        elif event.action == "ping":
            result = {}
        else:
            return conn.error(
                event,
                f"unknown action {event.action!r}; use heartbeat, sms_received or delivery_status",
            )
    except SimgateError as exc:
        return conn.error(event, exc.message)
    except (SQLAlchemyError, OSError) as exc:
        log.warning(
            "phone action failed", extra={"action": event.action, "error": describe_db_error(exc)}
        )
        return conn.error(event, "the server could not store it just now; send it again")
    return conn.reply(event, {"action": "ack", "for": event.action, "success": True, **result})
