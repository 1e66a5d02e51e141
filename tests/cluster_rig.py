"""Several real ``salesbot run`` processes on one PostgreSQL, each account behind its own official
Node puppet-service gateway (tests/gateway): what the soak test and bench/cluster_bench.py drive.

The gateways are the platform: they outlive the salesbot processes, report every text the bot
sent (counted per account and conversation) and let the rig play customers. A process is killed
(SIGKILL), paused (SIGSTOP) and restarted like a real deployment's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import select

from storage.db import Database
from storage.models import AccountLease, Customer, ScheduledMessage
from storage.repositories import Outbox
from tests.conftest import ROOT, portable_config_text
from tests.gateway_peer import GATEWAY_DIR, Event, free_port

FAST = {
    "delay_seconds = [3.0, 8.0]": "delay_seconds = [0.2, 0.4]",  # welcome delay
    "min_gap_seconds = [4.0, 9.0]": "min_gap_seconds = [0.05, 0.1]",  # between welcomes
    "poll_seconds = 5.0": "poll_seconds = 0.5",
    "port = 8080": "port = 0",
}
RECONNECT_MAX_SECONDS = 1.0  # each account's reconnect backoff cap: part of the failover bound


def rig_config(url: str, gateways: Sequence[tuple[str, Gateway]], lease_seconds: float) -> str:
    """The shipped config on ``url`` with one service account per gateway, fast welcomes, a short
    lease and no supervisor."""
    text = portable_config_text().replace('url = "sqlite:///data/salesbot.db"', f'url = "{url}"')
    text = text.replace("lease_seconds = 30.0", f"lease_seconds = {lease_seconds}")
    for old, new in FAST.items():
        assert old in text, old
        text = text.replace(old, new)
    # no supervisor: the daily digest would join the batches at whatever time the test runs
    text = text[: text.index("[[supervisors]]")] + text[text.index("[tags]") :]
    head, block = text[: text.index("[[accounts]]")], text[text.index("[[accounts]]") :]
    blocks = []
    for account_id, gateway in gateways:
        account = block.replace('id = "demo"', f'id = "{account_id}"', 1)
        account = account.replace('transport = "local"', 'transport = "service"', 1)
        account = account.replace('token = ""', f'token = "{gateway.token}"', 1)
        account = account.replace('endpoint = ""', f'endpoint = "{gateway.endpoint}"', 1)
        account = account.replace("reconnect_min_seconds = 1.0", "reconnect_min_seconds = 0.2", 1)
        capped = f"reconnect_max_seconds = {RECONNECT_MAX_SECONDS}"
        account = account.replace("reconnect_max_seconds = 60.0", capped, 1)
        blocks.append(account)
    return head + "\n".join(blocks)


class Gateways:
    """The official Node gateway serving several accounts, one port each, in one Node process (six
    Node starts would take a loaded two-core machine half a minute)."""

    def __init__(self, count: int) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.token = f"insecure_{uuid.uuid4()}"
        self.events: list[Event] = []
        self.errors: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ports = ",".join(map(str, self.ports))
        self._process = await asyncio.create_subprocess_exec(
            "node",
            str(GATEWAY_DIR / "gateway.mjs"),
            *("--ports", ports, "--token", self.token, "--self-id", "rep-self"),
            cwd=GATEWAY_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._reader = asyncio.create_task(self._read(self._process))
        deadline = time.monotonic() + 120
        while sum(1 for e in self.events if e["event"] == "listening") < len(self.ports):
            if time.monotonic() > deadline or self._process.returncode is not None:
                raise AssertionError(f"the gateway did not start: {self.events} {self.errors}")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
        if self._reader is not None:
            await self._reader

    def command(self, port: int, cmd: str, **fields: Any) -> None:
        assert self._process is not None and self._process.stdin is not None, "gateway not running"
        line = json.dumps({"cmd": cmd, "port": port, **fields}, ensure_ascii=False) + "\n"
        self._process.stdin.write(line.encode("utf-8"))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a library printing to stdout
            if event.get("event") == "error":
                self.errors.append(event["message"])
            self.events.append(event)


@dataclass
class Gateway:
    """One account's view of :class:`Gateways`: its endpoint, token, commands and events."""

    group: Gateways
    port: int

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return self.group.token

    @property
    def events(self) -> list[Event]:
        return [e for e in self.group.events if e.get("port") == self.port]

    def command(self, cmd: str, **fields: Any) -> None:
        self.group.command(self.port, cmd, **fields)


