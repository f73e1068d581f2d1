"""Providers are chosen in one place, from settings: keys switch the cloud ones on."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.bootstrap import bootstrap, build_codegen, build_sandboxes
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


def test_groq_gets_the_template_as_its_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = settings(tmp_path, monkeypatch, GROQ_API_KEY="gsk_x")
    services = bootstrap(chosen, sink=RecordingSink(), engine=make_engine("sqlite://"))
    assert services.deps.codegen.name == "groq"
    assert services.deps.fallback_codegen is not None
    assert services.deps.fallback_codegen.name == "template"
    offline = bootstrap(
        settings(tmp_path, monkeypatch), sink=RecordingSink(), engine=make_engine("sqlite://")
    )
    assert offline.deps.fallback_codegen is None
