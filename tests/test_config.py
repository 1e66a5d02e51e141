"""Configuration is validated at startup; errors name the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_config
from bot.errors import ConfigError
from tests.conftest import ROOT, make_config, portable_config_text


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def broken(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    assert old in text, f"fixture drifted: {old!r} not in config.toml"
    return write(tmp_path, text.replace(old, new, 1))


def test_default_config_is_valid_and_documented() -> None:
    config = load_config(ROOT / "config.toml")
    assert config.timezone == "Asia/Shanghai"
    assert [s.key for s in config.stages] == ["stranger", "potential", "intent", "ordered", "repeat", "koc"]
    assert config.accounts[0].transport == "local"
    assert config.database_url().startswith("sqlite+aiosqlite:///")
    # every key is explained where it first appears (repeated [[blocks]] need not repeat the comment)
    lines = (ROOT / "config.toml").read_text(encoding="utf-8").splitlines()
    documented: set[str] = set()
    keys: set[str] = set()
    for number, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            key = line.split("=", 1)[0].strip()
            keys.add(key)
            above = lines[number - 1].strip() if number else ""
            if "#" in line or above.startswith("#"):
                documented.add(key)
    assert keys - documented == set(), f"config.toml keys without a comment: {keys - documented}"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"', "timezone: unknown IANA time zone"),
        ("poll_seconds = 5.0", 'poll_seconds = "often"', "dispatch.poll_seconds"),
        (
            "readd_window_days = 30",
            "readd_window_days = 30\nreadd_windw = 2",
            "welcome.readd_windw: unknown key",
        ),
        ('nickname = "小林"', "", "accounts.0.profile.nickname: missing required value"),
        (
            "start = 09:00:00",
            "start = 22:00:00",
            "accounts.0.profile.working_hours: start must be before end",
        ),
        ('transport = "local"', 'transport = "carrier-pigeon"', "accounts.0.transport"),
        ("delay_seconds = [3.0, 8.0]", "delay_seconds = [9.0, 2.0]", "welcome.delay_seconds"),
        ('url = "sqlite:///data/salesbot.db"', 'url = "mysql://x"', "database.url"),
        ("hot_lead_nudge_minutes = 15", "hot_lead_nudge_minutes = 0", "signals.hot_lead_nudge_minutes"),
        ('hot_lead_stage = "intent"', 'hot_lead_stage = "hot"', "signals.hot_lead_stage: unknown stage"),
        ('after = ["welcome", "followup"]', 'after = ["digest"]', "hooks.rules.0.after"),
        ("alert_rep = false", "alert_rep = false\nalert = true", "hooks.rules.0.alert: unknown key"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = broken(tmp_path, old, new)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    assert expected in message


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'timezone = "Asia/Shanghai"\nthis is not toml\n')
    with pytest.raises(ConfigError, match=r"config.toml: not valid TOML.*line 2"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_an_unreadable_config_file_is_one_sentence(tmp_path: Path) -> None:
    """A config saved in GBK, or a folder given as the config, is named, never a traceback."""
    gbk = tmp_path / "gbk.toml"
    gbk.write_bytes('timezone = "上海"\n'.encode("gbk"))
    with pytest.raises(ConfigError, match=r"gbk\.toml: not UTF-8 text \(save the file as UTF-8\)"):
        load_config(gbk)
    with pytest.raises(ConfigError, match=r"is a folder, not a config file"):
        load_config(tmp_path)


def test_duplicate_account_ids_rejected() -> None:
    account = make_config().accounts[0].model_dump(mode="json")
    with pytest.raises(ConfigError, match="account ids must be unique"):
        make_config({"accounts": [account, account]})


def test_postgres_url_uses_async_driver() -> None:
    config = make_config({"database": {"url": "postgresql://u:p@db/sales"}})
    assert config.database_url() == "postgresql+asyncpg://u:p@db/sales"


def test_relative_sqlite_path_is_anchored_at_config_folder(tmp_path: Path) -> None:
    text = portable_config_text()
    config = load_config(write(tmp_path, text))
    assert config.database_url() == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'salesbot.db'}"


def test_service_token_and_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    account = make_config(
        {"accounts": [{**make_config().accounts[0].model_dump(mode="json"), "transport": "service"}]}
    ).accounts[0]
    monkeypatch.setenv("SALESBOT_DEMO_TOKEN", "insecure_abc")
    monkeypatch.setenv("SALESBOT_DEMO_ENDPOINT", "127.0.0.1:8788")
    assert (account.service_token(), account.service_endpoint()) == ("insecure_abc", "127.0.0.1:8788")


def test_service_transport_without_token_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.clock import SystemClock
    from bot.transport.factory import build_transport

    monkeypatch.delenv("SALESBOT_DEMO_TOKEN", raising=False)
    account = make_config(
        {"accounts": [{**make_config().accounts[0].model_dump(mode="json"), "transport": "service"}]}
    ).accounts[0]
    with pytest.raises(ConfigError, match="SALESBOT_DEMO_TOKEN"):
        build_transport(account, make_config(), SystemClock())


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(ROOT / "config.toml")]) == 0
    assert "OK" in capsys.readouterr().out

    bad = broken(tmp_path, 'timezone = "Asia/Shanghai"', 'timezone = "Nowhere/Land"')
    assert main(["check", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "timezone" in err and str(bad) in err


def test_a_dispatch_batch_below_one_names_the_key() -> None:
    assert make_config().dispatch.batch_size == 16
    with pytest.raises(ConfigError, match=r"dispatch\.batch_size"):
        make_config({"dispatch": {"batch_size": 0}})


def test_a_value_the_message_already_quotes_is_not_repeated(tmp_path: Path) -> None:
    path = broken(tmp_path, 'timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"')
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).count("Mars/Olympus") == 1
