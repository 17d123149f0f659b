from __future__ import annotations

from pathlib import Path

import pytest

from simgate.config import ConfigError, load_settings, normalise_database_url, redact_url

pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults_put_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    assert s.effective_database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/simgate.db"
    assert s.backend == "sqlite"
    assert s.port == 8000
    assert s.max_body_bytes == 1024 * 1024


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgres://u@h:5433/db", "postgresql+asyncpg://u@h:5433/db"),
        ("mysql://root@h/db", "mysql+asyncmy://root@h/db"),
        ("mysql+aiomysql://root@h/db", "mysql+aiomysql://root@h/db"),
        ("mariadb://root@h/db", "mariadb+asyncmy://root@h/db"),
        ("sqlite:////var/lib/simgate.db", "sqlite+aiosqlite:////var/lib/simgate.db"),
    ],
)
def test_bare_schemes_get_the_async_driver(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("nonsense", "not a database URL"),
        ("oracle://u@h/db", "unsupported database 'oracle'"),
        ("postgresql+psycopg2://u@h/db", "driver 'psycopg2' is not supported"),
        ("sqlite+aiosqlite:///:memory:", "needs a file path"),
        ("postgresql+asyncpg://u@h", "no database name"),
    ],
)
def test_bad_database_urls_are_named(given: str, words: str) -> None:
    with pytest.raises(ConfigError, match="SIMGATE_DATABASE_URL") as info:
        normalise_database_url(given)
    assert words in str(info.value)


def test_bad_url_from_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMGATE_DATABASE_URL", "oracle://scott:tiger@h/db")
    with pytest.raises(ConfigError, match="SIMGATE_DATABASE_URL") as info:
        load_settings()
    assert "tiger" not in str(info.value)


def test_redact_url_hides_passwords() -> None:
    assert "hunter2" not in redact_url("postgresql+asyncpg://u:hunter2@h/db")
    assert "***" in redact_url("postgresql+asyncpg://u:hunter2@h/db")


def test_environment_overrides_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "simgate.toml"
    cfg.write_text('port = 9000\nlog_format = "console"\n')
    monkeypatch.setenv("SIMGATE_PORT", "9100")
    s = load_settings(cfg)
    assert s.port == 9100
    assert s.log_format == "console"


def test_config_file_in_data_dir_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "simgate.toml").write_text("port = 9200\n")
    monkeypatch.setenv("SIMGATE_DATA_DIR", str(tmp_path))
    assert load_settings().port == 9200


def test_unknown_key_in_config_file_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "simgate.toml"
    cfg.write_text("prot = 9000\n")
    with pytest.raises(ConfigError, match="prot: unknown setting"):
        load_settings(cfg)


def test_wrong_type_names_the_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "simgate.toml"
    cfg.write_text('port = "eighty"\n')
    with pytest.raises(ConfigError, match="SIMGATE_PORT"):
        load_settings(cfg)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "simgate.toml"
    cfg.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match=r"simgate\.toml"):
        load_settings(cfg)


def test_missing_config_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.toml")
    monkeypatch.setenv("SIMGATE_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="SIMGATE_CONFIG"):
        load_settings()


def test_out_of_range_port_is_rejected() -> None:
    with pytest.raises(ConfigError, match="SIMGATE_PORT"):
        load_settings(port=70000)
