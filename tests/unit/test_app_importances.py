"""The live app's "What matters most" section: bars from schema["importances"], escaped, and
nothing at all when train.py wrote none or wrote them wrong."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pipeline.codegen

SCHEMA: dict[str, Any] = {
    "target": "species",
    "task": "classification",
    "features": [
        {"name": "petal width", "type": "number", "example": 1.3},
        {"name": "petal length", "type": "number", "example": 4.2},
        {"name": "sepal <b>width</b>", "type": "number", "example": 3.0},
    ],
    "classes": ["a", "b"],
    "dropped": [],
}
METRICS = {"metric": "balanced_accuracy", "score": 0.95, "baseline": 0.5, "model": "HGB"}


@pytest.fixture(scope="module")
def app() -> ModuleType:
    """The template app.py as a module (it runs alone in the sandbox, so it is not a package
    module of ours)."""
    path = Path(pipeline.codegen.__file__).parent / "templates" / "app.py"
    spec = importlib.util.spec_from_file_location("template_app_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


def page(app: ModuleType, schema: dict[str, Any]) -> str:
    model = app.Model(pipeline=None, schema=schema, metrics=METRICS, chart=None)
    return str(app.render_page(model))


def bars(html: str) -> list[tuple[str, float]]:
    section = html.split('id="importances"', 1)[1].split("</ol>", 1)[0]
    found = re.findall(
        r'<span class="feature">(.*?)</span><span class="track"><span class="fill" '
        r'style="width:([0-9.]+)%">',
        section,
    )
    return [(name, float(width)) for name, width in found]


def test_the_page_shows_what_matters_most_largest_first(app: ModuleType) -> None:
    importances = [
        {"name": "petal length", "importance": 0.1, "std": 0.01},
        {"name": "petal width", "importance": 0.4, "std": 0.02},
        {"name": "sepal <b>width</b>", "importance": -0.01, "std": 0.0},
    ]
    html = page(app, {**SCHEMA, "importances": importances})
    assert "What matters most" in html
    assert "balanced accuracy drops" in html
    assert bars(html) == [
        ("petal width", 100.0),
        ("petal length", 25.0),
        ("sepal &lt;b&gt;width&lt;/b&gt;", 0.0),
    ]
    assert "<b>width</b>" not in html


def test_at_most_eight_features_are_shown(app: ModuleType) -> None:
    importances = [{"name": f"f{i}", "importance": 1 / (i + 1), "std": 0} for i in range(30)]
    assert [name for name, _ in bars(page(app, {**SCHEMA, "importances": importances}))] == [
        f"f{i}" for i in range(8)
    ]


@pytest.mark.parametrize(
    "importances",
    [None, "petal width", {"petal width": 0.4}, [], [None, 3, {"name": 5, "importance": 1}]],
)
def test_no_section_without_valid_importances(app: ModuleType, importances: Any) -> None:
    schema = dict(SCHEMA) if importances is None else {**SCHEMA, "importances": importances}
    html = page(app, schema)
    assert "What matters most" not in html and "Predict species" in html


def test_malformed_entries_are_dropped_and_the_rest_shown(app: ModuleType) -> None:
    importances = [
        {"name": "petal width", "importance": float("nan")},
        {"name": "petal width", "importance": True},
        {"name": "petal length", "importance": "0.3"},
        {"name": "", "importance": 0.3},
        {"name": "petal length", "importance": 0.2},
    ]
    assert bars(page(app, {**SCHEMA, "importances": importances})) == [("petal length", 100.0)]


def test_when_nothing_helped_no_bar_is_drawn(app: ModuleType) -> None:
    importances = [{"name": "petal width", "importance": 0.0}, {"name": "x", "importance": -1}]
    assert bars(page(app, {**SCHEMA, "importances": importances})) == [
        ("petal width", 0.0),
        ("x", 0.0),
    ]
