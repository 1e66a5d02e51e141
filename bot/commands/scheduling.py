"""/countdown, /order, /schedule, /cancel, /pause, /resume: the rep's hands on scheduled messages."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext, id_of
from bot.commands.registry import CommandError, Rest, UsageError, command
from bot.domain.deadlines import DeadlineError, DeadlineRules, split_deadline
from bot.domain.display import message_name, step_name
from bot.domain.hours import WEEKDAYS
from bot.domain.ids import parse_id
from bot.domain.kinds import Kind
from bot.domain.limits import MAX_LABEL_CHARS
from bot.domain.schedule import QuietHours, offset_label
from bot.services.coach import Coach
from bot.services.profile import ProfileService, when
from bot.services.sequences import SequenceService
from storage.models import Customer


@dataclass(frozen=True)
class CountdownArgs:
    text: Rest


@dataclass(frozen=True)
class OrderArgs:
    product: Rest = ""


# the last word of /order that confirms a second order soon after the previous one
CONFIRM_WORDS = ("确认", "confirm")


@dataclass(frozen=True)
class CancelArgs:
    which: str = "all"


COUNTDOWN_USAGE = "/countdown <截止时间> [活动名]"
ORDER_USAGE = "/order [产品] [确认]"


def deadline_rules(ctx: CommandContext) -> DeadlineRules:
    """A deadline typed without a time ends with this rep's working day, outside quiet hours."""
    config = ctx.config
    quiet = QuietHours(config.reach.quiet_start, config.reach.quiet_end, config.tz)
    day_end = config.account(ctx.account_id).profile.working_hours.end
    return DeadlineRules(tz=config.tz, day_end=day_end, quiet=quiet)


@command(
    "countdown",
    aliases=("倒计时",),
    usage=COUNTDOWN_USAGE,
    summary="限时优惠倒计时提醒（截止时间如 周日晚上8点、明晚8点、下周日、30号、12.12、11-30 20:00、+3d；"
    "只写日期则截止到下班时间）",
)
async def countdown(
    ctx: CommandContext, args: CountdownArgs, customer: Customer, sequences: SequenceService
) -> str:
    try:
        deadline, offer = split_deadline(args.text, ctx.now, deadline_rules(ctx))
    except DeadlineError as exc:
        raise CommandError(f"{exc}\n用法：{COUNTDOWN_USAGE}") from None
    if len(offer) > MAX_LABEL_CHARS:  # the customer reads it in every step
        raise CommandError(
            f"活动名太长（{len(offer)} 个字），最多 {MAX_LABEL_CHARS} 个字\n用法：{COUNTDOWN_USAGE}"
        )
    plan = await sequences.plan_countdown(customer, deadline, offer, ctx.actor)
    tz = ctx.config.tz
    local = deadline.astimezone(tz)  # the weekday confirms how 下周日 or 30号 was read
    lines = [f"倒计时已设置：{offer or '优惠'}截止 {local:%m-%d %H:%M}（{WEEKDAYS[local.weekday()]}）"]
    if plan.steps:
        lines.append(
            "提醒时间："
            + "、".join(f"{at.astimezone(tz):%m-%d %H:%M}（{offset_label(name)}）" for name, at in plan.steps)
        )
    else:
        lines.append("离截止太近，没有可安排的提醒")
    if plan.skipped:
        lines.append("跳过（已过去或落在免打扰时段）：" + "、".join(map(offset_label, plan.skipped)))
    if plan.pushes_resumed:
        lines.append("注意：客户之前说过不想被频繁催促，已按你的安排重新开启倒计时")
    if plan.late:
        lines.append(
            budget_warning(
                f"{len(plan.late)} 条提醒（{'、'.join(map(offset_label, plan.late))}）",
                plan.crowd,
                "早点开始跟进（截止前一两天多聊）、少几步提醒（/schedule 看编号，/cancel 编号 去掉），"
                "或给部分客户设晚一点的截止时间",
                late=len(plan.late),
            )
        )
    return "\n".join(lines)


