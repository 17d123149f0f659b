"""The app's routers: FastAPI's, turning a request away at once when its path cannot be one
of theirs.

FastAPI matches a request against every route of every included router in turn, at about a
microsecond each, so a call to the 40th route (a phone's report, a code check) paid some
40 µs before its own work began, and a dashboard page at the end of the list over 100. A
router here knows the static start all its paths share (``/api/v1/otp`` for the OTP
routes) and answers "no match" for any other path without trying its routes. What matches,
and in which order, is unchanged.

Include these routers without a prefix of their own: their paths are the full ones.
"""

from __future__ import annotations

import os

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope


def _route_path(scope: Scope) -> str:
    """The path the routes see: without the root path the app is served under."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


class Router(APIRouter):
    _shared: tuple[int, str] = (-1, "")

    def shared_prefix(self) -> str:
        """The longest static start of every route's path ("" when they share none)."""
        count = len(self.routes)
        if self._shared[0] != count:
            starts = [str(getattr(r, "path", "")).split("{", 1)[0] for r in self.routes]
            # Character by character on purpose: each start is a prefix of its path.
            prefix = os.path.commonprefix(starts) if starts and all(starts) else ""  # noqa: RUF071
            self._shared = (count, prefix)
        return self._shared[1]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        prefix = self.shared_prefix()
        if len(prefix) > 1 and not _route_path(scope).startswith(prefix):
            return Match.NONE, {}
        return super().matches(scope)
