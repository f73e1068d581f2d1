"""Every Block Kit builder, checked with slack_sdk's own models and against Slack's limits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk.models.basic_objects import JsonObject
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot import blocks
from bot.blocks import Message
from bot.ids import METADATA_EVENT_TYPE, ActionId, BlockId, CallbackId
from bot.snapshot import STAGES
from bot.text import clip_mrkdwn, code_block, escape, format_duration, format_metric, safe_url
from pipeline.budget import BudgetRange
from storage.states import RUNNING_STAGES, JobStatus
from tests.fakes.slack_blocks_rules import message_block_errors, metadata_errors, view_errors
from tests.support.snapshots import NOW, make_snapshot

BUILTINS = [("iris", "Iris flowers"), ("wine", "Wine"), ("diabetes", "Diabetes (regression)")]
MODAL_BLOCK_IDS = {
    "name",
    "goal",
    "dataset",
    "dataset_url",
    "dataset_file",
    "target",
    "resources",
    "task",
    "budget",
    "ttl",
}
EVIL = "<!channel> & <@U999> <https://evil.example|click>"
ALL_STATUSES = [s.value for s in JobStatus]


# --- validation helpers --------------------------------------------------------------------


def _validate_deep(obj: Any) -> None:
    """slack_sdk validates one object at a time; walk into elements, texts, confirms, options."""
    if isinstance(obj, JsonObject):
        obj.validate_json()
        for name in obj.attributes:
            _validate_deep(getattr(obj, name, None))
    elif isinstance(obj, list | tuple):
        for item in obj:
            _validate_deep(item)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _check_limits(payload: list[dict[str, Any]]) -> None:
    for node in _walk(payload):
        kind = node.get("type")
        if kind == "section":
            assert len(node["text"]["text"]) <= 3000
        elif kind == "header":
            assert len(node["text"]["text"]) <= 150
        elif kind == "context":
            assert 1 <= len(node["elements"]) <= 10
        elif kind == "button":
            assert len(node["text"]["text"]) <= 75
            if "url" in node:
                assert len(node["url"]) <= 3000
                assert node["url"].startswith(("https://", "http://"))
        elif kind == "mrkdwn":
            text = node["text"]
            assert len(text) <= 3000
            assert text.count("```") % 2 == 0, text
            assert "<!channel>" not in text


def assert_valid_blocks(payload: list[dict[str, Any]], limit: int = 50) -> None:
    assert 0 < len(payload) <= limit
    json.dumps(payload)
    parsed = Block.parse_all(payload)
    assert all(b is not None for b in parsed)
    for block, raw in zip(parsed, payload, strict=True):
        _validate_deep(block)
        assert block.to_dict() == raw, "a key slack_sdk does not know was dropped"
    _check_limits(payload)


def assert_valid_message(message: Message) -> None:
    assert isinstance(message, Message)
    assert message.text.strip()
    assert len(message.text) <= 3000
    assert "<!channel>" not in message.text
    assert_valid_blocks(message.blocks)
    assert message_block_errors(message.blocks) == []


def assert_valid_view(view: dict[str, Any]) -> None:
    model = View(**view)
    model.validate_json()
    assert view_errors(view) == []
    assert_valid_blocks(view["blocks"], limit=100)


def all_text(message: Message) -> str:
    parts = [message.text]
    for node in _walk(message.blocks):
        if node.get("type") in ("mrkdwn", "plain_text"):
            parts.append(node["text"])
    return "\n".join(parts)


def mrkdwn_text(message: Message) -> str:
    """Only what Slack parses for mentions and links: the fallback and the mrkdwn objects."""
    parts = [message.text]
    parts += [n["text"] for n in _walk(message.blocks) if n.get("type") == "mrkdwn"]
    return "\n".join(parts)


def buttons(message: Message) -> dict[str, dict[str, Any]]:
    found = {}
    for block in message.blocks:
        if block["type"] == "actions":
            assert block["block_id"] == BlockId.CARD_ACTIONS
            for element in block["elements"]:
                found[element["text"]["text"]] = element
    return found


def snapshots_for_every_status() -> list[Any]:
    return [make_snapshot(status=s) for s in ALL_STATUSES]


# --- the /train modal ----------------------------------------------------------------------


def modal(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "channel_id": "C0123ABC",
        "builtins": BUILTINS,
        "max_upload_mb": 20,
        "default_lifetime": 3600,
        "max_lifetime": None,
        "budgets": BudgetRange(default=60, most=600),
    }
    args.update(kwargs)
    return blocks.train_modal(**args)


def inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


def test_modal_is_a_valid_view_with_the_contract_block_ids() -> None:
    view = modal()
    assert_valid_view(view)
    assert view["type"] == "modal"
    assert view["callback_id"] == CallbackId.TRAIN_MODAL
    assert view["title"]["text"] == "Train a model"
    assert view["submit"]["text"] == "Train"
    assert view["close"]["text"] == "Cancel"
    ids = {b["block_id"] for b in view["blocks"] if "block_id" in b}
    assert ids == MODAL_BLOCK_IDS
    assert set(inputs(view)) == {b.value for b in BlockId} - {
        BlockId.CARD_ACTIONS,
        BlockId.EXPIRY_ACTIONS,
        BlockId.LIVE_ACTIONS,
    }


def test_modal_elements_have_the_right_types_and_ids() -> None:
    found = inputs(modal())
    expected_actions = {
        "name": ActionId.NAME,
        "goal": ActionId.GOAL,
        "dataset": ActionId.DATASET,
        "dataset_url": ActionId.DATASET_URL,
        "dataset_file": ActionId.DATASET_FILE,
        "target": ActionId.TARGET,
        "resources": ActionId.RESOURCES,
        "task": ActionId.TASK,
        "budget": ActionId.BUDGET,
        "ttl": ActionId.TTL,
    }
    for block_id, action_id in expected_actions.items():
        assert found[block_id]["element"]["action_id"] == action_id
    assert found["name"]["optional"] is False
    assert found["name"]["element"]["max_length"] == 80
    assert all(found[k]["optional"] for k in MODAL_BLOCK_IDS - {"name"})
    assert found["goal"]["element"]["multiline"] is True
    assert "predict which customers will churn" in found["goal"]["element"]["placeholder"]["text"]
    assert found["dataset_url"]["element"]["type"] == "url_text_input"
    assert found["dataset_url"]["hint"]["text"] == "a public http(s) link to a CSV"
    file_input = found["dataset_file"]["element"]
    assert file_input["type"] == "file_input"
    assert file_input["filetypes"] == ["csv"]
    assert file_input["max_files"] == 1
    assert "20 MB" in found["dataset_file"]["label"]["text"]
    assert "ignoring case" in found["target"]["hint"]["text"]
    assert found["resources"]["hint"]["text"] == "one URL per line"
    assert found["resources"]["element"]["multiline"] is True


def test_modal_selects_offer_the_choices_with_defaults() -> None:
    found = inputs(modal())
    datasets = found["dataset"]["element"]
    assert datasets["type"] == "static_select"
    assert [o["value"] for o in datasets["options"]] == ["iris", "wine", "diabetes"]
    assert "initial_option" not in datasets
    task = found["task"]["element"]
    assert [o["value"] for o in task["options"]] == ["auto", "classification", "regression"]
    assert task["initial_option"]["value"] == "auto"
    ttl = found["ttl"]["element"]
    assert [o["text"]["text"] for o in ttl["options"]] == ["15 min", "1 h", "4 h", "24 h"]
    assert [int(o["value"]) for o in ttl["options"]] == [900, 3600, 14400, 86400]
    assert ttl["initial_option"]["text"]["text"] == "1 h"


def lifetimes(view: dict[str, Any]) -> tuple[list[tuple[int, str]], int]:
    """The lifetime select's (seconds, label) options and its initial value."""
    select = inputs(view)["ttl"]["element"]
    options = [(int(o["value"]), o["text"]["text"]) for o in select["options"]]
    return options, int(select["initial_option"]["value"])


