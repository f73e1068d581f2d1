"""A real browser fills in the live app's form and sees the prediction without a reload."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.template_runner import (
    LiveApp,
    builtin_frame,
    live_app,
    prepare_workdir,
    train_ok,
)

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SPECIES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def species_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """Iris with species names as the target, so the page shows words, not codes."""
    frame = builtin_frame("iris")
    frame["species"] = frame.pop("target").map(dict(enumerate(SPECIES)))
    workdir = tmp_path_factory.mktemp("iris-species")
    prepare_workdir(workdir, frame, target="species", task="classification")
    train_ok(workdir)
    with live_app(workdir) as app:
        yield app


def test_form_submission_shows_the_prediction(species_app: LiveApp, tmp_path: Path) -> None:
    assert os.path.exists(CHROMIUM), "Debian's chromium is missing; `make test` installs it"
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(species_app.url + "/")
            assert page.title() == "Predict species"
            page.evaluate("window.notReloaded = true")

            page.fill('input[name="petal length (cm)"]', "6.1")
            page.fill('input[name="petal width (cm)"]', "2.4")
            page.click("button[type=submit]")

            value = page.locator("#result .value")
            value.wait_for(timeout=15_000)
            assert value.inner_text() in SPECIES
            assert value.inner_text() == "virginica"
            assert page.locator("#result .bar").count() == 3
            assert page.evaluate("window.notReloaded") is True  # fetch, not a form post
            assert not errors

            shot = tmp_path / "live-app.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
