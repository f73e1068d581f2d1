"""A command's output: the whole of it in the log file, its head and tail in job_events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pipeline.command_log import LIVE, CommandLog, skipped_notes
from pipeline.events import EventKind, RecordingSink
from pipeline.limits import LOG_HEAD_LINES, LOG_LINE_CHARS, LOG_TAIL_LINES
from pipeline.recorder import JobRecorder
from storage import queries
from storage.db import session_scope
from storage.models import JobEvent

NEVER = 3600.0  # a flusher that never ticks within a test: only `close` stores


@pytest.fixture
def job_id(sqlite_engine: Engine) -> str:
    with session_scope(sqlite_engine) as session:
        return queries.create_job(session, name="noisy", dataset_source="iris").id


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def recorder(sqlite_engine: Engine, job_id: str, sink: RecordingSink) -> JobRecorder:
    return JobRecorder(sqlite_engine, job_id, sink)


@pytest.fixture
def commits(sqlite_engine: Engine) -> Iterator[list[int]]:
    seen: list[int] = []
    listener = lambda _connection: seen.append(1)  # noqa: E731
    event.listen(sqlite_engine, "commit", listener)
    yield seen
    event.remove(sqlite_engine, "commit", listener)


def _logs(engine: Engine, job_id: str) -> list[JobEvent]:
    with session_scope(engine) as session:
        return queries.list_events(session, job_id=job_id, kinds=[EventKind.LOG.value])


def _print(output: CommandLog, count: int) -> list[str]:
    lines = [f"epoch {n}: loss {1 / n:.6f}" for n in range(1, count + 1)]
    for line in lines:
        output.line(line)
    return lines


def test_a_noisy_command_keeps_its_head_a_note_and_its_tail(
    sqlite_engine: Engine, recorder: JobRecorder, job_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "artifacts" / "train.log"
    with CommandLog(recorder, "train", path) as output:
        printed = _print(output, 3000)

    assert path.read_text().splitlines() == printed  # every line, in order
    stored = _logs(sqlite_engine, job_id)
    head, note, tail = stored[:LOG_HEAD_LINES], stored[LOG_HEAD_LINES], stored[LOG_HEAD_LINES + 1 :]
    assert [e.message for e in head] == printed[:LOG_HEAD_LINES]
    assert [e.message for e in tail] == printed[-LOG_TAIL_LINES:]
    skipped = 3000 - LOG_HEAD_LINES - LOG_TAIL_LINES
    assert note.data == {"log_file": str(path), "skipped": skipped, "lines": 3000, "complete": True}
    assert f"{skipped:,} lines not stored here" in note.message and str(path) in note.message
    [found] = skipped_notes(stored)
    assert (found.skipped, found.lines, found.log_file, found.complete) == (
        skipped,
        3000,
        str(path),
        True,
    )


def test_a_quiet_command_stores_every_line_and_no_note(
    sqlite_engine: Engine, recorder: JobRecorder, job_id: str, tmp_path: Path
) -> None:
    count = LOG_HEAD_LINES + LOG_TAIL_LINES  # the most that fits without skipping
    with CommandLog(recorder, "train", tmp_path / "train.log") as output:
        printed = _print(output, count)
    stored = _logs(sqlite_engine, job_id)
    assert [e.message for e in stored] == printed
    assert skipped_notes(stored) == []


def test_the_lines_are_stored_in_batches_not_one_commit_each(
    recorder: JobRecorder, commits: list[int], tmp_path: Path
) -> None:
    with CommandLog(recorder, "train", tmp_path / "train.log", flush_seconds=NEVER) as output:
        _print(output, 3000)
    # The head in one transaction, the note and the tail in another.
    assert len(commits) == 2


def test_the_head_is_stored_while_the_command_runs(
    sqlite_engine: Engine, recorder: JobRecorder, job_id: str, tmp_path: Path
) -> None:
    with CommandLog(recorder, "train", tmp_path / "train.log", flush_seconds=0.05) as output:
        printed = _print(output, 5)
        deadline = time.monotonic() + 30
        while len(_logs(sqlite_engine, job_id)) < 5:
            assert time.monotonic() < deadline, "the head was never stored before the end"
            time.sleep(0.02)
        assert [e.message for e in _logs(sqlite_engine, job_id)] == printed
        # The file is flushed as often, for `tail -f`.
        assert (tmp_path / "train.log").read_text().splitlines() == printed


def test_the_sink_sees_what_is_stored_and_unstored_live_lines_past_the_head(
    recorder: JobRecorder, sink: RecordingSink, tmp_path: Path
) -> None:
    with CommandLog(recorder, "train", tmp_path / "train.log", flush_seconds=NEVER) as output:
        printed = _print(output, 3000)
    lines = sink.of_kind(EventKind.LOG)
    live = [e for e in lines if e.data.get(LIVE)]
    stored = [e for e in lines if not e.data.get(LIVE)]
    assert [e.message for e in stored if "log_file" not in e.data] == (
        printed[:LOG_HEAD_LINES] + printed[-LOG_TAIL_LINES:]
    )
    # The first line past the head always shows; then at most one per LIVE_SECONDS.
    assert live and live[0].message == printed[LOG_HEAD_LINES]
    assert len(live) < 3000 - LOG_HEAD_LINES


def test_the_file_stops_at_its_cap_and_the_note_says_so(
    sqlite_engine: Engine, recorder: JobRecorder, job_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "train.log"
    with CommandLog(recorder, "train", path, max_bytes=10_000) as output:
        printed = _print(output, 3000)
    kept = path.read_text().splitlines()
    assert kept[:-1] == printed[: len(kept) - 1]  # a prefix of the output
    assert kept[-1].startswith("[trainbot] the log stops here")
    assert f"{3000 - (len(kept) - 1):,} more lines" in kept[-1]
    [note] = skipped_notes(_logs(sqlite_engine, job_id))
    assert not note.complete
    written = sum(len(line) + 1 for line in kept[:-1])
    assert written <= 10_000 < written + len(printed[len(kept) - 1]) + 1


def test_long_lines_are_cut_in_events_and_whole_in_the_file(
    sqlite_engine: Engine, recorder: JobRecorder, job_id: str, tmp_path: Path
) -> None:
    long = "x" * (LOG_LINE_CHARS * 3)
    with CommandLog(recorder, "train", tmp_path / "train.log") as output:
        output.line(long)
        output.line("nul \x00 byte")
    first, second = _logs(sqlite_engine, job_id)
    assert first.message == long[:LOG_LINE_CHARS] + " …"
    assert "\x00" not in second.message
    assert (tmp_path / "train.log").read_text().splitlines() == [long, "nul \x00 byte"]


def test_the_end_is_stored_when_the_command_fails(
    sqlite_engine: Engine, recorder: JobRecorder, job_id: str, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError), CommandLog(recorder, "train", tmp_path / "t.log") as output:
        printed = _print(output, 1000)
        raise RuntimeError("the command timed out")
    stored = _logs(sqlite_engine, job_id)
    assert [e.message for e in stored[-LOG_TAIL_LINES:]] == printed[-LOG_TAIL_LINES:]
    output.line("after the end")  # a late line from a reading thread is dropped, not stored
    assert len(_logs(sqlite_engine, job_id)) == len(stored)
