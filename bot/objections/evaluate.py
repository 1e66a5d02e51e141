"""Scores the classifier on labelled messages: per-label precision/recall/F1, macro-F1 over the
nine labels, and the false-positive rate on messages that are not objections."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import SalesbotError
from bot.objections.classifier import Classifier
from bot.objections.library import LABELS


@dataclass(frozen=True)
class LabelScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Report:
    scores: list[LabelScore]
    macro_f1: float
    false_positive_rate: float
    none_support: int
    total: int
    mistakes: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"{'label':<12} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>4}"]
        for s in self.scores:
            lines.append(f"{s.label:<12} {s.precision:>9.3f} {s.recall:>7.3f} {s.f1:>6.3f} {s.support:>4}")
        lines.append(f"macro-F1 (9 labels): {self.macro_f1:.3f}")
        lines.append(
            f"false-positive rate on non-objections: {self.false_positive_rate:.3f} "
            f"({self.none_support} messages)"
        )
        lines.append(f"messages: {self.total}")
        return "\n".join(lines)


def read_labelled(path: Path) -> list[tuple[str, str | None]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, label = item["text"], item["label"]
        except (ValueError, KeyError, TypeError):
            raise SalesbotError(f'{path}:{number}: expected {{"text": ..., "label": ...}}') from None
        if label is not None and label not in LABELS:
            raise SalesbotError(f"{path}:{number}: unknown label {label!r}")
        rows.append((str(text), label))
    return rows


def evaluate(classifier: Classifier, rows: Iterable[tuple[str, str | None]]) -> Report:
    pairs = [(text, gold, classifier.classify(text).label) for text, gold in rows]
    scores = []
    for label in LABELS:
        tp = sum(1 for _, g, p in pairs if g == label and p == label)
        predicted = sum(1 for _, _, p in pairs if p == label)
        support = sum(1 for _, g, _ in pairs if g == label)
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append(LabelScore(label, precision, recall, f1, support))
    nones = [p for _, g, p in pairs if g is None]
    fp_rate = sum(1 for p in nones if p is not None) / len(nones) if nones else 0.0
    macro = sum(s.f1 for s in scores) / len(scores)
    mistakes = [(t, g, p) for t, g, p in pairs if g != p]
    return Report(scores, macro, fp_rate, len(nones), len(pairs), mistakes)