class Process:
    """One ``salesbot run``; its output goes to a log file (a pipe nobody reads would block it)."""

    def __init__(self, folder: Path, name: str, extra_env: dict[str, str] | None = None) -> None:
        self.log = folder / f"{name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), "SALESBOT_WEB_TOKEN": "t"}
        env.update(extra_env or {})
        with open(self.log, "w", encoding="utf-8") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot", "run", "--config", str(folder / "config.toml")],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=folder,
                env=env,
            )
        self.pid = self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> int:
        if self.alive:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9


class Rig:
    """``accounts`` gateways and the processes that share them on ``url`` (PostgreSQL)."""

    def __init__(self, folder: Path, url: str, accounts: int = 6, lease_seconds: float = 3.0) -> None:
        self.folder = folder
        self.url = url
        self.lease_seconds = lease_seconds
        names = ["demo", *(f"rep{i}" for i in range(1, accounts))]
        self.group = Gateways(accounts)
        self.gateways = {
            name: Gateway(self.group, port) for name, port in zip(names, self.group.ports, strict=True)
        }
        self.processes: list[Process] = []
        self._started = 0
        self.requested: dict[str, list[str]] = {name: [] for name in names}  # account -> contact ids
        self.db = Database(url)

    @property
    def accounts(self) -> list[str]:
        return list(self.gateways)

    async def __aenter__(self) -> Rig:
        await self.group.start()
        text = rig_config(self.url, list(self.gateways.items()), self.lease_seconds)
        (self.folder / "config.toml").write_text(text, encoding="utf-8")
        await self.db.migrate()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.alive:
                process.resume()  # a paused one cannot take SIGKILL's exit until continued
                process.kill()
        await self.db.close()
        await self.group.close()

    # -- processes ----------------------------------------------------------------------------------

    def start(self, extra_env: dict[str, str] | None = None) -> Process:
        self._started += 1
        process = Process(self.folder, f"salesbot-{self._started}", extra_env)
        self.processes.append(process)
        return process

    @property
    def live(self) -> list[Process]:
        return [p for p in self.processes if p.alive]

    async def owners(self) -> dict[str, int]:
        """account -> pid of its lease's owner."""
        async with self.db.transaction() as session:
            return {lease.account_id: lease.pid for lease in (await session.exec(select(AccountLease))).all()}

    async def leases(self) -> dict[str, AccountLease]:
        """account -> its lease row."""
        async with self.db.transaction() as session:
            return {lease.account_id: lease for lease in (await session.exec(select(AccountLease))).all()}

    async def kill(self, victim: Process) -> asyncio.Task[dict[str, timedelta]]:
        """SIGKILL ``victim``; returns a task that watches its accounts change hands and ends with,
        per account it held, how long after its last heartbeat (the lease rows' ``heartbeat_at``)
        another process took the lease (the new row's ``taken_at``): database times, written by the
        processes' own clocks, not the test's pace."""
        before = {a: lease for a, lease in (await self.leases()).items() if lease.pid == victim.pid}
        victim.kill()
        # a renewal between that look and the kill: the rows still held tell the last heartbeat
        after = {a: lease for a, lease in (await self.leases()).items() if lease.pid == victim.pid}
        last = max((lease.heartbeat_at for lease in (*before.values(), *after.values())), default=None)
        return asyncio.create_task(self._taken_over(victim, set(before) | set(after), last))

    async def _taken_over(
        self, victim: Process, accounts: set[str], last_heartbeat: datetime | None, within: float = 60.0
    ) -> dict[str, timedelta]:
        taken: dict[str, timedelta] = {}
        deadline = time.monotonic() + within
        while accounts - set(taken):
            for account, lease in (await self.leases()).items():
                if account in accounts and account not in taken and lease.pid != victim.pid:
                    assert last_heartbeat is not None
                    taken[account] = lease.taken_at - last_heartbeat  # the first new owner seen
            if time.monotonic() > deadline:
                raise AssertionError(f"never taken over from {victim.pid}: {sorted(accounts - set(taken))}")
            await asyncio.sleep(0.1)
        return taken

    async def wait_owners(
        self, predicate: Callable[[dict[str, int]], bool], within: float = 60.0
    ) -> dict[str, int]:
        deadline = time.monotonic() + within
        while True:
            found = await self.owners()
            if predicate(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"leases never settled: {found}")
            await asyncio.sleep(0.2)

    def all_owned_by_live(self, owners: dict[str, int]) -> bool:
        live = {p.pid for p in self.live}
        return set(owners) == set(self.accounts) and set(owners.values()) <= live

    async def logged_in(self, within: float = 60.0) -> None:
        """Wait until every account has been logged in at its gateway (so its rows exist)."""
        deadline = time.monotonic() + within
        for account, gateway in self.gateways.items():
            while not any(e["event"] == "started" for e in gateway.events):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{account} never logged in")
                await asyncio.sleep(0.2)

    # -- the platform ---------------------------------------------------------------------------

    def friend_request(self, account: str, contact_id: str) -> None:
        """A stranger asks ``account`` to be friends (again, when already asked: a replay)."""
        if contact_id not in self.requested[account]:
            self.requested[account].append(contact_id)
            self.gateways[account].command("contact", id=contact_id, name=f"客户{contact_id[-4:]}")
        self.gateways[account].command("friend_request", id=contact_id, hello="你好，想了解一下")

    def sends(self, account: str) -> Counter[tuple[str, str]]:
        """(conversation, text) -> how many times the gateway of ``account`` got it from the bot."""
        return Counter((e["to"], e["text"]) for e in self.gateways[account].events if e["event"] == "sent")

    def sends_to(self, account: str, conversation: str) -> int:
        return sum(
            1 for e in self.gateways[account].events if e["event"] == "sent" and e["to"] == conversation
        )

    # -- the database ---------------------------------------------------------------------------

    async def plan_alerts(
        self, per_account: int, over: float, start_in: float = 0.0
    ) -> list[tuple[str, str]]:
        """Console messages due at spread moments over the next ``over`` seconds, each with its own
        idempotency key and text; returns (account, text)."""
        now = datetime.now(UTC)
        planned = []
        async with self.db.transaction() as session:
            outbox = Outbox(session)
            for account in self.accounts:
                for i in range(per_account):
                    key = f"soak:{account}:{i}"
                    due = now + timedelta(seconds=start_in + over * i / max(1, per_account))
                    text = f"定时提醒 {key}"
                    await outbox.plan(
                        ScheduledMessage(
                            account_id=account,
                            kind="alert",
                            sequence="soak",
                            step=str(i),
                            template="-",
                            context={"text": text},
                            due_at=due,
                            not_after=due + timedelta(hours=1),
                            status="pending",
                            attempts=0,
                            idempotency_key=key,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    planned.append((account, text))
        return planned

    async def rows(self, kind: str) -> list[ScheduledMessage]:
        async with self.db.transaction() as session:
            query = select(ScheduledMessage).where(ScheduledMessage.kind == kind)
            return list((await session.exec(query)).all())

    async def customers(self) -> Counter[tuple[str, str]]:
        """(account, contact id) -> how many customer rows (exactly once: 1)."""
        async with self.db.transaction() as session:
            rows = (await session.exec(select(Customer))).all()
        return Counter((c.account_id, c.wechat_id) for c in rows)
