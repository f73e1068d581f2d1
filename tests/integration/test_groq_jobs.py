"""Whole jobs with Groq writing the code: repairs, fallbacks, and what each side was told.

The real groq SDK talks to a local OpenAI-compatible server (tests/fakes/groq_api.py);
training and the live app run for real in the local sandbox.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from pipeline.codegen.groq import GroqGenerator
from pipeline.codegen.template import template_source
from pipeline.events import RecordingSink
from storage.states import JobStatus
from tests.fakes.groq_api import FakeGroq, error_reply, files_reply, raw_reply
from tests.support.pipeline import event_messages, make_settings, start_services, submit, wait_for

GOOD = {"train.py": template_source("train.py"), "app.py": template_source("app.py")}
CRASHING_TRAIN = (
    "import pandas as pd\ndata = pd.read_csv('data.csv')\nraise KeyError('no column named price')\n"
)
APP_WITHOUT_PREDICTIONS = """
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def do_POST(self):
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"model not loaded")


ThreadingHTTPServer((os.environ.get("HOST", "0.0.0.0"), int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def groq() -> Iterator[FakeGroq]:
    with FakeGroq() as fake:
        yield fake


def run_job(engine: Engine, tmp_path: Path, groq: FakeGroq, **settings: object):  # type: ignore[no-untyped-def]
    generator = GroqGenerator(
        api_key="gsk_test_key", base_url=groq.base_url, timeout=10, max_retries=2
    )
    services = start_services(
        engine, make_settings(tmp_path, **settings), RecordingSink(), codegen=generator
    )
    try:
        job_id = submit(services, dataset_source="iris", goal="tell iris species apart")
        job = wait_for(services, job_id)
        return (
            job,
            event_messages(services, job_id, "warning"),
            event_messages(services, job_id, "progress"),
        )
    finally:
        services.worker.shutdown()


def sent(groq: FakeGroq, request: int) -> str:
    """Everything the model was sent in one request, as one text."""
    return json.dumps(groq.completions()[request].body["messages"])


def test_valid_code_goes_live_and_the_prompt_describes_the_task(
    sqlite_engine: Engine, tmp_path: Path, groq: FakeGroq
) -> None:
    groq.script([files_reply(GOOD, notes="logistic regression")])
    job, warnings, progress = run_job(sqlite_engine, tmp_path, groq)
    assert job.status == JobStatus.LIVE, job.error
    assert job.codegen_provider == "groq" and warnings == []
    assert any("groq wrote app.py, train.py" in m for m in progress)
    body = groq.completions()[0].body
    assert body["response_format"] == {"type": "json_object"}
    prompt = sent(groq, 0)
    for fact in (
        "tell iris species apart",
        "species",
        "classification",
        "/predict",
        "/health",
        "metrics.json",
    ):
        assert fact in prompt, fact


def test_syntax_error_then_a_fix(sqlite_engine: Engine, tmp_path: Path, groq: FakeGroq) -> None:
    groq.script([files_reply({**GOOD, "train.py": "def train(:\n    pass\n"}), files_reply(GOOD)])
    job, warnings, progress = run_job(sqlite_engine, tmp_path, groq)
    assert job.status == JobStatus.LIVE, job.error
    assert any("groq's code was rejected" in w and "does not parse" in w for w in warnings)
    assert any("asking groq to fix its code (attempt 2 of 3)" in m for m in progress)
    repair = sent(groq, 1)
    assert "does not parse" in repair and "def train(:" in repair


def test_code_that_crashes_in_training_then_a_fix(
    sqlite_engine: Engine, tmp_path: Path, groq: FakeGroq
) -> None:
    groq.script([files_reply({**GOOD, "train.py": CRASHING_TRAIN}), files_reply(GOOD)])
    job, warnings, _ = run_job(sqlite_engine, tmp_path, groq)
    assert job.status == JobStatus.LIVE, job.error
    assert any("training script failed" in w and "no column named price" in w for w in warnings)
    repair = sent(groq, 1)
    assert "train" in repair and "KeyError" in repair and "no column named price" in repair
    assert job.codegen_provider == "groq"


def test_app_that_fails_verification_then_a_fix(
    sqlite_engine: Engine, tmp_path: Path, groq: FakeGroq
) -> None:
    groq.script([files_reply({**GOOD, "app.py": APP_WITHOUT_PREDICTIONS}), files_reply(GOOD)])
    job, warnings, _ = run_job(sqlite_engine, tmp_path, groq)
    assert job.status == JobStatus.LIVE, job.error
    assert any("HTTP 500" in w for w in warnings)
    repair = sent(groq, 1)
    assert "app.py` was started" in repair and "HTTP 500" in repair


def test_an_answer_that_is_not_json_is_sent_back(
    sqlite_engine: Engine, tmp_path: Path, groq: FakeGroq
) -> None:
    groq.script([raw_reply("Sure! Here is your code: import sklearn"), files_reply(GOOD)])
    job, warnings, _ = run_job(sqlite_engine, tmp_path, groq)
    assert job.status == JobStatus.LIVE, job.error
    assert any("rejected" in w and "JSON" in w for w in warnings)
    assert "Sure! Here is your code" in sent(groq, 1)


def test_rate_limit_then_success_is_retried_by_the_sdk(
    sqlite_engine: Engine, tmp_path: Path, groq: FakeGroq
) -> None:
    groq.script(
        [
            error_reply(429, "Rate limit reached", "rate_limit_exceeded", retry_after_ms=1),
            files_reply(GOOD),
        ]
    )
    job, warnings, _ = run_job(sqlite_engine, tmp_path, groq)
    assert job.status == JobStatus.LIVE, job.error
    assert warnings == [] and job.codegen_provider == "groq"
    assert [r.status for r in groq.completions()] == [429, 200]


def test_permanent_failure_falls_back_to_the_template_and_says_so(
    sqlite_engine: Engine, tmp_path: Path, groq: FakeGroq
) -> None:
    groq.script([error_reply(503, "Service unavailable")] * 5)
    job, warnings, _ = run_job(sqlite_engine, tmp_path, groq)
    assert job.status == JobStatus.LIVE, job.error
    assert job.codegen_provider == "template"
    assert any("Groq" in w and "using the offline template instead" in w for w in warnings)


def test_code_that_keeps_failing_falls_back_after_the_attempts(
    sqlite_engine: Engine, tmp_path: Path, groq: FakeGroq
) -> None:
    groq.script([files_reply({**GOOD, "train.py": CRASHING_TRAIN})] * 2)
    job, warnings, _ = run_job(sqlite_engine, tmp_path, groq, TRAINBOT_CODEGEN_ATTEMPTS=2)
    assert job.status == JobStatus.LIVE, job.error
    assert job.codegen_provider == "template"
    assert any(
        "still failed after 2 attempts; using the offline template instead" in w for w in warnings
    )
    assert len(groq.completions()) == 2