def test_modal_offers_only_the_lifetimes_the_provider_can_serve() -> None:
    view = modal(max_lifetime=3600)
    assert_valid_view(view)
    assert lifetimes(view) == ([(900, "15 min"), (3600, "1 h")], 3600)


def test_modal_default_lifetime_above_the_cap_shows_the_cap() -> None:
    assert lifetimes(modal(default_lifetime=86400, max_lifetime=3600))[1] == 3600
    options, initial = lifetimes(modal(default_lifetime=86400, max_lifetime=5400))
    assert options == [(900, "15 min"), (3600, "1 h"), (5400, "1 h 30 min")]
    assert initial == 5400


def test_modal_default_lifetime_is_the_configured_one() -> None:
    options, initial = lifetimes(modal(default_lifetime=300))
    assert options[0] == (300, "5 min") and initial == 300
    assert [s for s, _ in options] == [300, 900, 3600, 14400, 86400]


def test_modal_prefilled_lifetime_beyond_the_cap_falls_back_to_the_default() -> None:
    view = modal(values=blocks.TrainFormValues(ttl=86400), max_lifetime=3600)
    assert lifetimes(view)[1] == 3600


def test_modal_says_to_pick_one_data_source_at_the_top() -> None:
    view = modal()
    first = json.dumps(view["blocks"][0])
    assert "exactly one" in first and "data source" in first


