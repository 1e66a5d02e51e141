"""What a command handler receives besides its parsed arguments."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.commands.registry import Registry
from bot.config import Config
from bot.services.profile import ProfileService
from storage.models import Customer

if TYPE_CHECKING:
    from bot.services.digest import DigestService
    from bot.services.feedback import FeedbackService
    from bot.services.objections import ObjectionService
    from bot.services.sequences import SequenceService


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
    profile: ProfileService
    registry: Registry
    state: ConsoleState
    now: datetime  # from the injected clock
    customer: Customer | None = None
    objections: ObjectionService | None = None
    sequences: SequenceService | None = None
    digests: DigestService | None = None
    feedback: FeedbackService | None = None
    # "rep", or the name of the supervisor who typed the command
    role: str = "rep"
    # re-run a command line for a chosen customer (used by /pick)
    rerun: Callable[[str, int], Awaitable[str]] = field(default=lambda _line, _cid: _no_rerun())

    @property
    def customer_id(self) -> int:
        assert self.customer is not None and self.customer.id is not None, "command declared needs_customer"
        return self.customer.id


async def _no_rerun() -> str:
    raise RuntimeError("rerun is not available here")
