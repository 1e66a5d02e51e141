"""The learned reading of a customer message: which objection (if any) and which signals.

``MessageModel`` follows scikit-learn's fit/predict shape. ``fit`` (``training``: scikit-learn,
NumPy) learns TF-IDF weighted features (``features.tokens``) with linear support vector machines:
one one-vs-rest model for the objection (nine labels or none) and one binary model per signal,
calibrated and thresholded on out-of-fold predictions where each fold holds out whole verticals
(see ``training``).

The fitted model is saved as NumPy arrays plus a JSON card (version, corpus fingerprint,
thresholds, metrics); saving is byte-for-byte deterministic. Reading a message needs neither
NumPy nor scikit-learn: the running bot never imports them (some 15 MB and more of a process
that a bare Wechaty bot runs in 80, issue 20). Loaded, the model is the artefact's bytes as they
are: its terms in a MARISA trie (``marisa-trie``: about 3 bytes a term; a term's column is its
key id in the trie), their idf in single precision and the heads' weights in 8 bits with a scale
per term (half precision): one row of every head's weight per term. A message's dozens of known
terms cost a row each, summed in plain Python: ~140 us a message against NumPy's ~80 (p99 under
1 ms, long pasted messages), within the noise of the bot's CPU per customer text (README, "Memory").
"""

from __future__ import annotations

import json
import math
import operator
import struct
import sys
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

import marisa_trie

from bot.objections.artefact import (
    ARRAYS,
    CARD,
    CLASSES,
    FORMAT_VERSION,
    HEADS,
    ModelError,
    Parts,
    Settings,
    decide,
    terms_digest,
)
from bot.objections.corpus import Message
from bot.objections.features import CHAR_SIZES, FEATURES_VERSION, clean, marked, word_tokens
from bot.objections.labels import OBJECTIONS, SIGNALS
from bot.objections.npz import NpzError, Stored, read_npz

PACKAGED_MODEL = Path(__file__).parent / "data" / "model"
_WEIGHTS, _SCALE = f"{HEADS}b", "e"  # a term's weights as saved (a signed byte per head), its scale
# in memory a term's row holds both (packed at load): one look-up a term instead of two
_ROW = struct.Struct(f"<{_WEIGHTS}{_SCALE}")
_second = operator.itemgetter(1)
_known = partial(operator.is_not, None)
_SUBLINEAR = [0.0, *(1.0 + math.log(tf) for tf in range(1, 64))]  # 1 + log(tf), as the vectorizer

# ``features.CHAR_SIZES`` are every size from 1 to this one (``MessageModel._rows`` relies on it;
# tests/test_model_memory.py compares its rows with ``features.tokens`` on the whole corpus)
_LONGEST = max(CHAR_SIZES)

Probabilities = tuple[float, ...]


@dataclass(frozen=True)
class Reading:
    objection: str | None
    confidence: float  # calibrated probability of ``objection`` (of "no objection" when None)
    signals: tuple[str, ...]
    objection_probabilities: dict[str, float] = field(default_factory=dict)
    signal_probabilities: dict[str, float] = field(default_factory=dict)


def softmax(scores: Sequence[float]) -> Probabilities:
    top = max(scores)
    exp = [math.exp(score - top) for score in scores]
    total = math.fsum(exp)
    return tuple(value / total for value in exp)


def sigmoid(value: float) -> float:
    """The logistic function, without overflow at either end."""
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)


