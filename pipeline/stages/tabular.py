"""Tables: read delimited text into a DataFrame, describe columns, make values JSON-plain."""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from pipeline.codegen.base import ColumnInfo
from pipeline.codegen.contract import column_key
from pipeline.errors import DatasetError
from pipeline.quoting import clip, name_list, quote
from pipeline.stages.csv_rows import fit_rows, lift_field_limit

log = logging.getLogger(__name__)

DELIMITERS = (",", ";", "\t")
ID_MIN_ROWS = 20  # fewer rows than this are too few to call a column an id


# -- CSV ------------------------------------------------------------------------------


@dataclass
class ParsedCsv:
    frame: pd.DataFrame  # headers trimmed
    warnings: list[str] = field(default_factory=list)
    # frame column -> its header as the file wrote it: users send rows keyed that way
    headers: dict[str, str] = field(default_factory=dict)


def parse_csv(data: bytes, label: str) -> ParsedCsv:
    """Bytes of a delimited text file -> a frame with clean headers, plus warnings."""
    text = _decode(data, label)
    if not text.strip():
        raise DatasetError(f"{label} is empty; it needs a header row and data rows.")
    if looks_like_html(text):
        raise DatasetError(
            f"{label} is a web page (HTML), not a CSV file. Link to the raw file instead "
            "(on GitHub, open the file and use the Raw button), or upload the CSV."
        )
    lift_field_limit()
    sep = sniff_delimiter(text)
    text, notes = fit_rows(text, sep, label)
    header = next(csv.reader(io.StringIO(text), delimiter=sep))
    names = [h.strip() or f"column_{i + 1}" for i, h in enumerate(header)]
    if len(names) < 2:
        raise DatasetError(
            f"{label} has a single column ({quote(names[0])}); TrainBot needs a target column "
            "and at least one feature column, separated by commas, semicolons or tabs."
        )
    _refuse_twins(names, label)
    try:
        with library_warnings_logged():
            frame = pd.read_csv(
                io.StringIO(text),
                sep=sep,
                header=0,
                index_col=False,
                skipinitialspace=True,
                decimal="," if sep == ";" else ".",
                na_values=["?"],
                low_memory=False,  # one dtype per column, not one per chunk (DtypeWarning)
            )
    except pd.errors.EmptyDataError as exc:
        raise DatasetError(f"{label} is empty; it needs a header row and data rows.") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        detail = clip(str(exc).strip().splitlines()[-1])
        raise DatasetError(
            f"{label} could not be read as CSV ({detail}). Check that every row has the "
            "same number of values as the header.",
            detail=clip(str(exc), 1_000),
        ) from exc
    if len(frame.columns) != len(names):
        raise DatasetError(
            f"{label} could not be read as CSV: its header row is malformed. "
            "Check the quotes in the first line."
        )
    frame.columns = names
    unnamed_empty = [n for n, h in zip(names, header, strict=True) if not h.strip()]
    unnamed_empty = [n for n in unnamed_empty if frame[n].isna().all()]
    if unnamed_empty:
        frame = frame.drop(columns=unnamed_empty)
        notes.append(f"Ignored {len(unnamed_empty)} empty column(s) without a name.")
    if frame.empty:
        raise DatasetError(f"{label} has a header but no data rows.")
    headers = {n: h for n, h in zip(names, header, strict=True) if h.strip() and n in frame}
    return ParsedCsv(_tidy_strings(frame), notes, headers)


@contextmanager
def library_warnings_logged() -> Iterator[None]:
    """pandas and numpy warnings (ParserWarning, DtypeWarning, FutureWarning...) raised in
    this thread go to the log, not to the user's console: they speak to programmers, and what
    matters to the user is already said in the job's own warnings.

    Jobs load their data in threads of one process, at once. `warnings.catch_warnings` swaps
    process-wide state and restores it on exit, so overlapping captures would have to take
    turns under a lock, and a job downloading its data set held every other job's loading up.
    Instead `warnings.showwarning` is routed by thread while any capture is open: this
    thread's warnings to the log, everyone else's where they went before. The filters are
    left as they are, so a warning the filters show once per place is logged once.
    """
    _route.enter()
    try:
        yield
    finally:
        _route.leave()


