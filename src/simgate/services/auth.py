"""API key authentication with a cache that forgets revoked keys at once.

A request must not pay a database round trip to authenticate, so verified keys (and keys
found not to exist) are cached in memory, keyed by the SHA-256 of the presented key. A
revocation anywhere makes every cache forget:

- in this process, the revoking call invalidates directly;
- on this host (``simgate key revoke`` from a shell), the CLI touches a marker file in the
  data directory, and an authentication compares its mtime (one ``stat``, a system call),
  at most once a millisecond: far less than the CLI takes to exit after touching it;
- on other hosts sharing the database, a background task polls the ``auth_generation``
  counter that every revocation bumps in the same transaction (PostgreSQL nodes are told at
  once with NOTIFY).

The same signals cover gateway keys (rotated, or their gateway deactivated): their cache
listens to this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simgate.domain.keys import Scope, digests_equal, hash_key, key_prefix
from simgate.services.apps import auth_generation
from simgate.store.models import ApiKey, App

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid key speaks for."""

    app_id: int
    app_name: str
    owner_id: int | None
    key_id: int
    key_prefix: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes


_UNKNOWN = object()  # cached "no such key"
MARKER_INTERVAL = 0.001  # seconds between looks at the marker file


def touch_marker(path: Path) -> None:
    """Tell servers on this host that keys changed (best effort: they also poll the DB)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(os.getpid()))
    except OSError as exc:
        log.warning(
            "could not touch the auth marker", extra={"path": str(path), "error": exc.strerror}
        )


class KeyAuthenticator:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        cache_size: int,
        marker_path: Path | None,
        sync_interval: float,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._cache_size = cache_size
        self._marker = marker_path
        self._marker_stamp = self._stamp()
        self._marker_due = 0.0  # time.monotonic() of the next look at the marker
        self._sync_interval = sync_interval
        self._generation: int | None = None
        self.hits = 0
        self.misses = 0
        # Called whenever keys may have changed (revoked, rotated, a gateway deactivated):
        # other caches of credentials forget with this one.
        self.listeners: list[Callable[[], None]] = []

    def _stamp(self) -> tuple[int, int] | None:
        if self._marker is None:
            return None
        try:
            st = os.stat(self._marker)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def invalidate(self) -> None:
        self._cache.clear()
        for listener in self.listeners:
            listener()

    def _cached(self, digest: str) -> object | None:
        """The cached answer for a key digest (no await: the common case stays cheap)."""
        if self._marker is not None:
            now = time.monotonic()
            if now >= self._marker_due:
                self._marker_due = now + MARKER_INTERVAL
                stamp = self._stamp()
                if stamp != self._marker_stamp:
                    self._marker_stamp = stamp
                    self.invalidate()
        cached = self._cache.get(digest)
        if cached is not None:
            self.hits += 1
            # least recently used goes first, so a flood of made-up keys cannot push out
            # the keys in use
            self._cache.move_to_end(digest)
        return cached

    async def authenticate(self, presented: str) -> Principal | None:
        """The principal for a presented key, or None when it is unknown, revoked or
        malformed."""
        digest = hash_key(presented)
        cached = self._cached(digest)
        if cached is not None:
            return None if cached is _UNKNOWN else cached  # type: ignore[return-value]
        self.misses += 1
        prefix = key_prefix(presented)
        if prefix is None:
            return None  # not our format: no lookup, nothing worth caching
        principal = await self._load(prefix, digest)
        if self._cache_size:
            self._cache[digest] = principal if principal is not None else _UNKNOWN
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return principal

    async def _load(self, prefix: str, digest: str) -> Principal | None:
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(ApiKey, App)
                    .join(App, App.id == ApiKey.app_id)
                    .where(ApiKey.prefix == prefix)
                )
            ).first()
        if row is None:
            return None
        key, app = row
        # Compare the stored hash in constant time: the prefix matched, the secret must too.
        if not digests_equal(key.key_hash, digest) or key.revoked_at is not None:
            return None
        if not app.is_active:
            return None
        scopes = frozenset(Scope(s) for s in key.scopes.split(",") if s)
        return Principal(app.id, app.name, app.owner_id, key.id, key.prefix, scopes)

    async def sync_forever(self) -> None:
        """Poll the shared auth generation; forget the cache when another node bumped it."""
        while True:
            with contextlib.suppress(SQLAlchemyError, OSError):
                async with self._sessionmaker() as session:
                    generation = await auth_generation(session)
                if self._generation is not None and generation != self._generation:
                    self.invalidate()
                self._generation = generation
            await asyncio.sleep(self._sync_interval)
