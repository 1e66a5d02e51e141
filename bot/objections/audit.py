"""Find corpus lines whose label is probably wrong, so a person can review them.

A model only learns the rules its labels follow. When writers label the same kind of message two
ways, every held-out score pays for it. This ranks each line by how strongly a model that never saw
its vertical disagrees with its label (confident learning, with cleanlab's ``find_label_issues``
over out-of-fold probabilities), for the objection and for each signal. It suggests; a reviewer
reading the guide decides (see ``data/corpus/GUIDE.md``, "Reviewing labels").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.objections.artefact import CLASSES
from bot.objections.corpus import Message
from bot.objections.labels import SIGNALS
from bot.objections.model import MessageModel


@dataclass(frozen=True)
class LabelIssue:
    message: Message
    head: str  # "objection" or a signal name
    given: str  # the label on the line ("none" for no objection; "yes"/"no" for a signal)
    suggested: str
    quality: float  # cleanlab's label quality: low means the label is unlikely

    def as_dict(self) -> dict[str, Any]:
        m = self.message
        return {
            "source": m.source,
            "text": m.text,
            "objection": m.objection,
            "signals": list(m.signals),
            "head": self.head,
            "given": self.given,
            "suggested": self.suggested,
            "quality": round(self.quality, 4),
        }


def find_issues(messages: Sequence[Message], model: MessageModel | None = None) -> list[LabelIssue]:
    """Likely label errors, the least likely label first."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probabilities, signal_probabilities = (model or MessageModel()).out_of_fold(messages)
    issues: list[LabelIssue] = []
    y = np.array([CLASSES.index(m.objection or "none") for m in messages])
    flagged = find_label_issues(y, probabilities, filter_by="both")
    quality = get_label_quality_scores(y, probabilities)
    for i in map(int, np.flatnonzero(flagged)):
        suggested = CLASSES[int(np.argmax(probabilities[i]))]
        issues.append(LabelIssue(messages[i], "objection", CLASSES[y[i]], suggested, float(quality[i])))
    for k, signal in enumerate(SIGNALS):
        y_signal = np.array([int(signal in m.signals) for m in messages])
        if y_signal.min() == y_signal.max():
            continue
        pair = np.column_stack([1.0 - signal_probabilities[:, k], signal_probabilities[:, k]])
        flagged = find_label_issues(y_signal, pair, filter_by="both")
        quality = get_label_quality_scores(y_signal, pair)
        for i in map(int, np.flatnonzero(flagged)):
            given = "yes" if y_signal[i] else "no"
            issues.append(
                LabelIssue(messages[i], signal, given, "no" if y_signal[i] else "yes", float(quality[i]))
            )
    return sorted(issues, key=lambda issue: (issue.quality, issue.message.source, issue.message.text))