class MessageModel:
    """Reads one customer message: ``fit`` on labelled messages, ``predict`` on texts."""

    def __init__(
        self,
        *,
        c_objection: float = Settings.c_objection,
        c_signal: float = Settings.c_signal,
        min_df: int = Settings.min_df,
        folds: int = Settings.folds,
        max_false_alarms: float = Settings.max_false_alarms,
        opt_out_precision: float = Settings.opt_out_precision,
        opt_out_soft_precision: float = Settings.opt_out_soft_precision,
    ) -> None:
        """The learner's settings (``artefact.Settings`` holds their defaults)."""
        self.c_objection = c_objection
        self.c_signal = c_signal
        self.min_df = min_df
        self.folds = folds
        self.max_false_alarms = max_false_alarms
        self.opt_out_precision = opt_out_precision
        self.opt_out_soft_precision = opt_out_soft_precision
        self.card: dict[str, Any] = {}
        self._terms = marisa_trie.Trie()
        self._idf = array("f")
        self._rows_of = bytearray()  # per term: its weights (a byte a head) and their scale (float16)
        self._intercept: tuple[float, ...] = (0.0,) * HEADS
        self._temperature = 1.0
        self._platt: tuple[tuple[float, float], ...] = ((1.0, 0.0),) * len(SIGNALS)
        self._objection_thresholds: tuple[float, ...] = (0.5,) * len(OBJECTIONS)
        self._signal_thresholds: tuple[float, ...] = (0.5,) * len(SIGNALS)

    def params(self) -> dict[str, Any]:
        return {
            "c_objection": self.c_objection,
            "c_signal": self.c_signal,
            "min_df": self.min_df,
            "folds": self.folds,
            "max_false_alarms": self.max_false_alarms,
            "opt_out_precision": self.opt_out_precision,
            "opt_out_soft_precision": self.opt_out_soft_precision,
        }

    # -- training (scikit-learn and NumPy, imported only here) ------------------------------------

    def fit(self, messages: Sequence[Message], corpus: str = "") -> MessageModel:
        """Learn from ``messages`` (their ``vertical`` groups the folds); ``corpus`` is the
        fingerprint recorded on the card (see ``corpus.corpus_digest``). The fitted model reads
        exactly as its saved artefact will."""
        from bot.objections.training import fit

        self.card, parts = fit(Settings(**self.params()), messages, corpus)
        self._adopt(parts)
        return self

    def out_of_fold(self, messages: Sequence[Message]) -> tuple[Any, Any]:
        """Calibrated (objection classes, signals) probabilities of every message (NumPy arrays),
        each read by a model that never saw its vertical: what ``fit`` tunes on, and what a label
        audit ranks by."""
        from bot.objections.training import out_of_fold

        return out_of_fold(Settings(**self.params()), messages)

    def _adopt(self, parts: Parts) -> None:
        """Take ``parts`` as this model's, after checking what would make a reading fail later."""
        try:
            terms = marisa_trie.Trie().frombytes(parts.terms)
        except RuntimeError:  # marisa's own message names its C++ sources
            raise ValueError("damaged term index") from None
        idf = array("f", parts.idf)
        if sys.byteorder == "big":
            idf.byteswap()
        rows = len(terms)
        if terms.get("") is not None:  # every prefix walk would find it
            raise ValueError("an empty term")
        weights, scales = memoryview(parts.weights), memoryview(parts.scales)
        if len(idf) != rows or len(weights) != rows * HEADS or len(scales) != rows * 2:
            raise ValueError("the weights do not match the terms")
        if len(parts.intercept) != HEADS or len(parts.platt) != len(SIGNALS):
            raise ValueError("the heads do not match the labels")
        if not (math.isfinite(parts.temperature) and parts.temperature > 0):
            raise ValueError(f"temperature {parts.temperature}")
        if not all(math.isfinite(value) and value > 0 for value in idf):  # a term must weigh something
            raise ValueError("an idf that is not a positive number")
        packed = bytearray(rows * _ROW.size)
        for byte in range(HEADS):  # a column at a time: no second copy of the weights
            packed[byte :: _ROW.size] = bytes(weights[byte::HEADS])
        for byte in range(2):
            packed[HEADS + byte :: _ROW.size] = bytes(scales[byte::2])
        self._terms, self._idf, self._rows_of = terms, idf, packed
        self._intercept = tuple(map(float, parts.intercept))
        self._temperature = float(parts.temperature)
        self._platt = tuple((float(a), float(b)) for a, b in parts.platt)
        self._objection_thresholds = tuple(float(parts.thresholds[label]) for label in OBJECTIONS)
        self._signal_thresholds = tuple(float(parts.thresholds[signal]) for signal in SIGNALS)

    def parts(self) -> Parts:
        """The fitted model as the artefact stores it."""
        idf = array("f", self._idf)
        if sys.byteorder == "big":
            idf.byteswap()
        rows, packed = len(self._terms), self._rows_of
        weights, scales = bytearray(rows * HEADS), bytearray(rows * 2)
        for byte in range(HEADS):
            weights[byte::HEADS] = packed[byte :: _ROW.size]
        for byte in range(2):
            scales[byte::2] = packed[HEADS + byte :: _ROW.size]
        return Parts(
            self._terms.tobytes(),
            idf.tobytes(),
            bytes(weights),
            bytes(scales),
            self._intercept,
            self._temperature,
            self._platt,
            {
                **dict(zip(OBJECTIONS, self._objection_thresholds, strict=True)),
                **dict(zip(SIGNALS, self._signal_thresholds, strict=True)),
            },
        )

    # -- predicting -------------------------------------------------------------------------------

    def __len__(self) -> int:
        """How many terms the model knows."""
        return len(self._terms)

    def _rows(self, text: str) -> Counter[int]:
        """How often each term of the model occurs among ``features.tokens(text)``. The character
        n-grams of sizes 1 to 3 starting at a position are the prefixes of the 3-gram there, so one
        trie walk a position finds them all (a third of the look-ups of one per n-gram)."""
        cleaned = clean(text)
        chars = marked(cleaned)
        longest = [chars[i : i + _LONGEST] for i in range(len(chars))]
        # C iterators all the way (a generator here cost a third of a long message's time)
        counts = Counter(map(_second, chain.from_iterable(map(self._terms.iter_prefixes_with_ids, longest))))
        counts.update(filter(_known, map(self._terms.get, word_tokens(cleaned))))
        return counts

    def scores(self, text: str) -> tuple[float, ...]:
        """Every head's raw score of one message: TF-IDF as the vectorizer computed it (sublinear
        counts, idf, unit length) times the heads' weights, plus their intercepts."""
        counts = self._rows(text)
        idf = self._idf
        sublinear = _SUBLINEAR
        values = [(sublinear[tf] if tf < 64 else 1.0 + math.log(tf)) * idf[row] for row, tf in counts.items()]
        norm = math.sqrt(math.fsum(value * value for value in values))
        if not norm:  # no term of the model (every idf is positive: see ``_adopt``)
            return self._intercept
        packed, unpack, size = self._rows_of, _ROW.unpack_from, _ROW.size
        rows = [unpack(packed, row * size) for row in counts]
        # a term's share of the message times its row's scale: its bytes then weigh as floats
        shares = [value / norm * row[HEADS] for value, row in zip(values, rows, strict=True)]
        heads = zip(*rows, strict=True)  # each head's weights of these terms, then their scales
        return tuple(
            sum(map(operator.mul, shares, head)) + bias
            for head, bias in zip(heads, self._intercept, strict=False)  # the scales' column is not a head
        )

    def probabilities(self, text: str) -> tuple[Probabilities, Probabilities]:
        """Calibrated (objection classes, signals) probabilities of one message."""
        scores = self.scores(text)
        objection = softmax([score / self._temperature for score in scores[: len(CLASSES)]])
        signals = tuple(
            sigmoid(score * slope + bias)
            for score, (slope, bias) in zip(scores[len(CLASSES) :], self._platt, strict=True)
        )
        return objection, signals

    def decide(
        self, probabilities: Sequence[float], signal_probabilities: Sequence[float]
    ) -> tuple[str | None, tuple[str, ...]]:
        """The objection (if its probability reaches its threshold) and the signals of one message."""
        return decide(
            probabilities, signal_probabilities, self._objection_thresholds, self._signal_thresholds
        )

    def predict_one(self, text: str) -> Reading:
        probabilities, signal_probabilities = self.probabilities(text)
        label, signals = self.decide(probabilities, signal_probabilities)
        confidence = probabilities[CLASSES.index(label)] if label else probabilities[0]
        return Reading(
            label,
            round(confidence, 3),
            signals,
            dict(zip(CLASSES, probabilities, strict=True)),
            dict(zip(SIGNALS, signal_probabilities, strict=True)),
        )

    def predict(self, texts: Sequence[str]) -> list[Reading]:
        return [self.predict_one(text) for text in texts]

    def threshold(self, label: str) -> float:
        if label in OBJECTIONS:
            return self._objection_thresholds[OBJECTIONS.index(label)]
        return self._signal_thresholds[SIGNALS.index(label)]

    # -- the artefact -----------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """``model.npz`` (arrays) and ``model.json`` (the card); the same model gives the same bytes."""
        from bot.objections.training import write_artefact

        if not self.card:
            raise ModelError("the model is not fitted")
        write_artefact(self.card, self.parts(), folder)

    @classmethod
    def load(cls, folder: Path) -> MessageModel:
        card_path, arrays_path = folder / CARD, folder / ARRAYS
        if not card_path.exists() or not arrays_path.exists():
            raise ModelError(f"{folder}: no trained model here; run `salesbot objections train`")
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
            arrays = read_npz(arrays_path)
        except (OSError, ValueError) as exc:  # ValueError: NpzError, JSON
            raise ModelError(f"{folder}: unreadable model ({exc}); run `salesbot objections train`") from None
        if not isinstance(card, dict):
            raise ModelError(f"{card_path}: not a model card; run `salesbot objections train`")
        if card.get("format") != FORMAT_VERSION or card.get("features") != FEATURES_VERSION:
            raise ModelError(
                f"{card_path}: made by another salesbot version; run `salesbot objections train`"
            )
        if tuple(card.get("classes", ())) != CLASSES or tuple(card.get("signals", ())) != SIGNALS:
            raise ModelError(f"{card_path}: trained for other labels; run `salesbot objections train`")
        try:
            model = cls(**card["params"])
            model._adopt(_parts(card, arrays))
            model.card = card
            model.predict_one("你好")  # the segmenter loads its dictionary now, not on a customer's message
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ModelError(f"{folder}: incomplete model ({exc}); run `salesbot objections train`") from None
        return model

    def check_corpus(self, corpus: str, where: Path) -> None:
        """Refuse a model trained on another corpus than the one installed (a stale model)."""
        if self.card.get("corpus") != corpus:
            raise ModelError(
                f"{where / CARD}: stale model: trained on corpus {self.card.get('corpus') or '?'}, the "
                f"installed corpus is {corpus}; run `salesbot objections train`"
            )


