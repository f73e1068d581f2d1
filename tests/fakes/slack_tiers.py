"""Slack's per-method rate-limit tiers, as the fake Slack enforces them.

api.slack.com/apis/rate-limits (docs.slack.dev/apis/web-api/rate-limits), "Rate Limits": limits
apply "per API method per app per workspace"; "Rate limit windows are per minute"; Tier 1 "1+
per minute", Tier 2 "20+ per minute", Tier 3 "50+ per minute" ("Sporadic bursts are welcome"),
Tier 4 "100+ per minute" ("generous burst behavior"). A refused call is answered HTTP 429 with
`Retry-After` (seconds) and error `ratelimited`. The fake takes each tier's documented floor
as the limit (Slack may allow more, never less) and models the minute as a rolling window: at
most N accepted calls in any 60 seconds, so N may come at once (the burst) and the next waits
until the oldest leaves the window. A refused call does not count.

Each method's tier is the "Rate limits" fact of its reference page,
api.slack.com/methods/<method> (now docs.slack.dev/reference/methods/<method>).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

WINDOW_SECONDS = 60.0
TIER_1, TIER_2, TIER_3, TIER_4 = 1, 20, 50, 100

# Calls per window, per (workspace, method). Sources, as quoted in each comment:
#   [page]  the method's page on api.slack.com/methods/<method>, "Facts": "Rate limits ...";
#   [json]  docs.slack.dev's method facts as packaged in hex.pm/packages/slack_kit/1.0.0-alpha.0
#           priv/docs/methods/<method>.json, "rate_limit": {"label": ...};
#   [rs]    github.com/abdolence/slack-morphism-rust src/api/*.rs, the tier config each
#           method's call passes to its rate controller (a client, so only corroboration).
TIER_LIMITS: dict[str, int] = {
    # [page] "Tier 1"; [rs] SLACK_TIER1_METHOD_CONFIG. ([json] says "Tier 3: 50+ per minute";
    # the stricter reading wins in a fake, so a bot that reconnects Socket Mode twice in a
    # minute is caught.) It takes the app-level token, so it is counted per app.
    "apps.connections.open": TIER_1,
    # [page] "Tier 3"; [rs] SLACK_TIER3_METHOD_CONFIG.
    "chat.update": TIER_3,
    # [json] "Tier 3: 50+ per minute"; [rs] SLACK_TIER3_METHOD_CONFIG.
    "conversations.join": TIER_3,
    # [json] "Tier 3: 50+ per minute"; [rs] SLACK_TIER3_METHOD_CONFIG.
    "conversations.info": TIER_3,
    # docs.slack.dev/reference/methods/chat.postEphemeral: Tier 4; [rs]
    # SLACK_TIER4_METHOD_CONFIG.
    "chat.postEphemeral": TIER_4,
    # [page] "Tier 4"; [rs] SLACK_TIER4_METHOD_CONFIG.
    "files.getUploadURLExternal": TIER_4,
    # [page] "Tier 4"; [rs] SLACK_TIER4_METHOD_CONFIG.
    "files.completeUploadExternal": TIER_4,
    # api.slack-gov.com/methods/files.info "Tier 4"; [rs] SLACK_TIER4_METHOD_CONFIG.
    "files.info": TIER_4,
    # views.open: [page] "Tier 4", [json] "Tier 4: 100+ per minute"; views.push and
    # views.publish: [json] "Tier 4: 100+ per minute"; all four: [rs] SLACK_TIER4_METHOD_CONFIG.
    "views.open": TIER_4,
    "views.update": TIER_4,
    "views.push": TIER_4,
    "views.publish": TIER_4,
    # [json] "Tier 4: 100+ per minute"; [rs] SLACK_TIER4_METHOD_CONFIG.
    "users.info": TIER_4,
    # Special tier without a number: auth.test [page] "Special", "This method allows hundreds
    # of requests per minute"; chat.getPermalink [json] "Special rate limits apply.", [page]
    # "This method allows hundreds of requests per minute"; oauth.v2.access [page] "Special"
    # (no token: counted for the workspace whose code is exchanged). Tier 4's floor for each.
    "auth.test": TIER_4,
    "chat.getPermalink": TIER_4,
    "oauth.v2.access": TIER_4,
    # chat.postMessage is Special too: it "generally allows posting one message per second per
    # channel, while also maintaining a workspace-wide limit" (the rate-limits page). That
    # workspace-wide number is not documented, so the fake does not invent one: the
    # per-channel second (FakeSlack.per_channel_interval) is its only limit.
}


class TierWindows:
    """The calls each (workspace, method) made in the last window, oldest first."""

    def __init__(
        self, limits: Mapping[str, int] | None = None, *, window: float = WINDOW_SECONDS
    ) -> None:
        self.limits = {**TIER_LIMITS, **(limits or {})}
        self.window = window
        self._accepted: dict[tuple[str, str], deque[float]] = {}

    def retry_after(self, workspace: str, method: str, now: float) -> int | None:
        """None: the call may go ahead; else the whole seconds until a slot frees (>= 1)."""
        limit = self.limits.get(method)
        if limit is None:
            return None
        accepted = self._window(workspace, method, now)
        if len(accepted) < limit:
            return None
        return max(1, math.ceil(accepted[0] + self.window - now))

    def accept(self, workspace: str, method: str, at: float) -> None:
        if method in self.limits:
            self._accepted.setdefault((workspace, method), deque()).append(at)

    def _window(self, workspace: str, method: str, now: float) -> deque[float]:
        accepted = self._accepted.setdefault((workspace, method), deque())
        while accepted and accepted[0] <= now - self.window:
            accepted.popleft()
        return accepted
