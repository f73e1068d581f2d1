"""Every Slack id TrainBot uses. Block ids of the `/train` modal are part of the contract."""

from __future__ import annotations

import enum
import re

TRAIN_COMMAND = "/train"


class CallbackId(enum.StrEnum):
    TRAIN_MODAL = "train_modal"


class BlockId(enum.StrEnum):
    NAME = "name"
    GOAL = "goal"
    DATASET = "dataset"
    DATASET_URL = "dataset_url"
    DATASET_FILE = "dataset_file"
    TARGET = "target"
    RESOURCES = "resources"
    TASK = "task"
    TTL = "ttl"
    BUDGET = "budget"
    CARD_ACTIONS = "job_card_actions"
    EXPIRY_ACTIONS = "expiry_notice_actions"
    LIVE_ACTIONS = "live_reply_actions"


class ActionId(enum.StrEnum):
    NAME = "name_input"
    GOAL = "goal_input"
    DATASET = "dataset_select"
    DATASET_URL = "dataset_url_input"
    DATASET_FILE = "dataset_file_input"
    TARGET = "target_input"
    RESOURCES = "resources_input"
    TASK = "task_select"
    TTL = "ttl_select"
    BUDGET = "budget_select"
    CANCEL_JOB = "cancel_job"
    RETRY_JOB = "retry_job"
    OPEN_APP = "open_live_app"
    EXTEND_APP = "extend_live_app"  # the expiry notice's Extend; its value is the job id


METADATA_EVENT_TYPE = "training_job"


def open_app_action_id(position: int | None = None) -> str:
    """The card's Open live app button, or the one at `position` in the App Home list
    (action ids must be unique within a view, so those carry their position)."""
    return ActionId.OPEN_APP.value if position is None else f"{ActionId.OPEN_APP.value}:{position}"


OPEN_APP_ACTION = re.compile(rf"^{ActionId.OPEN_APP.value}(:\d+)?$")
