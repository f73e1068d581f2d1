"""Deliberately nosy generated code learns nothing about the service that runs it.

It reads its environment, opens the service's database file, lists the service's working
directory and tries the network during training, then trains normally. The job still goes
live; what the code saw is printed to the job's log and checked here. Its app, while it
serves, dials every service of the host and the internet and answers what it reached.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import httpx
import pytest

from pipeline.codegen.base import GeneratedCode, Resource, TaskSpec
from pipeline.codegen.template import template_files, template_source
from pipeline.sandbox.local import LocalSandboxProvider
from storage.db import make_engine, upgrade
from storage.states import JobStatus
from tests.support.host_network import DIAL_ALL, bait
from tests.support.pipeline import (
    event_messages,
    get,
    make_settings,
    start_services,
    submit,
    wait_for,
)

SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-nosy-bot-token",
    "SLACK_SIGNING_SECRET": "nosy-signing-secret",
    "SLACK_APP_TOKEN": "xapp-nosy-app-token",
    "GROQ_API_KEY": "gsk_nosy_groq_key",
    "E2B_API_KEY": "e2b_nosy_key",
    "TRAINBOT_API_TOKEN": "nosy-status-token",
}

NOSY_TRAIN = """
import json, os, socket
findings = {"env": dict(os.environ), "uid": os.getuid()}
for label, path in (("database", DB_PATH), ("service_dir", SERVICE_DIR)):
    try:
        findings[label] = os.listdir(path) if os.path.isdir(path) else open(path, "rb").read(64).hex()
    except OSError as error:
        findings[label] = "refused: " + type(error).__name__
try:
    socket.create_connection(("127.0.0.1", LISTENER_PORT), timeout=3).close()
    findings["network"] = "connected"
except OSError as error:
    findings["network"] = "refused: " + type(error).__name__
print("NOSY " + json.dumps(findings), flush=True)
exec(compile(open("real_train.py").read(), "real_train.py", "exec"))
"""


# The template's app with one more page: GET /nosy dials everything in TARGETS.
NOSY_APP = """
import importlib.util, sys

spec = importlib.util.spec_from_file_location("real_app", "real_app.py")
real = importlib.util.module_from_spec(spec)
sys.modules["real_app"] = real  # its dataclasses look their module up
spec.loader.exec_module(real)

class Nosy(real.Handler):
    def do_GET(self):
        if self.path == "/nosy":
            self.send_json(200, dial_all())
        else:
            super().do_GET()

