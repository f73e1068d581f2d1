"""The fake Slack's OAuth side is as strict as Slack's (tests/fakes/slack_oauth.py cites the
rules): oauth.v2.access, per-workspace tokens, and conversations of one workspace only.
And bot/oauth.py's client_for gives each workspace its own token, and none once removed."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import Installation
from sqlalchemy.engine import Engine

from bot.oauth import InstalledClients, client_for, installation_store, single_workspace_clients
from bot.settings import SlackSettings
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_oauth import AUTHORIZE_URL, CODE_LIFETIME_SECONDS, ConsentRefused
from tests.support.clock import HandClock

REDIRECT = "https://trainbot.example/slack/oauth_redirect"


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def fake(clock: HandClock) -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.oauth.clock = clock
        fake.oauth.redirect_urls = [REDIRECT]
        yield fake


def authorize_url(
    fake: FakeSlack, *, redirect: str | None = REDIRECT, scope: str = "chat:write"
) -> str:
    url = f"{AUTHORIZE_URL}?state=s1&client_id={fake.oauth.client_id}&scope={scope}&user_scope="
    return url + (f"&redirect_uri={redirect}" if redirect else "")


def code_for(fake: FakeSlack, team_id: str, **kwargs: str | None) -> str:
    back = fake.oauth.approve(authorize_url(fake, **kwargs), team_id=team_id, user_id="U9")
    query = parse_qs(urlsplit(back).query)
    assert query["state"] == ["s1"]
    return query["code"][0]


def error_of(call: object) -> str:
    with pytest.raises(SlackApiError) as raised:
        call()  # type: ignore[operator]
    return str(raised.value.response["error"])


def test_a_code_is_exchanged_once_for_the_workspace_bot_token(fake: FakeSlack) -> None:
    client = WebClient(base_url=fake.api_url)  # no token: oauth.v2.access takes none
    code = code_for(fake, "TA")
    answer = client.oauth_v2_access(
        client_id=fake.oauth.client_id,
        client_secret=fake.oauth.client_secret,
        code=code,
        redirect_uri=REDIRECT,
    )
    # slack_sdk sends the credentials by HTTP basic auth, as Slack prefers.
    assert fake.calls_to("oauth.v2.access")[0].headers["authorization"].startswith("Basic ")
    assert answer["token_type"] == "bot" and answer["team"]["id"] == "TA"
    token = answer["access_token"]
    assert token == fake.oauth.by_team["TA"].bot_token and token != fake.token
    assert WebClient(token=token, base_url=fake.api_url).auth_test()["team_id"] == "TA"
    again = lambda: client.oauth_v2_access(  # noqa: E731
        client_id=fake.oauth.client_id,
        client_secret=fake.oauth.client_secret,
        code=code,
        redirect_uri=REDIRECT,
    )
    assert error_of(again) == "invalid_code"


def test_the_exchange_refuses_what_slack_refuses(fake: FakeSlack, clock: HandClock) -> None:
    client = WebClient(base_url=fake.api_url)
    oauth = fake.oauth
    code = code_for(fake, "TA")

    def exchange(**overrides: str | None) -> str:
        args = {
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
            "code": code,
            "redirect_uri": REDIRECT,
        } | overrides
        return error_of(lambda: client.oauth_v2_access(**args))  # type: ignore[arg-type]

    assert exchange(client_id="9999.9999") == "invalid_client_id"
    assert exchange(client_secret="wrong") == "bad_client_secret"
    assert exchange(code="code-made-up") == "invalid_code"
    assert exchange(redirect_uri="https://elsewhere.example/cb") == "bad_redirect_uri"
    assert exchange(redirect_uri=None) == "bad_redirect_uri"  # one was sent to the consent page
    clock.now += CODE_LIFETIME_SECONDS + 1
    assert exchange() == "invalid_code"  # ten minutes on
    assert "TA" not in oauth.by_team


def test_form_field_credentials_and_no_redirect_uri(fake: FakeSlack) -> None:
    code = code_for(fake, "TB", redirect=None)
    answer = WebClient(base_url=fake.api_url).api_call(
        "oauth.v2.access",
        data={
            "client_id": fake.oauth.client_id,
            "client_secret": fake.oauth.client_secret,
            "code": code,
        },
    )
    assert answer["ok"] and answer["team"]["id"] == "TB"


def test_the_consent_page_refuses_a_wrong_client_or_redirect(fake: FakeSlack) -> None:
    with pytest.raises(ConsentRefused, match="bad_redirect_uri"):
        fake.oauth.approve(
            authorize_url(fake, redirect="https://evil.example/cb"), team_id="TA", user_id="U1"
        )
    with pytest.raises(ConsentRefused, match="invalid_client_id"):
        fake.oauth.approve(
            authorize_url(fake).replace(fake.oauth.client_id, "0.0"), team_id="TA", user_id="U1"
        )
    with pytest.raises(ConsentRefused, match="invalid_scope"):
        fake.oauth.approve(authorize_url(fake, scope="admin"), team_id="TA", user_id="U1")


def _installed_client(fake: FakeSlack, team_id: str) -> WebClient:
    code = code_for(fake, team_id, scope="chat:write,chat:write.public")
    token = WebClient(base_url=fake.api_url).oauth_v2_access(
        client_id=fake.oauth.client_id,
        client_secret=fake.oauth.client_secret,
        code=code,
        redirect_uri=REDIRECT,
    )["access_token"]
    return WebClient(token=token, base_url=fake.api_url)


def test_a_token_sees_only_its_own_workspace(fake: FakeSlack) -> None:
    a, b = _installed_client(fake, "TA"), _installed_client(fake, "TB")
    fake.add_channel("CA", team_id="TA")
    fake.add_user("UA", team_id="TA")
    assert a.chat_postMessage(channel="CA", text="hi")["ok"]
    assert error_of(lambda: b.chat_postMessage(channel="CA", text="hi")) == "channel_not_found"
    assert error_of(lambda: b.chat_update(channel="CA", ts="1.0", text="x")) == "channel_not_found"
    assert (
        error_of(lambda: b.chat_postEphemeral(channel="CA", user="UA", text="x"))
        == "channel_not_found"
    )
    home = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}],
    }
    assert error_of(lambda: b.views_publish(user_id="UA", view=home)) == "user_not_found"
    assert a.views_publish(user_id="UA", view=home)["ok"]
    # A channel first named by B's bot is B's: A's token cannot post there afterwards.
    assert b.chat_postMessage(channel="CB", text="hi")["ok"]
    assert fake.workspace_of("CB") == "TB"
    assert error_of(lambda: a.chat_postMessage(channel="CB", text="x")) == "channel_not_found"


def test_an_uninstalled_workspace_token_is_revoked(fake: FakeSlack) -> None:
    a = _installed_client(fake, "TA")
    fake.oauth.uninstall("TA")
    assert error_of(a.auth_test) == "token_revoked"


# -- bot/oauth.py: client_for -----------------------------------------------------------------


def _save(store: object, *, team_id: str, token: str, enterprise_id: str | None = None) -> None:
    store.save(  # type: ignore[attr-defined]
        Installation(
            app_id="A0001",
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_token=token,
            bot_id="B1",
            bot_user_id="U0BOT",
            user_id="U9",
            is_enterprise_install=team_id is None,
        )
    )


def test_client_for_gives_each_workspace_its_token_and_none_once_removed(
    engine: Engine, fake: FakeSlack
) -> None:
    slack = SlackSettings(
        SLACK_CLIENT_ID="1111.2222", SLACK_CLIENT_SECRET="s", SLACK_API_URL=fake.api_url
    )
    store = installation_store(slack, engine)
    _save(store, team_id="TA", token="xoxb-a")
    _save(store, team_id="TB", token="xoxb-b")
    _save(store, team_id=None, enterprise_id="E1", token="xoxb-org")  # type: ignore[arg-type]
    clients = client_for(slack, engine, WebClient())
    assert isinstance(clients, InstalledClients)
    a, b = clients("TA", None), clients("TB", None)
    assert a is not None and b is not None
    assert (a.token, b.token) == ("xoxb-a", "xoxb-b")
    assert a.base_url == fake.api_url
    # A workspace of an org that installed the app org-wide uses the org's bot.
    org = clients("T-in-org", "E1")
    assert org is not None and org.token == "xoxb-org"
    assert clients(None, None) is None  # a CLI job belongs to no workspace
    assert clients("TC", None) is None  # never installed

    store.delete_bot(enterprise_id=None, team_id="TA")
    clients.forget("TA", None)
    assert clients("TA", None) is None
    fresh = client_for(slack, engine, WebClient())
    assert fresh("TA", None) is None and fresh("TB", None) is not None


def test_client_for_caches_briefly(engine: Engine) -> None:
    slack = SlackSettings(SLACK_CLIENT_ID="1111.2222", SLACK_CLIENT_SECRET="s")
    store = installation_store(slack, engine)
    _save(store, team_id="TA", token="xoxb-a")
    clock = HandClock()
    clients = InstalledClients(slack, store, ttl=5.0, clock=clock)
    assert clients("TA", None) is not None
    store.delete_bot(enterprise_id=None, team_id="TA")
    assert clients("TA", None) is not None  # within the cache's few seconds
    clock.now += 5.0
    assert clients("TA", None) is None


def test_single_workspace_mode_has_one_client_for_every_job() -> None:
    client = WebClient(token="xoxb-one")
    slack = SlackSettings(SLACK_BOT_TOKEN="xoxb-one", SLACK_CLIENT_ID="1", SLACK_CLIENT_SECRET="2")
    assert not slack.oauth  # a bot token wins: single-workspace mode, exactly as before
    assert single_workspace_clients(client)("TA", None) is client
    assert client_for(slack, None, client)(None, None) is client  # type: ignore[arg-type]
