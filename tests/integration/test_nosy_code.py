"""Deliberately nosy generated code learns nothing about the service that runs it.

It reads its environment, opens the service's database file, lists the service's working
directory and tries the network during training, then trains normally. The job still goes
live; what the code saw is printed to the job's log and checked here.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from pipeline.codegen.base import GeneratedCode, Resource, TaskSpec
from pipeline.codegen.template import template_source
from storage.db import make_engine, upgrade
from storage.states import JobStatus
from tests.support.pipeline import event_messages, make_settings, start_services, submit, wait_for

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


class NosyGenerator:
    name = "nosy"
    can_repair = False

    def __init__(self, train: str) -> None:
        self.train = train

    def generate(self, spec: TaskSpec, resources: list[Resource]) -> GeneratedCode:
        files = {
            "train.py": self.train,
            "real_train.py": template_source("train.py"),
            "app.py": template_source("app.py"),
        }
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
