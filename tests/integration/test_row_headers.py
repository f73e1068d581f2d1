"""The live app takes rows keyed the way users write them: the CSV's own header row.

A CSV exported from a spreadsheet has headers like " Customer ID" and "Tenure ". The
dataset stage trims them for training; users still post rows with the headers as they were,
trimmed, or in another case. The deploy check posts its held-out rows with the original
headers, so an app that only knows the trimmed names fails before anyone is told it is live.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from pipeline.codegen.base import TaskType
from pipeline.codegen.contract import APP_SCRIPT, TASK_FILE
from pipeline.codegen.template import TemplateGenerator, template_source
from pipeline.errors import DeployError
from pipeline.netguard import UrlGuard
from pipeline.stages.dataset import LoadedDataset, load_dataset
from pipeline.stages.deploy import verify_predictions
from storage.states import JobStatus
from tests.support.messy import ODD_HEADERS, write_odd_headers_csv
from tests.support.pipeline import (
    ScriptedGenerator,
    make_settings,
    start_services,
    submit,
    wait_for,
)
from tests.support.template_runner import LiveApp, live_app, train_ok

# The template's rule for matching a row's keys, and the same app with exact matching only:
# an app that knows the trimmed names from schema.json and nothing else.
KEY_RULE = 'return " ".join(name.split()).casefold()'
STRICT_APP = template_source(APP_SCRIPT).replace(KEY_RULE, "return name")


def no_dns(host: str, *args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"this test must not resolve {host!r}")


def load_odd(workdir: Path) -> LoadedDataset:
    csv = write_odd_headers_csv(workdir.parent / f"{workdir.name}.csv")
    return load_dataset(
        str(csv),
        target="churned",
        guard=UrlGuard(resolver=no_dns),
        max_bytes=10**7,
        workdir=workdir,
    )


def write_job_files(workdir: Path, loaded: LoadedDataset, app_source: str | None = None) -> None:
    """What the pipeline puts in the sandbox: task.json, data.csv (already there), the scripts."""
    spec = loaded.spec
    (workdir / TASK_FILE).write_text(json.dumps(spec.to_json_dict()), encoding="utf-8")
    for name, source in TemplateGenerator().generate(spec, []).files.items():
        (workdir / name).write_text(source, encoding="utf-8")
    if app_source is not None:
        (workdir / APP_SCRIPT).write_text(app_source, encoding="utf-8")


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LoadedDataset]:
    workdir = tmp_path_factory.mktemp("odd") / "work"
    loaded = load_odd(workdir)
    write_job_files(workdir, loaded)
    train_ok(workdir)
    return workdir, loaded


@pytest.fixture(scope="module")
def odd_app(odd: tuple[Path, LoadedDataset]) -> Iterator[LiveApp]:
    with live_app(odd[0]) as app:
        yield app


def user_row(rename: Any = lambda header: header, *, with_id: bool = True) -> dict[str, Any]:
    values = {"tenure": 3, "plan": "Basic", "income": 2100.0, "calls": 6, "id": "CUST-99999"}
    return {
        rename(ODD_HEADERS[field]): value
        for field, value in values.items()
        if with_id or field != "id"
    }


def test_the_strict_app_is_the_template_without_its_key_rule() -> None:
    assert STRICT_APP != template_source(APP_SCRIPT)


@pytest.mark.parametrize(
    ("spelling", "rename"),
    [
        ("original headers", lambda h: h),
        ("trimmed", str.strip),
        ("upper case", str.upper),
        ("lower case, trimmed", lambda h: h.strip().lower()),
        ("spaces inside collapsed", lambda h: " ".join(h.split())),
    ],
)
def test_live_app_accepts_the_headers_users_have(
    odd_app: LiveApp, spelling: str, rename: Any
) -> None:
    expected = odd_app.predict([user_row(str.strip)])
    assert expected.status == 200, expected.text
    for row in (user_row(rename), user_row(rename, with_id=False)):
        response = odd_app.predict([row])
        assert response.status == 200, f"{spelling}: {response.text}"
        assert response.json() == expected.json(), spelling


def test_the_target_under_its_original_header_is_ignored(odd_app: LiveApp) -> None:
    response = odd_app.predict([{**user_row(), ODD_HEADERS["target"]: "Yes"}])
    assert response.status == 200, response.text


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"Tenure (months)": 3}, 'row 0: unknown column "Tenure (months)"'),
        ({"tenure": 4}, 'row 0: "Tenure " and "tenure" both name the feature "Tenure"'),
        (
            {"customer id": "C-2"},
            'row 0: " Customer ID" and "customer id" both name the ignored column "Customer ID"',
        ),
    ],
)
def test_unknown_and_repeated_columns_are_400s(
    odd_app: LiveApp, extra: dict[str, Any], fragment: str
) -> None:
    response = odd_app.predict([{**user_row(), **extra}])
    assert response.status == 400, response.text
    assert fragment in response.json()["error"]


def test_the_deploy_check_passes_on_the_template_app(
    odd: tuple[Path, LoadedDataset], odd_app: LiveApp
) -> None:
    _, loaded = odd
    assert all(ODD_HEADERS["id"] in row for row in loaded.holdout)
    with httpx.Client(timeout=30) as client:
        check = verify_predictions(
            client,
            odd_app.url,
            TaskType.CLASSIFICATION,
            loaded.spec.classes,
            loaded.holdout,
            loaded.holdout_targets,
        )
    assert check.rows == len(loaded.holdout) == 3


def test_the_deploy_check_fails_an_app_that_knows_only_trimmed_names(
    odd: tuple[Path, LoadedDataset], tmp_path: Path
) -> None:
    trained, loaded = odd
    workdir = tmp_path / "strict"
    workdir.mkdir()
    for artifact in trained.iterdir():
        if artifact.is_file():
            (workdir / artifact.name).write_bytes(artifact.read_bytes())
    (workdir / APP_SCRIPT).write_text(STRICT_APP, encoding="utf-8")
    with live_app(workdir) as strict, httpx.Client(timeout=30) as client:
        assert strict.predict([user_row(str.strip)]).status == 200  # it does serve trimmed names
        with pytest.raises(DeployError) as caught:
            verify_predictions(
                client,
                strict.url,
                TaskType.CLASSIFICATION,
                loaded.spec.classes,
                loaded.holdout,
                loaded.holdout_targets,
            )
    assert "HTTP 400" in caught.value.message
    assert "unknown column" in caught.value.message


@pytest.mark.parametrize(("app_source", "goes_live"), [(None, True), (STRICT_APP, False)])
def test_a_job_goes_live_only_when_its_app_takes_the_csvs_headers(
    sqlite_engine: Engine, tmp_path: Path, app_source: str | None, goes_live: bool
) -> None:
    csv = write_odd_headers_csv(tmp_path / "customers.csv")
    codegen = ScriptedGenerator(**({"app_py": app_source} if app_source else {}))
    services = start_services(sqlite_engine, make_settings(tmp_path), codegen=codegen)
    try:
        job = wait_for(services, submit(services, dataset_source=str(csv), target_column="churned"))
    finally:
        services.worker.shutdown()
    if goes_live:
        assert job.status == JobStatus.LIVE, job.error
    else:
        assert (job.status, job.stage) == (JobStatus.FAILED, "deploy"), job.error
        assert 'unknown column " Customer ID"' in (job.error or ""), job.error
        assert job.deployment_url is None
