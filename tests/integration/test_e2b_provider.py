"""The E2B provider against a fake of the SDK that really runs the commands it is given."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC
from pathlib import Path

import pytest
from e2b import (
    AuthenticationException,
    RateLimitException,
    SandboxException,
    SandboxNotFoundException,
    ServiceBusyException,
    TimeoutException,
)

from pipeline.codegen.template import TemplateGenerator
from pipeline.errors import JobCancelled, SandboxError, TrainingError
from pipeline.netguard import UrlGuard
from pipeline.sandbox.e2b import ENVS, WORKDIR, E2BSandbox, E2BSandboxProvider
from pipeline.sandbox.e2b_errors import AUTH_REFUSED, BUSY, GONE, RATE_LIMITED, START_TIMEOUT
from pipeline.stages.dataset import load_dataset
from pipeline.stages.deploy import deploy_app
from pipeline.stages.train import run_training, upload_job_files
from storage.db import make_engine, upgrade
from storage.states import JobStatus
from tests.fakes.e2b_sdk import FakeE2BSandbox
from tests.support import e2b as shared
from tests.support import pipeline as jobs
from tests.support.e2b import (
    API_KEY,
    answers,
    fake_of,
    make_provider,
    process_alive,
    wait_for,
)
from tests.support.sandbox_code import HELLO_SERVER, SERVICE_SECRETS

# The fixtures both E2B modules use, defined once in tests/support/e2b.py.
sdk, sleeps, provider, sandbox = shared.sdk, shared.sleeps, shared.provider, shared.sandbox

PRINT_ENV = ["python", "-c", "import json, os; print(json.dumps(dict(os.environ)))"]


# -- the whole path --------------------------------------------------------------------------


def test_iris_trains_and_goes_live_through_the_pipeline_stages(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox], tmp_path: Path
) -> None:
    dataset = load_dataset(
        "iris", target=None, guard=UrlGuard(), max_bytes=10 * 1024 * 1024, workdir=tmp_path / "job"
    )
    code = TemplateGenerator().generate(dataset.spec, [])
    sandbox = provider.create(job_id="job-iris", timeout=300)
    upload_job_files(sandbox, code, dataset.spec, dataset.data_path)
    lines: list[str] = []

    outcome = run_training(
        sandbox,
        timeout=300,
        artifacts_dir=tmp_path / "artifacts",
        on_output=lines.append,
        should_stop=lambda: False,
    )
    deployment = deploy_app(
        sandbox,
        task=dataset.spec.task,
        classes=dataset.spec.classes,
        holdout=dataset.holdout,
        holdout_targets=dataset.holdout_targets,
        start_timeout=60,
        should_stop=lambda: False,
    )

    assert outcome.metrics["score"] > outcome.metrics["baseline"]
    assert Path(outcome.artifacts["model.joblib"]).stat().st_size > 0
    assert lines, "training output streams line by line"
    assert deployment.url == f"http://127.0.0.1:{sandbox.app_port()}/"
    assert deployment.verification.correct >= deployment.verification.rows - 1
    fake = fake_of(sdk, sandbox)
    assert fake.metadata == {"trainbot_job_id": "job-iris"}
    assert fake.template == "code-interpreter-v1"
    assert fake.timeout is not None and fake.timeout >= 300
    assert sdk.create_calls[0]["api_key"] == API_KEY
    assert sdk.create_calls[0]["allow_internet_access"] is False
    train, server = fake.runs
    assert train["cmd"] == "exec setsid -w python3 train.py"
    assert (train["cwd"], train["background"], train["internet"]) == (WORKDIR, True, False)
    assert server["cmd"] == "exec setsid -w python3 app.py"
    assert (server["background"], server["timeout"], server["internet"]) == (True, 0, False)
    assert server["envs"]["PORT"] == str(sandbox.app_port())

    assert sandbox.extend(3600) == fake.end_at
    assert fake.set_timeout_calls[-1] == 3600
    sandbox.kill()
    assert sdk.killed_ids == [sandbox.id]
    assert not answers(deployment.url)


def test_a_job_goes_live_in_e2b_and_its_sandbox_is_recorded_and_killed(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox], tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    upgrade(engine)
    services = jobs.start_services(engine, jobs.make_settings(tmp_path), sandboxes=provider)
    try:
        job_id = jobs.submit(services, dataset_source="iris", goal="species")
        job = jobs.wait_for(services, job_id)
        assert job.status == JobStatus.LIVE, job.error
        (fake,) = sdk.created
        assert (job.sandbox_provider, job.sandbox_id) == ("e2b", fake.sandbox_id)
        assert fake.metadata == {"trainbot_job_id": job_id}
        port = fake.runs[-1]["envs"]["PORT"]
        assert job.deployment_url == f"http://127.0.0.1:{port}/"
        assert fake.set_timeout_calls[-1] == job.ttl_seconds
        assert job.expires_at is not None  # the end E2B reported, not our own arithmetic
        assert job.expires_at.replace(tzinfo=UTC) == fake.end_at.replace(tzinfo=UTC)
        warnings = jobs.event_messages(services, job_id, "warning")
        assert not [message for message in warnings if "stops this sandbox" in message]

        jobs.cancel(services, job_id)
        assert jobs.get(services, job_id).status == JobStatus.CANCELLED
        deadline = time.monotonic() + 10  # the kill runs in the background after the cancel
        while not sdk.killed_ids:
            assert time.monotonic() < deadline, "the sandbox was never killed"
            time.sleep(0.05)
        assert sdk.killed_ids == [fake.sandbox_id]
    finally:
        services.worker.shutdown()
        engine.dispose()


# -- commands and files ----------------------------------------------------------------------


def test_secrets_never_reach_the_sandbox(
    monkeypatch: pytest.MonkeyPatch, provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    for key, value in SERVICE_SECRETS.items():
        monkeypatch.setenv(key, value)
    sandbox = provider.create(job_id="job-env", timeout=60)

    ran = sandbox.run(PRINT_ENV, timeout=30)
    sandbox.write_file("env_app.py", "import json, os; print(json.dumps(dict(os.environ)))")
    sandbox.start_server(["python", "env_app.py"], port=sandbox.app_port())
    wait_for(lambda: sandbox.server_exited() is not None)
    served = sandbox.server_exited()
    assert served is not None

    for environment in (json.loads(ran.stdout), json.loads(served.stdout)):
        assert not set(SERVICE_SECRETS) & set(environment)
        assert not set(SERVICE_SECRETS.values()) & set(environment.values())
        assert environment["PYTHONUNBUFFERED"] == "1"
    call = sdk.create_calls[0]
    assert call["envs"] == ENVS
    assert call["api_key"] == API_KEY  # passed explicitly, not read from E2B_API_KEY
    assert all(secret not in json.dumps(call) for secret in SERVICE_SECRETS.values())
    assert sdk.kill_calls == []
    sandbox.kill()
    assert sdk.kill_calls[0]["api_key"] == API_KEY


def test_output_streams_in_lines_and_a_failure_is_a_result(sandbox: E2BSandbox) -> None:
    script = (
        "import sys\n"
        "print('one'); print('two', file=sys.stderr, flush=True)\n"
        "sys.stdout.write('no newline at the end'); sys.exit(3)\n"
    )
    sandbox.write_file("fails.py", script)
    lines: list[str] = []

    result = sandbox.run(["python", "fails.py"], timeout=30, on_output=lines.append)

    assert result.exit_code == 3 and not result.ok
    assert sorted(lines) == sorted(["one", "two", "no newline at the end"])
    assert result.stdout == "one\nno newline at the end"
    assert result.stderr == "two"


def test_a_command_killed_by_a_signal_says_so(sandbox: E2BSandbox) -> None:
    lines: list[str] = []
    result = sandbox.run(
        ["python", "-c", "import os; print('bye', flush=True); os.kill(os.getpid(), 9)"],
        timeout=30,
        on_output=lines.append,
    )

    assert result.exit_code == -1 and not (result.timed_out or result.cancelled)
    assert lines == ["bye", "[sandbox] stopped: signal: killed"]
    assert result.stderr == "[sandbox] stopped: signal: killed"


def test_environment_of_one_command_is_passed_to_it(sandbox: E2BSandbox) -> None:
    result = sandbox.run(
        ["python", "-c", "import os; print(os.environ['GREETING'])"],
        timeout=30,
        env={"GREETING": "hello there"},
    )
    assert result.ok and result.stdout == "hello there"


def test_files_round_trip_and_a_missing_file_is_file_not_found(sandbox: E2BSandbox) -> None:
    sandbox.write_file("data/x.bin", b"\x00\x01")
    sandbox.write_file("note.txt", "héllo")
    assert sandbox.read_file("data/x.bin") == b"\x00\x01"
    assert sandbox.read_file("./note.txt") == "héllo".encode()
    assert sandbox.run(["cat", "note.txt"], timeout=30).stdout == "héllo"
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("metrics.json")


@pytest.mark.parametrize("path", ["/etc/passwd", "../escape.txt", "a/../../b", "", "."])
def test_paths_outside_the_working_directory_are_rejected(sandbox: E2BSandbox, path: str) -> None:
    with pytest.raises(SandboxError):
        sandbox.write_file(path, "x")
    with pytest.raises(SandboxError):
        sandbox.read_file(path)


def test_training_timeout_stops_the_command(sandbox: E2BSandbox, tmp_path: Path) -> None:
    sandbox.write_file(
        "train.py",
        "import os, time\nopen('pid', 'w').write(str(os.getpid()))\n"
        "print('training', flush=True)\ntime.sleep(120)\n",
    )
    lines: list[str] = []
    started = time.monotonic()

    with pytest.raises(TrainingError, match="did not finish within 1 seconds") as failure:
        run_training(
            sandbox,
            timeout=1,
            artifacts_dir=tmp_path / "artifacts",
            on_output=lines.append,
            should_stop=lambda: False,
        )

    assert time.monotonic() - started < 15
    assert lines == ["training"]
    assert "training" in failure.value.detail
    pid = int(sandbox.read_file("pid"))
    wait_for(lambda: not process_alive(pid))
    after = sandbox.run(["python", "-c", "print('still usable')"], timeout=30)
    assert after.stdout == "still usable"


def test_should_stop_cancels_the_command(sandbox: E2BSandbox, tmp_path: Path) -> None:
    sandbox.write_file("train.py", "import time\nprint('ready', flush=True)\ntime.sleep(120)\n")
    lines: list[str] = []

    with pytest.raises(JobCancelled):
        run_training(
            sandbox,
            timeout=120,
            artifacts_dir=tmp_path / "artifacts",
            on_output=lines.append,
            should_stop=lambda: "ready" in lines,
        )
    result = sandbox.run(["python", "-c", "print('after')"], timeout=30)
    assert result.stdout == "after"


def test_kill_from_another_thread_cancels_a_running_command(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox]
) -> None:
    threading.Timer(0.5, sandbox.kill).start()
    result = sandbox.run(["python", "-c", "import time; time.sleep(60)"], timeout=60)

    assert result.cancelled and result.exit_code is None
    assert sdk.killed_ids == [sandbox.id]
    sandbox.kill()  # idempotent
    assert len(sdk.kill_calls) == 1
    with pytest.raises(SandboxError):
        sandbox.run(["true"], timeout=5)


def test_a_command_longer_than_the_sandbox_lifetime_extends_it(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    sandbox = provider.create(job_id="job-long", timeout=10)
    fake = fake_of(sdk, sandbox)
    assert fake.timeout == 310

    sandbox.run(["true"], timeout=5)
    assert fake.set_timeout_calls == []
    sandbox.run(["true"], timeout=2000)
    assert fake.set_timeout_calls == [2300]


def test_install_opens_the_internet_for_pip_only(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox]
) -> None:
    fake = fake_of(sdk, sandbox)

    sandbox.install(["joblib"], timeout=120)

    pip = fake.runs[-1]
    assert pip["cmd"].startswith("exec setsid -w python3 -m pip install") and pip["cmd"].endswith(
        " joblib"
    )
    assert pip["internet"] is True
    assert fake.network_updates == [
        {"allow_internet_access": True},
        {"allow_internet_access": False},
    ]
    assert fake.internet is False
    sandbox.install([], timeout=120)
    assert len(fake.runs) == 1
    with pytest.raises(SandboxError, match="not a package requirement"):
        sandbox.install(["--index-url=https://evil.example/simple"], timeout=120)


# -- the app ---------------------------------------------------------------------------------


def test_server_runs_in_the_background_without_a_timeout(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox]
) -> None:
    sandbox.write_file("server.py", HELLO_SERVER)
    port = sandbox.app_port()
    sandbox.start_server(["python", "server.py"], port=port)
    url = sandbox.url_for(port)

    wait_for(lambda: answers(url))
    assert sandbox.server_exited() is None
    run = fake_of(sdk, sandbox).runs[-1]
    assert (run["background"], run["timeout"]) == (True, 0)
    with pytest.raises(SandboxError, match="already running"):
        sandbox.start_server(["python", "server.py"], port=port)


def test_a_crashing_server_reports_its_exit_and_error(sandbox: E2BSandbox) -> None:
    sandbox.write_file(
        "app.py", "import sys\nprint('starting')\nraise SystemExit('no model found')\n"
    )
    sandbox.start_server(["python", "app.py"], port=sandbox.app_port())

    wait_for(lambda: sandbox.server_exited() is not None)
    exited = sandbox.server_exited()

    assert exited is not None
    assert exited.exit_code == 1
    assert exited.stdout == "starting"
    assert exited.stderr.endswith("no model found")


def test_url_is_https_on_the_sandbox_host_by_default(sdk: type[FakeE2BSandbox]) -> None:
    provider = E2BSandboxProvider(api_key=API_KEY, sandbox_class=sdk)
    sandbox = provider.create(job_id="job-url", timeout=60)

    assert sandbox.app_port() == 8000
    assert sandbox.url_for(8000) == "https://127.0.0.1:8000"
    assert sandbox.id in sandbox.isolation and "code-interpreter-v1" in sandbox.isolation
    sandbox.kill()


def test_a_fresh_provider_kills_a_live_app_by_id(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox], sleeps: list[float]
) -> None:
    sandbox = provider.create(job_id="job-restart", timeout=60)
    sandbox.write_file("server.py", HELLO_SERVER)
    sandbox.start_server(["python", "server.py"], port=sandbox.app_port())
    url = sandbox.url_for(sandbox.app_port())
    wait_for(lambda: answers(url))

    restarted = make_provider(sdk, sleeps)
    assert restarted.kill(sandbox.id) is True

    assert not answers(url)
    assert sdk.kill_calls[-1] == {"sandbox_id": sandbox.id, "api_key": API_KEY}
    assert restarted.kill(sandbox.id) is False
    wait_for(lambda: sandbox.server_exited() is not None)
    exited = sandbox.server_exited()
    assert exited is not None and exited.stderr.endswith(f"[sandbox] {GONE}")


# -- failures --------------------------------------------------------------------------------


def test_a_refused_api_key_is_named(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    sdk.fail_create_with = AuthenticationException(
        "401: Unauthorized, please check your credentials."
    )

    with pytest.raises(SandboxError) as failure:
        provider.create(job_id="job-auth", timeout=60)

    assert failure.value.message == AUTH_REFUSED
    assert "401" in failure.value.detail
    assert len(sdk.create_calls) == 1


@pytest.mark.parametrize("limit", [RateLimitException, ServiceBusyException])
def test_limits_are_retried_after_a_wait(
    provider: E2BSandboxProvider,
    sdk: type[FakeE2BSandbox],
    sleeps: list[float],
    limit: type[Exception],
) -> None:
    sdk.fail_create_with = [limit("429: Rate limit exceeded"), limit("429: Rate limit exceeded")]

    sandbox = provider.create(job_id="job-retry", timeout=60)

    assert sandbox.id == sdk.created[0].sandbox_id
    assert sleeps == [5.0, 5.0]
    assert len(sdk.create_calls) == 3


@pytest.mark.parametrize(
    ("limit", "message"), [(RateLimitException, RATE_LIMITED), (ServiceBusyException, BUSY)]
)
def test_limits_that_last_give_up_after_the_retries(
    sdk: type[FakeE2BSandbox], sleeps: list[float], limit: type[Exception], message: str
) -> None:
    provider = make_provider(sdk, sleeps, rate_limit_retries=2, retry_wait=1.5)
    sdk.fail_create_with = limit("You have reached the maximum number of concurrent sandboxes")

    with pytest.raises(SandboxError) as failure:
        provider.create(job_id="job-limit", timeout=60)

    assert failure.value.message == message
    assert sleeps == [1.5, 1.5]
    assert len(sdk.create_calls) == 3
    assert sdk.created == []


def test_a_slow_start_is_named_and_not_retried(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox], sleeps: list[float]
) -> None:
    sdk.fail_create_with = TimeoutException("Request timed out")

    with pytest.raises(SandboxError) as failure:
        provider.create(job_id="job-slow", timeout=60)

    assert failure.value.message == START_TIMEOUT
    assert sleeps == [] and len(sdk.create_calls) == 1


def test_other_create_failures_say_what_e2b_said(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    sdk.fail_create_with = SandboxException("404: template 'nope' not found")

    with pytest.raises(SandboxError, match="E2B could not start a sandbox .404: template 'nope'"):
        provider.create(job_id="job-template", timeout=60)


def test_a_failure_after_create_kills_the_sandbox(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    sdk.fail_write_with = SandboxException("no space left on device")

    with pytest.raises(SandboxError, match="could not prepare the sandbox"):
        provider.create(job_id="job-broken", timeout=60)

    assert [fake.sandbox_id for fake in sdk.created] == sdk.killed_ids
    assert sdk.live == {}


def test_a_failed_upload_is_a_sandbox_error(sandbox: E2BSandbox, sdk: type[FakeE2BSandbox]) -> None:
    sdk.fail_write_with = SandboxException("no space left on device")

    with pytest.raises(SandboxError, match="could not write data.csv into the sandbox"):
        sandbox.write_file("data.csv", "a,b\n")


def test_a_sandbox_gone_from_e2b_is_named(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox], sandbox: E2BSandbox
) -> None:
    assert provider.kill(sandbox.id) is True  # expired or killed elsewhere

    for act in (
        lambda: sandbox.write_file("x.txt", "x"),
        lambda: sandbox.read_file("x.txt"),
        lambda: sandbox.run(["true"], timeout=5),
        lambda: sandbox.extend(60),
    ):
        with pytest.raises(SandboxError) as failure:
            act()
        assert failure.value.message == GONE
    sandbox.kill()  # gone counts as killed


def test_killing_an_unknown_sandbox_is_false_not_an_error(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    assert provider.kill("nosuchsandbox") is False
    assert provider.kill("../../etc") is False
    assert provider.kill("local-job-1234abcd") is False
    sdk.fail_kill_with = SandboxNotFoundException("Sandbox x not found")
    assert provider.kill("x") is False
    sdk.fail_kill_with = AuthenticationException("401: Unauthorized")
    with pytest.raises(SandboxError, match=r"E2B refused the API key \(check E2B_API_KEY\)"):
        provider.kill("x")
    assert [call["sandbox_id"] for call in sdk.kill_calls] == [
        "nosuchsandbox",
        "local-job-1234abcd",
        "x",
        "x",
    ]


def test_messages_carry_no_traceback(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    sdk.fail_create_with = SandboxException("500: boom\nTraceback (most recent call last):\n  ...")

    with pytest.raises(SandboxError) as failure:
        provider.create(job_id="job-500", timeout=60)

    assert "Traceback" not in failure.value.message
    assert os.linesep not in failure.value.message
