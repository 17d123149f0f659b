"""Structured logging: one JSON object per line, a request id on every line written while a
request is handled, and secrets scrubbed from whatever reaches a handler."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Anything shaped like a credential we issue or accept, and password-ish key=value pairs.
_SECRET_PATTERNS = [
    (re.compile(r"\b(sg_[a-z0-9]{10})_[A-Za-z0-9_-]{10,}"), r"\1_***"),
    (re.compile(r"\bgw_live_[0-9a-fA-F]{8,}"), "gw_live_***"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{8,}"), "whsec_***"),
    (re.compile(r"(?i)\b(api_key|password|passwd|token|secret|otp|code)=([^&\s\"']+)"), r"\1=***"),
    (
        re.compile(r"(?i)(\"(?:api_key|password|token|secret|otp|code)\"\s*:\s*\")[^\"]*\""),
        r'\1***"',
    ),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1***"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),
]

# What every pattern above needs somewhere in a match, in lower case: an ASCII line without
# any of these cannot hold a secret they would scrub, and is left as it is after some
# substring tests instead of seven substitutions (the access log writes a line per request;
# a case-insensitive regular expression of these alternatives alone costs more than the
# rest of the line's formatting). Other lines take every substitution: a case-insensitive
# pattern also matches letters such as the long s (U+017F) that lower() leaves alone.
_SECRET_HINTS = (
    "sg_",
    "gw_live_",
    "whsec_",
    "bearer",
    "://",
    *(
        f"{word}{after}"
        for word in ("api_key", "password", "passwd", "token", "secret", "otp", "code")
        for after in '="'
    ),
)

_RESERVED = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def scrub(text: str) -> str:
    if text.isascii():
        lowered = text.lower()
        if not any(hint in lowered for hint in _SECRET_HINTS):
            return text
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, default=str, ensure_ascii=False))


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = {
            k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")
        }
        rid = request_id_var.get()
        head = (
            f"{datetime.fromtimestamp(record.created).strftime('%H:%M:%S')} "
            f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        tail = " ".join(f"{k}={v}" for k, v in extras.items())
        line = " ".join(p for p in (head, f"[{rid}]" if rid else "", tail) if p)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    # Neither formatter writes where a call came from, nor its thread, process or task:
    # skip finding them for each record (the logging HOWTO's "Optimization"). Without the
    # caller, ``stack_info=True`` adds nothing either; simgate does not use it.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]  # looked up from 3.12 on
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's access log prints raw query strings (which may hold api_key=); we log
    # requests ourselves, scrubbed.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    # Alembic announces its context on every revision check (each /readyz); we report
    # upgrades ourselves.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # MariaDB notes that primary keys cannot be named; expected, not worth a warning.
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
