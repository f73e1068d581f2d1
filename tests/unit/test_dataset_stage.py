"""The dataset stage: sources, CSV quirks, target checks, task inference, holdout rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.codegen.base import TaskType
from pipeline.errors import DatasetError
from pipeline.netguard import UrlGuard
from pipeline.stages.dataset import (
    MIN_ROWS,
    LoadedDataset,
    infer_task,
    load_dataset,
    match_column,
)
from pipeline.stages.tabular import parse_csv, plain_value, sniff_delimiter
from tests.support.messy import ODD_HEADERS, write_odd_headers_csv

MB = 1_000_000


def no_dns(host: str, *args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"unit tests must not resolve {host!r}")


GUARD = UrlGuard(resolver=no_dns)


def churn_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "customer_id": 1000 + i,
            "tenure": (i * 7) % 60,
            "plan": ["basic", "pro", "team"][i % 3],
            "monthly_fee": round(10 + (i % 9) * 2.5, 2),
            "Churned": "Yes" if i % 3 == 0 else "No",
        }
        for i in range(n)
    ]


def write_csv(path: Path, rows: list[dict[str, Any]], sep: str = ",") -> Path:
    pd.DataFrame(rows).to_csv(path, index=False, sep=sep)
    return path


def load(source: str | Path, tmp_path: Path, **kwargs: Any) -> LoadedDataset:
    kwargs.setdefault("target", None)
    kwargs.setdefault("max_bytes", 10 * MB)
    return load_dataset(str(source), guard=GUARD, workdir=tmp_path / "work", **kwargs)


def error_of(source: str | Path, tmp_path: Path, **kwargs: Any) -> str:
    with pytest.raises(DatasetError) as caught:
        load(source, tmp_path, **kwargs)
    return str(caught.value)


# -- built-ins ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "target", "task", "classes"),
    [
        ("iris", "species", TaskType.CLASSIFICATION, ["setosa", "versicolor", "virginica"]),
        ("wine", "cultivar", TaskType.CLASSIFICATION, ["class_0", "class_1", "class_2"]),
        ("breast_cancer", "diagnosis", TaskType.CLASSIFICATION, ["benign", "malignant"]),
        ("digits", "digit", TaskType.CLASSIFICATION, list(range(10))),
        ("diabetes", "disease_progression", TaskType.REGRESSION, []),
    ],
)
def test_builtins_load_with_their_target_and_task(
    tmp_path: Path, name: str, target: str, task: TaskType, classes: list[Any]
) -> None:
    loaded = load(name, tmp_path)
    spec = loaded.spec
    assert (spec.name, spec.target, spec.task, spec.classes) == (name, target, task, classes)
    assert spec.data_file == "data.csv"
    assert loaded.source_description.startswith(f"built-in {name} (")
    data = pd.read_csv(loaded.data_path)
    assert target in data.columns and "target" not in data.columns
    assert (
        len(data)
        == spec.n_rows
        == int(loaded.source_description.split("(")[1].split()[0].replace(",", "")) - 3
    )
    assert len(loaded.holdout) == len(loaded.holdout_targets) == 3
    if classes:
        assert set(data[target]) == set(classes)
        assert set(loaded.holdout_targets) <= set(classes)
    json.dumps(spec.to_json_dict())


@pytest.mark.parametrize("given", ["species", "  Species ", "SPECIES", "target"])
def test_builtin_target_is_matched_tolerantly(tmp_path: Path, given: str) -> None:
    assert load("iris", tmp_path, target=given).spec.target == "species"


def test_builtin_with_another_target_says_what_it_predicts(tmp_path: Path) -> None:
    message = error_of("iris", tmp_path, target="petal length")
    assert "predicts 'species'" in message and "'petal length'" in message


@pytest.mark.parametrize("source", ["Breast-Cancer", " breast cancer ", "sklearn:iris", "IRIS"])
def test_builtin_names_are_tolerant(tmp_path: Path, source: str) -> None:
    assert load(source, tmp_path).source_description.startswith("built-in")


# -- targets and row checks -----------------------------------------------------------


def test_csv_target_matching_ignores_case_and_spaces(tmp_path: Path) -> None:
    path = tmp_path / "churn.csv"
    path.write_text(
        " customer_id , Tenure ,Churned \n"
        + "".join(f"{r['customer_id']},{r['tenure']},{r['Churned']}\n" for r in churn_rows(40))
    )
    loaded = load(path, tmp_path, target="  churned ")
    assert loaded.spec.target == "Churned"
    assert [c.name for c in loaded.spec.columns] == ["customer_id", "Tenure", "Churned"]
    assert loaded.spec.name == "churn"
    assert loaded.spec.goal == "Predict Churned from the other columns."
    assert loaded.source_description == "churn.csv (40 rows)"


def test_match_column_levels() -> None:
    columns = ["Monthly Fee", "churned_flag", "Age"]
    assert match_column("age", columns) == "Age"
    assert match_column(" monthly   fee ", columns) == "Monthly Fee"
    assert match_column("Churned Flag", columns) == "churned_flag"
    assert match_column("salary", columns) is None
    with pytest.raises(DatasetError, match="matches several columns"):
        match_column("a b", ["A_B", "a-b"])


def test_missing_target_lists_the_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", churn_rows(30))
    message = error_of(path, tmp_path, target="left_company")
    assert "no column named 'left_company'" in message
    assert "customer_id, tenure, plan, monthly_fee, Churned" in message


def test_no_target_for_a_csv_asks_for_one(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", churn_rows(30))
    message = error_of(path, tmp_path, target="  ")
    assert "Which column should TrainBot predict?" in message
    assert "Churned" in message


def test_long_column_lists_are_trimmed(tmp_path: Path) -> None:
    rows = [{f"col_{j}": i * j for j in range(60)} for i in range(30)]
    message = error_of(write_csv(tmp_path / "wide.csv", rows), tmp_path, target="nope")
    assert "col_0, col_1" in message and "and 35 more" in message and "col_59" not in message


def test_constant_target_is_refused(tmp_path: Path) -> None:
    rows = [{**r, "Churned": "No"} for r in churn_rows(30)]
    message = error_of(write_csv(tmp_path / "c.csv", rows), tmp_path, target="churned")
    assert "Every row has Churned = 'No'" in message


def test_too_few_rows(tmp_path: Path) -> None:
    message = error_of(write_csv(tmp_path / "c.csv", churn_rows(10)), tmp_path, target="Churned")
    assert f"only 10 usable rows; at least {MIN_ROWS} are needed" in message


def test_rows_without_a_target_are_dropped_and_reported(tmp_path: Path) -> None:
    rows = churn_rows(40)
    for row in rows[:5]:
        row["Churned"] = None
    loaded = load(write_csv(tmp_path / "c.csv", rows), tmp_path, target="Churned")
    assert "Dropped 5 row(s) with no value for 'Churned'." in loaded.warnings
    assert loaded.spec.n_rows + len(loaded.holdout) == 35
    assert pd.read_csv(loaded.data_path)["Churned"].notna().all()


def test_dropping_rows_without_target_can_leave_too_few(tmp_path: Path) -> None:
    rows = churn_rows(25)
    for row in rows[:10]:
        row["Churned"] = ""
    assert "only 15 usable rows" in error_of(
        write_csv(tmp_path / "c.csv", rows), tmp_path, target="Churned"
    )


def test_single_row_classes_are_dropped_with_a_warning(tmp_path: Path) -> None:
    rows = churn_rows(40)
    rows[1]["Churned"] = "Maybe"
    loaded = load(write_csv(tmp_path / "c.csv", rows), tmp_path, target="Churned")
    assert loaded.spec.classes == ["No", "Yes"]
    assert any("'Maybe'" in w and "at least 2 rows" in w for w in loaded.warnings)
    assert "Maybe" not in set(pd.read_csv(loaded.data_path)["Churned"])


def test_a_unique_text_target_cannot_be_a_category(tmp_path: Path) -> None:
    rows = [{**r, "name": f"person {i}"} for i, r in enumerate(churn_rows(30))]
    message = error_of(write_csv(tmp_path / "c.csv", rows), tmp_path, target="name")
    assert "cannot be predicted as a category" in message


def test_a_file_with_only_the_target_has_no_features(tmp_path: Path) -> None:
    rows = [{"y": i % 2, "empty": None} for i in range(30)]
    path = tmp_path / "c.csv"
    path.write_text("y,\n" + "".join(f"{r['y']},\n" for r in rows))
    message = error_of(path, tmp_path, target="y")
    assert "no columns besides the target 'y'" in message


# -- CSV parsing ----------------------------------------------------------------------


def test_semicolon_csv_with_decimal_commas(tmp_path: Path) -> None:
    path = tmp_path / "eu.csv"
    lines = ["tenure;monthly_fee;Churned"] + [
        f"{i};{10 + i % 7},5;{'Yes' if i % 2 else 'No'}" for i in range(30)
    ]
    path.write_text("\n".join(lines) + "\n")
    loaded = load(path, tmp_path, target="churned")
    fee = next(c for c in loaded.spec.columns if c.name == "monthly_fee")
    assert fee.kind == "number" and fee.examples[0] == 10.5


def test_tab_separated_txt(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "data.txt", churn_rows(30), sep="\t")
    assert load(path, tmp_path, target="Churned").spec.columns[2].name == "plan"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a,b\n1,2\n", ","), ("a;b;c\n1,5;2;3\n", ";"), ("a\tb\n1,2\t3\n", "\t"), ("a\n1\n", ",")],
)
def test_sniff_delimiter(text: str, expected: str) -> None:
    assert sniff_delimiter(text) == expected


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    body = "Churned,tenure\n" + "".join(f"{'Yes' if i % 2 else 'No'},{i}\n" for i in range(30))
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert load(path, tmp_path, target="churned").spec.target == "Churned"


def test_latin1_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    body = "ville,prix\n" + "".join(
        f"{'Orléans' if i % 2 else 'Nîmes'},{i * 1.5}\n" for i in range(30)
    )
    path.write_bytes(body.encode("latin-1"))
    loaded = load(path, tmp_path, target="ville")
    assert loaded.spec.classes == ["Nîmes", "Orléans"]


def test_cells_and_headers_are_trimmed(tmp_path: Path) -> None:
    frame = parse_csv(b" a , b \n x , 1 \n y ,2\n", "t.csv").frame
    assert list(frame.columns) == ["a", "b"]
    assert list(frame["a"]) == ["x", "y"]
    assert list(frame["b"]) == [1, 2]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "is empty"),
        (b"  \n\n ", "is empty"),
        (b"a,b\n", "header but no data rows"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "web page (HTML)"),
        (b"\n  <html lang='en'><head></head></html>", "web page (HTML)"),
        (b"only\n1\n2\n", "single column ('only')"),
        (b"a, b ,b\n1,2,3\n", "more than one column named 'b'"),
        (b"a,b\n1,2\n3,4,5\n6,7,8\n", "could not be read as CSV"),  # 2 of 3 rows ragged
        (b"PK\x03\x04rest-of-xlsx", "Excel or zip file"),
        (b"a,b\x00\x00\x01", "binary file"),
    ],
)
def test_unreadable_files_are_explained(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    message = error_of(path, tmp_path, target="a")
    assert needle in message
    assert "bad.csv" in message


def test_nonexistent_path(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.csv", tmp_path)
    assert "There is no file at" in message and "iris" in message


def test_folder_instead_of_file(tmp_path: Path) -> None:
    assert "is a folder" in error_of(tmp_path, tmp_path)


@pytest.mark.parametrize("name", ["data.xlsx", "data.json", "data"])
def test_wrong_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    assert "TrainBot reads .csv or .txt files" in error_of(path, tmp_path, target="a")


def test_local_files_can_be_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", churn_rows(30))
    message = error_of(path, tmp_path, target="Churned", allow_local_files=False)
    assert "not a link or a built-in data set" in message


@pytest.mark.parametrize("source", ["file:///etc/passwd.csv", "ftp://example.com/data.csv"])
def test_non_http_links_are_refused(tmp_path: Path, source: str) -> None:
    assert "only downloads data from http(s) links" in error_of(source, tmp_path, target="a")


def test_local_file_over_the_size_limit(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", churn_rows(500))
    message = error_of(path, tmp_path, target="Churned", max_bytes=1000)
    assert "more than the" in message and "limit" in message


# -- task inference -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["a", "b", "a"], TaskType.CLASSIFICATION),
        ([True, False, True], TaskType.CLASSIFICATION),
        ([0, 1, 2, 1, 0], TaskType.CLASSIFICATION),
        ([1.0, 2.0, None, 3.0], TaskType.CLASSIFICATION),
        (list(range(21)), TaskType.REGRESSION),
        ([0.5, 1.5, 2.0], TaskType.REGRESSION),
    ],
)
def test_infer_task(values: list[Any], task: TaskType) -> None:
    assert infer_task(pd.Series(values)) is task


def test_whole_number_classes_are_ints(tmp_path: Path) -> None:
    rows = [{"x": i, "grade": float(i % 3) if i % 10 else None} for i in range(40)]
    loaded = load(write_csv(tmp_path / "g.csv", rows), tmp_path, target="grade")
    assert loaded.spec.task is TaskType.CLASSIFICATION
    assert loaded.spec.classes == [0, 1, 2]
    assert all(isinstance(t, int) for t in loaded.holdout_targets)


def test_explicit_task_wins(tmp_path: Path) -> None:
    rows = [{"x": i, "rating": i % 3} for i in range(30)]
    path = write_csv(tmp_path / "r.csv", rows)
    loaded = load(path, tmp_path, target="rating", task=TaskType.REGRESSION)
    assert loaded.spec.task is TaskType.REGRESSION and loaded.spec.classes == []


def test_regression_on_text_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", churn_rows(30))
    message = error_of(path, tmp_path, target="plan", task=TaskType.REGRESSION)
    assert "'plan' is not numeric" in message


# -- holdout, profile, output ---------------------------------------------------------


def test_holdout_rows_leave_the_training_data_and_carry_no_target(tmp_path: Path) -> None:
    rows = churn_rows(60)
    loaded = load(write_csv(tmp_path / "c.csv", rows), tmp_path, target="Churned")
    data = pd.read_csv(tmp_path / "work" / "data.csv")
    assert loaded.data_path == tmp_path / "work" / "data.csv"
    assert len(loaded.holdout) == 3 and len(data) == 57 == loaded.spec.n_rows
    by_id = {r["customer_id"]: r for r in rows}
    for features, target in zip(loaded.holdout, loaded.holdout_targets, strict=True):
        assert "Churned" not in features
        assert set(features) == {"customer_id", "tenure", "plan", "monthly_fee"}
        assert features["customer_id"] not in set(data["customer_id"])
        assert by_id[features["customer_id"]]["Churned"] == target
    assert set(loaded.holdout_targets) == {"Yes", "No"}  # one per class first
    json.dumps(loaded.holdout)


def test_holdout_rows_carry_the_csvs_own_headers(tmp_path: Path) -> None:
    """The deploy check posts rows as users will: keyed by the header row as it was written."""
    path = write_odd_headers_csv(tmp_path / "odd.csv")
    loaded = load(path, tmp_path, target="churned")
    assert loaded.spec.target == "Churned"
    trimmed = {"Customer ID", "Tenure", "PLAN", "Monthly Income", "Support Calls", "Churned"}
    assert {c.name for c in loaded.spec.columns} == trimmed
    assert set(pd.read_csv(loaded.data_path).columns) == trimmed
    originals = set(ODD_HEADERS.values()) - {ODD_HEADERS["target"]}
    assert all(set(row) == originals for row in loaded.holdout)


def test_headers_that_differ_only_in_case_or_spaces_are_refused(tmp_path: Path) -> None:
    # The live app matches a row's keys ignoring case and spaces, so it could not tell them apart.
    path = tmp_path / "twins.csv"
    path.write_text("Plan,plan ,MONTHLY  FEE,monthly fee\n" + "a,b,1,2\n" * 30)
    message = error_of(path, tmp_path, target="Plan")
    assert "more than one column named 'Plan' / 'plan'" in message
    assert "'MONTHLY  FEE' / 'monthly fee'" in message
    assert "differ only in case or spaces" in message


def test_holdout_never_leaves_a_class_with_fewer_than_two_rows(tmp_path: Path) -> None:
    rows = churn_rows(30)
    for i, row in enumerate(rows):
        row["Churned"] = "rare" if i < 2 else ("Yes" if i % 2 else "No")
    loaded = load(write_csv(tmp_path / "c.csv", rows), tmp_path, target="Churned")
    assert "rare" not in loaded.holdout_targets
    assert (pd.read_csv(loaded.data_path)["Churned"] == "rare").sum() == 2


def test_columns_are_profiled_with_plain_examples(tmp_path: Path) -> None:
    rows = [
        {
            "id": i + 1,
            "signup": f"2024-01-{i % 28 + 1:02d}",
            "comment": f"customer number {i} said the service was fine",
            "active": "yes" if i % 2 else "no",
            "plan": ["basic", "pro"][i % 2],
            "score": None if i == 0 else i * 0.5,
            "label": i % 2,
        }
        for i in range(30)
    ]
    loaded = load(write_csv(tmp_path / "p.csv", rows), tmp_path, target="label")
    columns = {c.name: c for c in loaded.spec.columns}
    kinds = {name: c.kind for name, c in columns.items()}
    assert kinds == {
        "id": "id",
        "signup": "date",
        "comment": "text",
        "active": "bool",
        "plan": "category",
        "score": "number",
        "label": "number",
    }
    assert columns["plan"].unique == 2
    for column in loaded.spec.columns:
        assert all(type(v) in (int, float, str, bool) for v in column.examples)
    assert sum(c.missing for c in loaded.spec.columns) <= 1
    assert len(loaded.spec.sample_rows) == 5
    text = json.dumps(loaded.spec.to_json_dict(), allow_nan=False)
    assert '"task": "classification"' in text


def test_plain_value_conversions() -> None:
    import numpy as np

    assert plain_value(np.int64(3)) == 3 and type(plain_value(np.int64(3))) is int
    assert type(plain_value(np.float32(1.5))) is float
    assert plain_value(np.bool_(True)) is True
    for missing in (float("nan"), np.nan, pd.NA, pd.NaT, None, float("inf")):
        assert plain_value(missing) is None
    assert plain_value(pd.Timestamp("2024-05-01")) == "2024-05-01T00:00:00"
