"""Response and request bodies of the v1 API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Request bodies reject unknown fields, so typos are errors rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class AppRef(BaseModel):
    id: int
    name: str


class KeyRef(BaseModel):
    prefix: str
    scopes: list[str]


class Me(BaseModel):
    app: AppRef
    key: KeyRef


class RequestLogItem(BaseModel):
    created_at: datetime
    method: str
    endpoint: str
    status: int
    latency_ms: float
    client_ip: str
    request_id: str
    key_prefix: str


class RequestLogPage(BaseModel):
    data: list[RequestLogItem]


class KeyOut(BaseModel):
    prefix: str
    app: str
    name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class AppOut(BaseModel):
    id: int
    name: str
    description: str
    owner: str | None
    active: bool
    created_at: datetime
    active_keys: int
    rate_per_minute: int | None = None
    rate_per_day: int | None = None
    allowed_countries: list[str] = []


class AppLimits(Strict):
    """Omitted fields stay as they are; null removes a limit."""

    rate_per_minute: int | None = Field(default=None, ge=1)
    rate_per_day: int | None = Field(default=None, ge=1)
    allowed_countries: list[str] | None = None


class AppList(BaseModel):
    data: list[AppOut]


class KeyList(BaseModel):
    data: list[KeyOut]


class AppCreate(Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=255)
    owner: str | None = None
    scopes: list[str] | None = None


class KeyCreate(Strict):
    name: str = Field(default="", max_length=64)
    scopes: list[str] | None = None


class CreatedKeyOut(BaseModel):
    key: str = Field(description="The secret API key. Shown only in this response.")
    info: KeyOut


class AppCreated(BaseModel):
    app: AppOut
    key: str = Field(description="The app's first API key. Shown only in this response.")
    key_info: KeyOut
