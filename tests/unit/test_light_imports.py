"""The Slack side answers within Slack's 3 s window, so it must not load the data science stack
(pandas and scikit-learn take seconds to import) just to list the built-in data set names."""

from __future__ import annotations

import subprocess
import sys

SLACK_SIDE = (
    "bot.app",
    "bot.listeners.commands",
    "bot.listeners.views",
    "bot.listeners.actions",
    "bot.listeners.events",
    "bot.forms",
    "bot.blocks",
)
HEAVY = ("pandas", "sklearn")


def test_slack_listeners_do_not_import_pandas_or_sklearn() -> None:
    # A fresh interpreter: this test process has long since imported both.
    probe = (
        "import importlib, sys\n"
        f"for name in {SLACK_SIDE!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "", f"the Slack side imports {result.stdout.strip()}"


def test_the_built_in_names_match_the_loaders() -> None:
    from pipeline.builtin_datasets import BUILTIN_DATASETS
    from pipeline.stages.dataset import BUILTINS

    assert list(BUILTINS) == list(BUILTIN_DATASETS)
