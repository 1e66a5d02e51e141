"""/send: send a suggested reply script to the customer it was suggested for, as the rep."""

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


async def answered(ctx: CommandContext, args: SendArgs, objections: ObjectionService) -> int:
    """/send N names nobody: it goes to the customer whose suggestion showed number N, whoever the
    console talked about since."""
    return await objections.customer_of(ctx.account_id, args.number)


@command(
    "send",
    aliases=("发送",),
    usage="/send <编号> [追加文字]",
    summary="把建议里编号为 N 的话术发给那条建议的客户（可追加文字）",
    target=answered,
)
async def send(ctx: CommandContext, args: SendArgs, customer: Customer, objections: ObjectionService) -> str:
    due = await objections.plan_reply(ctx.account_id, customer, args.number, args.extra, ctx.actor)
    seconds = max(0, round((due - ctx.now).total_seconds()))
    return f"已安排发送话术 {args.number}（约 {seconds} 秒后）"
