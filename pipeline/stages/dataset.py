"""Stage: load the data set, check it is trainable, describe it, write data.csv.

Sources: a built-in scikit-learn data set by name, an http(s) link (fetched through the
URL guard) or a local .csv/.txt file. Every problem is a `DatasetError` that says what
is wrong and what to do about it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from pipeline.builtin_datasets import BUILTIN_DATASETS
from pipeline.codegen.base import TaskSpec, TaskType
from pipeline.codegen.contract import DATA_FILE, column_key
from pipeline.errors import DatasetError, PipelineError
from pipeline.netguard import UrlGuard, format_size
from pipeline.quoting import clip, name_list, quote, quote_list
from pipeline.sources import ExternalSource
from pipeline.stages.tabular import (
    ParsedCsv,
    is_whole,
    library_warnings_logged,
    parse_csv,
    plain_row,
    plain_value,
    profile_column,
    sorted_plain,
)

MIN_ROWS = 20
HOLDOUT_ROWS = 3
SAMPLE_ROWS = 5
MAX_CLASSES_FOR_NUMBERS = 20  # integer targets with at most this many values are classes
LOCAL_SUFFIXES = (".csv", ".txt")
URL_TIMEOUT = 10.0
URL_TOTAL_TIMEOUT = 120.0


@dataclass(frozen=True)
class Builtin:
    name: str
    target: str
    named_classes: bool  # map 0, 1, ... to the bunch's target_names

    def loader(self) -> Callable[..., Any]:
        # scikit-learn is imported when a built-in set is first loaded, not with this module:
        # it is most of a worker's 5 s start, and workers restart on every deploy.
        from sklearn import datasets

        loader: Callable[..., Any] = getattr(datasets, f"load_{self.name}")
        return loader


BUILTINS: dict[str, Builtin] = {
    name: Builtin(name, info.target, info.named_classes) for name, info in BUILTIN_DATASETS.items()
}


@dataclass
class LoadedDataset:
    spec: TaskSpec
    data_path: Path
    # Feature values only, to verify the live app; keyed by the headers exactly as the file
    # had them (untrimmed, original case), since that is how users will send rows.
    holdout: list[dict[str, Any]]
    holdout_targets: list[Any]
    warnings: list[str] = field(default_factory=list)
    source_description: str = ""


@dataclass
class _Raw:
    frame: pd.DataFrame
    label: str  # how messages name the source
    description: str  # e.g. "built-in iris"
    name: str
    default_target: str | None = None  # built-ins know their target
    warnings: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # column -> header as in the file

    @classmethod
    def of(cls, parsed: ParsedCsv, label: str, description: str, name: str) -> _Raw:
        return cls(
            parsed.frame,
            label,
            description,
            name,
            warnings=parsed.warnings,
            headers=parsed.headers,
        )


def load_dataset(
    source: str,
    *,
    target: str | None,
    guard: UrlGuard,
    max_bytes: int,
    name: str = "",
    goal: str = "",
    task: TaskType | None = None,
    workdir: Path,
    allow_local_files: bool = True,
    external: Mapping[str, ExternalSource] | None = None,
    workspace: tuple[str | None, str | None] = (None, None),
) -> LoadedDataset:
    """Load `source`, check it, hold out verification rows and write `workdir/data.csv`.

    `allow_local_files=False` refuses paths on this machine (for requests from chat).
    `external` maps prefixes such as "slack-file" to sources of uploaded files, which are
    read as `workspace` (the job's team and enterprise ids).
    """
    with library_warnings_logged():
        raw = _read_source(source, guard, max_bytes, allow_local_files, external or {}, workspace)
        return _check_and_write(raw, target, name, goal, task, workdir)


def _check_and_write(
    raw: _Raw,
    target: str | None,
    name: str,
    goal: str,
    task: TaskType | None,
    workdir: Path,
) -> LoadedDataset:
    frame = raw.frame
    warnings = list(raw.warnings)
    target_col = _resolve_target(raw, target)
    n_loaded = len(frame)

    frame, task_type = _clean_target(frame, target_col, task, raw.label, warnings)
    if len(frame.columns) < 2:
        raise DatasetError(
            f"{raw.label} has no columns besides the target {quote(target_col)}; "
            "at least one feature column is needed to learn from."
        )
    holdout_index = _pick_holdout(frame, target_col, task_type)
    held = frame.loc[holdout_index]
    train = frame.drop(index=holdout_index).reset_index(drop=True)

    workdir.mkdir(parents=True, exist_ok=True)
    data_path = workdir / DATA_FILE
    train.to_csv(data_path, index=False)

    classes: list[Any] = []
    if task_type is TaskType.CLASSIFICATION:
        classes = sorted_plain(train[target_col].unique())
    spec = TaskSpec(
        name=name.strip() or raw.name,
        goal=goal.strip() or f"Predict {clip(target_col)} from the other columns.",
        task=task_type,
        target=target_col,
        data_file=DATA_FILE,
        columns=[profile_column(str(c), train[c]) for c in train.columns],
        n_rows=len(train),
        sample_rows=[plain_row(row) for row in train.head(SAMPLE_ROWS).to_dict("records")],
        classes=classes,
    )
    features = held.drop(columns=[target_col])
    return LoadedDataset(
        spec=spec,
        data_path=data_path,
        holdout=[plain_row(row) for row in features.rename(columns=raw.headers).to_dict("records")],
        holdout_targets=[plain_value(v) for v in held[target_col]],
        warnings=warnings,
        source_description=f"{raw.description} ({n_loaded:,} rows)",
    )


# -- sources --------------------------------------------------------------------------


def _read_source(
    source: str,
    guard: UrlGuard,
    max_bytes: int,
    allow_local: bool,
    external: Mapping[str, ExternalSource],
    workspace: tuple[str | None, str | None],
) -> _Raw:
    text = source.strip()
    if not text:
        raise DatasetError(
            "No data set given; pass a link to a CSV file, a file, "
            f"or a built-in data set ({', '.join(BUILTINS)})."
        )
    builtin = _builtin_key(text)
    if builtin is not None:
        return _load_builtin(builtin)
    prefix, _, reference = text.partition(":")
    if prefix in external:
        return _load_external(external[prefix], reference, max_bytes, workspace)
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
    if scheme:
        if scheme.group(1).lower() not in ("http", "https"):
            raise DatasetError(
                f"{_short(text)} is a {clip(scheme.group(1), 20)}:// link; TrainBot only "
                "downloads data from "
                "http(s) links. Upload the file instead."
            )
        return _load_url(text, guard, max_bytes)
    if not allow_local:
        raise DatasetError(
            f"{_short(text)} is not a link or a built-in data set; give an http(s) link to a CSV "
            f"file, upload the file, or use one of: {', '.join(BUILTINS)}."
        )
    return _load_file(text, max_bytes)


def _builtin_key(text: str) -> str | None:
    key = re.sub(r"[\s-]+", "_", text.lower().removeprefix("sklearn:").strip())
    return key if key in BUILTINS else None


def _load_builtin(key: str) -> _Raw:
    builtin = BUILTINS[key]
    frame = _builtin_frame(key).copy()  # each job changes its own copy
    return _Raw(frame, f"The built-in {key} data set", f"built-in {key}", key, builtin.target)


_builtin_frames: dict[str, pd.DataFrame] = {}
_builtin_lock = threading.Lock()


def _builtin_frame(key: str) -> pd.DataFrame:
    """A built-in set as jobs use it, read once per process: scikit-learn reads and parses its
    files on every load, CPU a worker running many jobs at once spends beside the web
    server's acks, for data that never changes. A few small tables, about 1 MB in all. Never
    changed in place: `_load_builtin` hands out copies. Jobs submitted together all ask at
    once, so the first read is made under a lock (later asks hold it for a lookup only):
    unlocked, each of them read it (and imported scikit-learn) for itself."""
    with _builtin_lock:
        frame = _builtin_frames.get(key)
        if frame is None:
            frame = _builtin_frames[key] = _read_builtin(key)
        return frame


def _read_builtin(key: str) -> pd.DataFrame:
    builtin = BUILTINS[key]
    bunch = builtin.loader()(as_frame=True)
    frame = bunch.frame.copy()
    codes = frame.pop("target")
    if builtin.named_classes:
        names = {i: str(n) for i, n in enumerate(bunch.target_names)}
        frame[builtin.target] = codes.map(names).astype(object)
    else:
        frame[builtin.target] = codes
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _load_url(url: str, guard: UrlGuard, max_bytes: int) -> _Raw:
    try:
        response = guard.fetch(
            url,
            max_bytes=max_bytes,
            timeout=URL_TIMEOUT,
            total_timeout=URL_TOTAL_TIMEOUT,
            accept="text/csv, text/plain;q=0.9, */*;q=0.5",
        )
    except PipelineError as exc:
        raise DatasetError(exc.message, detail=exc.detail) from exc
    parsed = parse_csv(response.content, _short(url))
    path = urlsplit(response.final_url).path
    stem = Path(path).stem or (urlsplit(url).hostname or "dataset")
    return _Raw.of(parsed, _short(url), _short(url), stem)


def _load_external(
    source: ExternalSource,
    reference: str,
    max_bytes: int,
    workspace: tuple[str | None, str | None],
) -> _Raw:
    team_id, enterprise_id = workspace
    data = source.fetch(
        reference, max_bytes=max_bytes, team_id=team_id, enterprise_id=enterprise_id
    )
    label = _short(data.name)
    if len(data.content) > max_bytes:
        raise DatasetError(
            f"{label} is {format_size(len(data.content))}, more than the "
            f"{format_size(max_bytes)} limit; use a sample of the data."
        )
    parsed = parse_csv(data.content, label)
    return _Raw.of(parsed, label, f"uploaded {label}", Path(data.name).stem)


def _load_file(text: str, max_bytes: int) -> _Raw:
    path = Path(text).expanduser()
    if not path.exists():
        raise DatasetError(
            f"There is no file at {_short(text)}. Check the path, or give an http(s) link "
            f"or a built-in data set ({', '.join(BUILTINS)})."
        )
    if not path.is_file():
        raise DatasetError(
            f"{_short(text)} is a folder, not a file; point at the CSV file inside it."
        )
    if path.suffix.lower() not in LOCAL_SUFFIXES:
        kind = f"a {path.suffix} file" if path.suffix else "a file without an extension"
        raise DatasetError(
            f"{path.name} is {kind}; TrainBot reads .csv or .txt files. "
            "Export or save the data as CSV first."
        )
    size = path.stat().st_size
    if size > max_bytes:
        raise DatasetError(
            f"{path.name} is {format_size(size)}, more than the {format_size(max_bytes)} "
            "limit; use a sample of the data."
        )
    return _Raw.of(parse_csv(path.read_bytes(), path.name), path.name, path.name, path.stem)


def _short(source: str, limit: int = 80) -> str:
    """A link, path or file name as messages name it."""
    return clip(source, limit)


# -- target and checks ----------------------------------------------------------------


def match_column(wanted: str, columns: Sequence[str]) -> str | None:
    """The column `wanted` names, ignoring case and surrounding spaces; None if none."""
    key = wanted.strip()
    if key in columns:
        return key
    for normalise in (column_key, _looser):
        hits = [c for c in columns if normalise(c) == normalise(key)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise DatasetError(
                f"The target {quote(wanted.strip())} matches several columns "
                f"({quote_list(hits)}); give the exact column name."
            )
    return None


def _looser(name: str) -> str:
    return re.sub(r"[\W_]+", "", name.casefold())


def _resolve_target(raw: _Raw, target: str | None) -> str:
    columns = [str(c) for c in raw.frame.columns]
    wanted = (target or "").strip()
    if raw.default_target is not None:
        if not wanted or match_column(wanted, [raw.default_target, "target"]) is not None:
            return raw.default_target
        raise DatasetError(
            f"{raw.label} predicts {quote(raw.default_target)}, not {quote(wanted)}; "
            f"leave the target empty or use {quote(raw.default_target)}."
        )
    if not wanted:
        raise DatasetError(
            "Which column should TrainBot predict? Give its name as the target column. "
            f"Columns in {raw.label}: {_column_list(columns)}."
        )
    found = match_column(wanted, columns)
    if found is None:
        raise DatasetError(
            f"{raw.label} has no column named {quote(wanted)}. "
            f"Available columns: {_column_list(columns)}."
        )
    return found


def _clean_target(
    frame: pd.DataFrame,
    target: str,
    task: TaskType | None,
    label: str,
    warnings: list[str],
) -> tuple[pd.DataFrame, TaskType]:
    missing = int(frame[target].isna().sum())
    if missing:
        frame = frame[frame[target].notna()].reset_index(drop=True)
        warnings.append(f"Dropped {missing:,} row(s) with no value for {quote(target)}.")
    _require_rows(frame, label)
    _require_varying(frame, target)
    task_type = task or infer_task(frame[target])
    if task_type is TaskType.REGRESSION:
        numbers = pd.to_numeric(frame[target], errors="coerce")
        bad = frame[target][numbers.isna()]
        if len(bad):
            raise DatasetError(
                f"{quote(target)} is not numeric (for example {quote(plain_value(bad.iloc[0]))}), "
                "so it "
                "cannot be predicted as a number; train a classifier instead, or pick a "
                "numeric column."
            )
        frame[target] = numbers
        return frame, task_type
    y = frame[target]
    if pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y) and is_whole(y):
        frame[target] = y.astype("int64")
    counts = frame[target].value_counts()
    singles = counts[counts == 1]
    if len(singles) and len(singles) * 2 > len(frame):
        raise DatasetError(
            f"{quote(target)} has {len(counts):,} different values, most of them appearing once, "
            "so it cannot be predicted as a category. Pick another target column"
            + (", or train a regression model." if pd.api.types.is_numeric_dtype(y) else ".")
        )
    if len(singles):
        frame = frame[~frame[target].isin(singles.index)].reset_index(drop=True)
        warnings.append(
            f"Dropped {len(singles)} class(es) of {quote(target)} with a single row "
            f"({quote_list([plain_value(v) for v in singles.index], limit=5)}); "
            "each class needs at least 2 rows."
        )
        _require_rows(frame, label)
        _require_varying(frame, target)
    if len(counts) > 50:
        warnings.append(
            f"{quote(target)} has {len(counts):,} classes; a classifier needs many rows per class "
            "to do well."
        )
    return frame, TaskType.CLASSIFICATION


def _require_rows(frame: pd.DataFrame, label: str) -> None:
    if len(frame) < MIN_ROWS:
        raise DatasetError(
            f"{label} has only {len(frame)} usable rows; at least {MIN_ROWS} are needed "
            "to train and test a model. Add more rows."
        )


def _require_varying(frame: pd.DataFrame, target: str) -> None:
    values = frame[target].unique()
    if len(values) < 2:
        raise DatasetError(
            f"Every row has {clip(target)} = {quote(plain_value(values[0]))}, so there is "
            "nothing to learn. Pick a target column whose value varies."
        )


def infer_task(y: pd.Series) -> TaskType:
    """Classification for text, bool and few whole numbers; regression otherwise."""
    values = y.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return TaskType.CLASSIFICATION
    if is_whole(values) and values.nunique() <= MAX_CLASSES_FOR_NUMBERS:
        return TaskType.CLASSIFICATION
    return TaskType.REGRESSION


def _pick_holdout(frame: pd.DataFrame, target: str, task: TaskType) -> list[Any]:
    """A few rows to verify the live app with; every class keeps >= 2 training rows."""
    wanted = min(HOLDOUT_ROWS, max(1, len(frame) // 10))
    if task is TaskType.REGRESSION:
        return list(frame.sample(n=wanted, random_state=0).index)
    rng = np.random.default_rng(0)
    pools = {
        cls: list(rng.permutation(np.asarray(idx)))
        for cls, idx in frame.groupby(target, sort=True).groups.items()
        if len(idx) >= 3
    }
    order = sorted(pools, key=lambda cls: -len(pools[cls]))
    picked: list[Any] = []
    while len(picked) < wanted:
        progressed = False
        for cls in order:
            if len(picked) < wanted and len(pools[cls]) > 2:
                picked.append(pools[cls].pop())
                progressed = True
        if not progressed:
            break
    return picked


def _column_list(columns: Sequence[str]) -> str:
    return name_list(columns)
