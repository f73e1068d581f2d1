"""Extending a local app by its sandbox id, from a provider that did not make it.

A second `LocalSandboxProvider` over the same root stands for another worker process: it shares
only the directories on disk, as two processes do.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.errors import SandboxError
from pipeline.sandbox.base import SandboxGone
from pipeline.sandbox.local import APP_GONE, LocalSandbox, LocalSandboxProvider
from tests.support.providers import CappedProvider
from tests.support.sandbox_code import HELLO_SERVER

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def make_provider(root: Path, isolation: str = "process") -> LocalSandboxProvider:
    return LocalSandboxProvider(
        root, memory_mb=4096, cpu_seconds=60, file_size_mb=64, isolation=isolation
    )


def close_to(when: datetime, expected: datetime, seconds: float = 5.0) -> bool:
    return abs((when - expected).total_seconds()) <= seconds


def answers(url: str) -> bool:
    try:
        with _no_proxy.open(url, timeout=5) as response:
            return bool(response.read() == b"hello")
    except (urllib.error.URLError, OSError):
        return False


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sandboxes"


@pytest.fixture
def sandbox(root: Path) -> Iterator[LocalSandbox]:
    box = make_provider(root).create(job_id="3f2a9c1e-extend", timeout=60)
    yield box
    box.kill()


@pytest.mark.parametrize("isolation", ["process", "bwrap"])
def test_another_worker_extends_a_live_app_by_id(root: Path, isolation: str) -> None:
    sandbox = make_provider(root, isolation).create(job_id="live", timeout=60)
    try:
        sandbox.write_file("app.py", HELLO_SERVER)
        port = sandbox.app_port()
        sandbox.start_server(["python", "app.py"], port=port)
        url = sandbox.url_for(port)
        assert wait_until(lambda: answers(url)), sandbox.server_exited()

        ends = make_provider(root, isolation).extend(sandbox.id, 7200)

        assert ends.tzinfo == UTC
        assert close_to(ends, datetime.now(UTC) + timedelta(seconds=7200))  # no cap
        assert answers(url), "the app serves on"
    finally:
        sandbox.kill()


def test_the_provider_that_made_it_moves_the_sandboxs_own_deadline(root: Path) -> None:
    provider = make_provider(root)
    sandbox = provider.create(job_id="own", timeout=60)
    try:
        ends = provider.extend(sandbox.id, 3600)

        assert abs(sandbox.deadline - (time.time() + 3600)) < 5
        assert close_to(ends, datetime.now(UTC) + timedelta(seconds=3600))
    finally:
        sandbox.kill()


def test_a_sandbox_stopped_by_its_maker_is_gone(root: Path, sandbox: LocalSandbox) -> None:
    sandbox.kill()

    with pytest.raises(SandboxGone) as failure:
        make_provider(root).extend(sandbox.id, 600)

    assert failure.value.message == APP_GONE
    assert isinstance(failure.value, SandboxError)


def test_a_sandbox_killed_by_id_elsewhere_is_gone_for_its_maker_too(root: Path) -> None:
    maker = make_provider(root)
    sandbox = maker.create(job_id="elsewhere", timeout=60)
    try:
        assert make_provider(root).kill(sandbox.id) is True

        with pytest.raises(SandboxGone, match=APP_GONE):
            maker.extend(sandbox.id, 600)  # it still holds the object, but the sandbox is gone
    finally:
        sandbox.kill()


def test_an_id_never_made_is_gone(root: Path) -> None:
    with pytest.raises(SandboxGone, match=APP_GONE):
        make_provider(root).extend("local-job-0123abcd", 600)


@pytest.mark.parametrize(
    "bad", ["", "../elsewhere", "local-x-0123abcd/..", "fake0123456789ab", "local-X-0123abcd"]
)
def test_a_malformed_id_is_gone_and_names_no_path(root: Path, bad: str) -> None:
    root.mkdir(parents=True)
    (root / "local-x-0123abcd").mkdir()
    (root.parent / "elsewhere").mkdir()  # a directory a path-like id would reach

    with pytest.raises(SandboxGone) as failure:
        make_provider(root).extend(bad, 600)

    assert failure.value.message == APP_GONE
    assert "is not a local sandbox id" in failure.value.detail


def test_which_sandboxes_outlive_their_worker(root: Path) -> None:
    assert make_provider(root).survives_worker is False
    assert CappedProvider("e2b", max_lifetime=3600).survives_worker is True


def test_the_capped_stand_in_has_no_sandbox_to_extend() -> None:
    with pytest.raises(SandboxGone):
        CappedProvider("e2b", max_lifetime=3600).extend("fake0123456789ab", 60)
