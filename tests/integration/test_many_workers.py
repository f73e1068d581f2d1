"""Several real worker processes (and a web process) against one real PostgreSQL database.

Each worker is a separate Python process running the real JobWorker (tests/support/
worker_entry.py, `trainbot worker` with a stand-in remote sandbox); the sandbox journal says
which worker trained which job, from when to when, and which sandboxes were killed by whom.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from pipeline.worker import HANDED_BACK
from storage.states import JobStatus
from tests.fakes.slack_api import FakeSlack
from tests.support.slack_payloads import train_form, view_submission
from tests.support.worker_processes import Fleet, WebProcess, group_alive, worker_fleet

LEASE = 3.0
PLENTY_OF_SLOTS = {"TRAINBOT_MAX_CONCURRENT_JOBS": "8"}
TAKEN_OVER = "the worker running this job stopped; starting again, attempt 2 of 3"


def _start_latency(fleet: Fleet, job_id: str) -> float:
    """Seconds from the job's row being committed (here) to its first stage starting (there)."""
    deadline = time.monotonic() + 30
    while (started := fleet.first_started_at(job_id)) is None:
        assert time.monotonic() < deadline, fleet.logs()
        time.sleep(0.02)
    return (started - _aware(fleet.job(job_id).created_at)).total_seconds()


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _listeners(fleet: Fleet) -> int:
    """Connections to this database whose last statement was LISTEN on the jobs channel."""
    with fleet.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query = 'LISTEN trainbot_jobs'"
                )
            ).scalar_one()
        )


def test_twenty_queued_jobs_each_run_exactly_once_spread_over_the_workers(
    tmp_path: Path,
) -> None:
    with worker_fleet(tmp_path) as fleet:
        workers = fleet.start_workers(3)
        jobs = [fleet.submit(f"model {i} train=0.5") for i in range(20)]
        settled = [fleet.wait_for(job_id, timeout=120) for job_id in jobs]

        assert [job.status for job in settled] == [JobStatus.LIVE] * 20, [
            (job.status, job.error) for job in settled
        ]
        assert [job.runs for job in settled] == [1] * 20
        runs = fleet.runs()
        assert sorted(run.job for run in runs) == sorted(jobs)  # one training run each
        for job_id in jobs:  # and one pass through the stages each
            assert fleet.messages(job_id, "started").count("Fetching reference resources") == 1
        ran_on = {run.worker for run in runs}
        assert ran_on <= {w.id for w in workers} and len(ran_on) >= 2, ran_on
        fleet.assert_never_two_at_once()


def test_a_job_whose_worker_is_sigkilled_runs_again_elsewhere_within_the_lease(
    tmp_path: Path,
) -> None:
    with worker_fleet(tmp_path, TRAINBOT_LEASE_SECONDS=str(LEASE)) as fleet:
        fleet.start_workers(2)
        job_id = fleet.submit("model train=8")
        first = fleet.wait_for_runs(job_id, 1)[0]
        victim = next(w for w in fleet.workers if w.id == first.worker)
        survivor = next(w for w in fleet.workers if w is not victim)
        time.sleep(0.5)
        killed_at = time.time()
        victim.sigkill()

        job = fleet.wait_for(job_id, timeout=60)
        assert (job.status, job.runs) == (JobStatus.LIVE, 2), job.error
        told = [e for e in fleet.events(job_id, "warning") if "worker" in e.message]
        assert [e.message for e in told] == [TAKEN_OVER]
        # The lease runs out at most LEASE after the last renewal; a sweep comes every LEASE/3.
        moved_after = _aware(told[0].at).timestamp() - killed_at
        assert 0 < moved_after <= LEASE + LEASE / 3 + 1.0, moved_after

        first, second = fleet.runs(job_id)
        assert (first.worker, second.worker) == (victim.id, survivor.id)
        # The first copy, left running in its sandbox by the dead worker, was killed by the
        # survivor before it started the second (without the kill it would end at +8 s).
        kills = [
            e for e in fleet.entries() if e["event"] == "kill" and e["sandbox"] == first.sandbox
        ]
        assert [k["worker"] for k in kills] == [survivor.id]
        assert first.ended_by == "kill" and not group_alive(first.pgid)
        fleet.assert_never_two_at_once()


