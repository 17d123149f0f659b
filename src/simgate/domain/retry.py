"""Retry decisions as pure values: given the attempt number and the error, when to try
again, and whether another gateway should take the next attempt."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"  # try again later: no network, gateway busy, timeout
    PERMANENT = "permanent"  # never succeeds: invalid number, message refused
    GATEWAY = "gateway"  # this gateway cannot send it (e.g. reported 'failed'); try another


@dataclass(frozen=True, slots=True)
class RetryDecision:
    delay: float  # seconds from now
    avoid_gateway: bool  # prefer another gateway for the next attempt


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 2.0
    factor: float = 3.0
    max_delay: float = 300.0

    def decide(self, attempt: int, kind: ErrorKind) -> RetryDecision | None:
        """``attempt`` is the number of attempts made so far (1 after the first).
        None means give up: the message fails."""
        if kind is ErrorKind.PERMANENT or attempt >= self.max_attempts:
            return None
        if kind is ErrorKind.GATEWAY:
            # Another gateway may take it at once; no need to wait.
            return RetryDecision(delay=0.0, avoid_gateway=True)
        try:
            delay = min(self.base_delay * self.factor ** (attempt - 1), self.max_delay)
        except OverflowError:  # thousands of attempts: long past the cap
            delay = self.max_delay
        return RetryDecision(delay=delay, avoid_gateway=True)
