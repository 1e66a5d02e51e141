"""The one table from internal keys to the Chinese a person reads.

Keys are stored and logged in English (``followup``, ``pacing``, ``price``); chat messages and pages
show only these names. Anything a rep or supervisor may see goes through a function here: message
kinds and statuses, objection labels and signals, why a message was held or dropped, a scheduled
step, an account's connection state. Unknown keys read as a neutral Chinese word, never as the key.
"""

from __future__ import annotations

import re

from bot.domain.kinds import Kind, Status
from bot.domain.schedule import offset_label

KIND_NAMES: dict[str, str] = {
    Kind.WELCOME: "欢迎语",
    Kind.COUNTDOWN: "倒计时",
    Kind.AFTERCARE: "售后关怀",
    Kind.FOLLOWUP: "跟进",
    Kind.REPLY: "话术",
    Kind.DIGEST: "日报",
    Kind.OWED: "待回复提醒",
    Kind.ALERT: "提醒",
    Kind.SUGGESTION: "话术建议",
    Kind.COMMAND_REPLY: "命令回复",
    Kind.SIGNAL: "客户信号",
    Kind.AUTO_REPLY: "自动回复",
    Kind.REACTIVATION: "唤醒建议",
    Kind.COACH: "下一步建议",
    Kind.BROADCAST: "群发",
}

STATUS_NAMES: dict[str, str] = {
    Status.PENDING: "待发",
    Status.CLAIMED: "发送中",
    Status.SENT: "已发送",
    Status.FAILED: "发送失败",
    Status.EXPIRED: "已过期",
    Status.CANCELLED: "已取消",
    Status.PAUSED: "已暂停",
}

# the library's own names (scripts_templates/objections/*.toml ``name``) win where the library is at
# hand; these are what a page or a card shows without it
OBJECTION_NAMES: dict[str, str] = {
    "price": "价格",
    "budget": "预算",
    "comparison": "比较",
    "stalling": "拖延",
    "trust": "信任",
    "quality": "质量",
    "after_sales": "售后",
    "fit": "适配",
    "authority": "决策人",
}

SIGNAL_NAMES: dict[str, str] = {
    "buying_signal": "购买信号",
    "opt_out": "退订",
    "opt_out_soft": "别催了",
    "referral": "转介绍",
}

# a customer's lifecycle state (bot/domain/lifecycle.py)
LIFECYCLE_NAMES: dict[str, str] = {
    "new": "新客",
    "growing": "成长",
    "mature": "成熟",
    "dormant": "休眠",
    "lost": "流失",
}

# why a customer's stage changed (``stage_change.reason``)
STAGE_REASONS: dict[str, str] = {
    "new friend": "加好友",
    "first reply": "首次回复",
    "order": "成交",
    "manual": "手动调整",
}

# the playbook's plays (bot/playbook/library.py PLAYS): what a script does for the sale
PLAY_NAMES: dict[str, str] = {
    "discovery": "挖掘需求",
    "deepen": "强化需求",
    "propose": "方案",
    "close": "促成",
    "deliver": "交付价值",
    "reactivate": "唤醒",
    "referral_ask": "转介绍",
}

# what the coaching card tells the rep to do for each play, in one line
PLAY_ADVICE: dict[str, str] = {
    "discovery": "多问少推，先弄清TA要解决什么、预算多少、什么时候要。",
    "deepen": "把需求聊透，问问不解决会怎样、影响到谁，让TA自己说出为什么要现在解决。",
    "propose": "按TA说过的需求给方案，最好两个选项，讲清差别。",
    "close": "问出最后的顾虑，给一个现在定下来的理由，约好具体时间。",
    "deliver": "成交只是开始：先说清接下来的安排和怎么找你，过几天再回访感受，让TA觉得选对了。",
    "reactivate": "给TA一个回来的理由（有用的资料、专属优惠、一句关心），别只发“在吗”。",
    "referral_ask": "趁TA满意，请TA介绍身边有需要的朋友，说清推荐的好处。",
}

# why a message was held back, dropped or failed, as a person reads it: (a fragment of the internal
# reason, wording); the first fragment found wins, so the more specific ones come first
REASONS: tuple[tuple[str, str], ...] = (
    ("quiet hours", "一直处在免打扰时段"),
    ("customer daily cap", "这位客户今天收到的自动消息已达上限"),
    ("account daily cap", "这个账号今天发出的自动消息已达上限"),
    ("pacing", "自动消息需要间隔发送，排不开"),
    ("delivered (confirmed", "已确认送达"),
    ("delivery unknown", "发送时连接中断，无法确认对方是否收到"),
    ("expired while paused", "暂停期间已过期"),
    ("automation paused", "已暂停对这位客户的自动消息"),
    ("paused by the rep", "已暂停对这位客户的自动消息"),
    ("pushed less", "客户不想被频繁催促"),
    ("hot lead", "客户有购买意向，倒计时等你决定"),
    ("opt-out", "客户要求不再接收消息"),
    ("replaced by a new countdown", "已被新的倒计时取代"),
    ("replaced by a newer order", "已被新的一单取代"),
    ("customer ordered", "客户已成交"),
    ("customer replied", "客户已回复"),
    ("customer deleted", "客户已删除好友"),
    ("cancelled by the rep", "已手动取消"),
    ("no longer wanted", "已不需要发送"),
    ("not sent before not_after", "没能在有效期内发出"),
    ("went offline", "账号离线"),
    ("stopping", "程序正在停止"),
    ("no composer", "程序不认识这类消息"),
)

