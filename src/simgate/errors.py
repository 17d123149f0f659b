"""Errors a user can cause. Each carries a stable code, a message naming the bad value and,
where it helps, the field it came from. The web layer maps ``status`` to HTTP; the CLI prints
``message`` on stderr and exits non-zero."""

from __future__ import annotations


class SimgateError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint


class Invalid(SimgateError):
    status = 422
    code = "invalid"


class NotFound(SimgateError):
    status = 404
    code = "not_found"


class Conflict(SimgateError):
    status = 409
    code = "conflict"


class Unauthorized(SimgateError):
    status = 401
    code = "unauthorized"


class Forbidden(SimgateError):
    status = 403
    code = "forbidden"


class RateLimited(SimgateError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class Unavailable(SimgateError):
    """Something this request needs is not available here (HTTP 503); the message says
    what an operator has to change."""

    status = 503
    code = "unavailable"


class TimedOut(SimgateError):
    """A long-poll ended without what it waited for (HTTP 408)."""

    status = 408
    code = "timeout"
