"""Typed configuration loaded from ``config.toml``.

Every section forbids unknown keys so a typo fails at startup instead of silently using a default.
Errors are raised as :class:`~bot.errors.ConfigError` naming the file, the dotted key and what was
expected.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from bot.domain.steps import PROCESS_STEPS
from bot.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config.toml")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _delay_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if low < 0 or high < low:
        raise ValueError("expected [min, max] with 0 <= min <= max")
    return value


# a random pause, in seconds: [min, max]
DelayRange = Annotated[tuple[float, float], AfterValidator(_delay_range)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Section):
    url: str = "sqlite:///data/salesbot.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql|postgres)(\+\w+)?://", value):
            raise ValueError("expected an SQLAlchemy URL starting with sqlite:// or postgresql://")
        return value


class WorkingHours(_Section):
    start: time = time(9, 0)
    end: time = time(21, 0)
    # ISO weekdays the rep works: 1 = Monday ... 7 = Sunday
    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7])

    @model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if self.start >= self.end:
            raise ValueError("start must be before end (hours that run past midnight are not supported)")
        if not self.days:
            raise ValueError("days must name at least one weekday (1 = Monday ... 7 = Sunday)")
        return self


class Profile(_Section):
    """What the customer is told about the rep: the seven parts of the value icebreaker."""

    nickname: str
    role: str
    company: str = ""
    service: str
    next_step: str
    gift: str
    hook_question: str
    working_hours: WorkingHours = WorkingHours()


class AccountConfig(_Section):
    id: str
    transport: Literal["local", "service"] = "local"
    # service transport only; empty means: read SALESBOT_<ID>_TOKEN / SALESBOT_<ID>_ENDPOINT
    token: str = ""
    endpoint: str = ""
    # service transport: how long to wait for the login, and the reconnect backoff range
    login_timeout_seconds: float = Field(default=30.0, gt=0)
    reconnect_min_seconds: float = Field(default=1.0, gt=0)
    reconnect_max_seconds: float = Field(default=60.0, gt=0)
    # HTTP/2 keepalive ping interval on the service connection (0: no pings)
    keepalive_seconds: float = Field(default=30.0, ge=0)
    # the conversation where the rep types commands and the bot reports (filehelper = 文件传输助手)
    console: str = "filehelper"
    admins: list[str] = Field(default_factory=list)
    # which playbook (scripts_templates/playbook/<vertical>.toml) coaches this rep; general: any business
    vertical: str = Field(default="general", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    profile: Profile

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not _ACCOUNT_ID.match(value):
            raise ValueError("expected 1-32 letters, digits, '-' or '_'")
        return value

    @model_validator(mode="after")
    def _backoff_range(self) -> AccountConfig:
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            raise ValueError("reconnect_max_seconds must not be below reconnect_min_seconds")
        return self

    def service_token(self) -> str:
        return self.token or os.environ.get(f"SALESBOT_{self.id.upper()}_TOKEN", "")

    def service_endpoint(self) -> str:
        return self.endpoint or os.environ.get(f"SALESBOT_{self.id.upper()}_ENDPOINT", "")


class ChannelRule(_Section):
    """Picks a welcome variant and tags the customer when the friend request's hello text matches."""

    key: str
    label: str
    keywords: list[str] = Field(min_length=1)
    template: str
    tag: str = ""


class WelcomeConfig(_Section):
    template: str = "welcome/default.txt.j2"
    # human-like pause before the welcome, in seconds: [min, max]
    delay_seconds: DelayRange = (3.0, 8.0)
    # a customer who re-adds the rep within this many days is not welcomed again
    readd_window_days: int = Field(default=30, ge=0)
    # at least this many seconds between two welcomes of one account, [min, max] picked at random:
    # a burst of new friends (a live stream) must not look like a bot to the platform
    min_gap_seconds: DelayRange = (4.0, 9.0)
    channels: list[ChannelRule] = Field(default_factory=list)


class StageConfig(_Section):
    key: str
    label: str
    # the script library's process steps this stage is (see bot/domain/steps.py); [] : its own key
    steps: list[str] = Field(default_factory=list)

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, value: list[str]) -> list[str]:
        for step in value:
            if step not in PROCESS_STEPS:
                raise ValueError(
                    f"unknown process step {step!r} (expected one of {', '.join(PROCESS_STEPS)})"
                )
        return value

    @property
    def script_steps(self) -> tuple[str, ...]:
        """What the script library may call this stage: its key and the steps it maps to."""
        return tuple(dict.fromkeys([self.key, *self.steps]))