# why a pending message waits (its reason starts "deferred: "): it still goes out, later
DEFERRALS: tuple[tuple[str, str], ...] = (
    ("quiet hours", "免打扰时段，时段结束后发送"),
    ("customer daily cap", "这位客户今天的自动消息已达上限，明天再发"),
    ("account daily cap", "这个账号今天的自动消息已达上限，明天再发"),
    ("pacing", "与上一条自动消息隔开一会儿再发"),
)

# an account's connection state (the adapter's and the app's wording), shown on the dashboard
CONNECTIONS: tuple[tuple[str, str], ...] = (
    ("not started", "尚未启动"),
    ("logged in", "已登录"),
    ("logged out", "已退出登录"),
    ("reconnect", "已重新连接"),
    ("connection lost", "连接中断，正在重连"),
)

# where an account's login stands (bot.transport.base.LoginStatus), on the dashboard
LOGIN_STATES: dict[str, str] = {
    "waiting": "等待扫码",
    "scanned": "已扫码，请在手机上确认",
    "logged_in": "已登录",
    "logged_out": "已退出登录",
    "expired": "二维码已过期，正在换新码",
}

_COUNTDOWN_STEP = re.compile(r"^\d+[dhm]$")
_DAY_STEP = re.compile(r"^T\+(\d+)$")


def kind_name(kind: str) -> str:
    """The Chinese name of a message kind; an unknown kind (an old row) reads as a generic message."""
    return KIND_NAMES.get(kind, "消息")


def status_name(status: str) -> str:
    return STATUS_NAMES.get(status, "未知状态")


def objection_name(label: str) -> str:
    return OBJECTION_NAMES.get(label) or SIGNAL_NAMES.get(label) or "其他顾虑"


def lifecycle_name(state: str) -> str:
    return LIFECYCLE_NAMES.get(state, "未知")


def stage_reason(reason: str) -> str:
    return STAGE_REASONS.get(reason, "")


# the script library's groups (/scripts) where a step's and a signal's names are the same word:
# asking for a referral and thanking for one must not read as one group (转介绍 matches both)
LISTING_GROUPS: dict[str, str] = {
    "referral_ask": "转介绍·邀请",
    "referral": "转介绍·致谢",
}
GROUP_JOINER = "·"


def listing_group(key: str, name: str) -> str:
    """The group a /scripts list shows a script under: ``name`` unless it needs telling apart."""
    return LISTING_GROUPS.get(key, name)


def play_name(play: str) -> str:
    return PLAY_NAMES.get(play, "跟进")


def signal_name(signal: str) -> str:
    return SIGNAL_NAMES.get(signal, "其他信号")


def reason_text(reason: str, default: str = "发送没有成功") -> str:
    """Why a message did not go (or was held), in plain Chinese; ``default`` for anything else
    (a raw transport error stays in the log)."""
    folded = reason.casefold()
    for fragment, wording in DEFERRALS if folded.startswith("deferred:") else ():
        if fragment in folded:
            return wording
    for fragment, wording in REASONS:
        if fragment in folded:
            return wording
    return default if reason else ""


def connection_text(reason: str, connected: bool) -> str:
    """An account's connection state; a startup error's text (it names config keys, hosts) stays
    in the log."""
    folded = reason.casefold()
    for fragment, wording in CONNECTIONS:
        if fragment in folded:
            return wording
    return "已连接" if connected else "无法连接，正在重试（详见日志）"


def login_name(status: str) -> str:
    return LOGIN_STATES.get(status, "未知")


def step_name(kind: str, step: str) -> str:
    """Which message of a series a row is: 提前3天, 成交后第7天; "" where the step is an internal id."""
    if kind == Kind.COUNTDOWN and _COUNTDOWN_STEP.match(step):
        return offset_label(step)  # as /countdown names it
    day = _DAY_STEP.match(step)
    if day and kind == Kind.AFTERCARE:
        return f"成交后第{day.group(1)}天"
    if day and kind == Kind.FOLLOWUP:
        return f"加好友后第{day.group(1)}天"
    return ""


def message_name(kind: str, step: str) -> str:
    """A planned message as a list shows it: 售后关怀 成交后第3天, 欢迎语."""
    return " ".join(filter(None, (kind_name(kind), step_name(kind, step))))
