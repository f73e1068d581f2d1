"""Serve the model that train.py wrote, as a small web app (TrainBot offline template).

    PORT=8000 python app.py

GET / is a page with a form built from schema.json, GET /health and GET /schema
answer JSON, POST /predict takes {"rows": [{feature: value, ...}]}. Standard
library HTTP server: the sandbox has no web framework.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import accumulate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

# One BLAS thread: small models gain nothing from more, and a shared sandbox
# slows to a crawl when OpenBLAS threads compete for the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import joblib
import numpy as np
import pandas as pd

# The limits pipeline/codegen/contract.py states, copied because this script runs alone.
MAX_BODY_BYTES = 1_000_000
MAX_ROWS = 1000
MAX_INT_DIGITS = 100  # more than a float holds is never a real value; 4,300 breaks int()
MAX_JSON_DEPTH = 20  # a valid body is 3 deep; Python's parser dies near 1,000
READ_TIMEOUT_SECONDS = 5  # the longest wait for the client's next bytes
BODY_SECONDS = 30  # the longest a whole body may take, however it trickles in
SHOWN_CHARS = 200  # of anything the client sent that an error message quotes

TOP_CLASSES = 5
TOP_FEATURES = 8  # bars under "What matters most"
TRUE_WORDS = {"true", "yes", "y", "t", "1", "on"}
FALSE_WORDS = {"false", "no", "n", "f", "0", "off"}
# What the standard library's own refusals say instead of its HTML pages (see Handler.send_error).
REFUSALS: dict[int, str] = {
    HTTPStatus.BAD_REQUEST: "the request line is malformed; send METHOD /path HTTP/1.1, "
    "for example POST /predict HTTP/1.1",
    HTTPStatus.REQUEST_URI_TOO_LONG: "the request line is too long (over 64 KB); "
    "send the rows in the body of POST /predict",
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: "the request headers are too large: "
    "send at most 100 headers of at most 64 KB each",
    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED: "this HTTP version is not supported; "
    "use HTTP/1.1 or HTTP/1.0",
}
ROUTES = {
    "/": ("GET", "HEAD", "POST"),
    "/health": ("GET", "HEAD"),
    "/schema": ("GET", "HEAD"),
    "/predict": ("POST",),
}


def shown(text: str) -> str:
    """What an error message quotes of the client's data: at most SHOWN_CHARS of it."""
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


class BadRequest(Exception):
    """The client sent something we cannot use; the message tells them what to fix."""

    status = HTTPStatus.BAD_REQUEST


class BodyTooLarge(BadRequest):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class BodyTimeout(BadRequest):
    status = HTTPStatus.REQUEST_TIMEOUT


def parse_json(body: bytes) -> Any:
    """The request body as JSON, or a BadRequest saying why not: the one place bodies are parsed.

    Limits come first, so the parser never sees what would make it fail in its own way
    (a RecursionError, a ValueError from int(), a float overflow later on).
    """
    depth = nesting_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise BadRequest(
            f"the JSON is nested too deeply ({depth} levels, at most {MAX_JSON_DEPTH}); "
            'send {"rows": [{feature: value, ...}]}'
        )
    try:
        return json.loads(body, parse_int=bounded_int)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest(f"body is not valid JSON ({str(exc)[:SHOWN_CHARS]})") from None


def bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise BadRequest(
            f"a number in the body has {len(digits.lstrip('-'))} digits; "
            f"send numbers of at most {MAX_INT_DIGITS} digits"
        )
    return int(digits)


def nesting_depth(body: bytes) -> int:
    """How deep brackets nest outside strings, in C-speed passes (no regex to backtrack).

    Escaped backslashes and quotes go first, so every quote left opens or closes a string;
    then the brackets between strings count +1 and -1. For a body the parser would descend
    into, this is the depth it would reach.
    """
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    between_strings = b"".join(unescaped.split(b'"')[::2])
    brackets = between_strings.translate(None, NOT_BRACKETS)
    return max(accumulate(map(BRACKET_STEP.__getitem__, brackets), initial=0))


NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
BRACKET_STEP = [{0x5B: 1, 0x7B: 1, 0x5D: -1, 0x7D: -1}.get(b, 0) for b in range(256)]


