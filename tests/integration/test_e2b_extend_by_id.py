"""Extending an E2B app by its sandbox id, from a process that never held its Sandbox object.

A second `E2BSandboxProvider` over the same fake SDK class stands for another worker: it shares
only what E2B itself keeps (the fake's class state), as two processes share only the service.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from e2b import (
    AuthenticationException,
    RateLimitException,
    SandboxException,
    SandboxNotFoundException,
)

from pipeline.errors import SandboxError
from pipeline.sandbox.base import SandboxGone
from pipeline.sandbox.e2b import E2BSandbox, E2BSandboxProvider
from pipeline.sandbox.e2b_errors import APP_GONE, AUTH_REFUSED, RATE_LIMITED
from tests.fakes.e2b_sdk import FakeE2BSandbox
from tests.support import e2b as shared
from tests.support.e2b import API_KEY, answers, fake_of, make_provider, wait_for
from tests.support.sandbox_code import HELLO_SERVER

# The fixtures the E2B modules share, defined once in tests/support/e2b.py.
sdk, sleeps, provider, sandbox = shared.sdk, shared.sleeps, shared.provider, shared.sandbox

HOUR = 3600


def close_to(when: datetime, expected: datetime, seconds: float = 5.0) -> bool:
    return abs((when - expected).total_seconds()) <= seconds


@pytest.fixture
def other(sdk: type[FakeE2BSandbox], sleeps: list[float]) -> E2BSandboxProvider:
    """The provider of another worker process: it never saw the sandbox being made."""
    return make_provider(sdk, sleeps)


def test_another_worker_extends_a_live_app_by_id_and_gets_e2bs_end(
    provider: E2BSandboxProvider, other: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    sandbox = provider.create(job_id="job-extend", timeout=60)
    sandbox.write_file("server.py", HELLO_SERVER)
    sandbox.start_server(["python", "server.py"], port=sandbox.app_port())
    url = sandbox.url_for(sandbox.app_port())
    wait_for(lambda: answers(url))
    fake = fake_of(sdk, sandbox)

    ends = other.extend(sandbox.id, 1200)

    assert fake.set_timeout_calls[-1] == 1200
    assert ends == fake.end_at and ends.tzinfo == UTC
    assert close_to(ends, datetime.now(UTC) + timedelta(seconds=1200))
    assert answers(url), "the app serves on"
    shorter = other.extend(sandbox.id, 60)  # E2B shortens too: the end is what was asked last
    assert close_to(shorter, datetime.now(UTC) + timedelta(seconds=60))
    sandbox.kill()


def test_extending_by_id_never_asks_past_the_cap_and_returns_the_clamped_end(
    sandbox: E2BSandbox, other: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    fake = fake_of(sdk, sandbox)
    fake.started_at -= timedelta(minutes=50)  # 10 minutes left of the Hobby plan's hour

    ends = other.extend(sandbox.id, 24 * HOUR)

    assert fake.set_timeout_calls == [HOUR]  # the provider's cap, not the 24 hours asked
    assert ends == fake.end_at
    assert close_to(ends, datetime.now(UTC) + timedelta(minutes=10))  # E2B's clamp, read back


def test_a_lower_configured_cap_is_what_is_asked(
    tmp_path: Path, sleeps: list[float], sdk: type[FakeE2BSandbox]
) -> None:
    capped = make_provider(sdk, sleeps, max_lifetime=600)
    sandbox = capped.create(job_id="job-capped", timeout=60)

    ends = make_provider(sdk, sleeps, max_lifetime=600).extend(sandbox.id, HOUR)

    assert fake_of(sdk, sandbox).set_timeout_calls == [600]
    assert close_to(ends, datetime.now(UTC) + timedelta(seconds=600))
    sandbox.kill()


def test_a_killed_app_is_gone(
    sandbox: E2BSandbox, provider: E2BSandboxProvider, other: E2BSandboxProvider
) -> None:
    assert provider.kill(sandbox.id) is True

    with pytest.raises(SandboxGone) as failure:
        other.extend(sandbox.id, 600)

    assert failure.value.message == APP_GONE
    assert "SandboxNotFoundException" in failure.value.detail
    assert isinstance(failure.value, SandboxError)


def test_an_expired_app_is_gone(
    sandbox: E2BSandbox, other: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    fake = fake_of(sdk, sandbox)
    other.extend(sandbox.id, 1)  # E2B ends it a second from now

    wait_for(lambda: fake.killed, seconds=5)
    with pytest.raises(SandboxGone, match=APP_GONE):
        other.extend(sandbox.id, 600)


def test_an_id_e2b_never_made_is_gone(other: E2BSandboxProvider) -> None:
    with pytest.raises(SandboxGone, match=APP_GONE):
        other.extend("fake0123456789ab", 600)


@pytest.mark.parametrize("bad", ["", "../../etc", "a b", "x" * 65, "id\x00"])
def test_a_malformed_id_is_gone_without_asking_e2b(
    other: E2BSandboxProvider, sdk: type[FakeE2BSandbox], bad: str
) -> None:
    sdk.fail_set_timeout_with = AuthenticationException("401: Unauthorized")  # if it asked

    with pytest.raises(SandboxGone) as failure:
        other.extend(bad, 600)

    assert failure.value.message == APP_GONE
    assert "is not an E2B sandbox id" in failure.value.detail


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (AuthenticationException("401: Unauthorized"), AUTH_REFUSED),
        (RateLimitException("429: Rate limit exceeded"), RATE_LIMITED),
        (httpx.ConnectError("connection refused"), "could not reach E2B to extend"),
        (SandboxException("500: boom"), "E2B could not extend the sandbox's lifetime"),
    ],
)
def test_other_failures_are_sandbox_errors_not_gone(
    sandbox: E2BSandbox,
    other: E2BSandboxProvider,
    sdk: type[FakeE2BSandbox],
    error: Exception,
    message: str,
) -> None:
    sdk.fail_set_timeout_with = [error]  # one call fails

    with pytest.raises(SandboxError) as failure:
        other.extend(sandbox.id, 600)

    assert not isinstance(failure.value, SandboxGone), "the app may still be up: retry"
    assert failure.value.message.startswith(message)
    assert other.extend(sandbox.id, 600)  # once E2B answers again, it works


def test_the_instance_and_the_id_share_one_lifetime(
    sandbox: E2BSandbox, other: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    by_id = other.extend(sandbox.id, 900)

    assert fake_of(sdk, sandbox).get_info().end_at == by_id
    assert close_to(sandbox.extend(300), by_id - timedelta(seconds=600))


def test_e2b_apps_outlive_their_worker(provider: E2BSandboxProvider) -> None:
    assert provider.survives_worker is True


# -- the fake is as strict as the service, by id as by instance ------------------------------


def test_the_fakes_class_methods_need_a_key_and_a_known_id(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox]
) -> None:
    with pytest.raises(AuthenticationException):
        sdk.set_timeout(sandbox.id, 60)
    with pytest.raises(AuthenticationException):
        sdk.get_info(sandbox.id)
    with pytest.raises(AuthenticationException):
        sdk.kill(sandbox.id)
    with pytest.raises(SandboxNotFoundException, match="Sandbox nosuch not found"):
        sdk.set_timeout("nosuch", 60, api_key=API_KEY)
    with pytest.raises(SandboxNotFoundException, match="Sandbox nosuch not found"):
        sdk.get_info("nosuch", api_key=API_KEY)

    info = sdk.get_info(sandbox.id, api_key=API_KEY)
    assert info.sandbox_id == sandbox.id and info.end_at == fake_of(sdk, sandbox).end_at
    assert sdk.kill(sandbox.id, api_key=API_KEY) is True
    with pytest.raises(SandboxNotFoundException):
        sdk.get_info(sandbox.id, api_key=API_KEY)


def test_the_fake_forgets_a_sandbox_past_its_end_before_its_timer_fires(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox]
) -> None:
    fake = fake_of(sdk, sandbox)
    fake.end_at = datetime.now(UTC) - timedelta(seconds=1)  # its timer has not fired yet

    with pytest.raises(SandboxNotFoundException):
        sdk.get_info(sandbox.id, api_key=API_KEY)
    assert fake.killed and sandbox.id not in sdk.live