def _default_stages() -> list[StageConfig]:
    pairs = [
        ("stranger", "陌生"),
        ("potential", "潜在"),
        ("intent", "意向"),
        ("ordered", "下单"),
        ("repeat", "复购"),
        ("koc", "KOC"),
    ]
    return [StageConfig(key=k, label=v) for k, v in pairs]


class PipelineConfig(_Section):
    # stage a customer moves to on their first message (only forward); "" turns it off
    on_first_reply: str = "potential"
    # stage /order moves a customer to (only forward)
    order_stage: str = "ordered"
    # stage a later /order (a repeat purchase) moves them to; "" : they stay in order_stage
    repeat_stage: str = "repeat"


class TagGroup(_Section):
    key: str
    label: str
    # other names reps may type for this group, e.g. 预算 for 消费
    aliases: list[str] = Field(default_factory=list)
    # allowed values; empty means any value
    values: list[str] = Field(default_factory=list)
    # shorthand -> allowed value, e.g. "20-30w" -> "20-30万"
    value_aliases: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _aliases_point_at_values(self) -> TagGroup:
        if self.values:
            unknown = sorted(v for v in self.value_aliases.values() if v not in self.values)
            if unknown:
                raise ValueError(f"value_aliases point at values not in values: {', '.join(unknown)}")
        return self


def _default_tag_groups() -> list[TagGroup]:
    return [
        TagGroup(key="social", label="社会", aliases=["职业", "家庭"]),
        TagGroup(key="consumption", label="消费", aliases=["预算"]),
        TagGroup(key="behaviour", label="行为"),
        TagGroup(key="tier", label="层级"),
        TagGroup(key="channel", label="渠道"),
    ]


class TagsConfig(_Section):
    # also add tags to the contact's tags on the platform, where the puppet supports it
    sync_to_platform: bool = False
    groups: list[TagGroup] = Field(default_factory=_default_tag_groups)


class CommandsConfig(_Section):
    # recall a command the rep typed in a customer's chat, so the customer never sees it
    recall_in_customer_chat: bool = True
    # results per page for /find
    page_size: int = Field(default=10, ge=1, le=50)


class ObjectionsConfig(_Section):
    # classify every customer message and suggest reply scripts to the rep
    enabled: bool = True
    # how many numbered scripts a suggestion offers (2-3 reads well on a phone)
    suggestions: int = Field(default=3, ge=1, le=5)
    # human-like pause before /send delivers a script, in seconds: [min, max]
    reply_delay_seconds: DelayRange = (2.0, 6.0)
    # a script "worked" when the customer moves up a stage (or orders) within this many days
    success_window_days: int = Field(default=14, ge=1)
    # rank scripts by success rate only once each has been sent this many times
    min_sends_for_ranking: int = Field(default=5, ge=1)
    # the trained model that reads customer messages: "" is the one shipped with salesbot; a folder
    # (relative to the config file) holds your own, built by `salesbot objections train --with-feedback`
    model: str = ""


class ReachConfig(_Section):
    """Gentle reach: limits on automated messages (countdown, aftercare, follow-ups)."""

    quiet_start: time = time(21, 30)
    quiet_end: time = time(8, 30)
    customer_daily_cap: int = Field(default=4, ge=1)
    account_daily_cap: int = Field(default=200, ge=1)
    pacing_seconds: DelayRange = (20.0, 45.0)

    @model_validator(mode="after")
    def _quiet_hours_have_a_length(self) -> ReachConfig:
        if self.quiet_start == self.quiet_end:
            raise ValueError(
                "quiet_start and quiet_end are the same time, which could mean no quiet hours or a "
                "whole day of them: give the quiet hours a length (e.g. 21:30 and 08:30)"
            )
        return self


class SignalsConfig(_Section):
    """Acting on what customers signal (issue 17): hot leads."""

    # a hot lead (buying signal) the rep has not answered after this many minutes gets one nudge,
    # in working hours (a nudge falling outside moves to the next opening)
    hot_lead_nudge_minutes: int = Field(default=15, ge=1, le=24 * 60)
    # the stage a hot lead's alert suggests (/stage), when the customer is not there yet
    hot_lead_stage: str = "intent"


class KocConfig(_Section):
    """Who ``/koc`` and the digest suggest as a KOC (a fan worth cultivating): any one rule is
    enough; 0 turns a rule off."""

    # customers with at least this many orders (/order): repeat buyers
    min_orders: int = Field(default=2, ge=0)
    # customers who referred others at least this many times (messages read as a referral)
    min_referrals: int = Field(default=1, ge=0)
    # sustained engagement after buying: at least min_messages messages in the last engaged_days days
    engaged_days: int = Field(default=14, ge=1, le=365)
    min_messages: int = Field(default=15, ge=0)


