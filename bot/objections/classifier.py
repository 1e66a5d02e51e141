"""Which objection, if any, a customer's message raises.

Two layers, both driven by the library (data, not code):

1. Trigger phrases per objection, cancelled by that objection's "resolved" phrases (价格没问题,
   我考虑好了, 不用跟家里商量).
   When several objections fire, the longest matching phrase (the most specific evidence, not
   counting ``*`` gaps) wins and ``priority`` breaks ties: 别家更便宜 is a comparison, not a price objection.
2. When no trigger fires, the nearest example utterance by TF-IDF-weighted character 1-3 grams,
   over the objections' examples and the ordinary messages in ``_none.toml``; it counts only above
   a similarity threshold, so unfamiliar small talk stays unflagged.

Opt-out phrases ("退订", "别再发了") are reported separately and never as an objection.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

from bot.objections.library import ObjectionLibrary, normalize

NGRAM_SIZES = (1, 2, 3)


@dataclass(frozen=True)
class Classification:
    label: str | None
    confidence: float
    opt_out: bool = False
    reason: str = ""  # "trigger", "example", "resolved", "none"


def ngrams(text: str) -> Counter[str]:
    grams: Counter[str] = Counter()
    for size in NGRAM_SIZES:
        for start in range(len(text) - size + 1):
            grams[text[start : start + size]] += 1
    return grams


class _ExampleIndex:
    """Cosine similarity over TF-IDF character n-grams, with an inverted index so a lookup costs
    only the n-grams the message shares with the examples."""

    def __init__(self, examples: list[tuple[str, str | None]]) -> None:
        docs = [(ngrams(normalize(text)), label) for text, label in examples if normalize(text)]
        frequency: Counter[str] = Counter()
        for grams, _ in docs:
            frequency.update(grams.keys())
        count = len(docs)
        self.idf = {gram: math.log((1 + count) / (1 + df)) + 1.0 for gram, df in frequency.items()}
        self.labels: list[str | None] = []
        self.postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for index, (grams, label) in enumerate(docs):
            weights = {g: tf * self.idf[g] for g, tf in grams.items()}
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            for gram, weight in weights.items():
                self.postings[gram].append((index, weight / norm))
            self.labels.append(label)

    def nearest(self, text: str) -> tuple[str | None, float]:
        grams = ngrams(text)
        weights = {g: tf * self.idf[g] for g, tf in grams.items() if g in self.idf}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        if not norm:
            return None, 0.0
        scores: dict[int, float] = defaultdict(float)
        for gram, weight in weights.items():
            for index, doc_weight in self.postings[gram]:
                scores[index] += doc_weight * weight / norm
        best = max(scores, key=scores.__getitem__)
        return self.labels[best], scores[best]


class _NaiveBayes:
    """Multinomial naive Bayes over character 1-2 grams, trained on the library's own phrases.

    It generalises from the characters objections share (钱, 商量, 退, 坏, 适合...) to phrasings no
    trigger lists; the ordinary messages in ``_none.toml`` compete as their own class.
    """

    SIZES = (1, 2)

    def __init__(self, docs: list[tuple[str, str | None]], alpha: float = 0.3) -> None:
        self.alpha = alpha
        counts: dict[str | None, Counter[str]] = defaultdict(Counter)
        for text, label in docs:
            counts[label].update(self._grams(normalize(text)))
        self.classes = list(counts)
        vocabulary = set().union(*counts.values())
        self.vocabulary_size = len(vocabulary)
        self.totals = {c: sum(counts[c].values()) for c in self.classes}
        self.log_prob = {
            c: {
                g: math.log((n + alpha) / (self.totals[c] + alpha * self.vocabulary_size))
                for g, n in counts[c].items()
            }
            for c in self.classes
        }
        self.unseen = {
            c: math.log(alpha / (self.totals[c] + alpha * self.vocabulary_size)) for c in self.classes
        }
        self.known = vocabulary

    def _grams(self, text: str) -> list[str]:
        return [text[i : i + n] for n in self.SIZES for i in range(len(text) - n + 1)]

    def posterior(self, text: str) -> dict[str | None, float]:
        grams = [g for g in self._grams(text) if g in self.known]
        if not grams:
            return {}
        scores = {c: sum(self.log_prob[c].get(g, self.unseen[c]) for g in grams) for c in self.classes}
        top = max(scores.values())
        exp = {c: math.exp(v - top) for c, v in scores.items()}
        total = sum(exp.values())
        return {c: v / total for c, v in exp.items()}


class Classifier:
    def __init__(
        self, library: ObjectionLibrary, *, example_threshold: float = 0.55, model_threshold: float = 0.7
    ) -> None:
        self.library = library
        self.example_threshold = example_threshold
        self.model_threshold = model_threshold
        ranked = sorted(library.objections.values(), key=lambda o: o.priority, reverse=True)
        self._ranked = ranked
        examples: list[tuple[str, str | None]] = [(e, o.label) for o in ranked for e in o.examples]
        examples += [(e, None) for e in library.none_examples]
        self._index = _ExampleIndex(examples)
        training: list[tuple[str, str | None]] = list(examples)
        training += [(t.replace("*", ""), o.label) for o in ranked for t in o.trigger_phrases]
        training += [(t.replace("*", ""), None) for o in ranked for t in o.resolved_phrases]
        self._model = _NaiveBayes(training)

    def is_opt_out(self, text: str) -> bool:
        pattern = self.library.opt_out
        return bool(pattern and pattern.search(normalize(text)))

    def classify(self, text: str) -> Classification:
        norm = normalize(text)
        if not norm:
            return Classification(None, 1.0, reason="none")
        if self.is_opt_out(text):
            return Classification(None, 1.0, opt_out=True, reason="opt_out")
        resolved: set[str] = set()
        fired: list[tuple[int, int, str]] = []  # (evidence length, priority, label)
        for objection in self._ranked:
            if objection.not_when is not None and objection.not_when.search(norm):
                resolved.add(objection.label)
                continue
            if objection.triggers.search(norm):
                evidence = max(length for pattern, length in objection.trigger_list if pattern.search(norm))
                fired.append((evidence, objection.priority, objection.label))
        if fired:
            fired.sort(reverse=True)
            confidence = 0.95 if len(fired) == 1 else 0.8
            return Classification(fired[0][2], confidence, reason="trigger")
        label, similarity = self._index.nearest(norm)
        if label is not None and label not in resolved and similarity >= self.example_threshold:
            return Classification(label, round(min(0.9, similarity), 3), reason="example")
        posterior = self._model.posterior(norm)
        candidates = {c: p for c, p in posterior.items() if c is not None and c not in resolved}
        if candidates:
            best = max(candidates, key=candidates.__getitem__)
            if candidates[best] >= self.model_threshold:
                return Classification(best, round(candidates[best] * 0.85, 3), reason="model")
        reason = "resolved" if resolved else "none"
        return Classification(None, round(posterior.get(None, 0.5), 3) if posterior else 0.5, reason=reason)
