"""User data as messages quote it: a short excerpt, never the whole value.

Column names and cell values come from the user's file, which may be hundreds of KB on one
"line" (an unclosed quote turns a whole file into one header). Every message that quotes
them goes through `clip`, so the console, the status API and Slack stay readable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_QUOTE = 200  # characters of one quoted name or value
LIST_BUDGET = 2 * MAX_QUOTE  # characters of a list of them (more become "and N more")
ELLIPSIS = "…"

# Line breaks, tabs and other control characters would break a one-line message apart.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clip(value: object, limit: int = MAX_QUOTE) -> str:
    """`value` as one line of at most `limit` characters, with an ellipsis where it was cut."""
    text = str(value)
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + ELLIPSIS
    return _CONTROL.sub(" ", text)


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """A name or value in single quotes, clipped."""
    return f"'{clip(value, limit)}'"


def quote_list(values: Sequence[object], limit: int = 10, budget: int = LIST_BUDGET) -> str:
    """Quoted values, comma separated: at most `limit` of them and about `budget` characters."""
    return _join([quote(v) for v in values[:limit]], len(values), budget)


def name_list(names: Sequence[object], limit: int = 25, budget: int = 3 * MAX_QUOTE) -> str:
    """Names as given (unquoted), clipped and comma separated, like `quote_list`."""
    return _join([clip(n) for n in names[:limit]], len(names), budget)


def _join(pieces: list[str], total: int, budget: int) -> str:
    shown: list[str] = []
    size = 0
    for piece in pieces:
        if shown and size + len(piece) + 2 > budget:
            break
        shown.append(piece)
        size += len(piece) + 2
    more = total - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")
