"""`salesbot check` catches what would fail later, and every bad setting or file is one sentence
naming it (config key, file, database), never a traceback."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from storage.db import Database
from tests.conftest import ROOT, portable_config_text, write_config


def check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", "--config", str(config)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def own_templates(tmp_path: Path) -> Path:
    """A copy of the shipped templates and a config that uses it (relative templates_dir)."""
    shutil.copytree(ROOT / "scripts_templates", tmp_path / "scripts_templates")
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    return write_config(tmp_path, text)


def test_the_shipped_setup_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(own_templates(tmp_path), capsys)
    assert code == 0 and "OK" in out
    assert not (tmp_path / "data" / "salesbot.db").exists(), "check creates no database"


def test_a_template_from_another_kinds_folder_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = own_templates(tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace('template = "countdown/step.txt.j2"', 'template = "aftercare/t1.txt.j2"'),
        encoding="utf-8",
    )
    code, out = check(config, capsys)
    assert code == 1
    assert "countdown.template" in out and "aftercare/t1.txt.j2" in out and str(config) in out


def test_a_hook_template_is_checked_like_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = own_templates(tmp_path)
    text = config.read_text(encoding="utf-8")
    wrong = text.replace('template = "hooks/gift.txt.j2"', 'template = "welcome/default.txt.j2"')
    config.write_text(wrong, encoding="utf-8")
    code, out = check(config, capsys)
    assert code == 1 and "hooks.rules.0.template" in out and "welcome/default.txt.j2" in out
    config.write_text(text, encoding="utf-8")
    gift = tmp_path / "scripts_templates" / "hooks" / "gift.txt.j2"
    gift.write_text("{% if off_hours %}{{ back_at }}{% else %}{{ rep.nick }}{% endif %}", encoding="utf-8")
    code, out = check(config, capsys)
    assert code == 1 and "hooks/gift.txt.j2" in out and "in working hours" in out, out
    gift.unlink()
    code, out = check(config, capsys)
    assert code == 1 and f"{gift}: template not found" in out


def test_a_hot_lead_reply_script_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = own_templates(tmp_path)
    scripts = tmp_path / "scripts_templates" / "objections" / "_buying_signal.toml"
    scripts.write_text('[[scripts]]\nid = "x"\nstages = []\ntext = "{{ rep.nick }}好的"\n', encoding="utf-8")
    code, out = check(config, capsys)
    assert code == 1 and "_buying_signal.toml:2: script 'x'" in out and "Traceback" not in out, out


def test_quiet_hours_of_no_length_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path, portable_config_text().replace("quiet_end = 08:30:00", "quiet_end = 21:30:00")
    )
    code, out = check(config, capsys)
    assert code == 1 and "reach" in out and "quiet_start and quiet_end" in out


def test_a_template_that_is_not_utf8_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = own_templates(tmp_path)
    bad = tmp_path / "scripts_templates" / "followup" / "t1.txt.j2"
    bad.write_bytes("您好".encode("gbk"))
    code, out = check(config, capsys)
    assert code == 1 and f"{bad}: not UTF-8 text" in out and "Traceback" not in out


@pytest.mark.parametrize(
    ("folder", "text", "branch"),
    [
        # breaks only in working hours: the sample welcome is off hours
        (
            "welcome",
            "{% if off_hours %}{{ back_at }}{% else %}{{ rep.nick }}{% endif %}您好",
            "in working hours",
        ),
        # empty when the rep gives no offer name
        ("countdown", "{% if offer %}{{ offer }}{{ left }}{% endif %}", "with no offer name"),
        # breaks on an order with no product
        ("aftercare", "{{ customer.name }}，{{ product[0] }}怎么样？", "with no product"),
        # reads "，…" to a customer without a usable name
        ("aftercare", "{{ customer.name }}，{{ product }}用得怎么样？", "reads oddly with no customer name"),
    ],
)
def test_every_branch_of_a_template_is_rendered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: str, text: str, branch: str
) -> None:
    config = own_templates(tmp_path)
    name = {"welcome": "default", "countdown": "step", "aftercare": "t1"}[folder]
    (tmp_path / "scripts_templates" / folder / f"{name}.txt.j2").write_text(text, encoding="utf-8")
    code, out = check(config, capsys)
    assert code == 1 and f"{folder}/{name}.txt.j2" in out and branch in out, out
    assert "Traceback" not in out


def test_an_unreachable_postgresql_is_one_sentence_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://rep:hunter2-secret@127.0.0.1:1/salesbot"  # nothing listens on port 1
    config = write_config(
        tmp_path, portable_config_text().replace('url = "sqlite:///data/salesbot.db"', f'url = "{url}"')
    )
    code, out = check(config, capsys)
    assert code == 1
    assert "database.url" in out and "cannot open the database" in out and "127.0.0.1:1" in out
    assert "hunter2-secret" not in out and "Traceback" not in out


def test_a_database_path_that_cannot_be_created_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").write_text("a file where the folder should be", encoding="utf-8")
    config = write_config(tmp_path)
    code, out = check(config, capsys)
    assert code == 1 and "database.url" in out and "is a file, not a folder" in out


def _future_schema(path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}")

    async def migrate() -> None:
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(migrate())
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")


def test_a_database_newer_than_the_code_is_refused_by_check_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    (tmp_path / "data").mkdir()
    _future_schema(tmp_path / "data" / "salesbot.db")
    code, out = check(config, capsys)
    assert code == 1 and "newer schema (revision 9999_from_the_future)" in out and "upgrade salesbot" in out

    run = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--config", str(config), "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "newer schema" in run.stderr and "Traceback" not in run.stderr + run.stdout


def test_a_failed_schema_upgrade_stops_run_without_blaming_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child that migrates for ``salesbot run`` crashed: one sentence, no traceback, and not
    "database.url" (the setting is fine)."""
    config = write_config(tmp_path)
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\ncat >/dev/null\necho 'Traceback (most recent call last):' >&2\nexit 9\n")
    python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--config", str(config), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: the database's schema could not be brought up to date"), err
    assert "ended with code 9" in err and "database.url" not in err and "Traceback" not in err
