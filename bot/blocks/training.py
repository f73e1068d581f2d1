"""What training tried (the leaderboard) and learned (feature importances), for the job's
thread (short) and `/train logs` (everything kept)."""

from __future__ import annotations

from typing import Any

from bot.blocks.base import MAX_SECTION, Message, make_message, section
from bot.text import code_block, escape
from bot.training_lines import (
    CHOSEN_MARK,
    importance_lines,
    leaderboard_lines,
    learned_heading,
    tried_heading,
)
from pipeline.training_report import MAX_CANDIDATES, MAX_IMPORTANCES, TrainingReport

THREAD_CANDIDATES = 5  # the thread stays short: the best few, the chosen one marked
THREAD_IMPORTANCES = 8


def training_blocks(
    report: TrainingReport,
    *,
    candidates: int = THREAD_CANDIDATES,
    importances: int = THREAD_IMPORTANCES,
) -> list[dict[str, Any]]:
    """A section for the leaderboard and one for the importance chart, each when present."""
    blocks = []
    tried = leaderboard_lines(report, candidates)
    if tried:
        head = f"🏁 *What it tried* — {_words(tried_heading(report))}"
        if any(line.startswith(CHOSEN_MARK) for line in tried):
            head += f" ({CHOSEN_MARK} chosen)"
        blocks.append(_with_lines(head, tried))
    learned = importance_lines(report, importances)
    if learned:
        head = f"🔎 *What it learned* — {_words(learned_heading(report))}"
        blocks.append(_with_lines(head, learned))
    return blocks


def training_reply(report: TrainingReport) -> Message:
    """The thread's reply after training: the best candidates and what matters most."""
    text = f"What it tried: {len(report.candidates)} candidates"
    if report.model:
        text += f", chose {report.model}"
    if report.importances:
        names = ", ".join(item.name for item in report.importances[:3])
        text += f". What matters most: {names}"
    return make_message(escape(text.replace("`", "ˋ"), 2900), training_blocks(report))


def full_training_blocks(report: TrainingReport) -> list[dict[str, Any]]:
    """Every candidate and importance kept (at most 20 each), for `/train logs`."""
    return training_blocks(report, candidates=MAX_CANDIDATES, importances=MAX_IMPORTANCES)


def _words(text: str) -> str:
    """A heading that quotes train.py (its metric's name): escaped, and with no backtick
    that could open a code span or fence in the rest of the section."""
    return escape(text.replace("`", "ˋ"), 300)


def _with_lines(head: str, lines: list[str]) -> dict[str, Any]:
    block, _ = code_block(lines, MAX_SECTION - len(head) - 1)
    return section(f"{head}\n{block}")
