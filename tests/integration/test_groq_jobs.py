"""Whole jobs with Groq writing the code: repairs, fallbacks, and what each side was told.

The real groq SDK talks to a local OpenAI-compatible server (tests/fakes/groq_api.py);
training and the live app run for real in the local sandbox. Most tests script the full
template as the model's answer, far longer than a free-tier answer may be, so their fake key
has paid-tier token limits and their generator budgets to match; the free-tier tests say so.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from pipeline.bootstrap import Services
from pipeline.codegen.groq import GroqGenerator
from pipeline.codegen.template import template_files
from pipeline.events import RecordingSink
from storage import queries
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import JobStatus
from tests.fakes.groq_api import FREE_TIER_TPM, FakeGroq, error_reply, files_reply, raw_reply
from tests.support.pipeline import event_messages, make_settings, start_services, submit, wait_for

GOOD = template_files()
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


PAID_TIER = {"tokens_per_minute": 250_000, "tokens_per_day": 10_000_000}
PAID_BUDGET = {"prompt_tokens": 30_000, "completion_tokens": 30_000}


@pytest.fixture
def groq() -> Iterator[FakeGroq]:
    with FakeGroq(**PAID_TIER) as fake:
        yield fake


Outcome = tuple[TrainingJob, list[str], list[str]]


def run_job(
    engine: Engine,
    tmp_path: Path,
    groq: FakeGroq,
    budget: dict[str, int] = PAID_BUDGET,
    **settings: object,
) -> Outcome:
    generator = GroqGenerator(
        api_key="gsk_test_key", base_url=groq.base_url, timeout=10, max_retries=2, **budget
    )
    services = start_services(
        engine, make_settings(tmp_path, **settings), RecordingSink(), codegen=generator
    )
    try:
        return one_job(services)
    finally:
        services.worker.shutdown()


def one_job(services: Services) -> Outcome:
    job_id = submit(services, dataset_source="iris", goal="tell iris species apart")
    job = wait_for(services, job_id)
    return (
        job,
        event_messages(services, job_id, "warning"),
        event_messages(services, job_id, "progress"),
    )


def codegen_warnings(services: Services, job_id: str) -> list[str]:
    with session_scope(services.engine) as session:
        events = queries.list_events(session, job_id=job_id, kinds=["warning"])
    return [e.message for e in events if e.stage == "codegen"]


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
    assert any(f"groq wrote {', '.join(sorted(GOOD))}" in m for m in progress)
    assert len(groq.model_listings()) == 1  # checked once, at start
    body = groq.completions()[0].body
    assert body["model"] == "openai/gpt-oss-120b"
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["reasoning_effort"] == "low"
    assert body["max_completion_tokens"] == 30_000
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
    # A model in JSON mode; Groq itself answers 400 json_validate_failed to prose.
    groq.script([raw_reply("Sure! Here is your code: import sklearn"), files_reply(GOOD)])
    generator = GroqGenerator(
        api_key=groq.api_key, base_url=groq.base_url, model="qwen/qwen3.6-27b", **PAID_BUDGET
    )
    services = start_services(
        sqlite_engine, make_settings(tmp_path), RecordingSink(), codegen=generator
    )
    try:
        job, warnings, _ = one_job(services)
    finally:
        services.worker.shutdown()
    assert job.status == JobStatus.LIVE, job.error
    assert any("rejected" in w and "did not produce valid JSON" in w for w in warnings)
    assert groq.completions()[0].body["response_format"] == {"type": "json_object"}
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


# -- the model, checked when the service starts -----------------------------------------------


def test_a_retired_model_is_named_at_start_and_in_each_job_thread(
    sqlite_engine: Engine,
    tmp_path: Path,
    groq: FakeGroq,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GROQ_BASE_URL", groq.base_url)
    settings = make_settings(
        tmp_path,
        TRAINBOT_CODEGEN="groq",
        GROQ_API_KEY=groq.api_key,
        GROQ_MODEL="llama-3.3-70b-versatile",
    )
    expected = (
        "Groq does not offer the model llama-3.3-70b-versatile to this API key (it was retired "
        "or never existed): set GROQ_MODEL to a current model such as openai/gpt-oss-120b"
    )
    with caplog.at_level(logging.WARNING, logger="pipeline.codegen.groq"):
        services = start_services(sqlite_engine, settings)
        generator = services.deps.codegen
        assert isinstance(generator, GroqGenerator) and generator.wait_for_check()
    try:
        assert [r.getMessage() for r in caplog.records] == [expected]
        job_ids = [submit(services, dataset_source="iris", goal="iris") for _ in range(2)]
        jobs = [wait_for(services, job_id) for job_id in job_ids]
        for job, job_id in zip(jobs, job_ids, strict=True):
            assert job.status == JobStatus.LIVE, job.error
            assert job.codegen_provider == "template"
            assert codegen_warnings(services, job_id) == [
                f"{expected}; using the offline template instead"
            ]
    finally:
        services.worker.shutdown()
    assert len(groq.model_listings()) == 1
    assert groq.completions() == []  # no request spent on a model Groq does not serve


def test_a_failed_model_check_does_not_stop_the_service(
    sqlite_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listing_down = error_reply(503, "Service Unavailable", error_type="internal_server_error")
    with FakeGroq(models_reply=listing_down, **PAID_TIER) as groq:
        groq.script([files_reply(GOOD)])
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="pipeline.codegen.groq"):
            job, warnings, _ = run_job(sqlite_engine, tmp_path, groq)
        assert job.status == JobStatus.LIVE, job.error
        assert job.codegen_provider == "groq" and warnings == []
        assert len(groq.model_listings()) == 1  # one try, no retries at start
    (record,) = caplog.records
    assert record.getMessage().startswith("Could not check GROQ_MODEL=openai/gpt-oss-120b")
    assert time.monotonic() - started < 120


# -- Groq's free tier: 8,000 tokens a minute for prompt and answer together --------------------

NOISY_CRASHING_TRAIN = (
    "import pandas as pd\n"
    "for i in range(2000):\n"
    "    print('reading row', i, 'of the training data', flush=True)\n"
    "raise KeyError('no column named price')\n"
)
# Valid and long: the previous answer a repair must show, too long to show whole.
LONG_APP = APP_WITHOUT_PREDICTIONS + "".join(
    f"# note {i}: the form lists one input per feature of schema.json\n" for i in range(200)
)


def test_on_the_free_tier_every_request_fits_the_key_limit(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    with FakeGroq(minute=3.0) as groq:  # free-tier limits; a short minute to wait out
        answer = files_reply(
            {"train.py": NOISY_CRASHING_TRAIN, "app.py": LONG_APP}, reasoning_tokens=800
        )
        groq.script([answer, answer])
        job, warnings, _ = run_job(
            sqlite_engine, tmp_path, groq, budget={}, TRAINBOT_CODEGEN_ATTEMPTS=2
        )
        requests = groq.completions()
    assert job.status == JobStatus.LIVE, job.error
    assert job.codegen_provider == "template"
    assert any("still failed after 2 attempts; using the offline template" in w for w in warnings)
    answered = [r for r in requests if r.status == 200]
    assert len(answered) == 2 and {r.status for r in requests} <= {200, 429}
    assert all(r.requested_tokens <= FREE_TIER_TPM for r in requests)
    assert all(r.body["max_completion_tokens"] == 4_800 for r in requests)
    repair = json.dumps(answered[1].body["messages"])
    assert "no column named price" in repair and "shortened to fit this request" in repair


def test_a_request_too_large_for_the_key_falls_back_once_in_plain_words(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    with FakeGroq(tokens_per_minute=6_000) as groq:  # a key with a lower limit than assumed
        job, warnings, _ = run_job(sqlite_engine, tmp_path, groq, budget={})
        statuses = [r.status for r in groq.completions()]
    assert job.status == JobStatus.LIVE, job.error
    assert job.codegen_provider == "template"
    assert statuses == [413]  # neither retried nor asked again
    assert warnings == [
        "Groq refused the request as too large for this key's token limit (6,000 tokens per "
        "minute): lower TRAINBOT_GROQ_PROMPT_TOKENS and TRAINBOT_GROQ_COMPLETION_TOKENS (now "
        "3,000 + 4,800) to fit it, or use a key with a higher limit; using the offline template "
        "instead"
    ]
