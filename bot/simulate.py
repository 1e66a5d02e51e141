"""``salesbot simulate``: play a scripted conversation on the local puppet under a virtual clock.

Every message the bot sends is printed as one JSON object per line (see README "Simulator").
The bot under simulation is the real one: real Wechaty, real storage (a throw-away SQLite file),
real templates; only the clock and the puppet are in-process.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.app import SalesBot
from bot.clock import AdvanceableClock, VirtualClock
from bot.config import Config
from bot.domain.kinds import Kind
from bot.errors import ScenarioError
from bot.transport.factory import local_puppet_for
from bot.transport.local_puppet import LocalPuppet
from bot.transport.wechaty_adapter import WechatyTransport
from storage.repositories import Outbox, OutgoingLog

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
END_OF_RUN = "1m"
MAX_ADVANCE = timedelta(days=400)
ACTIONS = ("friend_request", "replay", "says", "rep", "delete", "advance")


def parse_duration(text: str) -> timedelta:
    """'3d', '2h30m', '45s' -> timedelta. Raises ValueError on anything else."""
    compact = text.replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(f"{n}{u}" for n, u in parts) != compact:
        raise ValueError(f"bad duration {text!r} (expected e.g. 30s, 15m, 2h, 3d or 1d2h)")
    total = timedelta()
    try:
        for number, unit in parts:
            total += timedelta(**{_UNITS[unit]: float(number)})
    except OverflowError:
        total = MAX_ADVANCE + timedelta(days=1)
    if total > MAX_ADVANCE:  # a virtual clock past year 9999 overflows; a year covers every sequence
        raise ValueError(f"duration {text!r} is too long (at most {MAX_ADVANCE.days}d)")
    return total


class CustomerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)


class Step(BaseModel):
    """One scenario step: exactly one action, plus its modifiers."""

    model_config = ConfigDict(extra="forbid")
    friend_request: str | None = None
    hello: str | None = None
    replay: str | None = None
    customer: str | None = None
    says: str | None = None
    rep: str | None = None
    in_chat: str | None = None
    delete: str | None = None
    advance: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if (self.says is None) != (self.customer is None):
            raise ValueError("'customer' and 'says' go together")
        present = [name for name in ACTIONS if getattr(self, name) is not None]
        if len(present) != 1:
            raise ValueError(f"a step needs exactly one of {', '.join(ACTIONS)} (found {present or 'none'})")
        if self.hello is not None and self.friend_request is None:
            raise ValueError("'hello' goes with 'friend_request'")
        if self.in_chat is not None and self.rep is None:
            raise ValueError("'in_chat' goes with 'rep'")
        if self.advance is not None:
            parse_duration(self.advance)
        return self

    def handles(self) -> list[str]:
        return [h for h in (self.friend_request, self.replay, self.customer, self.in_chat, self.delete) if h]


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: datetime
    account: str | None = None
    seed: int = 0
    customers: list[CustomerSpec] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)


def _scenario_error(source: str, exc: ValidationError) -> ScenarioError:
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = "scenario"
        if len(loc) >= 2 and loc[0] in ("steps", "customers") and isinstance(loc[1], int):
            where = f"{'step' if loc[0] == 'steps' else 'customer'} {loc[1] + 1}"
            loc = loc[2:]
        key = ".".join(str(part) for part in loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  - {where}{': ' + key if key else ''}: {message}")
    return ScenarioError(f"{source}: invalid scenario:\n" + "\n".join(lines))


def load_scenario(path: Path, config: Config) -> Scenario:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: scenario file not found") from None
    except IsADirectoryError:
        raise ScenarioError(f"{path}: is a folder, not a scenario file") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not UTF-8 text (save the file as UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _scenario_error(str(path), exc) from None
    if scenario.start.tzinfo is None:
        scenario = scenario.model_copy(update={"start": scenario.start.replace(tzinfo=config.tz)})
    known = {c.id for c in scenario.customers}
    if len(known) != len(scenario.customers):
        raise ScenarioError(f"{path}: customer ids must be unique")
    requested: set[str] = set()
    for number, step in enumerate(scenario.steps, start=1):
        for handle in step.handles():
            if handle not in known:
                raise ScenarioError(f"{path}: step {number}: unknown customer handle {handle!r}")
        if step.replay is not None and step.replay not in requested:
            raise ScenarioError(f"{path}: step {number}: replay of {step.replay!r} before its friend_request")
        if step.friend_request is not None:
            requested.add(step.friend_request)
    if scenario.account is not None and scenario.account not in {a.id for a in config.accounts}:
        raise ScenarioError(f"{path}: account {scenario.account!r} is not in the config")
    return scenario


@dataclass
class _Printed:
    count: int = 0


class Simulation:
    """Runs a scenario step by step; also the harness the tests use."""

    def __init__(
        self,
        config: Config,
        start: datetime,
        *,
        seed: int = 0,
        database_url: str | None = None,
        account: str | None = None,
    ) -> None:
        self.config = config
        self.clock = VirtualClock(start)
        self.account_id = account or config.accounts[0].id
        self._tmp = tempfile.TemporaryDirectory(prefix="salesbot-sim-") if database_url is None else None
        url = database_url or f"sqlite+aiosqlite:///{Path(self._tmp.name if self._tmp else '.') / 'sim.db'}"
        self.puppets = {a.id: local_puppet_for(a, config, self.clock) for a in config.accounts}
        transports = {a.id: WechatyTransport(a.id, self.puppets[a.id]) for a in config.accounts}
        for transport in transports.values():  # a contact's name is re-read on the virtual clock
            transport.monotonic = lambda: self.clock.now().timestamp()
        self.bot = SalesBot(
            config, self.clock, transports=transports, database_url=url, rng=random.Random(seed)
        )
        self.handles: dict[str, str] = {}  # contact id -> scenario handle
        self._friendships: dict[str, str] = {}  # handle -> last friendship id
        self._printed = {account_id: _Printed() for account_id in self.puppets}
        self.output: list[dict[str, Any]] = []
        self.listeners: list[Callable[[dict[str, str]], None]] = []

    @property
    def puppet(self) -> LocalPuppet:
        return self.puppets[self.account_id]

    def contact_id(self, handle: str) -> str:
        return f"wx_{handle}"

    async def __aenter__(self) -> Simulation:
        await self.bot.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bot.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- actions --------------------------------------------------------------------------------

    async def friend_request(self, handle: str, name: str, hello: str = "") -> None:
        contact_id = self.contact_id(handle)
        self.handles[contact_id] = handle
        self._friendships[handle] = self.puppet.request_friendship(contact_id, name, hello)
        await self._settle()

    async def friendship_confirmed(self, handle: str, name: str) -> None:
        contact_id = self.contact_id(handle)
        self.handles[contact_id] = handle
        self._friendships[handle] = self.puppet.confirm_friendship(contact_id, name)
        await self._settle()

    async def replay_friend_request(self, handle: str) -> None:
        self.puppet.replay_friendship(self._friendships[handle])
        await self._settle()

    async def customer_says(self, handle: str, text: str, name: str | None = None) -> None:
        contact_id = self.contact_id(handle)
        self.handles[contact_id] = handle
        if name is not None or not self.puppet.has_contact(contact_id):
            self.puppet.add_contact(contact_id, name or handle, friend=self.puppet.is_friend(contact_id))
        self.puppet.customer_says(contact_id, text)
        await self._settle()

    async def rep_types(self, text: str, in_chat: str | None = None) -> None:
        conversation = self.contact_id(in_chat) if in_chat else self.bot.directory.console_of(self.account_id)
        self.puppet.rep_types(conversation, text)
        await self._settle()

    async def delete(self, handle: str) -> None:
        self.puppet.customer_deletes(self.contact_id(handle))
        await self._settle()

    async def advance(self, duration: timedelta) -> None:
        """Move the clock; everything that falls due fires in time order."""
        await self._settle()
        await fast_forward(self.bot, self.clock, duration, after_each=self._collect)

    async def _settle(self) -> None:
        await self.bot.settle()
        errors = [e for t in self.bot.transports.values() for e in getattr(t, "errors", [])]
        if errors:
            raise errors[0]
        await self._collect()

    async def _collect(self) -> None:
        for account_id, puppet in self.puppets.items():
            printed = self._printed[account_id]
            new = puppet.sent[printed.count :]
            printed.count = len(puppet.sent)
            for sent in new:
                signal = None
                async with self.bot.db.transaction() as session:
                    row = await OutgoingLog(session).by_platform_id(account_id, sent.message_id)
                    if row is not None and row.kind == Kind.SIGNAL:  # which signal: from its plan
                        planned = await Outbox(session).by_key(row.idempotency_key)
                        signal = planned.context.get("signal") if planned is not None else None
                to = describe(self.bot, account_id, sent.conversation_id, self.handles)
                line: dict[str, Any] = {
                    "at": sent.at.astimezone(self.config.tz).isoformat(),
                    "account": account_id,
                    "to": to,
                    "kind": row.kind if row is not None else "unknown",
                    "text": sent.text,
                }
                if signal is not None:
                    line["signal"] = str(signal)
                if sent.attachment is not None:
                    line["attachment"] = {"type": sent.attachment["type"], "name": sent.attachment["name"]}
                self.output.append(line)
                for listener in self.listeners:
                    listener(line)


async def fast_forward(
    bot: SalesBot,
    clock: AdvanceableClock,
    duration: timedelta,
    after_each: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Move ``clock`` forward by ``duration``, firing everything that falls due in time order."""
    target = clock.now() + duration
    while True:
        due = await bot.next_due_at()
        if due is None or due > target:
            break
        clock.set(due)
        await bot.run_due()
        if after_each is not None:
            await after_each()
    clock.set(target)


