"""The ``simgate`` command line, end to end: the installed console script in subprocesses.

Each test gets its own data directory and an environment without the developer's SIMGATE_*
variables. Most tests use the default SQLite file in the data directory; the ones taking
``db_url`` run on every configured backend.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.conftest import BACKENDS, fresh_database

SIMGATE = Path(sys.executable).with_name("simgate")
KEY_RE = re.compile(r"^sg_[a-z0-9]{10}_[A-Za-z0-9_-]{43}$")
PREFIX_LEN = len("sg_") + 10
PASSWORD = "correct horse battery"
TIMEOUT = 60


def clean_environment(data_dir: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SIMGATE_") or name.startswith("SIMGATE_TEST_")
    }
    env.update(
        SIMGATE_DATA_DIR=str(data_dir),
        SIMGATE_LOG_FORMAT="console",
        # Wide and UTF-8 so tables are neither wrapped nor drawn differently between runs.
        COLUMNS="200",
        PYTHONIOENCODING="utf-8",
    )
    return env


class Simgate:
    """Runs the real ``simgate`` script with a clean environment."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = clean_environment(data_dir)

    def run(
        self,
        *args: str,
        stdin: str | None = "",
        env: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """``stdin=None`` gives the child /dev/null (never a terminal)."""
        full_env = {**self.env, **(env or {})}
        return subprocess.run(
            [str(SIMGATE), *args],
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=full_env,
            cwd=self.data_dir.parent,
            timeout=timeout,
            check=False,
        )

    def ok(
        self, *args: str, stdin: str | None = "", env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, stdin=stdin, env=env)
        assert result.returncode == 0, (
            f"simgate {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        assert "Traceback" not in result.stderr
        return result

    def fails(
        self, *args: str, stdin: str | None = "", env: Mapping[str, str] | None = None
    ) -> str:
        """Assert the command fails with one line on stderr and no traceback; return it."""
        result = self.run(*args, stdin=stdin, env=env)
        assert result.returncode != 0, (
            f"simgate {' '.join(args)} unexpectedly succeeded\nstdout:\n{result.stdout}"
        )
        assert "Traceback" not in result.stderr, result.stderr
        assert "Traceback" not in result.stdout, result.stdout
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
        return lines[0]

    def create_admin(self, username: str = "alice", *, role: str = "admin") -> None:
        result = self.ok(
            "admin", "create", username, "--password-stdin", "--role", role, stdin=PASSWORD + "\n"
        )
        assert f"created {role} {username!r}" in result.stdout

    def create_app(self, name: str, *args: str) -> str:
        """Create an app and return its key (the last line of stdout)."""
        return last_line_key(self.ok("app", "create", name, *args).stdout)

    def create_key(self, app: str, *args: str) -> str:
        return last_line_key(self.ok("key", "create", app, *args).stdout)


def last_line_key(stdout: str) -> str:
    lines = stdout.splitlines()
    assert lines, "no output"
    key = lines[-1]
    assert KEY_RE.match(key), f"last line is not a key: {key!r}"
    return key


def table_rows(stdout: str) -> list[list[str]]:
    """The body rows of a rich table (header excluded) as lists of cell texts."""
    rows: list[list[str]] = []
    body = False
    for line in stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith(("┡", "|-", "+-", "├")) or re.match(r"^[┣╞]", stripped):
            body = True
            continue
        if body and stripped[:1] in ("│", "|"):
            rows.append([cell.strip() for cell in re.split(r"[│|]", stripped)[1:-1]])
    return rows


def row_for(stdout: str, first_cell: str) -> list[str]:
    matches = [row for row in table_rows(stdout) if row and row[0] == first_cell]
    assert len(matches) == 1, f"expected one row for {first_cell!r} in:\n{stdout}"
    return matches[0]


def secret_part(key: str) -> str:
    return key[PREFIX_LEN + 1 :]


@pytest.fixture
def sg(tmp_path: Path) -> Simgate:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return Simgate(data_dir)


@pytest.fixture
def sg_db(tmp_path: Path, db_url: str) -> Simgate:
    """Like ``sg`` but on each configured database backend."""
    runner = Simgate(tmp_path / "data")
    runner.data_dir.mkdir()
    runner.env["SIMGATE_DATABASE_URL"] = db_url
    return runner


# --- help ----------------------------------------------------------------------------------

COMMANDS = [
    (),
    ("serve",),
    ("db",),
    ("db", "upgrade"),
    ("db", "current"),
    ("admin",),
    ("admin", "create"),
    ("admin", "list"),
    ("admin", "set-password"),
    ("admin", "disable"),
    ("admin", "enable"),
    ("app",),
    ("app", "create"),
    ("app", "list"),
    ("key",),
    ("key", "create"),
    ("key", "list"),
    ("key", "revoke"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "simgate")
def test_help_works_for_every_command(sg: Simgate, command: tuple[str, ...]) -> None:
    result = sg.ok(*command, "--help")
    assert "Usage:" in result.stdout
    assert result.stderr.strip() == ""
    # --help must not touch the database.
    assert not (sg.data_dir / "simgate.db").exists()


# --- db ------------------------------------------------------------------------------------


@pytest.mark.db
def test_db_upgrade_then_already_at_then_current(sg_db: Simgate) -> None:
    first = sg_db.ok("db", "upgrade").stdout
    assert "upgraded" in first
    assert "from empty" in first
    second = sg_db.ok("db", "upgrade").stdout
    assert "already at" in second
    current = sg_db.ok("db", "current").stdout
    assert "(current)" in current
    assert "needs" not in current


def test_db_current_on_empty_database_says_upgrade_is_needed(sg: Simgate) -> None:
    result = sg.ok("db", "current")
    assert "empty" in result.stdout
    assert "simgate db upgrade" in result.stdout


# --- admin ---------------------------------------------------------------------------------


def test_admin_create_with_password_on_stdin(sg: Simgate) -> None:
    sg.create_admin("alice")
    sg.create_admin("bob", role="user")
    rows = table_rows(sg.ok("admin", "list").stdout)
    assert [(r[0], r[1], r[2]) for r in rows] == [("alice", "admin", "yes"), ("bob", "user", "yes")]


@pytest.mark.db
def test_admin_create_duplicate_fails_and_changes_nothing(sg_db: Simgate) -> None:
    sg_db.create_admin("alice")
    line = sg_db.fails("admin", "create", "alice", "--password-stdin", stdin="another password\n")
    assert line.startswith("error: ")
    assert "alice" in line
    assert "already exists" in line
    rows = table_rows(sg_db.ok("admin", "list").stdout)
    assert [r[0] for r in rows] == ["alice"]


@pytest.mark.parametrize(
    ("username", "extra", "stdin", "expected"),
    [
        pytest.param("carol", [], "short\n", "password is too short", id="short-password"),
        pytest.param("bad name!", [], PASSWORD + "\n", "'bad name!'", id="invalid-username"),
        pytest.param("carol", ["--role", "boss"], PASSWORD + "\n", "'boss'", id="invalid-role"),
        pytest.param("carol", [], "", "no password on standard input", id="empty-stdin"),
        pytest.param("carol", [], "\n", "no password on standard input", id="empty-line"),
    ],
)
def test_admin_create_rejects_bad_input(
    sg: Simgate, username: str, extra: list[str], stdin: str, expected: str
) -> None:
    line = sg.fails("admin", "create", username, "--password-stdin", *extra, stdin=stdin)
    assert line.startswith("error: ")
    assert expected in line
    assert table_rows(sg.ok("admin", "list").stdout) == []


def test_admin_create_without_terminal_asks_for_password_stdin(sg: Simgate) -> None:
    line = sg.fails("admin", "create", "alice", stdin=None)
    assert "--password-stdin" in line
    assert table_rows(sg.ok("admin", "list").stdout) == []


def test_admin_disable_enable_and_set_password(sg: Simgate) -> None:
    sg.create_admin("alice")
    assert "disabled" in sg.ok("admin", "disable", "alice").stdout
    assert row_for(sg.ok("admin", "list").stdout, "alice")[2] == "no"
    assert "enabled" in sg.ok("admin", "enable", "alice").stdout
    assert row_for(sg.ok("admin", "list").stdout, "alice")[2] == "yes"
    changed = sg.ok("admin", "set-password", "alice", "--password-stdin", stdin="a new password\n")
    assert "changed" in changed.stdout
    assert "too short" in sg.fails(
        "admin", "set-password", "alice", "--password-stdin", stdin="short\n"
    )
    assert "nobody" in sg.fails("admin", "disable", "nobody")
    assert "nobody" in sg.fails(
        "admin", "set-password", "nobody", "--password-stdin", stdin=PASSWORD + "\n"
    )


# --- apps ----------------------------------------------------------------------------------


def test_app_create_prints_key_on_last_line(sg: Simgate) -> None:
    result = sg.ok("app", "create", "shop")
    key = last_line_key(result.stdout)
    assert key.startswith("sg_")
    # The key is printed exactly once.
    assert result.stdout.count(key) == 1
    assert secret_part(key) not in result.stderr


def test_app_create_before_any_admin_then_first_admin_owns_it(sg: Simgate) -> None:
    sg.create_app("early")
    assert row_for(sg.ok("app", "list").stdout, "early")[1] == "-"
    sg.create_admin("alice")
    row = row_for(sg.ok("app", "list").stdout, "early")
    assert row[1] == "alice"
    assert row[2] == "1"
    # Later apps without --owner also belong to the first admin.
    sg.create_admin("zed")
    sg.create_app("later")
    assert row_for(sg.ok("app", "list").stdout, "later")[1] == "alice"


def test_app_create_with_owner(sg: Simgate) -> None:
    sg.create_admin("alice")
    sg.create_admin("bob", role="user")
    sg.create_app("bobs-app", "--owner", "bob")
    assert row_for(sg.ok("app", "list").stdout, "bobs-app")[1] == "bob"


def test_app_create_with_unknown_owner_fails(sg: Simgate) -> None:
    line = sg.fails("app", "create", "shop", "--owner", "unknown")
    assert "unknown" in line
    assert table_rows(sg.ok("app", "list").stdout) == []


@pytest.mark.db
def test_app_create_duplicate_name_fails(sg_db: Simgate) -> None:
    sg_db.create_app("shop")
    result = sg_db.run("app", "create", "shop")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "shop" in lines[0]
    assert "already exists" in lines[0]
    assert not any(KEY_RE.match(line) for line in result.stdout.splitlines())
    assert len(table_rows(sg_db.ok("key", "list").stdout)) == 1


@pytest.mark.parametrize("name", ["bad name!", ".hidden", "_x", "x" * 65, "a/b", "née"])
def test_app_create_invalid_name_fails(sg: Simgate, name: str) -> None:
    line = sg.fails("app", "create", name)
    assert "not valid" in line
    assert table_rows(sg.ok("app", "list").stdout) == []


def test_app_create_unknown_scope_fails(sg: Simgate) -> None:
    line = sg.fails("app", "create", "shop", "--scopes", "send,nope")
    assert "'nope'" in line
    assert "--scopes" in line
    assert table_rows(sg.ok("app", "list").stdout) == []


def test_app_create_with_all_scopes(sg: Simgate) -> None:
    key = sg.create_app("shop", "--scopes", "all")
    row = row_for(sg.ok("key", "list").stdout, key[:PREFIX_LEN])
    assert row[3] == "admin,inbox,otp,send"


def test_app_create_default_scopes(sg: Simgate) -> None:
    key = sg.create_app("shop")
    row = row_for(sg.ok("key", "list").stdout, key[:PREFIX_LEN])
    assert row[3] == "inbox,otp,send"


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.db
def test_happy_path_admin_app_key_list_revoke(sg_db: Simgate) -> None:
    sg_db.create_admin("alice")
    first = sg_db.create_app("shop", "--description", "the web shop")
    second = sg_db.create_key("shop", "--name", "backup", "--scopes", "send")
    assert first != second
    assert first[:PREFIX_LEN] != second[:PREFIX_LEN]

    listed = sg_db.ok("key", "list").stdout
    assert row_for(listed, first[:PREFIX_LEN])[1:4] == ["shop", "default", "inbox,otp,send"]
    assert row_for(listed, first[:PREFIX_LEN])[-1] == "active"
    assert row_for(listed, second[:PREFIX_LEN])[1:4] == ["shop", "backup", "send"]
    assert row_for(listed, second[:PREFIX_LEN])[-1] == "active"
    assert row_for(sg_db.ok("app", "list").stdout, "shop")[1:3] == ["alice", "2"]

    revoked = sg_db.ok("key", "revoke", first[:PREFIX_LEN]).stdout
    assert first[:PREFIX_LEN] in revoked
    assert "shop" in revoked
    listed = sg_db.ok("key", "list", "shop").stdout
    assert row_for(listed, first[:PREFIX_LEN])[-1].startswith("revoked")
    assert row_for(listed, second[:PREFIX_LEN])[-1] == "active"
    assert row_for(sg_db.ok("app", "list").stdout, "shop")[2] == "1"

    for output in (listed, sg_db.ok("app", "list").stdout, sg_db.ok("admin", "list").stdout):
        for key in (first, second):
            assert secret_part(key) not in output


def test_key_create_prints_new_key_on_last_line(sg: Simgate) -> None:
    first = sg.create_app("shop")
    result = sg.ok("key", "create", "shop")
    key = last_line_key(result.stdout)
    assert key != first
    assert key[:PREFIX_LEN] in result.stdout.splitlines()[0]
    assert len(table_rows(sg.ok("key", "list", "shop").stdout)) == 2


def test_key_create_for_unknown_app_fails(sg: Simgate) -> None:
    line = sg.fails("key", "create", "nosuchapp")
    assert "nosuchapp" in line
    assert table_rows(sg.ok("key", "list").stdout) == []


def test_key_create_unknown_scope_fails(sg: Simgate) -> None:
    sg.create_app("shop")
    assert "'bogus'" in sg.fails("key", "create", "shop", "--scopes", "bogus")


def test_key_list_shows_prefix_never_secret(sg: Simgate) -> None:
    key = sg.create_app("shop")
    listed = sg.ok("key", "list").stdout
    prefix = key[:13]
    assert prefix == key[:PREFIX_LEN]
    assert row_for(listed, prefix)[1] == "shop"
    assert secret_part(key) not in listed
    assert key not in listed
    # Not even a sizeable piece of the secret.
    assert secret_part(key)[:8] not in listed


def test_key_list_for_unknown_app_fails(sg: Simgate) -> None:
    assert "nosuchapp" in sg.fails("key", "list", "nosuchapp")


def test_key_revoke_twice_is_fine(sg: Simgate) -> None:
    key = sg.create_app("shop")
    prefix = key[:PREFIX_LEN]
    sg.ok("key", "revoke", prefix)
    again = sg.ok("key", "revoke", prefix)
    assert prefix in again.stdout
    assert row_for(sg.ok("key", "list").stdout, prefix)[-1].startswith("revoked")


def test_key_revoke_unknown_prefix_fails(sg: Simgate) -> None:
    sg.create_app("shop")
    line = sg.fails("key", "revoke", "sg_zzzzzzzzzz")
    assert "sg_zzzzzzzzzz" in line
    assert row_for(sg.ok("app", "list").stdout, "shop")[2] == "1"


@pytest.mark.parametrize("prefix", ["foo", "sg_short", "sg_ABCDEFGHIJ", "sg_abcdefghij_x", ""])
def test_key_revoke_malformed_prefix_fails_with_message(sg: Simgate, prefix: str) -> None:
    sg.create_app("shop")
    line = sg.fails("key", "revoke", prefix)
    assert line.startswith("error: ")
    assert "not a key prefix" in line
    assert row_for(sg.ok("app", "list").stdout, "shop")[2] == "1"


def test_key_revoke_by_whole_key(sg: Simgate) -> None:
    key = sg.create_app("shop")
    other = sg.create_key("shop")
    result = sg.ok("key", "revoke", key)
    assert key[:PREFIX_LEN] in result.stdout
    assert secret_part(key) not in result.stdout
    listed = sg.ok("key", "list").stdout
    assert row_for(listed, key[:PREFIX_LEN])[-1].startswith("revoked")
    assert row_for(listed, other[:PREFIX_LEN])[-1] == "active"


def test_key_revoke_by_whole_key_needs_the_right_secret(sg: Simgate) -> None:
    key = sg.create_app("shop")
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert KEY_RE.match(forged)
    assert forged != key
    line = sg.fails("key", "revoke", forged)
    assert secret_part(forged) not in line
    assert row_for(sg.ok("key", "list").stdout, key[:PREFIX_LEN])[-1] == "active"


def test_secrets_are_not_shown_or_stored(sg: Simgate) -> None:
    sg.create_admin("alice")
    keys = [sg.create_app("shop"), sg.create_key("shop"), sg.create_app("other", "--scopes", "all")]
    sg.ok("key", "revoke", keys[1][:PREFIX_LEN])
    outputs = [
        sg.ok("key", "list"),
        sg.ok("key", "list", "shop"),
        sg.ok("app", "list"),
        sg.ok("admin", "list"),
    ]
    db_files = sorted(sg.data_dir.glob("simgate.db*"))
    assert sg.data_dir / "simgate.db" in db_files
    stored = b"".join(path.read_bytes() for path in db_files)
    for key in keys:
        for result in outputs:
            assert secret_part(key) not in result.stdout
            assert secret_part(key) not in result.stderr
        assert secret_part(key).encode() not in stored
        assert key.encode() not in stored
        # The prefix is stored: proof that this is the file the keys went into.
        assert key[:PREFIX_LEN].encode() in stored
    assert PASSWORD.encode() not in stored


# --- configuration and database errors -----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "nonsense",
        "oracle://x/y",
        "postgresql+psycopg2://u@h/db",
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite://",
        "mysql+pymysql://root@h/db",
        "postgresql+asyncpg://u@h",
    ],
)
def test_invalid_database_url_is_one_clear_line(sg: Simgate, url: str) -> None:
    line = sg.fails("app", "list", env={"SIMGATE_DATABASE_URL": url})
    assert line.startswith("error: SIMGATE_DATABASE_URL")


def test_invalid_database_url_hides_password(sg: Simgate) -> None:
    url = "postgresql+psycopg2://u:hunter2@h/db"
    result = sg.run("app", "list", env={"SIMGATE_DATABASE_URL": url})
    assert result.returncode != 0
    assert "hunter2" not in result.stderr
    assert "hunter2" not in result.stdout


@pytest.mark.parametrize(
    ("url", "has_password"),
    [
        ("postgresql+asyncpg://postgres@127.0.0.1:1/x", False),
        ("postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/x", True),
        ("postgresql://postgres:hunter2@127.0.0.1:1/x", True),
        ("mysql+asyncmy://root@127.0.0.1:1/x", False),
        ("mysql+asyncmy://root:hunter2@127.0.0.1:1/x", True),
        ("mysql+aiomysql://root:hunter2@127.0.0.1:1/x", True),
        ("mariadb://root:hunter2@127.0.0.1:1/x", True),
        ("mariadb+aiomysql://root@127.0.0.1:1/x", False),
    ],
)
def test_unreachable_database_is_one_clear_line(sg: Simgate, url: str, has_password: bool) -> None:
    result = sg.run("app", "list", env={"SIMGATE_DATABASE_URL": url})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot reach the database")
    assert "127.0.0.1:1" in lines[0]
    assert "hunter2" not in result.stderr
    assert "hunter2" not in result.stdout
    if has_password:
        assert "***" in lines[0]


async def test_mariadb_scheme_url_works(tmp_path: Path) -> None:
    """The contract and config.py accept mariadb:// URLs; they must reach a real server."""
    if "mariadb" not in BACKENDS:
        pytest.skip("mariadb is not in SIMGATE_TEST_BACKENDS")
    async for url in fresh_database("mariadb", tmp_path):
        runner = Simgate(tmp_path / "data")
        runner.data_dir.mkdir()
        mariadb_url = make_url(url).set(drivername="mariadb+asyncmy")
        runner.env["SIMGATE_DATABASE_URL"] = mariadb_url.render_as_string(hide_password=False)
        runner.create_app("shop")
        assert [r[0] for r in table_rows(runner.ok("app", "list").stdout)] == ["shop"]


def test_serve_with_unreachable_database_exits_with_message(sg: Simgate) -> None:
    env = {
        "SIMGATE_DATABASE_URL": "postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/x",
        "SIMGATE_DB_STARTUP_TIMEOUT": "1",
    }
    result = sg.run("serve", env=env, timeout=TIMEOUT)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines, "no message on stderr"
    assert lines[-1].startswith("error: cannot reach the database")
    assert "hunter2" not in result.stderr
    assert "hunter2" not in result.stdout


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "simgate-config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_file_unknown_key_fails_naming_it(sg: Simgate, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'log_level = "info"\nbogus_setting = 1\n')
    line = sg.fails("app", "list", env={"SIMGATE_CONFIG": str(config)})
    assert "bogus_setting" in line
    assert line.startswith("error: ")


def test_config_file_bad_port_fails_naming_setting(sg: Simgate, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'port = "x"\n')
    line = sg.fails("app", "list", env={"SIMGATE_CONFIG": str(config)})
    assert "SIMGATE_PORT" in line


def test_config_file_syntax_error_is_one_line(sg: Simgate, tmp_path: Path) -> None:
    config = write_config(tmp_path, "port = = 1\n")
    line = sg.fails("app", "list", env={"SIMGATE_CONFIG": str(config)})
    assert line.startswith("error: ")


def test_missing_config_file_fails(sg: Simgate, tmp_path: Path) -> None:
    line = sg.fails("app", "list", env={"SIMGATE_CONFIG": str(tmp_path / "nope.toml")})
    assert "SIMGATE_CONFIG" in line
    assert "nope.toml" in line


def test_config_file_is_read(sg: Simgate, tmp_path: Path) -> None:
    from_file = tmp_path / "from-file.db"
    config = write_config(tmp_path, f'database_url = "sqlite+aiosqlite:///{from_file}"\n')
    sg.create_app("shop", "--config", str(config))
    assert from_file.exists()
    assert not (sg.data_dir / "simgate.db").exists()
    listed = sg.ok("app", "list", env={"SIMGATE_CONFIG": str(config)}).stdout
    assert [r[0] for r in table_rows(listed)] == ["shop"]


def test_environment_overrides_config_file(sg: Simgate, tmp_path: Path) -> None:
    from_file = tmp_path / "from-file.db"
    from_env = tmp_path / "from-env.db"
    config = write_config(
        tmp_path, f'database_url = "sqlite+aiosqlite:///{from_file}"\nport = "x"\n'
    )
    env = {
        "SIMGATE_CONFIG": str(config),
        "SIMGATE_DATABASE_URL": f"sqlite+aiosqlite:///{from_env}",
        "SIMGATE_PORT": "8123",
    }
    sg.ok("app", "create", "shop", env=env)
    assert from_env.exists()
    assert not from_file.exists()


# --- no tracebacks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["nosuchcommand"],
        ["app", "create"],
        ["key", "revoke"],
        ["serve", "--port", "notaport"],
        ["app", "create", "x", "--bogus-option"],
    ],
    ids=lambda a: " ".join(a),
)
def test_usage_errors_exit_2_without_traceback(sg: Simgate, args: list[str]) -> None:
    result = sg.run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


def test_a_database_a_newer_simgate_upgraded_gets_a_clear_error(tmp_path: Path) -> None:
    import sqlite3

    cli = Simgate(tmp_path / "data")
    cli.ok("db", "upgrade")
    with sqlite3.connect(tmp_path / "data" / "simgate.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0999'")
    for args in (("app", "list"), ("db", "upgrade"), ("gateway", "list")):
        done = cli.run(*args)
        assert done.returncode == 1, args
        assert "schema is at revision '0999', which simgate" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
