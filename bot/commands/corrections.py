"""/wrong and /label: the rep corrects how the bot read a customer's message (training data for
the business's own model, and counted in the digest)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext
from bot.commands.registry import command
from bot.services.feedback import FeedbackService
from storage.models import Customer


@dataclass(frozen=True)
class WrongArgs:
    label: str = ""


@dataclass(frozen=True)
class LabelArgs:
    label: str


@command(
    "wrong",
    aliases=("纠正",),
    usage="/wrong [正确的顾虑|无]",
    summary="上一次识别错了（顾虑、退订或别催了）；可写正确的顾虑，“无”表示没有顾虑",
)
async def wrong(ctx: CommandContext, args: WrongArgs, customer: Customer, feedback: FeedbackService) -> str:
    return await feedback.wrong(customer, args.label, ctx.actor)


@command(
    "label",
    aliases=("标注",),
    usage="/label <顾虑|信号>",
    summary="给客户最近一条消息补标漏掉的顾虑或信号（如 价格、购买信号、转介绍）",
)
async def label(ctx: CommandContext, args: LabelArgs, customer: Customer, feedback: FeedbackService) -> str:
    return await feedback.label(customer, args.label, ctx.actor)
