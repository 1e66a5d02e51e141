"""The docker compose example (deploy/) stays true to the CLI: its command lines parse with the
real argument parser, and the settings it tells the operator to change exist."""

from __future__ import annotations

import json
import re

from bot.cli import _parser
from tests.conftest import ROOT, default_config_data

DEPLOY = ROOT / "deploy"


def flow_lists(text: str, key: str) -> list[list[str]]:
    """The values of ``key: [...]`` lines (YAML flow lists of strings, which are JSON)."""
    return [json.loads(m) for m in re.findall(rf"^\s*{key}:\s*(\[.*\])\s*$", text, flags=re.MULTILINE)]


def test_the_compose_and_docker_commands_are_valid_salesbot_command_lines() -> None:
    compose = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    commands = flow_lists(compose, "command")
    commands += [
        json.loads(line.split(" ", 1)[1]) for line in dockerfile.splitlines() if line.startswith("CMD ")
    ]
    assert len(commands) == 2 and commands[0] == commands[1], "compose and the image run the same"
    for command in commands:
        args = _parser().parse_args(command)  # exits (SystemExit) on an unknown flag
        assert args.command == "run" and args.config == "/etc/salesbot/config.toml"
        assert (args.host, args.port) == ("0.0.0.0", 8080)
    assert 'ENTRYPOINT ["salesbot"]' in dockerfile
    assert "'.[postgres]'" in dockerfile, "the PostgreSQL driver is installed"
    probe = flow_lists(compose, "test")[-1]
    assert "http://127.0.0.1:8080/readyz" in probe[-1]


def test_the_settings_the_compose_file_names_exist() -> None:
    compose = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    config = default_config_data()
    assert "url" in config["database"] and "templates_dir" in config
    assert "lease_seconds" in config["cluster"]
    assert "[database] url" in compose and "[cluster] lease_seconds" in compose
    assert "SALESBOT_<ID>_TOKEN" in compose and "SALESBOT_WEB_TOKEN" in compose
    assert "postgresql://salesbot:salesbot@db/salesbot" in compose
    assert "POSTGRES_USER: salesbot" in compose and "POSTGRES_DB: salesbot" in compose
