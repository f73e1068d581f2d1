"""A pass of the generated-code check is remembered by the code's hash (pipeline/codegen/
checks.py): template jobs check the same files over and over, at about 0.1 s of a worker's CPU
each. What is remembered must never let different code through, and stays bounded."""

from __future__ import annotations

import pytest

from pipeline.codegen import checks
from pipeline.codegen.checks import PASSED_REMEMBERED, check_code
from pipeline.codegen.template import template_files
from pipeline.errors import InvalidCode

GOOD = template_files()


@pytest.fixture
def full_checks(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The files each full check (parse, compile, imports) was run on."""
    ran: list[dict[str, str]] = []
    check = checks._check

    def counted(files: dict[str, str], requirements: list[str] | None) -> None:
        ran.append(files)
        check(files, requirements)

    monkeypatch.setattr(checks, "_check", counted)
    with checks._passed_lock:
        checks._passed.clear()
    return ran


def test_the_same_code_is_checked_once(full_checks: list[dict[str, str]]) -> None:
    for _ in range(3):
        check_code(dict(GOOD), ["numpy"])
    assert len(full_checks) == 1


def test_changed_code_or_requirements_are_checked_again(full_checks: list[dict[str, str]]) -> None:
    check_code(GOOD, ["numpy"])
    with pytest.raises(InvalidCode, match="does not parse") as rejected:
        check_code({**GOOD, "train.py": GOOD["train.py"] + "\ndef f(:\n"}, ["numpy"])
    assert "train.py" in rejected.value.files  # the rejected files, for the repair
    with pytest.raises(InvalidCode, match="does not offer"):
        check_code(GOOD, ["numpy", "torch"])
    with pytest.raises(InvalidCode, match="imports requests"):
        check_code({**GOOD, "helper.py": "import requests\n"}, ["numpy"])
    assert len(full_checks) == 4


def test_a_rejection_is_not_remembered(full_checks: list[dict[str, str]]) -> None:
    bad = {**GOOD, "app.py": "import ctypes\n"}
    for _ in range(2):
        with pytest.raises(InvalidCode, match="not allowed"):
            check_code(bad)
    assert len(full_checks) == 2


def test_what_is_remembered_is_bounded(full_checks: list[dict[str, str]]) -> None:
    def tiny(n: int) -> dict[str, str]:
        return {"train.py": f"X = {n}\n", "app.py": "Y = 1\n"}

    for n in range(PASSED_REMEMBERED + 10):
        check_code(tiny(n))
    assert len(checks._passed) == PASSED_REMEMBERED
    check_code(tiny(0))  # the oldest was forgotten: checked again
    assert len(full_checks) == PASSED_REMEMBERED + 11
