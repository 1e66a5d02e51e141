"""What every command handler may ask for by type: who typed it, where and when."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from bot.config import Config
from storage.models import Customer


@dataclass
class PendingPick:
    """An ambiguous @name: the command waiting for ``/pick N``."""

    command_line: str
    candidates: list[Customer]


@dataclass
class ConsoleState:
    """Per account: who "this customer" is when a command names nobody, and an open pick list."""

    current: int | None = None
    pending: PendingPick | None = None


@dataclass
class CommandContext:
    account_id: str
    actor: str
    config: Config
    state: ConsoleState
    now: datetime  # from the injected clock
    role: str  # "rep", or the name of the supervisor who typed the command
    # run a command line for a chosen customer, as part of this command (used by /pick)
    rerun: Callable[[str, int], Awaitable[str]]


def id_of(customer: Customer) -> int:
    """A stored customer's id (commands only ever get stored customers)."""
    assert customer.id is not None, "a command's customer is always stored"
    return customer.id
