"""CSV files at the exchange's edges: read a table with line numbers for the messages, write
rows the same way everywhere (UTF-8, ``\\n`` line ends).

Every input file of the exchange (order files, accounts, emissions, populations, histories,
tokens) is read the same way: UTF-8 with or without a BOM, a header row, blank rows skipped,
every data row as wide as the header, and any problem raised as the caller's error class,
naming the file and line.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
>>> write_csv(p, [["account", "cash"], ["A001", "10.00"], [], ["A002", "5"]])
>>> header, rows = read_csv(p, "an accounts file", ValueError)
>>> header, rows
(['account', 'cash'], [(2, ['A001', '10.00']), (4, ['A002', '5'])])
>>> _ = p.write_text("account,cash\\nA003\\n")
>>> read_csv(p, "an accounts file", ValueError)
Traceback (most recent call last):
...
ValueError: ...t.csv:2: 1 fields, the header has 2
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable


def read_rows(path: str | os.PathLike, what: str, error: type[Exception],
              header: list[str] | None = None) -> list[list[str]]:
    """Every row of a UTF-8 CSV file (a BOM allowed), header first, as written; ``error``
    (naming the file and ``what`` it should be, or the ``header`` expected) if it is missing,
    unreadable, binary, not CSV or empty."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{path}: not a UTF-8 CSV file") from None
    if "\x00" in text:
        raise error(f"{path}: not a CSV file (binary content)")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise error(f"{path}: not a valid CSV file: {e}") from None
    if not rows:
        expected = f"the header {','.join(header)}" if header else what
        raise error(f"{path}: empty file, expected {expected}")
    return rows


def read_csv(path: str | os.PathLike, what: str, error: type[Exception],
             same_width: bool = True) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header with its names stripped, [(line number, fields)]) of a CSV table; blank rows
    are skipped; with ``same_width`` a row of another width than the header is an error."""
    rows = read_rows(path, what, error)
    header = [h.strip() for h in rows[0]]
    body = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in row):
            continue
        if same_width and len(row) != len(header):
            raise error(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        body.append((line, row))
    return header, body


def write_csv(path: str | os.PathLike, rows: Iterable[Iterable]) -> None:
    """Write ``rows`` (the header first) as a UTF-8 CSV file with ``\\n`` line ends; an empty
    row is written as a blank line."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