class LifecycleConfig(_Section):
    """Lifecycle states (new, growing, mature, dormant, lost) and the reactivation card. Days are
    local calendar days since the customer last wrote (or was added, if they never wrote)."""

    # a customer added fewer than this many days ago, before the order, is "new"
    new_days: int = Field(default=3, ge=1, le=365)
    # silent this many days before the order (or after it): dormant, and the rep gets one
    # reactivation card with scripts to send if they choose
    dormant_days_before_order: int = Field(default=7, ge=1, le=3650)
    dormant_days_after_order: int = Field(default=30, ge=1, le=3650)
    # silent this many days (either side of the order): lost; no more cards
    lost_days: int = Field(default=90, ge=2, le=3650)
    # local time of the daily sweep that moves customers between states (cards arrive then)
    sweep_at: time = time(10, 0)
    # send the rep a reactivation card when a customer turns dormant
    reactivation_cards: bool = True

    @model_validator(mode="after")
    def _lost_after_dormant(self) -> LifecycleConfig:
        if self.lost_days <= max(self.dormant_days_before_order, self.dormant_days_after_order):
            raise ValueError("lost_days must be more than both dormant_days_before_order and _after_order")
        return self


class HookRule(_Section):
    """A promise a template makes ("回复“礼物”即可领取") and what the bot sends when it is taken up."""

    key: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$")
    # what the customer replies (punctuation and spaces ignored); the promise is the latest message
    # of a kind in ``after`` containing 回复“<keyword>”
    keywords: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    after: list[Literal["welcome", "countdown", "aftercare", "followup"]] = Field(min_length=1)

    @field_validator("after", mode="before")
    @classmethod
    def _one_or_more(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    template: str
    # also alert the rep as a hot lead
    alert_rep: bool = False


def _default_hooks() -> list[HookRule]:
    return [
        HookRule(key="gift", keywords=["礼物"], after=["welcome", "followup"], template="hooks/gift.txt.j2"),
        HookRule(
            key="book",
            keywords=["1"],
            after=["countdown"],
            template="hooks/book.txt.j2",
            alert_rep=True,
        ),
    ]


class HooksConfig(_Section):
    # a promise is kept only this many hours after the message that made it was sent
    window_hours: float = Field(default=72.0, gt=0)
    rules: list[HookRule] = Field(default_factory=_default_hooks)


class CountdownConfig(_Section):
    offsets: list[str] = Field(
        default_factory=lambda: ["7d", "3d", "1d", "3h", "1h", "30m", "15m"], min_length=1
    )
    template: str = "countdown/step.txt.j2"

    @field_validator("offsets")
    @classmethod
    def _offsets(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"\d+[dhm]", item) or int(item[:-1]) == 0:
                raise ValueError(f"bad offset {item!r} (expected e.g. 7d, 3h, 30m)")
        if len(set(value)) != len(value):
            raise ValueError("offsets must be unique")
        return value


class SequenceStep(_Section):
    days: int = Field(ge=0)
    template: str


def _unique_days(steps: list[SequenceStep]) -> list[SequenceStep]:
    days = [step.days for step in steps]
    if len(set(days)) != len(days):
        raise ValueError("each step needs its own number of days (the day names the step)")
    return steps


class SequenceConfig(_Section):
    """T+N day steps at a local time of day; each step is named by its day."""

    at: time
    steps: list[SequenceStep]
    valid_hours: float = Field(default=12.0, gt=0)

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[SequenceStep]) -> list[SequenceStep]:
        return _unique_days(value)


class AftercareConfig(SequenceConfig):
    at: time = time(10, 0)
    # a second /order this soon after the last one asks the rep to confirm it is a new order
    confirm_repeat_minutes: int = Field(default=30, ge=0)
    steps: list[SequenceStep] = Field(
        default_factory=lambda: [
            SequenceStep(days=days, template=f"aftercare/t{days}.txt.j2") for days in (1, 3, 7, 30)
        ]
    )


class FollowupConfig(SequenceConfig):
    at: time = time(10, 30)
    steps: list[SequenceStep] = Field(
        default_factory=lambda: [
            SequenceStep(days=days, template=f"followup/t{days}.txt.j2") for days in (1, 3)
        ]
    )
    skip_if_replied: bool = True
    skip_if_ordered: bool = True


class SupervisorConfig(_Section):
    name: str = Field(min_length=1)
    # the account that sends the digest, and the supervisor's contact id on it ("room:<topic>" for a group)
    account: str
    contact: str = Field(min_length=1)
    # the accounts (reps) this supervisor oversees
    accounts: list[str] = Field(min_length=1)
    # local time of the daily digest
    at: time = time(20, 0)


