"""The objection library: one TOML file per objection in ``scripts_templates/objections/``.

Ops staff extend it without code: reply scripts per stage, and the phrases that override the trained
model where they are precise (trigger phrases, phrases that mean the doubt is resolved;
``_opt_out.toml``: the phrases that mean "stop messaging me"). Errors name the file (and, for a
script, its id and line). ``examples`` and ``_none.toml`` from older libraries still load and are
ignored: the model learns from the corpus (``bot/objections/data/corpus/``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.domain.steps import PROCESS_STEPS
from bot.errors import TemplateError
from bot.objections.labels import OBJECTIONS

LABELS = OBJECTIONS
FOLDER = "objections"
GAP = ".{0,6}"


class _ScriptFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    stages: list[str] = Field(default_factory=list)
    text: str = Field(min_length=1)


class _ObjectionFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    name: str
    priority: int = 0
    triggers: list[str] = Field(default_factory=list)  # may be empty: the model reads every message
    not_when: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)  # ignored (older libraries)
    scripts: list[_ScriptFile] = Field(min_length=2)


class _NoneFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    examples: list[str]


class _SignalScriptsFile(BaseModel):
    """``_buying_signal.toml`` / ``_referral.toml``: the reply a signal's alert offers (``/send N``)."""

    model_config = ConfigDict(extra="forbid")
    scripts: list[_ScriptFile] = Field(min_length=1)


# signals whose alert offers a reply script, each from ``_<signal>.toml`` when the file exists
SCRIPTED_SIGNALS = ("buying_signal", "referral")


class _OptOutFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phrases: list[str] = Field(min_length=1)


@dataclass(frozen=True)
class Script:
    id: str
    label: str
    stages: tuple[str, ...]  # empty: suits any stage
    text: str
    path: Path
    line: int


@dataclass(frozen=True)
class Objection:
    label: str
    name: str
    priority: int
    triggers: re.Pattern[str] | None
    # one (pattern, literal length) per phrase: the strongest evidence counts only literal characters
    trigger_list: tuple[tuple[re.Pattern[str], int], ...]
    not_when: re.Pattern[str] | None
    trigger_phrases: tuple[str, ...]
    resolved_phrases: tuple[str, ...]
    scripts: tuple[Script, ...]
    path: Path


def normalize(text: str) -> str:
    """Lower case, NFKC (full-width to half-width), no spaces or punctuation: what the matcher sees."""
    import unicodedata

    folded = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\s\W_]+", "", folded)


def phrase_regex(phrase: str) -> str:
    """``*`` matches up to six characters; everything else literally, normalised like the messages."""
    pieces = [normalize(piece) for piece in phrase.split("*")]
    return GAP.join(re.escape(piece) for piece in pieces if piece)


def phrase_pattern(phrases: Iterable[str]) -> re.Pattern[str] | None:
    """One regex for a list of phrases, longest first."""
    alternatives = sorted({phrase_regex(p) for p in phrases if phrase_regex(p)}, key=len, reverse=True)
    return re.compile("|".join(alternatives)) if alternatives else None


def line_of(raw: str, script_id: str) -> int:
    """The line of a script's ``id = ...`` in a TOML file (errors name it; the playbook uses it too)."""
    match = re.search(rf'^\s*id\s*=\s*["\']{re.escape(script_id)}["\']', raw, re.MULTILINE)
    return raw.count("\n", 0, match.start()) + 1 if match else 1


def load_file(path: Path, model: type[BaseModel]) -> tuple[Any, str]:
    """One script file validated against ``model``, and its text; errors name the file."""
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TemplateError(f"{path}: not UTF-8 text (save the file as UTF-8)") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{path}: not valid TOML: {exc}") from None
    try:
        return model.model_validate(data), raw
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(
            ".".join(str(p) for p in e["loc"])
            + ": "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in errors
        )
        line = _table_line(raw, errors[0]["loc"])
        raise TemplateError(f"{path}:{line}: {problems}" if line else f"{path}: {problems}") from None


def _table_line(raw: str, loc: tuple[int | str, ...]) -> int | None:
    """The line of the ``[[name]]`` block an error points into (``scripts.3.title``: the fourth
    ``[[scripts]]``), so a script without an id is still found; None for top-level keys."""
    if len(loc) < 2 or not isinstance(loc[0], str) or not isinstance(loc[1], int):
        return None
    headers = list(re.finditer(rf"^[ \t]*\[\[[ \t]*{re.escape(loc[0])}[ \t]*\]\]", raw, re.MULTILINE))
    if loc[1] >= len(headers):
        return None
    return raw.count("\n", 0, headers[loc[1]].start()) + 1