def budget_warning(what: str, crowd: int, fix: str, *, late: int) -> str:
    """The send-budget shortfall of a plan, in the rep's words: what misses its window, why, a fix
    (``late`` messages: one is 这条, not 这几条)."""
    why = f"，同一时段已排了 {crowd} 条其他自动消息" if crowd else ""
    these = "这条" if late == 1 else "这几条"
    return (
        f"注意：这次有 {what}来不及在时限内发出：自动消息要间隔着发、每天有上限、免打扰时段不发{why}，"
        f"到时{these}会被放弃。建议{fix}。"
    )


@command(
    "order",
    aliases=("成交",),
    usage=ORDER_USAGE,
    summary="记录成交：客户移到成交阶段（再次成交移到复购阶段），安排售后关怀，停止倒计时",
)
async def order(
    ctx: CommandContext,
    args: OrderArgs,
    customer: Customer,
    sequences: SequenceService,
    profile: ProfileService,
    coach: Coach,
) -> str:
    words = args.product.split()
    confirmed = bool(words) and words[-1] in CONFIRM_WORDS
    product = " ".join(words[:-1] if confirmed else words)
    if len(product) > MAX_LABEL_CHARS:  # the customer reads it in the aftercare messages
        raise CommandError(
            f"产品名太长（{len(product)} 个字），最多 {MAX_LABEL_CHARS} 个字\n用法：{ORDER_USAGE}"
        )
    recorded = await sequences.record_order(customer, product, ctx.actor, confirmed=confirmed)
    label = profile.pipeline.label
    old, new = recorded.old_stage, recorded.new_stage
    await coach.stage_changed(id_of(customer), old, new)
    lines = [
        f"已记录成交{'：' + product if product else ''}",
        f"阶段：{label(old)} → {label(new)}" if old != new else f"阶段：{label(new)}",
        f"已安排 {recorded.aftercare_steps} 条售后关怀消息",
    ]
    if recorded.replaced:
        lines.append(f"上一单还没发的 {recorded.replaced} 条售后关怀已取消（以这一单为准）")
    if recorded.late:
        days = "、".join(step_name(Kind.AFTERCARE, step) for step in recorded.late)
        lines.append(
            budget_warning(
                f"{len(recorded.late)} 条售后关怀（{days}）",
                recorded.crowd,
                "用 /schedule 和 /cancel 去掉同一天不急的自动消息（如倒计时的早期提醒），给售后关怀让出时间",
                late=len(recorded.late),
            )
        )
    return "\n".join(lines)


@command(
    "schedule",
    aliases=("计划",),
    usage="/schedule",
    summary="查看客户的待发消息（含编号和时间）",
)
async def schedule(ctx: CommandContext, customer: Customer, sequences: SequenceService) -> str:
    rows = await sequences.pending(id_of(customer))
    if not rows:
        return "没有待发消息"
    lines = ["待发消息："]
    for row in rows:
        paused = "（已暂停）" if row.status == "paused" else ""
        lines.append(f"#{row.id} {when(row.due_at, ctx.config)} {message_name(row.kind, row.step)}{paused}")
    lines.append("取消：/cancel 编号 或 /cancel all")
    return "\n".join(lines)


CANCEL_USAGE = "/cancel [编号|all]"


@command(
    "cancel",
    aliases=("取消",),
    usage=CANCEL_USAGE,
    summary="取消客户的某条或全部待发消息",
)
async def cancel(args: CancelArgs, customer: Customer, sequences: SequenceService) -> str:
    if args.which != "all" and parse_id(args.which.removeprefix("#")) is None:
        raise UsageError(CANCEL_USAGE)
    count = await sequences.cancel(id_of(customer), args.which)
    return f"已取消 {count} 条待发消息"


@command(
    "pause",
    aliases=("暂停",),
    usage="/pause",
    summary="暂停对客户的全部自动消息",
)
async def pause(ctx: CommandContext, customer: Customer, sequences: SequenceService) -> str:
    count = await sequences.pause(id_of(customer), ctx.actor, "paused by the rep")
    return f"已暂停自动消息（{count} 条待发消息暂停）"


@command("resume", aliases=("恢复",), usage="/resume", summary="恢复对客户的自动消息")
async def resume(ctx: CommandContext, customer: Customer, sequences: SequenceService) -> str:
    count = await sequences.resume(id_of(customer), ctx.actor)
    return f"已恢复自动消息（{count} 条待发消息恢复；暂停期间错过的不再补发）"