class CoachConfig(_Section):
    # the coaching card (next best step) after a first reply or a stage change: at most one per
    # customer per this many minutes, and none while the rep has written to or about them within it
    enabled: bool = True
    min_gap_minutes: int = Field(default=30, ge=0, le=7 * 24 * 60)
    # scripts on one card
    scripts: int = Field(default=3, ge=1, le=5)


class DigestConfig(_Section):
    template: str = "digest/daily.txt.j2"
    # what a supervisor's digest covers: the time since the previous digest (nothing falls between
    # two digests), or the previous full local day
    covers: Literal["since_last", "previous_day"] = "since_last"
    # a digest with nothing to report: one short line, or no message at all
    quiet: Literal["line", "skip"] = "line"
    # a digest missed while the bot was down is still sent at startup within this many hours
    grace_hours: float = Field(default=3.0, ge=0)
    # a customer whose last message has waited this long for the rep is an "owed reply"
    owed_reply_minutes: int = Field(default=60, ge=1)
    # an owed reply older than this many days drops off the list (counted once, the day it drops)
    owed_reply_max_days: int = Field(default=7, ge=1)
    # customers at or past this stage, before the order, silent this many days are "at risk"
    at_risk_from_stage: str = "intent"
    at_risk_days: int = Field(default=3, ge=1)
    # customers who ordered and have been silent this many days get their own line (after-sale care)
    after_sale_silent_days: int = Field(default=30, ge=1)
    # longest chat message; longer ones (digests, console messages, replies) are split at line boundaries
    max_chars: int = Field(default=2000, ge=200)
    # also nudge the rep in the console when a customer has waited owed_reply_minutes (working hours)
    owed_nudge: bool = False


class WebConfig(_Section):
    enabled: bool = True
    # loopback by default; any other address requires the token below
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # access token for the web app and API; empty: read SALESBOT_WEB_TOKEN, else one is generated
    # and printed at startup when needed
    token: str = ""


class DispatchConfig(_Section):
    # how often the dispatcher looks for due messages even without a wake-up (seconds)
    poll_seconds: float = Field(default=5.0, gt=0)
    # a welcome not sent within this many hours of its due time is pointless
    welcome_valid_hours: float = Field(default=24.0, gt=0)
    # most messages reserved per durable database commit when many are due at once
    batch_size: int = Field(default=16, ge=1, le=1000)
    # what customers' messages plan to send at once (console cards, auto replies) waits this long
    # (milliseconds) in `salesbot run`, so a busy moment's go out in one dispatch round; 0 sends
    # each from its handler, as `salesbot simulate` always does
    gather_ms: int = Field(default=50, ge=0, le=2000)


class ClusterConfig(_Section):
    """Several processes on one PostgreSQL (issue 19); SQLite allows one process."""

    # a process's account leases last this long without a heartbeat (renewed every third of it):
    # a killed process's accounts move to the survivors within this time
    lease_seconds: float = Field(default=30.0, ge=3, le=3600)


