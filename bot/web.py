"""The HTTP face: Slack's events, a health check and the job status API (WSGI, threaded).

Bolt's sync App runs under a thread-pool WSGI server, so a slow listener never blocks
another request, and acks go out as soon as a listener calls ack().
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy.exc import SQLAlchemyError

from bot.manifest import EVENTS_PATH
from bot.runtime import BotRuntime
from bot.settings import INSTALL_PATH, REDIRECT_PATH
from bot.slack_gate import slack_gate
from pipeline.service import InvalidJobRef, JobNotFound, JobService
from storage.db import ping
from storage.models import TrainingJob

if TYPE_CHECKING:
    from waitress.server import BaseWSGIServer, MultiSocketServer

log = logging.getLogger(__name__)

STATUS_PATH = re.compile(r"^/api/training-jobs/([^/]+)/status$")
OAUTH_PATHS = frozenset({INSTALL_PATH, REDIRECT_PATH})
StartResponse = Callable[..., Any]
THREADS = 8


def make_server(runtime: BotRuntime, *, host: str, port: int) -> MultiSocketServer | BaseWSGIServer:
    """The waitress server `trainbot serve` runs (and the tests run)."""
    from waitress.server import create_server

    # waitress answers 413 itself to a body of max_request_body_size bytes or more
    # (waitress/parser.py: on Content-Length before reading the body, or as soon as a
    # chunked body passes it); its default is 1 GiB, buffered to disk before we are called.
    return create_server(
        build_wsgi(runtime),
        host=host,
        port=port,
        threads=THREADS,
        max_request_body_size=runtime.ctx.slack.max_request_bytes + 1,
    )


def build_wsgi(runtime: BotRuntime) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    bolt = SlackRequestHandler(runtime.app, path=EVENTS_PATH)
    slack = slack_gate(
        bolt,
        signing_secret=runtime.ctx.slack.signing_secret,
        max_body_bytes=runtime.ctx.slack.max_request_bytes,
    )
    engine = runtime.ctx.services.engine
    # The API's own view of the jobs: it takes any unambiguous prefix, as the CLI does.
    jobs = JobService.of(runtime.ctx.services)
    api_token = runtime.ctx.slack.api_token

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == EVENTS_PATH:
            return slack(environ, start_response)
        if path in OAUTH_PATHS and method == "GET" and runtime.app.oauth_flow is not None:
            # A person's browser, not Slack: nothing to sign. Bolt's OAuth flow checks the
            # state (cookie and store) and exchanges the code (bot/oauth.py).
            return _oauth(bolt, environ, start_response)
        if path == "/healthz" and method == "GET":
            try:
                ping(engine)
            except SQLAlchemyError:
                return _json(start_response, 503, {"status": "database unreachable"})
            return _json(start_response, 200, {"status": "ok"})
        match = STATUS_PATH.match(path)
        if match and method == "GET":
            if not _authorized(environ, api_token):
                return _json(
                    start_response,
                    401,
                    {"error": "send Authorization: Bearer <TRAINBOT_API_TOKEN>"},
                    extra=[("WWW-Authenticate", "Bearer")],
                )
            try:
                found = _api_jobs(jobs, environ).status(match.group(1), with_events=False)
            except InvalidJobRef as error:
                return _json(start_response, 400, {"error": str(error)})
            except JobNotFound as error:
                return _json(start_response, 404, {"error": str(error)})
            return _json(start_response, 200, job_status(found.job, found.model_name))
        return _json(start_response, 404, {"error": f"no route for {method[:10]} {path[:80]}"})

    return application


def _api_jobs(jobs: JobService, environ: dict[str, Any]) -> JobService:
    """The status API is the operator's (one TRAINBOT_API_TOKEN sees every workspace); a
    caller that serves one workspace names it (`?team_id=T...`, or `?enterprise_id=E...` for
    an org-wide install) and then gets another workspace's job as an unknown id."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    team_id = (query.get("team_id") or [None])[0] or None
    enterprise_id = (query.get("enterprise_id") or [None])[0] or None
    if team_id is None and enterprise_id is None:
        return jobs
    return jobs.for_workspace(team_id, enterprise_id)


def _oauth(
    bolt: SlackRequestHandler, environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes]:
    try:
        return bolt(environ, start_response)
    except Exception:  # a person's browser gets a page, never a trace
        log.exception("the OAuth flow failed at %s", environ.get("PATH_INFO"))
        page = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>TrainBot was not "
            "installed</title></head><body><h1>TrainBot was not installed</h1><p>Something "
            f"went wrong on our side. Start again from {INSTALL_PATH}.</p></body></html>"
        ).encode()
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))]
        start_response("500 Internal Server Error", headers)
        return [page]


def job_status(job: TrainingJob, model_name: str | None) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": job.id,
        "short_id": job.short_id,
        "model": model_name,
        "status": job.status,
        "stage": job.stage,
        "attempt": job.attempt,
        # Seconds of training search the submitter chose; null: the worker's default.
        "time_budget_seconds": job.time_budget_seconds,
        "deployment_url": job.deployment_url,
        "metrics": job.metrics,
        "error": job.error,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "live_at": iso(job.live_at),
        "expires_at": iso(job.expires_at),
    }


def _authorized(environ: dict[str, Any], token: str) -> bool:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    # Bytes, so any header (even one that is not ASCII) is compared in constant time.
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode())


def _json(
    start_response: StartResponse,
    status: int,
    body: dict[str, Any],
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = HTTPStatus(status).phrase
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start_response(f"{status} {reason}", headers + (extra or []))
    return [data]