def column_key(name: str) -> str:
    """How a column name is matched: case and surrounding or repeated spaces do not count.

    Users send rows keyed by their CSV's own header row (" Customer ID", "TENURE") while
    schema.json holds the trimmed names; this is TrainBot's rule (pipeline/codegen/contract.py),
    copied because this script runs on its own.
    """
    return " ".join(name.split()).casefold()


# ------------------------------------------------------------------ model


def artifact_dir() -> Path:
    """The working directory if it holds the model, else this script's directory."""
    cwd = Path.cwd()
    return cwd if (cwd / "model.joblib").exists() else Path(__file__).resolve().parent


@dataclass
class Model:
    pipeline: Any
    schema: dict[str, Any]
    metrics: dict[str, Any]
    chart: bytes | None

    @classmethod
    def load(cls, directory: Path) -> Model:
        chart_path = directory / "chart.png"
        return cls(
            pipeline=joblib.load(directory / "model.joblib"),
            schema=json.loads((directory / "schema.json").read_text(encoding="utf-8")),
            metrics=json.loads((directory / "metrics.json").read_text(encoding="utf-8")),
            chart=chart_path.read_bytes() if chart_path.exists() else None,
        )

    @property
    def features(self) -> list[dict[str, Any]]:
        return list(self.schema["features"])

    @property
    def is_classifier(self) -> bool:
        return self.schema.get("task") == "classification"

    @cached_property
    def columns_by_key(self) -> dict[str, str]:
        """Every column a row may name (features, dropped columns, the target), by column_key."""
        names = [d["name"] for d in self.schema.get("dropped", [])] + [self.schema["target"]]
        names += [f["name"] for f in self.features]  # last, so a feature wins any clash
        return {column_key(name): name for name in names}

    def named_values(self, row: dict[str, Any], i: int) -> dict[str, Any]:
        """A row's feature values by schema name, whatever case and spacing its keys have."""
        features = {f["name"] for f in self.features}
        values: dict[str, Any] = {}
        given: dict[str, str] = {}  # schema name -> the key this row used for it
        for key, value in row.items():
            name = self.columns_by_key.get(column_key(key))
            if name is None:
                expected = ", ".join(f["name"] for f in self.features)
                raise BadRequest(
                    f'row {i}: unknown column "{shown(key)}"; expected features: {shown(expected)}'
                )
            what = "the feature" if name in features else "the ignored column"
            if name in given:
                raise BadRequest(
                    f'row {i}: "{shown(given[name])}" and "{shown(key)}" both name {what} '
                    f'"{name}"; send it once'
                )
            given[name] = key
            if name in features:
                values[name] = value
        return values

    def frame(self, rows: Any) -> pd.DataFrame:
        """Validated request rows as the raw feature frame the pipeline was trained on."""
        if not isinstance(rows, list) or not rows:
            raise BadRequest('"rows" must be a non-empty list of objects, one per prediction')
        if len(rows) > MAX_ROWS:
            raise BadRequest(f"too many rows ({len(rows)}); send at most {MAX_ROWS} per request")
        names = [f["name"] for f in self.features]
        columns: dict[str, list[Any]] = {name: [] for name in names}
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise BadRequest(f"row {i} is not an object: send {{feature: value, ...}}")
            values = self.named_values(row, i)
            for feature in self.features:
                name = feature["name"]
                if name not in values:
                    raise BadRequest(f'row {i}: missing feature "{name}" (use null if unknown)')
                columns[name].append(convert(feature, values[name], i))
        frame = pd.DataFrame(columns, columns=names)
        for feature in self.features:
            if feature["type"] in ("category", "date"):
                frame[feature["name"]] = frame[feature["name"]].astype(object)
        return frame

    def predict(self, rows: Any) -> dict[str, Any]:
        frame = self.frame(rows)
        result: dict[str, Any] = {"predictions": [plain(p) for p in self.pipeline.predict(frame)]}
        if self.is_classifier and hasattr(self.pipeline, "predict_proba"):
            classes = [str(plain(c)) for c in self.pipeline.classes_]
            result["probabilities"] = [
                {c: round(float(p), 4) for c, p in zip(classes, probs, strict=True)}
                for probs in self.pipeline.predict_proba(frame)
            ]
        return result


