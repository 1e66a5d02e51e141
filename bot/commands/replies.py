"""/send: send a suggested reply script to the customer, as the rep."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext
from bot.commands.registry import Rest, command
from bot.services.objections import ObjectionService
from storage.models import Customer


@dataclass(frozen=True)
class SendArgs:
    number: int
    extra: Rest = ""


@command(
    "send",
    aliases=("发送",),
    usage="/send <编号> [追加文字]",
    summary="把最近一次建议里的第 N 条话术发给客户（可追加文字）",
)
async def send(ctx: CommandContext, args: SendArgs, customer: Customer, objections: ObjectionService) -> str:
    due = await objections.plan_reply(ctx.account_id, customer, args.number, args.extra, ctx.actor)
    seconds = max(0, round((due - ctx.now).total_seconds()))
    return f"已安排发送话术 {args.number}（约 {seconds} 秒后）"
