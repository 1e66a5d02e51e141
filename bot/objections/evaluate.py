"""Scores readings against labels: per-label precision/recall/F1 and macro-F1 over the nine
objections, the share of no-objection messages flagged, and P/R/F1 per signal. Leave-one-vertical-
out (``lovo``) trains without a vertical and scores on it: the estimate for a business the corpus
never saw."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.objections.corpus import Message, deduplicate, near_duplicates
from bot.objections.labels import OBJECTIONS, SIGNALS


class Reads(Protocol):
    def read(self, text: str) -> tuple[str | None, tuple[str, ...]]: ...


@dataclass(frozen=True)
class LabelScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int


@dataclass(frozen=True)
class Report:
    scores: list[LabelScore]
    macro_f1: float
    false_positive_rate: float
    none_support: int
    total: int
    signals: list[LabelScore] = field(default_factory=list)
    mistakes: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    def signal(self, name: str) -> LabelScore:
        return next(s for s in self.signals if s.label == name)

    def label(self, name: str) -> LabelScore:
        return next(s for s in self.scores if s.label == name)

    def text(self) -> str:
        head = f"{'label':<14} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>5}"
        lines = ["objections", head]
        lines += [_line(s) for s in self.scores]
        lines.append(f"macro-F1 (9 objections): {self.macro_f1:.3f}")
        lines.append(
            f"false-positive rate on no-objection messages: {self.false_positive_rate:.3f} "
            f"({self.none_support} messages)"
        )
        lines += ["", "signals", head]
        lines += [_line(s) for s in self.signals]
        lines.append(f"messages: {self.total}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        def rounded(s: LabelScore) -> dict[str, Any]:
            return {
                "precision": round(s.precision, 3),
                "recall": round(s.recall, 3),
                "f1": round(s.f1, 3),
                "n": s.support,
            }

        return {
            "macro_f1": round(self.macro_f1, 3),
            "false_positive_rate": round(self.false_positive_rate, 3),
            "messages": self.total,
            "objections": {s.label: rounded(s) for s in self.scores},
            "signals": {s.label: rounded(s) for s in self.signals},
        }


def _line(s: LabelScore) -> str:
    if not s.support and not s.predicted:  # nothing to score: no message has or was read with it
        return f"{s.label:<14} {'-':>9} {'-':>7} {'-':>6} {s.support:>5}"
    return f"{s.label:<14} {s.precision:>9.3f} {s.recall:>7.3f} {s.f1:>6.3f} {s.support:>5}"


def _score(label: str, pairs: Sequence[tuple[bool, bool]]) -> LabelScore:
    tp = sum(1 for gold, guess in pairs if gold and guess)
    predicted = sum(1 for _, guess in pairs if guess)
    support = sum(1 for gold, _ in pairs if gold)
    precision = tp / predicted if predicted else 0.0
    recall = tp / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return LabelScore(label, precision, recall, f1, support, predicted)


def score(results: Iterable[tuple[Message, str | None, tuple[str, ...]]]) -> Report:
    """``results``: (labelled message, predicted objection, predicted signals)."""
    rows = list(results)
    scores = [_score(label, [(m.objection == label, p == label) for m, p, _ in rows]) for label in OBJECTIONS]
    signals = [_score(signal, [(signal in m.signals, signal in s) for m, _, s in rows]) for signal in SIGNALS]
    nones = [p for m, p, _ in rows if m.objection is None]
    false_positive_rate = sum(1 for p in nones if p is not None) / len(nones) if nones else 0.0
    macro = sum(s.f1 for s in scores) / len(scores)
    mistakes = [(m.text, m.objection, p) for m, p, _ in rows if m.objection != p]
    return Report(scores, macro, false_positive_rate, len(nones), len(rows), signals, mistakes)


def evaluate(reader: Reads, messages: Iterable[Message]) -> Report:
    return score((m, *reader.read(m.text)) for m in messages)


@dataclass(frozen=True)
class FoldResult:
    group: str  # the held-out vertical, or writer (file)
    report: Report
    dropped: int  # held-out messages left out as near duplicates of training messages


def leave_one_group_out(
    messages: Sequence[Message],
    train: Callable[[Sequence[Message]], Reads],
    group: Callable[[Message], str],
    *,
    only: Callable[[str], bool] = lambda _group: True,
    near: float = 0.7,
    progress: Callable[[str], None] = lambda _line: None,
) -> tuple[list[FoldResult], Report]:
    """Train without each group in turn (``train`` builds a reader from messages) and score on it,
    minus its near duplicates of training messages. Returns each fold and the pooled report."""
    messages = deduplicate(messages)
    folds: list[FoldResult] = []
    pooled: list[tuple[Message, str | None, tuple[str, ...]]] = []
    for name in sorted({group(m) for m in messages}):
        if not only(name):
            continue
        training = [m for m in messages if group(m) != name]
        held_out = [m for m in messages if group(m) == name]
        dropped = near_duplicates(training, held_out, near)
        test = [m for i, m in enumerate(held_out) if i not in dropped]
        reader = train(training)
        results = [(m, *reader.read(m.text)) for m in test]
        pooled += results
        folds.append(FoldResult(name, score(results), len(dropped)))
        progress(f"{name}: macro-F1 {folds[-1].report.macro_f1:.3f}")
    return folds, score(pooled)


def leave_one_vertical_out(
    messages: Sequence[Message], train: Callable[[Sequence[Message]], Reads], **options: Any
) -> tuple[list[FoldResult], Report]:
    """A business the corpus never saw: train without each vertical, score on it."""
    return leave_one_group_out(messages, train, lambda m: m.vertical, **options)


def leave_one_writer_out(
    messages: Sequence[Message], train: Callable[[Sequence[Message]], Reads], **options: Any
) -> tuple[list[FoldResult], Report]:
    """New customers of a business the corpus covers: train without one writer's file of a vertical
    that has another writer's file (so the vertical is seen, the writer's phrasing is not)."""
    writers: dict[str, set[str]] = {}
    for m in messages:
        writers.setdefault(m.vertical, set()).add(m.source)
    shared = {m.source for m in messages if len(writers[m.vertical]) > 1}
    return leave_one_group_out(messages, train, lambda m: m.source, only=shared.__contains__, **options)


def folds_text(title: str, folds: Sequence[FoldResult], pooled: Report) -> str:
    head = f"{'held out':<18} {'n':>5} {'macro-F1':>8} {'FP rate':>7}" + "".join(
        f" {s[:12]:>12}" for s in SIGNALS
    )
    lines = [f"{title} (signal columns are F1)", head]
    for fold in folds:
        r = fold.report
        lines.append(
            f"{fold.group:<18} {r.total:>5} {r.macro_f1:>8.3f} {r.false_positive_rate:>7.3f}"
            + "".join(f" {r.signal(s).f1:>12.3f}" for s in SIGNALS)
        )
    lines += ["", "pooled over every held-out fold:", pooled.text()]
    return "\n".join(lines)
