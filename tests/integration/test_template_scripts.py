"""The template train.py and app.py run for real: built-in data sets, a messy CSV, a live app."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
from sklearn.base import clone

from pipeline.codegen.contract import (
    DATA_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SCHEMA_FILE,
    TASK_FILE,
    TRAINING_OUTPUTS,
)
from tests.support.template_runner import (
    LiveApp,
    builtin_frame,
    live_app,
    messy_frame,
    prepare_workdir,
    read_json,
    run_train,
    train_ok,
)

# data set -> (task, lowest acceptable test score)
BUILTINS = {
    "iris": ("classification", 0.93),
    "wine": ("classification", 0.93),
    "breast_cancer": ("classification", 0.93),
    "digits": ("classification", 0.93),
    "diabetes": ("regression", 0.40),
}
MESSY_TARGET = "Churned?"
METRICS_KEYS = {"task", "metric", "score", "baseline", "baseline_name", "model", "n_train"}
METRICS_KEYS |= {"n_test", "extra"}
IRIS_ROW = {
    "sepal length (cm)": 5.1,
    "sepal width (cm)": 3.5,
    "petal length (cm)": 1.4,
    "petal width (cm)": 0.2,
}


def frame_for(name: str) -> tuple[pd.DataFrame, str, str]:
    if name == "messy":
        return messy_frame(), MESSY_TARGET, "classification"
    return builtin_frame(name), "target", BUILTINS[name][0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Train each data set once per module; returns its working directory."""
    cache: dict[str, Path] = {}

    def train(name: str) -> Path:
        if name not in cache:
            workdir = tmp_path_factory.mktemp(name)
            frame, target, task = frame_for(name)
            prepare_workdir(workdir, frame, target=target, task=task)
            result = train_ok(workdir)
            (workdir / "train.log").write_text(result.stdout)
            cache[name] = workdir
        return cache[name]

    return train


@pytest.fixture(scope="module")
def iris_app(trained: Callable[[str], Path]) -> Iterator[LiveApp]:
    with live_app(trained("iris")) as app:
        yield app


@pytest.fixture(scope="module")
def messy_app(trained: Callable[[str], Path]) -> Iterator[LiveApp]:
    with live_app(trained("messy")) as app:
        yield app


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtin_data_set_trains_above_threshold_and_baseline(
    trained: Callable[[str], Path], name: str
) -> None:
    task, threshold = BUILTINS[name]
    workdir = trained(name)
    for output in TRAINING_OUTPUTS:
        assert (workdir / output).stat().st_size > 0, f"{output} missing"
    metrics = read_json(workdir / METRICS_FILE)
    assert METRICS_KEYS <= set(metrics)
    assert metrics["task"] == task
    assert metrics["metric"] == ("accuracy" if task == "classification" else "r2")
    assert metrics["score"] >= threshold, metrics
    assert metrics["score"] > metrics["baseline"], metrics
    n_rows = len(builtin_frame(name))
    assert metrics["n_train"] + metrics["n_test"] == n_rows
    assert metrics["n_test"] == pytest.approx(0.2 * n_rows, abs=1)
    expected_extra = (
        {"f1_macro", "balanced_accuracy"} if task == "classification" else {"mae", "rmse"}
    )
    assert expected_extra <= set(metrics["extra"])
    assert (workdir / "chart.png").read_bytes().startswith(b"\x89PNG")
    log = (workdir / "train.log").read_text()
    assert f"loaded {n_rows} rows" in log
    assert f"test {metrics['metric']}" in log


@pytest.mark.parametrize("name", ["iris", "diabetes"])
def test_schema_lists_features_in_column_order(trained: Callable[[str], Path], name: str) -> None:
    workdir = trained(name)
    schema = read_json(workdir / SCHEMA_FILE)
    frame = builtin_frame(name)
    assert schema["target"] == "target"
    assert [f["name"] for f in schema["features"]] == [c for c in frame.columns if c != "target"]
    for feature in schema["features"]:
        assert feature["type"] == "number"
        assert feature["min"] <= feature["example"] <= feature["max"]
    assert schema["metrics"] == read_json(workdir / METRICS_FILE)
    if name == "iris":
        assert schema["classes"] == [0, 1, 2]
    else:
        assert schema["classes"] == []


def test_constant_columns_are_dropped_with_a_reason(trained: Callable[[str], Path]) -> None:
    schema = read_json(trained("digits") / SCHEMA_FILE)
    dropped = {d["name"]: d["reason"] for d in schema["dropped"]}
    assert "pixel_0_0" in dropped and "same value" in dropped["pixel_0_0"]
    assert "pixel_0_0" not in {f["name"] for f in schema["features"]}


