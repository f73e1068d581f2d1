"""Built-in data sets are read once per process (pipeline/stages/dataset.py): scikit-learn
parses its files on every load, CPU a worker running many jobs spends beside the acks. Each
job still gets a table of its own to change."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from pipeline.netguard import UrlGuard
from pipeline.stages import dataset
from pipeline.stages.dataset import load_dataset


def test_a_built_in_set_is_read_once_and_each_job_gets_its_own_copy() -> None:
    assert dataset._builtin_frame("wine") is dataset._builtin_frame("wine")
    first = dataset._load_builtin("wine")
    first.frame.iloc[:, 0] = -1.0  # one job's changes (cleaning, holding out)...
    first.frame["added"] = 1
    second = dataset._load_builtin("wine")  # ...are not the next job's data
    assert (second.frame.iloc[:, 0] > 0).all() and "added" not in second.frame


def test_jobs_on_the_same_built_in_set_load_the_same_data(tmp_path: Path) -> None:
    loads = [
        load_dataset("iris", target=None, guard=UrlGuard(), max_bytes=10**6, workdir=tmp_path / n)
        for n in ("a", "b")
    ]
    assert loads[0].data_path.read_text() == loads[1].data_path.read_text()
    assert loads[0].spec.classes == loads[1].spec.classes == ["setosa", "versicolor", "virginica"]
    assert loads[0].spec.n_rows == 147


def test_jobs_asking_at_once_read_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Jobs submitted together reach their data set stage together: each reading the set (and
    # importing scikit-learn) for itself was most of the stage's CPU.
    reads: list[str] = []
    read = dataset._read_builtin

    def slow_read(key: str) -> pd.DataFrame:
        reads.append(key)
        time.sleep(0.2)  # long enough for every other job to ask meanwhile
        return read(key)

    monkeypatch.setattr(dataset, "_read_builtin", slow_read)
    monkeypatch.setattr(dataset, "_builtin_frames", {})
    with ThreadPoolExecutor(8) as pool:
        frames = list(pool.map(lambda _: dataset._load_builtin("diabetes").frame, range(8)))
    assert reads == ["diabetes"]
    assert all(frame.equals(frames[0]) for frame in frames)
