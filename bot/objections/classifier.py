"""Which objection, if any, a customer's message raises, and which signals it carries.

The trained model (``model.MessageModel``) reads every message. The library's phrases (data that
ops staff edit, in ``scripts_templates/objections/``) only override it where they are precise:

- an opt-out phrase (``_opt_out.toml``: 退订, 别再发了) reads as ``opt_out`` unless the model reads
  the message as a qualified, soft one (晚上十点后就别发了, 平时就别发了);
- an objection's resolved phrases (``not_when``: 价格没问题, 不用跟家里商量) cancel that objection,
  and the next most likely one counts if the model is confident of it;
- when the model finds no objection, an objection's trigger phrase still names it (the longest
  matching phrase wins, ``priority`` breaks ties). Keep triggers few and unambiguous: a phrase
  that also appears in ordinary messages would bring false alarms back.

A buying or question cue never vetoes an objection: "再让五百我立马转账" is a price objection and a
buying signal at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.objections.artefact import CLASSES
from bot.objections.labels import OBJECTIONS
from bot.objections.library import ObjectionLibrary, normalize
from bot.objections.model import MessageModel, Probabilities

NEGATION = re.compile("不|没|别|并非")
# after a resolved phrase: a question (合理吗, 值得么) or a "but" (就是, 但是) means it resolves nothing
QUESTION_OR_BUT = re.compile("^(吗|么|嘛|不|没)|就是|但|可是|不过|只是")
# the shipped triggers are the phrases the corpus shows at >= 0.9 precision
TRIGGER_CONFIDENCE = 0.9


@dataclass(frozen=True)
class Classification:
    label: str | None
    confidence: float
    signals: tuple[str, ...] = ()
    reason: str = ""  # "model", "trigger", "resolved", "none"

    @property
    def opt_out(self) -> bool:
        return "opt_out" in self.signals

    @property
    def opt_out_soft(self) -> bool:
        return "opt_out_soft" in self.signals


class Classifier:
    def __init__(self, library: ObjectionLibrary, model: MessageModel, *, triggers: bool = True) -> None:
        self.library = library
        self.model = model
        self.triggers = triggers
        self._ranked = sorted(library.objections.values(), key=lambda o: o.priority, reverse=True)

    def is_opt_out(self, text: str) -> bool:
        pattern = self.library.opt_out
        return bool(pattern and pattern.search(normalize(text)))

    def _resolved(self, norm: str) -> set[str]:
        """Objections a resolved phrase cancels. A negated phrase (不值得, 不是很适合), a question
        (价格合理吗) or one followed by a "but" (价格没问题，就是…) cancels nothing."""
        return {
            o.label
            for o in self._ranked
            if o.not_when is not None
            and any(
                not NEGATION.search(norm[max(0, m.start() - 3) : m.start()])
                and not QUESTION_OR_BUT.search(norm[m.end() :])
                for m in o.not_when.finditer(norm)
            )
        }

    def _trigger(self, norm: str, resolved: set[str]) -> str | None:
        """The objection a trigger phrase names (a negated phrase, 不太贵, names nothing)."""
        fired = []
        for objection in self._ranked:
            if (
                objection.label in resolved
                or objection.triggers is None
                or not objection.triggers.search(norm)
            ):
                continue  # one search of all its phrases first: most messages match none
            lengths = [
                length
                for pattern, length in objection.trigger_list
                for m in pattern.finditer(norm)
                if not NEGATION.search(norm[max(0, m.start() - 3) : m.start()])
            ]
            if lengths:
                fired.append((max(lengths), objection.priority, objection.label))
        return max(fired)[2] if fired else None

    def classify(self, text: str) -> Classification:
        norm = normalize(text)
        if not norm:
            return Classification(None, 1.0, reason="none")
        probabilities, signal_probabilities = self.model.probabilities(text)
        label, signals = self.model.decide(probabilities, signal_probabilities)
        if "opt_out_soft" not in signals and self.is_opt_out(text):
            # a phrase like 别发了 is a full opt-out unless the model reads it qualified (晚上十点后就别发了)
            signals = ("opt_out", *(s for s in signals if s != "opt_out"))
        resolved = self._resolved(norm)
        reason = "model" if label else "none"
        if label in resolved:
            label, reason = self._next_confident(probabilities, resolved), "resolved"
        if label is None and self.triggers:
            trigger = self._trigger(norm, resolved)
            if trigger is not None:
                confidence = max(TRIGGER_CONFIDENCE, float(probabilities[CLASSES.index(trigger)]))
                return Classification(trigger, round(confidence, 3), signals, "trigger")
        if label is None:
            return Classification(None, round(float(probabilities[0]), 3), signals, reason)
        return Classification(label, round(float(probabilities[CLASSES.index(label)]), 3), signals, reason)

    def _next_confident(self, probabilities: Probabilities, resolved: set[str]) -> str | None:
        for index in sorted(range(len(OBJECTIONS)), key=lambda i: -probabilities[i + 1]):
            label = OBJECTIONS[index]
            if label not in resolved and probabilities[index + 1] >= self.model.threshold(label):
                return label
        return None

    def read(self, text: str) -> tuple[str | None, tuple[str, ...]]:
        """(objection, signals): what ``evaluate`` scores."""
        result = self.classify(text)
        return result.label, result.signals