def test_model_file_loads_without_the_training_script(trained: Callable[[str], Path]) -> None:
    """model.joblib holds only library objects, so any process can load it (dates included)."""
    workdir = trained("messy")
    code = (
        "import joblib, json, pandas as pd, sys\n"
        "model = joblib.load(sys.argv[1])\n"
        "schema = json.load(open(sys.argv[3]))\n"
        "frame = pd.read_csv(sys.argv[2])[[f['name'] for f in schema['features']]]\n"
        "frame['Is Student'] = frame['Is Student'].astype(float)\n"
        "for c in ['Signup Date', '  Plan Type ', 'Region']:\n"
        "    frame[c] = frame[c].astype(object)\n"
        "print(json.dumps(sorted({str(p) for p in model.predict(frame.head(50))})))\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            *(str(workdir / f) for f in (MODEL_FILE, DATA_FILE, SCHEMA_FILE)),
        ],
        cwd=workdir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) <= {"No", "Yes"}


def test_messy_csv_trains_with_its_own_column_analysis(trained: Callable[[str], Path]) -> None:
    workdir = trained("messy")
    schema = read_json(workdir / SCHEMA_FILE)
    dropped = {d["name"]: d["reason"] for d in schema["dropped"]}
    assert set(dropped) == {"Customer ID", "Account No", "Notes"}
    assert "identifier" in dropped["Customer ID"]
    assert "unique integer" in dropped["Account No"]
    assert "text" in dropped["Notes"]
    types = {f["name"]: f["type"] for f in schema["features"]}
    assert types == {
        "Signup Date": "date",
        "Monthly Income ($)": "number",
        "  Plan Type ": "category",
        "Support Calls #": "number",
        "Is Student": "bool",
        "Region": "category",
    }
    plan = next(f for f in schema["features"] if f["name"] == "  Plan Type ")
    assert plan["choices"] == ["Basic", "Plus", "Premium"]
    assert schema["classes"] == ["No", "Yes"]
    metrics = read_json(workdir / METRICS_FILE)
    # 85% "No": accuracy would flatter the majority guess, so the headline is balanced.
    assert metrics["metric"] == "balanced_accuracy"
    assert metrics["baseline"] == pytest.approx(0.5)
    assert metrics["score"] > 0.7 and metrics["score"] > metrics["baseline"]
    assert metrics["extra"]["accuracy"] > 0.7
    assert metrics["extra"]["f1_macro"] > 0.6
    log = (workdir / "train.log").read_text()
    assert "loaded 400 rows, 6 features" in log
    assert 'dropped "Customer ID"' in log


def test_rows_without_a_target_are_dropped_and_labels_kept(tmp_path: Path) -> None:
    frame = builtin_frame("iris")
    frame.loc[frame.index[:10], "target"] = None
    prepare_workdir(tmp_path, frame, target="target", task="classification")
    result = train_ok(tmp_path)
    assert "loaded 140 rows" in result.stdout
    assert read_json(tmp_path / METRICS_FILE)["n_train"] == 112
    # The gaps made the CSV column float: labels stay 0.0, 1.0, 2.0 as the pipeline sees them.
    classes = read_json(tmp_path / SCHEMA_FILE)["classes"]
    assert classes == [0.0, 1.0, 2.0] and all(isinstance(c, float) for c in classes)


def _rewrite_task(workdir: Path, **changes: Any) -> None:
    task = read_json(workdir / TASK_FILE)
    task.update(changes)
    (workdir / TASK_FILE).write_text(json.dumps(task))


