"""The fake Slack holds each method to its rate-limit tier per workspace, as Slack does
(tests/fakes/slack_tiers.py cites the tiers): the call past the tier's floor in a minute is
answered 429 with the seconds until a slot frees, other workspaces and methods are untouched,
and slack_sdk's retry handler waits it out."""

from __future__ import annotations

import math
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from tests.fakes.slack_api import Call, FakeSlack
from tests.fakes.slack_oauth import AUTHORIZE_URL
from tests.fakes.slack_tiers import TIER_LIMITS, TierWindows
from tests.support.clock import HandClock


def code_for(fake: FakeSlack, team_id: str) -> str:
    scopes = "chat:write,chat:write.public"
    authorize = f"{AUTHORIZE_URL}?state=s&client_id={fake.oauth.client_id}&scope={scopes}"
    back = fake.oauth.approve(authorize, team_id=team_id, user_id="U9")
    return parse_qs(urlsplit(back).query)["code"][0]


def install(fake: FakeSlack, team_id: str) -> WebClient:
    """A second workspace installs the app; its bot token's client."""
    answer = WebClient(base_url=fake.api_url).oauth_v2_access(
        client_id=fake.oauth.client_id,
        client_secret=fake.oauth.client_secret,
        code=code_for(fake, team_id),
    )
    return WebClient(token=answer["access_token"], base_url=fake.api_url)


def refused(call: Callable[[], object]) -> SlackApiError:
    with pytest.raises(SlackApiError) as raised:
        call()
    assert raised.value.response.status_code == 429
    assert raised.value.response["error"] == "ratelimited"
    return raised.value


def retry_after(error: SlackApiError) -> int:
    return int(error.response.headers["Retry-After"])


def test_the_documented_floors_are_the_default() -> None:
    assert TIER_LIMITS["chat.update"] == 50  # Tier 3
    assert TIER_LIMITS["files.completeUploadExternal"] == 100  # Tier 4
    assert TIER_LIMITS["apps.connections.open"] == 1  # Tier 1
    assert "chat.postMessage" not in TIER_LIMITS  # Special: per channel only
    assert TierWindows().window == 60.0


def test_the_51st_chat_update_in_a_minute_waits_for_the_oldest_to_leave() -> None:
    clock = HandClock()
    # The per-channel second is another rule (test_fake_slack.py); off, the tier stands alone.
    with FakeSlack(per_channel_interval=0.0, tier_clock=clock) as fake:
        client = WebClient(token=fake.token, base_url=fake.api_url)
        ts = client.chat_postMessage(channel="C1", text="card")["ts"]
        for n in range(50):
            client.chat_update(channel="C1", ts=ts, text=f"progress {n}")
            clock.now += 0.125  # the 50 spread over 6.25 s (steps exact in binary)
        error = refused(lambda: client.chat_update(channel="C1", ts=ts, text="one too many"))
        # The first update leaves the window 60 s after it came, 6.25 s ago: 53.75 s, rounded up.
        assert retry_after(error) == 54
        assert fake.message("C1", ts)["text"] == "progress 49"  # type: ignore[index]
        assert [c.method for c in fake.tier_limited] == ["chat.update"]
        assert fake.rate_limited == fake.tier_limited

        # Another method in the same workspace, and the same method in another, go ahead.
        assert client.users_info(user="U1")["ok"]
        assert client.chat_postMessage(channel="C1", text="a new message")["ok"]
        other = install(fake, "T0OTHER")
        other_ts = other.chat_postMessage(channel="C2", text="card")["ts"]
        assert other.chat_update(channel="C2", ts=other_ts, text="progress")["ok"]

        clock.now += 52.75  # a second short of the first update's minute
        assert retry_after(refused(lambda: client.chat_update(channel="C1", ts=ts, text="x"))) == 1
        clock.now += 1.0  # the first update has left; the second leaves 0.125 s later
        assert client.chat_update(channel="C1", ts=ts, text="in the window again")["ok"]
        refused(lambda: client.chat_update(channel="C1", ts=ts, text="x"))
        clock.now += 0.125
        assert client.chat_update(channel="C1", ts=ts, text="and again")["ok"]


def test_refused_calls_do_not_count_but_failed_ones_do() -> None:
    clock = HandClock()
    with FakeSlack(tier_limits={"users.info": 2}, tier_clock=clock) as fake:
        client = WebClient(token=fake.token, base_url=fake.api_url)
        fake.add_user("U0ELSEWHERE", team_id="T0OTHER")
        with pytest.raises(SlackApiError) as raised:
            client.users_info(user="U0ELSEWHERE")  # answered, so counted
        assert raised.value.response["error"] == "user_not_found"
        client.users_info(user="U1")
        clock.now += 30.0
        for _ in range(3):
            refused(lambda: client.users_info(user="U1"))
        clock.now += 30.0  # both answered calls have left; the refused ones never came in
        client.users_info(user="U1")
        client.users_info(user="U1")
        assert retry_after(refused(lambda: client.users_info(user="U1"))) == 60
        assert len(fake.tier_limited) == 4


def test_the_app_token_opens_one_connection_a_minute() -> None:
    clock = HandClock()
    with FakeSlack(socket_mode=lambda: "ws://127.0.0.1:1/link", tier_clock=clock) as fake:
        client = WebClient(base_url=fake.api_url)
        assert client.apps_connections_open(app_token=fake.app_token)["ok"]
        clock.now += 59.5
        error = refused(lambda: client.apps_connections_open(app_token=fake.app_token))
        assert retry_after(error) == 1
        clock.now += 0.5
        assert client.apps_connections_open(app_token=fake.app_token)["ok"]


def test_oauth_access_counts_for_the_workspace_being_installed() -> None:
    with FakeSlack(tier_limits={"oauth.v2.access": 1}, tier_clock=HandClock()) as fake:
        install(fake, "T0A")
        install(fake, "T0B")
        refused(lambda: install(fake, "T0A"))


def test_the_sdk_retry_handler_waits_out_the_tier() -> None:
    # A one-second window so the real wait is short: the 429 says Retry-After 1, the SDK sleeps
    # it and the retry is answered.
    with FakeSlack(tier_limits={"users.info": 1}, tier_window_seconds=1.0) as fake:
        client = WebClient(
            token=fake.token,
            base_url=fake.api_url,
            retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)],
        )
        client.users_info(user="U1")
        assert client.users_info(user="U1")["user"]["id"] == "U1"

        calls: list[Call] = fake.calls_to("users.info")
        assert [c.status for c in calls] == [200, 429, 200]
        assert calls[2].at - calls[0].at >= 1.0
        assert fake.tier_limited == [calls[1]]


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    windows = TierWindows({"m": 1}, window=60.0)
    assert windows.retry_after("T", "m", 0.0) is None
    windows.accept("T", "m", 0.0)
    assert windows.retry_after("T", "m", 0.0) == 60
    assert windows.retry_after("T", "m", 58.7) == math.ceil(60.0 - 58.7) == 2
    assert windows.retry_after("T", "m", 59.99) == 1
    assert windows.retry_after("T", "m", 60.0) is None
    assert windows.retry_after("U", "m", 0.0) is None  # another workspace
    assert windows.retry_after("T", "other", 0.0) is None  # a method with no tier
