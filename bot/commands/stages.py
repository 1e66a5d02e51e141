"""/stage and /stages: where each customer sits on the configured pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext
from bot.commands.registry import NoArgs, Rest, command


@dataclass(frozen=True)
class StageArgs:
    stage: Rest


@command(
    "stage",
    rank=20,
    aliases=("阶段",),
    usage="/stage <阶段>",
    summary="把客户移到某个阶段（阶段名或代号）",
    args=StageArgs,
    needs_customer=True,
)
async def stage(ctx: CommandContext, args: StageArgs) -> str:
    old, new = await ctx.profile.set_stage(ctx.customer_id, args.stage, ctx.actor)
    label = ctx.profile.pipeline.label
    return f"阶段：{label(old)} → {label(new)}"


@command("stages", rank=21, aliases=("阶段列表",), usage="/stages", summary="列出销售阶段和每个阶段的客户数")
async def stages(ctx: CommandContext, args: NoArgs) -> str:
    counts = await ctx.profile.stage_counts(ctx.account_id)
    lines = ["销售阶段："]
    for number, item in enumerate(ctx.profile.pipeline.stages, start=1):
        lines.append(f"{number}. {item.label}（{item.key}）：{counts.get(item.key, 0)} 人")
    return "\n".join(lines)
