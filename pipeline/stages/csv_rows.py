"""Row checks on delimited text before pandas reads it: quotes, value lengths, ragged rows.

pandas forgives too much here: a row with an extra value loses it silently (or, as the first
row, shifts the columns), a short row gets blanks and its stray value becomes a class of the
target, and an unclosed quote turns the rest of the file into one value. These checks read
the text once with the csv module (which tokenises as pandas does: `"` quotes, `""` escapes)
and either refuse the file in plain words or hand pandas only the rows that fit the header.

Rows are numbered as a spreadsheet shows them: the header is row 1, a blank line is a row,
and a quoted value over several lines stays one row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field

from pipeline.errors import DatasetError
from pipeline.quoting import MAX_QUOTE, quote

# The csv module's own default field limit. A longer value is nearly always a quote opened
# and never closed; and the live app must be able to receive a held-out row.
MAX_VALUE_CHARS = 131_072
# Rows with the wrong number of values that are dropped with a warning: a footer line or a
# stray paste. Past 1% (or one row in a small file) the fault is systematic (a text column
# with unquoted commas, the wrong separator, files of different layouts glued together) and
# the rows left would not be a fair sample, so the file is refused.
MAX_RAGGED_SHARE = 0.01
SHOWN_ROWS = 5  # row numbers a message lists before "and N more"
# A quoted value over more lines than this is most likely a quote closed far too late (it
# swallowed the rows in between); it is read as it is, with a warning.
LONG_VALUE_LINES = 50

# The csv module's limit applies process-wide and its error names neither row nor column;
# the text is already in memory (capped by the data set size limit), so nothing is saved by
# it. Raising it lets us name the value and apply MAX_VALUE_CHARS ourselves.
_CSV_LIMIT = 2**31 - 1  # fits a C long everywhere


@dataclass
class _Record:
    row: int  # as a spreadsheet numbers it; the header is row 1
    fields: list[str]
    first_line: int  # the line of the file it starts on, from 1
    lines: int  # how many lines of the file it spans


@dataclass
class _Scan:
    width: int = 0
    rows: int = 0  # data rows with any value
    ragged: list[_Record] = field(default_factory=list)  # the first SHOWN_ROWS of them
    n_ragged: int = 0
    rewrite: bool = False  # pandas must read a cleaned copy
    tall: _Record | None = None  # the first row over more than LONG_VALUE_LINES lines


def fit_rows(text: str, sep: str, label: str) -> tuple[str, list[str]]:
    """The text pandas should read, and warnings; a `DatasetError` when the file is unfit."""
    scan = _scan(text, sep, label)
    allowed = max(1, int(scan.rows * MAX_RAGGED_SHARE))
    if scan.n_ragged > allowed:
        first = scan.ragged[0]
        raise DatasetError(
            f"{label} could not be read as CSV: {scan.n_ragged:,} of {scan.rows:,} rows do not "
            f"have the {scan.width} values the header has ({_row_list(scan)}; for example "
            f"{_described(first, sep)}). A value that contains {_SEPARATOR_NAMES.get(sep, sep)} "
            "must be in double quotes. TrainBot drops such rows only when they are at most "
            f"{MAX_RAGGED_SHARE:.0%} of the file."
        )
    warnings = []
    if scan.tall is not None:
        warnings.append(
            f"Row {scan.tall.row} has a value over {scan.tall.lines:,} lines: a quote "
            f"opened in {quote(sep.join(scan.tall.fields), 120)} closes only that much later, "
            "and the rows in between read as part of that value. If that is not meant, close "
            "the quote where the value ends."
        )
    if not scan.rewrite:
        return text, warnings
    if scan.n_ragged:
        warnings.append(
            f"Dropped {scan.n_ragged} row{'s' if scan.n_ragged > 1 else ''} with the wrong "
            f"number of values ({_row_list(scan)}; the header has {scan.width}), "
            f"for example {_described(scan.ragged[0], sep)}."
        )
    return _rewrite(text, sep, scan.width), warnings


_SEPARATOR_NAMES = {",": "a comma", ";": "a semicolon", "\t": "a tab"}


def lift_field_limit() -> None:
    """Let the csv module read values of any length (see _CSV_LIMIT); only ever raises it."""
    if csv.field_size_limit() < _CSV_LIMIT:
        csv.field_size_limit(_CSV_LIMIT)


def _records(text: str, sep: str) -> Iterator[_Record]:
    lift_field_limit()
    # skipinitialspace as pandas reads it, so both split a row the same way.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, skipinitialspace=True)
    done = 0  # lines read before this record
    for row, fields in enumerate(reader, start=1):
        yield _Record(row, fields, done + 1, reader.line_num - done)
        done = reader.line_num


def _raw(text: str, record: _Record) -> str:
    """The record's text as the file has it (only read again for a message)."""
    lines = io.StringIO(text, newline="").readlines()
    return "".join(lines[record.first_line - 1 : record.first_line - 1 + record.lines])