def test_modal_private_metadata_round_trips_the_channel() -> None:
    view = modal(channel_id="C42XYZ")
    assert json.loads(view["private_metadata"]) == {"channel_id": "C42XYZ"}
    assert len(view["private_metadata"]) < 100


def test_modal_prefills_values() -> None:
    values = blocks.TrainFormValues(
        name="churn",
        goal="find churners",
        dataset="wine",
        dataset_url="https://example.com/d.csv",
        target="churned",
        resources="https://example.com/a\nhttps://example.com/b",
        task="regression",
        ttl=86400,
    )
    view = modal(values=values)
    assert_valid_view(view)
    found = inputs(view)
    assert found["name"]["element"]["initial_value"] == "churn"
    assert found["dataset"]["element"]["initial_option"]["value"] == "wine"
    assert found["dataset_url"]["element"]["initial_value"] == "https://example.com/d.csv"
    assert found["task"]["element"]["initial_option"]["value"] == "regression"
    assert found["ttl"]["element"]["initial_option"]["value"] == "86400"


def test_modal_copes_with_odd_builtins() -> None:
    many = [(f"set{i}", "A very long data set label " * 5) for i in range(150)]
    view = modal(builtins=many)
    assert_valid_view(view)
    assert len(inputs(view)["dataset"]["element"]["options"]) == 100
    empty = modal(builtins=[])
    assert_valid_view(empty)
    assert "dataset" not in inputs(empty)


# --- the job card --------------------------------------------------------------------------


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_card_is_valid_for_every_status(status: str) -> None:
    snap = make_snapshot(status=status)
    card = blocks.job_card(snap)
    assert_valid_message(card)
    assert card.blocks[0]["type"] == "header"
    assert blocks.STATUS_EMOJI[status] in card.blocks[0]["text"]["text"]
    assert "iris-demo" in card.blocks[0]["text"]["text"]


@pytest.mark.parametrize(
    ("status", "emoji"),
    [
        ("queued", "⏳"),
        ("training", "🔄"),
        ("live", "✅"),
        ("failed", "❌"),
        ("cancelled", "🚫"),
        ("expired", "⌛"),
    ],
)
def test_card_status_emoji(status: str, emoji: str) -> None:
    assert blocks.job_card(make_snapshot(status=status)).text.startswith(emoji)


@pytest.mark.parametrize("status", [s.value for s in (JobStatus.QUEUED, *RUNNING_STAGES)])
def test_active_card_has_only_a_confirmed_cancel(status: str) -> None:
    snap = make_snapshot(status=status)
    found = buttons(blocks.job_card(snap))
    assert list(found) == ["Cancel"]
    cancel = found["Cancel"]
    assert cancel["action_id"] == ActionId.CANCEL_JOB
    assert cancel["value"] == snap.job_id
    assert cancel["style"] == "danger"
    assert "confirm" in cancel


def test_live_card_opens_the_app_and_can_stop_it() -> None:
    snap = make_snapshot(status="live")
    card = blocks.job_card(snap)
    found = buttons(card)
    assert list(found) == ["Open live app", "Stop app"]
    open_app = found["Open live app"]
    assert open_app["url"] == snap.url
    assert open_app["action_id"] == ActionId.OPEN_APP
    assert open_app["style"] == "primary"
    stop = found["Stop app"]
    assert stop["action_id"] == ActionId.CANCEL_JOB
    assert stop["value"] == snap.job_id
    assert "confirm" in stop
    assert "accuracy 0.967 (baseline 0.333)" in all_text(card)
    assert "<!date^" in all_text(card)


