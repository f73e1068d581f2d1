"""Many workspaces end to end: the OAuth install against the fake Slack (oauth.v2.access),
each workspace seeing and acting on only its own jobs, and an uninstall stopping them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy.engine import Engine

from bot.ids import ActionId
from bot.manifest import BOT_SCOPES
from bot.oauth import client_for, installation_store
from bot.settings import INSTALL_PATH, REDIRECT_PATH
from storage import queries
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import JobStatus
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_oauth import AUTHORIZE_URL
from tests.support.oauth_bot import (
    REDIRECT_URL,
    bot_token,
    command,
    event,
    in_team,
    install,
    running_oauth_bot,
)
from tests.support.slack_bot import API_TOKEN, BotHarness, jobs
from tests.support.slack_payloads import block_action, train_form, view_submission

STATE_COOKIE = "slack-app-oauth-state"  # slack_sdk/oauth/state_utils (default_cookie_name)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(per_channel_interval=0.0) as fake:
        # Two workspaces, each with a channel and a person of its own.
        fake.add_channel("CA", team_id="TA", member=True)
        fake.add_channel("CB", team_id="TB", member=True)
        fake.add_user("UA", team_id="TA")
        fake.add_user("UB", team_id="TB")
        yield fake


@pytest.fixture
def bot(sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack) -> Iterator[BotHarness]:
    with running_oauth_bot(sqlite_engine, tmp_path, fake) as harness:
        yield harness


def submit_job(bot: BotHarness, *, team_id: str, user: str, channel: str, name: str) -> TrainingJob:
    """A job submitted from the /train form in a workspace, as Slack sends it."""
    before = {job.id for job in jobs(bot)}
    assert command(bot, "", team_id=team_id, user=user, channel=channel) == ""
    opened = bot.slack.wait_for(
        lambda: [v for v in bot.slack.views if v["method"] == "views.open"][len(before) :]
    )
    payload = view_submission(opened[0]["view"], train_form(name=name, dataset="iris"), user=user)
    response = bot.sender.interaction(in_team(payload, team_id))
    assert response.status_code == 200 and response.text == "", response.text
    (job,) = [job for job in jobs(bot) if job.id not in before]
    return job


def status_of(bot: BotHarness, job: TrainingJob) -> JobStatus:
    with session_scope(bot.engine) as session:
        found = queries.get_job(session, job_id=job.id)
    assert found is not None
    return found.job_status


# -- installing -----------------------------------------------------------------------------------


def test_install_exchanges_the_code_and_stores_the_workspace(
    engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    with running_oauth_bot(engine, tmp_path, fake) as bot:
        start = httpx.get(bot.base_url + INSTALL_PATH)
        assert start.status_code == 302
        location = start.headers["location"]
        assert location.startswith(AUTHORIZE_URL + "?")
        query = parse_qs(urlsplit(location).query)
        assert query["client_id"] == [fake.oauth.client_id]
        assert query["scope"] == [",".join(BOT_SCOPES)]  # the manifest's scopes, one list
        assert query["redirect_uri"] == [REDIRECT_URL]
        cookie = start.headers["set-cookie"]
        assert cookie.startswith(f"{STATE_COOKIE}={query['state'][0]};")
        assert "HttpOnly" in cookie and "Secure" in cookie

        installed = install(bot, team_id="TA")
        assert installed.page.status_code == 200
        assert "TrainBot is installed in Workspace TA" in installed.page.text
        (exchange,) = fake.calls_to("oauth.v2.access")
        assert exchange.headers["authorization"].startswith("Basic ")  # not in the form
        assert exchange.params["redirect_uri"] == REDIRECT_URL
        # Stored in this database (SQLite and PostgreSQL), with the workspace's own token.
        assert bot_token(bot, "TA") == fake.oauth.by_team["TA"].bot_token
        store = installation_store(bot.runtime.ctx.slack, engine)
        stored = store.find_installation(enterprise_id=None, team_id="TA")
        assert stored is not None and stored.bot_scopes == sorted(BOT_SCOPES)
        assert stored.user_id == "U0ADMIN"


def test_a_replayed_or_forged_state_gets_a_page_and_installs_nothing(
    bot: BotHarness, fake: FakeSlack
) -> None:
    installed = install(bot, team_id="TA")
    assert installed.page.status_code == 200
    exchanges = len(fake.calls_to("oauth.v2.access"))
    redirect = bot.base_url + REDIRECT_PATH

    # A fresh install link, approved in Slack, but its redirect tampered with.
    back = fake.oauth.approve(
        httpx.get(bot.base_url + INSTALL_PATH).headers["location"], team_id="TB", user_id="UB"
    )
    query = parse_qs(urlsplit(back).query)
    code, state = query["code"][0], query["state"][0]
    pages = {
        # A state the bot never issued, with a cookie to match: not in the state store.
        "forged": httpx.get(
            f"{redirect}?code={code}&state=forged", headers={"Cookie": f"{STATE_COOKIE}=forged"}
        ),
        # A real state, from a browser that did not open the install link.
        "no cookie": httpx.get(f"{redirect}?code={code}&state={state}"),
        "denied": httpx.get(f"{redirect}?error=access_denied&state={state}"),
    }
    assert pages["forged"].status_code == 401
    assert "used already or has expired" in pages["forged"].text
    assert pages["no cookie"].status_code == 400
    assert "opened in another browser" in pages["no cookie"].text
    assert "cancelled in Slack" in pages["denied"].text
    for page in pages.values():
        assert page.headers["content-type"].startswith("text/html")
        assert "TrainBot was not installed" in page.text and "Traceback" not in page.text
    assert len(fake.calls_to("oauth.v2.access")) == exchanges  # no code was exchanged
    assert bot_token(bot, "TB") is None


def test_the_installed_page_shows_the_workspace_name_as_text(bot: BotHarness) -> None:
    installed = install(bot, team_id="TA", team_name="<script>alert(1)</script>")
    assert installed.page.status_code == 200
    assert "<script>" not in installed.page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in installed.page.text


def test_the_same_redirect_twice_is_refused_the_second_time(
    bot: BotHarness, fake: FakeSlack
) -> None:
    with httpx.Client(base_url=bot.base_url) as browser:
        start = browser.get(INSTALL_PATH)
        back = fake.oauth.approve(start.headers["location"], team_id="TA", user_id="UA")
        cookie = {"Cookie": start.headers["set-cookie"].split(";")[0]}
        first = browser.get(f"{REDIRECT_PATH}?{urlsplit(back).query}", headers=cookie)
        again = browser.get(f"{REDIRECT_PATH}?{urlsplit(back).query}", headers=cookie)
    assert first.status_code == 200
    assert again.status_code == 401 and "used already or has expired" in again.text
    assert len(fake.calls_to("oauth.v2.access")) == 1


# -- two workspaces -------------------------------------------------------------------------------


@pytest.fixture
def two(bot: BotHarness) -> tuple[BotHarness, TrainingJob, TrainingJob]:
    install(bot, team_id="TA")
    install(bot, team_id="TB")
    a = submit_job(bot, team_id="TA", user="UA", channel="CA", name="Alpha")
    b = submit_job(bot, team_id="TB", user="UB", channel="CB", name="Beta")
    return bot, a, b


def test_a_submission_records_its_workspace_and_uses_its_token(
    two: tuple[BotHarness, TrainingJob, TrainingJob],
) -> None:
    bot, a, b = two
    assert (a.team_id, a.enterprise_id, b.team_id) == ("TA", None, "TB")
    opens = bot.slack.calls_to("views.open")
    tokens = [call.headers["authorization"] for call in opens]
    assert tokens == [
        f"Bearer {bot.slack.oauth.by_team['TA'].bot_token}",
        f"Bearer {bot.slack.oauth.by_team['TB'].bot_token}",
    ]


def test_commands_from_another_workspace_never_reach_a_job(
    two: tuple[BotHarness, TrainingJob, TrainingJob],
) -> None:
    bot, a, b = two
    with session_scope(bot.engine) as session:  # an ended job of A, for retry
        queries.transition(session, job_id=a.id, to=JobStatus.FAILED, error="boom")
    # In its own workspace the job is there (so the refusals below are the scope's doing).
    own = command(bot, f"status {a.short_id}", team_id="TA", user="UA", channel="CA")
    assert "No job has the id" not in own
    # Exactly the answer for an id that names no job at all, with the id put in.
    unknown = "0123abcd" if not a.id.startswith("0123abcd") else "fedc4321"
    nothing = command(bot, f"status {unknown}", team_id="TB", user="UB", channel="CB")
    assert nothing.endswith(f"No job has the id {unknown}.")
    for ref in (a.short_id, a.id):
        for typed in ("status", "cancel", "retry", "logs", "extend"):
            answer = command(bot, f"{typed} {ref}", team_id="TB", user="UB", channel="CB")
            assert answer == nothing.replace(unknown, ref), (typed, ref, answer)
    # The whole answer (text and blocks): even listing A's channel from B shows nothing of A.
    listed = bot.sender.command("list", user="UB", channel="CA", team_id="TB").text
    assert "No jobs in this channel yet" in listed and a.short_id not in listed
    listed = bot.sender.command("list", user="UB", channel="CB", team_id="TB").text
    assert b.short_id in listed and a.short_id not in listed
    listed = bot.sender.command("list", user="UA", channel="CA", team_id="TA").text
    assert a.short_id in listed and b.short_id not in listed
    assert status_of(bot, a) == JobStatus.FAILED
    assert len(jobs(bot)) == 2  # nothing retried


def test_buttons_carrying_another_workspace_job_are_refused(
    two: tuple[BotHarness, TrainingJob, TrainingJob],
) -> None:
    bot, a, _ = two
    for action in (ActionId.CANCEL_JOB, ActionId.RETRY_JOB, ActionId.EXTEND_APP):
        before = len(bot.slack.ephemeral)
        click = block_action(action.value, a.id, user="UB", channel="CB")
        response = bot.sender.interaction(in_team(click, "TB"))
        assert response.status_code == 200
        told = bot.slack.wait_for(lambda: bot.slack.ephemeral[before:])  # noqa: B023
        assert told[0]["channel"] == "CB" and told[0]["user"] == "UB"
        assert told[0]["text"].endswith(f"no job has the id {a.id}."), (action, told[0])
    assert status_of(bot, a) == JobStatus.QUEUED
    assert len(jobs(bot)) == 2
    # The same click from A's own workspace does cancel it.
    click = block_action(ActionId.CANCEL_JOB.value, a.id, user="UA", channel="CA")
    assert bot.sender.interaction(in_team(click, "TA")).status_code == 200
    bot.slack.wait_for(lambda: status_of(bot, a) == JobStatus.CANCELLED)


def test_app_home_lists_only_the_workspace_jobs(
    two: tuple[BotHarness, TrainingJob, TrainingJob],
) -> None:
    bot, a, b = two
    # In Enterprise Grid one person has one id (W...) in every workspace of the org: their
    # Home in each workspace lists that workspace's jobs only.
    person = "W0SHARED"
    in_a = submit_job(bot, team_id="TA", user=person, channel="CA", name="Theirs in A")
    in_b = submit_job(bot, team_id="TB", user=person, channel="CB", name="Theirs in B")
    shown = {}
    for team, job, other in (("TA", in_a, in_b), ("TB", in_b, in_a)):
        before = len(bot.slack.calls_to("views.publish"))
        home = {"type": "app_home_opened", "user": person, "channel": "D1", "tab": "home"}
        assert event(bot, home, team_id=team).status_code == 200
        bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.publish")) > before)  # noqa: B023
        (published,) = [v for v in bot.slack.views if v["method"] == "views.publish"][before:]
        shown[team] = json.dumps(published["view"]["blocks"])
        assert job.short_id in shown[team] and other.short_id not in shown[team], team
    assert a.short_id not in shown["TA"]  # another person's job, though in the workspace
    assert b.short_id not in shown["TB"]


def test_the_status_api_is_operator_wide_unless_a_team_is_named(
    two: tuple[BotHarness, TrainingJob, TrainingJob],
) -> None:
    bot, a, _ = two
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    url = f"{bot.base_url}/api/training-jobs/{a.id}/status"
    assert httpx.get(url, headers=auth).json()["id"] == a.id
    assert httpx.get(url, params={"team_id": "TA"}, headers=auth).status_code == 200
    other = httpx.get(url, params={"team_id": "TB"}, headers=auth)
    assert other.status_code == 404
    assert other.json() == {"error": f"no job has the id {a.id}"}


# -- uninstalling ---------------------------------------------------------------------------------


def test_uninstall_removes_the_installation_and_stops_the_workspace_jobs(
    two: tuple[BotHarness, TrainingJob, TrainingJob],
) -> None:
    bot, a, b = two
    a2 = submit_job(bot, team_id="TA", user="UA", channel="CA", name="Alpha two")
    bot.slack.oauth.uninstall("TA")  # Slack revokes the token, then tells the app
    assert event(bot, {"type": "app_uninstalled"}, team_id="TA").status_code == 200
    bot.slack.wait_for(
        lambda: {status_of(bot, a), status_of(bot, a2)} == {JobStatus.CANCELLED}, timeout=10
    )
    assert status_of(bot, b) == JobStatus.QUEUED
    assert bot_token(bot, "TA") is None and bot_token(bot, "TB") is not None
    store = installation_store(bot.runtime.ctx.slack, bot.engine)
    assert store.find_installation(enterprise_id=None, team_id="TA") is None
    # The notifier's way to a workspace: none for A any more, B's own token for B.
    clients = client_for(bot.runtime.ctx.slack, bot.engine, bot.runtime.client)
    assert clients("TA", None) is None
    b_client = clients("TB", None)
    assert b_client is not None and b_client.token == bot.slack.oauth.by_team["TB"].bot_token
    with session_scope(bot.engine) as session:
        finished = queries.list_events(session, job_id=a.id, kinds=["finished"])
    assert finished[-1].data == {"status": "cancelled", "by": ""}


def test_a_revoked_bot_token_stops_the_workspace_but_a_user_token_does_not(
    two: tuple[BotHarness, TrainingJob, TrainingJob],
) -> None:
    bot, a, b = two
    users_only = {"type": "tokens_revoked", "tokens": {"oauth": ["UA"], "bot": []}}
    assert event(bot, users_only, team_id="TA").status_code == 200
    time.sleep(0.5)  # the listener runs after the ack; give it the time to do nothing
    assert status_of(bot, a) == JobStatus.QUEUED and bot_token(bot, "TA") is not None

    bot_revoked = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["U0BOT0001"]}}
    assert event(bot, bot_revoked, team_id="TA").status_code == 200
    bot.slack.wait_for(lambda: status_of(bot, a) == JobStatus.CANCELLED, timeout=10)
    assert bot_token(bot, "TA") is None
    assert status_of(bot, b) == JobStatus.QUEUED and bot_token(bot, "TB") is not None
