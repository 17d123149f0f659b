"""Cross-node wake-ups over PostgreSQL LISTEN/NOTIFY.

Chosen over Redis because the database is already there: a node that queues a message
sends ``pg_notify`` inside the same transaction, so the wake-up is delivered exactly when
the message becomes visible, and there is nothing more to run or secure. MariaDB has no
equivalent; there nodes fall back to the dispatcher's one-second poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def listen_forever(url: str, channels: dict[str, Callable[[str], None]]) -> None:
    """Call ``channels[c](payload)`` for each NOTIFY on channel ``c``; reconnect with
    backoff. After (re)connecting each is called once with an empty payload, for whatever
    happened while nobody listened."""
    delay = 0.5
    while True:
        conn: Any = None
        try:
            conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
            for channel, callback in channels.items():
                await conn.add_listener(channel, _call(callback))
            log.info("listening for wake-ups", extra={"channels": sorted(channels)})
            delay = 0.5
            for callback in channels.values():
                callback("")  # whatever happened while we were not listening
            while not conn.is_closed():
                await asyncio.sleep(5)
                await conn.execute("SELECT 1")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "wake-up listener lost its connection; reconnecting",
                extra={"error": str(exc), "retry_in": delay},
            )
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)


def _call(callback: Callable[[str], None]) -> Callable[..., None]:
    def listener(connection: Any, pid: Any, channel: Any, payload: Any) -> None:
        callback(str(payload or ""))

    return listener


async def notify(session: AsyncSession, channel: str, payload: str = "") -> None:
    """Send a NOTIFY with the caller's transaction (delivered when it commits)."""
    await session.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})
