"""The workspace filters of storage.queries (find_job, list_jobs, count_jobs), on SQLite and
PostgreSQL: a workspace is its team; without a team, an org-wide install's enterprise."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from storage import queries
from storage.db import session_scope
from storage.models import TrainingJob


def _job(
    engine: Engine, name: str, team_id: str | None, enterprise_id: str | None = None
) -> TrainingJob:
    with session_scope(engine) as session:
        return queries.create_job(
            session,
            name=name,
            dataset_source="iris",
            requested_by="U1",
            channel_id="C1",
            team_id=team_id,
            enterprise_id=enterprise_id,
        )


def test_another_workspace_job_is_not_found_even_by_its_full_id(engine: Engine) -> None:
    a = _job(engine, "a", "TA")
    with session_scope(engine) as session:
        assert queries.find_job(session, ref=a.id, team_id="TA").id == a.id
        assert queries.find_job(session, ref=a.short_id, team_id="TA").id == a.id
        for ref in (a.id, a.short_id):
            with pytest.raises(queries.JobLookupError) as raised:
                queries.find_job(session, ref=ref, team_id="TB")
            assert str(raised.value) == f"no job has the id {ref}"
        assert queries.find_job(session, ref=a.id).id == a.id  # unscoped: the operator


def test_a_prefix_shared_with_another_workspace_job_is_not_ambiguous(engine: Engine) -> None:
    """Another workspace's job is not even counted: "matches several jobs" would tell it
    exists. Jobs are made until one of TA shares its first character only with TB's."""
    by_team: dict[str, list[TrainingJob]] = {"TA": [], "TB": []}
    for n in range(400):
        team = "TA" if n % 2 else "TB"
        by_team[team].append(_job(engine, f"j{n}", team))
        pair = _lonely_prefix(by_team)
        if pair is not None:
            break
    assert pair is not None, "no job ids that share a first character across workspaces"
    ta_job, prefix = pair
    with session_scope(engine) as session:
        assert queries.find_job(session, ref=prefix, min_prefix=1, team_id="TA").id == ta_job.id
        with pytest.raises(queries.JobLookupError, match="matches several jobs"):
            queries.find_job(session, ref=prefix, min_prefix=1)  # unscoped: both match


def _lonely_prefix(by_team: dict[str, list[TrainingJob]]) -> tuple[TrainingJob, str] | None:
    for job in by_team["TA"]:
        prefix = job.id[0]
        alone = sum(j.id[0] == prefix for j in by_team["TA"]) == 1
        if alone and any(j.id[0] == prefix for j in by_team["TB"]):
            return job, prefix
    return None


def test_list_and_count_see_only_the_workspace(engine: Engine) -> None:
    a1, a2, b1 = _job(engine, "a1", "TA"), _job(engine, "a2", "TA"), _job(engine, "b1", "TB")
    _job(engine, "cli", None)
    with session_scope(engine) as session:
        assert {j.id for j in queries.list_jobs(session, team_id="TA")} == {a1.id, a2.id}
        assert [j.id for j in queries.list_jobs(session, team_id="TB")] == [b1.id]
        assert queries.count_jobs(session, team_id="TA") == 2
        assert queries.count_jobs(session, team_id="TC") == 0
        assert queries.count_jobs(session) == 4
        assert queries.count_jobs(session, team_id="TA", requested_by="U1", channel_id="C1") == 2


def test_an_org_wide_scope_is_the_whole_org_and_a_team_scope_is_its_team(engine: Engine) -> None:
    in_org_1 = _job(engine, "o1", "T1", "E1")
    in_org_2 = _job(engine, "o2", "T2", "E1")
    _job(engine, "other-org", "T3", "E2")
    with session_scope(engine) as session:
        org = queries.list_jobs(session, enterprise_id="E1")
        assert {j.id for j in org} == {in_org_1.id, in_org_2.id}
        # A team is matched by its id alone: team ids are unique across Slack, and a
        # workspace that joins an org later keeps its jobs.
        assert [j.id for j in queries.list_jobs(session, team_id="T1", enterprise_id="E1")] == [
            in_org_1.id
        ]
        assert [j.id for j in queries.list_jobs(session, team_id="T1")] == [in_org_1.id]
        with pytest.raises(queries.JobLookupError):
            queries.find_job(session, ref=in_org_1.id, enterprise_id="E2")
