"""When a live app stops, in words: the provider may end a sandbox earlier than asked.

E2B caps a sandbox's life from its start and clamps a longer one silently, so the runner
records the end the provider reports and says so in the thread when it comes early.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# Seconds of difference that are only clocks and round trips, not an early stop.
EARLY_STOP_TOLERANCE = 120
# Per provider: its name in a sentence, and the setting that tells it the plan's cap.
_PROVIDERS = {"e2b": ("E2B", "TRAINBOT_E2B_MAX_LIFETIME")}


def duration(seconds: float) -> str:
    """'1 hour', '23 hours 10 minutes', '45 minutes', '30 seconds' (to the minute past one)."""
    total = round(seconds) if seconds < 60 else round(seconds / 60) * 60
    if total < 60:
        return _count(total, "second")
    hours, minutes = divmod(total // 60, 60)
    parts = [_count(hours, "hour")] if hours else []
    if minutes:
        parts.append(_count(minutes, "minute"))
    return " ".join(parts)


def early_stop_warning(
    *,
    provider: str,
    max_lifetime: int | None,
    started: datetime,
    asked: int,
    asked_end: datetime,
    real_end: datetime,
) -> str | None:
    """What to tell the thread when the sandbox stops `asked_end - real_end` early, or None.

    `started` is when the sandbox was created (a little after the provider started its clock).
    """
    early = (asked_end - real_end).total_seconds()
    if early < EARLY_STOP_TOLERANCE:
        return None
    label, setting = _PROVIDERS.get(provider, (provider, None))
    at = (
        f"{real_end:%H:%M} UTC"
        if real_end.date() == started.date()
        else (f"{real_end:%Y-%m-%d %H:%M} UTC")
    )
    head = (
        f"{label} stops this sandbox at {at}, {duration(early)} before the {duration(asked)} asked"
    )
    if max_lifetime is None:
        return f"{head}: the provider ended its life sooner"
    named = f" ({setting})" if setting else ""
    cap_end = started + timedelta(seconds=max_lifetime)
    if real_end < cap_end - timedelta(seconds=EARLY_STOP_TOLERANCE):
        return (
            f"{head}: the plan allows less than the {duration(max_lifetime)} configured{named}; "
            "set that to the plan's cap"
        )
    return f"{head}: the plan caps a sandbox at {duration(max_lifetime)}{named}"


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"
