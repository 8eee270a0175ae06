"""Reading a data file into a frame of text cells (the first step of ``read_nonmem``).

:func:`load_source` takes the bytes of a CSV file and either returns every cell as the
text it is, or raises one :class:`~nlme_bayes.errors.DatasetError` that names the file and
the line: a binary format (spreadsheet, archive, PDF, HDF5), bytes that are not UTF-8 (a
byte-order mark may announce UTF-16 or UTF-32), NUL characters, unbalanced quotes, or a
line with more or fewer fields than the header.  Nothing is guessed (no encoding
detection), padded or cut.  Validation of the cells is :mod:`nlme_bayes.data_validation`.

Example
-------
>>> import pandas as pd
>>> frame, label = load_source(pd.DataFrame({" ID": [1], "TIME": [0.0], "DV": [2.5]}))
>>> list(frame.columns), label
(['ID', 'TIME', 'DV'], '<DataFrame>')
"""

from __future__ import annotations

import csv
import io
import os

import pandas as pd

from nlme_bayes.data_validation import MAX_LISTED
from nlme_bayes.errors import DatasetError

__all__ = ["load_source"]


def load_source(source: str | os.PathLike[str] | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Read a CSV file (every cell as text) or shallow-copy a DataFrame.

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A comma-separated file with a header row, or a DataFrame (never modified).

    Returns
    -------
    frame : pandas.DataFrame
        Columns named by the stripped header; for a file, every cell is text.
    label : str
        The file path, or ``"<DataFrame>"``.

    Raises
    ------
    DatasetError
        Empty file, a binary format (spreadsheet, archive, PDF, HDF5), bytes that are not
        UTF-8 (or the UTF-16/32 that a byte-order mark announces), a NUL character, a line
        with more or fewer fields than the header, or unbalanced quotes; each names the file
        and the line.

    Examples
    --------
    >>> import pandas as pd
    >>> frame, label = load_source(pd.DataFrame({" ID ": [1], "TIME": [0.0], "DV": [1.0]}))
    >>> list(frame.columns), label
    (['ID', 'TIME', 'DV'], '<DataFrame>')
    """
    if isinstance(source, pd.DataFrame):
        frame = source.copy(deep=False)
        frame.columns = [str(c).strip().lstrip("\ufeff").strip() for c in frame.columns]
        return frame, "<DataFrame>"
    label = os.fspath(source)
    with open(label, "rb") as handle:  # OSError (e.g. FileNotFoundError) passes through
        content = handle.read()
    text = _decode(content, label)
    if not text.strip():
        raise DatasetError(f"dataset {label} is empty: expected a header row and data rows")
    header, rows = _split_csv(text, label)
    frame = pd.DataFrame(rows, columns=range(len(header)), dtype=object)
    frame.columns = [c.strip().lstrip("\ufeff").strip() for c in header]
    return frame, label


def _split_csv(text: str, label: str) -> tuple[list[str], list[list[str]]]:
    """Header and data rows; every row must have as many fields as the header.

    Python's ``csv`` module (strict quoting) keeps every cell as the text it is; empty
    lines are skipped.  A line with too few or too many fields is an error naming the line,
    never padded or cut.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    lines: list[int] = []
    rows: list[list[str]] = []
    try:
        for row in reader:
            if row and not (len(row) == 1 and not row[0].strip()):  # skip blank lines
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise DatasetError(
            f"dataset {label} could not be parsed as CSV: {exc} at line {reader.line_num}; "
            "expected comma-separated values with a header row and the same number of "
            f"fields on every line (check the quotes){_separator_hint(text)}"
        ) from None
    header, data = rows[0], rows[1:]
    ragged = [i for i, row in enumerate(data) if len(row) != len(header)]
    if ragged:
        listed = ", ".join(f"line {lines[i + 1]} has {len(data[i])}" for i in ragged[:MAX_LISTED])
        more = f" ... ({len(ragged)} lines)" if len(ragged) > MAX_LISTED else ""
        raise DatasetError(
            f"dataset {label} could not be parsed as CSV: {listed}{more} field(s) but the "
            f"header has {len(header)}; expected comma-separated values with a header row "
            "and the same number of fields on every line (an empty cell or '.' for a "
            f"missing value; quote a text cell that holds a comma){_separator_hint(text)}"
        )
    return header, data


#: Leading bytes of files that are not CSV text, and what to say about them.
_FOREIGN_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE2 file (an Excel .xls workbook?)"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"%PDF", "a PDF document"),
    (b"PAR1", "a Parquet file"),
    (b"\x89HDF", "an HDF5/NetCDF file (an nlme_bayes results file? use nlme_bayes.load)"),
    (b"SQLite format 3", "an SQLite database"),
)

#: Byte-order marks and the encodings they announce (the UTF-32 ones first: they are longer).
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def _decode(content: bytes, label: str) -> str:
    """The file's text: UTF-8, or what a byte-order mark announces (UTF-8/16/32).

    Binary formats (spreadsheets, archives, PDF, HDF5), bytes that are not UTF-8 and NUL
    characters are refused with a message naming the line; no encoding is guessed.
    """
    for magic, what in _FOREIGN_FORMATS:
        if content.startswith(magic):
            raise DatasetError(
                f"dataset {label} is {what}, not CSV text; export the data as 'CSV UTF-8' "
                "(comma-separated values with a header row)"
            )
    encoding, skip = "utf-8", 0
    for bom, name in _BOMS:
        if content.startswith(bom):
            encoding, skip = name, len(bom)
            break
    try:
        text = content[skip:].decode(encoding)
    except UnicodeDecodeError as exc:
        line = content[: skip + exc.start].count(b"\n") + 1
        byte = exc.object[exc.start : exc.start + 1]
        raise DatasetError(
            f"dataset {label} is not {encoding.upper()} text: byte 0x{byte.hex()} at line "
            f"{line} ({exc.reason}); re-save it as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet "
            "program)"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DatasetError(
            f"dataset {label} contains a NUL character at line {line}: it is binary, or "
            "UTF-16 text without a byte-order mark; re-save it as 'CSV UTF-8'"
        )
    return text


def _separator_hint(text: str) -> str:
    """A hint when the header line looks semicolon- or tab-separated."""
    header = text.split("\n", 1)[0]
    if "," not in header and any(sep in header for sep in ";\t|"):
        return " (the header is not comma-separated: re-save the file as CSV)"
    return ""
