"""The model's vocabulary (term -> column) in a few MB instead of a dict of strings (issue 20).

The shipped model has some 190,000 terms (character n-grams, words, word pairs). As a ``dict``
of ``str`` they would take about 150 bytes each of the running bot (a Python string of Chinese
text is 80-odd bytes, its int and the dict entry more: 17 MB for the 110,000 terms of
2026-12-03). Here they are one string (the terms, one a line, in column order: exactly the
artefact's ``terms``), the sorted hashes of the terms and, for each, its column: a look-up hashes
a message's tokens, finds them with one binary search, and confirms each hit against the term's
text, so it answers exactly as the dict did (a hash collision cannot make a term out of an unknown
token).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

_hash = hash  # Python's string hash (salted per process: both sides of a look-up are hashed here)


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` one at a time (a list of them all is what this module avoids)."""
    start = 0
    while (end := text.find("\n", start)) != -1:
        yield text[start:end]
        start = end + 1
    yield text[start:]


class Vocabulary:
    """Terms in column order; ``columns`` finds a sequence of tokens' columns."""

    def __init__(self, text: str) -> None:
        """``text``: the terms, one a line, in column order (no term contains a newline)."""
        self.text = text
        count = text.count("\n") + 1 if text else 0
        # where each column's term starts in ``text``, then one past the end of the text (the start
        # of a column after the last): a term ends one character before the next one starts
        self._starts = np.zeros(count + 1, dtype=np.int32)
        lengths = np.fromiter((len(term) + 1 for term in _lines(text)), np.int32, count)  # with its "\n"
        np.cumsum(lengths, out=self._starts[1:])
        hashes = np.fromiter(map(_hash, _lines(text)), dtype=np.int64, count=count)
        self._order = np.argsort(hashes, kind="stable").astype(np.int32)
        self._hashes = hashes[self._order]

    @classmethod
    def of(cls, terms: Sequence[str]) -> Vocabulary:
        return cls("\n".join(terms))

    def __len__(self) -> int:
        return len(self._order)

    def term(self, column: int) -> str:
        return self.text[self._starts[column] : self._starts[column + 1] - 1]

    def _is(self, column: int, token: str) -> bool:
        start, stop = int(self._starts[column]), int(self._starts[column + 1]) - 1
        return stop - start == len(token) and self.text.startswith(token, start)

    def columns(self, tokens: Sequence[str]) -> list[int]:
        """The column of each token that is a term, in the tokens' order (repeats kept)."""
        if not tokens or not len(self._order):
            return []
        wanted = np.fromiter(map(_hash, tokens), dtype=np.int64, count=len(tokens))
        at = np.searchsorted(self._hashes, wanted)
        np.minimum(at, len(self._hashes) - 1, out=at)
        hits = np.flatnonzero(self._hashes[at] == wanted)
        columns = self._order[at[hits]]
        found: list[int] = []
        text = self.text
        for index, column, start, end in zip(
            hits.tolist(),
            columns.tolist(),
            self._starts[columns].tolist(),
            self._starts[columns + 1].tolist(),
            strict=True,
        ):
            token = tokens[index]
            if end - 1 - start == len(token) and text.startswith(token, start):
                found.append(column)
            elif (other := self._colliding(token, int(at[index]))) is not None:
                found.append(other)
        return found

    def _colliding(self, token: str, position: int) -> int | None:
        """The term ``token`` is among those after ``position`` with the same hash, if any (the first
        term with a hash can differ from the token it was looked up for: about 1 in 10^9 look-ups)."""
        wanted = self._hashes[position]
        position += 1
        while position < len(self._hashes) and self._hashes[position] == wanted:
            column = int(self._order[position])
            if self._is(column, token):
                return column
            position += 1
        return None
