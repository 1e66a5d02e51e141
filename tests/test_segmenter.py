"""The reader's segmenter: jieba's most frequent words in an empty rjieba segmenter, never the
package's full dictionary (issue 20: about 30 MB of the running bot)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bot.objections.segmenter import WORDS, SegmenterError, read_words, segmenter
from tests.conftest import ROOT


def test_the_dictionary_is_jiebas_most_frequent_words_each_once_most_frequent_first() -> None:
    words = list(read_words(WORDS))
    assert words[:3] == [("了", 883634), ("是", 796991), ("在", 727915)]  # jieba 0.42.1's top three
    assert len(words) == 20_000
    assert len({word for word, _ in words}) == len(words)
    frequencies = [frequency for _, frequency in words]
    assert frequencies == sorted(frequencies, reverse=True) and frequencies[-1] > 0


def test_it_cuts_dictionary_words_as_words_and_guesses_the_rest() -> None:
    cut = segmenter().cut("这个月吃土了 让我缓两天 京东比你这儿少三百")
    assert [w for w in cut if not w.isspace()][:1] == ["这个"]
    assert {"两天", "京东", "这儿", "三百"} <= set(cut)
    # words outside the dictionary are guessed by the HMM: 京东 above, 旗舰店 whole here (with jieba's
    # 60,000 most frequent words, 旗舰 was one and it came out 旗舰 + 店); the n-grams see them either way
    assert segmenter().cut("旗舰店") == ["旗舰店"]


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


def test_the_script_keeps_the_most_frequent_words_once_each_in_a_fixed_order(tmp_path: Path) -> None:
    dictionary = "乙 5 n\n甲 9 n\n丙 5 v\n甲 3 n\n丁 1 n\n".encode()
    sdist = tmp_path / "jieba-0.42.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        entry = tarfile.TarInfo("jieba-0.42.1/jieba/dict.txt")
        entry.size = len(dictionary)
        archive.addfile(entry, io.BytesIO(dictionary))
    out = tmp_path / "words.txt"
    script = ROOT / "scripts" / "make_words.py"
    for _ in range(2):  # the same archive gives the same file
        run = [sys.executable, str(script), str(sdist), "--top", "3", "--out", str(out)]
        subprocess.run(run, check=True, capture_output=True, timeout=60)
        assert out.read_text(encoding="utf-8") == "甲 9\n丙 5\n乙 5\n"


def test_a_missing_or_damaged_dictionary_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(SegmenterError, match=r"words.txt: the reader's dictionary cannot be read"):
        list(read_words(tmp_path / "words.txt"))
    damaged = tmp_path / "damaged.txt"
    damaged.write_text("了 883634\n是\n", encoding="utf-8")
    with pytest.raises(SegmenterError, match=r"damaged.txt:2: not a 'word frequency' line"):
        list(read_words(damaged))
