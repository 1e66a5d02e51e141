"""The playbook library: one TOML file per vertical in ``scripts_templates/playbook/``.

Objection scripts answer a doubt; these move the sale on: dig for needs, deepen them, propose,
close, deliver value, wake a silent customer, ask for a referral. Ops staff write them per
vertical (``cars.toml``, ``education.toml``...); ``general.toml`` covers every play and fills in
for any vertical. Errors name the file and, for a script, its line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from bot.domain.steps import PROCESS_STEPS
from bot.errors import TemplateError
from bot.objections.library import ObjectionLibrary, line_of, load_file
from bot.templates import PLAYBOOK, TemplateLibrary

FOLDER = "playbook"
GENERAL = "general"
MAX_TITLE_CHARS = 16

PLAYS: tuple[str, ...] = ("discovery", "deepen", "propose", "close", "deliver", "reactivate", "referral_ask")

# what the playbook says to do next at each process step, in order: the coaching card leads with
# the first play and adds one script of the second
NEXT_PLAYS: dict[str, tuple[str, ...]] = {
    "stranger": ("discovery",),
    "potential": ("discovery", "deepen"),
    "intent": ("propose", "close"),
    "ordered": ("deliver", "referral_ask"),
    "repeat": ("deliver", "referral_ask"),
    "koc": ("referral_ask", "deliver"),
}

# when a script fits within its step: "any" time; "reply" right after the customer's first reply
# (it thanks them for replying); "start" the moment the step begins (right after /order: thanks,
# what happens next, how to reach the rep); "later" once time has passed in the step (asks how
# the car drives, how the classes go). A coaching card follows a moment, so it offers "any" and
# that moment's scripts; /scripts lists them all.
MOMENTS: tuple[str, ...] = ("any", "reply", "start", "later")
# the moments a coaching card may offer: after the first reply, after a stage change
REPLY_CARD: frozenset[str] = frozenset({"any", "reply", "start"})
STAGE_CARD: frozenset[str] = frozenset({"any", "start"})
# a reactivation card comes after days of silence: nothing that presumes a reply or a fresh step
DORMANT_CARD: frozenset[str] = frozenset({"any", "later"})

_VERTICAL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class _ScriptFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    play: str
    stages: list[str] = Field(default_factory=list)
    moment: str = "any"
    title: str = Field(min_length=1)
    text: str = Field(min_length=1)


class _PlaybookFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)  # the vertical as reps read it: 汽车, 教育
    scripts: list[_ScriptFile] = Field(min_length=1)


@dataclass(frozen=True)
class PlaybookScript:
    id: str  # unique across the playbook and the objection library
    play: str  # one of PLAYS
    stages: tuple[str, ...]  # process steps (or configured stage keys); () = any
    title: str  # short Chinese title shown in lists
    text: str  # Jinja source, the variables of objection scripts
    vertical: str
    moment: str = "any"  # one of MOMENTS
    path: Path = field(default=Path(), compare=False)
    line: int = field(default=1, compare=False)


class PlaybookLibrary:
    def __init__(self, scripts: Iterable[PlaybookScript], names: dict[str, str] | None = None) -> None:
        self._scripts = list(scripts)
        self._by_id = {s.id: s for s in self._scripts}
        # vertical -> its Chinese name
        self.names = names or {}

    @property
    def verticals(self) -> tuple[str, ...]:
        return tuple(sorted(self.names))

    @classmethod
    def load(cls, templates_root: Path, stage_keys: Iterable[str] = ()) -> PlaybookLibrary:
        """Every ``<vertical>.toml``; scripts name process steps (:data:`PROCESS_STEPS`) or, given
        ``stage_keys``, the configured stages (a typo would silently never match)."""
        folder = templates_root / FOLDER
        if not folder.is_dir():
            raise TemplateError(f"{folder}: playbook folder not found")
        known = set(PROCESS_STEPS) | set(stage_keys)
        scripts: list[PlaybookScript] = []
        names: dict[str, str] = {}
        seen: dict[str, Path] = {}
        for path in sorted(folder.glob("*.toml")):
            vertical = path.stem
            if not _VERTICAL.match(vertical):
                raise TemplateError(
                    f"{path}: a playbook file is named after its vertical: lower-case letters, digits, '_'"
                )
            spec, raw = load_file(path, _PlaybookFile)
            names[vertical] = spec.name
            for item in spec.scripts:
                line = line_of(raw, item.id)
                where = f"{path}:{line}: script {item.id!r}"
                if item.id in seen:
                    raise TemplateError(
                        f"{path}:{line}: script id {item.id!r} is also used in {seen[item.id]}"
                    )
                if item.play not in PLAYS:
                    raise TemplateError(f"{where}: play {item.play!r} is not one of {', '.join(PLAYS)}")
                if item.moment not in MOMENTS:
                    raise TemplateError(f"{where}: moment {item.moment!r} is not one of {', '.join(MOMENTS)}")
                unknown = sorted(set(item.stages) - known)
                if unknown:
                    raise TemplateError(f"{where} names unknown stages {unknown}")
                if len(item.title) > MAX_TITLE_CHARS:
                    raise TemplateError(f"{where}: title is longer than {MAX_TITLE_CHARS} characters")
                seen[item.id] = path
                scripts.append(
                    PlaybookScript(
                        item.id,
                        item.play,
                        tuple(item.stages),
                        item.title,
                        item.text,
                        vertical,
                        item.moment,
                        path,
                        line,
                    )
                )
        if GENERAL not in names:
            raise TemplateError(f"{folder}: {GENERAL}.toml not found (it covers every play for any vertical)")
        missing = [p for p in PLAYS if not any(s.vertical == GENERAL and s.play == p for s in scripts)]
        if missing:
            raise TemplateError(f"{folder / (GENERAL + '.toml')}: no script for play(s) {', '.join(missing)}")
        # a card after a stage change leads with the step's first play: general.toml must have a
        # script of it that fits that moment (not one that presumes time has passed)
        for step, plays in NEXT_PLAYS.items():
            if not any(
                s.vertical == GENERAL
                and s.play == plays[0]
                and s.moment in STAGE_CARD
                and (not s.stages or step in s.stages)
                for s in scripts
            ):
                raise TemplateError(
                    f"{folder / (GENERAL + '.toml')}: no {plays[0]} script for {step} with moment "
                    f"'any' or 'start' (a card right after the step begins has nothing to offer)"
                )
        return cls(scripts, names)

    def scripts(
        self, *, vertical: str | None = None, play: str | None = None, stage: str | None = None
    ) -> list[PlaybookScript]:
        """Scripts that fit: the vertical's own first, then the general ones it has no version of
        (all verticals when ``vertical`` is None); ``stage`` is a process step or stage key:
        scripts made for it come before those for any stage, otherwise file order."""
        found = [
            s
            for s in self._scripts
            if (play is None or s.play == play) and (stage is None or not s.stages or stage in s.stages)
        ]
        if stage is not None:
            found.sort(key=lambda s: not s.stages)  # stable: file order among equals
        if vertical is None:
            return found
        own = [s for s in found if s.vertical == vertical]
        if vertical == GENERAL:
            return own
        # a vertical's version of a general script (cars-referral-ask-reward for
        # general-referral-ask-reward) replaces it: a card never offers two different rewards
        replaced = {
            f"{GENERAL}-{s.id.removeprefix(vertical + '-')}" for s in own if s.id.startswith(vertical + "-")
        }
        return own + [s for s in found if s.vertical == GENERAL and s.id not in replaced]

    def script(self, script_id: str) -> PlaybookScript | None:
        return self._by_id.get(script_id)

    def all(self) -> list[PlaybookScript]:
        return list(self._scripts)


def validate_playbook(
    playbook: PlaybookLibrary, objections: ObjectionLibrary, templates: TemplateLibrary
) -> None:
    """What loading alone cannot see: ids shared with the objection library (``/send`` finds a
    script by id) and every script rendered in each branch (no customer name, another stage)."""
    for script in playbook.all():
        where = f"{script.path}:{script.line}: script '{script.id}'"
        other = objections.script(script.id)
        if other is not None:
            raise TemplateError(f"{where}: the id is also used in {other.path}:{other.line}")
        templates.check_source(script.text, PLAYBOOK, where)
