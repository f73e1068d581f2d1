"""The E2B provider against the service's real limits, as the fake SDK mirrors them: the plan's
lifetime cap, transport errors the SDK does not map, the in-memory request deadline, and kills
that reach only a command's own process."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.codegen.template import TemplateGenerator
from pipeline.errors import JobCancelled, SandboxError, TrainingError
from pipeline.netguard import UrlGuard
from pipeline.sandbox.e2b import E2BSandbox, E2BSandboxProvider
from pipeline.stages.dataset import load_dataset
from pipeline.stages.train import run_training, upload_job_files
from storage.db import make_engine, upgrade
from storage.states import JobStatus
from tests.fakes.e2b_sdk import EndWithoutEndEvent, FakeE2BSandbox, dropped_connection
from tests.support import e2b as shared
from tests.support import pipeline as jobs
from tests.support.e2b import (
    answers,
    fake_of,
    make_provider,
    process_alive,
    wait_for,
)
from tests.support.sandbox_code import HELLO_SERVER

# The fixtures both E2B modules use, defined once in tests/support/e2b.py.
sdk, sleeps, provider, sandbox = shared.sdk, shared.sleeps, shared.provider, shared.sandbox

HOUR = 3600
LOST = "the connection to the E2B sandbox broke while trying to"


def close_to(when: datetime, expected: datetime, seconds: float = 5.0) -> bool:
    return abs((when - expected).total_seconds()) <= seconds


# -- the plan's lifetime cap -----------------------------------------------------------------


def test_an_extension_past_the_plan_cap_returns_the_end_e2b_really_set(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox]
) -> None:
    fake = fake_of(sdk, sandbox)
    fake.started_at -= timedelta(minutes=50)  # 10 minutes left of the Hobby plan's hour

    ends = sandbox.extend(24 * HOUR)

    assert fake.set_timeout_calls == [HOUR]  # never asked for more than the plan's cap
    assert ends == fake.end_at and ends.tzinfo is not None
    assert close_to(ends, datetime.now(UTC) + timedelta(minutes=10))
    shorter = sandbox.extend(60)  # E2B also shortens: the end is what was asked last
    assert close_to(shorter, datetime.now(UTC) + timedelta(seconds=60))


def test_keep_alive_extensions_use_the_end_read_back(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox]
) -> None:
    sandbox = provider.create(job_id="job-keepalive", timeout=10)
    fake = fake_of(sdk, sandbox)
    fake.started_at -= timedelta(seconds=HOUR - 100)  # 100 s left of the plan's hour

    sandbox.run(["true"], timeout=2000)  # asks for 2300 s; E2B grants 100
    sandbox.run(["true"], timeout=5)  # so this step still needs an extension

    assert fake.set_timeout_calls == [2300, 305]
    sandbox.kill()


def test_a_sandbox_is_never_asked_to_live_past_the_cap(tmp_path: Path, sleeps: list[float]) -> None:
    sdk = FakeE2BSandbox.fresh(tmp_path / "e2b", plan_max_lifetime=600)
    provider = make_provider(sdk, sleeps, max_lifetime=600)
    try:
        sandbox = provider.create(job_id="job-capped", timeout=900)  # 900 + slack > 600
        assert fake_of(sdk, sandbox).timeout == 600
        assert provider.max_lifetime == 600
    finally:
        sdk.kill_all()


def test_the_default_cap_is_the_hobby_plans_hour(sdk: type[FakeE2BSandbox]) -> None:
    provider = E2BSandboxProvider(api_key="e2b_x", sandbox_class=sdk)
    assert provider.max_lifetime == HOUR
    assert provider.isolates_network is True


def test_a_job_records_when_e2b_really_stops_its_app_and_says_why(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox], tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    upgrade(engine)
    services = jobs.start_services(engine, jobs.make_settings(tmp_path), sandboxes=provider)
    try:
        job_id = jobs.submit(services, dataset_source="iris", goal="species", ttl_seconds=24 * HOUR)
        job = jobs.wait_for(services, job_id)
        assert job.status == JobStatus.LIVE, job.error
        (fake,) = sdk.created
        assert fake.set_timeout_calls[-1] == HOUR  # never more than the cap
        assert job.expires_at is not None
        expires_at = job.expires_at.replace(tzinfo=job.expires_at.tzinfo or UTC)
        assert close_to(expires_at, fake.end_at, 1)
        assert close_to(expires_at, fake.started_at + timedelta(hours=1), 2)
        warnings = jobs.event_messages(services, job_id, "warning")
        (stop,) = [message for message in warnings if message.startswith("E2B stops")]
        assert stop.startswith(f"E2B stops this sandbox at {fake.end_at:%H:%M} UTC, 23 hours ")
        assert stop.endswith(
            " before the 24 hours asked: the plan caps a sandbox at 1 hour"
            " (TRAINBOT_E2B_MAX_LIFETIME)"
        )
    finally:
        services.worker.shutdown()
        engine.dispose()


# -- transport errors the SDK leaves unmapped ------------------------------------------------

SPAWNS_A_CHILD = (
    "import os, subprocess, time\n"
    "child = subprocess.Popen(['sleep', '300'])\n"
    "open('pids.tmp', 'w').write(f'{os.getpid()} {child.pid}')\n"
    "os.rename('pids.tmp', 'pids')\n"
    "print('started', flush=True)\n"
    "time.sleep(120)\n"
)


def pids(sandbox: E2BSandbox) -> list[int]:
    """The command's pid and its child's, once it wrote them."""
    written: list[bytes] = []

    def read() -> bool:
        try:
            written.append(sandbox.read_file("pids"))
        except FileNotFoundError:
            return False
        return True

    wait_for(read)
    return [int(pid) for pid in written[-1].split()]


def assert_all_gone(pids: list[int]) -> None:
    wait_for(lambda: not any(process_alive(pid) for pid in pids), 10)


@pytest.mark.parametrize("failure", [dropped_connection, EndWithoutEndEvent])
def test_a_stream_lost_mid_command_is_a_plain_reason_and_stops_the_command(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox], failure: type[Exception]
) -> None:
    sandbox.write_file("train.py", SPAWNS_A_CHILD)
    sdk.fail_stream_with = [failure()]
    lines: list[str] = []

    with pytest.raises(SandboxError) as raised:
        sandbox.run(["python", "train.py"], timeout=60, on_output=lines.append)

    assert raised.value.message == f"{LOST} run a command in the sandbox"
    assert lines == ["started"]
    assert_all_gone(pids(sandbox))


def test_a_connection_error_starting_a_command_is_a_plain_reason(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox]
) -> None:
    sdk.fail_run_with = [dropped_connection()]

    with pytest.raises(SandboxError) as raised:
        sandbox.run(["true"], timeout=30)

    assert raised.value.message == f"{LOST} start a command in the sandbox"
    assert "Traceback" not in raised.value.message


def test_a_dropped_stream_of_the_app_is_not_its_end(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox]
) -> None:
    sandbox.write_file("server.py", "print('serving', flush=True)\n" + HELLO_SERVER)
    sdk.fail_stream_with = [dropped_connection()]
    sandbox.start_server(["python", "server.py"], port=sandbox.app_port())
    url = sandbox.url_for(sandbox.app_port())

    wait_for(lambda: answers(url))
    assert sandbox.server_exited() is None


@pytest.mark.parametrize(
    "failure", [lambda: dropped_connection(), lambda: RuntimeError("an SDK bug")]
)
def test_a_sandbox_that_fails_to_prepare_is_killed(
    provider: E2BSandboxProvider, sdk: type[FakeE2BSandbox], failure: object
) -> None:
    sdk.fail_write_with = [failure()]  # type: ignore[operator]

    with pytest.raises(Exception) as raised:
        provider.create(job_id="job-broken", timeout=60)

    if not isinstance(raised.value, RuntimeError):
        assert isinstance(raised.value, SandboxError)
        assert raised.value.message == f"{LOST} prepare the sandbox"
    assert [fake.sandbox_id for fake in sdk.created] == sdk.killed_ids
    assert sdk.live == {}


# -- files stream from and to disk -----------------------------------------------------------

BIG = 400 * 1024  # at 1 MB/s, 0.4 s: twice the test-scaled 0.2 s in-memory deadline


@pytest.fixture
def slow(sdk: type[FakeE2BSandbox]) -> type[FakeE2BSandbox]:
    sdk.bytes_per_second = 1_000_000
    sdk.default_request_timeout = 0.2
    return sdk


def test_an_in_memory_upload_past_the_deadline_fails_and_a_file_streams(
    sandbox: E2BSandbox, slow: type[FakeE2BSandbox], tmp_path: Path
) -> None:
    payload = bytes(range(256)) * (BIG // 256)
    local = tmp_path / "big.bin"
    local.write_bytes(payload)

    with pytest.raises(SandboxError, match="did not answer in time"):
        sandbox.write_file("big.bin", payload)
    sandbox.write_file_from("big.bin", local)

    assert fake_of(slow, sandbox).host_path("/home/user/job/big.bin").read_bytes() == payload
    with pytest.raises(SandboxError, match="did not answer in time"):
        sandbox.read_file("big.bin")
    sandbox.read_file_to("big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == payload
    with pytest.raises(FileNotFoundError):
        sandbox.read_file_to("missing.bin", tmp_path / "missing.bin")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["back.bin", "big.bin", "e2b"]


def test_a_large_data_set_and_model_go_through_the_training_stage(
    sandbox: E2BSandbox, slow: type[FakeE2BSandbox], tmp_path: Path
) -> None:
    dataset = load_dataset(
        "iris", target=None, guard=UrlGuard(), max_bytes=10 * 1024 * 1024, workdir=tmp_path / "job"
    )
    code = TemplateGenerator().generate(dataset.spec, [])
    big_csv = tmp_path / "big.csv"
    rows = dataset.data_path.read_text().splitlines()
    big_csv.write_text("\n".join([rows[0], *rows[1:] * (BIG // len("".join(rows)) + 1)]) + "\n")
    assert big_csv.stat().st_size > BIG
    trainer = (
        "import json\n"
        "json.dump({'metric': 'accuracy', 'score': 1.0, 'baseline': 0.3}, open('metrics.json', 'w'))\n"
        "json.dump({'columns': []}, open('schema.json', 'w'))\n"
        f"open('model.joblib', 'wb').write(b'm' * {BIG})\n"
    )

    code = replace(code, files={**code.files, "train.py": trainer})

    upload_job_files(sandbox, code, dataset.spec, big_csv)
    outcome = run_training(
        sandbox,
        timeout=60,
        artifacts_dir=tmp_path / "artifacts",
        on_output=lambda _line: None,
        should_stop=lambda: False,
    )

    fake = fake_of(slow, sandbox)
    assert fake.host_path("/home/user/job/data.csv").read_bytes() == big_csv.read_bytes()
    assert Path(outcome.artifacts["model.joblib"]).read_bytes() == b"m" * BIG
    assert json.loads(Path(outcome.artifacts["metrics.json"]).read_text())["score"] == 1.0


# -- cancel and timeouts stop the whole process tree -----------------------------------------


def test_a_timeout_kills_what_the_command_spawned(sandbox: E2BSandbox, tmp_path: Path) -> None:
    sandbox.write_file("train.py", SPAWNS_A_CHILD)

    with pytest.raises(TrainingError, match="did not finish within 1 seconds"):
        run_training(
            sandbox,
            timeout=1,
            artifacts_dir=tmp_path / "artifacts",
            on_output=lambda _line: None,
            should_stop=lambda: False,
        )

    assert_all_gone(pids(sandbox))


def test_a_cancel_kills_what_the_command_spawned(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox], tmp_path: Path
) -> None:
    sandbox.write_file("train.py", SPAWNS_A_CHILD)
    lines: list[str] = []

    with pytest.raises(JobCancelled):
        run_training(
            sandbox,
            timeout=60,
            artifacts_dir=tmp_path / "artifacts",
            on_output=lines.append,
            should_stop=lambda: "started" in lines,
        )

    assert_all_gone(pids(sandbox))
    train = fake_of(sdk, sandbox).runs[0]
    assert train["cmd"] == "exec setsid -w python3 train.py"


def test_the_fake_kills_only_the_process_as_envd_does(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox]
) -> None:
    """The rule the provider works around: the SDK's kill leaves the children running."""
    sandbox.write_file("train.py", SPAWNS_A_CHILD)
    fake = fake_of(sdk, sandbox)
    handle = fake.commands.run("exec python3 train.py", background=True, cwd="/home/user/job")
    parent, child = pids(sandbox)

    assert handle.kill() is True
    wait_for(lambda: not process_alive(parent), 10)
    assert process_alive(child)
    sandbox.kill()
    wait_for(lambda: not process_alive(child), 10)


def test_a_stream_lost_while_killing_a_timed_out_command_is_no_crash(
    sandbox: E2BSandbox, sdk: type[FakeE2BSandbox]
) -> None:
    # The training command's stream is fine; the group-kill command's ends without its end
    # event (the SDK's plain Exception): the timeout is still reported as a timeout.
    sandbox.write_file("train.py", "import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    sdk.fail_stream_with = [None, EndWithoutEndEvent()]  # type: ignore[list-item]

    result = sandbox.run(["python", "train.py"], timeout=2)

    assert result.timed_out and not result.ok
