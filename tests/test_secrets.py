"""No secret in any log line: the puppet-service token, the web access token, the database password.

The real CLI runs with every log at DEBUG (``--verbose``) and the Wechaty libraries at their most
verbose (``WECHATY_LOG=verbose``); everything it writes to stdout and stderr is searched.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.config import Config
from bot.runner import banner
from bot.transport.wechaty_compat import new_service_puppet
from bot.web.app import create_app
from tests.conftest import default_config_data, make_config, merge, portable_config_text, write_config
from tests.gateway_peer import Gateway, ensure_node_gateway
from tests.harness import Harness

LISTEN_ANYWHERE = ("--host", "0.0.0.0", "--port", "0")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_config(folder: Path) -> Path:
    text = portable_config_text().replace('transport = "local"', 'transport = "service"')
    return write_config(folder, text)


def loud_env(**extra: str) -> dict[str, str]:
    """The most verbose logging there is, and no inherited secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESBOT_")}
    return {**env, "WECHATY_LOG": "verbose", "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged anywhere, at DEBUG: the root logger and the Wechaty libraries' own
    loggers (they have their own handlers and do not propagate)."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in ("PuppetService", "Wechaty", "Puppet"))]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield sink
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
        handler.close()


def test_building_a_service_puppet_logs_no_token(captured: io.StringIO) -> None:
    token = f"puppet_padlocal_{uuid.uuid4().hex}"
    new_service_puppet(token=token, endpoint=f"127.0.0.1:{closed_port()}", keepalive_seconds=0)
    library = logging.getLogger("PuppetService")  # as the library (or a later version of it) might
    library.warning("there are endpoint<x> and token<%s>", token)
    library.warning(f"token<{token}> in an f-string")
    try:
        raise ConnectionError(f"authority {token} refused")
    except ConnectionError:
        logging.getLogger("salesbot").exception("start failed: %r", {"token": token})
    output = captured.getvalue()
    assert "token<***>" in output and "authority *** refused" in output, output
    assert token not in output, output


def test_run_with_a_service_account_logs_no_token(tmp_path: Path) -> None:
    """The real CLI, a service account whose service is down: the library warns at construction,
    the start fails, the error is printed; the token is in none of it."""
    token = f"insecure_{uuid.uuid4()}"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--verbose", "--config", str(service_config(tmp_path))],
        cwd=tmp_path,
        env=loud_env(SALESBOT_DEMO_TOKEN=token, SALESBOT_DEMO_ENDPOINT=f"127.0.0.1:{closed_port()}"),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 1
    assert "cannot reach the puppet service" in result.stderr
    assert "DEBUG" in result.stderr, "the run logged at DEBUG"
    assert token not in result.stdout + result.stderr, result.stderr


def test_banner_hides_the_database_password() -> None:
    config: Config = make_config(
        merge(
            default_config_data(), {"database": {"url": "postgresql+asyncpg://bot:s3cret-pw@db:5432/sales"}}
        )
    )
    text = banner(config, "config.toml")
    assert "s3cret-pw" not in text
    assert "postgresql+asyncpg://bot:***@db:5432/sales" in text


def read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    lines: list[str] = []
    while line := process.stdout.readline():
        lines.append(line)
        if marker in line:
            break
    return "".join(lines)


def test_a_generated_web_token_is_written_to_an_owner_only_file_not_to_the_log(tmp_path: Path) -> None:
    """stdout is not a terminal (a service manager, a log file): the banner says where the token is."""
    config = write_config(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run", "--verbose", "--config", str(config), *LISTEN_ANYWHERE],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env=loud_env(),
    )
    try:
        output = read_until(process, "Press Ctrl-C to stop.")
        token_file = (tmp_path / "web-token").resolve()
        assert f"access token (generated): in {token_file}" in output, output
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text(encoding="utf-8").strip()
        port = re.search(r"dashboard: http://0\.0\.0\.0:(\d+)/dashboard", output)
        assert port, output
        request = urllib.request.Request(
            f"http://127.0.0.1:{port.group(1)}/api/metrics?token={token}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output + rest
    assert token not in output + rest


async def verbose_service_run(tmp_path: Path, token: str, endpoint: str) -> asyncio.subprocess.Process:
    """``salesbot run --verbose`` on a service account, every library logging at its loudest."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--verbose",
        "--config",
        str(service_config(tmp_path)),
        "--port",
        "0",
        cwd=tmp_path,
        env=loud_env(SALESBOT_DEMO_TOKEN=token, SALESBOT_DEMO_ENDPOINT=endpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.gateway
def test_a_service_run_over_the_official_gateway_logs_no_token(tmp_path: Path) -> None:
    """Log in, accept a friend, read a message and answer it over gRPC (the token goes out as the
    ``:authority`` of every call), stop: nothing the process wrote holds the token."""
    ensure_node_gateway()

    async def scenario() -> tuple[str, str, int | None, str]:
        peer = Gateway()
        await peer.start()
        try:
            process = await verbose_service_run(tmp_path, peer.token, peer.endpoint)
            assert process.stdout is not None and process.stderr is not None
            errors = asyncio.create_task(process.stderr.read())
            lines: list[bytes] = []
            try:
                async with asyncio.timeout(60):
                    while line := await process.stdout.readline():
                        lines.append(line)
                        if b"Press Ctrl-C to stop." in line:
                            break
                peer.add_stranger("c1", "张三", "你好")
                await peer.wait_for(lambda e: e["event"] == "accepted")
                peer.customer_says("c1", "太贵了")
                await peer.wait_for(lambda e: e["event"] == "sent" and e["to"] == "filehelper")
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
                rest = await asyncio.wait_for(process.stdout.read(), 30)
                await process.wait()
            stdout = b"".join(lines).decode() + rest.decode()
            return stdout, (await errors).decode(), process.returncode, peer.token
        finally:
            await peer.close()

    stdout, stderr, returncode, token = asyncio.run(scenario())
    assert returncode == 0, stdout + stderr
    assert "salesbot is running" in stdout
    assert "DEBUG" in stderr
    assert token not in stdout + stderr, stderr


@pytest.mark.gateway
def test_a_rejected_token_is_not_quoted_back(tmp_path: Path) -> None:
    ensure_node_gateway()
    wrong = f"insecure_{uuid.uuid4()}"

    async def scenario() -> subprocess.CompletedProcess[str]:
        peer = Gateway()
        await peer.start()
        try:
            process = await verbose_service_run(tmp_path, wrong, peer.endpoint)
            stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
            assert process.returncode is not None
            return subprocess.CompletedProcess([], process.returncode, stdout.decode(), stderr.decode())
        finally:
            await peer.close()

    result = asyncio.run(scenario())
    assert result.returncode == 1
    assert "rejected the token" in result.stderr
    assert wrong not in result.stdout + result.stderr, result.stderr


async def test_pages_and_errors_never_show_the_web_token(sim: Harness) -> None:
    """Only the simulator page carries it (its scripts post with it; see README), and a page echoes
    a token only to the one who presented it (the dashboard's filter form)."""
    token = f"web-{uuid.uuid4().hex}"
    await sim.friend_request("c1", "张三", "小红书")
    client = TestClient(TestServer(create_app(sim.bot.reports, token=token, token_for_reads=False)))
    await client.start_server()
    try:
        for path in ("/dashboard", "/api/metrics", "/api/customers", "/api/accounts", "/nowhere"):
            response = await client.get(path)
            assert token not in await response.text(), path
        refused = await client.post("/api/customers", json={}, headers={"Authorization": "Bearer wrong"})
        assert refused.status in (401, 405) and token not in await refused.text()
    finally:
        await client.close()
