"""One-time passcodes without I/O: codes, their keyed hashes, message templates and the
decisions a check makes.

A code is drawn from the operating system's CSPRNG and never stored: the database keeps
``HMAC-SHA256(server secret, verification id + ":" + code)``, which binds the code to the
verification it was issued for. Without the secret (kept in the data directory or a setting,
not in the database) a stolen database does not reveal codes, even short ones.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass

MIN_LENGTH = 4
MAX_LENGTH = 10
DEFAULT_LENGTH = 6
MAX_TTL = 1800
MAX_TEMPLATE_CHARS = 480
MASK = "•"
PLACEHOLDERS = frozenset({"code", "app", "minutes"})
_DIGITS = re.compile(r"\A[0-9]+\Z")
_LOCALE = re.compile(r"\A([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{2,8})*\Z")


class Status(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    EXPIRED = "expired"
    CANCELED = "canceled"
    MAX_ATTEMPTS = "max_attempts"


class TemplateError(ValueError):
    pass


def new_code(length: int) -> str:
    """``length`` decimal digits, uniformly distributed (leading zeros included)."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"length must be {MIN_LENGTH}-{MAX_LENGTH}")
    return str(secrets.randbelow(10**length)).zfill(length)


def code_hash(key: bytes, verification_id: str, code: str) -> str:
    return hmac.new(key, f"{verification_id}:{code}".encode(), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A short public fingerprint of the secret: nodes compare it to find out whether they
    share one (it reveals nothing about the secret or any code)."""
    return hmac.new(key, b"simgate otp key id", hashlib.sha256).hexdigest()[:16]


def matches(key: bytes, verification_id: str, code: str, hashes: Iterable[str]) -> bool:
    """Whether ``code`` is one of the codes issued, compared in constant time: every stored
    hash is compared, whatever the earlier ones gave."""
    wanted = code_hash(key, verification_id, code).encode("ascii")
    found = False
    for stored in hashes:
        found |= hmac.compare_digest(wanted, stored.encode("ascii"))
    return found


def check_code_format(code: str, *, field: str = "code") -> str | None:
    """Why ``code`` cannot be a code (never echoing it), or None."""
    if not code:
        return f"{field}: is required"
    if len(code) > MAX_LENGTH + 10 or not _DIGITS.match(code):
        return f"{field}: must be {MIN_LENGTH}-{MAX_LENGTH} digits (0-9) and nothing else"
    if not MIN_LENGTH <= len(code) <= MAX_LENGTH:
        return f"{field}: must be {MIN_LENGTH}-{MAX_LENGTH} digits long"
    return None


# --- messages -------------------------------------------------------------------------------

# Default texts per language, each naming the app, the code and its lifetime. Kept short so
# the Latin-script ones fit one GSM-7 segment with a short app name.
TEMPLATES: dict[str, str] = {
    "en": "Your {app} code is {code}. It expires in {minutes} min. Do not share it.",
    "de": "Ihr {app}-Code lautet {code}. Er ist {minutes} Min. gültig. Nicht weitergeben.",
    "fr": "Votre code {app} est {code}. Il expire dans {minutes} min. Ne le partagez pas.",
    "es": "Tu código de {app} es {code}. Caduca en {minutes} min. No lo compartas.",
    "it": "Il tuo codice {app} è {code}. Scade tra {minutes} min. Non condividerlo.",
    "pt": "Seu código {app} é {code}. Expira em {minutes} min. Não o compartilhe.",
    "nl": "Je {app}-code is {code}. Deze verloopt over {minutes} min. Deel hem niet.",
    "pl": "Twój kod {app} to {code}. Wygasa za {minutes} min. Nie udostępniaj go.",
    "tr": "{app} doğrulama kodunuz: {code}. {minutes} dk geçerlidir. Kimseyle paylaşmayın.",  # noqa: RUF001
    "ru": "Ваш код {app}: {code}. Действует {minutes} мин. Никому его не сообщайте.",  # noqa: RUF001
    "id": "Kode {app} Anda adalah {code}. Berlaku {minutes} menit. Jangan bagikan.",
}


def language_of(locale: str) -> str:
    """``"pt-BR"`` -> ``"pt"``; TemplateError for what is not a locale we have a text for."""
    match = _LOCALE.match(locale.strip())
    language = match.group(1).lower() if match else ""
    if language not in TEMPLATES:
        raise TemplateError(
            f"{locale[:20]!r} has no built-in text; choose from {', '.join(sorted(TEMPLATES))} "
            "or give your own template"
        )
    return language


def check_template(template: str) -> str:
    """The template if it can be used: it names ``{code}`` and no unknown placeholder."""
    if len(template) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"must be at most {MAX_TEMPLATE_CHARS} characters")
    if "\x00" in template:
        raise TemplateError("must not contain NUL characters")
    names = []
    try:
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                continue
            if name not in PLACEHOLDERS or spec or conversion:
                shown = "{" + (name or "") + "}"
                raise TemplateError(
                    f"{shown} is not a placeholder; use {{code}}, {{app}} or {{minutes}} "
                    "(write {{ and }} for literal braces)"
                )
            names.append(name)
    except ValueError as exc:
        if isinstance(exc, TemplateError):
            raise
        raise TemplateError("has an unmatched brace; write {{ and }} for literal braces") from None
    if "code" not in names:
        raise TemplateError("must contain {code}, where the code goes")
    return template


def render(template: str, *, code: str, app: str, minutes: int) -> str:
    return template.format(code=code, app=app, minutes=minutes)


def masked(template: str, *, length: int, app: str, minutes: int) -> str:
    """The text as anyone but the phone's owner may see it: the code replaced by dots."""
    return render(template, code=MASK * length, app=app, minutes=minutes)


# --- checks ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a check answers. ``status`` is what the API shows: a verification that already
    ended answers its status, except that an approved one answers ``not_found`` (a code works
    once, and "approved" for a second, possibly wrong, code would mislead a careless client)."""

    status: str
    valid: bool
    message: str
    attempts_left: int | None = None
    ended_now: bool = False  # this check ended the verification (approved, expired, …)


def ended_verdict(status: str) -> Verdict:
    if status == Status.APPROVED:
        return Verdict(
            "not_found", False, "this verification was already approved; a code works only once"
        )
    if status == Status.EXPIRED:
        return Verdict(status, False, "the code expired; start a new verification")
    if status == Status.MAX_ATTEMPTS:
        return Verdict(
            status, False, "too many wrong codes; start a new verification", attempts_left=0
        )
    if status == Status.CANCELED:
        return Verdict(status, False, "the verification was canceled")
    return Verdict("not_found", False, "no pending verification")
