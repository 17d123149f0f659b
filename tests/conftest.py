"""Shared fixtures: real databases (one fresh database per test), settings and app clients.

Backends come from SIMGATE_TEST_BACKENDS (default: sqlite,postgresql,mariadb). PostgreSQL and
MariaDB are found at SIMGATE_TEST_PG_URL / SIMGATE_TEST_MYSQL_URL. Under CI=true an
unreachable server fails the tests that need it; elsewhere they are skipped with a message.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from simgate.config import Settings, load_settings
from simgate.store import migrate
from simgate.store.engine import make_engine

PG_URL = os.environ.get("SIMGATE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("SIMGATE_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
BACKENDS = [
    b.strip()
    for b in os.environ.get("SIMGATE_TEST_BACKENDS", "sqlite,postgresql,mariadb").split(",")
    if b.strip()
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_reachable: dict[str, str | None] = {}


async def _server_problem(backend: str) -> str | None:
    """None when the server answers, else why not (cached per session)."""
    if backend in _reachable:
        return _reachable[backend]
    url = PG_URL if backend == "postgresql" else MYSQL_URL
    engine = create_async_engine(url, connect_args=_connect_args(backend))
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        problem = None
    except Exception as exc:
        problem = f"{backend} not reachable at {make_url(url).render_as_string()}: {exc}"
    finally:
        await engine.dispose()
    _reachable[backend] = problem
    return problem


def _connect_args(backend: str) -> dict[str, object]:
    return {"connect_timeout": 5} if backend == "mariadb" else {"timeout": 5}


async def _require(backend: str) -> None:
    problem = await _server_problem(backend)
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"{problem} (CI=true requires every database server)")
    pytest.skip(f"{problem}; start it or set SIMGATE_TEST_BACKENDS to skip it")


async def fresh_database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """Create an empty database on ``backend`` and yield its URL; drop it afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'simgate-test.db'}"
        return
    await _require(backend)
    name = f"sgtest_{uuid.uuid4().hex[:12]}"
    server = PG_URL if backend == "postgresql" else MYSQL_URL
    admin = create_async_engine(
        server, isolation_level="AUTOCOMMIT", connect_args=_connect_args(backend)
    )
    try:
        async with admin.connect() as conn:
            if backend == "postgresql":
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                await conn.execute(
                    text(
                        f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                    )
                )
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            if backend == "postgresql":
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        await admin.dispose()


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database on each configured backend in turn."""
    async for url in fresh_database(request.param, tmp_path):
        yield url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SIMGATE_* variables from the developer's shell leak into a test."""
    for name in list(os.environ):
        if name.startswith("SIMGATE_") and not name.startswith("SIMGATE_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings(data_dir: Path, db_url: str, clean_env: None) -> Settings:
    return load_settings(data_dir=data_dir, database_url=db_url, log_format="console")


@pytest.fixture
def sqlite_settings(data_dir: Path, clean_env: None) -> Settings:
    """Settings on a SQLite file: for tests about HTTP behaviour, not about databases."""
    return load_settings(data_dir=data_dir, log_format="console")


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(settings)
    await migrate.upgrade(eng)
    yield eng
    await eng.dispose()


@pytest.fixture
async def sqlite_engine(sqlite_settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(sqlite_settings)
    await migrate.upgrade(eng)
    yield eng
    await eng.dispose()


async def app_client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to create_app() in-process, with its lifespan running."""
    from simgate.web.app import create_app

    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://simgate.test") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


@pytest.fixture
async def client(
    sqlite_settings: Settings, sqlite_engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    async for c in app_client(sqlite_settings, sqlite_engine):
        yield c


@pytest.fixture
async def db_client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client`` but on every backend."""
    async for c in app_client(settings, engine):
        yield c
