"""GroqGenerator through the real groq SDK against a fake Groq API on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.codegen.base import CodeFailure, ColumnInfo, GeneratedCode, TaskSpec, TaskType
from pipeline.codegen.groq import DEFAULT_MODEL, GroqGenerator
from pipeline.codegen.template import template_source
from pipeline.errors import CodegenUnavailable, InvalidCode
from tests.fakes.groq_api import (
    COMPLETIONS_PATH,
    FakeGroq,
    FakeReply,
    error_reply,
    files_reply,
    json_reply,
    json_validate_failed,
    raw_reply,
)

SPEC = TaskSpec(
    name="flowers",
    goal="tell the iris species from petal and sepal sizes",
    task=TaskType.CLASSIFICATION,
    target="species",
    data_file="data.csv",
    columns=[
        ColumnInfo("petal length", "float64", "number", 0, 43, [1.4, 4.7]),
        ColumnInfo("species", "object", "category", 0, 3, ["setosa", "virginica"]),
    ],
    n_rows=150,
    sample_rows=[{"petal length": 1.4, "species": "setosa"}],
    classes=["setosa", "versicolor", "virginica"],
)
TEMPLATE = {name: template_source(name) for name in ("train.py", "app.py")}
BROKEN_TRAIN = "import pandas as pd\n\ndef main(:\n    pass\n"
MakeGenerator = Callable[..., GroqGenerator]


@pytest.fixture
def fake() -> Iterator[FakeGroq]:
    with FakeGroq() as fake:
        yield fake


@pytest.fixture
def make(fake: FakeGroq) -> MakeGenerator:
    def build(**overrides: Any) -> GroqGenerator:
        options: dict[str, Any] = {
            "api_key": fake.api_key,
            "base_url": fake.base_url,
            "timeout": 5.0,
            "max_retries": 2,
        }
        return GroqGenerator(**(options | overrides))

    return build


# -- good answers -----------------------------------------------------------------------------


def test_valid_answer_becomes_generated_code(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([files_reply(TEMPLATE, ["scikit-learn>=1.5"], notes="Random forest vs linear.")])
    generator = make()

    code = generator.generate(SPEC, [])

    assert code == GeneratedCode(
        TEMPLATE, ["scikit-learn>=1.5"], "Random forest vs linear.", "groq"
    )
    assert generator.name == "groq" and generator.can_repair is True
    (request,) = fake.requests
    assert request.path == COMPLETIONS_PATH
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    assert request.body["model"] == DEFAULT_MODEL == "llama-3.3-70b-versatile"
    assert request.body["response_format"] == {"type": "json_object"}
    assert [m["role"] for m in request.body["messages"]] == ["system", "user"]
    (prompt,) = fake.user_prompts()
    assert '"species"' in prompt and "tell the iris species" in prompt
    assert generator.usage and generator.usage[0].model == DEFAULT_MODEL


def test_the_chosen_model_is_sent(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([files_reply(TEMPLATE)])
    make(model="openai/gpt-oss-120b").generate(SPEC, [])
    assert fake.requests[0].body["model"] == "openai/gpt-oss-120b"


def test_groq_base_url_from_the_environment_alone(
    fake: FakeGroq, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_BASE_URL", fake.base_url)
    fake.script([files_reply(TEMPLATE)])

    code = GroqGenerator(api_key=fake.api_key, timeout=5.0, max_retries=0).generate(SPEC, [])

    assert code.files == TEMPLATE
    assert len(fake.completions()) == 1


# -- answers that cannot be used --------------------------------------------------------------


def test_answer_that_is_not_json(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([raw_reply("not json at all")])
    with pytest.raises(InvalidCode, match="not JSON") as caught:
        make().generate(SPEC, [])
    assert "not json at all" in caught.value.detail


def test_json_without_files(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([json_reply({"code": "print('hi')"})])
    with pytest.raises(InvalidCode, match='no "files"'):
        make().generate(SPEC, [])


def test_files_that_are_not_text(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([json_reply({"files": {"train.py": ["import os"], "app.py": "x = 1"}})])
    with pytest.raises(InvalidCode, match="source text"):
        make().generate(SPEC, [])


def test_syntax_error_names_the_line(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([files_reply({"train.py": BROKEN_TRAIN, "app.py": TEMPLATE["app.py"]})])
    with pytest.raises(InvalidCode, match=r"train\.py does not parse: .*\(line 3\)") as caught:
        make().generate(SPEC, [])
    assert caught.value.files["train.py"] == BROKEN_TRAIN  # kept for the repair


def test_package_the_sandbox_lacks(fake: FakeGroq, make: MakeGenerator) -> None:
    app = TEMPLATE["app.py"].replace("import json\n", "import json\nimport requests\n", 1)
    fake.script([files_reply({"train.py": TEMPLATE["train.py"], "app.py": app})])
    with pytest.raises(InvalidCode, match="app.py imports requests"):
        make().generate(SPEC, [])


def test_missing_app(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([files_reply({"train.py": TEMPLATE["train.py"]})])
    with pytest.raises(InvalidCode, match="no app.py"):
        make().generate(SPEC, [])


def test_answer_cut_off_at_the_token_limit(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([raw_reply('{"files": {"train.py": "import pan', finish_reason="length")])
    with pytest.raises(InvalidCode, match="cut off"):
        make().generate(SPEC, [])


def test_groq_json_validation_failure_is_invalid_code(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([json_validate_failed('{"files": {"train.py": "oops')])
    with pytest.raises(InvalidCode, match="did not produce valid JSON") as caught:
        make().generate(SPEC, [])
    assert '"train.py": "oops' in caught.value.detail
    assert len(fake.requests) == 1  # a 400 is not retried


# -- Groq unavailable -------------------------------------------------------------------------


def test_rate_limit_then_success(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script(
        [
            error_reply(429, "Rate limit reached for model", "rate_limit_exceeded", retry_after=0),
            files_reply(TEMPLATE),
        ]
    )
    assert make().generate(SPEC, []).files == TEMPLATE
    assert [r.status for r in fake.requests] == [429, 200]


def test_lasting_rate_limit(fake: FakeGroq, make: MakeGenerator) -> None:
    limited = error_reply(429, "Rate limit reached", "rate_limit_exceeded", retry_after_ms=1)
    fake.script([limited] * 3)
    with pytest.raises(CodegenUnavailable, match="rate limit or quota") as caught:
        make(max_retries=2).generate(SPEC, [])
    assert len(fake.requests) == 3  # the first try and the SDK's two retries
    assert "Traceback" not in str(caught.value)


def test_lasting_server_error(fake: FakeGroq, make: MakeGenerator) -> None:
    # Nothing scripted: the fake answers 500 to every request.
    with pytest.raises(CodegenUnavailable, match=r"server error \(HTTP 500\)"):
        make(max_retries=2).generate(SPEC, [])
    assert [r.status for r in fake.requests] == [500, 500, 500]


def test_wrong_api_key(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([files_reply(TEMPLATE)])
    with pytest.raises(CodegenUnavailable, match="GROQ_API_KEY") as caught:
        make(api_key="gsk_wrong").generate(SPEC, [])
    assert str(caught.value) == "Groq refused the API key (check GROQ_API_KEY)"
    assert [r.status for r in fake.requests] == [401]
    assert fake.pending == 1


def test_unknown_model(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([error_reply(404, "The model `llama-9` does not exist", "model_not_found")])
    with pytest.raises(CodegenUnavailable, match="does not offer the model 'llama-9'"):
        make(model="llama-9").generate(SPEC, [])


def test_request_too_large(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script(
        [error_reply(413, "Request too large on tokens per minute (TPM)", "rate_limit_exceeded")]
    )
    with pytest.raises(CodegenUnavailable, match=r"HTTP 413\): Request too large"):
        make().generate(SPEC, [])


def test_unreachable_server(make: MakeGenerator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    generator = make(base_url=f"http://127.0.0.1:{closed_port}", max_retries=0)
    with pytest.raises(CodegenUnavailable, match="Groq could not be reached"):
        generator.generate(SPEC, [])


def test_server_that_does_not_answer_in_time(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([FakeReply(content=json.dumps({"files": TEMPLATE}), delay=3.0)])
    started = time.monotonic()
    with pytest.raises(CodegenUnavailable, match="no answer within 0.3 seconds"):
        make(timeout=0.3, max_retries=0).generate(SPEC, [])
    assert time.monotonic() - started < 2.5


# -- repair -----------------------------------------------------------------------------------


def test_repair_sends_the_failure_and_the_previous_files(
    fake: FakeGroq, make: MakeGenerator
) -> None:
    previous = GeneratedCode({"train.py": BROKEN_TRAIN, "app.py": TEMPLATE["app.py"]}, [], "v1")
    failure = CodeFailure(
        stage="train",
        message="train.py stopped: KeyError 'species'",
        log="Traceback (most recent call last):\n" + "  frame\n" * 2_000 + "KeyError: 'species'",
    )

    def answer(request: dict[str, Any]) -> FakeReply:
        roles = [m["role"] for m in request["messages"]]
        if roles != ["system", "user", "assistant", "user"]:
            return error_reply(400, f"unexpected conversation {roles}")
        return files_reply(TEMPLATE, notes="Fixed the target column name.")

    fake.script([answer])
    code = make().repair(SPEC, [], previous, failure)

    assert code == GeneratedCode(TEMPLATE, [], "Fixed the target column name.", "groq")
    messages = fake.last_messages()
    assert json.loads(messages[2]["content"])["files"] == previous.files
    task, repair = fake.user_prompts()
    assert '"species"' in task
    assert "python train.py" in repair
    assert "train.py stopped: KeyError 'species'" in repair
    assert "KeyError: 'species'" in repair
    assert len(repair) < 5_000  # the log went in trimmed
    assert fake.requests[-1].body["response_format"] == {"type": "json_object"}


def test_repair_answers_are_checked_too(fake: FakeGroq, make: MakeGenerator) -> None:
    previous = GeneratedCode(TEMPLATE, [], "v1")
    fake.script([files_reply({"train.py": BROKEN_TRAIN, "app.py": TEMPLATE["app.py"]})])
    with pytest.raises(InvalidCode, match="does not parse"):
        make().repair(SPEC, [], previous, CodeFailure("deploy", "app did not answer /health"))
