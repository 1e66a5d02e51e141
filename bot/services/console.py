"""Rep commands: where they are typed, who may run them, which customer they act on, the reply.

* In the rep's console (filehelper, self chat or a named room) a command acts on ``@name`` or on
  the current customer; replies go to the console.
* In a customer's chat it acts on that customer; the command is recalled (if configured) and the
  reply goes to the console, never to the customer.
* Only the account itself and configured admins run commands; a customer typing ``/stage koc`` is
  an ordinary customer message.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.clock import Clock
from bot.commands.context import CommandContext, ConsoleState, PendingPick
from bot.commands.registry import Command, Registry
from bot.config import Config
from bot.errors import CommandError, ConfigError, UsageError
from bot.services.customers import ensure_customer
from bot.services.messenger import Messenger
from bot.services.profile import ProfileService

if TYPE_CHECKING:
    from bot.services.objections import ObjectionService
    from bot.services.sequences import SequenceService
from bot.transport.base import Contact, TextMessage, Transport
from storage.db import Database
from storage.models import Customer
from storage.repositories import Events

log = logging.getLogger(__name__)

COMMAND_PREFIXES = ("/", "／")
COMMAND_REPLY = "command_reply"


def is_command(text: str) -> bool:
    return text.strip().startswith(COMMAND_PREFIXES)


@dataclass(frozen=True)
class Invocation:
    """One command as typed: where, by whom, and the line after the prefix."""

    account_id: str
    actor: str
    line: str
    in_customer_chat: Contact | None  # the customer whose chat it was typed in


class ConsoleService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        messenger: Messenger,
        profile: ProfileService,
        transports: Mapping[str, Transport],
        registry: Registry,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.messenger = messenger
        self.profile = profile
        self.transports = transports
        self.registry = registry
        self.states: defaultdict[str, ConsoleState] = defaultdict(ConsoleState)
        self.console_ids: dict[str, str] = {}
        self.objections: ObjectionService | None = None  # set by the app once it exists
        self.sequences: SequenceService | None = None

    async def resolve_consoles(self) -> None:
        """Find each account's console conversation once it is logged in."""
        for account in self.config.accounts:
            transport = self.transports[account.id]
            if account.console == "self":
                self.console_ids[account.id] = transport.self_id
            elif account.console.startswith("room:"):
                topic = account.console.removeprefix("room:")
                room_id = await transport.find_room(topic)
                if room_id is None:
                    raise ConfigError(
                        f"accounts.{account.id}.console: the account is in no group chat named {topic!r}"
                    )
                self.console_ids[account.id] = room_id
            else:
                self.console_ids[account.id] = account.console

    def console_of(self, account_id: str) -> str:
        return self.console_ids.get(account_id, self.config.account(account_id).console)

    def is_rep(self, account_id: str, message: TextMessage) -> bool:
        return message.from_self or message.talker.contact_id in self.config.account(account_id).admins

    def note_customer(self, account_id: str, customer_id: int) -> None:
        """The bot reported on this customer (welcome, suggestion, alert): it becomes "this customer"."""
        self.states[account_id].current = customer_id

    async def on_rep_text(self, account_id: str, message: TextMessage) -> bool:
        """Handle a rep's message if it is a command typed where commands belong. Returns True if handled."""
        console = self.console_of(account_id)
        admin_chat = not message.from_self and message.conversation_id == message.talker.contact_id
        if message.conversation_id == console or admin_chat:
            where: Contact | None = None
            reply_to = message.conversation_id
        elif message.from_self and not message.in_room:
            where = Contact(message.conversation_id, "", "")
            reply_to = console
        else:
            return False
        if not is_command(message.text):
            return False
        if where is not None and self.config.commands.recall_in_customer_chat:
            try:
                await self.transports[account_id].recall(message.message_id)
            except Exception as exc:  # a failed recall must not lose the command
                log.warning("%s: recalling command in %s failed: %s", account_id, where.contact_id, exc)
        line = message.text.strip()[1:]
        invocation = Invocation(account_id, message.talker.contact_id, line, where)
        reply = await self.execute(invocation)
        await self.messenger.send(
            account_id=account_id,
            conversation_id=reply_to,
            text=reply,
            kind=COMMAND_REPLY,
            key=f"{account_id}:{COMMAND_REPLY}:{message.message_id}",
        )
        return True

    async def execute(self, invocation: Invocation, forced_customer: int | None = None) -> str:
        """Run one command line and return the reply text. Never raises for the rep's mistakes."""
        name, _, rest = invocation.line.strip().partition(" ")
        cmd = self.registry.find(name)
        ok = False
        try:
            if cmd is None:
                suggestion = self.registry.suggest(name)
                hint = f"你是不是想用 /{suggestion}？" if suggestion else ""
                raise CommandError(f"未知命令 /{name}。{hint}发送 /help 查看全部命令")
            reply = await self._run(cmd, invocation, rest.strip(), forced_customer)
            ok = True
            return reply
        except UsageError as exc:
            return f"用法：{exc}"
        except CommandError as exc:
            return str(exc)
        finally:
            async with self.db.transaction() as session:
                await Events(session).record(
                    invocation.account_id,
                    "command",
                    self.clock.now(),
                    text=invocation.line,
                    data={"actor": invocation.actor, "ok": ok},
                )

    async def _run(self, cmd: Command, invocation: Invocation, rest: str, forced_customer: int | None) -> str:
        state = self.states[invocation.account_id]
        customer: Customer | None = None
        if cmd.needs_customer:
            customer, rest = await self._target(invocation, rest, forced_customer, cmd)
            if customer is None:  # ambiguous: the pick list is the reply
                return self._pick_list(state)
        args = cmd.parse(rest)

        async def rerun(line: str, customer_id: int) -> str:
            return await self.execute(
                Invocation(invocation.account_id, invocation.actor, line, None), customer_id
            )

        ctx = CommandContext(
            account_id=invocation.account_id,
            actor=invocation.actor,
            config=self.config,
            profile=self.profile,
            registry=self.registry,
            state=state,
            now=self.clock.now(),
            customer=customer,
            objections=self.objections,
            sequences=self.sequences,
            rerun=rerun,
        )
        reply = await cmd.handler(ctx, args)
        if customer is None:
            return reply
        assert customer.id is not None
        state.current = customer.id
        fresh = await self.profile.card(customer.id)
        return f"{self._header(fresh.customer)}\n{reply}"

    async def _target(
        self, invocation: Invocation, rest: str, forced: int | None, cmd: Command
    ) -> tuple[Customer | None, str]:
        """The customer a command acts on, and the argument text without any @name."""
        account_id = invocation.account_id
        if forced is not None:
            matches = await self.profile.match(account_id, f"#{forced}")
            return matches[0], self._without_mention(rest)[1]
        if invocation.in_customer_chat is not None:
            async with self.db.transaction() as session:
                customer, _ = await ensure_customer(
                    session,
                    account_id,
                    invocation.in_customer_chat,
                    self.profile.pipeline.first,
                    self.clock.now(),
                    actor=invocation.actor,
                )
            return customer, rest
        mention, rest = self._without_mention(rest)
        if mention is None:
            current = self.states[account_id].current
            if current is None:
                raise CommandError(f"请指定客户，例如 /{cmd.name} @张三 …（名字、备注名或卡片上的编号 #12）")
            return (await self.profile.match(account_id, f"#{current}"))[0], rest
        matches = await self.profile.match(account_id, mention)
        if not matches:
            raise CommandError(f"没有找到客户「{mention}」。可以用 /find 搜索")
        if len(matches) > 1:
            line = f"{cmd.name} {rest}".strip()
            self.states[account_id].pending = PendingPick(line, matches[:9])
            return None, rest
        return matches[0], rest

    @staticmethod
    def _without_mention(rest: str) -> tuple[str | None, str]:
        """Take an ``@name`` (``@"two words"`` for names with spaces) from the first or last word."""
        text = rest.strip()
        if text.startswith(('@"', "@'")):
            end = text.find(text[1], 2)
            if end > 2:
                return text[2:end], text[end + 1 :].strip()
        words = text.split()
        if words and words[0].startswith("@") and len(words[0]) > 1:
            return words[0][1:], text[len(words[0]) :].strip()
        if len(words) > 1 and words[-1].startswith("@") and len(words[-1]) > 1:
            return words[-1][1:].strip("\"'"), text[: -len(words[-1])].strip()
        return None, text

    def _pick_list(self, state: ConsoleState) -> str:
        assert state.pending is not None
        label = self.profile.pipeline.label
        lines = ["有多位客户符合，请回复 /pick 编号："]
        for number, customer in enumerate(state.pending.candidates, start=1):
            remark = f"，备注 {customer.remark}" if customer.remark else ""
            lines.append(
                f"{number}. {customer.display_name} #{customer.id}（{label(customer.stage)}{remark}）"
            )
        return "\n".join(lines)

    def _header(self, customer: Customer) -> str:
        name = customer.remark or customer.display_name or customer.wechat_id
        return f"【{name} #{customer.id} · {self.profile.pipeline.label(customer.stage)}】"
