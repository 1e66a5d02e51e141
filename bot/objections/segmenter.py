"""Words for the model's features: jieba's segmentation over its most frequent words only.

Importing ``rjieba`` builds jieba's whole dictionary (350,000 words) in Rust before anyone asks for
it: about 30 MB of the running bot, a third of a bare Wechaty bot (issue 20). Most of those words
are rare names, places and terms of art that a customer's chat message seldom contains and that the
character n-grams read anyway. The reader segments with the most frequent ones only
(``data/words.txt``: word and frequency, one a line, made by ``scripts/make_words.py`` from jieba
0.42.1's ``dict.txt``, MIT licence), built into an empty rjieba segmenter: the same algorithm
(dictionary words, HMM for the rest). Its 20,000 most frequent words take about 2 MB (60,000 took
5.6; on folds that hold out whole verticals macro-F1 0.898 against 0.899, every signal's F1 the
same, the held-out sets 0.933 against 0.934: the n-grams carry the rest). The package's own full
dictionary is never built: its extension module is loaded without the package's ``__init__``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from bot.errors import SalesbotError

WORDS = Path(__file__).parent / "data" / "words.txt"
_BUILDING = threading.Lock()


class SegmenterError(SalesbotError):
    """The segmenter's dictionary is missing or unreadable (a broken installation)."""


class Segmenter(Protocol):
    def cut(self, text: str, hmm: bool = True) -> list[str]: ...


def _jieba_class() -> Any:
    """rjieba's ``Jieba`` class, from its extension module alone where it can be found (the
    package's ``__init__`` builds the full dictionary), else from the package (correct all the
    same; tests/test_run_imports.py fails when the running bot takes this way)."""
    package = importlib.util.find_spec("rjieba")  # finds it, does not import it
    for folder in (package.submodule_search_locations or []) if package else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / f"rjieba{suffix}"
            if not path.exists():
                continue
            spec = importlib.util.spec_from_file_location("rjieba.rjieba", path)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.Jieba
    import rjieba

    return rjieba.Jieba


def read_words(path: Path = WORDS) -> Iterator[tuple[str, int]]:
    """The dictionary's (word, frequency) lines, one at a time (a list of them all would add
    about 10 MB to the process's peak while the segmenter is built)."""
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                word, _, frequency = line.rstrip("\n").rpartition(" ")
                if not word or not frequency.isdigit():
                    raise SegmenterError(f"{path}:{number}: not a 'word frequency' line; reinstall salesbot")
                yield word, int(frequency)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        message = f"{path}: the reader's dictionary cannot be read ({reason}); reinstall salesbot"
        raise SegmenterError(message) from None


def _build() -> Segmenter:
    jieba = _jieba_class().empty()
    for word, frequency in read_words():
        jieba.add_word(word, frequency, None)
    return jieba  # type: ignore[no-any-return]


_segmenter: Segmenter | None = None


def segmenter() -> Segmenter:
    """The process's segmenter, built once on first use (a fraction of a second)."""
    global _segmenter
    if _segmenter is None:
        with _BUILDING:  # two threads asking at once get the same one
            if _segmenter is None:
                _segmenter = _build()
    return _segmenter


def built() -> bool:
    """Whether this process has built its segmenter (the model builds it as it loads)."""
    return _segmenter is not None
