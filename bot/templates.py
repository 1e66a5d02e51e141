"""Script templates: data that non-programmers edit in ``scripts_templates/``.

Rendering uses a sandboxed Jinja2 environment with ``StrictUndefined`` so a typo in a variable name
is an error, never an empty gap in a customer message. :meth:`TemplateLibrary.validate` checks every
template at startup and names the file and line of the first problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateNotFound, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from bot.errors import TemplateError
from bot.media import Attachment, MediaLibrary

TEMPLATE_SUFFIX = ".j2"
# kinds whose messages may carry an attachment: {{ attach("gift") }} (see bot/media.py)
ATTACH = "attach"
ATTACHING = frozenset({"welcome", "countdown", "aftercare", "followup", "hooks"})


@dataclass(frozen=True)
class Rendered:
    """A rendered customer message: its text and the attachment that follows it, if any."""

    text: str
    attachment: Attachment | None = None


class _Attach:
    """``attach("a", "b", ...)`` in a template: picks one key (several rotate, e.g. proof images
    across a countdown's steps), records its attachment and renders as nothing."""

    def __init__(self, media: MediaLibrary, rotation: int) -> None:
        self.media = media
        self.rotation = rotation
        self.chosen: Attachment | None = None

    def __call__(self, *keys: str) -> str:
        if not keys:
            raise ValueError("attach() needs the key of an attachment in media/media.toml")
        key = keys[self.rotation % len(keys)]
        item = self.media.get(key)
        if item is None:
            raise ValueError(f"attachment '{key}' is not in {self.media.manifest()}")
        if self.chosen is not None:
            raise ValueError("a message carries one attachment: call attach() once")
        self.chosen = item
        return ""


@dataclass(frozen=True)
class TemplateKind:
    """Which variables a family of templates may use, with a sample value of each for validation."""

    folder: str
    variables: Mapping[str, Any]


def _sample_rep() -> dict[str, str]:
    return {
        "nickname": "小林",
        "role": "顾问",
        "company": "示例公司",
        "service": "选车咨询",
        "working_hours": "每天 09:00-21:00",
        "next_step": "发我您的预算",
        "gift": "购车避坑指南",
        "hook_question": "您最看重哪一点？",
    }


WELCOME = TemplateKind(
    folder="welcome",
    variables={
        "rep": _sample_rep(),
        "customer": {"name": "张三", "remark": "", "channel": "小红书"},
        "channel": "小红书",
        "off_hours": True,
        "back_at": "明天 09:00",
        "now": "11月23日 09:00",
    },
)

OBJECTION = TemplateKind(
    folder="objections",
    variables={
        "rep": _sample_rep(),
        "customer": {"name": "张三", "remark": "", "channel": "小红书"},
        "stage": "潜在",
    },
)

# playbook scripts (scripts_templates/playbook/*.toml): what the rep sends, like objection scripts
PLAYBOOK = TemplateKind(folder="playbook", variables=OBJECTION.variables)

_CUSTOMER = {"name": "张三", "remark": "", "channel": "小红书"}
COUNTDOWN = TemplateKind(
    folder="countdown",
    variables={
        "rep": _sample_rep(),
        "customer": _CUSTOMER,
        "offer": "双十一限时价",
        "left": "最后1小时",
        "deadline": "11月30日 23:59",
        "can_act_soon": True,
    },
)
AFTERCARE = TemplateKind(
    folder="aftercare", variables={"rep": _sample_rep(), "customer": _CUSTOMER, "product": "SUV", "days": 3}
)
FOLLOWUP = TemplateKind(folder="followup", variables={"rep": _sample_rep(), "customer": _CUSTOMER, "days": 1})
# a segment send's message (/broadcast 意向 模板:NAME): scripts_templates/broadcast/NAME.txt.j2
BROADCAST = TemplateKind(folder="broadcast", variables={"rep": _sample_rep(), "customer": _CUSTOMER})
# what the bot sends back when a customer takes up a template's promise (回复“礼物”即可领取)
HOOKS = TemplateKind(
    folder="hooks",
    variables={
        "rep": _sample_rep(),
        "customer": _CUSTOMER,
        "keyword": "礼物",
        "off_hours": True,
        "back_at": "明天 09:00",
    },
)

_REP_DAY = {
    "name": "小林",
    "new_friends": "5（+2）",
    "welcomes": "5",
    "replied": "3（持平）",
    "objections": "价格2",
    "objection_total": "2（+1）",
    "corrections": "1（持平）",
    "funnel": "陌生1 → 潜在2",
    "orders": "1（+1）",
    "scheduled": "已发3，失败0，过期0，明日计划2",
    "deleted": "0（持平）",
    "owed": ["张三#1"],
    "owed_dropped": 1,
    "at_risk": ["李四#2"],
    "after_sale_silent": ["王五#3"],
    "top_tags": "预算:20-30万×2",
    "hot_leads": ["赵六#4 8分钟后回复", "钱七#5 还没回复"],
    "hot_answered": 1,
    "hooks": "“礼物”2次",
    "hook_total": 2,
    "opt_outs": ["孙八#6"],
    "soft_opt_outs": ["周九#7"],
    "referrals": ["王五#3"],
    "koc": ["王五#3"],
    "lifecycle": "新客3、成长5、成熟2、休眠1、流失0",
    "newly_dormant": ["吴十"],
}
DIGEST = TemplateKind(
    folder="digest",
    variables={
        "title": "王经理的团队日报",
        "date": "11月23日 周一",
        "until": "20:00",
        "period": "11月22日 20:00 至 11月23日 20:00",
        "reps": [_REP_DAY],
        "team": _REP_DAY,
        "multiple": False,
        "owed_max_days": 7,
        "past": True,  # the span is over (koc: today's candidates, labelled 当前)
    },
)

_NO_NAME = {"customer": {"name": "", "remark": "", "channel": ""}}
_QUIET_DAY = {
    **_REP_DAY,
    "owed": [],
    "owed_dropped": 0,
    "at_risk": [],
    "after_sale_silent": [],
    "hot_leads": [],
    "hot_answered": 0,
    "hooks": "",
    "hook_total": 0,
    "opt_outs": [],
    "soft_opt_outs": [],
    "referrals": [],
    "koc": [],
    "newly_dormant": [],
}
# the other values a kind's variables take in real use (each set is applied on top of the sample):
# `salesbot check` renders every template with each, so a branch that breaks shows up at startup
BRANCHES: dict[str, tuple[tuple[str, Mapping[str, Any]], ...]] = {
    "welcome": (
        ("in working hours", {"off_hours": False, "back_at": ""}),
        ("with no customer name or channel", {**_NO_NAME, "channel": ""}),
    ),
    "countdown": (
        ("with no offer name", {"offer": ""}),
        ("days before the deadline", {"left": "还剩3天"}),
        ("when the rep cannot act within the hour", {"can_act_soon": False}),
        ("with no customer name", _NO_NAME),
    ),
    "aftercare": (("with no product", {"product": ""}), ("with no customer name", _NO_NAME)),
    "followup": (("with no customer name", _NO_NAME),),
    "playbook": (("with no customer name", _NO_NAME), ("at another stage", {"stage": "下单"})),
    "hooks": (
        ("in working hours", {"off_hours": False, "back_at": ""}),
        ("with no customer name", _NO_NAME),
    ),
    "digest": (
        ("for a team of several reps", {"multiple": True, "reps": [_REP_DAY, _REP_DAY]}),
        ("on a day with nothing owed or signalled", {"reps": [_QUIET_DAY], "team": _QUIET_DAY}),
    ),
}

_ODD_START = tuple("，。！？、；：,.!?;:")

KINDS: dict[str, TemplateKind] = {
    kind.folder: kind for kind in (WELCOME, COUNTDOWN, AFTERCARE, FOLLOWUP, HOOKS, DIGEST, BROADCAST)
}


def _line_of(ast: nodes.Template, name: str) -> int:
    for node in ast.find_all(nodes.Name):
        if node.name == name:
            return int(node.lineno)
    return 1


MAX_COMPILED_SOURCES = 4096  # distinct script texts kept compiled (a bound, not a working size)


class TemplateLibrary:
    """Loads, validates and renders the templates under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(str(root)),
            undefined=StrictUndefined,
            autoescape=False,  # chat text, not HTML
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._media: MediaLibrary | None = None
        # scripts are rendered from their source for every suggestion: compile each text once
        # (sources come from files loaded at startup, so the cache stays small)
        self._compiled: dict[str, Template] = {}

    @property
    def media(self) -> MediaLibrary:
        """The attachments under ``media/`` (loaded and checked on first use)."""
        if self._media is None:
            self._media = MediaLibrary.load(self.root)
        return self._media

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob(f"*{TEMPLATE_SUFFIX}")
            if path.is_file()
        )

    def path_of(self, name: str) -> Path:
        return self.root / name

    def kind_of(self, name: str) -> TemplateKind | None:
        return KINDS.get(name.split("/", 1)[0])

    def check(self, name: str, allowed: Iterable[str] | None = None) -> None:
        """Parse one template and make sure it only uses variables its kind provides."""
        path = self.path_of(name)
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TemplateError(f"{path}: template not found") from None
        except UnicodeDecodeError:
            raise TemplateError(f"{path}: not UTF-8 text (save the file as UTF-8)") from None
        except OSError as exc:
            raise TemplateError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        try:
            ast = self.env.parse(source, name=name, filename=str(path))
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{path}:{exc.lineno}: syntax error: {exc.message}") from None
        if allowed is None:
            kind = self.kind_of(name)
            allowed = kind.variables.keys() if kind else ()
            if kind is not None and kind.folder in ATTACHING:
                allowed = [*allowed, ATTACH]
            self._check_attachments(ast, path)
        unknown = sorted(meta.find_undeclared_variables(ast) - set(allowed))
        if unknown:
            name0 = unknown[0]
            raise TemplateError(
                f"{path}:{_line_of(ast, name0)}: unknown variable '{name0}' "
                f"(available: {', '.join(sorted(allowed))})"
            )
        kind = self.kind_of(name)
        if kind is not None:
            # catches unknown attributes such as {{ rep.nick }} that parsing alone cannot see, in
            # every branch the kind's values can take
            self._render_branch(name, "", dict(kind.variables))
            for when, values in BRANCHES.get(kind.folder, ()):
                self._render_branch(name, when, {**kind.variables, **values})

    def _check_attachments(self, ast: nodes.Template, path: Path) -> None:
        """Every key an ``attach(...)`` names is literal and in the media library (a rotating set is
        checked whole, not only the key one render happens to pick)."""
        for call in ast.find_all(nodes.Call):
            if not (isinstance(call.node, nodes.Name) and call.node.name == ATTACH):
                continue
            for arg in call.args:
                if not (isinstance(arg, nodes.Const) and isinstance(arg.value, str)):
                    raise TemplateError(f"{path}:{call.lineno}: attach() takes attachment keys in quotes")
                if self.media.get(arg.value) is None:
                    raise TemplateError(
                        f"{path}:{call.lineno}: attachment '{arg.value}' is not in {self.media.manifest()}"
                    )

    def _render_branch(self, name: str, when: str, context: Mapping[str, Any]) -> None:
        text = self.render(name, context, when=when)
        suffix = f" {when}" if when else ""
        if not text:
            raise TemplateError(f"{self.path_of(name)}: renders an empty message{suffix}")
        if text.startswith(_ODD_START) or "，，" in text or "您您" in text:
            raise TemplateError(
                f"{self.path_of(name)}: reads oddly{suffix}: {text[:30]!r} (a name or value left a gap)"
            )

    def validate(self, required: Iterable[str] = ()) -> list[str]:
        """Check every template and that each required one exists. Returns the names checked."""
        if not self.root.is_dir():
            raise TemplateError(f"{self.root}: templates folder not found")
        self.media  # noqa: B018 - every attachment is checked, referenced or not
        names = self.names()
        for name in required:
            if name not in names:
                raise TemplateError(f"{self.path_of(name)}: template not found (named in config)")
        for name in names:
            self.check(name)
        return names

    def check_source(self, source: str, kind: TemplateKind, origin: str) -> None:
        """Validate a template kept inside a data file (e.g. an objection script); ``origin`` says
        where it lives for the error message ("file.toml:12: script 'x'")."""
        try:
            ast = self.env.parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"{origin}: syntax error on line {exc.lineno} of the text: {exc.message}"
            ) from None
        unknown = sorted(meta.find_undeclared_variables(ast) - set(kind.variables))
        if unknown:
            raise TemplateError(
                f"{origin}: unknown variable '{unknown[0]}' (available: {', '.join(sorted(kind.variables))})"
            )
        self._render_source_branch(source, origin, "", dict(kind.variables))
        for when, values in BRANCHES.get(kind.folder, ()):
            self._render_source_branch(source, origin, when, {**kind.variables, **values})

    def _render_source_branch(self, source: str, origin: str, when: str, context: Mapping[str, Any]) -> None:
        text = self.render_source(source, context, origin)
        suffix = f" {when}" if when else ""
        if when and not text:
            raise TemplateError(f"{origin}: renders an empty message{suffix}")
        if when and (text.startswith(_ODD_START) or "，，" in text or "您您" in text):
            raise TemplateError(f"{origin}: reads oddly{suffix}: {text[:30]!r} (a name or value left a gap)")

    def render_source(self, source: str, context: Mapping[str, Any], origin: str) -> str:
        try:
            template = self._compiled.get(source)
            if template is None:
                template = self.env.from_string(source)
                if len(self._compiled) < MAX_COMPILED_SOURCES:
                    self._compiled[source] = template
            return template.render(**context).strip()
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{origin}: syntax error: {exc.message}") from None
        except (UndefinedError, SecurityError) as exc:
            raise TemplateError(f"{origin}: {exc}") from None

    def render(self, name: str, context: Mapping[str, Any], *, when: str = "") -> str:
        """Render one template; ``when`` names the branch in an error ("with no product")."""
        return self.render_message(name, context, when=when).text

    def render_message(
        self, name: str, context: Mapping[str, Any], *, rotation: int = 0, when: str = ""
    ) -> Rendered:
        """Render one template with the attachment it asks for; ``rotation`` picks among a rotating
        set (``attach("proof-1", "proof-2")``), e.g. the row's number."""
        path = self.path_of(name)
        suffix = f" ({when})" if when else ""
        attach = _Attach(self.media, rotation)
        try:
            template = self.env.get_template(name)
            text = template.render(**{ATTACH: attach, **context})
        except TemplateNotFound:
            raise TemplateError(f"{path}: template not found") from None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{path}:{exc.lineno}: syntax error: {exc.message}") from None
        except UnicodeDecodeError:
            raise TemplateError(f"{path}: not UTF-8 text (save the file as UTF-8)") from None
        except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError) as exc:
            raise TemplateError(f"{path}:{_error_line(exc, path)}: {exc}{suffix}") from None
        return Rendered(text.strip(), attach.chosen)


def _error_line(exc: BaseException, path: Path) -> int:
    """Jinja rewrites tracebacks so frames point at template lines; find the deepest one in ``path``."""
    line = 1
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
