"""Make the reader's segmenter dictionary (``bot/objections/data/words.txt``) from jieba's.

jieba's ``dict.txt`` (350,000 words, each with its frequency in jieba's corpus and a part of
speech) is MIT-licensed; its most frequent ``--top`` words, with their frequencies, become the
dictionary the reader segments with (``bot/objections/segmenter.py`` says why). The same sdist
and ``--top`` give the same file byte for byte.

    pip download --no-deps jieba==0.42.1 -d /tmp/jieba
    python scripts/make_words.py /tmp/jieba/jieba-0.42.1.tar.gz [--top 20000]
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "bot" / "objections" / "data" / "words.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sdist", help="jieba's source archive (jieba-0.42.1.tar.gz)")
    parser.add_argument("--top", type=int, default=20_000, help="how many of the most frequent words")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    with tarfile.open(args.sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/jieba/dict.txt"))
        handle = archive.extractfile(member)
        assert handle is not None
        text = handle.read().decode("utf-8")
    frequencies: dict[str, int] = {}
    for line in text.splitlines():
        word, frequency, *_ = line.split(" ")
        frequencies[word] = max(int(frequency), frequencies.get(word, 0))  # a few words appear twice
    # the most frequent first; among equals (the cut-off falls inside a frequency) by code point
    words = sorted(frequencies.items(), key=lambda pair: (-pair[1], pair[0]))
    Path(args.out).write_text("".join(f"{w} {f}\n" for w, f in words[: args.top]), encoding="utf-8")
    print(f"{min(args.top, len(words))} of {len(words)} words written to {args.out}")


if __name__ == "__main__":
    main()
