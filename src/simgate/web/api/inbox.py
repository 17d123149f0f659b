"""The inbox API: received SMS from every gateway, to list, read, mark, delete and wait for
(``GET /api/v1/inbox/wait``, for automated tests that must read a code from an SMS)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel, Field

from simgate.domain.keys import Scope
from simgate.errors import TimedOut
from simgate.services import inbox
from simgate.services.auth import Principal
from simgate.web.deps import AdminPrincipal, RuntimeDep, SessionDep, require
from simgate.web.routing import Router

router = Router(prefix="/api/v1/inbox", tags=["inbox"])
InboxPrincipal = Annotated[Principal, Depends(require(Scope.INBOX))]


class InboxItem(BaseModel):
    id: str
    direction: str = "inbound"
    from_: str = Field(alias="from", description="The sender: a number or a name.")
    to: str | None = Field(description="The number that received it, when the gateway knows.")
    body: str
    received_at: str | None
    gateway: str | None
    sim_slot: int | None
    segments: int
    read_at: str | None
    incomplete: bool | None = Field(
        default=None, description="True when parts of a long SMS never arrived."
    )
    match: str | None = Field(
        default=None,
        description="With `pattern`: its first group, or the whole match when it has none.",
    )


class InboxPage(BaseModel):
    data: list[InboxItem]
    next_cursor: str | None


def _query(
    from_: str | None,
    to: str | None,
    gateway: str | None,
    sim_slot: int | None,
    contains: str | None,
    pattern: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
    unread: bool | None = None,
) -> inbox.InboxQuery:
    return inbox.InboxQuery.parse(
        sender=from_,
        to=to,
        gateway=gateway,
        sim_slot=sim_slot,
        contains=contains,
        pattern=pattern,
        since=since,
        until=until,
        unread=unread,
    )


FromQ = Annotated[
    str | None, Query(alias="from", max_length=64, description="The sender (write + as %2B).")
]
ToQ = Annotated[str | None, Query(max_length=64, description="The receiving number.")]
GatewayQ = Annotated[str | None, Query(max_length=64, description="The receiving gateway.")]
SimQ = Annotated[int | None, Query(description="The receiving SIM slot (1 or 2).")]
ContainsQ = Annotated[
    str | None, Query(max_length=inbox.MAX_CONTAINS, description="Text in the body.")
]
PatternQ = Annotated[
    str | None,
    Query(
        max_length=inbox.MAX_PATTERN,
        description="A regular expression (RE2 syntax: linear time, no backreferences).",
    ),
]


@router.get(
    "",
    summary="Received SMS, newest first, with filters and cursor pagination",
    response_model=InboxPage,
    response_model_exclude_unset=True,
)
async def list_inbox(
    principal: InboxPrincipal,
    session: SessionDep,
    from_: FromQ = None,
    to: ToQ = None,
    gateway: GatewayQ = None,
    sim_slot: SimQ = None,
    contains: ContainsQ = None,
    pattern: PatternQ = None,
    since: Annotated[datetime | None, Query(description="Received at or after (ISO-8601).")] = None,
    until: Annotated[datetime | None, Query(description="Received at or before.")] = None,
    unread: Annotated[bool | None, Query(description="Only unread (true) or read (false).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    query = _query(from_, to, gateway, sim_slot, contains, pattern, since, until, unread)
    data, next_cursor = await inbox.list_inbox(session, query, limit=limit, cursor=cursor)
    return {"data": data, "next_cursor": next_cursor}


async def _until_disconnected(request: Request) -> None:
    """Returns once the client has gone (checked every second)."""
    while True:
        if await request.is_disconnected():
            return
        await asyncio.sleep(1.0)


@router.get(
    "/wait",
    summary="Wait for an SMS: answers the first match that arrives after `since`",
    description="Long-polls until a received SMS matches every filter given, arriving after "
    "`since` (default: the moment of the call), and answers it (with `match`, the "
    "pattern's first group, for reading a code); 408 after `timeout` seconds (at most "
    "120). Woken by push, on every node. An app may hold "
    "`SIMGATE_INBOX_WAITERS_PER_APP` waits at once (429 beyond).",
    response_model=InboxItem,
    response_model_exclude_unset=True,
    responses={408: {"description": "Nothing matching arrived in time."}},
)
async def wait(
    request: Request,
    principal: InboxPrincipal,
    runtime: RuntimeDep,
    from_: FromQ = None,
    to: ToQ = None,
    gateway: GatewayQ = None,
    sim_slot: SimQ = None,
    contains: ContainsQ = None,
    pattern: PatternQ = None,
    since: Annotated[
        datetime | None, Query(description="Arrived after this (ISO-8601); default: now.")
    ] = None,
    timeout: Annotated[
        float, Query(gt=0, le=inbox.MAX_WAIT, description="Seconds to wait (at most 120).")
    ] = 30.0,
) -> dict[str, Any]:
    query = _query(from_, to, gateway, sim_slot, contains, pattern)
    waiting = asyncio.ensure_future(
        runtime.inbox.wait(query, app_id=principal.app_id, since=since, timeout=timeout)
    )
    gone = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, gone):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if not waiting.done() or waiting.cancelled():
        raise TimedOut("the client went away")
    found = waiting.result()
    if found is None:
        raise TimedOut(f"no matching SMS arrived within {timeout:g} s", field="timeout")
    return found


@router.get(
    "/{message_id}",
    summary="One received SMS",
    response_model=InboxItem,
    response_model_exclude_unset=True,
)
async def get_one(message_id: str, principal: InboxPrincipal, session: SessionDep) -> Any:
    return await inbox.get(session, message_id)


@router.post(
    "/{message_id}/read",
    summary="Mark a received SMS read",
    response_model=InboxItem,
    response_model_exclude_unset=True,
)
async def mark_read(message_id: str, principal: InboxPrincipal, session: SessionDep) -> Any:
    item = await inbox.mark_read(session, message_id)
    await session.commit()
    return item


@router.delete(
    "/{message_id}/read",
    summary="Mark a received SMS unread",
    response_model=InboxItem,
    response_model_exclude_unset=True,
)
async def mark_unread(message_id: str, principal: InboxPrincipal, session: SessionDep) -> Any:
    item = await inbox.mark_read(session, message_id, read=False)
    await session.commit()
    return item


@router.delete(
    "/{message_id}",
    status_code=204,
    summary="Delete a received SMS (admin): hidden at once, removed by the next prune",
)
async def delete(message_id: str, principal: AdminPrincipal, session: SessionDep) -> Response:
    await inbox.soft_delete(session, message_id)
    await session.commit()
    return Response(status_code=204)