class Config(_Section):
    timezone: str = "Asia/Shanghai"
    templates_dir: Path = Path("scripts_templates")
    database: DatabaseConfig = DatabaseConfig()
    welcome: WelcomeConfig = WelcomeConfig()
    dispatch: DispatchConfig = DispatchConfig()
    cluster: ClusterConfig = ClusterConfig()
    stages: list[StageConfig] = Field(default_factory=_default_stages, min_length=2)
    pipeline: PipelineConfig = PipelineConfig()
    tags: TagsConfig = TagsConfig()
    commands: CommandsConfig = CommandsConfig()
    objections: ObjectionsConfig = ObjectionsConfig()
    reach: ReachConfig = ReachConfig()
    countdown: CountdownConfig = CountdownConfig()
    signals: SignalsConfig = SignalsConfig()
    hooks: HooksConfig = HooksConfig()
    koc: KocConfig = KocConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    coach: CoachConfig = CoachConfig()
    aftercare: AftercareConfig = AftercareConfig()
    followup: FollowupConfig = FollowupConfig()
    digest: DigestConfig = DigestConfig()
    supervisors: list[SupervisorConfig] = Field(default_factory=list)
    web: WebConfig = WebConfig()
    accounts: list[AccountConfig] = Field(min_length=1)
    # folder the config file lives in; relative paths are resolved against it
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _unique(self) -> Config:
        ids = [a.id for a in self.accounts]
        if len(set(ids)) != len(ids):
            raise ValueError("account ids must be unique")
        keys = [s.key for s in self.stages]
        if len(set(keys)) != len(keys):
            raise ValueError("stage keys must be unique")
        pipeline, known = self.pipeline, f" (stages are: {', '.join(keys)})"
        if pipeline.on_first_reply and pipeline.on_first_reply not in keys:
            raise ValueError(f"pipeline.on_first_reply: unknown stage {pipeline.on_first_reply!r}{known}")
        if pipeline.order_stage not in keys:
            raise ValueError(f"pipeline.order_stage: unknown stage {pipeline.order_stage!r}{known}")
        if pipeline.repeat_stage and pipeline.repeat_stage not in keys:
            raise ValueError(f"pipeline.repeat_stage: unknown stage {pipeline.repeat_stage!r}{known}")
        if pipeline.repeat_stage and keys.index(pipeline.repeat_stage) <= keys.index(pipeline.order_stage):
            raise ValueError("pipeline.repeat_stage must come after pipeline.order_stage in stages")
        names = [n for g in self.tags.groups for n in (g.key, g.label, *g.aliases)]
        if len(set(names)) != len(names):
            raise ValueError("tags.groups: keys, labels and aliases must be unique across groups")
        if self.signals.hot_lead_stage not in keys:
            raise ValueError(f"signals.hot_lead_stage: unknown stage {self.signals.hot_lead_stage!r}{known}")
        hook_keys = [rule.key for rule in self.hooks.rules]
        if len(set(hook_keys)) != len(hook_keys):
            raise ValueError("hooks.rules keys must be unique")
        if self.digest.at_risk_from_stage not in keys:
            raise ValueError(
                f"digest.at_risk_from_stage: unknown stage {self.digest.at_risk_from_stage!r}{known}"
            )
        account_ids = set(ids)
        names = [s.name for s in self.supervisors]
        if len(set(names)) != len(names):
            raise ValueError("supervisor names must be unique")
        for number, supervisor in enumerate(self.supervisors):
            unknown = sorted({supervisor.account, *supervisor.accounts} - account_ids)
            if unknown:
                raise ValueError(f"supervisors.{number}: unknown account(s) {', '.join(unknown)}")
        channel_keys = [c.key for c in self.welcome.channels]
        if len(set(channel_keys)) != len(channel_keys):
            raise ValueError("welcome.channels keys must be unique")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def templates_path(self) -> Path:
        return self.templates_dir if self.templates_dir.is_absolute() else self.base_dir / self.templates_dir

    @property
    def model_path(self) -> Path | None:
        """The configured objection model folder, or None for the packaged one."""
        if not self.objections.model:
            return None
        folder = Path(self.objections.model)
        return folder if folder.is_absolute() else self.base_dir / folder

    def database_url(self) -> str:
        """The configured URL with an async driver and relative SQLite paths anchored at ``base_dir``."""
        url = self.database.url
        scheme, _, rest = url.partition("://")
        base = scheme.split("+")[0]
        if base == "sqlite":
            path = rest[1:] if rest.startswith("/") else rest
            if path and path != ":memory:" and not Path(path).is_absolute() and not rest.startswith("//"):
                path = str((self.base_dir / path).resolve())
            return f"sqlite+aiosqlite:///{path}"
        if base in ("postgresql", "postgres"):
            return f"postgresql+asyncpg://{rest}"
        return url

    def supervisor(self, name: str) -> SupervisorConfig:
        for supervisor in self.supervisors:
            if supervisor.name == name:
                return supervisor
        raise KeyError(name)

    def account(self, account_id: str) -> AccountConfig:
        for account in self.accounts:
            if account.id == account_id:
                return account
        raise KeyError(account_id)


def _describe(error: ErrorDetails) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error.get("type")
    if kind == "extra_forbidden":
        return f"{location}: unknown key"
    if kind == "missing":
        return f"{location}: missing required value"
    message = error["msg"]
    message = message.removeprefix("Value error, ")
    given = error.get("input")
    # a whole section, or a message that already quotes the value: it names what is wrong
    if isinstance(given, dict) or repr(given) in message:
        return f"{location}: {message}"
    return f"{location}: {message} (got {given!r})"


def parse_config(data: dict[str, object], source: str, base_dir: Path) -> Config:
    try:
        return Config.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe(e)}" for e in exc.errors())
        raise ConfigError(f"{source}: invalid configuration:\n{problems}") from None


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate a config file; raise ConfigError naming the file and key on any problem."""
    config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        raw = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{config_path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{config_path}: is a folder, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{config_path}: not UTF-8 text (save the file as UTF-8)") from None
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read the config file ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    return parse_config(data, str(config_path), config_path.resolve().parent)
