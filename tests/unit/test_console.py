"""The CLI's display of a job: training output is not printed line by line, its note is."""

from __future__ import annotations

import io

from rich.console import Console

from bot.console import ConsoleDisplay
from pipeline.command_log import NOTE
from pipeline.events import Event, EventKind


def _log(message: str, **data: object) -> Event:
    return Event(job_id="j", kind=EventKind.LOG, stage="train", message=message, data=data)


def test_piped_output_shows_where_the_whole_log_is_but_not_each_line() -> None:
    buffer = io.StringIO()
    with ConsoleDisplay(Console(file=buffer, width=200)) as display:
        display.publish(Event(job_id="j", kind=EventKind.STARTED, stage="train", message="Go"))
        for n in range(1000):
            display.publish(_log(f"step {n}"))
        note = "… 600 lines not stored here; all 1,000 are in /data/train.log"
        display.publish(_log(note, **{NOTE: "/data/train.log", "skipped": 600}))
    printed = buffer.getvalue()
    assert "step " not in printed
    assert note in printed and "Go" in printed
