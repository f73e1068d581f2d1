"""The CLI's progress display: a stage checklist in a terminal, plain lines elsewhere.

Training output is not printed line by line: a script may print 100,000 lines. A terminal
shows the latest line (the pipeline passes on at most four a second past the first ones:
pipeline/command_log.py), and both show where the whole output is once it is known.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from bot.snapshot import STAGE_TITLES
from pipeline.command_log import NOTE
from pipeline.events import Event, EventKind
from storage.states import Stage


class ConsoleDisplay:
    """A ProgressSink for one job shown in the terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self._lock = threading.Lock()
        self._state: dict[str, str] = {}  # stage -> running | done | failed
        self._note: dict[str, str] = {}
        self._warnings: list[str] = []
        self._last_log = ""
        self._log_note = ""  # where the whole training output is, when events hold only its ends
        self._started = time.monotonic()
        self._live: Live | None = None

    def __enter__(self) -> ConsoleDisplay:
        if self.console.is_terminal:
            self._live = Live(console=self.console, get_renderable=self._render, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def publish(self, event: Event) -> None:
        with self._lock:
            self._apply(event)
        if self._live is None and (event.kind != EventKind.LOG or _is_note(event)):
            self._print_line(event)

    def _apply(self, event: Event) -> None:
        if event.kind == EventKind.STARTED:
            self._state[event.stage] = "running"
        elif event.kind == EventKind.FINISHED and event.stage in STAGE_TITLES:
            self._state[event.stage] = "done"
        elif event.kind == EventKind.FAILED and event.stage in STAGE_TITLES:
            self._state[event.stage] = "failed"
            self._note[event.stage] = event.message
        elif event.kind == EventKind.PROGRESS:
            self._note[event.stage] = event.message
        elif event.kind == EventKind.WARNING:
            self._warnings.append(event.message)
        elif _is_note(event):
            self._log_note = event.message.lstrip("… ")
        elif event.kind == EventKind.LOG:
            self._last_log = event.message[:120]

    def _print_line(self, event: Event) -> None:
        elapsed = time.monotonic() - self._started
        title = STAGE_TITLES.get(event.stage, "Job")
        marks = {
            EventKind.STARTED: "…",
            EventKind.PROGRESS: " ",
            EventKind.FINISHED: "✓",
            EventKind.WARNING: "!",
            EventKind.FAILED: "✗",
        }
        mark = marks.get(event.kind, " ")
        self.console.print(f"[{elapsed:6.1f}s] {mark} {title}: {event.message}", markup=False)

    def _render(self) -> Group:
        with self._lock:
            table = Table.grid(padding=(0, 1))
            for stage, title in STAGE_TITLES.items():
                state = self._state.get(stage)
                icon: Any
                if state == "running":
                    icon = Spinner("dots")
                else:
                    icon = Text(
                        {"done": "✓", "failed": "✗"}.get(state or "", "·"),
                        style={"done": "green", "failed": "red"}.get(state or "", "dim"),
                    )
                table.add_row(
                    icon,
                    Text(title, style="bold" if state else "dim"),
                    Text(self._note.get(stage, ""), style="dim"),
                )
            parts: list[Any] = [table]
            if self._last_log and self._state.get(Stage.TRAIN.value) == "running":
                parts.append(Text(f"  {self._last_log}", style="dim italic"))
            if self._log_note:
                parts.append(Text(f"  {self._log_note}", style="dim"))
            parts.extend(Text(f"! {w}", style="yellow") for w in self._warnings[-5:])
            parts.append(Text(f"{time.monotonic() - self._started:.0f}s elapsed", style="dim"))
            return Group(*parts)


def _is_note(event: Event) -> bool:
    """The note saying how many output lines only the log file holds, and where it is."""
    return event.kind == EventKind.LOG and NOTE in event.data