@pytest.mark.parametrize("url", [None, "", "javascript:alert(1)", "ftp://x/y", "https://a|b>c"])
def test_live_card_leaves_out_a_bad_url(url: str | None) -> None:
    card = blocks.job_card(make_snapshot(status="live", url=url))
    assert_valid_message(card)
    assert list(buttons(card)) == ["Stop app"]


def test_failed_card_gives_the_reason_and_a_retry() -> None:
    snap = make_snapshot(status="failed", error="the target column 'species' is missing")
    card = blocks.job_card(snap)
    found = buttons(card)
    assert list(found) == ["Retry"]
    assert found["Retry"]["action_id"] == ActionId.RETRY_JOB
    assert found["Retry"]["value"] == snap.job_id
    assert found["Retry"]["style"] == "primary"
    text = all_text(card)
    assert "the target column 'species' is missing" in text
    assert "Training" in text


@pytest.mark.parametrize("status", ["cancelled", "expired"])
def test_stopped_cards_offer_to_train_again(status: str) -> None:
    snap = make_snapshot(status=status)
    card = blocks.job_card(snap)
    found = buttons(card)
    assert list(found) == ["Train again"]
    assert found["Train again"]["action_id"] == ActionId.RETRY_JOB
    assert found["Train again"]["value"] == snap.job_id
    assert status.capitalize() in all_text(card)


@pytest.mark.parametrize("running", [s.value for s in RUNNING_STAGES])
def test_card_checklist_follows_stage_states(running: str) -> None:
    snap = make_snapshot(status=running, note="step 3 of 5")
    checklist = blocks.job_card(snap).blocks[2]["text"]["text"].splitlines()
    assert len(checklist) == len(STAGES)
    here = [key for key, _ in STAGES].index(snap.stage or "")
    for i, ((_, title), line) in enumerate(zip(STAGES, checklist, strict=True)):
        assert title in line
        mark = "✓" if i < here else "🔄" if i == here else "◻"
        assert line.startswith(mark)
    assert "step 3 of 5" in checklist[here]


def test_failed_stage_is_marked_with_a_cross() -> None:
    snap = make_snapshot(status="failed", stage="codegen", note="bad code")
    lines = blocks.job_card(snap).blocks[2]["text"]["text"].splitlines()
    assert [line[0] for line in lines] == ["✓", "✓", "✗", "◻", "◻"]


def test_card_details() -> None:
    text = all_text(blocks.job_card(make_snapshot(status="training")))
    assert "<@U0123ABCD>" in text
    assert "iris (built-in)" in text and "species" in text
    assert "1m 05s" in text
    assert "01234567" in text
    cli = all_text(blocks.job_card(make_snapshot(requested_by="cli")))
    assert "the CLI" in cli
    queued = all_text(blocks.job_card(make_snapshot(status="queued")))
    assert "Not started yet" in queued


def test_card_escapes_and_truncates_hostile_input() -> None:
    snap = make_snapshot(
        status="failed",
        model_name=EVIL * 20,
        note=EVIL * 50,
        error=EVIL * 500,
        dataset=EVIL * 50,
        target=EVIL,
        requested_by="<!here>",
    )
    card = blocks.job_card(snap)
    assert_valid_message(card)
    text = mrkdwn_text(card)
    assert "&lt;!channel&gt;" in text
    assert "<!here>" not in text
    assert "<@U999>" not in text
    assert "<https://evil" not in text


def test_card_metadata_keeps_the_job_facts() -> None:
    live = blocks.card_metadata(make_snapshot(status="live"))
    assert live == {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {
            "job_id": "0123456789abcdef0123456789abcdef",
            "status": "live",
            "stage": "deploy",
            "deployment_url": "https://apps.example.com/j/01234567/",
        },
    }
    assert metadata_errors(live, allow_empty=False) == []
    queued = blocks.card_metadata(make_snapshot(status="queued"))["event_payload"]
    assert queued["stage"] == "" and queued["deployment_url"] == ""
    json.dumps(queued)


# --- thread replies ------------------------------------------------------------------------


def test_stage_reply() -> None:
    reply = blocks.stage_reply(
        "dataset", "Data set", "built-in iris (147 rows): classification of 'species'"
    )
    assert_valid_message(reply)
    assert reply.text.startswith("✓ *Data set* — built-in iris (147 rows)")
    assert_valid_message(blocks.stage_reply("train", "Training", EVIL * 400))


