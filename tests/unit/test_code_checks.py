"""Generated code is vetted before it runs: files, syntax, imports and requirements."""

from __future__ import annotations

import pytest

from pipeline.codegen.checks import check_code
from pipeline.codegen.template import template_files
from pipeline.errors import InvalidCode

GOOD = template_files()


def test_the_template_passes() -> None:
    check_code(GOOD, ["scikit-learn>=1.4", "pandas==2.2.1, <3", "numpy"])


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"train.py": GOOD["train.py"]}, "no app.py"),
        ({**GOOD, "train.py": "def f(:\n"}, "does not parse"),
        ({**GOOD, "app.py": "import requests\n"}, "imports requests"),
        ({**GOOD, "app.py": "import ctypes\n"}, "not allowed"),
        ({**GOOD, "../escape.py": "x = 1\n"}, "not a plain file name"),
    ],
)
def test_bad_files_are_rejected_with_the_reason(files: dict[str, str], reason: str) -> None:
    with pytest.raises(InvalidCode, match=reason) as rejected:
        check_code(files)
    assert rejected.value.files == files  # kept for the repair prompt


@pytest.mark.parametrize(
    "requirement",
    [
        "pandas @ https://evil.example/pandas.whl",
        "-e git+https://evil.example/repo",
        "--index-url=https://evil.example/simple",
        "pandas[all]",
        'pandas; python_version > "3"',
        "./local.whl",
        "requests",
    ],
)
def test_requirements_are_plain_allowed_names_only(requirement: str) -> None:
    with pytest.raises(InvalidCode):
        check_code(GOOD, [requirement])
