"""CSV files uploaded in the `/train` modal, downloaded with the bot token.

Slack-hosted file URLs are trusted only on Slack's own hosts (the `SLACK_API_URL` host and
files.slack.com); anything else a file object points at is refused. User-typed URLs never
come here: they go through the pipeline's address guard.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.forms import SLACK_FILE_PREFIX
from pipeline.errors import DatasetError
from pipeline.sources import ExternalData

SLACK_FILE_HOSTS = frozenset({"files.slack.com"})
DOWNLOAD_TIMEOUT = 60.0


# The Slack client of a job's workspace; None: that workspace is no longer installed.
ClientFor = Callable[[str | None, str | None], WebClient | None]


class SlackFileSource:
    """Reads an upload with the token of the workspace it was uploaded in (OAuth: each
    workspace's own bot; SLACK_BOT_TOKEN: the one), in whichever process runs the job."""

    prefix = SLACK_FILE_PREFIX

    def __init__(self, client_for: ClientFor, *, api_url: str) -> None:
        self.client_for = client_for
        self.trusted_hosts = SLACK_FILE_HOSTS | {urlsplit(api_url).hostname or ""}
        # The bot token only travels over https, unless the Web API itself is plain http
        # (a local stand-in of Slack).
        self.schemes = {"https", urlsplit(api_url).scheme}

    def fetch(
        self,
        reference: str,
        *,
        max_bytes: int,
        team_id: str | None = None,
        enterprise_id: str | None = None,
    ) -> ExternalData:
        file_id, _, name = reference.partition("/")
        client = self.client_for(team_id, enterprise_id)
        if client is None:
            raise DatasetError(
                f"the uploaded file {name or file_id} cannot be read: TrainBot is no longer "
                "installed in the workspace it came from."
            )
        try:
            info = client.files_info(file=file_id)["file"]
        except SlackApiError as error:
            raise DatasetError(
                f"Slack would not hand over the uploaded file {name or file_id} "
                f"({error.response.get('error')}); upload it again."
            ) from error
        url = info.get("url_private_download") or info.get("url_private") or ""
        where = urlsplit(url)
        if where.hostname not in self.trusted_hosts or where.scheme not in self.schemes:
            raise DatasetError(f"the uploaded file {name} is not stored on Slack; upload it again.")
        content = self._download(url, name, max_bytes, client.token or "")
        return ExternalData(content=content, name=name or info.get("name") or f"{file_id}.csv")

    def _download(self, url: str, name: str, max_bytes: int, token: str) -> bytes:
        headers = {"Authorization": f"Bearer {token}"}
        chunks: list[bytes] = []
        size = 0
        try:
            with httpx.stream(
                "GET",
                url,
                headers=headers,
                timeout=DOWNLOAD_TIMEOUT,
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment sees the bot token
            ) as response:
                if response.status_code != 200:
                    raise DatasetError(
                        f"downloading {name} from Slack failed (HTTP {response.status_code}); "
                        "check that the app has the files:read scope, then upload it again."
                    )
                if "text/html" in response.headers.get("content-type", ""):
                    raise DatasetError(
                        f"Slack answered with a web page instead of {name}; upload it again."
                    )
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise DatasetError(
                            f"{name} is larger than the {max_bytes // (1024 * 1024)} MB limit; "
                            "upload a sample of the data."
                        )
                    chunks.append(chunk)
        except httpx.HTTPError as error:
            raise DatasetError(
                f"downloading {name} from Slack failed ({type(error).__name__}); try again."
            ) from error
        return b"".join(chunks)
