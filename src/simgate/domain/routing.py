"""Which gateway gets a message: pinning, health, load, per-gateway send rate, failover."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``rate_per_minute`` sends a minute, in bursts of at most ``burst`` (SIM cards get
    blocked for bursts). ``now`` is passed in, so this stays pure and testable."""

    rate_per_minute: float
    burst: float = 1.0
    tokens: float = field(default=-1.0)
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if self.rate_per_minute <= 0:
            return
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_minute / 60.0)
        self.updated = max(self.updated, now)  # a clock stepping back never earns twice

    def available(self, now: float) -> bool:
        if self.rate_per_minute <= 0:
            return True
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, now: float) -> None:
        if self.rate_per_minute <= 0:
            return
        self._refill(now)
        self.tokens -= 1.0

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available (0 when one is)."""
        if self.rate_per_minute <= 0:
            return 0.0
        self._refill(now)
        missing = 1.0 - self.tokens
        return 0.0 if missing <= 0 else missing * 60.0 / self.rate_per_minute


@dataclass(frozen=True, slots=True)
class GatewayView:
    """What the router needs to know of a gateway at one moment."""

    name: str
    online: bool
    in_flight: int
    max_in_flight: int
    rate_ok: bool  # its token bucket has a token now
    sims: int | None = None  # SIM slots it has (None: unknown, any slot may be asked for)


def available(gw: GatewayView) -> bool:
    return gw.online and gw.rate_ok and gw.in_flight < gw.max_in_flight


def choose(
    gateways: Iterable[GatewayView],
    *,
    pinned: str | None = None,
    avoid: Iterable[str] = (),
    sim: int | None = None,
) -> str | None:
    """The gateway to hand a message to now, or None to leave it queued.

    Pinned messages wait for their gateway. Otherwise the least-loaded available gateway
    wins, preferring one the message has not just failed on; when only those remain, they
    are used (a transient error there may have passed). A message that asks for a SIM slot
    goes only to a gateway that may have it.
    """
    candidates = [
        g for g in gateways if available(g) and (sim is None or g.sims is None or g.sims >= sim)
    ]
    if pinned is not None:
        return pinned if any(g.name == pinned for g in candidates) else None
    if not candidates:
        return None
    avoided = set(avoid)
    fresh = [g for g in candidates if g.name not in avoided] or candidates
    best = min(fresh, key=lambda g: (g.in_flight / max(1, g.max_in_flight), g.in_flight, g.name))
    return best.name
