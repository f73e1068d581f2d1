"""The Slack bot end to end: signed requests in, a fake Slack Web API out, real jobs between."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from bot.ids import ActionId
from bot.manifest import BOT_SCOPES
from storage import queries
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import JobStatus
from tests.fakes.slack_api import DOWNLOAD, FakeSlack
from tests.support.messy import write_messy_csv
from tests.support.pipeline import SETTLED, ScriptedGenerator, wait_until_down
from tests.support.slack_bot import (
    API_TOKEN,
    BotHarness,
    buttons,
    card_of,
    jobs,
    running_bot,
    wait_job,
)
from tests.support.slack_payloads import block_action, train_form, view_submission

SLEEPING_TRAIN = "import time\nprint('training started', flush=True)\ntime.sleep(120)\n"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    """Slack with the app installed from the shipped manifest: its scopes, and no more."""
    with FakeSlack(scopes=BOT_SCOPES) as fake:
        yield fake


@pytest.fixture
def bot(sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack) -> Iterator[BotHarness]:
    with running_bot(sqlite_engine, tmp_path, fake) as harness:
        yield harness


def open_modal(bot: BotHarness, channel: str = "C1", user: str = "U1") -> dict[str, Any]:
    response = bot.sender.command("", channel=channel, user=user)
    assert response.status_code == 200 and response.text == ""
    opened = bot.slack.wait_for(lambda: [v for v in bot.slack.views if v["method"] == "views.open"])
    return opened[-1]["view"]


def submit(
    bot: BotHarness, view: dict[str, Any], user: str = "U1", **fields: Any
) -> httpx.Response:
    return bot.sender.interaction(view_submission(view, train_form(**fields), user=user))


def thread_texts(bot: BotHarness, job: TrainingJob) -> list[str]:
    message = card_of(bot, job)
    return [r["text"] for r in bot.slack.replies(message["channel"], message["ts"])]


# -- the main flows ---------------------------------------------------------------------------


def test_train_builtin_from_modal_to_live_button(
    engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    with running_bot(engine, tmp_path, fake) as bot:
        view = open_modal(bot)
        assert view["callback_id"] == "train_modal"
        assert json.loads(view["private_metadata"])["channel_id"] == "C1"
        block_ids = {b.get("block_id") for b in view["blocks"] if b["type"] == "input"}
        assert {
            "name",
            "goal",
            "dataset",
            "dataset_url",
            "dataset_file",
            "target",
            "resources",
        } <= block_ids

        answer = submit(
            bot,
            view,
            name="Iris demo",
            dataset="iris",
            goal="tell species apart",
            resources="http://10.0.0.1/notes",
        )
        assert answer.status_code == 200 and answer.text == ""
        job = wait_job(bot)
        assert job.status == JobStatus.LIVE, job.error
        assert (job.origin, job.channel_id, job.requested_by) == ("slack", "C1", "U1")
        bot.wait_idle()

        card = card_of(bot, job)
        assert card["channel"] == "C1" and card["thread_ts"] is None
        live_button = buttons(card)[ActionId.OPEN_APP.value]
        assert live_button["url"] == job.deployment_url
        assert "Open live app" in live_button["text"]["text"]
        assert card["metadata"]["event_type"] == "training_job"
        assert card["metadata"]["event_payload"] == {
            "job_id": job.id,
            "status": "live",
            "stage": "deploy",
            "deployment_url": job.deployment_url,
        }

        replies = thread_texts(bot, job)
        assert any("Data set" in r and "iris" in r for r in replies)
        assert any("10.0.0.1" in r for r in replies), "a warning about the private reference link"
        assert any("is live" in r for r in replies)
        uploads = [u for u in bot.slack.uploads if u["thread_ts"] == card["ts"]]
        assert uploads and uploads[0]["content"].startswith(b"\x89PNG")
        # C1 is public and the bot was never invited: it joined to share the chart there.
        assert bot.slack.is_member("C1")
        [join] = bot.slack.calls_to("conversations.join")
        assert join.params["channel"] == "C1"
        assert join.at < bot.slack.calls_to("files.completeUploadExternal")[0].at
        # Everything in the channel went to the thread, except the one card.
        top_level = [m for m in bot.slack.messages("C1") if m["thread_ts"] is None]
        assert [m["ts"] for m in top_level] == [card["ts"]]

        edits = [
            c.at
            for c in bot.slack.calls_to("chat.update")
            if c.params.get("ts") == card["ts"] and c.status == 200
        ]
        assert all(b - a >= 0.9 for a, b in zip(edits, edits[1:], strict=False)), (
            "card edits are coalesced"
        )
        assert bot.slack.rate_limited == [], "pacing keeps the bot under Slack's per-channel limit"

        predicted = httpx.post(
            job.deployment_url + "predict",
            json={
                "rows": [
                    {
                        "sepal length (cm)": 5.0,
                        "sepal width (cm)": 3.4,
                        "petal length (cm)": 1.5,
                        "petal width (cm)": 0.2,
                    }
                ]
            },
        )
        assert predicted.json()["predictions"] == ["setosa"]
        assert bot.slack.rejections == []


def test_uploaded_csv_is_downloaded_with_the_bot_token_and_trained(
    bot: BotHarness, tmp_path: Path
) -> None:
    data = write_messy_csv(tmp_path / "customers.csv").read_bytes()
    file = bot.slack.add_file("F0CSV1", "customers.csv", data)
    view = open_modal(bot)
    answer = submit(
        bot, view, name="Churn", dataset_file=[{**file, "size": len(data)}], target="Churned?"
    )
    assert answer.status_code == 200 and answer.text == ""
    job = wait_job(bot)
    assert job.status == JobStatus.LIVE, job.error
    assert job.dataset_source == "slack-file:F0CSV1/customers.csv"
    downloads = bot.slack.calls_to(DOWNLOAD)
    assert downloads and downloads[0].status == 200
    assert downloads[0].headers["authorization"] == f"Bearer {bot.slack.token}"
    bot.wait_idle()
    assert any("customers.csv" in r for r in thread_texts(bot, job))
    assert bot.slack.rejections == []


@pytest.mark.parametrize(
    ("fields", "block", "words"),
    [
        ({"dataset": "iris"}, "name", "name"),
        ({"name": "x"}, "dataset", "Pick a built-in"),
        (
            {
                "name": "x",
                "dataset": "iris",
                "dataset_url": "https://data.example.com/a.csv",
                "target": "y",
            },
            "dataset_url",
            "only one",
        ),
        (
            {"name": "x", "dataset_url": "ftp://data.example.com/a.csv", "target": "y"},
            "dataset_url",
            "http",
        ),
        (
            {"name": "x", "dataset_url": "http://10.0.0.8/a.csv", "target": "y"},
            "dataset_url",
            "private",
        ),
        (
            {"name": "x", "dataset_url": "http://169.254.169.254/latest/meta-data", "target": "y"},
            "dataset_url",
            "169.254.169.254",
        ),
        (
            {"name": "x", "dataset_url": "http://127.0.0.1:5432/a.csv", "target": "y"},
            "dataset_url",
            "loopback",
        ),
        (
            {"name": "x", "dataset_url": "https://intranet.example.com/a.csv", "target": "y"},
            "dataset_url",
            "10.1.2.3",
        ),
        (
            {"name": "x", "dataset_url": "http://xn--zz/a.csv", "target": "y"},
            "dataset_url",
            "xn--zz is not a valid internationalised",
        ),
        (
            {"name": "x", "dataset_url": "https://xn--a.example/a.csv", "target": "y"},
            "dataset_url",
            "not a valid link",
        ),
        (
            {"name": "x", "dataset_url": "http://[::1/a.csv", "target": "y"},
            "dataset_url",
            "not a valid link",
        ),
        ({"name": "x", "dataset": "iris", "resources": "http://[::1/notes"}, "resources", "http"),
        ({"name": "x", "dataset_url": "https://data.example.com/a.csv"}, "target", "column"),
        (
            {
                "name": "x",
                "dataset_file": [
                    {"id": "F1", "name": "sheet.xlsx", "filetype": "xlsx", "size": 10}
                ],
                "target": "y",
            },
            "dataset_file",
            "not a CSV",
        ),
        (
            {
                "name": "x",
                "dataset_file": [
                    {"id": "F1", "name": "big.csv", "filetype": "csv", "size": 500 * 2**20}
                ],
                "target": "y",
            },
            "dataset_file",
            "limit",
        ),
        (
            {
                "name": "x",
                "dataset_file": [{"id": "F1", "name": "a.csv", "filetype": "csv", "size": 10}],
            },
            "target",
            "column",
        ),
        ({"name": "x", "dataset": "iris", "resources": "not a link"}, "resources", "http"),
    ],
)
def test_invalid_submissions_get_field_errors_and_create_nothing(
    bot: BotHarness, fields: dict[str, Any], block: str, words: str
) -> None:
    view = open_modal(bot)
    answer = submit(bot, view, **fields)
    assert answer.status_code == 200
    body = answer.json()
    assert body["response_action"] == "errors"
    assert block in body["errors"], body
    assert words.lower() in body["errors"][block].lower(), body
    assert jobs(bot) == []


def test_duplicate_delivery_creates_one_job(bot: BotHarness) -> None:
    view = open_modal(bot)
    payload = view_submission(view, train_form(name="Once", dataset="wine"))
    assert bot.sender.interaction(payload).status_code == 200
    retried = bot.sender.interaction(
        payload, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert retried.status_code == 200
    again = bot.sender.interaction(payload)
    assert again.status_code == 200
    wait_job(bot)
    assert len(jobs(bot)) == 1
    bot.wait_idle()
    cards = [m for m in bot.slack.messages("C1") if m["thread_ts"] is None]
    assert len(cards) == 1


def test_bad_signature_and_stale_timestamp_are_refused(bot: BotHarness) -> None:
    body = b"command=%2Ftrain&text=help&user_id=U1&channel_id=C1&trigger_id=t"
    form_type = "application/x-www-form-urlencoded"
    assert bot.sender.post(body, form_type, secret="wrong-secret").status_code == 401
    assert bot.sender.post(body, form_type, timestamp=int(time.time()) - 6 * 60).status_code == 401
    unsigned = httpx.post(bot.sender.url, content=body, headers={"Content-Type": form_type})
    assert unsigned.status_code == 401
    assert bot.sender.post(body, form_type).status_code == 200
    assert bot.slack.calls_to("views.open") == []


# -- commands -------------------------------------------------------------------------------------


def ephemeral(response: httpx.Response) -> str:
    assert response.status_code == 200
    body = response.json()
    assert body.get("response_type", "ephemeral") == "ephemeral"
    return body["text"] + json.dumps(body.get("blocks", []))


def test_commands_answer_at_once_and_name_mistakes(bot: BotHarness) -> None:
    help_text = ephemeral(bot.sender.command("help"))
    for sub in ("status", "list", "cancel", "retry", "logs"):
        assert f"/train {sub}" in help_text
    assert "no jobs yet" in ephemeral(bot.sender.command("status")).lower()
    for sub in ("status", "cancel", "retry", "logs"):
        assert (
            "no job has the id abcdef12" in ephemeral(bot.sender.command(f"{sub} abcdef12")).lower()
        )
    assert "not a job id" in ephemeral(bot.sender.command("logs zz!")).lower()
    assert "say which job" in ephemeral(bot.sender.command("cancel")).lower()
    unknown = ephemeral(bot.sender.command("frobnicate"))
    assert "/train frobnicate" in unknown and "/train status" in unknown
    assert "no jobs" in ephemeral(bot.sender.command("list")).lower()

    view = open_modal(bot)
    submit(bot, view, name="Wine model", dataset="wine")
    job = wait_job(bot)
    assert job.status == JobStatus.LIVE
    status = ephemeral(bot.sender.command(f"status {job.short_id}"))
    assert job.deployment_url in status and "accuracy" in status
    assert job.short_id in ephemeral(bot.sender.command("status"))  # the caller's latest
    listed = ephemeral(bot.sender.command("list", channel="C1"))
    assert "Wine model" in listed and job.short_id in listed
    assert "Wine model" not in ephemeral(bot.sender.command("list", channel="C2"))
    logs = ephemeral(bot.sender.command(f"logs {job.short_id}"))
    assert "test accuracy" in logs
    assert "only failed, cancelled or expired" in ephemeral(
        bot.sender.command(f"retry {job.short_id}")
    )
    assert "cancelled" in ephemeral(bot.sender.command(f"cancel {job.short_id}")).lower()
    assert wait_job(bot, {JobStatus.CANCELLED}).status == JobStatus.CANCELLED
    wait_until_down(job.deployment_url or "")
    assert max(bot.sender.ack_seconds) < 1.5
    bot.wait_idle()
    assert bot.slack.rejections == []


def test_cancel_button_during_training_and_fast_acks(
    sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    codegen = ScriptedGenerator(train_py=SLEEPING_TRAIN)
    with running_bot(sqlite_engine, tmp_path, fake, codegen=codegen) as bot:
        submit(bot, open_modal(bot), name="Slow", dataset="iris")
        job = wait_job(bot, {JobStatus.TRAINING})
        bot.sender.ack_seconds.clear()
        for text in ("help", "list", f"status {job.short_id}", f"logs {job.short_id}", ""):
            assert bot.sender.command(text).status_code == 200
        bot.sender.event({"type": "app_home_opened", "user": "U1", "tab": "home"})
        assert max(bot.sender.ack_seconds) < 1.0, bot.sender.ack_seconds

        bot.wait_idle()
        card = card_of(bot, job)
        cancel = buttons(card)[ActionId.CANCEL_JOB.value]
        answer = bot.sender.interaction(
            block_action(ActionId.CANCEL_JOB.value, cancel["value"], message_ts=card["ts"])
        )
        assert answer.status_code == 200
        cancelled = wait_job(bot, {JobStatus.CANCELLED}, timeout=15)
        assert cancelled.sandbox_id
        sandbox_dir = tmp_path / "data" / "sandboxes" / cancelled.sandbox_id
        deadline = time.monotonic() + 10
        while sandbox_dir.exists():
            assert time.monotonic() < deadline, "the training sandbox outlived the cancel"
            time.sleep(0.1)
        bot.wait_idle()
        card = card_of(bot, job)
        assert card["metadata"]["event_payload"]["status"] == "cancelled"
        assert ActionId.CANCEL_JOB.value not in buttons(card)
        assert any("Cancelled by <@U1>" in r for r in thread_texts(bot, job)), thread_texts(
            bot, job
        )
        assert bot.slack.rejections == []


def test_failed_job_shows_the_reason_and_retry_starts_a_new_attempt(
    sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    codegen = ScriptedGenerator(train_py="raise ValueError('the data has no signal')\n")
    with running_bot(sqlite_engine, tmp_path, fake, codegen=codegen) as bot:
        submit(bot, open_modal(bot), name="Broken", dataset="iris")
        job = wait_job(bot)
        assert (job.status, job.stage) == (JobStatus.FAILED, "train")
        bot.wait_idle()
        card = card_of(bot, job)
        assert "the data has no signal" in json.dumps(card["blocks"])
        retry = buttons(card)[ActionId.RETRY_JOB.value]
        replies = thread_texts(bot, job)
        assert any("the data has no signal" in r for r in replies)

        bot.sender.interaction(
            block_action(ActionId.RETRY_JOB.value, retry["value"], message_ts=card["ts"])
        )
        second = wait_job(bot, index=0, statuses=SETTLED)
        deadline = time.monotonic() + 60
        while len(jobs(bot)) < 2 or jobs(bot)[0].job_status not in SETTLED:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second = jobs(bot)[0]
        assert (second.attempt, second.retry_of, second.model_id) == (2, job.id, job.model_id)
        bot.wait_idle()
        assert card_of(bot, second)["ts"] != card["ts"]
        assert bot.slack.rejections == []


def test_rate_limits_are_retried_and_lose_nothing(
    sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    with running_bot(sqlite_engine, tmp_path, fake) as bot:
        fake.force_rate_limit("chat.postMessage", times=3)
        fake.force_rate_limit("chat.update", times=2)
        submit(bot, open_modal(bot), name="Paced", dataset="iris")
        job = wait_job(bot)
        assert job.status == JobStatus.LIVE
        bot.wait_idle(60)
        assert len(bot.slack.rate_limited) >= 5, "every forced 429 was met and retried"
        # The 429s back the lane up, so finished stages may be listed in the live reply
        # instead of a reply each: either way every one is in the thread.
        message = card_of(bot, job)
        thread = json.dumps(bot.slack.replies(message["channel"], message["ts"]))
        for stage in ("Reference resources", "Data set", "Code generation", "Training", "Live app"):
            assert stage in thread, (stage, thread_texts(bot, job))
        assert any("is live" in r for r in thread_texts(bot, job))
        assert buttons(card_of(bot, job))[ActionId.OPEN_APP.value]["url"] == job.deployment_url


def test_app_home_lists_the_users_jobs(bot: BotHarness) -> None:
    submit(bot, open_modal(bot, user="U7"), user="U7", name="Home model", dataset="iris")
    job = wait_job(bot)
    assert (
        bot.sender.event({"type": "app_home_opened", "user": "U7", "tab": "home"}).status_code
        == 200
    )
    home = bot.slack.wait_for(lambda: bot.slack.home_views.get("U7"))
    assert "Home model" in json.dumps(home) and job.short_id in json.dumps(home)


def test_status_api_requires_the_bearer_token(bot: BotHarness) -> None:
    submit(bot, open_modal(bot), name="Api model", dataset="iris")
    job = wait_job(bot)
    url = f"{bot.base_url}/api/training-jobs/{job.id}/status"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert ok.status_code == 200
    body = ok.json()
    assert (body["status"], body["deployment_url"], body["model"]) == (
        "live",
        job.deployment_url,
        "Api model",
    )
    assert body["metrics"]["score"] > body["metrics"]["baseline"]
    assert body["created_at"] and body["live_at"] and body["error"] is None
    missing = httpx.get(
        f"{bot.base_url}/api/training-jobs/ffff0000/status",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert missing.status_code == 404
    assert httpx.get(f"{bot.base_url}/healthz").json() == {"status": "ok"}


def test_expiry_of_the_app_updates_the_card(bot: BotHarness) -> None:
    submit(bot, open_modal(bot), name="Short lived", dataset="iris")
    job = wait_job(bot)
    assert job.status == JobStatus.LIVE
    with session_scope(bot.engine) as session:  # its lifetime runs out
        queries.update_job(session, job_id=job.id, expires_at=datetime.now(UTC))
    bot.runtime.ctx.services.worker.sweep()  # what every worker does every few seconds
    assert wait_job(bot, {JobStatus.EXPIRED}).status == JobStatus.EXPIRED
    bot.wait_idle()
    card = card_of(bot, job)
    assert card["metadata"]["event_payload"]["status"] == "expired"
    assert ActionId.OPEN_APP.value not in buttons(card)
    assert ActionId.RETRY_JOB.value in buttons(card)
    assert any("lifetime ran out" in r for r in thread_texts(bot, job))
    assert bot.slack.rejections == []


def test_extend_keeps_a_live_app_up_longer_and_moves_its_end(bot: BotHarness) -> None:
    submit(bot, open_modal(bot), name="Kept up", dataset="iris")
    job = wait_job(bot)
    assert job.status == JobStatus.LIVE and job.expires_at is not None
    answer = ephemeral(bot.sender.command(f"extend {job.short_id} 2"))
    assert f"job {job.short_id} stays up until" in answer.lower()
    with session_scope(bot.engine) as session:
        extended = queries.get_job(session, job_id=job.id)
    assert extended is not None and extended.expires_at is not None
    assert extended.expires_at - job.expires_at > timedelta(minutes=30)
    # The row is the timer: a sweep by any worker now leaves the app up.
    bot.runtime.ctx.services.worker.sweep()
    with session_scope(bot.engine) as session:
        assert queries.get_job(session, job_id=job.id).status == JobStatus.LIVE  # type: ignore[union-attr]
    assert "how many hours" in ephemeral(bot.sender.command(f"extend {job.short_id} soon"))
    assert "is cancelled" in ephemeral(bot.sender.command(f"cancel {job.short_id}"))
    assert "only a live app" in ephemeral(bot.sender.command(f"extend {job.short_id}"))
