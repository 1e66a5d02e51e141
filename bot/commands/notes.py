"""/note: free-form notes on a customer."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext
from bot.commands.registry import Rest, command


@dataclass(frozen=True)
class NoteArgs:
    text: Rest


@command(
    "note",
    rank=30,
    aliases=("备注",),
    usage="/note <内容>",
    summary="给客户记一条备注",
    args=NoteArgs,
    needs_customer=True,
)
async def note(ctx: CommandContext, args: NoteArgs) -> str:
    await ctx.profile.add_note(ctx.customer_id, args.text, ctx.actor)
    return f"已记录备注：{args.text}"
