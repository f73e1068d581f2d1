"""Jobs' loaders capture library warnings at once, in threads of one process, without taking
turns (pipeline/stages/tabular.py library_warnings_logged): a lock around the capture made
one job's slow data download hold every other job's loading up. Each thread's own warnings go
to the log; another thread's go where they went before."""

from __future__ import annotations

import logging
import threading
import warnings

import pytest

from pipeline.stages.tabular import library_warnings_logged


def test_a_capture_does_not_wait_for_another_threads_capture() -> None:
    inside, release = threading.Event(), threading.Event()

    def slow_job() -> None:  # a job whose download takes its time
        with library_warnings_logged():
            inside.set()
            release.wait(10)

    slow = threading.Thread(target=slow_job)
    slow.start()
    try:
        assert inside.wait(5)
        done = threading.Event()

        def quick_job() -> None:
            with library_warnings_logged():
                pass
            done.set()

        threading.Thread(target=quick_job).start()
        assert done.wait(2), "the second job's capture waited for the first one's"
    finally:
        release.set()
        slow.join(10)


def test_each_threads_warnings_go_where_they_belong(caplog: pytest.LogCaptureFixture) -> None:
    inside, release = threading.Event(), threading.Event()

    def job() -> None:
        with library_warnings_logged():
            warnings.warn("from the job's loader", UserWarning, stacklevel=1)
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=job)
    with caplog.at_level(logging.INFO, logger="pipeline.stages.tabular"):
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            thread.start()
            try:
                assert inside.wait(5)
                # Meanwhile, this thread (not capturing) warns: not the job's to swallow.
                warnings.warn("from elsewhere", UserWarning, stacklevel=1)
            finally:
                release.set()
                thread.join(10)
    assert [str(w.message) for w in shown] == ["from elsewhere"]
    logged = [r.getMessage() for r in caplog.records]
    assert any("from the job's loader" in message for message in logged), logged
    assert not any("from elsewhere" in message for message in logged), logged
