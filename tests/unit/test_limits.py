"""Each limit has one home: the places that quote it agree because they read the same value."""

from __future__ import annotations

import re

from bot import blocks
from bot.cli import build_parser, run_lifetime
from pipeline.builtin_datasets import BUILTIN_DATASETS
from pipeline.codegen.base import TaskType
from pipeline.limits import FAILURE_LOG_LINES
from pipeline.sandbox.base import CommandResult
from tests.support.providers import CappedProvider
from tests.support.snapshots import make_snapshot


def test_a_failure_reply_shows_every_line_the_pipeline_keeps_as_detail() -> None:
    output = "\n".join(f"line {i}" for i in range(100))
    detail = CommandResult(exit_code=1, stdout="", stderr=output).log_tail()
    assert detail.splitlines() == [f"line {i}" for i in range(100 - FAILURE_LOG_LINES, 100)]
    reply = blocks.failure_reply(make_snapshot(status="failed", error="crashed"), detail)
    shown = reply.blocks[1]["text"]["text"].strip("`\n").splitlines()
    assert shown == detail.splitlines()


def _run_option(flag: str) -> object:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    return next(a for a in run._actions if flag in a.option_strings)


def test_the_cli_offers_the_pipelines_task_types_and_built_in_sets() -> None:
    task = _run_option("--task")
    assert list(task.choices) == [t.value for t in TaskType]  # type: ignore[attr-defined]
    dataset_help = str(_run_option("--dataset").help)  # type: ignore[attr-defined]
    listed = re.search(r"\(([^)]*)\)", dataset_help)
    assert listed is not None and listed.group(1).split(", ") == list(BUILTIN_DATASETS)


def test_cli_ttl_beyond_the_providers_cap_is_an_error_naming_the_cap_and_the_setting() -> None:
    ttl, problem = run_lifetime(7200, 3600, CappedProvider("e2b", 3600))
    assert problem is not None
    assert "--ttl 7200" in problem and "at most 3600 seconds" in problem
    assert "TRAINBOT_E2B_MAX_LIFETIME" in problem


def test_cli_ttl_within_the_cap_or_without_one_is_kept() -> None:
    assert run_lifetime(1800, 3600, CappedProvider("e2b", 3600)) == (1800, None)
    assert run_lifetime(None, 900, CappedProvider("e2b", 3600)) == (900, None)
    assert run_lifetime(10**6, 3600, CappedProvider("local", None)) == (10**6, None)


def test_cli_default_lifetime_beyond_the_cap_is_capped_with_a_note() -> None:
    ttl, note = run_lifetime(None, 86400, CappedProvider("e2b", 3600))
    assert ttl == 3600
    assert note is not None and "TRAINBOT_APP_TTL" in note and "3600" in note