def _parts(card: dict[str, Any], arrays: dict[str, Stored]) -> Parts:
    """The model's parts from its card and its arrays, each array checked for its type and shape."""

    def exactly(name: str, dtype: str, shape: tuple[int, ...]) -> memoryview:
        stored = arrays[name]
        if stored.dtype != dtype or stored.shape != shape:
            raise NpzError(f"{name}: {stored.dtype} {stored.shape}, expected {dtype} {shape}")
        return stored.data

    rows = arrays["idf"].shape[0] if len(arrays["idf"].shape) == 1 else -1
    terms = bytes(exactly("terms", "|u1", (len(arrays["terms"].data),)))
    if terms_digest(terms) != card["terms_sha256"]:  # a damaged trie can crash its reader
        raise NpzError("terms: not the ones the card names")
    intercept = struct.unpack(f"<{HEADS}d", exactly("intercept", "<f8", (HEADS,)))
    return Parts(
        terms=terms,
        idf=bytes(exactly("idf", "<f4", (rows,))),
        weights=exactly("weights", "|i1", (rows, HEADS)),
        scales=exactly("scales", "<f2", (rows,)),
        intercept=intercept,
        temperature=float(card["temperature"]),
        platt=tuple((float(a), float(b)) for a, b in card["platt"]),
        thresholds={name: float(card["thresholds"][name]) for name in (*OBJECTIONS, *SIGNALS)},
    )
