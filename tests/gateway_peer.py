"""Drives the official Node puppet-service gateway (tests/gateway/gateway.mjs) from a test.

The gateway runs the real ``PuppetServer`` over the official mock puppet; this class starts it as a
subprocess, sends it control commands (a stranger asks to be friends, a customer writes, the rep
types on the phone) and collects what it reports (texts the bot sent, requests it accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

GATEWAY_DIR = Path(__file__).resolve().parent / "gateway"
Event = dict[str, Any]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_node_gateway() -> None:
    """Install the pinned Node packages on first use (the lock file pins every version).

    Skips when Node is absent on a developer's machine; fails in CI, where the suite must run."""
    if (GATEWAY_DIR / "node_modules" / "wechaty-puppet-service").is_dir():
        return
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("Node.js and npm are needed for the gateway end-to-end suite")
        pytest.skip("Node.js and npm are not installed: the gateway end-to-end suite cannot run")
    # `npm ci` rejects this lock file under npm 11 (other platforms' optional @swc/core builds are
    # not listed); `npm install` installs exactly the locked versions
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund"], cwd=GATEWAY_DIR, check=True, capture_output=True
    )


class Gateway:
    """One gateway process on loopback. ``restart()`` kills it and starts a fresh one on the same port
    (the contacts named in ``friends`` are created again: a real service keeps its contacts)."""

    def __init__(
        self, *, self_id: str = "rep-self", self_name: str = "小王", tls: bool = False, scan: bool = False
    ) -> None:
        self.port = free_port()
        self.token = f"insecure_{uuid.uuid4()}"
        self.self_id = self_id
        self.self_name = self_name
        self.tls = tls
        self.scan = scan  # the account logs in by QR code (see scan_step, log_in)
        self.events: list[Event] = []
        self.errors: list[str] = []  # control commands the gateway could not carry out
        self.friends: dict[str, str] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            "node",
            str(GATEWAY_DIR / "gateway.mjs"),
            "--port",
            str(self.port),
            "--token",
            self.token,
            "--self-id",
            self.self_id,
            "--self-name",
            self.self_name,
            *(["--tls"] if self.tls else []),
            *(["--scan"] if self.scan else []),
            cwd=GATEWAY_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._reader = asyncio.create_task(self._read(self._process))
        await self.wait_for(lambda e: e["event"] == "listening", within=30, since=len(self.events))
        for contact_id, name in self.friends.items():
            self.command("contact", id=contact_id, name=name, friend=True)

    async def kill(self) -> None:
        """SIGKILL: the bot sees its stream break, as when a gateway host dies."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
        if self._reader is not None:
            await self._reader
        self._process = self._reader = None

    def freeze(self) -> None:
        """SIGSTOP: the connection stays open but nothing answers, as with a hung host or a NAT
        that dropped the flow."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def close(self) -> None:
        if self._process is not None and self._process.stdin is not None:
            self._process.stdin.close()  # the gateway exits when its control channel closes
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._process.wait(), 10)
        await self.kill()

    # -- control ----------------------------------------------------------------------------------

    def command(self, cmd: str, **fields: Any) -> None:
        assert self._process is not None and self._process.stdin is not None, "gateway not running"
        line = json.dumps({"cmd": cmd, **fields}, ensure_ascii=False) + "\n"
        self._process.stdin.write(line.encode("utf-8"))

    def add_stranger(self, contact_id: str, name: str, hello: str) -> None:
        self.command("contact", id=contact_id, name=name)
        self.command("friend_request", id=contact_id, hello=hello)

    def add_friend(self, contact_id: str, name: str) -> None:
        self.friends[contact_id] = name
        self.command("contact", id=contact_id, name=name, friend=True)

    def customer_deletes(self, contact_id: str, *, send_error: str | None = None) -> None:
        """The customer removes the rep; later sends fail, saying ``send_error`` when given."""
        if send_error is None:
            self.command("unfriend", id=contact_id)
        else:
            self.command("unfriend", id=contact_id, error=send_error)

    def sends_fail(self, contact_id: str, error: str) -> None:
        """Sends to a customer who is still a friend fail, saying ``error``."""
        self.command("fail_sends", id=contact_id, error=error)

    def customer_says(self, contact_id: str, text: str) -> None:
        self.command("say", **{"from": contact_id}, text=text)

    def rep_types(self, conversation_id: str, text: str) -> None:
        self.command("self_say", to=conversation_id, text=text)

    def scan_step(self, status: str) -> None:
        """A QR code step: "waiting" (a new code), "scanned" or "timeout"."""
        self.command("scan", status=status)

    def log_in(self) -> None:
        self.command("login")

    def log_out(self) -> None:
        self.command("logout")

    # -- observation ------------------------------------------------------------------------------

    def sent_to(self, conversation_id: str) -> list[str]:
        return [e["text"] for e in self.events if e["event"] == "sent" and e["to"] == conversation_id]

    async def wait_for(
        self, predicate: Callable[[Event], bool], *, within: float = 30, since: int = 0
    ) -> Event:
        """The first event at index ``since`` or later that satisfies ``predicate``."""

        def found() -> Event | None:
            return next((e for e in self.events[since:] if predicate(e)), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), within)
        event = found()
        assert event is not None
        return event

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a library printing to stdout
            if event.get("event") == "error":
                self.errors.append(event["message"])
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()
