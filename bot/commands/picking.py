"""/pick: choose from the numbered list an ambiguous @name produced."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext
from bot.commands.registry import CommandError, command


@dataclass(frozen=True)
class PickArgs:
    number: int


@command(
    "pick",
    aliases=("选",),
    usage="/pick <编号>",
    summary="名字有重复时，从列表里选择客户",
)
async def pick(ctx: CommandContext, args: PickArgs) -> str:
    pending = ctx.state.pending
    if pending is None:
        raise CommandError("没有待选择的客户列表")
    if not 1 <= args.number <= len(pending.candidates):
        raise CommandError(f"请输入 1 到 {len(pending.candidates)} 之间的编号")
    chosen = pending.candidates[args.number - 1]
    ctx.state.pending = None
    assert chosen.id is not None
    return await ctx.rerun(pending.command_line, chosen.id)
