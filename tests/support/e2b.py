"""Helpers for the E2B provider's tests against the fake SDK (tests/fakes/e2b_sdk.py)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.sandbox.e2b import E2BSandbox, E2BSandboxProvider
from tests.fakes.e2b_sdk import FakeE2BSandbox
from tests.support.template_runner import free_port

API_KEY = "e2b_provider_key"

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def make_provider(
    sdk: type[FakeE2BSandbox], sleeps: list[float], **options: object
) -> E2BSandboxProvider:
    settings: dict[str, object] = {"url_scheme": "http", "app_port": free_port(), **options}
    return E2BSandboxProvider(
        api_key=API_KEY,
        sandbox_class=sdk,
        sleep=sleeps.append,
        **settings,  # type: ignore[arg-type]
    )


def fake_of(sdk: type[FakeE2BSandbox], sandbox: E2BSandbox) -> FakeE2BSandbox:
    return next(fake for fake in sdk.created if fake.sandbox_id == sandbox.id)


def get(url: str) -> bytes:
    with _no_proxy.open(url, timeout=5) as response:
        return bytes(response.read())


def answers(url: str) -> bool:
    try:
        return get(url) == b"hello"
    except (urllib.error.URLError, OSError):
        return False


def wait_for(check: Callable[[], object], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def process_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie nobody reaps (an orphan here) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- fixtures shared by the E2B test modules (imported there by name) -------------------------


@pytest.fixture
def sdk(tmp_path: Path) -> Iterator[type[FakeE2BSandbox]]:
    fake = FakeE2BSandbox.fresh(tmp_path / "e2b")
    yield fake
    fake.kill_all()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def provider(sdk: type[FakeE2BSandbox], sleeps: list[float]) -> E2BSandboxProvider:
    return make_provider(sdk, sleeps)


@pytest.fixture
def sandbox(provider: E2BSandboxProvider) -> Iterator[E2BSandbox]:
    box = provider.create(job_id="job-1", timeout=120)
    yield box
    box.kill()