UNUSABLE = {
    "unknown target": (lambda f: f, {"target": "colour"}, 'target column "colour"'),
    "one class": (lambda f: f.assign(target=1), {}, "single class"),
    "too few rows": (lambda f: f.iloc[[0, 1, 50, 51, 100, 101]], {}, "only 6 rows"),
    "text target for regression": (
        lambda f: f.assign(target="tall"),
        {"task": "regression"},
        "not numeric",
    ),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_unusable_data_fails_with_one_clear_line(tmp_path: Path, case: str) -> None:
    mutate, task_changes, message = UNUSABLE[case]
    prepare_workdir(tmp_path, mutate(builtin_frame("iris")), target="target", task="classification")
    _rewrite_task(tmp_path, **task_changes)
    result = run_train(tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


# ---------------------------------------------------------------- live app


def test_health(iris_app: LiveApp) -> None:
    response = iris_app.get("/health")
    assert response.status == 200
    assert response.content_type.startswith("application/json")
    assert response.json() == {"status": "ok"}


def test_schema_is_served(iris_app: LiveApp, trained: Callable[[str], Path]) -> None:
    response = iris_app.get("/schema")
    assert response.status == 200
    assert response.json() == read_json(trained("iris") / SCHEMA_FILE)


def test_predict_classification_with_probabilities(iris_app: LiveApp) -> None:
    virginica = {**IRIS_ROW, "petal length (cm)": 6.0, "petal width (cm)": 2.3}
    response = iris_app.predict([IRIS_ROW, virginica])
    assert response.status == 200, response.text
    body = response.json()
    assert body["predictions"] == [0, 2]  # plain ints, as the target was in training
    assert len(body["probabilities"]) == 2
    for probs in body["probabilities"]:
        assert set(probs) == {"0", "1", "2"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert body["probabilities"][0]["0"] > 0.5


def test_predict_accepts_null_numeric_strings_and_the_target_column(iris_app: LiveApp) -> None:
    row = {**IRIS_ROW, "sepal width (cm)": None, "petal length (cm)": "1.5", "target": 0}
    response = iris_app.predict([row])
    assert response.status == 200, response.text
    assert response.json()["predictions"] == [0]


def test_predict_regression_returns_numbers(trained: Callable[[str], Path]) -> None:
    schema = read_json(trained("diabetes") / SCHEMA_FILE)
    row = {f["name"]: f["example"] for f in schema["features"]}
    with live_app(trained("diabetes")) as app:
        response = app.predict([row, {**row, "bmi": 0.1}])
    assert response.status == 200, response.text
    body = response.json()
    assert "probabilities" not in body
    assert all(isinstance(p, float) for p in body["predictions"])
    assert 25 < body["predictions"][0] < 350  # the range of the diabetes target


def test_page_shows_a_form_built_from_the_schema(
    iris_app: LiveApp, trained: Callable[[str], Path]
) -> None:
    metrics = read_json(trained("iris") / METRICS_FILE)
    response = iris_app.get("/")
    assert response.status == 200
    assert response.content_type.startswith("text/html")
    page = response.text
    for name in IRIS_ROW:
        assert f'name="{name}"' in page
    assert 'value="5.1"' in page  # prefilled with the example row
    assert html.escape(metrics["model"]) in page
    # Refitted on every row after scoring, so the page counts them all.
    assert metrics["refit_on_all_rows"] is True
    assert f"trained on {metrics['n_train'] + metrics['n_test']} rows" in page
    assert "Baseline" in page and "fetch('/predict'" in page
    assert "http://" not in page and "https://" not in page  # no external assets


def test_form_post_without_javascript_renders_the_prediction(iris_app: LiveApp) -> None:
    form = {**IRIS_ROW, "petal length (cm)": 6.0, "petal width (cm)": 2.3}
    body = "&".join(f"{_quote(k)}={_quote(str(v))}" for k, v in form.items())
    response = iris_app.request(
        "POST", "/", body=body.encode(), content_type="application/x-www-form-urlencoded"
    )
    assert response.status == 200
    assert '<div class="value">2</div>' in response.text
    assert 'value="6.0"' in response.text  # the form keeps what was entered


def test_form_post_with_a_bad_value_shows_the_error(iris_app: LiveApp) -> None:
    response = iris_app.request(
        "POST",
        "/",
        body=b"sepal+length+%28cm%29=tall",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status == 400
    assert "must be a number" in response.text
    assert "&quot;tall&quot;" in response.text  # escaped, not raw


def _quote(text: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(text)


BAD_BODIES: dict[str, tuple[bytes, list[str]]] = {
    "not json": (b"rows=1", ["not valid JSON"]),
    "json but not an object": (b"[1, 2]", ["JSON object"]),
    "no rows": (b'{"data": []}', ['no "rows"']),
    "empty rows": (b'{"rows": []}', ["non-empty list"]),
    "rows not a list": (b'{"rows": {"a": 1}}', ["non-empty list"]),
    "row not an object": (b'{"rows": [5]}', ["row 0 is not an object"]),
    "empty body": (b"", ["empty"]),
    "too many rows": (
        json.dumps({"rows": [IRIS_ROW] * 1001}).encode(),
        ["too many rows (1001)", "1000"],
    ),
    "body too big": (b'{"rows": [' + b" " * 1_100_000 + b"]}", ["too big", "1 MB"]),  # a 413
    "unknown column": (
        json.dumps({"rows": [{**IRIS_ROW, "colour": "blue"}]}).encode(),
        ['unknown column "colour"', "petal width (cm)"],
    ),
    "missing feature": (
        json.dumps({"rows": [{"sepal length (cm)": 5.0}]}).encode(),
        ['missing feature "sepal width (cm)"', "null"],
    ),
    "text for a number": (
        json.dumps({"rows": [IRIS_ROW, {**IRIS_ROW, "sepal length (cm)": "tall"}]}).encode(),
        ['row 1: feature "sepal length (cm)" must be a number', '"tall"'],
    ),
    "bool for a number": (
        json.dumps({"rows": [{**IRIS_ROW, "petal width (cm)": True}]}).encode(),
        ['feature "petal width (cm)" must be a number'],
    ),
    "list for a value": (
        json.dumps({"rows": [{**IRIS_ROW, "petal width (cm)": [1, 2]}]}).encode(),
        ['feature "petal width (cm)" must be a single value'],
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_predict_input_is_a_helpful_400(iris_app: LiveApp, case: str) -> None:
    body, fragments = BAD_BODIES[case]
    response = iris_app.request("POST", "/predict", body=body)
    assert response.status == (413 if case == "body too big" else 400), response.text
    error = response.json()["error"]
    for fragment in fragments:
        assert fragment in error
    assert iris_app.get("/health").status == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("POST", "/predict/extra", 404),
        ("GET", "/predict", 405),
        ("POST", "/health", 405),
        ("DELETE", "/", 405),
        ("PUT", "/schema", 405),
    ],
)
def test_unknown_paths_and_wrong_methods_answer_json(
    iris_app: LiveApp, method: str, path: str, status: int
) -> None:
    response = iris_app.request(method, path, body=b"{}" if method != "GET" else None)
    assert response.status == status
    assert response.json()["error"]


def test_server_keeps_answering_after_bad_input(iris_app: LiveApp) -> None:
    for body, _ in BAD_BODIES.values():
        iris_app.request("POST", "/predict", body=body)
    assert iris_app.get("/health").status == 200
    assert iris_app.predict([IRIS_ROW]).json()["predictions"] == [0]


def test_unexpected_errors_are_json_500s_and_the_server_survives(
    trained: Callable[[str], Path], tmp_path: Path
) -> None:
    """An unfitted pipeline fails inside predict: the client gets JSON, not a traceback."""
    source = trained("iris")
    for name in (SCHEMA_FILE, METRICS_FILE, "app.py"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    joblib.dump(clone(joblib.load(source / MODEL_FILE)), tmp_path / MODEL_FILE)
    with live_app(tmp_path) as app:
        response = app.predict([IRIS_ROW])
        assert response.status == 500
        assert "error" in response.json()
        assert "Traceback" not in response.text
        assert app.get("/health").status == 200


# ---------------------------------------------------------------- messy live app


def messy_row(**changes: Any) -> dict[str, Any]:
    row = {
        "Customer ID": "C-99999",  # dropped by training: accepted and ignored
        "Signup Date": "2021-07-04",
        "Monthly Income ($)": 4200.5,
        "  Plan Type ": "Basic",
        "Support Calls #": 6,
        "Is Student": False,
        "Region": "North",
    }
    return {**row, **changes}


def test_messy_app_predicts_from_raw_values(messy_app: LiveApp) -> None:
    rows = [
        messy_row(),
        messy_row(**{"Signup Date": None, "Monthly Income ($)": None, "Region": None}),
        messy_row(
            **{"  Plan Type ": "Enterprise", "Is Student": "yes", "Signup Date": "3/15/2022"}
        ),
        messy_row(**{"Support Calls #": 0, "Monthly Income ($)": 11000, "  Plan Type ": "Premium"}),
    ]
    response = messy_app.predict(rows)
    assert response.status == 200, response.text
    body = response.json()
    assert set(body["predictions"]) <= {"No", "Yes"}
    assert all(set(p) == {"No", "Yes"} for p in body["probabilities"])
    # Many calls on the basic plan on a low income churns; few calls on premium does not.
    assert body["probabilities"][0]["Yes"] > body["probabilities"][3]["Yes"]
    assert body["predictions"][3] == "No"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"Signup Date": "someday"}, 'feature "Signup Date" must be a date'),
        ({"Signup Date": 20210704}, 'feature "Signup Date" must be a date'),
        ({"Is Student": "maybe"}, 'feature "Is Student" must be true or false'),
        ({"Monthly Income ($)": "$4,200"}, 'feature "Monthly Income ($)" must be a number'),
    ],
)
def test_messy_app_rejects_bad_values(
    messy_app: LiveApp, changes: dict[str, Any], fragment: str
) -> None:
    response = messy_app.predict([messy_row(**changes)])
    assert response.status == 400, response.text
    assert fragment in response.json()["error"]


def test_messy_page_has_date_select_and_escaped_names(messy_app: LiveApp) -> None:
    page = messy_app.get("/").text
    assert 'type="date"' in page and 'value="' in page
    assert 'name="  Plan Type "' in page
    assert '<option value="Premium"' in page
    assert 'name="Monthly Income ($)"' in page
    assert 'name="Customer ID"' not in page
