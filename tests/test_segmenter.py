"""The reader's segmenter: jieba's most frequent words in an empty rjieba segmenter, never the
package's full dictionary (issue 20: about 30 MB of the running bot)."""

from __future__ import annotations

import os
import subprocess
import sys

from bot.objections.segmenter import WORDS, read_words, segmenter
from tests.conftest import ROOT


def test_the_dictionary_is_jiebas_most_frequent_words_each_once_most_frequent_first() -> None:
    words = list(read_words(WORDS))
    assert len(words) == 60_000
    assert len({word for word, _ in words}) == len(words)
    frequencies = [frequency for _, frequency in words]
    assert frequencies == sorted(frequencies, reverse=True) and frequencies[-1] > 0
    assert all(word and " " not in word for word, _ in words)


def test_it_cuts_dictionary_words_as_words_and_guesses_the_rest() -> None:
    cut = segmenter().cut("这个月吃土了 让我缓两天 京东比你这儿少三百")
    assert [w for w in cut if not w.isspace()][:1] == ["这个"]
    assert {"两天", "京东", "这儿", "三百"} <= set(cut)
    # a compound only jieba's full dictionary has is cut into frequent words (the n-grams see it whole)
    assert segmenter().cut("旗舰店") == ["旗舰", "店"]


def test_building_it_never_imports_the_rjieba_package_whose_import_builds_the_full_dictionary() -> None:
    code = (
        "import sys\n"
        "from bot.objections.segmenter import segmenter\n"
        "assert segmenter().cut('让我缓两天') == ['让', '我', '缓', '两天']\n"
        "print(sorted(m for m in sys.modules if m.startswith('rjieba')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-c", code]
    out = subprocess.run(run, cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"
