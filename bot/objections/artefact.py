"""What a fitted message model is made of, shared by training (``training``, NumPy) and reading
(``model``, plain Python): the artefact's format, its parts, the learner's settings and the
decision rule both apply to calibrated probabilities."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from bot.errors import SalesbotError
from bot.objections.labels import OBJECTIONS, SIGNALS

FORMAT_VERSION = 3  # 2: terms in a trie, rows in its key order, all heads in one array; 3: 8-bit rows
CLASSES = ("none", *OBJECTIONS)  # index 0: no objection
HEADS = len(CLASSES) + len(SIGNALS)  # the weights of a term: objection classes, then signals
CARD, ARRAYS = "model.json", "model.npz"


class ModelError(SalesbotError):
    """A model that is missing, unreadable, made by another version, or trained on another corpus."""


@dataclass(frozen=True)
class Settings:
    """The learner's settings (``MessageModel``'s parameters, recorded on the card)."""

    c_objection: float = 2.0
    c_signal: float = 0.5
    min_df: int = 2
    folds: int = 4
    max_false_alarms: float = 0.04
    opt_out_precision: float = 0.97
    opt_out_soft_precision: float = 0.95


@dataclass(frozen=True)
class Parts:
    """A fitted model exactly as the artefact stores it."""

    terms: bytes  # a marisa-trie, serialised; a term's key id is its row
    idf: bytes  # little-endian float32, a row each
    weights: bytes | memoryview  # int8, ``HEADS`` a row: a weight is its byte times its row's scale
    scales: bytes | memoryview  # little-endian float16, a row each
    intercept: tuple[float, ...]  # ``HEADS``
    temperature: float
    platt: tuple[tuple[float, float], ...]  # (slope, intercept) per signal
    thresholds: dict[str, float]  # per objection label and signal


def terms_digest(terms: bytes) -> str:
    """What the card records of the serialised trie (checked before marisa reads it: a damaged
    trie can crash its reader)."""
    return hashlib.sha256(terms).hexdigest()[:16]


def decide(
    probabilities: Sequence[float],
    signal_probabilities: Sequence[float],
    objection_thresholds: Sequence[float],
    signal_thresholds: Sequence[float],
) -> tuple[str | None, tuple[str, ...]]:
    """The objection (the likeliest, if its probability reaches its threshold) and the signals of
    one message, from its calibrated probabilities (``probabilities[0]``: no objection)."""
    objections = probabilities[1:]
    best = max(range(len(OBJECTIONS)), key=objections.__getitem__)  # the first of equals
    label = OBJECTIONS[best] if objections[best] >= objection_thresholds[best] else None
    signals = tuple(
        signal
        for signal, p, t in zip(SIGNALS, signal_probabilities, signal_thresholds, strict=True)
        if p >= t
    )
    if "opt_out" in signals:  # no contact at all covers "less contact"
        signals = tuple(s for s in signals if s != "opt_out_soft")
    return label, signals
