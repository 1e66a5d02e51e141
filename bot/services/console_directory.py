"""Where each account's console is, who its supervisors are, and "this customer" per account.

Built before every service that reports to the console (suggestions, alerts, digests) and before
the command console itself, so none of them needs another to exist first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from bot.commands.context import ConsoleState
from bot.config import Config
from bot.errors import ConfigError
from bot.transport.base import TextMessage, Transport


class ConsoleDirectory:
    def __init__(self, config: Config, transports: Mapping[str, Transport]) -> None:
        self.config = config
        self.transports = transports
        self.states: defaultdict[str, ConsoleState] = defaultdict(ConsoleState)
        self.console_ids: dict[str, str] = {}
        self.contacts: dict[tuple[str, str], str] = {}  # (account, configured contact) -> conversation id

    async def resolve_consoles(self, account_id: str) -> None:
        """Find an account's console and its supervisors' chats once it is logged in."""
        for account in self.config.accounts:
            if account.id != account_id:
                continue
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
        for supervisor in self.config.supervisors:
            if supervisor.account != account_id:
                continue
            key = (supervisor.account, supervisor.contact)
            if supervisor.contact.startswith("room:"):
                topic = supervisor.contact.removeprefix("room:")
                room_id = await self.transports[supervisor.account].find_room(topic)
                if room_id is None:
                    raise ConfigError(
                        f"supervisors.{supervisor.name}.contact: account {supervisor.account} is in no "
                        f"group chat named {topic!r}"
                    )
                self.contacts[key] = room_id
            else:
                self.contacts[key] = supervisor.contact

    def contact_of(self, account_id: str, contact: str) -> str:
        return self.contacts.get((account_id, contact), contact)

    def supervisor_of(self, account_id: str, message: TextMessage) -> str | None:
        """The name of the supervisor who wrote this, if a supervisor of this account did."""
        if message.from_self:
            return None
        for supervisor in self.config.supervisors:
            if (
                account_id in supervisor.accounts
                and supervisor.account == account_id
                and (
                    message.talker.contact_id == self.contact_of(account_id, supervisor.contact)
                    or message.conversation_id == self.contact_of(account_id, supervisor.contact)
                )
            ):
                return supervisor.name
        return None

    def console_of(self, account_id: str) -> str:
        return self.console_ids.get(account_id, self.config.account(account_id).console)

    def is_rep(self, account_id: str, message: TextMessage) -> bool:
        return message.from_self or message.talker.contact_id in self.config.account(account_id).admins

    def state(self, account_id: str) -> ConsoleState:
        return self.states[account_id]
