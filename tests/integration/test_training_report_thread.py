"""What training tried and learned, end to end: train.py's leaderboard, warnings and
importances reach the job's Slack thread, `/train logs` and `trainbot logs`; malformed ones
are dropped without failing the job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from bot import cli
from bot.manifest import BOT_SCOPES
from bot.training_lines import CHOSEN_MARK
from pipeline.codegen.template import TemplateGenerator
from storage.models import TrainingJob
from storage.states import JobStatus
from tests.fakes.slack_api import FakeSlack
from tests.support.pipeline import ScriptedGenerator
from tests.support.slack_bot import BotHarness, card_of, running_bot, wait_job
from tests.support.slack_payloads import train_form, view_submission
from tests.support.template_runner import builtin_frame, task_spec

# The shortest budget there is: these tests are about what is shown, not the search.
QUICK: dict[str, Any] = {"TRAINBOT_TRAIN_BUDGET_SECONDS": 10}
# The scripted train.py stands for an LLM's: let it run where bubblewrap is missing too.
SCRIPTED = {**QUICK, "TRAINBOT_ALLOW_UNISOLATED_CODE": True}
WARNING = "the test score is far below the cross-validation score"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(scopes=BOT_SCOPES) as fake:
        yield fake


def rewriting_train(rewrite: str) -> ScriptedGenerator:
    """The template's train.py (as base.py), then `rewrite` edits the metrics and schema it
    wrote, as an LLM's script might have written them."""
    wrapper = (
        "import json, runpy\n"
        "try:\n"
        "    runpy.run_path('base.py', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    if stop.code not in (0, None):\n"
        "        raise\n"
        "metrics = json.load(open('metrics.json'))\n"
        "schema = json.load(open('schema.json'))\n"
        f"{rewrite}\n"
        "json.dump(metrics, open('metrics.json', 'w'))\n"
        "json.dump(schema, open('schema.json', 'w'))\n"
    )
    template = TemplateGenerator().generate(
        task_spec(builtin_frame("iris"), target="target", task="classification"), []
    )
    return ScriptedGenerator(**{"train_py": wrapper, "base.py": template.files["train.py"]})


GOOD_REWRITE = f"""
names = ['ExtraTrees', 'RandomForest', 'KNeighbors', 'SVC', 'GaussianNB', 'Ridge']
metrics['leaderboard'] = [
    {{'model': name, 'cv_score': 0.95 - i / 100, 'cv_std': 0.01, 'seconds': 1.5 + i}}
    for i, name in enumerate(names)
]
metrics['leaderboard'].insert(1, {{'model': metrics['model'], 'cv_score': 0.945,
                                   'cv_std': 0.02, 'seconds': 3.25}})
metrics['cv_metric'] = 'balanced_accuracy'
metrics['warnings'] = [{WARNING!r}]
metrics['budget_seconds'] = 10
metrics['seconds'] = 9.5
schema['importances'] = [
    {{'name': f['name'], 'importance': 0.4 / (i + 1), 'std': 0.01}}
    for i, f in enumerate(schema['features'])
]
"""
BAD_REWRITE = """
metrics['leaderboard'] = 'everything'
metrics['warnings'] = {'a': 1}
metrics['cv_score'] = 'high'
metrics['threshold'] = 7
schema['importances'] = [{'name': 1, 'importance': 'big'}, None]
"""


def start_job(bot: BotHarness, **fields: Any) -> TrainingJob:
    bot.sender.command("", channel="C1", user="U1")
    opened = bot.slack.wait_for(lambda: [v for v in bot.slack.views if v["method"] == "views.open"])
    form = train_form(name="Iris report", dataset="iris", **fields)
    bot.sender.interaction(view_submission(opened[-1]["view"], form, user="U1"))
    job = wait_job(bot, timeout=180)
    assert job.status == JobStatus.LIVE, job.error
    bot.wait_idle()
    return job


def thread(bot: BotHarness, job: TrainingJob) -> list[dict[str, Any]]:
    card = card_of(bot, job)
    return bot.slack.replies(card["channel"], card["ts"])


def section_texts(reply: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in reply["blocks"] or [] if b["type"] == "section"]


