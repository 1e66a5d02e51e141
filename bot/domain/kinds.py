"""Names of outgoing message kinds, as reps read them (schedules, alerts)."""

from __future__ import annotations

KIND_NAMES = {
    "welcome": "欢迎语",
    "countdown": "倒计时",
    "aftercare": "售后关怀",
    "followup": "跟进",
    "reply": "话术",
    "digest": "日报",
    "owed": "待回复提醒",
}


def kind_name(kind: str) -> str:
    return KIND_NAMES.get(kind, kind)
