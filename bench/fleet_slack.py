"""What the fake Slack saw of a fleet of jobs (bench/fleet.py): each call given to its job by the
card it touched, the first time each job's live-app button arrived, 429s and their retries,
and how closely one card's edits followed each other.

A call belongs to a job when it carries the job's card: the card's own post (its metadata names
the job), an edit of it (channel + ts), a reply in its thread (channel + thread_ts), or a chart
shared there (files.completeUploadExternal's channel_id + thread_ts; the upload URL request and
the upload before it belong to the file it completes), or a roll-up of several jobs' outcomes
carrying its live-app button (counted for each job in it). What belongs to no card
(auth.test, a channel's conversations.join) is counted apart.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.slack_api import UPLOAD, Call

CARD_POST = "card"
CARD_EDIT = "card edit"
STAGE_TITLE = re.compile(r"✓ \*([^*]+)\*")


@dataclass(frozen=True)
class Card:
    job_id: str
    channel: str
    ts: str
    url: str  # the live app's URL ("" when the job never went live)


@dataclass
class SlackLedger:
    by_job: dict[str, list[Call]] = field(default_factory=dict)
    unattributed: list[Call] = field(default_factory=list)

    def kinds(self, job_id: str) -> Counter[str]:
        return Counter(kind_of(call) for call in self.by_job.get(job_id, []))


def attribute(calls: Iterable[Call], cards: Iterable[Card]) -> SlackLedger:
    by_place = {(card.channel, card.ts): card.job_id for card in cards}
    ledger = SlackLedger(by_job={job_id: [] for job_id in by_place.values()})
    file_owner: dict[str, str] = {}
    pending_urls: list[Call] = []  # files.getUploadURLExternal calls, matched below
    calls = sorted(calls, key=lambda call: call.at)
    for call in calls:
        if call.method == "files.completeUploadExternal":
            for file_id in _file_ids(call.params):
                job = by_place.get(_thread_of(call.params))
                if job is not None:
                    file_owner[file_id] = job
    uploads_seen: list[str] = []
    by_url = {card.url: card.job_id for card in cards if card.url}
    for call in calls:
        shared = _rollup_jobs(call, by_url)
        if shared:  # one message for several jobs' outcomes: counted for each of them
            for job in shared:
                ledger.by_job[job].append(call)
            continue
        job = _job_of(call, by_place, file_owner)
        if call.method == "files.getUploadURLExternal":
            pending_urls.append(call)
            continue
        if call.method == UPLOAD:
            uploads_seen.append(str(call.params.get("file_id")))
        if job is None:
            ledger.unattributed.append(call)
        else:
            ledger.by_job[job].append(call)
    # files_upload_v2 asks for one upload URL per file, then posts the file to it: the n-th
    # accepted URL request went with the n-th upload (the fake names the file only in its reply).
    accepted = [call for call in pending_urls if call.status == 200]
    for url_call, file_id in zip(accepted, uploads_seen, strict=False):
        job = file_owner.get(file_id)
        (ledger.by_job[job] if job else ledger.unattributed).append(url_call)
    ledger.unattributed += [c for c in pending_urls if c.status != 200]
    ledger.unattributed += accepted[len(uploads_seen) :]
    return ledger


def kind_of(call: Call) -> str:
    """The kind of message a call is, for the per-job breakdown."""
    params = call.params
    if call.method == "chat.postMessage":
        if not params.get("thread_ts"):
            return CARD_POST if params.get("metadata") else "outcomes roll-up"
        text = str(params.get("text") or "")
        stage = STAGE_TITLE.match(text)
        if stage:
            return f"reply: stage done ({stage.group(1)})"
        for mark, kind in (
            ("✅", "live"),
            ("⚠️", "warning"),
            ("❌", "failure"),
            ("🚫", "cancelled"),
            ("What it tried", "training report"),
        ):
            if text.startswith(mark):
                return f"reply: {kind}"
        return "reply: note"
    if call.method == "chat.update":
        return CARD_EDIT
    if call.method.startswith("files") or call.method == UPLOAD:
        return f"chart ({call.method})"
    return call.method


def first_button_at(calls: Iterable[Call], url: str) -> float | None:
    """When the first accepted call carrying a button to `url` arrived (monotonic)."""
    for call in sorted(calls, key=lambda call: call.at):
        if call.status == 200 and _has_button(call.params.get("blocks"), url):
            return call.at
    return None


def unretried_429s(calls: list[Call]) -> list[Call]:
    """The 429s whose write never got through later: the same request accepted (slack_sdk's
    retry resends it), or, for a card edit, any later accepted edit of that card (a newer
    rendering of it supersedes the refused one)."""
    left = []
    for i, call in enumerate(calls):
        if call.status != 429:
            continue
        wanted = _write_of(call)
        if not any(later.status == 200 and _write_of(later) == wanted for later in calls[i + 1 :]):
            left.append(call)
    return left


def _write_of(call: Call) -> tuple[str, str]:
    """What a call writes: a card edit is known by its card, anything else by its request."""
    params = call.params
    if call.method == "chat.update":
        return call.method, f"{params.get('channel')} {params.get('ts')}"
    return call.method, json.dumps(params, sort_keys=True, default=str)


def edit_gaps(calls: Iterable[Call]) -> list[float]:
    """Seconds between consecutive accepted chat.update calls on the same card."""
    last: dict[tuple[str, str], float] = {}
    gaps = []
    for call in sorted(calls, key=lambda call: call.at):
        if call.method != "chat.update" or call.status != 200:
            continue
        place = (str(call.params.get("channel")), str(call.params.get("ts")))
        if place in last:
            gaps.append(call.at - last[place])
        last[place] = call.at
    return gaps


def _job_of(call: Call, by_place: dict[tuple[str, str], str], files: dict[str, str]) -> str | None:
    params = call.params
    if call.method == UPLOAD:
        return files.get(str(params.get("file_id")))
    if call.method == "files.completeUploadExternal":
        return by_place.get(_thread_of(params))
    metadata = _json(params.get("metadata"))
    payload = metadata.get("event_payload") if isinstance(metadata, dict) else None
    if call.method == "chat.postMessage" and not params.get("thread_ts") and payload:
        return str(payload.get("job_id"))
    channel = str(params.get("channel"))
    return by_place.get((channel, str(params.get("thread_ts") or params.get("ts"))))


def _rollup_jobs(call: Call, by_url: dict[str, str]) -> list[str]:
    """The jobs whose live-app buttons a top-level message other than a card carries (the
    notifier's roll-up of several outcomes)."""
    params = call.params
    if call.method != "chat.postMessage" or params.get("thread_ts") or params.get("metadata"):
        return []
    urls = [
        e.get("url") for e in _elements(_json(params.get("blocks"))) if e.get("type") == "button"
    ]
    return [by_url[url] for url in urls if url in by_url]


def _thread_of(params: dict[str, Any]) -> tuple[str, str]:
    return str(params.get("channel_id")), str(params.get("thread_ts"))


def _file_ids(params: dict[str, Any]) -> list[str]:
    files = _json(params.get("files"))
    return (
        [str(f.get("id")) for f in files if isinstance(f, dict)] if isinstance(files, list) else []
    )


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _has_button(blocks: Any, url: str) -> bool:
    return any(
        element.get("type") == "button" and element.get("url") == url
        for element in _elements(_json(blocks))
    )


def _elements(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _elements(value)
    elif isinstance(node, list):
        for item in node:
            yield from _elements(item)


def per_kind_table(counts: Counter[str]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def mean_counts(counters: list[Counter[str]]) -> dict[str, float]:
    total: defaultdict[str, float] = defaultdict(float)
    for counter in counters:
        for kind, n in counter.items():
            total[kind] += n
    return {kind: n / max(1, len(counters)) for kind, n in total.items()}
