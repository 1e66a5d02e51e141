"""/wrong and /label: the rep corrects how the bot read a customer's message (training data for
the business's own model, and counted in the digest)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext
from bot.commands.registry import CommandError, command
from bot.services.feedback import FeedbackService


@dataclass(frozen=True)
class WrongArgs:
    label: str = ""


@dataclass(frozen=True)
class LabelArgs:
    label: str


def _feedback(ctx: CommandContext) -> FeedbackService:
    if ctx.feedback is None:
        raise CommandError("识别纠正未开启")
    return ctx.feedback


@command(
    "wrong",
    rank=52,
    aliases=("纠正",),
    usage="/wrong [正确的顾虑|none]",
    summary="上一次识别错了（顾虑、退订或别催了）；可写正确的顾虑，none 表示没有顾虑",
    args=WrongArgs,
    needs_customer=True,
)
async def wrong(ctx: CommandContext, args: WrongArgs) -> str:
    assert ctx.customer is not None
    return await _feedback(ctx).wrong(ctx.customer, args.label, ctx.actor)


@command(
    "label",
    rank=53,
    aliases=("标注",),
    usage="/label <顾虑|信号>",
    summary="给客户最近一条消息补标漏掉的顾虑或信号（如 价格、购买信号、转介绍）",
    args=LabelArgs,
    needs_customer=True,
)
async def label(ctx: CommandContext, args: LabelArgs) -> str:
    assert ctx.customer is not None
    return await _feedback(ctx).label(ctx.customer, args.label, ctx.actor)