def test_warning_reply() -> None:
    reply = blocks.warning_reply("dropped 3 rows with a missing target")
    assert_valid_message(reply)
    assert reply.text.startswith("⚠️")
    assert_valid_message(blocks.warning_reply(EVIL * 400))


def test_failure_reply_shows_the_log_tail_and_next_steps() -> None:
    snap = make_snapshot(status="failed", error="training crashed")
    log = "\n".join(f"line {i}" for i in range(100))
    reply = blocks.failure_reply(snap, log)
    assert_valid_message(reply)
    text = all_text(reply)
    assert "training crashed" in text
    assert "line 99" in text and "line 75" in text and "line 74" not in text
    assert "/train logs 01234567" in text
    assert "/train retry 01234567" in text


def test_failure_reply_keeps_huge_logs_within_limits() -> None:
    snap = make_snapshot(status="failed", error=EVIL * 300)
    log = "\n".join(f"{i} " + "x<&>```" * 200 for i in range(500))
    reply = blocks.failure_reply(snap, log)
    assert_valid_message(reply)
    code = reply.blocks[1]["text"]["text"]
    assert code.startswith("```\n…\n")
    assert "499 " in code


def test_failure_reply_without_log() -> None:
    reply = blocks.failure_reply(make_snapshot(status="failed"), "")
    assert_valid_message(reply)
    assert "```" not in all_text(reply)


def test_live_reply() -> None:
    snap = make_snapshot(status="live")
    reply = blocks.live_reply(snap)
    assert_valid_message(reply)
    text = all_text(reply)
    assert "accuracy 0.967 (baseline 0.333)" in text
    assert "RandomForestClassifier" in text
    assert "117" in text and "30" in text
    assert f"<{snap.url}|" in text
    epoch = int((NOW + timedelta(hours=1)).timestamp())
    assert re.search(rf"<!date\^{epoch}\^[^|]+\|2025-03-14 13:00 UTC>", text)
    assert "curl -X POST" in text
    assert "https://apps.example.com/j/01234567/predict" in text


def test_live_reply_without_url_or_metrics() -> None:
    reply = blocks.live_reply(make_snapshot(status="live", url="nope", metrics=None))
    assert_valid_message(reply)
    assert "curl" not in all_text(reply)


def test_live_reply_carries_the_open_live_app_button_and_what_the_thread_missed() -> None:
    snap = make_snapshot(status="live")
    reply = blocks.live_reply(snap, steps=["✓ Data set — iris, 150 rows"])
    assert_valid_message(reply)
    [button] = [e for b in reply.blocks if b["type"] == "actions" for e in b["elements"]]
    assert (button["url"], button["action_id"]) == (snap.url, ActionId.OPEN_APP.value)
    assert "✓ Data set — iris, 150 rows" in all_text(reply)


def test_a_rollup_gives_each_live_job_its_button_and_leaves_out_jobs_stopped_since() -> None:
    live = [
        make_snapshot(status="live", job_id=f"{n:08d}aaaa", url=f"https://apps.example.com/{n}/")
        for n in range(3)
    ]
    failed = make_snapshot(status="failed", job_id="99999999bbbb", error="no signal")
    stopped = make_snapshot(status="cancelled", job_id="88888888cccc", model_name="stopped one")
    rollup = blocks.outcomes_rollup([*live, failed, stopped])
    assert rollup is not None
    assert_valid_message(rollup)  # unique action ids, within Block Kit's limits
    urls = [b["accessory"]["url"] for b in rollup.blocks if "accessory" in b]
    assert urls == [snap.url for snap in live]
    text = all_text(rollup)
    assert "3 live, 1 failed" in text and "no signal" in text and "stopped one" not in text
    assert blocks.outcomes_rollup([stopped]) is None


# --- command answers -----------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    message = blocks.help_message()
    assert_valid_message(message)
    text = all_text(message)
    for command in (
        "`/train`",
        "/train help",
        "/train status [ID]",
        "/train list",
        "/train cancel ID",
        "/train retry ID",
        "/train logs ID",
    ):
        assert command in text


