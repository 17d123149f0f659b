"""One-time passcodes: start a verification (the SMS goes through the outbound pipeline, at
high priority, expiring with the code), resend it, check a code, cancel, read.

Every decision that two requests could race on is one conditional UPDATE, so on every
backend exactly one of many concurrent checks of the right code approves, and wrong codes
are counted exactly. Codes exist in clear only in the SMS itself: the verification keeps
keyed hashes (see ``domain.otp``), and the message's stored text is replaced by a masked one
as soon as it has left the queue (API answers show only the masked one, always).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, case, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from simgate.config import ConfigError, Settings
from simgate.domain import otp as rules
from simgate.domain import phone as phones
from simgate.domain.ids import new_id
from simgate.domain.messages import CANCELABLE, MessageStatus, Priority
from simgate.errors import Conflict, Invalid, NotFound, RateLimited, SimgateError, Unavailable
from simgate.services import outbound as outbound_service
from simgate.services.outbound import Outbound, Sender, SendRequest
from simgate.store import rows
from simgate.store.engine import describe_db_error
from simgate.store.models import App, Message, OtpLimit, OtpVerification
from simgate.store.types import utcnow

if TYPE_CHECKING:
    from simgate.web.metrics import Metrics

log = logging.getLogger(__name__)
V = rules.Status
OTP_ID_RE = re.compile(r"\Aotp_[0-9A-HJKMNP-TV-Z]{26}\Z")
KEY_FILE = "otp.key"
DEFAULT_TTL = 600
MAX_APP_LABEL = 32
SWEEP_EVERY = 5.0
STATS_EVERY = 30.0
HOUR = timedelta(hours=1)
MAX_CHECK_BATCH = 64


def load_key(settings: Settings) -> bytes:
    """The secret codes are hashed with: the setting, or a random key created once in the
    data directory (readable by its owner only)."""
    if settings.otp_secret:
        return settings.otp_secret.encode()
    settings.ensure_data_dir()
    path = settings.data_dir / KEY_FILE
    for _ in range(2):
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue  # another process made it first: read that one
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(32).hex() + "\n")
            continue
        except OSError as exc:
            raise ConfigError(f"cannot read the OTP key {str(path)!r}: {exc.strerror}") from None
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) < 16:
            raise ConfigError(
                f"{str(path)!r} does not hold an OTP key (64 hex digits); remove it to have a "
                "new one made (codes already sent will no longer verify) or set "
                "SIMGATE_OTP_SECRET"
            )
        return key
    raise ConfigError(f"cannot create the OTP key {str(path)!r}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _ceil_seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


def _same_owner(app_id: int | None) -> Any:
    if app_id is None:
        return OtpVerification.app_id.is_(None)
    return OtpVerification.app_id == app_id


# The check's statements, built once: a check is the hot path (about a thousand a second),
# and building and compiling a statement costs more than running it.
_T = cast(Table, OtpVerification.__table__)
_C = _T.c
_LOCK = update(_T).where(_C.id == bindparam("vid")).values(updated_at=_C.updated_at)
_COLUMNS = (
    _C.id,
    _C.app_id,
    _C.phone,
    _C.status,
    _C.expires_at,
    _C.key_id,
    _C.code_hashes,
    _C.message_ids,
)
_BY_ID = select(*_COLUMNS).where(_C.id == bindparam("vid"))
_BY_ID_LOCKING = _LOCK.returning(*_COLUMNS)
_PENDING = (_C.phone == bindparam("phone"), _C.status == V.PENDING.value)
_PENDING_OF = (
    select(*_COLUMNS)
    .where(_C.app_id == bindparam("app"), *_PENDING)
    .order_by(_C.created_at.desc())
    .limit(1)
)
_PENDING_OF_OPERATOR = (
    select(*_COLUMNS).where(_C.app_id.is_(None), *_PENDING).order_by(_C.created_at.desc()).limit(1)
)
_OPEN = (_C.id == bindparam("vid"), _C.status == V.PENDING.value, _C.expires_at > bindparam("now"))
_APPROVE = (
    update(_T)
    .where(*_OPEN, _C.attempts < _C.max_attempts)
    .values(status=V.APPROVED.value, ended_at=bindparam("now"), updated_at=bindparam("now"))
)
_LAST = _C.attempts + 1 >= _C.max_attempts
# Status first: MariaDB evaluates SET left to right, with the values already assigned.
_WRONG = (
    update(_T)
    .where(*_OPEN)
    .ordered_values(
        (_C.status, case((_LAST, V.MAX_ATTEMPTS.value), else_=_C.status)),
        (_C.ended_at, case((_LAST, bindparam("now")), else_=_C.ended_at)),
        (_C.attempts, _C.attempts + 1),
        (_C.updated_at, bindparam("now")),
    )
)
_WRONG_RETURNING = _WRONG.returning(_C.status, _C.attempts, _C.max_attempts)
_ATTEMPTS = select(_C.status, _C.attempts, _C.max_attempts).where(_C.id == bindparam("vid"))
_STATUS = select(_C.status).where(_C.id == bindparam("vid"))


@dataclass(slots=True)
class _Check:
    app_id: int | None
    id_: str | None
    number: str | None
    code: str
    future: asyncio.Future[tuple[str | None, rules.Verdict]]


class Otp:
    """The OTP service of one process. ``clock`` gives the current time (tests move it)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        outbound: Outbound,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._outbound = outbound
        self._metrics = metrics
        self._key: bytes | None = None
        self._sqlite = settings.backend == "sqlite"
        # PostgreSQL and SQLite answer an UPDATE's new values at once; MariaDB needs a read.
        self._returning = settings.backend in ("sqlite", "postgresql")
        self._pending_checks: list[_Check] = []
        self._checks_waiting = asyncio.Event()
        self._checker: asyncio.Task[None] | None = None
        self.clock: Callable[[], datetime] = utcnow
        self.stats: dict[str, dict[str, int]] = {}  # app -> status -> count, last 24 h

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = load_key(self._settings)
        return self._key

    @property
    def key_id(self) -> str:
        return rules.key_id(self.key)

    # --- starting and resending -----------------------------------------------------------

    async def start(
        self,
        *,
        sender: Sender,
        phone: str,
        length: int | None = None,
        ttl: int | None = None,
        template: str | None = None,
        app_name: str | None = None,
        locale: str | None = None,
        gateway: str | None = None,
        client_ip: str | None = None,
    ) -> dict[str, Any]:
        """Send a code to ``phone``. A verification still pending for the same phone (and
        app) is sent again instead (same id, a new code, the cooldown and send limit apply)."""
        now = self.clock()
        length = rules.DEFAULT_LENGTH if length is None else length
        if not rules.MIN_LENGTH <= length <= rules.MAX_LENGTH:
            raise Invalid(
                f"length: must be {rules.MIN_LENGTH}-{rules.MAX_LENGTH} digits", field="length"
            )
        ttl = DEFAULT_TTL if ttl is None else ttl
        if not 1 <= ttl <= rules.MAX_TTL:
            raise Invalid(f"ttl: must be 1-{rules.MAX_TTL} seconds", field="ttl")
        number = self._number(phone, "phone")
        label = await self._label(sender, app_name)
        language = ""
        if template is not None:
            try:
                template = rules.check_template(template)
            except rules.TemplateError as exc:
                raise Invalid(f"template: {exc}", field="template") from None
        else:
            try:
                language = rules.language_of(locale or "en")
            except rules.TemplateError as exc:
                raise Invalid(f"locale: {exc}", field="locale") from None
            template = rules.TEMPLATES[language]
        if client_ip is not None:
            try:
                client_ip = str(ipaddress.ip_address(client_ip.strip()))
            except ValueError:
                raise Invalid(
                    "client_ip: is not an IP address such as 203.0.113.7", field="client_ip"
                ) from None
        existing = await self._pending(sender.app_id, number, now)
        if existing is not None:
            return await self._resend(existing, sender, now)
        vid = new_id("otp")
        code = rules.new_code(length)
        minutes = math.ceil(ttl / 60)
        item = await self._prepare(
            sender,
            number,
            vid,
            text=rules.render(template, code=code, app=label, minutes=minutes),
            masked=rules.masked(template, length=length, app=label, minutes=minutes),
            ttl=ttl,
            gateway=gateway,
        )
        message_id = str(item.rows[0]["id"])
        windows = self._windows(sender.app_id, number, client_ip, now, new=True)
        await self._open(windows)
        row = OtpVerification(
            id=vid,
            app_id=sender.app_id,
            phone=number,
            status=V.PENDING.value,
            length=length,
            code_hashes=[rules.code_hash(self.key, vid, code)],
            key_id=self.key_id,
            attempts=0,
            max_attempts=self._settings.otp_max_attempts,
            sends=1,
            max_sends=self._settings.otp_max_sends,
            template=template,
            app_label=label,
            locale=language,
            gateway=gateway,
            client_ip=client_ip,
            message_ids=[message_id],
            last_sent_at=now,
            expires_at=now + timedelta(seconds=ttl),
            created_at=now,
            updated_at=now,
        )
        async with self._sessionmaker.begin() as session:
            await self._count(session, windows, now)
            session.add(row)
            await self._outbound.write_in(session, item)
        self._outbound.queued(item)
        self._count_outcome(self._app(sender), "started")
        return self.view(row, {message_id: (str(item.rows[0]["status"]), None)}, resent=False)

    async def resend(self, *, app_id: int | None, sender: Sender, id_: str) -> dict[str, Any]:
        now = self.clock()
        async with self._sessionmaker() as session:
            v = await self._get(session, app_id, id_)
        if v.status != V.PENDING.value or v.expires_at <= now:
            status = V.EXPIRED.value if v.status == V.PENDING.value else v.status
            raise Conflict(
                f"verification {v.id} is {status}; only a pending one can be sent again",
                field="id",
            )
        return await self._resend(v, sender, now)

    async def _resend(self, v: OtpVerification, sender: Sender, now: datetime) -> dict[str, Any]:
        until_expiry = _ceil_seconds(v.expires_at - now)
        if v.sends >= v.max_sends:
            raise RateLimited(
                f"phone: this verification already sent {v.sends} codes, the most it may; "
                f"they stay valid until it expires in {until_expiry} s",
                retry_after=until_expiry,
                field="phone",
            )
        ready = v.last_sent_at + timedelta(seconds=self._settings.otp_resend_cooldown)
        if now < ready:
            wait = _ceil_seconds(ready - now)
            raise RateLimited(
                f"phone: a code was sent {int((now - v.last_sent_at).total_seconds())} s ago; "
                f"it may be sent again in {wait} s",
                retry_after=wait,
                field="phone",
            )
        remaining = int((v.expires_at - now).total_seconds())
        code = rules.new_code(v.length)
        minutes = math.ceil(remaining / 60)
        item = await self._prepare(
            sender,
            v.phone,
            v.id,
            text=rules.render(v.template, code=code, app=v.app_label, minutes=minutes),
            masked=rules.masked(v.template, length=v.length, app=v.app_label, minutes=minutes),
            ttl=remaining,
            gateway=v.gateway,
        )
        message_id = str(item.rows[0]["id"])
        windows = self._windows(v.app_id, v.phone, None, now, new=False)
        await self._open(windows)
        hashes = [*v.code_hashes, rules.code_hash(self.key, v.id, code)]
        ids = [*v.message_ids, message_id]
        async with self._sessionmaker.begin() as session:
            await self._count(session, windows, now)
            changed = await session.execute(
                update(OtpVerification)
                .where(
                    OtpVerification.id == v.id,
                    OtpVerification.status == V.PENDING.value,
                    OtpVerification.sends == v.sends,
                )
                .values(
                    code_hashes=hashes,
                    message_ids=ids,
                    sends=v.sends + 1,
                    last_sent_at=now,
                    updated_at=now,
                )
            )
            if not getattr(changed, "rowcount", 0):
                raise Conflict(
                    f"verification {v.id} changed meanwhile (checked, canceled or sent again); "
                    "read it again",
                    field="id",
                )
            # The earlier SMS, if still queued, would only arrive after the newer one.
            await self._cancel_messages(session, v.message_ids, "a newer code was sent")
            await self._outbound.write_in(session, item)
        self._outbound.queued(item)
        self._count_outcome(self._app(sender), "resent")
        v.code_hashes, v.message_ids, v.sends = hashes, ids, v.sends + 1
        v.last_sent_at = v.updated_at = now
        async with self._sessionmaker() as session:
            messages = await self._messages(session, ids)
        return self.view(v, messages, resent=True)

    async def _prepare(
        self,
        sender: Sender,
        number: str,
        vid: str,
        *,
        text: str,
        masked: str,
        ttl: int,
        gateway: str | None,
    ) -> Any:
        req = SendRequest(
            to=[number],
            body=text,
            many=False,
            gateway=gateway,
            ttl=ttl,
            priority=Priority.HIGH,
            metadata={"verification": vid},
        )
        try:
            return await self._outbound.prepare(sender, req, redacted=masked)
        except SimgateError as exc:
            # Say it in this API's words: the number is "phone", the text is the template.
            field = {"to": "phone", "body": "template"}.get(exc.field or "", exc.field)
            exc.message = exc.message.replace("to: ", "phone: ", 1).replace(
                "body: ", "template: ", 1
            )
            exc.field = field
            raise

    def _number(self, raw: str, field: str) -> str:
        try:
            return phones.normalise(raw, self._settings.default_region or None).e164
        except phones.InvalidNumber as exc:
            raise Invalid(f"{field}: {raw[:40]!r} {exc}", field=field) from None

    async def _label(self, sender: Sender, given: str | None) -> str:
        if given is not None:
            given = given.strip()
            if not given or len(given) > MAX_APP_LABEL or not given.isprintable():
                raise Invalid(
                    f"app_name: must be 1-{MAX_APP_LABEL} printable characters", field="app_name"
                )
            if "{" in given or "}" in given:
                raise Invalid("app_name: must not contain braces", field="app_name")
            return given
        return self._app(sender)

    def _app(self, sender: Sender) -> str:
        return sender.name.removeprefix("app:") if sender.app_id is not None else "simgate"

    async def _pending(
        self, app_id: int | None, number: str, now: datetime
    ) -> OtpVerification | None:
        """The newest verification of this phone that can still be sent again."""
        async with self._sessionmaker() as session:
            return await session.scalar(
                select(OtpVerification)
                .where(
                    _same_owner(app_id),
                    OtpVerification.phone == number,
                    OtpVerification.status == V.PENDING.value,
                    OtpVerification.expires_at > now + timedelta(seconds=1),
                )
                .order_by(OtpVerification.created_at.desc())
                .limit(1)
            )

    # --- limits -----------------------------------------------------------------------------

    def _windows(
        self, app_id: int | None, number: str, ip: str | None, now: datetime, *, new: bool
    ) -> list[tuple[str, str, int]]:
        """(scope, key, limit) of the hourly windows a send counts in. A resend counts only
        toward its number's: that one limits the SMS a number gets, the others the starts."""
        s = self._settings
        out = []
        if s.otp_per_phone_per_hour:
            out.append(("phone", number, s.otp_per_phone_per_hour))
        if new and app_id is not None and s.otp_per_app_per_hour:
            out.append(("app", str(app_id), s.otp_per_app_per_hour))
        if new and ip is not None and s.otp_per_ip_per_hour:
            out.append(("ip", ip, s.otp_per_ip_per_hour))
        return out

    @staticmethod
    def _window_start(now: datetime) -> datetime:
        return now.replace(minute=0, second=0, microsecond=0)

    async def _open(self, windows: list[tuple[str, str, int]]) -> None:
        """Make sure the window rows exist, so counting is one conditional UPDATE."""
        start = self._window_start(self.clock())
        for scope, key, _ in windows:
            await rows.ensure(
                self._sessionmaker, OtpLimit, scope=scope, key=key, window_start=start
            )

    async def _count(
        self, session: AsyncSession, windows: list[tuple[str, str, int]], now: datetime
    ) -> None:
        """Count one send in each window, or raise RateLimited (the caller's transaction
        rolls back what earlier windows counted)."""
        start = self._window_start(now)
        for scope, key, limit in windows:
            counted = await session.execute(
                update(OtpLimit)
                .where(
                    OtpLimit.scope == scope,
                    OtpLimit.key == key,
                    OtpLimit.window_start == start,
                    OtpLimit.count < limit,
                )
                .values(count=OtpLimit.count + 1)
            )
            if getattr(counted, "rowcount", 0):
                continue
            retry = _ceil_seconds(start + HOUR - now)
            what = {
                "phone": ("phone", "codes were sent to this number"),
                "app": (None, "verifications were started by this app"),
                "ip": ("client_ip", "verifications were started from this address"),
            }[scope]
            raise RateLimited(
                f"{what[0] + ': ' if what[0] else ''}{limit} {what[1]} in the last hour, the "
                f"most allowed; try again in {retry} s",
                retry_after=retry,
                field=what[0],
            )

    # --- checking ---------------------------------------------------------------------------

    async def check(
        self,
        *,
        app_id: int | None,
        code: str,
        id_: str | None = None,
        phone: str | None = None,
        code_field: str = "code",
    ) -> tuple[str | None, rules.Verdict]:
        """Check ``code`` against the verification ``id_``, or the newest pending one of
        ``phone``. Answers (verification id, verdict)."""
        problem = rules.check_code_format(code, field=code_field)
        if problem:
            raise Invalid(problem, field=code_field)
        if id_ is None and phone is None:
            raise Invalid("id: give the verification's id or the phone", field="id")
        number = self._number(phone, "phone") if phone is not None else None
        if id_ is not None and not OTP_ID_RE.match(id_):
            return await self._counted(app_id, None, rules.ended_verdict("unknown"))
        item = _Check(app_id, id_, number, code, asyncio.get_running_loop().create_future())
        self._pending_checks.append(item)
        self._checks_waiting.set()
        if self._checker is None or self._checker.done():
            self._checker = asyncio.create_task(self._check_forever(), name="otp-checks")
        vid, verdict = await asyncio.shield(item.future)
        # Counted after the commit: the app's name may need the (on SQLite, only) connection.
        return await self._counted(app_id, vid, verdict)

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker

    async def _check_forever(self) -> None:
        """Checks waiting meanwhile share one transaction (a group commit): one connection
        serves them in arrival order, each decided by its own conditional UPDATE."""
        while True:
            await self._checks_waiting.wait()
            self._checks_waiting.clear()
            while self._pending_checks:
                batch = self._pending_checks[:MAX_CHECK_BATCH]
                del self._pending_checks[: len(batch)]
                outcomes: list[tuple[str | None, rules.Verdict] | BaseException]
                try:
                    outcomes = list(await self._check_batch(batch))
                except Exception as exc:
                    if len(batch) == 1:
                        outcomes = [exc]
                    else:  # one check's trouble (a deadlock between nodes) is not the others'
                        outcomes = []
                        for item in batch:
                            try:
                                outcomes += await self._check_batch([item])
                            except Exception as one:
                                outcomes.append(one)
                for item, outcome in zip(batch, outcomes, strict=True):
                    if item.future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        item.future.set_exception(outcome)
                    else:
                        item.future.set_result(outcome)

    async def _check_batch(
        self, batch: list[_Check]
    ) -> list[tuple[str | None, rules.Verdict] | SimgateError]:
        out: list[tuple[str | None, rules.Verdict] | SimgateError] = []
        async with self._sessionmaker.begin() as session:
            # Core statements on the session's connection: the ORM layer would cost more
            # than the statements themselves.
            conn = await session.connection()
            for item in batch:
                try:
                    out.append(await self._check_one(session, conn, item))
                except SimgateError as exc:  # nothing written for it: the others go on
                    out.append(exc)
        return out

    async def _check_one(
        self, session: AsyncSession, conn: AsyncConnection, item: _Check
    ) -> tuple[str | None, rules.Verdict]:
        now = self.clock()
        if self._sqlite and item.id_ is None:
            # Take the write lock first: a read that had to be upgraded later would fail at
            # once if another process wrote meanwhile, instead of waiting its turn.
            await conn.execute(_LOCK, {"vid": ""})
        if item.id_ is not None:
            # On SQLite the read is a no-op UPDATE … RETURNING: it takes the write lock.
            by_id = _BY_ID_LOCKING if self._sqlite else _BY_ID
            row = (await conn.execute(by_id, {"vid": item.id_})).first()
            if row is not None and (
                row.app_id != item.app_id or (item.number is not None and row.phone != item.number)
            ):
                row = None
        else:
            query = _PENDING_OF if item.app_id is not None else _PENDING_OF_OPERATOR
            row = (await conn.execute(query, {"app": item.app_id, "phone": item.number})).first()
        if row is None:
            if item.id_ is None:
                return None, rules.Verdict("not_found", False, "no pending verification")
            return None, rules.ended_verdict("unknown")
        return row.id, await self._decide(session, conn, row, item.code, now)

    async def _counted(
        self, app_id: int | None, vid: str | None, verdict: rules.Verdict
    ) -> tuple[str | None, rules.Verdict]:
        if self._metrics is not None:
            app = await self._app_name(app_id)
            result = "wrong" if verdict.status == V.PENDING.value else verdict.status
            if verdict.status == V.MAX_ATTEMPTS.value and verdict.ended_now:
                result = "wrong"
            self._metrics.otp_checks.labels(app, result).inc()
            if verdict.ended_now:
                self._count_outcome(app, verdict.status)
        return vid, verdict

    async def _decide(
        self, session: AsyncSession, conn: AsyncConnection, v: Any, code: str, now: datetime
    ) -> rules.Verdict:
        if v.status != V.PENDING.value:
            return rules.ended_verdict(v.status)
        if v.expires_at <= now:
            ended = await self._end(session, v.id, V.EXPIRED, now)
            return replace(rules.ended_verdict(V.EXPIRED), ended_now=ended)
        if v.key_id != self.key_id:
            raise Unavailable(
                "this verification was started on a node with another OTP secret, so its "
                "code cannot be checked here; give every node the same SIMGATE_OTP_SECRET",
                field="id",
            )
        params = {"vid": v.id, "now": now}
        if rules.matches(self.key, v.id, code, v.code_hashes):
            approved = await conn.execute(_APPROVE, params)
            if getattr(approved, "rowcount", 0):
                await self._cancel_messages(session, v.message_ids, "the code was approved")
                return rules.Verdict(V.APPROVED.value, True, "the code is right", ended_now=True)
            return await self._reread(conn, v.id)
        if self._returning:
            after = (await conn.execute(_WRONG_RETURNING, params)).first()
        else:
            counted = await conn.execute(_WRONG, params)
            after = None
            if getattr(counted, "rowcount", 0):
                after = (await conn.execute(_ATTEMPTS, params)).first()
        if after is None:
            return await self._reread(conn, v.id)
        status, attempts, most = after
        if status == V.MAX_ATTEMPTS.value:
            await self._cancel_messages(session, v.message_ids, "too many wrong codes")
            return rules.Verdict(
                V.MAX_ATTEMPTS.value,
                False,
                "wrong code, and no attempts are left; start a new verification",
                attempts_left=0,
                ended_now=True,
            )
        left = max(0, most - attempts)
        return rules.Verdict(
            V.PENDING.value,
            False,
            f"wrong code; {left} attempt{'s' if left != 1 else ''} left",
            attempts_left=left,
        )

    async def _reread(self, conn: AsyncConnection, id_: str) -> rules.Verdict:
        """Another check decided first: answer what it decided."""
        status = await conn.scalar(_STATUS, {"vid": id_})
        if status == V.PENDING.value:  # it expired between the read and the update
            return rules.ended_verdict(V.EXPIRED)
        return rules.ended_verdict(status or "unknown")

    async def _end(
        self, session: AsyncSession, id_: str, status: rules.Status, now: datetime
    ) -> bool:
        ended = await session.execute(
            update(OtpVerification)
            .where(OtpVerification.id == id_, OtpVerification.status == V.PENDING.value)
            .values(status=status.value, ended_at=now, updated_at=now)
        )
        return bool(getattr(ended, "rowcount", 0))

    async def _cancel_messages(self, session: AsyncSession, ids: list[str], why: str) -> None:
        """Cancel the verification's SMS still in the queue (there is no use sending them)."""
        if not ids:
            return
        stmt = select(Message).where(
            Message.id.in_(ids), Message.status.in_([s.value for s in CANCELABLE])
        )
        if not self._sqlite:
            stmt = stmt.with_for_update()
        for m in (await session.scalars(stmt)).all():
            outbound_service.move(session, m, MessageStatus.CANCELED, {"by": "otp", "reason": why})

    # --- canceling and reading ---------------------------------------------------------------

    async def cancel(self, *, app_id: int | None, id_: str) -> dict[str, Any]:
        now = self.clock()
        async with self._sessionmaker.begin() as session:
            v = await self._get(session, app_id, id_)
            if v.status == V.PENDING.value and v.expires_at <= now:
                await self._end(session, v.id, V.EXPIRED, now)
                v.status = V.EXPIRED.value
            if v.status != V.PENDING.value or not await self._end(session, v.id, V.CANCELED, now):
                raise Conflict(
                    f"verification {v.id} is already {v.status}; only a pending one can be "
                    "canceled",
                    field="id",
                )
            await self._cancel_messages(session, v.message_ids, "the verification was canceled")
        self._count_outcome(await self._app_name(app_id), V.CANCELED.value)
        return await self.get(app_id=app_id, id_=id_)

    async def get(self, *, app_id: int | None, id_: str) -> dict[str, Any]:
        async with self._sessionmaker() as session:
            v = await self._get(session, app_id, id_)
            messages = await self._messages(session, v.message_ids)
        return self.view(v, messages)

    async def _get(self, session: AsyncSession, app_id: int | None, id_: str) -> OtpVerification:
        v = None
        if OTP_ID_RE.match(id_):
            v = await session.scalar(
                select(OtpVerification).where(OtpVerification.id == id_, _same_owner(app_id))
            )
        if v is None:
            raise NotFound(f"no verification {id_[:40]!r}", field="id")
        return v

    async def _messages(
        self, session: AsyncSession, ids: list[str]
    ) -> dict[str, tuple[str, dict[str, Any] | None]]:
        if not ids:
            return {}
        rows = await session.execute(
            select(
                Message.id,
                Message.status,
                Message.error_code,
                Message.error_message,
                Message.error_hint,
            ).where(Message.id.in_(ids))
        )
        return {
            mid: (
                status,
                {"code": code, "message": message or "", "hint": hint or ""} if code else None,
            )
            for mid, status, code, message, hint in rows
        }

    def view(
        self,
        v: OtpVerification,
        messages: dict[str, tuple[str, dict[str, Any] | None]],
        *,
        resent: bool | None = None,
    ) -> dict[str, Any]:
        now = self.clock()
        status = v.status
        if status == V.PENDING.value and v.expires_at <= now:
            status = V.EXPIRED.value  # the sweep writes it down shortly
        sms = [
            {"id": mid, "status": messages.get(mid, ("unknown", None))[0]}
            | ({"error": messages[mid][1]} if mid in messages and messages[mid][1] else {})
            for mid in v.message_ids
        ]
        can_resend = status == V.PENDING.value and v.sends < v.max_sends
        out: dict[str, Any] = {
            "id": v.id,
            "phone": v.phone,
            "status": status,
            "expires_at": _iso(v.expires_at),
            "created_at": _iso(v.created_at),
            "updated_at": _iso(v.updated_at),
            "ended_at": _iso(v.ended_at),
            "length": v.length,
            "attempts": v.attempts,
            "max_attempts": v.max_attempts,
            "attempts_left": max(0, v.max_attempts - v.attempts)
            if status == V.PENDING.value
            else 0,
            "sends": v.sends,
            "max_sends": v.max_sends,
            "next_send_at": _iso(
                max(v.last_sent_at + timedelta(seconds=self._settings.otp_resend_cooldown), now)
            )
            if can_resend
            else None,
            "locale": v.locale or None,
            "gateway": v.gateway,
            "message": sms[-1] if sms else None,
            "messages": sms,
        }
        if resent is not None:
            out["resent"] = resent
        return out

    def _count_outcome(self, app: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.otp_verifications.labels(app, outcome).inc()

    async def _app_name(self, app_id: int | None) -> str:
        if app_id is None:
            return "simgate"
        policy = await self._outbound.app_policy(app_id)
        return policy.name if policy is not None else str(app_id)

    # --- background work -----------------------------------------------------------------

    async def sweep(self) -> int:
        """Mark verifications whose time ran out as expired; answers how many."""
        now = self.clock()
        async with self._sessionmaker.begin() as session:
            due = (
                await session.execute(
                    select(OtpVerification.id, OtpVerification.app_id)
                    .where(
                        OtpVerification.status == V.PENDING.value,
                        OtpVerification.expires_at <= now,
                    )
                    .limit(500)
                )
            ).all()
            ended = []
            for vid, app_id in due:
                if await self._end(session, vid, V.EXPIRED, now):
                    ended.append(app_id)
        for app_id in ended:
            self._count_outcome(await self._app_name(app_id), V.EXPIRED.value)
        return len(ended)

    async def refresh_stats(self) -> None:
        """Verifications started in the last 24 hours per app and status (for /metrics: the
        share approved is the conversion ratio, whose fall is the sign of SMS pumping)."""
        since = self.clock() - timedelta(days=1)
        async with self._sessionmaker() as session:
            rows = await session.execute(
                select(App.name, OtpVerification.status, func.count())
                .select_from(OtpVerification)
                .outerjoin(App, App.id == OtpVerification.app_id)
                .where(OtpVerification.created_at >= since)
                .group_by(App.name, OtpVerification.status)
            )
            stats: dict[str, dict[str, int]] = {}
            for name, status, n in rows:
                stats.setdefault(name or "simgate", {})[status] = int(n)
        self.stats = stats

    async def run(self) -> None:
        """Expire verifications and refresh the figures, until canceled."""
        last_stats = 0.0
        loop = asyncio.get_running_loop()
        try:
            self.key  # noqa: B018 (make or read the key at start, not at the first request)
        except ConfigError as exc:
            log.error("one-time passcodes cannot work", extra={"error": str(exc)})
        await self._warn_other_secret()
        while True:
            try:
                await self.sweep()
                if loop.time() - last_stats >= STATS_EVERY:
                    await self.refresh_stats()
                    last_stats = loop.time()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("OTP upkeep failed", extra={"error": describe_db_error(exc)})
            await asyncio.sleep(SWEEP_EVERY)

    async def _warn_other_secret(self) -> None:
        """Say so at start when the newest verifications were made with another secret (a
        second node with its own key file): their codes would never verify here."""
        try:
            async with self._sessionmaker() as session:
                latest = await session.scalar(
                    select(OtpVerification.key_id)
                    .order_by(OtpVerification.created_at.desc())
                    .limit(1)
                )
            if latest is not None and latest != self.key_id:
                log.warning(
                    "the newest verifications were made with another OTP secret: codes started "
                    "on other nodes will not verify here; give every node the same "
                    "SIMGATE_OTP_SECRET",
                    extra={"key_id": self.key_id, "other_key_id": latest},
                )
        except (SQLAlchemyError, OSError, ConfigError):
            pass


def stat_samples(stats: dict[str, dict[str, int]]) -> list[tuple[tuple[str, ...], float]]:
    return [
        ((app, status), float(n)) for app, counts in stats.items() for status, n in counts.items()
    ]


def conversion_samples(stats: dict[str, dict[str, int]]) -> list[tuple[tuple[str, ...], float]]:
    """Approved / decided, per app, over verifications started in the last 24 hours (those
    still pending are left out: they may yet be approved)."""
    out: list[tuple[tuple[str, ...], float]] = []
    for app, counts in stats.items():
        decided = sum(n for status, n in counts.items() if status != V.PENDING.value)
        if decided:
            out.append(((app,), counts.get(V.APPROVED.value, 0) / decided))
    return out


async def recent(
    session: AsyncSession,
    *,
    app_ids: list[int] | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[tuple[OtpVerification, str | None]]:
    """Verifications, newest first, with their app's name (None: started by an operator).
    ``app_ids`` None: every app's. Callers show the rows' public parts only, never
    ``code_hashes``."""
    stmt = (
        select(OtpVerification, App.name)
        .outerjoin(App, App.id == OtpVerification.app_id)
        .order_by(OtpVerification.created_at.desc(), OtpVerification.id.desc())
        .limit(limit)
    )
    if app_ids is not None:
        stmt = stmt.where(OtpVerification.app_id.in_(app_ids or [-1]))
    if status:
        stmt = stmt.where(OtpVerification.status == status)
    return [(v, name) for v, name in (await session.execute(stmt)).all()]


async def counts_since(
    session: AsyncSession, *, since: datetime, app_ids: list[int] | None = None
) -> dict[str, dict[str, int]]:
    """Verifications started since ``since`` per app name and status (as ``Otp.stats``:
    ``conversion_samples`` turns it into the conversion ratio)."""
    stmt = (
        select(App.name, OtpVerification.status, func.count())
        .select_from(OtpVerification)
        .outerjoin(App, App.id == OtpVerification.app_id)
        .where(OtpVerification.created_at >= since)
        .group_by(App.name, OtpVerification.status)
    )
    if app_ids is not None:
        stmt = stmt.where(OtpVerification.app_id.in_(app_ids or [-1]))
    out: dict[str, dict[str, int]] = {}
    for name, status, n in await session.execute(stmt):
        out.setdefault(name or "simgate", {})[status] = int(n)
    return out