def test_sigterm_drains_finishing_what_fits_and_handing_back_the_rest(tmp_path: Path) -> None:
    drain = 5.0
    with worker_fleet(tmp_path, TRAINBOT_DRAIN_SECONDS=str(drain)) as fleet:
        stopping = fleet.start_worker()
        short = fleet.submit("short train=2")
        long = fleet.submit("long train=60")
        fleet.wait_for_runs(short, 1)
        fleet.wait_for_runs(long, 1)

        terminated = time.monotonic()
        stopping.sigterm()
        other = fleet.start_worker(wait=False)
        # Draining takes the grace period and a moment to stop and hand back; the process
        # then needs a second or two more to exit (the interpreter unloading scikit-learn).
        assert stopping.wait(drain + 15) == 0, stopping.log()
        drained_after = stopping.printed_at["DRAINED"] - terminated
        exited_after = time.monotonic() - terminated
        assert drain <= drained_after < drain + 2.5, drained_after
        assert exited_after < drain + 8, exited_after

        finished = fleet.wait_for(short, timeout=10)
        assert (finished.status, finished.runs) == (JobStatus.LIVE, 1)
        assert [(r.worker, r.ended_by) for r in fleet.runs(short)] == [(stopping.id, "run-end")]

        assert HANDED_BACK in fleet.messages(long, "warning")
        assert not fleet.messages(long, "failed")
        fleet.wait_ready(other)
        first, second = fleet.wait_for_runs(long, 2)
        assert (first.worker, second.worker) == (stopping.id, other.id)
        assert first.ended_by in {"stop", "kill"}
        job = fleet.wait_for(long, {JobStatus.TRAINING})
        assert (job.worker_id, job.runs) == (other.id, 1)  # a hand-back is not a crash
        fleet.assert_never_two_at_once()


def test_notify_alone_starts_a_job_queued_elsewhere_at_once(tmp_path: Path) -> None:
    # Slots for every job: a job that waits for a free slot measures the slot, not the wake.
    with worker_fleet(tmp_path, TRAINBOT_POLL_SECONDS="60", **PLENTY_OF_SLOTS) as fleet:
        fleet.start_worker()
        # With a 60 s poll, only a wake-up starts this; once it has, the listener is up.
        _start_latency(fleet, fleet.submit("warm-up train=0"))
        assert _listeners(fleet) == 1
        latencies = [_start_latency(fleet, fleet.submit(f"m{i} train=0")) for i in range(5)]
        assert statistics.median(latencies) < 0.5 and max(latencies) < 1.0, latencies


def test_the_poll_alone_starts_a_job_within_the_poll_interval(tmp_path: Path) -> None:
    poll = 1.0
    with worker_fleet(
        tmp_path, TRAINBOT_LISTEN="0", TRAINBOT_POLL_SECONDS=str(poll), **PLENTY_OF_SLOTS
    ) as fleet:
        fleet.start_worker()
        assert _listeners(fleet) == 0
        latencies = []
        for i in range(5):
            time.sleep(0.3)  # submit at different points of the poll's cycle
            latencies.append(_start_latency(fleet, fleet.submit(f"m{i} train=0")))
        assert max(latencies) < poll + 1.0, latencies


def test_a_job_submitted_through_the_web_process_runs_on_the_worker(tmp_path: Path) -> None:
    with worker_fleet(tmp_path) as fleet, FakeSlack() as slack, fleet.web_process(slack) as web:
        worker = fleet.start_worker()
        assert web.sender.command("").status_code == 200
        opened = slack.wait_for(lambda: [v for v in slack.views if v["method"] == "views.open"])
        form = train_form(name="Iris from Slack train=0.3", dataset="iris")
        answer = web.sender.interaction(view_submission(opened[-1]["view"], form))
        assert answer.status_code == 200 and answer.text == ""

        with fleet.engine.connect() as conn:
            job_id: str = conn.execute(text("SELECT id FROM training_jobs")).scalar_one()
        job = fleet.wait_for(job_id, timeout=60)
        assert (job.status, job.origin) == (JobStatus.LIVE, "slack"), job.error
        assert [run.worker for run in fleet.runs(job_id)] == [worker.id]
        # The web process follows the job's events from the database: its card says live.
        assert slack.wait_for(
            lambda: any(
                job.deployment_url and job.deployment_url in str(m)
                for m in slack.messages("C1")
                if m.get("ts")
            ),
            timeout=15,
        )