def test_status_message_while_running() -> None:
    message = blocks.status_message(make_snapshot(status="training"))
    assert_valid_message(message)
    text = all_text(message)
    assert "Training" in text and "1m 05s" in text


def test_status_message_when_live_and_failed() -> None:
    live = all_text(blocks.status_message(make_snapshot(status="live")))
    assert "accuracy 0.967 (baseline 0.333)" in live
    assert "<https://apps.example.com/j/01234567/|" in live
    failed = blocks.status_message(make_snapshot(status="failed", error=EVIL * 300))
    assert_valid_message(failed)
    assert "&lt;!channel&gt;" in all_text(failed)


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_status_message_is_valid_for_every_status(status: str) -> None:
    assert_valid_message(blocks.status_message(make_snapshot(status=status)))


def test_list_message_lines() -> None:
    snaps = [
        make_snapshot(status="live", short_id="aaaa1111", model_name="one"),
        make_snapshot(status="failed", short_id="bbbb2222", model_name="two"),
    ]
    message = blocks.list_message(snaps, "C0123ABC")
    assert_valid_message(message)
    text = all_text(message)
    assert "<#C0123ABC>" in text
    assert "`aaaa1111` ✅ *one*" in text and "<https://apps.example.com/j/01234567/|" in text
    assert "`bbbb2222` ❌ *two*" in text


def test_list_message_empty() -> None:
    message = blocks.list_message([], "C0123ABC")
    assert_valid_message(message)
    assert "No jobs" in message.text and "/train" in message.text


def test_list_message_with_200_long_jobs_stays_within_limits() -> None:
    snaps = [
        make_snapshot(status=ALL_STATUSES[i % len(ALL_STATUSES)], model_name=EVIL * 10)
        for i in range(200)
    ]
    message = blocks.list_message(snaps, "C0123ABC", total=1000)
    assert_valid_message(message)
    assert "…and 800 older jobs not shown." in all_text(message)
    # More lines than 48 sections hold: the rest are counted as not shown.
    many = blocks.list_message(snaps * 20, "C0123ABC")
    assert_valid_message(many)
    shown = sum(b["text"]["text"].count("\n") + 1 for b in many.blocks[1:-1])
    assert f"…and {4000 - shown} older jobs not shown." in all_text(many)


def test_list_message_counts_the_older_jobs_not_shown() -> None:
    snaps = [make_snapshot(short_id=f"job{i:05d}") for i in range(3)]
    message = blocks.list_message(snaps, "C0123ABC", total=10)
    assert_valid_message(message)
    assert "…and 7 older jobs not shown." in all_text(message)
    assert "not shown" not in all_text(blocks.list_message(snaps, "C0123ABC", total=3))
    assert "not shown" not in all_text(blocks.list_message(snaps, "C0123ABC"))


def test_logs_message() -> None:
    lines = [f"epoch {i} loss 0.{i:03d}" for i in range(40)]
    message = blocks.logs_message(make_snapshot(), lines, total=1200)
    assert_valid_message(message)
    text = all_text(message)
    assert "showing the last 40 of 1200 lines" in text
    assert "epoch 39" in text and "epoch 0 " in text


def test_logs_message_trims_long_logs_from_the_top() -> None:
    lines = [f"{i} " + "<&>" * 300 for i in range(300)]
    message = blocks.logs_message(make_snapshot(), lines, total=300)
    assert_valid_message(message)
    shown = int(re.search(r"showing the last (\d+) of 300", message.text).group(1))  # type: ignore[union-attr]
    assert 0 < shown < 300
    assert "299 " in message.blocks[1]["text"]["text"]


def test_logs_message_without_lines() -> None:
    message = blocks.logs_message(make_snapshot(), [], total=0)
    assert_valid_message(message)
    assert "no log lines" in message.text


def test_error_message_escapes() -> None:
    message = blocks.error_message(f"No job with id {EVIL}.")
    assert_valid_message(message)
    assert "&lt;!channel&gt;" in message.text
    assert_valid_message(blocks.error_message("x" * 10_000))


# --- App Home ------------------------------------------------------------------------------


def test_home_view() -> None:
    snaps = [make_snapshot(status=s) for s in ALL_STATUSES]
    view = blocks.home_view(snaps)
    assert_valid_view(view)
    assert view["type"] == "home"
    assert "/train" in json.dumps(view)
    links = [
        n for n in _walk(view["blocks"]) if n.get("type") == "button" and n.get("url") is not None
    ]
    assert [b["url"] for b in links] == ["https://apps.example.com/j/01234567/"]
    assert links[0]["action_id"].startswith(ActionId.OPEN_APP)


