"""The deploy check holds every app, template or Groq-written, to the contract's refusals.

The broken apps are the template with one of its guards taken out, as a generated app might
be written without it; each must fail the check with words the code author can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pipeline.codegen.contract import APP_SCRIPT
from pipeline.codegen.template import template_source
from pipeline.errors import DeployError
from pipeline.stages.deploy import check_refuses_bad_requests
from tests.support.template_runner import builtin_frame, live_app, prepare_workdir, train_ok

ROW = {
    "sepal length (cm)": 5.1,
    "sepal width (cm)": 3.5,
    "petal length (cm)": 1.4,
    "petal width (cm)": 0.2,
}
TEMPLATE = template_source(APP_SCRIPT)


def without(old: str, new: str) -> str:
    assert old in TEMPLATE, f"the template no longer has {old!r}"
    return TEMPLATE.replace(old, new)


BROKEN: dict[str, tuple[str, list[str]]] = {
    "plain json.loads": (
        without("json.loads(body, parse_int=bounded_int)", "json.loads(body)"),
        ["a 400-digit integer", "HTTP 500 instead of 400"],
    ),
    "no depth check": (
        without("if depth > MAX_JSON_DEPTH:", "if False:"),
        ["nested 5,000 levels deep", "HTTP 500 instead of 400"],
    ),
    "no row cap": (
        without("if len(rows) > MAX_ROWS:", "if False:"),
        ["1001 rows", "HTTP 200 instead of 400"],
    ),
    # As an app that only handles the methods it uses and keeps the standard error pages.
    "standard error pages": (
        without("def send_error(", "def _unused_send_error(").replace(
            "def do_DELETE(", "def _unused_do_DELETE("
        ),
        ["method DELETE", "HTTP 501 instead of 405", "Unsupported method"],
    ),
    "dies on bad input": (
        without("depth = nesting_depth(body)\n", "os._exit(3)\n"),
        ["did not answer a body that is not JSON"],
    ),
}


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("iris")
    prepare_workdir(workdir, builtin_frame("iris"), target="target", task="classification")
    train_ok(workdir)
    return workdir


@pytest.fixture
def app_dir(iris: Path, tmp_path: Path) -> Callable[[str], Path]:
    """The trained iris model with the given app.py beside it."""

    def make(source: str) -> Path:
        for artifact in iris.iterdir():
            if artifact.is_file():
                (tmp_path / artifact.name).write_bytes(artifact.read_bytes())
        (tmp_path / APP_SCRIPT).write_text(source, encoding="utf-8")
        return tmp_path

    return make


def test_the_template_app_passes(app_dir: Callable[[str], Path]) -> None:
    with live_app(app_dir(TEMPLATE)) as app, httpx.Client() as client:
        check_refuses_bad_requests(client, app.url, ROW)
        assert app.process.poll() is None


@pytest.mark.parametrize("case", list(BROKEN))
def test_an_app_without_a_guard_fails_with_a_plain_reason(
    app_dir: Callable[[str], Path], case: str
) -> None:
    source, fragments = BROKEN[case]
    with live_app(app_dir(source)) as app, httpx.Client() as client:
        with pytest.raises(DeployError) as caught:
            check_refuses_bad_requests(client, app.url, ROW)
    message = caught.value.message
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message and "<html" not in message.lower()
    assert len(message) < 500
