"""What a rep types to pick a segment for a broadcast: ``意向 预算:20-30万 沉默7天 <text>``.

The leading words are the filter (a stage, a tag, a lifecycle state, silent days, an account, or
全部 for everyone); the first word that is none of these starts the message. Pure: the pipeline
and the tag vocabulary are given; nothing is read from the database here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.domain.display import LIFECYCLE_NAMES
from bot.domain.limits import MAX_ECHO_CHARS, clip
from bot.domain.stages import Pipeline
from bot.domain.tags import COLONS, Tag, TagRejected, TagVocabulary

EVERYONE = ("全部", "所有客户", "all")
# the longest silence a filter may ask for (a typo of 7000 days picks everyone)
MAX_SILENT_DAYS = 3650
_SILENT = re.compile(r"沉默(\d{1,6})天(?:以上)?")
_PREFIXES = {
    "阶段": "stage",
    "stage": "stage",
    "标签": "tag",
    "tag": "tag",
    "生命周期": "lifecycle",
    "状态": "lifecycle",
    "沉默": "silent",
    "账号": "account",
    "account": "account",
}
_LIFECYCLES = {name: key for key, name in LIFECYCLE_NAMES.items()} | {key: key for key in LIFECYCLE_NAMES}


class SegmentError(ValueError):
    """A filter word that names a filter but a value that does not exist (message for the rep)."""


@dataclass(frozen=True)
class Segment:
    stages: tuple[str, ...] = ()
    tags: tuple[Tag, ...] = ()
    lifecycles: tuple[str, ...] = ()
    silent_days: int = 0
    accounts: tuple[str, ...] = ()
    everyone: bool = False
    words: tuple[str, ...] = field(default=(), compare=False)  # the filter as typed

    @property
    def empty(self) -> bool:
        return not (self.everyone or self.stages or self.tags or self.lifecycles or self.silent_days)


def parse_segment(text: str, pipeline: Pipeline, vocabulary: TagVocabulary) -> tuple[Segment, str]:
    """The filter at the start of ``text`` and the rest (the message, spacing kept)."""
    stages: list[str] = []
    tags: list[Tag] = []
    lifecycles: list[str] = []
    accounts: list[str] = []
    silent = 0
    everyone = False
    words: list[str] = []
    rest = text.strip()
    while rest:
        word, _, after = rest.partition(" ")
        word = word.strip()
        read = _read(word, pipeline, vocabulary)
        if read is None:
            break
        what, value = read
        if what == "everyone":
            everyone = True
        elif what == "stage":
            stages.append(str(value))
        elif what == "tag":
            assert isinstance(value, Tag)
            tags.append(value)
        elif what == "lifecycle":
            lifecycles.append(str(value))
        elif what == "silent":
            assert isinstance(value, int)
            silent = value
        else:
            accounts.append(str(value))
        words.append(word)
        rest = after.strip()
    segment = Segment(
        tuple(dict.fromkeys(stages)),
        tuple(dict.fromkeys(tags)),
        tuple(dict.fromkeys(lifecycles)),
        silent,
        tuple(dict.fromkeys(accounts)),
        everyone,
        tuple(words),
    )
    return segment, rest


def _read(word: str, pipeline: Pipeline, vocabulary: TagVocabulary) -> tuple[str, object] | None:
    """What one word filters by, or None when it is not a filter word (the message starts)."""
    if word.casefold() in EVERYONE:
        return "everyone", True
    silent = _SILENT.fullmatch(word)
    if silent:
        return "silent", _days(silent.group(1))
    for colon in COLONS:
        name, sep, value = word.partition(colon)
        what = _PREFIXES.get(name.strip().casefold()) if sep else None
        if what is not None:
            return what, _value(what, value.strip(), pipeline, vocabulary)
    if word in _LIFECYCLES:
        return "lifecycle", _LIFECYCLES[word]
    stage = pipeline.resolve(word) if word else None
    if stage is not None:
        return "stage", stage
    if any(colon in word for colon in COLONS):
        try:
            tag = vocabulary.parse(word)
        except TagRejected as exc:
            raise SegmentError(str(exc)) from None
        if tag.group:  # a configured group (预算:20-30万); other words with a colon start the text
            return "tag", tag
    return None


def _value(what: str, value: str, pipeline: Pipeline, vocabulary: TagVocabulary) -> object:
    if not value:
        raise SegmentError("筛选条件的冒号后面要写上内容，如 阶段:意向、标签:预算:20-30万、沉默:7")
    if what == "stage":
        stage = pipeline.resolve(value)
        if stage is None:
            names = "、".join(s.label for s in pipeline.stages)
            raise SegmentError(f"没有“{clip(value, MAX_ECHO_CHARS)}”这个阶段，可选：{names}")
        return stage
    if what == "tag":
        try:
            return vocabulary.parse(value)
        except TagRejected as exc:
            raise SegmentError(str(exc)) from None
    if what == "lifecycle":
        if value not in _LIFECYCLES:
            names = "、".join(LIFECYCLE_NAMES.values())
            raise SegmentError(f"没有“{clip(value, MAX_ECHO_CHARS)}”这个客户状态，可选：{names}")
        return _LIFECYCLES[value]
    if what == "silent":
        digits = value.removesuffix("天以上").removesuffix("天")
        if not digits.isdigit():
            raise SegmentError(f"沉默天数请写整数，如 沉默:7 或 沉默7天（最多 {MAX_SILENT_DAYS} 天）")
        return _days(digits)
    return value  # an account id, checked against the rep's scope by the service


def _days(digits: str) -> int:
    days = int(digits)
    if not 1 <= days <= MAX_SILENT_DAYS:
        raise SegmentError(f"沉默天数请写 1 到 {MAX_SILENT_DAYS} 之间的整数，如 沉默7天")
    return days
