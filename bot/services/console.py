"""Rep commands: where they are typed, who may run them, which customer they act on, the reply.

* In the rep's console (filehelper, self chat or a named room) a command acts on ``@name`` or on
  the current customer; replies go to the console.
* In a customer's chat it acts on that customer; the command is recalled (if configured) and the
  reply goes to the console, never to the customer.
* Only the account itself and configured admins run commands; a customer typing ``/stage koc`` is
  an ordinary customer message.
* A command's database work is one unit of work: a failed command changes nothing. The rep's
  mistakes get the usage line or the :class:`CommandError` sentence; anything unexpected gets one
  plain sentence with a reference that the logged traceback carries too.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.clock import Clock
from bot.commands.context import CommandContext, ConsoleState, PendingPick
from bot.commands.registry import Command, Permission, Registry
from bot.config import Config
from bot.domain.limits import MAX_AUDIT_CHARS, MAX_ECHO_CHARS, MAX_NAME_CHARS, MAX_PARTS, clip, split_message
from bot.errors import CommandError, UsageError
from bot.services.alerts import heading
from bot.services.broadcasts import BroadcastService
from bot.services.coach import Coach
from bot.services.console_directory import ConsoleDirectory
from bot.services.customers import ensure_customer
from bot.services.digest import DigestService
from bot.services.feedback import FeedbackService
from bot.services.koc import KocService
from bot.services.messenger import Messenger
from bot.services.objections import ObjectionService
from bot.services.profile import ProfileService
from bot.services.script_library import ScriptLibraryService
from bot.services.sequences import SequenceService
from bot.transport.base import Contact, TextMessage, Transport
from storage.db import Database
from storage.models import Customer
from storage.repositories import Events

log = logging.getLogger(__name__)

COMMAND_PREFIXES = ("/", "／")
COMMAND_REPLY = "command_reply"
UNEXPECTED = "这条命令没有完成，系统出了意外问题，已记录（错误编号 {ref}）。请稍后再试或联系管理员。"


def is_command(text: str) -> bool:
    return text.strip().startswith(COMMAND_PREFIXES)


@dataclass(frozen=True)
class Invocation:
    """One command as typed: where, by whom, and the line after the prefix."""

    account_id: str
    actor: str
    line: str
    in_customer_chat: Contact | None  # the customer whose chat it was typed in
    role: str = "rep"  # or the supervisor's name


@dataclass
class _Audit:
    """One command run, for the audit event: whether it succeeded and the customer it acted on
    (the coaching card leaves alone a customer the rep is busy with)."""

    invocation: Invocation
    ok: bool = False
    customer_id: int | None = None


class ConsoleService:
    """Runs rep commands. Built last: every service a command may ask for is required here."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        messenger: Messenger,
        transports: Mapping[str, Transport],
        directory: ConsoleDirectory,
        registry: Registry,
        *,
        profile: ProfileService,
        objections: ObjectionService,
        sequences: SequenceService,
        digests: DigestService,
        feedback: FeedbackService,
        koc: KocService,
        coach: Coach,
        scripts: ScriptLibraryService,
        broadcasts: BroadcastService,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.messenger = messenger
        self.transports = transports
        self.directory = directory
        self.registry = registry
        self.profile = profile
        # what handlers ask for by parameter type
        self.services: dict[type[Any], Any] = {
            Registry: registry,
            ProfileService: profile,
            ObjectionService: objections,
            SequenceService: sequences,
            DigestService: digests,
            FeedbackService: feedback,
            KocService: koc,
            Coach: coach,
            ScriptLibraryService: scripts,
            BroadcastService: broadcasts,
        }
        missing = sorted(kind.__name__ for kind in registry.services() - self.services.keys())
        if missing:
            raise TypeError(f"commands ask for services the console does not have: {', '.join(missing)}")

    async def on_rep_text(self, account_id: str, message: TextMessage, role: str = "rep") -> bool:
        """Handle a rep's (or a supervisor's) message if it is a command typed where commands belong.
        Returns True if handled."""
        console = self.directory.console_of(account_id)
        admin_chat = not message.from_self and message.conversation_id == message.talker.contact_id
        where: Contact | None = None
        if role != "rep":
            if not is_command(message.text):
                return False
            reply_to = message.conversation_id
        elif message.conversation_id == console or admin_chat:
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
        invocation = Invocation(account_id, message.talker.contact_id, line, where, role)
        reply, ok = await self.execute_checked(invocation)
        cmd = self.registry.find(line.strip().partition(" ")[0])
        kind = cmd.reply_kind if cmd is not None and ok else COMMAND_REPLY
        parts = split_message(reply, self.config.digest.max_chars, MAX_PARTS)
        for number, part in enumerate(parts, start=1):
            suffix = f":{number}" if len(parts) > 1 else ""
            await self.messenger.send(
                account_id=account_id,
                conversation_id=reply_to,
                text=part,
                kind=kind,
                key=f"{account_id}:{COMMAND_REPLY}:{message.message_id}{suffix}",
            )
        return True

    async def execute_checked(
        self, invocation: Invocation, forced_customer: int | None = None
    ) -> tuple[str, bool]:
        """Run one command line: the reply text, and whether the command succeeded. Never raises:
        the command's database work is one unit of work, so a failed command changes nothing, and
        anything unexpected is logged with a reference the reply quotes."""
        audits: list[_Audit] = []
        ok = False
        try:
            async with self.db.unit_of_work():
                reply = await self._dispatch(invocation, forced_customer, audits)
            ok = True
        except UsageError as exc:
            reply = f"用法：{exc}"
        except CommandError as exc:
            reply = str(exc)
        except Exception:
            ref = secrets.token_hex(3)
            log.exception(
                "%s: command %r by %s failed unexpectedly (ref %s)",
                invocation.account_id,
                invocation.line,
                invocation.actor,
                ref,
            )
            reply = UNEXPECTED.format(ref=ref)
        await self._audit(audits)
        return reply, ok

    async def _audit(self, audits: list[_Audit]) -> None:
        """Record the commands run (a /pick and the command it chose). A failure here is logged and
        never changes the reply: the command itself is done."""
        try:
            async with self.db.transaction() as session:
                for audit in audits:
                    await Events(session).record(
                        audit.invocation.account_id,
                        "command",
                        self.clock.now(),
                        customer_id=audit.customer_id,
                        text=clip(audit.invocation.line, MAX_AUDIT_CHARS),
                        data={"actor": audit.invocation.actor, "ok": audit.ok},
                    )
        except Exception:
            log.exception("recording commands %r failed", [a.invocation.line for a in audits])

    async def _dispatch(
        self, invocation: Invocation, forced_customer: int | None, audits: list[_Audit]
    ) -> str:
        """Find the command, check who may run it, run it; raises for every failure."""
        audit = _Audit(invocation)
        try:
            name, _, rest = invocation.line.strip().partition(" ")
            cmd = self.registry.find(name)
            if cmd is None:
                suggestion = self.registry.suggest(name)
                hint = f"你是不是想用 /{suggestion}？" if suggestion else ""
                raise CommandError(f"未知命令 /{clip(name, MAX_ECHO_CHARS)}。{hint}发送 /help 查看全部命令")
            if invocation.role != "rep" and cmd.permission is not Permission.SUPERVISOR:
                allowed = " ".join(
                    f"/{c.name}" for c in self.registry if c.permission is Permission.SUPERVISOR
                )
                raise CommandError(f"主管可以使用的命令：{allowed}")
            reply = await self._run(cmd, invocation, rest.strip(), forced_customer, audits, audit)
            audit.ok = True
            return reply
        finally:
            audits.append(audit)

    async def _run(
        self,
        cmd: Command,
        invocation: Invocation,
        rest: str,
        forced_customer: int | None,
        audits: list[_Audit],
        audit: _Audit,
    ) -> str:
        state = self.directory.state(invocation.account_id)

        async def rerun(line: str, customer_id: int) -> str:
            chosen = Invocation(invocation.account_id, invocation.actor, line, None)
            return await self._dispatch(chosen, customer_id, audits)

        ctx = CommandContext(
            account_id=invocation.account_id,
            actor=invocation.actor,
            config=self.config,
            state=state,
            now=self.clock.now(),
            role=invocation.role,
            rerun=rerun,
        )
        customer: Customer | None = None
        if cmd.needs_customer:
            customer, rest = await self._target(invocation, rest, forced_customer, cmd, ctx)
            if customer is None:  # ambiguous: the pick list is the reply
                return self._pick_list(state)
            # only the rep makes a customer "this customer", by acting on them (even if the command
            # then fails: the rep retyping it means the same customer); never what the bot reports
            state.current = customer.id
            audit.customer_id = customer.id
        args = cmd.parse(rest)
        reply = await cmd.call(ctx, args, customer, self.services)
        if customer is None:
            return reply
        assert customer.id is not None
        fresh = await self.profile.card(customer.id)
        return f"{self._header(fresh.customer)}\n{reply}"

    async def _target(
        self, invocation: Invocation, rest: str, forced: int | None, cmd: Command, ctx: CommandContext
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
        if mention is None and cmd.target is not None:  # the arguments say whom (/send N)
            found = await cmd.find_target(ctx, cmd.parse(rest), self.services)
            return (await self.profile.match(account_id, f"#{found}"))[0], rest
        if mention is None:
            current = self.directory.state(account_id).current
            if current is None:
                raise CommandError(f"请指定客户，例如 /{cmd.name} @张三 …（名字、备注名或卡片上的编号 #12）")
            return (await self.profile.match(account_id, f"#{current}"))[0], rest
        matches = await self.profile.match(account_id, mention)
        if not matches:
            raise CommandError(f"没有找到客户「{clip(mention, MAX_ECHO_CHARS)}」。可以用 /find 搜索")
        if len(matches) > 1:
            line = f"{cmd.name} {rest}".strip()
            self.directory.state(account_id).pending = PendingPick(line, matches[:9])
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
            remark = f"，备注 {clip(customer.remark, MAX_NAME_CHARS)}" if customer.remark else ""
            name = clip(customer.display_name, MAX_NAME_CHARS)
            lines.append(f"{number}. {name} #{customer.id}（{label(customer.stage)}{remark}）")
        return "\n".join(lines)

    def _header(self, customer: Customer) -> str:
        return heading(customer, self.profile.pipeline.label(customer.stage))
