"""Hostile CSV input: overlong values, unclosed quotes, ragged rows, pandas' own warnings.

Every refusal is a `DatasetError` in plain words whose length stays bounded however large
the file is; nothing else escapes (no csv.Error, no pandas warning on stderr).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.errors import DatasetError
from pipeline.netguard import UrlGuard
from pipeline.quoting import MAX_QUOTE, clip, quote, quote_list
from pipeline.stages.csv_rows import MAX_RAGGED_SHARE, MAX_VALUE_CHARS
from pipeline.stages.dataset import LoadedDataset, load_dataset
from pipeline.stages.tabular import parse_csv

# A message may name a file, a column and a few rows, but never carry a file's worth of data.
MESSAGE_BOUND = 1_200


def no_dns(host: str, *args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"unit tests must not resolve {host!r}")


def lines(n: int, start: int = 0) -> list[str]:
    """Data rows for the header "size,colour,label"; label is the target (a or b)."""
    return [f"{i},{['red', 'blue'][i % 2]},{'ab'[i % 3 == 0]}" for i in range(start, start + n)]


def write(path: Path, rows: list[str], header: str = "size,colour,label") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def load(path: Path, tmp_path: Path, target: str = "label") -> LoadedDataset:
    return load_dataset(
        str(path),
        target=target,
        guard=UrlGuard(resolver=no_dns),
        max_bytes=10_000_000,
        workdir=tmp_path / "work",
    )


def refusal(path: Path, tmp_path: Path, target: str = "label") -> str:
    with pytest.raises(DatasetError) as caught:
        load(path, tmp_path, target)
    message = str(caught.value)
    assert len(message) <= MESSAGE_BOUND, message[:2000]
    assert len(caught.value.detail) <= MESSAGE_BOUND
    return message


# -- the clipping helper --------------------------------------------------------------


def test_clip_keeps_short_text_and_cuts_long_text_with_an_ellipsis() -> None:
    assert clip("abc") == "abc"
    long = clip("x" * 10_000)
    assert len(long) == MAX_QUOTE and long.endswith("…")
    assert clip("a\nb\tc\x00d") == "a b c d", "control characters would break a message's layout"


def test_quote_and_quote_list_stay_short() -> None:
    assert quote("plan") == "'plan'"
    assert quote(3) == "'3'"
    assert len(quote("y" * 10_000)) <= MAX_QUOTE + 2
    listed = quote_list(["n" * 5_000] * 50)
    assert len(listed) <= 2 * MAX_QUOTE + 40 and "more" in listed


# -- values longer than the csv module's limit -----------------------------------------


def test_a_value_over_the_limit_names_its_column_and_row(tmp_path: Path) -> None:
    rows = lines(30)
    rows[4] = f"4,{'r' * (MAX_VALUE_CHARS + 1)},a"
    message = refusal(write(tmp_path / "long.csv", rows), tmp_path)
    assert f"a value in column 'colour', row 6 is longer than {MAX_VALUE_CHARS:,} characters" in (
        message
    )
    assert "long.csv" in message


def test_a_value_at_the_limit_is_read(tmp_path: Path) -> None:
    rows = lines(30)
    rows[4] = f"4,{'r' * MAX_VALUE_CHARS},a"
    loaded = load(write(tmp_path / "edge.csv", rows), tmp_path)
    assert loaded.spec.n_rows + len(loaded.holdout) == 30


def test_a_long_value_made_by_an_unclosed_quote_says_so(tmp_path: Path) -> None:
    rows = lines(15_000)
    rows[2] = '2,"red,a'  # the quote swallows the following lines until the last one
    rows[-1] = '14999,blue",a'
    message = refusal(write(tmp_path / "q.csv", rows), tmp_path)
    assert "column 'colour', row 4" in message
    assert "quote" in message


def test_a_single_enormous_line_is_refused_plainly(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("a" * 300_000 + "\n1\n")
    message = refusal(path, tmp_path)
    assert "one.csv" in message and "longer than" in message


def test_a_quote_that_swallows_many_rows_is_pointed_out(tmp_path: Path) -> None:
    rows = lines(3000)
    rows[2] = '2,"red,a'  # closed on the last line: one row of 3 values over 2,998 lines
    rows[-1] = '2999,blue",a'
    path = write(tmp_path / "q.csv", rows)
    with pytest.raises(DatasetError, match="usable rows"):
        load(path, tmp_path)
    warnings = parse_csv(path.read_bytes(), "q.csv").warnings
    assert any("Row 4 has a value over 2,998 lines" in w for w in warnings), warnings


# -- an unclosed quote in the header ------------------------------------------------------


def test_an_unclosed_quote_in_the_header_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "h.csv", lines(3000), header='"size,colour,label')
    message = refusal(path, tmp_path)
    assert "header" in message and "quote" in message and "not closed" in message
    assert "'\"size,colour,label'" in message, "shows the first line, so the user can find it"
    assert "2,blue" not in message, "the data rows are not part of the message"


def test_parse_csv_refuses_the_unclosed_header_too(tmp_path: Path) -> None:
    data = ('"a,b\n' + "\n".join(lines(50))).encode()
    with pytest.raises(DatasetError) as caught:
        parse_csv(data, "x.csv")
    assert "not closed" in str(caught.value) and len(str(caught.value)) <= MESSAGE_BOUND


def test_an_unclosed_quote_in_the_last_row_is_named(tmp_path: Path) -> None:
    rows = [*lines(40), '40,"red,a', *lines(20, start=41)]
    message = refusal(write(tmp_path / "tail.csv", rows), tmp_path)
    assert "row 42" in message and "never closed" in message


@pytest.mark.parametrize(
    ("header", "target"),
    [
        ("size," + "C" * 50_000 + ",label", "nope"),  # missing target lists the columns
        ("size," + "C" * 50_000 + ",label", "C" * 50_000),  # the target itself is long
        ("only" + "O" * 50_000, "label"),  # a single column
        ("x" * 40_000 + ",X" + "x" * 39_999 + ",label", "label"),  # twins
    ],
)
def test_long_column_names_are_clipped_in_messages(
    tmp_path: Path, header: str, target: str
) -> None:
    rows = [f"{i},{i % 2}" if header.startswith("only") else f"{i},1,x" for i in range(30)]
    refusal(write(tmp_path / "wide.csv", rows, header=header), tmp_path, target)


def test_long_values_are_clipped_in_messages_and_warnings(tmp_path: Path) -> None:
    big = "V" * 100_000
    constant = write(tmp_path / "k.csv", [f"{i},red,{big}" for i in range(30)])
    assert "Every row has" in refusal(constant, tmp_path)
    rows = lines(40) + [f"99,red,{big}"]  # a single-row class: dropped with a warning
    loaded = load(write(tmp_path / "s.csv", rows), tmp_path)
    assert loaded.warnings and all(len(w) <= MESSAGE_BOUND for w in loaded.warnings)


# -- ragged rows ------------------------------------------------------------------------


def test_a_few_ragged_rows_are_dropped_with_a_warning(tmp_path: Path) -> None:
    rows = lines(300)
    rows[10] = "10,red,a,EXTRA"  # an extra value: pandas would drop "EXTRA" silently
    rows[20] = "5,stray"  # a short row: "stray" would become a class of "label"
    loaded = load(write(tmp_path / "r.csv", rows), tmp_path, target="colour")
    assert loaded.spec.n_rows + len(loaded.holdout) == 298
    assert "stray" not in set(pd.read_csv(loaded.data_path)["colour"])
    [warning] = [w for w in loaded.warnings if "wrong number" in w]
    assert "2 rows" in warning and "rows 12 and 22" in warning, warning


def test_many_ragged_rows_refuse_the_data_set_with_the_first_row_numbers(tmp_path: Path) -> None:
    rows = lines(100)
    for i in range(10, 100, 9):  # 10 rows of 100 = 10%, above the share dropped quietly
        rows[i] = f"{i},red,a,b"
    message = refusal(write(tmp_path / "r.csv", rows), tmp_path)
    assert "10 of 100 rows" in message
    assert "rows 12, 21, 30, 39, 48" in message and "and 5 more" in message
    assert "3 values" in message, "says how many the header has"


def test_the_share_is_a_small_one() -> None:
    assert 0 < MAX_RAGGED_SHARE <= 0.05


def test_one_ragged_row_in_a_small_file_is_dropped(tmp_path: Path) -> None:
    rows = [*lines(30), "Total: 30 rows"]  # a footer line exports often add
    loaded = load(write(tmp_path / "footer.csv", rows), tmp_path)
    assert any("row 32" in w for w in loaded.warnings), loaded.warnings


def test_trailing_empty_values_and_blank_lines_are_not_ragged(tmp_path: Path) -> None:
    rows = [row + "," for row in lines(30)]
    rows.insert(5, "")
    rows[7] = rows[7] + ",,"
    loaded = load(write(tmp_path / "t.csv", rows), tmp_path)
    assert not [w for w in loaded.warnings if "wrong number" in w]
    assert loaded.spec.n_rows + len(loaded.holdout) == 30


def test_row_numbers_count_rows_as_a_spreadsheet_does(tmp_path: Path) -> None:
    rows = lines(300)
    rows[1] = '1,"dark\nred",a'  # one row over two lines
    rows[3] = "3,red"
    loaded = load(write(tmp_path / "m.csv", rows), tmp_path)
    assert any("row 5" in w for w in loaded.warnings), loaded.warnings


def test_pandas_warnings_never_escape(tmp_path: Path) -> None:
    # The first data row longer than the header made pandas warn "Length of header or names
    # does not match length of data" on stderr; mixed types made it warn DtypeWarning.
    rows = ["0,red,a,EXTRA", *lines(299, start=1)]
    rows += [f"{i},{i},a" for i in range(300, 200_300)]  # colour: text, then numbers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load(write(tmp_path / "w.csv", rows), tmp_path)
    assert [str(w.message) for w in caught] == []
    assert any("row 2" in w for w in loaded.warnings)


def test_jobs_in_threads_leave_the_warnings_machinery_as_they_found_it() -> None:
    # Two jobs' loaders overlapping in time: interleaved catch_warnings swaps would leave the
    # first job's recorder installed for good, swallowing every later warning unlogged.
    from pipeline.stages.tabular import library_warnings_logged

    before = (warnings.showwarning, list(warnings.filters))
    first_inside, second_inside, first_done = (threading.Event() for _ in range(3))

    def first() -> None:
        with library_warnings_logged():
            first_inside.set()
            second_inside.wait(2)  # unordered, the second enters meanwhile
        first_done.set()

    def second() -> None:
        first_inside.wait(2)
        with library_warnings_logged():
            second_inside.set()
            first_done.wait(2)  # unordered, the first leaves before the second

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert (warnings.showwarning, list(warnings.filters)) == before
