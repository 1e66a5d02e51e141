"""The loaded model is small in memory (issue 20) and reads every message exactly as before: the same
probabilities, to the last bit, as the dict-of-terms and float64 form it replaced."""

from __future__ import annotations

import json
import math
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bot.objections import vocabulary
from bot.objections.corpus import load_corpus
from bot.objections.features import tokens
from bot.objections.model import (
    ARRAYS,
    CLASSES,
    PACKAGED_MODEL,
    FloatArray,
    MessageModel,
    _sigmoid,
    _softmax,
)
from bot.objections.vocabulary import Vocabulary
from tests.conftest import ROOT


class DictModel:
    """The shipped artefact read the way the model read it before: a dict of terms and the heads'
    weights as one float64 matrix (the reference the compact form must match exactly)."""

    def __init__(self, folder: Path) -> None:
        card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        arrays = np.load(folder / ARRAYS, allow_pickle=False)
        terms = bytes(arrays["terms"]).decode().split("\n")
        self.vocabulary = {term: index for index, term in enumerate(terms)}
        self.idf = arrays["idf"].astype(np.float64)
        self.coef = np.ascontiguousarray(
            np.hstack([arrays["objection_coef"].astype(np.float64), arrays["signal_coef"].astype(np.float64)])
        )
        self.intercept = np.concatenate([arrays["objection_intercept"], arrays["signal_intercept"]])
        self.temperature = float(card["temperature"])
        self.platt = np.array(card["platt"], dtype=np.float64)

    def probabilities(self, text: str) -> tuple[FloatArray, FloatArray]:
        counts = Counter(i for i in map(self.vocabulary.get, tokens(text)) if i is not None)
        columns = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (1.0 + np.log(tf)) * self.idf[columns]
        norm = math.sqrt(float(values @ values))
        values = values / norm if norm else values
        scores = values @ self.coef[columns] + self.intercept
        objection, signals = scores[: len(CLASSES)], scores[len(CLASSES) :]
        return _softmax(objection / self.temperature), _sigmoid(signals * self.platt[:, 0] + self.platt[:, 1])


def test_the_loaded_model_reads_every_message_exactly_as_before() -> None:
    texts = [m.text for m in load_corpus()]
    for path in sorted((ROOT / "tests" / "data").glob("objections-holdout*.jsonl")):
        texts += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    texts += ["", "  ", "😀😀", "a" * 500, "价格\n太贵了", "w:价格", "b:太|贵"]
    model, reference = MessageModel.load(PACKAGED_MODEL), DictModel(PACKAGED_MODEL)
    differ = []
    for text in texts:
        (objection, signals), (expected_objection, expected_signals) = (
            model.probabilities(text),
            reference.probabilities(text),
        )
        if not (np.array_equal(objection, expected_objection) and np.array_equal(signals, expected_signals)):
            differ.append(text)
    assert len(texts) > 20_000 and not differ, differ[:5]


def test_the_loaded_model_is_small_in_memory() -> None:
    MessageModel.load(PACKAGED_MODEL)  # the segmenter's and NumPy's one-off costs are not the model's
    tracemalloc.start()
    try:
        model = MessageModel.load(PACKAGED_MODEL)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(model._vocabulary) > 100_000
    # a dict of its ~110,000 terms and float64 weights held about 40 MB; now about 8
    assert held < 16 * 2**20, f"{held / 2**20:.1f} MB"


def test_the_vocabulary_finds_exactly_its_terms() -> None:
    terms = ["价", "价格", "w:价格", "b:太|贵", "a", "ab", ""]
    words = Vocabulary.of(terms)
    assert [words.term(column) for column in range(len(words))] == terms
    asked = ["ab", "价格", "x", "价", "价格", "b:太|贵", "abc", "w:价", ""]
    assert words.columns(asked) == [5, 1, 0, 1, 3, 6]
    assert words.columns([]) == [] and Vocabulary.of([]).columns(["a"]) == []


def test_terms_with_the_same_hash_are_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vocabulary, "_hash", len)  # every term of a length collides
    terms = ["ab", "cd", "ef", "g", "价格"]
    words = Vocabulary.of(terms)
    assert words.columns(["ef", "cd", "ab", "xy", "g", "价格", "价钱"]) == [2, 1, 0, 3, 4]
