"""The leaderboard and the importance chart in Slack and as text: short, marked, escaped,
within Block Kit's limits, and absent when training said nothing about them."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from bot import blocks
from bot.blocks.training import THREAD_CANDIDATES, THREAD_IMPORTANCES, training_blocks
from bot.training_lines import CHOSEN_MARK, importance_lines, leaderboard_lines
from pipeline.training_report import MAX_CANDIDATES, TrainingReport, clean_metrics, read_report
from storage.states import JobStatus
from tests.fakes.slack_blocks_rules import message_block_errors
from tests.support.snapshots import LIVE_METRICS, make_snapshot

EVIL = "<!channel> & <@U999> ```"


def report(candidates: int = 3, features: int = 3, chosen: int = 0, **extra: Any) -> TrainingReport:
    metrics = {
        **LIVE_METRICS,
        "model": f"model-{chosen}",
        "cv_metric": "balanced_accuracy",
        "leaderboard": [
            {"model": f"model-{i}", "cv_score": 0.9 - i / 100, "cv_std": 0.01, "seconds": i + 1}
            for i in range(candidates)
        ],
        "budget_seconds": 60,
        "seconds": 55,
        **extra,
    }
    importances = [
        {"name": f"feature-{i}", "importance": 0.4 / (i + 1), "std": 0.01} for i in range(features)
    ]
    return read_report(metrics, importances)


def texts(message: blocks.Message) -> str:
    return "\n".join(b["text"]["text"] for b in message.blocks if b["type"] == "section")


def code_lines(section_text: str) -> list[str]:
    return section_text.split("```")[1].strip("\n").splitlines()


def test_the_thread_shows_the_best_five_with_the_chosen_one_marked() -> None:
    message = blocks.training_reply(report(candidates=12, features=3))
    assert not message_block_errors(message.blocks)
    tried = message.blocks[0]["text"]["text"]
    assert "What it tried" in tried and "12 candidates" in tried
    assert "cross-validated balanced_accuracy" in tried and "55 s of a 60 s budget" in tried
    rows = code_lines(tried)[1:]  # under the header row
    assert len(rows) == THREAD_CANDIDATES + 1 and rows[-1].strip() == "…and 7 more"
    assert rows[0].startswith(CHOSEN_MARK) and rows[0].endswith("  model-0")
    assert "0.900 ± 0.010" in rows[0] and "1.0 s" in rows[0]
    assert sum(row.startswith(CHOSEN_MARK) for row in rows) == 1
    assert "model-0" in message.text


def test_a_chosen_model_ranked_lower_is_still_shown() -> None:
    rows = leaderboard_lines(report(candidates=12, chosen=9), THREAD_CANDIDATES)[1:]
    names = [row.split()[-1] for row in rows[:-1]]
    assert names == ["model-0", "model-1", "model-2", "model-3", "model-9"]
    assert rows[4].startswith(CHOSEN_MARK)


def test_the_importance_chart_has_at_most_eight_bars_scaled_to_the_largest() -> None:
    message = blocks.training_reply(report(features=15))
    learned = message.blocks[1]["text"]["text"]
    assert "What it learned" in learned and "test accuracy drops" in learned
    rows = code_lines(learned)
    assert len(rows) == THREAD_IMPORTANCES + 1 and rows[-1] == "…and 7 more features"
    assert rows[0].startswith("feature-0") and "█" * 20 in rows[0] and "0.400 ± 0.010" in rows[0]
    assert "█" * 10 in rows[1] and "█" * 11 not in rows[1]  # half the importance, half the bar
    assert "What matters most: feature-0, feature-1, feature-2" in message.text


def test_a_feature_that_did_not_matter_gets_no_bar() -> None:
    flat = read_report(
        LIVE_METRICS,
        [{"name": "a", "importance": 0.0, "std": 0.0}, {"name": "b", "importance": -0.01}],
    )
    rows = importance_lines(flat, 8)
    assert rows == ["a  " + " " * 20 + "  0.000 ± 0.000", "b  " + " " * 20 + "  -0.010"]


def test_only_what_training_said_is_shown() -> None:
    only_importances = read_report(LIVE_METRICS, [{"name": "a", "importance": 0.2}])
    built = training_blocks(only_importances)
    assert len(built) == 1 and "What it learned" in built[0]["text"]["text"]
    only_board = report(features=0)
    built = training_blocks(only_board)
    assert len(built) == 1 and "What it tried" in built[0]["text"]["text"]
    no_choice = replace(report(), model="something else")
    assert "chosen" not in training_blocks(no_choice)[0]["text"]["text"]
    assert training_blocks(read_report(LIVE_METRICS)) == []


def test_user_text_is_escaped_and_cannot_break_the_code_block() -> None:
    evil = read_report(
        {**LIVE_METRICS, "cv_metric": EVIL, "leaderboard": [{"model": EVIL, "cv_score": 0.5}]},
        [{"name": EVIL, "importance": 0.5}],
    )
    message = blocks.training_reply(evil)
    assert not message_block_errors(message.blocks)
    for block in message.blocks:
        body = block["text"]["text"]
        assert "<!channel>" not in body and "<@U999>" not in body
        assert body.count("```") == 2
    assert "<!channel>" not in message.text


def test_the_longest_report_stays_within_slacks_limits() -> None:
    long = "W" * 200
    huge = read_report(
        {
            **LIVE_METRICS,
            "model": long,
            "leaderboard": [
                {
                    "model": long + str(i),
                    "cv_score": -1e9,
                    "cv_std": 1e9,
                    "seconds": 1e7,
                    "note": "&" * 200,
                }
                for i in range(40)
            ],
        },
        [{"name": "&<>" * 60 + str(i), "importance": 1e12, "std": 1e12} for i in range(40)],
    )
    for built in (blocks.training_reply(huge).blocks, blocks_of_logs(huge)):
        assert not message_block_errors(built)
        assert all(len(b["text"]["text"]) <= 3000 for b in built if b["type"] == "section")


def blocks_of_logs(report: TrainingReport) -> list[dict[str, Any]]:
    snap = make_snapshot(status=JobStatus.LIVE, report=report)
    return blocks.logs_message(snap, ["line 1", "line 2"], 2).blocks


def test_train_logs_shows_every_candidate_kept_after_the_log() -> None:
    full = report(candidates=MAX_CANDIDATES, features=12)
    built = blocks_of_logs(full)
    assert "line 2" in built[1]["text"]["text"]
    assert (
        "What it tried" in built[2]["text"]["text"]
        and "What it learned" in built[3]["text"]["text"]
    )
    assert len(code_lines(built[2]["text"]["text"])) == MAX_CANDIDATES + 1
    assert len(code_lines(built[3]["text"]["text"])) == 12
    plain = blocks.logs_message(make_snapshot(status=JobStatus.LIVE), ["line 1"], 1)
    assert "What it" not in json.dumps(plain.blocks)


def test_the_card_and_home_ignore_a_long_leaderboard() -> None:
    metrics = clean_metrics(
        {
            **LIVE_METRICS,
            "leaderboard": [{"model": f"m{i}", "cv_score": 0.5, "seconds": 1} for i in range(20)],
            "warnings": ["far below cross-validation"],
        }
    )
    snap = make_snapshot(status=JobStatus.LIVE, metrics=metrics)
    plain = make_snapshot(status=JobStatus.LIVE)
    assert blocks.job_card(snap) == blocks.job_card(plain)
    assert blocks.status_message(snap) == blocks.status_message(plain)
    assert blocks.home_view([snap]) == blocks.home_view([plain])
    assert blocks.live_reply(snap) == blocks.live_reply(plain)
