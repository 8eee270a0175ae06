"""Write the corpus of bad NONMEM data files and EXPECTED.toml (what read_nonmem must say).

Run it from anywhere (``python tests/data/bad/make_corpus.py``) after changing a case; the
files it writes are committed, and ``tests/test_bad_files.py`` reads every one of them.
Each case: file name, content (text or bytes), what is wrong, and a regular expression
that the DatasetError message must match (it names the column, the row and the subject ID,
or for file-level faults the line).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
HEAD = "ID,TIME,DV,AMT\n"
DOSE = "1,0,.,100\n"

CASES: list[tuple[str, str | bytes, str, str]] = [
    # --- file-level faults: encoding, format, shape
    ("empty.csv", "", "an empty file", r"empty\.csv is empty"),
    ("whitespace_only.csv", "  \n\n \n", "only blank lines", r"is empty"),
    ("header_only.csv", HEAD, "a header and no data", r"has no data rows"),
    (
        "latin1_bytes.csv",
        "ID,TIME,DV,AMT,CENTRE\n1,0,.,100,Malm\u00f6\n".encode("latin-1"),
        "Latin-1 bytes (a spreadsheet's 'CSV' export)",
        r"is not UTF-8 text: byte 0xf6 at line 2",
    ),
    (
        "cp1252_mu.csv",
        "ID,TIME,DV,AMT,UNIT\n1,0,.,100,\u00b5g\n".encode("cp1252"),
        "Windows-1252 bytes (micro sign)",
        r"is not UTF-8 text: byte 0xb5 at line 2",
    ),
    (
        "utf16_without_bom.csv",
        (HEAD + DOSE).encode("utf-16-le"),
        "UTF-16 text without a byte-order mark",
        r"contains a NUL character at line 1.*UTF-16",
    ),
    (
        "bad_bytes_after_bom.csv",
        b"\xef\xbb\xbf" + HEAD.encode() + b"1,0,.,1\xff0\n",
        "a UTF-8 byte-order mark, then invalid bytes",
        r"is not UTF-8 text: byte 0xff at line 2",
    ),
    (
        "xlsx_renamed.csv",
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00[Content_Types].xml",
        "an Excel workbook renamed to .csv",
        r"is a ZIP archive \(an Excel \.xlsx workbook\?\), not CSV text",
    ),
    (
        "xls_renamed.csv",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(24),
        "an old Excel .xls workbook",
        r"is an OLE2 file \(an Excel \.xls workbook\?\)",
    ),
    (
        "gzipped.csv",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(10),
        "a gzip-compressed file",
        r"is gzip-compressed, not CSV text",
    ),
    ("pdf_renamed.csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF", r"is a PDF document"),
    (
        "nul_byte.csv",
        HEAD + "1,0,.,100\n1,1,5\x00,0\n",
        "a NUL character inside a cell",
        r"contains a NUL character at line 3",
    ),
    (
        "semicolon_separated.csv",
        "ID;TIME;DV;AMT\n1;0;.;100\n1;1;5;0\n",
        "semicolons (a European spreadsheet export)",
        r"does not seem to be comma-separated",
    ),
    (
        "semicolon_decimal_comma.csv",
        "ID;TIME;DV;AMT\n1;0;.;100\n1;1;5,3;0\n",
        "semicolons and decimal commas",
        r"could not be parsed as CSV: line 3 has 2 field\(s\) but the header has 1.*not "
        r"comma-separated",
    ),
    (
        "tab_separated.csv",
        "ID\tTIME\tDV\tAMT\n1\t0\t.\t100\n",
        "tabs",
        r"does not seem to be comma-separated",
    ),
    (
        "short_line.csv",
        HEAD + DOSE + "1,1,5\n",
        "a line with fewer fields than the header (never padded)",
        r"line 3 has 3 field\(s\) but the header has 4",
    ),
    (
        "long_line_unquoted_thousands.csv",
        HEAD + "1,0,.,1,000\n",
        "an unquoted thousands separator splits a number in two",
        r"line 2 has 5 field\(s\) but the header has 4",
    ),
    (
        "unbalanced_quote.csv",
        HEAD + '1,0,.,"100\n1,1,5,0\n',
        "an opening quote that never closes",
        r"could not be parsed as CSV: unexpected end of data at line 3",
    ),
    # --- columns
    (
        "no_id_column.csv",
        "SUBJ,TIME,DV\n1,0,5\n",
        "no ID column",
        r"missing required column\(s\) ID.*column_map",
    ),
    (
        "hash_header.csv",
        "#ID,TIME,DV,AMT\n" + DOSE,
        "NONMEM's IGNORE=# comment mark on the header",
        r"missing required column\(s\) ID.*remove the '#'",
    ),
    (
        "duplicate_column.csv",
        "ID,TIME,DV,AMT,DV\n1,0,.,100,.\n",
        "DV twice",
        r"columns: duplicate column names 'DV', 'DV'",
    ),
    (
        "duplicate_column_case.csv",
        "ID,TIME,DV,AMT,dv\n1,0,.,100,.\n",
        "DV and dv (names are case-insensitive)",
        r"columns: duplicate column names 'DV', 'dv'",
    ),
    (
        "reserved_column.csv",
        "ID,TIME,DV,ROW\n1,0,5,1\n",
        "a column named ROW",
        r"columns: 'ROW' is a reserved name",
    ),
    (
        "unnamed_column.csv",
        "ID,TIME,DV,\n1,0,5,7\n",
        "a column without a header that holds data",
        r"columns: column\(s\) 4 \(counted from 1\) have no name but hold data",
    ),
    # --- cells: numbers
    (
        "decimal_comma_quoted.csv",
        HEAD + DOSE + '1,1,"5,3",0\n',
        "a quoted decimal comma",
        r"DV: non-numeric value '5,3' at row 2 \(ID 1\); write numbers with a decimal point",
    ),
    (
        "thousands_separator_quoted.csv",
        HEAD + '1,0,.,"1,000"\n',
        "a quoted thousands separator",
        r"AMT: non-numeric value '1,000' at row 1 \(ID 1\); write numbers with a decimal point",
    ),
    (
        "covariate_decimal_comma.csv",
        'ID,TIME,DV,AMT,WT\n1,0,.,100,"70,5"\n1,1,5,0,"70,5"\n',
        "a covariate written with decimal commas (would otherwise become a category)",
        r"WT: every value is a number written with a comma \('70,5'\) at rows 1, 2 \(ID 1\)",
    ),
    (
        "covariate_mixed.csv",
        "ID,TIME,DV,AMT,WT\n1,0,.,100,70\n1,1,5,0,seventy\n",
        "a covariate mixing numbers and text",
        r"WT: mixes numbers and text \(non-numeric 'seventy'\) at row 2 \(ID 1\)",
    ),
    (
        "excel_error_value.csv",
        HEAD + DOSE + "1,1,#DIV/0!,0\n",
        "a spreadsheet error value",
        r"DV: non-numeric value '#DIV/0!' at row 2 \(ID 1\); .*spreadsheet errors",
    ),
    (
        "clock_time.csv",
        HEAD + "1,08:00,.,100\n1,09:30,5,0\n",
        "clock times in TIME",
        r"TIME: non-numeric values '08:00', '09:30' at rows 1, 2 \(ID 1\); a clock time",
    ),
    (
        "underscore_digits.csv",
        HEAD + "1,0,.,1_000\n",
        "Python-style digit grouping (float() would accept it)",
        r"AMT: non-numeric value '1_000' at row 1 \(ID 1\); write plain ASCII digits",
    ),
    (
        "fullwidth_digits.csv",
        HEAD + "1,0,.,\uff11\uff10\uff10\n",
        "full-width digits (float() would accept them)",
        r"AMT: non-numeric value '\uff11\uff10\uff10' at row 1 \(ID 1\); write plain ASCII",
    ),
    (
        "nan_uppercase.csv",
        HEAD + DOSE + "1,1,NAN,0\n",
        "NAN is not one of the missing-value spellings",
        r"DV: non-numeric value 'NAN' at row 2 \(ID 1\)",
    ),
    (
        "infinite_dv.csv",
        HEAD + DOSE + "1,1,inf,0\n",
        "inf",
        r"DV: infinite value at row 2 \(ID 1\)",
    ),
    (
        "overflow_amt.csv",
        HEAD + "1,0,.,1e400\n",
        "a number beyond float64",
        r"AMT: infinite value at row 1 \(ID 1\)",
    ),
    # --- IDs
    ("missing_id.csv", HEAD + DOSE + ",1,5,0\n", "an empty ID", r"ID: missing value at row 2"),
    ("infinite_id.csv", HEAD + "inf,0,5,0\n", "an infinite ID", r"ID: infinite value at row 1"),
    (
        "id_two_spellings.csv",
        HEAD + "01,0,.,100\n1,1,5,0\n",
        "one subject written 01 and 1 (never merged silently)",
        r"ID: '01' and '1' are the same number written differently at rows 1, 2 \(ID 1\)",
    ),
    (
        "non_contiguous_ids.csv",
        HEAD + "1,0,.,100\n2,0,.,100\n1,1,5,0\n2,1,4,0\n",
        "a subject's records split by another's",
        r"ID: a subject's records are split.*ID 1 reappears at row 3",
    ),
    # --- records
    ("missing_time.csv", HEAD + "1,.,.,100\n", "no TIME", r"TIME: missing value at row 1 \(ID 1\)"),
    (
        "negative_time.csv",
        HEAD + "1,-1,.,100\n",
        "negative TIME",
        r"TIME: negative value -1 at row 1",
    ),
    (
        "unsorted_time.csv",
        HEAD + "1,2,5,0\n1,0,.,100\n",
        "TIME decreasing within a subject",
        r"TIME: decreases within a subject \(e\.g\. 2 -> 0 at row 2\) at row 2 \(ID 1\)",
    ),
    (
        "invalid_evid.csv",
        "ID,TIME,DV,AMT,EVID\n1,0,.,100,5\n",
        "EVID 5",
        r"EVID: invalid value 5 at row 1 \(ID 1\)",
    ),
    (
        "invalid_mdv.csv",
        "ID,TIME,DV,AMT,MDV\n1,0,.,100,1\n1,1,5,0,2\n",
        "MDV 2",
        r"MDV: invalid value 2 at row 2 \(ID 1\)",
    ),
    (
        "dose_without_amt.csv",
        "ID,TIME,DV,AMT,EVID\n1,0,.,.,1\n",
        "EVID 1 and no AMT",
        r"AMT: missing on dose record\(s\) \(EVID 1 or 4\) at row 1 \(ID 1\)",
    ),
    (
        "negative_amt.csv",
        "ID,TIME,DV,AMT,EVID\n1,0,.,-5,1\n",
        "a negative dose",
        r"AMT: non-positive value -5 on dose record\(s\).* at row 1 \(ID 1\)",
    ),
    (
        "observation_without_dv.csv",
        "ID,TIME,DV,AMT,EVID,MDV\n1,0,.,100,1,1\n1,1,.,0,0,0\n",
        "MDV 0 and no DV",
        r"DV: missing on observation record\(s\) \(EVID 0, MDV 0\) at row 2 \(ID 1\)",
    ),
    (
        "addl_without_ii.csv",
        "ID,TIME,DV,AMT,ADDL\n1,0,.,100,3\n",
        "additional doses with no interval",
        r"II: missing or non-positive interval with ADDL > 0 at row 1 \(ID 1\)",
    ),
    (
        "negative_rate.csv",
        "ID,TIME,DV,AMT,RATE\n1,0,.,100,-3\n",
        "RATE -3",
        r"RATE: negative value -3 at row 1 \(ID 1\)",
    ),
    (
        "modelled_rate.csv",
        "ID,TIME,DV,AMT,RATE\n1,0,.,100,-2\n",
        "RATE -2 (modelled duration)",
        r"RATE: -1 \(modelled rate\) / -2 \(modelled duration\) is not supported yet at row 1",
    ),
    (
        "invalid_ss.csv",
        "ID,TIME,DV,AMT,SS,II\n1,0,.,100,3,12\n",
        "SS 3",
        r"SS: invalid value 3 at row 1 \(ID 1\)",
    ),
    (
        "fractional_cmt.csv",
        "ID,TIME,DV,AMT,CMT\n1,0,.,100,1.5\n",
        "CMT 1.5",
        r"CMT: negative or non-integer value 1\.5 at row 1 \(ID 1\)",
    ),
    (
        "fractional_dvid.csv",
        "ID,TIME,DV,AMT,DVID\n1,0,.,100,1\n1,1,5,0,1.5\n",
        "DVID 1.5",
        r"DVID: non-integer value 1\.5 at row 2 \(ID 1\)",
    ),
]


def _toml_string(text: str) -> str:
    """A TOML literal string ('...'), or a basic one when the text holds a quote."""
    if "'" not in text and "\n" not in text:
        return f"'{text}'"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main() -> None:
    lines = [
        "# Bad NONMEM data files and the DatasetError read_nonmem must raise for each.",
        "# Written by make_corpus.py (edit the cases there and re-run it).",
        "",
    ]
    for name, content, what, match in CASES:
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (HERE / name).write_bytes(data)
        lines += [f"[{_toml_string(name)}]", f"what = {_toml_string(what)}"]
        lines += [f"match = {_toml_string(match)}", ""]
    (HERE / "EXPECTED.toml").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