real.Handler = Nosy
sys.exit(real.main())
"""


class NosyGenerator:
    """Writes code the way an LLM might: its own train.py and app.py (name is not "template")."""

    name = "nosy"
    can_repair = False

    def __init__(self, train: str | None = None, app: str | None = None) -> None:
        self.train = train
        self.app = app

    def generate(self, spec: TaskSpec, resources: list[Resource]) -> GeneratedCode:
        files = template_files() | {
            "train.py": self.train or template_source("train.py"),
            "app.py": self.app or template_source("app.py"),
        }
        if self.train:
            files["real_train.py"] = template_source("train.py")
        if self.app:
            files["real_app.py"] = template_source("app.py")
        return GeneratedCode(files=files, provider=self.name)


def test_nosy_code_sees_no_secrets_no_database_no_service_files_and_no_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_dir = tmp_path / "service"
    service_dir.mkdir()
    db_path = service_dir / "trainbot.db"
    database_url = f"sqlite:///{db_path}"
    for name, value in {**SECRETS, "DATABASE_URL": database_url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(service_dir)

    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[object] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    train = (
        f"DB_PATH = {str(db_path)!r}\nSERVICE_DIR = {str(service_dir)!r}\n"
        f"LISTENER_PORT = {listener.getsockname()[1]}\n" + NOSY_TRAIN
    )

    engine = make_engine(database_url)
    upgrade(engine)
    settings = make_settings(tmp_path / "work", DATABASE_URL=database_url)
    services = start_services(engine, settings, codegen=NosyGenerator(train))
    try:
        job_id = submit(services, dataset_source="iris")
        job = wait_for(services, job_id)
        logs = event_messages(services, job_id, "log")
        progress = event_messages(services, job_id, "progress")
    finally:
        services.worker.shutdown()
        listener.close()
    assert job.status == JobStatus.LIVE, job.error

    findings = json.loads(next(line for line in logs if line.startswith("NOSY "))[5:])
    env_text = json.dumps(findings["env"])
    for name, value in {**SECRETS, "DATABASE_URL": database_url}.items():
        assert name not in findings["env"] and value not in env_text, name
    assert not any(
        key.startswith(("SLACK_", "TRAINBOT_", "GROQ_", "E2B_")) for key in findings["env"]
    )
    assert str(service_dir) not in env_text
    assert findings["database"].startswith("refused"), findings["database"]
    assert findings["service_dir"].startswith("refused"), findings["service_dir"]
    assert findings["network"].startswith("refused"), findings["network"]
    assert findings["uid"] != 0
    assert accepted == []
    assert any("bubblewrap: private filesystem, no network for training" in m for m in progress)


def test_nosy_app_reaches_nothing_while_it_serves_and_the_job_still_goes_live(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'trainbot.db'}")
    upgrade(engine)
    settings = make_settings(tmp_path / "work")
    with bait() as listeners:
        app = f"TARGETS = {listeners.targets()!r}\n" + DIAL_ALL + NOSY_APP
        services = start_services(engine, settings, codegen=NosyGenerator(app=app))
        try:
            job_id = submit(services, dataset_source="iris")
            job = wait_for(services, job_id)
            assert job.status == JobStatus.LIVE, job.error
            assert job.deployment_url is not None
            url = job.deployment_url.rstrip("/")
            found = httpx.get(url + "/nosy", timeout=120).json()
            health = httpx.get(url + "/health", timeout=10)
            accepted = list(listeners.accepted)
            progress = event_messages(services, job_id, "progress")
        finally:
            services.worker.shutdown()

    reached = [label for label, outcome in found["reached"].items() if outcome == "connected"]
    assert reached == [], found
    assert accepted == []
    assert found["interfaces"] == ["lo"]
    assert "host 127.0.0.1:5432" in found["reached"]  # PostgreSQL was among the targets
    assert health.json() == {"status": "ok"}
    assert get(services, job_id).codegen_provider == "nosy"
    assert any(message.startswith("verified: the app predicted") for message in progress)
    assert any("app reached only through its forwarded port" in m for m in progress)


@pytest.mark.parametrize("opted_in", [False, True])
def test_without_network_isolation_llm_code_runs_only_if_the_operator_opts_in(
    tmp_path: Path, opted_in: bool
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'trainbot.db'}")
    upgrade(engine)
    overrides = {"TRAINBOT_ALLOW_UNISOLATED_CODE": "1"} if opted_in else {}
    settings = make_settings(tmp_path / "work", **overrides)
    sandboxes = LocalSandboxProvider(
        settings.data_dir / "sandboxes",
        memory_mb=4096,
        cpu_seconds=120,
        file_size_mb=512,
        isolation="process",
    )
    train = (
        'print("NOSY ran", flush=True)\n'
        'exec(compile(open("real_train.py").read(), "real_train.py", "exec"))\n'
    )
    services = start_services(
        engine, settings, codegen=NosyGenerator(train=train), sandboxes=sandboxes
    )
    try:
        job_id = submit(services, dataset_source="iris")
        job = wait_for(services, job_id)
        logs = event_messages(services, job_id, "log")
        warnings = event_messages(services, job_id, "warning")
        progress = event_messages(services, job_id, "progress")
    finally:
        services.worker.shutdown()

    assert job.status == JobStatus.LIVE, job.error
    # Whichever code runs, the job says which isolation is active.
    assert any("process limits only" in m and "network open" in m for m in progress)
    refusal = (
        "nosy's code does not run here: the local sandbox on this machine cannot keep code "
        "off the host's network and services (databases, this bot); using the offline "
        "template instead. Set TRAINBOT_ALLOW_UNISOLATED_CODE=1 to run it anyway"
    )
    if opted_in:
        assert job.codegen_provider == "nosy"
        assert "NOSY ran" in logs
        assert refusal not in warnings
        assert any("TRAINBOT_ALLOW_UNISOLATED_CODE" in m for m in warnings)
    else:
        assert job.codegen_provider == "template"
        assert "NOSY ran" not in logs
        assert refusal in warnings
