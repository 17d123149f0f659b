"""The OTP API: start a verification (an SMS with a one-time code), check a code, resend,
cancel and read. Codes never appear in any answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, Field

from simgate.domain import otp as rules
from simgate.domain.keys import Scope
from simgate.services.auth import Principal
from simgate.services.outbound import Sender
from simgate.web.api.schemas import Strict
from simgate.web.deps import RuntimeDep, require
from simgate.web.routing import Router

router = Router(prefix="/api/v1/otp", tags=["otp"])
OtpPrincipal = Annotated[Principal, Depends(require(Scope.OTP))]


def _digits(value: Any) -> Any:
    # A code sent as a JSON number is taken as its digits (a leading zero cannot survive
    # that: send codes as strings).
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return value


class StartBody(Strict):
    phone: str = Field(max_length=64, description="E.164, e.g. +4915112345678.")
    length: int | None = Field(
        default=None, description=f"Digits, {rules.MIN_LENGTH}-{rules.MAX_LENGTH} (default 6)."
    )
    ttl: int | None = Field(
        default=None, description=f"Seconds the code is valid, 1-{rules.MAX_TTL} (default 600)."
    )
    template: str | None = Field(
        default=None,
        max_length=2000,
        description="The SMS text with `{code}`, optionally `{app}` and `{minutes}`.",
        examples=["{code} is your {app} login code"],
    )
    app_name: str | None = Field(
        default=None, max_length=64, description="The name `{app}` stands for (default: the app)."
    )
    locale: str | None = Field(
        default=None,
        max_length=35,
        description="Language of the built-in text when no template is given: "
        + ", ".join(sorted(rules.TEMPLATES))
        + " (default en).",
    )
    gateway: str | None = Field(default=None, description="Send through this gateway only.")
    client_ip: str | None = Field(
        default=None,
        max_length=64,
        description="The end user's address as your app saw it: limits starts per address.",
    )


class CheckBody(Strict):
    id: str | None = Field(default=None, max_length=64, description="The verification's id.")
    phone: str | None = Field(
        default=None, max_length=64, description="Or the phone: its newest pending verification."
    )
    code: Annotated[str, BeforeValidator(_digits)] = Field(max_length=64)


class SmsRef(BaseModel):
    id: str
    status: str
    error: dict[str, str] | None = None


class Verification(BaseModel):
    id: str
    phone: str
    status: Literal["pending", "approved", "expired", "canceled", "max_attempts"]
    expires_at: str
    created_at: str
    updated_at: str
    ended_at: str | None
    length: int
    attempts: int = Field(description="Wrong codes checked so far.")
    max_attempts: int
    attempts_left: int
    sends: int = Field(description="SMS sent for it (the start and resends).")
    max_sends: int
    next_send_at: str | None = Field(description="When it may be sent again (None: it may not).")
    locale: str | None
    gateway: str | None
    message: SmsRef | None = Field(description="The newest SMS and its delivery status.")
    messages: list[SmsRef]
    resent: bool | None = Field(
        default=None, description="Starting it again sent the pending verification anew."
    )


class CheckResult(BaseModel):
    id: str | None
    status: Literal["approved", "pending", "expired", "max_attempts", "canceled", "not_found"]
    valid: bool
    message: str
    attempts_left: int | None = None


def _sender(principal: Principal) -> Sender:
    return Sender(principal.app_id, f"app:{principal.app_name}")


@router.post(
    "",
    status_code=201,
    summary="Send a one-time code to a phone",
    description="Starting again while a verification of the same phone is pending sends it "
    "again (same id, a new code; earlier codes stay valid) after the resend cooldown.",
    response_model=Verification,
)
async def start(body: StartBody, principal: OtpPrincipal, runtime: RuntimeDep) -> dict[str, Any]:
    return await runtime.otp.start(
        sender=_sender(principal),
        phone=body.phone,
        length=body.length,
        ttl=body.ttl,
        template=body.template,
        app_name=body.app_name,
        locale=body.locale,
        gateway=body.gateway,
        client_ip=body.client_ip,
    )


@router.post(
    "/verify",
    summary="Check a code",
    description="`valid` is true exactly once per verification. After "
    "`max_attempts` wrong codes even the right one fails.",
    response_model=CheckResult,
)
async def verify(body: CheckBody, principal: OtpPrincipal, runtime: RuntimeDep) -> JSONResponse:
    vid, verdict = await runtime.otp.check(
        app_id=principal.app_id, code=body.code, id_=body.id, phone=body.phone
    )
    # A response of our own: the hot path skips validating what it just built.
    return JSONResponse(
        {
            "id": vid,
            "status": verdict.status,
            "valid": verdict.valid,
            "message": verdict.message,
            "attempts_left": verdict.attempts_left,
        }
    )


@router.get(
    "/{verification_id}",
    summary="A verification with its SMS' delivery status",
    response_model=Verification,
)
async def get(verification_id: str, principal: OtpPrincipal, runtime: RuntimeDep) -> dict[str, Any]:
    return await runtime.otp.get(app_id=principal.app_id, id_=verification_id)


@router.post(
    "/{verification_id}/resend",
    status_code=201,
    summary="Send a pending verification again, with a new code",
    response_model=Verification,
)
async def resend(
    verification_id: str, principal: OtpPrincipal, runtime: RuntimeDep
) -> dict[str, Any]:
    return await runtime.otp.resend(
        app_id=principal.app_id, sender=_sender(principal), id_=verification_id
    )


@router.post(
    "/{verification_id}/cancel",
    summary="Cancel a pending verification (its code stops working)",
    response_model=Verification,
)
async def cancel(
    verification_id: str, principal: OtpPrincipal, runtime: RuntimeDep
) -> dict[str, Any]:
    return await runtime.otp.cancel(app_id=principal.app_id, id_=verification_id)
