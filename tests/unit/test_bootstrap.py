"""Providers are chosen in one place, from settings: keys switch the cloud ones on."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from pipeline.bootstrap import bootstrap, build_codegen, build_sandboxes
from pipeline.codegen.groq import GroqGenerator
from pipeline.events import RecordingSink
from pipeline.settings import Settings
from storage.db import make_engine


def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in ("GROQ_API_KEY", "E2B_API_KEY", "TRAINBOT_CODEGEN", "TRAINBOT_SANDBOX"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRAINBOT_DATA_DIR", str(tmp_path / "data"))
    return Settings()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_offline_defaults_without_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = settings(tmp_path, monkeypatch)
    assert build_codegen(chosen).name == "template"
    assert build_sandboxes(chosen).name == "local"


def test_keys_choose_groq_and_e2b(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = settings(tmp_path, monkeypatch, GROQ_API_KEY="gsk_x", E2B_API_KEY="e2b_x")
    assert build_codegen(chosen).name == "groq"
    assert build_sandboxes(chosen).name == "e2b"


def test_explicit_choice_beats_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = settings(
        tmp_path,
        monkeypatch,
        GROQ_API_KEY="gsk_x",
        TRAINBOT_CODEGEN="template",
        E2B_API_KEY="e2b_x",
        TRAINBOT_SANDBOX="local",
    )
    assert build_codegen(chosen).name == "template"
    assert build_sandboxes(chosen).name == "local"


def test_a_cloud_provider_without_its_key_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="GROQ_API_KEY"):
        build_codegen(settings(tmp_path, monkeypatch, TRAINBOT_CODEGEN="groq"))
    with pytest.raises(ValueError, match="E2B_API_KEY"):
        build_sandboxes(settings(tmp_path, monkeypatch, TRAINBOT_SANDBOX="e2b"))


def test_groq_token_budgets_come_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = build_codegen(settings(tmp_path, monkeypatch, GROQ_API_KEY="gsk_x"))
    assert isinstance(default, GroqGenerator) and default.model == "openai/gpt-oss-120b"
    # Groq's free tier allows openai/gpt-oss-120b 8,000 tokens a minute, prompt and answer.
    assert (default.prompt_tokens, default.completion_tokens) == (3_000, 4_800)
    chosen = settings(
        tmp_path,
        monkeypatch,
        GROQ_API_KEY="gsk_x",
        GROQ_MODEL="openai/gpt-oss-20b",
        TRAINBOT_GROQ_PROMPT_TOKENS="20000",
        TRAINBOT_GROQ_COMPLETION_TOKENS="30000",
    )
    generator = build_codegen(chosen)
    assert isinstance(generator, GroqGenerator) and generator.model == "openai/gpt-oss-20b"
    assert (generator.prompt_tokens, generator.completion_tokens) == (20_000, 30_000)


def test_groq_gets_the_template_as_its_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens there: the model check at start fails at once and only logs.
    monkeypatch.setenv("GROQ_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    chosen = settings(tmp_path, monkeypatch, GROQ_API_KEY="gsk_x")
    started = time.monotonic()
    services = bootstrap(chosen, sink=RecordingSink(), engine=make_engine("sqlite://"))
    assert time.monotonic() - started < 5
    assert services.deps.codegen.name == "groq"
    assert services.deps.fallback_codegen is not None
    assert services.deps.fallback_codegen.name == "template"
    offline = bootstrap(
        settings(tmp_path, monkeypatch), sink=RecordingSink(), engine=make_engine("sqlite://")
    )
    assert offline.deps.fallback_codegen is None


def test_the_e2b_plans_cap_comes_from_its_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hobby = build_sandboxes(settings(tmp_path, monkeypatch, E2B_API_KEY="e2b_x"))
    assert hobby.max_lifetime == 3600
    pro = settings(tmp_path, monkeypatch, E2B_API_KEY="e2b_x", TRAINBOT_E2B_MAX_LIFETIME="86400")
    assert build_sandboxes(pro).max_lifetime == 86400


def test_a_groq_that_never_answers_does_not_hold_the_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It accepts connections and never answers: the check waits its whole timeout, in the
    # background, while the process starts at once (a CLI command never waits on Groq).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("GROQ_BASE_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        services = bootstrap(
            settings(tmp_path, monkeypatch, GROQ_API_KEY="gsk_x"),
            sink=RecordingSink(),
            engine=make_engine("sqlite://"),
        )
        assert time.monotonic() - started < 1.0
        generator = services.deps.codegen
        assert isinstance(generator, GroqGenerator)
        assert generator.wait_for_check()  # the check gives up after its own short timeout
        assert time.monotonic() - started < generator.check_timeout + 2.0
        assert generator.unavailable == ""  # an unanswered check is no verdict
