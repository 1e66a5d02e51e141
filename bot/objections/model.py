"""The learned reading of a customer message: which objection (if any) and which signals.

``MessageModel`` follows scikit-learn's fit/predict shape. ``fit`` (scikit-learn, training only)
learns TF-IDF weighted features (``features.tokens``) with linear support vector machines: one
one-vs-rest model for the objection (nine labels or none) and one binary model per signal
(``bench/model_choice.py`` measured them against logistic regression and fastText on the same
folds: as good or better, and ten times faster to train than logistic regression). Scores become
calibrated probabilities, and thresholds are chosen, on out-of-fold predictions where each fold
holds out whole verticals, so both reflect messages from a business the model has not seen:

- objection: temperature scaling of the softmax over the ten scores; a label is read only when its
  probability reaches that label's threshold (chosen to maximise macro-F1 while flagging at most
  ``max_false_alarms`` of the messages that carry no objection);
- signals: Platt scaling per signal; thresholds maximise F1, except ``opt_out``, whose threshold is
  the lowest that keeps precision at ``opt_out_precision`` (a wrong opt-out silences a customer), and
  ``opt_out_soft``, held to ``opt_out_soft_precision`` (a wrong one holds a customer's pushes).

The fitted model is saved as plain arrays plus a JSON card (version, corpus fingerprint,
thresholds, metrics), so predicting needs only NumPy: loading takes a fraction of a second and one
message costs about a tenth of a millisecond. Saving is byte-for-byte deterministic. Loaded, the
model keeps the artefact's half-precision weights and a compact vocabulary
(``vocabulary.Vocabulary``): about 80 bytes a term in the running bot (some 15 MB for the 193,000
terms shipped on 2026-12-04) instead of about 360 for a dict of terms and float64 weights, with the
same probabilities to the last bit (tests/test_model_memory.py).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.errors import SalesbotError
from bot.objections.corpus import Message
from bot.objections.features import FEATURES_VERSION, tokens
from bot.objections.labels import OBJECTIONS, SIGNALS
from bot.objections.vocabulary import Vocabulary

FORMAT_VERSION = 1
CLASSES = ("none", *OBJECTIONS)  # index 0: no objection
CARD, ARRAYS = "model.json", "model.npz"
PACKAGED_MODEL = Path(__file__).parent / "data" / "model"

FloatArray = npt.NDArray[np.float64]
ABSENT = -10.0  # the score of a class the training data never showed


class ModelError(SalesbotError):
    """A model that is missing, unreadable, made by another version, or trained on another corpus."""


@dataclass(frozen=True)
class Reading:
    objection: str | None
    confidence: float  # calibrated probability of ``objection`` (of "no objection" when None)
    signals: tuple[str, ...]
    objection_probabilities: dict[str, float] = field(default_factory=dict)
    signal_probabilities: dict[str, float] = field(default_factory=dict)


def _identity(document: list[str]) -> list[str]:
    return document


def _softmax(scores: FloatArray) -> FloatArray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: FloatArray = exp / exp.sum(axis=-1, keepdims=True)
    return result


def _sigmoid(values: FloatArray) -> FloatArray:
    result: FloatArray = 1.0 / (1.0 + np.exp(-values))
    return result


class _Constant:
    """A signal head for training data that never shows the signal: always the same score."""

    def __init__(self, features: int, score: float) -> None:
        self.coef_ = np.zeros((1, features))
        self.intercept_ = np.array([score])

    def decision_function(self, x: Any) -> FloatArray:
        return np.full(x.shape[0], self.intercept_[0])


@dataclass
class _Linear:
    """One fitted set of linear heads over one vocabulary (training-time, scikit-learn objects)."""

    vectorizer: Any
    objection: Any
    signals: list[Any]

    def scores(self, documents: Sequence[list[str]]) -> tuple[FloatArray, FloatArray]:
        x = self.vectorizer.transform(documents)
        signal_scores = np.column_stack([head.decision_function(x) for head in self.signals])
        present = np.asarray(self.objection.decision_function(x))
        if present.ndim == 1:  # two classes: one score, for the second
            present = np.column_stack([-present, present])
        scores = np.full((x.shape[0], len(CLASSES)), ABSENT)  # a class the fold never saw
        scores[:, self.objection.classes_] = present
        return scores, signal_scores

    def objection_weights(self) -> tuple[FloatArray, FloatArray]:
        """(features x classes) weights and class intercepts, with absent classes never chosen."""
        coef = np.zeros((len(self.vectorizer.vocabulary_), len(CLASSES)))
        intercept = np.full(len(CLASSES), ABSENT)
        weights, bias = self.objection.coef_, self.objection.intercept_
        if len(self.objection.classes_) == 2:  # two classes: one weight vector, for the second
            weights, bias = np.vstack([-weights, weights]), np.concatenate([-bias, bias])
        coef[:, self.objection.classes_] = weights.T
        intercept[self.objection.classes_] = bias
        return coef, intercept


class MessageModel:
    """Reads one customer message: ``fit`` on labelled messages, ``predict`` on texts."""

    def __init__(
        self,
        *,
        c_objection: float = 2.0,
        c_signal: float = 0.5,
        min_df: int = 2,
        folds: int = 4,
        max_false_alarms: float = 0.04,
        opt_out_precision: float = 0.97,
        opt_out_soft_precision: float = 0.95,
    ) -> None:
        self.c_objection = c_objection
        self.c_signal = c_signal
        self.min_df = min_df
        self.folds = folds
        self.max_false_alarms = max_false_alarms
        self.opt_out_precision = opt_out_precision
        self.opt_out_soft_precision = opt_out_soft_precision
        self.card: dict[str, Any] = {}
        self._vocabulary = Vocabulary("")
        self._idf: FloatArray = np.zeros(0)
        # both heads side by side, one row per term: objection classes, then signals. Fitted: float64;
        # loaded: the artefact's float16 (a quarter of the memory), each row read as float64 exactly
        self._weights: npt.NDArray[np.floating[Any]] = np.zeros((0, len(CLASSES) + len(SIGNALS)))
        self._intercept: FloatArray = np.zeros(len(CLASSES) + len(SIGNALS))
        self._temperature = 1.0
        self._platt: FloatArray = np.tile([1.0, 0.0], (len(SIGNALS), 1))
        self._objection_thresholds: FloatArray = np.full(len(OBJECTIONS), 0.5)
        self._signal_thresholds: FloatArray = np.full(len(SIGNALS), 0.5)

    # -- training ---------------------------------------------------------------------------------

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

    def _fit_linear(self, documents: Sequence[list[str]], y: Any, y_signals: Any) -> _Linear:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        vectorizer = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, min_df=self.min_df)
        x = vectorizer.fit_transform(documents)
        objection = LinearSVC(C=self.c_objection, random_state=0).fit(x, y)
        signals: list[Any] = []
        for column in range(len(SIGNALS)):
            if y_signals[:, column].min() == y_signals[:, column].max():  # never (or always) seen
                signals.append(_Constant(x.shape[1], 1.0 if y_signals[0, column] else -1.0))
                continue
            head = LinearSVC(C=self.c_signal, class_weight="balanced", random_state=0)
            signals.append(head.fit(x, y_signals[:, column]))
        return _Linear(vectorizer, objection, signals)

    def fit(self, messages: Sequence[Message], corpus: str = "") -> MessageModel:
        """Learn from ``messages`` (their ``vertical`` groups the folds); ``corpus`` is the
        fingerprint recorded on the card (see ``corpus.corpus_digest``)."""
        documents = [tokens(m.text) for m in messages]
        y, y_signals = _targets(messages)
        groups = [m.vertical for m in messages]
        oof, oof_signals = self._out_of_fold_scores(messages, documents)
        self._temperature = _fit_temperature(oof, y)
        self._platt = np.array([_fit_platt(oof_signals[:, k], y_signals[:, k]) for k in range(len(SIGNALS))])
        probabilities = _softmax(oof / self._temperature)
        signal_probabilities = self._calibrated_signals(oof_signals)
        self._objection_thresholds = _objection_thresholds(probabilities, y, self.max_false_alarms)
        self._signal_thresholds = np.array(
            [
                _signal_threshold(
                    signal_probabilities[:, k],
                    y_signals[:, k],
                    {"opt_out": self.opt_out_precision, "opt_out_soft": self.opt_out_soft_precision}.get(
                        SIGNALS[k]
                    ),
                )
                for k in range(len(SIGNALS))
            ]
        )
        final = self._fit_linear(documents, y, y_signals)
        vocabulary: dict[str, int] = final.vectorizer.vocabulary_
        self._vocabulary = Vocabulary.of(sorted(vocabulary, key=vocabulary.__getitem__))
        self._idf = np.asarray(final.vectorizer.idf_, dtype=np.float64)
        coef, intercept = final.objection_weights()
        signal_coef = np.column_stack([head.coef_[0] for head in final.signals])
        self._weights = np.ascontiguousarray(np.hstack([coef, signal_coef]), dtype=np.float64)
        self._intercept = np.concatenate(
            [intercept, np.array([head.intercept_[0] for head in final.signals])]
        ).astype(np.float64)
        predicted = self._decide(probabilities, signal_probabilities)
        self.card = {
            "format": FORMAT_VERSION,
            "features": FEATURES_VERSION,
            "classes": list(CLASSES),
            "signals": list(SIGNALS),
            "corpus": corpus,
            "messages": len(messages),
            "verticals": dict(sorted(Counter(groups).items())),
            "params": self.params(),
            "temperature": round(self._temperature, 6),
            "platt": [[round(float(v), 6) for v in pair] for pair in self._platt],
            "thresholds": {
                **{label: float(t) for label, t in zip(OBJECTIONS, self._objection_thresholds, strict=True)},
                **{signal: float(t) for signal, t in zip(SIGNALS, self._signal_thresholds, strict=True)},
            },
            "out_of_fold": _summary(messages, predicted),
        }
        return self

    def _out_of_fold_scores(
        self, messages: Sequence[Message], documents: Sequence[list[str]]
    ) -> tuple[FloatArray, FloatArray]:
        """Raw scores of each message from a model trained without its vertical's fold."""
        from sklearn.model_selection import GroupKFold

        if len({m.vertical for m in messages}) < 2:
            raise ModelError("training needs messages from at least two verticals (folds hold out verticals)")
        y, y_signals = _targets(messages)
        groups = [m.vertical for m in messages]
        folds = GroupKFold(n_splits=min(self.folds, len(set(groups))))
        oof = np.zeros((len(messages), len(CLASSES)))
        oof_signals = np.zeros((len(messages), len(SIGNALS)))
        for train, test in folds.split(documents, y, groups):
            fitted = self._fit_linear([documents[i] for i in train], y[train], y_signals[train])
            oof[test], oof_signals[test] = fitted.scores([documents[i] for i in test])
        return oof, oof_signals

    def out_of_fold(self, messages: Sequence[Message]) -> tuple[FloatArray, FloatArray]:
        """Calibrated (objection classes, signals) probabilities of every message, each read by a
        model that never saw its vertical: what ``fit`` tunes on, and what a label audit ranks by."""
        oof, oof_signals = self._out_of_fold_scores(messages, [tokens(m.text) for m in messages])
        y, y_signals = _targets(messages)
        temperature = _fit_temperature(oof, y)
        platt = np.array([_fit_platt(oof_signals[:, k], y_signals[:, k]) for k in range(len(SIGNALS))])
        return _softmax(oof / temperature), _sigmoid(oof_signals * platt[:, 0] + platt[:, 1])

    def _calibrated_signals(self, scores: FloatArray) -> FloatArray:
        return _sigmoid(scores * self._platt[:, 0] + self._platt[:, 1])

    def _decide(
        self, probabilities: FloatArray, signal_probabilities: FloatArray
    ) -> list[tuple[str | None, tuple[str, ...]]]:
        results = []
        for row, signal_row in zip(probabilities, signal_probabilities, strict=True):
            best = int(np.argmax(row[1:]))
            label = OBJECTIONS[best] if row[best + 1] >= self._objection_thresholds[best] else None
            signals = tuple(
                s for s, p, t in zip(SIGNALS, signal_row, self._signal_thresholds, strict=True) if p >= t
            )
            if "opt_out" in signals:  # no contact at all covers "less contact"
                signals = tuple(s for s in signals if s != "opt_out_soft")
            results.append((label, signals))
        return results

    # -- predicting -------------------------------------------------------------------------------

    def _vector(self, text: str) -> tuple[npt.NDArray[np.intp], FloatArray]:
        """TF-IDF as the vectorizer computed it: sublinear counts, idf, unit length."""
        counts = Counter(self._vocabulary.columns(tokens(text)))
        columns = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (1.0 + np.log(tf)) * self._idf[columns]
        norm = math.sqrt(float(values @ values))
        return columns, values / norm if norm else values

    def probabilities(self, text: str) -> tuple[FloatArray, FloatArray]:
        """Calibrated (objection classes, signals) probabilities of one message."""
        columns, values = self._vector(text)
        rows = self._weights[columns].astype(np.float64, copy=False)
        scores = values @ rows + self._intercept  # every head in one product
        objection, signals = scores[: len(CLASSES)], scores[len(CLASSES) :]
        return _softmax(objection / self._temperature), self._calibrated_signals(signals)

    def decide(
        self, probabilities: FloatArray, signal_probabilities: FloatArray
    ) -> tuple[str | None, tuple[str, ...]]:
        """The objection (if its probability reaches its threshold) and the signals of one message."""
        best = int(np.argmax(probabilities[1:]))
        label = OBJECTIONS[best] if probabilities[best + 1] >= self._objection_thresholds[best] else None
        flagged = signal_probabilities >= self._signal_thresholds
        signals = tuple(s for s, on in zip(SIGNALS, flagged.tolist(), strict=True) if on)
        if "opt_out" in signals:  # no contact at all covers "less contact"
            signals = tuple(s for s in signals if s != "opt_out_soft")
        return label, signals

    def predict_one(self, text: str) -> Reading:
        probabilities, signal_probabilities = self.probabilities(text)
        label, signals = self.decide(probabilities, signal_probabilities)
        confidence = probabilities[CLASSES.index(label)] if label else probabilities[0]
        return Reading(
            label,
            round(float(confidence), 3),
            signals,
            {c: float(p) for c, p in zip(CLASSES, probabilities, strict=True)},
            {s: float(p) for s, p in zip(SIGNALS, signal_probabilities, strict=True)},
        )

    def predict(self, texts: Sequence[str]) -> list[Reading]:
        return [self.predict_one(text) for text in texts]

    def threshold(self, label: str) -> float:
        if label in OBJECTIONS:
            return float(self._objection_thresholds[OBJECTIONS.index(label)])
        return float(self._signal_thresholds[SIGNALS.index(label)])

    # -- the artefact -----------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """``model.npz`` (arrays) and ``model.json`` (the card); the same model gives the same bytes."""
        if not self.card:
            raise ModelError("the model is not fitted")
        folder.mkdir(parents=True, exist_ok=True)
        heads = len(CLASSES)
        arrays: dict[str, npt.NDArray[Any]] = {
            "terms": np.frombuffer(self._vocabulary.text.encode(), dtype=np.uint8),
            "idf": self._idf.astype(np.float32),
            # half precision: the scores move by ~1e-3, the file halves (it ships in the package)
            "objection_coef": np.ascontiguousarray(self._weights[:, :heads], dtype=np.float16),
            "objection_intercept": self._intercept[:heads],
            "signal_coef": np.ascontiguousarray(self._weights[:, heads:], dtype=np.float16),
            "signal_intercept": self._intercept[heads:],
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                data = io.BytesIO()
                np.save(data, array, allow_pickle=False)
                entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                entry.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(entry, data.getvalue())
        (folder / ARRAYS).write_bytes(buffer.getvalue())
        (folder / CARD).write_text(
            json.dumps(self.card, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, folder: Path) -> MessageModel:
        card_path, arrays_path = folder / CARD, folder / ARRAYS
        if not card_path.exists() or not arrays_path.exists():
            raise ModelError(f"{folder}: no trained model here; run `salesbot objections train`")
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
            arrays = np.load(arrays_path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{folder}: unreadable model ({exc}); run `salesbot objections train`") from None
        if card.get("format") != FORMAT_VERSION or card.get("features") != FEATURES_VERSION:
            raise ModelError(
                f"{card_path}: made by another salesbot version; run `salesbot objections train`"
            )
        if tuple(card.get("classes", ())) != CLASSES or tuple(card.get("signals", ())) != SIGNALS:
            raise ModelError(f"{card_path}: trained for other labels; run `salesbot objections train`")
        try:
            return cls._from(card, arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{folder}: incomplete model ({exc}); run `salesbot objections train`") from None

    @classmethod
    def _from(cls, card: dict[str, Any], arrays: Any) -> MessageModel:
        model = cls(**card["params"])
        model.card = card
        model._vocabulary = Vocabulary(bytes(arrays["terms"]).decode())
        model._idf = arrays["idf"].astype(np.float64)
        # kept in half precision as saved: read a row at a time as float64 (exactly the same values)
        model._weights = np.ascontiguousarray(np.hstack([arrays["objection_coef"], arrays["signal_coef"]]))
        if len(model._weights) != len(model._vocabulary):
            raise ValueError("the weights do not match the terms")
        model._intercept = np.concatenate([arrays["objection_intercept"], arrays["signal_intercept"]]).astype(
            np.float64
        )
        model._temperature = float(card["temperature"])
        model._platt = np.array(card["platt"], dtype=np.float64)
        thresholds = card["thresholds"]
        model._objection_thresholds = np.array([thresholds[label] for label in OBJECTIONS])
        model._signal_thresholds = np.array([thresholds[signal] for signal in SIGNALS])
        model.predict_one(
            "你好"
        )  # the segmenter loads its dictionary on first use: not on a customer's message
        return model

    def check_corpus(self, corpus: str, where: Path) -> None:
        """Refuse a model trained on another corpus than the one installed (a stale model)."""
        if self.card.get("corpus") != corpus:
            raise ModelError(
                f"{where / CARD}: stale model: trained on corpus {self.card.get('corpus') or '?'}, the "
                f"installed corpus is {corpus}; run `salesbot objections train`"
            )


# -- calibration and thresholds (on out-of-fold predictions) ---------------------------------------


def _targets(messages: Sequence[Message]) -> tuple[npt.NDArray[np.int_], npt.NDArray[np.int_]]:
    """The objection class index and the 0/1 signal columns of each message."""
    y = np.array([CLASSES.index(m.objection or "none") for m in messages])
    y_signals = np.array([[s in m.signals for s in SIGNALS] for m in messages], dtype=int)
    return y, y_signals


def _fit_temperature(scores: FloatArray, y: npt.NDArray[np.int_]) -> float:
    """The temperature that minimises the negative log-likelihood of the true classes."""
    from scipy.optimize import minimize_scalar

    def loss(log_t: float) -> float:
        p = _softmax(scores / math.exp(log_t))
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    result = minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded")
    return round(math.exp(float(result.x)), 6)


def _fit_platt(scores: FloatArray, y: npt.NDArray[np.int_]) -> tuple[float, float]:
    """Platt scaling: a one-feature logistic regression from score to probability."""
    from sklearn.linear_model import LogisticRegression

    if y.min() == y.max():
        return (1.0, 0.0)
    head = LogisticRegression(C=1e4, max_iter=1000).fit(scores.reshape(-1, 1), y)
    return (float(head.coef_[0, 0]), float(head.intercept_[0]))


_GRID = np.round(np.arange(0.10, 0.951, 0.025), 3)
_OBJECTION_GRID = np.append(_GRID, 1.0)  # 1.0: a label that cannot be read without too many false alarms


def _objection_thresholds(
    probabilities: FloatArray, y: npt.NDArray[np.int_], max_false_alarms: float
) -> FloatArray:
    """The per-label thresholds with the best macro-F1 that flag at most ``max_false_alarms`` of
    the no-objection messages, found exactly rather than by a local search.

    A message is read as its most likely objection when that probability reaches the label's
    threshold, so each label's F1 and its share of false alarms depend on its own threshold only,
    and false alarms add up across labels: choosing one grid value per label under a false-alarm
    budget is a multiple-choice knapsack, solved by dynamic programming over the count of flagged
    no-objection messages. (A coordinate ascent it replaced stopped in local optima: 0.832 against
    0.852 out of fold on the same probabilities.) Ties go to thresholds nearer 0.5."""
    best = np.argmax(probabilities[:, 1:], axis=1)
    confidence = probabilities[np.arange(len(y)), best + 1]
    nones = y == 0
    budget = math.floor(max_false_alarms * int(nones.sum()) + 1e-9)
    unreachable = -np.inf
    # value[b]: best sum of F1 so far with exactly b no-objection messages flagged
    value = np.full(budget + 1, unreachable)
    value[0] = 0.0
    choices: list[npt.NDArray[np.intp]] = []
    costs: list[list[int]] = []
    for label in range(len(OBJECTIONS)):
        mine, truth = best == label, y == label + 1
        options = []
        for threshold in _OBJECTION_GRID:
            flagged = mine & (confidence >= threshold)
            tp = int(np.sum(flagged & truth))
            fp, fn = int(np.sum(flagged & ~truth)), int(truth.sum()) - tp
            f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
            options.append((int(np.sum(flagged & nones)), f1 - 1e-9 * abs(float(threshold) - 0.5)))
        following = np.full(budget + 1, unreachable)
        picked = np.zeros(budget + 1, dtype=np.intp)
        for index, (cost, f1) in enumerate(options):
            if cost > budget:
                continue
            candidate = np.full(budget + 1, unreachable)
            candidate[cost:] = value[: budget + 1 - cost] + f1
            better = candidate > following
            following[better], picked[better] = candidate[better], index
        choices.append(picked)
        costs.append([cost for cost, _ in options])
        value = following
    spent = int(np.argmax(value))
    thresholds = np.zeros(len(OBJECTIONS))
    for label in reversed(range(len(OBJECTIONS))):
        index = int(choices[label][spent])
        thresholds[label] = float(_OBJECTION_GRID[index])
        spent -= costs[label][index]
    return thresholds


def _signal_threshold(p: FloatArray, y: npt.NDArray[np.int_], min_precision: float | None) -> float:
    """The F1-best threshold; with ``min_precision``, the lowest one that keeps that precision."""
    if y.sum() == 0:
        return 0.5
    rows = []
    for value in _GRID:
        flagged = p >= value
        tp = int(np.sum(flagged & (y == 1)))
        precision = tp / int(flagged.sum()) if flagged.any() else 1.0
        recall = tp / int(y.sum())
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        rows.append((float(value), precision, recall, f1))
    if min_precision is not None:
        precise = [r for r in rows if r[1] >= min_precision and r[2] > 0]
        if precise:
            return min(r[0] for r in precise)
    return max(rows, key=lambda r: (r[3], -abs(r[0] - 0.5)))[0]


def _summary(
    messages: Sequence[Message], predicted: list[tuple[str | None, tuple[str, ...]]]
) -> dict[str, Any]:
    from bot.objections.evaluate import score

    report = score([(m, p[0], p[1]) for m, p in zip(messages, predicted, strict=True)])
    return report.as_dict()
