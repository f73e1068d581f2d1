import pytest

from storage.states import (
    ACTIVE,
    RUNNING_STAGES,
    TERMINAL,
    IllegalTransition,
    JobStatus,
    check_transition,
)


def test_the_happy_path_moves_through_every_stage_in_order() -> None:
    path = [JobStatus.QUEUED, *RUNNING_STAGES, JobStatus.LIVE, JobStatus.EXPIRED]
    for here, after in zip(path, path[1:], strict=False):
        check_transition(here, after)


@pytest.mark.parametrize("status", sorted(ACTIVE))
def test_any_active_job_can_fail_or_be_cancelled(status: JobStatus) -> None:
    check_transition(status, JobStatus.FAILED)
    check_transition(status, JobStatus.CANCELLED)


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_states_go_nowhere(status: JobStatus) -> None:
    for wanted in JobStatus:
        with pytest.raises(IllegalTransition):
            check_transition(status, wanted)


@pytest.mark.parametrize(
    ("current", "wanted"),
    [
        (JobStatus.QUEUED, JobStatus.TRAINING),  # skipping stages
        (JobStatus.QUEUED, JobStatus.LIVE),
        (JobStatus.TRAINING, JobStatus.LOADING_DATA),  # going back, except for a repair
        (JobStatus.DEPLOYING, JobStatus.TRAINING),
        (JobStatus.GENERATING_CODE, JobStatus.LOADING_DATA),
        (JobStatus.DEPLOYING, JobStatus.EXPIRED),  # only a live app expires
        (JobStatus.LIVE, JobStatus.FAILED),
        (JobStatus.LIVE, JobStatus.TRAINING),
        (JobStatus.TRAINING, JobStatus.TRAINING),
    ],
)
def test_illegal_moves_raise_with_a_readable_message(current: JobStatus, wanted: JobStatus) -> None:
    with pytest.raises(IllegalTransition, match=f"{current.value} cannot become {wanted.value}"):
        check_transition(current, wanted)


def test_code_that_failed_in_training_or_deployment_goes_back_for_a_repair() -> None:
    check_transition(JobStatus.TRAINING, JobStatus.GENERATING_CODE)
    check_transition(JobStatus.DEPLOYING, JobStatus.GENERATING_CODE)