def test_home_view_with_several_live_apps_keeps_action_ids_unique() -> None:
    snaps = [make_snapshot(status="live", short_id=f"job{i}") for i in range(5)]
    view = blocks.home_view(snaps)
    assert_valid_view(view)
    ids = [n["action_id"] for n in _walk(view["blocks"]) if n.get("type") == "button"]
    assert len(ids) == len(set(ids)) == 5


def test_home_view_empty_and_huge() -> None:
    assert_valid_view(blocks.home_view([]))
    snaps = [
        make_snapshot(status=ALL_STATUSES[i % len(ALL_STATUSES)], model_name=EVIL * 10)
        for i in range(200)
    ]
    view = blocks.home_view(snaps)
    assert_valid_view(view)
    assert len(view["blocks"]) <= 100
    assert "older jobs not shown" in json.dumps(view)


def test_home_view_counts_the_older_jobs_not_shown() -> None:
    snaps = [make_snapshot(short_id=f"job{i:05d}") for i in range(3)]
    view = blocks.home_view(snaps, total=5)
    assert_valid_view(view)
    assert "…and 2 older jobs not shown." in json.dumps(view, ensure_ascii=False)
    assert "not shown" not in json.dumps(blocks.home_view(snaps, total=3))


# --- text helpers --------------------------------------------------------------------------


def test_escape() -> None:
    assert escape("a & <b> c") == "a &amp; &lt;b&gt; c"
    clipped = escape("&" * 100, 22)
    assert len(clipped) <= 22 and clipped.endswith("…")
    assert clipped[:-1] == "&amp;" * 4


def test_clip_mrkdwn_never_leaves_broken_markup() -> None:
    text = "a" * 90 + "<https://example.com|link>" + "b" * 100
    clipped = clip_mrkdwn(text, 100)
    assert len(clipped) <= 100 and "<" not in clipped
    fenced = clip_mrkdwn("```\n" + "x" * 200 + "\n```", 100)
    assert len(fenced) <= 100 and fenced.count("```") == 2
    entity = clip_mrkdwn("a" * 94 + "&amp;" + "b" * 20, 100)
    assert "&am" not in entity.replace("&amp;", "")


def test_code_block_keeps_the_last_lines() -> None:
    block, shown = code_block([str(i) for i in range(1000)], 200)
    assert len(block) <= 200
    assert block.startswith("```\n…\n") and block.endswith("\n999\n```")
    assert shown == block.count("\n") - 2


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42, "42s"), (65, "1m 05s"), (3600, "1h 00m"), (7380, "2h 03m")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_metric() -> None:
    assert format_metric({"metric": "accuracy", "score": 0.96667, "baseline": 1 / 3}) == (
        "accuracy 0.967 (baseline 0.333)"
    )
    assert format_metric({"metric": "r2", "score": 0.5}) == "r2 0.500"
    assert format_metric(None) is None
    assert format_metric({"metric": "r2", "score": "high"}) is None


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.com/app/", True),
        ("http://127.0.0.1:8000/", True),
        ("ftp://example.com", False),
        ("javascript:alert(1)", False),
        ("https://", False),
        ("https://example.com/a b", False),
        ("https://example.com/" + "a" * 3000, False),
        (None, False),
    ],
)
def test_safe_url(url: str | None, ok: bool) -> None:
    assert safe_url(url) == (url if ok else None)


@pytest.mark.parametrize(
    ("ahead", "reason", "says"),
    [
        (None, None, "a worker is starting it"),
        (0, None, "next in line"),
        (2, None, "2 ahead of it in the queue"),
        (0, "1 of this person's jobs are running", "Waiting because 1 of this person's jobs"),
    ],
)
def test_a_queued_card_shows_its_place_and_why_it_waits(
    ahead: int | None, reason: str | None, says: str
) -> None:
    card = blocks.job_card(
        make_snapshot(status=JobStatus.QUEUED, queue_ahead=ahead, wait_reason=reason)
    )
    text = json.dumps(card.as_kwargs())
    assert says in text
    assert message_block_errors(card.as_kwargs()["blocks"]) == []
