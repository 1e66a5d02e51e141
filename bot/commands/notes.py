"""/note: free-form notes on a customer."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext, id_of
from bot.commands.registry import Rest, command
from bot.domain.limits import MAX_QUOTE_CHARS, clip
from bot.services.profile import ProfileService
from storage.models import Customer


@dataclass(frozen=True)
class NoteArgs:
    text: Rest


@command(
    "note",
    aliases=("备注",),
    usage="/note <内容>",
    summary="给客户记一条备注",
)
async def note(ctx: CommandContext, args: NoteArgs, customer: Customer, profile: ProfileService) -> str:
    await profile.add_note(id_of(customer), args.text, ctx.actor)
    return f"已记录备注：{clip(args.text, MAX_QUOTE_CHARS)}"
