"""The labelled customer-message corpus the model is trained on, and labelled files to score it on.

The corpus ships with the package: ``bot/objections/data/corpus/<vertical>.jsonl``, one message a line
(``{"text": ..., "objection": <label or null>, "signals": [...]}``), written for this project (see
``data/corpus/GUIDE.md``). Evaluation files may also use the older ``{"text": ..., "label": ...}`` form.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.errors import SalesbotError
from bot.objections.labels import OBJECTIONS, SIGNALS

CORPUS_DIR = Path(__file__).parent / "data" / "corpus"


@dataclass(frozen=True)
class Message:
    text: str
    objection: str | None
    signals: tuple[str, ...] = ()
    vertical: str = ""
    source: str = ""  # the file it came from, e.g. "cars.2" (one writer)


def _parse(line: str, where: str, vertical: str, source: str) -> Message:
    try:
        item = json.loads(line)
        text = item["text"]
        objection = item["objection"] if "objection" in item else item["label"]
        signals = item.get("signals", [])
    except (ValueError, KeyError, TypeError):
        raise SalesbotError(
            f'{where}: expected {{"text": ..., "objection": <label or null>, "signals": [...]}}'
        ) from None
    if not isinstance(text, str) or not text.strip():
        raise SalesbotError(f"{where}: text must be a non-empty string")
    if objection is not None and objection not in OBJECTIONS:
        raise SalesbotError(
            f"{where}: unknown objection {objection!r} (one of {', '.join(OBJECTIONS)} or null)"
        )
    if not isinstance(signals, list) or any(s not in SIGNALS for s in signals):
        raise SalesbotError(f"{where}: signals must be a list of {', '.join(SIGNALS)}")
    return Message(
        text, objection, tuple(dict.fromkeys(signals)), str(item.get("vertical", vertical)), source
    )


def read_labelled(path: Path, vertical: str = "") -> list[Message]:
    """One labelled file; errors name the file and line."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SalesbotError(f"{path}: cannot read ({exc.strerror})") from None
    return [
        _parse(line, f"{path}:{number}", vertical or path.stem, path.name.removesuffix(".jsonl"))
        for number, line in enumerate(raw.splitlines(), start=1)
        if line.strip()
    ]


def corpus_files(folder: Path = CORPUS_DIR) -> list[Path]:
    return sorted(folder.glob("*.jsonl"))


def load_corpus(folder: Path = CORPUS_DIR) -> list[Message]:
    """Every file; a message's vertical is its file's name up to the first dot (``cars.2.jsonl``: a
    second writer's cars)."""
    files = corpus_files(folder)
    if not files:
        raise SalesbotError(f"{folder}: no corpus files (*.jsonl)")
    return [m for path in files for m in read_labelled(path, path.name.split(".")[0])]


_digests: dict[tuple[Path, tuple[tuple[str, float, int], ...]], str] = {}


def corpus_digest(folder: Path = CORPUS_DIR) -> str:
    """A fingerprint of the corpus: a model trained on another corpus is stale."""
    files = corpus_files(folder)
    stamp = tuple((p.name, p.stat().st_mtime, p.stat().st_size) for p in files)
    if (folder, stamp) not in _digests:
        _digests[(folder, stamp)] = _digest(files)
    return _digests[(folder, stamp)]


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fold(text: str) -> str:
    """NFKC, case folded, no spaces or punctuation (emoji-only text keeps its emoji): the key for
    (near-)duplicate checks."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\s\W_]+", "", folded) or re.sub(r"\s+", "", folded)  # emoji-only: kept as is


def deduplicate(messages: Iterable[Message]) -> list[Message]:
    """Keeps the first of messages that fold to the same text."""
    seen: set[str] = set()
    kept = []
    for message in messages:
        key = fold(message.text)
        if key and key not in seen:
            seen.add(key)
            kept.append(message)
    return kept


def _bigrams(text: str) -> set[str]:
    key = fold(text)
    return {key[i : i + 2] for i in range(len(key) - 1)} or {key}


def near_duplicates(train: Sequence[Message], test: Sequence[Message], threshold: float = 0.7) -> set[int]:
    """Indexes of ``test`` messages whose character bigrams overlap a training message's by at
    least ``threshold`` (Jaccard): scoring on them would measure memory, not reading."""
    from scipy.sparse import csr_matrix

    vocabulary: dict[str, int] = {}

    def matrix(messages: Sequence[Message]) -> csr_matrix:
        rows, cols = [], []
        for row, message in enumerate(messages):
            for gram in _bigrams(message.text):
                rows.append(row)
                cols.append(vocabulary.setdefault(gram, len(vocabulary)))
        return rows, cols

    train_rc, test_rc = matrix(train), matrix(test)
    size = len(vocabulary)
    a = csr_matrix(([1.0] * len(train_rc[0]), train_rc), shape=(len(train), size))
    b = csr_matrix(([1.0] * len(test_rc[0]), test_rc), shape=(len(test), size))
    shared = (b @ a.T).tocoo()
    a_sizes, b_sizes = a.sum(axis=1).A1, b.sum(axis=1).A1
    found = set()
    for i, j, both in zip(shared.row, shared.col, shared.data, strict=True):
        if both / (b_sizes[i] + a_sizes[j] - both) >= threshold:
            found.add(int(i))
    return found
