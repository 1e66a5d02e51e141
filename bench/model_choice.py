"""Which learner reads objections best: scikit-learn's linear SVM (the shipped choice) against its
logistic regression and fastText, on the same folds of the corpus (each fold holds out whole
verticals) and the same decision rule (the most likely class; no per-label thresholds, so none gets
tuning the others lack), side by side.

    pip install fasttext-wheel   # not a dependency of salesbot: only this comparison needs it
    python bench/model_choice.py [--folds 4]

Reports macro-F1 over the nine objections, the share of no-objection messages flagged, training
seconds and microseconds per message for each, and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.svm import LinearSVC

from bot.objections.artefact import CLASSES
from bot.objections.corpus import Message, deduplicate, load_corpus
from bot.objections.features import clean, tokens
from bot.objections.segmenter import segmenter

Predict = Callable[[str], int]


def scores(gold: Sequence[int], guess: Sequence[int]) -> tuple[float, float]:
    y, p = np.array(gold), np.array(guess)
    f1s = []
    for label in range(1, len(CLASSES)):
        tp = int(np.sum((p == label) & (y == label)))
        wrong = int(np.sum((p == label) & (y != label))) + int(np.sum((p != label) & (y == label)))
        f1s.append(2 * tp / (2 * tp + wrong) if tp else 0.0)
    return float(np.mean(f1s)), float(np.mean(p[y == 0] != 0))


def sklearn_model(make: Callable[[], Any]) -> Callable[[Sequence[Message]], Predict]:
    """The shipped features (``features.tokens``, TF-IDF) under a scikit-learn classifier."""

    def learn(train: Sequence[Message]) -> Predict:
        vectorizer = TfidfVectorizer(analyzer=lambda doc: doc, sublinear_tf=True, min_df=2)
        x = vectorizer.fit_transform([tokens(m.text) for m in train])
        model = make().fit(x, [CLASSES.index(m.objection or "none") for m in train])
        return lambda text: int(model.predict(vectorizer.transform([tokens(text)]))[0])

    return learn


def fasttext_text(text: str) -> str:
    """Characters and words as space-separated tokens (fastText splits on spaces)."""
    cleaned = clean(text)
    return " ".join([*cleaned.replace(" ", ""), *(w for w in segmenter().cut(cleaned) if not w.isspace())])


def fasttext_model(train: Sequence[Message]) -> Predict:
    import fasttext

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.txt"
        path.write_text(
            "".join(f"__label__{m.objection or 'none'} {fasttext_text(m.text)}\n" for m in train),
            encoding="utf-8",
        )
        model = fasttext.train_supervised(
            str(path), epoch=40, lr=0.5, wordNgrams=2, minn=0, maxn=0, dim=50, thread=1, seed=1, verbose=0
        )

    def predict(text: str) -> int:
        # the binding's own predict() breaks on NumPy 2 (np.array(copy=False)); its core answers directly
        [(_, label)] = model.f.predict(fasttext_text(text), 1, 0.0, "strict")
        return CLASSES.index(label.removeprefix("__label__"))

    return predict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folds", type=int, default=4)
    folds = parser.parse_args().folds
    messages = deduplicate(load_corpus())
    gold = [CLASSES.index(m.objection or "none") for m in messages]
    groups = [m.vertical for m in messages]
    learners = {
        "scikit-learn linear SVM (shipped)": sklearn_model(lambda: LinearSVC(C=2.0, random_state=0)),
        "scikit-learn logistic regression": sklearn_model(lambda: LogisticRegression(C=20.0, max_iter=5000)),
        "fastText supervised": fasttext_model,
    }
    results: dict[str, tuple[float, float, float, float]] = {}
    for name, learn in learners.items():
        guesses = [0] * len(messages)
        train_seconds, latencies = 0.0, []
        for train, test in GroupKFold(n_splits=folds).split(messages, gold, groups):
            started = time.perf_counter()
            predict = learn([messages[i] for i in train])
            train_seconds += time.perf_counter() - started
            for i in test:
                began = time.perf_counter_ns()
                guesses[i] = predict(messages[i].text)
                latencies.append((time.perf_counter_ns() - began) / 1000)
        macro, false_alarms = scores(gold, guesses)
        results[name] = (macro, false_alarms, train_seconds, statistics.median(latencies))
    print(
        f"{len(messages)} messages, {len(set(groups))} verticals, {folds} folds holding out whole verticals"
    )
    print(f"{'learner':<34} {'macro-F1':>8} {'FP rate':>8} {'train s':>8} {'us/msg':>8}")
    for name, (macro, fp, seconds, micro) in results.items():
        print(f"{name:<34} {macro:>8.3f} {fp:>8.3f} {seconds:>8.1f} {micro:>8.1f}")
    shipped = results["scikit-learn linear SVM (shipped)"]
    for name, (macro, fp, seconds, _) in list(results.items())[1:]:
        print(
            f"shipped / {name}: macro-F1 {shipped[0] / macro:.2f}x, "
            f"FP rate {shipped[1] / max(fp, 1e-9):.2f}x, training time {shipped[2] / seconds:.2f}x"
        )


if __name__ == "__main__":
    main()
