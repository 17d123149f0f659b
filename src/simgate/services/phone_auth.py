"""Gateway (phone) keys: ``gw_live_`` + 64 hex, checked against the SHA-256 stored for each
gateway, with a cache like the app keys' one that forgets whenever keys change anywhere
(``KeyAuthenticator`` tells it)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from simgate.domain.keys import digests_equal, hash_key, is_gateway_key
from simgate.store.models import Gateway as GatewayRow


@dataclass(frozen=True, slots=True)
class Phone:
    """The gateway a valid key speaks for."""

    id: int
    name: str
    active: bool
    key_hash: str
    key_prefix: str


_UNKNOWN = Phone(0, "", False, "", "")


class PhoneAuthenticator:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, cache_size: int) -> None:
        self._sessionmaker = sessionmaker
        self._cache: OrderedDict[str, Phone] = OrderedDict()
        self._cache_size = cache_size

    def invalidate(self) -> None:
        self._cache.clear()

    async def authenticate(self, presented: str) -> Phone | None:
        """The phone (active or not) for a well-formed key; None when unknown."""
        if not is_gateway_key(presented):
            return None
        digest = hash_key(presented)
        found = self._cache.get(digest)
        if found is None:
            found = await self._load(digest) or _UNKNOWN
            if self._cache_size:
                self._cache[digest] = found
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(digest)
        return None if found is _UNKNOWN else found

    async def _load(self, digest: str) -> Phone | None:
        async with self._sessionmaker() as session:
            row = await session.scalar(select(GatewayRow).where(GatewayRow.key_hash == digest))
        if row is None or row.key_hash is None or not digests_equal(row.key_hash, digest):
            return None
        return Phone(row.id, row.name, row.is_active, row.key_hash, row.key_prefix or "")

    async def still_valid(self, phones: list[Phone]) -> dict[int, Phone | None]:
        """The phones as the database says now (connected sockets re-check after keys
        changed): None for one whose key was rotated or whose gateway was removed."""
        found: dict[int, Phone | None] = {p.id: None for p in phones}
        wanted = {p.id: p for p in phones}
        ids = sorted(wanted)
        async with self._sessionmaker() as session:
            for i in range(0, len(ids), 500):
                rows = await session.execute(
                    select(
                        GatewayRow.id, GatewayRow.name, GatewayRow.is_active, GatewayRow.key_hash
                    ).where(GatewayRow.id.in_(ids[i : i + 500]))
                )
                for id_, name, active, key_hash in rows:
                    if key_hash == wanted[id_].key_hash:
                        found[id_] = Phone(id_, name, active, key_hash, wanted[id_].key_prefix)
        return found
