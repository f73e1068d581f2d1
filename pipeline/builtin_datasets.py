"""The built-in data sets by name, without their loaders.

Kept free of pandas and scikit-learn so the Slack listeners and the CLI's help can list the
names without loading the data science stack; `pipeline.stages.dataset` attaches the loaders.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinDataset:
    target: str  # the name the target column gets
    named_classes: bool  # map 0, 1, ... to the bunch's target_names


# Each key is also the name of its loader: sklearn.datasets.load_<key>.
BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "iris": BuiltinDataset("species", True),
    "wine": BuiltinDataset("cultivar", True),
    "breast_cancer": BuiltinDataset("diagnosis", True),
    "digits": BuiltinDataset("digit", False),
    "diabetes": BuiltinDataset("disease_progression", False),
}
