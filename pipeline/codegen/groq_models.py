"""What TrainBot knows about Groq's models and limits: one table, no SDK import.

Settings read the budget defaults from here, the Groq generator reads the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# The values the SDK takes (groq/resources/chat/completions.py); each model takes a few.
ReasoningEffort = Literal["none", "default", "low", "medium", "high"]


@dataclass(frozen=True)
class ModelTraits:
    strict_schema: bool  # structured outputs with `strict: true` (constrained decoding)
    reasoning_effort: ReasoningEffort | None  # sent as `reasoning_effort`; None: not sent


# In order of preference: the first one a key offers is named when GROQ_MODEL is not offered.
# Strict mode: console.groq.com/docs/structured-outputs ("Supported models": gpt-oss-20b and
# gpt-oss-120b). Reasoning effort: the SDK's docstring (groq/resources/chat/completions.py,
# "openai/gpt-oss-20b and openai/gpt-oss-120b support 'low', 'medium', or 'high'"). Low,
# because thinking tokens are completion tokens and count against the same budget as code.
MODELS: dict[str, ModelTraits] = {
    "openai/gpt-oss-120b": ModelTraits(strict_schema=True, reasoning_effort="low"),
    "openai/gpt-oss-20b": ModelTraits(strict_schema=True, reasoning_effort="low"),
}
# Groq's recommended replacement for llama-3.3-70b-versatile, decommissioned on 2026-08-16
# for free and developer tiers (console.groq.com/docs/deprecations).
DEFAULT_MODEL = "openai/gpt-oss-120b"
# Any other model: JSON mode, which Groq's chat models take, and no reasoning_effort, which
# non-reasoning models refuse and each reasoning family spells differently.
OTHER = ModelTraits(strict_schema=False, reasoning_effort=None)

# Groq counts a request's prompt plus its `max_completion_tokens` against the key's
# tokens-per-minute limit before running it, and refuses it (413) when they add up to more
# (github.com/zeeyado/koassistant.koplugin/issues/106). The free tier's limit for
# openai/gpt-oss-120b is 8,000 tokens per minute (console.groq.com/docs/rate-limits), so the
# defaults add up to 7,800: room for ~10,000 characters of code plus brief thinking, and a
# prompt of ~9,000 characters, trimmed to fit.
PROMPT_TOKENS = 3_000
COMPLETION_TOKENS = 4_800


def traits(model: str) -> ModelTraits:
    return MODELS.get(model, OTHER)


def suggestion(offered: Sequence[str], besides: str) -> str:
    """A current model to name instead of `besides`: the first of ours that the key offers
    (any of ours when its list is unknown), else the first model it offers."""
    ours = [model for model in MODELS if model != besides and (not offered or model in offered)]
    if ours:
        return ours[0]
    others = [model for model in offered if model != besides]
    return others[0] if others else DEFAULT_MODEL