def plain(value: Any) -> Any:
    """A numpy scalar as the matching JSON value."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def convert(feature: dict[str, Any], value: Any, row: int) -> Any:
    """One request value in the dtype train.py used for this feature type."""
    kind, name = feature["type"], feature["name"]
    where = f'row {row}: feature "{name}"'
    if is_blank(value):
        return np.nan
    if isinstance(value, (dict, list)):
        raise BadRequest(f"{where} must be a single value, got {json.dumps(value)[:80]}")
    if kind == "number":
        return to_number(value, where)
    if kind == "bool":
        return to_bool(value, where)
    if kind == "date":
        return to_date(value, where)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0 means the category "3" that the CSV held
    return str(value)


def to_number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise BadRequest(f"{where} must be a number, got {json.dumps(value)}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise BadRequest(f"{where} must be a number, got {json.dumps(value)[:80]}") from None
    if not math.isfinite(number):
        raise BadRequest(f"{where} must be a finite number, got {shown(str(value))}")
    return number


def to_bool(value: Any, where: str) -> float:
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
        return float(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return 1.0
    if word in FALSE_WORDS:
        return 0.0
    raise BadRequest(f"{where} must be true or false, got {json.dumps(value)[:80]}")


def to_date(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a date string like 2024-01-31, got {json.dumps(value)}")
    try:
        pd.to_datetime(value, format="mixed", utc=True)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{where} must be a date like 2024-01-31, got {json.dumps(value)[:80]}"
        ) from None
    return value


# ------------------------------------------------------------------ page


STYLE = """
:root { --ink:#0f172a; --muted:#64748b; --line:#e2e8f0; --bg:#f1f5f9; --card:#fff;
  --accent:#4f46e5; --accent-soft:#eef2ff; --good:#059669; --bad:#dc2626; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--ink); background:var(--bg); }
.hero { background:linear-gradient(135deg,#312e81,#4f46e5 60%,#6366f1); color:#fff;
  padding:28px 0 64px; }
.hero .inner { max-width:1100px; margin:0 auto; padding:0 20px; }
.hero .eyebrow { text-transform:uppercase; letter-spacing:.08em; font-size:12px; opacity:.8; }
.hero h1 { margin:4px 0 2px; font-size:28px; font-weight:650; }
.hero p { margin:0; opacity:.85; }
.stats { display:flex; gap:12px; margin-top:18px; flex-wrap:wrap; }
.stat { background:rgba(255,255,255,.14); border-radius:10px; padding:8px 14px; }
.stat b { display:block; font-size:20px; }
.stat span { font-size:12px; opacity:.85; }
.wrap { max-width:1100px; margin:-40px auto 40px; padding:0 20px; display:grid;
  grid-template-columns:minmax(0,2fr) minmax(260px,1fr); gap:20px; align-items:start; }
@media (max-width:800px) { .wrap { grid-template-columns:minmax(0,1fr); } }
.card { background:var(--card); border-radius:14px; padding:22px;
  box-shadow:0 1px 2px rgba(15,23,42,.06),0 8px 24px rgba(15,23,42,.06); }
.card h2 { margin:0 0 14px; font-size:16px; }
.fields { display:grid; grid-template-columns:repeat(auto-fill,minmax(190px,1fr)); gap:14px; }
.field { display:flex; flex-direction:column; gap:4px; min-width:0; }
.field .name { font-size:13px; font-weight:600; overflow-wrap:anywhere; }
.field .hint { font-size:12px; color:var(--muted); }
input,select { font:inherit; padding:8px 10px; border:1px solid var(--line); border-radius:8px;
  background:#fff; width:100%; }
input:focus,select:focus { outline:2px solid var(--accent); outline-offset:-1px; }
button { margin-top:18px; font:inherit; font-weight:600; color:#fff; background:var(--accent);
  border:0; border-radius:8px; padding:10px 22px; cursor:pointer; }
button:hover { filter:brightness(1.08); }
button:disabled { opacity:.6; cursor:wait; }
.result { position:sticky; top:16px; }
.result .empty { color:var(--muted); }
.result .label { font-size:12px; text-transform:uppercase; letter-spacing:.06em;
  color:var(--muted); }
.result .value { font-size:32px; font-weight:700; color:var(--accent); overflow-wrap:anywhere; }
.result .error { color:var(--bad); background:#fef2f2; border-radius:8px; padding:10px 12px; }
.bars { margin-top:14px; display:flex; flex-direction:column; gap:8px; }
.bar { font-size:13px; }
.bar .row { display:flex; justify-content:space-between; gap:8px; }
.bar .track { height:8px; background:var(--accent-soft); border-radius:99px; overflow:hidden; }
.bar .fill { height:100%; background:var(--accent); border-radius:99px; }
details { margin-top:16px; }
summary { cursor:pointer; color:var(--muted); font-size:13px; }
.chart { max-width:100%; margin-top:10px; border-radius:8px; }
pre { background:#0f172a; color:#e2e8f0; padding:12px; border-radius:8px; overflow:auto;
  font-size:12px; }
.muted { color:var(--muted); font-size:13px; }
.matters { margin-top:22px; border-top:1px solid var(--line); padding-top:18px; }
.matters h2 { margin-bottom:4px; }
.matters ol { list-style:none; margin:12px 0 0; padding:0; display:flex; flex-direction:column;
  gap:8px; }
.matters li { display:grid; grid-template-columns:minmax(0,2fr) minmax(0,3fr) auto; gap:10px;
  align-items:center; font-size:13px; }
.matters .feature { overflow-wrap:anywhere; }
.matters .track { height:10px; background:var(--accent-soft); border-radius:99px;
  overflow:hidden; }
.matters .fill { display:block; height:100%; background:var(--accent); border-radius:99px; }
.matters .amount { color:var(--muted); font-variant-numeric:tabular-nums; }
"""

SCRIPT = """
const form = document.getElementById('predict-form');
const panel = document.getElementById('result');
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
function show(data) {
  panel.replaceChildren(el('h2', '', 'Prediction'));
  if (data.error) { panel.append(el('div', 'error', data.error)); return; }
  const shown = typeof data.prediction === 'number'
    ? data.prediction.toLocaleString('en-US', {maximumSignificantDigits: 6})
    : String(data.prediction);
  panel.append(el('div', 'label', form.dataset.target), el('div', 'value', shown));
  if (!data.probabilities) return;
  const bars = el('div', 'bars');
  const top = Object.entries(data.probabilities).sort((a, b) => b[1] - a[1]).slice(0, __TOP__);
  for (const [label, p] of top) {
    const bar = el('div', 'bar'), row = el('div', 'row'), track = el('div', 'track');
    const fill = el('div', 'fill');
    fill.style.width = (p * 100).toFixed(1) + '%';
    row.append(el('span', '', label), el('span', '', (p * 100).toFixed(1) + '%'));
    track.append(fill); bar.append(row, track); bars.append(bar);
  }
  panel.append(bars);
}
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const row = {};
  for (const input of form.querySelectorAll('[data-type]')) {
    const raw = input.value.trim();
    const number = Number(raw);
    if (raw === '') row[input.name] = null;
    else if (input.dataset.type === 'number')
      row[input.name] = Number.isFinite(number) ? number : raw;
    else if (input.dataset.type === 'bool') row[input.name] = raw === 'true';
    else row[input.name] = raw;
  }
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    const response = await fetch('/predict', {method: 'POST',
      headers: {'Content-Type': 'application/json'}, body: JSON.stringify({rows: [row]})});
    const body = await response.json();
    show(body.error ? {error: body.error} : {prediction: body.predictions[0],
      probabilities: body.probabilities ? body.probabilities[0] : null});
  } catch (err) {
    show({error: 'Could not reach the model: ' + err});
  } finally {
    button.disabled = false;
  }
});
""".replace("__TOP__", str(TOP_CLASSES))


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def number_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.6g}"


def date_input_value(value: Any) -> str:
    try:
        return pd.to_datetime(str(value), format="mixed").strftime("%Y-%m-%d")
    except (ValueError, OverflowError):
        return ""


def default_values(model: Model) -> dict[str, str]:
    values = {}
    for f in model.features:
        example = f.get("example")
        if f["type"] == "date":
            values[f["name"]] = date_input_value(example) if example is not None else ""
        elif f["type"] == "bool":
            values[f["name"]] = "" if example is None else str(bool(example)).lower()
        else:
            values[f["name"]] = "" if example is None else str(example)
    return values


def select_html(attrs: str, options: list[tuple[str, str]], selected: str) -> str:
    items = "".join(
        f'<option value="{esc(v)}"{" selected" if v == selected else ""}>{esc(label)}</option>'
        for v, label in options
    )
    return f"<select {attrs}>{items}</select>"


def field_html(feature: dict[str, Any], value: str) -> str:
    name, kind = feature["name"], feature["type"]
    attrs = f'name="{esc(name)}" data-type="{esc(kind)}" aria-label="{esc(name)}"'
    hint = ""
    if kind == "number":
        control = f'<input type="number" step="any" {attrs} value="{esc(value)}">'
        if "min" in feature and "max" in feature:
            hint = f"{number_text(feature['min'])} to {number_text(feature['max'])}"
    elif kind == "category":
        choices = [str(c) for c in feature.get("choices") or []]
        if value and value not in choices:
            choices.append(value)
        control = select_html(attrs, [("", "(unknown)")] + [(c, c) for c in choices], value)
    elif kind == "bool":
        control = select_html(attrs, [("", "(unknown)"), ("true", "Yes"), ("false", "No")], value)
    else:
        control = f'<input type="date" {attrs} value="{esc(value)}">'
    hint_html = f'<span class="hint">{esc(hint)}</span>' if hint else ""
    return f'<label class="field"><span class="name">{esc(name)}</span>{control}{hint_html}</label>'


def result_html(result: dict[str, Any] | None, error: str | None, target: str) -> str:
    if error:
        return f'<h2>Prediction</h2><div class="error">{esc(error)}</div>'
    if result is None:
        return '<h2>Prediction</h2><p class="empty">Fill in the form and press Predict.</p>'
    prediction = result["predictions"][0]
    shown = number_text(prediction) if isinstance(prediction, float) else prediction
    parts = [
        "<h2>Prediction</h2>",
        f'<div class="label">{esc(target)}</div><div class="value">{esc(shown)}</div>',
    ]
    if result.get("probabilities"):
        top = sorted(result["probabilities"][0].items(), key=lambda kv: -kv[1])[:TOP_CLASSES]
        bars = "".join(
            f'<div class="bar"><div class="row"><span>{esc(label)}</span>'
            f"<span>{p * 100:.1f}%</span></div>"
            f'<div class="track"><div class="fill" style="width:{p * 100:.1f}%"></div></div></div>'
            for label, p in top
        )
        parts.append(f'<div class="bars">{bars}</div>')
    return "".join(parts)


def importances(schema: dict[str, Any]) -> list[tuple[str, float]]:
    """schema["importances"] as (feature, importance), largest first; entries that are not
    a name and a finite number are left out, as is the whole when it is not a list."""
    found = schema.get("importances")
    pairs = []
    for item in found if isinstance(found, list) else []:
        if not isinstance(item, dict):
            continue
        name, value = item.get("name"), item.get("importance")
        if not isinstance(name, str) or not name.strip() or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            pairs.append((name, float(value)))
    return sorted(pairs, key=lambda pair: -pair[1])[:TOP_FEATURES]


def bar_percent(value: float, top: float) -> float:
    return max(0.0, value / top * 100) if top > 0 else 0.0


def importance_html(schema: dict[str, Any], metric_name: str) -> str:
    """Bars for the features whose shuffling hurt the test score most ("" without any)."""
    pairs = importances(schema)
    if not pairs:
        return ""
    top = max(value for _, value in pairs)
    metric = metric_name if metric_name == "R²" else metric_name.lower()
    # Bars are scaled to the largest; a feature whose shuffling did not hurt gets none.
    items = "".join(
        f'<li><span class="feature">{esc(name)}</span>'
        f'<span class="track"><span class="fill" style="width:{bar_percent(value, top):.1f}%">'
        f'</span></span><span class="amount">{esc(f"{value:.3f}")}</span></li>'
        for name, value in pairs
    )
    return (
        '<div class="matters" id="importances"><h2>What matters most</h2>'
        f'<p class="muted">How much the test {esc(metric)} drops when a feature\'s values '
        f"are shuffled: the longer the bar, the more the model relies on it.</p>"
        f"<ol>{items}</ol></div>"
    )


def trained_rows(metrics: dict[str, Any]) -> Any:
    """Rows the served model learned from: every row when train.py refitted it on all of
    them after scoring (metrics "refit_on_all_rows"), else its training split's."""
    train, test = metrics.get("n_train"), metrics.get("n_test")
    if (
        metrics.get("refit_on_all_rows") is True
        and isinstance(train, int)
        and isinstance(test, int)
    ):
        return train + test
    return train if train is not None else "?"


def score_text(metric: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "n/a"
    return f"{value * 100:.1f}%" if metric == "accuracy" else f"{value:.3f}"


def render_page(
    model: Model,
    values: dict[str, str] | None = None,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> str:
    values = values or default_values(model)
    m, schema = model.metrics, model.schema
    target, metric = schema["target"], m.get("metric", "")
    metric_name = "R²" if metric == "r2" else metric.replace("_", " ").capitalize()
    fields = "".join(field_html(f, values.get(f["name"], "")) for f in model.features)
    dropped = schema.get("dropped") or []
    extras = []
    if model.chart:
        data = base64.b64encode(model.chart).decode("ascii")
        extras.append(
            "<details><summary>How the model did on held-out rows</summary>"
            f'<img class="chart" alt="evaluation chart" src="data:image/png;base64,{data}">'
            "</details>"
        )
    if dropped:
        items = "".join(f"<li>{esc(d['name'])}: {esc(d['reason'])}</li>" for d in dropped)
        extras.append(
            f"<details><summary>Ignored columns</summary><ul class='muted'>{items}</ul></details>"
        )
    example = json.dumps({"rows": [{f["name"]: f.get("example") for f in model.features}]})
    extras.append(
        "<details><summary>Use the API</summary>"
        "<pre>curl -X POST -H 'Content-Type: application/json' "
        f"\\\n  -d {esc(shell_quote(example))} \\\n  &lt;this-url&gt;/predict</pre></details>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Predict {esc(target)}</title><style>{STYLE}</style></head>
<body>
<header class="hero"><div class="inner">
  <div class="eyebrow">TrainBot · live model</div>
  <h1>Predict {esc(target)}</h1>
  <p>{esc(str(schema.get("task", "")).capitalize())} · {esc(m.get("model", "model"))}
     · trained on {esc(trained_rows(m))} rows</p>
  <div class="stats">
    <div class="stat"><span>Test {esc(metric_name)}</span>
      <b>{esc(score_text(metric, m.get("score")))}</b></div>
    <div class="stat"><span>Baseline ({esc(m.get("baseline_name", "baseline"))})</span>
      <b>{esc(score_text(metric, m.get("baseline")))}</b></div>
  </div>
</div></header>
<main class="wrap">
  <section class="card">
    <h2>Inputs</h2>
    <form id="predict-form" method="post" action="/" data-target="{esc(target)}">
      <div class="fields">{fields}</div>
      <button type="submit">Predict</button>
    </form>
    {importance_html(schema, metric_name)}
    {"".join(extras)}
  </section>
  <aside class="card result" id="result" aria-live="polite">
    {result_html(result, error, target)}
  </aside>
</main>
<script>{SCRIPT}</script>
</body></html>
"""


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# ------------------------------------------------------------------ server


class Handler(BaseHTTPRequestHandler):
    server_version = "TrainBotApp/1.0"
    timeout = READ_TIMEOUT_SECONDS  # per read: a client that stops sending is dropped soon
    # The status line the standard library uses before it has read a valid request line;
    # its own default, HTTP/0.9, sends a bare body with no status and no headers.
    default_request_version = "HTTP/1.0"
    model: Model  # set on the class by main()

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_HEAD(self) -> None:
        self.dispatch("HEAD")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self.dispatch("OPTIONS")

    def dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        shown = path[:SHOWN_CHARS] + ("..." if len(path) > SHOWN_CHARS else "")
        try:
            allowed = ROUTES.get(path)
            if allowed is None:
                self.send_json(
                    404, {"error": f"no such page {shown}; try /, /health, /schema or /predict"}
                )
            elif method not in allowed:
                self.send_json(
                    405,
                    {"error": f"{method} is not allowed on {path}; use {' or '.join(allowed)}"},
                    headers={"Allow": ", ".join(allowed)},
                )
            elif path == "/health":
                self.send_json(200, {"status": "ok"})
            elif path == "/schema":
                self.send_json(200, self.model.schema)
            elif path == "/predict":
                self.handle_predict()
            elif method == "POST":
                self.handle_form()
            else:
                self.send_html(200, render_page(self.model))
        except BadRequest as exc:
            self.close_connection = True  # the body may be partly unread
            self.send_json(exc.status, {"error": str(exc)})
        except Exception as exc:  # never let a request kill the server or leak a traceback
            self.log_message("error on %s %s: %r", method, path, exc)
            self.send_json(500, {"error": "internal error while predicting; see the app log"})

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadRequest("chunked bodies are not supported; send a Content-Length header")
        text = (self.headers.get("Content-Length") or "0").strip()
        # int() alone would take "1_000", "-5" and non-ASCII digits.
        if not (text.isascii() and text.isdigit()):
            raise BadRequest(f"Content-Length header is not a number: {text[:SHOWN_CHARS]!r}")
        length = int(text[:20])  # more digits than that is far over the cap anyway
        if length > MAX_BODY_BYTES or len(text) > 20:
            self.discard(length)
            raise BodyTooLarge(
                f"request body is too big ({text[:SHOWN_CHARS]} bytes); the limit is 1 MB "
                f"({MAX_BODY_BYTES:,} bytes): send at most {MAX_ROWS} rows per request"
            )
        if length == 0:
            raise BadRequest('request body is empty; send {"rows": [{feature: value, ...}]}')
        return self.read_exactly(length)

    def read_exactly(self, length: int) -> bytes:
        """The body, read one arrival at a time so a trickling client is cut off on time."""
        deadline = time.monotonic() + BODY_SECONDS
        chunks: list[bytes] = []
        received = 0
        while received < length:
            if time.monotonic() > deadline:
                raise BodyTimeout(f"the body did not arrive in time ({BODY_SECONDS} seconds)")
            try:
                chunk = self.rfile.read1(min(length - received, 65536))
            except TimeoutError:
                raise BodyTimeout(
                    f"the body did not arrive in time: {received} of the {length} bytes "
                    f"Content-Length promised came, then nothing for {READ_TIMEOUT_SECONDS} "
                    "seconds"
                ) from None
            if not chunk:
                raise BadRequest(
                    f"the body ended after {received} of the {length} bytes Content-Length promised"
                )
            chunks.append(chunk)
            received += len(chunk)
        return b"".join(chunks)

    def discard(self, length: int) -> None:
        """Drain a refused body so the client can read our answer; give up on huge ones."""
        self.close_connection = True
        remaining = length if length <= 16 * MAX_BODY_BYTES else 0
        deadline = time.monotonic() + BODY_SECONDS
        while remaining > 0 and time.monotonic() < deadline:
            try:
                chunk = self.rfile.read1(min(remaining, 65536))
            except TimeoutError:
                break
            if not chunk:
                break
            remaining -= len(chunk)

    def handle_predict(self) -> None:
        payload = parse_json(self.read_body())
        if not isinstance(payload, dict):
            raise BadRequest('body must be a JSON object like {"rows": [{feature: value, ...}]}')
        if "rows" not in payload:
            raise BadRequest('body has no "rows"; send {"rows": [{feature: value, ...}]}')
        self.send_json(200, self.model.predict(payload["rows"]))

    def handle_form(self) -> None:
        """The form posted without JavaScript: render the page with the prediction."""
        try:
            fields = parse_qs(self.read_body().decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            fields = {}
        values = {f["name"]: fields.get(f["name"], [""])[0] for f in self.model.features}
        row = {name: (value if value.strip() else None) for name, value in values.items()}
        try:
            result = self.model.predict([row])
        except BadRequest as exc:
            self.send_html(400, render_page(self.model, values, error=str(exc)))
            return
        self.send_html(200, render_page(self.model, values, result=result))

    def send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data, default=plain).encode("utf-8")
        self.send_body(status, body, "application/json", headers)

    def send_html(self, status: int, page: str) -> None:
        self.send_body(status, page.encode("utf-8"), "text/html; charset=utf-8")

    def send_body(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own refusals, as JSON like every other answer.

        http.server calls this for a request line it cannot read (400, 414, 505), headers
        over its limits (431) and a method with no do_ handler (501, which we answer as a
        405 or 404 for the path, as any other method the path does not take).
        """
        self.close_connection = True
        if code == HTTPStatus.NOT_IMPLEMENTED and self.command:
            self.dispatch(self.command[:20] + ("..." if len(self.command) > 20 else ""))
            return
        self.log_error("code %d, message %s", code, (message or "")[:SHOWN_CHARS])
        reason = REFUSALS.get(code) or (message or "the request could not be read")
        self.send_json(code, {"error": reason[:SHOWN_CHARS]}, headers={"Connection": "close"})

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> int:
    directory = artifact_dir()
    try:
        Handler.model = Model.load(directory)
    except (OSError, ValueError) as exc:
        print(f"error: cannot load the model from {directory}: {exc}", file=sys.stderr)
        return 1
    host, port = os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"serving {Handler.model.metrics.get('model')} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
