"""`salesbot simulate`: the scenario format, the output format, errors that name the step."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.simulate import parse_duration
from tests.conftest import ROOT

HEADER = 'start = 2026-11-23T09:00:00+08:00\naccount = "demo"\n[[customers]]\nid = "c1"\nname = "张三"\n'


def scenario(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(header + body, encoding="utf-8")
    return path


def run(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, str]], str]:
    code = main(["simulate", str(path), "--config", str(ROOT / "config.toml")])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_output_is_one_json_object_per_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = scenario(tmp_path, '[[steps]]\nfriend_request = "c1"\nhello = "抖音直播间来的"\n')
    code, lines, err = run(path, capsys)
    assert code == 0, err
    [line] = lines
    assert set(line) == {"at", "account", "to", "kind", "text"}
    assert (line["account"], line["to"], line["kind"]) == ("demo", "c1", "welcome")
    at = datetime.fromisoformat(line["at"])
    assert at.utcoffset() == timedelta(hours=8), "times are printed in the configured zone"
    assert (
        timedelta(seconds=3)
        <= at - datetime.fromisoformat("2026-11-23T09:00:00+08:00")
        <= timedelta(seconds=8)
    )
    assert "欢迎从抖音过来" in line["text"]


def test_delayed_actions_fire_only_when_the_clock_reaches_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run ends with an implicit one-minute advance; without it nothing would be sent."""
    body = '[[steps]]\nfriend_request = "c1"\n[[steps]]\ndelete = "c1"\n'
    code, lines, _ = run(scenario(tmp_path, body), capsys)
    assert code == 0
    assert [line for line in lines if line["to"] == "c1"] == []  # deleted before the pause ended
    assert [line["kind"] for line in lines] == ["alert"]  # the failed welcome tells the rep


def test_same_seed_same_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = scenario(tmp_path, '[[steps]]\nfriend_request = "c1"\n')
    first = run(path, capsys)[1]
    second = run(path, capsys)[1]
    assert first == second


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[[steps]]\nfriend_request = "c9"\n', "step 1: unknown customer handle 'c9'"),
        ('[[steps]]\nfriend_request = "c1"\n[[steps]]\nadvance = "3 fortnights"\n', "step 2: bad duration"),
        ('[[steps]]\nfly = "c1"\n', "step 1: fly: unknown key"),
        ('[[steps]]\ncustomer = "c1"\n', "step 1: 'customer' and 'says' go together"),
        ('[[steps]]\nadvance = "1m"\ndelete = "c1"\n', "step 1: a step needs exactly one of"),
    ],
)
def test_bad_scenario_names_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, expected: str
) -> None:
    code, lines, err = run(scenario(tmp_path, body), capsys)
    assert code == 1 and lines == []
    assert expected in err


def test_unknown_account_and_bad_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        scenario(tmp_path, "", header='start = 2026-11-23T09:00:00+08:00\naccount = "x"\n'), capsys
    )
    assert code == 1 and "account 'x' is not in the config" in err
    code, _, err = run(scenario(tmp_path, "", header='start = "tomorrow"\n'), capsys)
    assert code == 1 and "start" in err


def test_durations() -> None:
    assert parse_duration("3d") == timedelta(days=3)
    assert parse_duration("1d2h30m") == timedelta(days=1, hours=2, minutes=30)
    assert parse_duration("45s") == timedelta(seconds=45)
    for bad in ("", "3", "3w", "d3", "1h x"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert parse_duration("400d") == timedelta(days=400)
    for huge in (
        "99999999999d",
        "9999999d",
        "401d",
        "400d1s",
    ):  # overflowed into a traceback (a 500 on the web)
        with pytest.raises(ValueError, match="at most 400d"):
            parse_duration(huge)


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_examples_run(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run(example, capsys)
    assert code == 0, err
    assert lines, f"{example.name} printed nothing"
    kinds = {
        "welcome",
        "command_reply",
        "suggestion",
        "reply",
        "countdown",
        "aftercare",
        "followup",
        "digest",
        "alert",
        "signal",
        "auto_reply",
        "reactivation",
        "coach",
    }
    assert {line["kind"] for line in lines} <= kinds
    # a signal says which one
    assert all(line["signal"] in ("buying_signal", "referral") for line in lines if line["kind"] == "signal")


def test_an_unreadable_scenario_file_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gbk = tmp_path / "gbk.toml"
    gbk.write_bytes("# 场景\n".encode("gbk"))
    code, _, err = run(gbk, capsys)
    assert code == 1 and "not UTF-8 text (save the file as UTF-8)" in err and "Traceback" not in err
    code, _, err = run(tmp_path, capsys)
    assert code == 1 and "is a folder, not a scenario file" in err and "Traceback" not in err
