"""The deploy check's malformed requests stay cheap and fair on data of any width."""

from __future__ import annotations

from pipeline.codegen.contract import MAX_BODY_BYTES, MAX_ROWS
from pipeline.stages.deploy import bad_requests


def probe(row: dict[str, object], what: str) -> tuple[int, int]:
    (found,) = [p for p in bad_requests(row) if what in p.what]
    return len(found.content), found.status


def test_too_many_narrow_rows_must_meet_the_row_cap() -> None:
    size, status = probe({"a": 1.5, "b": "x"}, f"{MAX_ROWS + 1} rows")
    assert size <= MAX_BODY_BYTES and status == 400


def test_too_many_wide_rows_meet_the_body_cap_first() -> None:
    # 64 features, as the built-in digits set has: 1,001 rows are over 1 MB.
    wide = {f"pixel_{i}_{j}": 16.0 for i in range(8) for j in range(8)}
    size, status = probe(wide, f"{MAX_ROWS + 1} rows")
    assert size > MAX_BODY_BYTES and status == 413


def test_the_huge_number_probe_does_not_grow_with_the_width() -> None:
    wide = {f"column {i}": 1 for i in range(5000)}
    size, status = probe(wide, "400-digit integer")
    assert size < 1000 and status == 400
