"""Every file of the bad-data corpus (tests/data/bad) gets its own clear DatasetError.

The corpus and the expected messages are written by ``tests/data/bad/make_corpus.py``
(``EXPECTED.toml``); each message must say what is wrong and where (column, row and subject
ID, or the line for faults of the file itself), and nothing but a ``DatasetError`` may
come out of ``read_nonmem``.
"""

from __future__ import annotations

import re
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nlme_bayes.data import read_nonmem
from nlme_bayes.errors import DatasetError

BAD = Path(__file__).parent / "data" / "bad"
EXPECTED = tomllib.loads((BAD / "EXPECTED.toml").read_text(encoding="utf-8"))


def test_the_corpus_is_complete() -> None:
    files = {p.name for p in BAD.glob("*.csv")}
    assert files == set(EXPECTED), "every bad file needs an entry in EXPECTED.toml, and back"
    assert len(files) >= 30


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_gets_its_message(name: str) -> None:
    case = EXPECTED[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning may stand in for the error
        with pytest.raises(DatasetError, match=case["match"]) as info:
            read_nonmem(BAD / name)
    message = str(info.value)
    assert name in message, "the message names the file"
    for line in info.value.violations:
        if re.search(r"\brows? \d", line):
            assert re.search(r"\bIDs? \S", line), "a row-level problem names the subject"


# ------------------------------------------------------------------ good files, read exactly


def test_utf16_and_utf8_byte_order_marks_are_read(tmp_path) -> None:
    text = "ID,TIME,DV,AMT\n1,0,.,100\n1,1.5,5.25,0\n"
    (tmp_path / "plain.csv").write_text(text, encoding="utf-8")
    expected = read_nonmem(tmp_path / "plain.csv")
    for encoding in ("utf-8-sig", "utf-16", "utf-16-be", "utf-32"):
        path = tmp_path / f"{encoding}.csv"
        data = text.encode(encoding)
        if encoding == "utf-16-be":
            data = b"\xfe\xff" + data
        path.write_bytes(data)
        got = read_nonmem(path)
        pd.testing.assert_frame_equal(got.records, expected.records)


def test_large_integer_ids_are_kept_exactly(tmp_path) -> None:
    path = tmp_path / "ids.csv"
    # 2**53 + 1 and 2**53 are one float64 apart from each other: read as ints, never merged
    path.write_text("ID,TIME,DV\n9007199254740993,0,1\n9007199254740992,0,2\n")
    assert read_nonmem(path).subject_ids == (9007199254740993, 9007199254740992)
    # beyond int64: kept as the text it is
    path.write_text("ID,TIME,DV\n123456789012345678901,0,1\n123456789012345678902,0,2\n")
    assert read_nonmem(path).subject_ids == ("123456789012345678901", "123456789012345678902")
    frame = pd.DataFrame({"ID": np.array([2**62 + 1, 2**62], dtype=np.int64),
                          "TIME": [0.0, 0.0], "DV": [1.0, 2.0]})  # fmt: skip
    assert read_nonmem(frame).subject_ids == (2**62 + 1, 2**62)
    frame["ID"] = np.array([2**64 - 1, 2**64 - 2], dtype=np.uint64)
    assert read_nonmem(frame).subject_ids == (str(2**64 - 1), str(2**64 - 2))
    frame["ID"] = [1e20, 2e20]
    assert read_nonmem(frame).subject_ids == (1e20, 2e20)


def test_dataframe_faults_are_dataset_errors() -> None:
    base = {"ID": [1, 1], "TIME": [0.0, 1.0], "DV": [1.0, 2.0]}
    with pytest.raises(DatasetError, match=r"DV: non-numeric values '\(1\+1j\)', '\(2\+0j\)'"):
        read_nonmem(pd.DataFrame({**base, "DV": [1 + 1j, 2 + 0j]}))
    with pytest.raises(DatasetError, match=r"TIME: non-numeric values '2020-01-01'"):
        read_nonmem(pd.DataFrame({**base, "TIME": pd.to_datetime(["2020-01-01", "2020-01-02"])}))
    with pytest.raises(DatasetError, match=r"ID: '1' and '1.0' are the same number"):
        read_nonmem(pd.DataFrame({**base, "ID": pd.Series([1, "1.0"], dtype=object)}))
    with pytest.raises(DatasetError, match=r"columns: duplicate column names 'DV', 'DV'"):
        read_nonmem(pd.DataFrame([[1, 0.0, 1.0, 2.0]], columns=["ID", "TIME", "DV", "DV"]))