def ephemeral(bot: BotHarness, text: str) -> str:
    response = bot.sender.command(text)
    assert response.status_code == 200
    body = response.json()
    return body["text"] + json.dumps(body.get("blocks", []), ensure_ascii=False)


def test_the_thread_logs_and_cli_show_what_training_tried_and_learned(
    sqlite_engine: Engine,
    tmp_path: Path,
    fake: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    codegen = rewriting_train(GOOD_REWRITE)
    with running_bot(
        sqlite_engine, tmp_path, fake, codegen=codegen, settings_overrides=SCRIPTED
    ) as bot:
        job = start_job(bot)
        replies = thread(bot, job)
        texts = [r["text"] for r in replies]
        trained = next(i for i, t in enumerate(texts) if "Training" in t and t.startswith("✓"))
        report = replies[trained + 1]  # right after the training stage's line
        tried, learned = section_texts(report)
        assert "What it tried" in tried and "7 candidates" in tried
        assert "cross-validated balanced_accuracy" in tried and "10 s of a 10 s budget" in tried
        rows = tried.split("```")[1].strip().splitlines()
        assert len(rows) == 1 + 5 + 1 and rows[-1].strip() == "…and 2 more"  # header, 5, more
        chosen = [row for row in rows if row.startswith(CHOSEN_MARK)]
        assert len(chosen) == 1 and (job.metrics or {})["model"] in chosen[0]
        assert "0.945 ± 0.020" in chosen[0] and "3.2 s" in chosen[0]
        assert "What it learned" in learned
        bars = learned.split("```")[1].strip().splitlines()
        assert len(bars) == 4 and "█" * 20 in bars[0]  # iris: 4 features
        assert any(WARNING in t and t.startswith("⚠️") for t in texts)

        logs = ephemeral(bot, f"logs {job.short_id}")
        assert "What it tried" in logs and "What it learned" in logs
        for name in ("ExtraTrees", "Ridge", "GaussianNB"):  # all 7, not the thread's 5
            assert name in logs

        stored = job.metrics or {}
        assert len(stored["leaderboard"]) == 7 and stored["warnings"] == [WARNING]

    monkeypatch.setenv("DATABASE_URL", sqlite_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("TRAINBOT_DATA_DIR", str(tmp_path / "data"))
    capsys.readouterr()
    assert cli.main(["logs", job.id]) == 0
    printed = capsys.readouterr().out
    assert "What it tried: 7 candidates" in printed and "What it learned:" in printed
    chosen_line = next(
        line for line in printed.splitlines() if line.strip().startswith(CHOSEN_MARK)
    )
    assert "Ridge" in printed and chosen_line.endswith(stored["model"])
    assert printed.index("What it tried") > printed.index("[train]")  # after the events


def test_malformed_report_fields_are_dropped_and_the_job_goes_live(
    sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    codegen = rewriting_train(BAD_REWRITE)
    with running_bot(
        sqlite_engine, tmp_path, fake, codegen=codegen, settings_overrides=SCRIPTED
    ) as bot:
        job = start_job(bot)
        texts = [r["text"] for r in thread(bot, job)]
        assert any("is live" in t for t in texts)
        assert not any("What it tried" in t or "What matters most" in t for t in texts)
        stored = job.metrics or {}
        for key in ("leaderboard", "warnings", "cv_score", "threshold"):
            assert key not in stored
        assert stored["score"] > stored["baseline"]
        assert "What it" not in ephemeral(bot, f"logs {job.short_id}")


def test_a_template_jobs_thread_shows_its_leaderboard_and_importance_chart(
    sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    """The offline template writes the leaderboard and importances (issue 10's contract):
    its thread shows both, with no help from the test."""
    with running_bot(sqlite_engine, tmp_path, fake, settings_overrides=QUICK) as bot:
        job = start_job(bot)
        reports = [r for r in thread(bot, job) if "What it tried" in json.dumps(r["blocks"])]
        assert len(reports) == 1, [r["text"] for r in thread(bot, job)]
        tried, learned = section_texts(reports[0])
        assert CHOSEN_MARK in tried and (job.metrics or {})["model"] in tried
        assert "What it learned" in learned and "█" in learned