def describe(bot: SalesBot, account_id: str, conversation_id: str, handles: dict[str, str]) -> str:
    """Who a message went to, as the simulator prints it: a handle, console or supervisor:<name>."""
    for supervisor in bot.config.supervisors:
        if supervisor.account == account_id and conversation_id == bot.directory.contact_of(
            account_id, supervisor.contact
        ):
            return f"supervisor:{supervisor.name}"
    if conversation_id == bot.directory.console_of(account_id):
        return "console"
    return handles.get(conversation_id, conversation_id)


async def run_scenario(scenario: Scenario, config: Config, emit: Callable[[dict[str, str]], None]) -> None:
    names = {c.id: c.name for c in scenario.customers}
    sim = Simulation(config, scenario.start, seed=scenario.seed, account=scenario.account)
    sim.listeners.append(emit)
    async with sim:
        for step in scenario.steps:
            if step.friend_request is not None:
                await sim.friend_request(step.friend_request, names[step.friend_request], step.hello or "")
            elif step.replay is not None:
                await sim.replay_friend_request(step.replay)
            elif step.says is not None and step.customer is not None:
                await sim.customer_says(step.customer, step.says, names[step.customer])
            elif step.rep is not None:
                await sim.rep_types(step.rep, step.in_chat)
            elif step.delete is not None:
                await sim.delete(step.delete)
            elif step.advance is not None:
                await sim.advance(parse_duration(step.advance))
        await sim.advance(parse_duration(END_OF_RUN))


def json_line(line: dict[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False)
