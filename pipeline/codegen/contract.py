"""The contract between the pipeline and any generated code, template or LLM alike.

The pipeline writes into the sandbox working directory:
  task.json   TaskSpec.to_json_dict(); spend about its "time_budget_seconds" on the search
  data.csv    the training data (held-out verification rows removed, headers trimmed)
  train.py / app.py and any other generated files

`python train.py` must write:
  model.joblib  the fitted model
  metrics.json  {"task", "metric", "score", "baseline", "baseline_name", "model",
                 "n_train", "n_test", "extra": {name: value}}
                 `score` and `baseline` are measured on the same held-out test split;
                 higher is better for `metric` (accuracy for classification, r2 for regression).
                 Optional: "cv_metric", "cv_score" (the chosen model's CV mean), "leaderboard":
                 [{"model", "cv_score", "cv_std", "seconds", "note"?}] best first, <= 20;
                 "warnings": [sentence]; "budget_seconds", "seconds"; "threshold" (binary).
  schema.json   {"target", "task", "features": [{"name", "type", "choices"?, "example"?,
                 "min"?, "max"?}], "classes", "metrics", "dropped": [{"name", "reason"}]}
                 feature "type" is one of "number", "category", "date", "bool".
                 Optional: "importances": [{"name", "importance", "std"}] largest first
                 (permutation importance of each feature on the test split).
  chart.png     confusion matrix (classification) or predicted-vs-actual (regression)

`PORT=<n> python app.py` must serve on 0.0.0.0:$PORT (HOST overrides the address):
  GET  /          HTML page with a form built from schema.json that shows a prediction
  GET  /health    200 {"status": "ok"}
  GET  /schema    the schema.json content
  POST /predict   {"rows": [{feature: value, ...}, ...]}
                  -> 200 {"predictions": [...], "probabilities": [{class: p}, ...]}
                     (probabilities for classifiers only)
                  bad input -> 400 {"error": "<what is wrong and how to fix it>"}
  A row's keys are the CSV's own headers as users typed them: match each key to a name
  in schema.json by column_key(key) == column_key(name), where
      column_key(name) = " ".join(name.split()).casefold()
  (case and surrounding or repeated spaces do not matter; the deploy check sends the
  held-out rows with the headers exactly as the uploaded CSV had them).
  Columns listed under "dropped" are accepted in rows and ignored; unknown columns, a
  column given twice, missing features and values of the wrong type are 400s.
  null means "unknown".

  Every error is JSON {"error": "<plain words>"} (never HTML or a traceback) and the app
  keeps serving. Refuse each of these (the deploy check tries most), then GET /health:
    Content-Length over 1,000,000 bytes -> 413 (refuse before reading)
    more than 1000 rows, or not JSON -> 400
    an integer over 100 digits -> 400 (json.loads(body, parse_int=...) must refuse it)
    JSON nested over 20 levels -> 400 (count before json.loads, which recurses)
    body stops arriving -> 408 within 5 seconds
    any method a path does not take, made-up ones too -> 405 with Allow
  With http.server: timeout = 5, default_request_version = "HTTP/1.0", and override
  send_error() to answer JSON (and 405 for its 501 "Unsupported method").
"""

TASK_FILE = "task.json"
DATA_FILE = "data.csv"
TRAIN_SCRIPT = "train.py"
APP_SCRIPT = "app.py"
MODEL_FILE = "model.joblib"
METRICS_FILE = "metrics.json"
SCHEMA_FILE = "schema.json"
CHART_FILE = "chart.png"
# The offline template's train.py imports its model search from this file beside it.
SEARCH_MODULE = "model_search.py"

# The live app's limits (stated in the docstring above; the template app carries a copy,
# which tests/unit/test_template_codegen.py holds to these).
MAX_BODY_BYTES = 1_000_000
MAX_ROWS = 1000
MAX_INT_DIGITS = 100
MAX_JSON_DEPTH = 20
READ_TIMEOUT_SECONDS = 5

REQUIRED_SOURCES = (TRAIN_SCRIPT, APP_SCRIPT)
TRAINING_OUTPUTS = (MODEL_FILE, METRICS_FILE, SCHEMA_FILE, CHART_FILE)


def column_key(name: str) -> str:
    """How a column name is matched: case and surrounding or repeated spaces do not count.

    The one rule for headers: the dataset stage refuses CSVs whose headers share a key and
    matches the target by it; the template scripts carry a verbatim copy (they run alone in
    the sandbox), which tests/unit/test_template_codegen.py holds to this one.
    """
    return " ".join(name.split()).casefold()
