"""Fixed one-minute windows per key, as seed 003's rate-limit headers describe them: a limit,
what remains of it, and when the window resets (Unix time). ``now`` is passed in, so this
stays pure; memory holds one window per key in use."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # Unix time the window ends

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }

    def retry_after(self, now: float) -> int:
        return max(1, int(self.reset - now + 0.999))


@dataclass
class FixedWindows:
    limit: int
    window: int = 60
    max_keys: int = 100_000  # keys beyond this evict the oldest windows
    _windows: dict[object, tuple[int, int]] = field(default_factory=dict)  # key -> (start, n)

    def hit(self, key: object, now: float) -> Verdict:
        start = int(now // self.window) * self.window
        current = self._windows.get(key)
        count = current[1] if current is not None and current[0] == start else 0
        allowed = count < self.limit
        if allowed:
            count += 1
            if current is None and len(self._windows) >= self.max_keys:
                self._windows.pop(next(iter(self._windows)))
            self._windows[key] = (start, count)
        return Verdict(allowed, self.limit, self.limit - count, start + self.window)
