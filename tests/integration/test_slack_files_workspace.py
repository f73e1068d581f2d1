"""An upload is read with the token of the workspace it came from, in whichever process runs
the job (a `trainbot worker` has no Slack request to take a token from)."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient

from bot.settings import SlackSettings
from bot.slack_client import build_web_client
from bot.slack_files import SlackFileSource
from pipeline.errors import DatasetError
from tests.fakes.slack_api import DOWNLOAD, FakeSlack

CSV = b"a,b,label\n1,2,x\n3,4,y\n"


def test_an_upload_is_read_with_its_workspaces_token_and_only_while_it_is_installed() -> None:
    with FakeSlack() as slack:
        slack.add_file("F0CSV1", "data.csv", CSV)
        settings = SlackSettings(SLACK_API_URL=slack.api_url)
        installed = {"T1": build_web_client(settings, token=slack.token)}
        asked: list[tuple[str | None, str | None]] = []

        def client_for(team_id: str | None, enterprise_id: str | None) -> WebClient | None:
            asked.append((team_id, enterprise_id))
            return installed.get(team_id or "")

        files = SlackFileSource(client_for, api_url=slack.api_url)
        data = files.fetch("F0CSV1/data.csv", max_bytes=10_000, team_id="T1", enterprise_id="E1")
        assert data.content == CSV and asked == [("T1", "E1")]
        (download,) = slack.calls_to(DOWNLOAD)
        assert download.headers["authorization"] == f"Bearer {slack.token}"
        with pytest.raises(DatasetError, match="no longer installed in the workspace"):
            files.fetch("F0CSV1/data.csv", max_bytes=10_000, team_id="T2")