def _scan(text: str, sep: str, label: str) -> _Scan:
    lift_field_limit()
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, skipinitialspace=True)
    scan = _Scan()
    header: list[str] = []
    last: _Record | None = None
    done = 0  # lines read before this row
    # One pass over every row of a file of up to the size limit: the common case (the right
    # number of short values on one line) costs a few comparisons and builds no objects.
    for row, fields in enumerate(reader, start=1):
        lines = reader.line_num - done
        first_line, done = done + 1, reader.line_num
        if (
            lines == 1
            and len(fields) == scan.width
            and max(map(len, fields), default=0) <= MAX_VALUE_CHARS
            and header
        ):
            scan.rows += 1
            last = None  # a one-line row cannot end inside a quote
            continue
        record = last = _Record(row, fields, first_line, lines)
        if not header:
            if not fields:
                continue  # blank lines before the header: pandas skips them too
            header = fields
            _check_header(text, record, label)
            scan.width = len(header)
            continue
        if fields and max(map(len, fields)) > MAX_VALUE_CHARS:
            _refuse_long_value(text, record, header, sep, label)
        kind = _kind(fields, scan.width)
        if kind == "blank":
            continue
        scan.rows += 1
        if lines > LONG_VALUE_LINES and scan.tall is None:
            scan.tall = record
        if kind == "trim":
            scan.rewrite = True
        elif kind == "ragged":
            scan.rewrite = True
            scan.n_ragged += 1
            if len(scan.ragged) < SHOWN_ROWS:
                scan.ragged.append(record)
    if last is not None and last.lines > 1 and _ends_in_quote(_raw(text, last), sep):
        raise DatasetError(
            f"{label} could not be read: row {last.row} opens a quote that is never closed, so "
            f"the rest of the file reads as one value. Row {last.row} begins "
            f"{quote(_first_line(_raw(text, last)))}. Close the quote or remove it."
        )
    return scan


def _first_line(text: str) -> str:
    return text[: 4 * MAX_QUOTE].splitlines()[0] if text.strip() else ""


def _check_header(text: str, record: _Record, label: str) -> None:
    if record.lines > 1:
        raise DatasetError(
            f"{label} could not be read: the header row opens a quote that is not closed on "
            "that line, so the lines after it read as part of a column name. The header "
            f"reads {quote(_first_line(_raw(text, record)))}. Close or remove the quote "
            "(column names cannot contain line breaks)."
        )
    for i, name in enumerate(record.fields):
        if len(name) > MAX_VALUE_CHARS:
            raise DatasetError(
                f"{label} could not be read: the name of column {i + 1} in the header row is "
                f"longer than {MAX_VALUE_CHARS:,} characters ({quote(name, 60)}). Check that "
                "the first line is a header row with short column names."
            )


def _refuse_long_value(text: str, record: _Record, header: list[str], sep: str, label: str) -> None:
    for i, value in enumerate(record.fields):
        if len(value) <= MAX_VALUE_CHARS:
            continue
        column = quote(header[i].strip()) if i < len(header) else f"number {i + 1}"
        message = (
            f"{label} could not be read: a value in column {column}, row {record.row} is "
            f"longer than {MAX_VALUE_CHARS:,} characters"
        )
        if "\n" in value:
            closed = (
                "is never closed, so the rest of the file reads"
                if _ends_in_quote(_raw(text, record), sep)
                else f"is closed only {record.lines - 1:,} lines later, so those lines read"
            )
            message += f": it opens a quote that {closed} as one value. Close or remove the quote."
        else:
            message += f" ({quote(value, 60)}); shorten it or leave the column out."
        raise DatasetError(message)


def _kind(fields: list[str], width: int) -> str:
    if all(not f.strip() for f in fields) and len(fields) != width:
        return "blank"  # no data: a blank line, or only separators and spaces
    if len(fields) == width:
        return "ok"
    if len(fields) > width and all(not f.strip() for f in fields[width:]):
        return "trim"  # a separator at the end of the line (many exports write one)
    return "ragged"


def _ends_in_quote(raw: str, sep: str) -> bool:
    """True when the text ends inside a quoted value (the csv module's strict mode says so)."""
    reader = csv.reader(
        io.StringIO(raw, newline=""),
        delimiter=sep,
        skipinitialspace=True,
        strict=True,
    )
    try:
        for _ in reader:
            pass
    except csv.Error as error:
        return "unexpected end of data" in str(error)
    return False


def _rewrite(text: str, sep: str, width: int) -> str:
    """The text with ragged and blank rows left out and trailing empty values cut."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=sep, lineterminator="\n")
    header_seen = False
    for record in _records(text, sep):
        if not header_seen:
            if record.fields:
                writer.writerow(record.fields)
                header_seen = True
            continue
        kind = _kind(record.fields, width)
        if kind in ("ok", "trim"):
            writer.writerow(record.fields[:width])
    return out.getvalue()


def _row_list(scan: _Scan) -> str:
    rows = [str(r.row) for r in scan.ragged]
    more = scan.n_ragged - len(rows)
    if more:
        return f"rows {', '.join(rows)} and {more:,} more"
    if len(rows) == 1:
        return f"row {rows[0]}"
    return f"rows {', '.join(rows[:-1])} and {rows[-1]}"


def _described(record: _Record, sep: str) -> str:
    count = len(record.fields)
    text = f"row {record.row} has {count} value{'s' if count != 1 else ''}"
    if record.lines > 1:
        text += f" over {record.lines} lines (check its quotes)"
    return f"{text}: {quote(sep.join(record.fields), 120)}"
