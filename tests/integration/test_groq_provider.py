"""GroqGenerator through the real groq SDK against a fake Groq API on loopback."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import groq
import pytest

from pipeline.codegen.base import (
    CheckedAtStart,
    CodeFailure,
    ColumnInfo,
    GeneratedCode,
    Resource,
    TaskSpec,
    TaskType,
)
from pipeline.codegen.groq import DEFAULT_MODEL, GroqGenerator
from pipeline.codegen.prompt import REPLY_SCHEMA
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
# Short files that pass the checks: these tests are about the talk with Groq, not the code.
FILES = {
    "train.py": "import json\n\nimport pandas as pd\n\nprint(json.dumps(len(pd.read_csv('data.csv'))))\n",
    "app.py": "import http.server\nimport os\n\nprint(os.environ.get('PORT'))\n",
}
BROKEN_TRAIN = "import pandas as pd\n\ndef main(:\n    pass\n"
JSON_MODE_MODEL = "qwen/qwen3.6-27b"  # current on Groq, no strict mode: JSON mode
FREE_TIER = 8_000
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


def client(fake: FakeGroq) -> groq.Groq:
    return groq.Groq(api_key=fake.api_key, base_url=fake.base_url, max_retries=0)


def big_files(size: int) -> dict[str, str]:
    """Valid Python that is `size` characters long in all, most of it comments."""
    filler = "".join(
        f"# line {i} of a long explanation of the approach\n" for i in range(size // 50)
    )
    half = filler[: size // 2]
    return {"train.py": FILES["train.py"] + half, "app.py": FILES["app.py"] + half}


# -- good answers -----------------------------------------------------------------------------


def test_valid_answer_becomes_generated_code(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([files_reply(FILES, ["scikit-learn>=1.5"], notes="Random forest vs linear.")])
    generator = make()

    code = generator.generate(SPEC, [])

    assert code == GeneratedCode(FILES, ["scikit-learn>=1.5"], "Random forest vs linear.", "groq")
    assert generator.name == "groq" and generator.can_repair is True
    (request,) = fake.requests
    assert request.path == COMPLETIONS_PATH
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    assert [m["role"] for m in request.body["messages"]] == ["system", "user"]
    (prompt,) = fake.user_prompts()
    assert '"species"' in prompt and "tell the iris species" in prompt
    assert generator.usage and generator.usage[0].model == DEFAULT_MODEL


def test_the_default_is_groq_current_reasoning_model_with_strict_outputs(
    fake: FakeGroq, make: MakeGenerator
) -> None:
    fake.script([files_reply(FILES, reasoning_tokens=900)])
    make().generate(SPEC, [])
    body = fake.completions()[0].body
    assert body["model"] == DEFAULT_MODEL == "openai/gpt-oss-120b"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "trainbot_code", "strict": True, "schema": REPLY_SCHEMA},
    }
    assert body["reasoning_effort"] == "low"
    assert body["max_completion_tokens"] == 4_800  # thinking and code share it
    (prompt,) = fake.user_prompts()
    assert "cut off after about 10,000 characters" in prompt  # what is left after thinking


def test_a_model_without_strict_mode_gets_json_mode_and_no_reasoning_effort(
    fake: FakeGroq, make: MakeGenerator
) -> None:
    fake.script([files_reply(FILES)])
    make(model=JSON_MODE_MODEL).generate(SPEC, [])
    body = fake.completions()[0].body
    assert body["model"] == JSON_MODE_MODEL
    assert body["response_format"] == {"type": "json_object"}
    assert "reasoning_effort" not in body


def test_groq_base_url_from_the_environment_alone(
    fake: FakeGroq, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_BASE_URL", fake.base_url)
    fake.script([files_reply(FILES)])

    code = GroqGenerator(api_key=fake.api_key, timeout=5.0, max_retries=0).generate(SPEC, [])

    assert code.files == FILES
    assert len(fake.completions()) == 1


# -- the fake is as strict as Groq ------------------------------------------------------------


def test_fake_lists_its_models_as_the_sdk_reads_them(fake: FakeGroq) -> None:
    listing = client(fake).models.list()
    ids = [model.id for model in listing.data]
    assert ids == ["openai/gpt-oss-120b", "openai/gpt-oss-20b", "qwen/qwen3.6-27b"]
    assert listing.object == "list" and listing.data[0].object == "model"
    assert listing.data[0].owned_by == "OpenAI"


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"model": "openai/gpt-oss-120b", "reasoning_effort": "none"}, "must be one of `low`"),
        ({"model": JSON_MODE_MODEL, "reasoning_effort": "low"}, "must be one of `none`"),
        (
            {
                "model": JSON_MODE_MODEL,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "strict": True, "schema": REPLY_SCHEMA},
                },
            },
            "does not support strict mode",
        ),
        (
            {
                "model": "openai/gpt-oss-120b",
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "x",
                        "strict": True,
                        "schema": {"type": "object", "properties": {"files": {"type": "object"}}},
                    },
                },
            },
            "additionalProperties: false",
        ),
    ],
)
def test_fake_refuses_options_the_model_does_not_take(
    fake: FakeGroq, options: dict[str, Any], words: str
) -> None:
    with pytest.raises(groq.BadRequestError, match=words):
        client(fake).chat.completions.create(
            messages=[{"role": "user", "content": "hello, json"}], **options
        )


def test_fake_answers_a_retired_model_as_groq_does(fake: FakeGroq) -> None:
    with pytest.raises(groq.NotFoundError) as caught:
        client(fake).chat.completions.create(
            model="llama-3.3-70b-versatile", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body == {
        "error": {
            "message": "The model `llama-3.3-70b-versatile` does not exist or you do not have "
            "access to it.",
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }


def test_fake_counts_prompt_and_answer_budget_against_the_minute(fake: FakeGroq) -> None:
    with pytest.raises(groq.APIStatusError) as caught:
        client(fake).chat.completions.create(
            model=DEFAULT_MODEL,
            messages=[{"role": "user", "content": "x" * 4_000}],
            max_completion_tokens=7_500,
        )
    assert caught.value.status_code == 413
    assert "Limit 8000, Requested 8504" in caught.value.message  # 1,000 + 4 + 7,500


# -- answers that cannot be used --------------------------------------------------------------


def test_json_mode_answer_that_is_not_json(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([raw_reply("Sure! Here is your code: import sklearn")])
    with pytest.raises(InvalidCode, match="did not produce valid JSON") as caught:
        make(model=JSON_MODE_MODEL).generate(SPEC, [])
    assert "Sure! Here is your code" in caught.value.detail
    assert [r.status for r in fake.requests] == [400]  # Groq's json_validate_failed


def test_json_without_files(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([json_reply({"code": "print('hi')"})])
    with pytest.raises(InvalidCode, match='no "files" list'):
        make(model=JSON_MODE_MODEL).generate(SPEC, [])


def test_files_that_are_not_text(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([json_reply({"files": {"train.py": ["import os"], "app.py": "x = 1"}})])
    with pytest.raises(InvalidCode, match="source text"):
        make(model=JSON_MODE_MODEL).generate(SPEC, [])


def test_files_as_a_mapping_are_read_too(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([json_reply({"files": FILES, "requirements": [], "notes": "mapping"})])
    assert make(model=JSON_MODE_MODEL).generate(SPEC, []).files == FILES


def test_syntax_error_names_the_line(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([files_reply({"train.py": BROKEN_TRAIN, "app.py": FILES["app.py"]})])
    with pytest.raises(InvalidCode, match=r"train\.py does not parse: .*\(line 3\)") as caught:
        make().generate(SPEC, [])
    assert caught.value.files["train.py"] == BROKEN_TRAIN  # kept for the repair


def test_package_the_sandbox_lacks(fake: FakeGroq, make: MakeGenerator) -> None:
    app = FILES["app.py"].replace("import os\n", "import os\nimport requests\n", 1)
    fake.script([files_reply({"train.py": FILES["train.py"], "app.py": app})])
    with pytest.raises(InvalidCode, match="app.py imports requests"):
        make().generate(SPEC, [])


def test_missing_app(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([files_reply({"train.py": FILES["train.py"]})])
    with pytest.raises(InvalidCode, match="no app.py"):
        make().generate(SPEC, [])


def test_answer_cut_off_at_the_completion_budget(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([files_reply(big_files(30_000), reasoning_tokens=1_000)])
    with pytest.raises(InvalidCode, match=r"cut off at its length limit \(4,800 tokens\)"):
        make().generate(SPEC, [])


def test_thinking_that_uses_up_the_budget(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([files_reply(FILES, reasoning_tokens=5_000)])
    with pytest.raises(InvalidCode, match="used up its answer budget before writing any code"):
        make().generate(SPEC, [])


def test_groq_json_validation_failure_is_invalid_code(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([json_validate_failed('{"files": [{"name": "train.py", "content": "oops')])
    with pytest.raises(InvalidCode, match="did not produce valid JSON") as caught:
        make(model=JSON_MODE_MODEL).generate(SPEC, [])
    assert '"content": "oops' in caught.value.detail
    assert len(fake.requests) == 1  # a 400 is not retried


# -- the model: checked at start, named when it is gone ---------------------------------------


def test_the_model_check_at_start_passes_quietly(
    fake: FakeGroq, make: MakeGenerator, caplog: pytest.LogCaptureFixture
) -> None:
    generator = make()
    assert isinstance(generator, CheckedAtStart)
    with caplog.at_level(logging.WARNING):
        generator.check_at_start()
    assert caplog.records == [] and generator.unavailable == ""
    assert len(fake.model_listings()) == 1


def test_a_model_the_key_cannot_use_is_named_at_start_and_not_asked_for(
    fake: FakeGroq, make: MakeGenerator, caplog: pytest.LogCaptureFixture
) -> None:
    generator = make(model="llama-3.3-70b-versatile")
    with caplog.at_level(logging.WARNING):
        generator.check_at_start()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "Groq does not offer the model llama-3.3-70b-versatile to this API key (it was retired "
        "or never existed): set GROQ_MODEL to a current model such as openai/gpt-oss-120b"
    )
    with pytest.raises(CodegenUnavailable, match="set GROQ_MODEL to a current model"):
        generator.generate(SPEC, [])
    assert fake.completions() == []  # no request spent on a known refusal


def test_when_the_default_is_missing_another_current_model_is_named(
    make: MakeGenerator, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeGroq(models=[]) as empty:
        generator = make(base_url=empty.base_url, api_key=empty.api_key)
        with caplog.at_level(logging.WARNING):
            generator.check_at_start()
    assert "model openai/gpt-oss-120b to this API key" in generator.unavailable
    assert generator.unavailable.endswith("such as openai/gpt-oss-20b")


@pytest.mark.parametrize(
    "listing",
    [
        error_reply(500, "Internal Server Error", error_type="internal_server_error"),
        error_reply(401, "Invalid API Key", "invalid_api_key"),
        FakeReply(status=200, body={"object": "list", "data": []}, delay=3.0),
    ],
    ids=["server error", "refused key", "no answer in time"],
)
def test_a_failed_model_check_is_logged_and_changes_nothing(
    make: MakeGenerator, caplog: pytest.LogCaptureFixture, listing: FakeReply
) -> None:
    with FakeGroq(models_reply=listing) as fake:
        fake.script([files_reply(FILES)])
        generator = make(base_url=fake.base_url, api_key=fake.api_key, check_timeout=0.3)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            generator.check_at_start()
        assert time.monotonic() - started < 2.0
        assert len(fake.model_listings()) == 1  # no retries at start
        (record,) = caplog.records
        assert record.getMessage().startswith(
            "Could not check GROQ_MODEL=openai/gpt-oss-120b against the models this Groq key "
            "can use"
        )
        assert generator.unavailable == ""
        assert generator.generate(SPEC, []).files == FILES  # jobs still try Groq


@pytest.mark.parametrize("gone", ["llama-9", "llama-3.3-70b-versatile"])
def test_a_model_gone_at_request_time_names_groq_model(
    fake: FakeGroq, make: MakeGenerator, gone: str
) -> None:
    generator = make(model=gone)
    with pytest.raises(CodegenUnavailable) as caught:
        generator.generate(SPEC, [])
    assert str(caught.value) == (
        f"Groq does not offer the model {gone} to this API key (it was retired or never "
        "existed): set GROQ_MODEL to a current model such as openai/gpt-oss-120b"
    )
    with pytest.raises(CodegenUnavailable):
        generator.generate(SPEC, [])
    assert len(fake.completions()) == 1  # the next job does not ask again


def test_groq_older_decommissioned_answer_is_read_the_same(make: MakeGenerator) -> None:
    with FakeGroq(decommissioned=["llama3-70b-8192"]) as fake:
        generator = make(model="llama3-70b-8192", base_url=fake.base_url, api_key=fake.api_key)
        with pytest.raises(CodegenUnavailable, match="set GROQ_MODEL to a current model"):
            generator.generate(SPEC, [])
        assert [r.status for r in fake.requests] == [400]


# -- token limits -----------------------------------------------------------------------------


def test_a_repair_with_a_long_answer_and_log_stays_under_the_free_tier_limit(
    fake: FakeGroq, make: MakeGenerator
) -> None:
    previous = GeneratedCode(big_files(40_000), [], "v1")
    failure = CodeFailure(
        stage="train",
        message="train.py stopped: KeyError 'species'",
        log="Traceback (most recent call last):\n" + "  frame\n" * 3_000 + "KeyError: 'species'",
    )
    references = [Resource(f"https://example.org/{i}", "background " * 2_000) for i in range(3)]
    fake.script([files_reply(FILES)])

    code = make().repair(SPEC, references, previous, failure)

    assert code.files == FILES
    (request,) = fake.completions()
    assert request.status == 200
    assert request.requested_tokens <= FREE_TIER
    assert request.prompt_tokens + 4_800 == request.requested_tokens
    task, repair = fake.user_prompts()
    assert "KeyError: 'species'" in repair  # the end of the log survives
    assert "shortened to fit this request" in repair
    shown = json.loads(fake.last_messages()[2]["content"])["files"]
    assert [f["name"] for f in shown] == ["train.py", "app.py"]
    assert shown[0]["content"].startswith("import json")  # its start kept, its middle cut
    assert '"species"' in task and "tell the iris species" in task


def test_a_task_that_cannot_fit_is_refused_before_asking(
    fake: FakeGroq, make: MakeGenerator
) -> None:
    wide = [
        ColumnInfo(f"measurement {i} " + "x" * 60, "float64", "number", 0, 9) for i in range(200)
    ]
    spec = dataclasses.replace(SPEC, columns=wide)
    with pytest.raises(CodegenUnavailable, match="TRAINBOT_GROQ_PROMPT_TOKENS is 1,000"):
        make(prompt_tokens=1_000).generate(spec, [])
    assert fake.completions() == []


def test_request_too_large_for_the_key_is_said_in_plain_words(make: MakeGenerator) -> None:
    with FakeGroq(tokens_per_minute=6_000) as fake:
        generator = make(base_url=fake.base_url, api_key=fake.api_key)
        with pytest.raises(CodegenUnavailable) as caught:
            generator.generate(SPEC, [])
        assert [r.status for r in fake.requests] == [413]  # not retried
    assert str(caught.value) == (
        "Groq refused the request as too large for this key's token limit (6,000 tokens per "
        "minute): lower TRAINBOT_GROQ_PROMPT_TOKENS and TRAINBOT_GROQ_COMPLETION_TOKENS (now "
        "3,000 + 4,800) to fit it, or use a key with a higher limit"
    )
    assert "Traceback" not in str(caught.value)


def test_a_hopeless_429_is_said_as_too_large_too(fake: FakeGroq, make: MakeGenerator) -> None:
    # Groq once answered a request larger than the limit with a 429 (Used 0, Requested over
    # the limit: github.com/danielmiessler/Fabric/issues/364); waiting never helps it.
    hopeless = error_reply(
        429,
        "Rate limit reached for model `openai/gpt-oss-120b` in organization `org_x` on tokens "
        "per minute (TPM): Limit 7000, Used 0, Requested ~12903. Please try again in 50.6s.",
        "rate_limit_exceeded",
        retry_after_ms=1,
    )
    fake.script([hopeless] * 3)
    with pytest.raises(CodegenUnavailable, match="too large for this key's token limit"):
        make(max_retries=2).generate(SPEC, [])


def test_the_minute_limit_is_waited_out_by_the_sdk(make: MakeGenerator) -> None:
    with FakeGroq(minute=1.0) as fake:
        fake.use_tokens(DEFAULT_MODEL, 6_000)  # another process with the same key
        fake.script([files_reply(FILES)])
        assert make(base_url=fake.base_url, api_key=fake.api_key).generate(SPEC, []).files == FILES
        statuses = [r.status for r in fake.completions()]
    assert statuses == [429, 200]


def test_a_minute_limit_that_stays_reached_falls_back_in_plain_words(
    fake: FakeGroq, make: MakeGenerator
) -> None:
    fake.use_tokens(DEFAULT_MODEL, 6_000)
    with pytest.raises(CodegenUnavailable) as caught:
        make(max_retries=0).generate(SPEC, [])
    assert str(caught.value) == (
        "this Groq key's token limit (8,000 tokens per minute) was still reached after "
        "waiting for it; other work may be using the same key"
    )


def test_a_used_up_day_says_when_it_frees_up(make: MakeGenerator) -> None:
    with FakeGroq(tokens_per_day=50_000) as fake:
        fake.use_tokens(DEFAULT_MODEL, 48_000, ago=3_600)
        with pytest.raises(CodegenUnavailable) as caught:
            make(base_url=fake.base_url, api_key=fake.api_key, max_retries=1).generate(SPEC, [])
        assert [r.status for r in fake.completions()] == [429, 429]
    assert str(caught.value).startswith(
        "this Groq key has used up its daily token limit (50,000 tokens per day); it frees up "
        "in 22h59m"
    )


# -- Groq unavailable -------------------------------------------------------------------------


def test_rate_limit_then_success(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script(
        [
            error_reply(429, "Rate limit reached for model", "rate_limit_exceeded", retry_after=0),
            files_reply(FILES),
        ]
    )
    assert make().generate(SPEC, []).files == FILES
    assert [r.status for r in fake.requests] == [429, 200]


def test_lasting_rate_limit(fake: FakeGroq, make: MakeGenerator) -> None:
    limited = error_reply(
        429, "Rate limit reached", "rate_limit_exceeded", retry_after_ms=1, error_type="requests"
    )
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
    fake.script([files_reply(FILES)])
    with pytest.raises(CodegenUnavailable, match="GROQ_API_KEY") as caught:
        make(api_key="gsk_wrong").generate(SPEC, [])
    assert str(caught.value) == "Groq refused the API key (check GROQ_API_KEY)"
    assert [r.status for r in fake.requests] == [401]
    assert fake.pending == 1


def test_unreachable_server(make: MakeGenerator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    generator = make(base_url=f"http://127.0.0.1:{closed_port}", max_retries=0)
    with pytest.raises(CodegenUnavailable, match="Groq could not be reached"):
        generator.generate(SPEC, [])


def test_server_that_does_not_answer_in_time(fake: FakeGroq, make: MakeGenerator) -> None:
    fake.script([FakeReply(content=files_reply(FILES).content, delay=3.0)])
    started = time.monotonic()
    with pytest.raises(CodegenUnavailable, match="no answer within 0.3 seconds"):
        make(timeout=0.3, max_retries=0).generate(SPEC, [])
    assert time.monotonic() - started < 2.5


# -- repair -----------------------------------------------------------------------------------


def test_repair_sends_the_failure_and_the_previous_files(
    fake: FakeGroq, make: MakeGenerator
) -> None:
    previous = GeneratedCode({"train.py": BROKEN_TRAIN, "app.py": FILES["app.py"]}, [], "v1")
    failure = CodeFailure(
        stage="train",
        message="train.py stopped: KeyError 'species'",
        log="Traceback (most recent call last):\n" + "  frame\n" * 2_000 + "KeyError: 'species'",
    )

    def answer(request: dict[str, Any]) -> FakeReply:
        roles = [m["role"] for m in request["messages"]]
        if roles != ["system", "user", "assistant", "user"]:
            return error_reply(400, f"unexpected conversation {roles}")
        return files_reply(FILES, notes="Fixed the target column name.")

    fake.script([answer])
    code = make().repair(SPEC, [], previous, failure)

    assert code == GeneratedCode(FILES, [], "Fixed the target column name.", "groq")
    messages = fake.last_messages()
    shown = json.loads(messages[2]["content"])["files"]
    assert {f["name"]: f["content"] for f in shown} == previous.files
    task, repair = fake.user_prompts()
    assert '"species"' in task
    assert "python train.py" in repair
    assert "train.py stopped: KeyError 'species'" in repair
    assert "KeyError: 'species'" in repair
    assert len(repair) < 5_000  # the log went in trimmed
    assert fake.completions()[-1].body["response_format"]["type"] == "json_schema"


def test_repair_answers_are_checked_too(fake: FakeGroq, make: MakeGenerator) -> None:
    previous = GeneratedCode(FILES, [], "v1")
    fake.script([files_reply({"train.py": BROKEN_TRAIN, "app.py": FILES["app.py"]})])
    with pytest.raises(InvalidCode, match="does not parse"):
        make().repair(SPEC, [], previous, CodeFailure("deploy", "app did not answer /health"))
