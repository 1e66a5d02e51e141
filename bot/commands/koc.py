"""/koc: the rep's KOC candidates (repeat buyers, referrers, engaged fans) and how to promote them."""

from __future__ import annotations

from bot.commands.context import CommandContext
from bot.commands.registry import command
from bot.services.koc import KocService

# a long list is cut here: the console is a chat
SHOWN = 20


@command("koc", aliases=("KOC候选",), usage="/koc", summary="列出值得培养成KOC的客户（复购、转介绍、活跃）")
async def koc(ctx: CommandContext, service: KocService) -> str:
    candidates = await service.of_account(ctx.account_id)
    if not candidates:
        return "目前没有KOC候选：复购、帮你转介绍或一直很活跃的老客户会出现在这里。"
    label = service.pipeline.label
    days = service.config.koc.engaged_days
    lines = [f"KOC候选（{len(candidates)} 位）："]
    for number, c in enumerate(candidates[:SHOWN], start=1):
        lines.append(f"{number}. {c.name} #{c.customer_id} · {label(c.stage)} · {c.why(days)}")
    if len(candidates) > SHOWN:
        lines.append(f"……另有 {len(candidates) - SHOWN} 位未列出")
    if service.stage is not None:
        first = candidates[0].customer_id
        stage = label(service.stage)
        lines.append(f"设为KOC：发 /stage {stage} @#编号，如 /stage {stage} @#{first}")
    return "\n".join(lines)
