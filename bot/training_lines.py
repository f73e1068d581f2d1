"""What training tried and learned as plain monospace lines: a leaderboard and a bar chart.

One rendering for every surface: the Slack thread and `/train logs` put these lines in a
code block (bot/blocks/training.py), `trainbot logs` prints them.
"""

from __future__ import annotations

from pipeline.training_report import Candidate, TrainingReport

CHOSEN_MARK = "▶"
BAR_WIDTH = 20
MAX_FEATURE_COLUMN = 24
NOTE_CHARS = 40
# Eighths of a block, so a bar's length is shown finer than one character.
_EIGHTHS = " ▏▎▍▌▋▊▉"
_FULL = "█"


def tried_heading(report: TrainingReport) -> str:
    """e.g. "6 candidates, cross-validated balanced_accuracy, 58 s of a 60 s budget"."""
    count = len(report.candidates)
    parts = [f"{count} candidate{'' if count == 1 else 's'}"]
    if report.cv_metric:
        parts.append(f"cross-validated {report.cv_metric}")
    if report.seconds is not None and report.budget_seconds:
        parts.append(f"{report.seconds:.0f} s of a {report.budget_seconds:.0f} s budget")
    elif report.seconds is not None:
        parts.append(f"{report.seconds:.0f} s")
    if report.threshold is not None:
        parts.append(f"decision threshold {report.threshold:.2f}")
    return ", ".join(parts)


def learned_heading(report: TrainingReport) -> str:
    metric = report.metric or "score"
    return f"how much the test {metric} drops when a feature's values are shuffled"


def leaderboard_lines(report: TrainingReport, limit: int) -> list[str]:
    """The best `limit` candidates, the chosen one marked (and shown even when it ranks
    lower), then how many more were tried. The model's name comes last: searches name
    blends and tuned settings at length, and a long name then wraps instead of being cut."""
    shown = list(report.candidates[:limit])
    chosen = next((c for c in report.candidates if report.is_chosen(c)), None)
    if chosen is not None and chosen not in shown and limit > 0:
        shown = [*shown[: limit - 1], chosen]
    if not shown:
        return []
    lines = [f"  {'CV score':<15}  {'time':>7}  model"]
    for candidate in shown:
        mark = CHOSEN_MARK if report.is_chosen(candidate) else " "
        line = (
            f"{mark} {_score(candidate):<15}  {_seconds(candidate.seconds):>7}  {candidate.model}"
        )
        if candidate.note:
            line += f" ({_fit(candidate.note, NOTE_CHARS)})"
        lines.append(line)
    hidden = len(report.candidates) - len(shown)
    if hidden > 0:
        lines.append(f"  …and {hidden} more")
    return lines


def importance_lines(report: TrainingReport, limit: int, bar_width: int = BAR_WIDTH) -> list[str]:
    """The `limit` most important features as bars scaled to the largest importance; a
    feature whose shuffling did not hurt (zero or below) gets no bar."""
    shown = report.importances[:limit]
    if not shown:
        return []
    width = min(MAX_FEATURE_COLUMN, max(len(item.name) for item in shown))
    top = max(item.importance for item in shown)
    lines = []
    for item in shown:
        bar = _bar(item.importance / top if top > 0 else 0.0, bar_width)
        value = _number(item.importance)
        if item.std is not None:
            value += f" ± {_number(item.std)}"
        lines.append(f"{_fit(item.name, width):<{width}}  {bar}  {value}")
    hidden = len(report.importances) - len(shown)
    if hidden > 0:
        lines.append(f"…and {hidden} more features")
    return lines


def _bar(fraction: float, width: int) -> str:
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, rest = divmod(eighths, 8)
    bar = _FULL * full + (_EIGHTHS[rest] if rest else "")
    return f"{bar:<{width}}"


def _score(candidate: Candidate) -> str:
    if candidate.cv_score is None:
        return "—"
    text = _number(candidate.cv_score)
    return f"{text} ± {_number(candidate.cv_std)}" if candidate.cv_std is not None else text


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


def _number(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.3g}"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