class _WarningRoute:
    """`warnings.showwarning` while any thread captures: each thread's own warnings go to the
    log, the rest to what it replaced. Installed by the first capture and put back by the last,
    under a lock held only for that, so the warnings machinery is left as it was found."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._replaced: Any = None
        self._mine = threading.local()
        self._show = self.show  # one bound method, so `is` can tell it apart from others

    def enter(self) -> None:
        with self._lock:
            if self._open == 0 and warnings.showwarning is not self._show:
                self._replaced = warnings.showwarning
                warnings.showwarning = self._show
            self._open += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1  # loaders nest captures

    def leave(self) -> None:
        self._mine.depth -= 1
        with self._lock:
            self._open -= 1
            # Put back only what is still ours: someone who replaced it since restores it.
            if self._open == 0 and warnings.showwarning is self._show:
                warnings.showwarning = self._replaced

    def show(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if getattr(self._mine, "depth", 0):
            log.info("library warning: %s: %s", category.__name__, clip(str(message)))
        else:
            self._replaced(message, category, filename, lineno, file, line)


_route = _WarningRoute()


def _refuse_twins(names: list[str], label: str) -> None:
    """Headers the live app could not tell apart, since it matches rows by `column_key`."""
    by_key: dict[str, list[str]] = {}
    for name in names:
        by_key.setdefault(column_key(name), []).append(name)
    twins = [sorted(set(group)) for group in by_key.values() if len(group) > 1]
    if not twins:
        return
    named = name_list([" / ".join(quote(n, 60) for n in group[:3]) for group in twins], limit=5)
    differ = any(len(group) > 1 for group in twins)
    raise DatasetError(
        f"{label} has more than one column named {named}"
        + (" (names that differ only in case or spaces count as the same)" if differ else "")
        + "; rename the columns so each name is used once."
    )


def _decode(data: bytes, label: str) -> str:
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise DatasetError(
            f"{label} is an Excel or zip file, not CSV; save it as CSV (comma separated) first."
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if "\x00" in text[:4096]:
        raise DatasetError(f"{label} is a binary file, not CSV; export the data as CSV first.")
    return text


def looks_like_html(text: str) -> bool:
    """True when text is a web page (an HTML sign-in or preview page instead of data)."""
    head = text[:2048].lstrip().lower()
    if head.startswith(("<!doctype html", "<html", "<?xml")):
        return True
    return head.startswith("<") and any(tag in head for tag in ("<head", "<body", "<html"))


def sniff_delimiter(text: str) -> str:
    """The separator (comma, semicolon or tab) that splits the first lines most evenly."""
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    best, best_score = ",", (False, 1)
    for delimiter in DELIMITERS:
        widths = [len(row) for row in csv.reader(lines, delimiter=delimiter)]
        consistent = sum(w == widths[0] for w in widths) >= 0.8 * len(widths)
        score = (consistent, widths[0])
        if widths[0] > 1 and score > best_score:
            best, best_score = delimiter, score
    return best


def _tidy_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Trim text cells; blank cells are missing; all-number text columns become numbers."""
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        if not series.map(lambda v: isinstance(v, str) or v is None or is_missing(v)).all():
            continue  # mixed cells (e.g. True/False with blanks) are left as parsed
        trimmed = series.str.strip().replace("", np.nan)
        numbers = pd.to_numeric(trimmed, errors="coerce")
        if numbers.notna().sum() == trimmed.notna().sum() and trimmed.notna().any():
            frame[column] = numbers
        else:
            frame[column] = trimmed
    return frame


# -- profiling ------------------------------------------------------------------------

_ID_NAME = re.compile(r"(^|[_\s-])(id|uuid|guid|key|index)$|^(id|index)([_\s-]|$)", re.I)
_DATE_TEXT = re.compile(
    r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2})?)?|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$"
)
_BOOL_WORDS = frozenset({"true", "false", "yes", "no", "y", "n", "t", "f"})


def profile_column(name: str, series: pd.Series) -> ColumnInfo:
    values = series.dropna()
    unique = int(values.nunique())
    examples = [plain_value(v) for v in list(pd.unique(values))[:3]]
    return ColumnInfo(
        name=name,
        dtype=str(series.dtype),
        kind=column_kind(name, values, unique),
        missing=int(series.isna().sum()),
        unique=unique,
        examples=examples,
    )


def column_kind(name: str, values: pd.Series, unique: int) -> str:
    """A hint for generators: number, category, date, id, text or bool."""
    n = len(values)
    all_distinct = n >= ID_MIN_ROWS and unique == n
    if pd.api.types.is_bool_dtype(values):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "date"
    if pd.api.types.is_numeric_dtype(values):
        if all_distinct and is_whole(values):
            consecutive = float(values.max()) - float(values.min()) == n - 1
            if consecutive or _ID_NAME.search(name):
                return "id"
        return "number"
    if n == 0:
        return "category"
    texts = values.astype(str).str.strip()
    if unique <= 2 and set(texts.str.lower()) <= _BOOL_WORDS:
        return "bool"
    sample = texts.head(200)
    if sample.str.match(_DATE_TEXT).mean() >= 0.9:
        return "date"
    words = sample.str.split().str.len().mean()
    if words >= 4 and unique > n / 2:
        return "text"
    if all_distinct:
        return "id" if words < 2 else "text"
    return "category"


def is_whole(values: pd.Series) -> bool:
    numbers = values.dropna().astype("float64")
    return bool(np.all(np.isfinite(numbers)) and np.all(np.mod(numbers, 1) == 0))


# -- plain JSON values ----------------------------------------------------------------


def is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def plain_value(value: Any) -> Any:
    """A JSON-ready Python value: numpy/pandas scalars converted, NaN/NaT/NA -> None."""
    if value is None or is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        return value
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    return str(value)


def plain_row(row: dict[Any, Any]) -> dict[str, Any]:
    return {str(k): plain_value(v) for k, v in row.items()}


def sorted_plain(values: Any) -> list[Any]:
    plain = [plain_value(v) for v in values]
    try:
        return sorted(plain)
    except TypeError:
        return sorted(plain, key=str)
