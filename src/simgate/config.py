"""Settings: built once (``load_settings``) and passed down; nothing reads them globally.

Precedence, highest first: explicit keyword overrides, ``SIMGATE_*`` environment variables,
the TOML config file, defaults. The config file is ``--config``/``SIMGATE_CONFIG`` or, when
neither is given, ``simgate.toml`` inside the data directory if it exists.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from simgate.domain.placement import NAME_RE

ENV_PREFIX = "SIMGATE_"

# Driver names accepted per backend; the first one is what a bare scheme maps to.
_DRIVERS: dict[str, tuple[str, ...]] = {
    "sqlite": ("aiosqlite",),
    "postgresql": ("asyncpg",),
    "mysql": ("asyncmy", "aiomysql"),
    "mariadb": ("asyncmy", "aiomysql"),
}


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


def normalise_database_url(raw: str) -> str:
    """Return an async SQLAlchemy URL for ``raw`` or raise ConfigError naming the problem.

    Bare schemes get the async driver we ship (``postgresql://`` -> ``postgresql+asyncpg://``)
    so URLs copied from other tools just work.
    """
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"SIMGATE_DATABASE_URL: {redact_url(raw)!r} is not a database URL; expected e.g. "
            "'sqlite+aiosqlite:///data/simgate.db', 'postgresql+asyncpg://user@host/db' "
            "or 'mysql+asyncmy://user@host/db'"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend not in _DRIVERS:
        raise ConfigError(
            f"SIMGATE_DATABASE_URL: unsupported database {backend!r}; "
            "use sqlite, postgresql, mysql or mariadb"
        )
    allowed = _DRIVERS[backend]
    if driver and driver not in allowed:
        raise ConfigError(
            f"SIMGATE_DATABASE_URL: driver {driver!r} is not supported for {backend}; "
            f"use {' or '.join(backend + '+' + d for d in allowed)}"
        )
    url = url.set(drivername=f"{backend}+{driver or allowed[0]}")
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError(
                "SIMGATE_DATABASE_URL: SQLite needs a file path (an in-memory database "
                "would vanish between connections)"
            )
    elif not url.database:
        raise ConfigError(f"SIMGATE_DATABASE_URL: no database name in {redact_url(raw)!r}")
    return url.render_as_string(hide_password=False)


def redact_url(raw: str | URL) -> str:
    """The URL with any password replaced by ``***``; safe for logs and error messages."""
    try:
        url = make_url(raw) if isinstance(raw, str) else raw
    except ArgumentError:
        # Not parseable: drop anything that looks like credentials.
        text = str(raw)
        if "@" in text:
            scheme, _, rest = text.partition("://")
            return f"{scheme}://***@{rest.rsplit('@', 1)[-1]}"
        return text
    return url.render_as_string(hide_password=True)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(default=Path("data"), description="Where simgate keeps its files.")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means a SQLite file in the data directory.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = Field(default="", description="Base URL users reach the server at.")

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    access_log: bool = True

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    request_log_retention_days: int = Field(default=30, ge=1)
    audit_log_retention_days: int = Field(default=365, ge=1)
    db_startup_timeout: float = Field(
        default=15.0, ge=0, description="Seconds to keep retrying an unreachable database."
    )
    db_pool_size: int = Field(default=10, ge=1)
    auth_cache_size: int = Field(default=10_000, ge=0)
    auth_sync_interval: float = Field(
        default=2.0, gt=0, description="Seconds between checks for keys revoked on other nodes."
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies whose X-Forwarded-For is trusted for the client IP.",
    )
    session_ttl_hours: float = Field(
        default=12.0, gt=0, description="How long a dashboard login lasts."
    )
    # Outbound messages
    default_region: str = Field(
        default="", description="ISO country code for numbers given without +country code."
    )
    max_segments: int = Field(default=10, ge=1, le=255)
    max_recipients: int = Field(default=1000, ge=1)
    max_schedule_days: int = Field(default=30, ge=1)
    max_ttl: int = Field(default=7 * 86400, ge=60, description="Largest ttl a send may ask for.")
    idempotency_ttl_hours: int = Field(default=24, ge=1)
    sendsms_wait: float = Field(
        default=30.0, ge=0, description="Seconds /api/sendsms waits for the real outcome."
    )
    # Gateways and the dispatcher
    node_name: str = Field(default="", description="This server's name among several nodes.")
    host_id: str = Field(
        default="",
        description="This host's stable id; empty: derived from /etc/machine-id (or kept in "
        "the data directory). Set it where machines are cloned or containers share an id.",
    )
    gateway_ack_timeout: float = Field(default=30.0, gt=0)
    open_registration: bool = Field(
        default=False,
        description="Let phones register without an enrollment token (seed 003 as written).",
    )
    # Gateways claim their node every 10 s; anything under three missed claims would let
    # nodes snatch gateways from each other.
    gateway_offline_after: float = Field(default=120.0, ge=30)
    retry_max_attempts: int = Field(default=5, ge=1)
    retry_base_delay: float = Field(default=2.0, ge=0)
    retry_max_delay: float = Field(default=300.0, ge=0)
    metrics_token: str = Field(
        default="", description="When set, /metrics needs 'Authorization: Bearer <token>'."
    )
    # The inbox and webhooks
    inbox_public: bool = Field(
        default=False,
        description="Let anyone read the last received SMS at /json (seed 001's LAN set-up).",
    )
    inbox_retention_days: int = Field(
        default=90, ge=1, description="Days to keep received SMS (deleted ones included)."
    )
    inbox_waiters_per_app: int = Field(
        default=50, ge=1, description="Concurrent /api/v1/inbox/wait calls an app may hold."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow webhook URLs on loopback, private or link-local addresses (LANs).",
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, le=60, description="Seconds a receiver has to answer a webhook."
    )
    webhook_concurrency: int = Field(
        default=32, ge=1, description="Webhook deliveries in flight at once on this node."
    )
    webhook_per_app: int = Field(
        default=8, ge=1, description="Webhook deliveries in flight at once for one app."
    )
    webhook_disable_after_days: float = Field(
        default=5.0, gt=0, description="Disable an endpoint whose deliveries failed this long."
    )
    event_retention_days: int = Field(
        default=14, ge=1, description="Days to keep events and their delivery log."
    )
    # One-time passcodes
    otp_secret: str = Field(
        default="",
        description="The key codes are hashed with (at least 32 characters); empty: a random "
        "one kept in the data directory. Nodes sharing a database need the same one.",
    )
    otp_max_attempts: int = Field(
        default=5, ge=1, le=20, description="Wrong codes a verification survives."
    )
    otp_max_sends: int = Field(
        default=5, ge=1, le=20, description="SMS one verification may send (start + resends)."
    )
    otp_resend_cooldown: float = Field(
        default=30.0, ge=0, description="Seconds before a verification's SMS may be sent again."
    )
    otp_per_phone_per_hour: int = Field(
        default=10, ge=0, description="Codes sent to one number per hour (0: no limit)."
    )
    otp_per_app_per_hour: int = Field(
        default=1000, ge=0, description="Verifications one app may start per hour (0: no limit)."
    )
    otp_per_ip_per_hour: int = Field(
        default=20,
        ge=0,
        description="Verifications started per client address per hour (0: no limit): the "
        "client_ip an app passes, or the caller of an unauthenticated /send_otp.",
    )
    otp_open_networks: str = Field(
        default="",
        description="Networks (CIDR, comma-separated) whose callers may use /send_otp and "
        "/verify_otp without an API key, as seed 002's LAN set-up did.",
    )
    otp_open_app: str = Field(
        default="",
        description="The app unauthenticated /send_otp requests count as; empty: the oldest.",
    )

    @field_validator("otp_secret")
    @classmethod
    def _check_secret(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be at least 32 characters (try: openssl rand -hex 32)")
        return value

    @field_validator("otp_open_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(
                        f"{part.strip()!r} is not a network such as 192.168.0.0/24"
                    ) from None
        return value

    @property
    def otp_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.otp_open_networks.split(",")
            if p.strip()
        ]

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value:
            return value
        try:
            return normalise_database_url(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("SIMGATE_DATABASE_URL: ")) from None

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'simgate.db').resolve()}"

    @property
    def backend(self) -> str:
        return self.effective_database_url.split("+", 1)[0].split(":", 1)[0]

    @property
    def node(self) -> str:
        """Stable across restarts, so a node can take back its own leases at once."""
        return self.node_name or f"{socket.gethostname()[:56]}:{self.port}"

    @field_validator("node_name", "host_id")
    @classmethod
    def _check_name(cls, value: str) -> str:
        value = value.strip()
        if value and not NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid name: use 1-64 letters, digits, '.', ':', '_' or "
                "'-', starting with a letter or digit"
            )
        return value

    @field_validator("default_region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        value = value.strip().upper()
        if value and (len(value) != 2 or not value.isalpha()):
            raise ValueError(f"{value!r} is not a two-letter country code such as DE or US")
        return value

    @property
    def auth_marker_path(self) -> Path:
        """A file whose change tells servers on this host that keys were revoked."""
        return self.data_dir / ".auth-changed"

    def ensure_data_dir(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"SIMGATE_DATA_DIR: cannot create {str(self.data_dir)!r}: {exc.strerror}"
            ) from None


def _config_path(explicit: Path | None, env: dict[str, str]) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"--config: no such file {str(explicit)!r}")
        return explicit
    if env.get(f"{ENV_PREFIX}CONFIG"):
        path = Path(env[f"{ENV_PREFIX}CONFIG"])
        if not path.is_file():
            raise ConfigError(f"SIMGATE_CONFIG: no such file {str(path)!r}")
        return path
    default = Path(env.get(f"{ENV_PREFIX}DATA_DIR", "data")) / "simgate.toml"
    return default if default.is_file() else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from overrides, environment and config file; ConfigError if invalid."""
    path = _config_path(config_file, dict(os.environ))

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
            if path is not None:
                sources += (TomlConfigSettingsSource(settings_cls, toml_file=path),)
            return sources

    try:
        return _Loaded(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except ValueError as exc:  # a TOML syntax error surfaces as a ValueError subclass
        raise ConfigError(f"{path}: {exc}") from None


def _describe(exc: ValidationError, path: Path | None) -> str:
    problems = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        where = f"SIMGATE_{name.upper()}" if err["type"] != "extra_forbidden" else name
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown setting{f' in {path}' if path else ''}"
        problems.append(f"{where}: {msg}")
    return "; ".join(problems)