LIVE_REPLY = "is live"  # bot/blocks/replies.py live_reply


def _submit_through(web: WebProcess, slack: FakeSlack, name: str, channel: str) -> None:
    opened_before = len(slack.calls_to("views.open"))
    assert web.sender.command("", channel=channel).status_code == 200
    opened = slack.wait_for(lambda: slack.calls_to("views.open")[opened_before:])
    form = train_form(name=name, dataset="iris")
    answer = web.sender.interaction(view_submission(opened[-1].params["view"], form))
    assert answer.status_code == 200 and answer.text == ""


def _settled_in_slack(slack: FakeSlack, fleet: Fleet, job_ids: list[str]) -> dict[str, Any]:
    """Each job's card and thread once every job is live and its thread says so."""
    threads: dict[str, Any] = {}
    for job_id in job_ids:
        job = fleet.wait_for(job_id, timeout=60)
        assert job.job_status == JobStatus.LIVE, job.error

        def told(job_id: str = job_id) -> bool:
            card = fleet.job(job_id)
            if not (card.card_channel_id and card.card_ts):
                return False
            replies = slack.replies(card.card_channel_id, card.card_ts)
            return any(LIVE_REPLY in str(reply) for reply in replies)

        slack.wait_for(told, timeout=60)
        card = fleet.job(job_id)
        threads[job_id] = (
            card.card_ts,
            slack.replies(card.card_channel_id or "", card.card_ts or ""),
        )
    return threads


def test_two_web_processes_send_every_event_to_slack_exactly_once(tmp_path: Path) -> None:
    """Both web processes run a notifier; the lease lets one send, and when it stops the
    other carries on from the cursor: every card is posted once, no reply is doubled."""
    with (
        worker_fleet(tmp_path, TRAINBOT_LEASE_SECONDS=str(LEASE)) as fleet,
        FakeSlack() as slack,
        fleet.web_process(slack) as first,
        fleet.web_process(slack) as second,
    ):
        fleet.start_worker(**PLENTY_OF_SLOTS)
        # A channel each: Slack's pace (a message a second a channel) holds per channel.
        for i, web in enumerate((first, second, first)):
            _submit_through(web, slack, f"Model {i} train=0.2", channel=f"C{i + 1}")
        with fleet.engine.connect() as conn:
            job_ids = list(conn.execute(text("SELECT id FROM training_jobs")).scalars())
            holder = conn.execute(text("SELECT holder FROM event_cursors")).scalar_one()
        threads = _settled_in_slack(slack, fleet, job_ids)

        # The process that sends stops (a deploy): the other one takes over the cursor.
        sender = first if f":{first.process.proc.pid}:" in holder else second
        other = second if sender is first else first
        sender.process.sigterm()
        assert sender.process.wait(30) == 0
        _submit_through(other, slack, "Model after the handover train=0.2", channel="C9")
        with fleet.engine.connect() as conn:
            job_ids = list(conn.execute(text("SELECT id FROM training_jobs")).scalars())
        threads = _settled_in_slack(slack, fleet, job_ids)

        posts = slack.calls_to("chat.postMessage")
        assert all(post.status == 200 for post in posts)  # paced: Slack never said 429
        cards = [post for post in posts if not post.params.get("thread_ts")]
        assert len(cards) == len(job_ids) == 4  # one card a job, whichever process sent it
        for job_id, (card_ts, replies) in threads.items():
            texts = [
                json.dumps(reply.get("blocks") or reply.get("text"), sort_keys=True)
                for reply in replies
            ]
            assert len(texts) == len(set(texts)), f"a reply of job {job_id[:8]} was sent twice"
            assert sum(LIVE_REPLY in text for text in texts) == 1
            assert card_ts