def _scripts(
    path: Path,
    raw: str,
    items: Iterable[_ScriptFile],
    label: str,
    seen: dict[str, Path],
    known_stages: set[str] | None,
) -> list[Script]:
    """One file's scripts; ids unique across the library (``seen`` grows), stages known (None:
    any stage, when no pipeline was given)."""
    scripts = []
    for item in items:
        line = line_of(raw, item.id)
        if item.id in seen:
            raise TemplateError(f"{path}:{line}: script id {item.id!r} is also used in {seen[item.id]}")
        unknown = sorted(set(item.stages) - known_stages) if known_stages is not None else []
        if unknown:
            raise TemplateError(f"{path}:{line}: script {item.id!r} names unknown stages {unknown}")
        seen[item.id] = path
        scripts.append(Script(item.id, label, tuple(item.stages), item.text, path, line))
    return scripts


class ObjectionLibrary:
    def __init__(
        self,
        objections: dict[str, Objection],
        opt_out: re.Pattern[str] | None,
        signal_scripts: dict[str, tuple[Script, ...]] | None = None,
    ) -> None:
        self.objections = objections
        self.opt_out = opt_out
        self.signal_scripts = signal_scripts or {}

    @classmethod
    def load(cls, templates_root: Path, stage_keys: Iterable[str] = ()) -> ObjectionLibrary:
        """Scripts name process steps (:data:`PROCESS_STEPS`) or, given ``stage_keys``, the
        configured stages; any other name is an error (a typo would silently never match)."""
        folder = templates_root / FOLDER
        if not folder.is_dir():
            raise TemplateError(f"{folder}: objection library folder not found")
        configured = set(stage_keys)
        # the stage names scripts may use (None: any, when no pipeline was given)
        known_stages = configured | set(PROCESS_STEPS) if configured else None
        objections: dict[str, Objection] = {}
        script_ids: dict[str, Path] = {}
        for path in sorted(folder.glob("*.toml")):
            if path.name.startswith("_"):
                continue
            spec, raw = load_file(path, _ObjectionFile)
            if spec.label not in LABELS:
                raise TemplateError(f"{path}: label {spec.label!r} is not one of {', '.join(LABELS)}")
            if spec.label in objections:
                raise TemplateError(
                    f"{path}: label {spec.label!r} is already defined in {objections[spec.label].path}"
                )
            scripts = _scripts(path, raw, spec.scripts, spec.label, script_ids, known_stages)
            triggers = phrase_pattern(spec.triggers)
            singles = tuple(
                (re.compile(phrase_regex(t)), len(normalize(t.replace("*", ""))))
                for t in spec.triggers
                if phrase_regex(t)
            )
            objections[spec.label] = Objection(
                spec.label,
                spec.name,
                spec.priority,
                triggers,
                singles,
                phrase_pattern(spec.not_when),
                tuple(spec.triggers),
                tuple(spec.not_when),
                tuple(scripts),
                path,
            )
        missing = [label for label in LABELS if label not in objections]
        if missing:
            raise TemplateError(f"{folder}: no file for objection(s) {', '.join(missing)}")
        if (folder / "_none.toml").exists():  # older libraries: validated, no longer used
            load_file(folder / "_none.toml", _NoneFile)
        opt_out = None
        if (folder / "_opt_out.toml").exists():
            opt_out = phrase_pattern(load_file(folder / "_opt_out.toml", _OptOutFile)[0].phrases)
        signal_scripts: dict[str, tuple[Script, ...]] = {}
        for signal in SCRIPTED_SIGNALS:
            path = folder / f"_{signal}.toml"
            if not path.exists():
                continue
            signal_file, raw = load_file(path, _SignalScriptsFile)
            signal_scripts[signal] = tuple(
                _scripts(path, raw, signal_file.scripts, signal, script_ids, known_stages)
            )
        return cls(objections, opt_out, signal_scripts)

    def name(self, label: str) -> str:
        return self.objections[label].name

    def script(self, script_id: str) -> Script | None:
        for objection in self.objections.values():
            for script in objection.scripts:
                if script.id == script_id:
                    return script
        for scripts in self.signal_scripts.values():
            for script in scripts:
                if script.id == script_id:
                    return script
        return None

    def signal_script(self, signal: str, *stage: str) -> Script | None:
        """The reply a signal's alert offers at this stage (every name of it, as for
        :meth:`scripts_for`): one made for the stage, else a general one."""
        names = set(stage)
        scripts = self.signal_scripts.get(signal, ())
        fitting = [s for s in scripts if names & set(s.stages)] or [s for s in scripts if not s.stages]
        return fitting[0] if fitting else None

    def scripts_for(self, label: str, *stage: str) -> tuple[list[Script], list[Script]]:
        """(scripts made for this stage, general scripts for any stage) of one objection; ``stage``
        is every name of the stage (its key and process steps, :meth:`Pipeline.script_stages`)."""
        names = set(stage)
        scripts = self.objections[label].scripts
        return [s for s in scripts if names & set(s.stages)], [s for s in scripts if not s.stages]
