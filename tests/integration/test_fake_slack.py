"""The fake Slack Web API answers slack_sdk's real WebClient the way Slack does."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from tests.fakes.slack_api import DOWNLOAD, UPLOAD, FakeSlack


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token=fake.token, base_url=fake.api_url)


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(action_id: str, text: str = "Go", **extra: Any) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        **extra,
    }


def modal(title: str = "Train a model", **extra: Any) -> dict[str, Any]:
    name_input = {
        "type": "input",
        "block_id": "name",
        "label": {"type": "plain_text", "text": "Name"},
        "element": {"type": "plain_text_input", "action_id": "name_input"},
    }
    return {
        "type": "modal",
        "callback_id": "train_modal",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Train"},
        "blocks": [name_input],
        **extra,
    }


def error_of(raised: pytest.ExceptionInfo[SlackApiError]) -> str:
    return raised.value.response["error"]


# -- messages ----------------------------------------------------------------------------------


def test_post_update_and_thread_replies_are_recorded(fake: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="Training started")
    fake.per_channel_interval = 0  # this test is about content, not pacing
    reply = client.chat_postMessage(channel="C1", text="50%", thread_ts=parent["ts"])
    client.chat_update(channel="C1", ts=parent["ts"], text="Done", blocks=[section("*Done*")])

    assert re.fullmatch(r"\d{10}\.\d{6}", parent["ts"])
    assert parent["ts"] < reply["ts"]
    current = fake.message("C1", parent["ts"])
    assert current is not None
    assert (current["text"], current["blocks"]) == ("Done", [section("*Done*")])
    assert current["edited"] is not None
    assert [m["text"] for m in fake.replies("C1", parent["ts"])] == ["50%"]
    assert [m["ts"] for m in fake.messages("C1")] == [parent["ts"], reply["ts"]]
    assert [c.method for c in fake.calls] == ["chat.postMessage"] * 2 + ["chat.update"]
    assert fake.rejections == []


def test_update_keeps_what_it_leaves_out_and_clears_empty_values(
    fake: FakeSlack, client: WebClient
) -> None:
    fake.per_channel_interval = 0
    metadata = {"event_type": "job_card", "event_payload": {"job_id": 7}}
    posted = client.chat_postMessage(
        channel="C1", text="a", blocks=[section("a")], metadata=metadata
    )
    client.chat_update(channel="C1", ts=posted["ts"], text="b")
    current = fake.message("C1", posted["ts"])
    assert current is not None
    assert current | {"edited": None} == posted["message"] | {"text": "b"}

    client.chat_update(channel="C1", ts=posted["ts"], text="c", blocks=[], metadata={})
    current = fake.message("C1", posted["ts"])
    assert current is not None and (current["blocks"], current["metadata"]) == (None, None)

    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel="C1", ts="1.000000", text="x")
    assert error_of(raised) == "message_not_found"


def test_ephemeral_messages_and_permalinks(fake: FakeSlack, client: WebClient) -> None:
    answer = client.chat_postEphemeral(
        channel="C1", user="U1", text="Only you", blocks=[section("s")]
    )
    assert fake.ephemeral == [
        {
            "channel": "C1",
            "user": "U1",
            "ts": answer["message_ts"],
            "thread_ts": None,
            "text": "Only you",
            "blocks": [section("s")],
        }
    ]
    posted = client.chat_postMessage(channel="C2", text="card")
    link = client.chat_getPermalink(channel="C2", message_ts=posted["ts"])["permalink"]
    assert link.endswith(f"/archives/C2/p{posted['ts'].replace('.', '')}")


def invalid_block_payloads() -> dict[str, list[dict[str, Any]]]:
    return {
        "51 blocks": [{"type": "divider"}] * 51,
        "section text of 3001": [section("x" * 3001)],
        "11 section fields": [
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}
        ],
        "empty text": [section("")],
        "header of 151": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        "button text of 76": [section("s", accessory=button("b", "x" * 76))],
        "ftp button url": [{"type": "actions", "elements": [button("b", url="ftp://host/file")]}],
        "relative button url": [{"type": "actions", "elements": [button("b", url="/jobs/7")]}],
        "button url of 3001": [
            {"type": "actions", "elements": [button("b", url="https://x.io/" + "a" * 2990)]}
        ],
        "input block in a message": modal()["blocks"],
        "duplicate action_id": [
            {"type": "actions", "block_id": "one", "elements": [button("cancel_job")]},
            {"type": "actions", "block_id": "two", "elements": [button("cancel_job")]},
        ],
        "duplicate block_id": [section("a", block_id="card"), section("b", block_id="card")],
        "action_id of 256": [{"type": "actions", "elements": [button("a" * 256)]}],
        "11 context elements": [
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}
        ],
        "unknown block type": [{"type": "sparkline"}],
        "image without alt_text": [{"type": "image", "image_url": "https://x.io/a.png"}],
    }


@pytest.mark.parametrize("case", sorted(invalid_block_payloads()))
def test_blocks_slack_would_refuse_are_refused(
    case: str, fake: FakeSlack, client: WebClient
) -> None:
    blocks = invalid_block_payloads()[case]
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="fallback", blocks=blocks)

    assert error_of(raised) == "invalid_blocks"
    assert raised.value.response["errors"]
    assert "json-pointer:/blocks" in raised.value.response["errors"][0]
    assert [(r.method, r.error) for r in fake.rejections] == [
        ("chat.postMessage", "invalid_blocks")
    ]
    assert fake.messages("C1") == []


def test_blocks_are_checked_in_updates_ephemerals_and_form_bodies(
    fake: FakeSlack, client: WebClient
) -> None:
    fake.per_channel_interval = 0
    posted = client.chat_postMessage(channel="C1", text="ok")
    too_long = [section("x" * 3001)]
    with pytest.raises(SlackApiError):
        client.chat_update(channel="C1", ts=posted["ts"], text="t", blocks=too_long)
    with pytest.raises(SlackApiError):
        client.chat_postEphemeral(channel="C1", user="U1", text="t", blocks=too_long)
    form = {"channel": "C1", "text": "t", "blocks": json.dumps(too_long)}
    with pytest.raises(SlackApiError):
        client.api_call("chat.postMessage", params=form)

    assert [r.method for r in fake.rejections] == [
        "chat.update",
        "chat.postEphemeral",
        "chat.postMessage",
    ]
    assert fake.calls[-1].headers["content-type"] == "application/x-www-form-urlencoded"
    assert fake.message("C1", posted["ts"])["text"] == "ok"  # type: ignore[index]


def test_rich_valid_blocks_are_accepted(fake: FakeSlack, client: WebClient) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Job 7: churn model"}},
        section("*Training* :hourglass:", block_id="status", accessory=button("open_live_app")),
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*k{i}*\nv"} for i in range(10)],
        },
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "started 2 min ago"}]},
        {
            "type": "actions",
            "block_id": "job_card_actions",
            "elements": [
                button("cancel_job", "Cancel", style="danger", value="7"),
                button("view_app", "Open app", url="https://app.example.com/7"),
            ],
        },
        {"type": "image", "image_url": "https://x.io/loss.png", "alt_text": "loss curve"},
        {
            "type": "rich_text",
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": "log"}]}
            ],
        },
    ]
    client.chat_postMessage(channel="C1", text="Job 7", blocks=blocks)
    client.chat_postMessage(channel="C2", text="50 dividers", blocks=[{"type": "divider"}] * 50)
    assert fake.rejections == []
    assert fake.messages("C1")[0]["blocks"] == blocks


def test_text_limits_and_empty_messages(fake: FakeSlack, client: WebClient) -> None:
    client.chat_postMessage(channel="C1", text="x" * 40_000)
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C2", text="x" * 40_001)
    assert error_of(raised) == "msg_too_long"
    with pytest.raises(SlackApiError) as raised, pytest.warns(UserWarning, match="`text`"):
        client.chat_postMessage(channel="C3", text="")
    assert error_of(raised) == "no_text"


@pytest.mark.parametrize(
    "metadata",
    [
        {"event_type": "job_card"},
        {"event_type": "job_card", "event_payload": "7"},
        {"event_type": "", "event_payload": {}},
        {"event_payload": {"job_id": 7}},
    ],
)
def test_malformed_metadata_is_refused(
    metadata: dict[str, Any], fake: FakeSlack, client: WebClient
) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="t", metadata=metadata)
    assert error_of(raised) == "invalid_metadata_format"
    assert fake.rejections[0].error == "invalid_metadata_format"


def test_well_formed_metadata_is_kept(fake: FakeSlack, client: WebClient) -> None:
    metadata = {"event_type": "job_card", "event_payload": {"job_id": 7}}
    posted = client.chat_postMessage(channel="C1", text="t", metadata=metadata)
    assert fake.message("C1", posted["ts"])["metadata"] == metadata  # type: ignore[index]


# -- views -------------------------------------------------------------------------------------


def test_views_open_update_and_push(fake: FakeSlack, client: WebClient) -> None:
    opened = client.views_open(trigger_id="t1", view=modal())["view"]
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal("Step 2"))
    client.views_push(trigger_id="t2", view=modal("Details"))

    assert updated["view"]["id"] == opened["id"]
    assert fake.view(opened["id"])["title"]["text"] == "Step 2"  # type: ignore[index]
    assert [(v["method"], v["view"]["title"]["text"]) for v in fake.views] == [
        ("views.open", "Train a model"),
        ("views.update", "Step 2"),
        ("views.push", "Details"),
    ]
    with pytest.raises(SlackApiError) as raised:
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal())
    assert error_of(raised) == "hash_conflict"


@pytest.mark.parametrize(
    ("view", "reason"),
    [
        (modal("A title over 24 characters"), "/view/title/text"),
        (modal(submit={"type": "plain_text", "text": "s" * 25}), "/view/submit/text"),
        (modal(private_metadata="m" * 3001), "/view/private_metadata"),
        (modal(blocks=[{"type": "divider"}] * 101), "/view/blocks"),
        ({k: v for k, v in modal().items() if k != "submit"}, "/view/submit"),
        (modal(blocks=[section("x" * 3001)]), "/view/blocks/0/text/text"),
    ],
)
def test_views_slack_would_refuse_are_refused(
    view: dict[str, Any], reason: str, fake: FakeSlack, client: WebClient
) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.views_open(trigger_id="t1", view=view)
    assert error_of(raised) == "invalid_arguments"
    assert any(f"json-pointer:{reason}]" in r for r in fake.rejections[0].reasons)
    assert fake.views == []


def test_trigger_ids_are_single_use_and_can_expire(fake: FakeSlack, client: WebClient) -> None:
    fake.expired_trigger_ids.add("old")
    with pytest.raises(SlackApiError) as raised:
        client.views_open(trigger_id="old", view=modal())
    assert error_of(raised) == "expired_trigger_id"

    client.views_open(trigger_id="t1", view=modal())
    with pytest.raises(SlackApiError) as raised:
        client.views_open(trigger_id="t1", view=modal())
    assert error_of(raised) == "exchanged_trigger_id"

    fake.trigger_ids = {"registered"}
    with pytest.raises(SlackApiError) as raised:
        client.views_open(trigger_id="t2", view=modal())
    assert error_of(raised) == "invalid_trigger_id"
    client.views_open(trigger_id="registered", view=modal())


def test_home_tab_is_published_per_user(fake: FakeSlack, client: WebClient) -> None:
    home = {"type": "home", "blocks": [section("Your jobs")]}
    first = client.views_publish(user_id="U1", view=home)["view"]
    again = client.views_publish(user_id="U1", view={**home, "blocks": [section("None yet")]})
    assert again["view"]["id"] == first["id"]
    assert fake.home_views["U1"]["blocks"] == [section("None yet")]

    with pytest.raises(SlackApiError) as raised:
        client.views_publish(user_id="U1", view={"type": "home", "blocks": [{"type": "nope"}]})
    assert error_of(raised) == "invalid_arguments"


# -- rate limits and injected failures ---------------------------------------------------------


def test_a_second_message_within_a_second_is_rate_limited(
    fake: FakeSlack, client: WebClient
) -> None:
    client.chat_postMessage(channel="C1", text="one")
    client.chat_postMessage(channel="C2", text="another channel is not limited with C1")
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel="C1", ts=fake.messages("C1")[0]["ts"], text="too soon")

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "1"
    assert error_of(raised) == "ratelimited"
    assert [c.method for c in fake.rate_limited] == ["chat.update"]
    assert fake.message("C1", fake.messages("C1")[0]["ts"])["text"] == "one"  # type: ignore[index]


def test_the_sdk_retry_handler_waits_out_the_limit(fake: FakeSlack) -> None:
    client = WebClient(
        token=fake.token,
        base_url=fake.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=5)],
    )
    client.chat_postMessage(channel="C1", text="one")
    client.chat_postMessage(channel="C1", text="two")

    posts = fake.calls_to("chat.postMessage")
    assert [c.status for c in posts] == [200, 429, 200]
    assert posts[2].at - posts[0].at >= 1.0
    assert [m["text"] for m in fake.messages("C1")] == ["one", "two"]


def test_forced_rate_limits_and_failures(fake: FakeSlack, client: WebClient) -> None:
    fake.force_rate_limit("users.info", times=2)
    fake.fail_next("conversations.info", error="channel_not_found")
    for _ in range(2):
        with pytest.raises(SlackApiError) as raised:
            client.users_info(user="U1")
        assert raised.value.response.status_code == 429
    assert client.users_info(user="U1")["user"]["id"] == "U1"

    with pytest.raises(SlackApiError) as raised:
        client.conversations_info(channel="C1")
    assert (raised.value.response.status_code, error_of(raised)) == (200, "channel_not_found")
    assert client.conversations_info(channel="C1")["channel"]["is_member"] is False
    client.conversations_join(channel="C1")
    assert client.conversations_info(channel="C1")["channel"]["is_member"] is True


def test_wait_for_polls_until_the_call_arrives(fake: FakeSlack, client: WebClient) -> None:
    timer = threading.Timer(0.2, lambda: client.chat_postMessage(channel="C1", text="later"))
    timer.start()
    calls = fake.wait_for("chat.postMessage", timeout=5)
    assert calls[0].params["text"] == "later"
    assert fake.wait_for(lambda: fake.messages("C1"))[0]["text"] == "later"
    with pytest.raises(AssertionError, match="views.open"):
        fake.wait_for("views.open", timeout=0.1)
    timer.join()


# -- auth --------------------------------------------------------------------------------------


def test_auth_test_and_bad_tokens(fake: FakeSlack, client: WebClient) -> None:
    assert client.auth_test()["user_id"] == fake.bot_user_id
    with pytest.raises(SlackApiError) as raised:
        WebClient(token="xoxb-wrong", base_url=fake.api_url).chat_postMessage(channel="C", text="t")
    assert error_of(raised) == "invalid_auth"
    with pytest.raises(SlackApiError) as raised:
        WebClient(base_url=fake.api_url).auth_test()
    assert error_of(raised) == "not_authed"
    assert fake.messages("C") == []


def test_unknown_methods_are_refused(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.api_call("chat.postMessageTwice", json={"channel": "C1"})
    assert error_of(raised) == "unknown_method"


# -- files -------------------------------------------------------------------------------------


def test_files_upload_v2_lands_in_the_thread(
    fake: FakeSlack, client: WebClient, tmp_path: Path
) -> None:
    client.conversations_join(channel="C1")  # sharing a file needs membership
    parent = client.chat_postMessage(channel="C1", text="Job 7")
    report = tmp_path / "report.html"
    report.write_bytes(b"<h1>metrics</h1>")
    time.sleep(fake.per_channel_interval)
    answer = client.files_upload_v2(
        channel="C1",
        thread_ts=parent["ts"],
        file=str(report),
        title="Report",
        initial_comment="Here is the report",
    )

    assert fake.uploads == [
        {
            "id": answer["file"]["id"],
            "name": "report.html",
            "title": "Report",
            "content": b"<h1>metrics</h1>",
            "channel": "C1",
            "thread_ts": parent["ts"],
            "initial_comment": "Here is the report",
        }
    ]
    [reply] = fake.replies("C1", parent["ts"])
    assert reply["text"] == "Here is the report"
    assert reply["files"][0]["id"] == answer["file"]["id"]
    info = client.files_info(file=answer["file"]["id"])["file"]
    assert (info["name"], info["size"]) == ("report.html", 16)
    assert [c.method for c in fake.calls[2:]] == [
        "files.getUploadURLExternal",
        UPLOAD,
        "files.completeUploadExternal",
        "files.info",
    ]


def test_upload_of_bytes_and_multipart(fake: FakeSlack, client: WebClient) -> None:
    client.conversations_join(channel="C1")
    client.files_upload_v2(channel="C1", file=b"a,b\n1,2\n", filename="data.csv")
    assert fake.uploads[0]["content"] == b"a,b\n1,2\n"

    url = client.files_getUploadURLExternal(filename="m.csv", length=3)
    httpx.post(url["upload_url"], files={"file": ("m.csv", b"x,y")}).raise_for_status()
    client.files_completeUploadExternal(files=[{"id": url["file_id"], "title": "M"}])
    assert (fake.uploads[1]["content"], fake.uploads[1]["channel"]) == (b"x,y", None)

    with pytest.raises(SlackApiError) as raised:
        client.files_completeUploadExternal(files=[{"id": "F404", "title": "missing"}])
    assert error_of(raised) == "file_not_found"


def test_private_file_download_needs_the_bot_token(fake: FakeSlack, client: WebClient) -> None:
    file = fake.add_file("F123", "data.csv", b"a,b\n1,2\n")
    assert client.files_info(file="F123")["file"]["url_private"] == file["url_private"]
    assert file["url_private"] == f"{fake.base_url}/files/F123/data.csv"

    for url in (file["url_private"], file["url_private_download"]):
        ok = httpx.get(url, headers={"Authorization": f"Bearer {fake.token}"})
        assert (ok.status_code, ok.content) == (200, b"a,b\n1,2\n")
    anonymous = httpx.get(file["url_private"])
    assert anonymous.status_code == 302 and "/signin" in anonymous.headers["location"]
    followed = httpx.get(file["url_private"], follow_redirects=True)
    assert followed.headers["content-type"].startswith("text/html")  # Slack's trap: HTML, 200
    wrong = httpx.get(file["url_private"], headers={"Authorization": "Bearer xoxb-other"})
    assert wrong.status_code == 403
    assert [c.status for c in fake.calls_to(DOWNLOAD)] == [200, 200, 302, 302, 403]


# -- channels and scopes -----------------------------------------------------------------------


def upload_to(client: WebClient, channel: str) -> None:
    client.files_upload_v2(channel=channel, content="a,b\n1,2\n", filename="chart.csv")


def test_sharing_a_file_needs_membership_where_posting_needs_only_chat_write_public(
    fake: FakeSlack, client: WebClient
) -> None:
    fake.per_channel_interval = 0
    client.chat_postMessage(channel="C1", text="posted without being invited")
    with pytest.raises(SlackApiError) as raised:
        upload_to(client, "C1")
    assert error_of(raised) == "not_in_channel"
    assert fake.uploads == []

    joined = client.conversations_join(channel="C1")
    assert joined["channel"]["is_member"] is True and "warning" not in joined
    upload_to(client, "C1")
    assert [u["channel"] for u in fake.uploads] == ["C1"]
    assert client.conversations_join(channel="C1")["warning"] == "already_in_channel"

    fake.remove_bot("C1")
    assert not fake.is_member("C1")
    with pytest.raises(SlackApiError) as raised:
        upload_to(client, "C1")
    assert error_of(raised) == "not_in_channel"


def refused(call: Callable[[], object]) -> str:
    with pytest.raises(SlackApiError) as raised:
        call()
    return error_of(raised)


def test_private_channels_and_dms(fake: FakeSlack, client: WebClient) -> None:
    fake.per_channel_interval = 0
    fake.add_channel("C0SECRET", private=True)
    fake.add_channel("C0INVITED", private=True, member=True)
    for secret in ("C0SECRET", "G0OLD"):  # not invited: the bot cannot even see them
        assert refused(partial(client.chat_postMessage, channel=secret, text="t")) == (
            "channel_not_found"
        )
        assert refused(partial(upload_to, client, secret)) == "channel_not_found"
        assert refused(partial(client.conversations_info, channel=secret)) == "channel_not_found"
    for unjoinable in ("C0SECRET", "C0INVITED", "D0DM", "U1"):
        assert refused(partial(client.conversations_join, channel=unjoinable)) == (
            "method_not_supported_for_channel_type"
        )

    for member in ("C0INVITED", "D0DM", "U1"):  # invited, or the bot's own DMs
        client.chat_postMessage(channel=member, text="t")
        upload_to(client, member)
    assert [u["channel"] for u in fake.uploads] == ["C0INVITED", "D0DM", "U1"]
    assert client.conversations_info(channel="C0INVITED")["channel"]["is_private"] is True

    fake.add_channel("C0OLD", archived=True)
    assert refused(partial(client.chat_postMessage, channel="C0OLD", text="t")) == "is_archived"
    assert refused(partial(client.conversations_join, channel="C0OLD")) == "is_archived"


def test_methods_need_their_scopes() -> None:
    with FakeSlack(scopes={"chat:write", "files:write"}) as fake:
        client = WebClient(token=fake.token, base_url=fake.api_url)
        with pytest.raises(SlackApiError) as raised:
            client.chat_postMessage(channel="C1", text="no chat:write.public")
        assert error_of(raised) == "not_in_channel"
        client.chat_postMessage(channel="U1", text="a DM needs no more")
        for call, needed in (
            (lambda: client.conversations_join(channel="C1"), "channels:join"),
            (lambda: client.files_info(file="F1"), "files:read"),
        ):
            with pytest.raises(SlackApiError) as raised:
                call()
            assert error_of(raised) == "missing_scope"
            assert raised.value.response["needed"] == needed
            assert raised.value.response["provided"] == "chat:write,files:write"
